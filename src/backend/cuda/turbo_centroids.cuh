// Device copies of the TurboQuant centroid tables (the host tables live in format/blocks.h; device code cannot
// index host constexpr arrays at run time, so each translation unit gets a __constant__ copy made from them).
#pragma once

#include <cuda_fp16.h>

#include "backend/cuda/turbo_lookup.cuh"
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

/// Fills `table` (32 bytes of shared memory, 16-byte aligned: the kernels' lut_k / lut_v) with what the fragment
/// loaders of `t` read: for turbo3 / turbo4 the register-table words of turbo_lookup.cuh (TableRegs), else the 16
/// centroids as halves. Call from all threads, then synchronize.
__device__ __forceinline__ void load_centroids_f16(KvType t, __half* table) {
  auto* words = reinterpret_cast<uint32_t*>(table);
  if (t == KvType::turbo3 || t == KvType::turbo4) {
    if (threadIdx.x < 4) {
      const int k = static_cast<int>(threadIdx.x);
      words[k] = t == KvType::turbo3 ? turbo::table_regs_word<KvType::turbo3>(k)
                                     : turbo::table_regs_word<KvType::turbo4>(k);
    }
    return;
  }
  const CentroidTable* c = centroid_table(t);
  if (c != nullptr && threadIdx.x < 16) table[threadIdx.x] = __float2half_rn(c->v[threadIdx.x % c->count]);
}

}  // namespace kvflash::cuda
