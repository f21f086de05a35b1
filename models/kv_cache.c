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
  free_handles(c->bk, L * c->batch);
  free_handles(c->bv, L * c->batch);
  pt_free(c->tail_valid);
  pt_free(c->step_valid);
  pt_free(c->step_tail_mask);
  pt_free(c->step_mask);
  free(c->ctx_len);
  free(c->built);
  free(c->dense);
  free(c->groups);
  free(c->n_ctx);
  free(c->base);
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
    c->tail_all_valid = 1;
    c->ctx_len = malloc(sizeof(int) * (size_t)batch);
    c->built = calloc((size_t)L, sizeof(int));
    c->dense = calloc((size_t)L, sizeof(int));
    c->groups = calloc((size_t)L, sizeof(int));
    c->n_ctx = calloc((size_t)L, sizeof(int64_t));
    c->base = calloc((size_t)L * (size_t)batch, sizeof(int64_t));
    c->ck = calloc((size_t)L, sizeof(pt_tensor *));
    c->cv = calloc((size_t)L, sizeof(pt_tensor *));
    c->seg = calloc((size_t)L, sizeof(pt_tensor *));
    c->pos = calloc((size_t)L, sizeof(pt_tensor *));
    c->bk = calloc((size_t)L * (size_t)batch, sizeof(pt_tensor *));
    c->bv = calloc((size_t)L * (size_t)batch, sizeof(pt_tensor *));
    if (P > 0) {
      c->prefix_k = calloc((size_t)L, sizeof(pt_tensor *));
      c->prefix_v = calloc((size_t)L, sizeof(pt_tensor *));
    }
  }
  if (!c || !c->ctx_len || !c->built || !c->dense || !c->groups || !c->n_ctx || !c->base || !c->ck || !c->cv || !c->seg || !c->pos ||
      !c->bk || !c->bv ||
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

// Every built layer's buffers and the tail's validity re-made with room for cap tail entries, the
// filled part copied over.
static int grow_tail(kv_cache *c, int64_t cap, pith_err *err) {
  int64_t B = c->batch, Hkv = c->n_kv_heads, hd = c->head_dim, D = c->dense_len;
  for (int l = 0; l < c->n_layers; l++) {
    if (!c->built[l]) continue;
    for (int g = 0; g < c->groups[l]; g++) {
      int i0 = l * c->batch + g;
      int64_t rows = c->groups[l] == 1 ? B : 1, keep_n = c->base[i0] + D;
      pt_scope s = pt_scope_begin();
      pt_tensor *nb[2];
      pt_tensor *old[2] = {c->bk[i0], c->bv[i0]};
      for (int i = 0; i < 2; i++) {
        nb[i] = pt_zeros(PT_SHAPE(rows, Hkv, c->base[i0] + cap, hd), c->dtype, c->device);
        if (keep_n > 0) pt_copy_(pt_slice(nb[i], 2, 0, keep_n), pt_slice(old[i], 2, 0, keep_n));
      }
      pt_scope_return_n(s, nb, 2);
      if (!pt_ok()) {
        pt_free(nb[0]), pt_free(nb[1]);
        return pt_fail(err, "kv_cache: room for %lld tail entries in layer %d", (long long)cap, l);
      }
      pt_free(c->bk[i0]), pt_free(c->bv[i0]);
      c->bk[i0] = pt_keep(nb[0]), c->bv[i0] = pt_keep(nb[1]);
    }
  }
  pt_scope s = pt_scope_begin();
  pt_tensor *nv = pt_zeros(PT_SHAPE(B, cap), PT_BOOL, c->device);
  if (D > 0) pt_copy_(pt_slice(nv, 1, 0, D), pt_slice(c->tail_valid, 1, 0, D));
  nv = pt_scope_return(s, nv);
  if (!pt_ok()) {
    pt_free(nv);
    return pt_fail(err, "kv_cache: room for %lld tail entries", (long long)cap);
  }
  pt_free(c->tail_valid);
  c->tail_valid = pt_keep(nv);
  c->tail_cap = cap;
  return 0;
}

int kv_cache_reserve_tail(kv_cache *c, int64_t n, pith_err *err) {
  if (n < 0) return pith_fail(err, "kv_cache: room for %lld tail entries", (long long)n);
  if (c->in_step) return pith_fail(err, "kv_cache: tail room asked for during a step");
  return n > c->tail_cap ? grow_tail(c, n, err) : 0;
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
  int64_t T = pt_size(k, 2), N = 0, P = c->prefix_len, hd = c->head_dim;
  int n0 = keep ? keep->n[kv_keep_index(keep, layer, 0, 0)] : c->ctx_len[0], same = 1, rows_same = 1;
  int *nb = malloc(sizeof(int) * (size_t)B);  // each row's count when its heads agree
  if (!nb) return pith_fail(err, "kv_cache: out of memory");
  for (int b = 0; b < B; b++) {
    nb[b] = keep ? keep->n[kv_keep_index(keep, layer, b, 0)] : c->ctx_len[b];
    for (int h = 0; h < Hkv; h++) {
      int cnt = keep ? keep->n[kv_keep_index(keep, layer, b, h)] : c->ctx_len[b];
      N += cnt;
      same &= cnt == n0;
      rows_same &= cnt == nb[b];
    }
  }
  // Dense when every (row, head) keeps n0 entries: a (B, Hkv, n0, hd) block, attended by one SDPA
  // call; when only each row's heads agree, a (1, Hkv, n_b, hd) block per row in buffers of its own
  // (one SDPA call per row); else compact.
  int dense = rows_same && c->attn_path == KV_ATTN_AUTO, groups = dense && !same ? B : 1;
  // idx: the flat rows (B·Hkv·T, hd) of k/v kept, in (row, head, position) order; seg and pos for
  // a compact layer.
  int64_t *idx = malloc(sizeof(int64_t) * (size_t)(3 * N + 1)), *seg = idx + N, *pos = idx + 2 * N, n = 0;
  if (!idx) {
    free(nb);
    return pith_fail(err, "kv_cache: out of memory");
  }
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
  // keepers: compact K, V, seg, pos; then buffer K, V of each group
  pt_tensor **keepers = calloc((size_t)(4 + 2 * groups), sizeof(pt_tensor *));
  if (!keepers) {
    free(idx), free(nb);
    pt_scope_end(s);
    return pith_fail(err, "kv_cache: out of memory");
  }
  pt_tensor *it = N > 0 ? pt_from_data(idx, PT_I64, PT_SHAPE(N), c->device) : NULL;
  for (int g = 0, off = 0; g < groups; g++) {
    int r0 = groups == 1 ? 0 : g, rows = groups == 1 ? B : 1, n = dense ? nb[r0] : 0, cnt = rows * Hkv * n;
    int64_t base = P + n;
    c->base[layer * B + g] = base;
    for (int i = 0; i < 2; i++) {
      pt_tensor *buf = keepers[4 + 2 * g + i] = pt_zeros(PT_SHAPE(rows, Hkv, base + c->tail_cap, hd), c->dtype, c->device);
      if (P > 0) pt_copy_(pt_slice(buf, 2, 0, P), pt_slice(i ? c->prefix_v[layer] : c->prefix_k[layer], 0, r0, r0 + rows));
      if (cnt > 0) {  // index_select copies only the kept rows (detached: no graph keeps the full K/V alive)
        pt_tensor *sel = pt_index_select(pt_reshape(pt_detach(kv[i]), PT_SHAPE(B * Hkv * T, hd)), 0, pt_slice(it, 0, off, off + cnt));
        pt_copy_(pt_slice(buf, 2, P, base), pt_view(sel, PT_SHAPE(rows, Hkv, n, hd)));
      }
    }
    off += cnt;
  }
  if (!dense) {
    for (int i = 0; i < 2; i++)
      keepers[i] = N > 0 ? pt_index_select(pt_reshape(pt_detach(kv[i]), PT_SHAPE(B * Hkv * T, hd)), 0, it)
                             : pt_zeros(PT_SHAPE(0, hd), c->dtype, c->device);
    keepers[2] = N > 0 ? pt_from_data(seg, PT_I64, PT_SHAPE(N), c->device) : pt_zeros(PT_SHAPE(0), PT_I64, c->device);
    keepers[3] = N > 0 ? pt_from_data(pos, PT_I64, PT_SHAPE(N), c->device) : pt_zeros(PT_SHAPE(0), PT_I64, c->device);
  }
  free(idx), free(nb);
  int nk = 4 + 2 * groups;
  pt_scope_return_n(s, keepers, nk);
  if (!pt_ok()) {
    for (int i = 0; i < nk; i++) pt_free(keepers[i]);
    free(keepers);
    return pt_fail(err, "kv_cache: layer %d", layer);
  }
  for (int g = 0; g < groups; g++)
    c->bk[layer * B + g] = pt_keep(keepers[4 + 2 * g]), c->bv[layer * B + g] = pt_keep(keepers[5 + 2 * g]);
  if (!dense) {
    c->ck[layer] = pt_keep(keepers[0]), c->cv[layer] = pt_keep(keepers[1]);
    c->seg[layer] = pt_keep(keepers[2]), c->pos[layer] = pt_keep(keepers[3]);
  }
  free(keepers);
  if (P > 0) {  // the prefix now lives in the buffers
    pt_free(c->prefix_k[layer]), pt_free(c->prefix_v[layer]);
    c->prefix_k[layer] = c->prefix_v[layer] = NULL;
  }
  c->dense[layer] = dense;
  c->groups[layer] = groups;
  c->n_ctx[layer] = N;
  c->built[layer] = 1;
  return 0;
}

int kv_cache_step_begin(kv_cache *c, const pt_tensor *valid, int64_t T, pith_err *err) {
  if (c->broken) return pith_fail(err, "kv_cache: an earlier step failed half-way; the cache cannot go on");
  if (c->in_step) return pith_fail(err, "kv_cache: a step is already in progress");
  for (int l = 0; l < c->n_layers; l++)
    if (!c->built[l]) return pith_fail(err, "kv_cache: layer %d's context was never set", l);
  int64_t B = c->batch, D = c->dense_len;
  if (T <= 0) return pith_fail(err, "kv_cache: a step of %lld tokens", (long long)T);
  if (valid && (pt_ndim(valid) != 2 || pt_size(valid, 0) != B || pt_size(valid, 1) != T))
    return pith_fail(err, "kv_cache: the step's validity must be (%lld, %lld)", (long long)B, (long long)T);
  if (D + T > c->tail_cap && grow_tail(c, D + T > 2 * c->tail_cap ? D + T : 2 * c->tail_cap, err)) return -1;
  uint8_t *host = malloc((size_t)(B * T));
  if (!host) return pith_fail(err, "kv_cache: out of memory");
  pt_scope s = pt_scope_begin();
  pt_tensor *ok = valid ? pt_contiguous(pt_to_dtype(valid, PT_BOOL)) : pt_ones(PT_SHAPE(B, T), PT_BOOL, c->device);
  int all = 1;
  if (valid) {
    if (pt_to_data(ok, host, (size_t)(B * T)) == 0)
      for (int64_t i = 0; i < B * T; i++) all &= host[i] != 0;
  }
  free(host);
  ok = pt_scope_return(s, ok);
  if (!pt_ok()) {
    pt_free(ok);
    return pt_fail(err, "kv_cache: step");
  }
  c->step_valid = pt_keep(ok);
  c->step_all_valid = all && c->tail_all_valid;
  c->step_len = T;
  c->step_layers = 0;
  c->in_step = 1;
  return 0;
}

// The step's masks over a layer's buffer (rows, 1, T, base + D + T) bool: the first base entries
// (prefix and dense kept context) seen by every query, the tail where valid, the new keys causal and
// valid, or the query itself (so that no row is ever all masked). The tail's and new keys' part
// (B, 1, T, D + T) once per step; the whole batch's mask once per step and base.
static pt_tensor *step_tail_mask(kv_cache *c) {
  if (c->step_tail_mask) return c->step_tail_mask;
  int64_t B = c->batch, D = c->dense_len, T = c->step_len;
  pt_device dev = c->device;
  pt_scope s = pt_scope_begin();
  pt_tensor *tri = pt_tril(pt_ones(PT_SHAPE(T, T), PT_BOOL, dev), 0);
  pt_tensor *eye = pt_eq(tri, pt_triu(pt_ones(PT_SHAPE(T, T), PT_BOOL, dev), 0));
  pt_tensor *news = pt_maximum(pt_mul(pt_view(tri, PT_SHAPE(1, 1, T, T)), pt_view(c->step_valid, PT_SHAPE(B, 1, 1, T))),
                               pt_view(eye, PT_SHAPE(1, 1, T, T)));
  pt_tensor *parts[2] = {NULL, news};
  if (D > 0)
    parts[0] = pt_expand(pt_view(pt_slice(c->tail_valid, 1, 0, D), PT_SHAPE(B, 1, 1, D)), PT_SHAPE(B, 1, T, D));
  pt_tensor *tm = pt_scope_return(s, pt_contiguous(D > 0 ? pt_cat(parts, 2, 3) : news));
  if (tm) c->step_tail_mask = pt_keep(tm);
  return c->step_tail_mask;
}

// The mask for rows [r0, r0 + rows) of a buffer with `base` entries before its tail, in the current scope.
static pt_tensor *rows_mask(kv_cache *c, int64_t r0, int64_t rows, int64_t base) {
  pt_tensor *tm = step_tail_mask(c);
  if (!tm) return NULL;
  tm = pt_slice(tm, 0, r0, r0 + rows);
  if (base == 0) return tm;
  pt_tensor *parts[2] = {pt_ones(PT_SHAPE(rows, 1, c->step_len, base), PT_BOOL, c->device), tm};
  return pt_cat(parts, 2, 3);
}

static pt_tensor *step_mask(kv_cache *c, int64_t base) {
  if (c->step_mask && c->step_mask_base == base) return c->step_mask;
  pt_scope s = pt_scope_begin();
  pt_tensor *m = pt_scope_return(s, pt_contiguous(rows_mask(c, 0, c->batch, base)));
  if (!m) return NULL;
  pt_free(c->step_mask);
  c->step_mask = pt_keep(m);
  c->step_mask_base = base;
  return c->step_mask;
}

// softmax over [compact entries of the query's (row, KV head); the buffer's prefix and tail] · V,
// kd and vd (B, Hkv, S, hd) the buffer's filled part (the new keys included).
static pt_tensor *attend_compact(kv_cache *c, int l, const pt_tensor *q, pt_tensor *kdb, pt_tensor *vdb) {
  int64_t B = c->batch, Hkv = c->n_kv_heads, H = c->n_heads, G = H / Hkv, hd = c->head_dim, T = c->step_len;
  int64_t GT = G * T, N = c->n_ctx[l], S = pt_size(kdb, 2);
  double scale = 1.0 / sqrt((double)hd);
  pt_tensor *mask = step_mask(c, c->base[l * B]);
  if (!mask) return NULL;
  // Query head h reads KV head h / G: group the G heads of a KV head, with their T queries, on one axis.
  pt_tensor *qf = pt_to_dtype(pt_reshape(q, PT_SHAPE(B, Hkv, GT, hd)), PT_F32);
  pt_tensor *kd = pt_to_dtype(kdb, PT_F32), *vd = pt_to_dtype(vdb, PT_F32);
  pt_tensor *sd = pt_mul_scalar(pt_matmul(qf, pt_transpose(kd, 2, 3)), scale);  // (B, Hkv, GT, S)
  sd = pt_masked_fill(pt_view(sd, PT_SHAPE(B, Hkv, G, T, S)), pt_eq_scalar(pt_view(mask, PT_SHAPE(B, 1, 1, T, S)), 0),
                      -INFINITY);
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
  // The new K/V go into the layer's tail first; then the attention reads the buffers' filled part.
  int groups = c->groups[layer];
  pt_tensor *outs[groups], *out = NULL;
  for (int g = 0; g < groups; g++) {
    int i0 = layer * (int)B + g;
    int64_t r0 = groups == 1 ? 0 : g, rows = groups == 1 ? B : 1, at = c->base[i0] + c->dense_len, S = at + T;
    const pt_tensor *kg = groups == 1 ? k : pt_slice(k, 0, r0, r0 + 1), *vg = groups == 1 ? v : pt_slice(v, 0, r0, r0 + 1);
    const pt_tensor *qg = groups == 1 ? q : pt_slice(q, 0, r0, r0 + 1);
    pt_copy_(pt_slice(c->bk[i0], 2, at, S), kg);
    pt_copy_(pt_slice(c->bv[i0], 2, at, S), vg);
    pt_tensor *kd = pt_slice(c->bk[i0], 2, 0, S), *vd = pt_slice(c->bv[i0], 2, 0, S);
    if (!c->dense[layer]) {
      outs[g] = attend_compact(c, layer, q, kd, vd);
    } else if (c->step_all_valid) {  // every key real: plain causal (the new tokens) attention
      outs[g] = pt_attention(qg, kd, vd, NULL, T > 1, 0);
    } else {
      pt_tensor *mask = groups == 1 ? step_mask(c, c->base[i0]) : rows_mask(c, r0, rows, c->base[i0]);
      outs[g] = mask ? pt_attention(qg, kd, vd, mask, 0, 0) : NULL;
    }
  }
  out = groups == 1 ? outs[0] : pt_cat(outs, groups, 0);
  if (!out || !pt_ok()) {
    c->broken = 1;
    pt_fail(err, "kv_cache: attention of layer %d", layer);
    return NULL;
  }
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
  int64_t D = c->dense_len, T = c->step_len;
  if (pt_copy_(pt_slice(c->tail_valid, 1, D, D + T), c->step_valid)) {
    c->broken = 1;
    return pt_fail(err, "kv_cache: step end");
  }
  c->tail_all_valid = c->step_all_valid;
  pt_free(c->step_valid), pt_free(c->step_tail_mask), pt_free(c->step_mask);
  c->step_valid = c->step_tail_mask = c->step_mask = NULL;
  c->dense_len += T;
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
  int64_t es = (int64_t)pt_dtype_size(c->dtype), row = 2 * (int64_t)c->head_dim * es;  // K and V of one entry
  int64_t heads = (int64_t)c->batch * c->n_kv_heads, D = c->dense_len;
  for (int l = 0; l < c->n_layers; l++) {
    if (!c->built[l]) {  // the prefix still in its own copy
      if (c->prefix_k) u.prefix += nbytes(c->prefix_k[l]) + nbytes(c->prefix_v[l]);
      continue;
    }
    int64_t buf = 0;
    for (int g = 0; g < c->groups[l]; g++) buf += nbytes(c->bk[l * c->batch + g]) + nbytes(c->bv[l * c->batch + g]);
    int64_t pre = heads * c->prefix_len * row, kept = c->dense[l] ? c->n_ctx[l] * row : 0, tail = heads * D * row;
    u.prefix += pre;
    u.kept += kept + nbytes(c->ck[l]) + nbytes(c->cv[l]);
    u.index += nbytes(c->seg[l]) + nbytes(c->pos[l]);
    u.dense += tail;
    u.reserved += buf - pre - kept - tail;
  }
  int64_t valid = nbytes(c->tail_valid), used = (int64_t)c->batch * D;
  u.dense += used;
  u.reserved += valid - used;
  u.total = u.kept + u.index + u.prefix + u.dense + u.reserved;
  return u;
}
