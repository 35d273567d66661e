// MemoryReport: every byte we hold on a device belongs to a named bucket (seed 004: an inflated reservation must be
// visible as a bucket, not as less free memory).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kvflash {

enum class MemoryKind : uint8_t {
  kv_cache,   // the KV cache (one bucket per layer, or one for the whole cache)
  workspace,  // the attention workspace (plan_workspace)
  staging,    // host<->device staging and other transfer buffers
  other,      // everything else we allocate (weights, activations a caller reports)
};

struct MemoryBucket {
  std::string name;  // "kv.layer.3", "workspace", ...
  MemoryKind kind = MemoryKind::other;
  int64_t bytes = 0;
};

struct MemoryReport {
  std::string device;         // "cuda:0", "host", "budget"
  int64_t device_total = 0;   // bytes the device has (or the budget planned against)
  int64_t device_free = 0;    // bytes free when the report was taken
  std::vector<MemoryBucket> buckets;

  void add(std::string name, MemoryKind kind, int64_t bytes) { buckets.push_back({std::move(name), kind, bytes}); }

  /// Bytes of every bucket of `kind`.
  int64_t bytes(MemoryKind kind) const;
  /// Bytes of all our buckets.
  int64_t ours() const;
  /// total - free - ours: memory held by someone else (the driver, another process, a leak of ours).
  int64_t unaccounted() const { return device_total - device_free - ours(); }

  /// One line, in MiB: `device | total = free + (ours = kv + workspace + other) + unaccounted`, where other
  /// includes staging.
  std::string summary_line() const;
  /// A table of the buckets (per-layer KV buckets folded into one line when there are many), then summary_line().
  std::string to_string() const;
};

}  // namespace kvflash
