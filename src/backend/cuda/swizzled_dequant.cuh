// Block-quantized K/V rows (as stored, copied to shared memory) -> the f16 128-byte-swizzled tile the wgmma prefill
// reads (prefill_wgmma.cuh), so that its consumers are the same for every cache type and no dequantized copy of the
// cache ever exists outside the SM. One GGML block (32 values, four 16-byte chunks of f16) per call.
// Values become f16 as q * d (one rounding), as in kv_fragments.cuh.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

#include "backend/cuda/kv_fragments.cuh"
#include "backend/cuda/ptx.cuh"
#include "backend/cuda/turbo_lookup.cuh"
#include "kvflash/kv_type.h"

namespace kvflash::cuda {

/// Whether the wgmma prefill kernels have a producer for `t` (f16 is copied as is): the GGML blocks (the
/// warp-specialized kernel has rows for both; the one-role kernel only for q4_0, its q8_0 being correct but measured
/// slower than cuda.prefill.q8_0, bench/prefill_notes.md w2) and the turbo blocks (the warp-specialized kernel, which
/// also rotates the query and the output).
constexpr bool has_swizzled_dequant(KvType t) {
  return t == KvType::q8_0 || t == KvType::q4_0 || t == KvType::turbo3 || t == KvType::turbo4;
}

template <KvType Type>
struct SwizzledDequant;

namespace detail {

/// half2(d, d) of the f16 scale at the start of a block, from the block's first aligned word: its low half where the
/// block starts on the word (`odd` false), its high half where it starts 2 bytes in.
__device__ __forceinline__ __half2 block_scale2(uint32_t first_word, bool odd) {
  return ptx::as_half2(__byte_perm(first_word, 0, odd ? 0x3232u : 0x1010u));
}

/// Quantized word k of a block whose quants start 2 bytes after the block: a funnel shift of the aligned words by
/// 16 bits (block on a word) or 32 (block 2 bytes in, where the quants are word-aligned).
__device__ __forceinline__ uint32_t block_quant_word(uint32_t lo, uint32_t hi, bool odd) {
  return __funnelshift_rc(lo, hi, odd ? 32u : 16u);
}

/// half2(norm, norm) of a turbo row, whose f16 norm comes first (both turbo layouts).
__device__ __forceinline__ __half2 turbo_norm2(const uint8_t* row) {
  const uint32_t norm = lds_u16(row);
  return ptx::as_half2(norm | norm << 16);
}

}  // namespace detail

// Both types: GGML blocks of 32 values {f16 d; quants} in rows of four blocks (128 head dims) that start 8-byte
// aligned (136- and 72-byte rows back to back), so a block starts on a 32-bit word or 2 bytes into one (`odd`).
// block() turns the kWords aligned words from the one holding the block's first byte into the four 16-byte f16
// chunks of its values (head dims 32b + 8p .. + 7 in chunk p): aligned 32-bit loads, funnel shifts, magic-number
// conversions, no per-byte work (the 16-bit loads and byte shuffles of a per-chunk version were 5 instructions per
// value; this is about 2).

// q8_0: {f16 d; int8 qs[32]}, 34 bytes.
template <>
struct SwizzledDequant<KvType::q8_0> {
  static constexpr int kBlockBytes = 34;
  static constexpr int kWords = 9;  // 2 pad bytes + 34 bytes, or 34 + 2
  __device__ __forceinline__ static void block(const uint32_t (&x)[kWords], bool odd, uint4 (&chunk)[4]) {
    const __half2 d2 = detail::block_scale2(x[0], odd);
#pragma unroll
    for (int p = 0; p < 4; ++p) {
      uint32_t h[4];
#pragma unroll
      for (int k = 0; k < 2; ++k) {
        __half2 lo, hi;
        detail::i8x4_to_half2x2(detail::block_quant_word(x[2 * p + k], x[2 * p + k + 1], odd), lo, hi);
        h[2 * k] = ptx::as_u32(__hmul2(lo, d2));
        h[2 * k + 1] = ptx::as_u32(__hmul2(hi, d2));
      }
      chunk[p] = make_uint4(h[0], h[1], h[2], h[3]);
    }
  }
};

// q4_0: {f16 d; u8 qs[16]}, 18 bytes; value j = (low nibble of qs[j]) - 8 for j < 16, (high nibble of qs[j - 16]) - 8
// above. Chunks 0, 1 are the low nibbles of qs[0..7], qs[8..15]; chunks 2, 3 their high nibbles.
template <>
struct SwizzledDequant<KvType::q4_0> {
  static constexpr int kBlockBytes = 18;
  static constexpr int kWords = 5;
  __device__ __forceinline__ static void block(const uint32_t (&x)[kWords], bool odd, uint4 (&chunk)[4]) {
    const __half2 d2 = detail::block_scale2(x[0], odd);
    // A low nibble n becomes 1024 + n (minus 1032: n - 8); a high one 1024 + 16 n (times 1/16, minus 72: n - 8).
    // Both exact; the product with d is the one rounding, as in kv_fragments.cuh.
    const __half2 low_bias = __float2half2_rn(-1032.0f);
    const __half2 sixteenth = __float2half2_rn(0.0625f), high_bias = __float2half2_rn(-72.0f);
    uint32_t low[8], high[8];  // half2 j % 4 of chunk j / 4, and of chunk j / 4 + 2
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const uint32_t q = detail::block_quant_word(x[k], x[k + 1], odd);
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        // Bytes 2 half, 2 half + 1 of the word into bits 0..7 and 16..23: consecutive values in one half2.
        const uint32_t pair = __byte_perm(q, 0, half == 0 ? 0x4140u : 0x4342u);
        const __half2 l =
            __hadd2(ptx::as_half2(ptx::lop3_and_or(pair, 0x000f000fu, detail::kF16Magic1024x2)), low_bias);
        const __half2 h = __hfma2(ptx::as_half2(ptx::lop3_and_or(pair, 0x00f000f0u, detail::kF16Magic1024x2)),
                                  sixteenth, high_bias);
        low[2 * k + half] = ptx::as_u32(__hmul2(l, d2));
        high[2 * k + half] = ptx::as_u32(__hmul2(h, d2));
      }
    }
    chunk[0] = make_uint4(low[0], low[1], low[2], low[3]);
    chunk[1] = make_uint4(low[4], low[5], low[6], low[7]);
    chunk[2] = make_uint4(high[0], high[1], high[2], high[3]);
    chunk[3] = make_uint4(high[4], high[5], high[6], high[7]);
  }
};

// turbo3 / turbo4: one 128-value block per row, values in the rotated domain (the kernel rotates the query and the
// output rows instead), c[index] as f16 (turbo_lookup.cuh's register tables, bit for bit __float2half_rn) times
// the block's norm, one rounding. quarter() turns quarter b of a row (values 32b .. 32b + 31) into four chunks.
// turbo3 = {f16 norm; u8 qs[32]; u8 signs[16]}, 50-byte rows, 2-byte aligned; turbo4 = {f16 norm; f16 rnorm;
// u8 qs[64]}, 68-byte rows, 4-byte aligned.
template <>
struct SwizzledDequant<KvType::turbo3> {
  static constexpr int kRowBytes = 50;
  __device__ __forceinline__ static void quarter(const uint8_t* row, int b, const turbo::TableRegs& regs,
                                                 uint4 (&chunk)[4]) {
    const __half2 n2 = detail::turbo_norm2(row);
    uint32_t q[2], s[1];
    detail::load_words(row + 2 + 8 * b, q);   // 2-bit index fields of values 32b .. 32b + 31
    detail::load_words(row + 34 + 4 * b, s);  // their index bit 2
#pragma unroll
    for (int k = 0; k < 2; ++k) {  // values 16k .. 16k + 15 of the quarter: chunks 2k, 2k + 1
      uint32_t even, odd;
      turbo::turbo3_selectors(q[k], k == 0 ? s[0] : turbo::high_half(s[0]), regs, even, odd);  // bits >= 16 unread
      const turbo::Bytes4 e0 = turbo::lookup4<KvType::turbo3>(even, regs);  // values 0, 2, 4, 6
      const turbo::Bytes4 o0 = turbo::lookup4<KvType::turbo3>(odd, regs);   // 1, 3, 5, 7
      const turbo::Bytes4 e1 = turbo::lookup4<KvType::turbo3>(turbo::high_half(even), regs);
      const turbo::Bytes4 o1 = turbo::lookup4<KvType::turbo3>(turbo::high_half(odd), regs);
      chunk[2 * k] = scaled_in_order(e0, o0, n2);
      chunk[2 * k + 1] = scaled_in_order(e1, o1, n2);
    }
  }

 private:
  /// Eight values from the even (0, 2, 4, 6) and odd (1, 3, 5, 7) lookups, in order, times the norm: the low and
  /// high bytes of values 0..3 (4..7) interleaved first, then paired into half2.
  __device__ __forceinline__ static uint4 scaled_in_order(turbo::Bytes4 even, turbo::Bytes4 odd, __half2 n2) {
    uint32_t h[4];
#pragma unroll
    for (int part = 0; part < 2; ++part) {
      const uint32_t sel = part == 0 ? 0x5140u : 0x7362u;  // e0 o0 e1 o1, or e2 o2 e3 o3
      const uint32_t lo = __byte_perm(even.lo, odd.lo, sel), hi = __byte_perm(even.hi, odd.hi, sel);
      h[2 * part] = ptx::as_u32(__hmul2(ptx::as_half2(__byte_perm(lo, hi, 0x5140u)), n2));
      h[2 * part + 1] = ptx::as_u32(__hmul2(ptx::as_half2(__byte_perm(lo, hi, 0x7362u)), n2));
    }
    return make_uint4(h[0], h[1], h[2], h[3]);
  }
};

template <>
struct SwizzledDequant<KvType::turbo4> {
  static constexpr int kRowBytes = 68;
  __device__ __forceinline__ static void quarter(const uint8_t* row, int b, const turbo::TableRegs& regs,
                                                 uint4 (&chunk)[4]) {
    const __half2 n2 = detail::turbo_norm2(row);
#pragma unroll
    for (int c = 0; c < 4; ++c) {  // values 8c .. 8c + 7 of the quarter, 4-bit indexes in one word
      uint32_t pairs[4];
      turbo::turbo4_pairs(detail::lds_u32(row + 4 + 16 * b + 4 * c), regs, pairs);
      chunk[c] = make_uint4(ptx::as_u32(__hmul2(ptx::as_half2(pairs[0]), n2)),
                            ptx::as_u32(__hmul2(ptx::as_half2(pairs[1]), n2)),
                            ptx::as_u32(__hmul2(ptx::as_half2(pairs[2]), n2)),
                            ptx::as_u32(__hmul2(ptx::as_half2(pairs[3]), n2)));
    }
  }
};

}  // namespace kvflash::cuda
