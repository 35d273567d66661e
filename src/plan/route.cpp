// plan_route() and explain(): one pass over the backend's rows of the kernel table.
#include <cstdio>
#include <vector>

#include "kvflash/route.h"
#include "plan/acceptance.h"
#include "plan/cost_model.h"
#include "plan/kernel_table.h"
#include "plan/launch.h"
#include "plan/router.h"

namespace kvflash {
namespace {

using plan::KernelSpec;
using plan::kKernels;

/// Fills `out` with every row of caps.kind; returns the Status plan_route() gives.
Status consider_all(const AttentionProblem& p, const BackendCaps& caps, bool validated, RouteExplanation* out) {
  out->backend = caps.kind;
  if (!validated) {
    if (Status valid = validate(p); !valid.ok()) {
      return invalid_argument(valid.message() + " (problem: " + describe(p) + ")");
    }
  }
  std::string reasons;
  std::vector<const KernelSpec*> specs;  // the row of each candidate
  for (const KernelSpec& spec : kKernels) {
    if (spec.backend != caps.kind) continue;
    specs.push_back(&spec);
    RouteCandidate c;
    c.kernel = std::string(spec.name);
    c.reason = plan::reject_reason(spec, p);
    if (c.reason.empty()) {
      if (Status s = plan::make_launch(spec, p, caps, &c.route); !s.ok()) {
        c.reason = s.message();
      } else {
        c.route.cost_us = plan::estimate_cost_us(spec, p, caps, c.route);
        c.accepted = true;
      }
    }
    if (!c.accepted) reasons += "; " + c.kernel + ": " + c.reason;
    out->candidates.push_back(std::move(c));
  }
  for (int i = 0; i < static_cast<int>(out->candidates.size()); ++i) {
    const RouteCandidate& c = out->candidates[i];
    if (!c.accepted) continue;
    if (out->chosen < 0 || plan::route_preferred(*specs[i], c.route.cost_us, *specs[out->chosen],
                                                 out->candidates[out->chosen].route.cost_us)) {
      out->chosen = i;
    }
  }
  if (out->chosen >= 0) return Status::Ok();
  if (out->candidates.empty()) {
    return unsupported("backend " + std::string(backend_name(caps.kind)) +
                       " has no kernels in this build (problem: " + describe(p) + ")");
  }
  return unsupported("no kernel of backend " + std::string(backend_name(caps.kind)) +
                     " accepts the problem, although every backend keeps a generic kernel (a bug)" + reasons +
                     " (problem: " + describe(p) + ")");
}

}  // namespace

std::string_view kernel_name(KernelId id) {
  const int i = static_cast<int>(id);
  return i >= 0 && i < plan::kKernelCount ? kKernels[i].name : std::string_view("?");
}

namespace plan {

StatusOr<Route> route_validated(const AttentionProblem& p, const BackendCaps& caps) {
  auto r = route_over(kKernels, p, caps);
  if (r.ok()) return r;
  // Only a failure (a bug: routing is total) pays for explain's bookkeeping, to name every reason.
  RouteExplanation e;
  return consider_all(p, caps, /*validated=*/true, &e);
}

StatusOr<Route> route_over(std::span<const KernelSpec> table, const AttentionProblem& p, const BackendCaps& caps) {
  // The fast path builds no strings.
  Route best;
  const KernelSpec* best_spec = nullptr;
  for (const KernelSpec& spec : table) {
    if (spec.backend != caps.kind || !accepts(spec, p)) continue;
    Route r;
    if (!make_launch(spec, p, caps, &r).ok()) continue;
    r.cost_us = estimate_cost_us(spec, p, caps, r);
    if (best_spec == nullptr || route_preferred(spec, r.cost_us, *best_spec, best.cost_us)) {
      best = r;
      best_spec = &spec;
    }
  }
  if (best_spec != nullptr) return best;
  return unsupported("no kernel of backend " + std::string(backend_name(caps.kind)) + " accepts the problem");
}

}  // namespace plan

StatusOr<Route> plan_route(const AttentionProblem& p, const BackendCaps& caps) {
  if (Status valid = validate(p); !valid.ok()) {
    return invalid_argument(valid.message() + " (problem: " + describe(p) + ")");
  }
  return plan::route_validated(p, caps);
}

RouteExplanation explain(const AttentionProblem& p, const BackendCaps& caps) {
  RouteExplanation e;
  e.problem = describe(p);
  e.status = consider_all(p, caps, /*validated=*/false, &e);
  return e;
}

std::string RouteExplanation::to_string() const {
  std::string out = "backend " + std::string(backend_name(backend)) + "\nproblem: " + problem + "\n";
  if (candidates.empty() && !status.ok()) return out + "error: " + status.message() + "\n";
  for (int i = 0; i < static_cast<int>(candidates.size()); ++i) {
    const RouteCandidate& c = candidates[i];
    char line[512];
    if (c.accepted) {
      const Route& r = c.route;
      // CUDA routes also say how many query vectors a CTA carries (the query chunks of a KV head follow from it).
      char qvecs[48] = "";
      if (r.qvecs_per_cta > 0) std::snprintf(qvecs, sizeof qvecs, ", %d query vectors per CTA", r.qvecs_per_cta);
      std::snprintf(line, sizeof line,
                    "  %s %-32s accepted: cost %.1f us, n_splits %lld (%lld keys each)%s, workers %d, workspace "
                    "%lld bytes\n",
                    i == chosen ? "*" : " ", c.kernel.c_str(), r.cost_us, static_cast<long long>(r.n_splits),
                    static_cast<long long>(r.keys_per_split), qvecs, r.workers,
                    static_cast<long long>(r.workspace_bytes));
      out += line;
    } else {
      std::snprintf(line, sizeof line, "    %-32s rejected: ", c.kernel.c_str());
      out += line + c.reason + "\n";
    }
  }
  if (chosen >= 0) return out + "route: " + candidates[chosen].kernel + "\n";
  return out + "error: " + status.message() + "\n";
}

}  // namespace kvflash
