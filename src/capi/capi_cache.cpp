// C API: the paged KV cache (an opaque handle over kvflash::KvCache).
#include <cstddef>
#include <cstring>
#include <span>
#include <string>

#include "capi/capi_internal.h"
#include "kvflash/kv_cache.h"

struct kvflash_cache {
  kvflash::KvCache cache;
};

using namespace kvflash;

namespace {

// The fields of version 1 of the struct end with max_seq_tokens; a caller built against it passes at least this.
constexpr size_t kConfigV1Size = offsetof(kvflash_cache_config, max_seq_tokens) + sizeof(int64_t);

int bad_config_size(const char* function, size_t size) {
  return capi::fail(invalid_argument(std::string(function) + ": config->struct_size = " + std::to_string(size) +
                                     " is smaller than the " + std::to_string(kConfigV1Size) +
                                     " bytes of kvflash_cache_config (call kvflash_cache_config_init)"));
}

/// `count` floats must be exactly `want` (a mismatch is a shape error in the caller, never a read past the end).
Status check_count(const char* function, const char* name, size_t count, int64_t want, const char* layout) {
  if (want >= 0 && count == static_cast<size_t>(want)) return Status::Ok();
  return invalid_argument(std::string(function) + ": " + name + "_count = " + std::to_string(count) + " but " +
                          layout + " needs " + std::to_string(want) + " floats");
}

/// a * b * c * d, or -1 when it leaves int64 (then no count matches).
int64_t product(std::initializer_list<int64_t> factors) {
  int64_t acc = 1;
  for (int64_t f : factors) {
    if (f < 0 || __builtin_mul_overflow(acc, f, &acc)) return -1;
  }
  return acc;
}

template <typename Body>
int with_cache(const char* function, const kvflash_cache* cache, Body&& body) {
  if (cache == nullptr) return capi::null_argument(function, "cache");
  return capi::guarded(function, [&]() -> int { return body(); });
}

}  // namespace

extern "C" {

void kvflash_cache_config_init(kvflash_cache_config* config) {
  if (config == nullptr) return;
  const KvCacheConfig d;
  *config = kvflash_cache_config{};
  config->struct_size = sizeof(kvflash_cache_config);
  config->n_layers = d.n_layers;
  config->n_head_kv = d.n_head_kv;
  config->d_k = d.d_k;
  config->d_v = d.d_v;
  config->k_type = static_cast<int>(d.k_type);
  config->v_type = static_cast<int>(d.v_type);
  config->page_rows = d.page_rows;
  config->n_pages = d.n_pages;
  config->capacity_tokens = d.capacity_tokens;
  config->max_sequences = d.max_sequences;
  config->max_seq_tokens = d.max_seq_tokens;
}

kvflash_cache* kvflash_cache_create(const kvflash_cache_config* config) {
  static constexpr const char* kFunction = "kvflash_cache_create";
  if (config == nullptr) {
    capi::null_argument(kFunction, "config");
    return nullptr;
  }
  kvflash_cache* out = nullptr;
  capi::guarded(kFunction, [&]() -> int {
    if (config->struct_size < kConfigV1Size) return bad_config_size(kFunction, config->struct_size);
    const auto k = capi::type_from_id(config->k_type);
    const auto v = capi::type_from_id(config->v_type);
    if (!k || !v) {
      return capi::fail(invalid_argument(std::string(kFunction) + ": " + (k ? "v_type = " : "k_type = ") +
                                         std::to_string(k ? config->v_type : config->k_type) + " is not a type id"));
    }
    KvCacheConfig c;
    c.n_layers = config->n_layers;
    c.n_head_kv = config->n_head_kv;
    c.d_k = config->d_k;
    c.d_v = config->d_v;
    c.k_type = *k;
    c.v_type = *v;
    c.page_rows = config->page_rows;
    c.n_pages = config->n_pages;
    c.capacity_tokens = config->capacity_tokens;
    c.max_sequences = config->max_sequences;
    c.max_seq_tokens = config->max_seq_tokens;
    auto cache = KvCache::create(c);
    if (!cache.ok()) return capi::fail(cache.status());
    out = new kvflash_cache{std::move(*cache)};
    return KVFLASH_OK;
  });
  return out;
}

void kvflash_cache_destroy(kvflash_cache* cache) { delete cache; }

int kvflash_cache_get_config(const kvflash_cache* cache, kvflash_cache_config* out) {
  static constexpr const char* kFunction = "kvflash_cache_get_config";
  return with_cache(kFunction, cache, [&]() -> int {
    if (out == nullptr) return capi::null_argument(kFunction, "out");
    if (out->struct_size < kConfigV1Size) return bad_config_size(kFunction, out->struct_size);
    const KvCacheConfig& c = cache->cache.config();
    out->n_layers = c.n_layers;
    out->n_head_kv = c.n_head_kv;
    out->d_k = c.d_k;
    out->d_v = c.d_v;
    out->k_type = static_cast<int>(c.k_type);
    out->v_type = static_cast<int>(c.v_type);
    out->page_rows = c.page_rows;
    out->n_pages = c.n_pages;
    out->capacity_tokens = c.capacity_tokens;
    out->max_sequences = c.max_sequences;
    out->max_seq_tokens = c.max_seq_tokens;
    return KVFLASH_OK;
  });
}

int kvflash_cache_add_sequence(kvflash_cache* cache, int32_t* seq) {
  static constexpr const char* kFunction = "kvflash_cache_add_sequence";
  return with_cache(kFunction, cache, [&]() -> int {
    if (seq == nullptr) return capi::null_argument(kFunction, "seq");
    auto id = cache->cache.add_sequence();
    if (!id.ok()) return capi::fail(id.status());
    *seq = *id;
    return KVFLASH_OK;
  });
}

int kvflash_cache_remove(kvflash_cache* cache, int32_t seq) {
  return with_cache("kvflash_cache_remove", cache, [&]() -> int { return capi::to_c(cache->cache.remove(seq)); });
}

int kvflash_cache_fork(kvflash_cache* cache, int32_t seq, int32_t* new_seq) {
  static constexpr const char* kFunction = "kvflash_cache_fork";
  return with_cache(kFunction, cache, [&]() -> int {
    if (new_seq == nullptr) return capi::null_argument(kFunction, "new_seq");
    auto id = cache->cache.fork(seq);
    if (!id.ok()) return capi::fail(id.status());
    *new_seq = *id;
    return KVFLASH_OK;
  });
}

int kvflash_cache_truncate(kvflash_cache* cache, int32_t seq, int64_t n_tokens) {
  return with_cache("kvflash_cache_truncate", cache,
                    [&]() -> int { return capi::to_c(cache->cache.truncate(seq, n_tokens)); });
}

int kvflash_cache_append(kvflash_cache* cache, int32_t seq, const float* k, size_t k_count, const float* v,
                         size_t v_count, int64_t n_tokens) {
  static constexpr const char* kFunction = "kvflash_cache_append";
  return with_cache(kFunction, cache, [&]() -> int {
    const KvCacheConfig& c = cache->cache.config();
    if (n_tokens < 0) {
      return capi::fail(invalid_argument(std::string(kFunction) + ": n_tokens = " + std::to_string(n_tokens) +
                                         " is negative"));
    }
    KVFLASH_C_RETURN_IF_ERROR(check_count(kFunction, "k", k_count, product({c.n_layers, n_tokens, c.n_head_kv, c.d_k}),
                                          "[n_layers, n_tokens, n_head_kv, d_k]"));
    KVFLASH_C_RETURN_IF_ERROR(check_count(kFunction, "v", v_count, product({c.n_layers, n_tokens, c.n_head_kv, c.d_v}),
                                          "[n_layers, n_tokens, n_head_kv, d_v]"));
    if (k_count > 0 && k == nullptr) return capi::null_argument(kFunction, "k");
    if (v_count > 0 && v == nullptr) return capi::null_argument(kFunction, "v");
    return capi::to_c(cache->cache.append(seq, {k, k_count}, {v, v_count}, n_tokens));
  });
}

int kvflash_cache_extend(kvflash_cache* cache, int32_t seq, int64_t n_tokens, int64_t* first) {
  static constexpr const char* kFunction = "kvflash_cache_extend";
  return with_cache(kFunction, cache, [&]() -> int {
    if (first == nullptr) return capi::null_argument(kFunction, "first");
    auto pos = cache->cache.extend(seq, n_tokens);
    if (!pos.ok()) return capi::fail(pos.status());
    *first = *pos;
    return KVFLASH_OK;
  });
}

int kvflash_cache_write(kvflash_cache* cache, int32_t seq, int64_t layer, int64_t first, const float* k,
                        size_t k_count, const float* v, size_t v_count, int64_t n_tokens) {
  static constexpr const char* kFunction = "kvflash_cache_write";
  return with_cache(kFunction, cache, [&]() -> int {
    const KvCacheConfig& c = cache->cache.config();
    if (n_tokens < 0) {
      return capi::fail(invalid_argument(std::string(kFunction) + ": n_tokens = " + std::to_string(n_tokens) +
                                         " is negative"));
    }
    KVFLASH_C_RETURN_IF_ERROR(check_count(kFunction, "k", k_count, product({n_tokens, c.n_head_kv, c.d_k}),
                                          "[n_tokens, n_head_kv, d_k]"));
    KVFLASH_C_RETURN_IF_ERROR(check_count(kFunction, "v", v_count, product({n_tokens, c.n_head_kv, c.d_v}),
                                          "[n_tokens, n_head_kv, d_v]"));
    if (k_count > 0 && k == nullptr) return capi::null_argument(kFunction, "k");
    if (v_count > 0 && v == nullptr) return capi::null_argument(kFunction, "v");
    return capi::to_c(cache->cache.write(seq, layer, first, {k, k_count}, {v, v_count}, n_tokens));
  });
}

int kvflash_cache_length(const kvflash_cache* cache, int32_t seq, int64_t* length) {
  static constexpr const char* kFunction = "kvflash_cache_length";
  return with_cache(kFunction, cache, [&]() -> int {
    if (length == nullptr) return capi::null_argument(kFunction, "length");
    auto n = cache->cache.length(seq);
    if (!n.ok()) return capi::fail(n.status());
    *length = *n;
    return KVFLASH_OK;
  });
}

int64_t kvflash_cache_pages_free(const kvflash_cache* cache) { return cache ? cache->cache.pages_free() : 0; }
int64_t kvflash_cache_pages_total(const kvflash_cache* cache) { return cache ? cache->cache.pages_total() : 0; }
int64_t kvflash_cache_sequences_free(const kvflash_cache* cache) {
  return cache ? cache->cache.sequences_free() : 0;
}
int64_t kvflash_cache_max_pages_per_seq(const kvflash_cache* cache) {
  return cache ? cache->cache.max_pages_per_seq() : 0;
}
int64_t kvflash_cache_bytes(const kvflash_cache* cache) { return cache ? cache->cache.bytes() : 0; }
int64_t kvflash_cache_layer_bytes(const kvflash_cache* cache) {
  return cache ? cache->cache.layout().layer_bytes : 0;
}

int kvflash_cache_read_row(const kvflash_cache* cache, int32_t seq, int64_t layer, int64_t pos, int64_t head,
                           int is_v, void* dst, size_t size) {
  static constexpr const char* kFunction = "kvflash_cache_read_row";
  return with_cache(kFunction, cache, [&]() -> int {
    if (dst == nullptr) return capi::null_argument(kFunction, "dst");
    auto row = is_v ? cache->cache.v_row(seq, layer, pos, head) : cache->cache.k_row(seq, layer, pos, head);
    if (!row.ok()) return capi::fail(row.status());
    if (size < row->size()) {
      return capi::fail(invalid_argument(std::string(kFunction) + ": size = " + std::to_string(size) +
                                         " is smaller than the row's " + std::to_string(row->size()) + " bytes"));
    }
    std::memcpy(dst, row->data(), row->size());
    return KVFLASH_OK;
  });
}

int kvflash_cache_fill_batch(const kvflash_cache* cache, const int32_t* seqs, size_t n_seqs, int64_t pages_per_seq,
                             int32_t* page_table, size_t page_table_count, int32_t* kv_len, int64_t* n_kv) {
  static constexpr const char* kFunction = "kvflash_cache_fill_batch";
  return with_cache(kFunction, cache, [&]() -> int {
    if (n_seqs > 0 && seqs == nullptr) return capi::null_argument(kFunction, "seqs");
    if (page_table_count > 0 && page_table == nullptr) return capi::null_argument(kFunction, "page_table");
    if (n_seqs > 0 && kv_len == nullptr) return capi::null_argument(kFunction, "kv_len");
    if (n_kv == nullptr) return capi::null_argument(kFunction, "n_kv");
    auto longest = cache->cache.fill_batch({seqs, n_seqs}, pages_per_seq, {page_table, page_table_count},
                                           {kv_len, n_seqs});
    if (!longest.ok()) return capi::fail(longest.status());
    *n_kv = *longest;
    return KVFLASH_OK;
  });
}

int kvflash_problem_set_cache_layer(kvflash_problem* problem, const kvflash_cache* cache, int64_t layer,
                                    const int32_t* page_table, int64_t pages_per_seq) {
  static constexpr const char* kFunction = "kvflash_problem_set_cache_layer";
  if (problem == nullptr) return capi::null_argument(kFunction, "problem");
  return with_cache(kFunction, cache, [&]() -> int {
    auto k = cache->cache.k_view(layer, page_table, pages_per_seq);
    if (!k.ok()) return capi::fail(k.status());
    auto v = cache->cache.v_view(layer, page_table, pages_per_seq);
    if (!v.ok()) return capi::fail(v.status());
    problem->problem.k = *k;
    problem->problem.v = *v;
    problem->k_dense = false;
    problem->v_dense = false;
    return KVFLASH_OK;
  });
}

int kvflash_cache_checkpoint_bytes(const kvflash_cache* cache, int32_t seq, size_t* bytes) {
  static constexpr const char* kFunction = "kvflash_cache_checkpoint_bytes";
  return with_cache(kFunction, cache, [&]() -> int {
    if (bytes == nullptr) return capi::null_argument(kFunction, "bytes");
    auto n = cache->cache.checkpoint_bytes(seq);
    if (!n.ok()) return capi::fail(n.status());
    *bytes = static_cast<size_t>(*n);
    return KVFLASH_OK;
  });
}

int kvflash_cache_checkpoint(const kvflash_cache* cache, int32_t seq, void* buf, size_t size) {
  static constexpr const char* kFunction = "kvflash_cache_checkpoint";
  return with_cache(kFunction, cache, [&]() -> int {
    if (buf == nullptr && size > 0) return capi::null_argument(kFunction, "buf");
    return capi::to_c(cache->cache.checkpoint(seq, std::span<std::byte>(static_cast<std::byte*>(buf), size)));
  });
}

int kvflash_cache_checkpoint_to_file(const kvflash_cache* cache, int32_t seq, const char* path) {
  static constexpr const char* kFunction = "kvflash_cache_checkpoint_to_file";
  return with_cache(kFunction, cache, [&]() -> int {
    if (path == nullptr) return capi::null_argument(kFunction, "path");
    return capi::to_c(cache->cache.checkpoint_to_file(seq, path));
  });
}

int kvflash_cache_restore(kvflash_cache* cache, const void* buf, size_t size, int32_t* seq) {
  static constexpr const char* kFunction = "kvflash_cache_restore";
  return with_cache(kFunction, cache, [&]() -> int {
    if (buf == nullptr && size > 0) return capi::null_argument(kFunction, "buf");
    if (seq == nullptr) return capi::null_argument(kFunction, "seq");
    auto id = cache->cache.restore(std::span<const std::byte>(static_cast<const std::byte*>(buf), size));
    if (!id.ok()) return capi::fail(id.status());
    *seq = *id;
    return KVFLASH_OK;
  });
}

int kvflash_cache_restore_from_file(kvflash_cache* cache, const char* path, int32_t* seq) {
  static constexpr const char* kFunction = "kvflash_cache_restore_from_file";
  return with_cache(kFunction, cache, [&]() -> int {
    if (path == nullptr) return capi::null_argument(kFunction, "path");
    if (seq == nullptr) return capi::null_argument(kFunction, "seq");
    auto id = cache->cache.restore_from_file(path);
    if (!id.ok()) return capi::fail(id.status());
    *seq = *id;
    return KVFLASH_OK;
  });
}

}  // extern "C"
