// Split-KV decode for V head dims up to 128 (stored): every warp runs its own flash-attention pass.
//
// A CTA (4 warps) owns up to 8 query vectors (query head x query row) of one KV head and one key range. Tiles of 64
// stored K and V rows stream into shared memory through a cp.async pipeline; each warp takes 16 keys of every tile
// and, for them alone:
//   S = Q K^T (m16n8k16; K fragments dequantized in registers; rows 8..15 of the m-tile are padding),
//   the score options and an online softmax on the accumulators of rows 0..7,
//   O^T += V^T P^T: the S accumulators of a row are exactly the B fragment of P^T, and V's fragments (already laid
//   out along the keys) are the A operand, so a 16 x 128 output needs 32 accumulator registers, not 64, and half
//   the MMAs of O += P V.
// The only barrier per tile is the pipeline's. At the end the four warps' (max, sum, O) are merged in shared
// memory and each row is finished (sinks, turbo V rotated back, strides) or written as a split partial.
#pragma once

#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>

#include "backend/cuda/decode_common.cuh"
#include "backend/cuda/output_rows.cuh"
#include "backend/cuda/ptx.cuh"
#include "backend/cuda/score_variant.cuh"

namespace kvflash::cuda {

template <int HeadDimK, int HeadDimV, KvType KType, KvType VType>
struct NarrowDecodeConfig {
  static constexpr int kWarps = 4;
  static constexpr int kThreads = 32 * kWarps;
  static constexpr int kKeyTile = 64;
  static constexpr int kWarpKeys = kKeyTile / kWarps;  // one k-step of the PV MMA
  static constexpr int kMaxQvecs = 8;                  // the n of the PV MMA
  // f16 rows (35 KB stages): 3 stages, two CTAs per SM, ~140 KB in flight per SM. Smaller rows: ~44 KB of
  // stages, so that four CTAs (16 warps, 128 registers each) fit an SM with 3+ tiles in flight each.
  static constexpr int kStageBytesEstimate = kv_stage_bytes(KType, HeadDimK, VType, HeadDimV, kKeyTile);
  static constexpr int kStages = kStageBytesEstimate >= 24 * 1024 ? 3 : std::clamp(44 * 1024 / kStageBytesEstimate, 3, 6);
  using Geo = KvTileGeometry<HeadDimK, HeadDimV, KType, VType, kKeyTile, kStages>;
  static constexpr int kDimK = Geo::kDimK;
  static constexpr int kDimV = Geo::kDimV;
  static_assert(kDimK % 64 == 0 && kDimV % 32 == 0 && kDimV <= 128);
  static constexpr int kKUnits = kDimK / 64;
  static constexpr int kVUnits = kDimV / 32;
  static constexpr int kOMTiles = kDimV / 16;  // m-tiles of O^T
  static constexpr int kQRows = 16;            // staged query rows: the m of the QK MMA
  static constexpr int kQPitch = kDimK + 8;    // halves; +16 bytes keeps ldmatrix rows in distinct banks

  static constexpr int kQOffset = Geo::kStagesBytes;
  static constexpr int kVariantOffset = kQOffset + kQRows * kQPitch * 2;
  static constexpr int kOffsetsOffset = (kVariantOffset + kMaxQvecs * static_cast<int>(sizeof(ScoreVariant)) + 15) /
                                        16 * 16;
  static constexpr int kLutOffset = kOffsetsOffset + Geo::kOffsetsBytes;
  static constexpr int kSmemBytes = kLutOffset + 2 * 16 * 2;
  // Epilogue, over the dead stages: per-warp O [warps][8][kDimV], per-warp max and sum [warps][8], row max and sum.
  static constexpr int kEpilogueBytes = kWarps * kMaxQvecs * (kDimV + 2) * 4 + 2 * kMaxQvecs * 4;
  static_assert(kEpilogueBytes <= Geo::kStagesBytes && kQRows * kDimK * 4 <= Geo::kStagesBytes);
};

template <int HeadDimK, int HeadDimV, KvType KType, KvType VType>
__global__ void __launch_bounds__(128, 4) decode_narrow_kernel(const AttentionProblem p, const DecodeLaunch launch) {
  using Cfg = NarrowDecodeConfig<HeadDimK, HeadDimV, KType, VType>;
  using Geo = typename Cfg::Geo;
  using KFrag = KvFragments<KType>;
  using VFrag = KvFragments<VType>;
  constexpr int T = Cfg::kKeyTile;
  constexpr int S = Cfg::kStages;
  static_assert(k_dims_are_a_permutation<KFrag>(Cfg::kDimK), "K fragment order must cover the head dim once");
  static_assert(v_dims_are_a_permutation<VFrag>(Cfg::kDimV), "V fragment order must cover the head dim once");
  constexpr bool kRotatedV = kv_traits(VType).rotated;  // constant: device code never reads the host table

  extern __shared__ __align__(128) uint8_t smem[];
  uint8_t* stages = smem;
  __half* q_s = reinterpret_cast<__half*>(smem + Cfg::kQOffset);
  ScoreVariant* variants = reinterpret_cast<ScoreVariant*>(smem + Cfg::kVariantOffset);
  int64_t* offsets = reinterpret_cast<int64_t*>(smem + Cfg::kOffsetsOffset);
  __half* lut_k = reinterpret_cast<__half*>(smem + Cfg::kLutOffset);
  __half* lut_v = lut_k + 16;

  const int tid = static_cast<int>(threadIdx.x), warp = tid / 32, lane = tid % 32;
  const int g = lane / 4, t = lane % 4;

  const DecodeWork w = decode_work(p, launch, Cfg::kMaxQvecs, T);
  if (w.n_qvecs <= 0) return;  // a plan with more query chunks than needed: nothing to do here
  const KvPipeline<Geo, T, Cfg::kThreads, KType != KvType::f16, VType != KvType::f16> pipe(p, w, stages, offsets);
#pragma unroll 1
  for (int st = 0; st < S; ++st) {
    if (st < w.n_tiles) pipe.compute_offsets(st, st);
  }
  if constexpr (KFrag::kNeedsCentroids) load_centroids_f16(KType, lut_k);
  if constexpr (VFrag::kNeedsCentroids) load_centroids_f16(VType, lut_v);
  if (tid < w.n_qvecs) variants[tid] = ScoreVariant::make(p, w.s, w.head_of(tid), w.row_of(tid), w.len);
  stage_query<KFrag, HeadDimK, Cfg::kDimK, kv_traits(KType).rotated, Cfg::kThreads>(
      p, w, launch.scale, reinterpret_cast<float*>(stages), q_s, Cfg::kQPitch, Cfg::kQRows);
#pragma unroll 1
  for (int st = 0; st < S - 1; ++st) {
    if (st < w.n_tiles) pipe.issue(st, st);
    ptx::cp_async_commit();
  }

  // This thread's query vector is row g of the QK m-tile; it scores keys 2t, 2t + 1, 8 + 2t, 9 + 2t of the warp's
  // 16, and accumulates O^T for query vectors 2t and 2t + 1.
  const bool valid = g < w.n_qvecs;
  // Without options only the key range hides keys: skip the per-score calls.
  const bool plain = p.mask.data == nullptr && !p.options.causal && p.options.window == 0 &&
                     p.options.softcap == 0.0 && p.options.alibi_max_bias == 0.0;
  float m_run = -INFINITY, l_run = 0.0f;  // l: this thread's part of the row sum
  float o[Cfg::kOMTiles][4];
#pragma unroll
  for (int n = 0; n < Cfg::kOMTiles; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
  const Centroids cent_k{lut_k}, cent_v{lut_v};

  for (int it = 0; it < w.n_tiles; ++it) {
    ptx::cp_async_wait<S - 2>();
    __syncthreads();  // tile `it` landed for every thread; the stage consumed last iteration is free
    if (it + S - 1 < w.n_tiles) pipe.issue(it + S - 1, (it + S - 1) % S);
    ptx::cp_async_commit();
    const uint8_t* tile_k = pipe.k_tile(it % S);
    const uint8_t* tile_v = pipe.v_tile(it % S);
    const int64_t key0 = w.key_begin + static_cast<int64_t>(it) * T + warp * Cfg::kWarpKeys;
    const int keys_left = static_cast<int>(std::min<int64_t>(w.key_end - key0, Cfg::kWarpKeys));

    // S = Q K^T for this warp's 16 keys: two n-tiles of 8 keys; elements 0, 1 are row g (2, 3 are padding rows).
    float sc[2][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};
#pragma unroll(Cfg::kKUnits <= 2 ? 2 : 1)
    for (int u = 0; u < Cfg::kKUnits; ++u) {
      uint32_t kb[2][8];
      KFrag::load_k(tile_k, pipe.pitch_k, warp * Cfg::kWarpKeys, u, lane, kb[0], cent_k);
      KFrag::load_k(tile_k, pipe.pitch_k, warp * Cfg::kWarpKeys + 8, u, lane, kb[1], cent_k);
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        uint32_t a[4];
        ptx::ldmatrix_x4(a, q_s + (lane % 8 + 8 * ((lane / 8) % 2)) * Cfg::kQPitch + 16 * (4 * u + c) +
                                8 * (lane / 16));
        ptx::mma_f16(sc[0], a, kb[0][2 * c], kb[0][2 * c + 1]);
        ptx::mma_f16(sc[1], a, kb[1][2 * c], kb[1][2 * c + 1]);
      }
    }

    // Options and the online softmax of row g over its four scores.
    float x[4] = {sc[0][0], sc[0][1], sc[1][0], sc[1][1]};
    float mx = -INFINITY;
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int k = 8 * (e / 2) + 2 * t + (e % 2);  // key within the warp's 16
      if (!valid || k >= keys_left) {
        x[e] = -INFINITY;
      } else if (!plain) {
        x[e] = variants[g](x[e], key0 + k);
      }
      mx = fmaxf(mx, x[e]);
    }
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    const float m_new = fmaxf(m_run, mx);
    const float alpha = m_new == -INFINITY ? 1.0f : __expf(m_run - m_new);
    m_run = m_new;
    float sum = 0.0f;
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      x[e] = x[e] == -INFINITY ? 0.0f : __expf(x[e] - m_new);
      sum += x[e];
    }
    l_run = l_run * alpha + sum;
    // O^T columns are query vectors 2t and 2t + 1: their rescale factors live in lanes 8t and 8t + 4.
    if (__any_sync(0xffffffffu, alpha != 1.0f)) {
      const float a0 = __shfl_sync(0xffffffffu, alpha, 8 * t), a1 = __shfl_sync(0xffffffffu, alpha, 8 * t + 4);
#pragma unroll
      for (int n = 0; n < Cfg::kOMTiles; ++n) {
        o[n][0] *= a0;
        o[n][1] *= a1;
        o[n][2] *= a0;
        o[n][3] *= a1;
      }
    }
    // P^T as the B operand (k = key, n = query vector g): keys 2t, 2t + 1 and 8 + 2t, 9 + 2t of row g.
    const uint32_t pb0 = ptx::as_u32(__floats2half2_rn(x[0], x[1]));
    const uint32_t pb1 = ptx::as_u32(__floats2half2_rn(x[2], x[3]));
#pragma unroll
    for (int vu = 0; vu < Cfg::kVUnits; ++vu) {
      uint32_t vb[4][2];
      VFrag::load_v(tile_v, pipe.pitch_v, warp * Cfg::kWarpKeys, vu, lane, vb, cent_v);
      // V's B fragments of n-tiles (2h, 2h + 1) are the A fragment of O^T's m-tile 2vu + h: rows g / g + 8 are
      // head-dim elements v_dim(vu, g, 2h) / v_dim(vu, g, 2h + 1).
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const uint32_t a[4] = {vb[2 * h][0], vb[2 * h + 1][0], vb[2 * h][1], vb[2 * h + 1][1]};
        ptx::mma_f16(o[2 * vu + h], a, pb0, pb1);
      }
    }
    if (it + S < w.n_tiles) pipe.compute_offsets(it + S, it % S);
  }
  asm volatile("griddepcontrol.launch_dependents;");  // the combine may start launching (it waits for this grid)

  // ---- Merge the four warps, then finish each row (one warp per row).
  ptx::cp_async_wait<0>();
  __syncthreads();  // every warp is done with the stages; the epilogue buffers alias them
  constexpr int Q = Cfg::kMaxQvecs;
  float* o_w = reinterpret_cast<float*>(stages);  // [warp][Q][kDimV]
  float* m_w = o_w + Cfg::kWarps * Q * Cfg::kDimV;  // [warp][Q]
  float* l_w = m_w + Cfg::kWarps * Q;               // [warp][Q]
  float* m_row = l_w + Cfg::kWarps * Q;             // [Q]
  float* l_row = m_row + Q;                         // [Q]
  l_run += __shfl_xor_sync(0xffffffffu, l_run, 1);
  l_run += __shfl_xor_sync(0xffffffffu, l_run, 2);
  float* mine = o_w + warp * Q * Cfg::kDimV;
#pragma unroll
  for (int vu = 0; vu < Cfg::kVUnits; ++vu) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int d0 = VFrag::v_dim(vu, g, 2 * h), d1 = VFrag::v_dim(vu, g, 2 * h + 1);
      mine[(2 * t) * Cfg::kDimV + d0] = o[2 * vu + h][0];
      mine[(2 * t + 1) * Cfg::kDimV + d0] = o[2 * vu + h][1];
      mine[(2 * t) * Cfg::kDimV + d1] = o[2 * vu + h][2];
      mine[(2 * t + 1) * Cfg::kDimV + d1] = o[2 * vu + h][3];
    }
  }
  if (t == 0) {
    m_w[warp * Q + g] = m_run;
    l_w[warp * Q + g] = l_run;
  }
  __syncthreads();
  // Row state: the max over warps, each warp's weight, the merged sum.
  if (tid < w.n_qvecs) {
    float m = -INFINITY;
    for (int k = 0; k < Cfg::kWarps; ++k) m = fmaxf(m, m_w[k * Q + tid]);
    float l = 0.0f;
    for (int k = 0; k < Cfg::kWarps; ++k) {
      const float mk = m_w[k * Q + tid];
      const float weight = mk == -INFINITY ? 0.0f : __expf(mk - m);
      l += weight * l_w[k * Q + tid];
      m_w[k * Q + tid] = weight;  // from here on: the warp's weight for this row
    }
    m_row[tid] = m;
    l_row[tid] = l;
  }
  __syncthreads();
  for (int idx = tid; idx < w.n_qvecs * Cfg::kDimV; idx += Cfg::kThreads) {
    const int r = idx / Cfg::kDimV, d = idx % Cfg::kDimV;
    float acc = 0.0f;
#pragma unroll
    for (int k = 0; k < Cfg::kWarps; ++k) {
      const float weight = m_w[k * Q + r];
      if (weight != 0.0f) acc += weight * o_w[(k * Q + r) * Cfg::kDimV + d];
    }
    o_w[r * Cfg::kDimV + d] = acc;  // warp 0's slot of (r, d): read above by this thread only
  }
  __syncthreads();
  for (int r = warp; r < w.n_qvecs; r += Cfg::kWarps) {
    finish_row(p, o_w + r * Cfg::kDimV, Cfg::kDimV, kRotatedV, m_row[r], l_row[r], w.s, w.head_of(r), w.row_of(r),
               launch.out, launch.out.n_splits > 1 ? w.split : -1);
  }
}

}  // namespace kvflash::cuda
