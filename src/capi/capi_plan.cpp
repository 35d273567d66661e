// C API: routes (plan, explain, attend along a route), models, workspace planning.
#include <cstring>
#include <string>

#include "capi/capi_internal.h"
#include "kvflash/attention.h"
#include "kvflash/model.h"
#include "kvflash/route.h"
#include "kvflash/workspace.h"

struct kvflash_route {
  kvflash::Route route;
};

using namespace kvflash;

namespace kvflash::capi {

size_t copy_text(const std::string& text, char* buf, size_t size) {
  if (buf != nullptr && size > 0) {
    const size_t n = text.size() < size - 1 ? text.size() : size - 1;
    std::memcpy(buf, text.data(), n);
    buf[n] = '\0';
  }
  return text.size();
}

Status backend_from_id(const char* function, int backend, BackendKind* out) {
  if (backend < 0 || backend >= kBackendCount) {
    return invalid_argument(std::string(function) + ": backend = " + std::to_string(backend) +
                            " is not a backend id (0.." + std::to_string(kBackendCount - 1) + ")");
  }
  *out = static_cast<BackendKind>(backend);
  return Status::Ok();
}

}  // namespace kvflash::capi

namespace {

/// The resolved problem of a handle, or the Status recorded as the last error.
int resolved(const kvflash_problem& h, AttentionProblem* out) {
  auto p = capi::resolve(h);
  if (!p.ok()) return capi::fail(p.status());
  *out = *p;
  return KVFLASH_OK;
}

}  // namespace

extern "C" {

size_t kvflash_workspace_alignment(void) { return static_cast<size_t>(kWorkspaceAlign); }

kvflash_route* kvflash_plan_route(const kvflash_problem* problem, int backend) {
  static constexpr const char* kFunction = "kvflash_plan_route";
  if (problem == nullptr) {
    capi::null_argument(kFunction, "problem");
    return nullptr;
  }
  kvflash_route* out = nullptr;
  capi::guarded(kFunction, [&]() -> int {
    BackendKind kind{};
    KVFLASH_C_RETURN_IF_ERROR(capi::backend_from_id(kFunction, backend, &kind));
    AttentionProblem p;
    if (int rc = resolved(*problem, &p); rc != KVFLASH_OK) return rc;
    auto route = plan_route(p, caps_for(kind));
    if (!route.ok()) return capi::fail(route.status());
    out = new kvflash_route{*route};
    return KVFLASH_OK;
  });
  return out;
}

void kvflash_route_destroy(kvflash_route* route) { delete route; }

int kvflash_route_backend(const kvflash_route* route) {
  return route != nullptr ? static_cast<int>(route->route.backend) : -1;
}

const char* kvflash_route_kernel(const kvflash_route* route) {
  // Kernel names are string literals of the kernel table, so data() is NUL-terminated.
  return route != nullptr ? kernel_name(route->route.kernel).data() : nullptr;
}

size_t kvflash_route_workspace_bytes(const kvflash_route* route) {
  return route != nullptr ? static_cast<size_t>(route->route.workspace_bytes) : 0;
}

int64_t kvflash_route_splits(const kvflash_route* route) { return route != nullptr ? route->route.n_splits : 0; }

double kvflash_route_cost_us(const kvflash_route* route) { return route != nullptr ? route->route.cost_us : 0.0; }

size_t kvflash_explain(const kvflash_problem* problem, int backend, char* buf, size_t size) {
  static constexpr const char* kFunction = "kvflash_explain";
  if (problem == nullptr) {
    capi::null_argument(kFunction, "problem");
    return 0;
  }
  size_t length = 0;
  capi::guarded(kFunction, [&]() -> int {
    BackendKind kind{};
    KVFLASH_C_RETURN_IF_ERROR(capi::backend_from_id(kFunction, backend, &kind));
    // An invalid problem is explained too (every candidate then says why); only an overflowing dense layout is not.
    AttentionProblem p = problem->resolved();
    length = capi::copy_text(explain(p, caps_for(kind)).to_string(), buf, size);
    return KVFLASH_OK;
  });
  return length;
}

int kvflash_attend_route(const kvflash_problem* problem, const kvflash_route* route, void* workspace,
                         size_t workspace_bytes, void* stream) {
  static constexpr const char* kFunction = "kvflash_attend_route";
  if (problem == nullptr) return capi::null_argument(kFunction, "problem");
  if (route == nullptr) return capi::null_argument(kFunction, "route");
  return capi::guarded(kFunction, [&]() -> int {
    AttentionProblem p;
    if (int rc = resolved(*problem, &p); rc != KVFLASH_OK) return rc;
    return capi::to_c(attend(p, route->route, workspace, workspace_bytes, stream));
  });
}

int kvflash_attend(const kvflash_problem* problem, int backend, void* workspace, size_t workspace_bytes) {
  static constexpr const char* kFunction = "kvflash_attend";
  if (problem == nullptr) return capi::null_argument(kFunction, "problem");
  return capi::guarded(kFunction, [&]() -> int {
    BackendKind kind{};
    KVFLASH_C_RETURN_IF_ERROR(capi::backend_from_id(kFunction, backend, &kind));
    AttentionProblem p;
    if (int rc = resolved(*problem, &p); rc != KVFLASH_OK) return rc;
    KVFLASH_C_RETURN_IF_ERROR(validate(p));
    if (!backend_available(kind)) {
      return capi::fail(unsupported(std::string(kFunction) + ": backend " + std::string(backend_name(kind)) +
                                    " is not available in this build (or no device is present)"));
    }
    auto route = plan_route(p, caps_for(kind));
    if (!route.ok()) return capi::fail(route.status());
    return capi::to_c(attend(p, *route, workspace, workspace_bytes, nullptr));
  });
}

}  // extern "C"
