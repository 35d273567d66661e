// The one place DeviceAllocator::create() hands over to a build's device code: backend/cuda/device_allocator.cpp
// with CUDA, backend/device_allocator_stub.cpp without.
#pragma once

#include <memory>

#include "kvflash/device_memory.h"

namespace kvflash::detail {

/// `config`'s sizes and strategy are valid (DeviceAllocator::create checked them); its device is not checked yet.
StatusOr<std::unique_ptr<DeviceAllocator>> create_device_allocator(const DeviceAllocatorConfig& config);

}  // namespace kvflash::detail
