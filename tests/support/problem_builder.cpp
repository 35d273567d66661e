#include "support/problem_builder.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <string>

#include "kvflash/quantize.h"

namespace kvflash::testing {

AlignedBytes::AlignedBytes(size_t bytes) : size_(bytes) {
  // aligned_alloc wants a multiple of the alignment; never 0 so that an empty tensor still has an address.
  const size_t rounded = std::max<size_t>(64, (bytes + 63) / 64 * 64);
  data_.reset(static_cast<std::byte*>(std::aligned_alloc(64, rounded)));
  std::memset(data_.get(), 0, rounded);
}

void AlignedBytes::Free::operator()(std::byte* p) const { std::free(p); }

namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

/// Where the rows of one K or V tensor go.
struct KvPlacement {
  Strides stride;
  PageTable paging;     // pages pointer set later
  int64_t offset = 0;   // bytes from the buffer start to the view's data pointer
  int64_t bytes = 0;    // buffer size
};

/// Shared by K and V: the same page table addresses both pools.
struct PagingPlan {
  int64_t page_rows = 0;
  int64_t pages_per_seq = 0;
  int64_t total_pages = 0;
  bool row_major_in_page = false;  // [row, head] inside a page (GGML order) rather than [head, row]
  std::vector<int32_t> table;
};

/// Where the rows of Q, O or the mask go: [seq, head, row] of `row_bytes`, possibly padded.
struct DenseLayout {
  Strides stride;
  int64_t offset = 0;
  int64_t bytes = 0;
};

}  // namespace

/// Draws one problem; friend of HostProblem so that it fills the private buffers directly.
class ProblemDrawer {
 public:
  explicit ProblemDrawer(const ProblemSpec& spec) : spec_(spec), s_(spec.shape), rng_(spec.seed) {}

  StatusOr<HostProblem> draw() {
    KVFLASH_RETURN_IF_ERROR(check_spec());
    HostProblem hp;
    hp.spec_ = spec_;
    AttentionProblem& p = hp.problem_;
    p.shape = s_;
    p.options.scale = spec_.scale;
    p.options.causal = spec_.causal;
    p.options.window = spec_.window;
    p.options.alibi_max_bias = spec_.alibi_max_bias;
    p.options.softcap = spec_.softcap;

    KVFLASH_RETURN_IF_ERROR(draw_kv_len(hp));
    draw_paging();
    if (!paging_.table.empty()) {
      hp.page_table_ = AlignedBytes(paging_.table.size() * sizeof(int32_t));
      std::memcpy(hp.page_table_.data(), paging_.table.data(), paging_.table.size() * sizeof(int32_t));
    }
    KVFLASH_RETURN_IF_ERROR(draw_kv(hp, /*is_k=*/true));
    if (spec_.v_is_view_of_k) {
      p.v = p.k;
      p.v.type = spec_.vtype;
    } else {
      KVFLASH_RETURN_IF_ERROR(draw_kv(hp, /*is_k=*/false));
    }
    draw_q(hp);
    draw_mask(hp);
    draw_sinks(hp);
    place_o(hp);
    hp.poison_output();
    KVFLASH_RETURN_IF_ERROR(validate(p));
    return hp;
  }

 private:
  Status check_spec() const {
    if (spec_.v_is_view_of_k) {
      if (spec_.vtype != spec_.ktype) {
        return invalid_argument("ProblemSpec: v_is_view_of_k needs vtype = ktype, got ktype " +
                                std::string(kv_traits(spec_.ktype).name) + ", vtype " +
                                std::string(kv_traits(spec_.vtype).name));
      }
      if (s_.d_v > s_.d_k) {
        return invalid_argument("ProblemSpec: v_is_view_of_k needs d_v <= d_k, got d_v = " + std::to_string(s_.d_v) +
                                ", d_k = " + std::to_string(s_.d_k));
      }
    }
    // Shapes the builder cannot even allocate are left to validate() through a tiny stand-in problem.
    AttentionProblem probe;
    probe.shape = s_;
    probe.k.type = spec_.ktype;
    probe.v.type = spec_.vtype;
    probe.options.window = spec_.window;
    probe.options.alibi_max_bias = spec_.alibi_max_bias;
    probe.options.softcap = spec_.softcap;
    probe.options.scale = spec_.scale;
    const Status shape_ok = validate_shape_only(probe);
    if (!shape_ok.ok()) return shape_ok;
    const double elements = static_cast<double>(s_.n_seq) * std::max(s_.n_head_q, s_.n_head_kv) *
                            std::max(s_.n_q, s_.n_kv) * std::max(s_.d_k, s_.d_v);
    if (elements > 1.5e9) {
      return invalid_argument("ProblemSpec: about " + std::to_string(elements) + " values is too large to build");
    }
    return Status::Ok();
  }

  // validate() on a problem whose pointers are unset fails on the first null pointer; anything it reports before
  // that concerns the shape, types or options, which is what the spec controls.
  static Status validate_shape_only(const AttentionProblem& probe) {
    const Status st = validate(probe);
    if (st.ok() || st.message().find(".data is null") != std::string::npos) return Status::Ok();
    return st;
  }

  int64_t uniform(int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng_); }
  float gaussian(float sigma = 1.0f) { return std::normal_distribution<float>(0.0f, sigma)(rng_); }
  bool coin(double p = 0.5) { return std::bernoulli_distribution(p)(rng_); }

  void fill_garbage(AlignedBytes& b) {
    auto* bytes = reinterpret_cast<uint8_t*>(b.data());
    for (size_t i = 0; i < b.size(); ++i) bytes[i] = static_cast<uint8_t>(rng_() >> 56);
  }

  int64_t len_of(int64_t seq) const { return kv_len_.empty() ? s_.n_kv : kv_len_[seq]; }

  Status draw_kv_len(HostProblem& hp) {
    if (!spec_.varlen && spec_.kv_lens.empty()) return Status::Ok();
    kv_len_.resize(s_.n_seq);
    for (int64_t seq = 0; seq < s_.n_seq; ++seq) {
      if (spec_.kv_lens.empty()) {
        kv_len_[seq] = s_.n_kv == 0 ? 0 : static_cast<int32_t>(uniform(1, s_.n_kv));
        continue;
      }
      const int32_t len = spec_.kv_lens[static_cast<size_t>(seq) % spec_.kv_lens.size()];
      if (len < 0 || len > s_.n_kv) {
        return invalid_argument("ProblemSpec: kv_lens holds " + std::to_string(len) + ", outside [0, n_kv = " +
                                std::to_string(s_.n_kv) + "]");
      }
      kv_len_[seq] = len;
    }
    hp.kv_len_ = AlignedBytes(kv_len_.size() * sizeof(int32_t));
    std::memcpy(hp.kv_len_.data(), kv_len_.data(), kv_len_.size() * sizeof(int32_t));
    hp.problem_.kv_len = reinterpret_cast<const int32_t*>(hp.kv_len_.data());
    return Status::Ok();
  }

  void draw_paging() {
    if (spec_.layout != KvLayout::paged) return;
    static constexpr int64_t kPageRows[] = {1, 2, 3, 4, 5, 7, 8, 16, 32};
    paging_.page_rows = spec_.page_rows > 0 ? spec_.page_rows : kPageRows[uniform(0, std::size(kPageRows) - 1)];
    if (s_.n_kv > 0 && spec_.page_rows == 0) paging_.page_rows = std::min(paging_.page_rows, s_.n_kv);
    // One spare page slot per sequence sometimes: a table longer than n_kv needs is legal.
    paging_.pages_per_seq = std::max<int64_t>(1, (s_.n_kv + paging_.page_rows - 1) / paging_.page_rows) + uniform(0, 1);
    const int64_t used = s_.n_seq * paging_.pages_per_seq;
    paging_.total_pages = used + uniform(1, 3);  // spare pages hold garbage
    paging_.row_major_in_page = spec_.page_rows == 0 && coin();
    std::vector<int32_t> perm(paging_.total_pages);
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng_);
    paging_.table.assign(perm.begin(), perm.begin() + used);
  }

  KvPlacement place_kv(KvType type, int64_t dim) {
    const int64_t row = head_row_bytes(type, dim);
    const int64_t unit = kv_traits(type).block_bytes;
    KvPlacement pl;
    switch (spec_.layout) {
      case KvLayout::contiguous:
        pl.stride = {s_.n_head_kv * s_.n_kv * row, s_.n_kv * row, row};
        pl.bytes = s_.n_seq * pl.stride.seq;
        break;
      case KvLayout::strided_padded: {
        // A view of a larger cache: more rows than n_kv, padding after each row, head and sequence.
        const int64_t rows_cap = s_.n_kv + uniform(1, 3);
        if (coin()) {  // [seq, head, row]
          pl.stride.row = row + unit * uniform(1, 3);
          pl.stride.head = rows_cap * pl.stride.row + unit * uniform(1, 3);
          pl.stride.seq = s_.n_head_kv * pl.stride.head + unit * uniform(1, 3);
        } else {  // GGML's [seq, row, head]: heads interleaved within a token
          pl.stride.head = row + unit * uniform(1, 3);
          pl.stride.row = s_.n_head_kv * pl.stride.head + unit * uniform(1, 3);
          pl.stride.seq = rows_cap * pl.stride.row + unit * uniform(1, 3);
        }
        pl.offset = unit * uniform(1, 4);
        pl.bytes = pl.offset + s_.n_seq * pl.stride.seq + unit * uniform(0, 2);
        break;
      }
      case KvLayout::paged: {
        const bool packed = spec_.page_rows > 0;
        const int64_t pad = packed ? 0 : unit * uniform(0, 2);
        if (paging_.row_major_in_page) {
          pl.stride.head = row + pad;
          pl.stride.row = s_.n_head_kv * pl.stride.head;
        } else {
          pl.stride.row = row + pad;
          pl.stride.head = paging_.page_rows * pl.stride.row;
        }
        pl.paging.page_rows = paging_.page_rows;
        pl.paging.pages_per_seq = paging_.pages_per_seq;
        pl.paging.page_bytes =
            (paging_.row_major_in_page ? paging_.page_rows * pl.stride.row : s_.n_head_kv * pl.stride.head) +
            (packed ? 0 : unit * uniform(0, 2));
        pl.bytes = paging_.total_pages * pl.paging.page_bytes;
        break;
      }
    }
    return pl;
  }

  /// Per (kv head, channel): a scale and an offset; a few channels are outliers, as real keys have.
  void draw_channel_profile(int64_t dim, std::vector<float>& scale, std::vector<float>& offset) {
    scale.assign(s_.n_head_kv * dim, 1.0f);
    offset.assign(s_.n_head_kv * dim, 0.0f);
    const int64_t outliers = std::max<int64_t>(1, dim / 32);
    for (int64_t h = 0; h < s_.n_head_kv; ++h) {
      for (int64_t n = 0; n < outliers; ++n) {
        const int64_t c = uniform(0, dim - 1);
        scale[h * dim + c] = static_cast<float>(uniform(8, 20));
        offset[h * dim + c] = gaussian(4.0f);
      }
    }
  }

  Status draw_kv(HostProblem& hp, bool is_k) {
    const KvType type = is_k ? spec_.ktype : spec_.vtype;
    const int64_t dim = is_k ? s_.d_k : s_.d_v;
    const int64_t stored = stored_dim(type, dim);
    const KvPlacement pl = place_kv(type, dim);
    AlignedBytes& buf = is_k ? hp.k_ : hp.v_;
    buf = AlignedBytes(pl.bytes);
    fill_garbage(buf);

    KvView& view = is_k ? hp.problem_.k : hp.problem_.v;
    view.type = type;
    view.data = buf.data() + pl.offset;
    view.stride = pl.stride;
    view.paging = pl.paging;
    if (spec_.layout == KvLayout::paged) view.paging.pages = reinterpret_cast<const int32_t*>(hp.page_table_.data());

    std::vector<float> scale, offset;
    draw_channel_profile(dim, scale, offset);
    std::vector<float> row(stored, 0.0f);  // turbo: zeros past dim, as the fork pads
    for (int64_t s = 0; s < s_.n_seq; ++s) {
      for (int64_t h = 0; h < s_.n_head_kv; ++h) {
        // Rows past kv_len keep their garbage: a reader that ignores kv_len reads it.
        for (int64_t r = 0; r < len_of(s); ++r) {
          for (int64_t c = 0; c < dim; ++c) row[c] = gaussian() * scale[h * dim + c] + offset[h * dim + c];
          auto* dst = const_cast<std::byte*>(static_cast<const std::byte*>(view.data)) + kv_row_offset(view, s, h, r);
          KVFLASH_RETURN_IF_ERROR(quantize_row(type, row.data(), stored, dst));
        }
      }
    }
    return Status::Ok();
  }

  /// [seq, head, row] of `row_bytes` (multiple of `elem`), contiguous or padded in either head/row order.
  DenseLayout place_dense(int64_t n_head, int64_t row_bytes, int64_t elem) {
    DenseLayout l;
    if (spec_.layout != KvLayout::strided_padded) {
      l.stride = {n_head * s_.n_q * row_bytes, s_.n_q * row_bytes, row_bytes};
      l.bytes = s_.n_seq * l.stride.seq;
      return l;
    }
    if (coin()) {
      l.stride.row = row_bytes + elem * uniform(1, 3);
      l.stride.head = s_.n_q * l.stride.row + elem * uniform(1, 3);
      l.stride.seq = n_head * l.stride.head + elem * uniform(0, 3);
    } else {
      l.stride.head = row_bytes + elem * uniform(1, 3);
      l.stride.row = n_head * l.stride.head + elem * uniform(1, 3);
      l.stride.seq = s_.n_q * l.stride.row + elem * uniform(0, 3);
    }
    l.offset = elem * uniform(1, 4);
    l.bytes = l.offset + s_.n_seq * l.stride.seq;
    return l;
  }

  void draw_q(HostProblem& hp) {
    const DenseLayout l = place_dense(s_.n_head_q, s_.d_k * 4, 4);
    hp.q_ = AlignedBytes(l.bytes);
    fill_garbage(hp.q_);
    std::byte* base = hp.q_.data() + l.offset;
    for (int64_t s = 0; s < s_.n_seq; ++s)
      for (int64_t h = 0; h < s_.n_head_q; ++h)
        for (int64_t i = 0; i < s_.n_q; ++i) {
          auto* row = reinterpret_cast<float*>(base + s * l.stride.seq + h * l.stride.head + i * l.stride.row);
          for (int64_t c = 0; c < s_.d_k; ++c) row[c] = gaussian();
        }
    hp.problem_.q = {reinterpret_cast<const float*>(base), l.stride};
  }

  void draw_mask(HostProblem& hp) {
    if (spec_.mask == MaskKind::none) return;
    const bool f16 = spec_.mask == MaskKind::f16;
    const bool broadcast = spec_.mask == MaskKind::f32_broadcast_heads;
    const int64_t elem = f16 ? 2 : 4;
    DenseLayout l = place_dense(broadcast ? 1 : s_.n_head_q, s_.n_kv * elem, elem);
    if (broadcast) l.stride.head = 0;
    hp.mask_ = AlignedBytes(l.bytes);
    fill_garbage(hp.mask_);
    std::byte* base = hp.mask_.data() + l.offset;
    std::vector<float> values(s_.n_kv);
    for (int64_t s = 0; s < s_.n_seq; ++s) {
      const int64_t len = len_of(s);
      for (int64_t h = 0; h < (broadcast ? 1 : s_.n_head_q); ++h) {
        for (int64_t i = 0; i < s_.n_q; ++i) {
          // Keep the key at the row's position visible, so that the mask alone never hides a whole row.
          const int64_t keep = std::clamp<int64_t>(len - s_.n_q + i, 0, std::max<int64_t>(len - 1, 0));
          for (int64_t j = 0; j < s_.n_kv; ++j) {
            if (j >= len) {
              values[j] = kNaN;  // keys past kv_len do not exist; a reader that uses their mask gets NaN
            } else {
              values[j] = (j != keep && coin(0.125)) ? -kInf : gaussian();
            }
          }
          std::byte* row = base + s * l.stride.seq + h * l.stride.head + i * l.stride.row;
          for (int64_t j = 0; j < s_.n_kv; ++j) {
            if (f16) {
              const uint16_t bits = fp32_to_fp16(values[j]);
              std::memcpy(row + 2 * j, &bits, 2);
            } else {
              std::memcpy(row + 4 * j, &values[j], 4);
            }
          }
        }
      }
    }
    hp.problem_.mask = {base, f16 ? MaskType::f16 : MaskType::f32, l.stride};
  }

  void draw_sinks(HostProblem& hp) {
    if (!spec_.sinks) return;
    hp.sinks_ = AlignedBytes(s_.n_head_q * sizeof(float));
    auto* sinks = reinterpret_cast<float*>(hp.sinks_.data());
    for (int64_t h = 0; h < s_.n_head_q; ++h) sinks[h] = gaussian(2.0f);
    hp.problem_.options.sinks = sinks;
  }

  void place_o(HostProblem& hp) {
    const DenseLayout l = place_dense(s_.n_head_q, s_.d_v * 4, 4);
    hp.o_ = AlignedBytes(l.bytes);
    hp.problem_.o = {reinterpret_cast<float*>(hp.o_.data() + l.offset), l.stride};
  }

  const ProblemSpec& spec_;
  const AttentionShape& s_;
  std::mt19937_64 rng_;
  std::vector<int32_t> kv_len_;
  PagingPlan paging_;
};

StatusOr<HostProblem> HostProblem::make(const ProblemSpec& spec) { return ProblemDrawer(spec).draw(); }

void HostProblem::poison_output() {
  auto* values = reinterpret_cast<float*>(o_.data());
  std::fill(values, values + o_.size() / sizeof(float), kNaN);
}

std::span<const float> HostProblem::output() const {
  const AttentionShape& s = problem_.shape;
  gathered_.resize(s.n_seq * s.n_head_q * s.n_q * s.d_v);
  const auto* base = reinterpret_cast<const std::byte*>(problem_.o.data);
  const Strides& st = problem_.o.stride;
  float* out = gathered_.data();
  for (int64_t seq = 0; seq < s.n_seq; ++seq)
    for (int64_t h = 0; h < s.n_head_q; ++h)
      for (int64_t i = 0; i < s.n_q; ++i, out += s.d_v)
        std::memcpy(out, base + seq * st.seq + h * st.head + i * st.row, s.d_v * sizeof(float));
  return gathered_;
}

namespace {
HostProblem::Buffer buffer_of(const AlignedBytes& b) {
  return b.size() == 0 ? HostProblem::Buffer{nullptr, 0} : HostProblem::Buffer{b.data(), b.size()};
}

template <typename T>
T* rebase(const void* old_ptr, const AlignedBytes& old_base, const void* new_base) {
  if (old_ptr == nullptr) return nullptr;
  const auto offset = static_cast<const std::byte*>(old_ptr) - old_base.data();
  return reinterpret_cast<T*>(const_cast<std::byte*>(static_cast<const std::byte*>(new_base)) + offset);
}
}  // namespace

HostProblem::Buffer HostProblem::q() const { return buffer_of(q_); }
HostProblem::Buffer HostProblem::k() const { return buffer_of(k_); }
HostProblem::Buffer HostProblem::v() const { return spec_.v_is_view_of_k ? buffer_of(k_) : buffer_of(v_); }
HostProblem::Buffer HostProblem::mask() const { return buffer_of(mask_); }
HostProblem::Buffer HostProblem::sinks() const { return buffer_of(sinks_); }
HostProblem::Buffer HostProblem::kv_len() const { return buffer_of(kv_len_); }
HostProblem::Buffer HostProblem::page_table() const { return buffer_of(page_table_); }

AttentionProblem HostProblem::rebased(const void* q, const void* k, const void* v, const void* mask,
                                      const float* sinks, const int32_t* kv_len, const int32_t* page_table,
                                      float* o) const {
  AttentionProblem p = problem_;
  p.q.data = rebase<const float>(problem_.q.data, q_, q);
  p.k.data = rebase<const void>(problem_.k.data, k_, k);
  p.v.data = rebase<const void>(problem_.v.data, spec_.v_is_view_of_k ? k_ : v_, v);
  p.mask.data = rebase<const void>(problem_.mask.data, mask_, mask);
  p.options.sinks = rebase<const float>(problem_.options.sinks, sinks_, sinks);
  p.kv_len = rebase<const int32_t>(problem_.kv_len, kv_len_, kv_len);
  p.k.paging.pages = rebase<const int32_t>(problem_.k.paging.pages, page_table_, page_table);
  p.v.paging.pages = rebase<const int32_t>(problem_.v.paging.pages, page_table_, page_table);
  p.o.data = rebase<float>(problem_.o.data, o_, o);
  return p;
}

std::string kv_lens_text(const ProblemSpec& spec) {
  std::string text;
  for (int32_t len : spec.kv_lens) text += (text.empty() ? " lens=" : ",") + std::to_string(len);
  return text;
}

double nmse(std::span<const float> got, std::span<const float> want) {
  constexpr double kInfD = std::numeric_limits<double>::infinity();
  if (got.size() != want.size()) return kInfD;
  double err = 0.0, ref = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double g = got[i], w = want[i];
    if (!std::isfinite(w)) {
      const bool same = std::isnan(w) ? std::isnan(g) : g == w;
      if (!same) return kInfD;
      continue;
    }
    if (!std::isfinite(g)) return kInfD;
    err += (g - w) * (g - w);
    ref += w * w;
  }
  if (ref == 0.0) return err == 0.0 ? 0.0 : kInfD;
  return err / ref;
}

}  // namespace kvflash::testing
