// press: the KV presses' scores and selections; see press.h.
#include "press.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const KIND_NAMES[PRESS_N_KINDS] = {"knorm", "streaming_llm", "snapkv", "expected_attention",
                                                      "tova", "observed_attention"};
#define KNOWN_PRESSES "knorm, streaming_llm, snapkv, expected_attention, tova, observed_attention"

const char *press_kind_name(press_kind k) { return k >= 0 && k < PRESS_N_KINDS ? KIND_NAMES[k] : NULL; }

void press_defaults(press *p, press_kind kind, double ratio) {
  *p = (press){.kind = kind, .ratio = ratio, .alpha_safeguard = 0.20, .window_size = 64, .kernel_size = 5,
               .n_sink = 4, .n_future_positions = 512, .use_covariance = 1, .use_vnorm = 1, .epsilon = 0.0};
}

int64_t press_n_kept(int64_t L, double ratio) {
  int64_t n = (int64_t)((double)L * (1.0 - ratio));  // Python's int(): truncation
  return n > 1 ? n : 1;
}

// ---------------------------------------------------------------- parameters

typedef enum { PAR_INT, PAR_DOUBLE, PAR_BOOL } par_type;


typedef struct {
  const char *name, *alias;
  unsigned kinds;  // bit per press_kind; 0 = the adakv wrapper's
  par_type type;
  size_t offset;
  double lo, hi;  // allowed range (inclusive)
  const char *what;
} par_def;

#define BIT(k) (1u << (k))
static const par_def PARAMS[] = {
    {"window_size", "window", BIT(PRESS_SNAPKV), PAR_INT, offsetof(press, window_size), 1, 1e9, "an integer >= 1"},
    {"kernel_size", "kernel", BIT(PRESS_SNAPKV), PAR_INT, offsetof(press, kernel_size), 1, 1e9, "an odd integer >= 1"},
    {"n_sink", NULL, BIT(PRESS_STREAMING_LLM) | BIT(PRESS_EXPECTED_ATTENTION), PAR_INT, offsetof(press, n_sink), 0,
     1e9, "an integer >= 0"},
    {"n_future_positions", NULL, BIT(PRESS_EXPECTED_ATTENTION), PAR_INT, offsetof(press, n_future_positions), 1, 1 << 20,
     "an integer in [1, 1048576]"},
    {"use_covariance", NULL, BIT(PRESS_EXPECTED_ATTENTION), PAR_BOOL, offsetof(press, use_covariance), 0, 1,
     "true or false"},
    {"use_vnorm", NULL, BIT(PRESS_EXPECTED_ATTENTION), PAR_BOOL, offsetof(press, use_vnorm), 0, 1, "true or false"},
    {"epsilon", NULL, BIT(PRESS_EXPECTED_ATTENTION), PAR_DOUBLE, offsetof(press, epsilon), -1e300, 1e300,
     "a finite number"},
    {"alpha_safeguard", "alpha", 0, PAR_DOUBLE, offsetof(press, alpha_safeguard), 0, 1, "a number in [0, 1]"},
};
#define N_PARAMS ((int)(sizeof PARAMS / sizeof PARAMS[0]))

static int par_applies(const par_def *d, const press *p) { return d->kinds ? (d->kinds & BIT(p->kind)) != 0 : p->adaptive; }

// "window_size, kernel_size" for p (its kind and wrapper), or "none".
static void par_list(const press *p, char *buf, size_t len) {
  buf[0] = 0;
  for (int i = 0; i < N_PARAMS; i++)
    if (par_applies(&PARAMS[i], p)) {
      size_t n = strlen(buf);
      snprintf(buf + n, len - n, "%s%s", n ? ", " : "", PARAMS[i].name);
    }
  if (!buf[0]) snprintf(buf, len, "none");
}

static int parse_number(const char *s, double *out) {
  char *end;
  errno = 0;
  double x = strtod(s, &end);
  if (!*s || *end || errno == ERANGE || !isfinite(x)) return -1;
  *out = x;
  return 0;
}

static int set_param(press *p, const char *spec, const char *key, const char *val, pith_err *err) {
  const char *name = KIND_NAMES[p->kind];
  const par_def *d = NULL;
  for (int i = 0; i < N_PARAMS && !d; i++)
    if (!strcmp(key, PARAMS[i].name) || (PARAMS[i].alias && !strcmp(key, PARAMS[i].alias))) d = &PARAMS[i];
  if (!d || !par_applies(d, p)) {
    char known[256];
    par_list(p, known, sizeof known);
    return pith_fail(err, "press '%s': unknown parameter '%s' for %s%s (known: %s)", spec, key,
                     p->adaptive ? "adakv-" : "", name, known);
  }
  char *field = (char *)p + d->offset;
  if (d->type == PAR_BOOL) {
    int b = !strcmp(val, "true") || !strcmp(val, "1") ? 1 : !strcmp(val, "false") || !strcmp(val, "0") ? 0 : -1;
    if (b < 0) return pith_fail(err, "press '%s': %s must be %s, not '%s'", spec, d->name, d->what, val);
    *(int *)field = b;
    return 0;
  }
  double x;
  int bad = parse_number(val, &x) || x < d->lo || x > d->hi;
  if (d->type == PAR_INT) bad = bad || x != floor(x) || (d->offset == offsetof(press, kernel_size) && fmod(x, 2) == 0);
  if (bad) return pith_fail(err, "press '%s': %s must be %s, not '%s'", spec, d->name, d->what, val);
  if (d->type == PAR_INT)
    *(int *)field = (int)x;
  else
    *(double *)field = x;
  return 0;
}

int press_parse(const char *spec, press *out, pith_err *err) {
  if (!spec || !*spec) return pith_fail(err, "press: empty spec (NAME:RATIO, e.g. snapkv:0.5; known: " KNOWN_PRESSES ")");
  char buf[512];
  if (strlen(spec) >= sizeof buf) return pith_fail(err, "press: spec of %zu characters is too long", strlen(spec));
  strcpy(buf, spec);
  char *ratio_s = strchr(buf, ':');
  if (ratio_s) *ratio_s++ = 0;
  char *params = ratio_s ? strchr(ratio_s, ':') : NULL;
  if (params) *params++ = 0;

  const char *name = buf;
  int adaptive = 0;
  if (!strncmp(name, "adakv-", 6)) adaptive = 1, name += 6;
  int kind = -1;
  for (int k = 0; k < PRESS_N_KINDS; k++)
    if (!strcmp(name, KIND_NAMES[k])) kind = k;
  if (kind < 0)
    return pith_fail(err, "press '%s': unknown press '%s' (known: " KNOWN_PRESSES "; adakv-NAME for per-head budgets)",
                     spec, name);
  if (!ratio_s) return pith_fail(err, "press '%s': no compression ratio (NAME:RATIO, e.g. %s:0.5)", spec, buf);
  double ratio;
  if (parse_number(ratio_s, &ratio))
    return pith_fail(err, "press '%s': compression ratio '%s' is not a number", spec, ratio_s);
  if (!(ratio >= 0 && ratio < 1))
    return pith_fail(err, "press '%s': compression ratio %g is outside [0, 1) (the fraction of entries removed)", spec,
                     ratio);
  press p;
  press_defaults(&p, (press_kind)kind, ratio);
  p.adaptive = adaptive;
  if (params) {
    if (!*params) return pith_fail(err, "press '%s': empty parameter list after the ratio", spec);
    for (char *save = NULL, *kv = strtok_r(params, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
      char *eq = strchr(kv, '=');
      if (!eq || eq == kv) return pith_fail(err, "press '%s': parameter '%s' is not KEY=VALUE", spec, kv);
      *eq = 0;
      if (set_param(&p, spec, kv, eq + 1, err)) return -1;
    }
  }
  *out = p;
  return 0;
}

// x in as few digits as read back to the same double (0.3, not 0.29999999999999999).
static const char *exact(double x, char *buf, size_t len) {
  for (int digits = 6; digits <= 17; digits++) {
    snprintf(buf, len, "%.*g", digits, x);
    if (strtod(buf, NULL) == x) break;
  }
  return buf;
}

int press_format(const press *p, char *buf, size_t len) {
  char num[40];
  int n = snprintf(buf, len, "%s%s:%s", p->adaptive ? "adakv-" : "", press_kind_name(p->kind),
                   exact(p->ratio, num, sizeof num));
  int first = 1;
  for (int i = 0; i < N_PARAMS; i++) {
    const par_def *d = &PARAMS[i];
    if (!par_applies(d, p)) continue;
    const char *field = (const char *)p + d->offset;
    size_t at = (size_t)n < len ? (size_t)n : len;
    const char *sep = first ? ":" : ",";
    first = 0;
    if (d->type == PAR_DOUBLE)
      n += snprintf(buf + at, len - at, "%s%s=%s", sep, d->name, exact(*(const double *)field, num, sizeof num));
    else if (d->type == PAR_BOOL)
      n += snprintf(buf + at, len - at, "%s%s=%s", sep, d->name, *(const int *)field ? "true" : "false");
    else
      n += snprintf(buf + at, len - at, "%s%s=%d", sep, d->name, *(const int *)field);
  }
  return n;
}

int press_check_len(const press *p, int64_t L, pith_err *err) {
  const char *name = KIND_NAMES[p->kind];
  if (L < 1) return pith_fail(err, "press %s: a row has no context tokens to compress", name);
  if (p->ratio == 0) return 0;
  if (p->kind == PRESS_SNAPKV && L <= p->window_size)
    return pith_fail(err, "press snapkv: window_size %d needs a longer context: %lld tokens (lower window_size)",
                     p->window_size, (long long)L);
  if ((p->kind == PRESS_STREAMING_LLM || p->kind == PRESS_EXPECTED_ATTENTION) && L <= p->n_sink)
    return pith_fail(err, "press %s: n_sink %d needs a longer context: %lld tokens", name, p->n_sink, (long long)L);
  return 0;
}

// ---------------------------------------------------------------- scores

// One row of the view: context-relative tensors, all f32.
typedef struct {
  const press *p;
  const llama_model *m;
  int64_t L, P, H, Hkv, hd;
  int64_t last_pos;     // the rotary position of the row's last context token
  pt_tensor *q, *q_pre;  // (1, H, L, hd)
  pt_tensor *k;          // (1, Hkv, P+L, hd): what the queries attend to
  pt_tensor *kc, *vc;    // (1, Hkv, L, hd): the candidates
  pt_tensor *mask;       // (1, 1, L, P+L) or NULL
} row_view;

static pt_tensor *div_scalar(pt_tensor *a, double s) {
  return pt_div(a, pt_full(PT_SCALAR_SHAPE, s, PT_F32, pt_device_of(a)));
}

// (1, H, n) → (1, Hkv, n): the mean over each KV head's query heads.
static pt_tensor *group_mean(const row_view *r, pt_tensor *s) {
  int64_t n = pt_size(s, -1);
  return pt_mean_dim(pt_reshape(s, PT_SHAPE(1, r->Hkv, r->H / r->Hkv, n)), 2, 0);
}

// s (1, Hkv, n) with w entries of (max of s) + 1 added at the front or the back (kvpress's F.pad of
// the entries it never evicts: sinks, the observation window).
static pt_tensor *pad_max(pt_tensor *s, int64_t w, int front) {
  double top = pt_item(pt_amax_dim(pt_reshape(s, PT_SHAPE(-1)), 0, 0));
  pt_tensor *fill = pt_full(PT_SHAPE(1, pt_size(s, 1), w), top + 1, PT_F32, pt_device_of(s));
  pt_tensor *parts[2] = {front ? fill : s, front ? s : fill};
  return pt_cat(parts, 2, -1);
}

static pt_tensor *norm_last(pt_tensor *x) { return pt_sqrt(pt_sum_dim(pt_mul(x, x), -1, 0)); }

static pt_tensor *score_knorm(const row_view *r) { return pt_neg(norm_last(r->kc)); }

static pt_tensor *score_streaming(const row_view *r) {
  int64_t L = r->L, n_pruned = L - (int64_t)((double)L * (1.0 - r->p->ratio));
  float *s = malloc(sizeof *s * (size_t)L);
  if (!s) return NULL;
  for (int64_t j = 0; j < L; j++) s[j] = j >= r->p->n_sink && j < r->p->n_sink + n_pruned ? 0.0f : 1.0f;
  pt_tensor *t = pt_expand(pt_from_data(s, PT_F32, PT_SHAPE(1, 1, L), pt_device_of(r->kc)), PT_SHAPE(1, r->Hkv, L));
  free(s);
  return pt_contiguous(t);
}

// Softmax probabilities (1, H, W, P+L) f32 of the row's last W queries over its keys, as
// llama_attention_probs computes them but without expanding K to every query head: the G query
// heads of a KV head meet its keys in one product (query head h = KV head h / G, as there).
static pt_tensor *window_probs(const row_view *r, int64_t W) {
  int64_t H = r->H, Hkv = r->Hkv, G = H / Hkv, L = r->L, S = r->P + L, hd = r->hd;
  pt_tensor *qw = pt_reshape(pt_slice(r->q, 2, L - W, L), PT_SHAPE(1, Hkv, G * W, hd));
  pt_tensor *sc = pt_mul_scalar(pt_matmul(qw, pt_transpose(r->k, 2, 3)), 1.0 / sqrt((double)hd));
  sc = pt_view(sc, PT_SHAPE(1, H, W, S));
  // query i of the window sits at P + L - W + i and sees keys j <= that position
  pt_tensor *visible = r->mask ? pt_slice(r->mask, 2, L - W, L)
                               : pt_view(pt_tril(pt_ones(PT_SHAPE(W, S), PT_BOOL, pt_device_of(sc)), S - W),
                                         PT_SHAPE(1, 1, W, S));
  return pt_softmax(pt_masked_fill(sc, pt_eq_scalar(visible, 0), -INFINITY), -1);
}

static pt_tensor *score_snapkv(const row_view *r) {
  int64_t w = r->p->window_size, n = r->L - w;
  pt_tensor *probs = window_probs(r, w);                                 // (1, H, w, P+L)
  pt_tensor *s = pt_mean_dim(pt_slice(probs, 3, r->P, r->P + n), 2, 0);  // (1, H, n)
  s = pt_avg_pool1d(s, r->p->kernel_size, r->p->kernel_size / 2);
  return pad_max(group_mean(r, s), w, 0);
}

static pt_tensor *score_tova(const row_view *r) {
  pt_tensor *probs = window_probs(r, 1);                                             // (1, H, 1, P+L)
  pt_tensor *s = pt_mean_dim(pt_slice(probs, 3, r->P, r->P + r->L - 1), 1, 0);      // (1, 1, L-1): all heads
  s = pt_contiguous(pt_expand(s, PT_SHAPE(1, r->Hkv, r->L - 1)));
  return pad_max(s, 1, 0);
}

static pt_tensor *score_observed(const row_view *r) {
  pt_tensor *probs = window_probs(r, r->L);                                          // (1, H, L, P+L)
  pt_tensor *s = pt_slice(pt_sum_dim(probs, 2, 0), 2, r->P, r->P + r->L);           // (1, H, L)
  // key j is seen by the L - j queries at or after it
  pt_tensor *count = pt_arange(-r->L, 0, PT_F32, pt_device_of(s));
  return group_mean(r, pt_div(s, pt_neg(count)));
}

static pt_tensor *score_expected(const row_view *r) {
  const press *p = r->p;
  int64_t ns = p->n_sink, n = r->L - ns, hd = r->hd, H = r->H, G = r->H / r->Hkv;
  pt_device dev = pt_device_of(r->kc);
  // Query statistics over the pre-RoPE queries of the non-sink tokens.
  pt_tensor *q = pt_slice(r->q_pre, 2, ns, r->L);                       // (1, H, n, hd)
  pt_tensor *mu = pt_mean_dim(q, 2, 1);                                 // (1, H, 1, hd)
  pt_tensor *cov = NULL;
  if (p->use_covariance) {
    pt_tensor *c = pt_sub(q, mu);
    cov = div_scalar(pt_matmul(pt_transpose(c, 2, 3), c), (double)n);  // (1, H, hd, hd)
  }
  // The mean rotation over the next n_future_positions positions: R = mean(cos)·I + mean(sin)·P
  // columnwise, P the rotate_half matrix.
  pt_tensor *pos = pt_view(pt_arange(r->last_pos + 1, r->last_pos + 1 + p->n_future_positions, PT_I64, dev),
                           PT_SHAPE(1, p->n_future_positions));
  pt_tensor *cos, *sin;
  if (llama_rope_tables(r->m, pos, &cos, &sin)) return NULL;
  float *eye = calloc((size_t)(hd * hd), sizeof *eye), *rot = calloc((size_t)(hd * hd), sizeof *rot);
  if (!eye || !rot) {
    free(eye), free(rot);
    pt_error_set("expected_attention: out of memory");
    return NULL;
  }
  for (int64_t i = 0; i < hd; i++) eye[i * hd + i] = 1;
  for (int64_t i = 0; i < hd / 2; i++) rot[(hd / 2 + i) * hd + i] = 1, rot[i * hd + hd / 2 + i] = -1;
  pt_tensor *I = pt_from_data(eye, PT_F32, PT_SHAPE(hd, hd), dev), *Pm = pt_from_data(rot, PT_F32, PT_SHAPE(hd, hd), dev);
  free(eye), free(rot);
  pt_tensor *mcos = pt_view(pt_mean_dim(pt_view(cos, PT_SHAPE(-1, hd)), 0, 0), PT_SHAPE(1, hd));
  pt_tensor *msin = pt_view(pt_mean_dim(pt_view(sin, PT_SHAPE(-1, hd)), 0, 0), PT_SHAPE(1, hd));
  pt_tensor *R = pt_add(pt_mul(I, mcos), pt_mul(Pm, msin));  // (hd, hd)
  pt_tensor *Rt = pt_transpose(R, 0, 1);
  mu = pt_matmul(mu, Rt);
  if (cov) cov = pt_matmul(R, pt_matmul(cov, Rt));

  // Expected logits of the non-sink keys, each KV head's keys read by its G query heads.
  pt_tensor *k = pt_slice(r->kc, 2, ns, r->L);  // (1, Hkv, n, hd)
  k = pt_reshape(pt_expand(pt_unsqueeze(k, 2), PT_SHAPE(1, r->Hkv, G, n, hd)), PT_SHAPE(1, H, n, hd));
  pt_tensor *s = div_scalar(pt_view(pt_matmul(mu, pt_transpose(k, 2, 3)), PT_SHAPE(1, H, n)), sqrt((double)hd));
  if (cov) s = pt_add(s, div_scalar(div_scalar(pt_sum_dim(pt_mul(pt_matmul(k, cov), k), -1, 0), (double)hd), 2.0));
  s = group_mean(r, pt_softmax(s, -1));  // (1, Hkv, n)
  if (p->use_vnorm) s = pt_mul(pt_add_scalar(s, p->epsilon), norm_last(pt_slice(r->vc, 2, ns, r->L)));
  return ns > 0 ? pad_max(s, ns, 1) : s;
}

// ---------------------------------------------------------------- selection

static int keep_all(kv_keep *keep, int layer, int b, int64_t Hkv, int64_t L, pith_err *err) {
  int64_t *pos = malloc(sizeof *pos * (size_t)L);
  if (!pos) return pith_fail(err, "press: out of memory");
  for (int64_t j = 0; j < L; j++) pos[j] = j;
  int rc = 0;
  for (int h = 0; h < Hkv && !rc; h++) rc = kv_keep_set(keep, layer, b, h, pos, (int)L, err);
  free(pos);
  return rc;
}

// Top n_kept per head (ScorerPress.compress), or AdaKV's per-head budgets, from scores (1, Hkv, L).
static int select_row(const press *p, pt_tensor *scores, int64_t Hkv, int64_t L, int layer, int b, kv_keep *keep,
                      pith_err *err) {
  int64_t nk = press_n_kept(L, p->ratio);
  int64_t *idx = NULL, *pos = NULL;
  unsigned char *pruned = NULL;
  int rc = -1;
  if (!p->adaptive) {
    pt_tensor *top = pt_topk(scores, nk, -1, 1);  // (1, Hkv, nk)
    idx = malloc(sizeof *idx * (size_t)(Hkv * nk));
    if (!idx) goto oom;
    if (pt_to_data(top, idx, sizeof *idx * (size_t)(Hkv * nk))) {
      rc = pt_fail(err, "press %s: top-k", press_kind_name(p->kind));
      goto done;
    }
    rc = 0;
    for (int h = 0; h < Hkv && !rc; h++) rc = kv_keep_set(keep, layer, b, h, idx + h * nk, (int)nk, err);
    goto done;
  }
  // AdaKV: each head's top alpha·n_kept are made unbeatable, then the Hkv·(L − n_kept) lowest
  // scores over all heads are evicted.
  int64_t n_safe = (int64_t)((double)nk * p->alpha_safeguard);
  if (p->alpha_safeguard > 0) n_safe = n_safe > 1 ? n_safe : 1;
  if (n_safe > 0) {
    pt_tensor *top = pt_topk(scores, n_safe, -1, 1);
    scores = pt_scatter(scores, -1, top, pt_full(pt_shape_of(top), FLT_MAX, PT_F32, pt_device_of(scores)));
  }
  int64_t n_pruned = Hkv * (L - nk);
  pruned = calloc((size_t)(Hkv * L), 1);
  pos = malloc(sizeof *pos * (size_t)L);
  idx = malloc(sizeof *idx * (size_t)(n_pruned > 0 ? n_pruned : 1));
  if (!pruned || !pos || !idx) goto oom;
  if (n_pruned > 0) {
    pt_tensor *low = pt_topk(pt_neg(pt_reshape(scores, PT_SHAPE(1, Hkv * L))), n_pruned, 1, 1);
    if (pt_to_data(low, idx, sizeof *idx * (size_t)n_pruned)) {
      rc = pt_fail(err, "press adakv-%s: top-k", press_kind_name(p->kind));
      goto done;
    }
    for (int64_t i = 0; i < n_pruned; i++) pruned[idx[i]] = 1;
  }
  rc = 0;
  for (int h = 0; h < Hkv && !rc; h++) {
    int n = 0;
    for (int64_t j = 0; j < L; j++)
      if (!pruned[h * L + j]) pos[n++] = j;
    rc = kv_keep_set(keep, layer, b, h, pos, n, err);
  }
  goto done;
oom:
  rc = pith_fail(err, "press: out of memory");
done:
  free(idx);
  free(pos);
  free(pruned);
  return rc;
}

static pt_tensor *row_of(const pt_tensor *t, int b, int64_t len) {
  return pt_slice(pt_slice(t, 0, b, b + 1), 2, 0, len);
}

int press_select_layer(const press *p, const llama_model *m, const llama_layer_view *v, const int *row_len,
                       kv_keep *keep, pith_err *err) {
  const char *name = press_kind_name(p->kind);
  if (!name) return pith_fail(err, "press: kind %d is not a press", (int)p->kind);
  if (!(p->ratio >= 0 && p->ratio < 1))
    return pith_fail(err, "press %s: compression ratio %g is outside [0, 1)", name, p->ratio);
  int64_t B = pt_size(v->q, 0), H = pt_size(v->q, 1), T = pt_size(v->q, 2), hd = pt_size(v->q, 3);
  int64_t Hkv = pt_size(v->k, 1), P = v->prefix_len;
  if (keep->n_layers <= v->layer || keep->batch != B || keep->n_kv_heads != Hkv)
    return pith_fail(err,
                     "press %s: the keep is (%d layers, %d rows, %d kv heads), the forward (layer %d, %lld rows, "
                     "%lld kv heads)",
                     name, keep->n_layers, keep->batch, keep->n_kv_heads, v->layer, (long long)B, (long long)Hkv);
  if (pt_size(v->k, 2) != P + T || Hkv <= 0 || H % Hkv)
    return pith_fail(err, "press %s: keys of %lld entries for a prefix of %lld and %lld tokens", name,
                     (long long)pt_size(v->k, 2), (long long)P, (long long)T);
  for (int b = 0; b < B; b++) {
    int64_t L = row_len ? row_len[b] : T;
    if (L > T)
      return pith_fail(err, "press %s: row %d has %lld context tokens, the forward only %lld", name, b, (long long)L,
                       (long long)T);
    if (press_check_len(p, L, err)) {
      if (!err) return -1;
      char msg[sizeof err->msg];
      snprintf(msg, sizeof msg, "%s", err->msg);
      return pith_fail(err, "%s (row %d, layer %d)", msg, b, v->layer);
    }
  }
  int64_t *last = malloc(sizeof *last * (size_t)(B * T));
  if (!last) return pith_fail(err, "press: out of memory");
  pt_scope s = pt_scope_begin();
  int rc = pt_to_data(v->positions, last, sizeof *last * (size_t)(B * T)) ? pt_fail(err, "press %s: positions", name)
                                                                           : 0;
  for (int b = 0; b < B && !rc; b++) {
    int64_t L = row_len ? row_len[b] : T;
    if (p->ratio == 0 || press_n_kept(L, p->ratio) >= L) {  // nothing to evict (kvpress skips scoring)
      rc = keep_all(keep, v->layer, b, Hkv, L, err);
      continue;
    }
    pt_scope rs = pt_scope_begin();
    row_view r = {.p = p, .m = m, .L = L, .P = P, .H = H, .Hkv = Hkv, .hd = hd, .last_pos = last[b * T + L - 1]};
    r.q = pt_to_dtype(row_of(v->q, b, L), PT_F32);
    r.q_pre = pt_to_dtype(row_of(v->q_prerope, b, L), PT_F32);
    r.k = pt_to_dtype(row_of(v->k, b, P + L), PT_F32);
    r.kc = pt_slice(r.k, 2, P, P + L);
    r.vc = pt_to_dtype(pt_slice(row_of(v->v, b, P + L), 2, P, P + L), PT_F32);
    r.mask = v->mask ? pt_slice(row_of(v->mask, b, L), 3, 0, P + L) : NULL;
    pt_tensor *sc = NULL;
    switch (p->kind) {
      case PRESS_KNORM: sc = score_knorm(&r); break;
      case PRESS_STREAMING_LLM: sc = score_streaming(&r); break;
      case PRESS_SNAPKV: sc = score_snapkv(&r); break;
      case PRESS_EXPECTED_ATTENTION: sc = score_expected(&r); break;
      case PRESS_TOVA: sc = score_tova(&r); break;
      case PRESS_OBSERVED_ATTENTION: sc = score_observed(&r); break;
      default: break;
    }
    if (!sc || !pt_ok())
      rc = pt_fail(err, "press %s%s: scoring layer %d, row %d", p->adaptive ? "adakv-" : "", name, v->layer, b);
    else
      rc = select_row(p, pt_contiguous(sc), Hkv, L, v->layer, b, keep, err);
    pt_scope_end(rs);
  }
  pt_scope_end(s);
  free(last);
  return rc;
}

int press_on_layer(const llama_layer_view *v, void *ctx, pith_err *err) {
  const press_hook *h = ctx;
  return press_select_layer(h->p, h->m, v, h->row_len, h->keep, err);
}

int press_select(void *ctx, const llama_layer_view *v, const int *row_len, kv_keep *keep, pith_err *err) {
  const press_selector *s = ctx;
  return press_select_layer(s->p, s->m, v, row_len, keep, err);
}
