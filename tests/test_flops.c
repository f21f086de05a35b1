// train_math: train_row_flops (the progress line's MFU), the closed form against FLOPs counted
// matmul by matmul, token by token, for plain and grouped-query attention, with and without a
// prefix, for the LM (every weight trains: x3) and a compressor (frozen base: x2, encoder without
// head); and the learning-rate schedule (train_lr_at) at hand-worked steps.
#include <math.h>

#include "check.h"
#include "train_math.h"

// One token's forward FLOPs at `attended` positions: every projection as a (out x in) matmul, then
// scores (q . k) and the weighted sum of values for every head.
static double token_flops(const llama_config *c, int with_head, int attended) {
  double f = 0;
  int hd = c->head_dim;
  for (int l = 0; l < c->n_layers; l++) {
    f += 2.0 * c->dim * (c->n_heads * hd);      // q
    f += 2.0 * c->dim * (c->n_kv_heads * hd);   // k
    f += 2.0 * c->dim * (c->n_kv_heads * hd);   // v
    for (int h = 0; h < c->n_heads; h++) f += 2.0 * hd * attended + 2.0 * hd * attended;  // scores, values
    f += 2.0 * (c->n_heads * hd) * c->dim;      // o
    f += 3 * 2.0 * c->dim * c->hidden_dim;      // gate, up, down
  }
  if (with_head) f += 2.0 * c->dim * c->vocab_size;
  return f;
}

static double counted(const llama_config *c, int trains_base, int enc, int dec, int prefix) {
  double f = 0;
  for (int i = 0; i < enc; i++) f += token_flops(c, 0, i + 1);
  for (int i = 0; i < dec; i++) f += token_flops(c, 1, prefix + i + 1);
  return f * (trains_base ? 3 : 2);
}

// Peak 2, 4 warmup steps, 14 in all: warmup 0.5, 1, 1.5, 2; then 10 steps of decay.
static void test_schedule(void) {
  const train_lr_schedule kinds[3] = {TRAIN_LR_CONSTANT, TRAIN_LR_COSINE, TRAIN_LR_LINEAR};
  for (int k = 0; k < 3; k++) {
    CHECK_NEAR(train_lr_at(kinds[k], 2, 4, 0, 14), 0.5, 1e-12);
    CHECK_NEAR(train_lr_at(kinds[k], 2, 4, 3, 14), 2.0, 1e-12);
    CHECK_NEAR(train_lr_at(kinds[k], 2, 4, 4, 14), 2.0, 1e-12);  // decay starts from the peak
  }
  CHECK_NEAR(train_lr_at(TRAIN_LR_CONSTANT, 2, 4, 13, 14), 2.0, 1e-12);
  CHECK_NEAR(train_lr_at(TRAIN_LR_COSINE, 2, 4, 9, 14), 1.0, 1e-12);   // half way: cos(pi/2)
  CHECK_NEAR(train_lr_at(TRAIN_LR_COSINE, 2, 4, 6, 14), 1 + cos(M_PI * 0.2), 1e-12);
  CHECK_NEAR(train_lr_at(TRAIN_LR_COSINE, 2, 4, 20, 14), 0.0, 1e-12);  // past the end: held at 0
  CHECK_NEAR(train_lr_at(TRAIN_LR_LINEAR, 2, 4, 9, 14), 1.0, 1e-12);
  CHECK_NEAR(train_lr_at(TRAIN_LR_LINEAR, 2, 4, 11, 14), 0.6, 1e-12);
  CHECK_NEAR(train_lr_at(TRAIN_LR_LINEAR, 2, 4, 20, 14), 0.0, 1e-12);
  CHECK_NEAR(train_lr_at(TRAIN_LR_COSINE, 2, 0, 0, 10), 2.0, 1e-12);   // no warmup
  CHECK_NEAR(train_lr_at(TRAIN_LR_LINEAR, 2, 8, 8, 8), 0.0, 1e-12);    // warmup as long as the run
}

int main(void) {
  test_schedule();
  llama_config mha = {.vocab_size = 1000, .dim = 64, .hidden_dim = 176, .n_layers = 3, .n_heads = 4,
                      .n_kv_heads = 4, .head_dim = 16};
  llama_config gqa = {.vocab_size = 128256, .dim = 4096, .hidden_dim = 14336, .n_layers = 32, .n_heads = 32,
                      .n_kv_heads = 8, .head_dim = 128};  // LLaMA-3-8B's shape
  const llama_config *cfgs[2] = {&mha, &gqa};
  for (int m = 0; m < 2; m++) {
    const llama_config *c = cfgs[m];
    struct {
      int trains_base, enc, dec, prefix;
    } cases[] = {{1, 0, 37, 0}, {0, 500 + 16, 501, 16}, {0, 64 + 4, 20, 4}, {0, 12, 1, 1}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
      double want = counted(c, cases[i].trains_base, cases[i].enc, cases[i].dec, cases[i].prefix);
      double got = train_row_flops(c, cases[i].trains_base, cases[i].enc, cases[i].dec, cases[i].prefix);
      CHECK_MSG(fabs(got - want) <= 1e-9 * want, "config %d case %zu: %.6g FLOPs, counted %.6g", m, i, got, want);
    }
  }
  // A sanity anchor: the LM's 3 * 2N per token (N the matmul weights) dominates for short rows.
  double n = 32 * (2.0 * 4096 * (4096 + 1024) + 3.0 * 4096 * 14336) + 4096.0 * 128256;
  double per_token = train_row_flops(&gqa, 1, 0, 1, 0);
  CHECK_MSG(fabs(per_token / (6 * n) - 1) < 1e-3, "%.6g vs 6N = %.6g", per_token, 6 * n);
  return check_done("test_flops");
}
