// The promises of the CUDA backend beyond the numbers: 64-bit index math (views whose byte offsets pass 2^31 and a
// mask view of more than 2^31 elements), and calls that a CUDA graph can capture (no allocation, no host
// synchronization) and replay with new data in the same buffers.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "gpu/gpu_harness.h"

namespace kvflash::testing::gpu {
namespace {

#if defined(KVFLASH_HAVE_CUDA)

int64_t round_up(int64_t x, int64_t unit) { return (x + unit - 1) / unit * unit; }

/// Copies each sequence's slice of a contiguous [seq, ...] host view to `seq_stride` bytes apart on the device.
Status upload_spread(DeviceBytes& dst, const void* host, int64_t host_seq_stride, int64_t n_seq, int64_t seq_stride) {
  dst = DeviceBytes(static_cast<size_t>((n_seq - 1) * seq_stride + host_seq_stride));
  if (!dst.ok()) return out_of_memory("cudaMalloc for a spread view failed");
  for (int64_t s = 0; s < n_seq; ++s) {
    KVFLASH_RETURN_IF_ERROR(cuda_ok(cudaMemcpy(dst.bytes() + s * seq_stride,
                                               static_cast<const uint8_t*>(host) + s * host_seq_stride,
                                               static_cast<size_t>(host_seq_stride), cudaMemcpyHostToDevice),
                                    "cudaMemcpy spread"));
  }
  return Status::Ok();
}

TEST(CudaDeviceContract, ViewsWhoseOffsetsPassTwoToThe31) {
  KVFLASH_REQUIRE_GPU();
  // The second sequence's K and V start 2^31 + a little bytes after the first; its mask rows start past 2^32
  // bytes, i.e. past element 2^31 of an f16 mask view. Contiguous layouts, so each sequence is one slice.
  constexpr int64_t kFar = (int64_t{1} << 31) + 4096;
  uint64_t seed = 3000;
  for (KvType t : {KvType::f16, KvType::q4_0}) {
    for (int64_t n_q : {2, 20}) {  // the decode kernel and the generic kernel
      ProblemSpec spec;
      spec.shape = AttentionShape{2, n_q, 300, 4, 2, 128, 128};
      spec.ktype = spec.vtype = t;
      spec.mask = MaskKind::f16;
      spec.seed = ++seed;
      StatusOr<HostProblem> hp = HostProblem::make(spec);
      ASSERT_TRUE(hp.ok()) << hp.status().message();
      StatusOr<std::vector<float>> want = reference_output(*hp);
      ASSERT_TRUE(want.ok()) << want.status().message();
      const AttentionProblem& host = hp->problem();
      ASSERT_EQ(host.k.paging.pages, nullptr);

      StatusOr<DeviceProblem> dev = to_device(*hp, 0);
      ASSERT_TRUE(dev.ok()) << dev.status().message();
      AttentionProblem p = dev->problem;
      const int64_t block = kv_traits(t).block_bytes;
      DeviceBytes far_k, far_v, far_mask;
      const int64_t k_stride = round_up(kFar, 256 * block), mask_stride = round_up(2 * kFar, 256);
      ASSERT_TRUE(upload_spread(far_k, host.k.data, host.k.stride.seq, 2, k_stride).ok());
      ASSERT_TRUE(upload_spread(far_v, host.v.data, host.v.stride.seq, 2, k_stride).ok());
      ASSERT_TRUE(upload_spread(far_mask, host.mask.data, host.mask.stride.seq, 2, mask_stride).ok());
      p.k.data = far_k.data();
      p.v.data = far_v.data();
      p.mask.data = far_mask.data();
      p.k.stride.seq = p.v.stride.seq = k_stride;
      p.mask.stride.seq = mask_stride;
      ASSERT_TRUE(validate(p).ok()) << validate(p).message();

      StatusOr<Route> route = cuda_route(p);
      ASSERT_TRUE(route.ok()) << route.status().message();
      DeviceBytes workspace(static_cast<size_t>(route->workspace_bytes));
      ASSERT_EQ(cudaMemset(dev->o.data(), 0xff, dev->o.size()), cudaSuccess);
      const Status ran = attend(p, *route, workspace.data(), workspace.size(), nullptr);
      ASSERT_TRUE(ran.ok()) << ran.message();
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      std::vector<uint8_t> o(dev->o.size());
      ASSERT_EQ(cudaMemcpy(o.data(), dev->o.data(), o.size(), cudaMemcpyDeviceToHost), cudaSuccess);
      const double err = nmse(gather_output(*hp, o), *want);
      EXPECT_LE(err, is_decode_route(*route) ? kDecodeTolerance : kGenericTolerance)
          << spec_name(spec) << " route " << kernel_name(route->kernel);
    }
  }
}

TEST(CudaDeviceContract, GraphCaptureReplaysWithNewQueries) {
  KVFLASH_REQUIRE_GPU();
  ProblemSpec spec;
  spec.shape = AttentionShape{2, 1, 3000, 8, 2, 128, 128};
  spec.ktype = spec.vtype = KvType::q8_0;
  spec.sinks = true;
  spec.seed = 3100;
  StatusOr<HostProblem> first = HostProblem::make(spec);
  ASSERT_TRUE(first.ok());
  spec.seed = 3101;  // same shape and layout, other values
  StatusOr<HostProblem> second = HostProblem::make(spec);
  ASSERT_TRUE(second.ok());
  StatusOr<std::vector<float>> want_second = reference_output(*second);
  ASSERT_TRUE(want_second.ok());

  StatusOr<DeviceProblem> dev = to_device(*first, 0);
  ASSERT_TRUE(dev.ok());
  const AttentionProblem& p = dev->problem;
  StatusOr<Route> route = cuda_route(p);
  ASSERT_TRUE(route.ok());
  ASSERT_GT(route->n_splits, 1) << "the capture should cover the combine kernel too";
  DeviceBytes workspace(static_cast<size_t>(route->workspace_bytes));
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);

  // A direct call first (what an engine does before capturing its decode step).
  ASSERT_TRUE(attend(p, *route, workspace.data(), workspace.size(), stream).ok());
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);

  // Global capture mode rejects any call that could synchronize or allocate implicitly.
  cudaGraph_t graph = nullptr;
  ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), cudaSuccess);
  const Status captured = attend(p, *route, workspace.data(), workspace.size(), stream);
  ASSERT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
  ASSERT_TRUE(captured.ok()) << captured.message();
  cudaGraphExec_t exec = nullptr;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);

  // New queries, K/V and sinks in the same buffers (same layout), O poisoned, then replay.
  const auto refill = [&](DeviceBytes& dst, const HostProblem::Buffer& src) {
    ASSERT_EQ(dst.size(), src.bytes);
    ASSERT_EQ(cudaMemcpy(dst.data(), src.data, src.bytes, cudaMemcpyHostToDevice), cudaSuccess);
  };
  refill(dev->q, second->q());
  refill(dev->k, second->k());
  refill(dev->v, second->v());
  refill(dev->sinks, second->sinks());
  ASSERT_EQ(cudaMemset(dev->o.data(), 0xff, dev->o.size()), cudaSuccess);
  ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  std::vector<uint8_t> o(dev->o.size());
  ASSERT_EQ(cudaMemcpy(o.data(), dev->o.data(), o.size(), cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_LE(nmse(gather_output(*second, o), *want_second), kDecodeTolerance);

  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}

#else

TEST(CudaDeviceContract, ViewsWhoseOffsetsPassTwoToThe31) { KVFLASH_REQUIRE_GPU(); }
TEST(CudaDeviceContract, GraphCaptureReplaysWithNewQueries) { KVFLASH_REQUIRE_GPU(); }

#endif

}  // namespace
}  // namespace kvflash::testing::gpu
