// Scores against K stored as q8_0 or q4_0 in integer arithmetic: each Q row of a task is quantized once to int8 per
// 32-value block (q ~= d_q * i, |i| <= 127, d_q = max|q| / 127), and a score is the sum over blocks of
// d_q * d_k * <i_q, i_k>, the inner product exact in int32. Against dequantizing K into a float tile this drops the
// per-value conversions, the tile's store and reload, and does the multiplies in 8-bit lanes (32 per instruction
// instead of 8). The price is Q's rounding to 8 bits (relative error <= 1/254 of each block's largest value), which
// GGML's CPU path also pays; tests/backend/cpu hold the result to the NMSE <= 5e-4.
//
// Part of an instruction-set flavour: include it after simd_<isa>.h with KVFLASH_CPU_ISA_NS defined. The AVX2 and
// AVX-512 flavours both use the 256-bit AVX2 form (maddubs + madd); the AVX-512 VNNI form (vpdpbusd) would need a
// flavour compiled with -mavx512vnni and a runtime check, which this build does not have.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "backend/cpu/kernel_job.h"
#include "format/blocks.h"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#ifndef KVFLASH_CPU_ISA_NS
#error "define KVFLASH_CPU_ISA_NS and include the flavour's simd header first"
#endif

namespace kvflash::cpu::KVFLASH_CPU_ISA_NS {
namespace {

inline constexpr int64_t kIntBlock = 32;  // values per q8_0 / q4_0 block, and per Q scale

#if defined(__AVX2__)
// 8 float partial sums per (row, key); a K block held as its magnitudes (unsigned) and its values (for the signs):
// maddubs multiplies unsigned by signed bytes, so |k| * (q with k's sign) = k * q, exact even for k = -128.
struct Int8Dot {
  using Acc = __m256;
  struct KBlock {
    __m256i magnitude, value;
  };
  static Acc zero() { return _mm256_setzero_ps(); }
  static Acc splat(float x) { return _mm256_set1_ps(x); }
  static Acc mul(Acc a, Acc b) { return _mm256_mul_ps(a, b); }
  static KBlock k_block(const format::BlockQ8_0& b) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs));
    return {_mm256_abs_epi8(v), v};
  }
  static KBlock k_block(const format::BlockQ4_0& b) {
    // value j in the low nibble of qs[j], value j + 16 in the high one: the low 16 bytes, then the high nibbles.
    const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.qs));
    const __m256i nibbles = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(x, 4), x), _mm256_set1_epi8(15));
    const __m256i v = _mm256_sub_epi8(nibbles, _mm256_set1_epi8(8));
    return {_mm256_abs_epi8(v), v};
  }
  /// acc + scale * (the int32 sums of q[4j..4j+3] * k[4j..4j+3], lane j).
  static Acc dot(const int8_t* q, const KBlock& k, Acc scale, Acc acc) {
    const __m256i qv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q));
    const __m256i pairs = _mm256_maddubs_epi16(k.magnitude, _mm256_sign_epi8(qv, k.value));  // |sum| <= 32512
    const __m256i quads = _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(quads), scale, acc);
  }
  /// out[0..3] = the sums of a, b, c, d.
  static void hsum4(Acc a, Acc b, Acc c, Acc d, float* out) {
    const __m256 abcd = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
    _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1)));
  }
  static float hsum(Acc a) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
};
#else
// The same arithmetic in plain C++ (same lanes, so the flavours agree to float rounding).
struct Int8Dot {
  struct Acc {
    float x[8];
  };
  struct KBlock {
    int8_t value[32];
  };
  static Acc zero() { return Acc{}; }
  static Acc splat(float x) {
    Acc a;
    for (float& v : a.x) v = x;
    return a;
  }
  static Acc mul(Acc a, Acc b) {
    for (int i = 0; i < 8; ++i) a.x[i] *= b.x[i];
    return a;
  }
  static KBlock k_block(const format::BlockQ8_0& b) {
    KBlock k;
    std::memcpy(k.value, b.qs, 32);
    return k;
  }
  static KBlock k_block(const format::BlockQ4_0& b) {
    KBlock k;
    for (int j = 0; j < 16; ++j) {
      k.value[j] = static_cast<int8_t>((b.qs[j] & 15) - 8);
      k.value[j + 16] = static_cast<int8_t>((b.qs[j] >> 4) - 8);
    }
    return k;
  }
  static Acc dot(const int8_t* q, const KBlock& k, Acc scale, Acc acc) {
    for (int lane = 0; lane < 8; ++lane) {
      int32_t sum = 0;
      for (int j = 4 * lane; j < 4 * lane + 4; ++j) sum += int32_t{q[j]} * int32_t{k.value[j]};
      acc.x[lane] += static_cast<float>(sum) * scale.x[lane];
    }
    return acc;
  }
  static float hsum(Acc a) {
    float s = 0.0f;
    for (float x : a.x) s += x;
    return s;
  }
  static void hsum4(Acc a, Acc b, Acc c, Acc d, float* out) {
    out[0] = hsum(a);
    out[1] = hsum(b);
    out[2] = hsum(c);
    out[3] = hsum(d);
  }
};
#endif

/// Quantizes the first n_blocks * 32 values of n_rows float rows (q_stride apart) to int8: row r's block b goes to
/// q_i8 + (r * n_blocks + b) * 32, its scale to q_scale[r * n_blocks + b]. A NaN in a block makes its scale NaN,
/// so it reaches the scores as it would in float.
inline void quantize_q_rows(const float* q, int64_t q_stride, int64_t n_rows, int64_t n_blocks, int8_t* q_i8,
                            float* q_scale) {
  for (int64_t r = 0; r < n_rows; ++r) {
    for (int64_t b = 0; b < n_blocks; ++b) {
      const float* x = q + r * q_stride + b * kIntBlock;
      float amax = 0.0f;
      for (int64_t j = 0; j < kIntBlock; ++j) {
        const float a = std::fabs(x[j]);
        amax = a > amax || a != a ? a : amax;
      }
      const float d = amax / 127.0f;
      const float inverse = d > 0.0f ? 1.0f / d : 0.0f;
      int8_t* out = q_i8 + (r * n_blocks + b) * kIntBlock;
      for (int64_t j = 0; j < kIntBlock; ++j) {
        const float v = std::nearbyint(x[j] * inverse);
        out[j] = static_cast<int8_t>(v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v == v ? v : 0.0f);
      }
      q_scale[r * n_blocks + b] = d;
    }
  }
}

// s[r][t] for Rows rows x Keys keys: every K block is loaded (and its magnitudes taken) once for the Rows rows.
// 4 x 2 accumulators + 2 K blocks (4 registers) + Q and temporaries fill the 16 AVX2 registers.
template <class Block, int Rows, int Keys>
inline void int_dot_block(const int8_t* q_i8, const float* q_scale, int64_t n_blocks, const void* const* k,
                          float* s) {
  using Acc = Int8Dot::Acc;
  Acc acc[Rows][Keys];
  for (int r = 0; r < Rows; ++r)
    for (int t = 0; t < Keys; ++t) acc[r][t] = Int8Dot::zero();
  for (int64_t b = 0; b < n_blocks; ++b) {
    Int8Dot::KBlock kb[Keys];
    Acc dk[Keys];  // splat once per K block, shared by the rows
    for (int t = 0; t < Keys; ++t) {
      const Block& block = static_cast<const Block*>(k[t])[b];
      kb[t] = Int8Dot::k_block(block);
      dk[t] = Int8Dot::splat(Simd::half_to_float(block.d));
    }
    for (int r = 0; r < Rows; ++r) {
      const int8_t* qb = q_i8 + (r * n_blocks + b) * kIntBlock;
      const Acc dq = Int8Dot::splat(q_scale[r * n_blocks + b]);
      for (int t = 0; t < Keys; ++t) acc[r][t] = Int8Dot::dot(qb, kb[t], Int8Dot::mul(dq, dk[t]), acc[r][t]);
    }
  }
  if constexpr (Rows == 4) {  // the 4 rows of a key reduce together
    alignas(16) float sums[4];
    for (int t = 0; t < Keys; ++t) {
      Int8Dot::hsum4(acc[0][t], acc[1][t], acc[2][t], acc[3][t], sums);
      for (int r = 0; r < 4; ++r) s[r * kKeyTile + t] = sums[r];
    }
  } else {
    for (int r = 0; r < Rows; ++r)
      for (int t = 0; t < Keys; ++t) s[r * kKeyTile + t] = Int8Dot::hsum(acc[r][t]);
  }
}

template <class Block, int Rows>
inline void int_dot_rows(const int8_t* q_i8, const float* q_scale, int64_t n_blocks, const void* const* k,
                         int n_keys, float* s) {
  int t = 0;
  for (; t + 2 <= n_keys; t += 2) int_dot_block<Block, Rows, 2>(q_i8, q_scale, n_blocks, k + t, s + t);
  if (t < n_keys) int_dot_block<Block, Rows, 1>(q_i8, q_scale, n_blocks, k + t, s + t);
}

/// Scores of n_rows quantized Q rows (quantize_q_rows' layout) against n_keys K rows of `Block`s in place.
template <class Block>
void tile_scores_int(const int8_t* q_i8, const float* q_scale, int64_t n_blocks, int64_t n_rows,
                     const void* const* k, int n_keys, float* s) {
  int64_t r = 0;
  const auto rows_at = [&](int64_t row) { return q_i8 + row * n_blocks * kIntBlock; };
  for (; r + 4 <= n_rows; r += 4) {
    int_dot_rows<Block, 4>(rows_at(r), q_scale + r * n_blocks, n_blocks, k, n_keys, s + r * kKeyTile);
  }
  switch (n_rows - r) {
    case 3:
      int_dot_rows<Block, 3>(rows_at(r), q_scale + r * n_blocks, n_blocks, k, n_keys, s + r * kKeyTile);
      break;
    case 2:
      int_dot_rows<Block, 2>(rows_at(r), q_scale + r * n_blocks, n_blocks, k, n_keys, s + r * kKeyTile);
      break;
    case 1:
      int_dot_rows<Block, 1>(rows_at(r), q_scale + r * n_blocks, n_blocks, k, n_keys, s + r * kKeyTile);
      break;
    default:
      break;
  }
}

}  // namespace
}  // namespace kvflash::cpu::KVFLASH_CPU_ISA_NS
