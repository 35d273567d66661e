// The tensor-core split-KV decode kernel against the reference oracle: every compiled instance, every option,
// every layout, forced split counts, and the shapes other engines abort on.
#include <gtest/gtest.h>

#include <cstdio>
#include <vector>

#include "gpu/gpu_harness.h"

namespace kvflash::testing::gpu {
namespace {

ProblemSpec decode_spec(int64_t d_k, int64_t d_v, KvType kt, KvType vt, uint64_t seed) {
  ProblemSpec spec;
  // 700 keys: not a multiple of any tile, and several splits on any GPU.
  spec.shape = AttentionShape{/*n_seq=*/2, /*n_q=*/1, /*n_kv=*/700, /*n_head_q=*/8, /*n_head_kv=*/2, d_k, d_v};
  spec.ktype = kt;
  spec.vtype = vt;
  spec.seed = seed;
  return spec;
}

/// Every instance the kernel table compiles (a cuda row's type pairs x head-dim pairs); the tests walk them so that
/// a new row or head dim is covered without a new test.
std::vector<ProblemSpec> instance_specs() {
  std::vector<ProblemSpec> specs;
  uint64_t seed = 100;
  for (const plan::KernelSpec& row : plan::kKernels) {
    if (row.backend != BackendKind::cuda || row.generic) continue;
    for (const KvTraits& k : all_kv_types()) {
      if ((row.k_types & plan::type_bit(k.type)) == 0) continue;
      for (const KvTraits& v : all_kv_types()) {
        if ((row.v_types & plan::type_bit(v.type)) == 0) continue;
        for (const plan::HeadDimPair& d : row.head_dims) specs.push_back(decode_spec(d.d_k, d.d_v, k.type, v.type, ++seed));
      }
    }
  }
  return specs;
}

TEST(CudaDecode, EveryInstanceMatchesTheReferenceAndTakesTheDecodeRoute) {
  KVFLASH_REQUIRE_GPU();
  for (ProblemSpec spec : instance_specs()) {
    // One query row (plain decode) and four (speculative decoding): 4 and 16 query vectors per KV head.
    for (int64_t n_q : {1, 4}) {
      spec.shape.n_q = n_q;
      const Comparison c = expect_matches_reference(spec);
      EXPECT_TRUE(c.decode_kernel) << spec_name(spec) << " routed to " << c.route;
      std::printf("  %-60s nmse %.2e splits %lld\n", spec_name(spec).c_str(), c.nmse,
                  static_cast<long long>(c.n_splits));
    }
  }
}

TEST(CudaDecode, GroupSizesFromOneToManyQueryChunks) {
  KVFLASH_REQUIRE_GPU();
  // GQA group x query rows: 1 vector, exactly one m-tile, two m-tiles, and more than one CTA's worth (32 + 8).
  const std::pair<int64_t, int64_t> groups[] = {{1, 1}, {4, 4}, {16, 2}, {8, 5}, {40, 1}};
  uint64_t seed = 300;
  for (KvType t : {KvType::f16, KvType::q4_0, KvType::turbo3}) {
    for (const auto& [group, n_q] : groups) {
      ProblemSpec spec = decode_spec(128, 128, t, t, ++seed);
      spec.shape.n_head_kv = 2;
      spec.shape.n_head_q = 2 * group;
      spec.shape.n_q = n_q;
      const Comparison c = expect_matches_reference(spec);
      EXPECT_TRUE(c.decode_kernel) << spec_name(spec);
    }
  }
}

TEST(CudaDecode, EveryOptionAloneAndAllTogether) {
  KVFLASH_REQUIRE_GPU();
  struct Pair {
    int64_t d_k, d_v;
    KvType k, v;
  };
  const Pair pairs[] = {{128, 128, KvType::f16, KvType::f16},
                        {128, 128, KvType::q4_0, KvType::q4_0},
                        {64, 64, KvType::turbo3, KvType::turbo3},
                        {256, 256, KvType::f16, KvType::turbo4}};
  uint64_t seed = 500;
  for (const Pair& pr : pairs) {
    std::vector<ProblemSpec> specs;
    ProblemSpec base = decode_spec(pr.d_k, pr.d_v, pr.k, pr.v, 0);
    base.shape.n_q = 3;
    for (MaskKind m : {MaskKind::f32, MaskKind::f16, MaskKind::f32_broadcast_heads}) {
      ProblemSpec s = base;
      s.mask = m;
      specs.push_back(s);
    }
    ProblemSpec causal = base;
    causal.causal = true;
    specs.push_back(causal);
    ProblemSpec window = base;
    window.window = 100;  // hides most keys: whole tiles are skipped
    specs.push_back(window);
    ProblemSpec alibi = base;
    alibi.alibi_max_bias = 8.0;
    specs.push_back(alibi);
    ProblemSpec softcap = base;
    softcap.softcap = 20.0;
    specs.push_back(softcap);
    ProblemSpec sinks = base;
    sinks.sinks = true;
    specs.push_back(sinks);
    ProblemSpec scale = base;
    scale.scale = 0.3;
    specs.push_back(scale);
    ProblemSpec varlen = base;
    varlen.varlen = true;
    varlen.shape.n_seq = 5;
    specs.push_back(varlen);
    ProblemSpec all = base;
    all.mask = MaskKind::f16;
    all.causal = true;
    all.window = 300;
    all.alibi_max_bias = 4.0;
    all.softcap = 30.0;
    all.sinks = true;
    all.varlen = true;
    all.shape.n_seq = 4;
    specs.push_back(all);
    for (ProblemSpec& s : specs) {
      s.seed = ++seed;
      const Comparison c = expect_matches_reference(s);
      EXPECT_TRUE(c.decode_kernel) << spec_name(s);
    }
  }
}

TEST(CudaDecode, StridedAndPagedLayoutsWithPerSequenceLengths) {
  KVFLASH_REQUIRE_GPU();
  uint64_t seed = 700;
  for (KvType t : {KvType::f16, KvType::q8_0, KvType::q4_0, KvType::turbo3, KvType::turbo4}) {
    for (KvLayout layout : {KvLayout::strided_padded, KvLayout::paged}) {
      // Several seeds: the builder picks the axis order, padding and page size per seed.
      for (int rep = 0; rep < 3; ++rep) {
        ProblemSpec spec = decode_spec(128, 128, t, t, ++seed);
        spec.layout = layout;
        spec.varlen = true;
        spec.shape.n_seq = 3;
        spec.shape.n_q = 2;
        expect_matches_reference(spec);
      }
    }
  }
}

TEST(CudaDecode, ForcedSplitCountsAgree) {
  KVFLASH_REQUIRE_GPU();
  ProblemSpec spec = decode_spec(128, 128, KvType::q8_0, KvType::q8_0, 900);
  spec.shape.n_kv = 1500;
  spec.sinks = true;
  spec.varlen = true;
  for (int64_t splits : {1, 2, 3, 7, 24}) {
    const Comparison c = expect_matches_reference(spec, RunConfig{splits, 0, std::nullopt});
    EXPECT_GE(c.n_splits, 1);
  }
  // 4 rows x GQA 4 = 16 query vectors: one 16-vector CTA per (sequence, KV head) and split.
  ProblemSpec sixteen = decode_spec(128, 128, KvType::q4_0, KvType::q4_0, 902);
  sixteen.shape.n_kv = 1500;
  sixteen.shape.n_q = 4;
  sixteen.varlen = true;
  sixteen.causal = true;
  for (int64_t splits : {1, 2, 7, 24}) {
    const Comparison c = expect_matches_reference(sixteen, RunConfig{splits, 0});
    EXPECT_EQ(c.qvecs_per_cta, 16) << spec_name(sixteen);
  }
  // Turbo V with several splits: partials stay rotated and the combine rotates back once.
  ProblemSpec turbo = decode_spec(128, 128, KvType::f16, KvType::turbo3, 901);
  turbo.shape.n_kv = 1000;
  for (int64_t splits : {1, 5}) expect_matches_reference(turbo, RunConfig{splits, 0, std::nullopt});
}

TEST(CudaDecode, SequencesOfNoKeyAndOneKeyBesideLongOnesUnderManySplits) {
  KVFLASH_REQUIRE_GPU();
  // 2048 keys = 32 tiles of 64, so 32 forced splits are one tile each: the empty and the one-key sequence leave
  // nearly every split without a key, and the partials of those must weigh nothing in the combine (sinks on: the
  // empty sequence still outputs zeros). The narrow kernel over four types, paged and contiguous; the wide one at
  // d 256. Written after a branch's run (session 5) failed this shape for turbo3, paged, with sinks at 32 splits.
  struct Case {
    KvType kt, vt;
    int64_t d;
    KvLayout layout;
    bool sinks;
  };
  const Case cases[] = {{KvType::f16, KvType::f16, 128, KvLayout::contiguous, true},
                        {KvType::q4_0, KvType::q4_0, 128, KvLayout::paged, false},
                        {KvType::q8_0, KvType::q8_0, 64, KvLayout::contiguous, true},
                        {KvType::turbo3, KvType::turbo3, 128, KvLayout::paged, true},
                        {KvType::turbo3, KvType::turbo3, 128, KvLayout::contiguous, true},
                        {KvType::f16, KvType::f16, 256, KvLayout::paged, true}};
  uint64_t seed = 1200;
  for (const Case& c : cases) {
    ProblemSpec spec = decode_spec(c.d, c.d, c.kt, c.vt, ++seed);
    spec.shape.n_seq = 5;
    spec.shape.n_kv = 2048;
    spec.kv_lens = {0, 1, 2048, 63, 1000};
    spec.layout = c.layout;
    spec.sinks = c.sinks;
    for (int64_t splits : {1, 2, 5, 32}) expect_matches_reference(spec, RunConfig{splits, 0, std::nullopt});
  }
}

TEST(CudaDecode, SixteenQueryVectorsPerCtaOnOnePassOverTheKeys) {
  KVFLASH_REQUIRE_GPU();
  // 2-4 query rows x GQA 4 or 8 (8-32 query vectors per KV head): the instances with 16-vector CTAs take every
  // count above 8 (the second n8 tile partly or wholly valid, a last chunk of fewer), in every layout, with
  // per-sequence lengths, causal steps and forced splits; outputs poisoned by the harness.
  struct Instance {
    int64_t d;
    KvType k, v;
  };
  const Instance instances[] = {{64, KvType::f16, KvType::f16},       {128, KvType::q8_0, KvType::q8_0},
                                {128, KvType::q4_0, KvType::q4_0},    {64, KvType::q4_0, KvType::q4_0},
                                {128, KvType::turbo3, KvType::turbo3}, {64, KvType::turbo4, KvType::turbo4}};
  uint64_t seed = 1400;
  int layout = 0;
  for (const Instance& in : instances) {
    for (int64_t n_q : {2, 3, 4}) {
      for (int64_t group : {4, 8}) {
        ProblemSpec spec = decode_spec(in.d, in.d, in.k, in.v, ++seed);
        spec.shape.n_seq = 3;
        spec.shape.n_head_kv = 2;
        spec.shape.n_head_q = 2 * group;
        spec.shape.n_q = n_q;
        spec.layout = static_cast<KvLayout>(layout++ % 3);
        spec.varlen = seed % 2 == 0;
        spec.causal = seed % 3 != 0;
        const Comparison c = expect_matches_reference(spec, RunConfig{seed % 4 == 0 ? 5 : 0, 0});
        EXPECT_TRUE(c.decode_kernel) << spec_name(spec) << " routed to " << c.route;
        EXPECT_EQ(c.qvecs_per_cta, group * n_q > 8 ? 16 : 8) << spec_name(spec);
      }
    }
  }
}

TEST(CudaDecode, HeadDim512WithGqa2AndMlaViews) {
  KVFLASH_REQUIRE_GPU();
  // Seed 001: head dim 512 with GQA ratio 2 aborts in the anchor's tile-kernel dispatch.
  uint64_t seed = 1000;
  for (KvType t : {KvType::f16, KvType::q8_0, KvType::q4_0, KvType::turbo3, KvType::turbo4}) {
    ProblemSpec spec = decode_spec(512, 512, t, t, ++seed);
    spec.shape.n_head_q = 8;
    spec.shape.n_head_kv = 4;
    spec.shape.n_q = 3;
    const Comparison c = expect_matches_reference(spec);
    EXPECT_TRUE(c.decode_kernel) << spec_name(spec);
  }
  // MLA: 576/512 with V a view of K (one KV head, many query heads), and with separate V.
  for (KvType t : {KvType::f16, KvType::q8_0, KvType::q4_0}) {
    for (bool view : {true, false}) {
      ProblemSpec spec = decode_spec(576, 512, t, t, ++seed);
      spec.shape.n_head_q = 16;
      spec.shape.n_head_kv = 1;
      spec.v_is_view_of_k = view;
      const Comparison c = expect_matches_reference(spec);
      EXPECT_TRUE(c.decode_kernel) << spec_name(spec);
    }
  }
}

TEST(CudaDecode, CausalMultiRowStepsMaskOnlyTheLastKeysOfEachSequence) {
  KVFLASH_REQUIRE_GPU();
  // Causal alone masks per score only the keys some row of the step cannot see (the last n_q - 1 of a sequence);
  // every other tile takes the plain path. Per-sequence lengths drawn in [1, 300] put that boundary at every offset
  // of a 16-key warp tile and a 64-key CTA tile, on a split's first or last tile, and past the start of the cache
  // (rows that see no key when kv_len < n_q). Head dim 256 covers the wide kernel.
  uint64_t seed = 1200;
  for (const auto& [d, t] : {std::pair{128, KvType::f16}, std::pair{128, KvType::q4_0}, std::pair{64, KvType::turbo3},
                             std::pair{256, KvType::q8_0}}) {
    for (int64_t n_q : {2, 4, 9, 16}) {
      for (int64_t splits : {int64_t{0}, int64_t{3}}) {
        ProblemSpec spec = decode_spec(d, d, t, t, ++seed);
        spec.shape.n_kv = 300;
        spec.shape.n_seq = 12;
        spec.shape.n_q = n_q;
        spec.varlen = true;
        spec.causal = true;
        const Comparison c = expect_matches_reference(spec, RunConfig{splits, 0, std::nullopt});
        EXPECT_TRUE(c.decode_kernel) << spec_name(spec) << " routed to " << c.route;
      }
    }
  }
}

TEST(CudaDecode, EmptyCachesAndRowsThatSeeNoKey) {
  KVFLASH_REQUIRE_GPU();
  ProblemSpec empty = decode_spec(128, 128, KvType::f16, KvType::f16, 1100);
  empty.shape.n_kv = 0;
  empty.sinks = true;
  expect_matches_reference(empty);  // every row outputs zeros
  // Causal with n_q larger than some kv_len: those rows see no key.
  ProblemSpec hidden = decode_spec(128, 128, KvType::q4_0, KvType::q4_0, 1101);
  hidden.shape.n_kv = 12;
  hidden.shape.n_q = 10;
  hidden.shape.n_seq = 6;
  hidden.varlen = true;
  hidden.causal = true;
  hidden.sinks = true;
  expect_matches_reference(hidden);
}

}  // namespace
}  // namespace kvflash::testing::gpu
