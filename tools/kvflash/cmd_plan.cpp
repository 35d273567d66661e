// kvflash plan: the memory a model's KV cache and attention workspace take for a context and batch, whether it
// fits a budget, the largest context that does for each KV type, and a comparison across KV types.
#include <cinttypes>
#include <cstdio>
#include <string>
#include <vector>

#include "cli_common.h"
#include "commands.h"
#include "kvflash/memory_report.h"
#include "kvflash/model.h"
#include "plan/deployment.h"

namespace kvflash::cli {
namespace {

constexpr std::string_view kCommand = "plan";

constexpr std::string_view kSynopsis =
    "usage: kvflash plan (--model PRESET | --gguf FILE) [--ctx N] [--batch N] [-ctk T] [-ctv T] [--budget BYTES]\n"
    "                    [--ubatch N] [--other BYTES] [--backend ref|cpu|cuda] [--json]\n"
    "       kvflash plan --list-models\n"
    "\n"
    "Plans the memory of a model's attention: the KV cache of --batch sequences of --ctx tokens each (layers with a\n"
    "sliding window hold their window), the workspace the attention kernels of --backend need for that cache and\n"
    "--ubatch query rows per call, and --other bytes you hold beside them (weights, say). With --budget (e.g.\n"
    "16GiB, 512MiB, 80GB) it says whether the plan fits and, for every KV type, the largest context that does.\n"
    "KV bytes are exact: layers x tokens x KV heads x (row bytes of d_k in K's type + of d_v in V's type), from\n"
    "the block sizes (q8_0 = 34 bytes per 32 values, turbo rows padded to 128 values, ...); an MLA model stores\n"
    "only K, whose first d_v values are V. --gguf reads the header and metadata of a GGUF file, never its tensors.\n"
    "--json prints one object: kv_cache_bytes, workspace_bytes, total_bytes, fits, max_context (by KV type), ...\n";

struct Options {
  plan::DeploymentInputs in;
  bool has_budget = false;
  int64_t budget = 0;
  bool json = false;
};

std::string mib(int64_t bytes) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.2f", static_cast<double>(bytes) / (1024.0 * 1024.0));
  return buf;
}

std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

/// The backend plans default to: the first of cuda, cpu, ref that has kernels in this build.
BackendKind default_backend() {
  for (BackendKind b : {BackendKind::cuda, BackendKind::cpu}) {
    for (const plan::KernelSpec& k : plan::kKernels) {
      if (k.backend == b) return b;
    }
  }
  return BackendKind::ref;
}

StatusOr<Options> options_from(const Args& args) {
  Options o;
  if (args.has("model") == args.has("gguf")) return invalid_argument("give exactly one of --model and --gguf");
  auto model = args.has("model") ? model_preset(*args.get("model")) : model_from_gguf(*args.get("gguf"));
  if (!model.ok()) return model.status();
  o.in.model = std::move(*model);
  if (!args.has("ctx") && o.in.model.max_context <= 0) {
    return invalid_argument("--ctx is required: the model does not say its context length");
  }
  auto ctx = args.get_int("ctx", o.in.model.max_context);
  if (!ctx.ok()) return ctx.status();
  auto batch = args.get_int("batch", 1);
  if (!batch.ok()) return batch.status();
  auto ubatch = args.get_int("ubatch", 512);
  if (!ubatch.ok()) return ubatch.status();
  if (*ctx < 1) return invalid_argument("--ctx " + std::to_string(*ctx) + " must be >= 1");
  if (*batch < 1) return invalid_argument("--batch " + std::to_string(*batch) + " must be >= 1");
  if (*ubatch < 1) return invalid_argument("--ubatch " + std::to_string(*ubatch) + " must be >= 1");
  o.in.context = *ctx;
  o.in.n_seq = *batch;
  o.in.ubatch = *ubatch;
  auto k = kv_type_flag(args, "ktype", KvType::f16);
  if (!k.ok()) return k.status();
  auto v = kv_type_flag(args, "vtype", KvType::f16);
  if (!v.ok()) return v.status();
  o.in.k_type = *k;
  o.in.v_type = o.in.model.v_is_view_of_k ? *k : *v;
  if (args.has("other")) {
    auto other = parse_bytes(*args.get("other"), "--other");
    if (!other.ok()) return other.status();
    o.in.other_bytes = *other;
  }
  if (args.has("budget")) {
    auto budget = parse_bytes(*args.get("budget"), "--budget");
    if (!budget.ok()) return budget.status();
    o.has_budget = true;
    o.budget = *budget;
  }
  BackendKind backend = default_backend();
  if (args.has("backend")) {
    auto b = backend_from_name(*args.get("backend"));
    if (!b) return invalid_argument("unknown backend '" + *args.get("backend") + "' (valid backends: ref, cpu, cuda)");
    backend = *b;
  }
  o.in.caps = caps_for(backend);
  o.json = args.has("json");
  return o;
}

/// One KV type of the comparison: the plan at the requested context, and the largest context within the budget.
struct TypeRow {
  KvType type;
  Status status;  // not ok when the type cannot store the model's head dims
  plan::DeploymentPlan plan;
  int64_t max_context = -1;  // -1: no budget
};

StatusOr<std::vector<TypeRow>> compare_types(const Options& o) {
  std::vector<TypeRow> rows;
  for (const KvTraits& t : all_kv_types()) {
    TypeRow row{t.type, Status::Ok(), {}, -1};
    plan::DeploymentInputs in = o.in;
    in.k_type = in.v_type = t.type;
    auto p = plan::plan_deployment(in);
    if (!p.ok()) {
      if (p.status().code() != StatusCode::invalid_argument) return p.status();
      row.status = p.status();
    } else {
      row.plan = std::move(*p);
      if (o.has_budget) {
        auto m = plan::max_context_within(in, o.budget);
        if (!m.ok()) return m.status();
        row.max_context = *m;
      }
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

std::string layer_summary(const ModelShape& m) {
  int64_t cached = 0, sliding = 0;
  for (const LayerShape& l : m.layers) {
    cached += l.n_head_kv > 0;
    sliding += l.n_head_kv > 0 && l.window > 0;
  }
  std::string s = std::to_string(m.layers.size()) + " layers";
  if (cached != static_cast<int64_t>(m.layers.size())) s += " (" + std::to_string(cached) + " with a KV cache)";
  for (const LayerShape& l : m.layers) {
    if (l.n_head_kv == 0) continue;
    s += ", " + std::to_string(l.n_head_q) + " query / " + std::to_string(l.n_head_kv) + " KV heads, head dim " +
         std::to_string(l.d_k) + "/" + std::to_string(l.d_v);
    break;
  }
  if (sliding > 0) s += ", " + std::to_string(sliding) + " sliding-window layers";
  if (m.v_is_view_of_k) s += ", MLA (V inside K)";
  if (m.max_context > 0) s += ", max context " + std::to_string(m.max_context);
  return s;
}

void print_human(const Options& o, const plan::DeploymentPlan& p, const std::vector<TypeRow>& rows) {
  const plan::DeploymentInputs& in = o.in;
  std::printf("model    %s (%s): %s\n", in.model.name.c_str(), in.model.source.c_str(), layer_summary(in.model).c_str());
  std::printf("plan     context %" PRId64 " x batch %" PRId64 ", K %s / V %s, ubatch %" PRId64 ", backend %s%s\n",
              in.context, in.n_seq, std::string(kv_traits(in.k_type).name).c_str(),
              std::string(kv_traits(in.v_type).name).c_str(), in.ubatch,
              std::string(backend_name(in.caps.kind)).c_str(), in.caps.nominal ? " (nominal H100 caps)" : "");
  std::printf("\n%-36s %16s %12s\n", "bucket", "bytes", "MiB");
  const auto line = [](const std::string& name, int64_t bytes) {
    std::printf("%-36s %16" PRId64 " %12s\n", name.c_str(), bytes, mib(bytes).c_str());
  };
  line("kv cache", p.kv_bytes);
  // Layers that differ (sliding windows, per-layer heads) are shown once per distinct size.
  for (size_t l = 0; l < p.kv_per_layer.size(); ++l) {
    size_t same = 0;
    bool first = true;
    for (size_t j = 0; j < p.kv_per_layer.size(); ++j) {
      if (p.kv_per_layer[j] != p.kv_per_layer[l]) continue;
      first = first && j >= l;
      same += 1;
    }
    if (first && p.kv_per_layer[l] > 0) {
      line("  per layer (" + std::to_string(same) + " like layer " + std::to_string(l) + ")", p.kv_per_layer[l]);
    }
  }
  line("workspace", p.workspace.total_bytes);
  if (p.workspace.total_bytes > 0) {
    line("  split-KV partial outputs", p.workspace.partial_o_bytes);
    line("  split-KV softmax statistics", p.workspace.partial_stats_bytes);
    line("  staged Q", p.workspace.q_staging_bytes);
    line("  worker scratch", p.workspace.worker_scratch_bytes);
    std::printf("  (bound set by %s at %" PRId64 " sequences x %" PRId64 " rows, %" PRId64 " splits)\n",
                p.workspace.bounding_kernel.c_str(), p.workspace.bounding_n_seq, p.workspace.bounding_n_q,
                p.workspace.bounding_n_splits);
  }
  line("other", p.other_bytes);
  line("total", p.total_bytes);
  if (o.has_budget) {
    const MemoryReport r = plan::deployment_report(p, o.budget);
    std::printf("\nbudget   %s MiB: %s\n%s\n", mib(o.budget).c_str(),
                p.total_bytes <= o.budget ? "fits" : ("does not fit (over by " + mib(p.total_bytes - o.budget) +
                                                      " MiB)").c_str(),
                r.summary_line().c_str());
  }
  std::printf("\n%-8s %9s %16s %16s %6s %14s\n", "KV type", "bits/val", "kv cache MiB", "total MiB", "fits",
              "max context");
  for (const TypeRow& r : rows) {
    const KvTraits& t = kv_traits(r.type);
    if (!r.status.ok()) {
      std::printf("%-8s %9.3f %16s %16s %6s %14s   (cannot store the head dims)\n", std::string(t.name).c_str(),
                  t.bits_per_value(), "n/a", "n/a", "-", "-");
      continue;
    }
    const char* fits = !o.has_budget ? "-" : r.plan.total_bytes <= o.budget ? "yes" : "no";
    std::string max_ctx = r.max_context < 0 ? "-" : std::to_string(r.max_context);
    if (in.model.max_context > 0 && r.max_context > in.model.max_context) max_ctx += "*";
    std::printf("%-8s %9.3f %16s %16s %6s %14s\n", std::string(t.name).c_str(), t.bits_per_value(),
                mib(r.plan.kv_bytes).c_str(), mib(r.plan.total_bytes).c_str(), fits, max_ctx.c_str());
  }
  std::printf("(each row stores K and V in that type%s)\n",
              o.has_budget ? "; max context: tokens per sequence at this batch within the budget; * beyond the "
                             "model's context length"
                           : "");
}

void print_json(const Options& o, const plan::DeploymentPlan& p, const std::vector<TypeRow>& rows) {
  const plan::DeploymentInputs& in = o.in;
  std::string s = "{";
  s += "\"model\":" + json_string(in.model.name) + ",\"architecture\":" + json_string(in.model.architecture) +
       ",\"source\":" + json_string(in.model.source) + ",\"layers\":" + std::to_string(in.model.layers.size()) +
       ",\"model_max_context\":" + std::to_string(in.model.max_context) +
       ",\"v_is_view_of_k\":" + (in.model.v_is_view_of_k ? "true" : "false") +
       ",\"context\":" + std::to_string(in.context) + ",\"batch\":" + std::to_string(in.n_seq) +
       ",\"ubatch\":" + std::to_string(in.ubatch) + ",\"k_type\":" + json_string(kv_traits(in.k_type).name) +
       ",\"v_type\":" + json_string(kv_traits(in.v_type).name) +
       ",\"backend\":" + json_string(backend_name(in.caps.kind)) +
       ",\"kv_cache_bytes\":" + std::to_string(p.kv_bytes) + ",\"kv_cache_bytes_per_layer\":[";
  for (size_t l = 0; l < p.kv_per_layer.size(); ++l) s += (l ? "," : "") + std::to_string(p.kv_per_layer[l]);
  s += "],\"workspace_bytes\":" + std::to_string(p.workspace.total_bytes) +
       ",\"workspace\":{\"partial_o_bytes\":" + std::to_string(p.workspace.partial_o_bytes) +
       ",\"partial_stats_bytes\":" + std::to_string(p.workspace.partial_stats_bytes) +
       ",\"q_staging_bytes\":" + std::to_string(p.workspace.q_staging_bytes) +
       ",\"worker_scratch_bytes\":" + std::to_string(p.workspace.worker_scratch_bytes) +
       ",\"bounding_kernel\":" + json_string(p.workspace.bounding_kernel) + "}" +
       ",\"other_bytes\":" + std::to_string(p.other_bytes) + ",\"total_bytes\":" + std::to_string(p.total_bytes) +
       ",\"budget_bytes\":" + (o.has_budget ? std::to_string(o.budget) : "null") +
       ",\"fits\":" + (o.has_budget ? (p.total_bytes <= o.budget ? "true" : "false") : "null") + ",\"max_context\":{";
  bool first = true;
  for (const TypeRow& r : rows) {
    s += std::string(first ? "" : ",") + json_string(kv_traits(r.type).name) + ":" +
         (r.status.ok() && r.max_context >= 0 ? std::to_string(r.max_context) : "null");
    first = false;
  }
  s += "},\"comparison\":[";
  first = true;
  for (const TypeRow& r : rows) {
    s += std::string(first ? "" : ",") + "{\"type\":" + json_string(kv_traits(r.type).name);
    if (r.status.ok()) {
      s += ",\"kv_cache_bytes\":" + std::to_string(r.plan.kv_bytes) +
           ",\"workspace_bytes\":" + std::to_string(r.plan.workspace.total_bytes) +
           ",\"total_bytes\":" + std::to_string(r.plan.total_bytes) +
           ",\"fits\":" + (o.has_budget ? (r.plan.total_bytes <= o.budget ? "true" : "false") : "null");
    } else {
      s += ",\"error\":" + json_string(r.status.message());
    }
    s += "}";
    first = false;
  }
  s += "]}\n";
  std::fputs(s.c_str(), stdout);
}

}  // namespace

int cmd_plan(int argc, char** argv) {
  Args args;
  args.value("model", "a preset: llama3-8b, llama3-70b, qwen2.5-7b, gemma-3-12b, gemma-4-class, deepseek-v3, phi-3-mini");
  args.value("gguf", "a GGUF model file (only its header and metadata are read)");
  args.value("ctx", "tokens per sequence the KV cache holds (default: the model's context length)", {"-c"});
  args.value("batch", "sequences (default 1)");
  args.value("ktype", "KV type of K (default f16): " + kv_type_names(), {"-ctk"});
  args.value("vtype", "KV type of V (default f16)", {"-ctv"});
  args.value("budget", "memory budget, e.g. 16GiB");
  args.value("ubatch", "query rows per attention call, the prefill chunk (default 512)");
  args.value("other", "bytes held beside the KV cache and workspace, e.g. the weights (default 0)");
  args.value("backend", "whose kernels the workspace is planned for (default: cuda, else cpu, else ref)");
  args.flag("json", "print one JSON object");
  args.flag("list-models", "list the presets");
  if (Status s = args.parse(argc, argv, 1); !s.ok()) return usage_error(kCommand, s);
  if (args.help()) return print_help(kSynopsis, args);
  if (!args.positionals().empty()) return usage_error(kCommand, "unexpected operand '" + args.positionals()[0] + "'");
  if (args.has("list-models")) {
    for (std::string_view name : model_preset_names()) {
      const ModelShape m = *model_preset(name);
      std::printf("%-14s %s\n", std::string(name).c_str(), layer_summary(m).c_str());
    }
    return 0;
  }
  auto options = options_from(args);
  if (!options.ok()) {
    return options.status().code() == StatusCode::invalid_argument && !args.has("gguf") && !args.has("model")
               ? usage_error(kCommand, options.status())
               : fail(kCommand, options.status());
  }
  auto p = plan::plan_deployment(options->in);
  if (!p.ok()) return fail(kCommand, p.status());
  auto rows = compare_types(*options);
  if (!rows.ok()) return fail(kCommand, rows.status());
  if (options->json) {
    print_json(*options, *p, *rows);
  } else {
    print_human(*options, *p, *rows);
  }
  return 0;
}

}  // namespace kvflash::cli
