// ehpc: Evaluator Heads based Prompt Compression (arXiv 2501.12959). A few attention heads of an
// early layer ("evaluator heads") read the prompt from its last `window` tokens (the question);
// their attention, averaged over those queries and summed over the heads, scores every earlier
// token. The scores are smoothed with avg_pool1d (an odd kernel, so a token's score stays
// centred on it) and the top tokens per budget are kept in their original order, plus the window.
// Only layers up to the evaluator layer run, which is where the method's speed comes from.
//
// The heads are found once per model by needle-in-a-haystack probes (ehpc_probe): a made-up fact
// is put at depths 0.1 .. 0.9 of a haystack of corpus documents and asked about at the end; a
// head's score is its attention from the last `window` queries, averaged over them, summed over
// the needle's tokens, averaged over the probes. The best layer has the largest sum of head
// scores; its top heads are the evaluators. They are kept in the model folder's ehpc.json.
#ifndef PITH_EHPC_H
#define PITH_EHPC_H

#include <stdint.h>

#include "base.h"
#include "corpus.h"
#include "hard_compress.h"
#include "llama.h"
#include "tokenizer.h"

enum { EHPC_MAX_HEADS = 256 };
#define EHPC_FORMAT "pith.ehpc"
#define EHPC_FORMAT_VERSION 1

typedef struct {
  int layer;
  int n_heads;
  int heads[EHPC_MAX_HEADS];
  int window, kernel;  // the settings saved with the heads; 0 when not given
} ehpc_heads;

// "L:h,h,..." (the --heads option). 0, or -1 with err.
int ehpc_parse_heads(const char *spec, ehpc_heads *h, pith_err *err);
// From a folder (its ehpc.json, what ehpc_probe writes, else its manifest.json's "ehpc" object) or
// a file of either kind: {"layer": L, "heads": [...], "window": W, "kernel": K}. 0, or -1 with
// err naming the file.
int ehpc_load_heads(const char *path, ehpc_heads *h, pith_err *err);
// The heads exist in the model (a layer and head indices in range, no repeats, at least one).
int ehpc_check_heads(const llama_model *m, const ehpc_heads *h, pith_err *err);

// Per-key scores of the sequence ids (n): the heads' attention probabilities from the last
// `window` queries, averaged over those queries, summed over the heads: scores (n).
// Needs 1 <= window < n <= the model's max_position_embeddings.
int ehpc_token_scores(llama_model *m, const ehpc_heads *h, const int32_t *ids, int64_t n, int window, float *scores,
                      pith_err *err);
// Every head's attention of one layer from the last `window` queries, averaged over them:
// out (n_heads, n), row-major. What the probe reads.
int ehpc_layer_attention(llama_model *m, int layer, const int32_t *ids, int64_t n, int window, float *out,
                         pith_err *err);

// avg_pool1d(x, kernel, stride 1, padding kernel / 2) with the padding counted (torch's default
// count_include_pad): y[i] = (x[i - kernel/2] + ... + x[i + kernel/2]) / kernel, zeros outside.
// kernel must be odd (an even one shifts the scores by half a token). y may not alias x.
void ehpc_pool(const float *x, int64_t n, int kernel, float *y);
// kept (n): the positions with force set, then the highest scores among the others (an earlier
// position wins a tie) until k are kept. -1 with err when k is below the forced count.
int ehpc_select(const float *scores, int64_t n, const uint8_t *force, int64_t k, uint8_t *kept, pith_err *err);

typedef struct {
  double rate;           // the kept fraction of the prompt's scorer tokens, (0, 1]
  double target_tokens;  // > 0: the contexts' budget in scorer tokens, overriding rate
  int window;            // queries that score (the last tokens of the prompt), kept whole
  int kernel;            // avg_pool1d kernel, odd
} ehpc_options;

// Compress as hard_compress.h describes a prompt (instruction and question kept whole, only the
// contexts compressed): the sequence is [bos] instruction, the contexts joined by "\n\n", the
// question, each tokenized on its own (a longer prompt than the model reads is scored in chunks,
// each followed by the window); the contexts' budget is rate · (|I| + |C| + |Q|) − |I| −
// |Q| tokens (or target_tokens), the window's context tokens among them. r gets prompt,
// context_prompt, target_tokens, used (every context), fine_ids and kept over the contexts'
// tokens, kept_ids; rank and first_nll stay NULL. scores (optional): malloc'd per-key scores of
// the whole sequence (bos included), n_scores of them, for tracing.
int ehpc_compress(llama_model *m, const tokenizer *tok, const ehpc_heads *h, const char *const *contexts,
                  int n_contexts, const char *instruction, const char *question, const ehpc_options *o, hc_result *r,
                  float **scores, int64_t *n_scores, pith_err *err);

typedef struct {
  int window;           // queries at the end of each probe (default 8)
  int top;              // heads kept from the best layer (default 8, at most the layer's heads)
  int n_depths;         // depths 1/(n+1) .. n/(n+1): 9 gives 0.1 .. 0.9
  int n_needles;        // needles (facts) per depth
  int haystack_tokens;  // probe length in tokens (default: the model's context, at most 1024)
  uint64_t seed;
} ehpc_probe_options;

typedef struct {
  int n_layers, n_heads;
  double *head_scores;  // (n_layers, n_heads): needle attention, averaged over the probes
  double *layer_scores; // (n_layers): the sum of the layer's head scores
  int best_layer;
  ehpc_heads heads;     // the best layer's top heads, best first
  double chosen_mean;   // the chosen heads' mean score
  double median;        // the median head score over every (layer, head)
  int n_probes;
} ehpc_probe_result;

// One probe prompt, for whoever wants them (prompts to test compression on): the haystack with
// the needle in it, the question, the needle sentence, its depth.
typedef void (*ehpc_probe_prompt_fn)(const char *context, const char *question, const char *needle, double depth,
                                     void *ctx);

// Runs the probes over documents of c (a documents corpus; its text is read) and scores the
// heads. With only_prompts, nothing is run: the prompts go to fn alone. 0, or -1 with err.
int ehpc_probe(llama_model *m, const tokenizer *tok, corpus *c, const ehpc_probe_options *o, int only_prompts,
               ehpc_probe_prompt_fn fn, void *fn_ctx, ehpc_probe_result *r, pith_err *err);
// The same scores over given probes (a task's own needles, e.g. pith compress ehpc-probe
// --probes): each context holds its needle (its first occurrence is scored) and is followed by its
// question, read as ehpc_compress reads {context, question}; o's window and top apply. 0, or -1
// with err naming the probe (1-based).
typedef struct {
  const char *context, *question, *needle;
} ehpc_probe_item;
int ehpc_probe_items(llama_model *m, const tokenizer *tok, const ehpc_probe_item *items, int n_items,
                     const ehpc_probe_options *o, ehpc_probe_result *r, pith_err *err);
void ehpc_probe_result_free(ehpc_probe_result *r);

#endif
