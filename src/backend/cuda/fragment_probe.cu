// probe_turbo_fragments (fragment_probe.h): one warp runs the fragment loaders and scatters each slot through
// k_dim / v_dim, exactly as the kernels pair slots with query elements and output columns.
#include "backend/cuda/fragment_probe.h"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <string>

#include "backend/cuda/cuda_status.h"
#include "backend/cuda/kv_fragments.cuh"
#include "backend/cuda/kv_fragments_unscaled.cuh"
#include "backend/cuda/turbo_centroids.cuh"

namespace kvflash::cuda {
namespace {

template <KvType Type, class Frag, bool Scaled>
__global__ void probe_kernel(const uint8_t* rows, int row_bytes, int pitch, int dim, uint16_t* k_bits,
                             uint16_t* v_bits) {
  extern __shared__ __align__(16) uint8_t tile[];
  __shared__ __align__(16) __half table[16];  // as the kernels' lut_k / lut_v
  const int lane = static_cast<int>(threadIdx.x), g = lane / 4, t = lane % 4;
  for (int r = 0; r < kProbeRows; ++r)
    for (int b = lane; b < row_bytes; b += 32) tile[r * pitch + b] = rows[r * row_bytes + b];
  load_centroids_f16(Type, table);
  __syncwarp();
  const Centroids cent{table};
  for (int key0 = 0; key0 < kProbeRows; key0 += 8) {
    for (int u = 0; u < dim / 64; ++u) {
      uint32_t b[8];
      Frag::load_k(tile, pitch, key0, u, lane, b, cent);
      for (int i = 0; i < 16; ++i) {
        k_bits[(key0 + g) * dim + Frag::k_dim(u, t, i)] = static_cast<uint16_t>(b[i / 2] >> (16 * (i % 2)));
      }
    }
  }
  for (int vu = 0; vu < dim / 32; ++vu) {
    uint32_t b[4][2];
    if constexpr (Scaled) {
      Frag::load_v(tile, pitch, 0, vu, lane, b, cent);
    } else {
      __half2 scale[2];
      Frag::load_v(tile, pitch, 0, vu, lane, b, cent, scale);
    }
    // B fragment register r of n-tile j: keys 2t + 8r (low half) and 2t + 8r + 1 (high half), column g.
    for (int j = 0; j < 4; ++j)
      for (int r = 0; r < 2; ++r)
        for (int h = 0; h < 2; ++h) {
          v_bits[(2 * t + 8 * r + h) * dim + Frag::v_dim(vu, g, j)] = static_cast<uint16_t>(b[j][r] >> (16 * h));
        }
  }
}

template <KvType Type, class Frag, bool Scaled>
Status run_probe(const uint8_t* rows, int row_bytes, int pitch, int dim, uint16_t* k_bits, uint16_t* v_bits) {
  const size_t in_bytes = static_cast<size_t>(kProbeRows) * row_bytes;
  const size_t out_bytes = static_cast<size_t>(kProbeRows) * dim * sizeof(uint16_t);
  uint8_t* d_rows = nullptr;
  uint16_t* d_out = nullptr;  // [K | V] bits
  const auto run = [&]() -> Status {
    KVFLASH_CUDA_RETURN_IF_ERROR(cudaMalloc(&d_rows, in_bytes));
    KVFLASH_CUDA_RETURN_IF_ERROR(cudaMalloc(&d_out, 2 * out_bytes));
    KVFLASH_CUDA_RETURN_IF_ERROR(cudaMemcpy(d_rows, rows, in_bytes, cudaMemcpyHostToDevice));
    KVFLASH_CUDA_RETURN_IF_ERROR(cudaMemset(d_out, 0xff, 2 * out_bytes));  // poison: 0xffff is an f16 NaN
    // 16 bytes past the last row: the loaders may read a few bytes beyond a row (KvTileGeometry's slack).
    uint16_t* d_v = d_out + out_bytes / sizeof(uint16_t);
    probe_kernel<Type, Frag, Scaled><<<1, 32, kProbeRows * pitch + 16>>>(d_rows, row_bytes, pitch, dim, d_out, d_v);
    KVFLASH_CUDA_RETURN_IF_ERROR(cudaGetLastError());
    KVFLASH_CUDA_RETURN_IF_ERROR(cudaMemcpy(k_bits, d_out, out_bytes, cudaMemcpyDeviceToHost));
    KVFLASH_CUDA_RETURN_IF_ERROR(cudaMemcpy(v_bits, d_v, out_bytes, cudaMemcpyDeviceToHost));
    return Status::Ok();
  };
  const Status st = run();
  cudaFree(d_out);
  cudaFree(d_rows);
  return st;
}

template <KvType Type>
Status probe_type(bool scaled, const uint8_t* rows, int row_bytes, int pitch, int dim, uint16_t* k_bits,
                  uint16_t* v_bits) {
  if (scaled) return run_probe<Type, KvFragments<Type>, true>(rows, row_bytes, pitch, dim, k_bits, v_bits);
  return run_probe<Type, KvUnscaledFragments<Type>, false>(rows, row_bytes, pitch, dim, k_bits, v_bits);
}

}  // namespace

Status probe_turbo_fragments(KvType type, bool scaled, const uint8_t* rows, int row_bytes, int pitch, int dim,
                             uint16_t* k_bits, uint16_t* v_bits) {
  if (dim <= 0 || dim % 128 != 0) return invalid_argument("dim " + std::to_string(dim) + " is not a multiple of 128");
  if (row_bytes <= 0 || pitch < row_bytes || pitch % 2 != 0) {
    return invalid_argument("pitch " + std::to_string(pitch) + " must be even and >= row_bytes " +
                            std::to_string(row_bytes));
  }
  switch (type) {
    case KvType::turbo3:
      return probe_type<KvType::turbo3>(scaled, rows, row_bytes, pitch, dim, k_bits, v_bits);
    case KvType::turbo4:
      return probe_type<KvType::turbo4>(scaled, rows, row_bytes, pitch, dim, k_bits, v_bits);
    default:
      return invalid_argument(std::string("type ") + std::string(kv_traits(type).name) +
                              " has no register-table fragments (turbo3 and turbo4 do)");
  }
}

}  // namespace kvflash::cuda
