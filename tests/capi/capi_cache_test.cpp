// The C API's paged KV cache against the C++ KvCache and the quantizer: the rows it stores, sequences (fork,
// truncate, remove), checkpoints, attention over it through a page table, and errors that leave it unchanged.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "kvflash/kvflash.h"
#include "kvflash/quantize.h"

namespace kvflash {
namespace {

constexpr int64_t kLayers = 2, kHeadsKv = 2, kDk = 96, kDv = 64, kPageRows = 8;

struct Cache {
  kvflash_cache* handle = nullptr;
  explicit Cache(kvflash_cache_config c) : handle(kvflash_cache_create(&c)) {}
  ~Cache() { kvflash_cache_destroy(handle); }
};

kvflash_cache_config config(int k_type, int v_type, int64_t n_pages, int64_t max_sequences = 4) {
  kvflash_cache_config c;
  kvflash_cache_config_init(&c);
  c.n_layers = kLayers;
  c.n_head_kv = kHeadsKv;
  c.d_k = kDk;
  c.d_v = kDv;
  c.k_type = k_type;
  c.v_type = v_type;
  c.page_rows = kPageRows;
  c.n_pages = n_pages;
  c.max_sequences = max_sequences;
  return c;
}

std::vector<float> random_floats(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(n);
  for (float& v : x) v = normal(rng);
  return x;
}

/// K [layers, tokens, heads, d_k] and V likewise, fresh random values.
struct Tokens {
  int64_t n;
  std::vector<float> k, v;
  Tokens(int64_t n_tokens, uint64_t seed)
      : n(n_tokens),
        k(random_floats(static_cast<size_t>(kLayers * n_tokens * kHeadsKv * kDk), seed)),
        v(random_floats(static_cast<size_t>(kLayers * n_tokens * kHeadsKv * kDv), seed + 1)) {}
  const float* k_row(int64_t layer, int64_t t, int64_t h) const { return &k[((layer * n + t) * kHeadsKv + h) * kDk]; }
  const float* v_row(int64_t layer, int64_t t, int64_t h) const { return &v[((layer * n + t) * kHeadsKv + h) * kDv]; }
};

int append(kvflash_cache* c, int32_t seq, const Tokens& t) {
  return kvflash_cache_append(c, seq, t.k.data(), t.k.size(), t.v.data(), t.v.size(), t.n);
}

/// The stored bytes of (layer, pos, head) equal quantize_row of the row that was appended there.
void expect_rows_stored(kvflash_cache* c, int32_t seq, const Tokens& t, int64_t first_pos, int k_type, int v_type) {
  std::vector<uint8_t> got(1024), want(1024);
  // A stored row is the logical row zero-padded to stored_dim (turbo), then quantized.
  const auto expect_row = [&](int type, const float* row, int64_t dim, int64_t layer, int64_t pos, int64_t h,
                              int is_v) {
    const int64_t stored = kvflash_stored_dim(type, dim);
    std::vector<float> padded(static_cast<size_t>(stored), 0.0f);
    std::memcpy(padded.data(), row, static_cast<size_t>(dim) * sizeof(float));
    ASSERT_EQ(kvflash_quantize_row(type, padded.data(), stored, want.data()), 0);
    ASSERT_EQ(kvflash_cache_read_row(c, seq, layer, pos, h, is_v, got.data(), got.size()), 0) << kvflash_last_error();
    ASSERT_EQ(0, std::memcmp(got.data(), want.data(), kvflash_row_bytes(type, stored)))
        << (is_v ? "V" : "K") << " layer " << layer << " pos " << pos << " head " << h;
  };
  for (int64_t layer = 0; layer < kLayers; ++layer) {
    for (int64_t i = 0; i < t.n; ++i) {
      for (int64_t h = 0; h < kHeadsKv; ++h) {
        expect_row(k_type, t.k_row(layer, i, h), kDk, layer, first_pos + i, h, 0);
        expect_row(v_type, t.v_row(layer, i, h), kDv, layer, first_pos + i, h, 1);
      }
    }
  }
}

TEST(CApiCache, AppendQuantizesOnWriteForEveryTypePair) {
  for (const auto& [k_type, v_type] : {std::pair{KVFLASH_TYPE_Q8_0, KVFLASH_TYPE_Q4_0},
                                       std::pair{KVFLASH_TYPE_TURBO3, KVFLASH_TYPE_F16},
                                       std::pair{KVFLASH_TYPE_BF16, KVFLASH_TYPE_TURBO4}}) {
    Cache c(config(k_type, v_type, 16));
    ASSERT_NE(c.handle, nullptr) << kvflash_last_error();
    int32_t seq = -1;
    ASSERT_EQ(kvflash_cache_add_sequence(c.handle, &seq), 0);
    const Tokens first(11, 40 + static_cast<uint64_t>(k_type)), second(6, 50 + static_cast<uint64_t>(v_type));
    ASSERT_EQ(append(c.handle, seq, first), 0) << kvflash_last_error();
    ASSERT_EQ(append(c.handle, seq, second), 0) << kvflash_last_error();
    int64_t length = 0;
    ASSERT_EQ(kvflash_cache_length(c.handle, seq, &length), 0);
    EXPECT_EQ(length, 17);
    EXPECT_EQ(kvflash_cache_pages_free(c.handle), 16 - 3);  // 17 tokens in pages of 8
    expect_rows_stored(c.handle, seq, first, 0, k_type, v_type);
    expect_rows_stored(c.handle, seq, second, 11, k_type, v_type);
  }
}

TEST(CApiCache, ConfigIsResolvedAndRejectedFieldsAreNamed) {
  kvflash_cache_config c = config(KVFLASH_TYPE_Q8_0, KVFLASH_TYPE_Q8_0, 0);
  c.capacity_tokens = 100;
  Cache cache(c);
  ASSERT_NE(cache.handle, nullptr) << kvflash_last_error();
  kvflash_cache_config got;
  kvflash_cache_config_init(&got);
  ASSERT_EQ(kvflash_cache_get_config(cache.handle, &got), 0);
  EXPECT_EQ(got.n_pages, 13);  // 100 tokens rounded up to pages of 8
  EXPECT_EQ(got.k_type, KVFLASH_TYPE_Q8_0);
  EXPECT_GT(got.max_seq_tokens, 0);
  EXPECT_EQ(kvflash_cache_pages_total(cache.handle), 13);
  EXPECT_EQ(kvflash_cache_max_pages_per_seq(cache.handle), (got.max_seq_tokens + 7) / 8);
  EXPECT_GE(kvflash_cache_bytes(cache.handle), kLayers * kvflash_cache_layer_bytes(cache.handle));

  kvflash_cache_config bad = config(KVFLASH_TYPE_Q8_0, KVFLASH_TYPE_Q8_0, 4);
  bad.d_k = 80;  // not a multiple of q8_0's 32
  EXPECT_EQ(kvflash_cache_create(&bad), nullptr);
  EXPECT_NE(std::string(kvflash_last_error()).find("80"), std::string::npos) << kvflash_last_error();
  bad = config(KVFLASH_TYPE_Q8_0, 12, 4);
  EXPECT_EQ(kvflash_cache_create(&bad), nullptr);
  EXPECT_NE(std::string(kvflash_last_error()).find("v_type = 12"), std::string::npos) << kvflash_last_error();
  bad = config(KVFLASH_TYPE_Q8_0, KVFLASH_TYPE_Q8_0, 4);
  bad.struct_size = 8;
  EXPECT_EQ(kvflash_cache_create(&bad), nullptr);
  EXPECT_NE(std::string(kvflash_last_error()).find("struct_size"), std::string::npos);
  EXPECT_EQ(kvflash_cache_create(nullptr), nullptr);
}

TEST(CApiCache, ForkSharesPagesTruncateAndRemoveFreeThem) {
  Cache c(config(KVFLASH_TYPE_Q4_0, KVFLASH_TYPE_Q4_0, 10));
  int32_t a = -1, b = -1;
  ASSERT_EQ(kvflash_cache_add_sequence(c.handle, &a), 0);
  const Tokens prompt(20, 7);
  ASSERT_EQ(append(c.handle, a, prompt), 0);
  const int64_t used = 10 - kvflash_cache_pages_free(c.handle);
  EXPECT_EQ(used, 3);
  ASSERT_EQ(kvflash_cache_fork(c.handle, a, &b), 0);
  EXPECT_EQ(10 - kvflash_cache_pages_free(c.handle), used) << "a fork copies no page";
  const Tokens more(5, 9);
  ASSERT_EQ(append(c.handle, b, more), 0);  // copies the shared, partly filled last page, then grows
  expect_rows_stored(c.handle, a, prompt, 0, KVFLASH_TYPE_Q4_0, KVFLASH_TYPE_Q4_0);
  expect_rows_stored(c.handle, b, prompt, 0, KVFLASH_TYPE_Q4_0, KVFLASH_TYPE_Q4_0);
  expect_rows_stored(c.handle, b, more, 20, KVFLASH_TYPE_Q4_0, KVFLASH_TYPE_Q4_0);
  int64_t length = 0;
  ASSERT_EQ(kvflash_cache_length(c.handle, a, &length), 0);
  EXPECT_EQ(length, 20) << "appending to the fork leaves the original alone";

  ASSERT_EQ(kvflash_cache_truncate(c.handle, b, 3), 0);
  ASSERT_EQ(kvflash_cache_length(c.handle, b, &length), 0);
  EXPECT_EQ(length, 3);
  EXPECT_EQ(kvflash_cache_truncate(c.handle, b, 4), KVFLASH_ERROR_INVALID_ARGUMENT);
  ASSERT_EQ(kvflash_cache_remove(c.handle, a), 0);
  ASSERT_EQ(kvflash_cache_remove(c.handle, b), 0);
  EXPECT_EQ(kvflash_cache_pages_free(c.handle), 10);
  EXPECT_EQ(kvflash_cache_sequences_free(c.handle), 4);
  EXPECT_NE(kvflash_cache_length(c.handle, a, &length), 0) << "a removed sequence is gone";
}

TEST(CApiCache, RunningOutOfPagesIsAnErrorThatChangesNothing) {
  Cache c(config(KVFLASH_TYPE_F16, KVFLASH_TYPE_F16, 2));
  int32_t seq = -1;
  ASSERT_EQ(kvflash_cache_add_sequence(c.handle, &seq), 0);
  ASSERT_EQ(append(c.handle, seq, Tokens(10, 1)), 0);
  const int64_t free_before = kvflash_cache_pages_free(c.handle);
  EXPECT_EQ(append(c.handle, seq, Tokens(7, 2)), KVFLASH_ERROR_OUT_OF_MEMORY);
  EXPECT_NE(std::string(kvflash_last_error()).find("kv cache"), std::string::npos) << kvflash_last_error();
  EXPECT_EQ(kvflash_cache_pages_free(c.handle), free_before);
  int64_t length = 0;
  ASSERT_EQ(kvflash_cache_length(c.handle, seq, &length), 0);
  EXPECT_EQ(length, 10);

  const Tokens t(2, 3);
  EXPECT_EQ(kvflash_cache_append(c.handle, seq, t.k.data(), t.k.size() - 1, t.v.data(), t.v.size(), 2),
            KVFLASH_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(kvflash_last_error()).find("k_count"), std::string::npos) << kvflash_last_error();
  EXPECT_EQ(kvflash_cache_append(c.handle, 3, t.k.data(), t.k.size(), t.v.data(), t.v.size(), 2),
            KVFLASH_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(kvflash_cache_append(nullptr, seq, t.k.data(), t.k.size(), t.v.data(), t.v.size(), 2),
            KVFLASH_ERROR_INVALID_ARGUMENT);
  int32_t other = -1;
  kvflash_cache_config one_seq = config(KVFLASH_TYPE_F16, KVFLASH_TYPE_F16, 2, 1);
  Cache small(one_seq);
  ASSERT_EQ(kvflash_cache_add_sequence(small.handle, &other), 0);
  EXPECT_EQ(kvflash_cache_add_sequence(small.handle, &other), KVFLASH_ERROR_OUT_OF_MEMORY);
}

TEST(CApiCache, LayerByLayerWritesEqualAppend) {
  Cache by_layer(config(KVFLASH_TYPE_Q5_1, KVFLASH_TYPE_Q8_0, 8)), whole(config(KVFLASH_TYPE_Q5_1, KVFLASH_TYPE_Q8_0, 8));
  int32_t s1 = -1, s2 = -1;
  ASSERT_EQ(kvflash_cache_add_sequence(by_layer.handle, &s1), 0);
  ASSERT_EQ(kvflash_cache_add_sequence(whole.handle, &s2), 0);
  const Tokens t(9, 77);
  ASSERT_EQ(append(whole.handle, s2, t), 0);
  int64_t first = -1;
  ASSERT_EQ(kvflash_cache_extend(by_layer.handle, s1, t.n, &first), 0);
  EXPECT_EQ(first, 0);
  for (int64_t layer = 0; layer < kLayers; ++layer) {
    const size_t k_per_layer = static_cast<size_t>(t.n * kHeadsKv * kDk), v_per_layer = static_cast<size_t>(t.n * kHeadsKv * kDv);
    ASSERT_EQ(kvflash_cache_write(by_layer.handle, s1, layer, first, t.k.data() + layer * k_per_layer, k_per_layer,
                                  t.v.data() + layer * v_per_layer, v_per_layer, t.n), 0)
        << kvflash_last_error();
  }
  expect_rows_stored(by_layer.handle, s1, t, 0, KVFLASH_TYPE_Q5_1, KVFLASH_TYPE_Q8_0);
}

TEST(CApiCache, CheckpointsRestoreTheSameRowsFromMemoryAndFiles) {
  Cache c(config(KVFLASH_TYPE_TURBO2, KVFLASH_TYPE_Q4_1, 12));
  int32_t seq = -1;
  ASSERT_EQ(kvflash_cache_add_sequence(c.handle, &seq), 0);
  const Tokens t(13, 5);
  ASSERT_EQ(append(c.handle, seq, t), 0);
  size_t bytes = 0;
  ASSERT_EQ(kvflash_cache_checkpoint_bytes(c.handle, seq, &bytes), 0);
  ASSERT_GT(bytes, 0u);
  std::vector<uint8_t> buffer(bytes);
  ASSERT_EQ(kvflash_cache_checkpoint(c.handle, seq, buffer.data(), buffer.size()), 0) << kvflash_last_error();
  EXPECT_NE(kvflash_cache_checkpoint(c.handle, seq, buffer.data(), buffer.size() - 1), 0);

  int32_t restored = -1;
  ASSERT_EQ(kvflash_cache_restore(c.handle, buffer.data(), buffer.size(), &restored), 0) << kvflash_last_error();
  EXPECT_NE(restored, seq);
  expect_rows_stored(c.handle, restored, t, 0, KVFLASH_TYPE_TURBO2, KVFLASH_TYPE_Q4_1);

  const std::string path = (std::filesystem::temp_directory_path() /
                            ("kvflash_capi_checkpoint_" + std::to_string(::getpid()) + ".bin"))
                               .string();
  ASSERT_EQ(kvflash_cache_checkpoint_to_file(c.handle, seq, path.c_str()), 0) << kvflash_last_error();
  ASSERT_EQ(kvflash_cache_remove(c.handle, seq), 0);
  int32_t from_file = -1;
  ASSERT_EQ(kvflash_cache_restore_from_file(c.handle, path.c_str(), &from_file), 0) << kvflash_last_error();
  expect_rows_stored(c.handle, from_file, t, 0, KVFLASH_TYPE_TURBO2, KVFLASH_TYPE_Q4_1);
  std::filesystem::remove(path);

  buffer[buffer.size() / 2] ^= 0x40;  // a flipped bit fails the checksum
  const int64_t free_before = kvflash_cache_pages_free(c.handle);
  EXPECT_EQ(kvflash_cache_restore(c.handle, buffer.data(), buffer.size(), &restored), KVFLASH_ERROR_FORMAT);
  EXPECT_EQ(kvflash_cache_pages_free(c.handle), free_before);
  EXPECT_EQ(kvflash_cache_restore_from_file(c.handle, "/nonexistent/kvflash.ckpt", &restored), KVFLASH_ERROR_IO);
}

TEST(CApiCache, AttentionThroughThePageTableEqualsAttentionOverDenseRows) {
  // Two sequences of different lengths (one a fork), decode step of 2 query rows, 4 query heads.
  const int64_t n_head_q = 4, n_q = 2;
  Cache c(config(KVFLASH_TYPE_Q8_0, KVFLASH_TYPE_Q4_0, 16));
  int32_t a = -1, b = -1;
  ASSERT_EQ(kvflash_cache_add_sequence(c.handle, &a), 0);
  const Tokens prompt(19, 31), tail(6, 33);
  ASSERT_EQ(append(c.handle, a, prompt), 0);
  ASSERT_EQ(kvflash_cache_fork(c.handle, a, &b), 0);
  ASSERT_EQ(append(c.handle, b, tail), 0);

  const int32_t seqs[2] = {a, b};
  const int64_t pages_per_seq = kvflash_cache_max_pages_per_seq(c.handle);
  std::vector<int32_t> table(static_cast<size_t>(2 * pages_per_seq), -1), kv_len(2, -1);
  int64_t n_kv = 0;
  ASSERT_EQ(kvflash_cache_fill_batch(c.handle, seqs, 2, pages_per_seq, table.data(), table.size(), kv_len.data(),
                                     &n_kv), 0) << kvflash_last_error();
  EXPECT_EQ(n_kv, 25);
  EXPECT_EQ(kv_len[0], 19);
  EXPECT_EQ(kv_len[1], 25);

  const int64_t layer = 1;
  const std::vector<float> q = random_floats(static_cast<size_t>(2 * n_head_q * n_q * kDk), 99);
  std::vector<float> o_paged(static_cast<size_t>(2 * n_head_q * n_q * kDv), NAN);
  kvflash_problem* p = kvflash_problem_create();
  ASSERT_EQ(kvflash_problem_set_shape(p, 2, n_q, n_kv, n_head_q, kHeadsKv, kDk, kDv), 0);
  ASSERT_EQ(kvflash_problem_set_q(p, q.data(), nullptr), 0);
  ASSERT_EQ(kvflash_problem_set_o(p, o_paged.data(), nullptr), 0);
  ASSERT_EQ(kvflash_problem_set_cache_layer(p, c.handle, layer, table.data(), pages_per_seq), 0) << kvflash_last_error();
  ASSERT_EQ(kvflash_problem_set_kv_len(p, kv_len.data()), 0);
  ASSERT_EQ(kvflash_problem_set_causal(p, 1), 0);
  ASSERT_EQ(kvflash_attend(p, KVFLASH_BACKEND_REF, nullptr, 0), 0) << kvflash_last_error();
  EXPECT_EQ(kvflash_problem_set_cache_layer(p, c.handle, kLayers, table.data(), pages_per_seq),
            KVFLASH_ERROR_INVALID_ARGUMENT);
  kvflash_problem_destroy(p);

  // The same rows, quantized into dense [seq, head, n_kv] buffers (sequence a padded past its length).
  const size_t kb = kvflash_row_bytes(KVFLASH_TYPE_Q8_0, kDk), vb = kvflash_row_bytes(KVFLASH_TYPE_Q4_0, kDv);
  std::vector<uint8_t> k_dense(2 * kHeadsKv * n_kv * kb, 0), v_dense(2 * kHeadsKv * n_kv * vb, 0);
  for (int64_t s = 0; s < 2; ++s) {
    for (int64_t h = 0; h < kHeadsKv; ++h) {
      for (int64_t t = 0; t < kv_len[static_cast<size_t>(s)]; ++t) {
        const float* kr = t < 19 ? prompt.k_row(layer, t, h) : tail.k_row(layer, t - 19, h);
        const float* vr = t < 19 ? prompt.v_row(layer, t, h) : tail.v_row(layer, t - 19, h);
        const size_t row = static_cast<size_t>((s * kHeadsKv + h) * n_kv + t);
        ASSERT_EQ(kvflash_quantize_row(KVFLASH_TYPE_Q8_0, kr, kDk, k_dense.data() + row * kb), 0);
        ASSERT_EQ(kvflash_quantize_row(KVFLASH_TYPE_Q4_0, vr, kDv, v_dense.data() + row * vb), 0);
      }
    }
  }
  std::vector<float> o_dense(o_paged.size(), NAN);
  kvflash_problem* d = kvflash_problem_create();
  ASSERT_EQ(kvflash_problem_set_shape(d, 2, n_q, n_kv, n_head_q, kHeadsKv, kDk, kDv), 0);
  ASSERT_EQ(kvflash_problem_set_q(d, q.data(), nullptr), 0);
  ASSERT_EQ(kvflash_problem_set_k(d, KVFLASH_TYPE_Q8_0, k_dense.data(), nullptr), 0);
  ASSERT_EQ(kvflash_problem_set_v(d, KVFLASH_TYPE_Q4_0, v_dense.data(), nullptr), 0);
  ASSERT_EQ(kvflash_problem_set_o(d, o_dense.data(), nullptr), 0);
  ASSERT_EQ(kvflash_problem_set_kv_len(d, kv_len.data()), 0);
  ASSERT_EQ(kvflash_problem_set_causal(d, 1), 0);
  ASSERT_EQ(kvflash_attend(d, KVFLASH_BACKEND_REF, nullptr, 0), 0) << kvflash_last_error();
  kvflash_problem_destroy(d);
  for (size_t i = 0; i < o_paged.size(); ++i) {
    ASSERT_TRUE(std::isfinite(o_paged[i])) << i;
    ASSERT_EQ(std::memcmp(&o_paged[i], &o_dense[i], sizeof(float)), 0) << i << ": " << o_paged[i] << " vs " << o_dense[i];
  }
}

}  // namespace
}  // namespace kvflash
