// describe(): the whole problem on one line, so that a failed route or a failed test names what it was given.
#include <cstdio>
#include <string>

#include "kvflash/attention_problem.h"

namespace kvflash {
namespace {

std::string num(double x) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", x);
  return buf;
}

std::string strides(const Strides& s) {
  return "[seq " + std::to_string(s.seq) + ", head " + std::to_string(s.head) + ", row " + std::to_string(s.row) + "]";
}

// An out-of-range enum value (from the C API, say) must print, not index past the traits table.
std::string type_name(KvType t) {
  const int id = static_cast<int>(t);
  return id >= 0 && id < kKvTypeCount ? std::string(kv_traits(t).name) : "KvType(" + std::to_string(id) + ")";
}

std::string kv_view(const char* name, const KvView& v) {
  std::string out = std::string(name) + "=" + type_name(v.type) + " stride " + strides(v.stride);
  if (v.paging.pages != nullptr) {
    out += " paged (page_rows " + std::to_string(v.paging.page_rows) + ", pages_per_seq " +
           std::to_string(v.paging.pages_per_seq) + ", page_bytes " + std::to_string(v.paging.page_bytes) + ")";
  }
  return out;
}

}  // namespace

std::string describe(const AttentionProblem& p) {
  const AttentionShape& s = p.shape;
  const AttentionOptions& o = p.options;
  std::string out = "n_seq=" + std::to_string(s.n_seq) + " n_q=" + std::to_string(s.n_q) +
                    " n_kv=" + std::to_string(s.n_kv) + " n_head_q=" + std::to_string(s.n_head_q) +
                    " n_head_kv=" + std::to_string(s.n_head_kv) + " d_k=" + std::to_string(s.d_k) +
                    " d_v=" + std::to_string(s.d_v);
  out += " " + kv_view("k", p.k) + " " + kv_view("v", p.v);
  if (p.k.data != nullptr && p.k.data == p.v.data) out += " (v is a view of k)";
  out += " q stride " + strides(p.q.stride) + " o stride " + strides(p.o.stride);
  if (p.mask.data == nullptr) {
    out += " mask=none";
  } else {
    const char* mt = p.mask.type == MaskType::f32 ? "f32" : p.mask.type == MaskType::f16 ? "f16" : "?";
    out += std::string(" mask=") + mt + " stride " + strides(p.mask.stride);
  }
  out += " scale=" + num(o.scale) + (o.scale == 0.0 ? " (1/sqrt(d_k))" : "");
  out += std::string(" causal=") + (o.causal ? "1" : "0") + " window=" + std::to_string(o.window) +
         " alibi_max_bias=" + num(o.alibi_max_bias) + " softcap=" + num(o.softcap) +
         " sinks=" + (o.sinks != nullptr ? "yes" : "no") + " kv_len=" + (p.kv_len != nullptr ? "per-seq" : "n_kv");
  return out;
}

}  // namespace kvflash
