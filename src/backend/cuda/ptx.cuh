// Thin wrappers over the PTX instructions the kernels use: warp-level f16 tensor-core MMA, ldmatrix, asynchronous
// global->shared copies. Fragment layouts are PTX's (m16n8k16, .row.col): with g = lane / 4 and t = lane % 4,
//   A (16x16): a0 = A[g][2t..2t+1], a1 = A[g+8][2t..], a2 = A[g][2t+8..], a3 = A[g+8][2t+8..]
//   B (16x8):  b0 = B[2t..2t+1][g], b1 = B[2t+8..2t+9][g]
//   C (16x8):  c0 = C[g][2t], c1 = C[g][2t+1], c2 = C[g+8][2t], c3 = C[g+8][2t+1]
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

namespace kvflash::cuda::ptx {

__device__ __forceinline__ uint32_t smem_address(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

/// C += A * B on f16 operands with f32 accumulation.
__device__ __forceinline__ void mma_f16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/// Four 8x8 b16 matrices; lanes 8i..8i+7 give the row addresses of matrix i.
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_address(row)));
}

__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_address(row)));
}

/// Asynchronous copy of Bytes (4, 8 or 16) from global to shared memory; src_bytes = 0 writes zeros instead.
template <int Bytes>
__device__ __forceinline__ void cp_async(void* smem_dst, const void* global_src, int src_bytes) {
  static_assert(Bytes == 4 || Bytes == 8 || Bytes == 16);
  if constexpr (Bytes == 16) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_address(smem_dst)), "l"(global_src),
                 "r"(src_bytes));
  } else {
    asm volatile("cp.async.ca.shared.global [%0], [%1], %2, %3;\n" ::"r"(smem_address(smem_dst)), "l"(global_src),
                 "n"(Bytes), "r"(src_bytes));
  }
}

/// A full 16-byte cp.async that also asks L2 to fetch the surrounding 256 bytes: for streams of contiguous tiles
/// (decode's span copies), so that DRAM serves whole 256-byte runs ahead of the next requests.
__device__ __forceinline__ void cp_async16_l2_256(void* smem_dst, const void* global_src) {
  asm volatile("cp.async.cg.shared.global.L2::256B [%0], [%1], 16;\n" ::"r"(smem_address(smem_dst)), "l"(global_src));
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }

template <int Pending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(Pending));
}

__device__ __forceinline__ uint32_t lop3_and_or(uint32_t a, uint32_t b, uint32_t c) {
  // (a & b) | c in one LOP3 (the immediate is the truth table of that expression over inputs 0xF0, 0xCC, 0xAA).
  uint32_t r;
  asm("lop3.b32 %0, %1, %2, %3, 0xEA;\n" : "=r"(r) : "r"(a), "r"(b), "r"(c));
  return r;
}

/// The 8x8 b16 matrix whose fragment (row lane / 4, columns 2(lane % 4), +1) is `a`, transposed: the same fragment
/// of the transpose. Turns an MMA accumulator laid out by (key, query) into the operand laid out by (query, key).
__device__ __forceinline__ uint32_t movmatrix_trans(uint32_t a) {
  uint32_t r;
  asm volatile("movmatrix.sync.aligned.m8n8.trans.b16 %0, %1;\n" : "=r"(r) : "r"(a));
  return r;
}

/// 2^x with subnormal results flushed to zero (one MUFU.EX2, no range fix-up); 2^-inf = 0.
__device__ __forceinline__ float exp2_ftz(float x) {
  float r;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(r) : "f"(x));
  return r;
}

__device__ __forceinline__ uint32_t as_u32(__half2 h) { return *reinterpret_cast<uint32_t*>(&h); }
__device__ __forceinline__ __half2 as_half2(uint32_t u) { return *reinterpret_cast<__half2*>(&u); }

// ---- Warp specialization (sm_90): mbarriers in shared memory, named barriers, register reallocation.

/// An mbarrier whose phase completes after `count` arrivals.
__device__ __forceinline__ void mbarrier_init(uint64_t* bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_address(bar)), "r"(count) : "memory");
}

/// One arrival (release semantics: this thread's earlier shared-memory writes are visible to whoever waits).
__device__ __forceinline__ void mbarrier_arrive(uint64_t* bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(smem_address(bar)) : "memory");
}

/// mbarrier_arrive where `pred` holds, as one predicated instruction: no branch, so a wgmma group in flight across
/// it is not serialized by ptxas (C7518, a compiler-inserted wait in a divergent path).
__device__ __forceinline__ void mbarrier_arrive_if(uint64_t* bar, bool pred) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %1, 0;\n@p mbarrier.arrive.shared::cta.b64 _, [%0];\n}\n" ::"r"(
          smem_address(bar)),
      "r"(static_cast<int>(pred))
      : "memory");
}

/// One arrival once every cp.async this thread issued before has landed; counted in the barrier's init count
/// (.noinc).
__device__ __forceinline__ void cp_async_mbarrier_arrive(uint64_t* bar) {
  asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(smem_address(bar)) : "memory");
}

/// Announces `bytes` of copy-engine transactions on `bar`, then arrives: the phase completes once every arrival is
/// in and those bytes have landed.
__device__ __forceinline__ void mbarrier_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_address(bar)), "r"(bytes)
               : "memory");
}

/// Makes mbarrier inits visible to the copy engine (the async proxy) before it signals them; a CTA is a cluster of
/// one.
__device__ __forceinline__ void fence_mbarrier_init() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}

/// The copy engine (sm_90): `bytes` (a multiple of 16, both addresses 16-byte aligned) from global to shared memory
/// in one instruction, completing as `bytes` transactions on `bar`. Unlike cp.async it is not a memory operation of
/// the issuing thread, so no later fence or barrier of that thread can wait on it.
__device__ __forceinline__ void cp_async_bulk(void* smem_dst, const void* global_src, uint32_t bytes, uint64_t* bar) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(
                   smem_address(smem_dst)),
               "l"(global_src), "r"(bytes), "r"(smem_address(bar))
               : "memory");
}

/// Spins until the phase of parity `parity` has completed (a fresh barrier counts parity 1 as completed).
__device__ __forceinline__ void mbarrier_wait(uint64_t* bar, uint32_t parity) {
  asm volatile(
      "{\n.reg .pred done;\nWAIT:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra WAIT;\n}\n" ::"r"(smem_address(bar)),
      "r"(parity)
      : "memory");
}

/// Named barrier `id` (1-15; 0 is __syncthreads) over `threads` threads (a multiple of 32): wait, or only arrive.
__device__ __forceinline__ void named_barrier_sync(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
__device__ __forceinline__ void named_barrier_arrive(int id, int threads) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

/// named_barrier_arrive where `pred` holds (predicated, as mbarrier_arrive_if).
__device__ __forceinline__ void named_barrier_arrive_if(int id, int threads, bool pred) {
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %2, 0;\n@p bar.arrive %0, %1;\n}\n" ::"r"(id), "r"(threads),
               "r"(static_cast<int>(pred))
               : "memory");
}

/// setmaxnreg (sm_90a): this warpgroup's registers per thread shrink to / grow to Regs (a multiple of 8, 24-256);
/// every warp of the warpgroup executes it.
template <int Regs>
__device__ __forceinline__ void release_registers() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(Regs));
}
template <int Regs>
__device__ __forceinline__ void claim_registers() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(Regs));
}

}  // namespace kvflash::cuda::ptx
