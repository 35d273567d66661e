// A device-resident KvCache (residence cuda) is the host cache in device memory: the same calls on a host cache and
// a device cache leave the same bytes (every sequence's checkpoint compared byte for byte, rows copied back), and
// attention on the cuda backend over the device cache gives what the reference oracle gives over the host cache.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gpu/gpu_harness.h"
#include "kvcache/cache_test_util.h"
#include "kvcache/device_transfer.h"
#include "kvflash/attention.h"
#include "kvflash/device_memory.h"
#include "kvflash/kv_cache.h"
#include "kvflash/reference.h"
#include "kvflash/route.h"

namespace kvflash {
namespace {

using testing::random_rows;
using testing::TokenRows;

struct TypePair {
  KvType k, v;
  int64_t d_k, d_v;
};

const TypePair kPairs[] = {
    {KvType::f16, KvType::f16, 128, 128},
    {KvType::q8_0, KvType::q4_0, 128, 128},
    {KvType::turbo3, KvType::turbo4, 128, 64},
    {KvType::q4_1, KvType::bf16, 64, 64},
};

std::string pair_name(const TypePair& p) {
  return std::string(kv_traits(p.k).name) + "/" + std::string(kv_traits(p.v).name) + " d " +
         std::to_string(p.d_k) + "/" + std::to_string(p.d_v);
}

KvCacheConfig config_for(const TypePair& p) {
  KvCacheConfig c;
  c.n_layers = 2;
  c.n_head_kv = 2;
  c.d_k = p.d_k;
  c.d_v = p.d_v;
  c.k_type = p.k;
  c.v_type = p.v;
  c.page_rows = 8;
  c.n_pages = 48;
  c.max_sequences = 6;
  return c;
}

// A host cache and a device cache of one config; every call goes to both and must return the same.
struct TwinCaches {
  std::unique_ptr<DeviceAllocator> allocator;
  std::unique_ptr<KvCache> host, device;

  static void make(const KvCacheConfig& c, TwinCaches* out) {
    StatusOr<std::unique_ptr<DeviceAllocator>> a = DeviceAllocator::create(DeviceAllocatorConfig{});
    ASSERT_TRUE(a.ok()) << a.status().message();
    out->allocator = std::move(*a);
    StatusOr<KvCache> h = KvCache::create(c);
    ASSERT_TRUE(h.ok()) << h.status().message();
    KvCacheConfig dc = c;
    dc.residence = KvResidence::cuda;
    StatusOr<KvCache> d = KvCache::create(dc, out->allocator.get());
    ASSERT_TRUE(d.ok()) << d.status().message();
    out->host = std::make_unique<KvCache>(std::move(*h));
    out->device = std::make_unique<KvCache>(std::move(*d));
  }
  SeqId add() {
    StatusOr<SeqId> h = host->add_sequence(), d = device->add_sequence();
    EXPECT_TRUE(h.ok() && d.ok());
    EXPECT_EQ(*h, *d);
    return *h;
  }
  void append(SeqId seq, const TokenRows& rows) {
    const Status h = host->append(seq, rows.k, rows.v, rows.n_tokens);
    const Status d = device->append(seq, rows.k, rows.v, rows.n_tokens);
    ASSERT_TRUE(h.ok()) << h.message();
    ASSERT_TRUE(d.ok()) << d.message();
  }
  SeqId fork(SeqId seq) {
    StatusOr<SeqId> h = host->fork(seq), d = device->fork(seq);
    EXPECT_TRUE(h.ok() && d.ok());
    EXPECT_EQ(*h, *d);
    return *h;
  }
  void truncate(SeqId seq, int64_t n) {
    ASSERT_TRUE(host->truncate(seq, n).ok());
    ASSERT_TRUE(device->truncate(seq, n).ok());
  }
};

// Every sequence's checkpoint (all its stored bytes) and a sample of rows copied back one by one.
void expect_same_bytes(const TwinCaches& t, const std::vector<SeqId>& seqs, const std::string& when) {
  EXPECT_EQ(t.host->pages_free(), t.device->pages_free()) << when;
  for (SeqId s : seqs) {
    StatusOr<std::vector<std::byte>> h = t.host->checkpoint(s), d = t.device->checkpoint(s);
    ASSERT_TRUE(h.ok()) << h.status().message();
    ASSERT_TRUE(d.ok()) << d.status().message();
    EXPECT_TRUE(*h == *d) << when << ": checkpoint of sequence " << s << " differs";
    const int64_t length = *t.host->length(s);
    for (int64_t pos = 0; pos < length; pos += 5) {
      for (int64_t layer = 0; layer < t.host->layout().n_layers; ++layer) {
        std::vector<std::byte> k(static_cast<size_t>(t.host->layout().k_row_bytes), std::byte{0xee});
        std::vector<std::byte> v(static_cast<size_t>(t.host->layout().v_row_bytes), std::byte{0xee});
        ASSERT_TRUE(t.device->copy_k_row(s, layer, pos, 1, k).ok());
        ASSERT_TRUE(t.device->copy_v_row(s, layer, pos, 1, v).ok());
        EXPECT_EQ(k, testing::bytes_of(*t.host->k_row(s, layer, pos, 1))) << when << " seq " << s << " pos " << pos;
        EXPECT_EQ(v, testing::bytes_of(*t.host->v_row(s, layer, pos, 1))) << when << " seq " << s << " pos " << pos;
      }
    }
  }
}

TEST(DeviceKvCache, AppendForkWriteTruncateAndCheckpointsLeaveTheHostCachesBytes) {
  KVFLASH_REQUIRE_GPU();
  for (const TypePair& pair : kPairs) {
    SCOPED_TRACE(pair_name(pair));
    const KvCacheConfig c = config_for(pair);
    TwinCaches t;
    TwinCaches::make(c, &t);
    if (HasFatalFailure()) return;
    uint64_t seed = 900;
    // A: 37 tokens in two appends (the second starts inside a page).
    const SeqId a = t.add();
    t.append(a, random_rows(c, 11, ++seed));
    t.append(a, random_rows(c, 26, ++seed));
    expect_same_bytes(t, {a}, "after append");
    // B shares A's pages; growing B copies the shared, partly filled last page (device to device).
    const SeqId b = t.fork(a);
    t.append(b, random_rows(c, 5, ++seed));
    // Overwriting rows 3..12 of A's layer 1 copies the pages A still shares with B before the write.
    KvCacheConfig one_layer = c;
    one_layer.n_layers = 1;
    const TokenRows patch = random_rows(one_layer, 10, ++seed);
    ASSERT_TRUE(t.host->write(a, 1, 3, patch.k, patch.v, 10).ok());
    ASSERT_TRUE(t.device->write(a, 1, 3, patch.k, patch.v, 10).ok());
    expect_same_bytes(t, {a, b}, "after fork and copy-on-write");
    // Truncation inside a page, then growth over the stale rows.
    t.truncate(a, 20);
    t.append(a, random_rows(c, 13, ++seed));
    expect_same_bytes(t, {a, b}, "after truncate and append");
    // A checkpoint of the device cache restores into the host cache and vice versa, with the same bytes.
    StatusOr<std::vector<std::byte>> from_device = t.device->checkpoint(b);
    ASSERT_TRUE(from_device.ok()) << from_device.status().message();
    StatusOr<SeqId> h = t.host->restore(*from_device);
    StatusOr<std::vector<std::byte>> from_host = t.host->checkpoint(a);
    ASSERT_TRUE(from_host.ok());
    StatusOr<SeqId> d = t.device->restore(*t.host->checkpoint(b));
    ASSERT_TRUE(h.ok()) << h.status().message();
    ASSERT_TRUE(d.ok()) << d.status().message();
    EXPECT_EQ(*h, *d);
    t.append(*h, random_rows(c, 3, ++seed));
    expect_same_bytes(t, {a, b, *h}, "after restore");
    StatusOr<SeqId> d2 = t.device->restore(*from_host);
    ASSERT_TRUE(d2.ok()) << d2.status().message();
    EXPECT_TRUE(*t.device->checkpoint(*d2) == *from_host);
  }
}

#if defined(KVFLASH_HAVE_CUDA)  // the device buffers below use the CUDA runtime; without it the test skips

// Dense [n_seq, n_head, rows, d] float32 strides in bytes.
Strides dense(int64_t n_head, int64_t rows, int64_t d) {
  const int64_t row = d * static_cast<int64_t>(sizeof(float));
  return Strides{n_head * rows * row, rows * row, row};
}

TEST(DeviceKvCache, CudaAttentionOverTheDeviceCacheMatchesTheReferenceOverTheHostCache) {
  KVFLASH_REQUIRE_GPU();
  for (const TypePair& pair : kPairs) {
    const KvCacheConfig c = config_for(pair);
    TwinCaches t;
    TwinCaches::make(c, &t);
    if (HasFatalFailure()) return;
    uint64_t seed = 1700;
    // Three sequences of different lengths, one forked and truncated inside a shared page.
    const SeqId a = t.add();
    t.append(a, random_rows(c, 61, ++seed));
    const SeqId b = t.fork(a);
    t.truncate(b, 19);
    t.append(b, random_rows(c, 30, ++seed));
    const SeqId s1 = t.add();
    t.append(s1, random_rows(c, 1, ++seed));
    const std::vector<SeqId> batch = {b, s1, a};

    for (int64_t n_q : {1, 4, 40}) {  // decode, a verify step, a prefill chunk (generic or prefill kernel)
      for (int64_t layer = 0; layer < c.n_layers; ++layer) {
        SCOPED_TRACE(pair_name(pair) + " n_q " + std::to_string(n_q) + " layer " + std::to_string(layer));
        const int64_t pages_per_seq = t.host->max_pages_per_seq();
        std::vector<int32_t> table(batch.size() * static_cast<size_t>(pages_per_seq)), kv_len(batch.size());
        StatusOr<int64_t> n_kv = t.host->fill_batch(batch, pages_per_seq, table, kv_len);
        ASSERT_TRUE(n_kv.ok()) << n_kv.status().message();
        StatusOr<DeviceBatch> dev_batch = t.device->fill_batch_device(batch);
        ASSERT_TRUE(dev_batch.ok()) << dev_batch.status().message();
        ASSERT_EQ(dev_batch->n_kv, *n_kv);
        ASSERT_EQ(dev_batch->pages_per_seq, pages_per_seq);

        AttentionShape shape{static_cast<int64_t>(batch.size()), n_q, *n_kv, 8, c.n_head_kv, c.d_k, c.d_v};
        std::mt19937_64 rng(++seed);
        std::normal_distribution<float> normal(0.0f, 1.0f);
        std::vector<float> q(static_cast<size_t>(shape.n_seq * shape.n_head_q * n_q * c.d_k));
        for (float& x : q) x = normal(rng);
        const size_t o_count = static_cast<size_t>(shape.n_seq * shape.n_head_q * n_q * c.d_v);

        // The oracle over the host cache.
        std::vector<float> want(o_count, std::numeric_limits<float>::quiet_NaN());
        AttentionProblem hp;
        hp.shape = shape;
        hp.q = QueryView{q.data(), dense(shape.n_head_q, n_q, c.d_k)};
        hp.k = *t.host->k_view(layer, table.data(), pages_per_seq);
        hp.v = *t.host->v_view(layer, table.data(), pages_per_seq);
        hp.o = OutputView{want.data(), dense(shape.n_head_q, n_q, c.d_v)};
        hp.options.causal = true;
        hp.kv_len = kv_len.data();
        ASSERT_TRUE(attend_reference(hp).ok());

        // The cuda backend over the device cache; O and the workspace poisoned with NaN bytes.
        testing::gpu::DeviceBytes q_dev(q.size() * 4), o_dev(o_count * 4);
        ASSERT_TRUE(q_dev.ok() && o_dev.ok());
        ASSERT_TRUE(kvcache::copy_to_device(q_dev.data(), q.data(), static_cast<int64_t>(q.size()) * 4).ok());
        ASSERT_EQ(cudaMemset(o_dev.data(), 0xff, o_dev.size()), cudaSuccess);
        AttentionProblem dp = hp;
        dp.q.data = static_cast<const float*>(q_dev.data());
        dp.o.data = static_cast<float*>(o_dev.data());
        dp.k = *t.device->k_view(layer, dev_batch->page_table, dev_batch->pages_per_seq);
        dp.v = *t.device->v_view(layer, dev_batch->page_table, dev_batch->pages_per_seq);
        dp.kv_len = dev_batch->kv_len;
        StatusOr<Route> route = plan_route(dp, caps_for(BackendKind::cuda));
        ASSERT_TRUE(route.ok()) << route.status().message();
        testing::gpu::DeviceBytes workspace(static_cast<size_t>(route->workspace_bytes));
        ASSERT_TRUE(workspace.ok());
        if (workspace.size() > 0) {
          ASSERT_EQ(cudaMemset(workspace.data(), 0xff, workspace.size()), cudaSuccess);
        }
        const Status s = attend(dp, *route, workspace.data(), workspace.size());
        ASSERT_TRUE(s.ok()) << s.message();
        ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
        std::vector<float> got(o_count);
        ASSERT_TRUE(kvcache::copy_to_host(got.data(), o_dev.data(), static_cast<int64_t>(o_count) * 4).ok());
        const double bound = testing::gpu::is_decode_route(*route) ? testing::gpu::kDecodeTolerance
                                                                   : testing::gpu::kGenericTolerance;
        EXPECT_LE(testing::nmse(got, want), bound) << "route " << kernel_name(route->kernel);
      }
    }
  }
}

#else

TEST(DeviceKvCache, CudaAttentionOverTheDeviceCacheMatchesTheReferenceOverTheHostCache) { KVFLASH_REQUIRE_GPU(); }

#endif  // KVFLASH_HAVE_CUDA

}  // namespace
}  // namespace kvflash
