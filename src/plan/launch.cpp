#include "plan/launch.h"

#include <algorithm>

#include "backend/cpu/cpu_backend.h"
#include "backend/cuda/split_plan.h"

namespace kvflash::plan {
namespace {

/// Product of non-negative factors, -1 on int64 overflow.
int64_t product(std::initializer_list<int64_t> factors) {
  int64_t acc = 1;
  for (int64_t f : factors) {
    if (__builtin_mul_overflow(acc, f, &acc)) return -1;
  }
  return acc;
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

int64_t align_up(int64_t x) { return ceil_div(x, kWorkspaceAlign) * kWorkspaceAlign; }

/// Appends a piece of `bytes` at the next aligned offset after *end. False on overflow or a negative size.
bool place(int64_t bytes, int64_t* end, WorkspaceRange* range) {
  if (bytes < 0 || *end > INT64_MAX - kWorkspaceAlign) return false;
  if (bytes == 0) {
    *range = {};
    return true;
  }
  const int64_t offset = align_up(*end);
  if (__builtin_add_overflow(offset, bytes, end)) return false;
  *range = {offset, bytes};
  return true;
}

}  // namespace

int64_t parallel_units(const BackendCaps& caps) {
  if (caps.kind == BackendKind::cuda) return std::max<int64_t>(1, 2 * int64_t{caps.sm_count});
  return std::max<int64_t>(1, caps.threads);
}

int32_t workers_for(const KernelSpec& spec, const BackendCaps& caps) {
  return spec.backend == BackendKind::cpu ? std::max(1, caps.threads) : 1;
}

namespace {

bool lists_dims(std::span<const HeadDimPair> dims, int64_t d_k, int64_t d_v) {
  for (const HeadDimPair& d : dims) {
    if (d.d_k == d_k && d.d_v == d_v) return true;
  }
  return false;
}

/// The decode instance `inst` runs on: the 16-query-vector one where the row compiles it and a KV head has more
/// than 8 query vectors (each K / V fragment is dequantized once for all of them), else the 8-vector one (fewer
/// registers: 4 CTAs per SM).
cuda::DecodeGeometry decode_instance_geometry(const KernelSpec& spec, const SplitInstance& inst) {
  const bool wide_chunk = inst.group_qvecs > cuda::kNarrowQvecs && lists_dims(spec.qvec16_dims, inst.d_k, inst.d_v);
  return cuda::decode_geometry(inst.k_type, inst.d_k, inst.v_type, inst.d_v,
                               wide_chunk ? cuda::kNarrowQvecsWide : cuda::kNarrowQvecs);
}

/// The whole-wave geometry of the CUDA instance `inst` runs on (a decode or a prefill row): split granule = the
/// row's kv_tile.
constexpr bool decode_rows_split_in_granules() {
  for (const KernelSpec& k : kKernels) {
    if (k.cost == CostModel::cuda_decode && k.kv_tile != cuda::kDecodeSplitGranule) return false;
  }
  return true;
}
static_assert(decode_rows_split_in_granules(), "decode splits are whole kDecodeSplitGranule granules (launch_decode)");

cuda::KernelGeometry whole_wave_geometry(const KernelSpec& spec, const BackendCaps& caps, const SplitInstance& inst) {
  if (spec.cost == CostModel::cuda_prefill) {
    return {spec.kv_tile, cuda::prefill_qvecs_per_cta(inst.v_type, inst.d_v), cuda::kPrefillCtasPerSm,
            cuda::kPrefillMaxWaves};
  }
  const cuda::DecodeGeometry g = decode_instance_geometry(spec, inst);
  const int64_t query_chunks = ceil_div(std::max<int64_t>(1, inst.group_qvecs), g.qvecs_per_cta);
  return {spec.kv_tile, g.qvecs_per_cta, cuda::planned_ctas_per_sm(g, caps.shared_mem_per_block, query_chunks)};
}

}  // namespace

int32_t qvecs_per_cta(const KernelSpec& spec, const SplitInstance& inst) {
  if (spec.backend != BackendKind::cuda) return 0;
  if (spec.kv_split == KvSplit::whole_waves) return decode_instance_geometry(spec, inst).qvecs_per_cta;
  if (spec.kv_split == KvSplit::split) return cuda::kGenericQvecsPerCta;
  return 0;  // the prefill kernel sizes its own query tiles
}

int64_t max_splits_up_to(const KernelSpec& spec, const BackendCaps& caps, int64_t n_seq, int64_t n_head_kv,
                         int64_t max_n_kv, const SplitInstance& inst) {
  if (spec.kv_split == KvSplit::none || max_n_kv <= 0) return 1;
  const int64_t items = std::max<int64_t>(1, n_seq) * std::max<int64_t>(1, n_head_kv);
  if (spec.kv_split == KvSplit::whole_waves) {
    const cuda::KernelGeometry g = whole_wave_geometry(spec, caps, inst);
    const int64_t qchunks = std::max<int64_t>(1, ceil_div(inst.group_qvecs, g.qvecs_per_cta));
    return cuda::max_whole_wave_splits(items, qchunks, max_n_kv, g, std::max(1, caps.sm_count), spec.max_splits);
  }
  // A cpu task holds every query row of its (sequence, KV head); a cuda.generic CTA holds a chunk of them, and the
  // chunks already fill the GPU when a step has hundreds of rows.
  const int64_t qchunks =
      spec.backend == BackendKind::cuda ? ceil_div(std::max<int64_t>(1, inst.group_qvecs), cuda::kGenericQvecsPerCta)
                                        : 1;
  const int64_t wanted = ceil_div(parallel_units(caps), items * qchunks);
  const int64_t tiles = ceil_div(max_n_kv, spec.kv_tile);
  return std::max<int64_t>(1, std::min({wanted, tiles, int64_t{spec.max_splits}}));
}

SplitPlan choose_splits(const KernelSpec& spec, const BackendCaps& caps, int64_t n_seq, int64_t n_head_kv,
                        int64_t n_kv, const SplitInstance& inst) {
  if (spec.kv_split == KvSplit::whole_waves && n_kv > 0) {
    const cuda::SplitPlan p =
        cuda::plan_whole_waves(std::max<int64_t>(1, n_seq) * std::max<int64_t>(1, n_head_kv), inst.group_qvecs, n_kv,
                               whole_wave_geometry(spec, caps, inst), std::max(1, caps.sm_count), spec.max_splits);
    if (p.n_splits > 1) return {p.n_splits, p.keys_per_split};
    return {1, n_kv};
  }
  const int64_t target = max_splits_up_to(spec, caps, n_seq, n_head_kv, n_kv, inst);
  if (target <= 1) return {1, n_kv};
  // Whole tiles per split; recount so that no split is empty.
  const int64_t keys_per_split = ceil_div(ceil_div(n_kv, spec.kv_tile), target) * spec.kv_tile;
  return {ceil_div(n_kv, keys_per_split), keys_per_split};
}

// The longest dequantized row any KV type stores for a head dim (turbo pads to its 128-value block). Scratch for
// dequantized rows is sized by it, not by the call's types, so that a quantized cache never plans more workspace
// than f16 for the same shape (seed 000's invariant; cpu::scratch_floats_per_worker does the same).
static int64_t widest_stored_dim(int64_t dim) {
  int64_t widest = dim;
  for (const KvTraits& t : all_kv_types()) widest = std::max(widest, stored_dim(t.type, dim));
  return widest;
}

int64_t scratch_floats_per_worker(const KernelSpec& spec, KvType k_type, KvType v_type, int64_t d_k, int64_t d_v) {
  switch (spec.scratch) {
    case Scratch::none: return 0;
    case Scratch::kv_tile_dequant:
      return product({int64_t{spec.kv_tile}, widest_stored_dim(d_k) + widest_stored_dim(d_v) + 1});
    case Scratch::cpu_tiles: return cpu::scratch_floats_per_worker(k_type, v_type, d_k, d_v);
  }
  return 0;
}

int64_t partial_o_pitch(const KernelSpec& spec, KvType v_type, int64_t d_v) {
  (void)v_type;
  switch (spec.kv_split) {
    case KvSplit::none:
    case KvSplit::split:
    case KvSplit::whole_waves: return d_v;
  }
  return d_v;
}

int64_t layout_workspace(const LayoutInputs& in, WorkspaceLayout* layout) {
  constexpr int64_t kF32 = 4;
  WorkspaceLayout out;
  int64_t partial_o = 0, partial_stat = 0, staging = 0;
  if (in.n_splits > 1) {
    const int64_t pitch = in.partial_o_pitch > 0 ? in.partial_o_pitch : in.d_v;
    partial_o = product({in.n_splits, in.n_seq, in.n_head_q, in.n_q, pitch, kF32});
    partial_stat = product({in.n_splits, in.n_seq, in.n_head_q, in.n_q, kF32});
  }
  if (in.stages_q) {
    staging = product({in.n_seq, in.n_head_q, in.n_q, stored_dim(in.k_type, in.d_k), kF32});
  }
  const int64_t scratch = product({int64_t{in.workers}, in.scratch_floats_per_worker, kF32});
  int64_t end = 0;
  if (!place(partial_o, &end, &out.partial_o) || !place(partial_stat, &end, &out.partial_max) ||
      !place(partial_stat, &end, &out.partial_sum) || !place(staging, &end, &out.q_staging) ||
      !place(scratch, &end, &out.worker_scratch) || end > INT64_MAX - kWorkspaceAlign) {
    return -1;
  }
  if (layout != nullptr) *layout = out;
  return align_up(end);
}

namespace {

/// Lays out r's workspace for `p` as `spec` needs it (r's splits, workers and scratch), into r.layout and
/// r.workspace_bytes; a Status where a size overflows int64.
Status lay_out_workspace(const KernelSpec& spec, const AttentionProblem& p, Route* r) {
  const AttentionShape& s = p.shape;
  const LayoutInputs in{s.n_seq,     s.n_head_q,    s.n_q,      s.d_k,
                        s.d_v,       p.k.type,      r->n_splits, r->workers,
                        r->scratch_floats_per_worker, spec.stages_q, partial_o_pitch(spec, p.v.type, s.d_v)};
  r->workspace_bytes = layout_workspace(in, &r->layout);
  if (r->workspace_bytes < 0) {
    return invalid_argument("workspace of " + std::string(spec.name) + " overflows int64 bytes (n_splits = " +
                            std::to_string(r->n_splits) + ")");
  }
  return Status::Ok();
}

}  // namespace

Status make_launch(const KernelSpec& spec, const AttentionProblem& p, const BackendCaps& caps, Route* route) {
  const AttentionShape& s = p.shape;
  Route r;
  r.backend = spec.backend;
  r.kernel = spec.id;
  r.kv_tile = spec.kv_tile;
  r.workers = workers_for(spec, caps);
  const SplitInstance inst{p.k.type, p.v.type, s.d_k, s.d_v, s.n_head_q / s.n_head_kv * s.n_q};
  r.qvecs_per_cta = qvecs_per_cta(spec, inst);
  const SplitPlan splits = choose_splits(spec, caps, s.n_seq, s.n_head_kv, s.n_kv, inst);
  r.n_splits = splits.n_splits;
  r.keys_per_split = splits.keys_per_split;
  r.scratch_floats_per_worker = scratch_floats_per_worker(spec, p.k.type, p.v.type, s.d_k, s.d_v);
  KVFLASH_RETURN_IF_ERROR(lay_out_workspace(spec, p, &r));
  *route = r;
  return Status::Ok();
}

StatusOr<Route> with_forced_splits(const AttentionProblem& p, Route route, int64_t splits) {
  const KernelSpec& spec = kernel_spec(route.kernel);
  if (splits <= 0 || spec.kv_split == KvSplit::none || p.shape.n_kv == 0) return route;
  const int64_t tile = spec.kv_tile, tiles = (p.shape.n_kv + tile - 1) / tile;
  const int64_t wanted = std::max<int64_t>(1, std::min<int64_t>({splits, tiles, int64_t{spec.max_splits}}));
  route.keys_per_split = (tiles + wanted - 1) / wanted * tile;
  route.n_splits = (p.shape.n_kv + route.keys_per_split - 1) / route.keys_per_split;
  KVFLASH_RETURN_IF_ERROR(lay_out_workspace(spec, p, &route));
  return route;
}

}  // namespace kvflash::plan
