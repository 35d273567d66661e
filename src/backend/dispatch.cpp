// attend(): checks that a route fits the problem and its workspace, then calls the route's backend.
#include "backend/dispatch.h"

#include <cstdint>
#include <string>

#include "kvflash/attention.h"
#include "kvflash/reference.h"
#include "plan/acceptance.h"
#include "plan/kernel_table.h"
#include "plan/launch.h"

namespace kvflash {
namespace {

/// A route made for another problem (other types, dims, more splits than keys) must not reach a kernel that
/// trusts it.
Status check_route_fits(const AttentionProblem& p, const Route& route) {
  const int id = static_cast<int>(route.kernel);
  if (id < 0 || id >= plan::kKernelCount) {
    return invalid_argument("route.kernel = " + std::to_string(id) + " is not a kernel of this build's table");
  }
  const plan::KernelSpec& spec = plan::kKernels[id];
  if (spec.backend != route.backend) {
    return invalid_argument("route.backend = " + std::string(backend_name(route.backend)) + " but kernel " +
                            std::string(spec.name) + " belongs to " + std::string(backend_name(spec.backend)));
  }
  if (std::string why = plan::reject_reason(spec, p); !why.empty()) {
    return invalid_argument("route " + std::string(spec.name) + " does not fit the problem: " + why);
  }
  // The pieces a kernel indexes must be the ones this problem needs: a route reused from a problem of another
  // shape (more query rows, another K type) could index past them. A route may be reused for fewer keys than it
  // was planned for (its splits cover them; trailing splits are then empty).
  const AttentionShape& s = p.shape;
  if (route.n_splits < 1 || (spec.kv_split == plan::KvSplit::none && route.n_splits != 1) ||
      (spec.kv_split != plan::KvSplit::none && route.n_splits * route.keys_per_split < s.n_kv)) {
    return invalid_argument("route.n_splits = " + std::to_string(route.n_splits) + " x route.keys_per_split = " +
                            std::to_string(route.keys_per_split) + " does not cover n_kv = " + std::to_string(s.n_kv));
  }
  const plan::LayoutInputs needed{s.n_seq,
                                  s.n_head_q,
                                  s.n_q,
                                  s.d_k,
                                  s.d_v,
                                  p.k.type,
                                  route.n_splits,
                                  route.workers,
                                  plan::scratch_floats_per_worker(spec, p.k.type, p.v.type, s.d_k, s.d_v),
                                  spec.stages_q,
                                  plan::partial_o_pitch(spec, p.v.type, s.d_v)};
  WorkspaceLayout layout;
  const int64_t bytes = plan::layout_workspace(needed, &layout);
  const auto same = [](const WorkspaceRange& a, const WorkspaceRange& b) {
    return a.offset == b.offset && a.bytes == b.bytes;
  };
  const WorkspaceLayout& got = route.layout;
  if (bytes != route.workspace_bytes || route.scratch_floats_per_worker != needed.scratch_floats_per_worker ||
      !same(layout.partial_o, got.partial_o) || !same(layout.partial_max, got.partial_max) ||
      !same(layout.partial_sum, got.partial_sum) || !same(layout.q_staging, got.q_staging) ||
      !same(layout.worker_scratch, got.worker_scratch)) {
    return invalid_argument("route's workspace layout (" + std::to_string(route.workspace_bytes) +
                            " bytes) was planned for a problem of another shape; this one needs " +
                            std::to_string(bytes) + " bytes: plan the route for this problem");
  }
  return Status::Ok();
}

/// The problem the CUDA kernels run: `p`, less a causal mask that hides nothing. Bottom-right aligned, the one query
/// row of a single-row step sits at position kv_len - 1 and sees every key of its sequence, so causal changes no
/// score; but the kernels test "no option set" to skip their per-score option call (ScoreVariant), a cost of up to
/// a third of a step (H100, 2026-11-23: f16 n_q = 4 at 32K keys 122.5 us causal against 89.5 us plain; `kvflash
/// bench`'s causal q4_0 decode at 131K keys went from 134 to 104 us with this). An engine sets causal on every
/// step; the single-row ones should not pay for it.
#ifdef KVFLASH_HAVE_CUDA
AttentionProblem without_causal_that_hides_nothing(const AttentionProblem& p) {
  AttentionProblem q = p;
  if (q.options.causal && q.shape.n_q == 1) q.options.causal = false;
  return q;
}
#endif

}  // namespace

Status attend(const AttentionProblem& p, const Route& route, void* workspace, size_t workspace_bytes,
              void* stream) {
  KVFLASH_RETURN_IF_ERROR(validate(p));
  if (workspace_bytes < static_cast<uint64_t>(route.workspace_bytes)) {
    return invalid_argument("workspace_bytes = " + std::to_string(workspace_bytes) + " is less than the " +
                            std::to_string(route.workspace_bytes) + " bytes route " +
                            std::string(kernel_name(route.kernel)) + " needs");
  }
  if (route.workspace_bytes > 0 &&
      (workspace == nullptr || reinterpret_cast<uintptr_t>(workspace) % kWorkspaceAlign != 0)) {
    return invalid_argument("workspace = " + std::to_string(reinterpret_cast<uintptr_t>(workspace)) +
                            " is not a non-null pointer aligned to " + std::to_string(kWorkspaceAlign) + " bytes");
  }
  KVFLASH_RETURN_IF_ERROR(check_route_fits(p, route));
  switch (route.backend) {
    case BackendKind::ref:
      return attend_reference(p);
    case BackendKind::cpu:
      if constexpr (plan::backend_has_kernels(BackendKind::cpu)) {
        return run_cpu_kernel(p, route, workspace);
      }
      break;
    case BackendKind::cuda:
#ifdef KVFLASH_HAVE_CUDA
      if constexpr (plan::backend_has_kernels(BackendKind::cuda)) {
        return run_cuda_kernel(without_causal_that_hides_nothing(p), route, workspace, stream);
      }
#endif
      break;
  }
  (void)stream;
  return unsupported("backend " + std::string(backend_name(route.backend)) + " is not compiled into this build");
}

}  // namespace kvflash
