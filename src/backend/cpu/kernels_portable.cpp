// The portable flavour of the CPU kernels: plain C++, compiled without ISA flags.
#include "backend/cpu/simd_portable.h"

#define KVFLASH_CPU_ISA_NS portable
#include "backend/cpu/attention_kernel.h"

namespace kvflash::cpu {

const IsaKernels& portable_kernels() {
  static constexpr IsaKernels kKernels{portable::attend_task, portable::combine_task};
  return kKernels;
}

}  // namespace kvflash::cpu
