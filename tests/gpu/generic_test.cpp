// The generic CUDA kernel against the reference oracle: every problem without a tensor-core instance (other
// types, mixed pairs, odd head dims, prefill-sized n_q) still runs on the GPU, so routing there is total.
#include <gtest/gtest.h>

#include "gpu/gpu_harness.h"

namespace kvflash::testing::gpu {
namespace {

ProblemSpec spec_of(AttentionShape shape, KvType kt, KvType vt, uint64_t seed) {
  ProblemSpec spec;
  spec.shape = shape;
  spec.ktype = kt;
  spec.vtype = vt;
  spec.seed = seed;
  return spec;
}

TEST(CudaGeneric, EveryTypeAsKAndAsV) {
  KVFLASH_REQUIRE_GPU();
  uint64_t seed = 2000;
  for (const KvTraits& k : all_kv_types()) {
    for (const KvTraits& v : all_kv_types()) {
      // Every pair once, at a head dim with no instance for most pairs (96 for plain and GGML types is not a
      // multiple of 64; turbo pads it to 128), so the generic kernel reads every format as K and as V.
      const int64_t d = 96;
      expect_matches_reference(spec_of({2, 2, 150, 4, 2, d, d}, k.type, v.type, ++seed));
    }
  }
}

TEST(CudaGeneric, OddHeadDimsAndDifferentKAndVDims) {
  KVFLASH_REQUIRE_GPU();
  const std::pair<int64_t, int64_t> dims[] = {{1, 1}, {40, 40}, {80, 80}, {112, 112}, {192, 128}, {96, 64},
                                              {1024, 1024}, {320, 256}};
  uint64_t seed = 2100;
  for (const auto& [dk, dv] : dims) {
    for (KvType t : {KvType::f32, KvType::f16, KvType::bf16, KvType::turbo2}) {
      expect_matches_reference(spec_of({1, 2, 90, 4, 1, dk, dv}, t, t, ++seed));
    }
  }
}

TEST(CudaGeneric, PrefillRowsWithEveryOption) {
  KVFLASH_REQUIRE_GPU();
  uint64_t seed = 2200;
  for (KvType t : {KvType::f16, KvType::q8_0, KvType::turbo4}) {
    ProblemSpec spec = spec_of({2, 40, 300, 8, 2, 128, 128}, t, t, ++seed);
    spec.causal = true;
    const Comparison plain = expect_matches_reference(spec);
    EXPECT_EQ(plain.route.find("decode_split_kv"), std::string::npos) << "n_q = 40 is a prefill: " << plain.route;
    spec.mask = MaskKind::f16;
    spec.window = 64;
    spec.alibi_max_bias = 8;
    spec.softcap = 25;
    spec.sinks = true;
    spec.varlen = true;
    spec.layout = KvLayout::paged;
    spec.seed = ++seed;
    expect_matches_reference(spec);
  }
}

TEST(CudaGeneric, SeventeenRowsLeaveTheDecodeKernelForTheGenericOne) {
  KVFLASH_REQUIRE_GPU();
  // q4_1 has no tensor-core prefill row (q4_0 would take cuda.prefill.q4_0, which the router prefers).
  ProblemSpec spec = spec_of({1, 17, 500, 4, 4, 128, 128}, KvType::q4_1, KvType::q4_1, 2300);
  spec.causal = true;
  const Comparison c = expect_matches_reference(spec);
  EXPECT_NE(c.route.find("cuda.generic"), std::string::npos) << c.route;
}

TEST(CudaGeneric, ForcedSplitsAndStridedLayouts) {
  KVFLASH_REQUIRE_GPU();
  ProblemSpec spec = spec_of({3, 2, 700, 6, 3, 96, 96}, KvType::q5_1, KvType::turbo3, 2400);
  spec.layout = KvLayout::strided_padded;
  spec.varlen = true;
  spec.sinks = true;
  for (int64_t splits : {1, 4, 44}) expect_matches_reference(spec, RunConfig{splits, 0, std::nullopt});
}

}  // namespace
}  // namespace kvflash::testing::gpu
