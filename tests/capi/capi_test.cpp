// The C API against the C++ API it wraps: same bytes from quantize, the same output from attend on every layout,
// errors as codes with the library's message, and a last error that belongs to its thread.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "kvflash/backend.h"
#include "kvflash/kvflash.h"
#include "kvflash/quantize.h"
#include "kvflash/reference.h"
#include "kvflash/version.h"
#include "support/problem_builder.h"

namespace kvflash {
namespace {

std::vector<float> random_row(int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n));
  for (float& v : x) v = normal(rng);
  x[static_cast<size_t>(seed % static_cast<uint64_t>(n))] *= 12.0f;  // an outlier sets the block's scale
  return x;
}

TEST(CApi, VersionIsTheLibraryVersion) { EXPECT_STREQ(kvflash_version(), KVFLASH_VERSION); }

TEST(CApi, TypeIdsAreKvTypeValuesAndNamesRoundTrip) {
  ASSERT_EQ(kvflash_type_count(), kKvTypeCount);
  for (const KvTraits& t : all_kv_types()) {
    const int id = static_cast<int>(t.type);
    EXPECT_EQ(kvflash_type_from_name(std::string(t.name).c_str()), id);
    EXPECT_EQ(std::string(kvflash_type_name(id)), t.name);
    EXPECT_EQ(kvflash_type_block_elems(id), t.block_elems);
    EXPECT_EQ(kvflash_type_block_bytes(id), t.block_bytes);
    EXPECT_EQ(kvflash_type_is_quantized(id), t.quantized ? 1 : 0);
    EXPECT_EQ(kvflash_type_is_rotated(id), t.rotated ? 1 : 0);
    EXPECT_EQ(kvflash_stored_dim(id, 80), stored_dim(t.type, 80));
  }
  EXPECT_LT(kvflash_type_from_name("Q8_0"), 0);
  EXPECT_LT(kvflash_type_from_name("q8_0 "), 0);
  EXPECT_LT(kvflash_type_from_name(nullptr), 0);
  EXPECT_EQ(kvflash_type_name(-1), nullptr);
  EXPECT_EQ(kvflash_type_block_bytes(kKvTypeCount), 0);
}

TEST(CApi, RowBytesIsBytesOfNValuesAndZeroWhenNIsInvalid) {
  for (const KvTraits& t : all_kv_types()) {
    const int id = static_cast<int>(t.type);
    for (int64_t blocks : {0, 1, 3, 40}) {
      EXPECT_EQ(kvflash_row_bytes(id, blocks * t.block_elems), static_cast<size_t>(blocks * t.block_bytes))
          << t.name;
    }
    if (t.block_elems > 1) {
      EXPECT_EQ(kvflash_row_bytes(id, t.block_elems + 1), 0u) << t.name;
    }
    EXPECT_EQ(kvflash_row_bytes(id, -static_cast<int64_t>(t.block_elems)), 0u) << t.name;
    if (t.block_bytes > t.block_elems) {  // more than a byte per value: a large enough n overflows int64 bytes
      EXPECT_EQ(kvflash_row_bytes(id, INT64_MAX / t.block_elems * t.block_elems), 0u) << t.name << ": overflow";
    }
  }
  EXPECT_EQ(kvflash_row_bytes(kKvTypeCount, 32), 0u);
  EXPECT_EQ(kvflash_row_bytes(-1, 32), 0u);
}

TEST(CApi, QuantizeRowWritesTheBytesOfTheCppQuantizer) {
  for (const KvTraits& t : all_kv_types()) {
    const int id = static_cast<int>(t.type);
    const int64_t n = 2 * (t.block_elems > 1 ? t.block_elems : 64);
    const std::vector<float> x = random_row(n, 7 + static_cast<uint64_t>(id));
    const size_t bytes = kvflash_row_bytes(id, n);
    std::vector<uint8_t> via_c(bytes + 1, 0xA5), via_cpp(bytes + 1, 0x5A);
    ASSERT_EQ(kvflash_quantize_row(id, x.data(), n, via_c.data()), KVFLASH_OK) << kvflash_last_error();
    ASSERT_TRUE(quantize_row(t.type, x.data(), n, via_cpp.data()).ok());
    EXPECT_TRUE(std::equal(via_c.begin(), via_c.end() - 1, via_cpp.begin())) << t.name;
    EXPECT_EQ(via_c.back(), 0xA5) << t.name << ": wrote past row_bytes";

    std::vector<float> back_c(static_cast<size_t>(n), NAN), back_cpp(static_cast<size_t>(n), 1.0f);
    std::vector<float> rot_c(static_cast<size_t>(n), NAN), rot_cpp(static_cast<size_t>(n), 1.0f);
    ASSERT_EQ(kvflash_dequantize_row(id, via_c.data(), n, back_c.data()), KVFLASH_OK);
    ASSERT_TRUE(dequantize_row(t.type, via_c.data(), n, back_cpp.data()).ok());
    ASSERT_EQ(kvflash_dequantize_row_rotated(id, via_c.data(), n, rot_c.data()), KVFLASH_OK);
    ASSERT_TRUE(dequantize_row(t.type, via_c.data(), n, rot_cpp.data(), /*rotated=*/true).ok());
    EXPECT_EQ(0, std::memcmp(back_c.data(), back_cpp.data(), back_c.size() * sizeof(float))) << t.name;
    EXPECT_EQ(0, std::memcmp(rot_c.data(), rot_cpp.data(), rot_c.size() * sizeof(float))) << t.name;
  }
}

TEST(CApi, RowErrorsAreCodesWithAMessageAndLeaveDstUntouched) {
  const std::vector<float> x = random_row(64, 3);
  std::vector<uint8_t> dst(128, 0x77);
  EXPECT_EQ(kvflash_quantize_row(KVFLASH_TYPE_Q4_0, x.data(), 48, dst.data()), KVFLASH_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(kvflash_last_error()).find("n = 48"), std::string::npos) << kvflash_last_error();
  EXPECT_NE(std::string(kvflash_last_error()).find("q4_0"), std::string::npos) << kvflash_last_error();
  EXPECT_EQ(kvflash_quantize_row(KVFLASH_TYPE_TURBO3, x.data(), 64, dst.data()), KVFLASH_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(kvflash_quantize_row(11, x.data(), 64, dst.data()), KVFLASH_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(kvflash_last_error()).find("type = 11"), std::string::npos) << kvflash_last_error();
  EXPECT_EQ(kvflash_quantize_row(KVFLASH_TYPE_Q8_0, nullptr, 32, dst.data()), KVFLASH_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(kvflash_last_error()).find("src"), std::string::npos) << kvflash_last_error();
  EXPECT_EQ(kvflash_dequantize_row(KVFLASH_TYPE_Q8_0, dst.data(), -32, nullptr), KVFLASH_ERROR_INVALID_ARGUMENT);
  for (uint8_t b : dst) ASSERT_EQ(b, 0x77);
  // An empty row is a valid no-op, even with null buffers.
  EXPECT_EQ(kvflash_quantize_row(KVFLASH_TYPE_Q8_0, nullptr, 0, nullptr), KVFLASH_OK);
}

TEST(CApi, LastErrorBelongsToTheThreadThatFailed) {
  ASSERT_EQ(kvflash_quantize_row(KVFLASH_TYPE_Q8_0, nullptr, 7, nullptr), KVFLASH_ERROR_INVALID_ARGUMENT);
  const std::string mine = kvflash_last_error();
  ASSERT_NE(mine.find("n = 7"), std::string::npos);
  std::string other_before, other_after;
  std::thread other([&] {
    other_before = kvflash_last_error();
    (void)kvflash_quantize_row(99, nullptr, 32, nullptr);
    other_after = kvflash_last_error();
  });
  other.join();
  EXPECT_EQ(other_before, "");
  EXPECT_NE(other_after.find("type = 99"), std::string::npos);
  EXPECT_EQ(std::string(kvflash_last_error()), mine);
  // A successful call leaves the last error as it was (errno-like).
  const std::vector<float> x = random_row(32, 5);
  std::vector<uint8_t> dst(34);
  ASSERT_EQ(kvflash_quantize_row(KVFLASH_TYPE_Q8_0, x.data(), 32, dst.data()), KVFLASH_OK);
  EXPECT_EQ(std::string(kvflash_last_error()), mine);
}

TEST(CApi, BackendsByNameAndAvailability) {
  EXPECT_EQ(kvflash_backend_from_name("ref"), KVFLASH_BACKEND_REF);
  EXPECT_EQ(kvflash_backend_from_name("cuda"), KVFLASH_BACKEND_CUDA);
  EXPECT_LT(kvflash_backend_from_name("tpu"), 0);
  EXPECT_STREQ(kvflash_backend_name(KVFLASH_BACKEND_CPU), "cpu");
  EXPECT_EQ(kvflash_backend_name(3), nullptr);
  EXPECT_EQ(kvflash_backend_available(KVFLASH_BACKEND_REF), 1);
  for (int b = 0; b < kBackendCount; ++b) {
    EXPECT_EQ(kvflash_backend_available(b), backend_available(static_cast<BackendKind>(b)) ? 1 : 0);
  }
  EXPECT_EQ(kvflash_backend_available(-1), 0);
}

// ---- problems: the C handle must describe exactly the C++ problem ----

/// A C problem carrying every field of `p` explicitly (strides, paging, mask, options), writing into `o`.
struct CProblem {
  kvflash_problem* handle = kvflash_problem_create();
  ~CProblem() { kvflash_problem_destroy(handle); }
};

void copy_into(const AttentionProblem& p, float* o, kvflash_problem* h) {
  const AttentionShape& s = p.shape;
  const auto strides = [](const Strides& st) { return std::vector<int64_t>{st.seq, st.head, st.row}; };
  ASSERT_EQ(kvflash_problem_set_shape(h, s.n_seq, s.n_q, s.n_kv, s.n_head_q, s.n_head_kv, s.d_k, s.d_v), 0);
  ASSERT_EQ(kvflash_problem_set_q(h, p.q.data, strides(p.q.stride).data()), 0);
  ASSERT_EQ(kvflash_problem_set_k(h, static_cast<int>(p.k.type), p.k.data, strides(p.k.stride).data()), 0);
  ASSERT_EQ(kvflash_problem_set_v(h, static_cast<int>(p.v.type), p.v.data, strides(p.v.stride).data()), 0);
  ASSERT_EQ(kvflash_problem_set_k_pages(h, p.k.paging.pages, p.k.paging.pages_per_seq, p.k.paging.page_rows,
                                        p.k.paging.page_bytes), 0);
  ASSERT_EQ(kvflash_problem_set_v_pages(h, p.v.paging.pages, p.v.paging.pages_per_seq, p.v.paging.page_rows,
                                        p.v.paging.page_bytes), 0);
  ASSERT_EQ(kvflash_problem_set_o(h, o, strides(p.o.stride).data()), 0);
  if (p.mask.data != nullptr) {
    ASSERT_EQ(kvflash_problem_set_mask(h, static_cast<int>(p.mask.type), p.mask.data, strides(p.mask.stride).data()),
              0);
  }
  ASSERT_EQ(kvflash_problem_set_scale(h, p.options.scale), 0);
  ASSERT_EQ(kvflash_problem_set_causal(h, p.options.causal ? 1 : 0), 0);
  ASSERT_EQ(kvflash_problem_set_window(h, p.options.window), 0);
  ASSERT_EQ(kvflash_problem_set_alibi(h, p.options.alibi_max_bias), 0);
  ASSERT_EQ(kvflash_problem_set_softcap(h, p.options.softcap), 0);
  ASSERT_EQ(kvflash_problem_set_sinks(h, p.options.sinks), 0);
  ASSERT_EQ(kvflash_problem_set_kv_len(h, p.kv_len), 0);
}

/// Runs `spec` through the C API (into a second, poisoned output buffer with O's layout) and through
/// attend_reference, and asserts bitwise-equal outputs and the same description.
void expect_c_matches_cpp(const testing::ProblemSpec& spec) {
  auto hp = testing::HostProblem::make(spec);
  ASSERT_TRUE(hp.ok()) << hp.status().message();
  std::vector<float> o_buffer(hp->o_bytes() / sizeof(float) + 1, NAN);
  const AttentionProblem p = hp->rebased(hp->q().data, hp->k().data, hp->v().data, hp->mask().data,
                                         static_cast<const float*>(hp->sinks().data),
                                         static_cast<const int32_t*>(hp->kv_len().data),
                                         static_cast<const int32_t*>(hp->page_table().data), o_buffer.data());
  CProblem c;
  ASSERT_NE(c.handle, nullptr);
  copy_into(p, p.o.data, c.handle);
  ASSERT_EQ(kvflash_problem_validate(c.handle), KVFLASH_OK) << kvflash_last_error();
  ASSERT_EQ(kvflash_attend(c.handle, KVFLASH_BACKEND_REF, nullptr, 0), KVFLASH_OK) << kvflash_last_error();

  hp->poison_output();
  ASSERT_TRUE(attend_reference(hp->problem()).ok());
  const std::span<const float> want = hp->output();
  const AttentionShape& s = p.shape;
  int64_t i = 0;
  for (int64_t sq = 0; sq < s.n_seq; ++sq) {
    for (int64_t h = 0; h < s.n_head_q; ++h) {
      for (int64_t r = 0; r < s.n_q; ++r) {
        const int64_t offset = sq * p.o.stride.seq + h * p.o.stride.head + r * p.o.stride.row;
        const float* got = reinterpret_cast<const float*>(reinterpret_cast<const char*>(p.o.data) + offset);
        for (int64_t e = 0; e < s.d_v; ++e, ++i) {
          ASSERT_EQ(std::memcmp(&got[e], &want[static_cast<size_t>(i)], sizeof(float)), 0)
              << "seq " << sq << " head " << h << " row " << r << " elem " << e << ": " << got[e] << " vs "
              << want[static_cast<size_t>(i)];
        }
      }
    }
  }

  const size_t len = kvflash_problem_describe(c.handle, nullptr, 0);
  std::string c_text(len + 1, '\0');
  ASSERT_EQ(kvflash_problem_describe(c.handle, c_text.data(), c_text.size()), len);
  c_text.resize(len);
  EXPECT_EQ(c_text, describe(p));
}

TEST(CApiProblem, AttendMatchesTheCppReferenceOnEveryLayoutAndOption) {
  using testing::KvLayout;
  using testing::MaskKind;
  uint64_t seed = 100;
  const struct {
    AttentionShape shape;
    KvType k, v;
    KvLayout layout;
    MaskKind mask;
  } cases[] = {
      {{1, 1, 37, 4, 2, 64, 64}, KvType::f16, KvType::f16, KvLayout::contiguous, MaskKind::none},
      {{2, 3, 70, 6, 2, 96, 32}, KvType::q8_0, KvType::q4_0, KvLayout::strided_padded, MaskKind::f32},
      {{2, 5, 53, 3, 3, 80, 96}, KvType::turbo3, KvType::q5_1, KvLayout::paged, MaskKind::f16},
      {{1, 4, 129, 8, 1, 128, 64}, KvType::turbo4, KvType::bf16, KvLayout::contiguous,
       MaskKind::f32_broadcast_heads},
  };
  for (const auto& c : cases) {
    testing::ProblemSpec spec;
    spec.shape = c.shape;
    spec.ktype = c.k;
    spec.vtype = c.v;
    spec.layout = c.layout;
    spec.mask = c.mask;
    spec.causal = seed % 2 == 0;
    spec.softcap = seed % 3 == 0 ? 20.0 : 0.0;
    spec.alibi_max_bias = seed % 4 == 1 ? 8.0 : 0.0;
    spec.window = seed % 5 == 2 ? 9 : 0;
    spec.sinks = seed % 2 == 1;
    spec.varlen = c.shape.n_seq > 1;
    spec.scale = seed % 3 == 1 ? 0.3 : 0.0;
    spec.seed = seed++;
    SCOPED_TRACE(::testing::Message() << "case seed " << spec.seed);
    expect_c_matches_cpp(spec);
  }
}

TEST(CApiProblem, NullStridesMeanTheDenseLayoutOfTheShapeInForce) {
  // Q [2 heads, 3 rows, 64], K/V q8_0 [1 head, 40 rows, 64], O dense; strides resolved when used, so the shape
  // may be set after the views.
  const int64_t n_q = 3, n_kv = 40, d = 64, hq = 2;
  std::vector<float> q = random_row(hq * n_q * d, 11), k = random_row(n_kv * d, 12), v = random_row(n_kv * d, 13);
  const size_t row = kvflash_row_bytes(KVFLASH_TYPE_Q8_0, d);
  std::vector<uint8_t> kq(row * n_kv), vq(row * n_kv);
  for (int64_t r = 0; r < n_kv; ++r) {
    ASSERT_EQ(kvflash_quantize_row(KVFLASH_TYPE_Q8_0, k.data() + r * d, d, kq.data() + r * row), 0);
    ASSERT_EQ(kvflash_quantize_row(KVFLASH_TYPE_Q8_0, v.data() + r * d, d, vq.data() + r * row), 0);
  }
  std::vector<float> mask(n_q * n_kv);
  for (size_t i = 0; i < mask.size(); ++i) mask[i] = i % 7 == 3 ? -INFINITY : 0.25f * static_cast<float>(i % 5);
  std::vector<float> o_c(hq * n_q * d, NAN), o_cpp(hq * n_q * d, NAN);

  CProblem c;
  ASSERT_EQ(kvflash_problem_set_q(c.handle, q.data(), nullptr), 0);
  ASSERT_EQ(kvflash_problem_set_k(c.handle, KVFLASH_TYPE_Q8_0, kq.data(), nullptr), 0);
  ASSERT_EQ(kvflash_problem_set_v(c.handle, KVFLASH_TYPE_Q8_0, vq.data(), nullptr), 0);
  ASSERT_EQ(kvflash_problem_set_o(c.handle, o_c.data(), nullptr), 0);
  ASSERT_EQ(kvflash_problem_set_mask(c.handle, KVFLASH_MASK_F32, mask.data(), nullptr), 0);
  ASSERT_EQ(kvflash_problem_set_causal(c.handle, 1), 0);
  ASSERT_EQ(kvflash_problem_set_shape(c.handle, 1, n_q, n_kv, hq, 1, d, d), 0);
  ASSERT_EQ(kvflash_attend(c.handle, KVFLASH_BACKEND_REF, nullptr, 0), KVFLASH_OK) << kvflash_last_error();

  AttentionProblem p;
  p.shape = {1, n_q, n_kv, hq, 1, d, d};
  p.q = {q.data(), {hq * n_q * d * 4, n_q * d * 4, d * 4}};
  p.k = {KvType::q8_0, kq.data(), {n_kv * static_cast<int64_t>(row), n_kv * static_cast<int64_t>(row),
                                   static_cast<int64_t>(row)}, {}};
  p.v = {KvType::q8_0, vq.data(), p.k.stride, {}};
  p.o = {o_cpp.data(), {hq * n_q * d * 4, n_q * d * 4, d * 4}};
  p.mask = {mask.data(), MaskType::f32, {0, 0, n_kv * 4}};
  p.options.causal = true;
  ASSERT_TRUE(attend_reference(p).ok());
  EXPECT_EQ(0, std::memcmp(o_c.data(), o_cpp.data(), o_c.size() * sizeof(float)));
  for (float x : o_c) ASSERT_TRUE(std::isfinite(x));
}

TEST(CApiProblem, InvalidProblemsAreErrorsNamingTheField) {
  CProblem c;
  std::vector<float> q(64, 1.0f), o(64, NAN);
  std::vector<uint16_t> kv(64 * 4, 0x3c00);
  ASSERT_EQ(kvflash_problem_set_q(c.handle, q.data(), nullptr), 0);
  ASSERT_EQ(kvflash_problem_set_k(c.handle, KVFLASH_TYPE_F16, kv.data(), nullptr), 0);
  ASSERT_EQ(kvflash_problem_set_v(c.handle, KVFLASH_TYPE_F16, kv.data(), nullptr), 0);
  ASSERT_EQ(kvflash_problem_set_o(c.handle, o.data(), nullptr), 0);

  ASSERT_EQ(kvflash_problem_set_shape(c.handle, 1, 1, 4, 3, 2, 64, 64), 0);
  EXPECT_EQ(kvflash_problem_validate(c.handle), KVFLASH_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(kvflash_last_error()).find("n_head_kv = 2"), std::string::npos) << kvflash_last_error();
  EXPECT_EQ(kvflash_attend(c.handle, KVFLASH_BACKEND_REF, nullptr, 0), KVFLASH_ERROR_INVALID_ARGUMENT);
  for (float x : o) EXPECT_TRUE(std::isnan(x)) << "a rejected problem wrote O";

  ASSERT_EQ(kvflash_problem_set_shape(c.handle, 1, 1, 4, 1, 1, 64, 64), 0);
  ASSERT_EQ(kvflash_problem_validate(c.handle), KVFLASH_OK) << kvflash_last_error();
  ASSERT_EQ(kvflash_problem_set_softcap(c.handle, -1.0), 0);
  EXPECT_EQ(kvflash_problem_validate(c.handle), KVFLASH_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(kvflash_last_error()).find("softcap"), std::string::npos) << kvflash_last_error();
  ASSERT_EQ(kvflash_problem_set_softcap(c.handle, 0.0), 0);

  // Absurd shapes: the dense layout itself would overflow int64, which is an error, not UB.
  ASSERT_EQ(kvflash_problem_set_shape(c.handle, INT64_MAX / 2, 1 << 20, 1 << 20, 1 << 20, 1, 64, 64), 0);
  EXPECT_EQ(kvflash_problem_validate(c.handle), KVFLASH_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(kvflash_last_error()), "");

  EXPECT_EQ(kvflash_problem_set_k(c.handle, -3, kv.data(), nullptr), KVFLASH_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(kvflash_problem_set_mask(c.handle, 5, q.data(), nullptr), KVFLASH_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(kvflash_problem_set_shape(nullptr, 1, 1, 1, 1, 1, 32, 32), KVFLASH_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(kvflash_attend(c.handle, 17, nullptr, 0), KVFLASH_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(kvflash_last_error()).find("backend = 17"), std::string::npos);
  EXPECT_EQ(kvflash_problem_describe(nullptr, nullptr, 0), 0u);
  kvflash_problem_destroy(nullptr);
}

TEST(CApiProblem, DescribeFollowsSnprintfRules) {
  CProblem c;
  ASSERT_EQ(kvflash_problem_set_shape(c.handle, 1, 2, 3, 4, 2, 64, 32), 0);
  const size_t len = kvflash_problem_describe(c.handle, nullptr, 0);
  ASSERT_GT(len, 10u);
  std::string full(len + 1, 'x');
  EXPECT_EQ(kvflash_problem_describe(c.handle, full.data(), full.size()), len);
  EXPECT_EQ(full[len], '\0');
  EXPECT_EQ(std::strlen(full.c_str()), len);
  char small[8];
  std::memset(small, 'x', sizeof small);
  EXPECT_EQ(kvflash_problem_describe(c.handle, small, sizeof small), len);
  EXPECT_EQ(small[7], '\0');
  EXPECT_EQ(std::string(small), full.substr(0, 7));
}

}  // namespace
}  // namespace kvflash
