// The CUDA decode rows' split rule (KvSplit::whole_waves): the planner sizes a decode launch from the SM count,
// the instance's resident CTAs per SM and the sequence lengths, and plan_workspace()'s bound covers every count it
// can choose. Pure planning: no device needed.
#include <gtest/gtest.h>

#include <algorithm>

#include "backend/cuda/split_plan.h"
#include "kvflash/route.h"
#include "plan/kernel_table.h"
#include "plan/nominal_h100.h"
#include "plan/launch.h"
#include "plan/router.h"
#include "plan/shape_problem.h"

namespace kvflash::plan {
namespace {

AttentionProblem decode_problem(KvType type, int64_t n_seq, int64_t n_q, int64_t n_kv) {
  ShapeProblemSpec s;
  s.shape = {n_seq, n_q, n_kv, /*n_head_q=*/32, /*n_head_kv=*/8, 128, 128};
  s.k_type = type;
  s.v_type = type;
  return shape_only_problem(s);
}

/// Share of the GPU's CTA slots a decode route's launch keeps busy (cuda::wave_fill of its CTAs).
double route_fill(const Route& r, const AttentionProblem& p, const BackendCaps& caps) {
  const cuda::DecodeGeometry g =
      cuda::decode_geometry(p.k.type, p.shape.d_k, p.v.type, p.shape.d_v, std::max(8, r.qvecs_per_cta));
  const int64_t qchunks = (p.shape.n_head_q / p.shape.n_head_kv * p.shape.n_q + g.qvecs_per_cta - 1) /
                          g.qvecs_per_cta;
  const int64_t ctas = p.shape.n_seq * p.shape.n_head_kv * qchunks * r.n_splits;
  return cuda::wave_fill(ctas, int64_t{caps.sm_count} * cuda::planned_ctas_per_sm(g, caps.shared_mem_per_block));
}

TEST(WholeWaveSplits, ResidentCtasFollowTheInstancesSharedMemory) {
  // f16 d 128: 3 stages of 35 KB rows, ~110 KB per CTA: two per SM, planned at one where no other query chunk
  // reads its keys. q4_0: ~49 KB, four (the register bound).
  const cuda::DecodeGeometry f16 = cuda::decode_geometry(KvType::f16, 128, KvType::f16, 128);
  const cuda::DecodeGeometry q4 = cuda::decode_geometry(KvType::q4_0, 128, KvType::q4_0, 128);
  EXPECT_EQ(cuda::resident_ctas_per_sm(f16, 227 * 1024), 2);
  EXPECT_EQ(cuda::planned_ctas_per_sm(f16, 227 * 1024, /*query_chunks=*/1), 1);
  EXPECT_EQ(cuda::planned_ctas_per_sm(f16, 227 * 1024, /*query_chunks=*/2), 2);
  EXPECT_EQ(cuda::planned_ctas_per_sm(q4, 227 * 1024, /*query_chunks=*/1), 4);
  EXPECT_EQ(cuda::resident_ctas_per_sm(q4, 227 * 1024), 4);
  // q8_0 d 128 (~60 KB): three resident, but the split rule fills two (measured faster); the others fill what fits.
  const cuda::DecodeGeometry q8 = cuda::decode_geometry(KvType::q8_0, 128, KvType::q8_0, 128);
  EXPECT_EQ(cuda::resident_ctas_per_sm(q8, 227 * 1024), 3);
  EXPECT_EQ(cuda::planned_ctas_per_sm(q8, 227 * 1024), 2);
  EXPECT_EQ(cuda::planned_ctas_per_sm(q4, 227 * 1024), 4);
  EXPECT_EQ(cuda::planned_ctas_per_sm(cuda::decode_geometry(KvType::q8_0, 128, KvType::q8_0, 128, 16), 227 * 1024),
            3);
  // A device with a third of the shared memory fits one f16 CTA, and never reports zero.
  EXPECT_EQ(cuda::resident_ctas_per_sm(f16, 100 * 1024), 1);
  EXPECT_EQ(cuda::resident_ctas_per_sm(f16, 1024), 1);
  // Wide instances (d_v > 128) carry 16 or 32 query vectors per CTA.
  EXPECT_FALSE(cuda::decode_geometry(KvType::f16, 256, KvType::f16, 256).narrow);
  EXPECT_EQ(cuda::decode_geometry(KvType::f16, 256, KvType::f16, 256).qvecs_per_cta, 32);
  EXPECT_EQ(cuda::decode_geometry(KvType::f16, 576, KvType::f16, 512).qvecs_per_cta, 16);
}

TEST(WholeWaveSplits, SmallRowsTakeTwoKeyGroupsPerWarpAndStillFitFourCtas) {
  // q4_0 and turbo (64-key stages of ~10 KB): 128-key tiles in 2 stages, four CTAs per SM as before; q8_0, f16 and
  // the 16-vector instances keep 64-key tiles. Splits stay in 64-key granules either way.
  for (KvType type : {KvType::q4_0, KvType::turbo3, KvType::turbo4}) {
    const cuda::DecodeGeometry g = cuda::decode_geometry(type, 128, type, 128);
    EXPECT_EQ(g.key_tile, 128) << kv_traits(type).name;
    EXPECT_EQ(g.stages, 2) << kv_traits(type).name;
    EXPECT_EQ(cuda::resident_ctas_per_sm(g, 227 * 1024), 4) << kv_traits(type).name;
    EXPECT_EQ(cuda::decode_geometry(type, 128, type, 128, cuda::kNarrowQvecsWide).key_tile, 64) << kv_traits(type).name;
  }
  EXPECT_EQ(cuda::decode_geometry(KvType::q8_0, 128, KvType::q8_0, 128).key_tile, 64);
  EXPECT_EQ(cuda::decode_geometry(KvType::f16, 128, KvType::f16, 128).key_tile, 64);
  EXPECT_EQ(cuda::decode_geometry(KvType::f16, 128, KvType::turbo3, 128).key_tile, 64);
  const BackendCaps caps = nominal_h100();
  auto r = plan_route(decode_problem(KvType::q4_0, 1, 1, 131072), caps);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->keys_per_split % cuda::kDecodeSplitGranule, 0);
  EXPECT_EQ(r->keys_per_split % 128, 64) << "a split of 33 granules ends inside a 128-key tile";
}

TEST(WholeWaveSplits, LongDecodeRoutesFillAtLeastNinetyPercentOfTheCtaSlots) {
  // kGoodWaveFill (95%) where whole tiles make such a count; q8_0 at 32768 keys (3 CTAs per SM, 396 slots) gets
  // 47 splits (95%-): 48 would leave a split empty.
  const BackendCaps caps = nominal_h100();
  for (KvType type : {KvType::f16, KvType::q8_0, KvType::q4_0, KvType::turbo3, KvType::turbo4}) {
    for (int64_t n_kv : {4096, 32768, 131072}) {
      const AttentionProblem p = decode_problem(type, 1, 1, n_kv);
      auto r = plan_route(p, caps);
      ASSERT_TRUE(r.ok()) << r.status().message();
      ASSERT_EQ(kernel_spec(r->kernel).kv_split, KvSplit::whole_waves) << kv_traits(type).name;
      if (n_kv >= 32768) {
        EXPECT_GE(route_fill(*r, p, caps), 0.9) << kv_traits(type).name << " n_kv " << n_kv;
      } else {
        // 64 tiles cannot fill 264+ slots at kMinTilesPerSplit tiles per split or more: the most splits allowed.
        EXPECT_EQ(r->n_splits, 4096 / 64 / cuda::kMinTilesPerSplit) << kv_traits(type).name;
      }
      EXPECT_EQ(r->keys_per_split % 64, 0);
      EXPECT_GE(r->n_splits * r->keys_per_split, n_kv);
      EXPECT_LT((r->n_splits - 1) * r->keys_per_split, n_kv) << "no empty split";
    }
  }
}

TEST(WholeWaveSplits, CountsForTheHeadlineShapes) {
  const BackendCaps caps = nominal_h100();
  // f16, 131072 keys: 2048 tiles; one CTA per SM, 16 splits of 128 tiles = 128 CTAs of 132 slots (97%).
  auto r = plan_route(decode_problem(KvType::f16, 1, 1, 131072), caps);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->n_splits, 16);
  EXPECT_EQ(r->keys_per_split, 128 * 64);
  // q4_0 fits 4 CTAs per SM (528 slots): 63 splits of 33 tiles = 504 CTAs (95.5%).
  r = plan_route(decode_problem(KvType::q4_0, 1, 1, 131072), caps);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->n_splits, 63);
  EXPECT_EQ(r->keys_per_split, 33 * 64);
  // 16 sequences x 8 KV heads = 128 CTAs per split: f16 takes 1 split (128 of 132), q4_0 4 (512 of 528).
  r = plan_route(decode_problem(KvType::f16, 16, 1, 32768), caps);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->n_splits, 1);
  r = plan_route(decode_problem(KvType::q4_0, 16, 1, 32768), caps);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->n_splits, 4);
  // Four query rows: 16 query vectors = 2 chunks of 8 per KV head over the same keys, planned at 2 CTAs per SM:
  // 16 splits, as many as one row takes at 1 per SM.
  r = plan_route(decode_problem(KvType::f16, 1, 4, 32768), caps);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->n_splits, 16);
  r = plan_route(decode_problem(KvType::f16, 1, 1, 32768), caps);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->n_splits, 16);
  // 256 sequences already fill the GPU: one split, no combine.
  r = plan_route(decode_problem(KvType::f16, 256, 1, 4096), caps);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->n_splits, 1);
  EXPECT_EQ(r->workspace_bytes, 0);
}

TEST(WholeWaveSplits, MoreThanTwoCtasPerSmOnlyWithSplitsOfEightTiles) {
  // q4_0 and turbo3 fit 4 CTAs per SM (528 slots). 16K keys (256 tiles) would fill them with 64 splits of 4
  // tiles: planned at 2 per SM instead (32 splits of 8 tiles, 256 of 264 slots). 32K fills 4 per SM with 64
  // splits of 8 tiles, 131K with 63 of 33; 8K and 4K have too few tiles for either and take the most allowed.
  const BackendCaps caps = nominal_h100();
  for (KvType type : {KvType::q4_0, KvType::turbo3}) {
    const std::pair<int64_t, int64_t> expected[] = {{4096, 16}, {8192, 32}, {16384, 32}, {32768, 64}, {131072, 63}};
    for (const auto& [n_kv, splits] : expected) {
      auto r = plan_route(decode_problem(type, 1, 1, n_kv), caps);
      ASSERT_TRUE(r.ok()) << r.status().message();
      EXPECT_EQ(r->n_splits, splits) << kv_traits(type).name << " n_kv " << n_kv;
    }
  }
  // f16 (one row: 1 per SM) is not affected: 16K takes 16 splits of 16 tiles.
  auto r = plan_route(decode_problem(KvType::f16, 1, 1, 16384), caps);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->n_splits, 16);
}

TEST(WholeWaveSplits, NineToSixteenQueryVectorsTakeOneSixteenVectorCtaPerKvHead) {
  const BackendCaps caps = nominal_h100();
  // 4 rows x GQA 4 = 16 query vectors: one CTA of 16 per (sequence, KV head) on the quantized rows, so the KV
  // bytes are read and dequantized once; 3 CTAs per SM (168 registers), 396 slots: 48 splits of 43 tiles (97%).
  for (KvType type : {KvType::q8_0, KvType::q4_0, KvType::turbo3, KvType::turbo4}) {
    const AttentionProblem p = decode_problem(type, 1, 4, 131072);
    auto r = plan_route(p, caps);
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_EQ(r->qvecs_per_cta, 16) << kv_traits(type).name;
    EXPECT_EQ(r->n_splits, 48) << kv_traits(type).name;
    EXPECT_EQ(r->keys_per_split, 43 * 64) << kv_traits(type).name;
    EXPECT_GE(route_fill(*r, p, caps), 0.95) << kv_traits(type).name;
    // The explanation names it.
    EXPECT_NE(explain(p, caps).to_string().find("16 query vectors per CTA"), std::string::npos);
  }
  // One row (4 query vectors) keeps the 8-vector instance and its 4 CTAs per SM; so do 8 (2 rows).
  for (int64_t n_q : {1, 2}) {
    auto r = plan_route(decode_problem(KvType::q4_0, 1, n_q, 131072), caps);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->qvecs_per_cta, 8) << "n_q " << n_q;
  }
  EXPECT_EQ(cuda::resident_ctas_per_sm(cuda::decode_geometry(KvType::q4_0, 128, KvType::q4_0, 128, 16), 227 * 1024),
            3);
  // 3 rows (12 query vectors) and 16 rows (64: four chunks of 16) take it too.
  for (int64_t n_q : {3, 16}) {
    auto r = plan_route(decode_problem(KvType::q8_0, 1, n_q, 32768), caps);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->qvecs_per_cta, 16) << "n_q " << n_q;
  }
  // f16 K at head dim 128 stays at 8: 16 staged query rows would leave one 117 KB CTA per SM instead of two.
  EXPECT_EQ(cuda::resident_ctas_per_sm(cuda::decode_geometry(KvType::f16, 128, KvType::f16, 128, 16), 227 * 1024), 1);
  auto f16 = plan_route(decode_problem(KvType::f16, 1, 4, 131072), caps);
  ASSERT_TRUE(f16.ok());
  EXPECT_EQ(f16->qvecs_per_cta, 8);
  // The wide kernel (d 256) keeps its own 32.
  ShapeProblemSpec wide;
  wide.shape = {1, 4, 32768, 32, 8, 256, 256};
  wide.k_type = wide.v_type = KvType::q4_0;
  auto w = plan_route(shape_only_problem(wide), caps);
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w->qvecs_per_cta, 32);
}

TEST(WholeWaveSplits, ForcedSplitCountsCutWholeTilesAndLayTheWorkspaceOutAgain) {
  // The tests' and benchmarks' split counts (with_forced_splits): 1000 keys = 16 tiles of 64. Asking 5 gives 4
  // tiles per split, 4 splits (the fifth would be empty); the workspace is make_launch's for 4 splits.
  const BackendCaps caps = nominal_h100();
  const AttentionProblem p = decode_problem(KvType::q4_0, 2, 1, 1000);
  auto planned = plan_route(p, caps);
  ASSERT_TRUE(planned.ok()) << planned.status().message();
  auto forced = with_forced_splits(p, *planned, 5);
  ASSERT_TRUE(forced.ok()) << forced.status().message();
  EXPECT_EQ(forced->keys_per_split, 4 * 64);
  EXPECT_EQ(forced->n_splits, 4);
  // Partials of 4 splits x 2 sequences x 32 heads x 1 row: d_v floats each, then a max and a sum.
  EXPECT_EQ(forced->layout.partial_o.bytes, 4 * 2 * 32 * 128 * 4);
  EXPECT_EQ(forced->layout.partial_max.bytes, 4 * 2 * 32 * 4);
  EXPECT_GE(forced->workspace_bytes, forced->layout.partial_sum.offset + forced->layout.partial_sum.bytes);
  // More splits than tiles: one tile each. Zero: the route as planned.
  forced = with_forced_splits(p, *planned, 100);
  ASSERT_TRUE(forced.ok());
  EXPECT_EQ(forced->n_splits, 16);
  forced = with_forced_splits(p, *planned, 0);
  ASSERT_TRUE(forced.ok());
  EXPECT_EQ(forced->n_splits, planned->n_splits);
  EXPECT_EQ(forced->workspace_bytes, planned->workspace_bytes);
}

TEST(WholeWaveSplits, MaxSplitsUpToIsTheExactMaximumOverShorterCaches) {
  // The count depends on n_kv only through the tile count: every tile boundary is visited.
  for (KernelId id : {KernelId::cuda_decode_f16, KernelId::cuda_decode_q4_0}) {
    const KernelSpec& spec = kernel_spec(id);
    const KvType type = id == KernelId::cuda_decode_f16 ? KvType::f16 : KvType::q4_0;
    for (int sm : {1, 7, 132}) {
      BackendCaps caps = nominal_h100();
      caps.sm_count = sm;
      for (int64_t n_seq : {1, 3}) {
        for (int64_t heads : {1, 8}) {
          for (int64_t group_qvecs : {1, 16, 40}) {
            const SplitInstance inst{type, type, 128, 128, group_qvecs};
            for (int64_t capacity : {0, 1, 64, 65, 200, 5000, 70000}) {
              int64_t reached = 1;
              for (int64_t t = 0; t * 64 < capacity + 64; ++t) {
                const int64_t n_kv = std::min(t * 64, capacity);
                const SplitPlan s = choose_splits(spec, caps, n_seq, heads, n_kv, inst);
                reached = std::max(reached, s.n_splits);
                if (n_kv > 0) {
                  EXPECT_GE(s.n_splits * s.keys_per_split, n_kv);
                  EXPECT_LT((s.n_splits - 1) * s.keys_per_split, n_kv);
                }
              }
              EXPECT_EQ(reached, max_splits_up_to(spec, caps, n_seq, heads, capacity, inst))
                  << spec.name << " sm " << sm << " n_seq " << n_seq << " heads " << heads << " qvecs "
                  << group_qvecs << " capacity " << capacity;
            }
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace kvflash::plan
