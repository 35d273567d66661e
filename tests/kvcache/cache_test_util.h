// Helpers shared by the KvCache tests: random K/V rows, the bytes quantize_row makes of them, and a snapshot of
// everything a caller can observe about a cache (to show that a failed call changed nothing).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "kvflash/kv_cache.h"
#include "kvflash/quantize.h"

namespace kvflash::testing {

/// Float32 rows for every layer of n_tokens tokens: k is [n_layers, n_tokens, n_head_kv, d_k], v likewise.
struct TokenRows {
  int64_t n_tokens = 0;
  std::vector<float> k, v;
};

/// Gaussian rows with a few outlier channels (as real keys have), so block scales and turbo norms vary.
inline TokenRows random_rows(const KvCacheConfig& c, int64_t n_tokens, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const auto fill = [&](std::vector<float>& out, int64_t d) {
    out.resize(static_cast<size_t>(c.n_layers * n_tokens * c.n_head_kv * d));
    for (size_t i = 0; i < out.size(); ++i) {
      const int64_t channel = static_cast<int64_t>(i) % d;
      out[i] = normal(rng) * (channel % 17 == 3 ? 12.0f : 1.0f);
    }
  };
  TokenRows rows;
  rows.n_tokens = n_tokens;
  fill(rows.k, c.d_k);
  fill(rows.v, c.d_v);
  return rows;
}

/// The float32 row of (layer, token, head) in rows of head dim d.
inline const float* row_of(const std::vector<float>& rows, const KvCacheConfig& c, int64_t n_tokens, int64_t d,
                           int64_t layer, int64_t token, int64_t head) {
  return rows.data() + ((layer * n_tokens + token) * c.n_head_kv + head) * d;
}

/// What quantize_row makes of one logical row: turbo rows are zero-padded to stored_dim first.
inline std::vector<std::byte> quantized(KvType type, const float* row, int64_t d) {
  const int64_t stored = stored_dim(type, d);
  std::vector<float> padded(static_cast<size_t>(stored), 0.0f);
  std::copy(row, row + d, padded.begin());
  std::vector<std::byte> out(static_cast<size_t>(row_bytes(type, stored)));
  Status s = quantize_row(type, padded.data(), stored, out.data());
  EXPECT_TRUE(s.ok()) << s.message();
  return out;
}

inline std::vector<std::byte> bytes_of(std::span<const std::byte> s) { return {s.begin(), s.end()}; }

/// Everything observable about a cache through its API: free pages and slots, and each listed sequence's
/// checkpoint (its length and every stored byte).
struct CacheState {
  int64_t pages_free = 0;
  int64_t sequences_free = 0;
  std::vector<std::vector<std::byte>> checkpoints;
  bool operator==(const CacheState&) const = default;
};

inline CacheState snapshot(const KvCache& cache, const std::vector<SeqId>& seqs) {
  CacheState state{cache.pages_free(), cache.sequences_free(), {}};
  for (SeqId s : seqs) {
    auto ckpt = cache.checkpoint(s);
    EXPECT_TRUE(ckpt.ok()) << ckpt.status().message();
    state.checkpoints.push_back(ckpt.ok() ? *ckpt : std::vector<std::byte>{});
  }
  return state;
}

inline KvCache make_cache(const KvCacheConfig& c) {
  auto cache = KvCache::create(c);
  EXPECT_TRUE(cache.ok()) << cache.status().message();
  return std::move(cache).value();
}

/// Appends rows to seq and asserts success.
inline void append_ok(KvCache& cache, SeqId seq, const TokenRows& rows) {
  Status s = cache.append(seq, rows.k, rows.v, rows.n_tokens);
  ASSERT_TRUE(s.ok()) << s.message();
}

/// The float rows a sequence should hold, per layer [token][head][d], kept beside the cache by the test.
struct SequenceRows {
  KvCacheConfig config;
  int64_t n_tokens = 0;
  std::vector<std::vector<float>> k, v;  // [layer]

  explicit SequenceRows(const KvCacheConfig& c)
      : config(c), k(static_cast<size_t>(c.n_layers)), v(static_cast<size_t>(c.n_layers)) {}
  void append(const TokenRows& rows) {
    const int64_t kn = rows.n_tokens * config.n_head_kv * config.d_k, vn = rows.n_tokens * config.n_head_kv * config.d_v;
    for (int64_t l = 0; l < config.n_layers; ++l) {
      k[l].insert(k[l].end(), rows.k.begin() + l * kn, rows.k.begin() + (l + 1) * kn);
      v[l].insert(v[l].end(), rows.v.begin() + l * vn, rows.v.begin() + (l + 1) * vn);
    }
    n_tokens += rows.n_tokens;
  }
  void truncate(int64_t n) {
    for (int64_t l = 0; l < config.n_layers; ++l) {
      k[l].resize(static_cast<size_t>(n * config.n_head_kv * config.d_k));
      v[l].resize(static_cast<size_t>(n * config.n_head_kv * config.d_v));
    }
    n_tokens = n;
  }
  const float* k_row(int64_t layer, int64_t token, int64_t head) const {
    return k[layer].data() + (token * config.n_head_kv + head) * config.d_k;
  }
  const float* v_row(int64_t layer, int64_t token, int64_t head) const {
    return v[layer].data() + (token * config.n_head_kv + head) * config.d_v;
  }
};

/// The sequence's length and every stored K and V row equal what quantize_row makes of `want`'s rows.
inline void expect_holds(const KvCache& cache, SeqId seq, const SequenceRows& want) {
  auto length = cache.length(seq);
  ASSERT_TRUE(length.ok()) << length.status().message();
  ASSERT_EQ(*length, want.n_tokens);
  const KvCacheConfig& c = want.config;
  for (int64_t l = 0; l < c.n_layers; ++l) {
    for (int64_t t = 0; t < want.n_tokens; ++t) {
      for (int64_t h = 0; h < c.n_head_kv; ++h) {
        auto k = cache.k_row(seq, l, t, h);
        auto v = cache.v_row(seq, l, t, h);
        ASSERT_TRUE(k.ok() && v.ok());
        ASSERT_EQ(bytes_of(*k), quantized(c.k_type, want.k_row(l, t, h), c.d_k))
            << "K seq " << seq << " layer " << l << " token " << t << " head " << h;
        ASSERT_EQ(bytes_of(*v), quantized(c.v_type, want.v_row(l, t, h), c.d_v))
            << "V seq " << seq << " layer " << l << " token " << t << " head " << h;
      }
    }
  }
}

inline ::testing::AssertionResult has_code(const Status& s, StatusCode code, const std::string& needle = "") {
  if (s.code() != code) {
    return ::testing::AssertionFailure() << "code " << static_cast<int>(s.code()) << " (want "
                                         << static_cast<int>(code) << "): " << s.message();
  }
  if (s.message().find(needle) == std::string::npos) {
    return ::testing::AssertionFailure() << "message \"" << s.message() << "\" lacks \"" << needle << "\"";
  }
  return ::testing::AssertionSuccess();
}

}  // namespace kvflash::testing
