// Dequantizing stored K or V rows into floats, block by block, for every KvType (turbo: the rotated domain). The
// kernels call it for a tile's rows of the block types; f32/f16/bf16 rows are usually read in place instead.
//
// Part of an instruction-set flavour: include it after simd_<isa>.h with KVFLASH_CPU_ISA_NS defined.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "backend/cpu/kernel_job.h"
#include "backend/cpu/score_variant.h"
#include "format/blocks.h"

#ifndef KVFLASH_CPU_ISA_NS
#error "define KVFLASH_CPU_ISA_NS and include the flavour's simd header first"
#endif

namespace kvflash::cpu::KVFLASH_CPU_ISA_NS {
namespace {

// Dequantizes the rows of a tile: row i (n stored values) at base + offsets[i] into dst + i * dst_stride. One
// call per tile, so the per-row work is the blocks themselves.
using TileDequant = void (*)(const uint8_t* base, const int64_t* offsets, int n_rows, int64_t n, float* dst,
                             int64_t dst_stride);

template <typename Block, int Elems>
void dequant_blocks(const uint8_t* base, const int64_t* offsets, int n_rows, int64_t n, float* dst,
                    int64_t dst_stride) {
  for (int i = 0; i < n_rows; ++i) {
    const Block* blocks = reinterpret_cast<const Block*>(base + offsets[i]);
    float* out = dst + i * dst_stride;
    for (int64_t b = 0; b < n / Elems; ++b) Simd::dequant_block(blocks[b], out + b * Elems);
  }
}

void dequant_f32(const uint8_t* base, const int64_t* offsets, int n_rows, int64_t n, float* dst, int64_t dst_stride) {
  for (int i = 0; i < n_rows; ++i) std::memcpy(dst + i * dst_stride, base + offsets[i], static_cast<size_t>(n) * 4);
}

void dequant_f16(const uint8_t* base, const int64_t* offsets, int n_rows, int64_t n, float* dst, int64_t dst_stride) {
  for (int i = 0; i < n_rows; ++i) {
    const uint16_t* h = reinterpret_cast<const uint16_t*>(base + offsets[i]);
    float* out = dst + i * dst_stride;
    int64_t e = 0;
    for (; e + W <= n; e += W) Simd::store(out + e, Simd::load_f16(h + e));
    for (; e < n; ++e) out[e] = Simd::half_to_float(h[e]);
  }
}

void dequant_bf16(const uint8_t* base, const int64_t* offsets, int n_rows, int64_t n, float* dst, int64_t dst_stride) {
  for (int i = 0; i < n_rows; ++i) {
    const uint16_t* h = reinterpret_cast<const uint16_t*>(base + offsets[i]);
    float* out = dst + i * dst_stride;
    int64_t e = 0;
    for (; e + W <= n; e += W) Simd::store(out + e, Simd::load_bf16(h + e));
    for (; e < n; ++e) {
      const uint32_t bits = static_cast<uint32_t>(h[e]) << 16;
      std::memcpy(out + e, &bits, 4);
    }
  }
}

TileDequant tile_dequantizer(KvType type) {
  switch (type) {
    case KvType::f32:
      return dequant_f32;
    case KvType::f16:
      return dequant_f16;
    case KvType::bf16:
      return dequant_bf16;
    case KvType::q8_0:
      return dequant_blocks<format::BlockQ8_0, 32>;
    case KvType::q4_0:
      return dequant_blocks<format::BlockQ4_0, 32>;
    case KvType::q4_1:
      return dequant_blocks<format::BlockQ4_1, 32>;
    case KvType::q5_0:
      return dequant_blocks<format::BlockQ5_0, 32>;
    case KvType::q5_1:
      return dequant_blocks<format::BlockQ5_1, 32>;
    case KvType::turbo2:
      return dequant_blocks<format::BlockTurbo2, 128>;
    case KvType::turbo3:
      return dequant_blocks<format::BlockTurbo3, 128>;
    case KvType::turbo4:
      return dequant_blocks<format::BlockTurbo4, 128>;
  }
  return dequant_f32;
}

}  // namespace
}  // namespace kvflash::cpu::KVFLASH_CPU_ISA_NS
