#include "kvflash/memory_report.h"

#include <cstdio>

namespace kvflash {
namespace {

std::string mib(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", static_cast<double>(bytes) / (1024.0 * 1024.0));
  return buf;
}

const char* kind_name(MemoryKind k) {
  switch (k) {
    case MemoryKind::kv_cache: return "kv";
    case MemoryKind::workspace: return "workspace";
    case MemoryKind::staging: return "staging";
    case MemoryKind::other: return "other";
  }
  return "?";
}

}  // namespace

int64_t MemoryReport::bytes(MemoryKind kind) const {
  int64_t sum = 0;
  for (const MemoryBucket& b : buckets) sum += b.kind == kind ? b.bytes : 0;
  return sum;
}

int64_t MemoryReport::ours() const {
  int64_t sum = 0;
  for (const MemoryBucket& b : buckets) sum += b.bytes;
  return sum;
}

std::string MemoryReport::summary_line() const {
  const int64_t other = bytes(MemoryKind::staging) + bytes(MemoryKind::other);
  return device + " (MiB) | " + mib(device_total) + " total = " + mib(device_free) + " free + (" + mib(ours()) +
         " = " + mib(bytes(MemoryKind::kv_cache)) + " kv + " + mib(bytes(MemoryKind::workspace)) + " workspace + " +
         mib(other) + " other) + " + mib(unaccounted()) + " unaccounted";
}

std::string MemoryReport::to_string() const {
  // Per-layer KV buckets are folded when there are more than a few, so the table stays readable; the first and
  // last layer are shown because sliding-window models differ between them.
  constexpr size_t kShownKvBuckets = 4;
  size_t kv_count = 0;
  for (const MemoryBucket& b : buckets) kv_count += b.kind == MemoryKind::kv_cache ? 1 : 0;
  std::string out;
  char line[160];
  size_t kv_seen = 0;
  for (const MemoryBucket& b : buckets) {
    if (b.kind == MemoryKind::kv_cache && kv_count > kShownKvBuckets) {
      ++kv_seen;
      if (kv_seen == 2) {
        std::snprintf(line, sizeof line, "  %-24s %-10s %14s MiB\n", "... (more layers)", "", "");
        out += line;
      }
      if (kv_seen != 1 && kv_seen != kv_count) continue;
    }
    std::snprintf(line, sizeof line, "  %-24s %-10s %14s MiB\n", b.name.c_str(), kind_name(b.kind),
                  mib(b.bytes).c_str());
    out += line;
  }
  const MemoryKind kinds[] = {MemoryKind::kv_cache, MemoryKind::workspace, MemoryKind::staging, MemoryKind::other};
  for (MemoryKind k : kinds) {
    std::snprintf(line, sizeof line, "  %-24s %-10s %14s MiB\n", (std::string("total ") + kind_name(k)).c_str(), "",
                  mib(bytes(k)).c_str());
    out += line;
  }
  return out + summary_line() + "\n";
}

}  // namespace kvflash
