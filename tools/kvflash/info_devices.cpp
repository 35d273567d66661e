#include "info_devices.h"

namespace kvflash::cli {

std::vector<std::string> cuda_device_lines() {
#if defined(KVFLASH_HAVE_CUDA)
  // Hook for the CUDA stream: list the devices (cudaGetDeviceCount / cudaGetDeviceProperties) here.
  return {"(device listing not wired yet: fill cuda_device_lines() in tools/kvflash/info_devices.cpp)"};
#else
  return {};
#endif
}

}  // namespace kvflash::cli
