#include "bench_runner.h"

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <ctime>
#include <memory>
#include <thread>

#include "kvcache/device_transfer.h"
#include "kvflash/attention.h"
#include "kvflash/kv_cache.h"
#include "kvflash/route.h"
#include "kvflash/workspace.h"

namespace kvflash::cli {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// CPU time of the calling thread: with -t 1 it is all the work of a step, whatever else shares the machine.
double thread_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

int64_t rss_peak_bytes() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<int64_t>(ru.ru_maxrss) * 1024;  // Linux reports KiB
}

// K/V/Q values: uniform in [-1, 1) from xorshift64*, with every 16th channel scaled x8 (the outlier channels real
// keys have). The values do not change the timing; they only have to be finite and varied.
class RandomRows {
 public:
  explicit RandomRows(uint64_t seed) : state_(seed * 0x9E3779B97F4A7C15ull + 1) {}
  void fill(std::vector<float>& out, int64_t dim) {
    for (size_t i = 0; i < out.size(); ++i) {
      state_ ^= state_ >> 12;
      state_ ^= state_ << 25;
      state_ ^= state_ >> 27;
      const uint64_t r = state_ * 0x2545F4914F6CDD1Dull;
      const float u = static_cast<float>(r >> 40) * (2.0f / 16777216.0f) - 1.0f;
      out[i] = (static_cast<int64_t>(i) % dim) % 16 == 5 ? 8.0f * u : u;
    }
  }

 private:
  uint64_t state_;
};

// K/V bytes one step reads: each stored row of every visible key once (no V term when V is a view of K).
int64_t kv_bytes_read(const LayerShape& layer, bool v_is_view_of_k, KvType k, KvType v,
                      const std::vector<int32_t>& kv_len) {
  int64_t keys = 0;
  for (int32_t len : kv_len) keys += len;
  const int64_t k_row = head_row_bytes(k, layer.d_k);
  const int64_t v_row = v_is_view_of_k ? 0 : head_row_bytes(v, layer.d_v);
  return keys * layer.n_head_kv * (k_row + v_row);
}

// Attention FLOP of a step whose n_q rows are the last of each sequence.
double flop_of(const LayerShape& layer, int64_t n_q, const std::vector<int32_t>& kv_len) {
  double flop = 0;
  for (int32_t len : kv_len) flop += step_flop(layer, len - n_q, n_q, 1);
  return flop;
}

// A workspace buffer that grows (between timed calls) to what the largest route asks for.
class Workspace {
 public:
  void reserve(int64_t bytes) {
    if (bytes <= size_) return;
    storage_ = std::make_unique<std::byte[]>(static_cast<size_t>(bytes + kWorkspaceAlign));
    const uintptr_t at = reinterpret_cast<uintptr_t>(storage_.get());
    aligned_ = reinterpret_cast<void*>((at + kWorkspaceAlign - 1) / kWorkspaceAlign * kWorkspaceAlign);
    size_ = bytes;
    std::memset(aligned_, 0, static_cast<size_t>(bytes));  // resident before timing
  }
  void* data() const { return aligned_; }
  int64_t size() const { return size_; }

 private:
  std::unique_ptr<std::byte[]> storage_;
  void* aligned_ = nullptr;
  int64_t size_ = 0;
};

// The cache of a case: one layer, room for the depth plus the largest step of the plan.
KvCacheConfig cache_config(const LayerShape& layer, bool v_is_view_of_k, const CacheCase& c, const StepPlan& plan,
                           KvResidence residence) {
  int64_t extra = 1;
  for (int64_t rows : plan.decode_rows) extra = std::max(extra, rows * (plan.decode_steps + 1));
  for (int64_t chunk : plan.prefill_chunks) extra = std::max(extra, chunk);
  KvCacheConfig config;
  config.n_layers = 1;
  config.n_head_kv = layer.n_head_kv;
  config.d_k = layer.d_k;
  config.d_v = layer.d_v;
  config.k_type = c.k_type;
  config.v_type = v_is_view_of_k ? c.k_type : c.v_type;
  config.page_rows = c.page_rows;
  config.max_sequences = c.n_seq;
  config.max_seq_tokens = c.depth + extra;
  config.capacity_tokens = c.n_seq * (c.depth + extra);
  config.residence = residence;
  return config;
}

// Appends n_tokens tokens of random K/V to every sequence (in chunks, through KvCache::append).
Status append_random(KvCache& cache, const std::vector<SeqId>& seqs, const LayerShape& layer, int64_t n_tokens,
                     RandomRows& rows, std::vector<float>& k_rows, std::vector<float>& v_rows) {
  constexpr int64_t kChunk = 1024;
  for (SeqId seq : seqs) {
    for (int64_t done = 0; done < n_tokens; done += kChunk) {
      const int64_t n = std::min(kChunk, n_tokens - done);
      k_rows.resize(static_cast<size_t>(n * layer.n_head_kv * layer.d_k));
      v_rows.resize(static_cast<size_t>(n * layer.n_head_kv * layer.d_v));
      rows.fill(k_rows, layer.d_k);
      rows.fill(v_rows, layer.d_v);
      KVFLASH_RETURN_IF_ERROR(cache.append(seq, k_rows, v_rows, n));
    }
  }
  return Status::Ok();
}

// One timed step.
struct Sample {
  double seconds;
  double cpu_seconds;  // the calling thread's (0 for cuda: the host only launches)
  int64_t kv_bytes;
  double flop;
};

// Everything one cache case needs while it is measured on a host backend.
class CaseRunner {
 public:
  CaseRunner(const LayerShape& layer, bool v_is_view_of_k, const CacheCase& c, BackendKind backend, int threads)
      : layer_(layer), v_view_(v_is_view_of_k), case_(c), rows_(1234 + c.depth) {
    caps_ = caps_for(backend);
    if (threads > 0) caps_.threads = threads;
  }

  Status build(const StepPlan& plan) {
    StatusOr<KvCache> cache = KvCache::create(cache_config(layer_, v_view_, case_, plan, KvResidence::host));
    if (!cache.ok()) return cache.status();
    cache_ = std::make_unique<KvCache>(std::move(*cache));
    for (int64_t s = 0; s < case_.n_seq; ++s) {
      StatusOr<SeqId> seq = cache_->add_sequence();
      if (!seq.ok()) return seq.status();
      seqs_.push_back(*seq);
    }
    table_.resize(static_cast<size_t>(case_.n_seq * cache_->max_pages_per_seq()));
    kv_len_.resize(static_cast<size_t>(case_.n_seq));
    return append(case_.depth);
  }

  Status append(int64_t n_tokens) { return append_random(*cache_, seqs_, layer_, n_tokens, rows_, k_rows_, v_rows_); }
  // The host runner draws Q once per width: its timings do not depend on the values.
  Status new_queries(int64_t) { return Status::Ok(); }

  Status truncate_to_depth() {
    for (SeqId seq : seqs_) KVFLASH_RETURN_IF_ERROR(cache_->truncate(seq, case_.depth));
    return Status::Ok();
  }

  // One timed step over the whole cache with n_q new query rows per sequence (already appended). A warm-up step
  // (timed = false) is timed the same way on the host.
  StatusOr<Sample> step(int64_t n_q, bool /*timed*/) {
    StatusOr<int64_t> n_kv = cache_->fill_batch(seqs_, cache_->max_pages_per_seq(), table_, kv_len_);
    if (!n_kv.ok()) return n_kv.status();
    StatusOr<KvView> k = cache_->k_view(0, table_.data(), cache_->max_pages_per_seq());
    if (!k.ok()) return k.status();
    StatusOr<KvView> v = v_view_ ? k : cache_->v_view(0, table_.data(), cache_->max_pages_per_seq());
    if (!v.ok()) return v.status();
    const AttentionShape shape{case_.n_seq, n_q, *n_kv, layer_.n_head_q, layer_.n_head_kv, layer_.d_k, layer_.d_v};
    const size_t q_count = static_cast<size_t>(shape.n_seq * shape.n_head_q * n_q * shape.d_k);
    if (q_.size() != q_count) {
      q_.resize(q_count);
      rows_.fill(q_, shape.d_k);
    }
    o_.resize(static_cast<size_t>(shape.n_seq * shape.n_head_q * n_q * shape.d_v));
    AttentionProblem p;
    p.shape = shape;
    p.q = {q_.data(), {shape.n_head_q * n_q * shape.d_k * 4, n_q * shape.d_k * 4, shape.d_k * 4}};
    p.o = {o_.data(), {shape.n_head_q * n_q * shape.d_v * 4, n_q * shape.d_v * 4, shape.d_v * 4}};
    p.k = *k;
    p.v = *v;
    p.options.causal = true;
    p.kv_len = kv_len_.data();
    StatusOr<Route> route = plan_route(p, caps_);
    if (!route.ok()) return route.status();
    workspace_.reserve(route->workspace_bytes);
    kernel_ = std::string(kernel_name(route->kernel));
    n_splits_ = route->n_splits;
    workers_ = route->workers;
    const double cpu_start = thread_cpu_seconds();
    const Clock::time_point start = Clock::now();
    const Status s = attend(p, *route, workspace_.data(), static_cast<size_t>(workspace_.size()));
    const double seconds = seconds_since(start);
    const double cpu_seconds = thread_cpu_seconds() - cpu_start;
    if (!s.ok()) return s;
    return Sample{seconds, cpu_seconds, kv_bytes_read(layer_, v_view_, p.k.type, p.v.type, kv_len_),
                  flop_of(layer_, n_q, kv_len_)};
  }

  int64_t cache_bytes() const { return cache_->bytes(); }
  int64_t workspace_bytes() const { return workspace_.size(); }
  int64_t peak_bytes() const { return cache_bytes() + workspace_bytes(); }
  const std::string& kernel() const { return kernel_; }
  int64_t n_splits() const { return n_splits_; }
  int workers() const { return workers_; }
  const char* timing() const { return "wall"; }

 private:
  LayerShape layer_;
  bool v_view_;
  CacheCase case_;
  BackendCaps caps_;
  RandomRows rows_;
  std::unique_ptr<KvCache> cache_;
  std::vector<SeqId> seqs_;
  std::vector<int32_t> table_, kv_len_;
  std::vector<float> k_rows_, v_rows_, q_, o_;
  Workspace workspace_;
  std::string kernel_;
  int64_t n_splits_ = 0;
  int workers_ = 0;
};

// Everything one cache case needs on the cuda backend: a device-resident cache, and Q, O and the workspace from
// the same allocator, so its peak covers every device byte of the case. Steps are timed with CUDA events around
// attend(), after a read of a buffer twice the L2's size (the step's K/V come from HBM, as in a model whose other
// layers ran since this layer's last step) and, with DeviceTiming::device, behind a StreamGate, so the events
// bracket the device's work for the call and not the host's validation and launch latency (attend()'s host time is
// reported on its own, as caller_cpu_us).
class DeviceCaseRunner {
 public:
  DeviceCaseRunner(const LayerShape& layer, bool v_is_view_of_k, const CacheCase& c, const DeviceBenchOptions& options)
      : layer_(layer),
        v_view_(v_is_view_of_k),
        case_(c),
        allocator_(*options.allocator),
        timing_(options.timing),
        rows_(1234 + c.depth) {
    caps_ = caps_for(BackendKind::cuda);
  }

  Status build(const StepPlan& plan) {
    allocator_.reset_peak();
    // The eviction buffer is the bench's, not the case's: peak_bytes() leaves it out.
    StatusOr<int64_t> l2 = kvcache::device_l2_bytes();
    if (!l2.ok()) return l2.status();
    StatusOr<DeviceBuffer> evict =
        DeviceBuffer::allocate(allocator_, "bench.l2_eviction", MemoryKind::other, std::max<int64_t>(2 * *l2, 1 << 20));
    if (!evict.ok()) return evict.status();
    l2_eviction_ = std::move(*evict);
    StatusOr<kvcache::StreamGate> gate = kvcache::StreamGate::create();
    if (!gate.ok()) return gate.status();
    gate_ = std::make_unique<kvcache::StreamGate>(std::move(*gate));
    StatusOr<kvcache::DeviceStream> stream = kvcache::DeviceStream::create();
    if (!stream.ok()) return stream.status();
    stream_ = std::make_unique<kvcache::DeviceStream>(std::move(*stream));
    const KvCacheConfig config = cache_config(layer_, v_view_, case_, plan, KvResidence::cuda);
    StatusOr<KvCache> cache = KvCache::create(config, &allocator_);
    if (!cache.ok()) return cache.status();
    cache_ = std::make_unique<KvCache>(std::move(*cache));
    for (int64_t s = 0; s < case_.n_seq; ++s) {
      StatusOr<SeqId> seq = cache_->add_sequence();
      if (!seq.ok()) return seq.status();
      seqs_.push_back(*seq);
    }
    int64_t max_rows = 1;
    for (int64_t rows : plan.decode_rows) max_rows = std::max(max_rows, rows);
    for (int64_t chunk : plan.prefill_chunks) max_rows = std::max(max_rows, chunk);
    // The workspace every step uses, sized once for the largest step over what this cache can hold (seed 003).
    WorkspaceLimits limits;
    limits.max_sequences = case_.n_seq;
    limits.max_query_rows = case_.n_seq * max_rows;
    limits.kv_capacity_tokens = config.max_seq_tokens;
    limits.model.name = "bench";
    limits.model.layers = {layer_};
    limits.model.v_is_view_of_k = v_view_;
    limits.k_type = config.k_type;
    limits.v_type = config.v_type;
    limits.caps = caps_;
    StatusOr<WorkspacePlan> ws = plan_workspace(limits);
    if (!ws.ok()) return ws.status();
    if (ws->total_bytes > 0) {
      StatusOr<DeviceBuffer> buffer =
          DeviceBuffer::allocate(allocator_, "workspace", MemoryKind::workspace, ws->total_bytes);
      if (!buffer.ok()) return buffer.status();
      workspace_ = std::move(*buffer);
    }
    const int64_t q_floats = case_.n_seq * layer_.n_head_q * max_rows * layer_.d_k;
    const int64_t o_floats = case_.n_seq * layer_.n_head_q * max_rows * layer_.d_v;
    StatusOr<DeviceBuffer> q = DeviceBuffer::allocate(allocator_, "bench.q", MemoryKind::other, q_floats * 4);
    if (!q.ok()) return q.status();
    q_ = std::move(*q);
    StatusOr<DeviceBuffer> o = DeviceBuffer::allocate(allocator_, "bench.o", MemoryKind::other, o_floats * 4);
    if (!o.ok()) return o.status();
    o_ = std::move(*o);
    StatusOr<kvcache::DeviceEventTimer> timer = kvcache::DeviceEventTimer::create();
    if (!timer.ok()) return timer.status();
    timer_ = std::make_unique<kvcache::DeviceEventTimer>(std::move(*timer));
    KVFLASH_RETURN_IF_ERROR(append(case_.depth));
    allocations_after_build_ = allocator_.stats().allocation_calls;
    return Status::Ok();
  }

  Status append(int64_t n_tokens) { return append_random(*cache_, seqs_, layer_, n_tokens, rows_, k_rows_, v_rows_); }
  Status truncate_to_depth() {
    for (SeqId seq : seqs_) KVFLASH_RETURN_IF_ERROR(cache_->truncate(seq, case_.depth));
    return Status::Ok();
  }

  // Fresh random Q for n_q rows per sequence, uploaded (untimed) before each repetition set.
  Status new_queries(int64_t n_q) {
    q_host_.resize(static_cast<size_t>(case_.n_seq * layer_.n_head_q * n_q * layer_.d_k));
    rows_.fill(q_host_, layer_.d_k);
    return kvcache::copy_to_device(q_.data(), q_host_.data(), static_cast<int64_t>(q_host_.size()) * 4);
  }

  // A warm-up step (timed = false) runs without the gate: it is where CUDA loads the kernels, which must not
  // happen behind a closed gate (StreamGate::close()).
  StatusOr<Sample> step(int64_t n_q, bool timed) {
    // The steps run on a stream of their own, as an engine's would (not the legacy default stream, which
    // serializes with every other stream); the appends and the Q upload before them ran on the default stream.
    KVFLASH_RETURN_IF_ERROR(kvcache::synchronize_device());
    void* stream = stream_->get();
    StatusOr<DeviceBatch> batch = cache_->fill_batch_device(seqs_, stream);
    if (!batch.ok()) return batch.status();
    StatusOr<KvView> k = cache_->k_view(0, batch->page_table, batch->pages_per_seq);
    if (!k.ok()) return k.status();
    StatusOr<KvView> v = v_view_ ? k : cache_->v_view(0, batch->page_table, batch->pages_per_seq);
    if (!v.ok()) return v.status();
    const AttentionShape shape{case_.n_seq, n_q, batch->n_kv, layer_.n_head_q, layer_.n_head_kv, layer_.d_k,
                               layer_.d_v};
    AttentionProblem p;
    p.shape = shape;
    p.q = {static_cast<const float*>(q_.data()),
           {shape.n_head_q * n_q * shape.d_k * 4, n_q * shape.d_k * 4, shape.d_k * 4}};
    p.o = {static_cast<float*>(o_.data()), {shape.n_head_q * n_q * shape.d_v * 4, n_q * shape.d_v * 4, shape.d_v * 4}};
    p.k = *k;
    p.v = *v;
    p.options.causal = true;
    p.kv_len = batch->kv_len;
    StatusOr<Route> route = plan_route(p, caps_);
    if (!route.ok()) return route.status();
    if (route->workspace_bytes > workspace_.bytes()) {
      return Status(StatusCode::internal, "bench: route " + std::string(kernel_name(route->kernel)) + " asks for " +
                            std::to_string(route->workspace_bytes) + " workspace bytes; plan_workspace() planned " +
                            std::to_string(workspace_.bytes()));
    }
    kernel_ = std::string(kernel_name(route->kernel));
    n_splits_ = route->n_splits;
    KVFLASH_RETURN_IF_ERROR(kvcache::evict_l2(l2_eviction_, stream));
    const bool gated = timed && timing_ == DeviceTiming::device;
    if (gated) {
      KVFLASH_RETURN_IF_ERROR(gate_->close(stream));
    } else {
      KVFLASH_RETURN_IF_ERROR(kvcache::synchronize_stream(stream));  // launch timing starts on an idle device
    }
    const double cpu_start = thread_cpu_seconds();
    Status s = timer_->start(stream);
    if (s.ok()) s = attend(p, *route, workspace_.data(), static_cast<size_t>(workspace_.bytes()), stream);
    if (s.ok()) s = timer_->stop(stream);
    const double cpu_seconds = thread_cpu_seconds() - cpu_start;
    if (gated) gate_->open();  // whatever happened: the stream must go on
    KVFLASH_RETURN_IF_ERROR(s);
    StatusOr<double> us = timer_->elapsed_us();
    if (!us.ok()) return us.status();
    if (gated && gate_->timed_out()) {
      return Status(StatusCode::internal,
                    "bench: the stream gate gave up waiting for the host to enqueue one attend() call; the timing "
                    "would include host time (retry on an idle machine, or use --timing launch)");
    }
    // The lengths, for the byte and FLOP counts, as fill_batch() gives them on the host.
    kv_len_.resize(seqs_.size());
    for (size_t i = 0; i < seqs_.size(); ++i) kv_len_[i] = static_cast<int32_t>(*cache_->length(seqs_[i]));
    return Sample{*us * 1e-6, cpu_seconds, kv_bytes_read(layer_, v_view_, p.k.type, p.v.type, kv_len_),
                  flop_of(layer_, n_q, kv_len_)};
  }

  int64_t cache_bytes() const { return bucket_bytes(MemoryKind::kv_cache); }
  int64_t workspace_bytes() const { return workspace_.bytes(); }
  int64_t peak_bytes() const { return allocator_.stats().peak_live_bytes - l2_eviction_.bytes(); }
  // Device allocations since the cache and buffers were built: attention steps must not add any.
  int64_t allocations_in_steps() const { return allocator_.stats().allocation_calls - allocations_after_build_; }
  int64_t staging_bytes() const { return cache_->staging_bytes(); }
  const std::string& kernel() const { return kernel_; }
  int64_t n_splits() const { return n_splits_; }
  int workers() const { return 0; }
  const char* timing() const { return timing_ == DeviceTiming::device ? "device" : "launch"; }

 private:
  int64_t bucket_bytes(MemoryKind kind) const {
    StatusOr<MemoryReport> report = allocator_.report();
    return report.ok() ? report->bytes(kind) : 0;
  }

  LayerShape layer_;
  bool v_view_;
  CacheCase case_;
  DeviceAllocator& allocator_;
  DeviceTiming timing_;
  BackendCaps caps_;
  RandomRows rows_;
  std::unique_ptr<KvCache> cache_;
  std::vector<SeqId> seqs_;
  std::vector<int32_t> kv_len_;
  std::vector<float> k_rows_, v_rows_, q_host_;
  DeviceBuffer l2_eviction_, workspace_, q_, o_;
  std::unique_ptr<kvcache::DeviceEventTimer> timer_;
  std::unique_ptr<kvcache::StreamGate> gate_;
  std::unique_ptr<kvcache::DeviceStream> stream_;
  std::string kernel_;
  int64_t n_splits_ = 0;
  int64_t allocations_after_build_ = 0;
};

// Runner: CaseRunner or DeviceCaseRunner (same Sample and accessors).
template <typename Runner>
BenchRow summarize(const std::vector<Sample>& samples, const CacheCase& c, BackendKind backend, const char* kind,
                   int64_t n_q, double read_bw_gbps, const Runner& runner) {
  std::vector<double> us, cpu_us;
  double bytes = 0, flop = 0;
  for (const auto& s : samples) {
    us.push_back(s.seconds * 1e6);
    cpu_us.push_back(s.cpu_seconds * 1e6);
    bytes += static_cast<double>(s.kv_bytes);
    flop += s.flop;
  }
  std::sort(us.begin(), us.end());
  std::sort(cpu_us.begin(), cpu_us.end());
  BenchRow r;
  r.backend = std::string(backend_name(backend));
  r.ktype = std::string(kv_traits(c.k_type).name);
  r.vtype = std::string(kv_traits(c.v_type).name);
  r.kind = kind;
  r.depth = c.depth;
  r.n_q = n_q;
  r.n_seq = c.n_seq;
  r.samples = static_cast<int>(us.size());
  const size_t n = us.size();
  r.us_median = n % 2 == 1 ? us[n / 2] : 0.5 * (us[n / 2 - 1] + us[n / 2]);
  r.caller_cpu_us_median = n % 2 == 1 ? cpu_us[n / 2] : 0.5 * (cpu_us[n / 2 - 1] + cpu_us[n / 2]);
  r.us_min = us.front();
  r.us_max = us.back();
  r.tokens_per_s = static_cast<double>(c.n_seq * n_q) / (r.us_median * 1e-6);
  r.kv_bytes = static_cast<int64_t>(bytes / static_cast<double>(n));
  r.kv_gbps = static_cast<double>(r.kv_bytes) / (r.us_median * 1e-6) / 1e9;
  r.read_bw_gbps = read_bw_gbps;
  r.pct_read_bw = read_bw_gbps > 0 ? 100.0 * r.kv_gbps / read_bw_gbps : 0.0;
  r.tflops = flop / static_cast<double>(n) / (r.us_median * 1e-6) / 1e12;
  r.kv_cache_bytes = runner.cache_bytes();
  r.workspace_bytes = runner.workspace_bytes();
  r.peak_bytes = runner.peak_bytes();
  r.rss_peak_bytes = rss_peak_bytes();
  r.kernel = runner.kernel();
  r.n_splits = runner.n_splits();
  r.threads = runner.workers();
  r.timing = runner.timing();
  return r;
}

std::string case_name(const CacheCase& c) {
  return std::string(kv_traits(c.k_type).name) + "/" + std::string(kv_traits(c.v_type).name) + " depth " +
         std::to_string(c.depth) + (c.n_seq > 1 ? " x" + std::to_string(c.n_seq) + " seqs" : "");
}

// Builds the runner's cache, then times every step kind of the plan.
template <typename Runner>
StatusOr<std::vector<BenchRow>> run_case(Runner& runner, const CacheCase& c, const StepPlan& plan,
                                         BackendKind backend, double read_bw_gbps, const ProgressFn& progress) {
  Clock::time_point start = Clock::now();
  progress(case_name(c) + ": building the cache");
  KVFLASH_RETURN_IF_ERROR(runner.build(plan));
  progress(case_name(c) + ": cache built in " + std::to_string(static_cast<int>(seconds_since(start) * 1000)) +
           " ms, " + std::to_string(runner.cache_bytes() >> 20) + " MiB");

  std::vector<BenchRow> rows;
  // A step: append its rows to every sequence (through the cache API, untimed), then the timed attention.
  const auto run_steps = [&](int64_t n_q, int64_t steps, const char* kind) -> Status {
    KVFLASH_RETURN_IF_ERROR(runner.new_queries(n_q));
    KVFLASH_RETURN_IF_ERROR(runner.append(n_q));  // warm-up step: routes, workspace, caches
    StatusOr<Sample> warm = runner.step(n_q, /*timed=*/false);
    if (!warm.ok()) return warm.status();
    KVFLASH_RETURN_IF_ERROR(runner.truncate_to_depth());
    std::vector<Sample> samples;
    for (int rep = 0; rep < plan.reps; ++rep) {
      KVFLASH_RETURN_IF_ERROR(runner.new_queries(n_q));
      for (int64_t s = 0; s < steps; ++s) {
        KVFLASH_RETURN_IF_ERROR(runner.append(n_q));
        StatusOr<Sample> sample = runner.step(n_q, /*timed=*/true);
        if (!sample.ok()) return sample.status();
        samples.push_back(*sample);
      }
      KVFLASH_RETURN_IF_ERROR(runner.truncate_to_depth());
    }
    rows.push_back(summarize(samples, c, backend, kind, n_q, read_bw_gbps, runner));
    char line[160];
    std::snprintf(line, sizeof line, ": %s n_q=%lld: %.1f us per step", kind, static_cast<long long>(n_q),
                  rows.back().us_median);
    progress(case_name(c) + line);
    return Status::Ok();
  };
  for (int64_t n_q : plan.decode_rows) KVFLASH_RETURN_IF_ERROR(run_steps(n_q, plan.decode_steps, "decode"));
  for (int64_t chunk : plan.prefill_chunks) KVFLASH_RETURN_IF_ERROR(run_steps(chunk, 1, "prefill"));
  return rows;
}

}  // namespace

double step_flop(const LayerShape& layer, int64_t depth, int64_t n_q, int64_t n_seq) {
  // Row i of n_q sees depth + i + 1 keys: sum = n_q * depth + n_q (n_q + 1) / 2 pairs.
  const double pairs = static_cast<double>(n_q) * static_cast<double>(depth) +
                       0.5 * static_cast<double>(n_q) * static_cast<double>(n_q + 1);
  return 2.0 * static_cast<double>(layer.n_head_q) * static_cast<double>(layer.d_k + layer.d_v) * pairs *
         static_cast<double>(n_seq);
}

StatusOr<std::vector<BenchRow>> bench_cache(const LayerShape& layer, bool v_is_view_of_k, const CacheCase& c,
                                            const StepPlan& plan, BackendKind backend, int threads, double read_bw_gbps,
                                            const ProgressFn& progress, const DeviceBenchOptions& device) {
  if (backend != BackendKind::cuda) {
    CaseRunner runner(layer, v_is_view_of_k, c, backend, threads);
    return run_case(runner, c, plan, backend, read_bw_gbps, progress);
  }
  if (device.allocator == nullptr) return invalid_argument("bench_cache: the cuda backend needs a DeviceAllocator");
  DeviceCaseRunner runner(layer, v_is_view_of_k, c, device);
  StatusOr<std::vector<BenchRow>> rows = run_case(runner, c, plan, backend, read_bw_gbps, progress);
  if (rows.ok() && runner.allocations_in_steps() != 0) {
    return Status(StatusCode::internal, "bench: " + std::to_string(runner.allocations_in_steps()) +
                          " device allocations happened during attention steps after create()");
  }
  return rows;
}

double measure_read_bandwidth_gbps(int threads) {
  const int n = threads > 0 ? threads : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  constexpr size_t kBytes = size_t{512} << 20;
  const size_t words = kBytes / sizeof(uint64_t);
  std::unique_ptr<uint64_t[]> buffer(new uint64_t[words]);
  for (size_t i = 0; i < words; ++i) buffer[i] = i;  // resident, and not a page of zeros the kernel could share
  double best = 0;
  for (int pass = 0; pass < 3; ++pass) {
    std::vector<uint64_t> sums(static_cast<size_t>(n));
    std::vector<std::thread> pool;
    const Clock::time_point start = Clock::now();
    for (int t = 0; t < n; ++t) {
      pool.emplace_back([&, t] {
        const size_t begin = words * static_cast<size_t>(t) / static_cast<size_t>(n);
        const size_t end = words * static_cast<size_t>(t + 1) / static_cast<size_t>(n);
        uint64_t a = 0, b = 0, c = 0, d = 0;  // four chains so the adds keep up with the loads
        size_t i = begin;
        for (; i + 4 <= end; i += 4) {
          a += buffer[i];
          b += buffer[i + 1];
          c += buffer[i + 2];
          d += buffer[i + 3];
        }
        for (; i < end; ++i) a += buffer[i];
        sums[static_cast<size_t>(t)] = a + b + c + d;
      });
    }
    for (std::thread& t : pool) t.join();
    const double seconds = seconds_since(start);
    uint64_t check = 0;
    for (uint64_t s : sums) check += s;
    if (check == 1) return 0;  // keeps the sums alive; never true for this buffer
    best = std::max(best, static_cast<double>(kBytes) / seconds / 1e9);
  }
  return best;
}

}  // namespace kvflash::cli
