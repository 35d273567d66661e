// The cpu backend against the reference for every option of an AttentionProblem (causal, sliding window, ALiBi,
// softcap, sinks, f32/f16/head-broadcast masks, all together), on plain, block and turbo types, with and without
// splits of the key range, and for rows that see no key at all.
#include <gtest/gtest.h>

#include "backend/cpu/cpu_check.h"

namespace kvflash::cpu_test {
namespace {

struct Option {
  const char* name;
  void (*apply)(ProblemSpec&);
};

const Option kOptions[] = {
    {"none", [](ProblemSpec&) {}},
    {"causal", [](ProblemSpec& s) { s.causal = true; }},
    {"window", [](ProblemSpec& s) { s.window = 13; }},
    {"causal+window", [](ProblemSpec& s) { s.causal = true, s.window = 5; }},
    {"alibi", [](ProblemSpec& s) { s.alibi_max_bias = 8.0; }},
    {"softcap", [](ProblemSpec& s) { s.softcap = 0.4; }},
    {"sinks", [](ProblemSpec& s) { s.sinks = true; }},
    {"scale", [](ProblemSpec& s) { s.scale = 0.37; }},
    {"mask_f32", [](ProblemSpec& s) { s.mask = MaskKind::f32; }},
    {"mask_f16", [](ProblemSpec& s) { s.mask = MaskKind::f16; }},
    {"mask_broadcast_heads", [](ProblemSpec& s) { s.mask = MaskKind::f32_broadcast_heads; }},
    {"everything",
     [](ProblemSpec& s) {
       s.causal = true, s.window = 40, s.alibi_max_bias = 5.0, s.softcap = 0.7, s.sinks = true, s.mask = MaskKind::f16;
     }},
};

TEST(CpuOptions, EveryOptionOnPlainBlockAndTurboTypes) {
  const std::pair<KvType, KvType> kTypes[] = {{KvType::f16, KvType::f16},
                                              {KvType::q4_0, KvType::q8_0},
                                              {KvType::turbo3, KvType::turbo4},
                                              {KvType::bf16, KvType::q5_1}};
  uint64_t seed = 1000;
  for (const Option& option : kOptions) {
    for (const auto& [k, v] : kTypes) {
      for (int splits : {1, 3}) {
        ProblemSpec spec;
        spec.shape = {2, 5, 77, 6, 3, 64, 64};
        spec.ktype = k;
        spec.vtype = v;
        spec.seed = seed++;
        option.apply(spec);
        SCOPED_TRACE(option.name);
        expect_matches_reference(spec, splits);
      }
    }
  }
}

TEST(CpuOptions, SoftcapAndAlibiOnLargeScores) {
  // Scores far from 0 exercise tanh's saturation and ALiBi biases over hundreds of positions.
  uint64_t seed = 1100;
  for (double softcap : {0.05, 30.0}) {
    ProblemSpec spec;
    spec.shape = {1, 4, 600, 8, 8, 128, 128};
    spec.softcap = softcap;
    spec.alibi_max_bias = 8.0;
    spec.scale = 1.0;
    spec.causal = true;
    spec.seed = seed++;
    expect_matches_reference(spec, 4);
  }
}

TEST(CpuOptions, RowsThatSeeNoKeyOutputZerosOrTheirSinkShare) {
  // n_q > n_kv with causal: the first rows sit before key 0 and see nothing. With sinks they still output 0
  // (the sink adds mass but no value).
  uint64_t seed = 1200;
  for (bool sinks : {false, true}) {
    for (int splits : {1, 2}) {
      ProblemSpec spec;
      spec.shape = {2, 9, 4, 4, 2, 32, 32};
      spec.causal = true;
      spec.sinks = sinks;
      spec.ktype = KvType::q8_0;
      spec.vtype = KvType::f16;
      spec.seed = seed++;
      expect_matches_reference(spec, splits);
    }
  }
}

TEST(CpuOptions, WindowNarrowerThanATileAndSplitsWithNoVisibleKey) {
  // A window of 3 over 200 keys: most tiles and most splits hold no visible key for a row.
  uint64_t seed = 1300;
  for (int splits : {1, 7}) {
    ProblemSpec spec;
    spec.shape = {1, 6, 200, 4, 1, 64, 64};
    spec.window = 3;
    spec.causal = true;
    spec.sinks = true;
    spec.seed = seed++;
    expect_matches_reference(spec, splits);
  }
}

}  // namespace
}  // namespace kvflash::cpu_test
