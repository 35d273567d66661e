// Hand-derived TurboQuant blocks (TURBOQUANT.md). Inputs whose rotation is known in closed form:
//   x = e_k: norm = 1, u = e_k, and the rotation gives u_i = s1[k] * H(i, k) * s2[i] / sqrt(128) with
//   H(i, k) = (-1)^popcount(i & k): every coordinate is +-0.0883883.
//   x = e_0 + e_1: norm = sqrt(2), u = (1, 1, 0, ...)/sqrt(2); s1 = (-, +) makes it (-a, a), the first butterfly
//   (0, -2a), the rest spread it: even coordinates are exactly 0, odd ones -2a * s2[i] / sqrt(128) = -+0.125.
// Indices follow from the thresholds (strict <), the stored norm is fp16(norm / rn) with rn = sqrt(sum c[idx]^2).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "format/blocks.h"
#include "kvflash/quantize.h"
#include "turbo_spec.h"

namespace kvflash {
namespace {

using Bytes = std::vector<uint8_t>;
using testing::hadamard;
using testing::kSpecS1;
using testing::kSpecS2;
using testing::spec_sign;

// Packs indices by the layouts of TURBOQUANT.md's table.
Bytes pack(KvType type, uint16_t norm, const std::vector<int>& idx) {
  Bytes b(kv_traits(type).block_bytes, 0);
  b[0] = static_cast<uint8_t>(norm & 0xff);
  b[1] = static_cast<uint8_t>(norm >> 8);
  for (int j = 0; j < 128; ++j) {
    if (type == KvType::turbo4) {
      b[4 + j / 2] |= static_cast<uint8_t>(idx[j] << (j % 2 == 0 ? 0 : 4));  // after norm and rnorm (0)
    } else {
      b[2 + j / 4] |= static_cast<uint8_t>((idx[j] & 3) << (2 * (j % 4)));
      if (type == KvType::turbo3) b[34 + j / 8] |= static_cast<uint8_t>(((idx[j] >> 2) & 1) << (j % 8));
    }
  }
  return b;
}

Bytes quantize_group(KvType type, const std::vector<float>& x) {
  Bytes out(kv_traits(type).block_bytes, 0xAB);
  EXPECT_TRUE(quantize_row(type, x.data(), 128, out.data()).ok());
  return out;
}

struct UnitVectorCase {
  KvType type;
  int plus_index;   // index of +0.0883883
  int minus_index;  // index of -0.0883883
  uint16_t norm;    // fp16(1 / rn), rn = sqrt(128) * c[plus_index]
};

// turbo2: thresholds (-0.086728, 0, 0.086728): +0.0884 -> 3, -0.0884 -> 0; |c| = 0.133462, rn = 1.50995,
//   1/rn = 0.662273 -> fp16 0x394c (0.66211; the next half up, 0.66260, is farther).
// turbo3: +0.0884 lies in [0.043589, 0.091775) -> 5, -0.0884 -> 2; |c| = 0.065717, rn = 0.743503, 1/rn = 1.344985
//   -> 0x3d61 (1.34473).
// turbo4: +0.0884 lies in [0.079142, 0.103361) -> 13, -0.0884 -> 2; |c| = 0.089527, rn = 1.012883,
//   1/rn = 0.987281 -> 0x3be6 (0.98730).
const UnitVectorCase kUnitCases[] = {
    {KvType::turbo2, 3, 0, 0x394c},
    {KvType::turbo3, 5, 2, 0x3d61},
    {KvType::turbo4, 13, 2, 0x3be6},
};

TEST(TurboGolden, UnitVectors) {
  for (const UnitVectorCase& c : kUnitCases) {
    for (int k : {0, 1, 5, 77, 127}) {
      std::vector<float> x(128, 0.0f);
      x[k] = 1.0f;
      std::vector<int> idx(128);
      for (int i = 0; i < 128; ++i) {
        const int sign = spec_sign(kSpecS1, k) * hadamard(i, k) * spec_sign(kSpecS2, i);
        idx[i] = sign > 0 ? c.plus_index : c.minus_index;
      }
      const Bytes got = quantize_group(c.type, x);
      EXPECT_EQ(got, pack(c.type, c.norm, idx)) << kv_traits(c.type).name << " e_" << k;

      // Rotated domain: c[idx] * norm exactly; original domain: close to e_k (the rotation is orthogonal and
      // every coordinate's code is the nearest centroid).
      std::vector<float> rotated(128), original(128);
      ASSERT_TRUE(dequantize_row(c.type, got.data(), 128, rotated.data(), true).ok());
      ASSERT_TRUE(dequantize_row(c.type, got.data(), 128, original.data()).ok());
      const float* centroids = c.type == KvType::turbo2   ? format::kTurbo2Centroids
                               : c.type == KvType::turbo3 ? format::kTurbo3Centroids
                                                          : format::kTurbo4Centroids;
      double err = 0;
      for (int i = 0; i < 128; ++i) {
        EXPECT_EQ(rotated[i], centroids[idx[i]] * fp16_to_fp32(c.norm)) << i;
        err += std::pow(original[i] - (i == k ? 1.0 : 0.0), 2);
      }
      EXPECT_LT(err, 1e-5) << kv_traits(c.type).name << " e_" << k;
    }
  }
}

TEST(TurboGolden, CoordinatesExactlyOnTheZeroThresholdTakeTheUpperIndex) {
  // x = e_0 + e_1: even coordinates are exactly 0 (the threshold 0: `0 < 0` is false, so the index above it),
  // odd ones -0.125 * s2[i]. rn = sqrt(64 c_zero^2 + 64 c_odd^2) in float, stored norm fp16(sqrt(2) / rn):
  // turbo2: 0 -> 2, -0.125 -> 0, +0.125 -> 3; rn = 8 sqrt(0.039994^2 + 0.133462^2) = 1.114605, 1.268802 -> 0x3d13.
  // turbo3: 0 -> 4, -0.125 -> 1, +0.125 -> 6; rn = 8 sqrt(0.021460^2 + 0.117832^2) = 0.958161, 1.475966 -> 0x3de7.
  // turbo4: 0 -> 8, -0.125 -> 1, +0.125 -> 14; rn = 8 sqrt(0.006938^2 + 0.117195^2) = 0.939202, 1.505760 -> 0x3e06.
  struct Case {
    KvType type;
    int zero_index, minus_index, plus_index;
    uint16_t norm;
  };
  const Case cases[] = {{KvType::turbo2, 2, 0, 3, 0x3d13},
                        {KvType::turbo3, 4, 1, 6, 0x3de7},
                        {KvType::turbo4, 8, 1, 14, 0x3e06}};
  std::vector<float> x(128, 0.0f);
  x[0] = x[1] = 1.0f;
  for (const Case& c : cases) {
    std::vector<int> idx(128);
    for (int i = 0; i < 128; ++i) {
      if (i % 2 == 0) idx[i] = c.zero_index;
      else idx[i] = spec_sign(kSpecS2, i) > 0 ? c.minus_index : c.plus_index;  // value is -0.125 * s2[i]
    }
    EXPECT_EQ(quantize_group(c.type, x), pack(c.type, c.norm, idx)) << kv_traits(c.type).name;
  }
}

TEST(TurboGolden, ZeroGroupStoresNormZeroAndDequantizesToZeros) {
  // norm = 0: u = 0, the rotated zeros take the index just above the threshold 0 (2, 4, 8), rn > 0 and the stored
  // norm is 0 / rn = 0. Every value dequantizes to c * 0 = 0, in both domains.
  struct Case {
    KvType type;
    int zero_index;
  };
  for (const Case& c : {Case{KvType::turbo2, 2}, Case{KvType::turbo3, 4}, Case{KvType::turbo4, 8}}) {
    const std::vector<float> x(256, 0.0f);
    Bytes got(2 * kv_traits(c.type).block_bytes, 0xAB);
    ASSERT_TRUE(quantize_row(c.type, x.data(), 256, got.data()).ok());
    Bytes want = pack(c.type, 0x0000, std::vector<int>(128, c.zero_index));
    want.insert(want.end(), want.begin(), want.end());
    EXPECT_EQ(got, want) << kv_traits(c.type).name;
    for (bool rotated : {false, true}) {
      std::vector<float> y(256, 1.0f);
      ASSERT_TRUE(dequantize_row(c.type, got.data(), 256, y.data(), rotated).ok());
      for (float v : y) EXPECT_EQ(v, 0.0f) << kv_traits(c.type).name;
    }
  }
}

TEST(TurboGolden, ScalingTheInputScalesOnlyTheNorm) {
  // Multiplying a group by a power of two changes nothing but the norm (u is the same to the last bit): the codes
  // are identical and the stored norm is the scaled one (exact while it stays a normal half).
  std::vector<float> x(128), x8(128);
  for (int i = 0; i < 128; ++i) {
    x[i] = std::sin(0.37f * static_cast<float>(i)) + (i == 5 ? 4.0f : 0.0f);
    x8[i] = 8.0f * x[i];
  }
  for (KvType t : {KvType::turbo2, KvType::turbo3, KvType::turbo4}) {
    const Bytes a = quantize_group(t, x), b = quantize_group(t, x8);
    EXPECT_EQ(Bytes(a.begin() + 2, a.end()), Bytes(b.begin() + 2, b.end())) << kv_traits(t).name;
    const uint16_t na = static_cast<uint16_t>(a[0] | a[1] << 8), nb = static_cast<uint16_t>(b[0] | b[1] << 8);
    EXPECT_EQ(fp16_to_fp32(nb), 8.0f * fp16_to_fp32(na)) << kv_traits(t).name;
  }
}

}  // namespace
}  // namespace kvflash
