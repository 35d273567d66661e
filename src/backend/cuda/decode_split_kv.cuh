// Split-KV decode on tensor cores: one pass over the stored K/V bytes per (sequence, KV head, key range), for all
// query heads of the KV group and all query rows of the step at once.
//
// A CTA of 4 warps owns up to 16 * kMTiles query vectors (query head x query row) of one KV head and one key
// range (a split). It streams tiles of kKeyTile stored K and V rows into shared memory with cp.async (kStages
// deep), and per tile:
//   1. S = Q K^T: each warp takes a quarter of the tile's keys over the whole head dim; K fragments are
//      dequantized in registers (kv_fragments.cuh) against a query staged once per CTA in the matching order;
//   2. softmax: the score variant (mask, causal, window, ALiBi, softcap) and the online max/sum, row-parallel;
//   3. O += P V: each warp takes a slice of the head dim (and, for narrow heads, of the keys), V fragments
//      dequantized in registers.
// Turbo K is read against a rotated query (rotated in shared memory as it is staged); turbo V accumulates in the
// rotated domain and the output is rotated back once, where the row is finished. A launch with one split writes O
// directly; otherwise each CTA writes a normalized partial and its log-sum-exp, and the shared combine kernel
// (combine.h) merges them. No allocation, no host synchronization: the workspace is the caller's.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cstdint>

#include "backend/cuda/combine.h"
#include "backend/cuda/cuda_status.h"
#include "backend/cuda/decode_launch.h"
#include "backend/cuda/kv_fragments.cuh"
#include "backend/cuda/kv_tile_copy.cuh"
#include "backend/cuda/output_rows.cuh"
#include "backend/cuda/ptx.cuh"
#include "backend/cuda/score_variant.cuh"
#include "backend/cuda/split_plan.h"
#include "backend/cuda/turbo_centroids.cuh"
#include "backend/cuda/turbo_rotation.cuh"
#include "kvflash/attention_problem.h"

namespace kvflash::cuda {

/// Shared-memory row pitch for stored rows: 16-byte aligned (cp.async), and an odd multiple of 16 so that the 8
/// rows a fragment load touches start in different bank groups.
constexpr int smem_row_pitch(int row_bytes) {
  const int aligned = (row_bytes + 15) / 16 * 16;
  return aligned % 32 == 0 ? aligned + 16 : aligned;
}

template <int HeadDimK, int HeadDimV, KvType KType, KvType VType>
struct DecodeConfig {
  static constexpr int kDimK = static_cast<int>(stored_dim(KType, HeadDimK));  // turbo rows are padded to 128s
  static constexpr int kDimV = static_cast<int>(stored_dim(VType, HeadDimV));
  static_assert(kDimK % 64 == 0 && kDimV % 32 == 0, "fragment units are 64 (K) and 32 (V) head-dim elements");
  static constexpr bool kRotatedK = kv_traits(KType).rotated;
  static constexpr bool kRotatedV = kv_traits(VType).rotated;

  static constexpr int kWarps = 4;
  static constexpr int kThreads = 32 * kWarps;
  static constexpr int kRowBytesK = static_cast<int>(row_bytes(KType, kDimK));
  static constexpr int kRowBytesV = static_cast<int>(row_bytes(VType, kDimV));
  static constexpr int kPitchK = smem_row_pitch(kRowBytesK);
  static constexpr int kPitchV = smem_row_pitch(kRowBytesV);

  // 16 query vectors per m-tile; two m-tiles where the accumulators still fit the register file.
  static constexpr int kMTiles = (kDimK <= 256 && kDimV <= 256) ? 2 : 1;
  static constexpr int kMaxQvecs = 16 * kMTiles;
  // 64 keys per tile unless a stage would pass 40 KB (wide f16 rows); each warp then takes 8 keys of 32.
  static constexpr int kKeyTile = (kPitchK + kPitchV) * 64 <= 40 * 1024 ? 64 : 32;
  static constexpr int kKeyNTilesPerWarp = kKeyTile / 8 / kWarps;
  static constexpr int kKUnits = kDimK / 64;
  static constexpr int kVUnits = kDimV / 32;
  static constexpr int kKeyGroups = kVUnits >= kWarps ? 1 : kWarps / kVUnits;  // PV: warps that split the keys
  static constexpr int kDimGroups = kWarps / kKeyGroups;
  static constexpr int kUnitsPerWarp = kVUnits / kDimGroups;
  static constexpr int kKSteps = kKeyTile / 16;
  static constexpr int kKStepsPerWarp = kKSteps / kKeyGroups;
  static_assert(kKStepsPerWarp >= 1 && kUnitsPerWarp >= 1);

  // Shared memory: kStages stages of (K tile, V tile), then query, scores, probabilities, row state, offsets.
  // Each tile is followed by 16 bytes that no copy writes: fragment loads read up to 3 bytes past a row, and
  // those bytes must not belong to a tile that cp.async may be filling at the same time.
  static constexpr int kTileSlack = 16;
  static constexpr int kVTileOffset = kKeyTile * kPitchK + kTileSlack;
  static constexpr int kStageBytes = kVTileOffset + kKeyTile * kPitchV + kTileSlack;
  static constexpr int kStages = std::clamp(96 * 1024 / kStageBytes, 2, 4);
  static constexpr int kQPitch = kDimK + 8;        // halves; +16 bytes keeps ldmatrix rows in distinct banks
  static constexpr int kScorePitch = kKeyTile + 4;  // floats
  static constexpr int kPPitch = kKeyTile + 8;      // halves
  static constexpr int kOPitch = kDimV + 4;         // floats (epilogue, aliases the stages)
  static constexpr int kStagesBytes = kStages * kStageBytes;
  static constexpr int kQOffset = (kStagesBytes + 127) / 128 * 128;
  static constexpr int kScoreOffset = kQOffset + kMaxQvecs * kQPitch * 2;
  static constexpr int kPOffset = kScoreOffset + kMaxQvecs * kScorePitch * 4;
  static constexpr int kAlphaOffset = kPOffset + kMaxQvecs * kPPitch * 2;
  static constexpr int kMOffset = kAlphaOffset + kMaxQvecs * 4;
  static constexpr int kLOffset = kMOffset + kMaxQvecs * 4;
  static constexpr int kRowsOffset = (kLOffset + kMaxQvecs * 4 + 15) / 16 * 16;
  static constexpr int kLutOffset = kRowsOffset + kStages * 2 * kKeyTile * 8;
  static constexpr int kSmemBytes = kLutOffset + 2 * 16 * 2;
  static_assert(kMaxQvecs * kDimK * 4 <= kStagesBytes, "the f32 query staging aliases the stages");
  static_assert(kMaxQvecs * kOPitch * 4 <= kStagesBytes, "the output staging aliases the stages");
  static_assert(2 * kKeyTile <= kThreads, "one thread computes each K and V row offset of a tile");
};

/// Per-launch values that are not part of the problem.
struct DecodeLaunch {
  float scale = 1.0f;  // effective_scale(p), folded into the staged query
  int64_t n_qchunks = 1;
  int64_t keys_per_split = 0;
  int64_t seq_begin = 0;  // first sequence of this launch (launches are chunked to fit the grid limit)
  SplitOutput out;
};

template <int HeadDimK, int HeadDimV, KvType KType, KvType VType>
__global__ void __launch_bounds__(128) decode_split_kv_kernel(const AttentionProblem p, const DecodeLaunch launch) {
  using Cfg = DecodeConfig<HeadDimK, HeadDimV, KType, VType>;
  using KFrag = KvFragments<KType>;
  using VFrag = KvFragments<VType>;
  constexpr int T = Cfg::kKeyTile;
  constexpr int S = Cfg::kStages;
  static_assert(k_dims_are_a_permutation<KFrag>(Cfg::kDimK), "K fragment order must cover the head dim once");
  static_assert(v_dims_are_a_permutation<VFrag>(Cfg::kDimV), "V fragment order must cover the head dim once");

  extern __shared__ __align__(128) uint8_t smem[];
  uint8_t* stages = smem;
  __half* q_s = reinterpret_cast<__half*>(smem + Cfg::kQOffset);
  float* score_s = reinterpret_cast<float*>(smem + Cfg::kScoreOffset);
  __half* p_s = reinterpret_cast<__half*>(smem + Cfg::kPOffset);
  float* alpha_s = reinterpret_cast<float*>(smem + Cfg::kAlphaOffset);
  float* m_s = reinterpret_cast<float*>(smem + Cfg::kMOffset);
  float* l_s = reinterpret_cast<float*>(smem + Cfg::kLOffset);
  int64_t* row_offsets = reinterpret_cast<int64_t*>(smem + Cfg::kRowsOffset);  // [stage][K, V][T]
  __half* lut_k = reinterpret_cast<__half*>(smem + Cfg::kLutOffset);
  __half* lut_v = lut_k + 16;

  const int tid = static_cast<int>(threadIdx.x), warp = tid / 32, lane = tid % 32;
  const int g = lane / 4, t = lane % 4;

  // ---- Which (sequence, KV head, split, query chunk) this CTA is; the query chunk varies fastest so that CTAs
  // reading the same K/V bytes run together and share them through L2.
  const int64_t n_splits = launch.out.n_splits;
  int64_t work = blockIdx.x;
  const int64_t qchunk = work % launch.n_qchunks;
  work /= launch.n_qchunks;
  const int64_t split = work % n_splits;
  work /= n_splits;
  const int64_t hkv = work % p.shape.n_head_kv;
  const int64_t s = launch.seq_begin + work / p.shape.n_head_kv;

  const int64_t n_q = p.shape.n_q;
  const int64_t group = p.shape.n_head_q / p.shape.n_head_kv;
  const int64_t qvec0 = qchunk * Cfg::kMaxQvecs;
  const int n_qvecs = static_cast<int>(std::min<int64_t>(Cfg::kMaxQvecs, group * n_q - qvec0));
  if (n_qvecs <= 0) return;  // a plan with more query chunks than needed: nothing to do here
  const int m_tiles = (n_qvecs + 15) / 16;

  int64_t len = p.kv_len != nullptr ? p.kv_len[s] : p.shape.n_kv;
  len = std::min<int64_t>(std::max<int64_t>(len, 0), p.shape.n_kv);  // kv_len is data: never read past the view
  int64_t key_begin = split * launch.keys_per_split;
  const int64_t key_end = std::min(len, key_begin + launch.keys_per_split);
  if (p.options.window > 0) key_begin = std::max(key_begin, len - n_q - p.options.window + 1);
  const int n_tiles = key_begin < key_end ? static_cast<int>((key_end - key_begin + T - 1) / T) : 0;

  // ---- Stage the query: scaled, zero past d_k (turbo padding), rotated for turbo K, then reordered into the
  // head-dim order of K's fragments and rounded to f16.
  {
    float* q_f32 = reinterpret_cast<float*>(stages);
    for (int idx = tid; idx < m_tiles * 16 * Cfg::kDimK; idx += Cfg::kThreads) {
      const int r = idx / Cfg::kDimK, d = idx % Cfg::kDimK;
      float x = 0.0f;
      if (r < n_qvecs && d < HeadDimK) {
        const int64_t v = qvec0 + r, h = hkv * group + v / n_q, i = v % n_q;
        const auto* row = reinterpret_cast<const float*>(reinterpret_cast<const uint8_t*>(p.q.data) +
                                                         s * p.q.stride.seq + h * p.q.stride.head + i * p.q.stride.row);
        x = row[d] * launch.scale;
      }
      q_f32[idx] = x;
    }
    if constexpr (KFrag::kNeedsCentroids) load_centroids_f16(KType, lut_k);
    if constexpr (VFrag::kNeedsCentroids) load_centroids_f16(VType, lut_v);
    __syncthreads();
    if constexpr (Cfg::kRotatedK) {
      rotate_rows_in_smem(q_f32, m_tiles * 16, Cfg::kDimK, Cfg::kDimK, /*inverse=*/false);
      __syncthreads();
    }
    for (int idx = tid; idx < m_tiles * 16 * Cfg::kDimK; idx += Cfg::kThreads) {
      const int r = idx / Cfg::kDimK, slot = idx % Cfg::kDimK;
      const int kstep = slot / 16, kk = slot % 16;
      const int i = 4 * (kstep % 4) + 2 * (kk / 8) + kk % 2;
      const int d = KFrag::k_dim(kstep / 4, (kk % 8) / 2, i);
      q_s[r * Cfg::kQPitch + slot] = __float2half_rn(q_f32[r * Cfg::kDimK + d]);
    }
  }

  // ---- Pipeline prologue. Row offsets of tile X are computed before the barrier that precedes its issue.
  const int width_k = kv_copy_width(p.k, s, hkv, Cfg::kRowBytesK);
  const int width_v = kv_copy_width(p.v, s, hkv, Cfg::kRowBytesV);
  auto compute_offsets = [&](int tile, int slot) {
    const int64_t key0 = key_begin + static_cast<int64_t>(tile) * T;
    int64_t* offs = row_offsets + slot * 2 * T;
    if (tid < T) {
      kv_row_offsets<T>(p.k, s, hkv, key0, key_end, offs, tid);
    } else {
      kv_row_offsets<T>(p.v, s, hkv, key0, key_end, offs + T, tid - T);
    }
  };
  auto issue = [&](int slot) {
    uint8_t* dst_k = stages + slot * Cfg::kStageBytes;
    uint8_t* dst_v = dst_k + Cfg::kVTileOffset;
    const int64_t* offs = row_offsets + slot * 2 * T;
    copy_rows<Cfg::kRowBytesK, Cfg::kPitchK, T, Cfg::kThreads>(dst_k, p.k.data, offs, width_k, tid);
    copy_rows<Cfg::kRowBytesV, Cfg::kPitchV, T, Cfg::kThreads>(dst_v, p.v.data, offs + T, width_v, tid);
  };
#pragma unroll 1
  for (int st = 0; st < S; ++st) {
    if (st < n_tiles) compute_offsets(st, st);
  }
  __syncthreads();  // query staged (the f32 copy in the stages is dead from here), offsets visible
#pragma unroll 1
  for (int st = 0; st < S - 1; ++st) {
    if (st < n_tiles) issue(st);
    ptx::cp_async_commit();
  }

  // ---- Softmax state: thread `tid` serves row tid / rows_tpr; all threads of a row hold the same m and l.
  const int rows = m_tiles * 16;
  const int row_tpr = Cfg::kThreads / rows;  // 8 or 4 threads per row: whole lanes of one warp
  const int my_row = tid / row_tpr, my_sub = tid % row_tpr;
  const bool my_row_valid = my_row < n_qvecs;
  ScoreVariant variant;
  if (my_row_valid) {
    const int64_t v = qvec0 + my_row;
    variant = ScoreVariant::make(p, s, hkv * group + v / n_q, v % n_q, len);
  }
  float m_run = -INFINITY, l_run = 0.0f;

  // PV roles.
  const int dim_group = warp % Cfg::kDimGroups, key_group = warp / Cfg::kDimGroups;
  float acc[Cfg::kMTiles][Cfg::kUnitsPerWarp][4][4];
#pragma unroll
  for (int mt = 0; mt < Cfg::kMTiles; ++mt)
#pragma unroll
    for (int x = 0; x < Cfg::kUnitsPerWarp; ++x)
#pragma unroll
      for (int j = 0; j < 4; ++j)
#pragma unroll
        for (int c = 0; c < 4; ++c) acc[mt][x][j][c] = 0.0f;

  const Centroids cent_k{lut_k}, cent_v{lut_v};

  for (int it = 0; it < n_tiles; ++it) {
    ptx::cp_async_wait<S - 2>();
    __syncthreads();  // tile `it` landed for every thread; the stage consumed last iteration is free
    if (it + S - 1 < n_tiles) issue((it + S - 1) % S);
    ptx::cp_async_commit();

    const uint8_t* tile_k = stages + (it % S) * Cfg::kStageBytes;
    const uint8_t* tile_v = tile_k + Cfg::kVTileOffset;
    const int64_t tile_key0 = key_begin + static_cast<int64_t>(it) * T;

    // 1. S = Q K^T over this warp's keys.
    {
      float sacc[Cfg::kMTiles][Cfg::kKeyNTilesPerWarp][4];
#pragma unroll
      for (int mt = 0; mt < Cfg::kMTiles; ++mt)
#pragma unroll
        for (int nt = 0; nt < Cfg::kKeyNTilesPerWarp; ++nt)
#pragma unroll
          for (int c = 0; c < 4; ++c) sacc[mt][nt][c] = 0.0f;
      const int warp_key0 = warp * (T / Cfg::kWarps);
#pragma unroll 1
      for (int u = 0; u < Cfg::kKUnits; ++u) {
        uint32_t kb[Cfg::kKeyNTilesPerWarp][8];
#pragma unroll
        for (int nt = 0; nt < Cfg::kKeyNTilesPerWarp; ++nt) {
          KFrag::load_k(tile_k, Cfg::kPitchK, warp_key0 + 8 * nt, u, lane, kb[nt], cent_k);
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
            const int col = warp_key0 + 8 * nt + 2 * t;
            float* r0 = score_s + (16 * mt + g) * Cfg::kScorePitch + col;
            float* r1 = r0 + 8 * Cfg::kScorePitch;
            *reinterpret_cast<float2*>(r0) = make_float2(sacc[mt][nt][0], sacc[mt][nt][1]);
            *reinterpret_cast<float2*>(r1) = make_float2(sacc[mt][nt][2], sacc[mt][nt][3]);
          }
        }
      }
    }
    __syncthreads();

    // 2. Online softmax, row-parallel: options, max, probabilities (f16 for the PV MMA), rescale factor.
    {
      float* srow = score_s + my_row * Cfg::kScorePitch;
      __half* prow = p_s + my_row * Cfg::kPPitch;
      float tile_max = -INFINITY;
      for (int j = my_sub; j < T; j += row_tpr) {
        const int64_t key = tile_key0 + j;
        const float x = my_row_valid && key < key_end ? variant(srow[j], key) : -INFINITY;
        srow[j] = x;
        tile_max = fmaxf(tile_max, x);
      }
      for (int off = row_tpr / 2; off > 0; off /= 2) {
        tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, off));
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
      for (int off = row_tpr / 2; off > 0; off /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, off);
      l_run = l_run * alpha + sum;
      m_run = m_new;
      if (my_sub == 0) alpha_s[my_row] = alpha;
    }
    __syncthreads();

    // 3. O = alpha * O + P V over this warp's head-dim slice and key steps.
    {
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
          VFrag::load_v(tile_v, Cfg::kPitchV, 16 * ks, dim_group * Cfg::kUnitsPerWarp + x, lane, vb, cent_v);
#pragma unroll
          for (int mt = 0; mt < Cfg::kMTiles; ++mt) {
            if (mt < m_tiles) {
#pragma unroll
              for (int j = 0; j < 4; ++j) ptx::mma_f16(acc[mt][x][j], pa[mt], vb[j][0], vb[j][1]);
            }
          }
        }
      }
    }
    if (it + S < n_tiles) compute_offsets(it + S, it % S);
  }

  // ---- Epilogue: accumulators -> shared rows in head-dim order, then one warp per row finishes it.
  ptx::cp_async_wait<0>();
  __syncthreads();  // every warp is done with the stages; the output staging aliases them
  float* o_stage = reinterpret_cast<float*>(stages);
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
  if (my_sub == 0) {
    m_s[my_row] = m_run;
    l_s[my_row] = l_run;
  }
  __syncthreads();
  for (int r = warp; r < n_qvecs; r += Cfg::kWarps) {
    const int64_t v = qvec0 + r;
    finish_row(p, o_stage + r * Cfg::kOPitch, Cfg::kDimV, Cfg::kRotatedV, m_s[r], l_s[r], s, hkv * group + v / n_q,
               v % n_q, launch.out, n_splits > 1 ? split : -1);
  }
}

/// What the planner needs to know about an instance: tile, query vectors per CTA, resident CTAs per SM.
template <int HeadDimK, int HeadDimV, KvType KType, KvType VType>
StatusOr<KernelGeometry> decode_geometry() {
  using Cfg = DecodeConfig<HeadDimK, HeadDimV, KType, VType>;
  static const StatusOr<KernelGeometry> geometry = []() -> StatusOr<KernelGeometry> {
    auto kernel = decode_split_kv_kernel<HeadDimK, HeadDimV, KType, VType>;
    KVFLASH_CUDA_RETURN_IF_ERROR(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Cfg::kSmemBytes));
    int resident = 0;
    KVFLASH_CUDA_RETURN_IF_ERROR(
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&resident, kernel, Cfg::kThreads, Cfg::kSmemBytes));
    if (resident < 1) {
      return backend_error("decode kernel d_k = " + std::to_string(HeadDimK) + ", d_v = " + std::to_string(HeadDimV) +
                           " needs " + std::to_string(Cfg::kSmemBytes) + " bytes of shared memory: no CTA fits an SM");
    }
    return KernelGeometry{Cfg::kKeyTile, Cfg::kMaxQvecs, resident};
  }();
  return geometry;
}

/// Runs the split-KV decode of `p` (device pointers) with the split plan `plan`; `workspace` holds
/// split_workspace(p.shape, kDimV, plan.n_splits).total_bytes bytes (may be null for a single split).
template <int HeadDimK, int HeadDimV, KvType KType, KvType VType>
Status launch_decode(const AttentionProblem& p, const SplitPlan& plan, void* workspace, cudaStream_t stream) {
  using Cfg = DecodeConfig<HeadDimK, HeadDimV, KType, VType>;
  const StatusOr<KernelGeometry> geometry = decode_geometry<HeadDimK, HeadDimV, KType, VType>();
  KVFLASH_RETURN_IF_ERROR(geometry.status());
  if (plan.keys_per_split <= 0 || plan.keys_per_split % Cfg::kKeyTile != 0 || plan.n_splits < 1 ||
      plan.n_qchunks * Cfg::kMaxQvecs < group_qvecs(p.shape)) {
    return invalid_argument("decode split plan (n_splits = " + std::to_string(plan.n_splits) + ", keys_per_split = " +
                            std::to_string(plan.keys_per_split) + ", n_qchunks = " + std::to_string(plan.n_qchunks) +
                            ") does not fit the kernel (key tile " + std::to_string(Cfg::kKeyTile) +
                            ", query vectors per CTA " + std::to_string(Cfg::kMaxQvecs) + ")");
  }
  DecodeLaunch launch;
  launch.scale = static_cast<float>(effective_scale(p));
  launch.n_qchunks = plan.n_qchunks;
  launch.keys_per_split = plan.keys_per_split;
  if (plan.n_splits > 1 && workspace == nullptr) {
    return invalid_argument("workspace is null but the decode plan has several splits");
  }
  launch.out = split_output(p.shape, Cfg::kDimV, plan.n_splits, workspace);
  const int64_t ctas_per_seq = p.shape.n_head_kv * plan.n_qchunks * plan.n_splits;
  const int64_t seqs_per_launch = std::max<int64_t>(1, INT_MAX / ctas_per_seq);
  for (int64_t s0 = 0; s0 < p.shape.n_seq; s0 += seqs_per_launch) {
    launch.seq_begin = s0;
    const int64_t ctas = std::min(seqs_per_launch, p.shape.n_seq - s0) * ctas_per_seq;
    decode_split_kv_kernel<HeadDimK, HeadDimV, KType, VType>
        <<<static_cast<unsigned>(ctas), Cfg::kThreads, Cfg::kSmemBytes, stream>>>(p, launch);
    KVFLASH_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  }
  if (plan.n_splits > 1) {
    KVFLASH_RETURN_IF_ERROR(launch_combine(p, Cfg::kDimV, Cfg::kRotatedV, launch.out, stream));
  }
  return Status::Ok();
}

}  // namespace kvflash::cuda
