// A reduced route sweep run on the GPU: head dims x type pairs x query rows x GQA groups x options, every case
// routed on the CUDA backend and checked against the oracle. Small key counts keep the oracle fast; the options
// are drawn per case from a fixed seed so the sweep touches every option in many combinations.
#include <gtest/gtest.h>

#include <cstdio>
#include <random>

#include "gpu/gpu_harness.h"

namespace kvflash::testing::gpu {
namespace {

TEST(CudaRouteSweep, EveryCaseRoutesAndMatchesTheReference) {
  KVFLASH_REQUIRE_GPU();
  const std::pair<int64_t, int64_t> dims[] = {{64, 64}, {128, 128}, {256, 256}, {512, 512}, {576, 512}, {96, 96},
                                              {192, 128}};
  const std::pair<KvType, KvType> types[] = {
      {KvType::f16, KvType::f16},       {KvType::q8_0, KvType::q8_0},     {KvType::q4_0, KvType::q4_0},
      {KvType::turbo3, KvType::turbo3}, {KvType::turbo4, KvType::turbo4}, {KvType::f16, KvType::turbo3},
      {KvType::q8_0, KvType::q4_0},     {KvType::bf16, KvType::bf16}};
  const int64_t rows[] = {1, 5, 20};
  const int64_t groups[] = {1, 2, 8};
  std::mt19937_64 rng(20261122);
  auto coin = [&](int one_in) { return rng() % one_in == 0; };
  int cases = 0, decode_cases = 0, sixteen_cases = 0;
  uint64_t seed = 5000;
  for (const auto& [dk, dv] : dims) {
    for (const auto& [kt, vt] : types) {
      for (int64_t n_q : rows) {
        for (int64_t group : groups) {
          ProblemSpec spec;
          spec.shape = AttentionShape{1 + static_cast<int64_t>(rng() % 3), n_q, 64 + static_cast<int64_t>(rng() % 300),
                                      2 * group, 2, dk, dv};
          spec.ktype = kt;
          spec.vtype = vt;
          spec.seed = ++seed;
          spec.v_is_view_of_k = dk == 576 && kt == vt && coin(2);
          spec.mask = coin(3) ? MaskKind::none : static_cast<MaskKind>(rng() % 4);
          spec.layout = static_cast<KvLayout>(rng() % 3);
          spec.causal = coin(2);
          spec.window = coin(4) ? 40 : 0;
          spec.alibi_max_bias = coin(4) ? 8.0 : 0.0;
          spec.softcap = coin(4) ? 30.0 : 0.0;
          spec.sinks = coin(3);
          spec.varlen = coin(2);
          const Comparison c = expect_matches_reference(spec);
          ++cases;
          decode_cases += c.decode_kernel ? 1 : 0;
          sixteen_cases += c.decode_kernel && c.qvecs_per_cta == 16 ? 1 : 0;
        }
      }
    }
  }
  std::printf("  route sweep: %d cases, %d on the decode kernel (%d with 16 query vectors per CTA), %d on the generic "
              "kernel\n",
              cases, decode_cases, sixteen_cases, cases - decode_cases);
  EXPECT_GT(decode_cases, 0);
  EXPECT_GT(sixteen_cases, 0) << "n_q 5 x GQA 2 or 8 reaches the 16-vector instances";
}

}  // namespace
}  // namespace kvflash::testing::gpu
