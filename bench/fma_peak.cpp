// The arithmetic ceiling the 4-row decode figures are compared with: float32 multiply-adds per second of one core
// with AVX2 FMA (8 lanes), 10 independent accumulator chains so that FMA latency cannot hide the pipes' rate.
// Build: g++ -O2 -mavx2 -mfma bench/fma_peak.cpp -o fma_peak (bench/cpu_decode_vs_ggml.py does this).
#include <immintrin.h>

#include <chrono>
#include <cstdio>

int main() {
  constexpr long kIterations = 200'000'000;
  __m256 acc[10];
  for (__m256& a : acc) a = _mm256_set1_ps(1.0f);
  const __m256 mul = _mm256_set1_ps(0.999999f), add = _mm256_set1_ps(1e-7f);
  const auto start = std::chrono::steady_clock::now();
  for (long i = 0; i < kIterations; ++i) {
    for (__m256& a : acc) a = _mm256_fmadd_ps(a, mul, add);
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  __m256 sum = acc[0];
  for (int i = 1; i < 10; ++i) sum = _mm256_add_ps(sum, acc[i]);
  float lanes[8];
  _mm256_storeu_ps(lanes, sum);
  // 10 vector FMAs of 8 lanes per iteration.
  std::printf("%.2f\n", static_cast<double>(kIterations) * 10 * 8 / seconds / 1e9 + 0 * lanes[0]);
  return 0;
}
