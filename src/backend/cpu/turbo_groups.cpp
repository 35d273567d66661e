// TEMPORARY until the formats stream's src/format/turbo.h lands: then these forward to it.
#include "backend/cpu/turbo_groups.h"

#include <array>
#include <string_view>

namespace kvflash::cpu {

namespace {

constexpr std::array<float, 128> parse_signs(std::string_view text) {
  std::array<float, 128> out{};
  size_t n = 0;
  for (char c : text) {
    if (c == '+' || c == '-') out[n++] = c == '+' ? 1.0f : -1.0f;
  }
  return out;
}

constexpr std::array<float, 128> kS1 = parse_signs(
    "- + + - - + - + - - + + + + + + + - + - + - - + + + - + + - - -"
    "- + + - + + - + - + + - - + - + + + + - - - - - + - + + + + - +"
    "- - + - - - + - - - + - - - + + + - - + + + - - + + - + + - + -"
    "- + + - + - + - + + + + - + - + + - + + - - - - - + + - + + - +");
constexpr std::array<float, 128> kS2 = parse_signs(
    "+ + + + - + + - + - - - + - - - + + - - + - + - + - - + - + + +"
    "+ + - - - + - - - - - - + + + - + - + + + - - + - - - - - - + +"
    "+ - + - - - - + - + - + - - + + - + - + + - + - - - - + - - + -"
    "+ - + + + - - + - + - + + - - + - + - + + - + - + - - - - - + -");

void rotate_group(float* x, const std::array<float, 128>& first, const std::array<float, 128>& second) {
  for (int i = 0; i < 128; ++i) x[i] *= first[i];
  for (int h = 1; h < 128; h *= 2) {
    for (int base = 0; base < 128; base += 2 * h) {
      for (int j = base; j < base + h; ++j) {
        const float a = x[j];
        const float b = x[j + h];
        x[j] = a + b;
        x[j + h] = a - b;
      }
    }
  }
  for (int i = 0; i < 128; ++i) x[i] *= 0.08838834764831845f * second[i];
}

}  // namespace

void turbo_rotate_groups(float* x, int64_t n) {
  for (int64_t g = 0; g + 128 <= n; g += 128) rotate_group(x + g, kS1, kS2);
}

void turbo_unrotate_groups(float* x, int64_t n) {
  for (int64_t g = 0; g + 128 <= n; g += 128) rotate_group(x + g, kS2, kS1);
}

}  // namespace kvflash::cpu
