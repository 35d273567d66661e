// kvflash info: version, build, backends (and why one is missing), CPU features, CUDA devices.
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>

#include "cli_common.h"
#include "commands.h"
#include "info_devices.h"
#include "kvflash/backend.h"
#include "kvflash/version.h"

namespace kvflash::cli {

namespace {

constexpr std::string_view kCommand = "info";

constexpr std::string_view kSynopsis =
    "usage: kvflash info\n"
    "\n"
    "Prints the version, how this build was made, each backend (available or not, and why), the CPU's model,\n"
    "thread count and the SIMD features the fast CPU kernels use, and the CUDA devices.\n";

std::string backend_status(BackendKind b) {
  if (backend_available(b)) {
    return b == BackendKind::ref ? "available (the float64 oracle)" : "available";
  }
  switch (b) {
    case BackendKind::ref: break;
    case BackendKind::cpu: return "not available: the fast CPU kernels are not in this build";
    case BackendKind::cuda:
#if defined(KVFLASH_HAVE_CUDA)
      return "not available: no usable CUDA device";
#else
      return "not available: built without CUDA (no nvcc at configure time, or -DKVFLASH_CUDA=OFF)";
#endif
  }
  return "not available";
}

std::string cpu_model() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos && colon + 2 <= line.size()) return line.substr(colon + 2);
    }
  }
  return "unknown";
}

std::string cpu_features() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  struct Feature {
    const char* name;
    bool present;
  };
  // The features the fast CPU kernels dispatch on.
  const Feature features[] = {
      {"avx2", __builtin_cpu_supports("avx2") != 0},
      {"fma", __builtin_cpu_supports("fma") != 0},
      {"f16c", __builtin_cpu_supports("f16c") != 0},
      {"avx512f", __builtin_cpu_supports("avx512f") != 0},
      {"avx512bf16", __builtin_cpu_supports("avx512bf16") != 0},
  };
  std::string out;
  for (const Feature& f : features) {
    if (!out.empty()) out += ", ";
    out += std::string(f.name) + (f.present ? " yes" : " no");
  }
  return out;
#else
  return "(feature detection is x86 only)";
#endif
}

}  // namespace

int cmd_info(int argc, char** argv) {
  Args args;
  if (Status s = args.parse(argc, argv, 1); !s.ok()) return usage_error(kCommand, s);
  if (args.help()) return print_help(kSynopsis, args);
  if (!args.positionals().empty()) return usage_error(kCommand, "unexpected operand '" + args.positionals()[0] + "'");

  std::printf("kvflash %s\n", KVFLASH_VERSION);
#if defined(NDEBUG)
  const char* build = "optimized";
#else
  const char* build = "debug (assertions on)";
#endif
#if defined(KVFLASH_HAVE_CUDA)
  const char* cuda = "with CUDA";
#else
  const char* cuda = "without CUDA";
#endif
  std::printf("build: %s, %s, compiler %s\n", build, cuda, __VERSION__);
  std::printf("backends:\n");
  for (int i = 0; i < kBackendCount; ++i) {
    const auto b = static_cast<BackendKind>(i);
    std::printf("  %-5s %s\n", std::string(backend_name(b)).c_str(), backend_status(b).c_str());
  }
  std::printf("cpu: %s, %u hardware threads\n", cpu_model().c_str(), std::thread::hardware_concurrency());
  std::printf("cpu features: %s\n", cpu_features().c_str());
  std::printf("cuda devices:\n");
  const std::vector<std::string> devices = cuda_device_lines();
  if (devices.empty()) std::printf("  none (built without CUDA)\n");
  for (const std::string& d : devices) std::printf("  %s\n", d.c_str());
  return 0;
}

}  // namespace kvflash::cli
