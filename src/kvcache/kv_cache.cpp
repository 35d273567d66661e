// KvCache: construction, sequences, append with quantize-on-write, copy-on-write, views. Checkpoints live in
// checkpoint.cpp.
#include "kvflash/kv_cache.h"

#include <algorithm>
#include <array>
#include <climits>
#include <cstring>
#include <new>
#include <string>
#include <type_traits>
#include <utility>

#include "kvcache/device_transfer.h"
#include "kvflash/quantize.h"

namespace kvflash {
namespace {

// a * b, or false when the product leaves int64.
bool checked_mul(int64_t a, int64_t b, int64_t* out) { return !__builtin_mul_overflow(a, b, out); }

int64_t round_up(int64_t v, int64_t to) { return (v + to - 1) / to * to; }

bool valid_type(KvType t) { return static_cast<int>(t) < kKvTypeCount; }

std::string str(int64_t v) { return std::to_string(v); }

Status check_head_dim(const char* field, int64_t d, KvType type, const char* type_field) {
  if (!valid_type(type)) {
    return invalid_argument(std::string("KvCacheConfig.") + type_field + " = " +
                            str(static_cast<int>(type)) + " is not a KvType");
  }
  if (d < 1 || d > kMaxHeadDim) {
    return invalid_argument(std::string("KvCacheConfig.") + field + " = " + str(d) + " is outside [1, " +
                            str(kMaxHeadDim) + "]");
  }
  const KvTraits& tr = kv_traits(type);
  // Turbo rows are zero-padded to whole rotation groups; every other block type needs whole blocks.
  if (!tr.rotated && d % tr.block_elems != 0) {
    return invalid_argument(std::string("KvCacheConfig.") + field + " = " + str(d) + " is not a multiple of " +
                            std::string(tr.name) + "'s block of " + str(tr.block_elems) + " values");
  }
  return Status::Ok();
}

// Validates the config and resolves n_pages and max_seq_tokens.
Status resolve_config(KvCacheConfig* c) {
  auto bad = [](const char* field, int64_t v, const std::string& why) {
    return invalid_argument(std::string("KvCacheConfig.") + field + " = " + str(v) + " " + why);
  };
  if (c->n_layers < 1) return bad("n_layers", c->n_layers, "must be >= 1");
  if (c->n_head_kv < 1) return bad("n_head_kv", c->n_head_kv, "must be >= 1");
  KVFLASH_RETURN_IF_ERROR(check_head_dim("d_k", c->d_k, c->k_type, "k_type"));
  KVFLASH_RETURN_IF_ERROR(check_head_dim("d_v", c->d_v, c->v_type, "v_type"));
  if (c->page_rows < 1) return bad("page_rows", c->page_rows, "must be >= 1");
  if (c->n_pages < 0) return bad("n_pages", c->n_pages, "must be >= 0");
  if (c->capacity_tokens < 0) return bad("capacity_tokens", c->capacity_tokens, "must be >= 0");
  if ((c->n_pages > 0) == (c->capacity_tokens > 0)) {
    return invalid_argument("KvCacheConfig: exactly one of n_pages = " + str(c->n_pages) +
                            " and capacity_tokens = " + str(c->capacity_tokens) + " must be > 0");
  }
  if (c->n_pages == 0) c->n_pages = (c->capacity_tokens + c->page_rows - 1) / c->page_rows;
  // Page indices are int32 in page tables (AttentionProblem's PageTable).
  if (c->n_pages > INT32_MAX) return bad("n_pages", c->n_pages, "exceeds 2^31 - 1 (page indices are int32)");
  int64_t capacity = 0;
  if (!checked_mul(c->n_pages, c->page_rows, &capacity)) {
    return bad("page_rows", c->page_rows, "times n_pages = " + str(c->n_pages) + " overflows int64");
  }
  c->capacity_tokens = capacity;
  if (c->max_sequences < 1 || c->max_sequences > INT32_MAX) {
    return bad("max_sequences", c->max_sequences, "is outside [1, 2^31 - 1]");
  }
  if (c->max_seq_tokens < 0) return bad("max_seq_tokens", c->max_seq_tokens, "must be >= 0");
  if (c->max_seq_tokens == 0) c->max_seq_tokens = std::min<int64_t>(capacity, INT32_MAX);
  if (c->max_seq_tokens > capacity) {
    return bad("max_seq_tokens", c->max_seq_tokens,
               "exceeds the cache's capacity n_pages * page_rows = " + str(capacity) + " tokens");
  }
  // kv_len is int32 in an AttentionProblem.
  if (c->max_seq_tokens > INT32_MAX) {
    return bad("max_seq_tokens", c->max_seq_tokens, "exceeds 2^31 - 1 (kv_len is int32)");
  }
  return Status::Ok();
}

Status compute_layout(const KvCacheConfig& c, KvCacheLayout* l) {
  l->n_layers = c.n_layers;
  l->n_pages = c.n_pages;
  l->page_rows = c.page_rows;
  l->n_head_kv = c.n_head_kv;
  l->k_row_bytes = head_row_bytes(c.k_type, c.d_k);
  l->v_row_bytes = head_row_bytes(c.v_type, c.d_v);
  const auto too_big = [&] {
    return invalid_argument("KvCacheConfig: n_layers = " + str(c.n_layers) + ", n_head_kv = " + str(c.n_head_kv) +
                            ", page_rows = " + str(c.page_rows) + ", n_pages = " + str(c.n_pages) +
                            " need more than 2^63 bytes");
  };
  int64_t head_rows = 0, k_pool = 0, v_pool = 0;
  if (!checked_mul(c.n_head_kv, c.page_rows, &head_rows) || !checked_mul(head_rows, l->k_row_bytes, &l->k_page_bytes) ||
      !checked_mul(head_rows, l->v_row_bytes, &l->v_page_bytes) || !checked_mul(c.n_pages, l->k_page_bytes, &k_pool) ||
      !checked_mul(c.n_pages, l->v_page_bytes, &v_pool) || k_pool > INT64_MAX / 4 || v_pool > INT64_MAX / 4) {
    return too_big();
  }
  l->k_pool_bytes = round_up(k_pool, KvCacheLayout::kPoolAlign);
  l->v_pool_bytes = round_up(v_pool, KvCacheLayout::kPoolAlign);
  l->layer_bytes = l->k_pool_bytes + l->v_pool_bytes;
  if (!checked_mul(c.n_layers, l->layer_bytes, &l->arena_bytes)) return too_big();
  return Status::Ok();
}

}  // namespace

void KvCache::ArenaDeleter::operator()(std::byte* p) const {
  ::operator delete[](p, std::align_val_t(KvCacheLayout::kPoolAlign));
}

// A moved-from cache holds no pages, slots or layers, so that every later call on it fails cleanly.
KvCache::KvCache(KvCache&& other) noexcept { *this = std::move(other); }

KvCache& KvCache::operator=(KvCache&& other) noexcept {
  config_ = std::exchange(other.config_, KvCacheConfig{});
  layout_ = std::exchange(other.layout_, KvCacheLayout{});
  max_pages_per_seq_ = std::exchange(other.max_pages_per_seq_, 0);
  host_arena_ = std::move(other.host_arena_);
  device_arena_ = std::move(other.device_arena_);
  arena_ = std::exchange(other.arena_, nullptr);
  staging_ = std::exchange(other.staging_, {});
  batch_table_ = std::exchange(other.batch_table_, {});
  device_tables_ = std::move(other.device_tables_);
  refcount_ = std::exchange(other.refcount_, {});
  free_pages_ = std::exchange(other.free_pages_, {});
  n_free_pages_ = std::exchange(other.n_free_pages_, 0);
  page_tables_ = std::exchange(other.page_tables_, {});
  seqs_ = std::exchange(other.seqs_, {});
  free_seqs_ = std::exchange(other.free_seqs_, {});
  n_free_seqs_ = std::exchange(other.n_free_seqs_, 0);
  return *this;
}

KvCache::~KvCache() = default;

StatusOr<KvCache> KvCache::create(const KvCacheConfig& config, DeviceAllocator* allocator) {
  KvCache cache;
  cache.config_ = config;
  KVFLASH_RETURN_IF_ERROR(resolve_config(&cache.config_));
  const KvCacheConfig& c = cache.config_;
  KVFLASH_RETURN_IF_ERROR(compute_layout(c, &cache.layout_));
  cache.max_pages_per_seq_ = cache.pages_for(c.max_seq_tokens);
  int64_t table_entries = 0;
  if (!checked_mul(c.max_sequences, cache.max_pages_per_seq_, &table_entries)) {
    return invalid_argument("KvCacheConfig.max_sequences = " + str(c.max_sequences) + " times " +
                            str(cache.max_pages_per_seq_) + " pages per sequence overflows int64");
  }
  const int64_t arena_bytes = cache.layout_.arena_bytes;
  if (cache.on_device()) {
    KVFLASH_RETURN_IF_ERROR(cache.create_device_storage(allocator, table_entries));
  } else {
    cache.host_arena_.reset(static_cast<std::byte*>(::operator new[](
        static_cast<size_t>(arena_bytes), std::align_val_t(KvCacheLayout::kPoolAlign), std::nothrow)));
    cache.arena_ = cache.host_arena_.get();
  }
  if (cache.arena_ == nullptr) {
    return out_of_memory("kv cache: could not allocate the " + str(arena_bytes) + "-byte arena (" +
                         str(c.n_pages) + " pages of " + str(cache.layout_.k_page_bytes + cache.layout_.v_page_bytes) +
                         " bytes x " + str(c.n_layers) + " layers)");
  }
  try {
    cache.refcount_.assign(static_cast<size_t>(c.n_pages), 0);
    cache.free_pages_.resize(static_cast<size_t>(c.n_pages));
    cache.page_tables_.assign(static_cast<size_t>(table_entries), 0);
    cache.seqs_.resize(static_cast<size_t>(c.max_sequences));
    cache.free_seqs_.resize(static_cast<size_t>(c.max_sequences));
  } catch (const std::bad_alloc&) {
    return out_of_memory("kv cache: could not allocate page tables for " + str(c.max_sequences) + " sequences x " +
                         str(cache.max_pages_per_seq_) + " pages");
  }
  // Stacks pop from the back; filling them in descending order hands out page 0 and sequence 0 first.
  for (int64_t i = 0; i < c.n_pages; ++i) cache.free_pages_[i] = static_cast<int32_t>(c.n_pages - 1 - i);
  for (int64_t i = 0; i < c.max_sequences; ++i) cache.free_seqs_[i] = static_cast<SeqId>(c.max_sequences - 1 - i);
  cache.n_free_pages_ = c.n_pages;
  cache.n_free_seqs_ = c.max_sequences;
  return cache;
}

int64_t KvCache::bytes() const {
  const auto vec_bytes = [](const auto& v) {
    return static_cast<int64_t>(v.capacity() * sizeof(typename std::decay_t<decltype(v)>::value_type));
  };
  return layout_.arena_bytes + vec_bytes(refcount_) + vec_bytes(free_pages_) + vec_bytes(page_tables_) +
         vec_bytes(seqs_) + vec_bytes(free_seqs_) + vec_bytes(staging_) + vec_bytes(batch_table_) +
         device_tables_.bytes();
}

// ---- bookkeeping ----

Status KvCache::check_seq(SeqId seq, int64_t batch_index) const {
  if (seq < 0 || seq >= static_cast<int64_t>(seqs_.size()) || !seqs_[seq].live) {
    const std::string field = batch_index < 0 ? "seq" : "seqs[" + str(batch_index) + "]";
    return invalid_argument(field + " = " + str(seq) + " is not a live sequence of this kv cache" +
                            " (max_sequences = " + str(config_.max_sequences) + ")");
  }
  return Status::Ok();
}

Status KvCache::check_growth(SeqId seq, int64_t n_tokens) const {
  const int64_t length = seqs_[seq].length;
  if (n_tokens > config_.max_seq_tokens - length) {
    return out_of_memory("kv cache: sequence " + str(seq) + " of " + str(length) + " tokens cannot grow by " +
                         str(n_tokens) + ": max_seq_tokens = " + str(config_.max_seq_tokens));
  }
  return Status::Ok();
}

Status KvCache::check_layer(int64_t layer) const {
  if (layer < 0 || layer >= layout_.n_layers) {
    return invalid_argument("layer = " + str(layer) + " is outside [0, n_layers = " + str(layout_.n_layers) + ")");
  }
  return Status::Ok();
}

Status KvCache::out_of_pages(int64_t asked, const char* what) const {
  return out_of_memory("kv cache: " + std::string(what) + " needs " + str(asked) + " pages, " +
                       str(n_free_pages_) + " of " + str(layout_.n_pages) + " are free (page_rows = " +
                       str(layout_.page_rows) + ")");
}

SeqId KvCache::take_seq() {
  const SeqId seq = free_seqs_[--n_free_seqs_];
  seqs_[seq] = Sequence{0, true};
  return seq;
}

void KvCache::release_seq(SeqId seq) {
  seqs_[seq] = Sequence{};
  free_seqs_[n_free_seqs_++] = seq;
}

int32_t KvCache::take_page() {
  const int32_t page = free_pages_[--n_free_pages_];
  refcount_[page] = 1;
  return page;
}

void KvCache::release_page(int32_t page) {
  if (--refcount_[page] == 0) free_pages_[n_free_pages_++] = page;
}

Status KvCache::copy_page(int32_t dst, int32_t src) {
  for (int64_t l = 0; l < layout_.n_layers; ++l) {
    std::byte* k_dst = arena_ + layout_.k_row_offset(l, dst, 0, 0);
    const std::byte* k_src = arena_ + layout_.k_row_offset(l, src, 0, 0);
    std::byte* v_dst = arena_ + layout_.v_row_offset(l, dst, 0, 0);
    const std::byte* v_src = arena_ + layout_.v_row_offset(l, src, 0, 0);
    if (on_device()) {
      KVFLASH_RETURN_IF_ERROR(kvcache::copy_on_device(k_dst, k_src, layout_.k_page_bytes));
      KVFLASH_RETURN_IF_ERROR(kvcache::copy_on_device(v_dst, v_src, layout_.v_page_bytes));
    } else {
      std::memcpy(k_dst, k_src, static_cast<size_t>(layout_.k_page_bytes));
      std::memcpy(v_dst, v_src, static_cast<size_t>(layout_.v_page_bytes));
    }
  }
  return Status::Ok();
}

Status KvCache::make_private(SeqId seq, int64_t first, int64_t last) {
  int32_t* pages = table(seq);
  const int64_t first_page = first / layout_.page_rows, last_page = last / layout_.page_rows;
  int64_t shared = 0;
  for (int64_t j = first_page; j <= last_page; ++j) shared += refcount_[pages[j]] > 1 ? 1 : 0;
  if (shared > n_free_pages_) return out_of_pages(shared, "copying shared pages before a write");
  for (int64_t j = first_page; j <= last_page; ++j) {
    if (refcount_[pages[j]] <= 1) continue;
    const int32_t copy = take_page();
    if (Status s = copy_page(copy, pages[j]); !s.ok()) {
      release_page(copy);
      return s;
    }
    release_page(pages[j]);
    pages[j] = copy;
  }
  return Status::Ok();
}

// ---- sequences ----

StatusOr<SeqId> KvCache::add_sequence() {
  if (n_free_seqs_ == 0) {
    return out_of_memory("kv cache: all max_sequences = " + str(config_.max_sequences) + " sequences are live");
  }
  return take_seq();
}

Status KvCache::remove(SeqId seq) {
  KVFLASH_RETURN_IF_ERROR(check_seq(seq));
  const int32_t* pages = table(seq);
  for (int64_t j = 0, n = pages_for(seqs_[seq].length); j < n; ++j) release_page(pages[j]);
  release_seq(seq);
  return Status::Ok();
}

StatusOr<SeqId> KvCache::fork(SeqId seq) {
  KVFLASH_RETURN_IF_ERROR(check_seq(seq));
  if (n_free_seqs_ == 0) {
    return out_of_memory("kv cache: fork of sequence " + str(seq) + " needs a sequence slot; all max_sequences = " +
                         str(config_.max_sequences) + " are live");
  }
  const SeqId child = take_seq();
  const int64_t n_pages = pages_for(seqs_[seq].length);
  const int32_t* from = table(seq);
  int32_t* to = table(child);
  for (int64_t j = 0; j < n_pages; ++j) {
    to[j] = from[j];
    ++refcount_[from[j]];
  }
  seqs_[child].length = seqs_[seq].length;
  return child;
}

Status KvCache::truncate(SeqId seq, int64_t n_tokens) {
  KVFLASH_RETURN_IF_ERROR(check_seq(seq));
  const int64_t length = seqs_[seq].length;
  if (n_tokens < 0 || n_tokens > length) {
    return invalid_argument("truncate: n_tokens = " + str(n_tokens) + " is outside [0, length = " + str(length) +
                            "] of sequence " + str(seq));
  }
  const int32_t* pages = table(seq);
  for (int64_t j = pages_for(n_tokens), n = pages_for(length); j < n; ++j) release_page(pages[j]);
  seqs_[seq].length = n_tokens;
  return Status::Ok();
}

StatusOr<int64_t> KvCache::length(SeqId seq) const {
  KVFLASH_RETURN_IF_ERROR(check_seq(seq));
  return seqs_[seq].length;
}

// ---- appending ----

StatusOr<int64_t> KvCache::extend(SeqId seq, int64_t n_tokens) {
  KVFLASH_RETURN_IF_ERROR(check_seq(seq));
  const int64_t length = seqs_[seq].length;
  if (n_tokens < 0) return invalid_argument("extend: n_tokens = " + str(n_tokens) + " must be >= 0");
  KVFLASH_RETURN_IF_ERROR(check_growth(seq, n_tokens));
  int32_t* pages = table(seq);
  const int64_t old_pages = pages_for(length), new_pages = pages_for(length + n_tokens);
  // New rows land in the last page when it is partially filled; if another sequence shares it, copy it first.
  const bool copy_last = n_tokens > 0 && length % layout_.page_rows != 0 && refcount_[pages[old_pages - 1]] > 1;
  const int64_t asked = new_pages - old_pages + (copy_last ? 1 : 0);
  if (asked > n_free_pages_) return out_of_pages(asked, ("appending " + str(n_tokens) + " tokens").c_str());
  if (copy_last) KVFLASH_RETURN_IF_ERROR(make_private(seq, length - 1, length - 1));
  for (int64_t j = old_pages; j < new_pages; ++j) pages[j] = take_page();
  seqs_[seq].length = length + n_tokens;
  return length;
}

Status KvCache::write(SeqId seq, int64_t layer, int64_t first, std::span<const float> k, std::span<const float> v,
                      int64_t n_tokens) {
  KVFLASH_RETURN_IF_ERROR(check_seq(seq));
  KVFLASH_RETURN_IF_ERROR(check_layer(layer));
  const int64_t length = seqs_[seq].length;
  if (n_tokens < 0 || first < 0 || first > length - n_tokens) {
    return invalid_argument("write: positions [first = " + str(first) + ", first + n_tokens = " +
                            str(first + n_tokens) + ") are not inside [0, length = " + str(length) +
                            ") of sequence " + str(seq) + " (extend() first)");
  }
  const int64_t k_values = n_tokens * config_.n_head_kv * config_.d_k;
  const int64_t v_values = n_tokens * config_.n_head_kv * config_.d_v;
  if (static_cast<int64_t>(k.size()) != k_values || static_cast<int64_t>(v.size()) != v_values) {
    return invalid_argument("write: k has " + str(static_cast<int64_t>(k.size())) + " and v has " +
                            str(static_cast<int64_t>(v.size())) + " floats; n_tokens x n_head_kv x d = " +
                            str(k_values) + " and " + str(v_values) + " expected");
  }
  if (n_tokens == 0) return Status::Ok();
  KVFLASH_RETURN_IF_ERROR(make_private(seq, first, first + n_tokens - 1));
  return quantize_rows(layer, table(seq), first, k.data(), v.data(), n_tokens);
}

Status KvCache::quantize_rows(int64_t layer, const int32_t* pages, int64_t first, const float* k, const float* v,
                              int64_t n_tokens) {
  const KvCacheConfig& c = config_;
  const int64_t k_stored = stored_dim(c.k_type, c.d_k), v_stored = stored_dim(c.v_type, c.d_v);
  // Turbo rows are quantized from the row zero-padded to whole rotation groups; d <= kMaxHeadDim, a multiple of
  // 128, bounds the padded row, so the stack holds it.
  std::array<float, kMaxHeadDim> padded;
  const auto quantize = [&](KvType type, const float* src, int64_t d, int64_t stored, std::byte* dst) {
    if (stored == d) return quantize_row(type, src, d, dst);
    std::memcpy(padded.data(), src, static_cast<size_t>(d) * sizeof(float));
    std::fill(padded.begin() + d, padded.begin() + stored, 0.0f);
    return quantize_row(type, padded.data(), stored, dst);
  };
  // A device cache quantizes one page's run of rows into the staging buffer, laid out as the page is (so the
  // offsets below are page-relative), then uploads the run; a host cache writes into the arena directly.
  const int64_t page_rows = layout_.page_rows;
  for (int64_t t0 = 0; t0 < n_tokens;) {
    const int64_t pos0 = first + t0;
    const int32_t page = pages[pos0 / page_rows];
    const int64_t row0 = pos0 % page_rows, row1 = std::min(page_rows, row0 + (n_tokens - t0));
    std::byte* k_page = on_device() ? staging_.data() : arena_ + layout_.k_row_offset(layer, page, 0, 0);
    std::byte* v_page = on_device() ? staging_.data() + layout_.k_page_bytes
                                    : arena_ + layout_.v_row_offset(layer, page, 0, 0);
    for (int64_t row = row0; row < row1; ++row) {
      const int64_t t = t0 + (row - row0);
      for (int64_t h = 0; h < c.n_head_kv; ++h) {
        const int64_t src_row = t * c.n_head_kv + h;
        KVFLASH_RETURN_IF_ERROR(quantize(c.k_type, k + src_row * c.d_k, c.d_k, k_stored,
                                         k_page + (h * page_rows + row) * layout_.k_row_bytes));
        KVFLASH_RETURN_IF_ERROR(quantize(c.v_type, v + src_row * c.d_v, c.d_v, v_stored,
                                         v_page + (h * page_rows + row) * layout_.v_row_bytes));
      }
    }
    if (on_device()) KVFLASH_RETURN_IF_ERROR(store_rows(layer, page, row0, row1));
    t0 += row1 - row0;
  }
  return Status::Ok();
}

Status KvCache::append(SeqId seq, std::span<const float> k, std::span<const float> v, int64_t n_tokens) {
  KVFLASH_RETURN_IF_ERROR(check_seq(seq));
  if (n_tokens < 0) return invalid_argument("append: n_tokens = " + str(n_tokens) + " must be >= 0");
  // Bounds n_tokens before the sizes below multiply it.
  KVFLASH_RETURN_IF_ERROR(check_growth(seq, n_tokens));
  const int64_t k_layer = n_tokens * config_.n_head_kv * config_.d_k;
  const int64_t v_layer = n_tokens * config_.n_head_kv * config_.d_v;
  if (static_cast<int64_t>(k.size()) != config_.n_layers * k_layer ||
      static_cast<int64_t>(v.size()) != config_.n_layers * v_layer) {
    return invalid_argument("append: k has " + str(static_cast<int64_t>(k.size())) + " and v has " +
                            str(static_cast<int64_t>(v.size())) + " floats; n_layers x n_tokens x n_head_kv x d = " +
                            str(config_.n_layers * k_layer) + " and " + str(config_.n_layers * v_layer) +
                            " expected");
  }
  StatusOr<int64_t> first = extend(seq, n_tokens);
  if (!first.ok()) return first.status();
  for (int64_t l = 0; l < config_.n_layers; ++l) {
    Status s = quantize_rows(l, table(seq), *first, k.data() + l * k_layer, v.data() + l * v_layer, n_tokens);
    if (!s.ok()) {
      // Unreachable for rows of a valid config; undo the extension so that the sequence keeps its length.
      (void)truncate(seq, *first);
      return s;
    }
  }
  return Status::Ok();
}

// ---- reading ----

StatusOr<std::span<const std::byte>> KvCache::k_row(SeqId seq, int64_t layer, int64_t pos, int64_t head) const {
  if (on_device()) {
    return unsupported("k_row: this kv cache lives in device memory; copy_k_row() copies a row to the host");
  }
  KVFLASH_RETURN_IF_ERROR(check_seq(seq));
  KVFLASH_RETURN_IF_ERROR(check_layer(layer));
  if (pos < 0 || pos >= seqs_[seq].length || head < 0 || head >= config_.n_head_kv) {
    return invalid_argument("k_row: pos = " + str(pos) + ", head = " + str(head) + " outside length " +
                            str(seqs_[seq].length) + " x n_head_kv " + str(config_.n_head_kv));
  }
  const int64_t page = table(seq)[pos / layout_.page_rows];
  return std::span<const std::byte>(arena_ + layout_.k_row_offset(layer, page, head, pos % layout_.page_rows),
                                    static_cast<size_t>(layout_.k_row_bytes));
}

StatusOr<std::span<const std::byte>> KvCache::v_row(SeqId seq, int64_t layer, int64_t pos, int64_t head) const {
  if (on_device()) {
    return unsupported("v_row: this kv cache lives in device memory; copy_v_row() copies a row to the host");
  }
  KVFLASH_RETURN_IF_ERROR(check_seq(seq));
  KVFLASH_RETURN_IF_ERROR(check_layer(layer));
  if (pos < 0 || pos >= seqs_[seq].length || head < 0 || head >= config_.n_head_kv) {
    return invalid_argument("v_row: pos = " + str(pos) + ", head = " + str(head) + " outside length " +
                            str(seqs_[seq].length) + " x n_head_kv " + str(config_.n_head_kv));
  }
  const int64_t page = table(seq)[pos / layout_.page_rows];
  return std::span<const std::byte>(arena_ + layout_.v_row_offset(layer, page, head, pos % layout_.page_rows),
                                    static_cast<size_t>(layout_.v_row_bytes));
}

// ---- batches ----

StatusOr<int64_t> KvCache::fill_batch(std::span<const SeqId> seqs, int64_t pages_per_seq,
                                      std::span<int32_t> page_table, std::span<int32_t> kv_len) const {
  const int64_t n_seq = static_cast<int64_t>(seqs.size());
  if (pages_per_seq < 1) return invalid_argument("fill_batch: pages_per_seq = " + str(pages_per_seq) + " must be >= 1");
  int64_t n_kv = 0;
  for (int64_t i = 0; i < n_seq; ++i) {
    KVFLASH_RETURN_IF_ERROR(check_seq(seqs[i], i));
    const int64_t length = seqs_[seqs[i]].length;
    if (pages_for(length) > pages_per_seq) {
      return invalid_argument("fill_batch: pages_per_seq = " + str(pages_per_seq) + " is less than the " +
                              str(pages_for(length)) + " pages of seqs[" + str(i) + "] = " + str(seqs[i]) + " (" +
                              str(length) + " tokens)");
    }
    n_kv = std::max(n_kv, length);
  }
  int64_t entries = 0;
  if (!checked_mul(n_seq, pages_per_seq, &entries) || static_cast<int64_t>(page_table.size()) < entries ||
      static_cast<int64_t>(kv_len.size()) < n_seq) {
    return invalid_argument("fill_batch: page_table has " + str(static_cast<int64_t>(page_table.size())) +
                            " entries and kv_len " + str(static_cast<int64_t>(kv_len.size())) + "; " +
                            str(n_seq) + " x " + str(pages_per_seq) + " and " + str(n_seq) + " needed");
  }
  for (int64_t i = 0; i < n_seq; ++i) {
    const int64_t length = seqs_[seqs[i]].length, used = pages_for(length);
    int32_t* row = page_table.data() + i * pages_per_seq;
    std::copy(table(seqs[i]), table(seqs[i]) + used, row);
    std::fill(row + used, row + pages_per_seq, 0);
    kv_len[i] = static_cast<int32_t>(length);
  }
  return n_kv;
}

StatusOr<KvView> KvCache::k_view(int64_t layer, const int32_t* page_table, int64_t pages_per_seq) const {
  KVFLASH_RETURN_IF_ERROR(check_layer(layer));
  if (page_table == nullptr || pages_per_seq < 1) {
    return invalid_argument("k_view: page_table must be non-null and pages_per_seq = " + str(pages_per_seq) +
                            " >= 1");
  }
  KvView view;
  view.type = config_.k_type;
  view.data = arena_ + layout_.k_pool_offset(layer);
  view.stride = Strides{0, layout_.page_rows * layout_.k_row_bytes, layout_.k_row_bytes};
  view.paging = PageTable{page_table, pages_per_seq, layout_.page_rows, layout_.k_page_bytes};
  return view;
}

StatusOr<KvView> KvCache::v_view(int64_t layer, const int32_t* page_table, int64_t pages_per_seq) const {
  KVFLASH_RETURN_IF_ERROR(check_layer(layer));
  if (page_table == nullptr || pages_per_seq < 1) {
    return invalid_argument("v_view: page_table must be non-null and pages_per_seq = " + str(pages_per_seq) +
                            " >= 1");
  }
  KvView view;
  view.type = config_.v_type;
  view.data = arena_ + layout_.v_pool_offset(layer);
  view.stride = Strides{0, layout_.page_rows * layout_.v_row_bytes, layout_.v_row_bytes};
  view.paging = PageTable{page_table, pages_per_seq, layout_.page_rows, layout_.v_page_bytes};
  return view;
}

}  // namespace kvflash
