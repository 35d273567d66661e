#include "format/ggml_quantize.h"

#include <cfloat>
#include <cmath>
#include <cstring>

#include "kvflash/quantize.h"

namespace kvflash::format {

int32_t truncate_like_x86(float x) {
  // 2^31 is the first float above INT32_MAX; -2^31 is exactly INT32_MIN.
  if (!(x > -2147483904.0f && x < 2147483648.0f)) return INT32_MIN;
  return static_cast<int32_t>(x);
}

namespace {

// C roundf (half away from zero) followed by GGML's implicit narrowing to int8.
int8_t round_to_int8(float x) {
  const float r = std::roundf(x);
  return static_cast<int8_t>(static_cast<uint32_t>(truncate_like_x86(r)) & 0xffu);
}

int8_t truncate_to_int8(float x) {
  return static_cast<int8_t>(static_cast<uint32_t>(truncate_like_x86(x)) & 0xffu);
}

// The value of largest magnitude with its sign; the first wins ties (GGML updates only on amax < |v|).
float signed_max(const float* x, int n) {
  float amax = 0.0f;
  float max = 0.0f;
  for (int j = 0; j < n; ++j) {
    const float v = x[j];
    if (amax < std::fabs(v)) {
      amax = std::fabs(v);
      max = v;
    }
  }
  return max;
}

void min_max(const float* x, int n, float& min, float& max) {
  min = FLT_MAX;
  max = -FLT_MAX;
  for (int j = 0; j < n; ++j) {
    if (x[j] < min) min = x[j];
    if (x[j] > max) max = x[j];
  }
}

}  // namespace

void quantize_block(const float* x, BlockQ8_0& out) {
  float amax = 0.0f;
  for (int j = 0; j < 32; ++j) {
    const float a = std::fabs(x[j]);
    amax = amax > a ? amax : a;  // GGML's MAX(a, b) = a > b ? a : b, so a NaN never becomes the max
  }
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  out.d = fp32_to_fp16(d);
  for (int j = 0; j < 32; ++j) out.qs[j] = round_to_int8(x[j] * id);
}

void quantize_block(const float* x, BlockQ4_0& out) {
  const float d = signed_max(x, 32) / -8.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  out.d = fp32_to_fp16(d);
  for (int j = 0; j < 16; ++j) {
    const int8_t lo = truncate_to_int8(x[j] * id + 8.5f);
    const int8_t hi = truncate_to_int8(x[j + 16] * id + 8.5f);
    const uint8_t q0 = static_cast<uint8_t>(lo < 15 ? lo : 15);
    const uint8_t q1 = static_cast<uint8_t>(hi < 15 ? hi : 15);
    out.qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
  }
}

void quantize_block(const float* x, BlockQ4_1& out) {
  float min, max;
  min_max(x, 32, min, max);
  const float d = (max - min) / 15.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  out.d = fp32_to_fp16(d);
  out.m = fp32_to_fp16(min);
  for (int j = 0; j < 16; ++j) {
    const int8_t lo = truncate_to_int8((x[j] - min) * id + 0.5f);
    const int8_t hi = truncate_to_int8((x[j + 16] - min) * id + 0.5f);
    const uint8_t q0 = static_cast<uint8_t>(lo < 15 ? lo : 15);
    const uint8_t q1 = static_cast<uint8_t>(hi < 15 ? hi : 15);
    out.qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
  }
}

void quantize_block(const float* x, BlockQ5_0& out) {
  const float d = signed_max(x, 32) / -16.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  out.d = fp32_to_fp16(d);
  uint32_t qh = 0;
  for (int j = 0; j < 16; ++j) {
    const int8_t lo = truncate_to_int8(x[j] * id + 16.5f);
    const int8_t hi = truncate_to_int8(x[j + 16] * id + 16.5f);
    const uint8_t q0 = static_cast<uint8_t>(lo < 31 ? lo : 31);
    const uint8_t q1 = static_cast<uint8_t>(hi < 31 ? hi : 31);
    out.qs[j] = static_cast<uint8_t>((q0 & 0x0f) | ((q1 & 0x0f) << 4));
    qh |= static_cast<uint32_t>((q0 & 0x10u) >> 4) << j;
    qh |= static_cast<uint32_t>((q1 & 0x10u) >> 4) << (j + 16);
  }
  for (int b = 0; b < 4; ++b) out.qh[b] = static_cast<uint8_t>(qh >> (8 * b));
}

void quantize_block(const float* x, BlockQ5_1& out) {
  float min, max;
  min_max(x, 32, min, max);
  const float d = (max - min) / 31.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  out.d = fp32_to_fp16(d);
  out.m = fp32_to_fp16(min);
  uint32_t qh = 0;
  for (int j = 0; j < 16; ++j) {
    // GGML's q5_1 has no MIN(31, ...): (x - min) * id <= 31 for finite blocks.
    const uint8_t q0 = static_cast<uint8_t>(truncate_like_x86((x[j] - min) * id + 0.5f));
    const uint8_t q1 = static_cast<uint8_t>(truncate_like_x86((x[j + 16] - min) * id + 0.5f));
    out.qs[j] = static_cast<uint8_t>((q0 & 0x0f) | ((q1 & 0x0f) << 4));
    qh |= static_cast<uint32_t>((q0 & 0x10u) >> 4) << j;
    qh |= static_cast<uint32_t>((q1 & 0x10u) >> 4) << (j + 16);
  }
  for (int b = 0; b < 4; ++b) out.qh[b] = static_cast<uint8_t>(qh >> (8 * b));
}

}  // namespace kvflash::format
