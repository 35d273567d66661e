// Split-KV decode for V head dims above 128 (256, 512, MLA's 576/512): the warps split the head dim.
//
// A 16 x d_v output does not fit one warp's registers, so per tile of stored K/V rows:
//   1. S = Q K^T: each warp takes a quarter of the tile's keys over the whole K head dim (fragments dequantized in
//      registers) and writes its scores to shared memory;
//   2. softmax over the valid query rows, row-parallel (options, online max and sum, f16 probabilities);
//   3. O += P V: each warp takes a slice of the V head dim over all the tile's keys.
// Three barriers per tile; the pipeline, the query staging and the row finish are shared with the narrow kernel.
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
struct WideDecodeConfig {
  static constexpr int kWarps = 4;
  static constexpr int kThreads = 32 * kWarps;
  // 16 query vectors per m-tile; two m-tiles where the accumulators still fit the register file.
  static constexpr int kDimKStored = static_cast<int>(stored_dim(KType, HeadDimK));
  static constexpr int kDimVStored = static_cast<int>(stored_dim(VType, HeadDimV));
  static constexpr int kMTiles = (kDimKStored <= 256 && kDimVStored <= 256) ? 2 : 1;
  static constexpr int kMaxQvecs = 16 * kMTiles;
  // 64 keys per tile unless a stage would pass 40 KB (wide f16 rows); each warp then takes 8 keys of 32.
  static constexpr int kKeyTile = kv_stage_bytes(KType, HeadDimK, VType, HeadDimV, 64) <= 40 * 1024 ? 64 : 32;
  static constexpr int kStages =
      std::clamp(100 * 1024 / kv_stage_bytes(KType, HeadDimK, VType, HeadDimV, kKeyTile), 2, 6);
  using Geo = KvTileGeometry<HeadDimK, HeadDimV, KType, VType, kKeyTile, kStages>;
  static constexpr int kDimK = Geo::kDimK;
  static constexpr int kDimV = Geo::kDimV;
  static_assert(kDimK % 64 == 0 && kDimV % 32 == 0);
  static constexpr int kKeyNTilesPerWarp = kKeyTile / 8 / kWarps;
  static constexpr int kKUnits = kDimK / 64;
  static constexpr int kVUnits = kDimV / 32;
  static constexpr int kKeyGroups = kVUnits >= kWarps ? 1 : kWarps / kVUnits;  // PV: warps that split the keys
  static constexpr int kDimGroups = kWarps / kKeyGroups;
  static constexpr int kUnitsPerWarp = kVUnits / kDimGroups;
  static constexpr int kKStepsPerWarp = kKeyTile / 16 / kKeyGroups;
  static_assert(kKStepsPerWarp >= 1 && kUnitsPerWarp >= 1);

  static constexpr int kQPitch = kDimK + 8;         // halves; +16 bytes keeps ldmatrix rows in distinct banks
  static constexpr int kScorePitch = kKeyTile + 4;  // floats
  static constexpr int kPPitch = kKeyTile + 8;      // halves
  static constexpr int kOPitch = kDimV + 4;         // floats (epilogue, aliases the stages)
  static constexpr int kQOffset = Geo::kStagesBytes;
  static constexpr int kScoreOffset = kQOffset + kMaxQvecs * kQPitch * 2;
  static constexpr int kPOffset = kScoreOffset + kMaxQvecs * kScorePitch * 4;
  static constexpr int kAlphaOffset = kPOffset + kMaxQvecs * kPPitch * 2;
  static constexpr int kMOffset = kAlphaOffset + kMaxQvecs * 4;
  static constexpr int kLOffset = kMOffset + kMaxQvecs * 4;
  static constexpr int kOffsetsOffset = (kLOffset + kMaxQvecs * 4 + 15) / 16 * 16;
  static constexpr int kLutOffset = kOffsetsOffset + Geo::kOffsetsBytes;
  static constexpr int kSmemBytes = kLutOffset + 2 * 16 * 2;
  static_assert(kMaxQvecs * kDimK * 4 <= Geo::kStagesBytes, "the f32 query staging aliases the stages");
  static_assert(kMaxQvecs * kOPitch * 4 <= Geo::kStagesBytes, "the output staging aliases the stages");
};

template <int HeadDimK, int HeadDimV, KvType KType, KvType VType>
__global__ void __launch_bounds__(128) decode_wide_kernel(const AttentionProblem p, const DecodeLaunch launch) {
  using Cfg = WideDecodeConfig<HeadDimK, HeadDimV, KType, VType>;
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
  float* score_s = reinterpret_cast<float*>(smem + Cfg::kScoreOffset);
  __half* p_s = reinterpret_cast<__half*>(smem + Cfg::kPOffset);
  float* alpha_s = reinterpret_cast<float*>(smem + Cfg::kAlphaOffset);
  float* m_s = reinterpret_cast<float*>(smem + Cfg::kMOffset);
  float* l_s = reinterpret_cast<float*>(smem + Cfg::kLOffset);
  int64_t* offsets = reinterpret_cast<int64_t*>(smem + Cfg::kOffsetsOffset);
  __half* lut_k = reinterpret_cast<__half*>(smem + Cfg::kLutOffset);
  __half* lut_v = lut_k + 16;

  const int tid = static_cast<int>(threadIdx.x), warp = tid / 32, lane = tid % 32;
  const int g = lane / 4, t = lane % 4;

  const DecodeWork w = decode_work(p, launch, Cfg::kMaxQvecs, T);
  if (w.n_qvecs <= 0) return;  // a plan with more query chunks than needed: nothing to do here
  const int m_tiles = (w.n_qvecs + 15) / 16;
  const KvPipeline<Geo, T, Cfg::kThreads, KType != KvType::f16, VType != KvType::f16> pipe(p, w, stages, offsets);
  pipe.template compute_first_offsets<S>();
  if constexpr (KFrag::kNeedsCentroids) load_centroids_f16(KType, lut_k);
  if constexpr (VFrag::kNeedsCentroids) load_centroids_f16(VType, lut_v);
  stage_query<KFrag, HeadDimK, Cfg::kDimK, kv_traits(KType).rotated, Cfg::kThreads>(
      p, w, launch.scale, reinterpret_cast<float*>(stages), q_s, Cfg::kQPitch, m_tiles * 16);
  pipe.template issue_first<S>();

  // Softmax roles: only the valid rows, up to 32 threads (one warp) per row, so a step of a single query vector
  // costs what it needs and no more.
  int row_tpr = 32;
  while (row_tpr > 1 && (Cfg::kThreads / row_tpr) < w.n_qvecs) row_tpr /= 2;
  const int my_row = tid / row_tpr, my_sub = tid % row_tpr;
  const bool my_row_valid = my_row < w.n_qvecs;
  ScoreVariant variant;
  if (my_row_valid) variant = ScoreVariant::make(p, w.s, w.head_of(my_row), w.row_of(my_row), w.len);
  const int64_t plain_end = plain_keys_end(p, w);  // keys below it need no per-score call
  float m_run = -INFINITY, l_run = 0.0f;

  const int dim_group = warp % Cfg::kDimGroups, key_group = warp / Cfg::kDimGroups;
  float acc[Cfg::kMTiles][Cfg::kUnitsPerWarp][4][4];
#pragma unroll
  for (int mt = 0; mt < Cfg::kMTiles; ++mt)
#pragma unroll
    for (int x = 0; x < Cfg::kUnitsPerWarp; ++x)
#pragma unroll
      for (int j = 0; j < 4; ++j) acc[mt][x][j][0] = acc[mt][x][j][1] = acc[mt][x][j][2] = acc[mt][x][j][3] = 0.0f;
  const Centroids cent_k{lut_k}, cent_v{lut_v};

  for (int it = 0; it < w.n_tiles; ++it) {
    ptx::cp_async_wait<S - 2>();
    __syncthreads();  // tile `it` landed for every thread; the stage consumed last iteration is free
    if (it + S - 1 < w.n_tiles) pipe.issue(it + S - 1, (it + S - 1) % S);
    ptx::cp_async_commit();
    const uint8_t* tile_k = pipe.k_tile(it % S);
    const uint8_t* tile_v = pipe.v_tile(it % S);
    const int64_t tile_key0 = w.key_begin + static_cast<int64_t>(it) * T;
    const bool plain_tile = tile_key0 + T <= plain_end;  // uniform across the CTA

    // 1. S = Q K^T over this warp's keys.
    {
      float sacc[Cfg::kMTiles][Cfg::kKeyNTilesPerWarp][4];
#pragma unroll
      for (int mt = 0; mt < Cfg::kMTiles; ++mt)
#pragma unroll
        for (int nt = 0; nt < Cfg::kKeyNTilesPerWarp; ++nt) sacc[mt][nt][0] = sacc[mt][nt][1] = sacc[mt][nt][2] = sacc[mt][nt][3] = 0.0f;
      const int warp_key0 = warp * (T / Cfg::kWarps);
#pragma unroll 1
      for (int u = 0; u < Cfg::kKUnits; ++u) {
        uint32_t kb[Cfg::kKeyNTilesPerWarp][8];
#pragma unroll
        for (int nt = 0; nt < Cfg::kKeyNTilesPerWarp; ++nt) {
          KFrag::load_k(tile_k, pipe.pitch_k, warp_key0 + 8 * nt, u, lane, kb[nt], cent_k);
        }
#pragma unroll
        for (int c = 0; c < 4; ++c) {
#pragma unroll
          for (int mt = 0; mt < Cfg::kMTiles; ++mt) {
            if (mt < m_tiles) {
              uint32_t a[4];
              ptx::ldmatrix_x4(a, q_s + (16 * mt + lane % 8 + 8 * ((lane / 8) % 2)) * Cfg::kQPitch +
                                      16 * (4 * u + c) + 8 * (lane / 16));
#pragma unroll
              for (int nt = 0; nt < Cfg::kKeyNTilesPerWarp; ++nt) {
                ptx::mma_f16(sacc[mt][nt], a, kb[nt][2 * c], kb[nt][2 * c + 1]);
              }
            }
          }
        }
      }
#pragma unroll
      for (int mt = 0; mt < Cfg::kMTiles; ++mt) {
        if (mt < m_tiles) {
#pragma unroll
          for (int nt = 0; nt < Cfg::kKeyNTilesPerWarp; ++nt) {
            float* r0 = score_s + (16 * mt + g) * Cfg::kScorePitch + warp_key0 + 8 * nt + 2 * t;
            *reinterpret_cast<float2*>(r0) = make_float2(sacc[mt][nt][0], sacc[mt][nt][1]);
            *reinterpret_cast<float2*>(r0 + 8 * Cfg::kScorePitch) = make_float2(sacc[mt][nt][2], sacc[mt][nt][3]);
          }
        }
      }
    }
    __syncthreads();

    // 2. Online softmax of the valid rows; rows m_tiles * 16 > row >= n_qvecs get zero probabilities.
    if (my_row < m_tiles * 16) {
      float* srow = score_s + my_row * Cfg::kScorePitch;
      __half* prow = p_s + my_row * Cfg::kPPitch;
      float tile_max = -INFINITY;
      for (int j = my_sub; j < T; j += row_tpr) {
        const int64_t key = tile_key0 + j;
        float x = srow[j];
        if (!my_row_valid || key >= w.key_end) {
          x = -INFINITY;
        } else if (!plain_tile) {
          x = variant(x, key);
        }
        srow[j] = x;
        tile_max = fmaxf(tile_max, x);
      }
      for (int off = row_tpr / 2; off > 0; off /= 2) {
        tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, off, row_tpr));
      }
      const float m_new = fmaxf(m_run, tile_max);
      const float alpha = m_new == -INFINITY ? 1.0f : __expf(m_run - m_new);
      float sum = 0.0f;
      for (int j = my_sub; j < T; j += row_tpr) {
        const float x = srow[j];
        const float pj = x == -INFINITY ? 0.0f : __expf(x - m_new);
        prow[j] = __float2half_rn(pj);
        sum += pj;
      }
      for (int off = row_tpr / 2; off > 0; off /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, off, row_tpr);
      l_run = l_run * alpha + sum;
      m_run = m_new;
      if (my_sub == 0) alpha_s[my_row] = alpha;
    }
    __syncthreads();

    // 3. O = alpha * O + P V over this warp's head-dim slice and key steps.
#pragma unroll
    for (int mt = 0; mt < Cfg::kMTiles; ++mt) {
      if (mt < m_tiles) {
        const float a0 = alpha_s[16 * mt + g], a1 = alpha_s[16 * mt + g + 8];
#pragma unroll
        for (int x = 0; x < Cfg::kUnitsPerWarp; ++x)
#pragma unroll
          for (int j = 0; j < 4; ++j) {
            acc[mt][x][j][0] *= a0;
            acc[mt][x][j][1] *= a0;
            acc[mt][x][j][2] *= a1;
            acc[mt][x][j][3] *= a1;
          }
      }
    }
#pragma unroll
    for (int kq = 0; kq < Cfg::kKStepsPerWarp; ++kq) {
      const int ks = key_group * Cfg::kKStepsPerWarp + kq;
      uint32_t pa[Cfg::kMTiles][4];
#pragma unroll
      for (int mt = 0; mt < Cfg::kMTiles; ++mt) {
        if (mt < m_tiles) {
          ptx::ldmatrix_x4(pa[mt], p_s + (16 * mt + lane % 8 + 8 * ((lane / 8) % 2)) * Cfg::kPPitch + 16 * ks +
                                       8 * (lane / 16));
        }
      }
#pragma unroll
      for (int x = 0; x < Cfg::kUnitsPerWarp; ++x) {
        uint32_t vb[4][2];
        VFrag::load_v(tile_v, pipe.pitch_v, 16 * ks, dim_group * Cfg::kUnitsPerWarp + x, lane, vb, cent_v);
#pragma unroll
        for (int mt = 0; mt < Cfg::kMTiles; ++mt) {
          if (mt < m_tiles) {
#pragma unroll
            for (int j = 0; j < 4; ++j) ptx::mma_f16(acc[mt][x][j], pa[mt], vb[j][0], vb[j][1]);
          }
        }
      }
    }
    if (it + S < w.n_tiles) pipe.compute_offsets(it + S, it % S);
  }
  asm volatile("griddepcontrol.launch_dependents;");  // the combine may start launching (it waits for this grid)

  // ---- Epilogue: accumulators -> shared rows in head-dim order, then one warp per row finishes it.
  ptx::cp_async_wait<0>();
  __syncthreads();  // every warp is done with the stages; the output staging aliases them
  float* o_stage = reinterpret_cast<float*>(stages);
  const int rows = m_tiles * 16;
  if constexpr (Cfg::kKeyGroups > 1) {
    for (int idx = tid; idx < rows * Cfg::kOPitch; idx += Cfg::kThreads) o_stage[idx] = 0.0f;
    __syncthreads();
  }
#pragma unroll
  for (int mt = 0; mt < Cfg::kMTiles; ++mt) {
    if (mt < m_tiles) {
#pragma unroll
      for (int x = 0; x < Cfg::kUnitsPerWarp; ++x) {
        const int vu = dim_group * Cfg::kUnitsPerWarp + x;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const int d0 = VFrag::v_dim(vu, 2 * t, j), d1 = VFrag::v_dim(vu, 2 * t + 1, j);
          float* r0 = o_stage + (16 * mt + g) * Cfg::kOPitch;
          float* r1 = r0 + 8 * Cfg::kOPitch;
          if constexpr (Cfg::kKeyGroups > 1) {
            atomicAdd(r0 + d0, acc[mt][x][j][0]);
            atomicAdd(r0 + d1, acc[mt][x][j][1]);
            atomicAdd(r1 + d0, acc[mt][x][j][2]);
            atomicAdd(r1 + d1, acc[mt][x][j][3]);
          } else {
            r0[d0] = acc[mt][x][j][0];
            r0[d1] = acc[mt][x][j][1];
            r1[d0] = acc[mt][x][j][2];
            r1[d1] = acc[mt][x][j][3];
          }
        }
      }
    }
  }
  if (my_sub == 0 && my_row_valid) {
    m_s[my_row] = m_run;
    l_s[my_row] = l_run;
  }
  __syncthreads();
  for (int r = warp; r < w.n_qvecs; r += Cfg::kWarps) {
    finish_row(p, o_stage + r * Cfg::kOPitch, Cfg::kDimV, kRotatedV, m_s[r], l_s[r], w.s, w.head_of(r), w.row_of(r),
               launch.out, launch.out.n_splits > 1 ? w.split : -1);
  }
}

}  // namespace kvflash::cuda
