// The GGUF metadata reader: model shapes from well-formed files, and a clear Status for every malformed one
// (truncations at every byte, bit flips, absurd counts, wrong magic or version). The fuzz target in this folder
// searches the same space further.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "gguf/gguf_reader.h"
#include "gguf/gguf_writer.h"

namespace kvflash::gguf {
namespace {

using testing::GgufWriter;
using testing::llama_like;

StatusOr<ModelShape> shape_of(const std::vector<uint8_t>& bytes) {
  auto md = read_metadata(bytes);
  if (!md.ok()) return md.status();
  return model_from_metadata(*md, "test");
}

std::string temp_file(const std::string& name, const std::vector<uint8_t>& bytes) {
  const auto dir = std::filesystem::temp_directory_path() / ("kvflash_gguf_test_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / name).string();
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()),
                                             static_cast<std::streamsize>(bytes.size()));
  return path;
}

void expect_format_error(const std::vector<uint8_t>& bytes, const std::string& message_part) {
  auto m = shape_of(bytes);
  ASSERT_FALSE(m.ok()) << "expected an error containing: " << message_part;
  EXPECT_EQ(m.status().code(), StatusCode::format_error) << m.status().message();
  EXPECT_NE(m.status().message().find(message_part), std::string::npos) << m.status().message() << "\nwanted: " << message_part;
}

TEST(GgufModel, LlamaLikeShapeFromTheMetadata) {
  auto m = shape_of(llama_like().bytes());
  ASSERT_TRUE(m.ok()) << m.status().message();
  EXPECT_EQ(m->name, "tiny-llama");
  EXPECT_EQ(m->architecture, "llama");
  EXPECT_EQ(m->max_context, 8192);
  ASSERT_EQ(m->layers.size(), 4u);
  for (const LayerShape& l : m->layers) {
    EXPECT_EQ(l.n_head_q, 32);
    EXPECT_EQ(l.n_head_kv, 8);
    EXPECT_EQ(l.d_k, 128);  // embedding_length / head_count
    EXPECT_EQ(l.d_v, 128);
    EXPECT_EQ(l.window, 0);
  }
  EXPECT_FALSE(m->v_is_view_of_k);
}

TEST(GgufModel, FromAFileReadsNeitherTensorInfosNorData) {
  const std::vector<uint8_t> bytes = llama_like().bytes();
  auto md = read_metadata(bytes);
  ASSERT_TRUE(md.ok());
  // Cut the file right after the metadata plus room for the declared tensor's info: no tensor data at all.
  std::vector<uint8_t> cut(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(md->bytes_read) + 33);
  auto m = model_from_gguf(temp_file("cut.gguf", cut));
  ASSERT_TRUE(m.ok()) << m.status().message();
  EXPECT_EQ(m->layers.size(), 4u);
  EXPECT_NE(m->source.find("cut.gguf"), std::string::npos);
}

TEST(GgufModel, Gemma3SlidingLayersFromTheArchitecturesPattern) {
  GgufWriter w;
  w.add_string("general.architecture", "gemma3")
      .add_u32("gemma3.block_count", 12)
      .add_u32("gemma3.attention.head_count", 16)
      .add_u32("gemma3.attention.head_count_kv", 8)
      .add_u32("gemma3.attention.key_length", 256)
      .add_u32("gemma3.attention.value_length", 256)
      .add_u32("gemma3.attention.sliding_window", 1024)
      .add_u32("gemma3.context_length", 131072);
  auto m = shape_of(w.bytes());
  ASSERT_TRUE(m.ok()) << m.status().message();
  for (size_t l = 0; l < 12; ++l) EXPECT_EQ(m->layers[l].window, l % 6 == 5 ? 0 : 1024) << l;
  EXPECT_EQ(m->name, "gemma3");
}

TEST(GgufModel, PerLayerPatternHeadsAndSlidingHeadDims) {
  // Gemma-4-like: a bool per layer (true = sliding), per-layer KV heads, other head dims on sliding layers.
  GgufWriter w;
  w.add_string("general.architecture", "gemma4")
      .add_u32("gemma4.block_count", 6)
      .add_u32("gemma4.attention.head_count", 8)
      .add_u32_array("gemma4.attention.head_count_kv", {4, 4, 2, 4, 4, 2})
      .add_u32("gemma4.attention.key_length", 512)
      .add_u32("gemma4.attention.value_length", 512)
      .add_u32("gemma4.attention.key_length_swa", 256)
      .add_u32("gemma4.attention.value_length_swa", 256)
      .add_u32("gemma4.attention.sliding_window", 512)
      .add_bool_array("gemma4.attention.sliding_window_pattern", {true, true, false, true, true, false});
  auto m = shape_of(w.bytes());
  ASSERT_TRUE(m.ok()) << m.status().message();
  const int64_t kv_heads[] = {4, 4, 2, 4, 4, 2};
  for (size_t l = 0; l < 6; ++l) {
    const bool sliding = l % 3 != 2;
    EXPECT_EQ(m->layers[l].n_head_kv, kv_heads[l]);
    EXPECT_EQ(m->layers[l].window, sliding ? 512 : 0);
    EXPECT_EQ(m->layers[l].d_k, sliding ? 256 : 512);
  }
  EXPECT_EQ(m->max_context, 0) << "no context_length key";
}

TEST(GgufModel, IntegerPatternAndRecurrentLayers) {
  GgufWriter w;
  w.add_string("general.architecture", "hybrid")
      .add_u32("hybrid.block_count", 6)
      .add_u32("hybrid.attention.head_count", 4)
      .add_u32_array("hybrid.attention.head_count_kv", {0, 2, 0, 2, 0, 2})
      .add_u32("hybrid.embedding_length", 256)
      .add_u32("hybrid.attention.sliding_window", 64)
      .add_u32("hybrid.attention.sliding_window_pattern", 2);
  auto m = shape_of(w.bytes());
  ASSERT_TRUE(m.ok()) << m.status().message();
  EXPECT_EQ(m->layers[0].n_head_kv, 0);
  EXPECT_EQ(m->layers[1].n_head_kv, 2);
  EXPECT_EQ(m->layers[1].d_k, 64);
  EXPECT_EQ(m->layers[1].window, 0) << "period 2: layers 1, 3, 5 are global";
  EXPECT_EQ(m->layers[2].window, 0) << "no cache, no window";
  EXPECT_EQ(*kv_cache_bytes(*m, KvType::f16, KvType::f16, 100, 1), 3LL * 100 * 2 * (128 + 128));
}

TEST(GgufModel, DeepSeekLatentCacheIsOneKvHeadWithVInsideK) {
  GgufWriter w;
  w.add_string("general.architecture", "deepseek2")
      .add_u32("deepseek2.block_count", 3)
      .add_u32("deepseek2.attention.head_count", 128)
      .add_u32("deepseek2.attention.head_count_kv", 1)
      .add_u32("deepseek2.attention.key_length", 576)
      .add_u32("deepseek2.attention.value_length", 512)
      .add_u32("deepseek2.attention.kv_lora_rank", 512)
      .add_u32("deepseek2.context_length", 163840);
  auto m = shape_of(w.bytes());
  ASSERT_TRUE(m.ok()) << m.status().message();
  EXPECT_TRUE(m->v_is_view_of_k);
  EXPECT_EQ(m->layers[0].d_k, 576);
  EXPECT_EQ(*kv_cache_bytes(*m, KvType::f16, KvType::f16, 10, 1), 3LL * 10 * 1152);
}

TEST(GgufErrors, HeaderProblems) {
  std::vector<uint8_t> bytes = llama_like().bytes();
  bytes[0] = 'X';
  expect_format_error(bytes, "not a GGUF file: magic is 0x58475546");
  expect_format_error(GgufWriter(1).add_u32("a.b", 1).bytes(), "GGUF version 1 is not supported (2 or 3)");
  expect_format_error(GgufWriter(4).add_u32("a.b", 1).bytes(), "GGUF version 4 is not supported");
  expect_format_error(GgufWriter(0x03000000).add_u32("a.b", 1).bytes(), "(a big-endian file?)");
  expect_format_error({'G', 'G', 'U', 'F', 3, 0}, "GGUF truncated: the version needs 4 bytes at offset 4");
  expect_format_error({}, "GGUF truncated: the magic needs 4 bytes at offset 0 but the file has 0 bytes");
  EXPECT_TRUE(shape_of(GgufWriter(2).add_string("general.architecture", "llama").bytes()).status().message().find(
                  "llama.block_count") != std::string::npos);
}

TEST(GgufErrors, AbsurdCountsAndLengths) {
  expect_format_error(llama_like().n_kv_override(uint64_t{1} << 40).bytes(),
                      "metadata_kv_count = 1099511627776 is more pairs than");
  expect_format_error(GgufWriter().bytes(), "no string 'general.architecture'");
  GgufWriter many_tensors = llama_like();
  std::vector<uint8_t> bytes = many_tensors.bytes();
  const uint64_t absurd = uint64_t{1} << 50;
  std::memcpy(bytes.data() + 8, &absurd, 8);
  expect_format_error(bytes, "tensor_count = 1125899906842624 is more tensors than");

  // A string value whose length runs past the end of the file.
  std::vector<uint8_t> raw = {3, 0, 0, 0, 0, 0, 0, 0, 'k', '.', 'x', 8, 0, 0, 0};
  const uint64_t long_len = uint64_t{1} << 50;
  raw.insert(raw.end(), reinterpret_cast<const uint8_t*>(&long_len), reinterpret_cast<const uint8_t*>(&long_len) + 8);
  expect_format_error(GgufWriter().add_raw(raw).bytes(), "key 'k.x' has a string of 1125899906842624 bytes");

  // An array claiming more elements than bytes remain.
  std::vector<uint8_t> arr = {3, 0, 0, 0, 0, 0, 0, 0, 'k', '.', 'a', 9, 0, 0, 0, 4, 0, 0, 0};
  const uint64_t count = uint64_t{1} << 40;
  arr.insert(arr.end(), reinterpret_cast<const uint8_t*>(&count), reinterpret_cast<const uint8_t*>(&count) + 8);
  expect_format_error(GgufWriter().add_raw(arr).bytes(), "array 'k.a' claims 1099511627776 elements of at least 4");

  // A key longer than the spec allows, and an empty key.
  std::vector<uint8_t> key = {0, 0, 1, 0, 0, 0, 0, 0};  // 65536
  // (A declared tensor gives the file enough bytes for the pair count to be plausible.)
  expect_format_error(GgufWriter().add_raw(key).tensors(1).bytes(), "metadata key 0 has length 65536");
  expect_format_error(GgufWriter().add_raw(std::vector<uint8_t>(8, 0)).tensors(1).bytes(),
                      "metadata key 0 has length 0");
}

TEST(GgufErrors, TypesNestingAndDuplicates) {
  std::vector<uint8_t> bad_type = {3, 0, 0, 0, 0, 0, 0, 0, 'k', '.', 't', 13, 0, 0, 0, 0};
  expect_format_error(GgufWriter().add_raw(bad_type).bytes(), "key 'k.t' has value type 13, not a GGUF type");
  EXPECT_TRUE(read_metadata(llama_like().add_nested_array("x.nested", 2).bytes()).ok());
  expect_format_error(llama_like().add_nested_array("x.nested", 3).bytes(), "key 'x.nested' nests arrays 3 deep");
  expect_format_error(llama_like().add_u32("llama.block_count", 5).bytes(),
                      "key 'llama.block_count' appears twice");
}

TEST(GgufErrors, ShapesOutsideTheirRanges) {
  expect_format_error(llama_like().add_u32("llama.attention.key_length", 4096).bytes(),
                      "'llama.attention.key_length' = 4096 is outside [1, 1024]");
  GgufWriter w;
  w.add_string("general.architecture", "llama").add_u32("llama.block_count", 1000000);
  expect_format_error(w.bytes(), "'llama.block_count' = 1000000 is outside [1, 4096]");
  GgufWriter arr;
  arr.add_string("general.architecture", "llama")
      .add_u32("llama.block_count", 3)
      .add_u32_array("llama.attention.head_count", {8, 8})
      .add_u32("llama.embedding_length", 512);
  expect_format_error(arr.bytes(), "'llama.attention.head_count' has 2 elements but block_count = 3");
  GgufWriter ratio;
  ratio.add_string("general.architecture", "llama")
      .add_u32("llama.block_count", 2)
      .add_u32("llama.attention.head_count", 8)
      .add_u32("llama.attention.head_count_kv", 3)
      .add_u32("llama.embedding_length", 512);
  expect_format_error(ratio.bytes(), "layer 0: n_head_q = 8 is not a multiple of n_head_kv = 3");
  GgufWriter no_dims;
  no_dims.add_string("general.architecture", "llama")
      .add_u32("llama.block_count", 2)
      .add_u32("llama.attention.head_count", 7)
      .add_u32("llama.embedding_length", 512);
  expect_format_error(no_dims.bytes(), "gives no key/value length for layer 0");
  expect_format_error(llama_like().add_string("llama.context_length", "long").bytes(), "appears twice");
  expect_format_error(llama_like().add_string("llama.attention.key_length", "long").bytes(),
                      "'llama.attention.key_length' is not an integer scalar");
}

TEST(GgufErrors, FilesThatCannotBeRead) {
  auto missing = model_from_gguf("/nonexistent/dir/model.gguf");
  EXPECT_EQ(missing.status().code(), StatusCode::io_error);
  EXPECT_NE(missing.status().message().find("no such file"), std::string::npos);
  auto dir = model_from_gguf(std::filesystem::temp_directory_path().string());
  EXPECT_EQ(dir.status().code(), StatusCode::io_error);
  auto bad = model_from_gguf(temp_file("bad.gguf", {'G', 'G', 'U', 'F', 9, 0, 0, 0}));
  EXPECT_EQ(bad.status().code(), StatusCode::format_error);
  EXPECT_NE(bad.status().message().find("bad.gguf: GGUF version 9"), std::string::npos) << bad.status().message();
}

TEST(GgufRobustness, EveryTruncationIsAFormatError) {
  for (const std::vector<uint8_t>& bytes : {llama_like().bytes(), llama_like().add_nested_array("z.n", 2).bytes()}) {
    auto md = read_metadata(bytes);
    ASSERT_TRUE(md.ok());
    for (size_t n = 0; n < md->bytes_read; ++n) {
      const std::vector<uint8_t> cut(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(n));
      auto r = read_metadata(cut);
      ASSERT_FALSE(r.ok()) << "prefix of " << n << " bytes parsed";
      EXPECT_EQ(r.status().code(), StatusCode::format_error) << r.status().message();
      EXPECT_FALSE(r.status().message().empty());
    }
  }
}

TEST(GgufRobustness, BitFlipsGiveAShapeOrAClearError) {
  std::mt19937_64 rng(2024);
  const std::vector<uint8_t> base = llama_like().add_bool_array("llama.x", {true, false}).bytes();
  int parsed = 0, rejected = 0;
  for (int trial = 0; trial < 20000; ++trial) {
    std::vector<uint8_t> bytes = base;
    const int flips = 1 + static_cast<int>(rng() % 3);
    for (int f = 0; f < flips; ++f) bytes[rng() % bytes.size()] ^= static_cast<uint8_t>(1u << (rng() % 8));
    auto m = shape_of(bytes);
    if (m.ok()) {
      ++parsed;
      EXPECT_TRUE(validate_model(*m).ok());
    } else {
      ++rejected;
      EXPECT_EQ(m.status().code(), StatusCode::format_error) << m.status().message();
    }
  }
  // Both outcomes occur: flips in names or float values leave a readable file, flips in counts do not.
  EXPECT_GT(parsed, 0);
  EXPECT_GT(rejected, 0);
}

}  // namespace
}  // namespace kvflash::gguf
