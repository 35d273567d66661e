// An independent float64 attention, written from attention_problem.h's comment for tests to check backends and
// the CLI against: dense and naive, its own addressing of every view, logits computed one option at a time and
// normalized through a log-sum-exp (the oracle divides by a running denominator instead). It shares only the
// format code (dequantize_row, fp16_to_fp32) with the library.
#pragma once

#include <vector>

#include "kvflash/attention_problem.h"

namespace kvflash::testing {

/// Float64 data replacing the float32 Q, mask and sinks of a problem (what attend_reference_f64 takes).
struct Float64Inputs {
  const double* q = nullptr;      // dense [n_seq, n_head_q, n_q, d_k]; nullptr: p.q
  const double* mask = nullptr;   // nullptr: p.mask
  Strides mask_stride;            // bytes, for `mask`
  const double* sinks = nullptr;  // [n_head_q]; nullptr: p.options.sinks
};

/// The expected output and the scale each element's error is measured against.
struct Float64Attention {
  std::vector<double> out;    // dense [n_seq, n_head_q, n_q, d_v]
  std::vector<double> scale;  // sum_j p_j |v_j| per element: the size of the terms summed into it
};

/// The attention of `p` (K and V dequantized, everything else in double), with `f64` replacing Q, mask or sinks.
Float64Attention float64_attention(const AttentionProblem& p, const Float64Inputs& f64 = {});

}  // namespace kvflash::testing
