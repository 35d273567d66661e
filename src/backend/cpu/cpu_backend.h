// The fast CPU backend: attention over quantized K/V read in their stored format, split across a persistent
// thread pool, with SIMD chosen at run time. The planner's dispatch calls attend() with a Route; the workspace
// (laid out by the planner: split-KV partials, then per-worker scratch sized by scratch_floats_per_worker()) holds
// every temporary, so a call allocates nothing.
#pragma once

#include <cstddef>
#include <cstdint>

#include "backend/cpu/isa.h"
#include "kvflash/attention_problem.h"
#include "kvflash/kv_type.h"
#include "kvflash/route.h"
#include "kvflash/status.h"

namespace kvflash::cpu {

/// Keys per tile of every cpu kernel (the Route's kv_tile; splits hold whole tiles).
int32_t key_tile();

/// Threads of the persistent pool (created on first use: hardware_concurrency(), or KVFLASH_NUM_THREADS).
int thread_count();

/// float32 scratch one worker needs for these K/V types and head dims (what Scratch::cpu_tiles rows reserve).
int64_t scratch_floats_per_worker(KvType k_type, KvType v_type, int64_t d_k, int64_t d_v);

/// Runs `p` along a cpu route that plan_route() made for it. `workspace` holds route.workspace_bytes laid out as
/// route.layout says. The result is deterministic for a given route (split boundaries and the combine order are
/// fixed; each task writes its own rows), whatever the scheduling. `isa` best: the widest this CPU runs.
/// Checks `p` with validate() first (which builds field names as it goes, so this entry may allocate there).
Status attend(const AttentionProblem& p, const Route& route, void* workspace, size_t workspace_size,
              Isa isa = Isa::best);

/// attend() for a problem the caller has already validated (the planner's dispatch does): checks only the route,
/// the workspace and the pointers' alignment, then runs. Allocates nothing.
Status run_validated(const AttentionProblem& p, const Route& route, void* workspace, size_t workspace_size,
                     Isa isa = Isa::best);

/// A cpu launch without the planner, for tests and benchmarks that pin the split count, the threads or the ISA.
struct LaunchParams {
  int n_splits = 1;   // parts of each sequence's key range (whole tiles each), merged by the exact combine
  int n_threads = 0;  // workers, the caller included; 0: the pool's size
  Isa isa = Isa::best;
};

/// Bytes of workspace attend(p, launch, ...) needs; -1 when a size overflows (attend() then names the field).
int64_t workspace_bytes(const AttentionShape& shape, KvType k_type, KvType v_type, int n_splits, int n_threads = 0);

/// The route attend(p, launch, ...) runs: the generic kernel with the given splits and workers.
StatusOr<Route> make_route(const AttentionProblem& p, const LaunchParams& launch);

/// Runs `p` with make_route(p, launch) on `workspace` (at least workspace_bytes(...) bytes, 64-byte aligned).
Status attend(const AttentionProblem& p, const LaunchParams& launch, void* workspace, size_t workspace_size);

}  // namespace kvflash::cpu
