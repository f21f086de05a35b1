// scorer: per-token NLL from a causal LM with a prefix KV cache (see scorer.h).
#include "scorer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


scorer scorer_new(llama_model *lm, tokenizer *tok) {
  return (scorer){.lm = lm, .tok = tok, .max_pos = lm->cfg.max_seq_len};
}

void scorer_cache_clear(scorer_cache *c) {
  if (c->k)
    for (int l = 0; l < c->n_layers; l++) {
      pt_free(c->k[l]);
      pt_free(c->v[l]);
    }
  free(c->k);
  free(c->v);
  c->k = c->v = NULL;
  c->len = 0;
}

// Replace the cache's tensors by new ones (taken out of the arena).
static void cache_replace(scorer_cache *c, pt_tensor **k, pt_tensor **v, int64_t len) {
  for (int l = 0; l < c->n_layers; l++) {
    pt_free(c->k[l]);
    pt_free(c->v[l]);
    c->k[l] = pt_keep(k[l]);
    c->v[l] = pt_keep(v[l]);
  }
  c->len = len;
}

int scorer_nll(scorer *s, const int32_t *ids, int64_t n, scorer_cache *cache, float *nll, pith_err *err) {
  int64_t P = cache ? cache->len : 0, T = n - P;
  if (T < 1) return pith_fail(err, "scorer_nll: nothing to score (%lld tokens after a cache of %lld)", (long long)n,
                              (long long)P);
  int V = s->lm->cfg.vocab_size, L = s->lm->cfg.n_layers;
  for (int64_t i = P; i < n; i++)
    if (ids[i] < 0 || ids[i] >= V) return pith_fail(err, "scorer_nll: token id %d outside the vocabulary (%d)", (int)ids[i], V);
  if (cache && !cache->k) {
    cache->n_layers = L;
    cache->k = calloc((size_t)L, sizeof *cache->k);
    cache->v = calloc((size_t)L, sizeof *cache->v);
    if (!cache->k || !cache->v) return pith_fail(err, "out of memory");
  }
  int was = pt_set_grad_enabled(0);
  pt_scope sc = pt_scope_begin();
  int64_t *buf = malloc((size_t)T * sizeof *buf);
  if (!buf) {
    pt_scope_end(sc);
    pt_set_grad_enabled(was);
    return pith_fail(err, "out of memory");
  }
  for (int64_t i = 0; i < T; i++) buf[i] = ids[P + i];
  pt_tensor *x = pt_from_data(buf, PT_I64, PT_SHAPE(1, T), PT_CPU);
  free(buf);
  llama_inputs in = {.ids = x, .want_kv = cache != NULL};
  if (P > 0) in.prefix_k = cache->k, in.prefix_v = cache->v;
  llama_outputs out;
  int rc = llama_forward(s->lm, &in, &out, err), forward_ok = rc == 0;
  if (rc == 0 && T > 1) {
    // loss of token i+1 from the logits at i, as transformers' shifted CrossEntropyLoss
    pt_tensor *logits = pt_view(pt_slice(out.logits, 1, 0, T - 1), PT_SHAPE(T - 1, V));
    pt_tensor *targets = pt_view(pt_slice(x, 1, 1, T), PT_SHAPE(T - 1));
    pt_tensor *loss = pt_to_dtype(pt_cross_entropy(logits, targets, -100, PT_REDUCE_NONE), PT_F32);
    if (pt_to_data(loss, nll, (size_t)(T - 1) * sizeof(float)) || !pt_ok()) rc = pt_fail(err, "scorer_nll");
  }
  if (rc == 0 && cache) {
    pt_tensor **k = calloc((size_t)L, sizeof *k), **v = calloc((size_t)L, sizeof *v);
    if (!k || !v) rc = pith_fail(err, "out of memory");
    for (int l = 0; rc == 0 && l < L; l++) {
      if (P > 0) {
        pt_tensor *ks[2] = {cache->k[l], out.k[l]}, *vs[2] = {cache->v[l], out.v[l]};
        k[l] = pt_cat(ks, 2, 2);
        v[l] = pt_cat(vs, 2, 2);
      } else {
        k[l] = out.k[l];
        v[l] = out.v[l];
      }
    }
    if (rc == 0 && !pt_ok()) rc = pt_fail(err, "scorer_nll: cache");
    if (rc == 0) cache_replace(cache, k, v, n);
    free(k);
    free(v);
  }
  if (forward_ok) llama_outputs_free(&out);
  pt_scope_end(sc);
  pt_set_grad_enabled(was);
  return rc;
}

int scorer_cache_truncate(scorer_cache *c, int64_t n, pith_err *err) {
  if (n >= c->len) return 0;
  if (n <= 0) {
    int L = c->n_layers;
    scorer_cache_clear(c);
    c->n_layers = L;
    return 0;
  }
  pt_scope sc = pt_scope_begin();
  pt_tensor *k[c->n_layers], *v[c->n_layers];
  for (int l = 0; l < c->n_layers; l++) {
    k[l] = pt_contiguous(pt_slice(c->k[l], 2, 0, n));
    v[l] = pt_contiguous(pt_slice(c->v[l], 2, 0, n));
  }
  int rc = pt_ok() ? 0 : pt_fail(err, "scorer_cache_truncate");
  if (rc == 0) cache_replace(c, k, v, n);
  pt_scope_end(sc);
  return rc;
}

int scorer_cache_splice(scorer_cache *c, int64_t a, int64_t b, pith_err *err) {
  if (!c->k) return 0;
  a = a < 0 ? 0 : a > c->len ? c->len : a;
  b = b < 0 ? 0 : b > c->len ? c->len : b;
  if (a == c->len || b == a) return 0;
  pt_scope sc = pt_scope_begin();
  pt_tensor *k[c->n_layers], *v[c->n_layers];
  for (int l = 0; l < c->n_layers; l++) {
    pt_tensor *ks[2] = {pt_slice(c->k[l], 2, 0, a), pt_slice(c->k[l], 2, b, c->len)};
    pt_tensor *vs[2] = {pt_slice(c->v[l], 2, 0, a), pt_slice(c->v[l], 2, b, c->len)};
    k[l] = pt_cat(ks, 2, 2);
    v[l] = pt_cat(vs, 2, 2);
  }
  int rc = pt_ok() ? 0 : pt_fail(err, "scorer_cache_splice");
  if (rc == 0) cache_replace(c, k, v, a + c->len - b);
  pt_scope_end(sc);
  return rc;
}

int scorer_mean_nll(scorer *s, const int32_t *ids, int64_t n, int64_t from, double *mean, pith_err *err) {
  *mean = NAN;
  if (n < 2) return 0;
  float *nll = malloc((size_t)(n - 1) * sizeof *nll);
  if (!nll) return pith_fail(err, "out of memory");
  int rc = scorer_nll(s, ids, n, NULL, nll, err);
  if (rc == 0 && from < n - 1) {
    // torch's f32 mean: a f32 sum is close enough for ranking; keep it in double then round.
    double sum = 0;
    for (int64_t i = from < 0 ? 0 : from; i < n - 1; i++) sum += nll[i];
    *mean = (float)(sum / (double)(n - 1 - (from < 0 ? 0 : from)));
  }
  free(nll);
  return rc;
}
