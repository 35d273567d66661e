// Launching a kernel over every sequence of a problem: grids of one CTA per (sequence, ...) unit, cut into
// launches of at most INT_MAX CTAs (the grid's x limit), each told its first sequence. Shared by the decode,
// prefill and generic kernels, whose Launch structs all carry `seq_begin`.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cstdint>

#include "backend/cuda/cuda_status.h"
#include "kvflash/attention_problem.h"

namespace kvflash::cuda {

/// Runs kernel(p, launch) over p.shape.n_seq sequences of `ctas_per_seq` CTAs each, setting launch.seq_begin per
/// launch. No allocation, no synchronization.
template <class Launch>
Status launch_over_sequences(void (*kernel)(const AttentionProblem, const Launch), const AttentionProblem& p,
                             Launch launch, int64_t ctas_per_seq, int threads, size_t smem_bytes,
                             cudaStream_t stream) {
  const int64_t seqs_per_launch = std::max<int64_t>(1, INT_MAX / std::max<int64_t>(1, ctas_per_seq));
  for (int64_t s0 = 0; s0 < p.shape.n_seq; s0 += seqs_per_launch) {
    launch.seq_begin = s0;
    const int64_t ctas = std::min(seqs_per_launch, p.shape.n_seq - s0) * ctas_per_seq;
    kernel<<<static_cast<unsigned>(ctas), threads, smem_bytes, stream>>>(p, launch);
    KVFLASH_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  }
  return Status::Ok();
}

}  // namespace kvflash::cuda
