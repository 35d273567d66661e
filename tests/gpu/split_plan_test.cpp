// The whole-wave split rule of the CUDA backend (split_plan.h), a pure function: no device needed. The planner
// runs it for the decode rows (KvSplit::whole_waves; tests/plan/whole_wave_split_test.cpp checks the routes).
#include <gtest/gtest.h>

#include "backend/cuda/split_plan.h"

namespace kvflash::cuda {
namespace {

TEST(CudaSplitPlan, FillsWholeWavesWithWholeTiles) {
  const KernelGeometry g{/*key_tile=*/64, /*qvecs_per_cta=*/8, /*ctas_per_sm=*/2};
  // One sequence, 8 KV heads, 131072 keys on 132 SMs: 264 CTA slots; 32 splits (256 CTAs, 97%) are the fewest
  // that keep 95% of them busy.
  SplitPlan p = plan_splits({1, 1, 131072, 32, 8, 128, 128}, g, 132);
  EXPECT_EQ(p.n_splits, 32);
  EXPECT_EQ(p.keys_per_split % 64, 0);
  EXPECT_GE(p.n_splits * p.keys_per_split, 131072);
  // 16 sequences x 8 heads = 128 CTAs per split: 2 splits fill 97% of a wave; 3 would leave a 45%-full second one.
  p = plan_splits({16, 1, 32768, 32, 8, 128, 128}, g, 132);
  EXPECT_EQ(p.n_splits, 2);
  // A short cache never gets a split shorter than kMinTilesPerSplit (4) tiles, and an empty one gets a single split.
  p = plan_splits({1, 1, 200, 32, 8, 128, 128}, g, 132);
  EXPECT_EQ(p.n_splits, 1);
  p = plan_splits({1, 1, 512, 32, 8, 128, 128}, g, 132);
  EXPECT_EQ(p.n_splits, 2);
  p = plan_splits({1, 1, 0, 32, 8, 128, 128}, g, 132);
  EXPECT_EQ(p.n_splits, 1);
  // Query chunks: 32 query heads / 8 KV heads x 4 rows = 16 query vectors = 2 chunks of 8.
  p = plan_splits({1, 4, 4096, 32, 8, 128, 128}, g, 132);
  EXPECT_EQ(p.n_qchunks, 2);
}

}  // namespace
}  // namespace kvflash::cuda
