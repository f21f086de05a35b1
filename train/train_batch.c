// train_batch: loader batches → the losses' tensors (see train_batch.h).
#include "train_batch.h"

#include <stdlib.h>

// (B, M) int32 ids → an i64 tensor on dev.
static pt_tensor *ids_tensor(const int32_t *ids, int B, int M, pt_device dev) {
  int64_t *wide = malloc(sizeof *wide * (size_t)B * (size_t)M);
  if (!wide) return NULL;
  for (int i = 0; i < B * M; i++) wide[i] = ids[i];
  pt_tensor *t = pt_to_device(pt_from_data(wide, PT_I64, PT_SHAPE(B, M), PT_CPU), dev);
  free(wide);
  return t;
}

static pt_tensor *mask_tensor(const uint8_t *mask, int B, int M, pt_device dev) {
  return pt_to_device(pt_from_data(mask, PT_BOOL, PT_SHAPE(B, M), PT_CPU), dev);
}

// Leading real tokens of a masked row.
static int row_len(const uint8_t *mask, int n) {
  int len = 0;
  while (len < n && mask[len]) len++;
  return len;
}

// The decoder's rows, (B, M) each; weight (B * M) only for LM_QA.
static void fill_rows(train_batch_kind kind, const task_tokens *tt, const loader_batch *lb, double answer_weight,
                      int M, int32_t *dec, uint8_t *mask, int32_t *target, float *weight) {
  int N = lb->N, LM = lb->M;
  for (int r = 0; r < lb->B; r++) {
    int32_t *d = &dec[r * M], *g = &target[r * M];
    uint8_t *m = &mask[r * M];
    float *w = weight ? &weight[r * M] : NULL;
    if (r >= lb->n_rows) {
      task_padding_row(tt, M, d, m, g, w);
    } else if (kind == TRAIN_BATCH_REGEN) {
      task_regen_decoder(tt, &lb->ids[r * N], row_len(&lb->mask[r * N], N), M, d, m, g);
    } else if (kind == TRAIN_BATCH_QA) {
      for (int j = 0; j < M; j++) d[j] = lb->dec_ids[r * LM + j], m[j] = lb->dec_mask[r * LM + j];
      task_qa_targets(d, &lb->dec_loss_mask[r * LM], M, g);
    } else {
      task_lm_qa_row(tt, &lb->ids[r * N], row_len(&lb->mask[r * N], N), &lb->dec_ids[r * LM],
                     &lb->dec_loss_mask[r * LM], row_len(&lb->dec_mask[r * LM], LM), answer_weight, M, d, m, g, w);
    }
  }
}

int train_batch_tensors(train_batch_kind kind, const task_tokens *tt, const loader_batch *lb, double answer_weight,
                        pt_device dev, comp_batch *b, pt_tensor **weights, pith_err *err) {
  int B = lb->B, N = lb->N, M = kind == TRAIN_BATCH_REGEN ? N + 1 : lb->M;
  if (kind == TRAIN_BATCH_LM_QA) {
    M = 1;
    for (int r = 0; r < lb->n_rows; r++) {
      int n = task_lm_qa_len(row_len(&lb->mask[r * N], N), row_len(&lb->dec_mask[r * lb->M], lb->M));
      if (n > M) M = n;
    }
  }
  int weighted = kind == TRAIN_BATCH_LM_QA && answer_weight != 1.0;
  int32_t *dec = malloc(sizeof *dec * (size_t)B * M), *target = malloc(sizeof *target * (size_t)B * M);
  uint8_t *mask = malloc((size_t)B * M);
  float *weight = weighted ? malloc(sizeof *weight * (size_t)B * M) : NULL;
  if (!dec || !target || !mask || (weighted && !weight)) {
    free(dec), free(target), free(mask), free(weight);
    return pith_fail(err, "batch: out of memory");
  }
  fill_rows(kind, tt, lb, answer_weight, M, dec, mask, target, weight);
  b->text_ids = kind == TRAIN_BATCH_LM_QA ? NULL : ids_tensor(lb->ids, B, N, dev);
  b->text_mask = kind == TRAIN_BATCH_LM_QA ? NULL : mask_tensor(lb->mask, B, N, dev);
  b->dec_ids = ids_tensor(dec, B, M, dev);
  b->dec_mask = mask_tensor(mask, B, M, dev);
  b->dec_targets = ids_tensor(target, B, M, dev);
  *weights = weighted ? pt_to_device(pt_from_data(weight, PT_F32, PT_SHAPE(B * M), PT_CPU), dev) : NULL;
  free(dec), free(target), free(mask), free(weight);
  int text_ok = kind == TRAIN_BATCH_LM_QA || (b->text_ids && b->text_mask);
  if (!text_ok || !b->dec_ids || !b->dec_mask || !b->dec_targets || (weighted && !*weights))
    return pt_fail(err, "batch");
  return 0;
}
