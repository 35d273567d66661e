// The parts of device_memory.h that need no CUDA: DeviceBuffer, and DeviceAllocator::create()'s checks of its
// config before the build's device code (backend/cuda/device_allocator.cpp, or the stub) takes over.
#include "kvflash/device_memory.h"

#include <string>

#include "backend/device_allocator_factory.h"

namespace kvflash {

StatusOr<DeviceBuffer> DeviceBuffer::allocate(DeviceAllocator& allocator, std::string_view bucket, MemoryKind kind,
                                              int64_t bytes, void* stream) {
  auto ptr = allocator.allocate(bucket, kind, bytes, stream);
  if (!ptr.ok()) return ptr.status();
  DeviceBuffer buffer;
  buffer.allocator_ = &allocator;
  buffer.ptr_ = *ptr;
  buffer.bytes_ = bytes;
  buffer.stream_ = stream;
  return buffer;
}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    reset();
    allocator_ = other.allocator_;
    ptr_ = other.ptr_;
    bytes_ = other.bytes_;
    stream_ = other.stream_;
    other.allocator_ = nullptr;
    other.ptr_ = nullptr;
    other.bytes_ = 0;
    other.stream_ = nullptr;
  }
  return *this;
}

void DeviceBuffer::reset() {
  if (allocator_ != nullptr && ptr_ != nullptr) {
    // A destructor cannot report; deallocate() only fails for a pointer the allocator never gave out, which a
    // DeviceBuffer cannot hold.
    (void)allocator_->deallocate(ptr_, stream_);
  }
  allocator_ = nullptr;
  ptr_ = nullptr;
  bytes_ = 0;
  stream_ = nullptr;
}

StatusOr<std::unique_ptr<DeviceAllocator>> DeviceAllocator::create(const DeviceAllocatorConfig& config) {
  if (config.release_threshold_bytes < 0) {
    return invalid_argument("DeviceAllocatorConfig.release_threshold_bytes = " +
                            std::to_string(config.release_threshold_bytes) + " must be >= 0");
  }
  if (config.vmm_reserve_bytes < 0) {
    return invalid_argument("DeviceAllocatorConfig.vmm_reserve_bytes = " + std::to_string(config.vmm_reserve_bytes) +
                            " must be >= 0");
  }
  if (config.strategy != DeviceAllocStrategy::stream_ordered && config.strategy != DeviceAllocStrategy::vmm) {
    return invalid_argument("DeviceAllocatorConfig.strategy = " + std::to_string(static_cast<int>(config.strategy)) +
                            " is not a DeviceAllocStrategy");
  }
  return detail::create_device_allocator(config);
}

}  // namespace kvflash
