// C API: memory reports, the memory plan of a deployment as one, and the device allocator (whose report is one).
#include <memory>
#include <string>

#include "capi/capi_internal.h"
#include "kvflash/device_memory.h"
#include "kvflash/kv_cache.h"
#include "kvflash/memory_report.h"
#include "plan/deployment.h"

struct kvflash_memory_report {
  kvflash::MemoryReport report;
};

struct kvflash_device_allocator {
  std::unique_ptr<kvflash::DeviceAllocator> allocator;
};

// kvflash_cache is defined in capi_cache.cpp; this file only reads the cache through its accessor functions.

using namespace kvflash;

static_assert(KVFLASH_MEMORY_KV_CACHE == static_cast<int>(MemoryKind::kv_cache));
static_assert(KVFLASH_MEMORY_WORKSPACE == static_cast<int>(MemoryKind::workspace));
static_assert(KVFLASH_MEMORY_STAGING == static_cast<int>(MemoryKind::staging));
static_assert(KVFLASH_MEMORY_OTHER == static_cast<int>(MemoryKind::other));
static_assert(KVFLASH_DEVICE_ALLOC_STREAM_ORDERED == static_cast<int>(DeviceAllocStrategy::stream_ordered));
static_assert(KVFLASH_DEVICE_ALLOC_VMM == static_cast<int>(DeviceAllocStrategy::vmm));

namespace {

bool is_kind(int kind) { return kind >= KVFLASH_MEMORY_KV_CACHE && kind <= KVFLASH_MEMORY_OTHER; }

kvflash_memory_report* new_report(MemoryReport r) { return new kvflash_memory_report{std::move(r)}; }

}  // namespace

extern "C" {

kvflash_memory_report* kvflash_memory_report_create(const char* device, int64_t device_total, int64_t device_free) {
  kvflash_memory_report* out = nullptr;
  capi::guarded("kvflash_memory_report_create", [&]() -> int {
    MemoryReport r;
    r.device = device != nullptr ? device : "host";
    r.device_total = device_total;
    r.device_free = device_free;
    out = new_report(std::move(r));
    return KVFLASH_OK;
  });
  return out;
}

void kvflash_memory_report_destroy(kvflash_memory_report* report) { delete report; }

int kvflash_memory_report_add(kvflash_memory_report* report, const char* name, int kind, int64_t bytes) {
  static constexpr const char* kFunction = "kvflash_memory_report_add";
  if (report == nullptr) return capi::null_argument(kFunction, "report");
  if (name == nullptr) return capi::null_argument(kFunction, "name");
  return capi::guarded(kFunction, [&]() -> int {
    if (!is_kind(kind)) {
      return capi::fail(invalid_argument(std::string(kFunction) + ": kind = " + std::to_string(kind) +
                                         " is not a KVFLASH_MEMORY_* kind (0..3)"));
    }
    if (bytes < 0) {
      return capi::fail(invalid_argument(std::string(kFunction) + ": bytes = " + std::to_string(bytes) +
                                         " of bucket '" + name + "' is negative"));
    }
    report->report.add(name, static_cast<MemoryKind>(kind), bytes);
    return KVFLASH_OK;
  });
}

int kvflash_memory_report_add_cache(kvflash_memory_report* report, const kvflash_cache* cache) {
  static constexpr const char* kFunction = "kvflash_memory_report_add_cache";
  if (report == nullptr) return capi::null_argument(kFunction, "report");
  if (cache == nullptr) return capi::null_argument(kFunction, "cache");
  return capi::guarded(kFunction, [&]() -> int {
    kvflash_cache_config c;
    kvflash_cache_config_init(&c);
    if (int rc = kvflash_cache_get_config(cache, &c); rc != KVFLASH_OK) return rc;
    const int64_t layer = kvflash_cache_layer_bytes(cache);
    for (int64_t l = 0; l < c.n_layers; ++l) report->report.add("kv.layer." + std::to_string(l), MemoryKind::kv_cache, layer);
    report->report.add("kv.page_tables", MemoryKind::other, kvflash_cache_bytes(cache) - c.n_layers * layer);
    return KVFLASH_OK;
  });
}

size_t kvflash_memory_report_bucket_count(const kvflash_memory_report* report) {
  return report != nullptr ? report->report.buckets.size() : 0;
}

int kvflash_memory_report_bucket(const kvflash_memory_report* report, size_t i, const char** name, int* kind,
                                 int64_t* bytes) {
  static constexpr const char* kFunction = "kvflash_memory_report_bucket";
  if (report == nullptr) return capi::null_argument(kFunction, "report");
  return capi::guarded(kFunction, [&]() -> int {
    if (i >= report->report.buckets.size()) {
      return capi::fail(invalid_argument(std::string(kFunction) + ": i = " + std::to_string(i) + " but the report has " +
                                         std::to_string(report->report.buckets.size()) + " buckets"));
    }
    const MemoryBucket& b = report->report.buckets[i];
    if (name != nullptr) *name = b.name.c_str();
    if (kind != nullptr) *kind = static_cast<int>(b.kind);
    if (bytes != nullptr) *bytes = b.bytes;
    return KVFLASH_OK;
  });
}

int64_t kvflash_memory_report_bytes(const kvflash_memory_report* report, int kind) {
  return report != nullptr && is_kind(kind) ? report->report.bytes(static_cast<MemoryKind>(kind)) : 0;
}

int64_t kvflash_memory_report_ours(const kvflash_memory_report* report) {
  return report != nullptr ? report->report.ours() : 0;
}

int64_t kvflash_memory_report_unaccounted(const kvflash_memory_report* report) {
  return report != nullptr ? report->report.unaccounted() : 0;
}

size_t kvflash_memory_report_summary(const kvflash_memory_report* report, char* buf, size_t size) {
  if (report == nullptr) return 0;
  size_t length = 0;
  capi::guarded("kvflash_memory_report_summary", [&]() -> int {
    length = capi::copy_text(report->report.summary_line(), buf, size);
    return KVFLASH_OK;
  });
  return length;
}

size_t kvflash_memory_report_to_string(const kvflash_memory_report* report, char* buf, size_t size) {
  if (report == nullptr) return 0;
  size_t length = 0;
  capi::guarded("kvflash_memory_report_to_string", [&]() -> int {
    length = capi::copy_text(report->report.to_string(), buf, size);
    return KVFLASH_OK;
  });
  return length;
}

kvflash_memory_report* kvflash_plan_memory(const kvflash_model* model, int k_type, int v_type, int64_t context,
                                           int64_t n_seq, int64_t ubatch, int backend, int64_t other_bytes,
                                           int64_t budget_bytes) {
  static constexpr const char* kFunction = "kvflash_plan_memory";
  if (model == nullptr) {
    capi::null_argument(kFunction, "model");
    return nullptr;
  }
  kvflash_memory_report* out = nullptr;
  capi::guarded(kFunction, [&]() -> int {
    const auto k = capi::type_from_id(k_type), v = capi::type_from_id(v_type);
    if (!k || !v) {
      return capi::fail(invalid_argument(std::string(kFunction) + ": " + (k ? "v_type = " : "k_type = ") +
                                         std::to_string(k ? v_type : k_type) + " is not a type id"));
    }
    BackendKind kind{};
    KVFLASH_C_RETURN_IF_ERROR(capi::backend_from_id(kFunction, backend, &kind));
    if (budget_bytes < 0) {
      return capi::fail(invalid_argument(std::string(kFunction) + ": budget_bytes = " + std::to_string(budget_bytes) +
                                         " is negative"));
    }
    plan::DeploymentInputs in;
    in.model = model->model;
    in.k_type = *k;
    in.v_type = *v;
    in.context = context;
    in.n_seq = n_seq;
    in.ubatch = ubatch;
    in.caps = caps_for(kind);
    in.other_bytes = other_bytes;
    auto plan = plan::plan_deployment(in);
    if (!plan.ok()) return capi::fail(plan.status());
    out = new_report(plan::deployment_report(*plan, budget_bytes));
    return KVFLASH_OK;
  });
  return out;
}

kvflash_device_allocator* kvflash_device_allocator_create(int device, int strategy, int64_t release_threshold_bytes) {
  static constexpr const char* kFunction = "kvflash_device_allocator_create";
  kvflash_device_allocator* out = nullptr;
  capi::guarded(kFunction, [&]() -> int {
    if (strategy != KVFLASH_DEVICE_ALLOC_STREAM_ORDERED && strategy != KVFLASH_DEVICE_ALLOC_VMM) {
      return capi::fail(invalid_argument(std::string(kFunction) + ": strategy = " + std::to_string(strategy) +
                                         " is not a KVFLASH_DEVICE_ALLOC_* value (0..1)"));
    }
    DeviceAllocatorConfig config;
    config.device = device;
    config.strategy = static_cast<DeviceAllocStrategy>(strategy);
    config.release_threshold_bytes = release_threshold_bytes;
    auto allocator = DeviceAllocator::create(config);
    if (!allocator.ok()) return capi::fail(allocator.status());
    out = new kvflash_device_allocator{std::move(*allocator)};
    return KVFLASH_OK;
  });
  return out;
}

void kvflash_device_allocator_destroy(kvflash_device_allocator* allocator) { delete allocator; }

int kvflash_device_alloc(kvflash_device_allocator* allocator, const char* bucket, int kind, int64_t bytes,
                         void* stream, void** out) {
  static constexpr const char* kFunction = "kvflash_device_alloc";
  if (allocator == nullptr) return capi::null_argument(kFunction, "allocator");
  if (bucket == nullptr) return capi::null_argument(kFunction, "bucket");
  if (out == nullptr) return capi::null_argument(kFunction, "out");
  return capi::guarded(kFunction, [&]() -> int {
    if (!is_kind(kind)) {
      return capi::fail(invalid_argument(std::string(kFunction) + ": kind = " + std::to_string(kind) +
                                         " is not a KVFLASH_MEMORY_* kind (0..3)"));
    }
    auto ptr = allocator->allocator->allocate(bucket, static_cast<MemoryKind>(kind), bytes, stream);
    if (!ptr.ok()) return capi::fail(ptr.status());
    *out = *ptr;
    return KVFLASH_OK;
  });
}

int kvflash_device_free(kvflash_device_allocator* allocator, void* ptr, void* stream) {
  static constexpr const char* kFunction = "kvflash_device_free";
  if (allocator == nullptr) return capi::null_argument(kFunction, "allocator");
  return capi::guarded(kFunction, [&]() -> int { return capi::to_c(allocator->allocator->deallocate(ptr, stream)); });
}

int kvflash_device_allocator_trim(kvflash_device_allocator* allocator, int64_t keep_bytes) {
  static constexpr const char* kFunction = "kvflash_device_allocator_trim";
  if (allocator == nullptr) return capi::null_argument(kFunction, "allocator");
  return capi::guarded(kFunction, [&]() -> int { return capi::to_c(allocator->allocator->trim_to(keep_bytes)); });
}

kvflash_memory_report* kvflash_device_allocator_report(const kvflash_device_allocator* allocator) {
  static constexpr const char* kFunction = "kvflash_device_allocator_report";
  if (allocator == nullptr) {
    capi::null_argument(kFunction, "allocator");
    return nullptr;
  }
  kvflash_memory_report* out = nullptr;
  capi::guarded(kFunction, [&]() -> int {
    auto report = allocator->allocator->report();
    if (!report.ok()) return capi::fail(report.status());
    out = new_report(std::move(*report));
    return KVFLASH_OK;
  });
  return out;
}

}  // extern "C"
