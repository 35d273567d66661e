// The .npy reader and writer: round trips, files as numpy writes them, and one test per malformed-file rule.
#include "io/npy.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include "io/npy_test_files.h"

namespace kvflash::io {
namespace {

using kvflash::testing::npy_dict;
using kvflash::testing::npy_image;
using kvflash::testing::random_f32_bytes;

std::span<const uint8_t> bytes_of(const std::vector<uint8_t>& v) { return {v.data(), v.size()}; }

// Expects parse_npy to reject `file` with a format_error whose message contains `needle`.
void expect_rejected(const std::vector<uint8_t>& file, const std::string& needle) {
  auto h = parse_npy(bytes_of(file), "x.npy");
  ASSERT_FALSE(h.ok()) << "accepted a file that should fail with: " << needle;
  EXPECT_EQ(h.status().code(), StatusCode::format_error);
  EXPECT_NE(h.status().message().find(needle), std::string::npos) << h.status().message();
  EXPECT_NE(h.status().message().find("'x.npy'"), std::string::npos) << "message names the file";
  EXPECT_EQ(h.status().message().find('\n'), std::string::npos) << "message is one line";
}

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "kvflash_npy_XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

std::vector<float> random_values(int64_t n, uint64_t seed) {
  const std::vector<uint8_t> b = random_f32_bytes(n, seed);
  std::vector<float> v(static_cast<size_t>(n));
  if (n > 0) std::memcpy(v.data(), b.data(), b.size());
  return v;
}

TEST(Npy, RoundTripKeepsShapeAndEveryBit) {
  const std::vector<std::vector<int64_t>> shapes = {{}, {0}, {7}, {3, 5}, {2, 3, 5}, {1, 4, 1, 9}, {4, 0, 3}};
  TempDir dir;
  uint64_t seed = 11;
  for (const auto& shape : shapes) {
    std::vector<float> values = random_values(checked_product(shape), seed++);
    if (values.size() > 2) {
      values[0] = -std::numeric_limits<float>::infinity();
      values[1] = std::numeric_limits<float>::quiet_NaN();
    }
    auto file = encode_npy_f32(shape, values);
    ASSERT_TRUE(file.ok()) << file.status().message();
    auto header = parse_npy(bytes_of(*file), "a.npy");
    ASSERT_TRUE(header.ok()) << header.status().message();
    EXPECT_EQ(header->version_major, 1);
    EXPECT_EQ(header->data_offset % 64, 0) << "data aligned as numpy aligns it";
    EXPECT_EQ((*file)[header->data_offset - 1], '\n') << "the header ends with a newline";
    EXPECT_EQ(header->shape, shape);

    const std::string path = dir.file("a.npy");
    write_bytes(path, *file);
    auto back = read_npy_f32(path);
    ASSERT_TRUE(back.ok()) << back.status().message();
    EXPECT_EQ(back->shape, shape);
    ASSERT_EQ(back->values.size(), values.size());
    if (!values.empty()) {
      EXPECT_EQ(std::memcmp(back->values.data(), values.data(), values.size() * 4), 0);
    }
  }
}

TEST(Npy, WritesTheHeaderNumpyWrites) {
  const std::vector<float> values(12, 1.5f);
  const std::vector<int64_t> shape = {3, 4};
  auto file = encode_npy_f32(shape, values);
  ASSERT_TRUE(file.ok());
  const std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }";
  ASSERT_GE(file->size(), 128u + 48u);
  EXPECT_EQ(std::string(file->begin() + 10, file->begin() + 10 + static_cast<int64_t>(dict.size())), dict);
  EXPECT_EQ((*file)[8] | ((*file)[9] << 8), 118) << "10 + 118 = 128, the next multiple of 64";
  EXPECT_EQ(file->size(), 128u + 48u);

  auto one_d = encode_npy_f32(std::vector<int64_t>{2}, std::vector<float>{1, 2});
  ASSERT_TRUE(one_d.ok());
  const std::string text(one_d->begin(), one_d->end());
  EXPECT_NE(text.find("'shape': (2,), }"), std::string::npos) << "a 1-d shape is written as a tuple";
}

TEST(Npy, EncodeRejectsAValueCountThatIsNotTheShape) {
  auto bad = encode_npy_f32(std::vector<int64_t>{3, 4}, std::vector<float>(11, 0.5f));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("12"), std::string::npos);
}

TEST(Npy, ReadsVersions2And3AndTheOtherDtypes) {
  const std::vector<uint8_t> data = random_f32_bytes(6, 3);
  for (int major : {1, 2, 3}) {
    auto file = npy_image(major, npy_dict("<f4", "(2, 3)") + "   \n", data);
    auto h = parse_npy(bytes_of(file), "v.npy");
    ASSERT_TRUE(h.ok()) << "version " << major << ": " << h.status().message();
    EXPECT_EQ(h->version_major, major);
    EXPECT_EQ(h->shape, (std::vector<int64_t>{2, 3}));
    EXPECT_EQ(h->data_bytes, 24);
  }
  auto f16 = parse_npy(bytes_of(npy_image(1, npy_dict("<f2", "(5,)"), std::vector<uint8_t>(10, 7))), "h.npy");
  ASSERT_TRUE(f16.ok()) << f16.status().message();
  EXPECT_EQ(f16->dtype, NpyDtype::f16);
  auto u8 = parse_npy(bytes_of(npy_image(1, npy_dict("|u1", "(5,)"), std::vector<uint8_t>(5, 7))), "u.npy");
  ASSERT_TRUE(u8.ok()) << u8.status().message();
  EXPECT_EQ(u8->dtype, NpyDtype::u8);
}

TEST(Npy, AcceptsKeysInAnyOrderDoubleQuotesAndNoTrailingComma) {
  const std::vector<uint8_t> data = random_f32_bytes(4, 5);
  auto file = npy_image(1, "{\"shape\": (4,), \"fortran_order\": False, \"descr\": \"<f4\"}\n", data);
  auto h = parse_npy(bytes_of(file), "k.npy");
  ASSERT_TRUE(h.ok()) << h.status().message();
  EXPECT_EQ(h->shape, (std::vector<int64_t>{4}));
}

TEST(Npy, ZeroDimensionalAndEmptyArraysAreValid) {
  auto scalar = parse_npy(bytes_of(npy_image(1, npy_dict("<f4", "()"), random_f32_bytes(1, 1))), "s.npy");
  ASSERT_TRUE(scalar.ok()) << scalar.status().message();
  EXPECT_TRUE(scalar->shape.empty());
  EXPECT_EQ(scalar->data_bytes, 4);
  auto empty = parse_npy(bytes_of(npy_image(1, npy_dict("<f4", "(0, 128)"), {})), "e.npy");
  ASSERT_TRUE(empty.ok()) << empty.status().message();
  EXPECT_EQ(empty->data_bytes, 0);
}

TEST(Npy, RejectsWhatIsNotANpyFile) {
  expect_rejected({}, "is empty");
  expect_rejected({'P', 'K', 3, 4, 0, 0, 0, 0, 0, 0, 0, 0}, "not a .npy file");
  expect_rejected({0x93, 'N', 'U'}, "truncated");
  expect_rejected({0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 5}, "truncated");
  expect_rejected({0x93, 'N', 'U', 'M', 'P', 'Y', 2, 0, 5, 0, 0}, "truncated");
}

TEST(Npy, RejectsUnknownVersions) {
  const std::vector<uint8_t> data = random_f32_bytes(2, 1);
  expect_rejected(npy_image(4, npy_dict("<f4", "(2,)"), data), "version 4.0");
  auto minor = npy_image(1, npy_dict("<f4", "(2,)"), data);
  minor[7] = 1;
  expect_rejected(minor, "version 1.1");
  expect_rejected(npy_image(0, npy_dict("<f4", "(2,)"), data), "version 0.0");
}

TEST(Npy, RejectsAHeaderLengthThatRunsPastTheFile) {
  const std::string dict = npy_dict("<f4", "(2,)");
  expect_rejected(npy_image(1, dict, random_f32_bytes(2, 1), 0xffff), "header length 65535 runs past the end");
  expect_rejected(npy_image(2, dict, random_f32_bytes(2, 1), 0xffffffffLL), "header length 4294967295");
  // A header length that is too short cuts the dict: the parser sees an unclosed dict.
  expect_rejected(npy_image(1, dict, random_f32_bytes(2, 1), 20), "malformed .npy header");
}

TEST(Npy, RejectsMalformedDicts) {
  const std::vector<uint8_t> data = random_f32_bytes(2, 1);
  const auto image = [&](const std::string& dict) { return npy_image(1, dict, data); };
  expect_rejected(image("'descr': '<f4'}"), "does not start with '{'");
  expect_rejected(image("{'descr' '<f4', 'fortran_order': False, 'shape': (2,), }"), "expected ':'");
  expect_rejected(image("{'descr': '<f4' 'fortran_order': False, 'shape': (2,), }"), "expected ',' or '}'");
  expect_rejected(image("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), "), "expected a key in quotes");
  expect_rejected(image("{'descr': '<f4, 'fortran_order': False, 'shape': (2,), }"), "is not supported");
  expect_rejected(image("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x"), "not closed");
  expect_rejected(image("{'descr': '<f\\4', 'fortran_order': False, 'shape': (2,), }"), "escapes");
  expect_rejected(image("{descr: '<f4', 'fortran_order': False, 'shape': (2,), }"), "expected a key in quotes");
  expect_rejected(image("{'fortran_order': False, 'shape': (2,), }"), "no 'descr' key");
  expect_rejected(image("{'descr': '<f4', 'shape': (2,), }"), "no 'fortran_order' key");
  expect_rejected(image("{'descr': '<f4', 'fortran_order': False, }"), "no 'shape' key");
  expect_rejected(image("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,), }"), "twice");
  expect_rejected(image("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}"), "unknown key 'x'");
  expect_rejected(image("{'descr': '<f4', 'fortran_order': 0, 'shape': (2,), }"), "True or False");
  expect_rejected(image(npy_dict("<f4", "(2,)") + " junk"), "unexpected bytes after the header dict");
  expect_rejected(image("{'descr': '<f4', 'fortran_order': False, 'shape': [2], }"), "must be a tuple");
  expect_rejected(image(std::string("{'descr': '\x01\xff', 'fortran_order': False, 'shape': (2,), }")),
                  "dtype '\\x01\\xff' is not supported");
}

TEST(Npy, RejectsDtypesAndLayoutsItDoesNotRead) {
  const std::vector<uint8_t> data = random_f32_bytes(2, 1);
  expect_rejected(npy_image(1, npy_dict("<f8", "(1,)"), data), "dtype '<f8' is not supported");
  expect_rejected(npy_image(1, npy_dict(">f4", "(2,)"), data), "dtype '>f4' is not supported");
  expect_rejected(npy_image(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }", data),
                  "C-order arrays only");
}

TEST(Npy, RejectsBadShapes) {
  const std::vector<uint8_t> data = random_f32_bytes(2, 1);
  const auto image = [&](const std::string& shape) { return npy_image(1, npy_dict("<f4", shape), data); };
  expect_rejected(image("(-2,)"), "negative");
  expect_rejected(image("(2)"), "is not a tuple");
  expect_rejected(image("(2 2)"), "expected ',' or ')'");
  expect_rejected(image("(2.0,)"), "expected ',' or ')'");
  expect_rejected(image("(,)"), "expected a shape dimension");
  expect_rejected(image("(99999999999999999999,)"), "does not fit in 64 bits");
  expect_rejected(image("(4294967296, 4294967296)"), "too large");
  expect_rejected(image("(3037000500, 3037000500, 2)"), "too large");
  std::string many = "(";
  for (int i = 0; i < 65; ++i) many += "1, ";
  expect_rejected(image(many + ")"), "more than 64 dimensions");
}

TEST(Npy, RejectsADataByteCountThatDoesNotMatchTheShape) {
  expect_rejected(npy_image(1, npy_dict("<f4", "(3, 4)"), random_f32_bytes(11, 1)),
                  "holds 44 bytes of data, shape [3, 4] of <f4 needs 48");
  expect_rejected(npy_image(1, npy_dict("<f4", "(3, 4)"), {}), "holds 0 bytes of data");
  std::vector<uint8_t> longer = random_f32_bytes(12, 1);
  longer.push_back(0);
  expect_rejected(npy_image(1, npy_dict("<f4", "(3, 4)"), longer), "1 trailing bytes");
}

TEST(Npy, EveryTruncationOfAValidFileIsRejected) {
  auto full = encode_npy_f32(std::vector<int64_t>{2, 3}, random_values(6, 9));
  ASSERT_TRUE(full.ok());
  for (size_t n = 0; n < full->size(); ++n) {
    std::vector<uint8_t> cut(full->begin(), full->begin() + static_cast<int64_t>(n));
    EXPECT_FALSE(parse_npy(bytes_of(cut), "cut.npy").ok()) << "accepted a file cut to " << n << " bytes";
  }
}

TEST(Npy, ReadF32NamesTheDtypeItFound) {
  TempDir dir;
  write_bytes(dir.file("h.npy"), npy_image(1, npy_dict("<f2", "(2,)"), std::vector<uint8_t>(4, 1)));
  auto r = read_npy_f32(dir.file("h.npy"));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("'<f2'"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("float32"), std::string::npos) << r.status().message();
}

TEST(Npy, MissingFilesAndDirectoriesAreIoErrors) {
  TempDir dir;
  auto missing = read_npy_f32(dir.file("nope.npy"));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::io_error);
  EXPECT_NE(missing.status().message().find("nope.npy"), std::string::npos);
  EXPECT_NE(missing.status().message().find("No such file"), std::string::npos);
  std::filesystem::create_directory(dir.file("d.npy"));
  auto directory = read_npy(dir.file("d.npy"));
  ASSERT_FALSE(directory.ok());
  EXPECT_NE(directory.status().message().find("is a directory"), std::string::npos);
}

}  // namespace
}  // namespace kvflash::io
