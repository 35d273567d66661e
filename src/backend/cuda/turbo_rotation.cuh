// TurboQuant's rotation on the device (TURBOQUANT.md): a sign-randomized Walsh-Hadamard transform of each
// 128-value group, x -> s2 * H(s1 * x) / sqrt(128) forward and x -> s1 * H(s2 * x) / sqrt(128) inverse. One warp
// rotates one group held as four values per lane (lane l holds x[l], x[l+32], x[l+64], x[l+96]), so no block-wide
// barrier is needed and every warp can work on its own rows.
#pragma once

#include <cstdint>

#include "format/turbo.h"

namespace kvflash::cuda {

/// The 128 signs of s1 or s2 as bits (bit i of word i / 32 set where the sign is -1), as format/turbo.h has them.
struct TurboSignBits {
  uint32_t words[4];
};
constexpr TurboSignBits sign_bits(const uint32_t (&w)[4]) { return TurboSignBits{{w[0], w[1], w[2], w[3]}}; }
// Device copies of format/turbo.h's tables (device code cannot index host constexpr arrays at run time).
static __constant__ TurboSignBits c_turbo_s1 = sign_bits(format::kTurboSigns1);
static __constant__ TurboSignBits c_turbo_s2 = sign_bits(format::kTurboSigns2);

inline constexpr float kTurboInvSqrt128 = format::kTurboHadamardScale;

__device__ __forceinline__ float apply_sign(float x, const TurboSignBits& s, int i) {
  return (s.words[i / 32] >> (i % 32)) & 1u ? -x : x;
}

/// Rotates the group x (x[k] is element lane + 32k) in place: forward (inverse = false) or inverse.
/// Every lane of the warp must call it.
__device__ __forceinline__ void warp_rotate128(float (&x)[4], bool inverse) {
  const int lane = static_cast<int>(threadIdx.x % 32);
  const TurboSignBits& first = inverse ? c_turbo_s2 : c_turbo_s1;
  const TurboSignBits& last = inverse ? c_turbo_s1 : c_turbo_s2;
#pragma unroll
  for (int k = 0; k < 4; ++k) x[k] = apply_sign(x[k], first, lane + 32 * k);
  // Butterflies (a, b) -> (a + b, a - b) between elements h apart, h = 1 .. 16 across lanes.
#pragma unroll
  for (int h = 1; h < 32; h *= 2) {
    const bool upper = (lane & h) != 0;
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const float other = __shfl_xor_sync(0xffffffffu, x[k], h);
      x[k] = upper ? other - x[k] : x[k] + other;
    }
  }
  // h = 32 and 64: partners live in the same lane.
  float a = x[0], b = x[1];
  x[0] = a + b;
  x[1] = a - b;
  a = x[2];
  b = x[3];
  x[2] = a + b;
  x[3] = a - b;
  a = x[0];
  b = x[2];
  x[0] = a + b;
  x[2] = a - b;
  a = x[1];
  b = x[3];
  x[1] = a + b;
  x[3] = a - b;
#pragma unroll
  for (int k = 0; k < 4; ++k) x[k] = apply_sign(x[k] * kTurboInvSqrt128, last, lane + 32 * k);
}

/// Rotates every 128-value group of `rows` rows of `dim` floats (dim a multiple of 128) in shared memory, one
/// group per warp at a time. Call from all threads; synchronize before reading the result from other warps.
__device__ __forceinline__ void rotate_rows_in_smem(float* rows, int n_rows, int row_stride, int dim, bool inverse) {
  const int warp = static_cast<int>(threadIdx.x / 32), lane = static_cast<int>(threadIdx.x % 32);
  const int n_warps = static_cast<int>(blockDim.x / 32);
  const int groups = dim / 128;
  for (int job = warp; job < n_rows * groups; job += n_warps) {
    float* g = rows + static_cast<int64_t>(job / groups) * row_stride + (job % groups) * 128;
    float x[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) x[k] = g[lane + 32 * k];
    warp_rotate128(x, inverse);
#pragma unroll
    for (int k = 0; k < 4; ++k) g[lane + 32 * k] = x[k];
  }
}

}  // namespace kvflash::cuda
