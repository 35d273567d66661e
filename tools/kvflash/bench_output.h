// How `kvflash bench` prints its rows: a markdown table, one JSON array, CSV, and a self-contained HTML report with
// SVG charts.
#pragma once

#include <string>
#include <vector>

#include "bench_runner.h"

namespace kvflash::cli {

/// What the whole run was, for headers and the report.
struct BenchRunInfo {
  std::string command;  // the command line as typed
  std::string model;    // preset or GGUF name, with its heads and dims
  std::string machine;  // CPU model, threads, ISA
  double read_bw_gbps = 0;
  std::string bandwidth_name = "read bandwidth";  // what read_bw_gbps is (cuda: the device copy bandwidth)
  int threads = 0;
  std::string load;  // /proc/loadavg at the start and at the end: other work on the machine skews timings
  std::string timing;  // cuda: what the events bracket (empty for host backends: wall time of each call)
};

std::string bench_markdown(const BenchRunInfo& info, const std::vector<BenchRow>& rows);

/// One JSON array of row objects; every row has backend, ktype, vtype, kind, depth, n_q, n_seq, us_median, us_min,
/// us_max, tokens_per_s, kv_gbps, peak_bytes, tflops, and more.
std::string bench_json(const std::vector<BenchRow>& rows);

/// A header line and one line per row, the JSON fields in the same order.
std::string bench_csv(const std::vector<BenchRow>& rows);

/// A self-contained HTML page: decode throughput and KV read bandwidth against depth per KV type, memory against
/// depth, and the full table.
std::string bench_html(const BenchRunInfo& info, const std::vector<BenchRow>& rows);

}  // namespace kvflash::cli
