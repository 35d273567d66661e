// The one place where the options of an AttentionProblem touch a score: logit softcap, additive mask, ALiBi, and
// the causal / sliding-window / key-range cut. Every kernel flavour applies it to a tile of scores through
// ScoreVariant::apply, so an option is written once, not once per kernel.
//
// Part of an instruction-set flavour: include it after simd_<isa>.h with KVFLASH_CPU_ISA_NS defined.
#pragma once

#include <cstdint>
#include <cstring>
#include <limits>

#include "backend/cpu/kernel_job.h"

#ifndef KVFLASH_CPU_ISA_NS
#error "define KVFLASH_CPU_ISA_NS and include the flavour's simd header first"
#endif

namespace kvflash::cpu::KVFLASH_CPU_ISA_NS {
namespace {

// Shared by every fragment of a flavour: its vector type and width.
using F = Simd::F;
constexpr int W = Simd::W;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

class ScoreVariant {
 public:
  explicit ScoreVariant(const KernelJob& job)
      : job_(job),
        has_softcap_(job.softcap > 0.0f),
        has_mask_(job.problem->mask.data != nullptr),
        mask_f16_(job.problem->mask.type == MaskType::f16),
        has_alibi_(job.has_alibi),
        softcap_(job.softcap),
        inv_softcap_(job.softcap > 0.0f ? 1.0f / job.softcap : 0.0f) {}

  /// Row r of the (sequence, KV head) row block: its position, visible key range and mask row.
  RowPlace place(int64_t seq, int64_t kv_head, int64_t row, int64_t kv_len) const {
    const AttentionProblem& p = *job_.problem;
    const int64_t i = row / job_.group;
    const int64_t head = kv_head * job_.group + row % job_.group;
    RowPlace place;
    place.position = kv_len - p.shape.n_q + i;
    place.end = p.options.causal ? clamp_key(place.position + 1, kv_len) : kv_len;
    place.first = p.options.window > 0 ? clamp_key(place.position - p.options.window + 1, kv_len) : 0;
    if (has_mask_) {
      place.mask = static_cast<const uint8_t*>(p.mask.data) + seq * p.mask.stride.seq + head * p.mask.stride.head +
                   i * p.mask.stride.row;
    }
    if (has_alibi_) place.alibi_slope = alibi_slope_f32(p.options.alibi_max_bias, p.shape.n_head_q, head);
    return place;
  }

  /// Scores s[0, kKeyTile) of keys key0 + t for one row; entries t >= n_keys are past the key range.
  /// Order as AttentionProblem defines it: softcap, then + mask + ALiBi bias, then hidden keys -> -inf.
  void apply(float* s, const RowPlace& row, int64_t key0, int n_keys) const {
    if (has_softcap_ || has_mask_ || has_alibi_) {
      const Simd::F cap = Simd::set1(softcap_);
      const Simd::F inv_cap = Simd::set1(inv_softcap_);
      const Simd::F slope = Simd::set1(row.alibi_slope);
      for (int c = 0; c < kKeyTile && c < n_keys; c += Simd::W) {
        Simd::F x = Simd::load(s + c);
        if (has_softcap_) x = Simd::mul(cap, Simd::tanh(Simd::mul(x, inv_cap)));
        if (has_mask_) x = Simd::add(x, mask_values(row.mask, key0 + c, n_keys - c));
        // bias = -slope * (position - key)
        if (has_alibi_) x = Simd::fmadd(slope, Simd::iota(static_cast<float>(key0 + c - row.position)), x);
        Simd::store(s + c, x);
      }
    }
    const int64_t visible_begin = row.first - key0;
    const int64_t visible_end = row.end - key0 < n_keys ? row.end - key0 : n_keys;
    if (visible_begin <= 0 && visible_end >= kKeyTile) return;
    for (int t = 0; t < kKeyTile; ++t) {
      if (t < visible_begin || t >= visible_end) s[t] = kNegInf;
    }
  }

 private:
  static int64_t clamp_key(int64_t k, int64_t kv_len) { return k < 0 ? 0 : (k > kv_len ? kv_len : k); }

  // Mask entries key..key+W-1 of a row; fewer than W remain at the end of the key range.
  Simd::F mask_values(const uint8_t* row, int64_t key, int remaining) const {
    alignas(64) float tail[Simd::W];
    if (mask_f16_) {
      const uint16_t* m = reinterpret_cast<const uint16_t*>(row) + key;
      if (remaining >= Simd::W) return Simd::load_f16(m);
      for (int t = 0; t < Simd::W; ++t) tail[t] = t < remaining ? Simd::half_to_float(m[t]) : 0.0f;
    } else {
      const float* m = reinterpret_cast<const float*>(row) + key;
      if (remaining >= Simd::W) return Simd::load(m);
      for (int t = 0; t < Simd::W; ++t) tail[t] = t < remaining ? m[t] : 0.0f;
    }
    return Simd::load(tail);
  }

  const KernelJob& job_;
  bool has_softcap_, has_mask_, mask_f16_, has_alibi_;
  float softcap_, inv_softcap_;
};

}  // namespace
}  // namespace kvflash::cpu::KVFLASH_CPU_ISA_NS
