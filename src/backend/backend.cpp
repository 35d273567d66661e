#include "kvflash/backend.h"

#if defined(KVFLASH_HAVE_CUDA)
#include "backend/cuda/device.h"
#endif

namespace kvflash {

std::optional<BackendKind> backend_from_name(std::string_view name) {
  for (int i = 0; i < kBackendCount; ++i) {
    const auto b = static_cast<BackendKind>(i);
    if (backend_name(b) == name) return b;
  }
  return std::nullopt;
}

}  // namespace kvflash

namespace kvflash {

bool backend_available(BackendKind b) {
  switch (b) {
    case BackendKind::ref: return true;
    case BackendKind::cpu: return true;
    case BackendKind::cuda:
#if defined(KVFLASH_HAVE_CUDA)
      return cuda::device_count() > 0;
#else
      return false;
#endif
  }
  return false;
}

}  // namespace kvflash
