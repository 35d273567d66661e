// GGUF metadata reader: the header and the key/value pairs, never the tensor infos or tensor data.
//
// Layout (GGUF spec, versions 2 and 3; little-endian): magic "GGUF", uint32 version, uint64 tensor_count,
// uint64 metadata_kv_count, then metadata_kv_count pairs of (string key, uint32 value type, value). A string is a
// uint64 byte length and its bytes; an array is a uint32 element type, a uint64 count and the elements.
// Every count and length is checked against the bytes left in the file before anything is read or reserved, so a
// corrupted or hostile file gives a format_error naming the key and the value, never a huge allocation or a read
// past the end.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "kvflash/model.h"
#include "kvflash/status.h"

namespace kvflash::gguf {

enum class ValueType : uint32_t {
  u8 = 0, i8 = 1, u16 = 2, i16 = 3, u32 = 4, i32 = 5, f32 = 6, boolean = 7, string = 8, array = 9, u64 = 10,
  i64 = 11, f64 = 12,
};

/// A metadata value as far as the model shape needs it: integers, floats, booleans and strings, scalars or flat
/// arrays of them. Arrays of strings (tokenizer vocabularies) and long arrays are skipped, not stored.
struct Value {
  ValueType type = ValueType::u8;        // for arrays, ValueType::array
  ValueType element_type = ValueType::u8;  // arrays: the element type
  bool is_integer = false, is_float = false;
  int64_t integer = 0;   // integer scalars and booleans (u64 above INT64_MAX are rejected)
  double real = 0;       // float scalars
  std::string text;      // strings
  std::vector<int64_t> integers;  // arrays of integers or booleans
  uint64_t array_length = 0;      // arrays: element count (also when the elements were skipped)
  bool elements_kept = false;     // arrays: whether `integers` holds them
};

struct Metadata {
  uint32_t version = 0;
  uint64_t tensor_count = 0;
  std::map<std::string, Value> values;  // by key
  uint64_t bytes_read = 0;              // offset of the first byte after the key/value pairs
};

/// Limits that keep a hostile file from costing memory or time.
inline constexpr uint64_t kMaxKeyBytes = 65535;            // the spec's bound on key length
inline constexpr uint64_t kMaxKeptStringBytes = 1 << 20;   // strings longer than this are skipped
inline constexpr uint64_t kMaxKeptArrayElements = 1 << 16; // per-layer arrays are a few hundred elements
inline constexpr int kMaxArrayNesting = 2;                 // arrays of arrays; deeper nesting is rejected

/// Parses metadata from bytes in memory (the fuzzer's entry point).
StatusOr<Metadata> read_metadata(std::span<const uint8_t> bytes);

/// Parses metadata from a file, reading only the header and the key/value pairs.
StatusOr<Metadata> read_metadata_file(const std::string& path);

/// The model shape metadata describes: general.architecture, <arch>.block_count, .attention.head_count and
/// .head_count_kv (scalars or per-layer arrays), .attention.key_length / .value_length (default
/// embedding_length / head_count), their _swa variants for sliding layers, .context_length, .attention.sliding_window
/// and .attention.sliding_window_pattern (a period or a per-layer bool array; arch defaults otherwise).
StatusOr<ModelShape> model_from_metadata(const Metadata& md, const std::string& source);

}  // namespace kvflash::gguf
