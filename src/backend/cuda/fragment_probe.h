// Test hook: what the decode kernels' turbo fragment loaders put in each fragment slot, read back bit for bit.
// Attention tests compare whole outputs within a tolerance; this one pins the dequantized values themselves
// (the register lookups of turbo_lookup.cuh must give exactly the f16 centroids the shared-memory table held).
#pragma once

#include <cstdint>

#include "kvflash/kv_type.h"
#include "kvflash/status.h"

namespace kvflash::cuda {

inline constexpr int kProbeRows = 16;  // one k-step of keys: load_k's two 8-key groups, load_v's 16 keys

/// Copies kProbeRows stored rows of `type` (turbo3 or turbo4; `row_bytes` each, back to back in `rows`, host
/// memory) into shared memory `pitch` bytes apart, runs load_k over both 8-key groups and every 64-value unit and
/// load_v over every 32-value unit, and writes the f16 bits of each fragment slot to the element it holds:
/// k_bits / v_bits are [kProbeRows][dim] (host memory), dim = values per row. `scaled`: KvFragments (norm
/// multiplied in: wide decode, prefill), else KvUnscaledFragments (narrow decode, norm left out). Synchronous.
Status probe_turbo_fragments(KvType type, bool scaled, const uint8_t* rows, int row_bytes, int pitch, int dim,
                             uint16_t* k_bits, uint16_t* v_bits);

}  // namespace kvflash::cuda
