// Stand-in for the cuda stream's generic kernel header (see decode_split_kv.cuh here).
#pragma once

#include "backend/cuda/decode_split_kv.cuh"

namespace kvflash::cuda {

inline Status launch_generic(const AttentionProblem&, const Route&, void*, cudaStream_t) {
  return Status(StatusCode::internal, "fixture launch_generic");
}

}  // namespace kvflash::cuda
