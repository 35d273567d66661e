// The turbo fragment loaders of the CUDA decode and prefill kernels, value by value: every fragment slot must hold
// exactly the f16 of its centroid (narrow decode, norm applied later) or the f16 product of that and the block's
// norm (wide decode and prefill), for rows at the padded pitch of a row-by-row copy and at the tight pitch of a
// span copy (turbo3 rows then start on any even address).
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "format/blocks.h"
#include "gpu/gpu_harness.h"
#include "kvflash/quantize.h"

#if defined(KVFLASH_HAVE_CUDA)
#include "backend/cuda/fragment_probe.h"
#include "backend/cuda/split_plan.h"
#endif

namespace kvflash::testing::gpu {
namespace {

#if defined(KVFLASH_HAVE_CUDA)

struct ProbeCase {
  KvType type;
  int dim;
};

/// kProbeRows rows of `dim` values, quantized: Gaussian with a few large channels, as keys look (fixed seed).
std::vector<uint8_t> random_rows(KvType type, int dim, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const int64_t bytes = row_bytes(type, dim);
  std::vector<uint8_t> rows(static_cast<size_t>(cuda::kProbeRows * bytes));
  std::vector<float> x(static_cast<size_t>(dim));
  for (int r = 0; r < cuda::kProbeRows; ++r) {
    for (int d = 0; d < dim; ++d) x[d] = normal(rng) * (d % 37 == 5 ? 12.0f : 1.0f);
    EXPECT_TRUE(quantize_row(type, x.data(), dim, rows.data() + r * bytes).ok());
  }
  return rows;
}

/// The index and the norm bits of value d of a stored row.
template <class Block>
std::pair<int, uint16_t> index_and_norm(const uint8_t* row, int d) {
  Block b;
  std::memcpy(&b, row + sizeof(Block) * (d / 128), sizeof(Block));
  return {format::turbo_index(b, d % 128), b.norm};
}

void expect_exact_fragments(KvType type, int dim, bool scaled, bool tight) {
  const std::vector<uint8_t> rows = random_rows(type, dim, 1000u + static_cast<uint32_t>(dim) + (scaled ? 7u : 0u));
  const int bytes = static_cast<int>(row_bytes(type, dim));
  const int pitch = tight ? bytes : cuda::smem_row_pitch(bytes);
  std::vector<uint16_t> k_bits(static_cast<size_t>(cuda::kProbeRows * dim));
  std::vector<uint16_t> v_bits(k_bits.size());
  ASSERT_TRUE(cuda::probe_turbo_fragments(type, scaled, rows.data(), bytes, pitch, dim, k_bits.data(), v_bits.data())
                  .ok());
  const float* centroids = type == KvType::turbo3 ? format::kTurbo3Centroids : format::kTurbo4Centroids;
  std::set<int> seen;
  int mismatches = 0;
  for (int r = 0; r < cuda::kProbeRows; ++r) {
    for (int d = 0; d < dim; ++d) {
      const uint8_t* row = rows.data() + r * bytes;
      const auto [index, norm] = type == KvType::turbo3 ? index_and_norm<format::BlockTurbo3>(row, d)
                                                        : index_and_norm<format::BlockTurbo4>(row, d);
      seen.insert(index);
      const uint16_t centroid = fp32_to_fp16(centroids[index]);
      // __hmul2: the exact product of two halves (22 significant bits, exact in float), rounded once to f16.
      const uint16_t want = scaled ? fp32_to_fp16(fp16_to_fp32(centroid) * fp16_to_fp32(norm)) : centroid;
      const uint16_t got_k = k_bits[static_cast<size_t>(r * dim + d)];
      const uint16_t got_v = v_bits[static_cast<size_t>(r * dim + d)];
      if ((got_k != want || got_v != want) && ++mismatches <= 5) {
        ADD_FAILURE() << kv_traits(type).name << " dim " << dim << (scaled ? " scaled" : " unscaled") << " pitch "
                      << pitch << ": key " << r << " element " << d << " index " << index << " want 0x" << std::hex
                      << want << " K 0x" << got_k << " V 0x" << got_v;
      }
    }
  }
  EXPECT_EQ(mismatches, 0);
  EXPECT_EQ(static_cast<int>(seen.size()), type == KvType::turbo3 ? 8 : 16) << "the data must exercise every index";
}

class TurboFragments : public ::testing::TestWithParam<ProbeCase> {};

TEST_P(TurboFragments, EverySlotIsTheExactF16CentroidAtEveryPitch) {
  KVFLASH_REQUIRE_GPU();
  for (const bool scaled : {false, true})
    for (const bool tight : {false, true}) expect_exact_fragments(GetParam().type, GetParam().dim, scaled, tight);
}

INSTANTIATE_TEST_SUITE_P(Types, TurboFragments,
                         ::testing::Values(ProbeCase{KvType::turbo3, 128}, ProbeCase{KvType::turbo3, 256},
                                           ProbeCase{KvType::turbo4, 128}, ProbeCase{KvType::turbo4, 256}),
                         [](const ::testing::TestParamInfo<ProbeCase>& info) {
                           return std::string(kv_traits(info.param.type).name) + "_d" +
                                  std::to_string(info.param.dim);
                         });

#else

TEST(TurboFragments, EverySlotIsTheExactF16CentroidAtEveryPitch) { GTEST_SKIP() << "skipped: no CUDA device"; }

#endif

}  // namespace
}  // namespace kvflash::testing::gpu
