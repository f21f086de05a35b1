#include "llama.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lora.h"

const char *const LLAMA_PROJ_NAMES[LLAMA_N_PROJ] = {"q_proj", "k_proj", "v_proj", "o_proj",
                                                     "gate_proj", "up_proj", "down_proj"};

// Rotary frequencies 1/theta^(2i/hd), with LLaMA 3.1's scaling of the low frequencies.
static pt_tensor *rope_inv_freq(const llama_config *c) {
  int half = c->head_dim / 2;
  float *f = malloc(sizeof(float) * half);
  for (int i = 0; i < half; i++) {
    double freq = 1.0 / pow(c->rope_theta, 2.0 * i / c->head_dim);
    if (c->rope_llama3) {
      double wavelen = 2 * M_PI / freq;
      double low_wavelen = c->rope_original_max_pos / c->rope_low_freq_factor;
      double high_wavelen = c->rope_original_max_pos / c->rope_high_freq_factor;
      if (wavelen > low_wavelen) {
        freq /= c->rope_factor;
      } else if (wavelen >= high_wavelen) {
        double smooth = (c->rope_original_max_pos / wavelen - c->rope_low_freq_factor) /
                        (c->rope_high_freq_factor - c->rope_low_freq_factor);
        freq = (1 - smooth) * freq / c->rope_factor + smooth * freq;
      }
    }
    f[i] = (float)freq;
  }
  pt_tensor *t = pt_keep(pt_from_data(f, PT_F32, PT_SHAPE(half), PT_CPU));
  free(f);
  return t;
}

int llama_visit_weights(llama_model *m, llama_weight_fn fn, void *ctx) {
  const llama_config *c = &m->cfg;
  int64_t D = c->dim, F = c->hidden_dim, q_out = (int64_t)c->n_heads * c->head_dim,
          kv_out = (int64_t)c->n_kv_heads * c->head_dim;
  char name[256];
  if (fn("model.embed_tokens.weight", &m->embed, PT_SHAPE(c->vocab_size, D), ctx)) return -1;
  for (int l = 0; l < c->n_layers; l++) {
    llama_layer *L = &m->layers[l];
    struct {
      const char *suffix;
      pt_tensor **slot;
      pt_shape shape;
      int present;
    } w[] = {
        {"input_layernorm.weight", &L->attn_norm, PT_SHAPE(D), 1},
        {"self_attn.q_proj.weight", &L->wq, PT_SHAPE(q_out, D), 1},
        {"self_attn.q_proj.bias", &L->bq, PT_SHAPE(q_out), c->qkv_bias},
        {"self_attn.k_proj.weight", &L->wk, PT_SHAPE(kv_out, D), 1},
        {"self_attn.k_proj.bias", &L->bk, PT_SHAPE(kv_out), c->qkv_bias},
        {"self_attn.v_proj.weight", &L->wv, PT_SHAPE(kv_out, D), 1},
        {"self_attn.v_proj.bias", &L->bv, PT_SHAPE(kv_out), c->qkv_bias},
        {"self_attn.o_proj.weight", &L->wo, PT_SHAPE(D, q_out), 1},
        {"post_attention_layernorm.weight", &L->mlp_norm, PT_SHAPE(D), 1},
        {"mlp.gate_proj.weight", &L->w_gate, PT_SHAPE(F, D), 1},
        {"mlp.up_proj.weight", &L->w_up, PT_SHAPE(F, D), 1},
        {"mlp.down_proj.weight", &L->w_down, PT_SHAPE(D, F), 1},
    };
    for (size_t i = 0; i < sizeof w / sizeof w[0]; i++) {
      if (!w[i].present) continue;
      snprintf(name, sizeof name, "model.layers.%d.%s", l, w[i].suffix);
      if (fn(name, w[i].slot, w[i].shape, ctx)) return -1;
    }
  }
  if (fn("model.norm.weight", &m->final_norm, PT_SHAPE(D), ctx)) return -1;
  if (!c->tie_embeddings && fn("lm_head.weight", &m->lm_head, PT_SHAPE(c->vocab_size, D), ctx)) return -1;
  return 0;
}

llama_model *llama_alloc(const llama_config *cfg, pt_dtype dtype, pt_device dev, pith_err *err) {
  llama_config c = *cfg;
  if (llama_config_validate(&c, err)) return NULL;
  if (dtype != PT_F32 && dtype != PT_BF16 && dtype != PT_F16) {
    pith_fail(err, "model: compute dtype must be f32, bf16 or f16, not %s", pt_dtype_name(dtype));
    return NULL;
  }
  llama_model *m = calloc(1, sizeof *m);
  m->cfg = c;
  m->dtype = dtype;
  m->device = dev;
  m->layers = calloc((size_t)c.n_layers, sizeof *m->layers);
  m->inv_freq = rope_inv_freq(&c);
  if (dev != PT_CPU) {
    pt_tensor *moved = pt_keep(pt_to_device(m->inv_freq, dev));
    pt_free(m->inv_freq);
    m->inv_freq = moved;
  }
  if (!m->inv_freq) {
    pt_fail(err, "model");
    llama_free(m);
    return NULL;
  }
  return m;
}

typedef struct {
  pt_dtype dtype;
  pt_device dev;
  pith_err *err;
} check_ctx;

static int check_weight(const char *name, pt_tensor **slot, pt_shape shape, void *vctx) {
  check_ctx *ctx = vctx;
  if (!*slot) return pith_fail(ctx->err, "model: weight %s is missing", name);
  pt_shape got = pt_shape_of(*slot);
  int same = got.ndim == shape.ndim;
  for (int i = 0; same && i < shape.ndim; i++) same = got.d[i] == shape.d[i];
  if (!same) {
    char desc[128];
    return pith_fail(ctx->err, "model: weight %s is %s, want %d dims [%lld...]", name,
                     pt_describe(*slot, desc, sizeof desc), shape.ndim, (long long)shape.d[0]);
  }
  if (pt_dtype_of(*slot) != ctx->dtype || pt_device_of(*slot) != ctx->dev)
    return pith_fail(ctx->err, "model: weight %s has the wrong dtype or device", name);
  return 0;
}

int llama_check_weights(const llama_model *m, pith_err *err) {
  check_ctx ctx = {m->dtype, m->device, err};
  if (llama_visit_weights((llama_model *)m, check_weight, &ctx)) return -1;
  if (m->cfg.tie_embeddings) ((llama_model *)m)->lm_head = m->embed;
  return 0;
}

typedef struct {
  pt_gen *gen;
  pt_dtype dtype;
  pt_device dev;
} random_ctx;

static int random_weight(const char *name, pt_tensor **slot, pt_shape shape, void *vctx) {
  random_ctx *ctx = vctx;
  pt_scope s = pt_scope_begin();
  int is_norm = strstr(name, "norm") != NULL;
  // Norm weights near 1 and biases small but nonzero, so that a parity test sees them.
  // Drawn where the model lives: an 8B model's 8e9 draws take long on a CPU.
  pt_tensor *t = pt_mul_scalar(pt_randn(shape, PT_F32, ctx->dev, ctx->gen), 0.02);
  if (is_norm) t = pt_add_scalar(t, 1.0);
  t = pt_to_dtype(t, ctx->dtype);
  *slot = pt_keep(pt_scope_return(s, t));
  return t ? 0 : -1;
}

llama_model *llama_new_random(const llama_config *cfg, uint64_t seed, pt_dtype dtype, pt_device dev, pith_err *err) {
  llama_model *m = llama_alloc(cfg, dtype, dev, err);
  if (!m) return NULL;
  random_ctx ctx = {pt_gen_new(seed, dev), dtype, dev};
  int rc = llama_visit_weights(m, random_weight, &ctx);
  pt_gen_free(ctx.gen);
  if (rc || llama_check_weights(m, err)) {
    if (rc) pt_fail(err, "model: random init");
    llama_free(m);
    return NULL;
  }
  return m;
}

static int free_weight(const char *name, pt_tensor **slot, pt_shape shape, void *ctx) {
  pt_free(*slot);
  *slot = NULL;
  return 0;
}

void llama_free(llama_model *m) {
  if (!m) return;
  if (m->cfg.tie_embeddings) m->lm_head = NULL;
  llama_visit_weights(m, free_weight, NULL);
  pt_free(m->inv_freq);
  free(m->layers);
  free(m);
}

static int count_weight(const char *name, pt_tensor **slot, pt_shape shape, void *ctx) {
  *(int64_t *)ctx += pt_numel(*slot);
  return 0;
}

int64_t llama_param_count(const llama_model *m) {
  int64_t n = 0;
  llama_visit_weights((llama_model *)m, count_weight, &n);
  return n;
}

// ---------------------------------------------------------------- forward

int llama_rope_tables(const llama_model *m, const pt_tensor *positions, pt_tensor **cos_out, pt_tensor **sin_out) {
  int64_t B = pt_size(positions, 0), T = pt_size(positions, 1), half = m->cfg.head_dim / 2;
  // angles (B, T, hd/2) in f32, as Hugging Face computes them; then both halves (B, T, hd).
  pt_tensor *pos = pt_view(pt_to_dtype(positions, PT_F32), PT_SHAPE(B, T, 1));
  pt_tensor *angles = pt_mul(pos, pt_view(m->inv_freq, PT_SHAPE(1, 1, half)));
  pt_tensor *both[2] = {angles, angles};
  pt_tensor *full = pt_cat(both, 2, -1);
  *cos_out = pt_cos(full);
  *sin_out = pt_sin(full);
  return *cos_out && *sin_out ? 0 : -1;
}

// The tables (B, 1, n, hd) in the model's dtype that move keys by `shift` positions.
static int shift_tables(const llama_model *m, int64_t B, int64_t n, int64_t shift, pt_tensor **cos, pt_tensor **sin) {
  if (llama_rope_tables(m, pt_full(PT_SHAPE(B, n), (double)shift, PT_I64, m->device), cos, sin)) return -1;
  *cos = pt_unsqueeze(pt_to_dtype(*cos, m->dtype), 1);
  *sin = pt_unsqueeze(pt_to_dtype(*sin, m->dtype), 1);
  return *cos && *sin ? 0 : -1;
}

pt_tensor *llama_shift_keys(const llama_model *m, const pt_tensor *k, int64_t shift) {
  pt_tensor *cos, *sin;
  if (pt_ndim(k) != 4) {
    pt_error_set("llama_shift_keys: keys must be (B, Hkv, n, hd)");
    return NULL;
  }
  return shift_tables(m, pt_size(k, 0), pt_size(k, 2), shift, &cos, &sin) ? NULL : pt_rope(k, cos, sin);
}

static pt_tensor *project(const llama_model *m, const llama_inputs *in, int l, llama_proj p, pt_tensor *x) {
  const llama_layer *L = &m->layers[l];
  pt_tensor *w[LLAMA_N_PROJ] = {L->wq, L->wk, L->wv, L->wo, L->w_gate, L->w_up, L->w_down};
  pt_tensor *b = p == LLAMA_PROJ_Q ? L->bq : p == LLAMA_PROJ_K ? L->bk : p == LLAMA_PROJ_V ? L->bv : NULL;
  pt_tensor *y = pt_linear(x, w[p], b);
  return in->lora ? lora_add(in->lora, l, p, x, y, in->dropout_gen) : y;
}

// The attention mask (B, 1, T, P+T) bool, or NULL when plain causal attention is enough.
static pt_tensor *attention_mask(const llama_model *m, const llama_inputs *in, int64_t B, int64_t T, int64_t P) {
  int window = m->cfg.sliding_window;
  int windowed = window > 0 && P + T > window;
  if (!in->mask && !in->prefix_mask && !windowed) return NULL;
  pt_device dev = m->device;
  pt_tensor *keys_ok = in->mask ? pt_view(pt_to_dtype(in->mask, PT_BOOL), PT_SHAPE(B, 1, 1, T))
                                : pt_ones(PT_SHAPE(B, 1, 1, T), PT_BOOL, dev);
  pt_tensor *causal = pt_view(pt_tril(pt_ones(PT_SHAPE(T, T), PT_BOOL, dev), 0), PT_SHAPE(1, 1, T, T));
  pt_tensor *seq = pt_mul(causal, keys_ok);  // bool and
  // A query always sees itself, so that a padded row is never all masked (its output is unused).
  pt_tensor *eye = pt_view(pt_eq(pt_tril(pt_ones(PT_SHAPE(T, T), PT_BOOL, dev), 0),
                                 pt_triu(pt_ones(PT_SHAPE(T, T), PT_BOOL, dev), 0)),
                           PT_SHAPE(1, 1, T, T));
  seq = pt_maximum(seq, eye);  // bool or
  pt_tensor *mask = pt_expand(seq, PT_SHAPE(B, 1, T, T));
  if (P > 0) {
    pt_tensor *pre = in->prefix_mask ? pt_view(pt_to_dtype(in->prefix_mask, PT_BOOL), PT_SHAPE(B, 1, 1, P))
                                     : pt_ones(PT_SHAPE(B, 1, 1, P), PT_BOOL, dev);
    pt_tensor *parts[2] = {pt_expand(pre, PT_SHAPE(B, 1, T, P)), mask};
    mask = pt_cat(parts, 2, 3);
  }
  if (windowed) {  // query i (at P+i) sees key j only when j > P + i - window
    pt_tensor *band = pt_triu(pt_ones(PT_SHAPE(T, P + T), PT_BOOL, dev), P - window + 1);
    mask = pt_mul(mask, pt_view(band, PT_SHAPE(1, 1, T, P + T)));
  }
  return mask;
}

// Rows `select` (B, K) of x along dim (x is (B, ..., T, ...)).
static pt_tensor *select_positions(pt_tensor *x, const pt_tensor *select, int dim) {
  if (!select) return x;
  pt_shape s = pt_shape_of(x), idx_view = s;
  int64_t K = pt_size(select, 1);
  for (int i = 0; i < s.ndim; i++) idx_view.d[i] = 1;
  idx_view.d[0] = s.d[0];
  idx_view.d[dim] = K;
  pt_shape target = s;
  target.d[dim] = K;
  pt_tensor *idx = pt_expand(pt_view(select, idx_view), target);
  return pt_gather(x, dim, idx);
}

static int check_inputs(const llama_model *m, const llama_inputs *in, pith_err *err) {
  if (!in->ids == !in->embeds) return pith_fail(err, "llama_forward: give exactly one of ids and embeds");
  const pt_tensor *x = in->ids ? in->ids : in->embeds;
  if (pt_ndim(x) != (in->ids ? 2 : 3)) return pith_fail(err, "llama_forward: ids must be (B, T), embeds (B, T, dim)");
  if (in->embeds && pt_size(in->embeds, 2) != m->cfg.dim)
    return pith_fail(err, "llama_forward: embeds have %lld features, the model %d", (long long)pt_size(in->embeds, 2), m->cfg.dim);
  if (!in->prefix_k != !in->prefix_v) return pith_fail(err, "llama_forward: prefix_k and prefix_v go together");
  if (in->prefix_k) {
    for (int l = 0; l < m->cfg.n_layers; l++) {
      const pt_tensor *k = in->prefix_k[l], *v = in->prefix_v[l];
      if (pt_ndim(k) != 4 || pt_ndim(v) != 4 || pt_size(k, 0) != pt_size(x, 0) || pt_size(k, 1) != m->cfg.n_kv_heads ||
          pt_size(k, 3) != m->cfg.head_dim || pt_size(k, 2) != pt_size(in->prefix_k[0], 2) ||
          pt_size(v, 2) != pt_size(k, 2))
        return pith_fail(err, "llama_forward: prefix K/V of layer %d must be (B, %d, P, %d)", l, m->cfg.n_kv_heads,
                         m->cfg.head_dim);
    }
  }
  if ((in->want_kv || in->want_hidden) && in->select && pt_ndim(in->select) != 2)
    return pith_fail(err, "llama_forward: select must be (B, K)");
  if (in->kv_with_prefix && in->select)
    return pith_fail(err, "llama_forward: kv_with_prefix returns every position's K/V (no select)");
  if (in->want_attn && (in->attn_layer < 0 || in->attn_layer >= m->cfg.n_layers))
    return pith_fail(err, "llama_forward: attention of layer %d asked, the model has layers 0..%d", in->attn_layer,
                     m->cfg.n_layers - 1);
  if (in->want_attn && in->attend)
    return pith_fail(err, "llama_forward: want_attn reads the dense attention; it cannot go with an attend callback");
  if (in->want_attn && (in->attn_window < 0 || in->attn_window > pt_size(x, 1)))
    return pith_fail(err, "llama_forward: an attention window of %d queries over %lld tokens", in->attn_window,
                     (long long)pt_size(x, 1));
  return 0;
}

pt_tensor *llama_attention_probs(const pt_tensor *q, const pt_tensor *k, const pt_tensor *mask, int64_t W) {
  int64_t B = pt_size(q, 0), H = pt_size(q, 1), T = pt_size(q, 2), hd = pt_size(q, 3);
  int64_t Hkv = pt_size(k, 1), S = pt_size(k, 2);
  pt_tensor *qw = pt_to_dtype(pt_slice(q, 2, T - W, T), PT_F32);
  pt_tensor *kf = pt_to_dtype(k, PT_F32);
  if (Hkv != H)  // grouped queries: head h reads kv head h / (H / Hkv)
    kf = pt_reshape(pt_expand(pt_unsqueeze(kf, 2), PT_SHAPE(B, Hkv, H / Hkv, S, hd)), PT_SHAPE(B, H, S, hd));
  pt_tensor *scores = pt_mul_scalar(pt_matmul(qw, pt_transpose(kf, 2, 3)), 1.0 / sqrt((double)hd));
  // query i of the window sits at P + T - W + i and sees keys j <= that position
  pt_tensor *visible = mask ? pt_slice(mask, 2, T - W, T)
                            : pt_view(pt_tril(pt_ones(PT_SHAPE(W, S), PT_BOOL, pt_device_of(q)), S - W),
                                      PT_SHAPE(1, 1, W, S));
  scores = pt_masked_fill(scores, pt_eq_scalar(visible, 0), -INFINITY);
  return pt_softmax(scores, -1);
}

// A layer callback (on_layer, attend) failed inside the layer's scope s: the callee's error stands,
// or the shim's when the callee left one unreported; nothing this call made is kept.
static int callback_failed(pt_scope s, llama_outputs *out, pith_err *err) {
  pt_scope_end(s);
  if (!pt_ok()) pt_fail(err, "llama_forward");
  llama_outputs_free(out);
  return -1;
}

// One decoder layer's inputs: x (B, T, dim), the rotary tables, the mask (or NULL), the positions
// (for the view), the layer's prefix K/V (or NULL) and the tables that shift its keys (or NULL).
typedef struct {
  pt_tensor *x, *cos, *sin, *mask, *positions, *prefix_k, *prefix_v, *prefix_cos, *prefix_sin;
  int64_t P;
} layer_in;

// Its results: the next x, the K/V of the selected positions (want_kv), the attention probabilities
// (want_attn at this layer); stop: the forward ends here (attention only, or only the layer calls).
typedef struct {
  pt_tensor *x, *k, *v, *probs;
  int stop;
} layer_out;

// One layer, with the hooks of `in` (on_layer, attend, want_attn). -1 when a hook failed (its error
// in err); a failed op leaves the shim's error pending for the caller.
static int layer_forward(const llama_model *m, const llama_inputs *in, int l, const layer_in *li, int attn_only,
                         int layers_only, layer_out *o, pith_err *err) {
  const llama_config *c = &m->cfg;
  const llama_layer *L = &m->layers[l];
  int64_t H = c->n_heads, Hkv = c->n_kv_heads, hd = c->head_dim;
  int64_t B = pt_size(li->x, 0), T = pt_size(li->x, 1);
  memset(o, 0, sizeof *o);
  pt_tensor *x = li->x;
  pt_tensor *h = pt_rms_norm(x, L->attn_norm, c->norm_eps);
  pt_tensor *q = pt_transpose(pt_view(project(m, in, l, LLAMA_PROJ_Q, h), PT_SHAPE(B, T, H, hd)), 1, 2);
  pt_tensor *k = pt_transpose(pt_view(project(m, in, l, LLAMA_PROJ_K, h), PT_SHAPE(B, T, Hkv, hd)), 1, 2);
  pt_tensor *v = pt_transpose(pt_view(project(m, in, l, LLAMA_PROJ_V, h), PT_SHAPE(B, T, Hkv, hd)), 1, 2);
  pt_tensor *q_prerope = q;
  q = pt_rope(q, li->cos, li->sin);
  pt_tensor *text_k, *text_v = v;
  if (li->prefix_k) {  // the prefix enters before the text, its keys shifted on the way
    k = pt_kv_inject(li->prefix_k, k, li->prefix_cos, li->prefix_sin, li->cos, li->sin);
    v = pt_kv_inject(li->prefix_v, v, NULL, NULL, NULL, NULL);
    text_k = pt_slice(k, 2, li->P, li->P + T);
  } else {
    k = text_k = pt_rope(k, li->cos, li->sin);
  }
  if (in->want_kv && in->kv_with_prefix) {
    o->k = k, o->v = v;
  } else if (in->want_kv) {
    o->k = select_positions(text_k, in->select, 2);
    o->v = select_positions(text_v, in->select, 2);
  }
  llama_layer_view view = {.layer = l, .h = h, .q_prerope = q_prerope, .q = q, .k = k, .v = v, .mask = li->mask,
                           .positions = li->positions, .prefix_len = li->P};
  if (in->on_layer && (!pt_ok() || in->on_layer(&view, in->on_layer_ctx, err))) return -1;
  if (layers_only && l == c->n_layers - 1) return o->stop = 1, 0;
  if (in->want_attn && l == in->attn_layer) {
    o->probs = llama_attention_probs(q, k, li->mask, in->attn_window > 0 ? in->attn_window : T);
    if (attn_only) return o->stop = 1, 0;
  }
  pt_tensor *a;  // (B, H, T, hd)
  if (in->attend) {
    a = pt_ok() ? in->attend(&view, in->attend_ctx, err) : NULL;
    if (!a) return -1;
  } else {
    a = pt_attention(q, k, v, li->mask, li->mask == NULL, 0);
  }
  a = pt_reshape(pt_transpose(a, 1, 2), PT_SHAPE(B, T, H * hd));
  h = pt_add_rms_norm(x, project(m, in, l, LLAMA_PROJ_O, a), L->mlp_norm, c->norm_eps, &x);
  pt_tensor *gate = project(m, in, l, LLAMA_PROJ_GATE, h);  // before up: LoRA dropout draws in this order
  pt_tensor *act = pt_swiglu(gate, project(m, in, l, LLAMA_PROJ_UP, h));
  o->x = pt_add(x, project(m, in, l, LLAMA_PROJ_DOWN, act));
  return 0;
}

// A checkpointed layer (llama_model.gradient_checkpointing): what pt_checkpoint's second run needs,
// by value, since it runs in the backward pass, long after llama_forward returned.
typedef struct {
  const llama_model *m;
  const lora_adapter *lora;
  pt_gen *dropout_gen;
  int layer, has_mask, has_prefix, has_shift, has_select, want_kv, kv_with_prefix;
} layer_ckpt;

// pt_checkpoint's fn: in = x, cos, sin, [mask], [prefix k, prefix v], [prefix cos, prefix sin],
// [select]; out = x, [k, v].
static int layer_ckpt_fn(const void *ctx, pt_tensor *const *in, int n_in, pt_tensor **out, int n_out) {
  (void)n_in;
  const layer_ckpt *c = ctx;
  int i = 3;
  layer_in li = {.x = in[0], .cos = in[1], .sin = in[2]};
  if (c->has_mask) li.mask = in[i++];
  if (c->has_prefix) li.prefix_k = in[i++], li.prefix_v = in[i++], li.P = pt_size(li.prefix_k, 2);
  if (c->has_shift) li.prefix_cos = in[i++], li.prefix_sin = in[i++];
  // What the layer reads of llama_inputs: the adapter, its dropout, the K/V to return. No hooks.
  llama_inputs lin = {.lora = c->lora, .dropout_gen = c->dropout_gen, .want_kv = c->want_kv,
                      .kv_with_prefix = c->kv_with_prefix, .select = c->has_select ? in[i] : NULL};
  layer_out o;
  pith_err err;
  layer_forward(c->m, &lin, c->layer, &li, 0, 0, &o, &err);  // without hooks only ops can fail
  out[0] = o.x;
  if (n_out == 3) out[1] = o.k, out[2] = o.v;  // want_kv
  return pt_ok() ? 0 : -1;
}

static int layer_checkpointed(const llama_model *m, const llama_inputs *in, int l, const layer_in *li, layer_out *o) {
  layer_ckpt c = {.m = m, .lora = in->lora, .dropout_gen = in->dropout_gen, .layer = l, .has_mask = li->mask != NULL,
                  .has_prefix = li->prefix_k != NULL, .has_shift = li->prefix_cos != NULL,
                  .has_select = in->want_kv && in->select, .want_kv = in->want_kv,
                  .kv_with_prefix = in->kv_with_prefix};
  pt_tensor *args[9] = {li->x, li->cos, li->sin}, *res[3] = {0};
  int n = 3;
  if (c.has_mask) args[n++] = li->mask;
  if (c.has_prefix) args[n++] = li->prefix_k, args[n++] = li->prefix_v;
  if (c.has_shift) args[n++] = li->prefix_cos, args[n++] = li->prefix_sin;
  if (c.has_select) args[n++] = (pt_tensor *)in->select;
  memset(o, 0, sizeof *o);
  if (pt_checkpoint(layer_ckpt_fn, &c, sizeof c, args, n, in->dropout_gen, res, in->want_kv ? 3 : 1)) return -1;
  o->x = res[0], o->k = res[1], o->v = res[2];
  return 0;
}

int llama_forward(const llama_model *m, const llama_inputs *in, llama_outputs *out, pith_err *err) {
  memset(out, 0, sizeof *out);
  if (check_inputs(m, in, err)) return -1;
  const llama_config *c = &m->cfg;
  pt_tensor *x = in->embeds ? (pt_tensor *)in->embeds : pt_embedding(m->embed, in->ids);  // (B, T, dim)
  int64_t B = pt_size(x, 0), T = pt_size(x, 1);
  int64_t P = in->prefix_k ? pt_size(in->prefix_k[0], 2) : 0;

  // Positions continue after the prefix by default, as with Hugging Face's past_key_values.
  pt_tensor *positions = in->positions ? (pt_tensor *)in->positions
                                       : pt_expand(pt_view(pt_arange(P, P + T, PT_I64, m->device), PT_SHAPE(1, T)),
                                                   PT_SHAPE(B, T));
  pt_tensor *cos, *sin;
  llama_rope_tables(m, positions, &cos, &sin);
  cos = pt_unsqueeze(pt_to_dtype(cos, m->dtype), 1);  // (B, 1, T, hd)
  sin = pt_unsqueeze(pt_to_dtype(sin, m->dtype), 1);
  pt_tensor *mask = attention_mask(m, in, B, T, P);
  pt_tensor *prefix_cos = NULL, *prefix_sin = NULL;
  if (P > 0 && in->prefix_shift && shift_tables(m, B, P, in->prefix_shift, &prefix_cos, &prefix_sin))
    return pt_fail(err, "llama_forward: prefix shift");

  if (in->want_kv) {
    out->k = calloc((size_t)c->n_layers, sizeof *out->k);
    out->v = calloc((size_t)c->n_layers, sizeof *out->v);
  }
  // Only attention probabilities wanted: nothing after that layer is needed.
  int attn_only = in->want_attn && in->no_logits && !in->want_kv && !in->want_hidden;
  // Nothing wanted but the on_layer calls (a press filling its cache from the layers' K/V): the last
  // layer's attention (attend included) and MLP feed nothing, so they are skipped.
  int layers_only = in->on_layer && in->no_logits && !in->want_kv && !in->want_hidden && !in->want_attn;
  // Checkpointing is for training: with recording on and none of the hooks, which read a layer's insides.
  int checkpointed = m->gradient_checkpointing && pt_grad_enabled() && !in->on_layer && !in->attend && !in->want_attn;
  for (int l = 0; l < c->n_layers && x; l++) {
    pt_scope s = pt_scope_begin();
    layer_in li = {.x = x, .cos = cos, .sin = sin, .mask = mask, .positions = positions,
                   .prefix_k = P > 0 ? in->prefix_k[l] : NULL, .prefix_v = P > 0 ? in->prefix_v[l] : NULL,
                   .prefix_cos = prefix_cos, .prefix_sin = prefix_sin, .P = P};
    layer_out o;
    if (checkpointed && layer_checkpointed(m, in, l, &li, &o)) {
      pt_fail(err, "llama_forward: layer %d", l);  // before the scope ends, which would drop the error
      pt_scope_end(s);
      llama_outputs_free(out);
      return -1;
    }
    if (!checkpointed && layer_forward(m, in, l, &li, attn_only, layers_only, &o, err))
      return callback_failed(s, out, err);
    if (o.stop) {
      if (o.probs) out->attn = pt_scope_return(s, o.probs);
      else pt_scope_end(s);
      x = NULL;
      break;
    }
    // Free the layer's intermediates (autograd keeps what backward needs); keep x and the K/V.
    x = o.x;
    pt_tensor *keep[4] = {x, o.k, o.v, o.probs};  // NULLs are skipped
    pt_scope_return_n(s, keep, 4);
    if (o.probs) out->attn = o.probs;
    if (in->want_kv) {
      out->k[l] = o.k;
      out->v[l] = o.v;
    }
  }
  if (attn_only || layers_only) x = NULL;  // stopped early: no final states
  if (x) x = pt_rms_norm(x, m->final_norm, c->norm_eps);
  if (in->want_hidden) out->hidden = select_positions(x, in->select, 1);
  if (!in->no_logits) out->logits = pt_linear(x, m->lm_head, NULL);
  if (!pt_ok()) {
    pt_fail(err, "llama_forward");
    llama_outputs_free(out);
    return -1;
  }
  return 0;
}

pt_tensor *llama_lm_loss(const llama_model *m, const pt_tensor *hidden, int64_t first, const pt_tensor *targets,
                         const pt_tensor *weights, int64_t ignore_index) {
  int64_t T = pt_size(hidden, 1);
  pt_tensor *t = pt_reshape(targets, PT_SHAPE(-1));
  if (m->loss_chunk_rows > 0) {
    pt_tensor *h = pt_reshape(pt_slice(hidden, 1, first, T), PT_SHAPE(-1, m->cfg.dim));
    return pt_linear_cross_entropy(h, m->lm_head, t, weights, ignore_index, m->loss_chunk_rows);
  }
  // The logits of every position, then the scored ones: what the trainers computed from llama_forward's.
  pt_tensor *logits = pt_slice(pt_linear(hidden, m->lm_head, NULL), 1, first, T);
  logits = pt_reshape(pt_to_dtype(logits, PT_F32), PT_SHAPE(-1, m->cfg.vocab_size));
  if (!weights) return pt_cross_entropy(logits, t, ignore_index, PT_REDUCE_MEAN);
  return pt_div(pt_sum(pt_mul(pt_cross_entropy(logits, t, ignore_index, PT_REDUCE_NONE), weights)), pt_sum(weights));
}

void llama_outputs_free(llama_outputs *out) {
  free(out->k);
  free(out->v);
  out->k = out->v = NULL;
}
