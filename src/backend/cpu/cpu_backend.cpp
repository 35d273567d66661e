#include "backend/cpu/cpu_backend.h"

#include <algorithm>
#include <string>

#include "backend/cpu/kernel_job.h"
#include "backend/cpu/thread_pool.h"

namespace kvflash::cpu {

namespace {

constexpr int64_t kAlign = 64;          // bytes: every workspace region starts on a cache line
constexpr int64_t kFloatsPerLine = 16;  // floats in kAlign bytes
// No single region may exceed this; keeps every size product far from int64 overflow.
constexpr int64_t kMaxRegionFloats = int64_t{1} << 56;

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// Everything about a call's shape that fixes the sizes and offsets of its workspace.
struct Geometry {
  int64_t group = 1, rows = 1, row_tile = 1, n_row_tiles = 1;
  int64_t dk_stored = 0, dv_stored = 0, dk_pad = 0, dv_pad = 0, partial_row = 0;
  ScratchLayout scratch;
  int64_t slopes_floats = 0;    // [n_head_q] ALiBi slopes
  int64_t partials_floats = 0;  // split-KV partial rows
  int64_t total_bytes = 0;      // with the slack to align an arbitrary base pointer
};

// Saturating product for sizes (inputs are non-negative).
int64_t mul_sat(int64_t a, int64_t b) {
  if (a == 0 || b == 0) return 0;
  return a > kMaxRegionFloats / b ? kMaxRegionFloats : a * b;
}

bool plan_geometry(const AttentionShape& s, int n_splits, KvType k_type, KvType v_type, int n_threads, Geometry* g) {
  if (s.n_seq < 1 || s.n_q < 1 || s.n_kv < 0 || s.n_head_q < 1 || s.n_head_kv < 1 || s.d_k < 1 || s.d_v < 1 ||
      s.d_k > kMaxHeadDim || s.d_v > kMaxHeadDim || s.n_head_q % s.n_head_kv != 0 || n_splits < 1 ||
      n_splits > kMaxSplits || n_threads < 1) {
    return false;
  }
  g->group = s.n_head_q / s.n_head_kv;
  g->rows = mul_sat(g->group, s.n_q);
  g->dk_stored = stored_dim(k_type, s.d_k);
  g->dv_stored = stored_dim(v_type, s.d_v);
  g->dk_pad = round_up(g->dk_stored, kDimPad);
  g->dv_pad = round_up(g->dv_stored, kDimPad);
  g->partial_row = g->dv_pad + kPartialStats;
  // A task's accumulators stay within ~256 KiB (L2), and up to 128 rows (8 query heads x 16 rows of a decode step)
  // share one pass over the keys.
  const int64_t row_cap = std::clamp<int64_t>(65536 / g->partial_row, 4, 128);
  g->row_tile = std::min(g->rows, row_cap);
  g->n_row_tiles = (g->rows + g->row_tile - 1) / g->row_tile;

  ScratchLayout& L = g->scratch;
  int64_t at = 0;
  const auto region = [&at](int64_t floats) {
    const int64_t start = at;
    at += round_up(floats, kFloatsPerLine);
    return start;
  };
  L.places = region(g->row_tile * kRowPlaceFloats);
  L.q = region(g->row_tile * g->dk_pad);
  L.scores = region(g->row_tile * kKeyTile);
  L.alpha = region(g->row_tile);
  L.acc = region(g->row_tile * g->partial_row);
  L.k_tile = region(kKeyTile * g->dk_pad);
  L.v_tile = region(kKeyTile * g->dv_pad);
  L.out = region(g->dv_pad);
  L.floats = at;

  g->slopes_floats = round_up(s.n_head_q, kFloatsPerLine);
  g->partials_floats =
      n_splits > 1 ? mul_sat(mul_sat(mul_sat(s.n_seq * s.n_head_kv, n_splits), g->rows), g->partial_row) : 0;
  const int64_t floats = g->slopes_floats + g->partials_floats + mul_sat(L.floats, n_threads);
  if (floats >= kMaxRegionFloats) return false;
  g->total_bytes = floats * 4 + kAlign;
  return true;
}

int resolve_threads(int asked) {
  const int pool = thread_count();
  return asked <= 0 ? pool : std::min(asked, pool);
}

const IsaKernels* kernels_for(Isa isa) {
  switch (isa) {
    case Isa::portable: return &portable_kernels();
#if defined(KVFLASH_CPU_HAVE_AVX2)
    case Isa::avx2: return &avx2_kernels();
#endif
#if defined(KVFLASH_CPU_HAVE_AVX512)
    case Isa::avx512: return &avx512_kernels();
#endif
    default: return nullptr;
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

bool misaligned(const void* p, int64_t bytes) { return reinterpret_cast<uintptr_t>(p) % static_cast<uintptr_t>(bytes) != 0; }

}  // namespace

int thread_count() { return ThreadPool::instance().size(); }

int64_t workspace_bytes(const AttentionShape& shape, int n_splits, KvType k_type, KvType v_type, int n_threads) {
  Geometry g;
  if (!plan_geometry(shape, n_splits, k_type, v_type, resolve_threads(n_threads), &g)) return -1;
  return g.total_bytes;
}

int suggested_splits(const AttentionShape& shape, int n_threads) {
  const int64_t threads = resolve_threads(n_threads);
  const int64_t tasks = std::max<int64_t>(shape.n_seq * shape.n_head_kv, 1);
  // Two tasks per thread absorb uneven progress (the machine is shared); a part keeps >= 256 keys so the merge
  // stays negligible next to the pass over the keys.
  const int64_t want = (2 * threads + tasks - 1) / tasks;
  const int64_t most = std::max<int64_t>(shape.n_kv / 256, 1);
  return static_cast<int>(std::clamp<int64_t>(std::min(want, most), 1, kMaxSplits));
}

Status attend(const AttentionProblem& p, const LaunchParams& launch, void* workspace, size_t workspace_size) {
  KVFLASH_RETURN_IF_ERROR(validate(p));
  if (launch.n_splits < 1 || launch.n_splits > kMaxSplits) {
    return invalid_argument("cpu launch n_splits = " + std::to_string(launch.n_splits) + " is outside [1, " +
                            std::to_string(kMaxSplits) + "]");
  }
  if (launch.n_threads < 0) {
    return invalid_argument("cpu launch n_threads = " + std::to_string(launch.n_threads) + " is negative");
  }
  const Isa isa = resolve_isa(launch.isa);
  const IsaKernels* kernels = isa_supported(isa) ? kernels_for(isa) : nullptr;
  if (kernels == nullptr) {
    return unsupported("cpu launch isa = " + std::string(isa_name(isa)) + " is not available on this CPU/build (" +
                       std::string(cpu_feature_string()) + ")");
  }
  // The kernels load f16/bf16/f32 elements and block scales in place.
  if (misaligned(p.q.data, 4) || misaligned(p.o.data, 4) || misaligned(p.k.data, kv_traits(p.k.type).align_bytes) ||
      misaligned(p.v.data, kv_traits(p.v.type).align_bytes)) {
    return invalid_argument("cpu backend needs q/o 4-byte aligned and k/v aligned to their type's scalar; got " +
                            describe(p));
  }

  const int n_threads = resolve_threads(launch.n_threads);
  Geometry g;
  if (!plan_geometry(p.shape, launch.n_splits, p.k.type, p.v.type, n_threads, &g)) {
    return invalid_argument("cpu backend cannot size a workspace for " + describe(p));
  }
  if (workspace == nullptr || static_cast<int64_t>(workspace_size) < g.total_bytes) {
    return invalid_argument("cpu workspace_bytes = " + std::to_string(workspace_size) + (workspace ? "" : " (null)") +
                            " is smaller than the " + std::to_string(g.total_bytes) + " bytes this call needs (n_splits = " +
                            std::to_string(launch.n_splits) + ", n_threads = " + std::to_string(n_threads) + ")");
  }
  const uintptr_t base_address = reinterpret_cast<uintptr_t>(workspace);
  float* base = reinterpret_cast<float*>((base_address + kAlign - 1) / kAlign * kAlign);

  KernelJob job;
  job.problem = &p;
  job.group = g.group;
  job.rows = g.rows;
  job.row_tile = g.row_tile;
  job.n_row_tiles = g.n_row_tiles;
  job.n_splits = launch.n_splits;
  job.dk_stored = g.dk_stored;
  job.dv_stored = g.dv_stored;
  job.dk_pad = g.dk_pad;
  job.dv_pad = g.dv_pad;
  job.partial_row = g.partial_row;
  job.scale = static_cast<float>(effective_scale(p));
  job.softcap = static_cast<float>(p.options.softcap);
  job.k_rotated = kv_traits(p.k.type).rotated;
  job.v_rotated = kv_traits(p.v.type).rotated;
  job.v_shares_k_tile = p.v.data == p.k.data && p.v.type == p.k.type && p.v.stride.seq == p.k.stride.seq &&
                        p.v.stride.head == p.k.stride.head && p.v.stride.row == p.k.stride.row &&
                        p.v.paging.pages == p.k.paging.pages && p.v.paging.pages_per_seq == p.k.paging.pages_per_seq &&
                        p.v.paging.page_rows == p.k.paging.page_rows && p.v.paging.page_bytes == p.k.paging.page_bytes &&
                        g.dv_stored <= g.dk_stored;
  float* slopes = base;
  if (p.options.alibi_max_bias > 0.0) {
    for (int64_t h = 0; h < p.shape.n_head_q; ++h) {
      slopes[h] = static_cast<float>(alibi_slope<double>(p.options.alibi_max_bias, p.shape.n_head_q, h));
    }
    job.alibi_slopes = slopes;
  }
  job.partials = launch.n_splits > 1 ? base + g.slopes_floats : nullptr;
  job.scratch = base + g.slopes_floats + g.partials_floats;
  job.scratch_layout = g.scratch;
  job.n_attend_tasks = p.shape.n_seq * p.shape.n_head_kv * g.n_row_tiles * launch.n_splits;
  job.n_combine_tasks = p.shape.n_seq * p.shape.n_head_kv * ((g.rows + kCombineRows - 1) / kCombineRows);

  ThreadPool& pool = ThreadPool::instance();
  RunContext attend_run{&job, kernels->attend_task};
  pool.run(job.n_attend_tasks, n_threads, run_one, &attend_run);
  if (launch.n_splits > 1) {
    RunContext combine_run{&job, kernels->combine_task};
    pool.run(job.n_combine_tasks, n_threads, run_one, &combine_run);
  }
  return Status::Ok();
}

}  // namespace kvflash::cpu
