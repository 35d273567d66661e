// Embedding kvflash from C++: quantize a KV cache, describe one decode step, attend over the quantized cache.
//
//   c++ -std=c++20 embed.cpp $(pkg-config --cflags --libs kvflash) -o embed_cpp   (or find_package(kvflash))
//
// Exits 0 on success; on any failure it prints the Status message and exits 1.
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include <kvflash/attention_problem.h>
#include <kvflash/backend.h>
#include <kvflash/kv_type.h>
#include <kvflash/quantize.h>
#include <kvflash/reference.h>
#include <kvflash/version.h>

namespace {

constexpr int64_t kHeadsQ = 8, kHeadsKv = 2, kHeadDim = 128, kContext = 300;

int fail(const char* what, const kvflash::Status& s) {
  std::fprintf(stderr, "embed_cpp: %s: %s\n", what, s.message().c_str());
  return 1;
}

}  // namespace

int main() {
  using namespace kvflash;
  const KvType ktype = KvType::q8_0, vtype = KvType::turbo3;
  const int64_t k_row = head_row_bytes(ktype, kHeadDim), v_row = head_row_bytes(vtype, kHeadDim);
  std::printf("kvflash %s, K %s (%lld bytes/row), V %s (%lld bytes/row)\n", KVFLASH_VERSION,
              kv_traits(ktype).name.data(), static_cast<long long>(k_row), kv_traits(vtype).name.data(),
              static_cast<long long>(v_row));

  // 1. Quantize the cache, [head][token] rows.
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> row(kHeadDim);
  std::vector<std::byte> k_cache(static_cast<size_t>(k_row * kHeadsKv * kContext));
  std::vector<std::byte> v_cache(static_cast<size_t>(v_row * kHeadsKv * kContext));
  for (int64_t r = 0; r < kHeadsKv * kContext; ++r) {
    for (float& x : row) x = normal(rng);
    if (Status s = quantize_row(ktype, row.data(), kHeadDim, k_cache.data() + r * k_row); !s.ok()) {
      return fail("quantize K", s);
    }
    for (float& x : row) x = normal(rng);
    if (Status s = quantize_row(vtype, row.data(), kHeadDim, v_cache.data() + r * v_row); !s.ok()) {
      return fail("quantize V", s);
    }
  }

  // 2. One decode step over the whole cache: a query row per head, causal, dense layouts (byte strides).
  std::vector<float> q(kHeadsQ * kHeadDim), o(kHeadsQ * kHeadDim, NAN);
  for (float& x : q) x = normal(rng);
  AttentionProblem p;
  p.shape = {.n_seq = 1, .n_q = 1, .n_kv = kContext, .n_head_q = kHeadsQ, .n_head_kv = kHeadsKv,
             .d_k = kHeadDim, .d_v = kHeadDim};
  p.q = {q.data(), {kHeadsQ * kHeadDim * 4, kHeadDim * 4, kHeadDim * 4}};
  p.k = {ktype, k_cache.data(), {kHeadsKv * kContext * k_row, kContext * k_row, k_row}, {}};
  p.v = {vtype, v_cache.data(), {kHeadsKv * kContext * v_row, kContext * v_row, v_row}, {}};
  p.o = {o.data(), {kHeadsQ * kHeadDim * 4, kHeadDim * 4, kHeadDim * 4}};
  p.options.causal = true;
  if (Status s = validate(p); !s.ok()) return fail("validate", s);
  std::printf("problem: %s\n", describe(p).c_str());

  // 3. Attend (the reference backend: the oracle every other backend is checked against).
  if (Status s = attend_reference(p); !s.ok()) return fail("attend", s);
  for (float x : o) {
    if (!std::isfinite(x)) return fail("attend", Status(StatusCode::internal, "non-finite output"));
  }
  std::printf("O[head 0][0..3] = %.6f %.6f %.6f %.6f\n", o[0], o[1], o[2], o[3]);
  std::printf("backends:");
  for (int b = 0; b < kBackendCount; ++b) {
    const auto kind = static_cast<BackendKind>(b);
    std::printf(" %s=%s", backend_name(kind).data(), backend_available(kind) ? "yes" : "no");
  }
  std::printf("\nembed_cpp: ok\n");
  return 0;
}
