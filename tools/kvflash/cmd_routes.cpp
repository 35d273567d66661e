// kvflash routes: which kernel each backend picks for a problem given by its shape, and why the others were not;
// --sweep walks the shape space of the route sweep test and prints the coverage per backend.
#include <cstdio>
#include <string>
#include <vector>

#include "cli_common.h"
#include "commands.h"
#include "kvflash/route.h"
#include "plan/shape_problem.h"
#include "plan/sweep.h"

namespace kvflash::cli {
namespace {

constexpr std::string_view kCommand = "routes";

constexpr std::string_view kSynopsis =
    "usage: kvflash routes [--n-seq N] [--n-q N] --n-kv N [--heads-q H] [--heads-kv H] [--d-k D] [--d-v D]\n"
    "                      [--ktype T] [--vtype T] [--mask none|causal|explicit] [--mask-f16] [--window W]\n"
    "                      [--alibi B] [--softcap C] [--sinks] [--kv-len] [--paged | --strided]\n"
    "                      [--backend ref|cpu|cuda]\n"
    "       kvflash routes --sweep [--stride N]\n"
    "\n"
    "The flags of 'kvflash attend', with shapes instead of files. For each backend with kernels (or --backend),\n"
    "prints every kernel considered: the one taken with its launch parameters and workspace, the others with the\n"
    "exact reason they do not accept the problem. Planning only: no data is read or computed.\n"
    "--sweep routes every point of the shape space (head dims 32..640, 576/512, 192/128, 80, 96, 112; GQA 1..16,\n"
    "24, 32, 64; n_q 1..9, 16, 64, 512; every K x V type pair; no mask, causal, explicit; contiguous, strided,\n"
    "paged) on every backend and prints routed/valid per backend; --stride N visits every N-th point.\n"
    "Exit status: 0 when every problem routed, 1 otherwise.\n";

StatusOr<int64_t> positive(const Args& args, const std::string& flag, int64_t fallback, int64_t min = 1) {
  auto v = args.get_int(flag, fallback);
  if (!v.ok()) return v.status();
  if (*v < min) {
    return invalid_argument("--" + flag + " " + std::to_string(*v) + " must be >= " + std::to_string(min));
  }
  return *v;
}

StatusOr<plan::ShapeProblemSpec> spec_from(const Args& args) {
  plan::ShapeProblemSpec s;
  AttentionShape& sh = s.shape;
  struct IntFlag {
    const char* name;
    int64_t* field;
    int64_t fallback;
    int64_t min;
  };
  const IntFlag ints[] = {{"n-seq", &sh.n_seq, 1, 1},      {"n-q", &sh.n_q, 1, 1},
                          {"n-kv", &sh.n_kv, -1, 0},       {"heads-q", &sh.n_head_q, 32, 1},
                          {"heads-kv", &sh.n_head_kv, 8, 1}, {"d-k", &sh.d_k, 128, 1}};
  for (const IntFlag& f : ints) {
    auto v = positive(args, f.name, f.fallback, f.min);
    if (!v.ok()) return v.status();
    *f.field = *v;
  }
  auto d_v = positive(args, "d-v", sh.d_k);
  if (!d_v.ok()) return d_v.status();
  sh.d_v = *d_v;
  auto k = kv_type_flag(args, "ktype", KvType::f16);
  if (!k.ok()) return k.status();
  auto v = kv_type_flag(args, "vtype", KvType::f16);
  if (!v.ok()) return v.status();
  s.k_type = *k;
  s.v_type = *v;
  const std::string mask = args.get("mask").value_or("none");
  if (mask == "causal") {
    s.causal = true;
  } else if (mask == "explicit") {
    s.mask = args.has("mask-f16") ? plan::ShapeMask::f16 : plan::ShapeMask::f32;
  } else if (mask != "none") {
    return invalid_argument("--mask " + mask + " is not one of none, causal, explicit");
  }
  if (args.has("mask-f16") && mask != "explicit") return invalid_argument("--mask-f16 needs --mask explicit");
  auto window = args.get_int("window", 0);
  if (!window.ok()) return window.status();
  auto alibi = args.get_double("alibi", 0);
  if (!alibi.ok()) return alibi.status();
  auto softcap = args.get_double("softcap", 0);
  if (!softcap.ok()) return softcap.status();
  s.window = *window;
  s.alibi_max_bias = *alibi;
  s.softcap = *softcap;
  s.sinks = args.has("sinks");
  s.kv_len = args.has("kv-len");
  if (args.has("paged") && args.has("strided")) return invalid_argument("--paged and --strided exclude each other");
  s.layout = args.has("paged")     ? plan::ShapeLayout::paged
             : args.has("strided") ? plan::ShapeLayout::strided_padded
                                   : plan::ShapeLayout::contiguous;
  return s;
}

StatusOr<std::vector<BackendKind>> backends_from(const Args& args) {
  if (!args.has("backend")) return plan::routable_backends();
  const std::string name = *args.get("backend");
  const auto b = backend_from_name(name);
  if (!b) return invalid_argument("unknown backend '" + name + "' (valid backends: ref, cpu, cuda)");
  return std::vector<BackendKind>{*b};
}

int run_sweep(const Args& args) {
  auto stride = positive(args, "stride", 1);
  if (!stride.ok()) return usage_error(kCommand, stride.status());
  std::vector<BackendCaps> caps;
  for (BackendKind b : plan::routable_backends()) caps.push_back(caps_for(b));
  const auto coverage = plan::run_sweep(0, plan::sweep_size(), *stride, caps);
  std::printf("shape space: %lld points (stride %lld)\n", static_cast<long long>(plan::sweep_size()),
              static_cast<long long>(*stride));
  std::printf("%-8s %12s %12s %10s %10s\n", "backend", "routed", "valid", "coverage", "invalid*");
  bool all = true;
  for (const plan::SweepCoverage& c : coverage) {
    const double pct = c.valid > 0 ? 100.0 * static_cast<double>(c.routed) / static_cast<double>(c.valid) : 100.0;
    std::printf("%-8s %12lld %12lld %9.2f%% %10lld\n", std::string(backend_name(c.backend)).c_str(),
                static_cast<long long>(c.routed), static_cast<long long>(c.valid), pct,
                static_cast<long long>(c.invalid));
    all = all && c.routed == c.valid && c.failures.empty();
  }
  std::printf("* rejected by validate(): a head dim (80, 112) that a 32-value block type cannot store\n");
  for (const plan::SweepCoverage& c : coverage) {
    for (const std::string& f : c.failures) std::printf("FAILURE %s: %s\n", std::string(backend_name(c.backend)).c_str(), f.c_str());
  }
  return all ? 0 : 1;
}

}  // namespace

int cmd_routes(int argc, char** argv) {
  Args args;
  args.value("n-seq", "sequences in the call (default 1)");
  args.value("n-q", "query rows per sequence (default 1)");
  args.value("n-kv", "keys per sequence (required)");
  args.value("heads-q", "query heads (default 32)");
  args.value("heads-kv", "KV heads; divides heads-q (default 8)");
  args.value("d-k", "head dim of Q and K (default 128)");
  args.value("d-v", "head dim of V (default d-k)");
  args.value("ktype", "KV type of K (default f16): " + kv_type_names(), {"-ctk"});
  args.value("vtype", "KV type of V (default f16)", {"-ctv"});
  args.value("mask", "none, causal (bottom-right aligned) or explicit (an additive f32 mask); default none");
  args.flag("mask-f16", "the explicit mask is f16");
  args.value("window", "sliding window W (default 0: none)");
  args.value("alibi", "ALiBi max bias (default 0: none)");
  args.value("softcap", "logit softcap (default 0: none)");
  args.flag("sinks", "attention sinks, one per query head");
  args.flag("kv-len", "per-sequence key counts (varlen batch)");
  args.flag("paged", "K and V through a page table");
  args.flag("strided", "K and V are views into a larger cache, with padding between rows, heads and sequences");
  args.value("backend", "route on this backend only (default: every backend with kernels)");
  args.flag("sweep", "walk the whole shape space and print the coverage per backend");
  args.value("stride", "with --sweep: visit every N-th point (default 1: all)");
  if (Status s = args.parse(argc, argv, 1); !s.ok()) return usage_error(kCommand, s);
  if (args.help()) return print_help(kSynopsis, args);
  if (!args.positionals().empty()) return usage_error(kCommand, "unexpected operand '" + args.positionals()[0] + "'");
  if (args.has("sweep")) return run_sweep(args);
  if (args.has("stride")) return usage_error(kCommand, "--stride needs --sweep");
  if (!args.has("n-kv")) return usage_error(kCommand, "--n-kv is required");

  auto spec = spec_from(args);
  if (!spec.ok()) return usage_error(kCommand, spec.status());
  auto backends = backends_from(args);
  if (!backends.ok()) return usage_error(kCommand, backends.status());
  const AttentionProblem p = plan::shape_only_problem(*spec);
  Status first_failure;
  for (size_t i = 0; i < backends->size(); ++i) {
    const BackendCaps caps = caps_for((*backends)[i]);
    const RouteExplanation e = explain(p, caps);
    if (i > 0) std::printf("\n");
    std::printf("%s", e.to_string().c_str());
    if (caps.kind == BackendKind::cuda) {
      std::printf("(cuda caps: %d SMs%s)\n", caps.sm_count, caps.nominal ? ", nominal H100: no device seen" : "");
    }
    if (!e.status.ok() && first_failure.ok()) first_failure = e.status;
  }
  std::fflush(stdout);
  return first_failure.ok() ? 0 : fail(kCommand, first_failure);
}

}  // namespace kvflash::cli
