#include "backend/cuda/combine.h"

#include <algorithm>
#include <climits>

#include "backend/cuda/cuda_status.h"

namespace kvflash::cuda {
namespace {

constexpr int kCombineWarps = 4;

// One warp per output row. The row's combined numerator goes to shared memory so that finish_row (shared with the
// kernels that write O directly) applies the sinks, the turbo rotation and the strides.
__global__ void __launch_bounds__(32 * kCombineWarps)
    combine_splits_kernel(const AttentionProblem p, int dv_stored, bool v_rotated, SplitOutput out, int64_t row_begin,
                          int64_t row_count) {
  extern __shared__ float combined[];  // [kCombineWarps][dv_stored]
  const int warp = static_cast<int>(threadIdx.x / 32), lane = static_cast<int>(threadIdx.x % 32);
  const int64_t local = static_cast<int64_t>(blockIdx.x) * kCombineWarps + warp;
  if (local >= row_count) return;
  const int64_t row = row_begin + local;  // (s * n_head_q + h) * n_q + i
  const int64_t i = row % p.shape.n_q, h = (row / p.shape.n_q) % p.shape.n_head_q;
  const int64_t s = row / (p.shape.n_q * p.shape.n_head_q);
  const int64_t splits = out.n_splits;

  float m = -INFINITY;
  for (int64_t k = lane; k < splits; k += 32) m = fmaxf(m, out.partial_max[k * out.rows + row]);
  for (int off = 16; off > 0; off /= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));

  // Partials are either in the rotated domain (dv_stored values) or already rotated back (d_v values).
  const int width = out.rotated || !v_rotated ? dv_stored : static_cast<int>(p.shape.d_v);
  float* acc = combined + warp * dv_stored;
  float l = 0.0f;
  for (int d = lane; d < dv_stored; d += 32) acc[d] = 0.0f;
  if (m != -INFINITY) {
    for (int64_t k = 0; k < splits; ++k) {
      const float x = out.partial_max[k * out.rows + row];
      if (x == -INFINITY) continue;  // an empty split wrote no partial
      const float w = __expf(x - m);
      l += w * out.partial_sum[k * out.rows + row];
      const float* src = out.partial_o + (k * out.rows + row) * out.o_pitch;
      for (int d = lane; d < width; d += 32) acc[d] += w * src[d];
    }
  }
  __syncwarp();
  finish_row(p, acc, dv_stored, v_rotated && out.rotated, m, l, s, h, i, out, /*split=*/-1);
}

}  // namespace

Status launch_combine(const AttentionProblem& p, int dv_stored, bool v_rotated, const SplitOutput& out,
                      cudaStream_t stream) {
  const int64_t rows = p.shape.n_seq * p.shape.n_head_q * p.shape.n_q;
  const size_t smem = static_cast<size_t>(kCombineWarps) * dv_stored * sizeof(float);
  static const Status attribute = cuda_status(
      cudaFuncSetAttribute(combine_splits_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                           static_cast<int>(kCombineWarps * 1024 * sizeof(float))),
      "cudaFuncSetAttribute(combine_splits_kernel)");
  KVFLASH_RETURN_IF_ERROR(attribute);
  const int64_t rows_per_launch = int64_t{INT_MAX} * kCombineWarps;
  for (int64_t r0 = 0; r0 < rows; r0 += rows_per_launch) {
    const int64_t count = std::min(rows_per_launch, rows - r0);
    const auto blocks = static_cast<unsigned>((count + kCombineWarps - 1) / kCombineWarps);
    combine_splits_kernel<<<blocks, 32 * kCombineWarps, smem, stream>>>(p, dv_stored, v_rotated, out, r0, count);
    KVFLASH_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  }
  return Status::Ok();
}

}  // namespace kvflash::cuda
