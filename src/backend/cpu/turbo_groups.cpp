#include "backend/cpu/turbo_groups.h"

#include "format/turbo.h"

namespace kvflash::cpu {

void turbo_rotate_groups(float* x, int64_t n) {
  for (int64_t g = 0; g + format::kTurboGroup <= n; g += format::kTurboGroup) format::turbo_rotate_forward(x + g);
}

void turbo_unrotate_groups(float* x, int64_t n) {
  for (int64_t g = 0; g + format::kTurboGroup <= n; g += format::kTurboGroup) format::turbo_rotate_inverse(x + g);
}

}  // namespace kvflash::cpu
