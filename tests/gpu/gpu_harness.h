// What every GPU test does: draw a problem with the shared builder, copy it to the device, run it on the CUDA
// backend with the output (and the workspace) poisoned, copy the output back, and compare with the reference
// oracle. Header-only so that the test files stay the only sources of kvflash_gpu_tests; without CUDA in the build
// or without a device, device_present() is false and every test skips itself.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <algorithm>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "kvflash/attention.h"
#include "kvflash/backend.h"
#include "kvflash/reference.h"
#include "kvflash/route.h"
#include "plan/kernel_table.h"
#include "plan/launch.h"
#include "support/problem_builder.h"

#if defined(KVFLASH_HAVE_CUDA)
#include <cuda_runtime.h>
#endif

namespace kvflash::testing::gpu {

inline bool device_present() { return backend_available(BackendKind::cuda); }

/// First statement of every GPU test.
#define KVFLASH_REQUIRE_GPU()                                                               \
  do {                                                                                      \
    if (!::kvflash::testing::gpu::device_present()) GTEST_SKIP() << "skipped: no CUDA device"; \
  } while (0)

/// NMSE bound of the tensor-core decode kernel: f16 operands (the query, dequantized K/V, the probabilities)
/// with f32 accumulation. Measured around 1e-6 on the builder's data; the bound leaves two decades of margin.
inline constexpr double kDecodeTolerance = 1e-4;
/// The generic kernel computes in f32 throughout.
inline constexpr double kGenericTolerance = 1e-6;

struct GpuResult {
  std::vector<float> output;  // dense [n_seq, n_head_q, n_q, d_v]
  std::string route;
  int64_t n_splits = 0;
  int32_t qvecs_per_cta = 0;  // the route's query vectors per CTA
  bool decode_kernel = false;
};

struct RunConfig {
  int64_t force_splits = 0;  // 0: the planned split count
  // Moves the mask's and K/V's bytes this far into a larger device buffer (64-bit offsets beyond 2^31).
  int64_t far_offset = 0;
  // Runs this row instead of the planned one, with the keys unsplit and no workspace (e.g. one prefill kernel where
  // the router prefers another); the planner must still accept the problem.
  std::optional<KernelId> force_kernel = std::nullopt;
};

/// The planner's cuda route for `p`, or, with force_splits > 0, the same route cut into about that many key
/// ranges (plan::with_forced_splits).
inline StatusOr<Route> cuda_route(const AttentionProblem& p, int64_t force_splits = 0) {
  StatusOr<Route> planned = plan_route(p, caps_for(BackendKind::cuda));
  if (!planned.ok() || force_splits <= 0) return planned;
  return plan::with_forced_splits(p, *planned, force_splits);
}

inline bool is_decode_route(const Route& r) { return r.kernel != KernelId::cuda_generic; }

#if defined(KVFLASH_HAVE_CUDA)

/// A cudaMalloc'd buffer, freed on scope exit.
class DeviceBytes {
 public:
  DeviceBytes() = default;
  explicit DeviceBytes(size_t bytes) : bytes_(bytes) {
    if (bytes > 0 && cudaMalloc(&data_, bytes) != cudaSuccess) {
      data_ = nullptr;
      bytes_ = 0;
      ok_ = false;
    }
  }
  DeviceBytes(const DeviceBytes&) = delete;
  DeviceBytes& operator=(const DeviceBytes&) = delete;
  DeviceBytes(DeviceBytes&& o) noexcept { *this = std::move(o); }
  DeviceBytes& operator=(DeviceBytes&& o) noexcept {
    std::swap(data_, o.data_);
    std::swap(bytes_, o.bytes_);
    std::swap(ok_, o.ok_);
    return *this;
  }
  ~DeviceBytes() {
    if (data_ != nullptr) cudaFree(data_);
  }
  /// A buffer that is not ok() without asking the driver (a failed cudaMalloc would leave its error behind).
  static DeviceBytes unavailable() {
    DeviceBytes b;
    b.ok_ = false;
    return b;
  }
  bool ok() const { return ok_; }
  void* data() const { return data_; }
  uint8_t* bytes() const { return static_cast<uint8_t*>(data_); }
  size_t size() const { return bytes_; }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
  bool ok_ = true;
};

inline Status cuda_ok(cudaError_t e, const char* what) {
  return e == cudaSuccess ? Status::Ok() : backend_error(std::string(what) + ": " + cudaGetErrorString(e));
}

/// The problem's buffers on the device, and the problem rebound to them.
struct DeviceProblem {
  DeviceBytes q, k, v, mask, sinks, kv_len, pages, o;
  AttentionProblem problem;
  // Pointer the mask / K / V buffers start at (inside a larger allocation when far_offset > 0).
  uint8_t *mask_at = nullptr, *k_at = nullptr, *v_at = nullptr;
};

inline Status upload(DeviceBytes& dst, uint8_t*& at, const HostProblem::Buffer& src, int64_t far_offset = 0) {
  if (src.data == nullptr) return Status::Ok();
  dst = DeviceBytes(src.bytes + static_cast<size_t>(far_offset));
  if (!dst.ok()) return out_of_memory("cudaMalloc of " + std::to_string(src.bytes + far_offset) + " bytes failed");
  at = dst.bytes() + far_offset;
  return cuda_ok(cudaMemcpy(at, src.data, src.bytes, cudaMemcpyHostToDevice), "cudaMemcpy to device");
}

inline StatusOr<DeviceProblem> to_device(const HostProblem& hp, int64_t far_offset) {
  DeviceProblem d;
  uint8_t *q_at = nullptr, *sinks_at = nullptr, *len_at = nullptr, *pages_at = nullptr;
  KVFLASH_RETURN_IF_ERROR(upload(d.q, q_at, hp.q()));
  KVFLASH_RETURN_IF_ERROR(upload(d.k, d.k_at, hp.k(), far_offset));
  if (hp.spec().v_is_view_of_k) {
    d.v_at = d.k_at;
  } else {
    KVFLASH_RETURN_IF_ERROR(upload(d.v, d.v_at, hp.v(), far_offset));
  }
  KVFLASH_RETURN_IF_ERROR(upload(d.mask, d.mask_at, hp.mask(), far_offset));
  KVFLASH_RETURN_IF_ERROR(upload(d.sinks, sinks_at, hp.sinks()));
  KVFLASH_RETURN_IF_ERROR(upload(d.kv_len, len_at, hp.kv_len()));
  KVFLASH_RETURN_IF_ERROR(upload(d.pages, pages_at, hp.page_table()));
  d.o = DeviceBytes(hp.o_bytes());
  if (!d.o.ok()) return out_of_memory("cudaMalloc of the output failed");
  d.problem = hp.rebased(q_at, d.k_at, d.v_at, d.mask_at, reinterpret_cast<const float*>(sinks_at),
                         reinterpret_cast<const int32_t*>(len_at), reinterpret_cast<const int32_t*>(pages_at),
                         static_cast<float*>(d.o.data()));
  return d;
}

/// Dense [n_seq, n_head_q, n_q, d_v] rows of O, read through O's strides from a host copy of its buffer.
inline std::vector<float> gather_output(const HostProblem& hp, const std::vector<uint8_t>& o_bytes) {
  // Only O is read; the other pointers are rebound to the same buffer just to keep them non-null.
  auto* o = reinterpret_cast<float*>(const_cast<uint8_t*>(o_bytes.data()));
  const auto* i32 = reinterpret_cast<const int32_t*>(o);
  const AttentionProblem host = hp.rebased(o, o, o, o, o, i32, i32, o);
  const AttentionShape& s = host.shape;
  std::vector<float> out(static_cast<size_t>(s.n_seq * s.n_head_q * s.n_q * s.d_v));
  float* dst = out.data();
  const auto* base = reinterpret_cast<const uint8_t*>(host.o.data);
  for (int64_t seq = 0; seq < s.n_seq; ++seq)
    for (int64_t h = 0; h < s.n_head_q; ++h)
      for (int64_t i = 0; i < s.n_q; ++i, dst += s.d_v)
        std::memcpy(dst, base + seq * host.o.stride.seq + h * host.o.stride.head + i * host.o.stride.row,
                    static_cast<size_t>(s.d_v) * sizeof(float));
  return out;
}

/// Runs `hp` on the CUDA backend: output and workspace poisoned with NaN bytes first, one synchronization after.
inline StatusOr<GpuResult> run_cuda(const HostProblem& hp, const RunConfig& config = {}) {
  StatusOr<DeviceProblem> dev = to_device(hp, config.far_offset);
  KVFLASH_RETURN_IF_ERROR(dev.status());
  const AttentionProblem& p = dev->problem;
  StatusOr<Route> route = cuda_route(p, config.force_splits);
  KVFLASH_RETURN_IF_ERROR(route.status());
  if (config.force_kernel.has_value()) {
    route->kernel = *config.force_kernel;
    route->n_splits = 1;
    route->keys_per_split = p.shape.n_kv;
    route->workspace_bytes = 0;
    route->layout = WorkspaceLayout{};
  }
  DeviceBytes workspace(static_cast<size_t>(route->workspace_bytes));
  if (!workspace.ok()) return out_of_memory("cudaMalloc of the workspace failed");
  KVFLASH_RETURN_IF_ERROR(cuda_ok(cudaMemset(dev->o.data(), 0xff, dev->o.size()), "poison O"));
  if (workspace.size() > 0) {
    KVFLASH_RETURN_IF_ERROR(cuda_ok(cudaMemset(workspace.data(), 0xff, workspace.size()), "poison workspace"));
  }
  KVFLASH_RETURN_IF_ERROR(attend(p, *route, workspace.data(), workspace.size(), nullptr));
  KVFLASH_RETURN_IF_ERROR(cuda_ok(cudaDeviceSynchronize(), "kernel execution"));
  std::vector<uint8_t> o_host(dev->o.size());
  KVFLASH_RETURN_IF_ERROR(
      cuda_ok(cudaMemcpy(o_host.data(), dev->o.data(), o_host.size(), cudaMemcpyDeviceToHost), "copy O back"));
  GpuResult result;
  result.output = gather_output(hp, o_host);
  result.route = std::string(kernel_name(route->kernel));
  result.n_splits = route->n_splits;
  result.qvecs_per_cta = route->qvecs_per_cta;
  result.decode_kernel = is_decode_route(*route);
  return result;
}

#else

inline StatusOr<GpuResult> run_cuda(const HostProblem&, const RunConfig& = {}) {
  return unsupported("this build has no CUDA backend");
}

#endif

/// The reference output of `hp` (dense), computed on the host.
inline StatusOr<std::vector<float>> reference_output(HostProblem& hp) {
  hp.poison_output();
  KVFLASH_RETURN_IF_ERROR(attend_reference(hp.problem()));
  const std::span<const float> out = hp.output();
  return std::vector<float>(out.begin(), out.end());
}

/// Short name of a spec for failure messages.
inline std::string spec_name(const ProblemSpec& s) {
  std::string n = std::string(kv_traits(s.ktype).name) + "/" + std::string(kv_traits(s.vtype).name) +
                  " seq=" + std::to_string(s.shape.n_seq) + " q=" + std::to_string(s.shape.n_q) +
                  " kv=" + std::to_string(s.shape.n_kv) + " hq=" + std::to_string(s.shape.n_head_q) +
                  " hkv=" + std::to_string(s.shape.n_head_kv) + " dk=" + std::to_string(s.shape.d_k) +
                  " dv=" + std::to_string(s.shape.d_v) + " seed=" + std::to_string(s.seed);
  if (s.mask != MaskKind::none) n += " mask=" + std::to_string(static_cast<int>(s.mask));
  if (s.layout != KvLayout::contiguous) n += " layout=" + std::to_string(static_cast<int>(s.layout));
  if (s.causal) n += " causal";
  if (s.window > 0) n += " window=" + std::to_string(s.window);
  if (s.alibi_max_bias > 0) n += " alibi";
  if (s.softcap > 0) n += " softcap";
  if (s.sinks) n += " sinks";
  if (s.varlen) n += " varlen";
  n += kv_lens_text(s);
  if (s.v_is_view_of_k) n += " v_view_of_k";
  return n;
}

struct Comparison {
  double nmse = 0;
  std::string route;
  int64_t n_splits = 0;
  int32_t qvecs_per_cta = 0;  // the route's query vectors per CTA
  bool decode_kernel = false;
};

/// Builds `spec`, runs it on the GPU and on the oracle, returns the NMSE (and fails the test on any error).
inline Comparison compare_with_reference(const ProblemSpec& spec, const RunConfig& config = {}) {
  Comparison c;
  c.nmse = std::numeric_limits<double>::infinity();
  StatusOr<HostProblem> hp = HostProblem::make(spec);
  EXPECT_TRUE(hp.ok()) << spec_name(spec) << ": " << hp.status().message();
  if (!hp.ok()) return c;
  StatusOr<std::vector<float>> want = reference_output(*hp);
  EXPECT_TRUE(want.ok()) << spec_name(spec) << ": " << want.status().message();
  if (!want.ok()) return c;
  StatusOr<GpuResult> got = run_cuda(*hp, config);
  EXPECT_TRUE(got.ok()) << spec_name(spec) << ": " << got.status().message();
  if (!got.ok()) return c;
  c.nmse = nmse(got->output, *want);
  c.route = got->route;
  c.n_splits = got->n_splits;
  c.qvecs_per_cta = got->qvecs_per_cta;
  c.decode_kernel = got->decode_kernel;
  return c;
}

/// Runs the comparison and checks the bound of the kernel the route took; returns the comparison.
inline Comparison expect_matches_reference(const ProblemSpec& spec, const RunConfig& config = {}) {
  const Comparison c = compare_with_reference(spec, config);
  const double bound = c.decode_kernel ? kDecodeTolerance : kGenericTolerance;
  EXPECT_LE(c.nmse, bound) << spec_name(spec) << " route " << c.route << " splits " << c.n_splits;
  return c;
}

}  // namespace kvflash::testing::gpu
