// Device memory (issue 6, seeds 000 and 004): both allocator strategies count every byte in a bucket, fail with a
// Status that names the bucket, hold nothing after frees that they were not asked to keep, and an attention call
// after warm-up allocates nothing. The seed-000 invariant: under a fixed device budget a q8_0 cache reaches at
// least the depth an f16 cache reaches, with lower peak bytes at every depth.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "gpu/gpu_harness.h"
#include "kvflash/device_memory.h"
#include "kvflash/kvflash.h"
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
    auto empty = alloc->report();
    ASSERT_TRUE(empty.ok()) << empty.status().message();
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
    // What the device lost is what the buckets gained: the unaccounted bytes (the CUDA context, loaded modules)
    // stay where they were, up to the driver's page-table bookkeeping for the new mappings.
    EXPECT_LE(std::abs(r->unaccounted() - empty->unaccounted()), 8 * kMiB)
        << "empty: " << empty->summary_line() << "\nnow:   " << r->summary_line();
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

// Holds all but `budget` bytes of the device's free memory, so that a test sees a device of that size; not ok()
// when less than budget + 1 GiB is free (the test then cannot tell its own limit from someone else's).
DeviceBytes ballast_leaving(int64_t budget) {
  const int64_t free_now = device_free_bytes();
  if (free_now <= budget + kGiB) return DeviceBytes::unavailable();
  return DeviceBytes(static_cast<size_t>(free_now - budget));
}

TEST(DeviceMemory, OutOfMemoryReleasesCachedBytesAndRetriesOnce) {
  KVFLASH_REQUIRE_GPU();
  // A pool that may cache everything, 3 GiB of it cached after a free, and a device with ~6 GiB free: a 4 GiB
  // request cannot be met without giving the cached 3 GiB back first.
  DeviceBytes ballast = ballast_leaving(6 * kGiB);
  ASSERT_TRUE(ballast.ok()) << "the device has less than 7 GiB free";
  auto alloc = make_allocator(DeviceAllocStrategy::stream_ordered, 64 * kGiB);
  ASSERT_NE(alloc, nullptr);
  {
    auto transient = DeviceBuffer::allocate(*alloc, "transient", MemoryKind::other, 3 * kGiB);
    ASSERT_TRUE(transient.ok()) << transient.status().message();
  }
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  ASSERT_GE(alloc->stats().reserved_bytes, 3 * kGiB) << "the pool did not keep the freed bytes cached";
  auto big = DeviceBuffer::allocate(*alloc, "kv.big", MemoryKind::kv_cache, 4 * kGiB);
  ASSERT_TRUE(big.ok()) << big.status().message();
  // The cache went back (as much as the request lacked), not kept next to the new allocation.
  EXPECT_LT(alloc->stats().reserved_bytes, 5 * kGiB);
  EXPECT_EQ(alloc->stats().live_bytes, 4 * kGiB);
}

TEST(DeviceMemory, TheCApiAllocatesIntoBucketsAndReports) {
  KVFLASH_REQUIRE_GPU();
  for (int strategy : {KVFLASH_DEVICE_ALLOC_STREAM_ORDERED, KVFLASH_DEVICE_ALLOC_VMM}) {
    SCOPED_TRACE(strategy);
    kvflash_device_allocator* alloc = kvflash_device_allocator_create(0, strategy, 0);
    ASSERT_NE(alloc, nullptr) << kvflash_last_error();
    void* kv = nullptr;
    ASSERT_EQ(kvflash_device_alloc(alloc, "kv.layer.0", KVFLASH_MEMORY_KV_CACHE, 3 * kMiB + 1, nullptr, &kv),
              KVFLASH_OK)
        << kvflash_last_error();
    EXPECT_NE(kv, nullptr);
    kvflash_memory_report* report = kvflash_device_allocator_report(alloc);
    ASSERT_NE(report, nullptr) << kvflash_last_error();
    EXPECT_EQ(kvflash_memory_report_bytes(report, KVFLASH_MEMORY_KV_CACHE), 3 * kMiB + 1);
    EXPECT_GE(kvflash_memory_report_unaccounted(report), 0);
    kvflash_memory_report_destroy(report);
    void* out = nullptr;
    const int64_t too_much = device_free_bytes() + 4 * kGiB;
    EXPECT_EQ(kvflash_device_alloc(alloc, "kv.huge", KVFLASH_MEMORY_KV_CACHE, too_much, nullptr, &out),
              KVFLASH_ERROR_OUT_OF_MEMORY);
    EXPECT_NE(std::string(kvflash_last_error()).find("kv.huge"), std::string::npos) << kvflash_last_error();
    EXPECT_EQ(out, nullptr);
    EXPECT_EQ(kvflash_device_free(alloc, kv, nullptr), KVFLASH_OK);
    EXPECT_EQ(kvflash_device_free(alloc, kv, nullptr), KVFLASH_ERROR_INVALID_ARGUMENT);  // freed already
    EXPECT_EQ(kvflash_device_allocator_trim(alloc, 0), KVFLASH_OK);
    kvflash_device_allocator_destroy(alloc);
  }
}

// A contiguous [head][row] cache of `n_kv` rows of `type` on the device. One tile of rows is quantized on the host
// from random values and uploaded; the rest is filled by doubling on the device (quantizing gigabytes on the host
// would dominate the test, and the allocator, not the values, is under test here).
Status fill_cache(void* dst, KvType type, int64_t n_head_kv, int64_t n_kv, int64_t d, uint64_t seed) {
  constexpr int64_t kTileRows = 4096;
  const int64_t rb = row_bytes(type, d);
  const int64_t total_bytes = n_head_kv * n_kv * rb;
  const int64_t tile_bytes = std::min(kTileRows * rb, total_bytes);
  std::vector<uint8_t> tile(static_cast<size_t>(tile_bytes));
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> values(static_cast<size_t>(d));
  for (int64_t r = 0; r < tile_bytes / rb; ++r) {
    for (float& v : values) v = normal(rng);
    KVFLASH_RETURN_IF_ERROR(quantize_row(type, values.data(), d, tile.data() + r * rb));
  }
  auto* out = static_cast<uint8_t*>(dst);
  KVFLASH_RETURN_IF_ERROR(cuda_ok(
      cudaMemcpy(out, tile.data(), static_cast<size_t>(tile_bytes), cudaMemcpyHostToDevice), "upload cache tile"));
  for (int64_t filled = tile_bytes; filled < total_bytes;) {
    const int64_t chunk = std::min(filled, total_bytes - filled);
    KVFLASH_RETURN_IF_ERROR(cuda_ok(
        cudaMemcpy(out + filled, out, static_cast<size_t>(chunk), cudaMemcpyDeviceToDevice), "replicate cache"));
    filled += chunk;
  }
  return Status::Ok();
}

// One layer of a 32-query / 8-KV-head, head-dim-128 model (seed 000's shape) with a contiguous cache of `depth`
// keys, a query of `n_q` rows and the planned workspace, every buffer from one DeviceAllocator.
struct DeviceAttention {
  static constexpr int64_t kHeadsQ = 32, kHeadsKv = 8, kDim = 128;
  DeviceBuffer k, v, q, o, workspace;
  WorkspacePlan plan;
  AttentionProblem problem;
  Route route;

  static StatusOr<DeviceAttention> make(DeviceAllocator& alloc, KvType type, int64_t depth, int64_t n_q) {
    DeviceAttention a;
    const int64_t rb = row_bytes(type, kDim);
    const int64_t cache_bytes = kHeadsKv * depth * rb;
    auto k = DeviceBuffer::allocate(alloc, "kv.k", MemoryKind::kv_cache, cache_bytes);
    KVFLASH_RETURN_IF_ERROR(k.status());
    a.k = std::move(*k);
    auto v = DeviceBuffer::allocate(alloc, "kv.v", MemoryKind::kv_cache, cache_bytes);
    KVFLASH_RETURN_IF_ERROR(v.status());
    a.v = std::move(*v);
    WorkspaceLimits limits;
    limits.max_sequences = 1;
    limits.max_query_rows = n_q;
    limits.kv_capacity_tokens = depth;
    limits.model.layers = {LayerShape{kHeadsQ, kHeadsKv, kDim, kDim, 0}};
    limits.k_type = limits.v_type = type;
    limits.caps = caps_for(BackendKind::cuda);
    auto plan = plan_workspace(limits);
    KVFLASH_RETURN_IF_ERROR(plan.status());
    a.plan = *plan;
    const int64_t q_bytes = n_q * kHeadsQ * kDim * 4;
    auto q = DeviceBuffer::allocate(alloc, "activations.q", MemoryKind::other, q_bytes);
    KVFLASH_RETURN_IF_ERROR(q.status());
    a.q = std::move(*q);
    auto o = DeviceBuffer::allocate(alloc, "activations.o", MemoryKind::other, q_bytes);
    KVFLASH_RETURN_IF_ERROR(o.status());
    a.o = std::move(*o);
    if (a.plan.total_bytes > 0) {
      auto ws = DeviceBuffer::allocate(alloc, "workspace", MemoryKind::workspace, a.plan.total_bytes);
      KVFLASH_RETURN_IF_ERROR(ws.status());
      a.workspace = std::move(*ws);
    }

    KVFLASH_RETURN_IF_ERROR(fill_cache(a.k.data(), type, kHeadsKv, depth, kDim, 11));
    KVFLASH_RETURN_IF_ERROR(fill_cache(a.v.data(), type, kHeadsKv, depth, kDim, 12));
    std::vector<float> q_host(static_cast<size_t>(n_q * kHeadsQ * kDim));
    std::mt19937 rng(static_cast<unsigned>(depth));
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (float& x : q_host) x = normal(rng);
    KVFLASH_RETURN_IF_ERROR(cuda_ok(
        cudaMemcpy(a.q.data(), q_host.data(), static_cast<size_t>(q_bytes), cudaMemcpyHostToDevice), "upload Q"));

    AttentionProblem& p = a.problem;
    p.shape = {1, n_q, depth, kHeadsQ, kHeadsKv, kDim, kDim};
    p.q = {static_cast<const float*>(a.q.data()), {q_bytes, kDim * 4, kHeadsQ * kDim * 4}};
    const Strides kv_stride{cache_bytes, depth * rb, rb};
    p.k = {type, a.k.data(), kv_stride, {}};
    p.v = {type, a.v.data(), kv_stride, {}};
    p.o = {static_cast<float*>(a.o.data()), {q_bytes, kDim * 4, kHeadsQ * kDim * 4}};
    p.options.causal = true;
    auto route = plan_route(p, caps_for(BackendKind::cuda));
    KVFLASH_RETURN_IF_ERROR(route.status());
    a.route = *route;
    if (a.route.workspace_bytes > a.plan.total_bytes) {
      return Status(StatusCode::internal, "route " + std::string(kernel_name(a.route.kernel)) + " asks " +
                            std::to_string(a.route.workspace_bytes) + " workspace bytes, the plan has " +
                            std::to_string(a.plan.total_bytes));
    }
    return a;
  }

  /// One attention call on the default stream, O poisoned (NaN bytes) first, synchronized after.
  Status attend_once() {
    KVFLASH_RETURN_IF_ERROR(cuda_ok(cudaMemset(o.data(), 0xff, static_cast<size_t>(o.bytes())), "poison O"));
    KVFLASH_RETURN_IF_ERROR(attend(problem, route, workspace.data(), static_cast<size_t>(workspace.bytes()), nullptr));
    return cuda_ok(cudaDeviceSynchronize(), "attend");
  }

  /// Every output element finite (the poison is gone, nothing overflowed).
  Status output_written() const {
    std::vector<float> out(static_cast<size_t>(o.bytes() / 4));
    KVFLASH_RETURN_IF_ERROR(
        cuda_ok(cudaMemcpy(out.data(), o.data(), static_cast<size_t>(o.bytes()), cudaMemcpyDeviceToHost), "copy O"));
    for (size_t i = 0; i < out.size(); ++i) {
      if (!std::isfinite(out[i])) {
        return Status(StatusCode::internal, "O[" + std::to_string(i) + "] = " + std::to_string(out[i]));
      }
    }
    return Status::Ok();
  }
};

// What could move if an attention call allocated: our allocator's counters, the pools' attributes (ours, and the
// device's default pool that a stray cudaMallocAsync would use) and the device's free bytes (a stray cudaMalloc).
struct AllocationSnapshot {
  int64_t calls = 0, live = 0, reserved = 0, used = 0, default_pool_reserved = 0, default_pool_used = 0;
  int64_t device_free = 0;

  static AllocationSnapshot take(const DeviceAllocator& alloc) {
    AllocationSnapshot s;
    const DeviceAllocatorStats st = alloc.stats();
    s.calls = st.allocation_calls;
    s.live = st.live_bytes;
    s.reserved = st.reserved_bytes;
    s.used = st.used_bytes;
    cudaMemPool_t pool = nullptr;
    uint64_t value = 0;
    EXPECT_EQ(cudaDeviceGetDefaultMemPool(&pool, 0), cudaSuccess);
    EXPECT_EQ(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReservedMemCurrent, &value), cudaSuccess);
    s.default_pool_reserved = static_cast<int64_t>(value);
    EXPECT_EQ(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrUsedMemCurrent, &value), cudaSuccess);
    s.default_pool_used = static_cast<int64_t>(value);
    s.device_free = device_free_bytes();
    return s;
  }
  bool operator==(const AllocationSnapshot&) const = default;
  std::string to_string() const {
    return "calls " + std::to_string(calls) + ", live " + std::to_string(live) + ", reserved " +
           std::to_string(reserved) + ", used " + std::to_string(used) + ", default pool reserved " +
           std::to_string(default_pool_reserved) + " used " + std::to_string(default_pool_used) + ", device free " +
           std::to_string(device_free);
  }
};

TEST(DeviceMemory, AttentionCallsAfterWarmUpAllocateNothing) {
  KVFLASH_REQUIRE_GPU();
  for (DeviceAllocStrategy strategy : kStrategies) {
    for (int64_t n_q : {1, 512}) {  // the decode kernel and the prefill route
      SCOPED_TRACE(name(strategy) + " n_q=" + std::to_string(n_q));
      auto alloc = make_allocator(strategy);
      ASSERT_NE(alloc, nullptr);
      auto a = DeviceAttention::make(*alloc, KvType::q8_0, 32768, n_q);
      ASSERT_TRUE(a.ok()) << a.status().message();
      // The reservation is the plan: the workspace bucket holds exactly plan_workspace's bytes.
      auto report = alloc->report();
      ASSERT_TRUE(report.ok()) << report.status().message();
      EXPECT_LE(std::abs(report->bytes(MemoryKind::workspace) - a->plan.total_bytes), kMiB) << report->to_string();
      ASSERT_TRUE(a->attend_once().ok());  // warm-up (module loading, first launch)
      const AllocationSnapshot before = AllocationSnapshot::take(*alloc);
      for (int i = 0; i < 10; ++i) {
        Status s = a->attend_once();
        ASSERT_TRUE(s.ok()) << s.message();
      }
      const AllocationSnapshot after = AllocationSnapshot::take(*alloc);
      EXPECT_EQ(after, before) << "before: " << before.to_string() << "\nafter:  " << after.to_string();
      Status written = a->output_written();
      EXPECT_TRUE(written.ok()) << written.message();
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
    // What the driver holds for it, in a bucket of its own so that the report still adds up: vmm rounds the chunk
    // up to the allocation granularity (2 MiB on Hopper); the stream-ordered pool maps physical memory in 32 MiB
    // steps (measured on an H100, driver 580: 268.12 MiB asked, 288 MiB reserved), which later allocations reuse.
    const int64_t rounding = strategy == DeviceAllocStrategy::vmm ? 2 * kMiB : 32 * kMiB;
    EXPECT_LT(alloc->stats().reserved_bytes - plan->total_bytes, rounding) << r->to_string();
    EXPECT_EQ(r->ours(), alloc->stats().reserved_bytes) << r->to_string();
  }
}

// Seed 000: llama.cpp's q8_0 cache ran out of memory before its f16 cache because f16 copies of K/V grew with the
// context. Here a ballast leaves ~6 GiB, and each type's cache grows until the allocator says out_of_memory; at
// every depth a 512-row prefill-shaped call runs over the cache in its stored format.
struct DepthPeak {
  int64_t depth = 0;
  int64_t peak_live_bytes = 0;  // kvflash's live bytes at this depth's peak
  int64_t device_free = 0;      // the device's free bytes then
};

std::vector<DepthPeak> grow_until_out_of_memory(DeviceAllocStrategy strategy, KvType type,
                                                const std::vector<int64_t>& depths, int64_t n_q) {
  std::vector<DepthPeak> reached;
  auto alloc = make_allocator(strategy);
  if (alloc == nullptr) return reached;
  for (int64_t depth : depths) {
    SCOPED_TRACE(std::string(kv_traits(type).name) + " depth " + std::to_string(depth));
    alloc->reset_peak();
    auto a = DeviceAttention::make(*alloc, type, depth, n_q);
    if (!a.ok()) {
      EXPECT_EQ(a.status().code(), StatusCode::out_of_memory) << a.status().message();
      EXPECT_NE(a.status().message().find("bucket '"), std::string::npos) << a.status().message();
      std::printf("[ %s ] %s: out of memory at depth %lld: %s\n", name(strategy).c_str(), kv_traits(type).name.data(),
                  static_cast<long long>(depth), a.status().message().c_str());
      break;
    }
    const int64_t calls = alloc->stats().allocation_calls;
    Status s = a->attend_once();
    EXPECT_TRUE(s.ok()) << s.message();
    if (!s.ok()) break;
    EXPECT_EQ(alloc->stats().allocation_calls, calls) << "the attention call allocated";
    Status written = a->output_written();
    EXPECT_TRUE(written.ok()) << written.message();
    reached.push_back({depth, alloc->stats().peak_live_bytes, device_free_bytes()});
  }
  return reached;
}

TEST(DeviceMemory, QuantizedCacheReachesAtLeastTheDepthOfF16WithLowerPeaks) {
  KVFLASH_REQUIRE_GPU();
  DeviceBytes ballast = ballast_leaving(6 * kGiB);
  ASSERT_TRUE(ballast.ok()) << "the device has less than 7 GiB free";
  // K+V of one layer: 4 KiB per token in f16, 2176 bytes in q8_0, so 6 GiB hold about 1.5M and 2.9M tokens.
  const std::vector<int64_t> depths = {131072, 524288, 1048576, 1572864, 2097152, 3145728};
  constexpr int64_t kPrefillRows = 512;
  for (DeviceAllocStrategy strategy : kStrategies) {
    SCOPED_TRACE(name(strategy));
    const std::vector<DepthPeak> f16 = grow_until_out_of_memory(strategy, KvType::f16, depths, kPrefillRows);
    const std::vector<DepthPeak> q8 = grow_until_out_of_memory(strategy, KvType::q8_0, depths, kPrefillRows);
    ASSERT_FALSE(f16.empty());
    EXPECT_LT(f16.size(), depths.size()) << "f16 never ran out of memory: the budget does not bind";
    EXPECT_GE(q8.size(), f16.size()) << "q8_0 ran out of memory at a smaller depth than f16";
    for (size_t i = 0; i < std::min(f16.size(), q8.size()); ++i) {
      EXPECT_LT(q8[i].peak_live_bytes, f16[i].peak_live_bytes) << "depth " << depths[i];
      EXPECT_GT(q8[i].device_free, f16[i].device_free) << "depth " << depths[i];
      std::printf("[ %s ] depth %lld: peak live f16 %.1f MiB, q8_0 %.1f MiB; device free f16 %.1f MiB, q8_0 %.1f MiB\n",
                  name(strategy).c_str(), static_cast<long long>(depths[i]), f16[i].peak_live_bytes / double(kMiB),
                  q8[i].peak_live_bytes / double(kMiB), f16[i].device_free / double(kMiB),
                  q8[i].device_free / double(kMiB));
    }
    std::printf("[ %s ] deepest: f16 %lld, q8_0 %lld keys\n", name(strategy).c_str(),
                static_cast<long long>(f16.back().depth), static_cast<long long>(q8.empty() ? 0 : q8.back().depth));
  }
}

#else

TEST(DeviceMemory, NeedsCuda) { GTEST_SKIP() << "skipped: no CUDA device (this build has no CUDA backend)"; }

#endif

}  // namespace
}  // namespace kvflash::testing::gpu
