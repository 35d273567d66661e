// TurboQuant quantization of one 128-value group, in float32 and in the order TURBOQUANT.md gives: that order is
// what makes the bytes identical to the fork's.
#include <cmath>

#include "format/blocks.h"
#include "format/turbo.h"
#include "format/turbo_quantize.h"
#include "kvflash/quantize.h"

namespace kvflash::format {

namespace {

template <int Levels>
int nearest_index(float v, const float (&thresholds)[Levels - 1]) {
  for (int i = 0; i < Levels - 1; ++i) {
    if (v < thresholds[i]) return i;  // strict <; a NaN falls through to the last index
  }
  return Levels - 1;
}

// Normalizes, rotates and picks indices; returns the fp16 norm to store.
template <int Levels>
uint16_t turbo_indices(const float* x, bool zero_small_norm_input, const float (&thresholds)[Levels - 1],
                       const float (&centroids)[Levels], int* idx) {
  float nsq = 0.0f;
  for (int i = 0; i < kTurboGroup; ++i) nsq += x[i] * x[i];
  const float norm = std::sqrt(nsq);
  // The fork's cut-off is the float literal 1e-10f; the double 1e-10 would differ for norm == 1e-10f itself.
  float u[kTurboGroup];
  if (zero_small_norm_input) {
    // turbo4: u[i] = norm > 1e-10f ? x[i] * (1 / norm) : 0
    for (int i = 0; i < kTurboGroup; ++i) u[i] = norm > 1e-10f ? x[i] * (1.0f / norm) : 0.0f;
  } else {
    // turbo2/3: inv = norm > 1e-10f ? 1 / norm : 0; u[i] = x[i] * inv
    const float inv = norm > 1e-10f ? 1.0f / norm : 0.0f;
    for (int i = 0; i < kTurboGroup; ++i) u[i] = x[i] * inv;
  }
  turbo_rotate_forward(u);
  float rsq = 0.0f;
  for (int i = 0; i < kTurboGroup; ++i) {
    idx[i] = nearest_index<Levels>(u[i], thresholds);
    rsq += centroids[idx[i]] * centroids[idx[i]];
  }
  const float rn = std::sqrt(rsq);
  return fp32_to_fp16(rn > 1e-10f ? norm / rn : norm);
}

}  // namespace

void quantize_block(const float* x, BlockTurbo2& out) {
  int idx[kTurboGroup];
  out.norm = turbo_indices<4>(x, false, kTurbo2Thresholds, kTurbo2Centroids, idx);
  for (int b = 0; b < 32; ++b) out.qs[b] = 0;
  for (int j = 0; j < kTurboGroup; ++j) out.qs[j / 4] |= static_cast<uint8_t>((idx[j] & 3) << (2 * (j % 4)));
}

void quantize_block(const float* x, BlockTurbo3& out) {
  int idx[kTurboGroup];
  out.norm = turbo_indices<8>(x, false, kTurbo3Thresholds, kTurbo3Centroids, idx);
  for (int b = 0; b < 32; ++b) out.qs[b] = 0;
  for (int b = 0; b < 16; ++b) out.signs[b] = 0;
  for (int j = 0; j < kTurboGroup; ++j) {
    out.qs[j / 4] |= static_cast<uint8_t>((idx[j] & 3) << (2 * (j % 4)));
    out.signs[j / 8] |= static_cast<uint8_t>(((idx[j] >> 2) & 1) << (j % 8));
  }
}

void quantize_block(const float* x, BlockTurbo4& out) {
  int idx[kTurboGroup];
  out.norm = turbo_indices<16>(x, true, kTurbo4Thresholds, kTurbo4Centroids, idx);
  out.rnorm = 0;
  for (int b = 0; b < 64; ++b) out.qs[b] = 0;
  for (int j = 0; j < kTurboGroup; ++j) {
    out.qs[j / 2] |= static_cast<uint8_t>((idx[j] & 0x0f) << (j % 2 == 0 ? 0 : 4));
  }
}

}  // namespace kvflash::format
