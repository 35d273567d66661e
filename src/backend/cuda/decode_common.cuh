// What the two split-KV decode kernels (decode_narrow.cuh for d_v <= 128, decode_wide.cuh above) share: the work
// item of a CTA, the shared-memory geometry of a K/V tile, the cp.async tile pipeline, and the query staging.
#pragma once

#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>

#include "backend/cuda/kv_fragments.cuh"
#include "backend/cuda/kv_tile_copy.cuh"
#include "backend/cuda/split_plan.h"
#include "backend/cuda/turbo_centroids.cuh"
#include "backend/cuda/turbo_rotation.cuh"
#include "kvflash/attention_problem.h"

namespace kvflash::cuda {

/// Per-launch values that are not part of the problem.
struct DecodeLaunch {
  float scale = 1.0f;  // effective_scale(p), folded into the staged query
  int64_t n_qchunks = 1;
  int64_t keys_per_split = 0;
  int64_t seq_begin = 0;  // first sequence of this launch (launches are chunked to fit the grid limit)
  SplitOutput out;
};

/// Shared-memory row pitch for stored rows: 16-byte aligned (cp.async), and an odd multiple of 16 so that the 8
/// rows a fragment load touches start in different bank groups.
constexpr int smem_row_pitch(int row_bytes) {
  const int aligned = (row_bytes + 15) / 16 * 16;
  return aligned % 32 == 0 ? aligned + 16 : aligned;
}

/// Shared-memory layout of the K/V tiles of one instance: KeyTile rows of K then of V per stage, Stages deep.
template <int HeadDimK, int HeadDimV, KvType KType, KvType VType, int KeyTile, int Stages>
struct KvTileGeometry {
  static constexpr int kDimK = static_cast<int>(stored_dim(KType, HeadDimK));  // turbo rows are padded to 128s
  static constexpr int kDimV = static_cast<int>(stored_dim(VType, HeadDimV));
  static constexpr int kRowBytesK = static_cast<int>(row_bytes(KType, kDimK));
  static constexpr int kRowBytesV = static_cast<int>(row_bytes(VType, kDimV));
  static constexpr int kPitchK = smem_row_pitch(kRowBytesK);
  static constexpr int kPitchV = smem_row_pitch(kRowBytesV);
  // Each tile is followed by 16 bytes that no copy writes: fragment loads read up to 3 bytes past a row, and
  // those bytes must not belong to a tile that cp.async may be filling at the same time.
  static constexpr int kTileSlack = 16;
  static constexpr int kVTileOffset = KeyTile * kPitchK + kTileSlack;
  static constexpr int kStageBytes = kVTileOffset + KeyTile * kPitchV + kTileSlack;
  static constexpr int kStagesBytes = Stages * kStageBytes;
  static constexpr int kOffsetsBytes = Stages * 2 * KeyTile * 8;  // int64 row offsets [stage][K, V][KeyTile]
};

/// Bytes of one stage for a tile of `tile` keys (for choosing the tile and the depth at compile time).
constexpr int kv_stage_bytes(KvType kt, int dk, KvType vt, int dv, int tile) {
  return tile * (smem_row_pitch(static_cast<int>(head_row_bytes(kt, dk))) +
                 smem_row_pitch(static_cast<int>(head_row_bytes(vt, dv)))) +
         32;
}

/// The (sequence, KV head, split, query chunk) of this CTA and the keys it reads.
struct DecodeWork {
  int64_t s = 0, hkv = 0, split = 0, group = 1;
  int64_t qvec0 = 0;  // first query vector (query head in group x row) of the chunk
  int n_qvecs = 0;
  int64_t len = 0;  // the sequence's keys (kv_len, clamped to the view)
  int64_t key_begin = 0, key_end = 0;
  int n_tiles = 0;

  __device__ int64_t head_of(int r) const { return hkv * group + (qvec0 + r) / n_q_; }
  __device__ int64_t row_of(int r) const { return (qvec0 + r) % n_q_; }
  int64_t n_q_ = 1;
};

/// The query chunk varies fastest in blockIdx.x so that CTAs reading the same K/V bytes run together and share
/// them through L2.
__device__ inline DecodeWork decode_work(const AttentionProblem& p, const DecodeLaunch& launch, int max_qvecs,
                                         int key_tile) {
  DecodeWork w;
  int64_t work = blockIdx.x;
  const int64_t qchunk = work % launch.n_qchunks;
  work /= launch.n_qchunks;
  w.split = work % launch.out.n_splits;
  work /= launch.out.n_splits;
  w.hkv = work % p.shape.n_head_kv;
  w.s = launch.seq_begin + work / p.shape.n_head_kv;
  w.n_q_ = p.shape.n_q;
  w.group = p.shape.n_head_q / p.shape.n_head_kv;
  w.qvec0 = qchunk * max_qvecs;
  w.n_qvecs = static_cast<int>(std::min<int64_t>(max_qvecs, w.group * p.shape.n_q - w.qvec0));
  int64_t len = p.kv_len != nullptr ? p.kv_len[w.s] : p.shape.n_kv;
  w.len = std::min<int64_t>(std::max<int64_t>(len, 0), p.shape.n_kv);  // kv_len is data: never read past the view
  w.key_begin = w.split * launch.keys_per_split;
  w.key_end = std::min(w.len, w.key_begin + launch.keys_per_split);
  // Keys before every row's window are skipped whole (the first row of the step has the earliest window).
  if (p.options.window > 0) w.key_begin = std::max(w.key_begin, w.len - p.shape.n_q - p.options.window + 1);
  w.n_tiles = w.key_begin < w.key_end ? static_cast<int>((w.key_end - w.key_begin + key_tile - 1) / key_tile) : 0;
  return w;
}

/// Stages the CTA's query vectors into q_s (f16, `rows` rows of DimK + pad): scaled, zero past HeadDimK (turbo
/// padding) and for rows past n_qvecs, rotated for turbo K, reordered into the head-dim order of K's fragments.
/// `q_f32` is scratch for rows * DimK floats. Call from all threads; ends with a barrier.
template <class KFrag, int HeadDimK, int DimK, bool RotatedK, int Threads>
__device__ inline void stage_query(const AttentionProblem& p, const DecodeWork& w, float scale, float* q_f32,
                                   __half* q_s, int q_pitch, int rows) {
  const int tid = static_cast<int>(threadIdx.x);
  for (int r = tid / 32; r < rows; r += Threads / 32) {  // one warp per row: the row's address once
    const float* src = nullptr;
    if (r < w.n_qvecs) {
      src = reinterpret_cast<const float*>(reinterpret_cast<const uint8_t*>(p.q.data) + w.s * p.q.stride.seq +
                                           w.head_of(r) * p.q.stride.head + w.row_of(r) * p.q.stride.row);
    }
    for (int d = tid % 32; d < DimK; d += 32) q_f32[r * DimK + d] = src != nullptr && d < HeadDimK ? src[d] * scale : 0.0f;
  }
  __syncthreads();
  if constexpr (RotatedK) {
    rotate_rows_in_smem(q_f32, rows, DimK, DimK, /*inverse=*/false);
    __syncthreads();
  }
  for (int idx = tid; idx < rows * DimK; idx += Threads) {
    const int r = idx / DimK, slot = idx % DimK;
    const int kstep = slot / 16, kk = slot % 16;
    const int i = 4 * (kstep % 4) + 2 * (kk / 8) + kk % 2;
    q_s[r * q_pitch + slot] = __float2half_rn(q_f32[r * DimK + KFrag::k_dim(kstep / 4, (kk % 8) / 2, i)]);
  }
  __syncthreads();
}

/// The cp.async pipeline over a CTA's key tiles. Row offsets of a tile are computed (one thread per row) before
/// the barrier that precedes its issue; stage `slot` of `stages` receives the tile.
template <class Geo, int KeyTile, int Threads>
struct KvPipeline {
  static_assert(2 * KeyTile <= Threads, "one thread computes each K and V row offset of a tile");
  const AttentionProblem& p;
  const DecodeWork& w;
  uint8_t* stages;
  int64_t* offsets;
  int width_k, width_v;

  __device__ KvPipeline(const AttentionProblem& p_, const DecodeWork& w_, uint8_t* stages_, int64_t* offsets_)
      : p(p_), w(w_), stages(stages_), offsets(offsets_) {
    width_k = kv_copy_width(p.k, w.s, w.hkv, Geo::kRowBytesK);
    width_v = kv_copy_width(p.v, w.s, w.hkv, Geo::kRowBytesV);
  }

  __device__ void compute_offsets(int tile, int slot) const {
    const int tid = static_cast<int>(threadIdx.x);
    const int64_t key0 = w.key_begin + static_cast<int64_t>(tile) * KeyTile;
    int64_t* offs = offsets + slot * 2 * KeyTile;
    if (tid < KeyTile) {
      kv_row_offsets<KeyTile>(p.k, w.s, w.hkv, key0, w.key_end, offs, tid);
    } else {
      kv_row_offsets<KeyTile>(p.v, w.s, w.hkv, key0, w.key_end, offs + KeyTile, tid - KeyTile);
    }
  }

  __device__ void issue(int slot) const {
    const int tid = static_cast<int>(threadIdx.x);
    uint8_t* dst_k = stages + slot * Geo::kStageBytes;
    const int64_t* offs = offsets + slot * 2 * KeyTile;
    copy_rows<Geo::kRowBytesK, Geo::kPitchK, KeyTile, Threads>(dst_k, p.k.data, offs, width_k, tid);
    copy_rows<Geo::kRowBytesV, Geo::kPitchV, KeyTile, Threads>(dst_k + Geo::kVTileOffset, p.v.data,
                                                                offs + KeyTile, width_v, tid);
  }

  __device__ const uint8_t* k_tile(int slot) const { return stages + slot * Geo::kStageBytes; }
  __device__ const uint8_t* v_tile(int slot) const { return stages + slot * Geo::kStageBytes + Geo::kVTileOffset; }
};

}  // namespace kvflash::cuda
