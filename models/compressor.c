// compressor: 500xCompressor and ICAE over a frozen model (see compressor.h).
#include "compressor.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// A trainable (rows, dim) embedding drawn like the model's own: normal with the embedding's RMS.
// Kept in f32 whatever the model's dtype (master weights); as_compute casts it for the forward pass.
static pt_tensor *new_embedding(const llama_model *m, int rows, pt_gen *g) {
  pt_scope s = pt_scope_begin();
  pt_tensor *e32 = pt_to_dtype(m->embed, PT_F32);
  double rms = sqrt(pt_item(pt_mean(pt_mul(e32, e32))));
  pt_tensor *t = pt_mul_scalar(pt_randn(PT_SHAPE(rows, m->cfg.dim), PT_F32, PT_CPU, g), rms > 0 ? rms : 0.02);
  t = pt_keep(pt_scope_return(s, pt_to_device(t, m->device)));
  pt_set_requires_grad(t, 1);
  return t;
}

compressor *comp_new(const llama_model *base, comp_config cfg, lora_config lora, uint64_t seed, pith_err *err) {
  if (cfg.k <= 0) {
    pith_fail(err, "compressor: the number of compress tokens must be positive, not %d", cfg.k);
    return NULL;
  }
  compressor *c = calloc(1, sizeof *c);
  c->cfg = cfg;
  c->base = base;
  c->lora = lora_new(base, lora, seed, err);
  if (!c->lora) {
    free(c);
    return NULL;
  }
  pt_gen *g = pt_gen_new(seed + 1, PT_CPU);
  c->compress = new_embedding(base, cfg.k, g);
  // ICAE always owns its AE token, so pretrain and finetune share one parameter list; only
  // regeneration (ae_token) puts it before the decoder tokens.
  if (cfg.method == COMP_ICAE) c->ae = new_embedding(base, 1, g);
  pt_gen_free(g);
  if (!pt_ok()) {
    pt_fail(err, "compressor");
    comp_free(c);
    return NULL;
  }
  return c;
}

void comp_free(compressor *c) {
  if (!c) return;
  comp_cast_step_end(c);
  lora_free(c->lora);
  pt_free(c->compress);
  pt_free(c->ae);
  free(c);
}

int comp_params(const compressor *c, pt_tensor **params, int max) {
  int n = lora_params(c->lora, params, max);
  pt_tensor *extra[2] = {c->compress, c->ae};
  for (int i = 0; i < 2; i++)
    if (extra[i]) {
      if (params && n < max) params[n] = extra[i];
      n++;
    }
  return n;
}

int comp_param_name(const compressor *c, int i, char *out, size_t len) {
  int n = 0;
  const lora_adapter *l = c->lora;
  for (int layer = 0; layer < l->n_layers; layer++)  // lora_params' order
    for (int p = 0; p < LLAMA_N_PROJ; p++)
      if (l->a[layer][p]) {
        if (i == n || i == n + 1) {
          comp_lora_param_name(layer, (llama_proj)p, i == n ? 'A' : 'B', out, len);
          return 0;
        }
        n += 2;
      }
  if (i == n) return snprintf(out, len, "%s", COMP_PARAM_COMPRESS), 0;
  if (i == n + 1 && c->ae) return snprintf(out, len, "%s", COMP_PARAM_AE), 0;
  return -1;
}

void comp_lora_param_name(int layer, llama_proj p, char ab, char *out, size_t len) {
  snprintf(out, len, "lora.%d.%s.%c", layer, LLAMA_PROJ_NAMES[p], ab);
}

int comp_lora_param_parse(const char *name, int *layer, llama_proj *p, char *ab) {
  char pname[64], c;
  int n = 0;
  if (sscanf(name, "lora.%d.%63[a-z_].%c%n", layer, pname, &c, &n) != 3 || name[n] || (c != 'A' && c != 'B') ||
      *layer < 0)
    return -1;
  for (int q = 0; q < LLAMA_N_PROJ; q++)
    if (!strcmp(pname, LLAMA_PROJ_NAMES[q])) {
      *p = (llama_proj)q;
      *ab = c;
      return 0;
    }
  return -1;
}

// A trainable (f32) tensor in the model's compute dtype; differentiable, a no-op under f32.
static pt_tensor *as_compute(const llama_model *m, pt_tensor *t) { return pt_to_dtype(t, m->dtype); }

// The compress embeddings and the AE token in the compute dtype: the step's copies, or a cast now.
static pt_tensor *compress_compute(const compressor *c) {
  return c->compress_step ? c->compress_step : as_compute(c->base, c->compress);
}
static pt_tensor *ae_compute(const compressor *c) { return c->ae_step ? c->ae_step : as_compute(c->base, c->ae); }

int comp_cast_step(compressor *c) {
  comp_cast_step_end(c);
  pt_dtype dt = c->base->dtype;
  if (dt == PT_F32) return 0;
  if (lora_cast_step(c->lora, dt)) return -1;
  c->compress_step = pt_keep(as_compute(c->base, c->compress));
  if (c->ae) c->ae_step = pt_keep(as_compute(c->base, c->ae));
  if (pt_ok()) return 0;
  comp_cast_step_end(c);
  return -1;
}

void comp_cast_step_end(compressor *c) {
  lora_cast_step_end(c->lora);
  pt_free(c->compress_step);
  pt_free(c->ae_step);
  c->compress_step = c->ae_step = NULL;
}

// mask as bool, or all true (B, T) when NULL.
static pt_tensor *mask_or_ones(const llama_model *m, const pt_tensor *mask, int64_t B, int64_t T) {
  return mask ? pt_to_dtype(mask, PT_BOOL) : pt_ones(PT_SHAPE(B, T), PT_BOOL, m->device);
}

int comp_encode(const compressor *c, const pt_tensor *text_ids, const pt_tensor *text_mask, pt_gen *dropout_gen,
                comp_code *code, pith_err *err) {
  memset(code, 0, sizeof *code);
  const llama_model *m = c->base;
  int64_t B = pt_size(text_ids, 0), N = pt_size(text_ids, 1), K = c->cfg.k, D = m->cfg.dim;
  if (pt_ndim(text_ids) != 2) return pith_fail(err, "compressor: text ids must be (B, N)");
  pt_tensor *parts[2] = {pt_embedding(m->embed, text_ids),
                         pt_expand(pt_unsqueeze(compress_compute(c), 0), PT_SHAPE(B, K, D))};
  pt_tensor *x = pt_cat(parts, 2, 1);  // (B, N+k, D)
  pt_tensor *masks[2] = {mask_or_ones(m, text_mask, B, N), pt_ones(PT_SHAPE(B, K), PT_BOOL, m->device)};
  pt_tensor *select = pt_expand(pt_view(pt_arange(N, N + K, PT_I64, m->device), PT_SHAPE(1, K)), PT_SHAPE(B, K));
  llama_inputs in = {.embeds = x, .mask = pt_cat(masks, 2, 1), .lora = c->lora, .dropout_gen = dropout_gen,
                     .no_logits = 1, .select = select};
  in.want_kv = c->cfg.method == COMP_500X;
  in.want_hidden = c->cfg.method == COMP_ICAE;
  llama_outputs out;
  if (!x || llama_forward(m, &in, &out, err)) {
    if (!x) pt_fail(err, "compressor: encode");
    return -1;
  }
  code->n_layers = m->cfg.n_layers;
  code->k = out.k;
  code->v = out.v;
  code->memory = out.hidden;
  // Keys made at positions N..N+k-1 and read at 0..k-1: the decoder rotates them by -N as they enter.
  code->key_shift = c->cfg.method == COMP_500X && c->cfg.positions == COMP_POS_CONSISTENT ? -N : 0;
  return 0;
}

void comp_code_free(comp_code *code) {
  free(code->k);
  free(code->v);
  code->k = code->v = NULL;
}

// The decoder's pass over dec_ids given the code (LoRA off): logits (B, M, vocab), or with `hidden`
// the final hidden states of every position (B, P + M, dim), the decoder tokens' from *first on
// (after ICAE's memory and AE token; 500x's prefix is K/V, not positions).
static pt_tensor *decode(const compressor *c, const comp_code *code, const pt_tensor *dec_ids,
                         const pt_tensor *dec_mask, int hidden, int64_t *first, pith_err *err) {
  const llama_model *m = c->base;
  int64_t B = pt_size(dec_ids, 0), M = pt_size(dec_ids, 1), K = c->cfg.k, D = m->cfg.dim;
  llama_outputs out;
  if (c->cfg.method == COMP_500X) {
    llama_inputs in = {.ids = dec_ids, .mask = dec_mask, .prefix_k = code->k, .prefix_v = code->v,
                       .prefix_shift = code->key_shift, .no_logits = hidden, .want_hidden = hidden};
    if (llama_forward(m, &in, &out, err)) return NULL;
    if (first) *first = 0;
    return hidden ? out.hidden : out.logits;
  }
  // ICAE: [memory; AE?; tokens] as input embeddings, positions from 0.
  pt_tensor *ae = c->cfg.ae_token ? c->ae : NULL;
  int64_t lead = K + (ae ? 1 : 0);
  pt_tensor *parts[3] = {code->memory, NULL, pt_embedding(m->embed, dec_ids)};
  pt_tensor *masks[2] = {pt_ones(PT_SHAPE(B, lead), PT_BOOL, m->device), mask_or_ones(m, dec_mask, B, M)};
  if (ae) {
    parts[1] = pt_expand(pt_unsqueeze(ae_compute(c), 0), PT_SHAPE(B, 1, D));
  } else {
    parts[1] = parts[2];
  }
  pt_tensor *x = pt_cat(parts, ae ? 3 : 2, 1);
  llama_inputs in = {.embeds = x, .mask = pt_cat(masks, 2, 1), .no_logits = hidden, .want_hidden = hidden};
  if (!x) {
    pt_fail(err, "compressor: decode");
    return NULL;
  }
  if (llama_forward(m, &in, &out, err)) return NULL;
  if (first) *first = lead;
  return hidden ? out.hidden : pt_slice(out.logits, 1, lead, lead + M);
}

pt_tensor *comp_decode(const compressor *c, const comp_code *code, const pt_tensor *dec_ids, const pt_tensor *dec_mask,
                       pith_err *err) {
  return decode(c, code, dec_ids, dec_mask, 0, NULL, err);
}

int comp_prefix_kv(const compressor *c, const comp_code *code, pt_tensor ***k, pt_tensor ***v, pith_err *err) {
  const llama_model *m = c->base;
  int L = m->cfg.n_layers;
  if (c->cfg.method == COMP_500X) {
    *k = malloc(sizeof **k * (size_t)L);
    *v = malloc(sizeof **v * (size_t)L);
    if (!*k || !*v) {
      free(*k), free(*v);
      return pith_fail(err, "compressor: prefix: out of memory");
    }
    memcpy(*v, code->v, sizeof **v * (size_t)L);
    for (int l = 0; l < L; l++)
      (*k)[l] = code->key_shift ? llama_shift_keys(m, code->k[l], code->key_shift) : code->k[l];
    if (pt_ok()) return 0;
    free(*k), free(*v);
    *k = *v = NULL;
    return pt_fail(err, "compressor: prefix");
  }
  int64_t B = pt_size(code->memory, 0), D = m->cfg.dim;
  pt_tensor *ae = c->cfg.ae_token ? pt_expand(pt_unsqueeze(ae_compute(c), 0), PT_SHAPE(B, 1, D)) : NULL;
  pt_tensor *lead[2] = {code->memory, ae};
  llama_inputs in = {.embeds = pt_cat(lead, lead[1] ? 2 : 1, 1), .want_kv = 1, .no_logits = 1};
  if (!in.embeds) {
    pt_fail(err, "compressor: prefix");
    return -1;
  }
  llama_outputs out;
  if (llama_forward(m, &in, &out, err)) return -1;
  *k = out.k;  // the arrays change hands: no llama_outputs_free
  *v = out.v;
  return 0;
}

pt_tensor *comp_loss(const compressor *c, const comp_batch *b, pt_gen *dropout_gen, pith_err *err) {
  comp_code code;
  if (comp_encode(c, b->text_ids, b->text_mask, dropout_gen, &code, err)) return NULL;
  int64_t first;
  pt_tensor *hidden = decode(c, &code, b->dec_ids, b->dec_mask, 1, &first, err);
  comp_code_free(&code);
  if (!hidden) return NULL;
  // Loss in f32 whatever the compute dtype (with the base's loss_chunk_rows, a chunk at a time).
  pt_tensor *loss = llama_lm_loss(c->base, hidden, first, b->dec_targets, NULL, -100);
  if (!loss) pt_fail(err, "compressor: loss");
  return loss;
}
