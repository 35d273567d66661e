// The end of every CUDA attention path, shared by the split-KV decode kernel, the generic kernel and the combine:
// a finished row (numerator over the stored head dim, running max m and sum l) becomes either the output row
// (sinks in the denominator, turbo V rotated back, the first d_v values stored) or a partial of a split launch.
// The start of every path reads its query rows through query_row().
#pragma once

#include <cstdint>

#include "backend/cuda/split_plan.h"
#include "backend/cuda/turbo_rotation.cuh"
#include "kvflash/attention_problem.h"

namespace kvflash::cuda {

/// Query row (sequence s, query head h, row i) of p.q, f32.
__device__ __forceinline__ const float* query_row(const AttentionProblem& p, int64_t s, int64_t h, int64_t i) {
  return reinterpret_cast<const float*>(reinterpret_cast<const uint8_t*>(p.q.data) + s * p.q.stride.seq +
                                        h * p.q.stride.head + i * p.q.stride.row);
}

/// Index of output row (s, h, i) in the partial arrays.
__device__ __forceinline__ int64_t output_row_index(const AttentionProblem& p, int64_t s, int64_t h, int64_t i) {
  return (s * p.shape.n_head_q + h) * p.shape.n_q + i;
}

/// Multiplies acc[0, dim) by `scale` and, for rotated V, rotates every 128-group back, in place. One warp.
__device__ inline void unrotate_scaled(float* acc, int dim, bool v_rotated, float scale) {
  const int lane = static_cast<int>(threadIdx.x % 32);
  if (!v_rotated) {
    for (int d = lane; d < dim; d += 32) acc[d] *= scale;
    __syncwarp();
    return;
  }
  for (int g = 0; g * 128 < dim; ++g) {
    float x[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) x[k] = acc[g * 128 + lane + 32 * k] * scale;
    warp_rotate128(x, /*inverse=*/true);
#pragma unroll
    for (int k = 0; k < 4; ++k) acc[g * 128 + lane + 32 * k] = x[k];
  }
  __syncwarp();
}

/// One warp writes query row (s, h, i): `acc` holds dv_stored numerator values in shared memory (stored domain),
/// m and l the row's softmax max and sum over the keys it saw. Every lane must call it; acc may be overwritten.
/// split < 0: the launch has a single split, so this is the final row; otherwise it is partial `split`.
__device__ inline void finish_row(const AttentionProblem& p, float* acc, int dv_stored, bool v_rotated, float m,
                                  float l, int64_t s, int64_t h, int64_t i, const SplitOutput& out, int64_t split) {
  const int lane = static_cast<int>(threadIdx.x % 32);
  const bool saw_keys = m != -INFINITY;
  if (split >= 0) {
    const int64_t slot = split * out.rows + output_row_index(p, s, h, i);
    if (lane == 0) {
      out.partial_max[slot] = saw_keys ? m : -INFINITY;
      out.partial_sum[slot] = saw_keys ? l : 0.0f;
    }
    if (!saw_keys) return;  // the combine skips a partial whose max is -inf without reading it
    float* dst = out.partial_o + slot * out.o_pitch;
    if (v_rotated && !out.rotated) {
      unrotate_scaled(acc, dv_stored, true, 1.0f);
      for (int d = lane; d < p.shape.d_v; d += 32) dst[d] = acc[d];
    } else {
      for (int d = lane; d < dv_stored; d += 32) dst[d] = acc[d];
    }
    return;
  }
  float inv = 0.0f;  // a row that sees no key outputs zeros, sink or not
  if (saw_keys) {
    const float sink = p.options.sinks != nullptr ? __expf(p.options.sinks[h] - m) : 0.0f;
    inv = 1.0f / (l + sink);
  }
  unrotate_scaled(acc, dv_stored, v_rotated, inv);
  float* o = reinterpret_cast<float*>(reinterpret_cast<uint8_t*>(p.o.data) + s * p.o.stride.seq +
                                      h * p.o.stride.head + i * p.o.stride.row);
  for (int d = lane; d < p.shape.d_v; d += 32) o[d] = acc[d];
}

}  // namespace kvflash::cuda
