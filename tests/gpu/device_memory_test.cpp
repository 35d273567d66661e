// Device memory (issue 6, seeds 000 and 004): both allocator strategies count every byte in a bucket, fail with a
// Status that names the bucket, hold nothing after frees that they were not asked to keep, and an attention call
// after warm-up allocates nothing. The seed-000 invariant: under a fixed device budget a q8_0 cache reaches at
// least the depth an f16 cache reaches, with lower peak bytes at every depth.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "gpu/gpu_harness.h"
#include "kvflash/device_memory.h"
#include "kvflash/quantize.h"
#include "kvflash/workspace.h"

namespace kvflash::testing::gpu {
namespace {

#if defined(KVFLASH_HAVE_CUDA)

constexpr int64_t kMiB = int64_t{1} << 20;
constexpr int64_t kGiB = int64_t{1} << 30;
constexpr DeviceAllocStrategy kStrategies[] = {DeviceAllocStrategy::stream_ordered, DeviceAllocStrategy::vmm};

std::string name(DeviceAllocStrategy s) { return s == DeviceAllocStrategy::vmm ? "vmm" : "stream_ordered"; }

std::unique_ptr<DeviceAllocator> make_allocator(DeviceAllocStrategy strategy, int64_t release_threshold = 0) {
  DeviceAllocatorConfig config;
  config.strategy = strategy;
  config.release_threshold_bytes = release_threshold;
  auto a = DeviceAllocator::create(config);
  EXPECT_TRUE(a.ok()) << name(strategy) << ": " << a.status().message();
  return a.ok() ? std::move(*a) : nullptr;
}

int64_t device_free_bytes() {
  size_t free_now = 0, total = 0;
  EXPECT_EQ(cudaMemGetInfo(&free_now, &total), cudaSuccess);
  return static_cast<int64_t>(free_now);
}

int64_t bucket_bytes(const MemoryReport& r, const std::string& bucket) {
  int64_t sum = 0;
  for (const MemoryBucket& b : r.buckets) sum += b.name == bucket ? b.bytes : 0;
  return sum;
}

TEST(DeviceMemory, EveryLiveByteIsInANamedBucket) {
  KVFLASH_REQUIRE_GPU();
  for (DeviceAllocStrategy strategy : kStrategies) {
    SCOPED_TRACE(name(strategy));
    auto alloc = make_allocator(strategy);
    ASSERT_NE(alloc, nullptr);
    auto kv = DeviceBuffer::allocate(*alloc, "kv.layer.0", MemoryKind::kv_cache, 100 * kMiB + 7);
    auto kv1 = DeviceBuffer::allocate(*alloc, "kv.layer.1", MemoryKind::kv_cache, 100 * kMiB);
    auto ws = DeviceBuffer::allocate(*alloc, "workspace", MemoryKind::workspace, 3 * kMiB + 512);
    ASSERT_TRUE(kv.ok() && kv1.ok() && ws.ok());
    EXPECT_EQ(reinterpret_cast<uintptr_t>(kv->data()) % 256, 0u);
    EXPECT_EQ(alloc->stats().allocation_calls, 3);
    EXPECT_EQ(alloc->stats().live_bytes, 200 * kMiB + 7 + 3 * kMiB + 512);
    auto r = alloc->report();
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_EQ(r->bytes(MemoryKind::kv_cache), 200 * kMiB + 7);
    EXPECT_EQ(bucket_bytes(*r, "workspace"), 3 * kMiB + 512);
    // Everything the strategy holds from the driver is in some bucket (granularity or cache included).
    EXPECT_EQ(r->ours(), alloc->stats().reserved_bytes) << r->to_string();
    EXPECT_GE(r->unaccounted(), 0) << r->summary_line();
    ws->reset();
    kv1->reset();
    auto after = alloc->report();
    ASSERT_TRUE(after.ok());
    EXPECT_EQ(bucket_bytes(*after, "workspace"), 0);
    EXPECT_EQ(bucket_bytes(*after, "kv.layer.1"), 0);
    EXPECT_EQ(alloc->stats().live_bytes, 100 * kMiB + 7);
    EXPECT_EQ(alloc->stats().peak_live_bytes, 200 * kMiB + 7 + 3 * kMiB + 512);
  }
}

TEST(DeviceMemory, OutOfMemoryIsAStatusNamingTheBucketAndBytes) {
  KVFLASH_REQUIRE_GPU();
  for (DeviceAllocStrategy strategy : kStrategies) {
    SCOPED_TRACE(name(strategy));
    auto alloc = make_allocator(strategy);
    ASSERT_NE(alloc, nullptr);
    const int64_t too_much = device_free_bytes() + 4 * kGiB;
    auto p = alloc->allocate("kv.too.big", MemoryKind::kv_cache, too_much);
    ASSERT_FALSE(p.ok());
    EXPECT_EQ(p.status().code(), StatusCode::out_of_memory);
    EXPECT_NE(p.status().message().find("kv.too.big"), std::string::npos) << p.status().message();
    EXPECT_NE(p.status().message().find(std::to_string(too_much)), std::string::npos) << p.status().message();
    EXPECT_EQ(alloc->stats().live_bytes, 0);
    // The allocator still works after the failure.
    auto small = DeviceBuffer::allocate(*alloc, "after", MemoryKind::other, kMiB);
    EXPECT_TRUE(small.ok()) << small.status().message();
    EXPECT_EQ(alloc->deallocate(reinterpret_cast<void*>(0x1000), nullptr).code(), StatusCode::invalid_argument);
  }
}

TEST(DeviceMemory, FreedMemoryGoesBackWhenNotAskedToBeKept) {
  KVFLASH_REQUIRE_GPU();
  // stream_ordered with a large release threshold caches the freed bytes until trim_to; vmm never caches.
  auto cached = make_allocator(DeviceAllocStrategy::stream_ordered, 4 * kGiB);
  ASSERT_NE(cached, nullptr);
  {
    auto big = DeviceBuffer::allocate(*cached, "transient", MemoryKind::other, 512 * kMiB);
    ASSERT_TRUE(big.ok());
  }
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_GE(cached->stats().reserved_bytes, 512 * kMiB);
  auto report = cached->report();
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(bucket_bytes(*report, "allocator.cached"), cached->stats().reserved_bytes) << report->to_string();
  ASSERT_TRUE(cached->trim_to(0).ok());
  EXPECT_EQ(cached->stats().reserved_bytes, 0);

  auto vmm = make_allocator(DeviceAllocStrategy::vmm);
  ASSERT_NE(vmm, nullptr);
  const int64_t before = device_free_bytes();
  {
    auto big = DeviceBuffer::allocate(*vmm, "transient", MemoryKind::other, 512 * kMiB);
    ASSERT_TRUE(big.ok());
    EXPECT_LE(device_free_bytes(), before - 512 * kMiB);
  }
  EXPECT_EQ(vmm->stats().reserved_bytes, 0);
  EXPECT_GE(device_free_bytes(), before - 2 * kMiB);  // the driver's own bookkeeping may move by a page
}

// A contiguous [seq][head][row] cache of `n_kv` rows of `type` on the device, filled by repeating one tile of
// rows quantized on the host from random values (quantizing gigabytes on the host would dominate the test).
Status fill_cache(void* dst, KvType type, int64_t n_head_kv, int64_t n_kv, int64_t d, uint64_t seed) {
  constexpr int64_t kTileRows = 1024;
  const int64_t rb = row_bytes(type, d);
  std::vector<uint8_t> tile(static_cast<size_t>(kTileRows * rb));
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> values(static_cast<size_t>(d));
  for (int64_t r = 0; r < kTileRows; ++r) {
    for (float& v : values) v = normal(rng);
    KVFLASH_RETURN_IF_ERROR(quantize_row(type, values.data(), d, tile.data() + r * rb));
  }
  auto* out = static_cast<uint8_t*>(dst);
  const int64_t total_rows = n_head_kv * n_kv;
  for (int64_t r = 0; r < total_rows; r += kTileRows) {
    const int64_t rows = std::min(kTileRows, total_rows - r);
    KVFLASH_RETURN_IF_ERROR(cuda_ok(cudaMemcpy(out + r * rb, tile.data(), static_cast<size_t>(rows * rb),
                                               cudaMemcpyHostToDevice),
                                    "fill cache"));
  }
  return Status::Ok();
}

struct DepthRun {
  bool fits = false;
  int64_t peak_bytes = 0;  // kvflash's live bytes at the peak of this depth
  Status status;
};

// One long-context step at `depth`: a cache of that depth (K and V), the planned workspace, a prefill-shaped
// query of `n_q` rows, all from `alloc`; then the attention call, which must not allocate.
DepthRun run_at_depth(DeviceAllocator& alloc, KvType type, int64_t depth, int64_t n_q) {
  constexpr int64_t kHeadsQ = 32, kHeadsKv = 8, kDim = 128;
  DepthRun run;
  alloc.reset_peak();
  const int64_t rb = row_bytes(type, kDim);
  const int64_t cache_bytes = kHeadsKv * depth * rb;
  auto k = DeviceBuffer::allocate(alloc, "kv.k", MemoryKind::kv_cache, cache_bytes);
  if (!k.ok()) return {false, 0, k.status()};
  auto v = DeviceBuffer::allocate(alloc, "kv.v", MemoryKind::kv_cache, cache_bytes);
  if (!v.ok()) return {false, 0, v.status()};
  WorkspaceLimits limits;
  limits.max_sequences = 1;
  limits.max_query_rows = n_q;
  limits.kv_capacity_tokens = depth;
  limits.model.layers = {LayerShape{kHeadsQ, kHeadsKv, kDim, kDim, 0}};
  limits.k_type = limits.v_type = type;
  limits.caps = caps_for(BackendKind::cuda);
  auto plan = plan_workspace(limits);
  if (!plan.ok()) return {false, 0, plan.status()};
  const int64_t q_bytes = n_q * kHeadsQ * kDim * 4;
  auto q = DeviceBuffer::allocate(alloc, "activations.q", MemoryKind::other, q_bytes);
  auto o = DeviceBuffer::allocate(alloc, "activations.o", MemoryKind::other, q_bytes);
  if (!q.ok()) return {false, 0, q.status()};
  if (!o.ok()) return {false, 0, o.status()};
  StatusOr<DeviceBuffer> ws = DeviceBuffer{};
  if (plan->total_bytes > 0) ws = DeviceBuffer::allocate(alloc, "workspace", MemoryKind::workspace, plan->total_bytes);
  if (!ws.ok()) return {false, 0, ws.status()};

  if (Status s = fill_cache(k->data(), type, kHeadsKv, depth, kDim, 11); !s.ok()) return {false, 0, s};
  if (Status s = fill_cache(v->data(), type, kHeadsKv, depth, kDim, 12); !s.ok()) return {false, 0, s};
  std::vector<float> q_host(static_cast<size_t>(n_q * kHeadsQ * kDim));
  std::mt19937 rng(static_cast<unsigned>(depth));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (float& x : q_host) x = normal(rng);
  if (Status s = cuda_ok(cudaMemcpy(q->data(), q_host.data(), static_cast<size_t>(q_bytes), cudaMemcpyHostToDevice),
                         "upload Q");
      !s.ok()) {
    return {false, 0, s};
  }

  AttentionProblem p;
  p.shape = {1, n_q, depth, kHeadsQ, kHeadsKv, kDim, kDim};
  p.q = {static_cast<const float*>(q->data()), {q_bytes, kDim * 4, kHeadsQ * kDim * 4}};
  const Strides kv_stride{cache_bytes, depth * rb, rb};
  p.k = {type, k->data(), kv_stride, {}};
  p.v = {type, v->data(), kv_stride, {}};
  p.o = {static_cast<float*>(o->data()), {q_bytes, kDim * 4, kHeadsQ * kDim * 4}};
  p.options.causal = true;
  auto route = plan_route(p, caps_for(BackendKind::cuda));
  if (!route.ok()) return {false, 0, route.status()};
  EXPECT_LE(route->workspace_bytes, plan->total_bytes) << "depth " << depth;
  const int64_t calls_before = alloc.stats().allocation_calls;
  const int64_t free_before = device_free_bytes();
  Status s = attend(p, *route, ws->data(), static_cast<size_t>(ws->bytes()), nullptr);
  if (s.ok()) s = cuda_ok(cudaDeviceSynchronize(), "attend at depth");
  if (!s.ok()) return {false, 0, s};
  EXPECT_EQ(alloc.stats().allocation_calls, calls_before) << "an attention call allocated (depth " << depth << ")";
  EXPECT_EQ(device_free_bytes(), free_before) << "device free bytes moved during attend (depth " << depth << ")";
  run.fits = true;
  run.peak_bytes = alloc.stats().peak_live_bytes;
  return run;
}

TEST(DeviceMemory, AttentionCallsAfterWarmUpAllocateNothing) {
  KVFLASH_REQUIRE_GPU();
  for (DeviceAllocStrategy strategy : kStrategies) {
    for (int64_t n_q : {1, 64}) {  // the decode kernel and the prefill route
      SCOPED_TRACE(name(strategy) + " n_q=" + std::to_string(n_q));
      auto alloc = make_allocator(strategy);
      ASSERT_NE(alloc, nullptr);
      // run_at_depth checks allocation_calls and the device's free bytes around its call; ten in a row here.
      for (int i = 0; i < 10; ++i) {
        DepthRun r = run_at_depth(*alloc, KvType::q8_0, 8192, n_q);
        ASSERT_TRUE(r.fits) << r.status.message();
      }
    }
  }
}

TEST(DeviceMemory, ReservedWorkspaceEqualsThePlan) {
  KVFLASH_REQUIRE_GPU();
  WorkspaceLimits limits;
  limits.max_sequences = 4;
  limits.max_query_rows = 512;
  limits.kv_capacity_tokens = 32768;
  limits.model.layers = {LayerShape{32, 8, 128, 128, 0}};
  limits.k_type = KvType::q4_0;
  limits.v_type = KvType::q8_0;
  limits.caps = caps_for(BackendKind::cuda);
  auto plan = plan_workspace(limits);
  ASSERT_TRUE(plan.ok()) << plan.status().message();
  ASSERT_GT(plan->total_bytes, 0);
  for (DeviceAllocStrategy strategy : kStrategies) {
    SCOPED_TRACE(name(strategy));
    auto alloc = make_allocator(strategy);
    ASSERT_NE(alloc, nullptr);
    auto ws = DeviceBuffer::allocate(*alloc, "workspace", MemoryKind::workspace, plan->total_bytes);
    ASSERT_TRUE(ws.ok());
    auto r = alloc->report();
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->bytes(MemoryKind::workspace), plan->total_bytes);
    // What the driver holds for it: the plan plus at most one VMM granule of rounding.
    EXPECT_LE(alloc->stats().reserved_bytes - plan->total_bytes, 2 * kMiB);
  }
}

// Seed 000: llama.cpp's q8_0 cache ran out of memory before its f16 cache because f16 copies of K/V grew with the
// context. Here a ballast leaves ~6 GiB, and each type's cache grows until the allocator says out_of_memory.
TEST(DeviceMemory, QuantizedCacheReachesAtLeastTheDepthOfF16WithLowerPeaks) {
  KVFLASH_REQUIRE_GPU();
  constexpr int64_t kBudget = 6 * kGiB;
  const int64_t free_now = device_free_bytes();
  ASSERT_GT(free_now, kBudget + kGiB);
  DeviceBytes ballast(static_cast<size_t>(free_now - kBudget));
  ASSERT_TRUE(ballast.ok());
  const std::vector<int64_t> depths = {65536, 131072, 262144, 524288, 1048576, 1572864, 2097152, 3145728, 4194304};
  constexpr int64_t kPrefillRows = 32;
  for (DeviceAllocStrategy strategy : kStrategies) {
    SCOPED_TRACE(name(strategy));
    std::vector<int64_t> peak_f16, peak_q8;
    for (KvType type : {KvType::f16, KvType::q8_0}) {
      auto alloc = make_allocator(strategy);
      ASSERT_NE(alloc, nullptr);
      std::vector<int64_t>& peaks = type == KvType::f16 ? peak_f16 : peak_q8;
      for (int64_t depth : depths) {
        DepthRun r = run_at_depth(*alloc, type, depth, kPrefillRows);
        if (!r.fits) {
          EXPECT_EQ(r.status.code(), StatusCode::out_of_memory) << r.status.message();
          EXPECT_NE(r.status.message().find("kv."), std::string::npos) << r.status.message();
          break;
        }
        peaks.push_back(r.peak_bytes);
        ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      }
    }
    ASSERT_FALSE(peak_f16.empty());
    EXPECT_GE(peak_q8.size(), peak_f16.size()) << "q8_0 ran out of memory at a smaller depth than f16";
    EXPECT_GT(peak_q8.size(), peak_f16.size()) << "6 GiB should hold a deeper q8_0 cache than f16";
    for (size_t i = 0; i < std::min(peak_f16.size(), peak_q8.size()); ++i) {
      EXPECT_LT(peak_q8[i], peak_f16[i]) << "depth " << depths[i];
      std::printf("[ %s ] depth %lld: peak f16 %.1f MiB, q8_0 %.1f MiB\n", name(strategy).c_str(),
                  static_cast<long long>(depths[i]), peak_f16[i] / double(kMiB), peak_q8[i] / double(kMiB));
    }
    std::printf("[ %s ] deepest: f16 %lld, q8_0 %lld keys\n", name(strategy).c_str(),
                static_cast<long long>(depths[peak_f16.size() - 1]),
                static_cast<long long>(depths[peak_q8.size() - 1]));
  }
}

#else

TEST(DeviceMemory, NeedsCuda) { GTEST_SKIP() << "skipped: no CUDA device (this build has no CUDA backend)"; }

#endif

}  // namespace
}  // namespace kvflash::testing::gpu
