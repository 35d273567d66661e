// kvflash bench: decode steps and prefill chunks timed over real paged KV caches at several depths, per K/V type.
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "bench_output.h"
#include "bench_runner.h"
#include "cli_common.h"
#include "commands.h"
#include "info_devices.h"
#include "kvcache/device_transfer.h"
#include "kvflash/backend.h"
#include "kvflash/device_memory.h"
#include "kvflash/model.h"

namespace kvflash::cli {

namespace {

constexpr std::string_view kCommand = "bench";

constexpr std::string_view kSynopsis =
    "usage: kvflash bench [--model PRESET | --gguf FILE] [-ctk TYPES] [-ctv TYPES] [-d DEPTHS] [-n STEPS]\n"
    "                     [-q ROWS] [-p CHUNKS] [-b SEQS] [-r REPS] [--backend cpu|ref|cuda] [-t THREADS]\n"
    "                     [--page-rows N] [--timing device|launch]\n"
    "                     [-o md|json|csv] [--report out.html]\n"
    "\n"
    "For every K/V type pair and depth, builds a paged KV cache through the KvCache API (depth tokens of random\n"
    "K/V appended to each sequence, quantized on write), then times attention steps through plan_route() and\n"
    "attend(): -n decode steps of each -q width (each step appends its rows to the cache first, untimed), and one\n"
    "prefill step of each -p chunk size, repeated -r times (the cache is truncated back to the depth in between).\n"
    "Steps are causal, over one attention layer of the model. Lists are comma-separated; -ctk and -ctv pair up\n"
    "position by position (-ctk q8_0,f16 -ctv turbo4,f16 is two configurations; a single entry pairs with all).\n"
    "The machine's read bandwidth is measured once per run. Progress goes to stderr, the table to stdout.\n"
    "\n"
    "Columns: us per step (median, min-max over all timed steps), tokens/s (n_seq x rows / median), GB/s of KV\n"
    "actually read (every stored K and V row of every visible key, once per step), its % of the measured read\n"
    "bandwidth, and peak = the memory report of the run (KV cache + the largest workspace a route asked for).\n"
    "Prefill rows add TFLOP/s: 2 x n_head_q x (d_k + d_v) x the causal (query, key) pairs, over the median.\n"
    "The last column names the route every row took: kernel (split count).\n"
    "\n"
    "--backend cuda builds a device-resident cache (from a DeviceAllocator) at each depth, times steps with CUDA\n"
    "events, measures the device copy bandwidth once (a 1 GiB device-to-device copy, read + write bytes) for the\n"
    "% column, and reports peak = the allocator's peak live device bytes of each case (cache, page tables, the\n"
    "plan_workspace() workspace, Q and O). Before each step it reads a buffer twice the L2's size, so the step\n"
    "reads K/V from HBM. --timing device (the default) holds the stream until the host has enqueued the call, so\n"
    "the events bracket the device's work; --timing launch starts the events on an idle device, so the host's\n"
    "validation and launch latency count too. Without a usable GPU it fails with one error line.\n"
    "\n"
    "The default run (about a minute on 2 cores): llama3-8b (32 query / 8 KV heads, head dim 128), f16, q8_0,\n"
    "q4_0 and turbo3 at depths 0, 4096 and 32768, 16 decode steps of 1 and of 4 rows, a 64-token prefill chunk,\n"
    "3 repetitions, on the default backend (cuda when available, else cpu).\n";

struct BenchConfig {
  ModelShape model;
  LayerShape layer;
  std::vector<std::pair<KvType, KvType>> types;
  std::vector<int64_t> depths, batches;
  StepPlan plan;
  BackendKind backend = BackendKind::cpu;
  int threads = 0;
  // 256-token pages: a (head, page) run of 18-64 KiB instead of 1-4 KiB, so the hardware prefetcher and the TLB do
  // not restart every 16 keys; the cpu decode step at 32K is 10-20% faster than with 16 (bench/README.md).
  // --page-rows 16 gives vLLM's block size (KvCacheConfig's default).
  int64_t page_rows = 256;
  DeviceTiming timing = DeviceTiming::device;
  std::string output = "md";
  std::string report;
};

StatusOr<std::vector<KvType>> type_list(const Args& args, const std::string& flag, const std::string& fallback) {
  std::vector<std::string> names = args.get_list(flag);
  if (names.empty()) {
    if (args.has(flag)) return invalid_argument("--" + flag + " is empty");
    for (size_t at = 0; at <= fallback.size();) {
      const size_t comma = std::min(fallback.find(',', at), fallback.size());
      names.push_back(fallback.substr(at, comma - at));
      at = comma + 1;
    }
  }
  std::vector<KvType> out;
  for (const std::string& n : names) {
    const std::optional<KvType> t = kv_type_from_name(n);
    if (!t)
      return invalid_argument("unknown type '" + n + "' in --" + flag + " (valid types: " + kv_type_names() + ")");
    out.push_back(*t);
  }
  return out;
}

StatusOr<std::vector<int64_t>> int_list(const Args& args, const std::string& flag, std::vector<int64_t> fallback,
                                        int64_t min_value) {
  if (!args.has(flag)) return fallback;
  StatusOr<std::vector<int64_t>> v = args.get_int_list(flag);
  if (!v.ok()) return v.status();
  if (v->empty()) return invalid_argument("--" + flag + " is empty");
  for (int64_t x : *v) {
    if (x < min_value) {
      return invalid_argument("--" + flag + " value " + std::to_string(x) + " is less than " +
                              std::to_string(min_value));
    }
  }
  return *v;
}

// The layer the bench runs: the first full-attention layer with a KV cache (else the first with a cache).
StatusOr<LayerShape> bench_layer(const ModelShape& m) {
  const LayerShape* pick = nullptr;
  for (const LayerShape& l : m.layers) {
    if (l.n_head_kv <= 0) continue;
    if (pick == nullptr || (pick->window > 0 && l.window == 0)) pick = &l;
  }
  if (pick == nullptr) return invalid_argument("model " + m.name + " has no layer with a KV cache");
  LayerShape l = *pick;
  l.window = 0;
  return l;
}

StatusOr<BenchConfig> parse_config(const Args& args) {
  BenchConfig c;
  if (args.has("model") && args.has("gguf")) return invalid_argument("give --model or --gguf, not both");
  StatusOr<ModelShape> model =
      args.has("gguf") ? model_from_gguf(*args.get("gguf")) : model_preset(args.get("model").value_or("llama3-8b"));
  if (!model.ok()) return model.status();
  c.model = *model;
  StatusOr<LayerShape> layer = bench_layer(c.model);
  if (!layer.ok()) return layer.status();
  c.layer = *layer;

  const std::string default_types = "f16,q8_0,q4_0,turbo3";
  StatusOr<std::vector<KvType>> k = type_list(args, "cache-type-k", default_types);
  if (!k.ok()) return k.status();
  std::vector<KvType> vs = *k;  // without -ctv, V has the K types
  if (args.has("cache-type-v")) {
    StatusOr<std::vector<KvType>> v = type_list(args, "cache-type-v", "");
    if (!v.ok()) return v.status();
    vs = *v;
  }
  if (k->size() != vs.size() && k->size() != 1 && vs.size() != 1) {
    return invalid_argument("-ctk has " + std::to_string(k->size()) + " types and -ctv " + std::to_string(vs.size()) +
                            ": the lists pair up position by position, so give them the same length (or one type)");
  }
  const size_t pairs = std::max(k->size(), vs.size());
  for (size_t i = 0; i < pairs; ++i) c.types.emplace_back((*k)[k->size() == 1 ? 0 : i], vs[vs.size() == 1 ? 0 : i]);
  for (const auto& [kt, vt] : c.types) {
    for (const auto& [type, dim, name] : {std::tuple{kt, c.layer.d_k, "d_k"}, std::tuple{vt, c.layer.d_v, "d_v"}}) {
      if (!kv_traits(type).rotated && dim % kv_traits(type).block_elems != 0) {
        return invalid_argument(std::string("the model's ") + name + " = " + std::to_string(dim) +
                                " is not a multiple of " + std::string(kv_traits(type).name) + "'s block size " +
                                std::to_string(kv_traits(type).block_elems));
      }
    }
  }

  StatusOr<std::vector<int64_t>> depths = int_list(args, "depth", {0, 4096, 32768}, 0);
  if (!depths.ok()) return depths.status();
  c.depths = *depths;
  StatusOr<std::vector<int64_t>> batches = int_list(args, "batch", {1}, 1);
  if (!batches.ok()) return batches.status();
  c.batches = *batches;
  StatusOr<std::vector<int64_t>> rows = int_list(args, "rows", {1, 4}, 1);
  if (!rows.ok()) return rows.status();
  c.plan.decode_rows = *rows;
  StatusOr<std::vector<int64_t>> chunks = int_list(args, "prefill", {64}, 0);
  if (!chunks.ok()) return chunks.status();
  for (int64_t chunk : *chunks) {
    if (chunk > 0) c.plan.prefill_chunks.push_back(chunk);
  }
  StatusOr<int64_t> steps = args.get_int("decode-steps", 16);
  if (!steps.ok()) return steps.status();
  if (*steps < 0) return invalid_argument("-n " + std::to_string(*steps) + " is negative");
  c.plan.decode_steps = *steps;
  if (*steps == 0) c.plan.decode_rows.clear();
  StatusOr<int64_t> reps = args.get_int("reps", 3);
  if (!reps.ok()) return reps.status();
  if (*reps < 1 || *reps > 1000) return invalid_argument("-r " + std::to_string(*reps) + " is outside [1, 1000]");
  c.plan.reps = static_cast<int>(*reps);
  if (c.plan.decode_rows.empty() && c.plan.prefill_chunks.empty()) {
    return invalid_argument("nothing to time: -n 0 and no -p chunk");
  }
  for (int64_t d : c.depths) {
    for (int64_t b : c.batches) {
      if (d > (int64_t{1} << 24) || b > 4096) {
        return invalid_argument("depth " + std::to_string(d) + " x " + std::to_string(b) + " sequences is beyond " +
                                "what bench builds (depth <= 16M tokens, <= 4096 sequences)");
      }
    }
  }

  const std::string backend = args.get("backend").value_or(backend_available(BackendKind::cuda) ? "cuda" : "cpu");
  const std::optional<BackendKind> kind = backend_from_name(backend);
  if (!kind) return invalid_argument("unknown backend '" + backend + "' (valid backends: ref, cpu, cuda)");
  if (!backend_available(*kind)) {
    if (*kind == BackendKind::cuda && kvcache::device_transfer_compiled()) {
      return invalid_argument("backend 'cuda' is not available: this build has CUDA but no usable CUDA device was "
                              "found ('kvflash info' lists the devices)");
    }
    return invalid_argument("backend '" + backend + "' is not available in this build ('kvflash info' says why)");
  }
  c.backend = *kind;
  StatusOr<int64_t> threads = args.get_int("threads", 0);
  if (!threads.ok()) return threads.status();
  if (*threads < 0 || *threads > 1024)
    return invalid_argument("-t " + std::to_string(*threads) + " is outside [0, 1024]");
  c.threads = static_cast<int>(*threads);
  StatusOr<int64_t> page_rows = args.get_int("page-rows", 256);
  if (!page_rows.ok()) return page_rows.status();
  if (*page_rows < 1 || *page_rows > 65536) {
    return invalid_argument("--page-rows " + std::to_string(*page_rows) + " is outside [1, 65536]");
  }
  c.page_rows = *page_rows;
  if (args.has("timing")) {
    const std::string timing = *args.get("timing");
    if (timing != "device" && timing != "launch") {
      return invalid_argument("--timing " + timing + " is not one of device, launch");
    }
    if (c.backend != BackendKind::cuda) {
      return invalid_argument("--timing applies to --backend cuda, not " + std::string(backend_name(c.backend)));
    }
    c.timing = timing == "device" ? DeviceTiming::device : DeviceTiming::launch;
  }
  c.output = args.get("output").value_or("md");
  if (c.output != "md" && c.output != "json" && c.output != "csv") {
    return invalid_argument("-o " + c.output + " is not one of md, json, csv");
  }
  c.report = args.get("report").value_or("");
  return c;
}

// The first three fields of /proc/loadavg ("1.02 0.80 0.61"), or "unknown".
std::string load_average() {
  std::ifstream f("/proc/loadavg");
  std::string a, b, c;
  if (!(f >> a >> b >> c)) return "unknown";
  return a + " " + b + " " + c;
}

std::string machine_line(const BenchConfig& c, int threads) {
  std::string cpu = "unknown CPU";
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.rfind("model name", 0) == 0 && line.find(':') != std::string::npos) {
      cpu = line.substr(line.find(':') + 2);
      break;
    }
  }
  std::string out = cpu + ", " + std::to_string(threads) + " threads";
  if (c.backend == BackendKind::cuda) {
    const std::vector<std::string> devices = cuda_device_lines();
    return devices.empty() ? "no CUDA device" : devices.front();
  }
  if (c.backend == BackendKind::cpu) {
    out += ", cpu kernels: " + std::string(cpu::isa_name(cpu::resolve_isa(cpu::Isa::best))) + " (" +
           std::string(cpu::cpu_feature_string()) + ")";
  }
  return out;
}

}  // namespace

int cmd_bench(int argc, char** argv) {
  // The timed steps run behind a closed StreamGate (kvcache/device_transfer.h), where CUDA's lazy module loading
  // could wait for an idle device: load every kernel when the context is created instead. Set before the first
  // CUDA call (backend_available() below); a value the user set is kept.
  setenv("CUDA_MODULE_LOADING", "EAGER", /*overwrite=*/0);
  Args args;
  args.value("model", "model preset (default llama3-8b; see 'kvflash plan --help' for the list)")
      .value("gguf", "read the model shape from a GGUF file's metadata instead of a preset")
      .value("cache-type-k", "K types, comma-separated (default f16,q8_0,q4_0,turbo3)", {"-ctk"})
      .value("cache-type-v", "V types, paired with -ctk by position (default: the K types)", {"-ctv"})
      .value("depth", "tokens in the cache before the timed steps (default 0,4096,32768)", {"-d"})
      .value("decode-steps", "decode steps timed per repetition and width (default 16; 0: none)", {"-n"})
      .value("rows", "query rows per sequence per decode step (default 1,4)", {"-q"})
      .value("prefill", "prefill chunk sizes in tokens (default 64; 0: none)", {"-p"})
      .value("batch", "sequences per step (default 1)", {"-b"})
      .value("reps", "repetitions (default 3)", {"-r"})
      .value("backend", "cpu, ref or cuda (default: cuda when available, else cpu)")
      .value("threads", "host threads of the cpu backend (default 0: all)", {"-t"})
      .value("page-rows", "tokens per page of the KV cache (default 256; 16 is vLLM's block size)")
      .value("timing", "cuda: device (default: the device's work for each call) or launch (host launch cost too)")
      .value("output", "md, json or csv (default md)", {"-o"})
      .value("report", "also write a self-contained HTML report with SVG charts to this file");
  if (Status s = args.parse(argc, argv, 1); !s.ok()) return usage_error(kCommand, s);
  if (args.help()) return print_help(kSynopsis, args);
  if (!args.positionals().empty()) return usage_error(kCommand, "unexpected argument '" + args.positionals()[0] + "'");
  StatusOr<BenchConfig> config = parse_config(args);
  if (!config.ok()) return usage_error(kCommand, config.status());
  const BenchConfig& c = *config;

  const auto start = std::chrono::steady_clock::now();
  const auto progress = [&](const std::string& line) {
    // Runs shorter than a second stay quiet.
    if (std::chrono::steady_clock::now() - start > std::chrono::seconds(1)) {
      std::fprintf(stderr, "kvflash bench: %s\n", line.c_str());
      std::fflush(stderr);
    }
  };
  const int threads = c.threads > 0                   ? c.threads
                      : c.backend == BackendKind::cpu ? cpu::thread_count()
                                                      : static_cast<int>(std::thread::hardware_concurrency());
  BenchRunInfo info;
  for (int i = 0; i < argc; ++i) info.command += (i ? " " : "kvflash ") + std::string(argv[i]);
  info.model = c.model.name + " (" + std::to_string(c.layer.n_head_q) + " query / " +
               std::to_string(c.layer.n_head_kv) + " KV heads, d_k " + std::to_string(c.layer.d_k) + ", d_v " +
               std::to_string(c.layer.d_v) + (c.model.v_is_view_of_k ? ", V a view of K" : "") + "), cache pages of " +
               std::to_string(c.page_rows) + " tokens";
  info.machine = machine_line(c, threads);
  info.threads = threads;
  const std::string load_at_start = load_average();
  std::unique_ptr<DeviceAllocator> allocator;
  if (c.backend == BackendKind::cuda) {
    StatusOr<std::unique_ptr<DeviceAllocator>> created = DeviceAllocator::create(DeviceAllocatorConfig{});
    if (!created.ok()) return fail(kCommand, created.status());
    allocator = std::move(*created);
    progress("measuring the device copy bandwidth");
    // 1 GiB per buffer: far beyond the L2 (50 MiB on an H100), so the copy runs at HBM speed.
    StatusOr<double> copy_bw = kvcache::measure_device_copy_gbps(*allocator, int64_t{1} << 30);
    if (!copy_bw.ok()) return fail(kCommand, copy_bw.status());
    info.read_bw_gbps = *copy_bw;
    info.bandwidth_name = "device copy bandwidth (read + write)";
    info.timing = c.timing == DeviceTiming::device
                      ? "CUDA events around each attend(), the stream held until the call is enqueued (the device's "
                        "work; attend()'s host time is caller_cpu_us); L2 evicted before each step"
                      : "CUDA events around each attend() from an idle device (host validation and launch latency "
                        "included); L2 evicted before each step";
  } else {
    progress("measuring the read bandwidth");
    info.read_bw_gbps = measure_read_bandwidth_gbps(threads);
  }
  char bw[96];
  std::snprintf(bw, sizeof bw, "%s %.1f GB/s", info.bandwidth_name.c_str(), info.read_bw_gbps);
  progress(bw);

  std::vector<BenchRow> rows;
  const size_t total = c.types.size() * c.depths.size() * c.batches.size();
  size_t done = 0;
  for (const auto& [kt, vt] : c.types) {
    for (int64_t b : c.batches) {
      for (int64_t depth : c.depths) {
        ++done;
        const std::string prefix = "[" + std::to_string(done) + "/" + std::to_string(total) + "] ";
        const CacheCase cache_case{kt, vt, depth, b, c.page_rows};
        StatusOr<std::vector<BenchRow>> got =
            bench_cache(c.layer, c.model.v_is_view_of_k, cache_case, c.plan, c.backend, c.threads, info.read_bw_gbps,
                        [&](const std::string& line) { progress(prefix + line); },
                        DeviceBenchOptions{allocator.get(), c.timing});
        if (!got.ok()) return fail(kCommand, got.status());
        rows.insert(rows.end(), got->begin(), got->end());
      }
    }
  }

  info.load = load_at_start + " / " + load_average();
  const std::string table = c.output == "json"  ? bench_json(rows)
                            : c.output == "csv" ? bench_csv(rows)
                                                : bench_markdown(info, rows);
  std::fwrite(table.data(), 1, table.size(), stdout);
  std::fflush(stdout);
  if (!c.report.empty()) {
    const std::string html = bench_html(info, rows);
    if (Status s = write_file_atomic(c.report, html.data(), html.size()); !s.ok()) return fail(kCommand, s);
    progress("report written to " + c.report);
  }
  return 0;
}

}  // namespace kvflash::cli
