#include "backend/cuda/combine.h"

#include <algorithm>
#include <climits>
#include <cstdint>

#include "backend/cuda/cuda_status.h"

namespace kvflash::cuda {
namespace {

constexpr int kThreads = 128;
constexpr int kSplitBatch = 8;  // partial rows whose loads a thread has in flight at once

/// Max over the CTA of one value per thread.
__device__ float block_max(float x, float* scratch) {
  for (int off = 16; off > 0; off /= 2) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, off));
  if (threadIdx.x % 32 == 0) scratch[threadIdx.x / 32] = x;
  __syncthreads();
  x = scratch[0];
  for (int k = 1; k < kThreads / 32; ++k) x = fmaxf(x, scratch[k]);
  __syncthreads();
  return x;
}

__device__ float block_sum(float x, float* scratch) {
  for (int off = 16; off > 0; off /= 2) x += __shfl_xor_sync(0xffffffffu, x, off);
  if (threadIdx.x % 32 == 0) scratch[threadIdx.x / 32] = x;
  __syncthreads();
  x = 0.0f;
  for (int k = 0; k < kThreads / 32; ++k) x += scratch[k];
  __syncthreads();
  return x;
}

// One CTA per output row. The weights of the splits go to shared memory first, so that the weighted sum over the
// splits has no dependent loads: each thread keeps kSplitBatch partial values in flight. The row's numerator then
// goes through finish_row, shared with the kernels that write O directly (sinks, turbo rotation, strides).
__global__ void __launch_bounds__(kThreads)
    combine_splits_kernel(const AttentionProblem p, int dv_stored, bool v_rotated, SplitOutput out, int64_t row_begin) {
  extern __shared__ float smem[];
  float* weight = smem;                   // [n_splits]
  float* acc = weight + out.n_splits;     // [dv_stored]
  __shared__ float scratch[kThreads / 32];
  // Launched as a programmatic dependent of the split kernel: it may start while that grid finishes, and waits
  // here until the grid's partials are complete and visible.
  asm volatile("griddepcontrol.wait;" ::: "memory");
  const int tid = static_cast<int>(threadIdx.x);
  const int64_t row = row_begin + blockIdx.x;  // (s * n_head_q + h) * n_q + i
  const int64_t i = row % p.shape.n_q, h = (row / p.shape.n_q) % p.shape.n_head_q;
  const int64_t s = row / (p.shape.n_q * p.shape.n_head_q);

  float m = -INFINITY;
  for (int64_t k = tid; k < out.n_splits; k += kThreads) m = fmaxf(m, out.partial_max[k * out.rows + row]);
  m = block_max(m, scratch);
  float l = 0.0f;
  for (int64_t k = tid; k < out.n_splits; k += kThreads) {
    const float mk = out.partial_max[k * out.rows + row];
    const float wk = mk == -INFINITY ? 0.0f : __expf(mk - m);  // an empty split wrote no partial: weight 0
    weight[k] = wk;
    l += wk * (wk != 0.0f ? out.partial_sum[k * out.rows + row] : 0.0f);
  }
  l = block_sum(l, scratch);  // its barrier also publishes the weights

  // Partials are either in the rotated domain (dv_stored values) or already rotated back (d_v values).
  const int width = out.rotated || !v_rotated ? dv_stored : static_cast<int>(p.shape.d_v);
  for (int d = tid; d < dv_stored; d += kThreads) {
    float sum = 0.0f;
    if (d < width && m != -INFINITY) {
      const float* src = out.partial_o + row * out.o_pitch + d;
      const int64_t split_stride = out.rows * out.o_pitch;
      for (int64_t k0 = 0; k0 < out.n_splits; k0 += kSplitBatch) {
        float x[kSplitBatch];
#pragma unroll
        for (int b = 0; b < kSplitBatch; ++b) {
          const int64_t k = k0 + b;
          x[b] = k < out.n_splits && weight[k] != 0.0f ? src[k * split_stride] : 0.0f;
        }
#pragma unroll
        for (int b = 0; b < kSplitBatch; ++b) {
          if (k0 + b < out.n_splits) sum += weight[k0 + b] * x[b];
        }
      }
    }
    acc[d] = sum;
  }
  __syncthreads();
  if (tid < 32) finish_row(p, acc, dv_stored, v_rotated && out.rotated, m, l, s, h, i, out, /*split=*/-1);
}

}  // namespace

Status launch_combine(const AttentionProblem& p, int dv_stored, bool v_rotated, const SplitOutput& out,
                      cudaStream_t stream) {
  const int64_t rows = p.shape.n_seq * p.shape.n_head_q * p.shape.n_q;
  const size_t smem = static_cast<size_t>(out.n_splits + dv_stored) * sizeof(float);
  if (smem > 48 * 1024) {
    return invalid_argument("combine of " + std::to_string(out.n_splits) + " splits x " + std::to_string(dv_stored) +
                            " values needs more than 48 KB of shared memory");
  }
  for (int64_t r0 = 0; r0 < rows; r0 += INT_MAX) {
    cudaLaunchConfig_t config{};
    config.gridDim = dim3(static_cast<unsigned>(std::min<int64_t>(INT_MAX, rows - r0)));
    config.blockDim = dim3(kThreads);
    config.dynamicSmemBytes = smem;
    config.stream = stream;
    // Programmatic dependent launch: the combine's launch overlaps the split kernel's tail (a launch latency
    // saved on every split call, which is most of what a short context costs).
    cudaLaunchAttribute attribute{};
    attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attribute.val.programmaticStreamSerializationAllowed = 1;
    config.attrs = &attribute;
    config.numAttrs = 1;
    KVFLASH_CUDA_RETURN_IF_ERROR(
        cudaLaunchKernelEx(&config, combine_splits_kernel, p, dv_stored, v_rotated, out, r0));
  }
  return Status::Ok();
}

}  // namespace kvflash::cuda
