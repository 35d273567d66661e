// `kvflash attend --backend ref` against attend_reference called in-process on the same data: K and V quantized
// row by row with quantize_row (turbo rows zero-padded), the mask expanded to its dense [batch, head, row, key]
// form here (so the CLI's broadcasting is checked, not copied). The outputs must be identical bit for bit.
#include <gtest/gtest.h>

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

namespace kvflash {
namespace {

using testing::CliResult;
using testing::CliSandbox;
using testing::quantize_padded;
using testing::random_rows;

// How the mask file is shaped; each is expanded to [batch, n_head_q, n_q, n_kv] for the in-process reference.
enum class MaskFile { none, rows_keys, heads_rows_keys, batch_rows_keys, full_4d, one_row, f16_rows_keys };

struct AttendCase {
  int64_t batch = 0;  // 0: the files have no batch axis
  int64_t n_head_q = 4, n_head_kv = 2, n_q = 3, n_kv = 40, d_k = 64, d_v = 64;
  KvType ktype = KvType::f16, vtype = KvType::f16;
  MaskFile mask = MaskFile::none;
  bool causal = false, sinks = false;
  double scale = 0, softcap = 0, alibi = 0;
  int64_t window = 0;
  uint64_t seed = 1;
};

std::vector<int64_t> with_batch(const AttendCase& c, std::vector<int64_t> dims) {
  if (c.batch > 0) dims.insert(dims.begin(), c.batch);
  return dims;
}

// Writes the inputs, runs the CLI and the in-process reference, and compares.
void expect_cli_matches_reference(const AttendCase& c) {
  CliSandbox box;
  const int64_t b = c.batch > 0 ? c.batch : 1;
  const std::vector<float> q = random_rows(b * c.n_head_q * c.n_q * c.d_k, c.d_k, c.seed);
  const std::vector<float> k = random_rows(b * c.n_head_kv * c.n_kv * c.d_k, c.d_k, c.seed + 1);
  const std::vector<float> v = random_rows(b * c.n_head_kv * c.n_kv * c.d_v, c.d_v, c.seed + 2);
  box.write_npy("q.npy", with_batch(c, {c.n_head_q, c.n_q, c.d_k}), q);
  box.write_npy("k.npy", with_batch(c, {c.n_head_kv, c.n_kv, c.d_k}), k);
  box.write_npy("v.npy", with_batch(c, {c.n_head_kv, c.n_kv, c.d_v}), v);
  std::vector<std::string> args = {"attend", "--q", "q.npy", "--k", "k.npy", "--v", "v.npy",
                                   "--ktype", std::string(kv_traits(c.ktype).name),
                                   "--vtype", std::string(kv_traits(c.vtype).name), "--backend", "ref",
                                   "--out", "o.npy"};

  // The mask file's own extents [mb, mh, mq, n_kv] (1 = broadcast) and its values; -inf on about one key in six.
  std::vector<float> dense_mask;
  if (c.mask != MaskFile::none) {
    int64_t mb = 1, mh = 1, mq = c.n_q;
    std::vector<int64_t> file_shape = {c.n_q, c.n_kv};
    switch (c.mask) {
      case MaskFile::heads_rows_keys: mh = c.n_head_q; file_shape = {c.n_head_q, c.n_q, c.n_kv}; break;
      case MaskFile::batch_rows_keys: mb = b; file_shape = {b, c.n_q, c.n_kv}; break;
      case MaskFile::full_4d: mb = b; mh = c.n_head_q; file_shape = {b, c.n_head_q, c.n_q, c.n_kv}; break;
      case MaskFile::one_row: mq = 1; file_shape = {1, c.n_kv}; break;
      default: break;
    }
    std::vector<float> m = random_rows(mb * mh * mq * c.n_kv, c.n_kv, c.seed + 3);
    for (size_t i = 0; i < m.size(); ++i) {
      if (i % 6 == 1) m[i] = -std::numeric_limits<float>::infinity();
    }
    if (c.mask == MaskFile::f16_rows_keys) {
      std::vector<uint8_t> bytes;
      for (float& x : m) {
        const uint16_t h = fp32_to_fp16(x);
        x = fp16_to_fp32(h);  // the reference sees the f16 value
        bytes.push_back(static_cast<uint8_t>(h & 0xff));
        bytes.push_back(static_cast<uint8_t>(h >> 8));
      }
      const std::string shape = "(" + std::to_string(c.n_q) + ", " + std::to_string(c.n_kv) + ")";
      box.write("m.npy", testing::npy_image(1, testing::npy_dict("<f2", shape) + "\n", bytes));
    } else {
      box.write_npy("m.npy", file_shape, m);
    }
    dense_mask.resize(static_cast<size_t>(b * c.n_head_q * c.n_q * c.n_kv));
    for (int64_t s = 0; s < b; ++s)
      for (int64_t h = 0; h < c.n_head_q; ++h)
        for (int64_t i = 0; i < c.n_q; ++i)
          for (int64_t j = 0; j < c.n_kv; ++j) {
            const int64_t src = (((mb == 1 ? 0 : s) * mh + (mh == 1 ? 0 : h)) * mq + (mq == 1 ? 0 : i)) * c.n_kv + j;
            dense_mask[static_cast<size_t>(((s * c.n_head_q + h) * c.n_q + i) * c.n_kv + j)] = m[src];
          }
    args.insert(args.end(), {"--mask", "m.npy"});
  }
  std::vector<float> sinks;
  if (c.sinks) {
    sinks = random_rows(c.n_head_q, c.n_head_q, c.seed + 4);
    box.write_npy("s.npy", {c.n_head_q}, sinks);
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

  const CliResult r = box.run(args);
  ASSERT_EQ(r.signal, 0);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  auto o = io::read_npy_f32(box.path("o.npy"));
  ASSERT_TRUE(o.ok()) << o.status().message();
  EXPECT_EQ(o->shape, with_batch(c, {c.n_head_q, c.n_q, c.d_v}));

  // The same problem, in-process.
  const std::vector<uint8_t> kq = quantize_padded(c.ktype, k, c.d_k), vq = quantize_padded(c.vtype, v, c.d_v);
  const int64_t krb = head_row_bytes(c.ktype, c.d_k), vrb = head_row_bytes(c.vtype, c.d_v);
  std::vector<float> want(static_cast<size_t>(b * c.n_head_q * c.n_q * c.d_v),
                          std::numeric_limits<float>::quiet_NaN());
  AttentionProblem p;
  p.shape = {.n_seq = b, .n_q = c.n_q, .n_kv = c.n_kv, .n_head_q = c.n_head_q, .n_head_kv = c.n_head_kv,
             .d_k = c.d_k, .d_v = c.d_v};
  p.q = {q.data(), {c.n_head_q * c.n_q * c.d_k * 4, c.n_q * c.d_k * 4, c.d_k * 4}};
  p.k = {c.ktype, kq.data(), {c.n_head_kv * c.n_kv * krb, c.n_kv * krb, krb}, {}};
  p.v = {c.vtype, vq.data(), {c.n_head_kv * c.n_kv * vrb, c.n_kv * vrb, vrb}, {}};
  if (!dense_mask.empty()) {
    p.mask = {dense_mask.data(), MaskType::f32,
              {c.n_head_q * c.n_q * c.n_kv * 4, c.n_q * c.n_kv * 4, c.n_kv * 4}};
  }
  p.o = {want.data(), {c.n_head_q * c.n_q * c.d_v * 4, c.n_q * c.d_v * 4, c.d_v * 4}};
  p.options = {.scale = c.scale, .causal = c.causal, .window = c.window, .alibi_max_bias = c.alibi,
               .softcap = c.softcap, .sinks = sinks.empty() ? nullptr : sinks.data()};
  ASSERT_TRUE(validate(p).ok()) << validate(p).message();
  const Status s = attend_reference(p);
  ASSERT_TRUE(s.ok()) << s.message();
  ASSERT_EQ(o->values.size(), want.size());
  EXPECT_EQ(std::memcmp(o->values.data(), want.data(), want.size() * 4), 0) << "CLI output differs from the reference";
  for (float x : o->values) ASSERT_FALSE(std::isnan(x)) << "an output element was not written";
}

TEST(CliAttend, MatchesTheReferenceForF16) { expect_cli_matches_reference({}); }

TEST(CliAttend, MatchesTheReferenceForEveryTypeAsKAndAsV) {
  uint64_t seed = 10;
  for (const KvTraits& t : all_kv_types()) {
    SCOPED_TRACE(std::string(t.name));
    AttendCase k_side{.d_k = 128, .d_v = 128, .ktype = t.type, .vtype = KvType::q8_0, .seed = seed++};
    expect_cli_matches_reference(k_side);
    AttendCase v_side{.d_k = 128, .d_v = 128, .ktype = KvType::f16, .vtype = t.type, .seed = seed++};
    expect_cli_matches_reference(v_side);
  }
}

TEST(CliAttend, BatchAxisWithA4dMask) {
  expect_cli_matches_reference(
      {.batch = 3, .n_head_q = 4, .n_head_kv = 4, .n_q = 2, .n_kv = 17, .mask = MaskFile::full_4d, .seed = 21});
}

TEST(CliAttend, BatchAxisWithAPerSequenceMaskAndCausal) {
  expect_cli_matches_reference({.batch = 2, .n_q = 5, .n_kv = 23, .ktype = KvType::q4_0, .vtype = KvType::q4_1,
                                .mask = MaskFile::batch_rows_keys, .causal = true, .seed = 22});
}

TEST(CliAttend, DkDiffersFromDv) {
  expect_cli_matches_reference({.n_head_q = 2, .n_head_kv = 1, .n_q = 4, .n_kv = 33, .d_k = 192, .d_v = 128,
                                .ktype = KvType::q8_0, .vtype = KvType::q5_0, .seed = 23});
}

TEST(CliAttend, GqaRatioThree) {
  expect_cli_matches_reference({.n_head_q = 6, .n_head_kv = 2, .n_q = 3, .n_kv = 29, .d_k = 96, .d_v = 96,
                                .ktype = KvType::q5_1, .vtype = KvType::bf16, .seed = 24});
}

TEST(CliAttend, OddQueryRowCountsWithCausalAndWindow) {
  for (int64_t n_q : {1, 5, 7, 9}) {
    SCOPED_TRACE(n_q);
    expect_cli_matches_reference({.n_q = n_q, .n_kv = 31, .ktype = KvType::q4_0, .vtype = KvType::q8_0,
                                  .causal = true, .window = 11, .seed = static_cast<uint64_t>(30 + n_q)});
  }
}

TEST(CliAttend, TurboWithHeadDim96IsZeroPadded) {
  expect_cli_matches_reference({.n_head_q = 3, .n_head_kv = 1, .n_q = 2, .n_kv = 19, .d_k = 96, .d_v = 96,
                                .ktype = KvType::turbo3, .vtype = KvType::turbo4, .seed = 40});
  expect_cli_matches_reference({.n_q = 1, .n_kv = 12, .d_k = 96, .d_v = 64, .ktype = KvType::turbo2,
                                .vtype = KvType::turbo3, .mask = MaskFile::rows_keys, .seed = 41});
}

TEST(CliAttend, EveryOptionTogether) {
  expect_cli_matches_reference({.n_head_q = 8, .n_head_kv = 2, .n_q = 4, .n_kv = 37, .d_k = 64, .d_v = 32,
                                .ktype = KvType::q8_0, .vtype = KvType::q4_0, .mask = MaskFile::heads_rows_keys,
                                .causal = true, .sinks = true, .scale = 0.3, .softcap = 20.0, .alibi = 8.0,
                                .window = 25, .seed = 50});
}

TEST(CliAttend, MaskShapesThatBroadcast) {
  expect_cli_matches_reference({.n_q = 3, .n_kv = 16, .mask = MaskFile::one_row, .seed = 60});
  expect_cli_matches_reference({.n_q = 3, .n_kv = 16, .mask = MaskFile::f16_rows_keys, .seed = 61});
  expect_cli_matches_reference({.batch = 2, .n_q = 3, .n_kv = 16, .mask = MaskFile::rows_keys, .seed = 62});
}

TEST(CliAttend, DefaultTypesAreF16) {
  CliSandbox box;
  box.write_npy("q.npy", {2, 1, 32}, random_rows(64, 32, 70));
  box.write_npy("k.npy", {1, 9, 32}, random_rows(288, 32, 71));
  box.write_npy("v.npy", {1, 9, 32}, random_rows(288, 32, 72));
  const CliResult a = box.run({"attend", "--q", "q.npy", "--k", "k.npy", "--v", "v.npy", "--out", "a.npy"});
  const CliResult b = box.run({"attend", "--q", "q.npy", "--k", "k.npy", "--v", "v.npy", "--ktype", "f16",
                               "--vtype", "f16", "--out", "b.npy"});
  ASSERT_EQ(a.exit_code, 0) << a.err;
  ASSERT_EQ(b.exit_code, 0) << b.err;
  EXPECT_EQ(box.read("a.npy"), box.read("b.npy"));
}

}  // namespace
}  // namespace kvflash
