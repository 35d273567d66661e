// Device memory: every byte kvflash holds on a GPU comes from a DeviceAllocator and belongs to a named bucket of its
// MemoryReport (seed 000: no pool that keeps peak-sized temporaries; seed 004: a reservation is visible as a bucket).
//
// Two strategies, picked by DeviceAllocatorConfig::strategy, behind one interface:
//  - stream_ordered: cudaMallocAsync / cudaFreeAsync on a dedicated cudaMemPool_t with a release threshold; trim_to()
//    calls cudaMemPoolTrimTo.
//  - vmm: one reserved virtual range (cuMemAddressReserve); each allocation maps a physical chunk of its own
//    (cuMemCreate + cuMemMap, rounded up to the driver's granularity) into the first gap of the range, and a free
//    unmaps and releases it at once, so nothing freed stays mapped. Driver entry points are resolved at run time,
//    so the library never links libcuda and loads on machines without a driver.
// Out of memory is a Status (out_of_memory) naming the bucket and the bytes asked; before failing, the allocator
// releases cached-but-free memory (only as much as the request lacks) and retries once.
//
// Without CUDA in the build (KVFLASH_HAVE_CUDA undefined) create() returns `unsupported`.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>

#include "kvflash/memory_report.h"
#include "kvflash/status.h"

namespace kvflash {

enum class DeviceAllocStrategy : uint8_t { stream_ordered, vmm };

struct DeviceAllocatorConfig {
  int device = 0;                               // CUDA ordinal
  DeviceAllocStrategy strategy = DeviceAllocStrategy::stream_ordered;
  int64_t release_threshold_bytes = 0;          // stream_ordered: free bytes the pool may keep cached
  int64_t vmm_reserve_bytes = 0;                // vmm: virtual range to reserve; 0: the device's total memory
};

/// Allocation statistics, for tests and bench (a call after warm-up must not move allocation_calls).
struct DeviceAllocatorStats {
  int64_t allocation_calls = 0;   // successful allocate() calls since create()
  int64_t live_bytes = 0;         // bytes handed out and not yet freed
  int64_t peak_live_bytes = 0;    // highest live_bytes since create() or reset_peak()
  int64_t reserved_bytes = 0;     // bytes the strategy holds from the driver (live + cached + rounding);
                                  // stream_ordered: the pool's cudaMemPoolAttrReservedMemCurrent
  int64_t used_bytes = 0;         // of those, bytes backing live allocations (stream_ordered: the pool's
                                  // cudaMemPoolAttrUsedMemCurrent; vmm: the mapped chunks)
};

class DeviceAllocator {
 public:
  /// An allocator on `config.device`. invalid_argument for a bad config field; unsupported without CUDA or
  /// without a device; backend_error when the driver refuses the pool or the range.
  static StatusOr<std::unique_ptr<DeviceAllocator>> create(const DeviceAllocatorConfig& config);
  virtual ~DeviceAllocator() = default;

  /// `bytes` (> 0) of device memory for `bucket` (e.g. "kv.cache", "workspace"), ordered on `stream`
  /// (a cudaStream_t; nullptr: the default stream). Aligned to 256 bytes. out_of_memory names the bucket and bytes.
  virtual StatusOr<void*> allocate(std::string_view bucket, MemoryKind kind, int64_t bytes,
                                   void* stream = nullptr) = 0;
  /// Returns memory from allocate(), ordered on `stream` (stream_ordered: cudaFreeAsync; vmm: waits for `stream`,
  /// then unmaps). invalid_argument for a pointer this allocator did not hand out.
  virtual Status deallocate(void* ptr, void* stream = nullptr) = 0;
  /// Releases cached-but-free memory until at most `keep_bytes` beyond the live bytes stay reserved.
  virtual Status trim_to(int64_t keep_bytes) = 0;
  /// Buckets of every live allocation (equal names summed) plus the device's total and free memory now.
  virtual StatusOr<MemoryReport> report() const = 0;
  /// Counters and byte totals now (see DeviceAllocatorStats).
  virtual DeviceAllocatorStats stats() const = 0;
  /// Starts a new peak: peak_live_bytes becomes live_bytes.
  virtual void reset_peak() = 0;
  /// The strategy this allocator was created with.
  virtual DeviceAllocStrategy strategy() const = 0;
};

/// RAII ownership of one allocation.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  /// Allocates through `allocator`, which must outlive the buffer.
  static StatusOr<DeviceBuffer> allocate(DeviceAllocator& allocator, std::string_view bucket, MemoryKind kind,
                                         int64_t bytes, void* stream = nullptr);
  DeviceBuffer(DeviceBuffer&& other) noexcept { *this = std::move(other); }
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { reset(); }

  /// The device pointer (nullptr when empty).
  void* data() const { return ptr_; }
  /// The bytes asked for (0 when empty).
  int64_t bytes() const { return bytes_; }
  /// Frees now (on the stream it was allocated on).
  void reset();

 private:
  DeviceAllocator* allocator_ = nullptr;
  void* ptr_ = nullptr;
  int64_t bytes_ = 0;
  void* stream_ = nullptr;
};

}  // namespace kvflash
