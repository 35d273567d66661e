/* Embedding kvflash from C: quantize a KV cache, describe one decode step, attend over the quantized cache.
 *
 *   cc embed.c $(pkg-config --cflags --libs kvflash) -lm -o embed_c     (or find_package(kvflash), see CMakeLists.txt)
 *
 * Exits 0 on success; on any failure it prints kvflash_last_error() and exits 1. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kvflash/kvflash.h>

enum { N_HEAD_Q = 8, N_HEAD_KV = 2, HEAD_DIM = 128, N_CTX = 300 };

static int check(int status, const char *what) {
  if (status != KVFLASH_OK) {
    fprintf(stderr, "embed_c: %s failed (%s): %s\n", what, kvflash_status_name(status), kvflash_last_error());
    exit(1);
  }
  return status;
}

/* Deterministic pseudo-random floats in [-1, 1) (xorshift32): an example needs no seed plumbing. */
static float next_float(unsigned *state) {
  *state ^= *state << 13;
  *state ^= *state >> 17;
  *state ^= *state << 5;
  return (float)(*state >> 8) / 8388608.0f - 1.0f;
}

int main(void) {
  const int ktype = kvflash_type_from_name("q8_0");
  const int vtype = kvflash_type_from_name("q4_0");
  const int backend = kvflash_backend_available(KVFLASH_BACKEND_CPU) ? KVFLASH_BACKEND_CPU : KVFLASH_BACKEND_REF;
  const size_t k_row = kvflash_row_bytes(ktype, HEAD_DIM), v_row = kvflash_row_bytes(vtype, HEAD_DIM);
  const size_t n_rows = (size_t)N_HEAD_KV * N_CTX;
  unsigned state = 12345u;
  float *row = malloc(sizeof(float) * HEAD_DIM);
  float *back = malloc(sizeof(float) * HEAD_DIM);
  unsigned char *k_cache = malloc(k_row * n_rows), *v_cache = malloc(v_row * n_rows);
  float *q = malloc(sizeof(float) * N_HEAD_Q * HEAD_DIM), *o = malloc(sizeof(float) * N_HEAD_Q * HEAD_DIM);
  double err = 0, norm = 0;
  size_t r;
  int i;
  char text[1024];
  kvflash_problem *problem;

  if (ktype < 0 || vtype < 0 || !row || !back || !k_cache || !v_cache || !q || !o) {
    fprintf(stderr, "embed_c: setup failed\n");
    return 1;
  }
  printf("kvflash %s, K %s (%zu bytes/row), V %s (%zu bytes/row), backend %s\n", kvflash_version(),
         kvflash_type_name(ktype), k_row, kvflash_type_name(vtype), v_row, kvflash_backend_name(backend));

  /* 1. Quantize the cache: K and V rows [head][token], as an engine appends them. */
  for (r = 0; r < n_rows; ++r) {
    for (i = 0; i < HEAD_DIM; ++i) row[i] = next_float(&state);
    check(kvflash_quantize_row(ktype, row, HEAD_DIM, k_cache + r * k_row), "quantize K");
    check(kvflash_dequantize_row(ktype, k_cache + r * k_row, HEAD_DIM, back), "dequantize K");
    for (i = 0; i < HEAD_DIM; ++i) {
      err += (back[i] - row[i]) * (double)(back[i] - row[i]);
      norm += row[i] * (double)row[i];
    }
    for (i = 0; i < HEAD_DIM; ++i) row[i] = next_float(&state);
    check(kvflash_quantize_row(vtype, row, HEAD_DIM, v_cache + r * v_row), "quantize V");
  }
  printf("quantized %zu K and %zu V rows; K relative squared error %.2e\n", n_rows, n_rows, err / norm);

  /* 2. Describe one decode step: one query row per head, causal, over the whole cache (dense layouts). */
  for (i = 0; i < N_HEAD_Q * HEAD_DIM; ++i) q[i] = next_float(&state);
  for (i = 0; i < N_HEAD_Q * HEAD_DIM; ++i) o[i] = NAN;
  problem = kvflash_problem_create();
  if (problem == NULL) return check(KVFLASH_ERROR_OUT_OF_MEMORY, "kvflash_problem_create");
  check(kvflash_problem_set_shape(problem, 1, 1, N_CTX, N_HEAD_Q, N_HEAD_KV, HEAD_DIM, HEAD_DIM), "set shape");
  check(kvflash_problem_set_q(problem, q, NULL), "set Q");
  check(kvflash_problem_set_k(problem, ktype, k_cache, NULL), "set K");
  check(kvflash_problem_set_v(problem, vtype, v_cache, NULL), "set V");
  check(kvflash_problem_set_o(problem, o, NULL), "set O");
  check(kvflash_problem_set_causal(problem, 1), "set causal");
  check(kvflash_problem_validate(problem), "validate");
  kvflash_problem_describe(problem, text, sizeof text);
  printf("problem: %s\n", text);

  /* 3. Attend. */
  check(kvflash_attend(problem, backend, NULL, 0), "attend");
  for (i = 0; i < N_HEAD_Q * HEAD_DIM; ++i) {
    if (!isfinite(o[i])) {
      fprintf(stderr, "embed_c: output %d is not finite\n", i);
      return 1;
    }
  }
  printf("O[head 0][0..3] = %.6f %.6f %.6f %.6f\n", o[0], o[1], o[2], o[3]);

  /* Errors are codes plus a message, never a crash. */
  if (kvflash_problem_set_shape(problem, 1, 1, N_CTX, 6, 4, HEAD_DIM, HEAD_DIM) != KVFLASH_OK ||
      kvflash_problem_validate(problem) == KVFLASH_OK) {
    fprintf(stderr, "embed_c: a bad head ratio was accepted\n");
    return 1;
  }
  printf("a bad problem is rejected: %s\n", kvflash_last_error());

  kvflash_problem_destroy(problem);
  free(row);
  free(back);
  free(k_cache);
  free(v_cache);
  free(q);
  free(o);
  printf("embed_c: ok\n");
  return 0;
}
