// train_math: the arithmetic of a training run that is not the model's: the learning-rate schedule
// and the model FLOPs of a training row (the progress line's MFU).
#ifndef PITH_TRAIN_MATH_H
#define PITH_TRAIN_MATH_H

#include <stdint.h>

#include "llama.h"
#include "train_args.h"

// The learning rate of optimizer step `step` (0-based) of `total`: linear warmup from peak/warmup
// to peak over the first `warmup` steps, then constant, cosine to 0, or linear to 0 at `total`.
double train_lr_at(train_lr_schedule kind, double peak, int64_t warmup, int64_t step, int64_t total);

// Model FLOPs of one training row, for the progress line's MFU. The forward pass costs 2 FLOPs per
// weight per token (matmuls; the embedding lookup is free) plus the attention products, 4 * H * hd
// per layer per position attended to (causal: the prefix, the earlier tokens and itself). The
// backward pass costs twice the forward when every weight trains (input and weight gradients),
// once when the base is frozen (input gradients only, which reach the compress tokens; LoRA's own
// FLOPs are left out). The encoder reads `enc` tokens with no LM head; the decoder `dec` tokens
// after `prefix` positions of prefix K/V.
double train_row_flops(const llama_config *c, int trains_base, double enc, double dec, double prefix);

#endif
