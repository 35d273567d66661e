// How a CUDA split-KV launch divides the keys and where its partial results live. Pure C++ (no CUDA types).
//
// A launch runs one CTA per (sequence, KV head, query chunk, split). kv_len is device data the host must not read
// (no synchronization inside a call), so splits are planned from n_kv, the longest possible sequence: a split
// beyond a sequence's kv_len exits at once, which is how short and long sequences of one batch share the grid.
//
// The planner chooses n_splits (src/plan/launch.cpp: decode rows fill whole waves of resident CTAs); the
// kernels take the route's split count as it is.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "kvflash/attention_problem.h"
#include "kvflash/route.h"

namespace kvflash::cuda {

struct SplitPlan {
  int64_t n_qchunks = 1;       // CTAs that share one (sequence, KV head) because its query vectors do not fit one
  int64_t n_splits = 1;        // key ranges per (sequence, KV head, query chunk)
  int64_t keys_per_split = 0;  // a multiple of key_tile
};

/// Query vectors of one (sequence, KV head): every query head of the group times every query row.
inline int64_t group_qvecs(const AttentionShape& s) { return s.n_head_q / s.n_head_kv * s.n_q; }

/// Where the partial results of a split launch go: per split and output row (row = (s * n_head_q + h) * n_q + i),
/// the unnormalized numerator over the keys of the split, its running max and its softmax sum. Split-major, inside
/// the planner's WorkspaceLayout (partial_o, partial_max, partial_sum).
struct SplitOutput {
  int64_t n_splits = 1;
  int64_t rows = 0;              // n_seq * n_head_q * n_q
  int64_t o_pitch = 0;           // floats per partial row
  bool rotated = false;          // partials of turbo V stay in the rotated domain (needs o_pitch >= stored d_v)
  float* partial_o = nullptr;    // [n_splits][rows][o_pitch]
  float* partial_max = nullptr;  // [n_splits][rows]; -inf for a split that saw no key
  float* partial_sum = nullptr;  // [n_splits][rows]
};

/// What a kernel with `key_tile`-key tiles and `qvecs_per_cta` query vectors per CTA runs for a planner route:
/// the route's splits (a single split covers every key), and the query chunks the kernel itself needs.
inline SplitPlan split_plan_of(const Route& r, const AttentionShape& s, int key_tile, int qvecs_per_cta) {
  SplitPlan plan;
  plan.n_qchunks = (group_qvecs(s) + qvecs_per_cta - 1) / qvecs_per_cta;
  plan.n_splits = std::max<int64_t>(1, r.n_splits);
  const int64_t tile = std::max(1, key_tile);
  plan.keys_per_split = plan.n_splits > 1 ? r.keys_per_split : (std::max<int64_t>(1, s.n_kv) + tile - 1) / tile * tile;
  return plan;
}

/// The SplitOutput of a planner route's workspace layout (WorkspaceLayout::partial_o / partial_max / partial_sum).
/// Partial rows hold the route's pitch: when it is below the stored V head dim (turbo V padded past d_v), the
/// split kernel rotates each partial back before storing it, and the combine does not rotate again.
inline SplitOutput split_output_of(const Route& r, const AttentionShape& s, int64_t dv_stored, void* workspace) {
  SplitOutput out;
  out.n_splits = std::max<int64_t>(1, r.n_splits);
  out.rows = s.n_seq * s.n_head_q * s.n_q;
  if (out.n_splits <= 1 || workspace == nullptr || out.rows == 0) return out;
  auto* base = static_cast<unsigned char*>(workspace);
  out.o_pitch = r.layout.partial_o.bytes / (4 * out.n_splits * out.rows);
  out.rotated = out.o_pitch >= dv_stored;
  out.partial_o = reinterpret_cast<float*>(base + r.layout.partial_o.offset);
  out.partial_max = reinterpret_cast<float*>(base + r.layout.partial_max.offset);
  out.partial_sum = reinterpret_cast<float*>(base + r.layout.partial_sum.offset);
  return out;
}

}  // namespace kvflash::cuda
