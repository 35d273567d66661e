// The portable flavour's vector type: W floats in a plain array, every operation a loop. Compiled without ISA
// flags; it is the fallback on any CPU and the baseline the SIMD flavours are tested against.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "format/blocks.h"

namespace kvflash::cpu::portable {

struct Simd {
  static constexpr int W = 8;
  struct F {
    float x[W];
  };

  static F zero() { return set1(0.0f); }
  static F set1(float a) {
    F r;
    for (int i = 0; i < W; ++i) r.x[i] = a;
    return r;
  }
  static F load(const float* p) {
    F r;
    std::memcpy(r.x, p, sizeof(r.x));
    return r;
  }
  static void store(float* p, F a) { std::memcpy(p, a.x, sizeof(a.x)); }
  static F add(F a, F b) {
    for (int i = 0; i < W; ++i) a.x[i] += b.x[i];
    return a;
  }
  static F sub(F a, F b) {
    for (int i = 0; i < W; ++i) a.x[i] -= b.x[i];
    return a;
  }
  static F mul(F a, F b) {
    for (int i = 0; i < W; ++i) a.x[i] *= b.x[i];
    return a;
  }
  static F fmadd(F a, F b, F c) {  // a * b + c
    for (int i = 0; i < W; ++i) c.x[i] += a.x[i] * b.x[i];
    return c;
  }
  static F max(F a, F b) {
    for (int i = 0; i < W; ++i) a.x[i] = a.x[i] > b.x[i] ? a.x[i] : b.x[i];
    return a;
  }
  static float hsum(F a) {
    float s = 0.0f;
    for (int i = 0; i < W; ++i) s += a.x[i];
    return s;
  }
  static float hmax(F a) {
    float m = a.x[0];
    for (int i = 1; i < W; ++i) m = a.x[i] > m ? a.x[i] : m;
    return m;
  }
  static void hsum4(F a, F b, F c, F d, float* out) {
    out[0] = hsum(a);
    out[1] = hsum(b);
    out[2] = hsum(c);
    out[3] = hsum(d);
  }
  static F pin(F a) { return a; }
  /// {base, base + 1, ..., base + W - 1}
  static F iota(float base) {
    F r;
    for (int i = 0; i < W; ++i) r.x[i] = base + static_cast<float>(i);
    return r;
  }
  /// e^x for x <= 0; -inf gives exactly 0.
  static F exp_nonpositive(F a) {
    for (int i = 0; i < W; ++i) a.x[i] = std::exp(a.x[i]);
    return a;
  }
  static F tanh(F a) {
    for (int i = 0; i < W; ++i) a.x[i] = std::tanh(a.x[i]);
    return a;
  }
  static F load_f16(const uint16_t* p) {
    F r;
    for (int i = 0; i < W; ++i) r.x[i] = format::half_bits_to_float(p[i]);
    return r;
  }
  static float half_to_float(uint16_t h) { return format::half_bits_to_float(h); }
  static F load_bf16(const uint16_t* p) {
    F r;
    for (int i = 0; i < W; ++i) r.x[i] = format::bf16_bits_to_float(p[i]);
    return r;
  }

  // One block of stored values -> floats, exactly as format/blocks.h defines them (turbo: rotated domain).
  template <typename Block>
  static void dequant_block(const Block& b, float* dst) {
    for (int j = 0; j < 32; ++j) dst[j] = format::dequant_value(b, j);
  }
  static void dequant_block(const format::BlockTurbo2& b, float* dst) {
    for (int j = 0; j < 128; ++j) dst[j] = format::dequant_value(b, j, format::kTurbo2Centroids);
  }
  static void dequant_block(const format::BlockTurbo3& b, float* dst) {
    for (int j = 0; j < 128; ++j) dst[j] = format::dequant_value(b, j, format::kTurbo3Centroids);
  }
  static void dequant_block(const format::BlockTurbo4& b, float* dst) {
    for (int j = 0; j < 128; ++j) dst[j] = format::dequant_value(b, j, format::kTurbo4Centroids);
  }
};

}  // namespace kvflash::cpu::portable
