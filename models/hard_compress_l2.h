// hard_compress_l2: LLMLingua-2 (llmlingua 0.2.2's compress_prompt with use_llmlingua2), decision for
// decision: a BERT or XLM-R token classifier says, per token, how likely it is to be kept.
//
//   force tokens: each one the classifier's tokenizer does not read as exactly one token is
//     replaced in the text by an added token [NEWi] (i: its index in the list; its embedding row
//     the mean of the others, as transformers' resize_token_embeddings makes it).
//   chunks: a context's tokens are cut into chunks of at most 510, each ending after the last
//     chunk-end token ("." or "\n") within the 510; a chunk is turned back into text by the
//     tokenizer's decoder and read again ([CLS] text [SEP], cut at 512; for XLM-R both ends are
//     <unk>, id 3, because llmlingua writes BERT's "[CLS]"/"[SEP]" strings for every model).
//   p_keep = softmax(logits)[..., 1]; tokens merge into words (BERT: a word starts at a piece
//     without "##"; XLM-R: at a piece with "▁", a punctuation piece or a force token), special
//     tokens vanish; a word's probability is the mean (float32) of its tokens' ("first": the
//     first's), 1.0 for force tokens (and, with force_reserve_digit, pieces with a digit).
//   threshold per chunk: np.percentile (linear) of the word probabilities, each repeated as many
//     times as the word has cl100k tokens (the word as merged, XLM-R's "▁" included), at
//     int(100·(1 − rate) + 1); a word is kept when its probability is above it (or equal to a
//     threshold of 1.0). The kept words, decoded, are the chunk's compressed text; a context's
//     chunks are concatenated without a separator, the contexts joined by "\n\n".
//   context filter (several contexts, on by default as in compress_prompt): a context's score is
//     the mean of its words' probabilities before forcing; contexts at or above the percentile
//     int(100·(1 − (rate + 1)/2)) are kept (target_tokens: 2·target / original instead).
//   target_tokens: rate = target / cl100k tokens of the (kept) contexts.
// Word rules follow the classifier's architecture (llmlingua reads them off the folder name,
// which must contain "bert-base-multilingual-cased" or "xlm-roberta-large").
#ifndef PITH_HARD_COMPRESS_L2_H
#define PITH_HARD_COMPRESS_L2_H

#include <stdint.h>

#include "base.h"
#include "encoder.h"
#include "tokenizer.h"

#define L2_MAX_FORCE 100  // llmlingua's max_force_token: [NEW0] .. [NEW99]

typedef struct {
  double rate;                       // kept fraction, (0, 1]
  double target_tokens;              // > 0: the budget in cl100k tokens, overriding rate
  const char *const *force_tokens;   // (n_force) kept always
  int n_force;
  const char *const *chunk_end;      // (n_chunk_end) where a chunk may end; NULL: ".", "\n"
  int n_chunk_end;
  int force_reserve_digit;           // words with a digit are kept
  int drop_consecutive;              // a force token repeated with nothing kept between is dropped
  int context_filter;                // use_context_level_filter (1 in compress_prompt)
  int token_filter;                  // use_token_level_filter
  int first_token;                   // token_to_word "first" (else "mean")
} l2_options;

l2_options l2_options_default(void);

typedef struct {
  encoder_model *m;         // borrowed; its word table grows by L2_MAX_FORCE rows when a force token needs [NEWi]
  const tokenizer *tok;     // the classifier's
  const tokenizer *cl100k;  // counts words for the threshold (data/tokenizer_tiktoken.c)
  int xlmr;                 // XLM-R's word rules (▁), else BERT's (##)
  int32_t n_tok;            // len(tokenizer): [NEWi] is id n_tok + i
  int32_t cls_id, sep_id;   // what "[CLS]" and "[SEP]" are in this vocabulary (unk when absent)
  int grown;                // the [NEWi] rows are in the word table
} l2_scorer;

// Checks that the tokenizer fits the model; 0 or -1 with err.
int l2_scorer_init(l2_scorer *s, encoder_model *m, const tokenizer *tok, const tokenizer *cl100k, pith_err *err);

typedef struct {
  char *prompt;             // the compressed contexts joined by "\n\n"
  int n_contexts;
  uint8_t *context_kept;    // (n_contexts) 1 = kept by the context filter (all 1 without it)
  int64_t origin_tokens;    // cl100k tokens of the contexts
  int64_t compressed_tokens;  // cl100k tokens of the compressed contexts (summed per context)
  double rate_used;         // the rate the token stage used
  int n_chunks;
  int n_words;              // the words and their labels (1 = kept), as return_word_label gives them
  char **words;             //   (without a token stage: llmlingua's regex words, labelled 1)
  uint8_t *labels;
} l2_result;

// contexts: n_contexts strings (n_contexts >= 1). Returns 0, or -1 with err.
int l2_compress(l2_scorer *s, const char *const *contexts, int n_contexts, const l2_options *o, l2_result *r,
                pith_err *err);
void l2_result_free(l2_result *r);

// np.percentile(v, q) with the linear method, computed in float32 (f32 = 1) or float64 as numpy
// does for an array of that dtype. v is sorted in place. NAN for n = 0.
double l2_percentile(double *v, int64_t n, int q, int f32);

// cl100k's tiktoken file for llmlingua2's word weights: `given` (the --cl100k option) when not NULL,
// else $TIKTOKEN_CACHE_DIR's copy under tiktoken's cache name, else .venv-peers/tiktoken-cache/ in
// the working folder or beside the build (scripts/setup-peers puts it there). The path goes to
// out; 0, or -1 with err saying how to get the file.
int l2_find_cl100k(const char *given, char *out, size_t size, pith_err *err);

#endif
