// validate(): one test per rule (the accepted edge, the rejected case, a message naming the field and its value),
// and the real layouts a KV cache has (contiguous, GGML's interleaved heads, padded views, pages, MLA) accepted.
//
// Every pointer here is a fake, never-mapped address: validate() must not read through any of them.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "kvflash/attention_problem.h"

namespace kvflash {
namespace {

constexpr uintptr_t kFakeBase = uintptr_t{0x7f12'3400'0000};

template <typename T>
T* fake(uintptr_t offset = 0) {
  return reinterpret_cast<T*>(kFakeBase + offset);
}

/// Dense [seq, head, row] strides for every view of p, from its shape and types.
void set_contiguous(AttentionProblem& p) {
  const AttentionShape& s = p.shape;
  const int64_t k_row = head_row_bytes(p.k.type, s.d_k), v_row = head_row_bytes(p.v.type, s.d_v);
  p.q.stride = {s.n_head_q * s.n_q * s.d_k * 4, s.n_q * s.d_k * 4, s.d_k * 4};
  p.o.stride = {s.n_head_q * s.n_q * s.d_v * 4, s.n_q * s.d_v * 4, s.d_v * 4};
  p.k.stride = {s.n_head_kv * s.n_kv * k_row, s.n_kv * k_row, k_row};
  p.v.stride = {s.n_head_kv * s.n_kv * v_row, s.n_kv * v_row, v_row};
}

/// A valid problem: q8_0 K (d_k 64, rows of 68 bytes), f16 V (d_v 32), GQA 4, two sequences.
AttentionProblem valid_problem() {
  AttentionProblem p;
  p.shape = {.n_seq = 2, .n_q = 3, .n_kv = 10, .n_head_q = 8, .n_head_kv = 2, .d_k = 64, .d_v = 32};
  p.k.type = KvType::q8_0;
  p.v.type = KvType::f16;
  p.q.data = fake<const float>(0x000000);
  p.k.data = fake<const void>(0x100000);
  p.v.data = fake<const void>(0x200000);
  p.o.data = fake<float>(0x300000);
  set_contiguous(p);
  return p;
}

void expect_ok(const AttentionProblem& p) {
  const Status st = validate(p);
  EXPECT_TRUE(st.ok()) << st.message() << "\n  problem: " << describe(p);
}

/// Rejected as invalid_argument, with every one of `parts` in the message.
void expect_rejected(const AttentionProblem& p, const std::vector<std::string>& parts) {
  const Status st = validate(p);
  ASSERT_FALSE(st.ok()) << "accepted: " << describe(p);
  EXPECT_EQ(st.code(), StatusCode::invalid_argument) << st.message();
  for (const std::string& part : parts) EXPECT_NE(st.message().find(part), std::string::npos) << st.message();
}

TEST(Validate, AcceptsTheBaseProblemAndDescribesIt) {
  const AttentionProblem p = valid_problem();
  expect_ok(p);
  const std::string d = describe(p);
  for (const char* part : {"n_seq=2", "n_q=3", "n_kv=10", "n_head_q=8", "n_head_kv=2", "d_k=64", "d_v=32",
                           "k=q8_0", "v=f16", "mask=none", "causal=0"}) {
    EXPECT_NE(d.find(part), std::string::npos) << part << " missing from: " << d;
  }
}

TEST(Validate, DescribePrintsOutOfRangeTypesWithoutIndexingPastTheTable) {
  AttentionProblem p = valid_problem();
  p.k.type = static_cast<KvType>(200);
  EXPECT_NE(describe(p).find("KvType(200)"), std::string::npos) << describe(p);
}

TEST(Validate, SequenceAndQueryCountsArePositive) {
  AttentionProblem p = valid_problem();
  p.shape.n_seq = 1;
  set_contiguous(p);
  expect_ok(p);
  p.shape.n_seq = 0;
  expect_rejected(p, {"n_seq = 0"});
  p = valid_problem();
  p.shape.n_q = 1;
  set_contiguous(p);
  expect_ok(p);
  p.shape.n_q = 0;
  expect_rejected(p, {"n_q = 0"});
  p.shape.n_q = -4;
  expect_rejected(p, {"n_q = -4"});
}

TEST(Validate, AnEmptyCacheIsLegalAndNeedsNoKvPointers) {
  AttentionProblem p = valid_problem();
  p.shape.n_kv = 0;
  p.k.data = nullptr;
  p.v.data = nullptr;
  set_contiguous(p);
  expect_ok(p);
  p.shape.n_kv = -1;
  expect_rejected(p, {"n_kv = -1"});
}

TEST(Validate, KvHeadsDivideQueryHeads) {
  AttentionProblem p = valid_problem();
  p.shape.n_head_q = 32;
  p.shape.n_head_kv = 3;
  set_contiguous(p);
  expect_rejected(p, {"n_head_q = 32 is not a multiple of n_head_kv = 3"});
  p.shape.n_head_q = 27;  // ratio 9, not a power of two
  set_contiguous(p);
  expect_ok(p);
  p.shape.n_head_kv = 0;
  expect_rejected(p, {"n_head_kv = 0"});
  p.shape.n_head_kv = 1;
  p.shape.n_head_q = 0;
  expect_rejected(p, {"n_head_q = 0"});
}

TEST(Validate, HeadDimsLieInOneToMaxHeadDim) {
  AttentionProblem p = valid_problem();
  p.shape.d_k = kMaxHeadDim;
  p.shape.d_v = kMaxHeadDim;
  set_contiguous(p);
  expect_ok(p);
  p.shape.d_k = kMaxHeadDim + 32;
  set_contiguous(p);
  expect_rejected(p, {"d_k = 1056"});
  p = valid_problem();
  p.shape.d_v = 0;
  expect_rejected(p, {"d_v = 0"});
  p.v.type = KvType::f32;
  p.shape.d_v = 1;  // plain floats: any dim
  set_contiguous(p);
  expect_ok(p);
}

TEST(Validate, HeadDimsAreWholeBlocksExceptForTurbo) {
  AttentionProblem p = valid_problem();
  p.shape.d_k = 100;
  set_contiguous(p);
  expect_rejected(p, {"d_k = 100 is not a multiple of q8_0's block size 32"});
  p = valid_problem();
  p.v.type = KvType::q4_1;
  p.shape.d_v = 48;
  set_contiguous(p);
  expect_rejected(p, {"d_v = 48 is not a multiple of q4_1's block size 32"});
  p.shape.d_v = 96;
  set_contiguous(p);
  expect_ok(p);
  // Turbo rows are zero-padded to 128-value groups: any dim, strides from the padded row.
  p.k.type = KvType::turbo3;
  p.shape.d_k = 100;
  set_contiguous(p);
  EXPECT_EQ(p.k.stride.row, 50);
  expect_ok(p);
}

TEST(Validate, UnknownEnumValuesAreRejected) {
  AttentionProblem p = valid_problem();
  p.k.type = static_cast<KvType>(42);
  expect_rejected(p, {"k.type = 42"});
  p = valid_problem();
  p.v.type = static_cast<KvType>(kKvTypeCount);
  expect_rejected(p, {"v.type = 11"});
  p = valid_problem();
  p.mask.data = fake<const void>(0x400000);
  p.mask.type = static_cast<MaskType>(7);
  p.mask.stride = {0, 0, p.shape.n_kv * 4};
  expect_rejected(p, {"mask.type = 7"});
}

TEST(Validate, DataPointersAreNonNullForNonEmptyTensors) {
  AttentionProblem p = valid_problem();
  p.q.data = nullptr;
  expect_rejected(p, {"q.data is null"});
  p = valid_problem();
  p.o.data = nullptr;
  expect_rejected(p, {"o.data is null"});
  p = valid_problem();
  p.k.data = nullptr;
  expect_rejected(p, {"k.data is null"});
  p = valid_problem();
  p.v.data = nullptr;
  expect_rejected(p, {"v.data is null"});
}

TEST(Validate, PointersAreAlignedToWhatReadersLoad) {
  AttentionProblem p = valid_problem();
  p.q.data = fake<const float>(2);
  expect_rejected(p, {"q.data = 0x7f1234000002 is not aligned to 4 bytes"});
  p = valid_problem();
  p.k.data = fake<const void>(0x100000 + 34);  // one q8_0 block in: fine
  expect_ok(p);
  p.k.data = fake<const void>(0x100000 + 1);
  expect_rejected(p, {"k.data", "aligned to 2"});
  p = valid_problem();
  p.options.sinks = fake<const float>(0x500002);
  expect_rejected(p, {"options.sinks"});
  p = valid_problem();
  p.kv_len = fake<const int32_t>(0x600001);
  expect_rejected(p, {"kv_len"});
}

TEST(Validate, KvStridesAreNonNegativeWholeBlocks) {
  AttentionProblem p = valid_problem();
  p.k.stride.row = 130;
  expect_rejected(p, {"k.stride.row = 130 is not a multiple of q8_0's block bytes 34"});
  p = valid_problem();
  p.v.stride.head = 641;
  expect_rejected(p, {"v.stride.head = 641 is not a multiple of f16's element bytes 2"});
  p = valid_problem();
  p.k.stride.seq = -p.k.stride.seq;
  expect_rejected(p, {"k.stride.seq = -1360 is negative"});
  p = valid_problem();
  p.k.stride.row = 68 + 34;  // one block of padding after each row: fine
  p.k.stride.head = 10 * 102;
  p.k.stride.seq = 2 * 1020;
  expect_ok(p);
}

TEST(Validate, KvRowsMayNotOverlap) {
  AttentionProblem p = valid_problem();
  p.k.stride.row = 34;  // half a 68-byte row
  expect_rejected(p, {"k.stride.row = 34", "68", "overlap"});
  p = valid_problem();
  p.k.stride.head = p.k.stride.row;  // two heads on the same rows
  expect_rejected(p, {"k.stride.head = 68", "overlap"});
  p = valid_problem();
  p.v.stride.seq = 0;  // sharing rows between sequences is what page tables are for
  expect_rejected(p, {"v.stride.seq = 0", "overlap"});
  // One row per head: its row stride is never used, so anything (0 included) is fine.
  p = valid_problem();
  p.shape.n_kv = 1;
  set_contiguous(p);
  p.k.stride.row = 0;
  expect_ok(p);
}

TEST(Validate, RealKvLayoutsAreAccepted) {
  // GGML's [seq, row, head]: heads interleaved inside a token.
  AttentionProblem p = valid_problem();
  p.k.stride = {p.shape.n_kv * 2 * 68, 68, 2 * 68};
  p.v.stride = {p.shape.n_kv * 2 * 64, 64, 2 * 64};
  expect_ok(p);
  // A view of a larger cache (capacity 4096 rows), padding after rows, heads and sequences.
  p.k.stride = {2 * (4096 * 102 + 34) + 68, 4096 * 102 + 34, 102};
  p.v.stride = {2 * 4096 * 64, 4096 * 64, 64};
  expect_ok(p);
  // Heads outermost: [head, seq, row].
  p.k.stride = {10 * 68, 2 * 10 * 68, 68};
  expect_ok(p);
  // MLA (576/512): V is a view of K's first 512 values.
  p = valid_problem();
  p.shape.d_k = 576;
  p.shape.d_v = 512;
  p.v.type = p.k.type;
  set_contiguous(p);
  p.v.data = p.k.data;
  p.v.stride = p.k.stride;
  expect_ok(p);
}

TEST(Validate, PagedLayoutsAreAcceptedAndPagesMayNotOverlap) {
  AttentionProblem p = valid_problem();  // n_kv 10, two KV heads, q8_0 K rows of 68 bytes
  const PageTable pages{fake<const int32_t>(0x700000), /*pages_per_seq=*/3, /*page_rows=*/4, /*page_bytes=*/0};
  for (bool row_major : {true, false}) {
    p.k.paging = pages;
    p.k.stride = row_major ? Strides{0, 68, 2 * 68} : Strides{0, 4 * 68, 68};
    p.k.paging.page_bytes = 2 * 4 * 68;
    expect_ok(p);
    p.k.stride.seq = 12345;  // unused when paged
    expect_ok(p);
    p.k.paging.page_bytes = 2 * 4 * 68 - 34;
    expect_rejected(p, {"k.paging.page_bytes = 510", "544", "overlap"});
  }
  p.k.paging.page_bytes = 2 * 4 * 68;
  p.k.paging.page_rows = 0;
  expect_rejected(p, {"k.paging.page_rows = 0"});
  p.k.paging.page_rows = 3;  // 3 pages of 3 rows < 10 keys
  expect_rejected(p, {"k.paging.pages_per_seq * k.paging.page_rows = 3 * 3 = 9 is less than n_kv = 10"});
  p.k.paging.page_rows = 4;
  p.k.paging.page_bytes = -544;
  expect_rejected(p, {"k.paging.page_bytes = -544 is negative"});
  p.k.paging.page_bytes = 550;
  expect_rejected(p, {"k.paging.page_bytes = 550 is not a multiple of q8_0's block bytes 34"});
  p.k.paging.page_bytes = 34 * (int64_t{1} << 35);  // page 2^31 - 1 would start past 2^71 bytes
  expect_rejected(p, {"k.paging.page_bytes = 1168231104512 is too large"});
  p.k.paging.page_bytes = 544;
  p.k.paging.pages_per_seq = -1;
  expect_rejected(p, {"k.paging.pages_per_seq = -1"});
  p.k.paging.pages = fake<const int32_t>(0x700002);
  p.k.paging.pages_per_seq = 3;
  expect_rejected(p, {"k.paging.pages"});
}

TEST(Validate, QueryAndOutputStridesAreFloatMultiplesAndOutputRowsAreDisjoint) {
  AttentionProblem p = valid_problem();
  p.q.stride.row = 258;
  expect_rejected(p, {"q.stride.row = 258 is not a multiple of the float size 4"});
  p = valid_problem();
  p.o.stride.head = -128;
  expect_rejected(p, {"o.stride.head = -128 is negative"});
  // Q is read-only: broadcasting one query over heads is legal.
  p = valid_problem();
  p.q.stride.head = 0;
  expect_ok(p);
  // O is written: two rows on the same bytes are not.
  p = valid_problem();
  p.o.stride.row = 64;  // d_v = 32 floats = 128 bytes
  expect_rejected(p, {"o.stride.row = 64", "128", "overlap"});
  p = valid_problem();
  p.o.stride.head = 0;
  expect_rejected(p, {"o.stride.head = 0", "overlap"});
}

TEST(Validate, MaskStridesAreNonNegativeElementMultiplesAndMayBroadcast) {
  AttentionProblem p = valid_problem();
  p.mask.data = fake<const void>(0x400000);
  p.mask.type = MaskType::f16;
  p.mask.stride = {0, 0, 20};  // one [n_q, n_kv] mask broadcast over sequences and heads
  expect_ok(p);
  p.mask.stride.row = 21;
  expect_rejected(p, {"mask.stride.row = 21 is not a multiple of f16's size 2"});
  p.mask.stride.row = 20;
  p.mask.stride.head = -20;
  expect_rejected(p, {"mask.stride.head = -20 is negative"});
  p.mask.stride.head = 0;
  p.mask.type = MaskType::f32;
  p.mask.stride.row = 42;
  expect_rejected(p, {"mask.stride.row = 42 is not a multiple of f32's size 4"});
  p.mask.stride.row = 40;
  p.mask.data = fake<const void>(0x400002);
  expect_rejected(p, {"mask.data", "aligned to 4"});
}

TEST(Validate, OptionsAreFiniteAndInRange) {
  AttentionProblem p = valid_problem();
  p.options.scale = -0.25;  // legal math: flips the scores
  expect_ok(p);
  p.options.scale = std::numeric_limits<double>::infinity();
  expect_rejected(p, {"options.scale = inf"});
  p.options.scale = std::nan("");
  expect_rejected(p, {"options.scale = nan"});
  p = valid_problem();
  p.options.softcap = 0.0;
  expect_ok(p);
  p.options.softcap = -1.5;
  expect_rejected(p, {"options.softcap = -1.5"});
  p.options.softcap = std::numeric_limits<double>::infinity();
  expect_rejected(p, {"options.softcap = inf"});
  p = valid_problem();
  p.options.alibi_max_bias = 8.0;
  expect_ok(p);
  p.options.alibi_max_bias = -0.5;
  expect_rejected(p, {"options.alibi_max_bias = -0.5"});
  p.options.alibi_max_bias = std::nan("");
  expect_rejected(p, {"options.alibi_max_bias = nan"});
  p = valid_problem();
  p.options.window = 1;  // each row sees only its own position
  expect_ok(p);
  p.options.window = -1;
  expect_rejected(p, {"options.window = -1"});
}

TEST(Validate, SizeProductsThatOverflowInt64NameTheirFields) {
  AttentionProblem p = valid_problem();
  p.shape.n_seq = int64_t{1} << 30;
  p.shape.n_q = int64_t{1} << 20;
  p.shape.n_head_q = 1 << 10;
  p.shape.n_head_kv = 1;
  expect_rejected(p, {"overflows int64", "n_seq * n_head_q * n_q * d_k", "n_seq = 1073741824"});
  p = valid_problem();
  p.shape.n_kv = int64_t{1} << 60;
  expect_rejected(p, {"overflows int64", "n_kv = 1152921504606846976"});
  // Element counts fit, byte extents do not.
  p = valid_problem();
  p.shape.n_kv = int64_t{1} << 40;
  p.k.stride.row = 34 * (int64_t{1} << 30);
  expect_rejected(p, {"k spans more than int64 bytes", "(n_kv - 1) * k.stride.row"});
}

}  // namespace
}  // namespace kvflash
