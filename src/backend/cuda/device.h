// The current CUDA device as the planner and the launchers see it. Queries are cached per device: after the first
// call they cost no runtime call, so they are safe inside CUDA-graph capture.
#pragma once

#include "kvflash/status.h"

namespace kvflash::cuda {

/// Number of CUDA devices the runtime sees; 0 when there is no driver or no device (never an error).
int device_count();

struct DeviceInfo {
  int ordinal = 0;
  int sm_count = 0;
  int max_smem_per_block = 0;  // opt-in maximum (bytes), what cudaFuncSetAttribute may raise a kernel to
  int max_smem_per_sm = 0;
};

/// Properties of the current device (cudaGetDevice), cached.
StatusOr<DeviceInfo> current_device();

}  // namespace kvflash::cuda
