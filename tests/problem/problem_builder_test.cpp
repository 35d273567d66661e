// The shared test helper does what its header promises: valid problems, real padding full of garbage, shuffled
// page tables, masks with -inf but no row hidden by the mask alone, outlier channels, poisoned outputs,
// rebasing into other buffers, and nmse().
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <set>
#include <vector>

#include "kvflash/quantize.h"
#include "kvflash/reference.h"
#include "support/problem_builder.h"

namespace kvflash::testing {
namespace {

ProblemSpec small_spec(KvLayout layout, MaskKind mask = MaskKind::none, uint64_t seed = 7) {
  ProblemSpec spec;
  spec.shape = {.n_seq = 2, .n_q = 3, .n_kv = 37, .n_head_q = 6, .n_head_kv = 2, .d_k = 64, .d_v = 96};
  spec.ktype = KvType::q8_0;
  spec.vtype = KvType::q4_1;
  spec.layout = layout;
  spec.mask = mask;
  spec.seed = seed;
  return spec;
}

HostProblem make_or_fail(const ProblemSpec& spec) {
  auto hp = HostProblem::make(spec);
  EXPECT_TRUE(hp.ok()) << hp.status().message();
  return std::move(hp).value();
}

TEST(ProblemBuilder, EveryLayoutAndMaskGivesAValidProblemWithAPoisonedOutput) {
  for (int layout = 0; layout < 3; ++layout)
    for (int mask = 0; mask < 4; ++mask) {
      ProblemSpec spec = small_spec(static_cast<KvLayout>(layout), static_cast<MaskKind>(mask));
      spec.causal = true;
      spec.sinks = true;
      spec.varlen = true;
      HostProblem hp = make_or_fail(spec);
      const Status st = validate(hp.problem());
      EXPECT_TRUE(st.ok()) << st.message();
      const std::span<const float> out = hp.output();
      ASSERT_EQ(out.size(), size_t{2 * 6 * 3 * 96});
      EXPECT_TRUE(std::all_of(out.begin(), out.end(), [](float x) { return std::isnan(x); }));
      EXPECT_EQ(hp.mask().data == nullptr, mask == 0);
      EXPECT_NE(hp.sinks().data, nullptr);
      ASSERT_NE(hp.kv_len().data, nullptr);
      for (int64_t s = 0; s < 2; ++s) {
        EXPECT_GE(hp.problem().kv_len[s], 1);
        EXPECT_LE(hp.problem().kv_len[s], 37);
      }
      EXPECT_EQ(hp.page_table().data != nullptr, layout == static_cast<int>(KvLayout::paged));
    }
}

TEST(ProblemBuilder, StridedViewsHavePaddingFullOfGarbage) {
  for (uint64_t seed = 1; seed <= 6; ++seed) {  // both axis orders come up
    HostProblem hp = make_or_fail(small_spec(KvLayout::strided_padded, MaskKind::f32, seed));
    const AttentionProblem& p = hp.problem();
    const int64_t k_row = head_row_bytes(KvType::q8_0, 64);
    EXPECT_GT(std::min(p.k.stride.row, p.k.stride.head), k_row);  // padding after every row or head
    EXPECT_GT(std::min(p.q.stride.row, p.q.stride.head), 64 * 4);
    EXPECT_GT(static_cast<const std::byte*>(p.k.data), static_cast<const std::byte*>(hp.k().data));
    // The bytes right after K row 0 of head 0 are padding; they must not be zeros.
    const auto* pad = static_cast<const uint8_t*>(p.k.data) + k_row;
    EXPECT_FALSE(std::all_of(pad, pad + kv_traits(KvType::q8_0).block_bytes, [](uint8_t b) { return b == 0; }));
  }
}

TEST(ProblemBuilder, PageTablesAreShuffledDistinctPagesWithSpares) {
  ProblemSpec spec = small_spec(KvLayout::paged);
  spec.shape.n_kv = 300;
  for (uint64_t seed = 1; seed <= 4; ++seed) {
    spec.seed = seed;
    HostProblem hp = make_or_fail(spec);
    const PageTable& pt = hp.problem().k.paging;
    ASSERT_NE(pt.pages, nullptr);
    EXPECT_EQ(hp.problem().v.paging.pages, pt.pages);
    EXPECT_GE(pt.pages_per_seq * pt.page_rows, 300);
    const int64_t entries = 2 * pt.pages_per_seq;
    std::set<int32_t> distinct(pt.pages, pt.pages + entries);
    EXPECT_EQ(static_cast<int64_t>(distinct.size()), entries);
    EXPECT_GE(*distinct.begin(), 0);
    EXPECT_GT(static_cast<int64_t>(hp.k().bytes), entries * pt.page_bytes);  // spare pages exist
    if (entries > 4) {
      EXPECT_FALSE(std::is_sorted(pt.pages, pt.pages + entries));
    }
  }
}

TEST(ProblemBuilder, MasksHaveMinusInfinityButNeverHideARowAlone) {
  for (MaskKind kind : {MaskKind::f32, MaskKind::f16, MaskKind::f32_broadcast_heads}) {
    ProblemSpec spec = small_spec(KvLayout::contiguous, kind);
    spec.varlen = true;
    HostProblem hp = make_or_fail(spec);
    const AttentionProblem& p = hp.problem();
    if (kind == MaskKind::f32_broadcast_heads) {
      EXPECT_EQ(p.mask.stride.head, 0);
    }
    int64_t hidden = 0, total = 0;
    for (int64_t s = 0; s < 2; ++s)
      for (int64_t h = 0; h < 6; ++h)
        for (int64_t i = 0; i < 3; ++i) {
          const auto* row = static_cast<const std::byte*>(p.mask.data) + s * p.mask.stride.seq +
                            h * p.mask.stride.head + i * p.mask.stride.row;
          int64_t visible = 0;
          for (int64_t j = 0; j < p.kv_len[s]; ++j) {
            float x;
            if (kind == MaskKind::f16) {
              uint16_t bits;
              std::memcpy(&bits, row + 2 * j, 2);
              x = fp16_to_fp32(bits);
            } else {
              std::memcpy(&x, row + 4 * j, 4);
            }
            ++total;
            if (x == -std::numeric_limits<float>::infinity()) ++hidden; else ++visible;
          }
          EXPECT_GT(visible, 0) << s << " " << h << " " << i;
        }
    EXPECT_GT(hidden, total / 20);
    EXPECT_LT(hidden, total / 4);
  }
}

TEST(ProblemBuilder, KeysHaveOutlierChannels) {
  ProblemSpec spec = small_spec(KvLayout::contiguous);
  spec.ktype = KvType::f32;
  spec.shape.n_kv = 256;
  spec.shape.d_k = 128;
  HostProblem hp = make_or_fail(spec);
  const auto* k = static_cast<const float*>(hp.problem().k.data);  // [seq, head, row, 128], head 0 of seq 0
  std::vector<double> rms(128, 0.0);
  for (int64_t r = 0; r < 256; ++r)
    for (int64_t c = 0; c < 128; ++c) rms[c] += k[r * 128 + c] * k[r * 128 + c] / 256.0;
  std::sort(rms.begin(), rms.end());
  EXPECT_GT(std::sqrt(rms.back() / rms[64]), 5.0);  // the largest channel dwarfs the median one
}

TEST(ProblemBuilder, MlaViewSharesTheKeyBufferAndBadSpecsAreRejected) {
  ProblemSpec spec = small_spec(KvLayout::paged);
  spec.vtype = spec.ktype;
  spec.shape.d_k = 576;
  spec.shape.d_v = 512;
  spec.v_is_view_of_k = true;
  HostProblem hp = make_or_fail(spec);
  EXPECT_EQ(hp.problem().v.data, hp.problem().k.data);
  EXPECT_EQ(hp.v().data, hp.k().data);

  spec.vtype = KvType::f16;
  auto bad = HostProblem::make(spec);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("vtype"), std::string::npos) << bad.status().message();
  spec.vtype = spec.ktype;
  spec.shape.d_v = 608;
  bad = HostProblem::make(spec);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("d_v = 608"), std::string::npos) << bad.status().message();

  ProblemSpec heads = small_spec(KvLayout::contiguous);
  heads.shape.n_head_q = 7;
  bad = HostProblem::make(heads);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("n_head_q = 7 is not a multiple of n_head_kv = 2"), std::string::npos)
      << bad.status().message();
  ProblemSpec huge = small_spec(KvLayout::contiguous);
  huge.shape.n_kv = int64_t{1} << 40;
  EXPECT_FALSE(HostProblem::make(huge).ok());
}

TEST(ProblemBuilder, SameSeedSameBytesOtherSeedOtherBytes) {
  const ProblemSpec spec = small_spec(KvLayout::strided_padded, MaskKind::f16, 11);
  HostProblem a = make_or_fail(spec), b = make_or_fail(spec);
  ProblemSpec other = spec;
  other.seed = 12;
  HostProblem c = make_or_fail(other);
  ASSERT_EQ(a.k().bytes, b.k().bytes);
  EXPECT_EQ(std::memcmp(a.k().data, b.k().data, a.k().bytes), 0);
  EXPECT_EQ(std::memcmp(a.q().data, b.q().data, a.q().bytes), 0);
  EXPECT_NE(std::memcmp(a.q().data, c.q().data, std::min(a.q().bytes, c.q().bytes)), 0);
}

TEST(ProblemBuilder, RebasedProblemsReadTheSameBytesFromOtherBuffers) {
  ProblemSpec spec = small_spec(KvLayout::paged, MaskKind::f16);
  spec.sinks = true;
  spec.varlen = true;
  HostProblem hp = make_or_fail(spec);
  ASSERT_TRUE(attend_reference(hp.problem()).ok());
  const std::vector<float> want(hp.output().begin(), hp.output().end());

  auto copy = [](HostProblem::Buffer b) {
    AlignedBytes out(b.bytes);
    if (b.bytes != 0) std::memcpy(out.data(), b.data, b.bytes);
    return out;
  };
  const AlignedBytes q = copy(hp.q()), k = copy(hp.k()), v = copy(hp.v()), mask = copy(hp.mask()),
                     sinks = copy(hp.sinks()), kv_len = copy(hp.kv_len()), pages = copy(hp.page_table());
  AlignedBytes o(hp.o_bytes());
  const AttentionProblem p = hp.rebased(q.data(), k.data(), v.data(), mask.data(),
                                        reinterpret_cast<const float*>(sinks.data()),
                                        reinterpret_cast<const int32_t*>(kv_len.data()),
                                        reinterpret_cast<const int32_t*>(pages.data()),
                                        reinterpret_cast<float*>(o.data()));
  EXPECT_EQ(p.k.paging.pages, reinterpret_cast<const int32_t*>(pages.data()));
  hp.poison_output();
  ASSERT_TRUE(attend_reference(p).ok());
  // The original O stays poisoned; the copy holds the same values at the same offsets.
  EXPECT_TRUE(std::isnan(hp.output()[0]));
  size_t n = 0;
  for (int64_t s = 0; s < 2; ++s)
    for (int64_t h = 0; h < 6; ++h)
      for (int64_t i = 0; i < 3; ++i)
        for (int64_t c = 0; c < 96; ++c, ++n) {
          const auto* row = reinterpret_cast<const float*>(reinterpret_cast<const std::byte*>(p.o.data) +
                                                           s * p.o.stride.seq + h * p.o.stride.head + i * p.o.stride.row);
          ASSERT_EQ(row[c], want[n]) << n;
        }
}

TEST(ProblemBuilder, EmptyCachesBuildOnEveryLayoutAndOutputZeros) {
  for (int layout = 0; layout < 3; ++layout) {
    ProblemSpec spec = small_spec(static_cast<KvLayout>(layout), MaskKind::f32);
    spec.shape.n_kv = 0;
    spec.sinks = true;
    HostProblem hp = make_or_fail(spec);
    ASSERT_TRUE(attend_reference(hp.problem()).ok());
    for (float x : hp.output()) ASSERT_EQ(x, 0.0f);
  }
}

TEST(Nmse, MeasuresRelativeSquaredErrorAndFlagsNonFiniteValues) {
  const std::vector<float> want = {1.0f, -2.0f, 2.0f};
  EXPECT_EQ(nmse(want, want), 0.0);
  EXPECT_DOUBLE_EQ(nmse(std::vector<float>{1.0f, -2.0f, 3.0f}, want), 1.0 / 9.0);
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(nmse(std::vector<float>{1.0f, nan, 2.0f}, want), inf);
  EXPECT_EQ(nmse(std::vector<float>{1.0f, inf, 2.0f}, want), inf);
  EXPECT_EQ(nmse(std::vector<float>{1.0f, -2.0f}, want), inf);
  EXPECT_EQ(nmse(std::vector<float>{0.0f, 0.0f}, std::vector<float>{0.0f, 0.0f}), 0.0);
  EXPECT_EQ(nmse(std::vector<float>{0.0f, 1e-30f}, std::vector<float>{0.0f, 0.0f}), inf);
  EXPECT_EQ(nmse(std::vector<float>{nan, 1.0f}, std::vector<float>{nan, 1.0f}), 0.0);
}

}  // namespace
}  // namespace kvflash::testing
