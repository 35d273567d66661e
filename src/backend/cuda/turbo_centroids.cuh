// Device copies of the TurboQuant centroid tables (the host tables live in format/blocks.h; device code cannot
// index host constexpr arrays at run time, so each translation unit gets a __constant__ copy made from them).
#pragma once

#include <cuda_fp16.h>

#include "format/blocks.h"
#include "kvflash/kv_type.h"

namespace kvflash::cuda {

struct CentroidTable {
  float v[16];
  int count;
};

template <int N>
constexpr CentroidTable make_centroid_table(const float (&c)[N]) {
  CentroidTable t{{}, N};
  for (int i = 0; i < N; ++i) t.v[i] = c[i];
  return t;
}

static __constant__ CentroidTable c_turbo2_centroids = make_centroid_table(format::kTurbo2Centroids);
static __constant__ CentroidTable c_turbo3_centroids = make_centroid_table(format::kTurbo3Centroids);
static __constant__ CentroidTable c_turbo4_centroids = make_centroid_table(format::kTurbo4Centroids);

/// The centroid table of a turbo type (nullptr for other types).
__device__ __forceinline__ const CentroidTable* centroid_table(KvType t) {
  switch (t) {
    case KvType::turbo2: return &c_turbo2_centroids;
    case KvType::turbo3: return &c_turbo3_centroids;
    case KvType::turbo4: return &c_turbo4_centroids;
    default: return nullptr;
  }
}

/// Fills `table` (16 halves in shared memory) with the centroids of `t`; call from all threads, then synchronize.
__device__ __forceinline__ void load_centroids_f16(KvType t, __half* table) {
  const CentroidTable* c = centroid_table(t);
  if (c != nullptr && threadIdx.x < 16) table[threadIdx.x] = __float2half_rn(c->v[threadIdx.x % c->count]);
}

}  // namespace kvflash::cuda
