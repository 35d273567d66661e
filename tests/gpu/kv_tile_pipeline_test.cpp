// The K/V tile pipeline that the decode and prefill kernels share (decode_common.cuh's KvPipeline): caches paged the
// way kvflash's own KvCache stores them ([head, row] inside a page, no padding), with pages smaller than a key tile,
// copied as 16-row runs; pages of a whole tile, copied as one span; and a page size that is neither, copied row by
// row. Every case against the reference oracle, planned and forced split counts.
#include <gtest/gtest.h>

#include "gpu/gpu_harness.h"

namespace kvflash::testing::gpu {
namespace {

ProblemSpec paged_spec(int64_t n_q, int64_t d, KvType kt, KvType vt, int64_t page_rows, uint64_t seed) {
  ProblemSpec spec;
  // 700 keys per sequence at most: no tile or page boundary lines up with a sequence's end.
  spec.shape = AttentionShape{/*n_seq=*/3, n_q, /*n_kv=*/700, /*n_head_q=*/8, /*n_head_kv=*/2, d, d};
  spec.ktype = kt;
  spec.vtype = vt;
  spec.layout = KvLayout::paged;
  spec.page_rows = page_rows;
  spec.varlen = true;
  spec.causal = n_q > 1;
  spec.seed = seed;
  return spec;
}

// 16, 32 and 48 rows: runs (smaller than the 64-key tile); 64: one span per tile; 24: rows one by one.
constexpr int64_t kPageRows[] = {16, 32, 48, 64, 24};

TEST(CudaKvPipeline, DecodeOverPagesSmallerThanATile) {
  KVFLASH_REQUIRE_GPU();
  uint64_t seed = 5000;
  // q4_0's 72-byte and turbo3's 50-byte rows are not multiples of 16 bytes: only whole runs move 16 bytes at once.
  const KvType pairs[][2] = {{KvType::q8_0, KvType::q8_0}, {KvType::q4_0, KvType::q4_0},
                             {KvType::turbo3, KvType::turbo3}, {KvType::turbo4, KvType::turbo4},
                             {KvType::f16, KvType::turbo3}};
  for (const auto& pair : pairs) {
    for (int64_t page_rows : kPageRows) {
      for (int64_t n_q : {1, 4}) {
        const ProblemSpec spec = paged_spec(n_q, 128, pair[0], pair[1], page_rows, ++seed);
        for (int64_t splits : {0, 3}) {
          const Comparison c = expect_matches_reference(spec, RunConfig{splits, 0, std::nullopt});
          EXPECT_TRUE(c.decode_kernel) << spec_name(spec) << " page_rows " << page_rows << " route " << c.route;
        }
      }
    }
  }
}

TEST(CudaKvPipeline, WideDecodeAndPrefillOverPagesSmallerThanATile) {
  KVFLASH_REQUIRE_GPU();
  uint64_t seed = 5500;
  for (int64_t page_rows : {16, 32}) {
    // Head dim 256: the wide decode kernel.
    for (KvType t : {KvType::q8_0, KvType::q4_0}) {
      const ProblemSpec spec = paged_spec(2, 256, t, t, page_rows, ++seed);
      const Comparison c = expect_matches_reference(spec, RunConfig{2, 0, std::nullopt});
      EXPECT_TRUE(c.decode_kernel) << spec_name(spec) << " route " << c.route;
    }
    // 40 new rows: the mma.sync prefill kernel, which reads through this pipeline, forced (the router may take a
    // wgmma row for some types), then whatever prefill row the planner takes.
    const std::pair<KvType, KernelId> prefill_rows[] = {{KvType::q8_0, KernelId::cuda_prefill_q8_0},
                                                        {KvType::q4_0, KernelId::cuda_prefill_q4_0},
                                                        {KvType::turbo3, KernelId::cuda_prefill_turbo3}};
    for (const auto& [t, row] : prefill_rows) {
      const ProblemSpec spec = paged_spec(40, 128, t, t, page_rows, ++seed);
      const Comparison forced = expect_matches_reference(spec, RunConfig{0, 0, row});
      EXPECT_EQ(forced.route, kernel_name(row)) << spec_name(spec);
      const Comparison planned = expect_matches_reference(spec);
      EXPECT_EQ(planned.route.rfind("cuda.prefill", 0), 0u) << spec_name(spec) << " routed to " << planned.route;
    }
  }
}

}  // namespace
}  // namespace kvflash::testing::gpu
