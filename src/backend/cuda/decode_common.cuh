// What the two split-KV decode kernels (decode_narrow.cuh for d_v <= 128, decode_wide.cuh above) share: the work
// item of a CTA, the shared-memory geometry of a K/V tile, the cp.async tile pipeline, and the query staging.
#pragma once

#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>

#include "backend/cuda/kv_fragments.cuh"
#include "backend/cuda/kv_tile_copy.cuh"
#include "backend/cuda/output_rows.cuh"
#include "backend/cuda/split_plan.h"
#include "backend/cuda/turbo_centroids.cuh"
#include "backend/cuda/turbo_rotation.cuh"
#include "kvflash/attention_problem.h"

namespace kvflash::cuda {

/// Per-launch values that are not part of the problem.
struct DecodeLaunch {
  float scale = 1.0f;  // effective_scale(p), folded into the staged query
  int64_t n_qchunks = 1;
  int64_t keys_per_split = 0;
  int64_t seq_begin = 0;  // first sequence of this launch (launches are chunked to fit the grid limit)
  SplitOutput out;
};

/// Shared-memory layout of the K/V tiles of one instance: KeyTile rows of K then of V per stage, Stages deep.
template <int HeadDimK, int HeadDimV, KvType KType, KvType VType, int KeyTile, int Stages>
struct KvTileGeometry {
  static constexpr int kDimK = static_cast<int>(stored_dim(KType, HeadDimK));  // turbo rows are padded to 128s
  static constexpr int kDimV = static_cast<int>(stored_dim(VType, HeadDimV));
  static constexpr int kRowBytesK = static_cast<int>(row_bytes(KType, kDimK));
  static constexpr int kRowBytesV = static_cast<int>(row_bytes(VType, kDimV));
  static constexpr int kPitchK = smem_row_pitch(kRowBytesK);
  static constexpr int kPitchV = smem_row_pitch(kRowBytesV);
  // Each tile is followed by 16 bytes that no copy writes: fragment loads read up to 3 bytes past a row, and
  // those bytes must not belong to a tile that cp.async may be filling at the same time.
  static constexpr int kTileSlack = 16;
  static constexpr int kVTileOffset = KeyTile * kPitchK + kTileSlack;
  static constexpr int kStageBytes = kVTileOffset + KeyTile * kPitchV + kTileSlack;
  static constexpr int kStagesBytes = Stages * kStageBytes;
  static constexpr int kOffsetsBytes = Stages * 2 * KeyTile * 8;  // int64 row offsets [stage][K, V][KeyTile]
};

/// The (sequence, KV head, split, query chunk) of this CTA and the keys it reads.
struct DecodeWork {
  int64_t s = 0, hkv = 0, split = 0, group = 1;
  int64_t qvec0 = 0;  // first query vector (query head in group x row) of the chunk
  int n_qvecs = 0;
  int64_t len = 0;  // the sequence's keys (kv_len, clamped to the view)
  int64_t key_begin = 0, key_end = 0;
  int n_tiles = 0;
  bool shared_keys = false;  // other CTAs (query chunks) read the same keys at the same time

  __device__ int64_t head_of(int r) const { return hkv * group + (qvec0 + r) / n_q_; }
  __device__ int64_t row_of(int r) const { return (qvec0 + r) % n_q_; }
  int64_t n_q_ = 1;
};

/// The query chunk varies fastest in blockIdx.x so that CTAs reading the same K/V bytes run together and share
/// them through L2.
__device__ inline DecodeWork decode_work(const AttentionProblem& p, const DecodeLaunch& launch, int max_qvecs,
                                         int key_tile) {
  DecodeWork w;
  int64_t work = blockIdx.x;
  const int64_t qchunk = work % launch.n_qchunks;
  work /= launch.n_qchunks;
  w.split = work % launch.out.n_splits;
  work /= launch.out.n_splits;
  w.hkv = work % p.shape.n_head_kv;
  w.s = launch.seq_begin + work / p.shape.n_head_kv;
  w.n_q_ = p.shape.n_q;
  w.group = p.shape.n_head_q / p.shape.n_head_kv;
  w.qvec0 = qchunk * max_qvecs;
  w.n_qvecs = static_cast<int>(std::min<int64_t>(max_qvecs, w.group * p.shape.n_q - w.qvec0));
  w.shared_keys = launch.n_qchunks > 1;
  int64_t len = p.kv_len != nullptr ? p.kv_len[w.s] : p.shape.n_kv;
  w.len = std::min<int64_t>(std::max<int64_t>(len, 0), p.shape.n_kv);  // kv_len is data: never read past the view
  w.key_begin = w.split * launch.keys_per_split;
  w.key_end = std::min(w.len, w.key_begin + launch.keys_per_split);
  // Keys before every row's window are skipped whole (the first row of the step has the earliest window).
  if (p.options.window > 0) w.key_begin = std::max(w.key_begin, w.len - p.shape.n_q - p.options.window + 1);
  w.n_tiles = w.key_begin < w.key_end ? static_cast<int>((w.key_end - w.key_begin + key_tile - 1) / key_tile) : 0;
  return w;
}

/// Keys of the CTA below the returned one need no per-score options (score_variant.cuh): the kernels then only
/// bound the key range. Mask, window, ALiBi and softcap change every score, so no key is plain under them. Causal
/// alone, bottom-right aligned, hides from row i the keys past len - n_q + i: every row sees the keys up to
/// len - n_q, so only the last n_q - 1 keys of a sequence need the per-score check (a 4-row step over 131K keys
/// paid it on every key: f16 400 µs against 210 for one row, H100, 2026-11-23). Sinks enter only the final merge
/// (output_rows.cuh's finish_row) and need nothing per score.
__device__ inline int64_t plain_keys_end(const AttentionProblem& p, const DecodeWork& w) {
  if (p.mask.data != nullptr || p.options.window != 0 || p.options.softcap != 0.0 || p.options.alibi_max_bias != 0.0) {
    return 0;
  }
  return p.options.causal ? w.len - p.shape.n_q + 1 : INT64_MAX;
}

/// The factor a query element is staged with: 1 unless the K fragments produce a power-of-two multiple of the
/// value in that slot (kv_fragments_unscaled.cuh).
template <class KFrag>
__host__ __device__ constexpr float query_weight(int u, int t, int i) {
  if constexpr (requires { KFrag::k_query_weight(0, 0, 0); }) {
    return KFrag::k_query_weight(u, t, i);
  } else {
    return 1.0f;
  }
}

/// Stages the CTA's query vectors into q_s (f16, `rows` rows of DimK + pad): scaled, zero past HeadDimK (turbo
/// padding) and for rows past n_qvecs, rotated for turbo K, reordered into the head-dim order of K's fragments.
/// `q_f32` is scratch for rows * DimK floats. Call from all threads; ends with a barrier. The work item is the
/// decode kernels' DecodeWork or the mma.sync prefill's PrefillWork (n_qvecs, s, head_of, row_of).
template <class KFrag, int HeadDimK, int DimK, bool RotatedK, int Threads, class Work>
__device__ inline void stage_query(const AttentionProblem& p, const Work& w, float scale, float* q_f32,
                                   __half* q_s, int q_pitch, int rows) {
  const int tid = static_cast<int>(threadIdx.x);
  for (int r = tid / 32; r < rows; r += Threads / 32) {  // one warp per row: the row's address once
    const float* src = nullptr;
    if (r < w.n_qvecs) {
      src = query_row(p, w.s, w.head_of(r), w.row_of(r));
    }
    for (int d = tid % 32; d < DimK; d += 32) q_f32[r * DimK + d] = src != nullptr && d < HeadDimK ? src[d] * scale : 0.0f;
  }
  __syncthreads();
  if constexpr (RotatedK) {
    rotate_rows_in_smem(q_f32, rows, DimK, DimK, /*inverse=*/false);
    __syncthreads();
  }
  // A thread keeps its slots and walks the rows, so that a slot's source element and weight (~60 integer
  // instructions) are computed once per slot rather than once per element.
  constexpr int kRowGroups = Threads % DimK == 0 ? Threads / DimK : 1;
  for (int slot = kRowGroups == 1 ? tid : tid % DimK; slot < DimK; slot += kRowGroups == 1 ? Threads : DimK) {
    const int kstep = slot / 16, kk = slot % 16;
    const int i = 4 * (kstep % 4) + 2 * (kk / 8) + kk % 2;
    const int u = kstep / 4, t = (kk % 8) / 2;
    const int from = KFrag::k_dim(u, t, i);
    const float weight = query_weight<KFrag>(u, t, i);
    for (int r = kRowGroups == 1 ? 0 : tid / DimK; r < rows; r += kRowGroups) {
      q_s[r * q_pitch + slot] = __float2half_rn(q_f32[r * DimK + from] * weight);
    }
  }
  __syncthreads();
}

/// Rows per contiguous run of a tile in shared memory's flat layout: a tile of runs is copied as byte ranges with
/// 16-byte cp.async and no per-row addressing, and its rows lie row_bytes apart in shared memory.
/// KeyTile: the whole tile is one run (rows back to back, no page boundary inside a tile).
/// kPageRunRows: pages of a multiple of 16 rows smaller than a tile (vLLM's 16-token blocks), head-major in the
///   page: each 16-row run is contiguous and starts 16-byte aligned, so formats whose rows are not a multiple of
///   16 bytes (q4_0's 72, turbo3's 50) still move 16 bytes per instruction, where the row copy falls to the
///   widest power of two dividing the row (8 and 2 bytes: turbo3 over 16-token pages took synchronous 2-byte
///   copies); also a 128-key tile whose split starts at a 64-key granule inside it, so it straddles a page.
/// 0: rows are copied one by one (kv_tile_copy.cuh).
inline constexpr int kPageRunRows = 16;

template <int KeyTile>
__device__ inline int kv_tile_run_rows(const KvView& v, const DecodeWork& w, int row_bytes) {
  static_assert(KeyTile % kPageRunRows == 0, "a tile is a whole number of page runs");
  if (v.stride.row != row_bytes) return 0;
  const uint64_t data = reinterpret_cast<uint64_t>(v.data);
  if (v.paging.pages != nullptr) {
    if (v.paging.page_bytes % 16 != 0 || (data + static_cast<uint64_t>(w.hkv * v.stride.head)) % 16 != 0) return 0;
    if (w.key_begin % KeyTile == 0 && v.paging.page_rows % KeyTile == 0 && (int64_t{KeyTile} * row_bytes) % 16 == 0) {
      return KeyTile;
    }
    // Splits start on 64-key granules (the planner's kv_tile), which a 128-key tile may straddle: runs then.
    if (w.key_begin % kPageRunRows == 0 && v.paging.page_rows % kPageRunRows == 0 &&
        (int64_t{kPageRunRows} * row_bytes) % 16 == 0) {
      return kPageRunRows;
    }
    return 0;
  }
  if ((int64_t{KeyTile} * row_bytes) % 16 != 0) return 0;
  return (data + static_cast<uint64_t>(w.s * v.stride.seq + w.hkv * v.stride.head + w.key_begin * row_bytes)) % 16 ==
                 0
             ? KeyTile
             : 0;
}

/// Where 16-byte chunk c of a run of rows lands in shared memory: flat (Pitch == RowBytes: the fragment loaders
/// read any 2-byte-aligned pitch), or at the row's padded pitch (f16 rows, which ldmatrix reads and which need
/// the padding to avoid bank conflicts); a row is then a whole number of chunks.
template <int RowBytes, int Pitch>
__host__ __device__ constexpr int span_chunk_offset(int c) {
  if constexpr (Pitch == RowBytes) {
    return 16 * c;
  } else {
    static_assert(RowBytes % 16 == 0, "padded rows are copied as whole 16-byte chunks");
    constexpr int kRowChunks = RowBytes / 16;
    return c / kRowChunks * Pitch + c % kRowChunks * 16;
  }
}

/// A tile of KeyTile rows stored back to back from byte `start` of `data` (16-byte aligned: kv_tile_run_rows() said
/// KeyTile), copied into `dst` (rows Pitch bytes apart) by threads tid = 0 .. Threads - 1: 16-byte copies of the
/// bytes of the rows before key_end (rows_valid of them), zeros after (cp.async fills the part of a 16-byte chunk
/// past its source size with zeros).
template <int KeyTile, int RowBytes, int Threads, int Pitch = RowBytes>
__device__ __forceinline__ void copy_tile_span(uint8_t* dst, const void* data, int64_t start, int64_t rows_valid,
                                             int tid) {
  const auto* src = static_cast<const uint8_t*>(data) + start;
  constexpr int kChunks = KeyTile * RowBytes / 16;
  // Chunks tid + k Threads of a padded tile sit a constant distance apart where Threads chunks are whole rows
  // (f16 at d 64 or 128: rows of 8 or 16 chunks, 128 threads).
  constexpr bool kConstantStep = Pitch == RowBytes || Threads % (RowBytes / 16) == 0;
  if (kConstantStep && rows_valid >= KeyTile) {
    // A whole tile (every tile but a split's last): no bounds, one base address, the rest immediate offsets
    // (the general loop below costs ~20 instructions per 16-byte chunk, a quarter of a q4_0 tile's work; the f16
    // row copy by offsets ~34, 60% of an f16 decode kernel's instructions: H100 source counters, 2026-11-23).
    const uint8_t* s = src + 16 * tid;
    uint8_t* d = dst + span_chunk_offset<RowBytes, Pitch>(tid);
    constexpr int kStep = span_chunk_offset<RowBytes, Pitch>(Threads);
#pragma unroll
    for (int k = 0; k < (kChunks + Threads - 1) / Threads; ++k) {
      if ((k + 1) * Threads <= kChunks || k * Threads + tid < kChunks) {
        ptx::cp_async16_l2_256(d + kStep * k, s + 16 * Threads * k);
      }
    }
    return;
  }
  const int valid_bytes = static_cast<int>(rows_valid < KeyTile ? rows_valid : KeyTile) * RowBytes;
#pragma unroll 2
  for (int c = tid; c < kChunks; c += Threads) {
    const int n = min(max(valid_bytes - 16 * c, 0), 16);
    ptx::cp_async<16>(dst + span_chunk_offset<RowBytes, Pitch>(c),
                      n > 0 ? src + 16 * c : static_cast<const uint8_t*>(data), n);
  }
}

/// The cp.async pipeline over a CTA's key tiles. Row offsets of a tile (or, for runs, their starts) are computed
/// before the barrier that precedes its issue; stage `slot` of `stages` receives the tile. Tiles stored as runs of
/// rows move as runs: flat (FlatK / FlatV) for formats whose fragment loaders read rows at any 2-byte-aligned pitch
/// (every format but f16), at the padded pitch for f16, which ldmatrix reads and which needs the padding to avoid
/// bank conflicts.
template <class Geo, int KeyTile, int Threads, bool FlatK, bool FlatV>
struct KvPipeline {
  static_assert(KeyTile <= Threads, "one thread computes each K and V row offset of a tile");
  static_assert((KeyTile & (KeyTile - 1)) == 0, "runs (KeyTile or kPageRunRows rows) start where row & (run - 1) is 0");
  const AttentionProblem& p;
  const DecodeWork& w;
  uint8_t* stages;
  int64_t* offsets;
  int width_k, width_v;
  int run_k, run_v;      // kv_tile_run_rows(), 0 where the tile is copied row by row
  int pitch_k, pitch_v;  // bytes between rows in shared memory

  __device__ KvPipeline(const AttentionProblem& p_, const DecodeWork& w_, uint8_t* stages_, int64_t* offsets_)
      : p(p_), w(w_), stages(stages_), offsets(offsets_) {
    width_k = kv_copy_width(p.k, w.s, w.hkv, Geo::kRowBytesK);
    width_v = kv_copy_width(p.v, w.s, w.hkv, Geo::kRowBytesV);
    // f16 tiles that other query chunks read at the same time stay row copies: as runs (and as bulk copies,
    // session 6) a 4-row step over 131K keys (two chunks of 8 query vectors) ran 14% slower, where one chunk ran
    // 5% faster (H100, 2026-11-23, bench/cuda_notes.md session 11); why is not known.
    run_k = FlatK || !w.shared_keys ? kv_tile_run_rows<KeyTile>(p.k, w, Geo::kRowBytesK) : 0;
    run_v = FlatV || !w.shared_keys ? kv_tile_run_rows<KeyTile>(p.v, w, Geo::kRowBytesV) : 0;
    pitch_k = FlatK && run_k > 0 ? Geo::kRowBytesK : Geo::kPitchK;
    pitch_v = FlatV && run_v > 0 ? Geo::kRowBytesV : Geo::kPitchV;
  }

  /// Offsets of the rows of `tile` its copy reads (each run's first row where the tile is copied in runs, every row
  /// where it is copied row by row), into slot `slot`: thread r < KeyTile takes K's row r, thread KeyTile + r V's
  /// (or, with as many threads as rows, thread r both). Runs are powers of two, so the test of a run's first row
  /// is a mask (a modulo by the run length was a ~30-instruction division per tile in half the warps).
  __device__ void compute_offsets(int tile, int slot) const {
    const int tid = static_cast<int>(threadIdx.x);
    const int64_t key0 = w.key_begin + static_cast<int64_t>(tile) * KeyTile;
    int64_t* offs = offsets + slot * 2 * KeyTile;
    const bool both = 2 * KeyTile > Threads;
    if (tid < KeyTile && (run_k == 0 || (tid & (run_k - 1)) == 0)) {
      kv_row_offsets<KeyTile>(p.k, w.s, w.hkv, key0, w.key_end, offs, tid);
    }
    const int r = both ? tid : tid - KeyTile;
    if ((both || tid >= KeyTile) && (run_v == 0 || (r & (run_v - 1)) == 0)) {
      kv_row_offsets<KeyTile>(p.v, w.s, w.hkv, key0, w.key_end, offs + KeyTile, r);
    }
  }

  /// A tile as runs of kPageRunRows rows, run r starting at offs[r * kPageRunRows]: the same layout and zero fill
  /// as a span. A run is RowBytes 16-byte chunks, so the run of a chunk is a division by a constant.
  template <int RowBytes, int Pitch>
  __device__ void copy_page_runs(uint8_t* dst, const void* data, const int64_t* offs, int64_t rows_valid) const {
    const auto* base = static_cast<const uint8_t*>(data);
    constexpr int kRunChunks = kPageRunRows * RowBytes / 16;
    constexpr int kChunks = KeyTile * RowBytes / 16;
    if (rows_valid >= KeyTile) {
#pragma unroll 2
      for (int c = static_cast<int>(threadIdx.x); c < kChunks; c += Threads) {
        const int run = c / kRunChunks;
        ptx::cp_async16_l2_256(dst + span_chunk_offset<RowBytes, Pitch>(c),
                               base + offs[run * kPageRunRows] + 16 * (c - run * kRunChunks));
      }
      return;
    }
    const int valid_bytes = static_cast<int>(rows_valid) * RowBytes;
#pragma unroll 2
    for (int c = static_cast<int>(threadIdx.x); c < kChunks; c += Threads) {
      const int run = c / kRunChunks;
      const int n = min(max(valid_bytes - 16 * c, 0), 16);
      ptx::cp_async<16>(dst + span_chunk_offset<RowBytes, Pitch>(c),
                        n > 0 ? base + offs[run * kPageRunRows] + 16 * (c - run * kRunChunks) : base, n);
    }
  }

  /// Pitch: of the rows in shared memory where the tile is copied row by row; RunPitch: where it is copied by runs
  /// (RowBytes when flat).
  template <int RowBytes, int Pitch, int RunPitch>
  __device__ void copy_tile(uint8_t* dst, const void* data, const int64_t* offs, int run, int width,
                            int64_t rows_valid) const {
    const int tid = static_cast<int>(threadIdx.x);
    if (run == KeyTile) {
      return copy_tile_span<KeyTile, RowBytes, Threads, RunPitch>(dst, data, offs[0], rows_valid, tid);
    }
    if (run == kPageRunRows) return copy_page_runs<RowBytes, RunPitch>(dst, data, offs, rows_valid);
    copy_rows<RowBytes, Pitch, KeyTile, Threads>(dst, data, offs, width, tid);
  }

  __device__ void issue(int tile, int slot) const {
    uint8_t* dst_k = stages + slot * Geo::kStageBytes;
    const int64_t* offs = offsets + slot * 2 * KeyTile;
    const int64_t rows_valid = w.key_end - (w.key_begin + static_cast<int64_t>(tile) * KeyTile);
    constexpr int kRunPitchK = FlatK ? Geo::kRowBytesK : Geo::kPitchK;
    constexpr int kRunPitchV = FlatV ? Geo::kRowBytesV : Geo::kPitchV;
    copy_tile<Geo::kRowBytesK, Geo::kPitchK, kRunPitchK>(dst_k, p.k.data, offs, run_k, width_k, rows_valid);
    copy_tile<Geo::kRowBytesV, Geo::kPitchV, kRunPitchV>(dst_k + Geo::kVTileOffset, p.v.data, offs + KeyTile, run_v,
                                                         width_v, rows_valid);
  }

  /// Offsets of the first Stages tiles (before the loop; the loop computes each later tile's).
  template <int Stages>
  __device__ void compute_first_offsets() const {
#pragma unroll 1
    for (int st = 0; st < Stages; ++st) {
      if (st < w.n_tiles) compute_offsets(st, st);
    }
  }

  /// Issues tiles 0 .. Stages - 2 into their slots, one commit group each (empty past the CTA's tiles), after a
  /// barrier that made their offsets visible.
  template <int Stages>
  __device__ void issue_first() const {
#pragma unroll 1
    for (int st = 0; st < Stages - 1; ++st) {
      if (st < w.n_tiles) issue(st, st);
      ptx::cp_async_commit();
    }
  }

  __device__ const uint8_t* k_tile(int slot) const { return stages + slot * Geo::kStageBytes; }
  __device__ const uint8_t* v_tile(int slot) const { return stages + slot * Geo::kStageBytes + Geo::kVTileOffset; }
};

}  // namespace kvflash::cuda
