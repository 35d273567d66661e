// Split-KV decode for V head dims up to 128 (stored): every warp runs its own flash-attention pass.
//
// A CTA (4 warps) owns up to 16 query vectors (query head x query row) of one KV head and one key range. Tiles of
// 64 stored K and V rows stream into shared memory through a cp.async pipeline; each warp takes 16 keys of every
// tile and, for them alone:
//   S = Q K^T (K fragments dequantized in registers), the score options, an online softmax in registers (the S
//   accumulators become the P operand without touching shared memory), O += P V over the whole V head dim.
// The only barrier per tile is the pipeline's. At the end the four warps' (max, sum, O) are merged in shared
// memory and each row is finished (sinks, turbo V rotated back, strides) or written as a split partial.
// 64 accumulator registers per thread hold a 16 x 128 output: this is why wider heads use decode_wide.cuh.
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
  static constexpr int kMaxQvecs = 16;
  // Deep enough that ~100 KB of K/V is in flight per CTA, two CTAs per SM for f16 rows, up to 6 for small rows.
  static constexpr int kStages =
      std::clamp(108 * 1024 / kv_stage_bytes(KType, HeadDimK, VType, HeadDimV, kKeyTile), 2, 6);
  using Geo = KvTileGeometry<HeadDimK, HeadDimV, KType, VType, kKeyTile, kStages>;
  static constexpr int kDimK = Geo::kDimK;
  static constexpr int kDimV = Geo::kDimV;
  static_assert(kDimK % 64 == 0 && kDimV % 32 == 0 && kDimV <= 128);
  static constexpr int kKUnits = kDimK / 64;
  static constexpr int kVUnits = kDimV / 32;
  static constexpr int kONTiles = kDimV / 8;
  static constexpr int kQPitch = kDimK + 8;  // halves; +16 bytes keeps ldmatrix rows in distinct banks

  static constexpr int kQOffset = Geo::kStagesBytes;
  static constexpr int kOffsetsOffset = kQOffset + kMaxQvecs * kQPitch * 2;
  static constexpr int kLutOffset = kOffsetsOffset + Geo::kOffsetsBytes;
  static constexpr int kSmemBytes = kLutOffset + 2 * 16 * 2;
  // Epilogue, over the dead stages: per-warp O [warps][16][kDimV], then per-warp max and sum [warps][16].
  static constexpr int kEpilogueBytes = kWarps * kMaxQvecs * (kDimV + 2) * 4 + 2 * kMaxQvecs * 4;
  static_assert(kEpilogueBytes <= Geo::kStagesBytes && kMaxQvecs * kDimK * 4 <= Geo::kStagesBytes);
};

template <int HeadDimK, int HeadDimV, KvType KType, KvType VType>
__global__ void __launch_bounds__(128, 3) decode_narrow_kernel(const AttentionProblem p, const DecodeLaunch launch) {
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
  int64_t* offsets = reinterpret_cast<int64_t*>(smem + Cfg::kOffsetsOffset);
  __half* lut_k = reinterpret_cast<__half*>(smem + Cfg::kLutOffset);
  __half* lut_v = lut_k + 16;

  const int tid = static_cast<int>(threadIdx.x), warp = tid / 32, lane = tid % 32;
  const int g = lane / 4, t = lane % 4;

  const DecodeWork w = decode_work(p, launch, Cfg::kMaxQvecs, T);
  if (w.n_qvecs <= 0) return;  // a plan with more query chunks than needed: nothing to do here
  const KvPipeline<Geo, T, Cfg::kThreads> pipe(p, w, stages, offsets);
#pragma unroll 1
  for (int st = 0; st < S; ++st) {
    if (st < w.n_tiles) pipe.compute_offsets(st, st);
  }
  if constexpr (KFrag::kNeedsCentroids) load_centroids_f16(KType, lut_k);
  if constexpr (VFrag::kNeedsCentroids) load_centroids_f16(VType, lut_v);
  stage_query<KFrag, HeadDimK, Cfg::kDimK, kv_traits(KType).rotated, Cfg::kThreads>(
      p, w, launch.scale, reinterpret_cast<float*>(stages), q_s, Cfg::kQPitch, Cfg::kMaxQvecs);
#pragma unroll 1
  for (int st = 0; st < S - 1; ++st) {
    if (st < w.n_tiles) pipe.issue(st);
    ptx::cp_async_commit();
  }

  // This thread's two rows of the m-tile: g and g + 8.
  const bool valid0 = g < w.n_qvecs, valid1 = g + 8 < w.n_qvecs;
  ScoreVariant var0, var1;
  if (valid0) var0 = ScoreVariant::make(p, w.s, w.head_of(g), w.row_of(g), w.len);
  if (valid1) var1 = ScoreVariant::make(p, w.s, w.head_of(g + 8), w.row_of(g + 8), w.len);
  // Without options only the key range hides keys: skip the per-score calls.
  const bool plain = p.mask.data == nullptr && !p.options.causal && p.options.window == 0 &&
                     p.options.softcap == 0.0 && p.options.alibi_max_bias == 0.0;
  float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.0f, 0.0f};  // l: this thread's part of the row sum
  float o[Cfg::kONTiles][4];
#pragma unroll
  for (int n = 0; n < Cfg::kONTiles; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
  const Centroids cent_k{lut_k}, cent_v{lut_v};

  for (int it = 0; it < w.n_tiles; ++it) {
    ptx::cp_async_wait<S - 2>();
    __syncthreads();  // tile `it` landed for every thread; the stage consumed last iteration is free
    if (it + S - 1 < w.n_tiles) pipe.issue((it + S - 1) % S);
    ptx::cp_async_commit();
    const uint8_t* tile_k = pipe.k_tile(it % S);
    const uint8_t* tile_v = pipe.v_tile(it % S);
    const int64_t key0 = w.key_begin + static_cast<int64_t>(it) * T + warp * Cfg::kWarpKeys;

    // S = Q K^T for this warp's 16 keys: two n-tiles of 8 keys.
    float sc[2][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};
#pragma unroll(Cfg::kKUnits <= 2 ? 2 : 1)
    for (int u = 0; u < Cfg::kKUnits; ++u) {
      uint32_t kb[2][8];
      KFrag::load_k(tile_k, Geo::kPitchK, warp * Cfg::kWarpKeys, u, lane, kb[0], cent_k);
      KFrag::load_k(tile_k, Geo::kPitchK, warp * Cfg::kWarpKeys + 8, u, lane, kb[1], cent_k);
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        uint32_t a[4];
        ptx::ldmatrix_x4(a, q_s + (lane % 8 + 8 * ((lane / 8) % 2)) * Cfg::kQPitch + 16 * (4 * u + c) +
                                8 * (lane / 16));
        ptx::mma_f16(sc[0], a, kb[0][2 * c], kb[0][2 * c + 1]);
        ptx::mma_f16(sc[1], a, kb[1][2 * c], kb[1][2 * c + 1]);
      }
    }

    // Options, then the online softmax of rows g (elements 0, 1) and g + 8 (elements 2, 3).
    float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int nt = 0; nt < 2; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int64_t key = key0 + 8 * nt + 2 * t + (e & 1);
        const bool row1 = e >= 2;
        float x = sc[nt][e];
        if (!(row1 ? valid1 : valid0) || key >= w.key_end) {
          x = -INFINITY;
        } else if (!plain) {
          x = row1 ? var1(x, key) : var0(x, key);
        }
        sc[nt][e] = x;
        mx[row1] = fmaxf(mx[row1], x);
      }
    }
    float alpha[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
      const float m_new = fmaxf(m_run[r], mx[r]);
      alpha[r] = m_new == -INFINITY ? 1.0f : __expf(m_run[r] - m_new);
      m_run[r] = m_new;
    }
    float sum[2] = {0.0f, 0.0f};
#pragma unroll
    for (int nt = 0; nt < 2; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = e >= 2;
        const float x = sc[nt][e];
        sc[nt][e] = x == -INFINITY ? 0.0f : __expf(x - m_run[r]);
        sum[r] += sc[nt][e];
      }
    }
    l_run[0] = l_run[0] * alpha[0] + sum[0];
    l_run[1] = l_run[1] * alpha[1] + sum[1];
    // Once the running max settles, alpha is 1 everywhere and the rescale is skipped.
    if (__any_sync(0xffffffffu, alpha[0] != 1.0f || alpha[1] != 1.0f)) {
#pragma unroll
      for (int n = 0; n < Cfg::kONTiles; ++n) {
        o[n][0] *= alpha[0];
        o[n][1] *= alpha[0];
        o[n][2] *= alpha[1];
        o[n][3] *= alpha[1];
      }
    }
    // The S accumulators of two n-tiles are the A operand of one k-step: rows g / g + 8, keys 2t.. / 8 + 2t...
    const uint32_t pa[4] = {ptx::as_u32(__floats2half2_rn(sc[0][0], sc[0][1])),
                            ptx::as_u32(__floats2half2_rn(sc[0][2], sc[0][3])),
                            ptx::as_u32(__floats2half2_rn(sc[1][0], sc[1][1])),
                            ptx::as_u32(__floats2half2_rn(sc[1][2], sc[1][3]))};
#pragma unroll
    for (int vu = 0; vu < Cfg::kVUnits; ++vu) {
      uint32_t vb[4][2];
      VFrag::load_v(tile_v, Geo::kPitchV, warp * Cfg::kWarpKeys, vu, lane, vb, cent_v);
#pragma unroll
      for (int j = 0; j < 4; ++j) ptx::mma_f16(o[4 * vu + j], pa, vb[j][0], vb[j][1]);
    }
    if (it + S < w.n_tiles) pipe.compute_offsets(it + S, it % S);
  }

  // ---- Merge the four warps, then finish each row (one warp per row).
  ptx::cp_async_wait<0>();
  __syncthreads();  // every warp is done with the stages; the epilogue buffers alias them
  float* o_w = reinterpret_cast<float*>(stages);          // [warp][16][kDimV]
  float* m_w = o_w + Cfg::kWarps * 16 * Cfg::kDimV;       // [warp][16]
  float* l_w = m_w + Cfg::kWarps * 16;                    // [warp][16]
  float* m_row = l_w + Cfg::kWarps * 16;                  // [16]
  float* l_row = m_row + 16;                              // [16]
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l_run[r] += __shfl_xor_sync(0xffffffffu, l_run[r], 1);
    l_run[r] += __shfl_xor_sync(0xffffffffu, l_run[r], 2);
  }
  float* mine = o_w + warp * 16 * Cfg::kDimV;
#pragma unroll
  for (int vu = 0; vu < Cfg::kVUnits; ++vu) {
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int d0 = VFrag::v_dim(vu, 2 * t, j), d1 = VFrag::v_dim(vu, 2 * t + 1, j);
      mine[g * Cfg::kDimV + d0] = o[4 * vu + j][0];
      mine[g * Cfg::kDimV + d1] = o[4 * vu + j][1];
      mine[(g + 8) * Cfg::kDimV + d0] = o[4 * vu + j][2];
      mine[(g + 8) * Cfg::kDimV + d1] = o[4 * vu + j][3];
    }
  }
  if (t == 0) {
    m_w[warp * 16 + g] = m_run[0];
    m_w[warp * 16 + g + 8] = m_run[1];
    l_w[warp * 16 + g] = l_run[0];
    l_w[warp * 16 + g + 8] = l_run[1];
  }
  __syncthreads();
  // Row state: the max over warps, each warp's weight, the merged sum.
  if (tid < w.n_qvecs) {
    float m = -INFINITY;
    for (int k = 0; k < Cfg::kWarps; ++k) m = fmaxf(m, m_w[k * 16 + tid]);
    float l = 0.0f;
    for (int k = 0; k < Cfg::kWarps; ++k) {
      const float mk = m_w[k * 16 + tid];
      const float weight = mk == -INFINITY ? 0.0f : __expf(mk - m);
      l += weight * l_w[k * 16 + tid];
      m_w[k * 16 + tid] = weight;  // from here on: the warp's weight for this row
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
      const float weight = m_w[k * 16 + r];
      if (weight != 0.0f) acc += weight * o_w[(k * 16 + r) * Cfg::kDimV + d];
    }
    o_w[r * Cfg::kDimV + d] = acc;  // warp 0's slot of (r, d): read above by this thread only
  }
  __syncthreads();
  for (int r = warp; r < w.n_qvecs; r += Cfg::kWarps) {
    finish_row(p, o_w + r * Cfg::kDimV, Cfg::kDimV, kRotatedV, m_row[r], l_row[r], w.s,
               w.head_of(r), w.row_of(r), launch.out, launch.out.n_splits > 1 ? w.split : -1);
  }
}

}  // namespace kvflash::cuda
