// GGML block quantizers, written to round exactly as GGML's C reference (quantize_row_*_ref) does.
#pragma once

#include <cstdint>

#include "format/blocks.h"

namespace kvflash::format {

/// x86's cvttss2si semantics as a defined operation: truncation toward zero; NaN or a value outside int32 gives
/// INT32_MIN. GGML's `(int8_t)(x)` casts compile to exactly this on x86, so finite inputs match bit for bit and
/// non-finite ones (which are UB in C) get the result GGML has on x86, without UB here.
int32_t truncate_like_x86(float x);

void quantize_block(const float* x, BlockQ8_0& out);
void quantize_block(const float* x, BlockQ4_0& out);
void quantize_block(const float* x, BlockQ4_1& out);
void quantize_block(const float* x, BlockQ5_0& out);
void quantize_block(const float* x, BlockQ5_1& out);

}  // namespace kvflash::format
