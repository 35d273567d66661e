// The C device allocator where no GPU is needed: bad arguments are codes whose message names the argument, and a
// machine without a device (or a build without CUDA) gets KVFLASH_ERROR_UNSUPPORTED, never a crash. The device
// half lives in tests/gpu/device_memory_test.cpp.
#include <gtest/gtest.h>

#include <string>

#include "kvflash/backend.h"
#include "kvflash/kvflash.h"

namespace kvflash {
namespace {

std::string last_error() { return kvflash_last_error(); }

TEST(CApiDeviceMemory, WithoutADeviceCreateIsUnsupportedWithAMessage) {
  if (backend_available(BackendKind::cuda)) GTEST_SKIP() << "a CUDA device is present (tests/gpu covers it)";
  for (int strategy : {KVFLASH_DEVICE_ALLOC_STREAM_ORDERED, KVFLASH_DEVICE_ALLOC_VMM}) {
    EXPECT_EQ(kvflash_device_allocator_create(0, strategy, 0), nullptr);
    EXPECT_NE(last_error().find("CUDA"), std::string::npos) << last_error();
  }
}

TEST(CApiDeviceMemory, BadArgumentsAreErrorsNamingTheArgument) {
  EXPECT_EQ(kvflash_device_allocator_create(0, 7, 0), nullptr);
  EXPECT_NE(last_error().find("strategy = 7"), std::string::npos) << last_error();
  EXPECT_EQ(kvflash_device_allocator_create(0, KVFLASH_DEVICE_ALLOC_STREAM_ORDERED, -3), nullptr);
  EXPECT_NE(last_error().find("release_threshold_bytes = -3"), std::string::npos) << last_error();

  void* ptr = nullptr;
  EXPECT_EQ(kvflash_device_alloc(nullptr, "kv", KVFLASH_MEMORY_KV_CACHE, 64, nullptr, &ptr),
            KVFLASH_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(last_error().find("allocator"), std::string::npos) << last_error();
  EXPECT_EQ(kvflash_device_free(nullptr, ptr, nullptr), KVFLASH_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(kvflash_device_allocator_trim(nullptr, 0), KVFLASH_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(kvflash_device_allocator_report(nullptr), nullptr);
  EXPECT_NE(last_error().find("kvflash_device_allocator_report"), std::string::npos) << last_error();
  kvflash_device_allocator_destroy(nullptr);  // ignored, like every destroy
}

}  // namespace
}  // namespace kvflash
