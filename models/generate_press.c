// generate_pressed: batched generation over a compact, pressed KV cache; see generate.h.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "generate.h"
#include "kv_cache.h"

typedef struct {
  const gen_press_request *req;
  kv_cache *cache;
  kv_keep *keep;
  const int *row_len;
} prefill_ctx;

// During the context prefill, per layer: the press chooses, the cache keeps only that.
static int prefill_layer(const llama_layer_view *v, void *vctx, pith_err *err) {
  prefill_ctx *p = vctx;
  int l = v->layer, B = p->req->batch, Hkv = p->keep->n_kv_heads;
  if (p->req->select) {
    pith_err e = {{0}};
    if (p->req->select(p->req->select_ctx, v, p->row_len, p->keep, &e)) {
      if (!e.msg[0]) return pith_fail(err, "generate_pressed: the select callback failed at layer %d", l);
      return pith_fail(err, "%s", e.msg);
    }
  } else {  // no press: every context entry stays
    int64_t *all = malloc(sizeof(int64_t) * (size_t)pt_size(v->k, 2));
    if (!all) return pith_fail(err, "generate_pressed: out of memory");
    for (int64_t i = 0; i < pt_size(v->k, 2); i++) all[i] = i;
    for (int b = 0; b < B; b++)
      for (int h = 0; h < Hkv; h++)
        if (kv_keep_set(p->keep, l, b, h, all, p->row_len[b], err)) {
          free(all);
          return -1;
        }
    free(all);
  }
  int64_t P = v->prefix_len, S = pt_size(v->k, 2);
  pt_tensor *k = pt_slice(v->k, 2, P, S), *vv = pt_slice(v->v, 2, P, S);
  if (!pt_ok()) return pt_fail(err, "generate_pressed: layer %d", l);
  return kv_cache_set_layer(p->cache, l, k, vv, p->keep, err);
}

// The prefill's attention when rows are right-padded: each row's causal attention over its own
// tokens (the fused causal kernel a lone row gets) instead of one masked call over the padded batch,
// which computes every (query, key) pair of the longest row; padded queries get zeros (they feed only
// padded positions, which no real query reads). ctx: the prefill_ctx.
static pt_tensor *prefill_attend(const llama_layer_view *v, void *vctx, pith_err *err) {
  const prefill_ctx *p = vctx;
  int64_t B = pt_size(v->q, 0), H = pt_size(v->q, 1), T = pt_size(v->q, 2), hd = pt_size(v->q, 3), P = v->prefix_len;
  pt_tensor *out = pt_zeros(PT_SHAPE(B, H, T, hd), pt_dtype_of(v->q), pt_device_of(v->q));
  for (int64_t b = 0; b < B; b++) {
    int64_t L = p->row_len[b];
    pt_tensor *q = pt_slice(pt_slice(v->q, 0, b, b + 1), 2, 0, L);
    pt_tensor *k = pt_slice(pt_slice(v->k, 0, b, b + 1), 2, 0, P + L);
    pt_tensor *vv = pt_slice(pt_slice(v->v, 0, b, b + 1), 2, 0, P + L);
    pt_copy_(pt_slice(pt_slice(out, 0, b, b + 1), 2, 0, L), pt_attention(q, k, vv, NULL, 1, 0));
  }
  if (!pt_ok()) {
    pt_fail(err, "generate_pressed: the prefill's attention of layer %d", v->layer);
    return NULL;
  }
  return out;
}

static int check_request(const llama_model *m, const gen_press_request *r, const gen_config *cfg, int64_t *P,
                         pith_err *err) {
  *P = 0;
  if (!m) return pith_fail(err, "generate_pressed: no model");
  if (!r) return pith_fail(err, "generate_pressed: no request");
  if (gen_config_check(cfg, "generate_pressed", err)) return -1;
  if (r->batch <= 0 || !r->context || !r->n_context)
    return pith_fail(err, "generate_pressed: %d rows given (at least one, each with a context)", r->batch);
  if (!r->question != !r->n_question)
    return pith_fail(err, "generate_pressed: question and n_question go together");
  if (!r->prefix_k != !r->prefix_v) return pith_fail(err, "generate_pressed: prefix_k and prefix_v go together");
  if (r->prefix_k) *P = pt_ndim(r->prefix_k[0]) == 4 ? pt_size(r->prefix_k[0], 2) : 0;
  int V = m->cfg.vocab_size;
  for (int b = 0; b < r->batch; b++) {
    int nc = r->n_context[b], nq = r->n_question ? r->n_question[b] : 0;
    if (nc <= 0 || !r->context[b])
      return pith_fail(err, "generate_pressed: row %d has an empty context (give at least one token)", b);
    if (nq < 0 || (nq > 0 && !r->question[b]))
      return pith_fail(err, "generate_pressed: row %d's question has %d tokens%s", b, nq, nq > 0 ? " and no array" : "");
    for (int i = 0; i < nc + nq; i++) {
      int32_t id = i < nc ? r->context[b][i] : r->question[b][i - nc];
      if (id < 0 || id >= V)
        return pith_fail(err, "generate_pressed: row %d's %s token %d is id %d, outside the vocabulary [0, %d)", b,
                         i < nc ? "context" : "question", i < nc ? i : i - nc, (int)id, V);
    }
    // The compact attention applies no window: refuse only where a window would mask something.
    if (m->cfg.sliding_window > 0 && *P + nc + nq + cfg->max_new_tokens > m->cfg.sliding_window)
      return pith_fail(err, "generate_pressed: row %d can reach %lld positions, beyond the model's sliding window of "
                            "%d, which the compact cache does not apply",
                       b, (long long)(*P + nc + nq + cfg->max_new_tokens), m->cfg.sliding_window);
    if (*P + nc + nq >= m->cfg.max_seq_len)
      return pith_fail(err, "generate_pressed: row %d (%d context + %d question tokens after a prefix of %lld) leaves "
                            "no room in the model's %d positions (max_position_embeddings)",
                       b, nc, nq, (long long)*P, m->cfg.max_seq_len);
  }
  if (!pt_ok()) return pt_fail(err, "generate_pressed: a shim error was pending before the call");
  return 0;
}

// The LM head as a (dim, vocab) copy for the decode steps, or NULL (use the model's own): on the CPU
// in f32, MKL's GEMV over the (vocab, dim) layout runs 2-7x slower (measured on AMD EPYC, 1 thread:
// 32000 x 512, 6.2 ms vs 2.9; x 128, 2.3 vs 0.34) than the product with the transposed copy. The
// copy costs about ten such GEMVs (57 ms and 13 ms), so it is made for generations of at least
// 32 steps; made per call (the model's weights may change between calls).
static pt_tensor *decode_head(const llama_model *m, const gen_config *cfg) {
  if (m->device != PT_CPU || m->dtype != PT_F32 || cfg->max_new_tokens < 32) return NULL;
  pt_scope s = pt_scope_begin();
  pt_tensor *t = pt_scope_return(s, pt_contiguous(pt_transpose(pt_detach(m->lm_head), 0, 1)));
  return t ? pt_keep(t) : NULL;  // on failure the pending error surfaces at the first step
}

// The logits (B, vocab) f32 of the final hidden states `hidden` (B, 1, dim), copied into out;
// head_t: decode_head's copy or NULL.
static int last_logits(const llama_model *m, const pt_tensor *head_t, pt_tensor *hidden, float *out) {
  pt_tensor *lg = pt_to_dtype(head_t ? pt_matmul(hidden, head_t) : pt_linear(hidden, m->lm_head, NULL), PT_F32);
  if (!lg) return -1;
  return pt_to_data(lg, out, sizeof(float) * (size_t)pt_numel(lg));
}

// One forward of tok (B, T) over the cache: hidden states of position last[b] of each row.
static int cache_step(const llama_model *m, const pt_tensor *head_t, const gen_press_request *r, kv_cache *c,
                      const int64_t *tok, const uint8_t *valid, const int64_t *pos, const int64_t *last, int64_t T,
                      float *logits, pith_err *err) {
  int64_t B = r->batch;
  pt_scope s = pt_scope_begin();
  pt_device dev = m->device;
  pt_tensor *ids = pt_from_data(tok, PT_I64, PT_SHAPE(B, T), dev);
  pt_tensor *ok = pt_to_dtype(pt_from_data(valid, PT_BOOL, PT_SHAPE(B, T), dev), PT_BOOL);
  pt_tensor *positions = pt_from_data(pos, PT_I64, PT_SHAPE(B, T), dev);
  pt_tensor *sel = pt_from_data(last, PT_I64, PT_SHAPE(B, 1), dev);
  if (!pt_ok()) {
    pt_scope_end(s);
    return pt_fail(err, "generate_pressed");
  }
  if (kv_cache_step_begin(c, ok, T, err)) {
    pt_scope_end(s);
    return -1;
  }
  llama_inputs in = {.ids = ids, .positions = positions, .lora = r->lora, .no_logits = 1, .want_hidden = 1,
                     .select = sel, .attend = kv_cache_llama_attend, .attend_ctx = c};
  llama_outputs o;
  int rc = llama_forward(m, &in, &o, err);
  if (rc == 0) {
    rc = kv_cache_step_end(c, err);
    if (rc == 0 && last_logits(m, head_t, o.hidden, logits)) rc = pt_fail(err, "generate_pressed: logits");
    llama_outputs_free(&o);
  } else {
    c->in_step = 0, c->broken = 1;
  }
  pt_scope_end(s);
  return rc;
}

void gen_press_result_free(gen_press_result *r) {
  if (!r) return;
  if (r->ids)
    for (int b = 0; b < r->batch; b++) free(r->ids[b]);
  free(r->ids);
  free(r->n);
  free(r->row_bytes);
  kv_keep_free(r->keep);
  memset(r, 0, sizeof *r);
}

int generate_pressed(const llama_model *m, const gen_press_request *r, const gen_config *cfg,
                     int (*on_token)(int row, int32_t id, void *ctx), void *ctx, gen_press_result *res,
                     pith_err *err) {
  if (!res) return pith_fail(err, "generate_pressed: no result given");
  memset(res, 0, sizeof *res);
  int64_t P;
  if (check_request(m, r, cfg, &P, err)) return -1;
  int B = r->batch, V = m->cfg.vocab_size, L = m->cfg.n_layers, maxc = 0, maxq = 0;
  for (int b = 0; b < B; b++) {
    maxc = r->n_context[b] > maxc ? r->n_context[b] : maxc;
    int nq = r->n_question ? r->n_question[b] : 0;
    maxq = nq > maxq ? nq : maxq;
  }
  kv_cache *cache = kv_cache_new(m, B, r->n_context, r->prefix_k, r->prefix_v, err);
  if (!cache) return -1;
  // Room for the question and every new token: the steps write their K/V in place.
  if (kv_cache_reserve_tail(cache, maxq + cfg->max_new_tokens, err)) {
    kv_cache_free(cache);
    return -1;
  }
  res->batch = B;
  res->keep = kv_keep_new(L, B, m->cfg.n_kv_heads, err);
  res->ids = calloc((size_t)B, sizeof *res->ids);
  res->n = calloc((size_t)B, sizeof *res->n);
  int64_t Tmax = maxc > maxq ? maxc : maxq;
  int64_t *tok = calloc((size_t)(B * Tmax), sizeof(int64_t)), *pos = calloc((size_t)(B * Tmax), sizeof(int64_t));
  int64_t *last = calloc((size_t)B, sizeof(int64_t));
  uint8_t *valid = calloc((size_t)(B * Tmax), 1), *done = calloc((size_t)B, 1);
  float *logits = malloc(sizeof(float) * (size_t)B * (size_t)V), *prefill_logits = NULL;
  gen_rng *rng = malloc(sizeof(gen_rng) * (size_t)B);
  int rc = 0;
  if (!res->keep || !res->ids || !res->n || !tok || !pos || !last || !valid || !done || !logits || !rng)
    rc = res->keep ? pith_fail(err, "generate_pressed: out of memory") : -1;
  for (int b = 0; b < B && rc == 0; b++) {
    res->ids[b] = malloc(sizeof(int32_t) * (size_t)cfg->max_new_tokens);
    if (!res->ids[b]) rc = pith_fail(err, "generate_pressed: out of memory");
    rng[b] = gen_rng_new(cfg->seed);
  }
  int was = pt_set_grad_enabled(0);

  // 1. The contexts, right-padded, prefilled together; the press runs per layer inside.
  if (rc == 0) {
    int any_pad = 0;
    for (int b = 0; b < B; b++) {
      for (int i = 0; i < maxc; i++) {
        int real = i < r->n_context[b];
        tok[b * maxc + i] = real ? r->context[b][i] : 0;
        any_pad |= !real;
      }
      last[b] = r->n_context[b] - 1;
    }
    prefill_ctx pc = {r, cache, res->keep, r->n_context};
    pt_scope s = pt_scope_begin();
    pt_tensor *ids = pt_from_data(tok, PT_I64, PT_SHAPE(B, maxc), m->device);
    // No mask: unpadded rows take the plain causal path, as generate() runs it; padded ones attend
    // through prefill_attend, each over its own tokens (and the press scores each row over its own).
    pt_tensor *sel = pt_from_data(last, PT_I64, PT_SHAPE(B, 1), m->device);
    int need = 0;  // rows without a question take their first token from the context's last position
    for (int b = 0; b < B; b++) need |= !r->n_question || r->n_question[b] == 0;
    // Without them nothing after the last layer's K/V is needed (llama_forward then skips its attention and MLP).
    llama_inputs in = {.ids = ids, .prefix_k = r->prefix_k, .prefix_v = r->prefix_v, .lora = r->lora,
                       .no_logits = 1, .want_hidden = need, .select = need ? sel : NULL, .on_layer = prefill_layer,
                       .on_layer_ctx = &pc, .attend = any_pad ? prefill_attend : NULL, .attend_ctx = &pc};
    llama_outputs o;
    if (!pt_ok()) {
      rc = pt_fail(err, "generate_pressed");
    } else if ((rc = llama_forward(m, &in, &o, err)) == 0) {
      if (need) {
        prefill_logits = malloc(sizeof(float) * (size_t)B * (size_t)V);
        if (!prefill_logits) rc = pith_fail(err, "generate_pressed: out of memory");
        else if (last_logits(m, NULL, o.hidden, prefill_logits)) rc = pt_fail(err, "generate_pressed: logits");
      }
      llama_outputs_free(&o);
    }
    pt_scope_end(s);
  }
  if (rc == 0) {
    kv_cache_usage u = kv_cache_bytes(cache);
    res->kv_bytes = u.kept + u.index + u.prefix;  // the tail's reserved room is not the press's
    res->kv_kept = kv_keep_total(res->keep);
    res->row_bytes = calloc((size_t)B, sizeof(int64_t));
    if (!res->row_bytes) rc = pith_fail(err, "generate_pressed: out of memory");
    int64_t es = (int64_t)pt_dtype_size(m->dtype), hd = m->cfg.head_dim, Hkv = m->cfg.n_kv_heads;
    for (int b = 0; b < B && rc == 0; b++) {  // the row's share of every part (as kv_cache_bytes counts them)
      int64_t kept = 0, indexed = 0;  // indexed: entries of compact layers, each with a 16-byte index
      for (int l = 0; l < L; l++)
        for (int h = 0; h < Hkv; h++) {
          int n = res->keep->n[kv_keep_index(res->keep, l, b, h)];
          kept += n;
          indexed += cache->dense[l] ? 0 : n;
        }
      res->row_bytes[b] = kept * 2 * hd * es + indexed * 16 + (int64_t)L * 2 * Hkv * P * hd * es;
    }
    res->kv_dense_bytes = (int64_t)L * 2 * B * m->cfg.n_kv_heads * (P + maxc) * m->cfg.head_dim *
                          (int64_t)pt_dtype_size(m->dtype);
  }

  pt_tensor *head_t = rc == 0 ? decode_head(m, cfg) : NULL;
  // 2. The questions at positions after the uncompressed context.
  if (rc == 0 && maxq > 0) {
    for (int b = 0; b < B; b++) {
      int nq = r->n_question[b];
      for (int i = 0; i < maxq; i++) {
        tok[b * maxq + i] = i < nq ? r->question[b][i] : 0;
        valid[b * maxq + i] = (uint8_t)(i < nq);
        pos[b * maxq + i] = P + r->n_context[b] + i;
      }
      last[b] = nq > 0 ? nq - 1 : 0;
    }
    rc = cache_step(m, head_t, r, cache, tok, valid, pos, last, maxq, logits, err);
  }
  if (rc == 0)
    for (int b = 0; b < B; b++)
      if (!r->n_question || r->n_question[b] == 0)
        memcpy(logits + (size_t)b * V, prefill_logits + (size_t)b * V, sizeof(float) * (size_t)V);

  // 3. Decoding, rows in lockstep; a finished row rides along as an invalid token.
  int active = B;
  while (rc == 0) {
    for (int b = 0; b < B; b++) {
      if (done[b]) continue;
      int32_t next = gen_sample(logits + (size_t)b * V, V, cfg, &rng[b]);
      if (next < 0) {
        rc = pith_fail(err, "generate_pressed: could not sample row %d (the logits are all NaN, or out of memory)", b);
        break;
      }
      res->ids[b][res->n[b]++] = next;
      int stop = on_token ? on_token(b, next, ctx) : 0;
      for (int i = 0; i < cfg->n_eos; i++) stop |= next == cfg->eos_ids[i];
      int used = (int)P + r->n_context[b] + (r->n_question ? r->n_question[b] : 0) + res->n[b];
      if (stop || res->n[b] >= cfg->max_new_tokens || used >= m->cfg.max_seq_len) done[b] = 1, active--;
    }
    if (rc || active == 0) break;
    for (int b = 0; b < B; b++) {
      int nq = r->n_question ? r->n_question[b] : 0;
      tok[b] = done[b] ? 0 : res->ids[b][res->n[b] - 1];
      valid[b] = !done[b];
      pos[b] = done[b] ? 0 : P + r->n_context[b] + nq + res->n[b] - 1;
      last[b] = 0;
    }
    rc = cache_step(m, head_t, r, cache, tok, valid, pos, last, 1, logits, err);
  }

  pt_set_grad_enabled(was);
  pt_free(head_t);
  kv_cache_free(cache);
  free(tok), free(pos), free(last), free(valid), free(done), free(logits), free(prefill_logits), free(rng);
  if (rc) {
    gen_press_result_free(res);
    return -1;
  }
  return 0;
}
