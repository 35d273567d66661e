// Every error of the CLI contract: exit status 1..125 (never a signal), exactly one line on stderr that names the
// problem, and the working folder exactly as it was (no output file, no temporary file).
#include <gtest/gtest.h>

#include "cli/cli_runner.h"
#include "cli/random_arrays.h"
#include "io/npy.h"
#include "io/npy_test_files.h"
#include "kvflash/backend.h"

namespace kvflash {
namespace {

using testing::CliResult;
using testing::CliSandbox;
using testing::npy_dict;
using testing::npy_image;
using testing::random_rows;

// Runs `args`, which must fail cleanly with a message holding every needle.
void expect_clean_failure(const CliSandbox& box, const std::vector<std::string>& args,
                          const std::vector<std::string>& needles) {
  std::string command_line = "kvflash";
  for (const std::string& a : args) command_line += " " + a;
  SCOPED_TRACE(command_line);
  const std::set<std::string> before = box.entries();
  const CliResult r = box.run(args);
  EXPECT_EQ(r.signal, 0) << "killed by a signal";
  EXPECT_GE(r.exit_code, 1);
  EXPECT_LE(r.exit_code, 125);
  EXPECT_EQ(r.stderr_lines(), 1) << r.err;
  EXPECT_FALSE(r.err.empty() || r.err.back() != '\n') << "stderr is one terminated line: " << r.err;
  EXPECT_EQ(r.err.rfind("kvflash " + args[0] + ": error: ", 0), 0u) << r.err;
  for (const std::string& n : needles) EXPECT_NE(r.err.find(n), std::string::npos) << "'" << n << "' not in: " << r.err;
  EXPECT_EQ(box.entries(), before) << "the command left a file behind";
}

class CliErrors : public ::testing::Test {
 protected:
  void SetUp() override {
    box.write_npy("x.npy", {4, 64}, random_rows(256, 64, 1));
    box.write_npy("x100.npy", {4, 100}, random_rows(400, 100, 2));
    box.write_npy("q.npy", {6, 3, 64}, random_rows(6 * 3 * 64, 64, 3));
    box.write_npy("k.npy", {2, 10, 64}, random_rows(2 * 10 * 64, 64, 4));
    box.write_npy("v.npy", {2, 10, 32}, random_rows(2 * 10 * 32, 32, 5));
  }
  std::vector<std::string> attend(std::vector<std::string> extra) const {
    std::vector<std::string> a = {"attend", "--q", "q.npy", "--k", "k.npy", "--v", "v.npy", "--out", "o.npy"};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }
  CliSandbox box;
};

TEST_F(CliErrors, AMissingFile) {
  expect_clean_failure(box, {"quantize", "--type", "q8_0", "nope.npy", "x.bin"}, {"nope.npy", "No such file"});
  expect_clean_failure(box, {"dequantize", "--type", "q8_0", "--shape", "4,64", "nope.bin", "y.npy"},
                       {"nope.bin", "No such file"});
  expect_clean_failure(box, attend({"--mask", "nope.npy"}), {"nope.npy", "No such file"});
}

TEST_F(CliErrors, ATruncatedNpy) {
  const std::vector<uint8_t> full = box.read("x.npy");
  box.write("cut.npy", std::span<const uint8_t>(full.data(), full.size() - 7));
  expect_clean_failure(box, {"quantize", "--type", "q8_0", "cut.npy", "x.bin"},
                       {"cut.npy", "holds 1017 bytes of data, shape [4, 64]", "needs 1024"});
  box.write("cut_header.npy", std::span<const uint8_t>(full.data(), 40));
  expect_clean_failure(box, {"quantize", "--type", "q8_0", "cut_header.npy", "x.bin"},
                       {"cut_header.npy", "header length", "runs past the end"});
  box.write("tiny.npy", std::span<const uint8_t>(full.data(), 5));
  expect_clean_failure(box, {"quantize", "--type", "q8_0", "tiny.npy", "x.bin"}, {"tiny.npy", "truncated"});
}

TEST_F(CliErrors, ALyingNpyHeader) {
  box.write("lies.npy", npy_image(1, npy_dict("<f4", "(1000, 64)") + "\n", testing::random_f32_bytes(256, 6)));
  expect_clean_failure(box, {"quantize", "--type", "q4_0", "lies.npy", "x.bin"},
                       {"lies.npy", "holds 1024 bytes of data, shape [1000, 64]", "needs 256000"});
  box.write("huge.npy", npy_image(1, npy_dict("<f4", "(4611686018427387904, 8)") + "\n", {}));
  expect_clean_failure(box, {"quantize", "--type", "q4_0", "huge.npy", "x.bin"}, {"huge.npy", "too large"});
  box.write("garbage.npy", npy_image(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4, 64), 'x': 1}\n",
                                     testing::random_f32_bytes(256, 6)));
  expect_clean_failure(box, {"quantize", "--type", "q4_0", "garbage.npy", "x.bin"},
                       {"garbage.npy", "malformed .npy header", "unknown key 'x'"});
  box.write("text.npy", std::vector<uint8_t>{'h', 'e', 'l', 'l', 'o', '\n'});
  expect_clean_failure(box, attend({"--sinks", "text.npy"}), {"text.npy", "not a .npy file"});
  box.write("fortran.npy", npy_image(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (4, 64), }\n",
                                     testing::random_f32_bytes(256, 6)));
  expect_clean_failure(box, {"quantize", "--type", "q4_0", "fortran.npy", "x.bin"}, {"fortran.npy", "C-order"});
}

TEST_F(CliErrors, AWrongDtype) {
  box.write("i32.npy", npy_image(1, npy_dict("<i4", "(4, 64)") + "\n", std::vector<uint8_t>(1024, 0x3f)));
  expect_clean_failure(box, {"quantize", "--type", "q8_0", "i32.npy", "x.bin"}, {"i32.npy", "'<i4'", "not supported"});
  box.write("big_endian.npy", npy_image(1, npy_dict(">f8", "(4, 64)") + "\n", std::vector<uint8_t>(2048, 0x3f)));
  expect_clean_failure(box, attend({"--sinks", "big_endian.npy"}), {"big_endian.npy", "'>f8'", "not supported"});
  box.write("f16.npy", npy_image(1, npy_dict("<f2", "(6, 3, 64)") + "\n", std::vector<uint8_t>(6 * 3 * 64 * 2, 0)));
  expect_clean_failure(box, {"attend", "--q", "f16.npy", "--k", "k.npy", "--v", "v.npy", "--out", "o.npy"},
                       {"f16.npy", "'<f2'", "float32"});
  box.write("u8.npy", npy_image(1, npy_dict("|u1", "(3, 10)") + "\n", std::vector<uint8_t>(30, 0)));
  expect_clean_failure(box, attend({"--mask", "u8.npy"}), {"u8.npy", "'|u1'", "float32"});
  expect_clean_failure(box, {"quantize", "--type", "q8_0", "u8.npy", "x.bin"}, {"u8.npy", "'|u1'", "float64"});
  expect_clean_failure(box, attend({"--sinks", "u8.npy"}), {"u8.npy", "'|u1'", "float32", "float64"});
  expect_clean_failure(box, {"attend", "--q", "q.npy", "--k", "f16.npy", "--v", "v.npy", "--out", "o.npy"},
                       {"f16.npy", "'<f2'", "float64"});
}

TEST_F(CliErrors, AnUnknownOutputDtype) {
  expect_clean_failure(box, attend({"--out-dtype", "f16"}), {"unknown --out-dtype 'f16'", "f32, f64"});
  expect_clean_failure(box, attend({"--out-dtype", "float64"}), {"unknown --out-dtype 'float64'"});
}

TEST_F(CliErrors, AnUnknownTypeListsTheValidOnes) {
  expect_clean_failure(box, {"quantize", "--type", "q3_k", "x.npy", "x.bin"},
                       {"unknown type 'q3_k'", "q4_0", "turbo3", "f16"});
  expect_clean_failure(box, {"dequantize", "--type", "Q8_0", "--shape", "4,64", "x.npy", "y.npy"},
                       {"unknown type 'Q8_0'", "q8_0"});
  expect_clean_failure(box, attend({"--ktype", "q8"}), {"unknown type 'q8' for --ktype", "q8_0"});
  expect_clean_failure(box, attend({"--vtype", "turbo5"}), {"unknown type 'turbo5' for --vtype"});
}

TEST_F(CliErrors, ARowThatIsNotAMultipleOfTheBlockSize) {
  expect_clean_failure(box, {"quantize", "--type", "q4_0", "x100.npy", "x.bin"},
                       {"x100.npy", "last dimension 100", "not a multiple of q4_0's block size 32"});
  expect_clean_failure(box, {"quantize", "--type", "turbo3", "x.npy", "x.bin"},
                       {"last dimension 64", "turbo3's block size 128"});
  box.write("r.bin", std::vector<uint8_t>(4 * 100, 1));
  expect_clean_failure(box, {"dequantize", "--type", "q5_0", "--shape", "4,100", "r.bin", "y.npy"},
                       {"--shape [4, 100]", "last dimension 100", "q5_0's block size 32"});
  box.write_npy("k80.npy", {2, 10, 80}, random_rows(2 * 10 * 80, 80, 8));
  box.write_npy("q80.npy", {6, 3, 80}, random_rows(6 * 3 * 80, 80, 9));
  expect_clean_failure(box, {"attend", "--q", "q80.npy", "--k", "k80.npy", "--v", "v.npy", "--ktype", "q8_0",
                             "--out", "o.npy"},
                       {"d_k = 80", "k80.npy", "not a multiple of --ktype q8_0's block size 32"});
  box.write_npy("v20.npy", {2, 10, 20}, random_rows(2 * 10 * 20, 20, 10));
  expect_clean_failure(box, {"attend", "--q", "q.npy", "--k", "k.npy", "--v", "v20.npy", "--vtype", "q4_1",
                             "--out", "o.npy"},
                       {"d_v = 20", "--vtype q4_1's block size 32"});
}

TEST_F(CliErrors, HeadsThatDoNotDivide) {
  box.write_npy("k4.npy", {4, 10, 64}, random_rows(4 * 10 * 64, 64, 11));
  box.write_npy("v4.npy", {4, 10, 32}, random_rows(4 * 10 * 32, 32, 12));
  expect_clean_failure(box, {"attend", "--q", "q.npy", "--k", "k4.npy", "--v", "v4.npy", "--out", "o.npy"},
                       {"heads do not divide", "n_head_q = 6", "n_head_kv = 4"});
}

TEST_F(CliErrors, AByteCountThatDoesNotMatchTheShape) {
  box.write("x.bin", std::vector<uint8_t>(100, 7));
  expect_clean_failure(box, {"dequantize", "--type", "q8_0", "--shape", "4,64", "x.bin", "y.npy"},
                       {"'x.bin' holds 100 bytes", "--shape [4, 64] of q8_0 needs 272", "4 rows of 68 bytes"});
  expect_clean_failure(box, {"dequantize", "--type", "f32", "--shape", "4,64", "x.bin", "y.npy"},
                       {"holds 100 bytes", "needs 1024"});
  expect_clean_failure(box, {"dequantize", "--type", "q8_0", "--shape", "4611686018427387904,4611686018427387904,32",
                             "x.bin", "y.npy"},
                       {"too large"});
}

TEST_F(CliErrors, ABadShapeFlag) {
  box.write("x.bin", std::vector<uint8_t>(272, 7));
  expect_clean_failure(box, {"dequantize", "--type", "q8_0", "--shape", "4,x", "x.bin", "y.npy"},
                       {"--shape '4,x'", "'x' is not a non-negative integer"});
  expect_clean_failure(box, {"dequantize", "--type", "q8_0", "--shape", "4,-64", "x.bin", "y.npy"},
                       {"'-64' is not a non-negative integer"});
  expect_clean_failure(box, {"dequantize", "--type", "q8_0", "--shape", "", "x.bin", "y.npy"}, {"--shape"});
  expect_clean_failure(box, {"dequantize", "--type", "q8_0", "x.bin", "y.npy"}, {"--shape is required"});
}

TEST_F(CliErrors, MismatchedShapesBetweenQKVMaskAndSinks) {
  box.write_npy("k_dk.npy", {2, 10, 32}, random_rows(640, 32, 13));
  expect_clean_failure(box, {"attend", "--q", "q.npy", "--k", "k_dk.npy", "--v", "v.npy", "--out", "o.npy"},
                       {"--k 'k_dk.npy' axis 2 (d_k) is 32, expected 64", "q.npy"});
  box.write_npy("v_kv.npy", {2, 11, 32}, random_rows(2 * 11 * 32, 32, 14));
  expect_clean_failure(box, {"attend", "--q", "q.npy", "--k", "k.npy", "--v", "v_kv.npy", "--out", "o.npy"},
                       {"--v 'v_kv.npy' axis 1 (n_kv) is 11, expected 10"});
  box.write_npy("v_h.npy", {3, 10, 32}, random_rows(3 * 10 * 32, 32, 15));
  expect_clean_failure(box, {"attend", "--q", "q.npy", "--k", "k.npy", "--v", "v_h.npy", "--out", "o.npy"},
                       {"--v 'v_h.npy' axis 0 (n_head_kv) is 3, expected 2"});
  box.write_npy("q4d.npy", {1, 6, 3, 64}, random_rows(6 * 3 * 64, 64, 16));
  expect_clean_failure(box, {"attend", "--q", "q4d.npy", "--k", "k.npy", "--v", "v.npy", "--out", "o.npy"},
                       {"has 3 dimensions but --q 'q4d.npy' has 4", "batch"});
  box.write_npy("k4d.npy", {2, 2, 10, 64}, random_rows(2 * 2 * 10 * 64, 64, 17));
  box.write_npy("v4d.npy", {2, 2, 10, 32}, random_rows(2 * 2 * 10 * 32, 32, 18));
  expect_clean_failure(box, {"attend", "--q", "q4d.npy", "--k", "k4d.npy", "--v", "v4d.npy", "--out", "o.npy"},
                       {"--k 'k4d.npy' axis 0 (batch) is 2, expected 1"});
  box.write_npy("q2d.npy", {3, 64}, random_rows(3 * 64, 64, 19));
  expect_clean_failure(box, {"attend", "--q", "q2d.npy", "--k", "k.npy", "--v", "v.npy", "--out", "o.npy"},
                       {"q2d.npy", "[3, 64]", "[n_head_q, n_q, d_k]"});
  box.write_npy("m_kv.npy", {3, 9}, random_rows(27, 9, 20));
  expect_clean_failure(box, attend({"--mask", "m_kv.npy"}), {"--mask 'm_kv.npy' axis 1 (n_kv) is 9, expected 10"});
  box.write_npy("m_q.npy", {4, 10}, random_rows(40, 10, 21));
  expect_clean_failure(box, attend({"--mask", "m_q.npy"}), {"--mask 'm_q.npy' axis 0 (n_q) is 4, expected 3"});
  box.write_npy("m_h.npy", {4, 3, 10}, random_rows(120, 10, 22));
  expect_clean_failure(box, attend({"--mask", "m_h.npy"}), {"axis 0 (n_head_q) is 4, expected 6"});
  box.write_npy("m_1d.npy", {10}, random_rows(10, 10, 23));
  expect_clean_failure(box, attend({"--mask", "m_1d.npy"}), {"m_1d.npy", "[10]", "a mask is"});
  box.write_npy("s.npy", {4}, random_rows(4, 4, 24));
  expect_clean_failure(box, attend({"--sinks", "s.npy"}), {"--sinks 's.npy' has shape [4]", "[n_head_q] = [6]"});
  box.write_npy("q0.npy", {0, 3, 64}, {});
  expect_clean_failure(box, {"attend", "--q", "q0.npy", "--k", "k.npy", "--v", "v.npy", "--out", "o.npy"},
                       {"axis 0 (n_head_q) is 0"});
}

TEST_F(CliErrors, BadOptionValues) {
  expect_clean_failure(box, attend({"--window", "-3"}), {"--window -3 must be >= 0"});
  expect_clean_failure(box, attend({"--softcap", "-1"}), {"--softcap -1 must be >= 0"});
  expect_clean_failure(box, attend({"--alibi", "-0.5"}), {"--alibi -0.5 must be >= 0"});
  expect_clean_failure(box, attend({"--scale", "abc"}), {"--scale = 'abc' is not a finite number"});
  expect_clean_failure(box, attend({"--scale", "inf"}), {"--scale"});
  expect_clean_failure(box, attend({"--window", "1.5"}), {"--window = '1.5' is not an integer"});
}

TEST_F(CliErrors, BackendsThatAreMissingOrUnknown) {
  expect_clean_failure(box, attend({"--backend", "gpu"}), {"unknown backend 'gpu'", "ref, cpu, cuda"});
  for (const char* b : {"cpu", "cuda"}) {
    if (backend_available(*backend_from_name(b))) continue;
    expect_clean_failure(box, attend({"--backend", b}),
                         {"backend '" + std::string(b) + "' is not available in this build"});
  }
}

TEST_F(CliErrors, UsageErrors) {
  expect_clean_failure(box, {"quantize", "--type", "q8_0", "x.npy"}, {"expected IN.npy and OUT.bin"});
  expect_clean_failure(box, {"quantize", "x.npy", "x.bin"}, {"--type is required"});
  expect_clean_failure(box, {"quantize", "--tpye", "q8_0", "x.npy", "x.bin"}, {"unknown flag '--tpye'"});
  expect_clean_failure(box, {"quantize", "x.npy", "x.bin", "--type"}, {"--type needs a value"});
  expect_clean_failure(box, {"attend", "--q", "q.npy", "--k", "k.npy", "--v", "v.npy"}, {"--out is required"});
  expect_clean_failure(box, attend({"extra.npy"}), {"unexpected operand 'extra.npy'"});
  expect_clean_failure(box, {"info", "--verbose"}, {"unknown flag '--verbose'"});
}

TEST_F(CliErrors, NoCommandOrAnUnknownCommand) {
  for (const std::vector<std::string>& args : {std::vector<std::string>{}, std::vector<std::string>{"quantise"}}) {
    const CliResult r = box.run(args);
    EXPECT_EQ(r.signal, 0);
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_EQ(r.stderr_lines(), 1) << r.err;
    EXPECT_EQ(r.err.rfind("kvflash: error: ", 0), 0u) << r.err;
  }
}

TEST_F(CliErrors, AnUnwritableOutputLeavesNothing) {
  expect_clean_failure(box, {"quantize", "--type", "q8_0", "x.npy", "no_such_dir/x.bin"},
                       {"no_such_dir/x.bin", "No such file"});
}

TEST_F(CliErrors, AFailedCommandKeepsAnExistingOutputUntouched) {
  box.write("keep.bin", std::vector<uint8_t>{1, 2, 3});
  expect_clean_failure(box, {"quantize", "--type", "q4_0", "x100.npy", "keep.bin"}, {"not a multiple"});
  EXPECT_EQ(box.read("keep.bin"), (std::vector<uint8_t>{1, 2, 3}));
}

TEST_F(CliErrors, ScalarsAndEmptyRowsCannotBeQuantized) {
  box.write_npy("scalar.npy", {}, {1.0f});
  expect_clean_failure(box, {"quantize", "--type", "f16", "scalar.npy", "x.bin"}, {"scalar.npy", "0-d"});
  box.write_npy("norows.npy", {4, 0}, {});
  expect_clean_failure(box, {"quantize", "--type", "f16", "norows.npy", "x.bin"}, {"norows.npy", "row length) is 0"});
}

}  // namespace
}  // namespace kvflash
