// kv_cache_bench: bytes and per-step decode time of the pressed cache (generate_pressed: keep-all is
// stored dense, the keeps here compact, each head keeping its own count) against
// the dense one (generate), on a random LLaMA-shaped model on this machine's CPU (or --device).
//   kv_cache_bench [--ctx N] [--new N] [--runs N] [--threads N] [--device cpu|cuda]
// Prints, per system, the KV bytes after the press and the median CPU time of one decode step (the
// median over the steps of a run, then the median over runs; one libtorch thread). Not a test: a measurement.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "generate.h"
#include "kv_cache.h"

// The thread's CPU time: with one intra-op thread libtorch computes on the calling thread, and CPU
// time is far less disturbed than wall time by other jobs sharing the machine's cores.
static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct {
  double t[4096];
  int n;
} stamps;

static int stamp(int32_t id, void *ctx) {
  stamps *s = ctx;
  if (s->n < 4096) s->t[s->n++] = now_s();
  return 0;
}
static int stamp_row(int row, int32_t id, void *ctx) { return stamp(id, ctx); }

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}
static double median(double *x, int n) {
  qsort(x, (size_t)n, sizeof *x, cmp_d);
  return n % 2 ? x[n / 2] : (x[n / 2 - 1] + x[n / 2]) / 2;
}
// The median interval between consecutive tokens: one decode step each.
static double step_median(stamps *s) {
  double d[4096];
  for (int i = 1; i < s->n; i++) d[i - 1] = s->t[i] - s->t[i - 1];
  return median(d, s->n - 1);
}

// Keeps the first 4 positions and every position whose index mod 100 is below pct (a fixed,
// press-like subset), per head shifted so that heads keep different entries.
static int keep_pct(void *ctx, const llama_layer_view *v, const int *row_len, kv_keep *keep, pith_err *err) {
  int pct = *(int *)ctx;
  int64_t *pos = malloc(sizeof(int64_t) * 65536);
  for (int b = 0; b < keep->batch; b++)
    for (int h = 0; h < keep->n_kv_heads; h++) {
      int n = 0;
      for (int p = 0; p < row_len[b]; p++)
        if (p < 4 || (p * 37 + h * 11) % 100 < pct) pos[n++] = p;
      if (kv_keep_set(keep, v->layer, b, h, pos, n, err)) {
        free(pos);
        return -1;
      }
    }
  free(pos);
  return 0;
}

int main(int argc, char **argv) {
  int ctx_len = 1024, n_new = 64, runs = 3, threads = 1;
  pt_device dev = PT_CPU;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--ctx")) ctx_len = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--new")) n_new = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--runs")) runs = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--device")) {
      pith_err e = {{0}};
      if (pt_device_parse(argv[i + 1], &dev, &e)) {
        fprintf(stderr, "kv_cache_bench: --device %s\n", e.msg);
        return 2;
      }
    } else {
      fprintf(stderr, "usage: kv_cache_bench [--ctx N] [--new N] [--runs N] [--threads N] [--device cpu|cuda]\n");
      return 2;
    }
  }
  if (ctx_len < 8 || n_new < 2 || runs < 1 || n_new > 4000) {
    fprintf(stderr, "kv_cache_bench: --ctx >= 8, --new in [2, 4000], --runs >= 1\n");
    return 2;
  }
  pt_set_num_threads(threads);
  llama_config c = {.arch = LLAMA_ARCH_LLAMA, .vocab_size = 512, .dim = 256, .hidden_dim = 688, .n_layers = 4,
                    .n_heads = 8, .n_kv_heads = 2, .max_seq_len = ctx_len + 64 + n_new + 1, .rope_theta = 10000,
                    .norm_eps = 1e-5, .bos_id = -1, .eos_id = -1};
  pith_err err = {{0}};
  llama_model *m = llama_new_random(&c, 1, PT_F32, dev, &err);
  if (!m) {
    fprintf(stderr, "kv_cache_bench: %s\n", err.msg);
    return 1;
  }
  enum { NQ = 16 };
  int32_t *prompt = malloc(sizeof(int32_t) * (size_t)(ctx_len + NQ));
  uint64_t z = 7;
  for (int i = 0; i < ctx_len + NQ; i++) z = z * 6364136223846793005ULL + 1442695040888963407ULL, prompt[i] = (int32_t)((z >> 33) % 512);
  gen_config cfg = gen_config_default();
  cfg.max_new_tokens = n_new;
  printf("model: %d layers, %d heads, %d KV heads, head_dim %d, f32, %s, %d thread(s); context %d + question %d, "
         "%d new tokens, %d runs\n",
         c.n_layers, c.n_heads, c.n_kv_heads, m->cfg.head_dim, dev == PT_CPU ? "cpu" : "cuda", threads, ctx_len, NQ,
         n_new, runs);
  int64_t entry = 2LL * m->cfg.head_dim * 4;  // K and V of one (position, KV head), one layer
  int64_t dense_bytes = (int64_t)c.n_layers * c.n_kv_heads * (ctx_len + NQ) * entry;
  const char *names[] = {"dense (generate)", "pressed keep-all", "compact keep 50%", "compact keep 10%"};
  int pcts[] = {-1, 100, 50, 10};
  // Systems interleaved run by run, so that a noisy neighbour on the machine hits them alike.
  double med[4][64];
  int64_t bytes[4] = {0};
  if (runs > 64) runs = 64;
  for (int r = 0; r < runs; r++)
    for (int s = 0; s < 4; s++) {
      stamps st = {.n = 0};
      int32_t *out = NULL;
      int n_out = 0, rc;
      if (pcts[s] < 0) {
        rc = generate(m, NULL, NULL, NULL, prompt, ctx_len + NQ, &cfg, stamp, &st, &out, &n_out, &err);
        free(out);
        bytes[s] = dense_bytes;
      } else {
        const int32_t *ctxs[1] = {prompt}, *qs[1] = {prompt + ctx_len};
        int nc[1] = {ctx_len}, nq[1] = {NQ};
        gen_press_request req = {.batch = 1, .context = ctxs, .n_context = nc, .question = qs, .n_question = nq,
                                 .select = pcts[s] < 100 ? keep_pct : NULL, .select_ctx = &pcts[s]};
        gen_press_result res;
        rc = generate_pressed(m, &req, &cfg, stamp_row, &st, &res, &err);
        // After the press, plus the question's dense entries, as the dense figure counts them.
        if (rc == 0) bytes[s] = res.kv_bytes + (int64_t)c.n_layers * c.n_kv_heads * NQ * entry;
        gen_press_result_free(&res);
      }
      if (rc) {
        fprintf(stderr, "kv_cache_bench: %s: %s\n", names[s], err.msg);
        return 1;
      }
      med[s][r] = step_median(&st);
    }
  for (int s = 0; s < 4; s++)
    printf("%-18s KV bytes %10lld (%5.1f%% of dense)   decode step %8.3f ms CPU (median)\n", names[s], (long long)bytes[s],
           100.0 * bytes[s] / dense_bytes, 1e3 * median(med[s], runs));
  free(prompt);
  llama_free(m);
  return 0;
}
