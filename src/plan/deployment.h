// A deployment's memory: KV cache per layer + attention workspace + what else the caller holds, for a model, KV
// types, context and batch. `kvflash plan` prints it; tests check its invariants (seed 000: a quantized cache never
// plans more memory than f16).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kvflash/memory_report.h"
#include "kvflash/model.h"
#include "kvflash/route.h"
#include "kvflash/workspace.h"
#include "plan/kernel_table.h"

namespace kvflash::plan {

struct DeploymentInputs {
  ModelShape model;
  KvType k_type = KvType::f16;
  KvType v_type = KvType::f16;
  int64_t context = 0;       // tokens per sequence the cache holds
  int64_t n_seq = 1;         // sequences decoded together
  int64_t ubatch = 512;      // query rows one attention call takes (prefill chunk); capped at context * n_seq
  BackendCaps caps;
  int64_t other_bytes = 0;   // weights and other buffers the caller holds on the same device
  std::span<const KernelSpec> table = kKernels;  // the kernels the workspace is planned for (tests swap it)
};

struct DeploymentPlan {
  std::vector<int64_t> kv_per_layer;
  int64_t kv_bytes = 0;
  WorkspacePlan workspace;
  int64_t other_bytes = 0;
  int64_t total_bytes = 0;
};

/// The plan of `in`: KV bytes per layer (sliding layers at their window), the workspace bound for
/// {n_seq, min(ubatch, context * n_seq) rows, context tokens}, and the total.
StatusOr<DeploymentPlan> plan_deployment(const DeploymentInputs& in);

/// The largest context (per sequence) whose plan fits `budget_bytes`, searched up to INT32_MAX tokens (kv_len is
/// int32); 0 when not even one token fits. The total grows with the context, so a binary search is exact.
StatusOr<int64_t> max_context_within(const DeploymentInputs& in, int64_t budget_bytes);

/// The plan as a memory report against a budget: kv.layer.<l> buckets, workspace, other; device "budget" with
/// total = budget and free = budget - ours (negative when it does not fit).
MemoryReport deployment_report(const DeploymentPlan& plan, int64_t budget_bytes);

}  // namespace kvflash::plan
