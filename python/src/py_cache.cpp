// kvflash.KvCache: the paged KV cache from Python. append() takes float32 K/V rows and quantizes on write;
// attend() runs one layer's attention for a batch of sequences through their page tables.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <cstring>
#include <string>
#include <vector>

#include "kvflash/kv_cache.h"
#include "py_common.h"

namespace kvflash::python {
namespace {

using FloatIn = nb::ndarray<const float, nb::c_contig, nb::device::cpu>;
using BytesIn = nb::ndarray<const uint8_t, nb::c_contig, nb::device::cpu>;

template <typename Value>
Value value_or_raise(StatusOr<Value> v) {
  if (!v.ok()) raise(v.status());
  return std::move(*v);
}

/// Raises unless `a` has exactly `want` as its shape; names the argument and the layout.
void check_shape(const FloatIn& a, const char* name, const std::vector<int64_t>& want, const char* layout) {
  std::vector<int64_t> got(a.shape_ptr(), a.shape_ptr() + a.ndim());
  if (got != want) {
    raise(invalid_argument(std::string(name) + " has shape " + shape_string(got) + ", expected " + layout + " = " +
                           shape_string(want)));
  }
}

class PyKvCache {
 public:
  PyKvCache(int64_t n_layers, int64_t n_head_kv, int64_t d_k, int64_t d_v, const std::string& ktype,
            const std::string& vtype, int64_t page_rows, int64_t n_pages, int64_t capacity_tokens,
            int64_t max_sequences, int64_t max_seq_tokens)
      : cache_(make(n_layers, n_head_kv, d_k, d_v, ktype, vtype, page_rows, n_pages, capacity_tokens, max_sequences,
                    max_seq_tokens)) {}

  nb::dict config() const {
    const KvCacheConfig& c = cache_.config();
    nb::dict d;
    d["n_layers"] = c.n_layers;
    d["n_head_kv"] = c.n_head_kv;
    d["d_k"] = c.d_k;
    d["d_v"] = c.d_v;
    d["ktype"] = std::string(kv_traits(c.k_type).name);
    d["vtype"] = std::string(kv_traits(c.v_type).name);
    d["page_rows"] = c.page_rows;
    d["n_pages"] = c.n_pages;
    d["capacity_tokens"] = c.capacity_tokens;
    d["max_sequences"] = c.max_sequences;
    d["max_seq_tokens"] = c.max_seq_tokens;
    return d;
  }

  SeqId add_sequence() { return value_or_raise(cache_.add_sequence()); }
  void remove(SeqId seq) { raise_if_error(cache_.remove(seq)); }
  SeqId fork(SeqId seq) { return value_or_raise(cache_.fork(seq)); }
  void truncate(SeqId seq, int64_t n_tokens) { raise_if_error(cache_.truncate(seq, n_tokens)); }
  int64_t length(SeqId seq) const { return value_or_raise(cache_.length(seq)); }

  /// k [n_layers, n_tokens, n_head_kv, d_k], v [n_layers, n_tokens, n_head_kv, d_v]; returns the first position.
  int64_t append(SeqId seq, FloatIn k, FloatIn v) {
    const KvCacheConfig& c = cache_.config();
    if (k.ndim() != 4) {
      raise(invalid_argument("k has " + std::to_string(k.ndim()) +
                             " dimensions; append takes k [n_layers, n_tokens, n_head_kv, d_k]"));
    }
    const int64_t n_tokens = k.shape_ptr()[1];
    check_shape(k, "k", {c.n_layers, n_tokens, c.n_head_kv, c.d_k}, "[n_layers, n_tokens, n_head_kv, d_k]");
    check_shape(v, "v", {c.n_layers, n_tokens, c.n_head_kv, c.d_v}, "[n_layers, n_tokens, n_head_kv, d_v]");
    const int64_t first = length(seq);
    Status s;
    {
      nb::gil_scoped_release unlocked;
      s = cache_.append(seq, {k.data(), k.size()}, {v.data(), v.size()}, n_tokens);
    }
    raise_if_error(s);
    return first;
  }

  nb::ndarray<nb::numpy, uint8_t> row(SeqId seq, int64_t layer, int64_t pos, int64_t head, bool is_v) const {
    auto bytes = value_or_raise(is_v ? cache_.v_row(seq, layer, pos, head) : cache_.k_row(seq, layer, pos, head));
    auto out = new_array<uint8_t>({static_cast<int64_t>(bytes.size())});
    std::memcpy(out.data, bytes.data(), bytes.size());
    return out.release();
  }

  nb::bytes checkpoint(SeqId seq) const {
    const auto data = value_or_raise(cache_.checkpoint(seq));
    return nb::bytes(reinterpret_cast<const char*>(data.data()), data.size());
  }

  SeqId restore(BytesIn data) {
    return value_or_raise(
        cache_.restore(std::span<const std::byte>(reinterpret_cast<const std::byte*>(data.data()), data.size())));
  }

  void checkpoint_to_file(SeqId seq, const std::string& path) const {
    raise_if_error(cache_.checkpoint_to_file(seq, path));
  }
  SeqId restore_from_file(const std::string& path) { return value_or_raise(cache_.restore_from_file(path)); }

  /// q [len(seqs), n_head_q, n_q, d_k] over layer `layer` of the sequences; returns [len(seqs), n_head_q, n_q, d_v].
  nb::ndarray<nb::numpy, float> attend(const std::vector<SeqId>& seqs, FloatIn q, int64_t layer, bool causal,
                                       double scale, double softcap, double alibi, std::optional<FloatIn> sinks,
                                       int64_t window, const std::string& backend_text) const {
    const KvCacheConfig& c = cache_.config();
    const BackendKind backend = backend_or_raise(backend_text);
    if (seqs.empty()) raise(invalid_argument("seqs is empty: attend over at least one sequence"));
    if (q.ndim() != 4) {
      raise(invalid_argument("q has " + std::to_string(q.ndim()) +
                             " dimensions; KvCache.attend takes q [len(seqs), n_head_q, n_q, d_k]"));
    }
    const int64_t n_seq = static_cast<int64_t>(seqs.size()), n_head_q = q.shape_ptr()[1], n_q = q.shape_ptr()[2];
    check_shape(q, "q", {n_seq, n_head_q, n_q, c.d_k}, "[len(seqs), n_head_q, n_q, d_k]");
    if (sinks) check_shape(*sinks, "sinks", {n_head_q}, "[n_head_q]");

    const int64_t pages_per_seq = cache_.max_pages_per_seq();
    std::vector<int32_t> table(static_cast<size_t>(n_seq * pages_per_seq)), kv_len(seqs.size());
    const int64_t n_kv = value_or_raise(cache_.fill_batch(seqs, pages_per_seq, table, kv_len));
    AttentionProblem p;
    p.shape = {.n_seq = n_seq, .n_q = n_q, .n_kv = n_kv, .n_head_q = n_head_q, .n_head_kv = c.n_head_kv,
               .d_k = c.d_k, .d_v = c.d_v};
    p.k = value_or_raise(cache_.k_view(layer, table.data(), pages_per_seq));
    p.v = value_or_raise(cache_.v_view(layer, table.data(), pages_per_seq));
    p.kv_len = kv_len.data();
    const int64_t q_row = c.d_k * 4, o_row = c.d_v * 4;
    p.q = {q.data(), {n_head_q * n_q * q_row, n_q * q_row, q_row}};
    auto out = new_array<float>({n_seq, n_head_q, n_q, c.d_v});
    p.o = {out.data, {n_head_q * n_q * o_row, n_q * o_row, o_row}};
    p.options = {.scale = scale, .causal = causal, .window = window, .alibi_max_bias = alibi, .softcap = softcap,
                 .sinks = sinks ? sinks->data() : nullptr};
    Status s;
    {
      nb::gil_scoped_release unlocked;
      s = validate(p);
      if (s.ok()) s = run_backend(backend, p);
    }
    raise_if_error(s);
    return out.release();
  }

  int64_t pages_free() const { return cache_.pages_free(); }
  int64_t pages_total() const { return cache_.pages_total(); }
  int64_t sequences_free() const { return cache_.sequences_free(); }
  int64_t bytes() const { return cache_.bytes(); }
  const KvCache& cache() const { return cache_; }

 private:
  static KvCache make(int64_t n_layers, int64_t n_head_kv, int64_t d_k, int64_t d_v, const std::string& ktype,
                      const std::string& vtype, int64_t page_rows, int64_t n_pages, int64_t capacity_tokens,
                      int64_t max_sequences, int64_t max_seq_tokens) {
    KvCacheConfig c;
    c.n_layers = n_layers;
    c.n_head_kv = n_head_kv;
    c.d_k = d_k;
    c.d_v = d_v;
    c.k_type = type_or_raise(ktype);
    c.v_type = type_or_raise(vtype);
    c.page_rows = page_rows;
    c.n_pages = n_pages;
    c.capacity_tokens = capacity_tokens;
    c.max_sequences = max_sequences;
    c.max_seq_tokens = max_seq_tokens;
    return value_or_raise(KvCache::create(c));
  }

  KvCache cache_;
};

}  // namespace

void register_cache(nb::module_& m) {
  using namespace nb::literals;
  nb::class_<PyKvCache>(m, "KvCache")
      .def(nb::init<int64_t, int64_t, int64_t, int64_t, const std::string&, const std::string&, int64_t, int64_t,
                    int64_t, int64_t, int64_t>(),
           "n_layers"_a, "n_head_kv"_a, "d_k"_a, "d_v"_a, "ktype"_a, "vtype"_a, "page_rows"_a, "n_pages"_a,
           "capacity_tokens"_a, "max_sequences"_a, "max_seq_tokens"_a)
      .def_prop_ro("config", &PyKvCache::config)
      .def("add_sequence", &PyKvCache::add_sequence)
      .def("remove", &PyKvCache::remove, "seq"_a)
      .def("fork", &PyKvCache::fork, "seq"_a)
      .def("truncate", &PyKvCache::truncate, "seq"_a, "n_tokens"_a)
      .def("length", &PyKvCache::length, "seq"_a)
      .def("append", &PyKvCache::append, "seq"_a, "k"_a, "v"_a)
      .def("row", &PyKvCache::row, "seq"_a, "layer"_a, "pos"_a, "head"_a, "is_v"_a)
      .def("checkpoint", &PyKvCache::checkpoint, "seq"_a)
      .def("restore", &PyKvCache::restore, "data"_a)
      .def("checkpoint_to_file", &PyKvCache::checkpoint_to_file, "seq"_a, "path"_a)
      .def("restore_from_file", &PyKvCache::restore_from_file, "path"_a)
      .def("attend", &PyKvCache::attend, "seqs"_a, "q"_a, "layer"_a, "causal"_a, "scale"_a, "softcap"_a, "alibi"_a,
           "sinks"_a.none(), "window"_a, "backend"_a)
      .def_prop_ro("pages_free", &PyKvCache::pages_free)
      .def_prop_ro("pages_total", &PyKvCache::pages_total)
      .def_prop_ro("sequences_free", &PyKvCache::sequences_free)
      .def_prop_ro("bytes", &PyKvCache::bytes);
}

}  // namespace kvflash::python
