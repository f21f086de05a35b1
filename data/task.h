// task: the token layouts of what pith trains and evaluates, in one place. Two tasks read a
// context through an encoder (or, for `pith lm` and the baselines, as plain text):
//
//   regeneration  the decoder reads [bos] text and predicts text eos (500xCompressor / ICAE
//                 pretraining, and `pith lm` on documents);
//   QA            the decoder reads "Question: " q " Answer: " a eos and learns the answer and its
//                 eos (fine-tuning); `pith lm` on QA reads [bos] context "Question: " q " Answer: " a
//                 eos whole. Each prompt piece is tokenized on its own.
//
// The loader builds encoder and QA decoder rows with these functions, the trainer the decoder
// targets and the LM's rows, and evaluation the prompts generation starts from, so that what a
// model is evaluated on is what it was trained on. Plain C over int32 token arrays (no tensors);
// the caller owns every output array and sizes it as each function says.
#ifndef PITH_TASK_H
#define PITH_TASK_H

#include <stdint.h>

#include "base.h"
#include "tokenizer.h"

// The QA prompt: "Question: {q} Answer: " then the answer.
#define TASK_QA_QUESTION_PREFIX "Question: "
#define TASK_QA_ANSWER_PREFIX " Answer: "

// A target that is not predicted (cross-entropy's ignore_index).
#define TASK_NO_TARGET (-100)

typedef enum { TASK_REGEN, TASK_QA } task_kind;

// The special ids and prompt pieces of one tokenizer.
typedef struct {
  int32_t bos;   // the tokenizer's bos, or eos when it has none
  int32_t eos;   // the first of the tokenizer's eos ids
  int32_t pad;   // the tokenizer's pad, or eos when it has none (always masked out)
  int32_t *qp;   // (n_qp) ids of TASK_QA_QUESTION_PREFIX
  int n_qp;
  int32_t *ap;   // (n_ap) ids of TASK_QA_ANSWER_PREFIX
  int n_ap;
} task_tokens;

// Fill *tt from tok (what names the tokenizer in messages, e.g. its path). Fails when the tokenizer
// names no eos token. Free with task_tokens_free.
int task_tokens_init(task_tokens *tt, const tokenizer *tok, const char *what, pith_err *err);
// Copy of src with its own prompt arrays (for a loader that outlives its caller's copy).
int task_tokens_copy(task_tokens *dst, const task_tokens *src, pith_err *err);
void task_tokens_free(task_tokens *tt);

// Encoder row: row (N) = the first min(n_ctx, N) of ctx (n_ctx tokens), then pad; mask (N) 1 on
// the tokens. ctx may be row itself. Returns the tokens kept.
int task_encoder_row(const task_tokens *tt, const int32_t *ctx, int64_t n_ctx, int N, int32_t *row, uint8_t *mask);

// QA decoder row: row (M) = qp q ap a eos, then pad; mask (M) 1 on the tokens; loss (M) 1 on the
// answer and its eos (the positions whose token is learnt). When it does not fit in M, the
// question is cut first, then the answer, which then loses its eos (the sequence did not end
// there). q (nq), a (na): the question and (first) answer tokens; only the first M of each are
// read. Returns the position of the first answer token. Needs M >= n_qp + n_ap + 1.
int task_qa_decoder_row(const task_tokens *tt, const int32_t *q, int64_t nq, const int32_t *a, int64_t na, int M,
                        int32_t *row, uint8_t *mask, uint8_t *loss);

// Regeneration decoder: dec (M) = [bos] text then pad, mask (M) 1 on [bos] text, target (M) =
// text eos then TASK_NO_TARGET (each position predicts the next token). text: (n_text) tokens,
// M >= n_text + 1.
void task_regen_decoder(const task_tokens *tt, const int32_t *text, int n_text, int M, int32_t *dec, uint8_t *mask,
                        int32_t *target);

// QA decoder targets: target (M) = the next token where that token is learnt (loss, from
// task_qa_decoder_row), else TASK_NO_TARGET. dec, loss: (M).
void task_qa_targets(const int32_t *dec, const uint8_t *loss, int M, int32_t *target);

// Tokens in the LM's QA row for n_ctx context and n_dec decoder tokens: 1 + n_ctx + n_dec.
int task_lm_qa_len(int n_ctx, int n_dec);
// The LM's QA row: row (L) = [bos] ctx dec then pad, mask (L) 1 on the tokens, target (L) the
// next token or TASK_NO_TARGET past the end, weight (L) per target: answer_weight where the
// target is learnt in the QA decoder row (dec_loss), 1 for every other target, 0 for none.
// ctx (n_ctx); dec, dec_loss (n_dec): a QA decoder row's tokens and loss mask. weight may be
// NULL. L >= task_lm_qa_len(n_ctx, n_dec).
void task_lm_qa_row(const task_tokens *tt, const int32_t *ctx, int n_ctx, const int32_t *dec, const uint8_t *dec_loss,
                    int n_dec, double answer_weight, int L, int32_t *row, uint8_t *mask, int32_t *target,
                    float *weight);

// A padding row of a batch: row (L) = pad, mask (L) 0, target (L) TASK_NO_TARGET, weight (L) 0
// (target and weight may be NULL).
void task_padding_row(const task_tokens *tt, int L, int32_t *row, uint8_t *mask, int32_t *target, float *weight);

// Evaluation. The decoder prompt of an example: regeneration [bos]; QA qp q ap (q: (nq), whole).
// out holds task_decoder_prompt_len(tt, kind, nq) tokens; returns that count.
int task_decoder_prompt_len(const task_tokens *tt, task_kind kind, int nq);
int task_decoder_prompt(const task_tokens *tt, task_kind kind, const int32_t *q, int nq, int32_t *out);
// 1 when a prompt made of ctx (n_ctx) needs a bos before it (it does not start with one).
int task_needs_bos(const task_tokens *tt, const int32_t *ctx, int n_ctx);
// A baseline's prompt, the base model reading (part of) the context itself: [bos] unless ctx
// starts with it, then ctx's first `part` tokens (part <= n_ctx), then, for QA, the decoder
// prompt. out holds 1 + part + task_decoder_prompt_len(tt, kind, nq) tokens; returns the count.
int task_baseline_prompt(const task_tokens *tt, task_kind kind, const int32_t *ctx, int n_ctx, int part,
                         const int32_t *q, int nq, int32_t *out);

#endif
