// The device half of DeviceAllocator::create() with CUDA, and the stream-ordered strategy: cudaMallocFromPoolAsync
// on a pool of our own, so the memory it caches is ours to count and to trim, and never mixed with the default pool
// of the caller.
#include <cuda_runtime.h>

#include <algorithm>
#include <mutex>

#include "backend/cuda/allocation_ledger.h"
#include "backend/cuda/cuda_status.h"
#include "backend/cuda/device.h"
#include "backend/cuda/device_allocator_vmm.h"
#include "backend/cuda/scoped_device.h"
#include "backend/device_allocator_factory.h"

namespace kvflash {
namespace cuda {
namespace {

// Margin on top of a shortfall when trimming before a retry: the driver's bookkeeping for the new mapping comes
// out of the same free bytes (its page tables for a whole H100 are well under 1 MiB).
constexpr int64_t kTrimSlack = int64_t{32} << 20;

class StreamOrderedAllocator final : public DeviceAllocator {
 public:
  static StatusOr<std::unique_ptr<DeviceAllocator>> create(const DeviceAllocatorConfig& config) {
    ScopedDevice guard(config.device);
    KVFLASH_RETURN_IF_ERROR(guard.status());
    cudaMemPoolProps props{};
    props.allocType = cudaMemAllocationTypePinned;
    props.location.type = cudaMemLocationTypeDevice;
    props.location.id = config.device;
    cudaMemPool_t pool = nullptr;
    KVFLASH_CUDA_RETURN_IF_ERROR(cudaMemPoolCreate(&pool, &props));
    auto threshold = static_cast<uint64_t>(config.release_threshold_bytes);
    if (Status s = cuda_status(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold),
                               "cudaMemPoolSetAttribute(release threshold)");
        !s.ok()) {
      (void)cudaMemPoolDestroy(pool);
      return s;
    }
    return std::unique_ptr<DeviceAllocator>(new StreamOrderedAllocator(config.device, pool));
  }

  ~StreamOrderedAllocator() override {
    ScopedDevice guard(device_);
    // Outstanding frees must complete before the pool goes; live allocations die with it.
    (void)cudaDeviceSynchronize();
    (void)cudaMemPoolDestroy(pool_);
  }

  StatusOr<void*> allocate(std::string_view bucket, MemoryKind kind, int64_t bytes, void* stream) override {
    KVFLASH_RETURN_IF_ERROR(check_request_bytes(bucket, bytes));
    std::lock_guard<std::mutex> lock(mu_);
    ScopedDevice guard(device_);
    KVFLASH_RETURN_IF_ERROR(guard.status());
    const auto s = static_cast<cudaStream_t>(stream);
    void* ptr = nullptr;
    cudaError_t err = cudaMallocFromPoolAsync(&ptr, static_cast<size_t>(bytes), pool_, s);
    if (err == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      // Release only what the request lacks (plus the slack) from what the pool caches, then try once more.
      size_t free_now = 0, total = 0;
      (void)cudaMemGetInfo(&free_now, &total);
      const int64_t lacking = bytes + kTrimSlack - static_cast<int64_t>(free_now);
      const int64_t reserved = reserved_bytes();
      const int64_t keep = std::max<int64_t>(ledger_.mapped_bytes(), reserved - std::max<int64_t>(lacking, 0));
      (void)cudaDeviceSynchronize();
      (void)cudaMemPoolTrimTo(pool_, static_cast<size_t>(keep));
      err = cudaMallocFromPoolAsync(&ptr, static_cast<size_t>(bytes), pool_, s);
      if (err == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError();
        (void)cudaMemGetInfo(&free_now, &total);
        return out_of_memory("device memory: bucket '" + std::string(bucket) + "' asked " + bytes_text(bytes) +
                             "; the device has " + bytes_text(static_cast<int64_t>(free_now)) + " free of " +
                             bytes_text(static_cast<int64_t>(total)) + ", kvflash holds " +
                             bytes_text(ledger_.live_bytes()) + " live");
      }
    }
    KVFLASH_RETURN_IF_ERROR(cuda_status(err, "cudaMallocFromPoolAsync"));
    ledger_.record(ptr, bucket, kind, bytes, bytes, stream);
    return ptr;
  }

  Status deallocate(void* ptr, void* stream) override {
    std::lock_guard<std::mutex> lock(mu_);
    AllocationLedger::Entry entry;
    if (!ledger_.take(ptr, &entry)) {
      return invalid_argument("device deallocate: pointer " + pointer_text(ptr) + " was not allocated here");
    }
    ScopedDevice guard(device_);
    KVFLASH_RETURN_IF_ERROR(guard.status());
    KVFLASH_CUDA_RETURN_IF_ERROR(cudaFreeAsync(ptr, static_cast<cudaStream_t>(stream)));
    return Status::Ok();
  }

  Status trim_to(int64_t keep_bytes) override {
    KVFLASH_RETURN_IF_ERROR(check_keep_bytes(keep_bytes));
    std::lock_guard<std::mutex> lock(mu_);
    ScopedDevice guard(device_);
    KVFLASH_RETURN_IF_ERROR(guard.status());
    // Frees still queued on streams are not free yet: only completed ones can be released.
    KVFLASH_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
    KVFLASH_CUDA_RETURN_IF_ERROR(cudaMemPoolTrimTo(pool_, static_cast<size_t>(ledger_.mapped_bytes() + keep_bytes)));
    return Status::Ok();
  }

  StatusOr<MemoryReport> report() const override {
    std::lock_guard<std::mutex> lock(mu_);
    ScopedDevice guard(device_);
    KVFLASH_RETURN_IF_ERROR(guard.status());
    size_t free_now = 0, total = 0;
    KVFLASH_CUDA_RETURN_IF_ERROR(cudaMemGetInfo(&free_now, &total));
    MemoryReport r = ledger_.report(device_, free_now, total);
    // Memory the pool caches after frees (and its rounding of live allocations) is ours too: without a bucket of its
    // own it would read as "unaccounted".
    const int64_t cached = reserved_bytes() - ledger_.mapped_bytes();
    if (cached > 0) r.add("allocator.cached", MemoryKind::other, cached);
    return r;
  }

  DeviceAllocatorStats stats() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return ledger_.stats(reserved_bytes(), pool_attribute(cudaMemPoolAttrUsedMemCurrent, ledger_.mapped_bytes()));
  }
  void reset_peak() override {
    std::lock_guard<std::mutex> lock(mu_);
    ledger_.reset_peak();
  }
  DeviceAllocStrategy strategy() const override { return DeviceAllocStrategy::stream_ordered; }

 private:
  StreamOrderedAllocator(int device, cudaMemPool_t pool) : device_(device), pool_(pool) {}

  int64_t reserved_bytes() const {
    return pool_attribute(cudaMemPoolAttrReservedMemCurrent, ledger_.mapped_bytes());
  }
  // A pool attribute in bytes; `fallback` (the ledger's view) if the runtime cannot say.
  int64_t pool_attribute(cudaMemPoolAttr attr, int64_t fallback) const {
    uint64_t value = 0;
    if (cudaMemPoolGetAttribute(pool_, attr, &value) != cudaSuccess) {
      (void)cudaGetLastError();
      return fallback;
    }
    return static_cast<int64_t>(value);
  }

  int device_;
  cudaMemPool_t pool_;
  mutable std::mutex mu_;
  AllocationLedger ledger_;
};

}  // namespace
}  // namespace cuda

namespace detail {

StatusOr<std::unique_ptr<DeviceAllocator>> create_device_allocator(const DeviceAllocatorConfig& config) {
  const int devices = cuda::device_count();
  if (devices == 0) return unsupported("device allocator: no CUDA device (the runtime sees none)");
  if (config.device < 0 || config.device >= devices) {
    return invalid_argument("DeviceAllocatorConfig.device = " + std::to_string(config.device) +
                            " is not a CUDA device (this machine has " + std::to_string(devices) + ")");
  }
  if (config.strategy == DeviceAllocStrategy::vmm) return cuda::create_vmm_allocator(config);
  return cuda::StreamOrderedAllocator::create(config);
}

}  // namespace detail
}  // namespace kvflash
