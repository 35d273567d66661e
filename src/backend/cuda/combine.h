// The one combine kernel of every split launch (decode and generic): merges the partial rows of the splits of
// each output row by their log-sum-exp, adds the sinks to the denominator, rotates turbo V back, and writes O.
#pragma once

#include <cuda_runtime.h>

#include "backend/cuda/output_rows.cuh"
#include "kvflash/attention_problem.h"
#include "kvflash/status.h"

namespace kvflash::cuda {

/// Combines out.n_splits partials of dv_stored values per output row of `p` into p.o (device pointers).
Status launch_combine(const AttentionProblem& p, int dv_stored, bool v_rotated, const SplitOutput& out,
                      cudaStream_t stream);

}  // namespace kvflash::cuda
