// The CUDA prefill rows' key splits (KvSplit::whole_waves with one CTA per SM): a short chunk at depth, whose query
// tiles alone leave most SMs idle, splits its keys until the launch fills the GPU; a long chunk fills it with query
// tiles and keeps one split (no workspace, no combine); decode-sized steps stay on the decode rows. Pure planning.
#include <gtest/gtest.h>

#include "backend/cuda/split_plan.h"
#include "kvflash/route.h"
#include "plan/kernel_table.h"
#include "plan/nominal_h100.h"
#include "plan/shape_problem.h"

namespace kvflash::plan {
namespace {

/// llama3-8b's attention shape (32 query / 8 KV heads, head dim 128), causal, one sequence.
AttentionProblem chunk_problem(KvType type, int64_t n_q, int64_t n_kv) {
  ShapeProblemSpec s;
  s.shape = {/*n_seq=*/1, n_q, n_kv, /*n_head_q=*/32, /*n_head_kv=*/8, 128, 128};
  s.k_type = type;
  s.v_type = type;
  s.causal = true;
  return shape_only_problem(s);
}

/// A tensor-core prefill row: mma.sync (cuda.prefill.*) or, where the router prefers it, wgmma
/// (cuda.prefill_wgmma_ws.* for f16, q8_0, q4_0, turbo3 and turbo4 at head dim 128).
bool is_prefill(const Route& r) {
  const CostModel cost = kernel_spec(r.kernel).cost;
  return cost == CostModel::cuda_prefill || cost == CostModel::cuda_prefill_wgmma ||
         cost == CostModel::cuda_prefill_wgmma_ws;
}

TEST(PrefillSplits, ShortChunksAtDepthSplitTheKeysUntilTheGpuIsFull) {
  const BackendCaps caps = nominal_h100();
  for (KvType type : {KvType::f16, KvType::q8_0, KvType::q4_0, KvType::turbo3}) {
    for (int64_t n_q : {17, 64, 128}) {
      for (int64_t n_kv : {32768, 131072}) {
        auto r = plan_route(chunk_problem(type, n_q, n_kv), caps);
        ASSERT_TRUE(r.ok()) << r.status().message();
        const std::string what = std::string(kv_traits(type).name) + " n_q " + std::to_string(n_q) + " n_kv " +
                                 std::to_string(n_kv) + " route " + std::string(kernel_name(r->kernel));
        ASSERT_TRUE(is_prefill(*r)) << what;
        // 8 KV heads x ceil(4 n_q / 128) query tiles: 8-32 CTAs without splits on 132 SMs.
        const int64_t tiles = (4 * n_q + 127) / 128;
        const int64_t ctas = 8 * tiles * r->n_splits;
        EXPECT_GE(cuda::wave_fill(ctas, 132), 0.9) << what << " splits " << r->n_splits;
        EXPECT_EQ(r->keys_per_split % 64, 0) << what;
        EXPECT_GE(r->n_splits * r->keys_per_split, n_kv) << what;
        EXPECT_LT((r->n_splits - 1) * r->keys_per_split, n_kv) << what << ": no empty split";
        EXPECT_GT(r->workspace_bytes, 0) << what << ": the partials live in the planned workspace";
      }
    }
  }
}

TEST(PrefillSplits, LongChunksFillTheGpuWithQueryTilesAndKeepOneSplit) {
  const BackendCaps caps = nominal_h100();
  // 512 rows x GQA 4 = 16 query tiles per KV head: 128 CTAs on 132 SMs (97%).
  for (KvType type : {KvType::f16, KvType::q8_0}) {
    for (int64_t n_kv : {512, 32768, 131072}) {
      auto r = plan_route(chunk_problem(type, 512, n_kv), caps);
      ASSERT_TRUE(r.ok()) << r.status().message();
      EXPECT_TRUE(is_prefill(*r));
      EXPECT_EQ(r->n_splits, 1) << kv_traits(type).name << " n_kv " << n_kv;
      EXPECT_EQ(r->workspace_bytes, 0);
    }
  }
}

TEST(PrefillSplits, DecodeSizedStepsStayOnTheDecodeRows) {
  const BackendCaps caps = nominal_h100();
  for (KvType type : {KvType::f16, KvType::q8_0, KvType::q4_0, KvType::turbo3}) {
    for (int64_t n_q : {1, 4, 16}) {
      for (int64_t n_kv : {700, 4096, 32768, 131072}) {
        auto r = plan_route(chunk_problem(type, n_q, n_kv), caps);
        ASSERT_TRUE(r.ok()) << r.status().message();
        EXPECT_EQ(kernel_spec(r->kernel).cost, CostModel::cuda_decode)
            << kv_traits(type).name << " n_q " << n_q << " n_kv " << n_kv << " routed to " << kernel_name(r->kernel);
      }
    }
  }
}

}  // namespace
}  // namespace kvflash::plan
