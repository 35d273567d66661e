// The arithmetic of one key tile, for every query row of a task: the scores (Q K^T), the online softmax, and the
// accumulation of P V. Rows are given as pointers and read through an element policy, so a dequantized tile and
// f16/bf16/f32 cache rows read in place share the same loops.
//
// Part of an instruction-set flavour: include it after simd_<isa>.h with KVFLASH_CPU_ISA_NS defined.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "backend/cpu/kernel_job.h"
#include "backend/cpu/score_variant.h"

#ifndef KVFLASH_CPU_ISA_NS
#error "define KVFLASH_CPU_ISA_NS and include the flavour's simd header first"
#endif

namespace kvflash::cpu::KVFLASH_CPU_ISA_NS {
namespace {

// Where a tile's rows live and how W of their values load: float rows (a dequantized tile, or an f32 cache read in
// place), or f16 / bf16 cache rows read in place, converted in registers, never copied.
struct FloatElems {
  static F load(const void* row, int64_t e) { return Simd::load(static_cast<const float*>(row) + e); }
};
struct HalfElems {
  static F load(const void* row, int64_t e) { return Simd::load_f16(static_cast<const uint16_t*>(row) + e); }
};
struct BfloatElems {
  static F load(const void* row, int64_t e) { return Simd::load_bf16(static_cast<const uint16_t*>(row) + e); }
};

// ---------------------------------------------------------------------------------------------------------------
// Scores: s[r][t] = <q_r, k_t> over a tile, in blocks of rows x keys that share their loads. q rows are q_stride
// floats apart; dim is a multiple of W.

template <class Elems, int Rows, int Keys>
inline void dot_block(const float* q, int64_t q_stride, const void* const* k, int64_t dim, float* s) {
  F acc[Rows][Keys];
  for (int r = 0; r < Rows; ++r)
    for (int t = 0; t < Keys; ++t) acc[r][t] = Simd::zero();
  for (int64_t c = 0; c < dim; c += W) {
    F kv[Keys];
    for (int t = 0; t < Keys; ++t) kv[t] = Simd::pin(Elems::load(k[t], c));
    for (int r = 0; r < Rows; ++r) {
      const F qv = Simd::pin(Simd::load(q + r * q_stride + c));
      for (int t = 0; t < Keys; ++t) acc[r][t] = Simd::fmadd(qv, kv[t], acc[r][t]);
    }
  }
  if constexpr (Rows == 4) {  // the 4 rows of a key reduce together
    alignas(16) float sums[4];
    for (int t = 0; t < Keys; ++t) {
      Simd::hsum4(acc[0][t], acc[1][t], acc[2][t], acc[3][t], sums);
      for (int r = 0; r < 4; ++r) s[r * kKeyTile + t] = sums[r];
    }
  } else {
    for (int r = 0; r < Rows; ++r)
      for (int t = 0; t < Keys; ++t) s[r * kKeyTile + t] = Simd::hsum(acc[r][t]);
  }
}

// 4 rows x 3 keys: 12 independent FMA chains (a Zen 2 / Skylake core needs ~10 to keep both FMA pipes busy) plus
// 3 key vectors and a query vector: all 16 AVX2 registers. Each key chunk is loaded once for the 4 rows.
// Splits n units into blocks of 3, ending on 2 + 2 rather than 3 + 1 (a block of one has too few chains).
inline int next_block(int64_t remaining) { return remaining >= 5 || remaining == 3 ? 3 : remaining >= 2 ? 2 : 1; }

template <class Elems, int Rows>
inline void dot_rows(const float* q, int64_t q_stride, const void* const* k, int n_keys, int64_t dim, float* s) {
  if constexpr (Rows == 4) {
    for (int t = 0; t < n_keys;) {
      switch (next_block(n_keys - t)) {
        case 3:
          dot_block<Elems, 4, 3>(q, q_stride, k + t, dim, s + t), t += 3;
          break;
        case 2:
          dot_block<Elems, 4, 2>(q, q_stride, k + t, dim, s + t), t += 2;
          break;
        default:
          dot_block<Elems, 4, 1>(q, q_stride, k + t, dim, s + t), t += 1;
          break;
      }
    }
  } else {
    int t = 0;
    for (; t + 4 <= n_keys; t += 4) dot_block<Elems, Rows, 4>(q, q_stride, k + t, dim, s + t);
    for (; t < n_keys; ++t) dot_block<Elems, Rows, 1>(q, q_stride, k + t, dim, s + t);
  }
}

template <class Elems>
void tile_scores(const float* q, int64_t q_stride, int64_t n_rows, const void* const* k, int n_keys, int64_t dim,
                 float* s) {
  int64_t r = 0;
  for (; r + 4 <= n_rows; r += 4) dot_rows<Elems, 4>(q + r * q_stride, q_stride, k, n_keys, dim, s + r * kKeyTile);
  for (; r < n_rows; ++r) dot_rows<Elems, 1>(q + r * q_stride, q_stride, k, n_keys, dim, s + r * kKeyTile);
}

// ---------------------------------------------------------------------------------------------------------------
// Online softmax over one row's tile: turns scores into probabilities relative to the new running max, updates
// the running sum, and returns the factor the row's accumulator must be scaled by.

float softmax_tile(float* s, float* m, float* l) {
  F vmax = Simd::load(s);
  for (int c = W; c < kKeyTile; c += W) vmax = Simd::max(vmax, Simd::load(s + c));
  const float tile_max = Simd::hmax(vmax);
  const float m_new = tile_max > *m ? tile_max : *m;
  if (m_new == kNegInf) {  // nothing visible yet: probabilities 0, state unchanged
    for (int c = 0; c < kKeyTile; c += W) Simd::store(s + c, Simd::zero());
    return 1.0f;
  }
  // Once the running max settles (most tiles of a long row) the factor is exactly 1: no exp to evaluate.
  const float alpha = *m == m_new ? 1.0f : *m == kNegInf ? 0.0f : std::exp(*m - m_new);
  const F shift = Simd::set1(m_new);
  F sum = Simd::zero();
  for (int c = 0; c < kKeyTile; c += W) {
    const F p = Simd::exp_nonpositive(Simd::sub(Simd::load(s + c), shift));
    Simd::store(s + c, p);
    sum = Simd::add(sum, p);
  }
  *l = *l * alpha + Simd::hsum(sum);
  *m = m_new;
  return alpha;
}

// ---------------------------------------------------------------------------------------------------------------
// Accumulation: acc[r] = alpha[r] * acc[r] + sum_t p[r][t] v[t], Rows x (Chunks * W) accumulators in registers,
// for the Chunks * W values from e0 on.

template <class Elems, int Rows, int Chunks>
inline void accumulate_block(const float* p, const float* alpha, const void* const* v, int n_keys, int64_t e0,
                             float* acc, int64_t acc_stride) {
  F a[Rows][Chunks];
  for (int r = 0; r < Rows; ++r) {
    const F scale = Simd::set1(alpha[r]);
    for (int c = 0; c < Chunks; ++c) a[r][c] = Simd::mul(Simd::load(acc + r * acc_stride + e0 + c * W), scale);
  }
  for (int t = 0; t < n_keys; ++t) {
    F vv[Chunks];
    for (int c = 0; c < Chunks; ++c) vv[c] = Elems::load(v[t], e0 + c * W);
    for (int r = 0; r < Rows; ++r) {
      const F pr = Simd::set1(p[r * kKeyTile + t]);
      for (int c = 0; c < Chunks; ++c) a[r][c] = Simd::fmadd(pr, vv[c], a[r][c]);
    }
  }
  for (int r = 0; r < Rows; ++r)
    for (int c = 0; c < Chunks; ++c) Simd::store(acc + r * acc_stride + e0 + c * W, a[r][c]);
}

// 4 rows x 3 chunks: 12 independent FMA chains, 3 value vectors and a broadcast probability fill the 16 AVX2
// registers; each value chunk is loaded once for the 4 rows.
template <class Elems, int Rows>
inline void accumulate_rows(const float* p, const float* alpha, const void* const* v, int n_keys, int64_t dim,
                            float* acc, int64_t acc_stride) {
  for (int64_t e = 0; e < dim;) {
    switch (next_block((dim - e) / W)) {
      case 3:
        accumulate_block<Elems, Rows, 3>(p, alpha, v, n_keys, e, acc, acc_stride), e += 3 * W;
        break;
      case 2:
        accumulate_block<Elems, Rows, 2>(p, alpha, v, n_keys, e, acc, acc_stride), e += 2 * W;
        break;
      default:
        accumulate_block<Elems, Rows, 1>(p, alpha, v, n_keys, e, acc, acc_stride), e += W;
        break;
    }
  }
}

template <class Elems>
void tile_accumulate(const float* p, const float* alpha, int64_t n_rows, const void* const* v, int n_keys, int64_t dim,
                     float* acc, int64_t acc_stride) {
  int64_t r = 0;
  for (; r + 4 <= n_rows; r += 4) {
    accumulate_rows<Elems, 4>(p + r * kKeyTile, alpha + r, v, n_keys, dim, acc + r * acc_stride, acc_stride);
  }
  const float* pr = p + r * kKeyTile;
  float* ar = acc + r * acc_stride;
  switch (n_rows - r) {
    case 3:
      accumulate_rows<Elems, 3>(pr, alpha + r, v, n_keys, dim, ar, acc_stride);
      break;
    case 2:
      accumulate_rows<Elems, 2>(pr, alpha + r, v, n_keys, dim, ar, acc_stride);
      break;
    case 1:
      accumulate_rows<Elems, 1>(pr, alpha + r, v, n_keys, dim, ar, acc_stride);
      break;
    default:
      break;
  }
}

}  // namespace
}  // namespace kvflash::cpu::KVFLASH_CPU_ISA_NS
