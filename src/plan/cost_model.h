// Cost estimates that let plan_route() prefer a specialized kernel over its backend's generic one. They only need
// to order the candidates of one backend correctly; they are not a performance prediction to report.
#pragma once

#include "kvflash/attention_problem.h"
#include "kvflash/route.h"
#include "plan/kernel_table.h"

namespace kvflash::plan {

/// What a problem costs any kernel: bytes of K/V it must read and the multiply-adds of QK^T and PV.
struct Work {
  double kv_bytes = 0;  // every stored K and V row of every sequence and KV head, once
  double flops = 0;     // 2 * n_seq * n_head_q * n_q * n_kv * (d_k + d_v)
};

Work work_of(const AttentionProblem& p);

/// Estimated microseconds of `route` (already parameterized by make_launch) for `p` under row `spec`'s model.
double estimate_cost_us(const KernelSpec& spec, const AttentionProblem& p, const BackendCaps& caps,
                        const Route& route);

}  // namespace kvflash::plan
