// TurboQuant centroid lookups in registers: PRMT over byte tables instead of one shared-memory load per value.
//
// A centroid as f16 is two bytes. The 8 low bytes of 8 centroids fit two registers, and so do the 8 high bytes, so
// one PRMT (byte permute, 3-bit index per byte) looks up the low bytes of 4 values and one more their high bytes;
// a third PRMT per half2 interleaves them into (value, value) pairs for the MMA. Per value that is one PRMT plus
// the index arithmetic below, which works on 8 or 16 packed indexes at once, where a shared-memory table costs an
// address, an LDS and half a pack per value (and the LDS unit was the bottleneck: turbo3 decode had the SMs 60%
// busy and DRAM 23%, H100, 2026-11-23).
//   turbo3 (8 centroids): the 3-bit index is the selector itself; the index's low 2 bits (qs) and its bit 2
//     (signs) are merged into selector nibbles by masking and one PRMT used as a bit-spreading table.
//   turbo4 (16 centroids): a PRMT index has 3 bits, so the table holds the 8 magnitudes c[8..15] and the sign is
//     set on the high byte. This needs the centroids symmetric, c[i] = -c[15 - i] (static_asserted below; f16
//     rounding to nearest even is symmetric too): index i < 8 is -c[15 - i], i.e. magnitude i ^ 7, and i >= 8 is
//     magnitude i ^ 8.
// Every result is bit for bit __float2half_rn(centroid), the value the shared-memory table held.
#pragma once

#include <cstdint>

#include "format/blocks.h"
#include "kvflash/kv_type.h"

namespace kvflash::cuda::turbo {

/// IEEE binary16 bits of x, rounded to nearest even, for normal-range x (|x| in [2^-14, 65504]); what
/// __float2half_rn gives. Constant evaluation only: every step is exact in float (scaling by 2 and m - 1 on a
/// 24-bit mantissa), so the rounding decision is made on the exact remainder.
constexpr uint16_t f16_bits_rne(float x) {
  const uint32_t sign = x < 0.0f ? 0x8000u : 0u;
  float m = x < 0.0f ? -x : x;
  int e = 0;
  while (m >= 2.0f) {
    m *= 0.5f;
    ++e;
  }
  while (m < 1.0f) {
    m *= 2.0f;
    --e;
  }
  const float frac = (m - 1.0f) * 1024.0f;
  uint32_t mant = static_cast<uint32_t>(frac);
  const float rem = frac - static_cast<float>(mant);
  if (rem > 0.5f || (rem == 0.5f && (mant & 1u) != 0)) ++mant;
  if (mant == 1024u) {
    mant = 0;
    ++e;
  }
  return static_cast<uint16_t>(sign | static_cast<uint32_t>(e + 15) << 10 | mant);
}

// Spot checks against the IEEE conversion (Python struct '<e' of the float literal): the extremes of both tables.
static_assert(f16_bits_rne(format::kTurbo3Centroids[4]) == 0x257e);
static_assert(f16_bits_rne(format::kTurbo3Centroids[7]) == 0x321a);
static_assert(f16_bits_rne(format::kTurbo3Centroids[0]) == 0xb21a);
static_assert(f16_bits_rne(format::kTurbo4Centroids[8]) == 0x1f1b);
static_assert(f16_bits_rne(format::kTurbo4Centroids[15]) == 0x3191);

template <int N>
constexpr bool is_symmetric(const float (&c)[N]) {
  for (int i = 0; i < N; ++i) {
    if (c[i] != -c[N - 1 - i]) return false;
  }
  return true;
}
static_assert(is_symmetric(format::kTurbo4Centroids), "turbo4 lookups take magnitudes from c[8..15]");

/// Byte `byte` (0 = low) of the f16 bits of centroids c[first .. first + 3], packed into one table word.
template <int N>
constexpr uint32_t table_word(const float (&c)[N], int first, int byte) {
  uint32_t w = 0;
  for (int k = 0; k < 4; ++k) w |= static_cast<uint32_t>((f16_bits_rne(c[first + k]) >> (8 * byte)) & 0xffu) << (8 * k);
  return w;
}

/// Eight f16 table entries as byte tables: lo0 / lo1 the low bytes of entries 0..3 / 4..7, hi0 / hi1 the high bytes.
template <KvType Type>
struct ByteTable;

template <>
struct ByteTable<KvType::turbo3> {  // all 8 centroids, by index
  static constexpr uint32_t kLo0 = table_word(format::kTurbo3Centroids, 0, 0);
  static constexpr uint32_t kLo1 = table_word(format::kTurbo3Centroids, 4, 0);
  static constexpr uint32_t kHi0 = table_word(format::kTurbo3Centroids, 0, 1);
  static constexpr uint32_t kHi1 = table_word(format::kTurbo3Centroids, 4, 1);
};

template <>
struct ByteTable<KvType::turbo4> {  // the magnitudes c[8..15]
  static constexpr uint32_t kLo0 = table_word(format::kTurbo4Centroids, 8, 0);
  static constexpr uint32_t kLo1 = table_word(format::kTurbo4Centroids, 12, 0);
  static constexpr uint32_t kHi0 = table_word(format::kTurbo4Centroids, 8, 1);
  static constexpr uint32_t kHi1 = table_word(format::kTurbo4Centroids, 12, 1);
};

/// The table words a lookup needs in registers: a PRMT's first data operand must be a register (its second is
/// an immediate), and left to itself ptxas rematerializes such constants before every use under the decode
/// kernel's 128-register cap (64-81 moves per warp and tile, measured in SASS). So the kernel keeps the words in
/// shared memory (load_centroids_f16) and each fragment call reads them with one 16-byte load.
struct TableRegs {
  uint32_t lo0, hi0, spread;
  uint32_t pad;  // word 3: makes the read one 16-byte load
};

/// Word k (0: lo0, 1: hi0, 2: turbo3's bit-spreading table, 3: unused) of the shared-memory copy.
template <KvType Type>
__host__ __device__ constexpr uint32_t table_regs_word(int k) {
  constexpr uint32_t kSpreadLo = 0x00000400u;  // see turbo3_selectors
  if (k == 0) return ByteTable<Type>::kLo0;
  if (k == 1) return ByteTable<Type>::kHi0;
  return k == 2 && Type == KvType::turbo3 ? kSpreadLo : 0u;
}

/// The words at `words` (shared memory, 16-byte aligned), read afresh at each call: volatile, so that the compiler
/// neither merges the reads of successive calls (which would keep the words live across the whole tile) nor drops
/// them.
__device__ __forceinline__ TableRegs load_table_regs(const void* words) {
  TableRegs r;
  asm volatile("ld.shared.v4.b32 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r.lo0), "=r"(r.hi0), "=r"(r.spread), "=r"(r.pad)
               : "r"(static_cast<uint32_t>(__cvta_generic_to_shared(words))));
  return r;
}

/// x >> N as an integer multiply-high: the shifts, masks and permutes of the lookups all issue to the integer ALU
/// pipe (half the issue rate), the multiply to the FMA pipe, which these loops leave mostly idle.
template <int N>
__device__ __forceinline__ uint32_t shift_right(uint32_t x) {
  static_assert(N > 0 && N < 32);
  return __umulhi(x, 1u << (32 - N));
}
__device__ __forceinline__ uint32_t high_half(uint32_t x) { return shift_right<16>(x); }

/// lo | hi << 16 for 16-bit lo and hi, as one integer multiply-add (the compiler's own choice is a PRMT).
__device__ __forceinline__ uint32_t join16(uint32_t lo, uint32_t hi) {
  uint32_t r;
  asm("mad.lo.u32 %0, %1, 65536, %2;\n" : "=r"(r) : "r"(hi), "r"(lo));
  return r;
}

/// Low and high bytes of four table entries: byte k of `lo` / `hi` belongs to selector nibble k.
struct Bytes4 {
  uint32_t lo, hi;
};

/// PRMT in its default mode: byte k of the result is byte (nibble k of sel) of (b:a), or with bit 3 of that nibble
/// set, the sign (bit 7) of that byte replicated. Inline PTX rather than __byte_perm, whose documented nibbles have
/// 3 bits: the compiler masks a selector it cannot prove clean (one more LOP3 per lookup).
__device__ __forceinline__ uint32_t prmt(uint32_t a, uint32_t b, uint32_t sel) {
  uint32_t r;
  asm("prmt.b32 %0, %1, %2, %3;\n" : "=r"(r) : "r"(a), "r"(b), "r"(sel));
  return r;
}

/// The entries named by the four nibbles of sel's low 16 bits (each nibble < 8: bit 3 would make PRMT replicate a
/// sign instead of selecting).
template <KvType Type>
__device__ __forceinline__ Bytes4 lookup4(uint32_t sel, const TableRegs& regs) {
  using T = ByteTable<Type>;
  return {prmt(regs.lo0, T::kLo1, sel), prmt(regs.hi0, T::kHi1, sel)};
}

/// The half2 (entry of nibble N0, entry of nibble N1) of a lookup.
template <int N0, int N1>
__device__ __forceinline__ uint32_t pair(Bytes4 b) {
  return __byte_perm(b.lo, b.hi, N0 | (N0 + 4) << 4 | N1 << 8 | (N1 + 4) << 12);
}

// ---- turbo3 ----

/// Selectors for 16 turbo3 values: q holds the low 2 index bits of value i at bits 2i, s the index's bit 2 of value
/// i at bit i. Nibble n of `even` is the index of value 2n, nibble n of `odd` the index of value 2n + 1.
__device__ __forceinline__ void turbo3_selectors(uint32_t q, uint32_t s, const TableRegs& regs, uint32_t& even,
                                                 uint32_t& odd) {
  // Bit-spreading table for PRMT: a nibble holding bits (x at bit 0, y at bit 2) -> byte with x at bit 2, y at bit
  // 6, i.e. bit 2 of two consecutive selector nibbles. Entries 0, 1, 4, 5 = 0x00, 0x04, 0x40, 0x44.
  // regs.spread holds entries 0..3 (0x00000400), the immediate entries 4..7.
  constexpr uint32_t kSpreadHi = 0x00004440u;
  // s & 0x5555: nibble N carries the bit 2 of values 4N (bit 0) and 4N + 2 (bit 2) -> byte N of the even
  // selectors, whose nibbles 2N, 2N + 1 are values 4N, 4N + 2. The same one bit up for the odd values.
  even = (q & 0x33333333u) | prmt(regs.spread, kSpreadHi, s & 0x5555u);
  odd = (shift_right<2>(q) & 0x33333333u) | prmt(regs.spread, kSpreadHi, shift_right<1>(s) & 0x5555u);
}

// ---- turbo4 ----

/// Magnitude selector of 8 turbo4 indexes (nibble n = index of value n): nibble n becomes i ^ 8 for i >= 8 and
/// i ^ 7 below (the table row of |c[i]|).
__device__ __forceinline__ uint32_t turbo4_magnitudes(uint32_t x) {
  // 7 per nibble whose bit 3 is set: (8 b) * 7 / 8 per nibble, as the high word of a 64-bit product so that the
  // top nibble's carry-out is kept (no carries between nibbles: 56 b spans bits 3..5 of its nibble and the next).
  const uint32_t seven_if_positive = __umulhi(x & 0x88888888u, 7u << 29);
  return ~(x ^ seven_if_positive) & 0x77777777u;
}

/// `hi` (high bytes of the magnitudes of nibbles 4 Half .. 4 Half + 3 of x) with the sign bit set where the
/// index is < 8. x_shl4 = x << 4. PRMT's sign mode turns the index's bit 3 into a byte mask: bit 3 of an even
/// nibble is the byte sign of x << 4, of an odd nibble the byte sign of x.
template <int Half>
__device__ __forceinline__ uint32_t turbo4_signed_hi(uint32_t hi, uint32_t x, uint32_t x_shl4) {
  const uint32_t positive = prmt(x_shl4, x, Half == 0 ? 0xD9C8u : 0xFBEAu);  // 0xff where bit 3 is set
  uint32_t r;  // hi | (~positive & 0x80808080) in one LOP3
  asm("lop3.b32 %0, %1, %2, %3, 0xF2;\n" : "=r"(r) : "r"(hi), "r"(positive), "r"(0x80808080u));
  return r;
}

/// The f16 bytes of the 8 turbo4 values whose indexes are the nibbles of x: lo holds nibbles 0..3, hi 4..7.
__device__ __forceinline__ void turbo4_lookup8(uint32_t x, const TableRegs& regs, Bytes4& lo, Bytes4& hi) {
  const uint32_t m = turbo4_magnitudes(x), x_shl4 = x << 4;
  lo = lookup4<KvType::turbo4>(m, regs);
  hi = lookup4<KvType::turbo4>(high_half(m), regs);
  lo.hi = turbo4_signed_hi<0>(lo.hi, x, x_shl4);
  hi.hi = turbo4_signed_hi<1>(hi.hi, x, x_shl4);
}

/// f16 pairs of 8 turbo4 values (x: nibble n = index of value n): out[k] = (value 2k, value 2k + 1).
__device__ __forceinline__ void turbo4_pairs(uint32_t x, const TableRegs& regs, uint32_t (&out)[4]) {
  Bytes4 lo, hi;
  turbo4_lookup8(x, regs, lo, hi);
  out[0] = pair<0, 1>(lo);
  out[1] = pair<2, 3>(lo);
  out[2] = pair<0, 1>(hi);
  out[3] = pair<2, 3>(hi);
}

/// f16 pairs across two keys: qa, qb hold 4 turbo4 indexes each (low 16 bits, nibble j = value j);
/// out[j] = (value j of a, value j of b).
__device__ __forceinline__ void turbo4_key_pairs(uint32_t qa, uint32_t qb, const TableRegs& regs, uint32_t (&out)[4]) {
  Bytes4 lo, hi;
  turbo4_lookup8(__byte_perm(qa, qb, 0x5140), regs, lo, hi);  // nibbles a0 a1 b0 b1 a2 a3 b2 b3
  out[0] = pair<0, 2>(lo);
  out[1] = pair<1, 3>(lo);
  out[2] = pair<0, 2>(hi);
  out[3] = pair<1, 3>(hi);
}

}  // namespace kvflash::cuda::turbo
