// The inputs of `kvflash attend`: Q, K, V, mask and sinks .npy files (float32 or float64; the mask also float16),
// their shapes cross-checked, K and V quantized row by row exactly as `kvflash quantize` stores them, assembled into
// an AttentionProblem over owned buffers.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "io/npy.h"
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
///
/// Q, mask and sinks are kept as read (float64 files at full precision) and also rounded to float32 for the
/// float32 problem every backend takes; K and V files in float64 are rounded to float32 first, because the
/// quantizers take float32 (for --ktype f32 that rounding is the stored value).
class AttendInputs {
 public:
  static StatusOr<AttendInputs> load(const AttendFiles& files, KvType ktype, KvType vtype);

  /// The float32 problem over this object's buffers with `options` (its `sinks` is set from the sinks file, if
  /// any); O is written to output().
  AttentionProblem problem(const AttentionOptions& options);
  /// attend_reference_f64 over `p` (which must come from problem()) with Q, mask and sinks as read, at full
  /// precision; O is written to output_f64().
  Status run_reference_f64(const AttentionProblem& p);

  const AttendDims& dims() const { return dims_; }
  /// The dtype of the Q file (f32 or f64).
  io::NpyDtype q_dtype() const { return q_dtype_; }
  /// Whether Q, the mask or the sinks file held float64 values (which problem() rounds to float32).
  bool has_f64_input() const;
  /// The output as written by the backend, and its shape ([batch?, n_head_q, n_q, d_v], batched as Q was).
  const std::vector<float>& output() const { return o_; }
  const std::vector<double>& output_f64() const { return o64_; }
  std::vector<int64_t> output_shape() const;

 private:
  AttendDims dims_;
  KvType ktype_ = KvType::f16, vtype_ = KvType::f16;
  io::NpyDtype q_dtype_ = io::NpyDtype::f32;
  std::vector<double> q64_;        // as read (float32 files widen exactly)
  std::vector<float> q_;           // q64_ rounded to float32
  std::vector<uint8_t> k_, v_;     // quantized rows, contiguous [batch, n_head_kv, n_kv, row bytes]
  std::vector<uint8_t> mask_;      // a float32 or float16 mask file's element bytes
  bool mask_is_f16_ = false;
  std::vector<double> mask64_;     // a float64 mask file's values
  std::vector<float> mask_f32_;    // mask64_ rounded to float32
  Strides mask_stride_;            // in elements, 0 broadcasts
  io::NpyDtype sinks_dtype_ = io::NpyDtype::f32;
  std::vector<double> sinks64_;    // empty: no sinks
  std::vector<float> sinks_;       // sinks64_ rounded to float32
  std::vector<float> o_;           // poisoned with NaN until a backend writes it
  std::vector<double> o64_;        // poisoned with NaN until run_reference_f64 writes it
};

}  // namespace kvflash::cli
