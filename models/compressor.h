// compressor: soft-token prompt compressors over one frozen LLaMA-family model.
//
// 500xCompressor (arXiv 2408.03094): the encoder is the model with LoRA reading
// [text; k trainable compress embeddings]; the K and V of the k compress positions at every layer
// become the past key/values of the same model with LoRA off (the decoder).
// ICAE (arXiv 2307.06945): the decoder instead receives the final hidden states of the k memory
// positions as input embeddings, followed (when regenerating) by a trainable AE token.
//
// Text rows are padded to N; the compress tokens sit at positions N..N+k-1 in every row and the
// padding is masked (the reference implementation lets them attend to it). Where the compressed
// keys live is a policy: COMP_POS_REFERENCE keeps them rotated for N..N+k-1 while the decoder
// continues at k (what the reference code does); COMP_POS_CONSISTENT rotates them back to 0..k-1,
// so the decoder at k.. reads them as the k positions just before it.
#ifndef PITH_COMPRESSOR_H
#define PITH_COMPRESSOR_H

#include "llama.h"
#include "lora.h"

typedef enum { COMP_500X, COMP_ICAE } comp_method;
typedef enum { COMP_POS_REFERENCE, COMP_POS_CONSISTENT } comp_position_policy;

typedef struct {
  comp_method method;
  int k;                          // compress (memory) tokens
  comp_position_policy positions;  // 500x only
  int ae_token;                   // ICAE: put the AE token before the decoder tokens (regeneration)
} comp_config;

typedef struct {
  comp_config cfg;
  const llama_model *base;  // frozen; shared, not owned
  lora_adapter *lora;       // the encoder's adapter (owned)
  pt_tensor *compress;      // (k, dim) f32 trainable compress / memory embeddings
  pt_tensor *ae;            // (1, dim) f32 trainable AE token (ICAE; used when cfg.ae_token), else NULL
  pt_tensor *compress_step, *ae_step;  // their compute-dtype copies for the current step (comp_cast_step)
} compressor;

// What the decoder reads: 500x per-layer K/V, or ICAE memory states.
typedef struct {
  int n_layers;
  pt_tensor **k, **v;  // n_layers each (B, Hkv, k, hd) (500x), the keys rotated for where the encoder made them
  int64_t key_shift;   // positions the decoder moves the keys by (llama_inputs.prefix_shift): the policy's
  pt_tensor *memory;   // (B, k, dim) (ICAE)
} comp_code;

typedef struct {
  const pt_tensor *text_ids;     // (B, N) i64 encoder text, padded
  const pt_tensor *text_mask;    // (B, N) bool, true = real token
  const pt_tensor *dec_ids;      // (B, M) i64 decoder input tokens
  const pt_tensor *dec_mask;     // (B, M) bool
  const pt_tensor *dec_targets;  // (B, M) i64 the token to predict after each position; -100 = none
} comp_batch;

compressor *comp_new(const llama_model *base, comp_config cfg, lora_config lora, uint64_t seed, pith_err *err);
void comp_free(compressor *c);
// The trainable handles (LoRA A/B, compress embeddings, AE token) in a fixed order; returns the count.
int comp_params(const compressor *c, pt_tensor **params, int max);
// Casts the trainable tensors to the base's dtype once for a training step (lora_cast_step, and the
// compress embeddings and AE token likewise); comp_cast_step_end before the optimizer step.
int comp_cast_step(compressor *c);
void comp_cast_step_end(compressor *c);

// Checkpoint names of the trainable tensors (checkpoints/train_state.h's params.safetensors):
// "lora.L.PROJ.A" (rank, in) and "lora.L.PROJ.B" (out, rank) for projection PROJ (PEFT's name,
// e.g. q_proj) of layer L, COMP_PARAM_COMPRESS (k, dim) and COMP_PARAM_AE (1, dim).
#define COMP_PARAM_COMPRESS "compress"
#define COMP_PARAM_AE "ae"
// The name of trainable tensor i (comp_params order) into out (len bytes); -1 when there is no i.
int comp_param_name(const compressor *c, int i, char *out, size_t len);
// The name of LoRA matrix ab ('A' or 'B') of projection p at layer into out (len bytes).
void comp_lora_param_name(int layer, llama_proj p, char ab, char *out, size_t len);
// The inverse: layer, projection and 'A'/'B' of a LoRA name; -1 when name is not one.
int comp_lora_param_parse(const char *name, int *layer, llama_proj *p, char *ab);

// Encode text (LoRA on). dropout_gen NULL = no LoRA dropout. Tensors in the current scope.
int comp_encode(const compressor *c, const pt_tensor *text_ids, const pt_tensor *text_mask, pt_gen *dropout_gen,
                comp_code *code, pith_err *err);
void comp_code_free(comp_code *code);  // frees the arrays, not the tensors
// Decoder logits (B, M, vocab) for dec_ids given the code (LoRA off).
pt_tensor *comp_decode(const compressor *c, const comp_code *code, const pt_tensor *dec_ids, const pt_tensor *dec_mask,
                       pith_err *err);
// The per-layer K/V (B, Hkv, P, hd) the decoder reads before its own tokens, for generation with a
// KV cache (generate.h): 500x's compress K/V, the keys moved by key_shift (P = k); for ICAE, [memory; AE?] run through
// the model as embeddings (P = k or k + 1), which under causal attention is what comp_decode
// computes for them. *k and *v: malloc'd arrays of n_layers handles in the current scope (free the
// arrays, not the tensors).
int comp_prefix_kv(const compressor *c, const comp_code *code, pt_tensor ***k, pt_tensor ***v, pith_err *err);
// Mean cross-entropy of the decoder over the targets: encoder + decoder, differentiable.
pt_tensor *comp_loss(const compressor *c, const comp_batch *b, pt_gen *dropout_gen, pith_err *err);

#endif
