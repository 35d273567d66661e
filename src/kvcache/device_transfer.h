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

/// Waits for all work on `stream` (nullptr: the default stream).
Status synchronize_stream(void* stream);

/// A CUDA stream of its own, non-blocking: it does not wait for the default stream, where the copies above run, so
/// work on it that reads what they wrote must come after synchronize_device().
class DeviceStream {
 public:
  static StatusOr<DeviceStream> create();
  DeviceStream(DeviceStream&&) noexcept;
  DeviceStream& operator=(DeviceStream&&) noexcept;
  ~DeviceStream();
  /// The cudaStream_t.
  void* get() const { return stream_; }

 private:
  DeviceStream() = default;
  void* stream_ = nullptr;
};

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

/// Holds a stream until the host opens it (backend/cuda/stream_gate.h says why): close(), enqueue the work to time
/// (events and launches), open(); the device then runs that work back to back instead of waiting for the host's
/// launches. A gate that waited longer than its timeout lets the stream go on by itself; timed_out() says so once
/// the stream has passed it (the timed region then holds host time and must not count).
class StreamGate {
 public:
  static StatusOr<StreamGate> create();
  StreamGate(StreamGate&&) noexcept;
  StreamGate& operator=(StreamGate&&) noexcept;
  ~StreamGate();

  /// Enqueues the gate on `stream` (nullptr: the default stream). The stream's kernels must each have run once
  /// before (lazy module loading may wait for an idle device, which a closed gate never is).
  Status close(void* stream = nullptr);
  /// Opens the gate of the last close().
  void open();
  /// Whether the gate of the last close() gave up waiting; valid once the stream has passed it.
  bool timed_out() const;

 private:
  StreamGate() = default;
  void* words_ = nullptr;  // cuda::GateWords in host memory mapped into the device
  void* device_words_ = nullptr;
  uint32_t token_ = 0;
};

/// Reads `buffer` on `stream` (nullptr: the default stream) so that the L2 holds none of the bytes the next launch
/// reads; the buffer should be at least twice device_l2_bytes().
Status evict_l2(const DeviceBuffer& buffer, void* stream = nullptr);

/// The current device's L2 size in bytes.
StatusOr<int64_t> device_l2_bytes();

/// The device's copy bandwidth in GB/s counting read + write bytes (2 x `bytes` per copy): a device-to-device copy
/// of `bytes` between two buffers of `allocator` (bucket "bench.copy", MemoryKind::other, freed before returning),
/// median of 10 event-timed copies after 2 warm-up copies.
StatusOr<double> measure_device_copy_gbps(DeviceAllocator& allocator, int64_t bytes);

}  // namespace kvflash::kvcache
