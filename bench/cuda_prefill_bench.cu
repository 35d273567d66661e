// Prefill benchmark of the CUDA backend: 512 new tokens at depth 0, 32768 and 131072 (32 query / 8 KV heads, head
// dim 128, causal bottom-right), per cache type. Median time of one attention call (CUDA events around the call,
// after warm-up) and TFLOP/s counted as
//   4 * d * n_head_q * sum over query rows i of the keys row i sees  (= kv_len - n_q + i + 1 under bottom-right
//   causal masking): one multiply-add (2 FLOPs) per (row, key, dim) for each of QK^T and PV.
// torch SDPA (bench/sdpa_compare.py --prefill) counts the same way on the same f16 shapes.
//
// Data: random rows with a few outlier channels, quantized with quantize_row; queries N(0, 1). Output: one line per
// case on stdout and, with --json FILE, one JSON object per line. --n-q N times chunks of N new tokens instead of
// 512; --one-split runs the planned route with its keys unsplit (what the prefill kernel did before it could split
// them), for a same-run comparison on chunks too short to fill the GPU with query tiles. Every case also runs
// forced onto every row that competes for it (keys unsplit): the warp-specialized wgmma rows
// (cuda.prefill_wgmma_ws.<type>, with and without ping-pong), the one-role wgmma rows (cuda.prefill_wgmma.<type>)
// and the mma.sync rows (cuda.prefill.<type>), so all are measured in the same run.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "backend/cuda/prefill_wgmma_ws.cuh"  // the other ping-pong choice, launched directly (no table row)
#include "cuda_bench_common.h"
#include "kvflash/attention.h"
#include "kvflash/attention_problem.h"
#include "kvflash/quantize.h"
#include "kvflash/route.h"
#include "plan/kernel_table.h"  // KernelId: cases also run forced onto the mma.sync rows

using namespace kvflash;

namespace {

struct Case {
  KvType type;
  int64_t depth, n_q, n_head_q, n_head_kv, d;
};

/// Bottom-right causal: row i of n_q over n_kv keys sees n_kv - n_q + i + 1 of them.
double causal_flops(const Case& c) {
  const double n_kv = static_cast<double>(c.depth + c.n_q), n_q = static_cast<double>(c.n_q);
  const double visible = n_q * (n_kv - n_q) + n_q * (n_q + 1) / 2;
  return 4.0 * static_cast<double>(c.d) * static_cast<double>(c.n_head_q) * visible;
}

/// `rows` random rows of `dim` values with outlier channels, quantized to `t`, tiled to `total_rows` on the device.
void* make_cache(KvType t, int64_t dim, int64_t total_rows, uint64_t seed) {
  const int64_t rows = 4096, stored = stored_dim(t, dim), rb = row_bytes(t, stored);
  std::vector<uint8_t> pool(static_cast<size_t>(rows * rb));
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> row(static_cast<size_t>(stored), 0.0f);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < dim; ++c) row[c] = normal(rng) * (c % 32 == static_cast<int64_t>(seed % 32) ? 12.0f : 1.0f);
    check(quantize_row(t, row.data(), stored, pool.data() + r * rb), "quantize_row");
  }
  const size_t bytes = static_cast<size_t>(total_rows * rb);
  void *cache = nullptr, *dpool = nullptr;
  CHECK_CUDA(cudaMalloc(&cache, bytes));
  CHECK_CUDA(cudaMalloc(&dpool, pool.size()));
  CHECK_CUDA(cudaMemcpy(dpool, pool.data(), pool.size(), cudaMemcpyHostToDevice));
  for (size_t off = 0; off < bytes; off += pool.size()) {
    CHECK_CUDA(cudaMemcpy(static_cast<uint8_t*>(cache) + off, dpool, std::min(pool.size(), bytes - off),
                          cudaMemcpyDeviceToDevice));
  }
  CHECK_CUDA(cudaFree(dpool));
  return cache;
}

struct Result {
  float us = 0;
  std::string route;
};

/// A kernel variant without a table row, launched directly on the problem and its (forced) route.
struct Variant {
  std::string name;
  std::function<Status(const AttentionProblem&, const Route&, cudaStream_t)> launch;
};

/// The warp-specialized row `row` (cache type CacheType, d 128) with the other choice of consumer turns than its
/// own (WsPrefillConfig::kPingPong): a direct launch with no table row of its own.
template <KvType CacheType>
std::pair<KernelId, Variant> other_ping_pong(KernelId row) {
  constexpr bool kPingPong = !cuda::WsPrefillConfig<CacheType>::kPingPong;
  return {row,
          {"cuda.prefill_wgmma_ws." + std::string(kv_traits(CacheType).name) +
               (kPingPong ? " with ping-pong" : " without ping-pong"),
           [](const AttentionProblem& p, const Route& r, cudaStream_t st) {
             return cuda::launch_prefill_wgmma_ws<128, 128, CacheType, CacheType, kPingPong>(p, r, nullptr, st);
           }}};
}

/// The rows that compete for a cache type at d 128, forced one by one after the planned route.
std::vector<KernelId> competing_rows(KvType t) {
  switch (t) {
    case KvType::f16:
      return {KernelId::cuda_prefill_wgmma_ws_f16, KernelId::cuda_prefill_wgmma_f16, KernelId::cuda_prefill_f16};
    case KvType::q8_0:
      return {KernelId::cuda_prefill_wgmma_ws_q8_0, KernelId::cuda_prefill_q8_0};
    case KvType::q4_0:
      return {KernelId::cuda_prefill_wgmma_ws_q4_0, KernelId::cuda_prefill_wgmma_q4_0, KernelId::cuda_prefill_q4_0};
    case KvType::turbo3:
      return {KernelId::cuda_prefill_wgmma_ws_turbo3, KernelId::cuda_prefill_turbo3};
    case KvType::turbo4:
      return {KernelId::cuda_prefill_wgmma_ws_turbo4, KernelId::cuda_prefill_turbo4};
    default:
      return {};
  }
}

/// other_ping_pong of the warp-specialized row of `t` (one of the benchmark's five types).
std::pair<KernelId, Variant> other_ping_pong(KvType t) {
  switch (t) {
    case KvType::q8_0:
      return other_ping_pong<KvType::q8_0>(KernelId::cuda_prefill_wgmma_ws_q8_0);
    case KvType::q4_0:
      return other_ping_pong<KvType::q4_0>(KernelId::cuda_prefill_wgmma_ws_q4_0);
    case KvType::turbo3:
      return other_ping_pong<KvType::turbo3>(KernelId::cuda_prefill_wgmma_ws_turbo3);
    case KvType::turbo4:
      return other_ping_pong<KvType::turbo4>(KernelId::cuda_prefill_wgmma_ws_turbo4);
    default:
      return other_ping_pong<KvType::f16>(KernelId::cuda_prefill_wgmma_ws_f16);
  }
}

/// `force`: run this kernel row instead of the planned one, with one split (no workspace); `variant`: launch that
/// instead of attend() (with `force` naming the row it is a variant of).
Result run_case(const Case& c, cudaStream_t stream, int iters, bool one_split,
                std::optional<KernelId> force = std::nullopt, const Variant* variant = nullptr) {
  const int64_t n_kv = c.depth + c.n_q, dks = stored_dim(c.type, c.d);
  const int64_t rb = row_bytes(c.type, dks);
  AttentionProblem p;
  p.shape = AttentionShape{1, c.n_q, n_kv, c.n_head_q, c.n_head_kv, c.d, c.d};
  p.options.causal = true;
  const int64_t q_elems = c.n_head_q * c.n_q * c.d;
  std::vector<float> q_host(static_cast<size_t>(q_elems));
  std::mt19937_64 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (float& x : q_host) x = normal(rng);
  float *q = nullptr, *o = nullptr;
  CHECK_CUDA(cudaMalloc(&q, q_elems * sizeof(float)));
  CHECK_CUDA(cudaMalloc(&o, q_elems * sizeof(float)));
  CHECK_CUDA(cudaMemcpy(q, q_host.data(), q_elems * sizeof(float), cudaMemcpyHostToDevice));
  p.q = {q, {c.n_head_q * c.n_q * c.d * 4, c.n_q * c.d * 4, c.d * 4}};
  p.o = {o, {c.n_head_q * c.n_q * c.d * 4, c.n_q * c.d * 4, c.d * 4}};
  p.k.type = p.v.type = c.type;
  p.k.stride = p.v.stride = {c.n_head_kv * n_kv * rb, n_kv * rb, rb};
  p.k.data = make_cache(c.type, c.d, c.n_head_kv * n_kv, 11);
  p.v.data = make_cache(c.type, c.d, c.n_head_kv * n_kv, 12);
  StatusOr<Route> route = plan_route(p, caps_for(BackendKind::cuda));
  check(route.status(), "plan_route");
  if (force.has_value()) route->kernel = *force;
  if (one_split || force.has_value()) {  // a route of one split has no partials: no workspace
    route->n_splits = 1;
    route->keys_per_split = n_kv;
    route->workspace_bytes = 0;
    route->layout = WorkspaceLayout{};
  }
  void* workspace = nullptr;
  if (route->workspace_bytes > 0) CHECK_CUDA(cudaMalloc(&workspace, static_cast<size_t>(route->workspace_bytes)));
  auto call = [&] {
    if (variant != nullptr) {
      check(variant->launch(p, *route, stream), "variant launch");
    } else {
      check(attend(p, *route, workspace, static_cast<size_t>(route->workspace_bytes), stream), "attend");
    }
  };
  for (int i = 0; i < 5; ++i) call();
  std::vector<cudaEvent_t> ev(2 * iters);
  for (auto& e : ev) CHECK_CUDA(cudaEventCreate(&e));
  for (int i = 0; i < iters; ++i) {
    CHECK_CUDA(cudaEventRecord(ev[2 * i], stream));
    call();
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
  Result r;
  r.us = median(us);
  r.route = variant != nullptr ? variant->name
                               : std::string(kernel_name(route->kernel)) + " (" + std::to_string(route->n_splits) + ")";
  CHECK_CUDA(cudaFree(const_cast<void*>(p.k.data)));
  CHECK_CUDA(cudaFree(const_cast<void*>(p.v.data)));
  CHECK_CUDA(cudaFree(q));
  CHECK_CUDA(cudaFree(o));
  if (workspace != nullptr) CHECK_CUDA(cudaFree(workspace));
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  const char* json_path = nullptr;
  int iters = 20;
  std::string only;
  int64_t n_q = 512;
  bool one_split = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--json") == 0 && i + 1 < argc) json_path = argv[++i];
    else if (std::strcmp(argv[i], "--iters") == 0 && i + 1 < argc) iters = std::max(1, std::atoi(argv[++i]));
    else if (std::strcmp(argv[i], "--only") == 0 && i + 1 < argc) only = argv[++i];
    else if (std::strcmp(argv[i], "--n-q") == 0 && i + 1 < argc) n_q = std::max(1, std::atoi(argv[++i]));
    else if (std::strcmp(argv[i], "--one-split") == 0) one_split = true;
    else {
      std::fprintf(stderr, "usage: %s [--json FILE] [--iters N] [--only \"TYPE DEPTH\"] [--n-q N] [--one-split]\n",
                   argv[0]);
      return 2;
    }
  }
  cudaStream_t stream = nullptr;
  CHECK_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  cudaDeviceProp prop{};
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  std::printf("device %s, %d SMs; prefill n_q %lld, 32/8 heads, d 128, causal bottom-right%s\n", prop.name,
              prop.multiProcessorCount, static_cast<long long>(n_q), one_split ? ", keys unsplit" : "");
  FILE* json = json_path != nullptr ? std::fopen(json_path, "w") : nullptr;
  std::printf("%-8s %8s %12s %10s  %s\n", "type", "depth", "us", "TFLOP/s", "route");
  for (int64_t depth : {int64_t{0}, int64_t{32768}, int64_t{131072}}) {
    for (KvType t : {KvType::f16, KvType::q8_0, KvType::q4_0, KvType::turbo3, KvType::turbo4}) {
      const Case c{t, depth, n_q, 32, 8, 128};
      const std::string name(kv_traits(t).name);
      if (!only.empty() && (name + " " + std::to_string(depth)).find(only) == std::string::npos) continue;
      std::vector<std::optional<KernelId>> routes = {std::nullopt};
      for (KernelId row : competing_rows(t)) routes.push_back(row);
      // The warp-specialized kernel with the other choice of consumer turns, on the same problem.
      const auto [ws_row, other] = other_ping_pong(t);
      std::vector<std::pair<std::optional<KernelId>, const Variant*>> runs;
      for (const std::optional<KernelId>& force : routes) runs.push_back({force, nullptr});
      runs.push_back({ws_row, &other});
      std::string planned;
      for (const auto& [force, variant] : runs) {
        const Result r = run_case(c, stream, iters, one_split, force, variant);
        if (!force.has_value()) planned = r.route;
        if (force.has_value() && variant == nullptr && r.route == planned) continue;  // the planner took it already
        const double tflops = causal_flops(c) / (r.us * 1e6);
        std::printf("%-8s %8lld %12.1f %10.1f  %s\n", name.c_str(), static_cast<long long>(depth), r.us, tflops,
                    r.route.c_str());
        std::fflush(stdout);
        if (json != nullptr) {
          std::fprintf(json, "{\"type\": \"%s\", \"depth\": %lld, \"n_q\": %lld, \"us\": %.2f, \"tflops\": %.2f, "
                       "\"route\": \"%s\"}\n", name.c_str(), static_cast<long long>(depth),
                       static_cast<long long>(n_q), r.us, tflops, r.route.c_str());
          std::fflush(json);
        }
      }
    }
  }
  if (json != nullptr) std::fclose(json);
  CHECK_CUDA(cudaStreamDestroy(stream));
  return 0;
}
