// C API: attention problems (an opaque handle over kvflash::AttentionProblem) and running them.
#include <cstring>
#include <string>

#include "capi/capi_internal.h"
#include "kvflash/attention_problem.h"
#include "kvflash/backend.h"

namespace kvflash::capi {
namespace {

/// a * b * ... for dense strides; an error naming `what` when the product leaves int64 (validate() would reject
/// such a shape anyway, but the multiplication itself must not overflow first).
Status dense_product(const char* what, std::initializer_list<int64_t> factors, int64_t* out) {
  int64_t acc = 1;
  for (int64_t f : factors) {
    if (__builtin_mul_overflow(acc, f, &acc)) {
      return invalid_argument(std::string("the dense ") + what + " overflows int64 for this shape");
    }
  }
  *out = acc;
  return Status::Ok();
}

/// Dense [seq, head, row] strides of rows of `row_bytes` bytes.
Status dense_strides(const char* what, int64_t n_head, int64_t n_rows, int64_t row_bytes, Strides* s) {
  s->row = row_bytes;
  KVFLASH_RETURN_IF_ERROR(dense_product(what, {n_rows, row_bytes}, &s->head));
  return dense_product(what, {n_head, n_rows, row_bytes}, &s->seq);
}

}  // namespace

Strides strides_from(const int64_t* strides) { return {strides[0], strides[1], strides[2]}; }

StatusOr<AttentionProblem> resolve(const kvflash_problem& h) {
  AttentionProblem p = h.problem;
  const AttentionShape& s = p.shape;
  if (h.q_dense) KVFLASH_RETURN_IF_ERROR(dense_strides("Q layout", s.n_head_q, s.n_q, s.d_k * 4, &p.q.stride));
  if (h.o_dense) KVFLASH_RETURN_IF_ERROR(dense_strides("O layout", s.n_head_q, s.n_q, s.d_v * 4, &p.o.stride));
  // Invalid type ids stay in the problem for validate() to name; they have no dense layout.
  if (h.k_dense && static_cast<int>(p.k.type) < kKvTypeCount && s.d_k >= 0 && s.d_k <= kMaxHeadDim) {
    KVFLASH_RETURN_IF_ERROR(dense_strides("K layout", s.n_head_kv, s.n_kv, head_row_bytes(p.k.type, s.d_k), &p.k.stride));
  }
  if (h.v_dense && static_cast<int>(p.v.type) < kKvTypeCount && s.d_v >= 0 && s.d_v <= kMaxHeadDim) {
    KVFLASH_RETURN_IF_ERROR(dense_strides("V layout", s.n_head_kv, s.n_kv, head_row_bytes(p.v.type, s.d_v), &p.v.stride));
  }
  if (h.mask_dense && p.mask.data != nullptr) {
    const int64_t elem = p.mask.type == MaskType::f16 ? 2 : 4;
    p.mask.stride.seq = 0;
    p.mask.stride.head = 0;
    KVFLASH_RETURN_IF_ERROR(dense_product("mask layout", {s.n_kv, elem}, &p.mask.stride.row));
  }
  return p;
}

}  // namespace kvflash::capi

kvflash::AttentionProblem kvflash_problem::resolved() const {
  auto p = kvflash::capi::resolve(*this);
  return p.ok() ? *p : problem;
}

using namespace kvflash;

namespace {

/// Runs a setter body on a non-null problem, inside the exception edge.
template <typename Body>
int set(const char* function, kvflash_problem* problem, Body&& body) {
  if (problem == nullptr) return capi::null_argument(function, "problem");
  return capi::guarded(function, [&]() -> int {
    body(*problem);
    return KVFLASH_OK;
  });
}

/// A type id checked here, so that an out-of-range int never becomes a KvType value.
int checked_type(const char* function, const char* field, int type, KvType* out) {
  const auto t = capi::type_from_id(type);
  if (!t) {
    return capi::fail(invalid_argument(std::string(function) + ": " + field + " = " + std::to_string(type) +
                                       " is not a type id (0.." + std::to_string(kKvTypeCount - 1) + ")"));
  }
  *out = *t;
  return KVFLASH_OK;
}

int set_kv(const char* function, kvflash_problem* problem, int type, const void* data, const int64_t* strides,
           bool is_k) {
  if (problem == nullptr) return capi::null_argument(function, "problem");
  return capi::guarded(function, [&]() -> int {
    KvType t{};
    if (int rc = checked_type(function, "type", type, &t); rc != KVFLASH_OK) return rc;
    KvView& view = is_k ? problem->problem.k : problem->problem.v;
    view.type = t;
    view.data = data;
    (is_k ? problem->k_dense : problem->v_dense) = strides == nullptr;
    if (strides != nullptr) view.stride = capi::strides_from(strides);
    return KVFLASH_OK;
  });
}

int set_pages(const char* function, kvflash_problem* problem, const int32_t* pages, int64_t pages_per_seq,
              int64_t page_rows, int64_t page_bytes, bool is_k) {
  return set(function, problem, [&](kvflash_problem& h) {
    PageTable& pt = is_k ? h.problem.k.paging : h.problem.v.paging;
    pt = pages == nullptr ? PageTable{} : PageTable{pages, pages_per_seq, page_rows, page_bytes};
  });
}

}  // namespace

extern "C" {

kvflash_problem* kvflash_problem_create(void) {
  kvflash_problem* p = new (std::nothrow) kvflash_problem();
  if (p == nullptr) capi::fail(StatusCode::out_of_memory, "kvflash_problem_create: out of memory");
  return p;
}

void kvflash_problem_destroy(kvflash_problem* problem) { delete problem; }

int kvflash_problem_set_shape(kvflash_problem* problem, int64_t n_seq, int64_t n_q, int64_t n_kv, int64_t n_head_q,
                              int64_t n_head_kv, int64_t d_k, int64_t d_v) {
  return set("kvflash_problem_set_shape", problem, [&](kvflash_problem& h) {
    h.problem.shape = AttentionShape{n_seq, n_q, n_kv, n_head_q, n_head_kv, d_k, d_v};
  });
}

int kvflash_problem_set_q(kvflash_problem* problem, const float* data, const int64_t* strides) {
  return set("kvflash_problem_set_q", problem, [&](kvflash_problem& h) {
    h.problem.q.data = data;
    h.q_dense = strides == nullptr;
    if (strides != nullptr) h.problem.q.stride = capi::strides_from(strides);
  });
}

int kvflash_problem_set_k(kvflash_problem* problem, int type, const void* data, const int64_t* strides) {
  return set_kv("kvflash_problem_set_k", problem, type, data, strides, true);
}

int kvflash_problem_set_v(kvflash_problem* problem, int type, const void* data, const int64_t* strides) {
  return set_kv("kvflash_problem_set_v", problem, type, data, strides, false);
}

int kvflash_problem_set_k_pages(kvflash_problem* problem, const int32_t* pages, int64_t pages_per_seq,
                                int64_t page_rows, int64_t page_bytes) {
  return set_pages("kvflash_problem_set_k_pages", problem, pages, pages_per_seq, page_rows, page_bytes, true);
}

int kvflash_problem_set_v_pages(kvflash_problem* problem, const int32_t* pages, int64_t pages_per_seq,
                                int64_t page_rows, int64_t page_bytes) {
  return set_pages("kvflash_problem_set_v_pages", problem, pages, pages_per_seq, page_rows, page_bytes, false);
}

int kvflash_problem_set_o(kvflash_problem* problem, float* data, const int64_t* strides) {
  return set("kvflash_problem_set_o", problem, [&](kvflash_problem& h) {
    h.problem.o.data = data;
    h.o_dense = strides == nullptr;
    if (strides != nullptr) h.problem.o.stride = capi::strides_from(strides);
  });
}

int kvflash_problem_set_mask(kvflash_problem* problem, int mask_type, const void* data, const int64_t* strides) {
  static constexpr const char* kFunction = "kvflash_problem_set_mask";
  if (problem == nullptr) return capi::null_argument(kFunction, "problem");
  return capi::guarded(kFunction, [&]() -> int {
    if (mask_type != KVFLASH_MASK_F32 && mask_type != KVFLASH_MASK_F16) {
      return capi::fail(invalid_argument(std::string(kFunction) + ": mask_type = " + std::to_string(mask_type) +
                                         " is neither KVFLASH_MASK_F32 (0) nor KVFLASH_MASK_F16 (1)"));
    }
    MaskView& m = problem->problem.mask;
    m.type = static_cast<MaskType>(mask_type);
    m.data = data;
    problem->mask_dense = strides == nullptr;
    m.stride = strides != nullptr ? capi::strides_from(strides) : Strides{};
    return KVFLASH_OK;
  });
}

int kvflash_problem_set_scale(kvflash_problem* problem, double scale) {
  return set("kvflash_problem_set_scale", problem, [&](kvflash_problem& h) { h.problem.options.scale = scale; });
}

int kvflash_problem_set_causal(kvflash_problem* problem, int causal) {
  return set("kvflash_problem_set_causal", problem,
             [&](kvflash_problem& h) { h.problem.options.causal = causal != 0; });
}

int kvflash_problem_set_window(kvflash_problem* problem, int64_t window) {
  return set("kvflash_problem_set_window", problem, [&](kvflash_problem& h) { h.problem.options.window = window; });
}

int kvflash_problem_set_alibi(kvflash_problem* problem, double max_bias) {
  return set("kvflash_problem_set_alibi", problem,
             [&](kvflash_problem& h) { h.problem.options.alibi_max_bias = max_bias; });
}

int kvflash_problem_set_softcap(kvflash_problem* problem, double softcap) {
  return set("kvflash_problem_set_softcap", problem,
             [&](kvflash_problem& h) { h.problem.options.softcap = softcap; });
}

int kvflash_problem_set_sinks(kvflash_problem* problem, const float* sinks) {
  return set("kvflash_problem_set_sinks", problem, [&](kvflash_problem& h) { h.problem.options.sinks = sinks; });
}

int kvflash_problem_set_kv_len(kvflash_problem* problem, const int32_t* kv_len) {
  return set("kvflash_problem_set_kv_len", problem, [&](kvflash_problem& h) { h.problem.kv_len = kv_len; });
}

int kvflash_problem_validate(const kvflash_problem* problem) {
  static constexpr const char* kFunction = "kvflash_problem_validate";
  if (problem == nullptr) return capi::null_argument(kFunction, "problem");
  return capi::guarded(kFunction, [&]() -> int {
    auto p = capi::resolve(*problem);
    if (!p.ok()) return capi::fail(p.status());
    return capi::to_c(validate(*p));
  });
}

size_t kvflash_problem_describe(const kvflash_problem* problem, char* buf, size_t size) {
  static constexpr const char* kFunction = "kvflash_problem_describe";
  if (problem == nullptr) {
    capi::null_argument(kFunction, "problem");
    return 0;
  }
  size_t length = 0;
  const int rc = capi::guarded(kFunction, [&]() -> int {
    length = capi::copy_text(describe(problem->resolved()), buf, size);
    return KVFLASH_OK;
  });
  return rc == KVFLASH_OK ? length : 0;
}

}  // extern "C"
