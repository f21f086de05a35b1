// generate: text generation with a KV cache over llama_forward, and the sampler it uses.
//
// The cache is the prefix llama_forward already takes: the prompt runs once with want_kv and
// kv_with_prefix, then every new token is one forward of T = 1 whose layers' K/V (the cache, then the
// token's) become the next cache. An optional
// initial prefix (per-layer K/V, e.g. the compress tokens of 500xCompressor) is attended to by
// the prompt and everything after it, and positions continue after it, as with Hugging Face's
// past_key_values. Runs with gradients off. Batch size 1 only.
//
// Sampling happens on the CPU in double precision: greedy (temperature 0, the first maximum as
// torch.argmax), or softmax(logits / temperature) restricted to the nucleus (the smallest set of
// most likely tokens whose mass reaches top_p), drawn with a splitmix64 generator seeded by
// `seed`, so the same seed gives the same tokens on any device.
#ifndef PITH_GENERATE_H
#define PITH_GENERATE_H

#include <stdint.h>

#include "base.h"
#include "llama.h"

typedef struct {
  int max_new_tokens;      // > 0
  double temperature;      // 0 = greedy; > 0 scales the logits before sampling
  double top_p;            // (0, 1]; 1 = the whole distribution
  uint64_t seed;           // for temperature > 0
  const int32_t *eos_ids;  // (n_eos): generating any of them stops (it is kept in the output)
  int n_eos;
} gen_config;

// Greedy, top_p 1, max_new_tokens 256, no eos.
gen_config gen_config_default(void);
// cfg's fields in range; 0, or -1 with err starting "who: ".
int gen_config_check(const gen_config *cfg, const char *who, pith_err *err);

// A 64-bit PRNG (splitmix64) for sampling; the state is the whole generator.
typedef struct {
  uint64_t state;
} gen_rng;
gen_rng gen_rng_new(uint64_t seed);
double gen_rng_uniform(gen_rng *r);  // [0, 1), 53 bits

// One token from logits (vocab) under cfg's temperature and top_p; rng is used only when
// temperature > 0 (one draw per call). Returns the id, or -1 for vocab <= 0, logits that are all
// NaN, or a failed allocation.
int32_t gen_sample(const float *logits, int vocab, const gen_config *cfg, gen_rng *rng);

// Generates up to cfg->max_new_tokens after the prompt.
//   m, lora: the model; lora NULL for the base model alone.
//   prefix_k, prefix_v: NULL, or n_layers each of (1, Hkv, P, hd) in the model's dtype and device,
//     already rotated (what llama_forward returns with want_kv); the caller keeps ownership.
//   prompt: (n_prompt) ids, n_prompt >= 1; its positions are P..P+n_prompt-1.
//   on_token: NULL, or called with each new id as it is chosen; a nonzero return stops after it.
//   *out: malloc'd (n_out) new ids (the caller frees; never NULL on success), the eos that
//     stopped generation included.
// Generation also stops when the context (P + prompt + new) reaches cfg.max_seq_len.
// Returns 0, or -1 with err (a bad config, a prompt id outside the vocabulary, a shim failure);
// no tensor handle outlives the call either way.
int generate(const llama_model *m, const lora_adapter *lora, pt_tensor *const *prefix_k,
             pt_tensor *const *prefix_v, const int32_t *prompt, int n_prompt, const gen_config *cfg,
             int (*on_token)(int32_t id, void *ctx), void *ctx, int32_t **out, int *n_out, pith_err *err);

// ---------------------------------------------------------------- generation over a pressed cache
//
// generate_pressed: B rows, each a context and a question of its own lengths, in one batch. The
// contexts are prefilled together (right-padded), and during that prefill `select` chooses, layer
// by layer, which context entries each (row, KV head) keeps (models/press.h plugs in here); the
// kept entries go into a compact cache (models/kv_cache.h) and the rest is freed at once. The
// questions are then read over that cache at positions continuing after the *uncompressed*
// context (as kvpress: position_ids = context_length + i), and generation runs with rows in
// lockstep, each finishing on its own (eos, on_token, max_new_tokens, the model's positions).
// Question-agnostic is this order; question-aware is the caller putting the question at the end of
// the context and giving an empty question (0 tokens is legal: the first token then comes from
// the context's last position). With no select every entry is kept, and one row gives exactly
// what generate() gives for context + question.

#include "kv_keep.h"

// Fill keep's layer view->layer (every row and KV head) with the positions to keep, each below the
// row's row_len[b] context tokens; the view is the context prefill's (prefix first: prefix_len
// entries, never candidates). 0, or nonzero with err to stop.
typedef int (*gen_select_fn)(void *ctx, const llama_layer_view *v, const int *row_len, kv_keep *keep, pith_err *err);

typedef struct {
  int batch;                        // B >= 1
  const int32_t *const *context;    // B arrays of ids
  const int *n_context;             // (B): each >= 1
  const int32_t *const *question;   // B arrays (NULL where the count is 0), or NULL: no questions
  const int *n_question;            // (B): each >= 0, or NULL: no questions
  pt_tensor *const *prefix_k;       // NULL, or n_layers each (B, Hkv, P, hd) rotated, never evicted
  pt_tensor *const *prefix_v;
  const lora_adapter *lora;         // NULL: the base model
  gen_select_fn select;             // NULL: keep every context entry
  void *select_ctx;
} gen_press_request;

typedef struct {
  int batch;
  int32_t **ids;       // (B) malloc'd arrays of new ids (an eos that stopped a row included)
  int *n;              // (B)
  kv_keep *keep;       // what the press kept, per (layer, row, KV head)
  int64_t kv_bytes;    // the cache's bytes right after the press: kept K/V + their index + prefix
  int64_t kv_kept;     // entries kept over every layer, row and KV head
  int64_t *row_bytes;  // (B): each row's share of kv_bytes (its kept entries, their index, its prefix)
  int64_t kv_dense_bytes;  // what a dense cache of the same contexts holds: L·2·B·Hkv·(P+max ctx)·hd·size
} gen_press_result;

// Generates for every row of req under cfg (its temperature and top_p too: each row samples with
// its own generator seeded by cfg->seed, so a row gives the same alone as in a batch). on_token:
// NULL, or called with (row, id) as each id is chosen; nonzero stops that row. Returns 0 with res
// filled (free with gen_press_result_free), or -1 with err (res left empty); no tensor handle
// outlives the call.
int generate_pressed(const llama_model *m, const gen_press_request *req, const gen_config *cfg,
                     int (*on_token)(int row, int32_t id, void *ctx), void *ctx, gen_press_result *res,
                     pith_err *err);
void gen_press_result_free(gen_press_result *r);

#endif
