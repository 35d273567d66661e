// plan_workspace(): the worst case of launch.cpp's layout over the limits, kernel by kernel.
//
// For a fixed kernel, layer and n_seq the layout grows with n_q (partials and staging are per query row) and with
// the split count, which depends on n_kv (and, for whole waves, on the query chunks) only through
// max_splits_up_to(), itself a maximum over every n_kv up to the capacity; so the worst case of that n_seq is
// n_q = min(max_query_rows / n_seq, the kernel's max_n_q) with that many splits, except for the CUDA split rows,
// whose splits fall as n_q adds query chunks: there every n_q up to that bound is tried. The
// remaining axis, n_seq, trades splits against rows and is walked exhaustively (max_sequences values per kernel and
// distinct layer shape). The generic row counts only for the query-row counts no specialized row accepts: the
// router takes it nowhere else (route_preferred), so a cache type with a tensor-core prefill row plans the decode
// rows' partial results, not the generic kernel's at hundreds of query rows.
#include "kvflash/workspace.h"

#include <algorithm>
#include <set>
#include <tuple>

#include "plan/acceptance.h"
#include "plan/kernel_table.h"
#include "plan/launch.h"
#include "plan/router.h"

namespace kvflash {
namespace {
constexpr int64_t kMaxSequences = int64_t{1} << 20;
}  // namespace

StatusOr<WorkspacePlan> plan_workspace(const WorkspaceLimits& limits) {
  return plan::plan_workspace_over(plan::kKernels, limits);
}

namespace plan {

StatusOr<WorkspacePlan> plan_workspace_over(std::span<const KernelSpec> table, const WorkspaceLimits& limits) {
  if (limits.max_sequences < 1) {
    return invalid_argument("max_sequences = " + std::to_string(limits.max_sequences) + " must be >= 1");
  }
  // The walk over n_seq below is linear; a million sequences in one call is far beyond any batch.
  if (limits.max_sequences > kMaxSequences) {
    return invalid_argument("max_sequences = " + std::to_string(limits.max_sequences) + " exceeds " +
                            std::to_string(kMaxSequences));
  }
  if (limits.max_query_rows < limits.max_sequences) {
    return invalid_argument("max_query_rows = " + std::to_string(limits.max_query_rows) +
                            " must be >= max_sequences = " + std::to_string(limits.max_sequences) +
                            " (each sequence has at least one query row)");
  }
  if (limits.kv_capacity_tokens < 0) {
    return invalid_argument("kv_capacity_tokens = " + std::to_string(limits.kv_capacity_tokens) + " must be >= 0");
  }
  KVFLASH_RETURN_IF_ERROR(validate_model(limits.model));
  bool any_row = false;
  for (const KernelSpec& spec : table) any_row = any_row || spec.backend == limits.caps.kind;
  if (!any_row) {
    return unsupported("backend " + std::string(backend_name(limits.caps.kind)) +
                       " has no kernels in this build: no workspace can be planned for it");
  }

  // Layers with the same attention shape share a worst case.
  std::set<std::tuple<int64_t, int64_t, int64_t, int64_t>> shapes;
  for (const LayerShape& l : limits.model.layers) {
    if (l.n_head_kv > 0) shapes.insert({l.n_head_q, l.n_head_kv, l.d_k, l.d_v});
  }

  WorkspacePlan best;
  const KvType k_type = limits.k_type;
  const KvType v_type = limits.model.v_is_view_of_k ? limits.k_type : limits.v_type;
  // A row that accepts a layer shape for every option and layout (the limits name neither).
  const auto serves = [&](const KernelSpec& spec, int64_t n_head_q, int64_t n_head_kv, int64_t d_k, int64_t d_v) {
    return spec.backend == limits.caps.kind && reject_types_and_dims(spec, k_type, v_type, d_k, d_v).empty() &&
           (spec.max_gqa_group == 0 || n_head_q / n_head_kv <= spec.max_gqa_group);
  };
  for (const KernelSpec& spec : table) {
    if (spec.backend != limits.caps.kind) continue;
    for (const auto& [n_head_q, n_head_kv, d_k, d_v] : shapes) {
      if (!serves(spec, n_head_q, n_head_kv, d_k, d_v)) continue;
      // The router takes the generic row only where no specialized row accepts (route_preferred): for query-row
      // counts up to `covered` it is never taken. 0: no specialized row; -1: one accepts any n_q.
      int64_t covered = 0;
      for (const KernelSpec& other : table) {
        if (!spec.generic || other.generic || other.features != kAllFeatures ||
            !serves(other, n_head_q, n_head_kv, d_k, d_v)) {
          continue;
        }
        covered = other.max_n_q == 0 || covered < 0 ? -1 : std::max(covered, other.max_n_q);
      }
      const int32_t workers = workers_for(spec, limits.caps);
      const int64_t scratch = scratch_floats_per_worker(spec, k_type, v_type, d_k, d_v);
      for (int64_t n_seq = 1; n_seq <= limits.max_sequences; ++n_seq) {
        int64_t max_n_q = limits.max_query_rows / n_seq;
        if (spec.max_n_q > 0) max_n_q = std::min(max_n_q, spec.max_n_q);
        if (covered < 0 || max_n_q <= covered) continue;
        // Split counts on the GPU fall as query rows add query chunks (whole waves, and cuda.generic's CTAs of
        // kGenericQvecsPerCta): every row count is a candidate there. A cpu task holds all rows at any count.
        const int64_t min_n_q = spec.backend == BackendKind::cuda && spec.kv_split != KvSplit::none ? 1 : max_n_q;
        for (int64_t n_q = min_n_q; n_q <= max_n_q; ++n_q) {
          const SplitInstance inst{k_type, v_type, d_k, d_v, n_head_q / n_head_kv * n_q};
          const int64_t n_splits =
              max_splits_up_to(spec, limits.caps, n_seq, n_head_kv, limits.kv_capacity_tokens, inst);
          const LayoutInputs in{n_seq,   n_head_q, n_q,     d_k,           d_v,
                                k_type,  n_splits, workers, scratch,       spec.stages_q,
                                partial_o_pitch(spec, v_type, d_v)};
          WorkspaceLayout layout;
          const int64_t total = layout_workspace(in, &layout);
          if (total < 0) {
            return invalid_argument("workspace of " + std::string(spec.name) + " overflows int64 bytes at n_seq = " +
                                    std::to_string(n_seq) + ", n_q = " + std::to_string(n_q));
          }
          if (total > best.total_bytes) {
            best.total_bytes = total;
            best.partial_o_bytes = layout.partial_o.bytes;
            best.partial_stats_bytes = layout.partial_max.bytes + layout.partial_sum.bytes;
            best.q_staging_bytes = layout.q_staging.bytes;
            best.worker_scratch_bytes = layout.worker_scratch.bytes;
            best.bounding_kernel = std::string(spec.name);
            best.bounding_n_seq = n_seq;
            best.bounding_n_q = n_q;
            best.bounding_n_splits = n_splits;
          }
        }
      }
    }
  }
  return best;
}

}  // namespace plan
}  // namespace kvflash
