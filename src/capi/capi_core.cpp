// C API: version, errors, type traits, quantize/dequantize, backends.
#include <cstring>
#include <limits>

#include "capi/capi_internal.h"
#include "kvflash/backend.h"
#include "kvflash/kv_type.h"
#include "kvflash/quantize.h"
#include "kvflash/version.h"

// The C enums are the C++ enums' values; a change on either side must fail to compile.
static_assert(KVFLASH_TYPE_F32 == static_cast<int>(kvflash::KvType::f32));
static_assert(KVFLASH_TYPE_F16 == static_cast<int>(kvflash::KvType::f16));
static_assert(KVFLASH_TYPE_BF16 == static_cast<int>(kvflash::KvType::bf16));
static_assert(KVFLASH_TYPE_Q8_0 == static_cast<int>(kvflash::KvType::q8_0));
static_assert(KVFLASH_TYPE_Q4_0 == static_cast<int>(kvflash::KvType::q4_0));
static_assert(KVFLASH_TYPE_Q4_1 == static_cast<int>(kvflash::KvType::q4_1));
static_assert(KVFLASH_TYPE_Q5_0 == static_cast<int>(kvflash::KvType::q5_0));
static_assert(KVFLASH_TYPE_Q5_1 == static_cast<int>(kvflash::KvType::q5_1));
static_assert(KVFLASH_TYPE_TURBO2 == static_cast<int>(kvflash::KvType::turbo2));
static_assert(KVFLASH_TYPE_TURBO3 == static_cast<int>(kvflash::KvType::turbo3));
static_assert(KVFLASH_TYPE_TURBO4 == static_cast<int>(kvflash::KvType::turbo4));
static_assert(KVFLASH_TYPE_TURBO4 + 1 == kvflash::kKvTypeCount);
static_assert(KVFLASH_OK == static_cast<int>(kvflash::StatusCode::ok));
static_assert(KVFLASH_ERROR_INVALID_ARGUMENT == static_cast<int>(kvflash::StatusCode::invalid_argument));
static_assert(KVFLASH_ERROR_UNSUPPORTED == static_cast<int>(kvflash::StatusCode::unsupported));
static_assert(KVFLASH_ERROR_OUT_OF_MEMORY == static_cast<int>(kvflash::StatusCode::out_of_memory));
static_assert(KVFLASH_ERROR_IO == static_cast<int>(kvflash::StatusCode::io_error));
static_assert(KVFLASH_ERROR_FORMAT == static_cast<int>(kvflash::StatusCode::format_error));
static_assert(KVFLASH_ERROR_BACKEND == static_cast<int>(kvflash::StatusCode::backend_error));
static_assert(KVFLASH_ERROR_INTERNAL == static_cast<int>(kvflash::StatusCode::internal));
static_assert(KVFLASH_BACKEND_REF == static_cast<int>(kvflash::BackendKind::ref));
static_assert(KVFLASH_BACKEND_CPU == static_cast<int>(kvflash::BackendKind::cpu));
static_assert(KVFLASH_BACKEND_CUDA == static_cast<int>(kvflash::BackendKind::cuda));
static_assert(KVFLASH_BACKEND_CUDA + 1 == kvflash::kBackendCount);
static_assert(KVFLASH_MASK_F32 == static_cast<int>(kvflash::MaskType::f32));
static_assert(KVFLASH_MASK_F16 == static_cast<int>(kvflash::MaskType::f16));

namespace kvflash::capi {
namespace {

// The message outlives the call that set it: the caller reads it after the failing function returned.
thread_local std::string t_last_error;
// When even storing the message fails (out of memory), kvflash_last_error() says so instead.
thread_local const char* t_last_error_fallback = nullptr;

}  // namespace

int fail(const Status& s) noexcept {
  try {
    t_last_error = s.message();
    t_last_error_fallback = nullptr;
  } catch (...) {
    t_last_error_fallback = "out of memory while recording an error message";
  }
  return s.ok() ? static_cast<int>(StatusCode::internal) : static_cast<int>(s.code());
}

int null_argument(const char* function, const char* argument) noexcept {
  try {
    return fail(invalid_argument(std::string(function) + ": " + argument + " is NULL"));
  } catch (...) {
    return fail(StatusCode::invalid_argument, argument);
  }
}

std::optional<KvType> type_from_id(int type) {
  if (type < 0 || type >= kKvTypeCount) return std::nullopt;
  return static_cast<KvType>(type);
}

namespace {

int bad_type(const char* function, int type) {
  return fail(invalid_argument(std::string(function) + ": type = " + std::to_string(type) +
                               " is not a type id (0.." + std::to_string(kKvTypeCount - 1) + ")"));
}

/// Shared checks of quantize/dequantize: a type id, a row length valid for it, non-null buffers when n > 0.
int check_row_call(const char* function, int type, int64_t n, const void* src, const void* dst) {
  const auto t = type_from_id(type);
  if (!t) return bad_type(function, type);
  const KvTraits& tr = kv_traits(*t);
  if (n < 0 || n % tr.block_elems != 0) {
    return fail(invalid_argument(std::string(function) + ": n = " + std::to_string(n) + " is not a multiple of " +
                                 std::string(tr.name) + "'s block size " + std::to_string(tr.block_elems)));
  }
  if (n > 0 && src == nullptr) return null_argument(function, "src");
  if (n > 0 && dst == nullptr) return null_argument(function, "dst");
  return KVFLASH_OK;
}

int dequantize(const char* function, int type, const void* src, int64_t n, float* dst, bool rotated) {
  return guarded(function, [&]() -> int {
    if (int rc = check_row_call(function, type, n, src, dst); rc != KVFLASH_OK) return rc;
    if (n == 0) return KVFLASH_OK;
    return to_c(dequantize_row(static_cast<KvType>(type), src, n, dst, rotated));
  });
}

}  // namespace
}  // namespace kvflash::capi

using namespace kvflash;

extern "C" {

const char* kvflash_version(void) { return KVFLASH_VERSION; }

const char* kvflash_last_error(void) {
  return capi::t_last_error_fallback != nullptr ? capi::t_last_error_fallback : capi::t_last_error.c_str();
}

const char* kvflash_status_name(int status) {
  switch (status) {
    case KVFLASH_OK: return "ok";
    case KVFLASH_ERROR_INVALID_ARGUMENT: return "invalid_argument";
    case KVFLASH_ERROR_UNSUPPORTED: return "unsupported";
    case KVFLASH_ERROR_OUT_OF_MEMORY: return "out_of_memory";
    case KVFLASH_ERROR_IO: return "io_error";
    case KVFLASH_ERROR_FORMAT: return "format_error";
    case KVFLASH_ERROR_BACKEND: return "backend_error";
    case KVFLASH_ERROR_INTERNAL: return "internal";
    default: return "unknown";
  }
}

int kvflash_type_from_name(const char* name) {
  if (name == nullptr) return -1;
  const auto t = kv_type_from_name(name);
  return t ? static_cast<int>(*t) : -1;
}

int kvflash_type_count(void) { return kKvTypeCount; }

const char* kvflash_type_name(int type) {
  const auto t = capi::type_from_id(type);
  // The table's names are string literals, so data() is NUL-terminated.
  return t ? kv_traits(*t).name.data() : nullptr;
}

int64_t kvflash_type_block_elems(int type) {
  const auto t = capi::type_from_id(type);
  return t ? kv_traits(*t).block_elems : 0;
}

int64_t kvflash_type_block_bytes(int type) {
  const auto t = capi::type_from_id(type);
  return t ? kv_traits(*t).block_bytes : 0;
}

int kvflash_type_is_quantized(int type) {
  const auto t = capi::type_from_id(type);
  return t && kv_traits(*t).quantized ? 1 : 0;
}

int kvflash_type_is_rotated(int type) {
  const auto t = capi::type_from_id(type);
  return t && kv_traits(*t).rotated ? 1 : 0;
}

int64_t kvflash_stored_dim(int type, int64_t dim) {
  const auto t = capi::type_from_id(type);
  // stored_dim rounds up: keep dim + 127 inside int64.
  if (!t || dim < 0 || dim > std::numeric_limits<int64_t>::max() - kv_traits(*t).block_elems) return 0;
  return stored_dim(*t, dim);
}

size_t kvflash_row_bytes(int type, int64_t n) {
  const auto t = capi::type_from_id(type);
  if (!t || n < 0) return 0;
  const KvTraits& tr = kv_traits(*t);
  if (n % tr.block_elems != 0) return 0;
  // A row too large to address is as invalid as a ragged one.
  if (n / tr.block_elems > std::numeric_limits<int64_t>::max() / tr.block_bytes) return 0;
  return static_cast<size_t>(row_bytes(*t, n));
}

int kvflash_quantize_row(int type, const float* src, int64_t n, void* dst) {
  static constexpr const char* kFunction = "kvflash_quantize_row";
  return capi::guarded(kFunction, [&]() -> int {
    if (int rc = capi::check_row_call(kFunction, type, n, src, dst); rc != KVFLASH_OK) return rc;
    if (n == 0) return KVFLASH_OK;
    return capi::to_c(quantize_row(static_cast<KvType>(type), src, n, dst));
  });
}

int kvflash_dequantize_row(int type, const void* src, int64_t n, float* dst) {
  return capi::dequantize("kvflash_dequantize_row", type, src, n, dst, false);
}

int kvflash_dequantize_row_rotated(int type, const void* src, int64_t n, float* dst) {
  return capi::dequantize("kvflash_dequantize_row_rotated", type, src, n, dst, true);
}

uint16_t kvflash_fp32_to_fp16(float f) { return fp32_to_fp16(f); }

float kvflash_fp16_to_fp32(uint16_t h) { return fp16_to_fp32(h); }

int kvflash_backend_from_name(const char* name) {
  if (name == nullptr) return -1;
  const auto b = backend_from_name(name);
  return b ? static_cast<int>(*b) : -1;
}

const char* kvflash_backend_name(int backend) {
  if (backend < 0 || backend >= kBackendCount) return nullptr;
  return backend_name(static_cast<BackendKind>(backend)).data();
}

int kvflash_backend_available(int backend) {
  if (backend < 0 || backend >= kBackendCount) return 0;
  try {
    return backend_available(static_cast<BackendKind>(backend)) ? 1 : 0;
  } catch (...) {
    return 0;
  }
}

}  // extern "C"
