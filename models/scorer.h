// scorer: per-token scores from a causal LM, the one interface the hard-compression path calls.
//
// The score of a position is LLMLingua's: the negative log-likelihood of the *next* token,
// nll[j] = -log p(ids[j+1] | ids[0..j]), in f32 like transformers' CrossEntropyLoss. Iterative
// compression rescores a window after the compressed prefix, so the scorer keeps that prefix as a
// KV cache (scorer_cache): a call forwards only ids[cache.len .. n) at positions cache.len.., as
// transformers does with past_key_values, and leaves the cache covering ids[0 .. n). The cache
// can then be cut back (scorer_cache_truncate) or have spans cut out (scorer_cache_splice, what
// LLMLingua does when the sequence outgrows the model's context).
//
// A classifier scorer (LLMLingua-2's token classifier) joins this file later, next to the causal one.
#ifndef PITH_SCORER_H
#define PITH_SCORER_H

#include <stdint.h>

#include "base.h"
#include "llama.h"
#include "tokenizer.h"

typedef struct {
  llama_model *lm;
  tokenizer *tok;
  int max_pos;  // the model's max_position_embeddings: LLMLingua's cap on one forward
} scorer;

typedef struct {
  int n_layers;
  pt_tensor **k, **v;  // n_layers each of (1, Hkv, len, hd), kept handles; NULL when len == 0
  int64_t len;
} scorer_cache;

// A scorer over a loaded model and its tokenizer (both borrowed; loading is the driver's:
// checkpoints/hf_folder.h comes after models/ in the data flow).
scorer scorer_new(llama_model *lm, tokenizer *tok);

// nll (n - cache->len - 1 floats) of ids[cache->len + 1 .. n) given everything before; cache
// NULL: no prefix and none kept. With a cache, it covers ids[0 .. n) afterwards.
// n - cache->len must be >= 1 (a single token gives no score).
int scorer_nll(scorer *s, const int32_t *ids, int64_t n, scorer_cache *cache, float *nll, pith_err *err);

// Keep the first n positions.
int scorer_cache_truncate(scorer_cache *c, int64_t n, pith_err *err);
// The cache becomes positions [0, a) then [b, len) (a and b clipped to [0, len]; a > b repeats
// positions, as torch.cat of the two slices would). Keys keep the rotations they were made with.
int scorer_cache_splice(scorer_cache *c, int64_t a, int64_t b, pith_err *err);
void scorer_cache_clear(scorer_cache *c);

// Mean NLL of a text read as [bos] + its tokens, over the tokens from `from` on (LLMLingua's
// get_ppl(text).mean() and its condition_mode "after"). NAN when nothing is scored.
int scorer_mean_nll(scorer *s, const int32_t *ids, int64_t n, int64_t from, double *mean, pith_err *err);

#endif
