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

// ---- causal attention for small heads ----
//
// libtorch's CPU flash attention is built for head dims of 64 and more: with a tiny scorer's
// (stories260K: 8) its blocks spend the time in gemm calls of depth 8 and in exps of masked keys
// (a forward after a cache needs an explicit mask, so every query exps all P + T keys). This
// kernel visits only the keys a query sees (query i at P + i sees 0 .. P + i), vectorized over
// keys. Its sums run in another order than libtorch's, so scores may differ in the last bits.
// Head dims 8 and 16 only: at 32 (the demo's base LM) a version of it ran 1.2x slower than flash
// attention. One thread (flash attention would spread over --threads).

// One (kv head group, query) at a time; HD, the head dim, is a constant so that a query's
// accumulators stay in registers. e^x (x <= 0, clamped at -87.3) is Cephes' expf, its 2^n put
// together in an int array and copied over (a bit cast the vectorizer follows).
static volatile float exp_floor = -87.3f;
#define SMALL_ATTEND_BODY(HD)                                                                     \
  {                                                                                              \
    int64_t S = P + T;                                                                           \
    int G = H / Hkv;                                                                             \
    const float lo = exp_floor; /* not a constant: the clamp stays a select, not a branch */     \
    for (int g = 0; g < Hkv; g++) {                                                              \
      const float *kg = k + (int64_t)g * S * HD, *vg = v + (int64_t)g * S * HD;                  \
      for (int64_t j = 0; j < S; j++)                                                            \
        for (int d = 0; d < HD; d++) kt[(int64_t)d * S + j] = kg[j * HD + d];                    \
      for (int r = 0; r < G; r++) {                                                              \
        int h = g * G + r;                                                                       \
        for (int64_t i = 0; i < T; i++) {                                                        \
          const float *qi = q + ((int64_t)h * T + i) * HD;                                       \
          float *oi = out + ((int64_t)h * T + i) * HD;                                           \
          int64_t n = P + i + 1;                                                                 \
          float qs[HD];                                                                          \
          for (int d = 0; d < HD; d++) qs[d] = qi[d];                                            \
          for (int64_t j = 0; j < n; j++) {                                                      \
            float acc = 0;                                                                       \
            for (int d = 0; d < HD; d++) acc += qs[d] * kt[(int64_t)d * S + j];                  \
            s[j] = acc * scale;                                                                  \
          }                                                                                      \
          float mx[8], m = -INFINITY;                                                            \
          for (int l = 0; l < 8; l++) mx[l] = -INFINITY;                                         \
          int64_t j = 0;                                                                         \
          for (; j + 8 <= n; j += 8)                                                             \
            for (int l = 0; l < 8; l++) mx[l] = s[j + l] > mx[l] ? s[j + l] : mx[l];             \
          for (; j < n; j++) m = s[j] > m ? s[j] : m;                                            \
          for (int l = 0; l < 8; l++) m = mx[l] > m ? mx[l] : m;                                 \
          for (j = 0; j < n; j++) {                                                              \
            float x = s[j] - m;                                                                  \
            x = x < lo ? lo : x;                                                                 \
            float f = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* nearest n */    \
            float rr = x - f * 0.693359375f + f * 2.12194440e-4f;                                \
            float y = 1.9875691500e-4f;                                                          \
            y = y * rr + 1.3981999507e-3f;                                                       \
            y = y * rr + 8.3334519073e-3f;                                                       \
            y = y * rr + 4.1665795894e-2f;                                                       \
            y = y * rr + 1.6666665459e-1f;                                                       \
            y = y * rr + 5.0000001201e-1f;                                                       \
            s[j] = y * rr * rr + rr + 1.0f;                                                      \
            eb[j] = ((int32_t)f + 127) << 23;                                                    \
          }                                                                                      \
          memcpy(tw, eb, (size_t)n * sizeof *tw);                                                \
          float sl[8] = {0}, sum = 0;                                                            \
          for (j = 0; j + 8 <= n; j += 8)                                                        \
            for (int l = 0; l < 8; l++) {                                                        \
              s[j + l] *= tw[j + l];                                                             \
              sl[l] += s[j + l];                                                                 \
            }                                                                                    \
          for (; j < n; j++) {                                                                   \
            s[j] *= tw[j];                                                                       \
            sum += s[j];                                                                         \
          }                                                                                      \
          for (int l = 0; l < 8; l++) sum += sl[l];                                              \
          float o0[HD] = {0}, o1[HD] = {0}, o2[HD] = {0}, o3[HD] = {0};                          \
          for (j = 0; j + 4 <= n; j += 4) {                                                      \
            const float *v0 = vg + j * HD;                                                       \
            for (int d = 0; d < HD; d++) {                                                       \
              o0[d] += s[j] * v0[d];                                                             \
              o1[d] += s[j + 1] * v0[HD + d];                                                    \
              o2[d] += s[j + 2] * v0[2 * HD + d];                                                \
              o3[d] += s[j + 3] * v0[3 * HD + d];                                                \
            }                                                                                    \
          }                                                                                      \
          for (; j < n; j++)                                                                     \
            for (int d = 0; d < HD; d++) o0[d] += s[j] * vg[j * HD + d];                         \
          float inv = 1.0f / sum;                                                                \
          for (int d = 0; d < HD; d++) oi[d] = ((o0[d] + o1[d]) + (o2[d] + o3[d])) * inv;        \
        }                                                                                        \
      }                                                                                          \
    }                                                                                            \
  }

#define SMALL_ATTEND_ARGS                                                                              \
  const float *restrict q, const float *restrict k, const float *restrict v, int H, int Hkv, int64_t T, \
      int64_t P, float scale, float *restrict out, float *restrict kt, float *restrict s,               \
      int32_t *restrict eb, float *restrict tw

#if defined(__GNUC__) && defined(__x86_64__)
#define SMALL_ATTEND_AVX2 __attribute__((target("avx2,fma")))
#endif
#ifdef SMALL_ATTEND_AVX2
SMALL_ATTEND_AVX2 static void small_attend8_avx2(SMALL_ATTEND_ARGS) SMALL_ATTEND_BODY(8)
SMALL_ATTEND_AVX2 static void small_attend16_avx2(SMALL_ATTEND_ARGS) SMALL_ATTEND_BODY(16)
#endif
static void small_attend8(SMALL_ATTEND_ARGS) SMALL_ATTEND_BODY(8)
static void small_attend16(SMALL_ATTEND_ARGS) SMALL_ATTEND_BODY(16)

// llama_inputs.attend: plain causal attention (no mask), one sequence, f32 on the CPU, small heads;
// anything else goes to libtorch's attention as the forward would.
static pt_tensor *scorer_attend(const llama_layer_view *view, void *ctx, pith_err *err) {
  (void)ctx;
  pt_shape qs = pt_shape_of(view->q), ks = pt_shape_of(view->k);
  int64_t H = qs.d[1], T = qs.d[2], hd = qs.d[3], Hkv = ks.d[1], S = ks.d[2], P = S - T;
  if (view->mask || qs.d[0] != 1 || (hd != 8 && hd != 16) || P < 0 || Hkv < 1 || H % Hkv || pt_dtype_of(view->q) != PT_F32)
    return pt_attention(view->q, view->k, view->v, view->mask, view->mask == NULL, 0);
  size_t nq = (size_t)(H * T * hd), nk = (size_t)(Hkv * S * hd);
  float *q = malloc(nq * sizeof *q), *k = malloc(nk * sizeof *k), *v = malloc(nk * sizeof *v);
  float *out = malloc(nq * sizeof *out), *kt = malloc((size_t)(S * hd) * sizeof *kt), *s = malloc((size_t)S * sizeof *s);
  float *tw = malloc((size_t)S * sizeof *tw);
  int32_t *eb = malloc((size_t)S * sizeof *eb);
  pt_tensor *a = NULL;
  if (!q || !k || !v || !out || !kt || !s || !tw || !eb) {
    pith_fail(err, "out of memory (attention)");
  } else if (pt_to_data(pt_contiguous(view->q), q, nq * sizeof *q) ||
             pt_to_data(pt_contiguous(view->k), k, nk * sizeof *k) ||
             pt_to_data(pt_contiguous(view->v), v, nk * sizeof *v)) {
    pt_fail(err, "scorer attention");
  } else {
    float scale = (float)(1.0 / sqrt((double)hd));
#ifdef SMALL_ATTEND_AVX2
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
      (hd == 8 ? small_attend8_avx2 : small_attend16_avx2)(q, k, v, (int)H, (int)Hkv, T, P, scale, out, kt, s, eb, tw);
    else
#endif
      (hd == 8 ? small_attend8 : small_attend16)(q, k, v, (int)H, (int)Hkv, T, P, scale, out, kt, s, eb, tw);
    a = pt_from_data(out, PT_F32, PT_SHAPE(1, H, T, hd), PT_CPU);
    if (!a) pt_fail(err, "scorer attention");
  }
  free(q), free(k), free(v), free(out), free(kt), free(s), free(tw), free(eb);
  return a;
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
  // With a cache: the K/V each layer attended over (the cached prefix, then these T) are the new cache.
  llama_inputs in = {.ids = x, .want_kv = cache != NULL, .kv_with_prefix = 1};
  if (s->lm->device == PT_CPU) in.attend = scorer_attend;
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
    for (int l = 0; rc == 0 && l < L; l++) k[l] = out.k[l], v[l] = out.v[l];
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
