// Property tests of the oracle: attend_reference against an independent float64 computation written here, on
// hundreds of random problems (fixed seeds) across every option, every K x V type pair, odd head dims, GQA
// ratios 1..9, n_q 1..9, n_kv 1..300, contiguous / strided / paged layouts, varlen, sinks and fully masked rows.
//
// Independence: the check (support/float64_attention.h) shares only the format code (dequantize_row,
// fp16_to_fp32) with the oracle. It gathers dense copies of Q, K, V and the mask with its own addressing, computes
// logits one option at a time, and normalizes through a log-sum-exp rather than a division by the running
// denominator.
//
// Tolerance: the oracle computes in double and rounds once to float, so each output element must lie within half
// a float ulp of the float64 value, plus 1e-12 of the element's scale sum_j p_j |v_j| for the difference between
// two double computations.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kvflash/quantize.h"
#include "kvflash/reference.h"
#include "support/float64_attention.h"
#include "support/problem_builder.h"

namespace kvflash {
namespace {

using testing::HostProblem;
using testing::KvLayout;
using testing::MaskKind;
using testing::ProblemSpec;

constexpr double kRelativeTolerance = 1e-12;

std::string describe_spec(const ProblemSpec& spec) {
  const char* layouts[] = {"contiguous", "strided_padded", "paged"};
  const char* masks[] = {"none", "f32", "f16", "f32_broadcast_heads"};
  return "seed " + std::to_string(spec.seed) + " layout " + layouts[static_cast<int>(spec.layout)] + " mask " +
         masks[static_cast<int>(spec.mask)] + (spec.varlen ? " varlen" : "") +
         (spec.v_is_view_of_k ? " v_is_view_of_k" : "");
}

/// Runs the oracle on `p` (O poisoned first) and checks every element of `output` against the naive computation.
void expect_oracle_matches(HostProblem& hp, const AttentionProblem& p, const std::string& context) {
  hp.poison_output();
  const Status st = attend_reference(p);
  ASSERT_TRUE(st.ok()) << st.message() << "\n  " << context << "\n  " << describe(p);
  const std::span<const float> got = hp.output();
  const testing::Float64Attention want = testing::float64_attention(p);
  ASSERT_EQ(got.size(), want.out.size());
  int reported = 0;
  for (size_t n = 0; n < got.size(); ++n) {
    const double w = want.out[n];
    const float wf = static_cast<float>(w);
    const double magnitude = std::max(std::abs(static_cast<double>(wf)), std::abs(static_cast<double>(got[n])));
    const float mf = static_cast<float>(magnitude);
    const double half_ulp = 0.5 * (std::nextafter(mf, std::numeric_limits<float>::infinity()) - mf);
    const double tolerance = half_ulp + kRelativeTolerance * want.scale[n];
    const bool ok = std::isfinite(got[n]) && std::abs(static_cast<double>(got[n]) - w) <= tolerance;
    if (!ok && reported++ < 5) {
      ADD_FAILURE() << "element " << n << ": oracle " << got[n] << ", float64 check " << w << " (tolerance "
                    << tolerance << ")\n  " << context << "\n  " << describe(p);
    }
  }
  EXPECT_EQ(reported, 0) << reported << " elements differ";
}

void run_case(const ProblemSpec& spec) {
  auto hp = HostProblem::make(spec);
  ASSERT_TRUE(hp.ok()) << hp.status().message() << "\n  " << describe_spec(spec);
  expect_oracle_matches(*hp, hp->problem(), describe_spec(spec));
}

/// Head dims a type accepts, odd ones included (block types: multiples of 32; turbo: anything).
const std::vector<int64_t>& dims_for(KvType t) {
  static const std::vector<int64_t> plain = {1, 3, 32, 40, 64, 80, 96, 112, 128, 160, 192};
  static const std::vector<int64_t> blocks = {32, 64, 96, 128, 160, 192, 224};
  static const std::vector<int64_t> turbo = {64, 96, 100, 128, 200, 256};
  const KvTraits& tr = kv_traits(t);
  if (tr.rotated) return turbo;
  return tr.block_elems == 1 ? plain : blocks;
}

/// A random problem of moderate size; the caller then pins what its test is about.
ProblemSpec random_spec(std::mt19937_64& rng, uint64_t seed) {
  auto pick = [&](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };
  auto coin = [&](double p) { return std::bernoulli_distribution(p)(rng); };
  ProblemSpec spec;
  spec.seed = seed;
  spec.ktype = static_cast<KvType>(pick(0, kKvTypeCount - 1));
  spec.vtype = static_cast<KvType>(pick(0, kKvTypeCount - 1));
  const int64_t ratio = pick(1, 9);
  spec.shape.n_head_kv = pick(1, 2);
  spec.shape.n_head_q = spec.shape.n_head_kv * ratio;
  spec.shape.n_seq = pick(1, 2);
  spec.shape.n_q = pick(1, 9);
  spec.shape.n_kv = coin(0.2) ? pick(1, 8) : pick(1, 300);
  const auto& dk = dims_for(spec.ktype);
  const auto& dv = dims_for(spec.vtype);
  spec.shape.d_k = dk[pick(0, dk.size() - 1)];
  spec.shape.d_v = dv[pick(0, dv.size() - 1)];
  spec.layout = static_cast<KvLayout>(pick(0, 2));
  spec.mask = static_cast<MaskKind>(pick(0, 3));
  spec.causal = coin(0.4);
  spec.window = coin(0.25) ? pick(1, 40) : 0;
  spec.alibi_max_bias = coin(0.25) ? 8.0 * pick(1, 4) / 4 : 0.0;
  spec.softcap = coin(0.25) ? 20.0 * pick(1, 3) : 0.0;
  spec.scale = coin(0.2) ? (coin(0.5) ? 0.3 : -0.05) : 0.0;
  spec.sinks = coin(0.3);
  spec.varlen = coin(0.3);
  return spec;
}

TEST(ReferenceProperty, EveryKvTypePair) {
  std::mt19937_64 rng(101);
  for (int k = 0; k < kKvTypeCount; ++k)
    for (int v = 0; v < kKvTypeCount; ++v)
      for (int rep = 0; rep < 2; ++rep) {
        ProblemSpec spec = random_spec(rng, 1000 + 100 * k + 10 * v + rep);
        spec.ktype = static_cast<KvType>(k);
        spec.vtype = static_cast<KvType>(v);
        spec.shape.d_k = dims_for(spec.ktype)[rng() % dims_for(spec.ktype).size()];
        spec.shape.d_v = dims_for(spec.vtype)[rng() % dims_for(spec.vtype).size()];
        spec.shape.n_kv = 1 + static_cast<int64_t>(rng() % 64);
        SCOPED_TRACE(std::string(kv_traits(spec.ktype).name) + " x " + std::string(kv_traits(spec.vtype).name));
        run_case(spec);
      }
}

TEST(ReferenceProperty, EveryOptionOnEveryLayoutAndMask) {
  std::mt19937_64 rng(202);
  for (int layout = 0; layout < 3; ++layout)
    for (int mask = 0; mask < 4; ++mask)
      for (int options = 0; options < 64; options += 3) {  // 22 of the 64 on/off combinations, all options covered
        ProblemSpec spec = random_spec(rng, 2000 + 1000 * layout + 100 * mask + options);
        spec.layout = static_cast<KvLayout>(layout);
        spec.mask = static_cast<MaskKind>(mask);
        spec.causal = options & 1;
        spec.window = (options & 2) ? 1 + static_cast<int64_t>(rng() % 24) : 0;
        spec.alibi_max_bias = (options & 4) ? 8.0 : 0.0;
        spec.softcap = (options & 8) ? 30.0 : 0.0;
        spec.sinks = options & 16;
        spec.varlen = options & 32;
        run_case(spec);
      }
}

TEST(ReferenceProperty, OddHeadDimsAndDifferentKAndVDims) {
  struct Dims {
    int64_t d_k, d_v;
  };
  const Dims block_dims[] = {{32, 32}, {64, 64}, {96, 96}, {160, 160}, {192, 128}, {576, 512}, {128, 64}, {64, 256}};
  const Dims turbo_dims[] = {{64, 64}, {96, 96}, {200, 200}, {192, 128}, {576, 512}, {100, 36}, {128, 256}};
  const KvType block_types[] = {KvType::q8_0, KvType::q4_0, KvType::q4_1, KvType::q5_0, KvType::q5_1, KvType::f16};
  const Dims plain_dims[] = {{80, 80}, {112, 112}, {80, 112}, {40, 24}, {1, 3}, {200, 8}};
  const KvType turbo_types[] = {KvType::turbo2, KvType::turbo3, KvType::turbo4};
  const KvType plain_types[] = {KvType::f32, KvType::f16, KvType::bf16};
  std::mt19937_64 rng(303);
  uint64_t seed = 3000;
  for (const Dims& d : block_dims)
    for (KvType t : block_types) {
      ProblemSpec spec = random_spec(rng, seed++);
      spec.ktype = t;
      spec.vtype = block_types[rng() % std::size(block_types)];
      spec.shape.d_k = d.d_k;
      spec.shape.d_v = d.d_v;
      spec.shape.n_kv = 1 + static_cast<int64_t>(rng() % 48);
      run_case(spec);
    }
  for (const Dims& d : plain_dims)
    for (KvType t : plain_types) {
      ProblemSpec spec = random_spec(rng, seed++);
      spec.ktype = t;
      spec.vtype = plain_types[rng() % std::size(plain_types)];
      spec.shape.d_k = d.d_k;
      spec.shape.d_v = d.d_v;
      run_case(spec);
    }
  for (const Dims& d : turbo_dims)
    for (KvType t : turbo_types) {
      ProblemSpec spec = random_spec(rng, seed++);
      spec.ktype = t;
      spec.vtype = turbo_types[rng() % std::size(turbo_types)];
      spec.shape.d_k = d.d_k;
      spec.shape.d_v = d.d_v;
      spec.shape.n_kv = 1 + static_cast<int64_t>(rng() % 48);
      run_case(spec);
    }
}

TEST(ReferenceProperty, GqaRatiosAndQueryRows) {
  std::mt19937_64 rng(404);
  for (int64_t ratio = 1; ratio <= 9; ++ratio)
    for (int64_t n_q = 1; n_q <= 9; ++n_q) {
      ProblemSpec spec = random_spec(rng, 4000 + 10 * ratio + n_q);
      spec.shape.n_head_kv = 1 + static_cast<int64_t>(rng() % 3);
      spec.shape.n_head_q = ratio * spec.shape.n_head_kv;
      spec.shape.n_q = n_q;
      spec.shape.n_kv = 1 + static_cast<int64_t>(rng() % 300);
      spec.shape.d_k = std::min<int64_t>(spec.shape.d_k, 128);  // keeps 81 cases cheap
      run_case(spec);
    }
}

TEST(ReferenceProperty, MlaValuesAreAViewOfKeys) {
  std::mt19937_64 rng(505);
  uint64_t seed = 5000;
  for (const KvTraits& t : all_kv_types())
    for (int layout = 0; layout < 3; ++layout) {
      ProblemSpec spec = random_spec(rng, seed++);
      spec.ktype = spec.vtype = t.type;
      spec.v_is_view_of_k = true;
      spec.layout = static_cast<KvLayout>(layout);
      const bool big = rng() % 2 == 0;
      spec.shape.d_k = big ? 576 : 192;
      spec.shape.d_v = big ? 512 : 128;
      spec.shape.n_kv = 1 + static_cast<int64_t>(rng() % 40);
      run_case(spec);
    }
}

TEST(ReferenceProperty, RowsFullyHiddenByTheMaskOutputZeros) {
  std::mt19937_64 rng(606);
  for (int rep = 0; rep < 24; ++rep) {
    ProblemSpec spec = random_spec(rng, 6000 + rep);
    spec.mask = rep % 2 ? MaskKind::f16 : MaskKind::f32;
    spec.sinks = rep % 3 == 0;
    auto hp = HostProblem::make(spec);
    ASSERT_TRUE(hp.ok()) << hp.status().message();
    // Hide every key of query row 0 (and one more row) of every head, in a copy of the mask.
    const AttentionProblem& base = hp->problem();
    const HostProblem::Buffer mask = hp->mask();
    std::vector<std::byte> hidden(static_cast<const std::byte*>(mask.data),
                                  static_cast<const std::byte*>(mask.data) + mask.bytes);
    const int64_t elem = spec.mask == MaskKind::f16 ? 2 : 4;
    const uint16_t neg_inf_f16 = 0xfc00;
    const float neg_inf_f32 = -std::numeric_limits<float>::infinity();
    const auto mask_offset = static_cast<const std::byte*>(base.mask.data) - static_cast<const std::byte*>(mask.data);
    for (int64_t s = 0; s < spec.shape.n_seq; ++s)
      for (int64_t h = 0; h < spec.shape.n_head_q; ++h)
        for (int64_t i : {int64_t{0}, spec.shape.n_q - 1 - (rep % spec.shape.n_q)})
          for (int64_t j = 0; j < spec.shape.n_kv; ++j) {
            std::byte* at = hidden.data() + mask_offset + s * base.mask.stride.seq + h * base.mask.stride.head +
                            i * base.mask.stride.row + j * elem;
            std::memcpy(at, elem == 2 ? static_cast<const void*>(&neg_inf_f16) : &neg_inf_f32, elem);
          }
    AttentionProblem p = base;
    p.mask.data = hidden.data() + mask_offset;
    expect_oracle_matches(*hp, p, describe_spec(spec));
    const std::span<const float> out = hp->output();
    for (int64_t s = 0; s < spec.shape.n_seq; ++s)
      for (int64_t h = 0; h < spec.shape.n_head_q; ++h)
        for (int64_t c = 0; c < spec.shape.d_v; ++c)
          ASSERT_EQ(out[((s * spec.shape.n_head_q + h) * spec.shape.n_q) * spec.shape.d_v + c], 0.0f);
  }
}

TEST(ReferenceProperty, CausalRowsBeforeTheFirstKeySeeNothing) {
  // n_q > kv_len: bottom-right alignment puts the first n_q - kv_len rows before key 0.
  std::mt19937_64 rng(707);
  for (int rep = 0; rep < 12; ++rep) {
    ProblemSpec spec = random_spec(rng, 7000 + rep);
    spec.causal = true;
    spec.shape.n_q = 9;
    spec.shape.n_kv = 1 + rep % 6;
    run_case(spec);
  }
}

TEST(ReferenceProperty, LongContextDecode) {
  // The oracle must stay usable at long contexts: 65537 keys (one past a power of two), head dim 128.
  ProblemSpec spec;
  spec.shape = {.n_seq = 1, .n_q = 1, .n_kv = 65537, .n_head_q = 4, .n_head_kv = 1, .d_k = 128, .d_v = 128};
  spec.ktype = KvType::q8_0;
  spec.vtype = KvType::q4_0;
  spec.causal = true;
  spec.sinks = true;
  spec.seed = 8000;
  run_case(spec);
}

}  // namespace
}  // namespace kvflash
