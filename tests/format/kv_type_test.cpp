#include <gtest/gtest.h>

#include "kvflash/kv_type.h"

namespace kvflash {
namespace {

TEST(KvType, NamesRoundTripAndUnknownNamesAreRejected) {
  for (const KvTraits& t : all_kv_types()) {
    auto parsed = kv_type_from_name(t.name);
    ASSERT_TRUE(parsed.has_value()) << t.name;
    EXPECT_EQ(*parsed, t.type);
  }
  EXPECT_FALSE(kv_type_from_name("q4_2").has_value());
  EXPECT_FALSE(kv_type_from_name("").has_value());
  EXPECT_FALSE(kv_type_from_name("F16").has_value());
}

TEST(KvType, BlockSizesMatchTheFormats) {
  // Bytes per 32 values from the GGML block structs: q8_0 = 34, q4_0 = 18, q4_1 = 20, q5_0 = 22, q5_1 = 24.
  EXPECT_EQ(row_bytes(KvType::q8_0, 32), 34);
  EXPECT_EQ(row_bytes(KvType::q4_0, 64), 36);
  EXPECT_EQ(row_bytes(KvType::q4_1, 32), 20);
  EXPECT_EQ(row_bytes(KvType::q5_0, 32), 22);
  EXPECT_EQ(row_bytes(KvType::q5_1, 32), 24);
  EXPECT_EQ(row_bytes(KvType::f16, 7), 14);
  EXPECT_EQ(row_bytes(KvType::bf16, 3), 6);
  EXPECT_EQ(row_bytes(KvType::f32, 5), 20);
  EXPECT_EQ(row_bytes(KvType::turbo2, 128), 34);
  EXPECT_EQ(row_bytes(KvType::turbo3, 256), 100);
  EXPECT_EQ(row_bytes(KvType::turbo4, 128), 68);
  EXPECT_EQ(row_bytes(KvType::q8_0, 33), 0);
  EXPECT_EQ(row_bytes(KvType::turbo3, 64), 0);
  EXPECT_DOUBLE_EQ(kv_traits(KvType::turbo3).bits_per_value(), 3.125);
  EXPECT_DOUBLE_EQ(kv_traits(KvType::turbo4).bits_per_value(), 4.25);
}

TEST(KvType, TurboRowsArePaddedToWholeRotationGroups) {
  EXPECT_EQ(stored_dim(KvType::turbo3, 64), 128);
  EXPECT_EQ(stored_dim(KvType::turbo3, 192), 256);
  EXPECT_EQ(stored_dim(KvType::turbo4, 576), 640);
  EXPECT_EQ(stored_dim(KvType::q8_0, 96), 96);
  EXPECT_EQ(head_row_bytes(KvType::turbo2, 96), 34);
}

}  // namespace
}  // namespace kvflash
