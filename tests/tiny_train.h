// tiny_train: what the training suites (test_checkpointing, test_fused_ops) share: a tiny LLaMA
// config, token batches, a 500x or ICAE compressor whose LoRA takes part, and gradients flattened for
// comparing two runs.
#ifndef PITH_TEST_TINY_TRAIN_H
#define PITH_TEST_TINY_TRAIN_H

#include "check.h"
#include "compressor.h"
#include "lora.h"

enum { TINY_ROWS = 2, TINY_TEXT = 10, TINY_DEC = 6, TINY_K = 3, TINY_VOCAB = 48 };

static inline llama_config tiny_config(void) {
  return (llama_config){.arch = LLAMA_ARCH_LLAMA, .vocab_size = TINY_VOCAB, .dim = 32, .hidden_dim = 64,
                        .n_layers = 3, .n_heads = 4, .n_kv_heads = 2, .max_seq_len = 64, .bos_id = -1, .eos_id = -1};
}

// Token ids (rows, cols) below TINY_VOCAB on the CPU.
static inline pt_tensor *tiny_ids(int64_t rows, int64_t cols, uint64_t seed) {
  pt_gen *g = pt_gen_new(seed, PT_CPU);
  pt_tensor *t = pt_to_dtype(pt_uniform(PT_SHAPE(rows, cols), 0, TINY_VOCAB - 0.01, PT_F32, PT_CPU, g), PT_I64);
  pt_gen_free(g);
  return t;
}

// Two rows on dev, the second with its last 3 text tokens padded.
static inline comp_batch tiny_batch(pt_device dev) {
  int64_t B = TINY_ROWS, N = TINY_TEXT, M = TINY_DEC;
  pt_tensor *text_mask = pt_ones(PT_SHAPE(B, N), PT_BOOL, PT_CPU);
  pt_copy_(pt_slice(pt_slice(text_mask, 0, 1, 2), 1, 7, N), pt_zeros(PT_SHAPE(1, N - 7), PT_BOOL, PT_CPU));
  return (comp_batch){.text_ids = pt_to_device(tiny_ids(B, N, 1), dev), .text_mask = pt_to_device(text_mask, dev),
                      .dec_ids = pt_to_device(tiny_ids(B, M, 2), dev), .dec_mask = pt_ones(PT_SHAPE(B, M), PT_BOOL, dev),
                      .dec_targets = pt_to_device(tiny_ids(B, M, 3), dev)};
}

// A compressor over m with TINY_K compress tokens (keys rotated back) and LoRA r 4 with dropout 0.2
// on every projection, its B matrices made non-zero so that the adapter takes part. Exits on error.
static inline compressor *tiny_compressor(llama_model *m, comp_method method) {
  pith_err err = {{0}};
  comp_config cc = {.method = method, .k = TINY_K, .positions = COMP_POS_CONSISTENT, .ae_token = method == COMP_ICAE};
  lora_config lc = {.rank = 4, .alpha = 8, .dropout = 0.2, .targets = (1u << LLAMA_N_PROJ) - 1};
  compressor *c = m ? comp_new(m, cc, lc, 5, &err) : NULL;
  CHECK_MSG(c != NULL, "%s", m ? err.msg : "no model");
  if (!c) exit(1);
  pt_gen *g = pt_gen_new(9, PT_CPU);
  for (int l = 0; l < c->lora->n_layers; l++)
    for (int p = 0; p < LLAMA_N_PROJ; p++)
      if (c->lora->b[l][p])
        pt_copy_(c->lora->b[l][p], pt_to_device(pt_mul_scalar(pt_randn(pt_shape_of(c->lora->b[l][p]), PT_F32, PT_CPU, g),
                                                              0.1),
                                                m->device));
  pt_gen_free(g);
  return c;
}

// Every gradient of params flattened into one f32 vector on the CPU (zeros where a tensor has none).
static inline pt_tensor *flat_grads(pt_tensor *const *params, int n) {
  pt_tensor *flat[256];
  if (n > 256) return NULL;
  for (int i = 0; i < n; i++) {
    pt_tensor *g = pt_grad(params[i]);
    g = g ? pt_to_dtype(pt_to_device(g, PT_CPU), PT_F32) : pt_zeros(pt_shape_of(params[i]), PT_F32, PT_CPU);
    flat[i] = pt_reshape(g, PT_SHAPE(-1));
  }
  return pt_cat(flat, n, 0);
}

static inline double max_abs(pt_tensor *t) { return pt_item(pt_amax_dim(pt_abs(t), 0, 0)); }

#endif
