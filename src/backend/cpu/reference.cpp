// The reference backend: the oracle. Written to be obviously right, then just fast enough to check long contexts:
// K and V rows are dequantized once per (sequence, KV head) and shared by the query heads of the group.
#include "kvflash/reference.h"

#include <cmath>
#include <cstddef>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "format/blocks.h"
#include "kvflash/quantize.h"
#include "problem/checked_math.h"

namespace kvflash {
namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

const std::byte* at(const void* base, int64_t offset) { return static_cast<const std::byte*>(base) + offset; }

/// The first `dim` values of each of the first `len` rows of KV head h in sequence s, in the original domain.
Status dequantize_rows(const KvView& view, int64_t s, int64_t h, int64_t len, int64_t dim, std::vector<float>& out) {
  const int64_t stored = stored_dim(view.type, dim);
  std::vector<float> row(stored);
  out.resize(len * dim);
  for (int64_t r = 0; r < len; ++r) {
    KVFLASH_RETURN_IF_ERROR(dequantize_row(view.type, at(view.data, kv_row_offset(view, s, h, r)), stored, row.data()));
    std::memcpy(out.data() + r * dim, row.data(), dim * sizeof(float));
  }
  return Status::Ok();
}

/// kv_len and page numbers are data: validate() cannot see them, the oracle (on host memory) can.
Status check_sequence_data(const AttentionProblem& p, int64_t s, int64_t len) {
  if (len < 0 || len > p.shape.n_kv) {
    return invalid_argument("kv_len[" + std::to_string(s) + "] = " + std::to_string(len) + " is outside [0, n_kv = " +
                            std::to_string(p.shape.n_kv) + "]");
  }
  const std::pair<const char*, const KvView*> views[] = {{"k", &p.k}, {"v", &p.v}};
  for (const auto& [name, view] : views) {
    const PageTable& pt = view->paging;
    if (pt.pages == nullptr) continue;
    for (int64_t i = 0; i < (len + pt.page_rows - 1) / pt.page_rows; ++i) {
      const int64_t entry = s * pt.pages_per_seq + i;
      if (pt.pages[entry] < 0) {
        return invalid_argument(std::string(name) + ".paging.pages[" + std::to_string(entry) +
                                "] = " + std::to_string(pt.pages[entry]) + " is negative");
      }
    }
  }
  return Status::Ok();
}

// The additive mask as the oracle reads it: the problem's f32/f16 MaskView, or attend_reference_f64's f64 mask.
enum class MaskElem : uint8_t { f32, f16, f64 };
struct MaskSource {
  const void* data = nullptr;  // nullptr: no mask
  MaskElem elem = MaskElem::f32;
  Strides stride;
};

MaskSource mask_of(const MaskView& m) {
  return {m.data, m.type == MaskType::f16 ? MaskElem::f16 : MaskElem::f32, m.stride};
}

double mask_value(const MaskSource& m, int64_t s, int64_t h, int64_t i, int64_t j) {
  if (m.data == nullptr) return 0.0;
  const std::byte* row = at(m.data, s * m.stride.seq + h * m.stride.head + i * m.stride.row);
  switch (m.elem) {
    case MaskElem::f16: {
      uint16_t bits;
      std::memcpy(&bits, row + 2 * j, 2);
      return format::half_bits_to_float(bits);
    }
    case MaskElem::f32: {
      float value;
      std::memcpy(&value, row + 4 * j, 4);
      return value;
    }
    case MaskElem::f64: {
      double value;
      std::memcpy(&value, row + 8 * j, 8);
      return value;
    }
  }
  return 0.0;
}

/// Where Q is read and O written. QoElem, the element type of both, is float for attend_reference and double for
/// attend_reference_f64; everything else is computed in double either way.
template <typename QoElem>
struct QoViews {
  const QoElem* q = nullptr;
  Strides q_stride;  // bytes
  QoElem* o = nullptr;
  Strides o_stride;  // bytes
};

/// What the rows of one attention call read besides K and V.
template <typename QoElem>
struct CallInputs {
  QoViews<QoElem> qo;
  MaskSource mask;
  std::vector<double> sinks;  // [n_head_q], or empty: no sinks
};

/// One query row: scores over the `len` keys of its KV head, softmax with the sink, weighted V sum.
template <typename QoElem>
struct RowContext {
  const AttentionProblem& p;
  const CallInputs<QoElem>& in;
  int64_t s, h, len;
  double scale, slope;
  const std::vector<float>& k;  // [len, d_k]
  const std::vector<float>& v;  // [len, d_v]
};

template <typename QoElem>
void attend_row(const RowContext<QoElem>& c, int64_t i, std::vector<double>& scores, std::vector<double>& acc) {
  const AttentionProblem& p = c.p;
  const QoViews<QoElem>& qo = c.in.qo;
  const int64_t d_k = p.shape.d_k, d_v = p.shape.d_v;
  const int64_t position = c.len - p.shape.n_q + i;  // bottom-right alignment
  const auto* q = reinterpret_cast<const QoElem*>(
      at(qo.q, c.s * qo.q_stride.seq + c.h * qo.q_stride.head + i * qo.q_stride.row));

  double max_score = kNegInf;
  for (int64_t j = 0; j < c.len; ++j) {
    const bool hidden = (p.options.causal && j > position) ||
                        (p.options.window > 0 && position - j >= p.options.window);
    if (hidden) {
      scores[j] = kNegInf;
      continue;
    }
    const float* key = c.k.data() + j * d_k;
    double dot = 0.0;
    for (int64_t e = 0; e < d_k; ++e) dot += static_cast<double>(q[e]) * static_cast<double>(key[e]);
    double score = c.scale * dot;
    if (p.options.softcap > 0) score = p.options.softcap * std::tanh(score / p.options.softcap);
    score += mask_value(c.in.mask, c.s, c.h, i, j);
    score += -c.slope * static_cast<double>(position - j);
    scores[j] = score;
    if (score > max_score) max_score = score;
  }

  acc.assign(d_v, 0.0);
  if (max_score != kNegInf) {  // a row that sees no key outputs zeros, sink or not
    double denominator = 0.0;
    if (!c.in.sinks.empty()) {
      const double sink = c.in.sinks[c.h];
      if (sink > max_score) max_score = sink;
      denominator += std::exp(sink - max_score);
    }
    for (int64_t j = 0; j < c.len; ++j) {
      if (scores[j] == kNegInf) continue;
      const double weight = std::exp(scores[j] - max_score);
      denominator += weight;
      const float* value = c.v.data() + j * d_v;
      for (int64_t e = 0; e < d_v; ++e) acc[e] += weight * static_cast<double>(value[e]);
    }
    for (double& x : acc) x /= denominator;
  }
  auto* o = reinterpret_cast<QoElem*>(const_cast<std::byte*>(
      at(qo.o, c.s * qo.o_stride.seq + c.h * qo.o_stride.head + i * qo.o_stride.row)));
  for (int64_t e = 0; e < d_v; ++e) o[e] = static_cast<QoElem>(acc[e]);
}

/// The oracle proper, for a problem the caller has validated.
template <typename QoElem>
Status attend_validated(const AttentionProblem& p, const CallInputs<QoElem>& in) {
  const AttentionShape& shape = p.shape;
  const int64_t group = shape.n_head_q / shape.n_head_kv;
  const double scale = effective_scale(p);
  std::vector<float> k_rows, v_rows;
  std::vector<double> scores, acc;
  for (int64_t s = 0; s < shape.n_seq; ++s) {
    const int64_t len = p.kv_len != nullptr ? p.kv_len[s] : shape.n_kv;
    KVFLASH_RETURN_IF_ERROR(check_sequence_data(p, s, len));
    scores.resize(len);
    for (int64_t hkv = 0; hkv < shape.n_head_kv; ++hkv) {
      KVFLASH_RETURN_IF_ERROR(dequantize_rows(p.k, s, hkv, len, shape.d_k, k_rows));
      KVFLASH_RETURN_IF_ERROR(dequantize_rows(p.v, s, hkv, len, shape.d_v, v_rows));
      for (int64_t h = hkv * group; h < (hkv + 1) * group; ++h) {
        const double slope = alibi_slope<double>(p.options.alibi_max_bias, shape.n_head_q, h);
        const RowContext<QoElem> ctx{p, in, s, h, len, scale, slope, k_rows, v_rows};
        for (int64_t i = 0; i < shape.n_q; ++i) attend_row(ctx, i, scores, acc);
      }
    }
  }
  return Status::Ok();
}

std::vector<double> widened_sinks(const float* sinks, int64_t n_head_q) {
  return sinks == nullptr ? std::vector<double>{} : std::vector<double>(sinks, sinks + n_head_q);
}

/// Byte strides of a dense [n_seq, n_head_q, n_q, dim] array of doubles; nullopt when they overflow int64.
std::optional<Strides> dense_f64_strides(const AttentionShape& s, int64_t dim) {
  const auto row = problem::checked_mul(dim, int64_t{sizeof(double)});
  const auto head = row ? problem::checked_mul(*row, s.n_q) : std::nullopt;
  const auto seq = head ? problem::checked_mul(*head, s.n_head_q) : std::nullopt;
  if (!seq) return std::nullopt;
  return Strides{.seq = *seq, .head = *head, .row = *row};
}

Status check_f64_pointer(const std::string& name, const void* data) {
  if (data == nullptr) return invalid_argument("attend_reference_f64: " + name + " is null");
  if (reinterpret_cast<uintptr_t>(data) % alignof(double) != 0) {
    return invalid_argument("attend_reference_f64: " + name + " is not aligned to " +
                            std::to_string(alignof(double)) + " bytes");
  }
  return Status::Ok();
}

/// validate() for attend_reference_f64. validate() never reads the memory its pointers name, so the float64 views
/// stand in for the float32 ones they replace: it then checks the shape, K, V, the options and these views' byte
/// strides (spans, overlap) as usual. What is float64-specific (8-byte alignment and strides) is checked here.
Status validate_f64(const AttentionProblem& p, const double* q, double* o, const ReferenceF64Inputs& extra) {
  KVFLASH_RETURN_IF_ERROR(check_f64_pointer("q", q));
  KVFLASH_RETURN_IF_ERROR(check_f64_pointer("o", o));
  const std::optional<Strides> q_stride = dense_f64_strides(p.shape, p.shape.d_k);
  const std::optional<Strides> o_stride = dense_f64_strides(p.shape, p.shape.d_v);
  if (!q_stride || !o_stride) {
    return invalid_argument("attend_reference_f64: dense float64 Q or O [n_seq, n_head_q, n_q, d] spans more than "
                            "int64 bytes: " + describe(p));
  }
  AttentionProblem as_f32 = p;
  as_f32.q = {reinterpret_cast<const float*>(q), *q_stride};
  as_f32.o = {reinterpret_cast<float*>(o), *o_stride};
  if (extra.mask != nullptr) {
    KVFLASH_RETURN_IF_ERROR(check_f64_pointer("extra.mask", extra.mask));
    for (const auto& [axis, value] : {std::pair{"seq", extra.mask_stride.seq},
                                      std::pair{"head", extra.mask_stride.head},
                                      std::pair{"row", extra.mask_stride.row}}) {
      if (value % static_cast<int64_t>(sizeof(double)) != 0) {
        return invalid_argument("attend_reference_f64: extra.mask_stride." + std::string(axis) + " = " +
                                std::to_string(value) + " is not a multiple of 8 (the size of a double)");
      }
    }
    as_f32.mask = {extra.mask, MaskType::f32, extra.mask_stride};
  }
  if (extra.sinks != nullptr) {
    KVFLASH_RETURN_IF_ERROR(check_f64_pointer("extra.sinks", extra.sinks));
    as_f32.options.sinks = nullptr;
  }
  return validate(as_f32);
}

}  // namespace

Status attend_reference(const AttentionProblem& p) {
  KVFLASH_RETURN_IF_ERROR(validate(p));
  const CallInputs<float> in{{p.q.data, p.q.stride, p.o.data, p.o.stride},
                             mask_of(p.mask),
                             widened_sinks(p.options.sinks, p.shape.n_head_q)};
  return attend_validated(p, in);
}

Status attend_reference_f64(const AttentionProblem& p, const double* q, double* o, const ReferenceF64Inputs& extra) {
  KVFLASH_RETURN_IF_ERROR(validate_f64(p, q, o, extra));
  const AttentionShape& s = p.shape;
  CallInputs<double> in{{q, *dense_f64_strides(s, s.d_k), o, *dense_f64_strides(s, s.d_v)},
                        mask_of(p.mask),
                        widened_sinks(p.options.sinks, s.n_head_q)};
  if (extra.mask != nullptr) in.mask = {extra.mask, MaskElem::f64, extra.mask_stride};
  if (extra.sinks != nullptr) in.sinks.assign(extra.sinks, extra.sinks + s.n_head_q);
  return attend_validated(p, in);
}

}  // namespace kvflash
