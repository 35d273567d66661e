// `kvflash plan` and `kvflash routes` as scripts see them: exit status, one error line, and the JSON keys.
#include <gtest/gtest.h>

#include <regex>

#include "cli/cli_runner.h"
#include "gguf/gguf_writer.h"
#include "plan/sweep.h"

namespace kvflash {
namespace {

using testing::CliResult;
using testing::CliSandbox;

/// The integer after "key": in a flat JSON text (first occurrence); -1 when absent or not an integer.
int64_t json_int(const std::string& json, const std::string& key) {
  std::smatch m;
  if (!std::regex_search(json, m, std::regex("\"" + key + "\":(-?[0-9]+)"))) return -1;
  return std::stoll(m[1]);
}

std::string json_raw(const std::string& json, const std::string& key) {
  std::smatch m;
  if (!std::regex_search(json, m, std::regex("\"" + key + "\":(true|false|null)"))) return "";
  return m[1];
}

void expect_one_error_line(const CliResult& r, const std::string& part) {
  EXPECT_EQ(r.signal, 0);
  EXPECT_GE(r.exit_code, 1);
  EXPECT_EQ(r.stderr_lines(), 1) << r.err;
  EXPECT_NE(r.err.find(part), std::string::npos) << r.err;
}

TEST(CliPlan, JsonHasTheKeysScriptsRelyOn) {
  CliSandbox box;
  const CliResult r = box.run({"plan", "--model", "llama3-8b", "--ctx", "8192", "--budget", "16GiB", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // 32 layers x 8192 tokens x 8 KV heads x (128 + 128) f16 values = 1 GiB.
  EXPECT_EQ(json_int(r.out, "kv_cache_bytes"), int64_t{1} << 30);
  EXPECT_EQ(json_int(r.out, "workspace_bytes") + (int64_t{1} << 30), json_int(r.out, "total_bytes"));
  EXPECT_EQ(json_raw(r.out, "fits"), "true");
  const size_t mc = r.out.find("\"max_context\":{");
  ASSERT_NE(mc, std::string::npos) << r.out;
  const std::string max_context = r.out.substr(mc, r.out.find('}', mc) - mc);
  for (const KvTraits& t : all_kv_types()) {
    EXPECT_NE(max_context.find("\"" + std::string(t.name) + "\":"), std::string::npos) << t.name;
  }
  if (json_int(r.out, "workspace_bytes") == 0) {
    // f16 at 128 KiB per token: 16 GiB holds exactly 131072 tokens.
    EXPECT_EQ(json_int(max_context, "f16"), 131072);
  }
  EXPECT_EQ(r.out.back(), '\n');
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << "one object on one line";
}

TEST(CliPlan, DoesNotFitAndQuantizedTypesSaveMemory) {
  CliSandbox box;
  const CliResult f16 = box.run({"plan", "--model", "llama3-70b", "--ctx", "131072", "--budget", "16GiB", "--json"});
  const CliResult q4 = box.run({"plan", "--model", "llama3-70b", "--ctx", "131072", "-ctk", "q4_0", "-ctv", "q4_0",
                                "--budget", "16GiB", "--json"});
  ASSERT_EQ(f16.exit_code, 0) << f16.err;
  ASSERT_EQ(q4.exit_code, 0) << q4.err;
  EXPECT_EQ(json_raw(f16.out, "fits"), "false");
  EXPECT_LT(json_int(q4.out, "total_bytes"), json_int(f16.out, "total_bytes"));
  EXPECT_EQ(json_int(q4.out, "kv_cache_bytes"), 80LL * 131072 * 8 * (72 + 72));
}

TEST(CliPlan, HumanReadableByDefault) {
  CliSandbox box;
  const CliResult r = box.run({"plan", "--model", "gemma-3-12b", "--ctx", "32768", "-ctk", "q8_0", "-ctv", "turbo3",
                               "--budget", "8GiB"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("40 sliding-window layers"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("budget (MiB) | 8192.00 total = "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("turbo3"), std::string::npos);
  EXPECT_NE(r.out.find("fits"), std::string::npos);
}

TEST(CliPlan, ReadsAGgufHeader) {
  CliSandbox box;
  box.write("tiny.gguf", gguf::testing::llama_like().bytes());
  const CliResult r = box.run({"plan", "--gguf", "tiny.gguf", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json_int(r.out, "layers"), 4);
  EXPECT_EQ(json_int(r.out, "context"), 8192) << "the file's context_length is the default";
  EXPECT_EQ(json_int(r.out, "kv_cache_bytes"), 4LL * 8192 * 8 * 512);
  EXPECT_EQ(json_raw(r.out, "fits"), "null");
}

TEST(CliPlan, CorruptOrMissingGgufIsOneErrorLine) {
  CliSandbox box;
  std::vector<uint8_t> bytes = gguf::testing::llama_like().bytes();
  bytes.resize(40);
  box.write("cut.gguf", bytes);
  expect_one_error_line(box.run({"plan", "--gguf", "cut.gguf"}), "cut.gguf: metadata_kv_count = 9 is more pairs than");
  box.write("text.gguf", std::vector<uint8_t>{'h', 'e', 'l', 'l', 'o', '\n'});
  expect_one_error_line(box.run({"plan", "--gguf", "text.gguf"}), "not a GGUF file");
  expect_one_error_line(box.run({"plan", "--gguf", "absent.gguf"}), "no such file");
  EXPECT_TRUE(box.entries().count("cut.gguf"));
}

TEST(CliPlan, BadFlagsAreOneErrorLine) {
  CliSandbox box;
  expect_one_error_line(box.run({"plan", "--model", "llama3-8b", "-ctk", "q9"}), "q9");
  expect_one_error_line(box.run({"plan", "--model", "llama3-8b", "--budget", "lots"}), "--budget");
  expect_one_error_line(box.run({"plan", "--model", "llama3-8b", "--ctx", "0"}), "--ctx 0 must be >= 1");
  expect_one_error_line(box.run({"plan", "--model", "gpt5"}), "presets: llama3-8b");
  expect_one_error_line(box.run({"plan"}), "give exactly one of --model and --gguf");
}

TEST(CliRoutes, ExplainsTheRouteOfEveryBackend) {
  CliSandbox box;
  const CliResult r = box.run({"routes", "--n-kv", "65537", "--d-k", "576", "--d-v", "512", "--heads-q", "128",
                               "--heads-kv", "1", "-ctk", "q8_0", "-ctv", "turbo3", "--mask", "causal", "--softcap",
                               "30", "--paged"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (BackendKind b : plan::routable_backends()) {
    EXPECT_NE(r.out.find("backend " + std::string(backend_name(b))), std::string::npos) << r.out;
  }
  EXPECT_NE(r.out.find("route: "), std::string::npos);
  EXPECT_NE(r.out.find("paged (page_rows 16"), std::string::npos) << r.out;
}

TEST(CliRoutes, AnInvalidProblemIsOneErrorLineNamingTheField) {
  CliSandbox box;
  const CliResult r = box.run({"routes", "--n-kv", "100", "--d-k", "80", "-ctk", "q4_0"});
  expect_one_error_line(r, "d_k = 80 is not a multiple of q4_0's block size 32");
  expect_one_error_line(box.run({"routes", "--n-kv", "100", "--mask", "sometimes"}), "--mask sometimes");
  expect_one_error_line(box.run({"routes"}), "--n-kv is required");
}

TEST(CliRoutes, SweepPrintsFullCoverage) {
  CliSandbox box;
  const CliResult r = box.run({"routes", "--sweep", "--stride", "997"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  for (BackendKind b : plan::routable_backends()) {
    EXPECT_TRUE(std::regex_search(r.out, std::regex(std::string(backend_name(b)) + " +[0-9]+ +[0-9]+ +100.00%")))
        << r.out;
  }
  EXPECT_EQ(r.out.find("FAILURE"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace kvflash
