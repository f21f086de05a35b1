#include "generate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

gen_config gen_config_default(void) {
  return (gen_config){.max_new_tokens = 256, .temperature = 0, .top_p = 1, .seed = 0};
}

// ---------------------------------------------------------------- sampler

gen_rng gen_rng_new(uint64_t seed) { return (gen_rng){seed}; }

static uint64_t rng_next(gen_rng *r) {  // splitmix64 (Steele, Lea, Flood 2014)
  uint64_t z = (r->state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

double gen_rng_uniform(gen_rng *r) { return (double)(rng_next(r) >> 11) * 0x1.0p-53; }

// The first largest finite-or-infinite logit (NaNs skipped), -1 when every logit is NaN.
static int32_t argmax_f32(const float *x, int n) {
  int32_t best = -1;
  for (int i = 0; i < n; i++)
    if (!isnan(x[i]) && (best < 0 || x[i] > x[best])) best = i;
  return best;
}

typedef struct {
  double p;
  int32_t id;
} cand;

static int cand_cmp(const void *a, const void *b) {  // by probability, descending; ties by id
  const cand *x = a, *y = b;
  if (x->p != y->p) return x->p > y->p ? -1 : 1;
  return x->id < y->id ? -1 : x->id > y->id;
}

int32_t gen_sample(const float *logits, int vocab, const gen_config *cfg, gen_rng *rng) {
  if (vocab <= 0) return -1;
  int32_t best = argmax_f32(logits, vocab);
  if (best < 0 || cfg->temperature <= 0 || isinf(logits[best])) return best;

  // Unnormalized probabilities exp((l - max) / T); NaN and -inf logits get none.
  double *p = malloc(sizeof(double) * (size_t)vocab), total = 0;
  if (!p) return -1;
  for (int i = 0; i < vocab; i++) {
    p[i] = isnan(logits[i]) ? 0 : exp(((double)logits[i] - logits[best]) / cfg->temperature);
    total += p[i];
  }
  int32_t id = best;
  if (cfg->top_p >= 1) {
    double r = gen_rng_uniform(rng) * total, cum = 0;
    for (int i = 0; i < vocab; i++) {
      if (p[i] <= 0) continue;
      id = i;  // the last token with mass, should rounding leave r beyond the total
      if ((cum += p[i]) > r) break;
    }
    free(p);
    return id;
  }
  // Nucleus: only tokens with p >= (1 - top_p) / (vocab - 1) of the mass can be in it (the rest
  // together hold less than 1 - top_p), so sort just those; the most likely token always is.
  double cutoff = vocab > 1 ? (1 - cfg->top_p) / (vocab - 1) * total : 0;
  cand *c = malloc(sizeof(cand) * (size_t)vocab);
  if (!c) {
    free(p);
    return -1;
  }
  int n = 0;
  for (int i = 0; i < vocab; i++)
    if (p[i] > 0 && (p[i] >= cutoff || i == best)) c[n++] = (cand){p[i], i};
  qsort(c, (size_t)n, sizeof *c, cand_cmp);
  double want = cfg->top_p * total, kept = 0;
  int k = 0;
  while (k < n && kept < want) kept += c[k++].p;
  double r = gen_rng_uniform(rng) * kept, cum = 0;
  id = c[k - 1].id;
  for (int i = 0; i < k; i++)
    if ((cum += c[i].p) > r) {
      id = c[i].id;
      break;
    }
  free(c);
  free(p);
  return id;
}

// ---------------------------------------------------------------- the loop

// Fails with the shim's pending message, which it clears.
static int shim_fail(pith_err *err) {
  pt_fail(err, "generate");
  return -1;
}

// One forward of tok (T) after the prefix pk/pv (NULL or n_layers each of (1, Hkv, P, hd)).
// On success the cache ck/cv (kept handles owned here, NULL before the first step) becomes
// prefix + the new K/V, and logits (vocab) holds the last position's. Call inside a scope: every
// other handle made here is the scope's. On failure the cache is left as it was.
static int forward_step(const llama_model *m, const lora_adapter *lora, pt_tensor *const *pk,
                        pt_tensor *const *pv, const int32_t *tok, int T, pt_tensor **ck, pt_tensor **cv,
                        float *logits, pith_err *err) {
  int L = m->cfg.n_layers, V = m->cfg.vocab_size;
  pt_tensor *ids = pt_to_dtype(pt_from_data(tok, PT_I32, PT_SHAPE(1, T), m->device), PT_I64);  // (1, T)
  if (!ids) return shim_fail(err);
  // The K/V each layer attended over, (1, Hkv, P + T, hd): the new cache as it is.
  llama_inputs in = {.ids = ids, .prefix_k = pk, .prefix_v = pv, .lora = lora, .want_kv = 1, .kv_with_prefix = 1};
  llama_outputs o;
  if (llama_forward(m, &in, &o, err)) return -1;
  pt_tensor *last = pt_to_dtype(pt_slice(o.logits, 1, T - 1, T), PT_F32);  // (1, 1, vocab)
  int rc = pt_to_data(last, logits, sizeof(float) * (size_t)V);
  if (rc || !pt_ok()) {
    llama_outputs_free(&o);
    return shim_fail(err);
  }
  for (int l = 0; l < L; l++) {  // commit: the new cache out of the scope, the old one freed
    pt_free(ck[l]);
    pt_free(cv[l]);
    ck[l] = pt_keep(o.k[l]);
    cv[l] = pt_keep(o.v[l]);
  }
  llama_outputs_free(&o);
  return 0;
}

int gen_config_check(const gen_config *cfg, const char *who, pith_err *err) {
  if (!cfg) return pith_fail(err, "%s: no config", who);
  if (cfg->max_new_tokens <= 0)
    return pith_fail(err, "%s: max_new_tokens must be positive (got %d)", who, cfg->max_new_tokens);
  if (!(cfg->temperature >= 0) || isinf(cfg->temperature))
    return pith_fail(err, "%s: temperature must be a finite number >= 0 (got %g)", who, cfg->temperature);
  if (!(cfg->top_p > 0 && cfg->top_p <= 1)) return pith_fail(err, "%s: top_p must be in (0, 1] (got %g)", who, cfg->top_p);
  if (cfg->n_eos < 0 || (cfg->n_eos > 0 && !cfg->eos_ids))
    return pith_fail(err, "%s: n_eos is %d but eos_ids is %s", who, cfg->n_eos, cfg->eos_ids ? "set" : "NULL");
  return 0;
}

static int check_args(const llama_model *m, pt_tensor *const *prefix_k, pt_tensor *const *prefix_v,
                      const int32_t *prompt, int n_prompt, const gen_config *cfg, int64_t *P, pith_err *err) {
  *P = 0;
  if (!m) return pith_fail(err, "generate: no model");
  if (gen_config_check(cfg, "generate", err)) return -1;
  if (n_prompt <= 0 || !prompt) return pith_fail(err, "generate: the prompt is empty (give at least one token)");
  for (int i = 0; i < n_prompt; i++)
    if (prompt[i] < 0 || prompt[i] >= m->cfg.vocab_size)
      return pith_fail(err, "generate: prompt token %d is id %d, outside the model's vocabulary [0, %d)", i,
                       (int)prompt[i], m->cfg.vocab_size);
  if (!prefix_k != !prefix_v) return pith_fail(err, "generate: prefix_k and prefix_v go together");
  if (prefix_k) {
    for (int l = 0; l < m->cfg.n_layers; l++)
      if (!prefix_k[l] || !prefix_v[l] || pt_ndim(prefix_k[l]) != 4 || pt_size(prefix_k[l], 0) != 1)
        return pith_fail(err, "generate: prefix K/V of layer %d must be (1, %d, P, %d) (batch size 1 only)", l,
                         m->cfg.n_kv_heads, m->cfg.head_dim);
    *P = pt_size(prefix_k[0], 2);
  }
  if (*P + n_prompt >= m->cfg.max_seq_len)
    return pith_fail(err, "generate: the prompt (%d tokens after a prefix of %lld) leaves no room in the model's "
                          "%d positions (max_position_embeddings)",
                     n_prompt, (long long)*P, m->cfg.max_seq_len);
  if (!pt_ok()) return pt_fail(err, "generate: a shim error was pending before the call");
  return 0;
}

int generate(const llama_model *m, const lora_adapter *lora, pt_tensor *const *prefix_k,
             pt_tensor *const *prefix_v, const int32_t *prompt, int n_prompt, const gen_config *cfg,
             int (*on_token)(int32_t id, void *ctx), void *ctx, int32_t **out, int *n_out, pith_err *err) {
  if (!out || !n_out) return pith_fail(err, "generate: out and n_out are required");
  *out = NULL;
  *n_out = 0;
  int64_t P;
  if (check_args(m, prefix_k, prefix_v, prompt, n_prompt, cfg, &P, err)) return -1;

  int L = m->cfg.n_layers;
  pt_tensor **ck = calloc((size_t)L, sizeof *ck), **cv = calloc((size_t)L, sizeof *cv);  // (1, Hkv, len, hd) each
  int32_t *ids = malloc(sizeof(int32_t) * (size_t)cfg->max_new_tokens);
  float *logits = malloc(sizeof(float) * (size_t)m->cfg.vocab_size);
  if (!ck || !cv || !ids || !logits) {
    free(ck), free(cv), free(ids), free(logits);
    return pith_fail(err, "generate: out of memory");
  }
  int was = pt_set_grad_enabled(0);
  gen_rng rng = gen_rng_new(cfg->seed);
  int n = 0, rc = 0;
  const int32_t *step = prompt;
  int T = n_prompt;
  pt_tensor *const *pk = prefix_k, *const *pv = prefix_v;
  for (;;) {
    pt_scope s = pt_scope_begin();
    rc = forward_step(m, lora, pk, pv, step, T, ck, cv, logits, err);
    pt_scope_end(s);
    if (rc) break;
    pk = ck, pv = cv;
    int32_t next = gen_sample(logits, m->cfg.vocab_size, cfg, &rng);
    if (next < 0) {
      rc = pith_fail(err, "generate: could not sample (the logits are all NaN, or out of memory)");
      break;
    }
    ids[n++] = next;
    int stop = on_token ? on_token(next, ctx) : 0;
    for (int i = 0; i < cfg->n_eos; i++) stop |= next == cfg->eos_ids[i];
    if (stop || n >= cfg->max_new_tokens || P + n_prompt + n >= m->cfg.max_seq_len) break;
    step = &ids[n - 1];
    T = 1;
  }
  for (int l = 0; l < L; l++) {
    pt_free(ck[l]);
    pt_free(cv[l]);
  }
  free(ck);
  free(cv);
  free(logits);
  pt_set_grad_enabled(was);
  if (rc) {
    free(ids);
    return -1;
  }
  *out = ids;
  *n_out = n;
  return 0;
}
