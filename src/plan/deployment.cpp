#include "plan/deployment.h"

#include <algorithm>

#include "plan/router.h"

namespace kvflash::plan {

StatusOr<DeploymentPlan> plan_deployment(const DeploymentInputs& in) {
  if (in.context < 1) return invalid_argument("context = " + std::to_string(in.context) + " must be >= 1");
  if (in.n_seq < 1) return invalid_argument("batch = " + std::to_string(in.n_seq) + " must be >= 1");
  if (in.ubatch < 1) return invalid_argument("ubatch = " + std::to_string(in.ubatch) + " must be >= 1");
  if (in.other_bytes < 0) return invalid_argument("other = " + std::to_string(in.other_bytes) + " must be >= 0");
  KVFLASH_RETURN_IF_ERROR(validate_model(in.model));
  DeploymentPlan plan;
  auto kv = kv_cache_bytes_per_layer(in.model, in.k_type, in.v_type, in.context, in.n_seq);
  if (!kv.ok()) return kv.status();
  plan.kv_per_layer = std::move(*kv);
  for (int64_t b : plan.kv_per_layer) plan.kv_bytes += b;  // the sum was overflow-checked

  WorkspaceLimits limits;
  limits.max_sequences = in.n_seq;
  // A step's query rows are tokens already appended to the cache, so there are never more than it holds.
  int64_t cache_tokens = 0;
  if (__builtin_mul_overflow(in.context, in.n_seq, &cache_tokens)) cache_tokens = INT64_MAX;
  limits.max_query_rows = std::max(in.n_seq, std::min(in.ubatch, cache_tokens));
  limits.kv_capacity_tokens = in.context;
  limits.model = in.model;
  limits.k_type = in.k_type;
  limits.v_type = in.v_type;
  limits.caps = in.caps;
  auto ws = plan_workspace_over(in.table, limits);
  if (!ws.ok()) return ws.status();
  plan.workspace = *ws;
  plan.other_bytes = in.other_bytes;
  if (__builtin_add_overflow(plan.kv_bytes, plan.workspace.total_bytes, &plan.total_bytes) ||
      __builtin_add_overflow(plan.total_bytes, plan.other_bytes, &plan.total_bytes)) {
    return invalid_argument("the planned total overflows int64 bytes");
  }
  return plan;
}

StatusOr<int64_t> max_context_within(const DeploymentInputs& in, int64_t budget_bytes) {
  // Bytes per token over all layers as if none slid: an upper bound of the cache, used to stop before the exact
  // arithmetic would overflow int64 (such a context cannot fit any budget).
  double bytes_per_token = 0;
  for (const LayerShape& l : in.model.layers) {
    bytes_per_token += static_cast<double>(layer_bytes_per_token(l, in.k_type, in.v_type, in.model.v_is_view_of_k));
  }
  const auto fits = [&](int64_t context, bool* out) -> Status {
    if (static_cast<double>(context) * static_cast<double>(in.n_seq) * bytes_per_token > 4e18) {
      *out = false;
      return Status::Ok();
    }
    DeploymentInputs at = in;
    at.context = context;
    auto p = plan_deployment(at);
    if (!p.ok()) return p.status();
    *out = p->total_bytes <= budget_bytes;
    return Status::Ok();
  };
  bool ok = false;
  KVFLASH_RETURN_IF_ERROR(fits(1, &ok));
  if (!ok) return int64_t{0};
  int64_t lo = 1, hi = INT32_MAX;  // lo fits; find the last context that fits
  KVFLASH_RETURN_IF_ERROR(fits(hi, &ok));
  if (ok) return hi;
  while (hi - lo > 1) {
    const int64_t mid = lo + (hi - lo) / 2;
    KVFLASH_RETURN_IF_ERROR(fits(mid, &ok));
    (ok ? lo : hi) = mid;
  }
  return lo;
}

MemoryReport deployment_report(const DeploymentPlan& plan, int64_t budget_bytes) {
  MemoryReport r;
  r.device = "budget";
  for (size_t l = 0; l < plan.kv_per_layer.size(); ++l) {
    if (plan.kv_per_layer[l] > 0) r.add("kv.layer." + std::to_string(l), MemoryKind::kv_cache, plan.kv_per_layer[l]);
  }
  r.add("workspace", MemoryKind::workspace, plan.workspace.total_bytes);
  r.add("other", MemoryKind::other, plan.other_bytes);
  r.device_total = budget_bytes;
  r.device_free = budget_bytes - r.ours();
  return r;
}

}  // namespace kvflash::plan
