// What `kvflash attend` does to K and V, done here with the library for in-process comparisons: each row of `dim`
// values zero-padded to stored_dim() and quantized with quantize_row.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "kvflash/quantize.h"

namespace kvflash::testing {

inline std::vector<uint8_t> quantize_padded(KvType type, const std::vector<float>& x, int64_t dim) {
  const int64_t stored = stored_dim(type, dim), rb = row_bytes(type, stored);
  const int64_t rows = static_cast<int64_t>(x.size()) / dim;
  std::vector<uint8_t> out(static_cast<size_t>(rows * rb));
  std::vector<float> row(static_cast<size_t>(stored), 0.0f);
  for (int64_t r = 0; r < rows; ++r) {
    std::copy(x.begin() + r * dim, x.begin() + (r + 1) * dim, row.begin());
    EXPECT_TRUE(quantize_row(type, row.data(), stored, out.data() + r * rb).ok());
  }
  return out;
}

}  // namespace kvflash::testing
