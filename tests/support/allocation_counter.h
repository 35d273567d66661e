// Counts heap allocations: the test binary's global operator new / delete forward to malloc / aligned_alloc / free
// (allocation_counter.cpp) and count, from any thread, while a count is running. Tests that claim "allocates
// nothing" start a count around the calls they check.
#pragma once

#include <cstdint>

namespace kvflash::testing {

struct AllocationCounter {
  /// Resets the counts and starts counting.
  static void start();
  static void stop();
  static int64_t allocations();
  static int64_t bytes();
};

}  // namespace kvflash::testing
