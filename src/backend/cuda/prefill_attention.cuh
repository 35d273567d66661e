// Tensor-core prefill (n_q > 16): a FlashAttention-2-style pass over stored K/V, one CTA per tile of query vectors.
//
// A CTA (8 warps) owns 128 query vectors of one (sequence, KV head) up to d_v 128, 64 above: the GQA group's query
// heads are folded into the M dimension row-major (vector r = query row * group + head in group), so every K/V
// tile read from memory serves the whole group and a CTA spans only 128 / group query rows, which keeps the causal
// key range of a CTA short. Warps w and w + 4 own the same two m-tiles (32 vectors; one m-tile above d_v 128) and
// split every tile of 64 stored K/V rows (cp.async pipeline shared with the decode kernel, decode_common.cuh) in
// two halves, each with its own online softmax, merged before the epilogue. Per tile:
//   quantized K/V: all warps dequantize the next tile once into f16 fragments in shared memory (kv_fragments.cuh),
//   beside the MMAs of this one (two fragment buffers);
//   S = Q K^T with m16n8k16 MMAs, each K fragment (ldmatrix for f16) feeding both m-tiles;
//   the score options (score_variant.cuh) and the online softmax in base 2, in registers;
//   O += P V where P's accumulators are re-packed as the A operand directly (no shared-memory round trip).
// No dequantized K/V ever leaves the SM. Keys are split only when the query tiles leave SMs idle (a short chunk at
// depth): each split's CTA leaves partial rows in the planner's workspace and the shared combine merges them.
// Turbo K: the staged query is rotated once; turbo V: finish_row rotates each output row back.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <string>

#include "backend/cuda/combine.h"
#include "backend/cuda/cuda_status.h"
#include "backend/cuda/decode_common.cuh"
#include "backend/cuda/grid_launch.cuh"
#include "backend/cuda/output_rows.cuh"
#include "backend/cuda/ptx.cuh"
#include "backend/cuda/score_variant.cuh"
#include "kvflash/attention_problem.h"
#include "kvflash/route.h"

namespace kvflash::cuda {

/// Per-launch values that are not part of the problem.
struct PrefillLaunch {
  float scale = 1.0f;         // effective_scale(p), folded into the staged query
  int64_t n_qchunks = 1;      // query tiles per (sequence, KV head)
  int64_t keys_per_split = 0;  // a multiple of the key tile; out.n_splits ranges per (sequence, KV head, tile)
  int64_t seq_begin = 0;      // first sequence of this launch (launches are chunked to fit the grid limit)
  SplitOutput out;            // n_splits == 1: finish_row writes the final rows
};

template <int HeadDimK, int HeadDimV, KvType KType, KvType VType>
struct PrefillConfig {
  // Two warp halves: warps w and w + kQuerySlots own the same query vectors, the first takes the first half of the
  // keys of every tile and the second the other half, each with its own softmax state, merged at the end. A warp
  // alone on its scheduler leaves the MMA pipe idle while its dependent MMA chains, softmax and dequantization wait
  // (measured: 1 warp per scheduler, 4 cycles per issued instruction); two warps per scheduler overlap them.
  static constexpr int kQuerySlots = 4;
  static constexpr int kKeyHalves = 2;
  static constexpr int kWarps = kQuerySlots * kKeyHalves;
  static constexpr int kThreads = 32 * kWarps;  // x 255 registers: the whole register file of an SM
  static constexpr int kDimKStored = static_cast<int>(stored_dim(KType, HeadDimK));
  static constexpr int kDimVStored = static_cast<int>(stored_dim(VType, HeadDimV));
  // Two m-tiles (32 query vectors) per warp up to d_v 128: every K/V fragment a warp reads from shared memory then
  // feeds two MMAs. Above d_v 128 the 2 x d_v accumulators would not fit 255 registers.
  static constexpr int kMTiles = kDimVStored <= 128 ? 2 : 1;
  static constexpr int kWarpQvecs = 16 * kMTiles;
  static constexpr int kQvecs = kWarpQvecs * kQuerySlots;
  static_assert(kQvecs == prefill_qvecs_per_cta(VType, HeadDimV), "the planner counts CTAs with split_plan.h's figure");
  // Quantized K or V is dequantized once per CTA and tile, by all warps, into f16 MMA fragments in shared memory
  // (fragment order, so each later read is one conflict-free 8- or 16-byte load per lane), instead of once per
  // warp; two fragment buffers let the dequantization of tile i + 1 run beside the MMAs of tile i.
  static constexpr bool kKFragsInSmem = KType != KvType::f16;
  static constexpr bool kVFragsInSmem = VType != KvType::f16;
  static constexpr bool kAnyFragsInSmem = kKFragsInSmem || kVFragsInSmem;
  // 32 keys per warp and tile: 2 m-tiles x 128 accumulators plus 2 x 64 scores of 64 keys spill past 255
  // registers (ptxas -v), 32 do not. Quantized above d_v 128: 16, so that two fragment buffers fit.
  static constexpr int kHalfKeys = kMTiles == 1 && kAnyFragsInSmem ? 16 : 32;
  static constexpr int kKeyTile = kKeyHalves * kHalfKeys;
  static constexpr int kScoreNTiles = kHalfKeys / 8;  // per warp
  static constexpr int kKeySteps = kHalfKeys / 16;    // per warp
  static constexpr int kKUnits = kDimKStored / 64;
  static constexpr int kVUnits = kDimVStored / 32;
  static constexpr int kKSteps = kDimKStored / 16;
  // One buffer: K fragment (tile n-tile nt, unit u) k-step c at [(nt * kKUnits + u) * 4 + c][lane] (uint2); V
  // fragment (tile key step ks, unit vu) n-tiles 2h, 2h + 1 at [(ks * kVUnits + vu) * 2 + h][lane] (uint4).
  static constexpr int kKFragWords = kKFragsInSmem ? kKeyTile / 8 * kKUnits * 4 * 32 : 0;  // uint2
  static constexpr int kVFragWords = kVFragsInSmem ? kKeyTile / 16 * kVUnits * 2 * 32 : 0;  // uint4
  static constexpr int kFragBytes = 2 * (kKFragWords * 8 + kVFragWords * 16);                // two buffers
  static constexpr int kQPitch = kDimKStored + 8;  // halves; +16 bytes keeps ldmatrix rows in distinct banks
  static constexpr int kQBytes = kQvecs * kQPitch * 2;
  static constexpr int kStageBytesEstimate = kv_stage_bytes(KType, HeadDimK, VType, HeadDimV, kKeyTile);
  // Up to ~200 KB in all (one CTA per SM): 2-4 tiles in flight. The fragment pipeline converts the tile after the
  // one being multiplied, so it needs that tile landed too: at least 3 stages.
  static constexpr int kMinStages = kAnyFragsInSmem ? 3 : 2;
  static constexpr int kStages =
      std::clamp((200 * 1024 - kQBytes - kFragBytes) / kStageBytesEstimate, kMinStages, 4);
  using Geo = KvTileGeometry<HeadDimK, HeadDimV, KType, VType, kKeyTile, kStages>;
  static constexpr int kDimK = Geo::kDimK;
  static constexpr int kDimV = Geo::kDimV;
  static_assert(kDimK == kDimKStored && kDimV == kDimVStored);
  static_assert(kDimK % 64 == 0 && kDimV % 32 == 0 && kDimV <= 256);

  // The stage region also holds the f32 query before staging, the second half's softmax state and accumulators
  // (in fragment order, [value][thread]) for the merge, then the f32 output rows.
  static constexpr int kQStagingBytes = kQvecs * kDimK * 4;
  static constexpr int kMergeValues = kMTiles * (kVUnits * 16 + 4);
  static constexpr int kMergeBytes = kMergeValues * 32 * kQuerySlots * 4;
  static constexpr int kEpilogueBytes = kQvecs * (kDimV + 2) * 4;
  static constexpr int kRegionBytes =
      (std::max({Geo::kStagesBytes, kQStagingBytes, kMergeBytes, kEpilogueBytes}) + 127) / 128 * 128;
  static constexpr int kQOffset = kRegionBytes;
  static constexpr int kFragOffset = kQOffset + (kQBytes + 127) / 128 * 128;
  static constexpr int kVariantOffset = kFragOffset + kFragBytes;
  static constexpr int kOffsetsOffset =
      (kVariantOffset + kQvecs * static_cast<int>(sizeof(ScoreVariant)) + 15) / 16 * 16;
  static constexpr int kLutOffset = kOffsetsOffset + Geo::kOffsetsBytes;
  static constexpr int kSmemBytes = kLutOffset + 2 * 16 * 2;
  static_assert(kSmemBytes <= 227 * 1024, "a CTA must fit an SM's shared memory");
};

/// The (sequence, KV head, query chunk) of a CTA, the key range it reads, and its query vectors.
struct PrefillWork {
  int64_t s = 0, hkv = 0, split = 0, group = 1;
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
  w.split = work % launch.out.n_splits;
  work /= launch.out.n_splits;
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
  k.split = w.split;
  k.shared_keys = launch.n_qchunks > 1;
  k.key_begin = std::min(w.len, w.split * launch.keys_per_split);
  k.key_end = std::min(w.len, k.key_begin + launch.keys_per_split);
  if (w.n_qvecs > 0) {
    const int64_t first_pos = w.len - p.shape.n_q + w.qvec0 / w.group;
    const int64_t last_pos = w.len - p.shape.n_q + (w.qvec0 + w.n_qvecs - 1) / w.group;
    // Keys past the last row's position are hidden from every row (bottom-right causal): never loaded.
    if (p.options.causal) k.key_end = std::min(k.key_end, last_pos + 1);
    // Keys before the first row's window likewise; whole tiles, so paged tiles stay page-aligned spans.
    if (p.options.window > 0) {
      k.key_begin = std::max(k.key_begin, std::max<int64_t>(0, first_pos - p.options.window + 1) / KeyTile * KeyTile);
    }
  }
  k.n_tiles = k.key_begin < k.key_end ? static_cast<int>((k.key_end - k.key_begin + KeyTile - 1) / KeyTile) : 0;
  return w;
}

/// 2^x on the special-function unit; 2^-inf = +0, which is how masked scores drop out of the sums.
__device__ __forceinline__ float prefill_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

inline constexpr float kLog2e = 1.4426950408889634f;
inline constexpr float kLn2 = 0.6931471805599453f;

/// Dequantizes the quantized K and/or V tile of a stage into one buffer of f16 MMA fragments in shared memory
/// (layout: PrefillConfig::kKFragWords), split over all warps of the CTA.
template <class Cfg, class KFrag, class VFrag>
__device__ __forceinline__ void dequantize_tile_fragments(const uint8_t* tile_k, int pitch_k, const uint8_t* tile_v,
                                                          int pitch_v, uint2* frag_k, uint4* frag_v, Centroids cent_k,
                                                          Centroids cent_v, int warp, int lane) {
  if constexpr (Cfg::kKFragsInSmem) {
    constexpr int kPairs = Cfg::kKeyTile / 8 * Cfg::kKUnits;
#pragma unroll
    for (int pair = warp; pair < kPairs; pair += Cfg::kWarps) {
      uint32_t b[8];
      KFrag::load_k(tile_k, pitch_k, 8 * (pair / Cfg::kKUnits), pair % Cfg::kKUnits, lane, b, cent_k);
#pragma unroll
      for (int c = 0; c < 4; ++c) frag_k[(pair * 4 + c) * 32 + lane] = make_uint2(b[2 * c], b[2 * c + 1]);
    }
  }
  if constexpr (Cfg::kVFragsInSmem) {
    constexpr int kPairs = Cfg::kKeyTile / 16 * Cfg::kVUnits;
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
__global__ void __launch_bounds__(256, 1) prefill_kernel(const AttentionProblem p, const PrefillLaunch launch) {
  using Cfg = PrefillConfig<HeadDimK, HeadDimV, KType, VType>;
  using Geo = typename Cfg::Geo;
  using KFrag = KvFragments<KType>;
  using VFrag = KvFragments<VType>;
  constexpr int T = Cfg::kKeyTile;
  constexpr int H = Cfg::kHalfKeys;
  constexpr int S = Cfg::kStages;
  constexpr int M = Cfg::kMTiles;
  constexpr int kWarpQvecs = Cfg::kWarpQvecs;
  static_assert(Cfg::kThreads == 256, "__launch_bounds__ above");
  static_assert(k_dims_are_a_permutation<KFrag>(Cfg::kDimK), "K fragment order must cover the head dim once");
  static_assert(v_dims_are_a_permutation<VFrag>(Cfg::kDimV), "V fragment order must cover the head dim once");
  constexpr bool kRotatedV = kv_traits(VType).rotated;  // constant: device code never reads the host table

  extern __shared__ __align__(128) uint8_t smem[];
  uint8_t* stages = smem;
  __half* q_s = reinterpret_cast<__half*>(smem + Cfg::kQOffset);
  uint2* frag_k = reinterpret_cast<uint2*>(smem + Cfg::kFragOffset);      // [2][kKFragWords]
  uint4* frag_v = reinterpret_cast<uint4*>(frag_k + 2 * Cfg::kKFragWords);  // [2][kVFragWords]
  ScoreVariant* variants = reinterpret_cast<ScoreVariant*>(smem + Cfg::kVariantOffset);
  int64_t* offsets = reinterpret_cast<int64_t*>(smem + Cfg::kOffsetsOffset);
  __half* lut_k = reinterpret_cast<__half*>(smem + Cfg::kLutOffset);
  __half* lut_v = lut_k + 16;

  const int tid = static_cast<int>(threadIdx.x), warp = tid / 32, lane = tid % 32;
  const int g = lane / 4, t = lane % 4;
  const int slot = warp % Cfg::kQuerySlots, half = warp / Cfg::kQuerySlots;

  const PrefillWork w = prefill_work<T>(p, launch, Cfg::kQvecs);
  if (w.n_qvecs <= 0) return;
  const DecodeWork& keys = w.keys;
  const KvPipeline<Geo, T, Cfg::kThreads, KType != KvType::f16, VType != KvType::f16> pipe(p, keys, stages, offsets);
  pipe.template compute_first_offsets<S>();
  if constexpr (KFrag::kNeedsCentroids) load_centroids_f16(KType, lut_k);
  if constexpr (VFrag::kNeedsCentroids) load_centroids_f16(VType, lut_v);
  if (tid < w.n_qvecs) variants[tid] = ScoreVariant::make(p, w.s, w.head_of(tid), w.row_of(tid), w.len);
  // Without a mask, window, softcap or ALiBi a score needs at most the causal test, done here on positions in
  // registers, and log2(e) rides in the staged query (the softmax runs in base 2); the ScoreVariant (in shared
  // memory) serves every other combination on natural-log scores, converted after it.
  const bool causal_only = p.mask.data == nullptr && p.options.window == 0 && p.options.softcap == 0.0 &&
                           p.options.alibi_max_bias == 0.0;
  stage_query<KFrag, HeadDimK, Cfg::kDimK, kv_traits(KType).rotated, Cfg::kThreads>(
      p, w, causal_only ? launch.scale * kLog2e : launch.scale, reinterpret_cast<float*>(stages), q_s, Cfg::kQPitch,
      Cfg::kQvecs);
  pipe.template issue_first<S>();
  const Centroids cent_k{lut_k}, cent_v{lut_v};
  if constexpr (Cfg::kAnyFragsInSmem) {
    if (keys.n_tiles > 0) {  // tile 0 into buffer 0; the loop's first barrier publishes it
      ptx::cp_async_wait<S - 2>();
      __syncthreads();
      dequantize_tile_fragments<Cfg, KFrag, VFrag>(pipe.k_tile(0), pipe.pitch_k, pipe.v_tile(0), pipe.pitch_v, frag_k,
                                                   frag_v, cent_k, cent_v, warp, lane);
    }
  }

  // This warp's vectors: row_base .. + kWarpQvecs - 1; this thread's rows in m-tile m: row_base + 16 m + g, + 8.
  const int row_base = kWarpQvecs * slot;
  const int warp_rows = std::min(kWarpQvecs, w.n_qvecs - row_base);  // <= 0: the warp only helps with copies
  const bool causal = p.options.causal;
  const int64_t pos_base = w.len - p.shape.n_q;
  // The warp's last position: keys after it are hidden from all of the warp's rows by causal masking.
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
  const __half* q_warp = q_s + (row_base + lane % 8 + 8 * ((lane / 8) % 2)) * Cfg::kQPitch + 8 * (lane / 16);
  // f16 K: one ldmatrix.x4 gives the B fragments of n-tiles nt, nt + 1 at one k-step.
  const int k_lane_offset = (H * half + 8 * (lane / 16) + lane % 8) * Geo::kPitchK + 16 * ((lane / 8) % 2);

  for (int it = 0; it < keys.n_tiles; ++it) {
    if constexpr (Cfg::kAnyFragsInSmem) {
      ptx::cp_async_wait<S - 3>();  // tile it + 1 landed (its fragments are made below)
    } else {
      ptx::cp_async_wait<S - 2>();  // tile it landed
    }
    // Every thread's copies landed; fragments of tile it complete; the stage and the fragment buffer consumed
    // last iteration are free.
    __syncthreads();
    if (it + S - 1 < keys.n_tiles) pipe.issue(it + S - 1, (it + S - 1) % S);
    ptx::cp_async_commit();
    if constexpr (Cfg::kAnyFragsInSmem) {
      if (it + 1 < keys.n_tiles) {
        const int next = (it + 1) % 2;
        dequantize_tile_fragments<Cfg, KFrag, VFrag>(pipe.k_tile((it + 1) % S), pipe.pitch_k,
                                                     pipe.v_tile((it + 1) % S), pipe.pitch_v,
                                                     frag_k + next * Cfg::kKFragWords,
                                                     frag_v + next * Cfg::kVFragWords, cent_k, cent_v, warp, lane);
      }
    }
    const uint8_t* tile_k = pipe.k_tile(it % S);
    const uint8_t* tile_v = pipe.v_tile(it % S);
    const uint2* frag_k_it = frag_k + (it % 2) * Cfg::kKFragWords;
    const uint4* frag_v_it = frag_v + (it % 2) * Cfg::kVFragWords;
    const int64_t half_key0 = keys.key_begin + static_cast<int64_t>(it) * T + H * half;
    const bool warp_busy =
        warp_rows > 0 && half_key0 < keys.key_end && !(causal && half_key0 > warp_last_pos);
    if (warp_busy) {
      // S = Q K^T over the warp's keys, k-step by k-step (A fragments of both m-tiles, then every n-tile).
      float sc[M][Cfg::kScoreNTiles][4];
#pragma unroll
      for (int m = 0; m < M; ++m)
#pragma unroll
        for (int nt = 0; nt < Cfg::kScoreNTiles; ++nt) sc[m][nt][0] = sc[m][nt][1] = sc[m][nt][2] = sc[m][nt][3] = 0.0f;
      // The fragments of k-step ks + 1 are requested before the MMAs of k-step ks (software pipelining: the
      // ldmatrix / shared-memory latency hides behind this warp's own MMAs). K: f16 by ldmatrix.x4 from the tile
      // (n-tiles 2np, 2np + 1), quantized from the fragment buffer (n-tile nt in kb[.][nt / 2][2 (nt % 2) ..]).
      uint32_t qa[2][M][4], kb[2][Cfg::kScoreNTiles / 2][4];
      const auto load_step = [&](int ks, int buf) {
#pragma unroll
        for (int m = 0; m < M; ++m) ptx::ldmatrix_x4(qa[buf][m], q_warp + 16 * m * Cfg::kQPitch + 16 * ks);
#pragma unroll
        for (int np = 0; np < Cfg::kScoreNTiles / 2; ++np) {
          if constexpr (!Cfg::kKFragsInSmem) {
            ptx::ldmatrix_x4(kb[buf][np], tile_k + k_lane_offset + 16 * np * Geo::kPitchK + 32 * ks);
          } else {
#pragma unroll
            for (int i = 0; i < 2; ++i) {
              const int tile_nt = half * Cfg::kScoreNTiles + 2 * np + i;
              const uint2 b = frag_k_it[((tile_nt * Cfg::kKUnits + ks / 4) * 4 + ks % 4) * 32 + lane];
              kb[buf][np][2 * i] = b.x;
              kb[buf][np][2 * i + 1] = b.y;
            }
          }
        }
      };
      load_step(0, 0);
#pragma unroll
      for (int ks = 0; ks < Cfg::kKSteps; ++ks) {
        if (ks + 1 < Cfg::kKSteps) load_step(ks + 1, (ks + 1) % 2);
#pragma unroll
        for (int np = 0; np < Cfg::kScoreNTiles / 2; ++np)
#pragma unroll
          for (int m = 0; m < M; ++m) {
            ptx::mma_f16(sc[m][2 * np], qa[ks % 2][m], kb[ks % 2][np][0], kb[ks % 2][np][1]);
            ptx::mma_f16(sc[m][2 * np + 1], qa[ks % 2][m], kb[ks % 2][np][2], kb[ks % 2][np][3]);
          }
      }

      // Options and masking of keys past the range; rows rm (elements 0, 1) and rm + 8 (2, 3) of each m-tile.
      const bool tail = half_key0 + H > keys.key_end;
      if (causal_only) {
        // Key ranges wholly below the diagonal of every row of the warp (most at depth) need no test at all.
        const bool clean = !tail && warp_rows == kWarpQvecs && (!causal || half_key0 + H - 1 <= warp_first_pos);
        if (!clean) {
          const int64_t half_rel0 = static_cast<int64_t>(it) * T + H * half;
#pragma unroll
          for (int m = 0; m < M; ++m)
#pragma unroll
            for (int h = 0; h < 2; ++h) {
              // The first key of the warp's range the row may not see, relative to the range (0: none, H: all).
              const int rel = static_cast<int>(std::clamp<int64_t>(row_keys[m][h] - half_rel0, 0, H));
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
                const int64_t key = half_key0 + 8 * nt + 2 * t + e;
                float& s = sc[m][nt][2 * h + e];
                s = r >= w.n_qvecs || key >= keys.key_end ? -INFINITY : variants[r](s, key) * kLog2e;
              }
          }
      }

      // Online softmax in base 2. A row that has seen no key yet keeps m = -inf; 0 stands in for it so that
      // 2^(s - m) is 2^-inf = 0 for its masked scores rather than NaN. Maxima and sums reduce as trees (short
      // dependency chains), and the accumulators are rescaled only when a row's maximum moved somewhere in the
      // warp (rare at depth: 2^0 = 1 exactly otherwise).
      bool moved = false;
#pragma unroll
      for (int m = 0; m < M; ++m) {
        float alpha[2];
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          float mx[Cfg::kScoreNTiles];
#pragma unroll
          for (int nt = 0; nt < Cfg::kScoreNTiles; ++nt) mx[nt] = fmaxf(sc[m][nt][2 * h], sc[m][nt][2 * h + 1]);
#pragma unroll
          for (int step = 1; step < Cfg::kScoreNTiles; step *= 2)
#pragma unroll
            for (int nt = 0; nt + step < Cfg::kScoreNTiles; nt += 2 * step) mx[nt] = fmaxf(mx[nt], mx[nt + step]);
          float row_max = fmaxf(mx[0], __shfl_xor_sync(0xffffffffu, mx[0], 1));
          row_max = fmaxf(row_max, __shfl_xor_sync(0xffffffffu, row_max, 2));
          const float m_new = fmaxf(m_run[m][h], row_max);
          const float m_use = m_new == -INFINITY ? 0.0f : m_new;
          moved |= m_new != m_run[m][h];
          alpha[h] = prefill_exp2(m_run[m][h] - m_use);
          m_run[m][h] = m_new;
          float sum[Cfg::kScoreNTiles];
#pragma unroll
          for (int nt = 0; nt < Cfg::kScoreNTiles; ++nt) {
            sc[m][nt][2 * h] = prefill_exp2(sc[m][nt][2 * h] - m_use);
            sc[m][nt][2 * h + 1] = prefill_exp2(sc[m][nt][2 * h + 1] - m_use);
            sum[nt] = sc[m][nt][2 * h] + sc[m][nt][2 * h + 1];
          }
#pragma unroll
          for (int step = 1; step < Cfg::kScoreNTiles; step *= 2)
#pragma unroll
            for (int nt = 0; nt + step < Cfg::kScoreNTiles; nt += 2 * step) sum[nt] += sum[nt + step];
          l_run[m][h] = l_run[m][h] * alpha[h] + sum[0];
        }
        if (__any_sync(0xffffffffu, moved)) {
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
      // V fragments of (key step, unit) q + 1 requested before the MMAs of q, as for K.
      uint32_t vb[2][4][2];
      const auto load_v_step = [&](int q, int buf) {
        const int ks = q / Cfg::kVUnits, vu = q % Cfg::kVUnits;
        if constexpr (Cfg::kVFragsInSmem) {
          const int tile_ks = half * Cfg::kKeySteps + ks;
          const uint4 lo = frag_v_it[((tile_ks * Cfg::kVUnits + vu) * 2) * 32 + lane];
          const uint4 hi = frag_v_it[((tile_ks * Cfg::kVUnits + vu) * 2 + 1) * 32 + lane];
          vb[buf][0][0] = lo.x, vb[buf][0][1] = lo.y, vb[buf][1][0] = lo.z, vb[buf][1][1] = lo.w;
          vb[buf][2][0] = hi.x, vb[buf][2][1] = hi.y, vb[buf][3][0] = hi.z, vb[buf][3][1] = hi.w;
        } else {
          VFrag::load_v(tile_v, pipe.pitch_v, H * half + 16 * ks, vu, lane, vb[buf], cent_v);
        }
      };
      constexpr int kVSteps = Cfg::kKeySteps * Cfg::kVUnits;
      load_v_step(0, 0);
#pragma unroll
      for (int q = 0; q < kVSteps; ++q) {
        if (q + 1 < kVSteps) load_v_step(q + 1, (q + 1) % 2);
        const int ks = q / Cfg::kVUnits, vu = q % Cfg::kVUnits;
#pragma unroll
        for (int m = 0; m < M; ++m)
#pragma unroll
          for (int j = 0; j < 4; ++j) ptx::mma_f16(acc[m][vu][j], pa[ks][m], vb[q % 2][j][0], vb[q % 2][j][1]);
      }
    }
    if (it + S < keys.n_tiles) pipe.compute_offsets(it + S, it % S);
  }

  // ---- Merge of the two key halves, then rows to shared memory in head-dim order; one warp finishes each row.
  ptx::cp_async_wait<0>();
#pragma unroll
  for (int m = 0; m < M; ++m)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      l_run[m][h] += __shfl_xor_sync(0xffffffffu, l_run[m][h], 1);
      l_run[m][h] += __shfl_xor_sync(0xffffffffu, l_run[m][h], 2);
    }
  __syncthreads();  // every warp is done with the stages; the merge values and then the output rows alias them
  float* merge = reinterpret_cast<float*>(stages);  // [kMergeValues][the second half's 32 * kQuerySlots threads]
  const int merge_thread = tid % (32 * Cfg::kQuerySlots);
  constexpr int kMergeStride = 32 * Cfg::kQuerySlots;
  if (half == 1 && warp_rows > 0) {
    int k = 0;
#pragma unroll
    for (int m = 0; m < M; ++m) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        merge[(k++) * kMergeStride + merge_thread] = m_run[m][h];
        merge[(k++) * kMergeStride + merge_thread] = l_run[m][h];
      }
#pragma unroll
      for (int vu = 0; vu < Cfg::kVUnits; ++vu)
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
          for (int e = 0; e < 4; ++e) merge[(k++) * kMergeStride + merge_thread] = acc[m][vu][j][e];
    }
  }
  __syncthreads();
  if (half == 0 && warp_rows > 0) {
    int k = 0;
#pragma unroll
    for (int m = 0; m < M; ++m) {
      float scale0[2], scale1[2];
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const float m1 = merge[(k++) * kMergeStride + merge_thread];
        const float l1 = merge[(k++) * kMergeStride + merge_thread];
        const float m_new = fmaxf(m_run[m][h], m1);
        const float m_use = m_new == -INFINITY ? 0.0f : m_new;
        scale0[h] = prefill_exp2(m_run[m][h] - m_use);
        scale1[h] = prefill_exp2(m1 - m_use);
        m_run[m][h] = m_new;
        l_run[m][h] = l_run[m][h] * scale0[h] + l1 * scale1[h];
      }
#pragma unroll
      for (int vu = 0; vu < Cfg::kVUnits; ++vu)
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            acc[m][vu][j][e] =
                acc[m][vu][j][e] * scale0[e / 2] + merge[(k++) * kMergeStride + merge_thread] * scale1[e / 2];
          }
    }
  }
  __syncthreads();  // the merge values are read; the output rows overwrite them
  float* o_rows = reinterpret_cast<float*>(stages);  // [kQvecs][kDimV]
  float* m_rows = o_rows + Cfg::kQvecs * Cfg::kDimV;
  float* l_rows = m_rows + Cfg::kQvecs;
  if (half == 0 && warp_rows > 0) {
#pragma unroll
    for (int m = 0; m < M; ++m) {
      const int r0 = row_base + 16 * m + g, r1 = r0 + 8;
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
  const int64_t split = launch.out.n_splits > 1 ? w.split : -1;  // -1: finish_row writes the final output rows
  for (int r = warp; r < w.n_qvecs; r += Cfg::kWarps) {
    finish_row(p, o_rows + r * Cfg::kDimV, Cfg::kDimV, kRotatedV, m_rows[r], l_rows[r], w.s, w.head_of(r),
               w.row_of(r), launch.out, split);
  }
}

/// Sets the instance's shared-memory limit (once) and checks that a CTA fits an SM.
template <int HeadDimK, int HeadDimV, KvType KType, KvType VType>
Status prepare_prefill_kernel() {
  using Cfg = PrefillConfig<HeadDimK, HeadDimV, KType, VType>;
  static const Status prepared =
      prepare_kernel(prefill_kernel<HeadDimK, HeadDimV, KType, VType>, Cfg::kThreads, Cfg::kSmemBytes,
                     "prefill kernel d_k = " + std::to_string(HeadDimK) + ", d_v = " + std::to_string(HeadDimV));
  return prepared;
}

template <int HeadDimK, int HeadDimV, KvType KType, KvType VType>
Status launch_prefill(const AttentionProblem& p, const Route& route, void* workspace, cudaStream_t stream) {
  using Cfg = PrefillConfig<HeadDimK, HeadDimV, KType, VType>;
  KVFLASH_RETURN_IF_ERROR((prepare_prefill_kernel<HeadDimK, HeadDimV, KType, VType>()));
  const AttentionShape& s = p.shape;
  if (s.n_q == 0 || s.n_seq == 0) return Status::Ok();
  const SplitPlan plan = split_plan_of(route, s, Cfg::kKeyTile, Cfg::kQvecs);
  if (plan.keys_per_split <= 0 || plan.keys_per_split % Cfg::kKeyTile != 0 ||
      plan.n_splits * plan.keys_per_split < s.n_kv) {
    return invalid_argument("route with n_splits = " + std::to_string(plan.n_splits) + ", keys_per_split = " +
                            std::to_string(plan.keys_per_split) + " does not fit the prefill kernel (key tile " +
                            std::to_string(Cfg::kKeyTile) + ", n_kv = " + std::to_string(s.n_kv) + ")");
  }
  PrefillLaunch launch;
  launch.scale = static_cast<float>(effective_scale(p));
  launch.n_qchunks = plan.n_qchunks;
  launch.keys_per_split = plan.keys_per_split;
  launch.out = split_output_of(route, s, Cfg::kDimV, workspace);
  if (plan.n_splits > 1 && (workspace == nullptr || launch.out.o_pitch < s.d_v)) {
    return invalid_argument("route's workspace has no room for the partials of " + std::to_string(plan.n_splits) +
                            " splits");
  }
  KVFLASH_RETURN_IF_ERROR(launch_over_sequences(prefill_kernel<HeadDimK, HeadDimV, KType, VType>, p, launch,
                                                s.n_head_kv * launch.n_qchunks * plan.n_splits, Cfg::kThreads,
                                                Cfg::kSmemBytes, stream));
  if (plan.n_splits > 1) {
    KVFLASH_RETURN_IF_ERROR(launch_combine(p, Cfg::kDimV, kv_traits(VType).rotated, launch.out, stream));
  }
  return Status::Ok();
}

}  // namespace kvflash::cuda
