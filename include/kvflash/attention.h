// attend(): runs a problem along a route that plan_route() made for it.
#pragma once

#include <cstddef>

#include "kvflash/attention_problem.h"
#include "kvflash/route.h"
#include "kvflash/status.h"

namespace kvflash {

/// Runs `p` with `route` (from plan_route() for the same problem shape and backend). Temporaries live in
/// `workspace` (`workspace_bytes` >= route.workspace_bytes, aligned to kWorkspaceAlign; in the backend's memory);
/// the fast backends allocate nothing. `stream` is a cudaStream_t for cuda (nullptr: the default stream) and ignored
/// elsewhere. Fails (never aborts) when the workspace is too small or misaligned, when the route does not fit the
/// problem, or when the route's backend is not compiled into this build.
Status attend(const AttentionProblem& p, const Route& route, void* workspace, size_t workspace_bytes,
              void* stream = nullptr);

}  // namespace kvflash
