// The HTML report of `kvflash bench`: one self-contained page (inline SVG, no scripts, no external files).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>

#include "bench_output.h"

namespace kvflash::cli {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr const char* kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                   "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"};

std::string num(const char* format, double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, x);
  return buf;
}

std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '&':
        out += "&amp;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

struct Series {
  std::string name;
  std::vector<double> y;  // one per x category; NaN where there is no point
};

// A round step for about five grid lines up to `top`.
double grid_step(double top) {
  const double raw = top / 5.0;
  const double p = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0}) {
    if (m * p >= raw) return m * p;
  }
  return 10.0 * p;
}

// A line chart over categorical x (the depths), y from 0; an optional dashed horizontal reference line.
std::string line_chart(const std::string& title, const std::string& y_label, const std::vector<std::string>& x,
                       const std::vector<Series>& series, double reference = kNaN,
                       const std::string& reference_label = "") {
  const double w = 720, h = 340, left = 80, right = 190, top = 36, bottom = 48;
  const double pw = w - left - right, ph = h - top - bottom;
  double y_max = std::isfinite(reference) ? reference : 0.0;
  for (const Series& s : series)
    for (double v : s.y)
      if (std::isfinite(v)) y_max = std::max(y_max, v);
  if (!(y_max > 0)) y_max = 1;
  const double step = grid_step(y_max * 1.05);
  const double y_top = std::ceil(y_max * 1.05 / step) * step;
  const auto px = [&](size_t i) {
    return left + (x.size() <= 1 ? pw / 2 : pw * static_cast<double>(i) / static_cast<double>(x.size() - 1));
  };
  const auto py = [&](double v) { return top + ph * (1.0 - v / y_top); };

  std::string svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + num("%.0f", w) + "\" height=\"" +
                    num("%.0f", h) + "\" font-family=\"sans-serif\" font-size=\"12\">\n";
  svg += "<text x=\"" + num("%.0f", left) + "\" y=\"20\" font-size=\"15\" font-weight=\"bold\">" + escape(title) +
         "</text>\n";
  for (double v = 0; v <= y_top + step * 0.01; v += step) {
    svg += "<line x1=\"" + num("%.1f", left) + "\" x2=\"" + num("%.1f", left + pw) + "\" y1=\"" + num("%.1f", py(v)) +
           "\" y2=\"" + num("%.1f", py(v)) + "\" stroke=\"#ddd\"/>\n";
    svg += "<text x=\"" + num("%.1f", left - 6) + "\" y=\"" + num("%.1f", py(v) + 4) + "\" text-anchor=\"end\">" +
           num("%g", v) + "</text>\n";
  }
  for (size_t i = 0; i < x.size(); ++i) {
    svg += "<text x=\"" + num("%.1f", px(i)) + "\" y=\"" + num("%.1f", top + ph + 18) + "\" text-anchor=\"middle\">" +
           escape(x[i]) + "</text>\n";
  }
  svg += "<text x=\"" + num("%.1f", left + pw / 2) + "\" y=\"" + num("%.1f", h - 8) +
         "\" text-anchor=\"middle\">depth (tokens in the cache)</text>\n";
  svg += "<text transform=\"translate(16," + num("%.1f", top + ph / 2) + ") rotate(-90)\" text-anchor=\"middle\">" +
         escape(y_label) + "</text>\n";
  svg += "<rect x=\"" + num("%.1f", left) + "\" y=\"" + num("%.1f", top) + "\" width=\"" + num("%.1f", pw) +
         "\" height=\"" + num("%.1f", ph) + "\" fill=\"none\" stroke=\"#888\"/>\n";
  if (std::isfinite(reference)) {
    svg += "<line x1=\"" + num("%.1f", left) + "\" x2=\"" + num("%.1f", left + pw) + "\" y1=\"" +
           num("%.1f", py(reference)) + "\" y2=\"" + num("%.1f", py(reference)) +
           "\" stroke=\"#444\" stroke-dasharray=\"6,4\"/>\n";
    svg += "<text x=\"" + num("%.1f", left + pw - 4) + "\" y=\"" + num("%.1f", py(reference) - 5) +
           "\" text-anchor=\"end\" fill=\"#444\">" + escape(reference_label) + "</text>\n";
  }
  for (size_t s = 0; s < series.size(); ++s) {
    const std::string color = kColors[s % (sizeof kColors / sizeof kColors[0])];
    std::string points;
    for (size_t i = 0; i < series[s].y.size() && i < x.size(); ++i) {
      const double v = series[s].y[i];
      if (!std::isfinite(v)) continue;
      points += num("%.1f", px(i)) + "," + num("%.1f", py(v)) + " ";
      svg += "<circle cx=\"" + num("%.1f", px(i)) + "\" cy=\"" + num("%.1f", py(v)) + "\" r=\"3.5\" fill=\"" + color +
             "\"><title>" + escape(series[s].name) + ": " + num("%.4g", v) + "</title></circle>\n";
    }
    svg += "<polyline fill=\"none\" stroke-width=\"2\" stroke=\"" + color + "\" points=\"" + points + "\"/>\n";
    const double ly = top + 10 + 18.0 * static_cast<double>(s);
    svg += "<line x1=\"" + num("%.1f", left + pw + 14) + "\" x2=\"" + num("%.1f", left + pw + 34) + "\" y1=\"" +
           num("%.1f", ly) + "\" y2=\"" + num("%.1f", ly) + "\" stroke-width=\"3\" stroke=\"" + color + "\"/>\n";
    svg += "<text x=\"" + num("%.1f", left + pw + 40) + "\" y=\"" + num("%.1f", ly + 4) + "\">" +
           escape(series[s].name) + "</text>\n";
  }
  return svg + "</svg>\n";
}

}  // namespace

std::string bench_html(const BenchRunInfo& info, const std::vector<BenchRow>& rows) {
  // The x axis: every depth of the run, ascending.
  std::vector<int64_t> depths;
  for (const BenchRow& r : rows) depths.push_back(r.depth);
  std::sort(depths.begin(), depths.end());
  depths.erase(std::unique(depths.begin(), depths.end()), depths.end());
  std::vector<std::string> x;
  for (int64_t d : depths) x.push_back(std::to_string(d));
  const auto at = [&](int64_t depth) {
    return static_cast<size_t>(std::lower_bound(depths.begin(), depths.end(), depth) - depths.begin());
  };

  // One series per K/V pair (and per step where the chart compares steps), in first-seen order.
  struct Keyed {
    std::vector<std::string> order;
    std::map<std::string, Series> by_name;
    Series& get(const std::string& name, size_t n) {
      auto it = by_name.find(name);
      if (it == by_name.end()) {
        order.push_back(name);
        it = by_name.emplace(name, Series{name, std::vector<double>(n, kNaN)}).first;
      }
      return it->second;
    }
    std::vector<Series> list() const {
      std::vector<Series> out;
      for (const std::string& n : order) out.push_back(by_name.at(n));
      return out;
    }
  };
  int64_t decode_rows = 0, n_seq = 0;
  for (const BenchRow& r : rows) {
    if (r.kind != "decode") continue;
    if (decode_rows == 0 || r.n_q < decode_rows) decode_rows = r.n_q;
    if (n_seq == 0) n_seq = r.n_seq;
  }
  Keyed throughput, bandwidth, step_time, memory;
  for (const BenchRow& r : rows) {
    const std::string pair = r.ktype == r.vtype ? r.ktype : r.ktype + "/" + r.vtype;
    memory.get(pair, x.size()).y[at(r.depth)] = static_cast<double>(r.peak_bytes) / (1024.0 * 1024.0);
    if (r.kind != "decode" || r.n_seq != n_seq) continue;
    step_time.get(pair + " x" + std::to_string(r.n_q), x.size()).y[at(r.depth)] = r.us_median / 1000.0;
    if (r.n_q != decode_rows) continue;
    throughput.get(pair, x.size()).y[at(r.depth)] = r.tokens_per_s;
    bandwidth.get(pair, x.size()).y[at(r.depth)] = r.kv_gbps;
  }

  std::string html =
      "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>kvflash bench</title>\n"
      "<style>body{font-family:sans-serif;margin:24px;max-width:1100px}table{border-collapse:collapse;"
      "font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}"
      "td:nth-child(-n+5){text-align:left}code{background:#f3f3f3;padding:2px 4px}</style></head><body>\n";
  html += "<h1>kvflash bench</h1>\n<p><code>" + escape(info.command) + "</code></p>\n";
  html += "<p>model: " + escape(info.model) + "<br>machine: " + escape(info.machine) +
          "<br>measured " + info.bandwidth_name + ": " + num("%.1f", info.read_bw_gbps) + " GB/s (" +
          std::to_string(info.threads) + " threads)<br>load average (1/5/15 min) at start and end: " + escape(info.load) + "</p>\n";
  const std::string width = "single-sequence decode, " + std::to_string(decode_rows) + " query row" +
                            (decode_rows == 1 ? "" : "s") + " per step";
  html += line_chart("Decode throughput (" + width + ")", "tokens/s", x, throughput.list());
  html += line_chart("KV bytes read per second (" + width + ")", "GB/s", x, bandwidth.list(), info.read_bw_gbps,
                     "measured " + info.bandwidth_name);
  html += line_chart("Time per decode step (x N: N query rows per step)", "ms", x, step_time.list());
  html += line_chart("Memory: KV cache + workspace", "MiB", x, memory.list());
  html +=
      "<h2>All rows</h2>\n<table>\n<tr><th>backend</th><th>K</th><th>V</th><th>kind</th><th>kernel</th>"
      "<th>depth</th><th>n_q</th><th>n_seq</th><th>us median</th><th>us min</th><th>us max</th><th>tokens/s</th>"
      "<th>KV GB/s</th><th>% read bw</th><th>peak MiB</th></tr>\n";
  for (const BenchRow& r : rows) {
    html += "<tr><td>" + escape(r.backend) + "</td><td>" + escape(r.ktype) + "</td><td>" + escape(r.vtype) +
            "</td><td>" + escape(r.kind) + "</td><td>" + escape(r.kernel) + "</td><td>" + std::to_string(r.depth) +
            "</td><td>" + std::to_string(r.n_q) + "</td><td>" + std::to_string(r.n_seq) + "</td><td>" +
            num("%.1f", r.us_median) + "</td><td>" + num("%.1f", r.us_min) + "</td><td>" + num("%.1f", r.us_max) +
            "</td><td>" + num("%.1f", r.tokens_per_s) + "</td><td>" + num("%.2f", r.kv_gbps) + "</td><td>" +
            num("%.0f", r.pct_read_bw) + "</td><td>" +
            num("%.1f", static_cast<double>(r.peak_bytes) / (1024.0 * 1024.0)) + "</td></tr>\n";
  }
  return html + "</table>\n</body></html>\n";
}

}  // namespace kvflash::cli
