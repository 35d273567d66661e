// `kvflash bench`: the contract scripts depend on (-o json rows and their fields, -ctk/-ctv pairing, csv, the HTML
// report), on a tiny run, and its usage errors.
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "cli/cli_runner.h"
#include "kvcache/device_transfer.h"
#include "kvflash/backend.h"

namespace kvflash {
namespace {

using testing::CliResult;
using testing::CliSandbox;

// A fast run: 2 type pairs x 2 depths x (2 decode widths + 1 prefill chunk) = 12 rows.
const std::vector<std::string> kTinyRun = {"bench",    "--backend", "cpu",        "-d", "0,40", "-ctk",
                                           "q8_0,f16", "-ctv",      "turbo4,f16", "-n", "2",    "-q",
                                           "1,3",      "-p",        "8",          "-r", "2"};

std::vector<std::string> with(std::vector<std::string> args, const std::vector<std::string>& extra) {
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

// The JSON objects of a flat array of flat objects (bench's rows hold no nested braces).
std::vector<std::string> json_objects(const std::string& text) {
  std::vector<std::string> out;
  for (size_t open = text.find('{'); open != std::string::npos; open = text.find('{', open + 1)) {
    const size_t close = text.find('}', open);
    if (close == std::string::npos) break;
    out.push_back(text.substr(open, close - open + 1));
  }
  return out;
}

std::string json_string(const std::string& object, const std::string& key) {
  const std::string needle = "\"" + key + "\": \"";
  const size_t at = object.find(needle);
  if (at == std::string::npos) return "";
  const size_t start = at + needle.size();
  return object.substr(start, object.find('"', start) - start);
}

TEST(BenchCli, JsonRowsCarryTheFieldsScriptsDependOn) {
  CliSandbox box;
  const CliResult r = box.run(with(kTinyRun, {"-o", "json"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_FALSE(r.out.empty());
  EXPECT_EQ(r.out.front(), '[');
  EXPECT_EQ(r.out[r.out.find_last_not_of(" \n")], ']');
  const std::vector<std::string> rows = json_objects(r.out);
  ASSERT_EQ(rows.size(), 12u) << r.out;
  std::set<std::string> pairs, kinds;
  for (const std::string& row : rows) {
    for (const char* key : {"backend", "ktype", "vtype", "kind", "depth", "n_q", "n_seq", "us_median", "us_min",
                            "us_max", "tokens_per_s", "kv_gbps", "peak_bytes"}) {
      EXPECT_NE(row.find("\"" + std::string(key) + "\": "), std::string::npos) << key << " missing in " << row;
    }
    EXPECT_EQ(json_string(row, "backend"), "cpu");
    EXPECT_EQ(json_string(row, "timing"), "wall") << row;
    EXPECT_EQ(json_string(row, "kernel"), "cpu.generic") << row;
    pairs.insert(json_string(row, "ktype") + "/" + json_string(row, "vtype"));
    kinds.insert(json_string(row, "kind"));
  }
  EXPECT_EQ(pairs, (std::set<std::string>{"q8_0/turbo4", "f16/f16"})) << "-ctk/-ctv pair up position by position";
  EXPECT_EQ(kinds, (std::set<std::string>{"decode", "prefill"}));
  EXPECT_TRUE(r.err.empty() || r.err.find("kvflash bench: ") == 0) << "stderr holds only progress lines: " << r.err;
}

TEST(BenchCli, CsvAndMarkdownAndTheHtmlReport) {
  CliSandbox box;
  CliResult r = box.run(with(kTinyRun, {"-o", "csv", "--report", "report.html"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<std::string> lines;
  for (size_t at = 0; at < r.out.size();) {
    const size_t end = r.out.find('\n', at);
    lines.push_back(r.out.substr(at, end - at));
    at = end == std::string::npos ? r.out.size() : end + 1;
  }
  ASSERT_EQ(lines.size(), 13u) << r.out;
  EXPECT_EQ(lines[0].rfind("backend,ktype,vtype,kind,depth,n_q,n_seq,us_median,us_min,us_max,tokens_per_s,kv_gbps,"
                           "peak_bytes",
                           0),
            0u)
      << lines[0];
  const std::vector<uint8_t> html = box.read("report.html");
  const std::string page(html.begin(), html.end());
  EXPECT_EQ(page.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_NE(page.find("<svg"), std::string::npos);
  EXPECT_NE(page.find("q8_0/turbo4"), std::string::npos);
  EXPECT_EQ(page.find("<script"), std::string::npos) << "self-contained, no scripts";

  r = box.run(kTinyRun);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("| backend | K | V | depth | step |"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("| peak | kernel (splits) |"), std::string::npos) << r.out;
  // Every row names its kernel and split count, decode rows as well as prefill rows.
  EXPECT_NE(r.out.find("| decode x1 | "), std::string::npos) << r.out;
  size_t rows_with_kernel = 0;
  for (size_t at = r.out.find("| cpu.generic ("); at != std::string::npos; at = r.out.find("| cpu.generic (", at + 1)) {
    ++rows_with_kernel;
  }
  EXPECT_EQ(rows_with_kernel, 12u) << r.out;
  EXPECT_NE(r.out.find("measured read bandwidth"), std::string::npos);
}

TEST(BenchCli, UsageErrorsAreOneLine) {
  CliSandbox box;
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"bench", "-ctk", "q8_0,f16", "-ctv", "q4_0,f16,q8_0"}, "pair up position by position"},
      {{"bench", "-ctk", "q9_0"}, "unknown type 'q9_0'"},
      {{"bench", "-o", "xml"}, "md, json, csv"},
      {{"bench", "-r", "0"}, "-r 0"},
      {{"bench", "-d", "-5"}, "--depth"},
      {{"bench", "--backend", "gpu"}, "unknown backend 'gpu'"},
      {{"bench", "--model", "no-such-model"}, "no-such-model"},
      {{"bench", "-n", "0", "-p", "0"}, "nothing to time"},
      {{"bench", "--frobnicate"}, "unknown flag"},
      {{"bench", "--timing", "wall"}, "--timing wall is not one of device, launch"},
      {{"bench", "--backend", "cpu", "--timing", "device"}, "--timing applies to --backend cuda"},
  };
  for (const auto& [args, needle] : cases) {
    const CliResult r = box.run(args);
    EXPECT_EQ(r.signal, 0);
    EXPECT_GE(r.exit_code, 1);
    EXPECT_LE(r.exit_code, 125);
    EXPECT_EQ(r.stderr_lines(), 1) << r.err;
    EXPECT_NE(r.err.find(needle), std::string::npos) << needle << " not in: " << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
  if (!backend_available(BackendKind::cuda)) {
    // A machine without a GPU (or a build without CUDA): one line that says which, status 2, nothing on stdout.
    const CliResult r = box.run({"bench", "-p", "512", "-d", "0,32768,131072", "-ctk", "f16,q8_0,q4_0,turbo3",
                                 "--backend", "cuda"});
    EXPECT_EQ(r.signal, 0);
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_EQ(r.stderr_lines(), 1) << r.err;
    EXPECT_EQ(r.err.rfind("kvflash bench: error: backend 'cuda' is not available", 0), 0u) << r.err;
    EXPECT_NE(r.err.find(kvcache::device_transfer_compiled() ? "no usable CUDA device" : "in this build"),
              std::string::npos)
        << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
}

double json_number(const std::string& object, const std::string& key) {
  const std::string needle = "\"" + key + "\": ";
  const size_t at = object.find(needle);
  return at == std::string::npos ? -1.0 : std::stod(object.substr(at + needle.size()));
}

// The device path end to end: a device-resident cache per depth, event-timed steps, the copy bandwidth, TFLOP/s
// on prefill rows and the allocator's peak bytes on every row.
TEST(BenchCli, CudaBackendSmokeRun) {
  if (!backend_available(BackendKind::cuda)) GTEST_SKIP() << "skipped: no CUDA device";
  CliSandbox box;
  const CliResult r = box.run({"bench", "--backend", "cuda", "-d", "0,300", "-ctk", "f16,q4_0", "-n", "2", "-q", "1",
                               "-p", "64", "-r", "2", "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::vector<std::string> rows = json_objects(r.out);
  ASSERT_EQ(rows.size(), 8u) << r.out;  // 2 types x 2 depths x (decode + prefill)
  for (const std::string& row : rows) {
    EXPECT_EQ(json_string(row, "backend"), "cuda");
    EXPECT_EQ(json_string(row, "timing"), "device") << row;
    EXPECT_EQ(json_string(row, "kernel").rfind("cuda.", 0), 0u) << row;
    EXPECT_GE(json_number(row, "n_splits"), 1.0) << row;
    EXPECT_GT(json_number(row, "caller_cpu_us_median"), 0.0) << "attend()'s host time, reported apart" << row;
    EXPECT_GT(json_number(row, "us_median"), 0.0) << row;
    EXPECT_GT(json_number(row, "kv_gbps"), 0.0) << row;
    EXPECT_GT(json_number(row, "read_bw_gbps"), 0.0) << row;
    EXPECT_GT(json_number(row, "kv_cache_bytes"), 0.0) << row;
    EXPECT_GE(json_number(row, "peak_bytes"), json_number(row, "kv_cache_bytes")) << row;
    if (json_string(row, "kind") == "prefill") {
      EXPECT_GT(json_number(row, "tflops"), 0.0) << row;
    }
  }
  const CliResult md = box.run({"bench", "--backend", "cuda", "-d", "0", "-ctk", "q8_0", "-n", "1", "-q", "1", "-p",
                                "32", "-r", "1"});
  ASSERT_EQ(md.exit_code, 0) << md.err;
  EXPECT_NE(md.out.find("% copy bw | TFLOP/s | peak | kernel (splits) |"), std::string::npos) << md.out;
  EXPECT_NE(md.out.find("| cuda.decode_split_kv.q8_0 ("), std::string::npos) << "decode rows name their kernel\n"
                                                                             << md.out;
  EXPECT_NE(md.out.find("device copy bandwidth"), std::string::npos) << md.out;
  EXPECT_NE(md.out.find("timing: CUDA events"), std::string::npos) << md.out;

  // --timing launch: the same events from an idle device, so the host's launch cost counts too.
  const CliResult launch = box.run({"bench", "--backend", "cuda", "-d", "300", "-ctk", "q4_0", "-n", "2", "-q", "1",
                                    "-p", "0", "-r", "2", "-o", "json", "--timing", "launch"});
  ASSERT_EQ(launch.exit_code, 0) << launch.err;
  const std::vector<std::string> launch_rows = json_objects(launch.out);
  ASSERT_EQ(launch_rows.size(), 1u) << launch.out;
  EXPECT_EQ(json_string(launch_rows[0], "timing"), "launch");
  EXPECT_GT(json_number(launch_rows[0], "us_median"), 0.0);
}

}  // namespace
}  // namespace kvflash
