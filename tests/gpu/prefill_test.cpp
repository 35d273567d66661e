// The tensor-core prefill kernel against the reference oracle (on the dequantized cache): every compiled instance,
// every option, strided and paged layouts, per-sequence lengths, query counts that are not a multiple of the
// 128- or 64-vector tile, depth (n_kv > n_q) over many key tiles, and the rows bottom-right causal masking hides
// entirely.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <vector>

#include "gpu/gpu_harness.h"

namespace kvflash::testing::gpu {
namespace {

bool is_prefill_row(const plan::KernelSpec& row) { return row.cost == plan::CostModel::cuda_prefill; }

ProblemSpec prefill_spec(int64_t d_k, int64_t d_v, KvType kt, KvType vt, uint64_t seed) {
  ProblemSpec spec;
  // 77 new rows over 300 keys: depth 223, four query heads per KV head (308 query vectors: 4 full tiles and a
  // partial one), and no tile boundary lines up with the keys.
  spec.shape = AttentionShape{/*n_seq=*/2, /*n_q=*/77, /*n_kv=*/300, /*n_head_q=*/8, /*n_head_kv=*/2, d_k, d_v};
  spec.ktype = kt;
  spec.vtype = vt;
  spec.causal = true;
  spec.seed = seed;
  return spec;
}

/// Runs `spec`, checks it against the oracle with the tensor-core bound and that it took a prefill row (the
/// mma.sync rows cuda.prefill.*, or cuda.prefill_wgmma.* where the router prefers it).
Comparison expect_prefill_matches(const ProblemSpec& spec, const RunConfig& config = {}) {
  const Comparison c = compare_with_reference(spec, config);
  EXPECT_LE(c.nmse, kDecodeTolerance) << spec_name(spec) << " route " << c.route;
  EXPECT_EQ(c.route.rfind("cuda.prefill", 0), 0u) << spec_name(spec) << " routed to " << c.route;
  return c;
}

TEST(CudaPrefill, EveryInstanceMatchesTheReferenceAndTakesThePrefillRoute) {
  KVFLASH_REQUIRE_GPU();
  uint64_t seed = 3000;
  int instances = 0;
  for (const plan::KernelSpec& row : plan::kKernels) {
    if (!is_prefill_row(row)) continue;
    for (const KvTraits& k : all_kv_types()) {
      if ((row.k_types & plan::type_bit(k.type)) == 0) continue;
      for (const KvTraits& v : all_kv_types()) {
        if ((row.v_types & plan::type_bit(v.type)) == 0) continue;
        for (const plan::HeadDimPair& d : row.head_dims) {
          for (bool causal : {true, false}) {
            ProblemSpec spec = prefill_spec(d.d_k, d.d_v, k.type, v.type, ++seed);
            spec.causal = causal;
            // This row even where the router prefers the wgmma kernel (prefill_wgmma_test covers that one).
            RunConfig config;
            config.force_kernel = row.id;
            const Comparison c = expect_prefill_matches(spec, config);
            EXPECT_EQ(c.route, row.name) << spec_name(spec);
            std::printf("  %-60s nmse %.2e\n", spec_name(spec).c_str(), c.nmse);
          }
          ++instances;
        }
      }
    }
  }
  EXPECT_GT(instances, 0) << "the kernel table has no prefill row";
}

TEST(CudaPrefill, EveryOptionAloneAndAllTogether) {
  KVFLASH_REQUIRE_GPU();
  uint64_t seed = 3200;
  for (KvType t : {KvType::f16, KvType::q8_0, KvType::q4_0, KvType::turbo3, KvType::turbo4}) {
    std::vector<ProblemSpec> specs;
    ProblemSpec base = prefill_spec(128, 128, t, t, 0);
    base.causal = false;
    for (MaskKind m : {MaskKind::f32, MaskKind::f16, MaskKind::f32_broadcast_heads}) {
      ProblemSpec s = base;
      s.mask = m;
      specs.push_back(s);
    }
    ProblemSpec causal = base;
    causal.causal = true;
    specs.push_back(causal);
    ProblemSpec window = base;
    window.window = 70;  // the first rows' windows start past whole tiles, which are then skipped
    specs.push_back(window);
    ProblemSpec causal_window = causal;
    causal_window.window = 40;
    specs.push_back(causal_window);
    ProblemSpec alibi = base;
    alibi.alibi_max_bias = 8.0;
    specs.push_back(alibi);
    ProblemSpec softcap = base;
    softcap.softcap = 20.0;
    specs.push_back(softcap);
    ProblemSpec sinks = causal;
    sinks.sinks = true;
    specs.push_back(sinks);
    ProblemSpec scale = base;
    scale.scale = -0.3;
    specs.push_back(scale);
    ProblemSpec varlen = causal;
    varlen.varlen = true;  // kv_len drawn per sequence: some below n_q, so their first rows see no key
    varlen.shape.n_seq = 5;
    specs.push_back(varlen);
    ProblemSpec all = base;
    all.mask = MaskKind::f16;
    all.causal = true;
    all.window = 150;
    all.alibi_max_bias = 4.0;
    all.softcap = 30.0;
    all.sinks = true;
    all.varlen = true;
    all.layout = KvLayout::paged;
    all.shape.n_seq = 4;
    specs.push_back(all);
    for (ProblemSpec& s : specs) {
      s.seed = ++seed;
      expect_prefill_matches(s);
    }
  }
}

TEST(CudaPrefill, StridedAndPagedLayoutsWithPerSequenceLengths) {
  KVFLASH_REQUIRE_GPU();
  uint64_t seed = 3400;
  for (KvType t : {KvType::f16, KvType::q8_0, KvType::q4_0, KvType::turbo3, KvType::turbo4}) {
    for (KvLayout layout : {KvLayout::strided_padded, KvLayout::paged}) {
      // Several seeds: the builder picks the axis order, padding and page size per seed.
      for (int rep = 0; rep < 2; ++rep) {
        ProblemSpec spec = prefill_spec(128, 128, t, t, ++seed);
        spec.layout = layout;
        spec.varlen = true;
        spec.shape.n_seq = 3;
        spec.shape.n_kv = 400;
        expect_prefill_matches(spec);
      }
    }
  }
}

TEST(CudaPrefill, GroupSizesAndQueryCountsAcrossTileBoundaries) {
  KVFLASH_REQUIRE_GPU();
  // (GQA group, n_q): one head, a group whose rows straddle CTAs (3 x 23 = 69), a group filling a CTA with 4 rows,
  // the smallest prefill (17 rows), and a square prefill (n_q = n_kv, depth 0).
  struct Case {
    int64_t group, n_q, n_kv;
  };
  const Case cases[] = {{1, 100, 260}, {3, 23, 200}, {16, 40, 333}, {4, 17, 500}, {2, 190, 190}};
  uint64_t seed = 3600;
  for (KvType t : {KvType::f16, KvType::q4_0, KvType::turbo3}) {
    for (const Case& cs : cases) {
      ProblemSpec spec = prefill_spec(128, 128, t, t, ++seed);
      spec.shape.n_head_kv = 2;
      spec.shape.n_head_q = 2 * cs.group;
      spec.shape.n_q = cs.n_q;
      spec.shape.n_kv = cs.n_kv;
      expect_prefill_matches(spec);
    }
  }
}

TEST(CudaPrefill, ManyKeyTilesThroughTheFragmentPipeline) {
  KVFLASH_REQUIRE_GPU();
  // Depth 1937 over 60 new rows: 31 tiles of 64 keys (62 of 32), so the two fragment buffers and the stages each
  // turn over many times, the last tile is partial, and the two key halves of a CTA see different numbers of
  // keys. Small enough for the sanitizers (gpu.sh runs it under racecheck).
  uint64_t seed = 3700;
  for (KvType t : {KvType::f16, KvType::q8_0, KvType::q4_0, KvType::turbo3, KvType::turbo4}) {
    for (int64_t d : {int64_t{128}, int64_t{256}}) {
      ProblemSpec spec = prefill_spec(d, d, t, t, ++seed);
      spec.shape.n_seq = 1;
      spec.shape.n_q = 60;
      spec.shape.n_kv = 1997;
      spec.sinks = true;
      expect_prefill_matches(spec);
    }
  }
}

TEST(CudaPrefill, SplitKeysMergeThroughTheCombine) {
  KVFLASH_REQUIRE_GPU();
  // A short chunk at depth splits its keys (each split's CTA leaves partial rows, the shared combine merges them):
  // forced counts from 1 to one split per 64-key tile, with sinks and per-sequence lengths (splits past a
  // sequence's end see no key), a window (splits before it see none), and turbo V (partials stay rotated).
  uint64_t seed = 3750;
  for (KvType t : {KvType::f16, KvType::q8_0, KvType::turbo3, KvType::turbo4}) {
    for (int64_t d : {int64_t{128}, int64_t{256}}) {
      ProblemSpec spec = prefill_spec(d, d, t, t, ++seed);
      spec.shape.n_q = 40;
      spec.shape.n_kv = 1997;
      spec.sinks = true;
      spec.varlen = true;
      for (int64_t splits : {1, 2, 5, 32}) {
        const Comparison c = expect_prefill_matches(spec, RunConfig{splits, 0, std::nullopt});
        if (splits > 1) {
          EXPECT_GT(c.n_splits, 1) << spec_name(spec);
        }
      }
      spec.window = 300;
      spec.varlen = false;
      expect_prefill_matches(spec, RunConfig{7, 0, std::nullopt});
    }
  }
}

TEST(CudaPrefill, RowsThatSeeNoKeyOutputZeros) {
  KVFLASH_REQUIRE_GPU();
  // Causal with n_q > n_kv: the first n_q - n_kv rows sit before the first key (bottom-right alignment).
  for (KvType t : {KvType::f16, KvType::q8_0, KvType::turbo4}) {
    ProblemSpec spec = prefill_spec(128, 128, t, t, 3800 + static_cast<uint64_t>(t));
    spec.shape.n_q = 90;
    spec.shape.n_kv = 40;
    spec.sinks = true;
    expect_prefill_matches(spec);
  }
  ProblemSpec empty = prefill_spec(128, 128, KvType::f16, KvType::f16, 3900);
  empty.shape.n_kv = 0;
  expect_prefill_matches(empty);
}

// Routing needs no device: the planner works from nominal caps without one.
TEST(CudaPrefillRouting, ExplainSaysWhyThePrefillRowIsOrIsNotTaken) {
  ProblemSpec spec = prefill_spec(128, 128, KvType::q8_0, KvType::q8_0, 4000);
  spec.shape = AttentionShape{1, 512, 4096, 32, 8, 128, 128};
  StatusOr<HostProblem> hp = HostProblem::make(spec);
  ASSERT_TRUE(hp.ok()) << hp.status().message();
  const BackendCaps caps = caps_for(BackendKind::cuda);
  StatusOr<Route> r = plan_route(hp->problem(), caps);
  ASSERT_TRUE(r.ok()) << r.status().message();
  // The warp-specialized wgmma row (measured faster than cuda.prefill.q8_0); the mma.sync row is a candidate.
  const std::string why_q8 = explain(hp->problem(), caps).to_string();
  EXPECT_EQ(kernel_name(r->kernel), "cuda.prefill_wgmma_ws.q8_0") << why_q8;
  EXPECT_NE(why_q8.find("cuda.prefill.q8_0"), std::string::npos) << why_q8;
  EXPECT_EQ(r->workspace_bytes, 0);

  // bf16 has no fragment loader and d 512 no instance: the generic kernel, and explain names the reason.
  spec.ktype = spec.vtype = KvType::bf16;
  spec.shape.n_kv = 300;
  StatusOr<HostProblem> bf = HostProblem::make(spec);
  ASSERT_TRUE(bf.ok()) << bf.status().message();
  const std::string why = explain(bf->problem(), caps).to_string();
  EXPECT_NE(why.find("cuda.prefill.f16"), std::string::npos) << why;
  EXPECT_NE(why.find("k.type = bf16 is not one it reads"), std::string::npos) << why;
  EXPECT_NE(why.find("route: cuda.generic"), std::string::npos) << why;

  spec.ktype = spec.vtype = KvType::f16;
  spec.shape.d_k = spec.shape.d_v = 512;
  spec.shape.n_head_q = 8;
  spec.shape.n_head_kv = 4;
  StatusOr<HostProblem> wide = HostProblem::make(spec);
  ASSERT_TRUE(wide.ok()) << wide.status().message();
  const std::string why_wide = explain(wide->problem(), caps).to_string();
  EXPECT_NE(why_wide.find("d_k/d_v = 512/512 is not one it is compiled for"), std::string::npos) << why_wide;

  // Decode-sized problems stay on the split-KV decode rows, which also split the keys.
  spec.shape = AttentionShape{2, 4, 700, 8, 2, 128, 128};
  StatusOr<HostProblem> decode = HostProblem::make(spec);
  ASSERT_TRUE(decode.ok()) << decode.status().message();
  StatusOr<Route> rd = plan_route(decode->problem(), caps);
  ASSERT_TRUE(rd.ok()) << rd.status().message();
  EXPECT_EQ(kernel_name(rd->kernel), "cuda.decode_split_kv.f16");
}

}  // namespace
}  // namespace kvflash::testing::gpu
