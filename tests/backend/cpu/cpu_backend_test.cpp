// The cpu backend as a component: every SIMD flavour this machine runs agrees with the portable one, results are
// bitwise reproducible, the planner's route runs it, bad launches and workspaces fail with a Status, and a call
// allocates nothing.
#include <gtest/gtest.h>

#include <atomic>

#include "backend/cpu/cpu_check.h"
#include "backend/cpu/thread_pool.h"
#include "kvflash/attention.h"
#include "kvflash/route.h"
#include "support/allocation_counter.h"

namespace kvflash::cpu_test {
namespace {

ProblemSpec mixed_spec(uint64_t seed) {
  ProblemSpec spec;
  spec.shape = {2, 3, 150, 8, 2, 128, 128};
  spec.ktype = KvType::q4_0;
  spec.vtype = KvType::turbo3;
  spec.causal = true;
  spec.mask = MaskKind::f16;
  spec.softcap = 0.5;
  spec.alibi_max_bias = 4.0;
  spec.sinks = true;
  spec.layout = KvLayout::paged;
  spec.seed = seed;
  return spec;
}

TEST(CpuIsa, EverySimdFlavourThisCpuRunsAgreesWithThePortableOne) {
  int compared = 0;
  for (cpu::Isa isa : {cpu::Isa::avx2, cpu::Isa::avx512}) {
    if (!cpu::isa_supported(isa)) {
      std::printf("[   INFO   ] %s: not supported on this CPU (%s), not compared\n", cpu::isa_name(isa).data(),
                  cpu::cpu_feature_string().data());
      continue;
    }
    uint64_t seed = 3000;
    for (const KvTraits& t : all_kv_types()) {
      ProblemSpec spec = mixed_spec(seed++);
      spec.ktype = spec.vtype = t.type;
      spec.shape.d_k = spec.shape.d_v = kv_traits(t.type).rotated ? 192 : 96;
      StatusOr<HostProblem> hp = HostProblem::make(spec);
      ASSERT_TRUE(hp.ok()) << hp.status().message();
      cpu::LaunchParams launch;
      launch.n_splits = 3;
      launch.isa = cpu::Isa::portable;
      const std::vector<float> portable = run_cpu(*hp, launch);
      launch.isa = isa;
      const std::vector<float> simd = run_cpu(*hp, launch);
      const std::vector<float> want = run_reference(*hp);
      // Both compute in float; only the order of additions and the exp/tanh approximations differ.
      EXPECT_LE(testing::nmse(simd, portable), 1e-9) << cpu::isa_name(isa) << " " << describe_spec(spec);
      EXPECT_LE(testing::nmse(simd, want), kMaxNmse) << cpu::isa_name(isa) << " " << describe_spec(spec);
      EXPECT_LE(testing::nmse(portable, want), kMaxNmse) << "portable " << describe_spec(spec);
    }
    ++compared;
  }
  if (compared == 0) GTEST_SKIP() << "no SIMD flavour runs on this CPU";
}

TEST(CpuIsa, AnUnsupportedFlavourIsAStatus) {
  for (cpu::Isa isa : {cpu::Isa::avx2, cpu::Isa::avx512}) {
    if (cpu::isa_supported(isa)) continue;
    StatusOr<HostProblem> hp = HostProblem::make(mixed_spec(3100));
    ASSERT_TRUE(hp.ok());
    cpu::LaunchParams launch;
    launch.isa = isa;
    PoisonedWorkspace ws(cpu::workspace_bytes(hp->problem().shape, KvType::q4_0, KvType::turbo3, 1));
    const Status s = cpu::attend(hp->problem(), launch, ws.data(), ws.size());
    EXPECT_EQ(s.code(), StatusCode::unsupported) << s.message();
  }
}

TEST(CpuDeterminism, SameInputsAndThreadsGiveBitwiseTheSameOutput) {
  StatusOr<HostProblem> hp = HostProblem::make(mixed_spec(3200));
  ASSERT_TRUE(hp.ok());
  for (int threads : {1, 2, 3}) {
    for (int splits : {1, 4}) {
      cpu::LaunchParams launch;
      launch.n_threads = threads;
      launch.n_splits = splits;
      const std::vector<float> first = run_cpu(*hp, launch);
      for (int again = 0; again < 3; ++again) {
        const std::vector<float> next = run_cpu(*hp, launch);
        ASSERT_EQ(std::memcmp(first.data(), next.data(), first.size() * sizeof(float)), 0)
            << "threads " << threads << " splits " << splits << " run " << again;
      }
    }
  }
}

TEST(CpuDeterminism, TheThreadCountDoesNotChangeTheBitsForAGivenSplit) {
  // Each task writes its own rows and the combine order is fixed, so scheduling cannot change the result.
  StatusOr<HostProblem> hp = HostProblem::make(mixed_spec(3300));
  ASSERT_TRUE(hp.ok());
  cpu::LaunchParams launch;
  launch.n_splits = 5;
  launch.n_threads = 1;
  const std::vector<float> one = run_cpu(*hp, launch);
  launch.n_threads = cpu::thread_count();
  const std::vector<float> all = run_cpu(*hp, launch);
  EXPECT_EQ(std::memcmp(one.data(), all.data(), one.size() * sizeof(float)), 0);
}

TEST(CpuRoute, ThePlannersRouteRunsTheCpuKernels) {
  uint64_t seed = 3400;
  for (int64_t n_kv : {1, 300, 5000}) {
    ProblemSpec spec = mixed_spec(seed++);
    spec.shape.n_kv = n_kv;
    spec.shape.n_seq = 1;
    StatusOr<HostProblem> hp = HostProblem::make(spec);
    ASSERT_TRUE(hp.ok()) << hp.status().message();
    const std::vector<float> want = run_reference(*hp);
    StatusOr<Route> route = plan_route(hp->problem(), caps_for(BackendKind::cpu));
    ASSERT_TRUE(route.ok()) << route.status().message();
    EXPECT_EQ(route->backend, BackendKind::cpu);
    PoisonedWorkspace ws(route->workspace_bytes);
    hp->poison_output();
    const Status s = attend(hp->problem(), *route, ws.data(), ws.size());
    ASSERT_TRUE(s.ok()) << s.message();
    const auto got = hp->output();
    EXPECT_LE(testing::nmse({got.begin(), got.end()}, want), kMaxNmse)
        << kernel_name(route->kernel) << " n_splits " << route->n_splits;
  }
}

TEST(CpuErrors, BadLaunchesAndWorkspacesAreStatusesNamingTheField) {
  StatusOr<HostProblem> hp = HostProblem::make(mixed_spec(3500));
  ASSERT_TRUE(hp.ok());
  const AttentionProblem& p = hp->problem();
  const int64_t bytes = cpu::workspace_bytes(p.shape, p.k.type, p.v.type, 2);
  ASSERT_GT(bytes, 0);
  PoisonedWorkspace ws(bytes);
  cpu::LaunchParams launch;
  launch.n_splits = 2;

  Status s = cpu::attend(p, launch, ws.data(), static_cast<size_t>(bytes - 1));
  EXPECT_EQ(s.code(), StatusCode::invalid_argument);
  EXPECT_NE(s.message().find("workspace"), std::string::npos) << s.message();

  s = cpu::attend(p, launch, nullptr, static_cast<size_t>(bytes));
  EXPECT_EQ(s.code(), StatusCode::invalid_argument);

  s = cpu::attend(p, launch, static_cast<char*>(ws.data()) + 4, static_cast<size_t>(bytes) - 4);
  EXPECT_EQ(s.code(), StatusCode::invalid_argument) << "misaligned workspace";

  launch.n_splits = 0;
  s = cpu::attend(p, launch, ws.data(), ws.size());
  EXPECT_EQ(s.code(), StatusCode::invalid_argument);
  EXPECT_NE(s.message().find("n_splits"), std::string::npos) << s.message();

  AttentionProblem bad = p;
  bad.shape.n_head_kv = 3;  // does not divide 8
  launch.n_splits = 1;
  s = cpu::attend(bad, launch, ws.data(), ws.size());
  EXPECT_EQ(s.code(), StatusCode::invalid_argument);
  EXPECT_NE(s.message().find("n_head_kv"), std::string::npos) << s.message();

  // A route planned for fewer splits than the layout it claims.
  StatusOr<Route> route = cpu::make_route(p, {});
  ASSERT_TRUE(route.ok());
  route->n_splits = 4;
  route->keys_per_split = 64;
  s = cpu::attend(p, *route, ws.data(), ws.size());
  EXPECT_EQ(s.code(), StatusCode::invalid_argument) << s.message();
}

TEST(CpuWorkspace, ARunAllocatesNothing) {
  StatusOr<HostProblem> hp = HostProblem::make(mixed_spec(3600));
  ASSERT_TRUE(hp.ok());
  const AttentionProblem& p = hp->problem();
  cpu::LaunchParams launch;
  launch.n_splits = 3;
  PoisonedWorkspace ws(cpu::workspace_bytes(p.shape, p.k.type, p.v.type, launch.n_splits));
  ASSERT_TRUE(cpu::attend(p, launch, ws.data(), ws.size()).ok());  // the pool exists from here on
  StatusOr<Route> route = cpu::make_route(p, launch);
  ASSERT_TRUE(route.ok());
  Status results[5];
  testing::AllocationCounter::start();
  for (Status& r : results) r = cpu::run_validated(p, *route, ws.data(), ws.size());
  testing::AllocationCounter::stop();
  for (const Status& r : results) ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(testing::AllocationCounter::allocations(), 0) << testing::AllocationCounter::bytes() << " bytes";
}

TEST(CpuWorkspace, SizeDependsOnSplitsAndThreadsNotOnTheKeyCount) {
  AttentionShape shape{1, 1, 1024, 32, 8, 128, 128};
  const int64_t small = cpu::workspace_bytes(shape, KvType::q8_0, KvType::q8_0, 4, 2);
  shape.n_kv = 131072;
  EXPECT_EQ(cpu::workspace_bytes(shape, KvType::q8_0, KvType::q8_0, 4, 2), small);
  EXPECT_LT(cpu::workspace_bytes(shape, KvType::q8_0, KvType::q8_0, 1, 2), small);
  if (cpu::thread_count() > 1) {
    EXPECT_LT(cpu::workspace_bytes(shape, KvType::q8_0, KvType::q8_0, 4, 1), small);
  }
}

TEST(CpuThreadPool, RunsEveryTaskOnceOnAnyParticipantCount) {
  cpu::ThreadPool pool(3);
  for (int participants : {1, 2, 3, 8}) {
    std::vector<std::atomic<int>> hits(1000);
    struct Ctx {
      std::vector<std::atomic<int>>* hits;
      int participants;
      std::atomic<bool> bad_slot{false};
    } ctx{&hits, participants};
    pool.run(
        static_cast<int64_t>(hits.size()), participants,
        [](void* c, int64_t task, int slot) {
          Ctx* x = static_cast<Ctx*>(c);
          if (slot < 0 || slot >= std::min(x->participants, 3)) x->bad_slot = true;
          (*x->hits)[static_cast<size_t>(task)].fetch_add(1);
        },
        &ctx);
    for (const auto& h : hits) ASSERT_EQ(h.load(), 1);
    EXPECT_FALSE(ctx.bad_slot.load());
  }
}

}  // namespace
}  // namespace kvflash::cpu_test
