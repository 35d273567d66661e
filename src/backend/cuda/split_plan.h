// How a CUDA split-KV launch divides the keys and where its partial results live. Pure C++ (no CUDA types): the
// planner (src/plan/launch.cpp, KvSplit::whole_waves) includes it to choose a decode or prefill route's splits.
//
// A launch runs one CTA per (sequence, KV head, query chunk, split). kv_len is device data the host must not read
// (no synchronization inside a call), so splits are planned from n_kv, the longest possible sequence: a split
// beyond a sequence's kv_len exits at once, which is how short and long sequences of one batch share the grid.
// The split count comes from the SM count and the instance's resident CTAs per SM (decode_geometry(): its shared
// memory, checked against the kernel's own configuration at compile time, and its register bound).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "kvflash/attention_problem.h"
#include "kvflash/kv_type.h"
#include "kvflash/route.h"

namespace kvflash::cuda {

/// Shared-memory row pitch for stored rows: 16-byte aligned (cp.async), and an odd multiple of 16 so that the 8
/// rows a fragment load touches start in different bank groups.
constexpr int smem_row_pitch(int row_bytes) {
  const int aligned = (row_bytes + 15) / 16 * 16;
  return aligned % 32 == 0 ? aligned + 16 : aligned;
}

/// Bytes of one stage for a tile of `tile` keys (for choosing the tile and the depth at compile time): K rows,
/// V rows, and 16 bytes of slack after each tile.
constexpr int kv_stage_bytes(KvType kt, int64_t dk, KvType vt, int64_t dv, int tile) {
  return tile * (smem_row_pitch(static_cast<int>(head_row_bytes(kt, dk))) +
                 smem_row_pitch(static_cast<int>(head_row_bytes(vt, dv)))) +
         32;
}

/// What a decode instance's launch looks like to the planner: the same numbers as its NarrowDecodeConfig or
/// WideDecodeConfig (decode_split_kv.cuh static_asserts key_tile, qvecs_per_cta and smem_bytes against them).
struct DecodeGeometry {
  bool narrow = true;           // stored d_v <= 128: decode_narrow.cuh, else decode_wide.cuh
  int key_tile = 64;            // keys per pipeline tile
  int stages = 3;               // tiles in flight
  int qvecs_per_cta = 8;        // query vectors (query head x query row) one CTA carries over the keys
  int64_t smem_bytes = 0;       // dynamic shared memory per CTA
  int max_ctas_by_registers = 4;  // __launch_bounds__: narrow_min_ctas_per_sm(); 128 threads at <= 255 registers wide
  bool alone_per_sm = false;      // planned at one CTA per SM where it is the only query chunk of its keys (f16 rows)
};

/// Query vectors a narrow CTA may carry: one n8 tile of the MMAs, or two (each loaded and dequantized K / V
/// fragment then feeds both), so that 9-16 query vectors of a KV head read and dequantize its bytes once.
inline constexpr int kNarrowQvecs = 8;
inline constexpr int kNarrowQvecsWide = 16;

/// The narrow kernel's __launch_bounds__ minimum of resident CTAs: 4 (128 registers) for 8 query vectors; 16
/// carry twice the accumulators (O^T 64 registers at d_v 128 instead of 32) and at 128 registers spill, so they
/// run at 3 (168 registers).
constexpr int narrow_min_ctas_per_sm(int qvecs) { return qvecs > kNarrowQvecs ? 3 : 4; }

/// Keys a decode split holds a multiple of: the kernel table's kv_tile of the cuda.decode_split_kv rows (checked in
/// launch.cpp). The narrow kernel's two-group instances read 128-key tiles, so a split may end (and the next
/// begin) inside one: the kernel bounds its last tile by the split's key range anyway.
inline constexpr int kDecodeSplitGranule = 64;

/// 16-key groups each warp of a narrow CTA takes per tile: two where a 64-key stage is small (q4_0, turbo: ~10 KB
/// at d 128), so that a warp's softmax reductions, rescale and loop overhead serve 32 keys and its two groups'
/// dequantize-and-multiply chains interleave (the q4_0 kernel, 16 warps per SM, stalls mostly on fixed-latency
/// dependencies: H100 source counters, 2026-11-23); one where the tile would crowd the SM's shared memory, and
/// for 16 query vectors, whose accumulators already take 168 registers (two groups spilled 224 bytes there).
/// Two-group tiles run 2 stages at four CTAs per SM. Session 11 measured two alternatives that won on contiguous
/// caches and lost on the paged ones of the issues' command (bench/cuda_notes.md, session 11): q4_0 in 3 stages
/// at 2 CTAs per SM (131K 79.6 -> 73.6 µs contiguous, 84.4 -> 92.4 paged) and q8_0 d 128 in two groups (118.8 ->
/// 117.2, 126.1 -> 129.7).
constexpr int narrow_key_groups(KvType kt, int64_t dk, KvType vt, int64_t dv, int qvecs) {
  return qvecs <= kNarrowQvecs && kv_stage_bytes(kt, dk, vt, dv, 64) <= 12 * 1024 ? 2 : 1;
}

/// Bytes of a ScoreVariant (score_variant.cuh; checked there): the per-query-vector options kept in shared memory.
inline constexpr int kScoreVariantBytes = 48;

/// `narrow_qvecs` (kNarrowQvecs or kNarrowQvecsWide) picks the narrow kernel's instance; the wide kernel has one.
constexpr DecodeGeometry decode_geometry(KvType kt, int64_t dk, KvType vt, int64_t dv,
                                         int narrow_qvecs = kNarrowQvecs) {
  DecodeGeometry g;
  const int64_t dk_stored = stored_dim(kt, dk), dv_stored = stored_dim(vt, dv);
  g.narrow = dv_stored <= 128;
  if (g.narrow) {
    // f16 rows (35 KB stages): 3 stages, two CTAs per SM, ~140 KB in flight per SM. Smaller rows: ~44 KB of
    // stages, so that four CTAs (16 warps, 128 registers each) fit an SM with 3+ tiles in flight each.
    // NarrowDecodeConfig takes its tile and stages from here.
    g.qvecs_per_cta = narrow_qvecs > kNarrowQvecs ? kNarrowQvecsWide : kNarrowQvecs;
    const int groups = narrow_key_groups(kt, dk, vt, dv, g.qvecs_per_cta);
    g.key_tile = 64 * groups;
    const int stage = kv_stage_bytes(kt, dk, vt, dv, g.key_tile);
    g.stages = groups == 2 ? 2 : stage >= 24 * 1024 ? 3 : std::clamp(44 * 1024 / stage, 3, 6);
    const int64_t q_rows = 2 * g.qvecs_per_cta;  // the query vectors, then their fragments packed per lane
    const int64_t variants_end =
        int64_t{g.stages} * stage + q_rows * (dk_stored + 8) * 2 + int64_t{g.qvecs_per_cta} * kScoreVariantBytes;
    g.smem_bytes = (variants_end + 15) / 16 * 16 + int64_t{g.stages} * 2 * g.key_tile * 8 + 2 * 16 * 2;
    g.max_ctas_by_registers = narrow_min_ctas_per_sm(g.qvecs_per_cta);
    g.alone_per_sm = groups == 1 && stage >= 24 * 1024;
  } else {
    // 64 keys per tile unless a stage would pass 40 KB (wide f16 rows); two m-tiles of 16 query vectors where
    // the accumulators still fit the register file.
    g.key_tile = kv_stage_bytes(kt, dk, vt, dv, 64) <= 40 * 1024 ? 64 : 32;
    const int stage = kv_stage_bytes(kt, dk, vt, dv, g.key_tile);
    g.stages = std::clamp(100 * 1024 / stage, 2, 6);
    g.qvecs_per_cta = (dk_stored <= 256 && dv_stored <= 256) ? 32 : 16;
    const int64_t q = g.qvecs_per_cta;
    const int64_t stats_end = int64_t{g.stages} * stage + q * (dk_stored + 8) * 2 + q * (g.key_tile + 4) * 4 +
                              q * (g.key_tile + 8) * 2 + 3 * q * 4;
    g.smem_bytes = (stats_end + 15) / 16 * 16 + int64_t{g.stages} * 2 * g.key_tile * 8 + 2 * 16 * 2;
    g.max_ctas_by_registers = 2;
  }
  return g;
}

/// CTAs of `g` resident on one SM of a device whose blocks may opt into `smem_per_block` bytes: the shared memory
/// of an SM is that plus the 1 KiB the driver reserves per block (Hopper and Ampere), and each CTA also takes its
/// 1 KiB. At least 1 (an instance that fits no SM is refused at launch, not here).
constexpr int resident_ctas_per_sm(const DecodeGeometry& g, int64_t smem_per_block) {
  constexpr int64_t kReservedPerBlock = 1024;
  if (smem_per_block <= 0) return g.max_ctas_by_registers;
  const int64_t by_smem = (smem_per_block + kReservedPerBlock) / (g.smem_bytes + kReservedPerBlock);
  return static_cast<int>(std::clamp<int64_t>(by_smem, 1, g.max_ctas_by_registers));
}

/// The CTAs per SM the split rule fills for `query_chunks` CTAs per (sequence, KV head) and key range:
/// resident_ctas_per_sm(), except that
/// - a narrow instance of 8 query vectors whose shared memory holds it to 3 is planned at 2. Measured
///   (bench/cuda_notes.md, session 6 split sweep, H100): q8_0 d 128, 3 resident, ran 5-7% faster at 32 splits
///   (256 CTAs, ~2 per SM) than at the 43-48 that fill 3 per SM, at every depth from 8K to 131K (131K: 119.5
///   against 125.2 us); the 4-resident instances (q4_0, turbo) ran fastest filling 4, and the 16-vector instances
///   filling 3.
/// - an alone_per_sm instance (f16 rows) that is the only query chunk of its keys is planned at 1: fewer, longer
///   streams read faster (session 11, f16 131K: 197.2 µs at 16 splits, 203.7 at 32, 195.5 at 12; 32K 60.1 against
///   62.0; batch 16 alike at 1 or 2 splits), while two query chunks over the same keys ran 1.8x slower at 1 per SM
///   (n_q = 4, 131K: 491 µs at 8 splits, 270 at 16).
constexpr int planned_ctas_per_sm(const DecodeGeometry& g, int64_t smem_per_block, int64_t query_chunks = 1) {
  const int resident = resident_ctas_per_sm(g, smem_per_block);
  if (g.alone_per_sm && query_chunks == 1) return 1;
  return g.narrow && g.qvecs_per_cta == kNarrowQvecs && resident == 3 ? 2 : resident;
}

/// Query vectors one CTA of the tensor-core prefill kernel carries (PrefillConfig::kQvecs in
/// prefill_attention.cuh, static_asserted there): 4 query slots of two 16-vector m-tiles up to a stored d_v of
/// 128, one m-tile above (the accumulators must fit 255 registers).
constexpr int prefill_qvecs_per_cta(KvType vt, int64_t dv) { return stored_dim(vt, dv) <= 128 ? 128 : 64; }

/// The prefill kernel's resident CTAs per SM: 8 warps at 255 registers take the whole register file.
inline constexpr int kPrefillCtasPerSm = 1;
/// Prefill splits fill at most one wave: each CTA is long and alone on its SM, so splits beyond the SMs only
/// shorten CTAs and add partial rows (a 32-row chunk of llama3-8b over 8 KV heads takes 16 splits, 128 CTAs; an
/// 8-wave search took up to ~132 splits of chunks that far fewer fill: a 71 MiB workspace bound instead of 8.1).
inline constexpr int kPrefillMaxWaves = 1;

// Beyond this many waves the last wave's fill hardly matters: the search stops there.
inline constexpr int64_t kMaxWaves = 8;

/// What a kernel instance tells the split rule about itself.
struct KernelGeometry {
  int key_tile = 64;              // keys per split granule: a split is a whole number of these
  int qvecs_per_cta = 16;         // query vectors (query head x query row) one CTA carries over the keys
  int ctas_per_sm = 1;            // CTA slots per SM the rule fills: planned_ctas_per_sm() of a DecodeGeometry
  int64_t max_waves = kMaxWaves;  // the split search stops at this many waves (kPrefillMaxWaves for prefill)
};

struct SplitPlan {
  int64_t n_qchunks = 1;       // CTAs that share one (sequence, KV head) because its query vectors do not fit one
  int64_t n_splits = 1;        // key ranges per (sequence, KV head, query chunk)
  int64_t keys_per_split = 0;  // a multiple of key_tile
};

// A split shorter than this many tiles spends more on its prologue and the combine than it gains in parallelism.
// At 4096 keys (64 tiles), 16 splits against 32 (bench/results/h100_session6_ab_and_splits.md): q4_0 0.6 and
// turbo3 1.4 us faster, f16, q8_0 and turbo4 within 0.3 us; 8 splits 2-5 us slower. Session 5's run (fused merge)
// had 16 faster for every type by 1.2-2.2 us. Half the splits also halve the partials a short cache plans for.
inline constexpr int64_t kMinTilesPerSplit = 4;
// Beyond this many CTAs per SM a split must hold kMinTilesPerDenseSplit tiles, else the launch is planned at this
// many. Measured (bench/results/h100_session6_ab_and_splits.md): at 16K keys the 4-resident instances ran 9-11%
// faster at 32 splits (8 tiles, ~2 CTAs per SM) than at the 64 (4 tiles) that fill 4 (q4_0 26.1 vs 28.7 us, turbo3
// 30.3 vs 34.1), while at 131K filling 4 per SM (63 splits of 32 tiles) is 14% faster than 2 (q4_0 81.4 vs 94.0).
inline constexpr int kDenseCtasPerSm = 2;
inline constexpr int64_t kMinTilesPerDenseSplit = 8;
// Caps the workspace (rows x splits x d_v floats) and the combine's loop; 128K keys / 512 is still 256 keys each.
inline constexpr int64_t kMaxSplits = 512;

/// Query vectors of one (sequence, KV head): every query head of the group times every query row.
inline int64_t group_qvecs(const AttentionShape& s) { return s.n_head_q / s.n_head_kv * s.n_q; }

/// The busy fraction of `resident` CTA slots over a launch of `ctas` CTAs: under one wave, the share of the
/// slots used; from one wave on, the waves over the whole waves the launch takes (its last wave's emptiness).
inline double wave_fill(int64_t ctas, int64_t resident) {
  const double waves = static_cast<double>(ctas) / static_cast<double>(resident);
  if (waves < 1.0) return waves;
  return waves / static_cast<double>((ctas + resident - 1) / resident);
}

// A split count whose launch keeps this share of the CTA slots busy is taken: more splits only add prologues and
// combine rows (the v3 runs: q8_0 131K ran faster at 33 splits than at 66, batch 16 x 32K q4_0 at 3 than at more).
// Not lower: at 90% the f16 131K route took 30 splits (240 of 264 slots) and ran 3% slower than at 33 (v4 run).
inline constexpr double kGoodWaveFill = 0.95;

/// Chooses among split counts offered in increasing order: the first whose fill reaches kGoodWaveFill, else the
/// fullest (the fewest splits among equals).
struct WaveChoice {
  int64_t best = 1;
  double best_fill = -1.0;
  bool good = false;
  void offer(int64_t n, double fill) {
    if (good) return;
    if (fill >= kGoodWaveFill) {
      best = n;
      good = true;
    } else if (fill > best_fill + 1e-9) {
      best_fill = fill;
      best = n;
    }
  }
};

/// The split counts the whole-wave rule tries for `base` CTAs per split: 1 .. the first count reaching
/// `max_waves` waves.
inline int64_t whole_wave_search_end(int64_t base, int64_t resident, int64_t max_waves = kMaxWaves) {
  return std::max<int64_t>(1, (max_waves * resident + base - 1) / base);
}

/// Splits of `tiles` tiles among at most `n` splits: whole tiles per split, recounted so that none is empty.
inline int64_t splits_of_whole_tiles(int64_t tiles, int64_t n) {
  const int64_t tiles_per_split = (tiles + n - 1) / n;
  return (tiles + tiles_per_split - 1) / tiles_per_split;
}

/// The whole-wave split count for `tiles` tiles and `base` CTAs per split on `resident` CTA slots, among the
/// counts that whole tiles make exactly (no empty split), at most min(tiles / kMinTilesPerSplit, cap).
inline int64_t whole_wave_count(int64_t tiles, int64_t base, int64_t resident, int64_t cap) {
  const int64_t last = std::min(std::max<int64_t>(1, tiles / kMinTilesPerSplit), cap);
  WaveChoice choice;
  for (int64_t n = 1; n <= last; ++n) {
    if (splits_of_whole_tiles(tiles, n) == n) choice.offer(n, wave_fill(base * n, resident));
    if (choice.good) break;
  }
  return choice.best;
}

/// The whole-wave split count for `tiles` tiles and `base` CTAs per split on an SM count of `sm_count` with
/// `ctas_per_sm` CTA slots each: whole_wave_count() over all slots, unless that fills more than kDenseCtasPerSm
/// per SM with splits shorter than kMinTilesPerDenseSplit tiles; then over kDenseCtasPerSm slots per SM.
inline int64_t whole_wave_splits(int64_t tiles, int64_t base, int64_t sm_count, int64_t ctas_per_sm,
                                 int64_t max_waves, int64_t max_splits) {
  const auto count_on = [&](int64_t per_sm) {
    const int64_t resident = std::max<int64_t>(1, sm_count * per_sm);
    const int64_t cap = std::min(std::max<int64_t>(1, max_splits), whole_wave_search_end(base, resident, max_waves));
    return whole_wave_count(tiles, base, resident, cap);
  };
  const int64_t dense = count_on(ctas_per_sm);
  if (ctas_per_sm <= kDenseCtasPerSm || tiles >= kMinTilesPerDenseSplit * dense) return dense;
  return count_on(kDenseCtasPerSm);
}

/// The split count that fills the GPU in whole waves, for `n_items` (sequence, KV head) pairs whose query vectors
/// number `qvecs` each, over n_kv keys: the fewest splits whose launch keeps kGoodWaveFill of the resident CTA
/// slots busy (wave_fill()), else the fullest launch, since every split costs a prologue and a partial row in the
/// combine. No split shorter than kMinTilesPerSplit tiles, at most max_splits, at most g.max_waves waves; more than
/// kDenseCtasPerSm CTAs per SM only with splits of kMinTilesPerDenseSplit tiles (whole_wave_splits()).
inline SplitPlan plan_whole_waves(int64_t n_items, int64_t qvecs, int64_t n_kv, const KernelGeometry& g,
                                  int sm_count, int64_t max_splits = kMaxSplits) {
  SplitPlan plan;
  plan.n_qchunks = std::max<int64_t>(1, (qvecs + g.qvecs_per_cta - 1) / g.qvecs_per_cta);
  const int64_t tile = std::max(1, g.key_tile);
  const int64_t tiles = std::max<int64_t>(1, (n_kv + tile - 1) / tile);
  const int64_t base = std::max<int64_t>(1, n_items * plan.n_qchunks);
  plan.n_splits = whole_wave_splits(tiles, base, std::max(1, sm_count), std::max(1, g.ctas_per_sm),
                                    g.max_waves, max_splits);
  plan.keys_per_split = (tiles + plan.n_splits - 1) / plan.n_splits * tile;
  return plan;
}

/// plan_whole_waves() for a problem shape (every sequence as long as n_kv).
inline SplitPlan plan_splits(const AttentionShape& s, const KernelGeometry& g, int sm_count) {
  return plan_whole_waves(s.n_seq * s.n_head_kv, group_qvecs(s), s.n_kv, g, sm_count);
}

/// The largest plan_whole_waves().n_splits over every n_kv in [0, max_n_kv] (exact; not monotone in n_kv). Whole
/// tiles make every count n exactly once t > n (n - 1) tiles (t / n - t / (n + 1) >= 1), so past
/// max(kMinTilesPerDenseSplit x G, G (G - 1)) tiles the count stays at G, the first count up to the cap whose fill
/// is good over all CTA slots (or, without one, past the cap's bound it stays at the fullest), and no shorter split
/// sends the rule to kDenseCtasPerSm: the walk over tile counts stops there.
inline int64_t max_whole_wave_splits(int64_t n_items, int64_t n_qchunks, int64_t max_n_kv, const KernelGeometry& g,
                                     int sm_count, int64_t max_splits = kMaxSplits) {
  if (max_n_kv <= 0) return 1;
  const int64_t tile = std::max(1, g.key_tile);
  const int64_t max_tiles = (max_n_kv + tile - 1) / tile;
  const int64_t base = std::max<int64_t>(1, n_items * std::max<int64_t>(1, n_qchunks));
  const int64_t sms = std::max(1, sm_count), per_sm = std::max(1, g.ctas_per_sm);
  const int64_t resident = sms * per_sm;
  const int64_t cap = std::min(std::max<int64_t>(1, max_splits), whole_wave_search_end(base, resident, g.max_waves));
  int64_t settled = cap;  // the count every large enough tile count gets
  for (int64_t n = 1; n <= cap; ++n) {
    if (wave_fill(base * n, resident) >= kGoodWaveFill) {
      settled = n;
      break;
    }
  }
  const int64_t t_end = std::min(max_tiles, std::max(kMinTilesPerDenseSplit * settled, settled * settled));
  int64_t reached = 1;
  for (int64_t t = 1; t <= t_end; ++t) {
    reached = std::max(reached, whole_wave_splits(t, base, sms, per_sm, g.max_waves, max_splits));
  }
  return reached;
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

/// Query vectors one CTA of the generic kernel (cuda.generic) holds: the planner counts its CTAs as (sequence, KV
/// head) x query chunks of this many x splits, so that hundreds of query rows fill the GPU without splitting keys.
inline constexpr int kGenericQvecsPerCta = 8;

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
