// fp16 / bf16 conversions with GGML's rounding: round to nearest even, NaN kept quiet.
#include <cstring>

#include "format/blocks.h"
#include "kvflash/quantize.h"

namespace kvflash {

namespace {
uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
}  // namespace

uint16_t fp32_to_fp16(float f) {
  const uint32_t u = bits_of(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return sign | 0x7e00u;  // NaN: the canonical quiet NaN, as GGML's portable path
  if (abs >= 0x477ff000u) return sign | 0x7c00u;  // >= 65520 rounds to Inf (and Inf stays Inf)
  if (abs < 0x38800000u) {
    // Below the smallest normal half (2^-14): a subnormal half, step 2^-24. Adding 0.5 (bits 0x3f000000) aligns the
    // float so that its low mantissa bits are the half's subnormal value, rounded to nearest even by the FPU.
    float magnitude;
    std::memcpy(&magnitude, &abs, sizeof magnitude);
    const float shifted = magnitude + 0.5f;
    return sign | static_cast<uint16_t>(bits_of(shifted) - 0x3f000000u);
  }
  // Normal: rebias the exponent (127 -> 15) and round the 13 dropped mantissa bits to nearest even.
  const uint32_t odd = (abs >> 13) & 1u;
  const uint32_t rounded = abs + 0xfffu + odd;
  return sign | static_cast<uint16_t>((rounded - (112u << 23)) >> 13);
}

float fp16_to_fp32(uint16_t h) { return format::half_bits_to_float(h); }

uint16_t fp32_to_bf16(float f) {
  const uint32_t u = bits_of(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);  // NaN: force quiet
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

float bf16_to_fp32(uint16_t h) { return format::bf16_bits_to_float(h); }

}  // namespace kvflash
