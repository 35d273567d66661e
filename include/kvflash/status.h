// Status: the one way library code reports failure. Nothing on a path the API can reach aborts.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace kvflash {

enum class StatusCode : int {
  ok = 0,
  invalid_argument = 1,  // a field of a problem, a shape, a flag: the message names it and its value
  unsupported = 2,       // valid input that no route on this backend handles (routing is total, so a bug)
  out_of_memory = 3,     // a budget, page pool or allocator ran out: the message names the bucket and bytes
  io_error = 4,          // a file could not be read or written
  format_error = 5,      // a file's bytes are malformed (.npy, GGUF, checkpoint)
  backend_error = 6,     // a device runtime call failed
  internal = 7,
};

/// Code plus a message that names the field and its value ("n_head_kv = 3 does not divide n_head_q = 32").
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return {}; }
  bool ok() const { return code_ == StatusCode::ok; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

 private:
  StatusCode code_ = StatusCode::ok;
  std::string message_;
};

inline Status invalid_argument(std::string m) { return {StatusCode::invalid_argument, std::move(m)}; }
inline Status unsupported(std::string m) { return {StatusCode::unsupported, std::move(m)}; }
inline Status out_of_memory(std::string m) { return {StatusCode::out_of_memory, std::move(m)}; }
inline Status io_error(std::string m) { return {StatusCode::io_error, std::move(m)}; }
inline Status format_error(std::string m) { return {StatusCode::format_error, std::move(m)}; }
inline Status backend_error(std::string m) { return {StatusCode::backend_error, std::move(m)}; }

/// A value or the Status that explains why there is none.
template <typename Value>
class [[nodiscard]] StatusOr {
 public:
  StatusOr(Value v) : state_(std::move(v)) {}                // NOLINT: implicit by design
  StatusOr(Status s) : state_(std::move(s)) {                // NOLINT: implicit by design
    if (std::get<Status>(state_).ok()) state_ = Status(StatusCode::internal, "StatusOr built from an ok Status");
  }
  bool ok() const { return std::holds_alternative<Value>(state_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(state_);
  }
  Value& value() & { return std::get<Value>(state_); }
  const Value& value() const& { return std::get<Value>(state_); }
  Value&& value() && { return std::get<Value>(std::move(state_)); }
  Value* operator->() { return &value(); }
  const Value* operator->() const { return &value(); }
  Value& operator*() & { return value(); }
  const Value& operator*() const& { return value(); }

 private:
  std::variant<Status, Value> state_;
};

}  // namespace kvflash

/// Early return of a failed Status from a function that returns Status or StatusOr.
#define KVFLASH_RETURN_IF_ERROR(expr)            \
  do {                                           \
    ::kvflash::Status kvflash_status_ = (expr);  \
    if (!kvflash_status_.ok()) return kvflash_status_; \
  } while (0)
