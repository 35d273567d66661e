// AttentionProblem: one attention call over (possibly quantized, possibly paged) K/V, with every option.
//
// Logical shapes (every index is int64: a view or a mask may exceed 2^31 elements):
//   Q [n_seq, n_head_q,  n_q,  d_k]  float32
//   K [n_seq, n_head_kv, n_kv, d_k]  stored as k.type; a row holds stored_dim(k.type, d_k) values
//   V [n_seq, n_head_kv, n_kv, d_v]  stored as v.type; a row holds stored_dim(v.type, d_v) values
//   O [n_seq, n_head_q,  n_q,  d_v]  float32
//   mask [n_seq, n_head_q, n_q, n_kv] f32 or f16, additive; stride 0 broadcasts an axis
// Query head h reads KV head h / (n_head_q / n_head_kv).
//
// Query row i of sequence s sits at position n_kv(s) - n_q + i (bottom-right alignment) for causal, window and
// ALiBi. A score is
//   s = scale * <q, k>;  s = softcap * tanh(s / softcap) if softcap > 0;  s += mask + alibi_bias;
//   s = -inf if causal and key > position, or if window > 0 and position - key >= window.
// Sinks add exp(sink[h]) to the softmax denominator. A row that sees no key (and has no sink mass beyond it)
// outputs zeros.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>

#include "kvflash/host_device.h"
#include "kvflash/kv_type.h"
#include "kvflash/status.h"

namespace kvflash {

inline constexpr int64_t kMaxHeadDim = 1024;

/// Byte strides of a 4-D [seq, head, row, element] view; the element axis is contiguous.
struct Strides {
  int64_t seq = 0;
  int64_t head = 0;
  int64_t row = 0;
};

/// Paged storage: row r of sequence s lives in page pages[s * pages_per_seq + r / page_rows], at
/// (r % page_rows) * stride.row + head * stride.head bytes from the page's start (data + page * page_bytes).
struct PageTable {
  const int32_t* pages = nullptr;  // nullptr: contiguous view (seq stride applies)
  int64_t pages_per_seq = 0;
  int64_t page_rows = 0;
  int64_t page_bytes = 0;
};

struct KvView {
  KvType type = KvType::f16;
  const void* data = nullptr;
  Strides stride;  // bytes; K and V rows start on block boundaries
  PageTable paging;
};

struct QueryView {
  const float* data = nullptr;
  Strides stride;  // bytes
};

struct OutputView {
  float* data = nullptr;
  Strides stride;  // bytes
};

enum class MaskType : uint8_t { f32 = 0, f16 = 1 };

struct MaskView {
  const void* data = nullptr;  // nullptr: no explicit mask
  MaskType type = MaskType::f32;
  Strides stride;  // bytes per [seq, head, q row]; 0 broadcasts; keys are contiguous
};

// Scalars are double so that the float64 oracle sees exactly what the caller wrote; kernels round them once.
struct AttentionOptions {
  double scale = 0.0;             // 0: 1/sqrt(d_k)
  bool causal = false;            // bottom-right aligned
  int64_t window = 0;             // 0: none; else key j is hidden when position - j >= window
  double alibi_max_bias = 0.0;    // 0: none; GGML's slope formula over n_head_q
  double softcap = 0.0;           // 0: none
  const float* sinks = nullptr;   // [n_head_q] or nullptr, in the backend's memory
};

struct AttentionShape {
  int64_t n_seq = 1;
  int64_t n_q = 1;       // query rows per sequence
  int64_t n_kv = 0;      // keys per sequence (the extent of the views; see kv_len)
  int64_t n_head_q = 1;
  int64_t n_head_kv = 1;
  int64_t d_k = 0;       // logical head dims (before turbo padding)
  int64_t d_v = 0;
};

struct AttentionProblem {
  AttentionShape shape;
  QueryView q;
  KvView k;
  KvView v;
  MaskView mask;
  OutputView o;
  AttentionOptions options;
  // Optional per-sequence key counts (each <= n_kv), in the backend's memory; nullptr: every sequence has n_kv.
  const int32_t* kv_len = nullptr;
};

/// Checks every field; the message names the field and its value. Never touches the data pointers' memory.
Status validate(const AttentionProblem& p);

/// One line naming every field that matters for routing (printed with a failed route, as seed 002 asks).
std::string describe(const AttentionProblem& p);

/// The scale actually used (options.scale, or 1/sqrt(d_k) when it is 0).
inline double effective_scale(const AttentionProblem& p) {
  return p.options.scale != 0.0 ? p.options.scale : 1.0 / std::sqrt(static_cast<double>(p.shape.d_k));
}

/// GGML's ALiBi slope for query head h of n_head heads: n_head_log2 = 2^floor(log2 n_head),
/// m0 = 2^(-max_bias / n_head_log2), m1 = 2^(-max_bias / 2 / n_head_log2),
/// slope = m0^(h+1) for h < n_head_log2, else m1^(2 (h - n_head_log2) + 1). Real = double in the oracle.
template <typename Real>
KVFLASH_HOST_DEVICE inline Real alibi_slope(Real max_bias, int64_t n_head, int64_t h) {
  if (!(max_bias > Real(0))) return Real(0);
  int64_t n_head_log2 = 1;
  while (n_head_log2 * 2 <= n_head) n_head_log2 *= 2;
  const Real base = h < n_head_log2 ? exp2(-max_bias / static_cast<Real>(n_head_log2))
                                    : exp2(-(max_bias / Real(2)) / static_cast<Real>(n_head_log2));
  const int64_t power = h < n_head_log2 ? h + 1 : 2 * (h - n_head_log2) + 1;
  return pow(base, static_cast<Real>(power));
}

/// Byte offset of row r (token) of KV head h in sequence s, through the page table when there is one.
KVFLASH_HOST_DEVICE inline int64_t kv_row_offset(const KvView& v, int64_t s, int64_t h, int64_t r) {
  if (v.paging.pages == nullptr) return s * v.stride.seq + h * v.stride.head + r * v.stride.row;
  const int64_t page = v.paging.pages[s * v.paging.pages_per_seq + r / v.paging.page_rows];
  return page * v.paging.page_bytes + (r % v.paging.page_rows) * v.stride.row + h * v.stride.head;
}

}  // namespace kvflash
