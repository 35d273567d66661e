#include "backend/cuda/cuda_attention.h"

#include <algorithm>
#include <array>

#include "backend/cuda/decode_launch.h"
#include "backend/cuda/device.h"
#include "backend/cuda/generic_attention.h"

namespace kvflash::cuda {
namespace {

using LaunchFn = Status (*)(const AttentionProblem&, const SplitPlan&, void*, cudaStream_t);
using GeometryFn = StatusOr<KernelGeometry> (*)();

struct DecodeInstance {
  DecodeInstanceKey key;
  LaunchFn launch;
  GeometryFn geometry;
};

#define KVFLASH_DECODE_INSTANCE(DK, DV, KT, VT)                                                     \
  DecodeInstance{{DK, DV, KvType::KT, KvType::VT}, &launch_decode<DK, DV, KvType::KT, KvType::VT>, \
                 &decode_geometry<DK, DV, KvType::KT, KvType::VT>},
const DecodeInstance kInstances[] = {
#include "backend/cuda/decode_instances.inc"
};
#undef KVFLASH_DECODE_INSTANCE

#define KVFLASH_DECODE_INSTANCE(DK, DV, KT, VT) DecodeInstanceKey{DK, DV, KvType::KT, KvType::VT},
const DecodeInstanceKey kInstanceKeys[] = {
#include "backend/cuda/decode_instances.inc"
};
#undef KVFLASH_DECODE_INSTANCE

int find_instance(const AttentionProblem& p) {
  for (int i = 0; i < static_cast<int>(std::size(kInstances)); ++i) {
    const DecodeInstanceKey& k = kInstances[i].key;
    if (k.head_dim_k == p.shape.d_k && k.head_dim_v == p.shape.d_v && k.k_type == p.k.type && k.v_type == p.v.type) {
      return i;
    }
  }
  return -1;
}

std::string instance_name(const DecodeInstanceKey& k) {
  return "decode_split_kv<" + std::to_string(k.head_dim_k) + "," + std::to_string(k.head_dim_v) + "," +
         std::string(kv_traits(k.k_type).name) + "," + std::string(kv_traits(k.v_type).name) + ">";
}

}  // namespace

std::span<const DecodeInstanceKey> decode_instances() { return kInstanceKeys; }

StatusOr<CudaRoute> route_cuda(const AttentionProblem& p) {
  KVFLASH_RETURN_IF_ERROR(validate(p));
  const StatusOr<DeviceInfo> device = current_device();
  KVFLASH_RETURN_IF_ERROR(device.status());
  CudaRoute route;
  const int instance = p.shape.n_q <= kMaxDecodeRows ? find_instance(p) : -1;
  KernelGeometry geometry;
  int64_t dv_stored = 0;
  if (instance >= 0) {
    const StatusOr<KernelGeometry> g = kInstances[instance].geometry();
    KVFLASH_RETURN_IF_ERROR(g.status());
    geometry = *g;
    route.kernel = CudaKernel::decode_split_kv;
    route.instance = instance;
    route.name = instance_name(kInstances[instance].key);
    dv_stored = stored_dim(p.v.type, p.shape.d_v);
  } else {
    const StatusOr<KernelGeometry> g = generic_geometry(p);
    KVFLASH_RETURN_IF_ERROR(g.status());
    geometry = *g;
    route.kernel = CudaKernel::generic;
    route.name = "generic";
    dv_stored = generic_dv_stored(p);
  }
  route.split = plan_splits(p.shape, geometry, device->sm_count);
  route.key_tile = geometry.key_tile;
  route.dv_stored = dv_stored;
  route.workspace_bytes = split_workspace(p.shape, dv_stored, route.split.n_splits).total_bytes;
  return route;
}

CudaRoute with_splits(const CudaRoute& route, const AttentionProblem& p, int64_t n_splits) {
  CudaRoute r = route;
  const int64_t tile = std::max(1, r.key_tile);
  const int64_t tiles = std::max<int64_t>(1, (p.shape.n_kv + tile - 1) / tile);
  const int64_t wanted = std::clamp<int64_t>(n_splits, 1, std::min(tiles, kMaxSplits));
  const int64_t tiles_per_split = (tiles + wanted - 1) / wanted;
  r.split.keys_per_split = tiles_per_split * tile;
  r.split.n_splits = (tiles + tiles_per_split - 1) / tiles_per_split;
  r.workspace_bytes = split_workspace(p.shape, r.dv_stored, r.split.n_splits).total_bytes;
  return r;
}

Status attend_cuda(const AttentionProblem& p, const CudaRoute& route, void* workspace, size_t workspace_bytes,
                   cudaStream_t stream) {
  KVFLASH_RETURN_IF_ERROR(validate(p));
  if (workspace_bytes < route.workspace_bytes) {
    return invalid_argument("workspace_bytes = " + std::to_string(workspace_bytes) + " is less than the " +
                            std::to_string(route.workspace_bytes) + " bytes route " + route.name + " needs");
  }
  if (route.kernel == CudaKernel::decode_split_kv) {
    if (route.instance < 0 || route.instance >= static_cast<int>(std::size(kInstances)) ||
        find_instance(p) != route.instance || p.shape.n_q > kMaxDecodeRows) {
      return invalid_argument("route " + route.name + " does not match the problem: " + describe(p));
    }
    return kInstances[route.instance].launch(p, route.split, workspace, stream);
  }
  return launch_generic(p, route.split, workspace, stream);
}

Status attend_cuda(const AttentionProblem& p, void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  StatusOr<CudaRoute> route = route_cuda(p);
  KVFLASH_RETURN_IF_ERROR(route.status());
  return attend_cuda(p, *route, workspace, workspace_bytes, stream);
}

}  // namespace kvflash::cuda
