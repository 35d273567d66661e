#include "plan/shape_problem.h"

#include <limits>

namespace kvflash::plan {
namespace {

// Placeholders for the pointers of a shape-only problem: aligned for any element type, never read. K and V get
// their own, so that describe() does not report V as a view of K unless the spec says so.
alignas(256) const unsigned char kNoData[256] = {};
alignas(256) const unsigned char kNoDataV[256] = {};

int64_t mul_sat(int64_t a, int64_t b) {
  int64_t r = 0;
  return __builtin_mul_overflow(a, b, &r) ? std::numeric_limits<int64_t>::max() : r;
}

int64_t add_sat(int64_t a, int64_t b) {
  int64_t r = 0;
  return __builtin_add_overflow(a, b, &r) ? std::numeric_limits<int64_t>::max() : r;
}

/// [seq, head, row] strides for rows of `row_bytes`, with `pad` bytes after every row, head and sequence.
Strides dense(int64_t row_bytes, int64_t pad, int64_t rows, int64_t heads) {
  Strides s;
  s.row = add_sat(row_bytes, pad);
  s.head = add_sat(mul_sat(s.row, rows), pad);
  s.seq = add_sat(mul_sat(s.head, heads), pad);
  return s;
}

KvView kv_view(KvType type, int64_t dim, const ShapeProblemSpec& spec, const void* data) {
  const AttentionShape& s = spec.shape;
  KvView v;
  v.type = type;
  v.data = data;
  const int64_t row = head_row_bytes(type, dim);
  const int64_t block = kv_traits(type).block_bytes;
  switch (spec.layout) {
    case ShapeLayout::contiguous: v.stride = dense(row, 0, s.n_kv, s.n_head_kv); break;
    case ShapeLayout::strided_padded: v.stride = dense(row, block, s.n_kv, s.n_head_kv); break;
    case ShapeLayout::paged:
      v.stride.row = row;
      v.stride.head = mul_sat(row, kShapePageRows);
      v.paging.pages = reinterpret_cast<const int32_t*>(kNoData);
      v.paging.page_rows = kShapePageRows;
      v.paging.pages_per_seq = (s.n_kv + kShapePageRows - 1) / kShapePageRows;
      v.paging.page_bytes = mul_sat(v.stride.head, s.n_head_kv);
      break;
  }
  return v;
}

}  // namespace

AttentionProblem shape_only_problem(const ShapeProblemSpec& spec) {
  const AttentionShape& s = spec.shape;
  const bool padded = spec.layout == ShapeLayout::strided_padded;
  AttentionProblem p;
  p.shape = s;
  p.q.data = reinterpret_cast<const float*>(kNoData);
  p.q.stride = dense(mul_sat(s.d_k, 4), padded ? 16 : 0, s.n_q, s.n_head_q);
  p.o.data = const_cast<float*>(reinterpret_cast<const float*>(kNoData));  // never written: see the header
  p.o.stride = dense(mul_sat(s.d_v, 4), padded ? 16 : 0, s.n_q, s.n_head_q);
  p.k = kv_view(spec.k_type, s.d_k, spec, kNoData);
  if (spec.v_is_view_of_k) {
    p.v = p.k;  // same rows; V reads the first d_v values of each
  } else {
    p.v = kv_view(spec.v_type, s.d_v, spec, kNoDataV);
  }
  if (spec.mask != ShapeMask::none) {
    const int64_t elem = spec.mask == ShapeMask::f16 ? 2 : 4;
    p.mask.data = kNoData;
    p.mask.type = spec.mask == ShapeMask::f16 ? MaskType::f16 : MaskType::f32;
    p.mask.stride = dense(mul_sat(s.n_kv, elem), padded ? 64 : 0, s.n_q, spec.mask_broadcast_heads ? 1 : s.n_head_q);
    if (spec.mask_broadcast_heads) p.mask.stride.head = 0;
  }
  p.options.scale = spec.scale;
  p.options.causal = spec.causal;
  p.options.window = spec.window;
  p.options.alibi_max_bias = spec.alibi_max_bias;
  p.options.softcap = spec.softcap;
  p.options.sinks = spec.sinks ? reinterpret_cast<const float*>(kNoData) : nullptr;
  p.kv_len = spec.kv_len ? reinterpret_cast<const int32_t*>(kNoData) : nullptr;
  return p;
}

}  // namespace kvflash::plan
