// The generic CUDA kernel: any valid problem (every KvType pair, any head dims up to kMaxHeadDim, any n_q), so that
// routing on the GPU is total. It trades speed for reach: K/V tiles are dequantized to f32 in shared memory with
// the per-value accessors of format/blocks.h (the same definitions the reference uses), scores and the weighted
// sum are plain f32 FMAs. It shares the split layout, the score variant, finish_row and the combine kernel with
// the tensor-core decode kernel.
#include "backend/cuda/generic_attention.h"

#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "backend/cuda/combine.h"
#include "backend/cuda/cuda_status.h"
#include "backend/cuda/grid_launch.cuh"
#include "backend/cuda/output_rows.cuh"
#include "backend/cuda/score_variant.cuh"
#include "backend/cuda/split_plan.h"
#include "backend/cuda/turbo_centroids.cuh"
#include "backend/cuda/turbo_rotation.cuh"
#include "format/blocks.h"

namespace kvflash::cuda {
namespace {

constexpr int kThreads = 128;
constexpr int kQvecs = kGenericQvecsPerCta;  // query vectors per CTA (the planner counts CTAs with it)
constexpr int kKeys = 16;                  // keys per tile: kQvecs * kKeys = kThreads scores
constexpr int kDimsPerThread = kMaxHeadDim / kThreads;  // output elements a thread accumulates per query vector

struct GenericLaunch {
  float scale = 1.0f;
  int dk_stored = 0, dv_stored = 0;
  bool k_rotated = false, v_rotated = false;  // turbo K / V (device code never reads the host type table)
  int64_t n_qchunks = 1;
  int64_t keys_per_split = 0;
  int64_t seq_begin = 0;
  SplitOutput out;
};

struct SmemLayout {
  int q_pitch, k_pitch, v_pitch;
  size_t q, k, v, p, alpha, m, l, bytes;
};

__host__ __device__ SmemLayout smem_layout(int dk_stored, int dv_stored) {
  SmemLayout s{};
  s.q_pitch = dk_stored + 1;  // +1: the 16 keys of a score step read one column in 16 different banks
  s.k_pitch = dk_stored + 1;
  s.v_pitch = dv_stored;
  s.q = 0;
  s.k = s.q + sizeof(float) * kQvecs * s.q_pitch;
  s.v = s.k + sizeof(float) * kKeys * s.k_pitch;
  s.p = s.v + sizeof(float) * kKeys * s.v_pitch;
  s.alpha = s.p + sizeof(float) * kQvecs * kKeys;
  s.m = s.alpha + sizeof(float) * kQvecs;
  s.l = s.m + sizeof(float) * kQvecs;
  s.bytes = s.l + sizeof(float) * kQvecs;
  return s;
}

/// Value e of a stored row (stored domain: turbo values stay rotated), through the blocks.h accessors.
__device__ float stored_value(KvType type, const uint8_t* row, int e) {
  using namespace format;
  switch (type) {
    case KvType::f32: return reinterpret_cast<const float*>(row)[e];
    case KvType::f16: return half_bits_to_float(reinterpret_cast<const uint16_t*>(row)[e]);
    case KvType::bf16: return bf16_bits_to_float(reinterpret_cast<const uint16_t*>(row)[e]);
    case KvType::q8_0: return dequant_value(reinterpret_cast<const BlockQ8_0*>(row)[e / 32], e % 32);
    case KvType::q4_0: return dequant_value(reinterpret_cast<const BlockQ4_0*>(row)[e / 32], e % 32);
    case KvType::q4_1: return dequant_value(reinterpret_cast<const BlockQ4_1*>(row)[e / 32], e % 32);
    case KvType::q5_0: return dequant_value(reinterpret_cast<const BlockQ5_0*>(row)[e / 32], e % 32);
    case KvType::q5_1: return dequant_value(reinterpret_cast<const BlockQ5_1*>(row)[e / 32], e % 32);
    case KvType::turbo2:
      return dequant_value(reinterpret_cast<const BlockTurbo2*>(row)[e / 128], e % 128, c_turbo2_centroids.v);
    case KvType::turbo3:
      return dequant_value(reinterpret_cast<const BlockTurbo3*>(row)[e / 128], e % 128, c_turbo3_centroids.v);
    case KvType::turbo4:
      return dequant_value(reinterpret_cast<const BlockTurbo4*>(row)[e / 128], e % 128, c_turbo4_centroids.v);
  }
  return 0.0f;
}

/// Dequantizes keys key0 .. key0 + kKeys - 1 of a view into `dst` (zeros past key_end).
__device__ void load_tile(const KvView& view, int64_t s, int64_t h, int64_t key0, int64_t key_end, int dim,
                          float* dst, int pitch) {
  const auto* base = static_cast<const uint8_t*>(view.data);
  for (int idx = static_cast<int>(threadIdx.x); idx < kKeys * dim; idx += kThreads) {
    const int r = idx / dim, e = idx % dim;
    const int64_t key = key0 + r;
    dst[r * pitch + e] = key < key_end ? stored_value(view.type, base + kv_row_offset(view, s, h, key), e) : 0.0f;
  }
}

__global__ void __launch_bounds__(kThreads) generic_attention_kernel(const AttentionProblem p, GenericLaunch launch) {
  extern __shared__ __align__(16) uint8_t smem[];
  const SmemLayout lay = smem_layout(launch.dk_stored, launch.dv_stored);
  float* q_s = reinterpret_cast<float*>(smem + lay.q);
  float* k_s = reinterpret_cast<float*>(smem + lay.k);
  float* v_s = reinterpret_cast<float*>(smem + lay.v);
  float* p_s = reinterpret_cast<float*>(smem + lay.p);
  float* alpha_s = reinterpret_cast<float*>(smem + lay.alpha);
  float* m_s = reinterpret_cast<float*>(smem + lay.m);
  float* l_s = reinterpret_cast<float*>(smem + lay.l);
  const int tid = static_cast<int>(threadIdx.x), warp = tid / 32;
  const int dks = launch.dk_stored, dvs = launch.dv_stored;

  int64_t work = blockIdx.x;
  const int64_t qchunk = work % launch.n_qchunks;
  work /= launch.n_qchunks;
  const int64_t split = work % launch.out.n_splits;
  work /= launch.out.n_splits;
  const int64_t hkv = work % p.shape.n_head_kv;
  const int64_t s = launch.seq_begin + work / p.shape.n_head_kv;

  const int64_t n_q = p.shape.n_q, group = p.shape.n_head_q / p.shape.n_head_kv;
  const int64_t qvec0 = qchunk * kQvecs;
  const int n_qvecs = static_cast<int>(std::min<int64_t>(kQvecs, group * n_q - qvec0));
  if (n_qvecs <= 0) return;

  int64_t len = p.kv_len != nullptr ? p.kv_len[s] : p.shape.n_kv;
  len = std::min<int64_t>(std::max<int64_t>(len, 0), p.shape.n_kv);
  // Rows of this chunk: consecutive query vectors, so consecutive rows of one head unless the chunk wraps.
  const int64_t row_first = qvec0 % n_q;
  const bool wraps = row_first + n_qvecs > n_q;
  const int64_t row_min = wraps ? 0 : row_first, row_max = wraps ? n_q - 1 : row_first + n_qvecs - 1;
  int64_t key_begin = split * launch.keys_per_split;
  int64_t key_end = std::min(len, key_begin + launch.keys_per_split);
  if (p.options.causal) key_end = std::min(key_end, len - n_q + row_max + 1);
  if (p.options.window > 0) key_begin = std::max(key_begin, len - n_q + row_min - p.options.window + 1);

  // Query: scaled, zero past d_k, rotated for turbo K.
  for (int idx = tid; idx < kQvecs * dks; idx += kThreads) {
    const int r = idx / dks, d = idx % dks;
    float x = 0.0f;
    if (r < n_qvecs && d < p.shape.d_k) {
      const int64_t v = qvec0 + r, h = hkv * group + v / n_q, i = v % n_q;
      x = query_row(p, s, h, i)[d] * launch.scale;
    }
    q_s[r * lay.q_pitch + d] = x;
  }
  __syncthreads();
  if (launch.k_rotated) {
    rotate_rows_in_smem(q_s, kQvecs, lay.q_pitch, dks, /*inverse=*/false);
    __syncthreads();
  }

  // Score role: query vector tid / kKeys against key tid % kKeys; its row's 16 lanes reduce together.
  const int my_q = tid / kKeys, my_key = tid % kKeys;
  ScoreVariant variant;
  if (my_q < n_qvecs) {
    const int64_t v = qvec0 + my_q;
    variant = ScoreVariant::make(p, s, hkv * group + v / n_q, v % n_q, len);
  }
  float m_run = -INFINITY, l_run = 0.0f;
  float acc[kQvecs][kDimsPerThread];
#pragma unroll
  for (int q = 0; q < kQvecs; ++q)
#pragma unroll
    for (int e = 0; e < kDimsPerThread; ++e) acc[q][e] = 0.0f;

  for (int64_t key0 = key_begin; key0 < key_end; key0 += kKeys) {
    load_tile(p.k, s, hkv, key0, key_end, dks, k_s, lay.k_pitch);
    load_tile(p.v, s, hkv, key0, key_end, dvs, v_s, lay.v_pitch);
    __syncthreads();

    const int64_t key = key0 + my_key;
    float x = -INFINITY;
    if (my_q < n_qvecs && key < key_end) {
      const float* qr = q_s + my_q * lay.q_pitch;
      const float* kr = k_s + my_key * lay.k_pitch;
      float dot = 0.0f;
      for (int d = 0; d < dks; ++d) dot = fmaf(qr[d], kr[d], dot);
      x = variant(dot, key);
    }
    float tile_max = x;
    for (int off = kKeys / 2; off > 0; off /= 2) tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, off));
    const float m_new = fmaxf(m_run, tile_max);
    const float alpha = m_new == -INFINITY ? 1.0f : __expf(m_run - m_new);
    const float pj = x == -INFINITY ? 0.0f : __expf(x - m_new);
    float sum = pj;
    for (int off = kKeys / 2; off > 0; off /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, off);
    l_run = l_run * alpha + sum;
    m_run = m_new;
    p_s[my_q * kKeys + my_key] = pj;
    if (my_key == 0) alpha_s[my_q] = alpha;
    __syncthreads();

#pragma unroll
    for (int e = 0; e < kDimsPerThread; ++e) {
      const int d = tid + kThreads * e;
      if (d < dvs) {
#pragma unroll
        for (int q = 0; q < kQvecs; ++q) {
          float a = acc[q][e] * alpha_s[q];
          for (int j = 0; j < kKeys; ++j) a = fmaf(p_s[q * kKeys + j], v_s[j * lay.v_pitch + d], a);
          acc[q][e] = a;
        }
      }
    }
    __syncthreads();  // the next tile overwrites k_s, v_s, p_s
  }

  // Epilogue: numerators to shared rows (over the dead K/V tiles), one warp per row finishes it.
  float* o_stage = k_s;
#pragma unroll
  for (int e = 0; e < kDimsPerThread; ++e) {
    const int d = tid + kThreads * e;
    if (d < dvs) {
#pragma unroll
      for (int q = 0; q < kQvecs; ++q) o_stage[q * dvs + d] = acc[q][e];
    }
  }
  if (my_key == 0) {
    m_s[my_q] = m_run;
    l_s[my_q] = l_run;
  }
  __syncthreads();
  for (int r = warp; r < n_qvecs; r += kThreads / 32) {
    const int64_t v = qvec0 + r;
    finish_row(p, o_stage + r * dvs, dvs, launch.v_rotated, m_s[r], l_s[r], s, hkv * group + v / n_q, v % n_q, launch.out,
               launch.out.n_splits > 1 ? split : -1);
  }
}

size_t smem_bytes(const AttentionShape& shape, KvType kt, KvType vt) {
  return smem_layout(static_cast<int>(stored_dim(kt, shape.d_k)), static_cast<int>(stored_dim(vt, shape.d_v))).bytes;
}

}  // namespace

Status launch_generic(const AttentionProblem& p, const Route& route, void* workspace, cudaStream_t stream) {
  // The largest layout's shared memory, allowed once; smaller head dims use less.
  static const Status prepared =
      cuda_status(cudaFuncSetAttribute(generic_attention_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(smem_layout(kMaxHeadDim, kMaxHeadDim).bytes)),
                  "cudaFuncSetAttribute(generic_attention_kernel)");
  KVFLASH_RETURN_IF_ERROR(prepared);
  const SplitPlan plan = split_plan_of(route, p.shape, kKeys, kQvecs);
  if (plan.keys_per_split <= 0 || plan.keys_per_split % kKeys != 0 ||
      plan.n_splits * plan.keys_per_split < p.shape.n_kv) {
    return invalid_argument("route with n_splits = " + std::to_string(plan.n_splits) + ", keys_per_split = " +
                            std::to_string(plan.keys_per_split) + " does not fit the generic kernel (key tile " +
                            std::to_string(kKeys) + ", n_kv = " + std::to_string(p.shape.n_kv) + ")");
  }
  GenericLaunch launch;
  launch.scale = static_cast<float>(effective_scale(p));
  launch.dk_stored = static_cast<int>(stored_dim(p.k.type, p.shape.d_k));
  launch.dv_stored = static_cast<int>(stored_dim(p.v.type, p.shape.d_v));
  launch.k_rotated = kv_traits(p.k.type).rotated;
  launch.v_rotated = kv_traits(p.v.type).rotated;
  launch.n_qchunks = plan.n_qchunks;
  launch.keys_per_split = plan.keys_per_split;
  launch.out = split_output_of(route, p.shape, launch.dv_stored, workspace);
  if (plan.n_splits > 1 && (workspace == nullptr || launch.out.o_pitch < p.shape.d_v)) {
    return invalid_argument("route's workspace has no room for the partials of " + std::to_string(plan.n_splits) +
                            " splits");
  }
  const size_t bytes = smem_bytes(p.shape, p.k.type, p.v.type);
  KVFLASH_RETURN_IF_ERROR(launch_over_sequences(generic_attention_kernel, p, launch,
                                                p.shape.n_head_kv * plan.n_qchunks * plan.n_splits, kThreads, bytes,
                                                stream));
  if (plan.n_splits > 1) {
    KVFLASH_RETURN_IF_ERROR(launch_combine(p, launch.dv_stored, launch.v_rotated, launch.out, stream));
  }
  return Status::Ok();
}

}  // namespace kvflash::cuda
