// attend_reference_f64, the oracle's float64 entry point:
// - on float32 data it is attend_reference without the final rounding (one implementation): rounding its output
//   to float32 gives attend_reference's output bit for bit, on every layout, mask type and option;
// - on float64 Q, mask and sinks it agrees with the independent float64 computation of
//   support/float64_attention.h to 1e-12 of each element's scale sum_j p_j |v_j|, and the float64 values matter;
// - its own argument errors are Statuses naming the argument, and the problem is validated as attend_reference's.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

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
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

/// Dense [n_seq, n_head_q, n_q, d_k] copy of the problem's float32 Q, widened.
std::vector<double> dense_q(const AttentionProblem& p) {
  const AttentionShape& s = p.shape;
  std::vector<double> q;
  for (int64_t seq = 0; seq < s.n_seq; ++seq)
    for (int64_t h = 0; h < s.n_head_q; ++h)
      for (int64_t i = 0; i < s.n_q; ++i) {
        const auto* row = reinterpret_cast<const float*>(reinterpret_cast<const std::byte*>(p.q.data) +
                                                         seq * p.q.stride.seq + h * p.q.stride.head +
                                                         i * p.q.stride.row);
        q.insert(q.end(), row, row + s.d_k);
      }
  return q;
}

int64_t output_elements(const AttentionShape& s) { return s.n_seq * s.n_head_q * s.n_q * s.d_v; }

/// A random problem; seeds walk through every layout, mask kind and option.
ProblemSpec spec_for(uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto pick = [&](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };
  ProblemSpec spec;
  spec.seed = seed;
  spec.ktype = static_cast<KvType>(pick(0, kKvTypeCount - 1));
  spec.vtype = static_cast<KvType>(pick(0, kKvTypeCount - 1));
  spec.shape.n_seq = pick(1, 2);
  spec.shape.n_head_kv = pick(1, 2);
  spec.shape.n_head_q = spec.shape.n_head_kv * pick(1, 5);
  spec.shape.n_q = pick(1, 9);
  spec.shape.n_kv = pick(1, 70);
  auto dim_for = [&](KvType t) {
    const KvTraits& tr = kv_traits(t);
    if (tr.rotated) return pick(1, 3) * 48;            // 48, 96, 144: padded to 128 or 256
    if (tr.block_elems == 1) return pick(1, 100);        // any
    return tr.block_elems * pick(1, 4);
  };
  spec.shape.d_k = dim_for(spec.ktype);
  spec.shape.d_v = dim_for(spec.vtype);
  spec.layout = static_cast<KvLayout>(seed % 3);
  spec.mask = static_cast<MaskKind>((seed / 3) % 4);
  spec.causal = (seed / 12) % 2;
  spec.sinks = (seed / 24) % 2;
  spec.window = pick(0, 1) ? pick(1, 30) : 0;
  spec.alibi_max_bias = pick(0, 3) == 0 ? 8.0 : 0.0;
  spec.softcap = pick(0, 3) == 0 ? 30.0 : 0.0;
  spec.scale = pick(0, 4) == 0 ? 0.2 : 0.0;
  spec.varlen = pick(0, 3) == 0;
  return spec;
}

TEST(ReferenceF64, OnFloat32DataItIsAttendReferenceWithoutTheFinalRounding) {
  for (uint64_t seed = 1; seed <= 96; ++seed) {
    const ProblemSpec spec = spec_for(seed);
    auto hp = HostProblem::make(spec);
    ASSERT_TRUE(hp.ok()) << hp.status().message();
    const AttentionProblem& p = hp->problem();
    SCOPED_TRACE("seed " + std::to_string(seed) + ": " + describe(p));
    hp->poison_output();
    ASSERT_TRUE(attend_reference(p).ok());
    const std::span<const float> f32 = hp->output();

    const std::vector<double> q = dense_q(p);
    std::vector<double> o(static_cast<size_t>(output_elements(p.shape)), kNaN);
    const Status s = attend_reference_f64(p, q.data(), o.data());  // mask and sinks: the problem's float ones
    ASSERT_TRUE(s.ok()) << s.message();
    const testing::Float64Attention want = testing::float64_attention(p);
    for (size_t n = 0; n < o.size(); ++n) {
      const float rounded = static_cast<float>(o[n]);
      ASSERT_EQ(std::memcmp(&rounded, &f32[n], 4), 0) << "element " << n << ": " << o[n] << " vs " << f32[n];
      ASSERT_LE(std::abs(o[n] - want.out[n]), kRelativeTolerance * want.scale[n]) << "element " << n;
    }
  }
}

/// Float64 Q, a float64 mask (per head, or broadcast over heads) and float64 sinks, drawn here in double.
struct Float64Data {
  std::vector<double> q, mask, sinks;
  Strides mask_stride;
};

Float64Data draw_float64(const AttentionShape& s, bool mask, bool broadcast_heads, bool sinks, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  Float64Data d;
  d.q.resize(static_cast<size_t>(s.n_seq * s.n_head_q * s.n_q * s.d_k));
  for (double& x : d.q) x = normal(rng);
  if (mask) {
    const int64_t heads = broadcast_heads ? 1 : s.n_head_q;
    d.mask.resize(static_cast<size_t>(s.n_seq * heads * s.n_q * s.n_kv));
    for (size_t i = 0; i < d.mask.size(); ++i) {
      d.mask[i] = i % 7 == 2 ? -std::numeric_limits<double>::infinity() : normal(rng);
    }
    d.mask_stride = {.seq = heads * s.n_q * s.n_kv * 8, .head = broadcast_heads ? 0 : s.n_q * s.n_kv * 8,
                     .row = s.n_kv * 8};
  }
  if (sinks) {
    d.sinks.resize(static_cast<size_t>(s.n_head_q));
    for (double& x : d.sinks) x = 2 * normal(rng);
  }
  return d;
}

TEST(ReferenceF64, Float64InputsAgreeWithTheFloat64Check) {
  for (uint64_t seed = 200; seed < 260; ++seed) {
    ProblemSpec spec = spec_for(seed);
    spec.mask = MaskKind::f16;  // replaced by the float64 mask on odd seeds; kept on even ones
    auto hp = HostProblem::make(spec);
    ASSERT_TRUE(hp.ok()) << hp.status().message();
    const AttentionProblem& p = hp->problem();
    SCOPED_TRACE("seed " + std::to_string(seed) + ": " + describe(p));
    const bool f64_mask = seed % 2 == 1;
    const Float64Data d = draw_float64(p.shape, f64_mask, seed % 4 == 1, seed % 3 != 0, seed);
    const ReferenceF64Inputs extra{.mask = f64_mask ? d.mask.data() : nullptr,
                                   .mask_stride = d.mask_stride,
                                   .sinks = d.sinks.empty() ? nullptr : d.sinks.data()};
    std::vector<double> o(static_cast<size_t>(output_elements(p.shape)), kNaN);
    const Status s = attend_reference_f64(p, d.q.data(), o.data(), extra);
    ASSERT_TRUE(s.ok()) << s.message();
    const testing::Float64Attention want =
        testing::float64_attention(p, {d.q.data(), extra.mask, extra.mask_stride, extra.sinks});
    for (size_t n = 0; n < o.size(); ++n) {
      ASSERT_TRUE(std::isfinite(o[n])) << "element " << n << " not written";
      ASSERT_LE(std::abs(o[n] - want.out[n]), kRelativeTolerance * want.scale[n])
          << "element " << n << ": " << o[n] << " vs " << want.out[n];
    }
  }
}

TEST(ReferenceF64, TheFloat64ValuesAreUsedNotRoundedToFloat32) {
  ProblemSpec spec = spec_for(300);
  spec.ktype = spec.vtype = KvType::f32;
  spec.shape.d_k = spec.shape.d_v = 32;
  spec.mask = MaskKind::none;
  spec.window = 0;
  spec.causal = false;
  spec.scale = 0.05;  // logits near the sinks' size, so that the sinks' weight shows in double
  auto hp = HostProblem::make(spec);
  ASSERT_TRUE(hp.ok()) << hp.status().message();
  const AttentionProblem& p = hp->problem();
  const Float64Data d = draw_float64(p.shape, true, false, true, 300);
  const size_t count = static_cast<size_t>(output_elements(p.shape));
  auto run = [&](const std::vector<double>& q, const std::vector<double>& mask, const std::vector<double>& sinks) {
    std::vector<double> o(count, kNaN);
    const Status s = attend_reference_f64(p, q.data(), o.data(), {mask.data(), d.mask_stride, sinks.data()});
    EXPECT_TRUE(s.ok()) << s.message();
    return o;
  };
  auto rounded = [](std::vector<double> x) {
    for (double& v : x) v = static_cast<float>(v);
    return x;
  };
  const std::vector<double> full = run(d.q, d.mask, d.sinks);
  const std::vector<std::vector<double>> variants = {run(rounded(d.q), d.mask, d.sinks),
                                                     run(d.q, rounded(d.mask), d.sinks),
                                                     run(d.q, d.mask, rounded(d.sinks))};
  for (size_t which = 0; which < variants.size(); ++which) {
    double max_diff = 0, max_out = 0;
    for (size_t n = 0; n < count; ++n) {
      max_diff = std::max(max_diff, std::abs(variants[which][n] - full[n]));
      max_out = std::max(max_out, std::abs(full[n]));
    }
    EXPECT_GT(max_diff, 10 * kRelativeTolerance * max_out) << "rounding input " << which << " changed nothing";
  }
}

TEST(ReferenceF64, ArgumentErrorsNameTheArgument) {
  auto hp = HostProblem::make(spec_for(400));
  ASSERT_TRUE(hp.ok()) << hp.status().message();
  const AttentionProblem& p = hp->problem();
  const Float64Data d = draw_float64(p.shape, true, false, true, 400);
  std::vector<double> o(static_cast<size_t>(output_elements(p.shape)) + 1, kNaN);
  std::vector<double> q = d.q;
  q.push_back(0.0);
  auto expect_error = [&](const Status& s, const std::string& needle) {
    ASSERT_FALSE(s.ok()) << "accepted; expected an error naming " << needle;
    EXPECT_EQ(s.code(), StatusCode::invalid_argument);
    EXPECT_NE(s.message().find(needle), std::string::npos) << s.message();
  };
  expect_error(attend_reference_f64(p, nullptr, o.data()), "q is null");
  expect_error(attend_reference_f64(p, q.data(), nullptr), "o is null");
  const auto* misaligned_q = reinterpret_cast<const double*>(reinterpret_cast<const std::byte*>(q.data()) + 4);
  expect_error(attend_reference_f64(p, misaligned_q, o.data()), "q is not aligned to 8 bytes");
  auto* misaligned_o = reinterpret_cast<double*>(reinterpret_cast<std::byte*>(o.data()) + 4);
  expect_error(attend_reference_f64(p, q.data(), misaligned_o), "o is not aligned to 8 bytes");
  ReferenceF64Inputs extra{.mask = d.mask.data(), .mask_stride = d.mask_stride, .sinks = d.sinks.data()};
  extra.mask_stride.row = p.shape.n_kv * 8 + 4;
  expect_error(attend_reference_f64(p, q.data(), o.data(), extra), "extra.mask_stride.row");
  extra.mask_stride = d.mask_stride;
  extra.mask_stride.head = -8;
  expect_error(attend_reference_f64(p, q.data(), o.data(), extra), "mask.stride.head = -8 is negative");
  extra.mask_stride = d.mask_stride;
  extra.sinks = reinterpret_cast<const double*>(reinterpret_cast<const std::byte*>(d.sinks.data()) + 4);
  expect_error(attend_reference_f64(p, q.data(), o.data(), extra), "extra.sinks is not aligned");
  // The rest of the problem is validated as attend_reference validates it.
  AttentionProblem bad = p;
  bad.options.softcap = -1;
  expect_error(attend_reference_f64(bad, q.data(), o.data()), "options.softcap");
  bad = p;
  bad.shape.n_head_kv = bad.shape.n_head_q + 1;
  expect_error(attend_reference_f64(bad, q.data(), o.data()), "n_head_q");
  bad = p;
  bad.q.data = nullptr;  // ignored: Q comes from the float64 argument
  bad.o.data = nullptr;
  EXPECT_TRUE(attend_reference_f64(bad, q.data(), o.data()).ok());
}

}  // namespace
}  // namespace kvflash
