// Stored K/V rows in shared memory -> f16 tensor-core fragments, dequantized in registers, one struct per KvType.
//
// A tile holds `rows` K (or V) rows exactly as stored (a block-quantized row is its blocks, back to back), each row
// `row_stride` bytes apart. The decode kernel computes S = Q K^T and O += P V with m16n8k16 MMAs, so
//   - K rows feed the B operand of S (k index = head dim, n index = key), and
//   - V rows feed the B operand of O (k index = key, n index = head dim).
// The order of the head dim inside a dot product is free, so each format picks the order in which its bytes
// unpack cheapest and says which head-dim element each fragment slot holds (k_dim / v_dim): the query is staged in
// the matching order once per CTA, and the output is stored through v_dim.
//
// K, for the 8 keys key0..key0+7 of an n-tile and the 64-element unit u of the (stored) head dim: load_k fills
// b[2c + r] = register r of the B fragment of k-step 4u + c, for c = 0..3. In the thread with t = lane % 4, value
// i = 0..15 of its 16 (b[i / 2], low half for even i) sits at k-step c = i / 4, k index 2t + (i % 2) + 8((i / 2) % 2);
// k_dim(u, t, i) is the head-dim element it holds.
//
// V, for the 16 keys key0..key0+15 of a k-step and the 32-element unit vu of the head dim: load_v fills b[j][r] =
// register r of the B fragment of n-tile j = 0..3; v_dim(vu, col, j) is the head-dim element of column col of
// n-tile j.
//
// Quantized values become f16 as q * d (one rounding); a cache whose dequantized values exceed the f16 range is
// outside what these kernels promise (the generic kernel computes in f32).
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

#include "backend/cuda/ptx.cuh"
#include "backend/cuda/turbo_lookup.cuh"
#include "kvflash/attention_problem.h"
#include "kvflash/kv_type.h"

namespace kvflash::cuda {

struct Centroids {
  const __half* table = nullptr;  // turbo centroids in shared memory, by index; unused for other types
};

namespace detail {

__device__ __forceinline__ uint32_t lds_u16(const uint8_t* p) { return *reinterpret_cast<const uint16_t*>(p); }
__device__ __forceinline__ uint32_t lds_u32(const uint8_t* p) { return *reinterpret_cast<const uint32_t*>(p); }

/// N little-endian 32-bit words starting at a 2-byte-aligned shared address: aligned loads and funnel shifts.
template <int N>
__device__ __forceinline__ void load_words(const uint8_t* p, uint32_t (&w)[N]) {
  const uintptr_t address = reinterpret_cast<uintptr_t>(p);
  const uint8_t* base = p - (address & 3u);
  const uint32_t shift = static_cast<uint32_t>(address & 3u) * 8u;
  uint32_t x[N + 1];
#pragma unroll
  for (int k = 0; k <= N; ++k) x[k] = lds_u32(base + 4 * k);
#pragma unroll
  for (int k = 0; k < N; ++k) w[k] = __funnelshift_r(x[k], x[k + 1], shift);
}

__device__ __forceinline__ __half2 half2_from_bits(uint32_t lo, uint32_t hi) {
  return ptx::as_half2((lo & 0xffffu) | (hi << 16));
}

// 0x6400 is 1024 in f16, where the spacing of f16 values is 1: OR-ing a small unsigned integer n into the mantissa
// gives 1024 + n exactly, and one subtraction recovers the integer with no conversion instruction.
inline constexpr uint32_t kF16Magic1024x2 = 0x64006400u;

/// Four signed bytes (two's complement) to two half2 of (byte0, byte1) and (byte2, byte3), exact.
__device__ __forceinline__ void i8x4_to_half2x2(uint32_t w, __half2& lo, __half2& hi) {
  const uint32_t biased = w ^ 0x80808080u;  // byte + 128, in 0..255
  const __half2 offset = __halves2half2(__ushort_as_half(0x6480), __ushort_as_half(0x6480));  // 1152 = 1024 + 128
  lo = __hsub2(ptx::as_half2(__byte_perm(biased, 0x64646464u, 0x4140)), offset);
  hi = __hsub2(ptx::as_half2(__byte_perm(biased, 0x64646464u, 0x4342)), offset);
}

/// Nibbles in bits 0..3 and 16..19 of x -> half2 (nibble - 8), exact.
__device__ __forceinline__ __half2 nibbles_minus8(uint32_t x) {
  const __half2 offset = __halves2half2(__ushort_as_half(0x6408), __ushort_as_half(0x6408));  // 1032 = 1024 + 8
  return __hsub2(ptx::as_half2(ptx::lop3_and_or(x, 0x000f000fu, kF16Magic1024x2)), offset);
}

}  // namespace detail

template <KvType Type>
struct KvFragments;

// ---- f16: rows are plain halves; ldmatrix reads fragments straight from the tile. ----
template <>
struct KvFragments<KvType::f16> {
  static constexpr bool kNeedsCentroids = false;

  __device__ __forceinline__ static void load_k(const uint8_t* tile, int row_stride, int key0, int u, int lane,
                                                uint32_t (&b)[8], Centroids) {
    const uint8_t* row = tile + (key0 + lane % 8) * row_stride + 128 * u + 16 * (lane / 8);
    uint32_t lo[4], hi[4];
    ptx::ldmatrix_x4(lo, row);
    ptx::ldmatrix_x4(hi, row + 64);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      b[k] = lo[k];
      b[4 + k] = hi[k];
    }
  }
  __host__ __device__ static constexpr int k_dim(int u, int t, int i) {
    return 64 * u + 16 * (i / 4) + 8 * ((i / 2) % 2) + 2 * t + i % 2;
  }

  __device__ __forceinline__ static void load_v(const uint8_t* tile, int row_stride, int key0, int vu, int lane,
                                                uint32_t (&b)[4][2], Centroids) {
    const uint8_t* row = tile + (key0 + lane % 8 + 8 * ((lane / 8) % 2)) * row_stride + 64 * vu + 16 * (lane / 16);
    uint32_t r0[4], r1[4];
    ptx::ldmatrix_x4_trans(r0, row);
    ptx::ldmatrix_x4_trans(r1, row + 32);
    b[0][0] = r0[0];
    b[0][1] = r0[1];
    b[1][0] = r0[2];
    b[1][1] = r0[3];
    b[2][0] = r1[0];
    b[2][1] = r1[1];
    b[3][0] = r1[2];
    b[3][1] = r1[3];
  }
  __host__ __device__ static constexpr int v_dim(int vu, int col, int j) { return 32 * vu + 8 * j + col; }
};

// ---- q8_0: blocks of 32 {f16 d; int8 qs[32]}, value = qs * d. ----
template <>
struct KvFragments<KvType::q8_0> {
  static constexpr bool kNeedsCentroids = false;
  static constexpr int kBlockBytes = 34;

  // Thread (g, t) reads half t % 2 of block 2u + t / 2 of key key0 + g: 16 consecutive values.
  __device__ __forceinline__ static void load_k(const uint8_t* tile, int row_stride, int key0, int u, int lane,
                                                uint32_t (&b)[8], Centroids) {
    const int t = lane % 4;
    const uint8_t* block = tile + (key0 + lane / 4) * row_stride + kBlockBytes * (2 * u + t / 2);
    const __half d = __ushort_as_half(static_cast<uint16_t>(detail::lds_u16(block)));
    const __half2 d2 = __halves2half2(d, d);
    uint32_t w[4];
    detail::load_words<4>(block + 2 + 16 * (t % 2), w);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      __half2 lo, hi;
      detail::i8x4_to_half2x2(w[k], lo, hi);
      b[2 * k] = ptx::as_u32(__hmul2(lo, d2));
      b[2 * k + 1] = ptx::as_u32(__hmul2(hi, d2));
    }
  }
  __host__ __device__ static constexpr int k_dim(int u, int t, int i) { return 64 * u + 16 * t + i; }

  // Thread (g, t) reads values 4g..4g+3 of block vu of keys 2t, 2t+1, 2t+8, 2t+9: the int8 values as halves, and
  // the block scales of the two key pairs (r = 0: keys 2t, 2t+1; r = 1: keys 2t+8, 2t+9) in `scale`. The unscaled
  // decode fragments (kv_fragments_unscaled.cuh) apply the scale to P instead.
  __device__ __forceinline__ static void load_v_unscaled(const uint8_t* tile, int row_stride, int key0, int vu,
                                                         int lane, uint32_t (&b)[4][2], __half2 (&scale)[2]) {
    const int g = lane / 4, t = lane % 4;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const uint8_t* ba = tile + (key0 + 2 * t + 8 * r) * row_stride + kBlockBytes * vu;
      const uint8_t* bb = ba + row_stride;
      const uint32_t wa = detail::lds_u16(ba + 2 + 4 * g) | detail::lds_u16(ba + 4 + 4 * g) << 16;
      const uint32_t wb = detail::lds_u16(bb + 2 + 4 * g) | detail::lds_u16(bb + 4 + 4 * g) << 16;
      scale[r] = detail::half2_from_bits(detail::lds_u16(ba), detail::lds_u16(bb));
      const uint32_t xa = wa ^ 0x80808080u, xb = wb ^ 0x80808080u;
      const uint32_t t0 = __byte_perm(xa, xb, 0x5410);  // a0 a1 b0 b1
      const uint32_t t1 = __byte_perm(xa, xb, 0x7632);  // a2 a3 b2 b3
      const __half2 offset = __halves2half2(__ushort_as_half(0x6480), __ushort_as_half(0x6480));
      const uint32_t pairs[4] = {__byte_perm(t0, 0x64646464u, 0x4240), __byte_perm(t0, 0x64646464u, 0x4341),
                                 __byte_perm(t1, 0x64646464u, 0x4240), __byte_perm(t1, 0x64646464u, 0x4341)};
#pragma unroll
      for (int j = 0; j < 4; ++j) b[j][r] = ptx::as_u32(__hsub2(ptx::as_half2(pairs[j]), offset));
    }
  }
  __device__ __forceinline__ static void load_v(const uint8_t* tile, int row_stride, int key0, int vu, int lane,
                                                uint32_t (&b)[4][2], Centroids) {
    __half2 scale[2];
    load_v_unscaled(tile, row_stride, key0, vu, lane, b, scale);
#pragma unroll
    for (int r = 0; r < 2; ++r) {
#pragma unroll
      for (int j = 0; j < 4; ++j) b[j][r] = ptx::as_u32(__hmul2(ptx::as_half2(b[j][r]), scale[r]));
    }
  }
  __host__ __device__ static constexpr int v_dim(int vu, int col, int j) { return 32 * vu + 4 * col + j; }
};

// ---- q4_0: blocks of 32 {f16 d; u8 qs[16]}, value j = (nibble - 8) * d, low nibbles j < 16, high j >= 16. ----
template <>
struct KvFragments<KvType::q4_0> {
  static constexpr bool kNeedsCentroids = false;
  static constexpr int kBlockBytes = 18;

  // Thread (g, t) reads bytes 8h..8h+7 (h = t % 2) of block 2u + t / 2 of key key0 + g: both nibbles of each.
  __device__ __forceinline__ static void load_k(const uint8_t* tile, int row_stride, int key0, int u, int lane,
                                                uint32_t (&b)[8], Centroids) {
    const int t = lane % 4;
    const uint8_t* block = tile + (key0 + lane / 4) * row_stride + kBlockBytes * (2 * u + t / 2);
    const __half d = __ushort_as_half(static_cast<uint16_t>(detail::lds_u16(block)));
    const __half2 d2 = __halves2half2(d, d);
    uint32_t w[2];
    detail::load_words<2>(block + 2 + 8 * (t % 2), w);
#pragma unroll
    for (int k = 0; k < 2; ++k) {
      b[4 * k + 0] = ptx::as_u32(__hmul2(detail::nibbles_minus8(w[k]), d2));        // lo(byte0), lo(byte2)
      b[4 * k + 1] = ptx::as_u32(__hmul2(detail::nibbles_minus8(w[k] >> 8), d2));   // lo(byte1), lo(byte3)
      b[4 * k + 2] = ptx::as_u32(__hmul2(detail::nibbles_minus8(w[k] >> 4), d2));   // hi(byte0), hi(byte2)
      b[4 * k + 3] = ptx::as_u32(__hmul2(detail::nibbles_minus8(w[k] >> 12), d2));  // hi(byte1), hi(byte3)
    }
  }
  __host__ __device__ static constexpr int k_dim(int u, int t, int i) {
    const int reg = i / 2, word = reg / 4, kind = reg % 4;
    const int byte = 4 * word + (kind % 2) + 2 * (i % 2);  // byte of the thread's 8
    const int high = kind / 2;
    return 32 * (2 * u + t / 2) + 16 * high + 8 * (t % 2) + byte;
  }

  // Thread (g, t) reads bytes 2g, 2g+1 of block vu of keys 2t, 2t+1, 2t+8, 2t+9: values 2g, 2g+1, 16+2g, 17+2g.
  __device__ __forceinline__ static void load_v(const uint8_t* tile, int row_stride, int key0, int vu, int lane,
                                                uint32_t (&b)[4][2], Centroids) {
    const int g = lane / 4, t = lane % 4;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const uint8_t* ba = tile + (key0 + 2 * t + 8 * r) * row_stride + kBlockBytes * vu;
      const uint8_t* bb = ba + row_stride;
      const uint32_t w = detail::lds_u16(ba + 2 + 2 * g) | detail::lds_u16(bb + 2 + 2 * g) << 16;
      const __half2 d2 = detail::half2_from_bits(detail::lds_u16(ba), detail::lds_u16(bb));
      b[0][r] = ptx::as_u32(__hmul2(detail::nibbles_minus8(w), d2));
      b[1][r] = ptx::as_u32(__hmul2(detail::nibbles_minus8(w >> 8), d2));
      b[2][r] = ptx::as_u32(__hmul2(detail::nibbles_minus8(w >> 4), d2));
      b[3][r] = ptx::as_u32(__hmul2(detail::nibbles_minus8(w >> 12), d2));
    }
  }
  __host__ __device__ static constexpr int v_dim(int vu, int col, int j) {
    return 32 * vu + (j / 2) * 16 + 2 * col + j % 2;
  }
};

// ---- turbo3 / turbo4: blocks of 128 values, one f16 norm each, centroids by index (rotated domain). ----
// TurboRows reads the centroids (turbo_lookup.cuh: register tables, no shared-memory lookups) and leaves the norm
// out; KvFragments multiplies it in (one HMUL2 per pair, as q8_0 / q4_0 do with d), the narrow decode kernel
// applies it per (key, block) instead (kv_fragments_unscaled.cuh).
//   turbo3 = {f16 norm; u8 qs[32] (2-bit low index); u8 signs[16] (index bit 2)}, 50 bytes: rows may start at any
//   even address (span copies put rows 50 bytes apart), so words are read as two aligned u16.
//   turbo4 = {f16 norm; f16 rnorm; u8 qs[64] (4-bit index, even value in the low nibble)}, 68 bytes: 4-byte aligned.
template <KvType Type>
struct TurboRows {
  static_assert(Type == KvType::turbo3 || Type == KvType::turbo4);
  static constexpr int kBlockBytes = Type == KvType::turbo3 ? 50 : 68;

  /// The norm of `block` of a row, as f16 bits.
  __device__ __forceinline__ static uint32_t norm_bits(const uint8_t* row, int block) {
    return detail::lds_u16(row + kBlockBytes * block);
  }

  // Thread (g, t) reads values 64(u % 2) + 16t .. +15 of block u / 2 of key key0 + g.
  __device__ __forceinline__ static void load_k(const uint8_t* tile, int row_stride, int key0, int u, int lane,
                                                uint32_t (&b)[8], Centroids c) {
    const int t = lane % 4;
    const uint8_t* block = tile + (key0 + lane / 4) * row_stride + kBlockBytes * (u / 2);
    const turbo::TableRegs regs = turbo::load_table_regs(c.table);
    if constexpr (Type == KvType::turbo3) {
      const uint8_t* qs = block + 2 + 16 * (u % 2) + 4 * t;
      const uint32_t q = turbo::join16(detail::lds_u16(qs), detail::lds_u16(qs + 2));
      const uint32_t s = detail::lds_u16(block + 34 + 8 * (u % 2) + 2 * t);
      uint32_t even, odd;
      turbo::turbo3_selectors(q, s, regs, even, odd);
      const turbo::Bytes4 e0 = turbo::lookup4<Type>(even, regs);
      const turbo::Bytes4 e1 = turbo::lookup4<Type>(turbo::high_half(even), regs);
      const turbo::Bytes4 o0 = turbo::lookup4<Type>(odd, regs);
      const turbo::Bytes4 o1 = turbo::lookup4<Type>(turbo::high_half(odd), regs);
      b[0] = turbo::pair<0, 1>(e0);
      b[1] = turbo::pair<2, 3>(e0);
      b[2] = turbo::pair<0, 1>(e1);
      b[3] = turbo::pair<2, 3>(e1);
      b[4] = turbo::pair<0, 1>(o0);
      b[5] = turbo::pair<2, 3>(o0);
      b[6] = turbo::pair<0, 1>(o1);
      b[7] = turbo::pair<2, 3>(o1);
    } else {
      const uint8_t* qs = block + 4 + 32 * (u % 2) + 8 * t;
      uint32_t lo[4], hi[4];
      turbo::turbo4_pairs(detail::lds_u32(qs), regs, lo);
      turbo::turbo4_pairs(detail::lds_u32(qs + 4), regs, hi);
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        b[k] = lo[k];
        b[4 + k] = hi[k];
      }
    }
  }
  // turbo3: b[k] holds the even values 4k, 4k + 2 (k < 4), then the odd ones; turbo4: values 2k, 2k + 1.
  __host__ __device__ static constexpr int k_dim(int u, int t, int i) {
    const int k = i / 2, e = i % 2;
    const int local = Type == KvType::turbo3 ? 4 * (k % 4) + 2 * e + k / 4 : i;
    return 64 * u + 16 * t + local;
  }

  // Keys 2t, 2t+1, 2t+8, 2t+9 (a, b of r = 0, 1); `norm[r]` = (norm of a, norm of b) of block vu / 4.
  // turbo3: thread g reads values 16g .. 16g + 15 of the block (the same words for every vu of a block, so the
  // compiler loads them and builds their selectors once) and takes 4 of them per vu. turbo4: values
  // 32(vu % 4) + 4g .. +3.
  __device__ __forceinline__ static void load_v(const uint8_t* tile, int row_stride, int key0, int vu, int lane,
                                                uint32_t (&b)[4][2], Centroids c, uint32_t (&norm)[2]) {
    const int g = lane / 4, t = lane % 4, quarter = vu % 4;
    const turbo::TableRegs regs = turbo::load_table_regs(c.table);
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const uint8_t* ba = tile + (key0 + 2 * t + 8 * r) * row_stride + kBlockBytes * (vu / 4);
      const uint8_t* bb = ba + row_stride;
      norm[r] = turbo::join16(detail::lds_u16(ba), detail::lds_u16(bb));
      uint32_t pairs[4];
      if constexpr (Type == KvType::turbo3) {
        const uint32_t qa = turbo::join16(detail::lds_u16(ba + 2 + 4 * g), detail::lds_u16(ba + 4 + 4 * g));
        const uint32_t qb = turbo::join16(detail::lds_u16(bb + 2 + 4 * g), detail::lds_u16(bb + 4 + 4 * g));
        uint32_t even_a, odd_a, even_b, odd_b;
        turbo::turbo3_selectors(qa, detail::lds_u16(ba + 34 + 2 * g), regs, even_a, odd_a);
        turbo::turbo3_selectors(qb, detail::lds_u16(bb + 34 + 2 * g), regs, even_b, odd_b);
        // Byte `quarter` of a selector holds values 4 quarter (+ 2) (even) or 4 quarter + 1 (+ 2) (odd).
        const uint32_t pick = quarter | (quarter + 4) << 4;
        const turbo::Bytes4 e = turbo::lookup4<Type>(__byte_perm(even_a, even_b, pick), regs);
        const turbo::Bytes4 o = turbo::lookup4<Type>(__byte_perm(odd_a, odd_b, pick), regs);
        pairs[0] = turbo::pair<0, 2>(e);
        pairs[1] = turbo::pair<1, 3>(e);
        pairs[2] = turbo::pair<0, 2>(o);
        pairs[3] = turbo::pair<1, 3>(o);
      } else {
        turbo::turbo4_key_pairs(detail::lds_u16(ba + 4 + 16 * quarter + 2 * g),
                                detail::lds_u16(bb + 4 + 16 * quarter + 2 * g), regs, pairs);
      }
#pragma unroll
      for (int j = 0; j < 4; ++j) b[j][r] = pairs[j];
    }
  }
  // turbo3: pairs 0..3 are local values 0, 2, 1, 3 of the vu's four.
  __host__ __device__ static constexpr int v_dim(int vu, int col, int j) {
    if constexpr (Type == KvType::turbo3) return 128 * (vu / 4) + 16 * col + 4 * (vu % 4) + 2 * (j % 2) + j / 2;
    return 32 * vu + 4 * col + j;
  }
};

template <KvType Type>
struct KvTurboFragments : TurboRows<Type> {
  static constexpr bool kNeedsCentroids = true;  // the table words (turbo_centroids.cuh's load_centroids_f16)
  using TurboRows<Type>::kBlockBytes;

  __device__ __forceinline__ static void load_k(const uint8_t* tile, int row_stride, int key0, int u, int lane,
                                                uint32_t (&b)[8], Centroids c) {
    TurboRows<Type>::load_k(tile, row_stride, key0, u, lane, b, c);
    const uint32_t n = TurboRows<Type>::norm_bits(tile + (key0 + lane / 4) * row_stride, u / 2);
    const __half2 n2 = detail::half2_from_bits(n, n);
#pragma unroll
    for (int k = 0; k < 8; ++k) b[k] = ptx::as_u32(__hmul2(ptx::as_half2(b[k]), n2));
  }

  __device__ __forceinline__ static void load_v(const uint8_t* tile, int row_stride, int key0, int vu, int lane,
                                                uint32_t (&b)[4][2], Centroids c) {
    uint32_t norm[2];
    TurboRows<Type>::load_v(tile, row_stride, key0, vu, lane, b, c, norm);
#pragma unroll
    for (int r = 0; r < 2; ++r)
#pragma unroll
      for (int j = 0; j < 4; ++j) b[j][r] = ptx::as_u32(__hmul2(ptx::as_half2(b[j][r]), ptx::as_half2(norm[r])));
  }
};

template <>
struct KvFragments<KvType::turbo3> : KvTurboFragments<KvType::turbo3> {};
template <>
struct KvFragments<KvType::turbo4> : KvTurboFragments<KvType::turbo4> {};

/// Whether Frag's k_dim visits every element of a `dim`-wide head exactly once (dim a multiple of 64): the query is
/// staged through it, so a slot left out or doubled would silently drop or double a product.
template <class Frag>
constexpr bool k_dims_are_a_permutation(int dim) {
  bool seen[4 * kMaxHeadDim] = {};
  for (int u = 0; u < dim / 64; ++u)
    for (int t = 0; t < 4; ++t)
      for (int i = 0; i < 16; ++i) {
        const int d = Frag::k_dim(u, t, i);
        if (d < 0 || d >= dim || seen[d]) return false;
        seen[d] = true;
      }
  return true;
}

/// The same for v_dim over a `dim`-wide V head (dim a multiple of 32): the output is stored through it.
template <class Frag>
constexpr bool v_dims_are_a_permutation(int dim) {
  bool seen[4 * kMaxHeadDim] = {};
  for (int vu = 0; vu < dim / 32; ++vu)
    for (int col = 0; col < 8; ++col)
      for (int j = 0; j < 4; ++j) {
        const int d = Frag::v_dim(vu, col, j);
        if (d < 0 || d >= dim || seen[d]) return false;
        seen[d] = true;
      }
  return true;
}

/// Whether the fragment loaders cover a type (the decode kernel's instances are limited to these).
constexpr bool has_fragments(KvType t) {
  return t == KvType::f16 || t == KvType::q8_0 || t == KvType::q4_0 || t == KvType::turbo3 || t == KvType::turbo4;
}

}  // namespace kvflash::cuda
