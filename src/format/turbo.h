// TurboQuant's fixed rotation and decision thresholds (TURBOQUANT.md): the facts every backend needs to rotate Q
// for a turbo K cache and to un-rotate the accumulated output for a turbo V cache.
#pragma once

#include <cstdint>

#include "kvflash/host_device.h"

namespace kvflash::format {

inline constexpr int kTurboGroup = 128;  // values per rotation group = per block

// The sign vectors s1 and s2 of TURBOQUANT.md as bit masks: bit i of word i/32 is set where the sign is -1.
// Bit masks instead of float tables so that device code can use them as immediates; tests/format checks them
// against the +/- listing of the spec.
inline constexpr uint32_t kTurboSigns1[4] = {0xe46a0359u, 0x42f85949u, 0xa4c63bbbu, 0x49f250a9u};
inline constexpr uint32_t kTurboSigns2[4] = {0x16acee90u, 0x3f628fdcu, 0xb7a5357au, 0xbea56562u};

// 1/sqrt(128), the normalization of the unnormalized Hadamard butterflies, as the fork writes it.
inline constexpr float kTurboHadamardScale = 0.08838834764831845f;

inline constexpr float kTurbo2Thresholds[3] = {-0.086728f, 0.0f, 0.086728f};
inline constexpr float kTurbo3Thresholds[7] = {-0.154259f, -0.091775f, -0.043589f, 0.0f,
                                               0.043589f,  0.091775f,  0.154259f};
inline constexpr float kTurbo4Thresholds[15] = {-0.145560f, -0.103361f, -0.079142f, -0.060009f, -0.043430f,
                                                -0.028293f, -0.013963f, 0.0f,       0.013963f,  0.028293f,
                                                0.043430f,  0.060009f,  0.079142f,  0.103361f,  0.145560f};

KVFLASH_HOST_DEVICE inline bool turbo_sign_negative(const uint32_t* words, int i) {
  return ((words[i >> 5] >> (i & 31)) & 1u) != 0;
}

/// In place: multiply by `first` signs, unnormalized Hadamard butterflies (h = 1, 2, ..., 64), multiply by
/// kTurboHadamardScale * `second` signs. Forward = (s1, s2); inverse = (s2, s1).
KVFLASH_HOST_DEVICE inline void turbo_rotate(float* x, const uint32_t* first, const uint32_t* second) {
  for (int i = 0; i < kTurboGroup; ++i) {
    if (turbo_sign_negative(first, i)) x[i] = -x[i];
  }
  for (int h = 1; h < kTurboGroup; h *= 2) {
    for (int base = 0; base < kTurboGroup; base += 2 * h) {
      for (int j = base; j < base + h; ++j) {
        const float a = x[j];
        const float b = x[j + h];
        x[j] = a + b;
        x[j + h] = a - b;
      }
    }
  }
  for (int i = 0; i < kTurboGroup; ++i) {
    x[i] *= turbo_sign_negative(second, i) ? -kTurboHadamardScale : kTurboHadamardScale;
  }
}

KVFLASH_HOST_DEVICE inline void turbo_rotate_forward(float* x) { turbo_rotate(x, kTurboSigns1, kTurboSigns2); }
KVFLASH_HOST_DEVICE inline void turbo_rotate_inverse(float* x) { turbo_rotate(x, kTurboSigns2, kTurboSigns1); }

}  // namespace kvflash::format
