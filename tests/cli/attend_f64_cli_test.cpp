// `kvflash attend` with float64 files, end to end. Three things are checked on each case:
// - the CLI's O equals attend_reference_f64 called in-process on the same data, bit for bit (K and V rounded to
//   float32 and quantized here, the mask expanded here to its dense float64 form, so the CLI's dtype handling and
//   broadcasting are checked, not copied);
// - O agrees with the independent float64 computation of support/float64_attention.h to 1e-12 relative: per
//   element against sum_j p_j |v_j| (the size of what is summed into it), and over the whole output against
//   max |O|; both computations are in double, so only their rounding differs;
// - the output dtype: that of Q, or --out-dtype.
// The inputs are drawn in double, so float64 files hold values that float32 cannot: a path that rounded Q, the
// mask or the sinks to float32 would miss 1e-12 by orders of magnitude (FullPrecisionReachesTheOutput).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "cli/cli_runner.h"
#include "cli/quantized_rows.h"
#include "cli/random_arrays.h"
#include "io/npy.h"
#include "io/npy_test_files.h"
#include "kvflash/quantize.h"
#include "kvflash/reference.h"
#include "support/float64_attention.h"

namespace kvflash {
namespace {

using testing::CliResult;
using testing::CliSandbox;
using testing::quantize_padded;
using testing::random_rows_f64;
using testing::rounded_to_f32;

constexpr double kRelativeTolerance = 1e-12;

enum class Dtype { f32, f64, f16 };  // f16: the mask only

struct F64Case {
  int64_t batch = 0;  // 0: the files have no batch axis
  int64_t n_head_q = 4, n_head_kv = 2, n_q = 3, n_kv = 40, d_k = 64, d_v = 64;
  KvType ktype = KvType::f16, vtype = KvType::f16;
  Dtype q = Dtype::f64, kv = Dtype::f64;
  bool mask = false;
  Dtype mask_dtype = Dtype::f64;
  bool mask_per_head = false;  // [batch?, n_head_q, n_q, n_kv]; else [n_q, n_kv], broadcast over heads and batch
  bool sinks = false;
  Dtype sinks_dtype = Dtype::f64;
  bool causal = false;
  double scale = 0, softcap = 0, alibi = 0;
  int64_t window = 0;
  std::string out_dtype = {};  // --out-dtype, or "" for the default
  uint64_t seed = 1;
};

std::vector<int64_t> with_batch(const F64Case& c, std::vector<int64_t> dims) {
  if (c.batch > 0) dims.insert(dims.begin(), c.batch);
  return dims;
}

/// Writes `values` as `dtype` and returns what a reader of that file sees, in double.
std::vector<double> write_as(const CliSandbox& box, const std::string& name, const std::vector<int64_t>& shape,
                             const std::vector<double>& values, Dtype dtype) {
  if (dtype == Dtype::f64) {
    box.write_npy_f64(name, shape, values);
    return values;
  }
  if (dtype == Dtype::f32) {
    const std::vector<float> rounded = rounded_to_f32(values);
    box.write_npy(name, shape, rounded);
    return std::vector<double>(rounded.begin(), rounded.end());
  }
  std::vector<uint8_t> bytes;
  std::vector<double> seen;
  for (double x : values) {
    const uint16_t h = fp32_to_fp16(static_cast<float>(x));
    seen.push_back(fp16_to_fp32(h));
    bytes.push_back(static_cast<uint8_t>(h & 0xff));
    bytes.push_back(static_cast<uint8_t>(h >> 8));
  }
  std::string tuple = "(";
  for (int64_t d : shape) tuple += std::to_string(d) + ", ";
  box.write(name, testing::npy_image(1, testing::npy_dict("<f2", tuple + ")") + "\n", bytes));
  return seen;
}

struct F64Result {
  io::NpyDtype dtype = io::NpyDtype::f32;  // of the CLI's output file
  std::vector<double> cli;                 // the CLI's output, widened
  std::vector<uint8_t> file;               // its bytes
  std::vector<double> oracle;              // attend_reference_f64 in-process
  testing::Float64Attention check;         // the independent float64 computation
};

/// Writes the inputs of `c`, runs the CLI, and computes the same attention in-process two ways.
F64Result run_f64_case(const F64Case& c) {
  F64Result result;
  CliSandbox box;
  const int64_t b = c.batch > 0 ? c.batch : 1;
  const std::vector<double> q = write_as(box, "q.npy", with_batch(c, {c.n_head_q, c.n_q, c.d_k}),
                                         random_rows_f64(b * c.n_head_q * c.n_q * c.d_k, c.d_k, c.seed), c.q);
  const std::vector<double> k = write_as(box, "k.npy", with_batch(c, {c.n_head_kv, c.n_kv, c.d_k}),
                                         random_rows_f64(b * c.n_head_kv * c.n_kv * c.d_k, c.d_k, c.seed + 1), c.kv);
  const std::vector<double> v = write_as(box, "v.npy", with_batch(c, {c.n_head_kv, c.n_kv, c.d_v}),
                                         random_rows_f64(b * c.n_head_kv * c.n_kv * c.d_v, c.d_v, c.seed + 2), c.kv);
  std::vector<std::string> args = {"attend", "--q", "q.npy", "--k", "k.npy", "--v", "v.npy",
                                   "--ktype", std::string(kv_traits(c.ktype).name),
                                   "--vtype", std::string(kv_traits(c.vtype).name), "--backend", "ref",
                                   "--out", "o.npy"};

  // The mask: -inf on about one key in six; expanded here to dense [b, n_head_q, n_q, n_kv].
  std::vector<double> dense_mask;
  if (c.mask) {
    const int64_t mh = c.mask_per_head ? c.n_head_q : 1, mb = c.mask_per_head ? b : 1;
    const std::vector<int64_t> shape =
        c.mask_per_head ? with_batch(c, {c.n_head_q, c.n_q, c.n_kv}) : std::vector<int64_t>{c.n_q, c.n_kv};
    std::vector<double> m = random_rows_f64(mb * mh * c.n_q * c.n_kv, c.n_kv, c.seed + 3);
    for (size_t i = 0; i < m.size(); ++i) {
      if (i % 6 == 1) m[i] = -std::numeric_limits<double>::infinity();
    }
    m = write_as(box, "m.npy", shape, m, c.mask_dtype);
    dense_mask.resize(static_cast<size_t>(b * c.n_head_q * c.n_q * c.n_kv));
    for (int64_t s = 0; s < b; ++s)
      for (int64_t h = 0; h < c.n_head_q; ++h)
        for (int64_t i = 0; i < c.n_q; ++i)
          for (int64_t j = 0; j < c.n_kv; ++j) {
            const int64_t src = ((((mb == 1 ? 0 : s) * mh + (mh == 1 ? 0 : h)) * c.n_q + i) * c.n_kv) + j;
            dense_mask[static_cast<size_t>(((s * c.n_head_q + h) * c.n_q + i) * c.n_kv + j)] = m[src];
          }
    args.insert(args.end(), {"--mask", "m.npy"});
  }
  std::vector<double> sinks;
  if (c.sinks) {
    sinks = write_as(box, "s.npy", {c.n_head_q}, random_rows_f64(c.n_head_q, c.n_head_q, c.seed + 4), c.sinks_dtype);
    args.insert(args.end(), {"--sinks", "s.npy"});
  }
  if (c.causal) args.push_back("--causal");
  char number[64];
  for (const auto& [flag, value] : {std::pair{"--scale", c.scale}, std::pair{"--softcap", c.softcap},
                                    std::pair{"--alibi", c.alibi}}) {
    if (value == 0) continue;
    std::snprintf(number, sizeof number, "%.17g", value);
    args.insert(args.end(), {flag, number});
  }
  if (c.window > 0) args.insert(args.end(), {"--window", std::to_string(c.window)});
  if (!c.out_dtype.empty()) args.insert(args.end(), {"--out-dtype", c.out_dtype});

  const CliResult r = box.run(args);
  EXPECT_EQ(r.signal, 0);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  auto o = io::read_npy_as_f64(box.path("o.npy"));
  EXPECT_TRUE(o.ok()) << o.status().message();
  if (!o.ok()) return result;
  EXPECT_EQ(o->shape, with_batch(c, {c.n_head_q, c.n_q, c.d_v}));
  result.dtype = o->dtype;
  result.cli = std::move(o->values);
  result.file = box.read("o.npy");

  // The same problem, in-process: K and V as the CLI stores them, Q, mask and sinks in double.
  const std::vector<uint8_t> kq = quantize_padded(c.ktype, rounded_to_f32(k), c.d_k);
  const std::vector<uint8_t> vq = quantize_padded(c.vtype, rounded_to_f32(v), c.d_v);
  const int64_t krb = head_row_bytes(c.ktype, c.d_k), vrb = head_row_bytes(c.vtype, c.d_v);
  AttentionProblem p;
  p.shape = {.n_seq = b, .n_q = c.n_q, .n_kv = c.n_kv, .n_head_q = c.n_head_q, .n_head_kv = c.n_head_kv,
             .d_k = c.d_k, .d_v = c.d_v};
  p.k = {c.ktype, kq.data(), {c.n_head_kv * c.n_kv * krb, c.n_kv * krb, krb}, {}};
  p.v = {c.vtype, vq.data(), {c.n_head_kv * c.n_kv * vrb, c.n_kv * vrb, vrb}, {}};
  p.options = {.scale = c.scale, .causal = c.causal, .window = c.window, .alibi_max_bias = c.alibi,
               .softcap = c.softcap, .sinks = nullptr};
  ReferenceF64Inputs extra;
  if (!dense_mask.empty()) {
    extra.mask = dense_mask.data();
    extra.mask_stride = {c.n_head_q * c.n_q * c.n_kv * 8, c.n_q * c.n_kv * 8, c.n_kv * 8};
  }
  if (!sinks.empty()) extra.sinks = sinks.data();
  result.oracle.assign(static_cast<size_t>(b * c.n_head_q * c.n_q * c.d_v), std::numeric_limits<double>::quiet_NaN());
  const Status s = attend_reference_f64(p, q.data(), result.oracle.data(), extra);
  EXPECT_TRUE(s.ok()) << s.message();
  result.check = testing::float64_attention(p, {q.data(), extra.mask, extra.mask_stride, extra.sinks});
  return result;
}

/// The CLI's output equals the in-process oracle bit for bit (rounded once when it is float32).
void expect_cli_is_the_oracle(const F64Result& r) {
  ASSERT_EQ(r.cli.size(), r.oracle.size());
  for (size_t n = 0; n < r.cli.size(); ++n) {
    ASSERT_TRUE(std::isfinite(r.cli[n])) << "element " << n << " was not written";
    const double want = r.dtype == io::NpyDtype::f64 ? r.oracle[n] : static_cast<float>(r.oracle[n]);
    ASSERT_EQ(std::memcmp(&r.cli[n], &want, 8), 0) << "element " << n << ": CLI " << r.cli[n] << ", oracle " << want;
  }
}

/// The CLI's float64 output agrees with the independent computation to kRelativeTolerance.
void expect_float64_agreement(const F64Result& r) {
  ASSERT_EQ(r.dtype, io::NpyDtype::f64);
  ASSERT_EQ(r.cli.size(), r.check.out.size());
  double max_diff = 0, max_want = 0;
  int reported = 0;
  for (size_t n = 0; n < r.cli.size(); ++n) {
    const double diff = std::abs(r.cli[n] - r.check.out[n]);
    max_diff = std::max(max_diff, diff);
    max_want = std::max(max_want, std::abs(r.check.out[n]));
    if (!(diff <= kRelativeTolerance * r.check.scale[n]) && reported++ < 5) {
      ADD_FAILURE() << "element " << n << ": CLI " << r.cli[n] << ", float64 check " << r.check.out[n]
                    << ", difference " << diff << " > 1e-12 * " << r.check.scale[n];
    }
  }
  EXPECT_GT(max_want, 0.0);
  EXPECT_LE(max_diff, kRelativeTolerance * max_want) << "largest difference over the largest |O|";
}

void expect_f64_case(const F64Case& c) {
  const F64Result r = run_f64_case(c);
  EXPECT_EQ(r.dtype, c.out_dtype == "f32" ? io::NpyDtype::f32 : io::NpyDtype::f64);
  expect_cli_is_the_oracle(r);
  expect_float64_agreement(r);
}

TEST(CliAttendF64, TypePairsMatchTheOracleBitForBitAndAFloat64Check) {
  struct Pair {
    KvType k, v;
    int64_t d_k, d_v;
  };
  const Pair pairs[] = {{KvType::f32, KvType::f32, 80, 40},    {KvType::f16, KvType::f16, 64, 64},
                        {KvType::bf16, KvType::f32, 3, 1},     {KvType::q8_0, KvType::q4_0, 128, 96},
                        {KvType::q4_1, KvType::q5_0, 64, 64},  {KvType::q5_1, KvType::q8_0, 192, 128},
                        {KvType::turbo3, KvType::turbo4, 96, 96}, {KvType::turbo2, KvType::f16, 128, 64}};
  uint64_t seed = 100;
  for (const Pair& pair : pairs) {
    SCOPED_TRACE(std::string(kv_traits(pair.k).name) + " x " + std::string(kv_traits(pair.v).name));
    expect_f64_case({.n_kv = 37, .d_k = pair.d_k, .d_v = pair.d_v, .ktype = pair.k, .vtype = pair.v, .seed = seed++});
  }
}

TEST(CliAttendF64, EveryOptionWithAFloat64MaskAndSinks) {
  expect_f64_case({.n_head_q = 8, .n_head_kv = 2, .n_q = 4, .n_kv = 37, .d_k = 64, .d_v = 32,
                   .ktype = KvType::q8_0, .vtype = KvType::q4_0, .mask = true, .mask_per_head = true,
                   .sinks = true, .causal = true, .scale = 0.3, .softcap = 20.0, .alibi = 8.0, .window = 25,
                   .seed = 200});
  expect_f64_case({.n_head_q = 6, .n_head_kv = 2, .n_q = 9, .n_kv = 31, .d_k = 96, .d_v = 96,
                   .ktype = KvType::q5_1, .vtype = KvType::bf16, .mask = true, .sinks = true, .causal = true,
                   .alibi = 4.0, .seed = 201});
}

TEST(CliAttendF64, BatchAxisGqaAndOddQueryRows) {
  for (int64_t n_q : {1, 5, 7}) {
    SCOPED_TRACE(n_q);
    expect_f64_case({.batch = 2, .n_head_q = 6, .n_head_kv = 2, .n_q = n_q, .n_kv = 23, .d_k = 64, .d_v = 32,
                     .ktype = KvType::q4_0, .vtype = KvType::q8_0, .mask = true, .mask_per_head = n_q != 5,
                     .causal = true, .window = 9, .seed = static_cast<uint64_t>(300 + n_q)});
  }
}

TEST(CliAttendF64, MixedDtypes) {
  // Float64 Q with float32 K/V, a float16 mask and float32 sinks: O is float64.
  expect_f64_case({.n_kv = 29, .kv = Dtype::f32, .mask = true, .mask_dtype = Dtype::f16, .sinks = true,
                   .sinks_dtype = Dtype::f32, .causal = true, .seed = 400});
  // Float32 Q with a float64 mask and sinks: O is float32 (rounded once from the float64 oracle) by default.
  const F64Result r = run_f64_case({.n_kv = 29, .ktype = KvType::q8_0, .q = Dtype::f32, .mask = true, .sinks = true,
                                    .softcap = 30, .seed = 401});
  EXPECT_EQ(r.dtype, io::NpyDtype::f32);
  expect_cli_is_the_oracle(r);
  // --out-dtype overrides the dtype of Q both ways.
  expect_f64_case({.n_kv = 29, .q = Dtype::f32, .kv = Dtype::f32, .mask = true, .mask_dtype = Dtype::f32,
                   .out_dtype = "f64", .seed = 402});
  expect_f64_case({.n_kv = 29, .mask = true, .out_dtype = "f64", .seed = 403});
  const F64Result narrowed = run_f64_case({.n_kv = 29, .mask = true, .sinks = true, .out_dtype = "f32", .seed = 404});
  EXPECT_EQ(narrowed.dtype, io::NpyDtype::f32);
  expect_cli_is_the_oracle(narrowed);
}

TEST(CliAttendF64, Float32InputsGiveTheSameFloat32OutputAsBefore) {
  // All float32: the default output is float32 from the float32 problem; --out-dtype f64 runs the float64
  // entry point instead. Rounding that output gives the default file's values bit for bit.
  const F64Case base{.n_q = 5, .n_kv = 33, .ktype = KvType::q4_1, .vtype = KvType::f16, .q = Dtype::f32,
                     .kv = Dtype::f32, .mask = true, .mask_dtype = Dtype::f32, .sinks = true,
                     .sinks_dtype = Dtype::f32, .causal = true, .alibi = 2.0, .seed = 500};
  const F64Result f32_out = run_f64_case(base);
  EXPECT_EQ(f32_out.dtype, io::NpyDtype::f32);
  expect_cli_is_the_oracle(f32_out);
  F64Case wide = base;
  wide.out_dtype = "f64";
  const F64Result f64_out = run_f64_case(wide);
  expect_cli_is_the_oracle(f64_out);
  expect_float64_agreement(f64_out);
  const std::vector<float> rounded(f64_out.cli.begin(), f64_out.cli.end());
  auto reencoded = io::encode_npy_f32(std::vector<int64_t>{base.n_head_q, base.n_q, base.d_v}, rounded);
  ASSERT_TRUE(reencoded.ok());
  EXPECT_EQ(*reencoded, f32_out.file);
}

TEST(CliAttendF64, Float64KAndVAreRoundedToFloat32BeforeQuantizing) {
  // The same K/V values written as float64 and as their float32 roundings give the same output file.
  for (KvType type : {KvType::f32, KvType::q4_0, KvType::turbo3}) {
    SCOPED_TRACE(std::string(kv_traits(type).name));
    F64Case c{.n_kv = 21, .d_k = 64, .d_v = 64, .ktype = type, .vtype = type, .seed = 600};
    const F64Result from_f64 = run_f64_case(c);
    c.kv = Dtype::f32;
    const F64Result from_f32 = run_f64_case(c);
    ASSERT_FALSE(from_f64.file.empty());
    EXPECT_EQ(from_f64.file, from_f32.file);
  }
}

TEST(CliAttendF64, FullPrecisionReachesTheOutput) {
  // Rounding Q, the mask or the sinks to float32 moves some output element by more than ten times the tolerance
  // of the float64 agreement (1e-12 of the element's scale): the float64 path does keep their precision.
  // Few keys and a small scale keep the softmax denominator near the sinks' size, so that they carry weight.
  const F64Case base{.n_kv = 3, .ktype = KvType::f32, .vtype = KvType::f32, .mask = true, .sinks = true,
                     .scale = 0.01, .out_dtype = "f64", .seed = 700};
  const F64Result full = run_f64_case(base);
  expect_float64_agreement(full);
  for (int which = 0; which < 3; ++which) {
    F64Case rounded = base;
    (which == 0 ? rounded.q : which == 1 ? rounded.mask_dtype : rounded.sinks_dtype) = Dtype::f32;
    SCOPED_TRACE(which == 0 ? "q" : which == 1 ? "mask" : "sinks");
    const F64Result r = run_f64_case(rounded);
    ASSERT_EQ(r.cli.size(), full.cli.size());
    double largest = 0;  // the largest difference in units of the agreement tolerance
    for (size_t n = 0; n < r.cli.size(); ++n) {
      largest = std::max(largest, std::abs(r.cli[n] - full.cli[n]) / (kRelativeTolerance * full.check.scale[n]));
    }
    EXPECT_GT(largest, 10.0);
  }
}

}  // namespace
}  // namespace kvflash
