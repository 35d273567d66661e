// Makes a device current for a scope and restores the caller's device after: the allocator serves one device
// while the caller's thread may be working on another.
#pragma once

#include <cuda_runtime.h>

#include "backend/cuda/cuda_status.h"

namespace kvflash::cuda {

class ScopedDevice {
 public:
  explicit ScopedDevice(int device) {
    if (cudaGetDevice(&previous_) != cudaSuccess) {
      status_ = cuda_status(cudaGetLastError(), "cudaGetDevice");
      return;
    }
    if (previous_ != device) status_ = cuda_status(cudaSetDevice(device), "cudaSetDevice");
  }
  ~ScopedDevice() {
    if (status_.ok()) (void)cudaSetDevice(previous_);
  }
  ScopedDevice(const ScopedDevice&) = delete;
  ScopedDevice& operator=(const ScopedDevice&) = delete;
  const Status& status() const { return status_; }

 private:
  int previous_ = 0;
  Status status_;
};

}  // namespace kvflash::cuda
