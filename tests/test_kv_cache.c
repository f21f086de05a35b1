// test_kv_cache: the compact per-head KV cache and generation over it (generate_pressed).
//   (a) with hand-made keeps (random subsets per (layer, row, KV head), counts differing per head),
//       the compact attention equals dense attention with the evicted keys masked (1e-5), over a
//       prefix, a dense tail with invalid entries and causal new tokens; greedy generation equals
//       a reference computed with no cache at all: full forwards whose attention masks, per head,
//       the context keys the press dropped for every query after the context;
//   (b) keeping everything gives what generate() gives, token for token (question-agnostic and
//       question-aware);
//   (c) the cache's bytes after the press are exactly the kept entries' bytes, plus their index
//       (compact layers only), the prefix, and the tail (written, and reserved room), the total
//       counted from the tensors' storages;
//   (g) the dense layouts (every (row, head) of a layer keeps the same count: one SDPA call; each
//       row's heads keep one count: a buffer and an SDPA call per row) and the compact one agree on
//       the same keep (1e-5), and all equal the masked reference; under a non-adaptive press a lone
//       row and a batch of rows of different lengths get the dense layouts (no index bytes), adakv
//       the compact one;
//   (d) a batch of 3 rows of different context and question lengths gives each row its own tokens;
//   (e) a prefix is attended (it changes the tokens, and matches the masked reference) and never
//       evicted (a press that keeps nothing still sees it);
//   (f) bad input: a keep of the wrong sizes, a position beyond the row's context, an empty
//       context, and more; no tensor handle leaks;
//   a bf16 model: bf16 entries (half the bytes), the attention within bf16 rounding of f32; and
//   stories260K (real weights, when the assets are there): keep-all, a pressed batch, the reference.
#include <stdint.h>

#include "check.h"
#include "generate.h"
#include "hf_folder.h"
#include "kv_cache.h"
#include "llama2c.h"
#include "press.h"

enum { NEW = 16 };

static llama_config small_config(void) {
  return (llama_config){.arch = LLAMA_ARCH_LLAMA, .vocab_size = 64, .dim = 32, .hidden_dim = 64, .n_layers = 2,
                        .n_heads = 4, .n_kv_heads = 2, .max_seq_len = 128, .bos_id = -1, .eos_id = -1};
}

// A random model whose logits are spread enough that greedy decoding wanders (as test_generate).
static llama_model *small_model(llama_config c, uint64_t seed, pt_dtype dt) {
  pith_err err = {{0}};
  llama_model *m = llama_new_random(&c, seed, dt, PT_CPU, &err);
  CHECK_MSG(m != NULL, "%s", err.msg);
  if (!m) exit(1);
  pt_scope s = pt_scope_begin();
  pt_copy_(m->lm_head, pt_mul_scalar(m->lm_head, 40));
  pt_copy_(m->embed, pt_mul_scalar(m->embed, 20));
  // Attention that matters (peaked scores, outputs as large as the residual): evicting keys then
  // changes the tokens, so the tests below could fail.
  for (int l = 0; l < c.n_layers; l++) {
    llama_layer *L = &m->layers[l];
    pt_tensor *w[4] = {L->wq, L->wk, L->wv, L->wo};
    for (int i = 0; i < 4; i++) pt_copy_(w[i], pt_mul_scalar(w[i], 5));
  }
  CHECK(pt_ok());
  pt_scope_end(s);
  return m;
}

static uint64_t mix(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// ---------------------------------------------------------------- the hand-made press
//
// Keeps context position p of (layer, KV head) of a row with `len` context tokens when a hash says
// so (about `pct` percent), so each head keeps its own subset and count. A row is named by its
// context length (not its batch index), so it keeps the same alone as in a batch.
typedef struct {
  int pct;       // 0..100
  int64_t P;     // the prefix length the view must show
  int calls;
  int bad_pos;   // (f): keep the position just past the row's context
} hash_press;

static int hash_keeps(const hash_press *hp, int layer, int head, int len, int64_t p) {
  return (int)(mix(((uint64_t)layer * 1000003u + (uint64_t)head * 7919u + (uint64_t)len * 131u) ^ (uint64_t)p * 2654435761u) %
               100) < hp->pct;
}

static int hash_select(void *ctx, const llama_layer_view *v, const int *row_len, kv_keep *keep, pith_err *err) {
  hash_press *hp = ctx;
  hp->calls++;
  if (v->prefix_len != hp->P) return pith_fail(err, "select: prefix_len %lld, want %lld", (long long)v->prefix_len, (long long)hp->P);
  int64_t pos[256];
  for (int b = 0; b < keep->batch; b++)
    for (int h = 0; h < keep->n_kv_heads; h++) {
      int n = 0;
      for (int p = 0; p < row_len[b]; p++)
        if (hash_keeps(hp, v->layer, h, row_len[b], p)) pos[n++] = p;
      if (hp->bad_pos) pos[n++] = row_len[b];
      if (kv_keep_set(keep, v->layer, b, h, pos, n, err)) return -1;
    }
  return 0;
}

// ---------------------------------------------------------------- (a) the attention itself

static pt_tensor *bool_tensor(const uint8_t *x, pt_shape s) { return pt_from_data(x, PT_BOOL, s, PT_CPU); }

static double max_abs_diff(pt_tensor *a, pt_tensor *b) { return pt_item(pt_amax_dim(pt_view(pt_abs(pt_sub(a, b)), PT_SHAPE(-1)), 0, 0)); }

// equal 1: every (row, head) keeps 3 entries (its own subset), so AUTO stores the layers dense;
// equal 2: row 0's heads keep 4, row 1's 2 (a dense buffer per row); 0: the counts differ (one head
// keeps nothing, one everything). reserve: tail room made beforehand for
// both steps. Every output is checked against the masked reference and against a second cache
// that stores the same keep compactly (SEGMENT).
static void test_attention(const llama_model *m, kv_attn_path path, int equal, int reserve) {
  enum { B = 2, Hkv = 2, H = 4, G = 2, HD = 8, P = 3, TC = 7, T1 = 3, EQ = 3 };
  const int ctx_len[B] = {7, 5};
  pith_err err = {{0}};
  size_t live = pt_live_handles();
  pt_dtype dt = m->dtype;
  int64_t es = (int64_t)pt_dtype_size(dt);
  pt_gen *g = pt_gen_new(5, PT_CPU);
  pt_scope s = pt_scope_begin();
  pt_tensor *pk[2], *pv[2], *kc[2], *vc[2];
  for (int l = 0; l < 2; l++) {
    pk[l] = pt_to_dtype(pt_randn(PT_SHAPE(B, Hkv, P, HD), PT_F32, PT_CPU, g), dt);
    pv[l] = pt_to_dtype(pt_randn(PT_SHAPE(B, Hkv, P, HD), PT_F32, PT_CPU, g), dt);
    kc[l] = pt_to_dtype(pt_mul_scalar(pt_randn(PT_SHAPE(B, Hkv, TC, HD), PT_F32, PT_CPU, g), 2), dt);
    vc[l] = pt_to_dtype(pt_randn(PT_SHAPE(B, Hkv, TC, HD), PT_F32, PT_CPU, g), dt);
  }
  // A keep per (layer, row, head) by hand: random subsets, with one head keeping nothing and one all.
  kv_keep *keep = kv_keep_new(2, B, Hkv, &err);
  uint8_t kept[2][B][Hkv][TC] = {{{{0}}}};
  for (int l = 0; l < 2; l++)
    for (int b = 0; b < B; b++)
      for (int h = 0; h < Hkv; h++) {
        int64_t pos[TC];
        int n = 0;
        for (int p = 0; p < ctx_len[b]; p++) {
          int on = (l == 0 && b == 1 && h == 0) ? 0 : (l == 0 && b == 0 && h == 1) ? 1 : (int)(mix(l * 97 + b * 13 + h * 5 + p) % 2);
          if (equal) {  // want entries: those whose hash ranks among the want lowest of the row's
            int below = 0;
            uint64_t mine = mix(l * 97 + b * 13 + h * 5 + p + 1000);
            for (int o = 0; o < ctx_len[b]; o++) below += mix(l * 97 + b * 13 + h * 5 + o + 1000) < mine;
            on = below < (equal == 1 ? EQ : b == 0 ? 4 : 2);
          }
          if (on) pos[n++] = p, kept[l][b][h][p] = 1;
        }
        if (equal) CHECK(n == (equal == 1 ? EQ : b == 0 ? 4 : 2));
        CHECK(kv_keep_set(keep, l, b, h, pos, n, &err) == 0);
      }
  kv_cache *c = kv_cache_new(m, B, ctx_len, pk, pv, &err), *cc = kv_cache_new(m, B, ctx_len, pk, pv, &err);
  CHECK_MSG(c != NULL && cc != NULL, "%s", err.msg);
  if (!c || !cc) return;
  c->attn_path = path;
  cc->attn_path = KV_ATTN_SEGMENT;  // the compact layout of the same keep
  if (reserve) CHECK(kv_cache_reserve_tail(c, T1 + 1, &err) == 0);
  for (int l = 0; l < 2; l++) {
    CHECK_MSG(kv_cache_set_layer(c, l, kc[l], vc[l], keep, &err) == 0, "%s", err.msg);
    CHECK_MSG(kv_cache_set_layer(cc, l, kc[l], vc[l], keep, &err) == 0, "%s", err.msg);
  }
  int dense = equal && path == KV_ATTN_AUTO;
  for (int l = 0; l < 2; l++)
    CHECK_MSG(c->dense[l] == dense && !cc->dense[l] && c->groups[l] == (dense && equal == 2 ? B : 1),
              "layer %d: dense %d, %d buffers", l, c->dense[l], c->groups[l]);

  // (c) bytes after the press: the kept entries and nothing else of the context (compact: with
  // their 16-byte index); the tail's room when reserved (T1 + 1 entries per layer, and validity).
  kv_cache_usage u = kv_cache_bytes(c);
  int64_t total = kv_keep_total(keep), room = reserve ? 2 * (2 * B * Hkv * (T1 + 1) * HD * es) + B * (T1 + 1) : 0;
  CHECK_MSG(u.kept == total * 2 * HD * es, "kept bytes %lld, want %lld", (long long)u.kept, (long long)(total * 2 * HD * es));
  CHECK(u.index == (dense ? 0 : total * 2 * 8));
  CHECK(u.prefix == 2 * 2 * B * Hkv * P * HD * es);
  CHECK(u.dense == 0);
  CHECK_MSG(u.reserved == room, "reserved %lld, want %lld", (long long)u.reserved, (long long)room);
  CHECK(u.total == u.kept + u.index + u.prefix + u.reserved);
  CHECK(c->n_ctx[0] + c->n_ctx[1] == total);
  printf("bytes after the press (%s): kept %lld + index %lld + prefix %lld + tail room %lld = %lld (dense context: %d)\n",
         dense ? "dense" : "compact", (long long)u.kept, (long long)u.index, (long long)u.prefix, (long long)u.reserved,
         (long long)u.total, (int)(2 * 2 * B * Hkv * TC * HD * es));

  // Two steps: 3 new tokens (row 1's last one invalid), then 1 (row 0 invalid).
  const uint8_t valid1[B][T1] = {{1, 1, 1}, {1, 1, 0}}, valid2[B][1] = {{0}, {1}};
  uint8_t dense_valid[B][T1 + 1];
  pt_tensor *ref_k[2] = {NULL, NULL}, *ref_v[2] = {NULL, NULL};  // every key so far, dense: (B, Hkv, P + TC + D, hd)
  for (int l = 0; l < 2; l++) {
    pt_tensor *ks[2] = {pk[l], kc[l]}, *vs[2] = {pv[l], vc[l]};
    ref_k[l] = pt_cat(ks, 2, 2), ref_v[l] = pt_cat(vs, 2, 2);
  }
  for (int step = 0; step < 2; step++) {
    int T = step == 0 ? T1 : 1, D = step == 0 ? 0 : T1;
    const uint8_t *valid = step == 0 ? &valid1[0][0] : &valid2[0][0];
    CHECK_MSG(kv_cache_step_begin(c, bool_tensor(valid, PT_SHAPE(B, T)), T, &err) == 0, "%s", err.msg);
    CHECK_MSG(kv_cache_step_begin(cc, bool_tensor(valid, PT_SHAPE(B, T)), T, &err) == 0, "%s", err.msg);
    int S = P + TC + D + T;
    // The reference mask (B, H, T, S): prefix; kept context of the query head's KV head; valid dense; causal new.
    uint8_t *mask = calloc((size_t)(B * H * T * S), 1);
    for (int b = 0; b < B; b++)
      for (int h = 0; h < H; h++)
        for (int t = 0; t < T; t++)
          for (int j = 0; j < S; j++) {
            int on;
            if (j < P) on = 1;
            else if (j < P + TC) on = 0;  // per layer below
            else if (j < P + TC + D) on = dense_valid[b][j - P - TC];
            else on = (j - P - TC - D <= t && valid[b * T + (j - P - TC - D)]) || j - P - TC - D == t;
            mask[((b * H + h) * T + t) * S + j] = (uint8_t)on;
          }
    for (int l = 0; l < 2; l++) {
      pt_tensor *q = pt_to_dtype(pt_randn(PT_SHAPE(B, H, T, HD), PT_F32, PT_CPU, g), dt);
      pt_tensor *k = pt_to_dtype(pt_randn(PT_SHAPE(B, Hkv, T, HD), PT_F32, PT_CPU, g), dt);
      pt_tensor *v = pt_to_dtype(pt_randn(PT_SHAPE(B, Hkv, T, HD), PT_F32, PT_CPU, g), dt);
      pt_tensor *got = kv_cache_attend(c, l, q, k, v, &err);
      CHECK_MSG(got != NULL, "%s", err.msg);
      pt_tensor *compact = kv_cache_attend(cc, l, q, k, v, &err);
      CHECK_MSG(compact != NULL, "%s", err.msg);
      for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
          for (int t = 0; t < T; t++)
            for (int p = 0; p < TC; p++) mask[((b * H + h) * T + t) * S + P + p] = kept[l][b][h / G][p];
      pt_tensor *ks[2] = {ref_k[l], k}, *vs[2] = {ref_v[l], v};
      ref_k[l] = pt_cat(ks, 2, 2), ref_v[l] = pt_cat(vs, 2, 2);
      // The reference in f32 from the same values; a bf16 cache's output is rounded to bf16.
      pt_tensor *want = pt_attention_math(pt_to_dtype(q, PT_F32), pt_to_dtype(ref_k[l], PT_F32),
                                          pt_to_dtype(ref_v[l], PT_F32), bool_tensor(mask, PT_SHAPE(B, H, T, S)), 0, 0);
      double d = max_abs_diff(pt_to_dtype(got, PT_F32), want);
      CHECK_MSG(d <= (dt == PT_F32 ? 1e-5 : 2e-2), "path %d, step %d, layer %d: the cache vs dense masked attention differ by %g", path, step, l, d);
      d = max_abs_diff(pt_to_dtype(got, PT_F32), pt_to_dtype(compact, PT_F32));
      CHECK_MSG(d <= (dt == PT_F32 ? 1e-5 : 2e-2), "path %d (dense %d), step %d, layer %d: vs the compact layout: %g", path, dense, step, l, d);
      CHECK_MSG(pt_ok(), "%s", pt_error());
    }
    free(mask);
    CHECK_MSG(kv_cache_step_end(c, &err) == 0, "%s", err.msg);
    CHECK_MSG(kv_cache_step_end(cc, &err) == 0, "%s", err.msg);
    for (int b = 0; b < B; b++)
      for (int t = 0; t < T; t++) dense_valid[b][D + t] = valid[b * T + t];
  }
  u = kv_cache_bytes(c);
  CHECK_MSG(u.dense == 2 * 2 * B * Hkv * (T1 + 1) * HD * es + B * (T1 + 1), "dense bytes %lld", (long long)u.dense);
  CHECK(c->dense_len == T1 + 1);
  if (reserve) CHECK_MSG(u.reserved == 0, "reserved %lld after the steps filled the room", (long long)u.reserved);
  CHECK(u.total == u.kept + u.index + u.prefix + u.dense + u.reserved);

  // Out-of-order use is refused.
  CHECK(kv_cache_attend(c, 0, pk[0], pk[0], pk[0], &err) == NULL);
  CHECK_CONTAINS(err.msg, "outside a step");
  CHECK(kv_cache_step_end(c, &err) == -1);
  CHECK(kv_cache_reserve_tail(c, -1, &err) == -1);
  CHECK_CONTAINS(err.msg, "room for -1 tail entries");
  kv_cache_free(c);
  kv_cache_free(cc);
  kv_keep_free(keep);
  pt_scope_end(s);
  pt_gen_free(g);
  CHECK_MSG(pt_live_handles() == live, "%zu handles before, %zu after", live, pt_live_handles());
}

// ---------------------------------------------------------------- references with no cache

typedef struct {
  const hash_press *hp;  // NULL: nothing evicted (unless keep)
  const kv_keep *keep;   // or what a real press kept (row `row` of it)
  int row;
  int ctx_len;           // the row's context tokens (sequence index < ctx_len)
} ref_ctx;

static int keep_has(const kv_keep *k, int layer, int row, int head, int64_t p) {
  int i = kv_keep_index(k, layer, row, head);
  for (int j = 0; j < k->n[i]; j++)
    if (k->pos[i][j] == p) return 1;
  return 0;
}

// Dense attention over the whole sequence, where every query after the context sees, per head, only
// the context keys the press kept (context queries saw everything: the press acts after the prefill).
static pt_tensor *ref_attend(const llama_layer_view *v, void *vctx, pith_err *err) {
  ref_ctx *r = vctx;
  int64_t H = pt_size(v->q, 1), T = pt_size(v->q, 2), P = v->prefix_len, S = P + T, Hkv = pt_size(v->k, 1);
  uint8_t *mask = malloc((size_t)(H * T * S));
  for (int h = 0; h < H; h++)
    for (int64_t i = 0; i < T; i++)
      for (int64_t j = 0; j < S; j++) {
        int on = j < P || j - P <= i;
        if (on && j >= P && j - P < r->ctx_len && i >= r->ctx_len)
          on = r->keep ? keep_has(r->keep, v->layer, r->row, (int)(h / (H / Hkv)), j - P)
                       : !r->hp || hash_keeps(r->hp, v->layer, (int)(h / (H / Hkv)), r->ctx_len, j - P);
        mask[(h * T + i) * S + j] = (uint8_t)on;
      }
  pt_tensor *mt = pt_from_data(mask, PT_BOOL, PT_SHAPE(1, H, T, S), PT_CPU);
  free(mask);
  pt_tensor *a = pt_attention_math(v->q, v->k, v->v, mt, 0, 0);
  if (!a) pt_fail(err, "ref_attend");
  return a;
}

// Greedy continuation by full forwards over context + question + generated (no cache).
static int ref_generate_keep(const llama_model *m, pt_tensor *const *pk, pt_tensor *const *pv, const hash_press *hp,
                             const kv_keep *keep, int row, const int32_t *ctx, int nc, const int32_t *q, int nq,
                             int n_new, int32_t *out) {
  int32_t seq[256];
  memcpy(seq, ctx, sizeof(int32_t) * (size_t)nc);
  if (nq) memcpy(seq + nc, q, sizeof(int32_t) * (size_t)nq);
  int len = nc + nq, was = pt_set_grad_enabled(0);
  for (int i = 0; i < n_new; i++) {
    pt_scope s = pt_scope_begin();
    ref_ctx rc = {hp, keep, row, nc};
    llama_inputs in = {.ids = pt_to_dtype(pt_from_data(seq, PT_I32, PT_SHAPE(1, len), PT_CPU), PT_I64),
                       .prefix_k = pk, .prefix_v = pv, .attend = ref_attend, .attend_ctx = &rc};
    llama_outputs o;
    pith_err err = {{0}};
    int rcode = llama_forward(m, &in, &o, &err);
    CHECK_MSG(rcode == 0, "reference forward: %s", err.msg);
    if (rcode) {
      pt_scope_end(s);
      return -1;
    }
    out[i] = (int32_t)pt_item(pt_argmax(pt_slice(o.logits, 1, len - 1, len), -1, 0));
    seq[len++] = out[i];
    llama_outputs_free(&o);
    pt_scope_end(s);
  }
  pt_set_grad_enabled(was);
  return 0;
}

static int ref_generate(const llama_model *m, pt_tensor *const *pk, pt_tensor *const *pv, const hash_press *hp,
                        const int32_t *ctx, int nc, const int32_t *q, int nq, int n_new, int32_t *out) {
  return ref_generate_keep(m, pk, pv, hp, NULL, 0, ctx, nc, q, nq, n_new, out);
}

// What generate_pressed reports for row `row` of res (-1: every row): kept K/V (f32 or bf16 per
// es), a 16-byte index per entry of the layers stored compact (some row's heads keep different
// counts), and the prefix of P entries per layer and head.
static int64_t want_bytes(const llama_model *m, const gen_press_result *res, int row, int64_t P, int64_t es) {
  const kv_keep *k = res->keep;
  int64_t bytes = 0;
  for (int l = 0; l < k->n_layers; l++) {
    int same = 1;
    for (int b = 0; b < k->batch; b++)
      for (int h = 0; h < k->n_kv_heads; h++) same &= k->n[kv_keep_index(k, l, b, h)] == k->n[kv_keep_index(k, l, b, 0)];
    for (int b = 0; b < k->batch; b++) {
      if (row >= 0 && b != row) continue;
      for (int h = 0; h < k->n_kv_heads; h++)
        bytes += k->n[kv_keep_index(k, l, b, h)] * (2 * m->cfg.head_dim * es + (same ? 0 : 16)) + 2 * P * m->cfg.head_dim * es;
    }
  }
  return bytes;
}

// generate_pressed with the handle count checked around it.
static int gen_pressed(const llama_model *m, const gen_press_request *r, const gen_config *cfg, gen_press_result *res,
                       pith_err *err) {
  size_t live = pt_live_handles();
  int rc = generate_pressed(m, r, cfg, NULL, NULL, res, err);
  CHECK_MSG(pt_live_handles() == live, "%zu handles before generate_pressed, %zu after", live, pt_live_handles());
  CHECK_MSG(pt_ok(), "a shim error is pending: %s", pt_error());
  return rc;
}

static int same_ids(const int32_t *a, int na, const int32_t *b, int nb) {
  return na == nb && (na == 0 || memcmp(a, b, sizeof(int32_t) * (size_t)na) == 0);
}

static int distinct(const int32_t *x, int n) {
  int seen[1024] = {0}, d = 0;
  for (int i = 0; i < n; i++) d += !seen[x[i]]++;
  return d;
}

static const int32_t CTX0[] = {3, 17, 42, 5, 9, 33, 21, 8, 50, 11, 27, 60, 2, 44};
static const int32_t Q0[] = {7, 19, 55, 4};

// (a) greedy over the pressed cache equals the masked full-forward reference.
// n_new >= 32 takes generate_pressed's transposed LM head (decode_head) on the CPU in f32.
static void test_generation_vs_reference(const llama_model *m, int pct, int n_new) {
  gen_config cfg = gen_config_default();
  cfg.max_new_tokens = n_new;
  hash_press hp = {.pct = pct};
  const int32_t *ctxs[1] = {CTX0}, *qs[1] = {Q0};
  int nc[1] = {14}, nq[1] = {4};
  gen_press_request r = {.batch = 1, .context = ctxs, .n_context = nc, .question = qs, .n_question = nq,
                         .select = hash_select, .select_ctx = &hp};
  gen_press_result res;
  pith_err err = {{0}};
  CHECK_MSG(gen_pressed(m, &r, &cfg, &res, &err) == 0, "%s", err.msg);
  CHECK(hp.calls == m->cfg.n_layers);
  int32_t want[64];
  ref_generate(m, NULL, NULL, &hp, CTX0, 14, Q0, 4, n_new, want);
  CHECK_MSG(same_ids(res.ids[0], res.n[0], want, n_new), "keep %d%%, %d new: pressed greedy differs from the masked reference",
            pct, n_new);
  CHECK_MSG(distinct(want, n_new) >= 4, "only %d distinct tokens: the test would be weak", distinct(want, n_new));
  // Different heads keep different counts, and fewer than all.
  int n00 = res.keep->n[kv_keep_index(res.keep, 0, 0, 0)], n01 = res.keep->n[kv_keep_index(res.keep, 0, 0, 1)];
  int64_t tot = res.kv_kept;
  printf("keep %d%%: kept %lld of %d entries (layer 0: heads keep %d and %d), %lld bytes vs %lld dense\n", pct,
         (long long)tot, 14 * m->cfg.n_layers * m->cfg.n_kv_heads, n00, n01, (long long)res.kv_bytes,
         (long long)res.kv_dense_bytes);
  CHECK(tot < 14 * m->cfg.n_layers * m->cfg.n_kv_heads);
  CHECK_MSG(res.kv_bytes == want_bytes(m, &res, -1, 0, 4), "kv_bytes %lld, want %lld", (long long)res.kv_bytes,
            (long long)want_bytes(m, &res, -1, 0, 4));
  // The eviction matters: without it the tokens differ (else this test could not fail).
  int32_t full[64];
  ref_generate(m, NULL, NULL, NULL, CTX0, 14, Q0, 4, n_new, full);
  CHECK_MSG(!same_ids(full, n_new, want, n_new), "keep %d%%: eviction changed nothing: the test would be weak", pct);
  gen_press_result_free(&res);
}

// (b) keep-all equals generate(), question-agnostic and question-aware; with and without a prefix.
static void test_keep_all(const llama_model *m, pt_tensor *const *pk, pt_tensor *const *pv, const char *what) {
  gen_config cfg = gen_config_default();
  cfg.max_new_tokens = NEW;
  int32_t prompt[18];
  memcpy(prompt, CTX0, sizeof CTX0);
  memcpy(prompt + 14, Q0, sizeof Q0);
  int32_t *want = NULL;
  int n_want = 0;
  pith_err err = {{0}};
  CHECK_MSG(generate(m, NULL, pk, pv, prompt, 18, &cfg, NULL, NULL, &want, &n_want, &err) == 0, "%s", err.msg);
  const int32_t *ctxs[1] = {CTX0}, *qs[1] = {Q0};
  int nc[1] = {14}, nq[1] = {4};
  gen_press_request r = {.batch = 1, .context = ctxs, .n_context = nc, .question = qs, .n_question = nq,
                         .prefix_k = pk, .prefix_v = pv};
  gen_press_result res;
  CHECK_MSG(gen_pressed(m, &r, &cfg, &res, &err) == 0, "%s", err.msg);
  CHECK_MSG(same_ids(res.ids[0], res.n[0], want, n_want), "%s: keep-all differs from generate()", what);
  CHECK(res.kv_kept == 14 * m->cfg.n_layers * m->cfg.n_kv_heads);
  gen_press_result_free(&res);
  // Question-aware: the question inside the context, an empty question.
  const int32_t *ctx2[1] = {prompt};
  int nc2[1] = {18}, nq2[1] = {0};
  const int32_t *q2[1] = {NULL};
  gen_press_request r2 = {.batch = 1, .context = ctx2, .n_context = nc2, .question = q2, .n_question = nq2,
                          .prefix_k = pk, .prefix_v = pv};
  CHECK_MSG(gen_pressed(m, &r2, &cfg, &res, &err) == 0, "%s", err.msg);
  CHECK_MSG(same_ids(res.ids[0], res.n[0], want, n_want), "%s: keep-all, question-aware, differs from generate()", what);
  gen_press_result_free(&res);
  // Sampling too: each row's generator is seeded as generate()'s.
  gen_config hot = cfg;
  hot.temperature = 0.9, hot.top_p = 0.8, hot.seed = 3;
  int32_t *want_hot = NULL;
  int n_hot = 0;
  CHECK(generate(m, NULL, pk, pv, prompt, 18, &hot, NULL, NULL, &want_hot, &n_hot, &err) == 0);
  CHECK(gen_pressed(m, &r, &hot, &res, &err) == 0);
  CHECK_MSG(same_ids(res.ids[0], res.n[0], want_hot, n_hot), "%s: sampled keep-all differs from generate()", what);
  CHECK_MSG(!same_ids(want_hot, n_hot, want, n_want), "%s: sampling gave the greedy tokens: the check would be weak", what);
  gen_press_result_free(&res);
  free(want_hot);
  // And the eos stops at the same place.
  cfg.n_eos = 1;
  cfg.eos_ids = &want[5];
  int32_t *want_eos = NULL;
  int n_eos = 0;
  CHECK(generate(m, NULL, pk, pv, prompt, 18, &cfg, NULL, NULL, &want_eos, &n_eos, &err) == 0);
  CHECK(gen_pressed(m, &r, &cfg, &res, &err) == 0);
  CHECK_MSG(same_ids(res.ids[0], res.n[0], want_eos, n_eos) && n_eos <= 6, "%s: eos stops differently", what);
  gen_press_result_free(&res);
  free(want_eos);
  free(want);
}

// (d) three rows of different lengths in one batch, each as alone; pressed and not.
static void test_batch(const llama_model *m, int pct) {
  static const int32_t c1[] = {12, 40, 1, 63, 22, 9, 30, 17, 5};
  static const int32_t c2[] = {8, 8, 41, 6, 57, 13, 29, 3, 36, 48, 20, 14, 31, 26, 39, 52, 61, 10, 45};
  static const int32_t q1[] = {33, 2}, q2[] = {16, 7, 23, 58, 11, 4, 47};
  const int32_t *ctxs[3] = {c1, CTX0, c2}, *qs[3] = {q1, NULL, q2};
  int nc[3] = {9, 14, 19}, nq[3] = {2, 0, 7};
  gen_config cfg = gen_config_default();
  cfg.max_new_tokens = NEW;
  int32_t eos = 7;  // an eos that some row may meet: rows then finish at different steps
  cfg.eos_ids = &eos, cfg.n_eos = 1;
  hash_press hp = {.pct = pct};
  gen_press_request r = {.batch = 3, .context = ctxs, .n_context = nc, .question = qs, .n_question = nq,
                         .select = pct < 100 ? hash_select : NULL, .select_ctx = &hp};
  gen_press_result all;
  pith_err err = {{0}};
  CHECK_MSG(gen_pressed(m, &r, &cfg, &all, &err) == 0, "%s", err.msg);
  CHECK(all.row_bytes[0] + all.row_bytes[1] + all.row_bytes[2] == all.kv_bytes);
  for (int b = 0; b < 3; b++) {
    gen_press_request one = {.batch = 1, .context = &ctxs[b], .n_context = &nc[b], .question = &qs[b],
                             .n_question = &nq[b], .select = r.select, .select_ctx = &hp};
    gen_press_result res;
    CHECK_MSG(gen_pressed(m, &one, &cfg, &res, &err) == 0, "%s", err.msg);
    CHECK_MSG(same_ids(all.ids[b], all.n[b], res.ids[0], res.n[0]), "keep %d%%: row %d differs in the batch", pct, b);
    CHECK(all.row_bytes[b] == want_bytes(m, &all, b, 0, 4));
    CHECK(res.kv_bytes == want_bytes(m, &res, 0, 0, 4));
    for (int l = 0; l < m->cfg.n_layers; l++)
      for (int h = 0; h < m->cfg.n_kv_heads; h++)
        CHECK(all.keep->n[kv_keep_index(all.keep, l, b, h)] == res.keep->n[kv_keep_index(res.keep, 0 * l + l, 0, h)]);
    // And the reference with no cache agrees (rows that stopped at eos compared up to it).
    int32_t want[NEW];
    ref_generate(m, NULL, NULL, pct < 100 ? &hp : NULL, ctxs[b], nc[b], qs[b], nq[b], res.n[0], want);
    CHECK_MSG(same_ids(res.ids[0], res.n[0], want, res.n[0]), "keep %d%%: row %d differs from the reference", pct, b);
    printf("keep %d%% row %d: %d tokens\n", pct, b, res.n[0]);
    gen_press_result_free(&res);
  }
  gen_press_result_free(&all);
}

// (e) a prefix: attended (it changes the tokens; the masked reference with it agrees) and never
// evicted (the press's view shows it apart; keeping no context at all still reads it).
static void test_prefix(const llama_model *m) {
  enum { P = 3 };
  const llama_config *c = &m->cfg;
  pt_tensor *pk[8], *pv[8];
  pt_gen *g = pt_gen_new(11, PT_CPU);
  pt_scope s = pt_scope_begin();
  for (int l = 0; l < c->n_layers; l++) {
    pk[l] = pt_keep(pt_mul_scalar(pt_randn(PT_SHAPE(1, c->n_kv_heads, P, c->head_dim), PT_F32, PT_CPU, g), 2));
    pv[l] = pt_keep(pt_mul_scalar(pt_randn(PT_SHAPE(1, c->n_kv_heads, P, c->head_dim), PT_F32, PT_CPU, g), 3));
  }
  pt_scope_end(s);
  pt_gen_free(g);
  test_keep_all(m, pk, pv, "prefix");
  gen_config cfg = gen_config_default();
  cfg.max_new_tokens = NEW;
  for (int pct = 0; pct <= 50; pct += 50) {
    hash_press hp = {.pct = pct, .P = P};
    const int32_t *ctxs[1] = {CTX0}, *qs[1] = {Q0};
    int nc[1] = {14}, nq[1] = {4};
    gen_press_request r = {.batch = 1, .context = ctxs, .n_context = nc, .question = qs, .n_question = nq,
                           .prefix_k = pk, .prefix_v = pv, .select = hash_select, .select_ctx = &hp};
    gen_press_result with, without;
    pith_err err = {{0}};
    CHECK_MSG(gen_pressed(m, &r, &cfg, &with, &err) == 0, "%s", err.msg);
    CHECK(hp.calls == c->n_layers);
    CHECK_MSG(with.kv_bytes == want_bytes(m, &with, -1, P, 4), "kv_bytes %lld with a prefix", (long long)with.kv_bytes);
    if (pct == 0) CHECK(with.kv_kept == 0);
    int32_t want[NEW];
    ref_generate(m, pk, pv, &hp, CTX0, 14, Q0, 4, NEW, want);
    CHECK_MSG(same_ids(with.ids[0], with.n[0], want, NEW), "keep %d%% with a prefix: differs from the masked reference", pct);
    r.prefix_k = r.prefix_v = NULL;
    hp.P = 0;
    CHECK_MSG(gen_pressed(m, &r, &cfg, &without, &err) == 0, "%s", err.msg);
    CHECK_MSG(!same_ids(with.ids[0], with.n[0], without.ids[0], without.n[0]), "keep %d%%: the prefix changed nothing", pct);
    gen_press_result_free(&with);
    gen_press_result_free(&without);
  }
  for (int l = 0; l < c->n_layers; l++) pt_free(pk[l]), pt_free(pv[l]);
}

// The real presses (models/press.h) plugged in as the select callback: a batch of 3 rows gives each
// row its tokens and its kept positions alone, each head keeps press_n_kept entries (AdaKV: the
// layer's heads together), and greedy equals the reference masked with what the press kept.
static void test_presses(const llama_model *m) {
  static const int32_t c1[] = {12, 40, 1, 63, 22, 9, 30, 17, 5, 44, 18};
  static const int32_t c2[] = {8, 8, 41, 6, 57, 13, 29, 3, 36, 48, 20, 14, 31, 26, 39, 52, 61, 10, 45};
  static const int32_t q1[] = {33, 2}, q2[] = {16, 7, 23, 58, 11, 4, 47};
  const int32_t *ctxs[3] = {c1, CTX0, c2}, *qs[3] = {q1, NULL, q2};
  int nc[3] = {11, 14, 19}, nq[3] = {2, 0, 7};
  const char *specs[] = {"knorm:0.5", "snapkv:0.5:window=4,kernel=3", "adakv-snapkv:0.5:window=4,kernel=3",
                         "streaming_llm:0.5:n_sink=2", "tova:0.5", "expected_attention:0.5:n_sink=2",
                         "observed_attention:0.5", "adakv-knorm:0.75"};
  gen_config cfg = gen_config_default();
  cfg.max_new_tokens = 12;
  int Hkv = m->cfg.n_kv_heads, L = m->cfg.n_layers;
  for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
    press p;
    press_selector ps = {&p, m};
    pith_err err = {{0}};
    CHECK_MSG(press_parse(specs[i], &p, &err) == 0, "%s", err.msg);
    gen_press_request r = {.batch = 3, .context = ctxs, .n_context = nc, .question = qs, .n_question = nq,
                           .select = press_select, .select_ctx = &ps};
    gen_press_result all;
    if (gen_pressed(m, &r, &cfg, &all, &err)) {
      CHECK_MSG(0, "%s: %s", specs[i], err.msg);
      continue;
    }
    for (int b = 0; b < 3; b++) {
      int64_t want = press_n_kept(nc[b], p.ratio);
      for (int l = 0; l < L; l++) {
        int sum = 0;
        for (int h = 0; h < Hkv; h++) {
          int n = all.keep->n[kv_keep_index(all.keep, l, b, h)];
          sum += n;
          if (!p.adaptive) CHECK_MSG(n == want, "%s: row %d layer %d head %d keeps %d, want %lld", specs[i], b, l, h, n, (long long)want);
        }
        CHECK_MSG(sum == Hkv * want, "%s: row %d layer %d keeps %d over its heads, want %lld", specs[i], b, l, sum,
                  (long long)(Hkv * want));
      }
      gen_press_request one = r;
      one.batch = 1, one.context = &ctxs[b], one.n_context = &nc[b], one.question = &qs[b], one.n_question = &nq[b];
      gen_press_result res;
      CHECK_MSG(gen_pressed(m, &one, &cfg, &res, &err) == 0, "%s: %s", specs[i], err.msg);
      CHECK_MSG(same_ids(all.ids[b], all.n[b], res.ids[0], res.n[0]), "%s: row %d differs in the batch", specs[i], b);
      // (g) a non-adaptive press keeps one count per head of a row: the dense layouts, no index, alone
      // and in the batch (rows of different lengths: a buffer per row); adakv the compact one.
      if (!p.adaptive) {
        CHECK_MSG(res.kv_bytes == res.kv_kept * 2 * m->cfg.head_dim * 4, "%s: row %d alone: %lld bytes, not dense",
                  specs[i], b, (long long)res.kv_bytes);
        CHECK_MSG(all.row_bytes[b] == res.kv_kept * 2 * m->cfg.head_dim * 4, "%s: row %d in the batch: %lld bytes, not dense",
                  specs[i], b, (long long)all.row_bytes[b]);
      }
      CHECK(all.row_bytes[b] == want_bytes(m, &all, b, 0, 4));
      for (int l = 0; l < L; l++)
        for (int h = 0; h < Hkv; h++) {
          int ia = kv_keep_index(all.keep, l, b, h), io = kv_keep_index(res.keep, l, 0, h);
          CHECK_MSG(all.keep->n[ia] == res.keep->n[io] &&
                        (!all.keep->n[ia] || !memcmp(all.keep->pos[ia], res.keep->pos[io], sizeof(int64_t) * (size_t)res.keep->n[io])),
                    "%s: row %d layer %d head %d keeps other positions in the batch", specs[i], b, l, h);
        }
      int32_t ref[64];
      ref_generate_keep(m, NULL, NULL, NULL, res.keep, 0, ctxs[b], nc[b], qs[b], nq[b], res.n[0], ref);
      CHECK_MSG(same_ids(res.ids[0], res.n[0], ref, res.n[0]), "%s: row %d differs from the masked reference", specs[i], b);
      gen_press_result_free(&res);
    }
    printf("%-36s kept %3lld of %d entries, %lld bytes (dense %lld)\n", specs[i], (long long)all.kv_kept,
           (11 + 14 + 19) * L * Hkv, (long long)all.kv_bytes, (long long)all.kv_dense_bytes);
    gen_press_result_free(&all);
  }
  // A press that cannot score the context fails the generation with its message.
  press p;
  press_selector ps = {&p, m};
  pith_err err = {{0}};
  CHECK(press_parse("snapkv:0.5", &p, &err) == 0);  // window 64 > every context here
  gen_press_request r = {.batch = 3, .context = ctxs, .n_context = nc, .question = qs, .n_question = nq,
                         .select = press_select, .select_ctx = &ps};
  gen_press_result res;
  CHECK(gen_pressed(m, &r, &cfg, &res, &err) == -1);
  CHECK_CONTAINS(err.msg, "window");
}

// A bf16 model: the cache keeps bf16 entries (half the bytes), attends in f32, and a pressed batch
// runs to its end with each row as alone.
static void test_bf16(void) {
  llama_model *m = small_model(small_config(), 1, PT_BF16);
  test_attention(m, KV_ATTN_AUTO, 0, 0);
  test_attention(m, KV_ATTN_AUTO, 1, 0);
  test_attention(m, KV_ATTN_AUTO, 2, 0);
  hash_press hp = {.pct = 50};
  const int32_t *ctxs[2] = {CTX0, Q0}, *qs[2] = {Q0, CTX0};
  int nc[2] = {14, 4}, nq[2] = {4, 9};
  gen_config cfg = gen_config_default();
  cfg.max_new_tokens = NEW;
  gen_press_request r = {.batch = 2, .context = ctxs, .n_context = nc, .question = qs, .n_question = nq,
                         .select = hash_select, .select_ctx = &hp};
  gen_press_result all, one;
  pith_err err = {{0}};
  CHECK_MSG(gen_pressed(m, &r, &cfg, &all, &err) == 0, "bf16: %s", err.msg);
  CHECK(all.n[0] == NEW && all.n[1] == NEW);
  CHECK(all.kv_bytes == want_bytes(m, &all, -1, 0, 2));
  r.batch = 1;
  CHECK_MSG(gen_pressed(m, &r, &cfg, &one, &err) == 0, "bf16: %s", err.msg);
  CHECK_MSG(same_ids(all.ids[0], all.n[0], one.ids[0], one.n[0]), "bf16: row 0 differs in the batch");
  gen_press_result_free(&all);
  gen_press_result_free(&one);
  llama_free(m);
}

// (f) bad input.
static void test_errors(const llama_model *m) {
  pith_err err = {{0}};
  gen_config cfg = gen_config_default();
  cfg.max_new_tokens = 4;
  const int32_t *ctxs[2] = {CTX0, CTX0}, *qs[2] = {Q0, Q0};
  int nc[2] = {14, 0}, nq[2] = {4, 4};
  gen_press_result res;
  // An empty context.
  gen_press_request r = {.batch = 2, .context = ctxs, .n_context = nc, .question = qs, .n_question = nq};
  CHECK(gen_pressed(m, &r, &cfg, &res, &err) == -1);
  CHECK_CONTAINS(err.msg, "row 1 has an empty context");
  int ok_len[1] = {14}, zero_len[1] = {0};
  CHECK(kv_cache_new(m, 1, zero_len, NULL, NULL, &err) == NULL);
  CHECK_CONTAINS(err.msg, "empty context");
  // A position beyond the row's context.
  nc[1] = 5;
  hash_press bad = {.pct = 50, .bad_pos = 1};
  r.select = hash_select, r.select_ctx = &bad;
  CHECK(gen_pressed(m, &r, &cfg, &res, &err) == -1);
  CHECK_CONTAINS(err.msg, "keeps position 14, outside the row's context of 14 tokens");
  // A keep whose sizes do not match the model.
  kv_cache *c = kv_cache_new(m, 1, ok_len, NULL, NULL, &err);
  kv_keep *wrong = kv_keep_new(m->cfg.n_layers, 1, m->cfg.n_kv_heads + 1, &err);
  pt_scope s = pt_scope_begin();
  pt_tensor *k = pt_zeros(PT_SHAPE(1, m->cfg.n_kv_heads, 14, m->cfg.head_dim), PT_F32, PT_CPU);
  CHECK(kv_cache_set_layer(c, 0, k, k, wrong, &err) == -1);
  CHECK_CONTAINS(err.msg, "the keep is for 2 layers, 1 rows and 3 KV heads; the cache has 2 layers, 1 rows and 2 KV heads");
  kv_keep_free(wrong);
  wrong = kv_keep_new(m->cfg.n_layers + 1, 1, m->cfg.n_kv_heads, &err);
  CHECK(kv_cache_set_layer(c, 0, k, k, wrong, &err) == -1);
  CHECK_CONTAINS(err.msg, "the keep is for 3 layers");
  kv_keep_free(wrong);
  // K/V of the wrong shape; a step before every layer is set.
  pt_tensor *short_k = pt_zeros(PT_SHAPE(1, m->cfg.n_kv_heads, 10, m->cfg.head_dim), PT_F32, PT_CPU);
  CHECK(kv_cache_set_layer(c, 0, short_k, short_k, NULL, &err) == -1);
  CHECK_CONTAINS(err.msg, "want (1, 2, T >= 14, 8)");
  CHECK(kv_cache_set_layer(c, 0, k, k, NULL, &err) == 0);
  CHECK(kv_cache_set_layer(c, 0, k, k, NULL, &err) == -1);
  CHECK_CONTAINS(err.msg, "already set");
  CHECK(kv_cache_step_begin(c, NULL, 1, &err) == -1);
  CHECK_CONTAINS(err.msg, "layer 1's context was never set");
  pt_scope_end(s);
  kv_cache_free(c);
  // A question id outside the vocabulary; a row too long for the model; a prefix for the wrong batch.
  const int32_t badq[1] = {64};
  const int32_t *bq[2] = {badq, Q0};
  int nq1[2] = {1, 4};
  gen_press_request r3 = {.batch = 2, .context = ctxs, .n_context = nc, .question = bq, .n_question = nq1};
  CHECK(gen_pressed(m, &r3, &cfg, &res, &err) == -1);
  CHECK_CONTAINS(err.msg, "row 0's question token 0 is id 64");
  int32_t longctx[130] = {0};
  const int32_t *lc[1] = {longctx};
  int nlong[1] = {128};
  gen_press_request r4 = {.batch = 1, .context = lc, .n_context = nlong};
  CHECK(gen_pressed(m, &r4, &cfg, &res, &err) == -1);
  CHECK_CONTAINS(err.msg, "leaves no room");
  // A sliding window the generation could reach (the compact cache applies none); one it cannot reach is fine.
  llama_config mc = small_config();
  mc.arch = LLAMA_ARCH_MISTRAL, mc.sliding_window = 20;
  llama_model *mm = small_model(mc, 2, PT_F32);
  const int32_t *c1[1] = {CTX0};
  int n1[1] = {14};
  gen_press_request r5 = {.batch = 1, .context = c1, .n_context = n1};
  CHECK(gen_pressed(mm, &r5, &cfg, &res, &err) == 0);
  gen_press_result_free(&res);
  cfg.max_new_tokens = 7;
  CHECK(gen_pressed(mm, &r5, &cfg, &res, &err) == -1);
  CHECK_CONTAINS(err.msg, "beyond the model's sliding window of 20");
  cfg.max_new_tokens = 4;
  llama_free(mm);
  // The attend callback cannot go with want_attn.
  s = pt_scope_begin();
  llama_inputs in = {.ids = pt_zeros(PT_SHAPE(1, 2), PT_I64, PT_CPU), .attend = ref_attend, .want_attn = 1};
  llama_outputs o;
  CHECK(llama_forward(m, &in, &o, &err) == -1);
  CHECK_CONTAINS(err.msg, "attend callback");
  pt_scope_end(s);
}

// Real weights: stories260K (5 layers, 8 heads, 4 KV heads, head_dim 8), converted from the assets.
// Its own story (greedy from BOS) is the context; keep-all equals generate(), and a pressed batch of
// 3 rows (B·Hkv = 12 > head_dim: the segment path; alone: the GEMM path) gives each row its own
// tokens and the masked reference's.
static void test_stories(void) {
  const char *ckpt_rel = check_asset("models/stories260K.bin");
  if (!ckpt_rel) {
    printf("skipped the stories260K part: stories260K is not in the assets\n");
    return;
  }
  char ckpt[4096], tokbin[4096];
  snprintf(ckpt, sizeof ckpt, "%s", ckpt_rel);
  const char *tb = check_asset("models/tok512.bin");
  if (!tb) {
    printf("skipped the stories260K part: tok512 is not in the assets\n");
    return;
  }
  snprintf(tokbin, sizeof tokbin, "%s", tb);
  char dir[] = "/tmp/pith-test-kv-cache-XXXXXX", model_dir[4200];
  if (!mkdtemp(dir)) {
    printf("skipped the stories260K part: cannot make a temporary folder under /tmp\n");
    return;
  }
  snprintf(model_dir, sizeof model_dir, "%s/stories260K", dir);
  pith_err err = {{0}};
  CHECK_MSG(llama2c_convert(ckpt, tokbin, model_dir, 0, &err) == 0, "%s", err.msg);
  llama_model *m = hf_model_load(model_dir, PT_F32, PT_CPU, &err);
  CHECK_MSG(m != NULL, "%s", err.msg);
  if (!m) {
    pith_remove_tree(dir);
    return;
  }
  gen_config cfg = gen_config_default();
  cfg.max_new_tokens = 90;
  const int32_t bos[1] = {1};
  int32_t *story = NULL;
  int n_story = 0;
  CHECK_MSG(generate(m, NULL, NULL, NULL, bos, 1, &cfg, NULL, NULL, &story, &n_story, &err) == 0, "%s", err.msg);
  CHECK(n_story == 90);
  int32_t text[91];
  text[0] = 1;
  memcpy(text + 1, story, sizeof(int32_t) * 90);
  free(story);
  cfg.max_new_tokens = 40;  // >= 32: generate_pressed's transposed LM head
  // keep-all against generate() on the first 70 tokens (60 context + 10 question).
  int32_t *want = NULL;
  int n_want = 0;
  CHECK(generate(m, NULL, NULL, NULL, text, 70, &cfg, NULL, NULL, &want, &n_want, &err) == 0);
  const int32_t *c0[1] = {text}, *q0[1] = {text + 60};
  int nc0[1] = {60}, nq0[1] = {10};
  gen_press_request r0 = {.batch = 1, .context = c0, .n_context = nc0, .question = q0, .n_question = nq0};
  gen_press_result res;
  CHECK_MSG(gen_pressed(m, &r0, &cfg, &res, &err) == 0, "%s", err.msg);
  CHECK_MSG(same_ids(res.ids[0], res.n[0], want, n_want), "stories260K: keep-all differs from generate()");
  gen_press_result_free(&res);
  free(want);
  // Three rows, pressed to about 40%.
  const int32_t *ctxs[3] = {text, text + 5, text + 20}, *qs[3] = {text + 60, text + 50, text + 70};
  int nc[3] = {60, 45, 50}, nq[3] = {10, 0, 6};
  hash_press hp = {.pct = 40};
  gen_press_request r = {.batch = 3, .context = ctxs, .n_context = nc, .question = qs, .n_question = nq,
                         .select = hash_select, .select_ctx = &hp};
  gen_press_result all;
  CHECK_MSG(gen_pressed(m, &r, &cfg, &all, &err) == 0, "%s", err.msg);
  int differs_from_full = 0;
  for (int b = 0; b < 3; b++) {
    gen_press_request one = r;
    one.batch = 1, one.context = &ctxs[b], one.n_context = &nc[b], one.question = &qs[b], one.n_question = &nq[b];
    CHECK_MSG(gen_pressed(m, &one, &cfg, &res, &err) == 0, "%s", err.msg);
    CHECK_MSG(same_ids(all.ids[b], all.n[b], res.ids[0], res.n[0]), "stories260K: row %d differs in the batch", b);
    int32_t ref[64], full[64];
    ref_generate(m, NULL, NULL, &hp, ctxs[b], nc[b], qs[b], nq[b], res.n[0], ref);
    CHECK_MSG(same_ids(res.ids[0], res.n[0], ref, res.n[0]), "stories260K: row %d differs from the masked reference", b);
    ref_generate(m, NULL, NULL, NULL, ctxs[b], nc[b], qs[b], nq[b], res.n[0], full);
    differs_from_full += !same_ids(full, res.n[0], ref, res.n[0]);
    gen_press_result_free(&res);
  }
  CHECK_MSG(differs_from_full > 0, "stories260K: the press changed no row: the test would be weak");
  printf("stories260K: 3 rows pressed to 40%%: kept %lld entries, %lld bytes vs %lld dense; %d of 3 rows changed\n",
         (long long)all.kv_kept, (long long)all.kv_bytes, (long long)all.kv_dense_bytes, differs_from_full);
  gen_press_result_free(&all);
  llama_free(m);
  pith_remove_tree(dir);
}

int main(void) {
  pt_set_num_threads(1);
  size_t live0 = pt_live_handles();
  llama_model *m = small_model(small_config(), 1, PT_F32);
  test_attention(m, KV_ATTN_AUTO, 0, 0);
  test_attention(m, KV_ATTN_SEGMENT, 0, 0);
  test_attention(m, KV_ATTN_GEMM, 0, 1);
  test_attention(m, KV_ATTN_AUTO, 1, 0);
  test_attention(m, KV_ATTN_AUTO, 1, 1);
  test_attention(m, KV_ATTN_GEMM, 1, 0);
  test_attention(m, KV_ATTN_AUTO, 2, 0);
  test_attention(m, KV_ATTN_AUTO, 2, 1);
  test_attention(m, KV_ATTN_SEGMENT, 2, 0);
  test_generation_vs_reference(m, 50, NEW);
  test_generation_vs_reference(m, 25, NEW);
  test_generation_vs_reference(m, 50, 40);
  test_keep_all(m, NULL, NULL, "no prefix");
  test_batch(m, 100);
  test_batch(m, 50);
  test_prefix(m);
  test_errors(m);
  test_presses(m);
  llama_free(m);
  test_bf16();
  test_stories();
  CHECK_MSG(pt_live_handles() == live0, "%zu handles leaked", pt_live_handles() - live0);
  return check_done("test_kv_cache");
}
