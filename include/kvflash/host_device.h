// Marks small inline helpers that the CUDA kernels share with host code.
#pragma once

#if defined(__CUDACC__)
#define KVFLASH_HOST_DEVICE __host__ __device__
#else
#define KVFLASH_HOST_DEVICE
#endif
