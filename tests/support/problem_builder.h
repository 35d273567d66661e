// The shared test helper: builds a random, valid AttentionProblem from a short spec, owning every host buffer.
// Every backend test uses it: build a problem, run two backends, compare (see nmse()).
//
// What it draws (fixed by spec.seed):
// - Q: float32 N(0, 1).
// - K/V: float32 N(0, 1) with a few outlier channels (x8 to x20 and an offset, as real keys have), quantized with
//   quantize_row per row of stored_dim() values (turbo rows zero-padded past d).
// - mask: N(0, 1) with about 1 in 8 entries -inf, but never a row whose only visible key (the one at the row's
//   position, clamped into [0, kv_len)) is masked: rows are fully hidden only by what the spec asks (causal,
//   window, kv_len < n_q).
// - sinks: N(0, 2) per query head; kv_len: uniform in [1, n_kv] per sequence when varlen.
// - layouts: contiguous [seq, head, row]; strided_padded: a view into a larger cache with padding between rows,
//   heads and sequences, in [seq, head, row] or GGML's [seq, row, head] order (by seed), for Q/O/mask too; paged:
//   rows through a shuffled page table with spare pages. Padding and unused pages hold garbage bytes, so a
//   reader that ignores strides or page tables reads garbage.
// - O: poisoned with NaN.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "kvflash/attention_problem.h"
#include "kvflash/status.h"

namespace kvflash::testing {

enum class MaskKind { none, f32, f16, f32_broadcast_heads };
enum class KvLayout {
  contiguous,
  strided_padded,  // views into a larger cache, padding between heads and rows
  paged,           // rows through a shuffled page table
};

struct ProblemSpec {
  AttentionShape shape;  // n_seq, n_q, n_kv, n_head_q, n_head_kv, d_k, d_v
  KvType ktype = KvType::f16, vtype = KvType::f16;
  MaskKind mask = MaskKind::none;
  KvLayout layout = KvLayout::contiguous;
  bool causal = false;
  int64_t window = 0;
  double alibi_max_bias = 0, softcap = 0, scale = 0;
  bool sinks = false;
  bool varlen = false;          // per-sequence kv_len drawn in [1, n_kv]
  // Per-sequence kv_len given, cycled over the sequences (0 allowed: a sequence with no key in a batch);
  // non-empty implies varlen. Every length must be <= n_kv.
  std::vector<int32_t> kv_lens;
  bool v_is_view_of_k = false;  // MLA: V rows are the first d_v values of the K rows (same type)
  // Paged only: 0 draws the page size, the order inside a page and the padding per seed; else pages of this many
  // rows laid out as kvflash's KvCache stores them ([head, row] inside a page, no padding).
  int64_t page_rows = 0;
  uint64_t seed = 1;
};

/// A byte buffer aligned to 64 bytes (a cache line; what SIMD and device copies like).
class AlignedBytes {
 public:
  AlignedBytes() = default;
  explicit AlignedBytes(size_t bytes);
  std::byte* data() const { return data_.get(); }
  size_t size() const { return size_; }

 private:
  struct Free {
    void operator()(std::byte* p) const;
  };
  std::unique_ptr<std::byte[], Free> data_;
  size_t size_ = 0;
};

/// Owns host buffers: random Q (float32), K/V drawn as float32 with outlier channels then quantized with
/// quantize_row into the requested layout, mask (with some -inf), sinks, kv_len, page table, and O poisoned (NaN).
/// Move-only: problem() points into the owned buffers.
class HostProblem {
 public:
  /// Draws a problem; an invalid spec (or one validate() rejects) comes back as the Status.
  static StatusOr<HostProblem> make(const ProblemSpec& spec);

  HostProblem(HostProblem&&) = default;
  HostProblem& operator=(HostProblem&&) = default;
  HostProblem(const HostProblem&) = delete;
  HostProblem& operator=(const HostProblem&) = delete;

  /// Host pointers into the owned buffers.
  const AttentionProblem& problem() const { return problem_; }
  const ProblemSpec& spec() const { return spec_; }
  /// Fills O (and its padding) with quiet NaN.
  void poison_output();
  /// The dense [n_seq, n_head_q, n_q, d_v] output, gathered from O's strides.
  std::span<const float> output() const;

  // Raw buffers, for copying to a device and rebuilding the problem with device pointers. An absent tensor
  // (no mask, no sinks, ...) is {nullptr, 0}. When V is a view of K, v() is the K buffer.
  struct Buffer {
    const void* data;
    size_t bytes;
  };
  Buffer q() const, k() const, v() const, mask() const, sinks() const, kv_len() const, page_table() const;
  size_t o_bytes() const { return o_.size(); }

  /// Rebinds every pointer of problem() to the same offsets inside other buffers (e.g. device copies).
  /// Pointers that problem() leaves null stay null.
  AttentionProblem rebased(const void* q, const void* k, const void* v, const void* mask, const float* sinks,
                           const int32_t* kv_len, const int32_t* page_table, float* o) const;

 private:
  HostProblem() = default;

  ProblemSpec spec_;
  AttentionProblem problem_;
  AlignedBytes q_, k_, v_, mask_, sinks_, kv_len_, page_table_, o_;
  mutable std::vector<float> gathered_;

  friend class ProblemDrawer;
};

/// ||got - want||^2 / ||want||^2 over all elements; +inf if any element of got is NaN/Inf where want is finite,
/// or if the sizes differ. Where want itself is not finite, got must be the same (NaN where NaN, equal Inf).
/// 0 when both are all zeros.
double nmse(std::span<const float> got, std::span<const float> want);

/// " lens=a,b,..." for a spec with given per-sequence lengths, "" otherwise (for failure messages).
std::string kv_lens_text(const ProblemSpec& spec);

}  // namespace kvflash::testing
