// Hand-computed blocks for the GGML types, GGML's rounding rules, and the documented non-finite behaviour.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "format/blocks.h"
#include "kvflash/quantize.h"

namespace kvflash {
namespace {

using format::BlockQ4_0;
using format::BlockQ4_1;
using format::BlockQ5_0;
using format::BlockQ5_1;
using format::BlockQ8_0;

template <typename Block>
Block quantize_one(KvType type, const std::vector<float>& x) {
  Block b;
  std::memset(&b, 0xAB, sizeof b);  // poison: every byte must be written
  EXPECT_TRUE(quantize_row(type, x.data(), 32, &b).ok());
  return b;
}

std::vector<float> dequantize_one(KvType type, const void* block) {
  std::vector<float> y(32, std::numeric_limits<float>::quiet_NaN());
  EXPECT_TRUE(dequantize_row(type, block, 32, y.data()).ok());
  return y;
}

TEST(Fp16, RoundsToNearestEvenAndKeepsSpecialValues) {
  EXPECT_EQ(fp32_to_fp16(1.0f), 0x3c00);
  EXPECT_EQ(fp32_to_fp16(-2.0f), 0xc000);
  EXPECT_EQ(fp32_to_fp16(65504.0f), 0x7bff);             // largest half
  EXPECT_EQ(fp32_to_fp16(65519.99f), 0x7bff);            // rounds down below the midpoint 65520
  EXPECT_EQ(fp32_to_fp16(65520.0f), 0x7c00);             // the midpoint rounds to even: Inf
  EXPECT_EQ(fp32_to_fp16(1.0f + 1.0f / 2048), 0x3c00);   // tie between 0x3c00 and 0x3c01: even wins
  EXPECT_EQ(fp32_to_fp16(1.0f + 3.0f / 2048), 0x3c02);   // tie between 0x3c01 and 0x3c02: even wins
  EXPECT_EQ(fp32_to_fp16(5.9604644775390625e-8f), 0x0001);  // smallest subnormal 2^-24
  EXPECT_EQ(fp32_to_fp16(2.98023223876953125e-8f), 0x0000); // 2^-25: tie to even (0)
  EXPECT_EQ(fp32_to_fp16(-0.0f), 0x8000);
  EXPECT_EQ(fp32_to_fp16(std::numeric_limits<float>::infinity()), 0x7c00);
  EXPECT_EQ(fp32_to_fp16(-std::numeric_limits<float>::infinity()), 0xfc00);
  EXPECT_EQ(fp32_to_fp16(std::numeric_limits<float>::quiet_NaN()), 0x7e00);
  EXPECT_EQ(fp32_to_fp16(-std::numeric_limits<float>::quiet_NaN()), 0xfe00);
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = fp16_to_fp32(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    EXPECT_EQ(fp32_to_fp16(f), h) << "half 0x" << std::hex << h << " does not round-trip";
  }
}

TEST(Bf16, RoundsToNearestEvenAndKeepsNanQuiet) {
  EXPECT_EQ(fp32_to_bf16(1.0f), 0x3f80);
  float tie;  // 1 + 2^-8: exactly between bf16 0x3f80 and 0x3f81 -> even (0x3f80)
  const uint32_t tie_bits = 0x3f808000u;
  std::memcpy(&tie, &tie_bits, 4);
  EXPECT_EQ(fp32_to_bf16(tie), 0x3f80);
  const uint32_t tie_odd_bits = 0x3f818000u;  // between 0x3f81 and 0x3f82 -> 0x3f82
  std::memcpy(&tie, &tie_odd_bits, 4);
  EXPECT_EQ(fp32_to_bf16(tie), 0x3f82);
  const uint32_t snan_bits = 0x7f800001u;  // a signalling NaN whose payload sits below bit 16
  float snan;
  std::memcpy(&snan, &snan_bits, 4);
  EXPECT_EQ(fp32_to_bf16(snan), 0x7fc0);  // quiet bit forced: it must not turn into Inf
  EXPECT_EQ(bf16_to_fp32(0x4049), 3.140625f);
}

TEST(Q8_0, HandComputedBlock) {
  // x_j = j - 16: amax = 16, d = 16/127 = 0.1259842...; as half: 2^-3 * (1 + 8/1024) = 0x3008 (8.06 rounds to 8).
  // id = 1/d = 7.9375 exactly, q_j = roundf((j - 16) * 7.9375): j = 0 -> -127, j = 15 -> -7.9375 -> -8,
  // j = 31 -> 119.0625 -> 119, j = 18 -> 15.875 -> 16.
  std::vector<float> x(32);
  for (int j = 0; j < 32; ++j) x[j] = static_cast<float>(j - 16);
  const BlockQ8_0 b = quantize_one<BlockQ8_0>(KvType::q8_0, x);
  EXPECT_EQ(b.d, 0x3008);
  EXPECT_EQ(b.qs[0], -127);
  EXPECT_EQ(b.qs[15], -8);
  EXPECT_EQ(b.qs[16], 0);
  EXPECT_EQ(b.qs[18], 16);
  EXPECT_EQ(b.qs[31], 119);
  const std::vector<float> y = dequantize_one(KvType::q8_0, &b);
  const float d = fp16_to_fp32(0x3008);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(y[j], b.qs[j] * d);
}

TEST(Q8_0, RoundsHalfAwayFromZeroAsCRoundf) {
  // amax = 127 -> d = 1, id = 1: q = roundf(x). 2.5 -> 3 and -2.5 -> -3 (not banker's rounding).
  std::vector<float> x(32, 0.0f);
  x[0] = 127.0f;
  x[1] = 2.5f;
  x[2] = -2.5f;
  x[3] = 0.5f;
  const BlockQ8_0 b = quantize_one<BlockQ8_0>(KvType::q8_0, x);
  EXPECT_EQ(b.d, 0x3c00);
  EXPECT_EQ(b.qs[1], 3);
  EXPECT_EQ(b.qs[2], -3);
  EXPECT_EQ(b.qs[3], 1);
}

TEST(Q4_0, KeepsTheSignOfTheLargestMagnitudeAndTruncates) {
  // The largest magnitude is negative (-8): d = -8 / -8 = 1, id = 1, q = MIN(15, (int8)(x + 8.5)).
  std::vector<float> x(32, 0.0f);
  x[0] = -8.0f;   // q = 0
  x[1] = 6.4f;    // 14.9 truncates to 14
  x[2] = 7.0f;    // 15.5 -> 15
  x[3] = 7.5f;    // 16.0 -> MIN(15, 16) = 15
  x[16] = -0.6f;  // 7.9 -> 7, stored in the high nibble of qs[0]
  const BlockQ4_0 b = quantize_one<BlockQ4_0>(KvType::q4_0, x);
  EXPECT_EQ(b.d, 0x3c00);
  EXPECT_EQ(b.qs[0], 0x70);
  EXPECT_EQ(b.qs[1], 0x8e);
  EXPECT_EQ(b.qs[2], 0x8f);
  EXPECT_EQ(b.qs[3], 0x8f);
  const std::vector<float> y = dequantize_one(KvType::q4_0, &b);
  EXPECT_EQ(y[0], -8.0f);
  EXPECT_EQ(y[1], 6.0f);
  EXPECT_EQ(y[16], -1.0f);
}

TEST(Q4_0, FirstOfEqualMagnitudesWins) {
  // +4 comes first, -4 later: GGML updates only on amax < |x|, so max = +4 and d = 4 / -8 = -0.5.
  std::vector<float> x(32, 0.0f);
  x[5] = 4.0f;
  x[9] = -4.0f;
  const BlockQ4_0 b = quantize_one<BlockQ4_0>(KvType::q4_0, x);
  EXPECT_EQ(fp16_to_fp32(b.d), -0.5f);
}

TEST(Q4_1, HandComputedBlock) {
  // x_j = j: min 0, max 31, d = 31/15 = 2.0666..., id = 0.48387..., q_j = MIN(15, (int8)(j * id + 0.5)).
  std::vector<float> x(32);
  for (int j = 0; j < 32; ++j) x[j] = static_cast<float>(j);
  const BlockQ4_1 b = quantize_one<BlockQ4_1>(KvType::q4_1, x);
  EXPECT_EQ(b.d, fp32_to_fp16(31.0f / 15.0f));
  EXPECT_EQ(b.m, 0x0000);
  const float id = 1.0f / (31.0f / 15.0f);
  for (int j = 0; j < 16; ++j) {
    const int lo = std::min(15, static_cast<int>(j * id + 0.5f));
    const int hi = std::min(15, static_cast<int>((j + 16) * id + 0.5f));
    EXPECT_EQ(b.qs[j], lo | (hi << 4)) << j;
  }
  EXPECT_EQ(b.qs[0] & 0x0f, 0);
  EXPECT_EQ(b.qs[15] >> 4, 15);  // x = 31 -> 15.5 -> 15
}

TEST(Q5_0, HandComputedBlock) {
  // x_j = j - 16: the largest magnitude is x_0 = -16, d = -16 / -16 = 1, q_j = (int8)(j - 16 + 16.5) = j.
  // Low nibbles: qs[j] = (j & 15) | ((j + 16) & 15) << 4 = j * 0x11; fifth bits set for j >= 16: qh = 0xffff0000.
  std::vector<float> x(32);
  for (int j = 0; j < 32; ++j) x[j] = static_cast<float>(j - 16);
  const BlockQ5_0 b = quantize_one<BlockQ5_0>(KvType::q5_0, x);
  EXPECT_EQ(b.d, 0x3c00);
  for (int j = 0; j < 16; ++j) EXPECT_EQ(b.qs[j], j * 0x11) << j;
  EXPECT_EQ(b.qh[0], 0x00);
  EXPECT_EQ(b.qh[1], 0x00);
  EXPECT_EQ(b.qh[2], 0xff);
  EXPECT_EQ(b.qh[3], 0xff);
  const std::vector<float> y = dequantize_one(KvType::q5_0, &b);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(y[j], x[j]);
}

TEST(Q5_1, HandComputedBlock) {
  // x_j = j / 2: min 0, max 15.5, d = 0.5, id = 2, q_j = (uint8)(j + 0.5) = j: same bits as the q5_0 case.
  std::vector<float> x(32);
  for (int j = 0; j < 32; ++j) x[j] = static_cast<float>(j) / 2.0f;
  const BlockQ5_1 b = quantize_one<BlockQ5_1>(KvType::q5_1, x);
  EXPECT_EQ(b.d, 0x3800);
  EXPECT_EQ(b.m, 0x0000);
  for (int j = 0; j < 16; ++j) EXPECT_EQ(b.qs[j], j * 0x11) << j;
  EXPECT_EQ(b.qh[2], 0xff);
  const std::vector<float> y = dequantize_one(KvType::q5_1, &b);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(y[j], x[j]);
}

TEST(GgmlTypes, AllZeroBlocksStoreZeroScalesAndDequantizeToZero) {
  const std::vector<float> zeros(32, 0.0f);
  for (KvType t : {KvType::q8_0, KvType::q4_0, KvType::q4_1, KvType::q5_0, KvType::q5_1}) {
    std::vector<uint8_t> block(kv_traits(t).block_bytes, 0xAB);
    ASSERT_TRUE(quantize_row(t, zeros.data(), 32, block.data()).ok());
    uint16_t d;
    std::memcpy(&d, block.data(), 2);
    // C's max starts at +0.0f, so q4_0/q5_0 store d = 0 / -8 = -0 (0x8000); the others +0.
    EXPECT_EQ(d & 0x7fff, 0) << kv_traits(t).name;
    for (float v : dequantize_one(t, block.data())) EXPECT_EQ(v, 0.0f) << kv_traits(t).name;
  }
}

TEST(GgmlTypes, RoundTripErrorIsWithinHalfAStep) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (KvType t : {KvType::q8_0, KvType::q4_0, KvType::q4_1, KvType::q5_0, KvType::q5_1}) {
    for (int trial = 0; trial < 200; ++trial) {
      std::vector<float> x(32);
      const float scale = std::exp2(static_cast<float>(trial % 20 - 10));
      for (float& v : x) v = normal(rng) * scale;
      std::vector<uint8_t> block(kv_traits(t).block_bytes);
      ASSERT_TRUE(quantize_row(t, x.data(), 32, block.data()).ok());
      const std::vector<float> y = dequantize_one(t, block.data());
      uint16_t dh;
      std::memcpy(&dh, block.data(), 2);
      const float d = std::fabs(fp16_to_fp32(dh));
      float amax = 0, lo = x[0], hi = x[0];
      for (float v : x) {
        amax = std::max(amax, std::fabs(v));
        lo = std::min(lo, v);
        hi = std::max(hi, v);
      }
      // Half a step, plus what the fp16 rounding of d (2^-11 relative) and of m shifts the grid by.
      const float step_slack = (t == KvType::q8_0 ? 127.0f : 16.0f) * d * 1e-3f + 1e-3f * amax;
      for (int j = 0; j < 32; ++j) {
        EXPECT_LE(std::fabs(x[j] - y[j]), 0.5f * d + step_slack + (t == KvType::q4_0 || t == KvType::q5_0 ? 0.5f * d : 0.0f))
            << kv_traits(t).name << " trial " << trial << " j " << j;
      }
    }
  }
}

TEST(GgmlTypes, NonFiniteInputsHaveTheDocumentedResult) {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> x(32);
  for (int j = 0; j < 32; ++j) x[j] = static_cast<float>(j % 7) - 3.0f;

  // q8_0, NaN: the max ignores it (MAX(a, b) = a > b ? a : b) and its code is 0, like x86's cvttss2si.
  x[4] = nan;
  BlockQ8_0 b = quantize_one<BlockQ8_0>(KvType::q8_0, x);
  EXPECT_EQ(b.d, fp32_to_fp16(3.0f / 127.0f));
  EXPECT_EQ(b.qs[4], 0);
  EXPECT_EQ(b.qs[3], 0);  // x = 0
  EXPECT_EQ(b.qs[6], 127);  // x = 3

  // q8_0, +Inf: d = Inf (stored as half Inf), id = 1/Inf = 0, every code is 0 (Inf * 0 = NaN -> 0);
  // dequantizing gives 0 * Inf = NaN everywhere: the block is poisoned, visibly.
  x[4] = inf;
  b = quantize_one<BlockQ8_0>(KvType::q8_0, x);
  EXPECT_EQ(b.d, 0x7c00);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(b.qs[j], 0);
  for (float v : dequantize_one(KvType::q8_0, &b)) EXPECT_TRUE(std::isnan(v));

  // q4_0, -Inf as the largest magnitude: d = -Inf / -8 = +Inf, id = 0: finite values get (int8)(0 + 8.5) = 8,
  // the -Inf itself (int8)(NaN) = 0.
  x[4] = -inf;
  const BlockQ4_0 b4 = quantize_one<BlockQ4_0>(KvType::q4_0, x);
  EXPECT_EQ(b4.d, 0x7c00);
  for (int j = 0; j < 16; ++j) EXPECT_EQ(b4.qs[j], j == 4 ? 0x80 : 0x88) << j;

  // q4_1 with NaN: min/max skip it (comparisons are false), its code is (int8)(NaN) -> 0.
  x[4] = nan;
  const BlockQ4_1 b41 = quantize_one<BlockQ4_1>(KvType::q4_1, x);
  EXPECT_EQ(fp16_to_fp32(b41.m), -3.0f);
  EXPECT_EQ(b41.qs[4] & 0x0f, 0);

  // Quantizing NaN/Inf never crashes and is deterministic for every type.
  for (const KvTraits& tr : all_kv_types()) {
    std::vector<float> row(tr.block_elems * 2, 1.0f);
    row[1] = nan;
    row[tr.block_elems] = -inf;
    std::vector<uint8_t> a(row_bytes(tr.type, row.size())), c(a.size());
    ASSERT_TRUE(quantize_row(tr.type, row.data(), row.size(), a.data()).ok());
    ASSERT_TRUE(quantize_row(tr.type, row.data(), row.size(), c.data()).ok());
    EXPECT_EQ(a, c) << tr.name;
  }
}

TEST(QuantizeRow, RejectsRowsThatAreNotWholeBlocks) {
  std::vector<float> x(64, 1.0f);
  std::vector<uint8_t> out(256);
  const Status s = quantize_row(KvType::q8_0, x.data(), 33, out.data());
  EXPECT_EQ(s.code(), StatusCode::invalid_argument);
  EXPECT_NE(s.message().find("n = 33"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("q8_0"), std::string::npos) << s.message();
  EXPECT_FALSE(dequantize_row(KvType::turbo3, out.data(), 64, x.data()).ok());
  EXPECT_FALSE(quantize_row(KvType::q4_0, x.data(), -32, out.data()).ok());
  EXPECT_TRUE(quantize_row(KvType::f16, x.data(), 3, out.data()).ok());
}

}  // namespace
}  // namespace kvflash
