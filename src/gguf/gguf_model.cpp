// The model shape a GGUF file's metadata describes.
#include <optional>

#include "gguf/gguf_reader.h"
#include "kvflash/attention_problem.h"

namespace kvflash::gguf {
namespace {

// Bounds far beyond any published model; larger values are corruption, and would make the per-layer vectors and
// the plan's loops as large as the file claims.
constexpr int64_t kMaxLayers = 4096;
constexpr int64_t kMaxHeads = 1 << 16;
constexpr int64_t kMaxWindow = int64_t{1} << 31;

class Lookup {
 public:
  Lookup(const Metadata& md, std::string arch) : md_(md), arch_(std::move(arch)) {}

  std::string key(const std::string& suffix) const { return arch_ + "." + suffix; }

  const Value* find(const std::string& full_key) const {
    auto it = md_.values.find(full_key);
    return it == md_.values.end() ? nullptr : &it->second;
  }

  /// An integer scalar in [lo, hi]; nullopt when absent.
  StatusOr<std::optional<int64_t>> scalar(const std::string& suffix, int64_t lo, int64_t hi) const {
    const std::string k = key(suffix);
    const Value* v = find(k);
    if (v == nullptr) return std::optional<int64_t>{};
    if (v->type == ValueType::array || !v->is_integer) {
      return format_error("GGUF key '" + k + "' is not an integer scalar");
    }
    KVFLASH_RETURN_IF_ERROR(in_range(k, v->integer, lo, hi));
    return std::optional<int64_t>{v->integer};
  }

  /// An integer scalar (the same for every layer) or an array with one value per layer, each in [lo, hi];
  /// nullopt when absent.
  StatusOr<std::optional<std::vector<int64_t>>> per_layer(const std::string& suffix, int64_t n_layers, int64_t lo,
                                                          int64_t hi) const {
    const std::string k = key(suffix);
    const Value* v = find(k);
    if (v == nullptr) return std::optional<std::vector<int64_t>>{};
    std::vector<int64_t> out;
    if (v->type != ValueType::array) {
      if (!v->is_integer) return format_error("GGUF key '" + k + "' is not an integer");
      KVFLASH_RETURN_IF_ERROR(in_range(k, v->integer, lo, hi));
      out.assign(static_cast<size_t>(n_layers), v->integer);
      return std::optional<std::vector<int64_t>>{std::move(out)};
    }
    if (!v->elements_kept) {
      return format_error("GGUF key '" + k + "' is an array of " + std::to_string(v->array_length) +
                          " elements that are not integers or booleans");
    }
    if (static_cast<int64_t>(v->integers.size()) != n_layers) {
      return format_error("GGUF key '" + k + "' has " + std::to_string(v->integers.size()) +
                          " elements but block_count = " + std::to_string(n_layers));
    }
    for (size_t l = 0; l < v->integers.size(); ++l) {
      KVFLASH_RETURN_IF_ERROR(in_range(k + "[" + std::to_string(l) + "]", v->integers[l], lo, hi));
    }
    return std::optional<std::vector<int64_t>>{v->integers};
  }

 private:
  static Status in_range(const std::string& k, int64_t value, int64_t lo, int64_t hi) {
    if (value >= lo && value <= hi) return Status::Ok();
    return format_error("GGUF key '" + k + "' = " + std::to_string(value) + " is outside [" + std::to_string(lo) +
                        ", " + std::to_string(hi) + "]");
  }

  const Metadata& md_;
  std::string arch_;
};

/// Period of the sliding-window pattern when the file gives a window but no pattern. These architectures fix the
/// pattern in their reference code rather than in the config: Gemma 2 alternates local and global layers, Gemma 3
/// has five local layers per global one, Command R7B (cohere2) three per global one. Elsewhere a window applies to
/// every layer (as in Mistral 7B v0.1). 0 means every layer slides.
int64_t default_swa_period(const std::string& arch) {
  if (arch == "gemma2") return 2;
  if (arch == "gemma3") return 6;
  if (arch == "cohere2") return 4;
  return 0;
}

/// Layer l slides under a period-n pattern when it is not the last of its group of n (n = 0: all slide).
bool slides_with_period(int64_t period, int64_t layer) { return period == 0 || layer % period < period - 1; }

#define KVFLASH_ASSIGN_OR_RETURN(lhs, expr)         \
  auto lhs##_or = (expr);                           \
  if (!lhs##_or.ok()) return lhs##_or.status();     \
  auto lhs = std::move(*lhs##_or)

}  // namespace

StatusOr<ModelShape> model_from_metadata(const Metadata& md, const std::string& source) {
  auto arch_it = md.values.find("general.architecture");
  if (arch_it == md.values.end() || arch_it->second.type != ValueType::string || arch_it->second.text.empty()) {
    return format_error("GGUF metadata has no string 'general.architecture'");
  }
  const std::string arch = arch_it->second.text;
  const Lookup look(md, arch);

  KVFLASH_ASSIGN_OR_RETURN(block_count, look.scalar("block_count", 1, kMaxLayers));
  if (!block_count) return format_error("GGUF metadata has no '" + look.key("block_count") + "'");
  const int64_t n_layers = *block_count;

  KVFLASH_ASSIGN_OR_RETURN(head_count, look.per_layer("attention.head_count", n_layers, 0, kMaxHeads));
  if (!head_count) return format_error("GGUF metadata has no '" + look.key("attention.head_count") + "'");
  KVFLASH_ASSIGN_OR_RETURN(head_count_kv, look.per_layer("attention.head_count_kv", n_layers, 0, kMaxHeads));
  KVFLASH_ASSIGN_OR_RETURN(embedding, look.scalar("embedding_length", 1, INT32_MAX));
  KVFLASH_ASSIGN_OR_RETURN(key_length, look.scalar("attention.key_length", 1, kMaxHeadDim));
  KVFLASH_ASSIGN_OR_RETURN(value_length, look.scalar("attention.value_length", 1, kMaxHeadDim));
  KVFLASH_ASSIGN_OR_RETURN(key_length_swa, look.scalar("attention.key_length_swa", 1, kMaxHeadDim));
  KVFLASH_ASSIGN_OR_RETURN(value_length_swa, look.scalar("attention.value_length_swa", 1, kMaxHeadDim));
  KVFLASH_ASSIGN_OR_RETURN(context, look.scalar("context_length", 0, INT64_MAX));
  KVFLASH_ASSIGN_OR_RETURN(window, look.scalar("attention.sliding_window", 0, kMaxWindow));
  KVFLASH_ASSIGN_OR_RETURN(kv_lora_rank, look.scalar("attention.kv_lora_rank", 1, kMaxHeadDim));

  // The sliding pattern: a period, or one flag per layer (non-zero = sliding).
  std::vector<bool> sliding(static_cast<size_t>(n_layers), false);
  if (window && *window > 0) {
    const Value* pattern = look.find(look.key("attention.sliding_window_pattern"));
    if (pattern != nullptr && pattern->type == ValueType::array) {
      KVFLASH_ASSIGN_OR_RETURN(flags, look.per_layer("attention.sliding_window_pattern", n_layers, 0, INT64_MAX));
      for (int64_t l = 0; l < n_layers; ++l) sliding[l] = (*flags)[l] != 0;
    } else {
      KVFLASH_ASSIGN_OR_RETURN(period, look.scalar("attention.sliding_window_pattern", 0, kMaxLayers));
      const int64_t p = period ? *period : default_swa_period(arch);
      for (int64_t l = 0; l < n_layers; ++l) sliding[l] = slides_with_period(p, l);
    }
  }

  ModelShape m;
  m.architecture = arch;
  auto name_it = md.values.find("general.name");
  m.name = name_it != md.values.end() && name_it->second.type == ValueType::string && !name_it->second.text.empty()
               ? name_it->second.text
               : arch;
  m.source = source;
  m.max_context = context ? *context : 0;
  m.layers.resize(static_cast<size_t>(n_layers));
  for (int64_t l = 0; l < n_layers; ++l) {
    LayerShape& s = m.layers[l];
    s.n_head_q = (*head_count)[l];
    s.n_head_kv = head_count_kv ? (*head_count_kv)[l] : s.n_head_q;
    if (s.n_head_q == 0) s.n_head_kv = 0;  // a layer without attention (recurrent or MLP-only) keeps no cache
    if (s.n_head_kv == 0) continue;
    // key_length defaults to embedding_length / head_count, value_length to the same.
    int64_t d_default = 0;
    if (embedding && *embedding % s.n_head_q == 0) d_default = *embedding / s.n_head_q;
    s.d_k = key_length ? *key_length : d_default;
    s.d_v = value_length ? *value_length : d_default;
    if (sliding[l]) {
      s.window = *window;
      if (key_length_swa) s.d_k = *key_length_swa;
      if (value_length_swa) s.d_v = *value_length_swa;
    }
    if (s.d_k == 0 || s.d_v == 0) {
      return format_error("GGUF metadata gives no key/value length for layer " + std::to_string(l) + ": '" +
                          look.key("attention.key_length") + "' is absent and '" + look.key("embedding_length") +
                          "' is absent or not a multiple of head_count = " + std::to_string(s.n_head_q));
    }
  }
  // MLA (DeepSeek V2/V3 converted with the latent cache): one KV head whose V is the first kv_lora_rank values of K.
  if (kv_lora_rank) {
    bool latent = true;
    for (const LayerShape& s : m.layers) {
      latent = latent && (s.n_head_kv == 0 || (s.n_head_kv == 1 && s.d_v == *kv_lora_rank && s.d_k > s.d_v));
    }
    m.v_is_view_of_k = latent;
  }
  if (Status s = validate_model(m); !s.ok()) return format_error("GGUF model shape: " + s.message());
  return m;
}

}  // namespace kvflash::gguf

namespace kvflash {

StatusOr<ModelShape> model_from_gguf(const std::string& path) {
  auto md = gguf::read_metadata_file(path);
  if (!md.ok()) return md.status();
  auto m = gguf::model_from_metadata(*md, path);
  if (!m.ok()) return Status(m.status().code(), path + ": " + m.status().message());
  return m;
}

}  // namespace kvflash
