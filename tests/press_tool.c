// press_tool: the C side of tests/reference/kvpress_parity.py.
//
//   press_tool keep DIR SPEC ROW [ROW...]       one prefill of the rows (comma-separated token ids,
//                                               right-padded into one batch) with the press SPEC
//                                               (models/press.h) through on_layer; prints
//                                               {"press": canonical spec, "keep": [layer][row][kv head]
//                                               [sorted context positions]} as one JSON line
//   press_tool time DIR SPEC REPS ROW [ROW...]  the median CPU milliseconds of REPS prefills (no LM
//                                               head) without and with the press, and of the presses
//                                               alone (their on_layer calls), as one JSON line
//   press_tool gen DIR SPEC N ROW [ROW...]      greedy generate_pressed (models/generate.h) of N new tokens
//                                               (no eos) for rows "CONTEXT_IDS|QUESTION_IDS" in one batch;
//                                               prints {"press": spec, "new": [row][ids], "kept": entries,
//                                               "kv_bytes": the cache after the press, "gen_s": wall seconds,
//                                               "cpu_s": the thread's CPU seconds (steadier under load)}
// SPEC may be several specs separated by ';': the command runs for each, one JSON line each.
// DIR is a Hugging Face model folder (checkpoints/hf_folder.h), loaded in f32 on the CPU; one thread.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "generate.h"
#include "hf_folder.h"
#include "press.h"

static void die(const char *what, const char *msg) {
  fprintf(stderr, "press_tool: %s: %s\n", what, msg);
  exit(1);
}

typedef struct {
  int B, T;
  int64_t *ids;  // (B, T), right-padded with 0
  unsigned char *mask;
  int *len;
} batch;

static batch parse_rows(int n, char **rows) {
  batch b = {n, 0, NULL, NULL, calloc((size_t)n, sizeof(int))};
  for (int r = 0; r < n; r++) {
    int c = 1;
    for (const char *s = rows[r]; *s; s++) c += *s == ',';
    b.len[r] = c;
    if (c > b.T) b.T = c;
  }
  b.ids = calloc((size_t)(n * b.T), sizeof *b.ids);
  b.mask = calloc((size_t)(n * b.T), 1);
  for (int r = 0; r < n; r++) {
    char *s = rows[r], *end;
    for (int j = 0; j < b.len[r]; j++) {
      b.ids[r * b.T + j] = strtoll(s, &end, 10);
      if (end == s || (*end && *end != ',')) die("ids", "a row must be comma-separated integers");
      b.mask[r * b.T + j] = 1;
      s = *end ? end + 1 : end;
    }
  }
  return b;
}

typedef struct {
  press_hook h;
  double seconds;  // time spent in the press
} timed_hook;

// The calling thread's CPU seconds: libtorch runs on this one thread (pt_set_num_threads(1)), and CPU
// time is steadier than wall time on a shared machine.
static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int timed_on_layer(const llama_layer_view *v, void *ctx, pith_err *err) {
  timed_hook *t = ctx;
  double t0 = now();
  int rc = press_on_layer(v, &t->h, err);
  t->seconds += now() - t0;
  return rc;
}

// One prefill; with a press when hook is not NULL. The forward's CPU seconds.
static double prefill(const llama_model *m, const batch *b, timed_hook *hook) {
  pith_err err;
  pt_scope s = pt_scope_begin();
  pt_tensor *ids = pt_from_data(b->ids, PT_I64, PT_SHAPE(b->B, b->T), PT_CPU);
  pt_tensor *mask = pt_from_data(b->mask, PT_BOOL, PT_SHAPE(b->B, b->T), PT_CPU);
  llama_inputs in = {.ids = ids, .mask = b->B > 1 ? mask : NULL, .no_logits = 1};
  if (hook) in.on_layer = timed_on_layer, in.on_layer_ctx = hook;
  llama_outputs out;
  double t0 = now();
  if (llama_forward(m, &in, &out, &err)) die("forward", err.msg);
  double dt = now() - t0;
  llama_outputs_free(&out);
  pt_scope_end(s);
  return dt;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

// Comma-separated ids into a malloc'd array (NULL for an empty string); the count in *n.
static int32_t *parse_ids(const char *s, int *n) {
  *n = 0;
  if (!*s) return NULL;
  int c = 1;
  for (const char *t = s; *t; t++) c += *t == ',';
  int32_t *ids = malloc(sizeof *ids * (size_t)c);
  char *end;
  for (int j = 0; j < c; j++) {
    ids[j] = (int32_t)strtol(s, &end, 10);
    if (end == s || (*end && *end != ',')) die("ids", "a row must be comma-separated integers");
    s = *end ? end + 1 : end;
  }
  *n = c;
  return ids;
}

// press_tool gen: every spec on the same rows, one batch each.
static void gen_main(const llama_model *m, const char *specs_arg, int n_new, int n_rows, char **rows) {
  int32_t **ctx = calloc((size_t)n_rows, sizeof *ctx), **q = calloc((size_t)n_rows, sizeof *q);
  int *nc = calloc((size_t)n_rows, sizeof *nc), *nq = calloc((size_t)n_rows, sizeof *nq);
  for (int r = 0; r < n_rows; r++) {
    char *bar = strchr(rows[r], '|');
    if (!bar) die("gen", "a row is CONTEXT_IDS|QUESTION_IDS");
    *bar = 0;
    ctx[r] = parse_ids(rows[r], &nc[r]);
    q[r] = parse_ids(bar + 1, &nq[r]);
  }
  char *specs = strdup(specs_arg);
  pith_err err;
  for (char *save = NULL, *one = strtok_r(specs, ";", &save); one; one = strtok_r(NULL, ";", &save)) {
    press p;
    if (press_parse(one, &p, &err)) die("spec", err.msg);
    press_selector sel = {&p, m};
    gen_press_request req = {.batch = n_rows, .context = (const int32_t *const *)ctx, .n_context = nc,
                             .question = (const int32_t *const *)q, .n_question = nq, .select = press_select,
                             .select_ctx = &sel};
    gen_config cfg = gen_config_default();
    cfg.max_new_tokens = n_new;
    gen_press_result res;
    struct timespec t0, t1, c0, c1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
    if (generate_pressed(m, &req, &cfg, NULL, NULL, &res, &err)) die("gen", err.msg);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    char spec[512];
    press_format(&p, spec, sizeof spec);
    printf("{\"press\": \"%s\", \"kept\": %lld, \"kv_bytes\": %lld, \"gen_s\": %.6f, \"cpu_s\": %.6f, \"new\": [",
           spec, (long long)res.kv_kept, (long long)res.kv_bytes,
           (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec),
           (double)(c1.tv_sec - c0.tv_sec) + 1e-9 * (double)(c1.tv_nsec - c0.tv_nsec));
    for (int r = 0; r < n_rows; r++) {
      printf("%s[", r ? ", " : "");
      for (int j = 0; j < res.n[r]; j++) printf("%s%d", j ? ", " : "", (int)res.ids[r][j]);
      printf("]");
    }
    printf("]}\n");
    fflush(stdout);
    gen_press_result_free(&res);
  }
  free(specs);
  for (int r = 0; r < n_rows; r++) free(ctx[r]), free(q[r]);
  free(ctx), free(q), free(nc), free(nq);
}

int main(int argc, char **argv) {
  int is_keep = argc >= 5 && !strcmp(argv[1], "keep"), is_time = argc >= 6 && !strcmp(argv[1], "time");
  int is_gen = argc >= 6 && !strcmp(argv[1], "gen");
  if (!is_keep && !is_time && !is_gen) {
    fprintf(stderr, "usage: press_tool keep DIR SPEC ROW [ROW...] | press_tool time DIR SPEC REPS ROW [ROW...] | "
                    "press_tool gen DIR SPEC N CTX|Q [CTX|Q...]\n");
    return 2;
  }
  pith_err err;
  pt_set_num_threads(1);
  llama_model *m = hf_model_load(argv[2], PT_F32, PT_CPU, &err);
  if (!m) die("load", err.msg);
  if (is_gen) {
    int n = atoi(argv[4]);
    if (n < 1) die("gen", "N must be >= 1");
    gen_main(m, argv[3], n, argc - 5, argv + 5);
    llama_free(m);
    return 0;
  }
  int first_row = is_keep ? 4 : 5;
  batch b = parse_rows(argc - first_row, argv + first_row);
  // SPEC may list several presses separated by ';' (one output line each): one model load for all.
  char *specs = strdup(argv[3]);
  for (char *save = NULL, *one = strtok_r(specs, ";", &save); one; one = strtok_r(NULL, ";", &save)) {
    press p;
    if (press_parse(one, &p, &err)) die("spec", err.msg);
    kv_keep *keep = kv_keep_new(m->cfg.n_layers, b.B, m->cfg.n_kv_heads, &err);
    if (!keep) die("keep", err.msg);
    timed_hook hook = {{&p, m, b.len, keep}, 0};
    char spec[512];
    press_format(&p, spec, sizeof spec);

    if (is_keep) {
      prefill(m, &b, &hook);
      printf("{\"press\": \"%s\", \"keep\": [", spec);
      for (int l = 0; l < keep->n_layers; l++) {
        printf("%s[", l ? ", " : "");
        for (int r = 0; r < b.B; r++) {
          printf("%s[", r ? ", " : "");
          for (int h = 0; h < keep->n_kv_heads; h++) {
            int i = kv_keep_index(keep, l, r, h);
            printf("%s[", h ? ", " : "");
            for (int j = 0; j < keep->n[i]; j++) printf("%s%lld", j ? ", " : "", (long long)keep->pos[i][j]);
            printf("]");
          }
          printf("]");
        }
        printf("]");
      }
      printf("]}\n");
    } else {
      int reps = atoi(argv[4]);
      if (reps < 1) die("time", "REPS must be >= 1");
      double *plain = calloc((size_t)reps, sizeof *plain), *with = calloc((size_t)reps, sizeof *with),
             *alone = calloc((size_t)reps, sizeof *alone);
      prefill(m, &b, NULL), prefill(m, &b, &hook);  // warm up
      for (int i = 0; i < reps; i++) {
        plain[i] = prefill(m, &b, NULL);
        hook.seconds = 0;
        with[i] = prefill(m, &b, &hook);
        alone[i] = hook.seconds;
      }
      qsort(plain, (size_t)reps, sizeof *plain, cmp_double);
      qsort(with, (size_t)reps, sizeof *with, cmp_double);
      qsort(alone, (size_t)reps, sizeof *alone, cmp_double);
      printf("{\"press\": \"%s\", \"rows\": %d, \"tokens\": %d, \"prefill_ms\": %.3f, \"prefill_press_ms\": %.3f, "
             "\"press_ms\": %.3f}\n", spec, b.B, b.T, plain[reps / 2] * 1e3, with[reps / 2] * 1e3, alone[reps / 2] * 1e3);
      free(plain), free(with), free(alone);
    }
    kv_keep_free(keep);
  }
  free(specs);
  llama_free(m);
  free(b.ids), free(b.mask), free(b.len);
  return 0;
}
