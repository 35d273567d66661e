// The generic CUDA kernel (any KvType pair, any head dims, any n_q): what routing falls back to on the GPU.
#pragma once

#include <cuda_runtime.h>

#include "backend/cuda/split_plan.h"
#include "kvflash/attention_problem.h"
#include "kvflash/status.h"

namespace kvflash::cuda {

/// Tile, query vectors per CTA and resident CTAs per SM of the generic kernel for `p`'s head dims.
StatusOr<KernelGeometry> generic_geometry(const AttentionProblem& p);

/// Stored V head dim the generic kernel's partials use (the workspace is sized by it).
int64_t generic_dv_stored(const AttentionProblem& p);

/// Runs `p` (device pointers) with the generic kernel; `workspace` as split_workspace() sizes it for the plan.
Status launch_generic(const AttentionProblem& p, const SplitPlan& plan, void* workspace, cudaStream_t stream);

}  // namespace kvflash::cuda
