// The VMM strategy of DeviceAllocator (device_memory.h): one reserved virtual range; each allocation maps its own
// physical chunk (cuMemCreate + cuMemMap) into the first gap that fits and unmaps and releases it when freed, so
// the strategy never holds a byte nobody asked for beyond the rounding to the driver's granularity (2 MiB on
// Hopper), which its report shows as a bucket of its own.
#pragma once

#include <memory>

#include "kvflash/device_memory.h"

namespace kvflash::cuda {

/// config has been validated by DeviceAllocator::create() (a real device ordinal, sizes >= 0).
StatusOr<std::unique_ptr<DeviceAllocator>> create_vmm_allocator(const DeviceAllocatorConfig& config);

}  // namespace kvflash::cuda
