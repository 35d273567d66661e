// The arithmetic ceiling the 4-row decode figures are compared with: float32 multiply-adds per second of one core
// with AVX2 FMA (8 lanes), 10 independent accumulator chains so that FMA latency cannot hide the pipes' rate.
// Build: g++ -O2 -mavx2 -mfma bench/fma_peak.cpp -o fma_peak (bench/cpu_decode_vs_ggml.py does this).
#include <immintrin.h>

#include <chrono>
#include <cstdio>

int main() {
  constexpr long kIterations = 200'000'000;
  // Ten named accumulators (not an array, which compilers may keep in memory): ten independent chains.
  __m256 a0 = _mm256_set1_ps(1.0f), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0, a9 = a0;
  const __m256 mul = _mm256_set1_ps(0.999999f), add = _mm256_set1_ps(1e-7f);
  const auto start = std::chrono::steady_clock::now();
  for (long i = 0; i < kIterations; ++i) {
    a0 = _mm256_fmadd_ps(a0, mul, add);
    a1 = _mm256_fmadd_ps(a1, mul, add);
    a2 = _mm256_fmadd_ps(a2, mul, add);
    a3 = _mm256_fmadd_ps(a3, mul, add);
    a4 = _mm256_fmadd_ps(a4, mul, add);
    a5 = _mm256_fmadd_ps(a5, mul, add);
    a6 = _mm256_fmadd_ps(a6, mul, add);
    a7 = _mm256_fmadd_ps(a7, mul, add);
    a8 = _mm256_fmadd_ps(a8, mul, add);
    a9 = _mm256_fmadd_ps(a9, mul, add);
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const __m256 sum = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                                   _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)),
                                                 _mm256_add_ps(a8, a9)));
  float lanes[8];
  _mm256_storeu_ps(lanes, sum);
  // 10 vector FMAs of 8 lanes per iteration; the sum is printed so the loop cannot be dropped.
  std::printf("%.2f\n", static_cast<double>(kIterations) * 10 * 8 / seconds / 1e9);
  std::fprintf(stderr, "(checksum %g)\n", lanes[0]);
  return 0;
}
