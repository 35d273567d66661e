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

typedef struct kvflash_problem kvflash_problem;

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
 * Attention
 * ====================================================================================================== */

/** Runs the problem on a backend (KVFLASH_BACKEND_*), writing every element of O. The pointers must be in the
 *  backend's memory (host memory for ref and cpu). Temporaries come from the caller's workspace of
 *  workspace_bytes bytes (NULL/0 for the ref backend, which allocates its own as the oracle may). Returns 0 or an
 *  error code; on error O may be partially written. */
int kvflash_attend(const kvflash_problem *problem, int backend, void *workspace, size_t workspace_bytes);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* KVFLASH_KVFLASH_H */
