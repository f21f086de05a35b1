// hard_compress: prompt compression by dropping tokens, as LLMLingua and LongLLMLingua do
// (llmlingua 0.2.2's PromptCompressor.compress_prompt, reproduced decision for decision).
//
// A prompt is an instruction, contexts and a question; only the contexts are compressed.
//   budget: the kept fraction `rate` of all scorer tokens (one bos counted per segment), less the
//     instruction and the question: target = rate·(|I| + |Q| + Σ|C_i|) − |I| − |Q|.
//   coarse (several contexts): rank the contexts (LLMLingua: by perplexity, highest first;
//     LongLLMLingua: by the NLL of the question given the context, lowest first), take them in
//     rank order until the budget target + 100 is crossed (the crossing one is kept), put them back
//     in order (original, sort = rank order, two_stage), and give each a ratio offset by rank
//     (dynamic ratio: +d for the best down to −d for the last).
//   fine (iterative token-level compression): the kept contexts joined by "\n\n" are cut into
//     windows of `iterative_size` tokens; each window is rescored after the already compressed
//     prefix (a KV cache), and keeps token i when the NLL of token i+1 exceeds the window's
//     threshold, the ratio-quantile of all current scores of the sequence. With a question
//     condition (LongLLMLingua), the question is put before the contexts, and with
//     condition_compare the score is contrastive: NLL(x | context) − NLL(x | question, context).
//   The last partial window is never compressed, and inputs shorter than one window are kept
//     whole: llmlingua's behaviour, kept on purpose (the default; exact is pith's own mode).
// --exact is pith's own budget mode, not llmlingua's (see hc_options.exact).
// Deliberate difference: a budget that leaves nothing for the contexts (instruction and question
// as long as the target) is an error here; llmlingua silently keeps almost nothing.
#ifndef PITH_HARD_COMPRESS_H
#define PITH_HARD_COMPRESS_H

#include <stdint.h>

#include "base.h"
#include "scorer.h"

typedef enum { HC_RANK_LLMLINGUA, HC_RANK_LONGLLMLINGUA } hc_rank_method;
// Where the question goes when a context is ranked ("none": not at all).
typedef enum { HC_COND_NONE, HC_COND_BEFORE, HC_COND_AFTER } hc_condition;
typedef enum { HC_REORDER_ORIGINAL, HC_REORDER_SORT, HC_REORDER_TWO_STAGE } hc_reorder;

typedef struct {
  double rate;                // kept fraction, (0, 1]
  double target_tokens;       // > 0: the budget in scorer tokens, overriding rate
  int iterative_size;         // window of the fine stage (200)
  hc_rank_method rank_method;
  hc_condition condition;     // condition_in_question without its "_condition" suffix
  int condition_flag;         // the suffix: the question is put before the contexts in the fine stage
  int condition_compare;      // contrastive scores in the fine stage (implies condition_flag)
  hc_reorder reorder;
  double dynamic_ratio;       // dynamic_context_compression_ratio
  char budget_op;             // context_budget: '+', '-' or '*' with budget_value ("+100")
  double budget_value;
  int context_filter;         // use_context_level_filter
  int token_filter;           // use_token_level_filter
  int concate_question;       // the question ends the compressed prompt
  int add_instruction;        // the instruction joins the question prefix
  // Exact budget (not llmlingua's): the token stage keeps the highest-scoring tokens (NLL of the
  // token itself, contrastive with condition_compare) in whatever number makes the compressed
  // prompt count_target(prompt) = rate · count_target(original) tokens (or target_tokens when
  // given), found by bisection; scores come from chunks of max_pos/2 tokens after the previous
  // chunk. count_target: tokens of a text under the target's tokenizer, -1 on failure.
  int exact;
  int64_t (*count_target)(const char *text, void *ctx);
  void *count_ctx;
  // Progress of the fine stage: tokens done of the total, per window. NULL: none.
  void (*progress)(int64_t done, int64_t total, void *ctx);
  void *progress_ctx;
} hc_options;

// compress_prompt's defaults (method llmlingua) and LongLLMLingua's recommended settings
// (rank longllmlingua, condition after + compare, reorder sort, dynamic ratio 0.3).
hc_options hc_options_llmlingua(void);
hc_options hc_options_longllmlingua(void);

typedef struct {
  char *prompt;            // the compressed prompt: instruction, contexts, question joined by "\n\n"
  char *context_prompt;    // the compressed contexts alone
  double target_tokens;    // the budget the fine stage used
  int n_contexts;
  int *rank;               // (n_contexts) context indices in rank order; NULL without a coarse stage
  int n_used;
  int *used;               // (n_used) the contexts kept, in the order they were joined
  int32_t *fine_ids;       // (n_fine) the fine stage's tokens: the kept contexts joined, no bos
  int64_t n_fine;
  uint8_t *kept;           // (n_fine) 1 = kept
  int32_t *kept_ids;       // (n_kept)
  int64_t n_kept;
  float *first_nll;        // (n_first_nll) the first pass's scores over the fine stage's sequence
  int64_t n_first_nll;     //   (question prefix included when there is one)
  int n_windows;           // windows scored
} hc_result;

// contexts: n_contexts strings (0: one " " as llmlingua); instruction and question may be "" or
// NULL. Returns 0, or -1 with err (a scorer failure, a budget that leaves nothing, ...).
int hc_compress(scorer *s, const char *const *contexts, int n_contexts, const char *instruction,
                const char *question, const hc_options *o, hc_result *r, pith_err *err);
void hc_result_free(hc_result *r);

// LongLLMLingua's subsequence recovery: spans of `response` that occur in the compressed prompt
// are replaced by the shortest matching span of the original prompt's tokens. malloc'd.
char *hc_recover(const tokenizer *tok, const char *original, const char *compressed, const char *response,
                 pith_err *err);

#endif
