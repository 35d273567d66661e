// Problems described by shape alone, for planning: `kvflash routes`, `kvflash plan` and the route sweep build them
// without any tensor data. Their pointers are non-null and aligned (validate() requires it) but name no memory:
// plan_route(), explain() and validate() never read through them; attend() must never be given one.
#pragma once

#include <cstdint>

#include "kvflash/attention_problem.h"

namespace kvflash::plan {

enum class ShapeMask : uint8_t { none, f32, f16 };
enum class ShapeLayout : uint8_t {
  contiguous,      // [seq, head, row] with no padding
  strided_padded,  // views into a larger cache: a block of padding after every row, head and sequence
  paged,           // K and V through a page table of 16-row pages
};

struct ShapeProblemSpec {
  AttentionShape shape;
  KvType k_type = KvType::f16;
  KvType v_type = KvType::f16;
  ShapeMask mask = ShapeMask::none;
  bool mask_broadcast_heads = false;  // head stride 0, as a [seq, 1, n_q, n_kv] mask
  ShapeLayout layout = ShapeLayout::contiguous;
  bool causal = false;
  int64_t window = 0;
  double alibi_max_bias = 0;
  double softcap = 0;
  double scale = 0;
  bool sinks = false;
  bool kv_len = false;        // per-sequence key counts
  bool v_is_view_of_k = false;  // MLA: V's rows are K's rows (same type), V reads their first d_v values
};

/// Rows of a page in ShapeLayout::paged.
inline constexpr int64_t kShapePageRows = 16;

/// The problem `spec` describes, with placeholder pointers (see the file comment). Strides and page tables are
/// computed in int64 and saturate rather than wrap, so validate() reports an impossible size instead of a wrapped one.
AttentionProblem shape_only_problem(const ShapeProblemSpec& spec);

}  // namespace kvflash::plan
