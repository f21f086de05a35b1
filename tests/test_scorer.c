// The scorer's KV cache: scoring a sequence in pieces after a cached prefix gives the NLLs of one
// whole pass (what LLMLingua's iterative windows rely on), truncation keeps the prefix's K/V, a
// splice drops positions as llmlingua's eviction does, bad calls say why, and the scorer's own
// attention for small heads (8, 16; 32 stays libtorch's) gives libtorch's scores.
#include "check.h"
#include "scorer.h"

enum { N = 40 };

static llama_model *tiny_dim(int dim) {
  llama_config c = {.arch = LLAMA_ARCH_LLAMA, .vocab_size = 64, .dim = dim, .hidden_dim = 48, .n_layers = 2,
                    .n_heads = 4, .n_kv_heads = 2, .max_seq_len = 128, .rope_theta = 10000, .norm_eps = 1e-5,
                    .bos_id = -1, .eos_id = -1};
  pith_err err = {{0}};
  if (llama_config_validate(&c, &err)) return NULL;
  return llama_new_random(&c, 3, PT_F32, PT_CPU, &err);
}

static llama_model *tiny(void) { return tiny_dim(32); }  // head dim 8

// The largest gap between scorer_nll and NLLs from llama_forward's own (libtorch) attention, over
// a whole pass and over the tokens after a cached prefix of 17. -1 on a failure.
static double gap_to_libtorch(llama_model *m, const int32_t *ids, int n) {
  int V = m->cfg.vocab_size;
  float *logits = malloc((size_t)n * V * sizeof *logits), got[128], cached[128];
  int64_t buf[128];
  for (int i = 0; i < n; i++) buf[i] = ids[i];
  pith_err err = {{0}};
  pt_scope sc = pt_scope_begin();
  llama_inputs in = {.ids = pt_from_data(buf, PT_I64, PT_SHAPE(1, n), PT_CPU)};
  llama_outputs out;
  int rc = logits && llama_forward(m, &in, &out, &err) == 0 ? 0 : -1;
  if (rc == 0) {
    rc = pt_to_data(out.logits, logits, (size_t)n * V * sizeof *logits);
    llama_outputs_free(&out);
  }
  pt_scope_end(sc);
  scorer s = {.lm = m, .max_pos = m->cfg.max_seq_len};
  scorer_cache c = {0};
  if (rc == 0) rc = scorer_nll(&s, ids, n, NULL, got, &err);
  if (rc == 0) rc = scorer_nll(&s, ids, 17, &c, cached, &err);
  if (rc == 0) rc = scorer_nll(&s, ids, n, &c, cached + 17, &err);  // position 16 has no score
  scorer_cache_clear(&c);
  double worst = rc ? -1 : 0;
  for (int i = 0; rc == 0 && i < n - 1; i++) {
    const float *l = logits + (size_t)i * V;
    double mx = l[0], z = 0;
    for (int j = 1; j < V; j++) mx = fmax(mx, l[j]);
    for (int j = 0; j < V; j++) z += exp(l[j] - mx);
    double ref = mx + log(z) - l[ids[i + 1]];
    double d = fabs(got[i] - ref), dc = i != 16 ? fabs(cached[i] - ref) : 0;
    if (!(d < 1e30 && dc < 1e30)) {  // a NaN is a failure (fmax would skip it)
      worst = 1e30;
      break;
    }
    worst = fmax(worst, fmax(d, dc));
  }
  free(logits);
  printf("head dim %d: the largest gap to libtorch's scores is %g\n", m->cfg.dim / m->cfg.n_heads, worst);
  return worst;
}

int main(void) {
  llama_model *m = tiny();
  CHECK(m != NULL);
  if (!m) return check_done("test_scorer");
  scorer s = {.lm = m, .max_pos = m->cfg.max_seq_len};
  int32_t ids[N];
  for (int i = 0; i < N; i++) ids[i] = (int32_t)((i * 37 + 11) % 64);
  pith_err err = {{0}};
  float whole[N], part[N];
  CHECK(scorer_nll(&s, ids, N, NULL, whole, &err) == 0);

  // 15 tokens, then the rest after their cache: the same scores
  scorer_cache c = {0};
  CHECK(scorer_nll(&s, ids, 15, &c, part, &err) == 0);
  CHECK(c.len == 15);
  // after the cache, tokens 16..N-1 (token 15's score needs the logits at 14, inside the cache)
  CHECK(scorer_nll(&s, ids, N, &c, part + 14, &err) == 0);
  CHECK(c.len == N);
  double worst = 0;
  for (int i = 0; i < 14; i++) worst = fmax(worst, fabs(part[i] - whole[i]));
  for (int i = 14; i < N - 2; i++) worst = fmax(worst, fabs(part[i] - whole[i + 1]));
  CHECK_MSG(worst < 1e-5, "cached scores differ by %g", worst);

  // cut back to 20 and rescore from there: again the same
  CHECK(scorer_cache_truncate(&c, 20, &err) == 0 && c.len == 20);
  CHECK(scorer_nll(&s, ids, N, &c, part, &err) == 0);
  worst = 0;
  for (int i = 0; i < N - 21; i++) worst = fmax(worst, fabs(part[i] - whole[20 + i]));
  CHECK_MSG(worst < 1e-5, "scores after truncation differ by %g", worst);

  // a splice keeps [0, a) and [b, len): positions a..b-1 gone, later keys keep their rotation
  CHECK(scorer_cache_splice(&c, 5, 12, &err) == 0);
  CHECK(c.len == N - 7);
  CHECK(pt_size(c.k[0], 2) == N - 7 && pt_size(c.v[1], 2) == N - 7);
  CHECK(scorer_cache_splice(&c, 100, 200, &err) == 0 && c.len == N - 7);  // clipped: nothing to cut

  // bad calls
  CHECK(scorer_nll(&s, ids, c.len, &c, part, &err) == -1);
  CHECK_CONTAINS(err.msg, "nothing to score");
  int32_t bad[3] = {1, 2, 99};
  CHECK(scorer_nll(&s, bad, 3, NULL, part, &err) == -1);
  CHECK_CONTAINS(err.msg, "outside the vocabulary");

  // a single token: nothing scored, no error
  scorer_cache_clear(&c);
  double mean = 0;
  CHECK(scorer_mean_nll(&s, ids, 1, 0, &mean, &err) == 0 && isnan(mean));
  CHECK(scorer_mean_nll(&s, ids, N, 10, &mean, &err) == 0);
  double sum = 0;
  for (int i = 10; i < N - 1; i++) sum += whole[i];
  CHECK_NEAR(mean, sum / (N - 11), 1e-6);
  llama_free(m);

  // the small-head attention against libtorch's: head dims 8, 16 (the kernel) and 32 (libtorch's)
  int32_t longer[100];
  for (int i = 0; i < 100; i++) longer[i] = (int32_t)((i * 29 + 5) % 64);
  for (int dim = 32; dim <= 128; dim *= 2) {
    llama_model *mm = tiny_dim(dim);
    CHECK(mm != NULL);
    if (!mm) continue;
    double gap = gap_to_libtorch(mm, longer, 100);
    CHECK_MSG(gap >= 0 && gap < 2e-6, "head dim %d: scores differ from libtorch's by %g", dim / 4, gap);
    llama_free(mm);
  }
  CHECK(pt_live_handles() == 0);
  return check_done("test_scorer");
}
