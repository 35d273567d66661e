#include "plan/cost_model.h"

#include <algorithm>
#include <cmath>

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

/// The tensor-core prefill rows: a CTA per `cta_qvecs` query vectors of a KV head reads that head's K/V once and
/// runs the MMAs of whole tiles at `flops_per_us` (causal halves both). The bytes are counted at the decode rows'
/// rate (this kernel's streaming rate at decode shapes is unmeasured), so with the padded MMAs of a CTA holding a
/// few vectors a decode-sized problem (n_q <= 16) never costs less here than on the split-KV decode rows, which
/// also fill the GPU over keys: a launch under one CTA per SM pays for the idle SMs.
double prefill_cost_us(const AttentionProblem& p, const BackendCaps& caps, const Work& w, double cta_qvecs,
                       double flops_per_us) {
  const AttentionShape& s = p.shape;
  const double qvecs = static_cast<double>(s.n_head_q / s.n_head_kv * s.n_q);
  const double passes = std::ceil(qvecs / cta_qvecs);
  const double padding = qvecs > 0.0 ? passes * cta_qvecs / qvecs : 1.0;
  const double ctas = static_cast<double>(s.n_seq * s.n_head_kv) * passes;
  const double fill = std::min(1.0, ctas / std::max(1, caps.sm_count));
  const double visible = p.options.causal ? 0.5 : 1.0;
  const double bytes_us = visible * passes * w.kv_bytes / (0.5 * caps.memory_bandwidth_gbps * 1e3);
  const double mma_us = visible * padding * w.flops / flops_per_us;
  return 10.0 + std::max(bytes_us, mma_us) / fill;
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
    case CostModel::cuda_prefill:
      // One CTA (8 warps, one CTA per SM) per 128 query vectors of a KV head (64 above d_v 128), its MMAs at
      // ~230 TFLOP/s on an H100 (measured, bench/prefill_notes.md p4).
      return prefill_cost_us(p, caps, w, stored_dim(p.v.type, p.shape.d_v) <= 128 ? 128.0 : 64.0, 230e6);
    case CostModel::cuda_prefill_wgmma:
      // Two warpgroups per CTA, 128 query vectors; ~290-300 TFLOP/s on an H100 for f16, ~205 for q4_0 (measured,
      // bench/prefill_notes.md w1, w2). The row order, not this rate, is what makes the router prefer it over the
      // mma.sync rows (kernel_table.h).
      return prefill_cost_us(p, caps, w, 128.0, 295e6);
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
