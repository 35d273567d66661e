// plan_route(), explain() and the launch arithmetic behind a route (splits, workspace pieces).
#include <gtest/gtest.h>

#include <algorithm>

#include "kvflash/route.h"
#include "plan/kernel_table.h"
#include "plan/launch.h"
#include "plan/router.h"
#include "plan/shape_problem.h"
#include "plan/sweep.h"
#include "plan/test_tables.h"

namespace kvflash::plan {
namespace {

ShapeProblemSpec decode_spec(int64_t n_kv) {
  ShapeProblemSpec s;
  s.shape = {/*n_seq=*/1, /*n_q=*/1, n_kv, /*n_head_q=*/32, /*n_head_kv=*/8, 128, 128};
  s.k_type = KvType::q8_0;
  s.v_type = KvType::q8_0;
  return s;
}

TEST(PlanRoute, ReferenceRouteNeedsNoWorkspace) {
  const AttentionProblem p = shape_only_problem(decode_spec(4096));
  auto r = plan_route(p, caps_for(BackendKind::ref));
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->backend, BackendKind::ref);
  EXPECT_EQ(r->kernel, KernelId::ref_generic);
  EXPECT_EQ(r->n_splits, 1);
  EXPECT_EQ(r->workspace_bytes, 0);
  EXPECT_GT(r->cost_us, 0);
}

TEST(PlanRoute, InvalidProblemIsAStatusThatPrintsTheWholeProblem) {
  ShapeProblemSpec s = decode_spec(100);
  s.shape.n_head_kv = 3;  // does not divide 32
  const AttentionProblem p = shape_only_problem(s);
  auto r = plan_route(p, caps_for(BackendKind::ref));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::invalid_argument);
  EXPECT_NE(r.status().message().find("n_head_kv = 3"), std::string::npos) << r.status().message();
  // Seed 002: the message carries describe(), so a failure report names strides, types and options.
  EXPECT_NE(r.status().message().find(describe(p)), std::string::npos) << r.status().message();
}

TEST(PlanRoute, BackendWithoutKernelsFailsWithTheProblem) {
  for (int b = 0; b < kBackendCount; ++b) {
    const auto kind = static_cast<BackendKind>(b);
    if (backend_has_kernels(kind)) continue;
    const AttentionProblem p = shape_only_problem(decode_spec(10));
    auto r = plan_route(p, caps_for(kind));
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::unsupported);
    EXPECT_NE(r.status().message().find("has no kernels in this build"), std::string::npos);
    EXPECT_NE(r.status().message().find(describe(p)), std::string::npos);
  }
}

TEST(Explain, ListsEveryCandidateOfTheBackendAndTheChoice) {
  for (BackendKind b : routable_backends()) {
    const BackendCaps caps = caps_for(b);
    ShapeProblemSpec s = decode_spec(257);
    s.softcap = 50;
    const AttentionProblem p = shape_only_problem(s);
    const RouteExplanation e = explain(p, caps);
    ASSERT_TRUE(e.status.ok()) << e.status.message();
    int rows = 0;
    for (const KernelSpec& k : kKernels) rows += k.backend == b ? 1 : 0;
    ASSERT_EQ(static_cast<int>(e.candidates.size()), rows);
    ASSERT_GE(e.chosen, 0);
    EXPECT_TRUE(e.candidates[e.chosen].accepted);
    for (const RouteCandidate& c : e.candidates) EXPECT_EQ(c.accepted, c.reason.empty()) << c.kernel;
    const std::string text = e.to_string();
    EXPECT_NE(text.find("route: " + e.candidates[e.chosen].kernel), std::string::npos) << text;
    EXPECT_NE(text.find(describe(p)), std::string::npos) << text;
    // The route explain() marks is the one plan_route() returns.
    auto r = plan_route(p, caps);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(kernel_name(r->kernel), e.candidates[e.chosen].kernel);
  }
}

TEST(Explain, InvalidProblemShowsTheError) {
  ShapeProblemSpec s = decode_spec(10);
  s.shape.d_k = 80;  // not a multiple of q8_0's 32-value block
  const RouteExplanation e = explain(shape_only_problem(s), caps_for(BackendKind::ref));
  EXPECT_EQ(e.status.code(), StatusCode::invalid_argument);
  EXPECT_TRUE(e.candidates.empty());
  EXPECT_NE(e.to_string().find("error: d_k = 80 is not a multiple of q8_0's block size 32"), std::string::npos)
      << e.to_string();
}

TEST(Explain, RejectedSpecializedRowsSayWhy) {
  BackendCaps caps = caps_for(BackendKind::cuda);
  ShapeProblemSpec s = decode_spec(1000);
  s.k_type = KvType::q4_0;  // the decode row reads f16, q8_0, turbo3
  auto r = route_over(test_tables::kCudaLike, shape_only_problem(s), caps);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->kernel, test_tables::test_id(1)) << "only the generic row reads q4_0";
  s.k_type = KvType::turbo3;
  s.v_type = KvType::turbo3;
  r = route_over(test_tables::kCudaLike, shape_only_problem(s), caps);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->kernel, test_tables::test_id(0)) << "equal costs keep table order: specialized first";
}

// ---- Launch arithmetic ----------------------------------------------------------------------------------------

const KernelSpec& decode_row() { return test_tables::kCudaLike[0]; }

TEST(Splits, FillTheMachineWithoutEmptySplits) {
  BackendCaps caps = caps_for(BackendKind::cuda);
  caps.sm_count = 132;  // 264 parallel units
  // 1 sequence x 8 KV heads = 8 items: 33 splits wanted, 64 allowed; 65537 keys = 257 tiles of 256.
  SplitPlan s = choose_splits(decode_row(), caps, 1, 8, 65537);
  EXPECT_EQ(s.n_splits, 33);
  EXPECT_EQ(s.keys_per_split, 8 * 256);  // ceil(257 / 33) = 8 tiles
  EXPECT_GE(s.n_splits * s.keys_per_split, 65537);
  EXPECT_LT((s.n_splits - 1) * s.keys_per_split, 65537) << "the last split holds at least one key";
  // Fewer tiles than wanted: one split per tile.
  s = choose_splits(decode_row(), caps, 1, 8, 257);
  EXPECT_EQ(s.n_splits, 2);
  EXPECT_EQ(s.keys_per_split, 256);
  // One key, no keys.
  EXPECT_EQ(choose_splits(decode_row(), caps, 1, 8, 1).n_splits, 1);
  EXPECT_EQ(choose_splits(decode_row(), caps, 1, 8, 0).n_splits, 1);
  // Enough (sequence, head) items already: no split.
  EXPECT_EQ(choose_splits(decode_row(), caps, 64, 8, 65537).n_splits, 1);
}

TEST(Splits, MaxSplitsUpToIsTheExactMaximumOverShorterCaches) {
  BackendCaps caps = caps_for(BackendKind::cuda);
  for (int sm : {1, 7, 132}) {
    caps.sm_count = sm;
    for (int64_t heads : {1, 3, 8}) {
      for (int64_t capacity : {0, 1, 255, 256, 257, 5000, 20000}) {
        int64_t reached = 1;
        for (int64_t n_kv = 0; n_kv <= capacity; ++n_kv) {
          reached = std::max(reached, choose_splits(decode_row(), caps, 1, heads, n_kv).n_splits);
        }
        EXPECT_EQ(reached, max_splits_up_to(decode_row(), caps, 1, heads, capacity))
            << "sm " << sm << " heads " << heads << " capacity " << capacity;
      }
    }
  }
}

TEST(Layout, PiecesAreExactAlignedAndDisjoint) {
  // 33 splits x 2 seq x 32 heads x 4 rows, at a pitch of 128 floats (a kernel keeping turbo V of d_v 96
  // rotated, padded to 128): 33*2*32*4*128*4 bytes of partial outputs.
  const LayoutInputs in{/*n_seq=*/2, /*n_head_q=*/32, /*n_q=*/4, /*d_k=*/96, /*d_v=*/96, KvType::turbo3,
                        /*n_splits=*/33, /*workers=*/3, /*scratch_floats_per_worker=*/1000, /*stages_q=*/true,
                        /*partial_o_pitch=*/128};
  WorkspaceLayout l;
  const int64_t total = layout_workspace(in, &l);
  EXPECT_EQ(l.partial_o.bytes, 33 * 2 * 32 * 4 * 128 * 4);
  EXPECT_EQ(l.partial_max.bytes, 33 * 2 * 32 * 4 * 4);
  EXPECT_EQ(l.partial_sum.bytes, 33 * 2 * 32 * 4 * 4);
  EXPECT_EQ(l.q_staging.bytes, 2 * 32 * 4 * 128 * 4) << "turbo3 stores d_k 96 padded to 128";
  EXPECT_EQ(l.worker_scratch.bytes, 3 * 1000 * 4);
  const WorkspaceRange pieces[] = {l.partial_o, l.partial_max, l.partial_sum, l.q_staging, l.worker_scratch};
  int64_t end = 0;
  for (const WorkspaceRange& r : pieces) {
    EXPECT_EQ(r.offset % kWorkspaceAlign, 0);
    EXPECT_GE(r.offset, end);
    end = r.offset + r.bytes;
  }
  EXPECT_EQ(total, (end + kWorkspaceAlign - 1) / kWorkspaceAlign * kWorkspaceAlign);
  EXPECT_EQ(total, 4'325'376 + 33'792 + 33'792 + 131'072 + 12'032);  // 12000 scratch bytes, aligned up to 12032
}

TEST(Layout, OneSplitNeedsNoPartials) {
  const LayoutInputs in{1, 8, 1, 128, 128, KvType::f16, /*n_splits=*/1, 1, 0, /*stages_q=*/false};
  WorkspaceLayout l;
  EXPECT_EQ(layout_workspace(in, &l), 0);
  EXPECT_EQ(l.partial_o.bytes, 0);
}

TEST(Layout, OverflowIsReportedNotWrapped) {
  const LayoutInputs in{int64_t{1} << 40, 64, 1 << 20, 1024, 1024, KvType::f32, 64, 1, 0, true};
  EXPECT_EQ(layout_workspace(in, nullptr), -1);
}

TEST(Route, CarriesTheLayoutItsKernelUses) {
  BackendCaps caps = caps_for(BackendKind::cuda);
  ShapeProblemSpec s = decode_spec(20000);
  s.k_type = s.v_type = KvType::turbo3;
  auto r = route_over(test_tables::kCudaLike, shape_only_problem(s), caps);
  ASSERT_TRUE(r.ok());
  // 264 units / 8 items = 33 splits; 20000 keys = 79 tiles -> 3 tiles (768 keys) per split -> 27 splits.
  EXPECT_EQ(r->n_splits, 27);
  EXPECT_EQ(r->keys_per_split, 768);
  EXPECT_EQ(r->layout.partial_o.bytes, 27 * 32 * 128 * 4);
  EXPECT_EQ(r->layout.q_staging.bytes, 32 * 128 * 4);
  // Each statistics piece is 27 * 32 * 4 = 3456 bytes, placed in 3584 (a multiple of kWorkspaceAlign).
  EXPECT_EQ(r->workspace_bytes, 27 * 32 * 128 * 4 + 2 * 3584 + 32 * 128 * 4);
}

}  // namespace
}  // namespace kvflash::plan
