#include "bench_runner.h"

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <ctime>
#include <memory>
#include <thread>

#include "kvflash/attention.h"
#include "kvflash/kv_cache.h"
#include "kvflash/route.h"

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

// Everything one cache case needs while it is measured.
class CaseRunner {
 public:
  CaseRunner(const LayerShape& layer, bool v_is_view_of_k, const CacheCase& c, BackendKind backend, int threads)
      : layer_(layer), v_view_(v_is_view_of_k), case_(c), rows_(1234 + c.depth) {
    caps_ = caps_for(backend);
    if (threads > 0) caps_.threads = threads;
  }

  Status build(const StepPlan& plan) {
    int64_t extra = 1;
    for (int64_t rows : plan.decode_rows) extra = std::max(extra, rows * (plan.decode_steps + 1));
    for (int64_t chunk : plan.prefill_chunks) extra = std::max(extra, chunk);
    KvCacheConfig config;
    config.n_layers = 1;
    config.n_head_kv = layer_.n_head_kv;
    config.d_k = layer_.d_k;
    config.d_v = layer_.d_v;
    config.k_type = case_.k_type;
    config.v_type = v_view_ ? case_.k_type : case_.v_type;
    config.page_rows = case_.page_rows;
    config.max_sequences = case_.n_seq;
    config.max_seq_tokens = case_.depth + extra;
    config.capacity_tokens = case_.n_seq * (case_.depth + extra);
    StatusOr<KvCache> cache = KvCache::create(config);
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

  // Appends n_tokens tokens of random K/V to every sequence (in chunks, through KvCache::append).
  Status append(int64_t n_tokens) {
    constexpr int64_t kChunk = 1024;
    for (SeqId seq : seqs_) {
      for (int64_t done = 0; done < n_tokens; done += kChunk) {
        const int64_t n = std::min(kChunk, n_tokens - done);
        k_rows_.resize(static_cast<size_t>(n * layer_.n_head_kv * layer_.d_k));
        v_rows_.resize(static_cast<size_t>(n * layer_.n_head_kv * layer_.d_v));
        rows_.fill(k_rows_, layer_.d_k);
        rows_.fill(v_rows_, layer_.d_v);
        KVFLASH_RETURN_IF_ERROR(cache_->append(seq, k_rows_, v_rows_, n));
      }
    }
    return Status::Ok();
  }

  Status truncate_to_depth() {
    for (SeqId seq : seqs_) KVFLASH_RETURN_IF_ERROR(cache_->truncate(seq, case_.depth));
    return Status::Ok();
  }

  // One timed step over the whole cache with n_q new query rows per sequence (already appended).
  struct Sample {
    double seconds;
    double cpu_seconds;  // the calling thread's
    int64_t kv_bytes;
  };
  StatusOr<Sample> step(int64_t n_q) {
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
    int64_t keys = 0;
    for (int32_t len : kv_len_) keys += len;
    const int64_t k_row = head_row_bytes(p.k.type, shape.d_k);
    const int64_t v_row = v_view_ ? 0 : head_row_bytes(p.v.type, shape.d_v);
    return Sample{seconds, cpu_seconds, keys * shape.n_head_kv * (k_row + v_row)};
  }

  int64_t cache_bytes() const { return cache_->bytes(); }
  int64_t workspace_bytes() const { return workspace_.size(); }
  const std::string& kernel() const { return kernel_; }
  int64_t n_splits() const { return n_splits_; }
  int workers() const { return workers_; }

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

BenchRow summarize(const std::vector<CaseRunner::Sample>& samples, const CacheCase& c, BackendKind backend,
                   const char* kind, int64_t n_q, double read_bw_gbps, const CaseRunner& runner) {
  std::vector<double> us, cpu_us;
  double bytes = 0;
  for (const auto& s : samples) {
    us.push_back(s.seconds * 1e6);
    cpu_us.push_back(s.cpu_seconds * 1e6);
    bytes += static_cast<double>(s.kv_bytes);
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
  r.kv_cache_bytes = runner.cache_bytes();
  r.workspace_bytes = runner.workspace_bytes();
  r.peak_bytes = r.kv_cache_bytes + r.workspace_bytes;
  r.rss_peak_bytes = rss_peak_bytes();
  r.kernel = runner.kernel();
  r.n_splits = runner.n_splits();
  r.threads = runner.workers();
  return r;
}

std::string case_name(const CacheCase& c) {
  return std::string(kv_traits(c.k_type).name) + "/" + std::string(kv_traits(c.v_type).name) + " depth " +
         std::to_string(c.depth) + (c.n_seq > 1 ? " x" + std::to_string(c.n_seq) + " seqs" : "");
}

}  // namespace

StatusOr<std::vector<BenchRow>> bench_cache(const LayerShape& layer, bool v_is_view_of_k, const CacheCase& c,
                                            const StepPlan& plan, BackendKind backend, int threads, double read_bw_gbps,
                                            const ProgressFn& progress) {
  CaseRunner runner(layer, v_is_view_of_k, c, backend, threads);
  Clock::time_point start = Clock::now();
  progress(case_name(c) + ": building the cache");
  KVFLASH_RETURN_IF_ERROR(runner.build(plan));
  progress(case_name(c) + ": cache built in " + std::to_string(static_cast<int>(seconds_since(start) * 1000)) +
           " ms, " + std::to_string(runner.cache_bytes() >> 20) + " MiB");

  std::vector<BenchRow> rows;
  // A step: append its rows to every sequence (through the cache API, untimed), then the timed attention.
  const auto run_steps = [&](int64_t n_q, int64_t steps, const char* kind) -> Status {
    KVFLASH_RETURN_IF_ERROR(runner.append(n_q));  // warm-up step: routes, workspace, caches
    StatusOr<CaseRunner::Sample> warm = runner.step(n_q);
    if (!warm.ok()) return warm.status();
    KVFLASH_RETURN_IF_ERROR(runner.truncate_to_depth());
    std::vector<CaseRunner::Sample> samples;
    for (int rep = 0; rep < plan.reps; ++rep) {
      for (int64_t s = 0; s < steps; ++s) {
        KVFLASH_RETURN_IF_ERROR(runner.append(n_q));
        StatusOr<CaseRunner::Sample> sample = runner.step(n_q);
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
