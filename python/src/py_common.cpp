#include "py_common.h"

#include <cstdlib>
#include <memory>

#include "kvflash/attention.h"
#include "kvflash/route.h"

namespace kvflash::python {

void raise(const Status& s) {
  PyObject* type = PyExc_RuntimeError;
  switch (s.code()) {
    case StatusCode::invalid_argument:
    case StatusCode::unsupported:
    case StatusCode::format_error: type = PyExc_ValueError; break;
    case StatusCode::out_of_memory: type = PyExc_MemoryError; break;
    case StatusCode::io_error: type = PyExc_OSError; break;
    case StatusCode::ok:
    case StatusCode::backend_error:
    case StatusCode::internal: type = PyExc_RuntimeError; break;
  }
  PyErr_SetString(type, s.message().c_str());
  throw nb::python_error();
}

void raise_type_error(const std::string& message) {
  PyErr_SetString(PyExc_TypeError, message.c_str());
  throw nb::python_error();
}

KvType type_or_raise(const std::string& name) {
  if (auto t = kv_type_from_name(name)) return *t;
  std::string valid;
  for (const KvTraits& t : all_kv_types()) valid += (valid.empty() ? "" : ", ") + std::string(t.name);
  raise(invalid_argument("unknown KV type '" + name + "' (valid types: " + valid + ")"));
}

BackendKind backend_or_raise(const std::string& name) {
  const auto b = backend_from_name(name);
  if (!b) raise(invalid_argument("unknown backend '" + name + "' (valid backends: ref, cpu, cuda)"));
  if (!backend_available(*b)) {
    raise(unsupported("backend '" + name + "' is not available in this build (see kvflash.info())"));
  }
  return *b;
}

Status run_backend(BackendKind backend, const AttentionProblem& p) {
  // Every array the bindings build a problem from is host memory; a cuda route would read it as device memory.
  if (backend == BackendKind::cuda) {
    return unsupported("backend 'cuda' reads device arrays, and these bindings pass host arrays only (so far): "
                       "use backend='ref' or 'cpu'");
  }
  auto route = plan_route(p, caps_for(backend));
  if (!route.ok()) return route.status();
  // The caller owns the workspace (attention itself allocates nothing): sized by the route, aligned as it asks.
  const size_t bytes = static_cast<size_t>(route->workspace_bytes);
  struct Free {
    void operator()(void* q) const { std::free(q); }
  };
  std::unique_ptr<void, Free> workspace(
      bytes > 0 ? std::aligned_alloc(static_cast<size_t>(kWorkspaceAlign),
                                     (bytes + kWorkspaceAlign - 1) / kWorkspaceAlign * kWorkspaceAlign)
                : nullptr);
  if (bytes > 0 && workspace == nullptr) {
    return out_of_memory("workspace: " + std::to_string(bytes) + " bytes for route " +
                         std::string(kernel_name(route->kernel)));
  }
  return attend(p, *route, workspace.get(), bytes);
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string out = "(";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + (shape.size() == 1 ? ",)" : ")");
}

}  // namespace kvflash::python
