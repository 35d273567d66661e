// The cpu backend against the reference over the shape space a model meets: odd head dims (80, 96, 112, 192/128,
// 576/512 with V a view of K), GQA ratios that are not powers of two, 1..9, 16 and 64 query rows, key counts that
// are not multiples of the tile (1, 255, 257), and strided, paged and variable-length views.
#include <gtest/gtest.h>

#include "backend/cpu/cpu_check.h"

namespace kvflash::cpu_test {
namespace {

TEST(CpuShapes, OddHeadDims) {
  struct Dims {
    int64_t d_k, d_v;
    bool v_view_of_k;
  };
  const Dims kDims[] = {{80, 80, false},   {96, 96, false},  {112, 112, false},
                        {192, 128, false}, {576, 512, true}, {40, 72, false}};
  uint64_t seed = 2000;
  for (const Dims& d : kDims) {
    for (KvType t : {KvType::f16, KvType::q8_0, KvType::q4_1, KvType::turbo3}) {
      if (kv_traits(t).block_elems == 32 && (d.d_k % 32 != 0 || d.d_v % 32 != 0)) continue;  // validate() rejects
      ProblemSpec spec;
      spec.shape = {1, 3, 70, 4, 2, d.d_k, d.d_v};
      spec.ktype = spec.vtype = t;
      spec.v_is_view_of_k = d.v_view_of_k;
      spec.causal = true;
      spec.seed = seed++;
      expect_matches_reference(spec, 1);
      expect_matches_reference(spec, 3);
    }
  }
}

TEST(CpuShapes, OddPlainFloatHeadDims) {
  uint64_t seed = 2100;
  for (int64_t d : {1, 3, 17, 33, 100}) {
    for (KvType t : {KvType::f32, KvType::f16, KvType::bf16}) {
      ProblemSpec spec;
      spec.shape = {1, 2, 50, 3, 1, d, d + 4};
      spec.ktype = spec.vtype = t;
      spec.seed = seed++;
      expect_matches_reference(spec, 2);
    }
  }
}

TEST(CpuShapes, GqaRatiosThatAreNotPowersOfTwo) {
  const std::pair<int64_t, int64_t> kHeads[] = {{3, 1}, {5, 1}, {6, 2}, {12, 4}, {14, 2}, {21, 3}, {28, 4}, {9, 9}};
  uint64_t seed = 2200;
  for (const auto& [hq, hkv] : kHeads) {
    ProblemSpec spec;
    spec.shape = {1, 2, 100, hq, hkv, 64, 64};
    spec.ktype = KvType::q4_0;
    spec.vtype = KvType::f16;
    spec.causal = true;
    spec.seed = seed++;
    expect_matches_reference(spec, 1);
    expect_matches_reference(spec, 4);
  }
}

TEST(CpuShapes, QueryRowsOfDecodeVerifyAndPrefillSteps) {
  uint64_t seed = 2300;
  for (int64_t n_q : {1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 64}) {
    ProblemSpec spec;
    spec.shape = {2, n_q, 130, 8, 2, 64, 64};
    spec.ktype = KvType::q8_0;
    spec.vtype = KvType::q4_0;
    spec.causal = true;
    spec.seed = seed++;
    expect_matches_reference(spec, n_q <= 16 ? 3 : 1);
  }
}

TEST(CpuShapes, ManyQueryRowsTileTheRows) {
  // 8 query heads x 40 rows = 320 rows per KV head: more than one task's row tile.
  ProblemSpec spec;
  spec.shape = {1, 40, 120, 8, 1, 64, 64};
  spec.causal = true;
  spec.ktype = KvType::turbo4;
  spec.vtype = KvType::q8_0;
  spec.seed = 2400;
  expect_matches_reference(spec, 1);
  expect_matches_reference(spec, 2);
}

TEST(CpuShapes, KeyCountsAroundTheTile) {
  uint64_t seed = 2500;
  for (int64_t n_kv : {1, 2, 15, 16, 17, 255, 256, 257}) {
    for (int splits : {1, 3, 40}) {
      ProblemSpec spec;
      spec.shape = {1, 1, n_kv, 4, 2, 64, 64};
      spec.ktype = KvType::q4_0;
      spec.vtype = KvType::q8_0;
      spec.seed = seed++;
      expect_matches_reference(spec, splits);
    }
  }
}

TEST(CpuShapes, StridedPagedAndVariableLengthViews) {
  uint64_t seed = 2600;
  for (KvLayout layout : {KvLayout::contiguous, KvLayout::strided_padded, KvLayout::paged}) {
    for (bool varlen : {false, true}) {
      for (KvType t : {KvType::f16, KvType::q5_0, KvType::turbo2}) {
        ProblemSpec spec;
        spec.shape = {3, 4, 150, 6, 2, 128, 128};
        spec.ktype = spec.vtype = t;
        spec.layout = layout;
        spec.varlen = varlen;
        spec.causal = true;
        spec.mask = MaskKind::f32;
        spec.seed = seed++;
        expect_matches_reference(spec, 1);
        expect_matches_reference(spec, 4);
      }
    }
  }
}

TEST(CpuShapes, SequencesOfNoKeyAndOneKeyBesideLongOnesUnderManySplits) {
  // A batch where one sequence is empty and one holds a single key: most of their splits see no key, and with
  // sinks the empty one must still output zeros. Split counts up to one split per 64-key tile.
  uint64_t seed = 2700;
  for (KvType t : {KvType::f16, KvType::q4_0, KvType::turbo3}) {
    ProblemSpec spec;
    spec.shape = {5, 1, 2048, 8, 2, 128, 128};
    spec.ktype = spec.vtype = t;
    spec.layout = KvLayout::paged;
    spec.kv_lens = {0, 1, 2048, 63, 1000};
    spec.sinks = true;
    spec.seed = seed++;
    for (int splits : {1, 2, 5, 32}) expect_matches_reference(spec, splits);
  }
}

TEST(CpuShapes, PagedMlaViewOfKeys) {
  ProblemSpec spec;
  spec.shape = {2, 2, 90, 16, 1, 576, 512};
  spec.ktype = spec.vtype = KvType::q8_0;
  spec.v_is_view_of_k = true;
  spec.layout = KvLayout::paged;
  spec.causal = true;
  spec.seed = 2700;
  expect_matches_reference(spec, 2);
}

}  // namespace
}  // namespace kvflash::cpu_test
