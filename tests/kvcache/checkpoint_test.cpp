// KvCache checkpoints: bit-exact round trips through a buffer and a file; corrupted, truncated and foreign
// checkpoints are rejected with a clear Status and change nothing.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "kvcache/cache_test_util.h"
#include "kvflash/kv_cache.h"

namespace kvflash {
namespace {

using testing::append_ok;
using testing::CacheState;
using testing::expect_holds;
using testing::has_code;
using testing::make_cache;
using testing::random_rows;
using testing::SequenceRows;
using testing::snapshot;

KvCacheConfig config_for(KvType k, KvType v) {
  KvCacheConfig c;
  c.n_layers = 2;
  c.n_head_kv = 2;
  c.d_k = 96;
  c.d_v = 64;
  c.k_type = k;
  c.v_type = v;
  c.page_rows = 16;
  c.n_pages = 12;
  c.max_sequences = 4;
  return c;
}

// CTest runs each test in its own process, several at once: the pid keeps their files apart.
std::string temp_path(const std::string& name) {
  return (std::filesystem::path(::testing::TempDir()) /
          ("kvflash_ckpt_" + std::to_string(::getpid()) + "_" + name))
      .string();
}

void write_file(const std::string& path, const std::vector<std::byte>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

std::vector<std::byte> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> out(chars.size());
  std::memcpy(out.data(), chars.data(), chars.size());
  return out;
}

class CheckpointRoundTrip : public ::testing::TestWithParam<std::pair<KvType, KvType>> {};

TEST_P(CheckpointRoundTrip, BufferAndFileRestoreEveryByte) {
  const KvCacheConfig c = config_for(GetParam().first, GetParam().second);
  KvCache cache = make_cache(c);
  // A fork that diverged: its pages are partly shared, and its last page is partially filled.
  const SeqId parent = *cache.add_sequence();
  SequenceRows rows(c);
  auto prompt = random_rows(c, 40, 21);
  append_ok(cache, parent, prompt);
  rows.append(prompt);
  const SeqId seq = *cache.fork(parent);
  auto tail = random_rows(c, 5, 22);
  append_ok(cache, seq, tail);
  rows.append(tail);

  auto bytes = cache.checkpoint(seq);
  ASSERT_TRUE(bytes.ok()) << bytes.status().message();
  EXPECT_EQ(static_cast<int64_t>(bytes->size()), *cache.checkpoint_bytes(seq));

  // Into the same cache (a second slot) and into a fresh cache of the same config (after a restart).
  auto same = cache.restore(*bytes);
  ASSERT_TRUE(same.ok()) << same.status().message();
  expect_holds(cache, *same, rows);
  KvCache fresh = make_cache(c);
  auto other = fresh.restore(*bytes);
  ASSERT_TRUE(other.ok()) << other.status().message();
  expect_holds(fresh, *other, rows);
  EXPECT_EQ(*fresh.checkpoint(*other), *bytes) << "a restored sequence checkpoints to the same bytes";

  // Through a file.
  const std::string path = temp_path(std::string(kv_traits(c.k_type).name) + "_" + std::string(kv_traits(c.v_type).name));
  Status written = cache.checkpoint_to_file(seq, path);
  ASSERT_TRUE(written.ok()) << written.message();
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  EXPECT_EQ(read_file(path), *bytes);
  auto from_file = fresh.restore_from_file(path);
  ASSERT_TRUE(from_file.ok()) << from_file.status().message();
  expect_holds(fresh, *from_file, rows);

  // The restored sequence is an ordinary one: it appends and truncates.
  auto more = random_rows(c, 20, 23);
  append_ok(fresh, *from_file, more);
  rows.append(more);
  expect_holds(fresh, *from_file, rows);
  std::filesystem::remove(path);
}

INSTANTIATE_TEST_SUITE_P(TypePairs, CheckpointRoundTrip,
                         ::testing::Values(std::pair{KvType::f16, KvType::f16}, std::pair{KvType::q8_0, KvType::q4_0},
                                           std::pair{KvType::turbo3, KvType::turbo4},
                                           std::pair{KvType::bf16, KvType::q5_1}),
                         [](const auto& info) {
                           return std::string(kv_traits(info.param.first).name) + "_" +
                                  std::string(kv_traits(info.param.second).name);
                         });

TEST(Checkpoint, AnEmptySequenceRoundTrips) {
  const KvCacheConfig c = config_for(KvType::q8_0, KvType::f16);
  KvCache cache = make_cache(c);
  const SeqId seq = *cache.add_sequence();
  auto bytes = cache.checkpoint(seq);
  ASSERT_TRUE(bytes.ok());
  EXPECT_EQ(bytes->size(), 80u) << "only the header";
  auto restored = cache.restore(*bytes);
  ASSERT_TRUE(restored.ok()) << restored.status().message();
  EXPECT_EQ(*cache.length(*restored), 0);
}

struct CorruptionFixture : ::testing::Test {
  const KvCacheConfig c = config_for(KvType::q4_0, KvType::turbo3);
  KvCache cache = make_cache(c);
  SeqId seq = -1;
  std::vector<SeqId> live;
  std::vector<std::byte> good;

  void SetUp() override {
    seq = *cache.add_sequence();
    append_ok(cache, seq, random_rows(c, 21, 31));
    live = {seq};
    good = *cache.checkpoint(seq);
  }
  // The checkpoint is rejected with `code` and a message holding `needle`, through a buffer and a file, and the
  // cache is as before.
  void expect_rejected(const std::vector<std::byte>& bad, StatusCode code, const std::string& needle) {
    const CacheState before = snapshot(cache, live);
    EXPECT_TRUE(has_code(cache.restore(bad).status(), code, needle));
    const std::string path = temp_path("corrupt");
    write_file(path, bad);
    EXPECT_TRUE(has_code(cache.restore_from_file(path).status(), code, needle));
    std::filesystem::remove(path);
    EXPECT_TRUE(snapshot(cache, live) == before);
  }
};

TEST_F(CorruptionFixture, TruncatedOrExtendedBytesAreFormatErrors) {
  for (size_t keep : {size_t{0}, size_t{7}, size_t{79}}) {
    expect_rejected({good.begin(), good.begin() + keep}, StatusCode::format_error, "shorter than its 80-byte header");
  }
  for (size_t keep : {size_t{80}, good.size() / 2, good.size() - 1}) {
    expect_rejected({good.begin(), good.begin() + keep}, StatusCode::format_error, "(truncated or extended)");
  }
  std::vector<std::byte> longer = good;
  longer.push_back(std::byte{0});
  expect_rejected(longer, StatusCode::format_error, "(truncated or extended)");
}

TEST_F(CorruptionFixture, EveryFlippedBitIsCaught) {
  // One bit in each header field and a spread of payload bytes, including the last.
  std::vector<size_t> positions = {0, 9, 13, 17, 25, 33, 37, 40, 41, 45, 49, 57, 65, 73, 79};
  for (size_t at = 80; at < good.size(); at += 97) positions.push_back(at);
  positions.push_back(good.size() - 1);
  for (size_t at : positions) {
    for (int bit : {0, 5}) {
      SCOPED_TRACE("byte " + std::to_string(at) + " bit " + std::to_string(bit));
      std::vector<std::byte> bad = good;
      bad[at] ^= std::byte{static_cast<unsigned char>(1u << bit)};
      const std::string needle = at < 8 ? "magic" : at < 16 ? "version" : at >= 64 && at < 72 ? "truncated" : "checksum";
      expect_rejected(bad, StatusCode::format_error, needle);
    }
  }
}

TEST_F(CorruptionFixture, ACheckpointOfAnotherConfigNamesTheField) {
  struct Case {
    KvCacheConfig other;
    std::string needle;
  };
  std::vector<Case> cases;
  const auto with = [&](auto edit, const std::string& needle) {
    KvCacheConfig o = c;
    edit(o);
    cases.push_back({o, needle});
  };
  with([](KvCacheConfig& o) { o.k_type = KvType::q8_0; }, "checkpoint k_type = q4_0 does not match this kv cache's k_type = q8_0");
  with([](KvCacheConfig& o) { o.v_type = KvType::turbo4; }, "v_type = turbo3 does not match");
  with([](KvCacheConfig& o) { o.d_k = 128; }, "checkpoint d_k = 96 does not match this kv cache's d_k = 128");
  with([](KvCacheConfig& o) { o.d_v = 128; }, "d_v = 64");
  with([](KvCacheConfig& o) { o.n_head_kv = 4; }, "n_head_kv = 2");
  with([](KvCacheConfig& o) { o.n_layers = 3; }, "n_layers = 2");
  with([](KvCacheConfig& o) { o.page_rows = 8; o.n_pages = 24; }, "page_rows = 16");
  for (const Case& k : cases) {
    KvCache other = make_cache(k.other);
    const SeqId keep = *other.add_sequence();
    append_ok(other, keep, random_rows(k.other, 3, 41));
    const CacheState before = snapshot(other, {keep});
    EXPECT_TRUE(has_code(other.restore(good).status(), StatusCode::invalid_argument, k.needle));
    EXPECT_TRUE(snapshot(other, {keep}) == before);
  }
}

TEST_F(CorruptionFixture, NoRoomToRestoreIsOutOfMemoryAndChangesNothing) {
  // 21 tokens need 2 pages of 16; leave 1 free.
  const SeqId filler = *cache.add_sequence();
  append_ok(cache, filler, random_rows(c, 16 * 9, 51));
  live.push_back(filler);
  ASSERT_EQ(cache.pages_free(), 1);
  expect_rejected(good, StatusCode::out_of_memory, "kv cache: restoring a checkpoint needs 2 pages, 1 of 12 are free");
  ASSERT_TRUE(cache.truncate(filler, 16 * 8).ok());
  (void)*cache.add_sequence();
  (void)*cache.add_sequence();
  expect_rejected(good, StatusCode::out_of_memory, "max_sequences = 4");
}

TEST(Checkpoint, FileErrorsAreIoErrors) {
  const KvCacheConfig c = config_for(KvType::f16, KvType::f16);
  KvCache cache = make_cache(c);
  const SeqId seq = *cache.add_sequence();
  EXPECT_TRUE(has_code(cache.restore_from_file(temp_path("does_not_exist")).status(), StatusCode::io_error,
                       "could not open checkpoint file"));
  const std::string unwritable = temp_path("no_such_dir") + "/ckpt";
  EXPECT_TRUE(has_code(cache.checkpoint_to_file(seq, unwritable), StatusCode::io_error, "could not create"));
  EXPECT_FALSE(std::filesystem::exists(unwritable));
  EXPECT_TRUE(has_code(cache.checkpoint_to_file(7, temp_path("x")), StatusCode::invalid_argument, "seq = 7"));
  std::vector<std::byte> small(10);
  EXPECT_TRUE(has_code(cache.checkpoint(seq, small), StatusCode::invalid_argument, "out has 10 bytes"));
}

}  // namespace
}  // namespace kvflash
