// Backends: where an attention problem runs.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace kvflash {

enum class BackendKind : uint8_t {
  ref = 0,   // the oracle: dequantize, accumulate in double (CPU)
  cpu = 1,   // fast CPU kernels that read quantized K/V natively
  cuda = 2,  // NVIDIA GPUs
};

inline constexpr int kBackendCount = 3;

constexpr std::string_view backend_name(BackendKind b) {
  switch (b) {
    case BackendKind::ref: return "ref";
    case BackendKind::cpu: return "cpu";
    case BackendKind::cuda: return "cuda";
  }
  return "?";
}

std::optional<BackendKind> backend_from_name(std::string_view name);

/// Whether this build has the backend and (for cuda) a usable device is present.
bool backend_available(BackendKind b);

}  // namespace kvflash
