// Our quantizers against an independent implementation: vectors written by gguf-py's numpy quantizers
// (tests/format/data/make_gguf_vectors.py), which are kept bit-exact with GGML's C reference.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "kvflash/quantize.h"

namespace kvflash {
namespace {

constexpr int kRows = 16;
constexpr int kRowLen = 256;

std::vector<uint8_t> read_data(const std::string& name) {
  std::ifstream f(std::string(KVFLASH_SOURCE_DIR) + "/tests/format/data/" + name, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

class GgufCrossCheck : public ::testing::TestWithParam<const char*> {};

TEST_P(GgufCrossCheck, QuantizeIsByteIdenticalAndDequantizeIsValueIdentical) {
  const KvType type = *kv_type_from_name(GetParam());
  const std::vector<uint8_t> input_bytes = read_data("gguf_input_f32.bin");
  const std::vector<uint8_t> expected = read_data(std::string("gguf_") + GetParam() + ".bin");
  const std::vector<uint8_t> expected_deq = read_data(std::string("gguf_") + GetParam() + "_dequant.bin");
  ASSERT_EQ(input_bytes.size(), sizeof(float) * kRows * kRowLen);
  const int64_t rb = row_bytes(type, kRowLen);
  ASSERT_EQ(expected.size(), static_cast<size_t>(rb * kRows));
  ASSERT_EQ(expected_deq.size(), sizeof(float) * kRows * kRowLen);

  std::vector<float> input(kRows * kRowLen);
  std::memcpy(input.data(), input_bytes.data(), input_bytes.size());
  for (int r = 0; r < kRows; ++r) {
    std::vector<uint8_t> got(rb);
    ASSERT_TRUE(quantize_row(type, input.data() + r * kRowLen, kRowLen, got.data()).ok());
    EXPECT_EQ(0, std::memcmp(got.data(), expected.data() + r * rb, rb)) << GetParam() << " row " << r;

    std::vector<float> deq(kRowLen);
    ASSERT_TRUE(dequantize_row(type, expected.data() + r * rb, kRowLen, deq.data()).ok());
    for (int j = 0; j < kRowLen; ++j) {
      float want;
      std::memcpy(&want, expected_deq.data() + sizeof(float) * (r * kRowLen + j), sizeof want);
      if (std::isnan(want)) {
        EXPECT_TRUE(std::isnan(deq[j])) << GetParam() << " row " << r << " value " << j;
      } else {
        EXPECT_EQ(want, deq[j]) << GetParam() << " row " << r << " value " << j;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(GgmlTypes, GgufCrossCheck,
                         ::testing::Values("f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1"));

}  // namespace
}  // namespace kvflash
