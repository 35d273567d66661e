// The GPU the planner tests plan for: a nominal H100, fixed so that their figures do not follow the machine's device.
#pragma once

#include "kvflash/route.h"

namespace kvflash::plan {

/// 132 SMs and 227 KiB of shared memory per block (an H100 SXM's opt-in limit).
inline BackendCaps nominal_h100() {
  BackendCaps caps = caps_for(BackendKind::cuda);
  caps.sm_count = 132;
  caps.shared_mem_per_block = 227 * 1024;
  return caps;
}

}  // namespace kvflash::plan
