// The CUDA backend's entry points: route a problem onto a kernel (a tensor-core decode instance or the generic
// kernel), size its workspace, run it. Until the planner's route table lands, this is the CUDA route registry;
// the planner can call decode_instances(), route_cuda() and attend_cuda() as its CUDA dispatch.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <span>
#include <string>

#include "backend/cuda/split_plan.h"
#include "kvflash/attention_problem.h"
#include "kvflash/status.h"

namespace kvflash::cuda {

/// Largest n_q (query rows per sequence) the split-KV decode kernel takes; longer steps run on the generic kernel.
inline constexpr int64_t kMaxDecodeRows = 16;

struct DecodeInstanceKey {
  int head_dim_k, head_dim_v;
  KvType k_type, v_type;
};

/// The decode instances compiled into this build, in decode_instances.inc order.
std::span<const DecodeInstanceKey> decode_instances();

enum class CudaKernel { decode_split_kv, generic };

struct CudaRoute {
  CudaKernel kernel = CudaKernel::generic;
  int instance = -1;  // index into decode_instances() for decode_split_kv
  SplitPlan split;
  int key_tile = 0;        // the kernel's tile: keys_per_split is a multiple of it
  int64_t dv_stored = 0;   // floats per partial row in the workspace
  size_t workspace_bytes = 0;
  std::string name;  // "decode_split_kv<128,128,q4_0,q4_0>" or "generic"
};

/// The route `p` takes on the current device. Reads cached device properties only (no device memory, no sync).
StatusOr<CudaRoute> route_cuda(const AttentionProblem& p);

/// `route` with its keys cut into (about) `n_splits` ranges instead of the planned count: whole tiles per split,
/// no empty split, workspace resized. For tests and for a planner that chooses splits itself.
CudaRoute with_splits(const CudaRoute& route, const AttentionProblem& p, int64_t n_splits);

/// Runs `p` (device pointers) along `route`; `workspace` must hold route.workspace_bytes bytes. Launches only.
Status attend_cuda(const AttentionProblem& p, const CudaRoute& route, void* workspace, size_t workspace_bytes,
                   cudaStream_t stream);

/// route_cuda() then the run above.
Status attend_cuda(const AttentionProblem& p, void* workspace, size_t workspace_bytes, cudaStream_t stream);

}  // namespace kvflash::cuda
