// KvCache checkpoints: one sequence to bytes (a host buffer or a file) and back. Format: checkpoint_format.h.
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "kvcache/checkpoint_format.h"
#include "kvflash/kv_cache.h"

namespace kvflash {

using kvcache::Checksum64;
using kvcache::CheckpointHeader;
using kvcache::kCheckpointHeaderBytes;
using kvcache::kChecksumOffset;

namespace {

std::string str(int64_t v) { return std::to_string(v); }
std::string ustr(uint64_t v) { return std::to_string(v); }

// Checkpoint streams are copied through a stack buffer of this size (no allocation).
constexpr int64_t kChunkBytes = 16384;

}  // namespace

namespace kvcache {

// Where write_checkpoint() puts bytes: a span or a file.
class PayloadSink {
 public:
  virtual ~PayloadSink() = default;
  /// Appends n bytes from data, or n zero bytes when data is nullptr.
  virtual Status put(const std::byte* data, int64_t n) = 0;
};

// Where read_checkpoint() gets bytes: a span or a file.
class PayloadSource {
 public:
  virtual ~PayloadSource() = default;
  virtual int64_t size() const = 0;
  /// Reads exactly n bytes from the current position.
  virtual Status read(std::byte* dst, int64_t n) = 0;
  /// Moves the position to the first payload byte.
  virtual Status seek_payload() = 0;
};

}  // namespace kvcache

namespace {

using kvcache::PayloadSink;
using kvcache::PayloadSource;

class SpanSink final : public PayloadSink {
 public:
  explicit SpanSink(std::span<std::byte> out) : out_(out) {}
  Status put(const std::byte* data, int64_t n) override {
    if (data == nullptr) {
      std::memset(out_.data() + at_, 0, static_cast<size_t>(n));
    } else {
      std::memcpy(out_.data() + at_, data, static_cast<size_t>(n));
    }
    at_ += n;
    return Status::Ok();
  }

 private:
  std::span<std::byte> out_;
  int64_t at_ = 0;
};

class HashSink final : public PayloadSink {
 public:
  explicit HashSink(Checksum64* hash) : hash_(hash) {}
  Status put(const std::byte* data, int64_t n) override {
    if (data == nullptr) {
      hash_->update_zeros(static_cast<size_t>(n));
    } else {
      hash_->update(data, static_cast<size_t>(n));
    }
    return Status::Ok();
  }

 private:
  Checksum64* hash_;
};

class FileSink final : public PayloadSink {
 public:
  FileSink(std::FILE* f, const std::string& path) : f_(f), path_(path) {}
  Status put(const std::byte* data, int64_t n) override {
    static constexpr std::byte kZeros[4096] = {};
    while (n > 0) {
      const size_t chunk = data == nullptr ? std::min<size_t>(sizeof(kZeros), static_cast<size_t>(n))
                                           : static_cast<size_t>(n);
      if (std::fwrite(data == nullptr ? kZeros : data, 1, chunk, f_) != chunk) {
        return io_error("could not write checkpoint file '" + path_ + "': " + std::strerror(errno));
      }
      if (data != nullptr) data += chunk;
      n -= static_cast<int64_t>(chunk);
    }
    return Status::Ok();
  }

 private:
  std::FILE* f_;
  const std::string& path_;
};

class SpanSource final : public PayloadSource {
 public:
  explicit SpanSource(std::span<const std::byte> in) : in_(in) {}
  int64_t size() const override { return static_cast<int64_t>(in_.size()); }
  Status read(std::byte* dst, int64_t n) override {
    if (n > size() - at_) {
      return format_error("checkpoint ends at byte " + str(size()) + ", " + str(at_ + n) + " expected");
    }
    std::memcpy(dst, in_.data() + at_, static_cast<size_t>(n));
    at_ += n;
    return Status::Ok();
  }
  Status seek_payload() override {
    at_ = kCheckpointHeaderBytes;
    return Status::Ok();
  }

 private:
  std::span<const std::byte> in_;
  int64_t at_ = 0;
};

class FileSource final : public PayloadSource {
 public:
  FileSource(std::FILE* f, int64_t size, const std::string& path) : f_(f), size_(size), path_(path) {}
  int64_t size() const override { return size_; }
  Status read(std::byte* dst, int64_t n) override {
    if (std::fread(dst, 1, static_cast<size_t>(n), f_) != static_cast<size_t>(n)) {
      return std::ferror(f_) ? io_error("could not read checkpoint file '" + path_ + "': " + std::strerror(errno))
                             : format_error("checkpoint file '" + path_ + "' ended early (changed while read?)");
    }
    return Status::Ok();
  }
  Status seek_payload() override {
    if (fseeko(f_, static_cast<off_t>(kCheckpointHeaderBytes), SEEK_SET) != 0) {
      return io_error("could not seek in checkpoint file '" + path_ + "': " + std::strerror(errno));
    }
    return Status::Ok();
  }

 private:
  std::FILE* f_;
  int64_t size_;
  const std::string& path_;
};

// Closes a FILE on every return path.
struct FileCloser {
  std::FILE* f;
  ~FileCloser() {
    if (f != nullptr) std::fclose(f);
  }
};

}  // namespace

// ---- writing ----

StatusOr<int64_t> KvCache::checkpoint_bytes(SeqId seq) const {
  KVFLASH_RETURN_IF_ERROR(check_seq(seq));
  const int64_t page_image = layout_.k_page_bytes + layout_.v_page_bytes;
  return kCheckpointHeaderBytes + pages_for(seqs_[seq].length) * layout_.n_layers * page_image;
}

Status KvCache::write_checkpoint(SeqId seq, PayloadSink& sink) const {
  const int64_t length = seqs_[seq].length;
  const int64_t n_pages = pages_for(length);
  const int32_t* pages = table(seq);
  // Visits the payload in file order; rows past the sequence's end become zeros.
  const auto emit = [&](PayloadSink& out) -> Status {
    for (int64_t j = 0; j < n_pages; ++j) {
      const int64_t valid = std::min(layout_.page_rows, length - j * layout_.page_rows);
      const int64_t unused = layout_.page_rows - valid;
      for (int64_t l = 0; l < layout_.n_layers; ++l) {
        StatusOr<PageImage> image = read_page(l, pages[j]);
        if (!image.ok()) return image.status();
        for (int64_t h = 0; h < layout_.n_head_kv; ++h) {
          KVFLASH_RETURN_IF_ERROR(out.put(image->k + h * layout_.page_rows * layout_.k_row_bytes,
                                          valid * layout_.k_row_bytes));
          if (unused > 0) KVFLASH_RETURN_IF_ERROR(out.put(nullptr, unused * layout_.k_row_bytes));
        }
        for (int64_t h = 0; h < layout_.n_head_kv; ++h) {
          KVFLASH_RETURN_IF_ERROR(out.put(image->v + h * layout_.page_rows * layout_.v_row_bytes,
                                          valid * layout_.v_row_bytes));
          if (unused > 0) KVFLASH_RETURN_IF_ERROR(out.put(nullptr, unused * layout_.v_row_bytes));
        }
      }
    }
    return Status::Ok();
  };
  CheckpointHeader header;
  header.n_layers = static_cast<uint64_t>(config_.n_layers);
  header.n_head_kv = static_cast<uint64_t>(config_.n_head_kv);
  header.d_k = static_cast<uint32_t>(config_.d_k);
  header.d_v = static_cast<uint32_t>(config_.d_v);
  header.k_type = static_cast<uint8_t>(config_.k_type);
  header.v_type = static_cast<uint8_t>(config_.v_type);
  header.page_rows = static_cast<uint64_t>(config_.page_rows);
  header.n_tokens = static_cast<uint64_t>(length);
  header.payload_bytes = static_cast<uint64_t>(*checkpoint_bytes(seq) - kCheckpointHeaderBytes);
  std::byte bytes[kCheckpointHeaderBytes];
  kvcache::encode_header(header, bytes);
  Checksum64 hash;
  hash.update(bytes, kChecksumOffset);
  HashSink hash_sink(&hash);
  KVFLASH_RETURN_IF_ERROR(emit(hash_sink));
  header.checksum = hash.finish();
  kvcache::encode_header(header, bytes);
  KVFLASH_RETURN_IF_ERROR(sink.put(bytes, kCheckpointHeaderBytes));
  return emit(sink);
}

Status KvCache::checkpoint(SeqId seq, std::span<std::byte> out) const {
  StatusOr<int64_t> need = checkpoint_bytes(seq);
  if (!need.ok()) return need.status();
  if (static_cast<int64_t>(out.size()) < *need) {
    return invalid_argument("checkpoint: out has " + str(static_cast<int64_t>(out.size())) + " bytes; sequence " +
                            str(seq) + " needs " + str(*need));
  }
  SpanSink sink(out);
  return write_checkpoint(seq, sink);
}

StatusOr<std::vector<std::byte>> KvCache::checkpoint(SeqId seq) const {
  StatusOr<int64_t> need = checkpoint_bytes(seq);
  if (!need.ok()) return need.status();
  std::vector<std::byte> out;
  try {
    out.resize(static_cast<size_t>(*need));
  } catch (const std::bad_alloc&) {
    return out_of_memory("checkpoint: could not allocate a " + str(*need) + "-byte host buffer");
  }
  KVFLASH_RETURN_IF_ERROR(checkpoint(seq, std::span<std::byte>(out)));
  return out;
}

Status KvCache::checkpoint_to_file(SeqId seq, const std::string& path) const {
  KVFLASH_RETURN_IF_ERROR(check_seq(seq));
  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) return io_error("could not create checkpoint file '" + tmp + "': " + std::strerror(errno));
  FileSink sink(f, tmp);
  Status s = write_checkpoint(seq, sink);
  if (std::fflush(f) != 0 && s.ok()) s = io_error("could not write checkpoint file '" + tmp + "': " + std::strerror(errno));
  if (std::fclose(f) != 0 && s.ok()) s = io_error("could not close checkpoint file '" + tmp + "': " + std::strerror(errno));
  if (s.ok() && std::rename(tmp.c_str(), path.c_str()) != 0) {
    s = io_error("could not rename '" + tmp + "' to '" + path + "': " + std::strerror(errno));
  }
  if (!s.ok()) std::remove(tmp.c_str());
  return s;
}

// ---- reading ----

StatusOr<SeqId> KvCache::read_checkpoint(PayloadSource& source) {
  // 1. Is it an intact checkpoint? (Before any field is trusted: a flipped bit in the fingerprint must read as
  //    corruption, not as a config mismatch.)
  if (source.size() < kCheckpointHeaderBytes) {
    return format_error("checkpoint is " + str(source.size()) + " bytes, shorter than its " +
                        str(kCheckpointHeaderBytes) + "-byte header");
  }
  std::byte bytes[kCheckpointHeaderBytes];
  KVFLASH_RETURN_IF_ERROR(source.read(bytes, kCheckpointHeaderBytes));
  if (!kvcache::has_magic(bytes)) return format_error("not a kvflash checkpoint: the magic \"KVFLCKPT\" is missing");
  const CheckpointHeader h = kvcache::decode_header(bytes);
  if (h.version != kvcache::kCheckpointVersion || h.header_bytes != kCheckpointHeaderBytes) {
    return format_error("checkpoint version = " + ustr(h.version) + " (header " + ustr(h.header_bytes) +
                        " bytes); this build reads version " + ustr(kvcache::kCheckpointVersion) + " (" +
                        str(kCheckpointHeaderBytes) + " bytes)");
  }
  const int64_t payload = source.size() - kCheckpointHeaderBytes;
  if (h.payload_bytes != static_cast<uint64_t>(payload)) {
    return format_error("checkpoint payload is " + str(payload) + " bytes, its header says " +
                        ustr(h.payload_bytes) + " (truncated or extended)");
  }
  Checksum64 hash;
  hash.update(bytes, kChecksumOffset);
  std::byte chunk[kChunkBytes];
  for (int64_t at = 0; at < payload; at += kChunkBytes) {
    const int64_t n = std::min(kChunkBytes, payload - at);
    KVFLASH_RETURN_IF_ERROR(source.read(chunk, n));
    hash.update(chunk, static_cast<size_t>(n));
  }
  if (hash.finish() != h.checksum) {
    return format_error("checkpoint checksum mismatch (stored " + ustr(h.checksum) + ", computed " +
                        ustr(hash.finish()) + "): the bytes are corrupted");
  }

  // 2. Was it written by a cache of this config?
  const auto mismatch = [](const char* field, uint64_t got, int64_t want) {
    return invalid_argument("checkpoint " + std::string(field) + " = " + ustr(got) +
                            " does not match this kv cache's " + field + " = " + str(want));
  };
  const auto type_mismatch = [](const char* field, uint8_t got, KvType want) {
    const std::string name = got < kKvTypeCount ? std::string(kv_traits(static_cast<KvType>(got)).name)
                                                : "id " + ustr(got);
    return invalid_argument("checkpoint " + std::string(field) + " = " + name + " does not match this kv cache's " +
                            field + " = " + std::string(kv_traits(want).name));
  };
  if (h.k_type != static_cast<uint8_t>(config_.k_type)) return type_mismatch("k_type", h.k_type, config_.k_type);
  if (h.v_type != static_cast<uint8_t>(config_.v_type)) return type_mismatch("v_type", h.v_type, config_.v_type);
  if (h.n_layers != static_cast<uint64_t>(config_.n_layers)) return mismatch("n_layers", h.n_layers, config_.n_layers);
  if (h.n_head_kv != static_cast<uint64_t>(config_.n_head_kv)) {
    return mismatch("n_head_kv", h.n_head_kv, config_.n_head_kv);
  }
  if (h.d_k != static_cast<uint64_t>(config_.d_k)) return mismatch("d_k", h.d_k, config_.d_k);
  if (h.d_v != static_cast<uint64_t>(config_.d_v)) return mismatch("d_v", h.d_v, config_.d_v);
  if (h.page_rows != static_cast<uint64_t>(config_.page_rows)) {
    return mismatch("page_rows", h.page_rows, config_.page_rows);
  }
  if (h.n_tokens > static_cast<uint64_t>(config_.max_seq_tokens)) {
    return out_of_memory("kv cache: checkpoint holds " + ustr(h.n_tokens) + " tokens, more than max_seq_tokens = " +
                         str(config_.max_seq_tokens));
  }
  const int64_t n_tokens = static_cast<int64_t>(h.n_tokens);
  const int64_t n_pages = pages_for(n_tokens);
  const int64_t page_image = layout_.k_page_bytes + layout_.v_page_bytes;
  if (payload != n_pages * layout_.n_layers * page_image) {
    return format_error("checkpoint payload is " + str(payload) + " bytes; " + str(n_tokens) + " tokens need " +
                        str(n_pages * layout_.n_layers * page_image));
  }

  // 3. Room for it?
  if (n_free_seqs_ == 0) {
    return out_of_memory("kv cache: restore needs a sequence slot; all max_sequences = " +
                         str(config_.max_sequences) + " are live");
  }
  if (n_pages > n_free_pages_) return out_of_pages(n_pages, "restoring a checkpoint");

  // 4. Copy the page images into fresh pages. The source is hashed again: a file may change between the passes.
  const SeqId seq = take_seq();
  int32_t* pages = table(seq);
  for (int64_t j = 0; j < n_pages; ++j) pages[j] = take_page();
  seqs_[seq].length = n_tokens;
  Checksum64 again;
  again.update(bytes, kChecksumOffset);
  Status s = source.seek_payload();
  for (int64_t j = 0; j < n_pages && s.ok(); ++j) {
    for (int64_t l = 0; l < layout_.n_layers && s.ok(); ++l) {
      const PageImage image = page_to_write(l, pages[j]);
      s = source.read(image.k, layout_.k_page_bytes);
      if (s.ok()) s = source.read(image.v, layout_.v_page_bytes);
      again.update(image.k, static_cast<size_t>(layout_.k_page_bytes));
      again.update(image.v, static_cast<size_t>(layout_.v_page_bytes));
      if (s.ok()) s = store_page(l, pages[j]);
    }
  }
  if (s.ok() && again.finish() != h.checksum) {
    s = format_error("checkpoint changed while it was read (checksum " + ustr(again.finish()) + ", expected " +
                     ustr(h.checksum) + ")");
  }
  if (!s.ok()) {
    (void)remove(seq);
    return s;
  }
  return seq;
}

StatusOr<SeqId> KvCache::restore(std::span<const std::byte> checkpoint) {
  SpanSource source(checkpoint);
  return read_checkpoint(source);
}

StatusOr<SeqId> KvCache::restore_from_file(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return io_error("could not open checkpoint file '" + path + "': " + std::strerror(errno));
  FileCloser closer{f};
  if (fseeko(f, 0, SEEK_END) != 0) return io_error("could not seek in '" + path + "': " + std::strerror(errno));
  const off_t size = ftello(f);
  if (size < 0 || fseeko(f, 0, SEEK_SET) != 0) {
    return io_error("could not size checkpoint file '" + path + "': " + std::strerror(errno));
  }
  FileSource source(f, static_cast<int64_t>(size), path);
  return read_checkpoint(source);
}

}  // namespace kvflash
