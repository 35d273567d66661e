#include "backend/cuda/device.h"

#include <cuda_runtime.h>

#include <array>
#include <mutex>

#include "backend/cuda/cuda_status.h"

namespace kvflash::cuda {

int device_count() {
  static const int count = [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      (void)cudaGetLastError();  // clear the sticky "no device" error so later calls start clean
      return 0;
    }
    return n;
  }();
  return count;
}

StatusOr<DeviceInfo> current_device() {
  constexpr int kMaxDevices = 64;
  static std::array<DeviceInfo, kMaxDevices> cache{};
  static std::array<bool, kMaxDevices> known{};
  static std::mutex mu;
  int ordinal = 0;
  KVFLASH_CUDA_RETURN_IF_ERROR(cudaGetDevice(&ordinal));
  if (ordinal < 0 || ordinal >= kMaxDevices) {
    return backend_error("CUDA device ordinal " + std::to_string(ordinal) + " is outside [0, 64)");
  }
  std::lock_guard<std::mutex> lock(mu);
  if (!known[ordinal]) {
    DeviceInfo info;
    info.ordinal = ordinal;
    KVFLASH_CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(&info.sm_count, cudaDevAttrMultiProcessorCount, ordinal));
    KVFLASH_CUDA_RETURN_IF_ERROR(
        cudaDeviceGetAttribute(&info.max_smem_per_block, cudaDevAttrMaxSharedMemoryPerBlockOptin, ordinal));
    KVFLASH_CUDA_RETURN_IF_ERROR(
        cudaDeviceGetAttribute(&info.max_smem_per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, ordinal));
    cache[ordinal] = info;
    known[ordinal] = true;
  }
  return cache[ordinal];
}

}  // namespace kvflash::cuda
