// `kvflash quantize` and `kvflash dequantize` against the library: the bytes the CLI writes are quantize_row's
// bytes (of float64 input rounded to float32), and what dequantize writes is dequantize_row's values, for every type.
#include <gtest/gtest.h>

#include <cstring>

#include "cli/cli_runner.h"
#include "cli/random_arrays.h"
#include "io/npy.h"
#include "kvflash/quantize.h"

namespace kvflash {
namespace {

using testing::CliResult;
using testing::CliSandbox;
using testing::random_rows;

// Row lengths per type: two blocks for the block types, an odd length for the plain floats.
int64_t row_length(const KvTraits& t) { return t.block_elems == 1 ? 40 : 2 * t.block_elems; }

std::vector<uint8_t> library_quantize(KvType type, const std::vector<float>& x, int64_t n) {
  const int64_t rows = static_cast<int64_t>(x.size()) / n, rb = row_bytes(type, n);
  std::vector<uint8_t> out(static_cast<size_t>(rows * rb));
  for (int64_t r = 0; r < rows; ++r) EXPECT_TRUE(quantize_row(type, x.data() + r * n, n, out.data() + r * rb).ok());
  return out;
}

std::vector<float> library_dequantize(KvType type, const std::vector<uint8_t>& q, int64_t n, bool rotated) {
  const int64_t rb = row_bytes(type, n), rows = static_cast<int64_t>(q.size()) / rb;
  std::vector<float> out(static_cast<size_t>(rows * n));
  for (int64_t r = 0; r < rows; ++r) {
    EXPECT_TRUE(dequantize_row(type, q.data() + r * rb, n, out.data() + r * n, rotated).ok());
  }
  return out;
}

void expect_success(const CliResult& r) {
  EXPECT_EQ(r.signal, 0);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "");
}

TEST(CliQuantize, BytesAreQuantizeRowBytesForEveryType) {
  uint64_t seed = 100;
  for (const KvTraits& t : all_kv_types()) {
    SCOPED_TRACE(std::string(t.name));
    CliSandbox box;
    const int64_t n = row_length(t);
    const std::vector<int64_t> shape = {3, 2, n};
    const std::vector<float> x = random_rows(6 * n, n, seed++);
    box.write_npy("x.npy", shape, x);
    expect_success(box.run({"quantize", "--type", std::string(t.name), "x.npy", "x.bin"}));
    const std::vector<uint8_t> got = box.read("x.bin");
    const std::vector<uint8_t> want = library_quantize(t.type, x, n);
    ASSERT_EQ(got.size(), static_cast<size_t>(6 * row_bytes(t.type, n)));
    EXPECT_EQ(got, want);
  }
}

TEST(CliQuantize, Float64InputIsRoundedToFloat32First) {
  // The quantizers take float32: a float64 file gives the bytes of its values rounded to the nearest float32.
  uint64_t seed = 150;
  for (const KvTraits& t : all_kv_types()) {
    SCOPED_TRACE(std::string(t.name));
    CliSandbox box;
    const int64_t n = row_length(t);
    const std::vector<double> x = testing::random_rows_f64(4 * n, n, seed++);
    box.write_npy_f64("x.npy", {4, n}, x);
    expect_success(box.run({"quantize", "--type", std::string(t.name), "x.npy", "x.bin"}));
    EXPECT_EQ(box.read("x.bin"), library_quantize(t.type, testing::rounded_to_f32(x), n));
  }
}

TEST(CliQuantize, DequantizeInvertsQuantizeAsDequantizeRowDoes) {
  uint64_t seed = 200;
  for (const KvTraits& t : all_kv_types()) {
    SCOPED_TRACE(std::string(t.name));
    CliSandbox box;
    const int64_t n = row_length(t);
    const std::vector<int64_t> shape = {5, n};
    const std::vector<float> x = random_rows(5 * n, n, seed++);
    box.write_npy("x.npy", shape, x);
    expect_success(box.run({"quantize", "--type", std::string(t.name), "x.npy", "x.bin"}));
    expect_success(box.run({"dequantize", "--type", std::string(t.name), "--shape", "5," + std::to_string(n),
                            "x.bin", "y.npy"}));
    auto y = io::read_npy_f32(box.path("y.npy"));
    ASSERT_TRUE(y.ok()) << y.status().message();
    EXPECT_EQ(y->shape, shape);
    const std::vector<float> want = library_dequantize(t.type, box.read("x.bin"), n, false);
    ASSERT_EQ(y->values.size(), want.size());
    EXPECT_EQ(std::memcmp(y->values.data(), want.data(), want.size() * 4), 0);
    // A round trip approximates the input: turbo2, the coarsest type, stays well under 0.25 relative MSE.
    EXPECT_LT(testing::relative_mse(y->values, x), 0.25);
  }
}

TEST(CliQuantize, RotatedGivesTheStoredTurboValues) {
  for (KvType type : {KvType::turbo2, KvType::turbo3, KvType::turbo4}) {
    const std::string name(kv_traits(type).name);
    SCOPED_TRACE(name);
    CliSandbox box;
    const std::vector<float> x = random_rows(2 * 256, 256, 7);
    box.write_npy("x.npy", {2, 256}, x);
    expect_success(box.run({"quantize", "--type", name, "x.npy", "x.bin"}));
    expect_success(box.run({"dequantize", "--type", name, "--shape", "2,256", "--rotated", "x.bin", "r.npy"}));
    expect_success(box.run({"dequantize", "--type", name, "--shape", "2,256", "x.bin", "o.npy"}));
    auto rotated = io::read_npy_f32(box.path("r.npy"));
    auto original = io::read_npy_f32(box.path("o.npy"));
    ASSERT_TRUE(rotated.ok() && original.ok());
    const std::vector<float> want = library_dequantize(type, box.read("x.bin"), 256, true);
    EXPECT_EQ(std::memcmp(rotated->values.data(), want.data(), want.size() * 4), 0);
    EXPECT_NE(rotated->values, original->values) << "the rotated domain differs from the original one";
  }
}

TEST(CliQuantize, KeepsAnyLeadingShapeAndRelativePaths) {
  CliSandbox box;
  const std::vector<float> x = random_rows(2 * 3 * 1 * 64, 64, 9);
  box.write_npy("x.npy", {2, 3, 1, 64}, x);
  expect_success(box.run({"quantize", "--type=q5_1", "x.npy", "x.bin"}));
  expect_success(box.run({"dequantize", "--type", "q5_1", "--shape", "2,3,1,64", "x.bin", "y.npy"}));
  auto y = io::read_npy_f32(box.path("y.npy"));
  ASSERT_TRUE(y.ok());
  EXPECT_EQ(y->shape, (std::vector<int64_t>{2, 3, 1, 64}));
  EXPECT_EQ(box.entries(), (std::set<std::string>{"x.npy", "x.bin", "y.npy"})) << "no temporary file is left";
}

TEST(CliQuantize, EmptyArraysGiveEmptyFilesAndBack) {
  CliSandbox box;
  box.write_npy("e.npy", {0, 32}, {});
  expect_success(box.run({"quantize", "--type", "q8_0", "e.npy", "e.bin"}));
  EXPECT_TRUE(box.read("e.bin").empty());
  expect_success(box.run({"dequantize", "--type", "q8_0", "--shape", "0,32", "e.bin", "e2.npy"}));
  auto y = io::read_npy_f32(box.path("e2.npy"));
  ASSERT_TRUE(y.ok());
  EXPECT_EQ(y->shape, (std::vector<int64_t>{0, 32}));
}

TEST(CliQuantize, HelpDescribesTheCommandAndExitsZero) {
  CliSandbox box;
  for (const char* cmd : {"quantize", "dequantize", "attend", "info"}) {
    const CliResult r = box.run({cmd, "--help"});
    EXPECT_EQ(r.exit_code, 0) << cmd;
    EXPECT_NE(r.out.find(std::string("usage: kvflash ") + cmd), std::string::npos) << r.out;
    EXPECT_EQ(r.err, "");
  }
}

TEST(CliInfo, ListsVersionBackendsAndCpuFeatures) {
  CliSandbox box;
  const CliResult r = box.run({"info"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  for (const char* needle : {"kvflash ", "backends:", "ref", "cpu", "cuda", "avx2", "f16c", "avx512f",
                             "avx512bf16", "cuda devices:"}) {
    EXPECT_NE(r.out.find(needle), std::string::npos) << needle << " missing from:\n" << r.out;
  }
}

}  // namespace
}  // namespace kvflash
