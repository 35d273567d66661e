// Routing is total: every problem validate() accepts in the shape space of issue 3 gets a route on every backend
// with kernels, and the shapes the anchor's selector is known to fail on route too (and run correctly on the host
// backends where that is cheap; the cuda backend's run-through lives in tests/gpu/).
#include <gtest/gtest.h>

#include <cstdlib>
#include <vector>

#include "kvflash/attention.h"
#include "kvflash/reference.h"
#include "plan/kernel_table.h"
#include "plan/router.h"
#include "plan/shape_problem.h"
#include "plan/sweep.h"
#include "plan/test_tables.h"
#include "support/problem_builder.h"

namespace kvflash::plan {
namespace {

std::vector<BackendCaps> all_caps() {
  std::vector<BackendCaps> caps;
  for (BackendKind b : routable_backends()) caps.push_back(caps_for(b));
  return caps;
}

// ---- The whole space, one shard per head-dim pair (head dims are the outermost axis of sweep_point) ------------

class RouteSweep : public ::testing::TestWithParam<int> {};

TEST_P(RouteSweep, EveryValidPointRoutesOnEveryBackend) {
  const int64_t shards = static_cast<int64_t>(sweep_head_dims().size());
  const int64_t per_shard = sweep_size() / shards;
  ASSERT_EQ(per_shard * shards, sweep_size());
  const std::vector<BackendCaps> caps = all_caps();
  const auto cov = run_sweep(GetParam() * per_shard, (GetParam() + 1) * per_shard, 1, caps);
  const HeadDimPair dims = sweep_head_dims()[GetParam()];
  for (const SweepCoverage& c : cov) {
    SCOPED_TRACE(std::string(backend_name(c.backend)) + " d_k/d_v " + std::to_string(dims.d_k) + "/" +
                 std::to_string(dims.d_v));
    for (const std::string& f : c.failures) ADD_FAILURE() << f;
    EXPECT_EQ(c.routed, c.valid);
    EXPECT_EQ(c.valid + c.invalid, per_shard);
    // Only head dims that a 32-value block cannot hold are invalid, and only with the GGML block types: 5 of the
    // 11 types (q8_0, q4_0, q4_1, q5_0, q5_1) are 32-blocks, so 121 - 6 * 6 = 85 of the 121 pairs have one.
    const bool odd = dims.d_k % 32 != 0 || dims.d_v % 32 != 0;
    EXPECT_EQ(c.invalid, odd ? per_shard / 121 * 85 : 0);
  }
}

INSTANTIATE_TEST_SUITE_P(HeadDims, RouteSweep, ::testing::Range(0, static_cast<int>(sweep_head_dims().size())),
                         [](const ::testing::TestParamInfo<int>& info) {
                           const HeadDimPair d = sweep_head_dims()[info.param];
                           return "d" + std::to_string(d.d_k) + "_" + std::to_string(d.d_v);
                         });

TEST(RouteSweepSpace, HasTheAxesOfTheIssue) {
  EXPECT_EQ(sweep_head_dims().size(), 24u);  // 20 multiples of 32 in [32, 640] + 576/512, 192/128, 80, 112
  EXPECT_EQ(sweep_gqa_groups().size(), 19u);
  EXPECT_EQ(sweep_n_q().size(), 12u);
  EXPECT_EQ(sweep_size(), 24LL * 19 * 12 * 121 * 3 * 3);
  // Every axis value appears: spot-check the decomposition at both ends of the index range.
  const SweepPoint first = sweep_point(0), last = sweep_point(sweep_size() - 1);
  EXPECT_EQ(first.spec.shape.d_k, 32);
  EXPECT_EQ(first.spec.k_type, KvType::f32);
  EXPECT_EQ(last.spec.shape.d_k, 112);
  EXPECT_EQ(last.spec.shape.n_q, 512);
  EXPECT_EQ(last.spec.shape.n_head_q / last.spec.shape.n_head_kv, 64);
  EXPECT_EQ(last.spec.k_type, KvType::turbo4);
  EXPECT_EQ(last.spec.v_type, KvType::turbo4);
  EXPECT_EQ(last.spec.layout, ShapeLayout::paged);
}

// ---- The anchor's known failures -------------------------------------------------------------------------------

/// Routes `s` on every backend, for every valid K x V pair.
void expect_routes_for_all_type_pairs(ShapeProblemSpec s) {
  const std::vector<BackendCaps> caps = all_caps();
  int valid = 0;
  for (const KvTraits& k : all_kv_types()) {
    for (const KvTraits& v : all_kv_types()) {
      s.k_type = k.type;
      s.v_type = v.type;
      const AttentionProblem p = shape_only_problem(s);
      if (!validate(p).ok()) continue;
      ++valid;
      for (const BackendCaps& c : caps) {
        auto r = plan_route(p, c);
        EXPECT_TRUE(r.ok()) << backend_name(c.kind) << ": " << r.status().message();
      }
    }
  }
  EXPECT_GT(valid, 0) << describe(shape_only_problem(s));
}

/// Host backends other than the oracle: the ones attend() can run here against attend_reference().
std::vector<BackendKind> host_backends_to_run() {
  std::vector<BackendKind> out;
  for (BackendKind b : routable_backends()) {
    if (b == BackendKind::cpu) out.push_back(b);
  }
  return out;
}

/// Runs `spec` through attend() on `b` and compares with the oracle; O is poisoned first.
void expect_matches_reference(const testing::ProblemSpec& spec, BackendKind b) {
  auto hp = testing::HostProblem::make(spec);
  ASSERT_TRUE(hp.ok()) << hp.status().message();
  ASSERT_TRUE(attend_reference(hp->problem()).ok());
  const std::vector<float> want(hp->output().begin(), hp->output().end());
  auto route = plan_route(hp->problem(), caps_for(b));
  ASSERT_TRUE(route.ok()) << route.status().message();
  void* ws = route->workspace_bytes > 0
                 ? std::aligned_alloc(kWorkspaceAlign, (route->workspace_bytes + kWorkspaceAlign - 1) /
                                                           kWorkspaceAlign * kWorkspaceAlign)
                 : nullptr;
  hp->poison_output();
  const Status s = attend(hp->problem(), *route, ws, static_cast<size_t>(route->workspace_bytes));
  std::free(ws);
  ASSERT_TRUE(s.ok()) << s.message();
  // Both read the same stored values; only float32 against float64 arithmetic differs.
  EXPECT_LT(testing::nmse(hp->output(), want), 1e-6)
      << backend_name(b) << " " << kernel_name(route->kernel) << ": " << describe(hp->problem());
}

#define SKIP_WITHOUT_HOST_BACKENDS()                                                            \
  if (host_backends_to_run().empty()) GTEST_SKIP() << "no host backend besides the oracle yet"

TEST(AnchorFailures, HeadDim512AndAboveWithoutMaskOrWithAlibi) {
  // Seed 001: head dim 512 with GQA 2 aborted for every type in the anchor's tile kernel.
  const HeadDimPair dims[] = {{512, 512}, {576, 512}, {640, 640}, {1024, 1024}};
  for (const HeadDimPair& d : dims) {
    for (int64_t group : {1, 2, 4}) {
      for (int variant = 0; variant < 3; ++variant) {
        ShapeProblemSpec s;
        s.shape = {1, variant == 2 ? 8 : 1, 700, 4 * group, 4, d.d_k, d.d_v};
        s.alibi_max_bias = variant == 1 ? 8.0 : 0.0;
        s.mask = variant == 2 ? ShapeMask::f16 : ShapeMask::none;
        SCOPED_TRACE("d " + std::to_string(d.d_k) + "/" + std::to_string(d.d_v) + " group " +
                     std::to_string(group) + " variant " + std::to_string(variant));
        expect_routes_for_all_type_pairs(s);
      }
    }
  }
}

TEST(AnchorFailures, HeadDim512RunsOnHostBackends) {
  SKIP_WITHOUT_HOST_BACKENDS();
  for (BackendKind b : host_backends_to_run()) {
    for (KvType t : {KvType::f16, KvType::q8_0, KvType::q4_0, KvType::turbo3}) {
      for (bool alibi : {false, true}) {
        testing::ProblemSpec spec;
        spec.shape = {1, 2, 300, 8, 4, 512, 512};
        spec.ktype = spec.vtype = t;
        spec.alibi_max_bias = alibi ? 8.0 : 0.0;
        spec.seed = 11;
        expect_matches_reference(spec, b);
      }
    }
  }
}

TEST(AnchorFailures, SoftcapOnHeadDimsOtherThan128And256) {
  const HeadDimPair dims[] = {{32, 32}, {64, 64}, {80, 80}, {96, 96}, {112, 112}, {192, 128}, {320, 320},
                              {512, 512}, {576, 512}};
  for (const HeadDimPair& d : dims) {
    ShapeProblemSpec s;
    s.shape = {2, 3, 257, 8, 2, d.d_k, d.d_v};
    s.softcap = 30.0;
    s.causal = true;
    SCOPED_TRACE("d " + std::to_string(d.d_k) + "/" + std::to_string(d.d_v));
    expect_routes_for_all_type_pairs(s);
  }
}

TEST(AnchorFailures, SoftcapRunsOnHostBackends) {
  SKIP_WITHOUT_HOST_BACKENDS();
  for (BackendKind b : host_backends_to_run()) {
    for (int64_t d : {64, 96, 192}) {
      testing::ProblemSpec spec;
      spec.shape = {1, 3, 200, 4, 2, d, d};
      spec.ktype = KvType::q8_0;
      spec.vtype = KvType::turbo4;
      spec.softcap = 30.0;
      spec.causal = true;
      spec.seed = 12;
      expect_matches_reference(spec, b);
    }
  }
}

TEST(AnchorFailures, EveryTypePairRoutesIncludingMixedOnes) {
  // Seed 001: f16 K with turbo V had no compiled instance in the anchor.
  for (int64_t d : {64, 128, 256}) {
    ShapeProblemSpec s;
    s.shape = {1, 1, 4096, 32, 8, d, d};
    expect_routes_for_all_type_pairs(s);
  }
}

TEST(AnchorFailures, MixedTypePairsRunOnHostBackends) {
  SKIP_WITHOUT_HOST_BACKENDS();
  for (BackendKind b : host_backends_to_run()) {
    for (const KvTraits& k : all_kv_types()) {
      for (const KvTraits& v : all_kv_types()) {
        testing::ProblemSpec spec;
        spec.shape = {1, 1, 100, 4, 2, 128, 128};
        spec.ktype = k.type;
        spec.vtype = v.type;
        spec.seed = 13;
        expect_matches_reference(spec, b);
      }
    }
  }
}

TEST(AnchorFailures, KvLengthsThatAreNotAMultipleOfATile) {
  for (int64_t n_kv : {1, 255, 257, 65537}) {
    ShapeProblemSpec s;
    s.shape = {1, 1, n_kv, 8, 2, 128, 128};
    s.layout = n_kv == 257 ? ShapeLayout::paged : ShapeLayout::strided_padded;
    SCOPED_TRACE("n_kv " + std::to_string(n_kv));
    expect_routes_for_all_type_pairs(s);
  }
}

TEST(AnchorFailures, KvLengthsRunOnHostBackends) {
  SKIP_WITHOUT_HOST_BACKENDS();
  for (BackendKind b : host_backends_to_run()) {
    for (int64_t n_kv : {1, 255, 257, 65537}) {
      testing::ProblemSpec spec;
      spec.shape = {1, 1, n_kv, 2, 1, 128, 128};
      spec.ktype = KvType::q4_0;
      spec.vtype = KvType::q8_0;
      spec.layout = n_kv == 257 ? testing::KvLayout::paged : testing::KvLayout::strided_padded;
      spec.seed = 14;
      expect_matches_reference(spec, b);
    }
  }
}

TEST(AnchorFailures, ViewsAndMasksBeyond2To31ElementsRouteWith64BitSizes) {
  const std::vector<BackendCaps> caps = all_caps();
  struct Case {
    const char* what;
    AttentionShape shape;
    ShapeMask mask;
  };
  const Case cases[] = {
      // 64 * 512 * 65537 = 2147516416 mask elements > 2^31.
      {"mask", {1, 512, 65537, 64, 8, 128, 128}, ShapeMask::f16},
      // 2 * 8 * (2^21 + 1) * 128 = 4294967808 K and V elements.
      {"kv view", {2, 1, (1 << 21) + 1, 32, 8, 128, 128}, ShapeMask::none},
      // 64 * (2^15 + 1) * 1024 = 2147549184 Q and O elements.
      {"q view", {1, (1 << 15) + 1, 4096, 64, 64, 1024, 1024}, ShapeMask::none},
  };
  for (const Case& c : cases) {
    ShapeProblemSpec s;
    s.shape = c.shape;
    s.mask = c.mask;
    s.k_type = KvType::q8_0;
    s.v_type = KvType::turbo3;
    const AttentionProblem p = shape_only_problem(s);
    ASSERT_TRUE(validate(p).ok()) << c.what << ": " << validate(p).message();
    for (const BackendCaps& b : caps) {
      auto r = plan_route(p, b);
      EXPECT_TRUE(r.ok()) << c.what << " on " << backend_name(b.kind) << ": " << r.status().message();
    }
    // A split-KV table's pieces exceed 2^31 bytes here and must come out exact, not wrapped.
    auto r = route_over(test_tables::kCudaLike, p, caps_for(BackendKind::cuda));
    ASSERT_TRUE(r.ok()) << r.status().message();
    const AttentionShape& sh = c.shape;
    EXPECT_EQ(r->layout.partial_o.bytes,
              r->n_splits > 1 ? r->n_splits * sh.n_seq * sh.n_head_q * sh.n_q * sh.d_v * 4 : 0)
        << c.what;
    EXPECT_GE(r->workspace_bytes, r->layout.partial_o.bytes);
  }
}

}  // namespace
}  // namespace kvflash::plan
