// TurboQuant facts copied from TURBOQUANT.md for tests: the sign vectors exactly as the spec lists them, so that
// tests derive expected rotations from the spec rather than from the library's own tables.
#pragma once

#include <bit>
#include <cstdint>

namespace kvflash::testing {

// s1 and s2, index 0..127, '-' = -1.
inline constexpr const char* kSpecS1 =
    "-++--+-+--+++++++-+-+--+++-++---"
    "-++-++-+-++--+-++++-----+-++++-+"
    "--+---+---+---+++--+++--++-++-+-"
    "-++-+-+-++++-+-++-++-----++-++-+";
inline constexpr const char* kSpecS2 =
    "++++-++-+---+---++--+-+-+--+-+++"
    "++---+------+++-+-+++--+------++"
    "+-+----+-+-+--++-+-++-+----+--+-"
    "+-+++--+-+-++--+-+-++-+-+-----+-";

inline int spec_sign(const char* s, int i) { return s[i] == '-' ? -1 : 1; }

// Entry (i, k) of the unnormalized Sylvester Hadamard matrix that the butterflies (a, b) -> (a + b, a - b) for
// h = 1, 2, ..., 64 apply: (-1)^popcount(i & k).
inline int hadamard(int i, int k) { return std::popcount(static_cast<unsigned>(i & k)) % 2 == 0 ? 1 : -1; }

}  // namespace kvflash::testing
