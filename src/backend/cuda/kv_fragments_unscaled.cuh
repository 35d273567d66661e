// K/V fragments for the narrow decode kernel with the block scale left out of the f16 values.
//
// Multiplying every dequantized pair by its block scale (q8_0 / q4_0: d per 32 values; turbo: the norm per 128)
// costs one HMUL2 per two values, a quarter of q4_0's whole dequantization. The scale is constant over a block
// of one key, so it is applied where it costs once per (key, block) instead:
//   K: every MMA k-step (16 head-dim elements) lies within one scale block, the k-steps of a block accumulate into
//      their own scores, and those are scaled per key in f32 (k_scale) and summed;
//   V: P, already per key, is multiplied by the scale of each (key, block) before the PV MMA (load_v's `scale`).
// The layout contract is KvFragments' (kv_fragments.cuh): load_k fills the B fragment of one key row (which the
// transposed QK of decode_narrow.cuh uses as half of an A fragment), load_v the B fragments of 16 keys; k_dim and
// v_dim say which head-dim element each slot holds. Two more factors are exact powers of two:
//   k_query_weight: q4_0's high nibbles come out as 16 (n - 8) (masked in place, no shift), so the query elements
//                   they meet are staged divided by 16;
//   v_tile_weight:  the same for V, where the high nibbles form whole m-tiles of O^T, rescaled once at the end.
// The K loaders of q8_0 and q4_0 need every K row to start on a 4-byte boundary in shared memory (the narrow
// kernel static_asserts its tile geometry), so that they read aligned words without run-time shifts.
// Rows past the key range are zero-filled by the copy, so their scale is 0 and P * scale stays 0, never NaN.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

#include "backend/cuda/kv_fragments.cuh"
#include "backend/cuda/ptx.cuh"
#include "kvflash/kv_type.h"

namespace kvflash::cuda {

namespace detail {

/// Nibbles in bits 4..7 and 20..23 of x -> half2 16 (nibble - 8), exact (1024 + 16n - 1152).
__device__ __forceinline__ __half2 high_nibbles_minus8_x16(uint32_t x) {
  const __half2 offset = __halves2half2(__ushort_as_half(0x6480), __ushort_as_half(0x6480));  // 1152
  return __hsub2(ptx::as_half2(ptx::lop3_and_or(x, 0x00f000f0u, kF16Magic1024x2)), offset);
}

/// N words from a shared address that is 2 mod 4 (a block's values after its f16 scale, when the block starts on a
/// 4-byte boundary): aligned loads and one byte permute per word.
template <int N>
__device__ __forceinline__ void load_words_2mod4(const uint8_t* p, uint32_t (&w)[N]) {
  uint32_t x[N + 1];
#pragma unroll
  for (int k = 0; k <= N; ++k) x[k] = lds_u32(p - 2 + 4 * k);
#pragma unroll
  for (int k = 0; k < N; ++k) w[k] = __byte_perm(x[k], x[k + 1], 0x5432);
}

template <int N>
__device__ __forceinline__ void load_words_aligned(const uint8_t* p, uint32_t (&w)[N]) {
#pragma unroll
  for (int k = 0; k < N; ++k) w[k] = lds_u32(p + 4 * k);
}

__device__ __forceinline__ float f16_bits_to_float(uint32_t bits) {
  return __half2float(__ushort_as_half(static_cast<uint16_t>(bits)));
}

}  // namespace detail

template <KvType Type>
struct KvUnscaledFragments;

// ---- f16: no scale; the plain fragments. ----
template <>
struct KvUnscaledFragments<KvType::f16> : KvFragments<KvType::f16> {
  static constexpr bool kHasScale = false;
  static constexpr int kKStepsPerScale = 1;  // unused
  __host__ __device__ static constexpr float k_query_weight(int, int, int) { return 1.0f; }
  __device__ __forceinline__ static float k_scale(const uint8_t*, int, int, int) { return 1.0f; }
  __device__ __forceinline__ static void load_v(const uint8_t* tile, int row_stride, int key0, int vu, int lane,
                                                uint32_t (&b)[4][2], Centroids c, __half2 (&)[2]) {
    KvFragments<KvType::f16>::load_v(tile, row_stride, key0, vu, lane, b, c);
  }
  __host__ __device__ static constexpr float v_tile_weight(int) { return 1.0f; }
};

// ---- q8_0: blocks of 32 {f16 d; int8 qs[32]}. ----
template <>
struct KvUnscaledFragments<KvType::q8_0> {
  static constexpr bool kNeedsCentroids = false;
  static constexpr bool kHasScale = true;
  static constexpr int kBlockBytes = 34;
  static constexpr int kKStepsPerScale = 2;

  // Thread (g, t) reads bytes 8t..8t+7 of blocks 2u and 2u + 1 of key key0 + g: k-steps 2b and 2b + 1 of block b
  // hold its first and second word.
  __device__ __forceinline__ static void load_k(const uint8_t* tile, int row_stride, int key0, int u, int lane,
                                                uint32_t (&b)[8], Centroids) {
    const int t = lane % 4;
    const uint8_t* row = tile + (key0 + lane / 4) * row_stride + kBlockBytes * 2 * u + 2 + 8 * t;
#pragma unroll
    for (int blk = 0; blk < 2; ++blk) {
      uint32_t w[2];  // rows start 4-byte aligned (kAlignedRows): block 2u at 0 mod 4, its values at 2 mod 4
      if (blk == 0) {
        detail::load_words_2mod4<2>(row, w);
      } else {
        detail::load_words_aligned<2>(row + kBlockBytes, w);
      }
#pragma unroll
      for (int k = 0; k < 2; ++k) {
        __half2 lo, hi;
        detail::i8x4_to_half2x2(w[k], lo, hi);
        b[4 * blk + 2 * k] = ptx::as_u32(lo);
        b[4 * blk + 2 * k + 1] = ptx::as_u32(hi);
      }
    }
  }
  __host__ __device__ static constexpr int k_dim(int u, int t, int i) {
    const int c = i / 4, r = (i / 2) % 2, e = i % 2;
    return 32 * (2 * u + c / 2) + 8 * t + 4 * (c % 2) + 2 * r + e;
  }
  __host__ __device__ static constexpr float k_query_weight(int, int, int) { return 1.0f; }
  __device__ __forceinline__ static float k_scale(const uint8_t* tile, int row_stride, int key, int block) {
    return detail::f16_bits_to_float(detail::lds_u16(tile + key * row_stride + kBlockBytes * block));
  }

  __device__ __forceinline__ static void load_v(const uint8_t* tile, int row_stride, int key0, int vu, int lane,
                                                uint32_t (&b)[4][2], Centroids, __half2 (&scale)[2]) {
    KvFragments<KvType::q8_0>::load_v_unscaled(tile, row_stride, key0, vu, lane, b, scale);
  }
  __host__ __device__ static constexpr int v_dim(int vu, int col, int j) { return 32 * vu + 4 * col + j; }
  __host__ __device__ static constexpr float v_tile_weight(int) { return 1.0f; }
};

// ---- q4_0: blocks of 32 {f16 d; u8 qs[16]}, value j = (nibble - 8) d, low nibbles j < 16, high j >= 16. ----
template <>
struct KvUnscaledFragments<KvType::q4_0> {
  static constexpr bool kNeedsCentroids = false;
  static constexpr bool kHasScale = true;
  static constexpr int kBlockBytes = 18;
  static constexpr int kKStepsPerScale = 2;

  // Thread (g, t) reads bytes 4t..4t+3 of blocks 2u and 2u + 1 of key key0 + g: k-step 2b of block b is their low
  // nibbles, k-step 2b + 1 their high nibbles (times 16).
  __device__ __forceinline__ static void load_k(const uint8_t* tile, int row_stride, int key0, int u, int lane,
                                                uint32_t (&b)[8], Centroids) {
    const int t = lane % 4;
    const uint8_t* row = tile + (key0 + lane / 4) * row_stride + kBlockBytes * 2 * u + 2 + 4 * t;
#pragma unroll
    for (int blk = 0; blk < 2; ++blk) {
      uint32_t w[1];  // rows start 4-byte aligned (kAlignedRows): block 2u at 0 mod 4, its values at 2 mod 4
      if (blk == 0) {
        detail::load_words_2mod4<1>(row, w);
      } else {
        detail::load_words_aligned<1>(row + kBlockBytes, w);
      }
      const uint32_t odd = w[0] >> 8;  // bytes 1 and 3 in the low bits of each half
      b[4 * blk + 0] = ptx::as_u32(detail::nibbles_minus8(w[0]));
      b[4 * blk + 1] = ptx::as_u32(detail::nibbles_minus8(odd));
      b[4 * blk + 2] = ptx::as_u32(detail::high_nibbles_minus8_x16(w[0]));
      b[4 * blk + 3] = ptx::as_u32(detail::high_nibbles_minus8_x16(odd));
    }
  }
  __host__ __device__ static constexpr int k_dim(int u, int t, int i) {
    const int c = i / 4, r = (i / 2) % 2, e = i % 2;
    return 32 * (2 * u + c / 2) + 16 * (c % 2) + 4 * t + r + 2 * e;
  }
  __host__ __device__ static constexpr float k_query_weight(int, int, int i) { return (i / 4) % 2 ? 0.0625f : 1.0f; }
  __device__ __forceinline__ static float k_scale(const uint8_t* tile, int row_stride, int key, int block) {
    return detail::f16_bits_to_float(detail::lds_u16(tile + key * row_stride + kBlockBytes * block));
  }

  // Thread (g, t) reads bytes 2g, 2g+1 of block vu of keys 2t, 2t+1, 2t+8, 2t+9: values 2g, 2g+1, 16+2g, 17+2g.
  __device__ __forceinline__ static void load_v(const uint8_t* tile, int row_stride, int key0, int vu, int lane,
                                                uint32_t (&b)[4][2], Centroids, __half2 (&scale)[2]) {
    const int g = lane / 4, t = lane % 4;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const uint8_t* ba = tile + (key0 + 2 * t + 8 * r) * row_stride + kBlockBytes * vu;
      const uint8_t* bb = ba + row_stride;
      const uint32_t w = detail::lds_u16(ba + 2 + 2 * g) | detail::lds_u16(bb + 2 + 2 * g) << 16;
      scale[r] = detail::half2_from_bits(detail::lds_u16(ba), detail::lds_u16(bb));
      const uint32_t odd = w >> 8;
      b[0][r] = ptx::as_u32(detail::nibbles_minus8(w));
      b[1][r] = ptx::as_u32(detail::nibbles_minus8(odd));
      b[2][r] = ptx::as_u32(detail::high_nibbles_minus8_x16(w));
      b[3][r] = ptx::as_u32(detail::high_nibbles_minus8_x16(odd));
    }
  }
  __host__ __device__ static constexpr int v_dim(int vu, int col, int j) {
    return 32 * vu + (j / 2) * 16 + 2 * col + j % 2;
  }
  // O^T m-tile h of a unit is built from n-tiles 2h, 2h + 1: h = 1 holds the high nibbles.
  __host__ __device__ static constexpr float v_tile_weight(int h) { return h == 1 ? 0.0625f : 1.0f; }
};

// ---- turbo3 / turbo4: centroids by index (register tables), one norm per 128-value block (rotated domain). ----
template <KvType Type>
struct KvUnscaledTurbo : TurboRows<Type> {
  static constexpr bool kNeedsCentroids = true;  // the table words (turbo_centroids.cuh's load_centroids_f16)
  static constexpr bool kHasScale = true;
  static constexpr int kKStepsPerScale = 8;
  using TurboRows<Type>::kBlockBytes;

  __device__ __forceinline__ static void load_k(const uint8_t* tile, int row_stride, int key0, int u, int lane,
                                                uint32_t (&b)[8], Centroids c) {
    TurboRows<Type>::load_k(tile, row_stride, key0, u, lane, b, c);
  }
  __host__ __device__ static constexpr float k_query_weight(int, int, int) { return 1.0f; }
  __device__ __forceinline__ static float k_scale(const uint8_t* tile, int row_stride, int key, int block) {
    return detail::f16_bits_to_float(TurboRows<Type>::norm_bits(tile + key * row_stride, block));
  }

  __device__ __forceinline__ static void load_v(const uint8_t* tile, int row_stride, int key0, int vu, int lane,
                                                uint32_t (&b)[4][2], Centroids c, __half2 (&scale)[2]) {
    uint32_t norm[2];
    TurboRows<Type>::load_v(tile, row_stride, key0, vu, lane, b, c, norm);
    scale[0] = ptx::as_half2(norm[0]);
    scale[1] = ptx::as_half2(norm[1]);
  }
  __host__ __device__ static constexpr float v_tile_weight(int) { return 1.0f; }
};

template <>
struct KvUnscaledFragments<KvType::turbo3> : KvUnscaledTurbo<KvType::turbo3> {};
template <>
struct KvUnscaledFragments<KvType::turbo4> : KvUnscaledTurbo<KvType::turbo4> {};

}  // namespace kvflash::cuda
