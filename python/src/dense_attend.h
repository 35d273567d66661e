// kvflash.attend's arrays -> an AttentionProblem, with the shapes and semantics of `kvflash attend`:
// Q [batch?, n_head_q, n_q, d_k], K [batch?, n_head_kv, n_kv, d_k], V [batch?, n_head_kv, n_kv, d_v] float32;
// K and V quantized row by row (turbo rows zero-padded to stored_dim) exactly as `kvflash quantize` stores them;
// mask f32/f16 [n_q, n_kv], [batch, n_q, n_kv] (batched) or [n_head_q, n_q, n_kv] (unbatched), or
// [batch, n_head_q, n_q, n_kv], an axis of size 1 broadcasting; sinks float32 [n_head_q].
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kvflash/attention_problem.h"
#include "kvflash/kv_type.h"
#include "kvflash/status.h"

namespace kvflash::python {

/// A host array the caller owns: C-contiguous, its extents.
template <typename Element>
struct HostArray {
  const Element* data = nullptr;
  std::vector<int64_t> shape;
};

struct DenseAttendInputs {
  HostArray<float> q, k, v;
  KvType ktype = KvType::f16, vtype = KvType::f16;
  HostArray<void> mask;            // data == nullptr: none
  MaskType mask_type = MaskType::f32;
  HostArray<float> sinks;          // data == nullptr: none
  AttentionOptions options;        // sinks ignored (taken from `sinks`)
};

/// Owned quantized K/V and the output of one call; problem() points into them and into the caller's arrays.
class DenseAttend {
 public:
  /// Checks shapes against each other (messages name the argument and axis), quantizes K and V.
  static StatusOr<DenseAttend> prepare(const DenseAttendInputs& in);

  const AttentionProblem& problem() const { return problem_; }
  /// [batch?, n_head_q, n_q, d_v], batched as Q was.
  const std::vector<int64_t>& output_shape() const { return output_shape_; }
  /// Moves the output (written by a backend through problem().o) out.
  std::vector<float> take_output() { return std::move(o_); }

 private:
  AttentionProblem problem_;
  std::vector<int64_t> output_shape_;
  std::vector<uint8_t> k_, v_;
  std::vector<float> o_;
};

}  // namespace kvflash::python
