// The Hopper (wgmma) prefill kernels, cuda.prefill_wgmma_ws.{f16,q8_0,q4_0} and cuda.prefill_wgmma.{f16,q4_0},
// against the reference oracle (on the dequantized cache). The router takes the one-role rows for those caches at
// head dim 128 where the query tiles fill the GPU (short chunks go to the mma.sync rows, which split their keys; the
// warp-specialized rows measured slower and are only forced here). Run on each row, the kernel matches the oracle
// with every option, strided (2-byte aligned) and paged layouts, per-sequence lengths, query counts that are not a
// multiple of its 128-vector CTA, many 128-key tiles through its slot rings (and, quantized, the dequantization
// into them), and rows that bottom-right causal masking hides entirely.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <vector>

#include "gpu/gpu_harness.h"

namespace kvflash::testing::gpu {
namespace {

// Every wgmma row and its cache type: the warp-specialized kernel (cuda.prefill_wgmma_ws.*, f16, q8_0, q4_0, turbo3,
// turbo4) and the one-role kernel (cuda.prefill_wgmma.*; q8_0's producer there is correct but slower than
// cuda.prefill.q8_0: no row). Each test runs every row, forced, so a row the router does not take today is still
// checked.
struct WgmmaRow {
  KernelId kernel;
  KvType type;
};
constexpr WgmmaRow kWgmmaRows[] = {{KernelId::cuda_prefill_wgmma_ws_f16, KvType::f16},
                                   {KernelId::cuda_prefill_wgmma_ws_q8_0, KvType::q8_0},
                                   {KernelId::cuda_prefill_wgmma_ws_q4_0, KvType::q4_0},
                                   {KernelId::cuda_prefill_wgmma_ws_turbo3, KvType::turbo3},
                                   {KernelId::cuda_prefill_wgmma_ws_turbo4, KvType::turbo4},
                                   {KernelId::cuda_prefill_wgmma_f16, KvType::f16},
                                   {KernelId::cuda_prefill_wgmma_q4_0, KvType::q4_0}};

/// `row`, whatever the router would take for these small shapes.
RunConfig on_row(const WgmmaRow& row) {
  RunConfig config;
  config.force_kernel = row.kernel;
  return config;
}

ProblemSpec wgmma_spec(uint64_t seed, KvType type = KvType::f16) {
  ProblemSpec spec;
  // 77 new rows over 300 keys: depth 223 (three 128-key tiles, the last partial), four query heads per KV head
  // (308 query vectors: two full CTAs and a partial one whose second warpgroup has 52 rows).
  spec.shape = AttentionShape{/*n_seq=*/2, /*n_q=*/77, /*n_kv=*/300, /*n_head_q=*/8, /*n_head_kv=*/2, 128, 128};
  spec.ktype = spec.vtype = type;
  spec.causal = true;
  spec.seed = seed;
  return spec;
}

/// Runs `spec` on `row` and checks the tensor-core bound.
void expect_row_matches(const ProblemSpec& spec, const WgmmaRow& row) {
  const Comparison c = compare_with_reference(spec, on_row(row));
  EXPECT_EQ(c.route, kernel_name(row.kernel)) << spec_name(spec);
  EXPECT_LE(c.nmse, kDecodeTolerance) << spec_name(spec) << " route " << c.route;
}

TEST(CudaPrefillWgmma, CausalAndFullAttentionMatchTheReference) {
  KVFLASH_REQUIRE_GPU();
  uint64_t seed = 5000;
  for (const WgmmaRow& row : kWgmmaRows) {
    for (bool causal : {true, false}) {
      ProblemSpec spec = wgmma_spec(++seed, row.type);
      spec.causal = causal;
      const Comparison c = compare_with_reference(spec, on_row(row));
      EXPECT_EQ(c.route, kernel_name(row.kernel)) << spec_name(spec);
      EXPECT_LE(c.nmse, kDecodeTolerance) << spec_name(spec);
      std::printf("  %-28s %-60s nmse %.2e\n", c.route.c_str(), spec_name(spec).c_str(), c.nmse);
    }
  }
}

TEST(CudaPrefillWgmma, EveryOptionAloneAndAllTogether) {
  KVFLASH_REQUIRE_GPU();
  uint64_t seed = 5100;
  std::vector<ProblemSpec> specs;
  ProblemSpec base = wgmma_spec(0);
  base.causal = false;
  for (MaskKind m : {MaskKind::f32, MaskKind::f16, MaskKind::f32_broadcast_heads}) {
    ProblemSpec s = base;
    s.mask = m;
    specs.push_back(s);
  }
  ProblemSpec window = base;
  window.window = 70;
  specs.push_back(window);
  ProblemSpec causal_window = base;
  causal_window.causal = true;
  causal_window.window = 40;
  specs.push_back(causal_window);
  ProblemSpec wide_window = base;
  wide_window.shape.n_kv = 700;
  wide_window.window = 150;  // the first rows' windows start past whole 128-key tiles, which are skipped
  specs.push_back(wide_window);
  ProblemSpec alibi = base;
  alibi.alibi_max_bias = 8.0;
  specs.push_back(alibi);
  ProblemSpec softcap = base;
  softcap.softcap = 20.0;
  specs.push_back(softcap);
  ProblemSpec sinks = base;
  sinks.causal = true;
  sinks.sinks = true;
  specs.push_back(sinks);
  ProblemSpec scale = base;
  scale.scale = -0.3;
  specs.push_back(scale);
  ProblemSpec varlen = base;
  varlen.causal = true;
  varlen.varlen = true;  // kv_len per sequence: some below n_q, so their first rows see no key
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
  for (const WgmmaRow& row : kWgmmaRows) {
    for (ProblemSpec s : specs) {
      s.ktype = s.vtype = row.type;
      s.seed = ++seed;
      expect_row_matches(s, row);
    }
  }
}

TEST(CudaPrefillWgmma, StridedAndPagedLayoutsWithPerSequenceLengths) {
  KVFLASH_REQUIRE_GPU();
  // strided_padded pads rows by 2-byte units (the kernel's unaligned copy path); paged draws page sizes and both
  // in-page orders per seed.
  uint64_t seed = 5200;
  for (const WgmmaRow& row : kWgmmaRows) {
    for (KvLayout layout : {KvLayout::strided_padded, KvLayout::paged}) {
      for (int rep = 0; rep < 3; ++rep) {
        ProblemSpec spec = wgmma_spec(++seed, row.type);
        spec.layout = layout;
        spec.varlen = true;
        spec.shape.n_seq = 3;
        spec.shape.n_kv = 400;
        expect_row_matches(spec, row);
      }
    }
  }
}

TEST(CudaPrefillWgmma, GroupSizesAndQueryCountsAcrossTileBoundaries) {
  KVFLASH_REQUIRE_GPU();
  // (GQA group, n_q, n_kv): one head, a group whose rows straddle CTAs and warpgroups (3 x 23 = 69), a group
  // filling a CTA with 8 rows, the smallest prefill (17 rows), and a square prefill (n_q = n_kv, depth 0).
  struct Case {
    int64_t group, n_q, n_kv;
  };
  const Case cases[] = {{1, 100, 260}, {3, 23, 200}, {16, 40, 333}, {4, 17, 500}, {2, 190, 190}};
  uint64_t seed = 5300;
  for (const WgmmaRow& row : kWgmmaRows) {
    for (const Case& cs : cases) {
      for (bool causal : {true, false}) {
        ProblemSpec spec = wgmma_spec(++seed, row.type);
        spec.causal = causal;
        spec.shape.n_head_kv = 2;
        spec.shape.n_head_q = 2 * cs.group;
        spec.shape.n_q = cs.n_q;
        spec.shape.n_kv = cs.n_kv;
        expect_row_matches(spec, row);
      }
    }
  }
}

TEST(CudaPrefillWgmma, ManyKeyTilesThroughTheStageRing) {
  KVFLASH_REQUIRE_GPU();
  // Depth 1937 over 60 new rows: 16 tiles of 128 keys, so both stages and both offset slots turn over many
  // times, and the last tile is partial. Small enough for the sanitizers (gpu.sh runs it under racecheck).
  uint64_t seed = 5400;
  for (const WgmmaRow& row : kWgmmaRows) {
    for (bool paged : {false, true}) {
      ProblemSpec spec = wgmma_spec(++seed, row.type);
      spec.shape.n_seq = 1;
      spec.shape.n_q = 60;
      spec.shape.n_kv = 1997;
      spec.sinks = true;
      if (paged) spec.layout = KvLayout::paged;
      expect_row_matches(spec, row);
    }
  }
}

TEST(CudaPrefillWgmma, RowsThatSeeNoKeyOutputZeros) {
  KVFLASH_REQUIRE_GPU();
  // Causal with n_q > n_kv: the first n_q - n_kv rows sit before the first key (bottom-right alignment).
  uint64_t seed = 5500;
  for (const WgmmaRow& row : kWgmmaRows) {
    ProblemSpec spec = wgmma_spec(++seed, row.type);
    spec.shape.n_q = 90;
    spec.shape.n_kv = 40;
    spec.sinks = true;
    expect_row_matches(spec, row);
    ProblemSpec empty = wgmma_spec(++seed, row.type);
    empty.shape.n_kv = 0;
    expect_row_matches(empty, row);
  }
}

// Routing needs no device: the planner works from nominal caps without one.
TEST(CudaPrefillWgmmaRouting, PreferredAtHeadDim128AndVisibleInExplain) {
  ProblemSpec spec = wgmma_spec(5600);
  spec.shape = AttentionShape{1, 512, 32768, 32, 8, 128, 128};
  StatusOr<HostProblem> hp = HostProblem::make(spec);
  ASSERT_TRUE(hp.ok()) << hp.status().message();
  const BackendCaps caps = caps_for(BackendKind::cuda);
  StatusOr<Route> r = plan_route(hp->problem(), caps);
  ASSERT_TRUE(r.ok()) << r.status().message();
  const std::string why = explain(hp->problem(), caps).to_string();
  // The warp-specialized row (measured 1.3x the one-role row since its producer copies whole tiles as spans,
  // bench/prefill_notes.md session 7); the one-role and mma.sync rows are candidates too.
  EXPECT_EQ(kernel_name(r->kernel), "cuda.prefill_wgmma_ws.f16") << why;
  EXPECT_EQ(r->workspace_bytes, 0);
  EXPECT_NE(why.find("cuda.prefill.f16 "), std::string::npos) << why;
  EXPECT_NE(why.find("cuda.prefill_wgmma.f16 "), std::string::npos) << why;

  // Head dim 64 stays on the mma.sync rows; q8_0, q4_0, turbo3 and turbo4 take the warp-specialized rows (measured
  // faster than their mma.sync and one-role wgmma rows); decode-sized problems the split-KV rows.
  spec.shape = AttentionShape{1, 512, 4096, 32, 8, 64, 64};
  StatusOr<HostProblem> d64 = HostProblem::make(spec);
  ASSERT_TRUE(d64.ok()) << d64.status().message();
  StatusOr<Route> r64 = plan_route(d64->problem(), caps);
  ASSERT_TRUE(r64.ok()) << r64.status().message();
  EXPECT_EQ(kernel_name(r64->kernel), "cuda.prefill.f16");
  const std::string why64 = explain(d64->problem(), caps).to_string();
  EXPECT_NE(why64.find("d_k/d_v = 64/64 is not one it is compiled for"), std::string::npos) << why64;

  spec.shape = AttentionShape{1, 512, 4096, 32, 8, 128, 128};
  spec.ktype = spec.vtype = KvType::q8_0;
  StatusOr<HostProblem> q8 = HostProblem::make(spec);
  ASSERT_TRUE(q8.ok()) << q8.status().message();
  StatusOr<Route> rq = plan_route(q8->problem(), caps);
  ASSERT_TRUE(rq.ok()) << rq.status().message();
  EXPECT_EQ(kernel_name(rq->kernel), "cuda.prefill_wgmma_ws.q8_0");

  spec.ktype = spec.vtype = KvType::q4_0;
  StatusOr<HostProblem> q4 = HostProblem::make(spec);
  ASSERT_TRUE(q4.ok()) << q4.status().message();
  StatusOr<Route> r4 = plan_route(q4->problem(), caps);
  ASSERT_TRUE(r4.ok()) << r4.status().message();
  EXPECT_EQ(kernel_name(r4->kernel), "cuda.prefill_wgmma_ws.q4_0");

  for (KvType turbo : {KvType::turbo3, KvType::turbo4}) {
    spec.ktype = spec.vtype = turbo;
    StatusOr<HostProblem> t = HostProblem::make(spec);
    ASSERT_TRUE(t.ok()) << t.status().message();
    StatusOr<Route> rt = plan_route(t->problem(), caps);
    ASSERT_TRUE(rt.ok()) << rt.status().message();
    EXPECT_EQ(kernel_name(rt->kernel), "cuda.prefill_wgmma_ws." + std::string(kv_traits(turbo).name));
  }

  // A 64-row chunk at depth fills 16 CTAs: the mma.sync row splits its keys to fill the SMs and is taken.
  spec.ktype = spec.vtype = KvType::f16;
  spec.shape = AttentionShape{1, 64, 32768, 32, 8, 128, 128};
  StatusOr<HostProblem> chunk = HostProblem::make(spec);
  ASSERT_TRUE(chunk.ok()) << chunk.status().message();
  StatusOr<Route> rc = plan_route(chunk->problem(), caps);
  ASSERT_TRUE(rc.ok()) << rc.status().message();
  EXPECT_EQ(kernel_name(rc->kernel), "cuda.prefill.f16") << explain(chunk->problem(), caps).to_string();
  EXPECT_GT(rc->n_splits, 1);

  spec.causal = false;  // one row per sequence sees every key anyway
  spec.shape = AttentionShape{16, 1, 4096, 32, 8, 128, 128};
  StatusOr<HostProblem> decode = HostProblem::make(spec);
  ASSERT_TRUE(decode.ok()) << decode.status().message();
  StatusOr<Route> rd = plan_route(decode->problem(), caps);
  ASSERT_TRUE(rd.ok()) << rd.status().message();
  EXPECT_EQ(kernel_name(rd->kernel), "cuda.decode_split_kv.f16");
}

}  // namespace
}  // namespace kvflash::testing::gpu
