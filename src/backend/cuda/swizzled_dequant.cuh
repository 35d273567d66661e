// Block-quantized K/V rows (as stored, copied to shared memory) -> the f16 128-byte-swizzled tile the wgmma prefill
// reads (prefill_wgmma.cuh), so that its consumers are the same for every cache type and no dequantized copy of the
// cache ever exists outside the SM. One 16-byte chunk of f16 (8 consecutive head-dim values of one row) per call:
// chunk c of a 128-value row lies in GGML block c / 4, part c % 4.
// Values become f16 as q * d (one rounding), as in kv_fragments.cuh.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

#include "backend/cuda/kv_fragments.cuh"
#include "backend/cuda/ptx.cuh"
#include "kvflash/kv_type.h"

namespace kvflash::cuda {

/// Whether the wgmma prefill has a producer for `t` (f16 is copied as is). The kernel table routes q4_0 to it; q8_0
/// is correct (kvflash_gpu_tests, run 2 of bench/prefill_notes.md w2) but measured slower than cuda.prefill.q8_0,
/// so it has no row yet.
constexpr bool has_swizzled_dequant(KvType t) { return t == KvType::q8_0 || t == KvType::q4_0; }

template <KvType Type>
struct SwizzledDequant;

// q8_0: blocks of 34 bytes {f16 d; int8 qs[32]}; part p holds qs[8p .. 8p + 7]. Rows are 2-byte aligned in shared
// memory (136-byte rows), so the 8 bytes are read as four 16-bit words.
template <>
struct SwizzledDequant<KvType::q8_0> {
  static constexpr int kBlockBytes = 34;
  __device__ __forceinline__ static uint4 chunk(const uint8_t* row, int c) {
    const uint8_t* block = row + (c / 4) * kBlockBytes;
    const __half d = __ushort_as_half(*reinterpret_cast<const uint16_t*>(block));
    const __half2 d2 = __halves2half2(d, d);
    const auto* q = reinterpret_cast<const uint16_t*>(block + 2 + 8 * (c % 4));
    const uint32_t w0 = q[0] | (uint32_t{q[1]} << 16), w1 = q[2] | (uint32_t{q[3]} << 16);
    __half2 h[4];
    detail::i8x4_to_half2x2(w0, h[0], h[1]);
    detail::i8x4_to_half2x2(w1, h[2], h[3]);
    return make_uint4(ptx::as_u32(__hmul2(h[0], d2)), ptx::as_u32(__hmul2(h[1], d2)), ptx::as_u32(__hmul2(h[2], d2)),
                      ptx::as_u32(__hmul2(h[3], d2)));
  }
};

// q4_0: blocks of 18 bytes {f16 d; u8 qs[16]}, value j = (low nibble of qs[j]) - 8 for j < 16, (high nibble of
// qs[j - 16]) - 8 above: parts 0, 1 are the low nibbles of qs[0..7], qs[8..15], parts 2, 3 their high nibbles.
template <>
struct SwizzledDequant<KvType::q4_0> {
  static constexpr int kBlockBytes = 18;
  __device__ __forceinline__ static uint4 chunk(const uint8_t* row, int c) {
    const uint8_t* block = row + (c / 4) * kBlockBytes;
    const __half d = __ushort_as_half(*reinterpret_cast<const uint16_t*>(block));
    const __half2 d2 = __halves2half2(d, d);
    const int part = c % 4;
    const auto* q = reinterpret_cast<const uint16_t*>(block + 2 + 8 * (part % 2));
    const int shift = part < 2 ? 0 : 4;
    uint32_t out[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      // Bytes 2k, 2k + 1 into bits 0..7 and 16..23, then the wanted nibbles into bits 0..3 and 16..19.
      const uint32_t pair = (q[k] & 0xffu) | ((uint32_t{q[k]} & 0xff00u) << 8);
      out[k] = ptx::as_u32(__hmul2(detail::nibbles_minus8(pair >> shift), d2));
    }
    return make_uint4(out[0], out[1], out[2], out[3]);
  }
};

}  // namespace kvflash::cuda
