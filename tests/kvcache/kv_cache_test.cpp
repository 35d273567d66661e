// KvCache: config validation, quantize-on-write, copy-on-write forks, truncation, running out, batch tables.
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "kvcache/cache_test_util.h"
#include "kvflash/kv_cache.h"

namespace kvflash {
namespace {

using testing::append_ok;
using testing::bytes_of;
using testing::CacheState;
using testing::expect_holds;
using testing::has_code;
using testing::make_cache;
using testing::random_rows;
using testing::SequenceRows;
using testing::snapshot;

KvCacheConfig small_config(KvType k = KvType::q8_0, KvType v = KvType::q4_0) {
  KvCacheConfig c;
  c.n_layers = 2;
  c.n_head_kv = 3;
  c.d_k = 64;
  c.d_v = 32;
  c.k_type = k;
  c.v_type = v;
  c.page_rows = 8;
  c.n_pages = 16;
  c.max_sequences = 4;
  return c;
}

TEST(KvCacheConfig, InvalidFieldsAreRejectedByName) {
  struct Case {
    std::function<void(KvCacheConfig&)> edit;
    std::string needle;
  };
  const std::vector<Case> cases = {
      {[](KvCacheConfig& c) { c.n_layers = 0; }, "n_layers = 0"},
      {[](KvCacheConfig& c) { c.n_head_kv = -2; }, "n_head_kv = -2"},
      {[](KvCacheConfig& c) { c.d_k = 0; }, "d_k = 0"},
      {[](KvCacheConfig& c) { c.d_v = 2048; }, "d_v = 2048"},
      {[](KvCacheConfig& c) { c.d_k = 48; }, "d_k = 48 is not a multiple of q8_0's block of 32"},
      {[](KvCacheConfig& c) { c.k_type = static_cast<KvType>(42); }, "k_type = 42"},
      {[](KvCacheConfig& c) { c.page_rows = 0; }, "page_rows = 0"},
      {[](KvCacheConfig& c) { c.capacity_tokens = 100; }, "exactly one of n_pages = 16 and capacity_tokens = 100"},
      {[](KvCacheConfig& c) { c.n_pages = 0; }, "exactly one of n_pages = 0 and capacity_tokens = 0"},
      {[](KvCacheConfig& c) { c.n_pages = int64_t{1} << 31; }, "n_pages = 2147483648"},
      {[](KvCacheConfig& c) { c.max_sequences = 0; }, "max_sequences = 0"},
      {[](KvCacheConfig& c) { c.max_seq_tokens = 129; }, "max_seq_tokens = 129 exceeds the cache's capacity"},
      {[](KvCacheConfig& c) { c.n_head_kv = int64_t{1} << 40; c.page_rows = int64_t{1} << 30; }, "2^63 bytes"},
  };
  for (const Case& k : cases) {
    KvCacheConfig c = small_config();
    k.edit(c);
    auto cache = KvCache::create(c);
    EXPECT_TRUE(has_code(cache.status(), StatusCode::invalid_argument, k.needle));
  }
}

TEST(KvCacheConfig, TurboHeadDimsNeedNoBlockMultipleAndCapacityRoundsUpToPages) {
  KvCacheConfig c = small_config(KvType::turbo3, KvType::turbo2);
  c.d_k = 96;  // stored as 128 values: one rotation group
  c.d_v = 200; // stored as 256
  c.n_pages = 0;
  c.capacity_tokens = 17;
  auto cache = KvCache::create(c);
  ASSERT_TRUE(cache.ok()) << cache.status().message();
  EXPECT_EQ(cache->config().n_pages, 3);
  EXPECT_EQ(cache->config().capacity_tokens, 24);
  EXPECT_EQ(cache->config().max_seq_tokens, 24);
  EXPECT_EQ(cache->layout().k_row_bytes, 50);
  EXPECT_EQ(cache->layout().v_row_bytes, 2 * 34);
}

TEST(KvCacheLayout, PagesArePackedAndEachPoolStartsOnACacheLine) {
  // q4_0 d 64: 36-byte rows; 3 heads x 8 rows = 864 bytes of K per page; 16 pages = 13824 = 216 x 64.
  // q4_0 d 32 for V: 18-byte rows, 432 bytes per page; 16 pages = 6912 = 108 x 64. With 15 pages the pools
  // (12960 and 6480 bytes) are padded to 12992 and 6528.
  KvCacheConfig c = small_config(KvType::q4_0, KvType::q4_0);
  KvCache cache = make_cache(c);
  const KvCacheLayout& l = cache.layout();
  EXPECT_EQ(l.k_row_bytes, 36);
  EXPECT_EQ(l.k_page_bytes, 864);
  EXPECT_EQ(l.v_page_bytes, 432);
  EXPECT_EQ(l.arena_bytes, 2 * (13824 + 6912));
  EXPECT_EQ(l.k_row_offset(1, 5, 2, 7), l.layer_bytes + 5 * 864 + (2 * 8 + 7) * 36);
  EXPECT_EQ(l.v_row_offset(1, 5, 2, 7), l.layer_bytes + 13824 + 5 * 432 + (2 * 8 + 7) * 18);
  EXPECT_GT(cache.bytes(), l.arena_bytes);  // plus page tables and free lists (exact count: no_allocation_test)

  c.n_pages = 15;
  KvCache odd = make_cache(c);
  EXPECT_EQ(odd.layout().k_pool_bytes, 12992);
  EXPECT_EQ(odd.layout().v_pool_bytes, 6528);
  EXPECT_EQ(odd.layout().v_pool_offset(1), 12992 + 6528 + 12992);
}

// Appends in chunks that straddle page boundaries, through append() and through extend() + write().
TEST(KvCache, StoredRowsAreTheBytesQuantizeRowMakes) {
  const std::pair<KvType, KvType> pairs[] = {{KvType::f32, KvType::f16},     {KvType::q8_0, KvType::q4_0},
                                             {KvType::q5_1, KvType::bf16},   {KvType::turbo3, KvType::turbo4},
                                             {KvType::q4_1, KvType::turbo2}, {KvType::q5_0, KvType::q8_0}};
  uint64_t seed = 100;
  for (auto [kt, vt] : pairs) {
    SCOPED_TRACE(std::string(kv_traits(kt).name) + " x " + std::string(kv_traits(vt).name));
    KvCacheConfig c = small_config(kt, vt);
    c.d_k = 96;  // turbo: padded to 128
    c.d_v = 64;
    KvCache cache = make_cache(c);
    auto seq = cache.add_sequence();
    ASSERT_TRUE(seq.ok());
    SequenceRows want(c);
    for (int64_t chunk : {5, 8, 1, 11}) {
      auto rows = random_rows(c, chunk, ++seed);
      append_ok(cache, *seq, rows);
      want.append(rows);
    }
    // The layer-by-layer path of an engine.
    auto rows = random_rows(c, 6, ++seed);
    auto first = cache.extend(*seq, 6);
    ASSERT_TRUE(first.ok()) << first.status().message();
    EXPECT_EQ(*first, 25);
    const int64_t kn = 6 * c.n_head_kv * c.d_k, vn = 6 * c.n_head_kv * c.d_v;
    for (int64_t l = 0; l < c.n_layers; ++l) {
      Status s = cache.write(*seq, l, *first, std::span(rows.k).subspan(l * kn, kn),
                             std::span(rows.v).subspan(l * vn, vn), 6);
      ASSERT_TRUE(s.ok()) << s.message();
    }
    want.append(rows);
    expect_holds(cache, *seq, want);
    EXPECT_EQ(cache.pages_free(), 16 - 4);  // 31 tokens in pages of 8
  }
}

TEST(KvCache, ForkSharesPagesCopyOnWriteAndBothSidesDiverge) {
  const KvCacheConfig c = small_config();
  KvCache cache = make_cache(c);
  const SeqId parent = *cache.add_sequence();
  SequenceRows parent_rows(c);
  auto prompt = random_rows(c, 20, 1);  // pages 0, 1 full; page 2 holds 4 rows
  append_ok(cache, parent, prompt);
  parent_rows.append(prompt);
  ASSERT_EQ(cache.pages_free(), 13);

  auto forked = cache.fork(parent);
  ASSERT_TRUE(forked.ok()) << forked.status().message();
  const SeqId child = *forked;
  SequenceRows child_rows = parent_rows;
  EXPECT_EQ(cache.pages_free(), 13) << "a fork copies no page; shared pages count once";
  expect_holds(cache, child, child_rows);

  // The child's append lands in the shared, partially filled page 2: it gets a private copy (one page).
  auto child_tail = random_rows(c, 2, 2);
  append_ok(cache, child, child_tail);
  child_rows.append(child_tail);
  EXPECT_EQ(cache.pages_free(), 12);
  // The parent's append now finds page 2 its own again: no copy, no new page.
  auto parent_tail = random_rows(c, 3, 3);
  append_ok(cache, parent, parent_tail);
  parent_rows.append(parent_tail);
  EXPECT_EQ(cache.pages_free(), 12);
  expect_holds(cache, parent, parent_rows);
  expect_holds(cache, child, child_rows);

  // Full pages stay shared (same storage), the copied page does not.
  for (int64_t t : {0, 15}) EXPECT_EQ(cache.k_row(parent, 1, t, 2)->data(), cache.k_row(child, 1, t, 2)->data());
  EXPECT_NE(cache.k_row(parent, 1, 16, 0)->data(), cache.k_row(child, 1, 16, 0)->data());

  // Removing the parent frees only its private page; the child keeps the shared ones.
  ASSERT_TRUE(cache.remove(parent).ok());
  EXPECT_EQ(cache.pages_free(), 13);
  expect_holds(cache, child, child_rows);
  ASSERT_TRUE(cache.remove(child).ok());
  EXPECT_EQ(cache.pages_free(), 16);
  EXPECT_EQ(cache.sequences_free(), 4);
}

TEST(KvCache, WriteIntoASharedPageCopiesItFirst) {
  const KvCacheConfig c = small_config();
  KvCache cache = make_cache(c);
  const SeqId parent = *cache.add_sequence();
  SequenceRows parent_rows(c);
  auto prompt = random_rows(c, 16, 4);
  append_ok(cache, parent, prompt);
  parent_rows.append(prompt);
  const SeqId child = *cache.fork(parent);
  SequenceRows child_rows = parent_rows;
  // Overwrite token 3 of layer 1 in the child only (e.g. an engine recomputing a position).
  auto fix = random_rows(c, 1, 5);
  const int64_t kn = c.n_head_kv * c.d_k, vn = c.n_head_kv * c.d_v;
  Status s = cache.write(child, 1, 3, std::span(fix.k).subspan(kn, kn), std::span(fix.v).subspan(vn, vn), 1);
  ASSERT_TRUE(s.ok()) << s.message();
  std::copy(fix.k.begin() + kn, fix.k.end(), child_rows.k[1].begin() + 3 * kn);
  std::copy(fix.v.begin() + vn, fix.v.end(), child_rows.v[1].begin() + 3 * vn);
  EXPECT_EQ(cache.pages_free(), 16 - 3);
  expect_holds(cache, parent, parent_rows);
  expect_holds(cache, child, child_rows);
}

TEST(KvCache, TruncateFreesPagesAndAppendContinuesFromTheCut) {
  const KvCacheConfig c = small_config();
  KvCache cache = make_cache(c);
  const SeqId seq = *cache.add_sequence();
  SequenceRows rows(c);
  auto prompt = random_rows(c, 20, 6);
  append_ok(cache, seq, prompt);
  rows.append(prompt);
  ASSERT_EQ(cache.pages_free(), 13);

  // Speculative decoding: 7 drafted tokens, 3 rejected.
  ASSERT_TRUE(cache.truncate(seq, 13).ok());
  rows.truncate(13);
  EXPECT_EQ(cache.pages_free(), 14);
  auto accepted = random_rows(c, 5, 7);
  append_ok(cache, seq, accepted);
  rows.append(accepted);
  expect_holds(cache, seq, rows);

  // Truncating a fork to inside a shared page, then appending, leaves the parent alone.
  const SeqId child = *cache.fork(seq);
  SequenceRows child_rows = rows;
  ASSERT_TRUE(cache.truncate(child, 10).ok());
  child_rows.truncate(10);
  auto redo = random_rows(c, 4, 8);
  append_ok(cache, child, redo);
  child_rows.append(redo);
  expect_holds(cache, seq, rows);
  expect_holds(cache, child, child_rows);

  ASSERT_TRUE(cache.truncate(child, 0).ok());
  EXPECT_EQ(*cache.length(child), 0);
  EXPECT_TRUE(has_code(cache.truncate(seq, 19), StatusCode::invalid_argument, "n_tokens = 19"));
  EXPECT_TRUE(has_code(cache.truncate(seq, -1), StatusCode::invalid_argument, "n_tokens = -1"));
}

TEST(KvCache, RunningOutIsAStatusAndChangesNothing) {
  KvCacheConfig c = small_config();
  c.n_pages = 4;
  c.max_sequences = 2;
  KvCache cache = make_cache(c);
  const SeqId a = *cache.add_sequence();
  append_ok(cache, a, random_rows(c, 30, 9));  // 4 pages, the last holds 6 of 8 rows
  const SeqId b = *cache.fork(a);
  const std::vector<SeqId> live = {a, b};
  const CacheState before = snapshot(cache, live);

  const auto expect_unchanged = [&](const Status& s, StatusCode code, const std::string& needle) {
    EXPECT_TRUE(has_code(s, code, needle));
    EXPECT_TRUE(snapshot(cache, live) == before) << "after: " << s.message();
  };
  // Appending to the fork must copy the shared last page: 1 page asked, 0 free.
  expect_unchanged(cache.append(b, random_rows(c, 1, 10).k, random_rows(c, 1, 10).v, 1), StatusCode::out_of_memory,
                   "kv cache: appending 1 tokens needs 1 pages, 0 of 4 are free");
  expect_unchanged(cache.extend(a, 2).status(), StatusCode::out_of_memory, "needs 1 pages, 0 of 4");
  expect_unchanged(cache.add_sequence().status(), StatusCode::out_of_memory, "kv cache: all max_sequences = 2");
  expect_unchanged(cache.fork(a).status(), StatusCode::out_of_memory, "max_sequences = 2");
  expect_unchanged(cache.extend(a, 3).status(), StatusCode::out_of_memory, "cannot grow by 3: max_seq_tokens = 32");
  expect_unchanged(cache.append(a, {}, {}, 1000), StatusCode::out_of_memory, "max_seq_tokens = 32");
  // Bad arguments are rejected before anything moves, too.
  expect_unchanged(cache.append(a, random_rows(c, 1, 11).k, {}, 1), StatusCode::invalid_argument, "v has 0 floats");
  expect_unchanged(cache.write(a, 2, 0, {}, {}, 0), StatusCode::invalid_argument, "layer = 2");
  expect_unchanged(cache.write(a, 0, 29, {}, {}, 2), StatusCode::invalid_argument, "first + n_tokens = 31");
  expect_unchanged(cache.extend(a, -1).status(), StatusCode::invalid_argument, "n_tokens = -1");
  expect_unchanged(cache.remove(3), StatusCode::invalid_argument, "seq = 3 is not a live sequence");
  expect_unchanged(cache.truncate(-1, 0), StatusCode::invalid_argument, "seq = -1");
  expect_unchanged(cache.k_row(a, 0, 30, 0).status(), StatusCode::invalid_argument, "pos = 30");

  // After freeing, the same calls succeed.
  ASSERT_TRUE(cache.remove(b).ok());
  ASSERT_TRUE(cache.remove(a).ok());
  EXPECT_EQ(cache.pages_free(), 4);
  EXPECT_TRUE(has_code(cache.length(a).status(), StatusCode::invalid_argument, "seq = 0"));
}

TEST(KvCache, FillBatchWritesPageTablesAndLengths) {
  const KvCacheConfig c = small_config();
  KvCache cache = make_cache(c);
  const SeqId a = *cache.add_sequence(), b = *cache.add_sequence(), e = *cache.add_sequence();
  append_ok(cache, a, random_rows(c, 17, 12));  // 3 pages
  append_ok(cache, b, random_rows(c, 8, 13));   // 1 page
  const SeqId f = *cache.fork(a);
  const std::vector<SeqId> batch = {b, a, e, f};
  std::vector<int32_t> table(4 * 3, -7), kv_len(4, -7);
  auto n_kv = cache.fill_batch(batch, 3, table, kv_len);
  ASSERT_TRUE(n_kv.ok()) << n_kv.status().message();
  EXPECT_EQ(*n_kv, 17);
  EXPECT_EQ(kv_len, (std::vector<int32_t>{8, 17, 0, 17}));
  // Pages come from the free list in order: a took 0, 1, 2 and b took 3; unused entries are page 0.
  EXPECT_EQ(table, (std::vector<int32_t>{3, 0, 0, 0, 1, 2, 0, 0, 0, 0, 1, 2}));
  // The views address exactly the rows that k_row returns.
  auto k = cache.k_view(1, table.data(), 3);
  auto v = cache.v_view(1, table.data(), 3);
  ASSERT_TRUE(k.ok() && v.ok());
  for (int64_t t : {0, 7, 8, 16}) {
    const auto* base_k = static_cast<const std::byte*>(k->data);
    const auto* base_v = static_cast<const std::byte*>(v->data);
    EXPECT_EQ(base_k + kv_row_offset(*k, 1, 2, t), cache.k_row(a, 1, t, 2)->data());
    EXPECT_EQ(base_v + kv_row_offset(*v, 3, 1, t), cache.v_row(f, 1, t, 1)->data());
  }

  EXPECT_TRUE(has_code(cache.fill_batch(batch, 2, table, kv_len).status(), StatusCode::invalid_argument,
                       "pages_per_seq = 2 is less than the 3 pages of seqs[1] = 0"));
  EXPECT_TRUE(has_code(cache.fill_batch(batch, 3, std::span(table).first(11), kv_len).status(),
                       StatusCode::invalid_argument, "page_table has 11 entries"));
  ASSERT_TRUE(cache.remove(e).ok());
  const std::vector<SeqId> stale = {a, e};
  EXPECT_TRUE(has_code(cache.fill_batch(stale, 3, table, kv_len).status(), StatusCode::invalid_argument,
                       "seqs[1] = 2 is not a live sequence"));
  EXPECT_TRUE(has_code(cache.k_view(2, table.data(), 3).status(), StatusCode::invalid_argument, "layer = 2"));
  EXPECT_TRUE(has_code(cache.v_view(0, nullptr, 3).status(), StatusCode::invalid_argument, "page_table"));
}

TEST(KvCache, AMovedFromCacheFailsCleanly) {
  KvCache from = make_cache(small_config());
  const SeqId seq = *from.add_sequence();
  KvCache to = std::move(from);
  int32_t table[1] = {0};
  EXPECT_TRUE(has_code(from.length(seq).status(), StatusCode::invalid_argument, "seq = 0"));  // NOLINT: use after move on purpose
  EXPECT_TRUE(has_code(from.add_sequence().status(), StatusCode::out_of_memory, "kv cache"));
  EXPECT_TRUE(has_code(from.k_view(0, table, 1).status(), StatusCode::invalid_argument, "layer = 0"));
  EXPECT_EQ(from.pages_free(), 0);
  EXPECT_EQ(from.bytes(), 0);
  EXPECT_EQ(*to.length(seq), 0);
  EXPECT_EQ(to.pages_free(), 16);
}

}  // namespace
}  // namespace kvflash
