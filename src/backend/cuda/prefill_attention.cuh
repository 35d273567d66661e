// Tensor-core prefill (n_q > 16): a FlashAttention-2-style pass over stored K/V, one CTA per tile of query vectors.
//
// A CTA (4 warps) owns 64 query vectors of one (sequence, KV head): the GQA group's query heads are folded into the
// M dimension row-major (vector r = query row * group + head in group), so every K/V tile read from memory serves
// the whole group and a CTA spans only 64 / group query rows, which keeps the causal key range of a CTA short.
// Each warp owns 16 of the vectors and, per tile of stored K/V rows (cp.async pipeline shared with the decode
// kernel, decode_common.cuh):
//   S = Q K^T  with m16n8k16 MMAs, K fragments dequantized in registers from the stored blocks (kv_fragments.cuh);
//   the score options (score_variant.cuh) and the online softmax on the accumulators, in registers;
//   O += P V  where P's accumulators are re-packed as the A operand directly (no shared-memory round trip).
// No dequantized K/V ever leaves registers; no split-KV (the query tiles fill the GPU), so no workspace.
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
  static constexpr int kQvecs = 16 * kWarps;  // one m-tile per warp
  static constexpr int kDimKStored = static_cast<int>(stored_dim(KType, HeadDimK));
  static constexpr int kDimVStored = static_cast<int>(stored_dim(VType, HeadDimV));
  // 64 keys per tile (8 score n-tiles, 32 accumulators) up to d_v 128; above, 32 keys so that the 128 output
  // accumulators of a 256-wide V and the scores still fit 255 registers.
  static constexpr int kKeyTile = kDimVStored <= 128 ? 64 : 32;
  static constexpr int kStageBytesEstimate = kv_stage_bytes(KType, HeadDimK, VType, HeadDimV, kKeyTile);
  // About 96 KB of stages keeps two CTAs (8 warps) resident per SM with 2-3 tiles in flight each.
  static constexpr int kStages = std::clamp(96 * 1024 / kStageBytesEstimate, 2, 3);
  using Geo = KvTileGeometry<HeadDimK, HeadDimV, KType, VType, kKeyTile, kStages>;
  static constexpr int kDimK = Geo::kDimK;
  static constexpr int kDimV = Geo::kDimV;
  static_assert(kDimK % 64 == 0 && kDimV % 32 == 0 && kDimV <= 256);
  static constexpr int kKUnits = kDimK / 64;
  static constexpr int kVUnits = kDimV / 32;
  static constexpr int kScoreNTiles = kKeyTile / 8;
  static constexpr int kKeySteps = kKeyTile / 16;
  static constexpr int kQPitch = kDimK + 8;  // halves; +16 bytes keeps ldmatrix rows in distinct banks

  // The stage region also holds the f32 query before staging and the f32 output rows after the loop.
  static constexpr int kQStagingBytes = kQvecs * kDimK * 4;
  static constexpr int kEpilogueBytes = kQvecs * (kDimV + 2) * 4;
  static constexpr int kRegionBytes =
      (std::max({Geo::kStagesBytes, kQStagingBytes, kEpilogueBytes}) + 127) / 128 * 128;
  static constexpr int kQOffset = kRegionBytes;
  static constexpr int kVariantOffset = kQOffset + kQvecs * kQPitch * 2;
  static constexpr int kOffsetsOffset =
      (kVariantOffset + kQvecs * static_cast<int>(sizeof(ScoreVariant)) + 15) / 16 * 16;
  static constexpr int kLutOffset = kOffsetsOffset + Geo::kOffsetsBytes;
  static constexpr int kSmemBytes = kLutOffset + 2 * 16 * 2;
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

template <int HeadDimK, int HeadDimV, KvType KType, KvType VType>
__global__ void __launch_bounds__(128, 2) prefill_kernel(const AttentionProblem p, const PrefillLaunch launch) {
  using Cfg = PrefillConfig<HeadDimK, HeadDimV, KType, VType>;
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
  stage_prefill_query<KFrag, HeadDimK, Cfg::kDimK, kv_traits(KType).rotated, Cfg::kThreads, Cfg::kQvecs>(
      p, w, launch.scale, reinterpret_cast<float*>(stages), q_s, Cfg::kQPitch);
#pragma unroll 1
  for (int st = 0; st < S - 1; ++st) {
    if (st < keys.n_tiles) pipe.issue(st, st);
    ptx::cp_async_commit();
  }

  // This thread's rows: r0 = 16 * warp + g and r1 = r0 + 8 of the CTA's vectors.
  const int r0 = 16 * warp + g, r1 = r0 + 8;
  const bool valid0 = r0 < w.n_qvecs, valid1 = r1 < w.n_qvecs;
  const int warp_rows = std::min(16, w.n_qvecs - 16 * warp);  // <= 0: the warp only helps with the copies
  // The warp's last position: a tile starting after it is hidden from all of the warp's rows by causal masking.
  const int64_t warp_last_pos =
      warp_rows > 0 ? w.len - p.shape.n_q + w.row_of(16 * warp + warp_rows - 1) : INT64_MIN;
  // Without a mask, window, softcap or ALiBi a score needs at most the causal test, done here on positions in
  // registers; the ScoreVariant (in shared memory) serves every other combination.
  const bool causal_only = p.mask.data == nullptr && p.options.window == 0 && p.options.softcap == 0.0 &&
                           p.options.alibi_max_bias == 0.0;
  const bool causal = p.options.causal;
  const int64_t pos_base = w.len - p.shape.n_q;
  const int64_t pos0 = pos_base + w.row_of(r0), pos1 = pos_base + w.row_of(r1);
  const int64_t warp_first_pos = pos_base + w.row_of(16 * warp);
  float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.0f, 0.0f};  // l: this thread's part of the row sums
  float acc[Cfg::kVUnits][4][4];
#pragma unroll
  for (int vu = 0; vu < Cfg::kVUnits; ++vu)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[vu][j][0] = acc[vu][j][1] = acc[vu][j][2] = acc[vu][j][3] = 0.0f;
  const Centroids cent_k{lut_k}, cent_v{lut_v};
  const __half* q_warp = q_s + (16 * warp + lane % 8 + 8 * ((lane / 8) % 2)) * Cfg::kQPitch + 8 * (lane / 16);

  for (int it = 0; it < keys.n_tiles; ++it) {
    ptx::cp_async_wait<S - 2>();
    __syncthreads();  // tile `it` landed for every thread; the stage consumed last iteration is free
    if (it + S - 1 < keys.n_tiles) pipe.issue(it + S - 1, (it + S - 1) % S);
    ptx::cp_async_commit();
    const int64_t tile_key0 = keys.key_begin + static_cast<int64_t>(it) * T;
    const bool warp_busy = warp_rows > 0 && !(p.options.causal && tile_key0 > warp_last_pos);
    if (warp_busy) {
      const uint8_t* tile_k = pipe.k_tile(it % S);
      const uint8_t* tile_v = pipe.v_tile(it % S);

      // S = Q K^T over the tile's keys.
      float sc[Cfg::kScoreNTiles][4];
#pragma unroll
      for (int nt = 0; nt < Cfg::kScoreNTiles; ++nt) sc[nt][0] = sc[nt][1] = sc[nt][2] = sc[nt][3] = 0.0f;
#pragma unroll
      for (int u = 0; u < Cfg::kKUnits; ++u) {
        uint32_t qa[4][4];
#pragma unroll
        for (int c = 0; c < 4; ++c) ptx::ldmatrix_x4(qa[c], q_warp + 16 * (4 * u + c));
#pragma unroll
        for (int nt = 0; nt < Cfg::kScoreNTiles; ++nt) {
          uint32_t kb[8];
          KFrag::load_k(tile_k, pipe.pitch_k, 8 * nt, u, lane, kb, cent_k);
#pragma unroll
          for (int c = 0; c < 4; ++c) ptx::mma_f16(sc[nt], qa[c], kb[2 * c], kb[2 * c + 1]);
        }
      }

      // Options, masking of keys past the range, and the online softmax of rows r0 (elements 0, 1) and r1 (2, 3).
      const bool tail = tile_key0 + T > keys.key_end;
      if (causal_only) {
        // Tiles wholly below the diagonal of every row of the warp (most of them at depth) need no test at all.
        const bool clean = !tail && valid0 && valid1 && (!causal || tile_key0 + T - 1 <= warp_first_pos);
        if (!clean) {
          const int64_t limit0 = valid0 ? (causal ? std::min(pos0 + 1, keys.key_end) : keys.key_end) : INT64_MIN;
          const int64_t limit1 = valid1 ? (causal ? std::min(pos1 + 1, keys.key_end) : keys.key_end) : INT64_MIN;
#pragma unroll
          for (int nt = 0; nt < Cfg::kScoreNTiles; ++nt)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
              const int64_t key = tile_key0 + 8 * nt + 2 * t + (e % 2);
              if (key >= (e < 2 ? limit0 : limit1)) sc[nt][e] = -INFINITY;
            }
        }
      } else {
#pragma unroll
        for (int nt = 0; nt < Cfg::kScoreNTiles; ++nt)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int64_t key = tile_key0 + 8 * nt + 2 * t + (e % 2);
            const bool row_valid = e < 2 ? valid0 : valid1;
            if (!row_valid || key >= keys.key_end) {
              sc[nt][e] = -INFINITY;
            } else {
              sc[nt][e] = variants[e < 2 ? r0 : r1](sc[nt][e], key);
            }
          }
      }
      float alpha[2];
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        float mx = -INFINITY;
#pragma unroll
        for (int nt = 0; nt < Cfg::kScoreNTiles; ++nt) mx = fmaxf(mx, fmaxf(sc[nt][2 * h], sc[nt][2 * h + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float m_new = fmaxf(m_run[h], mx);
        alpha[h] = m_new == -INFINITY ? 1.0f : __expf(m_run[h] - m_new);
        m_run[h] = m_new;
        float sum = 0.0f;
#pragma unroll
        for (int nt = 0; nt < Cfg::kScoreNTiles; ++nt)
#pragma unroll
          for (int e = 2 * h; e < 2 * h + 2; ++e) {
            sc[nt][e] = sc[nt][e] == -INFINITY ? 0.0f : __expf(sc[nt][e] - m_new);
            sum += sc[nt][e];
          }
        l_run[h] = l_run[h] * alpha[h] + sum;
      }
#pragma unroll
      for (int vu = 0; vu < Cfg::kVUnits; ++vu)
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          acc[vu][j][0] *= alpha[0];
          acc[vu][j][1] *= alpha[0];
          acc[vu][j][2] *= alpha[1];
          acc[vu][j][3] *= alpha[1];
        }

      // O += P V: the accumulators of score n-tiles 2ks, 2ks + 1 are the A fragment of key step ks.
#pragma unroll
      for (int ks = 0; ks < Cfg::kKeySteps; ++ks) {
        const uint32_t pa[4] = {ptx::as_u32(__floats2half2_rn(sc[2 * ks][0], sc[2 * ks][1])),
                                ptx::as_u32(__floats2half2_rn(sc[2 * ks][2], sc[2 * ks][3])),
                                ptx::as_u32(__floats2half2_rn(sc[2 * ks + 1][0], sc[2 * ks + 1][1])),
                                ptx::as_u32(__floats2half2_rn(sc[2 * ks + 1][2], sc[2 * ks + 1][3]))};
#pragma unroll
        for (int vu = 0; vu < Cfg::kVUnits; ++vu) {
          uint32_t vb[4][2];
          VFrag::load_v(tile_v, pipe.pitch_v, 16 * ks, vu, lane, vb, cent_v);
#pragma unroll
          for (int j = 0; j < 4; ++j) ptx::mma_f16(acc[vu][j], pa, vb[j][0], vb[j][1]);
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
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    l_run[h] += __shfl_xor_sync(0xffffffffu, l_run[h], 1);
    l_run[h] += __shfl_xor_sync(0xffffffffu, l_run[h], 2);
  }
  if (warp_rows > 0) {
#pragma unroll
    for (int vu = 0; vu < Cfg::kVUnits; ++vu)
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int d0 = VFrag::v_dim(vu, 2 * t, j), d1 = VFrag::v_dim(vu, 2 * t + 1, j);
        float* o0 = o_rows + r0 * Cfg::kDimV;
        float* o1 = o_rows + r1 * Cfg::kDimV;
        o0[d0] = acc[vu][j][0];
        o0[d1] = acc[vu][j][1];
        o1[d0] = acc[vu][j][2];
        o1[d1] = acc[vu][j][3];
      }
    if (t == 0) {
      m_rows[r0] = m_run[0];
      l_rows[r0] = l_run[0];
      m_rows[r1] = m_run[1];
      l_rows[r1] = l_run[1];
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
