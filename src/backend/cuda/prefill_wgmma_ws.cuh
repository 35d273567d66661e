// The Hopper prefill with warp specialization (sm_90a) at head dim 128: the MMAs and softmax of prefill_wgmma.cuh
// on two consumer warpgroups, fed by a producer warpgroup through mbarriers, with no CTA-wide barrier per tile.
//
// A CTA of three warpgroups owns 128 query vectors of one (sequence, KV head) as in prefill_wgmma.cuh:
//   warpgroup 0, the producer (setmaxnreg down to kProducerRegs): computes each tile's row offsets (page table
//   included), copies K(n) and V(n) into rings of f16 swizzled slots (kKStages, kVStages), marks them full: f16 rows
//   by cp.async whose completion arrives on the slot's "full" mbarrier (cp.async.mbarrier.arrive); quantized rows
//   by cp.async into raw slots, then dequantized by the producer into the f16 slot (swizzled_dequant.cuh) and
//   marked with an ordinary arrive. It waits on the slot's "empty" mbarrier before refilling it.
//   warpgroups 1 and 2, the consumers (setmaxnreg up to kConsumerRegs), own query vectors 0-63 and 64-127: wait
//   "full", issue S(n + 1) = Q K(n + 1)^T with O += P(n) V(n) as in prefill_wgmma.cuh, release a slot ("empty",
//   one arrival per warp) as soon as the wgmma group that read it has retired.
// Ping-pong: the two consumers take turns issuing their MMAs (named barriers kTurnBarrier + 0 / + 1): consumer c
// waits for its turn, issues, and hands the turn to the other, so the tensor cores see the groups of the two in
// alternation and one consumer's softmax runs while the other's MMAs do, instead of both softmaxes at once (the
// per-tile __syncthreads of prefill_wgmma.cuh aligned them; bench/prefill_notes.md w1). q4_0 does not take turns
// (WsPrefillConfig::kPingPong): in three runs of session 9 it was 1-2% faster without, turbo3 / turbo4 1-3% faster
// with, q8_0 and f16 within noise either way.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "backend/cuda/cuda_status.h"
#include "backend/cuda/grid_launch.cuh"
#include "backend/cuda/kv_tile_copy.cuh"
#include "backend/cuda/output_rows.cuh"
#include "backend/cuda/prefill_attention.cuh"
#include "backend/cuda/prefill_wgmma.cuh"
#include "backend/cuda/ptx.cuh"
#include "backend/cuda/score_variant.cuh"
#include "backend/cuda/swizzled_dequant.cuh"
#include "backend/cuda/wgmma.cuh"
#include "backend/cuda/wgmma_softmax.cuh"
#include "kvflash/attention_problem.h"
#include "kvflash/route.h"

namespace kvflash::cuda {

/// Type: the K and V cache type (the same for both).
template <KvType Type>
struct WsPrefillConfig {
  static constexpr int kConsumers = 2;
  static constexpr int kThreads = 128 * (1 + kConsumers);  // warpgroup 0 produces
  // 65536 registers per SM: 168 per thread at launch (384 threads), then 40 x 128 + 232 x 256 = 64512.
  static constexpr int kProducerRegs = 40;
  static constexpr int kConsumerRegs = 232;
  static constexpr int kGroupQvecs = 64;  // the M of one wgmma
  static constexpr int kQvecs = kGroupQvecs * kConsumers;
  static constexpr int kDim = 128;
  static constexpr int kKeyTile = 128;  // the N of the score wgmma
  // Slots of the K and V rings. V(n) can be refilled only once P(n - kVStages) V(n - kVStages) retired in both
  // consumers, K(n) once S(n - kKStages) did, and S(n) is issued a tile before P(n) V(n): V is the shorter lead, so
  // f16 gives it a third slot (K 2 + V 3 slots + query = 192 KB); the quantized types keep 2 + 2 next to their raw
  // slots (a third V slot would pass the 227 KB of an SM).
  static constexpr int kKStages = 2;
  static constexpr int kVStages = Type == KvType::f16 ? 3 : 2;
  static constexpr int kRowBytes = kSwizzleRowBytes;
  static constexpr int kAtomBytes = 8 * kRowBytes;
  static constexpr int kQBytes = kQvecs * kDim * 2;
  static constexpr int kTileBytes = kKeyTile * kDim * 2;  // one f16 K or V slot
  static constexpr int kKOffset = kQBytes;
  static constexpr int kVOffset = kKOffset + kKStages * kTileBytes;
  // The epilogue's f32 output rows, maxima and sums alias the K and V slots once every MMA is done.
  static constexpr int kEpilogueBytes = kQvecs * (kDim + 2) * 4;
  static_assert(kEpilogueBytes <= (kKStages + kVStages) * kTileBytes);
  // Quantized: raw slots, each a K or a V tile as stored, that the producer copies into and dequantizes from: q4_0
  // and turbo 4 (9 KB or less each), used as two K + V pairs; q8_0 3 (17 KB each: two pairs would pass the 227 KB
  // of an SM), used as a ring of half-tiles K(0) V(0) K(1) ... where tiles span (kHalfTileRing), so that two copies
  // are in flight while a half is dequantized instead of none. The ring measured +3-8% for q8_0 and -11% for q4_0
  // (session 8, bench/prefill_notes.md), hence one layout per type.
  static constexpr bool kQuantized = Type != KvType::f16;
  static constexpr int kRawRowBytes = static_cast<int>(row_bytes(Type, kDim));
  static constexpr bool kTurbo = Type == KvType::turbo3 || Type == KvType::turbo4;
  // A turbo3 quarter's words come through load_words, which reads the aligned word after its last one: up to 4
  // bytes past a tile's last row, which must stay in the tile's own slot (racecheck saw them reach the next slot
  // while the copy engine was filling it, session 9). The other types read whole words inside their rows.
  static constexpr int kRawReadPastBytes = Type == KvType::turbo3 ? 4 : 0;
  static constexpr int kRawTileBytes =
      kQuantized ? (kKeyTile * kRawRowBytes + kRawReadPastBytes + 15) / 16 * 16 : 0;
  static constexpr int kRawSlots = !kQuantized ? 0 : Type == KvType::q8_0 ? 3 : 4;
  static constexpr bool kHalfTileRing = Type == KvType::q8_0;
  static constexpr int kRawOffset = kVOffset + kVStages * kTileBytes;
  static constexpr int kVariantOffset = kRawOffset + kRawSlots * kRawTileBytes;
  static constexpr int kOffsetsOffset =
      (kVariantOffset + kQvecs * static_cast<int>(sizeof(ScoreVariant)) + 15) / 16 * 16;
  static constexpr int kBarriersOffset = kOffsetsOffset + 2 * 2 * kKeyTile * 8;  // int64 [tile % 2][K, V][row]
  // full K, V; empty K, V; raw full (quantized)
  static constexpr int kBarrierBytes = (2 * (kKStages + kVStages) + kRawSlots) * 8;
  // turbo: the centroid table words of turbo_lookup.cuh (TableRegs), one 16-byte load per dequantized tile.
  static constexpr int kTableOffset = (kBarriersOffset + kBarrierBytes + 15) / 16 * 16;
  static constexpr int kUsedBytes = kTurbo ? kTableOffset + 16 : kBarriersOffset + kBarrierBytes;
  // The dynamic shared-memory window is 16-byte aligned; the swizzle atoms need 1024: the kernel rounds its base up.
  static constexpr int kSmemBytes = kUsedBytes + 1024;
  static_assert(kSmemBytes <= 227 * 1024, "a CTA must fit an SM's shared memory");
  // Named barriers (0 is __syncthreads): the consumers' epilogue, their two turns, the producer's own.
  static constexpr int kEpilogueBarrier = 1;
  static constexpr int kTurnBarrier = 2;  // + consumer index
  static constexpr int kProducerBarrier = 4;
  static constexpr bool kPingPong = Type != KvType::q4_0;
};

/// The slots of the K/V ring and their mbarriers, as both roles see them.
struct WsRing {
  uint8_t* k_slots;
  uint8_t* v_slots;
  uint64_t* full_k;
  uint64_t* full_v;
  uint64_t* empty_k;
  uint64_t* empty_v;
  uint64_t* raw_full;  // quantized: raw slot (pair) r holds its tile (copy-engine bytes or the producer's arrival)
};

/// The producer warpgroup (ptid 0..127): every tile of the work into the ring, in order.
template <class Cfg, KvType Type>
__device__ __forceinline__ void produce_tiles(const AttentionProblem& p, const PrefillWork& w, const WsRing& ring,
                                              int64_t* offsets, uint8_t* raw, const void* turbo_table, int ptid) {
  constexpr int T = Cfg::kKeyTile;
  constexpr int SK = Cfg::kKStages;
  constexpr int SV = Cfg::kVStages;
  const int n_tiles = w.keys.n_tiles;
  // Row offsets of tile n into offsets slot n % 2 (one K and one V row per thread), read by the copies after the
  // next producer barrier; a slot is rewritten two tiles later, a barrier after its last reader.
  const auto tile_offsets = [&](int n) {
    int64_t* slot = offsets + (n % 2) * 2 * T;
    const int64_t key = w.keys.key_begin + static_cast<int64_t>(n) * T + ptid;
    const bool in_range = key < w.keys.key_end;
    slot[ptid] = in_range ? kv_row_offset_on_device(p.k, w.s, w.hkv, key) : -1;
    slot[T + ptid] = in_range ? kv_row_offset_on_device(p.v, w.s, w.hkv, key) : -1;
  };
  const auto producer_sync = [] { ptx::named_barrier_sync(Cfg::kProducerBarrier, 128); };
  // Use u of a slot waits for the consumers' release of use u - 1 (parity trick: a fresh barrier passes parity 1).
  const auto empty_parity = [](int n, int stages) { return static_cast<uint32_t>(((n / stages) & 1) ^ 1); };

  if constexpr (!Cfg::kQuantized) {
    const bool k_aligned = kv_copy_width(p.k, w.s, w.hkv, Cfg::kDim * 2) >= 16;
    const bool v_aligned = kv_copy_width(p.v, w.s, w.hkv, Cfg::kDim * 2) >= 16;
    const bool k_spans = kv_tile_run_rows<T>(p.k, w.keys, Cfg::kDim * 2) == T;
    const bool v_spans = kv_tile_run_rows<T>(p.v, w.keys, Cfg::kDim * 2) == T;
    // cp.async completion arrives on its own; the 2-byte fallback's stores are this thread's, fenced for the
    // tensor cores (async proxy) before an ordinary arrival.
    const auto mark_full = [](uint64_t* bar, bool async_copy) {
      if (async_copy) {
        ptx::cp_async_mbarrier_arrive(bar);
      } else {
        wgmma::fence_proxy_async();
        ptx::mbarrier_arrive(bar);
      }
    };
#pragma unroll 1
    for (int n = 0; n < n_tiles; ++n) {
      const int k_slot = n % SK, v_slot = n % SV;
      tile_offsets(n);
      producer_sync();
      const int64_t* offs = offsets + (n % 2) * 2 * T;
      ptx::mbarrier_wait(ring.empty_k + k_slot, empty_parity(n, SK));
      copy_swizzled_tile<T, 128>(ring.k_slots + k_slot * Cfg::kTileBytes, p.k.data, offs, k_aligned, k_spans,
                                 ptid);
      mark_full(ring.full_k + k_slot, k_aligned);
      ptx::mbarrier_wait(ring.empty_v + v_slot, empty_parity(n, SV));
      copy_swizzled_tile<T, 128>(ring.v_slots + v_slot * Cfg::kTileBytes, p.v.data, offs + T, v_aligned, v_spans,
                                 ptid);
      mark_full(ring.full_v + v_slot, v_aligned);
    }
  } else {
    constexpr int R = Cfg::kRawSlots / 2;  // K + V pairs
    constexpr int RB = Cfg::kRawRowBytes;
    const int width_k = kv_copy_width(p.k, w.s, w.hkv, RB);
    const int width_v = kv_copy_width(p.v, w.s, w.hkv, RB);
    const auto raw_k = [&](int n) { return raw + (n % R) * 2 * Cfg::kRawTileBytes; };
    // Tiles stored as one run of bytes (contiguous caches, pages of a multiple of T rows) move in 16-byte pieces;
    // q8_0's 136-byte rows would otherwise move in 8-byte ones (half the speed of its CLI row, on 256-row pages).
    const bool k_spans = kv_tile_run_rows<T>(p.k, w.keys, RB) == T;
    const bool v_spans = kv_tile_run_rows<T>(p.v, w.keys, RB) == T;
    const auto issue_raw = [&](int n) {
      const int64_t* offs = offsets + (n % 2) * 2 * T;
      copy_raw_tile<T, RB, 128>(raw_k(n), p.k.data, offs, width_k, k_spans, w.keys, n, ptid);
      copy_raw_tile<T, RB, 128>(raw_k(n) + Cfg::kRawTileBytes, p.v.data, offs + T, width_v, v_spans, w.keys, n, ptid);
    };
    // Use n of a ring of `stages` f16 slots (K or V), filled from raw_tile once the consumers released it.
    const auto dequant_into = [&](uint8_t* slots, uint64_t* full, uint64_t* empty, int stages, int n,
                                  const uint8_t* raw_tile) {
      const int slot = n % stages;
      ptx::mbarrier_wait(empty + slot, empty_parity(n, stages));
      dequantize_swizzled_tile<Type, RB, T, 128>(slots + slot * Cfg::kTileBytes, raw_tile, ptid, turbo_table);
      ptx::mbarrier_arrive(full + slot);
    };
    const auto dequant_k = [&](int n, const uint8_t* raw_tile) {
      dequant_into(ring.k_slots, ring.full_k, ring.empty_k, SK, n, raw_tile);
    };
    const auto dequant_v = [&](int n, const uint8_t* raw_tile) {
      dequant_into(ring.v_slots, ring.full_v, ring.empty_v, SV, n, raw_tile);
    };
    const auto dequant = [&](int n) {
      dequant_k(n, raw_k(n));
      dequant_v(n, raw_k(n) + Cfg::kRawTileBytes);
    };
    // Tile n's offsets visible to every producer thread (a barrier), then its copies issued (by `issue`, then
    // `after_issue` whether or not tile n exists); the copies run a tile ahead of the dequantization where there are
    // two raw slots, behind it where there is one. `landed(n)` waits until raw tile n is there for every thread.
    const auto run = [&](auto issue, auto after_issue, auto landed) {
      const auto prepare = [&](int n) {
        if (n < n_tiles) tile_offsets(n);
        producer_sync();
        if (n < n_tiles) issue(n);
        after_issue();
      };
      prepare(0);
#pragma unroll 1
      for (int n = 0; n < n_tiles; ++n) {
        // With two slots, raw slot (n + 1) % 2 was last read by the dequantization of tile n - 1, before the
        // barrier in prepare(); with one, the barrier follows every thread's dequantization of tile n.
        if constexpr (R == 2) prepare(n + 1);
        landed(n);
        dequant(n);
        if constexpr (R == 1) prepare(n + 1);
      }
    };
    if constexpr (Cfg::kHalfTileRing) {
      if (k_spans && v_spans) {
        // Half-tile h (K of tile h / 2 where h is even, its V where odd) in raw slot h % H, by the copy engine as
        // below, refilled with h + H after a producer barrier that follows every thread's dequantization of h.
        constexpr int H = Cfg::kRawSlots;
        const int n_halves = 2 * n_tiles;
        const auto raw_slot = [&](int h) { return raw + (h % H) * Cfg::kRawTileBytes; };
        const auto issue_half = [&](int h) {
          const KvView& kv = h % 2 == 0 ? p.k : p.v;
          const int64_t key0 = w.keys.key_begin + static_cast<int64_t>(h / 2) * T;
          const int64_t rows_valid = w.keys.key_end - key0;
          uint64_t* full = ring.raw_full + h % H;
          if (rows_valid >= T) {
            if (ptid == 0) {
              const int64_t start = kv_row_offset_on_device(kv, w.s, w.hkv, key0);
              constexpr uint32_t kBytes = T * RB;
              static_assert(kBytes % 16 == 0 && kBytes <= Cfg::kRawTileBytes, "a tile is whole 16-byte pieces");
              ptx::mbarrier_arrive_expect_tx(full, kBytes);
              ptx::cp_async_bulk(raw_slot(h), static_cast<const uint8_t*>(kv.data) + start, kBytes, full);
            }
            return;
          }
          copy_tile_span<T, RB, 128>(raw_slot(h), kv.data, kv_row_offset_on_device(kv, w.s, w.hkv, key0), rows_valid,
                                     ptid);
          ptx::cp_async_commit();
          ptx::cp_async_wait<0>();
          producer_sync();
          if (ptid == 0) ptx::mbarrier_arrive(full);
        };
        for (int h = 0; h < std::min(H, n_halves); ++h) issue_half(h);
#pragma unroll 1
        for (int h = 0; h < n_halves; ++h) {
          ptx::mbarrier_wait(ring.raw_full + h % H, static_cast<uint32_t>((h / H) & 1));
          if (h % 2 == 0) {
            dequant_k(h / 2, raw_slot(h));
          } else {
            dequant_v(h / 2, raw_slot(h));
          }
          if (h + H < n_halves) {
            producer_sync();  // every thread's reads of slot h % H are done
            issue_half(h + H);
          }
        }
        return;
      }
    } else if (k_spans && v_spans) {
      // Whole tiles by the copy engine: one thread announces and issues a K and a V bulk copy into the raw slot,
      // which complete on raw_full, so no producer thread has a cp.async in flight when its fence.proxy.async
      // after each dequantized tile runs (the cp.async path below may make those fences wait for the next tile's
      // copies, which would leave the copy latency on the producer's path every tile). A partial last tile goes
      // through cp.async (zeros past key_end), waited for here, and one arrival.
      const auto issue_raw_tile = [&](int n) {
        const int64_t* offs = offsets + (n % 2) * 2 * T;
        uint64_t* full = ring.raw_full + n % R;
        if (w.keys.key_end - (w.keys.key_begin + static_cast<int64_t>(n) * T) >= T) {
          if (ptid == 0) {
            constexpr uint32_t kBytes = T * RB;
            static_assert(kBytes % 16 == 0 && kBytes <= Cfg::kRawTileBytes, "a tile is whole 16-byte pieces");
            ptx::mbarrier_arrive_expect_tx(full, 2 * kBytes);
            ptx::cp_async_bulk(raw_k(n), static_cast<const uint8_t*>(p.k.data) + offs[0], kBytes, full);
            ptx::cp_async_bulk(raw_k(n) + Cfg::kRawTileBytes, static_cast<const uint8_t*>(p.v.data) + offs[T],
                               kBytes, full);
          }
          return;
        }
        issue_raw(n);
        ptx::cp_async_commit();
        ptx::cp_async_wait<0>();
        producer_sync();
        if (ptid == 0) ptx::mbarrier_arrive(full);
      };
      // Every thread computes its rows' offsets though a whole tile needs ptid 0's only: skipping them measured
      // 3-6% slower for turbo3 / turbo4 and no faster for q4_0 (session 9), unlike q8_0's half-tiles above.
      run(issue_raw_tile, [] {}, [&](int n) {
        ptx::mbarrier_wait(ring.raw_full + n % R, static_cast<uint32_t>((n / R) & 1));
      });
      return;
    }
    run(issue_raw, [] { ptx::cp_async_commit(); }, [&](int) {
      if constexpr (R == 2) {
        ptx::cp_async_wait<1>();
      } else {
        ptx::cp_async_wait<0>();
      }
      producer_sync();  // raw tile n landed for every producer thread
    });
    ptx::cp_async_wait<0>();
  }
}

/// PingPong = false: the consumers issue whenever they are ready (the other choice is launched for same-run
/// comparisons in cuda_prefill_bench.cu).
template <int HeadDimK, int HeadDimV, KvType KType, KvType VType, bool PingPong = WsPrefillConfig<KType>::kPingPong>
__global__ void __launch_bounds__(WsPrefillConfig<KType>::kThreads, 1)
    prefill_wgmma_ws_kernel(const AttentionProblem p, const PrefillLaunch launch) {
  using Cfg = WsPrefillConfig<KType>;
  static_assert(KType == VType && (KType == KvType::f16 || has_swizzled_dequant(KType)) && HeadDimK == Cfg::kDim &&
                    HeadDimV == Cfg::kDim,
                "the warp-specialized wgmma prefill is compiled for f16, q8_0, q4_0, turbo3 or turbo4 K/V (one type) "
                "at head dim 128");
  constexpr bool kRotated = kv_traits(KType).rotated;  // constant: device code never reads the host table
  constexpr int T = Cfg::kKeyTile;
  constexpr int D = Cfg::kDim;
  constexpr int SK = Cfg::kKStages;
  constexpr int SV = Cfg::kVStages;

  extern __shared__ __align__(16) uint8_t smem_raw[];
  uint8_t* smem = smem_raw + ((1024 - ptx::smem_address(smem_raw) % 1024) % 1024);
  uint8_t* q_s = smem;
  auto* bars = reinterpret_cast<uint64_t*>(smem + Cfg::kBarriersOffset);
  const WsRing ring{smem + Cfg::kKOffset, smem + Cfg::kVOffset, bars,
                    bars + SK,            bars + SK + SV,         bars + 2 * SK + SV,
                    bars + 2 * (SK + SV)};
  ScoreVariant* variants = reinterpret_cast<ScoreVariant*>(smem + Cfg::kVariantOffset);

  const int tid = static_cast<int>(threadIdx.x), warp = tid / 32, lane = tid % 32;
  const int wg = tid / 128;

  const PrefillWork w = prefill_work<T>(p, launch, Cfg::kQvecs);
  if (w.n_qvecs <= 0) return;
  const int n_tiles = w.keys.n_tiles;

  if (tid == 0) {
    for (int i = 0; i < SK; ++i) {
      ptx::mbarrier_init(ring.full_k + i, 128);                   // every producer thread arrives once per fill
      ptx::mbarrier_init(ring.empty_k + i, 4 * Cfg::kConsumers);  // one arrival per consumer warp
    }
    for (int i = 0; i < SV; ++i) {
      ptx::mbarrier_init(ring.full_v + i, 128);
      ptx::mbarrier_init(ring.empty_v + i, 4 * Cfg::kConsumers);
    }
    for (int i = 0; i < Cfg::kRawSlots; ++i) ptx::mbarrier_init(ring.raw_full + i, 1);  // one producer thread
    ptx::fence_mbarrier_init();  // the copy engine signals raw_full
  }
  if (tid < w.n_qvecs) variants[tid] = ScoreVariant::make(p, w.s, w.head_of(tid), w.row_of(tid), w.len);
  if constexpr (Cfg::kTurbo) {
    if (tid < 4) reinterpret_cast<uint32_t*>(smem + Cfg::kTableOffset)[tid] = turbo::table_regs_word<KType>(tid);
  }
  const bool causal_only = causal_only_scores(p);
  const float q_scale = causal_only ? launch.scale * kLog2e : launch.scale;
  if constexpr (kRotated) {
    stage_swizzled_query_rotated<Cfg::kQvecs, D, Cfg::kThreads>(p, w, q_scale, q_s);
  } else {
    stage_swizzled_query<Cfg::kQvecs, D, Cfg::kThreads>(p, w, q_scale, q_s);
  }
  wgmma::fence_proxy_async();  // the staged query, for the consumers' wgmma after the barrier
  __syncthreads();             // mbarriers initialized, query and score variants staged

  if (wg == 0) {
    ptx::release_registers<Cfg::kProducerRegs>();
    produce_tiles<Cfg, KType>(p, w, ring, reinterpret_cast<int64_t*>(smem + Cfg::kOffsetsOffset),
                              smem + Cfg::kRawOffset, smem + Cfg::kTableOffset, tid);
  } else {
    ptx::claim_registers<Cfg::kConsumerRegs>();
    const int consumer = wg - 1, warp_in_group = warp % 4;
    const int group_row0 = Cfg::kGroupQvecs * consumer;
    const int group_rows = std::min(int{Cfg::kGroupQvecs}, w.n_qvecs - group_row0);  // <= 0: the group only waits
    const int busy_tiles = group_busy_tiles<T>(p, w, group_row0, group_rows);
    WgmmaRowSoftmax<T> soft = WgmmaRowSoftmax<T>::make(p, w, group_row0, warp_in_group, lane);
    float o[64];
#pragma unroll
    for (int i = 0; i < 64; ++i) o[i] = 0.0f;
    const uint32_t q_addr = ptx::smem_address(q_s) + group_row0 * Cfg::kRowBytes;
    const uint32_t k_addr0 = ptx::smem_address(ring.k_slots);
    const uint32_t v_addr0 = ptx::smem_address(ring.v_slots);

    // Tile n's slot holds its data once its "full" phase completed; the copies were generic-proxy writes, made
    // visible to this thread's wgmma reads by the proxy fence.
    const auto wait_full = [&](uint64_t* full, int n, int stages) {
      ptx::mbarrier_wait(full + n % stages, static_cast<uint32_t>((n / stages) & 1));
      wgmma::fence_proxy_async();
    };
    // One arrival per warp, predicated (no branch while a wgmma group is in flight).
    const auto release_if = [&](uint64_t* empty, int n, int stages, bool pred) {
      ptx::mbarrier_arrive_if(empty + n % stages, pred && lane == 0);
    };
    // Turns: consumer 0 goes first (consumer 1 hands it the first turn); the last hand-over of consumer 1 is left
    // out so that no arrival is pending at exit (each consumer takes n_tiles + 1 turns).
    const int my_turn = Cfg::kTurnBarrier + consumer, other_turn = Cfg::kTurnBarrier + 1 - consumer;
    if (PingPong && consumer == 1) ptx::named_barrier_arrive(Cfg::kTurnBarrier, 256);
    const auto take_turn = [&] {
      if constexpr (PingPong) ptx::named_barrier_sync(my_turn, 256);
    };
    const auto pass_turn = [&](bool last) {
      if constexpr (PingPong) ptx::named_barrier_arrive_if(other_turn, 256, consumer == 0 || !last);
    };
    // S = Q K(n)^T into s, issued, not waited for.
    const auto issue_scores = [&](int n, float (&s)[64]) {
      issue_qk_tile<D, T, Cfg::kQvecs>(s, q_addr, k_addr0 + (n % SK) * Cfg::kTileBytes);
    };
    const auto group_busy = [&](int n) { return n < busy_tiles; };

    // The tile loop, specialized on causal_only so that the per-score option code is absent from the common
    // case's loop (with it, ptxas spilled loop invariants of the MMA issue to local memory: ws1 in
    // bench/prefill_notes.md).
    const auto consume = [&]<bool CausalOnly>() {
      float s[64];
      uint32_t pa[T / 16][4];
      if (n_tiles > 0) wait_full(ring.full_k, 0, SK);
      // A busy turn is one straight block from issue to wait: ptxas serializes wgmma groups that are in flight
      // across a branch (C7518).
      take_turn();
      if (group_busy(0)) {
        wgmma::fence();
        issue_scores(0, s);
        pass_turn(n_tiles == 0);
        wgmma::wait<0>();
        wgmma::fence_operands(s);
        float alpha0[2];
        // o is still zero: alpha0 has nothing to scale.
        soft.template score_tile_as<CausalOnly>(w, variants, 0, s, alpha0);
      } else {
        pass_turn(n_tiles == 0);
      }
      release_if(ring.empty_k, 0, SK, n_tiles > 0);
#pragma unroll 1
      for (int it = 0; it < n_tiles; ++it) {
        const bool has_next_tile = it + 1 < n_tiles;
        if (has_next_tile) wait_full(ring.full_k, it + 1, SK);
        wait_full(ring.full_v, it, SV);
        if (!group_busy(it)) {
          take_turn();
          pass_turn(it == n_tiles - 1);
          release_if(ring.empty_k, it + 1, SK, has_next_tile);
          release_if(ring.empty_v, it, SV, true);
          continue;
        }
        const bool next = group_busy(it + 1);
        WgmmaRowSoftmax<T>::pack_p(s, pa);  // P(it)
        take_turn();
#pragma unroll
        for (int ks = 0; ks < T / 16; ++ks) wgmma::fence_operands(pa[ks]);
        wgmma::fence_operands(s);
        wgmma::fence_operands(o);
        wgmma::fence();
        // Issued whether or not the group multiplies tile it + 1 (see prefill_wgmma.cuh, C7520): past the last tile
        // the slot holds an older tile the producer never rewrites, and the product is not used.
        issue_scores(it + 1, s);
        const uint32_t v_addr = v_addr0 + (it % SV) * Cfg::kTileBytes;
#pragma unroll
        for (int ks = 0; ks < T / 16; ++ks) {
          const uint64_t db = wgmma::descriptor(v_addr + ks * 16 * Cfg::kRowBytes, T * Cfg::kRowBytes, Cfg::kAtomBytes);
          wgmma::mma_m64n128k16_rs_bt(o, pa[ks], db);
        }
        wgmma::commit();
        pass_turn(it == n_tiles - 1);
        float alpha[2] = {1.0f, 1.0f};
        wgmma::wait<1>();  // S(it + 1); groups complete in order
        wgmma::fence_operands(s);
        release_if(ring.empty_k, it + 1, SK, has_next_tile);
        if (next) soft.template score_tile_as<CausalOnly>(w, variants, it + 1, s, alpha);
        wgmma::wait<0>();
        wgmma::fence_operands(o);
#pragma unroll
        for (int ks = 0; ks < T / 16; ++ks) wgmma::fence_operands(pa[ks]);  // read by the tensor cores until here
        release_if(ring.empty_v, it, SV, true);
        WgmmaRowSoftmax<T>::rescale(o, alpha);
      }
    };
    if (causal_only) {
      consume.template operator()<true>();
    } else {
      consume.template operator()<false>();
    }

    // ---- Epilogue (consumers only): rows to shared memory in head-dim order, aliasing the K/V slots (every tile
    // was consumed, so the producer writes none of them any more); one warp finishes each row.
    ptx::named_barrier_sync(Cfg::kEpilogueBarrier, 256);  // both consumers' MMAs retired
    float* o_rows = reinterpret_cast<float*>(ring.k_slots);  // [kQvecs][D]
    float* m_rows = o_rows + Cfg::kQvecs * D;
    float* l_rows = m_rows + Cfg::kQvecs;
    soft.template store_rows<D>(o, o_rows, m_rows, l_rows);
    ptx::named_barrier_sync(Cfg::kEpilogueBarrier, 256);
    const SplitOutput single;  // one split: finish_row writes the final output rows
    for (int r = warp - 4; r < w.n_qvecs; r += 4 * Cfg::kConsumers) {
      finish_row(p, o_rows + r * D, D, kRotated, m_rows[r], l_rows[r], w.s, w.head_of(r), w.row_of(r), single, -1);
    }
  }
}

template <int HeadDimK, int HeadDimV, KvType KType, KvType VType, bool PingPong = WsPrefillConfig<KType>::kPingPong>
Status launch_prefill_wgmma_ws(const AttentionProblem& p, const Route& route, void* workspace, cudaStream_t stream) {
  (void)workspace;
  return launch_unsplit_wgmma_prefill<prefill_wgmma_ws_kernel<HeadDimK, HeadDimV, KType, VType, PingPong>,
                                      WsPrefillConfig<KType>>(p, route, stream,
                                                              "warp-specialized wgmma prefill kernel");
}

}  // namespace kvflash::cuda
