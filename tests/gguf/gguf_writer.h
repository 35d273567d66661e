// A small GGUF writer for tests: builds the header and metadata of a file (and filler tensor infos), so that the
// reader can be checked on well-formed files, on every truncation and on bit flips, without model files.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace kvflash::gguf::testing {

class GgufWriter {
 public:
  enum Type : uint32_t { u8 = 0, i8, u16, i16, u32, i32, f32, boolean, string, array, u64, i64, f64 };

  explicit GgufWriter(uint32_t version = 3) : version_(version) {}

  GgufWriter& add_string(const std::string& key, const std::string& value) {
    key_and_type(key, string);
    str(body_, value);
    return *this;
  }
  GgufWriter& add_u32(const std::string& key, uint32_t v) { return scalar(key, u32, v); }
  GgufWriter& add_i32(const std::string& key, int32_t v) { return scalar(key, i32, v); }
  GgufWriter& add_u64(const std::string& key, uint64_t v) { return scalar(key, u64, v); }
  GgufWriter& add_f32(const std::string& key, float v) { return scalar(key, f32, v); }
  GgufWriter& add_bool(const std::string& key, bool v) { return scalar(key, boolean, static_cast<uint8_t>(v)); }

  GgufWriter& add_u32_array(const std::string& key, const std::vector<uint32_t>& values) {
    key_and_type(key, array);
    raw(body_, uint32_t{u32});
    raw(body_, static_cast<uint64_t>(values.size()));
    for (uint32_t v : values) raw(body_, v);
    return *this;
  }
  GgufWriter& add_bool_array(const std::string& key, const std::vector<bool>& values) {
    key_and_type(key, array);
    raw(body_, uint32_t{boolean});
    raw(body_, static_cast<uint64_t>(values.size()));
    for (bool v : values) raw(body_, static_cast<uint8_t>(v));
    return *this;
  }
  GgufWriter& add_string_array(const std::string& key, const std::vector<std::string>& values) {
    key_and_type(key, array);
    raw(body_, uint32_t{string});
    raw(body_, static_cast<uint64_t>(values.size()));
    for (const std::string& v : values) str(body_, v);
    return *this;
  }
  /// An array nested `depth` levels deep around one u8.
  GgufWriter& add_nested_array(const std::string& key, int depth) {
    key_and_type(key, array);
    for (int d = 1; d < depth; ++d) {
      raw(body_, uint32_t{array});
      raw(body_, uint64_t{1});
    }
    raw(body_, uint32_t{u8});
    raw(body_, uint64_t{1});
    raw(body_, uint8_t{7});
    return *this;
  }
  /// Raw bytes appended to the metadata (for hand-made corruption).
  GgufWriter& add_raw(const std::vector<uint8_t>& bytes) {
    body_.insert(body_.end(), bytes.begin(), bytes.end());
    ++n_kv_;
    return *this;
  }
  /// Declares `n` tensors and appends a plausible tensor info for each (a 1-D f32 tensor), then 32 data bytes.
  GgufWriter& tensors(uint64_t n) {
    tensors_ = n;
    return *this;
  }
  GgufWriter& n_kv_override(uint64_t n) {
    n_kv_override_ = n;
    return *this;
  }

  std::vector<uint8_t> bytes() const {
    std::vector<uint8_t> out = {'G', 'G', 'U', 'F'};
    raw(out, version_);
    raw(out, tensors_);
    raw(out, n_kv_override_ ? n_kv_override_ : n_kv_);
    out.insert(out.end(), body_.begin(), body_.end());
    for (uint64_t t = 0; t < tensors_; ++t) {
      str(out, "blk." + std::to_string(t) + ".w");
      raw(out, uint32_t{1});       // n_dims
      raw(out, uint64_t{8});       // ne[0]
      raw(out, uint32_t{0});       // GGML_TYPE_F32
      raw(out, uint64_t{t * 32});  // offset
    }
    out.resize((out.size() + 31) / 32 * 32, 0);  // alignment padding before the data
    out.resize(out.size() + 32 * tensors_, 0xAB);
    return out;
  }

 private:
  template <typename T>
  static void raw(std::vector<uint8_t>& out, T v) {
    uint8_t b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    for (uint8_t byte : b) out.push_back(byte);  // (vector::insert here trips GCC 12's false -Warray-bounds)
  }
  static void str(std::vector<uint8_t>& out, const std::string& s) {
    raw(out, static_cast<uint64_t>(s.size()));
    out.insert(out.end(), s.begin(), s.end());
  }
  void key_and_type(const std::string& key, Type t) {
    str(body_, key);
    raw(body_, static_cast<uint32_t>(t));
    ++n_kv_;
  }
  template <typename T>
  GgufWriter& scalar(const std::string& key, Type t, T v) {
    key_and_type(key, t);
    raw(body_, v);
    return *this;
  }

  uint32_t version_;
  uint64_t tensors_ = 0;
  uint64_t n_kv_ = 0;
  uint64_t n_kv_override_ = 0;
  std::vector<uint8_t> body_;
};

/// A llama-like file: 4 layers, 32 heads over 8 KV heads, embedding 4096 (head dim 128 by default), with a
/// tokenizer vocabulary the reader must skip, and one tensor.
inline GgufWriter llama_like() {
  GgufWriter w;
  w.add_string("general.architecture", "llama")
      .add_string("general.name", "tiny-llama")
      .add_u32("llama.block_count", 4)
      .add_u32("llama.context_length", 8192)
      .add_u32("llama.embedding_length", 4096)
      .add_u32("llama.attention.head_count", 32)
      .add_u32("llama.attention.head_count_kv", 8)
      .add_f32("llama.rope.freq_base", 500000.0f)
      .add_string_array("tokenizer.ggml.tokens", {"<s>", "</s>", "hello", "world"})
      .tensors(1);
  return w;
}

}  // namespace kvflash::gguf::testing
