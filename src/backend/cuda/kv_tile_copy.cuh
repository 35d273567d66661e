// Copies a tile of stored K or V rows from global to shared memory, whatever the layout: every row's byte offset
// comes from kv_row_offset_on_device (strides or the page table), computed once per row per tile and kept in shared
// memory.
// The copy width is the widest power of two (16 at most) that divides every byte address the tile can touch, so
// the common layouts move 16 or 8 bytes per instruction with cp.async; a layout aligned to 2 bytes only (e.g.
// turbo3's 50-byte rows interleaved across heads) falls back to synchronous 2-byte copies. Rows past the end of
// the key range are filled with zeros: a zero block decodes to 0, never to NaN, so P * V stays finite.
#pragma once

#include <cstdint>

#include "backend/cuda/ptx.cuh"
#include "kvflash/attention_problem.h"

namespace kvflash::cuda {

/// Widest copy (2, 4, 8 or 16 bytes) that divides every row address of KV head h in sequence s, and the row size.
__device__ __forceinline__ int kv_copy_width(const KvView& v, int64_t s, int64_t h, int row_bytes) {
  uint64_t bits = reinterpret_cast<uint64_t>(v.data) | static_cast<uint64_t>(row_bytes) |
                  static_cast<uint64_t>(v.stride.row) | 16u;
  if (v.paging.pages != nullptr) {
    bits |= static_cast<uint64_t>(v.paging.page_bytes) | static_cast<uint64_t>(h * v.stride.head);
  } else {
    bits |= static_cast<uint64_t>(s * v.stride.seq + h * v.stride.head);
  }
  return static_cast<int>(bits & (~bits + 1));  // lowest set bit
}

/// kv_row_offset() (attention_problem.h) for a key r >= 0, as device code computes it once per row per tile: the
/// page slot and the row inside the page by a shift and a mask when page_rows is a power of two (vLLM's 16, the
/// bench's 256), else by a 32-bit division while the operands fit (a 64-bit division is a ~70-instruction
/// subroutine, which the f16 tiles, copied row by row, would pay for every row); the page entry through the
/// read-only path (a kernel never writes its page table).
__device__ __forceinline__ int64_t kv_row_offset_on_device(const KvView& v, int64_t s, int64_t h, int64_t r) {
  if (v.paging.pages == nullptr) return s * v.stride.seq + h * v.stride.head + r * v.stride.row;
  const int64_t rows = v.paging.page_rows;
  int64_t slot, in_page;
  if ((rows & (rows - 1)) == 0) {
    const int shift = __ffsll(static_cast<long long>(rows)) - 1;
    slot = r >> shift;
    in_page = r & (rows - 1);
  } else if (r <= INT32_MAX && rows <= INT32_MAX) {
    const uint32_t q = static_cast<uint32_t>(r) / static_cast<uint32_t>(rows);
    slot = q;
    in_page = r - int64_t{q} * rows;
  } else {
    slot = r / rows;
    in_page = r % rows;
  }
  const int64_t page = __ldg(v.paging.pages + s * v.paging.pages_per_seq + slot);
  return page * v.paging.page_bytes + in_page * v.stride.row + h * v.stride.head;
}

/// Byte offsets of the rows key0 .. key0 + Rows - 1 (-1 past key_end), one row per thread of `tid0 .. tid0+Rows-1`.
template <int Rows>
__device__ __forceinline__ void kv_row_offsets(const KvView& v, int64_t s, int64_t h, int64_t key0, int64_t key_end,
                                               int64_t* offsets, int tid) {
  if (tid < 0 || tid >= Rows) return;
  const int64_t key = key0 + tid;
  offsets[tid] = key < key_end ? kv_row_offset_on_device(v, s, h, key) : -1;
}

template <int Width, int RowBytes, int SmemRow, int Rows, int Threads>
__device__ __forceinline__ void copy_rows_width(uint8_t* dst, const uint8_t* src, const int64_t* offsets, int tid) {
  constexpr int kWordsPerRow = RowBytes / Width;
  constexpr int kWords = Rows * kWordsPerRow;
  constexpr int kIters = (kWords + Threads - 1) / Threads;
  if constexpr (Width >= 4) {
    // A few copies per thread in flight per step is enough (the pipeline keeps whole tiles in flight); unrolling
    // all of a wide tile's iterations only multiplies live 64-bit addresses.
#pragma unroll 4
    for (int it = 0; it < kIters; ++it) {
      const int idx = tid + it * Threads;
      if (kWords % Threads == 0 || idx < kWords) {
        const int row = idx / kWordsPerRow, word = idx % kWordsPerRow;
        const int64_t off = offsets[row];
        const uint8_t* from = off >= 0 ? src + off + word * Width : src;
        ptx::cp_async<Width>(dst + row * SmemRow + word * Width, from, off >= 0 ? Width : 0);
      }
    }
  } else {
    // Loads first, then stores, so a batch of one thread's loads is in flight together.
    constexpr int kBatch = 16;
#pragma unroll 1
    for (int it0 = 0; it0 < kIters; it0 += kBatch) {
      uint16_t v[kBatch];
#pragma unroll
      for (int b = 0; b < kBatch; ++b) {
        const int idx = tid + (it0 + b) * Threads;
        v[b] = 0;
        if (it0 + b < kIters && idx < kWords) {
          const int64_t off = offsets[idx / kWordsPerRow];
          if (off >= 0) v[b] = *reinterpret_cast<const uint16_t*>(src + off + (idx % kWordsPerRow) * 2);
        }
      }
#pragma unroll
      for (int b = 0; b < kBatch; ++b) {
        const int idx = tid + (it0 + b) * Threads;
        if (it0 + b < kIters && idx < kWords) {
          *reinterpret_cast<uint16_t*>(dst + (idx / kWordsPerRow) * SmemRow + (idx % kWordsPerRow) * 2) = v[b];
        }
      }
    }
  }
}

/// Issues the copy of Rows rows of RowBytes bytes each into `dst` (rows SmemRow bytes apart). Call from all
/// Threads threads; the rows' offsets must be visible to every thread (written before a barrier).
template <int RowBytes, int SmemRow, int Rows, int Threads>
__device__ __forceinline__ void copy_rows(uint8_t* dst, const void* src, const int64_t* offsets, int width, int tid) {
  const auto* base = static_cast<const uint8_t*>(src);
  if constexpr (RowBytes % 16 == 0) {
    if (width >= 16) return copy_rows_width<16, RowBytes, SmemRow, Rows, Threads>(dst, base, offsets, tid);
  }
  if constexpr (RowBytes % 8 == 0) {
    if (width >= 8) return copy_rows_width<8, RowBytes, SmemRow, Rows, Threads>(dst, base, offsets, tid);
  }
  if constexpr (RowBytes % 4 == 0) {
    if (width >= 4) return copy_rows_width<4, RowBytes, SmemRow, Rows, Threads>(dst, base, offsets, tid);
  }
  copy_rows_width<2, RowBytes, SmemRow, Rows, Threads>(dst, base, offsets, tid);
}

}  // namespace kvflash::cuda
