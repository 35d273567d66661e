// DeviceAllocator in a build without CUDA: every configuration that passes validation is `unsupported`, so callers
// (the CLI, the C API, tests) get one clear message instead of a missing symbol.
#include "backend/device_allocator_factory.h"

#if !defined(KVFLASH_HAVE_CUDA)

namespace kvflash::detail {

StatusOr<std::unique_ptr<DeviceAllocator>> create_device_allocator(const DeviceAllocatorConfig&) {
  return unsupported("device allocator: this kvflash was built without CUDA (KVFLASH_CUDA=OFF or no nvcc found)");
}

}  // namespace kvflash::detail

#endif
