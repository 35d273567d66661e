#include "support/float64_attention.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "kvflash/quantize.h"

namespace kvflash::testing {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

const std::byte* bytes_at(const void* base, int64_t offset) { return static_cast<const std::byte*>(base) + offset; }

int64_t kv_row_address(const KvView& v, int64_t seq, int64_t head, int64_t row) {
  if (v.paging.pages == nullptr) return seq * v.stride.seq + head * v.stride.head + row * v.stride.row;
  const int64_t slot = row / v.paging.page_rows;
  const int64_t within = row - slot * v.paging.page_rows;
  const int64_t page = v.paging.pages[seq * v.paging.pages_per_seq + slot];
  return page * v.paging.page_bytes + within * v.stride.row + head * v.stride.head;
}

/// Dense [n_seq][n_head_kv][len][dim] values of K or V (rows past kv_len left at 0: never read).
std::vector<double> gather_kv(const AttentionProblem& p, const KvView& v, int64_t dim, const std::vector<int64_t>& len) {
  const AttentionShape& s = p.shape;
  const int64_t stored = stored_dim(v.type, dim);
  std::vector<double> dense(s.n_seq * s.n_head_kv * s.n_kv * dim, 0.0);
  std::vector<float> row(stored);
  for (int64_t seq = 0; seq < s.n_seq; ++seq)
    for (int64_t h = 0; h < s.n_head_kv; ++h)
      for (int64_t r = 0; r < len[seq]; ++r) {
        const Status st = dequantize_row(v.type, bytes_at(v.data, kv_row_address(v, seq, h, r)), stored, row.data());
        EXPECT_TRUE(st.ok()) << st.message();
        std::copy(row.begin(), row.begin() + dim, dense.begin() + ((seq * s.n_head_kv + h) * s.n_kv + r) * dim);
      }
  return dense;
}

/// Dense [n_seq][n_head_q][n_q][d_k] queries: the float64 ones, or the problem's float32 ones widened.
std::vector<double> gather_q(const AttentionProblem& p, const double* q64) {
  const AttentionShape& s = p.shape;
  const int64_t count = s.n_seq * s.n_head_q * s.n_q * s.d_k;
  if (q64 != nullptr) return std::vector<double>(q64, q64 + count);
  std::vector<double> dense(count);
  for (int64_t seq = 0; seq < s.n_seq; ++seq)
    for (int64_t h = 0; h < s.n_head_q; ++h)
      for (int64_t i = 0; i < s.n_q; ++i) {
        const auto* row = reinterpret_cast<const float*>(
            bytes_at(p.q.data, seq * p.q.stride.seq + h * p.q.stride.head + i * p.q.stride.row));
        std::copy(row, row + s.d_k, dense.begin() + ((seq * s.n_head_q + h) * s.n_q + i) * s.d_k);
      }
  return dense;
}

double ggml_alibi_slope(double max_bias, int64_t n_head, int64_t h) {
  if (max_bias == 0) return 0;
  const double n_head_log2 = std::exp2(std::floor(std::log2(static_cast<double>(n_head))));
  const double m0 = std::pow(2.0, -max_bias / n_head_log2);
  const double m1 = std::pow(2.0, -max_bias / 2.0 / n_head_log2);
  return h < n_head_log2 ? std::pow(m0, h + 1) : std::pow(m1, 2 * (h - n_head_log2) + 1);
}

double mask_at(const AttentionProblem& p, const Float64Inputs& f64, int64_t seq, int64_t h, int64_t i, int64_t j) {
  if (f64.mask != nullptr) {
    const Strides& st = f64.mask_stride;
    double value;
    std::memcpy(&value, bytes_at(f64.mask, seq * st.seq + h * st.head + i * st.row + 8 * j), 8);
    return value;
  }
  const MaskView& m = p.mask;
  if (m.data == nullptr) return 0.0;
  const int64_t offset = seq * m.stride.seq + h * m.stride.head + i * m.stride.row;
  if (m.type == MaskType::f16) {
    uint16_t bits;
    std::memcpy(&bits, bytes_at(m.data, offset + 2 * j), 2);
    return fp16_to_fp32(bits);
  }
  float value;
  std::memcpy(&value, bytes_at(m.data, offset + 4 * j), 4);
  return value;
}

}  // namespace

Float64Attention float64_attention(const AttentionProblem& p, const Float64Inputs& f64) {
  const AttentionShape& s = p.shape;
  const AttentionOptions& opt = p.options;
  std::vector<int64_t> len(s.n_seq, s.n_kv);
  if (p.kv_len != nullptr)
    for (int64_t seq = 0; seq < s.n_seq; ++seq) len[seq] = p.kv_len[seq];
  const std::vector<double> queries = gather_q(p, f64.q);
  const std::vector<double> keys = gather_kv(p, p.k, s.d_k, len);
  const std::vector<double> values = gather_kv(p, p.v, s.d_v, len);
  const double scale = opt.scale != 0 ? opt.scale : 1.0 / std::sqrt(static_cast<double>(s.d_k));
  const int64_t ratio = s.n_head_q / s.n_head_kv;

  Float64Attention e;
  e.out.assign(s.n_seq * s.n_head_q * s.n_q * s.d_v, 0.0);
  e.scale.assign(e.out.size(), 0.0);
  std::vector<double> logits(s.n_kv);
  for (int64_t seq = 0; seq < s.n_seq; ++seq)
    for (int64_t h = 0; h < s.n_head_q; ++h) {
      const int64_t kvh = h / ratio;
      const double slope = ggml_alibi_slope(opt.alibi_max_bias, s.n_head_q, h);
      for (int64_t i = 0; i < s.n_q; ++i) {
        const double* q = &queries[((seq * s.n_head_q + h) * s.n_q + i) * s.d_k];
        const int64_t pos = len[seq] - s.n_q + i;
        double top = -kInf;
        for (int64_t j = 0; j < len[seq]; ++j) {
          const double* key = &keys[((seq * s.n_head_kv + kvh) * s.n_kv + j) * s.d_k];
          double logit = 0;
          for (int64_t c = 0; c < s.d_k; ++c) logit += q[c] * key[c];
          logit *= scale;
          if (opt.softcap != 0) logit = opt.softcap * std::tanh(logit / opt.softcap);
          logit += mask_at(p, f64, seq, h, i, j) - slope * static_cast<double>(pos - j);
          const bool after_query = opt.causal && j > pos;
          const bool outside_window = opt.window != 0 && j <= pos - opt.window;
          logits[j] = (after_query || outside_window) ? -kInf : logit;
          top = std::max(top, logits[j]);
        }
        if (top == -kInf) continue;  // sees no key: zeros
        const bool has_sink = f64.sinks != nullptr || opt.sinks != nullptr;
        const double sink = f64.sinks != nullptr ? f64.sinks[h] : has_sink ? opt.sinks[h] : -kInf;
        const double m = std::max(top, sink);
        double sum = has_sink ? std::exp(sink - m) : 0.0;
        for (int64_t j = 0; j < len[seq]; ++j) sum += std::exp(logits[j] - m);
        const double lse = m + std::log(sum);
        double* out = &e.out[((seq * s.n_head_q + h) * s.n_q + i) * s.d_v];
        double* err_scale = &e.scale[((seq * s.n_head_q + h) * s.n_q + i) * s.d_v];
        for (int64_t j = 0; j < len[seq]; ++j) {
          const double prob = std::exp(logits[j] - lse);
          const double* value = &values[((seq * s.n_head_kv + kvh) * s.n_kv + j) * s.d_v];
          for (int64_t c = 0; c < s.d_v; ++c) {
            out[c] += prob * value[c];
            err_scale[c] += prob * std::abs(value[c]);
          }
        }
      }
    }
  return e;
}

}  // namespace kvflash::testing
