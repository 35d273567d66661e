// MemoryReport: every byte in a named bucket; the summary line accounts for the whole device.
#include <gtest/gtest.h>

#include "kvflash/memory_report.h"
#include "plan/deployment.h"

namespace kvflash {
namespace {

constexpr int64_t kMiB = 1024 * 1024;

TEST(MemoryReport, UnaccountedIsWhatNoBucketExplains) {
  MemoryReport r;
  r.device = "cuda:0";
  r.device_total = 1000 * kMiB;
  r.device_free = 600 * kMiB;
  r.add("kv.layer.0", MemoryKind::kv_cache, 100 * kMiB);
  r.add("kv.layer.1", MemoryKind::kv_cache, 150 * kMiB);
  r.add("workspace", MemoryKind::workspace, 40 * kMiB);
  r.add("staging", MemoryKind::staging, 6 * kMiB);
  r.add("weights", MemoryKind::other, 4 * kMiB);
  EXPECT_EQ(r.bytes(MemoryKind::kv_cache), 250 * kMiB);
  EXPECT_EQ(r.ours(), 300 * kMiB);
  EXPECT_EQ(r.unaccounted(), 100 * kMiB);
  EXPECT_EQ(r.summary_line(),
            "cuda:0 (MiB) | 1000.00 total = 600.00 free + (300.00 = 250.00 kv + 40.00 workspace + 10.00 other) + "
            "100.00 unaccounted");
  const std::string table = r.to_string();
  EXPECT_NE(table.find("kv.layer.1"), std::string::npos) << table;
  EXPECT_NE(table.find("total staging"), std::string::npos) << table;
}

TEST(MemoryReport, ManyLayersAreFoldedButCounted) {
  MemoryReport r;
  r.device = "host";
  for (int l = 0; l < 40; ++l) r.add("kv.layer." + std::to_string(l), MemoryKind::kv_cache, kMiB);
  const std::string table = r.to_string();
  EXPECT_NE(table.find("kv.layer.0 "), std::string::npos);
  EXPECT_NE(table.find("kv.layer.39"), std::string::npos);
  EXPECT_EQ(table.find("kv.layer.20"), std::string::npos);
  EXPECT_NE(table.find("40.00 MiB"), std::string::npos) << table;
}

TEST(MemoryReport, DeploymentReportHasEveryPlannedByte) {
  plan::DeploymentInputs in;
  in.model = *model_preset("gemma-3-12b");
  in.context = 4096;
  in.other_bytes = 123456;
  in.caps = caps_for(BackendKind::ref);
  auto p = plan::plan_deployment(in);
  ASSERT_TRUE(p.ok());
  const int64_t budget = int64_t{2} << 30;
  const MemoryReport r = plan::deployment_report(*p, budget);
  EXPECT_EQ(r.ours(), p->total_bytes);
  EXPECT_EQ(r.bytes(MemoryKind::kv_cache), p->kv_bytes);
  EXPECT_EQ(r.device_free, budget - p->total_bytes);
  EXPECT_EQ(r.unaccounted(), 0);
}

}  // namespace
}  // namespace kvflash
