// What `kvflash bench` measures: a real paged KV cache built through the KvCache API at a depth, then decode steps
// and prefill chunks timed through plan_route() + attend() on a backend.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "kvflash/backend.h"
#include "kvflash/device_memory.h"
#include "kvflash/kv_type.h"
#include "kvflash/model.h"
#include "kvflash/status.h"

namespace kvflash::cli {

/// One line of the results: one kind of step at one depth for one K/V type pair.
struct BenchRow {
  std::string backend, ktype, vtype;
  std::string kind;   // "decode" | "prefill"
  int64_t depth = 0;  // tokens in the cache before the step
  int64_t n_q = 0;    // query rows per sequence per step
  int64_t n_seq = 0;  // sequences per step
  int samples = 0;    // timed steps the statistics come from
  double us_median = 0, us_min = 0, us_max = 0;
  double caller_cpu_us_median = 0;  // CPU time of the calling thread per step; with -t 1, the whole step's work;
                                    // cuda: the host's cost of attend() (validation and launches)
  double tokens_per_s = 0;      // n_seq * n_q / median
  int64_t kv_bytes = 0;         // K/V bytes one step reads (each stored row of every visible key once)
  double kv_gbps = 0;           // kv_bytes / median
  double read_bw_gbps = 0;      // cpu/ref: the host's measured read bandwidth; cuda: the device copy bandwidth
                                // (read + write bytes of a device-to-device copy); measured once per run
  double pct_read_bw = 0;       // kv_gbps / read_bw_gbps
  double tflops = 0;            // attention FLOP per step / median (README "kvflash bench" gives the formula)
  int64_t kv_cache_bytes = 0;   // the cache's bytes (cuda: the MemoryReport's kv_cache buckets)
  int64_t workspace_bytes = 0;  // host: the largest workspace a step's route asked for; cuda: plan_workspace()'s
  int64_t peak_bytes = 0;       // host: kv_cache_bytes + workspace_bytes; cuda: the allocator's peak live bytes
                                // over the case (cache, page tables, workspace, staging, the bench's Q and O)
  int64_t rss_peak_bytes = 0;   // the process's peak resident set so far (getrusage)
  std::string kernel;           // the route's kernel
  int64_t n_splits = 0;         // the route's split count at the last timed step
  int threads = 0;
  std::string timing;           // what us_* measure: "wall" (host backends), "device" or "launch" (cuda; DeviceTiming)
};

/// What the CUDA events of `kvflash bench --backend cuda` bracket. Both evict the L2 before each step, as the other
/// layers of a model would between two steps of one layer.
enum class DeviceTiming {
  device,  // the stream is held until the host has enqueued the call: the device's work for it, back to back
  launch,  // the device idle when the call starts: also the host's validation and launch latency
};

/// What to time on each cache.
struct StepPlan {
  std::vector<int64_t> decode_rows;     // query rows per decode step (1: plain decode; 4: verify 4 drafted tokens)
  int64_t decode_steps = 16;            // decode steps per repetition, each appending its rows to the cache
  std::vector<int64_t> prefill_chunks;  // tokens per prefill step
  int reps = 3;                         // repetitions; the cache is truncated back to the depth after each
};

struct CacheCase {
  KvType k_type = KvType::f16, v_type = KvType::f16;
  int64_t depth = 0;
  int64_t n_seq = 1;
  int64_t page_rows = 16;  // tokens per page of the cache (KvCacheConfig's default)
};

/// Where progress lines go (stderr in the CLI).
using ProgressFn = std::function<void(const std::string&)>;

/// How the cuda backend runs a case: its allocator (required) and what the events bracket.
struct DeviceBenchOptions {
  DeviceAllocator* allocator = nullptr;
  DeviceTiming timing = DeviceTiming::device;
};

/// Builds the cache of `c` for one attention layer of `layer` (V a view of K when `v_is_view_of_k`), appends
/// `depth` tokens of random K/V to each sequence through KvCache::append, then times every step of `plan` on
/// `backend` with `threads` workers (0: all). One row per step kind. For cuda the cache is device-resident, its
/// arena, page tables, the workspace (sized by plan_workspace(), the same pointer every step) and Q/O come from
/// `device.allocator` (required), and steps are timed with CUDA events as `device.timing` says; `read_bw_gbps` is
/// then the device copy bandwidth.
StatusOr<std::vector<BenchRow>> bench_cache(const LayerShape& layer, bool v_is_view_of_k, const CacheCase& c,
                                            const StepPlan& plan, BackendKind backend, int threads, double read_bw_gbps,
                                            const ProgressFn& progress, const DeviceBenchOptions& device = {});

/// Attention FLOP of one step: 2 (multiply + add) x n_head_q x (d_k + d_v) x the (query row, key) pairs the causal
/// mask lets through, where query row i of n_q (bottom-right aligned) sees depth + i + 1 keys; times n_seq.
double step_flop(const LayerShape& layer, int64_t depth, int64_t n_q, int64_t n_seq);

/// The machine's read bandwidth in GB/s: `threads` threads each summing a slice of a 512 MiB buffer, best of three
/// passes (0 threads: hardware_concurrency()).
double measure_read_bandwidth_gbps(int threads);

}  // namespace kvflash::cli
