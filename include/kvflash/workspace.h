// Workspace planning: the largest workspace any route can ask for within a deployment's limits, computed from what
// the KV cache can actually hold (seed 003: a 131K max context with 25K of cache must give a 25K-sized workspace).
#pragma once

#include <cstdint>
#include <string>

#include "kvflash/kv_type.h"
#include "kvflash/model.h"
#include "kvflash/route.h"
#include "kvflash/status.h"

namespace kvflash {

struct WorkspaceLimits {
  int64_t max_sequences = 1;       // sequences in one attention call
  int64_t max_query_rows = 1;      // query rows of one call over all sequences (n_seq * n_q), e.g. the ubatch
  int64_t kv_capacity_tokens = 0;  // keys one sequence can have: what the cache holds, never the model's max context
  ModelShape model;
  KvType k_type = KvType::f16;
  KvType v_type = KvType::f16;
  BackendCaps caps;
};

/// The exact bytes of each temporary of the worst route within the limits, and their total.
struct WorkspacePlan {
  int64_t partial_o_bytes = 0;       // split-KV partial outputs
  int64_t partial_stats_bytes = 0;   // split-KV softmax max + sum
  int64_t q_staging_bytes = 0;       // staged Q (rotated for turbo K)
  int64_t worker_scratch_bytes = 0;  // per-worker tiles
  int64_t total_bytes = 0;           // what to allocate (pieces aligned to kWorkspaceAlign)
  std::string bounding_kernel;       // the row whose worst case sets total_bytes ("" when it is 0)
  int64_t bounding_n_seq = 0, bounding_n_q = 0, bounding_n_splits = 0;  // the shape where it does
};

/// For every kernel of limits.caps.kind that reads the model's types and head dims, the largest workspace it asks
/// for over n_seq <= max_sequences, n_seq * n_q <= max_query_rows, n_kv <= kv_capacity_tokens and every layer;
/// the plan is the maximum of those. Every route plan_route() gives for a problem inside the limits has
/// workspace_bytes <= total_bytes.
StatusOr<WorkspacePlan> plan_workspace(const WorkspaceLimits& limits);

}  // namespace kvflash
