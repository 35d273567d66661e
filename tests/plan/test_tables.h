// Kernel tables for planner tests: rows shaped like the split-KV kernels the cpu and cuda streams add, so that the
// planner's arithmetic (splits, workspace pieces, bounds) is checked before those rows exist in kKernels.
#pragma once

#include "plan/kernel_table.h"

namespace kvflash::plan::test_tables {

inline constexpr HeadDimPair kDecodeDims[] = {{128, 128}, {576, 512}};
inline constexpr uint32_t kDecodeTypes = type_bit(KvType::f16) | type_bit(KvType::q8_0) | type_bit(KvType::turbo3);

constexpr KernelId test_id(int n) { return static_cast<KernelId>(1000 + n); }

// A cuda-like backend: a specialized decode kernel (split-KV, staged Q) and a generic one (split-KV, no staging).
inline constexpr KernelSpec kCudaLike[] = {
    {test_id(0), "cuda.test_decode", BackendKind::cuda, false, kDecodeTypes, kDecodeTypes, kDecodeDims,
     /*max_n_q=*/8, /*max_gqa_group=*/16, kAllFeatures & ~feature::softcap, KvSplit::split, /*kv_tile=*/256,
     /*max_splits=*/64, /*stages_q=*/true, Scratch::none, CostModel::reference, "launch_decode",
     "backend/cuda/decode_split_kv.cuh"},
    {test_id(1), "cuda.test_generic", BackendKind::cuda, true, kAllKvTypes, kAllKvTypes, kAnyHeadDims, 0, 0,
     kAllFeatures, KvSplit::split, /*kv_tile=*/64, /*max_splits=*/16, /*stages_q=*/false, Scratch::none,
     CostModel::reference, "launch_generic", "backend/cuda/generic.cuh"},
};

// A cpu-like backend: a generic kernel with per-worker dequantization tiles.
inline constexpr KernelSpec kCpuLike[] = {
    {test_id(2), "cpu.test_generic", BackendKind::cpu, true, kAllKvTypes, kAllKvTypes, kAnyHeadDims, 0, 0,
     kAllFeatures, KvSplit::none, /*kv_tile=*/32, /*max_splits=*/1, /*stages_q=*/false, Scratch::kv_tile_dequant,
     CostModel::reference, "", ""},
};

}  // namespace kvflash::plan::test_tables
