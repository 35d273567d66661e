// Tensor-core prefill on Hopper warpgroup MMAs (wgmma, sm_90a) at head dim 128: f16 K/V, and block-quantized K/V
// (q4_0 routed; q8_0 compiled by nothing yet, see swizzled_dequant.cuh) dequantized in shared memory into the very
// f16 tiles the f16 path copies, so the MMA and softmax code is the same for every type.
//
// A CTA of two warpgroups owns 128 query vectors of one (sequence, KV head), the GQA group folded into M as in
// prefill_attention.cuh (whose work split, PrefillWork, it shares); warpgroup w owns vectors 64w .. 64w + 63.
// Keys come in tiles of 128:
//   all 256 threads copy K and V tiles with cp.async into the 128-byte swizzled layout wgmma reads, K two tiles and
//   V one tile ahead of the MMAs (two slots each; row offsets, page table included, a tile ahead in shared memory);
//   quantized: the stored rows land in one raw slot each a tile earlier, and all threads dequantize them into
//   those slots between two barriers;
//   S = Q K^T: 8 wgmma m64n128k16 per warpgroup, Q and K both from shared memory (K-major);
//   the score options (score_variant.cuh) and the online softmax in base 2 on the accumulators in registers;
//   O += P V: 8 wgmma m64n128k16 with P's accumulators re-packed as the register A operand and the [key][d] V tile
//   read transposed (MN-major B, allowed for 16-bit types).
// Per warpgroup the two are software-pipelined: S(n + 1) is issued with O += P(n) V(n), and the softmax of tile
// n + 1 runs on the CUDA cores while the tensor cores finish P(n) V(n). The accumulators of a warpgroup are spread
// over its 128 threads (64 f32 each for S and for O, 32 registers of P), which is what frees the registers that
// capped the mma.sync kernel at 32-key steps. No producer warpgroup yet: one barrier per tile.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "backend/cuda/cuda_status.h"
#include "backend/cuda/grid_launch.cuh"
#include "backend/cuda/kv_tile_copy.cuh"
#include "backend/cuda/output_rows.cuh"
#include "backend/cuda/prefill_attention.cuh"
#include "backend/cuda/ptx.cuh"
#include "backend/cuda/score_variant.cuh"
#include "backend/cuda/swizzled_dequant.cuh"
#include "backend/cuda/wgmma.cuh"
#include "backend/cuda/wgmma_softmax.cuh"
#include "kvflash/attention_problem.h"
#include "kvflash/route.h"

namespace kvflash::cuda {

/// Bytes of a 64-half row of a swizzled operand (one 128-byte swizzle row).
inline constexpr int kSwizzleRowBytes = 128;

/// Type: the K and V cache type (the same for both).
template <KvType Type>
struct WgmmaPrefillConfig {
  static constexpr int kWarpgroups = 2;
  static constexpr int kThreads = 128 * kWarpgroups;
  static constexpr int kGroupQvecs = 64;  // the M of one wgmma
  static constexpr int kQvecs = kGroupQvecs * kWarpgroups;
  static constexpr int kDim = 128;
  static constexpr int kKeyTile = 128;  // the N of the score wgmma
  // Two K slots and two V slots: K(n + 1) is multiplied while V(n) is, and K(n + 2), V(n + 1) are in flight.
  static constexpr int kStages = 2;
  // Swizzled operand layout: a matrix of R rows x 128 halves is two column blocks of 64 halves (128-byte rows), block
  // c at c * R * 128 bytes; 8-row atoms of 1024 bytes.
  static constexpr int kRowBytes = kSwizzleRowBytes;
  static constexpr int kAtomBytes = 8 * kRowBytes;
  static constexpr int kQBytes = kQvecs * kDim * 2;
  static constexpr int kTileBytes = kKeyTile * kDim * 2;  // one K or V tile
  static constexpr int kStagesOffset = kQBytes;
  static constexpr int kStagesBytes = 2 * kStages * kTileBytes;  // K slot 0, K slot 1, V slot 0, V slot 1
  // The epilogue's f32 output rows, maxima and sums alias the stages once every MMA is done.
  static constexpr int kEpilogueBytes = kQvecs * (kDim + 2) * 4;
  static_assert(kEpilogueBytes <= kStagesBytes);
  // Quantized K/V: a tile as stored (rows of kRawRowBytes, back to back) lands in one raw slot for K and one for V,
  // and all threads dequantize it into an f16 slot (swizzled_dequant.cuh) a tile before the MMAs read it.
  static constexpr bool kQuantized = Type != KvType::f16;
  static constexpr int kRawRowBytes = static_cast<int>(row_bytes(Type, kDim));
  static constexpr int kRawTileBytes = kQuantized ? (kKeyTile * kRawRowBytes + 15) / 16 * 16 : 0;
  static constexpr int kRawOffset = kStagesOffset + kStagesBytes;
  static constexpr int kVariantOffset = kRawOffset + 2 * kRawTileBytes;
  static constexpr int kOffsetsOffset =
      (kVariantOffset + kQvecs * static_cast<int>(sizeof(ScoreVariant)) + 15) / 16 * 16;
  static constexpr int kUsedBytes = kOffsetsOffset + 3 * 2 * kKeyTile * 8;  // int64 [tile % 3][K, V][row]
  // The dynamic shared-memory window is 16-byte aligned; the swizzle atoms need 1024: the kernel rounds its base up.
  static constexpr int kSmemBytes = kUsedBytes + 1024;
  static_assert(kSmemBytes <= 227 * 1024, "a CTA must fit an SM's shared memory");
};

/// Byte offset of 16-byte chunk `chunk` (0..15: halves 8 chunk .. 8 chunk + 7) of row `row` in a swizzled matrix of
/// `rows` rows.
__device__ __forceinline__ uint32_t swizzled_chunk(int row, int chunk, int rows) {
  return static_cast<uint32_t>((chunk / 8) * rows * kSwizzleRowBytes + row * kSwizzleRowBytes +
                               (((chunk % 8) ^ (row % 8)) * 16));
}

/// S = Q K^T of one KeyTile-key tile into a warpgroup's 64 x KeyTile accumulator `s`, issued and committed, not
/// waited for. `q_addr`: the warpgroup's first query row in a swizzled Q of Qvecs rows; `k_addr`: the swizzled K
/// tile. k-step ks reads halves 16 ks .. + 15, i.e. 32 bytes into column block ks / 4 of both operands.
template <int D, int KeyTile, int Qvecs>
__device__ __forceinline__ void issue_qk_tile(float (&s)[64], uint32_t q_addr, uint32_t k_addr) {
#pragma unroll
  for (int ks = 0; ks < D / 16; ++ks) {
    const uint32_t col = (ks % 4) * 32;
    const uint64_t da = wgmma::descriptor(q_addr + (ks / 4) * Qvecs * kSwizzleRowBytes + col, 16, 8 * kSwizzleRowBytes);
    const uint64_t db =
        wgmma::descriptor(k_addr + (ks / 4) * KeyTile * kSwizzleRowBytes + col, 16, 8 * kSwizzleRowBytes);
    wgmma::mma_m64n128k16_ss(s, da, db, ks > 0);
  }
  wgmma::commit();
}

/// True where no per-score option applies (no mask, window, softcap or ALiBi; causal is handled per tile): then, as
/// in prefill_attention.cuh, log2(e) rides in the staged query and the softmax runs in base 2.
__device__ __forceinline__ bool causal_only_scores(const AttentionProblem& p) {
  return p.mask.data == nullptr && p.options.window == 0 && p.options.softcap == 0.0 && p.options.alibi_max_bias == 0.0;
}

/// How many of the work's key tiles a warpgroup of `group_rows` query vectors from `group_row0` multiplies: a tile
/// only if one of its rows may see a key of it (uniform over the warpgroup: wgmma needs all 128 threads or none).
/// Causal tiles past the group's last row are the only ones skipped, so the busy tiles are 0 .. count - 1; counted
/// once so that no 64-bit bound stays live (and spilled) in the tile loop.
template <int KeyTile>
__device__ __forceinline__ int group_busy_tiles(const AttentionProblem& p, const PrefillWork& w, int group_row0,
                                                int group_rows) {
  if (group_rows <= 0) return 0;
  if (!p.options.causal) return w.keys.n_tiles;
  const int64_t last_rel = w.len - p.shape.n_q + w.row_of(group_row0 + group_rows - 1) - w.keys.key_begin;
  return last_rel < 0 ? 0 : static_cast<int>(std::min<int64_t>(w.keys.n_tiles, last_rel / KeyTile + 1));
}

/// The CTA's query vectors (of `w`) to f16 in the swizzled layout the S wgmma reads, times `q_scale`: one 16-byte
/// chunk (8 halves) per thread and step, zeros past w.n_qvecs. The caller fences the async proxy and synchronizes
/// before the wgmma reads `q_s`.
template <int Qvecs, int D, int Threads>
__device__ __forceinline__ void stage_swizzled_query(const AttentionProblem& p, const PrefillWork& w, float q_scale,
                                                     uint8_t* q_s) {
  for (int idx = static_cast<int>(threadIdx.x); idx < Qvecs * (D / 8); idx += Threads) {
    const int r = idx / (D / 8), chunk = idx % (D / 8);
    uint32_t packed[4] = {0, 0, 0, 0};
    if (r < w.n_qvecs) {
      const float* src = query_row(p, w.s, w.head_of(r), w.row_of(r)) + 8 * chunk;
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        packed[e] = ptx::as_u32(__floats2half2_rn(src[2 * e] * q_scale, src[2 * e + 1] * q_scale));
      }
    }
    *reinterpret_cast<uint4*>(q_s + swizzled_chunk(r, chunk, Qvecs)) =
        make_uint4(packed[0], packed[1], packed[2], packed[3]);
  }
}

/// stage_swizzled_query for a turbo K cache: each query row rotated forward first (TURBOQUANT.md: its scores against
/// the stored, rotated keys are those against the reconstructed keys), one warp per row, in float32 before the one
/// rounding to f16, as stage_query (decode_common.cuh) does for the mma.sync kernels.
template <int Qvecs, int D, int Threads>
__device__ __forceinline__ void stage_swizzled_query_rotated(const AttentionProblem& p, const PrefillWork& w,
                                                             float q_scale, uint8_t* q_s) {
  static_assert(D == 128 && Threads % 32 == 0, "one rotation group per row, whole warps");
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  for (int r = warp; r < Qvecs; r += Threads / 32) {
    float x[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    if (r < w.n_qvecs) {  // the same for the whole warp, which warp_rotate128 needs
      const float* src = query_row(p, w.s, w.head_of(r), w.row_of(r));
#pragma unroll
      for (int k = 0; k < 4; ++k) x[k] = src[lane + 32 * k] * q_scale;
      warp_rotate128(x, /*inverse=*/false);
    }
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const int e = lane + 32 * k;
      *reinterpret_cast<__half*>(q_s + swizzled_chunk(r, e / 8, Qvecs) + 2 * (e % 8)) = __float2half_rn(x[k]);
    }
  }
}

/// Byte offsets of the K rows (threads 0 .. KeyTile - 1) and V rows (threads KeyTile ..) of the tile starting at
/// key0, -1 past key_end; computed a tile ahead so that the copies read them from shared memory (a paged row's
/// offset takes a page-table load, which would otherwise sit in every thread's copy loop).
template <int KeyTile>
__device__ __forceinline__ void swizzled_tile_offsets(const AttentionProblem& p, const PrefillWork& w, int64_t key0,
                                                      int64_t* offsets) {
  const int tid = static_cast<int>(threadIdx.x);
  if (tid >= 2 * KeyTile) return;
  const int row = tid % KeyTile;
  const int64_t key = key0 + row;
  const KvView& view = tid < KeyTile ? p.k : p.v;
  offsets[tid] = key < w.keys.key_end ? kv_row_offset_on_device(view, w.s, w.hkv, key) : -1;
}

/// Copies KeyTile rows of 256 bytes (offsets from swizzled_tile_offsets, -1: a row of zeros, which keeps P * V
/// finite) into a swizzled tile. Thread tid (0 .. Threads - 1 of the copying threads) moves 16-byte chunk tid % 16
/// of rows tid / 16 + Threads / 16 * i:
/// a whole tile stored as one span (`spans`: kv_tile_run_rows() said KeyTile) from one base address with immediate
/// offsets (a row is 256 bytes and a pass of rows keeps its swizzle phase); cp.async per row offset when every row
/// address is 16-byte aligned; else (odd strides or padding) 2-byte loads and one shared store per chunk.
template <int KeyTile, int Threads>
__device__ __forceinline__ void copy_swizzled_tile(uint8_t* tile, const void* data, const int64_t* offsets,
                                                   bool aligned16, bool spans, int tid) {
  constexpr int kRowsPerPass = Threads / 16;
  static_assert(kRowsPerPass % 8 == 0, "rows r and r + kRowsPerPass share the swizzle phase r % 8");
  const int chunk = tid % 16;
  const auto* base = static_cast<const uint8_t*>(data);
  if (spans && offsets[KeyTile - 1] >= 0) {
    // The per-row path costs ~20 instructions per 16-byte copy (offset load, 64-bit address, swizzle): a third of
    // the one-role kernel's issue slots per tile in Nsight (session 7).
    const int row0 = tid / 16;
    const uint8_t* src = base + offsets[0] + row0 * 2 * kSwizzleRowBytes + 16 * chunk;
    uint8_t* dst = tile + swizzled_chunk(row0, chunk, KeyTile);
#pragma unroll
    for (int i = 0; i < KeyTile / kRowsPerPass; ++i) {
      ptx::cp_async<16>(dst + i * kRowsPerPass * kSwizzleRowBytes, src + i * kRowsPerPass * 2 * kSwizzleRowBytes, 16);
    }
    return;
  }
  if (aligned16) {
#pragma unroll
    for (int i = 0; i < KeyTile / kRowsPerPass; ++i) {
      const int row = tid / 16 + kRowsPerPass * i;
      const int64_t off = offsets[row];
      ptx::cp_async<16>(tile + swizzled_chunk(row, chunk, KeyTile), off >= 0 ? base + off + 16 * chunk : base,
                        off >= 0 ? 16 : 0);
    }
    return;
  }
#pragma unroll 1
  for (int i = 0; i < KeyTile / kRowsPerPass; ++i) {
    const int row = tid / 16 + kRowsPerPass * i;
    const int64_t off = offsets[row];
    uint32_t packed[4] = {0, 0, 0, 0};
    if (off >= 0) {
      const auto* src = reinterpret_cast<const uint16_t*>(base + off + 16 * chunk);
#pragma unroll
      for (int e = 0; e < 4; ++e) packed[e] = src[2 * e] | (uint32_t{src[2 * e + 1]} << 16);
    }
    *reinterpret_cast<uint4*>(tile + swizzled_chunk(row, chunk, KeyTile)) =
        make_uint4(packed[0], packed[1], packed[2], packed[3]);
  }
}

/// Copies tile n of `keys` as stored (KeyTile rows of RawRowBytes, offsets from swizzled_tile_offsets) into a raw
/// slot, rows back to back: as one span in 16-byte pieces where kv_tile_run_rows() said KeyTile (`spans`), else row
/// by row in `width`-byte pieces; zeros past key_end either way.
template <int KeyTile, int RawRowBytes, int Threads>
__device__ __forceinline__ void copy_raw_tile(uint8_t* raw, const void* data, const int64_t* offsets, int width,
                                              bool spans, const DecodeWork& keys, int n, int tid) {
  if (spans) {
    const int64_t rows_valid = keys.key_end - (keys.key_begin + static_cast<int64_t>(n) * KeyTile);
    copy_tile_span<KeyTile, RawRowBytes, Threads>(raw, data, offsets[0], rows_valid, tid);
  } else {
    copy_rows<RawRowBytes, RawRowBytes, KeyTile, Threads>(raw, data, offsets, width, tid);
  }
}

/// Dequantizes KeyTile stored rows (raw, rows RawRowBytes apart) into a swizzled f16 tile, 32 values of a row per
/// thread and pass (a GGML block, or a quarter of a turbo block, whose centroid table words `turbo_table` holds in
/// shared memory); then makes the writes visible to the tensor cores (async proxy) before the caller's next barrier.
/// Lane l of a warp takes values 32 (l / 8) .. + 31 of row l % 8 of the warp's 8 rows: a quarter-warp stores one
/// chunk of 8 rows, which the swizzle puts in 8 different bank groups, and a thread's rows share row % 8, so its
/// swizzled columns and both addresses move by constants from pass to pass.
/// q8_0 (kSplitRows): the 136-byte rows put rows r and r + 4 of 8 consecutive ones in the same banks (34 words
/// apart per row), so every load of that layout was a 2-way conflict. A warp takes rows 0-3 and 8-11 of a 16-row
/// group instead (the odd warp 4-7 and 12-15), lanes 4-7 of a quarter-warp the next block: loads and stores are
/// both conflict-free (checked by enumerating the 128 threads' addresses). No such row set exists for q4_0's 72-byte
/// rows or the turbo rows, whose loads stay 2-way: the stores (4 wavefronts each) keep the conflict-free layout.
template <KvType Type, int RawRowBytes, int KeyTile, int Threads>
__device__ __forceinline__ void dequantize_swizzled_tile(uint8_t* tile, const uint8_t* raw, int tid,
                                                         const void* turbo_table = nullptr) {
  using Dequant = SwizzledDequant<Type>;
  constexpr bool kTurbo = Type == KvType::turbo3 || Type == KvType::turbo4;
  constexpr bool kSplitRows = Type == KvType::q8_0;
  constexpr int kRowsPerPass = Threads / 4;
  static_assert(Threads % 64 == 0 && KeyTile % kRowsPerPass == 0, "whole warp pairs; whole passes");
  const int lane = tid % 32, warp = tid / 32, half = (lane % 8) / 4;
  const int block = kSplitRows ? (lane / 8) ^ half : lane / 8;
  const int row = kSplitRows ? 16 * (warp / 2) + 4 * (warp % 2) + lane % 4 + 8 * half : 8 * warp + lane % 8;
  uint8_t* dst = tile + (block / 2) * KeyTile * kSwizzleRowBytes + row * kSwizzleRowBytes;
  uint32_t column[4];
#pragma unroll
  for (int c = 0; c < 4; ++c) column[c] = static_cast<uint32_t>(((4 * (block % 2) + c) ^ (row % 8)) * 16);
  const auto store = [&](int i, const uint4 (&chunk)[4]) {
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      *reinterpret_cast<uint4*>(dst + i * kRowsPerPass * kSwizzleRowBytes + column[c]) = chunk[c];
    }
  };
  if constexpr (kTurbo) {
    static_assert(RawRowBytes == Dequant::kRowBytes, "one turbo block per 128-value row");
    const turbo::TableRegs regs = turbo::load_table_regs(turbo_table);
#pragma unroll
    for (int i = 0; i < KeyTile / kRowsPerPass; ++i) {
      uint4 chunk[4];
      Dequant::quarter(raw + (row + i * kRowsPerPass) * RawRowBytes, block, regs, chunk);
      store(i, chunk);
    }
  } else {
    static_assert(RawRowBytes == 4 * Dequant::kBlockBytes && RawRowBytes % 8 == 0,
                  "rows of four GGML blocks, 8-byte aligned");
    const int block_start = block * Dequant::kBlockBytes;
    const bool odd = (block_start & 2) != 0;
    const uint8_t* src = raw + row * RawRowBytes + (block_start & ~3);
#pragma unroll
    for (int i = 0; i < KeyTile / kRowsPerPass; ++i) {
      uint32_t x[Dequant::kWords];
#pragma unroll
      for (int k = 0; k < Dequant::kWords; ++k) x[k] = detail::lds_u32(src + i * kRowsPerPass * RawRowBytes + 4 * k);
      uint4 chunk[4];
      Dequant::block(x, odd, chunk);
      store(i, chunk);
    }
  }
  wgmma::fence_proxy_async();
}

template <int HeadDimK, int HeadDimV, KvType KType, KvType VType>
__global__ void __launch_bounds__(WgmmaPrefillConfig<KType>::kThreads, 1)
    prefill_wgmma_kernel(const AttentionProblem p, const PrefillLaunch launch) {
  using Cfg = WgmmaPrefillConfig<KType>;
  static_assert(KType == VType && (KType == KvType::f16 || has_swizzled_dequant(KType)) && HeadDimK == Cfg::kDim &&
                    HeadDimV == Cfg::kDim,
                "the wgmma prefill is compiled for f16, q8_0 or q4_0 K/V (one type) at head dim 128");
  constexpr int T = Cfg::kKeyTile;
  constexpr int D = Cfg::kDim;

  extern __shared__ __align__(16) uint8_t smem_raw[];
  uint8_t* smem = smem_raw + ((1024 - ptx::smem_address(smem_raw) % 1024) % 1024);
  uint8_t* q_s = smem;
  uint8_t* stages = smem + Cfg::kStagesOffset;
  ScoreVariant* variants = reinterpret_cast<ScoreVariant*>(smem + Cfg::kVariantOffset);
  int64_t* offsets = reinterpret_cast<int64_t*>(smem + Cfg::kOffsetsOffset);  // tile n's rows in slot n % 3

  const int tid = static_cast<int>(threadIdx.x), warp = tid / 32, lane = tid % 32;
  const int wg = tid / 128, warp_in_group = warp % 4;

  const PrefillWork w = prefill_work<T>(p, launch, Cfg::kQvecs);
  if (w.n_qvecs <= 0) return;
  const DecodeWork& keys = w.keys;
  const int n_tiles = keys.n_tiles;
  // Offsets of tile n in slot n % 3, computed kOffsetsLead iterations before tile n is multiplied: f16 K(n) is
  // copied two iterations before and V(n) one; a quantized K(n) is copied as stored three before (dequantized two
  // before) and V(n) two. A slot is read over two iterations and rewritten a barrier after its last reader.
  constexpr int kOffsetsLead = Cfg::kQuantized ? 4 : 3;
  const auto tile_offsets = [&](int n) {
    swizzled_tile_offsets<T>(p, w, keys.key_begin + static_cast<int64_t>(n) * T, offsets + (n % 3) * 2 * T);
  };
  // f16: copies straight into the f16 slots.
  const bool k_aligned = kv_copy_width(p.k, w.s, w.hkv, D * 2) >= 16;
  const bool v_aligned = kv_copy_width(p.v, w.s, w.hkv, D * 2) >= 16;
  // Tiles stored as one run of bytes (contiguous caches, pages of a multiple of T rows), in the stored row size of
  // the type: f16 rows go to the swizzled slots, quantized ones to the raw slots.
  const bool k_spans = kv_tile_run_rows<T>(p.k, keys, Cfg::kQuantized ? Cfg::kRawRowBytes : D * 2) == T;
  const bool v_spans = kv_tile_run_rows<T>(p.v, keys, Cfg::kQuantized ? Cfg::kRawRowBytes : D * 2) == T;
  const auto issue_k = [&](int n) {
    copy_swizzled_tile<T, Cfg::kThreads>(stages + (n % 2) * Cfg::kTileBytes, p.k.data, offsets + (n % 3) * 2 * T,
                                         k_aligned, k_spans, tid);
  };
  const auto issue_v = [&](int n) {
    copy_swizzled_tile<T, Cfg::kThreads>(stages + (2 + n % 2) * Cfg::kTileBytes, p.v.data,
                                         offsets + (n % 3) * 2 * T + T, v_aligned, v_spans, tid);
  };
  // Quantized: copies of the stored rows into the raw slots, then dequantization into the f16 slots.
  uint8_t* raw_k = smem + Cfg::kRawOffset;
  uint8_t* raw_v = raw_k + Cfg::kRawTileBytes;
  const int width_k = kv_copy_width(p.k, w.s, w.hkv, Cfg::kRawRowBytes);
  const int width_v = kv_copy_width(p.v, w.s, w.hkv, Cfg::kRawRowBytes);
  const auto issue_raw_k = [&](int n) {
    copy_raw_tile<T, Cfg::kRawRowBytes, Cfg::kThreads>(raw_k, p.k.data, offsets + (n % 3) * 2 * T, width_k, k_spans,
                                                       keys, n, tid);
  };
  const auto issue_raw_v = [&](int n) {
    copy_raw_tile<T, Cfg::kRawRowBytes, Cfg::kThreads>(raw_v, p.v.data, offsets + (n % 3) * 2 * T + T, width_v,
                                                       v_spans, keys, n, tid);
  };
  const auto dequant_k = [&](int n) {
    if constexpr (Cfg::kQuantized) {
      dequantize_swizzled_tile<KType, Cfg::kRawRowBytes, T, Cfg::kThreads>(stages + (n % 2) * Cfg::kTileBytes, raw_k,
                                                                           tid);
    }
  };
  const auto dequant_v = [&](int n) {
    if constexpr (Cfg::kQuantized) {
      dequantize_swizzled_tile<KType, Cfg::kRawRowBytes, T, Cfg::kThreads>(stages + (2 + n % 2) * Cfg::kTileBytes,
                                                                           raw_v, tid);
    }
  };
  static_assert(Cfg::kThreads == 2 * T, "one thread computes each K and V row offset of a tile");
  for (int n = 0; n < kOffsetsLead - 1 && n < n_tiles; ++n) tile_offsets(n);
  __syncthreads();
  if constexpr (Cfg::kQuantized) {
    if (n_tiles > 0) {
      issue_raw_k(0);
      issue_raw_v(0);
    }
    ptx::cp_async_commit();
  } else {
    if (n_tiles > 0) issue_k(0);
    ptx::cp_async_commit();
    if (n_tiles > 1) issue_k(1);
    if (n_tiles > 0) issue_v(0);
    ptx::cp_async_commit();
    if (n_tiles > 2) tile_offsets(2);  // slot 2: nobody reads it before the loop's first barrier
  }

  if (tid < w.n_qvecs) variants[tid] = ScoreVariant::make(p, w.s, w.head_of(tid), w.row_of(tid), w.len);
  const bool causal_only = causal_only_scores(p);
  stage_swizzled_query<Cfg::kQvecs, D, Cfg::kThreads>(p, w, causal_only ? launch.scale * kLog2e : launch.scale, q_s);
  wgmma::fence_proxy_async();  // the staged query, for the wgmma after the next barrier

  // This thread's two rows: 64 wg + 16 warp_in_group + g (+ 8).
  const int group_row0 = Cfg::kGroupQvecs * wg;
  const int group_rows = std::min(int{Cfg::kGroupQvecs}, w.n_qvecs - group_row0);  // <= 0: the group only copies
  const int busy_tiles = group_busy_tiles<T>(p, w, group_row0, group_rows);
  WgmmaRowSoftmax<T> soft = WgmmaRowSoftmax<T>::make(p, w, group_row0, warp_in_group, lane);
  float o[64];
#pragma unroll
  for (int i = 0; i < 64; ++i) o[i] = 0.0f;

  const uint32_t q_addr = ptx::smem_address(q_s) + group_row0 * Cfg::kRowBytes;
  const uint32_t stages_addr = ptx::smem_address(stages);

  // S = Q K(n)^T into s, issued, not waited for.
  const auto issue_scores = [&](int n, float (&s)[64]) {
    issue_qk_tile<D, T, Cfg::kQvecs>(s, q_addr, stages_addr + (n % 2) * Cfg::kTileBytes);
  };
  const auto group_busy = [&](int n) { return n < busy_tiles; };

  if constexpr (Cfg::kQuantized) {
    // Before the loop: f16 K(0), V(0), K(1) in their slots, raw K(2) and V(1) in flight (what iteration 0 expects).
    ptx::cp_async_wait<0>();
    __syncthreads();  // raw K(0), V(0) landed for every thread
    if (n_tiles > 0) {
      dequant_k(0);
      dequant_v(0);
    }
    __syncthreads();  // the raw slots are free again
    if (n_tiles > 1) issue_raw_k(1);
    ptx::cp_async_commit();
    if (n_tiles > 3) tile_offsets(3);  // slot 0: tile 0's offsets were last read before the barriers above
    ptx::cp_async_wait<0>();
    __syncthreads();
    if (n_tiles > 1) dequant_k(1);
    __syncthreads();
    if (n_tiles > 2) issue_raw_k(2);
    if (n_tiles > 1) issue_raw_v(1);
    ptx::cp_async_commit();
  } else {
    ptx::cp_async_wait<1>();  // K(0) landed
    wgmma::fence_proxy_async();
    __syncthreads();  // K(0) and the query staged by every thread
  }
  // The tile loop, specialized on causal_only so that the per-score option code is absent from the common case's
  // loop: with both in one loop ptxas kept 255 registers and reloaded spilled copy offsets and descriptor halves
  // from local memory between the HGMMAs (the ws kernel's finding, bench/prefill_notes.md ws1).
  // Software pipeline per warpgroup: S(n + 1) is issued together with O += P(n) V(n), and the softmax of tile
  // n + 1 runs while the tensor cores still multiply P(n) V(n); the rescale of O waits for that product.
  const auto consume = [&]<bool CausalOnly>() {
    float s[64];
    uint32_t pa[T / 16][4];
    if (group_busy(0)) {
      wgmma::fence();
      issue_scores(0, s);
      wgmma::wait<0>();
      wgmma::fence_operands(s);
      float alpha0[2];
      // o is still zero: alpha0 has nothing to scale.
      soft.template score_tile_as<CausalOnly>(w, variants, 0, s, alpha0);
    }
    for (int it = 0; it < n_tiles; ++it) {
      ptx::cp_async_wait<0>();
      wgmma::fence_proxy_async();  // this thread's cp.async / st.shared writes, visible to the wgmma (async proxy)
      // K(it + 1) and V(it) landed for every thread; every warpgroup is done with S(it) (K slot it % 2) and with
      // O += P(it - 1) V(it - 1) (V slot (it + 1) % 2), which the copies below overwrite.
      // Quantized: raw K(it + 2) and V(it + 1) landed instead, and are dequantized into those slots here.
      __syncthreads();
      if constexpr (Cfg::kQuantized) {
        if (it + 2 < n_tiles) dequant_k(it + 2);
        if (it + 1 < n_tiles) dequant_v(it + 1);
        __syncthreads();  // the raw slots are free again
        if (it + 3 < n_tiles) issue_raw_k(it + 3);
        if (it + 2 < n_tiles) issue_raw_v(it + 2);
      } else {
        if (it + 2 < n_tiles) issue_k(it + 2);
        if (it + 1 < n_tiles) issue_v(it + 1);
      }
      ptx::cp_async_commit();
      // The slot of tile it + kOffsetsLead - 3 (f16: tile it, last read by V(it)'s copy; quantized: tile it + 1,
      // last read by the raw copy of V(it + 1)), both a barrier ago.
      if (it + kOffsetsLead < n_tiles) tile_offsets(it + kOffsetsLead);

      if (!group_busy(it)) continue;
      WgmmaRowSoftmax<T>::pack_p(s, pa);  // P(it)
      const bool next = group_busy(it + 1);
#pragma unroll
      for (int ks = 0; ks < T / 16; ++ks) wgmma::fence_operands(pa[ks]);
      wgmma::fence_operands(s);
      wgmma::fence_operands(o);
      wgmma::fence();
      // Issued whether or not the group multiplies tile it + 1 (a wgmma under a condition between others of the
      // same sequence makes ptxas serialize them all, C7520): past the last busy tile the product is not used, and
      // the slot it reads holds K(it + 1) or a finished older tile, never one being copied.
      issue_scores(it + 1, s);
      // O += P V: key step ks (keys 16 ks .. + 15) is V rows 16 ks .., 2048 bytes into each column block; the two
      // column blocks (d 0-63, 64-127) lie T rows apart (the leading byte offset of an MN-major operand).
      const uint32_t v_addr = stages_addr + (2 + it % 2) * Cfg::kTileBytes;
#pragma unroll
      for (int ks = 0; ks < T / 16; ++ks) {
        const uint64_t db = wgmma::descriptor(v_addr + ks * 16 * Cfg::kRowBytes, T * Cfg::kRowBytes, Cfg::kAtomBytes);
        wgmma::mma_m64n128k16_rs_bt(o, pa[ks], db);
      }
      wgmma::commit();
      float alpha[2] = {1.0f, 1.0f};
      wgmma::wait<1>();  // S(it + 1); groups complete in order
      wgmma::fence_operands(s);
      if (next) soft.template score_tile_as<CausalOnly>(w, variants, it + 1, s, alpha);
      wgmma::wait<0>();
      wgmma::fence_operands(o);
#pragma unroll
      for (int ks = 0; ks < T / 16; ++ks) wgmma::fence_operands(pa[ks]);  // read by the tensor cores until here
      WgmmaRowSoftmax<T>::rescale(o, alpha);
    }
  };
  if (causal_only) {
    consume.template operator()<true>();
  } else {
    consume.template operator()<false>();
  }

  // ---- Epilogue: rows to shared memory in head-dim order (aliasing the stages), one warp finishes each row.
  ptx::cp_async_wait<0>();
  __syncthreads();  // every warpgroup is done with the stages
  float* o_rows = reinterpret_cast<float*>(stages);  // [kQvecs][D]
  float* m_rows = o_rows + Cfg::kQvecs * D;
  float* l_rows = m_rows + Cfg::kQvecs;
  soft.template store_rows<D>(o, o_rows, m_rows, l_rows);
  __syncthreads();
  const SplitOutput single;  // one split: finish_row writes the final output rows
  for (int r = warp; r < w.n_qvecs; r += Cfg::kThreads / 32) {
    finish_row(p, o_rows + r * D, D, /*v_rotated=*/false, m_rows[r], l_rows[r], w.s, w.head_of(r), w.row_of(r),
               single, -1);
  }
}

/// What every wgmma prefill launcher does (this one-role kernel and prefill_wgmma_ws.cuh's): refuses a split route
/// (these kernels never cut the keys), sets the instance's shared-memory limit once and checks that a CTA fits an
/// SM, then launches CTAs of Cfg::kQvecs query vectors per (sequence, KV head) over whole tiles of every key.
/// Everything stays on chip: no workspace. `what` names the kernel in errors.
template <auto Kernel, class Cfg>
Status launch_unsplit_wgmma_prefill(const AttentionProblem& p, const Route& route, cudaStream_t stream,
                                    const char* what) {
  if (route.n_splits > 1) {
    return invalid_argument("route with n_splits = " + std::to_string(route.n_splits) + " does not fit the " +
                            what + " (it never splits the keys)");
  }
  static const Status prepared = prepare_kernel(Kernel, Cfg::kThreads, Cfg::kSmemBytes, what);
  KVFLASH_RETURN_IF_ERROR(prepared);
  const AttentionShape& s = p.shape;
  if (s.n_q == 0 || s.n_seq == 0) return Status::Ok();
  PrefillLaunch launch;
  launch.scale = static_cast<float>(effective_scale(p));
  // One split (launch.out's default): every CTA reads its rows' whole key range, whole tiles of it.
  launch.keys_per_split = (std::max<int64_t>(1, s.n_kv) + Cfg::kKeyTile - 1) / Cfg::kKeyTile * Cfg::kKeyTile;
  const int64_t qvecs = s.n_head_q / s.n_head_kv * s.n_q;
  launch.n_qchunks = (qvecs + Cfg::kQvecs - 1) / Cfg::kQvecs;
  return launch_over_sequences(Kernel, p, launch, s.n_head_kv * launch.n_qchunks, Cfg::kThreads, Cfg::kSmemBytes,
                               stream);
}

template <int HeadDimK, int HeadDimV, KvType KType, KvType VType>
Status launch_prefill_wgmma(const AttentionProblem& p, const Route& route, void* workspace, cudaStream_t stream) {
  (void)workspace;
  return launch_unsplit_wgmma_prefill<prefill_wgmma_kernel<HeadDimK, HeadDimV, KType, VType>,
                                      WgmmaPrefillConfig<KType>>(p, route, stream, "wgmma prefill kernel");
}

}  // namespace kvflash::cuda
