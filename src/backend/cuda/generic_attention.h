// The generic CUDA kernel (any KvType pair, any head dims, any n_q): the cuda.generic row of the kernel table,
// what routing falls back to on the GPU.
#pragma once

#include <cuda_runtime.h>

#include "kvflash/attention_problem.h"
#include "kvflash/route.h"
#include "kvflash/status.h"

namespace kvflash::cuda {

/// Runs `p` (device pointers) along a cuda.generic route; `workspace` holds route.workspace_bytes bytes laid out
/// as route.layout. Launches only: no allocation, no synchronization.
Status launch_generic(const AttentionProblem& p, const Route& route, void* workspace, cudaStream_t stream);

}  // namespace kvflash::cuda
