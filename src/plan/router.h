// Internal entry of the router for callers that have already validated the problem (the route sweep validates
// each point once and routes it on every backend).
#pragma once

#include <span>

#include "kvflash/route.h"
#include "kvflash/workspace.h"
#include "plan/kernel_table.h"

namespace kvflash::plan {

/// plan_route() without its validate() call; `p` must be a problem validate() accepted.
StatusOr<Route> route_validated(const AttentionProblem& p, const BackendCaps& caps);

/// The router over another table (tests check the planner's arithmetic with rows the real table does not have yet).
/// `p` must be valid; the failure message is short (no explanation).
StatusOr<Route> route_over(std::span<const KernelSpec> table, const AttentionProblem& p, const BackendCaps& caps);

/// plan_workspace() over another table.
StatusOr<WorkspacePlan> plan_workspace_over(std::span<const KernelSpec> table, const WorkspaceLimits& limits);

}  // namespace kvflash::plan
