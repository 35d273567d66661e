// Instruction sets the fast CPU kernels are compiled for, and which of them this machine can run.
#pragma once

#include <optional>
#include <string_view>

namespace kvflash::cpu {

/// One compiled flavour of the kernels. Each lives in its own translation unit built with its own flags
/// (src/CMakeLists.txt), so the library runs on any x86-64 and picks the widest one at run time.
enum class Isa : unsigned char {
  best = 0,      // the widest this machine supports
  portable = 1,  // plain C++, no ISA flags: the fallback and the baseline the SIMD paths are tested against
  avx2 = 2,      // AVX2 + FMA + F16C
  avx512 = 3,    // AVX-512 F/BW/VL (+ F16C, FMA)
};

std::string_view isa_name(Isa isa);
std::optional<Isa> isa_from_name(std::string_view name);

/// Whether this build has the flavour and this CPU can execute it (best and portable: always).
bool isa_supported(Isa isa);

/// The flavour `best` resolves to: the widest supported one, unless the environment variable KVFLASH_CPU_ISA
/// names a supported narrower one (handy to compare paths without rebuilding).
Isa resolve_isa(Isa requested);

/// CPU features that matter to the kernels, for `kvflash info` ("avx2 fma f16c avx512f ...").
std::string_view cpu_feature_string();

}  // namespace kvflash::cpu
