// llama: the LLaMA-family decoder (LLaMA 2/3, Mistral, Qwen2) in C over the shim.
//
// Three structs make the model: llama_config (the shapes, from a Hugging Face config.json),
// llama_model (the weights, kept handles) and, per call, llama_inputs / llama_outputs. The forward
// pass reads token ids or input embeddings, optional per-layer prefix K/V that every position
// attends to (what 500xCompressor hands its frozen decoder), and an optional LoRA adapter; it can
// return the per-layer K/V and the final hidden states of chosen positions (what the encoder
// hands on). Under autograd, gradients reach the prefix K/V, the input embeddings and the LoRA.
#ifndef PITH_LLAMA_H
#define PITH_LLAMA_H

#include "base.h"
#include "torch_shim.h"

typedef enum { LLAMA_ARCH_LLAMA, LLAMA_ARCH_MISTRAL, LLAMA_ARCH_QWEN2 } llama_arch;

typedef struct {
  llama_arch arch;
  int vocab_size;
  int dim;            // hidden_size
  int hidden_dim;     // intermediate_size
  int n_layers;
  int n_heads;
  int n_kv_heads;     // grouped-query attention when < n_heads
  int head_dim;       // dim / n_heads unless config.json says otherwise
  int max_seq_len;    // max_position_embeddings
  double rope_theta;
  double norm_eps;    // rms_norm_eps
  int tie_embeddings; // lm_head shares the embedding matrix
  int qkv_bias;       // Qwen2: q/k/v projections have biases
  int sliding_window; // Mistral; 0 = none
  // rope_scaling {"rope_type": "llama3", ...}: frequency-dependent scaling of LLaMA 3.1+.
  int rope_llama3;
  double rope_factor, rope_low_freq_factor, rope_high_freq_factor;
  int rope_original_max_pos;
  int bos_id, eos_id;  // from config.json when present, else -1
} llama_config;

typedef struct {
  pt_tensor *attn_norm;            // (dim)
  pt_tensor *wq, *wk, *wv, *wo;    // (H*hd, dim), (Hkv*hd, dim) x2, (dim, H*hd)
  pt_tensor *bq, *bk, *bv;         // (H*hd), (Hkv*hd) x2, or NULL
  pt_tensor *mlp_norm;             // (dim)
  pt_tensor *w_gate, *w_up;        // (hidden, dim)
  pt_tensor *w_down;               // (dim, hidden)
} llama_layer;

typedef struct {
  llama_config cfg;
  pt_dtype dtype;
  pt_device device;
  pt_tensor *embed;       // (vocab, dim)
  llama_layer *layers;    // n_layers
  pt_tensor *final_norm;  // (dim)
  pt_tensor *lm_head;     // (vocab, dim); the embedding itself when tied
  pt_tensor *inv_freq;    // (hd/2) f32: rotary frequencies, scaled for llama3
  // Activation checkpointing (the trainers' gradient_checkpointing): while autograd records, each
  // layer keeps only its inputs for the backward pass, which runs the layer again (pt_checkpoint).
  // Less memory for one more forward pass per step; the same losses and gradients.
  int gradient_checkpointing;
  // The trainers' loss_chunk_rows: > 0, llama_lm_loss runs the LM head and its cross-entropy this
  // many rows at a time (pt_linear_cross_entropy), never holding the whole logits; 0, all at once.
  int64_t loss_chunk_rows;
} llama_model;

// The projections LoRA can adapt, as bit flags; names as PEFT's target_modules.
typedef enum {
  LLAMA_PROJ_Q, LLAMA_PROJ_K, LLAMA_PROJ_V, LLAMA_PROJ_O, LLAMA_PROJ_GATE, LLAMA_PROJ_UP, LLAMA_PROJ_DOWN,
  LLAMA_N_PROJ
} llama_proj;
extern const char *const LLAMA_PROJ_NAMES[LLAMA_N_PROJ];  // "q_proj", ..., "down_proj"

typedef struct lora_adapter lora_adapter;  // models/lora.h

// What one layer's attention sees, handed to llama_inputs.on_layer before the attention runs (a KV
// press scores the prefill's entries from it). Every handle belongs to the layer's scope: keep
// (pt_keep) or copy out what must outlive the call.
typedef struct {
  int layer;
  pt_tensor *h;           // (B, T, dim): the attention's input, after its RMS norm
  pt_tensor *q_prerope;   // (B, H, T, hd): queries before the rotation
  pt_tensor *q;           // (B, H, T, hd): rotated queries
  pt_tensor *k, *v;       // (B, Hkv, P+T, hd): the keys (rotated) and values, prefix first
  pt_tensor *mask;        // (B, 1, T, P+T) bool, or NULL for plain causal attention
  pt_tensor *positions;   // (B, T) i64 rotary positions of the T tokens
  int64_t prefix_len;     // P
} llama_layer_view;
typedef int (*llama_layer_fn)(const llama_layer_view *view, void *ctx, pith_err *err);
// Replaces a layer's attention: given the view (rotated q, the layer's k and v, the mask), returns
// the attention output (B, H, T, hd) in the model's dtype, in the current scope, or NULL with err
// to stop the forward. A cache that holds the earlier K/V itself (models/kv_cache.h) attends here.
typedef pt_tensor *(*llama_attend_fn)(const llama_layer_view *view, void *ctx, pith_err *err);

typedef struct {
  const pt_tensor *ids;        // (B, T) i64, or NULL when embeds is given
  const pt_tensor *embeds;     // (B, T, dim) in the model's dtype, or NULL
  const pt_tensor *positions;  // (B, T) i64 rotary positions, or NULL for 0..T-1
  const pt_tensor *mask;       // (B, T) bool, true = a real token; NULL = all real
  // Prefix K/V per layer (as past_key_values): n_layers each of (B, Hkv, P, hd), the keys rotated
  // for the positions where they were made. prefix_shift moves them by that many positions as they
  // enter each layer's attention (500x's consistent position policy); 0 takes them as they are.
  pt_tensor *const *prefix_k;
  pt_tensor *const *prefix_v;
  int64_t prefix_shift;
  const pt_tensor *prefix_mask;  // (B, P) bool, or NULL = all visible
  const lora_adapter *lora;      // NULL: the base model alone
  pt_gen *dropout_gen;           // LoRA dropout during training; NULL: no dropout
  // What to return besides the logits.
  int no_logits;                 // skip the LM head (an encoder pass)
  const pt_tensor *select;       // (B, K) i64 sequence positions whose K/V and hidden states to return; NULL = all
  int want_kv;                   // per-layer K/V of the selected positions
  // want_kv returns the prefix's K/V followed by every position's: the K/V attention read, which is
  // the cache the next step reads (generation), with no copy. Not with select.
  int kv_with_prefix;
  int want_hidden;               // final hidden states (after the final norm) of the selected positions
  // Attention probabilities of layer attn_layer (EHPC's evaluator heads): the last attn_window
  // queries (0: all T) against every key, prefix included, from the forward's own q/k and mask.
  // With no_logits and nothing else wanted, the forward stops after that layer (an early layer is
  // where EHPC's speed comes from).
  int want_attn;
  int attn_layer;
  int attn_window;
  // Called once per layer with its attention inputs (NULL: none); a nonzero return stops the
  // forward with the callee's error. With no_logits and nothing else wanted (no K/V, hidden states
  // or attention), the last layer stops after its call: its attention (an attend callback is not
  // called there) and MLP feed nothing.
  llama_layer_fn on_layer;
  void *on_layer_ctx;
  // Replaces every layer's dense attention (NULL: the built-in one), called after on_layer; not
  // with want_attn (whose probabilities come from the dense keys).
  llama_attend_fn attend;
  void *attend_ctx;
} llama_inputs;

typedef struct {
  pt_tensor *logits;  // (B, T, vocab), in the current scope; NULL with no_logits
  pt_tensor **k, **v; // n_layers each of (B, Hkv, K, hd) when want_kv (arrays freed by llama_outputs_free)
  pt_tensor *hidden;  // (B, K, dim) when want_hidden
  pt_tensor *attn;    // (B, H, W, P+T) f32 softmax probabilities when want_attn
} llama_outputs;

// Check sizes and fill derived fields (head_dim when 0); 0 or -1 with a message.
int llama_config_validate(llama_config *cfg, pith_err *err);

// A model with every weight NULL but the rotary frequencies: loaders (checkpoints/hf_folder.h)
// fill the weights as kept handles, then call llama_check_weights.
llama_model *llama_alloc(const llama_config *cfg, pt_dtype dtype, pt_device dev, pith_err *err);
// Every weight present with its shape, dtype and device; else -1 naming the first bad one.
int llama_check_weights(const llama_model *m, pith_err *err);
// A model with random weights (normal, std 0.02; norms 1), for tests and benchmarks.
llama_model *llama_new_random(const llama_config *cfg, uint64_t seed, pt_dtype dtype, pt_device dev, pith_err *err);
void llama_free(llama_model *m);
int64_t llama_param_count(const llama_model *m);
// Visit every weight with its Hugging Face name ("model.layers.3.self_attn.q_proj.weight");
// the tied lm_head is skipped. The slot may be written (loaders) or read (savers).
typedef int (*llama_weight_fn)(const char *name, pt_tensor **slot, pt_shape shape, void *ctx);
int llama_visit_weights(llama_model *m, llama_weight_fn fn, void *ctx);

// The forward pass. Tensors in out live in the caller's current scope.
int llama_forward(const llama_model *m, const llama_inputs *in, llama_outputs *out, pith_err *err);
void llama_outputs_free(llama_outputs *out);  // frees the k/v arrays (not the tensors)

// The mean next-token cross-entropy of final hidden states (B, T, dim) (llama_forward's want_hidden,
// no select) from position `first` on, through the LM head, scored in f32, against targets
// (B, T - first) i64, skipping ignore_index; with weights (B·(T - first) f32) the weighted mean
// sum(weight · ce) / sum(weight). As pt_cross_entropy of the logits (the same ops as on
// llama_forward's logits), or, with m->loss_chunk_rows, a chunk of rows at a time. NULL on error.
pt_tensor *llama_lm_loss(const llama_model *m, const pt_tensor *hidden, int64_t first, const pt_tensor *targets,
                         const pt_tensor *weights, int64_t ignore_index);

// Softmax probabilities (B, H, W, S) in f32 of the last W queries of q (B, H, T, hd) over keys k
// (B, Hkv, S, hd), S = P + T; mask (B, 1, T, S) bool, or NULL for plain causal attention.
pt_tensor *llama_attention_probs(const pt_tensor *q, const pt_tensor *k, const pt_tensor *mask, int64_t W);

// Rotary cos and sin for positions (B, T) i64: each (B, T, hd) f32. pt_rope applies them (unsqueezed
// to (B, 1, T, hd)). Rotations compose, so rotating keys made at position p by the angles of s
// moves them to p + s.
int llama_rope_tables(const llama_model *m, const pt_tensor *positions, pt_tensor **cos, pt_tensor **sin);
// Keys k (B, Hkv, n, hd) moved by `shift` positions (what prefix_shift does inside the forward), for
// a prefix handed on to a cache that takes keys as they are.
pt_tensor *llama_shift_keys(const llama_model *m, const pt_tensor *k, int64_t shift);

#endif
