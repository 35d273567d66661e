// The global operator new / delete of the whole test binary (defined once, here), with the counter of
// allocation_counter.h. The replacements only forward to malloc / aligned_alloc / free and count while a count
// runs, so other tests see ordinary allocation.
#include "support/allocation_counter.h"

#include <atomic>
#include <cstdlib>
#include <new>

namespace {

std::atomic<bool> g_counting{false};
std::atomic<int64_t> g_allocations{0};
std::atomic<int64_t> g_bytes{0};

void note_allocation(std::size_t n) {
  if (!g_counting.load(std::memory_order_relaxed)) return;
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  g_bytes.fetch_add(static_cast<int64_t>(n), std::memory_order_relaxed);
}

}  // namespace

namespace {

void* allocate(std::size_t n) {
  note_allocation(n);
  return std::malloc(n == 0 ? 1 : n);
}

void* allocate_aligned(std::size_t n, std::align_val_t align) {
  note_allocation(n);
  const std::size_t a = static_cast<std::size_t>(align);
  // aligned_alloc wants a nonzero size that is a multiple of the alignment.
  return std::aligned_alloc(a, n == 0 ? a : (n + a - 1) / a * a);
}

void* or_throw(void* p) {
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

}  // namespace

// Every form is replaced (the nothrow ones too, which a sanitizer runtime would otherwise provide) so that each
// new and delete of the binary pairs up. noinline: once GCC inlines malloc and free into a new/delete pair it reports
// the pair as mismatched (-Wmismatched-new-delete), although they match.
[[gnu::noinline]] void* operator new(std::size_t n) { return or_throw(allocate(n)); }
[[gnu::noinline]] void* operator new[](std::size_t n) { return or_throw(allocate(n)); }
[[gnu::noinline]] void* operator new(std::size_t n, std::align_val_t a) { return or_throw(allocate_aligned(n, a)); }
[[gnu::noinline]] void* operator new[](std::size_t n, std::align_val_t a) { return or_throw(allocate_aligned(n, a)); }
[[gnu::noinline]] void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return allocate(n); }
[[gnu::noinline]] void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return allocate(n); }
[[gnu::noinline]] void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return allocate_aligned(n, a);
}
[[gnu::noinline]] void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return allocate_aligned(n, a);
}
[[gnu::noinline]] void operator delete(void* p) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, std::size_t) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete[](void* p) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }

namespace kvflash::testing {

void AllocationCounter::start() {
  g_allocations = 0;
  g_bytes = 0;
  g_counting = true;
}
void AllocationCounter::stop() { g_counting = false; }
int64_t AllocationCounter::allocations() { return g_allocations; }
int64_t AllocationCounter::bytes() { return g_bytes; }

}  // namespace kvflash::testing
