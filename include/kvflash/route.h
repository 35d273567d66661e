// Routes: which kernel of a backend runs a problem, with which launch parameters and how much workspace.
//
// Routing is total: for every problem validate() accepts, plan_route() finds a route on every backend that has
// kernels, because each backend keeps a generic kernel that accepts everything; specialized kernels are chosen
// over it by estimated cost. explain() shows every candidate and why it was or was not taken.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kvflash/attention_problem.h"
#include "kvflash/backend.h"
#include "kvflash/status.h"

namespace kvflash {

/// A row of the kernel table (src/plan/kernel_table.h defines the values).
enum class KernelId : uint16_t;

/// Host-side description of the machine a backend runs on. Planning reads it; it never touches a device.
struct BackendCaps {
  BackendKind kind = BackendKind::ref;
  int threads = 1;                       // host worker threads (ref and cpu)
  int sm_count = 0;                      // cuda: streaming multiprocessors
  int64_t shared_mem_per_block = 0;      // cuda: bytes a block may opt into
  int64_t device_memory_bytes = 0;       // cuda: device total (0: unknown)
  double memory_bandwidth_gbps = 0;      // GB/s the cost model divides bytes read by
  bool nominal = false;                  // described from a default (no device seen), not measured
};

/// The caps of this machine for `kind`: threads from std::thread::hardware_concurrency(); cuda from the device
/// when the build has CUDA and one is present, otherwise a nominal H100 SXM description (nominal = true), so that
/// plans can be made on a machine without a GPU.
BackendCaps caps_for(BackendKind kind);

/// A byte range inside the workspace.
struct WorkspaceRange {
  int64_t offset = 0;
  int64_t bytes = 0;
};

/// Named pieces of a route's workspace, so kernels do not recompute offsets. Empty pieces have bytes = 0.
/// Every offset is a multiple of kWorkspaceAlign.
struct WorkspaceLayout {
  WorkspaceRange partial_o;       // float32 [n_splits, n_seq, n_head_q, n_q, pitch] (only when n_splits > 1);
                                  // pitch = d_v, or stored_dim(v.type, d_v) for a kernel that keeps turbo V rotated
  WorkspaceRange partial_max;     // float32 [n_splits, n_seq, n_head_q, n_q]: running max of each split
  WorkspaceRange partial_sum;     // float32 [n_splits, n_seq, n_head_q, n_q]: softmax denominator of each split
  WorkspaceRange q_staging;       // float32 [n_seq, n_head_q, n_q, stored_dim(k.type, d_k)]: Q pre-scaled (rotated
                                  // for turbo K)
  WorkspaceRange worker_scratch;  // float32 [workers, scratch_floats_per_worker]
};

/// Alignment of every workspace piece: a CUDA allocation's alignment, and a multiple of any cache line.
inline constexpr int64_t kWorkspaceAlign = 256;

struct Route {
  BackendKind backend = BackendKind::ref;
  KernelId kernel{};
  int64_t n_splits = 1;         // key ranges computed independently, then combined
  int64_t keys_per_split = 0;   // a multiple of kv_tile; the last split may hold fewer
  int32_t kv_tile = 0;          // keys per tile of the kernel
  int32_t qvecs_per_cta = 0;    // cuda: query vectors (query heads of a KV group x query rows) one CTA carries over
                                // the keys; a (sequence, KV head) runs ceil(group x n_q / this) query chunks, each
                                // reading the keys once. 0 on host backends
  int32_t workers = 1;          // host threads the kernel runs with (one scratch slice each); 1 for ref and cuda
  int64_t scratch_floats_per_worker = 0;
  WorkspaceLayout layout;
  int64_t workspace_bytes = 0;  // bytes attend() needs; the end of the last piece, rounded to kWorkspaceAlign
  double cost_us = 0;           // the cost model's estimate, microseconds
};

/// The kernel's table name ("ref.generic").
std::string_view kernel_name(KernelId id);

/// Picks the cheapest kernel of caps.kind that accepts `p`. Fails with invalid_argument when validate() rejects
/// `p`, and with unsupported (a bug: routing is total) when no kernel accepts it; both messages end with
/// describe(p).
StatusOr<Route> plan_route(const AttentionProblem& p, const BackendCaps& caps);

/// One kernel considered for a problem.
struct RouteCandidate {
  std::string kernel;    // table name
  bool accepted = false;
  std::string reason;    // why it was rejected ("k.type = q4_0 is not one it reads (f16|q8_0)"); empty if accepted
  Route route;           // launch parameters and cost when accepted
};

/// Every candidate of a backend for a problem, and which one plan_route() takes.
struct RouteExplanation {
  BackendKind backend = BackendKind::ref;
  std::string problem;   // describe(p)
  Status status;         // what plan_route() returns when it fails
  std::vector<RouteCandidate> candidates;
  int chosen = -1;       // index into candidates, -1 when none

  /// Human-readable: the problem, one line per candidate, the choice.
  std::string to_string() const;
};

/// Every kernel of caps.kind considered for `p`: the one plan_route() takes, with its launch parameters and cost,
/// and for each other the exact reason it does not accept `p`. Never fails: a failure is in `status`.
RouteExplanation explain(const AttentionProblem& p, const BackendCaps& caps);

}  // namespace kvflash
