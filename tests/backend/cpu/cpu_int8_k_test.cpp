// The integer score path (int8_dot.h): K stored as q8_0 or q4_0 is dotted with Q quantized to int8 per 32-value
// block, in tasks of at most 4 query rows (larger tasks dequantize a tile). Checked against the reference on every
// flavour this machine runs, over the row blockings (1 to 4 rows, and GQA groups 1 to 8 times 1 to 4 query rows
// either side of the switch), key counts that leave a key of a pair alone, every option, paged and strided layouts,
// and K bytes at the int8 extreme -128 (the magnitude/sign trick must not wrap).
#include <gtest/gtest.h>

#include <cstring>

#include "backend/cpu/cpu_check.h"
#include "backend/cpu/isa.h"
#include "format/blocks.h"

namespace kvflash::cpu_test {
namespace {

std::vector<cpu::Isa> flavours_here() {
  std::vector<cpu::Isa> out;
  for (cpu::Isa isa : {cpu::Isa::portable, cpu::Isa::avx2, cpu::Isa::avx512}) {
    if (cpu::isa_supported(isa)) out.push_back(isa);
  }
  return out;
}

void expect_every_flavour_matches(const ProblemSpec& spec, int n_splits) {
  StatusOr<HostProblem> hp = HostProblem::make(spec);
  ASSERT_TRUE(hp.ok()) << hp.status().message() << " for " << describe_spec(spec);
  const std::vector<float> want = run_reference(*hp);
  for (cpu::Isa isa : flavours_here()) {
    cpu::LaunchParams launch;
    launch.n_splits = n_splits;
    launch.isa = isa;
    EXPECT_LE(testing::nmse(run_cpu(*hp, launch), want), kMaxNmse)
        << cpu::isa_name(isa) << " " << describe_spec(spec) << " n_splits " << n_splits;
  }
}

TEST(CpuInt8K, RowBlockingsAndKeyRemaindersMatchTheReference) {
  uint64_t seed = 900;
  for (KvType k : {KvType::q8_0, KvType::q4_0}) {
    for (int64_t group : {1, 2, 3, 5, 8}) {
      for (int64_t n_q : {1, 2, 4}) {
        ProblemSpec spec;
        spec.shape = {/*n_seq=*/1, n_q, /*n_kv=*/37 + group, /*n_head_q=*/2 * group, /*n_head_kv=*/2, 64, 64};
        spec.ktype = k;
        spec.vtype = seed % 2 ? KvType::f16 : k;
        spec.seed = seed++;
        expect_every_flavour_matches(spec, 1 + static_cast<int>(seed % 2));
      }
    }
  }
}

TEST(CpuInt8K, EveryVTypeOptionAndLayout) {
  uint64_t seed = 950;
  for (KvType k : {KvType::q8_0, KvType::q4_0}) {
    for (const KvTraits& v : all_kv_types()) {
      ProblemSpec spec;
      spec.shape = {2, 1, 200, 8, 2, 128, kv_traits(v.type).rotated ? 96 : 128};  // 4 rows a task: integer K
      spec.ktype = k;
      spec.vtype = v.type;
      spec.layout = seed % 3 == 0 ? KvLayout::paged : seed % 3 == 1 ? KvLayout::strided_padded : KvLayout::contiguous;
      spec.mask = seed % 2 ? MaskKind::f16 : MaskKind::f32_broadcast_heads;
      spec.causal = true;
      spec.window = seed % 4 == 0 ? 120 : 0;
      spec.alibi_max_bias = seed % 3 == 2 ? 8.0 : 0.0;
      spec.softcap = seed % 5 == 1 ? 30.0 : 0.0;
      spec.sinks = seed % 2 == 0;
      spec.varlen = true;
      spec.seed = seed++;
      expect_every_flavour_matches(spec, 3);
    }
  }
}

TEST(CpuInt8K, LongDecodeRowsAtTheDecodeShape) {
  // 4 query heads per KV head and 1 or 4 rows over 2000 keys: the error of Q's 8-bit rounding adds up over many
  // keys, which short problems would not show.
  uint64_t seed = 980;
  for (KvType k : {KvType::q8_0, KvType::q4_0}) {
    for (int64_t n_q : {1, 4}) {
      ProblemSpec spec;
      spec.shape = {1, n_q, 2000, 8, 2, 128, 128};
      spec.ktype = spec.vtype = k;
      spec.layout = KvLayout::paged;
      spec.causal = true;
      spec.seed = seed++;
      expect_every_flavour_matches(spec, 4);
    }
  }
}

TEST(CpuInt8K, KValuesOfMinus128AreExact) {
  // A q8_0 quantizer never writes -128, but a cache may hold it; |k| * (q with k's sign) must stay exact there.
  ProblemSpec spec;
  spec.shape = {1, 2, 64, 4, 2, 64, 64};
  spec.ktype = KvType::q8_0;
  spec.vtype = KvType::f16;
  spec.seed = 990;
  StatusOr<HostProblem> hp = HostProblem::make(spec);
  ASSERT_TRUE(hp.ok()) << hp.status().message();
  const HostProblem::Buffer k = hp->k();
  ASSERT_EQ(k.bytes % sizeof(format::BlockQ8_0), 0u) << "contiguous q8_0 rows are whole blocks";
  auto* blocks = static_cast<format::BlockQ8_0*>(const_cast<void*>(k.data));  // the problem owns these bytes
  for (size_t b = 0; b < k.bytes / sizeof(format::BlockQ8_0); ++b) {
    for (int j = static_cast<int>(b % 5); j < 32; j += 5) blocks[b].qs[j] = -128;
  }
  const std::vector<float> want = run_reference(*hp);
  for (cpu::Isa isa : flavours_here()) {
    cpu::LaunchParams launch;
    launch.isa = isa;
    EXPECT_LE(testing::nmse(run_cpu(*hp, launch), want), kMaxNmse) << cpu::isa_name(isa);
  }
}

}  // namespace
}  // namespace kvflash::cpu_test
