// Every option of a score, in one place for every CUDA kernel (attention_problem.h gives the semantics):
//   s = softcap * tanh(s / softcap);  s += mask;  s += -slope * (position - key);
//   s = -inf where causal hides the key (key > position) or the window does (position - key >= window).
// The scale is folded into the staged query, so `s` arrives as scale * <q, k>. One instance per query row; every
// switch is uniform across the CTA, so the options cost nothing when they are off.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

#include "kvflash/attention_problem.h"

namespace kvflash::cuda {

struct ScoreVariant {
  float softcap = 0.0f;             // 0: none
  const uint8_t* mask_row = nullptr;  // this query row's mask over keys; nullptr: none
  bool mask_f16 = false;
  float slope = 0.0f;               // ALiBi slope of the query head; 0: none
  int64_t position = 0;             // the row's position: kv_len - n_q + row (bottom-right alignment)
  bool causal = false;
  int64_t window = 0;               // 0: none

  /// The options of `p` for query head h, query row i of sequence s whose K/V has `kv_len` keys.
  __device__ static ScoreVariant make(const AttentionProblem& p, int64_t s, int64_t h, int64_t i, int64_t kv_len) {
    ScoreVariant v;
    v.softcap = static_cast<float>(p.options.softcap);
    if (p.mask.data != nullptr) {
      v.mask_row = static_cast<const uint8_t*>(p.mask.data) + s * p.mask.stride.seq + h * p.mask.stride.head +
                   i * p.mask.stride.row;
      v.mask_f16 = p.mask.type == MaskType::f16;
    }
    v.slope = alibi_slope<float>(static_cast<float>(p.options.alibi_max_bias), p.shape.n_head_q, h);
    v.position = kv_len - p.shape.n_q + i;
    v.causal = p.options.causal;
    v.window = p.options.window;
    return v;
  }

  __device__ __forceinline__ bool hidden(int64_t key) const {
    return (causal && key > position) || (window > 0 && position - key >= window);
  }

  __device__ __forceinline__ float operator()(float s, int64_t key) const {
    if (hidden(key)) return -INFINITY;
    if (softcap > 0.0f) s = softcap * tanhf(s / softcap);
    if (mask_row != nullptr) {
      s += mask_f16 ? __half2float(reinterpret_cast<const __half*>(mask_row)[key])
                    : reinterpret_cast<const float*>(mask_row)[key];
    }
    if (slope != 0.0f) s -= slope * static_cast<float>(position - key);
    return s;
  }
};

}  // namespace kvflash::cuda
