// The reference backend: the oracle every other backend is checked against.
#pragma once

#include "kvflash/attention_problem.h"
#include "kvflash/status.h"

namespace kvflash {

/// Runs `p` on the host: dequantizes K and V rows exactly as dequantize_row does (turbo: original domain), then
/// computes scores, softmax and the weighted sum in double. All pointers are host pointers. Writes every element
/// of O. It is the oracle, not a production path: it may allocate.
Status attend_reference(const AttentionProblem& p);

/// Float64 inputs that replace their float32 counterparts in attend_reference_f64. Host pointers.
struct ReferenceF64Inputs {
  /// Additive mask [n_seq, n_head_q, n_q, n_kv] of doubles, addressed by `mask_stride` (bytes, multiples of 8;
  /// 0 broadcasts an axis; keys contiguous), replacing p.mask. nullptr: p.mask (f32, f16 or none) applies.
  const double* mask = nullptr;
  Strides mask_stride;
  /// Sinks [n_head_q], replacing p.options.sinks. nullptr: p.options.sinks (float32 or none) applies.
  const double* sinks = nullptr;
};

/// attend_reference for callers whose data is float64, so that nothing is rounded to float32 on the way: Q is
/// read from `q`, a dense [n_seq, n_head_q, n_q, d_k] array, and O written to `o`, a dense
/// [n_seq, n_head_q, n_q, d_v] array (p.q and p.o are ignored); `extra` may replace the mask and the sinks.
/// K, V, the shape and the options come from `p`, as for attend_reference, which shares this implementation:
/// for float32 data both give the same doubles, attend_reference rounds them to float32 once.
Status attend_reference_f64(const AttentionProblem& p, const double* q, double* o,
                            const ReferenceF64Inputs& extra = {});

}  // namespace kvflash
