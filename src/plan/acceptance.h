// Whether a row of the kernel table accepts a problem, and if not, the exact reason (explain() prints it).
#pragma once

#include <cstdint>
#include <string>

#include "kvflash/attention_problem.h"
#include "plan/kernel_table.h"

namespace kvflash::plan {

/// feature:: bits `p` needs.
uint32_t required_features(const AttentionProblem& p);

/// "f16|q8_0" for a type mask, "any" for kAllKvTypes.
std::string type_mask_names(uint32_t mask);

/// Empty when `spec` accepts the types and head dims; else the reason, naming the field and its value.
std::string reject_types_and_dims(const KernelSpec& spec, KvType k_type, KvType v_type, int64_t d_k, int64_t d_v);

/// Whether `spec` accepts `p` (which validate() accepted): reject_reason(spec, p).empty(), without building strings.
bool accepts(const KernelSpec& spec, const AttentionProblem& p);

/// Empty when `spec` accepts `p` (which validate() accepted); else the first reason it does not.
std::string reject_reason(const KernelSpec& spec, const AttentionProblem& p);

}  // namespace kvflash::plan
