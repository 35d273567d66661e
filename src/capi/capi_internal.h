// Shared pieces of the C API's implementation: the thread's last error, the catch-all edge that keeps C++
// exceptions from crossing into C, and the handle structs behind the opaque C types.
#pragma once

#include <exception>
#include <new>
#include <optional>
#include <string>

#include "kvflash/attention_problem.h"
#include "kvflash/backend.h"
#include "kvflash/model.h"
#include "kvflash/kvflash.h"
#include "kvflash/status.h"

namespace kvflash::capi {

/// Records `s` as this thread's last error and returns its code (as a C status).
int fail(const Status& s) noexcept;
inline int fail(StatusCode code, const char* message) noexcept {
  try {
    return fail(Status(code, message));
  } catch (...) {
    return static_cast<int>(code);
  }
}

/// Returns 0 for ok, else records the error and returns its code.
inline int to_c(const Status& s) noexcept { return s.ok() ? KVFLASH_OK : fail(s); }

/// Runs `body` (returning a C status) so that no exception escapes: an allocation failure becomes
/// KVFLASH_ERROR_OUT_OF_MEMORY, anything else KVFLASH_ERROR_INTERNAL, each with a message.
template <typename Body>
int guarded(const char* function, Body&& body) noexcept {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return fail(StatusCode::out_of_memory, function);
  } catch (const std::exception& e) {
    try {
      return fail(Status(StatusCode::internal, std::string(function) + ": " + e.what()));
    } catch (...) {
      return fail(StatusCode::internal, function);
    }
  } catch (...) {
    return fail(StatusCode::internal, function);
  }
}

/// Early return of a failed Status from a C entry point: records it and returns its code.
#define KVFLASH_C_RETURN_IF_ERROR(expr)                          \
  do {                                                           \
    ::kvflash::Status kvflash_c_status_ = (expr);                \
    if (!kvflash_c_status_.ok()) return ::kvflash::capi::fail(kvflash_c_status_); \
  } while (0)

/// Status for a NULL handle or pointer argument.
int null_argument(const char* function, const char* argument) noexcept;

/// A valid type id as a KvType, or nullopt.
std::optional<KvType> type_from_id(int type);

/// Strides from a C int64_t[3] (seq, head, row).
Strides strides_from(const int64_t* strides);

}  // namespace kvflash::capi

/// The state behind `kvflash_problem`: an AttentionProblem whose strides may still be "dense", resolved from
/// the shape when the problem is used (so setters can come in any order).
struct kvflash_problem {
  kvflash::AttentionProblem problem;
  bool q_dense = true;
  bool k_dense = true;
  bool v_dense = true;
  bool o_dense = true;
  bool mask_dense = true;

  /// The problem with every "dense" stride computed from the current shape and types (the stored strides where
  /// a dense layout overflows; validate() then reports the shape).
  kvflash::AttentionProblem resolved() const;
};

/// The state behind `kvflash_model`.
struct kvflash_model {
  kvflash::ModelShape model;
};

namespace kvflash::capi {
/// The problem with every "dense" stride computed, or why a dense layout does not exist for this shape.
StatusOr<AttentionProblem> resolve(const kvflash_problem& h);

/// Copies `text` into buf with snprintf rules and returns its full length.
size_t copy_text(const std::string& text, char* buf, size_t size);

/// A C backend id as a BackendKind, or invalid_argument naming `function`.
Status backend_from_id(const char* function, int backend, BackendKind* out);
}  // namespace kvflash::capi
