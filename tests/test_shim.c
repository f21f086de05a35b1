// torch_shim: ops against hand-computed values, finite-difference gradients of composite
// functions, AdamW against its formula, lifetimes, and error paths that must not crash.
#include "check.h"
#include "torch_shim.h"

// Copy a f32 tensor out into a static buffer (small tensors only).
static const float *vals(const pt_tensor *t) {
  static float buf[4096];
  pt_scope s = pt_scope_begin();
  pt_tensor *f = pt_to_dtype(t, PT_F32);
  if (!f || pt_numel(f) > 4096 || pt_to_data(f, buf, (size_t)pt_numel(f) * 4) != 0) {
    fprintf(stderr, "vals: %s\n", pt_error());
    memset(buf, 0, sizeof buf);
  }
  pt_scope_end(s);
  return buf;
}

static pt_tensor *f32(const float *data, pt_shape s) { return pt_from_data(data, PT_F32, s, PT_CPU); }

static void check_vals(const pt_tensor *t, const float *want, int n, double tol, const char *what) {
  CHECK_MSG(t != NULL, "%s: %s", what, pt_error());
  if (!t) return;
  CHECK_MSG(pt_numel(t) == n, "%s: %lld elements, want %d", what, (long long)pt_numel(t), n);
  const float *got = vals(t);
  for (int i = 0; i < n; i++)
    CHECK_MSG(fabs(got[i] - want[i]) <= tol * fmax(1, fabs(want[i])), "%s[%d] = %.7g, want %.7g", what, i,
              got[i], want[i]);
}

static void test_data_roundtrip(void) {
  pt_scope s = pt_scope_begin();
  float a[6] = {1, 2, 3, 4, 5, 6};
  pt_tensor *t = f32(a, PT_SHAPE(2, 3));
  pt_shape sh = pt_shape_of(t);
  CHECK(sh.ndim == 2 && sh.d[0] == 2 && sh.d[1] == 3);
  CHECK(pt_size(t, -1) == 3 && pt_numel(t) == 6 && pt_dtype_of(t) == PT_F32 && pt_device_of(t) == PT_CPU);
  char desc[64];
  CHECK(!strcmp(pt_describe(t, desc, sizeof desc), "[2,3] f32 cpu"));

  int64_t ids[3] = {7, -1, 1LL << 40};
  int64_t ids_back[3];
  pt_tensor *ti = pt_from_data(ids, PT_I64, PT_SHAPE(3), PT_CPU);
  CHECK(pt_to_data(ti, ids_back, sizeof ids_back) == 0 && !memcmp(ids, ids_back, sizeof ids));
  int32_t i32[2] = {-5, 9}, i32b[2];
  CHECK(pt_to_data(pt_from_data(i32, PT_I32, PT_SHAPE(2), PT_CPU), i32b, sizeof i32b) == 0 && i32b[0] == -5 && i32b[1] == 9);
  uint8_t b[3] = {1, 0, 1}, bb[3];
  CHECK(pt_to_data(pt_from_data(b, PT_BOOL, PT_SHAPE(3), PT_CPU), bb, 3) == 0 && !memcmp(b, bb, 3));
  // bf16 and f16 keep values that they represent exactly.
  check_vals(pt_to_dtype(t, PT_BF16), a, 6, 0, "bf16 roundtrip");
  check_vals(pt_to_dtype(t, PT_F16), a, 6, 0, "f16 roundtrip");
  CHECK(pt_dtype_size(PT_BF16) == 2 && pt_dtype_size(PT_I64) == 8);
  CHECK_NEAR(pt_item(pt_sum(t)), 21, 0);
  float scalar_val = 2.5f;
  CHECK_NEAR(pt_item(f32(&scalar_val, PT_SCALAR_SHAPE)), 2.5, 0);
  check_vals(pt_arange(2, 5, PT_F32, PT_CPU), (float[]){2, 3, 4}, 3, 0, "arange");
  check_vals(pt_full(PT_SHAPE(2), 1.5, PT_F32, PT_CPU), (float[]){1.5, 1.5}, 2, 0, "full");
  CHECK(pt_ok());
  pt_scope_end(s);
}

static void test_elementwise_and_linear(void) {
  pt_scope s = pt_scope_begin();
  pt_tensor *a = f32((float[]){1, 2, 3, 4, 5, 6}, PT_SHAPE(2, 3));
  pt_tensor *row = f32((float[]){10, 20, 30}, PT_SHAPE(3));
  check_vals(pt_add(a, row), (float[]){11, 22, 33, 14, 25, 36}, 6, 0, "add broadcast");
  check_vals(pt_sub(a, row), (float[]){-9, -18, -27, -6, -15, -24}, 6, 0, "sub");
  check_vals(pt_mul(a, row), (float[]){10, 40, 90, 40, 100, 180}, 6, 0, "mul");
  check_vals(pt_div(row, a), (float[]){10, 10, 10, 2.5, 4, 5}, 6, 1e-7, "div");
  check_vals(pt_add_scalar(a, -1), (float[]){0, 1, 2, 3, 4, 5}, 6, 0, "add_scalar");
  check_vals(pt_pow_scalar(a, 2), (float[]){1, 4, 9, 16, 25, 36}, 6, 1e-7, "pow");
  check_vals(pt_rsqrt(f32((float[]){4, 0.25}, PT_SHAPE(2))), (float[]){0.5, 2}, 2, 1e-6, "rsqrt");
  // silu(x) = x * sigmoid(x)
  float x[3] = {-1, 0, 2};
  float silu_want[3];
  for (int i = 0; i < 3; i++) silu_want[i] = x[i] / (1 + expf(-x[i]));
  check_vals(pt_silu(f32(x, PT_SHAPE(3))), silu_want, 3, 1e-6, "silu");
  check_vals(pt_maximum(f32(x, PT_SHAPE(3)), f32((float[]){0, 0, 0}, PT_SHAPE(3))), (float[]){0, 0, 2}, 3, 0, "maximum");

  // [[1,2,3],[4,5,6]] · [[1,0],[0,1],[1,1]] = [[4,5],[10,11]]
  pt_tensor *m = f32((float[]){1, 0, 0, 1, 1, 1}, PT_SHAPE(3, 2));
  check_vals(pt_matmul(a, m), (float[]){4, 5, 10, 11}, 4, 0, "matmul");
  // linear: x (2,3) · w (2,3)ᵀ + b
  pt_tensor *w = f32((float[]){1, 0, 1, 0, 1, 0}, PT_SHAPE(2, 3));
  pt_tensor *b = f32((float[]){0.5, -0.5}, PT_SHAPE(2));
  check_vals(pt_linear(a, w, b), (float[]){4.5, 1.5, 10.5, 4.5}, 4, 0, "linear");
  check_vals(pt_linear(a, w, NULL), (float[]){4, 2, 10, 5}, 4, 0, "linear no bias");

  uint8_t mask[6] = {1, 0, 0, 0, 1, 0};
  pt_tensor *mk = pt_from_data(mask, PT_BOOL, PT_SHAPE(2, 3), PT_CPU);
  check_vals(pt_masked_fill(a, mk, -7), (float[]){-7, 2, 3, 4, -7, 6}, 6, 0, "masked_fill");
  check_vals(pt_where(mk, a, pt_neg(a)), (float[]){1, -2, -3, -4, 5, -6}, 6, 0, "where");
  pt_tensor *sq = f32((float[]){1, 2, 3, 4, 5, 6, 7, 8, 9}, PT_SHAPE(3, 3));
  check_vals(pt_triu(sq, 0), (float[]){1, 2, 3, 0, 5, 6, 0, 0, 9}, 9, 0, "triu");
  check_vals(pt_tril(sq, -1), (float[]){0, 0, 0, 4, 0, 0, 7, 8, 0}, 9, 0, "tril");
  CHECK(pt_ok());
  pt_scope_end(s);
}

static void test_reductions(void) {
  pt_scope s = pt_scope_begin();
  pt_tensor *a = f32((float[]){1, 2, 3, 4, 5, 6}, PT_SHAPE(2, 3));
  check_vals(pt_sum_dim(a, 0, 0), (float[]){5, 7, 9}, 3, 0, "sum_dim");
  check_vals(pt_mean_dim(a, 1, 1), (float[]){2, 5}, 2, 1e-7, "mean_dim");
  CHECK(pt_size(pt_mean_dim(a, 1, 1), 1) == 1);
  check_vals(pt_amax_dim(a, 1, 0), (float[]){3, 6}, 2, 0, "amax");
  int64_t am[2];
  CHECK(pt_to_data(pt_argmax(f32((float[]){0, 9, 1, 7, 2, 3}, PT_SHAPE(2, 3)), 1, 0), am, sizeof am) == 0);
  CHECK(am[0] == 1 && am[1] == 0);
  CHECK_NEAR(pt_item(pt_mean(a)), 3.5, 1e-7);

  // softmax([1,2,3]) = e^i / (e + e^2 + e^3)
  double z = exp(1) + exp(2) + exp(3);
  float sm[3] = {(float)(exp(1) / z), (float)(exp(2) / z), (float)(exp(3) / z)};
  pt_tensor *v = f32((float[]){1, 2, 3}, PT_SHAPE(3));
  check_vals(pt_softmax(v, 0), sm, 3, 1e-6, "softmax");
  check_vals(pt_log_softmax(v, -1), (float[]){logf(sm[0]), logf(sm[1]), logf(sm[2])}, 3, 1e-6, "log_softmax");

  // cross-entropy over 3 rows, the middle one ignored: mean of -log p(target) over rows 0 and 2.
  pt_tensor *logits = f32((float[]){1, 2, 3, 0, 0, 0, 3, 2, 1}, PT_SHAPE(3, 3));
  int64_t tg[3] = {2, -100, 1};
  pt_tensor *targets = pt_from_data(tg, PT_I64, PT_SHAPE(3), PT_CPU);
  double want = (-log(sm[2]) - log(sm[1])) / 2;
  CHECK_NEAR(pt_item(pt_cross_entropy(logits, targets, -100, PT_REDUCE_MEAN)), want, 1e-6);
  CHECK_NEAR(pt_item(pt_cross_entropy(logits, targets, -100, PT_REDUCE_SUM)), 2 * want, 1e-6);
  check_vals(pt_cross_entropy(logits, targets, -100, PT_REDUCE_NONE), (float[]){-logf(sm[2]), 0, -logf(sm[1])}, 3, 1e-6,
             "cross_entropy none");
  CHECK(pt_ok());
  pt_scope_end(s);
}

static void test_indexing_and_shape(void) {
  pt_scope s = pt_scope_begin();
  pt_tensor *emb = f32((float[]){0, 1, 10, 11, 20, 21}, PT_SHAPE(3, 2));
  pt_tensor *ids = pt_from_data((int64_t[]){2, 0, 2}, PT_I64, PT_SHAPE(3), PT_CPU);
  check_vals(pt_embedding(emb, ids), (float[]){20, 21, 0, 1, 20, 21}, 6, 0, "embedding");
  pt_tensor *ids32 = pt_from_data((int32_t[]){1}, PT_I32, PT_SHAPE(1, 1), PT_CPU);
  check_vals(pt_embedding(emb, ids32), (float[]){10, 11}, 2, 0, "embedding i32");
  check_vals(pt_index_select(emb, 1, pt_from_data((int64_t[]){1}, PT_I64, PT_SHAPE(1), PT_CPU)), (float[]){1, 11, 21}, 3, 0,
             "index_select");
  pt_tensor *gi = pt_from_data((int64_t[]){1, 0, 0}, PT_I64, PT_SHAPE(3, 1), PT_CPU);
  check_vals(pt_gather(emb, 1, gi), (float[]){1, 10, 20}, 3, 0, "gather");
  pt_tensor *zeros = pt_zeros(PT_SHAPE(4), PT_F32, PT_CPU);
  pt_tensor *si = pt_from_data((int64_t[]){3, 1, 3}, PT_I64, PT_SHAPE(3), PT_CPU);
  pt_tensor *src = f32((float[]){1, 2, 4}, PT_SHAPE(3));
  check_vals(pt_scatter_add(zeros, 0, si, src), (float[]){0, 2, 0, 5}, 4, 0, "scatter_add");
  check_vals(pt_scatter(zeros, 0, pt_slice(si, 0, 0, 2), pt_slice(src, 0, 0, 2)), (float[]){0, 2, 0, 1}, 4, 0, "scatter");

  pt_tensor *a = f32((float[]){1, 2, 3, 4, 5, 6}, PT_SHAPE(2, 3));
  pt_tensor *parts[2] = {a, a};
  pt_tensor *c = pt_cat(parts, 2, 1);
  CHECK(pt_size(c, 0) == 2 && pt_size(c, 1) == 6);
  check_vals(c, (float[]){1, 2, 3, 1, 2, 3, 4, 5, 6, 4, 5, 6}, 12, 0, "cat");
  check_vals(pt_slice(a, 1, 1, 3), (float[]){2, 3, 5, 6}, 4, 0, "slice");
  check_vals(pt_contiguous(pt_transpose(a, 0, 1)), (float[]){1, 4, 2, 5, 3, 6}, 6, 0, "transpose");
  check_vals(pt_permute(pt_view(a, PT_SHAPE(1, 2, 3)), PT_SHAPE(2, 0, 1)), (float[]){1, 4, 2, 5, 3, 6}, 6, 0, "permute");
  CHECK(pt_size(pt_view(a, PT_SHAPE(3, -1)), 1) == 2);
  CHECK(pt_size(pt_reshape(pt_transpose(a, 0, 1), PT_SHAPE(6)), 0) == 6);
  CHECK(pt_ndim(pt_unsqueeze(a, 0)) == 3 && pt_ndim(pt_squeeze(pt_unsqueeze(a, 0), 0)) == 2);
  pt_tensor *e = pt_expand(pt_view(a, PT_SHAPE(2, 1, 3)), PT_SHAPE(-1, 4, -1));
  CHECK(pt_size(e, 1) == 4 && pt_numel(e) == 24);
  CHECK(pt_ok());
  pt_scope_end(s);
}

// Fill with a fixed pseudo-random sequence (no libtorch RNG, so values do not depend on it).
static void fill(float *x, int n, unsigned seed) {
  for (int i = 0; i < n; i++) {
    seed = seed * 1103515245u + 12345u;
    x[i] = ((seed >> 8) % 2000) / 1000.0f - 1.0f;
  }
}

static pt_tensor *rand_f32(pt_shape s, unsigned seed) {
  int64_t n = 1;
  for (int i = 0; i < s.ndim; i++) n *= s.d[i];
  float *buf = malloc(sizeof(float) * (size_t)n);
  fill(buf, (int)n, seed);
  pt_tensor *t = f32(buf, s);
  free(buf);
  return t;
}

static double max_abs_diff(const pt_tensor *a, const pt_tensor *b) {
  return pt_item(pt_amax_dim(pt_view(pt_abs(pt_sub(a, b)), PT_SHAPE(-1)), 0, 0));
}

static void test_attention(void) {
  pt_scope s = pt_scope_begin();
  // Fused and step-by-step attention agree: GQA, causal with a prefix (Tk > Tq), masks.
  pt_tensor *q = rand_f32(PT_SHAPE(2, 4, 5, 8), 1);
  pt_tensor *k = rand_f32(PT_SHAPE(2, 2, 7, 8), 2);
  pt_tensor *v = rand_f32(PT_SHAPE(2, 2, 7, 8), 3);
  for (int causal = 0; causal <= 1; causal++) {
    double d = max_abs_diff(pt_attention(q, k, v, NULL, causal, 0), pt_attention_math(q, k, v, NULL, causal, 0));
    CHECK_MSG(d < 1e-5, "attention causal=%d differs from the math path by %g", causal, d);
  }
  uint8_t keymask[2 * 7];
  for (int i = 0; i < 14; i++) keymask[i] = !(i == 3 || i == 13);  // a padded key in each batch row
  pt_tensor *km = pt_view(pt_from_data(keymask, PT_BOOL, PT_SHAPE(2, 7), PT_CPU), PT_SHAPE(2, 1, 1, 7));
  double d = max_abs_diff(pt_attention(q, k, v, km, 1, 0), pt_attention_math(q, k, v, km, 1, 0));
  CHECK_MSG(d < 1e-5, "masked causal attention differs by %g", d);
  pt_tensor *qs = rand_f32(PT_SHAPE(2, 4, 7, 8), 4);
  d = max_abs_diff(pt_attention(qs, k, v, NULL, 1, 0.3), pt_attention_math(qs, k, v, NULL, 1, 0.3));
  CHECK_MSG(d < 1e-5, "square causal attention with scale differs by %g", d);

  // By hand: with one-hot values, the output is the attention weights. Tq=2, Tk=3, causal:
  // query 0 sees keys 0..1, query 1 sees 0..2. All-zero q gives uniform weights.
  pt_tensor *q0 = pt_zeros(PT_SHAPE(1, 1, 2, 3), PT_F32, PT_CPU);
  pt_tensor *k0 = pt_zeros(PT_SHAPE(1, 1, 3, 3), PT_F32, PT_CPU);
  float eye[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
  pt_tensor *v0 = f32(eye, PT_SHAPE(1, 1, 3, 3));
  float want[6] = {0.5f, 0.5f, 0, 1 / 3.f, 1 / 3.f, 1 / 3.f};
  check_vals(pt_attention(q0, k0, v0, NULL, 1, 0), want, 6, 1e-6, "attention prefix-causal");
  check_vals(pt_attention_math(q0, k0, v0, NULL, 1, 0), want, 6, 1e-6, "attention_math prefix-causal");
  CHECK(pt_ok());
  pt_scope_end(s);
}

static void test_rms_norm_and_dropout(void) {
  pt_scope s = pt_scope_begin();
  pt_tensor *x = f32((float[]){3, 4}, PT_SHAPE(1, 2));
  pt_tensor *w = f32((float[]){1, 2}, PT_SHAPE(2));
  double r = sqrt((9 + 16) / 2.0 + 1e-6);
  check_vals(pt_rms_norm(x, w, 1e-6), (float[]){(float)(3 / r), (float)(8 / r)}, 2, 1e-6, "rms_norm");

  pt_tensor *ones = pt_ones(PT_SHAPE(10000), PT_F32, PT_CPU);
  check_vals(pt_dropout(f32((float[]){1, 2}, PT_SHAPE(2)), 0, NULL), (float[]){1, 2}, 2, 0, "dropout p=0");
  pt_gen *g1 = pt_gen_new(42, PT_CPU), *g2 = pt_gen_new(42, PT_CPU);
  pt_tensor *d1 = pt_dropout(ones, 0.25, g1), *d2 = pt_dropout(ones, 0.25, g2);
  CHECK(max_abs_diff(d1, d2) == 0);  // same seed, same mask
  double zeros = pt_item(pt_sum(pt_to_dtype(pt_eq_scalar(d1, 0), PT_F32)));
  double kept_sum = pt_item(pt_sum(d1));
  CHECK_MSG(zeros > 2300 && zeros < 2700, "dropout zeroed %g of 10000 at p=0.25", zeros);
  CHECK_NEAR(kept_sum, (10000 - zeros) / 0.75, 1e-4);
  pt_tensor *d3 = pt_dropout(ones, 0.25, g1);
  CHECK(max_abs_diff(d1, d3) > 0);  // the generator moved on
  pt_gen_free(g1);
  pt_gen_free(g2);
  CHECK(pt_ok());
  pt_scope_end(s);
}

static void test_generators(void) {
  pt_scope s = pt_scope_begin();
  pt_gen *g = pt_gen_new(7, PT_CPU);
  size_t n = pt_gen_get_state(g, NULL, 0);
  CHECK(n > 0);
  void *state = malloc(n);
  CHECK(pt_gen_get_state(g, state, n) == n);
  pt_tensor *a = pt_randn(PT_SHAPE(16), PT_F32, PT_CPU, g);
  pt_tensor *b = pt_randn(PT_SHAPE(16), PT_F32, PT_CPU, g);
  CHECK(max_abs_diff(a, b) > 0);
  CHECK(pt_gen_set_state(g, state, n) == 0);
  CHECK(max_abs_diff(a, pt_randn(PT_SHAPE(16), PT_F32, PT_CPU, g)) == 0);  // replayed
  pt_tensor *u = pt_uniform(PT_SHAPE(1000), 2, 3, PT_F32, PT_CPU, g);
  CHECK(pt_item(pt_amax_dim(u, 0, 0)) < 3 && pt_item(pt_amax_dim(pt_neg(u), 0, 0)) <= -2);
  free(state);
  pt_gen_free(g);
  pt_manual_seed(5);
  pt_tensor *c = pt_randn(PT_SHAPE(4), PT_F32, PT_CPU, NULL);
  pt_manual_seed(5);
  CHECK(max_abs_diff(c, pt_randn(PT_SHAPE(4), PT_F32, PT_CPU, NULL)) == 0);
  CHECK(pt_ok());
  pt_scope_end(s);
}

// ---- finite-difference gradient checks ----

typedef pt_tensor *(*scalar_fn)(pt_tensor *const *inputs);

// Compares autograd's gradient of f with respect to inputs[which] with central differences.
static void check_gradient(const char *name, scalar_fn f, pt_tensor **inputs, int n_inputs, int which) {
  pt_scope s = pt_scope_begin();
  for (int i = 0; i < n_inputs; i++) pt_set_requires_grad(inputs[i], 1);
  CHECK_MSG(pt_backward(f(inputs)) == 0, "%s: backward: %s", name, pt_error());
  pt_tensor *g = pt_grad(inputs[which]);
  CHECK_MSG(g != NULL, "%s: no gradient", name);
  if (!g) {
    pt_scope_end(s);
    return;
  }
  int64_t n = pt_numel(g);
  float *analytic = malloc(sizeof(float) * (size_t)n), *x = malloc(sizeof(float) * (size_t)n);
  pt_to_data(g, analytic, sizeof(float) * (size_t)n);
  pt_to_data(inputs[which], x, sizeof(float) * (size_t)n);
  int was = pt_set_grad_enabled(0);
  const float eps = 1e-2f;
  double worst = 0;
  for (int64_t i = 0; i < n; i++) {
    pt_scope inner = pt_scope_begin();
    float orig = x[i];
    x[i] = orig + eps;
    pt_copy_(inputs[which], f32(x, pt_shape_of(inputs[which])));
    double up = pt_item(f(inputs));
    x[i] = orig - eps;
    pt_copy_(inputs[which], f32(x, pt_shape_of(inputs[which])));
    double down = pt_item(f(inputs));
    x[i] = orig;
    pt_copy_(inputs[which], f32(x, pt_shape_of(inputs[which])));
    double numeric = (up - down) / (2 * eps);
    double err = fabs(numeric - analytic[i]) / fmax(1e-2, fabs(numeric));
    if (err > worst) worst = err;
    pt_scope_end(inner);
  }
  pt_set_grad_enabled(was);
  CHECK_MSG(worst < 1e-2, "%s: gradient of input %d off by %.3g (relative)", name, which, worst);
  for (int i = 0; i < n_inputs; i++) pt_zero_grad(inputs[i]);
  free(analytic);
  free(x);
  pt_scope_end(s);
}

// sum(silu(linear(rms_norm(x, w), W, b)) * x)
static pt_tensor *fn_mlp(pt_tensor *const *in) {
  return pt_sum(pt_mul(pt_silu(pt_linear(pt_rms_norm(in[0], in[1], 1e-5), in[2], in[3])), in[0]));
}

// cross_entropy(attention(q, k, v) reshaped to logits, fixed targets)
static pt_tensor *fn_attention(pt_tensor *const *in) {
  pt_tensor *o = pt_attention(in[0], in[1], in[2], NULL, 1, 0);  // (1, 2, 3, 4)
  pt_tensor *logits = pt_reshape(o, PT_SHAPE(6, 4));
  pt_tensor *targets = pt_from_data((int64_t[]){0, 1, 2, 3, -100, 1}, PT_I64, PT_SHAPE(6), PT_CPU);
  return pt_cross_entropy(pt_mul_scalar(logits, 3), targets, -100, PT_REDUCE_MEAN);
}

// mean(log_softmax(embedding(E, ids) · Wᵀ) gathered at the next ids)
static pt_tensor *fn_embedding(pt_tensor *const *in) {
  pt_tensor *ids = pt_from_data((int64_t[]){1, 3, 0, 3}, PT_I64, PT_SHAPE(4), PT_CPU);
  pt_tensor *lp = pt_log_softmax(pt_linear(pt_embedding(in[0], ids), in[1], NULL), -1);
  pt_tensor *next = pt_from_data((int64_t[]){3, 0, 3, 2}, PT_I64, PT_SHAPE(4, 1), PT_CPU);
  return pt_neg(pt_mean(pt_gather(lp, 1, next)));
}

static void test_gradients(void) {
  pt_tensor *mlp[4] = {pt_keep(rand_f32(PT_SHAPE(3, 4), 11)), pt_keep(rand_f32(PT_SHAPE(4), 12)),
                       pt_keep(rand_f32(PT_SHAPE(4, 4), 13)), pt_keep(rand_f32(PT_SHAPE(4), 14))};
  for (int i = 0; i < 4; i++) check_gradient("mlp", fn_mlp, mlp, 4, i);
  pt_tensor *att[3] = {pt_keep(rand_f32(PT_SHAPE(1, 2, 3, 4), 21)), pt_keep(rand_f32(PT_SHAPE(1, 1, 5, 4), 22)),
                       pt_keep(rand_f32(PT_SHAPE(1, 1, 5, 4), 23))};
  for (int i = 0; i < 3; i++) check_gradient("attention", fn_attention, att, 3, i);
  pt_tensor *emb[2] = {pt_keep(rand_f32(PT_SHAPE(4, 3), 31)), pt_keep(rand_f32(PT_SHAPE(4, 3), 32))};
  for (int i = 0; i < 2; i++) check_gradient("embedding", fn_embedding, emb, 2, i);
  for (int i = 0; i < 4; i++) pt_free(mlp[i]);
  for (int i = 0; i < 3; i++) pt_free(att[i]);
  for (int i = 0; i < 2; i++) pt_free(emb[i]);

  // Outside autograd nothing is recorded.
  pt_scope s = pt_scope_begin();
  pt_tensor *p = rand_f32(PT_SHAPE(2), 41);
  pt_set_requires_grad(p, 1);
  int was = pt_set_grad_enabled(0);
  CHECK(!pt_grad_enabled() && !pt_requires_grad(pt_mul_scalar(p, 2)));
  pt_set_grad_enabled(was);
  CHECK(pt_grad_enabled() && pt_requires_grad(pt_mul_scalar(p, 2)));
  CHECK(pt_grad(p) == NULL && pt_ok());  // no gradient yet is not an error
  CHECK(pt_ok());
  pt_scope_end(s);
}

// The encoder's ops (BERT / XLM-R): layer_norm, exact and tanh GELU, cumsum, padded embeddings.
static pt_tensor *fn_layer_norm_gelu(pt_tensor *const *in) {
  pt_tensor *h = pt_gelu(pt_layer_norm(in[0], in[1], in[2], 1e-5));
  return pt_sum(pt_mul(pt_gelu_tanh(h), in[0]));
}

static void test_encoder_ops(void) {
  pt_scope s = pt_scope_begin();
  // layer_norm of (1, 2, 3, 6): mean 3, biased variance 3.5.
  pt_tensor *x = f32((float[]){1, 2, 3, 6}, PT_SHAPE(1, 4));
  pt_tensor *w = f32((float[]){1, 2, 1, 0.5f}, PT_SHAPE(4));
  pt_tensor *b = f32((float[]){0, 0, 1, -1}, PT_SHAPE(4));
  double r = sqrt(3.5 + 1e-5);
  float ln_want[4] = {(float)(-2 / r), (float)(-2 / r), (float)(0 / r + 1), (float)(0.5 * 3 / r - 1)};
  check_vals(pt_layer_norm(x, w, b, 1e-5), ln_want, 4, 1e-6, "layer_norm");
  // gelu(x) = x/2 (1 + erf(x/sqrt 2)); the tanh form 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
  float g[5] = {-3, -1, 0, 0.5f, 2}, exact[5], approx[5];
  for (int i = 0; i < 5; i++) {
    exact[i] = (float)(0.5 * g[i] * (1 + erf(g[i] / sqrt(2.0))));
    approx[i] = (float)(0.5 * g[i] * (1 + tanh(sqrt(2 / M_PI) * (g[i] + 0.044715 * pow(g[i], 3)))));
  }
  check_vals(pt_gelu(f32(g, PT_SHAPE(5))), exact, 5, 1e-6, "gelu");
  check_vals(pt_gelu_tanh(f32(g, PT_SHAPE(5))), approx, 5, 1e-6, "gelu_tanh");
  CHECK(fabs(exact[1] - approx[1]) > 1e-5);  // the two forms differ, so each check means something
  // cumsum of a bool mask counts as i64: XLM-R's positions.
  uint8_t m[5] = {1, 1, 0, 1, 0};
  pt_tensor *c = pt_cumsum(pt_from_data(m, PT_BOOL, PT_SHAPE(1, 5), PT_CPU), 1);
  int64_t cs[5];
  CHECK(c && pt_dtype_of(c) == PT_I64 && pt_to_data(c, cs, sizeof cs) == 0);
  CHECK(cs[0] == 1 && cs[1] == 2 && cs[2] == 2 && cs[3] == 3 && cs[4] == 3);
  // Padded embeddings: same rows as pt_embedding; the padding row gets no gradient.
  pt_tensor *table = pt_keep(rand_f32(PT_SHAPE(4, 3), 51));
  pt_set_requires_grad(table, 1);
  pt_tensor *ids = pt_from_data((int64_t[]){1, 2, 1, 3}, PT_I64, PT_SHAPE(4), PT_CPU);
  pt_tensor *e = pt_embedding_padded(table, ids, 1);
  CHECK(max_abs_diff(e, pt_embedding(table, ids)) == 0);
  CHECK(pt_backward(pt_sum(e)) == 0);
  check_vals(pt_grad(table), (float[]){0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1}, 12, 0, "embedding_padded grad");
  pt_zero_grad(table);
  CHECK(pt_backward(pt_sum(pt_embedding_padded(table, ids, -1))) == 0);
  check_vals(pt_grad(table), (float[]){0, 0, 0, 2, 2, 2, 1, 1, 1, 1, 1, 1}, 12, 0, "embedding no padding grad");
  pt_free(table);
  // Errors name the op and the shapes.
  pt_error_clear();
  CHECK(pt_layer_norm(x, pt_ones(PT_SHAPE(3), PT_F32, PT_CPU), b, 1e-5) == NULL);
  CHECK_CONTAINS(pt_error(), "layer_norm: [1,4], [3], [4]: weight and bias must be (4)");
  pt_error_clear();
  CHECK(pt_embedding_padded(w, ids, 4) == NULL);
  CHECK_CONTAINS(pt_error(), "embedding_padded: [4], [4]: padding_idx 4 is outside the table");
  pt_error_clear();
  CHECK(pt_ok());
  pt_scope_end(s);
  // Gradients through layer_norm (x, weight, bias) and both GELUs, against finite differences.
  pt_tensor *in[3] = {pt_keep(rand_f32(PT_SHAPE(3, 5), 61)), pt_keep(rand_f32(PT_SHAPE(5), 62)),
                      pt_keep(rand_f32(PT_SHAPE(5), 63))};
  for (int i = 0; i < 3; i++) check_gradient("layer_norm+gelu", fn_layer_norm_gelu, in, 3, i);
  for (int i = 0; i < 3; i++) pt_free(in[i]);
}

static void test_adamw_and_clipping(void) {
  pt_scope s = pt_scope_begin();
  pt_tensor *p = pt_keep(f32((float[]){1, -2}, PT_SHAPE(2)));
  pt_set_requires_grad(p, 1);
  pt_adamw_config cfg = {.lr = 0.1, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.01};
  pt_adamw *o = pt_adamw_new(&p, 1, cfg);
  CHECK(o != NULL);
  // loss = sum(c * p) → grad = c, constant; compare two steps with the formula.
  float c[2] = {0.5f, -3};
  double ref[2] = {1, -2}, m[2] = {0, 0}, v[2] = {0, 0};
  for (int step = 1; step <= 2; step++) {
    pt_scope inner = pt_scope_begin();
    pt_adamw_zero_grad(o);
    CHECK(pt_backward(pt_sum(pt_mul(p, f32(c, PT_SHAPE(2))))) == 0);
    CHECK(pt_adamw_step(o) == 0);
    for (int i = 0; i < 2; i++) {
      ref[i] *= 1 - cfg.lr * cfg.weight_decay;
      m[i] = cfg.beta1 * m[i] + (1 - cfg.beta1) * c[i];
      v[i] = cfg.beta2 * v[i] + (1 - cfg.beta2) * c[i] * c[i];
      double mh = m[i] / (1 - pow(cfg.beta1, step)), vh = v[i] / (1 - pow(cfg.beta2, step));
      ref[i] -= cfg.lr * mh / (sqrt(vh) + cfg.eps);
    }
    const float *got = vals(p);
    CHECK_NEAR(got[0], ref[0], 1e-6);
    CHECK_NEAR(got[1], ref[1], 1e-6);
    pt_scope_end(inner);
  }
  CHECK(pt_adamw_steps(o) == 2);
  const float *ea = vals(pt_adamw_exp_avg(o, 0));
  CHECK_NEAR(ea[1], m[1], 1e-6);

  // Clipping: gradient (3, 4) has norm 5; clipped to 1 it becomes (0.6, 0.8).
  pt_adamw_zero_grad(o);
  CHECK(pt_backward(pt_sum(pt_mul(p, f32((float[]){3, 4}, PT_SHAPE(2))))) == 0);
  CHECK_NEAR(pt_clip_grad_norm(&p, 1, 0), 5, 1e-6);  // measure only
  CHECK_NEAR(pt_clip_grad_norm(&p, 1, 1), 5, 1e-6);
  check_vals(pt_grad(p), (float[]){0.6f, 0.8f}, 2, 1e-5, "clipped grad");
  pt_adamw_free(o);
  pt_free(p);
  CHECK(pt_ok());
  pt_scope_end(s);
}

static void test_lifetimes(void) {
  size_t base = pt_live_handles();
  pt_scope s = pt_scope_begin();
  pt_tensor *a = pt_ones(PT_SHAPE(3), PT_F32, PT_CPU);
  for (int i = 0; i < 100; i++) a = pt_add(a, a);
  CHECK(pt_live_handles() == base + 101);
  pt_scope inner = pt_scope_begin();
  pt_tensor *kept = pt_mul_scalar(a, 2);
  pt_mul_scalar(a, 3);
  kept = pt_scope_return(inner, kept);  // the other one is gone, kept lives on in s
  CHECK(pt_live_handles() == base + 102);
  CHECK_NEAR(vals(kept)[0], pow(2, 101), 1e-6);
  pt_tensor *param = pt_keep(pt_clone(a));
  pt_free(pt_clone(a));  // freeing an arena handle early is fine
  pt_scope_end(s);
  CHECK(pt_live_handles() == base + 1);  // only the kept one survives
  CHECK_NEAR(vals(param)[0], pow(2, 100), 1e-6);
  pt_free(param);
  CHECK(pt_live_handles() == base);
}

static void test_errors(void) {
  pt_scope s = pt_scope_begin();
  pt_error_clear();
  pt_tensor *a = pt_zeros(PT_SHAPE(4, 8), PT_F32, PT_CPU), *b = pt_zeros(PT_SHAPE(7, 3), PT_F32, PT_CPU);
  CHECK(pt_matmul(a, b) == NULL);
  CHECK(!strcmp(pt_error(), "matmul: [4,8] x [7,3]: inner dimensions differ"));
  // Later ops on the NULL result fail quietly; the first message stays.
  CHECK(pt_relu(pt_add(pt_matmul(a, b), a)) == NULL);
  CHECK(!strcmp(pt_error(), "matmul: [4,8] x [7,3]: inner dimensions differ"));
  pt_error_clear();
  CHECK(pt_ok() && !strcmp(pt_error(), ""));

  struct {
    const char *what, *want;
    pt_tensor *got;
  } cases[] = {
      {"broadcast", "add: [4,8], [7,3]: ", NULL},
      {"linear", "linear: [4,8] x [7,3]: input features differ", NULL},
      {"view", "view: [4,8]: ", NULL},
      {"slice", "slice: [4,8]: [2,9) is outside dim 1 of size 8", NULL},
      {"ce dtype", "cross_entropy: [4,8], [4]: targets must be i64", NULL},
      {"device", "zeros: ", NULL},
      {"attention", "attention: [4,8], [4,8], [4,8]: q, k, v must be (B, H, T, head_dim)", NULL},
      {"cat", "cat: [4,8], [7,3]: ", NULL},
      {"dropout", "dropout: [4,8]: p = 1", NULL},
      {"shape dims", "zeros: shape has 9 dims", NULL},
  };
  pt_tensor *pair[2] = {a, b};
  pt_shape too_many = {9, {1}};
  for (int i = 0; i < (int)(sizeof cases / sizeof cases[0]); i++) {
    pt_error_clear();
    switch (i) {
      case 0: cases[i].got = pt_add(a, b); break;
      case 1: cases[i].got = pt_linear(a, b, NULL); break;
      case 2: cases[i].got = pt_view(a, PT_SHAPE(5, -1)); break;
      case 3: cases[i].got = pt_slice(a, 1, 2, 9); break;
      case 4: cases[i].got = pt_cross_entropy(a, pt_zeros(PT_SHAPE(4), PT_F32, PT_CPU), -100, PT_REDUCE_MEAN); break;
      case 5: cases[i].got = pt_zeros(PT_SHAPE(2), PT_F32, pt_cuda_device_count() + 3); break;
      case 6: cases[i].got = pt_attention(a, a, a, NULL, 0, 0); break;
      case 7: cases[i].got = pt_cat(pair, 2, 0); break;
      case 8: cases[i].got = pt_dropout(a, 1, NULL); break;
      case 9: cases[i].got = pt_zeros(too_many, PT_F32, PT_CPU); break;
    }
    CHECK_MSG(cases[i].got == NULL, "%s: should fail", cases[i].what);
    CHECK_MSG(!strncmp(pt_error(), cases[i].want, strlen(cases[i].want)), "%s: message \"%s\" does not start with \"%s\"",
              cases[i].what, pt_error(), cases[i].want);
    CHECK_MSG(!strchr(pt_error(), '\n'), "%s: message spans lines", cases[i].what);
  }
  pt_error_clear();
  char small[4];
  CHECK(pt_to_data(a, small, sizeof small) == -1);
  CHECK_CONTAINS(pt_error(), "to_data: [4,8] f32 holds 128 bytes, the buffer 4");
  pt_error_clear();
  CHECK(pt_backward(a) == -1);
  CHECK_CONTAINS(pt_error(), "backward: the loss [4,8] is not a single value");
  pt_error_clear();
  CHECK(isnan(pt_item(a)));
  CHECK_CONTAINS(pt_error(), "item: [4,8] has 32 elements, not 1");
  pt_error_clear();
  CHECK(pt_copy_(a, b) == -1);
  CHECK_CONTAINS(pt_error(), "copy_: [4,8] <- [7,3]: shapes differ");
  pt_error_clear();
  CHECK(pt_adamw_new(NULL, 0, (pt_adamw_config){0}) == NULL);
  CHECK_CONTAINS(pt_error(), "adamw_new: no parameters");
  pt_error_clear();
  CHECK(pt_from_data(NULL, PT_F32, PT_SHAPE(2), PT_CPU) == NULL);
  CHECK_CONTAINS(pt_error(), "from_data: data is NULL");
  pt_error_clear();
  pt_error_set("model: %d layers", 3);
  pt_error_set("second");
  CHECK(!strcmp(pt_error(), "model: 3 layers"));
  pt_error_clear();
  pt_scope_end(s);
}

// On a GPU: fused attention with a prefix and padded keys (the decoder's case) gives the CPU's
// values, and the caching allocator's peak counts a 64 MiB tensor. Without one, only the CPU answer.
static void test_cuda(void) {
  int64_t alloc, reserved;
  CHECK(pt_cuda_peak_bytes(PT_CPU, &alloc, &reserved) == -1 && alloc == -1 && reserved == -1);
  if (pt_cuda_device_count() == 0) {
    printf("test_cuda: no CUDA device, GPU checks skipped\n");
    return;
  }
  pt_scope s = pt_scope_begin();
  pt_tensor *q = rand_f32(PT_SHAPE(2, 4, 5, 8), 11), *k = rand_f32(PT_SHAPE(2, 2, 7, 8), 12);
  pt_tensor *v = rand_f32(PT_SHAPE(2, 2, 7, 8), 13);
  uint8_t keymask[2 * 7];
  for (int i = 0; i < 14; i++) keymask[i] = i != 3 && i != 13;
  pt_tensor *km = pt_view(pt_from_data(keymask, PT_BOOL, PT_SHAPE(2, 7), PT_CPU), PT_SHAPE(2, 1, 1, 7));
  pt_tensor *on_gpu = pt_attention(pt_to_device(q, 0), pt_to_device(k, 0), pt_to_device(v, 0), pt_to_device(km, 0), 1, 0);
  double d = max_abs_diff(pt_to_device(on_gpu, PT_CPU), pt_attention_math(q, k, v, km, 1, 0));
  CHECK_MSG(d < 1e-4, "CUDA masked prefix-causal attention differs from the CPU by %g", d);
  pt_cuda_reset_peak(0);
  pt_tensor *big = pt_zeros(PT_SHAPE(16 << 20), PT_F32, 0);
  CHECK(pt_cuda_peak_bytes(0, &alloc, &reserved) == 0);
  CHECK_MSG(alloc >= (64 << 20) && reserved >= alloc, "peak %lld allocated, %lld reserved after 64 MiB",
            (long long)alloc, (long long)reserved);
  printf("test_cuda: attention differs by %.2g; peak %lld bytes allocated\n", d, (long long)alloc);
  CHECK(big && pt_ok());
  pt_scope_end(s);
}

int main(void) {
  pt_set_num_threads(2);
  CHECK(pt_num_threads() == 2);
  printf("libtorch %s, %d CUDA device(s)\n", pt_version(), pt_cuda_device_count());
  size_t base = pt_live_handles();
  test_data_roundtrip();
  test_elementwise_and_linear();
  test_reductions();
  test_indexing_and_shape();
  test_attention();
  test_rms_norm_and_dropout();
  test_generators();
  test_gradients();
  test_encoder_ops();
  test_adamw_and_clipping();
  test_lifetimes();
  test_errors();
  test_cuda();
  CHECK_MSG(pt_live_handles() == base, "%zu handles leaked", pt_live_handles() - base);
  return check_done("test_shim");
}
