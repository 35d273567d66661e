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
#include <random>

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
  expect_rejected(npy_image(1, npy_dict("<i4", "(2,)"), data), "dtype '<i4' is not supported");
  expect_rejected(npy_image(1, npy_dict(">f4", "(2,)"), data), "dtype '>f4' is not supported");
  expect_rejected(npy_image(1, npy_dict(">f8", "(1,)"), data), "dtype '>f8' is not supported");
  expect_rejected(npy_image(1, npy_dict("<f16", "(1,)"), std::vector<uint8_t>(16, 0)), "dtype '<f16' is not supported");
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

std::vector<double> random_doubles(int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> dist(0.0, 1.0);
  std::vector<double> v(static_cast<size_t>(n));
  for (double& x : v) x = dist(rng);
  return v;
}

std::vector<uint8_t> bytes_of_doubles(const std::vector<double>& v) {
  std::vector<uint8_t> out(v.size() * 8);
  if (!v.empty()) std::memcpy(out.data(), v.data(), out.size());
  return out;
}

TEST(NpyF64, RoundTripKeepsShapeAndEveryBit) {
  const std::vector<std::vector<int64_t>> shapes = {{}, {0}, {7}, {3, 5}, {2, 3, 5}, {1, 4, 1, 9}, {4, 0, 3}};
  TempDir dir;
  uint64_t seed = 31;
  for (const auto& shape : shapes) {
    std::vector<double> values = random_doubles(checked_product(shape), seed++);
    if (values.size() > 4) {
      values[0] = -std::numeric_limits<double>::infinity();
      values[1] = std::numeric_limits<double>::quiet_NaN();
      values[2] = std::numeric_limits<double>::denorm_min();
      values[3] = 1e300;  // beyond float32
    }
    auto file = encode_npy_f64(shape, values);
    ASSERT_TRUE(file.ok()) << file.status().message();
    auto header = parse_npy(bytes_of(*file), "a.npy");
    ASSERT_TRUE(header.ok()) << header.status().message();
    EXPECT_EQ(header->dtype, NpyDtype::f64);
    EXPECT_EQ(header->version_major, 1);
    EXPECT_EQ(header->data_offset % 64, 0) << "data aligned as numpy aligns it";
    EXPECT_EQ((*file)[header->data_offset - 1], '\n') << "the header ends with a newline";
    EXPECT_EQ(header->shape, shape);
    EXPECT_EQ(header->data_bytes, static_cast<int64_t>(values.size() * 8));

    const std::string path = dir.file("a.npy");
    write_bytes(path, *file);
    auto back = read_npy_as_f64(path);
    ASSERT_TRUE(back.ok()) << back.status().message();
    EXPECT_EQ(back->dtype, NpyDtype::f64);
    EXPECT_EQ(back->shape, shape);
    ASSERT_EQ(back->values.size(), values.size());
    if (!values.empty()) {
      EXPECT_EQ(std::memcmp(back->values.data(), values.data(), values.size() * 8), 0);
    }
  }
}

TEST(NpyF64, WritesTheHeaderNumpyWrites) {
  auto file = encode_npy_f64(std::vector<int64_t>{3, 4}, std::vector<double>(12, 0.1));
  ASSERT_TRUE(file.ok());
  const std::string dict = "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }";
  EXPECT_EQ(std::string(file->begin() + 10, file->begin() + 10 + static_cast<int64_t>(dict.size())), dict);
  EXPECT_EQ((*file)[8] | ((*file)[9] << 8), 118) << "10 + 118 = 128, the next multiple of 64";
  ASSERT_EQ(file->size(), 128u + 96u);
  double first;
  std::memcpy(&first, file->data() + 128, 8);
  EXPECT_EQ(first, 0.1);
  auto bad = encode_npy_f64(std::vector<int64_t>{3, 4}, std::vector<double>(13, 0.5));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("12"), std::string::npos);
}

TEST(NpyF64, ReadAsF32RoundsToNearestAndKeepsFloat32Bits) {
  TempDir dir;
  std::vector<double> values = random_doubles(40, 7);
  values[0] = 1e300;
  values[1] = -1e300;
  values[2] = std::numeric_limits<double>::quiet_NaN();
  values[3] = 1.0 + 0x1p-24;                // a tie between 1 and 1 + 2^-23: to even, 1
  values[4] = 1.0 + 0x1p-24 + 0x1p-50;      // just past the tie: up
  write_bytes(dir.file("d.npy"), *encode_npy_f64(std::vector<int64_t>{4, 10}, values));
  auto as_f32 = read_npy_as_f32(dir.file("d.npy"));
  ASSERT_TRUE(as_f32.ok()) << as_f32.status().message();
  EXPECT_EQ(as_f32->shape, (std::vector<int64_t>{4, 10}));
  ASSERT_EQ(as_f32->values.size(), values.size());
  EXPECT_EQ(as_f32->values[0], std::numeric_limits<float>::infinity());
  EXPECT_EQ(as_f32->values[1], -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(as_f32->values[2]));
  EXPECT_EQ(as_f32->values[3], 1.0f);
  EXPECT_EQ(as_f32->values[4], std::nextafter(1.0f, 2.0f));
  for (size_t i = 5; i < values.size(); ++i) {
    const float want = static_cast<float>(values[i]);
    EXPECT_EQ(std::memcmp(&as_f32->values[i], &want, 4), 0) << i;
    // Nearest: no float32 lies strictly closer to the double.
    const double err = std::abs(static_cast<double>(want) - values[i]);
    EXPECT_LE(err, std::abs(static_cast<double>(std::nextafter(want, 1e9f)) - values[i]));
    EXPECT_LE(err, std::abs(static_cast<double>(std::nextafter(want, -1e9f)) - values[i]));
  }

  // A float32 file: read_npy_as_f32 keeps every bit (NaN payloads too), read_npy_as_f64 widens exactly.
  std::vector<float> floats = random_values(12, 8);
  floats[0] = std::numeric_limits<float>::denorm_min();
  write_bytes(dir.file("f.npy"), *encode_npy_f32(std::vector<int64_t>{12}, floats));
  auto kept = read_npy_as_f32(dir.file("f.npy"));
  ASSERT_TRUE(kept.ok()) << kept.status().message();
  EXPECT_EQ(std::memcmp(kept->values.data(), floats.data(), floats.size() * 4), 0);
  auto widened = read_npy_as_f64(dir.file("f.npy"));
  ASSERT_TRUE(widened.ok()) << widened.status().message();
  EXPECT_EQ(widened->dtype, NpyDtype::f32);
  for (size_t i = 0; i < floats.size(); ++i) EXPECT_EQ(widened->values[i], static_cast<double>(floats[i]));
}

TEST(NpyF64, ReadsDataAtAnOffsetThatIsNotAMultipleOf8) {
  // A hand-written header of any length: the reader copies bytes and never assumes alignment.
  const std::vector<double> values = random_doubles(5, 9);
  const auto file = npy_image(1, npy_dict("<f8", "(5,)") + " \n", bytes_of_doubles(values));
  auto header = parse_npy(bytes_of(file), "odd.npy");
  ASSERT_TRUE(header.ok()) << header.status().message();
  ASSERT_NE(header->data_offset % 8, 0);
  TempDir dir;
  write_bytes(dir.file("odd.npy"), file);
  auto back = read_npy_as_f64(dir.file("odd.npy"));
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(back->values, values);
}

TEST(NpyF64, RejectsMalformedFloat64Files) {
  expect_rejected(npy_image(1, npy_dict("<f8", "(3, 4)"), bytes_of_doubles(random_doubles(11, 1))),
                  "holds 88 bytes of data, shape [3, 4] of <f8 needs 96");
  // 48 bytes are 12 float32 values but only 6 float64 values: the itemsize is the dtype's.
  expect_rejected(npy_image(1, npy_dict("<f8", "(3, 4)"), random_f32_bytes(12, 1)), "needs 96");
  std::vector<uint8_t> longer = bytes_of_doubles(random_doubles(12, 1));
  longer.push_back(0);
  expect_rejected(npy_image(1, npy_dict("<f8", "(3, 4)"), longer), "1 trailing bytes");
  // 2^60 elements of 8 bytes overflow int64 where float32 ones (2^62 bytes) would not.
  expect_rejected(npy_image(1, npy_dict("<f8", "(1152921504606846976,)"), {}), "too large");
  expect_rejected(npy_image(1, "{'descr': '<f8', 'fortran_order': True, 'shape': (2,), }",
                            bytes_of_doubles(random_doubles(2, 1))),
                  "C-order arrays only");
  auto full = encode_npy_f64(std::vector<int64_t>{2, 3}, random_doubles(6, 9));
  ASSERT_TRUE(full.ok());
  for (size_t n = 0; n < full->size(); ++n) {
    std::vector<uint8_t> cut(full->begin(), full->begin() + static_cast<int64_t>(n));
    EXPECT_FALSE(parse_npy(bytes_of(cut), "cut.npy").ok()) << "accepted a file cut to " << n << " bytes";
  }
}

TEST(NpyF64, RealReadersNameTheDtypeTheyFound) {
  TempDir dir;
  write_bytes(dir.file("h.npy"), npy_image(1, npy_dict("<f2", "(2,)"), std::vector<uint8_t>(4, 1)));
  write_bytes(dir.file("u.npy"), npy_image(1, npy_dict("|u1", "(2,)"), std::vector<uint8_t>(2, 1)));
  for (const char* name : {"h.npy", "u.npy"}) {
    for (const auto& status : {read_npy_as_f32(dir.file(name)).status(), read_npy_as_f64(dir.file(name)).status()}) {
      ASSERT_FALSE(status.ok());
      EXPECT_EQ(status.code(), StatusCode::format_error);
      EXPECT_NE(status.message().find(name == std::string("h.npy") ? "'<f2'" : "'|u1'"), std::string::npos)
          << status.message();
      EXPECT_NE(status.message().find("float32 ('<f4') or float64 ('<f8')"), std::string::npos) << status.message();
    }
  }
  // The strict float32 reader still rejects float64.
  write_bytes(dir.file("d.npy"), *encode_npy_f64(std::vector<int64_t>{2}, std::vector<double>{1, 2}));
  auto strict = read_npy_f32(dir.file("d.npy"));
  ASSERT_FALSE(strict.ok());
  EXPECT_NE(strict.status().message().find("'<f8'"), std::string::npos) << strict.status().message();
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
