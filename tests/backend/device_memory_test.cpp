// DeviceAllocator and DeviceBuffer where no GPU is needed: config errors name the field, a machine without a device
// (or a build without CUDA) gets `unsupported` rather than a crash, and DeviceBuffer frees exactly once.
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "kvflash/backend.h"
#include "kvflash/device_memory.h"

namespace kvflash {
namespace {

TEST(DeviceAllocatorConfig, NegativeSizesAreRejectedByName) {
  DeviceAllocatorConfig config;
  config.release_threshold_bytes = -1;
  auto a = DeviceAllocator::create(config);
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.status().code(), StatusCode::invalid_argument);
  EXPECT_NE(a.status().message().find("release_threshold_bytes = -1"), std::string::npos) << a.status().message();
  config = {};
  config.vmm_reserve_bytes = -5;
  a = DeviceAllocator::create(config);
  ASSERT_FALSE(a.ok());
  EXPECT_NE(a.status().message().find("vmm_reserve_bytes = -5"), std::string::npos) << a.status().message();
}

TEST(DeviceAllocatorConfig, AnUnknownStrategyIsRejectedByName) {
  DeviceAllocatorConfig config;
  config.strategy = static_cast<DeviceAllocStrategy>(9);
  auto a = DeviceAllocator::create(config);
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.status().code(), StatusCode::invalid_argument);
  EXPECT_NE(a.status().message().find("strategy = 9"), std::string::npos) << a.status().message();
}

TEST(DeviceAllocatorConfig, WithoutADeviceCreateIsUnsupported) {
  if (backend_available(BackendKind::cuda)) GTEST_SKIP() << "a CUDA device is present (tests/gpu covers it)";
  for (DeviceAllocStrategy strategy : {DeviceAllocStrategy::stream_ordered, DeviceAllocStrategy::vmm}) {
    DeviceAllocatorConfig config;
    config.strategy = strategy;
    auto a = DeviceAllocator::create(config);
    ASSERT_FALSE(a.ok());
    EXPECT_EQ(a.status().code(), StatusCode::unsupported);
    EXPECT_NE(a.status().message().find("CUDA"), std::string::npos) << a.status().message();
  }
}

// Host memory behind the interface, to check DeviceBuffer's ownership rules; `budget` bytes at most live.
class FakeAllocator final : public DeviceAllocator {
 public:
  explicit FakeAllocator(int64_t budget = int64_t{1} << 20) : budget_(budget) {}
  StatusOr<void*> allocate(std::string_view bucket, MemoryKind, int64_t bytes, void*) override {
    if (live_bytes() + bytes > budget_) {
      return out_of_memory("fake: bucket '" + std::string(bucket) + "' asked " + std::to_string(bytes));
    }
    void* p = ::operator new(static_cast<size_t>(bytes));
    live_[p] = bytes;
    ++calls_;
    return p;
  }
  Status deallocate(void* ptr, void*) override {
    if (live_.erase(ptr) == 0) return invalid_argument("not ours");
    ::operator delete(ptr);
    ++frees_;
    return Status::Ok();
  }
  Status trim_to(int64_t) override { return Status::Ok(); }
  StatusOr<MemoryReport> report() const override { return MemoryReport{}; }
  DeviceAllocatorStats stats() const override { return {calls_, 0, 0, 0, 0}; }
  void reset_peak() override {}
  DeviceAllocStrategy strategy() const override { return DeviceAllocStrategy::stream_ordered; }
  int64_t frees() const { return frees_; }
  size_t live() const { return live_.size(); }
  int64_t live_bytes() const {
    int64_t sum = 0;
    for (const auto& [ptr, bytes] : live_) sum += bytes;
    return sum;
  }

 private:
  int64_t budget_;
  std::map<void*, int64_t> live_;
  int64_t calls_ = 0, frees_ = 0;
};

TEST(DeviceBuffer, MovesOwnershipAndFreesExactlyOnce) {
  FakeAllocator alloc;
  {
    auto a = DeviceBuffer::allocate(alloc, "kv", MemoryKind::kv_cache, 64);
    ASSERT_TRUE(a.ok());
    void* p = a->data();
    DeviceBuffer b = std::move(*a);
    EXPECT_EQ(b.data(), p);
    EXPECT_EQ(b.bytes(), 64);
    EXPECT_EQ(a->data(), nullptr);
    DeviceBuffer c;
    c = std::move(b);
    EXPECT_EQ(c.data(), p);
    auto d = DeviceBuffer::allocate(alloc, "ws", MemoryKind::workspace, 32);
    ASSERT_TRUE(d.ok());
    c = std::move(*d);  // frees the first allocation, takes the second
    EXPECT_EQ(alloc.frees(), 1);
    EXPECT_EQ(alloc.live(), 1u);
  }
  EXPECT_EQ(alloc.frees(), 2);
  EXPECT_EQ(alloc.live(), 0u);
}

TEST(DeviceBuffer, AFailedAllocationIsTheAllocatorsStatusAndHoldsNothing) {
  FakeAllocator alloc(100);
  auto held = DeviceBuffer::allocate(alloc, "kv", MemoryKind::kv_cache, 64);
  ASSERT_TRUE(held.ok());
  auto refused = DeviceBuffer::allocate(alloc, "workspace", MemoryKind::workspace, 64);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::out_of_memory);
  EXPECT_NE(refused.status().message().find("'workspace' asked 64"), std::string::npos) << refused.status().message();
  EXPECT_EQ(alloc.live(), 1u);
  held->reset();
  EXPECT_EQ(held->data(), nullptr);
  EXPECT_EQ(held->bytes(), 0);
  EXPECT_EQ(alloc.live(), 0u);
  held->reset();  // a second reset frees nothing more
  EXPECT_EQ(alloc.frees(), 1);
}

}  // namespace
}  // namespace kvflash
