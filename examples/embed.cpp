// Embedding kvflash from C++, as an inference engine would: a paged KV cache that quantizes on write, a route and
// its workspace planned for a decode step, the attention over the cache, and the memory report.
//
//   c++ -std=c++20 embed.cpp $(pkg-config --cflags --libs kvflash) -o embed_cpp   (or find_package(kvflash))
//
// Exits 0 on success; on any failure it prints the Status message and exits 1.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <kvflash/attention.h>
#include <kvflash/attention_problem.h>
#include <kvflash/backend.h>
#include <kvflash/kv_cache.h>
#include <kvflash/memory_report.h>
#include <kvflash/route.h>
#include <kvflash/version.h>

namespace {

constexpr int64_t kLayers = 2, kHeadsQ = 8, kHeadsKv = 2, kHeadDim = 128, kPrompt = 300;

int fail(const char* what, const kvflash::Status& s) {
  std::fprintf(stderr, "embed_cpp: %s: %s\n", what, s.message().c_str());
  return 1;
}

}  // namespace

int main() {
  using namespace kvflash;
  std::printf("kvflash %s\n", KVFLASH_VERSION);

  // 1. A KV cache for 2 layers (K q8_0, V turbo3), 1024 tokens in pages of 16; append the prompt.
  KvCacheConfig config;
  config.n_layers = kLayers;
  config.n_head_kv = kHeadsKv;
  config.d_k = config.d_v = kHeadDim;
  config.k_type = KvType::q8_0;
  config.v_type = KvType::turbo3;
  config.capacity_tokens = 1024;
  config.max_sequences = 4;
  auto cache = KvCache::create(config);
  if (!cache.ok()) return fail("create the cache", cache.status());
  auto seq = cache->add_sequence();
  if (!seq.ok()) return fail("add a sequence", seq.status());
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> k(kLayers * kPrompt * kHeadsKv * kHeadDim), v(k.size());
  for (float& x : k) x = normal(rng);
  for (float& x : v) x = normal(rng);
  if (Status s = cache->append(*seq, k, v, kPrompt); !s.ok()) return fail("append", s);
  std::printf("cache: %lld of %lld pages used, %lld bytes\n",
              static_cast<long long>(cache->pages_total() - cache->pages_free()),
              static_cast<long long>(cache->pages_total()), static_cast<long long>(cache->bytes()));

  // 2. One decode step of layer 1 through the sequence's page table.
  const int64_t pages_per_seq = cache->max_pages_per_seq();
  std::vector<int32_t> page_table(static_cast<size_t>(pages_per_seq)), kv_len(1);
  const SeqId seqs[] = {*seq};
  auto n_kv = cache->fill_batch(seqs, pages_per_seq, page_table, kv_len);
  if (!n_kv.ok()) return fail("fill the batch", n_kv.status());
  std::vector<float> q(kHeadsQ * kHeadDim), o(kHeadsQ * kHeadDim, NAN);
  for (float& x : q) x = normal(rng);
  AttentionProblem p;
  p.shape = {.n_seq = 1, .n_q = 1, .n_kv = *n_kv, .n_head_q = kHeadsQ, .n_head_kv = kHeadsKv, .d_k = kHeadDim,
             .d_v = kHeadDim};
  auto k_view = cache->k_view(1, page_table.data(), pages_per_seq);
  auto v_view = cache->v_view(1, page_table.data(), pages_per_seq);
  if (!k_view.ok() || !v_view.ok()) return fail("view the cache", k_view.ok() ? v_view.status() : k_view.status());
  p.k = *k_view;
  p.v = *v_view;
  p.kv_len = kv_len.data();
  p.q = {q.data(), {kHeadsQ * kHeadDim * 4, kHeadDim * 4, kHeadDim * 4}};
  p.o = {o.data(), {kHeadsQ * kHeadDim * 4, kHeadDim * 4, kHeadDim * 4}};
  p.options.causal = true;
  if (Status s = validate(p); !s.ok()) return fail("validate", s);
  std::printf("problem: %s\n", describe(p).c_str());

  // 3. Plan the route on the fastest backend this build has, and allocate its workspace once.
  const BackendKind backend = backend_available(BackendKind::cpu) ? BackendKind::cpu : BackendKind::ref;
  auto route = plan_route(p, caps_for(backend));
  if (!route.ok()) return fail("plan a route", route.status());
  std::printf("route: %s on %s, %lld split(s), workspace %lld bytes\n", kernel_name(route->kernel).data(),
              backend_name(backend).data(), static_cast<long long>(route->n_splits),
              static_cast<long long>(route->workspace_bytes));
  const size_t ws_bytes = static_cast<size_t>(route->workspace_bytes);
  std::unique_ptr<void, decltype(&std::free)> workspace(
      ws_bytes > 0 ? std::aligned_alloc(kWorkspaceAlign, (ws_bytes + kWorkspaceAlign - 1) / kWorkspaceAlign *
                                                             kWorkspaceAlign)
                   : nullptr,
      &std::free);

  // 4. Attend along the route: nothing is allocated inside.
  if (Status s = attend(p, *route, workspace.get(), ws_bytes); !s.ok()) return fail("attend", s);
  for (float x : o) {
    if (!std::isfinite(x)) return fail("attend", Status(StatusCode::internal, "non-finite output"));
  }
  std::printf("O[head 0][0..3] = %.6f %.6f %.6f %.6f\n", o[0], o[1], o[2], o[3]);

  // 5. The memory report: the cache per layer, the workspace, and the rest of what we hold, against the 16 MiB
  // this engine gave attention.
  MemoryReport report;
  report.device = "budget";
  report.device_total = 16 << 20;
  report.device_free = report.device_total - cache->bytes() - route->workspace_bytes;
  for (int64_t l = 0; l < kLayers; ++l) {
    report.add("kv.layer." + std::to_string(l), MemoryKind::kv_cache, cache->layout().layer_bytes);
  }
  report.add("workspace", MemoryKind::workspace, route->workspace_bytes);
  report.add("kv.page_tables", MemoryKind::other, cache->bytes() - kLayers * cache->layout().layer_bytes);
  std::printf("memory:\n%s\n", report.to_string().c_str());
  std::printf("embed_cpp: ok\n");
  return 0;
}
