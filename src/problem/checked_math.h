// Overflow-checked int64 arithmetic for sizes and byte extents: a view of a long context can exceed 2^31 elements,
// and a hostile shape can exceed 2^63 bytes; both must become a Status, never wrap silently.
#pragma once

#include <cstdint>
#include <optional>

namespace kvflash::problem {

/// a * b, or nullopt when it does not fit in int64.
inline std::optional<int64_t> checked_mul(int64_t a, int64_t b) {
  int64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r)) return std::nullopt;
  return r;
}

/// a + b, or nullopt when it does not fit in int64.
inline std::optional<int64_t> checked_add(int64_t a, int64_t b) {
  int64_t r = 0;
  if (__builtin_add_overflow(a, b, &r)) return std::nullopt;
  return r;
}

}  // namespace kvflash::problem
