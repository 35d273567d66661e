// The reference backend: the oracle. Written to be obviously right, then just fast enough to check long contexts:
// K and V rows are dequantized once per (sequence, KV head) and shared by the query heads of the group.
#include "kvflash/reference.h"

#include <cmath>
#include <cstddef>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "format/blocks.h"
#include "kvflash/quantize.h"

namespace kvflash {
namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

const std::byte* at(const void* base, int64_t offset) { return static_cast<const std::byte*>(base) + offset; }

/// The first `dim` values of each of the first `len` rows of KV head h in sequence s, in the original domain.
Status dequantize_rows(const KvView& view, int64_t s, int64_t h, int64_t len, int64_t dim, std::vector<float>& out) {
  const int64_t stored = stored_dim(view.type, dim);
  std::vector<float> row(stored);
  out.resize(len * dim);
  for (int64_t r = 0; r < len; ++r) {
    KVFLASH_RETURN_IF_ERROR(dequantize_row(view.type, at(view.data, kv_row_offset(view, s, h, r)), stored, row.data()));
    std::memcpy(out.data() + r * dim, row.data(), dim * sizeof(float));
  }
  return Status::Ok();
}

/// kv_len and page numbers are data: validate() cannot see them, the oracle (on host memory) can.
Status check_sequence_data(const AttentionProblem& p, int64_t s, int64_t len) {
  if (len < 0 || len > p.shape.n_kv) {
    return invalid_argument("kv_len[" + std::to_string(s) + "] = " + std::to_string(len) + " is outside [0, n_kv = " +
                            std::to_string(p.shape.n_kv) + "]");
  }
  const std::pair<const char*, const KvView*> views[] = {{"k", &p.k}, {"v", &p.v}};
  for (const auto& [name, view] : views) {
    const PageTable& pt = view->paging;
    if (pt.pages == nullptr) continue;
    for (int64_t i = 0; i < (len + pt.page_rows - 1) / pt.page_rows; ++i) {
      const int64_t entry = s * pt.pages_per_seq + i;
      if (pt.pages[entry] < 0) {
        return invalid_argument(std::string(name) + ".paging.pages[" + std::to_string(entry) +
                                "] = " + std::to_string(pt.pages[entry]) + " is negative");
      }
    }
  }
  return Status::Ok();
}

double mask_value(const MaskView& m, int64_t s, int64_t h, int64_t i, int64_t j) {
  if (m.data == nullptr) return 0.0;
  const std::byte* row = at(m.data, s * m.stride.seq + h * m.stride.head + i * m.stride.row);
  if (m.type == MaskType::f16) {
    uint16_t bits;
    std::memcpy(&bits, row + 2 * j, 2);
    return format::half_bits_to_float(bits);
  }
  float value;
  std::memcpy(&value, row + 4 * j, 4);
  return value;
}

/// One query row: scores over the `len` keys of its KV head, softmax with the sink, weighted V sum.
struct RowContext {
  const AttentionProblem& p;
  int64_t s, h, len;
  double scale, slope;
  const std::vector<float>& k;  // [len, d_k]
  const std::vector<float>& v;  // [len, d_v]
};

void attend_row(const RowContext& c, int64_t i, std::vector<double>& scores, std::vector<double>& acc) {
  const AttentionProblem& p = c.p;
  const int64_t d_k = p.shape.d_k, d_v = p.shape.d_v;
  const int64_t position = c.len - p.shape.n_q + i;  // bottom-right alignment
  const auto* q = reinterpret_cast<const float*>(
      at(p.q.data, c.s * p.q.stride.seq + c.h * p.q.stride.head + i * p.q.stride.row));

  double max_score = kNegInf;
  for (int64_t j = 0; j < c.len; ++j) {
    const bool hidden = (p.options.causal && j > position) ||
                        (p.options.window > 0 && position - j >= p.options.window);
    if (hidden) {
      scores[j] = kNegInf;
      continue;
    }
    const float* key = c.k.data() + j * d_k;
    double dot = 0.0;
    for (int64_t e = 0; e < d_k; ++e) dot += static_cast<double>(q[e]) * static_cast<double>(key[e]);
    double score = c.scale * dot;
    if (p.options.softcap > 0) score = p.options.softcap * std::tanh(score / p.options.softcap);
    score += mask_value(p.mask, c.s, c.h, i, j);
    score += -c.slope * static_cast<double>(position - j);
    scores[j] = score;
    if (score > max_score) max_score = score;
  }

  acc.assign(d_v, 0.0);
  if (max_score != kNegInf) {  // a row that sees no key outputs zeros, sink or not
    double denominator = 0.0;
    if (p.options.sinks != nullptr) {
      const double sink = p.options.sinks[c.h];
      if (sink > max_score) max_score = sink;
      denominator += std::exp(sink - max_score);
    }
    for (int64_t j = 0; j < c.len; ++j) {
      if (scores[j] == kNegInf) continue;
      const double weight = std::exp(scores[j] - max_score);
      denominator += weight;
      const float* value = c.v.data() + j * d_v;
      for (int64_t e = 0; e < d_v; ++e) acc[e] += weight * static_cast<double>(value[e]);
    }
    for (double& x : acc) x /= denominator;
  }
  auto* o = reinterpret_cast<float*>(const_cast<std::byte*>(
      at(p.o.data, c.s * p.o.stride.seq + c.h * p.o.stride.head + i * p.o.stride.row)));
  for (int64_t e = 0; e < d_v; ++e) o[e] = static_cast<float>(acc[e]);
}

}  // namespace

Status attend_reference(const AttentionProblem& p) {
  KVFLASH_RETURN_IF_ERROR(validate(p));
  const AttentionShape& shape = p.shape;
  const int64_t group = shape.n_head_q / shape.n_head_kv;
  const double scale = effective_scale(p);
  std::vector<float> k_rows, v_rows;
  std::vector<double> scores, acc;
  for (int64_t s = 0; s < shape.n_seq; ++s) {
    const int64_t len = p.kv_len != nullptr ? p.kv_len[s] : shape.n_kv;
    KVFLASH_RETURN_IF_ERROR(check_sequence_data(p, s, len));
    scores.resize(len);
    for (int64_t hkv = 0; hkv < shape.n_head_kv; ++hkv) {
      KVFLASH_RETURN_IF_ERROR(dequantize_rows(p.k, s, hkv, len, shape.d_k, k_rows));
      KVFLASH_RETURN_IF_ERROR(dequantize_rows(p.v, s, hkv, len, shape.d_v, v_rows));
      for (int64_t h = hkv * group; h < (hkv + 1) * group; ++h) {
        const double slope = alibi_slope<double>(p.options.alibi_max_bias, shape.n_head_q, h);
        const RowContext ctx{p, s, h, len, scale, slope, k_rows, v_rows};
        for (int64_t i = 0; i < shape.n_q; ++i) attend_row(ctx, i, scores, acc);
      }
    }
  }
  return Status::Ok();
}

}  // namespace kvflash
