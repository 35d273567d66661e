// TurboQuant rotations applied by the CPU kernels: Q rows before they meet turbo K, finished output rows after
// they were accumulated over turbo V (stored values live in the rotated domain; TURBOQUANT.md).
//
// Out-of-line wrappers around format/turbo.h: the flavour translation units are compiled with ISA flags and call
// these instead of instantiating turbo.h's inline functions themselves (an inline function compiled with AVX-512
// could otherwise be the copy the linker keeps for everyone).
#pragma once

#include <cstdint>

namespace kvflash::cpu {

/// Forward rotation of each 128-value group of x[0, n), in place; n is a multiple of 128.
void turbo_rotate_groups(float* x, int64_t n);

/// Inverse rotation of each 128-value group of x[0, n), in place; n is a multiple of 128.
void turbo_unrotate_groups(float* x, int64_t n);

}  // namespace kvflash::cpu
