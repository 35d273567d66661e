// fp32 <-> fp16 / bf16, as GGML converts (ggml-impl.h): round to nearest even, overflow to Inf, NaN kept quiet.
// Golden values are derived by hand; the sweeps compare with an independent oracle that rounds in double.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "kvflash/quantize.h"

namespace kvflash {
namespace {

float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

// The value of a finite half, from the IEEE 754 definition (not from the code under test).
double half_value(uint16_t h) {
  const int sign = (h & 0x8000) ? -1 : 1;
  const int exp = (h >> 10) & 0x1f;
  const int man = h & 0x3ff;
  if (exp == 0) return sign * std::ldexp(static_cast<double>(man), -24);
  return sign * std::ldexp(1.0 + man / 1024.0, exp - 15);
}

// Correct round-to-nearest-even float -> half, found by search over the table of all finite halves.
uint16_t oracle_fp16(float f) {
  static const std::vector<double> positive = [] {
    std::vector<double> v;
    for (uint16_t h = 0; h <= 0x7bff; ++h) v.push_back(half_value(h));  // ascending with h
    return v;
  }();
  const uint16_t sign = std::signbit(f) ? 0x8000 : 0;
  if (std::isnan(f)) return sign | 0x7e00;
  const double a = std::fabs(static_cast<double>(f));
  if (a >= 65520.0) return sign | 0x7c00;  // 65504 + half an ulp (16): the midpoint to "65536" rounds to Inf
  if (a > 65504.0) return sign | 0x7bff;  // between the largest half and that midpoint
  const auto hi = std::lower_bound(positive.begin(), positive.end(), a);
  const auto ihi = static_cast<uint16_t>(hi - positive.begin());
  if (*hi == a) return sign | ihi;
  const auto ilo = static_cast<uint16_t>(ihi - 1);
  const double below = a - positive[ilo], above = *hi - a;
  const uint16_t pick = below < above ? ilo : above < below ? ihi : (ilo % 2 == 0 ? ilo : ihi);
  return sign | pick;
}

// Correct round-to-nearest-even float -> bf16 (bf16 values are the floats whose low 16 bits are zero), NaN quiet.
uint16_t oracle_bf16(float f) {
  const uint32_t u = bits_of(f);
  if (std::isnan(f)) return static_cast<uint16_t>((u >> 16) | 0x40);
  const uint32_t lo_bits = u & 0xffff0000u;
  const double x = std::fabs(static_cast<double>(f));
  const double lo = std::fabs(static_cast<double>(from_bits(lo_bits)));
  // The next bf16 away from zero; past the largest finite one it is Inf, which rounding treats as 2^128.
  const uint32_t next_bits = lo_bits + 0x10000u;
  const double hi = (next_bits & 0x7fffffffu) == 0x7f800000u ? std::ldexp(1.0, 128)
                                                            : std::fabs(static_cast<double>(from_bits(next_bits)));
  if (x - lo < hi - x) return static_cast<uint16_t>(lo_bits >> 16);
  if (x - lo > hi - x) return static_cast<uint16_t>(next_bits >> 16);
  return static_cast<uint16_t>(((lo_bits >> 16) & 1u) == 0 ? lo_bits >> 16 : next_bits >> 16);
}

TEST(Fp16, HandDerivedValues) {
  EXPECT_EQ(fp32_to_fp16(1.0f), 0x3c00);             // exponent 15, mantissa 0
  EXPECT_EQ(fp32_to_fp16(-2.0f), 0xc000);            // sign, exponent 16
  EXPECT_EQ(fp32_to_fp16(0.1f), 0x2e66);             // 1.6 * 2^-4: mantissa 0.6 * 1024 = 614.4 -> 614 = 0x266
  EXPECT_EQ(fp32_to_fp16(65504.0f), 0x7bff);         // the largest half
  EXPECT_EQ(fp32_to_fp16(0.0f), 0x0000);
  EXPECT_EQ(fp32_to_fp16(-0.0f), 0x8000);
  EXPECT_EQ(fp32_to_fp16(6.103515625e-05f), 0x0400);  // 2^-14, the smallest normal
}

TEST(Fp16, RoundsToNearestEvenAtTies) {
  // 1 + 2^-11 lies halfway between 0x3c00 (1) and 0x3c01 (1 + 2^-10): the even mantissa (0x3c00) wins.
  EXPECT_EQ(fp32_to_fp16(1.0f + 0x1p-11f), 0x3c00);
  // 1 + 3 * 2^-11 lies halfway between 0x3c01 and 0x3c02: 0x3c02.
  EXPECT_EQ(fp32_to_fp16(1.0f + 3 * 0x1p-11f), 0x3c02);
  // Just above a tie rounds up.
  EXPECT_EQ(fp32_to_fp16(std::nextafter(1.0f + 0x1p-11f, 2.0f)), 0x3c01);
  // A tie whose round-up carries into the exponent: 2 - 2^-11 is between 0x3bff and 2.0 (0x4000): 0x4000.
  EXPECT_EQ(fp32_to_fp16(2.0f - 0x1p-11f), 0x4000);
}

TEST(Fp16, SubnormalsRoundOnTheFixedGridOfTwoToTheMinus24) {
  EXPECT_EQ(fp32_to_fp16(0x1p-24f), 0x0001);           // the smallest subnormal
  EXPECT_EQ(fp32_to_fp16(0x1p-25f), 0x0000);           // halfway between 0 and 2^-24: even (0)
  EXPECT_EQ(fp32_to_fp16(std::nextafter(0x1p-25f, 1.0f)), 0x0001);
  EXPECT_EQ(fp32_to_fp16(3 * 0x1p-25f), 0x0002);       // halfway between 1 and 2 steps: even (2)
  EXPECT_EQ(fp32_to_fp16(5 * 0x1p-25f), 0x0002);       // halfway between 2 and 3 steps: even (2)
  EXPECT_EQ(fp32_to_fp16(1023 * 0x1p-24f), 0x03ff);    // the largest subnormal
  EXPECT_EQ(fp32_to_fp16(0x1p-14f - 0x1p-25f), 0x0400);  // halfway between 0x03ff and 0x0400: even (0x0400)
  EXPECT_EQ(fp32_to_fp16(-0x1p-24f), 0x8001);
  EXPECT_EQ(fp32_to_fp16(1e-30f), 0x0000);              // far below: zero with the sign kept
  EXPECT_EQ(fp32_to_fp16(-1e-30f), 0x8000);
  EXPECT_EQ(fp32_to_fp16(from_bits(0x00000001u)), 0x0000);  // a float subnormal
}

TEST(Fp16, OverflowGoesToInfinity) {
  EXPECT_EQ(fp32_to_fp16(65519.99f), 0x7bff);  // below the midpoint 65520 between 65504 and 2^16
  EXPECT_EQ(fp32_to_fp16(65520.0f), 0x7c00);   // the midpoint: 65504's mantissa is odd, so it rounds up, to Inf
  EXPECT_EQ(fp32_to_fp16(-65520.0f), 0xfc00);
  EXPECT_EQ(fp32_to_fp16(1e10f), 0x7c00);
  EXPECT_EQ(fp32_to_fp16(std::numeric_limits<float>::max()), 0x7c00);
  EXPECT_EQ(fp32_to_fp16(std::numeric_limits<float>::infinity()), 0x7c00);
  EXPECT_EQ(fp32_to_fp16(-std::numeric_limits<float>::infinity()), 0xfc00);
}

TEST(Fp16, NanBecomesTheQuietNanWithItsSign) {
  EXPECT_EQ(fp32_to_fp16(from_bits(0x7fc00000u)), 0x7e00);
  EXPECT_EQ(fp32_to_fp16(from_bits(0xffc00000u)), 0xfe00);
  EXPECT_EQ(fp32_to_fp16(from_bits(0x7f800001u)), 0x7e00);  // signalling, payload below the half's mantissa
  EXPECT_EQ(fp32_to_fp16(from_bits(0x7fffffffu)), 0x7e00);  // every payload maps to the one quiet NaN
  EXPECT_EQ(fp32_to_fp16(from_bits(0xff812345u)), 0xfe00);
}

TEST(Fp16, AgreesWithAnIndependentRoundingOracle) {
  // Every float in the range where halves live, on a stride that visits all exponents and many mantissas, plus
  // random bit patterns (NaN, Inf, huge, tiny included).
  for (uint32_t u = 0x33000000u; u <= 0x47800000u; u += 0x101u) {
    for (uint32_t s : {0u, 0x80000000u}) {
      const float f = from_bits(u | s);
      ASSERT_EQ(fp32_to_fp16(f), oracle_fp16(f)) << std::hexfloat << f;
    }
  }
  std::mt19937 rng(2026);
  for (int i = 0; i < 300000; ++i) {
    const float f = from_bits(static_cast<uint32_t>(rng()));
    ASSERT_EQ(fp32_to_fp16(f), oracle_fp16(f)) << "bits 0x" << std::hex << bits_of(f);
  }
  // Exact ties: the midpoint between every pair of adjacent halves.
  for (uint16_t h = 0; h < 0x7bff; ++h) {
    const float mid = static_cast<float>((half_value(h) + half_value(h + 1)) / 2);  // exact in float
    ASSERT_EQ(fp32_to_fp16(mid), h % 2 == 0 ? h : h + 1) << "midpoint above half 0x" << std::hex << h;
  }
}

TEST(Fp16, EveryHalfConvertsToItsValueAndBack) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const uint16_t half = static_cast<uint16_t>(h);
    const float f = fp16_to_fp32(half);
    const int exp = (h >> 10) & 0x1f;
    if (exp == 0x1f && (h & 0x3ff) != 0) {
      // NaN: sign and payload kept, and a signalling NaN comes back quiet (as GGML's conversion does on x86).
      EXPECT_EQ(bits_of(f), ((h & 0x8000u) << 16) | 0x7f800000u | ((h & 0x3ffu) << 13) | 0x00400000u)
          << std::hex << h;
      continue;
    }
    if (exp == 0x1f) {
      EXPECT_EQ(f, (h & 0x8000) ? -std::numeric_limits<float>::infinity() : std::numeric_limits<float>::infinity());
    } else {
      EXPECT_EQ(static_cast<double>(f), half_value(half)) << std::hex << h;
      EXPECT_EQ(std::signbit(f), (h & 0x8000) != 0) << std::hex << h;
    }
    EXPECT_EQ(fp32_to_fp16(f), half) << "half 0x" << std::hex << h << " does not round-trip";
  }
}

TEST(Bf16, HandDerivedValues) {
  EXPECT_EQ(fp32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(fp32_to_bf16(-2.0f), 0xc000);
  EXPECT_EQ(fp32_to_bf16(3.140625f), 0x4049);  // 1.5703125 * 2: mantissa 0x49 exactly
  EXPECT_EQ(bf16_to_fp32(0x4049), 3.140625f);
  EXPECT_EQ(fp32_to_bf16(-0.0f), 0x8000);
}

TEST(Bf16, RoundsToNearestEvenAtTies) {
  EXPECT_EQ(fp32_to_bf16(from_bits(0x3f808000u)), 0x3f80);  // halfway between 0x3f80 and 0x3f81: even
  EXPECT_EQ(fp32_to_bf16(from_bits(0x3f818000u)), 0x3f82);  // halfway between 0x3f81 and 0x3f82: even
  EXPECT_EQ(fp32_to_bf16(from_bits(0x3f808001u)), 0x3f81);  // just above the tie
  EXPECT_EQ(fp32_to_bf16(from_bits(0x3f807fffu)), 0x3f80);  // just below
  EXPECT_EQ(fp32_to_bf16(from_bits(0x3fff8000u)), 0x4000);  // tie that carries into the exponent
}

TEST(Bf16, SubnormalsOverflowAndSpecials) {
  EXPECT_EQ(fp32_to_bf16(from_bits(0x00010000u)), 0x0001);  // a float subnormal that is exactly a bf16
  EXPECT_EQ(fp32_to_bf16(from_bits(0x00008000u)), 0x0000);  // tie between 0 and 0x0001: even
  EXPECT_EQ(fp32_to_bf16(from_bits(0x00018000u)), 0x0002);  // tie between 0x0001 and 0x0002: even
  EXPECT_EQ(fp32_to_bf16(from_bits(0x7f7f7fffu)), 0x7f7f);  // below the midpoint to "2^128": the largest bf16
  EXPECT_EQ(fp32_to_bf16(from_bits(0x7f7f8000u)), 0x7f80);  // the midpoint, odd mantissa: rounds to Inf
  EXPECT_EQ(fp32_to_bf16(std::numeric_limits<float>::max()), 0x7f80);
  EXPECT_EQ(fp32_to_bf16(-std::numeric_limits<float>::max()), 0xff80);
  EXPECT_EQ(fp32_to_bf16(std::numeric_limits<float>::infinity()), 0x7f80);
  EXPECT_EQ(fp32_to_bf16(-std::numeric_limits<float>::infinity()), 0xff80);
}

TEST(Bf16, NanKeepsSignAndHighPayloadAndIsForcedQuiet) {
  EXPECT_EQ(fp32_to_bf16(from_bits(0x7fc00000u)), 0x7fc0);
  EXPECT_EQ(fp32_to_bf16(from_bits(0x7f800001u)), 0x7fc0);  // signalling, payload only in the low half: not Inf
  EXPECT_EQ(fp32_to_bf16(from_bits(0xff800001u)), 0xffc0);
  EXPECT_EQ(fp32_to_bf16(from_bits(0x7fa00000u)), 0x7fe0);  // payload bit 21 kept, quiet bit 22 set
  EXPECT_EQ(fp32_to_bf16(from_bits(0x7fffffffu)), 0x7fff);  // no carry out of a NaN
}

TEST(Bf16, AgreesWithAnIndependentRoundingOracle) {
  std::mt19937 rng(2027);
  for (int i = 0; i < 300000; ++i) {
    const float f = from_bits(static_cast<uint32_t>(rng()));
    ASSERT_EQ(fp32_to_bf16(f), oracle_bf16(f)) << "bits 0x" << std::hex << bits_of(f);
  }
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = bf16_to_fp32(static_cast<uint16_t>(h));
    ASSERT_EQ(bits_of(f), h << 16);  // bf16 is the high half of a float, exactly
    if (!std::isnan(f)) {
      ASSERT_EQ(fp32_to_bf16(f), h);
    }
    // The midpoint to the next bf16 rounds to the even one of the two.
    if ((h & 0x7f80u) != 0x7f80u) {
      const float mid = from_bits((h << 16) | 0x8000u);
      ASSERT_EQ(fp32_to_bf16(mid), (h % 2 == 0) ? h : h + 1) << std::hex << h;
    }
  }
}

}  // namespace
}  // namespace kvflash
