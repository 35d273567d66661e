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
