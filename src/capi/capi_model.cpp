// C API: model shapes (presets, GGUF, hand-built) and workspace planning.
#include <string>

#include "capi/capi_internal.h"
#include "kvflash/model.h"
#include "kvflash/workspace.h"

using namespace kvflash;

namespace {

kvflash_model* make_model(const char* function, StatusOr<ModelShape> (*load)(const std::string&),
                          const char* argument, const char* text) {
  if (text == nullptr) {
    capi::null_argument(function, argument);
    return nullptr;
  }
  kvflash_model* out = nullptr;
  capi::guarded(function, [&]() -> int {
    auto m = load(text);
    if (!m.ok()) return capi::fail(m.status());
    out = new kvflash_model{std::move(*m)};
    return KVFLASH_OK;
  });
  return out;
}

StatusOr<ModelShape> load_preset(const std::string& name) { return model_preset(name); }
StatusOr<ModelShape> load_gguf(const std::string& path) { return model_from_gguf(path); }

int types_from_ids(const char* function, int k_type, int v_type, KvType* k, KvType* v) {
  const auto kt = capi::type_from_id(k_type), vt = capi::type_from_id(v_type);
  if (!kt || !vt) {
    return capi::fail(invalid_argument(std::string(function) + ": " + (kt ? "v_type = " : "k_type = ") +
                                       std::to_string(kt ? v_type : k_type) + " is not a type id (0.." +
                                       std::to_string(kKvTypeCount - 1) + ")"));
  }
  *k = *kt;
  *v = *vt;
  return KVFLASH_OK;
}

// Version 1 of kvflash_workspace_plan ends with total_bytes.
constexpr size_t kWorkspacePlanV1Size = offsetof(kvflash_workspace_plan, total_bytes) + sizeof(int64_t);

}  // namespace

extern "C" {

size_t kvflash_model_preset_count(void) { return model_preset_names().size(); }

const char* kvflash_model_preset_name(size_t i) {
  const auto names = model_preset_names();
  // Preset names are string literals, so data() is NUL-terminated.
  return i < names.size() ? names[i].data() : nullptr;
}

kvflash_model* kvflash_model_preset(const char* name) {
  return make_model("kvflash_model_preset", load_preset, "name", name);
}

kvflash_model* kvflash_model_from_gguf(const char* path) {
  return make_model("kvflash_model_from_gguf", load_gguf, "path", path);
}

kvflash_model* kvflash_model_create(const char* name) {
  kvflash_model* out = nullptr;
  capi::guarded("kvflash_model_create", [&]() -> int {
    out = new kvflash_model{};
    out->model.name = name != nullptr ? name : "";
    out->model.source = "kvflash_model_create";
    return KVFLASH_OK;
  });
  return out;
}

int kvflash_model_add_layer(kvflash_model* model, int64_t n_head_q, int64_t n_head_kv, int64_t d_k, int64_t d_v,
                            int64_t window) {
  static constexpr const char* kFunction = "kvflash_model_add_layer";
  if (model == nullptr) return capi::null_argument(kFunction, "model");
  return capi::guarded(kFunction, [&]() -> int {
    model->model.layers.push_back({n_head_q, n_head_kv, d_k, d_v, window});
    return KVFLASH_OK;
  });
}

void kvflash_model_destroy(kvflash_model* model) { delete model; }

const char* kvflash_model_name(const kvflash_model* model) { return model != nullptr ? model->model.name.c_str() : ""; }

int64_t kvflash_model_layer_count(const kvflash_model* model) {
  return model != nullptr ? static_cast<int64_t>(model->model.layers.size()) : 0;
}

int kvflash_model_kv_cache_bytes(const kvflash_model* model, int k_type, int v_type, int64_t context, int64_t n_seq,
                                 int64_t* bytes) {
  static constexpr const char* kFunction = "kvflash_model_kv_cache_bytes";
  if (model == nullptr) return capi::null_argument(kFunction, "model");
  if (bytes == nullptr) return capi::null_argument(kFunction, "bytes");
  return capi::guarded(kFunction, [&]() -> int {
    KvType k{}, v{};
    if (int rc = types_from_ids(kFunction, k_type, v_type, &k, &v); rc != KVFLASH_OK) return rc;
    KVFLASH_C_RETURN_IF_ERROR(validate_model(model->model));
    if (context < 0 || n_seq < 0) {
      return capi::fail(invalid_argument(std::string(kFunction) + ": context = " + std::to_string(context) +
                                         " and n_seq = " + std::to_string(n_seq) + " must be >= 0"));
    }
    auto total = kv_cache_bytes(model->model, k, v, context, n_seq);
    if (!total.ok()) return capi::fail(total.status());
    *bytes = *total;
    return KVFLASH_OK;
  });
}

int kvflash_plan_workspace(const kvflash_model* model, int k_type, int v_type, int backend, int64_t max_sequences,
                           int64_t max_query_rows, int64_t kv_capacity_tokens, kvflash_workspace_plan* out) {
  static constexpr const char* kFunction = "kvflash_plan_workspace";
  if (model == nullptr) return capi::null_argument(kFunction, "model");
  if (out == nullptr) return capi::null_argument(kFunction, "out");
  return capi::guarded(kFunction, [&]() -> int {
    if (out->struct_size < kWorkspacePlanV1Size) {
      return capi::fail(invalid_argument(std::string(kFunction) + ": out->struct_size = " +
                                         std::to_string(out->struct_size) + " is smaller than the " +
                                         std::to_string(kWorkspacePlanV1Size) + " bytes of kvflash_workspace_plan"));
    }
    WorkspaceLimits limits;
    if (int rc = types_from_ids(kFunction, k_type, v_type, &limits.k_type, &limits.v_type); rc != KVFLASH_OK) {
      return rc;
    }
    BackendKind kind{};
    KVFLASH_C_RETURN_IF_ERROR(capi::backend_from_id(kFunction, backend, &kind));
    limits.max_sequences = max_sequences;
    limits.max_query_rows = max_query_rows;
    limits.kv_capacity_tokens = kv_capacity_tokens;
    limits.model = model->model;
    limits.caps = caps_for(kind);
    auto plan = plan_workspace(limits);
    if (!plan.ok()) return capi::fail(plan.status());
    out->partial_o_bytes = plan->partial_o_bytes;
    out->partial_stats_bytes = plan->partial_stats_bytes;
    out->q_staging_bytes = plan->q_staging_bytes;
    out->worker_scratch_bytes = plan->worker_scratch_bytes;
    out->total_bytes = plan->total_bytes;
    return KVFLASH_OK;
  });
}

}  // extern "C"
