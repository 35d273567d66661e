#include "io/npy.h"

#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>
#include <sys/stat.h>

namespace kvflash::io {

namespace {

// Element bytes are copied as they lie in the file, which numpy writes little-endian ('<').
static_assert(std::endian::native == std::endian::little, "the .npy reader assumes a little-endian host");

constexpr uint8_t kMagic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
// numpy aligns the start of the data to 64 bytes (ARRAY_ALIGN in numpy/lib/format.py).
constexpr int64_t kDataAlign = 64;

// Text copied from a file into a message: at most 40 characters, non-printable bytes escaped, so that a hostile
// header cannot break the one-line error or flood the terminal.
std::string printable(std::string_view text) {
  std::string out;
  const size_t limit = 40;
  for (size_t i = 0; i < text.size() && i < limit; ++i) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  if (text.size() > limit) out += "...";
  return out;
}

std::string quoted(std::string_view name) { return "'" + std::string(name) + "'"; }

// Reads the Python literal dict numpy writes: {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }.
// Only the three keys numpy defines are allowed, each once; strings have no escapes; integers are decimal.
class HeaderParser {
 public:
  explicit HeaderParser(std::string_view text) : text_(text) {}

  Status parse(NpyHeader& out) {
    skip_space();
    if (!eat('{')) return error("the header does not start with '{'");
    bool have_descr = false, have_order = false, have_shape = false;
    skip_space();
    while (!eat('}')) {
      std::string key;
      KVFLASH_RETURN_IF_ERROR(string_literal(key, "a key"));
      skip_space();
      if (!eat(':')) return error("expected ':' after key '" + printable(key) + "'");
      skip_space();
      if (key == "descr") {
        if (have_descr) return error("key 'descr' appears twice");
        have_descr = true;
        KVFLASH_RETURN_IF_ERROR(descr(out.dtype));
      } else if (key == "fortran_order") {
        if (have_order) return error("key 'fortran_order' appears twice");
        have_order = true;
        KVFLASH_RETURN_IF_ERROR(fortran_order());
      } else if (key == "shape") {
        if (have_shape) return error("key 'shape' appears twice");
        have_shape = true;
        KVFLASH_RETURN_IF_ERROR(shape(out.shape));
      } else {
        return error("unknown key '" + printable(key) + "' (a .npy header holds 'descr', 'fortran_order', 'shape')");
      }
      skip_space();
      if (eat(',')) {
        skip_space();
        continue;
      }
      if (peek() != '}') return error("expected ',' or '}' after the value of '" + printable(key) + "'");
    }
    if (!have_descr) return error("the header has no 'descr' key");
    if (!have_order) return error("the header has no 'fortran_order' key");
    if (!have_shape) return error("the header has no 'shape' key");
    skip_space();
    if (pos_ != text_.size()) {
      return error("unexpected bytes after the header dict: '" + printable(text_.substr(pos_)) + "'");
    }
    return Status::Ok();
  }

 private:
  Status error(const std::string& what) const {
    return format_error("malformed .npy header (at byte " + std::to_string(pos_) + " of the dict): " + what);
  }
  char peek() const { return pos_ < text_.size() ? text_[pos_] : '\0'; }
  bool eat(char c) {
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  void skip_space() {
    while (pos_ < text_.size() &&
           (text_[pos_] == ' ' || text_[pos_] == '\t' || text_[pos_] == '\n' || text_[pos_] == '\r')) {
      ++pos_;
    }
  }
  bool eat_word(std::string_view word) {
    if (text_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }

  Status string_literal(std::string& out, std::string_view what) {
    const char q = peek();
    if (q != '\'' && q != '"') return error("expected " + std::string(what) + " in quotes");
    ++pos_;
    const size_t start = pos_;
    while (pos_ < text_.size() && text_[pos_] != q) {
      if (text_[pos_] == '\\') return error("escapes in strings are not supported");
      ++pos_;
    }
    if (pos_ >= text_.size()) return error("a string is not closed");
    out.assign(text_.substr(start, pos_ - start));
    ++pos_;
    return Status::Ok();
  }

  Status descr(NpyDtype& dtype) {
    std::string d;
    KVFLASH_RETURN_IF_ERROR(string_literal(d, "'descr' as a dtype string"));
    if (d == "<f4") {
      dtype = NpyDtype::f32;
    } else if (d == "<f2") {
      dtype = NpyDtype::f16;
    } else if (d == "|u1") {
      dtype = NpyDtype::u8;
    } else if (d == "<f8") {
      dtype = NpyDtype::f64;
    } else {
      return format_error("dtype '" + printable(d) +
                          "' is not supported: save the array as float32 or float64 ('<f4', '<f8': "
                          "a.astype(np.float64))");
    }
    return Status::Ok();
  }

  Status fortran_order() {
    if (eat_word("False")) return Status::Ok();
    if (eat_word("True")) {
      return format_error(
          "'fortran_order' is True: kvflash reads C-order arrays only (save np.ascontiguousarray(a))");
    }
    return error("'fortran_order' must be True or False");
  }

  // A non-negative decimal integer (Python 2 numpy may append 'L').
  Status dimension(int64_t& value) {
    if (peek() == '-') return error("a shape dimension is negative");
    if (peek() < '0' || peek() > '9') return error("expected a shape dimension (a non-negative integer)");
    const size_t start = pos_;
    int64_t v = 0;
    while (peek() >= '0' && peek() <= '9') {
      const int digit = peek() - '0';
      if (v > (INT64_MAX - digit) / 10) {
        while (peek() >= '0' && peek() <= '9') ++pos_;
        return error("shape dimension " + printable(text_.substr(start, pos_ - start)) + " does not fit in 64 bits");
      }
      v = v * 10 + digit;
      ++pos_;
    }
    eat('L');
    value = v;
    return Status::Ok();
  }

  Status shape(std::vector<int64_t>& dims) {
    if (!eat('(')) return error("'shape' must be a tuple like (3, 4)");
    skip_space();
    bool trailing_comma = false;
    while (!eat(')')) {
      if (static_cast<int>(dims.size()) >= kNpyMaxDims) {
        return format_error("the shape has more than " + std::to_string(kNpyMaxDims) + " dimensions");
      }
      int64_t d = 0;
      KVFLASH_RETURN_IF_ERROR(dimension(d));
      dims.push_back(d);
      skip_space();
      trailing_comma = eat(',');
      skip_space();
      if (!trailing_comma && peek() != ')') return error("expected ',' or ')' in 'shape'");
    }
    // Python reads "(5)" as the integer 5, not a tuple; numpy rejects it, and so does this reader.
    if (dims.size() == 1 && !trailing_comma) return error("'shape' (n) is not a tuple; a 1-d shape is written (n,)");
    return Status::Ok();
  }

  std::string_view text_;
  size_t pos_ = 0;
};

Status with_name(std::string_view name, const Status& s) {
  return {s.code(), quoted(name) + ": " + s.message()};
}

uint32_t read_le(std::span<const uint8_t> file, size_t at, int bytes) {
  uint32_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= static_cast<uint32_t>(file[at + i]) << (8 * i);
  return v;
}

StatusOr<std::vector<uint8_t>> read_whole_file(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return io_error("cannot open " + quoted(path) + ": " + std::strerror(errno));
  if (S_ISDIR(st.st_mode)) return io_error(quoted(path) + " is a directory, not a file");
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return io_error("cannot open " + quoted(path) + ": " + std::strerror(errno));
  std::vector<uint8_t> data;
  if (S_ISREG(st.st_mode)) data.reserve(static_cast<size_t>(st.st_size));
  uint8_t buf[1 << 16];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) data.insert(data.end(), buf, buf + n);
  const bool failed = std::ferror(f) != 0;
  std::fclose(f);
  if (failed) return io_error("cannot read " + quoted(path));
  return data;
}

// Element bytes (little-endian, as the file holds them) as a vector of To, each converted from From.
// The bytes need not be aligned for From (a hand-written header may put the data anywhere): copy, never cast.
template <typename From, typename To>
std::vector<To> elements_as(std::span<const uint8_t> bytes) {
  std::vector<To> out(bytes.size() / sizeof(From));
  for (size_t i = 0; i < out.size(); ++i) {
    From value;
    std::memcpy(&value, bytes.data() + i * sizeof(From), sizeof(From));
    out[i] = static_cast<To>(value);  // double -> float rounds to nearest (IEEE), overflow to +-inf
  }
  return out;
}

Status not_real(const std::string& path, NpyDtype found) {
  return format_error(quoted(path) + " holds dtype '" + std::string(npy_descr(found)) +
                      "'; float32 ('<f4') or float64 ('<f8') is needed (np.asarray(a, dtype=np.float64))");
}

// A version-1 file of `count` elements of `dtype` (their bytes in `data`), header padded as numpy pads it.
StatusOr<std::vector<uint8_t>> encode_npy(NpyDtype dtype, std::span<const int64_t> shape,
                                          std::span<const std::byte> data, int64_t count_given) {
  const int64_t count = checked_product(shape);
  if (count < 0) return invalid_argument("npy shape " + shape_string(shape) + " has a negative or huge dimension");
  if (count != count_given) {
    return invalid_argument("npy shape " + shape_string(shape) + " holds " + std::to_string(count) + " values, got " +
                            std::to_string(count_given));
  }
  if (static_cast<int>(shape.size()) > kNpyMaxDims) {
    return invalid_argument("npy shape " + shape_string(shape) + " has more than 64 dimensions");
  }
  std::string dict = "{'descr': '" + std::string(npy_descr(dtype)) + "', 'fortran_order': False, 'shape': (";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) dict += ", ";
    dict += std::to_string(shape[i]);
  }
  if (shape.size() == 1) dict += ",";
  dict += "), }";
  const int64_t prefix = 10;
  const int64_t unpadded = prefix + static_cast<int64_t>(dict.size()) + 1;  // + the closing newline
  const int64_t padding = (kDataAlign - unpadded % kDataAlign) % kDataAlign;
  dict.append(static_cast<size_t>(padding), ' ');
  dict += '\n';
  const size_t header_len = dict.size();  // at most a few KiB for 64 dimensions: fits version 1's u16

  std::vector<uint8_t> out;
  out.reserve(prefix + header_len + data.size());
  out.insert(out.end(), kMagic, kMagic + sizeof kMagic);
  out.push_back(1);
  out.push_back(0);
  out.push_back(static_cast<uint8_t>(header_len & 0xff));
  out.push_back(static_cast<uint8_t>(header_len >> 8));
  out.insert(out.end(), dict.begin(), dict.end());
  const auto* bytes = reinterpret_cast<const uint8_t*>(data.data());
  out.insert(out.end(), bytes, bytes + data.size());
  return out;
}

}  // namespace

std::string_view npy_descr(NpyDtype dtype) {
  switch (dtype) {
    case NpyDtype::f32: return "<f4";
    case NpyDtype::f16: return "<f2";
    case NpyDtype::u8: return "|u1";
    case NpyDtype::f64: return "<f8";
  }
  return "?";
}

int64_t npy_itemsize(NpyDtype dtype) {
  switch (dtype) {
    case NpyDtype::f32: return 4;
    case NpyDtype::f16: return 2;
    case NpyDtype::u8: return 1;
    case NpyDtype::f64: return 8;
  }
  return 1;
}

std::string shape_string(std::span<const int64_t> shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) out += ", ";
    out += std::to_string(shape[i]);
  }
  return out + "]";
}

int64_t checked_product(std::span<const int64_t> dims) {
  int64_t product = 1;
  for (int64_t d : dims) {
    if (d < 0) return -1;
    if (__builtin_mul_overflow(product, d, &product)) return -1;
  }
  // A zero axis makes the product 0 even if other axes would overflow together; that is still a valid count.
  return product;
}

StatusOr<NpyHeader> parse_npy(std::span<const uint8_t> file, std::string_view name) {
  const size_t size = file.size();
  if (size == 0) return format_error(quoted(name) + " is empty (0 bytes), not a .npy file");
  const size_t magic_seen = size < sizeof kMagic ? size : sizeof kMagic;
  if (std::memcmp(file.data(), kMagic, magic_seen) != 0) {
    return format_error(quoted(name) + " is not a .npy file (it does not start with the magic \\x93NUMPY)");
  }
  if (size < 10) {
    return format_error(quoted(name) + " is truncated: " + std::to_string(size) +
                        " bytes, a .npy file needs at least 10 for its magic, version and header length");
  }
  NpyHeader h;
  h.version_major = file[6];
  const int minor = file[7];
  if (h.version_major < 1 || h.version_major > 3 || minor != 0) {
    return format_error(quoted(name) + ": .npy format version " + std::to_string(h.version_major) + "." +
                        std::to_string(minor) + " is not supported (1.0, 2.0 and 3.0 are)");
  }
  const size_t prefix = h.version_major == 1 ? 10 : 12;
  if (size < prefix) {
    return format_error(quoted(name) + " is truncated: " + std::to_string(size) + " bytes, a version " +
                        std::to_string(h.version_major) + " .npy file needs " + std::to_string(prefix) +
                        " before its header");
  }
  const uint64_t header_len = read_le(file, 8, h.version_major == 1 ? 2 : 4);
  if (header_len > size - prefix) {
    return format_error(quoted(name) + ": the header length " + std::to_string(header_len) +
                        " runs past the end of the file (" + std::to_string(size) + " bytes; the header would end at " +
                        std::to_string(prefix + header_len) + ")");
  }
  const std::string_view text(reinterpret_cast<const char*>(file.data()) + prefix, header_len);
  HeaderParser parser(text);
  if (Status s = parser.parse(h); !s.ok()) return with_name(name, s);

  h.data_offset = static_cast<int64_t>(prefix + header_len);
  const int64_t count = checked_product(h.shape);
  const int64_t itemsize = npy_itemsize(h.dtype);
  int64_t need = 0;
  if (count < 0 || __builtin_mul_overflow(count, itemsize, &need)) {
    return format_error(quoted(name) + ": shape " + shape_string(h.shape) + " of " +
                        std::string(npy_descr(h.dtype)) + " is too large (its byte count overflows 64 bits)");
  }
  const int64_t have = static_cast<int64_t>(size) - h.data_offset;
  if (have < need) {
    return format_error(quoted(name) + " is truncated or its header lies: it holds " + std::to_string(have) +
                        " bytes of data, shape " + shape_string(h.shape) + " of " + std::string(npy_descr(h.dtype)) +
                        " needs " + std::to_string(need));
  }
  if (have > need) {
    return format_error(quoted(name) + " has " + std::to_string(have - need) + " trailing bytes after the " +
                        std::to_string(need) + " bytes of data that shape " + shape_string(h.shape) + " of " +
                        std::string(npy_descr(h.dtype)) + " needs");
  }
  h.data_bytes = need;
  return h;
}

StatusOr<NpyArray> read_npy(const std::string& path) {
  auto file = read_whole_file(path);
  if (!file.ok()) return file.status();
  auto header = parse_npy(*file, path);
  if (!header.ok()) return header.status();
  NpyArray out;
  out.dtype = header->dtype;
  out.shape = std::move(header->shape);
  const auto begin = file->begin() + header->data_offset;
  out.data.assign(begin, begin + header->data_bytes);
  return out;
}

StatusOr<NpyF32> read_npy_f32(const std::string& path) {
  auto array = read_npy(path);
  if (!array.ok()) return array.status();
  if (array->dtype != NpyDtype::f32) {
    return format_error(quoted(path) + " holds dtype '" + std::string(npy_descr(array->dtype)) +
                        "'; float32 ('<f4') is needed (np.asarray(a, dtype=np.float32))");
  }
  NpyF32 out;
  out.shape = std::move(array->shape);
  out.values = elements_as<float, float>(array->data);
  return out;
}

StatusOr<NpyF32> read_npy_as_f32(const std::string& path) {
  auto array = read_npy(path);
  if (!array.ok()) return array.status();
  if (array->dtype != NpyDtype::f32 && array->dtype != NpyDtype::f64) return not_real(path, array->dtype);
  NpyF32 out;
  out.shape = std::move(array->shape);
  out.values = array->dtype == NpyDtype::f32 ? elements_as<float, float>(array->data)
                                             : elements_as<double, float>(array->data);
  return out;
}

StatusOr<NpyF64> read_npy_as_f64(const std::string& path) {
  auto array = read_npy(path);
  if (!array.ok()) return array.status();
  if (array->dtype != NpyDtype::f32 && array->dtype != NpyDtype::f64) return not_real(path, array->dtype);
  NpyF64 out;
  out.dtype = array->dtype;
  out.shape = std::move(array->shape);
  out.values = array->dtype == NpyDtype::f32 ? elements_as<float, double>(array->data)
                                             : elements_as<double, double>(array->data);
  return out;
}

StatusOr<std::vector<uint8_t>> encode_npy_f32(std::span<const int64_t> shape, std::span<const float> values) {
  return encode_npy(NpyDtype::f32, shape, std::as_bytes(values), static_cast<int64_t>(values.size()));
}

StatusOr<std::vector<uint8_t>> encode_npy_f64(std::span<const int64_t> shape, std::span<const double> values) {
  return encode_npy(NpyDtype::f64, shape, std::as_bytes(values), static_cast<int64_t>(values.size()));
}

}  // namespace kvflash::io
