// The .npy reader over a corpus of malformed files generated here: every truncation of valid files, every single
// bit flip and many byte substitutions in their headers, absurd shapes and header lengths, random garbage behind a
// valid magic. The reader must return (ok or an error) without touching memory outside the image; this file is
// also built into an AddressSanitizer + UBSan executable (tests/io/CMakeLists.txt), which turns any such touch
// into a failure. The image is copied into a buffer of exactly its size so ASan sees every read past its end.
#include <gtest/gtest.h>

#include <memory>
#include <random>

#include "io/npy.h"
#include "io/npy_test_files.h"

namespace kvflash::io {
namespace {

using kvflash::testing::npy_dict;
using kvflash::testing::npy_image;
using kvflash::testing::random_f32_bytes;

// Parses a heap copy of exactly file.size() bytes; returns whether it was accepted, checking that an accepted
// header describes exactly the bytes the file has.
bool parse_exact_copy(const std::vector<uint8_t>& file) {
  std::unique_ptr<uint8_t[]> copy(new uint8_t[file.size() + (file.empty() ? 1 : 0)]);
  std::copy(file.begin(), file.end(), copy.get());
  auto h = parse_npy(std::span<const uint8_t>(copy.get(), file.size()), "corpus.npy");
  if (!h.ok()) {
    EXPECT_FALSE(h.status().message().empty());
    EXPECT_EQ(h.status().message().find('\n'), std::string::npos);
    return false;
  }
  EXPECT_EQ(h->data_offset + h->data_bytes, static_cast<int64_t>(file.size()));
  EXPECT_EQ(checked_product(h->shape) * npy_itemsize(h->dtype), h->data_bytes);
  return true;
}

std::vector<std::vector<uint8_t>> valid_files() {
  std::vector<std::vector<uint8_t>> files;
  std::vector<float> values(15);
  const std::vector<uint8_t> raw = random_f32_bytes(15, 21);
  std::memcpy(values.data(), raw.data(), raw.size());
  files.push_back(*encode_npy_f32(std::vector<int64_t>{3, 5}, values));
  files.push_back(*encode_npy_f32(std::vector<int64_t>{}, std::span<const float>(values.data(), 1)));
  files.push_back(*encode_npy_f32(std::vector<int64_t>{0, 4}, std::span<const float>()));
  files.push_back(npy_image(2, npy_dict("<f4", "(2, 3, 2)") + "\n", random_f32_bytes(12, 5)));
  files.push_back(npy_image(3, npy_dict("<f4", "(7,)") + "  \n", random_f32_bytes(7, 6)));
  files.push_back(npy_image(1, npy_dict("<f2", "(3,)") + "\n", std::vector<uint8_t>(6, 0x3c)));
  files.push_back(npy_image(1, npy_dict("|u1", "(5,)") + "\n", std::vector<uint8_t>(5, 9)));
  const std::vector<double> doubles = {0.1, -2.5, 1e300, -0.0, 3.0, 7.25};
  files.push_back(*encode_npy_f64(std::vector<int64_t>{2, 3}, doubles));
  files.push_back(npy_image(2, npy_dict("<f8", "(3,)") + " \n", std::vector<uint8_t>(24, 0x3f)));
  return files;
}

TEST(NpyCorpus, ValidFilesAreAccepted) {
  for (const auto& f : valid_files()) EXPECT_TRUE(parse_exact_copy(f));
}

TEST(NpyCorpus, EveryTruncationIsRejected) {
  for (const auto& f : valid_files()) {
    for (size_t n = 0; n < f.size(); ++n) {
      EXPECT_FALSE(parse_exact_copy(std::vector<uint8_t>(f.begin(), f.begin() + static_cast<int64_t>(n))))
          << "a valid file cut to " << n << " of " << f.size() << " bytes was accepted";
    }
  }
}

TEST(NpyCorpus, BitFlipsAndByteSubstitutionsNeverCrash) {
  const uint8_t substitutes[] = {0x00, 0xff, '(', ')', ',', '\'', '"', '{', '}', ':', '-', '9', ' ', 'L', '\\'};
  int accepted = 0, rejected = 0;
  for (const auto& f : valid_files()) {
    // The header and a few data bytes: flips past them only change values, which any reader accepts.
    const size_t span = std::min(f.size(), size_t{160});
    for (size_t i = 0; i < span; ++i) {
      for (int bit = 0; bit < 8; ++bit) {
        std::vector<uint8_t> g = f;
        g[i] ^= static_cast<uint8_t>(1u << bit);
        (parse_exact_copy(g) ? accepted : rejected)++;
      }
      for (uint8_t s : substitutes) {
        std::vector<uint8_t> g = f;
        g[i] = s;
        (parse_exact_copy(g) ? accepted : rejected)++;
      }
    }
  }
  EXPECT_GT(rejected, 0);
  EXPECT_GT(accepted, 0);  // flips inside padding spaces or data keep a file valid
}

TEST(NpyCorpus, AbsurdShapesAndHeaderLengthsAreRejected) {
  const std::vector<uint8_t> data = random_f32_bytes(4, 2);
  const char* shapes[] = {"(9223372036854775807,)", "(4611686018427387904, 4)", "(2305843009213693952,)",
                          "(65536, 65536, 65536, 65536)", "(18446744073709551616,)", "(1, -1)", "(0x10,)",
                          "(1e9,)", "((2,),)", "(2,,)", "(", ")", "(2, 2"};
  for (const char* shape : shapes) {
    for (int major : {1, 2, 3}) {
      EXPECT_FALSE(parse_exact_copy(npy_image(major, npy_dict("<f4", shape), data))) << shape;
    }
  }
  for (int64_t len : {int64_t{0}, int64_t{1}, int64_t{9}, int64_t{0x7fff}, int64_t{0xffff}}) {
    EXPECT_FALSE(parse_exact_copy(npy_image(1, npy_dict("<f4", "(4,)"), data, len))) << len;
  }
  for (int64_t len : {int64_t{0}, int64_t{0x7fffffff}, int64_t{0x80000000}, int64_t{0xffffffff}}) {
    EXPECT_FALSE(parse_exact_copy(npy_image(2, npy_dict("<f4", "(4,)"), data, len))) << len;
  }
  // A zero axis makes any other axis size harmless: the array is empty and the file holds no data.
  EXPECT_TRUE(parse_exact_copy(npy_image(1, npy_dict("<f4", "(0, 9223372036854775807)"), {})));
}

TEST(NpyCorpus, RandomBytesBehindTheMagicNeverCrash) {
  std::mt19937_64 rng(77);
  for (int trial = 0; trial < 3000; ++trial) {
    const size_t size = rng() % 200;
    std::vector<uint8_t> f(size);
    for (auto& b : f) b = static_cast<uint8_t>(rng());
    const uint8_t magic[8] = {0x93, 'N', 'U', 'M', 'P', 'Y', static_cast<uint8_t>(1 + rng() % 3), 0};
    for (size_t i = 0; i < size && i < 8; ++i) f[i] = magic[i];
    parse_exact_copy(f);
  }
}

}  // namespace
}  // namespace kvflash::io
