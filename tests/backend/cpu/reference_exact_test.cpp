// The oracle on tiny problems whose answers are computed by hand: one key, two keys with known scores,
// bottom-right causal alignment, windows, sinks, GGML's ALiBi slopes, softcap before the mask; and the errors it
// reports for data validate() cannot see (kv_len, page numbers).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "kvflash/reference.h"

namespace kvflash {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

/// f32 K/V, one sequence, dense [head, row, dim] buffers; O poisoned.
struct TinyProblem {
  AttentionShape shape;
  std::vector<float> q, k, v, o, mask, sinks;
  AttentionOptions options;

  TinyProblem(int64_t n_q, int64_t n_kv, int64_t n_head_q, int64_t d_k, int64_t d_v)
      : shape{.n_seq = 1, .n_q = n_q, .n_kv = n_kv, .n_head_q = n_head_q, .n_head_kv = 1, .d_k = d_k, .d_v = d_v},
        q(n_head_q * n_q * d_k, 1.0f),
        k(n_kv * d_k, 0.0f),
        v(n_kv * d_v, 0.0f),
        o(n_head_q * n_q * d_v, kNaN) {}

  /// Value row j = the j-th unit vector, so that output element j is the weight of key j.
  void one_hot_values() {
    for (int64_t j = 0; j < shape.n_kv; ++j) v[j * shape.d_v + j] = 1.0f;
  }

  AttentionProblem problem() {
    AttentionProblem p;
    p.shape = shape;
    p.k.type = p.v.type = KvType::f32;
    p.q = {q.data(), {0, shape.n_q * shape.d_k * 4, shape.d_k * 4}};
    p.k.data = k.data();
    p.k.stride = {0, shape.n_kv * shape.d_k * 4, shape.d_k * 4};
    p.v.data = v.data();
    p.v.stride = {0, shape.n_kv * shape.d_v * 4, shape.d_v * 4};
    p.o = {o.data(), {0, shape.n_q * shape.d_v * 4, shape.d_v * 4}};
    if (!mask.empty()) p.mask = {mask.data(), MaskType::f32, {0, 0, shape.n_kv * 4}};  // [n_q, n_kv] for all heads
    p.options = options;
    if (!sinks.empty()) p.options.sinks = sinks.data();
    return p;
  }

  float out(int64_t h, int64_t i, int64_t c) const { return o[(h * shape.n_q + i) * shape.d_v + c]; }

  void run() {
    const Status st = attend_reference(problem());
    ASSERT_TRUE(st.ok()) << st.message();
  }
};

TEST(ReferenceExact, OneKeyGivesItsValue) {
  TinyProblem t(/*n_q=*/3, /*n_kv=*/1, /*n_head_q=*/2, /*d_k=*/4, /*d_v=*/3);
  t.q = {0.5f, -1, 2, 3, 1, 1, 1, 1, -7, 0.25f, 0, 1, 2, 2, 2, 2, 0, 0, 0, 0, 9, -9, 9, -9};
  t.k = {0.3f, 0.1f, -0.2f, 4};
  t.v = {1.5f, -2.25f, 3.0f};
  t.run();
  for (int64_t h = 0; h < 2; ++h)
    for (int64_t i = 0; i < 3; ++i)
      for (int64_t c = 0; c < 3; ++c) EXPECT_EQ(t.out(h, i, c), t.v[c]) << h << " " << i << " " << c;
}

TEST(ReferenceExact, CausalRowsBeforeTheOnlyKeyOutputZeros) {
  // n_q = 3 over 1 key: rows sit at positions -2, -1, 0; only the last sees key 0.
  TinyProblem t(3, 1, 1, 2, 2);
  t.v = {4.0f, -5.0f};
  t.options.causal = true;
  t.run();
  EXPECT_EQ(t.out(0, 0, 0), 0.0f);
  EXPECT_EQ(t.out(0, 1, 1), 0.0f);
  EXPECT_EQ(t.out(0, 2, 0), 4.0f);
  EXPECT_EQ(t.out(0, 2, 1), -5.0f);
}

TEST(ReferenceExact, TwoKeysWithKnownScoresGetTheirSoftmaxWeights) {
  // Scores 0 and ln 3: weights 1/4 and 3/4.
  TinyProblem t(1, 2, 1, 1, 2);
  t.q = {1.0f};
  t.k = {0.0f, 1.0f};
  t.one_hot_values();
  t.options.scale = std::log(3.0);
  t.run();
  EXPECT_FLOAT_EQ(t.out(0, 0, 0), 0.25f);
  EXPECT_FLOAT_EQ(t.out(0, 0, 1), 0.75f);
}

TEST(ReferenceExact, CausalIsBottomRightAligned) {
  // n_q = 3, n_kv = 5: row i sits at position 2 + i and sees keys 0 .. 2 + i, all with score 0.
  TinyProblem t(3, 5, 1, 8, 5);
  t.one_hot_values();
  t.options.causal = true;
  t.run();
  for (int64_t i = 0; i < 3; ++i)
    for (int64_t j = 0; j < 5; ++j)
      EXPECT_FLOAT_EQ(t.out(0, i, j), j <= 2 + i ? 1.0f / static_cast<float>(3 + i) : 0.0f) << i << " " << j;
}

TEST(ReferenceExact, WindowHidesKeysAtLeastWindowBehind) {
  TinyProblem t(3, 5, 1, 8, 5);
  t.one_hot_values();
  t.options.window = 2;
  t.options.causal = true;  // row i (position p = 2 + i) sees keys p - 1 and p
  t.run();
  for (int64_t i = 0; i < 3; ++i)
    for (int64_t j = 0; j < 5; ++j)
      EXPECT_FLOAT_EQ(t.out(0, i, j), (j == 1 + i || j == 2 + i) ? 0.5f : 0.0f) << i << " " << j;
  t.options.causal = false;  // without causal, keys after the position stay visible: row 0 sees 1, 2, 3, 4
  t.run();
  for (int64_t j = 0; j < 5; ++j) EXPECT_FLOAT_EQ(t.out(0, 0, j), j >= 1 ? 0.25f : 0.0f) << j;
}

TEST(ReferenceExact, SinksAddMassToTheDenominatorOnly) {
  // One key with score 0 and a sink of ln 3: the key gets 1 / (1 + 3) of the mass.
  TinyProblem t(1, 1, 1, 4, 2);
  t.v = {2.0f, -8.0f};
  t.sinks = {static_cast<float>(std::log(3.0))};
  t.run();
  EXPECT_FLOAT_EQ(t.out(0, 0, 0), 0.5f);
  EXPECT_FLOAT_EQ(t.out(0, 0, 1), -2.0f);
}

TEST(ReferenceExact, FullyMaskedRowsOutputZerosEvenWithASink) {
  TinyProblem t(2, 2, 1, 4, 2);
  t.v = {1.0f, 2.0f, 3.0f, 4.0f};
  t.mask = {kNegInf, kNegInf, 0.0f, kNegInf};  // row 0 sees nothing, row 1 sees key 0
  t.sinks = {1.0f};
  t.run();
  EXPECT_EQ(t.out(0, 0, 0), 0.0f);
  EXPECT_EQ(t.out(0, 0, 1), 0.0f);
  const float w = static_cast<float>(1.0 / (1.0 + std::exp(1.0)));
  EXPECT_FLOAT_EQ(t.out(0, 1, 0), w * 1.0f);
  EXPECT_FLOAT_EQ(t.out(0, 1, 1), w * 2.0f);
}

TEST(ReferenceExact, AlibiUsesGgmlSlopes) {
  // 6 heads, max bias 8: n_head_log2 = 4, m0 = 2^-2, m1 = 2^-1; slopes m0^1..m0^4, then m1^1, m1^3.
  const double slopes[6] = {1.0 / 4, 1.0 / 16, 1.0 / 64, 1.0 / 256, 1.0 / 2, 1.0 / 8};
  for (int64_t h = 0; h < 6; ++h) EXPECT_DOUBLE_EQ(alibi_slope<double>(8.0, 6, h), slopes[h]) << h;
  // Two keys with score 0; the query sits at position 1, so key 0 gets bias -slope and key 1 none.
  TinyProblem t(1, 2, 6, 4, 2);
  t.one_hot_values();
  t.options.alibi_max_bias = 8.0;
  t.run();
  for (int64_t h = 0; h < 6; ++h) {
    const double far = std::exp(-slopes[h]);
    EXPECT_FLOAT_EQ(t.out(h, 0, 0), static_cast<float>(far / (1 + far))) << h;
    EXPECT_FLOAT_EQ(t.out(h, 0, 1), static_cast<float>(1 / (1 + far))) << h;
  }
}

TEST(ReferenceExact, SoftcapIsAppliedBeforeTheMask) {
  // Scores 0 and 10, softcap 5: capped to 0 and 5 tanh 2; then the mask adds 1 to key 1.
  TinyProblem t(1, 2, 1, 1, 2);
  t.q = {1.0f};
  t.k = {0.0f, 10.0f};
  t.one_hot_values();
  t.options.scale = 1.0;
  t.options.softcap = 5.0;
  t.mask = {0.0f, 1.0f};
  t.run();
  const double s1 = 5.0 * std::tanh(2.0) + 1.0;
  EXPECT_FLOAT_EQ(t.out(0, 0, 0), static_cast<float>(1 / (1 + std::exp(s1))));
  EXPECT_FLOAT_EQ(t.out(0, 0, 1), static_cast<float>(std::exp(s1) / (1 + std::exp(s1))));
}

TEST(ReferenceExact, InvalidProblemsAreRejectedBeforeAnythingIsWritten) {
  TinyProblem t(1, 2, 3, 4, 2);
  AttentionProblem p = t.problem();
  p.shape.n_head_kv = 2;  // does not divide 3
  const Status st = attend_reference(p);
  EXPECT_EQ(st.code(), StatusCode::invalid_argument);
  EXPECT_NE(st.message().find("n_head_q = 3 is not a multiple of n_head_kv = 2"), std::string::npos) << st.message();
  for (float x : t.o) EXPECT_TRUE(std::isnan(x));
}

TEST(ReferenceExact, KvLenAndPageNumbersAreChecked) {
  TinyProblem t(1, 4, 1, 4, 2);
  AttentionProblem p = t.problem();
  const int32_t too_long = 5;
  p.kv_len = &too_long;
  Status st = attend_reference(p);
  EXPECT_EQ(st.code(), StatusCode::invalid_argument);
  EXPECT_NE(st.message().find("kv_len[0] = 5 is outside [0, n_kv = 4]"), std::string::npos) << st.message();

  p = t.problem();
  const int32_t pages[2] = {0, -1};
  p.k.paging = {pages, /*pages_per_seq=*/2, /*page_rows=*/2, /*page_bytes=*/2 * 16};
  st = attend_reference(p);
  EXPECT_EQ(st.code(), StatusCode::invalid_argument);
  EXPECT_NE(st.message().find("k.paging.pages[1] = -1 is negative"), std::string::npos) << st.message();
}

}  // namespace
}  // namespace kvflash
