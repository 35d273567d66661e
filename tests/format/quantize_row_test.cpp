// The row API: argument checks (the message names the value and the type) and the row = blocks contract.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "kvflash/quantize.h"

namespace kvflash {
namespace {

void expect_invalid(const Status& s, const std::vector<std::string>& needles) {
  EXPECT_EQ(s.code(), StatusCode::invalid_argument) << s.message();
  for (const std::string& n : needles) EXPECT_NE(s.message().find(n), std::string::npos) << s.message();
}

TEST(QuantizeRow, RejectsRowsThatAreNotWholeBlocksNamingTheTypeAndTheValue) {
  std::vector<float> x(256, 1.0f);
  std::vector<uint8_t> out(1024);
  expect_invalid(quantize_row(KvType::q8_0, x.data(), 33, out.data()), {"n = 33", "q8_0", "32"});
  expect_invalid(quantize_row(KvType::q5_1, x.data(), 48, out.data()), {"n = 48", "q5_1"});
  expect_invalid(dequantize_row(KvType::turbo3, out.data(), 64, x.data()), {"n = 64", "turbo3", "128"});
  expect_invalid(dequantize_row(KvType::turbo4, out.data(), 130, x.data(), true), {"n = 130", "turbo4"});
  expect_invalid(quantize_row(KvType::q4_0, x.data(), -32, out.data()), {"n = -32", "negative", "q4_0"});
  expect_invalid(dequantize_row(KvType::f16, out.data(), -1, x.data()), {"n = -1", "negative", "f16"});
}

TEST(QuantizeRow, RejectsNullPointersAndUnknownTypes) {
  std::vector<float> x(32, 1.0f);
  std::vector<uint8_t> out(64);
  expect_invalid(quantize_row(KvType::q8_0, nullptr, 32, out.data()), {"src", "null", "q8_0"});
  expect_invalid(quantize_row(KvType::q8_0, x.data(), 32, nullptr), {"dst", "null"});
  expect_invalid(dequantize_row(KvType::q4_1, out.data(), 32, nullptr), {"dst", "null"});
  expect_invalid(quantize_row(static_cast<KvType>(11), x.data(), 32, out.data()), {"type = 11", "not a KvType"});
  expect_invalid(dequantize_row(static_cast<KvType>(200), out.data(), 32, x.data()), {"type = 200"});
}

TEST(QuantizeRow, EmptyRowsAndPlainTypesOfAnyLength) {
  // n = 0 writes nothing and needs no buffers; plain float types take any n.
  for (const KvTraits& t : all_kv_types()) {
    EXPECT_TRUE(quantize_row(t.type, nullptr, 0, nullptr).ok()) << t.name;
    EXPECT_TRUE(dequantize_row(t.type, nullptr, 0, nullptr).ok()) << t.name;
  }
  std::vector<float> x = {1.5f, -2.25f, 3.0f}, y(3, 0.0f);
  for (KvType t : {KvType::f32, KvType::f16, KvType::bf16}) {
    std::vector<uint8_t> out(row_bytes(t, 3), 0xAB);
    ASSERT_TRUE(quantize_row(t, x.data(), 3, out.data()).ok());
    ASSERT_TRUE(dequantize_row(t, out.data(), 3, y.data()).ok());
    EXPECT_EQ(y, x) << kv_traits(t).name;  // all three values are exact in every plain type
  }
}

TEST(QuantizeRow, UnalignedBuffersWork) {
  // Rows inside a caller's buffer need not be aligned: read and write through an odd offset.
  std::vector<float> x(129);
  for (int i = 0; i < 129; ++i) x[i] = static_cast<float>(i % 17) - 8.0f;
  for (const KvTraits& t : all_kv_types()) {
    const int64_t n = t.block_elems == 1 ? 32 : t.block_elems;
    std::vector<uint8_t> aligned(row_bytes(t.type, n)), odd(row_bytes(t.type, n) + 1);
    ASSERT_TRUE(quantize_row(t.type, x.data(), n, aligned.data()).ok());
    ASSERT_TRUE(quantize_row(t.type, x.data(), n, odd.data() + 1).ok());
    EXPECT_EQ(std::vector<uint8_t>(odd.begin() + 1, odd.end()), aligned) << t.name;
    std::vector<float> a(n), b(n + 1);
    ASSERT_TRUE(dequantize_row(t.type, aligned.data(), n, a.data()).ok());
    ASSERT_TRUE(dequantize_row(t.type, odd.data() + 1, n, b.data() + 1).ok());
    EXPECT_EQ(std::vector<float>(b.begin() + 1, b.end()), a) << t.name;
  }
}

}  // namespace
}  // namespace kvflash
