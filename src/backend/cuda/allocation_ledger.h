// The bookkeeping both device-allocation strategies share: which pointer belongs to which bucket, how many bytes
// are live per bucket, and the statistics. Host-only, no CUDA: the strategies call it after the driver said yes.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "kvflash/device_memory.h"
#include "kvflash/memory_report.h"
#include "kvflash/status.h"

namespace kvflash::cuda {

class AllocationLedger {
 public:
  struct Entry {
    size_t bucket = 0;
    int64_t bytes = 0;    // what the caller asked for (what the bucket counts)
    int64_t mapped = 0;   // what the strategy holds for it (>= bytes; the VMM rounds to its granularity)
    void* stream = nullptr;
  };

  void record(void* ptr, std::string_view bucket, MemoryKind kind, int64_t bytes, int64_t mapped, void* stream);
  /// The entry of `ptr`, removed from the ledger; false when `ptr` was not recorded.
  bool take(void* ptr, Entry* entry);
  bool owns(void* ptr) const { return live_.count(ptr) != 0; }

  /// The report of device `device` (free / total bytes as cudaMemGetInfo said) with one bucket per distinct name
  /// with live bytes (a bucket whose allocations were all freed disappears); the strategy adds what it caches.
  MemoryReport report(int device, size_t device_free, size_t device_total) const;
  DeviceAllocatorStats stats(int64_t reserved_bytes, int64_t used_bytes) const;
  void reset_peak() { peak_live_bytes_ = live_bytes_; }
  int64_t live_bytes() const { return live_bytes_; }
  int64_t mapped_bytes() const { return mapped_bytes_; }
  const std::map<void*, Entry>& entries() const { return live_; }

 private:
  struct Bucket {
    std::string name;
    MemoryKind kind;
    int64_t bytes;
  };
  std::vector<Bucket> buckets_;
  std::map<void*, Entry> live_;
  int64_t allocation_calls_ = 0;
  int64_t live_bytes_ = 0;
  int64_t mapped_bytes_ = 0;
  int64_t peak_live_bytes_ = 0;
};

/// The argument checks both strategies make before touching the driver: a request of bytes > 0 for a named bucket,
/// and trim_to()'s keep_bytes >= 0.
Status check_request_bytes(std::string_view bucket, int64_t bytes);
Status check_keep_bytes(int64_t keep_bytes);

/// "123456789 bytes (117.74 MiB)", for out-of-memory messages.
std::string bytes_text(int64_t bytes);
/// "0x7f12...", for messages about a pointer.
std::string pointer_text(const void* ptr);

}  // namespace kvflash::cuda
