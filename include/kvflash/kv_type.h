// KvType and its traits: the storage formats a K or V cache row can have.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "kvflash/status.h"

namespace kvflash {

/// Storage format of one K or V row. Values are stable (C API type ids, file formats).
enum class KvType : uint8_t {
  f32 = 0,
  f16 = 1,
  bf16 = 2,
  q8_0 = 3,
  q4_0 = 4,
  q4_1 = 5,
  q5_0 = 6,
  q5_1 = 7,
  turbo2 = 8,
  turbo3 = 9,
  turbo4 = 10,
};

inline constexpr int kKvTypeCount = 11;

struct KvTraits {
  KvType type;
  std::string_view name;
  int block_elems;       // values per block (1 for plain floats)
  int block_bytes;       // bytes per block
  bool quantized;        // block-quantized (GGML blocks or TurboQuant)
  bool rotated;          // TurboQuant: stored values live in the rotated domain
  // Alignment the first byte of a block needs: the widest scalar field a reader loads.
  int align_bytes;
  constexpr double bits_per_value() const { return 8.0 * block_bytes / block_elems; }
};

// Block sizes are the GGML layouts (ggml-common.h) and TURBOQUANT.md; they are facts of the formats.
inline constexpr KvTraits kKvTraitsTable[kKvTypeCount] = {
    {KvType::f32, "f32", 1, 4, false, false, 4},
    {KvType::f16, "f16", 1, 2, false, false, 2},
    {KvType::bf16, "bf16", 1, 2, false, false, 2},
    {KvType::q8_0, "q8_0", 32, 34, true, false, 2},
    {KvType::q4_0, "q4_0", 32, 18, true, false, 2},
    {KvType::q4_1, "q4_1", 32, 20, true, false, 2},
    {KvType::q5_0, "q5_0", 32, 22, true, false, 2},
    {KvType::q5_1, "q5_1", 32, 24, true, false, 2},
    {KvType::turbo2, "turbo2", 128, 34, true, true, 2},
    {KvType::turbo3, "turbo3", 128, 50, true, true, 2},
    {KvType::turbo4, "turbo4", 128, 68, true, true, 2},
};

constexpr const KvTraits& kv_traits(KvType t) { return kKvTraitsTable[static_cast<int>(t)]; }

/// All types, in id order (for sweeps and tables).
constexpr std::span<const KvTraits> all_kv_types() { return kKvTraitsTable; }

/// "q4_0" -> KvType::q4_0; nullopt for an unknown name.
std::optional<KvType> kv_type_from_name(std::string_view name);

/// Values a stored row of a logical head dim holds: turbo rows are zero-padded to the next multiple of 128
/// (as the TurboQuant fork pads head dims 64, 96, 192, ...); every other type stores exactly `dim` values.
constexpr int64_t stored_dim(KvType t, int64_t dim) {
  const KvTraits& tr = kv_traits(t);
  if (!tr.rotated) return dim;
  return (dim + tr.block_elems - 1) / tr.block_elems * tr.block_elems;
}

/// Bytes of one stored row of `n` values (n must be a multiple of the block size; 0 otherwise).
constexpr int64_t row_bytes(KvType t, int64_t n) {
  const KvTraits& tr = kv_traits(t);
  if (n < 0 || n % tr.block_elems != 0) return 0;
  return n / tr.block_elems * tr.block_bytes;
}

/// Bytes of one stored row for a logical head dim (after turbo padding).
constexpr int64_t head_row_bytes(KvType t, int64_t dim) { return row_bytes(t, stored_dim(t, dim)); }

}  // namespace kvflash
