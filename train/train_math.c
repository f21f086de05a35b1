// train_math: the learning-rate schedule and the FLOPs of a training row (see train_math.h).
#include "train_math.h"

#include <math.h>

double train_lr_at(train_lr_schedule kind, double peak, int64_t warmup, int64_t step, int64_t total) {
  if (step < warmup) return peak * (double)(step + 1) / (double)warmup;
  double progress = total > warmup ? (double)(step - warmup) / (double)(total - warmup) : 1.0;
  if (kind == TRAIN_LR_COSINE) return peak * 0.5 * (1 + cos(M_PI * fmin(progress, 1.0)));
  if (kind == TRAIN_LR_LINEAR) return peak * fmax(0.0, 1 - progress);
  return peak;
}

double train_row_flops(const llama_config *c, int trains_base, double enc, double dec, double prefix) {
  double attn_w = (double)c->n_heads * c->head_dim, kv_w = (double)c->n_kv_heads * c->head_dim;
  double layer = 2 * (double)c->dim * (attn_w + kv_w) + 3 * (double)c->dim * c->hidden_dim;
  double head = (double)c->dim * c->vocab_size, L = c->n_layers;
  // Causal attention: token i attends to the prefix and i + 1 earlier positions (itself included).
  double fwd = 2 * (L * layer * (enc + dec) + head * dec) +
               4 * attn_w * L * (enc * (enc + 1) / 2 + dec * (prefix + (dec + 1) / 2));
  return fwd * (trains_base ? 3 : 2);
}
