// The AVX2 flavour's vector type (8 floats) and block dequantizers. Only kernels_avx2.cpp includes this file; it
// is compiled with -mavx2 -mfma -mf16c, and everything here lives in namespace avx2 so that no inline function
// compiled with those flags can be picked by the linker for code that runs on a CPU without them.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "format/blocks.h"

namespace kvflash::cpu::avx2 {

struct Simd {
  static constexpr int W = 8;
  using F = __m256;

  static F zero() { return _mm256_setzero_ps(); }
  static F set1(float a) { return _mm256_set1_ps(a); }
  static F load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, F a) { _mm256_storeu_ps(p, a); }
  static F add(F a, F b) { return _mm256_add_ps(a, b); }
  static F sub(F a, F b) { return _mm256_sub_ps(a, b); }
  static F mul(F a, F b) { return _mm256_mul_ps(a, b); }
  static F fmadd(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
  static F max(F a, F b) { return _mm256_max_ps(a, b); }
  static float hsum(F a) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static float hmax(F a) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  /// out[0..3] = the sums of a, b, c, d.
  static void hsum4(F a, F b, F c, F d, float* out) {
    const __m256 abcd = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
    _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1)));
  }
  /// Keeps a loaded value in a register: GCC otherwise folds the load into every FMA that uses it, and the
  /// repeated loads, not the FMAs, then bound the dot products.
  static F pin(F a) {
    __asm__("" : "+x"(a));
    return a;
  }
  static F iota(float base) { return _mm256_add_ps(_mm256_set1_ps(base), _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7)); }

  /// e^x for x <= 0 (relative error ~1e-7); -inf and anything below -87 give exactly 0.
  /// x = n ln2 + r with |r| <= ln2/2, e^r by its Taylor series to degree 7 (truncation < 6e-9), times 2^n.
  static F exp_nonpositive(F x) {
    const F floor = _mm256_set1_ps(-87.0f);
    const F keep = _mm256_cmp_ps(x, floor, _CMP_GE_OQ);
    x = _mm256_max_ps(x, floor);
    const F n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    // ln2 split into a part exact in float times small n, and the rest.
    F r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    F p = _mm256_set1_ps(1.0f / 5040.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_and_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(bits)), keep);
  }
  /// tanh(x) = sign(x) (1 - t) / (1 + t) with t = e^(-2|x|).
  static F tanh(F x) {
    const F sign_bit = _mm256_set1_ps(-0.0f);
    const F ax = _mm256_andnot_ps(sign_bit, x);
    const F t = exp_nonpositive(_mm256_mul_ps(ax, _mm256_set1_ps(-2.0f)));
    const F one = _mm256_set1_ps(1.0f);
    const F th = _mm256_div_ps(_mm256_sub_ps(one, t), _mm256_add_ps(one, t));
    return _mm256_or_ps(th, _mm256_and_ps(sign_bit, x));
  }

  static F load_f16(const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
  static F load_bf16(const uint16_t* p) {
    const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
  }
  static float half_to_float(uint16_t h) { return _cvtsh_ss(h); }

  // ---- block dequantizers: stored bytes -> floats (turbo: rotated domain, centroid * norm) ----

  static void dequant_block(const format::BlockQ8_0& b, float* dst) {
    const F d = set1(half_to_float(b.d));
    for (int k = 0; k < 4; ++k) {
      const __m128i q = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(b.qs + 8 * k));
      store(dst + 8 * k, mul(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), d));
    }
  }
  // q4/q5 blocks: 8 bytes of qs widened to 32-bit lanes hold values j (low nibble) and j + 16 (high nibble) of
  // j = 8c .. 8c + 7; value = (nibble | fifth bit) * d + offset, with offset = -8d, -16d or the block's m (the
  // FMA rounds (q - 8) * d once, exactly as q * d - 8 * d would be rounded: the products are exact).
  template <bool HasHigh>
  static void store_nibbles(const uint8_t qs[16], uint32_t high, F d, F offset, float* dst) {
    const __m256i low_mask = _mm256_set1_epi32(15);
    const __m256i bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    for (int c = 0; c < 2; ++c) {
      const __m256i w = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(qs + 8 * c)));
      __m256i lo = _mm256_and_si256(w, low_mask);
      __m256i hi = _mm256_srli_epi32(w, 4);
      if constexpr (HasHigh) {
        // bit j of `high` is the fifth bit of value j: 16 where set.
        const __m256i lo_bits = _mm256_set1_epi32(static_cast<int>((high >> (8 * c)) & 0xffu));
        const __m256i hi_bits = _mm256_set1_epi32(static_cast<int>((high >> (16 + 8 * c)) & 0xffu));
        lo = _mm256_or_si256(
            lo, _mm256_slli_epi32(_mm256_min_epu32(_mm256_and_si256(lo_bits, bit), _mm256_set1_epi32(1)), 4));
        hi = _mm256_or_si256(
            hi, _mm256_slli_epi32(_mm256_min_epu32(_mm256_and_si256(hi_bits, bit), _mm256_set1_epi32(1)), 4));
      }
      store(dst + 8 * c, fmadd(_mm256_cvtepi32_ps(lo), d, offset));
      store(dst + 16 + 8 * c, fmadd(_mm256_cvtepi32_ps(hi), d, offset));
    }
  }
  static void dequant_block(const format::BlockQ4_0& b, float* dst) {
    const float d = half_to_float(b.d);
    store_nibbles<false>(b.qs, 0, set1(d), set1(-8.0f * d), dst);
  }
  static void dequant_block(const format::BlockQ4_1& b, float* dst) {
    store_nibbles<false>(b.qs, 0, set1(half_to_float(b.d)), set1(half_to_float(b.m)), dst);
  }
  static void dequant_block(const format::BlockQ5_0& b, float* dst) {
    uint32_t high;
    std::memcpy(&high, b.qh, 4);
    const float d = half_to_float(b.d);
    store_nibbles<true>(b.qs, high, set1(d), set1(-16.0f * d), dst);
  }
  static void dequant_block(const format::BlockQ5_1& b, float* dst) {
    uint32_t high;
    std::memcpy(&high, b.qh, 4);
    store_nibbles<true>(b.qs, high, set1(half_to_float(b.d)), set1(half_to_float(b.m)), dst);
  }

  // Turbo: the 2-bit low indices of values 8c..8c+7 are the 16 bits at qs[2c]: broadcast as a word, shifted per
  // lane. The centroid table is scaled by the block's norm once, so a value is one permute.
  static __m256i turbo_low2(const uint8_t* qs, int c) {
    uint16_t bits;
    std::memcpy(&bits, qs + 2 * c, 2);
    return _mm256_and_si256(
        _mm256_srlv_epi32(_mm256_set1_epi16(static_cast<short>(bits)), _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14)),
        _mm256_set1_epi32(3));
  }
  static void dequant_block(const format::BlockTurbo2& b, float* dst) {
    alignas(32) static constexpr float kTable[8] = {format::kTurbo2Centroids[0],
                                                    format::kTurbo2Centroids[1],
                                                    format::kTurbo2Centroids[2],
                                                    format::kTurbo2Centroids[3],
                                                    0.0f,
                                                    0.0f,
                                                    0.0f,
                                                    0.0f};
    const F table = mul(_mm256_load_ps(kTable), set1(half_to_float(b.norm)));
    for (int c = 0; c < 16; ++c) store(dst + 8 * c, _mm256_permutevar8x32_ps(table, turbo_low2(b.qs, c)));
  }
  static void dequant_block(const format::BlockTurbo3& b, float* dst) {
    const F table = mul(_mm256_loadu_ps(format::kTurbo3Centroids), set1(half_to_float(b.norm)));
    // bit k of signs[c] is the third index bit of value 8c + k: moved to bit 2 of lane k.
    const __m256i to_bit2 = _mm256_setr_epi32(2, 1, 0, 0, 0, 0, 0, 0);
    const __m256i from_bit = _mm256_setr_epi32(0, 0, 0, 1, 2, 3, 4, 5);
    const __m256i four = _mm256_set1_epi32(4);
    for (int c = 0; c < 16; ++c) {
      const __m256i sign = _mm256_set1_epi32(b.signs[c]);
      const __m256i third = _mm256_and_si256(_mm256_srlv_epi32(_mm256_sllv_epi32(sign, to_bit2), from_bit), four);
      const __m256i idx = _mm256_or_si256(turbo_low2(b.qs, c), third);
      store(dst + 8 * c, _mm256_permutevar8x32_ps(table, idx));
    }
  }
  static void dequant_block(const format::BlockTurbo4& b, float* dst) {
    const F norm = set1(half_to_float(b.norm));
    const F lo_table = mul(_mm256_loadu_ps(format::kTurbo4Centroids), norm);
    const F hi_table = mul(_mm256_loadu_ps(format::kTurbo4Centroids + 8), norm);
    const __m256i nibble_shift = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
    for (int c = 0; c < 16; ++c) {
      uint32_t word;
      std::memcpy(&word, b.qs + 4 * c, 4);
      const __m256i idx = _mm256_srlv_epi32(_mm256_set1_epi32(static_cast<int>(word)), nibble_shift);
      // permutevar reads the low 3 bits; bit 3 (moved to the sign bit) picks the upper half of the table.
      const F value = _mm256_blendv_ps(_mm256_permutevar8x32_ps(lo_table, idx), _mm256_permutevar8x32_ps(hi_table, idx),
                                       _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
      store(dst + 8 * c, value);
    }
  }
};

}  // namespace kvflash::cpu::avx2
