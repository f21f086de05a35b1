// kv_cache: a KV cache for B rows that stores only the context entries a press kept, per KV head.
//
// Three parts per layer:
//   - an optional dense prefix (B, Hkv, P, hd): a 500x compressor's compress tokens, never evicted;
//   - the compact context: one flat (N_l, hd) K and V holding every (row, KV head)'s kept entries
//     back to back (segment row·Hkv + head, positions ascending in each), N_l = what the kv_keep
//     says, no padding, so the memory shrinks with the press; with each entry's segment and
//     original context position;
//   - a dense tail (B, Hkv, D, hd) for what comes after the press (the question, generated
//     tokens): rows advance in lockstep, a validity mask (B, D) says which entries are real.
// Attention over it (kv_cache_attend) is one softmax over the three parts per (row, query head):
// the compact entries are scored against their row's queries (GQA: H/Hkv query heads share a KV
// head), their segment max taken with a scatter amax and their exp-weights and weighted values
// summed per segment with scatter_add / index_add (or one GEMM while B·Hkv <= head_dim), in f32.
//
// A step: kv_cache_step_begin (the new tokens' validity), then kv_cache_attend for every layer in
// order (each appends the layer's new K/V), then kv_cache_step_end. Runs with gradients off.
#ifndef PITH_KV_CACHE_H
#define PITH_KV_CACHE_H

#include <stdint.h>

#include "base.h"
#include "kv_keep.h"
#include "llama.h"

// How compact entries meet their queries (the same math): AUTO picks GEMM while B·Hkv <= head_dim.
typedef enum { KV_ATTN_AUTO, KV_ATTN_SEGMENT, KV_ATTN_GEMM } kv_attn_path;

typedef struct {
  int n_layers, batch, n_kv_heads, n_heads, head_dim;
  kv_attn_path attn_path;            // AUTO unless set (tests run both)
  pt_dtype dtype;
  pt_device device;
  int *ctx_len;                      // (batch): context tokens per row (the press's candidates)
  int64_t prefix_len;                // P (0: no prefix)
  pt_tensor **prefix_k, **prefix_v;  // n_layers each (B, Hkv, P, hd) kept, or NULL when P is 0
  int *built;                        // (n_layers): the layer's compact context is set
  int64_t *n_ctx;                    // (n_layers): N_l, the layer's kept entries over every row and head
  pt_tensor **ck, **cv;              // n_layers each (N_l, hd): the kept K (rotated) and V
  pt_tensor **seg;                   // n_layers each (N_l) i64: row * Hkv + head of each entry
  pt_tensor **pos;                   // n_layers each (N_l) i64: its position in the row's context
  int64_t dense_len;                 // D: dense entries after the press, every row the same
  pt_tensor **dk, **dv;              // n_layers each (B, Hkv, D, hd), NULL while D is 0
  pt_tensor *dense_valid;            // (B, D) bool, NULL while D is 0
  // The step in progress (between step_begin and step_end).
  int in_step, step_layers;          // layers that attended in this step
  int64_t step_len;                  // T
  pt_tensor *step_valid;             // (B, T) bool kept
  pt_tensor *step_mask;              // (B, 1, 1, T, P + D + T) bool kept: the dense keys each query sees
  int broken;                        // a step failed half-way: the layers disagree, refuse to go on
} kv_cache;

// An empty cache for the model's shapes, dtype and device. ctx_len (batch) each >= 1; prefix_k/v
// NULL or n_layers each (B, Hkv, P, hd) in the model's dtype and device (copied, the caller keeps
// its own). NULL with err on bad input.
kv_cache *kv_cache_new(const llama_model *m, int batch, const int *ctx_len, pt_tensor *const *prefix_k,
                       pt_tensor *const *prefix_v, pith_err *err);
void kv_cache_free(kv_cache *c);

// keep's sizes match the cache and every kept position of `layer` (-1: every layer) lies in its
// row's context; 0 or -1 with err naming the first bad entry.
int kv_cache_check_keep(const kv_cache *c, const kv_keep *keep, int layer, pith_err *err);

// The compact context of `layer` from its full context K (rotated) and V, each (B, Hkv, T, hd)
// with T >= every ctx_len (rows right-padded), keeping what keep says for that layer (NULL: every
// position of the row's context). Once per layer, before any step. 0 or -1 with err.
int kv_cache_set_layer(kv_cache *c, int layer, const pt_tensor *k, const pt_tensor *v, const kv_keep *keep,
                       pith_err *err);

// Starts a step of T new tokens; valid (B, T) bool (NULL: all real). Every layer must be set.
int kv_cache_step_begin(kv_cache *c, const pt_tensor *valid, int64_t T, pith_err *err);
// Attention of layer's queries q (B, H, T, hd) (rotated) over the cache plus the step's own k, v
// (B, Hkv, T, hd) (rotated k), causal among the new tokens, each query seeing only valid keys (and
// itself); appends k, v to the layer's dense tail. Returns (B, H, T, hd) in the model's dtype, in
// the current scope, or NULL with err. Layers in order 0..n_layers-1.
pt_tensor *kv_cache_attend(kv_cache *c, int layer, const pt_tensor *q, const pt_tensor *k, const pt_tensor *v,
                           pith_err *err);
// Ends the step: the new entries become part of the dense tail. 0 or -1 with err.
int kv_cache_step_end(kv_cache *c, pith_err *err);

// kv_cache_attend as a llama_inputs.attend callback (ctx: the kv_cache); the forward must have no
// prefix_k/v (the cache holds the prefix).
pt_tensor *kv_cache_llama_attend(const llama_layer_view *view, void *ctx, pith_err *err);

// The bytes the cache's tensors hold (their storages' sizes, so a view into a larger tensor would
// show), by part. Allocator slack is not counted: on the CPU each tensor's block is 64-byte aligned
// (< 64 bytes + malloc's header per tensor, 4 compact tensors per layer); CUDA's caching allocator
// rounds each block up to 512 bytes and keeps freed blocks reserved for reuse.
typedef struct {
  int64_t kept;    // compact K and V: kept entries × 2 × hd × element size
  int64_t index;   // the compact entries' segments and positions: kept entries × 2 × 8
  int64_t prefix;  // the dense prefix K and V
  int64_t dense;   // the dense tail K and V and its validity mask
  int64_t total;   // the sum
} kv_cache_usage;
kv_cache_usage kv_cache_bytes(const kv_cache *c);

#endif
