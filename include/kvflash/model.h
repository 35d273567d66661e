// Model shapes: what the KV cache of a model holds per layer, from a preset or a GGUF file's metadata.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kvflash/kv_type.h"
#include "kvflash/status.h"

namespace kvflash {

/// The attention of one layer, as its KV cache sees it.
struct LayerShape {
  int64_t n_head_q = 0;
  int64_t n_head_kv = 0;  // 0: the layer keeps no KV cache (a recurrent or MLP-only block)
  int64_t d_k = 0;
  int64_t d_v = 0;
  int64_t window = 0;     // 0: full attention; else a sliding window of this many keys
};

struct ModelShape {
  std::string name;          // preset name, or the GGUF's general.name / architecture
  std::string architecture;  // "llama", "gemma3", "deepseek2", ...
  std::vector<LayerShape> layers;
  int64_t max_context = 0;   // trained context length (0: unknown); planning never sizes anything from it
  bool v_is_view_of_k = false;  // MLA: V is the first d_v values of each K row, so only K is stored
  std::string source;        // "preset" or the file it was read from
};

/// Checks every layer: heads >= 1 that divide (or n_head_kv = 0), head dims in [1, kMaxHeadDim], at least one
/// layer with a KV cache. The message names the layer and field.
Status validate_model(const ModelShape& m);

/// Names of the built-in presets, in display order.
std::span<const std::string_view> model_preset_names();

/// A built-in preset ("llama3-8b", "gemma-3-12b", ...); an unknown name lists the known ones.
StatusOr<ModelShape> model_preset(std::string_view name);

/// Reads the model shape from a GGUF file's header and metadata (never its tensor data). A malformed file is a
/// format_error naming what is wrong and where.
StatusOr<ModelShape> model_from_gguf(const std::string& path);

/// Tokens a layer keeps for one sequence of `context` tokens: the window for sliding layers, else the context.
int64_t layer_tokens(const LayerShape& layer, int64_t context);

/// Bytes one token adds to a layer's cache: n_head_kv x (row bytes of d_k in K + row bytes of d_v in V), with turbo
/// rows padded (stored_dim); no V term when V is a view of K (MLA).
int64_t layer_bytes_per_token(const LayerShape& layer, KvType k, KvType v, bool v_is_view_of_k);

/// KV cache bytes of each layer for `n_seq` sequences of `context` tokens. Fails when a head dim is not a multiple
/// of a type's block size (the type cannot store it) or the total overflows int64.
StatusOr<std::vector<int64_t>> kv_cache_bytes_per_layer(const ModelShape& m, KvType k, KvType v, int64_t context,
                                                        int64_t n_seq);

/// The sum of kv_cache_bytes_per_layer().
StatusOr<int64_t> kv_cache_bytes(const ModelShape& m, KvType k, KvType v, int64_t context, int64_t n_seq);

}  // namespace kvflash
