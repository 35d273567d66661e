// Block layouts of the quantized KV types, and the dequantization of one block, shared by every backend
// (reference, fast CPU, CUDA) so that "what a stored byte means" is written once.
//
// GGML layouts follow ggml-common.h (facts of the format); turbo layouts follow TURBOQUANT.md. Everything here is
// little-endian and packed; the fp16 fields are raw IEEE binary16 bits.
#pragma once

#include <cstdint>

#include "kvflash/host_device.h"

namespace kvflash::format {

struct BlockQ8_0 {
  uint16_t d;
  int8_t qs[32];
};
struct BlockQ4_0 {
  uint16_t d;
  uint8_t qs[16];  // value j in the low nibble of qs[j], value j + 16 in the high nibble
};
struct BlockQ4_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qs[16];
};
struct BlockQ5_0 {
  uint16_t d;
  uint8_t qh[4];   // bit j of the little-endian u32 is the 5th bit of value j
  uint8_t qs[16];
};
struct BlockQ5_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qh[4];
  uint8_t qs[16];
};
struct BlockTurbo2 {
  uint16_t norm;
  uint8_t qs[32];  // 2-bit index of value j at bits 2*(j%4) of qs[j/4]
};
struct BlockTurbo3 {
  uint16_t norm;
  uint8_t qs[32];     // low 2 bits of the index, as turbo2
  uint8_t signs[16];  // bit 2 of the index of value j at bit j%8 of signs[j/8]
};
struct BlockTurbo4 {
  uint16_t norm;
  uint16_t rnorm;  // written 0
  uint8_t qs[64];  // 4-bit index of value j: low nibble of qs[j/2] for even j, high nibble for odd j
};

static_assert(sizeof(BlockQ8_0) == 34 && sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20);
static_assert(sizeof(BlockQ5_0) == 22 && sizeof(BlockQ5_1) == 24);
static_assert(sizeof(BlockTurbo2) == 34 && sizeof(BlockTurbo3) == 50 && sizeof(BlockTurbo4) == 68);

/// IEEE binary16 bits -> float, exact for every input (subnormals, Inf, NaN keep their meaning). A signalling NaN
/// comes back quiet (payload kept), as GGML's conversion gives on x86, where its final multiply quiets it.
KVFLASH_HOST_DEVICE inline float half_bits_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t man = h & 0x3ffu;
  float magnitude;
  if (exp == 0) {
    magnitude = static_cast<float>(man) * 5.9604644775390625e-8f;  // 2^-24: subnormal step, exact in float
  } else {
    const uint32_t quiet = (exp == 0x1f && man != 0) ? 0x00400000u : 0u;
    const uint32_t bits = exp == 0x1f ? (0xffu << 23) | (man << 13) | quiet : ((exp + 112u) << 23) | (man << 13);
    union {
      uint32_t u;
      float f;
    } cvt{bits};
    magnitude = cvt.f;
  }
  union {
    float f;
    uint32_t u;
  } out{magnitude};
  out.u |= sign;
  return out.f;
}

KVFLASH_HOST_DEVICE inline float bf16_bits_to_float(uint16_t h) {
  union {
    uint32_t u;
    float f;
  } cvt{static_cast<uint32_t>(h) << 16};
  return cvt.f;
}

// TurboQuant centroids (TURBOQUANT.md), ascending by index.
inline constexpr float kTurbo2Centroids[4] = {-0.133462f, -0.039994f, 0.039994f, 0.133462f};
inline constexpr float kTurbo3Centroids[8] = {-0.190685f, -0.117832f, -0.065717f, -0.021460f,
                                              0.021460f,  0.065717f,  0.117832f,  0.190685f};
inline constexpr float kTurbo4Centroids[16] = {-0.173926f, -0.117195f, -0.089527f, -0.068756f,
                                               -0.051262f, -0.035597f, -0.020989f, -0.006938f,
                                               0.006938f,  0.020989f,  0.035597f,  0.051262f,
                                               0.068756f,  0.089527f,  0.117195f,  0.173926f};

// Per-value accessors: value j of a block, as GGML's dequantize_row_* computes it (float arithmetic, y = q*d
// or q*d + m). Turbo accessors return the stored rotated-domain value c[idx] * norm. Centroid tables are passed in
// so that device code can hand over copies in constant memory.
KVFLASH_HOST_DEVICE inline float dequant_value(const BlockQ8_0& b, int j) {
  return static_cast<float>(b.qs[j]) * half_bits_to_float(b.d);
}
KVFLASH_HOST_DEVICE inline float dequant_value(const BlockQ4_0& b, int j) {
  const int q = j < 16 ? (b.qs[j] & 0x0f) : (b.qs[j - 16] >> 4);
  return static_cast<float>(q - 8) * half_bits_to_float(b.d);
}
KVFLASH_HOST_DEVICE inline float dequant_value(const BlockQ4_1& b, int j) {
  const int q = j < 16 ? (b.qs[j] & 0x0f) : (b.qs[j - 16] >> 4);
  return static_cast<float>(q) * half_bits_to_float(b.d) + half_bits_to_float(b.m);
}
KVFLASH_HOST_DEVICE inline uint32_t q5_high_bits(const uint8_t qh[4]) {
  return static_cast<uint32_t>(qh[0]) | static_cast<uint32_t>(qh[1]) << 8 | static_cast<uint32_t>(qh[2]) << 16 |
         static_cast<uint32_t>(qh[3]) << 24;
}
KVFLASH_HOST_DEVICE inline float dequant_value(const BlockQ5_0& b, int j) {
  const int lo = j < 16 ? (b.qs[j] & 0x0f) : (b.qs[j - 16] >> 4);
  const int hi = static_cast<int>((q5_high_bits(b.qh) >> j) & 1u) << 4;
  return static_cast<float>((lo | hi) - 16) * half_bits_to_float(b.d);
}
KVFLASH_HOST_DEVICE inline float dequant_value(const BlockQ5_1& b, int j) {
  const int lo = j < 16 ? (b.qs[j] & 0x0f) : (b.qs[j - 16] >> 4);
  const int hi = static_cast<int>((q5_high_bits(b.qh) >> j) & 1u) << 4;
  return static_cast<float>(lo | hi) * half_bits_to_float(b.d) + half_bits_to_float(b.m);
}
KVFLASH_HOST_DEVICE inline int turbo_index(const BlockTurbo2& b, int j) { return (b.qs[j / 4] >> (2 * (j % 4))) & 3; }
KVFLASH_HOST_DEVICE inline int turbo_index(const BlockTurbo3& b, int j) {
  return ((b.qs[j / 4] >> (2 * (j % 4))) & 3) | (((b.signs[j / 8] >> (j % 8)) & 1) << 2);
}
KVFLASH_HOST_DEVICE inline int turbo_index(const BlockTurbo4& b, int j) {
  return (j % 2 == 0) ? (b.qs[j / 2] & 0x0f) : (b.qs[j / 2] >> 4);
}
KVFLASH_HOST_DEVICE inline float dequant_value(const BlockTurbo2& b, int j, const float* centroids) {
  return centroids[turbo_index(b, j)] * half_bits_to_float(b.norm);
}
KVFLASH_HOST_DEVICE inline float dequant_value(const BlockTurbo3& b, int j, const float* centroids) {
  return centroids[turbo_index(b, j)] * half_bits_to_float(b.norm);
}
KVFLASH_HOST_DEVICE inline float dequant_value(const BlockTurbo4& b, int j, const float* centroids) {
  return centroids[turbo_index(b, j)] * half_bits_to_float(b.norm);
}

}  // namespace kvflash::format
