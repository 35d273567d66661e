// Internal entry of the router for callers that have already validated the problem (the route sweep validates
// each point once and routes it on every backend).
#pragma once

#include <span>

#include "kvflash/route.h"
#include "kvflash/workspace.h"
#include "plan/kernel_table.h"

namespace kvflash::plan {

/// The router's order between two rows that accept a problem: a specialized row before the backend's generic one
/// (the catch-all is taken only where nothing else accepts, which is what lets plan_workspace() leave the generic
/// kernel's partial results out wherever a specialized row covers every problem of the limits), then the lower
/// estimated cost; a tie keeps the earlier row.
inline bool route_preferred(const KernelSpec& spec, double cost_us, const KernelSpec& best, double best_cost_us) {
  if (spec.generic != best.generic) return best.generic;
  return cost_us < best_cost_us;
}

/// plan_route() without its validate() call; `p` must be a problem validate() accepted.
StatusOr<Route> route_validated(const AttentionProblem& p, const BackendCaps& caps);

/// The router over another table (tests check the planner's arithmetic with rows the real table does not have yet).
/// `p` must be valid; the failure message is short (no explanation).
StatusOr<Route> route_over(std::span<const KernelSpec> table, const AttentionProblem& p, const BackendCaps& caps);

/// plan_workspace() over another table.
StatusOr<WorkspacePlan> plan_workspace_over(std::span<const KernelSpec> table, const WorkspaceLimits& limits);

}  // namespace kvflash::plan
