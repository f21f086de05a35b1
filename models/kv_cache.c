// kv_cache: the compact per-head KV cache and the attention over it; see kv_cache.h.
#include "kv_cache.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void free_handles(pt_tensor **t, int n) {
  if (!t) return;
  for (int i = 0; i < n; i++) pt_free(t[i]);
  free(t);
}

void kv_cache_free(kv_cache *c) {
  if (!c) return;
  int L = c->n_layers;
  free_handles(c->prefix_k, L);
  free_handles(c->prefix_v, L);
  free_handles(c->ck, L);
  free_handles(c->cv, L);
  free_handles(c->seg, L);
  free_handles(c->pos, L);
  free_handles(c->dk, L);
  free_handles(c->dv, L);
  pt_free(c->dense_valid);
  pt_free(c->step_valid);
  pt_free(c->step_mask);
  free(c->ctx_len);
  free(c->built);
  free(c->n_ctx);
  free(c);
}

kv_cache *kv_cache_new(const llama_model *m, int batch, const int *ctx_len, pt_tensor *const *prefix_k,
                       pt_tensor *const *prefix_v, pith_err *err) {
  const llama_config *mc = &m->cfg;
  if (batch <= 0 || !ctx_len) {
    pith_fail(err, "kv_cache: %d rows given (at least one, each with its context length)", batch);
    return NULL;
  }
  for (int b = 0; b < batch; b++)
    if (ctx_len[b] <= 0) {
      pith_fail(err, "kv_cache: row %d has an empty context (%d tokens)", b, ctx_len[b]);
      return NULL;
    }
  if (!prefix_k != !prefix_v) {
    pith_fail(err, "kv_cache: prefix_k and prefix_v go together");
    return NULL;
  }
  int64_t P = 0;
  if (prefix_k) {
    P = pt_ndim(prefix_k[0]) == 4 ? pt_size(prefix_k[0], 2) : -1;
    for (int l = 0; l < mc->n_layers; l++) {
      const pt_tensor *ts[2] = {prefix_k[l], prefix_v[l]};
      for (int i = 0; i < 2; i++)
        if (!ts[i] || pt_ndim(ts[i]) != 4 || pt_size(ts[i], 0) != batch || pt_size(ts[i], 1) != mc->n_kv_heads ||
            pt_size(ts[i], 2) != P || pt_size(ts[i], 3) != mc->head_dim || pt_dtype_of(ts[i]) != m->dtype ||
            pt_device_of(ts[i]) != m->device) {
          char d[96];
          pith_fail(err, "kv_cache: prefix %s of layer %d is %s; want (%d, %d, P, %d) %s, P the same in every layer",
                    i ? "V" : "K", l, pt_describe(ts[i], d, sizeof d), batch, mc->n_kv_heads, mc->head_dim,
                    pt_dtype_name(m->dtype));
          return NULL;
        }
    }
  }
  kv_cache *c = calloc(1, sizeof *c);
  int L = mc->n_layers;
  if (c) {
    c->n_layers = L, c->batch = batch, c->n_kv_heads = mc->n_kv_heads, c->n_heads = mc->n_heads;
    c->head_dim = mc->head_dim, c->dtype = m->dtype, c->device = m->device, c->prefix_len = P;
    c->ctx_len = malloc(sizeof(int) * (size_t)batch);
    c->built = calloc((size_t)L, sizeof(int));
    c->n_ctx = calloc((size_t)L, sizeof(int64_t));
    c->ck = calloc((size_t)L, sizeof(pt_tensor *));
    c->cv = calloc((size_t)L, sizeof(pt_tensor *));
    c->seg = calloc((size_t)L, sizeof(pt_tensor *));
    c->pos = calloc((size_t)L, sizeof(pt_tensor *));
    c->dk = calloc((size_t)L, sizeof(pt_tensor *));
    c->dv = calloc((size_t)L, sizeof(pt_tensor *));
    if (P > 0) {
      c->prefix_k = calloc((size_t)L, sizeof(pt_tensor *));
      c->prefix_v = calloc((size_t)L, sizeof(pt_tensor *));
    }
  }
  if (!c || !c->ctx_len || !c->built || !c->n_ctx || !c->ck || !c->cv || !c->seg || !c->pos || !c->dk || !c->dv ||
      (P > 0 && (!c->prefix_k || !c->prefix_v))) {
    kv_cache_free(c);
    pith_fail(err, "kv_cache: out of memory");
    return NULL;
  }
  memcpy(c->ctx_len, ctx_len, sizeof(int) * (size_t)batch);
  // The cache owns its own copy of the prefix (a caller's view could hold more than it shows).
  for (int l = 0; l < L && P > 0; l++) {
    pt_scope s = pt_scope_begin();
    pt_tensor *kv[2] = {pt_contiguous(pt_clone(pt_detach(prefix_k[l]))), pt_contiguous(pt_clone(pt_detach(prefix_v[l])))};
    pt_scope_return_n(s, kv, 2);
    c->prefix_k[l] = pt_keep(kv[0]), c->prefix_v[l] = pt_keep(kv[1]);
  }
  if (!pt_ok()) {
    kv_cache_free(c);
    pt_fail(err, "kv_cache: prefix");
    return NULL;
  }
  return c;
}

int kv_cache_check_keep(const kv_cache *c, const kv_keep *keep, int layer, pith_err *err) {
  if (!keep) return pith_fail(err, "kv_cache: no keep given");
  if (keep->n_layers != c->n_layers || keep->batch != c->batch || keep->n_kv_heads != c->n_kv_heads)
    return pith_fail(err,
                     "kv_cache: the keep is for %d layers, %d rows and %d KV heads; the cache has %d layers, %d rows "
                     "and %d KV heads",
                     keep->n_layers, keep->batch, keep->n_kv_heads, c->n_layers, c->batch, c->n_kv_heads);
  int l0 = layer < 0 ? 0 : layer, l1 = layer < 0 ? c->n_layers : layer + 1;
  if (layer >= c->n_layers) return pith_fail(err, "kv_cache: layer %d of %d", layer, c->n_layers);
  for (int l = l0; l < l1; l++)
    for (int b = 0; b < c->batch; b++)
      for (int h = 0; h < c->n_kv_heads; h++) {
        int i = kv_keep_index(keep, l, b, h), n = keep->n[i];
        if (n < 0 || n > c->ctx_len[b] || (n > 0 && !keep->pos[i]))
          return pith_fail(err, "kv_cache: layer %d, row %d, KV head %d keeps %d entries of a %d-token context", l, b,
                           h, n, c->ctx_len[b]);
        for (int j = 0; j < n; j++) {
          int64_t p = keep->pos[i][j];
          if (p < 0 || p >= c->ctx_len[b])
            return pith_fail(err,
                             "kv_cache: layer %d, row %d, KV head %d keeps position %lld, outside the row's context "
                             "of %d tokens",
                             l, b, h, (long long)p, c->ctx_len[b]);
          if (j > 0 && p <= keep->pos[i][j - 1])
            return pith_fail(err, "kv_cache: layer %d, row %d, KV head %d: positions not strictly ascending at %lld",
                             l, b, h, (long long)p);
        }
      }
  return 0;
}

int kv_cache_set_layer(kv_cache *c, int layer, const pt_tensor *k, const pt_tensor *v, const kv_keep *keep,
                       pith_err *err) {
  if (layer < 0 || layer >= c->n_layers)
    return pith_fail(err, "kv_cache: layer %d, the cache has layers 0..%d", layer, c->n_layers - 1);
  if (c->built[layer]) return pith_fail(err, "kv_cache: layer %d is already set", layer);
  if (c->dense_len > 0 || c->in_step)
    return pith_fail(err, "kv_cache: layer %d set after a step ran (the context comes first)", layer);
  int B = c->batch, Hkv = c->n_kv_heads, max_len = 0;
  for (int b = 0; b < B; b++) max_len = c->ctx_len[b] > max_len ? c->ctx_len[b] : max_len;
  const pt_tensor *kv[2] = {k, v};
  for (int i = 0; i < 2; i++)
    if (!kv[i] || pt_ndim(kv[i]) != 4 || pt_size(kv[i], 0) != B || pt_size(kv[i], 1) != Hkv ||
        pt_size(kv[i], 2) < max_len || pt_size(kv[i], 3) != c->head_dim || pt_dtype_of(kv[i]) != c->dtype ||
        pt_size(kv[i], 2) != pt_size(k, 2)) {
      char d[96];
      return pith_fail(err, "kv_cache: layer %d's context %s is %s; want (%d, %d, T >= %d, %d) %s", layer,
                       i ? "V" : "K", pt_describe(kv[i], d, sizeof d), B, Hkv, max_len, c->head_dim,
                       pt_dtype_name(c->dtype));
    }
  if (keep && kv_cache_check_keep(c, keep, layer, err)) return -1;
  int64_t T = pt_size(k, 2), N = 0;
  for (int b = 0; b < B; b++)
    for (int h = 0; h < Hkv; h++) N += keep ? keep->n[kv_keep_index(keep, layer, b, h)] : c->ctx_len[b];
  int64_t *idx = malloc(sizeof(int64_t) * (size_t)(3 * N + 1)), *seg = idx + N, *pos = idx + 2 * N, n = 0;
  if (!idx) return pith_fail(err, "kv_cache: out of memory");
  for (int b = 0; b < B; b++)
    for (int h = 0; h < Hkv; h++) {
      int cnt = keep ? keep->n[kv_keep_index(keep, layer, b, h)] : c->ctx_len[b];
      const int64_t *kp = keep ? keep->pos[kv_keep_index(keep, layer, b, h)] : NULL;
      for (int j = 0; j < cnt; j++, n++) {
        pos[n] = kp ? kp[j] : j;
        seg[n] = (int64_t)b * Hkv + h;
        idx[n] = seg[n] * T + pos[n];
      }
    }
  pt_scope s = pt_scope_begin();
  pt_tensor *ck, *cv, *segt, *post;
  if (N > 0) {
    pt_tensor *it = pt_from_data(idx, PT_I64, PT_SHAPE(N), c->device);
    // Detached, so that no graph keeps the full K/V alive; index_select copies only the kept rows.
    ck = pt_index_select(pt_reshape(pt_detach(k), PT_SHAPE(B * Hkv * T, c->head_dim)), 0, it);
    cv = pt_index_select(pt_reshape(pt_detach(v), PT_SHAPE(B * Hkv * T, c->head_dim)), 0, it);
    segt = pt_from_data(seg, PT_I64, PT_SHAPE(N), c->device);
    post = pt_from_data(pos, PT_I64, PT_SHAPE(N), c->device);
  } else {
    ck = pt_zeros(PT_SHAPE(0, c->head_dim), c->dtype, c->device);
    cv = pt_zeros(PT_SHAPE(0, c->head_dim), c->dtype, c->device);
    segt = pt_zeros(PT_SHAPE(0), PT_I64, c->device);
    post = pt_zeros(PT_SHAPE(0), PT_I64, c->device);
  }
  free(idx);
  pt_tensor *keepers[4] = {ck, cv, segt, post};
  pt_scope_return_n(s, keepers, 4);
  if (!pt_ok()) {
    for (int i = 0; i < 4; i++) pt_free(keepers[i]);
    return pt_fail(err, "kv_cache: layer %d", layer);
  }
  c->ck[layer] = pt_keep(ck), c->cv[layer] = pt_keep(cv);
  c->seg[layer] = pt_keep(segt), c->pos[layer] = pt_keep(post);
  c->n_ctx[layer] = N;
  c->built[layer] = 1;
  return 0;
}

int kv_cache_step_begin(kv_cache *c, const pt_tensor *valid, int64_t T, pith_err *err) {
  if (c->broken) return pith_fail(err, "kv_cache: an earlier step failed half-way; the cache cannot go on");
  if (c->in_step) return pith_fail(err, "kv_cache: a step is already in progress");
  for (int l = 0; l < c->n_layers; l++)
    if (!c->built[l]) return pith_fail(err, "kv_cache: layer %d's context was never set", l);
  int64_t B = c->batch, P = c->prefix_len, D = c->dense_len;
  if (T <= 0) return pith_fail(err, "kv_cache: a step of %lld tokens", (long long)T);
  if (valid && (pt_ndim(valid) != 2 || pt_size(valid, 0) != B || pt_size(valid, 1) != T))
    return pith_fail(err, "kv_cache: the step's validity must be (%lld, %lld)", (long long)B, (long long)T);
  pt_scope s = pt_scope_begin();
  pt_device dev = c->device;
  pt_tensor *ok = valid ? pt_to_dtype(valid, PT_BOOL) : pt_ones(PT_SHAPE(B, T), PT_BOOL, dev);
  // New keys: causal and real, or the query itself (so that no row is ever all masked).
  pt_tensor *tri = pt_tril(pt_ones(PT_SHAPE(T, T), PT_BOOL, dev), 0);
  pt_tensor *eye = pt_eq(tri, pt_triu(pt_ones(PT_SHAPE(T, T), PT_BOOL, dev), 0));
  pt_tensor *news = pt_maximum(pt_mul(pt_view(tri, PT_SHAPE(1, 1, 1, T, T)), pt_view(ok, PT_SHAPE(B, 1, 1, 1, T))),
                               pt_view(eye, PT_SHAPE(1, 1, 1, T, T)));
  pt_tensor *parts[3];
  int n = 0;
  if (P > 0) parts[n++] = pt_ones(PT_SHAPE(B, 1, 1, T, P), PT_BOOL, dev);
  if (D > 0) parts[n++] = pt_expand(pt_view(c->dense_valid, PT_SHAPE(B, 1, 1, 1, D)), PT_SHAPE(B, 1, 1, T, D));
  parts[n++] = news;
  pt_tensor *keepers[2] = {pt_contiguous(ok), pt_cat(parts, n, 4)};
  pt_scope_return_n(s, keepers, 2);
  if (!pt_ok()) {
    pt_free(keepers[0]), pt_free(keepers[1]);
    return pt_fail(err, "kv_cache: step");
  }
  c->step_valid = pt_keep(keepers[0]);
  c->step_mask = pt_keep(keepers[1]);
  c->step_len = T;
  c->step_layers = 0;
  c->in_step = 1;
  return 0;
}

// softmax over [compact entries of the query's (row, KV head); prefix; dense tail; new keys] · V.
static pt_tensor *attend(kv_cache *c, int l, const pt_tensor *q, const pt_tensor *k, const pt_tensor *v) {
  int64_t B = c->batch, Hkv = c->n_kv_heads, H = c->n_heads, G = H / Hkv, hd = c->head_dim, T = c->step_len;
  int64_t GT = G * T, N = c->n_ctx[l];
  double scale = 1.0 / sqrt((double)hd);
  // Query head h reads KV head h / G: group the G heads of a KV head, with their T queries, on one axis.
  pt_tensor *qf = pt_to_dtype(pt_reshape(q, PT_SHAPE(B, Hkv, GT, hd)), PT_F32);
  pt_tensor *ks[3], *vs[3];
  int n = 0;
  if (c->prefix_len > 0) ks[n] = c->prefix_k[l], vs[n++] = c->prefix_v[l];
  if (c->dense_len > 0) ks[n] = c->dk[l], vs[n++] = c->dv[l];
  ks[n] = (pt_tensor *)k, vs[n++] = (pt_tensor *)v;
  pt_tensor *kd = pt_to_dtype(n > 1 ? pt_cat(ks, n, 2) : ks[0], PT_F32);  // (B, Hkv, S, hd)
  pt_tensor *vd = pt_to_dtype(n > 1 ? pt_cat(vs, n, 2) : vs[0], PT_F32);
  int64_t S = pt_size(kd, 2);
  pt_tensor *sd = pt_mul_scalar(pt_matmul(qf, pt_transpose(kd, 2, 3)), scale);  // (B, Hkv, GT, S)
  sd = pt_masked_fill(pt_view(sd, PT_SHAPE(B, Hkv, G, T, S)), pt_eq_scalar(c->step_mask, 0), -INFINITY);
  sd = pt_view(sd, PT_SHAPE(B * Hkv, GT, S));
  pt_tensor *mx = pt_amax_dim(sd, -1, 0);  // (B·Hkv, GT): never -inf, a query sees itself
  pt_tensor *sc = NULL, *idx = NULL, *gi = NULL;
  // Two ways for the compact entries to meet their queries (same math): GEMM scores every entry
  // against every segment's queries and keeps its own, temporaries (N, B·Hkv·GT); SEGMENT gathers
  // each entry's queries, temporaries (N, GT, hd). GEMM is the cheaper one while B·Hkv <= hd.
  int gemm = c->attn_path == KV_ATTN_GEMM || (c->attn_path == KV_ATTN_AUTO && B * Hkv <= hd);
  pt_tensor *qs = pt_view(pt_mul_scalar(qf, scale), PT_SHAPE(B * Hkv, GT, hd));
  if (N > 0) {
    pt_tensor *ckf = pt_to_dtype(c->ck[l], PT_F32);
    if (gemm) {
      pt_tensor *all = pt_matmul(ckf, pt_transpose(pt_view(qs, PT_SHAPE(B * Hkv * GT, hd)), 0, 1));
      gi = pt_expand(pt_view(c->seg[l], PT_SHAPE(N, 1, 1)), PT_SHAPE(N, 1, GT));
      sc = pt_view(pt_gather(pt_view(all, PT_SHAPE(N, B * Hkv, GT)), 1, gi), PT_SHAPE(N, GT));
    } else {
      // (N, GT, hd) · (N, 1, hd) summed over hd: a batched matmul of N one-column products would
      // run as N gemv calls, several times slower.
      pt_tensor *qn = pt_index_select(qs, 0, c->seg[l]);
      sc = pt_sum_dim(pt_mul(qn, pt_unsqueeze(ckf, 1)), -1, 0);  // (N, GT)
    }
    idx = pt_expand(pt_view(c->seg[l], PT_SHAPE(N, 1)), PT_SHAPE(N, GT));
    mx = pt_scatter_reduce(mx, 0, idx, sc, "amax", 1);  // the segment max, with the dense part's
  }
  pt_tensor *ed = pt_exp(pt_sub(sd, pt_unsqueeze(mx, -1)));  // (B·Hkv, GT, S)
  pt_tensor *den = pt_sum_dim(ed, -1, 0);                     // (B·Hkv, GT)
  pt_tensor *num = pt_matmul(ed, pt_reshape(vd, PT_SHAPE(B * Hkv, S, hd)));  // (B·Hkv, GT, hd)
  if (N > 0) {
    pt_tensor *ec = pt_exp(pt_sub(sc, pt_index_select(mx, 0, c->seg[l])));  // (N, GT)
    den = pt_scatter_add(den, 0, idx, ec);
    pt_tensor *cvf = pt_to_dtype(c->cv[l], PT_F32);
    if (gemm) {  // the weights spread to (N, B·Hkv·GT), zero outside each entry's segment, times V
      pt_tensor *ew = pt_scatter(pt_zeros(PT_SHAPE(N, B * Hkv, GT), PT_F32, c->device), 1, gi,
                                 pt_view(ec, PT_SHAPE(N, 1, GT)));
      pt_tensor *part = pt_matmul(pt_transpose(pt_view(ew, PT_SHAPE(N, B * Hkv * GT)), 0, 1), cvf);
      num = pt_add(num, pt_view(part, PT_SHAPE(B * Hkv, GT, hd)));
    } else {
      pt_tensor *src = pt_mul(pt_unsqueeze(ec, -1), pt_unsqueeze(cvf, 1));  // (N, GT, hd)
      num = pt_index_add(num, 0, c->seg[l], src);
    }
  }
  pt_tensor *out = pt_div(num, pt_unsqueeze(den, -1));
  return pt_to_dtype(pt_reshape(out, PT_SHAPE(B, H, T, hd)), c->dtype);
}

pt_tensor *kv_cache_attend(kv_cache *c, int layer, const pt_tensor *q, const pt_tensor *k, const pt_tensor *v,
                           pith_err *err) {
  if (!c->in_step) {
    pith_fail(err, "kv_cache: attend outside a step (call kv_cache_step_begin first)");
    return NULL;
  }
  if (layer != c->step_layers) {
    pith_fail(err, "kv_cache: layer %d attends where layer %d is next", layer, c->step_layers);
    return NULL;
  }
  int64_t B = c->batch, T = c->step_len;
  if (pt_ndim(q) != 4 || pt_size(q, 0) != B || pt_size(q, 1) != c->n_heads || pt_size(q, 2) != T ||
      pt_size(q, 3) != c->head_dim) {
    char d[96];
    pith_fail(err, "kv_cache: layer %d's queries are %s, want (%lld, %d, %lld, %d)", layer, pt_describe(q, d, sizeof d),
              (long long)B, c->n_heads, (long long)T, c->head_dim);
    return NULL;
  }
  const pt_tensor *kv[2] = {k, v};
  for (int i = 0; i < 2; i++)
    if (pt_ndim(kv[i]) != 4 || pt_size(kv[i], 0) != B || pt_size(kv[i], 1) != c->n_kv_heads ||
        pt_size(kv[i], 2) != T || pt_size(kv[i], 3) != c->head_dim || pt_dtype_of(kv[i]) != c->dtype) {
      char d[96];
      pith_fail(err, "kv_cache: layer %d's new %s is %s, want (%lld, %d, %lld, %d) %s", layer, i ? "V" : "K",
                pt_describe(kv[i], d, sizeof d), (long long)B, c->n_kv_heads, (long long)T, c->head_dim,
                pt_dtype_name(c->dtype));
      return NULL;
    }
  pt_tensor *out = attend(c, layer, q, k, v);
  // The layer's new K/V join its dense tail (a fresh tensor each step: the tail is short).
  pt_scope s = pt_scope_begin();
  pt_tensor *nk = (pt_tensor *)k, *nv = (pt_tensor *)v;
  if (c->dense_len > 0) {
    pt_tensor *ks[2] = {c->dk[layer], (pt_tensor *)k}, *vs[2] = {c->dv[layer], (pt_tensor *)v};
    nk = pt_cat(ks, 2, 2), nv = pt_cat(vs, 2, 2);
  } else {
    nk = pt_contiguous(pt_clone(pt_detach(k))), nv = pt_contiguous(pt_clone(pt_detach(v)));
  }
  pt_tensor *keepers[2] = {pt_detach(nk), pt_detach(nv)};
  pt_scope_return_n(s, keepers, 2);
  if (!out || !pt_ok()) {
    pt_free(keepers[0]), pt_free(keepers[1]);
    c->broken = 1;
    pt_fail(err, "kv_cache: attention of layer %d", layer);
    return NULL;
  }
  pt_free(c->dk[layer]), pt_free(c->dv[layer]);
  c->dk[layer] = pt_keep(keepers[0]), c->dv[layer] = pt_keep(keepers[1]);
  c->step_layers++;
  return out;
}

int kv_cache_step_end(kv_cache *c, pith_err *err) {
  if (!c->in_step) return pith_fail(err, "kv_cache: no step in progress");
  c->in_step = 0;
  if (c->step_layers != c->n_layers) {
    c->broken = 1;
    return pith_fail(err, "kv_cache: the step ended after %d of %d layers", c->step_layers, c->n_layers);
  }
  pt_tensor *valid = c->step_valid;
  if (c->dense_len > 0) {
    pt_scope s = pt_scope_begin();
    pt_tensor *parts[2] = {c->dense_valid, c->step_valid};
    valid = pt_scope_return(s, pt_cat(parts, 2, 1));
    if (!valid) {
      c->broken = 1;
      return pt_fail(err, "kv_cache: step end");
    }
    pt_free(c->dense_valid);
    pt_free(c->step_valid);
    valid = pt_keep(valid);
  }
  c->dense_valid = valid;
  c->step_valid = NULL;
  pt_free(c->step_mask);
  c->step_mask = NULL;
  c->dense_len += c->step_len;
  return 0;
}

pt_tensor *kv_cache_llama_attend(const llama_layer_view *view, void *ctx, pith_err *err) {
  if (view->prefix_len != 0) {
    pith_fail(err, "kv_cache: the forward was given prefix K/V; with a cache the prefix lives in the cache");
    return NULL;
  }
  return kv_cache_attend(ctx, view->layer, view->q, view->k, view->v, err);
}

static int64_t nbytes(const pt_tensor *t) { return t ? pt_storage_nbytes(t) : 0; }

kv_cache_usage kv_cache_bytes(const kv_cache *c) {
  kv_cache_usage u = {0};
  for (int l = 0; l < c->n_layers; l++) {
    u.kept += nbytes(c->ck[l]) + nbytes(c->cv[l]);
    u.index += nbytes(c->seg[l]) + nbytes(c->pos[l]);
    if (c->prefix_k) u.prefix += nbytes(c->prefix_k[l]) + nbytes(c->prefix_v[l]);
    u.dense += nbytes(c->dk[l]) + nbytes(c->dv[l]);
  }
  u.dense += nbytes(c->dense_valid);
  u.total = u.kept + u.index + u.prefix + u.dense;
  return u;
}
