// What every cpu backend test does: build a random problem, run the reference and the cpu backend on it (output
// and workspace poisoned before each run), and measure how far apart they are.
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "kvflash/reference.h"
#include "kvflash/route.h"
#include "support/problem_builder.h"

namespace kvflash::cpu_test {

using testing::HostProblem;
using testing::KvLayout;
using testing::MaskKind;
using testing::ProblemSpec;

/// GGML's own flash-attention test accepts an output whose NMSE against its reference is at most 5e-4.
inline constexpr double kMaxNmse = 5e-4;

/// A short description of a spec for failure messages.
inline std::string describe_spec(const ProblemSpec& s) {
  const AttentionShape& sh = s.shape;
  return std::string(kv_traits(s.ktype).name) + "/" + std::string(kv_traits(s.vtype).name) + " seq " +
         std::to_string(sh.n_seq) + " q " + std::to_string(sh.n_q) + " kv " + std::to_string(sh.n_kv) + " heads " +
         std::to_string(sh.n_head_q) + "/" + std::to_string(sh.n_head_kv) + " d " + std::to_string(sh.d_k) + "/" +
         std::to_string(sh.d_v) + " layout " + std::to_string(static_cast<int>(s.layout)) + " mask " +
         std::to_string(static_cast<int>(s.mask)) + (s.causal ? " causal" : "") +
         (s.window ? " window " + std::to_string(s.window) : "") + (s.alibi_max_bias > 0 ? " alibi" : "") +
         (s.softcap > 0 ? " softcap" : "") + (s.sinks ? " sinks" : "") + (s.varlen ? " varlen" : "") +
         testing::kv_lens_text(s) + (s.v_is_view_of_k ? " v=view(k)" : "") + " seed " + std::to_string(s.seed);
}

/// A workspace for one cpu call, aligned as the planner's attend() requires and filled with NaN so that a kernel
/// reading a temporary it did not write shows up in the output.
class PoisonedWorkspace {
 public:
  explicit PoisonedWorkspace(int64_t bytes) : bytes_(static_cast<size_t>(bytes > 0 ? bytes : 0)) {
    storage_.resize(bytes_ / sizeof(float) + kWorkspaceAlign / sizeof(float) + 1);
    poison();
  }
  void poison() { std::fill(storage_.begin(), storage_.end(), std::numeric_limits<float>::quiet_NaN()); }
  void* data() {
    const uintptr_t at = reinterpret_cast<uintptr_t>(storage_.data());
    return reinterpret_cast<void*>((at + kWorkspaceAlign - 1) / kWorkspaceAlign * kWorkspaceAlign);
  }
  size_t size() const { return bytes_; }

 private:
  size_t bytes_;
  std::vector<float> storage_;
};

/// Runs the cpu backend on `hp` with `launch` after poisoning O and the workspace; the dense output.
inline std::vector<float> run_cpu(HostProblem& hp, const cpu::LaunchParams& launch) {
  const AttentionProblem& p = hp.problem();
  PoisonedWorkspace ws(cpu::workspace_bytes(p.shape, p.k.type, p.v.type, launch.n_splits, launch.n_threads));
  hp.poison_output();
  const Status s = cpu::attend(p, launch, ws.data(), ws.size());
  EXPECT_TRUE(s.ok()) << s.message();
  const auto out = hp.output();
  return {out.begin(), out.end()};
}

inline std::vector<float> run_reference(HostProblem& hp) {
  hp.poison_output();
  const Status s = attend_reference(hp.problem());
  EXPECT_TRUE(s.ok()) << s.message();
  const auto out = hp.output();
  return {out.begin(), out.end()};
}

/// NMSE of the cpu backend against the reference on a fresh problem drawn from `spec` (+inf on any failure).
inline double cpu_vs_reference(const ProblemSpec& spec, const cpu::LaunchParams& launch = {}) {
  StatusOr<HostProblem> hp = HostProblem::make(spec);
  EXPECT_TRUE(hp.ok()) << hp.status().message() << " for " << describe_spec(spec);
  if (!hp.ok()) return std::numeric_limits<double>::infinity();
  const std::vector<float> want = run_reference(*hp);
  const std::vector<float> got = run_cpu(*hp, launch);
  return testing::nmse(got, want);
}

/// Asserts the cpu backend matches the reference within GGML's bar, with 1 and several splits.
inline void expect_matches_reference(const ProblemSpec& spec, int n_splits = 1) {
  cpu::LaunchParams launch;
  launch.n_splits = n_splits;
  const double e = cpu_vs_reference(spec, launch);
  EXPECT_LE(e, kMaxNmse) << describe_spec(spec) << " n_splits " << n_splits;
}

}  // namespace kvflash::cpu_test
