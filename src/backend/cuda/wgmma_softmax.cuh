// The per-thread side of a wgmma prefill warpgroup's online softmax (prefill_wgmma.cuh, prefill_wgmma_ws.cuh): a
// thread holds two query vectors of the warpgroup's 64 (rows 16 warp + g and + 8, g = lane / 4), and of a 64 x 128
// score accumulator the keys 8 j + 2 t, + 1 of n-block j (t = lane % 4) for each (wgmma.cuh's layout). Scores are
// in base 2 (log2(e) folded into the staged query, or applied here when a score option needs natural units).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cstdint>

#include "backend/cuda/prefill_attention.cuh"
#include "backend/cuda/score_variant.cuh"
#include "kvflash/attention_problem.h"

namespace kvflash::cuda {

/// Running maximum and sum of this thread's two query vectors, and what it needs to mask a tile of KeyTile keys.
template <int KeyTile>
struct WgmmaRowSoftmax {
  int t = 0;                 // lane % 4
  int rows[2] = {0, 0};      // CTA query-vector index of h = 0, 1
  int row_keys[2] = {0, 0};  // keys the row may see, counted from the work's key_begin
  int clean_keys = 0;        // min(row_keys): tiles below it need no causal mask
  float m_run[2] = {-INFINITY, -INFINITY};  // base 2
  float l_run[2] = {0.0f, 0.0f};            // this thread's part of the row sum (the quad adds up at the end)

  /// Rows group_row0 + 16 warp_in_group + lane / 4 (+ 8) of the work `w`.
  __device__ static WgmmaRowSoftmax make(const AttentionProblem& p, const PrefillWork& w, int group_row0,
                                         int warp_in_group, int lane) {
    WgmmaRowSoftmax r;
    r.t = lane % 4;
    const int64_t pos_base = w.len - p.shape.n_q;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      r.rows[h] = group_row0 + 16 * warp_in_group + lane / 4 + 8 * h;
      // End of the row's visible keys relative to key_begin (causal: its position + 1; past n_qvecs: none).
      const int64_t end = r.rows[h] >= w.n_qvecs ? w.keys.key_begin
                          : p.options.causal      ? std::min(w.keys.key_end, pos_base + w.row_of(r.rows[h]) + 1)
                                                  : w.keys.key_end;
      r.row_keys[h] = static_cast<int>(std::clamp<int64_t>(end - w.keys.key_begin, 0, INT_MAX));
    }
    r.clean_keys = std::min(r.row_keys[0], r.row_keys[1]);
    return r;
  }

  /// Masks tile n's scores (options, causal, key range), then the online softmax in base 2 (as in
  /// prefill_attention.cuh: a row with no key yet keeps m = -inf and uses 0): s becomes P (unnormalized, f32),
  /// m_run and l_run move to the tile, and alpha is the factor the accumulators still owe (applied by the caller
  /// once the O += P V in flight has landed).
  /// CausalOnly: the caller's loop is specialized on causal_only, so that the per-score option code (and its
  /// registers) is absent from the loop of the common case.
  template <bool CausalOnly>
  __device__ __forceinline__ void score_tile_as(const PrefillWork& w, const ScoreVariant* variants, int n,
                                                float (&s)[64], float (&alpha)[2]) {
    constexpr int T = KeyTile;
    const int tile_rel0 = n * T;
    // Element e of n-block j: key 8 j + 2 t + e % 2 of the tile, row h = e / 2.
    if constexpr (CausalOnly) {
      if (tile_rel0 + T > clean_keys) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int rel = std::clamp(row_keys[h] - tile_rel0, 0, T);  // first key of the tile the row may not see
#pragma unroll
          for (int j = 0; j < T / 8; ++j)
#pragma unroll
            for (int e = 0; e < 2; ++e) {
              if (8 * j + 2 * t + e >= rel) s[4 * j + 2 * h + e] = -INFINITY;
            }
        }
      }
    } else {
      const int64_t key0 = w.keys.key_begin + static_cast<int64_t>(n) * T;
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int r = rows[h];
#pragma unroll
        for (int j = 0; j < T / 8; ++j)
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const int64_t key = key0 + 8 * j + 2 * t + e;
            float& x = s[4 * j + 2 * h + e];
            x = r >= w.n_qvecs || key >= w.keys.key_end ? -INFINITY : variants[r](x, key) * kLog2e;
          }
      }
    }
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float mx[8];
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        mx[j] = fmaxf(fmaxf(s[4 * j + 2 * h], s[4 * j + 2 * h + 1]),
                      fmaxf(s[4 * (j + 8) + 2 * h], s[4 * (j + 8) + 2 * h + 1]));
      }
#pragma unroll
      for (int step = 1; step < 8; step *= 2)
#pragma unroll
        for (int j = 0; j + step < 8; j += 2 * step) mx[j] = fmaxf(mx[j], mx[j + step]);
      float row_max = fmaxf(mx[0], __shfl_xor_sync(0xffffffffu, mx[0], 1));
      row_max = fmaxf(row_max, __shfl_xor_sync(0xffffffffu, row_max, 2));
      const float m_new = fmaxf(m_run[h], row_max);
      const float m_use = m_new == -INFINITY ? 0.0f : m_new;
      alpha[h] = prefill_exp2(m_run[h] - m_use);
      m_run[h] = m_new;
      float sum[8];
#pragma unroll
      for (int j = 0; j < 16; ++j) {
        s[4 * j + 2 * h] = prefill_exp2(s[4 * j + 2 * h] - m_use);
        s[4 * j + 2 * h + 1] = prefill_exp2(s[4 * j + 2 * h + 1] - m_use);
        const float pair = s[4 * j + 2 * h] + s[4 * j + 2 * h + 1];
        sum[j % 8] = j < 8 ? pair : sum[j % 8] + pair;
      }
#pragma unroll
      for (int step = 1; step < 8; step *= 2)
#pragma unroll
        for (int j = 0; j + step < 8; j += 2 * step) sum[j] += sum[j + step];
      l_run[h] = l_run[h] * alpha[h] + sum[0];
    }
  }

  /// The accumulators owe alpha (from score_tile) once the product that was in flight landed.
  __device__ __forceinline__ static void rescale(float (&o)[64], const float (&alpha)[2]) {
#pragma unroll
    for (int j = 0; j < 16; ++j) {
      o[4 * j + 0] *= alpha[0];
      o[4 * j + 1] *= alpha[0];
      o[4 * j + 2] *= alpha[1];
      o[4 * j + 3] *= alpha[1];
    }
  }

  /// P (the score accumulators after score_tile) as the f16 A operand of O += P V: key step ks is n-blocks 2 ks,
  /// 2 ks + 1.
  __device__ __forceinline__ static void pack_p(const float (&s)[64], uint32_t (&pa)[KeyTile / 16][4]) {
#pragma unroll
    for (int ks = 0; ks < KeyTile / 16; ++ks) {
#pragma unroll
      for (int i = 0; i < 4; ++i) pa[ks][i] = ptx::as_u32(__floats2half2_rn(s[8 * ks + 2 * i], s[8 * ks + 2 * i + 1]));
    }
  }

  /// Row sums over the quad, then this thread's rows (o in head-dim order, natural-log max as finish_row takes it,
  /// sums) into the epilogue's shared arrays: o_rows [rows][Dim], m_rows, l_rows.
  template <int Dim>
  __device__ __forceinline__ void store_rows(const float (&o)[64], float* o_rows, float* m_rows, float* l_rows) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      l_run[h] += __shfl_xor_sync(0xffffffffu, l_run[h], 1);
      l_run[h] += __shfl_xor_sync(0xffffffffu, l_run[h], 2);
    }
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float* row = o_rows + rows[h] * Dim;
#pragma unroll
      for (int j = 0; j < Dim / 8; ++j) {
        *reinterpret_cast<float2*>(row + 8 * j + 2 * t) = make_float2(o[4 * j + 2 * h], o[4 * j + 2 * h + 1]);
      }
      if (t == 0) {  // finish_row takes the natural-log max (sinks are e^(sink - m))
        m_rows[rows[h]] = m_run[h] * kLn2;
        l_rows[rows[h]] = l_run[h];
      }
    }
  }
};

}  // namespace kvflash::cuda
