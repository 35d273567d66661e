// TurboQuant rotations applied by the CPU kernels: Q rows before they meet turbo K, finished output rows after
// they were accumulated over turbo V (stored values live in the rotated domain; TURBOQUANT.md).
#pragma once

#include <cstdint>

namespace kvflash::cpu {

/// Forward rotation of each 128-value group of x[0, n), in place; n is a multiple of 128.
void turbo_rotate_groups(float* x, int64_t n);

/// Inverse rotation of each 128-value group of x[0, n), in place; n is a multiple of 128.
void turbo_unrotate_groups(float* x, int64_t n);

}  // namespace kvflash::cpu
