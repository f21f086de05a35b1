// test_checkpointing: activation checkpointing (llama_model.gradient_checkpointing, pt_checkpoint)
// gives the losses and gradients of the plain forward. For 500x and ICAE compressors (LoRA with
// dropout on every projection, a padded row, the 500x prefix K/V crossing from the encoder's
// checkpointed layers into the decoder's), for full-weight training of the base (pith lm) and for
// LoRA over a frozen base read from token ids (distill's finetuning_type lora): the
// loss and every trainable tensor's gradient equal the plain path's, and the dropout generator ends
// where the plain path leaves it (the backward pass replays the forward's masks, then puts the
// generator back). With recording off (eval) the checkpointed model gives the plain logits. Errors:
// a function that fails at the forward, or only when the backward pass runs it again, is reported
// with its own message. Where a GPU is, the compressors run on cuda:0 too.
#include "tiny_train.h"

// One compressor loss and its gradients, with the dropout generator seeded afresh; the generator's
// state afterwards into gen_state.
static double compressor_step(compressor *c, llama_model *m, pt_device dev, int checkpointing, pt_tensor **grads,
                              unsigned char *gen_state, size_t *gen_len) {
  pt_tensor *params[128];
  int n = comp_params(c, params, 128);
  for (int i = 0; i < n; i++) pt_zero_grad(params[i]);
  m->gradient_checkpointing = checkpointing;
  comp_batch b = tiny_batch(dev);
  pt_gen *g = pt_gen_new(21, dev);
  pith_err err = {{0}};
  pt_tensor *loss = comp_loss(c, &b, g, &err);
  CHECK_MSG(loss != NULL, "%s", err.msg);
  if (!loss) exit(1);
  CHECK_MSG(pt_backward(loss) == 0, "%s", pt_error());
  *grads = flat_grads(params, n);
  *gen_len = pt_gen_get_state(g, gen_state, 8192);
  pt_gen_free(g);
  m->gradient_checkpointing = 0;
  return pt_item(loss);
}

// On the CPU to the bit; on CUDA (where the backward pass runs on autograd's device thread, and the
// attention's backward is not deterministic) to 1e-5 of the largest gradient.
static void check_compressor(comp_method method, pt_device dev) {
  char name[32];
  snprintf(name, sizeof name, "%s%s", method == COMP_500X ? "500x" : "icae", dev == PT_CPU ? "" : " on cuda:0");
  double tol = dev == PT_CPU ? 0 : 1e-5;
  pt_scope s = pt_scope_begin();
  pith_err err = {{0}};
  llama_config cfg = tiny_config();
  llama_model *m = llama_new_random(&cfg, 11, PT_F32, dev, &err);
  compressor *c = tiny_compressor(m, method);

  unsigned char st_plain[8192], st_ckpt[8192];
  size_t len_plain, len_ckpt;
  pt_tensor *g_plain, *g_ckpt;
  double l_plain = compressor_step(c, m, dev, 0, &g_plain, st_plain, &len_plain);
  double l_ckpt = compressor_step(c, m, dev, 1, &g_ckpt, st_ckpt, &len_ckpt);
  double diff = max_abs(pt_sub(g_ckpt, g_plain)), scale = max_abs(g_plain);
  printf("%s: loss %.7f plain, %.7f checkpointed; gradients differ by %.3g (largest %.3g)%s\n", name, l_plain, l_ckpt,
         diff, scale, diff == 0 ? ", bit for bit" : "");
  CHECK_MSG(fabs(l_ckpt - l_plain) <= tol * fabs(l_plain), "%s: loss %.9g checkpointed, %.9g plain", name, l_ckpt,
            l_plain);
  CHECK_MSG(scale > 0 && diff <= tol * scale, "%s: gradients differ by %g (largest %g)", name, diff, scale);
  CHECK_MSG(len_plain == len_ckpt && len_plain > 0 && memcmp(st_plain, st_ckpt, len_plain) == 0,
            "%s: the dropout generator ends elsewhere with checkpointing", name);
  comp_free(c);
  llama_free(m);
  CHECK(pt_ok());
  pt_scope_end(s);
}

// One token loss of the model alone (lora NULL: full-weight training, as pith lm; else LoRA over
// the frozen base) and the gradients of params.
static double lm_step(llama_model *m, const lora_adapter *lora, int checkpointing, pt_tensor *const *params, int n,
                      pt_tensor **grads) {
  for (int i = 0; i < n; i++) pt_zero_grad(params[i]);
  m->gradient_checkpointing = checkpointing;
  comp_batch b = tiny_batch(PT_CPU);
  llama_inputs in = {.ids = b.text_ids, .mask = b.text_mask, .lora = lora};
  llama_outputs out;
  pith_err err = {{0}};
  CHECK_MSG(llama_forward(m, &in, &out, &err) == 0, "%s", err.msg);
  pt_tensor *loss = pt_cross_entropy(pt_reshape(out.logits, PT_SHAPE(-1, TINY_VOCAB)),
                                     pt_reshape(tiny_ids(TINY_ROWS, TINY_TEXT, 4), PT_SHAPE(-1)), -100, PT_REDUCE_MEAN);
  CHECK_MSG(pt_backward(loss) == 0, "%s", pt_error());
  *grads = flat_grads(params, n);
  m->gradient_checkpointing = 0;
  return pt_item(loss);
}

typedef struct {
  pt_tensor *w[128];
  int n;
} weights;

static int collect(const char *name, pt_tensor **slot, pt_shape shape, void *ctx) {
  weights *w = ctx;
  if (w->n == 128) return -1;
  w->w[w->n++] = *slot;
  return 0;
}

static void check_full_weights(void) {
  pt_scope s = pt_scope_begin();
  pith_err err = {{0}};
  llama_config cfg = tiny_config();
  llama_model *m = llama_new_random(&cfg, 12, PT_F32, PT_CPU, &err);
  weights w = {.n = 0};
  CHECK(m && llama_visit_weights(m, collect, &w) == 0);
  for (int i = 0; i < w.n; i++) pt_set_requires_grad(w.w[i], 1);
  pt_tensor *g_plain, *g_ckpt;
  double l_plain = lm_step(m, NULL, 0, w.w, w.n, &g_plain), l_ckpt = lm_step(m, NULL, 1, w.w, w.n, &g_ckpt);
  double diff = max_abs(pt_sub(g_ckpt, g_plain)), scale = max_abs(g_plain);
  printf("full weights: loss %.7f plain, %.7f checkpointed; gradients of %d tensors differ by %.3g (largest %.3g)\n",
         l_plain, l_ckpt, w.n, diff, scale);
  CHECK(l_ckpt == l_plain);
  CHECK_MSG(scale > 0 && diff <= 1e-6 * scale, "gradients differ by %g (largest %g)", diff, scale);

  // The layers really run again in the backward pass: a weight changed in place between the forward
  // and the backward is what the plain path refuses (autograd saved it) and what the checkpointed one
  // reads (it saved only the layers' inputs), giving other gradients.
  comp_batch b = tiny_batch(PT_CPU);
  pt_tensor *w_up = m->layers[1].w_up, *g_same = NULL;
  for (int run = 0; run < 3; run++) {  // plain and changed; checkpointed as it is; checkpointed and changed
    int ckpt = run > 0, change = run != 1;
    for (int i = 0; i < w.n; i++) pt_zero_grad(w.w[i]);
    m->gradient_checkpointing = ckpt;
    llama_inputs in = {.ids = b.text_ids, .mask = b.text_mask};
    llama_outputs out;
    CHECK(llama_forward(m, &in, &out, &err) == 0);
    if (change) pt_copy_(w_up, pt_add_scalar(w_up, 0.5));
    int rc = pt_backward(pt_sum(out.logits));
    if (change) pt_copy_(w_up, pt_add_scalar(w_up, -0.5));
    if (!ckpt) {
      CHECK_MSG(rc == -1 && strstr(pt_error(), "inplace"), "plain path: %d '%s'", rc, pt_error());
      pt_error_clear();
      continue;
    }
    CHECK_MSG(rc == 0, "%s", pt_error());
    pt_tensor *g = flat_grads(w.w, w.n);
    if (!change) g_same = g;
    else CHECK_MSG(g_same && max_abs(pt_sub(g, g_same)) > 1e-3, "the checkpointed backward did not run the layers again");
  }
  m->gradient_checkpointing = 0;

  // With recording off (eval) the checkpointed model is the plain one.
  llama_inputs in = {.ids = b.text_ids, .mask = b.text_mask};
  llama_outputs o_plain, o_ckpt;
  int was = pt_set_grad_enabled(0);
  CHECK(llama_forward(m, &in, &o_plain, &err) == 0);
  m->gradient_checkpointing = 1;
  CHECK(llama_forward(m, &in, &o_ckpt, &err) == 0);
  m->gradient_checkpointing = 0;
  pt_set_grad_enabled(was);
  CHECK_MSG(max_abs(pt_reshape(pt_sub(o_ckpt.logits, o_plain.logits), PT_SHAPE(-1))) == 0,
            "eval logits differ with checkpointing");
  llama_free(m);
  CHECK(pt_ok());
  pt_scope_end(s);
}

// LoRA over a frozen base read from token ids (distill's finetuning_type lora): no input of the first
// layer requires grad, yet the adapters must get the plain path's gradients.
static void check_frozen_lora(void) {
  pt_scope s = pt_scope_begin();
  pith_err err = {{0}};
  llama_config cfg = tiny_config();
  llama_model *m = llama_new_random(&cfg, 13, PT_F32, PT_CPU, &err);
  lora_config lc = {.rank = 4, .alpha = 8, .dropout = 0, .targets = (1u << LLAMA_N_PROJ) - 1};
  lora_adapter *lora = m ? lora_new(m, lc, 6, &err) : NULL;
  CHECK_MSG(lora != NULL, "%s", err.msg);
  if (!lora) exit(1);
  pt_tensor *params[128], *g_plain, *g_ckpt;
  int n = lora_params(lora, params, 128);
  double l_plain = lm_step(m, lora, 0, params, n, &g_plain), l_ckpt = lm_step(m, lora, 1, params, n, &g_ckpt);
  double diff = max_abs(pt_sub(g_ckpt, g_plain)), scale = max_abs(g_plain);
  printf("LoRA over frozen embeddings: loss %.7f plain, %.7f checkpointed; adapter gradients differ by %.3g "
         "(largest %.3g)\n", l_plain, l_ckpt, diff, scale);
  CHECK(l_ckpt == l_plain);
  CHECK_MSG(scale > 0 && diff <= 1e-6 * scale, "adapter gradients differ by %g (largest %g)", diff, scale);
  lora_free(lora);
  llama_free(m);
  CHECK(pt_ok());
  pt_scope_end(s);
}

// A function that fails: at once (fail_at 1), or at its second run, in the backward pass (fail_at 2).
static int runs = 0;
static int doubling(const void *ctx, pt_tensor *const *in, int n_in, pt_tensor **out, int n_out) {
  int fail_at = *(const int *)ctx;
  if (++runs == fail_at) {
    pt_error_set("doubling: run %d fails on purpose", runs);
    return -1;
  }
  out[0] = pt_mul_scalar(in[0], 2.0);
  return 0;
}

static void check_errors(void) {
  pt_scope s = pt_scope_begin();
  pt_tensor *x = pt_ones(PT_SHAPE(3), PT_F32, PT_CPU), *y = NULL;
  pt_set_requires_grad(x, 1);
  int fail_at = 1;
  runs = 0;
  CHECK(pt_checkpoint(doubling, &fail_at, sizeof fail_at, &x, 1, NULL, &y, 1) == -1 && y == NULL);
  CHECK_MSG(strstr(pt_error(), "run 1 fails on purpose") != NULL, "forward error: '%s'", pt_error());
  pt_error_clear();

  fail_at = 2, runs = 0;
  CHECK(pt_checkpoint(doubling, &fail_at, sizeof fail_at, &x, 1, NULL, &y, 1) == 0 && y != NULL);
  CHECK(pt_backward(pt_sum(y)) == -1);
  CHECK_MSG(strstr(pt_error(), "run 2 fails on purpose") != NULL, "backward error: '%s'", pt_error());
  pt_error_clear();

  fail_at = 0, runs = 0;  // and when it works: d(sum 2x)/dx = 2
  pt_zero_grad(x);
  CHECK(pt_checkpoint(doubling, &fail_at, sizeof fail_at, &x, 1, NULL, &y, 1) == 0);
  CHECK(pt_backward(pt_sum(y)) == 0);
  CHECK(runs == 2 && pt_item(pt_sum(pt_grad(x))) == 6.0);
  printf("errors: a failing function's own message, at the forward and in the backward pass\n");
  pt_scope_end(s);
}

int main(void) {
  pt_set_num_threads(1);
  check_compressor(COMP_500X, PT_CPU);
  check_compressor(COMP_ICAE, PT_CPU);
  if (pt_cuda_device_count() > 0) {
    check_compressor(COMP_500X, 0);
    check_compressor(COMP_ICAE, 0);
  } else {
    printf("no CUDA device: the cuda:0 runs skipped\n");
  }
  check_full_weights();
  check_frozen_lora();
  check_errors();
  return check_done("test_checkpointing");
}
