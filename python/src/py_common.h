// Shared pieces of the Python bindings: Status -> Python exception, names -> enums, NumPy-owned output arrays.
#pragma once

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <cstdint>
#include <string>
#include <vector>

#include "kvflash/attention_problem.h"
#include "kvflash/backend.h"
#include "kvflash/kv_type.h"
#include "kvflash/status.h"

namespace kvflash::python {

namespace nb = nanobind;

/// Raises the Python exception for `s` with its message: ValueError for bad input (invalid_argument,
/// unsupported, format_error), MemoryError for out_of_memory, OSError for io_error, RuntimeError otherwise.
/// Needs the GIL.
[[noreturn]] void raise(const Status& s);
[[noreturn]] void raise_type_error(const std::string& message);
inline void raise_if_error(const Status& s) {
  if (!s.ok()) raise(s);
}

/// "q8_0" -> KvType, or ValueError listing the valid names.
KvType type_or_raise(const std::string& name);
/// "ref" -> BackendKind, or ValueError (unknown name, or not available in this build).
BackendKind backend_or_raise(const std::string& name);

/// Runs a validated problem on a backend (host pointers). Called without the GIL.
Status run_backend(BackendKind backend, const AttentionProblem& p);

std::string shape_string(const std::vector<int64_t>& shape);

/// kvflash.KvCache (py_cache.cpp).
void register_cache(nb::module_& m);
/// kvflash.plan (py_plan.cpp).
void register_plan(nb::module_& m);

/// A new C-contiguous NumPy array that owns its memory; fill `data`, then return release().
template <typename Element>
struct NewArray {
  Element* data;
  nb::ndarray<nb::numpy, Element> array;
  nb::ndarray<nb::numpy, Element> release() { return std::move(array); }
};

template <typename Element>
NewArray<Element> new_array(const std::vector<int64_t>& shape) {
  size_t n = 1;
  for (int64_t d : shape) n *= static_cast<size_t>(d);
  Element* data = new Element[n == 0 ? 1 : n];
  nb::capsule owner(data, [](void* p) noexcept { delete[] static_cast<Element*>(p); });
  const std::vector<size_t> extents(shape.begin(), shape.end());
  return {data, nb::ndarray<nb::numpy, Element>(data, extents.size(), extents.data(), owner)};
}

}  // namespace kvflash::python
