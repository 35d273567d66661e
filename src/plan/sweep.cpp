#include "plan/sweep.h"

#include <array>

#include "plan/router.h"

namespace kvflash::plan {
namespace {

constexpr auto kHeadDims = [] {
  std::array<HeadDimPair, 24> d{};
  int n = 0;
  for (int32_t x = 32; x <= 640; x += 32) d[n++] = {x, x};
  d[n++] = {576, 512};
  d[n++] = {192, 128};
  d[n++] = {80, 80};
  d[n++] = {112, 112};  // 96 is already a multiple of 32
  return d;
}();
constexpr std::array<int64_t, 19> kGroups = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 24, 32, 64};
constexpr std::array<int64_t, 12> kNq = {1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 64, 512};
constexpr std::array<int64_t, 5> kNkv = {1, 255, 257, 4096, 65537};
constexpr int64_t kMasks = 3, kLayouts = 3;

constexpr size_t kMaxFailuresKept = 10;

}  // namespace

std::span<const HeadDimPair> sweep_head_dims() { return kHeadDims; }
std::span<const int64_t> sweep_gqa_groups() { return kGroups; }
std::span<const int64_t> sweep_n_q() { return kNq; }
std::span<const int64_t> sweep_n_kv() { return kNkv; }

int64_t sweep_size() {
  return static_cast<int64_t>(kHeadDims.size() * kGroups.size() * kNq.size()) * kKvTypeCount * kKvTypeCount *
         kMasks * kLayouts;
}

SweepPoint sweep_point(int64_t index) {
  int64_t i = index;
  const auto next = [&i](int64_t n) {
    const int64_t r = i % n;
    i /= n;
    return r;
  };
  const auto layout = static_cast<ShapeLayout>(next(kLayouts));
  const auto mask = static_cast<SweepMask>(next(kMasks));
  const auto v_type = static_cast<KvType>(next(kKvTypeCount));
  const auto k_type = static_cast<KvType>(next(kKvTypeCount));
  const int64_t n_q = kNq[next(kNq.size())];
  const int64_t group = kGroups[next(kGroups.size())];
  const HeadDimPair dims = kHeadDims[next(kHeadDims.size())];

  // Axes the issue does not enumerate are cycled by a hash of the index, so the walk also meets sequences,
  // lengths and options in many combinations without multiplying its size.
  const uint64_t h = static_cast<uint64_t>(index) * 0x9E3779B97F4A7C15ull >> 16;
  ShapeProblemSpec s;
  s.shape.n_seq = 1 + static_cast<int64_t>(h & 1);
  s.shape.n_head_kv = 1 + static_cast<int64_t>((h >> 1) & 1);
  s.shape.n_head_q = group * s.shape.n_head_kv;
  s.shape.n_q = n_q;
  s.shape.n_kv = kNkv[(h >> 2) % kNkv.size()];
  s.shape.d_k = dims.d_k;
  s.shape.d_v = dims.d_v;
  s.k_type = k_type;
  s.v_type = v_type;
  s.layout = layout;
  s.causal = mask == SweepMask::causal || (mask == SweepMask::explicit_mask && ((h >> 7) & 1));
  if (mask == SweepMask::explicit_mask) {
    s.mask = ((h >> 5) & 1) ? ShapeMask::f16 : ShapeMask::f32;
    s.mask_broadcast_heads = (h >> 6) & 1;
  }
  if ((h >> 8) % 4 == 0) s.window = 128;
  if ((h >> 10) % 4 == 0) s.alibi_max_bias = 8.0;
  if ((h >> 12) % 4 == 0) s.softcap = 30.0;
  s.sinks = (h >> 14) & 1;
  s.kv_len = (h >> 15) & 1;
  // The MLA pair reads V from K's rows when the types allow it (every other point keeps separate V).
  s.v_is_view_of_k = dims.d_k == 576 && dims.d_v == 512 && k_type == v_type && ((h >> 16) & 1);
  return {s, mask, index};
}

std::vector<BackendKind> routable_backends() {
  std::vector<BackendKind> out;
  for (int b = 0; b < kBackendCount; ++b) {
    if (backend_has_kernels(static_cast<BackendKind>(b))) out.push_back(static_cast<BackendKind>(b));
  }
  return out;
}

std::vector<SweepCoverage> run_sweep(int64_t begin, int64_t end, int64_t stride, std::span<const BackendCaps> caps) {
  std::vector<SweepCoverage> cov;
  for (const BackendCaps& c : caps) cov.push_back({c.kind, 0, 0, 0, {}});
  for (int64_t i = begin; i < end; i += stride) {
    const SweepPoint pt = sweep_point(i);
    const AttentionProblem p = shape_only_problem(pt.spec);
    const Status valid = validate(p);
    for (size_t b = 0; b < caps.size(); ++b) {
      SweepCoverage& c = cov[b];
      if (!valid.ok()) {
        ++c.invalid;
        // The space holds exactly one kind of invalid point: a head dim (80, 112) a 32-value block cannot store.
        if (valid.message().find("block size") == std::string::npos && c.failures.size() < kMaxFailuresKept) {
          c.failures.push_back("point " + std::to_string(i) + " rejected by validate(): " + valid.message());
        }
        continue;
      }
      ++c.valid;
      auto r = route_validated(p, caps[b]);
      if (r.ok()) {
        ++c.routed;
      } else if (c.failures.size() < kMaxFailuresKept) {
        c.failures.push_back("point " + std::to_string(i) + ": " + r.status().message());
      }
    }
  }
  return cov;
}

}  // namespace kvflash::plan
