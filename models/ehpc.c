// ehpc: evaluator-head prompt compression and the needle probe that finds the heads (see ehpc.h).
#include "ehpc.h"

#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strbuf.h"

// ---------------------------------------------------------------- heads

int ehpc_parse_heads(const char *spec, ehpc_heads *h, pith_err *err) {
  memset(h, 0, sizeof *h);
  char *end;
  long layer = strtol(spec, &end, 10);
  if (end == spec || *end != ':' || layer < 0)
    return pith_fail(err, "--heads '%s': want LAYER:HEAD,HEAD,... (e.g. 2:0,3)", spec);
  h->layer = (int)layer;
  const char *p = end + 1;
  while (*p) {
    long v = strtol(p, &end, 10);
    if (end == p || v < 0 || (*end && *end != ','))
      return pith_fail(err, "--heads '%s': want LAYER:HEAD,HEAD,... (e.g. 2:0,3)", spec);
    if (h->n_heads == EHPC_MAX_HEADS) return pith_fail(err, "--heads '%s': more than %d heads", spec, EHPC_MAX_HEADS);
    h->heads[h->n_heads++] = (int)v;
    p = *end ? end + 1 : end;
  }
  if (h->n_heads == 0) return pith_fail(err, "--heads '%s': no heads after the layer", spec);
  return 0;
}

// The heads of one JSON file: ehpc.json as ehpc_probe writes it ({"layer": L, "heads": [...],
// "window": W, "kernel": K}), or a manifest.json with that object under "ehpc".
static int heads_from_file(const char *path, ehpc_heads *h, pith_err *err) {
  memset(h, 0, sizeof *h);
  size_t len;
  char *text = pith_read_file(path, &len, err);
  if (!text) return -1;
  cJSON *root = cJSON_ParseWithLength(text, len);
  free(text);
  if (!root) return pith_fail(err, "%s: not JSON", path);
  const cJSON *o = cJSON_GetObjectItemCaseSensitive(root, "ehpc");
  if (!cJSON_IsObject(o)) o = root;
  const cJSON *layer = cJSON_GetObjectItemCaseSensitive(o, "layer"), *heads = cJSON_GetObjectItemCaseSensitive(o, "heads");
  int rc = 0;
  if (!cJSON_IsNumber(layer) || !cJSON_IsArray(heads))
    rc = pith_fail(err, "%s: no evaluator heads (want \"layer\": L and \"heads\": [h, ...], as pith compress "
                        "ehpc-probe writes)", path);
  const cJSON *e;
  if (!rc) {
    h->layer = layer->valueint;
    cJSON_ArrayForEach(e, heads) {
      if (!cJSON_IsNumber(e)) {
        rc = pith_fail(err, "%s: \"heads\" holds something that is not a number", path);
        break;
      }
      if (h->n_heads == EHPC_MAX_HEADS) {
        rc = pith_fail(err, "%s: more than %d heads", path, EHPC_MAX_HEADS);
        break;
      }
      h->heads[h->n_heads++] = e->valueint;
    }
  }
  if (!rc && h->n_heads == 0) rc = pith_fail(err, "%s: \"heads\" is empty", path);
  const cJSON *w = cJSON_GetObjectItemCaseSensitive(o, "window"), *k = cJSON_GetObjectItemCaseSensitive(o, "kernel");
  if (!rc && cJSON_IsNumber(w)) h->window = w->valueint;
  if (!rc && cJSON_IsNumber(k)) h->kernel = k->valueint;
  cJSON_Delete(root);
  return rc;
}

int ehpc_load_heads(const char *path, ehpc_heads *h, pith_err *err) {
  if (!pith_is_dir(path)) return heads_from_file(path, h, err);
  static const char *const names[] = {"ehpc.json", "manifest.json"};
  for (int i = 0; i < 2; i++) {
    char file[4096];
    pith_path_join(file, sizeof file, path, names[i]);
    if (pith_is_file(file)) return heads_from_file(file, h, err);
  }
  return pith_fail(err, "--scorer '%s': no ehpc.json or manifest.json with evaluator heads (run pith compress "
                        "ehpc-probe --model DIR, or give --heads LAYER:HEAD,...)", path);
}

int ehpc_check_heads(const llama_model *m, const ehpc_heads *h, pith_err *err) {
  if (h->n_heads <= 0) return pith_fail(err, "ehpc: no evaluator heads");
  if (h->layer < 0 || h->layer >= m->cfg.n_layers)
    return pith_fail(err, "ehpc: layer %d is out of range (the model has layers 0..%d)", h->layer, m->cfg.n_layers - 1);
  for (int i = 0; i < h->n_heads; i++) {
    if (h->heads[i] < 0 || h->heads[i] >= m->cfg.n_heads)
      return pith_fail(err, "ehpc: head %d is out of range (the model has heads 0..%d)", h->heads[i],
                       m->cfg.n_heads - 1);
    for (int j = 0; j < i; j++)
      if (h->heads[j] == h->heads[i]) return pith_fail(err, "ehpc: head %d is given twice", h->heads[i]);
  }
  return 0;
}

// ---------------------------------------------------------------- attention scores

// (1, H, n): the layer's attention from the last `window` queries averaged over them, in the
// current scope; NULL with err.
static pt_tensor *window_attention(llama_model *m, int layer, const int32_t *ids, int64_t n, int window, pith_err *err) {
  if (window < 1 || window >= n) {
    pith_fail(err, "ehpc: a window of %d tokens needs a prompt longer than it (the prompt has %lld)", window,
              (long long)n);
    return NULL;
  }
  if (n > m->cfg.max_seq_len) {
    pith_fail(err, "ehpc: the prompt has %lld tokens, more than the scorer reads at once (max_position_embeddings %d)",
              (long long)n, m->cfg.max_seq_len);
    return NULL;
  }
  int64_t *buf = malloc((size_t)n * sizeof *buf);
  if (!buf) {
    pith_fail(err, "out of memory");
    return NULL;
  }
  for (int64_t i = 0; i < n; i++) {
    if (ids[i] < 0 || ids[i] >= m->cfg.vocab_size) {
      free(buf);
      pith_fail(err, "ehpc: token id %d outside the vocabulary (%d)", (int)ids[i], m->cfg.vocab_size);
      return NULL;
    }
    buf[i] = ids[i];
  }
  pt_tensor *x = pt_from_data(buf, PT_I64, PT_SHAPE(1, n), PT_CPU);
  free(buf);
  if (m->device != PT_CPU) x = pt_to_device(x, m->device);
  llama_inputs in = {.ids = x, .no_logits = 1, .want_attn = 1, .attn_layer = layer, .attn_window = window};
  llama_outputs out;
  if (llama_forward(m, &in, &out, err)) return NULL;
  pt_tensor *a = pt_mean_dim(out.attn, 2, 0);  // (1, H, n)
  llama_outputs_free(&out);
  if (!pt_ok()) {
    pt_fail(err, "ehpc: attention");
    return NULL;
  }
  return a;
}

int ehpc_layer_attention(llama_model *m, int layer, const int32_t *ids, int64_t n, int window, float *out,
                         pith_err *err) {
  int was = pt_set_grad_enabled(0);
  pt_scope s = pt_scope_begin();
  pt_tensor *a = window_attention(m, layer, ids, n, window, err);
  int rc = a ? 0 : -1;
  if (a && pt_to_data(pt_to_device(pt_contiguous(a), PT_CPU), out, (size_t)m->cfg.n_heads * (size_t)n * sizeof(float)))
    rc = pt_fail(err, "ehpc: attention");
  pt_scope_end(s);
  pt_set_grad_enabled(was);
  return rc;
}

int ehpc_token_scores(llama_model *m, const ehpc_heads *h, const int32_t *ids, int64_t n, int window, float *scores,
                      pith_err *err) {
  if (ehpc_check_heads(m, h, err)) return -1;
  int was = pt_set_grad_enabled(0);
  pt_scope s = pt_scope_begin();
  int rc = -1;
  pt_tensor *a = window_attention(m, h->layer, ids, n, window, err);
  if (a) {
    int64_t heads[EHPC_MAX_HEADS];
    for (int i = 0; i < h->n_heads; i++) heads[i] = h->heads[i];
    pt_tensor *idx = pt_to_device(pt_from_data(heads, PT_I64, PT_SHAPE(h->n_heads), PT_CPU), m->device);
    pt_tensor *sum = pt_sum_dim(pt_index_select(a, 1, idx), 1, 0);  // (1, n)
    sum = pt_contiguous(pt_to_device(sum, PT_CPU));
    rc = pt_to_data(sum, scores, (size_t)n * sizeof(float)) || !pt_ok() ? pt_fail(err, "ehpc: scores") : 0;
  }
  pt_scope_end(s);
  pt_set_grad_enabled(was);
  return rc;
}

// ---------------------------------------------------------------- pooling and selection

void ehpc_pool(const float *x, int64_t n, int kernel, float *y) {
  int64_t half = kernel / 2;
  double run = 0;  // the sum over the kernel centred on i, slid along
  for (int64_t j = 0; j <= half && j < n; j++) run += x[j];
  for (int64_t i = 0; i < n; i++) {
    y[i] = (float)(run / kernel);
    if (i + half + 1 < n) run += x[i + half + 1];
    if (i - half >= 0) run -= x[i - half];
  }
}

typedef struct {
  float score;
  int64_t pos;
} ranked;

static int by_score(const void *a, const void *b) {
  const ranked *x = a, *y = b;
  if (x->score != y->score) return x->score > y->score ? -1 : 1;
  return x->pos < y->pos ? -1 : x->pos > y->pos;
}

int ehpc_select(const float *scores, int64_t n, const uint8_t *force, int64_t k, uint8_t *kept, pith_err *err) {
  int64_t forced = 0, m = 0;
  for (int64_t i = 0; i < n; i++) forced += force && force[i];
  if (k < forced)
    return pith_fail(err, "ehpc: a budget of %lld tokens is below the %lld kept whole", (long long)k, (long long)forced);
  ranked *r = malloc((size_t)(n > 0 ? n : 1) * sizeof *r);
  if (!r) return pith_fail(err, "out of memory");
  for (int64_t i = 0; i < n; i++) {
    kept[i] = force && force[i];
    if (!kept[i]) r[m++] = (ranked){scores[i], i};
  }
  qsort(r, (size_t)m, sizeof *r, by_score);
  for (int64_t i = 0; i < m && i < k - forced; i++) kept[r[i].pos] = 1;
  free(r);
  return 0;
}

// ---------------------------------------------------------------- compression

typedef struct {
  int32_t *v;
  size_t n;
} ids_t;

static int encode(const tokenizer *tok, const char *s, ids_t *out, pith_err *err) {
  out->v = NULL, out->n = 0;
  if (!s || !*s) return 0;
  return tokenizer_encode(tok, s, strlen(s), 0, &out->v, &out->n, err);
}

static int blank(const char *s) {
  if (!s) return 1;
  for (; *s; s++)
    if (!strchr(" \t\n\r\f\v", *s)) return 0;
  return 1;
}

// A prompt longer than the model reads: the text before the window in chunks, each read as [bos]
// chunk window, so that the window's queries score every chunk; memory is bounded by the chunk.
// Each chunk's softmax is over its own keys: scores of different chunks are on near, not equal, scales.
static int score_chunks(llama_model *m, const ehpc_heads *h, const int32_t *seq, int64_t n, int64_t p0, int W,
                        float *scores, pith_err *err) {
  int64_t body = n - W - p0, cs = m->cfg.max_seq_len - p0 - W;
  if (cs < 1)
    return pith_fail(err, "ehpc: --window %d leaves no room in the scorer's %d positions", W, m->cfg.max_seq_len);
  int32_t *buf = malloc((size_t)m->cfg.max_seq_len * sizeof *buf);
  float *sc = malloc((size_t)m->cfg.max_seq_len * sizeof *sc);
  int rc = buf && sc ? 0 : pith_fail(err, "out of memory");
  for (int64_t i = 0; i < n; i++) scores[i] = 0;
  for (int64_t a = 0; rc == 0 && a < body; a += cs) {
    int64_t len = body - a < cs ? body - a : cs;
    if (p0) buf[0] = seq[0];
    memcpy(buf + p0, seq + p0 + a, (size_t)len * sizeof *buf);
    memcpy(buf + p0 + len, seq + n - W, (size_t)W * sizeof *buf);
    rc = ehpc_token_scores(m, h, buf, p0 + len + W, W, sc, err);
    if (rc == 0) memcpy(scores + p0 + a, sc + p0, (size_t)len * sizeof *sc);
  }
  free(buf);
  free(sc);
  return rc;
}

int ehpc_compress(llama_model *m, const tokenizer *tok, const ehpc_heads *h, const char *const *contexts,
                  int n_contexts, const char *instruction, const char *question, const ehpc_options *o, hc_result *r,
                  float **scores_out, int64_t *n_scores, pith_err *err) {
  memset(r, 0, sizeof *r);
  if (scores_out) *scores_out = NULL, *n_scores = 0;
  if (o->kernel < 1 || o->kernel % 2 == 0) return pith_fail(err, "ehpc: the pooling kernel must be odd, not %d", o->kernel);
  if (!(o->rate > 0 && o->rate <= 1)) return pith_fail(err, "ehpc: rate %g outside (0, 1]", o->rate);
  if (ehpc_check_heads(m, h, err)) return -1;
  if (blank(instruction)) instruction = "";
  if (blank(question)) question = "";
  strbuf joined = {0};
  for (int i = 0; i < n_contexts; i++) {
    if (i) strbuf_adds(&joined, "\n\n");
    strbuf_adds(&joined, contexts[i]);
  }
  strbuf_adds(&joined, "");
  ids_t I = {0}, C = {0}, Q = {0};
  int32_t *seq = NULL;
  uint8_t *force = NULL, *kept = NULL;
  float *scores = NULL, *pooled = NULL;
  strbuf ctx = {0}, out = {0};
  int rc = strbuf_ok(&joined) ? 0 : pith_fail(err, "out of memory");
  if (rc == 0 && (encode(tok, instruction, &I, err) || encode(tok, joined.p, &C, err) || encode(tok, question, &Q, err)))
    rc = -1;
  if (rc == 0 && C.n == 0) rc = pith_fail(err, "empty prompt (no context tokens)");
  if (rc) goto done;
  int32_t bos = tokenizer_adds_bos(tok) ? tokenizer_bos_id(tok) : -1;
  int64_t p0 = bos >= 0, nI = (int64_t)I.n, nC = (int64_t)C.n, nQ = (int64_t)Q.n, n = p0 + nI + nC + nQ;
  int64_t W = o->window, c0 = p0 + nI, q0 = c0 + nC;  // contexts at [c0, q0), the question at [q0, n)
  double budget = o->target_tokens > 0 ? o->target_tokens : o->rate * (double)(nI + nC + nQ) - (double)(nI + nQ);
  if (budget < 1) {
    rc = pith_fail(err, "ehpc: the instruction and question (%lld tokens) leave no budget for the contexts (rate %g of "
                        "%lld tokens)", (long long)(nI + nQ), o->rate, (long long)(nI + nC + nQ));
    goto done;
  }
  if (W >= n - p0) {
    rc = pith_fail(err, "ehpc: --window %lld is not shorter than the prompt (%lld tokens)", (long long)W,
                   (long long)(n - p0));
    goto done;
  }
  int64_t kc = (int64_t)floor(budget + 0.5), in_window = q0 - (n - W) > 0 ? q0 - (n - W) : 0;  // context tokens in the window
  if (kc < in_window) {
    rc = pith_fail(err, "ehpc: the window's last %lld context tokens exceed the budget of %lld (shorten --window)",
                   (long long)in_window, (long long)kc);
    goto done;
  }
  seq = malloc((size_t)n * sizeof *seq);
  scores = malloc((size_t)n * sizeof *scores);
  pooled = malloc((size_t)n * sizeof *pooled);
  force = calloc((size_t)n, 1);
  kept = calloc((size_t)n, 1);
  if (!seq || !scores || !pooled || !force || !kept) {
    rc = pith_fail(err, "out of memory");
    goto done;
  }
  if (p0) seq[0] = bos;
  if (nI) memcpy(seq + p0, I.v, (size_t)nI * sizeof *seq);
  memcpy(seq + c0, C.v, (size_t)nC * sizeof *seq);
  if (nQ) memcpy(seq + q0, Q.v, (size_t)nQ * sizeof *seq);
  if (n <= m->cfg.max_seq_len) {
    if (ehpc_token_scores(m, h, seq, n, (int)W, scores, err)) {
      rc = -1;
      goto done;
    }
  } else if (score_chunks(m, h, seq, n, p0, (int)W, scores, err)) {
    rc = -1;
    goto done;
  }
  // Candidates: the prompt before the window, bos left out (an attention sink, not text).
  int64_t cand = n - W - p0;
  ehpc_pool(scores + p0, cand, o->kernel, pooled);
  for (int64_t i = 0; i < cand; i++) force[i] = !(p0 + i >= c0 && p0 + i < q0);  // instruction and question
  int64_t forced = 0;
  for (int64_t i = 0; i < cand; i++) forced += force[i];
  if (ehpc_select(pooled, cand, force, forced + kc - in_window, kept, err)) {
    rc = -1;
    goto done;
  }
  r->fine_ids = malloc((size_t)nC * sizeof *r->fine_ids);
  r->kept = calloc((size_t)nC, 1);
  r->kept_ids = malloc((size_t)nC * sizeof *r->kept_ids);
  r->used = malloc((size_t)(n_contexts > 0 ? n_contexts : 1) * sizeof *r->used);
  if (!r->fine_ids || !r->kept || !r->kept_ids || !r->used) {
    rc = pith_fail(err, "out of memory");
    goto done;
  }
  memcpy(r->fine_ids, C.v, (size_t)nC * sizeof *C.v);
  for (int64_t i = 0; i < nC; i++) {
    int64_t pos = c0 + i;  // the window is kept whole
    r->kept[i] = pos >= n - W || kept[pos - p0];
    if (r->kept[i]) r->kept_ids[r->n_kept++] = C.v[i];
  }
  r->n_fine = nC;
  r->target_tokens = (double)kc;
  r->n_contexts = r->n_used = n_contexts;
  for (int i = 0; i < n_contexts; i++) r->used[i] = i;
  char *d = tokenizer_decode(tok, r->kept_ids, (size_t)r->n_kept, 0, err);
  if (!d) {
    rc = -1;
    goto done;
  }
  strbuf_adds(&ctx, d);
  free(d);
  strbuf_adds(&ctx, "");
  int parts = 0;
  if (*instruction) strbuf_adds(&out, instruction), parts++;
  if (!blank(ctx.p)) {
    if (parts++) strbuf_adds(&out, "\n\n");
    strbuf_adds(&out, ctx.p);
  }
  if (*question) {
    if (parts++) strbuf_adds(&out, "\n\n");
    strbuf_adds(&out, question);
  }
  strbuf_adds(&out, "");
  if (!strbuf_ok(&out) || !strbuf_ok(&ctx)) {
    rc = pith_fail(err, "out of memory");
    goto done;
  }
  r->prompt = strbuf_take(&out, NULL);
  r->context_prompt = strbuf_take(&ctx, NULL);
  if (scores_out) {
    *scores_out = scores, *n_scores = n;
    scores = NULL;
  }
done:
  free(I.v);
  free(C.v);
  free(Q.v);
  free(seq);
  free(scores);
  free(pooled);
  free(force);
  free(kept);
  strbuf_free(&joined);
  strbuf_free(&ctx);
  strbuf_free(&out);
  if (rc) hc_result_free(r);
  return rc;
}

// ---------------------------------------------------------------- the probe

static uint64_t next_rand(uint64_t *s) {  // splitmix64
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// A made-up name ("Kelvora"): two or three syllables no corpus is likely to hold as a fact.
static void made_up_name(uint64_t *s, char *out) {
  static const char cons[] = "bdfgklmnprstvz", vow[] = "aeiou", tail[] = "lnrs";
  int syl = 2 + (int)(next_rand(s) % 2), k = 0;
  for (int i = 0; i < syl; i++) {
    out[k++] = cons[next_rand(s) % (sizeof cons - 1)];
    out[k++] = vow[next_rand(s) % (sizeof vow - 1)];
    if (next_rand(s) % 3 == 0) out[k++] = tail[next_rand(s) % (sizeof tail - 1)];
  }
  out[k] = 0;
  out[0] = (char)(out[0] - 'a' + 'A');
}

// The needles: a plain fact about a made-up name, and the question that asks for it.
static const struct {
  const char *needle, *question;
} NEEDLES[] = {
    {"%s was developed in %s.", "Where was %s developed?"},
    {"%s was first released in %s.", "When was %s released?"},
    {"The secret code of %s is %s.", "What is the secret code of %s?"},
    {"%s was proposed by %s and colleagues.", "Who proposed %s?"},
};

static int64_t token_len(const tokenizer *tok, const char *s, size_t n, pith_err *err) {
  int32_t *ids;
  size_t k;
  if (tokenizer_encode(tok, s, n, 0, &ids, &k, err)) return -1;
  free(ids);
  return (int64_t)k;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}


// One probe: the sequence ehpc_compress scores for {context, question} ([bos] context question,
// each tokenized on its own), the needle at context bytes [needle_at, needle_end); its token span
// from the prefixes' lengths. Adds every head's needle attention to r->head_scores. seq (max_n)
// and att (n_heads × max_n) are scratch.
static int score_probe(llama_model *m, const tokenizer *tok, const char *context, size_t needle_at, size_t needle_end,
                       const char *question, int64_t max_n, int window, int32_t *seq, float *att, ehpc_probe_result *r,
                       pith_err *err) {
  int32_t bos = tokenizer_adds_bos(tok) ? tokenizer_bos_id(tok) : -1;
  int32_t *ci = NULL, *qi = NULL;
  size_t nc = 0, nq = 0;
  int rc = 0;
  int64_t s0 = token_len(tok, context, needle_at, err), s1 = s0 < 0 ? -1 : token_len(tok, context, needle_end, err);
  if (s0 < 0 || s1 < 0 || tokenizer_encode(tok, context, strlen(context), 0, &ci, &nc, err) ||
      tokenizer_encode(tok, question, strlen(question), 0, &qi, &nq, err)) {
    rc = -1;
  } else {
    int64_t p0 = bos >= 0, n = p0 + (int64_t)(nc + nq);
    if (n > max_n) {
      rc = pith_fail(err, "ehpc probe: a probe of %lld tokens is longer than %lld", (long long)n, (long long)max_n);
    } else if (window >= n - p0 - s1) {
      rc = pith_fail(err, "ehpc probe: the --window of %d tokens reaches into the needle (%lld tokens follow it)",
                     window, (long long)(n - p0 - s1));
    } else {
      if (p0) seq[0] = bos;
      memcpy(seq + p0, ci, nc * sizeof *ci);
      memcpy(seq + p0 + nc, qi, nq * sizeof *qi);
      for (int l = 0; l < r->n_layers && rc == 0; l++) {
        if (ehpc_layer_attention(m, l, seq, n, window, att, err)) {
          rc = -1;
          break;
        }
        for (int h = 0; h < r->n_heads; h++) {
          double s = 0;
          for (int64_t i = p0 + s0; i < p0 + s1; i++) s += att[(size_t)h * n + i];
          r->head_scores[l * r->n_heads + h] += s;
        }
      }
      r->n_probes++;
    }
  }
  free(ci);
  free(qi);
  return rc;
}

// After the probes: the mean head scores, the best layer, its top heads, the median head.
static int probe_finish(const ehpc_probe_options *o, ehpc_probe_result *r, pith_err *err) {
  int rc = 0, L = r->n_layers, H = r->n_heads;
  if (r->n_probes == 0) return pith_fail(err, "ehpc probe: no probes ran");
  for (int i = 0; i < L * H; i++) r->head_scores[i] /= r->n_probes;
  r->best_layer = 0;
  for (int l = 0; l < L; l++) {
    for (int h = 0; h < H; h++) r->layer_scores[l] += r->head_scores[l * H + h];
    if (r->layer_scores[l] > r->layer_scores[r->best_layer]) r->best_layer = l;
  }
  // the best layer's heads, best first
  int top = o->top < H ? o->top : H;
  ehpc_heads *eh = &r->heads;
  memset(eh, 0, sizeof *eh);
  eh->layer = r->best_layer;
  uint8_t taken[EHPC_MAX_HEADS] = {0};
  const double *row = r->head_scores + (size_t)r->best_layer * H;
  for (int i = 0; i < top && i < EHPC_MAX_HEADS; i++) {
    int best = -1;
    for (int h = 0; h < H && h < EHPC_MAX_HEADS; h++)
      if (!taken[h] && (best < 0 || row[h] > row[best])) best = h;
    taken[best] = 1;
    eh->heads[eh->n_heads++] = best;
    r->chosen_mean += row[best];
  }
  r->chosen_mean /= eh->n_heads;
  double *sorted = malloc((size_t)L * H * sizeof *sorted);
  if (!sorted) {
    rc = pith_fail(err, "out of memory");
  } else {
    memcpy(sorted, r->head_scores, (size_t)L * H * sizeof *sorted);
    qsort(sorted, (size_t)L * H, sizeof *sorted, cmp_double);
    int nn = L * H;
    r->median = nn % 2 ? sorted[nn / 2] : 0.5 * (sorted[nn / 2 - 1] + sorted[nn / 2]);
    free(sorted);
  }
  return rc;
}

void ehpc_probe_result_free(ehpc_probe_result *r) {
  free(r->head_scores);
  free(r->layer_scores);
  memset(r, 0, sizeof *r);
}

int ehpc_probe(llama_model *m, const tokenizer *tok, corpus *c, const ehpc_probe_options *o, int only_prompts,
               ehpc_probe_prompt_fn fn, void *fn_ctx, ehpc_probe_result *r, pith_err *err) {
  memset(r, 0, sizeof *r);
  const corpus_info *info = corpus_get_info(c);
  if (info->kind != CORPUS_DOCUMENTS)
    return pith_fail(err, "--data '%s': a %s corpus; the haystack needs a documents corpus", corpus_path(c),
                     corpus_kind_name(info->kind));
  if (info->n_records == 0) return pith_fail(err, "--data '%s': no documents", corpus_path(c));
  int L = m->cfg.n_layers, H = m->cfg.n_heads;
  int budget = o->haystack_tokens > 0 ? o->haystack_tokens : (m->cfg.max_seq_len < 1024 ? m->cfg.max_seq_len : 1024);
  if (budget > m->cfg.max_seq_len)
    return pith_fail(err, "--haystack-tokens %d is more than the model reads (max_position_embeddings %d)", budget,
                     m->cfg.max_seq_len);
  if (o->window < 1) return pith_fail(err, "--window must be at least 1");
  r->n_layers = L, r->n_heads = H;
  r->head_scores = calloc((size_t)L * H, sizeof *r->head_scores);
  r->layer_scores = calloc((size_t)L, sizeof *r->layer_scores);
  float *att = malloc((size_t)H * budget * sizeof *att);
  int32_t *seq = malloc((size_t)budget * sizeof *seq);
  if (!r->head_scores || !r->layer_scores || !att || !seq) {
    free(att);
    free(seq);
    ehpc_probe_result_free(r);
    return pith_fail(err, "out of memory");
  }
  uint64_t rng = o->seed * 0x2545f4914f6cdd1dull + 1;
  corpus_record rec = {0};
  int rc = 0;
  int32_t bos = tokenizer_adds_bos(tok) ? tokenizer_bos_id(tok) : -1;
  for (int a = 0; a < o->n_needles && rc == 0; a++) {
    char name[32], value[32], needle[256], question[256];
    made_up_name(&rng, name);
    int t = (int)(next_rand(&rng) % (sizeof NEEDLES / sizeof NEEDLES[0]));
    if (t == 1)
      snprintf(value, sizeof value, "%d", 1950 + (int)(next_rand(&rng) % 71));
    else if (t == 2)
      snprintf(value, sizeof value, "%d", 100 + (int)(next_rand(&rng) % 9900));
    else
      made_up_name(&rng, value);
    snprintf(needle, sizeof needle, NEEDLES[t].needle, name, value);
    snprintf(question, sizeof question, NEEDLES[t].question, name);
    int64_t n_needle = token_len(tok, needle, strlen(needle), err), n_q = token_len(tok, question, strlen(question), err);
    if (n_needle < 0 || n_q < 0) {
      rc = -1;
      break;
    }
    int64_t room = budget - (bos >= 0) - n_needle - n_q - 8;  // a few tokens of slack for the joins
    if (room < 16) {
      rc = pith_fail(err, "--haystack-tokens %d leaves no room for a haystack", budget);
      break;
    }
    // The haystack: whole documents from a random one on, while they fit.
    strbuf hay = {0};
    int64_t start = (int64_t)(next_rand(&rng) % (uint64_t)info->n_records), used = 0;
    for (int64_t j = 0; j < info->n_records && rc == 0; j++) {
      if (corpus_read(c, (start + j) % info->n_records, CORPUS_READ_ALL, &rec, err)) {
        rc = -1;
        break;
      }
      if (used + rec.doc.n_tokens + 2 > room) {
        if (used == 0) {  // a long first document: its first `room` tokens' worth of text
          int64_t cut = rec.doc.text_len * room / (rec.doc.n_tokens + 1);
          strbuf_add(&hay, rec.doc.text, (size_t)cut);
        }
        break;
      }
      if (hay.n) strbuf_adds(&hay, " ");
      strbuf_add(&hay, rec.doc.text, (size_t)rec.doc.text_len);
      used += rec.doc.n_tokens + 2;
    }
    strbuf_adds(&hay, "");
    if (rc == 0 && !strbuf_ok(&hay)) rc = pith_fail(err, "out of memory");
    for (int d = 0; d < o->n_depths && rc == 0; d++) {
      double depth = (double)(d + 1) / (o->n_depths + 1);
      // the needle goes after the first sentence end at or past depth · length
      size_t at = (size_t)(depth * (double)hay.n);
      while (at < hay.n && !(hay.p[at - (at > 0)] == '.' && hay.p[at] == ' ')) at++;
      strbuf ctx = {0};
      strbuf_add(&ctx, hay.p, at);
      strbuf_adds(&ctx, at ? " " : "");
      size_t needle_at = ctx.n;
      strbuf_adds(&ctx, needle);
      size_t needle_end = ctx.n;
      strbuf_add(&ctx, hay.p + at, hay.n - at);
      strbuf_adds(&ctx, "");
      if (!strbuf_ok(&ctx)) rc = pith_fail(err, "out of memory");
      if (rc == 0 && fn) fn(ctx.p, question, needle, depth, fn_ctx);
      if (rc == 0 && !only_prompts)
        rc = score_probe(m, tok, ctx.p, needle_at, needle_end, question, budget, o->window, seq, att, r, err);
      strbuf_free(&ctx);
    }
    strbuf_free(&hay);
  }
  corpus_record_free(&rec);
  free(att);
  free(seq);
  if (rc == 0 && !only_prompts) rc = probe_finish(o, r, err);
  if (rc) ehpc_probe_result_free(r);
  return rc;
}

int ehpc_probe_items(llama_model *m, const tokenizer *tok, const ehpc_probe_item *items, int n_items,
                     const ehpc_probe_options *o, ehpc_probe_result *r, pith_err *err) {
  memset(r, 0, sizeof *r);
  if (n_items < 1) return pith_fail(err, "ehpc probe: no probes given");
  if (o->window < 1) return pith_fail(err, "--window must be at least 1");
  int L = m->cfg.n_layers, H = m->cfg.n_heads, max_n = m->cfg.max_seq_len;
  r->n_layers = L, r->n_heads = H;
  r->head_scores = calloc((size_t)L * H, sizeof *r->head_scores);
  r->layer_scores = calloc((size_t)L, sizeof *r->layer_scores);
  float *att = malloc((size_t)H * max_n * sizeof *att);
  int32_t *seq = malloc((size_t)max_n * sizeof *seq);
  int rc = r->head_scores && r->layer_scores && att && seq ? 0 : pith_fail(err, "out of memory");
  for (int i = 0; i < n_items && rc == 0; i++) {
    const ehpc_probe_item *it = &items[i];
    const char *at = it->needle && *it->needle && it->context ? strstr(it->context, it->needle) : NULL;
    if (!at) {
      rc = pith_fail(err, "probe %d: its needle is not in its context", i + 1);
      break;
    }
    size_t a = (size_t)(at - it->context);
    if (score_probe(m, tok, it->context, a, a + strlen(it->needle), it->question ? it->question : "", max_n, o->window,
                    seq, att, r, err)) {
      char why[sizeof err->msg];
      snprintf(why, sizeof why, "%s", err->msg);
      rc = pith_fail(err, "probe %d: %s", i + 1, why);
    }
  }
  free(att);
  free(seq);
  if (rc == 0) rc = probe_finish(o, r, err);
  if (rc) ehpc_probe_result_free(r);
  return rc;
}
