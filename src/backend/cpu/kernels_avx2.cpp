// The AVX2 + FMA + F16C flavour of the CPU kernels. src/CMakeLists.txt compiles this file alone with those flags;
// isa.cpp only hands it out on a CPU that has them.
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)

#include "backend/cpu/simd_avx2.h"

#define KVFLASH_CPU_ISA_NS avx2
#include "backend/cpu/attention_kernel.h"

namespace kvflash::cpu {

const IsaKernels& avx2_kernels() {
  static constexpr IsaKernels kKernels{avx2::attend_task, avx2::combine_task};
  return kKernels;
}

}  // namespace kvflash::cpu

#endif
