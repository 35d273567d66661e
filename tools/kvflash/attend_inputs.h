// The inputs of `kvflash attend`: Q, K, V, mask and sinks .npy files, their shapes cross-checked, K and V quantized
// row by row exactly as `kvflash quantize` stores them, assembled into an AttentionProblem over owned buffers.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kvflash/attention_problem.h"
#include "kvflash/kv_type.h"
#include "kvflash/status.h"

namespace kvflash::cli {

/// The paths given on the command line; `mask` and `sinks` are empty when not given.
struct AttendFiles {
  std::string q, k, v, mask, sinks;
};

/// Extents read from the shapes: Q [batch?, n_head_q, n_q, d_k], K [batch?, n_head_kv, n_kv, d_k],
/// V [batch?, n_head_kv, n_kv, d_v]. `batched` says whether the files carry the leading batch axis.
struct AttendDims {
  bool batched = false;
  int64_t batch = 1;
  int64_t n_head_q = 0, n_head_kv = 0, n_q = 0, n_kv = 0, d_k = 0, d_v = 0;
};

/// Checks the Q, K and V shapes against each other and the K/V types; the message names the file, the axis, what
/// it holds and what was expected.
StatusOr<AttendDims> check_qkv_shapes(const std::vector<int64_t>& q, const std::vector<int64_t>& k,
                                      const std::vector<int64_t>& v, const AttendFiles& files, KvType ktype,
                                      KvType vtype);

/// Owned buffers of one attend call. Build with load(), then take problem(); the object must outlive the problem.
class AttendInputs {
 public:
  static StatusOr<AttendInputs> load(const AttendFiles& files, KvType ktype, KvType vtype);

  /// The problem over this object's buffers with `options` (its `sinks` is set from the sinks file, if any).
  AttentionProblem problem(const AttentionOptions& options);

  const AttendDims& dims() const { return dims_; }
  /// The output as written by the backend, and its shape ([batch?, n_head_q, n_q, d_v], batched as Q was).
  const std::vector<float>& output() const { return o_; }
  std::vector<int64_t> output_shape() const;

 private:
  AttendDims dims_;
  KvType ktype_ = KvType::f16, vtype_ = KvType::f16;
  std::vector<float> q_;
  std::vector<uint8_t> k_, v_;     // quantized rows, contiguous [batch, n_head_kv, n_kv, row bytes]
  std::vector<uint8_t> mask_;      // the mask file's element bytes (f32 or f16)
  MaskView mask_view_;             // strides into mask_ (data set by problem())
  std::vector<float> sinks_;       // empty: no sinks
  std::vector<float> o_;           // poisoned with NaN until a backend writes it
};

}  // namespace kvflash::cli
