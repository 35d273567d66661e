// Random float32 and float64 arrays for CLI tests: Gaussian values with a few outlier channels (as real keys have), fixed seeds.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace kvflash::testing {

/// `count` values laid out as rows of `row` values; channel c of every row is scaled by 8 when c % 7 == 3.
inline std::vector<float> random_rows(int64_t count, int64_t row, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) v[i] = dist(rng) * ((i % row) % 7 == 3 ? 8.0f : 1.0f);
  return v;
}

/// random_rows in float64: the same kind of values, drawn in double, so that almost none is a float32 value.
inline std::vector<double> random_rows_f64(int64_t count, int64_t row, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> dist(0.0, 1.0);
  std::vector<double> v(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) v[i] = dist(rng) * ((i % row) % 7 == 3 ? 8.0 : 1.0);
  return v;
}

/// Each value rounded to the nearest float32.
inline std::vector<float> rounded_to_f32(const std::vector<double>& x) { return std::vector<float>(x.begin(), x.end()); }

/// ||got - want||^2 / ||want||^2 in double.
inline double relative_mse(const std::vector<float>& got, const std::vector<float>& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size() && i < got.size(); ++i) {
    const double d = static_cast<double>(got[i]) - want[i];
    num += d * d;
    den += static_cast<double>(want[i]) * want[i];
  }
  return den > 0 ? num / den : num;
}

}  // namespace kvflash::testing
