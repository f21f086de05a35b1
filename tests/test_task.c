// task: the row layouts (data/task.h) against rows worked out by hand: encoder cut and padding, the
// QA decoder row's cutting rules (question first, then the answer, which loses its eos), empty
// questions and answers, the decoder targets, the LM's QA row and its answer weights, and the
// evaluation prompts with and without a leading bos; then task_tokens_init on a real tokenizer.
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "task.h"
#include "tokenizer.h"

// Token ids: bos 1, eos 2, pad 0, "Question: " = 10 11, " Answer: " = 20 21 22.
static int32_t QP[2] = {10, 11}, AP[3] = {20, 21, 22};
static const task_tokens TT = {.bos = 1, .eos = 2, .pad = 0, .qp = QP, .n_qp = 2, .ap = AP, .n_ap = 3};
#define NT TASK_NO_TARGET

static int same_ids(const int32_t *got, const int32_t *want, int n) {
  for (int i = 0; i < n; i++)
    if (got[i] != want[i]) {
      fprintf(stderr, "  at %d: got %d, want %d\n", i, got[i], want[i]);
      return 0;
    }
  return 1;
}

static int same_bytes(const uint8_t *got, const char *want) {  // want: "1101..."
  for (int i = 0; want[i]; i++)
    if (got[i] != (want[i] == '1')) {
      fprintf(stderr, "  at %d: got %d, want %c\n", i, got[i], want[i]);
      return 0;
    }
  return 1;
}

static void test_encoder_row(void) {
  int32_t ctx[3] = {5, 6, 7}, row[5];
  uint8_t mask[5];
  CHECK(task_encoder_row(&TT, ctx, 3, 5, row, mask) == 3);
  CHECK(same_ids(row, (int32_t[]){5, 6, 7, 0, 0}, 5) && same_bytes(mask, "11100"));
  CHECK(task_encoder_row(&TT, ctx, 3, 2, row, mask) == 2);  // cut to N
  CHECK(same_ids(row, (int32_t[]){5, 6}, 2) && same_bytes(mask, "11"));
  int32_t inplace[4] = {8, 9, 77, 77};  // the loader reads the tokens into the row first
  CHECK(task_encoder_row(&TT, inplace, 2, 4, inplace, mask) == 2);
  CHECK(same_ids(inplace, (int32_t[]){8, 9, 0, 0}, 4) && same_bytes(mask, "1100"));
  CHECK(task_encoder_row(&TT, NULL, 0, 3, row, mask) == 0);
  CHECK(same_ids(row, (int32_t[]){0, 0, 0}, 3) && same_bytes(mask, "000"));
}

static void test_qa_decoder_row(void) {
  int32_t q[3] = {30, 31, 32}, a[5] = {40, 41, 42, 43, 44}, row[12], target[12];
  uint8_t mask[12], loss[12];
  // Fits: 2 + 3 + 3 + 2 + eos = 11 of 12.
  CHECK(task_qa_decoder_row(&TT, q, 3, a, 2, 12, row, mask, loss) == 8);
  CHECK(same_ids(row, (int32_t[]){10, 11, 30, 31, 32, 20, 21, 22, 40, 41, 2, 0}, 12));
  CHECK(same_bytes(mask, "111111111110") && same_bytes(loss, "000000001110"));
  task_qa_targets(row, loss, 12, target);  // each position predicts the next learnt token
  CHECK(same_ids(target, (int32_t[]){NT, NT, NT, NT, NT, NT, NT, 40, 41, 2, NT, NT}, 12));
  // One token short: the question is cut (to 2), the answer and its eos stay.
  CHECK(task_qa_decoder_row(&TT, q, 3, a, 2, 10, row, mask, loss) == 7);
  CHECK(same_ids(row, (int32_t[]){10, 11, 30, 31, 20, 21, 22, 40, 41, 2}, 10));
  CHECK(same_bytes(mask, "1111111111") && same_bytes(loss, "0000000111"));
  // Answer too long: the question goes, the answer is cut to 3 and has no eos.
  CHECK(task_qa_decoder_row(&TT, q, 1, a, 5, 8, row, mask, loss) == 5);
  CHECK(same_ids(row, (int32_t[]){10, 11, 20, 21, 22, 40, 41, 42}, 8));
  CHECK(same_bytes(mask, "11111111") && same_bytes(loss, "00000111"));
  task_qa_targets(row, loss, 8, target);
  CHECK(same_ids(target, (int32_t[]){NT, NT, NT, NT, 40, 41, 42, NT}, 8));
  // Exactly full with its eos.
  CHECK(task_qa_decoder_row(&TT, NULL, 0, a, 2, 8, row, mask, loss) == 5);
  CHECK(same_ids(row, (int32_t[]){10, 11, 20, 21, 22, 40, 41, 2}, 8) && same_bytes(loss, "00000111"));
  // Empty question and no answer: the prompt, then eos, which alone is learnt.
  CHECK(task_qa_decoder_row(&TT, NULL, 0, NULL, 0, 7, row, mask, loss) == 5);
  CHECK(same_ids(row, (int32_t[]){10, 11, 20, 21, 22, 2, 0}, 7));
  CHECK(same_bytes(mask, "1111110") && same_bytes(loss, "0000010"));
  // A question far longer than M: cut by its length, only its first tokens are read.
  int32_t long_q[6] = {30, 31, 32, 33, 34, 35};
  CHECK(task_qa_decoder_row(&TT, long_q, 100000, a, 1, 9, row, mask, loss) == 7);
  CHECK(same_ids(row, (int32_t[]){10, 11, 30, 31, 20, 21, 22, 40, 2}, 9));
}

static void test_regen_decoder(void) {
  int32_t text[3] = {5, 6, 7}, dec[5], target[5];
  uint8_t mask[5];
  task_regen_decoder(&TT, text, 3, 5, dec, mask, target);
  CHECK(same_ids(dec, (int32_t[]){1, 5, 6, 7, 0}, 5) && same_bytes(mask, "11110"));
  CHECK(same_ids(target, (int32_t[]){5, 6, 7, 2, NT}, 5));
  task_regen_decoder(&TT, text, 0, 3, dec, mask, target);  // an empty text: [bos] predicts eos
  CHECK(same_ids(dec, (int32_t[]){1, 0, 0}, 3) && same_bytes(mask, "100"));
  CHECK(same_ids(target, (int32_t[]){2, NT, NT}, 3));
}

static void test_lm_qa_row(void) {
  int32_t ctx[2] = {50, 51}, dec[7], row[11], target[11];
  uint8_t dmask[7], loss[7], mask[11];
  float w[11];
  // dec = "Question: " " Answer: " eos (no question, no answer), then pad.
  CHECK(task_qa_decoder_row(&TT, NULL, 0, NULL, 0, 7, dec, dmask, loss) == 5);
  CHECK(task_lm_qa_len(2, 6) == 9);
  task_lm_qa_row(&TT, ctx, 2, dec, loss, 6, 3.0, 11, row, mask, target, w);
  CHECK(same_ids(row, (int32_t[]){1, 50, 51, 10, 11, 20, 21, 22, 2, 0, 0}, 11) && same_bytes(mask, "11111111100"));
  CHECK(same_ids(target, (int32_t[]){50, 51, 10, 11, 20, 21, 22, 2, NT, NT, NT}, 11));
  const float want_w[11] = {1, 1, 1, 1, 1, 1, 1, 3, 0, 0, 0};  // the eos is the learnt target
  CHECK(memcmp(w, want_w, sizeof w) == 0);
  // No context, a 2-token answer: weights on the answer and its eos.
  int32_t q[1] = {30}, a[2] = {40, 41}, dec2[9], row2[10], target2[10];
  uint8_t dmask2[9], loss2[9], mask2[10];
  float w2[10];
  CHECK(task_qa_decoder_row(&TT, q, 1, a, 2, 9, dec2, dmask2, loss2) == 6);
  task_lm_qa_row(&TT, NULL, 0, dec2, loss2, 9, 0.5, 10, row2, mask2, target2, w2);
  CHECK(same_ids(row2, (int32_t[]){1, 10, 11, 30, 20, 21, 22, 40, 41, 2}, 10) && same_bytes(mask2, "1111111111"));
  const float want_w2[10] = {1, 1, 1, 1, 1, 1, 0.5f, 0.5f, 0.5f, 0};
  CHECK(memcmp(w2, want_w2, sizeof w2) == 0);
  task_lm_qa_row(&TT, NULL, 0, dec2, loss2, 9, 0.5, 10, row2, mask2, target2, NULL);  // weights optional
  CHECK(same_ids(target2, (int32_t[]){10, 11, 30, 20, 21, 22, 40, 41, 2, NT}, 10));

  task_padding_row(&TT, 4, row2, mask2, target2, w2);
  CHECK(same_ids(row2, (int32_t[]){0, 0, 0, 0}, 4) && same_bytes(mask2, "0000"));
  CHECK(same_ids(target2, (int32_t[]){NT, NT, NT, NT}, 4) && w2[0] == 0 && w2[3] == 0);
}

static void test_eval_prompts(void) {
  int32_t q[2] = {30, 31}, out[16], ctx[3] = {5, 6, 7}, bos_ctx[3] = {1, 5, 6};
  CHECK(task_decoder_prompt_len(&TT, TASK_QA, 2) == 7 && task_decoder_prompt_len(&TT, TASK_REGEN, 2) == 1);
  CHECK(task_decoder_prompt(&TT, TASK_QA, q, 2, out) == 7);
  CHECK(same_ids(out, (int32_t[]){10, 11, 30, 31, 20, 21, 22}, 7));
  CHECK(task_decoder_prompt(&TT, TASK_QA, NULL, 0, out) == 5);  // empty question
  CHECK(same_ids(out, (int32_t[]){10, 11, 20, 21, 22}, 5));
  CHECK(task_decoder_prompt(&TT, TASK_REGEN, q, 2, out) == 1 && out[0] == 1);

  CHECK(task_needs_bos(&TT, ctx, 3) && !task_needs_bos(&TT, bos_ctx, 3) && task_needs_bos(&TT, NULL, 0));
  CHECK(task_baseline_prompt(&TT, TASK_REGEN, ctx, 3, 2, NULL, 0, out) == 3);  // [bos] + 2 context tokens
  CHECK(same_ids(out, (int32_t[]){1, 5, 6}, 3));
  CHECK(task_baseline_prompt(&TT, TASK_REGEN, bos_ctx, 3, 3, NULL, 0, out) == 3);  // no second bos
  CHECK(same_ids(out, (int32_t[]){1, 5, 6}, 3));
  CHECK(task_baseline_prompt(&TT, TASK_REGEN, NULL, 0, 0, NULL, 0, out) == 1 && out[0] == 1);
  CHECK(task_baseline_prompt(&TT, TASK_QA, ctx, 3, 3, q, 1, out) == 10);
  CHECK(same_ids(out, (int32_t[]){1, 5, 6, 7, 10, 11, 30, 20, 21, 22}, 10));
  CHECK(task_baseline_prompt(&TT, TASK_QA, bos_ctx, 3, 0, q, 1, out) == 6);  // the context has the bos
  CHECK(same_ids(out, (int32_t[]){10, 11, 30, 20, 21, 22}, 6));
}

// task_tokens_init on llama2.c's tok512 (bos 1, eos 2, no pad): the prompt pieces as the tokenizer
// encodes them on their own, pad falling back to eos; task_tokens_copy owns its arrays.
static void test_tokens_init(void) {
  const char *path = check_asset("models/tok512.bin");
  if (!path) return;
  pith_err err = {{0}};
  tokenizer *tok = tokenizer_load(path, &err);
  CHECK_MSG(tok, "%s", err.msg);
  if (!tok) return;
  task_tokens tt, copy;
  CHECK_MSG(task_tokens_init(&tt, tok, path, &err) == 0, "%s", err.msg);
  CHECK(tt.bos == 1 && tt.eos == 2 && tt.pad == 2 && tt.n_qp > 0 && tt.n_ap > 0);
  char *qp = tokenizer_decode(tok, tt.qp, (size_t)tt.n_qp, 0, &err);
  char *ap = tokenizer_decode(tok, tt.ap, (size_t)tt.n_ap, 0, &err);
  CHECK_MSG(qp && strstr(qp, "Question:"), "\"%s\"", qp ? qp : "(null)");
  CHECK_MSG(ap && strstr(ap, "Answer:"), "\"%s\"", ap ? ap : "(null)");
  free(qp), free(ap);
  CHECK(task_tokens_copy(&copy, &tt, &err) == 0);
  CHECK(copy.qp != tt.qp && copy.n_qp == tt.n_qp && same_ids(copy.qp, tt.qp, tt.n_qp));
  task_tokens_free(&tt);
  CHECK(copy.ap[0] > 0 && tt.qp == NULL);
  task_tokens_free(&copy);
  tokenizer_free(tok);
}

int main(void) {
  test_encoder_row();
  test_qa_decoder_row();
  test_regen_decoder();
  test_lm_qa_row();
  test_eval_prompts();
  test_tokens_init();
  return check_done("test_task");
}
