// CPU quantize / dequantize of rows in every KvType. Bit-exact with GGML's reference quantizers for the GGML
// types and with TURBOQUANT.md for the turbo types.
#pragma once

#include <cstdint>

#include "kvflash/kv_type.h"
#include "kvflash/status.h"

namespace kvflash {

/// Quantizes `n` floats (a multiple of the type's block size) into row_bytes(type, n) bytes at `dst`.
/// Non-finite inputs give a documented, deterministic result (see README, "Formats"); never UB.
Status quantize_row(KvType type, const float* src, int64_t n, void* dst);

/// Dequantizes `n` values. For turbo types the result is in the original domain (inverse rotation applied)
/// unless `rotated` is true, in which case the stored rotated-domain values (centroid * norm) are returned.
Status dequantize_row(KvType type, const void* src, int64_t n, float* dst, bool rotated = false);

/// IEEE binary16 / bfloat16 conversions with GGML's rounding (round to nearest even, NaN kept quiet).
uint16_t fp32_to_fp16(float f);
float fp16_to_fp32(uint16_t h);
uint16_t fp32_to_bf16(float f);
float bf16_to_fp32(uint16_t h);

}  // namespace kvflash
