// What a device-resident KvCache (residence cuda) does without touching a GPU: config validation comes first, a
// build without CUDA says `unsupported`, a missing allocator is named, and create() takes exactly the planned
// device bytes (arena in "kv.cache", batch tables in "kv.page_table") plus a host staging buffer of one page of K
// and V, and nothing after. A host allocator fake stands in for the device: create() copies nothing.
#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kvcache/cache_test_util.h"
#include "kvcache/device_transfer.h"
#include "kvflash/backend.h"
#include "kvflash/device_memory.h"
#include "kvflash/kv_cache.h"

namespace kvflash {
namespace {

using testing::make_cache;
using testing::random_rows;

// Hands out host memory and records every request per bucket, so a test can see what create() asked for.
class RecordingAllocator : public DeviceAllocator {
 public:
  StatusOr<void*> allocate(std::string_view bucket, MemoryKind kind, int64_t bytes, void*) override {
    auto block = std::make_unique<std::byte[]>(static_cast<size_t>(bytes));
    void* ptr = block.get();
    blocks_[ptr] = Block{std::string(bucket), kind, bytes, std::move(block)};
    ++calls_;
    return ptr;
  }
  Status deallocate(void* ptr, void*) override {
    if (blocks_.erase(ptr) == 0) return invalid_argument("not ours");
    return Status::Ok();
  }
  Status trim_to(int64_t) override { return Status::Ok(); }
  StatusOr<MemoryReport> report() const override {
    MemoryReport r;
    r.device = "fake";
    for (const auto& [ptr, b] : blocks_) r.add(b.bucket, b.kind, b.bytes);
    return r;
  }
  DeviceAllocatorStats stats() const override {
    DeviceAllocatorStats s;
    s.allocation_calls = calls_;
    for (const auto& [ptr, b] : blocks_) s.live_bytes += b.bytes;
    return s;
  }
  void reset_peak() override {}
  DeviceAllocStrategy strategy() const override { return DeviceAllocStrategy::stream_ordered; }

  int64_t bucket_bytes(const std::string& name) const {
    int64_t bytes = 0;
    for (const auto& [ptr, b] : blocks_) bytes += b.bucket == name ? b.bytes : 0;
    return bytes;
  }

 private:
  struct Block {
    std::string bucket;
    MemoryKind kind;
    int64_t bytes;
    std::unique_ptr<std::byte[]> memory;
  };
  std::map<void*, Block> blocks_;
  int64_t calls_ = 0;
};

KvCacheConfig device_config() {
  KvCacheConfig c;
  c.n_layers = 3;
  c.n_head_kv = 2;
  c.d_k = 128;
  c.d_v = 64;
  c.k_type = KvType::q8_0;
  c.v_type = KvType::turbo3;
  c.page_rows = 16;
  c.n_pages = 10;
  c.max_sequences = 4;
  c.residence = KvResidence::cuda;
  return c;
}

TEST(DeviceCacheConfig, ABadFieldIsNamedBeforeResidenceMatters) {
  KvCacheConfig c = device_config();
  c.d_k = 100;  // not a multiple of q8_0's 32-value block
  RecordingAllocator allocator;
  StatusOr<KvCache> cache = KvCache::create(c, &allocator);
  ASSERT_FALSE(cache.ok());
  EXPECT_EQ(cache.status().code(), StatusCode::invalid_argument);
  EXPECT_NE(cache.status().message().find("d_k = 100"), std::string::npos) << cache.status().message();
  EXPECT_EQ(allocator.stats().allocation_calls, 0);
}

TEST(DeviceCacheConfig, WithoutCudaItIsUnsupportedAndWithoutAnAllocatorItIsNamed) {
  StatusOr<KvCache> cache = KvCache::create(device_config(), nullptr);
  ASSERT_FALSE(cache.ok());
  if (!kvcache::device_transfer_compiled()) {
    EXPECT_EQ(cache.status().code(), StatusCode::unsupported);
    EXPECT_NE(cache.status().message().find("residence = cuda"), std::string::npos) << cache.status().message();
    RecordingAllocator allocator;
    StatusOr<KvCache> with_allocator = KvCache::create(device_config(), &allocator);
    ASSERT_FALSE(with_allocator.ok());
    EXPECT_EQ(with_allocator.status().code(), StatusCode::unsupported);
    EXPECT_EQ(allocator.stats().allocation_calls, 0);
  } else {
    EXPECT_EQ(cache.status().code(), StatusCode::invalid_argument);
    EXPECT_NE(cache.status().message().find("needs a DeviceAllocator"), std::string::npos)
        << cache.status().message();
  }
}

TEST(DeviceCacheConfig, CreateTakesThePlannedBucketsAndAOnePageStagingBuffer) {
  if (!kvcache::device_transfer_compiled()) GTEST_SKIP() << "skipped: this build has no CUDA backend";
  RecordingAllocator allocator;
  StatusOr<KvCache> cache = KvCache::create(device_config(), &allocator);
  ASSERT_TRUE(cache.ok()) << cache.status().message();
  const KvCacheLayout l = cache->layout();  // a copy: the cache is moved from below
  EXPECT_EQ(cache->residence(), KvResidence::cuda);
  EXPECT_EQ(allocator.bucket_bytes("kv.cache"), l.arena_bytes);
  // [max_sequences, max_pages_per_seq] page indices + [max_sequences] lengths, int32.
  const int64_t table_bytes = (4 * cache->max_pages_per_seq() + 4) * 4;
  EXPECT_EQ(allocator.bucket_bytes("kv.page_table"), table_bytes);
  EXPECT_EQ(allocator.stats().allocation_calls, 2);
  StatusOr<MemoryReport> report = allocator.report();
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(report->bytes(MemoryKind::kv_cache), l.arena_bytes + table_bytes);
  // One page of K and V of one layer: q8_0 rows of 128 values are 136 bytes, turbo3 rows of 64 (padded to 128)
  // values are 52 bytes; 2 heads x 16 rows each.
  EXPECT_EQ(l.k_page_bytes, 2 * 16 * 136);
  EXPECT_EQ(cache->staging_bytes(), l.k_page_bytes + l.v_page_bytes);

  // Bookkeeping calls allocate nothing more.
  StatusOr<SeqId> a = cache->add_sequence();
  ASSERT_TRUE(a.ok());
  StatusOr<SeqId> b = cache->fork(*a);
  ASSERT_TRUE(b.ok());
  EXPECT_TRUE(cache->remove(*b).ok());
  EXPECT_EQ(allocator.stats().allocation_calls, 2);

  // Host spans of a device row do not exist; the copying form is the one to use.
  StatusOr<std::span<const std::byte>> row = cache->k_row(*a, 0, 0, 0);
  ASSERT_FALSE(row.ok());
  EXPECT_EQ(row.status().code(), StatusCode::unsupported);
  EXPECT_NE(row.status().message().find("copy_k_row"), std::string::npos) << row.status().message();

  // A moved cache hands its buffers over: nothing is freed or taken twice.
  KvCache moved = std::move(*cache);
  EXPECT_EQ(allocator.bucket_bytes("kv.cache"), l.arena_bytes);
}

TEST(DeviceCacheConfig, DestroyingADeviceCacheReturnsEveryByte) {
  if (!kvcache::device_transfer_compiled()) GTEST_SKIP() << "skipped: this build has no CUDA backend";
  RecordingAllocator allocator;
  {
    StatusOr<KvCache> cache = KvCache::create(device_config(), &allocator);
    ASSERT_TRUE(cache.ok()) << cache.status().message();
    EXPECT_GT(allocator.stats().live_bytes, 0);
  }
  EXPECT_EQ(allocator.stats().live_bytes, 0);
}

TEST(DeviceCacheConfig, AHostCacheRefusesTheDeviceBatchAndCopiesRowsLikeItsSpans) {
  KvCacheConfig c = device_config();
  c.residence = KvResidence::host;
  KvCache cache = make_cache(c);
  EXPECT_EQ(cache.staging_bytes(), 0);
  StatusOr<SeqId> seq = cache.add_sequence();
  ASSERT_TRUE(seq.ok());
  const testing::TokenRows rows = random_rows(c, 21, 7);
  ASSERT_TRUE(cache.append(*seq, rows.k, rows.v, rows.n_tokens).ok());

  const std::vector<SeqId> batch = {*seq};
  StatusOr<DeviceBatch> device = cache.fill_batch_device(batch);
  ASSERT_FALSE(device.ok());
  EXPECT_EQ(device.status().code(), StatusCode::unsupported);

  for (int64_t layer = 0; layer < c.n_layers; ++layer) {
    for (int64_t pos : {0, 15, 16, 20}) {
      for (int64_t head = 0; head < c.n_head_kv; ++head) {
        std::vector<std::byte> k(static_cast<size_t>(cache.layout().k_row_bytes), std::byte{0xee});
        std::vector<std::byte> v(static_cast<size_t>(cache.layout().v_row_bytes), std::byte{0xee});
        ASSERT_TRUE(cache.copy_k_row(*seq, layer, pos, head, k).ok());
        ASSERT_TRUE(cache.copy_v_row(*seq, layer, pos, head, v).ok());
        EXPECT_EQ(k, testing::bytes_of(*cache.k_row(*seq, layer, pos, head)));
        EXPECT_EQ(v, testing::bytes_of(*cache.v_row(*seq, layer, pos, head)));
      }
    }
  }
  std::vector<std::byte> short_out(3);
  const Status bad = cache.copy_k_row(*seq, 0, 0, 0, short_out);
  EXPECT_EQ(bad.code(), StatusCode::invalid_argument);
  EXPECT_NE(bad.message().find("out has 3 bytes"), std::string::npos) << bad.message();
  EXPECT_EQ(cache.copy_v_row(*seq, 0, 21, 0, short_out).code(), StatusCode::invalid_argument);
}

// What `kvflash bench --backend cuda` times with (a stream of its own, the gate that holds it, the L2 size for the
// eviction buffer) fails as a Status where there is no device to time on, never as a crash.
TEST(DeviceCacheConfig, TheBenchsTimingHelpersWithoutADeviceAreStatuses) {
  if (backend_available(BackendKind::cuda)) GTEST_SKIP() << "a CUDA device is present: tests/gpu/stream_gate_test";
  const StatusCode expected = kvcache::device_transfer_compiled() ? StatusCode::backend_error : StatusCode::unsupported;
  StatusOr<kvcache::StreamGate> gate = kvcache::StreamGate::create();
  ASSERT_FALSE(gate.ok());
  EXPECT_EQ(gate.status().code(), expected) << gate.status().message();
  StatusOr<kvcache::DeviceStream> stream = kvcache::DeviceStream::create();
  ASSERT_FALSE(stream.ok());
  EXPECT_EQ(stream.status().code(), expected) << stream.status().message();
  StatusOr<int64_t> l2 = kvcache::device_l2_bytes();
  ASSERT_FALSE(l2.ok());
  EXPECT_EQ(l2.status().code(), expected) << l2.status().message();
}

}  // namespace
}  // namespace kvflash
