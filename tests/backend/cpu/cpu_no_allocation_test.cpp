// The standard "no allocation inside an attention call on the fast backends", checked: after a plan and a warm-up
// call (the thread pool starts on first use), attend() on the cpu backend makes zero heap allocations, whatever the
// KV types, layout and options, and so does validate() alone. Allocations are counted by
// support/allocation_counter.h (the test binary's replaced global operator new, counted from every thread).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "backend/cpu/cpu_check.h"
#include "kvflash/attention.h"
#include "support/allocation_counter.h"

namespace kvflash::cpu_test {
namespace {

using testing::AllocationCounter;

struct AllocationCase {
  KvType ktype, vtype;
  KvLayout layout;
  int64_t n_q;
  bool options;  // mask, causal, window, alibi, softcap, sinks, varlen
};

class CpuAttendAllocation : public ::testing::TestWithParam<AllocationCase> {};

TEST_P(CpuAttendAllocation, PlanThenAttendAllocatesNothingOnSuccess) {
  const AllocationCase c = GetParam();
  ProblemSpec spec;
  spec.shape = {.n_seq = 2, .n_q = c.n_q, .n_kv = 300, .n_head_q = 8, .n_head_kv = 2, .d_k = 128, .d_v = 128};
  spec.ktype = c.ktype;
  spec.vtype = c.vtype;
  spec.layout = c.layout;
  if (c.options) {
    spec.mask = MaskKind::f16;
    spec.causal = true;
    spec.window = 200;
    spec.alibi_max_bias = 8.0;
    spec.softcap = 30.0;
    spec.sinks = true;
    spec.varlen = true;
  }
  spec.seed = 41;
  auto made = HostProblem::make(spec);
  ASSERT_TRUE(made.ok()) << made.status().message();
  HostProblem& hp = *made;
  BackendCaps caps = caps_for(BackendKind::cpu);
  caps.threads = 2;
  auto route = plan_route(hp.problem(), caps);
  ASSERT_TRUE(route.ok()) << route.status().message();
  PoisonedWorkspace workspace(route->workspace_bytes);
  ASSERT_TRUE(attend(hp.problem(), *route, workspace.data(), workspace.size()).ok());  // warm-up: pool threads start

  hp.poison_output();
  AllocationCounter::start();
  const Status validated = validate(hp.problem());
  const Status attended = attend(hp.problem(), *route, workspace.data(), workspace.size());
  AllocationCounter::stop();
  ASSERT_TRUE(validated.ok()) << validated.message();
  ASSERT_TRUE(attended.ok()) << attended.message();
  EXPECT_EQ(AllocationCounter::allocations(), 0) << AllocationCounter::bytes() << " bytes for " << describe_spec(spec);

  // The call did its work: the output matches the reference.
  const std::vector<float> got(hp.output().begin(), hp.output().end());
  hp.poison_output();
  ASSERT_TRUE(attend_reference(hp.problem()).ok());
  EXPECT_LE(testing::nmse(got, hp.output()), kMaxNmse) << describe_spec(spec);
}

INSTANTIATE_TEST_SUITE_P(
    TypesLayoutsOptions, CpuAttendAllocation,
    ::testing::Values(AllocationCase{KvType::f16, KvType::f16, KvLayout::contiguous, 1, false},
                      AllocationCase{KvType::q8_0, KvType::q8_0, KvLayout::paged, 1, false},
                      AllocationCase{KvType::q4_0, KvType::q4_0, KvLayout::paged, 4, false},
                      AllocationCase{KvType::turbo3, KvType::f16, KvLayout::strided_padded, 4, true},
                      AllocationCase{KvType::q8_0, KvType::q4_0, KvLayout::paged, 4, true}));

// An invalid problem still gets its full message: messages are built on the failure path only.
TEST(CpuAttendAllocation, FailuresStillNameTheFieldAndValue) {
  ProblemSpec spec;
  spec.shape = {.n_seq = 1, .n_q = 1, .n_kv = 64, .n_head_q = 4, .n_head_kv = 2, .d_k = 64, .d_v = 64};
  auto made = HostProblem::make(spec);
  ASSERT_TRUE(made.ok()) << made.status().message();
  AttentionProblem p = made->problem();
  p.k.stride.row = 2;  // rows of 128 bytes, 2 bytes apart
  EXPECT_EQ(validate(p).message(),
            "k.stride.row = 2 is smaller than the 128 bytes spanned by one row: rows of k would overlap");
  p = made->problem();
  p.shape.n_head_kv = 3;
  EXPECT_EQ(validate(p).message(), "n_head_q = 4 is not a multiple of n_head_kv = 3");
}

}  // namespace
}  // namespace kvflash::cpu_test
