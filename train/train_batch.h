// train_batch: a loader batch turned into the tensors the losses read, row by row with the layouts
// of data/task.h:
//
//   TRAIN_BATCH_REGEN  pretrain, and `pith lm` on documents: the encoder reads the text, the
//                      decoder reads [bos] text and predicts text eos;
//   TRAIN_BATCH_QA     finetune: the encoder reads the context, the decoder reads the loader's QA
//                      row and predicts each next answer token and the eos;
//   TRAIN_BATCH_LM_QA  `pith lm` on QA: [bos] context QA-row, each token predicting the next, the
//                      answer's targets weighted by answer_loss_weight; rows are as long as the
//                      longest (no padding to run).
// A batch's padding rows (loader_batch.n_rows..B-1) attend to nothing and predict nothing.
#ifndef PITH_TRAIN_BATCH_H
#define PITH_TRAIN_BATCH_H

#include "compressor.h"
#include "loader.h"
#include "task.h"

typedef enum { TRAIN_BATCH_REGEN, TRAIN_BATCH_QA, TRAIN_BATCH_LM_QA } train_batch_kind;

// Tensors on dev in the current scope: b->text_ids (B, N) i64 and text_mask (B, N) bool (none for
// LM_QA), dec_ids (B, M) i64, dec_mask (B, M) bool, dec_targets (B, M) i64 (TASK_NO_TARGET: none).
// *weights: LM_QA with answer_weight != 1: (B * M) f32 per-target loss weights; else NULL.
int train_batch_tensors(train_batch_kind kind, const task_tokens *tt, const loader_batch *lb, double answer_weight,
                        pt_device dev, comp_batch *b, pt_tensor **weights, pith_err *err);

#endif
