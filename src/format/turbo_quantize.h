// TurboQuant block quantizers (one 128-value rotation group each).
#pragma once

#include "format/blocks.h"

namespace kvflash::format {

void quantize_block(const float* x, BlockTurbo2& out);
void quantize_block(const float* x, BlockTurbo3& out);
void quantize_block(const float* x, BlockTurbo4& out);

}  // namespace kvflash::format
