// Tensor-core prefill (n_q > 16): a FlashAttention-2-style pass over stored K/V, one CTA per tile of query vectors.
//
// A CTA (4 warps) owns 128 query vectors of one (sequence, KV head) up to d_v 128, 64 above: the GQA group's query
// heads are folded into the M dimension row-major (vector r = query row * group + head in group), so every K/V
// tile read from memory serves the whole group and a CTA spans only 128 / group query rows, which keeps the causal
// key range of a CTA short. Each warp owns two m-tiles (32 vectors; one above d_v 128) and, per tile of 32 stored
// K/V rows (cp.async pipeline shared with the decode kernel, decode_common.cuh):
//   quantized K/V: all warps dequantize the tile once into f16 fragments in shared memory (kv_fragments.cuh);
//   S = Q K^T with m16n8k16 MMAs, each K fragment (ldmatrix for f16) feeding both m-tiles;
//   the score options (score_variant.cuh) and the online softmax in base 2, in registers;
//   O += P V where P's accumulators are re-packed as the A operand directly (no shared-memory round trip).
// No dequantized K/V ever leaves the SM; no split-KV (the query tiles fill the GPU), so no workspace.
// Turbo K: the staged query is rotated once; turbo V: finish_row rotates each output row back.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <string>

#include "backend/cuda/cuda_status.h"
#include "backend/cuda/decode_common.cuh"
#include "backend/cuda/output_rows.cuh"
#include "backend/cuda/ptx.cuh"
#include "backend/cuda/score_variant.cuh"
#include "kvflash/attention_problem.h"
#include "kvflash/route.h"

namespace kvflash::cuda {

/// Per-launch values that are not part of the problem.
struct PrefillLaunch {
  float scale = 1.0f;     // effective_scale(p), folded into the staged query
  int64_t n_qchunks = 1;  // CTAs per (sequence, KV head)
  int64_t seq_begin = 0;  // first sequence of this launch (launches are chunked to fit the grid limit)
};

template <int HeadDimK, int HeadDimV, KvType KType, KvType VType>
struct PrefillConfig {
  static constexpr int kWarps = 4;
  static constexpr int kThreads = 32 * kWarps;
  static constexpr int kDimKStored = static_cast<int>(stored_dim(KType, HeadDimK));
  static constexpr int kDimVStored = static_cast<int>(stored_dim(VType, HeadDimV));
  // Two m-tiles (32 query vectors) per warp up to d_v 128: every K/V fragment a warp reads from shared memory then
  // feeds two MMAs, which halves the shared-memory traffic per MMA (what bound the one-m-tile kernel: ~72 fragment
  // loads of 512 bytes per 128 MMAs). Above d_v 128 the 2 x d_v accumulators would not fit 255 registers.
  static constexpr int kMTiles = kDimVStored <= 128 ? 2 : 1;
  static constexpr int kWarpQvecs = 16 * kMTiles;
  static constexpr int kQvecs = kWarpQvecs * kWarps;
  // 32 keys per tile: 2 m-tiles x 128 output accumulators plus 2 x 64 scores of a 64-key tile spill past 255
  // registers (measured with ptxas -v), 32 keys do not; a 256-wide V needs the same at one m-tile.
  static constexpr int kKeyTile = 32;
  // Quantized K or V is dequantized once per CTA and tile, by all warps, into f16 MMA fragments in shared memory
  // (fragment order, so each later read is one conflict-free 8- or 16-byte load per lane), instead of once per warp.
  static constexpr bool kKFragsInSmem = KType != KvType::f16;
  static constexpr bool kVFragsInSmem = VType != KvType::f16;
  static constexpr int kScoreNTiles = kKeyTile / 8;
  static constexpr int kKeySteps = kKeyTile / 16;
  static constexpr int kKUnitsStored = kDimKStored / 64;
  static constexpr int kVUnitsStored = kDimVStored / 32;
  static constexpr int kKFragBytes = kKFragsInSmem ? kScoreNTiles * kKUnitsStored * 4 * 32 * 8 : 0;
  static constexpr int kVFragBytes = kVFragsInSmem ? kKeySteps * kVUnitsStored * 2 * 32 * 16 : 0;
  static constexpr int kQPitch = kDimKStored + 8;  // halves; +16 bytes keeps ldmatrix rows in distinct banks
  static constexpr int kQBytes = kQvecs * kQPitch * 2;
  static constexpr int kStageBytesEstimate = kv_stage_bytes(KType, HeadDimK, VType, HeadDimV, kKeyTile);
  // One CTA of 4 warps per SM is the regime of a 512-token prefill (128 CTAs); up to ~150 KB in all, three or four
  // tiles in flight hide the L2 latency that a single warp per scheduler cannot.
  static constexpr int kStages =
      std::clamp((150 * 1024 - kQBytes - kKFragBytes - kVFragBytes) / kStageBytesEstimate, 2, 4);
  using Geo = KvTileGeometry<HeadDimK, HeadDimV, KType, VType, kKeyTile, kStages>;
  static constexpr int kDimK = Geo::kDimK;
  static constexpr int kDimV = Geo::kDimV;
  static_assert(kDimK == kDimKStored && kDimV == kDimVStored);
  static_assert(kDimK % 64 == 0 && kDimV % 32 == 0 && kDimV <= 256);
  static constexpr int kKUnits = kDimK / 64;
  static constexpr int kVUnits = kDimV / 32;
  static constexpr int kKSteps = kDimK / 16;

  // The stage region also holds the f32 query before staging and the f32 output rows after the loop.
  static constexpr int kQStagingBytes = kQvecs * kDimK * 4;
  static constexpr int kEpilogueBytes = kQvecs * (kDimV + 2) * 4;
  static constexpr int kRegionBytes =
      (std::max({Geo::kStagesBytes, kQStagingBytes, kEpilogueBytes}) + 127) / 128 * 128;
  static constexpr int kQOffset = kRegionBytes;
  static constexpr int kKFragOffset = kQOffset + (kQBytes + 127) / 128 * 128;
  static constexpr int kVFragOffset = kKFragOffset + kKFragBytes;
  static constexpr int kVariantOffset = kVFragOffset + kVFragBytes;
  static constexpr int kOffsetsOffset =
      (kVariantOffset + kQvecs * static_cast<int>(sizeof(ScoreVariant)) + 15) / 16 * 16;
  static constexpr int kLutOffset = kOffsetsOffset + Geo::kOffsetsBytes;
  static constexpr int kSmemBytes = kLutOffset + 2 * 16 * 2;
  static_assert(kSmemBytes <= 227 * 1024, "a CTA must fit an SM's shared memory");
};

/// The (sequence, KV head, query chunk) of a CTA, the key range it reads, and its query vectors.
struct PrefillWork {
  int64_t s = 0, hkv = 0, group = 1;
  int64_t qvec0 = 0;
  int n_qvecs = 0;
  int64_t len = 0;  // the sequence's keys (kv_len, clamped to the view)
  DecodeWork keys;  // key range and tile count, in the form the cp.async pipeline reads

  __device__ int64_t head_of(int r) const { return hkv * group + (qvec0 + r) % group; }
  __device__ int64_t row_of(int r) const { return (qvec0 + r) / group; }
};

template <int KeyTile>
__device__ inline PrefillWork prefill_work(const AttentionProblem& p, const PrefillLaunch& launch, int qvecs) {
  PrefillWork w;
  int64_t work = blockIdx.x;
  // Query chunks vary fastest (CTAs of one KV head share its K/V through L2), last chunk first: under causal
  // masking the last rows see the most keys, so the longest CTAs start in the first wave.
  const int64_t qchunk = launch.n_qchunks - 1 - work % launch.n_qchunks;
  work /= launch.n_qchunks;
  w.hkv = work % p.shape.n_head_kv;
  w.s = launch.seq_begin + work / p.shape.n_head_kv;
  w.group = p.shape.n_head_q / p.shape.n_head_kv;
  w.qvec0 = qchunk * qvecs;
  w.n_qvecs = static_cast<int>(std::min<int64_t>(qvecs, w.group * p.shape.n_q - w.qvec0));
  const int64_t len = p.kv_len != nullptr ? p.kv_len[w.s] : p.shape.n_kv;
  w.len = std::min<int64_t>(std::max<int64_t>(len, 0), p.shape.n_kv);  // kv_len is data: never read past the view
  DecodeWork& k = w.keys;
  k.s = w.s;
  k.hkv = w.hkv;
  k.group = w.group;
  k.len = w.len;
  k.key_begin = 0;
  k.key_end = w.len;
  if (w.n_qvecs > 0) {
    const int64_t first_pos = w.len - p.shape.n_q + w.qvec0 / w.group;
    const int64_t last_pos = w.len - p.shape.n_q + (w.qvec0 + w.n_qvecs - 1) / w.group;
    // Keys past the last row's position are hidden from every row (bottom-right causal): never loaded.
    if (p.options.causal) k.key_end = std::min(k.key_end, last_pos + 1);
    // Keys before the first row's window likewise; whole tiles, so paged tiles stay page-aligned spans.
    if (p.options.window > 0) {
      k.key_begin = std::max<int64_t>(0, first_pos - p.options.window + 1) / KeyTile * KeyTile;
    }
  }
  k.n_tiles = k.key_begin < k.key_end ? static_cast<int>((k.key_end - k.key_begin + KeyTile - 1) / KeyTile) : 0;
  return w;
}

/// Stages the CTA's query vectors into q_s (f16, Rows rows of DimK + pad) in K's fragment order: scaled, zero past
/// HeadDimK (turbo padding) and for vectors past n_qvecs, rotated for turbo K. `q_f32` is scratch for Rows * DimK
/// floats. Call from all threads; ends with a barrier.
template <class KFrag, int HeadDimK, int DimK, bool RotatedK, int Threads, int Rows>
__device__ inline void stage_prefill_query(const AttentionProblem& p, const PrefillWork& w, float scale,
                                           float* q_f32, __half* q_s, int q_pitch) {
  const int tid = static_cast<int>(threadIdx.x);
  for (int r = tid / 32; r < Rows; r += Threads / 32) {  // one warp per row: the row's address once
    const float* src = nullptr;
    if (r < w.n_qvecs) {
      src = reinterpret_cast<const float*>(reinterpret_cast<const uint8_t*>(p.q.data) + w.s * p.q.stride.seq +
                                           w.head_of(r) * p.q.stride.head + w.row_of(r) * p.q.stride.row);
    }
    for (int d = tid % 32; d < DimK; d += 32) {
      q_f32[r * DimK + d] = src != nullptr && d < HeadDimK ? src[d] * scale : 0.0f;
    }
  }
  __syncthreads();
  if constexpr (RotatedK) {
    rotate_rows_in_smem(q_f32, Rows, DimK, DimK, /*inverse=*/false);
    __syncthreads();
  }
  for (int idx = tid; idx < Rows * DimK; idx += Threads) {
    const int r = idx / DimK, slot = idx % DimK;
    const int kstep = slot / 16, kk = slot % 16;
    const int i = 4 * (kstep % 4) + 2 * (kk / 8) + kk % 2;
    q_s[r * q_pitch + slot] = __float2half_rn(q_f32[r * DimK + KFrag::k_dim(kstep / 4, (kk % 8) / 2, i)]);
  }
  __syncthreads();
}

/// 2^x on the special-function unit; 2^-inf = +0, which is how masked scores drop out of the sums.
__device__ __forceinline__ float prefill_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

inline constexpr float kLog2e = 1.4426950408889634f;
inline constexpr float kLn2 = 0.6931471805599453f;

/// Dequantizes the quantized K and/or V tile of a stage into f16 MMA fragments in shared memory, split over the
/// warps: K fragment (n-tile nt, unit u) k-step c at frag_k[((nt * KUnits + u) * 4 + c) * 32 + lane], V fragment
/// (key step ks, unit vu) n-tiles 2h, 2h + 1 at frag_v[((ks * VUnits + vu) * 2 + h) * 32 + lane].
template <class Cfg, class KFrag, class VFrag>
__device__ __forceinline__ void dequantize_tile_fragments(const uint8_t* tile_k, int pitch_k, const uint8_t* tile_v,
                                                          int pitch_v, uint2* frag_k, uint4* frag_v, Centroids cent_k,
                                                          Centroids cent_v, int warp, int lane) {
  if constexpr (Cfg::kKFragsInSmem) {
    constexpr int kPairs = Cfg::kScoreNTiles * Cfg::kKUnits;
#pragma unroll
    for (int pair = warp; pair < kPairs; pair += Cfg::kWarps) {
      uint32_t b[8];
      KFrag::load_k(tile_k, pitch_k, 8 * (pair / Cfg::kKUnits), pair % Cfg::kKUnits, lane, b, cent_k);
#pragma unroll
      for (int c = 0; c < 4; ++c) frag_k[(pair * 4 + c) * 32 + lane] = make_uint2(b[2 * c], b[2 * c + 1]);
    }
  }
  if constexpr (Cfg::kVFragsInSmem) {
    constexpr int kPairs = Cfg::kKeySteps * Cfg::kVUnits;
#pragma unroll
    for (int pair = warp; pair < kPairs; pair += Cfg::kWarps) {
      uint32_t b[4][2];
      VFrag::load_v(tile_v, pitch_v, 16 * (pair / Cfg::kVUnits), pair % Cfg::kVUnits, lane, b, cent_v);
      frag_v[(pair * 2) * 32 + lane] = make_uint4(b[0][0], b[0][1], b[1][0], b[1][1]);
      frag_v[(pair * 2 + 1) * 32 + lane] = make_uint4(b[2][0], b[2][1], b[3][0], b[3][1]);
    }
  }
}

template <int HeadDimK, int HeadDimV, KvType KType, KvType VType>
__global__ void __launch_bounds__(128, 1) prefill_kernel(const AttentionProblem p, const PrefillLaunch launch) {
  using Cfg = PrefillConfig<HeadDimK, HeadDimV, KType, VType>;
  using Geo = typename Cfg::Geo;
  using KFrag = KvFragments<KType>;
  using VFrag = KvFragments<VType>;
  constexpr int T = Cfg::kKeyTile;
  constexpr int S = Cfg::kStages;
  constexpr int M = Cfg::kMTiles;
  static_assert(k_dims_are_a_permutation<KFrag>(Cfg::kDimK), "K fragment order must cover the head dim once");
  static_assert(v_dims_are_a_permutation<VFrag>(Cfg::kDimV), "V fragment order must cover the head dim once");
  constexpr bool kRotatedV = kv_traits(VType).rotated;  // constant: device code never reads the host table

  extern __shared__ __align__(128) uint8_t smem[];
  uint8_t* stages = smem;
  __half* q_s = reinterpret_cast<__half*>(smem + Cfg::kQOffset);
  uint2* frag_k = reinterpret_cast<uint2*>(smem + Cfg::kKFragOffset);
  uint4* frag_v = reinterpret_cast<uint4*>(smem + Cfg::kVFragOffset);
  ScoreVariant* variants = reinterpret_cast<ScoreVariant*>(smem + Cfg::kVariantOffset);
  int64_t* offsets = reinterpret_cast<int64_t*>(smem + Cfg::kOffsetsOffset);
  __half* lut_k = reinterpret_cast<__half*>(smem + Cfg::kLutOffset);
  __half* lut_v = lut_k + 16;

  const int tid = static_cast<int>(threadIdx.x), warp = tid / 32, lane = tid % 32;
  const int g = lane / 4, t = lane % 4;

  const PrefillWork w = prefill_work<T>(p, launch, Cfg::kQvecs);
  if (w.n_qvecs <= 0) return;
  const DecodeWork& keys = w.keys;
  const KvPipeline<Geo, T, Cfg::kThreads, KType != KvType::f16, VType != KvType::f16> pipe(p, keys, stages, offsets);
#pragma unroll 1
  for (int st = 0; st < S; ++st) {
    if (st < keys.n_tiles) pipe.compute_offsets(st, st);
  }
  if constexpr (KFrag::kNeedsCentroids) load_centroids_f16(KType, lut_k);
  if constexpr (VFrag::kNeedsCentroids) load_centroids_f16(VType, lut_v);
  if (tid < w.n_qvecs) variants[tid] = ScoreVariant::make(p, w.s, w.head_of(tid), w.row_of(tid), w.len);
  // Without a mask, window, softcap or ALiBi a score needs at most the causal test, done here on positions in
  // registers, and log2(e) rides in the staged query (the softmax runs in base 2); the ScoreVariant (in shared
  // memory) serves every other combination on natural-log scores, converted after it.
  const bool causal_only = p.mask.data == nullptr && p.options.window == 0 && p.options.softcap == 0.0 &&
                           p.options.alibi_max_bias == 0.0;
  stage_prefill_query<KFrag, HeadDimK, Cfg::kDimK, kv_traits(KType).rotated, Cfg::kThreads, Cfg::kQvecs>(
      p, w, causal_only ? launch.scale * kLog2e : launch.scale, reinterpret_cast<float*>(stages), q_s, Cfg::kQPitch);
#pragma unroll 1
  for (int st = 0; st < S - 1; ++st) {
    if (st < keys.n_tiles) pipe.issue(st, st);
    ptx::cp_async_commit();
  }

  // This warp's vectors: 32 warp .. + kWarpQvecs - 1; this thread's rows in m-tile m: rm = row_base + 16 m + g, + 8.
  constexpr int kWarpQvecs = Cfg::kWarpQvecs;
  const int row_base = kWarpQvecs * warp;
  const int warp_rows = std::min(kWarpQvecs, w.n_qvecs - row_base);  // <= 0: the warp only helps with copies
  const bool causal = p.options.causal;
  const int64_t pos_base = w.len - p.shape.n_q;
  // The warp's last position: a tile starting after it is hidden from all of the warp's rows by causal masking.
  const int64_t warp_last_pos = warp_rows > 0 ? pos_base + w.row_of(row_base + warp_rows - 1) : INT64_MIN;
  const int64_t warp_first_pos = pos_base + w.row_of(row_base);
  // Each row's end of visible keys (causal: its position + 1; a row past n_qvecs sees none) relative to the first
  // key, computed once (the row's position takes a 64-bit division) and kept in 32 bits (registers are scarce).
  int row_keys[M][2];
#pragma unroll
  for (int m = 0; m < M; ++m)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int r = row_base + 16 * m + g + 8 * h;
      const int64_t end = r >= w.n_qvecs ? keys.key_begin
                          : causal       ? std::min(keys.key_end, pos_base + w.row_of(r) + 1)
                                         : keys.key_end;
      row_keys[m][h] = static_cast<int>(std::clamp<int64_t>(end - keys.key_begin, 0, INT_MAX));
    }
  float m_run[M][2], l_run[M][2];  // m in base 2; l: this thread's part of the row sums
  float acc[M][Cfg::kVUnits][4][4];
#pragma unroll
  for (int m = 0; m < M; ++m) {
    m_run[m][0] = m_run[m][1] = -INFINITY;
    l_run[m][0] = l_run[m][1] = 0.0f;
#pragma unroll
    for (int vu = 0; vu < Cfg::kVUnits; ++vu)
#pragma unroll
      for (int j = 0; j < 4; ++j) acc[m][vu][j][0] = acc[m][vu][j][1] = acc[m][vu][j][2] = acc[m][vu][j][3] = 0.0f;
  }
  const Centroids cent_k{lut_k}, cent_v{lut_v};
  const __half* q_warp = q_s + (row_base + lane % 8 + 8 * ((lane / 8) % 2)) * Cfg::kQPitch + 8 * (lane / 16);
  // f16 K: one ldmatrix.x4 gives the B fragments of n-tiles nt, nt + 1 at one k-step.
  const int k_lane_offset = (8 * (lane / 16) + lane % 8) * Geo::kPitchK + 16 * ((lane / 8) % 2);

  for (int it = 0; it < keys.n_tiles; ++it) {
    ptx::cp_async_wait<S - 2>();
    __syncthreads();  // tile `it` landed for every thread; the stage and fragments consumed last iteration are free
    if (it + S - 1 < keys.n_tiles) pipe.issue(it + S - 1, (it + S - 1) % S);
    ptx::cp_async_commit();
    const uint8_t* tile_k = pipe.k_tile(it % S);
    const uint8_t* tile_v = pipe.v_tile(it % S);
    if constexpr (Cfg::kKFragsInSmem || Cfg::kVFragsInSmem) {
      dequantize_tile_fragments<Cfg, KFrag, VFrag>(tile_k, pipe.pitch_k, tile_v, pipe.pitch_v, frag_k, frag_v, cent_k,
                                                   cent_v, warp, lane);
      __syncthreads();
    }
    const int64_t tile_key0 = keys.key_begin + static_cast<int64_t>(it) * T;
    const bool warp_busy = warp_rows > 0 && !(causal && tile_key0 > warp_last_pos);
    if (warp_busy) {
      // S = Q K^T over the tile's keys, k-step by k-step (A fragments of both m-tiles, then every n-tile).
      float sc[M][Cfg::kScoreNTiles][4];
#pragma unroll
      for (int m = 0; m < M; ++m)
#pragma unroll
        for (int nt = 0; nt < Cfg::kScoreNTiles; ++nt) sc[m][nt][0] = sc[m][nt][1] = sc[m][nt][2] = sc[m][nt][3] = 0.0f;
#pragma unroll
      for (int ks = 0; ks < Cfg::kKSteps; ++ks) {
        uint32_t qa[M][4];
#pragma unroll
        for (int m = 0; m < M; ++m) ptx::ldmatrix_x4(qa[m], q_warp + 16 * m * Cfg::kQPitch + 16 * ks);
        if constexpr (!Cfg::kKFragsInSmem) {
#pragma unroll
          for (int nt = 0; nt < Cfg::kScoreNTiles; nt += 2) {
            uint32_t kb[4];
            ptx::ldmatrix_x4(kb, tile_k + k_lane_offset + 8 * nt * Geo::kPitchK + 32 * ks);
#pragma unroll
            for (int m = 0; m < M; ++m) {
              ptx::mma_f16(sc[m][nt], qa[m], kb[0], kb[1]);
              ptx::mma_f16(sc[m][nt + 1], qa[m], kb[2], kb[3]);
            }
          }
        } else {
#pragma unroll
          for (int nt = 0; nt < Cfg::kScoreNTiles; ++nt) {
            const uint2 kb = frag_k[((nt * Cfg::kKUnits + ks / 4) * 4 + ks % 4) * 32 + lane];
#pragma unroll
            for (int m = 0; m < M; ++m) ptx::mma_f16(sc[m][nt], qa[m], kb.x, kb.y);
          }
        }
      }

      // Options and masking of keys past the range; rows rm (elements 0, 1) and rm + 8 (2, 3) of each m-tile.
      const bool tail = tile_key0 + T > keys.key_end;
      if (causal_only) {
        // Tiles wholly below the diagonal of every row of the warp (most of them at depth) need no test at all.
        const bool clean = !tail && warp_rows == Cfg::kWarpQvecs && (!causal || tile_key0 + T - 1 <= warp_first_pos);
        if (!clean) {
#pragma unroll
          for (int m = 0; m < M; ++m)
#pragma unroll
            for (int h = 0; h < 2; ++h) {
              // The first key of the tile the row may not see, relative to the tile (0: none, T: all visible).
              const int rel =
                  static_cast<int>(std::clamp<int64_t>(row_keys[m][h] - static_cast<int64_t>(it) * T, 0, T));
#pragma unroll
              for (int nt = 0; nt < Cfg::kScoreNTiles; ++nt)
#pragma unroll
                for (int e = 0; e < 2; ++e) {
                  if (8 * nt + 2 * t + e >= rel) sc[m][nt][2 * h + e] = -INFINITY;
                }
            }
        }
      } else {
#pragma unroll
        for (int m = 0; m < M; ++m)
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const int r = row_base + 16 * m + g + 8 * h;
#pragma unroll
            for (int nt = 0; nt < Cfg::kScoreNTiles; ++nt)
#pragma unroll
              for (int e = 0; e < 2; ++e) {
                const int64_t key = tile_key0 + 8 * nt + 2 * t + e;
                float& s = sc[m][nt][2 * h + e];
                s = r >= w.n_qvecs || key >= keys.key_end ? -INFINITY : variants[r](s, key) * kLog2e;
              }
          }
      }

      // Online softmax in base 2. A row that has seen no key yet keeps m = -inf; 0 stands in for it so that
      // 2^(s - m) is 2^-inf = 0 for its masked scores rather than NaN.
#pragma unroll
      for (int m = 0; m < M; ++m) {
        float alpha[2];
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          float mx = -INFINITY;
#pragma unroll
          for (int nt = 0; nt < Cfg::kScoreNTiles; ++nt) mx = fmaxf(mx, fmaxf(sc[m][nt][2 * h], sc[m][nt][2 * h + 1]));
          mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
          mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
          const float m_new = fmaxf(m_run[m][h], mx);
          const float m_use = m_new == -INFINITY ? 0.0f : m_new;
          alpha[h] = prefill_exp2(m_run[m][h] - m_use);
          m_run[m][h] = m_new;
          float sum = 0.0f;
#pragma unroll
          for (int nt = 0; nt < Cfg::kScoreNTiles; ++nt)
#pragma unroll
            for (int e = 2 * h; e < 2 * h + 2; ++e) {
              sc[m][nt][e] = prefill_exp2(sc[m][nt][e] - m_use);
              sum += sc[m][nt][e];
            }
          l_run[m][h] = l_run[m][h] * alpha[h] + sum;
        }
#pragma unroll
        for (int vu = 0; vu < Cfg::kVUnits; ++vu)
#pragma unroll
          for (int j = 0; j < 4; ++j) {
            acc[m][vu][j][0] *= alpha[0];
            acc[m][vu][j][1] *= alpha[0];
            acc[m][vu][j][2] *= alpha[1];
            acc[m][vu][j][3] *= alpha[1];
          }
      }

      // O += P V: the accumulators of score n-tiles 2ks, 2ks + 1 are the A fragment of key step ks (packed to f16
      // before the MMAs, so the f32 scores die early and the accumulators keep their registers).
      uint32_t pa[Cfg::kKeySteps][M][4];
#pragma unroll
      for (int ks = 0; ks < Cfg::kKeySteps; ++ks)
#pragma unroll
        for (int m = 0; m < M; ++m) {
          pa[ks][m][0] = ptx::as_u32(__floats2half2_rn(sc[m][2 * ks][0], sc[m][2 * ks][1]));
          pa[ks][m][1] = ptx::as_u32(__floats2half2_rn(sc[m][2 * ks][2], sc[m][2 * ks][3]));
          pa[ks][m][2] = ptx::as_u32(__floats2half2_rn(sc[m][2 * ks + 1][0], sc[m][2 * ks + 1][1]));
          pa[ks][m][3] = ptx::as_u32(__floats2half2_rn(sc[m][2 * ks + 1][2], sc[m][2 * ks + 1][3]));
        }
#pragma unroll
      for (int ks = 0; ks < Cfg::kKeySteps; ++ks) {
#pragma unroll
        for (int vu = 0; vu < Cfg::kVUnits; ++vu) {
          uint32_t vb[4][2];
          if constexpr (Cfg::kVFragsInSmem) {
            const uint4 lo = frag_v[((ks * Cfg::kVUnits + vu) * 2) * 32 + lane];
            const uint4 hi = frag_v[((ks * Cfg::kVUnits + vu) * 2 + 1) * 32 + lane];
            vb[0][0] = lo.x, vb[0][1] = lo.y, vb[1][0] = lo.z, vb[1][1] = lo.w;
            vb[2][0] = hi.x, vb[2][1] = hi.y, vb[3][0] = hi.z, vb[3][1] = hi.w;
          } else {
            VFrag::load_v(tile_v, pipe.pitch_v, 16 * ks, vu, lane, vb, cent_v);
          }
#pragma unroll
          for (int m = 0; m < M; ++m)
#pragma unroll
            for (int j = 0; j < 4; ++j) ptx::mma_f16(acc[m][vu][j], pa[ks][m], vb[j][0], vb[j][1]);
        }
      }
    }
    if (it + S < keys.n_tiles) pipe.compute_offsets(it + S, it % S);
  }

  // ---- Epilogue: rows to shared memory in head-dim order, then one warp finishes each row.
  ptx::cp_async_wait<0>();
  __syncthreads();  // every warp is done with the stages; the output rows alias them
  float* o_rows = reinterpret_cast<float*>(stages);  // [kQvecs][kDimV]
  float* m_rows = o_rows + Cfg::kQvecs * Cfg::kDimV;
  float* l_rows = m_rows + Cfg::kQvecs;
  if (warp_rows > 0) {
#pragma unroll
    for (int m = 0; m < M; ++m) {
      const int r0 = row_base + 16 * m + g, r1 = r0 + 8;
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        l_run[m][h] += __shfl_xor_sync(0xffffffffu, l_run[m][h], 1);
        l_run[m][h] += __shfl_xor_sync(0xffffffffu, l_run[m][h], 2);
      }
#pragma unroll
      for (int vu = 0; vu < Cfg::kVUnits; ++vu)
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const int d0 = VFrag::v_dim(vu, 2 * t, j), d1 = VFrag::v_dim(vu, 2 * t + 1, j);
          float* o0 = o_rows + r0 * Cfg::kDimV;
          float* o1 = o_rows + r1 * Cfg::kDimV;
          o0[d0] = acc[m][vu][j][0];
          o0[d1] = acc[m][vu][j][1];
          o1[d0] = acc[m][vu][j][2];
          o1[d1] = acc[m][vu][j][3];
        }
      if (t == 0) {  // finish_row takes the natural-log max (sinks are e^(sink - m))
        m_rows[r0] = m_run[m][0] * kLn2;
        l_rows[r0] = l_run[m][0];
        m_rows[r1] = m_run[m][1] * kLn2;
        l_rows[r1] = l_run[m][1];
      }
    }
  }
  __syncthreads();
  const SplitOutput single;  // one split: finish_row writes the final output rows
  for (int r = warp; r < w.n_qvecs; r += Cfg::kWarps) {
    finish_row(p, o_rows + r * Cfg::kDimV, Cfg::kDimV, kRotatedV, m_rows[r], l_rows[r], w.s, w.head_of(r),
               w.row_of(r), single, -1);
  }
}

/// Sets the instance's shared-memory limit (once) and checks that a CTA fits an SM.
template <int HeadDimK, int HeadDimV, KvType KType, KvType VType>
Status prepare_prefill_kernel() {
  using Cfg = PrefillConfig<HeadDimK, HeadDimV, KType, VType>;
  static const Status prepared = []() -> Status {
    const auto kernel = prefill_kernel<HeadDimK, HeadDimV, KType, VType>;
    KVFLASH_CUDA_RETURN_IF_ERROR(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Cfg::kSmemBytes));
    int resident = 0;
    KVFLASH_CUDA_RETURN_IF_ERROR(
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&resident, kernel, Cfg::kThreads, Cfg::kSmemBytes));
    if (resident < 1) {
      return backend_error("prefill kernel d_k = " + std::to_string(HeadDimK) + ", d_v = " +
                           std::to_string(HeadDimV) + " needs " + std::to_string(Cfg::kSmemBytes) +
                           " bytes of shared memory: no CTA fits an SM");
    }
    return Status::Ok();
  }();
  return prepared;
}

template <int HeadDimK, int HeadDimV, KvType KType, KvType VType>
Status launch_prefill(const AttentionProblem& p, const Route& route, void* workspace, cudaStream_t stream) {
  (void)workspace;  // the prefill kernel keeps everything on chip
  using Cfg = PrefillConfig<HeadDimK, HeadDimV, KType, VType>;
  if (route.n_splits > 1) {
    return invalid_argument("route with n_splits = " + std::to_string(route.n_splits) +
                            " does not fit the prefill kernel (it never splits the keys)");
  }
  KVFLASH_RETURN_IF_ERROR((prepare_prefill_kernel<HeadDimK, HeadDimV, KType, VType>()));
  const AttentionShape& s = p.shape;
  if (s.n_q == 0 || s.n_seq == 0) return Status::Ok();
  PrefillLaunch launch;
  launch.scale = static_cast<float>(effective_scale(p));
  const int64_t qvecs = s.n_head_q / s.n_head_kv * s.n_q;
  launch.n_qchunks = (qvecs + Cfg::kQvecs - 1) / Cfg::kQvecs;
  const int64_t ctas_per_seq = s.n_head_kv * launch.n_qchunks;
  const int64_t seqs_per_launch = std::max<int64_t>(1, INT_MAX / ctas_per_seq);
  for (int64_t s0 = 0; s0 < s.n_seq; s0 += seqs_per_launch) {
    launch.seq_begin = s0;
    const int64_t ctas = std::min(seqs_per_launch, s.n_seq - s0) * ctas_per_seq;
    prefill_kernel<HeadDimK, HeadDimV, KType, VType>
        <<<static_cast<unsigned>(ctas), Cfg::kThreads, Cfg::kSmemBytes, stream>>>(p, launch);
    KVFLASH_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  }
  return Status::Ok();
}

}  // namespace kvflash::cuda
