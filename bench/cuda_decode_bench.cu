// Decode benchmark of the CUDA backend (until `kvflash bench --backend cuda` exists): for each case, median time
// of one attention call (CUDA events around the call, after warm-up), the K/V bytes it must read, and the
// reference ceilings measured in the same run (device-to-device copy bandwidth, launch latency of an empty kernel).
//
// Data: a pool of 4096 random rows per (type, head dim), drawn with outlier channels and quantized with
// quantize_row, tiled over the cache; queries N(0, 1). Where one cache fits in L2, several copies are made and
// the calls rotate among them, so every call reads from HBM.
//
// Output: one line per case on stdout (human table) and, with --json FILE, one JSON object per line.
//
// --causal runs every case as `kvflash bench` does: options.causal (bottom-right) and per-sequence lengths
// (kv_len, all n_kv) in device memory, so the two benchmarks can be compared on the same problem.
// --splits N cuts every split-KV route into about N key ranges instead of the planner's count, and --kv N gives
// every case N keys (--only still matches the default names): together they sweep split counts at any depth.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cuda_bench_common.h"
#include "kvflash/attention.h"
#include "kvflash/attention_problem.h"
#include "kvflash/quantize.h"
#include "kvflash/route.h"
#include "plan/launch.h"

using namespace kvflash;

namespace {

struct Case {
  std::string name;
  KvType kt, vt;
  int64_t n_seq, n_kv, n_q, n_head_q, n_head_kv, d_k, d_v;
};

__global__ void empty_kernel() {}

/// Microseconds of each of `iters` calls of fn(i), timed with events, after `warmup` calls.
template <typename Fn>
std::vector<float> time_calls(cudaStream_t stream, int warmup, int iters, Fn fn) {
  for (int i = 0; i < warmup; ++i) fn(i);
  std::vector<cudaEvent_t> ev(2 * iters);
  for (auto& e : ev) CHECK_CUDA(cudaEventCreate(&e));
  for (int i = 0; i < iters; ++i) {
    CHECK_CUDA(cudaEventRecord(ev[2 * i], stream));
    fn(warmup + i);
    CHECK_CUDA(cudaEventRecord(ev[2 * i + 1], stream));
  }
  CHECK_CUDA(cudaStreamSynchronize(stream));
  std::vector<float> us(iters);
  for (int i = 0; i < iters; ++i) {
    float ms = 0;
    CHECK_CUDA(cudaEventElapsedTime(&ms, ev[2 * i], ev[2 * i + 1]));
    us[i] = ms * 1000.0f;
  }
  for (auto& e : ev) CHECK_CUDA(cudaEventDestroy(e));
  return us;
}

/// Device-to-device copy bandwidth, counting bytes read plus bytes written (GB/s).
double copy_bandwidth_gbps(cudaStream_t stream) {
  const size_t bytes = size_t{1} << 31;
  void *a = nullptr, *b = nullptr;
  CHECK_CUDA(cudaMalloc(&a, bytes));
  CHECK_CUDA(cudaMalloc(&b, bytes));
  CHECK_CUDA(cudaMemset(a, 0x5a, bytes));
  const std::vector<float> us = time_calls(stream, 3, 15, [&](int i) {
    CHECK_CUDA(cudaMemcpyAsync(i % 2 ? a : b, i % 2 ? b : a, bytes, cudaMemcpyDeviceToDevice, stream));
  });
  CHECK_CUDA(cudaFree(a));
  CHECK_CUDA(cudaFree(b));
  return 2.0 * static_cast<double>(bytes) / (median(us) * 1e3);
}

/// Random rows with a few outlier channels (as real keys have), quantized: `rows` rows of `dim` values.
std::vector<uint8_t> make_pool(KvType t, int64_t dim, int64_t rows, uint64_t seed) {
  const int64_t stored = stored_dim(t, dim), rb = row_bytes(t, stored);
  std::vector<uint8_t> pool(static_cast<size_t>(rows * rb));
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> channel_scale(dim, 1.0f);
  for (int64_t c = 0; c < dim; c += 32) channel_scale[(c + seed) % dim] = 12.0f;
  std::vector<float> row(stored, 0.0f);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < dim; ++c) row[c] = normal(rng) * channel_scale[c];
    check(quantize_row(t, row.data(), stored, pool.data() + r * rb), "quantize_row");
  }
  return pool;
}

/// A [n_seq, n_head_kv, n_kv] contiguous cache filled by tiling the pool (device-to-device copies).
void* make_cache(const std::vector<uint8_t>& pool, size_t bytes, size_t shift) {
  void *cache = nullptr, *dpool = nullptr;
  CHECK_CUDA(cudaMalloc(&cache, bytes));
  CHECK_CUDA(cudaMalloc(&dpool, pool.size()));
  CHECK_CUDA(cudaMemcpy(dpool, pool.data(), pool.size(), cudaMemcpyHostToDevice));
  shift %= pool.size();
  for (size_t off = 0; off < bytes;) {
    const size_t from = off == 0 ? shift : 0;
    const size_t n = std::min(pool.size() - from, bytes - off);
    CHECK_CUDA(cudaMemcpy(static_cast<uint8_t*>(cache) + off, static_cast<uint8_t*>(dpool) + from, n,
                          cudaMemcpyDeviceToDevice));
    off += n;
  }
  CHECK_CUDA(cudaFree(dpool));
  return cache;
}

struct Result {
  float us = 0, graph_us = 0;
  double kv_bytes = 0;
  std::string route;
  int64_t splits = 0;
};

Result run_case(const Case& c, cudaStream_t stream, size_t l2_bytes, int iters, bool causal, int64_t splits) {
  const int64_t dks = stored_dim(c.kt, c.d_k), dvs = stored_dim(c.vt, c.d_v);
  const int64_t rbk = row_bytes(c.kt, dks), rbv = row_bytes(c.vt, dvs);
  const size_t k_bytes = static_cast<size_t>(c.n_seq * c.n_head_kv * c.n_kv * rbk);
  const size_t v_bytes = static_cast<size_t>(c.n_seq * c.n_head_kv * c.n_kv * rbv);
  const int sets = static_cast<int>(std::clamp<size_t>((4 * l2_bytes) / (k_bytes + v_bytes) + 1, 1, 16));
  const std::vector<uint8_t> pool_k = make_pool(c.kt, c.d_k, 4096, 11), pool_v = make_pool(c.vt, c.d_v, 4096, 12);

  AttentionProblem p;
  p.shape = AttentionShape{c.n_seq, c.n_q, c.n_kv, c.n_head_q, c.n_head_kv, c.d_k, c.d_v};
  const int64_t q_elems = c.n_seq * c.n_head_q * c.n_q * c.d_k, o_elems = c.n_seq * c.n_head_q * c.n_q * c.d_v;
  std::vector<float> q_host(static_cast<size_t>(q_elems));
  std::mt19937_64 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (float& x : q_host) x = normal(rng);
  float *q = nullptr, *o = nullptr;
  CHECK_CUDA(cudaMalloc(&q, q_elems * sizeof(float)));
  CHECK_CUDA(cudaMalloc(&o, o_elems * sizeof(float)));
  CHECK_CUDA(cudaMemcpy(q, q_host.data(), q_elems * sizeof(float), cudaMemcpyHostToDevice));
  p.q = {q, {c.n_head_q * c.n_q * c.d_k * 4, c.n_q * c.d_k * 4, c.d_k * 4}};
  p.o = {o, {c.n_head_q * c.n_q * c.d_v * 4, c.n_q * c.d_v * 4, c.d_v * 4}};
  p.k.type = c.kt;
  p.v.type = c.vt;
  p.k.stride = {c.n_head_kv * c.n_kv * rbk, c.n_kv * rbk, rbk};
  p.v.stride = {c.n_head_kv * c.n_kv * rbv, c.n_kv * rbv, rbv};
  std::vector<void*> ks, vs;
  for (int s = 0; s < sets; ++s) {
    ks.push_back(make_cache(pool_k, k_bytes, static_cast<size_t>(s) * 4099 * rbk));
    vs.push_back(make_cache(pool_v, v_bytes, static_cast<size_t>(s) * 4093 * rbv));
  }
  p.k.data = ks[0];
  p.v.data = vs[0];
  int32_t* kv_len = nullptr;
  if (causal) {
    p.options.causal = true;
    const std::vector<int32_t> lengths(static_cast<size_t>(c.n_seq), static_cast<int32_t>(c.n_kv));
    CHECK_CUDA(cudaMalloc(&kv_len, lengths.size() * sizeof(int32_t)));
    CHECK_CUDA(cudaMemcpy(kv_len, lengths.data(), lengths.size() * sizeof(int32_t), cudaMemcpyHostToDevice));
    p.kv_len = kv_len;
  }

  StatusOr<Route> planned = plan_route(p, caps_for(BackendKind::cuda));
  check(planned.status(), "plan_route");
  StatusOr<Route> forced = plan::with_forced_splits(p, *planned, splits);
  check(forced.status(), "with_forced_splits");
  const Route* route = &*forced;
  void* workspace = nullptr;
  if (route->workspace_bytes > 0) CHECK_CUDA(cudaMalloc(&workspace, static_cast<size_t>(route->workspace_bytes)));
  auto call = [&](int i) {
    AttentionProblem pi = p;
    pi.k.data = ks[i % sets];
    pi.v.data = vs[i % sets];
    check(attend(pi, *route, workspace, static_cast<size_t>(route->workspace_bytes), stream), "attend");
  };
  Result r;
  r.us = median(time_calls(stream, 10, iters, call));

  // The same calls captured in a graph (launch gaps amortized, as an engine's decode step runs them).
  constexpr int kPerGraph = 16;
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  CHECK_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
  for (int i = 0; i < kPerGraph; ++i) call(i);
  CHECK_CUDA(cudaStreamEndCapture(stream, &graph));
  CHECK_CUDA(cudaGraphInstantiate(&exec, graph, 0));
  r.graph_us = median(time_calls(stream, 2, 9, [&](int) { CHECK_CUDA(cudaGraphLaunch(exec, stream)); })) / kPerGraph;
  CHECK_CUDA(cudaGraphExecDestroy(exec));
  CHECK_CUDA(cudaGraphDestroy(graph));

  r.kv_bytes = static_cast<double>(k_bytes + v_bytes);
  // The query vectors per CTA show which decode instance ran (8, or 16 for 9+ query vectors per KV head).
  r.route = std::string(kernel_name(route->kernel)) + " qv" + std::to_string(route->qvecs_per_cta);
  r.splits = route->n_splits;
  for (void* b : ks) CHECK_CUDA(cudaFree(b));
  for (void* b : vs) CHECK_CUDA(cudaFree(b));
  CHECK_CUDA(cudaFree(q));
  CHECK_CUDA(cudaFree(o));
  if (kv_len != nullptr) CHECK_CUDA(cudaFree(kv_len));
  if (workspace != nullptr) CHECK_CUDA(cudaFree(workspace));
  return r;
}

std::vector<Case> default_cases() {
  std::vector<Case> cases;
  const KvType types[] = {KvType::f16, KvType::q8_0, KvType::q4_0, KvType::turbo3, KvType::turbo4};
  for (int64_t n_kv : {4096, 32768, 131072}) {
    for (KvType t : types) {
      cases.push_back({std::string(kv_traits(t).name) + " kv=" + std::to_string(n_kv), t, t, 1, n_kv, 1, 32, 8,
                       128, 128});
    }
  }
  cases.push_back({"f16 batch16 kv=32768", KvType::f16, KvType::f16, 16, 32768, 1, 32, 8, 128, 128});
  cases.push_back({"q4_0 batch16 kv=32768", KvType::q4_0, KvType::q4_0, 16, 32768, 1, 32, 8, 128, 128});
  cases.push_back({"f16 n_q=4 kv=32768", KvType::f16, KvType::f16, 1, 32768, 4, 32, 8, 128, 128});
  // Multi-row steps (speculative decoding) read the same KV bytes as one row: with --causal they show what the
  // per-score causal check costs against `kvflash bench`'s one-row figures.
  for (KvType t : {KvType::f16, KvType::q8_0, KvType::q4_0, KvType::turbo3}) {
    cases.push_back({std::string(kv_traits(t).name) + " n_q=4 kv=131072", t, t, 1, 131072, 4, 32, 8, 128, 128});
  }
  cases.push_back({"f16 d512 gqa2 kv=32768", KvType::f16, KvType::f16, 1, 32768, 1, 8, 4, 512, 512});
  cases.push_back({"f16/turbo3 kv=32768", KvType::f16, KvType::turbo3, 1, 32768, 1, 32, 8, 128, 128});
  return cases;
}

}  // namespace

int main(int argc, char** argv) {
  const char* json_path = nullptr;
  int iters = 50;
  std::string only;
  bool causal = false;
  int64_t splits = 0;  // 0: the planner's
  int64_t kv_override = 0;  // 0: each case's own key count
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--json") == 0 && i + 1 < argc) json_path = argv[++i];
    else if (std::strcmp(argv[i], "--causal") == 0) causal = true;
    else if (std::strcmp(argv[i], "--iters") == 0 && i + 1 < argc) iters = std::atoi(argv[++i]);
    else if (std::strcmp(argv[i], "--only") == 0 && i + 1 < argc) only = argv[++i];
    else if (std::strcmp(argv[i], "--splits") == 0 && i + 1 < argc) splits = std::atoll(argv[++i]);
    else if (std::strcmp(argv[i], "--kv") == 0 && i + 1 < argc) kv_override = std::atoll(argv[++i]);
    else {
      std::fprintf(stderr,
                   "usage: %s [--json FILE] [--iters N] [--only SUBSTRING] [--causal] [--splits N] [--kv N]\n",
                   argv[0]);
      return 2;
    }
  }
  cudaStream_t stream = nullptr;
  CHECK_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  cudaDeviceProp prop{};
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  const double copy_gbps = copy_bandwidth_gbps(stream);
  const float launch_us = median(time_calls(stream, 20, 200, [&](int) { empty_kernel<<<1, 32, 0, stream>>>(); }));
  std::printf("device %s, %d SMs, L2 %d MB; copy bandwidth %.0f GB/s (read+write); empty-kernel launch %.2f us%s\n",
              prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20, copy_gbps, launch_us,
              causal ? "; causal, kv_len" : "");
  FILE* json = json_path != nullptr ? std::fopen(json_path, "w") : nullptr;
  if (json != nullptr) {
    std::fprintf(json, "{\"device\": \"%s\", \"copy_gbps\": %.1f, \"launch_us\": %.3f}\n", prop.name, copy_gbps,
                 launch_us);
  }
  std::printf("%-26s %10s %10s %9s %8s %7s  %s\n", "case", "us", "graph us", "GB/s", "%copy", "splits", "route");
  for (Case c : default_cases()) {
    if (!only.empty() && c.name.find(only) == std::string::npos) continue;
    if (kv_override > 0) {
      // Every case at another key count (split-count sweeps between the default depths), renamed to say so.
      c.name = c.name.substr(0, c.name.find("kv=")) + "kv=" + std::to_string(kv_override);
      c.n_kv = kv_override;
    }
    const Result r = run_case(c, stream, static_cast<size_t>(prop.l2CacheSize), iters, causal, splits);
    const double gbps = r.kv_bytes / (r.us * 1e3);
    std::printf("%-26s %10.1f %10.1f %9.0f %7.1f%% %7lld  %s\n", c.name.c_str(), r.us, r.graph_us, gbps,
                100.0 * gbps / copy_gbps, static_cast<long long>(r.splits), r.route.c_str());
    std::fflush(stdout);
    if (json != nullptr) {
      std::fprintf(json,
                   "{\"case\": \"%s\", \"k\": \"%s\", \"v\": \"%s\", \"n_seq\": %lld, \"n_kv\": %lld, \"n_q\": %lld, "
                   "\"n_head_q\": %lld, \"n_head_kv\": %lld, \"d_k\": %lld, \"d_v\": %lld, \"us\": %.2f, "
                   "\"graph_us\": %.2f, \"kv_bytes\": %.0f, \"splits\": %lld, \"route\": \"%s\"}\n",
                   c.name.c_str(), std::string(kv_traits(c.kt).name).c_str(), std::string(kv_traits(c.vt).name).c_str(),
                   static_cast<long long>(c.n_seq), static_cast<long long>(c.n_kv), static_cast<long long>(c.n_q),
                   static_cast<long long>(c.n_head_q), static_cast<long long>(c.n_head_kv),
                   static_cast<long long>(c.d_k), static_cast<long long>(c.d_v), r.us, r.graph_us, r.kv_bytes,
                   static_cast<long long>(r.splits), r.route.c_str());
      std::fflush(json);
    }
  }
  if (json != nullptr) std::fclose(json);
  CHECK_CUDA(cudaStreamDestroy(stream));
  return 0;
}
