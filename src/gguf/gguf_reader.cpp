// GGUF header and metadata parsing, checked against the bytes that remain before every read.
#include "gguf/gguf_reader.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

namespace kvflash::gguf {
namespace {

/// Bytes with a known total size, read front to back.
class Source {
 public:
  explicit Source(uint64_t size) : size_(size) {}
  virtual ~Source() = default;
  uint64_t offset() const { return offset_; }
  uint64_t remaining() const { return size_ - offset_; }
  uint64_t size() const { return size_; }

  /// Reads exactly n bytes or fails naming `what`.
  Status read(void* dst, uint64_t n, const std::string& what) {
    KVFLASH_RETURN_IF_ERROR(require(n, what));
    KVFLASH_RETURN_IF_ERROR(read_raw(dst, n));
    offset_ += n;
    return Status::Ok();
  }
  Status skip(uint64_t n, const std::string& what) {
    KVFLASH_RETURN_IF_ERROR(require(n, what));
    KVFLASH_RETURN_IF_ERROR(skip_raw(n));
    offset_ += n;
    return Status::Ok();
  }
  Status require(uint64_t n, const std::string& what) const {
    if (n <= remaining()) return Status::Ok();
    return format_error("GGUF truncated: " + what + " needs " + std::to_string(n) + " bytes at offset " +
                        std::to_string(offset_) + " but the file has " + std::to_string(size_) + " bytes");
  }

 protected:
  virtual Status read_raw(void* dst, uint64_t n) = 0;
  virtual Status skip_raw(uint64_t n) = 0;

 private:
  uint64_t size_;
  uint64_t offset_ = 0;
};

class MemorySource final : public Source {
 public:
  explicit MemorySource(std::span<const uint8_t> bytes) : Source(bytes.size()), bytes_(bytes) {}

 protected:
  Status read_raw(void* dst, uint64_t n) override {
    if (n > 0) std::memcpy(dst, bytes_.data() + offset(), n);
    return Status::Ok();
  }
  Status skip_raw(uint64_t) override { return Status::Ok(); }

 private:
  std::span<const uint8_t> bytes_;
};

class FileSource final : public Source {
 public:
  FileSource(std::FILE* f, uint64_t size, std::string path) : Source(size), file_(f), path_(std::move(path)) {}
  ~FileSource() override { std::fclose(file_); }

 protected:
  Status read_raw(void* dst, uint64_t n) override {
    if (std::fread(dst, 1, n, file_) != n) return io_error("reading " + path_ + " failed at offset " +
                                                           std::to_string(offset()));
    return Status::Ok();
  }
  Status skip_raw(uint64_t n) override {
    if (fseeko(file_, static_cast<off_t>(offset() + n), SEEK_SET) != 0) {
      return io_error("seeking in " + path_ + " failed at offset " + std::to_string(offset()));
    }
    return Status::Ok();
  }

 private:
  std::FILE* file_;
  std::string path_;
};

/// Smallest encoding of one element of a type (strings: the length; arrays: type + count).
uint64_t min_element_bytes(ValueType t) {
  switch (t) {
    case ValueType::u8: case ValueType::i8: case ValueType::boolean: return 1;
    case ValueType::u16: case ValueType::i16: return 2;
    case ValueType::u32: case ValueType::i32: case ValueType::f32: return 4;
    case ValueType::u64: case ValueType::i64: case ValueType::f64: case ValueType::string: return 8;
    case ValueType::array: return 12;
  }
  return 0;
}

bool known_type(uint32_t t) { return t <= static_cast<uint32_t>(ValueType::f64); }

bool integer_type(ValueType t) {
  return t == ValueType::u8 || t == ValueType::i8 || t == ValueType::u16 || t == ValueType::i16 ||
         t == ValueType::u32 || t == ValueType::i32 || t == ValueType::u64 || t == ValueType::i64 ||
         t == ValueType::boolean;
}

/// A fixed-size little-endian scalar from `b` (the host is little-endian: x86-64 and aarch64 Linux).
bool decode_integer(ValueType t, const uint8_t* b, int64_t* out) {
  switch (t) {
    case ValueType::u8: *out = b[0]; return true;
    case ValueType::boolean: *out = b[0] != 0; return true;
    case ValueType::i8: { int8_t v; std::memcpy(&v, b, 1); *out = v; return true; }
    case ValueType::u16: { uint16_t v; std::memcpy(&v, b, 2); *out = v; return true; }
    case ValueType::i16: { int16_t v; std::memcpy(&v, b, 2); *out = v; return true; }
    case ValueType::u32: { uint32_t v; std::memcpy(&v, b, 4); *out = v; return true; }
    case ValueType::i32: { int32_t v; std::memcpy(&v, b, 4); *out = v; return true; }
    case ValueType::i64: { std::memcpy(out, b, 8); return true; }
    case ValueType::u64: {
      uint64_t v;
      std::memcpy(&v, b, 8);
      if (v > static_cast<uint64_t>(INT64_MAX)) return false;
      *out = static_cast<int64_t>(v);
      return true;
    }
    default: return false;
  }
}

class Parser {
 public:
  explicit Parser(Source& src) : src_(src) {}

  StatusOr<Metadata> parse() {
    Metadata md;
    uint8_t magic[4];
    KVFLASH_RETURN_IF_ERROR(src_.read(magic, 4, "the magic"));
    if (std::memcmp(magic, "GGUF", 4) != 0) {
      char hex[16];
      std::snprintf(hex, sizeof hex, "%02x%02x%02x%02x", magic[0], magic[1], magic[2], magic[3]);
      return format_error(std::string("not a GGUF file: magic is 0x") + hex + ", expected \"GGUF\" (0x47475546)");
    }
    KVFLASH_RETURN_IF_ERROR(read_u32(&md.version, "the version"));
    if (md.version != 2 && md.version != 3) {
      std::string why = md.version == 1 ? " (version 1 used 32-bit counts)"
                        : md.version > 0xffff ? " (a big-endian file?)" : "";
      return format_error("GGUF version " + std::to_string(md.version) + " is not supported (2 or 3)" + why);
    }
    uint64_t n_kv = 0;
    KVFLASH_RETURN_IF_ERROR(read_u64(&md.tensor_count, "tensor_count"));
    KVFLASH_RETURN_IF_ERROR(read_u64(&n_kv, "metadata_kv_count"));
    // The smallest pair: an 8-byte key length, a 1-byte key, a 4-byte type, a 1-byte value.
    constexpr uint64_t kMinPairBytes = 14;
    if (n_kv > src_.remaining() / kMinPairBytes) {
      return format_error("metadata_kv_count = " + std::to_string(n_kv) + " is more pairs than the " +
                          std::to_string(src_.remaining()) + " bytes after the header can hold");
    }
    for (uint64_t i = 0; i < n_kv; ++i) {
      std::string key;
      KVFLASH_RETURN_IF_ERROR(read_key(i, &key));
      uint32_t type = 0;
      KVFLASH_RETURN_IF_ERROR(read_u32(&type, "the type of key '" + key + "'"));
      if (!known_type(type)) {
        return format_error("key '" + key + "' has value type " + std::to_string(type) + ", not a GGUF type (0..12)");
      }
      Value v;
      KVFLASH_RETURN_IF_ERROR(read_value(static_cast<ValueType>(type), key, 0, &v));
      if (!md.values.emplace(key, std::move(v)).second) {
        return format_error("key '" + key + "' appears twice in the metadata");
      }
    }
    md.bytes_read = src_.offset();
    // Tensor infos follow; each takes at least a name length, a 1-byte name, n_dims, one dim, a type and an offset.
    constexpr uint64_t kMinTensorInfoBytes = 8 + 1 + 4 + 8 + 4 + 8;
    if (md.tensor_count > src_.remaining() / kMinTensorInfoBytes) {
      return format_error("tensor_count = " + std::to_string(md.tensor_count) + " is more tensors than the " +
                          std::to_string(src_.remaining()) + " bytes after the metadata can describe");
    }
    return md;
  }

 private:
  Status read_u32(uint32_t* out, const std::string& what) { return src_.read(out, 4, what); }
  Status read_u64(uint64_t* out, const std::string& what) { return src_.read(out, 8, what); }

  Status read_key(uint64_t index, std::string* key) {
    const std::string what = "metadata key " + std::to_string(index);
    uint64_t len = 0;
    KVFLASH_RETURN_IF_ERROR(read_u64(&len, "the length of " + what));
    if (len == 0 || len > kMaxKeyBytes) {
      return format_error(what + " has length " + std::to_string(len) + " (keys are 1.." +
                          std::to_string(kMaxKeyBytes) + " bytes)");
    }
    KVFLASH_RETURN_IF_ERROR(src_.require(len, what));
    key->resize(len);
    return src_.read(key->data(), len, what);
  }

  /// A string value: kept when short enough, else skipped.
  Status read_string(const std::string& key, std::string* out) {
    uint64_t len = 0;
    KVFLASH_RETURN_IF_ERROR(read_u64(&len, "the string length of key '" + key + "'"));
    if (len > src_.remaining()) {
      return format_error("key '" + key + "' has a string of " + std::to_string(len) + " bytes but only " +
                          std::to_string(src_.remaining()) + " bytes remain");
    }
    if (out == nullptr || len > kMaxKeptStringBytes) return src_.skip(len, "string of key '" + key + "'");
    out->resize(len);
    return src_.read(out->data(), len, "string of key '" + key + "'");
  }

  Status read_value(ValueType type, const std::string& key, int depth, Value* v) {
    v->type = type;
    if (type == ValueType::string) return read_string(key, &v->text);
    if (type == ValueType::array) return read_array(key, depth + 1, v);
    const uint64_t size = min_element_bytes(type);
    uint8_t bytes[8] = {};
    KVFLASH_RETURN_IF_ERROR(src_.read(bytes, size, "the value of key '" + key + "'"));
    if (type == ValueType::f32 || type == ValueType::f64) {
      if (type == ValueType::f32) {
        float f;
        std::memcpy(&f, bytes, 4);
        v->real = f;
      } else {
        std::memcpy(&v->real, bytes, 8);
      }
      v->is_float = true;
      return Status::Ok();
    }
    v->is_integer = decode_integer(type, bytes, &v->integer);
    return Status::Ok();
  }

  Status read_array(const std::string& key, int depth, Value* v) {
    if (depth > kMaxArrayNesting) {
      return format_error("key '" + key + "' nests arrays " + std::to_string(depth) + " deep (at most " +
                          std::to_string(kMaxArrayNesting) + ")");
    }
    uint32_t element = 0;
    uint64_t count = 0;
    KVFLASH_RETURN_IF_ERROR(read_u32(&element, "the element type of array '" + key + "'"));
    if (!known_type(element)) {
      return format_error("array '" + key + "' has element type " + std::to_string(element) +
                          ", not a GGUF type (0..12)");
    }
    KVFLASH_RETURN_IF_ERROR(read_u64(&count, "the length of array '" + key + "'"));
    const auto et = static_cast<ValueType>(element);
    const uint64_t min_bytes = min_element_bytes(et);
    if (count > src_.remaining() / min_bytes) {
      return format_error("array '" + key + "' claims " + std::to_string(count) + " elements of at least " +
                          std::to_string(min_bytes) + " bytes but only " + std::to_string(src_.remaining()) +
                          " bytes remain");
    }
    v->element_type = et;
    v->array_length = count;
    if (et == ValueType::string || et == ValueType::array) {
      for (uint64_t i = 0; i < count; ++i) {
        if (et == ValueType::string) {
          KVFLASH_RETURN_IF_ERROR(read_string(key, nullptr));
        } else {
          Value inner;
          KVFLASH_RETURN_IF_ERROR(read_array(key, depth + 1, &inner));
        }
      }
      return Status::Ok();
    }
    const uint64_t bytes = count * min_bytes;  // count <= remaining / min_bytes: no overflow
    if (!integer_type(et) || count > kMaxKeptArrayElements) {
      return src_.skip(bytes, "array '" + key + "'");
    }
    std::vector<uint8_t> raw(bytes);
    KVFLASH_RETURN_IF_ERROR(src_.read(raw.data(), bytes, "array '" + key + "'"));
    v->integers.resize(count);
    for (uint64_t i = 0; i < count; ++i) {
      if (!decode_integer(et, raw.data() + i * min_bytes, &v->integers[i])) {
        return format_error("array '" + key + "' element " + std::to_string(i) + " exceeds int64");
      }
    }
    v->elements_kept = true;
    return Status::Ok();
  }

  Source& src_;
};

}  // namespace

StatusOr<Metadata> read_metadata(std::span<const uint8_t> bytes) {
  MemorySource src(bytes);
  return Parser(src).parse();
}

StatusOr<Metadata> read_metadata_file(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return io_error("cannot read GGUF file " + path + ": " +
                    (std::filesystem::exists(path, ec) ? "not a regular file" : "no such file"));
  }
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return io_error("cannot open GGUF file " + path + ": " + std::strerror(errno));
  if (fseeko(f, 0, SEEK_END) != 0) {
    std::fclose(f);
    return io_error("cannot seek in GGUF file " + path);
  }
  const off_t size = ftello(f);
  if (size < 0 || fseeko(f, 0, SEEK_SET) != 0) {
    std::fclose(f);
    return io_error("cannot seek in GGUF file " + path);
  }
  FileSource src(f, static_cast<uint64_t>(size), path);  // owns f from here
  auto md = Parser(src).parse();
  if (!md.ok()) return Status(md.status().code(), path + ": " + md.status().message());
  return md;
}

}  // namespace kvflash::gguf
