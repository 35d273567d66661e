// Non-finite inputs: the documented result for every type (README, "KV formats"). GGML's C reference has undefined
// behaviour here (float -> int casts of NaN/Inf); kvflash defines every float -> int conversion as x86's cvttss2si
// does (NaN or out of int32 range -> INT32_MIN, whose low byte is 0), so the result is GGML's on x86, without UB.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "format/blocks.h"
#include "format/turbo.h"
#include "kvflash/quantize.h"

namespace kvflash {
namespace {

using Bytes = std::vector<uint8_t>;
constexpr float kInf = std::numeric_limits<float>::infinity();
const float kNaN = std::numeric_limits<float>::quiet_NaN();

Bytes quantize(KvType type, const std::vector<float>& x) {
  Bytes out(row_bytes(type, static_cast<int64_t>(x.size())), 0xAB);
  EXPECT_TRUE(quantize_row(type, x.data(), static_cast<int64_t>(x.size()), out.data()).ok());
  return out;
}

std::vector<float> dequantize(KvType type, const Bytes& row, int64_t n, bool rotated = false) {
  std::vector<float> y(n, 12345.0f);
  EXPECT_TRUE(dequantize_row(type, row.data(), n, y.data(), rotated).ok());
  return y;
}

std::vector<float> ramp(float offset, float step, int n = 32) {
  std::vector<float> x(n);
  for (int j = 0; j < n; ++j) x[j] = offset + step * static_cast<float>(j);
  return x;
}

uint16_t u16_at(const Bytes& b, int offset) { return static_cast<uint16_t>(b[offset] | b[offset + 1] << 8); }

TEST(NonFinite, PlainFloatTypes) {
  const std::vector<float> x = {kNaN, -kNaN, kInf, -kInf};
  const Bytes h = quantize(KvType::f16, x);
  EXPECT_EQ(u16_at(h, 0), 0x7e00);
  EXPECT_EQ(u16_at(h, 2), 0xfe00);
  EXPECT_EQ(u16_at(h, 4), 0x7c00);
  EXPECT_EQ(u16_at(h, 6), 0xfc00);
  const Bytes b = quantize(KvType::bf16, x);
  EXPECT_EQ(u16_at(b, 0), 0x7fc0);
  EXPECT_EQ(u16_at(b, 2), 0xffc0);
  EXPECT_EQ(u16_at(b, 4), 0x7f80);
  EXPECT_EQ(u16_at(b, 6), 0xff80);
  for (KvType t : {KvType::f32, KvType::f16, KvType::bf16}) {
    const std::vector<float> y = dequantize(t, quantize(t, x), 4);
    EXPECT_TRUE(std::isnan(y[0]) && std::isnan(y[1])) << kv_traits(t).name;
    EXPECT_EQ(y[2], kInf) << kv_traits(t).name;
    EXPECT_EQ(y[3], -kInf) << kv_traits(t).name;
  }
}

TEST(NonFinite, Q8_0NanResetsTheRunningMaximum) {
  // amax = MAX(amax, |x|) with MAX(a, b) = a > b ? a : b: a NaN becomes amax (NaN > b is false), and the next
  // value replaces it. x = {100, NaN, 1, 0, ...}: amax = 1, d = 1/127 (0x2008), id = 127. 100 * 127 = 12700 does
  // not fit int8: cvttss2si gives 12700 = 0x319c, the low byte 0x9c = -100. NaN -> code 0, 1 -> 127.
  std::vector<float> x(32, 0.0f);
  x[0] = 100.0f;
  x[1] = kNaN;
  x[2] = 1.0f;
  const Bytes got = quantize(KvType::q8_0, x);
  EXPECT_EQ(u16_at(got, 0), 0x2008);
  EXPECT_EQ(static_cast<int8_t>(got[2]), -100);
  EXPECT_EQ(got[3], 0);
  EXPECT_EQ(got[4], 127);
  for (int j = 3; j < 32; ++j) EXPECT_EQ(got[2 + j], 0) << j;
  const std::vector<float> y = dequantize(KvType::q8_0, got, 32);
  EXPECT_EQ(y[0], -100.0f * fp16_to_fp32(0x2008));  // the wrapped code comes back
  EXPECT_EQ(y[1], 0.0f);                             // the NaN comes back as 0
}

TEST(NonFinite, Q8_0TrailingNanMakesTheScaleNan) {
  // A NaN in the last position stays amax: d = NaN (stored 0x7e00), id = NaN, every code (int8)roundf(NaN) = 0;
  // the block dequantizes to NaN (0 * NaN).
  std::vector<float> x = ramp(-16.0f, 1.0f);
  x[31] = kNaN;
  const Bytes got = quantize(KvType::q8_0, x);
  EXPECT_EQ(u16_at(got, 0), 0x7e00);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(got[2 + j], 0) << j;
  for (float v : dequantize(KvType::q8_0, got, 32)) EXPECT_TRUE(std::isnan(v));
}

TEST(NonFinite, Q8_0InfinityMakesTheScaleInfinite) {
  // amax = Inf: d = Inf (0x7c00), id = 1/Inf = 0, codes roundf(x * 0) = 0 (Inf * 0 = NaN -> 0 too);
  // the block dequantizes to 0 * Inf = NaN. -Inf gives the same bytes (|x| is taken).
  for (float inf : {kInf, -kInf}) {
    std::vector<float> x = ramp(-16.0f, 1.0f);
    x[3] = inf;
    const Bytes got = quantize(KvType::q8_0, x);
    EXPECT_EQ(u16_at(got, 0), 0x7c00);
    for (int j = 0; j < 32; ++j) EXPECT_EQ(got[2 + j], 0) << j;
    for (float v : dequantize(KvType::q8_0, got, 32)) EXPECT_TRUE(std::isnan(v));
  }
}

TEST(NonFinite, Q4_0AndQ5_0NanIsLeftOutOfTheMaxAndComesBackAsTheMax) {
  // amax < |NaN| is false, so the max ignores it; its code is (int8)(NaN) = 0, which dequantizes to
  // (0 - 8) * d = max (q4_0) or (0 - 16) * d = max (q5_0). The rest is the golden ramp (d = 1).
  std::vector<float> x = ramp(-8.0f, 0.5f);  // q4_0 golden ramp: qs[3] = 2 | 10 << 4 = 0xa2
  x[3] = kNaN;
  Bytes got = quantize(KvType::q4_0, x);
  EXPECT_EQ(u16_at(got, 0), 0x3c00);
  EXPECT_EQ(got[2 + 3], 0xa0);
  EXPECT_EQ(dequantize(KvType::q4_0, got, 32)[3], -8.0f);

  x = ramp(-16.0f, 1.0f);  // q5_0 golden ramp: qs[3] = 3 | 3 << 4 = 0x33, qh bit 3 clear
  x[3] = kNaN;
  got = quantize(KvType::q5_0, x);
  EXPECT_EQ(u16_at(got, 0), 0x3c00);
  EXPECT_EQ(got[6 + 3], 0x30);
  EXPECT_EQ(dequantize(KvType::q5_0, got, 32)[3], -16.0f);
}

TEST(NonFinite, Q4_0AndQ5_0InfinityBecomesTheMaxAndPoisonsTheBlock) {
  // An Inf is the largest magnitude: max = +Inf -> d = -Inf (0xfc00), -Inf -> d = +Inf (0x7c00); id = -+0.
  // Finite values: x * 0 + 8.5 -> code 8 (q5_0: 16); the Inf: Inf * 0 = NaN -> code 0.
  // Dequantized: finite values (8 - 8) * Inf = NaN; the Inf itself (0 - 8) * d = the Inf, with its sign.
  for (float inf : {kInf, -kInf}) {
    std::vector<float> x = ramp(-8.0f, 0.5f);
    x[3] = inf;
    const uint16_t want_d = inf > 0 ? 0xfc00 : 0x7c00;
    Bytes got = quantize(KvType::q4_0, x);
    EXPECT_EQ(u16_at(got, 0), want_d);
    for (int j = 0; j < 16; ++j) EXPECT_EQ(got[2 + j], j == 3 ? 0x80 : 0x88) << j;
    std::vector<float> y = dequantize(KvType::q4_0, got, 32);
    for (int j = 0; j < 32; ++j) {
      if (j == 3) EXPECT_EQ(y[j], inf);
      else EXPECT_TRUE(std::isnan(y[j])) << j;
    }

    got = quantize(KvType::q5_0, x);
    EXPECT_EQ(u16_at(got, 0), want_d);
    // Code 16 everywhere but value 3 (code 0): low nibbles 0, fifth bits all set except bit 3.
    EXPECT_EQ(got[2], 0xf7);
    EXPECT_EQ(got[3], 0xff);
    EXPECT_EQ(got[4], 0xff);
    EXPECT_EQ(got[5], 0xff);
    for (int j = 0; j < 16; ++j) EXPECT_EQ(got[6 + j], 0x00) << j;
    y = dequantize(KvType::q5_0, got, 32);
    EXPECT_EQ(y[3], inf);
    EXPECT_TRUE(std::isnan(y[4]));
  }
}

TEST(NonFinite, Q4_1AndQ5_1NanIsSkippedByMinMaxAndComesBackAsTheMin) {
  // v < min and v > max are false for NaN, so min/max come from the finite values; the NaN's code is
  // (int8)(NaN) = 0, which dequantizes to 0 * d + m = m.
  std::vector<float> x = ramp(-1.0f, 0.25f);
  x[20] = 0.5f;
  x[3] = kNaN;
  for (KvType t : {KvType::q4_1, KvType::q5_1}) {
    const Bytes got = quantize(t, x);
    EXPECT_EQ(u16_at(got, 2), 0xbc00) << kv_traits(t).name;  // m = -1, the finite minimum
    const std::vector<float> y = dequantize(t, got, 32);
    EXPECT_EQ(y[3], -1.0f) << kv_traits(t).name;
    EXPECT_EQ(y[0], -1.0f) << kv_traits(t).name;
  }
}

TEST(NonFinite, Q4_1AndQ5_1InfinityMakesDInfiniteAndTheBlockNan) {
  // +Inf: max = Inf -> d = Inf, id = 0, m = the finite min; -Inf: min = -Inf -> d = Inf, m = -Inf.
  // Every code is 0 ((x - min) * 0 + 0.5 -> 0, and NaN -> 0); the block dequantizes to 0 * Inf + m = NaN.
  for (float inf : {kInf, -kInf}) {
    std::vector<float> x = ramp(-1.0f, 0.25f);
    x[3] = inf;
    for (KvType t : {KvType::q4_1, KvType::q5_1}) {
      const Bytes got = quantize(t, x);
      EXPECT_EQ(u16_at(got, 0), 0x7c00) << kv_traits(t).name;
      EXPECT_EQ(u16_at(got, 2), inf > 0 ? 0xbc00 : 0xfc00) << kv_traits(t).name;
      for (size_t b = 4; b < got.size(); ++b) EXPECT_EQ(got[b], 0) << kv_traits(t).name << " byte " << b;
      for (float v : dequantize(t, got, 32)) EXPECT_TRUE(std::isnan(v)) << kv_traits(t).name;
    }
  }
}

TEST(NonFinite, FiniteValuesBeyondTheHalfRangeStoreAnInfiniteScale) {
  // Not an input error but a limit of the format: q8_0 with amax >= 127 * 65520 has d >= 65520, stored as Inf;
  // codes are still computed with the float scale, and dequantization gives +-Inf (or NaN for code 0).
  std::vector<float> x = ramp(-16.0f, 1.0f);
  x[0] = 1.0e7f;
  const Bytes got = quantize(KvType::q8_0, x);
  EXPECT_EQ(u16_at(got, 0), 0x7c00);
  EXPECT_EQ(got[2], 127);
  const std::vector<float> y = dequantize(KvType::q8_0, got, 32);
  EXPECT_EQ(y[0], kInf);
}

// Turbo: a group with a NaN or Inf gets a non-finite norm; the thresholds compare with `<`, so NaN coordinates
// take the last index. Other groups of the row are untouched.
TEST(NonFinite, TurboGroupWithNanOrInf) {
  struct Case {
    KvType type;
    float bad;
    uint16_t norm;   // stored norm bits
    uint8_t code;    // every qs byte (turbo3: every signs byte too)
  };
  // turbo2/3, NaN: norm = NaN, inv = 0 (NaN > 1e-10f is false), u = x * 0 is NaN at the bad coordinate, and the
  // butterflies spread it to all 128: last index (3: qs 0xff; 7: qs and signs 0xff), norm NaN / rn -> 0x7e00.
  // turbo4, NaN: u = 0 (the norm test fails), rotated zeros take index 8 (0 < 0 is false): qs 0x88.
  // Inf: norm = Inf, inv = 1/Inf = 0, Inf * 0 = NaN spreads: last index; norm Inf / rn -> 0x7c00.
  const Case cases[] = {
      {KvType::turbo2, kNaN, 0x7e00, 0xff}, {KvType::turbo3, kNaN, 0x7e00, 0xff},
      {KvType::turbo4, kNaN, 0x7e00, 0x88}, {KvType::turbo2, kInf, 0x7c00, 0xff},
      {KvType::turbo3, kInf, 0x7c00, 0xff}, {KvType::turbo4, kInf, 0x7c00, 0xff},
      {KvType::turbo4, -kInf, 0x7c00, 0xff},
  };
  for (const Case& c : cases) {
    std::vector<float> x(2 * format::kTurboGroup);
    for (size_t i = 0; i < x.size(); ++i) x[i] = std::cos(0.1f * static_cast<float>(i));
    x[17] = c.bad;
    const Bytes got = quantize(c.type, x);
    const int bb = kv_traits(c.type).block_bytes;
    const std::string what = std::string(kv_traits(c.type).name) + " with " + std::to_string(c.bad);
    EXPECT_EQ(u16_at(got, 0), c.norm) << what;
    const int first_code_byte = c.type == KvType::turbo4 ? 4 : 2;
    if (c.type == KvType::turbo4) {
      EXPECT_EQ(u16_at(got, 2), 0) << what;  // rnorm
    }
    for (int b = first_code_byte; b < bb; ++b) EXPECT_EQ(got[b], c.code) << what << " byte " << b;

    const std::vector<float> original = dequantize(c.type, got, 256);
    const std::vector<float> rotated = dequantize(c.type, got, 256, true);
    for (int i = 0; i < format::kTurboGroup; ++i) {
      EXPECT_TRUE(std::isnan(original[i])) << what << " " << i;
      // Rotated domain: centroid * norm, i.e. NaN, or +Inf (the last centroid is positive) for an Inf input.
      if (std::isnan(c.bad)) EXPECT_TRUE(std::isnan(rotated[i])) << what << " " << i;
      else EXPECT_EQ(rotated[i], kInf) << what << " " << i;
    }
    // The second group is an ordinary one.
    Bytes second(got.begin() + bb, got.end());
    const Bytes alone = quantize(c.type, std::vector<float>(x.begin() + 128, x.end()));
    EXPECT_EQ(second, alone) << what;
    for (int i = 128; i < 256; ++i) EXPECT_TRUE(std::isfinite(original[i])) << what << " " << i;
  }
}

TEST(NonFinite, TurboGroupWhoseSumOfSquaresOverflows) {
  // Finite values around 1e20: nsq = Inf, norm = Inf, u = x * (1/Inf) = 0 everywhere, so the rotated zeros take
  // the index just above the threshold 0 (turbo2: 2 -> qs 0xaa; turbo3: 4 -> qs 0x00, signs 0xff; turbo4: 8 ->
  // 0x88), and the stored norm is Inf / rn = Inf.
  const std::vector<float> x(format::kTurboGroup, 1.0e20f);
  const Bytes t2 = quantize(KvType::turbo2, x), t3 = quantize(KvType::turbo3, x), t4 = quantize(KvType::turbo4, x);
  EXPECT_EQ(u16_at(t2, 0), 0x7c00);
  EXPECT_EQ(u16_at(t3, 0), 0x7c00);
  EXPECT_EQ(u16_at(t4, 0), 0x7c00);
  for (int b = 2; b < 34; ++b) EXPECT_EQ(t2[b], 0xaa);
  for (int b = 2; b < 34; ++b) EXPECT_EQ(t3[b], 0x00);
  for (int b = 34; b < 50; ++b) EXPECT_EQ(t3[b], 0xff);
  for (int b = 4; b < 68; ++b) EXPECT_EQ(t4[b], 0x88);
}

TEST(NonFinite, QuantizingIsDeterministicAndNeverFailsForAnyType) {
  for (const KvTraits& tr : all_kv_types()) {
    std::vector<float> row(tr.block_elems * 3, 1.5f);
    row[1] = kNaN;
    row[tr.block_elems] = -kInf;
    row[2 * tr.block_elems + tr.block_elems - 1] = kInf;
    const Bytes a = quantize(tr.type, row);
    const Bytes b = quantize(tr.type, row);
    EXPECT_EQ(a, b) << tr.name;
  }
}

}  // namespace
}  // namespace kvflash
