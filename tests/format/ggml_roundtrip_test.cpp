// Round-trip error of the GGML block types on random data, against a bound derived from the rules.
//
// A block stores d' = fp16(d). A code q is the nearest step of the float scale d (q8_0: roundf; the others:
// truncation of x/d + offset + 0.5, i.e. round half up), so |x - q d| <= d/2, and the dequantized value q d' (+ m')
// is off from q d by |q| |d - d'| (+ |min - m'|). fp16 rounding: |d - d'| <= 2^-11 |d| <= 2^-10 |d'| for a normal
// half, <= 2^-25 for a subnormal one. So
//   |x - y| <= d'/2 (1 + 2^-10) + |q|max * max(2^-10 |d'|, 2^-24) [+ max(2^-10 |m'|, 2^-24)] + float rounding,
// with |q|max = 127 (q8_0), 8 (q4_0), 16 (q5_0), 15 (q4_1), 31 (q5_1). q4_0/q5_0 clamp the top code (15/31): a
// value on the side opposite the max with x/d > 7.5 (15.5) may be off by one whole step d instead of d/2.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "kvflash/quantize.h"

namespace kvflash {
namespace {

struct Rule {
  KvType type;
  float max_code;     // |q|max in the dequantization formula
  float clamp_ratio;  // x/d above which the top code is clamped (q4_0/q5_0); +inf when it never is
  bool has_min;       // q4_1/q5_1 store m
};

const Rule kRules[] = {
    {KvType::q8_0, 127.0f, std::numeric_limits<float>::infinity(), false},
    {KvType::q4_0, 8.0f, 7.5f, false},
    {KvType::q5_0, 16.0f, 15.5f, false},
    {KvType::q4_1, 15.0f, std::numeric_limits<float>::infinity(), true},
    {KvType::q5_1, 31.0f, std::numeric_limits<float>::infinity(), true},
};

float half_at(const std::vector<uint8_t>& b, int offset) {
  return fp16_to_fp32(static_cast<uint16_t>(b[offset] | b[offset + 1] << 8));
}

TEST(GgmlRoundTrip, ErrorIsWithinHalfAStepPlusTheFp16ScaleError) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  for (const Rule& rule : kRules) {
    int64_t values = 0;
    double worst_in_steps = 0;  // largest |x - y| / d' seen, to show the bound is approached, not vacuous
    for (int trial = 0; trial < 3000; ++trial) {
      // Scales from 2^-30 (d underflows fp16 to subnormal or 0) to 2^12; Gaussian, uniform and offset blocks.
      const float scale = std::exp2(static_cast<float>(trial % 43 - 30));
      std::vector<float> x(32);
      for (float& v : x) {
        v = (trial % 3 == 0 ? normal(rng) : uniform(rng)) * scale;
        if (trial % 3 == 2) v += 3.0f * scale;  // all positive: min far from 0
      }
      std::vector<uint8_t> block(kv_traits(rule.type).block_bytes);
      ASSERT_TRUE(quantize_row(rule.type, x.data(), 32, block.data()).ok());
      std::vector<float> y(32, std::numeric_limits<float>::quiet_NaN());
      ASSERT_TRUE(dequantize_row(rule.type, block.data(), 32, y.data()).ok());

      const float d = std::fabs(half_at(block, 0));
      const float m = rule.has_min ? std::fabs(half_at(block, 2)) : 0.0f;
      float amax = 0.0f;
      for (float v : x) amax = std::max(amax, std::fabs(v));
      const float scale_error = rule.max_code * std::max(d * 0x1p-10f, 0x1p-24f);
      const float min_error = rule.has_min ? std::max(m * 0x1p-10f, 0x1p-24f) : 0.0f;
      const float rounding = amax * 0x1p-20f;
      for (int j = 0; j < 32; ++j) {
        const bool clamped = d > 0 && std::fabs(x[j]) / d > rule.clamp_ratio * (1 - 0x1p-9f) &&
                             x[j] * half_at(block, 0) > 0;  // same sign as d: the side opposite the max
        const float step_error = (clamped ? 1.0f : 0.5f) * d * (1 + 0x1p-10f);
        const float bound = step_error + scale_error + min_error + rounding;
        const float err = std::fabs(x[j] - y[j]);
        ASSERT_LE(err, bound) << kv_traits(rule.type).name << " trial " << trial << " j " << j << " x " << x[j]
                              << " y " << y[j] << " d " << d;
        if (d > 0x1p-14f) worst_in_steps = std::max(worst_in_steps, static_cast<double>(err / d));
        ++values;
      }
    }
    // Random data lands near the middle between two steps often: the worst case is close to half a step.
    EXPECT_GT(worst_in_steps, 0.45) << kv_traits(rule.type).name;
    EXPECT_EQ(values, 3000 * 32);
  }
}

TEST(GgmlRoundTrip, CodesUseTheWholeRange) {
  // A ramp from -amax to +amax must produce the extreme codes: q8_0 -127 and 127; q4_0 0 and 15; q5_0 0 and 31.
  std::vector<float> x(32);
  for (int j = 0; j < 32; ++j) x[j] = -1.0f + 2.0f * static_cast<float>(j) / 31.0f;
  std::vector<uint8_t> b8(34), b4(18), b5(22);
  ASSERT_TRUE(quantize_row(KvType::q8_0, x.data(), 32, b8.data()).ok());
  ASSERT_TRUE(quantize_row(KvType::q4_0, x.data(), 32, b4.data()).ok());
  ASSERT_TRUE(quantize_row(KvType::q5_0, x.data(), 32, b5.data()).ok());
  EXPECT_EQ(static_cast<int8_t>(b8[2]), -127);
  EXPECT_EQ(static_cast<int8_t>(b8[33]), 127);
  // q4_0: max is x_0 = -1 (first of the equal magnitudes): code 0; x_31 = +1 -> 16.5 -> clamped 15.
  EXPECT_EQ(b4[2] & 0x0f, 0);
  EXPECT_EQ(b4[17] >> 4, 15);
  // q5_0: d = -1 / -16, id = 16: x_0 -> 0.5 -> 0; x_31 -> 32.5 -> clamped 31 (low nibble 15, fifth bit set).
  EXPECT_EQ(b5[6] & 0x0f, 0);
  EXPECT_EQ(b5[2] & 0x01, 0);
  EXPECT_EQ(b5[21] >> 4, 15);
  EXPECT_EQ(b5[5] & 0x80, 0x80);
}

}  // namespace
}  // namespace kvflash
