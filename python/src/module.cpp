// kvflash._kvflash: the native half of the Python package (nanobind). It takes C-contiguous host arrays of exact
// dtypes; python/kvflash/__init__.py turns whatever the caller passed (NumPy, DLPack, buffers) into those.
// Every library Status becomes a Python exception carrying the library's message; nothing aborts.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <cstring>
#include <fstream>
#include <thread>
#include <memory>
#include <string>
#include <vector>

#include "dense_attend.h"
#include "kvflash/backend.h"
#include "kvflash/kv_type.h"
#include "kvflash/quantize.h"
#include "kvflash/reference.h"
#include "kvflash/version.h"
#include "py_common.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace kvflash::python {
namespace {

using FloatIn = nb::ndarray<const float, nb::c_contig, nb::device::cpu>;
using BytesIn = nb::ndarray<const uint8_t, nb::c_contig, nb::device::cpu>;
using AnyIn = nb::ndarray<nb::ro, nb::c_contig, nb::device::cpu>;

std::vector<int64_t> shape_of(size_t ndim, const int64_t* shape) { return {shape, shape + ndim}; }

nb::ndarray<nb::numpy, uint8_t> quantize(FloatIn x, const std::string& type_name) {
  const KvType type = type_or_raise(type_name);
  if (x.ndim() == 0) raise(invalid_argument("x is a scalar; quantize takes rows: an array whose last axis is n"));
  const std::vector<int64_t> shape = shape_of(x.ndim(), x.shape_ptr());
  const int64_t n = shape.back();
  const KvTraits& t = kv_traits(type);
  if (n == 0) raise(invalid_argument("x has shape " + shape_string(shape) + ": its rows are empty"));
  if (n % t.block_elems != 0) {
    raise(invalid_argument("the last axis of x is " + std::to_string(n) + ", not a multiple of " +
                           std::string(t.name) + "'s block size " + std::to_string(t.block_elems)));
  }
  const int64_t rows = static_cast<int64_t>(x.size()) / n;
  const int64_t bytes = row_bytes(type, n);
  std::vector<int64_t> out_shape(shape.begin(), shape.end() - 1);
  out_shape.push_back(bytes);
  auto out = new_array<uint8_t>(out_shape);
  {
    nb::gil_scoped_release unlocked;
    for (int64_t r = 0; r < rows; ++r) {
      const Status s = quantize_row(type, x.data() + r * n, n, out.data + r * bytes);
      if (!s.ok()) {
        nb::gil_scoped_acquire locked;
        raise(Status(s.code(), "row " + std::to_string(r) + " of x: " + s.message()));
      }
    }
  }
  return out.release();
}

nb::ndarray<nb::numpy, float> dequantize(BytesIn data, const std::string& type_name, std::vector<int64_t> shape,
                                         bool rotated) {
  const KvType type = type_or_raise(type_name);
  const KvTraits& t = kv_traits(type);
  if (shape.empty()) raise(invalid_argument("shape is empty; it names the rows, e.g. (n_rows, n)"));
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] < 0) raise(invalid_argument("shape[" + std::to_string(i) + "] = " + std::to_string(shape[i]) + " is negative"));
  }
  const int64_t n = shape.back();
  if (n == 0) raise(invalid_argument("shape " + shape_string(shape) + ": the last dimension (the row length) is 0"));
  if (n % t.block_elems != 0) {
    raise(invalid_argument("the last axis of shape is " + std::to_string(n) + ", not a multiple of " +
                           std::string(t.name) + "'s block size " + std::to_string(t.block_elems)));
  }
  int64_t values = 1;
  for (int64_t d : shape) {
    if (__builtin_mul_overflow(values, d, &values)) raise(invalid_argument("shape has more than 2^63 values"));
  }
  const int64_t rows = values / n;
  const int64_t bytes = row_bytes(type, n);
  int64_t want = 0;
  if (__builtin_mul_overflow(rows, bytes, &want)) raise(invalid_argument("shape has more than 2^63 bytes"));
  if (static_cast<int64_t>(data.size()) != want) {
    raise(invalid_argument("data holds " + std::to_string(data.size()) + " bytes but shape " + shape_string(shape) +
                           " of " + std::string(t.name) + " needs " + std::to_string(want) + " (" +
                           std::to_string(rows) + " rows of " + std::to_string(bytes) + " bytes)"));
  }
  auto out = new_array<float>(shape);
  {
    nb::gil_scoped_release unlocked;
    for (int64_t r = 0; r < rows; ++r) {
      const Status s = dequantize_row(type, data.data() + r * bytes, n, out.data + r * n, rotated);
      if (!s.ok()) {
        nb::gil_scoped_acquire locked;
        raise(Status(s.code(), "row " + std::to_string(r) + " of data: " + s.message()));
      }
    }
  }
  return out.release();
}

template <typename Element>
HostArray<Element> host(const nb::ndarray<const Element, nb::c_contig, nb::device::cpu>& a) {
  return {a.data(), shape_of(a.ndim(), a.shape_ptr())};
}

nb::ndarray<nb::numpy, float> attend(FloatIn q, FloatIn k, FloatIn v, const std::string& ktype,
                                     const std::string& vtype, std::optional<AnyIn> mask, bool causal, double scale,
                                     double softcap, double alibi, std::optional<FloatIn> sinks, int64_t window,
                                     const std::string& backend_text) {
  DenseAttendInputs in;
  in.q = host(q);
  in.k = host(k);
  in.v = host(v);
  in.ktype = type_or_raise(ktype);
  in.vtype = type_or_raise(vtype);
  const BackendKind backend = backend_or_raise(backend_text);
  if (mask) {
    const nb::dlpack::dtype dt = mask->dtype();
    if (dt == nb::dtype<float>()) {
      in.mask_type = MaskType::f32;
    } else if (dt.code == static_cast<uint8_t>(nb::dlpack::dtype_code::Float) && dt.bits == 16 && dt.lanes == 1) {
      in.mask_type = MaskType::f16;
    } else {
      raise_type_error("mask must be float32 or float16");
    }
    in.mask.data = mask->data();
    in.mask.shape = shape_of(mask->ndim(), mask->shape_ptr());
  }
  if (sinks) in.sinks = host(*sinks);
  in.options.causal = causal;
  in.options.scale = scale;
  in.options.softcap = softcap;
  in.options.alibi_max_bias = alibi;
  in.options.window = window;

  std::vector<float> output;
  std::vector<int64_t> output_shape;
  Status status;
  {
    nb::gil_scoped_release unlocked;
    auto prepared = DenseAttend::prepare(in);
    if (!prepared.ok()) {
      status = prepared.status();
    } else {
      status = validate(prepared->problem());
      if (status.ok()) status = run_backend(backend, prepared->problem());
      if (status.ok()) {
        output = prepared->take_output();
        output_shape = prepared->output_shape();
      }
    }
  }
  raise_if_error(status);
  auto out = new_array<float>(output_shape);
  std::memcpy(out.data, output.data(), output.size() * sizeof(float));
  return out.release();
}

/// The CPU as `kvflash info` shows it: model name, hardware threads, the features the fast kernels dispatch on.
nb::dict cpu_info() {
  nb::dict cpu;
  std::string model = "unknown";
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos && colon + 2 <= line.size()) model = line.substr(colon + 2);
      break;
    }
  }
  cpu["model"] = model;
  cpu["threads"] = std::thread::hardware_concurrency();
  nb::dict features;
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  features["avx2"] = __builtin_cpu_supports("avx2") != 0;
  features["fma"] = __builtin_cpu_supports("fma") != 0;
  features["f16c"] = __builtin_cpu_supports("f16c") != 0;
  features["avx512f"] = __builtin_cpu_supports("avx512f") != 0;
  features["avx512bf16"] = __builtin_cpu_supports("avx512bf16") != 0;
#endif
  cpu["features"] = features;
  return cpu;
}

nb::dict info() {
  nb::dict d;
  d["version"] = KVFLASH_VERSION;
  nb::dict backends;
  for (int b = 0; b < kBackendCount; ++b) {
    const auto kind = static_cast<BackendKind>(b);
    backends[nb::str(std::string(backend_name(kind)).c_str())] = backend_available(kind);
  }
  d["backends"] = backends;
  nb::list types;
  for (const KvTraits& t : all_kv_types()) {
    nb::dict e;
    e["name"] = std::string(t.name);
    e["id"] = static_cast<int>(t.type);
    e["block_elems"] = t.block_elems;
    e["block_bytes"] = t.block_bytes;
    e["bits_per_value"] = t.bits_per_value();
    e["quantized"] = t.quantized;
    e["rotated"] = t.rotated;
    types.append(e);
  }
  d["types"] = types;
#if defined(KVFLASH_HAVE_CUDA)
  d["cuda_built"] = true;
#else
  d["cuda_built"] = false;
#endif
  d["cpu"] = cpu_info();
  return d;
}

}  // namespace
}  // namespace kvflash::python

NB_MODULE(_kvflash, m) {
  using namespace kvflash::python;
  m.doc() = "kvflash native module; use the kvflash package, which wraps it.";
  m.def("version", [] { return std::string(KVFLASH_VERSION); });
  m.def("info", &info);
  m.def("row_bytes", [](const std::string& type, int64_t n) {
    const kvflash::KvType t = type_or_raise(type);
    const int64_t bytes = kvflash::row_bytes(t, n);
    if (n < 0 || (n > 0 && bytes == 0)) {
      raise(kvflash::invalid_argument("n = " + std::to_string(n) + " is not a multiple of " +
                                      std::string(kvflash::kv_traits(t).name) + "'s block size " +
                                      std::to_string(kvflash::kv_traits(t).block_elems)));
    }
    return bytes;
  }, "type"_a, "n"_a);
  m.def("quantize", &quantize, "x"_a, "type"_a);
  m.def("dequantize", &dequantize, "data"_a, "type"_a, "shape"_a, "rotated"_a);
  register_cache(m);
  register_plan(m);
  m.def("attend", &attend, "q"_a, "k"_a, "v"_a, "ktype"_a, "vtype"_a, "mask"_a.none(), "causal"_a, "scale"_a,
        "softcap"_a, "alibi"_a, "sinks"_a.none(), "window"_a, "backend"_a);
}
