// Hand-derived blocks for the GGML types. Each input is chosen so that the scale is exact and every code can be
// worked out on paper from GGML's rules (quantize_row_*_ref): the derivation sits next to the expected bytes.
// Layouts (little-endian): q8_0 {f16 d; i8 qs[32]}, q4_0 {f16 d; u8 qs[16]}, q4_1 {f16 d; f16 m; u8 qs[16]},
// q5_0 {f16 d; u8 qh[4]; u8 qs[16]}, q5_1 {f16 d; f16 m; u8 qh[4]; u8 qs[16]}; 4-bit value j in the low nibble
// of qs[j], value j+16 in the high nibble of qs[j]; the 5th bit of value j at bit j of qh.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "kvflash/quantize.h"

namespace kvflash {
namespace {

using Bytes = std::vector<uint8_t>;

Bytes quantize_block(KvType type, const std::vector<float>& x) {
  Bytes out(kv_traits(type).block_bytes, 0xAB);  // poison: every byte must be written
  EXPECT_TRUE(quantize_row(type, x.data(), 32, out.data()).ok());
  return out;
}

std::vector<float> dequantize_block(KvType type, const Bytes& block) {
  std::vector<float> y(32, std::numeric_limits<float>::quiet_NaN());
  EXPECT_TRUE(dequantize_row(type, block.data(), 32, y.data()).ok());
  return y;
}

std::vector<float> ramp(float offset, float step) {
  std::vector<float> x(32);
  for (int j = 0; j < 32; ++j) x[j] = offset + step * static_cast<float>(j);
  return x;
}

TEST(Q8_0Golden, RampRoundsHalfAwayFromZero) {
  // x_j = j - 16. amax = 16, d = 16/127 = 0.125984..., as half 2^-3 * (1 + 8.06/1024) -> 0x3008.
  // id = 1/d = 7.9375 exactly (127/16), so code_j = roundf((j - 16) * 127 / 16). Two of them are exact ties:
  // j = 8 -> -63.5 -> -64 and j = 24 -> 63.5 -> 64 (C roundf: half away from zero, not to even).
  const Bytes want = {0x08, 0x30, 0x81, 0x89, 0x91, 0x99, 0xa1, 0xa9, 0xb1, 0xb9, 0xc0, 0xc8, 0xd0, 0xd8,
                      0xe0, 0xe8, 0xf0, 0xf8, 0x00, 0x08, 0x10, 0x18, 0x20, 0x28, 0x30, 0x38, 0x40, 0x47,
                      0x4f, 0x57, 0x5f, 0x67, 0x6f, 0x77};
  const Bytes got = quantize_block(KvType::q8_0, ramp(-16.0f, 1.0f));
  EXPECT_EQ(got, want);
  EXPECT_EQ(static_cast<int8_t>(got[2 + 8]), -64);
  EXPECT_EQ(static_cast<int8_t>(got[2 + 24]), 64);
  // Dequantization is code * d in float.
  const float d = fp16_to_fp32(0x3008);
  const std::vector<float> y = dequantize_block(KvType::q8_0, got);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(y[j], static_cast<float>(static_cast<int8_t>(want[2 + j])) * d) << j;
}

TEST(Q8_0Golden, ScaleOfOneGivesRoundfOfEachValue) {
  // amax = 127 -> d = 1, id = 1: code = roundf(x). 2.5 -> 3, -2.5 -> -3, 0.5 -> 1, 0.49 -> 0.
  std::vector<float> x(32, 0.0f);
  x[0] = 127.0f;
  x[1] = 2.5f;
  x[2] = -2.5f;
  x[3] = 0.5f;
  x[4] = 0.49f;
  x[5] = -126.5f;
  const Bytes got = quantize_block(KvType::q8_0, x);
  EXPECT_EQ(got[0], 0x00);
  EXPECT_EQ(got[1], 0x3c);
  EXPECT_EQ(static_cast<int8_t>(got[2]), 127);
  EXPECT_EQ(static_cast<int8_t>(got[3]), 3);
  EXPECT_EQ(static_cast<int8_t>(got[4]), -3);
  EXPECT_EQ(static_cast<int8_t>(got[5]), 1);
  EXPECT_EQ(static_cast<int8_t>(got[6]), 0);
  EXPECT_EQ(static_cast<int8_t>(got[7]), -127);
}

TEST(Q4_0Golden, NegativeLargestMagnitudeGivesAPositiveScale) {
  // x_j = (j - 16)/2: the largest magnitude is x_0 = -8, kept with its sign: d = -8 / -8 = 1 (0x3c00), id = 1.
  // code_j = MIN(15, (int8)(x_j + 8.5)) = trunc(j/2 + 0.5): 0 1 1 2 2 ... 8 8 9 ... 15 15, and j = 31 gives 16,
  // clamped to 15. qs[j] = code_j | code_{j+16} << 4: qs[0] = 0 | 8 << 4 = 0x80, qs[15] = 8 | 15 << 4 = 0xf8.
  const Bytes want = {0x00, 0x3c, 0x80, 0x91, 0x91, 0xa2, 0xa2, 0xb3, 0xb3,
                      0xc4, 0xc4, 0xd5, 0xd5, 0xe6, 0xe6, 0xf7, 0xf7, 0xf8};
  const Bytes got = quantize_block(KvType::q4_0, ramp(-8.0f, 0.5f));
  EXPECT_EQ(got, want);
  // Dequantization: (code - 8) * d. x_0 = -8 comes back exactly; x_31 = 7.5 was clamped to code 15 -> 7.
  const std::vector<float> y = dequantize_block(KvType::q4_0, got);
  EXPECT_EQ(y[0], -8.0f);
  EXPECT_EQ(y[1], -7.0f);  // x = -7.5: trunc(1.0) = 1 -> -7 (truncation, not rounding to even)
  EXPECT_EQ(y[17], 1.0f);  // x = 0.5: trunc(9.0) = 9 -> 1
  EXPECT_EQ(y[31], 7.0f);
}

TEST(Q4_0Golden, PositiveLargestMagnitudeGivesANegativeScale) {
  // x_j = (16 - j)/2: max = x_0 = +8, d = 8 / -8 = -1 (0xbc00), id = -1, x_j * id + 8.5 = (j - 16)/2 + 8.5: the
  // same codes as the negative-max ramp; dequantization (code - 8) * -1 = 8 - code.
  const Bytes want = {0x00, 0xbc, 0x80, 0x91, 0x91, 0xa2, 0xa2, 0xb3, 0xb3,
                      0xc4, 0xc4, 0xd5, 0xd5, 0xe6, 0xe6, 0xf7, 0xf7, 0xf8};
  const Bytes got = quantize_block(KvType::q4_0, ramp(8.0f, -0.5f));
  EXPECT_EQ(got, want);
  const std::vector<float> y = dequantize_block(KvType::q4_0, got);
  EXPECT_EQ(y[0], 8.0f);
  EXPECT_EQ(y[31], -7.0f);
}

TEST(Q4_0Golden, TheFirstOfEqualMagnitudesSetsTheSign) {
  // Zeros except x_5 and x_9 of magnitude 4. GGML replaces the max only when amax < |x|, so the first one wins:
  // +4 first: d = 4 / -8 = -0.5 (0xb800), id = -2: zeros -> trunc(8.5) = 8, +4 -> trunc(0.5) = 0,
  // -4 -> trunc(16.5) = 16 -> clamped 15. qs[5] = 0x80, qs[9] = 0x8f, the rest 0x88.
  // -4 first: d = +0.5 (0x3800), same codes.
  std::vector<float> x(32, 0.0f);
  x[5] = 4.0f;
  x[9] = -4.0f;
  Bytes want = {0x00, 0xb8, 0x88, 0x88, 0x88, 0x88, 0x88, 0x80, 0x88,
                0x88, 0x88, 0x8f, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88};
  EXPECT_EQ(quantize_block(KvType::q4_0, x), want);
  x[5] = -4.0f;
  x[9] = 4.0f;
  want[1] = 0x38;
  EXPECT_EQ(quantize_block(KvType::q4_0, x), want);
}

TEST(Q4_1Golden, MinAndScaleWithTiesRoundingUp) {
  // First half x_j = -1 + j/4 (j < 16): min = -1, max = 2.75; second half (k = j - 16) x = -1 + (k - 1/2)/4 for
  // k >= 1 and -0.9375 for k = 0, all inside [min, max]. d = 3.75 / 15 = 0.25 (0x3400), id = 4, m = -1 (0xbc00).
  // code = MIN(15, (int8)((x - min) * 4 + 0.5)): first half j + 0.5 -> j; second half k - 0.5 + 0.5 = k exactly
  // (the tie goes up), and 0.25 + 0.5 -> 0 for k = 0. Both halves are 0..15, so qs[j] = j * 0x11.
  std::vector<float> x = ramp(-1.0f, 0.25f);
  x[16] = -0.9375f;
  for (int k = 1; k < 16; ++k) x[16 + k] = -1.0f + (static_cast<float>(k) - 0.5f) / 4.0f;
  const Bytes want = {0x00, 0x34, 0x00, 0xbc, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55,
                      0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff};
  const Bytes got = quantize_block(KvType::q4_1, x);
  EXPECT_EQ(got, want);
  // Dequantization: code * d + m.
  const std::vector<float> y = dequantize_block(KvType::q4_1, got);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(y[j], static_cast<float>(j % 16) * 0.25f - 1.0f) << j;
}

TEST(Q5_0Golden, NegativeMaxRampUsesAllThirtyTwoCodes) {
  // x_j = j - 16: max = x_0 = -16, d = -16 / -16 = 1 (0x3c00), code_j = (int8)(j - 16 + 16.5) = j.
  // qs[j] = (j & 15) | ((j + 16) & 15) << 4 = j * 0x11; the 5th bit is set for j >= 16: qh = 0xffff0000.
  const Bytes want = {0x00, 0x3c, 0x00, 0x00, 0xff, 0xff, 0x00, 0x11, 0x22, 0x33, 0x44,
                      0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff};
  const Bytes got = quantize_block(KvType::q5_0, ramp(-16.0f, 1.0f));
  EXPECT_EQ(got, want);
  const std::vector<float> y = dequantize_block(KvType::q5_0, got);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(y[j], static_cast<float>(j - 16)) << j;  // (code - 16) * d
}

TEST(Q5_0Golden, PositiveMaxWithEveryValueOnATruncationBoundary) {
  // x_0 = 4 is the max: d = 4 / -16 = -0.25 (0xb400), id = -4. x_j = (16 - j)/4 + 1/8 for j >= 1, so
  // x_j * id + 16.5 = (j - 16.5) + 16.5 = j exactly: every value sits on the boundary and truncation keeps j
  // (x_0: 0.5 -> 0). Same codes as the ramp above, only d differs.
  std::vector<float> x(32);
  x[0] = 4.0f;
  for (int j = 1; j < 32; ++j) x[j] = static_cast<float>(16 - j) / 4.0f + 0.125f;
  const Bytes want = {0x00, 0xb4, 0x00, 0x00, 0xff, 0xff, 0x00, 0x11, 0x22, 0x33, 0x44,
                      0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff};
  EXPECT_EQ(quantize_block(KvType::q5_0, x), want);
}

TEST(Q5_1Golden, MinScaleHighBitsAndTies) {
  // x_j = j/2 - 3, plus 1/4 for odd j < 31: min = -3, max = x_31 = 12.5, d = 15.5 / 31 = 0.5 (0x3800), id = 2,
  // m = -3 (0xc200). code = (uint8)((x + 3) * 2 + 0.5): even j -> j + 0.5 -> j; odd j < 31 -> j + 0.5 + 0.5 = j + 1
  // (a tie, up); j = 31 -> 31. Codes 0 2 2 4 4 ... 30 30 31: the 5th bit is set from j = 15 on: qh = 0xffff8000;
  // qs[j] = (code_j & 15) | (code_{j+16} & 15) << 4: qs[0] = 0x00, qs[1] = 0x22, ..., qs[15] = 0 | 15 << 4 = 0xf0.
  std::vector<float> x = ramp(-3.0f, 0.5f);
  for (int j = 1; j < 31; j += 2) x[j] += 0.25f;
  const Bytes want = {0x00, 0x38, 0x00, 0xc2, 0x00, 0x80, 0xff, 0xff, 0x00, 0x22, 0x22, 0x44,
                      0x44, 0x66, 0x66, 0x88, 0x88, 0xaa, 0xaa, 0xcc, 0xcc, 0xee, 0xee, 0xf0};
  const Bytes got = quantize_block(KvType::q5_1, x);
  EXPECT_EQ(got, want);
  const std::vector<float> y = dequantize_block(KvType::q5_1, got);
  for (int j = 0; j < 32; ++j) {
    const int code = (j % 2 == 1 && j < 31) ? j + 1 : j;
    EXPECT_EQ(y[j], static_cast<float>(code) * 0.5f - 3.0f) << j;  // code * d + m
  }
}

TEST(GgmlGolden, AllZeroBlocksStoreZeroScalesAndDequantizeToZeros) {
  // d = 0 gives id = 0, so every code is the zero point: q8_0 0, q4_0 8 (qs 0x88), q5_0 16 (low nibble 0, qh all
  // ones), q4_1/q5_1 0 with m = +0. GGML's signed max starts at +0.0f and is never replaced, so q4_0/q5_0 store
  // d = +0 / -8 = -0 (0x8000).
  const std::vector<float> zeros(32, 0.0f);
  struct Case {
    KvType type;
    Bytes want;
  };
  const Case cases[] = {
      {KvType::q8_0, Bytes(34, 0x00)},
      {KvType::q4_0, [] { Bytes b(18, 0x88); b[0] = 0x00; b[1] = 0x80; return b; }()},
      {KvType::q4_1, Bytes(20, 0x00)},
      {KvType::q5_0, [] { Bytes b(22, 0x00); b[1] = 0x80; b[2] = b[3] = b[4] = b[5] = 0xff; return b; }()},
      {KvType::q5_1, Bytes(24, 0x00)},
  };
  for (const Case& c : cases) {
    const Bytes got = quantize_block(c.type, zeros);
    EXPECT_EQ(got, c.want) << kv_traits(c.type).name;
    for (float v : dequantize_block(c.type, got)) EXPECT_EQ(v, 0.0f) << kv_traits(c.type).name;
  }
}

TEST(GgmlGolden, ConstantBlocks) {
  // q4_1/q5_1: max == min -> d = 0, id = 0, every code 0, m = the value: dequantization is exact.
  // q8_0: amax = 3 -> d = 3/127, id = 127/3 (rounded), code = roundf(3 * id) = 127.
  const std::vector<float> threes(32, 3.0f);
  for (KvType t : {KvType::q4_1, KvType::q5_1}) {
    const Bytes got = quantize_block(t, threes);
    EXPECT_EQ(got[0], 0x00);
    EXPECT_EQ(got[1], 0x00);
    EXPECT_EQ(got[2], 0x00);  // m = 3.0 = 0x4200
    EXPECT_EQ(got[3], 0x42);
    for (float v : dequantize_block(t, got)) EXPECT_EQ(v, 3.0f);
  }
  const Bytes q8 = quantize_block(KvType::q8_0, threes);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(static_cast<int8_t>(q8[2 + j]), 127);
}

TEST(GgmlGolden, BlocksOfARowAreIndependent) {
  // A row is its blocks one after another: quantizing 3 blocks at once equals quantizing each alone.
  std::vector<float> row;
  for (float start : {-16.0f, 8.0f, -3.0f}) {
    const std::vector<float> b = ramp(start, start < 0 ? 1.0f : -0.5f);
    row.insert(row.end(), b.begin(), b.end());
  }
  for (KvType t : {KvType::q8_0, KvType::q4_0, KvType::q4_1, KvType::q5_0, KvType::q5_1}) {
    const int bb = kv_traits(t).block_bytes;
    Bytes whole(3 * bb, 0xAB);
    ASSERT_TRUE(quantize_row(t, row.data(), 96, whole.data()).ok());
    for (int b = 0; b < 3; ++b) {
      const Bytes one = quantize_block(t, std::vector<float>(row.begin() + 32 * b, row.begin() + 32 * (b + 1)));
      EXPECT_EQ(Bytes(whole.begin() + b * bb, whole.begin() + (b + 1) * bb), one) << kv_traits(t).name << " " << b;
    }
  }
}

}  // namespace
}  // namespace kvflash
