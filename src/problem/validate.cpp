// validate(): every field of an AttentionProblem, checked without touching the memory its pointers name.
//
// The rules, and why:
// - Shapes: n_seq, n_q, n_head_q, n_head_kv >= 1, n_kv >= 0 (an empty cache is legal: every row outputs zeros);
//   n_head_kv divides n_head_q (query head h reads KV head h / ratio); 1 <= d_k, d_v <= kMaxHeadDim.
// - Head dims: a multiple of the type's block size, except turbo types, whose rows are zero-padded to
//   stored_dim() (TURBOQUANT.md).
// - Pointers: non-null when the tensor they name is non-empty, and aligned to the widest scalar a reader loads
//   (4 for Q/O/sinks/kv_len/page tables, the element size for masks, kv_traits().align_bytes for K/V).
// - Strides are bytes, >= 0. Q/O strides are multiples of 4 (float rows). K/V strides and page_bytes are
//   multiples of the type's block bytes (element bytes for f32/f16/bf16), so every row starts on a block boundary.
//   Mask strides are multiples of its element size; 0 broadcasts.
// - Views that may not overlap: K, V and O. O is written concurrently by every backend; overlapping K/V rows are
//   almost always a stride mistake (sharing rows between sequences is what page tables are for). The rule: sort
//   the axes that have more than one index by stride; each stride must be at least the bytes spanned by everything
//   inside it (the row for the innermost axis). This is the usual sufficient condition for a strided view to be
//   injective; it accepts [seq, head, row] (contiguous), GGML's [seq, row, head] (interleaved heads), padded views
//   of a larger cache and paged layouts, in any axis order. Q and masks are read-only and may broadcast.
// - Paging: page_rows >= 1, pages_per_seq * page_rows >= n_kv, and the rows of one page (heads x rows) fit
//   inside page_bytes, so distinct pages never overlap. The sequence stride is unused when paged. Page numbers are
//   data (validate does not read them); the largest int32 page times page_bytes must still fit int64.
// - Options: scale finite (0 selects 1/sqrt(d_k); a negative scale is legal math, so it is allowed), softcap and
//   alibi_max_bias finite and >= 0, window >= 0.
// - Sizes: every element count and byte extent a backend may compute is checked for int64 overflow; the message
//   names the fields of the product.
// kv_len values are data too (possibly in device memory); backends that can read them check 0 <= kv_len <= n_kv.
// Success allocates nothing (attend() validates on every call and the fast backends promise no allocation): names
// travel as string_views and literals, and a message is built only when a check fails.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>

#include "kvflash/attention_problem.h"
#include "problem/checked_math.h"

namespace kvflash {
namespace {

using problem::checked_add;
using problem::checked_mul;

std::string num(int64_t x) { return std::to_string(x); }

std::string num(double x) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", x);
  return buf;
}

/// Concatenation for failure messages.
std::string cat(std::initializer_list<std::string_view> parts) {
  std::string out;
  for (std::string_view part : parts) out += part;
  return out;
}

/// A field name made of a view ("k") and a suffix (".stride.row"): concatenated only for a message.
struct FieldName {
  std::string_view view;
  std::string_view suffix;
  std::string str() const { return cat({view, suffix}); }
};

struct NamedValue {
  FieldName name;
  int64_t value;
};

std::string list_values(std::span<const NamedValue> values) {
  std::string out;
  for (const NamedValue& v : values) out += cat({out.empty() ? "" : ", ", v.name.str(), " = ", num(v.value)});
  return out;
}

/// The product of `factors`, or an error naming them all when it overflows int64.
Status checked_product(FieldName what, std::initializer_list<NamedValue> factors, int64_t* out) {
  int64_t acc = 1;
  for (const NamedValue& f : factors) {
    const auto next = checked_mul(acc, f.value);
    if (!next) {
      std::string expr;
      for (const NamedValue& g : factors) {
        expr += cat({expr.empty() ? "" : " * ", g.name.str()});
        if (&g == &f) break;
      }
      return invalid_argument(cat({what.str(), ": ", expr, " overflows int64 (",
                                   list_values(std::span(factors.begin(), factors.size())), ")"}));
    }
    acc = *next;
  }
  *out = acc;
  return Status::Ok();
}

/// One axis of a strided view: `extent` indices `stride` bytes apart.
struct Axis {
  FieldName stride_name;  // "k" ".stride.row"
  FieldName extent_name;  // "" "n_kv"
  int64_t extent;
  int64_t stride;
};

/// Bytes from the first byte of the view to one past its last byte: sum (extent - 1) * stride + row_bytes.
Status view_span(FieldName view, std::span<const Axis> axes, int64_t row_bytes, int64_t* out) {
  int64_t span = row_bytes;
  for (const Axis& a : axes) {
    if (a.extent <= 1) continue;
    const auto term = checked_mul(a.extent - 1, a.stride);
    const auto next = term ? checked_add(span, *term) : std::nullopt;
    if (!next) {
      const std::string extent = a.extent_name.str(), stride = a.stride_name.str();
      return invalid_argument(cat({view.str(), " spans more than int64 bytes: (", extent, " - 1) * ", stride,
                                   " with ", extent, " = ", num(a.extent), ", ", stride, " = ", num(a.stride)}));
    }
    span = *next;
  }
  *out = span;
  return Status::Ok();
}

/// The non-overlap rule of the header comment: each stride (ascending) covers everything inside it. Axes come
/// innermost first (row, head, seq), so that among equal strides the outer axis is the one named.
/// Call after view_span() succeeded for the same axes, so no partial span overflows.
Status check_no_overlap(std::string_view view, std::span<const Axis> all_axes, int64_t row_bytes) {
  std::array<Axis, 3> axes;
  size_t n = 0;
  for (const Axis& a : all_axes) {
    if (a.extent <= 1) continue;
    size_t at = n++;  // insertion sort by stride, stable: equal strides keep their order
    while (at > 0 && axes[at - 1].stride > a.stride) {
      axes[at] = axes[at - 1];
      --at;
    }
    axes[at] = a;
  }
  int64_t span = row_bytes;
  for (size_t i = 0; i < n; ++i) {
    const Axis& a = axes[i];
    if (a.stride < span) {
      std::string inside = "one row";
      if (i > 0) {
        const Axis& b = axes[i - 1];
        inside = cat({"the ", b.extent_name.str(), " axis (", b.extent_name.str(), " = ", num(b.extent), ", ",
                      b.stride_name.str(), " = ", num(b.stride), ")"});
      }
      return invalid_argument(cat({a.stride_name.str(), " = ", num(a.stride), " is smaller than the ", num(span),
                                   " bytes spanned by ", inside, ": rows of ", view, " would overlap"}));
    }
    span += (a.extent - 1) * a.stride;
  }
  return Status::Ok();
}

Status check_pointer(FieldName name, const void* p, bool needed, int64_t align) {
  if (p == nullptr) {
    return needed ? invalid_argument(cat({name.str(), " is null but the tensor it names is not empty"}))
                  : Status::Ok();
  }
  const auto address = reinterpret_cast<uintptr_t>(p);
  if (address % static_cast<uintptr_t>(align) != 0) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%#llx", static_cast<unsigned long long>(address));
    return invalid_argument(cat({name.str(), " = ", buf, " is not aligned to ", num(align), " bytes"}));
  }
  return Status::Ok();
}

/// What a stride must be a multiple of, for the message: "the float size", "q8_0's block bytes".
struct StrideUnit {
  int64_t bytes;
  std::string_view owner;  // "" or a type name
  std::string_view what;   // "the float size" or "'s block bytes"
  std::string str() const { return cat({owner, what}); }
};

/// Strides >= 0 and multiples of `unit` bytes.
Status check_strides(std::string_view view, const Strides& s, StrideUnit unit, bool check_seq = true) {
  const std::pair<std::string_view, int64_t> fields[] = {{".stride.seq", s.seq}, {".stride.head", s.head},
                                                         {".stride.row", s.row}};
  for (const auto& [axis, value] : fields) {
    if (!check_seq && axis == ".stride.seq") continue;
    if (value < 0) return invalid_argument(cat({view, axis, " = ", num(value), " is negative"}));
    if (value % unit.bytes != 0) {
      return invalid_argument(
          cat({view, axis, " = ", num(value), " is not a multiple of ", unit.str(), " ", num(unit.bytes)}));
    }
  }
  return Status::Ok();
}

Status check_shape(const AttentionShape& s) {
  if (s.n_seq < 1) return invalid_argument("n_seq = " + num(s.n_seq) + " must be >= 1");
  if (s.n_q < 1) return invalid_argument("n_q = " + num(s.n_q) + " must be >= 1");
  if (s.n_kv < 0) return invalid_argument("n_kv = " + num(s.n_kv) + " must be >= 0");
  if (s.n_head_q < 1) return invalid_argument("n_head_q = " + num(s.n_head_q) + " must be >= 1");
  if (s.n_head_kv < 1) return invalid_argument("n_head_kv = " + num(s.n_head_kv) + " must be >= 1");
  if (s.n_head_q % s.n_head_kv != 0) {
    return invalid_argument("n_head_q = " + num(s.n_head_q) + " is not a multiple of n_head_kv = " + num(s.n_head_kv));
  }
  const std::pair<const char*, int64_t> dims[] = {{"d_k", s.d_k}, {"d_v", s.d_v}};
  for (const auto& [name, d] : dims) {
    if (d < 1 || d > kMaxHeadDim) {
      return invalid_argument(std::string(name) + " = " + num(d) + " is outside [1, " + num(kMaxHeadDim) + "]");
    }
  }
  return Status::Ok();
}

bool is_kv_type(KvType t) { return static_cast<int>(t) < kKvTypeCount; }

Status check_head_dim(const char* dim_name, int64_t dim, const char* type_field, KvType t) {
  if (!is_kv_type(t)) {
    return invalid_argument(std::string(type_field) + " = " + num(int64_t{static_cast<int>(t)}) +
                            " is not a KvType (0.." + num(int64_t{kKvTypeCount - 1}) + ")");
  }
  const KvTraits& tr = kv_traits(t);
  if (!tr.rotated && dim % tr.block_elems != 0) {
    return invalid_argument(std::string(dim_name) + " = " + num(dim) + " is not a multiple of " +
                            std::string(tr.name) + "'s block size " + num(int64_t{tr.block_elems}));
  }
  return Status::Ok();
}

Status check_options(const AttentionOptions& o) {
  if (!std::isfinite(o.scale)) return invalid_argument("options.scale = " + num(o.scale) + " is not finite");
  if (!std::isfinite(o.softcap) || o.softcap < 0) {
    return invalid_argument("options.softcap = " + num(o.softcap) + " must be finite and >= 0");
  }
  if (!std::isfinite(o.alibi_max_bias) || o.alibi_max_bias < 0) {
    return invalid_argument("options.alibi_max_bias = " + num(o.alibi_max_bias) + " must be finite and >= 0");
  }
  if (o.window < 0) return invalid_argument("options.window = " + num(o.window) + " must be >= 0");
  return check_pointer({"options.sinks", ""}, o.sinks, false, 4);
}

/// Element counts backends compute for dense copies and workspaces.
Status check_logical_sizes(const AttentionShape& s) {
  int64_t unused = 0;
  const NamedValue seq{{"", "n_seq"}, s.n_seq}, hq{{"", "n_head_q"}, s.n_head_q}, hkv{{"", "n_head_kv"}, s.n_head_kv},
      nq{{"", "n_q"}, s.n_q}, nkv{{"", "n_kv"}, s.n_kv}, dk{{"", "d_k"}, s.d_k}, dv{{"", "d_v"}, s.d_v};
  KVFLASH_RETURN_IF_ERROR(checked_product({"q elements", ""}, {seq, hq, nq, dk}, &unused));
  KVFLASH_RETURN_IF_ERROR(checked_product({"o elements", ""}, {seq, hq, nq, dv}, &unused));
  KVFLASH_RETURN_IF_ERROR(checked_product({"k elements", ""}, {seq, hkv, nkv, dk}, &unused));
  KVFLASH_RETURN_IF_ERROR(checked_product({"v elements", ""}, {seq, hkv, nkv, dv}, &unused));
  KVFLASH_RETURN_IF_ERROR(checked_product({"scores", ""}, {seq, hq, nq, nkv}, &unused));
  return Status::Ok();
}

Status check_float_view(std::string_view view, const void* data, const Strides& stride, const AttentionShape& s,
                        int64_t dim, bool writable) {
  KVFLASH_RETURN_IF_ERROR(check_pointer({view, ".data"}, data, true, 4));
  KVFLASH_RETURN_IF_ERROR(check_strides(view, stride, {4, "", "the float size"}));
  const Axis axes[] = {{{view, ".stride.row"}, {"", "n_q"}, s.n_q, stride.row},
                       {{view, ".stride.head"}, {"", "n_head_q"}, s.n_head_q, stride.head},
                       {{view, ".stride.seq"}, {"", "n_seq"}, s.n_seq, stride.seq}};
  int64_t span = 0;
  KVFLASH_RETURN_IF_ERROR(view_span({view, ""}, axes, dim * 4, &span));
  return writable ? check_no_overlap(view, axes, dim * 4) : Status::Ok();
}

Status check_kv_view(std::string_view view, const KvView& kv, const AttentionShape& s, int64_t dim) {
  const KvTraits& tr = kv_traits(kv.type);
  const int64_t row = head_row_bytes(kv.type, dim);
  const StrideUnit unit{tr.block_bytes, tr.name, tr.quantized ? "'s block bytes" : "'s element bytes"};
  const bool paged = kv.paging.pages != nullptr;
  KVFLASH_RETURN_IF_ERROR(check_pointer({view, ".data"}, kv.data, s.n_kv > 0, tr.align_bytes));
  KVFLASH_RETURN_IF_ERROR(check_strides(view, kv.stride, unit, /*check_seq=*/!paged));
  if (!paged) {
    const Axis axes[] = {{{view, ".stride.row"}, {"", "n_kv"}, s.n_kv, kv.stride.row},
                         {{view, ".stride.head"}, {"", "n_head_kv"}, s.n_head_kv, kv.stride.head},
                         {{view, ".stride.seq"}, {"", "n_seq"}, s.n_seq, kv.stride.seq}};
    int64_t span = 0;
    KVFLASH_RETURN_IF_ERROR(view_span({view, ""}, axes, row, &span));
    return s.n_kv > 0 ? check_no_overlap(view, axes, row) : Status::Ok();
  }

  const PageTable& pt = kv.paging;
  const auto pn = [view](std::string_view field) { return cat({view, ".paging.", field}); };
  KVFLASH_RETURN_IF_ERROR(check_pointer({view, ".paging.pages"}, pt.pages, false, 4));
  if (pt.page_rows < 1) return invalid_argument(cat({pn("page_rows = "), num(pt.page_rows), " must be >= 1"}));
  if (pt.pages_per_seq < 0) {
    return invalid_argument(cat({pn("pages_per_seq = "), num(pt.pages_per_seq), " must be >= 0"}));
  }
  int64_t rows_addressable = 0, table_entries = 0;
  KVFLASH_RETURN_IF_ERROR(checked_product(
      {view, " page table rows"},
      {{{view, ".paging.pages_per_seq"}, pt.pages_per_seq}, {{view, ".paging.page_rows"}, pt.page_rows}},
      &rows_addressable));
  if (rows_addressable < s.n_kv) {
    return invalid_argument(cat({pn("pages_per_seq * "), pn("page_rows = "), num(pt.pages_per_seq), " * ",
                                 num(pt.page_rows), " = ", num(rows_addressable), " is less than n_kv = ",
                                 num(s.n_kv)}));
  }
  KVFLASH_RETURN_IF_ERROR(checked_product({view, " page table entries"},
                                          {{{"", "n_seq"}, s.n_seq}, {{view, ".paging.pages_per_seq"}, pt.pages_per_seq}},
                                          &table_entries));
  if (pt.page_bytes < 0) return invalid_argument(cat({pn("page_bytes = "), num(pt.page_bytes), " is negative"}));
  if (pt.page_bytes % unit.bytes != 0) {
    return invalid_argument(cat({pn("page_bytes = "), num(pt.page_bytes), " is not a multiple of ", unit.str(), " ",
                                 num(unit.bytes)}));
  }
  if (s.n_kv == 0) return Status::Ok();
  const Axis axes[] = {{{view, ".stride.row"}, {view, ".paging.page_rows"}, std::min(pt.page_rows, s.n_kv),
                        kv.stride.row},
                       {{view, ".stride.head"}, {"", "n_head_kv"}, s.n_head_kv, kv.stride.head}};
  int64_t page_span = 0;
  KVFLASH_RETURN_IF_ERROR(view_span({view, "'s page"}, axes, row, &page_span));
  KVFLASH_RETURN_IF_ERROR(check_no_overlap(view, axes, row));
  if (page_span > pt.page_bytes) {
    return invalid_argument(cat({pn("page_bytes = "), num(pt.page_bytes), " is smaller than the ", num(page_span),
                                 " bytes one page's rows span: pages of ", view, " would overlap"}));
  }
  // A page number is any int32 the table holds; its byte offset must not overflow.
  const auto last_page = checked_mul(INT32_MAX, pt.page_bytes);
  if (!last_page || !checked_add(*last_page, page_span)) {
    return invalid_argument(cat({pn("page_bytes = "), num(pt.page_bytes),
                                 " is too large: page 2^31 - 1 would lie beyond int64 bytes"}));
  }
  return Status::Ok();
}

Status check_mask(const MaskView& m, const AttentionShape& s) {
  if (m.data == nullptr) return Status::Ok();
  if (m.type != MaskType::f32 && m.type != MaskType::f16) {
    return invalid_argument("mask.type = " + num(int64_t{static_cast<int>(m.type)}) + " is not a MaskType (0 f32, 1 f16)");
  }
  const int64_t elem = m.type == MaskType::f32 ? 4 : 2;
  KVFLASH_RETURN_IF_ERROR(check_pointer({"mask.data", ""}, m.data, true, elem));
  KVFLASH_RETURN_IF_ERROR(check_strides("mask", m.stride, {elem, m.type == MaskType::f32 ? "f32" : "f16", "'s size"}));
  int64_t row_bytes = 0, span = 0;
  KVFLASH_RETURN_IF_ERROR(checked_product({"mask row bytes", ""},
                                          {{{"", "n_kv"}, s.n_kv}, {{"", "mask element bytes"}, elem}}, &row_bytes));
  const Axis axes[] = {{{"", "mask.stride.seq"}, {"", "n_seq"}, s.n_seq, m.stride.seq},
                       {{"", "mask.stride.head"}, {"", "n_head_q"}, s.n_head_q, m.stride.head},
                       {{"", "mask.stride.row"}, {"", "n_q"}, s.n_q, m.stride.row}};
  return view_span({"mask", ""}, axes, row_bytes, &span);
}

}  // namespace

Status validate(const AttentionProblem& p) {
  const AttentionShape& s = p.shape;
  KVFLASH_RETURN_IF_ERROR(check_shape(s));
  KVFLASH_RETURN_IF_ERROR(check_head_dim("d_k", s.d_k, "k.type", p.k.type));
  KVFLASH_RETURN_IF_ERROR(check_head_dim("d_v", s.d_v, "v.type", p.v.type));
  KVFLASH_RETURN_IF_ERROR(check_options(p.options));
  KVFLASH_RETURN_IF_ERROR(check_logical_sizes(s));
  KVFLASH_RETURN_IF_ERROR(check_float_view("q", p.q.data, p.q.stride, s, s.d_k, /*writable=*/false));
  KVFLASH_RETURN_IF_ERROR(check_kv_view("k", p.k, s, s.d_k));
  KVFLASH_RETURN_IF_ERROR(check_kv_view("v", p.v, s, s.d_v));
  KVFLASH_RETURN_IF_ERROR(check_mask(p.mask, s));
  KVFLASH_RETURN_IF_ERROR(check_float_view("o", p.o.data, p.o.stride, s, s.d_v, /*writable=*/true));
  return check_pointer({"kv_len", ""}, p.kv_len, false, 4);
}

}  // namespace kvflash
