// How a CUDA split-KV launch divides the keys and where its partial results live. Pure C++ (no CUDA types).
//
// A launch runs one CTA per (sequence, KV head, query chunk, split). kv_len is device data the host must not read
// (no synchronization inside a call), so splits are planned from n_kv, the longest possible sequence: a split
// beyond a sequence's kv_len exits at once, which is how short and long sequences of one batch share the grid.
//
// The planner (src/plan/launch.cpp, KvSplit::split) chooses n_splits today; plan_splits() below is the CUDA
// backend's whole-wave rule, the hook for a CUDA-specific KvSplit enumerator: it needs the kernel's tile, query
// vectors per CTA and resident CTAs per SM (cudaOccupancyMaxActiveBlocksPerMultiprocessor, or a table estimate
// when planning without a device).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "kvflash/attention_problem.h"
#include "kvflash/route.h"

namespace kvflash::cuda {

/// What a kernel instance tells the planner about itself.
struct KernelGeometry {
  int key_tile = 64;              // keys per pipeline tile: a split is a whole number of tiles
  int qvecs_per_cta = 16;         // query vectors (query head x query row) one CTA carries over the keys
  int resident_ctas_per_sm = 1;   // from the occupancy calculator for the instance's threads and shared memory
};

struct SplitPlan {
  int64_t n_qchunks = 1;       // CTAs that share one (sequence, KV head) because its query vectors do not fit one
  int64_t n_splits = 1;        // key ranges per (sequence, KV head, query chunk)
  int64_t keys_per_split = 0;  // a multiple of key_tile
};

// A split shorter than this many tiles spends more on its prologue and the combine than it gains in parallelism.
inline constexpr int64_t kMinTilesPerSplit = 2;
// Caps the workspace (rows x splits x d_v floats) and the combine's loop; 128K keys / 512 is still 256 keys each.
inline constexpr int64_t kMaxSplits = 512;

/// Query vectors of one (sequence, KV head): every query head of the group times every query row.
inline int64_t group_qvecs(const AttentionShape& s) { return s.n_head_q / s.n_head_kv * s.n_q; }

/// The split count that fills the GPU in whole waves. Among the counts whose CTAs fill at least 80% of one wave
/// of resident CTAs (or, if none does, the largest allowed), it takes the one whose last wave is fullest, and the
/// fewest splits among equals: every split costs a prologue and a partial row in the combine.
inline SplitPlan plan_splits(const AttentionShape& s, const KernelGeometry& g, int sm_count) {
  SplitPlan plan;
  const int64_t qvecs = group_qvecs(s);
  plan.n_qchunks = (qvecs + g.qvecs_per_cta - 1) / g.qvecs_per_cta;
  const int64_t tile = std::max(1, g.key_tile);
  const int64_t tiles = std::max<int64_t>(1, (s.n_kv + tile - 1) / tile);
  const int64_t base = s.n_seq * s.n_head_kv * plan.n_qchunks;
  const int64_t resident = std::max<int64_t>(1, int64_t{sm_count} * std::max(1, g.resident_ctas_per_sm));
  const int64_t max_splits = std::clamp<int64_t>(tiles / kMinTilesPerSplit, 1, kMaxSplits);

  int64_t best = 1;
  double best_score = -1.0;
  for (int64_t n = 1; n <= max_splits; ++n) {
    const double waves = static_cast<double>(base * n) / static_cast<double>(resident);
    const double full_waves = waves < 1.0 ? 1.0 : static_cast<double>((base * n + resident - 1) / resident);
    const double fill = waves / full_waves;  // busy fraction of the CTA slots over the launch
    // Launches under 80% of a wave leave SMs idle however evenly they finish: rank them below every fuller one.
    const double score = waves >= 0.8 ? 1.0 + fill : waves;
    if (score > best_score + 1e-9) {
      best_score = score;
      best = n;
    }
    if (base * n >= 8 * resident) break;  // beyond eight waves the last wave's fill hardly matters
  }
  const int64_t tiles_per_split = (tiles + best - 1) / best;
  plan.keys_per_split = tiles_per_split * tile;
  plan.n_splits = (tiles + tiles_per_split - 1) / tiles_per_split;
  return plan;
}

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
