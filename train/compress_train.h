// compress_train: the training loop shared by `pith pretrain` (regeneration) and `pith finetune`
// (QA) for soft-token compressors (500x, ICAE), and by `pith lm`, which trains the base model
// itself (the demo's frozen LLM). The drivers only choose the task.
#ifndef PITH_COMPRESS_TRAIN_H
#define PITH_COMPRESS_TRAIN_H

#include "llama.h"

typedef enum { TASK_PRETRAIN, TASK_FINETUNE, TASK_LM } train_task;

// argv: [command, --config FILE, key=value..., --resume, --help]; returns the exit code.
int compress_train_main(train_task task, int argc, char **argv);

// Model FLOPs of one training row, for the progress line's MFU. The forward pass costs 2 FLOPs per
// weight per token (matmuls; the embedding lookup is free) plus the attention products, 4 * H * hd
// per layer per position attended to (causal: the prefix, the earlier tokens and itself). The
// backward pass costs twice the forward when every weight trains (input and weight gradients),
// once when the base is frozen (input gradients only, which reach the compress tokens; LoRA's own
// FLOPs are left out). The encoder reads `enc` tokens with no LM head; the decoder `dec` tokens
// after `prefix` positions of prefix K/V.
double train_row_flops(const llama_config *c, int trains_base, double enc, double dec, double prefix);

#endif
