// CUDA runtime errors as kvflash::Status: a failed runtime call becomes backend_error naming the call.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "kvflash/status.h"

namespace kvflash::cuda {

inline Status cuda_status(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return Status::Ok();
  return backend_error(std::string(what) + " failed: " + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) +
                       ")");
}

}  // namespace kvflash::cuda

/// Returns a backend_error Status from the enclosing function when a CUDA runtime call fails.
#define KVFLASH_CUDA_RETURN_IF_ERROR(call) KVFLASH_RETURN_IF_ERROR(::kvflash::cuda::cuda_status((call), #call))

namespace kvflash::cuda {

/// Raises `kernel`'s dynamic shared-memory limit to `smem_bytes` (above 48 KB a kernel must opt in) and checks that
/// one CTA of `threads` threads fits an SM; `what` names the instance in the error. Each instance calls it once
/// (a function-local static), before its first launch.
template <class Kernel>
Status prepare_kernel(Kernel kernel, int threads, int smem_bytes, const std::string& what) {
  KVFLASH_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes));
  int resident = 0;
  KVFLASH_CUDA_RETURN_IF_ERROR(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&resident, kernel, threads, smem_bytes));
  if (resident < 1) {
    return backend_error(what + " needs " + std::to_string(smem_bytes) + " bytes of shared memory: no CTA fits an SM");
  }
  return Status::Ok();
}

}  // namespace kvflash::cuda
