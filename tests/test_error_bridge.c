// test_error_bridge: a libtorch failure reaches pith_err through one function (pt_fail), which
// consumes it; an error nobody consumed ends with the scope it was raised in; a scope that returns a
// value hands its error out with it. And the case that motivated it: an evaluation batch that fails
// and is not reported the usual way must not make the next training step fail with its message.
#include "check.h"
#include "compressor.h"

enum { B = 2, N = 8, M = 5, K = 2, VOCAB = 40 };

// A shim failure: matmul of [2,3] by [4,5].
static pt_tensor *bad_matmul(void) {
  return pt_matmul(pt_zeros(PT_SHAPE(2, 3), PT_F32, PT_CPU), pt_zeros(PT_SHAPE(4, 5), PT_F32, PT_CPU));
}

static void test_pt_fail(void) {
  pith_err err = {{0}};
  pt_scope s = pt_scope_begin();
  CHECK(bad_matmul() == NULL);
  CHECK(!pt_ok());
  CHECK(pt_fail(&err, "layer %d", 3) == -1);
  CHECK_CONTAINS(err.msg, "layer 3: matmul");
  CHECK_CONTAINS(err.msg, "[2,3]");
  CHECK(pt_ok());  // consumed
  pt_scope_end(s);
  // With nothing pending it says the caller's own words.
  CHECK(pt_fail(&err, "load %s", "x.bin") == -1);
  CHECK(!strcmp(err.msg, "load x.bin: failed"));
  CHECK(pt_fail(NULL, "nowhere") == -1 && pt_ok());
}

static void test_scopes(void) {
  // Raised and never consumed inside a scope: gone when the scope ends.
  pt_scope s = pt_scope_begin();
  bad_matmul();
  CHECK(!pt_ok());
  pt_scope_end(s);
  CHECK(pt_ok());

  // Raised before a scope: that scope's end leaves it for its owner.
  bad_matmul();
  pt_scope inner = pt_scope_begin();
  pt_tensor *fine = pt_zeros(PT_SHAPE(2), PT_F32, PT_CPU);
  CHECK(fine != NULL);
  pt_scope_end(inner);
  CHECK(!pt_ok());
  pt_error_clear();

  // Raised in a scope that returns a value: the error goes out with it, to the caller's scope.
  pt_scope outer = pt_scope_begin();
  pt_scope work = pt_scope_begin();
  pt_tensor *r = pt_scope_return(work, pt_add(bad_matmul(), pt_zeros(PT_SHAPE(2), PT_F32, PT_CPU)));
  CHECK(r == NULL);
  CHECK_CONTAINS(pt_error(), "matmul");
  pt_scope sibling = pt_scope_begin();  // a later scope inside the caller's does not own it
  pt_scope_end(sibling);
  CHECK(!pt_ok());
  pt_scope_end(outer);  // the caller's scope does
  CHECK(pt_ok());
}

static pt_tensor *ids(int64_t rows, int64_t cols, int64_t hi, uint64_t seed) {
  pt_gen *g = pt_gen_new(seed, PT_CPU);
  pt_tensor *t = pt_to_dtype(pt_mul_scalar(pt_uniform(PT_SHAPE(rows, cols), 0, 1, PT_F32, PT_CPU, g), (double)hi - 0.01),
                             PT_I64);
  pt_gen_free(g);
  return t;
}

static comp_batch batch(pt_tensor *targets) {
  return (comp_batch){.text_ids = ids(B, N, VOCAB, 1), .text_mask = pt_ones(PT_SHAPE(B, N), PT_BOOL, PT_CPU),
                      .dec_ids = ids(B, M, VOCAB, 2), .dec_mask = pt_ones(PT_SHAPE(B, M), PT_BOOL, PT_CPU),
                      .dec_targets = targets};
}

// One training step; 0 and the loss, or -1 with err.
static int train_step(compressor *c, pt_adamw *opt, pt_tensor **params, int n, double *loss_out, pith_err *err) {
  pt_scope s = pt_scope_begin();
  comp_batch b = batch(ids(B, M, VOCAB, 3));
  pt_tensor *loss = comp_loss(c, &b, NULL, err);
  int rc = loss ? 0 : -1;
  if (!rc) *loss_out = pt_item(loss);
  if (!rc && pt_backward(loss)) rc = pt_fail(err, "backward");
  if (!rc) pt_clip_grad_norm(params, n, 1.0);
  if (!rc && pt_adamw_step(opt)) rc = pt_fail(err, "optimizer");
  pt_adamw_zero_grad(opt);
  pt_scope_end(s);
  return rc;
}

static void test_failed_eval_then_train(void) {
  pith_err err = {{0}};
  llama_config cfg = {.arch = LLAMA_ARCH_LLAMA, .vocab_size = VOCAB, .dim = 16, .hidden_dim = 32, .n_layers = 2,
                      .n_heads = 2, .n_kv_heads = 1, .max_seq_len = 64, .bos_id = -1, .eos_id = -1};
  llama_model *m = llama_new_random(&cfg, 7, PT_F32, PT_CPU, &err);
  CHECK_MSG(m != NULL, "%s", err.msg);
  if (!m) return;
  comp_config cc = {.method = COMP_500X, .k = K, .positions = COMP_POS_CONSISTENT};
  lora_config lc = {.rank = 2, .alpha = 4, .targets = (1u << LLAMA_PROJ_Q) | (1u << LLAMA_PROJ_V)};
  compressor *c = comp_new(m, cc, lc, 5, &err);
  CHECK_MSG(c != NULL, "%s", err.msg);
  if (!c) {
    llama_free(m);
    return;
  }
  pt_tensor *params[64];
  int n = comp_params(c, params, 64);
  pt_adamw *opt = pt_adamw_new(params, n, (pt_adamw_config){.lr = 1e-2, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8});

  // Evaluation, gradients off, on a batch whose targets are beyond the vocabulary.
  for (int report = 0; report < 2; report++) {
    int was = pt_set_grad_enabled(0);
    pt_scope s = pt_scope_begin();
    comp_batch bad = batch(pt_add_scalar(ids(B, M, VOCAB, 4), VOCAB));
    pt_tensor *loss = comp_loss(c, &bad, NULL, &err);
    CHECK(loss == NULL);
    CHECK_CONTAINS(err.msg, "compressor: loss");
    CHECK(pt_ok());  // comp_loss reported it through pt_fail
    if (report) {
      // The old way some callers failed: read the message, never clear it (compress_train's
      // lm_loss did). The scope's end now drops it.
      pt_cross_entropy(pt_zeros(PT_SHAPE(2, 3), PT_F32, PT_CPU), pt_zeros(PT_SHAPE(5), PT_I64, PT_CPU), -100,
                       PT_REDUCE_MEAN);
      CHECK(!pt_ok());
      pith_fail(&err, "loss: %s", pt_error());
    }
    pt_scope_end(s);
    pt_set_grad_enabled(was);

    // The next training step succeeds, and moves the weights.
    double before = pt_item(pt_sum(pt_abs(c->compress)));
    double loss_v = NAN;
    err.msg[0] = 0;
    int rc = train_step(c, opt, params, n, &loss_v, &err);
    CHECK_MSG(rc == 0, "train step after a failed eval batch: %s", err.msg);
    CHECK(isfinite(loss_v));
    CHECK(pt_ok());
    CHECK(pt_item(pt_sum(pt_abs(c->compress))) != before);
  }
  pt_adamw_free(opt);
  comp_free(c);
  llama_free(m);
}

int main(void) {
  test_pt_fail();
  test_scopes();
  test_failed_eval_then_train();
  CHECK(pt_ok());
  return check_done("test_error_bridge");
}
