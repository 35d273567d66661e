// plan_workspace(): exact, sized from the KV capacity (seed 003), pinned (seed 004), and an upper bound of every
// route inside the limits.
#include <gtest/gtest.h>

#include <map>
#include <random>

#include "kvflash/workspace.h"
#include "plan/kernel_table.h"
#include "plan/router.h"
#include "plan/shape_problem.h"
#include "plan/sweep.h"
#include "plan/test_tables.h"

namespace kvflash::plan {
namespace {

WorkspaceLimits llama_decode_limits(int64_t capacity) {
  WorkspaceLimits l;
  l.max_sequences = 4;
  l.max_query_rows = 4;
  l.kv_capacity_tokens = capacity;
  l.model = *model_preset("llama3-8b");
  l.k_type = KvType::turbo3;
  l.v_type = KvType::turbo3;
  l.caps = caps_for(BackendKind::cuda);
  l.caps.sm_count = 132;  // the nominal H100, fixed here so the pins do not follow a device
  return l;
}

TEST(PlanWorkspace, PinnedForFixedInputsOnASplitKvTable) {
  // Seed 004: a change that inflates the workspace must fail here. A cuda split row counts its CTAs per query
  // chunk of 8 vectors (cuda::kGenericQvecsPerCta), so splits fall as rows grow: one row (GQA 4: 4 vectors, one
  // chunk) takes 264 units / 8 KV heads = 33 splits, 2 rows 33, 3 and 4 rows (two chunks) 17. The worst case is
  // one sequence of 4 rows with 17 splits (25000 keys = 98 tiles of 256), 68 partial rows per head against 66 at
  // 2 rows:
  //   partial O  17 * 1 * 32 * 4 * 128 * 4 = 1114112
  //   max, sum   17 * 1 * 32 * 4 * 4       =    8704 each
  //   staged Q   1 * 32 * 4 * 128 * 4      =   65536
  auto plan = plan_workspace_over(test_tables::kCudaLike, llama_decode_limits(25000));
  ASSERT_TRUE(plan.ok()) << plan.status().message();
  EXPECT_EQ(plan->partial_o_bytes, 1114112);
  EXPECT_EQ(plan->partial_stats_bytes, 2 * 8704);
  EXPECT_EQ(plan->q_staging_bytes, 65536);
  EXPECT_EQ(plan->worker_scratch_bytes, 0);
  EXPECT_EQ(plan->total_bytes, 1197056);
  EXPECT_EQ(plan->bounding_kernel, "cuda.test_decode");
  EXPECT_EQ(plan->bounding_n_seq, 1);
  EXPECT_EQ(plan->bounding_n_q, 4);
  EXPECT_EQ(plan->bounding_n_splits, 17);
}

TEST(PlanWorkspace, PinnedForTheRealTable) {
  // Every backend with kernels has a pin here: a stream that adds rows adds its pin, and a later change that grows
  // the workspace for these inputs fails this test.
  // cpu (16 workers): the worst case is one sequence of 4 rows, 16 units / 8 KV heads = 2 splits:
  //   partial_o 2*32*4*128*4 = 131072, max and sum 2*32*4*4 = 1024 each, and per worker 49536 floats of scratch
  //   (128 rows x (16 place + 128 q + 32 scores + 144 acc) + 128 alpha + 32 keys x (128 K + 128 V) + 2*128 out)
  //   = 16*49536*4 = 3170304: 3303424 in all.
  // cuda (132 SMs): the turbo3 decode row's whole waves. One sequence of 4 rows (16 query vectors per KV head) runs
  // the 16-vector instance (3 CTAs per SM: 396 slots), 8 CTAs per split, so 48 splits fill 97% of one wave; more
  // than 2 CTAs per SM needs splits of kMinTilesPerDenseSplit (8) tiles, and a cache of 384 tiles (24576 keys, under
  // the 25000 planned) makes exactly 48 splits of 8; no length up to 25000 takes more:
  //   partial_o 48*1*32*4*128*4 = 3145728, max and sum 48*32*4*4 = 24576 each: 3194880 in all.
  // (At 2 tiles per split, before session 6, some lengths took 99 splits, two whole waves: 6589440; at 4 tiles and
  // no dense rule, 49: 3261440.)
  const std::map<BackendKind, int64_t> pinned = {
      {BackendKind::ref, 0}, {BackendKind::cpu, 3303424}, {BackendKind::cuda, 3194880}};
  for (BackendKind b : routable_backends()) {
    WorkspaceLimits l = llama_decode_limits(25000);
    l.caps = caps_for(b);
    if (b == BackendKind::cuda) l.caps.sm_count = 132;
    if (b == BackendKind::cpu) l.caps.threads = 16;
    auto plan = plan_workspace(l);
    ASSERT_TRUE(plan.ok()) << plan.status().message();
    ASSERT_TRUE(pinned.count(b)) << "no pinned workspace for backend " << backend_name(b);
    EXPECT_EQ(plan->total_bytes, pinned.at(b)) << backend_name(b) << " bounded by " << plan->bounding_kernel
                                               << " at n_seq " << plan->bounding_n_seq << ", n_q "
                                               << plan->bounding_n_q << ", " << plan->bounding_n_splits << " splits";
  }
}

TEST(PlanWorkspace, SizedFromTheCacheCapacityNeverTheModelsMaxContext) {
  // Seed 003: a 131K-context model with 25K tokens of cache plans for 25K.
  WorkspaceLimits limits = llama_decode_limits(25000);
  const int64_t at_25k = plan_workspace_over(test_tables::kCudaLike, limits)->total_bytes;
  limits.model.max_context = 8192;
  EXPECT_EQ(plan_workspace_over(test_tables::kCudaLike, limits)->total_bytes, at_25k);
  limits.model.max_context = int64_t{1} << 40;
  EXPECT_EQ(plan_workspace_over(test_tables::kCudaLike, limits)->total_bytes, at_25k);
  // A small cache holds fewer tiles, so fewer splits: 1000 keys = 4 decode tiles, 16 generic tiles (its cap is 16).
  //   decode:  4 splits -> 4*32*4*128*4 + 2*(4*32*4*4) + 65536 = 331776
  //   generic: 16 splits -> 16*32*4*128*4 + 2*(16*32*4*4)     = 1064960
  limits.kv_capacity_tokens = 1000;
  auto small = plan_workspace_over(test_tables::kCudaLike, limits);
  ASSERT_TRUE(small.ok());
  EXPECT_EQ(small->total_bytes, 1064960);
  EXPECT_EQ(small->bounding_kernel, "cuda.test_generic");
  // Beyond the tiles the machine can use, more capacity adds nothing: splits are capped by parallelism.
  limits.kv_capacity_tokens = 131072;
  EXPECT_EQ(plan_workspace_over(test_tables::kCudaLike, limits)->total_bytes, at_25k);
}

TEST(PlanWorkspace, RejectsImpossibleLimits) {
  WorkspaceLimits l = llama_decode_limits(100);
  l.max_query_rows = 2;  // fewer rows than sequences
  EXPECT_EQ(plan_workspace(l).status().code(), StatusCode::invalid_argument);
  l = llama_decode_limits(-1);
  EXPECT_EQ(plan_workspace(l).status().code(), StatusCode::invalid_argument);
  l = llama_decode_limits(100);
  l.model.layers[3].n_head_kv = 5;
  EXPECT_NE(plan_workspace(l).status().message().find("layer 3"), std::string::npos);
  l = llama_decode_limits(100);
  l.caps.kind = BackendKind::cpu;  // the cuda-like table has no cpu rows
  EXPECT_EQ(plan_workspace_over(test_tables::kCudaLike, l).status().code(), StatusCode::unsupported);
}

/// A random problem inside `limits`: a layer of the model, n_seq <= max, n_seq * n_q <= rows, n_kv <= capacity,
/// random options and layout.
AttentionProblem random_problem(const WorkspaceLimits& limits, std::mt19937_64& rng) {
  const auto pick = [&rng](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };
  const LayerShape& layer = limits.model.layers[pick(0, static_cast<int64_t>(limits.model.layers.size()) - 1)];
  ShapeProblemSpec s;
  s.shape.n_seq = pick(1, limits.max_sequences);
  s.shape.n_q = pick(1, limits.max_query_rows / s.shape.n_seq);
  // Half the draws at the capacity's edge, where splits are largest.
  s.shape.n_kv = pick(0, 1) ? pick(0, limits.kv_capacity_tokens) : limits.kv_capacity_tokens - pick(0, 300);
  s.shape.n_kv = std::max<int64_t>(0, s.shape.n_kv);
  s.shape.n_head_q = layer.n_head_q;
  s.shape.n_head_kv = layer.n_head_kv;
  s.shape.d_k = layer.d_k;
  s.shape.d_v = layer.d_v;
  s.k_type = limits.k_type;
  s.v_type = limits.model.v_is_view_of_k ? limits.k_type : limits.v_type;
  s.v_is_view_of_k = limits.model.v_is_view_of_k;
  s.layout = static_cast<ShapeLayout>(pick(0, 2));
  s.causal = pick(0, 1);
  s.window = layer.window;
  s.softcap = pick(0, 3) == 0 ? 30.0 : 0.0;
  s.mask = static_cast<ShapeMask>(pick(0, 2));
  s.kv_len = pick(0, 1);
  return shape_only_problem(s);
}

void expect_routes_within_plan(std::span<const KernelSpec> table, WorkspaceLimits limits, uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto plan = plan_workspace_over(table, limits);
  ASSERT_TRUE(plan.ok()) << plan.status().message();
  int64_t largest = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    const AttentionProblem p = random_problem(limits, rng);
    ASSERT_TRUE(validate(p).ok()) << validate(p).message() << "\n" << describe(p);
    auto r = route_over(table, p, limits.caps);
    ASSERT_TRUE(r.ok()) << r.status().message() << "\n" << describe(p);
    ASSERT_LE(r->workspace_bytes, plan->total_bytes) << describe(p);
    largest = std::max(largest, r->workspace_bytes);
  }
  EXPECT_LE(largest, plan->total_bytes);
}

TEST(PlanWorkspace, BoundsEveryRouteInsideTheLimits) {
  const char* models[] = {"llama3-8b", "gemma-3-12b", "deepseek-v3", "phi-3-mini"};
  const KvType types[] = {KvType::f16, KvType::q8_0, KvType::turbo3};
  uint64_t seed = 1;
  for (const char* name : models) {
    for (KvType t : types) {
      WorkspaceLimits l = llama_decode_limits(3000);
      l.model = *model_preset(name);
      l.k_type = l.v_type = t;
      l.max_sequences = 3;
      l.max_query_rows = 40;
      SCOPED_TRACE(std::string(name) + " " + std::string(kv_traits(t).name));
      expect_routes_within_plan(test_tables::kCudaLike, l, seed++);
      l.caps = caps_for(BackendKind::cpu);
      l.caps.threads = 6;
      expect_routes_within_plan(test_tables::kCpuLike, l, seed++);
      for (BackendKind b : routable_backends()) {
        l.caps = caps_for(b);
        expect_routes_within_plan(kKernels, l, seed++);
      }
    }
  }
}

TEST(PlanWorkspace, TheBoundIsReachedByTheShapeItNames) {
  const WorkspaceLimits limits = llama_decode_limits(25000);
  auto plan = plan_workspace_over(test_tables::kCudaLike, limits);
  ASSERT_TRUE(plan.ok());
  ShapeProblemSpec s;
  s.shape = {plan->bounding_n_seq, plan->bounding_n_q, plan->bounding_n_splits * 256, 32, 8, 128, 128};
  s.k_type = s.v_type = KvType::turbo3;
  auto r = route_over(test_tables::kCudaLike, shape_only_problem(s), limits.caps);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->workspace_bytes, plan->total_bytes);
}

}  // namespace
}  // namespace kvflash::plan
