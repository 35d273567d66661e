// The kernel table: every attention kernel of every backend, described once. The router (route.cpp) reads it to
// decide which kernel may run a problem; the CUDA instance generator (tools/gen_kernels) reads it to emit the .cu
// file of each CUDA instance and the registry that maps a KernelId to its launch function. Because the build and the
// router read the same rows, a routable kernel without a compiled instance cannot exist (seed 001's link error).
//
// How to add a kernel (cpu and cuda streams):
//  1. Add its id to `enum class KernelId`, in the same position as its row in kKernels (ids are row indices).
//  2. Add its row to kKernels. K and V types are EXACT bit masks (seed 003: a kernel never receives a type it does
//     not decode). List the head-dim pairs it is compiled for, or kAnyHeadDims. Declare the problem features it
//     handles (kAllFeatures for a generic kernel); the router rejects a problem that needs a feature a row lacks,
//     and explain() prints which one.
//  3. cpu rows: define `Status run_cpu_kernel(const AttentionProblem&, const Route&, void* workspace)` in
//     src/backend/cpu/ (declared in src/backend/dispatch.h); dispatch.cpp calls it for every cpu route as soon as
//     the table has a cpu row, so the build fails to link until the kernel exists.
//  4. cuda rows: set `entry` and `header`. A specialized row (fixed types and head dims) names a function template
//        template <int HeadDimK, int HeadDimV, KvType KType, KvType VType>
//        Status entry(const AttentionProblem&, const Route&, void* workspace, cudaStream_t);
//     in namespace kvflash::cuda, declared in `header`; the generator emits one .cu file with the explicit
//     instantiation per (K type, V type, head-dim pair) of the row, and for the pairs in qvec16_dims one more with a
//     fifth argument 2 (n8 tiles of query vectors per CTA), run where route.qvecs_per_cta is 16. The generic row names a plain function with the
//     same parameters. The generated registry defines run_cuda_kernel().
//  5. Give it a cost model (cost_model.h) so that plan_route() can compare it with the generic kernel.
// Each backend keeps exactly one generic row that accepts every problem validate() accepts: routing is total.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "kvflash/backend.h"
#include "kvflash/kv_type.h"
#include "kvflash/route.h"

namespace kvflash {

/// One id per row of kKernels, in row order (the static_asserts below check it).
enum class KernelId : uint16_t {
  ref_generic = 0,
  cpu_generic = 1,
  // further cpu ids go here, in the order of their rows.
  cuda_generic,
  cuda_decode_f16,
  cuda_decode_q8_0,
  cuda_decode_q4_0,
  cuda_decode_turbo3,
  cuda_decode_turbo4,
  cuda_decode_f16_turbo,
  cuda_prefill_wgmma_f16,
  cuda_prefill_wgmma_q4_0,
  cuda_prefill_f16,
  cuda_prefill_q8_0,
  cuda_prefill_q4_0,
  cuda_prefill_turbo3,
  cuda_prefill_turbo4,
  cuda_prefill_wgmma_ws_f16,
  cuda_prefill_wgmma_ws_q8_0,
  cuda_prefill_wgmma_ws_q4_0,
  cuda_prefill_wgmma_ws_turbo3,
  cuda_prefill_wgmma_ws_turbo4,
};

namespace plan {

/// Bit of a KvType in a type mask.
constexpr uint32_t type_bit(KvType t) { return uint32_t{1} << static_cast<int>(t); }
inline constexpr uint32_t kAllKvTypes = (uint32_t{1} << kKvTypeCount) - 1;

/// A (d_k, d_v) pair a specialized kernel is compiled for.
struct HeadDimPair {
  int32_t d_k;
  int32_t d_v;
};

/// kAnyHeadDims: the row accepts every head-dim pair validate() accepts.
inline constexpr std::span<const HeadDimPair> kAnyHeadDims{};

/// Features a problem may need; a row lists the ones its kernel implements.
namespace feature {
inline constexpr uint32_t causal = 1u << 0;
inline constexpr uint32_t window = 1u << 1;
inline constexpr uint32_t mask_f32 = 1u << 2;
inline constexpr uint32_t mask_f16 = 1u << 3;
inline constexpr uint32_t alibi = 1u << 4;
inline constexpr uint32_t softcap = 1u << 5;
inline constexpr uint32_t sinks = 1u << 6;
inline constexpr uint32_t kv_len = 1u << 7;  // per-sequence key counts
inline constexpr uint32_t paged = 1u << 8;   // K or V through a page table
inline constexpr int kCount = 9;
inline constexpr std::string_view kNames[kCount] = {"causal", "window", "mask_f32", "mask_f16", "alibi",
                                                    "softcap", "sinks", "kv_len", "paged"};
}  // namespace feature
inline constexpr uint32_t kAllFeatures = (1u << feature::kCount) - 1;

/// How a kernel divides the keys among workers; decides the workspace it needs. A backend whose split count
/// follows another rule (CUDA: whole waves of resident CTAs) adds an enumerator here and its cases in launch.cpp:
/// choose_splits() for a problem and max_splits_up_to(), the largest count over every n_kv up to a capacity, which
/// plan_workspace() relies on (tests/plan/route_test checks the two agree).
enum class KvSplit : uint8_t {
  none,   // one worker sees all keys of a (sequence, head) row: no partial results
  split,  // keys cut into ranges of whole kv_tiles, enough to fill parallel_units(), at most max_splits; partial
          // outputs and softmax statistics are combined afterwards
  whole_waves,  // as split, but the count fills whole waves of the CUDA instance's resident CTAs (decode:
                // decode_geometry(); prefill: prefill_qvecs_per_cta(), one CTA per SM; backend/cuda/split_plan.h)
};

/// Per-worker scratch a kernel keeps in the workspace (never allocated inside the call).
enum class Scratch : uint8_t {
  none,
  kv_tile_dequant,  // float32 [kv_tile, widest stored_dim(d_k) + widest stored_dim(d_v) + 1]: a K/V tile + scores
  cpu_tiles,        // cpu::scratch_floats_per_worker(): Q rows, K/V tiles, scores and accumulators of a task
};

/// Which estimate cost_model.cpp uses for a row.
enum class CostModel : uint8_t {
  reference,     // the float64 oracle: scalar, dequantizes every row it reads
  cpu_tiles,     // the fast cpu kernels: the slower of streaming the K/V bytes and the multiply-adds, plus the combine
  cuda_decode,   // tensor-core split-KV decode: the K/V bytes at (most of) the memory bandwidth
  cuda_generic,  // f32 CUDA kernel: re-reads K/V per 8 query vectors, FMAs from shared memory
  cuda_prefill,  // tensor-core prefill: K/V once per 128 query vectors (64 above d_v 128); parallel over query tiles
  cuda_prefill_wgmma,  // as cuda_prefill, on Hopper warpgroup MMAs (128 query vectors per CTA, a faster MMA rate)
  cuda_prefill_wgmma_ws,  // as cuda_prefill_wgmma, at the warp-specialized kernel's measured rate per cache type
};

struct KernelSpec {
  KernelId id;
  std::string_view name;  // "<backend>.<kernel>", printed by explain()
  BackendKind backend;
  bool generic;                             // the backend's catch-all row
  uint32_t k_types;                         // exact K types it reads (type_bit masks)
  uint32_t v_types;                         // exact V types it reads
  std::span<const HeadDimPair> head_dims;   // kAnyHeadDims or the pairs it is compiled for
  int64_t max_n_q;                          // 0: any number of query rows
  int64_t max_gqa_group;                    // 0: any n_head_q / n_head_kv
  uint32_t features;                        // feature:: bits it implements
  KvSplit kv_split;
  int32_t kv_tile;                          // keys per tile; a split holds a multiple of it (0 for KvSplit::none)
  int32_t max_splits;                       // cap on n_splits (bounds the workspace)
  // Q staged once as float32 [n_seq, n_head_q, n_q, stored_dim(k.type, d_k)] (pre-scaled; rotated for turbo K)
  // whatever the K type, so that a quantized K never needs more workspace than f16 K beyond turbo's padding
  // (the invariant of seed 000 that tests/plan/model_test checks on the plan's totals).
  bool stages_q;
  Scratch scratch;
  CostModel cost;
  std::string_view entry;                   // cuda: launch function (template) name; empty for host backends
  std::string_view header;                  // cuda: header declaring `entry`, relative to src/
  // cuda decode: head-dim pairs (of head_dims) also compiled with 16 query vectors per CTA (entry<..., 2>), which
  // the planner takes when a KV head has more than 8 (launch.cpp's qvecs_per_cta()): two n8 MMAs per dequantized
  // K / V fragment, one pass over the KV bytes for 4 rows x GQA 4.
  std::span<const HeadDimPair> qvec16_dims = {};
};

// Head-dim pairs of the CUDA decode instances (cuda stream): what models use, (576, 512) being MLA's.
inline constexpr HeadDimPair kCudaDecodeDims[] = {{64, 64}, {128, 128}, {256, 256}, {512, 512}, {576, 512}};
inline constexpr HeadDimPair kCudaDecodeTurboDims[] = {{64, 64}, {128, 128}, {256, 256}, {512, 512}};
inline constexpr HeadDimPair kCudaDecodeMixDims[] = {{128, 128}, {256, 256}, {512, 512}};
// 16-query-vector instances (qvec16_dims): the narrow kernel's pairs (stored d_v <= 128; turbo pads 64 to 128); the
// wide kernel (d_v 256 and up) already carries 16 or 32 query vectors per CTA. Not f16 K at d 128: its 3 stages of
// 35 KB rows plus 16 staged query rows take 117 KB of shared memory, one CTA per SM instead of two, and that kernel
// is bound by the bytes in flight per SM (cuda_notes v5b); f16 K x turbo V would go from 3 to 2.
inline constexpr HeadDimPair kCudaDecodeNarrowDims[] = {{64, 64}, {128, 128}};
inline constexpr HeadDimPair kCudaDecodeF16Qvec16Dims[] = {{64, 64}};
// Head-dim pairs of the CUDA prefill instances. 512 and MLA's 576/512 are left to the generic kernel: a warp owns
// 16 query vectors x d_v accumulators in registers, and 16 x 512 f32 is 256 registers per thread before the scores.
inline constexpr HeadDimPair kCudaPrefillDims[] = {{64, 64}, {128, 128}, {256, 256}};
inline constexpr HeadDimPair kCudaPrefillQuantDims[] = {{128, 128}, {256, 256}};
// The wgmma prefill holds a 64 x d_v accumulator per warpgroup next to a 64 x 128 score tile: d 128 first.
inline constexpr HeadDimPair kCudaPrefillWgmmaDims[] = {{128, 128}};

// ---- The table -------------------------------------------------------------------------------------------------
inline constexpr KernelSpec kKernels[] = {
    // The oracle: dequantizes every row and accumulates in double; allocates its own temporaries, so it needs no
    // workspace (it is not a production path and is allowed to).
    {KernelId::ref_generic, "ref.generic", BackendKind::ref, /*generic=*/true, kAllKvTypes, kAllKvTypes,
     kAnyHeadDims, /*max_n_q=*/0, /*max_gqa_group=*/0, kAllFeatures, KvSplit::none, /*kv_tile=*/0,
     /*max_splits=*/1, /*stages_q=*/false, Scratch::none, CostModel::reference, "", ""},
    // The fast cpu kernels (src/backend/cpu): every type pair, head dim and option; K/V dequantized a 32-key tile
    // at a time into per-worker scratch (f16/bf16/f32 rows read in place), every query row of a KV head on one
    // pass, split-KV with an exact combine.
    {KernelId::cpu_generic, "cpu.generic", BackendKind::cpu, /*generic=*/true, kAllKvTypes, kAllKvTypes,
     kAnyHeadDims, /*max_n_q=*/0, /*max_gqa_group=*/0, kAllFeatures, KvSplit::split, /*kv_tile=*/32,
     /*max_splits=*/64, /*stages_q=*/false, Scratch::cpu_tiles, CostModel::cpu_tiles, "", ""},
    // cuda rows (cuda stream). The generic kernel: every type pair, head dim and n_q, f32 arithmetic; a split is a
    // whole number of its 16-key tiles; 512 splits at most (the combine's shared memory holds one weight each).
    {KernelId::cuda_generic, "cuda.generic", BackendKind::cuda, /*generic=*/true, kAllKvTypes, kAllKvTypes,
     kAnyHeadDims, /*max_n_q=*/0, /*max_gqa_group=*/0, kAllFeatures, KvSplit::split, /*kv_tile=*/16,
     /*max_splits=*/512, /*stages_q=*/false, Scratch::none, CostModel::cuda_generic, "launch_generic",
     "backend/cuda/generic_attention.h"},
    // The tensor-core split-KV decode (n_q <= 16), one row per cache-type pair people run: instances are compiled
    // only where they pay (CI builds every one on 2 cores). Splits are whole 64-key granules (a multiple of the
    // 32-key tile of the widest instances; the 128-key tiles of q4_0 and turbo may straddle a split's end).
    {KernelId::cuda_decode_f16, "cuda.decode_split_kv.f16", BackendKind::cuda, false, type_bit(KvType::f16),
     type_bit(KvType::f16), kCudaDecodeDims, /*max_n_q=*/16, /*max_gqa_group=*/0, kAllFeatures, KvSplit::whole_waves,
     /*kv_tile=*/64, /*max_splits=*/512, /*stages_q=*/false, Scratch::none, CostModel::cuda_decode, "launch_decode",
     "backend/cuda/decode_split_kv.cuh", /*qvec16_dims=*/kCudaDecodeF16Qvec16Dims},
    {KernelId::cuda_decode_q8_0, "cuda.decode_split_kv.q8_0", BackendKind::cuda, false, type_bit(KvType::q8_0),
     type_bit(KvType::q8_0), kCudaDecodeDims, 16, 0, kAllFeatures, KvSplit::whole_waves, 64, 512, false, Scratch::none,
     CostModel::cuda_decode, "launch_decode", "backend/cuda/decode_split_kv.cuh", kCudaDecodeNarrowDims},
    {KernelId::cuda_decode_q4_0, "cuda.decode_split_kv.q4_0", BackendKind::cuda, false, type_bit(KvType::q4_0),
     type_bit(KvType::q4_0), kCudaDecodeDims, 16, 0, kAllFeatures, KvSplit::whole_waves, 64, 512, false, Scratch::none,
     CostModel::cuda_decode, "launch_decode", "backend/cuda/decode_split_kv.cuh", kCudaDecodeNarrowDims},
    {KernelId::cuda_decode_turbo3, "cuda.decode_split_kv.turbo3", BackendKind::cuda, false, type_bit(KvType::turbo3),
     type_bit(KvType::turbo3), kCudaDecodeTurboDims, 16, 0, kAllFeatures, KvSplit::whole_waves, 64, 512, false,
     Scratch::none, CostModel::cuda_decode, "launch_decode", "backend/cuda/decode_split_kv.cuh",
     kCudaDecodeNarrowDims},
    {KernelId::cuda_decode_turbo4, "cuda.decode_split_kv.turbo4", BackendKind::cuda, false, type_bit(KvType::turbo4),
     type_bit(KvType::turbo4), kCudaDecodeTurboDims, 16, 0, kAllFeatures, KvSplit::whole_waves, 64, 512, false,
     Scratch::none, CostModel::cuda_decode, "launch_decode", "backend/cuda/decode_split_kv.cuh",
     kCudaDecodeNarrowDims},
    // f16 K with a turbo V (seed 001's missing instances).
    {KernelId::cuda_decode_f16_turbo, "cuda.decode_split_kv.f16_turbo", BackendKind::cuda, false,
     type_bit(KvType::f16), type_bit(KvType::turbo3) | type_bit(KvType::turbo4), kCudaDecodeMixDims, 16, 0,
     kAllFeatures, KvSplit::whole_waves, 64, 512, false, Scratch::none, CostModel::cuda_decode, "launch_decode",
     "backend/cuda/decode_split_kv.cuh"},
    // The Hopper prefill (src/backend/cuda/prefill_wgmma.cuh, sm_90a wgmma): same contract as cuda.prefill.* (any
    // n_q, every option, no split, no workspace); q4_0 is dequantized in shared memory into the f16 tiles its MMAs
    // read (swizzled_dequant.cuh). Its rows come before cuda.prefill.* and its cost model differs only by a faster
    // MMA rate, so it never estimates more when neither splits: the router prefers it wherever both accept and the
    // warp-specialized row below does not estimate less (for f16 and q4_0 it now does). Only where it measured faster
    // (bench/prefill_notes.md w2): the q8_0 producer works but ran at 164-170 TFLOP/s against cuda.prefill.q8_0's
    // 181-187, so q8_0 has no row here (its wgmma row is the warp-specialized one below).
    {KernelId::cuda_prefill_wgmma_f16, "cuda.prefill_wgmma.f16", BackendKind::cuda, false, type_bit(KvType::f16),
     type_bit(KvType::f16), kCudaPrefillWgmmaDims, /*max_n_q=*/0, /*max_gqa_group=*/0, kAllFeatures, KvSplit::none,
     /*kv_tile=*/0, /*max_splits=*/1, /*stages_q=*/false, Scratch::none, CostModel::cuda_prefill_wgmma,
     "launch_prefill_wgmma", "backend/cuda/prefill_wgmma.cuh"},
    {KernelId::cuda_prefill_wgmma_q4_0, "cuda.prefill_wgmma.q4_0", BackendKind::cuda, false, type_bit(KvType::q4_0),
     type_bit(KvType::q4_0), kCudaPrefillWgmmaDims, 0, 0, kAllFeatures, KvSplit::none, 0, 1, false, Scratch::none,
     CostModel::cuda_prefill_wgmma, "launch_prefill_wgmma", "backend/cuda/prefill_wgmma.cuh"},
    // The tensor-core prefill (src/backend/cuda/prefill_attention.cuh): any n_q (the cost model leaves n_q <= 16 to
    // the split-KV decode rows), K/V read in their stored format once per 128 query vectors. Keys are split only
    // where the query tiles leave SMs idle (whole waves of one CTA per SM: a 64-row chunk at depth has 16 CTAs
    // over 8 KV heads, a 512-row one 128), in whole 64-key tiles; then partials go to the workspace and the shared
    // combine merges them. Same-type pairs people run, at the head dims that pay (each instance costs CI compile
    // time); every other pair and head dim stays on cuda.generic.
    {KernelId::cuda_prefill_f16, "cuda.prefill.f16", BackendKind::cuda, false, type_bit(KvType::f16),
     type_bit(KvType::f16), kCudaPrefillDims, /*max_n_q=*/0, /*max_gqa_group=*/0, kAllFeatures, KvSplit::whole_waves,
     /*kv_tile=*/64, /*max_splits=*/512, /*stages_q=*/false, Scratch::none, CostModel::cuda_prefill, "launch_prefill",
     "backend/cuda/prefill_attention.cuh"},
    {KernelId::cuda_prefill_q8_0, "cuda.prefill.q8_0", BackendKind::cuda, false, type_bit(KvType::q8_0),
     type_bit(KvType::q8_0), kCudaPrefillQuantDims, 0, 0, kAllFeatures, KvSplit::whole_waves, 64, 512, false,
     Scratch::none, CostModel::cuda_prefill, "launch_prefill", "backend/cuda/prefill_attention.cuh"},
    {KernelId::cuda_prefill_q4_0, "cuda.prefill.q4_0", BackendKind::cuda, false, type_bit(KvType::q4_0),
     type_bit(KvType::q4_0), kCudaPrefillQuantDims, 0, 0, kAllFeatures, KvSplit::whole_waves, 64, 512, false,
     Scratch::none, CostModel::cuda_prefill, "launch_prefill", "backend/cuda/prefill_attention.cuh"},
    {KernelId::cuda_prefill_turbo3, "cuda.prefill.turbo3", BackendKind::cuda, false, type_bit(KvType::turbo3),
     type_bit(KvType::turbo3), kCudaPrefillQuantDims, 0, 0, kAllFeatures, KvSplit::whole_waves, 64, 512, false,
     Scratch::none, CostModel::cuda_prefill, "launch_prefill", "backend/cuda/prefill_attention.cuh"},
    {KernelId::cuda_prefill_turbo4, "cuda.prefill.turbo4", BackendKind::cuda, false, type_bit(KvType::turbo4),
     type_bit(KvType::turbo4), kCudaPrefillQuantDims, 0, 0, kAllFeatures, KvSplit::whole_waves, 64, 512, false,
     Scratch::none, CostModel::cuda_prefill, "launch_prefill", "backend/cuda/prefill_attention.cuh"},
    // The warp-specialized Hopper prefill (src/backend/cuda/prefill_wgmma_ws.cuh): the same MMAs and softmax on two
    // consumer warpgroups fed by a producer warpgroup through mbarriers (which also dequantizes q8_0 / q4_0 / turbo
    // into the f16 slots), consumers in ping-pong (but for q4_0). Same contract as cuda.prefill_wgmma.*. Measured (bench/prefill_notes.md,
    // sessions 7-9; TFLOP/s, 512 rows at 32K / 131K): f16 527 / 544 against cuda.prefill_wgmma's 393 / 412, q8_0
    // 359 / 374 against cuda.prefill.q8_0's 164 / 166, q4_0 430 / 447 against cuda.prefill_wgmma's 324 / 338, so the
    // router takes it for every type it has (its cost model carries the rates per type).
    {KernelId::cuda_prefill_wgmma_ws_f16, "cuda.prefill_wgmma_ws.f16", BackendKind::cuda, false,
     type_bit(KvType::f16), type_bit(KvType::f16), kCudaPrefillWgmmaDims, /*max_n_q=*/0, /*max_gqa_group=*/0,
     kAllFeatures, KvSplit::none, /*kv_tile=*/0, /*max_splits=*/1, /*stages_q=*/false, Scratch::none,
     CostModel::cuda_prefill_wgmma_ws, "launch_prefill_wgmma_ws", "backend/cuda/prefill_wgmma_ws.cuh"},
    {KernelId::cuda_prefill_wgmma_ws_q8_0, "cuda.prefill_wgmma_ws.q8_0", BackendKind::cuda, false,
     type_bit(KvType::q8_0), type_bit(KvType::q8_0), kCudaPrefillWgmmaDims, 0, 0, kAllFeatures, KvSplit::none, 0, 1,
     false, Scratch::none, CostModel::cuda_prefill_wgmma_ws, "launch_prefill_wgmma_ws",
     "backend/cuda/prefill_wgmma_ws.cuh"},
    {KernelId::cuda_prefill_wgmma_ws_q4_0, "cuda.prefill_wgmma_ws.q4_0", BackendKind::cuda, false,
     type_bit(KvType::q4_0), type_bit(KvType::q4_0), kCudaPrefillWgmmaDims, 0, 0, kAllFeatures, KvSplit::none, 0, 1,
     false, Scratch::none, CostModel::cuda_prefill_wgmma_ws, "launch_prefill_wgmma_ws",
     "backend/cuda/prefill_wgmma_ws.cuh"},
    // turbo3 / turbo4: the producer looks centroids up in register tables and multiplies the norm in; the query is
    // rotated at staging, the output rows back at the end. Measured (bench/prefill_notes.md, session 9): turbo3
    // 306-322 and turbo4 334-348 TFLOP/s against cuda.prefill.turbo*'s 152-159, so the router takes them.
    {KernelId::cuda_prefill_wgmma_ws_turbo3, "cuda.prefill_wgmma_ws.turbo3", BackendKind::cuda, false,
     type_bit(KvType::turbo3), type_bit(KvType::turbo3), kCudaPrefillWgmmaDims, 0, 0, kAllFeatures, KvSplit::none, 0,
     1, false, Scratch::none, CostModel::cuda_prefill_wgmma_ws, "launch_prefill_wgmma_ws",
     "backend/cuda/prefill_wgmma_ws.cuh"},
    {KernelId::cuda_prefill_wgmma_ws_turbo4, "cuda.prefill_wgmma_ws.turbo4", BackendKind::cuda, false,
     type_bit(KvType::turbo4), type_bit(KvType::turbo4), kCudaPrefillWgmmaDims, 0, 0, kAllFeatures, KvSplit::none, 0,
     1, false, Scratch::none, CostModel::cuda_prefill_wgmma_ws, "launch_prefill_wgmma_ws",
     "backend/cuda/prefill_wgmma_ws.cuh"},
};
inline constexpr int kKernelCount = static_cast<int>(std::size(kKernels));

/// The row of an id (ids are row indices; checked below).
constexpr const KernelSpec& kernel_spec(KernelId id) { return kKernels[static_cast<int>(id)]; }

constexpr bool backend_has_kernels(BackendKind b) {
  for (const KernelSpec& k : kKernels) {
    if (k.backend == b) return true;
  }
  return false;
}

// ---- What the compiler can check -------------------------------------------------------------------------------
namespace table_check {

constexpr bool ids_are_row_indices() {
  for (int i = 0; i < kKernelCount; ++i) {
    if (static_cast<int>(kKernels[i].id) != i) return false;
  }
  return true;
}

constexpr bool names_unique_and_prefixed() {
  for (int i = 0; i < kKernelCount; ++i) {
    const std::string_view prefix = backend_name(kKernels[i].backend);
    const std::string_view name = kKernels[i].name;
    if (name.size() <= prefix.size() + 1 || name.substr(0, prefix.size()) != prefix || name[prefix.size()] != '.') {
      return false;
    }
    for (int j = 0; j < i; ++j) {
      if (kKernels[j].name == name) return false;
    }
  }
  return true;
}

/// A backend with rows has exactly one generic row, and it accepts everything validate() accepts.
constexpr bool each_backend_has_one_total_generic() {
  for (int b = 0; b < kBackendCount; ++b) {
    int rows = 0, generic = 0;
    for (const KernelSpec& k : kKernels) {
      if (static_cast<int>(k.backend) != b) continue;
      ++rows;
      if (!k.generic) continue;
      ++generic;
      if (k.k_types != kAllKvTypes || k.v_types != kAllKvTypes || !k.head_dims.empty() || k.max_n_q != 0 ||
          k.max_gqa_group != 0 || k.features != kAllFeatures) {
        return false;
      }
    }
    if (rows > 0 && generic != 1) return false;
  }
  return true;
}

constexpr bool rows_are_well_formed() {
  for (const KernelSpec& k : kKernels) {
    if (k.k_types == 0 || (k.k_types & ~kAllKvTypes) != 0) return false;
    if (k.v_types == 0 || (k.v_types & ~kAllKvTypes) != 0) return false;
    if ((k.features & ~kAllFeatures) != 0) return false;
    if (k.max_n_q < 0 || k.max_gqa_group < 0 || k.max_splits < 1) return false;
    if (k.kv_split != KvSplit::none && k.kv_tile < 1) return false;
    if (k.scratch == Scratch::kv_tile_dequant && k.kv_tile < 1) return false;
    for (const HeadDimPair& d : k.head_dims) {
      if (d.d_k < 1 || d.d_v < 1) return false;
    }
    // A 16-query-vector instance is a second width of a pair the row compiles, on a whole-wave decode row.
    for (const HeadDimPair& d : k.qvec16_dims) {
      if (k.backend != BackendKind::cuda || k.kv_split != KvSplit::whole_waves) return false;
      bool listed = false;
      for (const HeadDimPair& h : k.head_dims) listed = listed || (h.d_k == d.d_k && h.d_v == d.d_v);
      if (!listed) return false;
    }
    // CUDA rows are compiled from the table: the generator needs a function to instantiate and where it lives,
    // and a specialized instance needs concrete head dims.
    if (k.backend == BackendKind::cuda) {
      if (k.entry.empty() || k.header.empty()) return false;
      if (!k.generic && k.head_dims.empty()) return false;
    }
  }
  return true;
}

}  // namespace table_check

static_assert(table_check::ids_are_row_indices(), "kKernels[i].id must be KernelId(i): keep enum and rows in order");
static_assert(table_check::names_unique_and_prefixed(), "kernel names are unique and start with '<backend>.'");
static_assert(table_check::each_backend_has_one_total_generic(),
              "each backend with rows has exactly one generic row accepting every type, head dim and feature");
static_assert(backend_has_kernels(BackendKind::ref), "the reference backend is always routable");
static_assert(table_check::rows_are_well_formed(), "a row has non-empty exact type masks and sane limits");

}  // namespace plan
}  // namespace kvflash
