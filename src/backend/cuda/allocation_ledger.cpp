#include "backend/cuda/allocation_ledger.h"

#include <algorithm>
#include <cstdio>

namespace kvflash::cuda {

void AllocationLedger::record(void* ptr, std::string_view bucket, MemoryKind kind, int64_t bytes, int64_t mapped,
                              void* stream) {
  auto it = std::find_if(buckets_.begin(), buckets_.end(),
                         [&](const Bucket& b) { return b.name == bucket && b.kind == kind; });
  if (it == buckets_.end()) it = buckets_.insert(buckets_.end(), Bucket{std::string(bucket), kind, 0});
  it->bytes += bytes;
  live_[ptr] = Entry{static_cast<size_t>(it - buckets_.begin()), bytes, mapped, stream};
  ++allocation_calls_;
  live_bytes_ += bytes;
  mapped_bytes_ += mapped;
  peak_live_bytes_ = std::max(peak_live_bytes_, live_bytes_);
}

bool AllocationLedger::take(void* ptr, Entry* entry) {
  auto it = live_.find(ptr);
  if (it == live_.end()) return false;
  *entry = it->second;
  buckets_[entry->bucket].bytes -= entry->bytes;
  live_bytes_ -= entry->bytes;
  mapped_bytes_ -= entry->mapped;
  live_.erase(it);
  return true;
}

MemoryReport AllocationLedger::report(int device, size_t device_free, size_t device_total) const {
  MemoryReport r;
  r.device = "cuda:" + std::to_string(device);
  r.device_total = static_cast<int64_t>(device_total);
  r.device_free = static_cast<int64_t>(device_free);
  for (const Bucket& b : buckets_) {
    if (b.bytes > 0) r.add(b.name, b.kind, b.bytes);
  }
  return r;
}

DeviceAllocatorStats AllocationLedger::stats(int64_t reserved_bytes, int64_t used_bytes) const {
  DeviceAllocatorStats s;
  s.allocation_calls = allocation_calls_;
  s.live_bytes = live_bytes_;
  s.peak_live_bytes = peak_live_bytes_;
  s.reserved_bytes = reserved_bytes;
  s.used_bytes = used_bytes;
  return s;
}

Status check_request_bytes(std::string_view bucket, int64_t bytes) {
  if (bytes > 0) return Status::Ok();
  return invalid_argument("device allocation for bucket '" + std::string(bucket) + "': bytes = " +
                          std::to_string(bytes) + " must be > 0");
}

Status check_keep_bytes(int64_t keep_bytes) {
  if (keep_bytes >= 0) return Status::Ok();
  return invalid_argument("trim_to: keep_bytes = " + std::to_string(keep_bytes) + " < 0");
}

std::string bytes_text(int64_t bytes) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%lld bytes (%.2f MiB)", static_cast<long long>(bytes),
                static_cast<double>(bytes) / (1024.0 * 1024.0));
  return buf;
}

std::string pointer_text(const void* ptr) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%p", ptr);
  return buf;
}

}  // namespace kvflash::cuda
