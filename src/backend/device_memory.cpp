// The parts of device_memory.h that need no CUDA: DeviceBuffer, and DeviceAllocator::create() for builds without
// CUDA (with CUDA it lives in backend/cuda/device_allocator.cpp).
#include "kvflash/device_memory.h"

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

#if !defined(KVFLASH_HAVE_CUDA)
StatusOr<std::unique_ptr<DeviceAllocator>> DeviceAllocator::create(const DeviceAllocatorConfig&) {
  return unsupported("device allocator: this kvflash was built without CUDA (KVFLASH_CUDA=OFF or no nvcc found)");
}
#endif

}  // namespace kvflash
