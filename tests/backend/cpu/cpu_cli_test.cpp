// `kvflash attend --backend cpu` (the planner's route to the cpu kernels) against `--backend ref` on the same files.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "backend/cpu/cpu_check.h"
#include "cli/cli_runner.h"
#include "cli/random_arrays.h"
#include "io/npy.h"

namespace kvflash::cpu_test {
namespace {

using kvflash::testing::CliResult;
using kvflash::testing::CliSandbox;

TEST(CpuCli, AttendOnTheCpuBackendMatchesTheReference) {
  CliSandbox box;
  const int64_t n_head_q = 8, n_head_kv = 2, n_q = 3, n_kv = 300, d = 128;
  box.write_npy("q.npy", {n_head_q, n_q, d}, kvflash::testing::random_rows(n_head_q * n_q * d, d, 11));
  box.write_npy("k.npy", {n_head_kv, n_kv, d}, kvflash::testing::random_rows(n_head_kv * n_kv * d, d, 12));
  box.write_npy("v.npy", {n_head_kv, n_kv, d}, kvflash::testing::random_rows(n_head_kv * n_kv * d, d, 13));
  for (const char* types : {"q4_0:turbo3", "f16:q8_0"}) {
    const std::string t(types);
    const std::string ktype = t.substr(0, t.find(':')), vtype = t.substr(t.find(':') + 1);
    std::vector<std::vector<float>> outputs;
    for (const char* backend : {"ref", "cpu"}) {
      const std::string out = std::string("o_") + backend + ".npy";
      const CliResult r =
          box.run({"attend", "--q", "q.npy", "--k", "k.npy", "--v", "v.npy", "--ktype", ktype, "--vtype", vtype,
                   "--causal", "--softcap", "0.5", "--backend", backend, "--out", out});
      ASSERT_EQ(r.exit_code, 0) << backend << ": " << r.err;
      StatusOr<io::NpyF32> o = io::read_npy_f32(box.path(out));
      ASSERT_TRUE(o.ok()) << o.status().message();
      outputs.push_back(o->values);
    }
    EXPECT_LE(kvflash::testing::nmse(outputs[1], outputs[0]), kMaxNmse) << types;
  }
}

}  // namespace
}  // namespace kvflash::cpu_test
