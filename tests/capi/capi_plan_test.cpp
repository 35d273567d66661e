// The C API's planning side against the C++ planner: routes and explain, attention along a route with a
// caller-given workspace, models, workspace sizing, memory reports.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "kvflash/attention.h"
#include "kvflash/kvflash.h"
#include "kvflash/memory_report.h"
#include "kvflash/model.h"
#include "kvflash/reference.h"
#include "kvflash/route.h"
#include "kvflash/workspace.h"
#include "plan/deployment.h"
#include "support/problem_builder.h"

namespace kvflash {
namespace {

/// A C problem over a HostProblem's buffers (explicit strides, paging, options), writing into `o`.
kvflash_problem* c_problem(const AttentionProblem& p, float* o) {
  kvflash_problem* h = kvflash_problem_create();
  const AttentionShape& s = p.shape;
  const auto st = [](const Strides& x) { return std::vector<int64_t>{x.seq, x.head, x.row}; };
  kvflash_problem_set_shape(h, s.n_seq, s.n_q, s.n_kv, s.n_head_q, s.n_head_kv, s.d_k, s.d_v);
  kvflash_problem_set_q(h, p.q.data, st(p.q.stride).data());
  kvflash_problem_set_k(h, static_cast<int>(p.k.type), p.k.data, st(p.k.stride).data());
  kvflash_problem_set_v(h, static_cast<int>(p.v.type), p.v.data, st(p.v.stride).data());
  kvflash_problem_set_k_pages(h, p.k.paging.pages, p.k.paging.pages_per_seq, p.k.paging.page_rows,
                              p.k.paging.page_bytes);
  kvflash_problem_set_v_pages(h, p.v.paging.pages, p.v.paging.pages_per_seq, p.v.paging.page_rows,
                              p.v.paging.page_bytes);
  kvflash_problem_set_o(h, o, st(p.o.stride).data());
  if (p.mask.data != nullptr) kvflash_problem_set_mask(h, static_cast<int>(p.mask.type), p.mask.data, st(p.mask.stride).data());
  kvflash_problem_set_causal(h, p.options.causal);
  kvflash_problem_set_window(h, p.options.window);
  kvflash_problem_set_softcap(h, p.options.softcap);
  kvflash_problem_set_alibi(h, p.options.alibi_max_bias);
  kvflash_problem_set_sinks(h, p.options.sinks);
  kvflash_problem_set_kv_len(h, p.kv_len);
  return h;
}

testing::ProblemSpec spec(uint64_t seed) {
  testing::ProblemSpec s;
  s.shape = {2, 3, 77, 6, 2, 96, 64};
  s.ktype = KvType::q8_0;
  s.vtype = KvType::turbo3;
  s.layout = testing::KvLayout::paged;
  s.mask = testing::MaskKind::f16;
  s.causal = true;
  s.sinks = true;
  s.varlen = true;
  s.seed = seed;
  return s;
}

struct AlignedFree {
  void operator()(void* p) const { std::free(p); }
};

TEST(CApiRoute, RoutesAreThePlannersOnEveryBackendThisBuildHas) {
  auto hp = testing::HostProblem::make(spec(3));
  ASSERT_TRUE(hp.ok()) << hp.status().message();
  std::vector<float> o(hp->o_bytes() / 4 + 1, NAN);
  const AttentionProblem p = hp->rebased(hp->q().data, hp->k().data, hp->v().data, hp->mask().data,
                                         static_cast<const float*>(hp->sinks().data),
                                         static_cast<const int32_t*>(hp->kv_len().data),
                                         static_cast<const int32_t*>(hp->page_table().data), o.data());
  kvflash_problem* h = c_problem(p, o.data());
  for (int b = 0; b < kBackendCount; ++b) {
    const auto kind = static_cast<BackendKind>(b);
    auto want = plan_route(p, caps_for(kind));
    kvflash_route* got = kvflash_plan_route(h, b);
    ASSERT_EQ(got != nullptr, want.ok()) << backend_name(kind) << ": " << kvflash_last_error();
    if (!want.ok()) {
      EXPECT_EQ(std::string(kvflash_last_error()), want.status().message());
      continue;
    }
    EXPECT_EQ(kvflash_route_backend(got), b);
    EXPECT_EQ(std::string(kvflash_route_kernel(got)), kernel_name(want->kernel));
    EXPECT_EQ(kvflash_route_workspace_bytes(got), static_cast<size_t>(want->workspace_bytes));
    EXPECT_EQ(kvflash_route_splits(got), want->n_splits);
    EXPECT_EQ(kvflash_route_cost_us(got), want->cost_us);

    const std::string text = explain(p, caps_for(kind)).to_string();
    const size_t len = kvflash_explain(h, b, nullptr, 0);
    std::string c_text(len + 1, '\0');
    ASSERT_EQ(kvflash_explain(h, b, c_text.data(), c_text.size()), len);
    c_text.resize(len);
    EXPECT_EQ(c_text, text);
    EXPECT_NE(c_text.find(kvflash_route_kernel(got)), std::string::npos);
    kvflash_route_destroy(got);
  }
  EXPECT_EQ(kvflash_plan_route(h, 9), nullptr);
  EXPECT_NE(std::string(kvflash_last_error()).find("backend = 9"), std::string::npos);
  EXPECT_EQ(kvflash_explain(h, -1, nullptr, 0), 0u);
  kvflash_problem_set_shape(h, 1, 1, 4, 3, 2, 64, 64);
  EXPECT_EQ(kvflash_plan_route(h, KVFLASH_BACKEND_REF), nullptr);
  EXPECT_NE(std::string(kvflash_last_error()).find("n_head_kv"), std::string::npos) << kvflash_last_error();
  kvflash_problem_destroy(h);
  EXPECT_EQ(kvflash_route_kernel(nullptr), nullptr);
  EXPECT_EQ(kvflash_route_workspace_bytes(nullptr), 0u);
  kvflash_route_destroy(nullptr);
}

TEST(CApiRoute, AttendAlongARouteWithACallerWorkspaceMatchesTheReference) {
  for (int b = 0; b < kBackendCount; ++b) {
    if (!kvflash_backend_available(b)) continue;
    auto hp = testing::HostProblem::make(spec(10 + static_cast<uint64_t>(b)));
    ASSERT_TRUE(hp.ok());
    ASSERT_TRUE(attend_reference(hp->problem()).ok());
    const std::vector<float> want(hp->output().begin(), hp->output().end());
    hp->poison_output();
    // The C problem writes into the HostProblem's own O, so output() gathers what the C call wrote.
    kvflash_problem* h = c_problem(hp->problem(), hp->problem().o.data);
    kvflash_route* route = kvflash_plan_route(h, b);
    ASSERT_NE(route, nullptr) << kvflash_last_error();
    const size_t bytes = kvflash_route_workspace_bytes(route);
    const size_t align = kvflash_workspace_alignment();
    ASSERT_EQ(align, static_cast<size_t>(kWorkspaceAlign));
    std::unique_ptr<void, AlignedFree> ws(bytes ? std::aligned_alloc(align, (bytes + align - 1) / align * align) : nullptr);
    ASSERT_EQ(kvflash_attend_route(h, route, ws.get(), bytes, nullptr), KVFLASH_OK) << kvflash_last_error();
    const double err = testing::nmse(hp->output(), want);
    if (b == KVFLASH_BACKEND_REF) {
      EXPECT_EQ(err, 0.0);
    } else {
      EXPECT_LE(err, 5e-4) << backend_name(static_cast<BackendKind>(b));
    }
    if (bytes > 0) {
      EXPECT_EQ(kvflash_attend_route(h, route, ws.get(), bytes - 1, nullptr), KVFLASH_ERROR_INVALID_ARGUMENT);
      EXPECT_NE(std::string(kvflash_last_error()).find("workspace_bytes"), std::string::npos);
      EXPECT_EQ(kvflash_attend(h, b, nullptr, 0), KVFLASH_ERROR_INVALID_ARGUMENT) << "a route that needs a workspace";
    }
    // A route for another shape is refused, never run.
    kvflash_problem_set_shape(h, hp->problem().shape.n_seq, hp->problem().shape.n_q + 1, hp->problem().shape.n_kv,
                              hp->problem().shape.n_head_q, hp->problem().shape.n_head_kv, hp->problem().shape.d_k,
                              hp->problem().shape.d_v);
    EXPECT_NE(kvflash_attend_route(h, route, ws.get(), bytes, nullptr), KVFLASH_OK);
    EXPECT_EQ(kvflash_attend_route(h, nullptr, nullptr, 0, nullptr), KVFLASH_ERROR_INVALID_ARGUMENT);
    kvflash_route_destroy(route);
    kvflash_problem_destroy(h);
  }
}

TEST(CApiModel, PresetsGgufErrorsAndHandBuiltModels) {
  ASSERT_EQ(kvflash_model_preset_count(), model_preset_names().size());
  for (size_t i = 0; i < kvflash_model_preset_count(); ++i) {
    kvflash_model* m = kvflash_model_preset(kvflash_model_preset_name(i));
    ASSERT_NE(m, nullptr) << kvflash_last_error();
    const ModelShape want = *model_preset(model_preset_names()[i]);
    EXPECT_EQ(std::string(kvflash_model_name(m)), want.name);
    EXPECT_EQ(kvflash_model_layer_count(m), static_cast<int64_t>(want.layers.size()));
    int64_t bytes = -1;
    ASSERT_EQ(kvflash_model_kv_cache_bytes(m, KVFLASH_TYPE_Q8_0, KVFLASH_TYPE_Q8_0, 4096, 2, &bytes), 0);
    EXPECT_EQ(bytes, *kv_cache_bytes(want, KvType::q8_0, KvType::q8_0, 4096, 2));
    kvflash_model_destroy(m);
  }
  EXPECT_EQ(kvflash_model_preset_name(kvflash_model_preset_count()), nullptr);
  EXPECT_EQ(kvflash_model_preset("llama-9"), nullptr);
  EXPECT_NE(std::string(kvflash_last_error()).find("llama3-8b"), std::string::npos) << "lists the known presets";
  EXPECT_EQ(kvflash_model_from_gguf("/nonexistent/model.gguf"), nullptr);
  EXPECT_NE(std::string(kvflash_last_error()).find("model.gguf"), std::string::npos);

  // 2 layers, 8 query / 2 KV heads, head dim 64, the second with a window of 100: K and V rows of f16 and q4_0.
  kvflash_model* m = kvflash_model_create("tiny");
  ASSERT_EQ(kvflash_model_add_layer(m, 8, 2, 64, 64, 0), 0);
  ASSERT_EQ(kvflash_model_add_layer(m, 8, 2, 64, 64, 100), 0);
  int64_t bytes = 0;
  ASSERT_EQ(kvflash_model_kv_cache_bytes(m, KVFLASH_TYPE_F16, KVFLASH_TYPE_Q4_0, 1000, 3, &bytes), 0);
  EXPECT_EQ(bytes, 3LL * 2 * (128 + 36) * (1000 + 100));
  ASSERT_EQ(kvflash_model_add_layer(m, 8, 3, 64, 64, 0), 0);  // 3 does not divide 8
  EXPECT_EQ(kvflash_model_kv_cache_bytes(m, KVFLASH_TYPE_F16, KVFLASH_TYPE_F16, 1000, 1, &bytes),
            KVFLASH_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(kvflash_last_error()).find("layer"), std::string::npos) << kvflash_last_error();
  kvflash_model_destroy(m);
}

TEST(CApiModel, WorkspacePlansAreThePlanners) {
  kvflash_model* m = kvflash_model_preset("llama3-8b");
  ASSERT_NE(m, nullptr);
  const ModelShape shape = *model_preset("llama3-8b");
  for (int b = 0; b < kBackendCount; ++b) {
    WorkspaceLimits limits;
    limits.max_sequences = 4;
    limits.max_query_rows = 64;
    limits.kv_capacity_tokens = 25000;
    limits.model = shape;
    limits.k_type = KvType::q8_0;
    limits.v_type = KvType::q4_0;
    limits.caps = caps_for(static_cast<BackendKind>(b));
    auto want = plan_workspace(limits);
    kvflash_workspace_plan got{};
    got.struct_size = sizeof got;
    const int rc = kvflash_plan_workspace(m, KVFLASH_TYPE_Q8_0, KVFLASH_TYPE_Q4_0, b, 4, 64, 25000, &got);
    ASSERT_EQ(rc == KVFLASH_OK, want.ok()) << kvflash_last_error();
    if (!want.ok()) {
      EXPECT_EQ(std::string(kvflash_last_error()), want.status().message());
      continue;
    }
    EXPECT_EQ(got.total_bytes, want->total_bytes);
    EXPECT_EQ(got.partial_o_bytes, want->partial_o_bytes);
    EXPECT_EQ(got.partial_stats_bytes, want->partial_stats_bytes);
    EXPECT_EQ(got.q_staging_bytes, want->q_staging_bytes);
    EXPECT_EQ(got.worker_scratch_bytes, want->worker_scratch_bytes);
  }
  kvflash_workspace_plan old{};
  old.struct_size = 8;
  EXPECT_EQ(kvflash_plan_workspace(m, 3, 3, KVFLASH_BACKEND_REF, 1, 1, 100, &old), KVFLASH_ERROR_INVALID_ARGUMENT);
  kvflash_workspace_plan plan{};
  plan.struct_size = sizeof plan;
  EXPECT_EQ(kvflash_plan_workspace(m, 3, 99, KVFLASH_BACKEND_REF, 1, 1, 100, &plan), KVFLASH_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(kvflash_last_error()).find("v_type = 99"), std::string::npos);
  kvflash_model_destroy(m);
}

TEST(CApiMemory, ReportsAddUpAndPrintAsTheCppReport) {
  kvflash_memory_report* r = kvflash_memory_report_create("cuda:0", 80LL << 30, 20LL << 30);
  MemoryReport want;
  want.device = "cuda:0";
  want.device_total = 80LL << 30;
  want.device_free = 20LL << 30;
  const struct {
    const char* name;
    int kind;
    int64_t bytes;
  } buckets[] = {{"kv.layer.0", KVFLASH_MEMORY_KV_CACHE, 3LL << 30}, {"kv.layer.1", KVFLASH_MEMORY_KV_CACHE, 3LL << 30},
                 {"workspace", KVFLASH_MEMORY_WORKSPACE, 123456789}, {"staging", KVFLASH_MEMORY_STAGING, 1 << 20},
                 {"weights", KVFLASH_MEMORY_OTHER, 16LL << 30}};
  for (const auto& b : buckets) {
    ASSERT_EQ(kvflash_memory_report_add(r, b.name, b.kind, b.bytes), 0);
    want.add(b.name, static_cast<MemoryKind>(b.kind), b.bytes);
  }
  EXPECT_EQ(kvflash_memory_report_bucket_count(r), 5u);
  const char* name = nullptr;
  int kind = -1;
  int64_t bytes = -1;
  ASSERT_EQ(kvflash_memory_report_bucket(r, 2, &name, &kind, &bytes), 0);
  EXPECT_STREQ(name, "workspace");
  EXPECT_EQ(kind, KVFLASH_MEMORY_WORKSPACE);
  EXPECT_EQ(bytes, 123456789);
  EXPECT_EQ(kvflash_memory_report_bucket(r, 5, &name, nullptr, nullptr), KVFLASH_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(kvflash_memory_report_bytes(r, KVFLASH_MEMORY_KV_CACHE), 6LL << 30);
  EXPECT_EQ(kvflash_memory_report_ours(r), want.ours());
  EXPECT_EQ(kvflash_memory_report_unaccounted(r), want.unaccounted());
  std::string line(kvflash_memory_report_summary(r, nullptr, 0) + 1, '\0');
  kvflash_memory_report_summary(r, line.data(), line.size());
  EXPECT_EQ(line.c_str(), want.summary_line());
  std::string table(kvflash_memory_report_to_string(r, nullptr, 0) + 1, '\0');
  kvflash_memory_report_to_string(r, table.data(), table.size());
  EXPECT_EQ(table.c_str(), want.to_string());
  EXPECT_EQ(kvflash_memory_report_add(r, "x", 7, 1), KVFLASH_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(kvflash_memory_report_add(r, "x", KVFLASH_MEMORY_OTHER, -1), KVFLASH_ERROR_INVALID_ARGUMENT);
  kvflash_memory_report_destroy(r);
}

TEST(CApiMemory, ACacheFillsOneKvBucketPerLayer) {
  kvflash_cache_config c;
  kvflash_cache_config_init(&c);
  c.n_layers = 3;
  c.n_head_kv = 2;
  c.d_k = c.d_v = 64;
  c.k_type = KVFLASH_TYPE_Q8_0;
  c.v_type = KVFLASH_TYPE_Q4_0;
  c.n_pages = 10;
  kvflash_cache* cache = kvflash_cache_create(&c);
  ASSERT_NE(cache, nullptr) << kvflash_last_error();
  kvflash_memory_report* r = kvflash_memory_report_create(nullptr, 0, 0);
  ASSERT_EQ(kvflash_memory_report_add_cache(r, cache), 0) << kvflash_last_error();
  EXPECT_EQ(kvflash_memory_report_bucket_count(r), 4u);
  EXPECT_EQ(kvflash_memory_report_bytes(r, KVFLASH_MEMORY_KV_CACHE), 3 * kvflash_cache_layer_bytes(cache));
  EXPECT_GE(kvflash_cache_layer_bytes(cache), 10LL * 16 * 2 * (68 + 36)) << "10 pages of 16 tokens, 2 heads";
  EXPECT_EQ(kvflash_memory_report_ours(r), kvflash_cache_bytes(cache));
  kvflash_memory_report_destroy(r);
  kvflash_cache_destroy(cache);
}

TEST(CApiMemory, PlanMemoryIsTheDeploymentReport) {
  kvflash_model* m = kvflash_model_preset("gemma-3-12b");
  ASSERT_NE(m, nullptr);
  kvflash_memory_report* r = kvflash_plan_memory(m, KVFLASH_TYPE_Q8_0, KVFLASH_TYPE_Q8_0, 32768, 2, 512,
                                                 KVFLASH_BACKEND_REF, 1LL << 30, 24LL << 30);
  ASSERT_NE(r, nullptr) << kvflash_last_error();
  plan::DeploymentInputs in;
  in.model = *model_preset("gemma-3-12b");
  in.k_type = in.v_type = KvType::q8_0;
  in.context = 32768;
  in.n_seq = 2;
  in.ubatch = 512;
  in.caps = caps_for(BackendKind::ref);
  in.other_bytes = 1LL << 30;
  const MemoryReport want = plan::deployment_report(*plan::plan_deployment(in), 24LL << 30);
  std::string table(kvflash_memory_report_to_string(r, nullptr, 0) + 1, '\0');
  kvflash_memory_report_to_string(r, table.data(), table.size());
  EXPECT_EQ(table.c_str(), want.to_string());
  EXPECT_EQ(kvflash_memory_report_ours(r), want.ours());
  kvflash_memory_report_destroy(r);
  EXPECT_EQ(kvflash_plan_memory(m, KVFLASH_TYPE_Q8_0, KVFLASH_TYPE_Q8_0, 0, 1, 512, KVFLASH_BACKEND_REF, 0, 0), nullptr);
  EXPECT_NE(std::string(kvflash_last_error()).find("context = 0"), std::string::npos) << kvflash_last_error();
  kvflash_model_destroy(m);
}

}  // namespace
}  // namespace kvflash
