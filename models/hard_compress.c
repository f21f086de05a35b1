// hard_compress: LLMLingua and LongLLMLingua (see hard_compress.h). Index arithmetic follows
// llmlingua 0.2.2 exactly, Python's slice rules included (py_index), since parity is the point.
#include "hard_compress.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strbuf.h"

enum { HC_CACHE_SINKS = 10 };  // positions kept at the front when the cache is cut (cache_bos_num)
enum { HC_PREFIX_KEEP = 100 };  // head of an over-long question prefix kept (prefix_bos_num)
static const char RANK_SUFFIX[] = " We can get the answer to this question in the given documents.";

hc_options hc_options_llmlingua(void) {
  return (hc_options){.rate = 0.5, .target_tokens = -1, .iterative_size = 200, .rank_method = HC_RANK_LLMLINGUA,
                      .condition = HC_COND_NONE, .reorder = HC_REORDER_ORIGINAL, .budget_op = '+',
                      .budget_value = 100, .context_filter = 1, .token_filter = 1, .concate_question = 1};
}

hc_options hc_options_longllmlingua(void) {
  hc_options o = hc_options_llmlingua();
  o.rank_method = HC_RANK_LONGLLMLINGUA;
  o.condition = HC_COND_AFTER;
  o.condition_flag = 1;
  o.condition_compare = 1;
  o.reorder = HC_REORDER_SORT;
  o.dynamic_ratio = 0.3;
  return o;
}

// ---- growable arrays ----
typedef struct {
  int32_t *v;
  int64_t n, cap;
} ivec;
typedef struct {
  int64_t *v;
  int64_t n, cap;
} lvec;
typedef struct {
  float *v;
  int64_t n, cap;
} fvec;

#define VEC_RESERVE(x, want)                                                  \
  ((want) <= (x)->cap ? 0                                                     \
                      : ((x)->cap = (want) > 2 * (x)->cap ? (want) : 2 * (x)->cap, \
                         ((x)->v = realloc((x)->v, (size_t)(x)->cap * sizeof *(x)->v)) ? 0 : -1))

// Python's index into a sequence of n for a slice bound: negative counts from the end; clipped.
static int64_t py_index(int64_t i, int64_t n) {
  if (i < 0) i += n;
  return i < 0 ? 0 : i > n ? n : i;
}

static int encode(const tokenizer *tok, const char *text, int bos, ivec *out, pith_err *err) {
  free(out->v);
  out->v = NULL;
  out->n = out->cap = 0;
  size_t n;
  if (tokenizer_encode(tok, text, strlen(text), bos, &out->v, &n, err)) return -1;
  out->n = out->cap = (int64_t)n;
  return 0;
}

// get_token_length: tokens of text, with bos when asked (an empty text counts its bos).
static int token_count(const tokenizer *tok, const char *text, int bos, int64_t *n, pith_err *err) {
  ivec v = {0};
  int rc = encode(tok, text, bos, &v, err);
  *n = v.n;
  free(v.v);
  return rc;
}

// ---- scores ----

// The ratio-quantile of the scores, as the threshold of a window: keep what is strictly above
// the int(n·ratio)-th largest. ratio 1 keeps everything.
static float quantile_threshold(const float *score, int64_t n, double ratio) {
  if (ratio == 1.0) return -INFINITY;
  float *v = malloc((size_t)(n > 0 ? n : 1) * sizeof *v);
  if (!v) return NAN;
  int64_t m = 0;
  for (int64_t i = 0; i < n; i++)
    if (score[i] != 10000.0f) v[m++] = score[i];  // llmlingua's marker of a forced token
  int64_t k = (int64_t)((double)m * ratio) - 1;
  if (k > m - 1) k = m - 1;
  if (k < 0) k = 0;
  // the (k+1)-th largest by quickselect (only the value matters, so ties cannot change it)
  int64_t lo = 0, hi = m - 1;
  while (lo < hi) {
    float pivot = v[lo + (hi - lo) / 2];
    int64_t i = lo, j = hi;
    while (i <= j) {
      while (v[i] > pivot) i++;
      while (v[j] < pivot) j--;
      if (i <= j) {
        float t = v[i];
        v[i++] = v[j];
        v[j--] = t;
      }
    }
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else break;
  }
  float thr = m > 0 ? v[k] : NAN;
  free(v);
  return thr;
}

// Mean NLL of the tokens of `text` after its first `skip` tokens, as get_ppl(text).mean() with
// condition_mode "after" (one forward of at most max_pos tokens, as llmlingua caps it).
static int text_mean_nll(scorer *s, const char *text, int64_t from, double *mean, pith_err *err) {
  ivec ids = {0};
  if (encode(s->tok, text, 1, &ids, err)) return -1;
  int64_t n = ids.n < s->max_pos ? ids.n : s->max_pos;
  int rc = scorer_mean_nll(s, ids.v, n, from, mean, err);
  free(ids.v);
  return rc;
}

// ---- coarse stage: rank the contexts, keep them until the budget is crossed ----

static int rank_contexts(scorer *s, const char *const *ctx, int n, const char *question, hc_condition cond,
                         int *order, pith_err *err) {
  double *ppl = malloc((size_t)n * sizeof *ppl);
  if (!ppl) return pith_fail(err, "out of memory");
  strbuf q = {0}, t = {0};
  strbuf_adds(&q, question ? question : "");
  strbuf_adds(&q, RANK_SUFFIX);
  int rc = strbuf_ok(&q) ? 0 : pith_fail(err, "out of memory");
  for (int i = 0; rc == 0 && i < n; i++) {
    strbuf_clear(&t);
    int64_t from = 0;
    if (cond == HC_COND_NONE) {
      strbuf_adds(&t, ctx[i]);
    } else {
      // condition_pos_id: the tokens (bos counted) of the first part, less one
      const char *first = cond == HC_COND_AFTER ? ctx[i] : q.p;
      strbuf_adds(&t, first);
      strbuf_adds(&t, cond == HC_COND_AFTER ? q.p : ctx[i]);
      if (token_count(s->tok, first, 1, &from, err)) rc = -1;
      from -= 1;
    }
    if (rc == 0 && !strbuf_ok(&t)) rc = pith_fail(err, "out of memory");
    if (rc == 0) rc = text_mean_nll(s, t.p, from, &ppl[i], err);
  }
  if (rc == 0) {
    // Stable sort: perplexity highest first without a question condition, lowest first with one.
    double dir = cond == HC_COND_NONE ? -1 : 1;
    for (int i = 0; i < n; i++) order[i] = i;
    for (int i = 1; i < n; i++) {
      int x = order[i], j = i;
      while (j > 0 && dir * ppl[x] < dir * ppl[order[j - 1]]) {
        order[j] = order[j - 1];
        j--;
      }
      order[j] = x;
    }
  }
  strbuf_free(&q);
  strbuf_free(&t);
  free(ppl);
  return rc;
}

// control_context_budget: which contexts, in which order, and each one's ratio offset.
static int select_contexts(const hc_options *o, const int64_t *ctx_len, int n, const int *rank, double target,
                           int *used, int *n_used, double *offset) {
  if (target < 0) target = 100;
  target = o->budget_op == '*'   ? target * o->budget_value
           : o->budget_op == '-' ? target - o->budget_value
                                 : target + o->budget_value;
  int k = 0;
  for (int r = 0; r < n; r++) {
    target -= (double)ctx_len[rank[r]];
    used[k++] = rank[r];
    if (target < 0) break;
  }
  *n_used = k;
  int by_rank[k > 0 ? k : 1];  // the rank order, before reordering
  memcpy(by_rank, used, (size_t)k * sizeof *used);
  if (o->reorder == HC_REORDER_ORIGINAL) {
    for (int i = 1; i < k; i++)
      for (int j = i; j > 0 && used[j] < used[j - 1]; j--) {
        int t = used[j];
        used[j] = used[j - 1];
        used[j - 1] = t;
      }
  } else if (o->reorder == HC_REORDER_TWO_STAGE) {
    // ranks 0, 2, 4, ... first, then the odd ranks from the last back
    int m = 0;
    for (int i = 0; i < k; i += 2) used[m++] = by_rank[i];
    for (int i = k - 1 - (k % 2 == 0 ? 0 : 1); i >= 1; i -= 2) used[m++] = by_rank[i];
  }
  // Dynamic ratio: rank r of N gets d·(N−1−2r)/(N−1), from +d down to −d.
  for (int i = 0; i < k; i++) {
    offset[i] = 0;
    if (o->dynamic_ratio > 0 && k > 1) {
      int r = 0;
      while (by_rank[r] != used[i]) r++;
      offset[i] = (double)(k - 1 - 2 * r) * (fabs(o->dynamic_ratio) / (double)(k - 1));
    }
  }
  return 0;
}

// ---- fine stage: iterative token-level compression ----

// A window's segments: (tokens, ratio) pairs, llmlingua's get_dynamic_compression_ratio over the
// estimated lengths |C_i| + 2 (no bos) with the ratio tau = target / (Σ + 1) offset per context.
typedef struct {
  int n;           // windows
  int *first;      // (n + 1) window w holds segments [first[w], first[w + 1])
  int64_t *len;    // (segments)
  double *ratio;   // (segments)
  int n_seg, cap_win, cap_seg;
} plan;

static void plan_free(plan *p) {
  free(p->first);
  free(p->len);
  free(p->ratio);
}

static int plan_push_window(plan *p) {
  if (p->n + 2 > p->cap_win) {
    int cap = p->cap_win ? 2 * p->cap_win : 16;
    int *f = realloc(p->first, (size_t)cap * sizeof *f);
    if (!f) return -1;
    p->first = f, p->cap_win = cap;
  }
  p->first[p->n] = p->n_seg;
  p->first[++p->n] = p->n_seg;
  return 0;
}

static int plan_add(plan *p, int64_t len, double ratio) {
  if (p->n_seg == p->cap_seg) {
    int cap = p->cap_seg ? 2 * p->cap_seg : 16;
    int64_t *l = realloc(p->len, (size_t)cap * sizeof *l);
    if (l) p->len = l;
    double *r = l ? realloc(p->ratio, (size_t)cap * sizeof *r) : NULL;
    if (!r) return -1;
    p->ratio = r, p->cap_seg = cap;
  }
  p->len[p->n_seg] = len;
  p->ratio[p->n_seg++] = ratio;
  p->first[p->n] = p->n_seg;
  return 0;
}

static double clamp01(double x) { return x > 1 ? 1 : x < 0 ? 0 : x; }

static int plan_windows(const int64_t *est_len, int n, const double *offset, double target, int size, plan *p,
                        pith_err *err) {
  double sum = 0;
  for (int i = 0; i < n; i++) sum += (double)est_len[i];
  double tau = target / (sum + 1);
  int64_t last = 1;
  int open = 0;  // a window holds segments not yet closed
  int rc = 0;
  for (int i = 0; i < n && rc == 0; i++) {
    double r = clamp01(tau + offset[i]);
    if (!open) rc |= plan_push_window(p), open = 1;
    if (last + est_len[i] >= size) {
      rc |= plan_add(p, size - last, r);
      open = 0;
      last = last + est_len[i] - size;
      if (last > size) {
        int64_t k = last / size;
        for (int64_t j = 0; j < k && rc == 0; j++) rc |= plan_push_window(p) || plan_add(p, size, r);
        last -= k * size;
      }
      if (last) {
        rc |= plan_push_window(p) || plan_add(p, last, r);
        open = 1;
      }
    } else {
      last += est_len[i];
      rc |= plan_add(p, est_len[i], r);
    }
  }
  return rc ? pith_fail(err, "out of memory (window plan)") : 0;
}

// The sequence under compression (compressed_input_ids), with each token's position in the
// original, its stale scores (past_loss), and the cache of its compressed prefix.
typedef struct {
  ivec ids;
  lvec pos;
  fvec loss;
  scorer_cache cache;
  int cached;  // past_key_values is not None
} fine_seq;

static void fine_seq_free(fine_seq *f) {
  free(f->ids.v);
  free(f->pos.v);
  free(f->loss.v);
  scorer_cache_clear(&f->cache);
}

// get_ppl over ids[P .. end) after the cache (P its length when cached, else 0), end capped at
// P + max_pos: *got 0 when there is nothing to score (the loop stops). The cache afterwards
// covers [0, end).
static int rescore(scorer *s, fine_seq *f, int64_t end, fvec *nll, int *got, pith_err *err) {
  int64_t P = f->cached ? f->cache.len : 0;
  if (!f->cached) {
    int L = f->cache.n_layers;
    scorer_cache_clear(&f->cache);
    f->cache.n_layers = L;
  }
  if (end > P + s->max_pos) end = P + s->max_pos;
  if (end > f->ids.n) end = f->ids.n;
  *got = end - P > 1;
  if (!*got) return 0;
  if (VEC_RESERVE(nll, end - P - 1)) return pith_fail(err, "out of memory");
  nll->n = end - P - 1;
  return scorer_nll(s, f->ids.v, end, &f->cache, nll->v, err);
}

// past_loss[ready_end : end−1] = nll, the array first grown with zeros (at most |nll| of them).
static int merge_scores(fvec *past, int first, const fvec *nll, int64_t ready_end, int64_t end, pith_err *err) {
  if (first) {
    if (VEC_RESERVE(past, nll->n)) return pith_fail(err, "out of memory");
    memcpy(past->v, nll->v, (size_t)nll->n * sizeof *nll->v);
    past->n = nll->n;
    return 0;
  }
  if (end - 1 > past->n) {
    int64_t grow = end - 1 - past->n < nll->n ? end - 1 - past->n : nll->n;
    if (VEC_RESERVE(past, past->n + grow)) return pith_fail(err, "out of memory");
    memset(past->v + past->n, 0, (size_t)grow * sizeof *past->v);
    past->n += grow;
  }
  int64_t a = py_index(ready_end, past->n), b = py_index(end - 1, past->n);
  if (b < a) b = a;
  if (b - a != nll->n && nll->n != 1)
    return pith_fail(err, "hard_compress: window of %lld scores does not fit [%lld, %lld)", (long long)nll->n,
                     (long long)a, (long long)b);
  for (int64_t i = a; i < b; i++) past->v[i] = nll->v[nll->n == 1 ? 0 : i - a];
  return 0;
}

// get_compressed_input: decide the tokens of one segment [E − D, E) and drop the others from the
// sequence (and from the contrastive one, whose index is shifted by `start`). *new_end: E less
// the tokens dropped before it.
static int compress_segment(fine_seq *f, fine_seq *self, int64_t E, int64_t D, float thr, int64_t start,
                            int64_t *new_end, pith_err *err) {
  int64_t nl = f->loss.n, m = nl + 1;
  int64_t cap = m;
  if (self && self->loss.n + start + 1 > cap) cap = self->loss.n + start + 1;
  if (f->ids.n > cap) cap = f->ids.n;
  uint8_t *need = malloc((size_t)cap);
  if (!need) return pith_fail(err, "out of memory");
  const float *loss = f->loss.v;
  if (self) {
    if (start > nl || self->loss.n < nl - start) {
      free(need);
      return pith_fail(err, "hard_compress: contrastive scores shorter than the conditioned ones");
    }
    for (int64_t j = 0; j < start; j++) need[j] = loss[j] > 0;
    for (int64_t j = 0; j < nl - start; j++) need[start + j] = (float)(self->loss.v[j] - loss[start + j]) > thr;
  } else {
    for (int64_t j = 0; j < nl; j++) need[j] = loss[j] > thr;
  }
  need[nl] = loss[0] > 0;
  for (int64_t j = py_index(E, m); j < m; j++) need[j] = 1;
  for (int64_t j = 0; j < py_index(E - D, m); j++) need[j] = 1;
  // the scores stay with their tokens (now stale: the next window rescoring refreshes some)
  int64_t k = 0;
  for (int64_t j = 0; j < nl; j++)
    if (need[j]) f->loss.v[k++] = loss[j];
  f->loss.n = k;
  int64_t mm = m;
  int rc = 0;
  if (self) {
    if (mm < self->loss.n + start + 1) {
      memset(need + mm, 1, (size_t)(self->loss.n + start + 1 - mm));
      mm = self->loss.n + start + 1;
    }
    if (mm - 1 - start != self->loss.n) {
      rc = pith_fail(err, "hard_compress: contrastive scores misaligned (%lld vs %lld)", (long long)(mm - 1 - start),
                     (long long)self->loss.n);
    } else {
      k = 0;
      for (int64_t j = 0; j < self->loss.n; j++)
        if (need[start + j]) self->loss.v[k++] = self->loss.v[j];
      self->loss.n = k;
    }
  }
  if (rc == 0) {
    if (mm < f->ids.n) memset(need + mm, 1, (size_t)(f->ids.n - mm));
    mm = f->ids.n;
    k = 0;
    for (int64_t j = 0; j < mm; j++)
      if (need[j]) f->ids.v[k] = f->ids.v[j], f->pos.v[k] = f->pos.v[j], k++;
    f->ids.n = f->pos.n = k;
    if (self) {
      if (self->ids.n != mm - start) {
        rc = pith_fail(err, "hard_compress: the contrastive sequence is misaligned");
      } else {
        k = 0;
        for (int64_t j = 0; j < self->ids.n; j++)
          if (need[start + j]) self->ids.v[k++] = self->ids.v[j];
        self->ids.n = k;
      }
    }
    int64_t dropped = 0;
    for (int64_t j = 0; j < py_index(E, mm); j++) dropped += !need[j];
    *new_end = E - dropped;
  }
  free(need);
  return rc;
}

// iterative_compress_prompt over `ids` (the question prefix, when there is one, is its first
// `start` tokens). Leaves the kept tokens (prefix included) in out / out_pos.
static int iterative_compress(scorer *s, const int32_t *ids, int64_t n, int64_t start, const plan *p,
                              const hc_options *o, hc_result *r, ivec *out, lvec *out_pos, pith_err *err) {
  const int64_t size = o->iterative_size;
  int cc = o->condition_compare;
  fine_seq f = {0}, self = {0};
  fvec nll = {0}, self_nll = {0}, diff = {0};
  ivec popped = {0};
  lvec popped_pos = {0};
  int rc = 0;
  if (VEC_RESERVE(&f.ids, n) || VEC_RESERVE(&f.pos, n) || (cc && VEC_RESERVE(&self.ids, n - start))) {
    rc = pith_fail(err, "out of memory");
    goto done;
  }
  if (n > 0) memcpy(f.ids.v, ids, (size_t)n * sizeof *ids);
  for (int64_t i = 0; i < n; i++) f.pos.v[i] = i;
  f.ids.n = f.pos.n = n;
  if (cc && n > start) {
    memcpy(self.ids.v, ids + start, (size_t)(n - start) * sizeof *ids);
    self.ids.n = n - start;
  }
  f.cache.n_layers = self.cache.n_layers = s->lm->cfg.n_layers;

  int64_t end = size + start < n ? size + start : n, ready_end = 0, self_ready_end = 0;
  for (int idx = 0; end <= f.ids.n; idx++) {
    if (end > s->max_pos && f.cached) {
      // The sequence outgrew the model: drop its first e tokens, and from the cache the e
      // positions after the first sinks (the scores are not shifted: llmlingua's indexing).
      int64_t e = end - s->max_pos, sinks = HC_CACHE_SINKS + start < s->max_pos ? HC_CACHE_SINKS + start : s->max_pos;
      if (VEC_RESERVE(&popped, popped.n + e) || VEC_RESERVE(&popped_pos, popped_pos.n + e)) {
        rc = pith_fail(err, "out of memory");
        goto done;
      }
      memcpy(popped.v + popped.n, f.ids.v, (size_t)e * sizeof *f.ids.v);
      memcpy(popped_pos.v + popped_pos.n, f.pos.v, (size_t)e * sizeof *f.pos.v);
      popped.n += e, popped_pos.n += e;
      memmove(f.ids.v, f.ids.v + e, (size_t)(f.ids.n - e) * sizeof *f.ids.v);
      memmove(f.pos.v, f.pos.v + e, (size_t)(f.pos.n - e) * sizeof *f.pos.v);
      f.ids.n -= e, f.pos.n -= e;
      if ((rc = scorer_cache_splice(&f.cache, sinks, sinks + e, err))) goto done;
      end -= e, ready_end -= e;
      if (cc) {
        int64_t s2 = sinks < self.cache.len - e ? sinks : self.cache.len - e;
        self_ready_end -= e;
        int64_t cut = e < self.ids.n ? e : self.ids.n;
        memmove(self.ids.v, self.ids.v + cut, (size_t)(self.ids.n - cut) * sizeof *self.ids.v);
        self.ids.n -= cut;
        if ((rc = scorer_cache_splice(&self.cache, py_index(s2, self.cache.len), py_index(s2 + e, self.cache.len),
                                      err)))
          goto done;
      }
    }
    int got;
    if ((rc = rescore(s, &f, idx ? end : f.ids.n, &nll, &got, err))) goto done;
    if (!got) break;
    if (idx == 0) {
      r->first_nll = malloc((size_t)nll.n * sizeof *nll.v);
      if (!r->first_nll) {
        rc = pith_fail(err, "out of memory");
        goto done;
      }
      memcpy(r->first_nll, nll.v, (size_t)nll.n * sizeof *nll.v);
      r->n_first_nll = nll.n;
    }
    if ((rc = merge_scores(&f.loss, idx == 0, &nll, ready_end, end, err))) goto done;
    // Keep the cache up to this window's start (what is final); the first pass keeps none.
    if (idx) {
      if ((rc = scorer_cache_truncate(&f.cache, py_index(end - size, f.cache.len), err))) goto done;
      f.cached = 1;
    } else {
      f.cached = 0;
    }
    if (cc) {
      if ((rc = rescore(s, &self, idx ? end - start : self.ids.n, &self_nll, &got, err))) goto done;
      if (got && (rc = merge_scores(&self.loss, idx == 0, &self_nll, self_ready_end, end - start, err))) goto done;
      if (idx) {
        if ((rc = scorer_cache_truncate(&self.cache, py_index(end - size - start, self.cache.len), err))) goto done;
        self.cached = 1;
      } else {
        self.cached = 0;
      }
      self_ready_end = !(start && idx == 0) ? end - start - size : 0;
    }
    ready_end = !(start && idx == 0) ? end - size : 0;
    if (idx >= p->n) break;  // llmlingua would fail here (IndexError): stop compressing instead
    for (int g = p->first[idx]; g < p->first[idx + 1]; g++) {
      float thr;
      if (cc) {
        int64_t k = f.loss.n - start;
        if (k < 0) k = 0;
        if (VEC_RESERVE(&diff, k > 0 ? k : 1)) {
          rc = pith_fail(err, "out of memory");
          goto done;
        }
        for (int64_t j = 0; j < k; j++) diff.v[j] = self.loss.v[j] - f.loss.v[start + j];
        thr = quantile_threshold(diff.v, k, p->ratio[g]);
      } else {
        thr = quantile_threshold(f.loss.v, f.loss.n, p->ratio[g]);
      }
      int64_t new_end = 0;
      if ((rc = compress_segment(&f, cc ? &self : NULL, end - size + p->len[g], p->len[g], thr, start, &new_end,
                                 err)))
        goto done;
      end = new_end + size;
    }
    r->n_windows = idx + 1;
    if (o->progress) {
      int64_t at = end - size;
      at = at <= 0 ? 0 : at >= f.pos.n ? n : f.pos.v[at - 1] + 1;
      o->progress(at, n, o->progress_ctx);
    }
  }
  // popped ++ the rest
  if (VEC_RESERVE(out, popped.n + f.ids.n) || VEC_RESERVE(out_pos, popped.n + f.ids.n)) {
    rc = pith_fail(err, "out of memory");
    goto done;
  }
  if (popped.n) {  // (memcpy wants real pointers even for 0 bytes)
    memcpy(out->v, popped.v, (size_t)popped.n * sizeof *popped.v);
    memcpy(out_pos->v, popped_pos.v, (size_t)popped.n * sizeof *popped_pos.v);
  }
  if (f.ids.n) {
    memcpy(out->v + popped.n, f.ids.v, (size_t)f.ids.n * sizeof *f.ids.v);
    memcpy(out_pos->v + popped.n, f.pos.v, (size_t)f.ids.n * sizeof *f.pos.v);
  }
  out->n = out_pos->n = popped.n + f.ids.n;
done:
  fine_seq_free(&f);
  fine_seq_free(&self);
  free(nll.v);
  free(self_nll.v);
  free(diff.v);
  free(popped.v);
  free(popped_pos.v);
  return rc;
}

// ---- the question prefix ----

// get_prefix_length: how many tokens of tokenize(prefix + text[:100 characters]) spell prefix.
static int prefix_length(const tokenizer *tok, const char *prefix, const char *text, int64_t *out, pith_err *err) {
  size_t cut = 0;
  for (int chars = 0; text[cut] && chars < 100; chars++) {
    cut++;
    while ((text[cut] & 0xC0) == 0x80) cut++;  // the rest of a UTF-8 character
  }
  strbuf full = {0};
  strbuf_adds(&full, prefix);
  strbuf_add(&full, text, cut);
  ivec ids = {0}, pids = {0};
  int rc = strbuf_ok(&full) ? 0 : pith_fail(err, "out of memory");
  if (rc == 0) rc = encode(tok, full.p, 0, &ids, err);
  if (rc == 0) rc = encode(tok, prefix, 0, &pids, err);
  int64_t i = pids.n - 3 > 1 ? pids.n - 3 : 1;
  for (; rc == 0 && i < ids.n; i++) {
    char *d = tokenizer_decode(tok, ids.v, (size_t)i, 0, err);
    if (!d) rc = -1;
    int same = d && !strcmp(d, prefix);
    free(d);
    if (same) break;
  }
  if (rc == 0) {
    if (i >= ids.n) i = ids.n - 1;  // Python's loop variable after a loop that found nothing
    char *rest = i >= 0 ? tokenizer_decode(tok, ids.v + i, (size_t)(ids.n - i), 0, err) : NULL;
    if (!rest || strlen(rest) != cut || memcmp(rest, text, cut))
      rc = pith_fail(err, "the question prefix does not tokenize apart from the first context");
    free(rest);
    *out = i;
  }
  strbuf_free(&full);
  free(ids.v);
  free(pids.v);
  return rc;
}

// ---- the exact budget mode ----

static int is_blank(const char *s) {
  for (; *s; s++)
    if (!strchr(" \t\n\r\f\v", *s)) return 0;
  return 1;
}


// NLL of each token of ids given up to `chunk` tokens before it (and the prefix pf before those):
// chunks of `chunk` tokens, each scored after the previous one. score[0] needs pf (bos).
static int chunked_nll(scorer *s, const int32_t *pf, int64_t np, const int32_t *ids, int64_t n, float *score,
                       const hc_options *o, pith_err *err) {
  int64_t chunk = (s->max_pos - np) / 2;
  if (chunk < 16)
    return pith_fail(err, "the question (%lld scorer tokens) leaves no room in the scorer's %d positions", (long long)np,
                     s->max_pos);
  int32_t *seq = malloc((size_t)(np + 2 * chunk) * sizeof *seq);
  float *nll = malloc((size_t)(np + 2 * chunk) * sizeof *nll);
  int rc = seq && nll ? 0 : pith_fail(err, "out of memory");
  for (int64_t a = 0; rc == 0 && a < n; a += chunk) {
    int64_t b = a + chunk < n ? a + chunk : n, from = a - chunk > 0 ? a - chunk : 0, len = np + b - from;
    memcpy(seq, pf, (size_t)np * sizeof *seq);
    memcpy(seq + np, ids + from, (size_t)(b - from) * sizeof *seq);
    if (len < 2) {
      for (int64_t j = a; j < b; j++) score[j] = INFINITY;  // nothing before it: always kept
      continue;
    }
    rc = scorer_nll(s, seq, len, NULL, nll, err);
    for (int64_t j = a; rc == 0 && j < b; j++) {
      int64_t at = np + j - from;  // seq index of token j; its NLL sits at at - 1
      score[j] = at >= 1 ? nll[at - 1] : INFINITY;
    }
    if (o->progress) o->progress(b, n, o->progress_ctx);
  }
  free(seq);
  free(nll);
  return rc;
}

// instruction, the decoded kept tokens, question, joined by "\n\n" (as compress_prompt does).
static char *build_prompt(const tokenizer *tok, const int32_t *ids, int64_t n, const uint8_t *keep,
                          const char *instruction, const char *question, int with_question, int32_t *buf,
                          int64_t *n_kept, char **ctx_out, pith_err *err) {
  int64_t k = 0;
  for (int64_t i = 0; i < n; i++)
    if (keep[i]) buf[k++] = ids[i];
  *n_kept = k;
  char *ctx = tokenizer_decode(tok, buf, (size_t)k, 0, err);
  if (!ctx) return NULL;
  strbuf out = {0};
  int parts = 0;
  if (*instruction) strbuf_adds(&out, instruction), parts++;
  if (!is_blank(ctx)) {
    if (parts++) strbuf_adds(&out, "\n\n");
    strbuf_adds(&out, ctx);
  }
  if (*question && with_question) {
    if (parts++) strbuf_adds(&out, "\n\n");
    strbuf_adds(&out, question);
  }
  strbuf_adds(&out, "");
  if (ctx_out) *ctx_out = ctx;
  else free(ctx);
  char *p = strbuf_take(&out, NULL);
  if (!p) pith_fail(err, "out of memory");
  return p;
}

static int exact_stage(scorer *s, const char *const *contexts, const int *used, int n_used, const char *instruction,
                       const char *question, const hc_options *o, hc_result *r, pith_err *err) {
  const tokenizer *tok = s->tok;
  if (!o->count_target) return pith_fail(err, "exact mode needs a target token count");
  strbuf joined = {0}, all = {0};
  for (int i = 0; i < n_used; i++) {
    if (i) strbuf_adds(&joined, "\n\n");
    strbuf_adds(&joined, contexts[used[i]]);
  }
  strbuf_adds(&joined, "");
  ivec ids = {0}, pf = {0};
  float *score = NULL, *plain = NULL;
  int64_t *order = NULL;
  int32_t *buf = NULL;
  uint8_t *keep = NULL;
  char *best = NULL, *best_ctx = NULL;
  int rc = strbuf_ok(&joined) ? encode(tok, joined.p, 0, &ids, err) : pith_fail(err, "out of memory");
  int64_t n = ids.n;
  if (rc == 0) {
    score = malloc((size_t)(n + 1) * sizeof *score);
    plain = malloc((size_t)(n + 1) * sizeof *plain);
    order = malloc((size_t)(n + 1) * sizeof *order);
    buf = malloc((size_t)(n + 1) * sizeof *buf);
    keep = calloc((size_t)(n + 1), 1);
    if (!score || !plain || !order || !buf || !keep) rc = pith_fail(err, "out of memory");
  }
  // scores: NLL(x_i | before); with condition_compare, NLL(x_i | before) − NLL(x_i | question, before)
  int32_t bos = tokenizer_bos_id(tok);
  if (rc == 0) {
    if (VEC_RESERVE(&pf, 1)) rc = pith_fail(err, "out of memory");
    pf.n = bos >= 0, pf.v[0] = bos;
    if (rc == 0) rc = chunked_nll(s, pf.v, pf.n, ids.v, n, score, o, err);
  }
  if (rc == 0 && o->condition_compare && *question) {
    strbuf q = {0};
    strbuf_adds(&q, question);
    strbuf_adds(&q, "\n\n");
    ivec qi = {0};
    rc = strbuf_ok(&q) ? encode(tok, q.p, 1, &qi, err) : pith_fail(err, "out of memory");
    strbuf_free(&q);
    if (rc == 0) rc = chunked_nll(s, qi.v, qi.n, ids.v, n, plain, o, err);
    for (int64_t i = 0; rc == 0 && i < n; i++) score[i] = isinf(score[i]) ? score[i] : score[i] - plain[i];
    free(qi.v);
  }
  // the target count of the original and of the goal
  int64_t origin = -1;
  if (rc == 0) {
    strbuf_adds(&all, instruction);
    for (int i = 0; i < r->n_contexts; i++) strbuf_adds(&all, "\n\n"), strbuf_adds(&all, contexts[i]);
    strbuf_adds(&all, "\n\n");
    strbuf_adds(&all, question);
    const char *a = all.p, *e = all.p + all.n;
    while (a < e && strchr(" \t\n\r\f\v", *a)) a++;
    while (e > a && strchr(" \t\n\r\f\v", e[-1])) e--;
    char *stripped = strndup(a, (size_t)(e - a));
    origin = stripped && strbuf_ok(&all) ? o->count_target(stripped, o->count_ctx) : -1;
    free(stripped);
    if (origin < 0) rc = pith_fail(err, "counting the original prompt's target tokens failed");
  }
  double goal = o->target_tokens > 0 ? o->target_tokens : o->rate * (double)origin;
  // tokens by score, best first (earlier first among equals)
  if (rc == 0) {
    for (int64_t i = 0; i < n; i++) order[i] = i;
    for (int64_t w = 1; w < n; w *= 2) {  // bottom-up merge sort: stable, O(n log n)
      int64_t *tmp = malloc((size_t)n * sizeof *tmp);
      if (!tmp) {
        rc = pith_fail(err, "out of memory");
        break;
      }
      for (int64_t lo = 0; lo < n; lo += 2 * w) {
        int64_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n, i = lo, j = mid, k = lo;
        while (i < mid || j < hi)
          tmp[k++] = j >= hi || (i < mid && !(score[order[j]] > score[order[i]])) ? order[i++] : order[j++];
      }
      memcpy(order, tmp, (size_t)n * sizeof *tmp);
      free(tmp);
    }
  }
  // f(k): target tokens of the prompt keeping the k best; bisect for the last k with f(k) <= goal,
  // then take k or k + 1, whichever lands nearer
  int64_t lo = 0, hi = n, best_k = -1, best_count = -1, n_kept = 0;
  double best_miss = INFINITY;
  for (int round = 0; rc == 0 && lo <= hi; round++) {
    int64_t k = (lo + hi) / 2;
    memset(keep, 0, (size_t)n);
    for (int64_t i = 0; i < k; i++) keep[order[i]] = 1;
    char *ctx = NULL;
    char *p = build_prompt(tok, ids.v, n, keep, instruction, question, o->concate_question, buf, &n_kept, &ctx, err);
    int64_t c = p ? o->count_target(p, o->count_ctx) : -1;
    if (!p || c < 0) {
      free(p);
      free(ctx);
      rc = p ? pith_fail(err, "counting target tokens failed") : -1;
      break;
    }
    double miss = fabs((double)c - goal);
    if (miss < best_miss || (miss == best_miss && k > best_k)) {
      free(best);
      free(best_ctx);
      best = p, best_ctx = ctx, best_k = k, best_count = c, best_miss = miss;
    } else {
      free(p);
      free(ctx);
    }
    if ((double)c <= goal) lo = k + 1;
    else hi = k - 1;
  }
  if (rc == 0 && best_k == 0 && (double)best_count > goal)
    rc = pith_fail(err, "the instruction and question (%lld target tokens) exceed the budget of %.0f", (long long)best_count,
                   goal);
  if (rc == 0) {
    memset(keep, 0, (size_t)n);
    for (int64_t i = 0; i < best_k; i++) keep[order[i]] = 1;
    r->n_fine = n;
    r->fine_ids = ids.v, ids.v = NULL;
    r->kept = keep, keep = NULL;
    r->kept_ids = malloc((size_t)(best_k > 0 ? best_k : 1) * sizeof *r->kept_ids);
    if (!r->kept_ids) rc = pith_fail(err, "out of memory");
    r->n_kept = 0;
    for (int64_t i = 0; rc == 0 && i < n; i++)
      if (r->kept[i]) r->kept_ids[r->n_kept++] = r->fine_ids[i];
    r->prompt = best, best = NULL;
    r->context_prompt = best_ctx, best_ctx = NULL;
    r->target_tokens = goal;
  }
  strbuf_free(&joined);
  strbuf_free(&all);
  free(ids.v);
  free(pf.v);
  free(score);
  free(plain);
  free(order);
  free(buf);
  free(keep);
  free(best);
  free(best_ctx);
  return rc;
}

// ---- compress_prompt ----

static void replace_all(strbuf *b, const char *s, const char *from, const char *to) {
  size_t lf = strlen(from);
  for (const char *p; (p = strstr(s, from)); s = p + lf) {
    strbuf_add(b, s, (size_t)(p - s));
    strbuf_adds(b, to);
  }
  strbuf_adds(b, s);
}


int hc_compress(scorer *s, const char *const *contexts, int n_contexts, const char *instruction,
                const char *question, const hc_options *o, hc_result *r, pith_err *err) {
  memset(r, 0, sizeof *r);
  static const char *const blank[] = {" "};
  if (n_contexts <= 0) contexts = blank, n_contexts = 1;
  if (!instruction) instruction = "";
  if (!question) question = "";
  if (!(o->rate > 0 && o->rate <= 1)) return pith_fail(err, "rate %g is outside (0, 1]", o->rate);
  if (o->iterative_size < 1) return pith_fail(err, "iterative_size must be >= 1");
  if (o->rank_method == HC_RANK_LONGLLMLINGUA && !*question)
    return pith_fail(err, "longllmlingua ranks the contexts by the question: give a question");
  int cc = o->condition_compare, flag = o->condition_flag || cc;
  // llmlingua ranks without the question; LongLLMLingua puts it after the context unless told
  hc_condition cond = o->rank_method == HC_RANK_LLMLINGUA ? HC_COND_NONE
                      : o->condition == HC_COND_NONE      ? HC_COND_AFTER
                                                          : o->condition;
  const tokenizer *tok = s->tok;
  r->n_contexts = n_contexts;

  int rc = 0;
  int64_t *ctx_len = calloc((size_t)n_contexts, sizeof *ctx_len), ins_len = 0, q_len = 0;
  int *used = calloc((size_t)n_contexts, sizeof *used);
  double *offset = calloc((size_t)n_contexts, sizeof *offset);
  const char **kept = calloc((size_t)n_contexts + 1, sizeof *kept);
  int64_t *est = calloc((size_t)n_contexts + 1, sizeof *est);
  strbuf joined = {0}, prefix = {0}, out = {0}, ctx_prompt = {0};
  ivec ids = {0}, res = {0};
  lvec res_pos = {0};
  plan p = {0};
  if (!ctx_len || !used || !offset || !kept || !est) {
    rc = pith_fail(err, "out of memory");
    goto done;
  }
  // The budget, in scorer tokens with one bos per segment (as get_token_length counts).
  double total = 0;
  for (int i = 0; i < n_contexts && rc == 0; i++) rc = token_count(tok, contexts[i], 1, &ctx_len[i], err), total += (double)ctx_len[i];
  if (rc == 0) rc = token_count(tok, instruction, 1, &ins_len, err);
  if (rc == 0) rc = token_count(tok, question, 1, &q_len, err);
  if (rc) goto done;
  double target = o->target_tokens > 0 ? o->target_tokens
                                       : ((double)ins_len + (double)q_len + total) * o->rate - (double)ins_len -
                                             (o->concate_question ? (double)q_len : 0);
  r->target_tokens = target;
  if (target <= 0) {
    rc = pith_fail(err, "the instruction and question (%lld scorer tokens) leave no budget for the contexts at rate %g",
                   (long long)(ins_len + q_len), o->rate);
    goto done;
  }

  // coarse
  int n_used = n_contexts;
  for (int i = 0; i < n_contexts; i++) used[i] = i;
  if (n_contexts > 1 && o->context_filter) {
    r->rank = malloc((size_t)n_contexts * sizeof *r->rank);
    if (!r->rank) {
      rc = pith_fail(err, "out of memory");
      goto done;
    }
    if ((rc = rank_contexts(s, contexts, n_contexts, question, cond, r->rank, err))) goto done;
    select_contexts(o, ctx_len, n_contexts, r->rank, target, used, &n_used, offset);
  }
  r->n_used = n_used;
  r->used = malloc((size_t)n_used * sizeof *r->used);
  if (!r->used) {
    rc = pith_fail(err, "out of memory");
    goto done;
  }
  memcpy(r->used, used, (size_t)n_used * sizeof *used);
  if (o->exact && o->token_filter) {
    rc = exact_stage(s, contexts, used, n_used, instruction, question, o, r, err);
    goto done;
  }

  // the question prefix of the fine stage
  int64_t start = 0;
  int nk = 0;
  if (flag) {
    strbuf_adds(&prefix, question);
    if (o->add_instruction) strbuf_adds(&prefix, "\n\n"), strbuf_adds(&prefix, instruction);
    strbuf_adds(&prefix, "\n\n");
    int64_t plen;
    if ((rc = token_count(tok, prefix.p, 1, &plen, err))) goto done;
    prefix.n -= 2, prefix.p[prefix.n] = 0;
    if (plen + 2 * o->iterative_size > s->max_pos) {
      // too long for the model beside two windows: keep its head and its tail
      ivec pt = {0};
      if ((rc = encode(tok, prefix.p, 0, &pt, err))) goto done;
      int64_t tail = py_index(pt.n - s->max_pos + 2 + HC_PREFIX_KEEP + 2 * o->iterative_size, pt.n);
      int64_t head = HC_PREFIX_KEEP < pt.n ? HC_PREFIX_KEEP : pt.n, m = head + pt.n - tail;
      int32_t *cut = malloc((size_t)(m > 0 ? m : 1) * sizeof *cut);  // tokens[:100] + tokens[tail:]
      char *d = NULL;
      if (cut) {
        if (pt.n) {
          memcpy(cut, pt.v, (size_t)head * sizeof *cut);
          memcpy(cut + head, pt.v + tail, (size_t)(pt.n - tail) * sizeof *cut);
        }
        d = tokenizer_decode(tok, cut, (size_t)m, 0, err);
      } else {
        pith_fail(err, "out of memory");
      }
      free(cut);
      free(pt.v);
      if (!d) {
        rc = -1;
        goto done;
      }
      strbuf_clear(&prefix);
      strbuf_adds(&prefix, d);
      free(d);
    }
    strbuf tmp = {0};
    strbuf_adds(&tmp, prefix.p);
    strbuf_adds(&tmp, "\n\n");
    rc = strbuf_ok(&tmp) ? prefix_length(tok, tmp.p, contexts[used[0]], &start, err) : pith_fail(err, "out of memory");
    strbuf_free(&tmp);
    if (rc) goto done;
    kept[nk++] = prefix.p;
  }
  for (int i = 0; i < n_used; i++) kept[nk++] = contexts[used[i]];

  if (o->token_filter) {
    for (int i = 0; i < nk; i++) {
      if (i) strbuf_adds(&joined, "\n\n");
      strbuf_adds(&joined, kept[i]);
    }
    // estimated lengths for the window plan: tokens without bos, plus 2; the prefix left out
    for (int i = flag ? 1 : 0; i < nk && rc == 0; i++) rc = token_count(tok, kept[i], 0, &est[i - (flag ? 1 : 0)], err);
    for (int i = 0; i < n_used; i++) est[i] += 2;
    if (rc == 0 && !strbuf_ok(&joined)) rc = pith_fail(err, "out of memory");
    if (rc == 0) rc = plan_windows(est, n_used, offset, target, o->iterative_size, &p, err);
    if (rc == 0) rc = encode(tok, joined.p, 0, &ids, err);
    if (rc == 0 && start > ids.n) rc = pith_fail(err, "the question prefix is longer than the text");
    if (rc == 0) rc = iterative_compress(s, ids.v, ids.n, start, &p, o, r, &res, &res_pos, err);
    if (rc) goto done;
    // the result: ids[start:], and the mask over the contexts' tokens
    r->n_fine = ids.n - start;
    r->fine_ids = malloc((size_t)(r->n_fine > 0 ? r->n_fine : 1) * sizeof *r->fine_ids);
    r->kept = calloc((size_t)(r->n_fine > 0 ? r->n_fine : 1), 1);
    int64_t nr = res.n - start > 0 ? res.n - start : 0;
    r->kept_ids = malloc((size_t)(nr > 0 ? nr : 1) * sizeof *r->kept_ids);
    if (!r->fine_ids || !r->kept || !r->kept_ids) {
      rc = pith_fail(err, "out of memory");
      goto done;
    }
    if (r->n_fine > 0) memcpy(r->fine_ids, ids.v + start, (size_t)r->n_fine * sizeof *ids.v);
    if (nr > 0) memcpy(r->kept_ids, res.v + (res.n - nr), (size_t)nr * sizeof *res.v);
    r->n_kept = nr;
    for (int64_t i = res.n - nr; i < res.n; i++)
      if (res_pos.v[i] >= start) r->kept[res_pos.v[i] - start] = 1;
    char *d = tokenizer_decode(tok, r->kept_ids, (size_t)nr, 0, err);
    if (!d) {
      rc = -1;
      goto done;
    }
    strbuf tmp = {0};
    replace_all(&tmp, d, "<s> ", "");
    free(d);
    replace_all(&ctx_prompt, tmp.p ? tmp.p : "", "<s>", "");
    strbuf_free(&tmp);
  } else {
    for (int i = flag ? 1 : 0; i < nk; i++) {
      if (i > (flag ? 1 : 0)) strbuf_adds(&ctx_prompt, "\n\n");
      strbuf_adds(&ctx_prompt, kept[i]);
    }
  }
  strbuf_adds(&ctx_prompt, "");
  // instruction, contexts, question
  int parts = 0;
  if (*instruction) strbuf_adds(&out, instruction), parts++;
  if (!is_blank(ctx_prompt.p)) {
    if (parts++) strbuf_adds(&out, "\n\n");
    strbuf_adds(&out, ctx_prompt.p);
  }
  if (*question && o->concate_question) {
    if (parts++) strbuf_adds(&out, "\n\n");
    strbuf_adds(&out, question);
  }
  strbuf_adds(&out, "");
  if (!strbuf_ok(&out) || !strbuf_ok(&ctx_prompt)) {
    rc = pith_fail(err, "out of memory");
    goto done;
  }
  r->prompt = strbuf_take(&out, NULL);
  r->context_prompt = strbuf_take(&ctx_prompt, NULL);
done:
  free(ctx_len);
  free(used);
  free(offset);
  free(kept);
  free(est);
  plan_free(&p);
  free(ids.v);
  free(res.v);
  free(res_pos.v);
  strbuf_free(&joined);
  strbuf_free(&prefix);
  strbuf_free(&out);
  strbuf_free(&ctx_prompt);
  if (rc) hc_result_free(r);
  return rc;
}

void hc_result_free(hc_result *r) {
  free(r->prompt);
  free(r->context_prompt);
  free(r->rank);
  free(r->used);
  free(r->fine_ids);
  free(r->kept);
  free(r->kept_ids);
  free(r->first_nll);
  memset(r, 0, sizeof *r);
}

// ---- recovery of a response (LongLLMLingua) ----

// The shortest span of the original's tokens that holds the most tokens of `words` in order,
// each within 10 tokens of the one before (llmlingua's match_from_compressed). malloc'd.
static char *match_span(const tokenizer *tok, const int32_t *orig, int64_t M, const char *words, pith_err *err) {
  ivec w = {0};
  if (encode(tok, words, 0, &w, err)) return NULL;
  if (w.n == 0) {
    free(w.v);
    return strdup(words);
  }
  int64_t best_l = -1, best_r = 0, best_len = INT64_MAX;
  int64_t best_c = 1;
  for (int64_t l = 0; l < M; l++) {
    if (orig[l] != w.v[0]) continue;
    int64_t y = l, c = 1;
    for (int64_t x = 1; x < w.n; x++) {
      int64_t next = y + 1;  // the first occurrence of w[x] after y (bisect_right)
      while (next < M && orig[next] != w.v[x]) next++;
      if (next >= M || next - y > 10) continue;
      c++;
      y = next;
    }
    if (c > best_c || (c == best_c && y - l + 1 < best_len)) best_c = c, best_len = y - l + 1, best_l = l, best_r = y + 1;
  }
  free(w.v);
  if (best_l < 0) return strdup(words);
  return tokenizer_decode(tok, orig + best_l, (size_t)(best_r - best_l), 0, err);
}

char *hc_recover(const tokenizer *tok, const char *original, const char *compressed, const char *response,
                 pith_err *err) {
  ivec orig = {0};
  if (encode(tok, original, 0, &orig, err)) return NULL;
  // the response's words: split on single spaces, as Python's str.split(" ")
  int n = 1;
  for (const char *c = response; *c; c++) n += *c == ' ';
  const char **word = malloc((size_t)n * sizeof *word);
  size_t *wlen = malloc((size_t)n * sizeof *wlen);
  strbuf out = {0}, span = {0};
  int rc = word && wlen ? 0 : pith_fail(err, "out of memory");
  if (rc == 0) {
    const char *s = response;
    for (int i = 0; i < n; i++) {
      const char *e = strchr(s, ' ');
      if (!e) e = s + strlen(s);
      word[i] = s, wlen[i] = (size_t)(e - s);
      s = *e ? e + 1 : e;
    }
  }
  for (int l = 0, first = 1; rc == 0 && l < n; first = 0) {
    if (!first) strbuf_addc(&out, ' ');
    strbuf_clear(&span);
    strbuf_add(&span, word[l], wlen[l]);
    if (!strstr(compressed, span.p)) {
      strbuf_adds(&out, span.p);
      l++;
      continue;
    }
    // the longest run of words from l that occurs in the compressed prompt as it is
    int r = l;
    while (r + 1 < n) {
      size_t keep = span.n;
      strbuf_addc(&span, ' ');
      strbuf_add(&span, word[r + 1], wlen[r + 1]);
      if (!strstr(compressed, span.p)) {
        span.n = keep, span.p[keep] = 0;
        break;
      }
      r++;
    }
    char *m = strbuf_ok(&span) ? match_span(tok, orig.v, orig.n, span.p, err) : NULL;
    if (!m) rc = -1;
    else strbuf_adds(&out, m);
    free(m);
    l = r + 1;
  }
  strbuf_adds(&out, "");
  free(word);
  free(wlen);
  free(orig.v);
  strbuf_free(&span);
  if (rc == 0 && !strbuf_ok(&out)) rc = pith_fail(err, "out of memory");
  if (rc) {
    strbuf_free(&out);
    return NULL;
  }
  return strbuf_take(&out, NULL);
}
