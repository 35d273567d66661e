// The reference backend: the oracle every other backend is checked against.
#pragma once

#include "kvflash/attention_problem.h"
#include "kvflash/status.h"

namespace kvflash {

/// Runs `p` on the host: dequantizes K and V rows exactly as dequantize_row does (turbo: original domain), then
/// computes scores, softmax and the weighted sum in double. All pointers are host pointers. Writes every element
/// of O. It is the oracle, not a production path: it may allocate.
Status attend_reference(const AttentionProblem& p);

}  // namespace kvflash
