#include "backend/cpu/cpu_backend.h"

#include <algorithm>
#include <string>

#include "backend/cpu/kernel_job.h"
#include "backend/cpu/thread_pool.h"
#include "backend/dispatch.h"
#include "plan/kernel_table.h"
#include "plan/launch.h"

namespace kvflash {

// dispatch.cpp's attend() has validated the problem and checked the route against it.
Status run_cpu_kernel(const AttentionProblem& p, const Route& route, void* workspace) {
  return cpu::run_validated(p, route, workspace, static_cast<size_t>(route.workspace_bytes));
}

namespace cpu {

namespace {

constexpr int64_t kFloatsPerLine = 16;  // floats in a 64-byte cache line

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// Dims of a call as the kernels see them (turbo rows padded to 128, everything padded to the vector width).
struct Dims {
  int64_t dk_stored, dv_stored, dk_pad, dv_pad, acc_row, row_tile_cap;
};

// The row tile: a task's accumulators stay within ~256 KiB (L2), so up to 128 rows while d_v <= 384, fewer beyond.
int64_t row_tile_cap(int64_t acc_row) { return std::clamp<int64_t>(65536 / acc_row, 4, kMaxRowTile); }

Dims dims_of(KvType k_type, KvType v_type, int64_t d_k, int64_t d_v) {
  Dims d;
  d.dk_stored = stored_dim(k_type, d_k);
  d.dv_stored = stored_dim(v_type, d_v);
  d.dk_pad = round_up(d.dk_stored, kDimPad);
  d.dv_pad = round_up(d.dv_stored, kDimPad);
  d.acc_row = d.dv_pad + kPartialStats;
  d.row_tile_cap = row_tile_cap(round_up(d_v, 128) + kPartialStats);
  return d;
}

// The scratch is laid out for head dims rounded up to 128, whatever the types: every type's padded rows fit, and
// a quantized (even turbo-padded) K/V never asks for more scratch than f16 does (seed 000's invariant).
Dims capacity_dims(int64_t d_k, int64_t d_v) {
  Dims d;
  d.dk_stored = d.dk_pad = round_up(d_k, 128);
  d.dv_stored = d.dv_pad = round_up(d_v, 128);
  d.acc_row = d.dv_pad + kPartialStats;
  d.row_tile_cap = row_tile_cap(d.acc_row);
  return d;
}

ScratchLayout scratch_layout(const Dims& d) {
  ScratchLayout L;
  int64_t at = 0;
  const auto region = [&at](int64_t floats) {
    const int64_t start = at;
    at += round_up(floats, kFloatsPerLine);
    return start;
  };
  L.places = region(d.row_tile_cap * kRowPlaceFloats);
  L.q = region(d.row_tile_cap * d.dk_pad);
  L.scores = region(d.row_tile_cap * kKeyTile);
  L.alpha = region(d.row_tile_cap);
  L.acc = region(d.row_tile_cap * d.acc_row);
  L.k_tile = region(kKeyTile * d.dk_pad);
  L.v_tile = region(kKeyTile * d.dv_pad);
  L.out = region(2 * d.dv_pad);  // a finished row, and the merge of it before un-rotation
  L.floats = at;
  return L;
}

const IsaKernels* kernels_for(Isa isa) {
  switch (isa) {
    case Isa::portable:
      return &portable_kernels();
#if defined(KVFLASH_CPU_HAVE_AVX2)
    case Isa::avx2:
      return &avx2_kernels();
#endif
#if defined(KVFLASH_CPU_HAVE_AVX512)
    case Isa::avx512:
      return &avx512_kernels();
#endif
    default:
      return nullptr;
  }
}

struct RunContext {
  const KernelJob* job;
  void (*fn)(const KernelJob&, int64_t, int);
};

void run_one(void* context, int64_t task, int slot) {
  const RunContext* c = static_cast<const RunContext*>(context);
  c->fn(*c->job, task, slot);
}

bool misaligned(const void* p, int64_t bytes) {
  return reinterpret_cast<uintptr_t>(p) % static_cast<uintptr_t>(bytes) != 0;
}

bool same_rows(const KvView& a, const KvView& b) {
  return a.data == b.data && a.type == b.type && a.stride.seq == b.stride.seq && a.stride.head == b.stride.head &&
         a.stride.row == b.stride.row && a.paging.pages == b.paging.pages &&
         a.paging.pages_per_seq == b.paging.pages_per_seq && a.paging.page_rows == b.paging.page_rows &&
         a.paging.page_bytes == b.paging.page_bytes;
}

int resolve_threads(int asked) {
  const int pool = thread_count();
  return asked <= 0 ? pool : std::min(asked, pool);
}

plan::LayoutInputs layout_inputs(const AttentionShape& s, KvType k_type, KvType v_type, int64_t n_splits,
                                 int32_t workers) {
  // Turbo V partials stay rotated until the combine, so a partial row holds stored_dim(v_type, d_v) floats.
  return plan::LayoutInputs{s.n_seq,   s.n_head_q, s.n_q, s.d_k, s.d_v, k_type, n_splits, workers,
                            scratch_floats_per_worker(k_type, v_type, s.d_k, s.d_v),
                            /*stages_q=*/false, stored_dim(v_type, s.d_v)};
}

}  // namespace

float alibi_slope_f32(double max_bias, int64_t n_head_q, int64_t head) {
  return static_cast<float>(alibi_slope<double>(max_bias, n_head_q, head));
}

int32_t key_tile() { return kKeyTile; }

int thread_count() { return ThreadPool::instance().size(); }

int64_t scratch_floats_per_worker(KvType k_type, KvType v_type, int64_t d_k, int64_t d_v) {
  (void)k_type;
  (void)v_type;
  if (d_k < 1 || d_v < 1 || d_k > kMaxHeadDim || d_v > kMaxHeadDim) return 0;
  return scratch_layout(capacity_dims(d_k, d_v)).floats;
}

Status attend(const AttentionProblem& p, const Route& route, void* workspace, size_t workspace_size, Isa isa) {
  KVFLASH_RETURN_IF_ERROR(validate(p));
  return run_validated(p, route, workspace, workspace_size, isa);
}

Status run_validated(const AttentionProblem& p, const Route& route, void* workspace, size_t workspace_size, Isa isa) {
  if (route.backend != BackendKind::cpu) {
    return invalid_argument("route.backend = " + std::string(backend_name(route.backend)) + " is not cpu");
  }
  const AttentionShape& s = p.shape;
  if (route.n_splits < 1 || route.keys_per_split < 0 ||
      (route.n_splits > 1 && (route.keys_per_split < 1 || route.n_splits * route.keys_per_split < s.n_kv))) {
    return invalid_argument("route.n_splits = " + std::to_string(route.n_splits) + " x route.keys_per_split = " +
                            std::to_string(route.keys_per_split) + " does not cover n_kv = " + std::to_string(s.n_kv));
  }
  const Dims d = dims_of(p.k.type, p.v.type, s.d_k, s.d_v);
  const ScratchLayout scratch = scratch_layout(capacity_dims(s.d_k, s.d_v));
  if (route.workers < 1 || route.scratch_floats_per_worker < scratch.floats ||
      route.layout.worker_scratch.bytes < int64_t{route.workers} * scratch.floats * 4) {
    return invalid_argument("route.scratch_floats_per_worker = " + std::to_string(route.scratch_floats_per_worker) +
                            " x route.workers = " + std::to_string(route.workers) + " is less than the " +
                            std::to_string(scratch.floats) + " floats per worker the cpu kernels need");
  }
  const int64_t split_floats = s.n_seq * s.n_head_q * s.n_q;  // validate() bounds this product
  if (route.n_splits > 1 && (route.layout.partial_o.bytes < route.n_splits * split_floats * d.dv_stored * 4 ||
                             route.layout.partial_max.bytes < route.n_splits * split_floats * 4 ||
                             route.layout.partial_sum.bytes < route.n_splits * split_floats * 4)) {
    return invalid_argument("route.layout has no room for " + std::to_string(route.n_splits) + " splits' partials");
  }
  if (static_cast<int64_t>(workspace_size) < route.workspace_bytes || workspace == nullptr ||
      misaligned(workspace, 64)) {
    return invalid_argument("cpu workspace = " + std::to_string(reinterpret_cast<uintptr_t>(workspace)) + " of " +
                            std::to_string(workspace_size) + " bytes: need a 64-byte aligned pointer to at least " +
                            std::to_string(route.workspace_bytes) + " bytes");
  }
  const Isa chosen = resolve_isa(isa);
  const IsaKernels* kernels = isa_supported(chosen) ? kernels_for(chosen) : nullptr;
  if (kernels == nullptr) {
    return unsupported("cpu isa = " + std::string(isa_name(chosen)) + " is not available on this CPU/build (" +
                       std::string(cpu_feature_string()) + ")");
  }
  // The kernels load f16/bf16/f32 elements and block scales in place.
  if (misaligned(p.q.data, 4) || misaligned(p.o.data, 4) || misaligned(p.k.data, kv_traits(p.k.type).align_bytes) ||
      misaligned(p.v.data, kv_traits(p.v.type).align_bytes)) {
    return invalid_argument("cpu backend needs q/o 4-byte aligned and k/v aligned to their type's scalar; got " +
                            describe(p));
  }

  uint8_t* base = static_cast<uint8_t*>(workspace);
  KernelJob job;
  job.problem = &p;
  job.group = s.n_head_q / s.n_head_kv;
  job.rows = job.group * s.n_q;
  job.row_tile = std::min(job.rows, d.row_tile_cap);
  job.n_row_tiles = (job.rows + job.row_tile - 1) / job.row_tile;
  job.n_splits = route.n_splits;
  job.keys_per_split = route.n_splits > 1 ? route.keys_per_split : std::max<int64_t>(s.n_kv, 1);
  job.dk_stored = d.dk_stored;
  job.dv_stored = d.dv_stored;
  job.dk_pad = d.dk_pad;
  job.dv_pad = d.dv_pad;
  job.acc_row = d.acc_row;
  job.scale = static_cast<float>(effective_scale(p));
  job.softcap = static_cast<float>(p.options.softcap);
  job.k_rotated = kv_traits(p.k.type).rotated;
  job.v_rotated = kv_traits(p.v.type).rotated;
  job.v_shares_k_tile = same_rows(p.k, p.v) && d.dv_stored <= d.dk_stored;
  job.has_alibi = p.options.alibi_max_bias > 0.0;
  job.scratch = reinterpret_cast<float*>(base + route.layout.worker_scratch.offset);
  job.scratch_stride = route.scratch_floats_per_worker;
  job.scratch_layout = scratch;
  if (route.n_splits > 1) {
    job.partial_o = reinterpret_cast<float*>(base + route.layout.partial_o.offset);
    job.partial_max = reinterpret_cast<float*>(base + route.layout.partial_max.offset);
    job.partial_sum = reinterpret_cast<float*>(base + route.layout.partial_sum.offset);
  }
  job.n_attend_tasks = s.n_seq * s.n_head_kv * job.n_row_tiles * route.n_splits;
  job.n_combine_tasks = s.n_seq * s.n_head_kv * ((job.rows + kCombineRows - 1) / kCombineRows);

  ThreadPool& pool = ThreadPool::instance();
  RunContext attend_run{&job, kernels->attend_task};
  pool.run(job.n_attend_tasks, route.workers, run_one, &attend_run);
  if (route.n_splits > 1) {
    RunContext combine_run{&job, kernels->combine_task};
    pool.run(job.n_combine_tasks, route.workers, run_one, &combine_run);
  }
  return Status::Ok();
}

int64_t workspace_bytes(const AttentionShape& shape, KvType k_type, KvType v_type, int n_splits, int n_threads) {
  if (n_splits < 1) return -1;
  return plan::layout_workspace(layout_inputs(shape, k_type, v_type, n_splits, resolve_threads(n_threads)), nullptr);
}

StatusOr<Route> make_route(const AttentionProblem& p, const LaunchParams& launch) {
  if (launch.n_splits < 1) {
    return invalid_argument("cpu launch n_splits = " + std::to_string(launch.n_splits) + " is less than 1");
  }
  if (launch.n_threads < 0) {
    return invalid_argument("cpu launch n_threads = " + std::to_string(launch.n_threads) + " is negative");
  }
  const AttentionShape& s = p.shape;
  Route r;
  r.backend = BackendKind::cpu;
  r.kernel = KernelId::cpu_generic;
  r.kv_tile = kKeyTile;
  r.n_splits = launch.n_splits;
  const int64_t tiles = (s.n_kv + kKeyTile - 1) / kKeyTile;
  r.keys_per_split = (tiles + launch.n_splits - 1) / launch.n_splits * kKeyTile;
  r.workers = resolve_threads(launch.n_threads);
  r.scratch_floats_per_worker = scratch_floats_per_worker(p.k.type, p.v.type, s.d_k, s.d_v);
  r.workspace_bytes =
      plan::layout_workspace(layout_inputs(s, p.k.type, p.v.type, launch.n_splits, r.workers), &r.layout);
  if (r.workspace_bytes < 0) {
    return invalid_argument("cpu workspace overflows int64 bytes (n_splits = " + std::to_string(launch.n_splits) +
                            ", " + describe(p) + ")");
  }
  return r;
}

Status attend(const AttentionProblem& p, const LaunchParams& launch, void* workspace, size_t workspace_size) {
  KVFLASH_RETURN_IF_ERROR(validate(p));
  StatusOr<Route> route = make_route(p, launch);
  if (!route.ok()) return route.status();
  return attend(p, *route, workspace, workspace_size, launch.isa);
}

}  // namespace cpu
}  // namespace kvflash
