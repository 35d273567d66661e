#include "backend/cuda/device_allocator_vmm.h"

#include <cuda.h>
#include <cuda_runtime.h>

#include <map>
#include <mutex>

#include "backend/cuda/allocation_ledger.h"
#include "backend/cuda/cuda_status.h"
#include "backend/cuda/scoped_device.h"

namespace kvflash::cuda {
namespace {

// The driver's VMM entry points, resolved through the runtime: linking libcuda would make every kvflash binary
// fail to load on a machine without a driver (CI builds and runs the tests there).
struct VmmDriver {
  decltype(&::cuMemAddressReserve) address_reserve = nullptr;
  decltype(&::cuMemAddressFree) address_free = nullptr;
  decltype(&::cuMemCreate) create = nullptr;
  decltype(&::cuMemRelease) release = nullptr;
  decltype(&::cuMemMap) map = nullptr;
  decltype(&::cuMemUnmap) unmap = nullptr;
  decltype(&::cuMemSetAccess) set_access = nullptr;
  decltype(&::cuMemGetAllocationGranularity) granularity = nullptr;
  decltype(&::cuGetErrorName) error_name = nullptr;

  static StatusOr<VmmDriver> load() {
    VmmDriver d;
    KVFLASH_RETURN_IF_ERROR(resolve("cuMemAddressReserve", &d.address_reserve));
    KVFLASH_RETURN_IF_ERROR(resolve("cuMemAddressFree", &d.address_free));
    KVFLASH_RETURN_IF_ERROR(resolve("cuMemCreate", &d.create));
    KVFLASH_RETURN_IF_ERROR(resolve("cuMemRelease", &d.release));
    KVFLASH_RETURN_IF_ERROR(resolve("cuMemMap", &d.map));
    KVFLASH_RETURN_IF_ERROR(resolve("cuMemUnmap", &d.unmap));
    KVFLASH_RETURN_IF_ERROR(resolve("cuMemSetAccess", &d.set_access));
    KVFLASH_RETURN_IF_ERROR(resolve("cuMemGetAllocationGranularity", &d.granularity));
    KVFLASH_RETURN_IF_ERROR(resolve("cuGetErrorName", &d.error_name));
    return d;
  }

  Status check(CUresult r, const char* what) const {
    if (r == CUDA_SUCCESS) return Status::Ok();
    const char* name = "unknown";
    if (error_name != nullptr) (void)error_name(r, &name);
    return backend_error(std::string(what) + " failed: " + name);
  }

 private:
  template <typename Fn>
  static Status resolve(const char* symbol, Fn* fn) {
    void* ptr = nullptr;
    cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
    // 12000: the ABI version of these entry points (VMM has been stable since CUDA 10.2).
    const cudaError_t err = cudaGetDriverEntryPointByVersion(symbol, &ptr, 12000, cudaEnableDefault, &found);
    if (err != cudaSuccess || found != cudaDriverEntryPointSuccess || ptr == nullptr) {
      (void)cudaGetLastError();
      return unsupported(std::string("device allocator (vmm): the CUDA driver has no entry point ") + symbol);
    }
    *fn = reinterpret_cast<Fn>(ptr);
    return Status::Ok();
  }
};

int64_t round_up(int64_t v, int64_t to) { return (v + to - 1) / to * to; }

class VmmAllocator final : public DeviceAllocator {
 public:
  static StatusOr<std::unique_ptr<DeviceAllocator>> create(const DeviceAllocatorConfig& config) {
    ScopedDevice guard(config.device);
    KVFLASH_RETURN_IF_ERROR(guard.status());
    KVFLASH_CUDA_RETURN_IF_ERROR(cudaFree(nullptr));  // the primary context must exist for driver calls
    auto driver = VmmDriver::load();
    if (!driver.ok()) return driver.status();
    CUmemAllocationProp prop{};
    prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    prop.location.id = config.device;
    size_t granularity = 0;
    KVFLASH_RETURN_IF_ERROR(driver->check(driver->granularity(&granularity, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM),
                                          "cuMemGetAllocationGranularity"));
    int64_t reserve = config.vmm_reserve_bytes;
    if (reserve == 0) {
      size_t free_now = 0, total = 0;
      KVFLASH_CUDA_RETURN_IF_ERROR(cudaMemGetInfo(&free_now, &total));
      // Twice the device: address space is free, and gaps left by freed chunks must not make a fitting request
      // fail for want of addresses.
      reserve = 2 * static_cast<int64_t>(total);
    }
    reserve = round_up(reserve, static_cast<int64_t>(granularity));
    CUdeviceptr base = 0;
    KVFLASH_RETURN_IF_ERROR(driver->check(
        driver->address_reserve(&base, static_cast<size_t>(reserve), granularity, 0, 0), "cuMemAddressReserve"));
    return std::unique_ptr<DeviceAllocator>(
        new VmmAllocator(config.device, *driver, prop, static_cast<int64_t>(granularity), base, reserve));
  }

  ~VmmAllocator() override {
    ScopedDevice guard(device_);
    (void)cudaDeviceSynchronize();
    for (const auto& [offset, chunk] : chunks_) {
      (void)driver_.unmap(base_ + offset, static_cast<size_t>(chunk.size));
      (void)driver_.release(chunk.handle);
    }
    (void)driver_.address_free(base_, static_cast<size_t>(reserve_));
  }

  StatusOr<void*> allocate(std::string_view bucket, MemoryKind kind, int64_t bytes, void* stream) override {
    KVFLASH_RETURN_IF_ERROR(check_request_bytes(bucket, bytes));
    std::lock_guard<std::mutex> lock(mu_);
    ScopedDevice guard(device_);
    KVFLASH_RETURN_IF_ERROR(guard.status());
    const int64_t size = round_up(bytes, granularity_);
    const int64_t offset = find_gap(size);
    if (offset < 0) {
      return out_of_memory("device memory (vmm): bucket '" + std::string(bucket) + "' asked " + bytes_text(bytes) +
                           ", but no gap of the reserved range of " + bytes_text(reserve_) + " fits it");
    }
    CUmemGenericAllocationHandle handle{};
    // Nothing is cached by this strategy, so there is nothing to release before giving up.
    const CUresult created = driver_.create(&handle, static_cast<size_t>(size), &prop_, 0);
    if (created == CUDA_ERROR_OUT_OF_MEMORY) {
      size_t free_now = 0, total = 0;
      (void)cudaMemGetInfo(&free_now, &total);
      return out_of_memory("device memory (vmm): bucket '" + std::string(bucket) + "' asked " + bytes_text(bytes) +
                           "; the device has " + bytes_text(static_cast<int64_t>(free_now)) + " free of " +
                           bytes_text(static_cast<int64_t>(total)) + ", kvflash holds " +
                           bytes_text(ledger_.live_bytes()) + " live");
    }
    KVFLASH_RETURN_IF_ERROR(driver_.check(created, "cuMemCreate"));
    const CUdeviceptr va = base_ + static_cast<CUdeviceptr>(offset);
    Status mapped = driver_.check(driver_.map(va, static_cast<size_t>(size), 0, handle, 0), "cuMemMap");
    if (mapped.ok()) {
      CUmemAccessDesc access{};
      access.location = prop_.location;
      access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
      mapped = driver_.check(driver_.set_access(va, static_cast<size_t>(size), &access, 1), "cuMemSetAccess");
      if (!mapped.ok()) (void)driver_.unmap(va, static_cast<size_t>(size));
    }
    if (!mapped.ok()) {
      (void)driver_.release(handle);
      return mapped;
    }
    chunks_[offset] = Chunk{size, handle};
    void* ptr = reinterpret_cast<void*>(va);
    ledger_.record(ptr, bucket, kind, bytes, size, stream);
    return ptr;
  }

  Status deallocate(void* ptr, void* stream) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!ledger_.owns(ptr)) {
      return invalid_argument("device deallocate: pointer " + pointer_text(ptr) + " was not allocated here");
    }
    ScopedDevice guard(device_);
    KVFLASH_RETURN_IF_ERROR(guard.status());
    // Unmapping is immediate, unlike cudaFreeAsync: work queued on the stream may still read the chunk. (A failed
    // wait leaves the allocation live, so the caller may try again.)
    KVFLASH_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(static_cast<cudaStream_t>(stream)));
    AllocationLedger::Entry entry;
    (void)ledger_.take(ptr, &entry);
    const int64_t offset = static_cast<int64_t>(reinterpret_cast<CUdeviceptr>(ptr) - base_);
    auto it = chunks_.find(offset);
    if (it == chunks_.end()) return backend_error("device deallocate (vmm): no chunk at offset " + std::to_string(offset));
    const Chunk chunk = it->second;
    chunks_.erase(it);
    KVFLASH_RETURN_IF_ERROR(driver_.check(driver_.unmap(base_ + offset, static_cast<size_t>(chunk.size)), "cuMemUnmap"));
    KVFLASH_RETURN_IF_ERROR(driver_.check(driver_.release(chunk.handle), "cuMemRelease"));
    return Status::Ok();
  }

  Status trim_to(int64_t keep_bytes) override {
    KVFLASH_RETURN_IF_ERROR(check_keep_bytes(keep_bytes));
    return Status::Ok();  // every free already went back to the driver
  }

  StatusOr<MemoryReport> report() const override {
    std::lock_guard<std::mutex> lock(mu_);
    ScopedDevice guard(device_);
    KVFLASH_RETURN_IF_ERROR(guard.status());
    size_t free_now = 0, total = 0;
    KVFLASH_CUDA_RETURN_IF_ERROR(cudaMemGetInfo(&free_now, &total));
    MemoryReport r = ledger_.report(device_, free_now, total);
    const int64_t rounding = ledger_.mapped_bytes() - ledger_.live_bytes();
    if (rounding > 0) r.add("allocator.granularity", MemoryKind::other, rounding);
    return r;
  }

  DeviceAllocatorStats stats() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return ledger_.stats(ledger_.mapped_bytes(), ledger_.mapped_bytes());
  }
  void reset_peak() override {
    std::lock_guard<std::mutex> lock(mu_);
    ledger_.reset_peak();
  }
  DeviceAllocStrategy strategy() const override { return DeviceAllocStrategy::vmm; }

 private:
  struct Chunk {
    int64_t size;
    CUmemGenericAllocationHandle handle;
  };

  VmmAllocator(int device, const VmmDriver& driver, const CUmemAllocationProp& prop, int64_t granularity,
               CUdeviceptr base, int64_t reserve)
      : device_(device), driver_(driver), prop_(prop), granularity_(granularity), base_(base), reserve_(reserve) {}

  // First gap of the reserved range that holds `size` bytes (chunks_ is ordered by offset), or -1.
  int64_t find_gap(int64_t size) const {
    int64_t cursor = 0;
    for (const auto& [offset, chunk] : chunks_) {
      if (offset - cursor >= size) return cursor;
      cursor = offset + chunk.size;
    }
    return reserve_ - cursor >= size ? cursor : -1;
  }

  int device_;
  VmmDriver driver_;
  CUmemAllocationProp prop_;
  int64_t granularity_;
  CUdeviceptr base_;
  int64_t reserve_;
  std::map<int64_t, Chunk> chunks_;  // by offset in the range
  mutable std::mutex mu_;
  AllocationLedger ledger_;
};

}  // namespace

StatusOr<std::unique_ptr<DeviceAllocator>> create_vmm_allocator(const DeviceAllocatorConfig& config) {
  return VmmAllocator::create(config);
}

}  // namespace kvflash::cuda
