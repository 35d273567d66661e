// The kernel instance generator: what it emits for the real table (an empty registry when there are no cuda rows)
// and for a fixture table with cuda rows (one instance per type pair and head dims, a registry that dispatches to
// each, all of it compiling).
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "plan/kernel_table.h"
#include "plan/test_tables.h"

namespace kvflash::plan {
namespace {

namespace fs = std::filesystem;

/// Runs `command`; returns its exit status and stdout.
int run(const std::string& command, std::string* out = nullptr) {
  std::FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return -1;
  std::string text;
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof buf, pipe)) text.append(buf, n);
  const int status = pclose(pipe);
  if (out != nullptr) *out = text;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string read(const fs::path& p) {
  std::ifstream in(p);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

fs::path fresh_dir(const std::string& name) {
  const fs::path dir = fs::path(KVFLASH_BINARY_DIR) / "test_output" / name;
  fs::remove_all(dir);
  return dir;
}

/// Instances the generator must emit for a table: cuda specialized rows x K types x V types x head-dim pairs.
size_t expected_instances(std::span<const KernelSpec> table) {
  size_t n = 0;
  for (const KernelSpec& k : table) {
    if (k.backend != BackendKind::cuda || k.generic) continue;
    // Every head-dim pair, plus a 16-query-vector instance per pair of qvec16_dims.
    n += static_cast<size_t>(__builtin_popcount(k.k_types) * __builtin_popcount(k.v_types)) *
         (k.head_dims.size() + k.qvec16_dims.size());
  }
  return n;
}

std::set<std::string> files_in(const fs::path& dir) {
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.insert(e.path().filename().string());
  return names;
}

TEST(GenInstances, RealTableListsWhatItWrites) {
  std::string listed;
  ASSERT_EQ(run(std::string(KVFLASH_GEN_INSTANCES_PATH) + " --list", &listed), 0) << listed;
  const fs::path dir = fresh_dir("gen_real");
  std::string out;
  ASSERT_EQ(run(std::string(KVFLASH_GEN_INSTANCES_PATH) + " --out " + dir.string(), &out), 0) << out;
  std::set<std::string> want;
  std::istringstream lines(listed);
  for (std::string line; std::getline(lines, line);) want.insert(line);
  EXPECT_EQ(want.size(), expected_instances(kKernels) + 1);
  EXPECT_TRUE(want.count("kernel_registry.cu"));
  want.insert("instances.stamp");
  EXPECT_EQ(files_in(dir), want);
  const std::string registry = read(dir / "kernel_registry.cu");
  EXPECT_NE(registry.find("Status run_cuda_kernel("), std::string::npos);
  int cuda_rows = 0;
  for (const KernelSpec& k : kKernels) {
    if (k.backend != BackendKind::cuda) continue;
    ++cuda_rows;
    EXPECT_NE(registry.find("case " + std::to_string(static_cast<int>(k.id)) + ":  // " + std::string(k.name)),
              std::string::npos);
  }
  // A pair of a row's qvec16_dims has a second instance (entry<..., 2>), run for routes of 16 query vectors per CTA.
  size_t wide_instances = 0;
  for (const KernelSpec& k : kKernels) {
    if (k.backend != BackendKind::cuda || k.generic) continue;
    wide_instances +=
        static_cast<size_t>(__builtin_popcount(k.k_types) * __builtin_popcount(k.v_types)) * k.qvec16_dims.size();
  }
  const auto count = [&](const std::string& text) {
    size_t n = 0;
    for (size_t at = registry.find(text); at != std::string::npos; at = registry.find(text, at + 1)) ++n;
    return n;
  };
  EXPECT_EQ(count(", 2>(const AttentionProblem&"), wide_instances) << "extern declarations";
  EXPECT_EQ(count(" && route.qvecs_per_cta == 16) {"), wide_instances) << "registry conditions";
  EXPECT_EQ(count(", 2>(p, route, workspace, s);"), wide_instances) << "registry calls";
  if (cuda_rows == 0) {
    // No cuda rows yet: the registry is still emitted, dispatches nothing, and needs no CUDA header.
    EXPECT_EQ(registry.find("case "), std::string::npos) << registry;
    EXPECT_EQ(registry.find("cuda.h"), std::string::npos) << registry;
  }
}

TEST(GenInstances, FixtureTableEmitsOneInstancePerTypePairAndHeadDims) {
  const fs::path dir = fresh_dir("gen_fixture");
  std::string out;
  ASSERT_EQ(run(std::string(KVFLASH_GEN_FIXTURE_PATH) + " --out " + dir.string(), &out), 0) << out;
  // The decode row reads 3 K types x 3 V types at 2 head-dim pairs; the generic row needs no instance.
  ASSERT_EQ(expected_instances(test_tables::kCudaLike), 18u);
  const std::set<std::string> files = files_in(dir);
  EXPECT_EQ(files.size(), 18u + 2);  // + registry + stamp
  const std::string one = read(dir / "inst_cuda_test_decode_dk576_dv512_turbo3_q8_0.cu");
  EXPECT_NE(one.find("#include \"backend/cuda/decode_split_kv.cuh\""), std::string::npos) << one;
  EXPECT_NE(one.find("template Status launch_decode<576, 512, KvType::turbo3, KvType::q8_0>("), std::string::npos)
      << one;
  const std::string registry = read(dir / "kernel_registry.cu");
  EXPECT_NE(registry.find("return cuda::launch_generic(p, route, workspace, s);"), std::string::npos) << registry;
  EXPECT_NE(registry.find("if (sh.d_k == 128 && sh.d_v == 128 && p.k.type == KvType::f16 && p.v.type == "
                          "KvType::turbo3) {"),
            std::string::npos)
      << registry;
  EXPECT_NE(registry.find("extern template Status launch_decode<128, 128, KvType::q8_0, KvType::f16>("),
            std::string::npos);

  // Everything it wrote compiles (against stand-in cuda headers with the same declarations).
  const std::string includes = std::string(" -std=c++20 -Wall -Wextra -Werror -fsyntax-only -I") + KVFLASH_SOURCE_DIR +
                               "/tests/plan/gen_fixture -I" + KVFLASH_SOURCE_DIR + "/include -I" + KVFLASH_SOURCE_DIR +
                               "/src -I" + KVFLASH_BINARY_DIR + "/include -x c++ ";
  for (const std::string& f : {std::string("kernel_registry.cu"),
                               std::string("inst_cuda_test_decode_dk576_dv512_turbo3_q8_0.cu")}) {
    std::string diagnostics;
    EXPECT_EQ(run(std::string(KVFLASH_CXX_COMPILER) + includes + (dir / f).string(), &diagnostics), 0)
        << f << ":\n" << diagnostics;
  }
}

TEST(GenInstances, UnchangedFilesAreNotRewritten) {
  const fs::path dir = fresh_dir("gen_twice");
  ASSERT_EQ(run(std::string(KVFLASH_GEN_FIXTURE_PATH) + " --out " + dir.string()), 0);
  const fs::path f = dir / "inst_cuda_test_decode_dk128_dv128_f16_f16.cu";
  const auto first = fs::last_write_time(f);
  fs::last_write_time(f, first - std::chrono::hours(1));  // as if written an hour ago
  ASSERT_EQ(run(std::string(KVFLASH_GEN_FIXTURE_PATH) + " --out " + dir.string()), 0);
  EXPECT_EQ(fs::last_write_time(f), first - std::chrono::hours(1)) << "an unchanged instance must not recompile";
}

TEST(GenInstances, BadArgumentsAreAUsageError) {
  std::string out;
  EXPECT_EQ(run(std::string(KVFLASH_GEN_INSTANCES_PATH) + " --bogus", &out), 2);
  EXPECT_NE(out.find("usage: gen_instances"), std::string::npos);
}

}  // namespace
}  // namespace kvflash::plan
