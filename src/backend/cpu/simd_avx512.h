// The AVX-512 flavour's vector type (16 floats) and block dequantizers. Only kernels_avx512.cpp includes this
// file; it is compiled with -mavx512f -mavx512bw -mavx512vl (plus AVX2/FMA/F16C), and everything here lives in
// namespace avx512 so that no inline function compiled with those flags leaks to code for other CPUs.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "format/blocks.h"

namespace kvflash::cpu::avx512 {

struct Simd {
  static constexpr int W = 16;
  using F = __m512;

  static F zero() { return _mm512_setzero_ps(); }
  static F set1(float a) { return _mm512_set1_ps(a); }
  static F load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, F a) { _mm512_storeu_ps(p, a); }
  static F add(F a, F b) { return _mm512_add_ps(a, b); }
  static F sub(F a, F b) { return _mm512_sub_ps(a, b); }
  static F mul(F a, F b) { return _mm512_mul_ps(a, b); }
  static F fmadd(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
  static F max(F a, F b) { return _mm512_max_ps(a, b); }
  static float hsum(F a) {
    const __m256 s8 =
        _mm256_add_ps(_mm512_castps512_ps256(a), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static float hmax(F a) {
    const __m256 s8 =
        _mm256_max_ps(_mm512_castps512_ps256(a), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)));
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static void hsum4(F a, F b, F c, F d, float* out) {
    const auto half = [](F x) {
      return _mm256_add_ps(_mm512_castps512_ps256(x), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1)));
    };
    const __m256 abcd = _mm256_hadd_ps(_mm256_hadd_ps(half(a), half(b)), _mm256_hadd_ps(half(c), half(d)));
    _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1)));
  }
  static F pin(F a) {
    __asm__("" : "+v"(a));
    return a;
  }
  static F iota(float base) {
    return _mm512_add_ps(_mm512_set1_ps(base), _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
  }

  /// e^x for x <= 0; -inf and anything below -87 give exactly 0. Same method as the AVX2 flavour.
  static F exp_nonpositive(F x) {
    const F floor = _mm512_set1_ps(-87.0f);
    const __mmask16 keep = _mm512_cmp_ps_mask(x, floor, _CMP_GE_OQ);
    x = _mm512_max_ps(x, floor);
    const F n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    F r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    F p = _mm512_set1_ps(1.0f / 5040.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_maskz_mov_ps(keep, _mm512_scalef_ps(p, n));
  }
  static F tanh(F x) {
    const __m512i sign_bit = _mm512_set1_epi32(static_cast<int>(0x80000000u));
    const __m512i xi = _mm512_castps_si512(x);
    const F ax = _mm512_castsi512_ps(_mm512_andnot_si512(sign_bit, xi));
    const F t = exp_nonpositive(_mm512_mul_ps(ax, _mm512_set1_ps(-2.0f)));
    const F one = _mm512_set1_ps(1.0f);
    const F th = _mm512_div_ps(_mm512_sub_ps(one, t), _mm512_add_ps(one, t));
    return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(th), _mm512_and_si512(sign_bit, xi)));
  }

  static F load_f16(const uint16_t* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static F load_bf16(const uint16_t* p) {
    const __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
  }
  static float half_to_float(uint16_t h) { return _cvtsh_ss(h); }

  // ---- block dequantizers: stored bytes -> floats (turbo: rotated domain, centroid * norm) ----

  static void dequant_block(const format::BlockQ8_0& b, float* dst) {
    const F d = set1(half_to_float(b.d));
    for (int k = 0; k < 2; ++k) {
      const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.qs + 16 * k));
      store(dst + 16 * k, mul(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)), d));
    }
  }
  // Values 0..15 (low nibbles) and 16..31 (high nibbles) of a q4/q5 block as 32-bit lanes.
  static void nibbles(const uint8_t qs[16], __m512i* lo, __m512i* hi) {
    const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
    const __m128i m4 = _mm_set1_epi8(0x0f);
    *lo = _mm512_cvtepu8_epi32(_mm_and_si128(bytes, m4));
    *hi = _mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(bytes, 4), m4));
  }
  static void store_block(__m512i lo, __m512i hi, int offset, F d, const F* m, float* dst) {
    const __m512i off = _mm512_set1_epi32(offset);
    const F a = _mm512_cvtepi32_ps(_mm512_sub_epi32(lo, off));
    const F b = _mm512_cvtepi32_ps(_mm512_sub_epi32(hi, off));
    store(dst, m ? fmadd(a, d, *m) : mul(a, d));
    store(dst + 16, m ? fmadd(b, d, *m) : mul(b, d));
  }
  static void dequant_block(const format::BlockQ4_0& b, float* dst) {
    __m512i lo, hi;
    nibbles(b.qs, &lo, &hi);
    store_block(lo, hi, 8, set1(half_to_float(b.d)), nullptr, dst);
  }
  static void dequant_block(const format::BlockQ4_1& b, float* dst) {
    __m512i lo, hi;
    nibbles(b.qs, &lo, &hi);
    const F m = set1(half_to_float(b.m));
    store_block(lo, hi, 0, set1(half_to_float(b.d)), &m, dst);
  }
  // Adds the 5th bit (bit j of qh for value j) as 16.
  static void add_q5_high(const uint8_t qh[4], __m512i* lo, __m512i* hi) {
    uint32_t bits;
    std::memcpy(&bits, qh, 4);
    const __m512i sixteen = _mm512_set1_epi32(16);
    *lo = _mm512_mask_or_epi32(*lo, static_cast<__mmask16>(bits & 0xffffu), *lo, sixteen);
    *hi = _mm512_mask_or_epi32(*hi, static_cast<__mmask16>(bits >> 16), *hi, sixteen);
  }
  static void dequant_block(const format::BlockQ5_0& b, float* dst) {
    __m512i lo, hi;
    nibbles(b.qs, &lo, &hi);
    add_q5_high(b.qh, &lo, &hi);
    store_block(lo, hi, 16, set1(half_to_float(b.d)), nullptr, dst);
  }
  static void dequant_block(const format::BlockQ5_1& b, float* dst) {
    __m512i lo, hi;
    nibbles(b.qs, &lo, &hi);
    add_q5_high(b.qh, &lo, &hi);
    const F m = set1(half_to_float(b.m));
    store_block(lo, hi, 0, set1(half_to_float(b.d)), &m, dst);
  }

  // Turbo: the 2-bit low indices of values 16c..16c+15 are the 32 bits qs[4c..4c+3].
  static __m512i turbo_low2(const uint8_t* qs, int c) {
    uint32_t word;
    std::memcpy(&word, qs + 4 * c, 4);
    const __m512i shift = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    return _mm512_and_si512(_mm512_srlv_epi32(_mm512_set1_epi32(static_cast<int>(word)), shift), _mm512_set1_epi32(3));
  }
  static void dequant_block(const format::BlockTurbo2& b, float* dst) {
    const F table = mul(_mm512_castps128_ps512(_mm_loadu_ps(format::kTurbo2Centroids)), set1(half_to_float(b.norm)));
    for (int c = 0; c < 8; ++c) store(dst + 16 * c, _mm512_permutexvar_ps(turbo_low2(b.qs, c), table));
  }
  static void dequant_block(const format::BlockTurbo3& b, float* dst) {
    const F table = mul(_mm512_castps256_ps512(_mm256_loadu_ps(format::kTurbo3Centroids)), set1(half_to_float(b.norm)));
    const __m512i four = _mm512_set1_epi32(4);
    for (int c = 0; c < 8; ++c) {
      const __mmask16 high = static_cast<__mmask16>(b.signs[2 * c] | b.signs[2 * c + 1] << 8);
      const __m512i low = turbo_low2(b.qs, c);
      const __m512i idx = _mm512_mask_or_epi32(low, high, low, four);
      store(dst + 16 * c, _mm512_permutexvar_ps(idx, table));
    }
  }
  static void dequant_block(const format::BlockTurbo4& b, float* dst) {
    const F table = mul(_mm512_loadu_ps(format::kTurbo4Centroids), set1(half_to_float(b.norm)));
    const __m512i shift = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20, 24, 28);
    for (int c = 0; c < 8; ++c) {
      uint32_t words[2];
      std::memcpy(words, b.qs + 8 * c, 8);
      const __m512i both = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi32(static_cast<int>(words[0]))),
                                              _mm256_set1_epi32(static_cast<int>(words[1])), 1);
      const __m512i idx = _mm512_and_si512(_mm512_srlv_epi32(both, shift), _mm512_set1_epi32(15));
      store(dst + 16 * c, _mm512_permutexvar_ps(idx, table));
    }
  }
};

}  // namespace kvflash::cpu::avx512
