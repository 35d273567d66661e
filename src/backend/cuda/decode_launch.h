// Declarations of the tensor-core split-KV decode instances (defined in decode_split_kv.cuh, instantiated one per
// translation unit from decode_instances.inc), visible to host-only code such as the instance registry.
#pragma once

#include <cuda_runtime.h>

#include "backend/cuda/split_plan.h"
#include "kvflash/attention_problem.h"
#include "kvflash/status.h"

namespace kvflash::cuda {

/// Runs the split-KV decode of `p` (device pointers, n_q small) with the split plan `plan`. `workspace` holds
/// split_workspace(p.shape, stored_dim(VType, HeadDimV), plan.n_splits).total_bytes bytes (null for one split).
/// Launches only: no allocation, no synchronization, safe to capture in a CUDA graph.
template <int HeadDimK, int HeadDimV, KvType KType, KvType VType>
Status launch_decode(const AttentionProblem& p, const SplitPlan& plan, void* workspace, cudaStream_t stream);

/// Key tile, query vectors per CTA and resident CTAs per SM of an instance (the planner's inputs).
template <int HeadDimK, int HeadDimV, KvType KType, KvType VType>
StatusOr<KernelGeometry> decode_geometry();

}  // namespace kvflash::cuda
