/* Embedding kvflash from C, as an inference engine would: a paged KV cache that quantizes on write, a route and
 * its workspace planned for a decode step, the attention over the cache, and the memory report.
 *
 *   cc -std=c99 embed.c $(pkg-config --cflags --libs kvflash) -lm -o embed_c   (or find_package, CMakeLists.txt)
 *
 * Exits 0 on success; on any failure it prints kvflash_last_error() and exits 1. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kvflash/kvflash.h>

enum { N_LAYERS = 2, N_HEAD_Q = 8, N_HEAD_KV = 2, HEAD_DIM = 128, N_PROMPT = 300 };

static void check(int status, const char *what) {
  if (status != KVFLASH_OK) {
    fprintf(stderr, "embed_c: %s failed (%s): %s\n", what, kvflash_status_name(status), kvflash_last_error());
    exit(1);
  }
}

static void *alloc_or_die(size_t bytes) {
  void *p = malloc(bytes);
  if (p == NULL) {
    fprintf(stderr, "embed_c: out of memory\n");
    exit(1);
  }
  return p;
}

/* C99 has no aligned_alloc: take align - 1 extra bytes and start the workspace at the first aligned address.
 * *raw is what to free. */
static void *aligned_workspace(size_t bytes, size_t align, void **raw) {
  unsigned char *block = malloc(bytes + align - 1);
  *raw = block;
  if (block == NULL) return NULL;
  return block + (align - (size_t)((uintptr_t)block % align)) % align;
}

/* Deterministic pseudo-random floats in [-1, 1) (xorshift32): an example needs no seed plumbing. */
static float next_float(unsigned *state) {
  *state ^= *state << 13;
  *state ^= *state >> 17;
  *state ^= *state << 5;
  return (float)(*state >> 8) / 8388608.0f - 1.0f;
}

int main(void) {
  const int ktype = kvflash_type_from_name("q8_0"), vtype = kvflash_type_from_name("q4_0");
  const int backend = kvflash_backend_available(KVFLASH_BACKEND_CPU) ? KVFLASH_BACKEND_CPU : KVFLASH_BACKEND_REF;
  const size_t kv_floats = (size_t)N_LAYERS * N_PROMPT * N_HEAD_KV * HEAD_DIM;
  float *k = alloc_or_die(sizeof(float) * kv_floats), *v = alloc_or_die(sizeof(float) * kv_floats);
  float *q = alloc_or_die(sizeof(float) * N_HEAD_Q * HEAD_DIM), *o = alloc_or_die(sizeof(float) * N_HEAD_Q * HEAD_DIM);
  float back[HEAD_DIM];
  unsigned char row[1024];
  unsigned state = 12345u;
  kvflash_cache_config config;
  kvflash_cache *cache;
  kvflash_problem *problem;
  kvflash_route *route;
  kvflash_memory_report *report;
  void *workspace = NULL, *workspace_block = NULL;
  size_t workspace_bytes;
  int32_t seq, *page_table, kv_len[1];
  int64_t pages_per_seq, n_kv;
  double err = 0, norm = 0;
  size_t i;
  char text[4096];

  if (ktype < 0 || vtype < 0) {
    fprintf(stderr, "embed_c: unknown type\n");
    return 1;
  }
  printf("kvflash %s; K %s (%zu bytes per %d values), V %s (%zu bytes); backend %s\n", kvflash_version(),
         kvflash_type_name(ktype), kvflash_row_bytes(ktype, HEAD_DIM), HEAD_DIM, kvflash_type_name(vtype),
         kvflash_row_bytes(vtype, HEAD_DIM), kvflash_backend_name(backend));

  /* 1. A KV cache for 2 layers, 1024 tokens in pages of 16; append the prompt's K/V rows (quantized on write). */
  kvflash_cache_config_init(&config);
  config.n_layers = N_LAYERS;
  config.n_head_kv = N_HEAD_KV;
  config.d_k = config.d_v = HEAD_DIM;
  config.k_type = ktype;
  config.v_type = vtype;
  config.page_rows = 16;
  config.capacity_tokens = 1024;
  config.max_sequences = 4;
  cache = kvflash_cache_create(&config);
  if (cache == NULL) check(KVFLASH_ERROR_INVALID_ARGUMENT, "kvflash_cache_create");
  check(kvflash_cache_add_sequence(cache, &seq), "add a sequence");
  for (i = 0; i < kv_floats; ++i) k[i] = next_float(&state);
  for (i = 0; i < kv_floats; ++i) v[i] = next_float(&state);
  check(kvflash_cache_append(cache, seq, k, kv_floats, v, kv_floats, N_PROMPT), "append the prompt");
  printf("cache: %lld tokens, %lld of %lld pages used, %lld bytes\n", (long long)N_PROMPT,
         (long long)(kvflash_cache_pages_total(cache) - kvflash_cache_pages_free(cache)),
         (long long)kvflash_cache_pages_total(cache), (long long)kvflash_cache_bytes(cache));

  /* What a stored row holds: dequantize K of layer 0, token 0, head 0 and compare with what went in. */
  check(kvflash_cache_read_row(cache, seq, 0, 0, 0, 0, row, sizeof row), "read a row");
  check(kvflash_dequantize_row(ktype, row, HEAD_DIM, back), "dequantize a row");
  for (i = 0; i < HEAD_DIM; ++i) {
    err += (back[i] - k[i]) * (double)(back[i] - k[i]);
    norm += k[i] * (double)k[i];
  }
  printf("K row relative squared error: %.2e\n", err / norm);

  /* 2. One decode step of layer 0: a query row per head over the sequence, through its page table. */
  pages_per_seq = kvflash_cache_max_pages_per_seq(cache);
  page_table = alloc_or_die(sizeof(int32_t) * (size_t)pages_per_seq);
  check(kvflash_cache_fill_batch(cache, &seq, 1, pages_per_seq, page_table, (size_t)pages_per_seq, kv_len, &n_kv),
        "fill the batch");
  for (i = 0; i < N_HEAD_Q * HEAD_DIM; ++i) q[i] = next_float(&state);
  for (i = 0; i < N_HEAD_Q * HEAD_DIM; ++i) o[i] = NAN;
  problem = kvflash_problem_create();
  if (problem == NULL) check(KVFLASH_ERROR_OUT_OF_MEMORY, "kvflash_problem_create");
  check(kvflash_problem_set_shape(problem, 1, 1, n_kv, N_HEAD_Q, N_HEAD_KV, HEAD_DIM, HEAD_DIM), "set the shape");
  check(kvflash_problem_set_q(problem, q, NULL), "set Q");
  check(kvflash_problem_set_o(problem, o, NULL), "set O");
  check(kvflash_problem_set_cache_layer(problem, cache, 0, page_table, pages_per_seq), "set K/V from the cache");
  check(kvflash_problem_set_kv_len(problem, kv_len), "set kv_len");
  check(kvflash_problem_set_causal(problem, 1), "set causal");
  check(kvflash_problem_validate(problem), "validate");
  kvflash_problem_describe(problem, text, sizeof text);
  printf("problem: %s\n", text);

  /* 3. Plan: the kernel the backend takes for this step, and the workspace it needs (allocated by us, once). */
  route = kvflash_plan_route(problem, backend);
  if (route == NULL) check(KVFLASH_ERROR_INVALID_ARGUMENT, "kvflash_plan_route");
  workspace_bytes = kvflash_route_workspace_bytes(route);
  printf("route: %s, %lld split(s), workspace %zu bytes, estimated %.1f us\n", kvflash_route_kernel(route),
         (long long)kvflash_route_splits(route), workspace_bytes, kvflash_route_cost_us(route));
  if (workspace_bytes > 0) {
    workspace = aligned_workspace(workspace_bytes, kvflash_workspace_alignment(), &workspace_block);
    if (workspace == NULL) check(KVFLASH_ERROR_OUT_OF_MEMORY, "allocate the workspace");
  }

  /* 4. Attend along the route: no allocation inside, temporaries in our workspace. */
  check(kvflash_attend_route(problem, route, workspace, workspace_bytes, NULL), "attend");
  for (i = 0; i < N_HEAD_Q * HEAD_DIM; ++i) {
    if (!isfinite(o[i])) {
      fprintf(stderr, "embed_c: output %zu is not finite\n", i);
      return 1;
    }
  }
  printf("O[head 0][0..3] = %.6f %.6f %.6f %.6f\n", o[0], o[1], o[2], o[3]);

  /* Errors are codes plus a message, never a crash. */
  if (kvflash_problem_set_shape(problem, 1, 1, n_kv, 6, 4, HEAD_DIM, HEAD_DIM) != KVFLASH_OK ||
      kvflash_problem_validate(problem) == KVFLASH_OK) {
    fprintf(stderr, "embed_c: a bad head ratio was accepted\n");
    return 1;
  }
  printf("a bad problem is rejected: %s\n", kvflash_last_error());

  /* 5. The memory report: every byte we hold in a named bucket, against the 16 MiB this engine gave attention. */
  report = kvflash_memory_report_create("budget", (int64_t)16 << 20,
                                        ((int64_t)16 << 20) - kvflash_cache_bytes(cache) - (int64_t)workspace_bytes);
  if (report == NULL) check(KVFLASH_ERROR_OUT_OF_MEMORY, "kvflash_memory_report_create");
  check(kvflash_memory_report_add_cache(report, cache), "report the cache");
  check(kvflash_memory_report_add(report, "workspace", KVFLASH_MEMORY_WORKSPACE, (int64_t)workspace_bytes),
        "report the workspace");
  kvflash_memory_report_to_string(report, text, sizeof text);
  printf("memory:\n%s\n", text);

  /* Planning a deployment before allocating anything: llama3-8b, 4 sequences of 32K tokens, q8_0/q4_0 cache. */
  {
    kvflash_model *model = kvflash_model_preset("llama3-8b");
    kvflash_memory_report *plan;
    if (model == NULL) check(KVFLASH_ERROR_INVALID_ARGUMENT, "kvflash_model_preset");
    plan = kvflash_plan_memory(model, ktype, vtype, 32768, 4, 512, backend, 0, (int64_t)24 << 30);
    if (plan == NULL) check(KVFLASH_ERROR_INVALID_ARGUMENT, "kvflash_plan_memory");
    kvflash_memory_report_summary(plan, text, sizeof text);
    printf("plan for llama3-8b, 4 x 32K tokens, 24 GiB: %s\n", text);
    kvflash_memory_report_destroy(plan);
    kvflash_model_destroy(model);
  }

  kvflash_memory_report_destroy(report);
  kvflash_route_destroy(route);
  free(workspace_block);
  kvflash_problem_destroy(problem);
  kvflash_cache_destroy(cache);
  free(page_table);
  free(k);
  free(v);
  free(q);
  free(o);
  printf("embed_c: ok\n");
  return 0;
}
