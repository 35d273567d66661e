#include "plan/acceptance.h"

namespace kvflash::plan {

uint32_t required_features(const AttentionProblem& p) {
  const AttentionOptions& o = p.options;
  uint32_t f = 0;
  if (o.causal) f |= feature::causal;
  if (o.window > 0) f |= feature::window;
  if (p.mask.data != nullptr) f |= p.mask.type == MaskType::f16 ? feature::mask_f16 : feature::mask_f32;
  if (o.alibi_max_bias > 0) f |= feature::alibi;
  if (o.softcap > 0) f |= feature::softcap;
  if (o.sinks != nullptr) f |= feature::sinks;
  if (p.kv_len != nullptr) f |= feature::kv_len;
  if (p.k.paging.pages != nullptr || p.v.paging.pages != nullptr) f |= feature::paged;
  return f;
}

std::string type_mask_names(uint32_t mask) {
  if (mask == kAllKvTypes) return "any";
  std::string out;
  for (const KvTraits& t : all_kv_types()) {
    if ((mask & type_bit(t.type)) != 0) out += (out.empty() ? "" : "|") + std::string(t.name);
  }
  return out;
}

std::string reject_types_and_dims(const KernelSpec& spec, KvType k_type, KvType v_type, int64_t d_k, int64_t d_v) {
  if ((spec.k_types & type_bit(k_type)) == 0) {
    return "k.type = " + std::string(kv_traits(k_type).name) + " is not one it reads (" +
           type_mask_names(spec.k_types) + ")";
  }
  if ((spec.v_types & type_bit(v_type)) == 0) {
    return "v.type = " + std::string(kv_traits(v_type).name) + " is not one it reads (" +
           type_mask_names(spec.v_types) + ")";
  }
  if (spec.head_dims.empty()) return {};
  std::string pairs;
  for (const HeadDimPair& d : spec.head_dims) {
    if (d.d_k == d_k && d.d_v == d_v) return {};
    pairs += (pairs.empty() ? "" : ", ") + std::to_string(d.d_k) + "/" + std::to_string(d.d_v);
  }
  return "d_k/d_v = " + std::to_string(d_k) + "/" + std::to_string(d_v) + " is not one it is compiled for (" +
         pairs + ")";
}

bool accepts(const KernelSpec& spec, const AttentionProblem& p) {
  const AttentionShape& s = p.shape;
  if ((spec.k_types & type_bit(p.k.type)) == 0 || (spec.v_types & type_bit(p.v.type)) == 0) return false;
  if (!spec.head_dims.empty()) {
    bool listed = false;
    for (const HeadDimPair& d : spec.head_dims) listed = listed || (d.d_k == s.d_k && d.d_v == s.d_v);
    if (!listed) return false;
  }
  if (spec.max_n_q > 0 && s.n_q > spec.max_n_q) return false;
  if (spec.max_gqa_group > 0 && s.n_head_q / s.n_head_kv > spec.max_gqa_group) return false;
  return (required_features(p) & ~spec.features) == 0;
}

std::string reject_reason(const KernelSpec& spec, const AttentionProblem& p) {
  const AttentionShape& s = p.shape;
  std::string why = reject_types_and_dims(spec, p.k.type, p.v.type, s.d_k, s.d_v);
  if (!why.empty()) return why;
  if (spec.max_n_q > 0 && s.n_q > spec.max_n_q) {
    return "n_q = " + std::to_string(s.n_q) + " exceeds its max_n_q = " + std::to_string(spec.max_n_q);
  }
  const int64_t group = s.n_head_q / s.n_head_kv;
  if (spec.max_gqa_group > 0 && group > spec.max_gqa_group) {
    return "GQA group n_head_q / n_head_kv = " + std::to_string(group) + " exceeds its max_gqa_group = " +
           std::to_string(spec.max_gqa_group);
  }
  const uint32_t missing = required_features(p) & ~spec.features;
  if (missing != 0) {
    std::string names;
    for (int i = 0; i < feature::kCount; ++i) {
      if ((missing & (1u << i)) != 0) names += (names.empty() ? "" : ", ") + std::string(feature::kNames[i]);
    }
    return "the problem needs " + names + ", which it does not implement";
  }
  return {};
}

}  // namespace kvflash::plan
