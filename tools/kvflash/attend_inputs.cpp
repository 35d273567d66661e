#include "attend_inputs.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <utility>

#include "io/npy.h"
#include "kvflash/quantize.h"
#include "kvflash/reference.h"

namespace kvflash::cli {

namespace {

std::string label(std::string_view flag, const std::string& path) { return "--" + std::string(flag) + " '" + path + "'"; }

std::string dims_text(const std::vector<int64_t>& shape) { return io::shape_string(shape); }

// "--k 'k.npy' axis 2 (d_k) is 64, expected 128 (d_k of --q 'q.npy')"
Status axis_mismatch(const std::string& who, int axis, std::string_view axis_name, int64_t got, int64_t want,
                     const std::string& why) {
  return invalid_argument(who + " axis " + std::to_string(axis) + " (" + std::string(axis_name) + ") is " +
                          std::to_string(got) + ", expected " + std::to_string(want) + " (" + why + ")");
}

Status check_rank(const std::string& who, const std::vector<int64_t>& shape, std::string_view layout) {
  if (shape.size() == 3 || shape.size() == 4) return Status::Ok();
  return invalid_argument(who + " has shape " + dims_text(shape) + " (" + std::to_string(shape.size()) +
                          "-d); it must be " + std::string(layout));
}

Status check_block(const std::string& who, int axis, std::string_view axis_name, int64_t dim, std::string_view flag,
                   KvType type) {
  const KvTraits& t = kv_traits(type);
  // Turbo rows are zero-padded to the next multiple of the block (as the TurboQuant fork pads head dims).
  if (t.rotated || dim % t.block_elems == 0) return Status::Ok();
  return invalid_argument(std::string(axis_name) + " = " + std::to_string(dim) + " (" + who + " axis " +
                          std::to_string(axis) + ") is not a multiple of --" + std::string(flag) + " " +
                          std::string(t.name) + "'s block size " + std::to_string(t.block_elems));
}

// Elements of `shape` with every zero axis counted as 1, or -1 on overflow: bounding it bounds every product of
// axes the command computes, even for an empty array whose other axes are absurd.
int64_t nominal_elements(const std::vector<int64_t>& shape) {
  std::vector<int64_t> at_least_one(shape);
  for (int64_t& d : at_least_one) d = d == 0 ? 1 : d;
  return io::checked_product(at_least_one);
}

// Rows of `dim` values, each zero-padded to stored_dim(type, dim) and quantized as `kvflash quantize` does.
StatusOr<std::vector<uint8_t>> quantize_rows(KvType type, const std::vector<float>& values, int64_t rows, int64_t dim,
                                             const std::string& who) {
  const int64_t stored = stored_dim(type, dim);
  const int64_t bytes_per_row = row_bytes(type, stored);
  std::vector<uint8_t> out(static_cast<size_t>(rows * bytes_per_row));
  std::vector<float> padded(static_cast<size_t>(stored), 0.0f);
  for (int64_t r = 0; r < rows; ++r) {
    std::copy(values.begin() + r * dim, values.begin() + (r + 1) * dim, padded.begin());
    const Status s = quantize_row(type, padded.data(), stored, out.data() + r * bytes_per_row);
    if (!s.ok()) return Status(s.code(), "row " + std::to_string(r) + " of " + who + ": " + s.message());
  }
  return out;
}

// What load_mask() read: the element bytes as the file holds them and the element strides of [seq, head, row].
struct MaskFileData {
  io::NpyDtype dtype = io::NpyDtype::f32;
  std::vector<uint8_t> bytes;
  Strides stride;  // elements; 0 broadcasts
};

// Accepted mask shapes, an axis of size 1 broadcasting: [n_q, n_kv]; [batch, n_q, n_kv] when Q has a batch axis,
// else [n_head_q, n_q, n_kv]; [batch, n_head_q, n_q, n_kv].
StatusOr<MaskFileData> load_mask(const std::string& path, const AttendDims& d) {
  const std::string who = label("mask", path);
  auto mask = io::read_npy(path);
  if (!mask.ok()) return mask.status();
  if (mask->dtype != io::NpyDtype::f32 && mask->dtype != io::NpyDtype::f16 && mask->dtype != io::NpyDtype::f64) {
    return format_error(who + " holds dtype '" + std::string(io::npy_descr(mask->dtype)) +
                        "'; a mask is float32 ('<f4'), float64 ('<f8') or float16 ('<f2')");
  }
  const std::vector<int64_t>& s = mask->shape;
  const std::string expected = d.batched ? "[n_q, n_kv], [batch, n_q, n_kv] or [batch, n_head_q, n_q, n_kv]"
                                         : "[n_q, n_kv], [n_head_q, n_q, n_kv] or [1, n_head_q, n_q, n_kv]";
  if (s.size() < 2 || s.size() > 4) {
    return invalid_argument(who + " has shape " + dims_text(s) + "; a mask is " + expected);
  }
  // Normalized to [batch, head, row, key] extents.
  int64_t mb = 1, mh = 1;
  if (s.size() == 4) {
    mb = s[0];
    mh = s[1];
  } else if (s.size() == 3) {
    (d.batched ? mb : mh) = s[0];
  }
  const int64_t mq = s[s.size() - 2], mk = s[s.size() - 1];
  const int rank = static_cast<int>(s.size());
  if (mk != d.n_kv) return axis_mismatch(who, rank - 1, "n_kv", mk, d.n_kv, "n_kv of the K file");
  if (mq != d.n_q && mq != 1) return axis_mismatch(who, rank - 2, "n_q", mq, d.n_q, "n_q of the Q file, or 1");
  if (mh != d.n_head_q && mh != 1) {
    return axis_mismatch(who, rank == 4 ? 1 : 0, "n_head_q", mh, d.n_head_q, "n_head_q of the Q file, or 1");
  }
  if (mb != d.batch && mb != 1) return axis_mismatch(who, 0, "batch", mb, d.batch, "the batch of the Q file, or 1");

  MaskFileData out;
  out.dtype = mask->dtype;
  out.stride.row = mq == 1 ? 0 : mk;
  out.stride.head = mh == 1 ? 0 : mq * mk;
  out.stride.seq = mb == 1 ? 0 : mh * mq * mk;
  out.bytes = std::move(mask->data);
  return out;
}

// Each float64 value rounded to the nearest float32: what a float32 problem sees of a float64 file.
std::vector<float> rounded_to_f32(const double* values, size_t count) {
  return std::vector<float>(values, values + count);
}

Strides scaled(const Strides& elements, int64_t bytes) {
  return {.seq = elements.seq * bytes, .head = elements.head * bytes, .row = elements.row * bytes};
}

}  // namespace

StatusOr<AttendDims> check_qkv_shapes(const std::vector<int64_t>& q, const std::vector<int64_t>& k,
                                      const std::vector<int64_t>& v, const AttendFiles& files, KvType ktype,
                                      KvType vtype) {
  const std::string wq = label("q", files.q), wk = label("k", files.k), wv = label("v", files.v);
  KVFLASH_RETURN_IF_ERROR(check_rank(wq, q, "[n_head_q, n_q, d_k] or [batch, n_head_q, n_q, d_k]"));
  KVFLASH_RETURN_IF_ERROR(check_rank(wk, k, "[n_head_kv, n_kv, d_k] or [batch, n_head_kv, n_kv, d_k]"));
  KVFLASH_RETURN_IF_ERROR(check_rank(wv, v, "[n_head_kv, n_kv, d_v] or [batch, n_head_kv, n_kv, d_v]"));
  for (const auto& [who, shape] : {std::pair{wk, &k}, std::pair{wv, &v}}) {
    if (shape->size() != q.size()) {
      return invalid_argument(who + " has " + std::to_string(shape->size()) + " dimensions but " + wq + " has " +
                              std::to_string(q.size()) + ": give the batch axis to all of q, k, v or to none");
    }
  }
  for (const auto& [who, shape] : {std::pair{wq, &q}, std::pair{wk, &k}, std::pair{wv, &v}}) {
    // Every element needs 4 bytes of the file unless an axis is 0: only an empty array can get here.
    if (nominal_elements(*shape) < 0) return invalid_argument(who + " has an absurd shape " + dims_text(*shape));
  }
  AttendDims d;
  d.batched = q.size() == 4;
  const int o = d.batched ? 1 : 0;  // index of the head axis
  d.batch = d.batched ? q[0] : 1;
  d.n_head_q = q[o];
  d.n_q = q[o + 1];
  d.d_k = q[o + 2];
  d.n_head_kv = k[o];
  d.n_kv = k[o + 1];
  d.d_v = v[o + 2];
  if (d.batched) {
    if (k[0] != d.batch) return axis_mismatch(wk, 0, "batch", k[0], d.batch, "the batch of " + wq);
    if (v[0] != d.batch) return axis_mismatch(wv, 0, "batch", v[0], d.batch, "the batch of " + wq);
  }
  if (k[o + 2] != d.d_k) return axis_mismatch(wk, o + 2, "d_k", k[o + 2], d.d_k, "d_k of " + wq);
  if (v[o] != d.n_head_kv) return axis_mismatch(wv, o, "n_head_kv", v[o], d.n_head_kv, "n_head_kv of " + wk);
  if (v[o + 1] != d.n_kv) return axis_mismatch(wv, o + 1, "n_kv", v[o + 1], d.n_kv, "n_kv of " + wk);
  struct Extent {
    const std::string& who;
    int axis;
    const char* name;
    int64_t value;
  };
  for (const Extent& e : {Extent{wq, o, "n_head_q", d.n_head_q}, Extent{wq, o + 2, "d_k", d.d_k},
                          Extent{wk, o, "n_head_kv", d.n_head_kv}, Extent{wv, o + 2, "d_v", d.d_v}}) {
    if (e.value == 0) return invalid_argument(e.who + " axis " + std::to_string(e.axis) + " (" + e.name + ") is 0");
  }
  if (d.n_head_q % d.n_head_kv != 0) {
    return invalid_argument("heads do not divide: n_head_q = " + std::to_string(d.n_head_q) + " (" + wq + " axis " +
                            std::to_string(o) + ") is not a multiple of n_head_kv = " + std::to_string(d.n_head_kv) +
                            " (" + wk + " axis " + std::to_string(o) + ")");
  }
  if (nominal_elements({d.batch, d.n_head_q, d.n_q, d.d_v}) < 0) {
    return invalid_argument("the output [" + std::to_string(d.batch) + ", " + std::to_string(d.n_head_q) + ", " +
                            std::to_string(d.n_q) + ", " + std::to_string(d.d_v) + "] is too large");
  }
  KVFLASH_RETURN_IF_ERROR(check_block(wk, o + 2, "d_k", d.d_k, "ktype", ktype));
  KVFLASH_RETURN_IF_ERROR(check_block(wv, o + 2, "d_v", d.d_v, "vtype", vtype));
  return d;
}

StatusOr<AttendInputs> AttendInputs::load(const AttendFiles& files, KvType ktype, KvType vtype) {
  // K and V are what a KV cache stores: float32 rows for the quantizers, a float64 file rounded first.
  auto q = io::read_npy_as_f64(files.q);
  if (!q.ok()) return q.status();
  auto k = io::read_npy_as_f32(files.k);
  if (!k.ok()) return k.status();
  auto v = io::read_npy_as_f32(files.v);
  if (!v.ok()) return v.status();
  auto dims = check_qkv_shapes(q->shape, k->shape, v->shape, files, ktype, vtype);
  if (!dims.ok()) return dims.status();

  AttendInputs in;
  in.dims_ = *dims;
  in.ktype_ = ktype;
  in.vtype_ = vtype;
  const AttendDims& d = in.dims_;
  const int64_t kv_rows = d.batch * d.n_head_kv * d.n_kv;
  auto kq = quantize_rows(ktype, k->values, kv_rows, d.d_k, label("k", files.k));
  if (!kq.ok()) return kq.status();
  auto vq = quantize_rows(vtype, v->values, kv_rows, d.d_v, label("v", files.v));
  if (!vq.ok()) return vq.status();
  in.k_ = std::move(*kq);
  in.v_ = std::move(*vq);
  in.q_dtype_ = q->dtype;
  in.q64_ = std::move(q->values);
  in.q_ = rounded_to_f32(in.q64_.data(), in.q64_.size());

  if (!files.mask.empty()) {
    auto mask = load_mask(files.mask, d);
    if (!mask.ok()) return mask.status();
    in.mask_stride_ = mask->stride;
    if (mask->dtype == io::NpyDtype::f64) {
      // Copied out of the file's bytes (which carry no alignment) into doubles.
      in.mask64_.resize(mask->bytes.size() / sizeof(double));
      if (!in.mask64_.empty()) std::memcpy(in.mask64_.data(), mask->bytes.data(), mask->bytes.size());
      in.mask_f32_ = rounded_to_f32(in.mask64_.data(), in.mask64_.size());
    } else {
      in.mask_is_f16_ = mask->dtype == io::NpyDtype::f16;
      in.mask_ = std::move(mask->bytes);
    }
  }
  if (!files.sinks.empty()) {
    auto sinks = io::read_npy_as_f64(files.sinks);
    if (!sinks.ok()) return sinks.status();
    if (sinks->shape.size() != 1 || sinks->shape[0] != d.n_head_q) {
      return invalid_argument(label("sinks", files.sinks) + " has shape " + dims_text(sinks->shape) +
                              "; sinks are [n_head_q] = [" + std::to_string(d.n_head_q) + "]");
    }
    in.sinks_dtype_ = sinks->dtype;
    in.sinks64_ = std::move(sinks->values);
    in.sinks_ = rounded_to_f32(in.sinks64_.data(), in.sinks64_.size());
  }
  const size_t out_elements = static_cast<size_t>(d.batch * d.n_head_q * d.n_q * d.d_v);
  in.o_.assign(out_elements, std::numeric_limits<float>::quiet_NaN());
  in.o64_.assign(out_elements, std::numeric_limits<double>::quiet_NaN());
  return in;
}

AttentionProblem AttendInputs::problem(const AttentionOptions& options) {
  const AttendDims& d = dims_;
  AttentionProblem p;
  p.shape = {.n_seq = d.batch, .n_q = d.n_q, .n_kv = d.n_kv, .n_head_q = d.n_head_q, .n_head_kv = d.n_head_kv,
             .d_k = d.d_k, .d_v = d.d_v};
  const int64_t q_row = d.d_k * 4, o_row = d.d_v * 4;  // float32 rows
  p.q.data = q_.data();
  p.q.stride = {.seq = d.n_head_q * d.n_q * q_row, .head = d.n_q * q_row, .row = q_row};
  const int64_t k_row = head_row_bytes(ktype_, d.d_k), v_row = head_row_bytes(vtype_, d.d_v);
  p.k.type = ktype_;
  p.k.data = k_.data();
  p.k.stride = {.seq = d.n_head_kv * d.n_kv * k_row, .head = d.n_kv * k_row, .row = k_row};
  p.v.type = vtype_;
  p.v.data = v_.data();
  p.v.stride = {.seq = d.n_head_kv * d.n_kv * v_row, .head = d.n_kv * v_row, .row = v_row};
  if (!mask_.empty()) {
    p.mask = mask_is_f16_ ? MaskView{mask_.data(), MaskType::f16, scaled(mask_stride_, 2)}
                          : MaskView{mask_.data(), MaskType::f32, scaled(mask_stride_, 4)};
  } else if (!mask64_.empty()) {
    p.mask = {mask_f32_.data(), MaskType::f32, scaled(mask_stride_, 4)};
  }
  p.o.data = o_.data();
  p.o.stride = {.seq = d.n_head_q * d.n_q * o_row, .head = d.n_q * o_row, .row = o_row};
  p.options = options;
  p.options.sinks = sinks_.empty() ? nullptr : sinks_.data();
  return p;
}

Status AttendInputs::run_reference_f64(const AttentionProblem& p) {
  ReferenceF64Inputs extra;
  if (!mask64_.empty()) {
    extra.mask = mask64_.data();
    extra.mask_stride = scaled(mask_stride_, 8);
  }
  if (!sinks64_.empty()) extra.sinks = sinks64_.data();
  return attend_reference_f64(p, q64_.data(), o64_.data(), extra);
}

bool AttendInputs::has_f64_input() const {
  return q_dtype_ == io::NpyDtype::f64 || !mask64_.empty() || (!sinks64_.empty() && sinks_dtype_ == io::NpyDtype::f64);
}

std::vector<int64_t> AttendInputs::output_shape() const {
  const AttendDims& d = dims_;
  if (d.batched) return {d.batch, d.n_head_q, d.n_q, d.d_v};
  return {d.n_head_q, d.n_q, d.d_v};
}

}  // namespace kvflash::cli
