// The cpu backend against the reference for every K x V type pair (GGML blocks, plain floats, TurboQuant with padded
// head dims), with one and several splits of the key range.
#include <gtest/gtest.h>

#include "backend/cpu/cpu_check.h"

namespace kvflash::cpu_test {
namespace {

// Head dims per side: block types need multiples of 32; turbo rows get padded from 96/160 to 128/256.
int64_t dim_for(KvType t, int64_t plain, int64_t turbo) { return kv_traits(t).rotated ? turbo : plain; }

TEST(CpuTypes, EveryKvTypePairMatchesTheReference) {
  uint64_t seed = 100;
  for (const KvTraits& k : all_kv_types()) {
    for (const KvTraits& v : all_kv_types()) {
      ProblemSpec spec;
      spec.shape = {/*n_seq=*/2,
                    /*n_q=*/3,
                    /*n_kv=*/67,
                    /*n_head_q=*/6,
                    /*n_head_kv=*/2,
                    dim_for(k.type, 64, 96),
                    dim_for(v.type, 96, 160)};
      spec.ktype = k.type;
      spec.vtype = v.type;
      spec.causal = true;
      spec.seed = seed++;
      expect_matches_reference(spec, 1 + static_cast<int>(seed % 3));
    }
  }
}

TEST(CpuTypes, DecodeShapeOverEveryTypeWithSplits) {
  // One query row, 4 query heads per KV head, a few hundred keys: the shape of a decode step.
  uint64_t seed = 300;
  for (const KvTraits& t : all_kv_types()) {
    ProblemSpec spec;
    spec.shape = {1, 1, 300, 8, 2, 128, 128};
    spec.ktype = spec.vtype = t.type;
    spec.seed = seed++;
    expect_matches_reference(spec, 1);
    expect_matches_reference(spec, 5);
  }
}

TEST(CpuTypes, TurboPaddedHeadDimsOnBothSides) {
  uint64_t seed = 400;
  for (KvType t : {KvType::turbo2, KvType::turbo3, KvType::turbo4}) {
    for (int64_t d : {64, 80, 192, 200}) {
      ProblemSpec spec;
      spec.shape = {1, 2, 90, 4, 2, d, d};
      spec.ktype = spec.vtype = t;
      spec.seed = seed++;
      expect_matches_reference(spec, 2);
    }
  }
}

}  // namespace
}  // namespace kvflash::cpu_test
