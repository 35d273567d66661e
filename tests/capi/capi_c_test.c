/* The C API from C: compiled as strict C99 (-std=c99 -pedantic -Werror) against the shared library, so the header
 * stays C and the exported symbols are the ones a C engine links. Exits 0 when every check holds. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kvflash/kvflash.h"
#include "kvflash/version.h"

static int failures = 0;

#define CHECK(cond)                                                   \
  do {                                                                \
    if (!(cond)) {                                                    \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      failures++;                                                     \
    }                                                                 \
  } while (0)

/* A small deterministic generator (xorshift64*), so the inputs are fresh numbers and never all zeros. */
static unsigned long long rng_state = 0x9e3779b97f4a7c15ULL;
static float next_uniform(void) {
  unsigned long long x = rng_state;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  rng_state = x;
  return (float)((x * 0x2545f4914f6cdd1dULL) >> 40) / 16777216.0f * 2.0f - 1.0f;
}

static void test_version(void) {
  CHECK(strcmp(kvflash_version(), KVFLASH_VERSION) == 0);
  CHECK(strcmp(kvflash_last_error(), "") == 0);
}

static void test_types(void) {
  int t;
  CHECK(kvflash_type_from_name("q4_0") == KVFLASH_TYPE_Q4_0);
  CHECK(kvflash_type_from_name("turbo3") == KVFLASH_TYPE_TURBO3);
  CHECK(kvflash_type_from_name("q4_k") < 0);
  CHECK(kvflash_type_from_name("") < 0);
  CHECK(kvflash_type_from_name(NULL) < 0);
  for (t = 0; t < kvflash_type_count(); ++t) CHECK(kvflash_type_from_name(kvflash_type_name(t)) == t);
  CHECK(kvflash_type_name(kvflash_type_count()) == NULL);
  CHECK(kvflash_row_bytes(KVFLASH_TYPE_F32, 3) == 12);
  CHECK(kvflash_row_bytes(KVFLASH_TYPE_Q8_0, 64) == 68);
  CHECK(kvflash_row_bytes(KVFLASH_TYPE_Q4_0, 128) == 72);
  CHECK(kvflash_row_bytes(KVFLASH_TYPE_TURBO3, 256) == 100);
  CHECK(kvflash_row_bytes(KVFLASH_TYPE_Q8_0, 33) == 0);
  CHECK(kvflash_row_bytes(KVFLASH_TYPE_TURBO4, 64) == 0);
  CHECK(kvflash_row_bytes(KVFLASH_TYPE_F16, -2) == 0);
  CHECK(kvflash_row_bytes(99, 32) == 0);
  CHECK(kvflash_stored_dim(KVFLASH_TYPE_TURBO2, 96) == 128);
  CHECK(kvflash_stored_dim(KVFLASH_TYPE_Q8_0, 96) == 96);
}

/* q8_0 of x = {127, -2.5, 2, 3, ..., 31}: amax 127 gives d = 1 (fp16 0x3c00); q = roundf(x / d), and roundf
 * rounds -2.5 away from zero to -3. */
static void test_quantize_golden(void) {
  float x[32];
  unsigned char got[34], want[34];
  float back[32];
  int j;
  x[0] = 127.0f;
  x[1] = -2.5f;
  for (j = 2; j < 32; ++j) x[j] = (float)j;
  want[0] = 0x00;
  want[1] = 0x3c;
  want[2] = 127;
  want[3] = (unsigned char)(signed char)-3;
  for (j = 2; j < 32; ++j) want[2 + j] = (unsigned char)j;
  memset(got, 0xAB, sizeof got);
  CHECK(kvflash_quantize_row(KVFLASH_TYPE_Q8_0, x, 32, got) == KVFLASH_OK);
  CHECK(memcmp(got, want, sizeof want) == 0);
  CHECK(kvflash_dequantize_row(KVFLASH_TYPE_Q8_0, got, 32, back) == KVFLASH_OK);
  CHECK(back[0] == 127.0f && back[1] == -3.0f && back[31] == 31.0f);
}

static void test_round_trips(void) {
  float x[256], back[256];
  unsigned char bytes[1024];
  int t, j;
  for (t = 0; t < kvflash_type_count(); ++t) {
    double err = 0, norm = 0;
    for (j = 0; j < 256; ++j) x[j] = next_uniform();
    for (j = 0; j < 256; ++j) back[j] = NAN;
    CHECK(kvflash_row_bytes(t, 256) <= sizeof bytes);
    CHECK(kvflash_quantize_row(t, x, 256, bytes) == KVFLASH_OK);
    CHECK(kvflash_dequantize_row(t, bytes, 256, back) == KVFLASH_OK);
    for (j = 0; j < 256; ++j) {
      err += (back[j] - x[j]) * (double)(back[j] - x[j]);
      norm += x[j] * (double)x[j];
    }
    /* 2-bit turbo is the coarsest type: its relative squared error on uniform data stays well below 0.2. */
    if (!(err / norm < 0.2)) {
      fprintf(stderr, "type %s: relative squared error %g\n", kvflash_type_name(t), err / norm);
      failures++;
    }
  }
}

static void test_errors(void) {
  float x[32] = {1.0f};
  unsigned char out[64];
  CHECK(kvflash_quantize_row(KVFLASH_TYPE_Q8_0, x, 31, out) == KVFLASH_ERROR_INVALID_ARGUMENT);
  CHECK(strstr(kvflash_last_error(), "n = 31") != NULL);
  CHECK(kvflash_quantize_row(42, x, 32, out) == KVFLASH_ERROR_INVALID_ARGUMENT);
  CHECK(strstr(kvflash_last_error(), "type = 42") != NULL);
  CHECK(kvflash_quantize_row(KVFLASH_TYPE_Q8_0, NULL, 32, out) == KVFLASH_ERROR_INVALID_ARGUMENT);
  CHECK(kvflash_dequantize_row(KVFLASH_TYPE_Q4_0, out, 32, NULL) == KVFLASH_ERROR_INVALID_ARGUMENT);
  CHECK(strstr(kvflash_last_error(), "dst") != NULL);
  CHECK(strcmp(kvflash_status_name(KVFLASH_ERROR_INVALID_ARGUMENT), "invalid_argument") == 0);
}

/* One head, one query, two f32 keys: O = softmax(scale * q.k) . V, computed here by hand in double. */
static void test_attend(void) {
  float q[4] = {0.5f, -1.0f, 0.25f, 2.0f};
  float k[8] = {1.0f, 0.5f, -0.5f, 0.75f, -1.0f, 0.25f, 1.5f, -0.5f};
  float v[8] = {1.0f, 2.0f, 3.0f, 4.0f, -5.0f, 6.0f, -7.0f, 8.0f};
  float o[4] = {NAN, NAN, NAN, NAN};
  double s0 = 0, s1 = 0, p0, p1, m;
  char text[512];
  int j;
  kvflash_problem *p = kvflash_problem_create();
  CHECK(p != NULL);
  if (p == NULL) return;
  CHECK(kvflash_problem_set_shape(p, 1, 1, 2, 1, 1, 4, 4) == KVFLASH_OK);
  CHECK(kvflash_problem_set_q(p, q, NULL) == KVFLASH_OK);
  CHECK(kvflash_problem_set_k(p, KVFLASH_TYPE_F32, k, NULL) == KVFLASH_OK);
  CHECK(kvflash_problem_set_v(p, KVFLASH_TYPE_F32, v, NULL) == KVFLASH_OK);
  CHECK(kvflash_problem_set_o(p, o, NULL) == KVFLASH_OK);
  CHECK(kvflash_problem_set_scale(p, 0.5) == KVFLASH_OK);
  CHECK(kvflash_problem_validate(p) == KVFLASH_OK);
  CHECK(kvflash_problem_describe(p, text, sizeof text) > 0);
  CHECK(kvflash_attend(p, KVFLASH_BACKEND_REF, NULL, 0) == KVFLASH_OK);
  for (j = 0; j < 4; ++j) {
    s0 += 0.5 * q[j] * (double)k[j];
    s1 += 0.5 * q[j] * (double)k[4 + j];
  }
  m = s0 > s1 ? s0 : s1;
  p0 = exp(s0 - m) / (exp(s0 - m) + exp(s1 - m));
  p1 = 1.0 - p0;
  for (j = 0; j < 4; ++j) CHECK(fabs(o[j] - (p0 * v[j] + p1 * v[4 + j])) < 1e-5);

  /* A bad shape is an error code and a message naming the field, never a crash. */
  CHECK(kvflash_problem_set_shape(p, 1, 1, 2, 3, 2, 4, 4) == KVFLASH_OK);
  CHECK(kvflash_problem_validate(p) == KVFLASH_ERROR_INVALID_ARGUMENT);
  CHECK(strstr(kvflash_last_error(), "n_head_kv") != NULL);
  CHECK(kvflash_attend(p, KVFLASH_BACKEND_REF, NULL, 0) == KVFLASH_ERROR_INVALID_ARGUMENT);
  CHECK(kvflash_problem_set_k(p, 77, k, NULL) == KVFLASH_ERROR_INVALID_ARGUMENT);
  CHECK(kvflash_problem_validate(NULL) == KVFLASH_ERROR_INVALID_ARGUMENT);
  kvflash_problem_destroy(p);
}

/* Planning from C: a route and its explanation, a model's workspace plan, a memory report over a cache. */
static void test_plan_cache_and_report(void) {
  float q[2 * 64], o[2 * 64], k[2 * 40 * 64], v[2 * 40 * 64];
  kvflash_cache_config config;
  kvflash_cache *cache;
  kvflash_problem *p;
  kvflash_route *route;
  kvflash_model *model;
  kvflash_memory_report *report;
  kvflash_workspace_plan plan;
  int32_t seq = -1, page_table[8], kv_len[1];
  int64_t n_kv = 0;
  char text[2048];
  int i;
  for (i = 0; i < 2 * 40 * 64; ++i) k[i] = next_uniform();
  for (i = 0; i < 2 * 40 * 64; ++i) v[i] = next_uniform();
  for (i = 0; i < 2 * 64; ++i) q[i] = next_uniform();
  for (i = 0; i < 2 * 64; ++i) o[i] = NAN;

  kvflash_cache_config_init(&config);
  config.n_layers = 2;
  config.n_head_kv = 1;
  config.d_k = config.d_v = 64;
  config.k_type = KVFLASH_TYPE_Q8_0;
  config.v_type = KVFLASH_TYPE_Q4_0;
  config.n_pages = 8;
  config.max_seq_tokens = 128;
  cache = kvflash_cache_create(&config);
  CHECK(cache != NULL);
  if (cache == NULL) return;
  CHECK(kvflash_cache_add_sequence(cache, &seq) == KVFLASH_OK);
  CHECK(kvflash_cache_append(cache, seq, k, 2 * 40 * 64, v, 2 * 40 * 64, 40) == KVFLASH_OK);
  CHECK(kvflash_cache_max_pages_per_seq(cache) == 8);
  CHECK(kvflash_cache_fill_batch(cache, &seq, 1, 8, page_table, 8, kv_len, &n_kv) == KVFLASH_OK);
  CHECK(n_kv == 40 && kv_len[0] == 40);

  p = kvflash_problem_create();
  CHECK(kvflash_problem_set_shape(p, 1, 1, n_kv, 2, 1, 64, 64) == KVFLASH_OK);
  CHECK(kvflash_problem_set_q(p, q, NULL) == KVFLASH_OK);
  CHECK(kvflash_problem_set_o(p, o, NULL) == KVFLASH_OK);
  CHECK(kvflash_problem_set_cache_layer(p, cache, 1, page_table, 8) == KVFLASH_OK);
  CHECK(kvflash_problem_set_kv_len(p, kv_len) == KVFLASH_OK);
  route = kvflash_plan_route(p, KVFLASH_BACKEND_REF);
  CHECK(route != NULL);
  if (route != NULL) {
    CHECK(strcmp(kvflash_route_kernel(route), "ref.generic") == 0);
    CHECK(kvflash_explain(p, KVFLASH_BACKEND_REF, text, sizeof text) > 0 && strstr(text, "ref.generic") != NULL);
    CHECK(kvflash_route_workspace_bytes(route) == 0);
    CHECK(kvflash_attend_route(p, route, NULL, 0, NULL) == KVFLASH_OK);
    for (i = 0; i < 2 * 64; ++i) CHECK(isfinite(o[i]));
    kvflash_route_destroy(route);
  }

  model = kvflash_model_preset("llama3-8b");
  CHECK(model != NULL);
  plan.struct_size = sizeof plan;
  CHECK(kvflash_plan_workspace(model, KVFLASH_TYPE_Q8_0, KVFLASH_TYPE_Q8_0, KVFLASH_BACKEND_REF, 4, 64, 25000,
                               &plan) == KVFLASH_OK);
  CHECK(plan.total_bytes >= 0);
  kvflash_model_destroy(model);

  report = kvflash_memory_report_create("budget", (int64_t)1 << 30, (int64_t)1 << 29);
  CHECK(kvflash_memory_report_add_cache(report, cache) == KVFLASH_OK);
  CHECK(kvflash_memory_report_bytes(report, KVFLASH_MEMORY_KV_CACHE) == 2 * kvflash_cache_layer_bytes(cache));
  CHECK(kvflash_memory_report_summary(report, text, sizeof text) > 0 && strstr(text, "unaccounted") != NULL);
  kvflash_memory_report_destroy(report);
  kvflash_problem_destroy(p);
  kvflash_cache_destroy(cache);
}

int main(void) {
  test_version();
  test_types();
  test_quantize_golden();
  test_round_trips();
  test_errors();
  test_attend();
  test_plan_cache_and_report();
  if (failures != 0) {
    fprintf(stderr, "capi_c_test: %d checks failed\n", failures);
    return 1;
  }
  printf("capi_c_test: all checks passed\n");
  return 0;
}
