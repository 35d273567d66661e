#include "dense_attend.h"

#include <algorithm>
#include <limits>
#include <tuple>
#include <utility>

#include "kvflash/quantize.h"

namespace kvflash::python {
namespace {

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string out = "(";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + (shape.size() == 1 ? ",)" : ")");
}

// "k axis 2 (d_k) is 64, expected 128 (d_k of q)"
Status axis_mismatch(const std::string& who, size_t axis, const char* axis_name, int64_t got, int64_t want,
                     const std::string& why) {
  return invalid_argument(who + " axis " + std::to_string(axis) + " (" + axis_name + ") is " + std::to_string(got) +
                          ", expected " + std::to_string(want) + " (" + why + ")");
}

/// The product of `dims` (0 if any is 0), or an error when it leaves int64.
StatusOr<int64_t> elements(const std::string& who, std::initializer_list<int64_t> dims) {
  int64_t n = 1;
  for (int64_t d : dims) {
    if (__builtin_mul_overflow(n, d, &n)) return invalid_argument(who + " is too large");
  }
  return n;
}

/// Rows of `dim` floats, each zero-padded to stored_dim(type, dim) and quantized as `kvflash quantize` does.
StatusOr<std::vector<uint8_t>> quantize_rows(KvType type, const float* values, int64_t rows, int64_t dim,
                                             const char* who) {
  const int64_t stored = stored_dim(type, dim);
  const int64_t bytes = row_bytes(type, stored);
  auto total = elements(who, {rows, bytes});
  if (!total.ok()) return total.status();
  std::vector<uint8_t> out(static_cast<size_t>(*total));
  std::vector<float> padded(static_cast<size_t>(stored), 0.0f);
  for (int64_t r = 0; r < rows; ++r) {
    std::copy(values + r * dim, values + (r + 1) * dim, padded.begin());
    if (Status s = quantize_row(type, padded.data(), stored, out.data() + r * bytes); !s.ok()) {
      return Status(s.code(), "row " + std::to_string(r) + " of " + who + ": " + s.message());
    }
  }
  return out;
}

}  // namespace

StatusOr<DenseAttend> DenseAttend::prepare(const DenseAttendInputs& in) {
  const auto& q = in.q.shape;
  const auto& k = in.k.shape;
  const auto& v = in.v.shape;
  for (const auto& [who, shape, layout] :
       {std::tuple{"q", &q, "[n_head_q, n_q, d_k] or [batch, n_head_q, n_q, d_k]"},
        std::tuple{"k", &k, "[n_head_kv, n_kv, d_k] or [batch, n_head_kv, n_kv, d_k]"},
        std::tuple{"v", &v, "[n_head_kv, n_kv, d_v] or [batch, n_head_kv, n_kv, d_v]"}}) {
    if (shape->size() != 3 && shape->size() != 4) {
      return invalid_argument(std::string(who) + " has shape " + shape_text(*shape) + "; it must be " + layout);
    }
  }
  if (k.size() != q.size() || v.size() != q.size()) {
    return invalid_argument("q, k and v have " + std::to_string(q.size()) + ", " + std::to_string(k.size()) +
                            " and " + std::to_string(v.size()) +
                            " dimensions: give the batch axis to all of them or to none");
  }
  const bool batched = q.size() == 4;
  const size_t o = batched ? 1 : 0;  // the head axis
  const int64_t batch = batched ? q[0] : 1;
  const int64_t n_head_q = q[o], n_q = q[o + 1], d_k = q[o + 2];
  const int64_t n_head_kv = k[o], n_kv = k[o + 1], d_v = v[o + 2];
  if (batched && k[0] != batch) return axis_mismatch("k", 0, "batch", k[0], batch, "the batch of q");
  if (batched && v[0] != batch) return axis_mismatch("v", 0, "batch", v[0], batch, "the batch of q");
  if (k[o + 2] != d_k) return axis_mismatch("k", o + 2, "d_k", k[o + 2], d_k, "d_k of q");
  if (v[o] != n_head_kv) return axis_mismatch("v", o, "n_head_kv", v[o], n_head_kv, "n_head_kv of k");
  if (v[o + 1] != n_kv) return axis_mismatch("v", o + 1, "n_kv", v[o + 1], n_kv, "n_kv of k");
  if (n_head_kv == 0) return invalid_argument("k axis " + std::to_string(o) + " (n_head_kv) is 0");
  if (n_head_q % n_head_kv != 0) {
    return invalid_argument("heads do not divide: n_head_q = " + std::to_string(n_head_q) +
                            " (q axis " + std::to_string(o) + ") is not a multiple of n_head_kv = " +
                            std::to_string(n_head_kv) + " (k axis " + std::to_string(o) + ")");
  }
  for (const auto& [dim_name, dim, arg, type] : {std::tuple{"d_k", d_k, "ktype", in.ktype},
                                                 std::tuple{"d_v", d_v, "vtype", in.vtype}}) {
    const KvTraits& t = kv_traits(type);
    if (dim < 1 || dim > kMaxHeadDim) {
      return invalid_argument(std::string(dim_name) + " = " + std::to_string(dim) + " is outside [1, " +
                              std::to_string(kMaxHeadDim) + "]");
    }
    // Turbo rows are zero-padded to the next multiple of their block, as the TurboQuant fork pads head dims.
    if (!t.rotated && dim % t.block_elems != 0) {
      return invalid_argument(std::string(dim_name) + " = " + std::to_string(dim) + " is not a multiple of " + arg +
                              " " + std::string(t.name) + "'s block size " + std::to_string(t.block_elems));
    }
  }
  auto out_elems = elements("the output", {batch, n_head_q, n_q, d_v});
  if (!out_elems.ok()) return out_elems.status();
  auto kv_rows = elements("k", {batch, n_head_kv, n_kv});
  if (!kv_rows.ok()) return kv_rows.status();

  DenseAttend d;
  AttentionProblem& p = d.problem_;
  p.shape = {.n_seq = batch, .n_q = n_q, .n_kv = n_kv, .n_head_q = n_head_q, .n_head_kv = n_head_kv, .d_k = d_k,
             .d_v = d_v};
  auto kq = quantize_rows(in.ktype, in.k.data, *kv_rows, d_k, "k");
  if (!kq.ok()) return kq.status();
  auto vq = quantize_rows(in.vtype, in.v.data, *kv_rows, d_v, "v");
  if (!vq.ok()) return vq.status();
  d.k_ = std::move(*kq);
  d.v_ = std::move(*vq);
  d.o_.assign(static_cast<size_t>(*out_elems), std::numeric_limits<float>::quiet_NaN());

  const int64_t q_row = d_k * 4, o_row = d_v * 4;
  const int64_t k_row = head_row_bytes(in.ktype, d_k), v_row = head_row_bytes(in.vtype, d_v);
  p.q = {in.q.data, {n_head_q * n_q * q_row, n_q * q_row, q_row}};
  p.k = {in.ktype, d.k_.data(), {n_head_kv * n_kv * k_row, n_kv * k_row, k_row}, {}};
  p.v = {in.vtype, d.v_.data(), {n_head_kv * n_kv * v_row, n_kv * v_row, v_row}, {}};
  p.o = {d.o_.data(), {n_head_q * n_q * o_row, n_q * o_row, o_row}};
  p.options = in.options;
  p.options.sinks = nullptr;

  if (in.mask.data != nullptr) {
    const auto& m = in.mask.shape;
    const std::string expected = batched ? "[n_q, n_kv], [batch, n_q, n_kv] or [batch, n_head_q, n_q, n_kv]"
                                         : "[n_q, n_kv], [n_head_q, n_q, n_kv] or [1, n_head_q, n_q, n_kv]";
    if (m.size() < 2 || m.size() > 4) {
      return invalid_argument("mask has shape " + shape_text(m) + "; a mask is " + expected);
    }
    int64_t mb = 1, mh = 1;  // normalized to [batch, head, row, key]
    if (m.size() == 4) {
      mb = m[0];
      mh = m[1];
    } else if (m.size() == 3) {
      (batched ? mb : mh) = m[0];
    }
    const size_t rank = m.size();
    const int64_t mq = m[rank - 2], mk = m[rank - 1];
    if (mk != n_kv) return axis_mismatch("mask", rank - 1, "n_kv", mk, n_kv, "n_kv of k");
    if (mq != n_q && mq != 1) return axis_mismatch("mask", rank - 2, "n_q", mq, n_q, "n_q of q, or 1");
    if (mh != n_head_q && mh != 1) {
      return axis_mismatch("mask", rank == 4 ? 1 : 0, "n_head_q", mh, n_head_q, "n_head_q of q, or 1");
    }
    if (mb != batch && mb != 1) return axis_mismatch("mask", 0, "batch", mb, batch, "the batch of q, or 1");
    const int64_t elem = in.mask_type == MaskType::f32 ? 4 : 2;
    p.mask.data = in.mask.data;
    p.mask.type = in.mask_type;
    p.mask.stride.row = mq == 1 ? 0 : mk * elem;
    p.mask.stride.head = mh == 1 ? 0 : mq * mk * elem;
    p.mask.stride.seq = mb == 1 ? 0 : mh * mq * mk * elem;
  }
  if (in.sinks.data != nullptr) {
    if (in.sinks.shape.size() != 1 || in.sinks.shape[0] != n_head_q) {
      return invalid_argument("sinks has shape " + shape_text(in.sinks.shape) + "; sinks are [n_head_q] = (" +
                              std::to_string(n_head_q) + ",)");
    }
    p.options.sinks = in.sinks.data;
  }
  d.output_shape_ = batched ? std::vector<int64_t>{batch, n_head_q, n_q, d_v}
                            : std::vector<int64_t>{n_head_q, n_q, d_v};
  return d;
}

}  // namespace kvflash::python
