// Two launches that let a benchmark time what the device does for a call, not what the host does before the device
// sees it: a gate kernel that holds a stream until the host opens it, and a kernel that reads a buffer so that the
// L2 holds none of the bytes the timed call reads (as in an engine, where the other layers run between two steps of
// one layer). Used by `kvflash bench --backend cuda` through kvcache/device_transfer.h.
//
// Why the gate: with the device idle, an event recorded before a call fires at once, and the device then waits for
// the host to validate the problem and launch the kernels (10-20 us on the VMs we measure on, twice bare metal's
// launch latency): a 40-us decode step would read as 55. Behind the gate the host enqueues the start event, the
// call's launches and the stop event, then opens the gate; the device runs them back to back, as it does when the
// host runs ahead of it (an engine's steady state, or a CUDA graph).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kvflash/status.h"

namespace kvflash::cuda {

/// Host-mapped words the gate kernel polls: it returns once `opened` reaches the token it was launched with, or
/// after its timeout, when it writes that token to `timed_out` instead.
struct GateWords {
  uint32_t opened = 0;
  uint32_t timed_out = 0;
};

/// Enqueues one single-thread kernel on `stream` that spins until `words->opened >= token` (words: the device
/// address of host memory from cudaHostAlloc(cudaHostAllocMapped)), at most `timeout_ns` nanoseconds of the device's
/// global timer; then writes `token` to words->timed_out when it gave up. The first launch of a kernel must not be
/// behind a closed gate: CUDA's lazy module loading may wait for the device to be idle before it loads a kernel.
Status launch_gate(GateWords* words, uint32_t token, uint64_t timeout_ns, cudaStream_t stream);

/// Enqueues a kernel on `stream` that reads `bytes` bytes at `data` (16-byte aligned, a multiple of 16), so that the
/// L2 holds lines of that buffer instead of whatever the next launch reads. Reads only: no dirty lines are left for
/// the next launch to write back.
Status launch_l2_eviction(const void* data, int64_t bytes, cudaStream_t stream);

/// The L2 size of the current device in bytes.
StatusOr<int64_t> l2_cache_bytes();

}  // namespace kvflash::cuda
