// Writes the fuzzer's seed corpus: well-formed GGUF headers of the shapes the reader handles (so that the fuzzer
// starts inside the format instead of rediscovering the magic).
#include <cstdio>
#include <fstream>
#include <string>

#include "gguf/gguf_writer.h"

using kvflash::gguf::testing::GgufWriter;

namespace {

void write(const std::string& dir, const std::string& name, const std::vector<uint8_t>& bytes) {
  std::ofstream(dir + "/" + name, std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_gguf_corpus DIR\n");
    return 2;
  }
  const std::string dir = argv[1];
  write(dir, "llama.gguf", kvflash::gguf::testing::llama_like().bytes());
  GgufWriter gemma;
  gemma.add_string("general.architecture", "gemma4")
      .add_u32("gemma4.block_count", 6)
      .add_u32("gemma4.attention.head_count", 8)
      .add_u32_array("gemma4.attention.head_count_kv", {4, 4, 2, 4, 4, 2})
      .add_u32("gemma4.attention.key_length", 512)
      .add_u32("gemma4.attention.key_length_swa", 256)
      .add_u32("gemma4.attention.sliding_window", 512)
      .add_bool_array("gemma4.attention.sliding_window_pattern", {true, true, false, true, true, false})
      .add_nested_array("gemma4.nested", 2);
  write(dir, "gemma4.gguf", gemma.bytes());
  GgufWriter ds(2);
  ds.add_string("general.architecture", "deepseek2")
      .add_u32("deepseek2.block_count", 3)
      .add_u32("deepseek2.attention.head_count", 128)
      .add_u32("deepseek2.attention.head_count_kv", 1)
      .add_u32("deepseek2.attention.key_length", 576)
      .add_u32("deepseek2.attention.value_length", 512)
      .add_u32("deepseek2.attention.kv_lora_rank", 512)
      .add_u64("deepseek2.context_length", 163840)
      .add_i32("deepseek2.x", -1)
      .add_f32("deepseek2.y", 0.5f);
  write(dir, "deepseek2.gguf", ds.bytes());
  return 0;
}
