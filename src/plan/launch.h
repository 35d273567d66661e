// Launch parameters of a kernel for a problem (split count, workers, scratch) and the workspace layout they imply.
// route.cpp uses them for one problem; workspace.cpp uses the same functions for the worst problem inside limits,
// so the planned bound and the bytes a route asks for cannot drift apart.
#pragma once

#include <cstdint>

#include "kvflash/attention_problem.h"
#include "kvflash/route.h"
#include "plan/kernel_table.h"

namespace kvflash::plan {

/// Independent work items a backend runs at once: twice the SM count on CUDA (two resident blocks per SM hide the
/// latency of a split's reduction), the worker threads on the host.
int64_t parallel_units(const BackendCaps& caps);

/// Host worker threads a kernel of this backend uses (1 for ref and cuda).
int32_t workers_for(const KernelSpec& spec, const BackendCaps& caps);

struct SplitPlan {
  int64_t n_splits = 1;
  int64_t keys_per_split = 0;  // whole tiles; the last split may hold fewer keys
};

/// What KvSplit::whole_waves needs beyond the counts: the instance (types, head dims) whose resident CTAs per SM
/// make a wave, and the query vectors (query heads of a KV group x query rows) of one (sequence, KV head).
/// KvSplit::split ignores it.
struct SplitInstance {
  KvType k_type = KvType::f16;
  KvType v_type = KvType::f16;
  int64_t d_k = 128;
  int64_t d_v = 128;
  int64_t group_qvecs = 1;
};

/// Splits the kernel uses. KvSplit::split: enough (sequence, KV head) x split items (x query chunks of
/// cuda::kGenericQvecsPerCta on the GPU) to fill parallel_units(), no
/// more splits than tiles of keys, at most spec.max_splits, and no empty split. KvSplit::whole_waves: the CUDA
/// whole-wave rule (backend/cuda/split_plan.h) for the instance's resident CTAs on caps.sm_count SMs. One split
/// of n_kv keys for KvSplit::none.
SplitPlan choose_splits(const KernelSpec& spec, const BackendCaps& caps, int64_t n_seq, int64_t n_head_kv,
                        int64_t n_kv, const SplitInstance& inst = {});

/// The largest choose_splits() over every n_kv in [0, max_n_kv] (it is not monotone in n_kv: rounding keys to
/// whole tiles can lower the count). On the GPU counts depend on inst.group_qvecs too (fewer query chunks leave
/// room for more splits): plan_workspace() asks for each query-row count.
int64_t max_splits_up_to(const KernelSpec& spec, const BackendCaps& caps, int64_t n_seq, int64_t n_head_kv,
                         int64_t max_n_kv, const SplitInstance& inst = {});

/// Query vectors one CTA of a CUDA row carries (Route::qvecs_per_cta): for a whole-wave decode row 16 where the
/// row lists the head dims in qvec16_dims and inst.group_qvecs > 8, else the instance's decode_geometry() (8 on
/// the narrow kernel, 16 or 32 on the wide one); kGenericQvecsPerCta for cuda.generic; 0 elsewhere.
int32_t qvecs_per_cta(const KernelSpec& spec, const SplitInstance& inst);

/// float32 scratch per worker the kernel keeps (Scratch in the table).
int64_t scratch_floats_per_worker(const KernelSpec& spec, KvType k_type, KvType v_type, int64_t d_k, int64_t d_v);

/// What a layout is computed from.
struct LayoutInputs {
  int64_t n_seq, n_head_q, n_q, d_k, d_v;
  KvType k_type;
  int64_t n_splits;
  int32_t workers;
  int64_t scratch_floats_per_worker;
  bool stages_q;
  int64_t partial_o_pitch = 0;  // floats per partial output row (partial_o_pitch()); 0: d_v
};

/// Floats per partial output row of a split kernel: d_v for KvSplit::split, whose partials are in the original
/// domain. (A split rule that keeps turbo V partials rotated until the combine would use stored_dim(v_type, d_v).)
int64_t partial_o_pitch(const KernelSpec& spec, KvType v_type, int64_t d_v);

/// Places the pieces one after another, each at a multiple of kWorkspaceAlign. Returns the total bytes (the end of
/// the last piece rounded up to kWorkspaceAlign), or -1 when a size overflows int64 (validate() bounds every
/// shape product, so a valid problem never gets -1).
int64_t layout_workspace(const LayoutInputs& in, WorkspaceLayout* layout);

/// Full launch parameters and workspace of `spec` for `p` on `caps` (cost not filled in).
/// `p` has been validated and accepted by the row.
Status make_launch(const KernelSpec& spec, const AttentionProblem& p, const BackendCaps& caps, Route* route);

/// `route` (planned for `p`) cut into about `splits` key ranges instead of its own count: whole tiles, no empty range
/// (so fewer where the keys run out), at most the row's max_splits, and the workspace laid out again as make_launch
/// lays it out. For tests and benchmarks of a split count the planner does not choose; `splits` <= 0, a row that
/// never splits or an empty cache return the route unchanged.
StatusOr<Route> with_forced_splits(const AttentionProblem& p, Route route, int64_t splits);

}  // namespace kvflash::plan
