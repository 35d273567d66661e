// The body of the fast CPU attention kernels, written once over a flavour's vector type `Simd`.
//
// A task is (sequence, KV head, tile of query rows, split of the key range). It walks its keys 32 at a time: the
// K rows of the tile are dequantized (one block at a time, straight from their stored format) into a small
// per-thread buffer (f16/bf16/f32 rows of small row blocks are read in place instead), dotted with every query row
// of the task (all query heads of the GQA group times all n_q rows of the step, so each stored byte is read once
// per step), the scores go through the ScoreVariant, an online softmax updates each row's running max and sum, and
// the V rows of the tile are dequantized and accumulated. A task either finishes its rows (one split) or leaves
// (normalized output, max, sum) in the workspace for the combine, an exact log-sum-exp merge (merge_rows) that
// also finishes the rows of a single split.
//
// Part of an instruction-set flavour: include it after simd_<isa>.h with KVFLASH_CPU_ISA_NS defined.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "backend/cpu/kernel_job.h"
#include "backend/cpu/row_dequant.h"
#include "backend/cpu/score_variant.h"
#include "backend/cpu/tile_math.h"
#include "backend/cpu/turbo_groups.h"
#include "format/blocks.h"

namespace kvflash::cpu::KVFLASH_CPU_ISA_NS {
namespace {

// ---------------------------------------------------------------------------------------------------------------
// Merging partial results: part j is (o_j normalized output, m_j running max, l_j sum of e^(s - m_j)); with the
// sink logit the exact result is out = sum_j w_j o_j / (sum_j w_j + e^(sink - M)), w_j = l_j e^(m_j - M), M the
// largest of the m_j and the sink. A single split finishes its rows through the same function.

void merge_rows(const float* o, int64_t o_stride, const float* m, const float* l, int64_t stat_stride, int64_t n_parts,
                const float* sink, int64_t n_values, float* out) {
  float big = sink ? *sink : kNegInf;
  for (int64_t j = 0; j < n_parts; ++j) big = m[j * stat_stride] > big ? m[j * stat_stride] : big;
  float denominator = 0.0f;
  if (big != kNegInf) {
    if (sink) denominator = std::exp(*sink - big);
    for (int64_t j = 0; j < n_parts; ++j) {
      if (l[j * stat_stride] > 0.0f) denominator += l[j * stat_stride] * std::exp(m[j * stat_stride] - big);
    }
  }
  bool written = false;
  if (denominator > 0.0f) {
    for (int64_t j = 0; j < n_parts; ++j) {
      if (!(l[j * stat_stride] > 0.0f)) continue;  // an empty split: its o is not even read
      const float weight = l[j * stat_stride] * std::exp(m[j * stat_stride] - big) / denominator;
      const float* oj = o + j * o_stride;
      const F w = Simd::set1(weight);
      int64_t e = 0;
      if (!written) {
        for (; e + W <= n_values; e += W) Simd::store(out + e, Simd::mul(Simd::load(oj + e), w));
        for (; e < n_values; ++e) out[e] = oj[e] * weight;
      } else {
        for (; e + W <= n_values; e += W) Simd::store(out + e, Simd::fmadd(Simd::load(oj + e), w, Simd::load(out + e)));
        for (; e < n_values; ++e) out[e] += oj[e] * weight;
      }
      written = true;
    }
  }
  if (!written) std::memset(out, 0, static_cast<size_t>(n_values) * sizeof(float));  // no visible key, no sink mass
}

// Merges a row's parts into O: straight into it, or (turbo V) through `tmp`, un-rotated once, then copied.
void finish_row(const KernelJob& job, const float* o, int64_t o_stride, const float* m, const float* l,
                int64_t stat_stride, int64_t n_parts, const float* sink, float* tmp, float* out) {
  if (!job.v_rotated) {
    merge_rows(o, o_stride, m, l, stat_stride, n_parts, sink, job.problem->shape.d_v, out);
    return;
  }
  merge_rows(o, o_stride, m, l, stat_stride, n_parts, sink, job.dv_stored, tmp);
  turbo_unrotate_groups(tmp, job.dv_stored);
  std::memcpy(out, tmp, static_cast<size_t>(job.problem->shape.d_v) * sizeof(float));
}

float* output_row(const AttentionProblem& p, int64_t seq, int64_t head, int64_t i) {
  return reinterpret_cast<float*>(reinterpret_cast<uint8_t*>(p.o.data) + seq * p.o.stride.seq + head * p.o.stride.head +
                                  i * p.o.stride.row);
}

// Index of row (seq, head, i) of split 0 in the planner's partial arrays; split j adds j * split_rows.
int64_t partial_index(const AttentionShape& s, int64_t seq, int64_t head, int64_t i) {
  return (seq * s.n_head_q + head) * s.n_q + i;
}

int64_t kv_len_of(const AttentionProblem& p, int64_t seq) { return p.kv_len != nullptr ? p.kv_len[seq] : p.shape.n_kv; }

// ---------------------------------------------------------------------------------------------------------------
// Walking the keys of a view a tile at a time.

// Byte offsets of rows key0 .. key0 + n - 1 of (seq, head): kv_row_offset for the first row and at each page
// boundary, a stride step in between.
void tile_row_offsets(const KvView& v, int64_t seq, int64_t head, int64_t key0, int n, int64_t* out) {
  int64_t offset = kv_row_offset(v, seq, head, key0);
  int64_t left_in_page = v.paging.pages != nullptr ? v.paging.page_rows - key0 % v.paging.page_rows : INT64_MAX;
  for (int t = 0; t < n; ++t) {
    out[t] = offset;
    if (--left_in_page == 0 && t + 1 < n) {
      offset = kv_row_offset(v, seq, head, key0 + t + 1);
      left_in_page = v.paging.page_rows;
    } else {
      offset += v.stride.row;
    }
  }
}

// Asks for the rows of the next tile while the current one is computed (the walk is sequential within a page,
// but pages and heads jump, and the arithmetic per byte is high enough that the hardware prefetcher alone lags).
void prefetch_rows(const uint8_t* base, const int64_t* offsets, int n, int64_t row_bytes) {
  for (int t = 0; t < n; ++t) {
    const uint8_t* row = base + offsets[t];
    for (int64_t b = 0; b < row_bytes; b += 64) __builtin_prefetch(row + b);
  }
}

struct KeyTile {
  int64_t key0 = 0;
  int n = 0;
  int64_t k_offsets[kKeyTile];
  int64_t v_offsets[kKeyTile];
};

// How a task reads K (or V) rows: dequantized into its scratch tile, or in place (f32 / f16 / bf16 rows whose
// length is a whole number of vectors). In place pays one conversion per row block of 4 query rows, the tile one
// per key: past 8 rows (two blocks) the tile wins.
enum class RowSource { tile, f32, f16, bf16 };
constexpr int64_t kMaxRowsInPlace = 8;

RowSource row_source(KvType type, int64_t stored_dim, int64_t n_rows) {
  if (stored_dim % W != 0 || (n_rows > kMaxRowsInPlace && type != KvType::f32)) return RowSource::tile;
  switch (type) {
    case KvType::f32:
      return RowSource::f32;
    case KvType::f16:
      return RowSource::f16;
    case KvType::bf16:
      return RowSource::bf16;
    default:
      return RowSource::tile;
  }
}

// What walk_keys needs of a task.
struct TaskView {
  const KernelJob* job;
  int64_t seq, kv_head, n_rows, keys_begin, keys_end;
  const RowPlace* places;
  const float* q;
  float* scores;
  float* alpha;
  float* acc;
  float* k_tile;
  float* v_tile;
  bool v_uses_k_rows;  // V rows are the K rows just located (and dequantized when K goes through the tile)
};

// The key loop of a task: a tile of K rows located (and dequantized, for a tile source), scored against every row,
// the softmax updated, the V rows located (dequantized) and accumulated; the next tile is prefetched meanwhile.
template <class KElems, class VElems, bool KTile, bool VTile>
void walk_keys(const TaskView& t) {
  const KernelJob& job = *t.job;
  const AttentionProblem& p = *job.problem;
  const ScoreVariant variant(job);
  const TileDequant k_dequant = tile_dequantizer(p.k.type);
  const TileDequant v_dequant = tile_dequantizer(p.v.type);
  const uint8_t* k_base = static_cast<const uint8_t*>(p.k.data);
  const uint8_t* v_base = static_cast<const uint8_t*>(p.v.data);
  const int64_t k_row_bytes = head_row_bytes(p.k.type, p.shape.d_k);
  const int64_t v_row_bytes = head_row_bytes(p.v.type, p.shape.d_v);
  const int64_t k_dim = KTile ? job.dk_pad : job.dk_stored;
  const int64_t v_dim = VTile ? job.dv_pad : job.dv_stored;
  const int64_t pr = job.acc_row;
  // Rows are located (and prefetched) kAhead tiles before they are used: pages of a paged cache are small
  // (16 tokens of a head is one 1-4 KiB run) and each one starts a new hardware-prefetch stream and TLB walk.
  constexpr int kAhead = 2;
  KeyTile tiles[kAhead + 1];
  const void* k_rows[kKeyTile];
  const void* v_rows[kKeyTile];
  const auto locate = [&](KeyTile& tile, int64_t key0) {
    tile.key0 = key0;
    tile.n = static_cast<int>(t.keys_end - key0 < kKeyTile ? t.keys_end - key0 : kKeyTile);
    tile_row_offsets(p.k, t.seq, t.kv_head, key0, tile.n, tile.k_offsets);
    prefetch_rows(k_base, tile.k_offsets, tile.n, k_row_bytes);
    if (!t.v_uses_k_rows) {
      tile_row_offsets(p.v, t.seq, t.kv_head, key0, tile.n, tile.v_offsets);
      prefetch_rows(v_base, tile.v_offsets, tile.n, v_row_bytes);
    }
  };
  for (int a = 0; a < kAhead; ++a) {
    if (t.keys_begin + a * kKeyTile < t.keys_end) locate(tiles[a], t.keys_begin + a * kKeyTile);
  }
  for (int64_t key0 = t.keys_begin, step = 0; key0 < t.keys_end; key0 += kKeyTile, ++step) {
    const KeyTile& tile = tiles[step % (kAhead + 1)];
    if (key0 + kAhead * kKeyTile < t.keys_end) {
      locate(tiles[(step + kAhead) % (kAhead + 1)], key0 + kAhead * kKeyTile);
    }
    const int n_keys = tile.n;
    if constexpr (KTile) k_dequant(k_base, tile.k_offsets, n_keys, job.dk_stored, t.k_tile, job.dk_pad);
    for (int i = 0; i < n_keys; ++i) {
      k_rows[i] = KTile ? static_cast<const void*>(t.k_tile + i * job.dk_pad) : k_base + tile.k_offsets[i];
    }
    tile_scores<KElems>(t.q, job.dk_pad, t.n_rows, k_rows, n_keys, k_dim, t.scores);
    for (int64_t r = 0; r < t.n_rows; ++r) {
      float* s = t.scores + r * kKeyTile;
      variant.apply(s, t.places[r], key0, n_keys);
      t.alpha[r] = softmax_tile(s, t.acc + r * pr + job.dv_pad, t.acc + r * pr + job.dv_pad + 1);
    }
    const void* const* rows_of_v = k_rows;
    if (!t.v_uses_k_rows) {
      if constexpr (VTile) v_dequant(v_base, tile.v_offsets, n_keys, job.dv_stored, t.v_tile, job.dv_pad);
      for (int i = 0; i < n_keys; ++i) {
        v_rows[i] = VTile ? static_cast<const void*>(t.v_tile + i * job.dv_pad) : v_base + tile.v_offsets[i];
      }
      rows_of_v = v_rows;
    }
    tile_accumulate<VElems>(t.scores, t.alpha, t.n_rows, rows_of_v, n_keys, v_dim, t.acc, pr);
  }
}

template <class KElems, bool KTile>
void walk_keys_v(const TaskView& t, RowSource v) {
  switch (v) {
    case RowSource::tile:
      return walk_keys<KElems, FloatElems, KTile, true>(t);
    case RowSource::f32:
      return walk_keys<KElems, FloatElems, KTile, false>(t);
    case RowSource::f16:
      return walk_keys<KElems, HalfElems, KTile, false>(t);
    case RowSource::bf16:
      return walk_keys<KElems, BfloatElems, KTile, false>(t);
  }
}

void walk_keys_any(const TaskView& t, RowSource k, RowSource v) {
  switch (k) {
    case RowSource::tile:
      return walk_keys_v<FloatElems, true>(t, v);
    case RowSource::f32:
      return walk_keys_v<FloatElems, false>(t, v);
    case RowSource::f16:
      return walk_keys_v<HalfElems, false>(t, v);
    case RowSource::bf16:
      return walk_keys_v<BfloatElems, false>(t, v);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// One task.

void attend_task(const KernelJob& job, int64_t task, int slot) {
  const AttentionProblem& p = *job.problem;
  const int64_t split = task % job.n_splits;
  const int64_t row_tile = (task / job.n_splits) % job.n_row_tiles;
  const int64_t kv_head = (task / job.n_splits / job.n_row_tiles) % p.shape.n_head_kv;
  const int64_t seq = task / job.n_splits / job.n_row_tiles / p.shape.n_head_kv;
  const int64_t kv_len = kv_len_of(p, seq);
  const int64_t row0 = row_tile * job.row_tile;
  const int64_t n_rows = job.rows - row0 < job.row_tile ? job.rows - row0 : job.row_tile;
  const int64_t split_begin = split * job.keys_per_split < kv_len ? split * job.keys_per_split : kv_len;
  const int64_t split_end = split_begin + job.keys_per_split < kv_len ? split_begin + job.keys_per_split : kv_len;

  const ScratchLayout& lay = job.scratch_layout;
  float* scratch = job.scratch + slot * job.scratch_stride;
  RowPlace* places = reinterpret_cast<RowPlace*>(scratch + lay.places);
  float* q = scratch + lay.q;
  float* acc = scratch + lay.acc;
  const int64_t pr = job.acc_row;

  const ScoreVariant variant(job);
  int64_t keys_begin = split_end, keys_end = split_begin;  // union of the rows' visible keys inside the split
  for (int64_t r = 0; r < n_rows; ++r) {
    places[r] = variant.place(seq, kv_head, row0 + r, kv_len);
    const int64_t first = places[r].first > split_begin ? places[r].first : split_begin;
    const int64_t end = places[r].end < split_end ? places[r].end : split_end;
    if (first < end) {
      keys_begin = first < keys_begin ? first : keys_begin;
      keys_end = end > keys_end ? end : keys_end;
    }
    // Q row, scaled once, zero-padded, rotated into turbo K's domain.
    const int64_t i = (row0 + r) / job.group;
    const int64_t head = kv_head * job.group + (row0 + r) % job.group;
    const float* src =
        reinterpret_cast<const float*>(reinterpret_cast<const uint8_t*>(p.q.data) + seq * p.q.stride.seq +
                                       head * p.q.stride.head + i * p.q.stride.row);
    float* dst = q + r * job.dk_pad;
    for (int64_t e = 0; e < p.shape.d_k; ++e) dst[e] = src[e] * job.scale;
    for (int64_t e = p.shape.d_k; e < job.dk_pad; ++e) dst[e] = 0.0f;
    if (job.k_rotated) turbo_rotate_groups(dst, job.dk_stored);
    float* row_acc = acc + r * pr;
    for (int64_t c = 0; c < job.dv_pad; c += W) Simd::store(row_acc + c, Simd::zero());
    row_acc[job.dv_pad] = kNegInf;   // m
    row_acc[job.dv_pad + 1] = 0.0f;  // l
  }

  const RowSource k_source = row_source(p.k.type, job.dk_stored, n_rows);
  const RowSource v_source = row_source(p.v.type, job.dv_stored, n_rows);
  TaskView view{&job,
                seq,
                kv_head,
                n_rows,
                keys_begin,
                keys_end,
                places,
                q,
                scratch + lay.scores,
                scratch + lay.alpha,
                acc,
                scratch + lay.k_tile,
                scratch + lay.v_tile,
                job.v_shares_k_tile && k_source == v_source};
  // Tile rows past the stored values are read by the padded loops: they must hold zeros, not stale scratch.
  if (k_source == RowSource::tile && job.dk_pad > job.dk_stored) {
    for (int i = 0; i < kKeyTile; ++i)
      std::memset(view.k_tile + i * job.dk_pad + job.dk_stored, 0,
                  sizeof(float) * static_cast<size_t>(job.dk_pad - job.dk_stored));
  }
  if (v_source == RowSource::tile && job.dv_pad > job.dv_stored) {
    for (int i = 0; i < kKeyTile; ++i)
      std::memset(view.v_tile + i * job.dv_pad + job.dv_stored, 0,
                  sizeof(float) * static_cast<size_t>(job.dv_pad - job.dv_stored));
  }
  walk_keys_any(view, k_source, view.v_uses_k_rows ? k_source : v_source);

  // Each row, normalized (still in V's stored domain): finished into O (one split) or left for the combine.
  float* o = scratch + lay.out;
  float* tmp = o + job.dv_pad;
  const int64_t split_rows = p.shape.n_seq * p.shape.n_head_q * p.shape.n_q;
  for (int64_t r = 0; r < n_rows; ++r) {
    const int64_t i = (row0 + r) / job.group;
    const int64_t head = kv_head * job.group + (row0 + r) % job.group;
    const float* row_acc = acc + r * pr;
    const float m = row_acc[job.dv_pad], l = row_acc[job.dv_pad + 1];
    const F inv = Simd::set1(l > 0.0f ? 1.0f / l : 0.0f);
    for (int64_t c = 0; c < job.dv_pad; c += W) Simd::store(o + c, Simd::mul(Simd::load(row_acc + c), inv));
    if (job.n_splits == 1) {
      const float* sink = p.options.sinks ? p.options.sinks + head : nullptr;
      finish_row(job, o, 0, &m, &l, 0, 1, sink, tmp, output_row(p, seq, head, i));
    } else {
      const int64_t at = split * split_rows + partial_index(p.shape, seq, head, i);
      std::memcpy(job.partial_o + at * job.dv_stored, o, static_cast<size_t>(job.dv_stored) * sizeof(float));
      job.partial_max[at] = m;
      job.partial_sum[at] = l;
    }
  }
}

// Combine task: (sequence, KV head, kCombineRows rows) -> the merged rows written to O.
void combine_task(const KernelJob& job, int64_t task, int slot) {
  const AttentionProblem& p = *job.problem;
  const int64_t chunks = (job.rows + kCombineRows - 1) / kCombineRows;
  const int64_t chunk = task % chunks;
  const int64_t kv_head = (task / chunks) % p.shape.n_head_kv;
  const int64_t seq = task / chunks / p.shape.n_head_kv;
  const int64_t split_rows = p.shape.n_seq * p.shape.n_head_q * p.shape.n_q;
  float* tmp = job.scratch + slot * job.scratch_stride + job.scratch_layout.out;
  const int64_t row_end = (chunk + 1) * kCombineRows < job.rows ? (chunk + 1) * kCombineRows : job.rows;
  for (int64_t row = chunk * kCombineRows; row < row_end; ++row) {
    const int64_t i = row / job.group;
    const int64_t head = kv_head * job.group + row % job.group;
    const int64_t at = partial_index(p.shape, seq, head, i);
    const float* sink = p.options.sinks ? p.options.sinks + head : nullptr;
    finish_row(job, job.partial_o + at * job.dv_stored, split_rows * job.dv_stored, job.partial_max + at,
               job.partial_sum + at, split_rows, job.n_splits, sink, tmp, output_row(p, seq, head, i));
  }
}

}  // namespace
}  // namespace kvflash::cpu::KVFLASH_CPU_ISA_NS
