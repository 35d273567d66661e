// What the CPU backend hands its instruction-set flavours: one attention call, cut into tasks, with every
// derived size and workspace offset computed once by cpu_backend.cpp. Plain data, so that the flavour
// translation units (compiled with their own ISA flags) share no inline code with the rest of the library.
#pragma once

#include <cstdint>

#include "kvflash/attention_problem.h"

namespace kvflash::cpu {

/// Keys per tile: a tile of K (and then V) rows is dequantized into per-thread scratch and serves every query row
/// of the task before the next one is read. 32 keys x 128 dims x 4 bytes = 16 KiB per side: both sides fit L1.
inline constexpr int kKeyTile = 32;
/// Head dims are zero-padded in scratch to a multiple of the widest vector (16 floats) so that the inner loops
/// need no remainder handling.
inline constexpr int64_t kDimPad = 16;
/// Extra floats after a row's accumulator in scratch: the running max m, the running sum l, then padding that
/// keeps every row 64-byte aligned.
inline constexpr int64_t kPartialStats = 16;
/// Most query rows one task serves: 8 query heads x 16 rows of a decode step share one pass over the keys.
inline constexpr int64_t kMaxRowTile = 128;
/// Query rows per combine task.
inline constexpr int64_t kCombineRows = 16;

/// Where one query row of a task stands relative to the keys (filled once per task by ScoreVariant::place).
struct RowPlace {
  int64_t position = 0;           // n_kv(s) - n_q + i: bottom-right alignment
  int64_t first = 0;              // first visible key (sliding window)
  int64_t end = 0;                // one past the last visible key (causal, key count)
  const uint8_t* mask = nullptr;  // this row's mask entries (key 0), or nullptr
  float alibi_slope = 0.0f;
};
inline constexpr int64_t kRowPlaceFloats = 16;  // scratch floats per RowPlace (64 bytes)
static_assert(sizeof(RowPlace) <= kRowPlaceFloats * sizeof(float));

/// One thread's scratch, in floats from its start; every region starts 64-byte aligned. Its size depends only on
/// the K/V types and head dims (the planner sizes it from those), so it is laid out for kMaxRowTile rows.
struct ScratchLayout {
  int64_t places = 0;  // [row_tile] RowPlace
  int64_t q = 0;       // [row_tile][dk_pad]   Q rows, scaled, padded, rotated for turbo K
  int64_t scores = 0;  // [row_tile][kKeyTile] scores, then probabilities
  int64_t alpha = 0;   // [row_tile]           rescale factor of each running accumulator for the current tile
  int64_t acc = 0;     // [row_tile][acc_row]  accumulator, then m and l
  int64_t k_tile = 0;  // [kKeyTile][dk_pad]
  int64_t v_tile = 0;  // [kKeyTile][dv_pad]   (unused when V rows are a view of the K rows just dequantized)
  int64_t out = 0;     // [2][dv_pad]          a finished row, and its merge before un-rotation
  int64_t floats = 0;  // per thread, a multiple of 16
};

struct KernelJob {
  const AttentionProblem* problem = nullptr;
  int64_t group = 1;     // query heads per KV head
  int64_t rows = 1;      // query rows per (sequence, KV head): group * n_q, ordered query-row major
  int64_t row_tile = 1;  // rows per task
  int64_t n_row_tiles = 1;
  int64_t n_splits = 1;        // parts of each sequence's key range
  int64_t keys_per_split = 0;  // split j holds keys [j * keys_per_split, (j + 1) * keys_per_split) of its sequence
  int64_t dk_stored = 0;       // values in a stored K row (turbo: padded to 128)
  int64_t dv_stored = 0;
  int64_t dk_pad = 0;  // dk_stored rounded up to kDimPad
  int64_t dv_pad = 0;
  int64_t acc_row = 0;  // dv_pad + kPartialStats
  float scale = 1.0f;
  float softcap = 0.0f;
  bool k_rotated = false;        // turbo K: Q rows are rotated once per task
  bool v_rotated = false;        // turbo V: finished rows are un-rotated once
  bool v_shares_k_tile = false;  // V rows are the first dv values of the K rows, same type: reuse the K tile
  bool has_alibi = false;
  float* scratch = nullptr;    // workers * scratch_stride floats
  int64_t scratch_stride = 0;  // floats per worker (>= scratch_layout.floats)
  ScratchLayout scratch_layout;
  // Split-KV partial results (n_splits > 1), the planner's layout: row (seq, head, i) of split j at index
  // ((j * n_seq + seq) * n_head_q + head) * n_q + i; partial_o holds the split's normalized output, dv_stored values
  // (turbo V: still rotated; the combine un-rotates the merged row once).
  float* partial_o = nullptr;    // [.. ][dv_stored]
  float* partial_max = nullptr;  // running max m of the split
  float* partial_sum = nullptr;  // softmax denominator l of the split
  int64_t n_attend_tasks = 0;
  int64_t n_combine_tasks = 0;
};

/// ALiBi slope of query head `head` (GGML's formula, attention_problem.h), computed in double and rounded once.
/// Defined outside the flavour translation units, which call it once per query row and task.
float alibi_slope_f32(double max_bias, int64_t n_head_q, int64_t head);

/// The entry points of one instruction-set flavour.
struct IsaKernels {
  void (*attend_task)(const KernelJob& job, int64_t task, int slot);
  void (*combine_task)(const KernelJob& job, int64_t task, int slot);
};

const IsaKernels& portable_kernels();
#if defined(KVFLASH_CPU_HAVE_AVX2)
const IsaKernels& avx2_kernels();
#endif
#if defined(KVFLASH_CPU_HAVE_AVX512)
const IsaKernels& avx512_kernels();
#endif

}  // namespace kvflash::cpu
