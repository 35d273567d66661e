// Host<->device copies and event timing for the device-resident KvCache and `kvflash bench --backend cuda`. The only
// place outside src/backend/cuda that calls the CUDA runtime; without CUDA in the build every call returns
// `unsupported`, so callers compile unchanged.
#pragma once

#include <cstdint>
#include <memory>

#include "kvflash/device_memory.h"
#include "kvflash/status.h"

namespace kvflash::kvcache {

/// Whether this build can make device-resident caches (CUDA compiled in; a device is checked by the allocator).
bool device_transfer_compiled();

/// `bytes` from host `src` to device `dst` (synchronous with respect to the host buffer: it may be reused at once).
Status copy_to_device(void* dst, const void* src, int64_t bytes);
/// `bytes` from device `src` to host `dst`; returns when the bytes are on the host.
Status copy_to_host(void* dst, const void* src, int64_t bytes);
/// `bytes` from device `src` to device `dst`, ordered on the default stream.
Status copy_on_device(void* dst, const void* src, int64_t bytes);
/// `height` rows of `width` bytes from host to device (pitches in bytes): one page's rows of every head in one call.
Status copy_rows_to_device(void* dst, int64_t dst_pitch, const void* src, int64_t src_pitch, int64_t width,
                           int64_t height);
/// `bytes` from host `src` to device `dst` ordered on `stream` (a cudaStream_t; nullptr: the default stream). The
/// host buffer must stay unchanged until the stream reaches the copy, or be pageable memory (then the runtime stages
/// it before returning).
Status copy_to_device_async(void* dst, const void* src, int64_t bytes, void* stream);
/// Waits for all work on the current device.
Status synchronize_device();

/// Elapsed device time between two points of a stream (CUDA events).
class DeviceEventTimer {
 public:
  static StatusOr<DeviceEventTimer> create();
  DeviceEventTimer(DeviceEventTimer&&) noexcept;
  DeviceEventTimer& operator=(DeviceEventTimer&&) noexcept;
  ~DeviceEventTimer();

  /// Records the start (stop) event on `stream` (nullptr: the default stream).
  Status start(void* stream = nullptr);
  Status stop(void* stream = nullptr);
  /// Waits for the stop event and returns the microseconds between start and stop.
  StatusOr<double> elapsed_us() const;

 private:
  DeviceEventTimer() = default;
  void* start_ = nullptr;  // cudaEvent_t
  void* stop_ = nullptr;
};

/// The device's copy bandwidth in GB/s counting read + write bytes (2 x `bytes` per copy): a device-to-device copy
/// of `bytes` between two buffers of `allocator` (bucket "bench.copy", MemoryKind::other, freed before returning),
/// median of 10 event-timed copies after 2 warm-up copies.
StatusOr<double> measure_device_copy_gbps(DeviceAllocator& allocator, int64_t bytes);

}  // namespace kvflash::kvcache
