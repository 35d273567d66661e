// Attention reads a KvCache through its page table: over a batch of sequences of different lengths (forked,
// truncated, restored), the reference oracle on the paged views gives exactly what it gives on a contiguous copy
// of the same rows, quantized independently by the test.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kvcache/cache_test_util.h"
#include "kvflash/attention_problem.h"
#include "kvflash/kv_cache.h"
#include "kvflash/reference.h"

namespace kvflash {
namespace {

using testing::append_ok;
using testing::make_cache;
using testing::quantized;
using testing::random_rows;
using testing::SequenceRows;

struct PairCase {
  KvType k, v;
  int64_t d_k, d_v;
};

std::string case_name(const ::testing::TestParamInfo<PairCase>& info) {
  return std::string(kv_traits(info.param.k).name) + "_" + std::string(kv_traits(info.param.v).name) + "_" +
         std::to_string(info.param.d_k) + "_" + std::to_string(info.param.d_v);
}

// Dense [n_seq, n_head, rows, d] float32 strides in bytes.
Strides dense(int64_t n_head, int64_t rows, int64_t d) {
  const int64_t row = d * static_cast<int64_t>(sizeof(float));
  return Strides{n_head * rows * row, rows * row, row};
}

class PagedAttention : public ::testing::TestWithParam<PairCase> {};

TEST_P(PagedAttention, PagedViewsGiveTheSameOutputAsAContiguousCopy) {
  const PairCase pc = GetParam();
  KvCacheConfig c;
  c.n_layers = 2;
  c.n_head_kv = 2;
  c.d_k = pc.d_k;
  c.d_v = pc.d_v;
  c.k_type = pc.k;
  c.v_type = pc.v;
  c.page_rows = 8;
  c.n_pages = 32;
  c.max_sequences = 6;
  KvCache cache = make_cache(c);

  // A: 37 tokens in two chunks. E, removed midway, leaves holes so that pages are not handed out in order.
  // B: fork of A cut to 20 tokens (inside a shared page) and grown by 9. C: 5 tokens. D: C restored, grown by 12.
  uint64_t seed = 300;
  const SeqId a = *cache.add_sequence(), e = *cache.add_sequence();
  SequenceRows a_rows(c);
  for (int64_t n : {11, 26}) {
    auto r = random_rows(c, n, ++seed);
    append_ok(cache, a, r);
    a_rows.append(r);
    append_ok(cache, e, random_rows(c, 9, ++seed));
  }
  ASSERT_TRUE(cache.remove(e).ok());
  const SeqId b = *cache.fork(a);
  SequenceRows b_rows = a_rows;
  ASSERT_TRUE(cache.truncate(b, 20).ok());
  b_rows.truncate(20);
  auto b_tail = random_rows(c, 9, ++seed);
  append_ok(cache, b, b_tail);
  b_rows.append(b_tail);
  const SeqId cseq = *cache.add_sequence();
  SequenceRows c_rows(c);
  auto c_prompt = random_rows(c, 5, ++seed);
  append_ok(cache, cseq, c_prompt);
  c_rows.append(c_prompt);
  auto d = cache.restore(*cache.checkpoint(cseq));
  ASSERT_TRUE(d.ok()) << d.status().message();
  SequenceRows d_rows = c_rows;
  auto d_tail = random_rows(c, 12, ++seed);
  append_ok(cache, *d, d_tail);
  d_rows.append(d_tail);

  const std::vector<SeqId> batch = {b, cseq, a, *d};
  const std::vector<const SequenceRows*> truth = {&b_rows, &c_rows, &a_rows, &d_rows};
  const int64_t n_seq = 4, pages_per_seq = 6;
  std::vector<int32_t> table(static_cast<size_t>(n_seq * pages_per_seq)), kv_len(n_seq);
  auto n_kv = cache.fill_batch(batch, pages_per_seq, table, kv_len);
  ASSERT_TRUE(n_kv.ok()) << n_kv.status().message();
  ASSERT_EQ(*n_kv, 37);
  ASSERT_EQ(kv_len, (std::vector<int32_t>{29, 5, 37, 17}));

  AttentionShape shape;
  shape.n_seq = n_seq;
  shape.n_q = 3;  // a multi-token step (speculative decoding verifies drafts)
  shape.n_kv = *n_kv;
  shape.n_head_q = 4;  // GQA 2
  shape.n_head_kv = c.n_head_kv;
  shape.d_k = c.d_k;
  shape.d_v = c.d_v;
  std::mt19937_64 rng(++seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> q(static_cast<size_t>(n_seq * shape.n_head_q * shape.n_q * c.d_k));
  for (float& x : q) x = normal(rng);

  // The contiguous copy: rows quantized here from the test's own floats; rows past kv_len hold other data.
  const int64_t kb = cache.layout().k_row_bytes, vb = cache.layout().v_row_bytes;
  std::vector<std::byte> k_dense(static_cast<size_t>(n_seq * c.n_head_kv * shape.n_kv * kb));
  std::vector<std::byte> v_dense(static_cast<size_t>(n_seq * c.n_head_kv * shape.n_kv * vb));
  const auto junk = random_rows(c, shape.n_kv, ++seed);
  for (int64_t layer = 0; layer < c.n_layers; ++layer) {
    for (int64_t s = 0; s < n_seq; ++s) {
      for (int64_t h = 0; h < c.n_head_kv; ++h) {
        for (int64_t t = 0; t < shape.n_kv; ++t) {
          const bool real = t < kv_len[s];
          const float* kr = real ? truth[s]->k_row(layer, t, h) : junk.k.data() + (t * c.n_head_kv + h) * c.d_k;
          const float* vr = real ? truth[s]->v_row(layer, t, h) : junk.v.data() + (t * c.n_head_kv + h) * c.d_v;
          const int64_t row = (s * c.n_head_kv + h) * shape.n_kv + t;
          const auto kq = quantized(c.k_type, kr, c.d_k), vq = quantized(c.v_type, vr, c.d_v);
          std::memcpy(k_dense.data() + row * kb, kq.data(), kq.size());
          std::memcpy(v_dense.data() + row * vb, vq.data(), vq.size());
        }
      }
    }

    const auto problem = [&](KvView k, KvView v, std::vector<float>& o) {
      o.assign(static_cast<size_t>(n_seq * shape.n_head_q * shape.n_q * c.d_v),
               std::numeric_limits<float>::quiet_NaN());
      AttentionProblem p;
      p.shape = shape;
      p.q = QueryView{q.data(), dense(shape.n_head_q, shape.n_q, c.d_k)};
      p.k = k;
      p.v = v;
      p.o = OutputView{o.data(), dense(shape.n_head_q, shape.n_q, c.d_v)};
      p.options.causal = true;
      p.kv_len = kv_len.data();
      return p;
    };
    auto k_paged = cache.k_view(layer, table.data(), pages_per_seq);
    auto v_paged = cache.v_view(layer, table.data(), pages_per_seq);
    ASSERT_TRUE(k_paged.ok() && v_paged.ok());
    KvView k_flat{c.k_type, k_dense.data(), Strides{c.n_head_kv * shape.n_kv * kb, shape.n_kv * kb, kb}, {}};
    KvView v_flat{c.v_type, v_dense.data(), Strides{c.n_head_kv * shape.n_kv * vb, shape.n_kv * vb, vb}, {}};
    std::vector<float> o_paged, o_flat;
    const AttentionProblem paged = problem(*k_paged, *v_paged, o_paged);
    const AttentionProblem flat = problem(k_flat, v_flat, o_flat);
    Status s = validate(paged);
    ASSERT_TRUE(s.ok()) << s.message() << "\n" << describe(paged);
    s = validate(flat);
    ASSERT_TRUE(s.ok()) << s.message();
    s = attend_reference(paged);
    ASSERT_TRUE(s.ok()) << s.message();
    s = attend_reference(flat);
    ASSERT_TRUE(s.ok()) << s.message();

    double energy = 0;
    for (size_t i = 0; i < o_flat.size(); ++i) {
      ASSERT_TRUE(std::isfinite(o_flat[i])) << "element " << i << " unwritten";
      energy += static_cast<double>(o_flat[i]) * o_flat[i];
    }
    EXPECT_GT(energy, 0.0);
    // Same bytes, same oracle, same order of arithmetic: equal to the bit.
    EXPECT_EQ(std::memcmp(o_paged.data(), o_flat.data(), o_flat.size() * sizeof(float)), 0) << "layer " << layer;
  }
}

INSTANTIATE_TEST_SUITE_P(TypePairs, PagedAttention,
                         // f16 x f16 at head dim 256 over forked and restored sequences is seed 002's failing case.
                         ::testing::Values(PairCase{KvType::f16, KvType::f16, 128, 128},
                                           PairCase{KvType::f16, KvType::f16, 256, 256},
                                           PairCase{KvType::q8_0, KvType::q8_0, 96, 64},
                                           PairCase{KvType::q4_0, KvType::f16, 96, 64},
                                           PairCase{KvType::turbo3, KvType::turbo3, 96, 64},
                                           PairCase{KvType::turbo4, KvType::q8_0, 128, 96},
                                           PairCase{KvType::f32, KvType::bf16, 64, 64},
                                           PairCase{KvType::q5_1, KvType::turbo2, 64, 192}),
                         case_name);

}  // namespace
}  // namespace kvflash
