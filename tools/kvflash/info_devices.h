// The device section of `kvflash info`. A hook: the CUDA backend fills cuda_device_lines() in
// info_devices.cpp (name, compute capability, memory, driver/runtime versions, one device per line).
#pragma once

#include <string>
#include <vector>

namespace kvflash::cli {

/// One line per CUDA device this process can use, or one line saying why there is none. Empty only in a build
/// without CUDA (KVFLASH_HAVE_CUDA undefined).
std::vector<std::string> cuda_device_lines();

}  // namespace kvflash::cli
