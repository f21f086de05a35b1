// llama2c: karpathy/llama2.c checkpoints into Hugging Face LLaMA model folders, so the small
// pretrained llama2.c models (stories260K, stories15M, ...) load in transformers and in pith.
//
// Input: a legacy "v0" checkpoint (what llama2.c's run.c reads): 7 int32 (dim, hidden_dim,
// n_layers, n_heads, n_kv_heads, vocab_size, seq_len; vocab_size < 0 means the classifier is not
// shared with the embedding), then f32 weights in llama2.c's order: token_embedding (vocab, dim),
// rms_att (L, dim), wq (L, dim, dim), wk (L, kv_dim, dim), wv (L, kv_dim, dim), wo (L, dim, dim),
// rms_ffn (L, dim), w1 (L, hidden, dim), w2 (L, dim, hidden), w3 (L, hidden, dim), rms_final (dim),
// freq_cis_real and freq_cis_imag (seq_len * head_dim / 2 each; skipped), then wcls (vocab, dim)
// only when not shared. The file's size must be exactly what the header implies. And its
// tokenizer.bin: int32 max_token_length, then per token f32 score, int32 length, bytes.
//
// Output folder: config.json, generation_config.json, model.safetensors (Hugging Face LLaMA tensor
// names, f32), tokenizer.json (SentencePiece-style BPE: byte fallback, Prepend/Replace normalizer,
// merges ranked from the scores as transformers' SentencePiece converter ranks them; it encodes as
// llama2.c does, except that a literal U+2581 in a text counts as a space), tokenizer_config.json
// (class PreTrainedTokenizerFast, so transformers uses tokenizer.json as written) and a copy of
// tokenizer.bin. model.safetensors' metadata names the converter and the sources' sha256.
//
// RoPE: llama2.c rotates interleaved pairs (2i, 2i+1) of each head, Hugging Face LLaMA rotates
// halves (i, i + head_dim/2). The rows of wq and wk are permuted per head so that both compute the
// same function: HF row (h*head_dim + half*head_dim/2 + i) = llama2.c row (h*head_dim + 2*i + half),
// as permute() in transformers' convert_llama_weights_to_hf.py.
//
// The folder is built as OUT.partial and renamed to OUT at the end, so OUT is complete or absent;
// a failure removes OUT.partial. Memory: the checkpoint is mapped, not read; only the permuted wq
// and wk (L * (dim + kv_dim) * dim floats) are copied.
#ifndef PITH_LLAMA2C_H
#define PITH_LLAMA2C_H

#include <stdint.h>

#include "base.h"

typedef struct {
  int32_t dim;            // hidden_size
  int32_t hidden_dim;     // intermediate_size
  int32_t n_layers;       // num_hidden_layers
  int32_t n_heads;        // num_attention_heads
  int32_t n_kv_heads;     // num_key_value_heads
  int32_t vocab_size;     // |vocab_size| of the header
  int32_t seq_len;        // max_position_embeddings
  int shared_classifier;  // 1 when the header's vocab_size > 0 (lm_head = embedding)
  int32_t head_dim;       // dim / n_heads
  int32_t kv_dim;         // n_kv_heads * head_dim
  uint64_t n_params;      // weights converted (the freq_cis tables excluded)
  uint64_t file_size;     // bytes the header implies (and the file has)
} llama2c_config;

// Read and validate a checkpoint's header, and check the file's size against it. 0, or -1 and a
// one-line message naming the file ("x.bin: file is 1000 bytes, but its header ... implies ...").
int llama2c_read_config(const char *checkpoint, llama2c_config *cfg, pith_err *err);

// Convert checkpoint + tokenizer_bin into the Hugging Face folder out_dir. An existing out_dir is
// an error unless force (then it is replaced, atomically as seen from out_dir). 0, or -1 and err.
int llama2c_convert(const char *checkpoint, const char *tokenizer_bin, const char *out_dir, int force,
                    pith_err *err);

// The same, telling `progress` (when not NULL) what it did at each stage, one line without '\n'.
typedef void (*llama2c_progress_fn)(void *ctx, const char *line);
int llama2c_convert_ex(const char *checkpoint, const char *tokenizer_bin, const char *out_dir,
                       int force, llama2c_progress_fn progress, void *ctx, pith_err *err);

#endif
