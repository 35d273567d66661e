// Model presets and KV cache sizes.
#include "kvflash/model.h"

#include <array>

#include "kvflash/attention_problem.h"

namespace kvflash {
namespace {

/// A model whose layers all have the same attention.
ModelShape uniform(std::string name, std::string arch, int64_t layers, LayerShape layer, int64_t max_context) {
  ModelShape m;
  m.name = std::move(name);
  m.architecture = std::move(arch);
  m.layers.assign(static_cast<size_t>(layers), layer);
  m.max_context = max_context;
  m.source = "preset";
  return m;
}

// Values from each model's published Hugging Face config.json; the field names are cited so they can be checked.
ModelShape make_preset(std::string_view name) {
  if (name == "llama3-8b") {
    // Meta-Llama-3.1-8B: num_hidden_layers 32, num_attention_heads 32, num_key_value_heads 8, hidden_size 4096
    // (head dim = hidden_size / num_attention_heads = 128), max_position_embeddings 131072.
    return uniform("llama3-8b", "llama", 32, {32, 8, 128, 128, 0}, 131072);
  }
  if (name == "llama3-70b") {
    // Meta-Llama-3.1-70B: num_hidden_layers 80, num_attention_heads 64, num_key_value_heads 8, hidden_size 8192
    // (head dim 128), max_position_embeddings 131072.
    return uniform("llama3-70b", "llama", 80, {64, 8, 128, 128, 0}, 131072);
  }
  if (name == "qwen2.5-7b") {
    // Qwen2.5-7B-Instruct: num_hidden_layers 28, num_attention_heads 28, num_key_value_heads 4, hidden_size 3584
    // (head dim 128), max_position_embeddings 32768; use_sliding_window false.
    return uniform("qwen2.5-7b", "qwen2", 28, {28, 4, 128, 128, 0}, 32768);
  }
  if (name == "gemma-3-12b") {
    // gemma-3-12b-it text_config: num_hidden_layers 48, num_attention_heads 16, num_key_value_heads 8, head_dim 256,
    // sliding_window 1024, sliding_window_pattern 6 (five local layers, then one global),
    // max_position_embeddings 131072.
    ModelShape m = uniform("gemma-3-12b", "gemma3", 48, {16, 8, 256, 256, 0}, 131072);
    for (size_t l = 0; l < m.layers.size(); ++l) {
      if (l % 6 != 5) m.layers[l].window = 1024;
    }
    return m;
  }
  if (name == "gemma-4-class") {
    // A class shape, not one published config: head dim 512 with 8 query heads over 4 KV heads (GQA 2), the shape of
    // seed 001 (Gemma 4 E4B: head_dim = 4096 / 8 = 512) that crashed the anchor. 42 layers, all global, so that it
    // bounds the cache of that class from above.
    return uniform("gemma-4-class", "gemma4", 42, {8, 4, 512, 512, 0}, 131072);
  }
  if (name == "deepseek-v3") {
    // DeepSeek-V3: num_hidden_layers 61, num_attention_heads 128, kv_lora_rank 512, qk_rope_head_dim 64,
    // max_position_embeddings 163840. With MLA the cache holds one latent row per token and layer:
    // K = kv_lora_rank + qk_rope_head_dim = 576 values, V = its first kv_lora_rank = 512 values (a view of K).
    ModelShape m = uniform("deepseek-v3", "deepseek2", 61, {128, 1, 576, 512, 0}, 163840);
    m.v_is_view_of_k = true;
    return m;
  }
  if (name == "phi-3-mini") {
    // Phi-3-mini-128k-instruct: num_hidden_layers 32, num_attention_heads 32, num_key_value_heads 32,
    // hidden_size 3072 (head dim 96), max_position_embeddings 131072.
    return uniform("phi-3-mini", "phi3", 32, {32, 32, 96, 96, 0}, 131072);
  }
  return {};
}

constexpr std::array<std::string_view, 7> kPresetNames = {"llama3-8b",     "llama3-70b",  "qwen2.5-7b", "gemma-3-12b",
                                                          "gemma-4-class", "deepseek-v3", "phi-3-mini"};

std::string layer_field(size_t l, const char* field, int64_t value) {
  return "layer " + std::to_string(l) + ": " + field + " = " + std::to_string(value);
}

}  // namespace

Status validate_model(const ModelShape& m) {
  if (m.layers.empty()) return invalid_argument("model " + m.name + " has no layers");
  bool any_cache = false;
  for (size_t l = 0; l < m.layers.size(); ++l) {
    const LayerShape& s = m.layers[l];
    if (s.n_head_kv == 0) continue;
    any_cache = true;
    if (s.n_head_q < 1) return invalid_argument(layer_field(l, "n_head_q", s.n_head_q) + " must be >= 1");
    if (s.n_head_kv < 0) return invalid_argument(layer_field(l, "n_head_kv", s.n_head_kv) + " must be >= 0");
    if (s.n_head_q % s.n_head_kv != 0) {
      return invalid_argument(layer_field(l, "n_head_q", s.n_head_q) + " is not a multiple of n_head_kv = " +
                              std::to_string(s.n_head_kv));
    }
    if (s.d_k < 1 || s.d_k > kMaxHeadDim) {
      return invalid_argument(layer_field(l, "d_k", s.d_k) + " is outside [1, " + std::to_string(kMaxHeadDim) + "]");
    }
    if (s.d_v < 1 || s.d_v > kMaxHeadDim) {
      return invalid_argument(layer_field(l, "d_v", s.d_v) + " is outside [1, " + std::to_string(kMaxHeadDim) + "]");
    }
    if (m.v_is_view_of_k && s.d_v > s.d_k) {
      return invalid_argument(layer_field(l, "d_v", s.d_v) + " exceeds d_k = " + std::to_string(s.d_k) +
                              " although V is a view of K");
    }
    if (s.window < 0) return invalid_argument(layer_field(l, "window", s.window) + " must be >= 0");
  }
  if (!any_cache) return invalid_argument("model " + m.name + " has no layer with a KV cache (n_head_kv = 0 in all)");
  return Status::Ok();
}

std::span<const std::string_view> model_preset_names() { return kPresetNames; }

StatusOr<ModelShape> model_preset(std::string_view name) {
  ModelShape m = make_preset(name);
  if (m.layers.empty()) {
    std::string known;
    for (std::string_view n : kPresetNames) known += (known.empty() ? "" : ", ") + std::string(n);
    return invalid_argument("model preset '" + std::string(name) + "' is unknown (presets: " + known + ")");
  }
  return m;
}

int64_t layer_tokens(const LayerShape& layer, int64_t context) {
  return layer.window > 0 && layer.window < context ? layer.window : context;
}

int64_t layer_bytes_per_token(const LayerShape& layer, KvType k, KvType v, bool v_is_view_of_k) {
  const int64_t row = head_row_bytes(k, layer.d_k) + (v_is_view_of_k ? 0 : head_row_bytes(v, layer.d_v));
  return layer.n_head_kv * row;
}

StatusOr<std::vector<int64_t>> kv_cache_bytes_per_layer(const ModelShape& m, KvType k, KvType v, int64_t context,
                                                        int64_t n_seq) {
  if (context < 0) return invalid_argument("context = " + std::to_string(context) + " must be >= 0");
  if (n_seq < 1) return invalid_argument("n_seq = " + std::to_string(n_seq) + " must be >= 1");
  std::vector<int64_t> bytes(m.layers.size(), 0);
  int64_t total = 0;
  for (size_t l = 0; l < m.layers.size(); ++l) {
    const LayerShape& s = m.layers[l];
    if (s.n_head_kv == 0) continue;
    struct Row {
      const char* field;
      KvType type;
      int64_t dim;
    };
    const Row rows[] = {{"d_k", k, s.d_k}, {"d_v", m.v_is_view_of_k ? k : v, s.d_v}};
    for (const Row& row : rows) {
      const KvTraits& tr = kv_traits(row.type);
      if (!tr.rotated && row.dim % tr.block_elems != 0) {
        return invalid_argument(layer_field(l, row.field, row.dim) +
                                " is not a multiple of " + std::string(tr.name) + "'s block size " +
                                std::to_string(tr.block_elems));
      }
    }
    const int64_t per_token = layer_bytes_per_token(s, k, v, m.v_is_view_of_k);
    int64_t layer_bytes = 0;
    if (__builtin_mul_overflow(per_token, layer_tokens(s, context), &layer_bytes) ||
        __builtin_mul_overflow(layer_bytes, n_seq, &layer_bytes) || __builtin_add_overflow(total, layer_bytes, &total)) {
      return invalid_argument("KV cache bytes overflow int64 (context = " + std::to_string(context) +
                              ", n_seq = " + std::to_string(n_seq) + ")");
    }
    bytes[l] = layer_bytes;
  }
  return bytes;
}

StatusOr<int64_t> kv_cache_bytes(const ModelShape& m, KvType k, KvType v, int64_t context, int64_t n_seq) {
  auto per_layer = kv_cache_bytes_per_layer(m, k, v, context, n_seq);
  if (!per_layer.ok()) return per_layer.status();
  int64_t total = 0;
  for (int64_t b : *per_layer) total += b;  // no overflow: checked while summing above
  return total;
}

}  // namespace kvflash
