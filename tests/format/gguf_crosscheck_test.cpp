// Our quantizers against independent implementations, through vectors committed in tests/format/data/:
//  - GGML types: written by gguf-py's numpy quantizers (make_gguf_vectors.py), which are kept bit-exact with GGML's
//    C reference. Rows include blocks built to hit rounding boundaries exactly and blocks picked because a value
//    lies within a few ulps of one: a change in the arithmetic changes their bytes.
//  - turbo types: written by a numpy float32 implementation of TURBOQUANT.md (make_turbo_vectors.py).
// Quantizing must give the same bytes; dequantizing those bytes the same floats.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <ostream>
#include <string>
#include <vector>

#include "kvflash/quantize.h"

namespace kvflash {
namespace {


std::vector<uint8_t> read_data(const std::string& name) {
  std::ifstream f(std::string(KVFLASH_SOURCE_DIR) + "/tests/format/data/" + name, std::ios::binary);
  EXPECT_TRUE(f.good()) << "missing test data " << name;
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

std::vector<float> as_floats(const std::vector<uint8_t>& bytes) {
  std::vector<float> v(bytes.size() / sizeof(float));
  std::memcpy(v.data(), bytes.data(), v.size() * sizeof(float));
  return v;
}

// One set of vectors: rows of `row_len` float32 values in `input`, their bytes in <prefix><type>.bin and, when
// `dequant_rows` > 0, the dequantization of the first rows in <prefix><type>_dequant.bin.
struct Vectors {
  const char* input;
  const char* prefix;
  const char* type_name;
  int64_t row_len;
  int64_t dequant_rows;
};

void PrintTo(const Vectors& v, std::ostream* os) { *os << v.prefix << v.type_name; }

class CrossCheck : public ::testing::TestWithParam<Vectors> {};

TEST_P(CrossCheck, QuantizeIsByteIdenticalAndDequantizeIsValueIdentical) {
  const Vectors& v = GetParam();
  const KvType type = *kv_type_from_name(v.type_name);
  const int64_t row_len = v.row_len;
  const std::vector<float> input = as_floats(read_data(v.input));
  const std::vector<uint8_t> expected = read_data(std::string(v.prefix) + v.type_name + ".bin");
  const int64_t rows = static_cast<int64_t>(input.size()) / row_len;
  const int64_t rb = row_bytes(type, row_len);
  ASSERT_EQ(static_cast<int64_t>(input.size()), rows * row_len);
  ASSERT_GE(rows, v.dequant_rows);
  ASSERT_EQ(static_cast<int64_t>(expected.size()), rb * rows);

  int64_t differing_rows = 0;
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<uint8_t> got(rb, 0xAB);
    ASSERT_TRUE(quantize_row(type, input.data() + r * row_len, row_len, got.data()).ok());
    if (std::memcmp(got.data(), expected.data() + r * rb, rb) != 0) {
      ++differing_rows;
      for (int64_t b = 0; b < rb; ++b) {
        if (got[b] != expected[r * rb + b]) {
          ADD_FAILURE() << v.type_name << " row " << r << ": first differing byte " << b << " (block "
                        << b / kv_traits(type).block_bytes << "): got 0x" << std::hex << int{got[b]} << ", want 0x"
                        << int{expected[r * rb + b]};
          break;
        }
      }
    }
  }
  EXPECT_EQ(differing_rows, 0);

  if (v.dequant_rows == 0) return;
  const std::vector<float> expected_deq = as_floats(read_data(std::string(v.prefix) + v.type_name + "_dequant.bin"));
  ASSERT_EQ(static_cast<int64_t>(expected_deq.size()), v.dequant_rows * row_len);
  for (int64_t r = 0; r < v.dequant_rows; ++r) {
    std::vector<float> deq(row_len, 12345.0f);
    ASSERT_TRUE(dequantize_row(type, expected.data() + r * rb, row_len, deq.data()).ok());
    for (int64_t j = 0; j < row_len; ++j) {
      const float want = expected_deq[r * row_len + j];
      if (std::isnan(want)) {
        EXPECT_TRUE(std::isnan(deq[j])) << v.type_name << " row " << r << " value " << j;
      } else {
        ASSERT_EQ(want, deq[j]) << v.type_name << " row " << r << " value " << j;
      }
    }
  }
}

// GGML vectors: rows of 256 (8 blocks); f16/bf16 have no dequant files, their decoding is checked exhaustively in
// float_convert_test.cpp. Turbo vectors: one 128-value group per row, dequantized to the original domain.
constexpr const char* kGguf = "gguf_input_f32.bin";
constexpr const char* kTurbo = "turbo_input_f32.bin";
INSTANTIATE_TEST_SUITE_P(
    Formats, CrossCheck,
    ::testing::Values(Vectors{kGguf, "gguf_", "f16", 256, 0}, Vectors{kGguf, "gguf_", "bf16", 256, 0},
                      Vectors{kGguf, "gguf_", "q8_0", 256, 8}, Vectors{kGguf, "gguf_", "q4_0", 256, 8},
                      Vectors{kGguf, "gguf_", "q4_1", 256, 8}, Vectors{kGguf, "gguf_", "q5_0", 256, 8},
                      Vectors{kGguf, "gguf_", "q5_1", 256, 8}, Vectors{kTurbo, "turbo_", "turbo2", 128, 8},
                      Vectors{kTurbo, "turbo_", "turbo3", 128, 8}, Vectors{kTurbo, "turbo_", "turbo4", 128, 8}),
    [](const ::testing::TestParamInfo<Vectors>& info) { return std::string(info.param.type_name); });

}  // namespace
}  // namespace kvflash
