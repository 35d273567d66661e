// attend(): the route's kernel runs, and a route or workspace that does not fit the problem is refused.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "kvflash/attention.h"
#include "kvflash/reference.h"
#include "plan/kernel_table.h"
#include "plan/sweep.h"
#include "support/problem_builder.h"

namespace kvflash {
namespace {

using testing::HostProblem;
using testing::ProblemSpec;

ProblemSpec small_spec() {
  ProblemSpec s;
  s.shape = {/*n_seq=*/2, /*n_q=*/3, /*n_kv=*/70, /*n_head_q=*/4, /*n_head_kv=*/2, 64, 64};
  s.ktype = KvType::q8_0;
  s.vtype = KvType::q4_0;
  s.causal = true;
  s.seed = 7;
  return s;
}

TEST(Attend, TheReferenceRouteRunsTheOracle) {
  auto hp = HostProblem::make(small_spec());
  ASSERT_TRUE(hp.ok()) << hp.status().message();
  auto route = plan_route(hp->problem(), caps_for(BackendKind::ref));
  ASSERT_TRUE(route.ok());
  ASSERT_TRUE(attend_reference(hp->problem()).ok());
  const std::vector<float> want(hp->output().begin(), hp->output().end());
  hp->poison_output();
  ASSERT_TRUE(attend(hp->problem(), *route, nullptr, 0).ok());
  const std::span<const float> got = hp->output();
  ASSERT_EQ(got.size(), want.size());
  EXPECT_EQ(std::memcmp(got.data(), want.data(), want.size() * sizeof(float)), 0);
}

TEST(Attend, RefusesWhatDoesNotFit) {
  auto hp = HostProblem::make(small_spec());
  ASSERT_TRUE(hp.ok());
  const AttentionProblem& p = hp->problem();
  Route route = *plan_route(p, caps_for(BackendKind::ref));

  Route wrong_backend = route;
  wrong_backend.backend = BackendKind::cuda;
  EXPECT_NE(attend(p, wrong_backend, nullptr, 0).message().find("belongs to ref"), std::string::npos);

  Route unknown = route;
  unknown.kernel = static_cast<KernelId>(plan::kKernelCount + 3);
  EXPECT_NE(attend(p, unknown, nullptr, 0).message().find("not a kernel of this build"), std::string::npos);

  Route hungry = route;
  hungry.workspace_bytes = 4096;
  const Status small = attend(p, hungry, nullptr, 100);
  EXPECT_EQ(small.code(), StatusCode::invalid_argument);
  EXPECT_NE(small.message().find("workspace_bytes = 100"), std::string::npos) << small.message();

  AttentionProblem invalid = p;
  invalid.shape.n_head_kv = 3;
  EXPECT_EQ(attend(invalid, route, nullptr, 0).code(), StatusCode::invalid_argument);
}

TEST(Attend, ARouteForAnotherShapeIsRefused) {
  // A split route's workspace pieces are sized for its problem; one planned for fewer query rows must not run.
  auto hp = HostProblem::make(small_spec());
  ASSERT_TRUE(hp.ok());
  Route route = *plan_route(hp->problem(), caps_for(BackendKind::ref));
  route.n_splits = 2;  // the reference kernel never splits
  EXPECT_NE(attend(hp->problem(), route, nullptr, 0).message().find("does not cover"), std::string::npos);
  route.n_splits = 1;
  route.layout.q_staging = {0, 256};
  route.workspace_bytes = 256;
  alignas(256) static unsigned char workspace[256];
  EXPECT_NE(attend(hp->problem(), route, workspace, sizeof workspace).message().find("another shape"),
            std::string::npos);
}

TEST(Attend, BackendsWithoutKernelsAreNotCompiledIn) {
  for (int b = 0; b < kBackendCount; ++b) {
    const auto kind = static_cast<BackendKind>(b);
    if (plan::backend_has_kernels(kind)) continue;
    auto hp = HostProblem::make(small_spec());
    ASSERT_TRUE(hp.ok());
    auto r = plan_route(hp->problem(), caps_for(kind));
    EXPECT_EQ(r.status().code(), StatusCode::unsupported) << backend_name(kind);
  }
}

}  // namespace
}  // namespace kvflash
