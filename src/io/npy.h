// NumPy .npy files: a checked reader (format versions 1, 2 and 3) and float32 / float64 writers (version 1).
//
// The reader treats every byte of a file as untrusted: magic, version, header length, the header dict (parsed by
// hand, no eval), dtype, shape values and the data byte count are all checked, and a malformed file yields a
// format_error Status naming the file and the problem. It never reads outside the file image it is given.
//
// Accepted: dtype '<f4' (float32), '<f8' (float64), '<f2' (float16), '|u1' (uint8); C order only ('fortran_order': True is an
// error: a transposed layout read as C order would silently give wrong numbers). A 0-d array (shape ()) holds one
// element; an array with a zero-length axis holds none. Both are valid .npy files; the callers (CLI commands)
// decide which shapes they accept.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kvflash/status.h"

namespace kvflash::io {

enum class NpyDtype : uint8_t { f32, f16, u8, f64 };

/// The descr string numpy writes for `dtype` ("<f4", "<f2", "|u1", "<f8").
std::string_view npy_descr(NpyDtype dtype);
/// Bytes per element.
int64_t npy_itemsize(NpyDtype dtype);

/// Numpy's limit on the number of dimensions (NPY_MAXDIMS in numpy 2); more is a malformed file.
inline constexpr int kNpyMaxDims = 64;

/// What the header of a well-formed file says, and where its data lies in the file image.
struct NpyHeader {
  int version_major = 1;
  NpyDtype dtype = NpyDtype::f32;
  std::vector<int64_t> shape;
  int64_t data_offset = 0;  // bytes from the start of the file
  int64_t data_bytes = 0;   // product(shape) * itemsize, equal to the bytes after data_offset
};

/// Checks a whole file image and returns its header. `name` (a path) prefixes every error message.
StatusOr<NpyHeader> parse_npy(std::span<const uint8_t> file, std::string_view name);

/// A float32 array in C order.
struct NpyF32 {
  std::vector<int64_t> shape;
  std::vector<float> values;
};

/// Reads a .npy file that must hold float32 ('<f4'); another dtype is an error naming the dtype found.
StatusOr<NpyF32> read_npy_f32(const std::string& path);

/// Reads a float32 or float64 file as float32: float64 values are rounded to the nearest float32 (ties to even;
/// beyond the float32 range they become +-inf, NaN stays NaN), float32 values are kept bit for bit. Another dtype
/// is an error naming the dtype found. For inputs that float32 code consumes (the quantizers take float32).
StatusOr<NpyF32> read_npy_as_f32(const std::string& path);

/// A float32 or float64 array in C order, as doubles (float32 widens exactly), with the dtype the file held.
struct NpyF64 {
  NpyDtype dtype = NpyDtype::f64;
  std::vector<int64_t> shape;
  std::vector<double> values;
};

/// Reads a float32 or float64 file at full precision; another dtype is an error naming the dtype found.
StatusOr<NpyF64> read_npy_as_f64(const std::string& path);

/// An array of any accepted dtype with its raw little-endian element bytes.
struct NpyArray {
  NpyDtype dtype = NpyDtype::f32;
  std::vector<int64_t> shape;
  std::vector<uint8_t> data;
};

/// Reads a .npy file of any accepted dtype.
StatusOr<NpyArray> read_npy(const std::string& path);

/// The bytes of a version-1 .npy file holding `values` as float32 with `shape` (C order). The header is padded
/// with spaces and a newline so that the data starts at a multiple of 64 bytes, as numpy writes it.
/// Fails when `values.size()` is not the product of `shape` or a dimension is negative.
StatusOr<std::vector<uint8_t>> encode_npy_f32(std::span<const int64_t> shape, std::span<const float> values);

/// The same as encode_npy_f32 for float64 ('<f8') values.
StatusOr<std::vector<uint8_t>> encode_npy_f64(std::span<const int64_t> shape, std::span<const double> values);

/// "[2, 3, 4]" (and "[]" for a 0-d shape), for messages.
std::string shape_string(std::span<const int64_t> shape);

/// Product of `dims`, or -1 when a dimension is negative or the product overflows int64.
int64_t checked_product(std::span<const int64_t> dims);

}  // namespace kvflash::io
