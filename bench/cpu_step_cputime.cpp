// One decode step of the cpu backend timed by the calling thread's CPU time (CLOCK_THREAD_CPUTIME_ID), one worker:
// f16, q8_0 and q4_0 caches of 32 query / 8 KV heads, head dim 128, n_kv keys (default 32768, contiguous rows),
// 1 and 4 query rows, causal; median of 15 calls after 3 of warm-up. CPU time, unlike wall time, does not count
// the time other processes hold the core, so two builds can be compared on a shared, loaded machine (the caches
// and memory bandwidth are still shared: compare builds back to back, never with figures of another day).
// Build: g++ -O2 -std=c++20 -Iinclude bench/cpu_step_cputime.cpp build/src/libkvflash.a -lpthread -o step_cputime
// Run:   ./step_cputime LABEL [n_kv]
#include <time.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "kvflash/attention.h"
#include "kvflash/attention_problem.h"
#include "kvflash/kvflash.h"
#include "kvflash/route.h"

using namespace kvflash;

namespace {

double thread_cpu_ms() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) * 1e3 + static_cast<double>(t.tv_nsec) / 1e6;
}

// Random N(0, 1) rows quantized to `type`, rows_total rows of d values.
std::vector<uint8_t> random_rows(KvType type, int64_t rows_total, int64_t d, std::mt19937& rng) {
  const int64_t row_bytes = head_row_bytes(type, d);
  std::vector<uint8_t> out(static_cast<size_t>(rows_total * row_bytes));
  std::normal_distribution<float> normal;
  std::vector<float> row(static_cast<size_t>(d));
  for (int64_t i = 0; i < rows_total; ++i) {
    for (float& x : row) x = normal(rng);
    kvflash_quantize_row(static_cast<int>(type), row.data(), d, out.data() + i * row_bytes);
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  const char* label = argc > 1 ? argv[1] : "build";
  const int64_t n_kv = argc > 2 ? atol(argv[2]) : 32768, n_head_q = 32, n_head_kv = 8, d = 128;
  std::mt19937 rng(1);
  for (KvType type : {KvType::f16, KvType::q8_0, KvType::q4_0}) {
    const int64_t row_bytes = head_row_bytes(type, d);
    const std::vector<uint8_t> k = random_rows(type, n_head_kv * n_kv, d, rng);
    const std::vector<uint8_t> v = random_rows(type, n_head_kv * n_kv, d, rng);
    for (int64_t n_q : {1, 4}) {
      std::vector<float> q(static_cast<size_t>(n_head_q * n_q * d)), o(q.size());
      std::normal_distribution<float> normal;
      for (float& x : q) x = normal(rng);
      AttentionProblem p;
      p.shape = {1, n_q, n_kv, n_head_q, n_head_kv, d, d};
      p.q.data = q.data();
      p.q.stride = {n_head_q * n_q * d * 4, n_q * d * 4, d * 4};
      p.o.data = o.data();
      p.o.stride = p.q.stride;
      p.k = {type, k.data(), {0, n_kv * row_bytes, row_bytes}, {}};
      p.v = {type, v.data(), {0, n_kv * row_bytes, row_bytes}, {}};
      p.options.causal = true;
      BackendCaps caps = caps_for(BackendKind::cpu);
      caps.threads = 1;
      const StatusOr<Route> route = plan_route(p, caps);
      if (!route.ok()) {
        std::fprintf(stderr, "%s\n", route.status().message().c_str());
        return 1;
      }
      std::vector<uint8_t> workspace(static_cast<size_t>(route->workspace_bytes + kWorkspaceAlign));
      void* ws = reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(workspace.data()) + kWorkspaceAlign - 1) /
                                         kWorkspaceAlign * kWorkspaceAlign);
      std::vector<double> ms;
      for (int call = 0; call < 18; ++call) {
        const double start = thread_cpu_ms();
        const Status s = attend(p, *route, ws, static_cast<size_t>(route->workspace_bytes), nullptr);
        const double end = thread_cpu_ms();
        if (!s.ok()) {
          std::fprintf(stderr, "%s\n", s.message().c_str());
          return 1;
        }
        if (call >= 3) ms.push_back(end - start);
      }
      std::sort(ms.begin(), ms.end());
      std::printf("%s %s n_q %lld: %.2f ms (min %.2f) thread CPU time, 1 thread\n", label,
                  std::string(kv_traits(type).name).c_str(), static_cast<long long>(n_q), ms[ms.size() / 2], ms[0]);
    }
  }
  return 0;
}
