#include "backend/cpu/isa.h"

#include <cstdlib>
#include <string>

namespace kvflash::cpu {

namespace {

bool cpu_has_avx2() {
#if defined(__x86_64__) || defined(__i386__)
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
#else
  return false;
#endif
}

bool cpu_has_avx512() {
#if defined(__x86_64__) || defined(__i386__)
  return cpu_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl");
#else
  return false;
#endif
}

}  // namespace

std::string_view isa_name(Isa isa) {
  switch (isa) {
    case Isa::best:
      return "best";
    case Isa::portable:
      return "portable";
    case Isa::avx2:
      return "avx2";
    case Isa::avx512:
      return "avx512";
  }
  return "?";
}

std::optional<Isa> isa_from_name(std::string_view name) {
  for (Isa isa : {Isa::best, Isa::portable, Isa::avx2, Isa::avx512}) {
    if (isa_name(isa) == name) return isa;
  }
  return std::nullopt;
}

bool isa_supported(Isa isa) {
  switch (isa) {
    case Isa::best:
    case Isa::portable:
      return true;
#if defined(KVFLASH_CPU_HAVE_AVX2)
    case Isa::avx2:
      return cpu_has_avx2();
#endif
#if defined(KVFLASH_CPU_HAVE_AVX512)
    case Isa::avx512:
      return cpu_has_avx512();
#endif
    default:
      return false;
  }
}

Isa resolve_isa(Isa requested) {
  if (requested != Isa::best) return requested;
  static const Isa resolved = [] {
    Isa widest = Isa::portable;
    for (Isa isa : {Isa::avx2, Isa::avx512}) {
      if (isa_supported(isa)) widest = isa;
    }
    if (const char* env = std::getenv("KVFLASH_CPU_ISA")) {
      const std::optional<Isa> asked = isa_from_name(env);
      if (asked && *asked != Isa::best && isa_supported(*asked) && *asked < widest) return *asked;
    }
    return widest;
  }();
  return resolved;
}

std::string_view cpu_feature_string() {
  static const std::string features = [] {
    std::string s;
#if defined(__x86_64__) || defined(__i386__)
    const auto add = [&s](bool present, const char* name) {
      if (!present) return;
      if (!s.empty()) s += ' ';
      s += name;
    };
    add(__builtin_cpu_supports("sse4.2"), "sse4.2");
    add(__builtin_cpu_supports("avx"), "avx");
    add(__builtin_cpu_supports("avx2"), "avx2");
    add(__builtin_cpu_supports("fma"), "fma");
    add(__builtin_cpu_supports("f16c"), "f16c");
    add(__builtin_cpu_supports("avx512f"), "avx512f");
    add(__builtin_cpu_supports("avx512bw"), "avx512bw");
    add(__builtin_cpu_supports("avx512vl"), "avx512vl");
    add(__builtin_cpu_supports("avx512vnni"), "avx512vnni");
    add(__builtin_cpu_supports("avx512bf16"), "avx512bf16");
#endif
    if (s.empty()) s = "none";
    return s;
  }();
  return features;
}

}  // namespace kvflash::cpu
