// TurboQuant formats: the rotation, a hand-derived block, and the quality facts of TURBOQUANT.md.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "format/blocks.h"
#include "format/turbo.h"
#include "kvflash/quantize.h"

namespace kvflash {
namespace {

using format::kTurboGroup;

// The sign vectors exactly as TURBOQUANT.md lists them, index 0..127.
const char* kSpecS1 =
    "-++--+-+--+++++++-+-+--+++-++---"
    "-++-++-+-++--+-++++-----+-++++-+"
    "--+---+---+---+++--+++--++-++-+-"
    "-++-+-+-++++-+-++-++-----++-++-+";
const char* kSpecS2 =
    "++++-++-+---+---++--+-+-+--+-+++"
    "++---+------+++-+-+++--+------++"
    "+-+----+-+-+--++-+-++-+----+--+-"
    "+-+++--+-+-++--+-+-++-+-+-----+-";

TEST(TurboRotation, SignTablesAreTheSpecs) {
  ASSERT_EQ(std::strlen(kSpecS1), 128u);
  ASSERT_EQ(std::strlen(kSpecS2), 128u);
  for (int i = 0; i < kTurboGroup; ++i) {
    EXPECT_EQ(format::turbo_sign_negative(format::kTurboSigns1, i), kSpecS1[i] == '-') << "s1[" << i << "]";
    EXPECT_EQ(format::turbo_sign_negative(format::kTurboSigns2, i), kSpecS2[i] == '-') << "s2[" << i << "]";
  }
}

TEST(TurboRotation, InverseUndoesForwardAndNormsArePreserved) {
  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  for (int trial = 0; trial < 50; ++trial) {
    float x[kTurboGroup], y[kTurboGroup];
    double n0 = 0, n1 = 0;
    for (int i = 0; i < kTurboGroup; ++i) {
      x[i] = y[i] = normal(rng);
      n0 += static_cast<double>(x[i]) * x[i];
    }
    format::turbo_rotate_forward(y);
    for (float v : y) n1 += static_cast<double>(v) * v;
    EXPECT_NEAR(n1 / n0, 1.0, 1e-5);
    format::turbo_rotate_inverse(y);
    for (int i = 0; i < kTurboGroup; ++i) EXPECT_NEAR(y[i], x[i], 1e-5f * (1.0f + std::fabs(x[i])));
  }
}

TEST(Turbo3, HandDerivedBlockForAUnitVector) {
  // x = e_0: norm = 1, u = e_0. Rotation: s1[0] = '-' gives -e_0; the butterflies spread it to -1 everywhere;
  // the last step gives u_i = -0.0883883 * s2[i]. With turbo3's thresholds -0.0884 falls in [-0.0918, -0.0436):
  // index 2; +0.0884 in [0.0436, 0.0918): index 5. Both centroids have magnitude 0.065717, so
  // rn = sqrt(128 * 0.065717^2) and the stored norm is fp16(1 / rn).
  std::vector<float> x(kTurboGroup, 0.0f);
  x[0] = 1.0f;
  format::BlockTurbo3 b;
  std::memset(&b, 0xAB, sizeof b);
  ASSERT_TRUE(quantize_row(KvType::turbo3, x.data(), kTurboGroup, &b).ok());
  float rsq = 0.0f;
  for (int i = 0; i < kTurboGroup; ++i) rsq += 0.065717f * 0.065717f;
  EXPECT_EQ(b.norm, fp32_to_fp16(1.0f / std::sqrt(rsq)));
  for (int i = 0; i < kTurboGroup; ++i) {
    const int want = kSpecS2[i] == '+' ? 2 : 5;
    EXPECT_EQ(format::turbo_index(b, i), want) << i;
  }
  // Rotated-domain values are c[idx] * norm; inverse-rotating them is the original-domain dequantization.
  std::vector<float> rotated(kTurboGroup), original(kTurboGroup);
  ASSERT_TRUE(dequantize_row(KvType::turbo3, &b, kTurboGroup, rotated.data(), true).ok());
  ASSERT_TRUE(dequantize_row(KvType::turbo3, &b, kTurboGroup, original.data()).ok());
  const float norm = fp16_to_fp32(b.norm);
  for (int i = 0; i < kTurboGroup; ++i) {
    EXPECT_EQ(rotated[i], format::kTurbo3Centroids[format::turbo_index(b, i)] * norm);
  }
  format::turbo_rotate_inverse(rotated.data());
  EXPECT_EQ(rotated, original);
  EXPECT_NEAR(original[0], 1.0f, 1e-3f);  // every code is the nearest centroid: e_0 comes back almost exactly
  for (int i = 1; i < kTurboGroup; ++i) EXPECT_NEAR(original[i], 0.0f, 1e-3f);
}

TEST(Turbo4, LayoutNibblesAndZeroRnorm) {
  std::vector<float> x(kTurboGroup);
  for (int i = 0; i < kTurboGroup; ++i) x[i] = std::sin(0.37f * i) + (i == 5 ? 4.0f : 0.0f);
  format::BlockTurbo4 b;
  std::memset(&b, 0xAB, sizeof b);
  ASSERT_TRUE(quantize_row(KvType::turbo4, x.data(), kTurboGroup, &b).ok());
  EXPECT_EQ(b.rnorm, 0);
  // Recompute the indices from the rotated, normalized input: they must be where the layout says.
  float nsq = 0.0f;
  for (float v : x) nsq += v * v;
  const float norm = std::sqrt(nsq);
  float u[kTurboGroup];
  for (int i = 0; i < kTurboGroup; ++i) u[i] = x[i] * (1.0f / norm);
  format::turbo_rotate_forward(u);
  for (int i = 0; i < kTurboGroup; ++i) {
    int idx = 15;
    for (int t = 0; t < 15; ++t) {
      if (u[i] < format::kTurbo4Thresholds[t]) {
        idx = t;
        break;
      }
    }
    const int stored = i % 2 == 0 ? (b.qs[i / 2] & 0x0f) : (b.qs[i / 2] >> 4);
    EXPECT_EQ(stored, idx) << i;
  }
}

TEST(Turbo, ZeroGroupsAreExactZeros) {
  for (KvType t : {KvType::turbo2, KvType::turbo3, KvType::turbo4}) {
    std::vector<float> x(2 * kTurboGroup, 0.0f), y(2 * kTurboGroup, 1.0f);
    std::vector<uint8_t> row(row_bytes(t, x.size()), 0xAB);
    ASSERT_TRUE(quantize_row(t, x.data(), x.size(), row.data()).ok());
    ASSERT_TRUE(dequantize_row(t, row.data(), y.size(), y.data()).ok());
    for (float v : y) EXPECT_EQ(v, 0.0f) << kv_traits(t).name;
  }
}

// Relative MSE on iid Gaussian rows: TURBOQUANT.md measured turbo2 0.119, turbo3 0.034, turbo4 0.018,
// q4_0 0.0072, q8_0 0.000028 with an independent implementation.
TEST(Turbo, RelativeMseOnGaussianRowsMatchesThePublishedFacts) {
  struct Expect {
    KvType type;
    double rel_mse;
  };
  const Expect expects[] = {{KvType::turbo2, 0.119},  {KvType::turbo3, 0.034}, {KvType::turbo4, 0.018},
                            {KvType::q4_0, 0.0072}, {KvType::q8_0, 0.000028}};
  std::mt19937 rng(11);
  std::normal_distribution<float> normal;
  const int n = 128 * 512;
  std::vector<float> x(n), y(n);
  for (float& v : x) v = normal(rng);
  for (const Expect& e : expects) {
    std::vector<uint8_t> q(row_bytes(e.type, n));
    ASSERT_TRUE(quantize_row(e.type, x.data(), n, q.data()).ok());
    ASSERT_TRUE(dequantize_row(e.type, q.data(), n, y.data()).ok());
    double err = 0, ref = 0;
    for (int i = 0; i < n; ++i) {
      err += (static_cast<double>(x[i]) - y[i]) * (static_cast<double>(x[i]) - y[i]);
      ref += static_cast<double>(x[i]) * x[i];
    }
    EXPECT_NEAR(err / ref, e.rel_mse, 0.08 * e.rel_mse) << kv_traits(e.type).name;
  }
}

TEST(Turbo, NonFiniteInputsPoisonOnlyTheirGroup) {
  // A NaN or Inf makes the group's norm NaN/Inf; the whole 128-value group dequantizes to NaN, the next group
  // is untouched. Nothing is undefined: thresholds compare with `<`, so a NaN takes the last index.
  for (KvType t : {KvType::turbo2, KvType::turbo3, KvType::turbo4}) {
    for (float bad : {std::nanf(""), INFINITY}) {
      std::vector<float> x(2 * kTurboGroup);
      for (int i = 0; i < 2 * kTurboGroup; ++i) x[i] = std::cos(0.1f * i);
      x[17] = bad;
      std::vector<uint8_t> q(row_bytes(t, x.size()));
      std::vector<float> y(x.size());
      ASSERT_TRUE(quantize_row(t, x.data(), x.size(), q.data()).ok());
      ASSERT_TRUE(dequantize_row(t, q.data(), y.size(), y.data()).ok());
      for (int i = 0; i < kTurboGroup; ++i) EXPECT_TRUE(std::isnan(y[i])) << kv_traits(t).name << " " << i;
      double err = 0, ref = 0;
      for (int i = kTurboGroup; i < 2 * kTurboGroup; ++i) {
        ASSERT_TRUE(std::isfinite(y[i])) << kv_traits(t).name << " " << i;
        err += (y[i] - x[i]) * (y[i] - x[i]);
        ref += x[i] * x[i];
      }
      EXPECT_LT(err / ref, 0.2) << kv_traits(t).name;  // turbo2, the coarsest, is ~0.12 on such rows
    }
  }
}

}  // namespace
}  // namespace kvflash
