// The StreamGate `kvflash bench --backend cuda` times behind (kvcache/device_transfer.h): events recorded behind a
// closed gate bracket the device's work, not the time the host took to enqueue it; without the gate the same
// events include the host's delay; a gate nobody opens gives up after its timeout and says so.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <thread>

#include "gpu/gpu_harness.h"
#include "kvcache/device_transfer.h"
#include "kvflash/device_memory.h"

namespace kvflash {
namespace {

using kvcache::DeviceEventTimer;
using kvcache::StreamGate;

constexpr auto kHostDelay = std::chrono::milliseconds(20);

struct GateFixture {
  std::unique_ptr<DeviceAllocator> allocator;
  DeviceBuffer buffer;  // what the timed work reads
  std::unique_ptr<StreamGate> gate;
  std::unique_ptr<DeviceEventTimer> timer;

  static void make(GateFixture* f) {
    StatusOr<std::unique_ptr<DeviceAllocator>> a = DeviceAllocator::create(DeviceAllocatorConfig{});
    ASSERT_TRUE(a.ok()) << a.status().message();
    f->allocator = std::move(*a);
    StatusOr<DeviceBuffer> b = DeviceBuffer::allocate(*f->allocator, "test.read", MemoryKind::other, 8 << 20);
    ASSERT_TRUE(b.ok()) << b.status().message();
    f->buffer = std::move(*b);
    StatusOr<StreamGate> g = StreamGate::create();
    ASSERT_TRUE(g.ok()) << g.status().message();
    f->gate = std::make_unique<StreamGate>(std::move(*g));
    StatusOr<DeviceEventTimer> t = DeviceEventTimer::create();
    ASSERT_TRUE(t.ok()) << t.status().message();
    f->timer = std::make_unique<DeviceEventTimer>(std::move(*t));
    // Every kernel runs once in the open before any runs behind a closed gate (lazy module loading).
    ASSERT_TRUE(kvcache::evict_l2(f->buffer).ok());
    ASSERT_TRUE(f->gate->close().ok());
    f->gate->open();
    ASSERT_TRUE(kvcache::synchronize_device().ok());
    ASSERT_FALSE(f->gate->timed_out());
  }

  // Microseconds between two events around a read of the buffer, the host sleeping kHostDelay in between.
  double timed_read_with_host_delay(bool gated) {
    if (gated) {
      EXPECT_TRUE(gate->close().ok());
    }
    EXPECT_TRUE(timer->start().ok());
    std::this_thread::sleep_for(kHostDelay);
    EXPECT_TRUE(kvcache::evict_l2(buffer).ok());
    EXPECT_TRUE(timer->stop().ok());
    if (gated) gate->open();
    StatusOr<double> us = timer->elapsed_us();
    EXPECT_TRUE(us.ok()) << us.status().message();
    return us.ok() ? *us : -1.0;
  }
};

TEST(StreamGate, EventsBehindTheGateMeasureTheDeviceNotTheHostsDelay) {
  KVFLASH_REQUIRE_GPU();
  GateFixture f;
  GateFixture::make(&f);
  if (HasFatalFailure()) return;
  const double delay_us = std::chrono::duration<double, std::micro>(kHostDelay).count();
  const double open_us = f.timed_read_with_host_delay(/*gated=*/false);
  EXPECT_GE(open_us, 0.95 * delay_us) << "without the gate the device waits for the host inside the events";
  const double gated_us = f.timed_read_with_host_delay(/*gated=*/true);
  EXPECT_GT(gated_us, 0.0);
  // An 8 MiB read takes a few microseconds on any GPU this backend supports; a tenth of the delay is far above it.
  EXPECT_LT(gated_us, 0.1 * delay_us) << "the host's delay leaked into the gated events";
  EXPECT_FALSE(f.gate->timed_out());
}

TEST(StreamGate, AGateNobodyOpensGivesUpAndSaysSo) {
  KVFLASH_REQUIRE_GPU();
  GateFixture f;
  GateFixture::make(&f);
  if (HasFatalFailure()) return;
  ASSERT_TRUE(f.gate->close().ok());
  ASSERT_TRUE(kvcache::evict_l2(f.buffer).ok());
  ASSERT_TRUE(kvcache::synchronize_device().ok());  // returns once the gate has given up
  EXPECT_TRUE(f.gate->timed_out());
  // The next close() is a new gate: opened in time, it does not report the old timeout.
  EXPECT_GE(f.timed_read_with_host_delay(/*gated=*/true), 0.0);
  EXPECT_FALSE(f.gate->timed_out());
}

}  // namespace
}  // namespace kvflash
