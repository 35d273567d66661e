// KvCache: the parts that differ for a device-resident arena (residence cuda): its allocations, page and row
// transfers through the staging buffer, and the device page table of a batch. The CUDA calls themselves are in
// device_transfer.cpp.
#include <algorithm>
#include <new>
#include <string>

#include "kvcache/device_transfer.h"
#include "kvflash/kv_cache.h"

namespace kvflash {
namespace {

std::string str(int64_t v) { return std::to_string(v); }

}  // namespace

Status KvCache::create_device_storage(DeviceAllocator* allocator, int64_t table_entries) {
  if (!kvcache::device_transfer_compiled()) {
    return unsupported(
        "KvCacheConfig.residence = cuda: this build has no CUDA backend (configure with KVFLASH_CUDA=ON)");
  }
  if (allocator == nullptr) {
    return invalid_argument(
        "KvCacheConfig.residence = cuda needs a DeviceAllocator: KvCache::create(config, allocator)");
  }
  StatusOr<DeviceBuffer> arena = DeviceBuffer::allocate(*allocator, "kv.cache", MemoryKind::kv_cache,
                                                        layout_.arena_bytes);
  if (!arena.ok()) return arena.status();
  // The batch tables a kernel reads: [max_sequences, max_pages_per_seq] page indices, then [max_sequences] lengths.
  const int64_t batch_entries = table_entries + config_.max_sequences;
  StatusOr<DeviceBuffer> tables = DeviceBuffer::allocate(*allocator, "kv.page_table", MemoryKind::kv_cache,
                                                         batch_entries * static_cast<int64_t>(sizeof(int32_t)));
  if (!tables.ok()) return tables.status();
  try {
    // One page of one layer's K and V: quantize_rows() fills at most one page before uploading it, and checkpoints
    // move one page image at a time.
    staging_.assign(static_cast<size_t>(layout_.k_page_bytes + layout_.v_page_bytes), std::byte{0});
    batch_table_.assign(static_cast<size_t>(batch_entries), 0);
  } catch (const std::bad_alloc&) {
    return out_of_memory("kv cache: could not allocate the " + str(layout_.k_page_bytes + layout_.v_page_bytes) +
                         "-byte host staging buffer and the batch table of " + str(batch_entries) + " entries");
  }
  device_arena_ = std::move(*arena);
  device_tables_ = std::move(*tables);
  arena_ = static_cast<std::byte*>(device_arena_.data());
  return Status::Ok();
}

StatusOr<KvCache::PageImage> KvCache::read_page(int64_t layer, int32_t page) const {
  std::byte* k = arena_ + layout_.k_row_offset(layer, page, 0, 0);
  std::byte* v = arena_ + layout_.v_row_offset(layer, page, 0, 0);
  if (!on_device()) return PageImage{k, v};
  std::byte* k_host = staging_.data();
  std::byte* v_host = staging_.data() + layout_.k_page_bytes;
  KVFLASH_RETURN_IF_ERROR(kvcache::copy_to_host(k_host, k, layout_.k_page_bytes));
  KVFLASH_RETURN_IF_ERROR(kvcache::copy_to_host(v_host, v, layout_.v_page_bytes));
  return PageImage{k_host, v_host};
}

KvCache::PageImage KvCache::page_to_write(int64_t layer, int32_t page) {
  if (on_device()) return PageImage{staging_.data(), staging_.data() + layout_.k_page_bytes};
  return PageImage{arena_ + layout_.k_row_offset(layer, page, 0, 0), arena_ + layout_.v_row_offset(layer, page, 0, 0)};
}

Status KvCache::store_page(int64_t layer, int32_t page) {
  if (!on_device()) return Status::Ok();
  KVFLASH_RETURN_IF_ERROR(
      kvcache::copy_to_device(arena_ + layout_.k_row_offset(layer, page, 0, 0), staging_.data(), layout_.k_page_bytes));
  return kvcache::copy_to_device(arena_ + layout_.v_row_offset(layer, page, 0, 0),
                                 staging_.data() + layout_.k_page_bytes, layout_.v_page_bytes);
}

Status KvCache::store_rows(int64_t layer, int32_t page, int64_t row0, int64_t row1) {
  // Each head's rows [row0, row1) are contiguous in the page and one head's rows are page_rows rows apart: one
  // 2-D copy per pool, whose pitch is the head stride.
  const int64_t k_pitch = layout_.page_rows * layout_.k_row_bytes, v_pitch = layout_.page_rows * layout_.v_row_bytes;
  KVFLASH_RETURN_IF_ERROR(kvcache::copy_rows_to_device(arena_ + layout_.k_row_offset(layer, page, 0, row0), k_pitch,
                                                       staging_.data() + row0 * layout_.k_row_bytes, k_pitch,
                                                       (row1 - row0) * layout_.k_row_bytes, layout_.n_head_kv));
  return kvcache::copy_rows_to_device(arena_ + layout_.v_row_offset(layer, page, 0, row0), v_pitch,
                                      staging_.data() + layout_.k_page_bytes + row0 * layout_.v_row_bytes, v_pitch,
                                      (row1 - row0) * layout_.v_row_bytes, layout_.n_head_kv);
}

Status KvCache::copy_row(bool is_k, SeqId seq, int64_t layer, int64_t pos, int64_t head,
                         std::span<std::byte> out) const {
  const char* name = is_k ? "copy_k_row" : "copy_v_row";
  KVFLASH_RETURN_IF_ERROR(check_seq(seq));
  KVFLASH_RETURN_IF_ERROR(check_layer(layer));
  if (pos < 0 || pos >= seqs_[seq].length || head < 0 || head >= config_.n_head_kv) {
    return invalid_argument(std::string(name) + ": pos = " + str(pos) + ", head = " + str(head) + " outside length " +
                            str(seqs_[seq].length) + " x n_head_kv " + str(config_.n_head_kv));
  }
  const int64_t row_bytes = is_k ? layout_.k_row_bytes : layout_.v_row_bytes;
  if (static_cast<int64_t>(out.size()) != row_bytes) {
    return invalid_argument(std::string(name) + ": out has " + str(static_cast<int64_t>(out.size())) +
                            " bytes; the row has " + str(row_bytes));
  }
  const int64_t page = table(seq)[pos / layout_.page_rows], row = pos % layout_.page_rows;
  const std::byte* src = arena_ + (is_k ? layout_.k_row_offset(layer, page, head, row)
                                        : layout_.v_row_offset(layer, page, head, row));
  if (on_device()) return kvcache::copy_to_host(out.data(), src, row_bytes);
  std::copy(src, src + row_bytes, out.data());
  return Status::Ok();
}

Status KvCache::copy_k_row(SeqId seq, int64_t layer, int64_t pos, int64_t head, std::span<std::byte> out) const {
  return copy_row(true, seq, layer, pos, head, out);
}

Status KvCache::copy_v_row(SeqId seq, int64_t layer, int64_t pos, int64_t head, std::span<std::byte> out) const {
  return copy_row(false, seq, layer, pos, head, out);
}

StatusOr<DeviceBatch> KvCache::fill_batch_device(std::span<const SeqId> seqs, void* stream) {
  if (!on_device()) {
    return unsupported("fill_batch_device: this kv cache lives in host memory; use fill_batch()");
  }
  const int64_t n_seq = static_cast<int64_t>(seqs.size());
  if (n_seq > config_.max_sequences) {
    return invalid_argument("fill_batch_device: " + str(n_seq) + " sequences exceed max_sequences = " +
                            str(config_.max_sequences));
  }
  const int64_t pages_per_seq = max_pages_per_seq_;
  const int64_t table_entries = n_seq * pages_per_seq;
  const std::span<int32_t> host_table(batch_table_.data(), static_cast<size_t>(table_entries));
  const std::span<int32_t> host_len(batch_table_.data() + table_entries, static_cast<size_t>(n_seq));
  StatusOr<int64_t> n_kv = fill_batch(seqs, pages_per_seq, host_table, host_len);
  if (!n_kv.ok()) return n_kv.status();
  // The device buffer mirrors the host one entry for entry, so the lengths follow this batch's table directly.
  KVFLASH_RETURN_IF_ERROR(kvcache::copy_to_device_async(device_tables_.data(), batch_table_.data(),
                                                        (table_entries + n_seq) * int64_t{sizeof(int32_t)}, stream));
  const auto* device = static_cast<const int32_t*>(device_tables_.data());
  return DeviceBatch{device, device + table_entries, pages_per_seq, *n_kv};
}

}  // namespace kvflash
