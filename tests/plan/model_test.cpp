// Model presets, exact KV cache bytes, and the plan invariant of seed 000.
#include <gtest/gtest.h>

#include "kvflash/model.h"
#include "plan/deployment.h"
#include "plan/sweep.h"
#include "plan/test_tables.h"

namespace kvflash {
namespace {

TEST(ModelPresets, AllValidateAndUnknownNamesListTheKnownOnes) {
  ASSERT_EQ(model_preset_names().size(), 7u);
  for (std::string_view name : model_preset_names()) {
    auto m = model_preset(name);
    ASSERT_TRUE(m.ok()) << name;
    EXPECT_EQ(m->name, name);
    EXPECT_TRUE(validate_model(*m).ok()) << name << ": " << validate_model(*m).message();
    EXPECT_GT(m->max_context, 0);
  }
  auto bad = model_preset("llama2");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("llama3-8b, llama3-70b"), std::string::npos) << bad.status().message();
}

TEST(ModelPresets, ShapesFromTheirConfigs) {
  const ModelShape gemma = *model_preset("gemma-3-12b");
  ASSERT_EQ(gemma.layers.size(), 48u);
  int global = 0;
  for (size_t l = 0; l < gemma.layers.size(); ++l) {
    EXPECT_EQ(gemma.layers[l].window, l % 6 == 5 ? 0 : 1024) << l;
    global += gemma.layers[l].window == 0;
  }
  EXPECT_EQ(global, 8);
  const ModelShape g4 = *model_preset("gemma-4-class");
  EXPECT_EQ(g4.layers[0].d_k, 512);
  EXPECT_EQ(g4.layers[0].n_head_q / g4.layers[0].n_head_kv, 2);
  const ModelShape ds = *model_preset("deepseek-v3");
  EXPECT_TRUE(ds.v_is_view_of_k);
  EXPECT_EQ(ds.layers[0].d_k, 576);
  EXPECT_EQ(ds.layers[0].d_v, 512);
  EXPECT_EQ(ds.layers[0].n_head_kv, 1);
}

TEST(KvCacheBytes, ExactFromBlockSizes) {
  const ModelShape llama = *model_preset("llama3-8b");
  // 32 layers x 8192 tokens x 8 KV heads x (128 values of K + 128 of V).
  EXPECT_EQ(*kv_cache_bytes(llama, KvType::f16, KvType::f16, 8192, 1), 32LL * 8192 * 8 * (256 + 256));
  EXPECT_EQ(*kv_cache_bytes(llama, KvType::q8_0, KvType::q8_0, 8192, 1), 32LL * 8192 * 8 * (136 + 136));
  EXPECT_EQ(*kv_cache_bytes(llama, KvType::q8_0, KvType::q4_0, 8192, 1), 32LL * 8192 * 8 * (136 + 72));
  EXPECT_EQ(*kv_cache_bytes(llama, KvType::turbo3, KvType::turbo4, 100, 3), 3LL * 32 * 100 * 8 * (50 + 68));
  // Phi-3's head dim 96 is padded to 128 in a turbo row (one 50-byte turbo3 block), stored as is in q8_0.
  const ModelShape phi = *model_preset("phi-3-mini");
  EXPECT_EQ(*kv_cache_bytes(phi, KvType::turbo3, KvType::turbo3, 1000, 1), 32LL * 1000 * 32 * (50 + 50));
  EXPECT_EQ(*kv_cache_bytes(phi, KvType::q8_0, KvType::f16, 1000, 1), 32LL * 1000 * 32 * (102 + 192));
}

TEST(KvCacheBytes, SlidingLayersCountTheirWindow) {
  const ModelShape gemma = *model_preset("gemma-3-12b");
  const int64_t per_token = 8 * (512 + 512);  // 8 KV heads, head dim 256 in f16
  EXPECT_EQ(*kv_cache_bytes(gemma, KvType::f16, KvType::f16, 32768, 1), per_token * (40 * 1024 + 8 * 32768));
  EXPECT_EQ(*kv_cache_bytes(gemma, KvType::f16, KvType::f16, 512, 1), per_token * 48 * 512);
  auto per_layer = kv_cache_bytes_per_layer(gemma, KvType::f16, KvType::f16, 32768, 2);
  ASSERT_TRUE(per_layer.ok());
  EXPECT_EQ((*per_layer)[0], 2 * per_token * 1024);
  EXPECT_EQ((*per_layer)[5], 2 * per_token * 32768);
}

TEST(KvCacheBytes, MlaStoresOnlyTheLatentRow) {
  const ModelShape ds = *model_preset("deepseek-v3");
  EXPECT_EQ(*kv_cache_bytes(ds, KvType::f16, KvType::q4_0, 4096, 1), 61LL * 4096 * 1152);
  // 576 values of turbo3 are padded to 640 = 5 blocks of 50 bytes.
  EXPECT_EQ(*kv_cache_bytes(ds, KvType::turbo3, KvType::f16, 4096, 1), 61LL * 4096 * 250);
}

TEST(KvCacheBytes, TypesThatCannotStoreTheHeadDimAreErrors) {
  ModelShape m = *model_preset("llama3-8b");
  for (LayerShape& l : m.layers) l.d_k = l.d_v = 80;
  auto r = kv_cache_bytes(m, KvType::q8_0, KvType::f16, 10, 1);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "layer 0: d_k = 80 is not a multiple of q8_0's block size 32");
  EXPECT_TRUE(kv_cache_bytes(m, KvType::f16, KvType::turbo2, 10, 1).ok());
  EXPECT_FALSE(kv_cache_bytes(m, KvType::f16, KvType::f16, -1, 1).ok());
}

TEST(ValidateModel, NamesTheLayerAndField) {
  ModelShape m = *model_preset("qwen2.5-7b");
  m.layers[7].n_head_kv = 3;
  EXPECT_EQ(validate_model(m).message(), "layer 7: n_head_q = 28 is not a multiple of n_head_kv = 3");
  m = *model_preset("qwen2.5-7b");
  m.layers[2].d_v = 2048;
  EXPECT_EQ(validate_model(m).message(), "layer 2: d_v = 2048 is outside [1, 1024]");
  for (LayerShape& l : m.layers) l.n_head_kv = 0;
  EXPECT_FALSE(validate_model(m).ok());
}

// Seed 000: temporaries that grow with the context made q8_0 run out of memory before f16. Here, for every preset,
// context and batch, the planned total with a quantized KV type is never above f16's, on every backend.
TEST(PlanInvariant, QuantizedNeverPlansMoreThanF16) {
  struct Table {
    BackendKind backend;
    std::span<const plan::KernelSpec> rows;
  };
  std::vector<Table> tables = {{BackendKind::cuda, plan::test_tables::kCudaLike},
                               {BackendKind::cpu, plan::test_tables::kCpuLike}};
  for (BackendKind b : plan::routable_backends()) tables.push_back({b, plan::kKernels});
  for (std::string_view name : model_preset_names()) {
    const ModelShape m = *model_preset(name);
    for (const auto& [b, rows] : tables) {
      // Per-worker scratch scales with the threads: pinned, so that the check does not depend on this machine's
      // core count (with 2 cores a padding-dependent scratch went unnoticed; with 16 it broke the invariant).
      for (int threads : {1, 16, 128}) {
        for (int64_t batch : {1, 4}) {
          for (int64_t ctx : {1, 100, 1024, 4096, 32768, 131072}) {
            plan::DeploymentInputs in;
            in.model = m;
            in.context = ctx;
            in.n_seq = batch;
            in.caps = caps_for(b);
            in.caps.threads = threads;
            in.table = rows;
            auto f16 = plan::plan_deployment(in);
            ASSERT_TRUE(f16.ok()) << f16.status().message();
            for (const KvTraits& t : all_kv_types()) {
              if (!t.quantized) continue;
              in.k_type = in.v_type = t.type;
              auto q = plan::plan_deployment(in);
              ASSERT_TRUE(q.ok()) << name << " " << t.name << ": " << q.status().message();
              EXPECT_LE(q->total_bytes, f16->total_bytes) << name << " " << t.name << " ctx " << ctx << " batch "
                                                          << batch << " threads " << threads << " on " << backend_name(b);
              EXPECT_LT(q->kv_bytes, f16->kv_bytes) << name << " " << t.name;
            }
          }
        }
      }
    }
  }
}

TEST(MaxContext, IsTheLargestContextThatFits) {
  plan::DeploymentInputs in;
  in.model = *model_preset("llama3-8b");
  in.caps = caps_for(BackendKind::ref);
  const int64_t budget = int64_t{16} << 30;  // 16 GiB
  auto f16 = plan::max_context_within(in, budget);
  ASSERT_TRUE(f16.ok());
  // f16: 131072 bytes per token, no workspace on ref: 16 GiB / 128 KiB = 131072 tokens exactly.
  EXPECT_EQ(*f16, 131072);
  in.k_type = in.v_type = KvType::q4_0;
  auto q4 = plan::max_context_within(in, budget);
  ASSERT_TRUE(q4.ok());
  in.context = *q4;
  EXPECT_LE(plan::plan_deployment(in)->total_bytes, budget);
  in.context = *q4 + 1;
  EXPECT_GT(plan::plan_deployment(in)->total_bytes, budget);
  EXPECT_EQ(*plan::max_context_within(in, 1000), 0) << "one token of llama3-8b takes more than 1000 bytes";
}

}  // namespace
}  // namespace kvflash
