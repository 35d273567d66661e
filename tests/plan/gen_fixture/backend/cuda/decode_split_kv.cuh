// Stand-in for the cuda stream's header, so that the generator's output can be compiled by the host compiler in
// tests (tests/plan/gen_instances_test.cpp): the same declarations, bodies that only report where they are.
#pragma once

#include "kvflash/attention_problem.h"
#include "kvflash/route.h"

using cudaStream_t = struct CUstream_st*;

namespace kvflash::cuda {

template <int HeadDimK, int HeadDimV, KvType KType, KvType VType>
Status launch_decode(const AttentionProblem&, const Route&, void*, cudaStream_t) {
  return Status(StatusCode::internal, "fixture launch_decode<" + std::to_string(HeadDimK) + ", " +
                                          std::to_string(HeadDimV) + ">");
}

}  // namespace kvflash::cuda
