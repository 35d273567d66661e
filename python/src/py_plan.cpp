// kvflash.plan(): the memory plan of a model's attention, with the fields and values of `kvflash plan --json`
// (tests/python/test_plan.py compares the two).
#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>

#include <optional>
#include <string>
#include <vector>

#include "kvflash/model.h"
#include "plan/deployment.h"
#include "plan/kernel_table.h"
#include "py_common.h"

namespace kvflash::python {
namespace {

/// The backend `kvflash plan` defaults to: the first of cuda, cpu, ref that has kernels in this build.
BackendKind default_backend() {
  for (BackendKind b : {BackendKind::cuda, BackendKind::cpu}) {
    for (const plan::KernelSpec& k : plan::kKernels) {
      if (k.backend == b) return b;
    }
  }
  return BackendKind::ref;
}

nb::object optional_int(bool present, int64_t value) { return present ? nb::object(nb::int_(value)) : nb::none(); }
nb::object optional_bool(bool present, bool value) { return present ? nb::object(nb::bool_(value)) : nb::none(); }

nb::dict plan(std::optional<std::string> preset, std::optional<std::string> gguf, std::optional<int64_t> ctx,
              int64_t batch, const std::string& ktype, const std::string& vtype, std::optional<int64_t> budget,
              int64_t ubatch, int64_t other, std::optional<std::string> backend_text) {
  if (preset.has_value() == gguf.has_value()) raise(invalid_argument("give exactly one of model and gguf"));
  plan::DeploymentInputs in;
  {
    auto model = preset ? model_preset(*preset) : model_from_gguf(*gguf);
    if (!model.ok()) raise(model.status());
    in.model = std::move(*model);
  }
  if (!ctx && in.model.max_context <= 0) raise(invalid_argument("ctx is required: the model does not say its context length"));
  const int64_t context = ctx.value_or(in.model.max_context);
  if (context < 1) raise(invalid_argument("ctx = " + std::to_string(context) + " must be >= 1"));
  if (batch < 1) raise(invalid_argument("batch = " + std::to_string(batch) + " must be >= 1"));
  if (ubatch < 1) raise(invalid_argument("ubatch = " + std::to_string(ubatch) + " must be >= 1"));
  if (other < 0) raise(invalid_argument("other = " + std::to_string(other) + " must be >= 0"));
  if (budget && *budget < 0) raise(invalid_argument("budget = " + std::to_string(*budget) + " must be >= 0"));
  in.context = context;
  in.n_seq = batch;
  in.ubatch = ubatch;
  in.k_type = type_or_raise(ktype);
  const KvType v = type_or_raise(vtype);
  // An MLA model stores only K, whose first d_v values are V: V's type is K's.
  in.v_type = in.model.v_is_view_of_k ? in.k_type : v;
  in.other_bytes = other;
  BackendKind backend = default_backend();
  if (backend_text) {
    const auto b = backend_from_name(*backend_text);
    if (!b) raise(invalid_argument("unknown backend '" + *backend_text + "' (valid backends: ref, cpu, cuda)"));
    backend = *b;
  }
  in.caps = caps_for(backend);

  plan::DeploymentPlan p;
  {
    nb::gil_scoped_release unlocked;
    auto planned = plan::plan_deployment(in);
    if (!planned.ok()) {
      nb::gil_scoped_acquire locked;
      raise(planned.status());
    }
    p = std::move(*planned);
  }

  nb::dict d;
  d["model"] = in.model.name;
  d["architecture"] = in.model.architecture;
  d["source"] = in.model.source;
  d["layers"] = static_cast<int64_t>(in.model.layers.size());
  d["model_max_context"] = in.model.max_context;
  d["v_is_view_of_k"] = in.model.v_is_view_of_k;
  d["context"] = in.context;
  d["batch"] = in.n_seq;
  d["ubatch"] = in.ubatch;
  d["k_type"] = std::string(kv_traits(in.k_type).name);
  d["v_type"] = std::string(kv_traits(in.v_type).name);
  d["backend"] = std::string(backend_name(in.caps.kind));
  d["kv_cache_bytes"] = p.kv_bytes;
  nb::list per_layer;
  for (int64_t b : p.kv_per_layer) per_layer.append(b);
  d["kv_cache_bytes_per_layer"] = per_layer;
  d["workspace_bytes"] = p.workspace.total_bytes;
  nb::dict ws;
  ws["partial_o_bytes"] = p.workspace.partial_o_bytes;
  ws["partial_stats_bytes"] = p.workspace.partial_stats_bytes;
  ws["q_staging_bytes"] = p.workspace.q_staging_bytes;
  ws["worker_scratch_bytes"] = p.workspace.worker_scratch_bytes;
  ws["bounding_kernel"] = p.workspace.bounding_kernel;
  d["workspace"] = ws;
  d["other_bytes"] = p.other_bytes;
  d["total_bytes"] = p.total_bytes;
  d["budget_bytes"] = optional_int(budget.has_value(), budget.value_or(0));
  d["fits"] = optional_bool(budget.has_value(), budget && p.total_bytes <= *budget);

  // Every KV type at the same context: its plan and, with a budget, the largest context that fits.
  nb::dict max_context;
  nb::list comparison;
  for (const KvTraits& t : all_kv_types()) {
    plan::DeploymentInputs at = in;
    at.k_type = at.v_type = t.type;
    Status status;
    plan::DeploymentPlan row;
    int64_t row_max = -1;
    {
      nb::gil_scoped_release unlocked;
      auto planned = plan::plan_deployment(at);
      if (!planned.ok()) {
        status = planned.status();
      } else {
        row = std::move(*planned);
        if (budget) {
          auto m = plan::max_context_within(at, *budget);
          if (!m.ok()) status = m.status();
          else row_max = *m;
        }
      }
    }
    // A type that cannot store the model's head dims is a row with an error, as in the CLI; anything else is raised.
    if (!status.ok() && status.code() != StatusCode::invalid_argument) raise(status);
    const std::string name(t.name);
    max_context[name.c_str()] = optional_int(status.ok() && row_max >= 0, row_max);
    nb::dict entry;
    entry["type"] = name;
    if (status.ok()) {
      entry["kv_cache_bytes"] = row.kv_bytes;
      entry["workspace_bytes"] = row.workspace.total_bytes;
      entry["total_bytes"] = row.total_bytes;
      entry["fits"] = optional_bool(budget.has_value(), budget && row.total_bytes <= *budget);
    } else {
      entry["error"] = status.message();
    }
    comparison.append(entry);
  }
  d["max_context"] = max_context;
  d["comparison"] = comparison;
  return d;
}

}  // namespace

void register_plan(nb::module_& m) {
  using namespace nb::literals;
  m.def("plan", &plan, "model"_a.none(), "gguf"_a.none(), "ctx"_a.none(), "batch"_a, "ktype"_a, "vtype"_a,
        "budget"_a.none(), "ubatch"_a, "other"_a, "backend"_a.none());
  m.def("model_presets", [] {
    nb::list names;
    for (std::string_view n : model_preset_names()) names.append(std::string(n));
    return names;
  });
}

}  // namespace kvflash::python
