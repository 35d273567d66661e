#include "bench_output.h"

#include <cmath>
#include <cstdio>

namespace kvflash::cli {

namespace {

std::string fmt(const char* format, double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, x);
  return buf;
}

std::string mib(int64_t bytes) { return fmt("%.1f MiB", static_cast<double>(bytes) / (1024.0 * 1024.0)); }

std::string step_name(const BenchRow& r) {
  return r.kind == "decode" ? "decode x" + std::to_string(r.n_q) : "prefill " + std::to_string(r.n_q);
}

// The fields of a row, in output order: name, value as JSON text, value as CSV text.
struct Field {
  const char* name;
  std::string json, csv;
};

std::string quoted(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

std::vector<Field> fields(const BenchRow& r) {
  const auto num = [](double x) { return std::isfinite(x) ? fmt("%.6g", x) : std::string("null"); };
  const auto integer = [](int64_t x) { return std::to_string(x); };
  return {
      {"backend", quoted(r.backend), r.backend},
      {"ktype", quoted(r.ktype), r.ktype},
      {"vtype", quoted(r.vtype), r.vtype},
      {"kind", quoted(r.kind), r.kind},
      {"depth", integer(r.depth), integer(r.depth)},
      {"n_q", integer(r.n_q), integer(r.n_q)},
      {"n_seq", integer(r.n_seq), integer(r.n_seq)},
      {"us_median", num(r.us_median), num(r.us_median)},
      {"us_min", num(r.us_min), num(r.us_min)},
      {"us_max", num(r.us_max), num(r.us_max)},
      {"tokens_per_s", num(r.tokens_per_s), num(r.tokens_per_s)},
      {"kv_gbps", num(r.kv_gbps), num(r.kv_gbps)},
      {"peak_bytes", integer(r.peak_bytes), integer(r.peak_bytes)},
      {"kv_bytes", integer(r.kv_bytes), integer(r.kv_bytes)},
      {"read_bw_gbps", num(r.read_bw_gbps), num(r.read_bw_gbps)},
      {"pct_read_bw", num(r.pct_read_bw), num(r.pct_read_bw)},
      {"kv_cache_bytes", integer(r.kv_cache_bytes), integer(r.kv_cache_bytes)},
      {"workspace_bytes", integer(r.workspace_bytes), integer(r.workspace_bytes)},
      {"rss_peak_bytes", integer(r.rss_peak_bytes), integer(r.rss_peak_bytes)},
      {"samples", integer(r.samples), integer(r.samples)},
      {"kernel", quoted(r.kernel), r.kernel},
      {"n_splits", integer(r.n_splits), integer(r.n_splits)},
      {"threads", integer(r.threads), integer(r.threads)},
      {"caller_cpu_us_median", num(r.caller_cpu_us_median), num(r.caller_cpu_us_median)},
      {"tflops", num(r.tflops), num(r.tflops)},
      {"timing", quoted(r.timing), r.timing},
  };
}

}  // namespace

std::string bench_markdown(const BenchRunInfo& info, const std::vector<BenchRow>& rows) {
  const bool device = info.bandwidth_name != "read bandwidth";
  std::string out = "model: " + info.model + "\nmachine: " + info.machine + ", measured " + info.bandwidth_name +
                    " " + fmt("%.1f GB/s", info.read_bw_gbps) +
                    (device ? std::string("\n") : " (" + std::to_string(info.threads) + " threads)\n") +
                    (info.timing.empty() ? std::string() : "timing: " + info.timing + "\n") +
                    "load average (1/5/15 min) at start and end: " + info.load + "\n\n";
  out += std::string("| backend | K | V | depth | step | us/step median (min-max) | tokens/s | KV GB/s | ") +
         (device ? "% copy bw" : "% read bw") + " | TFLOP/s | peak | kernel (splits) |\n";
  out += "|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---|\n";
  for (const BenchRow& r : rows) {
    out += "| " + r.backend + " | " + r.ktype + " | " + r.vtype + " | " + std::to_string(r.depth) + " | " +
           step_name(r) + (r.n_seq > 1 ? " x" + std::to_string(r.n_seq) + " seqs" : "") + " | " +
           fmt("%.1f", r.us_median) + " (" + fmt("%.1f", r.us_min) + "-" + fmt("%.1f", r.us_max) + ") | " +
           fmt("%.1f", r.tokens_per_s) + " | " + fmt("%.2f", r.kv_gbps) + " | " + fmt("%.0f%%", r.pct_read_bw) + " | " +
           (r.kind == "prefill" ? fmt("%.2f", r.tflops) : std::string("-")) + " | " + mib(r.peak_bytes) + " | " +
           r.kernel + " (" + std::to_string(r.n_splits) + ") |\n";
  }
  return out;
}

std::string bench_json(const std::vector<BenchRow>& rows) {
  std::string out = "[";
  for (size_t i = 0; i < rows.size(); ++i) {
    out += i == 0 ? "\n  {" : ",\n  {";
    const std::vector<Field> f = fields(rows[i]);
    for (size_t j = 0; j < f.size(); ++j) out += (j ? ", " : "") + quoted(f[j].name) + ": " + f[j].json;
    out += "}";
  }
  return out + "\n]\n";
}

std::string bench_csv(const std::vector<BenchRow>& rows) {
  std::string out;
  const std::vector<Field> header = fields(BenchRow{});
  for (size_t j = 0; j < header.size(); ++j) out += (j ? "," : "") + std::string(header[j].name);
  out += "\n";
  for (const BenchRow& r : rows) {
    const std::vector<Field> f = fields(r);
    for (size_t j = 0; j < f.size(); ++j) out += (j ? "," : "") + f[j].csv;
    out += "\n";
  }
  return out;
}

}  // namespace kvflash::cli
