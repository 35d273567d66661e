// The shape space issue 3 asks every backend to route: head dims, GQA groups, query rows, every K x V type pair,
// masks and layouts. The route sweep test and `kvflash routes --sweep` walk the same space through this.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "kvflash/route.h"
#include "plan/kernel_table.h"
#include "plan/shape_problem.h"

namespace kvflash::plan {

/// d_k/d_v: every multiple of 32 from 32 to 640, plus the MLA pair 576/512, DeepSeek's 192/128, and 80, 96, 112.
std::span<const HeadDimPair> sweep_head_dims();
/// n_head_q / n_head_kv: 1..16, 24, 32, 64.
std::span<const int64_t> sweep_gqa_groups();
/// n_q: 1..9, 16, 64, 512.
std::span<const int64_t> sweep_n_q();
/// n_kv values cycled through the space: lengths that are not a multiple of any tile, and long ones.
std::span<const int64_t> sweep_n_kv();

enum class SweepMask : uint8_t { none, causal, explicit_mask };

/// One point of the space, and the problem built for it (options that do not change the axis are cycled by index).
struct SweepPoint {
  ShapeProblemSpec spec;
  SweepMask mask;
  int64_t index;
};

/// Number of points: head dims x groups x n_q x K types x V types x masks x layouts.
int64_t sweep_size();

/// The point with this index (0 <= index < sweep_size()).
SweepPoint sweep_point(int64_t index);

/// Backends with rows in the kernel table (the ones that must route every valid problem).
std::vector<BackendKind> routable_backends();

/// Per-backend coverage of a walk over the space.
struct SweepCoverage {
  BackendKind backend;
  int64_t valid = 0;    // points validate() accepts
  int64_t routed = 0;   // of those, points plan_route() routed
  int64_t invalid = 0;  // points validate() rejects (a head dim the type cannot store: 80 or 112 in a 32-block type)
  std::vector<std::string> failures;  // first few: the point and the Status
};

/// Walks points [begin, end) (with `stride` between them) and routes each on each backend.
std::vector<SweepCoverage> run_sweep(int64_t begin, int64_t end, int64_t stride, std::span<const BackendCaps> caps);

}  // namespace kvflash::plan
