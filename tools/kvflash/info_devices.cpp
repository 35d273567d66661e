#include "info_devices.h"

#if defined(KVFLASH_HAVE_CUDA)
#include <cuda_runtime.h>

#include <cstdio>
#endif

namespace kvflash::cli {

std::vector<std::string> cuda_device_lines() {
#if defined(KVFLASH_HAVE_CUDA)
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count == 0) {
    (void)cudaGetLastError();
    return {std::string("no CUDA device (") + (err != cudaSuccess ? cudaGetErrorString(err) : "none found") + ")"};
  }
  int driver = 0, runtime = 0;
  (void)cudaDriverGetVersion(&driver);
  (void)cudaRuntimeGetVersion(&runtime);
  std::vector<std::string> lines;
  for (int d = 0; d < count; ++d) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, d) != cudaSuccess) {
      lines.push_back("device " + std::to_string(d) + ": properties unavailable");
      continue;
    }
    char buf[160];
    std::snprintf(buf, sizeof buf, ", compute capability %d.%d, %d SMs, %.1f GiB, L2 %d MiB, driver %d.%d, runtime %d.%d",
                  prop.major, prop.minor, prop.multiProcessorCount,
                  static_cast<double>(prop.totalGlobalMem) / (1 << 30), prop.l2CacheSize >> 20, driver / 1000,
                  (driver % 1000) / 10, runtime / 1000, (runtime % 1000) / 10);
    lines.push_back("device " + std::to_string(d) + ": " + prop.name + buf);
  }
  return lines;
#else
  return {};
#endif
}

}  // namespace kvflash::cli
