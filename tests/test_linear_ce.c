// test_linear_ce: pt_linear_cross_entropy (the LM head and its cross-entropy, a chunk of rows at a
// time) against the composite pt_cross_entropy(pt_linear(h, w)): the loss and the gradients of h and
// w, plain mean with ignored targets and weighted mean, chunks smaller than, equal to and larger than
// the rows, in f32 (to 1e-6 of the loss, 1e-5 of the largest gradient) and bf16 (to bf16 precision);
// the same through the fused cross-entropy kernels (kernels/fused_ops.h: their CPU references here,
// PT_FUSED_TEST_CPU); bad shapes get a message. Where a GPU is, the same on cuda:0, the CUDA kernels
// (PT_FUSED_ON) included.
#include "check.h"
#include "torch_shim.h"

enum { N = 37, D = 16, V = 50 };

static double max_abs(pt_tensor *t) { return pt_item(pt_amax_dim(pt_abs(pt_reshape(t, PT_SHAPE(-1))), 0, 0)); }

typedef struct {
  double loss;
  pt_tensor *dh, *dw;
} result;

static pt_device dev = PT_CPU;  // where run() computes
static int fused = PT_FUSED_OFF;  // the fused kernels' mode run() uses

// chunk 0: the composite path.
static result run(pt_tensor *h0, pt_tensor *w0, pt_tensor *targets, pt_tensor *weights, pt_dtype dt, int64_t chunk) {
  pt_tensor *h = pt_to_device(pt_to_dtype(pt_detach(h0), dt), dev), *w = pt_to_device(pt_to_dtype(pt_detach(w0), dt), dev);
  targets = pt_to_device(targets, dev);
  if (weights) weights = pt_to_device(weights, dev);
  h = pt_detach(h), w = pt_detach(w);
  pt_set_requires_grad(h, 1), pt_set_requires_grad(w, 1);
  pt_tensor *loss;
  if (chunk > 0) {
    CHECK(pt_set_fused_kernels(fused) == 0);
    loss = pt_linear_cross_entropy(h, w, targets, weights, -100, chunk);
  } else {
    pt_tensor *logits = pt_to_dtype(pt_linear(h, w, NULL), PT_F32);
    loss = weights ? pt_div(pt_sum(pt_mul(pt_cross_entropy(logits, targets, -100, PT_REDUCE_NONE), weights)),
                            pt_sum(weights))
                   : pt_cross_entropy(logits, targets, -100, PT_REDUCE_MEAN);
  }
  CHECK_MSG(loss && pt_backward(loss) == 0, "%s", pt_error());
  CHECK(pt_set_fused_kernels(PT_FUSED_OFF) == 0);
  return (result){pt_item(loss), pt_to_device(pt_to_dtype(pt_grad(h), PT_F32), PT_CPU),
                  pt_to_device(pt_to_dtype(pt_grad(w), PT_F32), PT_CPU)};
}

static void compare(const char *what, result a, result ref, double tol) {
  double dl = fabs(a.loss - ref.loss), dh = max_abs(pt_sub(a.dh, ref.dh)), dw = max_abs(pt_sub(a.dw, ref.dw));
  double sh = max_abs(ref.dh), sw = max_abs(ref.dw);
  printf("%-34s loss %.7f (composite %.7f), dh differs by %.2g of %.2g, dw by %.2g of %.2g\n", what, a.loss, ref.loss,
         dh, sh, dw, sw);
  CHECK_MSG(dl <= tol * fabs(ref.loss), "%s: loss %.9g, composite %.9g", what, a.loss, ref.loss);
  CHECK_MSG(sh > 0 && dh <= 10 * tol * sh, "%s: dh differs by %g (largest %g)", what, dh, sh);
  CHECK_MSG(sw > 0 && dw <= 10 * tol * sw, "%s: dw differs by %g (largest %g)", what, dw, sw);
}

int main(void) {
  pt_set_num_threads(1);
  pt_scope s = pt_scope_begin();
  pt_gen *g = pt_gen_new(3, PT_CPU);
  pt_tensor *h = pt_randn(PT_SHAPE(N, D), PT_F32, PT_CPU, g), *w = pt_mul_scalar(pt_randn(PT_SHAPE(V, D), PT_F32, PT_CPU, g), 0.5);
  int64_t t[N];
  for (int i = 0; i < N; i++) t[i] = i % 7 == 3 ? -100 : (i * 13) % V;  // every 7th row ignored
  pt_tensor *targets = pt_from_data(t, PT_I64, PT_SHAPE(N), PT_CPU);
  pt_tensor *weights = pt_uniform(PT_SHAPE(N), 0.5, 2.0, PT_F32, PT_CPU, g);

  result ref = run(h, w, targets, NULL, PT_F32, 0), wref = run(h, w, targets, weights, PT_F32, 0);
  int64_t chunks[3] = {8, N, 64};
  for (int c = 0; c < 3; c++) {
    char what[64];
    snprintf(what, sizeof what, "f32, chunks of %lld rows:", (long long)chunks[c]);
    compare(what, run(h, w, targets, NULL, PT_F32, chunks[c]), ref, 1e-6);
    snprintf(what, sizeof what, "f32 weighted, chunks of %lld rows:", (long long)chunks[c]);
    compare(what, run(h, w, targets, weights, PT_F32, chunks[c]), wref, 1e-6);
  }
  compare("bf16, chunks of 8 rows:", run(h, w, targets, NULL, PT_BF16, 8), run(h, w, targets, NULL, PT_BF16, 0), 1e-2);
  fused = PT_FUSED_TEST_CPU;  // the kernels' arithmetic, by their CPU references
  compare("fused f32, chunks of 8 rows:", run(h, w, targets, NULL, PT_F32, 8), ref, 1e-6);
  compare("fused f32 weighted, one chunk:", run(h, w, targets, weights, PT_F32, 64), wref, 1e-6);
  compare("fused bf16, chunks of 8 rows:", run(h, w, targets, NULL, PT_BF16, 8), run(h, w, targets, NULL, PT_BF16, 0),
          1e-2);
  fused = PT_FUSED_OFF;
  if (pt_cuda_device_count() > 0) {  // the same on cuda:0
    dev = 0;
    compare("cuda f32, chunks of 8 rows:", run(h, w, targets, NULL, PT_F32, 8), run(h, w, targets, NULL, PT_F32, 0), 1e-5);
    compare("cuda f32 weighted, chunks of 8:", run(h, w, targets, weights, PT_F32, 8),
            run(h, w, targets, weights, PT_F32, 0), 1e-5);
    compare("cuda bf16, chunks of 8 rows:", run(h, w, targets, NULL, PT_BF16, 8), run(h, w, targets, NULL, PT_BF16, 0),
            1e-2);
    if (pt_fused_kernels_available()) {
      fused = PT_FUSED_ON;
      compare("cuda fused f32, chunks of 8 rows:", run(h, w, targets, NULL, PT_F32, 8),
              run(h, w, targets, NULL, PT_F32, 0), 1e-5);
      compare("cuda fused f32 weighted, one chunk:", run(h, w, targets, weights, PT_F32, 64),
              run(h, w, targets, weights, PT_F32, 0), 1e-5);
      compare("cuda fused bf16, chunks of 8 rows:", run(h, w, targets, NULL, PT_BF16, 8),
              run(h, w, targets, NULL, PT_BF16, 0), 1e-2);
      fused = PT_FUSED_OFF;
    }
    dev = PT_CPU;
  } else {
    printf("no CUDA device: the cuda:0 comparisons skipped\n");
  }

  // Bad input: a message, no tensor.
  pt_tensor *bad = pt_linear_cross_entropy(h, pt_zeros(PT_SHAPE(V, D + 1), PT_F32, PT_CPU), targets, NULL, -100, 8);
  CHECK_MSG(!bad && strstr(pt_error(), "want h (N, D) and w (V, D)"), "'%s'", pt_error());
  pt_error_clear();
  bad = pt_linear_cross_entropy(h, w, pt_slice(targets, 0, 0, 5), NULL, -100, 8);
  CHECK_MSG(!bad && strstr(pt_error(), "targets must be (N) i64"), "'%s'", pt_error());
  pt_error_clear();
  bad = pt_linear_cross_entropy(h, w, targets, NULL, -100, 0);
  CHECK_MSG(!bad && strstr(pt_error(), "chunk_rows"), "'%s'", pt_error());
  pt_error_clear();
  pt_gen_free(g);
  pt_scope_end(s);
  return check_done("test_linear_ce");
}
