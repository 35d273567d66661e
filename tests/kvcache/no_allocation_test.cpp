// KvCache allocates all its storage in create() (exactly bytes() bytes) and nothing on any success path after.
// Allocations are counted by support/allocation_counter.h (the binary's replaced operator new / delete).
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <vector>

#include "kvcache/cache_test_util.h"
#include "kvflash/kv_cache.h"
#include "support/allocation_counter.h"

namespace kvflash {
namespace {

using testing::AllocationCounter;
using testing::random_rows;

class KvCacheAllocation : public ::testing::TestWithParam<std::pair<KvType, KvType>> {};

TEST_P(KvCacheAllocation, CreateAllocatesExactlyBytesAndLaterCallsAllocateNothing) {
  KvCacheConfig c;
  c.n_layers = 3;
  c.n_head_kv = 2;
  c.d_k = 96;  // turbo K rows go through the zero-padding path
  c.d_v = 64;
  c.k_type = GetParam().first;
  c.v_type = GetParam().second;
  c.page_rows = 8;
  c.n_pages = 40;
  c.max_sequences = 5;

  AllocationCounter::start();
  auto created = KvCache::create(c);
  AllocationCounter::stop();
  ASSERT_TRUE(created.ok()) << created.status().message();
  KvCache& cache = *created;
  EXPECT_EQ(AllocationCounter::bytes(), cache.bytes()) << "bytes() is exactly what create() allocated";

  // Inputs and outputs, all allocated before counting starts.
  const auto prompt = random_rows(c, 21, 1), step = random_rows(c, 3, 2), draft = random_rows(c, 4, 3);
  const int64_t step_k = 3 * c.n_head_kv * c.d_k, step_v = 3 * c.n_head_kv * c.d_v;
  std::vector<std::byte> checkpoint(static_cast<size_t>(1) << 20);
  std::vector<int32_t> table(static_cast<size_t>(3 * cache.max_pages_per_seq()));
  std::vector<int32_t> kv_len(3);
  std::vector<Status> results(32);
  size_t n = 0;

  AllocationCounter::start();
  auto a = cache.add_sequence();
  results[n++] = a.status();
  results[n++] = cache.append(*a, prompt.k, prompt.v, prompt.n_tokens);
  auto b = cache.fork(*a);  // shares 3 pages, the last one partially filled
  results[n++] = b.status();
  results[n++] = cache.append(*b, draft.k, draft.v, draft.n_tokens);  // copies the shared page
  auto first = cache.extend(*a, 3);
  results[n++] = first.status();
  for (int64_t l = 0; l < c.n_layers; ++l) {
    results[n++] = cache.write(*a, l, *first, std::span(step.k).subspan(l * step_k, step_k),
                               std::span(step.v).subspan(l * step_v, step_v), 3);
  }
  results[n++] = cache.truncate(*b, 22);
  auto bytes = cache.checkpoint_bytes(*b);
  results[n++] = bytes.status();
  results[n++] = cache.checkpoint(*b, std::span(checkpoint).first(static_cast<size_t>(*bytes)));
  auto restored = cache.restore(std::span(checkpoint).first(static_cast<size_t>(*bytes)));
  results[n++] = restored.status();
  const SeqId batch[3] = {*a, *b, *restored};
  auto n_kv = cache.fill_batch(batch, cache.max_pages_per_seq(), table, kv_len);
  results[n++] = n_kv.status();
  auto k = cache.k_view(2, table.data(), cache.max_pages_per_seq());
  auto v = cache.v_view(2, table.data(), cache.max_pages_per_seq());
  results[n++] = k.status();
  results[n++] = v.status();
  results[n++] = cache.k_row(*restored, 1, 21, 1).status();
  results[n++] = cache.v_row(*a, 0, 23, 0).status();
  results[n++] = cache.length(*a).status();
  results[n++] = cache.remove(*b);
  results[n++] = cache.remove(*restored);
  AllocationCounter::stop();

  for (size_t i = 0; i < n; ++i) EXPECT_TRUE(results[i].ok()) << "call " << i << ": " << results[i].message();
  EXPECT_EQ(AllocationCounter::allocations(), 0) << AllocationCounter::bytes() << " bytes";
  EXPECT_EQ(*n_kv, 24);
  EXPECT_EQ(kv_len, (std::vector<int32_t>{24, 22, 22}));
}

INSTANTIATE_TEST_SUITE_P(TypePairs, KvCacheAllocation,
                         ::testing::Values(std::pair{KvType::f16, KvType::f16},
                                           std::pair{KvType::turbo3, KvType::q4_0},
                                           std::pair{KvType::q8_0, KvType::turbo4}),
                         [](const auto& info) {
                           return std::string(kv_traits(info.param.first).name) + "_" +
                                  std::string(kv_traits(info.param.second).name);
                         });

}  // namespace
}  // namespace kvflash
