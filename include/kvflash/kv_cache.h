// KvCache: a fixed-capacity paged KV cache. Sequences own page tables into one arena of pages; append quantizes
// on write; fork shares prefix pages copy-on-write; checkpoints serialize one sequence.
//
// Storage (see KvCacheLayout): one arena, allocated by create() and never resized, in host memory or (residence
// cuda) in device memory from a DeviceAllocator (bucket "kv.cache", MemoryKind::kv_cache). For each layer it holds a
// K pool and a V pool of n_pages packed pages; page p of a pool holds page_rows tokens of every KV head as
// [head][row in page] rows of head_row_bytes(type, d) bytes. A page index names the same tokens in every layer's
// K and V pool, so one page table per sequence serves all layers, and a layer's K (or V) pool is exactly an
// AttentionProblem KvView with a PageTable (kv_row_offset() addressing).
//
// Nothing allocates after create() on a success path: page tables, free lists and refcounts are fixed-size.
// (Error Statuses allocate their message; checkpoint to a std::vector and the file calls allocate or use stdio.)
// Not thread-safe: one thread mutates a cache at a time (an engine's scheduler owns it); const calls may run
// concurrently with each other, except checkpoint calls on a device cache (they share its host staging buffer).
//
// A device cache (KvCacheConfig::residence = cuda) keeps the same API and layout. Quantize-on-write runs on the host
// into a staging buffer sized once at create() (one page of K and V of one layer), then each page's rows go to the
// device in one 2-D copy; copy-on-write copies pages device to device; checkpoints copy through the staging buffer.
// k_view()/v_view() return device pointers and want a page table in device memory: fill_batch_device() fills one
// the cache owns (bucket "kv.page_table"). k_row()/v_row() return host spans and are unsupported on a device
// cache: copy_k_row()/copy_v_row() copy a row into a caller span on either residence. Every copy is synchronous
// on the default stream except fill_batch_device()'s upload, which is ordered on the caller's stream.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "kvflash/attention_problem.h"
#include "kvflash/device_memory.h"
#include "kvflash/host_device.h"
#include "kvflash/kv_type.h"
#include "kvflash/status.h"

namespace kvflash {

namespace kvcache {
class PayloadSink;    // checkpoint byte streams (src/kvcache/checkpoint.cpp)
class PayloadSource;
}  // namespace kvcache

/// A sequence's slot in the cache, in [0, max_sequences). Ids of removed sequences are reused.
using SeqId = int32_t;

/// Where a cache's arena lives.
enum class KvResidence : uint8_t {
  host,  // host memory (operator new)
  cuda,  // device memory of a DeviceAllocator given to create(); needs CUDA in the build
};

struct KvCacheConfig {
  int64_t n_layers = 1;
  int64_t n_head_kv = 1;
  int64_t d_k = 128;                // logical head dims; turbo rows are zero-padded to stored_dim()
  int64_t d_v = 128;
  KvType k_type = KvType::f16;      // K and V types are independent
  KvType v_type = KvType::f16;
  int64_t page_rows = 16;           // tokens per page
  int64_t n_pages = 0;              // pages in the pool; exactly one of n_pages and capacity_tokens is > 0
  int64_t capacity_tokens = 0;      // alternative to n_pages: rounded up to whole pages
  int64_t max_sequences = 1;        // live sequences at once (forks and restores count)
  int64_t max_seq_tokens = 0;       // longest sequence, sets the page-table width; 0: the whole capacity
  KvResidence residence = KvResidence::host;
};

/// Page tables of a batch in device memory, filled by KvCache::fill_batch_device(): what k_view()/v_view() and an
/// AttentionProblem's kv_len take for a device cache.
struct DeviceBatch {
  const int32_t* page_table = nullptr;  // device [n_seq, pages_per_seq]
  const int32_t* kv_len = nullptr;      // device [n_seq]
  int64_t pages_per_seq = 0;
  int64_t n_kv = 0;                     // the longest length (AttentionShape::n_kv)
};

/// Where every byte lives in the arena: pure index math, shared by a host cache and (later) a device-resident one.
struct KvCacheLayout {
  // Each pool starts on this boundary (a cache line; also the widest vector load a device kernel issues). Pages
  // themselves are packed: validate() wants page_bytes to be a whole number of blocks, and a page's rows are only
  // block-aligned anyway.
  static constexpr int64_t kPoolAlign = 64;

  int64_t n_layers = 0;
  int64_t n_pages = 0;
  int64_t page_rows = 0;
  int64_t n_head_kv = 0;
  int64_t k_row_bytes = 0;    // head_row_bytes(k_type, d_k)
  int64_t v_row_bytes = 0;
  int64_t k_page_bytes = 0;   // one layer's K rows of a page, [head][row]: n_head_kv * page_rows * k_row_bytes
  int64_t v_page_bytes = 0;
  int64_t k_pool_bytes = 0;   // n_pages * k_page_bytes, rounded up to kPoolAlign
  int64_t v_pool_bytes = 0;
  int64_t layer_bytes = 0;    // k_pool_bytes + v_pool_bytes
  int64_t arena_bytes = 0;    // n_layers * layer_bytes

  /// Offset of layer l's K pool (the data pointer of its KvView); the V pool follows it.
  KVFLASH_HOST_DEVICE int64_t k_pool_offset(int64_t layer) const { return layer * layer_bytes; }
  KVFLASH_HOST_DEVICE int64_t v_pool_offset(int64_t layer) const { return layer * layer_bytes + k_pool_bytes; }
  /// Offset of row `row` (within the page) of KV head `head` in page `page` of layer `layer`.
  KVFLASH_HOST_DEVICE int64_t k_row_offset(int64_t layer, int64_t page, int64_t head, int64_t row) const {
    return k_pool_offset(layer) + page * k_page_bytes + (head * page_rows + row) * k_row_bytes;
  }
  KVFLASH_HOST_DEVICE int64_t v_row_offset(int64_t layer, int64_t page, int64_t head, int64_t row) const {
    return v_pool_offset(layer) + page * v_page_bytes + (head * page_rows + row) * v_row_bytes;
  }
};

class KvCache {
 public:
  /// Validates `config` (the message names the field and its value) and allocates all storage. out_of_memory
  /// when the host allocation fails. A device cache (residence cuda) takes its arena and page-table buffer from
  /// `allocator` (which must outlive the cache): invalid_argument without one, unsupported in a build without
  /// CUDA, the allocator's out_of_memory (bucket and bytes) when the device is full. A host cache ignores it.
  static StatusOr<KvCache> create(const KvCacheConfig& config, DeviceAllocator* allocator = nullptr);

  KvCache(KvCache&&) noexcept;
  KvCache& operator=(KvCache&&) noexcept;
  KvCache(const KvCache&) = delete;
  KvCache& operator=(const KvCache&) = delete;
  ~KvCache();

  /// The config with n_pages, capacity_tokens and max_seq_tokens resolved to the values in use.
  const KvCacheConfig& config() const { return config_; }
  const KvCacheLayout& layout() const { return layout_; }

  // ---- sequences. Every mutating call leaves the cache unchanged when it returns an error. ----

  /// A new empty sequence. out_of_memory ("kv cache") when max_sequences are live.
  StatusOr<SeqId> add_sequence();
  /// Frees the sequence's slot and every page no other sequence references.
  Status remove(SeqId seq);
  /// A new sequence with the same tokens, sharing every page copy-on-write (no page is copied now).
  StatusOr<SeqId> fork(SeqId seq);
  /// Keeps the first n_tokens tokens (n_tokens <= length), e.g. when speculative decoding rejects drafts; frees
  /// pages no longer referenced.
  Status truncate(SeqId seq, int64_t n_tokens);

  // ---- appending K/V. An engine that runs layer by layer calls extend() once per step, then write() for each
  // layer before that layer's attention; append() does both for callers that hold every layer's rows. ----

  /// Grows the sequence by n_tokens positions and returns the first new position. Takes the pages needed (and
  /// copies a shared, partially filled last page first); the new rows hold unspecified bytes until written.
  /// out_of_memory ("kv cache", pages asked vs free) when the pool or max_seq_tokens is exhausted.
  StatusOr<int64_t> extend(SeqId seq, int64_t n_tokens);
  /// Quantizes rows for positions [first, first + n_tokens) of one layer: k is float32 [n_tokens, n_head_kv, d_k],
  /// v is [n_tokens, n_head_kv, d_v], rows contiguous. The positions must lie below length(seq); a page shared
  /// with another sequence is copied first.
  Status write(SeqId seq, int64_t layer, int64_t first, std::span<const float> k, std::span<const float> v,
               int64_t n_tokens);
  /// extend() + write() of every layer: k is float32 [n_layers, n_tokens, n_head_kv, d_k], v likewise with d_v.
  Status append(SeqId seq, std::span<const float> k, std::span<const float> v, int64_t n_tokens);

  // ---- queries ----

  StatusOr<int64_t> length(SeqId seq) const;
  /// Pages in no sequence's page table (a page shared by several sequences counts once as used).
  int64_t pages_free() const { return n_free_pages_; }
  int64_t pages_total() const { return layout_.n_pages; }
  int64_t sequences_free() const { return n_free_seqs_; }
  /// Pages a page table needs per sequence to address max_seq_tokens tokens.
  int64_t max_pages_per_seq() const { return max_pages_per_seq_; }
  /// Bytes this cache owns: the arena plus the fixed-size page tables, refcounts, free lists and (device cache)
  /// the host staging buffer, the host batch table and the device page-table buffer.
  int64_t bytes() const;
  /// Where the arena lives.
  KvResidence residence() const { return config_.residence; }
  /// Host bytes of the staging buffer quantize-on-write and checkpoints go through (0 for a host cache).
  int64_t staging_bytes() const { return static_cast<int64_t>(staging_.size()); }

  /// The stored bytes of one K (V) row (head_row_bytes long) of token `pos` < length(seq). Host caches only:
  /// unsupported on a device cache (use copy_k_row()).
  StatusOr<std::span<const std::byte>> k_row(SeqId seq, int64_t layer, int64_t pos, int64_t head) const;
  StatusOr<std::span<const std::byte>> v_row(SeqId seq, int64_t layer, int64_t pos, int64_t head) const;
  /// Copies the stored bytes of one K (V) row into `out` (exactly layout().k_row_bytes long), on either residence.
  Status copy_k_row(SeqId seq, int64_t layer, int64_t pos, int64_t head, std::span<std::byte> out) const;
  Status copy_v_row(SeqId seq, int64_t layer, int64_t pos, int64_t head, std::span<std::byte> out) const;

  // ---- attention over a batch of sequences ----

  /// Fills the caller's page table [seqs.size(), pages_per_seq] (int32, row i = seqs[i]'s pages in order) and
  /// kv_len [seqs.size()], and returns the longest length (AttentionShape::n_kv). Entries past a sequence's
  /// last page are 0, a page inside the arena, so a kernel that reads a whole tile past kv_len stays in bounds.
  /// The table stays valid until the next mutating call on one of these sequences.
  StatusOr<int64_t> fill_batch(std::span<const SeqId> seqs, int64_t pages_per_seq, std::span<int32_t> page_table,
                               std::span<int32_t> kv_len) const;
  /// Device cache: fill_batch() into a host table the cache owns, uploaded into its device page-table buffer on
  /// `stream` (a cudaStream_t; nullptr: the default stream) with pages_per_seq = max_pages_per_seq(). The tables
  /// stay valid until the next fill_batch_device(); kernels reading them must be ordered after the upload (same
  /// stream) and a later call must not overwrite them while a kernel still reads them (same stream again).
  /// unsupported on a host cache; invalid_argument for more than max_sequences sequences.
  StatusOr<DeviceBatch> fill_batch_device(std::span<const SeqId> seqs, void* stream = nullptr);
  /// The paged view of one layer's K (V) pool through a page table that fill_batch() filled (device cache:
  /// fill_batch_device()'s page_table; the view's data is then a device pointer).
  StatusOr<KvView> k_view(int64_t layer, const int32_t* page_table, int64_t pages_per_seq) const;
  StatusOr<KvView> v_view(int64_t layer, const int32_t* page_table, int64_t pages_per_seq) const;

  // ---- checkpoints (format: README "KV cache"; a versioned header with a config fingerprint and checksum) ----

  /// Exact size of seq's checkpoint.
  StatusOr<int64_t> checkpoint_bytes(SeqId seq) const;
  /// Writes seq's checkpoint into `out` (at least checkpoint_bytes(seq) long); allocates nothing.
  Status checkpoint(SeqId seq, std::span<std::byte> out) const;
  /// The checkpoint as a new host buffer.
  StatusOr<std::vector<std::byte>> checkpoint(SeqId seq) const;
  /// Writes the checkpoint to `path` through a temporary file renamed into place, so no half-written file
  /// is left under `path`.
  Status checkpoint_to_file(SeqId seq, const std::string& path) const;
  /// A new sequence holding the checkpoint's tokens. format_error for bytes that are not an intact checkpoint
  /// (short, bad magic or version, checksum mismatch), invalid_argument when it was written by a cache of
  /// another config (the field is named), out_of_memory when sequences or pages run out.
  StatusOr<SeqId> restore(std::span<const std::byte> checkpoint);
  StatusOr<SeqId> restore_from_file(const std::string& path);

 private:
  struct Sequence {
    int64_t length = 0;
    bool live = false;
  };
  struct ArenaDeleter {
    void operator()(std::byte* p) const;
  };
  /// One layer's K and V page: where to read it from or write it to on the host.
  struct PageImage {
    std::byte* k = nullptr;
    std::byte* v = nullptr;
  };
  KvCache() = default;

  bool on_device() const { return config_.residence == KvResidence::cuda; }
  // Device cache: the allocations and host buffers create() adds for residence cuda (kv_cache_device.cpp).
  Status create_device_storage(DeviceAllocator* allocator, int64_t table_entries);
  // The page's bytes on the host: the arena itself for a host cache, else downloaded into the staging buffer.
  StatusOr<PageImage> read_page(int64_t layer, int32_t page) const;
  // Where to put a page's bytes before store_page(): the arena for a host cache, else the staging buffer.
  PageImage page_to_write(int64_t layer, int32_t page);
  // Uploads what page_to_write() handed out (a no-op for a host cache).
  Status store_page(int64_t layer, int32_t page);
  // Uploads rows [row0, row1) of every head of a page from the staging buffer (device cache).
  Status store_rows(int64_t layer, int32_t page, int64_t row0, int64_t row1);
  Status copy_row(bool is_k, SeqId seq, int64_t layer, int64_t pos, int64_t head, std::span<std::byte> out) const;

  // batch_index >= 0 names the argument seqs[batch_index] instead of seq in the message.
  Status check_seq(SeqId seq, int64_t batch_index = -1) const;
  // out_of_memory when seq cannot grow by n_tokens within max_seq_tokens; n_tokens must be >= 0.
  Status check_growth(SeqId seq, int64_t n_tokens) const;
  Status check_layer(int64_t layer) const;
  int64_t pages_for(int64_t n_tokens) const { return (n_tokens + layout_.page_rows - 1) / layout_.page_rows; }
  int32_t* table(SeqId seq) { return page_tables_.data() + static_cast<int64_t>(seq) * max_pages_per_seq_; }
  const int32_t* table(SeqId seq) const {
    return page_tables_.data() + static_cast<int64_t>(seq) * max_pages_per_seq_;
  }
  Status out_of_pages(int64_t asked, const char* what) const;
  SeqId take_seq();
  void release_seq(SeqId seq);
  int32_t take_page();
  void release_page(int32_t page);
  Status copy_page(int32_t dst, int32_t src);
  /// Gives seq a private copy of every page holding a position in [first, last] that another sequence shares.
  Status make_private(SeqId seq, int64_t first, int64_t last);
  Status quantize_rows(int64_t layer, const int32_t* pages, int64_t first, const float* k, const float* v,
                       int64_t n_tokens);

  Status write_checkpoint(SeqId seq, kvcache::PayloadSink& sink) const;
  StatusOr<SeqId> read_checkpoint(kvcache::PayloadSource& source);

  KvCacheConfig config_;
  KvCacheLayout layout_;
  int64_t max_pages_per_seq_ = 0;
  std::unique_ptr<std::byte[], ArenaDeleter> host_arena_;
  DeviceBuffer device_arena_;
  std::byte* arena_ = nullptr;                   // host_arena_ or device_arena_'s memory
  mutable std::vector<std::byte> staging_;       // device cache: [k_page_bytes + v_page_bytes]
  std::vector<int32_t> batch_table_;             // device cache: host image of device_tables_
  DeviceBuffer device_tables_;                   // device cache: [max_sequences, max_pages_per_seq] + kv_len
  std::vector<int32_t> refcount_;      // [n_pages]: sequences whose page table holds the page
  std::vector<int32_t> free_pages_;    // stack; the first n_free_pages_ entries are free
  int64_t n_free_pages_ = 0;
  std::vector<int32_t> page_tables_;   // [max_sequences, max_pages_per_seq]
  std::vector<Sequence> seqs_;         // [max_sequences]
  std::vector<SeqId> free_seqs_;       // stack; the first n_free_seqs_ entries are free
  int64_t n_free_seqs_ = 0;
};

}  // namespace kvflash
