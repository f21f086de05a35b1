// test_mixed_precision: a compressor over a bf16 frozen model keeps its trainable weights in f32
// (bf16: true on CUDA; run here on the CPU, where libtorch computes bf16 too). For both methods:
// the LoRA, compress and AE tensors are f32 and get f32 gradients; the loss and gradients are
// those of the same compressor over the f32 model to bf16 precision; and an optimizer step far
// smaller than bf16's resolution still moves the weights (with bf16 weights it would be lost); and
// casting them once a step (comp_cast_step) changes nothing but the number of casts.
// Where a GPU is, the same compressors on cuda:0 give the CPU's loss and gradients.
#include "check.h"
#include "compressor.h"

enum { B = 2, N = 10, M = 6, K = 3 };

static llama_config tiny(void) {
  return (llama_config){.arch = LLAMA_ARCH_LLAMA, .vocab_size = 48, .dim = 32, .hidden_dim = 64, .n_layers = 2,
                        .n_heads = 4, .n_kv_heads = 2, .max_seq_len = 64, .bos_id = -1, .eos_id = -1};
}

typedef struct {
  pt_tensor *w[64];
  int n;
  pt_dtype dtype;
  pt_device dev;
} place_ctx;

static int collect_weight(const char *name, pt_tensor **slot, pt_shape shape, void *vctx) {
  place_ctx *ctx = vctx;
  if (ctx->n == (int)(sizeof ctx->w / sizeof ctx->w[0])) return -1;  // more weights than the tiny model has
  ctx->w[ctx->n++] = *slot;
  return 0;
}

static int place_weight(const char *name, pt_tensor **slot, pt_shape shape, void *vctx) {
  place_ctx *ctx = vctx;
  *slot = pt_keep(pt_to_device(pt_to_dtype(ctx->w[ctx->n++], ctx->dtype), ctx->dev));
  return *slot ? 0 : -1;
}

// The same random weights (drawn in f32 on the CPU) held in `dtype` on `dev`, and a compressor over
// them whose adapter B matrices are made non-zero, so the adapter takes part.
static compressor *make(llama_model **m, comp_method method, pt_dtype dtype, pt_device dev) {
  pith_err err = {{0}};
  llama_config c = tiny();
  llama_model *src = llama_new_random(&c, 11, PT_F32, PT_CPU, &err);
  place_ctx ctx = {.dtype = dtype, .dev = dev};
  *m = src ? llama_alloc(&c, dtype, dev, &err) : NULL;
  if (*m) {
    int bad = llama_visit_weights(src, collect_weight, &ctx);
    ctx.n = 0;
    if (bad || llama_visit_weights(*m, place_weight, &ctx) || llama_check_weights(*m, &err)) llama_free(*m), *m = NULL;
  }
  llama_free(src);
  CHECK_MSG(*m != NULL, "%s %s", err.msg, pt_error());
  if (!*m) exit(1);
  comp_config cc = {.method = method, .k = K, .positions = COMP_POS_CONSISTENT, .ae_token = method == COMP_ICAE};
  lora_config lc = {.rank = 4, .alpha = 8, .dropout = 0, .targets = (1u << LLAMA_PROJ_Q) | (1u << LLAMA_PROJ_V)};
  compressor *comp = comp_new(*m, cc, lc, 5, &err);
  CHECK_MSG(comp != NULL, "%s", err.msg);
  if (!comp) exit(1);
  pt_gen *g = pt_gen_new(9, PT_CPU);
  pt_scope s = pt_scope_begin();
  for (int l = 0; l < comp->lora->n_layers; l++)
    for (int p = 0; p < LLAMA_N_PROJ; p++)
      if (comp->lora->b[l][p])
        pt_copy_(comp->lora->b[l][p], pt_mul_scalar(pt_randn(pt_shape_of(comp->lora->b[l][p]), PT_F32, PT_CPU, g), 0.1));
  pt_scope_end(s);
  pt_gen_free(g);
  return comp;
}

static pt_tensor *ids(int64_t rows, int64_t cols, uint64_t seed) {
  pt_gen *g = pt_gen_new(seed, PT_CPU);
  pt_tensor *t = pt_to_dtype(pt_mul_scalar(pt_uniform(PT_SHAPE(rows, cols), 0, 47.99, PT_F32, PT_CPU, g), 1), PT_I64);
  pt_gen_free(g);
  return t;
}

// loss, and every trainable tensor's gradient flattened into one f32 vector (zeros for a tensor off
// the loss's path: 500x's last-layer q_proj, whose output only reaches the unused final state), from
// `micro` backward passes of b accumulated, as a step's micro-batches are.
static double accumulated(compressor *c, const comp_batch *b, int micro, pt_tensor **grads) {
  pt_tensor *params[64];
  int n = comp_params(c, params, 64);
  for (int i = 0; i < n; i++) pt_zero_grad(params[i]);
  pith_err err = {{0}};
  pt_tensor *loss = NULL;
  for (int i = 0; i < micro; i++) {
    loss = comp_loss(c, b, NULL, &err);
    CHECK_MSG(loss != NULL, "%s", err.msg);
    if (!loss) exit(1);
    CHECK(pt_backward(loss) == 0);
  }
  pt_tensor *flat[64];
  for (int i = 0; i < n; i++) {
    pt_tensor *gi = pt_grad(params[i]);
    CHECK(gi == NULL || pt_dtype_of(gi) == PT_F32);
    flat[i] = pt_reshape(gi ? gi : pt_zeros(pt_shape_of(params[i]), PT_F32, pt_device_of(params[i])), PT_SHAPE(-1));
  }
  *grads = pt_to_device(pt_cat(flat, n, 0), PT_CPU);
  return pt_item(loss);
}

static double loss_and_grads(compressor *c, const comp_batch *b, pt_tensor **grads) {
  return accumulated(c, b, 1, grads);
}

// Two rows, the second with its last 3 text tokens padded.
static comp_batch make_batch(pt_device dev) {
  pt_tensor *text_mask = pt_ones(PT_SHAPE(B, N), PT_BOOL, PT_CPU), *dec_mask = pt_ones(PT_SHAPE(B, M), PT_BOOL, PT_CPU);
  pt_copy_(pt_slice(pt_slice(text_mask, 0, 1, 2), 1, 7, N), pt_zeros(PT_SHAPE(1, N - 7), PT_BOOL, PT_CPU));
  return (comp_batch){.text_ids = pt_to_device(ids(B, N, 1), dev), .text_mask = pt_to_device(text_mask, dev),
                      .dec_ids = pt_to_device(ids(B, M, 2), dev), .dec_mask = pt_to_device(dec_mask, dev),
                      .dec_targets = pt_to_device(ids(B, M, 3), dev)};
}

static double cosine(pt_tensor *a, pt_tensor *b) {
  return pt_item(pt_sum(pt_mul(a, b))) / sqrt(pt_item(pt_sum(pt_mul(a, a))) * pt_item(pt_sum(pt_mul(b, b))));
}

static void check_method(comp_method method) {
  const char *name = method == COMP_500X ? "500x" : "icae";
  pt_scope s = pt_scope_begin();
  llama_model *m32, *m16;
  compressor *c32 = make(&m32, method, PT_F32, PT_CPU), *c16 = make(&m16, method, PT_BF16, PT_CPU);
  pt_tensor *params[64];
  int n = comp_params(c16, params, 64);
  for (int i = 0; i < n; i++) CHECK_MSG(pt_dtype_of(params[i]) == PT_F32, "%s: trainable tensor %d is not f32", name, i);

  comp_batch b = make_batch(PT_CPU);
  pt_tensor *g32, *g16;
  double l32 = loss_and_grads(c32, &b, &g32), l16 = loss_and_grads(c16, &b, &g16);
  CHECK_MSG(fabs(l16 - l32) <= 0.02 * fabs(l32), "%s: loss %.5f over bf16, %.5f over f32", name, l16, l32);
  double cos = cosine(g16, g32);
  CHECK_MSG(cos > 0.99, "%s: gradients over bf16 and f32 have cosine %.4f", name, cos);
  printf("%s: loss %.5f over bf16, %.5f over f32; gradient cosine %.5f\n", name, l16, l32, cos);

  // One AdamW step of lr 1e-6 moves each weight by about 1e-6, under bf16's spacing near 0.1
  // (2^-11 ~ 5e-4): kept in f32, it moves them; rounded to bf16, almost none would move.
  pt_tensor *before[64];
  for (int i = 0; i < n; i++) before[i] = pt_clone(params[i]);
  pt_adamw_config oc = {1e-6, 0.9, 0.999, 1e-8, 0};
  pt_adamw *opt = pt_adamw_new(params, n, oc);
  CHECK(pt_adamw_step(opt) == 0);
  double moved = 0, moved_bf16 = 0, total = 0;
  for (int i = 0; i < n; i++) {
    if (!pt_grad(params[i])) continue;  // AdamW leaves these alone
    pt_tensor *changed = pt_sub(pt_ones(pt_shape_of(params[i]), PT_F32, PT_CPU),
                                pt_to_dtype(pt_eq(params[i], before[i]), PT_F32));
    pt_tensor *changed16 = pt_sub(pt_ones(pt_shape_of(params[i]), PT_F32, PT_CPU),
                                  pt_to_dtype(pt_eq(pt_to_dtype(params[i], PT_BF16), pt_to_dtype(before[i], PT_BF16)),
                                              PT_F32));
    moved += pt_item(pt_sum(changed)), moved_bf16 += pt_item(pt_sum(changed16)), total += (double)pt_numel(params[i]);
  }
  printf("%s: a 1e-6 step moved %.0f of %.0f f32 weights; as bf16 weights, %.0f would have moved\n", name, moved,
         total, moved_bf16);
  CHECK_MSG(moved > 0.9 * total, "%s: only %.0f of %.0f weights moved", name, moved, total);
  CHECK_MSG(moved_bf16 < 0.1 * total, "%s: %.0f of %.0f weights moved in bf16 too: the step is not small enough to show it",
            name, moved_bf16, total);
  pt_adamw_free(opt);
  comp_free(c32), comp_free(c16);
  llama_free(m32), llama_free(m16);
  CHECK(pt_ok());
  pt_scope_end(s);
}

// Casting once a step (comp_cast_step) over the bf16 model: two micro-batches through the step's
// copies, the layers checkpointed so that they run again in the backward pass, give the gradients of
// casting on every use, bit for bit; the forward reads the copies (a master changed after the casts
// shows only once they end); without gradient recording the casts are refused.
static void check_step_casts(comp_method method) {
  const char *name = method == COMP_500X ? "500x" : "icae";
  pt_scope s = pt_scope_begin();
  llama_model *m;
  compressor *c = make(&m, method, PT_BF16, PT_CPU);
  m->gradient_checkpointing = 1;
  comp_batch b = make_batch(PT_CPU);
  pt_tensor *per_use, *per_step;
  double l_use = accumulated(c, &b, 2, &per_use);
  CHECK(comp_cast_step(c) == 0 && c->compress_step && c->lora->a_step);
  double l_step = accumulated(c, &b, 2, &per_step);
  CHECK_MSG(l_step == l_use, "%s: loss %.9g with the step's casts, %.9g without", name, l_step, l_use);
  CHECK_MSG(pt_item(pt_amax_dim(pt_abs(pt_sub(per_step, per_use)), 0, 0)) == 0,
            "%s: the gradients through the step's casts differ", name);

  pith_err err = {{0}};
  pt_tensor *params[64], *saved[64];
  int n = comp_params(c, params, 64);
  pt_set_grad_enabled(0);
  for (int i = 0; i < n; i++) {  // every master zeroed: a forward that read one would change
    saved[i] = pt_clone(params[i]);
    pt_copy_(params[i], pt_zeros(pt_shape_of(params[i]), PT_F32, PT_CPU));
  }
  double l_copies = pt_item(comp_loss(c, &b, NULL, &err));
  comp_cast_step_end(c);
  CHECK(c->compress_step == NULL && c->lora->a_step == NULL);
  double l_masters = pt_item(comp_loss(c, &b, NULL, &err));
  CHECK_MSG(l_copies == l_use && l_masters != l_use, "%s: loss %.9g while the casts last, %.9g after, %.9g before",
            name, l_copies, l_masters, l_use);
  CHECK(comp_cast_step(c) == -1 && c->compress_step == NULL);
  CHECK_CONTAINS(pt_error(), "need gradient recording on");
  pt_error_clear();
  for (int i = 0; i < n; i++) pt_copy_(params[i], saved[i]);
  pt_set_grad_enabled(1);
  printf("%s: casting once a step gives casting on every use's loss and gradients, bit for bit\n", name);
  comp_free(c);
  llama_free(m);
  CHECK(pt_ok());
  pt_scope_end(s);
}

// On cuda:0: f32 gives the CPU's loss and gradients to 1e-4 (relative), bf16 to bf16 precision.
static void check_cuda(comp_method method) {
  const char *name = method == COMP_500X ? "500x" : "icae";
  if (pt_cuda_device_count() == 0) {
    printf("%s: no CUDA device, the GPU comparison skipped\n", name);
    return;
  }
  pt_scope s = pt_scope_begin();
  llama_model *mc, *mg, *mh;
  compressor *cc = make(&mc, method, PT_F32, PT_CPU), *cg = make(&mg, method, PT_F32, 0);
  compressor *ch = make(&mh, method, PT_BF16, 0);
  comp_batch bc = make_batch(PT_CPU), bg = make_batch(0);
  pt_tensor *gc, *gg, *gh;
  double lc = loss_and_grads(cc, &bc, &gc), lg = loss_and_grads(cg, &bg, &gg), lh = loss_and_grads(ch, &bg, &gh);
  double gmax = pt_item(pt_amax_dim(pt_abs(gc), 0, 0)), gdiff = pt_item(pt_amax_dim(pt_abs(pt_sub(gg, gc)), 0, 0));
  printf("%s on CUDA: loss f32 %.6f (CPU %.6f), bf16 %.5f; gradients f32 differ by %.2g of %.2g, bf16 cosine %.5f\n",
         name, lg, lc, lh, gdiff, gmax, cosine(gh, gc));
  CHECK_MSG(fabs(lg - lc) <= 1e-4 * fabs(lc), "%s: CUDA f32 loss %.6f, CPU %.6f", name, lg, lc);
  CHECK_MSG(gdiff <= 1e-4 * gmax, "%s: CUDA f32 gradients differ from the CPU's by %g (largest %g)", name, gdiff, gmax);
  CHECK_MSG(fabs(lh - lc) <= 0.02 * fabs(lc), "%s: CUDA bf16 loss %.5f, CPU f32 %.5f", name, lh, lc);
  CHECK_MSG(cosine(gh, gc) > 0.99, "%s: CUDA bf16 gradients have cosine %.4f to the CPU's", name, cosine(gh, gc));
  comp_free(cc), comp_free(cg), comp_free(ch);
  llama_free(mc), llama_free(mg), llama_free(mh);
  CHECK(pt_ok());
  pt_scope_end(s);
}

int main(void) {
  pt_set_num_threads(1);
  check_method(COMP_500X);
  check_method(COMP_ICAE);
  check_step_casts(COMP_500X);
  check_step_casts(COMP_ICAE);
  check_cuda(COMP_500X);
  check_cuda(COMP_ICAE);
  return check_done("test_mixed_precision");
}
