// encoder: BERT and XLM-RoBERTa encoders with a token-classification head, in C over the shim.
//
// These are the scorers of LLMLingua-2: its published checkpoints are XLMRobertaForTokenClassification
// (xlm-roberta-large) and BertForTokenClassification (bert-base-multilingual-cased), and they load
// here as they are (checkpoints/encoder_folder.h reads and writes the Hugging Face folders).
//
// Three structs, as for llama: encoder_config (the shapes, from config.json), encoder_model (the
// weights, kept handles, named as transformers names them) and, per call, encoder_inputs /
// encoder_outputs. The model is post-LayerNorm BERT: embeddings (word + token type + position) →
// LayerNorm, then per layer: bidirectional self-attention → dense → LayerNorm(x + ·), then
// dense → activation → dense → LayerNorm(x + ·); a linear classifier on every position.
// XLM-R differs from BERT only in its position ids (padding_idx + 1, + 2, ... for real tokens,
// padding_idx for pads) and in its weights' prefix ("roberta." instead of "bert.").
// Every weight can be trained: the forward works under autograd, in f32, bf16 and f16.
#ifndef PITH_ENCODER_H
#define PITH_ENCODER_H

#include "base.h"
#include "torch_shim.h"

typedef enum { ENCODER_BERT, ENCODER_XLM_ROBERTA } encoder_arch;

// hidden_act: "gelu" is the exact (erf) form; "gelu_new" and "gelu_pytorch_tanh" the tanh one.
typedef enum { ENCODER_ACT_GELU, ENCODER_ACT_GELU_TANH, ENCODER_ACT_RELU, ENCODER_ACT_SILU } encoder_act;

#define ENCODER_MAX_LABELS 64   // token classes a config may have
#define ENCODER_LABEL_LEN 48    // bytes of a label's name, with its NUL

typedef struct {
  encoder_arch arch;
  int vocab_size;
  int dim;              // hidden_size
  int n_layers;         // num_hidden_layers
  int n_heads;          // num_attention_heads; head_dim = dim / n_heads
  int hidden_dim;       // intermediate_size
  encoder_act act;      // hidden_act
  int max_positions;    // max_position_embeddings (XLM-R spends pad_id + 1 of them on no token)
  int type_vocab_size;  // token types (BERT 2, XLM-R 1)
  double norm_eps;      // layer_norm_eps
  int pad_id;           // pad_token_id: the padding row of the word (and XLM-R's position) table
  int bos_id, eos_id;   // bos_token_id / eos_token_id when config.json has them, else -1 (kept for saving)
  int num_labels;       // classifier outputs
  char labels[ENCODER_MAX_LABELS][ENCODER_LABEL_LEN];  // id2label; "" = LABEL_<i>
  // Dropout during training (encoder_inputs.dropout_gen set); the saved config keeps them.
  double hidden_dropout;      // hidden_dropout_prob: embeddings, attention output, FFN output
  double attention_dropout;   // attention_probs_dropout_prob: the attention weights
  double classifier_dropout;  // before the classifier; < 0: hidden_dropout (config.json's null)
} encoder_config;

typedef struct {
  pt_tensor *wq, *bq, *wk, *bk, *wv, *bv;  // attention.self.{query,key,value}: (dim, dim), (dim)
  pt_tensor *wo, *bo;                      // attention.output.dense: (dim, dim), (dim)
  pt_tensor *attn_norm_w, *attn_norm_b;    // attention.output.LayerNorm: (dim) x2
  pt_tensor *w_in, *b_in;                  // intermediate.dense: (hidden, dim), (hidden)
  pt_tensor *w_out, *b_out;                // output.dense: (dim, hidden), (dim)
  pt_tensor *out_norm_w, *out_norm_b;      // output.LayerNorm: (dim) x2
} encoder_layer;

typedef struct {
  encoder_config cfg;
  pt_dtype dtype;
  pt_device device;
  pt_tensor *word_emb;                 // embeddings.word_embeddings: (vocab, dim)
  pt_tensor *pos_emb;                  // embeddings.position_embeddings: (max_positions, dim)
  pt_tensor *type_emb;                 // embeddings.token_type_embeddings: (type_vocab, dim)
  pt_tensor *emb_norm_w, *emb_norm_b;  // embeddings.LayerNorm: (dim) x2
  encoder_layer *layers;               // n_layers
  pt_tensor *cls_w, *cls_b;            // classifier: (num_labels, dim), (num_labels)
} encoder_model;

typedef struct {
  const pt_tensor *ids;          // (B, T) i64
  const pt_tensor *mask;         // (B, T) bool, true = a real token; NULL = all real. Rows may differ in length.
  const pt_tensor *token_types;  // (B, T) i64, or NULL for type 0 everywhere
  pt_gen *dropout_gen;           // training: dropout as the config says, drawn from it; NULL: none
  int want_hidden;               // return the final hidden states too
  int no_logits;                 // skip the classifier (hidden states only)
} encoder_inputs;

typedef struct {
  pt_tensor *logits;  // (B, T, num_labels) in the model's dtype, in the current scope; NULL with no_logits
  pt_tensor *hidden;  // (B, T, dim) after the last layer, when want_hidden
} encoder_outputs;

// "bert" / "xlm-roberta" (model_type), "BertForTokenClassification" / ... (architectures), and the
// weights' prefix "bert" / "roberta".
const char *encoder_model_type(encoder_arch arch);
const char *encoder_architecture(encoder_arch arch);
const char *encoder_weight_prefix(encoder_arch arch);
const char *encoder_act_name(encoder_act act);  // "gelu", "gelu_pytorch_tanh", "relu", "silu"

// Check sizes; 0, or -1 with a message that names the field.
int encoder_config_validate(const encoder_config *cfg, pith_err *err);

// A model with every weight NULL: loaders (checkpoints/encoder_folder.h) fill the weights as kept
// handles, then call encoder_check_weights.
encoder_model *encoder_alloc(const encoder_config *cfg, pt_dtype dtype, pt_device dev, pith_err *err);
// Every weight present with its shape, dtype and device; else -1 naming the first bad one.
int encoder_check_weights(const encoder_model *m, pith_err *err);
// Random weights (normal, std 0.02; LayerNorm weights 1 + that; the padding rows of the word and
// XLM-R position tables zero, as transformers initializes them), for tests and new classifiers.
encoder_model *encoder_new_random(const encoder_config *cfg, uint64_t seed, pt_dtype dtype, pt_device dev,
                                  pith_err *err);
void encoder_free(encoder_model *m);
int64_t encoder_param_count(const encoder_model *m);

// Visit every weight with its Hugging Face name ("bert.encoder.layer.3.attention.self.query.weight",
// "classifier.bias"), in a fixed order. The slot may be written (loaders) or read (savers).
typedef int (*encoder_weight_fn)(const char *name, pt_tensor **slot, pt_shape shape, void *ctx);
int encoder_visit_weights(encoder_model *m, encoder_weight_fn fn, void *ctx);
// The weights in visit order, for an optimizer: returns how many there are; fills out when cap allows.
int encoder_params(encoder_model *m, pt_tensor **out, int cap);
// requires_grad on (or off) for every weight; 0, or -1 with the shim's error pending.
int encoder_set_trainable(encoder_model *m, int on);

// Position ids (B, T) i64 for a mask (B, T) bool (NULL: all real): BERT 0..T-1; XLM-R pad_id +
// cumsum(mask) at real tokens and pad_id at pads (transformers' create_position_ids_from_input_ids,
// with the mask standing for ids != pad). In the current scope; NULL with the shim's error set.
pt_tensor *encoder_position_ids(const encoder_model *m, const pt_tensor *mask, int64_t B, int64_t T);

// The forward pass. Outputs live in the caller's current scope. Padded positions get outputs too
// (they attend to the real tokens, as in transformers); callers ignore them.
int encoder_forward(const encoder_model *m, const encoder_inputs *in, encoder_outputs *out, pith_err *err);

#endif
