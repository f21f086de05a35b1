// The KV presses (models/press.h) on a random GQA LLaMA: bad specs and too-short contexts get their
// one-line messages; specs round-trip through press_format; each KV head keeps max(1, int(L·(1 −
// ratio))) ascending positions inside the context (AdaKV: the layer's heads together keep that many
// per head, each head at least its safeguard); streaming_llm keeps exactly the sinks and the most
// recent tokens, snapkv its window; a batch of two rows of different lengths gives each row what it
// gets alone; with a prefix no prefix entry is chosen and positions stay context-relative (layer 0's
// key norms do not depend on the prefix, so knorm keeps there what it keeps without one); no tensor
// handle outlives the presses, on success or error; a bf16 model runs every press.
#include "check.h"
#include "press.h"

enum { VOCAB = 256, LA = 90, LB = 71, NP = 6 };

static llama_model *tiny(void) {
  llama_config c = {.arch = LLAMA_ARCH_LLAMA, .vocab_size = VOCAB, .dim = 64, .hidden_dim = 96, .n_layers = 2,
                    .n_heads = 4, .n_kv_heads = 2, .max_seq_len = 512, .rope_theta = 10000, .norm_eps = 1e-5,
                    .bos_id = -1, .eos_id = -1};
  pith_err err = {{0}};
  if (llama_config_validate(&c, &err)) return NULL;
  return llama_new_random(&c, 3, PT_F32, PT_CPU, &err);
}

// Weights ×12 (std 0.24): attention far from uniform, so scores are spread rather than near ties.
static int spread(const char *name, pt_tensor **slot, pt_shape shape, void *ctx) {
  (void)name, (void)shape, (void)ctx;
  return pt_copy_(*slot, pt_mul_scalar(*slot, 12.0));
}

// Distinct ids (no token repeats, so knorm has no exact ties): a permutation of the vocabulary.
static void make_ids(int64_t *ids, int n, unsigned seed) {
  int64_t perm[VOCAB];
  for (int i = 0; i < VOCAB; i++) perm[i] = i;
  for (int i = VOCAB - 1; i > 0; i--) {
    seed = seed * 1103515245u + 12345u;
    int j = (int)((seed >> 8) % (unsigned)(i + 1));
    int64_t t = perm[i];
    perm[i] = perm[j], perm[j] = t;
  }
  for (int i = 0; i < n; i++) ids[i] = perm[i];
}

// One prefill of B rows (ids (B, T) right-padded, len (B)) with the press; the prefix (per layer,
// (B, Hkv, NP, hd)) when given. The filled keep, or NULL with err.
static kv_keep *run(const llama_model *m, const press *p, const int64_t *ids, int B, int T, const int *len,
                    pt_tensor *const *prefix_k, pt_tensor *const *prefix_v, pith_err *err) {
  kv_keep *keep = kv_keep_new(m->cfg.n_layers, B, m->cfg.n_kv_heads, err);
  if (!keep) return NULL;
  pt_scope s = pt_scope_begin();
  unsigned char mask[2 * 128] = {0};
  for (int b = 0; b < B; b++)
    for (int j = 0; j < len[b]; j++) mask[b * T + j] = 1;
  press_hook h = {p, m, len, keep};
  llama_inputs in = {.ids = pt_from_data(ids, PT_I64, PT_SHAPE(B, T), PT_CPU), .no_logits = 1,
                     .on_layer = press_on_layer, .on_layer_ctx = &h, .prefix_k = prefix_k, .prefix_v = prefix_v};
  if (B > 1) in.mask = pt_from_data(mask, PT_BOOL, PT_SHAPE(B, T), PT_CPU);
  llama_outputs out;
  int rc = llama_forward(m, &in, &out, err);
  llama_outputs_free(&out);
  pt_scope_end(s);
  if (rc) {
    kv_keep_free(keep);
    return NULL;
  }
  return keep;
}

static int same_cell(const kv_keep *a, int la, int ra, int ha, const kv_keep *b, int rb) {
  int i = kv_keep_index(a, la, ra, ha), j = kv_keep_index(b, la, rb, ha);
  return a->n[i] == b->n[j] && (!a->n[i] || !memcmp(a->pos[i], b->pos[j], sizeof(int64_t) * (size_t)a->n[i]));
}

static void expect_error(const char *spec, const char *needle) {
  press p;
  pith_err err = {{0}};
  CHECK_MSG(press_parse(spec, &p, &err) == -1, "'%s' was accepted", spec);
  CHECK_CONTAINS(err.msg, needle);
  CHECK_MSG(!strchr(err.msg, '\n'), "a message of more than one line: %s", err.msg);
}

static void test_specs(void) {
  expect_error("snapkvv:0.5", "unknown press 'snapkvv'");
  expect_error("snapkvv:0.5", "knorm, streaming_llm, snapkv, expected_attention, tova, observed_attention");
  expect_error("adakv-foo:0.5", "unknown press 'foo'");
  expect_error("snapkv:1", "outside [0, 1)");
  expect_error("snapkv:1.5", "outside [0, 1)");
  expect_error("knorm:-0.1", "outside [0, 1)");
  expect_error("knorm:nan", "not a number");
  expect_error("knorm:half", "not a number");
  expect_error("knorm", "no compression ratio");
  expect_error("", "empty spec");
  expect_error("snapkv:0.5:windw=32", "unknown parameter 'windw'");
  expect_error("snapkv:0.5:windw=32", "known: window_size, kernel_size");
  expect_error("knorm:0.5:window=3", "unknown parameter 'window'");
  expect_error("knorm:0.5:alpha_safeguard=0.3", "unknown parameter 'alpha_safeguard'");
  expect_error("snapkv:0.5:window=0", "window_size must be an integer >= 1, not '0'");
  expect_error("snapkv:0.5:window=3.5", "window_size must be an integer");
  expect_error("snapkv:0.5:kernel=4", "kernel_size must be an odd integer");
  expect_error("snapkv:0.5:window", "not KEY=VALUE");
  expect_error("snapkv:0.5:", "empty parameter list");
  expect_error("expected_attention:0.5:use_covariance=maybe", "use_covariance must be true or false");
  expect_error("adakv-snapkv:0.5:alpha=1.5", "alpha_safeguard must be a number in [0, 1]");

  press p, q;
  pith_err err = {{0}};
  CHECK(press_parse("snapkv:0.5:window=32,kernel=7", &p, &err) == 0);
  CHECK(p.kind == PRESS_SNAPKV && p.ratio == 0.5 && p.window_size == 32 && p.kernel_size == 7 && !p.adaptive);
  CHECK(press_parse("adakv-snapkv:0.25", &p, &err) == 0);
  CHECK(p.adaptive && p.ratio == 0.25 && p.window_size == 64 && p.kernel_size == 5 && p.alpha_safeguard == 0.20);
  CHECK(press_parse("expected_attention:0.1", &p, &err) == 0);
  CHECK(p.n_future_positions == 512 && p.n_sink == 4 && p.use_covariance && p.use_vnorm && p.epsilon == 0);
  CHECK(press_parse("streaming_llm:0", &p, &err) == 0 && p.n_sink == 4 && p.ratio == 0);
  // the canonical spec parses back to the same press
  const char *specs[] = {"adakv-snapkv:0.3:window=20,alpha=0.5", "expected_attention:0.5:use_vnorm=0,epsilon=0.25",
                         "tova:0.75", "streaming_llm:0.2:n_sink=2", "observed_attention:0.5", "knorm:0",
                         "knorm:0.123456789012345678", "adakv-tova:0.3:alpha=0.1234567891"};
  for (int i = 0; i < 8; i++) {
    char buf[256];
    CHECK(press_parse(specs[i], &p, &err) == 0);
    press_format(&p, buf, sizeof buf);
    CHECK_MSG(press_parse(buf, &q, &err) == 0 && !memcmp(&p, &q, sizeof p), "%s → %s", specs[i], buf);
  }
  CHECK(press_n_kept(197, 0.25) == 147 && press_n_kept(150, 0.5) == 75 && press_n_kept(1, 0.5) == 1 &&
        press_n_kept(3, 0.9) == 1);
}

static void test_too_short(const llama_model *m) {
  int64_t ids[64];
  make_ids(ids, 64, 1);
  press p;
  pith_err err = {{0}};
  int len = 50;
  press_parse("snapkv:0.5", &p, &err);
  kv_keep *k = run(m, &p, ids, 1, 50, &len, NULL, NULL, &err);
  CHECK(!k);
  CHECK_CONTAINS(err.msg, "window_size 64 needs a longer context: 50 tokens");
  press_parse("snapkv:0.5:window=49", &p, &err);
  k = run(m, &p, ids, 1, 50, &len, NULL, NULL, &err);
  CHECK_MSG(k != NULL, "%s", err.msg);
  kv_keep_free(k);
  len = 4;
  press_parse("streaming_llm:0.5", &p, &err);
  CHECK(!run(m, &p, ids, 1, 4, &len, NULL, NULL, &err));
  CHECK_CONTAINS(err.msg, "n_sink 4 needs a longer context: 4 tokens");
  press_parse("snapkv:0:window=64", &p, &err);  // ratio 0 keeps all: nothing to check
  k = run(m, &p, ids, 1, 4, &len, NULL, NULL, &err);
  CHECK(k && k->n[0] == 4);
  kv_keep_free(k);
}

static const char *const ALL[] = {"knorm", "streaming_llm", "snapkv", "expected_attention", "tova",
                                  "observed_attention", "adakv-snapkv", "adakv-knorm", "adakv-expected_attention",
                                  "adakv-tova", "adakv-observed_attention", "adakv-streaming_llm"};
#define N_ALL ((int)(sizeof ALL / sizeof ALL[0]))

static void test_counts_and_batch(const llama_model *m) {
  int64_t a[LA], b[LA], batch[2 * LA] = {0};
  make_ids(a, LA, 7);
  make_ids(b, LB, 11);
  memcpy(batch, a, sizeof a);
  memcpy(batch + LA, b, sizeof(int64_t) * LB);
  int lens[2] = {LA, LB}, Hkv = m->cfg.n_kv_heads;
  double ratios[2] = {0.25, 0.5};
  for (int s = 0; s < N_ALL; s++)
    for (int ri = 0; ri < 2; ri++) {
      char spec[96];
      snprintf(spec, sizeof spec, "%s:%g%s", ALL[s], ratios[ri], strstr(ALL[s], "snapkv") ? ":window=16" : "");
      press p;
      pith_err err = {{0}};
      CHECK(press_parse(spec, &p, &err) == 0);
      kv_keep *both = run(m, &p, batch, 2, LA, lens, NULL, NULL, &err);
      kv_keep *alone[2] = {run(m, &p, a, 1, LA, &lens[0], NULL, NULL, &err),
                           run(m, &p, b, 1, LB, &lens[1], NULL, NULL, &err)};
      CHECK_MSG(both && alone[0] && alone[1], "%s: %s", spec, err.msg);
      if (!both || !alone[0] || !alone[1]) continue;
      for (int l = 0; l < m->cfg.n_layers; l++)
        for (int r = 0; r < 2; r++) {
          int L = lens[r], nk = (int)press_n_kept(L, p.ratio), total = 0;
          for (int h = 0; h < Hkv; h++) {
            int i = kv_keep_index(both, l, r, h), n = both->n[i];
            total += n;
            if (!p.adaptive) CHECK_MSG(n == nk, "%s layer %d row %d head %d: %d kept, want %d", spec, l, r, h, n, nk);
            else CHECK_MSG(n >= (int)(nk * p.alpha_safeguard) && n <= L, "%s head %d: %d kept", spec, h, n);
            for (int j = 0; j < n; j++) CHECK(both->pos[i][j] >= 0 && both->pos[i][j] < L);
            CHECK_MSG(same_cell(both, l, r, h, alone[r], 0), "%s layer %d row %d head %d: batched != alone", spec,
                      l, r, h);
            if (p.kind == PRESS_STREAMING_LLM && !p.adaptive)  // the 4 sinks, then the most recent
              for (int j = 0; j < n; j++) CHECK(both->pos[i][j] == (j < 4 ? j : L - (n - j)));
            if (p.kind == PRESS_SNAPKV)  // the window is always kept
              CHECK(n >= 16 && both->pos[i][n - 16] == L - 16);
          }
          CHECK_MSG(total == nk * Hkv, "%s layer %d row %d: %d kept over the heads, want %d", spec, l, r, total,
                    nk * Hkv);
        }
      kv_keep_free(both), kv_keep_free(alone[0]), kv_keep_free(alone[1]);
    }
}

// Per-head budgets really differ by head somewhere (else the adaptive path would be untested).
static void test_adaptive_varies(const llama_model *m) {
  int64_t a[LA];
  make_ids(a, LA, 7);
  int len = LA, varied = 0;
  press p;
  pith_err err = {{0}};
  press_parse("adakv-knorm:0.5", &p, &err);
  kv_keep *k = run(m, &p, a, 1, LA, &len, NULL, NULL, &err);
  CHECK(k != NULL);
  for (int l = 0; k && l < k->n_layers; l++) varied += k->n[kv_keep_index(k, l, 0, 0)] != k->n[kv_keep_index(k, l, 0, 1)];
  CHECK_MSG(varied > 0, "adakv-knorm gave every head the same count");
  kv_keep_free(k);
}

static void test_prefix(const llama_model *m) {
  int64_t a[LA];
  make_ids(a, LA, 7);
  int len = LA, Hkv = m->cfg.n_kv_heads, hd = m->cfg.head_dim, Ln = m->cfg.n_layers;
  pt_tensor *pk[8], *pv[8];
  pt_scope s0 = pt_scope_begin();
  for (int l = 0; l < Ln; l++) {  // loud prefix keys: knorm would pick them first if they were candidates
    pk[l] = pt_keep(pt_mul_scalar(pt_randn(PT_SHAPE(1, Hkv, NP, hd), PT_F32, PT_CPU, NULL), 50.0));
    pv[l] = pt_keep(pt_randn(PT_SHAPE(1, Hkv, NP, hd), PT_F32, PT_CPU, NULL));
  }
  pt_scope_end(s0);
  const char *specs[] = {"knorm:0.5", "snapkv:0.5:window=16", "expected_attention:0.5", "tova:0.25",
                         "observed_attention:0.5", "streaming_llm:0.5", "adakv-snapkv:0.5:window=16"};
  for (int s = 0; s < 7; s++) {
    press p;
    pith_err err = {{0}};
    press_parse(specs[s], &p, &err);
    kv_keep *with = run(m, &p, a, 1, LA, &len, pk, pv, &err);
    CHECK_MSG(with != NULL, "%s: %s", specs[s], err.msg);
    if (!with) continue;
    int nk = (int)press_n_kept(LA, p.ratio);
    for (int l = 0; l < Ln; l++) {
      int total = 0;
      for (int h = 0; h < Hkv; h++) {
        int i = kv_keep_index(with, l, 0, h);
        total += with->n[i];
        for (int j = 0; j < with->n[i]; j++) CHECK(with->pos[i][j] >= 0 && with->pos[i][j] < LA);
        if (p.kind == PRESS_SNAPKV) CHECK(with->n[i] >= 16 && with->pos[i][with->n[i] - 16] == LA - 16);
      }
      CHECK_MSG(total == nk * Hkv, "%s layer %d: %d kept with a prefix, want %d", specs[s], l, total, nk * Hkv);
    }
    if (p.kind == PRESS_KNORM) {  // layer 0's keys are the same rotations of the same vectors: same choice
      kv_keep *without = run(m, &p, a, 1, LA, &len, NULL, NULL, &err);
      CHECK(without != NULL);
      for (int h = 0; without && h < Hkv; h++)
        CHECK_MSG(same_cell(with, 0, 0, h, without, 0), "knorm layer 0 head %d: the prefix moved the choice", h);
      kv_keep_free(without);
    }
    kv_keep_free(with);
  }
  for (int l = 0; l < Ln; l++) pt_free(pk[l]), pt_free(pv[l]);
}

static void test_bad_keep(const llama_model *m) {
  int64_t a[LA];
  make_ids(a, LA, 7);
  press p;
  pith_err err = {{0}};
  press_parse("knorm:0.5", &p, &err);
  kv_keep *keep = kv_keep_new(m->cfg.n_layers, 3, m->cfg.n_kv_heads, &err);  // 3 rows for a batch of 1
  int len = LA;
  press_hook h = {&p, m, &len, keep};
  pt_scope s = pt_scope_begin();
  llama_inputs in = {.ids = pt_from_data(a, PT_I64, PT_SHAPE(1, LA), PT_CPU), .no_logits = 1,
                     .on_layer = press_on_layer, .on_layer_ctx = &h};
  llama_outputs out;
  CHECK(llama_forward(m, &in, &out, &err) == -1);
  CHECK_CONTAINS(err.msg, "the keep is (2 layers, 3 rows, 2 kv heads)");
  len = LA + 1;  // more context than the forward has
  kv_keep_free(keep);
  keep = kv_keep_new(m->cfg.n_layers, 1, m->cfg.n_kv_heads, &err);
  h.keep = keep;
  CHECK(llama_forward(m, &in, &out, &err) == -1);
  CHECK_CONTAINS(err.msg, "row 0 has 91 context tokens, the forward only 90");
  pt_scope_end(s);
  kv_keep_free(keep);
}

// A bf16 model: every press scores in f32 and keeps its counts (no dtype clash in the shim ops).
static void test_bf16(void) {
  llama_config c = {.arch = LLAMA_ARCH_LLAMA, .vocab_size = VOCAB, .dim = 64, .hidden_dim = 96, .n_layers = 2,
                    .n_heads = 4, .n_kv_heads = 2, .max_seq_len = 512, .rope_theta = 10000, .norm_eps = 1e-5,
                    .bos_id = -1, .eos_id = -1};
  pith_err err = {{0}};
  CHECK(llama_config_validate(&c, &err) == 0);
  llama_model *m = llama_new_random(&c, 3, PT_BF16, PT_CPU, &err);
  CHECK(m != NULL);
  if (!m) return;
  int64_t a[LA];
  make_ids(a, LA, 7);
  int len = LA;
  for (int s = 0; s < N_ALL; s++) {
    char spec[96];
    snprintf(spec, sizeof spec, "%s:0.5%s", ALL[s], strstr(ALL[s], "snapkv") ? ":window=16" : "");
    press p;
    press_parse(spec, &p, &err);
    kv_keep *k = run(m, &p, a, 1, LA, &len, NULL, NULL, &err);
    CHECK_MSG(k != NULL, "bf16 %s: %s", spec, err.msg);
    if (k)
      CHECK_MSG(kv_keep_total(k) == 2 * 2 * press_n_kept(LA, 0.5), "bf16 %s: %lld kept", spec,
                (long long)kv_keep_total(k));
    kv_keep_free(k);
  }
  llama_free(m);
}

int main(void) {
  pt_set_num_threads(1);
  test_specs();
  llama_model *m = tiny();
  if (!m) {
    fprintf(stderr, "test_press: could not make the model\n");
    return 1;
  }
  llama_visit_weights(m, spread, NULL);
  size_t handles = pt_live_handles();
  test_too_short(m);
  test_counts_and_batch(m);
  test_adaptive_varies(m);
  test_prefix(m);
  test_bad_keep(m);
  test_bf16();
  CHECK_MSG(pt_live_handles() == handles, "%zu tensor handles before the presses ran, %zu after", handles,
            pt_live_handles());
  llama_free(m);
  return check_done("test_press");
}
