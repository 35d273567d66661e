#include "plan/cost_model.h"

#include <algorithm>
#include <cmath>

#include "backend/cuda/split_plan.h"

namespace kvflash::plan {

Work work_of(const AttentionProblem& p) {
  const AttentionShape& s = p.shape;
  const double rows = static_cast<double>(s.n_seq) * static_cast<double>(s.n_head_kv) * static_cast<double>(s.n_kv);
  Work w;
  w.kv_bytes = rows * static_cast<double>(head_row_bytes(p.k.type, s.d_k) + head_row_bytes(p.v.type, s.d_v));
  w.flops = 2.0 * static_cast<double>(s.n_seq) * static_cast<double>(s.n_head_q) * static_cast<double>(s.n_q) *
            static_cast<double>(s.n_kv) * static_cast<double>(s.d_k + s.d_v);
  return w;
}

namespace {

/// The tensor-core prefill rows: one CTA (one per SM) per `cta_qvecs` query vectors of a KV head and key split
/// reads that head's K/V once and runs the MMAs of whole tiles at `flops_per_us`. The bytes are counted at the
/// decode rows' rate (this kernel's streaming rate at decode shapes is unmeasured), so a decode-sized problem
/// (n_q <= 16: one pass, padded MMAs, plus the combine of its splits) never costs less here than on the split-KV
/// decode rows. A launch under one CTA per SM pays for the idle SMs; split keys (n_splits) multiply the CTAs and add
/// the combine, a second launch that reads and writes the partial rows.
double prefill_cost_us(const AttentionProblem& p, const BackendCaps& caps, const Work& w, int64_t n_splits,
                       double cta_qvecs, double flops_per_us) {
  const AttentionShape& s = p.shape;
  const double qvecs = static_cast<double>(s.n_head_q / s.n_head_kv * s.n_q);
  const double passes = std::ceil(qvecs / cta_qvecs);
  const double padding = qvecs > 0.0 ? passes * cta_qvecs / qvecs : 1.0;
  const double splits = static_cast<double>(std::max<int64_t>(1, n_splits));
  const double ctas = static_cast<double>(s.n_seq * s.n_head_kv) * passes * splits;
  const double resident = static_cast<double>(std::max(1, caps.sm_count * cuda::kPrefillCtasPerSm));
  const double fill = std::min(1.0, ctas / resident);
  // Bottom-right causal: row i of n_q sees n_kv - n_q + i + 1 keys, so a square prefill reads half the keys and a
  // short chunk at depth nearly all of them.
  const double n_kv = static_cast<double>(std::max<int64_t>(1, s.n_kv));
  const double visible =
      p.options.causal ? std::clamp((n_kv - 0.5 * static_cast<double>(s.n_q - 1)) / n_kv, 0.0, 1.0) : 1.0;
  // The CTAs of one KV head that run at the same time share its K/V through L2 (Nsight: 92-99% L2 hits for a 512-row
  // chunk at 32K), so DRAM serves the bytes once per wave of CTAs, at most once per pass.
  const double dram_passes = std::min(passes, std::ceil(ctas / resident));
  const double bytes_us = visible * dram_passes * w.kv_bytes / (0.5 * caps.memory_bandwidth_gbps * 1e3);
  const double mma_us = visible * padding * w.flops / flops_per_us;
  const double partial_bytes = splits > 1.0 ? 2.0 * splits * static_cast<double>(s.n_seq * s.n_head_q * s.n_q) *
                                                  static_cast<double>(s.d_v + 2) * 4.0
                                            : 0.0;
  const double combine_us = splits > 1.0 ? 5.0 + partial_bytes / (0.5 * caps.memory_bandwidth_gbps * 1e3) : 0.0;
  return 10.0 + std::max(bytes_us, mma_us) / fill + combine_us;
}

}  // namespace

double estimate_cost_us(const KernelSpec& spec, const AttentionProblem& p, const BackendCaps& caps,
                        const Route& route) {
  (void)route;
  const Work w = work_of(p);
  switch (spec.cost) {
    case CostModel::reference:
      // Scalar float64 with a dequantization per element it reads: about 0.5 GFLOP/s on one core.
      return 1.0 + w.flops / 500.0;
    case CostModel::cuda_decode:
      // Measured on an H100 (bench/README.md): the K/V bytes at 50-90% of the bandwidth depending on the type,
      // plus the split kernel's and the combine's launches.
      return 10.0 + w.kv_bytes / (0.5 * caps.memory_bandwidth_gbps * 1e3);
    case CostModel::cuda_generic: {
      // K/V read once per 8 query vectors of a KV head, f32 FMAs from shared memory at a few TFLOP/s.
      const AttentionShape& s = p.shape;
      const double passes = std::ceil(static_cast<double>(s.n_head_q / s.n_head_kv * s.n_q) / 8.0);
      return 20.0 + passes * w.kv_bytes / (0.5 * caps.memory_bandwidth_gbps * 1e3) + w.flops / 2e6;
    }
    case CostModel::cuda_prefill: {
      // One CTA (8 warps) per 128 query vectors (64 above d_v 128) and key split, its MMAs at the rate measured on an
      // H100 for 512 rows at 32K-131K (bench/prefill_notes.md, session 6): f16 220-228 TFLOP/s; a quantized cache,
      // dequantized into the fragments, 152-169.
      const bool f16 = p.k.type == KvType::f16 && p.v.type == KvType::f16;
      return prefill_cost_us(p, caps, w, route.n_splits, cuda::prefill_qvecs_per_cta(p.v.type, p.shape.d_v),
                             f16 ? 230e6 : 160e6);
    }
    case CostModel::cuda_prefill_wgmma:
      // Two warpgroups per CTA, 128 query vectors, never split; on an H100 for 512 rows at 32K-131K (measured,
      // bench/prefill_notes.md, sessions 7 and 8): f16 391-412 TFLOP/s, q4_0 328-347. Where the mma.sync row splits
      // the keys of a short chunk to fill the SMs, that row estimates less and is taken.
      return prefill_cost_us(p, caps, w, 1, 128.0, p.k.type == KvType::f16 ? 400e6 : 335e6);
    case CostModel::cuda_prefill_wgmma_ws:
      // The warp-specialized kernel as measured on an H100 (bench/prefill_notes.md, sessions 7-9, 512 rows at
      // 32K-131K): f16 525-545, q8_0 360-380, q4_0 424-450, turbo3 310-325, turbo4 330-350 TFLOP/s (the mma.sync
      // rows: 150-170): it takes all of them.
      return prefill_cost_us(p, caps, w, 1, 128.0,
                             p.k.type == KvType::f16    ? 530e6
                             : p.k.type == KvType::q8_0 ? 370e6
                             : p.k.type == KvType::q4_0 ? 430e6
                                                        : 310e6);
    case CostModel::cpu_tiles: {
      // Bytes at the caps' bandwidth against multiply-adds at ~25 GFLOP/s per thread (AVX2 with the dequantization
      // in the loop), plus a pass over the partial outputs per extra split and a fixed ~20 us to wake the pool.
      const double threads = std::max(1, route.workers);
      const double stream_us = w.kv_bytes / (std::max(caps.memory_bandwidth_gbps, 1.0) * 1e3);
      const double compute_us = w.flops / (threads * 25e3);
      const AttentionShape& s = p.shape;
      const double combine_us = route.n_splits > 1 ? static_cast<double>(route.n_splits) * static_cast<double>(
                                                         s.n_seq * s.n_head_q * s.n_q * s.d_v) / 1e3
                                                   : 0.0;
      return 20.0 + std::max(stream_us, compute_us) + combine_us;
    }
  }
  return w.flops;
}

}  // namespace kvflash::plan
