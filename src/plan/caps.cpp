// caps_for(): what the planner knows about this machine.
#include <algorithm>
#include <thread>

#include "kvflash/route.h"

// The cuda backend's device query (src/backend/cuda/device.h: device_count(), current_device() with sm_count and
// max_smem_per_block, cached) fills the caps in CUDA builds; without it, or without a device, the nominal H100
// below stands in. Memory size and bandwidth stay nominal: the cost model only compares cuda kernels with each
// other, and memory reports read the device's free/total themselves.
#if defined(KVFLASH_HAVE_CUDA) && __has_include("backend/cuda/device.h")
#include "backend/cuda/device.h"
#define KVFLASH_CUDA_CAPS_HOOK 1
#endif

namespace kvflash {
namespace {

// A nominal H100 SXM5 (NVIDIA's datasheet: 132 SMs, 80 GB HBM3 at 3.35 TB/s, 227 KiB of shared memory per block
// with opt-in), so that routes and plans for cuda can be computed and tested without a device.
BackendCaps nominal_h100() {
  BackendCaps c;
  c.kind = BackendKind::cuda;
  c.threads = 1;
  c.sm_count = 132;
  c.shared_mem_per_block = 227 * 1024;
  c.device_memory_bytes = 80LL * 1000 * 1000 * 1000;
  c.memory_bandwidth_gbps = 3350;
  c.nominal = true;
  return c;
}

}  // namespace

BackendCaps caps_for(BackendKind kind) {
  const int hw_threads = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  BackendCaps c;
  c.kind = kind;
  switch (kind) {
    case BackendKind::ref:
      c.threads = 1;
      c.memory_bandwidth_gbps = 10;
      break;
    case BackendKind::cpu:
      c.threads = hw_threads;
      // A host core streams roughly 10 GB/s; the cost model only compares cpu kernels with each other.
      c.memory_bandwidth_gbps = 10.0 * hw_threads;
      break;
    case BackendKind::cuda: {
      c = nominal_h100();
#ifdef KVFLASH_CUDA_CAPS_HOOK
      if (cuda::device_count() > 0) {
        if (auto dev = cuda::current_device(); dev.ok()) {
          c.sm_count = dev->sm_count;
          c.shared_mem_per_block = dev->max_smem_per_block;
          c.nominal = false;
        }
      }
#endif
      break;
    }
  }
  return c;
}

}  // namespace kvflash
