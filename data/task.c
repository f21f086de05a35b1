// task: the token layouts of regeneration and QA rows (see task.h).
#include "task.h"

#include <stdlib.h>
#include <string.h>

// n ids from src to dst; either may be NULL when n is 0.
static void copy_ids(int32_t *dst, const int32_t *src, int64_t n) {
  if (n > 0) memcpy(dst, src, sizeof *dst * (size_t)n);
}

static int encode_piece(const tokenizer *tok, const char *text, int32_t **ids, int *n, pith_err *err) {
  size_t got = 0;
  if (tokenizer_encode(tok, text, strlen(text), 0, ids, &got, err)) return -1;
  *n = (int)got;
  return 0;
}

int task_tokens_init(task_tokens *tt, const tokenizer *tok, const char *what, pith_err *err) {
  memset(tt, 0, sizeof *tt);
  const int32_t *eos;
  if (tokenizer_eos_ids(tok, &eos) < 1) return pith_fail(err, "%s: the tokenizer names no eos token", what);
  tt->eos = eos[0];
  tt->bos = tokenizer_bos_id(tok) >= 0 ? tokenizer_bos_id(tok) : tt->eos;
  tt->pad = tokenizer_pad_id(tok) >= 0 ? tokenizer_pad_id(tok) : tt->eos;
  if (encode_piece(tok, TASK_QA_QUESTION_PREFIX, &tt->qp, &tt->n_qp, err) ||
      encode_piece(tok, TASK_QA_ANSWER_PREFIX, &tt->ap, &tt->n_ap, err)) {
    task_tokens_free(tt);
    return -1;
  }
  return 0;
}

int task_tokens_copy(task_tokens *dst, const task_tokens *src, pith_err *err) {
  *dst = *src;
  dst->qp = malloc(sizeof *dst->qp * (size_t)(src->n_qp > 0 ? src->n_qp : 1));
  dst->ap = malloc(sizeof *dst->ap * (size_t)(src->n_ap > 0 ? src->n_ap : 1));
  if (!dst->qp || !dst->ap) {
    task_tokens_free(dst);
    return pith_fail(err, "task: out of memory");
  }
  copy_ids(dst->qp, src->qp, src->n_qp);
  copy_ids(dst->ap, src->ap, src->n_ap);
  return 0;
}

void task_tokens_free(task_tokens *tt) {
  free(tt->qp);
  free(tt->ap);
  tt->qp = tt->ap = NULL;
  tt->n_qp = tt->n_ap = 0;
}

int task_encoder_row(const task_tokens *tt, const int32_t *ctx, int64_t n_ctx, int N, int32_t *row, uint8_t *mask) {
  int n = n_ctx < N ? (int)n_ctx : N;
  if (n > 0 && ctx != row) memmove(row, ctx, sizeof *row * (size_t)n);
  for (int t = 0; t < N; t++) {
    if (t >= n) row[t] = tt->pad;
    mask[t] = t < n;
  }
  return n;
}

int task_qa_decoder_row(const task_tokens *tt, const int32_t *q, int64_t nq, const int32_t *a, int64_t na, int M,
                        int32_t *row, uint8_t *mask, uint8_t *loss) {
  int64_t fixed = tt->n_qp + tt->n_ap;
  if (fixed + nq + na + 1 > M) nq = M - fixed - na - 1 > 0 ? M - fixed - na - 1 : 0;
  int eos = fixed + nq + na + 1 <= M;
  if (!eos) na = M - fixed - nq;
  int64_t t = 0;
  copy_ids(row, tt->qp, tt->n_qp);
  t += tt->n_qp;
  copy_ids(row + t, q, nq);
  t += nq;
  copy_ids(row + t, tt->ap, tt->n_ap);
  t += tt->n_ap;
  int answer_at = (int)t;
  copy_ids(row + t, a, na);
  t += na;
  if (eos) row[t++] = tt->eos;
  for (int64_t i = 0; i < M; i++) {
    if (i >= t) row[i] = tt->pad;
    mask[i] = i < t;
    loss[i] = i >= answer_at && i < t;
  }
  return answer_at;
}

void task_regen_decoder(const task_tokens *tt, const int32_t *text, int n_text, int M, int32_t *dec, uint8_t *mask,
                        int32_t *target) {
  for (int j = 0; j < M; j++) {
    dec[j] = j == 0 ? tt->bos : j <= n_text ? text[j - 1] : tt->pad;
    mask[j] = j <= n_text;
    target[j] = j < n_text ? text[j] : j == n_text ? tt->eos : TASK_NO_TARGET;
  }
}

void task_qa_targets(const int32_t *dec, const uint8_t *loss, int M, int32_t *target) {
  for (int j = 0; j < M; j++) target[j] = j + 1 < M && loss[j + 1] ? dec[j + 1] : TASK_NO_TARGET;
}

int task_lm_qa_len(int n_ctx, int n_dec) { return 1 + n_ctx + n_dec; }

void task_lm_qa_row(const task_tokens *tt, const int32_t *ctx, int n_ctx, const int32_t *dec, const uint8_t *dec_loss,
                    int n_dec, double answer_weight, int L, int32_t *row, uint8_t *mask, int32_t *target,
                    float *weight) {
  int n = task_lm_qa_len(n_ctx, n_dec);
  row[0] = tt->bos;
  copy_ids(row + 1, ctx, n_ctx);
  copy_ids(row + 1 + n_ctx, dec, n_dec);
  for (int j = n; j < L; j++) row[j] = tt->pad;
  for (int j = 0; j < L; j++) {
    mask[j] = j < n;
    target[j] = j + 1 < n ? row[j + 1] : TASK_NO_TARGET;
    if (!weight) continue;
    int learnt = j + 1 > n_ctx && j + 1 < n && dec_loss[j - n_ctx];  // row[j + 1] is dec[j - n_ctx]
    weight[j] = j + 1 >= n ? 0.0f : learnt ? (float)answer_weight : 1.0f;
  }
}

void task_padding_row(const task_tokens *tt, int L, int32_t *row, uint8_t *mask, int32_t *target, float *weight) {
  for (int j = 0; j < L; j++) {
    row[j] = tt->pad;
    mask[j] = 0;
    if (target) target[j] = TASK_NO_TARGET;
    if (weight) weight[j] = 0.0f;
  }
}

int task_decoder_prompt_len(const task_tokens *tt, task_kind kind, int nq) {
  return kind == TASK_QA ? tt->n_qp + nq + tt->n_ap : 1;
}

int task_decoder_prompt(const task_tokens *tt, task_kind kind, const int32_t *q, int nq, int32_t *out) {
  if (kind != TASK_QA) {
    out[0] = tt->bos;
    return 1;
  }
  copy_ids(out, tt->qp, tt->n_qp);
  copy_ids(out + tt->n_qp, q, nq);
  copy_ids(out + tt->n_qp + nq, tt->ap, tt->n_ap);
  return tt->n_qp + nq + tt->n_ap;
}

int task_needs_bos(const task_tokens *tt, const int32_t *ctx, int n_ctx) { return !(n_ctx > 0 && ctx[0] == tt->bos); }

int task_baseline_prompt(const task_tokens *tt, task_kind kind, const int32_t *ctx, int n_ctx, int part,
                         const int32_t *q, int nq, int32_t *out) {
  int n = 0;
  if (task_needs_bos(tt, ctx, n_ctx)) out[n++] = tt->bos;
  copy_ids(out + n, ctx, part);
  n += part;
  if (kind == TASK_QA) n += task_decoder_prompt(tt, kind, q, nq, out + n);
  return n;
}
