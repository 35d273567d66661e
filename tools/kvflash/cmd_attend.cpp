// kvflash attend: attention over K/V quantized to --ktype/--vtype, inputs and output as .npy files.
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "attend_inputs.h"
#include "cli_common.h"
#include "commands.h"
#include "io/npy.h"
#include "kvflash/attention.h"
#include "kvflash/backend.h"
#include "kvflash/reference.h"
#include "kvflash/route.h"

namespace kvflash::cli {

namespace {

constexpr std::string_view kCommand = "attend";

constexpr std::string_view kSynopsis =
    "usage: kvflash attend --q Q.npy --k K.npy --v V.npy [--ktype T] [--vtype T] [--mask M.npy] [--causal]\n"
    "                      [--scale S] [--softcap C] [--alibi B] [--sinks S.npy] [--window W]\n"
    "                      [--backend ref|cpu|cuda] [--out-dtype f32|f64] --out O.npy\n"
    "\n"
    "Quantizes K and V row by row to --ktype / --vtype exactly as 'kvflash quantize' does (what a KV cache would\n"
    "hold; turbo rows whose head dim is not a multiple of 128 are zero-padded first, and Q is padded to match),\n"
    "then computes softmax(scale * Q K^T + mask) V per head and writes O. Files are .npy, C order, float32 or\n"
    "float64 (the mask also float16). Float64 K and V are rounded to float32 before quantizing (the quantizers take\n"
    "float32). --backend ref uses float64 Q, mask and sinks at full precision; the other backends round them to\n"
    "float32. O is float64 when Q is, else float32 (--out-dtype overrides). Shapes:\n"
    "  Q [n_head_q, n_q, d_k]   K [n_head_kv, n_kv, d_k]   V [n_head_kv, n_kv, d_v]   O [n_head_q, n_q, d_v]\n"
    "  or all four with a leading batch axis. n_head_q must be a multiple of n_head_kv (query head h reads KV\n"
    "  head h / (n_head_q / n_head_kv)); d_k and d_v must be multiples of the type's block size (turbo: any).\n"
    "  M (additive, -inf allowed): [n_q, n_kv], [batch, n_q, n_kv] (batched inputs) or\n"
    "  [n_head_q, n_q, n_kv] (unbatched), or [batch, n_head_q, n_q, n_kv]; an axis of size 1 broadcasts.\n"
    "  S (sinks): [n_head_q], one extra logit per query head in the softmax denominator.\n"
    "Causal masking and the window are bottom-right aligned: query row i sits at position n_kv - n_q + i.\n";

// The one place a backend runs a problem. The fast backends are routed here (through the planner) once they exist.
Status run_on_backend(BackendKind backend, const AttentionProblem& p) {
  if (!backend_available(backend)) {
    return unsupported("backend '" + std::string(backend_name(backend)) + "' is not available in this build");
  }
  switch (backend) {
    case BackendKind::ref: return attend_reference(p);
    case BackendKind::cpu: {
      // The planner's route and a workspace of exactly the bytes it asks for.
      StatusOr<Route> route = plan_route(p, caps_for(backend));
      if (!route.ok()) return route.status();
      std::vector<std::byte> workspace(static_cast<size_t>(route->workspace_bytes) + kWorkspaceAlign);
      void* aligned = workspace.data();
      size_t space = workspace.size();
      std::align(kWorkspaceAlign, static_cast<size_t>(route->workspace_bytes), aligned, space);
      return attend(p, *route, aligned, static_cast<size_t>(route->workspace_bytes));
    }
    case BackendKind::cuda: break;
  }
  return unsupported("backend '" + std::string(backend_name(backend)) + "' is not wired into 'kvflash attend' yet");
}

/// --out-dtype; nullopt when it is not given (O then takes the dtype of Q).
StatusOr<std::optional<io::NpyDtype>> out_dtype_flag(const Args& args) {
  const std::optional<std::string> text = args.get("out-dtype");
  if (!text) return std::optional<io::NpyDtype>();
  if (*text == "f32") return std::optional(io::NpyDtype::f32);
  if (*text == "f64") return std::optional(io::NpyDtype::f64);
  return invalid_argument("unknown --out-dtype '" + *text + "' (valid: f32, f64)");
}

/// The .npy bytes of the output in `dtype`, from the float64 reference's output or the backend's float32 one.
StatusOr<std::vector<uint8_t>> encode_output(const AttendInputs& inputs, bool ran_f64, io::NpyDtype dtype) {
  const std::vector<int64_t> shape = inputs.output_shape();
  if (ran_f64) {
    const std::vector<double>& o = inputs.output_f64();
    if (dtype == io::NpyDtype::f64) return io::encode_npy_f64(shape, o);
    return io::encode_npy_f32(shape, std::vector<float>(o.begin(), o.end()));  // rounded once, as the oracle does
  }
  const std::vector<float>& o = inputs.output();
  if (dtype == io::NpyDtype::f32) return io::encode_npy_f32(shape, o);
  return io::encode_npy_f64(shape, std::vector<double>(o.begin(), o.end()));
}

StatusOr<AttentionOptions> options_from(const Args& args) {
  AttentionOptions o;
  auto scale = args.get_double("scale", 0.0);
  if (!scale.ok()) return scale.status();
  auto softcap = args.get_double("softcap", 0.0);
  if (!softcap.ok()) return softcap.status();
  auto alibi = args.get_double("alibi", 0.0);
  if (!alibi.ok()) return alibi.status();
  auto window = args.get_int("window", 0);
  if (!window.ok()) return window.status();
  // validate() checks these too; checking them here names the flag the user typed.
  if (*softcap < 0) return invalid_argument("--softcap " + *args.get("softcap") + " must be >= 0 (0: none)");
  if (*alibi < 0) return invalid_argument("--alibi " + *args.get("alibi") + " must be >= 0 (0: none)");
  if (*window < 0) return invalid_argument("--window " + *args.get("window") + " must be >= 0 (0: none)");
  o.scale = *scale;
  o.softcap = *softcap;
  o.alibi_max_bias = *alibi;
  o.window = *window;
  o.causal = args.has("causal");
  return o;
}

}  // namespace

int cmd_attend(int argc, char** argv) {
  Args args;
  args.value("q", "queries, float32 or float64 [batch?, n_head_q, n_q, d_k]");
  args.value("k", "keys, float32 or float64 [batch?, n_head_kv, n_kv, d_k]");
  args.value("v", "values, float32 or float64 [batch?, n_head_kv, n_kv, d_v]");
  args.value("ktype", "KV type K is stored as (default f16): " + kv_type_names());
  args.value("vtype", "KV type V is stored as (default f16)");
  args.value("mask", "additive mask .npy, float32, float64 or float16 (-inf hides a key)");
  args.flag("causal", "hide keys after the query's position (bottom-right aligned)");
  args.value("scale", "score scale (default 1/sqrt(d_k); 0 also means the default)");
  args.value("softcap", "logit softcap c: s = c * tanh(s / c), before the mask (default 0: none)");
  args.value("alibi", "ALiBi max bias (GGML's slopes; default 0: none)");
  args.value("sinks", "attention sinks .npy, float32 or float64 [n_head_q]");
  args.value("window", "sliding window: hide key j when position - j >= W (default 0: none)");
  args.value("backend", "ref, cpu or cuda (default ref)");
  args.value("out-dtype", "f32 or f64: the dtype of O (default: float64 when Q is float64, else float32)");
  args.value("out", "output .npy [batch?, n_head_q, n_q, d_v]", {"-o"});
  if (Status s = args.parse(argc, argv, 1); !s.ok()) return usage_error(kCommand, s);
  if (args.help()) return print_help(kSynopsis, args);
  if (!args.positionals().empty()) {
    return usage_error(kCommand, "unexpected operand '" + args.positionals()[0] + "' (every input is a flag)");
  }
  for (const char* required : {"q", "k", "v", "out"}) {
    if (!args.has(required)) return usage_error(kCommand, "--" + std::string(required) + " is required");
  }

  auto ktype = kv_type_flag(args, "ktype", KvType::f16);
  if (!ktype.ok()) return fail(kCommand, ktype.status());
  auto vtype = kv_type_flag(args, "vtype", KvType::f16);
  if (!vtype.ok()) return fail(kCommand, vtype.status());
  const std::string backend_text = args.get("backend").value_or("ref");
  const std::optional<BackendKind> backend = backend_from_name(backend_text);
  if (!backend) return fail(kCommand, "unknown backend '" + backend_text + "' (valid backends: ref, cpu, cuda)");
  if (!backend_available(*backend)) {
    return fail(kCommand, "backend '" + backend_text + "' is not available in this build (see 'kvflash info')");
  }
  auto options = options_from(args);
  if (!options.ok()) return fail(kCommand, options.status());
  auto out_dtype_given = out_dtype_flag(args);
  if (!out_dtype_given.ok()) return fail(kCommand, out_dtype_given.status());

  AttendFiles files{*args.get("q"), *args.get("k"), *args.get("v"), args.get("mask").value_or(""),
                    args.get("sinks").value_or("")};
  if (args.has("mask") && files.mask.empty()) return usage_error(kCommand, "--mask needs a file name");
  if (args.has("sinks") && files.sinks.empty()) return usage_error(kCommand, "--sinks needs a file name");
  auto inputs = AttendInputs::load(files, *ktype, *vtype);
  if (!inputs.ok()) return fail(kCommand, inputs.status());
  const io::NpyDtype out_dtype = out_dtype_given->value_or(inputs->q_dtype());
  const AttentionProblem problem = inputs->problem(*options);
  if (Status s = validate(problem); !s.ok()) return fail(kCommand, s);
  // The oracle keeps float64 inputs and a float64 output at full precision; with float32 in and out, the float32
  // problem gives the same bits (attend_reference also computes in double and rounds O once).
  const bool run_f64 = *backend == BackendKind::ref && (inputs->has_f64_input() || out_dtype == io::NpyDtype::f64);
  const Status run = run_f64 ? inputs->run_reference_f64(problem) : run_on_backend(*backend, problem);
  if (!run.ok()) return fail(kCommand, run);

  auto npy = encode_output(*inputs, run_f64, out_dtype);
  if (!npy.ok()) return fail(kCommand, npy.status());
  if (Status s = write_file_atomic(*args.get("out"), npy->data(), npy->size()); !s.ok()) return fail(kCommand, s);
  return 0;
}

}  // namespace kvflash::cli
