// Split-KV decode for V head dims up to 128 (stored): every warp runs its own flash-attention pass.
//
// A CTA (4 warps) owns up to 8 x QvecTiles query vectors (query head x query row) of one KV head and one key range:
// QvecTiles n8 tiles of the MMAs, each K / V fragment loaded and dequantized once and multiplied into every tile,
// so that 16 query vectors (4 rows x GQA 4) make one pass over the KV bytes instead of two CTAs. Tiles of 64 (or,
// for formats with small rows, 128) stored K and V rows stream into shared memory through a cp.async pipeline;
// each warp takes one (or two) groups of 16 keys of every tile and, for them alone:
//   S^T = K Q^T (m16n8k16: a group's 16 keys are the m, the query vectors the n, so no MMA row is padding; K fragments
//   dequantized in registers without their block scale, which is applied per (key, block) to the f32 scores),
//   the score options and an online softmax on the accumulators (one query vector per column),
//   O^T += V^T P^T: movmatrix turns the (key, query) accumulators of P into the B fragment of P^T, multiplied by
//   V's block scale per key; V's fragments (laid out along the keys) are the A operand, so a 16 x 128 output needs
//   32 accumulator registers and half the MMAs of O += P V.
// The only barrier per tile is the pipeline's. At the end the four warps' (max, sum, O) are merged in shared
// memory and each row is finished (sinks, turbo V rotated back, strides) or written as a split partial.
#pragma once

#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>

#include "backend/cuda/decode_common.cuh"
#include "backend/cuda/kv_fragments_unscaled.cuh"
#include "backend/cuda/output_rows.cuh"
#include "backend/cuda/ptx.cuh"
#include "backend/cuda/score_variant.cuh"

namespace kvflash::cuda {

template <int HeadDimK, int HeadDimV, KvType KType, KvType VType, int QvecTiles>
struct NarrowDecodeConfig {
  static_assert(QvecTiles == 1 || QvecTiles == 2, "8 or 16 query vectors per CTA (split_plan.h's kNarrowQvecs*)");
  static constexpr int kWarps = 4;
  static constexpr int kThreads = 32 * kWarps;
  static constexpr int kQvecTiles = QvecTiles;  // n8 tiles of both MMAs
  static constexpr int kMaxQvecs = 8 * QvecTiles;
  // The tile and the pipeline depth are the planner's, one rule for both (split_plan.h's decode_geometry(): 64-key
  // tiles in 3+ stages, or for small rows 128-key tiles in 2). Each warp takes kKeyGroups groups of 16 keys (one
  // k-step of the PV MMA each) of every tile.
  static constexpr DecodeGeometry kPlanned = decode_geometry(KType, HeadDimK, VType, HeadDimV, kMaxQvecs);
  static constexpr int kKeyTile = kPlanned.key_tile;
  static constexpr int kWarpKeys = kKeyTile / kWarps;
  static constexpr int kKeyGroups = kWarpKeys / 16;
  static_assert(kKeyGroups * 16 * kWarps == kKeyTile, "whole 16-key groups per warp");
  static constexpr int kStages = kPlanned.stages;
  using Geo = KvTileGeometry<HeadDimK, HeadDimV, KType, VType, kKeyTile, kStages>;
  static constexpr int kDimK = Geo::kDimK;
  static constexpr int kDimV = Geo::kDimV;
  static_assert(kDimK % 64 == 0 && kDimV % 32 == 0 && kDimV <= 128);
  static constexpr int kKUnits = kDimK / 64;
  static constexpr int kVUnits = kDimV / 32;
  static constexpr int kOMTiles = kDimV / 16;  // m-tiles of O^T
  // Staged query rows: the kMaxQvecs query vectors, then as many rows for their fragments packed per lane
  // (decode_geometry() counts 2 x qvecs_per_cta).
  static constexpr int kQRows = 2 * kMaxQvecs;
  static constexpr int kQPitch = kDimK + 8;    // halves; +16 bytes spreads the rows over the banks

  static constexpr int kQOffset = Geo::kStagesBytes;
  static constexpr int kVariantOffset = kQOffset + kQRows * kQPitch * 2;
  static constexpr int kOffsetsOffset = (kVariantOffset + kMaxQvecs * static_cast<int>(sizeof(ScoreVariant)) + 15) /
                                        16 * 16;
  static constexpr int kLutOffset = kOffsetsOffset + Geo::kOffsetsBytes;
  static constexpr int kSmemBytes = kLutOffset + 2 * 16 * 2;
  // Epilogue, over the dead stages: per-warp O [warps][Q][kDimV], per-warp max and sum [warps][Q], row max and sum.
  static constexpr int kEpilogueBytes = kWarps * kMaxQvecs * (kDimV + 2) * 4 + 2 * kMaxQvecs * 4;
  static_assert(kEpilogueBytes <= Geo::kStagesBytes && kQRows * kDimK * 4 <= Geo::kStagesBytes);
};

template <int HeadDimK, int HeadDimV, KvType KType, KvType VType, int QvecTiles>
__global__ void __launch_bounds__(128, decode_geometry(KType, HeadDimK, VType, HeadDimV, 8 * QvecTiles)
                                           .max_ctas_by_registers)
    decode_narrow_kernel(const AttentionProblem p, const DecodeLaunch launch) {
  using Cfg = NarrowDecodeConfig<HeadDimK, HeadDimV, KType, VType, QvecTiles>;
  constexpr int NT = Cfg::kQvecTiles;
  constexpr int KG = Cfg::kKeyGroups;
  using Geo = typename Cfg::Geo;
  using KFrag = KvUnscaledFragments<KType>;
  using VFrag = KvUnscaledFragments<VType>;
  constexpr int T = Cfg::kKeyTile;
  constexpr int S = Cfg::kStages;
  static_assert(k_dims_are_a_permutation<KFrag>(Cfg::kDimK), "K fragment order must cover the head dim once");
  static_assert(v_dims_are_a_permutation<VFrag>(Cfg::kDimV), "V fragment order must cover the head dim once");
  static_assert((KType != KvType::q8_0 && KType != KvType::q4_0) ||
                    (Geo::kRowBytesK % 4 == 0 && Geo::kPitchK % 4 == 0 && Geo::kStageBytes % 4 == 0),
                "K rows start 4-byte aligned in shared memory (kv_fragments_unscaled.cuh's q8_0 / q4_0 loaders)");
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
  pipe.template compute_first_offsets<S>();
  // The first tiles' copies go out before the query is staged, so that the staging overlaps their latency (every
  // CTA of a long decode starts in the same wave: the bytes would otherwise wait for the prologue), where the
  // query's f32 scratch fits the last stage, which no copy fills before the loop's first barrier. Decided at
  // compile time: a run-time choice inlines the whole issue code twice (q8_0: 2,500 more instructions), and gating
  // it on the page table changed no paged step (H100, 2026-11-23).
  constexpr bool kEarlyIssue = Cfg::kMaxQvecs * Cfg::kDimK * 4 <= Geo::kStageBytes;
  if constexpr (kEarlyIssue) {
    __syncthreads();  // the offsets
    pipe.template issue_first<S>();
  }
  if constexpr (KFrag::kNeedsCentroids) load_centroids_f16(KType, lut_k);
  if constexpr (VFrag::kNeedsCentroids) load_centroids_f16(VType, lut_v);
  if (tid < w.n_qvecs) variants[tid] = ScoreVariant::make(p, w.s, w.head_of(tid), w.row_of(tid), w.len);
  stage_query<KFrag, HeadDimK, Cfg::kDimK, kv_traits(KType).rotated, Cfg::kThreads>(
      p, w, launch.scale, reinterpret_cast<float*>(stages + (kEarlyIssue ? (S - 1) * Geo::kStageBytes : 0)), q_s,
      Cfg::kQPitch, Cfg::kMaxQvecs);
  if constexpr (!kEarlyIssue) pipe.template issue_first<S>();

  // S^T = K Q^T per warp: the 16 keys are the m of the MMA (rows g and g + 8 of this thread), the query vectors
  // its n (n-tile j: columns 8j + 2t, 8j + 2t + 1), so no MMA row is padding. The accumulator is laid out by (key,
  // query vector); one movmatrix per 8 keys turns P into the B operand of O^T = V^T P^T, laid out by (query
  // vector, key). Q^T's B fragments are the same every tile: k-step ks of n-tile j is q_s row 8j + g, elements
  // 16ks + 2t (+1) and 16ks + 8 + 2t (+1).
  constexpr int kKSteps = Cfg::kDimK / 16;
  // Up to 128 dims, the fragments are re-laid by (n-tile, k-step pair, lane) into the q_s rows past the query
  // vectors, so that a warp reads two k-steps of an n-tile with one conflict-free 16-byte load per lane.
  constexpr bool kQPacked = kKSteps <= 8;
  static_assert(NT <= Cfg::kWarps, "one warp packs each n-tile");
  static_assert(!kQPacked || (NT * (kKSteps / 2) * 32 * 16 <= Cfg::kMaxQvecs * Cfg::kQPitch * 2 &&
                               (Cfg::kQOffset + Cfg::kMaxQvecs * Cfg::kQPitch * 2) % 16 == 0),
                "packed Q must fit the q_s rows past the query vectors, 16-byte aligned");
  const __half* q_row = q_s + g * Cfg::kQPitch + 2 * t;  // n-tile j: + 8j rows
  uint4* q_packed = reinterpret_cast<uint4*>(q_s + Cfg::kMaxQvecs * Cfg::kQPitch);
  if constexpr (kQPacked) {
    if (warp < NT) {  // warp j packs n-tile j
      const __half* row = q_row + 8 * warp * Cfg::kQPitch;
#pragma unroll
      for (int j = 0; j < kKSteps / 2; ++j) {
        const auto* q = reinterpret_cast<const uint32_t*>(row + 32 * j);
        q_packed[(warp * (kKSteps / 2) + j) * 32 + lane] = make_uint4(q[0], q[4], q[8], q[12]);  // halves 0, 8, 16, 24
      }
    }
    // Read after the first tile's barrier.
  }
  // Keys below plain_end need no per-score call (decode_common.cuh's plain_keys_end): without options all keys,
  // with causal alone all but the last n_q - 1 of the sequence.
  const int64_t plain_end = plain_keys_end(p, w);
  // Running max and this thread's part of the row sum (its keys g, g + 8) of query vectors 8j + 2t, 8j + 2t + 1.
  float m_run[NT][2], l_run[NT][2];
#pragma unroll
  for (int j = 0; j < NT; ++j) {
    m_run[j][0] = m_run[j][1] = -INFINITY;
    l_run[j][0] = l_run[j][1] = 0.0f;
  }
  constexpr float kLog2e = 1.4426950408889634f;
  float o[NT][Cfg::kOMTiles][4];  // O^T of n-tile j
#pragma unroll
  for (int j = 0; j < NT; ++j) {
#pragma unroll
    for (int n = 0; n < Cfg::kOMTiles; ++n) o[j][n][0] = o[j][n][1] = o[j][n][2] = o[j][n][3] = 0.0f;
  }
  const Centroids cent_k{lut_k}, cent_v{lut_v};

  for (int it = 0; it < w.n_tiles; ++it) {
    ptx::cp_async_wait<S - 2>();
    __syncthreads();  // tile `it` landed for every thread; the stage consumed last iteration is free
    if (it + S - 1 < w.n_tiles) pipe.issue(it + S - 1, (it + S - 1) % S);
    ptx::cp_async_commit();
    const uint8_t* tile_k = pipe.k_tile(it % S);
    const uint8_t* tile_v = pipe.v_tile(it % S);
    const int warp_key0 = warp * Cfg::kWarpKeys;  // group kg: keys warp_key0 + 16 kg ..
    const int64_t key0 = w.key_begin + static_cast<int64_t>(it) * T + warp_key0;
    const int keys_left = static_cast<int>(std::min<int64_t>(w.key_end - key0, Cfg::kWarpKeys));

    // sc[kg][j]: (key g, qvec 8j + 2t), (g, 8j + 2t + 1), (g + 8, 8j + 2t), (g + 8, 8j + 2t + 1) of group kg.
    // acc[kg]: one scale block's scores (scaled types); a turbo block spans two K units, so each group keeps its own.
    float sc[KG][NT][4], acc[KG][NT][4];
#pragma unroll
    for (int kg = 0; kg < KG; ++kg) {
#pragma unroll
      for (int j = 0; j < NT; ++j) sc[kg][j][0] = sc[kg][j][1] = sc[kg][j][2] = sc[kg][j][3] = 0.0f;
    }
    uint4 q_pair[NT];
#pragma unroll(Cfg::kKUnits <= 2 ? 2 : 1)
    for (int u = 0; u < Cfg::kKUnits; ++u) {
#pragma unroll
      for (int kg = 0; kg < KG; ++kg) {
        const int group_key0 = warp_key0 + 16 * kg;
        uint32_t k_lo[8], k_hi[8];  // B fragments of keys g and g + 8: the rows of the A fragment
        KFrag::load_k(tile_k, pipe.pitch_k, group_key0, u, lane, k_lo, cent_k);
        KFrag::load_k(tile_k, pipe.pitch_k, group_key0 + 8, u, lane, k_hi, cent_k);
#pragma unroll
        for (int c = 0; c < 4; ++c) {
          const int ks = 4 * u + c;
          const uint32_t a[4] = {k_lo[2 * c], k_hi[2 * c], k_lo[2 * c + 1], k_hi[2 * c + 1]};
          constexpr int P = KFrag::kKStepsPerScale;
#pragma unroll
          for (int j = 0; j < NT; ++j) {  // the same dequantized K fragment for every n-tile
            uint32_t q0, q1;
            if constexpr (kQPacked) {
              if (c % 2 == 0) q_pair[j] = q_packed[(j * (kKSteps / 2) + ks / 2) * 32 + lane];
              q0 = c % 2 == 0 ? q_pair[j].x : q_pair[j].z;
              q1 = c % 2 == 0 ? q_pair[j].y : q_pair[j].w;
            } else {
              q0 = *reinterpret_cast<const uint32_t*>(q_row + 8 * j * Cfg::kQPitch + 16 * ks);
              q1 = *reinterpret_cast<const uint32_t*>(q_row + 8 * j * Cfg::kQPitch + 16 * ks + 8);
            }
            if constexpr (!KFrag::kHasScale) {
              ptx::mma_f16(sc[kg][j], a, q0, q1);
            } else {
              if (ks % P == 0) acc[kg][j][0] = acc[kg][j][1] = acc[kg][j][2] = acc[kg][j][3] = 0.0f;
              ptx::mma_f16(acc[kg][j], a, q0, q1);
            }
          }
          if constexpr (KFrag::kHasScale) {
            if (ks % P == P - 1) {
              const float d0 = KFrag::k_scale(tile_k, pipe.pitch_k, group_key0 + g, ks / P);
              const float d1 = KFrag::k_scale(tile_k, pipe.pitch_k, group_key0 + 8 + g, ks / P);
#pragma unroll
              for (int j = 0; j < NT; ++j) {
                sc[kg][j][0] = fmaf(d0, acc[kg][j][0], sc[kg][j][0]);
                sc[kg][j][1] = fmaf(d0, acc[kg][j][1], sc[kg][j][1]);
                sc[kg][j][2] = fmaf(d1, acc[kg][j][2], sc[kg][j][2]);
                sc[kg][j][3] = fmaf(d1, acc[kg][j][3], sc[kg][j][3]);
              }
            }
          }
        }
      }
    }

    // Options and the online softmax of query vectors 8j + 2t and 8j + 2t + 1 over the warp's keys. On plain
    // keys the columns of query vectors past n_qvecs are left as they are: their Q rows are zeros, so their scores
    // are finite, and no valid column reads them (the MMAs keep columns apart; the epilogue reads valid rows only).
    float (&x)[KG][NT][4] = sc;
    if (key0 + Cfg::kWarpKeys > plain_end) {  // warp-uniform: a warp's keys share key0
#pragma unroll
      for (int kg = 0; kg < KG; ++kg) {
#pragma unroll
        for (int j = 0; j < NT; ++j) {
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int k = 16 * kg + g + 8 * (e / 2), qv = 8 * j + 2 * t + e % 2;
            x[kg][j][e] = qv < w.n_qvecs && k < keys_left ? variants[qv](x[kg][j][e], key0 + k) : -INFINITY;
          }
        }
      }
    } else if (keys_left < Cfg::kWarpKeys) {  // a split's last tile (warp-uniform)
#pragma unroll
      for (int kg = 0; kg < KG; ++kg) {
#pragma unroll
        for (int j = 0; j < NT; ++j) {
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            if (16 * kg + g + 8 * (e / 2) >= keys_left) x[kg][j][e] = -INFINITY;
          }
        }
      }
    }
    float alpha[NT][2];
    bool rescale = false;
#pragma unroll
    for (int j = 0; j < NT; ++j) {
      float mx[2] = {fmaxf(x[0][j][0], x[0][j][2]), fmaxf(x[0][j][1], x[0][j][3])};
#pragma unroll
      for (int kg = 1; kg < KG; ++kg) {
        mx[0] = fmaxf(mx[0], fmaxf(x[kg][j][0], x[kg][j][2]));
        mx[1] = fmaxf(mx[1], fmaxf(x[kg][j][1], x[kg][j][3]));
      }
      float m_log2[2];
#pragma unroll
      for (int c = 0; c < 2; ++c) {
        mx[c] = fmaxf(mx[c], __shfl_xor_sync(0xffffffffu, mx[c], 4));
        mx[c] = fmaxf(mx[c], __shfl_xor_sync(0xffffffffu, mx[c], 8));
        mx[c] = fmaxf(mx[c], __shfl_xor_sync(0xffffffffu, mx[c], 16));
        const float m_new = fmaxf(m_run[j][c], mx[c]);
        // exp(x - m) = 2^(x log2 e - m log2 e): one FFMA and one ex2 per score; a row that has seen no key yet
        // keeps m = -inf, whose scores are -inf too (2^-inf = 0), so its offset is taken as 0 rather than -inf.
        m_log2[c] = m_new == -INFINITY ? 0.0f : m_new * kLog2e;
        alpha[j][c] = ptx::exp2_ftz(fmaf(m_run[j][c], kLog2e, -m_log2[c]));
        m_run[j][c] = m_new;
        rescale = rescale || alpha[j][c] != 1.0f;
      }
      float row_sum[2] = {0.0f, 0.0f};
#pragma unroll
      for (int kg = 0; kg < KG; ++kg) {
#pragma unroll
        for (int e = 0; e < 4; ++e) x[kg][j][e] = ptx::exp2_ftz(fmaf(x[kg][j][e], kLog2e, -m_log2[e % 2]));
        row_sum[0] += x[kg][j][0] + x[kg][j][2];
        row_sum[1] += x[kg][j][1] + x[kg][j][3];
      }
      l_run[j][0] = l_run[j][0] * alpha[j][0] + row_sum[0];
      l_run[j][1] = l_run[j][1] * alpha[j][1] + row_sum[1];
    }
    // O^T's columns 2t, 2t + 1 of n-tile j are this thread's query vectors: their factors are at hand.
    if (__any_sync(0xffffffffu, rescale)) {
#pragma unroll
      for (int j = 0; j < NT; ++j) {
#pragma unroll
        for (int n = 0; n < Cfg::kOMTiles; ++n) {
          o[j][n][0] *= alpha[j][0];
          o[j][n][1] *= alpha[j][1];
          o[j][n][2] *= alpha[j][0];
          o[j][n][3] *= alpha[j][1];
        }
      }
    }
    // P^T as the B operand (k = key, n = query vector 8j + g): keys 2t, 2t + 1 and 8 + 2t, 9 + 2t of each group.
    uint32_t pb0[KG][NT], pb1[KG][NT];
#pragma unroll
    for (int kg = 0; kg < KG; ++kg) {
#pragma unroll
      for (int j = 0; j < NT; ++j) {
        pb0[kg][j] = ptx::movmatrix_trans(ptx::as_u32(__floats2half2_rn(x[kg][j][0], x[kg][j][1])));
        pb1[kg][j] = ptx::movmatrix_trans(ptx::as_u32(__floats2half2_rn(x[kg][j][2], x[kg][j][3])));
      }
    }
#pragma unroll
    for (int vu = 0; vu < Cfg::kVUnits; ++vu) {
#pragma unroll
      for (int kg = 0; kg < KG; ++kg) {
        uint32_t vb[4][2];
        __half2 v_scale[2];
        VFrag::load_v(tile_v, pipe.pitch_v, warp_key0 + 16 * kg, vu, lane, vb, cent_v, v_scale);
        // V's B fragments of n-tiles (2h, 2h + 1) are the A fragment of O^T's m-tile 2vu + h: rows g / g + 8 are
        // head-dim elements v_dim(vu, g, 2h) / v_dim(vu, g, 2h + 1). The same dequantized V feeds every n-tile.
#pragma unroll
        for (int j = 0; j < NT; ++j) {
          uint32_t p0 = pb0[kg][j], p1 = pb1[kg][j];
          if constexpr (VFrag::kHasScale) {
            p0 = ptx::as_u32(__hmul2(ptx::as_half2(pb0[kg][j]), v_scale[0]));
            p1 = ptx::as_u32(__hmul2(ptx::as_half2(pb1[kg][j]), v_scale[1]));
          }
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const uint32_t a[4] = {vb[2 * h][0], vb[2 * h + 1][0], vb[2 * h][1], vb[2 * h + 1][1]};
            ptx::mma_f16(o[j][2 * vu + h], a, p0, p1);
          }
        }
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
#pragma unroll
  for (int j = 0; j < NT; ++j) {
#pragma unroll
    for (int c = 0; c < 2; ++c) {
      l_run[j][c] += __shfl_xor_sync(0xffffffffu, l_run[j][c], 4);
      l_run[j][c] += __shfl_xor_sync(0xffffffffu, l_run[j][c], 8);
      l_run[j][c] += __shfl_xor_sync(0xffffffffu, l_run[j][c], 16);
    }
  }
  float* mine = o_w + warp * Q * Cfg::kDimV;
#pragma unroll
  for (int j = 0; j < NT; ++j) {
    const int qv = 8 * j + 2 * t;  // this thread's query vectors qv, qv + 1
#pragma unroll
    for (int vu = 0; vu < Cfg::kVUnits; ++vu) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int d0 = VFrag::v_dim(vu, g, 2 * h), d1 = VFrag::v_dim(vu, g, 2 * h + 1);
        constexpr float kW0 = VFrag::v_tile_weight(0), kW1 = VFrag::v_tile_weight(1);
        const float wt = h == 0 ? kW0 : kW1;
        mine[qv * Cfg::kDimV + d0] = o[j][2 * vu + h][0] * wt;
        mine[(qv + 1) * Cfg::kDimV + d0] = o[j][2 * vu + h][1] * wt;
        mine[qv * Cfg::kDimV + d1] = o[j][2 * vu + h][2] * wt;
        mine[(qv + 1) * Cfg::kDimV + d1] = o[j][2 * vu + h][3] * wt;
      }
    }
    if (g == 0) {
      m_w[warp * Q + qv] = m_run[j][0];
      m_w[warp * Q + qv + 1] = m_run[j][1];
      l_w[warp * Q + qv] = l_run[j][0];
      l_w[warp * Q + qv + 1] = l_run[j][1];
    }
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
