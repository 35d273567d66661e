// Row quantize / dequantize for every KvType: one table of per-type codecs, indexed by KvType.
#include <cstring>
#include <string>
#include <type_traits>

#include "format/blocks.h"
#include "format/ggml_quantize.h"
#include "format/turbo.h"
#include "format/turbo_quantize.h"
#include "kvflash/quantize.h"

namespace kvflash {

namespace {

using format::BlockQ4_0;
using format::BlockQ4_1;
using format::BlockQ5_0;
using format::BlockQ5_1;
using format::BlockQ8_0;
using format::BlockTurbo2;
using format::BlockTurbo3;
using format::BlockTurbo4;

// Blocks are read and written through memcpy: a row inside a caller's buffer need not be aligned.
template <typename Block>
constexpr int64_t kBlockElems = std::is_same_v<Block, BlockTurbo2> || std::is_same_v<Block, BlockTurbo3> ||
                                        std::is_same_v<Block, BlockTurbo4>
                                    ? format::kTurboGroup
                                    : 32;

template <typename Block>
void quantize_blocks(const float* src, int64_t n, void* dst) {
  constexpr int64_t elems = kBlockElems<Block>;
  auto* out = static_cast<uint8_t*>(dst);
  for (int64_t b = 0; b < n / elems; ++b) {
    Block block;
    format::quantize_block(src + b * elems, block);
    std::memcpy(out + b * sizeof(Block), &block, sizeof(Block));
  }
}

template <typename Block>
void dequantize_ggml_blocks(const void* src, int64_t n, float* dst) {
  const auto* in = static_cast<const uint8_t*>(src);
  for (int64_t b = 0; b < n / 32; ++b) {
    Block block;
    std::memcpy(&block, in + b * sizeof(Block), sizeof(Block));
    for (int j = 0; j < 32; ++j) dst[b * 32 + j] = format::dequant_value(block, j);
  }
}

template <typename Block>
void dequantize_turbo_blocks(const void* src, int64_t n, float* dst, const float* centroids, bool rotated) {
  const auto* in = static_cast<const uint8_t*>(src);
  for (int64_t b = 0; b < n / format::kTurboGroup; ++b) {
    Block block;
    std::memcpy(&block, in + b * sizeof(Block), sizeof(Block));
    float* group = dst + b * format::kTurboGroup;
    for (int j = 0; j < format::kTurboGroup; ++j) group[j] = format::dequant_value(block, j, centroids);
    if (!rotated) format::turbo_rotate_inverse(group);
  }
}

void quantize_plain(KvType type, const float* src, int64_t n, void* dst) {
  auto* out = static_cast<uint8_t*>(dst);
  for (int64_t i = 0; i < n; ++i) {
    if (type == KvType::f32) {
      std::memcpy(out + 4 * i, &src[i], 4);
    } else {
      const uint16_t h = type == KvType::f16 ? fp32_to_fp16(src[i]) : fp32_to_bf16(src[i]);
      std::memcpy(out + 2 * i, &h, 2);
    }
  }
}

void dequantize_plain(KvType type, const void* src, int64_t n, float* dst) {
  const auto* in = static_cast<const uint8_t*>(src);
  for (int64_t i = 0; i < n; ++i) {
    if (type == KvType::f32) {
      std::memcpy(&dst[i], in + 4 * i, 4);
    } else {
      uint16_t h;
      std::memcpy(&h, in + 2 * i, 2);
      dst[i] = type == KvType::f16 ? fp16_to_fp32(h) : bf16_to_fp32(h);
    }
  }
}

Status check_row(const char* what, KvType type, int64_t n, const void* src, const void* dst) {
  if (static_cast<unsigned>(type) >= static_cast<unsigned>(kKvTypeCount)) {
    return invalid_argument(std::string(what) + ": type = " + std::to_string(static_cast<int>(type)) +
                            " is not a KvType (0.." + std::to_string(kKvTypeCount - 1) + ")");
  }
  const KvTraits& tr = kv_traits(type);
  if (n < 0) {
    return invalid_argument(std::string(what) + ": n = " + std::to_string(n) + " is negative (type " +
                            std::string(tr.name) + ")");
  }
  if (n % tr.block_elems != 0) {
    return invalid_argument(std::string(what) + ": n = " + std::to_string(n) + " is not a multiple of " +
                            std::string(tr.name) + "'s block size " + std::to_string(tr.block_elems));
  }
  if (n > 0 && (src == nullptr || dst == nullptr)) {
    return invalid_argument(std::string(what) + ": " + (src == nullptr ? "src" : "dst") + " is null for n = " +
                            std::to_string(n) + " values of " + std::string(tr.name));
  }
  return Status::Ok();
}

}  // namespace

Status quantize_row(KvType type, const float* src, int64_t n, void* dst) {
  KVFLASH_RETURN_IF_ERROR(check_row("quantize_row", type, n, src, dst));
  switch (type) {
    case KvType::f32:
    case KvType::f16:
    case KvType::bf16: quantize_plain(type, src, n, dst); break;
    case KvType::q8_0: quantize_blocks<BlockQ8_0>(src, n, dst); break;
    case KvType::q4_0: quantize_blocks<BlockQ4_0>(src, n, dst); break;
    case KvType::q4_1: quantize_blocks<BlockQ4_1>(src, n, dst); break;
    case KvType::q5_0: quantize_blocks<BlockQ5_0>(src, n, dst); break;
    case KvType::q5_1: quantize_blocks<BlockQ5_1>(src, n, dst); break;
    case KvType::turbo2: quantize_blocks<BlockTurbo2>(src, n, dst); break;
    case KvType::turbo3: quantize_blocks<BlockTurbo3>(src, n, dst); break;
    case KvType::turbo4: quantize_blocks<BlockTurbo4>(src, n, dst); break;
  }
  return Status::Ok();
}

Status dequantize_row(KvType type, const void* src, int64_t n, float* dst, bool rotated) {
  KVFLASH_RETURN_IF_ERROR(check_row("dequantize_row", type, n, src, dst));
  switch (type) {
    case KvType::f32:
    case KvType::f16:
    case KvType::bf16: dequantize_plain(type, src, n, dst); break;
    case KvType::q8_0: dequantize_ggml_blocks<BlockQ8_0>(src, n, dst); break;
    case KvType::q4_0: dequantize_ggml_blocks<BlockQ4_0>(src, n, dst); break;
    case KvType::q4_1: dequantize_ggml_blocks<BlockQ4_1>(src, n, dst); break;
    case KvType::q5_0: dequantize_ggml_blocks<BlockQ5_0>(src, n, dst); break;
    case KvType::q5_1: dequantize_ggml_blocks<BlockQ5_1>(src, n, dst); break;
    case KvType::turbo2:
      dequantize_turbo_blocks<BlockTurbo2>(src, n, dst, format::kTurbo2Centroids, rotated);
      break;
    case KvType::turbo3:
      dequantize_turbo_blocks<BlockTurbo3>(src, n, dst, format::kTurbo3Centroids, rotated);
      break;
    case KvType::turbo4:
      dequantize_turbo_blocks<BlockTurbo4>(src, n, dst, format::kTurbo4Centroids, rotated);
      break;
  }
  return Status::Ok();
}

}  // namespace kvflash
