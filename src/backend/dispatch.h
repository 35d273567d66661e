// Entry points attend() dispatches to, one per backend. The backend streams define them; dispatch.cpp calls one only
// when the kernel table has rows for that backend, so adding a row without its kernel fails to link.
#pragma once

#include "kvflash/attention_problem.h"
#include "kvflash/route.h"
#include "kvflash/status.h"

namespace kvflash {

/// Runs a cpu route (defined in src/backend/cpu/ by the cpu stream). `workspace` holds route.workspace_bytes.
Status run_cpu_kernel(const AttentionProblem& p, const Route& route, void* workspace);

/// Runs a cuda route: defined by the registry that tools/gen_kernels generates from the kernel table. `stream` is
/// a cudaStream_t.
Status run_cuda_kernel(const AttentionProblem& p, const Route& route, void* workspace, void* stream);

}  // namespace kvflash
