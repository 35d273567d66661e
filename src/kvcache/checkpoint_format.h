// The checkpoint file format of one KvCache sequence: a fixed 80-byte little-endian header, then the payload.
//
//   offset size  field
//    0     8     magic "KVFLCKPT"
//    8     4     version (kCheckpointVersion)
//   12     4     header bytes (80)
//   16     8     n_layers          -+
//   24     8     n_head_kv          |
//   32     4     d_k                |  config fingerprint: a checkpoint restores only into a cache
//   36     4     d_v                |  whose values are equal
//   40     1     k_type (KvType id) |
//   41     1     v_type             |
//   42     6     reserved, zero     |
//   48     8     page_rows         -+
//   56     8     n_tokens
//   64     8     payload bytes
//   72     8     checksum: Checksum64 over header bytes [0, 72) followed by the payload
//
// Payload: for each of the sequence's ceil(n_tokens / page_rows) pages in order, for each layer, the page's K
// rows then its V rows exactly as the cache stores them ([head][row in page], head_row_bytes each), rows at or
// past n_tokens written as zeros so that a checkpoint depends only on the sequence's tokens.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

namespace kvflash::kvcache {

inline constexpr char kCheckpointMagic[8] = {'K', 'V', 'F', 'L', 'C', 'K', 'P', 'T'};
inline constexpr uint32_t kCheckpointVersion = 1;
inline constexpr int64_t kCheckpointHeaderBytes = 80;
inline constexpr int64_t kChecksumOffset = 72;

struct CheckpointHeader {
  uint32_t version = kCheckpointVersion;
  uint32_t header_bytes = kCheckpointHeaderBytes;
  uint64_t n_layers = 0;
  uint64_t n_head_kv = 0;
  uint32_t d_k = 0;
  uint32_t d_v = 0;
  uint8_t k_type = 0;
  uint8_t v_type = 0;
  uint64_t page_rows = 0;
  uint64_t n_tokens = 0;
  uint64_t payload_bytes = 0;
  uint64_t checksum = 0;
};

namespace detail {
inline void put_le(std::byte* p, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) p[i] = static_cast<std::byte>((v >> (8 * i)) & 0xffu);
}
inline uint64_t get_le(const std::byte* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}
}  // namespace detail

inline void encode_header(const CheckpointHeader& h, std::span<std::byte, kCheckpointHeaderBytes> out) {
  using detail::put_le;
  std::memset(out.data(), 0, out.size());
  std::memcpy(out.data(), kCheckpointMagic, sizeof(kCheckpointMagic));
  put_le(out.data() + 8, h.version, 4);
  put_le(out.data() + 12, h.header_bytes, 4);
  put_le(out.data() + 16, h.n_layers, 8);
  put_le(out.data() + 24, h.n_head_kv, 8);
  put_le(out.data() + 32, h.d_k, 4);
  put_le(out.data() + 36, h.d_v, 4);
  put_le(out.data() + 40, h.k_type, 1);
  put_le(out.data() + 41, h.v_type, 1);
  put_le(out.data() + 48, h.page_rows, 8);
  put_le(out.data() + 56, h.n_tokens, 8);
  put_le(out.data() + 64, h.payload_bytes, 8);
  put_le(out.data() + 72, h.checksum, 8);
}

/// Decodes the fields; says nothing about whether they are valid (the caller checks magic, version, sizes).
inline CheckpointHeader decode_header(std::span<const std::byte, kCheckpointHeaderBytes> in) {
  using detail::get_le;
  CheckpointHeader h;
  h.version = static_cast<uint32_t>(get_le(in.data() + 8, 4));
  h.header_bytes = static_cast<uint32_t>(get_le(in.data() + 12, 4));
  h.n_layers = get_le(in.data() + 16, 8);
  h.n_head_kv = get_le(in.data() + 24, 8);
  h.d_k = static_cast<uint32_t>(get_le(in.data() + 32, 4));
  h.d_v = static_cast<uint32_t>(get_le(in.data() + 36, 4));
  h.k_type = static_cast<uint8_t>(get_le(in.data() + 40, 1));
  h.v_type = static_cast<uint8_t>(get_le(in.data() + 41, 1));
  h.page_rows = get_le(in.data() + 48, 8);
  h.n_tokens = get_le(in.data() + 56, 8);
  h.payload_bytes = get_le(in.data() + 64, 8);
  h.checksum = get_le(in.data() + 72, 8);
  return h;
}

inline bool has_magic(std::span<const std::byte, kCheckpointHeaderBytes> in) {
  return std::memcmp(in.data(), kCheckpointMagic, sizeof(kCheckpointMagic)) == 0;
}

/// A 64-bit checksum of a byte stream: FNV-1a's xor-multiply step applied to 64-bit little-endian words (8x
/// faster than byte-wise FNV), a zero-padded tail word, the length, and a final avalanche. Each step is a
/// bijection of the state, so any change confined to one word always changes the result. The result does not
/// depend on how the stream is split into update() calls.
class Checksum64 {
 public:
  void update(const void* data, size_t n) {
    const auto* p = static_cast<const std::byte*>(data);
    total_ += n;
    while (n > 0 && tail_len_ != 0) {
      push_tail(static_cast<uint8_t>(*p++));
      --n;
    }
    for (; n >= 8; n -= 8, p += 8) {
      uint64_t w;
      std::memcpy(&w, p, 8);
      mix(w);
    }
    while (n-- > 0) push_tail(static_cast<uint8_t>(*p++));
  }
  void update_zeros(size_t n) {
    total_ += n;
    while (n > 0 && tail_len_ != 0) {
      push_tail(0);
      --n;
    }
    for (; n >= 8; n -= 8) mix(0);
    while (n-- > 0) push_tail(0);
  }
  uint64_t finish() const {
    Checksum64 c = *this;
    if (c.tail_len_ != 0) c.mix(c.tail_);
    c.mix(total_);
    uint64_t h = c.state_;  // murmur3's fmix64: spreads the last words' bits over the whole result
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
  }

 private:
  static_assert(std::endian::native == std::endian::little, "words are read little-endian");
  void mix(uint64_t w) { state_ = (state_ ^ w) * 0x100000001b3ull; }  // FNV-1a 64-bit prime
  void push_tail(uint8_t b) {
    tail_ |= static_cast<uint64_t>(b) << (8 * tail_len_);
    if (++tail_len_ == 8) {
      mix(tail_);
      tail_ = 0;
      tail_len_ = 0;
    }
  }
  uint64_t state_ = 0xcbf29ce484222325ull;  // FNV-1a 64-bit offset basis
  uint64_t tail_ = 0;
  int tail_len_ = 0;
  uint64_t total_ = 0;
};

}  // namespace kvflash::kvcache
