// test_generate: generation with a KV cache against the same model run without one. Every token
// the cached loop picks greedily must be the argmax of a full forward over the whole sequence so
// far (with the initial prefix, the LoRA, a sliding window); the sampler is deterministic per
// seed, its frequencies follow the softmax, top_p keeps the nucleus; eos, the callback and the
// context limit stop; bad configs fail with a message; no tensor handle leaks.
#include <stdint.h>

#include "check.h"
#include "generate.h"
#include "lora.h"

enum { NEW = 24 };

static llama_config small_config(void) {
  return (llama_config){.arch = LLAMA_ARCH_LLAMA, .vocab_size = 64, .dim = 32, .hidden_dim = 64, .n_layers = 2,
                        .n_heads = 4, .n_kv_heads = 2, .max_seq_len = 128, .bos_id = -1, .eos_id = -1};
}

// A random model whose logits are spread enough that greedy decoding wanders over the vocabulary.
static llama_model *small_model(llama_config c, uint64_t seed) {
  pith_err err = {{0}};
  llama_model *m = llama_new_random(&c, seed, PT_F32, PT_CPU, &err);
  CHECK_MSG(m != NULL, "%s", err.msg);
  if (!m) exit(1);
  pt_scope s = pt_scope_begin();
  pt_copy_(m->lm_head, pt_mul_scalar(m->lm_head, 40));
  pt_copy_(m->embed, pt_mul_scalar(m->embed, 20));
  CHECK(pt_ok());
  pt_scope_end(s);
  return m;
}

// The argmax of the last position of one full forward over seq (len), no cache.
static int32_t full_next(const llama_model *m, const lora_adapter *lora, pt_tensor *const *pk, pt_tensor *const *pv,
                         const int32_t *seq, int len) {
  int was = pt_set_grad_enabled(0);
  pt_scope s = pt_scope_begin();
  pt_tensor *ids = pt_to_dtype(pt_from_data(seq, PT_I32, PT_SHAPE(1, len), PT_CPU), PT_I64);
  llama_inputs in = {.ids = ids, .prefix_k = pk, .prefix_v = pv, .lora = lora};
  llama_outputs o;
  pith_err err = {{0}};
  int32_t id = -1;
  if (llama_forward(m, &in, &o, &err) == 0) {
    id = (int32_t)pt_item(pt_argmax(pt_slice(o.logits, 1, len - 1, len), -1, 0));
    llama_outputs_free(&o);
  }
  CHECK_MSG(id >= 0, "full forward: %s %s", err.msg, pt_error());
  pt_scope_end(s);
  pt_set_grad_enabled(was);
  return id;
}

// Greedy continuation of prompt by full forwards; returns how many of got (n) match it.
static int count_matching_full(const llama_model *m, const lora_adapter *lora, pt_tensor *const *pk,
                               pt_tensor *const *pv, const int32_t *prompt, int n_prompt, const int32_t *got, int n) {
  int32_t seq[256];
  memcpy(seq, prompt, sizeof(int32_t) * (size_t)n_prompt);
  for (int i = 0; i < n; i++) {
    int32_t want = full_next(m, lora, pk, pv, seq, n_prompt + i);
    if (want != got[i]) {
      fprintf(stderr, "token %d: cached %d, full forward %d\n", i, got[i], want);
      return i;
    }
    seq[n_prompt + i] = got[i];
  }
  return n;
}

static int distinct(const int32_t *x, int n) {
  int seen[1024] = {0}, d = 0;
  for (int i = 0; i < n; i++) d += !seen[x[i]]++;
  return d;
}

// generate() with the handle count checked around it; returns its status.
static int gen(const llama_model *m, const lora_adapter *lora, pt_tensor *const *pk, pt_tensor *const *pv,
               const int32_t *prompt, int n_prompt, const gen_config *cfg, int32_t **out, int *n_out, pith_err *err) {
  size_t live = pt_live_handles();
  int rc = generate(m, lora, pk, pv, prompt, n_prompt, cfg, NULL, NULL, out, n_out, err);
  CHECK_MSG(pt_live_handles() == live, "%zu handles before generate, %zu after", live, pt_live_handles());
  CHECK(pt_ok());
  return rc;
}

static void test_greedy_matches_full(const llama_model *m, const lora_adapter *lora, const char *what) {
  const int32_t prompt[] = {3, 17, 42, 5, 9};
  gen_config cfg = gen_config_default();
  cfg.max_new_tokens = NEW;
  int32_t *out = NULL;
  int n = 0;
  pith_err err = {{0}};
  int rc = gen(m, lora, NULL, NULL, prompt, 5, &cfg, &out, &n, &err);
  CHECK_MSG(rc == 0, "%s: %s", what, err.msg);
  CHECK_MSG(n == NEW, "%s: %d tokens", what, n);
  CHECK_MSG(count_matching_full(m, lora, NULL, NULL, prompt, 5, out, n) == n, "%s: cached greedy differs", what);
  CHECK_MSG(distinct(out, n) >= 4, "%s: only %d distinct tokens: the test would be weak", what, distinct(out, n));
  free(out);
}

static void test_prefix(const llama_model *m) {
  enum { P = 3 };
  const llama_config *c = &m->cfg;
  pt_tensor *pk[8], *pv[8];
  pt_gen *g = pt_gen_new(11, PT_CPU);
  pt_scope s = pt_scope_begin();
  for (int l = 0; l < c->n_layers; l++) {
    pk[l] = pt_keep(pt_randn(PT_SHAPE(1, c->n_kv_heads, P, c->head_dim), PT_F32, PT_CPU, g));
    pv[l] = pt_keep(pt_mul_scalar(pt_randn(PT_SHAPE(1, c->n_kv_heads, P, c->head_dim), PT_F32, PT_CPU, g), 3));
  }
  pt_scope_end(s);
  pt_gen_free(g);
  const int32_t prompt[] = {7, 1, 60};
  gen_config cfg = gen_config_default();
  cfg.max_new_tokens = NEW;
  int32_t *with = NULL, *without = NULL;
  int n = 0, n2 = 0;
  pith_err err = {{0}};
  CHECK_MSG(gen(m, NULL, pk, pv, prompt, 3, &cfg, &with, &n, &err) == 0, "%s", err.msg);
  CHECK(n == NEW);
  CHECK_MSG(count_matching_full(m, NULL, pk, pv, prompt, 3, with, n) == n, "cached greedy after a prefix differs");
  // The prefix matters (else the comparison above proves little).
  CHECK(gen(m, NULL, NULL, NULL, prompt, 3, &cfg, &without, &n2, &err) == 0);
  CHECK(n2 == n && memcmp(with, without, sizeof(int32_t) * (size_t)n) != 0);
  // The caller's prefix is untouched.
  CHECK(pt_size(pk[0], 2) == P && pt_size(pv[1], 2) == P);
  // Batch size 1 only.
  pt_tensor *bk[8], *bv[8];
  for (int l = 0; l < c->n_layers; l++) {
    bk[l] = pt_keep(pt_zeros(PT_SHAPE(2, c->n_kv_heads, P, c->head_dim), PT_F32, PT_CPU));
    bv[l] = pt_keep(pt_zeros(PT_SHAPE(2, c->n_kv_heads, P, c->head_dim), PT_F32, PT_CPU));
  }
  int32_t *bad = NULL;
  err.msg[0] = 0;
  CHECK(gen(m, NULL, bk, bv, prompt, 3, &cfg, &bad, &n2, &err) == -1 && bad == NULL);
  CHECK_CONTAINS(err.msg, "batch size 1");
  // A prefix of the wrong head_dim fails in the forward, with a message and no leak.
  for (int l = 0; l < c->n_layers; l++) {
    pt_free(bk[l]), pt_free(bv[l]);
    bk[l] = pt_keep(pt_zeros(PT_SHAPE(1, c->n_kv_heads, P, c->head_dim + 2), PT_F32, PT_CPU));
    bv[l] = pt_keep(pt_zeros(PT_SHAPE(1, c->n_kv_heads, P, c->head_dim + 2), PT_F32, PT_CPU));
  }
  err.msg[0] = 0;
  CHECK(gen(m, NULL, bk, bv, prompt, 3, &cfg, &bad, &n2, &err) == -1 && bad == NULL);
  CHECK_CONTAINS(err.msg, "prefix K/V");
  for (int l = 0; l < c->n_layers; l++) pt_free(bk[l]), pt_free(bv[l]), pt_free(pk[l]), pt_free(pv[l]);
  free(with);
  free(without);
}

static void test_lora(const llama_model *m) {
  pith_err err = {{0}};
  unsigned targets = 0;
  CHECK(lora_parse_targets("all", &targets, &err) == 0);
  lora_adapter *lora = lora_new(m, (lora_config){.rank = 4, .alpha = 8, .targets = targets}, 5, &err);
  CHECK_MSG(lora != NULL, "%s", err.msg);
  if (!lora) return;
  pt_gen *g = pt_gen_new(3, PT_CPU);
  pt_scope s = pt_scope_begin();
  for (int l = 0; l < lora->n_layers; l++)
    for (int p = 0; p < LLAMA_N_PROJ; p++)
      if (lora->b[l][p]) pt_copy_(lora->b[l][p], pt_randn(pt_shape_of(lora->b[l][p]), PT_F32, PT_CPU, g));
  CHECK(pt_ok());
  pt_scope_end(s);
  pt_gen_free(g);
  test_greedy_matches_full(m, lora, "with LoRA");
  // The adapter changes the tokens.
  const int32_t prompt[] = {3, 17, 42, 5, 9};
  gen_config cfg = gen_config_default();
  cfg.max_new_tokens = NEW;
  int32_t *a = NULL, *b = NULL;
  int na = 0, nb = 0;
  CHECK(gen(m, lora, NULL, NULL, prompt, 5, &cfg, &a, &na, &err) == 0);
  CHECK(gen(m, NULL, NULL, NULL, prompt, 5, &cfg, &b, &nb, &err) == 0);
  CHECK(na == nb && memcmp(a, b, sizeof(int32_t) * (size_t)na) != 0);
  free(a);
  free(b);
  lora_free(lora);
}

static void test_sampling(const llama_model *m, const int32_t *greedy, int n_greedy) {
  const int32_t prompt[] = {3, 17, 42, 5, 9};
  gen_config cfg = gen_config_default();
  cfg.max_new_tokens = NEW;
  cfg.temperature = 1.5;
  cfg.seed = 7;
  int32_t *a = NULL, *b = NULL, *c = NULL, *d = NULL;
  int na = 0, nb = 0, nc = 0, nd = 0;
  pith_err err = {{0}};
  CHECK(gen(m, NULL, NULL, NULL, prompt, 5, &cfg, &a, &na, &err) == 0);
  CHECK(gen(m, NULL, NULL, NULL, prompt, 5, &cfg, &b, &nb, &err) == 0);
  CHECK_MSG(na == NEW && nb == na && memcmp(a, b, sizeof(int32_t) * (size_t)na) == 0, "same seed, different tokens");
  cfg.seed = 8;
  CHECK(gen(m, NULL, NULL, NULL, prompt, 5, &cfg, &c, &nc, &err) == 0);
  CHECK_MSG(nc == na && memcmp(a, c, sizeof(int32_t) * (size_t)na) != 0, "seeds 7 and 8 gave the same tokens");
  CHECK_MSG(memcmp(a, greedy, sizeof(int32_t) * (size_t)n_greedy) != 0, "sampling gave the greedy tokens");
  for (int i = 0; i < na; i++) CHECK(a[i] >= 0 && a[i] < m->cfg.vocab_size);
  // A tiny nucleus is the most likely token alone: greedy, whatever the seed and temperature.
  cfg.top_p = 1e-9;
  cfg.seed = 99;
  CHECK(gen(m, NULL, NULL, NULL, prompt, 5, &cfg, &d, &nd, &err) == 0);
  CHECK_MSG(nd == n_greedy && memcmp(d, greedy, sizeof(int32_t) * (size_t)nd) == 0, "top_p 1e-9 is not greedy");
  free(a), free(b), free(c), free(d);
}

static int count_calls(int32_t id, void *ctx) {
  int *calls = ctx;
  (void)id;
  return ++*calls == 3;  // stop after the third token
}

static void test_stops(const llama_model *m, const int32_t *greedy, int n_greedy) {
  const int32_t prompt[] = {3, 17, 42, 5, 9};
  gen_config cfg = gen_config_default();
  cfg.max_new_tokens = NEW;
  pith_err err = {{0}};
  int32_t *out = NULL;
  int n = 0;
  // eos: the first occurrence of greedy[6] ends it (eos kept); a second, unused id changes nothing.
  int k = 6, first = 0;
  while (greedy[first] != greedy[k]) first++;
  int32_t eos[2] = {-5, greedy[k]};
  cfg.eos_ids = eos;
  cfg.n_eos = 2;
  CHECK(gen(m, NULL, NULL, NULL, prompt, 5, &cfg, &out, &n, &err) == 0);
  CHECK_MSG(n == first + 1 && out[n - 1] == greedy[k] && memcmp(out, greedy, sizeof(int32_t) * (size_t)n) == 0,
            "eos %d: %d tokens, want %d", greedy[k], n, first + 1);
  free(out);
  cfg.n_eos = 0;
  cfg.eos_ids = NULL;
  // max_new_tokens
  cfg.max_new_tokens = 1;
  CHECK(gen(m, NULL, NULL, NULL, prompt, 5, &cfg, &out, &n, &err) == 0);
  CHECK(n == 1 && out[0] == greedy[0]);
  free(out);
  // The callback sees each token and stops generation.
  cfg.max_new_tokens = NEW;
  int calls = 0;
  size_t live = pt_live_handles();
  CHECK(generate(m, NULL, NULL, NULL, prompt, 5, &cfg, count_calls, &calls, &out, &n, &err) == 0);
  CHECK(pt_live_handles() == live);
  CHECK(calls == 3 && n == 3 && memcmp(out, greedy, sizeof(int32_t) * 3) == 0);
  free(out);
  (void)n_greedy;
}

static void test_context_limit(void) {
  llama_config c = small_config();
  c.max_seq_len = 16;
  llama_model *m = small_model(c, 4);
  const int32_t prompt[16] = {1, 2, 3, 4, 5};
  gen_config cfg = gen_config_default();
  cfg.max_new_tokens = 100;
  pith_err err = {{0}};
  int32_t *out = NULL;
  int n = 0;
  CHECK(gen(m, NULL, NULL, NULL, prompt, 5, &cfg, &out, &n, &err) == 0);
  CHECK_MSG(n == 11, "%d tokens after 5 in 16 positions", n);
  free(out);
  out = NULL;
  CHECK(gen(m, NULL, NULL, NULL, prompt, 16, &cfg, &out, &n, &err) == -1 && out == NULL);
  CHECK_CONTAINS(err.msg, "max_position_embeddings");
  llama_free(m);
}

static void test_sliding_window(void) {
  llama_config c = small_config();
  c.arch = LLAMA_ARCH_MISTRAL;
  c.sliding_window = 6;
  llama_model *m = small_model(c, 9);
  test_greedy_matches_full(m, NULL, "sliding window 6");
  llama_free(m);
}

static void test_errors(const llama_model *m) {
  const int32_t prompt[] = {3, 17, 42};
  int32_t bad_prompt[] = {3, 64};
  int32_t *out = (int32_t *)1;
  int n = 7;
  pith_err err;
  gen_config ok = gen_config_default();
  struct {
    gen_config cfg;
    const char *want;
  } cases[] = {
    {{.max_new_tokens = 0, .top_p = 1}, "max_new_tokens"},
    {{.max_new_tokens = -3, .top_p = 1}, "max_new_tokens"},
    {{.max_new_tokens = 4, .temperature = -1, .top_p = 1}, "temperature"},
    {{.max_new_tokens = 4, .temperature = NAN, .top_p = 1}, "temperature"},
    {{.max_new_tokens = 4, .temperature = INFINITY, .top_p = 1}, "temperature"},
    {{.max_new_tokens = 4, .top_p = 0}, "top_p"},
    {{.max_new_tokens = 4, .top_p = 1.5}, "top_p"},
    {{.max_new_tokens = 4, .top_p = NAN}, "top_p"},
    {{.max_new_tokens = 4, .top_p = 1, .n_eos = 2}, "eos_ids"},
    {{.max_new_tokens = 4, .top_p = 1, .n_eos = -1}, "n_eos"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    err.msg[0] = 0;
    CHECK_MSG(gen(m, NULL, NULL, NULL, prompt, 3, &cases[i].cfg, &out, &n, &err) == -1, "case %zu", i);
    CHECK(out == NULL && n == 0);
    CHECK_CONTAINS(err.msg, cases[i].want);
  }
  err.msg[0] = 0;
  CHECK(gen(m, NULL, NULL, NULL, prompt, 0, &ok, &out, &n, &err) == -1);
  CHECK_CONTAINS(err.msg, "empty");
  err.msg[0] = 0;
  CHECK(gen(m, NULL, NULL, NULL, bad_prompt, 2, &ok, &out, &n, &err) == -1);
  CHECK_CONTAINS(err.msg, "id 64");
  err.msg[0] = 0;
  CHECK(gen(m, NULL, NULL, NULL, prompt, 3, NULL, &out, &n, &err) == -1);
  CHECK_CONTAINS(err.msg, "config");
  err.msg[0] = 0;
  CHECK(gen(NULL, NULL, NULL, NULL, prompt, 3, &ok, &out, &n, &err) == -1);
  CHECK_CONTAINS(err.msg, "model");
  pt_tensor *pk[2] = {NULL, NULL};
  err.msg[0] = 0;
  CHECK(gen(m, NULL, pk, NULL, prompt, 3, &ok, &out, &n, &err) == -1);
  CHECK_CONTAINS(err.msg, "together");
  err.msg[0] = 0;
  CHECK(generate(m, NULL, NULL, NULL, prompt, 3, &ok, NULL, NULL, NULL, &n, &err) == -1);
  CHECK_CONTAINS(err.msg, "out");
}

// The sampler alone: greedy ties, frequencies against the softmax, the nucleus, NaNs.
static void test_sampler(void) {
  gen_config cfg = gen_config_default();
  gen_rng r = gen_rng_new(1);
  const float tie[4] = {0.5f, 2.0f, 2.0f, -1.0f};
  CHECK(gen_sample(tie, 4, &cfg, &r) == 1);  // the first maximum, as torch.argmax
  const float nan4[4] = {NAN, NAN, NAN, NAN};
  CHECK(gen_sample(nan4, 4, &cfg, &r) == -1);
  const float some_nan[3] = {NAN, 1.0f, 0.0f};
  CHECK(gen_sample(some_nan, 3, &cfg, &r) == 1);

  // probabilities 0.5, 0.3, 0.2 at temperature 1 (logits log p), then at temperature 2 (√p).
  const float logits[3] = {logf(0.5f), logf(0.3f), logf(0.2f)};
  enum { DRAWS = 40000 };
  struct {
    double temperature, top_p, want[3];
  } cases[] = {
    {1, 1, {0.5, 0.3, 0.2}},
    {2, 1, {0.41545, 0.32180, 0.26275}},  // √p normalized
    {1, 0.45, {1, 0, 0}},                 // the nucleus reaching 0.45 is the first token alone
    {1, 0.7, {0.625, 0.375, 0}},          // 0.5 + 0.3 reaches 0.7
    {1, 0.95, {0.5, 0.3, 0.2}},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    cfg.temperature = cases[c].temperature;
    cfg.top_p = cases[c].top_p;
    int count[3] = {0};
    gen_rng rng = gen_rng_new(42 + c);
    for (int i = 0; i < DRAWS; i++) {
      int32_t id = gen_sample(logits, 3, &cfg, &rng);
      CHECK(id >= 0 && id < 3);
      if (id >= 0 && id < 3) count[id]++;
    }
    for (int k = 0; k < 3; k++)
      CHECK_MSG(fabs((double)count[k] / DRAWS - cases[c].want[k]) < 0.01, "case %zu token %d: %.4f, want %.4f", c, k,
                (double)count[k] / DRAWS, cases[c].want[k]);
  }
  // The same seed replays the same draws.
  cfg.temperature = 1, cfg.top_p = 1;
  gen_rng a = gen_rng_new(5), b = gen_rng_new(5);
  int same = 1;
  for (int i = 0; i < 100; i++) same &= gen_sample(logits, 3, &cfg, &a) == gen_sample(logits, 3, &cfg, &b);
  CHECK(same);
  // A uniform distribution over many tokens with a tiny nucleus still yields a token.
  float flat[1000];
  for (int i = 0; i < 1000; i++) flat[i] = 0;
  cfg.top_p = 1e-6;
  CHECK(gen_sample(flat, 1000, &cfg, &a) == 0);
  // -inf logits are never drawn.
  const float masked[3] = {-INFINITY, 0.0f, -INFINITY};
  cfg.top_p = 1;
  for (int i = 0; i < 50; i++) CHECK(gen_sample(masked, 3, &cfg, &a) == 1);
}

int main(void) {
  pt_set_num_threads(1);
  size_t live0 = pt_live_handles();
  test_sampler();

  llama_model *m = small_model(small_config(), 1);
  test_greedy_matches_full(m, NULL, "base");
  const int32_t prompt[] = {3, 17, 42, 5, 9};
  gen_config cfg = gen_config_default();
  cfg.max_new_tokens = NEW;
  int32_t *greedy = NULL;
  int n_greedy = 0;
  pith_err err = {{0}};
  CHECK(gen(m, NULL, NULL, NULL, prompt, 5, &cfg, &greedy, &n_greedy, &err) == 0 && n_greedy == NEW);
  printf("greedy:");
  for (int i = 0; i < n_greedy; i++) printf(" %d", greedy[i]);
  printf("\n");

  test_prefix(m);
  test_lora(m);
  test_sampling(m, greedy, n_greedy);
  test_stops(m, greedy, n_greedy);
  test_errors(m);
  test_context_limit();
  test_sliding_window();
  free(greedy);
  llama_free(m);
  CHECK_MSG(pt_live_handles() == live0, "%zu handles at start, %zu at the end", live0, pt_live_handles());
  CHECK(pt_grad_enabled());
  return check_done("test_generate");
}
