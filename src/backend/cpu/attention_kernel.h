// The body of the fast CPU attention kernels, written once over a flavour's vector type `Simd`.
//
// A task is (sequence, KV head, tile of query rows, split of the key range). It walks its keys a tile at a time:
// the K rows of the tile are dequantized (one block at a time, straight from their stored format) into a small
// per-thread buffer, dotted with every query row of the task (all query heads of the GQA group times all n_q
// rows of the step, so each stored byte is read once per step), the scores go through the ScoreVariant, an online
// softmax updates each row's running max and sum, and the V rows of the tile are dequantized and accumulated.
// A task either finishes its rows (one split) or leaves (accumulator, max, sum) in the workspace for the combine,
// an exact log-sum-exp merge (merge_rows) that also finishes the rows of a single split.
//
// Part of an instruction-set flavour: include it after simd_<isa>.h with KVFLASH_CPU_ISA_NS defined.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "backend/cpu/kernel_job.h"
#include "backend/cpu/score_variant.h"
#include "backend/cpu/turbo_groups.h"
#include "format/blocks.h"

namespace kvflash::cpu::KVFLASH_CPU_ISA_NS {
namespace {

using F = Simd::F;
constexpr int W = Simd::W;

// ---------------------------------------------------------------------------------------------------------------
// Dequantizing one stored row into floats.

using RowDequant = void (*)(const uint8_t* row, int64_t n, float* dst);

template <typename Block, int Elems>
void dequant_blocks(const uint8_t* row, int64_t n, float* dst) {
  const Block* blocks = reinterpret_cast<const Block*>(row);
  for (int64_t b = 0; b < n / Elems; ++b) Simd::dequant_block(blocks[b], dst + b * Elems);
}

void dequant_f32(const uint8_t* row, int64_t n, float* dst) { std::memcpy(dst, row, static_cast<size_t>(n) * 4); }

void dequant_f16(const uint8_t* row, int64_t n, float* dst) {
  const uint16_t* h = reinterpret_cast<const uint16_t*>(row);
  int64_t e = 0;
  for (; e + W <= n; e += W) Simd::store(dst + e, Simd::load_f16(h + e));
  for (; e < n; ++e) dst[e] = Simd::half_to_float(h[e]);
}

void dequant_bf16(const uint8_t* row, int64_t n, float* dst) {
  const uint16_t* h = reinterpret_cast<const uint16_t*>(row);
  int64_t e = 0;
  for (; e + W <= n; e += W) Simd::store(dst + e, Simd::load_bf16(h + e));
  for (; e < n; ++e) {
    const uint32_t bits = static_cast<uint32_t>(h[e]) << 16;
    std::memcpy(dst + e, &bits, 4);
  }
}

RowDequant row_dequantizer(KvType type) {
  switch (type) {
    case KvType::f32: return dequant_f32;
    case KvType::f16: return dequant_f16;
    case KvType::bf16: return dequant_bf16;
    case KvType::q8_0: return dequant_blocks<format::BlockQ8_0, 32>;
    case KvType::q4_0: return dequant_blocks<format::BlockQ4_0, 32>;
    case KvType::q4_1: return dequant_blocks<format::BlockQ4_1, 32>;
    case KvType::q5_0: return dequant_blocks<format::BlockQ5_0, 32>;
    case KvType::q5_1: return dequant_blocks<format::BlockQ5_1, 32>;
    case KvType::turbo2: return dequant_blocks<format::BlockTurbo2, 128>;
    case KvType::turbo3: return dequant_blocks<format::BlockTurbo3, 128>;
    case KvType::turbo4: return dequant_blocks<format::BlockTurbo4, 128>;
  }
  return dequant_f32;
}

// ---------------------------------------------------------------------------------------------------------------
// Scores: s[r][t] = <q_r, k_t> over a tile. Blocks of Rows x 4 keys share their loads; the 4 sums of a row
// reduce together into 4 adjacent scores.

template <int Rows, int Keys>
inline void dot_block(const float* q, const float* k, int64_t dim, float* s) {
  F acc[Rows][Keys];
  for (int r = 0; r < Rows; ++r)
    for (int t = 0; t < Keys; ++t) acc[r][t] = Simd::zero();
  for (int64_t c = 0; c < dim; c += W) {
    F kv[Keys];
    for (int t = 0; t < Keys; ++t) kv[t] = Simd::pin(Simd::load(k + t * dim + c));
    for (int r = 0; r < Rows; ++r) {
      const F qv = Simd::pin(Simd::load(q + r * dim + c));
      for (int t = 0; t < Keys; ++t) acc[r][t] = Simd::fmadd(qv, kv[t], acc[r][t]);
    }
  }
  for (int r = 0; r < Rows; ++r) {
    if constexpr (Keys == 4) {
      Simd::hsum4(acc[r][0], acc[r][1], acc[r][2], acc[r][3], s + r * kKeyTile);
    } else {
      for (int t = 0; t < Keys; ++t) s[r * kKeyTile + t] = Simd::hsum(acc[r][t]);
    }
  }
}

template <int Rows>
inline void dot_rows(const float* q, const float* k, int n_keys, int64_t dim, float* s) {
  int t = 0;
  for (; t + 4 <= n_keys; t += 4) dot_block<Rows, 4>(q, k + t * dim, dim, s + t);
  for (; t < n_keys; ++t) dot_block<Rows, 1>(q, k + t * dim, dim, s + t);
}

void tile_scores(const float* q, int64_t n_rows, const float* k, int n_keys, int64_t dim, float* s) {
  int64_t r = 0;
  for (; r + 2 <= n_rows; r += 2) dot_rows<2>(q + r * dim, k, n_keys, dim, s + r * kKeyTile);
  if (r < n_rows) dot_rows<1>(q + r * dim, k, n_keys, dim, s + r * kKeyTile);
}

// ---------------------------------------------------------------------------------------------------------------
// Online softmax over one row's tile: turns scores into probabilities relative to the new running max, updates
// the running sum, and returns the factor the row's accumulator must be scaled by.

float softmax_tile(float* s, float* m, float* l) {
  F vmax = Simd::load(s);
  for (int c = W; c < kKeyTile; c += W) vmax = Simd::max(vmax, Simd::load(s + c));
  const float tile_max = Simd::hmax(vmax);
  const float m_new = tile_max > *m ? tile_max : *m;
  if (m_new == kNegInf) {  // nothing visible yet: probabilities 0, state unchanged
    for (int c = 0; c < kKeyTile; c += W) Simd::store(s + c, Simd::zero());
    return 1.0f;
  }
  const float alpha = *m == kNegInf ? 0.0f : std::exp(*m - m_new);
  const F shift = Simd::set1(m_new);
  F sum = Simd::zero();
  for (int c = 0; c < kKeyTile; c += W) {
    const F p = Simd::exp_nonpositive(Simd::sub(Simd::load(s + c), shift));
    Simd::store(s + c, p);
    sum = Simd::add(sum, p);
  }
  *l = *l * alpha + Simd::hsum(sum);
  *m = m_new;
  return alpha;
}

// ---------------------------------------------------------------------------------------------------------------
// Accumulation: acc[r] = alpha[r] * acc[r] + sum_t p[r][t] v[t], Rows x (Chunks * W) accumulators in registers.

template <int Rows, int Chunks>
inline void accumulate_block(const float* p, const float* alpha, const float* v, int64_t v_stride, int n_keys,
                             float* acc, int64_t acc_stride) {
  F a[Rows][Chunks];
  for (int r = 0; r < Rows; ++r) {
    const F scale = Simd::set1(alpha[r]);
    for (int c = 0; c < Chunks; ++c) a[r][c] = Simd::mul(Simd::load(acc + r * acc_stride + c * W), scale);
  }
  for (int t = 0; t < n_keys; ++t) {
    F vv[Chunks];
    for (int c = 0; c < Chunks; ++c) vv[c] = Simd::load(v + t * v_stride + c * W);
    for (int r = 0; r < Rows; ++r) {
      const F pr = Simd::set1(p[r * kKeyTile + t]);
      for (int c = 0; c < Chunks; ++c) a[r][c] = Simd::fmadd(pr, vv[c], a[r][c]);
    }
  }
  for (int r = 0; r < Rows; ++r)
    for (int c = 0; c < Chunks; ++c) Simd::store(acc + r * acc_stride + c * W, a[r][c]);
}

template <int Rows>
inline void accumulate_rows(const float* p, const float* alpha, const float* v, int64_t v_stride, int n_keys,
                            int64_t dim, float* acc, int64_t acc_stride) {
  int64_t c = 0;
  for (; c + 2 * W <= dim; c += 2 * W) accumulate_block<Rows, 2>(p, alpha, v + c, v_stride, n_keys, acc + c, acc_stride);
  if (c < dim) accumulate_block<Rows, 1>(p, alpha, v + c, v_stride, n_keys, acc + c, acc_stride);
}

void tile_accumulate(const float* p, const float* alpha, int64_t n_rows, const float* v, int64_t v_stride, int n_keys,
                     int64_t dim, float* acc, int64_t acc_stride) {
  int64_t r = 0;
  for (; r + 4 <= n_rows; r += 4)
    accumulate_rows<4>(p + r * kKeyTile, alpha + r, v, v_stride, n_keys, dim, acc + r * acc_stride, acc_stride);
  const float* pr = p + r * kKeyTile;
  float* ar = acc + r * acc_stride;
  switch (n_rows - r) {
    case 3: accumulate_rows<3>(pr, alpha + r, v, v_stride, n_keys, dim, ar, acc_stride); break;
    case 2: accumulate_rows<2>(pr, alpha + r, v, v_stride, n_keys, dim, ar, acc_stride); break;
    case 1: accumulate_rows<1>(pr, alpha + r, v, v_stride, n_keys, dim, ar, acc_stride); break;
    default: break;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Merging partial results: part j is (o_j normalized output, m_j running max, l_j sum of e^(s - m_j)); with the
// sink logit the exact result is out = sum_j w_j o_j / (sum_j w_j + e^(sink - M)), w_j = l_j e^(m_j - M), M the
// largest of the m_j and the sink. A single split finishes its rows through the same function.

void merge_rows(const float* o, int64_t o_stride, const float* m, const float* l, int64_t stat_stride,
                int64_t n_parts, const float* sink, int64_t d_v, float* out) {
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
        for (; e + W <= d_v; e += W) Simd::store(out + e, Simd::mul(Simd::load(oj + e), w));
        for (; e < d_v; ++e) out[e] = oj[e] * weight;
      } else {
        for (; e + W <= d_v; e += W) Simd::store(out + e, Simd::fmadd(Simd::load(oj + e), w, Simd::load(out + e)));
        for (; e < d_v; ++e) out[e] += oj[e] * weight;
      }
      written = true;
    }
  }
  if (!written) std::memset(out, 0, static_cast<size_t>(d_v) * sizeof(float));  // no visible key, no sink mass
}

float* output_row(const AttentionProblem& p, int64_t seq, int64_t head, int64_t i) {
  return reinterpret_cast<float*>(reinterpret_cast<uint8_t*>(p.o.data) + seq * p.o.stride.seq +
                                  head * p.o.stride.head + i * p.o.stride.row);
}

// Index of row (seq, head, i) of split 0 in the planner's partial arrays; split j adds j * split_rows.
int64_t partial_index(const AttentionShape& s, int64_t seq, int64_t head, int64_t i) {
  return (seq * s.n_head_q + head) * s.n_q + i;
}

int64_t kv_len_of(const AttentionProblem& p, int64_t seq) {
  return p.kv_len != nullptr ? p.kv_len[seq] : p.shape.n_kv;
}

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
  float* scratch = job.scratch + slot * lay.floats;
  RowPlace* places = reinterpret_cast<RowPlace*>(scratch + lay.places);
  float* q = scratch + lay.q;
  float* scores = scratch + lay.scores;
  float* alpha = scratch + lay.alpha;
  float* k_tile = scratch + lay.k_tile;
  float* v_tile = job.v_shares_k_tile ? k_tile : scratch + lay.v_tile;
  const int64_t v_stride = job.v_shares_k_tile ? job.dk_pad : job.dv_pad;
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
    const float* src = reinterpret_cast<const float*>(reinterpret_cast<const uint8_t*>(p.q.data) +
                                                      seq * p.q.stride.seq + head * p.q.stride.head +
                                                      i * p.q.stride.row);
    float* dst = q + r * job.dk_pad;
    for (int64_t e = 0; e < p.shape.d_k; ++e) dst[e] = src[e] * job.scale;
    for (int64_t e = p.shape.d_k; e < job.dk_pad; ++e) dst[e] = 0.0f;
    if (job.k_rotated) turbo_rotate_groups(dst, job.dk_stored);
    float* row_acc = acc + r * pr;
    for (int64_t c = 0; c < job.dv_pad; c += W) Simd::store(row_acc + c, Simd::zero());
    row_acc[job.dv_pad] = kNegInf;  // m
    row_acc[job.dv_pad + 1] = 0.0f;  // l
  }
  std::memset(k_tile, 0, sizeof(float) * kKeyTile * static_cast<size_t>(job.dk_pad));
  if (!job.v_shares_k_tile) std::memset(v_tile, 0, sizeof(float) * kKeyTile * static_cast<size_t>(job.dv_pad));

  const RowDequant k_dequant = row_dequantizer(p.k.type);
  const RowDequant v_dequant = row_dequantizer(p.v.type);
  const uint8_t* k_base = static_cast<const uint8_t*>(p.k.data);
  const uint8_t* v_base = static_cast<const uint8_t*>(p.v.data);
  const int64_t k_row_bytes = head_row_bytes(p.k.type, p.shape.d_k);
  const int64_t v_row_bytes = head_row_bytes(p.v.type, p.shape.d_v);
  KeyTile tiles[2];
  const auto locate = [&](KeyTile& tile, int64_t key0) {
    tile.key0 = key0;
    tile.n = static_cast<int>(keys_end - key0 < kKeyTile ? keys_end - key0 : kKeyTile);
    tile_row_offsets(p.k, seq, kv_head, key0, tile.n, tile.k_offsets);
    prefetch_rows(k_base, tile.k_offsets, tile.n, k_row_bytes);
    if (!job.v_shares_k_tile) {
      tile_row_offsets(p.v, seq, kv_head, key0, tile.n, tile.v_offsets);
      prefetch_rows(v_base, tile.v_offsets, tile.n, v_row_bytes);
    }
  };
  if (keys_begin < keys_end) locate(tiles[0], keys_begin);
  for (int64_t key0 = keys_begin, step = 0; key0 < keys_end; key0 += kKeyTile, ++step) {
    const KeyTile& tile = tiles[step % 2];
    if (key0 + kKeyTile < keys_end) locate(tiles[(step + 1) % 2], key0 + kKeyTile);
    const int n_keys = tile.n;
    for (int t = 0; t < n_keys; ++t) k_dequant(k_base + tile.k_offsets[t], job.dk_stored, k_tile + t * job.dk_pad);
    tile_scores(q, n_rows, k_tile, n_keys, job.dk_pad, scores);
    for (int64_t r = 0; r < n_rows; ++r) {
      float* s = scores + r * kKeyTile;
      variant.apply(s, places[r], key0, n_keys);
      alpha[r] = softmax_tile(s, acc + r * pr + job.dv_pad, acc + r * pr + job.dv_pad + 1);
    }
    if (!job.v_shares_k_tile) {
      for (int t = 0; t < n_keys; ++t) v_dequant(v_base + tile.v_offsets[t], job.dv_stored, v_tile + t * job.dv_pad);
    }
    tile_accumulate(scores, alpha, n_rows, v_tile, v_stride, n_keys, job.dv_pad, acc, pr);
  }

  // Each row: normalized, back in V's original domain, then finished (one split) or left for the combine.
  float* o = scratch + lay.out;
  const int64_t split_rows = p.shape.n_seq * p.shape.n_head_q * p.shape.n_q;
  for (int64_t r = 0; r < n_rows; ++r) {
    const int64_t i = (row0 + r) / job.group;
    const int64_t head = kv_head * job.group + (row0 + r) % job.group;
    const float* row_acc = acc + r * pr;
    const float m = row_acc[job.dv_pad], l = row_acc[job.dv_pad + 1];
    const F inv = Simd::set1(l > 0.0f ? 1.0f / l : 0.0f);
    for (int64_t c = 0; c < job.dv_pad; c += W) Simd::store(o + c, Simd::mul(Simd::load(row_acc + c), inv));
    if (job.v_rotated) turbo_unrotate_groups(o, job.dv_stored);
    if (job.n_splits == 1) {
      const float* sink = p.options.sinks ? p.options.sinks + head : nullptr;
      merge_rows(o, 0, &m, &l, 0, 1, sink, p.shape.d_v, output_row(p, seq, head, i));
    } else {
      const int64_t at = split * split_rows + partial_index(p.shape, seq, head, i);
      std::memcpy(job.partial_o + at * p.shape.d_v, o, static_cast<size_t>(p.shape.d_v) * sizeof(float));
      job.partial_max[at] = m;
      job.partial_sum[at] = l;
    }
  }
}

// Combine task: (sequence, KV head, kCombineRows rows) -> the merged rows written to O.
void combine_task(const KernelJob& job, int64_t task, int /*slot*/) {
  const AttentionProblem& p = *job.problem;
  const int64_t chunks = (job.rows + kCombineRows - 1) / kCombineRows;
  const int64_t chunk = task % chunks;
  const int64_t kv_head = (task / chunks) % p.shape.n_head_kv;
  const int64_t seq = task / chunks / p.shape.n_head_kv;
  const int64_t split_rows = p.shape.n_seq * p.shape.n_head_q * p.shape.n_q;
  const int64_t row_end = (chunk + 1) * kCombineRows < job.rows ? (chunk + 1) * kCombineRows : job.rows;
  for (int64_t row = chunk * kCombineRows; row < row_end; ++row) {
    const int64_t i = row / job.group;
    const int64_t head = kv_head * job.group + row % job.group;
    const int64_t at = partial_index(p.shape, seq, head, i);
    const float* sink = p.options.sinks ? p.options.sinks + head : nullptr;
    merge_rows(job.partial_o + at * p.shape.d_v, split_rows * p.shape.d_v, job.partial_max + at, job.partial_sum + at,
               split_rows, job.n_splits, sink, p.shape.d_v, output_row(p, seq, head, i));
  }
}

}  // namespace
}  // namespace kvflash::cpu::KVFLASH_CPU_ISA_NS
