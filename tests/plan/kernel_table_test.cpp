// The kernel table and the acceptance rules: dispatch is type-exact (seed 003), a row rejects what it does not
// implement with a reason that names the field and its value, each backend's generic row accepts everything.
#include <gtest/gtest.h>

#include "kvflash/route.h"
#include "plan/acceptance.h"
#include "plan/kernel_table.h"
#include "plan/shape_problem.h"
#include "plan/sweep.h"

namespace kvflash::plan {
namespace {

AttentionProblem problem(KvType k, KvType v, int64_t d_k, int64_t d_v, int64_t n_q = 1, int64_t group = 1) {
  ShapeProblemSpec s;
  s.shape = {/*n_seq=*/1, n_q, /*n_kv=*/300, /*n_head_q=*/2 * group, /*n_head_kv=*/2, d_k, d_v};
  s.k_type = k;
  s.v_type = v;
  return shape_only_problem(s);
}

constexpr HeadDimPair kDims128[] = {{128, 128}};
// A decode kernel that reads exactly q8_0 K and q4_0 V at head dim 128, for up to 4 query rows and groups of 8,
// without softcap or ALiBi.
constexpr KernelSpec kQ8Q4 = {static_cast<KernelId>(900), "cpu.q8_q4_d128", BackendKind::cpu, false,
                              type_bit(KvType::q8_0), type_bit(KvType::q4_0), kDims128, 4, 8,
                              kAllFeatures & ~(feature::softcap | feature::alibi), KvSplit::split, 64, 8, false,
                              Scratch::none, CostModel::reference, "", ""};

TEST(KernelTable, IdsAreRowIndicesAndNamesResolve) {
  for (int i = 0; i < kKernelCount; ++i) {
    EXPECT_EQ(static_cast<int>(kKernels[i].id), i);
    EXPECT_EQ(kernel_name(kKernels[i].id), kKernels[i].name);
  }
  EXPECT_EQ(kernel_name(static_cast<KernelId>(kKernelCount)), "?");
  EXPECT_EQ(kernel_spec(KernelId::ref_generic).backend, BackendKind::ref);
}

TEST(KernelTable, DispatchIsTypeExact) {
  // Every K x V pair: the row takes exactly q8_0 x q4_0, and names the offending field otherwise.
  for (const KvTraits& k : all_kv_types()) {
    for (const KvTraits& v : all_kv_types()) {
      const AttentionProblem p = problem(k.type, v.type, 128, 128);
      ASSERT_TRUE(validate(p).ok()) << validate(p).message();
      const bool want = k.type == KvType::q8_0 && v.type == KvType::q4_0;
      EXPECT_EQ(accepts(kQ8Q4, p), want) << k.name << " x " << v.name;
      const std::string why = reject_reason(kQ8Q4, p);
      EXPECT_EQ(why.empty(), want) << why;
      if (k.type != KvType::q8_0) {
        EXPECT_EQ(why, "k.type = " + std::string(k.name) + " is not one it reads (q8_0)");
      } else if (v.type != KvType::q4_0) {
        EXPECT_EQ(why, "v.type = " + std::string(v.name) + " is not one it reads (q4_0)");
      }
    }
  }
}

TEST(KernelTable, RejectionsNameTheFieldAndValue) {
  EXPECT_EQ(reject_reason(kQ8Q4, problem(KvType::q8_0, KvType::q4_0, 256, 256)),
            "d_k/d_v = 256/256 is not one it is compiled for (128/128)");
  EXPECT_EQ(reject_reason(kQ8Q4, problem(KvType::q8_0, KvType::q4_0, 128, 128, /*n_q=*/5)),
            "n_q = 5 exceeds its max_n_q = 4");
  EXPECT_EQ(reject_reason(kQ8Q4, problem(KvType::q8_0, KvType::q4_0, 128, 128, 1, /*group=*/16)),
            "GQA group n_head_q / n_head_kv = 16 exceeds its max_gqa_group = 8");
  AttentionProblem capped = problem(KvType::q8_0, KvType::q4_0, 128, 128);
  capped.options.softcap = 30;
  capped.options.alibi_max_bias = 8;
  EXPECT_EQ(reject_reason(kQ8Q4, capped), "the problem needs alibi, softcap, which it does not implement");
  EXPECT_FALSE(accepts(kQ8Q4, capped));
  EXPECT_TRUE(accepts(kQ8Q4, problem(KvType::q8_0, KvType::q4_0, 128, 128, 4, 8)));
}

TEST(KernelTable, RequiredFeaturesFollowTheProblem) {
  ShapeProblemSpec s;
  s.shape = {2, 3, 100, 4, 2, 64, 64};
  EXPECT_EQ(required_features(shape_only_problem(s)), 0u);
  s.causal = true;
  s.window = 16;
  s.mask = ShapeMask::f16;
  s.alibi_max_bias = 1;
  s.softcap = 5;
  s.sinks = true;
  s.kv_len = true;
  s.layout = ShapeLayout::paged;
  EXPECT_EQ(required_features(shape_only_problem(s)), kAllFeatures & ~feature::mask_f32);
  s.mask = ShapeMask::f32;
  EXPECT_EQ(required_features(shape_only_problem(s)), kAllFeatures & ~feature::mask_f16);
}

TEST(KernelTable, EveryBackendWithRowsHasAGenericRowThatAcceptsEveryTypePair) {
  for (BackendKind b : routable_backends()) {
    int generic = 0;
    for (const KernelSpec& spec : kKernels) {
      if (spec.backend != b || !spec.generic) continue;
      ++generic;
      for (const KvTraits& k : all_kv_types()) {
        for (const KvTraits& v : all_kv_types()) {
          AttentionProblem p = problem(k.type, v.type, 96, 160, 512, 64);
          p.options.softcap = 20;
          p.options.alibi_max_bias = 8;
          EXPECT_TRUE(accepts(spec, p)) << spec.name << ": " << reject_reason(spec, p);
        }
      }
    }
    EXPECT_EQ(generic, 1) << backend_name(b);
  }
}

TEST(KernelTable, TypeMaskNames) {
  EXPECT_EQ(type_mask_names(kAllKvTypes), "any");
  EXPECT_EQ(type_mask_names(type_bit(KvType::f16) | type_bit(KvType::turbo4)), "f16|turbo4");
}

}  // namespace
}  // namespace kvflash::plan
