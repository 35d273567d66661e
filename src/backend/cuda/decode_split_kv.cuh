// The split-KV decode entry points of one instance: which kernel runs it (decode_narrow.cuh for a stored V head
// dim up to 128, decode_wide.cuh above), what the planner needs to know about it, and the launch itself
// (the decode kernel, then the shared combine when the keys are split). No allocation, no host synchronization:
// the workspace is the caller's, so a call can be captured in a CUDA graph.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "backend/cuda/combine.h"
#include "backend/cuda/cuda_status.h"
#include "backend/cuda/decode_launch.h"
#include "backend/cuda/decode_narrow.cuh"
#include "backend/cuda/decode_wide.cuh"
#include "backend/cuda/grid_launch.cuh"
#include "backend/cuda/split_plan.h"
#include "kvflash/attention_problem.h"

namespace kvflash::cuda {

static_assert(sizeof(ScoreVariant) == kScoreVariantBytes, "decode_geometry() counts ScoreVariant bytes");

template <int HeadDimK, int HeadDimV, KvType KType, KvType VType, int QvecTiles>
struct DecodeKernel {
  static constexpr bool kNarrow = stored_dim(VType, HeadDimV) <= 128;
  static_assert(kNarrow || QvecTiles == 1, "the wide kernel sizes its own query chunks (16 or 32 vectors)");
  using Cfg = std::conditional_t<kNarrow, NarrowDecodeConfig<HeadDimK, HeadDimV, KType, VType, QvecTiles>,
                                 WideDecodeConfig<HeadDimK, HeadDimV, KType, VType>>;
  // The planner chooses splits from decode_geometry(); it must describe this very configuration.
  static constexpr DecodeGeometry kGeometry = decode_geometry(KType, HeadDimK, VType, HeadDimV, kNarrowQvecs * QvecTiles);
  static_assert(kGeometry.narrow == kNarrow && kGeometry.key_tile == Cfg::kKeyTile &&
                    kGeometry.stages == Cfg::kStages && kGeometry.qvecs_per_cta == Cfg::kMaxQvecs &&
                    kGeometry.smem_bytes == Cfg::kSmemBytes,
                "decode_geometry() (split_plan.h) disagrees with the kernel's configuration");
  using Fn = void (*)(const AttentionProblem, const DecodeLaunch);
  static Fn function() {
    if constexpr (kNarrow) {
      return decode_narrow_kernel<HeadDimK, HeadDimV, KType, VType, QvecTiles>;
    } else {
      return decode_wide_kernel<HeadDimK, HeadDimV, KType, VType>;
    }
  }
};

/// Sets the instance's shared-memory limit (once) and checks that a CTA fits an SM.
template <int HeadDimK, int HeadDimV, KvType KType, KvType VType, int QvecTiles>
Status prepare_decode_kernel() {
  using K = DecodeKernel<HeadDimK, HeadDimV, KType, VType, QvecTiles>;
  static const Status prepared =
      prepare_kernel(K::function(), K::Cfg::kThreads, K::Cfg::kSmemBytes,
                     "decode kernel d_k = " + std::to_string(HeadDimK) + ", d_v = " + std::to_string(HeadDimV));
  return prepared;
}

template <int HeadDimK, int HeadDimV, KvType KType, KvType VType, int QvecTiles>
Status launch_decode(const AttentionProblem& p, const Route& route, void* workspace, cudaStream_t stream) {
  using K = DecodeKernel<HeadDimK, HeadDimV, KType, VType, QvecTiles>;
  // The planner sized the splits for the route's query chunks: an instance of another width would change them.
  if (route.qvecs_per_cta != K::Cfg::kMaxQvecs) {
    return invalid_argument("route.qvecs_per_cta = " + std::to_string(route.qvecs_per_cta) +
                            " does not match the decode instance's " + std::to_string(K::Cfg::kMaxQvecs) +
                            " query vectors per CTA");
  }
  KVFLASH_RETURN_IF_ERROR((prepare_decode_kernel<HeadDimK, HeadDimV, KType, VType, QvecTiles>()));
  const SplitPlan plan = split_plan_of(route, p.shape, K::Cfg::kKeyTile, K::Cfg::kMaxQvecs);
  // One split covers every key (split_plan_of() rounds it to the kernel's tile); several are whole granules.
  if (plan.keys_per_split <= 0 || (plan.n_splits > 1 && plan.keys_per_split % kDecodeSplitGranule != 0) ||
      plan.n_splits * plan.keys_per_split < p.shape.n_kv) {
    return invalid_argument("route with n_splits = " + std::to_string(plan.n_splits) + ", keys_per_split = " +
                            std::to_string(plan.keys_per_split) + " does not fit the decode kernel (split granule " +
                            std::to_string(kDecodeSplitGranule) + ", n_kv = " + std::to_string(p.shape.n_kv) + ")");
  }
  DecodeLaunch launch;
  launch.scale = static_cast<float>(effective_scale(p));
  launch.n_qchunks = plan.n_qchunks;
  launch.keys_per_split = plan.keys_per_split;
  launch.out = split_output_of(route, p.shape, K::Cfg::kDimV, workspace);
  if (plan.n_splits > 1 && (workspace == nullptr || launch.out.o_pitch < p.shape.d_v)) {
    return invalid_argument("route's workspace has no room for the partials of " + std::to_string(plan.n_splits) +
                            " splits");
  }
  KVFLASH_RETURN_IF_ERROR(launch_over_sequences(K::function(), p, launch,
                                                p.shape.n_head_kv * plan.n_qchunks * plan.n_splits, K::Cfg::kThreads,
                                                K::Cfg::kSmemBytes, stream));
  if (plan.n_splits > 1) {
    KVFLASH_RETURN_IF_ERROR(launch_combine(p, K::Cfg::kDimV, kv_traits(VType).rotated, launch.out, stream));
  }
  return Status::Ok();
}

}  // namespace kvflash::cuda
