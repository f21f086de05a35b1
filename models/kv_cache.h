// kv_cache: a KV cache for B rows that stores only the context entries a press kept, per KV head.
//
// Per layer, one buffer K and one V (B, Hkv, cap, hd) hold the dense entries back to back (or one
// pair per row, (1, Hkv, cap_b, hd), when the rows keep different counts):
//   [prefix P | kept context (dense layers) | tail D | room for more tail]
//   - the prefix: a 500x compressor's compress tokens, never evicted;
//   - the kept context, when every (row, KV head) of the layer keeps the same count n (every press
//     but adakv at batch 1, and rows of one length): a dense (B, Hkv, n, hd) block, no index; when
//     only each row's heads agree (rows of different lengths, any press but adakv): a dense
//     (1, Hkv, n_b, hd) block in each row's own buffer, no padding, no index;
//   - the tail: what comes after the press (the question, generated tokens), written in place
//     (room for kv_cache_reserve_tail's count, grown by doubling past it); rows advance in
//     lockstep, a validity mask (B, D) says which entries are real.
// A layer whose (row, head) counts differ (adakv, rows of different lengths) keeps its context
// compactly instead: one flat (N_l, hd) K and V holding every (row, KV head)'s kept entries back to
// back (segment row·Hkv + head, positions ascending in each), N_l = what the kv_keep says, no
// padding, with each entry's segment and original context position; its buffer holds the prefix
// and the tail only.
// Attention over a dense layer is one fused SDPA call over the buffer's filled part (with no mask
// when every tail entry and new token is real), one per row where each row has its buffer. Over a compact layer (kv_cache_attend) it is one
// softmax over the compact entries and the buffer's per (row, query head): the compact entries are
// scored against their row's queries (GQA: H/Hkv query heads share a KV head), their segment max
// taken with a scatter amax and their exp-weights and weighted values summed per segment with
// scatter_add / index_add (or one GEMM while B·Hkv <= head_dim), in f32.
//
// A step: kv_cache_step_begin (the new tokens' validity), then kv_cache_attend for every layer in
// order (each writes the layer's new K/V into its tail), then kv_cache_step_end. Runs with
// gradients off.
#ifndef PITH_KV_CACHE_H
#define PITH_KV_CACHE_H

#include <stdint.h>

#include "base.h"
#include "kv_keep.h"
#include "llama.h"

// How the kept context meets its queries (the same math): AUTO stores a layer dense where its
// (row, head) counts agree, else compact with GEMM while B·Hkv <= head_dim; SEGMENT and GEMM store
// every layer compact (tests run all three).
typedef enum { KV_ATTN_AUTO, KV_ATTN_SEGMENT, KV_ATTN_GEMM } kv_attn_path;

typedef struct {
  int n_layers, batch, n_kv_heads, n_heads, head_dim;
  kv_attn_path attn_path;            // AUTO unless set (before the layers are)
  pt_dtype dtype;
  pt_device device;
  int *ctx_len;                      // (batch): context tokens per row (the press's candidates)
  int64_t prefix_len;                // P (0: no prefix)
  pt_tensor **prefix_k, **prefix_v;  // n_layers each (B, Hkv, P, hd) until the layer is set, or NULL
  int *built;                        // (n_layers): the layer's context is set
  int *dense;                        // (n_layers): its kept context is dense in its buffer(s)
  int *groups;                       // (n_layers): 1 buffer pair for every row, or batch (one per row)
  int64_t *n_ctx;                    // (n_layers): N_l, the layer's kept entries over every row and head
  int64_t *base;                     // (n_layers × batch): entries before the tail in buffer g of layer
                                     // l, [l·batch + g]: P (+ the row's n when dense)
  pt_tensor **ck, **cv;              // n_layers each (N_l, hd): a compact layer's kept K (rotated) and V
  pt_tensor **seg;                   // n_layers each (N_l) i64: row * Hkv + head of each entry
  pt_tensor **pos;                   // n_layers each (N_l) i64: its position in the row's context
  pt_tensor **bk, **bv;              // n_layers × batch each, [l·batch + g]: buffer g of layer l,
                                     // (rows of g, Hkv, base + tail_cap, hd): see above
  int64_t tail_cap;                  // tail entries the buffers have room for
  int64_t dense_len;                 // D: tail entries written, every row the same
  pt_tensor *tail_valid;             // (B, tail_cap) bool; the first D are the tail's validity
  int tail_all_valid;                // every tail entry so far is real
  // The step in progress (between step_begin and step_end).
  int in_step, step_layers;          // layers that attended in this step
  int64_t step_len;                  // T
  int step_all_valid;                // every tail entry and new token is real: no mask needed
  pt_tensor *step_valid;             // (B, T) bool kept
  pt_tensor *step_tail_mask;         // (B, 1, T, D + T) bool kept: the tail and new keys each query sees
  pt_tensor *step_mask;              // (B, 1, T, step_mask_base + D + T) bool kept, the last one built
  int64_t step_mask_base;            // for every row (layers with the same base share it)
  int broken;                        // a step failed half-way: the layers disagree, refuse to go on
} kv_cache;

// An empty cache for the model's shapes, dtype and device. ctx_len (batch) each >= 1; prefix_k/v
// NULL or n_layers each (B, Hkv, P, hd) in the model's dtype and device (copied, the caller keeps
// its own). NULL with err on bad input.
kv_cache *kv_cache_new(const llama_model *m, int batch, const int *ctx_len, pt_tensor *const *prefix_k,
                       pt_tensor *const *prefix_v, pith_err *err);
void kv_cache_free(kv_cache *c);

// Room for n tail entries (the question and the new tokens) in every layer's buffer, so that steps
// write in place; past it the buffers grow by doubling (a copy). Any time before the tail outgrows
// it; 0 or -1 with err.
int kv_cache_reserve_tail(kv_cache *c, int64_t n, pith_err *err);

// keep's sizes match the cache and every kept position of `layer` (-1: every layer) lies in its
// row's context; 0 or -1 with err naming the first bad entry.
int kv_cache_check_keep(const kv_cache *c, const kv_keep *keep, int layer, pith_err *err);

// The kept context of `layer` from its full context K (rotated) and V, each (B, Hkv, T, hd) with
// T >= every ctx_len (rows right-padded), keeping what keep says for that layer (NULL: every
// position of the row's context): dense when every (row, head) keeps the same count (attn_path
// AUTO), else compact. Once per layer, before any step. 0 or -1 with err.
int kv_cache_set_layer(kv_cache *c, int layer, const pt_tensor *k, const pt_tensor *v, const kv_keep *keep,
                       pith_err *err);

// Starts a step of T new tokens; valid (B, T) bool (NULL: all real). Every layer must be set.
int kv_cache_step_begin(kv_cache *c, const pt_tensor *valid, int64_t T, pith_err *err);
// Attention of layer's queries q (B, H, T, hd) (rotated) over the cache plus the step's own k, v
// (B, Hkv, T, hd) (rotated k), causal among the new tokens, each query seeing only valid keys (and
// itself); writes k, v into the layer's tail. Returns (B, H, T, hd) in the model's dtype, in
// the current scope, or NULL with err. Layers in order 0..n_layers-1.
pt_tensor *kv_cache_attend(kv_cache *c, int layer, const pt_tensor *q, const pt_tensor *k, const pt_tensor *v,
                           pith_err *err);
// Ends the step: the new entries become part of the dense tail. 0 or -1 with err.
int kv_cache_step_end(kv_cache *c, pith_err *err);

// kv_cache_attend as a llama_inputs.attend callback (ctx: the kv_cache); the forward must have no
// prefix_k/v (the cache holds the prefix).
pt_tensor *kv_cache_llama_attend(const llama_layer_view *view, void *ctx, pith_err *err);

// The bytes the cache holds, by part; total is the sum of its tensors' storages (a view into a
// larger tensor would show). Allocator slack is not counted: on the CPU each tensor's block is
// 64-byte aligned (< 64 bytes + malloc's header per tensor: 2 buffers and a compact layer's 4
// tensors per layer); CUDA's caching allocator rounds each block up to 512 bytes and keeps freed
// blocks reserved for reuse.
typedef struct {
  int64_t kept;      // kept context K and V: kept entries × 2 × hd × element size
  int64_t index;     // compact layers' segments and positions: their entries × 2 × 8 (dense layers: none)
  int64_t prefix;    // the prefix K and V
  int64_t dense;     // the tail's K and V written so far (D entries) and its validity
  int64_t reserved;  // room in the buffers for tail entries not written yet (kv_cache_reserve_tail)
  int64_t total;     // the sum: every storage the cache holds
} kv_cache_usage;
kv_cache_usage kv_cache_bytes(const kv_cache *c);

#endif
