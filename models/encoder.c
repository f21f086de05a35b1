#include "encoder.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int encoder_visit_weights(encoder_model *m, encoder_weight_fn fn, void *ctx) {
  const encoder_config *c = &m->cfg;
  const char *pre = encoder_weight_prefix(c->arch);
  int64_t D = c->dim, F = c->hidden_dim;
  char name[256];
  struct {
    const char *suffix;
    pt_tensor **slot;
    pt_shape shape;
  } emb[] = {
      {"word_embeddings.weight", &m->word_emb, PT_SHAPE(c->vocab_size, D)},
      {"position_embeddings.weight", &m->pos_emb, PT_SHAPE(c->max_positions, D)},
      {"token_type_embeddings.weight", &m->type_emb, PT_SHAPE(c->type_vocab_size, D)},
      {"LayerNorm.weight", &m->emb_norm_w, PT_SHAPE(D)},
      {"LayerNorm.bias", &m->emb_norm_b, PT_SHAPE(D)},
  };
  for (size_t i = 0; i < sizeof emb / sizeof emb[0]; i++) {
    snprintf(name, sizeof name, "%s.embeddings.%s", pre, emb[i].suffix);
    if (fn(name, emb[i].slot, emb[i].shape, ctx)) return -1;
  }
  for (int l = 0; l < c->n_layers; l++) {
    encoder_layer *L = &m->layers[l];
    struct {
      const char *suffix;
      pt_tensor **slot;
      pt_shape shape;
    } w[] = {
        {"attention.self.query.weight", &L->wq, PT_SHAPE(D, D)},
        {"attention.self.query.bias", &L->bq, PT_SHAPE(D)},
        {"attention.self.key.weight", &L->wk, PT_SHAPE(D, D)},
        {"attention.self.key.bias", &L->bk, PT_SHAPE(D)},
        {"attention.self.value.weight", &L->wv, PT_SHAPE(D, D)},
        {"attention.self.value.bias", &L->bv, PT_SHAPE(D)},
        {"attention.output.dense.weight", &L->wo, PT_SHAPE(D, D)},
        {"attention.output.dense.bias", &L->bo, PT_SHAPE(D)},
        {"attention.output.LayerNorm.weight", &L->attn_norm_w, PT_SHAPE(D)},
        {"attention.output.LayerNorm.bias", &L->attn_norm_b, PT_SHAPE(D)},
        {"intermediate.dense.weight", &L->w_in, PT_SHAPE(F, D)},
        {"intermediate.dense.bias", &L->b_in, PT_SHAPE(F)},
        {"output.dense.weight", &L->w_out, PT_SHAPE(D, F)},
        {"output.dense.bias", &L->b_out, PT_SHAPE(D)},
        {"output.LayerNorm.weight", &L->out_norm_w, PT_SHAPE(D)},
        {"output.LayerNorm.bias", &L->out_norm_b, PT_SHAPE(D)},
    };
    for (size_t i = 0; i < sizeof w / sizeof w[0]; i++) {
      snprintf(name, sizeof name, "%s.encoder.layer.%d.%s", pre, l, w[i].suffix);
      if (fn(name, w[i].slot, w[i].shape, ctx)) return -1;
    }
  }
  // The pooler (bert.pooler.dense.*) is not part of a token classifier: it is never visited, so
  // loaders leave it in the file and savers do not write it (transformers builds these models
  // without one).
  if (fn("classifier.weight", &m->cls_w, PT_SHAPE(c->num_labels, D), ctx)) return -1;
  if (fn("classifier.bias", &m->cls_b, PT_SHAPE(c->num_labels), ctx)) return -1;
  return 0;
}

encoder_model *encoder_alloc(const encoder_config *cfg, pt_dtype dtype, pt_device dev, pith_err *err) {
  if (encoder_config_validate(cfg, err)) return NULL;
  if (dtype != PT_F32 && dtype != PT_BF16 && dtype != PT_F16) {
    pith_fail(err, "encoder: compute dtype must be f32, bf16 or f16, not %s", pt_dtype_name(dtype));
    return NULL;
  }
  encoder_model *m = calloc(1, sizeof *m);
  m->cfg = *cfg;
  m->dtype = dtype;
  m->device = dev;
  m->layers = calloc((size_t)cfg->n_layers, sizeof *m->layers);
  return m;
}

typedef struct {
  pt_dtype dtype;
  pt_device dev;
  pith_err *err;
} check_ctx;

static int check_weight(const char *name, pt_tensor **slot, pt_shape shape, void *vctx) {
  check_ctx *ctx = vctx;
  if (!*slot) return pith_fail(ctx->err, "encoder: weight %s is missing", name);
  pt_shape got = pt_shape_of(*slot);
  int same = got.ndim == shape.ndim;
  for (int i = 0; same && i < shape.ndim; i++) same = got.d[i] == shape.d[i];
  if (!same) {
    char desc[128];
    return pith_fail(ctx->err, "encoder: weight %s is %s, want %d dims [%lld...]", name,
                     pt_describe(*slot, desc, sizeof desc), shape.ndim, (long long)shape.d[0]);
  }
  if (pt_dtype_of(*slot) != ctx->dtype || pt_device_of(*slot) != ctx->dev)
    return pith_fail(ctx->err, "encoder: weight %s has the wrong dtype or device", name);
  return 0;
}

int encoder_check_weights(const encoder_model *m, pith_err *err) {
  check_ctx ctx = {m->dtype, m->device, err};
  return encoder_visit_weights((encoder_model *)m, check_weight, &ctx);
}

typedef struct {
  pt_gen *gen;
  pt_dtype dtype;
  pt_device dev;
} random_ctx;

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && !strcmp(s + n - k, suffix);
}

static int random_weight(const char *name, pt_tensor **slot, pt_shape shape, void *vctx) {
  random_ctx *ctx = vctx;
  pt_scope s = pt_scope_begin();
  // Biases and LayerNorm offsets small but nonzero and norm weights near 1, so that a parity test
  // sees every one of them.
  pt_tensor *t = pt_mul_scalar(pt_randn(shape, PT_F32, ctx->dev, ctx->gen), 0.02);
  if (ends_with(name, "LayerNorm.weight")) t = pt_add_scalar(t, 1.0);
  t = pt_to_dtype(t, ctx->dtype);
  *slot = pt_keep(pt_scope_return(s, t));
  return t ? 0 : -1;
}

// Zero row `row` of a kept table in place (a view written through).
static int zero_row(pt_tensor *table, int64_t row) {
  pt_scope s = pt_scope_begin();
  pt_tensor *r = pt_slice(table, 0, row, row + 1);
  int rc = pt_copy_(r, pt_zeros(pt_shape_of(r), pt_dtype_of(table), pt_device_of(table)));
  pt_scope_end(s);
  return rc;
}

encoder_model *encoder_new_random(const encoder_config *cfg, uint64_t seed, pt_dtype dtype, pt_device dev,
                                  pith_err *err) {
  encoder_model *m = encoder_alloc(cfg, dtype, dev, err);
  if (!m) return NULL;
  random_ctx ctx = {pt_gen_new(seed, dev), dtype, dev};
  int rc = encoder_visit_weights(m, random_weight, &ctx);
  pt_gen_free(ctx.gen);
  if (!rc) rc = zero_row(m->word_emb, cfg->pad_id);
  if (!rc && cfg->arch == ENCODER_XLM_ROBERTA) rc = zero_row(m->pos_emb, cfg->pad_id);
  if (rc) {
    pt_fail(err, "encoder: random init");
    encoder_free(m);
    return NULL;
  }
  if (encoder_check_weights(m, err)) {
    encoder_free(m);
    return NULL;
  }
  return m;
}

static int free_weight(const char *name, pt_tensor **slot, pt_shape shape, void *ctx) {
  pt_free(*slot);
  *slot = NULL;
  return 0;
}

void encoder_free(encoder_model *m) {
  if (!m) return;
  encoder_visit_weights(m, free_weight, NULL);
  free(m->layers);
  free(m);
}

static int count_weight(const char *name, pt_tensor **slot, pt_shape shape, void *ctx) {
  *(int64_t *)ctx += pt_numel(*slot);
  return 0;
}

int64_t encoder_param_count(const encoder_model *m) {
  int64_t n = 0;
  encoder_visit_weights((encoder_model *)m, count_weight, &n);
  return n;
}

typedef struct {
  pt_tensor **out;
  int cap, n;
} params_ctx;

static int list_weight(const char *name, pt_tensor **slot, pt_shape shape, void *vctx) {
  params_ctx *ctx = vctx;
  if (ctx->n < ctx->cap) ctx->out[ctx->n] = *slot;
  ctx->n++;
  return 0;
}

int encoder_params(encoder_model *m, pt_tensor **out, int cap) {
  params_ctx ctx = {out, out ? cap : 0, 0};
  encoder_visit_weights(m, list_weight, &ctx);
  return ctx.n;
}

static int trainable_weight(const char *name, pt_tensor **slot, pt_shape shape, void *ctx) {
  return pt_set_requires_grad(*slot, *(int *)ctx);
}

int encoder_set_trainable(encoder_model *m, int on) { return encoder_visit_weights(m, trainable_weight, &on); }

// ---------------------------------------------------------------- forward

pt_tensor *encoder_position_ids(const encoder_model *m, const pt_tensor *mask, int64_t B, int64_t T) {
  if (m->cfg.arch == ENCODER_BERT || !mask) {
    int64_t start = m->cfg.arch == ENCODER_BERT ? 0 : m->cfg.pad_id + 1;
    return pt_expand(pt_view(pt_arange(start, start + T, PT_I64, m->device), PT_SHAPE(1, T)), PT_SHAPE(B, T));
  }
  // Real tokens count up from pad_id + 1; pads sit at pad_id (a row's count times 0, plus pad_id).
  pt_tensor *real = pt_to_dtype(mask, PT_I64);
  // (a double scalar promotes to float: back to i64, exact for any position)
  return pt_to_dtype(pt_add_scalar(pt_mul(pt_cumsum(real, 1), real), m->cfg.pad_id), PT_I64);
}

static pt_tensor *activation(encoder_act act, pt_tensor *x) {
  switch (act) {
    case ENCODER_ACT_GELU_TANH: return pt_gelu_tanh(x);
    case ENCODER_ACT_RELU: return pt_relu(x);
    case ENCODER_ACT_SILU: return pt_silu(x);
    default: return pt_gelu(x);
  }
}

static pt_tensor *dropout(pt_tensor *x, double p, pt_gen *g) { return g && p > 0 ? pt_dropout(x, p, g) : x; }

// Attention with dropout on its weights (training only): softmax(q kᵀ/√hd + mask) dropped, · v.
static pt_tensor *attention_dropout(pt_tensor *q, pt_tensor *k, pt_tensor *v, pt_tensor *keys_ok, double p,
                                    pt_gen *g) {
  double scale = 1.0 / sqrt((double)pt_size(q, -1));
  pt_tensor *scores = pt_mul_scalar(pt_matmul(q, pt_transpose(k, -2, -1)), scale);
  scores = pt_masked_fill(scores, pt_eq_scalar(keys_ok, 0), -INFINITY);
  return pt_matmul(pt_dropout(pt_softmax(scores, -1), p, g), v);
}

static int check_inputs(const encoder_model *m, const encoder_inputs *in, pith_err *err) {
  if (!in->ids || pt_ndim(in->ids) != 2) return pith_fail(err, "encoder_forward: ids must be (B, T)");
  if (pt_dtype_of(in->ids) != PT_I64) return pith_fail(err, "encoder_forward: ids must be i64");
  int64_t B = pt_size(in->ids, 0), T = pt_size(in->ids, 1);
  if (T == 0) return pith_fail(err, "encoder_forward: ids hold no tokens");
  const pt_tensor *side[2] = {in->mask, in->token_types};
  const char *names[2] = {"mask", "token_types"};
  for (int i = 0; i < 2; i++)
    if (side[i] && (pt_ndim(side[i]) != 2 || pt_size(side[i], 0) != B || pt_size(side[i], 1) != T))
      return pith_fail(err, "encoder_forward: %s must be (B, T) = (%lld, %lld) like ids", names[i], (long long)B,
                       (long long)T);
  int64_t room = m->cfg.arch == ENCODER_BERT ? m->cfg.max_positions : m->cfg.max_positions - m->cfg.pad_id - 1;
  if (T > room)
    return pith_fail(err, "encoder_forward: %lld tokens, but the model has %lld positions (max_position_embeddings %d)",
                     (long long)T, (long long)room, m->cfg.max_positions);
  return 0;
}

int encoder_forward(const encoder_model *m, const encoder_inputs *in, encoder_outputs *out, pith_err *err) {
  memset(out, 0, sizeof *out);
  if (check_inputs(m, in, err)) return -1;
  const encoder_config *c = &m->cfg;
  int64_t B = pt_size(in->ids, 0), T = pt_size(in->ids, 1), D = c->dim, H = c->n_heads, hd = D / H;
  pt_gen *g = in->dropout_gen;
  pt_tensor *mask = in->mask ? pt_to_dtype(in->mask, PT_BOOL) : NULL;

  // Embeddings, summed in transformers' order (word + type, then + position). The padding rows get
  // no gradient, as nn.Embedding(padding_idx=pad_token_id) gives them none.
  pt_tensor *x = pt_embedding_padded(m->word_emb, in->ids, c->pad_id);
  pt_tensor *types = in->token_types ? pt_embedding(m->type_emb, in->token_types) : pt_slice(m->type_emb, 0, 0, 1);
  x = pt_add(x, types);
  pt_tensor *pos = encoder_position_ids(m, mask, B, T);
  x = pt_add(x, pt_embedding_padded(m->pos_emb, pos, c->arch == ENCODER_XLM_ROBERTA ? c->pad_id : -1));
  x = dropout(pt_layer_norm(x, m->emb_norm_w, m->emb_norm_b, c->norm_eps), c->hidden_dropout, g);

  // Keys a query may see (B, 1, 1, T): the real tokens. A row with none sees all of its keys, so that
  // no row is all masked: its outputs mean nothing and are unused, but they stay finite.
  pt_tensor *keys_ok = NULL;
  if (mask) {
    pt_tensor *none = pt_eq_scalar(pt_sum_dim(pt_to_dtype(mask, PT_I64), 1, 1), 0);  // (B, 1)
    keys_ok = pt_view(pt_maximum(mask, none), PT_SHAPE(B, 1, 1, T));
  }
  int attn_drop = g && c->attention_dropout > 0;

  for (int l = 0; l < c->n_layers && x; l++) {
    const encoder_layer *L = &m->layers[l];
    pt_scope s = pt_scope_begin();
    pt_tensor *q = pt_transpose(pt_view(pt_linear(x, L->wq, L->bq), PT_SHAPE(B, T, H, hd)), 1, 2);
    pt_tensor *k = pt_transpose(pt_view(pt_linear(x, L->wk, L->bk), PT_SHAPE(B, T, H, hd)), 1, 2);
    pt_tensor *v = pt_transpose(pt_view(pt_linear(x, L->wv, L->bv), PT_SHAPE(B, T, H, hd)), 1, 2);
    pt_tensor *a = attn_drop ? attention_dropout(q, k, v, keys_ok ? keys_ok : pt_ones(PT_SHAPE(1, 1, 1, T), PT_BOOL, m->device),
                                                 c->attention_dropout, g)
                             : pt_attention(q, k, v, keys_ok, 0, 0);  // (B, H, T, hd)
    a = pt_reshape(pt_transpose(a, 1, 2), PT_SHAPE(B, T, D));
    a = dropout(pt_linear(a, L->wo, L->bo), c->hidden_dropout, g);
    x = pt_layer_norm(pt_add(a, x), L->attn_norm_w, L->attn_norm_b, c->norm_eps);
    pt_tensor *h = activation(c->act, pt_linear(x, L->w_in, L->b_in));
    h = dropout(pt_linear(h, L->w_out, L->b_out), c->hidden_dropout, g);
    x = pt_layer_norm(pt_add(h, x), L->out_norm_w, L->out_norm_b, c->norm_eps);
    // Free the layer's intermediates (autograd keeps what backward needs).
    x = pt_scope_return(s, x);
  }
  if (in->want_hidden) out->hidden = x;
  if (!in->no_logits) {
    double p = c->classifier_dropout < 0 ? c->hidden_dropout : c->classifier_dropout;
    out->logits = pt_linear(dropout(x, p, g), m->cls_w, m->cls_b);
  }
  if (!pt_ok()) {
    memset(out, 0, sizeof *out);
    return pt_fail(err, "encoder_forward");
  }
  return 0;
}
