// lora: low-rank adapters on the projections of a llama_model, as PEFT makes them.
//
// For an adapted projection W (out, in): y = W x + (B A dropout(x)) * alpha / rank, with
// A (rank, in) Kaiming-uniform (bound 1/sqrt(in), PEFT's default) and B (out, rank) zero, so a new
// adapter changes nothing. The adapter is passed per forward call, so one base model serves both
// as the LoRA encoder and, adapter off, as the frozen decoder (500xCompressor). A and B are f32
// whatever the model's dtype (master weights: on a bf16 base they are cast to bf16 in the forward
// pass, the gradients come back in f32, and small optimizer steps are not rounded away).
#ifndef PITH_LORA_H
#define PITH_LORA_H

#include "llama.h"

typedef struct {
  int rank;
  double alpha;
  double dropout;
  unsigned targets;  // bits (1u << LLAMA_PROJ_Q) | ...
} lora_config;

struct lora_adapter {
  lora_config cfg;
  double scaling;                  // alpha / rank
  int n_layers;
  pt_tensor *(*a)[LLAMA_N_PROJ];   // [layer][proj]: (rank, in), NULL when not adapted
  pt_tensor *(*b)[LLAMA_N_PROJ];   // [layer][proj]: (out, rank)
  // A and B in the compute dtype for the current training step (lora_cast_step), else NULL.
  pt_tensor *(*a_step)[LLAMA_N_PROJ];
  pt_tensor *(*b_step)[LLAMA_N_PROJ];
};

// "q_proj,v_proj" (PEFT's target_modules names), or "all" → bits of targets.
int lora_parse_targets(const char *spec, unsigned *targets, pith_err *err);
lora_adapter *lora_new(const llama_model *m, lora_config cfg, uint64_t seed, pith_err *err);
void lora_free(lora_adapter *l);
// The trainable handles in a fixed order (layer, then projection, A before B); returns the count.
int lora_params(const lora_adapter *l, pt_tensor **params, int max);
// base_out + the adapter's term for projection p of layer `layer` applied to x; base_out alone
// when that projection is not adapted.
pt_tensor *lora_add(const lora_adapter *l, int layer, llama_proj p, pt_tensor *x, pt_tensor *base_out, pt_gen *g);
// Casts A and B to dt once for a training step: until lora_cast_step_end, lora_add reads these
// copies, so the step's micro-batches and a checkpointed layer's second run share one cast each
// instead of casting on every use; the gradients reach the f32 masters through the casts, in f32 as
// before. End it before the optimizer changes the masters. With dt f32 there is nothing to cast.
// 0, or -1 with the shim's error set (nothing kept).
int lora_cast_step(lora_adapter *l, pt_dtype dt);
void lora_cast_step_end(lora_adapter *l);

#endif
