// The scorer's KV cache: scoring a sequence in pieces after a cached prefix gives the NLLs of one
// whole pass (what LLMLingua's iterative windows rely on), truncation keeps the prefix's K/V, a
// splice drops positions as llmlingua's eviction does, and bad calls say why.
#include "check.h"
#include "scorer.h"

enum { N = 40 };

static llama_model *tiny(void) {
  llama_config c = {.arch = LLAMA_ARCH_LLAMA, .vocab_size = 64, .dim = 32, .hidden_dim = 48, .n_layers = 2,
                    .n_heads = 4, .n_kv_heads = 2, .max_seq_len = 128, .rope_theta = 10000, .norm_eps = 1e-5,
                    .bos_id = -1, .eos_id = -1};
  pith_err err = {{0}};
  if (llama_config_validate(&c, &err)) return NULL;
  return llama_new_random(&c, 3, PT_F32, PT_CPU, &err);
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
  CHECK(pt_live_handles() == 0);
  return check_done("test_scorer");
}
