// See device_transfer.h. Every CUDA runtime call of src/kvcache is in this file.
#include "kvcache/device_transfer.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#if defined(KVFLASH_HAVE_CUDA)
#include <cuda_runtime.h>

#include "backend/cuda/stream_gate.h"
#endif

namespace kvflash::kvcache {

#if defined(KVFLASH_HAVE_CUDA)

namespace {

Status cuda_call(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return Status::Ok();
  return backend_error(std::string(what) + " failed: " + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) +
                       ")");
}

cudaEvent_t event(void* e) { return static_cast<cudaEvent_t>(e); }
cudaStream_t stream_of(void* s) { return static_cast<cudaStream_t>(s); }

}  // namespace

bool device_transfer_compiled() { return true; }

Status copy_to_device(void* dst, const void* src, int64_t bytes) {
  if (bytes == 0) return Status::Ok();
  return cuda_call(cudaMemcpy(dst, src, static_cast<size_t>(bytes), cudaMemcpyHostToDevice), "cudaMemcpy to device");
}

Status copy_to_host(void* dst, const void* src, int64_t bytes) {
  if (bytes == 0) return Status::Ok();
  return cuda_call(cudaMemcpy(dst, src, static_cast<size_t>(bytes), cudaMemcpyDeviceToHost), "cudaMemcpy to host");
}

Status copy_on_device(void* dst, const void* src, int64_t bytes) {
  if (bytes == 0) return Status::Ok();
  return cuda_call(cudaMemcpy(dst, src, static_cast<size_t>(bytes), cudaMemcpyDeviceToDevice),
                   "cudaMemcpy device to device");
}

Status copy_rows_to_device(void* dst, int64_t dst_pitch, const void* src, int64_t src_pitch, int64_t width,
                           int64_t height) {
  if (width == 0 || height == 0) return Status::Ok();
  return cuda_call(cudaMemcpy2D(dst, static_cast<size_t>(dst_pitch), src, static_cast<size_t>(src_pitch),
                                static_cast<size_t>(width), static_cast<size_t>(height), cudaMemcpyHostToDevice),
                   "cudaMemcpy2D to device");
}

Status copy_to_device_async(void* dst, const void* src, int64_t bytes, void* stream) {
  if (bytes == 0) return Status::Ok();
  return cuda_call(cudaMemcpyAsync(dst, src, static_cast<size_t>(bytes), cudaMemcpyHostToDevice, stream_of(stream)),
                   "cudaMemcpyAsync to device");
}

Status synchronize_device() { return cuda_call(cudaDeviceSynchronize(), "cudaDeviceSynchronize"); }

Status synchronize_stream(void* stream) {
  return cuda_call(cudaStreamSynchronize(stream_of(stream)), "cudaStreamSynchronize");
}

StatusOr<DeviceStream> DeviceStream::create() {
  DeviceStream s;
  cudaStream_t stream = nullptr;
  KVFLASH_RETURN_IF_ERROR(
      cuda_call(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreateWithFlags"));
  s.stream_ = stream;
  return s;
}

DeviceStream::DeviceStream(DeviceStream&& o) noexcept { *this = std::move(o); }

DeviceStream& DeviceStream::operator=(DeviceStream&& o) noexcept {
  std::swap(stream_, o.stream_);
  return *this;
}

DeviceStream::~DeviceStream() {
  if (stream_ != nullptr) (void)cudaStreamDestroy(stream_of(stream_));
}

StatusOr<DeviceEventTimer> DeviceEventTimer::create() {
  DeviceEventTimer t;
  cudaEvent_t a = nullptr, b = nullptr;
  KVFLASH_RETURN_IF_ERROR(cuda_call(cudaEventCreate(&a), "cudaEventCreate"));
  t.start_ = a;
  KVFLASH_RETURN_IF_ERROR(cuda_call(cudaEventCreate(&b), "cudaEventCreate"));
  t.stop_ = b;
  return t;
}

DeviceEventTimer::DeviceEventTimer(DeviceEventTimer&& o) noexcept { *this = std::move(o); }

DeviceEventTimer& DeviceEventTimer::operator=(DeviceEventTimer&& o) noexcept {
  std::swap(start_, o.start_);
  std::swap(stop_, o.stop_);
  return *this;
}

DeviceEventTimer::~DeviceEventTimer() {
  if (start_ != nullptr) (void)cudaEventDestroy(event(start_));
  if (stop_ != nullptr) (void)cudaEventDestroy(event(stop_));
}

Status DeviceEventTimer::start(void* stream) {
  return cuda_call(cudaEventRecord(event(start_), stream_of(stream)), "cudaEventRecord");
}

Status DeviceEventTimer::stop(void* stream) {
  return cuda_call(cudaEventRecord(event(stop_), stream_of(stream)), "cudaEventRecord");
}

StatusOr<double> DeviceEventTimer::elapsed_us() const {
  KVFLASH_RETURN_IF_ERROR(cuda_call(cudaEventSynchronize(event(stop_)), "cudaEventSynchronize"));
  float ms = 0;
  KVFLASH_RETURN_IF_ERROR(cuda_call(cudaEventElapsedTime(&ms, event(start_), event(stop_)), "cudaEventElapsedTime"));
  return 1000.0 * static_cast<double>(ms);
}

// A gate that waits this long has lost its host (or hit a lazy module load): its sample is dropped, not waited for.
constexpr uint64_t kGateTimeoutNs = 500'000'000;

StatusOr<StreamGate> StreamGate::create() {
  StreamGate g;
  void* words = nullptr;
  KVFLASH_RETURN_IF_ERROR(
      cuda_call(cudaHostAlloc(&words, sizeof(cuda::GateWords), cudaHostAllocMapped), "cudaHostAlloc (stream gate)"));
  g.words_ = words;
  *static_cast<cuda::GateWords*>(words) = cuda::GateWords{};
  KVFLASH_RETURN_IF_ERROR(
      cuda_call(cudaHostGetDevicePointer(&g.device_words_, words, 0), "cudaHostGetDevicePointer (stream gate)"));
  return g;
}

StreamGate::~StreamGate() {
  if (words_ != nullptr) (void)cudaFreeHost(words_);
}

Status StreamGate::close(void* stream) {
  ++token_;
  return cuda::launch_gate(static_cast<cuda::GateWords*>(device_words_), token_, kGateTimeoutNs, stream_of(stream));
}

void StreamGate::open() {
  __atomic_store_n(&static_cast<cuda::GateWords*>(words_)->opened, token_, __ATOMIC_RELEASE);
}

bool StreamGate::timed_out() const {
  return __atomic_load_n(&static_cast<const cuda::GateWords*>(words_)->timed_out, __ATOMIC_ACQUIRE) == token_;
}

Status evict_l2(const DeviceBuffer& buffer, void* stream) {
  return cuda::launch_l2_eviction(buffer.data(), buffer.bytes() / 16 * 16, stream_of(stream));
}

StatusOr<int64_t> device_l2_bytes() { return cuda::l2_cache_bytes(); }

StatusOr<double> measure_device_copy_gbps(DeviceAllocator& allocator, int64_t bytes) {
  if (bytes <= 0) {
    return invalid_argument("measure_device_copy_gbps: bytes = " + std::to_string(bytes) + " must be > 0");
  }
  StatusOr<DeviceBuffer> src = DeviceBuffer::allocate(allocator, "bench.copy", MemoryKind::other, bytes);
  if (!src.ok()) return src.status();
  StatusOr<DeviceBuffer> dst = DeviceBuffer::allocate(allocator, "bench.copy", MemoryKind::other, bytes);
  if (!dst.ok()) return dst.status();
  // Non-zero source bytes: a copy of freshly allocated memory could in principle be served from compressed zeros.
  KVFLASH_RETURN_IF_ERROR(cuda_call(cudaMemset(src->data(), 0x5a, static_cast<size_t>(bytes)), "cudaMemset"));
  StatusOr<DeviceEventTimer> timer = DeviceEventTimer::create();
  if (!timer.ok()) return timer.status();
  constexpr int kWarmup = 2, kTimed = 10;
  std::vector<double> us;
  for (int i = 0; i < kWarmup + kTimed; ++i) {
    KVFLASH_RETURN_IF_ERROR(timer->start());
    KVFLASH_RETURN_IF_ERROR(cuda_call(
        cudaMemcpyAsync(dst->data(), src->data(), static_cast<size_t>(bytes), cudaMemcpyDeviceToDevice, nullptr),
        "cudaMemcpyAsync device to device"));
    KVFLASH_RETURN_IF_ERROR(timer->stop());
    StatusOr<double> t = timer->elapsed_us();
    if (!t.ok()) return t.status();
    if (i >= kWarmup) us.push_back(*t);
  }
  std::sort(us.begin(), us.end());
  const double median = 0.5 * (us[kTimed / 2 - 1] + us[kTimed / 2]);
  return 2.0 * static_cast<double>(bytes) / (median * 1e-6) / 1e9;
}

#else  // no CUDA in this build

namespace {
Status no_cuda() { return unsupported("this build has no CUDA backend (device-resident caches need KVFLASH_CUDA=ON)"); }
}  // namespace

bool device_transfer_compiled() { return false; }
Status copy_to_device(void*, const void*, int64_t) { return no_cuda(); }
Status copy_to_host(void*, const void*, int64_t) { return no_cuda(); }
Status copy_on_device(void*, const void*, int64_t) { return no_cuda(); }
Status copy_rows_to_device(void*, int64_t, const void*, int64_t, int64_t, int64_t) { return no_cuda(); }
Status copy_to_device_async(void*, const void*, int64_t, void*) { return no_cuda(); }
Status synchronize_device() { return no_cuda(); }
Status synchronize_stream(void*) { return no_cuda(); }
StatusOr<DeviceStream> DeviceStream::create() { return no_cuda(); }
DeviceStream::DeviceStream(DeviceStream&& o) noexcept { *this = std::move(o); }
DeviceStream& DeviceStream::operator=(DeviceStream&& o) noexcept {
  std::swap(stream_, o.stream_);
  return *this;
}
DeviceStream::~DeviceStream() = default;
StatusOr<DeviceEventTimer> DeviceEventTimer::create() { return no_cuda(); }
DeviceEventTimer::DeviceEventTimer(DeviceEventTimer&& o) noexcept { *this = std::move(o); }
DeviceEventTimer& DeviceEventTimer::operator=(DeviceEventTimer&& o) noexcept {
  std::swap(start_, o.start_);
  std::swap(stop_, o.stop_);
  return *this;
}
DeviceEventTimer::~DeviceEventTimer() = default;
Status DeviceEventTimer::start(void*) { return no_cuda(); }
Status DeviceEventTimer::stop(void*) { return no_cuda(); }
StatusOr<double> DeviceEventTimer::elapsed_us() const { return no_cuda(); }
StatusOr<StreamGate> StreamGate::create() { return no_cuda(); }
StreamGate::~StreamGate() = default;
Status StreamGate::close(void*) { return no_cuda(); }
void StreamGate::open() {}
bool StreamGate::timed_out() const { return false; }
Status evict_l2(const DeviceBuffer&, void*) { return no_cuda(); }
StatusOr<int64_t> device_l2_bytes() { return no_cuda(); }
StatusOr<double> measure_device_copy_gbps(DeviceAllocator&, int64_t) { return no_cuda(); }

#endif

// Moves only swap the members, with or without CUDA.
StreamGate::StreamGate(StreamGate&& o) noexcept { *this = std::move(o); }

StreamGate& StreamGate::operator=(StreamGate&& o) noexcept {
  std::swap(words_, o.words_);
  std::swap(device_words_, o.device_words_);
  std::swap(token_, o.token_);
  return *this;
}

}  // namespace kvflash::kvcache
