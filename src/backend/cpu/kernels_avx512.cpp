// The AVX-512 (F/BW/VL) flavour of the CPU kernels. src/CMakeLists.txt compiles this file alone with those flags;
// isa.cpp only hands it out on a CPU that has them.
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__F16C__)

#include "backend/cpu/simd_avx512.h"

#define KVFLASH_CPU_ISA_NS avx512
#include "backend/cpu/attention_kernel.h"

namespace kvflash::cpu {

const IsaKernels& avx512_kernels() {
  static constexpr IsaKernels kKernels{avx512::attend_task, avx512::combine_task};
  return kKernels;
}

}  // namespace kvflash::cpu

#endif
