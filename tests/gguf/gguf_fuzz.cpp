// libFuzzer target: GGUF metadata parsing and the model shape derived from it, under ASan and UBSan. Any input
// must give a shape or a Status; a crash, a leak, an overflow or an out-of-bounds read is a bug.
#include <cstddef>
#include <cstdint>

#include "gguf/gguf_reader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto md = kvflash::gguf::read_metadata({data, size});
  if (!md.ok()) return 0;
  auto m = kvflash::gguf::model_from_metadata(*md, "fuzz");
  if (!m.ok()) return 0;
  // A shape that came out must be usable for sizing without overflow surprises.
  for (const kvflash::KvTraits& t : kvflash::all_kv_types()) {
    (void)kvflash::kv_cache_bytes(*m, t.type, t.type, 131072, 4);
  }
  return 0;
}
