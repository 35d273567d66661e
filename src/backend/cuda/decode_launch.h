// Declaration of the tensor-core split-KV decode entry point (defined in decode_split_kv.cuh). The kernel table
// (src/plan/kernel_table.h) names it for every decode row; tools/gen_kernels emits one explicit instantiation per
// (head dims, K type, V type) of those rows and the registry that calls it.
#pragma once

#include <cuda_runtime.h>

#include "kvflash/attention_problem.h"
#include "kvflash/route.h"
#include "kvflash/status.h"

namespace kvflash::cuda {

/// Runs the split-KV decode of `p` (device pointers, n_q <= 16) along `route` (a cuda.decode_split_kv route from
/// plan_route()); `workspace` holds route.workspace_bytes bytes laid out as route.layout. QvecTiles: n8 tiles of
/// query vectors per CTA of the narrow kernel (1, or 2 for the kernel table's qvec16_dims; route.qvecs_per_cta
/// must equal 8 x QvecTiles there). Launches only: no allocation, no synchronization, safe to capture in a graph.
template <int HeadDimK, int HeadDimV, KvType KType, KvType VType, int QvecTiles = 1>
Status launch_decode(const AttentionProblem& p, const Route& route, void* workspace, cudaStream_t stream);

}  // namespace kvflash::cuda
