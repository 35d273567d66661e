// The fast CPU backend: attention over quantized K/V read in their stored format, split across a persistent
// thread pool, with SIMD chosen at run time. The planner's dispatch calls attend(); workspace_bytes() sizes the
// caller-given workspace, which holds every temporary (per-thread scratch included): a call allocates nothing.
#pragma once

#include <cstddef>
#include <cstdint>

#include "backend/cpu/isa.h"
#include "kvflash/attention_problem.h"
#include "kvflash/kv_type.h"
#include "kvflash/status.h"

namespace kvflash::cpu {

/// How one call is cut into work. For the same problem and the same n_splits the output is bitwise the same
/// whatever the thread count and scheduling: every task writes its own rows and the combine merges the splits in
/// a fixed order.
struct LaunchParams {
  int n_splits = 1;   // parts each sequence's key range is cut into (merged by an exact log-sum-exp combine)
  int n_threads = 0;  // participants, the caller included; 0: the whole pool
  Isa isa = Isa::best;
};

/// Largest n_splits attend() accepts.
inline constexpr int kMaxSplits = 1024;

/// Threads of the persistent pool (created on first use; KVFLASH_NUM_THREADS overrides the core count).
int thread_count();

/// Bytes of workspace attend() needs for this shape, split count, K/V types and thread count (n_threads 0: the
/// pool's size). -1 when the shape or counts are out of range (attend() then names the field).
int64_t workspace_bytes(const AttentionShape& shape, int n_splits, KvType k_type, KvType v_type, int n_threads = 0);

/// A split count that keeps every thread busy on one call: enough (sequence, KV head, split) tasks for the pool,
/// without splitting keys finer than a few hundred per part.
int suggested_splits(const AttentionShape& shape, int n_threads = 0);

/// Runs the problem on the host. All pointers are host pointers; `workspace` holds at least
/// workspace_bytes(p.shape, launch.n_splits, p.k.type, p.v.type, launch.n_threads) bytes (any alignment).
/// Writes every element of O. Returns invalid_argument (naming the field) for a problem validate() rejects, a
/// launch out of range, or a workspace that is missing or too small; unsupported for an ISA this CPU lacks.
Status attend(const AttentionProblem& p, const LaunchParams& launch, void* workspace, size_t workspace_size);

}  // namespace kvflash::cpu
