/* kvflash.h - the C API of kvflash: attention over quantized KV caches.
 *
 * A C99 header over the C++ library, for engines written in C (or any language with a C FFI). Rules that hold
 * for every function below:
 *   - Nothing throws, aborts or exits. A function that can fail returns an int status: KVFLASH_OK (0) or one of
 *     the KVFLASH_ERROR_* codes; functions that return a pointer return NULL on failure. After a failure,
 *     kvflash_last_error() gives a one-line message naming the field and its value.
 *   - Sizes are explicit: every buffer comes with its length in elements or bytes; every stride is in bytes.
 *   - Handles (kvflash_problem, ...) are opaque; create/destroy them with the matching functions. A handle is
 *     not thread-safe: use one from one thread at a time. Different handles may be used from different threads.
 *   - The library never keeps a caller's data pointer beyond what a function documents (a problem keeps the
 *     pointers it was given until they are set again or the problem is destroyed; it never copies the data).
 *   - Type ids are the KVFLASH_TYPE_* values (the C++ kvflash::KvType values); they never change.
 */
#ifndef KVFLASH_KVFLASH_H
#define KVFLASH_KVFLASH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- status codes (the C++ kvflash::StatusCode values) ---- */
enum {
  KVFLASH_OK = 0,
  KVFLASH_ERROR_INVALID_ARGUMENT = 1, /* a field, shape or flag: the message names it and its value */
  KVFLASH_ERROR_UNSUPPORTED = 2,      /* valid input this build or backend cannot run */
  KVFLASH_ERROR_OUT_OF_MEMORY = 3,    /* a budget, page pool or allocation ran out */
  KVFLASH_ERROR_IO = 4,               /* a file could not be read or written */
  KVFLASH_ERROR_FORMAT = 5,           /* a file's bytes are malformed */
  KVFLASH_ERROR_BACKEND = 6,          /* a device runtime call failed */
  KVFLASH_ERROR_INTERNAL = 7
};

/* ---- KV storage types (the C++ kvflash::KvType values) ---- */
enum {
  KVFLASH_TYPE_F32 = 0,
  KVFLASH_TYPE_F16 = 1,
  KVFLASH_TYPE_BF16 = 2,
  KVFLASH_TYPE_Q8_0 = 3,
  KVFLASH_TYPE_Q4_0 = 4,
  KVFLASH_TYPE_Q4_1 = 5,
  KVFLASH_TYPE_Q5_0 = 6,
  KVFLASH_TYPE_Q5_1 = 7,
  KVFLASH_TYPE_TURBO2 = 8,
  KVFLASH_TYPE_TURBO3 = 9,
  KVFLASH_TYPE_TURBO4 = 10
};

/* ---- backends (the C++ kvflash::BackendKind values) ---- */
enum {
  KVFLASH_BACKEND_REF = 0,  /* the float64 oracle on the host */
  KVFLASH_BACKEND_CPU = 1,  /* fast CPU kernels */
  KVFLASH_BACKEND_CUDA = 2  /* NVIDIA GPUs */
};

/* ---- mask element types (the C++ kvflash::MaskType values) ---- */
enum { KVFLASH_MASK_F32 = 0, KVFLASH_MASK_F16 = 1 };

/* ---- opaque handles ---- */
typedef struct kvflash_problem kvflash_problem;             /* one attention call's description */
typedef struct kvflash_route kvflash_route;                 /* a planned kernel, launch parameters, workspace */
typedef struct kvflash_cache kvflash_cache;                 /* a paged KV cache */
typedef struct kvflash_model kvflash_model;                 /* a model's attention shapes (preset or GGUF) */
typedef struct kvflash_memory_report kvflash_memory_report; /* bytes per named bucket */
typedef struct kvflash_device_allocator kvflash_device_allocator; /* device memory in named buckets */

/* ======================================================================================================
 * Library and errors
 * ====================================================================================================== */

/** The library's version, "MAJOR.MINOR.PATCH" (e.g. "0.3.0"). Static storage; never NULL. */
const char *kvflash_version(void);

/** The message of this thread's last failed call ("" if none failed yet). Successful calls leave it as it is.
 *  The pointer stays valid until the next failing call on this thread. Never NULL. */
const char *kvflash_last_error(void);

/** A short name for a status code ("ok", "invalid_argument", ...); "unknown" for other values. Never NULL. */
const char *kvflash_status_name(int status);

/* ======================================================================================================
 * Types
 * ====================================================================================================== */

/** "q4_0" -> KVFLASH_TYPE_Q4_0 (a type id >= 0); an unknown name or NULL -> a negative value. */
int kvflash_type_from_name(const char *name);

/** The number of type ids: valid ids are 0 .. kvflash_type_count() - 1. */
int kvflash_type_count(void);

/** The name of a type id ("q8_0"); NULL for an invalid id. Static storage. */
const char *kvflash_type_name(int type);

/** Values per block (1 for f32/f16/bf16, 32 for the GGML block types, 128 for turbo); 0 for an invalid id. */
int64_t kvflash_type_block_elems(int type);

/** Bytes per block (e.g. 34 for q8_0); 0 for an invalid id. */
int64_t kvflash_type_block_bytes(int type);

/** 1 if the type is block-quantized (GGML blocks or TurboQuant), 0 if not or for an invalid id. */
int kvflash_type_is_quantized(int type);

/** 1 if stored values live in a rotated domain (turbo types), 0 if not or for an invalid id. */
int kvflash_type_is_rotated(int type);

/** Values a stored row of logical head dim `dim` holds: turbo rows are zero-padded to a multiple of 128, other
 *  types store `dim` values. 0 for an invalid id or a negative dim. */
int64_t kvflash_stored_dim(int type, int64_t dim);

/** Bytes of one stored row of n values; 0 if n is invalid (negative, or not a multiple of the type's block
 *  size) or the type id is invalid. */
size_t kvflash_row_bytes(int type, int64_t n);

/* ======================================================================================================
 * Quantize / dequantize (CPU)
 * ====================================================================================================== */

/** Quantizes n floats (a multiple of the type's block size) from src into kvflash_row_bytes(type, n) bytes at
 *  dst. The bytes are exactly those `kvflash quantize` writes for the same row (GGML's reference quantizers for
 *  the GGML types). Returns 0 = ok, else an error code (dst untouched on error). */
int kvflash_quantize_row(int type, const float *src, int64_t n, void *dst);

/** Dequantizes n values from kvflash_row_bytes(type, n) bytes at src into n floats at dst. Turbo types give the
 *  reconstruction in the original domain (inverse rotation applied). Returns 0 = ok, else an error code. */
int kvflash_dequantize_row(int type, const void *src, int64_t n, float *dst);

/** As kvflash_dequantize_row, but turbo types give the stored rotated-domain values (centroid * norm); other
 *  types are unaffected. Returns 0 = ok, else an error code. */
int kvflash_dequantize_row_rotated(int type, const void *src, int64_t n, float *dst);

/** IEEE binary16 bits of a float (round to nearest even, NaN kept quiet), as the f16 type stores it. */
uint16_t kvflash_fp32_to_fp16(float f);

/** The float an IEEE binary16 bit pattern holds (exact). */
float kvflash_fp16_to_fp32(uint16_t h);

/* ======================================================================================================
 * Backends
 * ====================================================================================================== */

/** "ref" / "cpu" / "cuda" -> KVFLASH_BACKEND_*; an unknown name or NULL -> a negative value. */
int kvflash_backend_from_name(const char *name);

/** The name of a backend id; NULL for an invalid id. Static storage. */
const char *kvflash_backend_name(int backend);

/** 1 if this build has the backend and (for cuda) a usable device is present, else 0. */
int kvflash_backend_available(int backend);

/* ======================================================================================================
 * Attention problems
 *
 * A problem describes one attention call (see kvflash/attention_problem.h for the full semantics):
 *   Q [n_seq, n_head_q, n_q, d_k] float32; K [n_seq, n_head_kv, n_kv, d_k] stored as the K type;
 *   V [n_seq, n_head_kv, n_kv, d_v] stored as the V type; O [n_seq, n_head_q, n_q, d_v] float32;
 *   mask [n_seq, n_head_q, n_q, n_kv] f32 or f16, additive. Query head h reads KV head h / (n_head_q / n_head_kv).
 * Causal, window and ALiBi use bottom-right alignment: query row i sits at position n_kv - n_q + i.
 * Strides are byte strides of the [seq, head, row] axes (elements within a row are contiguous), passed as an
 * array of 3 int64_t; NULL strides mean the dense C-order layout of the shape in force when the problem is used
 * (a K/V row of a turbo type holds kvflash_stored_dim(type, d) values).
 * ====================================================================================================== */

/** A new problem: shape all zeros, K and V f16, no mask, default options. NULL on allocation failure. */
kvflash_problem *kvflash_problem_create(void);

/** Frees a problem (not the data it points to). NULL is ignored. */
void kvflash_problem_destroy(kvflash_problem *problem);

/** Sets the shape: sequences, query rows and keys per sequence, query and KV heads, K and V head dims. Checked
 *  by kvflash_problem_validate, not here. Returns 0, or an error code for a NULL problem. */
int kvflash_problem_set_shape(kvflash_problem *problem, int64_t n_seq, int64_t n_q, int64_t n_kv,
                              int64_t n_head_q, int64_t n_head_kv, int64_t d_k, int64_t d_v);

/** Sets Q: float32 data and its byte strides (int64_t[3]: seq, head, row; NULL = dense). Returns 0 or an error
 *  code. */
int kvflash_problem_set_q(kvflash_problem *problem, const float *data, const int64_t *strides);

/** Sets K: its type id, stored rows and byte strides (int64_t[3]; NULL = dense). Returns 0 or an error code. */
int kvflash_problem_set_k(kvflash_problem *problem, int type, const void *data, const int64_t *strides);

/** Sets V: its type id, stored rows and byte strides (int64_t[3]; NULL = dense). Returns 0 or an error code. */
int kvflash_problem_set_v(kvflash_problem *problem, int type, const void *data, const int64_t *strides);

/** Makes K paged: row r of sequence s lives in page pages[s * pages_per_seq + r / page_rows], at
 *  (r % page_rows) * row_stride + head * head_stride bytes from data + page * page_bytes (the strides are K's;
 *  its seq stride is unused). pages = NULL makes K contiguous again. Returns 0 or an error code. */
int kvflash_problem_set_k_pages(kvflash_problem *problem, const int32_t *pages, int64_t pages_per_seq,
                                int64_t page_rows, int64_t page_bytes);

/** Makes V paged, as kvflash_problem_set_k_pages does for K. Returns 0 or an error code. */
int kvflash_problem_set_v_pages(kvflash_problem *problem, const int32_t *pages, int64_t pages_per_seq,
                                int64_t page_rows, int64_t page_bytes);

/** Sets O: float32 output and its byte strides (int64_t[3]; NULL = dense). Returns 0 or an error code. */
int kvflash_problem_set_o(kvflash_problem *problem, float *data, const int64_t *strides);

/** Sets an additive mask (KVFLASH_MASK_F32 or _F16; -inf hides a key) with byte strides of its seq, head and
 *  query-row axes (0 broadcasts an axis; keys are contiguous). NULL strides mean one [n_q, n_kv] matrix
 *  broadcast over sequences and heads. data = NULL removes the mask. Returns 0 or an error code. */
int kvflash_problem_set_mask(kvflash_problem *problem, int mask_type, const void *data, const int64_t *strides);

/** Softmax scale; 0 (the default) means 1/sqrt(d_k). Returns 0 or an error code. */
int kvflash_problem_set_scale(kvflash_problem *problem, double scale);

/** Causal masking (bottom-right aligned) on (nonzero) or off (0). Returns 0 or an error code. */
int kvflash_problem_set_causal(kvflash_problem *problem, int causal);

/** Sliding window: key j is hidden when position - j >= window; 0 = none. Returns 0 or an error code. */
int kvflash_problem_set_window(kvflash_problem *problem, int64_t window);

/** ALiBi with GGML's slopes for this max bias; 0 = none. Returns 0 or an error code. */
int kvflash_problem_set_alibi(kvflash_problem *problem, double max_bias);

/** Logit softcap c: s = c * tanh(s / c), applied before the mask; 0 = none. Returns 0 or an error code. */
int kvflash_problem_set_softcap(kvflash_problem *problem, double softcap);

/** Attention sinks: float32 [n_head_q], one extra logit per query head; NULL = none. Returns 0 or an error
 *  code. */
int kvflash_problem_set_sinks(kvflash_problem *problem, const float *sinks);

/** Per-sequence key counts: int32 [n_seq], each <= n_kv; NULL = every sequence has n_kv keys. Returns 0 or an
 *  error code. */
int kvflash_problem_set_kv_len(kvflash_problem *problem, const int32_t *kv_len);

/** Checks every field (never reads the data). Returns 0, or an error code with the message in
 *  kvflash_last_error(). */
int kvflash_problem_validate(const kvflash_problem *problem);

/** Writes a one-line description of the problem (every field that matters for routing) into buf, truncated to
 *  size - 1 characters and NUL-terminated when size > 0 (snprintf rules). Returns the full length without the
 *  NUL, so a caller can size buf; 0 on error (NULL problem). */
size_t kvflash_problem_describe(const kvflash_problem *problem, char *buf, size_t size);

/* ======================================================================================================
 * Routes and attention
 *
 * Routing is total: every problem kvflash_problem_validate accepts gets a route on every backend this build has
 * (each backend keeps a generic kernel; specialized ones are chosen by cost). A route fixes the kernel, its launch
 * parameters and the exact workspace bytes; attention then allocates nothing and takes its temporaries from the
 * caller's workspace.
 * ====================================================================================================== */

/** Alignment (bytes) every workspace must have: a CUDA allocation's, a multiple of any cache line. */
size_t kvflash_workspace_alignment(void);

/** Plans a route for the problem on a backend (KVFLASH_BACKEND_*), for this machine's caps (threads; for cuda the
 *  device, or a nominal H100 description when there is none). NULL on error: an invalid problem
 *  (KVFLASH_ERROR_INVALID_ARGUMENT) or a backend this build lacks; the message ends with the problem's
 *  description. The route stays valid after the problem changes, but only fits problems of the same shape. */
kvflash_route *kvflash_plan_route(const kvflash_problem *problem, int backend);

/** Frees a route. NULL is ignored. */
void kvflash_route_destroy(kvflash_route *route);

/** The route's backend id; -1 for NULL. */
int kvflash_route_backend(const kvflash_route *route);

/** The kernel's table name ("ref.generic", "cpu.decode", ...); NULL for NULL. Valid while the route lives. */
const char *kvflash_route_kernel(const kvflash_route *route);

/** Workspace bytes kvflash_attend_route needs (0: none); 0 for NULL. */
size_t kvflash_route_workspace_bytes(const kvflash_route *route);

/** Key ranges computed independently and combined (split-KV); 0 for NULL. */
int64_t kvflash_route_splits(const kvflash_route *route);

/** The cost model's estimate in microseconds; 0 for NULL. */
double kvflash_route_cost_us(const kvflash_route *route);

/** Writes every candidate kernel of the backend for the problem, whether it accepts the problem and why not, and
 *  the choice (human-readable, several lines) into buf with snprintf rules. Returns the full length (0 on error:
 *  NULL problem or a bad backend id). */
size_t kvflash_explain(const kvflash_problem *problem, int backend, char *buf, size_t size);

/** Runs the problem along a route planned for a problem of the same shape, writing every element of O. workspace
 *  (in the backend's memory, kvflash_workspace_alignment()-aligned) holds workspace_bytes >=
 *  kvflash_route_workspace_bytes(route) bytes; stream is a cudaStream_t for cuda (NULL: the default stream),
 *  ignored elsewhere. Returns 0 or an error code (a too-small or misaligned workspace, a route for another shape). */
int kvflash_attend_route(const kvflash_problem *problem, const kvflash_route *route, void *workspace,
                         size_t workspace_bytes, void *stream);

/** Plans a route on the backend and runs it (kvflash_plan_route + kvflash_attend_route on the default stream).
 *  The pointers must be in the backend's memory (host memory for ref and cpu). workspace may be NULL when the
 *  route needs none (the ref backend); else it must hold the route's bytes. Returns 0 or an error code; on error O
 *  may be partially written. */
int kvflash_attend(const kvflash_problem *problem, int backend, void *workspace, size_t workspace_bytes);

/* ======================================================================================================
 * Models and workspace planning
 * ====================================================================================================== */

/** The number of built-in model presets. */
size_t kvflash_model_preset_count(void);

/** The name of preset i (< kvflash_model_preset_count()), e.g. "llama3-8b"; NULL otherwise. Static storage. */
const char *kvflash_model_preset_name(size_t i);

/** A built-in preset by name; NULL for an unknown name (the message lists the known ones). */
kvflash_model *kvflash_model_preset(const char *name);

/** A model read from a GGUF file's header and metadata (never its tensor data); NULL on error
 *  (KVFLASH_ERROR_IO, or KVFLASH_ERROR_FORMAT naming what is malformed and where). */
kvflash_model *kvflash_model_from_gguf(const char *path);

/** An empty model named name (may be NULL), to be given layers with kvflash_model_add_layer. NULL on allocation
 *  failure. */
kvflash_model *kvflash_model_create(const char *name);

/** Appends a layer: query and KV heads (n_head_kv = 0: the layer keeps no KV cache), head dims, sliding window
 *  (0: full attention). Checked when the model is used. Returns 0 or an error code. */
int kvflash_model_add_layer(kvflash_model *model, int64_t n_head_q, int64_t n_head_kv, int64_t d_k, int64_t d_v,
                            int64_t window);

/** Frees a model. NULL is ignored. */
void kvflash_model_destroy(kvflash_model *model);

/** The model's name; "" for NULL. Valid while the model lives and is not changed. */
const char *kvflash_model_name(const kvflash_model *model);

/** The number of layers; 0 for NULL. */
int64_t kvflash_model_layer_count(const kvflash_model *model);

/** Bytes of the KV cache for n_seq sequences of context tokens (sliding layers at their window, turbo rows
 *  padded), in *bytes. Returns 0 or an error code (an invalid model, a head dim the type cannot store). */
int kvflash_model_kv_cache_bytes(const kvflash_model *model, int k_type, int v_type, int64_t context,
                                 int64_t n_seq, int64_t *bytes);

/** The workspace plan: the exact bytes of each temporary of the worst route within the limits, and the total to
 *  allocate. Set struct_size = sizeof(kvflash_workspace_plan) before the call. */
typedef struct kvflash_workspace_plan {
  size_t struct_size;
  int64_t partial_o_bytes;      /* split-KV partial outputs */
  int64_t partial_stats_bytes;  /* split-KV softmax max and sum */
  int64_t q_staging_bytes;      /* staged Q (rotated for turbo K) */
  int64_t worker_scratch_bytes; /* per-worker tiles */
  int64_t total_bytes;          /* what to allocate: every route within the limits needs at most this */
} kvflash_workspace_plan;

/** Sizes the workspace for a deployment from what the KV cache can hold (kv_capacity_tokens per sequence), never
 *  from the model's maximum context: up to max_sequences sequences per call and max_query_rows query rows per
 *  call (n_seq * n_q), for the model's layers and K/V types on a backend. Returns 0 or an error code. */
int kvflash_plan_workspace(const kvflash_model *model, int k_type, int v_type, int backend, int64_t max_sequences,
                           int64_t max_query_rows, int64_t kv_capacity_tokens, kvflash_workspace_plan *out);

/* ======================================================================================================
 * Memory reports
 *
 * Every byte we hold belongs to a named bucket; "unaccounted" = device total - free - ours shows memory that
 * someone else (or a leak) holds.
 * ====================================================================================================== */

/* Bucket kinds (the C++ kvflash::MemoryKind values). */
enum {
  KVFLASH_MEMORY_KV_CACHE = 0,
  KVFLASH_MEMORY_WORKSPACE = 1,
  KVFLASH_MEMORY_STAGING = 2,
  KVFLASH_MEMORY_OTHER = 3
};

/** An empty report for a device ("host", "cuda:0", "budget"; NULL = "host") with its total and free bytes. NULL
 *  on allocation failure. */
kvflash_memory_report *kvflash_memory_report_create(const char *device, int64_t device_total, int64_t device_free);

/** Frees a report. NULL is ignored. */
void kvflash_memory_report_destroy(kvflash_memory_report *report);

/** Adds a bucket (name copied; kind KVFLASH_MEMORY_*; bytes >= 0). Returns 0 or an error code. */
int kvflash_memory_report_add(kvflash_memory_report *report, const char *name, int kind, int64_t bytes);

/** Adds a cache's storage: one kv bucket per layer ("kv.layer.<l>") and its page tables ("kv.page_tables",
 *  other). Returns 0 or an error code. */
int kvflash_memory_report_add_cache(kvflash_memory_report *report, const kvflash_cache *cache);

/** The number of buckets; 0 for NULL. */
size_t kvflash_memory_report_bucket_count(const kvflash_memory_report *report);

/** Bucket i: its name (valid while the report lives), kind and bytes; any output pointer may be NULL. Returns 0
 *  or an error code (i out of range). */
int kvflash_memory_report_bucket(const kvflash_memory_report *report, size_t i, const char **name, int *kind,
                                 int64_t *bytes);

/** Bytes of every bucket of a kind; 0 for NULL. */
int64_t kvflash_memory_report_bytes(const kvflash_memory_report *report, int kind);

/** Bytes of all buckets; 0 for NULL. */
int64_t kvflash_memory_report_ours(const kvflash_memory_report *report);

/** device total - device free - ours; 0 for NULL. */
int64_t kvflash_memory_report_unaccounted(const kvflash_memory_report *report);

/** The one-line summary, `device | total = free + (ours = kv + workspace + other) + unaccounted` in MiB, into buf
 *  (snprintf rules). Returns the full length; 0 for NULL. */
size_t kvflash_memory_report_summary(const kvflash_memory_report *report, char *buf, size_t size);

/** The bucket table followed by the summary line (several lines) into buf (snprintf rules). Returns the full
 *  length; 0 for NULL. */
size_t kvflash_memory_report_to_string(const kvflash_memory_report *report, char *buf, size_t size);

/** The memory plan of a deployment as a report against a budget (device "budget", total = budget_bytes): the KV
 *  cache per layer for n_seq sequences of context tokens, the workspace bound for ubatch query rows per call on a
 *  backend, and other_bytes the caller holds besides (weights). NULL on error. */
kvflash_memory_report *kvflash_plan_memory(const kvflash_model *model, int k_type, int v_type, int64_t context,
                                           int64_t n_seq, int64_t ubatch, int backend, int64_t other_bytes,
                                           int64_t budget_bytes);

/* ======================================================================================================
 * Device memory (kvflash/device_memory.h)
 *
 * An allocator of one CUDA device whose every allocation belongs to a named bucket of its memory report. Two
 * strategies: a stream-ordered pool of its own (cudaMallocAsync; freed bytes beyond the release threshold go back
 * to the driver) or a reserved virtual range mapped chunk by chunk (VMM; nothing is kept after a free). Running
 * out of memory is KVFLASH_ERROR_OUT_OF_MEMORY whose message names the bucket and the bytes asked.
 * ====================================================================================================== */

enum { KVFLASH_DEVICE_ALLOC_STREAM_ORDERED = 0, KVFLASH_DEVICE_ALLOC_VMM = 1 };

/** An allocator on CUDA device `device` with strategy KVFLASH_DEVICE_ALLOC_*; release_threshold_bytes (>= 0) is
 *  what a stream-ordered pool may keep cached after frees (ignored by vmm). NULL on error: without CUDA in the
 *  build or without a device the error is KVFLASH_ERROR_UNSUPPORTED. */
kvflash_device_allocator *kvflash_device_allocator_create(int device, int strategy, int64_t release_threshold_bytes);

/** Frees the allocator and, with it, every allocation still live. NULL is ignored. */
void kvflash_device_allocator_destroy(kvflash_device_allocator *allocator);

/** bytes (> 0) of device memory for `bucket` (kind KVFLASH_MEMORY_*), ordered on `stream` (a cudaStream_t; NULL:
 *  the default stream), 256-byte aligned, into *out. Returns 0 or an error code (*out untouched on error). */
int kvflash_device_alloc(kvflash_device_allocator *allocator, const char *bucket, int kind, int64_t bytes,
                         void *stream, void **out);

/** Frees memory from kvflash_device_alloc, ordered on `stream`. Returns 0 or an error code (a pointer this
 *  allocator did not hand out is KVFLASH_ERROR_INVALID_ARGUMENT). */
int kvflash_device_free(kvflash_device_allocator *allocator, void *ptr, void *stream);

/** Gives cached-but-free memory back to the driver until at most keep_bytes beyond the live bytes stay reserved.
 *  Returns 0 or an error code. */
int kvflash_device_allocator_trim(kvflash_device_allocator *allocator, int64_t keep_bytes);

/** A report of the allocator's live buckets (plus what its strategy caches or rounds up, in buckets of their own)
 *  and the device's total and free bytes now; free it with kvflash_memory_report_destroy. NULL on error. */
kvflash_memory_report *kvflash_device_allocator_report(const kvflash_device_allocator *allocator);

/* ======================================================================================================
 * Paged KV cache (kvflash/kv_cache.h)
 *
 * Fixed capacity, chosen at creation: pages of page_rows tokens, shared by every layer; sequences own page
 * tables; append quantizes on write; fork shares pages copy-on-write. Nothing allocates after creation, and a
 * call that fails leaves the cache unchanged. Sequence ids are int32_t slots in [0, max_sequences).
 * ====================================================================================================== */

/** Cache dimensions. Call kvflash_cache_config_init first: it sets struct_size (so later versions can grow the
 *  struct) and the defaults (1 layer, 1 KV head, d_k = d_v = 128, f16, 16 tokens per page, 1 sequence). Give
 *  exactly one of n_pages and capacity_tokens (> 0). */
typedef struct kvflash_cache_config {
  size_t struct_size;      /* sizeof(kvflash_cache_config), set by kvflash_cache_config_init */
  int64_t n_layers;
  int64_t n_head_kv;
  int64_t d_k;             /* logical head dims; turbo rows are zero-padded to kvflash_stored_dim */
  int64_t d_v;
  int k_type;              /* KVFLASH_TYPE_*; K and V types are independent */
  int v_type;
  int64_t page_rows;       /* tokens per page */
  int64_t n_pages;         /* pages in the pool, or 0 when capacity_tokens is given */
  int64_t capacity_tokens; /* rounded up to whole pages, or 0 when n_pages is given */
  int64_t max_sequences;   /* live sequences at once (forks and restores count) */
  int64_t max_seq_tokens;  /* longest sequence (sets the page-table width); 0: the whole capacity */
} kvflash_cache_config;

/** Fills config with the defaults and struct_size. */
void kvflash_cache_config_init(kvflash_cache_config *config);

/** A new cache with all its storage allocated. NULL on error (invalid config: the message names the field; or
 *  out of memory). */
kvflash_cache *kvflash_cache_create(const kvflash_cache_config *config);

/** Frees the cache and all its storage. NULL is ignored. */
void kvflash_cache_destroy(kvflash_cache *cache);

/** The config in use (n_pages, capacity_tokens and max_seq_tokens resolved). out->struct_size must be set (by
 *  kvflash_cache_config_init). Returns 0 or an error code. */
int kvflash_cache_get_config(const kvflash_cache *cache, kvflash_cache_config *out);

/** A new empty sequence, its id in *seq. KVFLASH_ERROR_OUT_OF_MEMORY when max_sequences are live. */
int kvflash_cache_add_sequence(kvflash_cache *cache, int32_t *seq);

/** Removes a sequence, freeing every page no other sequence references. Returns 0 or an error code. */
int kvflash_cache_remove(kvflash_cache *cache, int32_t seq);

/** A new sequence (*new_seq) with the same tokens as seq, sharing its pages copy-on-write. Returns 0 or an error
 *  code. */
int kvflash_cache_fork(kvflash_cache *cache, int32_t seq, int32_t *new_seq);

/** Keeps the first n_tokens tokens of seq (n_tokens <= its length). Returns 0 or an error code. */
int kvflash_cache_truncate(kvflash_cache *cache, int32_t seq, int64_t n_tokens);

/** Appends n_tokens tokens to seq in every layer, quantizing on write: k is float32
 *  [n_layers, n_tokens, n_head_kv, d_k] (k_count floats), v is [n_layers, n_tokens, n_head_kv, d_v] (v_count
 *  floats). KVFLASH_ERROR_OUT_OF_MEMORY when pages run out. Returns 0 or an error code. */
int kvflash_cache_append(kvflash_cache *cache, int32_t seq, const float *k, size_t k_count, const float *v,
                         size_t v_count, int64_t n_tokens);

/** Grows seq by n_tokens positions (rows unwritten) and stores the first new position in *first; for engines that
 *  then write layer by layer with kvflash_cache_write. Returns 0 or an error code. */
int kvflash_cache_extend(kvflash_cache *cache, int32_t seq, int64_t n_tokens, int64_t *first);

/** Quantizes one layer's rows for positions [first, first + n_tokens) of seq: k is float32
 *  [n_tokens, n_head_kv, d_k] (k_count floats), v is [n_tokens, n_head_kv, d_v] (v_count floats). The positions
 *  must lie below the sequence's length. Returns 0 or an error code. */
int kvflash_cache_write(kvflash_cache *cache, int32_t seq, int64_t layer, int64_t first, const float *k,
                        size_t k_count, const float *v, size_t v_count, int64_t n_tokens);

/** The number of tokens of seq, in *length. Returns 0 or an error code. */
int kvflash_cache_length(const kvflash_cache *cache, int32_t seq, int64_t *length);

/** Pages no sequence holds; 0 for a NULL cache. */
int64_t kvflash_cache_pages_free(const kvflash_cache *cache);

/** Pages in the pool; 0 for a NULL cache. */
int64_t kvflash_cache_pages_total(const kvflash_cache *cache);

/** Sequence slots not in use; 0 for a NULL cache. */
int64_t kvflash_cache_sequences_free(const kvflash_cache *cache);

/** Page-table entries a sequence needs to address max_seq_tokens tokens (the pages_per_seq to use for
 *  kvflash_cache_fill_batch); 0 for a NULL cache. */
int64_t kvflash_cache_max_pages_per_seq(const kvflash_cache *cache);

/** Host bytes the cache owns (storage plus page tables); 0 for a NULL cache. */
int64_t kvflash_cache_bytes(const kvflash_cache *cache);

/** Bytes of one layer's K and V storage (every page); 0 for a NULL cache. */
int64_t kvflash_cache_layer_bytes(const kvflash_cache *cache);

/** Copies the stored bytes of one K row (is_v = 0) or V row (is_v != 0) of token pos of seq into dst (size bytes,
 *  at least kvflash_row_bytes of the row). Returns 0 or an error code. */
int kvflash_cache_read_row(const kvflash_cache *cache, int32_t seq, int64_t layer, int64_t pos, int64_t head,
                           int is_v, void *dst, size_t size);

/** Prepares attention over a batch of sequences: fills page_table [n_seqs, pages_per_seq] (int32, row i holds
 *  seqs[i]'s pages; page_table_count entries) and kv_len [n_seqs], and stores the longest length (the problem's
 *  n_kv) in *n_kv. Valid until the next change to one of these sequences. Returns 0 or an error code. */
int kvflash_cache_fill_batch(const kvflash_cache *cache, const int32_t *seqs, size_t n_seqs, int64_t pages_per_seq,
                             int32_t *page_table, size_t page_table_count, int32_t *kv_len, int64_t *n_kv);

/** Points a problem's K and V at one layer of the cache through a page table kvflash_cache_fill_batch filled
 *  (types, data, strides and paging; the problem keeps the pointers). Set the shape (n_seq, n_kv from fill_batch,
 *  heads and dims matching the cache) and kv_len separately. Returns 0 or an error code. */
int kvflash_problem_set_cache_layer(kvflash_problem *problem, const kvflash_cache *cache, int64_t layer,
                                    const int32_t *page_table, int64_t pages_per_seq);

/** The exact size of seq's checkpoint, in *bytes. Returns 0 or an error code. */
int kvflash_cache_checkpoint_bytes(const kvflash_cache *cache, int32_t seq, size_t *bytes);

/** Writes seq's checkpoint into buf (size bytes, at least kvflash_cache_checkpoint_bytes). Returns 0 or an error
 *  code. */
int kvflash_cache_checkpoint(const kvflash_cache *cache, int32_t seq, void *buf, size_t size);

/** Writes seq's checkpoint to a file (through a temporary file renamed into place). Returns 0 or an error code. */
int kvflash_cache_checkpoint_to_file(const kvflash_cache *cache, int32_t seq, const char *path);

/** A new sequence (*seq) holding a checkpoint's tokens. KVFLASH_ERROR_FORMAT for bytes that are not an intact
 *  checkpoint, KVFLASH_ERROR_INVALID_ARGUMENT for one from a cache of another config. Returns 0 or an error
 *  code. */
int kvflash_cache_restore(kvflash_cache *cache, const void *buf, size_t size, int32_t *seq);

/** As kvflash_cache_restore, from a file. */
int kvflash_cache_restore_from_file(kvflash_cache *cache, const char *path, int32_t *seq);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* KVFLASH_KVFLASH_H */
