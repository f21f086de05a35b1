// Fused layer ops (kernels/fused_ops.h, the shim's pt_add_rms_norm, pt_rms_norm, pt_swiglu, pt_rope,
// pt_kv_inject, pt_dropout), in the style of ggml's test-backend-ops: each op's forward output and every input's
// gradient, f32 and bf16, over shapes with odd sizes.
// - Everywhere:
//   - the kernels' arithmetic (fused_math.cuh, run by the CPU references) against the composite
//     libtorch ops;
//   - the shim's fused autograd ops run on the CPU (PT_FUSED_TEST_CPU, the references doing the
//     arithmetic) equal the references bit for bit, so the ops' glue (saved tensors, gradients'
//     order, strides, the residual's two outputs, the weight's partial sums) is checked without a GPU;
//   - RMSNorm's and the cross-entropy's row bodies in the CUDA kernels' thread layout
//     (tests/fused_threads.cpp) give the one-thread results;
//   - 500x training (LoRA with dropout, keys rotated back as they are injected) and full-weight
//     training of a tiny LLaMA give the composite path's loss and gradients through the fused ops;
//   - a prefix shifted inside the forward (prefix_shift) is the prefix shifted before it;
//   - with the switch off, or on for CPU tensors, the step-by-step ops bit for bit; bad input refused.
// - Where a GPU is: the CUDA kernels through the shim against the composite path on the same device,
//   and against the CPU references; the 500x steps with PT_FUSED_ON.
// Tolerances, |got − want| <= tol · max(1, |want|): f32 2e-5 (summation order; the weight's gradient,
// a sum over rows, 1e-4); bf16 1.6e-2, two bf16 steps (the kernels round where the composite ops
// do, so a difference in the f32 sums moves a result by a step or two), and for RMSNorm's weight
// gradient 1.6e-2 + 4e-3 · sqrt(rows) (see tolerance()).
#include "fused_ops.h"
#include "tiny_train.h"
#include "torch_shim.h"

#include <stdint.h>

static const double EPS = 1e-5;

typedef enum { OP_RMS, OP_ADD_RMS, OP_SWIGLU, OP_ROPE, OP_KV_K, OP_KV_V, OP_DROPOUT, N_OPS } op_kind;
static const char *OP_NAME[] = {"rms_norm", "add_rms_norm", "swiglu", "rope", "kv_inject K", "kv_inject V", "dropout"};
static const double DROP_P = 0.25;
static const uint64_t DROP_SEED = 77;

// One case: the op, its dtype, and its sizes. RMSNorm and SwiGLU: rows × D. RoPE: x (B, H, T, D)
// made as a transposed view of (B, T, H, D), as llama.c's q and k are, tables (B, 1, T, D). KV
// injection: that x after a prefix (B, H, P, D), both rotated by their own tables (K) or not (V).
typedef struct {
  op_kind op;
  pt_dtype dt;
  int64_t B, H, T, D, P;
} op_case;

static int is_kv(const op_case *c) { return c->op == OP_KV_K || c->op == OP_KV_V; }
static int64_t rows_of(const op_case *c) { return c->op == OP_ROPE || is_kv(c) ? c->B * c->H * c->T : c->B; }

static void fill(float *x, int64_t n, unsigned seed, double lo, double hi) {
  for (int64_t i = 0; i < n; i++) {
    seed = seed * 1664525u + 1013904223u;
    x[i] = (float)(lo + (hi - lo) * ((seed >> 8) & 0xffffff) / 16777216.0);
  }
}

// v rounded to the dtype (exact afterwards: both paths read the same values).
static void round_to_dtype(float *v, int64_t n, pt_dtype dt) {
  pt_scope s = pt_scope_begin();
  pt_tensor *t = pt_to_dtype(pt_to_dtype(pt_from_data(v, PT_F32, PT_SHAPE(n), PT_CPU), dt), PT_F32);
  CHECK(pt_to_data(t, v, sizeof(float) * n) == 0);
  pt_scope_end(s);
}

// The case's inputs, in logical order: a (x or gate), b (the residual or up), w (D), the output's
// gradient gy (ny), the sum's gradient gs, RoPE's tables cos, sin (B, T, D), and KV injection's
// prefix pre (B, H, P, D) with its tables pcos, psin (B, P, D).
typedef struct {
  int64_t n, ny, np;
  float *a, *b, *w, *gy, *gs, *cos, *sin, *pre, *pcos, *psin;
} inputs;

// n random angles' cos and sin, rounded to dt.
static void make_tables(int64_t n, unsigned seed, pt_dtype dt, float **cos, float **sin) {
  float *angle = malloc(sizeof(float) * n);
  *cos = malloc(sizeof(float) * n), *sin = malloc(sizeof(float) * n);
  fill(angle, n, seed, -3.2, 3.2);
  for (int64_t i = 0; i < n; i++) (*cos)[i] = cosf(angle[i]), (*sin)[i] = sinf(angle[i]);
  free(angle);
  round_to_dtype(*cos, n, dt);
  round_to_dtype(*sin, n, dt);
}

static inputs make_inputs(const op_case *c) {
  inputs in = {.n = rows_of(c) * c->D, .np = c->B * c->H * c->P * c->D};
  int64_t n = in.n, nt = c->B * c->T * c->D;
  in.ny = n + in.np;
  in.a = malloc(sizeof(float) * n), in.b = malloc(sizeof(float) * n), in.gy = malloc(sizeof(float) * in.ny);
  in.gs = malloc(sizeof(float) * n), in.w = malloc(sizeof(float) * c->D), in.pre = malloc(sizeof(float) * in.np);
  fill(in.a, n, 1, -2, 2);
  fill(in.b, n, 2, -2, 2);
  fill(in.w, c->D, 3, 0.5, 1.5);
  fill(in.gy, in.ny, 4, -1, 1);
  fill(in.gs, n, 5, -1, 1);
  fill(in.pre, in.np, 7, -2, 2);
  make_tables(nt, 6, c->dt, &in.cos, &in.sin);
  make_tables(c->B * c->P * c->D, 8, c->dt, &in.pcos, &in.psin);
  float *all[] = {in.a, in.b, in.gs};
  for (int i = 0; i < 3; i++) round_to_dtype(all[i], n, c->dt);
  round_to_dtype(in.gy, in.ny, c->dt);
  round_to_dtype(in.pre, in.np, c->dt);
  round_to_dtype(in.w, c->D, c->dt);
  return in;
}

static void free_inputs(inputs *in) {
  free(in->a), free(in->b), free(in->w), free(in->gy), free(in->gs), free(in->cos), free(in->sin);
  free(in->pre), free(in->pcos), free(in->psin);
}

// The results, in one order for every path: the output, [the sum], then the gradients of a, [b], [w].
typedef struct {
  int n_parts;
  const char *name[5];
  int64_t size[5];
  float *v[5];
} results;

static void add_part(results *r, const char *name, int64_t size, float *v) {
  r->name[r->n_parts] = name, r->size[r->n_parts] = size, r->v[r->n_parts++] = v;
}

static void free_results(results *r) {
  for (int i = 0; i < r->n_parts; i++) free(r->v[i]);
}

static float *values_of(pt_tensor *t, int64_t n) {
  float *v = malloc(sizeof(float) * n);
  if (!t || pt_to_data(pt_to_dtype(t, PT_F32), v, sizeof(float) * n)) {
    fprintf(stderr, "reading a result: %s\n", pt_ok() ? "no tensor" : pt_error());
    pt_error_clear();
    for (int64_t i = 0; i < n; i++) v[i] = NAN;
  }
  return v;
}

static pt_tensor *leaf(const float *v, pt_shape shape, pt_dtype dt, pt_device dev) {
  pt_tensor *t = pt_to_device(pt_to_dtype(pt_from_data(v, PT_F32, shape, PT_CPU), dt), dev);
  t = pt_detach(t);
  pt_set_requires_grad(t, 1);
  return t;
}

static pt_tensor *constant(const float *v, pt_shape shape, pt_dtype dt, pt_device dev) {
  return pt_to_device(pt_to_dtype(pt_from_data(v, PT_F32, shape, PT_CPU), dt), dev);
}

// The op through the shim on dev, the fused kernels in `mode` (pt_fused_mode); the loss
// Σ y·gy (+ Σ sum·gs) makes the output's gradient gy and the sum's gs.
static results run_shim(const op_case *c, const inputs *in, pt_device dev, int mode) {
  results r = {0};
  CHECK(pt_set_fused_kernels(mode) == 0);
  pt_scope s = pt_scope_begin();
  int64_t rows = rows_of(c), D = c->D, n = in->n;
  pt_shape flat = PT_SHAPE(rows, D);
  pt_tensor *a, *b = NULL, *w = NULL, *pre = NULL, *y, *sum = NULL;
  if (c->op == OP_ROPE || is_kv(c)) {
    // a is given in (B, H, T, D) order; the leaf is (B, T, H, D), transposed to it.
    pt_tensor *bhtd = pt_from_data(in->a, PT_F32, PT_SHAPE(c->B, c->H, c->T, D), PT_CPU);
    float *tmp = values_of(pt_transpose(bhtd, 1, 2), n);  // read out in (B, T, H, D) order
    a = leaf(tmp, PT_SHAPE(c->B, c->T, c->H, D), c->dt, dev);
    free(tmp);
    pt_tensor *x = pt_transpose(a, 1, 2);
    pt_tensor *cs = constant(in->cos, PT_SHAPE(c->B, 1, c->T, D), c->dt, dev);
    pt_tensor *sn = constant(in->sin, PT_SHAPE(c->B, 1, c->T, D), c->dt, dev);
    if (c->op == OP_ROPE) {
      y = pt_rope(x, cs, sn);
    } else {
      pre = leaf(in->pre, PT_SHAPE(c->B, c->H, c->P, D), c->dt, dev);
      pt_tensor *pcs = constant(in->pcos, PT_SHAPE(c->B, 1, c->P, D), c->dt, dev);
      pt_tensor *psn = constant(in->psin, PT_SHAPE(c->B, 1, c->P, D), c->dt, dev);
      y = c->op == OP_KV_K ? pt_kv_inject(pre, x, pcs, psn, cs, sn) : pt_kv_inject(pre, x, NULL, NULL, NULL, NULL);
    }
  } else {
    a = leaf(in->a, flat, c->dt, dev);
    if (c->op == OP_ADD_RMS || c->op == OP_SWIGLU) b = leaf(in->b, flat, c->dt, dev);
    if (c->op == OP_RMS || c->op == OP_ADD_RMS) w = leaf(in->w, PT_SHAPE(D), c->dt, dev);
    pt_gen *g = c->op == OP_DROPOUT ? pt_gen_new(DROP_SEED, dev) : NULL;
    y = c->op == OP_RMS       ? pt_rms_norm(a, w, EPS)
        : c->op == OP_ADD_RMS ? pt_add_rms_norm(a, b, w, EPS, &sum)
        : c->op == OP_SWIGLU  ? pt_swiglu(a, b)
                              : pt_dropout(a, DROP_P, g);
    pt_gen_free(g);
  }
  pt_shape yshape = c->op == OP_ROPE ? PT_SHAPE(c->B, c->H, c->T, D)
                    : is_kv(c)       ? PT_SHAPE(c->B, c->H, c->P + c->T, D)
                                     : flat;
  pt_tensor *loss = pt_sum(pt_mul(y, constant(in->gy, yshape, c->dt, dev)));
  if (sum) loss = pt_add(loss, pt_sum(pt_mul(sum, constant(in->gs, flat, c->dt, dev))));
  CHECK_MSG(pt_ok() && pt_backward(loss) == 0, "%s: %s", OP_NAME[c->op], pt_error());
  add_part(&r, "y", in->ny, values_of(y, in->ny));
  if (sum) add_part(&r, "sum", n, values_of(sum, n));
  if (pre) add_part(&r, "d prefix", in->np, values_of(pt_grad(pre), in->np));
  pt_tensor *ga = pt_grad(a);
  if (c->op == OP_ROPE || is_kv(c)) ga = ga ? pt_transpose(ga, 1, 2) : NULL;  // back to (B, H, T, D)
  add_part(&r, c->op == OP_SWIGLU ? "d gate" : "dx", n, values_of(ga, n));
  if (b) add_part(&r, c->op == OP_SWIGLU ? "d up" : "d residual", n, values_of(pt_grad(b), n));
  if (w) add_part(&r, "dw", D, values_of(pt_grad(w), D));
  pt_error_clear();
  pt_scope_end(s);
  CHECK(pt_set_fused_kernels(PT_FUSED_OFF) == 0);
  return r;
}

// Raw buffers of the references: f32 as is, bf16 as its upper 16 bits (the values are bf16's).
static void *raw(const float *v, int64_t n, pt_dtype dt) {
  if (dt == PT_F32) {
    float *o = malloc(sizeof(float) * n);
    memcpy(o, v, sizeof(float) * n);
    return o;
  }
  uint16_t *o = malloc(sizeof(uint16_t) * n);
  for (int64_t i = 0; i < n; i++) {
    uint32_t u;
    memcpy(&u, &v[i], 4);
    o[i] = (uint16_t)(u >> 16);
  }
  return o;
}

static float *cooked(const void *p, int64_t n, pt_dtype dt) {
  float *o = malloc(sizeof(float) * n);
  for (int64_t i = 0; i < n; i++) {
    if (dt == PT_F32) {
      o[i] = ((const float *)p)[i];
    } else {
      uint32_t u = (uint32_t)((const uint16_t *)p)[i] << 16;
      memcpy(&o[i], &u, 4);
    }
  }
  return o;
}

// The same results from the CPU references (fused_math.cuh's arithmetic).
static results run_reference(const op_case *c, const inputs *in) {
  results r = {0};
  fused_dtype fd = c->dt == PT_BF16 ? FUSED_BF16 : FUSED_F32;
  int64_t rows = rows_of(c), D = c->D, n = in->n, es = c->dt == PT_BF16 ? 2 : 4;
  void *a = raw(in->a, n, c->dt), *b = raw(in->b, n, c->dt), *w = raw(in->w, D, c->dt);
  void *gy = raw(in->gy, n, c->dt), *gs = raw(in->gs, n, c->dt);
  void *y = malloc(es * n), *s = malloc(es * n), *ga = malloc(es * n), *gb = malloc(es * n);
  if (c->op == OP_RMS || c->op == OP_ADD_RMS) {
    int res = c->op == OP_ADD_RMS;
    float *rr = malloc(sizeof(float) * rows), *gw = calloc(D, sizeof(float));
    fused_rms_norm_ref(fd, a, res ? b : NULL, res ? s : NULL, w, y, rr, rows, (int)D, (float)EPS);
    fused_rms_norm_backward_ref(fd, gy, res ? gs : NULL, res ? s : a, w, rr, ga, gw, rows, (int)D);
    add_part(&r, "y", n, cooked(y, n, c->dt));
    if (res) add_part(&r, "sum", n, cooked(s, n, c->dt));
    add_part(&r, "dx", n, cooked(ga, n, c->dt));
    if (res) add_part(&r, "d residual", n, cooked(ga, n, c->dt));
    // The composite's weight gradient is in the weight's dtype.
    void *gwr = raw(gw, D, c->dt);
    float *gw_dt = malloc(sizeof(float) * D);
    memcpy(gw_dt, gw, sizeof(float) * D);
    round_to_dtype(gw_dt, D, c->dt);
    add_part(&r, "dw", D, gw_dt);
    free(gwr), free(rr), free(gw);
  } else if (c->op == OP_SWIGLU) {
    fused_swiglu_ref(fd, a, b, y, n);
    fused_swiglu_backward_ref(fd, gy, a, b, ga, gb, n);
    add_part(&r, "y", n, cooked(y, n, c->dt));
    add_part(&r, "d gate", n, cooked(ga, n, c->dt));
    add_part(&r, "d up", n, cooked(gb, n, c->dt));
  } else if (c->op == OP_DROPOUT) {
    // The mask pt_dropout draws from the same seed: where it keeps a tensor of ones.
    pt_gen *g = pt_gen_new(DROP_SEED, PT_CPU);
    float *kept = values_of(pt_dropout(pt_ones(PT_SHAPE(rows, D), c->dt, PT_CPU), DROP_P, g), n);
    pt_gen_free(g);
    for (int64_t i = 0; i < n; i++) kept[i] = kept[i] != 0;
    void *keep = raw(kept, n, c->dt);
    unsigned char *mask = malloc(n);
    float scale = (float)(1.0 / (1 - DROP_P));
    fused_dropout_ref(fd, a, keep, scale, y, mask, n);
    fused_dropout_backward_ref(fd, gy, mask, scale, ga, n);
    add_part(&r, "y", n, cooked(y, n, c->dt));
    add_part(&r, "dx", n, cooked(ga, n, c->dt));
    free(kept), free(keep), free(mask);
  } else if (is_kv(c)) {
    // prefix (B, H, P, D), x (B, H, T, D) and their gradients contiguous; the tables (B, rows, D).
    int64_t H = c->H, P = c->P, T = c->T;
    fused_kv_shape sh = {c->B, H, P, T, (int)D, {H * P * D, P * D, D}, {H * T * D, T * D, D}, {P * D, D}, {T * D, D}};
    void *pre = raw(in->pre, in->np, c->dt), *gyk = raw(in->gy, in->ny, c->dt), *joint = malloc(es * in->ny);
    void *gpre = malloc(es * in->np);
    void *cosr = raw(in->cos, c->B * T * D, c->dt), *sinr = raw(in->sin, c->B * T * D, c->dt);
    void *pcosr = raw(in->pcos, c->B * P * D, c->dt), *psinr = raw(in->psin, c->B * P * D, c->dt);
    int rot = c->op == OP_KV_K;  // V: no tables
    void *pc = rot ? pcosr : NULL, *ps = rot ? psinr : NULL, *tc = rot ? cosr : NULL, *ts = rot ? sinr : NULL;
    fused_kv_inject_ref(fd, pre, a, pc, ps, tc, ts, joint, sh, 0);
    fused_kv_inject_ref(fd, gpre, ga, pc, ps, tc, ts, gyk, sh, 1);
    add_part(&r, "y", in->ny, cooked(joint, in->ny, c->dt));
    add_part(&r, "d prefix", in->np, cooked(gpre, in->np, c->dt));
    add_part(&r, "dx", n, cooked(ga, n, c->dt));
    free(pre), free(gyk), free(joint), free(gpre), free(cosr), free(sinr), free(pcosr), free(psinr);
  } else {
    // x, gy and the outputs (B, H, T, D) contiguous; the tables (B, T, D).
    int64_t nt = c->B * c->T * D;
    fused_rope_shape sh = {c->B, c->H, c->T, (int)D, {c->H * c->T * D, c->T * D, D}, {c->H * c->T * D, c->T * D, D},
                           {c->T * D, D}};
    void *cosr = raw(in->cos, nt, c->dt), *sinr = raw(in->sin, nt, c->dt);
    fused_rope_ref(fd, a, cosr, sinr, y, sh, 0);
    fused_rope_ref(fd, gy, cosr, sinr, ga, sh, 1);
    add_part(&r, "y", n, cooked(y, n, c->dt));
    add_part(&r, "dx", n, cooked(ga, n, c->dt));
    free(cosr), free(sinr);
  }
  free(a), free(b), free(w), free(gy), free(gs), free(y), free(s), free(ga), free(gb);
  return r;
}

static double tolerance(const op_case *c, const char *part) {
  int dw = strcmp(part, "dw") == 0;
  // bf16's weight gradient: the composite rounds each row's product to bf16 before the sum over
  // rows, half a step each, which adds up as a random walk.
  if (c->dt == PT_BF16) return dw ? 1.6e-2 + 4e-3 * sqrt((double)rows_of(c)) : 1.6e-2;
  return dw ? 1e-4 : 2e-5;
}

static void case_name(const op_case *c, char *buf, size_t len) {
  snprintf(buf, len, "%s %s B%lld H%lld P%lld T%lld D%lld", OP_NAME[c->op], c->dt == PT_BF16 ? "bf16" : "f32",
           (long long)c->B, (long long)c->H, (long long)c->P, (long long)c->T, (long long)c->D);
}

// got against want, part by part, within the case's tolerance (exact: bit for bit).
static void compare(const op_case *c, const char *what, const results *got, const results *want, int exact) {
  char name[128];
  case_name(c, name, sizeof name);
  CHECK_MSG(got->n_parts == want->n_parts, "%s, %s: %d results, want %d", name, what, got->n_parts, want->n_parts);
  for (int p = 0; p < got->n_parts && p < want->n_parts; p++) {
    double tol = exact ? 0 : tolerance(c, want->name[p]), worst = 0;
    int64_t at = -1, bad = 0;
    for (int64_t i = 0; i < want->size[p]; i++) {
      double g = got->v[p][i], w = want->v[p][i];
      double err = fabs(g - w) / fmax(1.0, fabs(w));
      int ok = exact ? memcmp(&got->v[p][i], &want->v[p][i], sizeof(float)) == 0 : err <= tol;
      if (!ok || isnan(g) != isnan(w)) bad++;
      if (err > worst || isnan(g)) worst = isnan(g) ? INFINITY : err, at = i;
    }
    CHECK_MSG(bad == 0, "%s, %s, %s: %lld of %lld off (worst %.3g at %lld: %.9g, want %.9g; tolerance %g)", name,
              what, want->name[p], (long long)bad, (long long)want->size[p], worst, (long long)at,
              at >= 0 ? got->v[p][at] : 0.0, at >= 0 ? want->v[p][at] : 0.0, tol);
  }
}

static const int64_t SHAPES[][4] = {
    // B (rows), H, T, D
    {1, 1, 1, 2}, {3, 1, 1, 7 * 2}, {5, 3, 7, 34}, {4, 2, 3, 64}, {2, 1, 9, 130}, {7, 5, 2, 258},
    {3, 5, 100, 34},  // 1,500 rows: more than the 1,024 blocks of RMSNorm's backward, so blocks loop
    {1, 1, 3, 4096},  // LLaMA-3-8B's width: 16 columns a thread
};
enum { N_SHAPES = sizeof SHAPES / sizeof SHAPES[0] };

static op_case case_of(op_kind op, pt_dtype dt, const int64_t *s) {
  op_case c = {op, dt, s[0], s[1], s[2], s[3], 0};
  if (op == OP_KV_K || op == OP_KV_V) {
    c.P = 1 + s[2] % 4;  // a prefix of 1 to 4 rows (500x: the k compress tokens)
  } else if (op != OP_ROPE) {
    c.B = s[0] * s[1] * s[2], c.H = c.T = 1;  // rows
  }
  return c;
}

// a and b hold the same values, bit for bit (bf16 values read as f32 exactly).
static int same(pt_tensor *a, pt_tensor *b) {
  int64_t n = pt_numel(a);
  if (!a || !b || n != pt_numel(b)) return 0;
  float *x = values_of(a, n), *y = values_of(b, n);
  int eq = memcmp(x, y, sizeof(float) * n) == 0;
  free(x), free(y);
  return eq;
}

// The step-by-step ops pt_rope, pt_kv_inject, pt_swiglu, pt_add_rms_norm and pt_add_scaled replaced in
// llama.c and lora.c, on the CPU: bit for bit the same, whatever the fused switch says.
static void test_cpu_same_as_before(void) {
  pt_scope s = pt_scope_begin();
  int64_t B = 2, H = 3, T = 5, D = 8, n = B * H * T * D;
  float *v = malloc(sizeof(float) * n * 3);
  fill(v, n * 3, 11, -2, 2);
  for (int dt = 0; dt < 2; dt++) {
    pt_dtype d = dt ? PT_BF16 : PT_F32;
    pt_tensor *x = pt_transpose(constant(v, PT_SHAPE(B, T, H, D), d, PT_CPU), 1, 2);
    pt_tensor *cs = pt_cos(constant(v + n, PT_SHAPE(B, 1, T, D), d, PT_CPU));
    pt_tensor *sn = pt_sin(constant(v + n, PT_SHAPE(B, 1, T, D), d, PT_CPU));
    pt_tensor *rot[2] = {pt_neg(pt_slice(x, -1, D / 2, D)), pt_slice(x, -1, 0, D / 2)};
    pt_tensor *old_rope = pt_add(pt_mul(x, cs), pt_mul(pt_cat(rot, 2, -1), sn));
    // A prefix of 2 rows rotated by the first 2 rows' tables before the text, then cat.
    pt_tensor *pre = pt_contiguous(pt_slice(x, 2, 1, 3)), *pcs = pt_slice(cs, 2, 0, 2), *psn = pt_slice(sn, 2, 0, 2);
    pt_tensor *pre_rot[2] = {pt_neg(pt_slice(pre, -1, D / 2, D)), pt_slice(pre, -1, 0, D / 2)};
    pt_tensor *old_k[2] = {pt_add(pt_mul(pre, pcs), pt_mul(pt_cat(pre_rot, 2, -1), psn)), old_rope};
    pt_tensor *old_v[2] = {pre, x};
    pt_tensor *old_joint_k = pt_cat(old_k, 2, 2), *old_joint_v = pt_cat(old_v, 2, 2);
    pt_tensor *a = constant(v, PT_SHAPE(B * T, H * D), d, PT_CPU), *b = constant(v + n, PT_SHAPE(B * T, H * D), d, PT_CPU);
    pt_tensor *w = constant(v + 2 * n, PT_SHAPE(H * D), d, PT_CPU);
    pt_tensor *old_swiglu = pt_mul(pt_silu(a), b), *old_sum = pt_add(a, b);
    pt_tensor *old_norm = pt_rms_norm(old_sum, w, EPS);
    for (int fused = 0; fused < 2; fused++) {
      if (fused && !pt_fused_kernels_available()) continue;
      CHECK(pt_set_fused_kernels(fused ? PT_FUSED_ON : PT_FUSED_OFF) == 0);
      pt_tensor *sum;
      pt_tensor *norm = pt_add_rms_norm(a, b, w, EPS, &sum);
      CHECK(pt_ok());
      CHECK_MSG(same(pt_rope(x, cs, sn), old_rope), "rope %s fused %d", dt ? "bf16" : "f32", fused);
      CHECK_MSG(same(pt_kv_inject(pre, x, pcs, psn, cs, sn), old_joint_k) &&
                    same(pt_kv_inject(pre, x, NULL, NULL, NULL, NULL), old_joint_v),
                "kv_inject %s fused %d", dt ? "bf16" : "f32", fused);
      CHECK_MSG(same(pt_swiglu(a, b), old_swiglu), "swiglu %s fused %d", dt ? "bf16" : "f32", fused);
      CHECK_MSG(same(pt_add_scaled(a, b, 0.375), pt_add(a, pt_mul_scalar(b, 0.375))), "add_scaled %s fused %d",
                dt ? "bf16" : "f32", fused);
      CHECK_MSG(same(sum, old_sum) && same(norm, old_norm), "add_rms_norm %s fused %d",
                dt ? "bf16" : "f32", fused);
      CHECK(pt_set_fused_kernels(PT_FUSED_OFF) == 0);
    }
  }
  free(v);
  pt_scope_end(s);
}

// ---------------------------------------------------------------- the row bodies' thread layout

// tests/fused_threads.cpp: the row bodies as fused_ops.cu launches them (blocks of nt threads).
void fused_rms_norm_threads(fused_dtype dt, const void *x, const void *res, void *sum, const void *w, void *y,
                            float *r, long rows, int D, float eps, int blocks, int nt);
void fused_rms_norm_backward_threads(fused_dtype dt, const void *gy, const void *gsum, const void *v, const void *w,
                                     const float *r, void *gv, float *gw, long rows, int D, int blocks, int nt);
void fused_ce_lse_threads(fused_dtype dt, const void *logits, float *lse, long rows, long V, int blocks, int nt);

// The block layout (256 threads a block as fused_ops.cu launches, 3 blocks looping over the rows,
// the weight's gradient from per-block partials) gives the one-thread references' results: bit for
// bit where no sum is involved (the residual's sum), to the case's tolerance elsewhere.
static void test_thread_layout(void) {
  static const int64_t shapes[][2] = {{7, 34}, {5, 4096}, {9, 258}, {2, 1}};
  int n_cases = 0;
  for (int res = 0; res < 2; res++)
    for (int dt = 0; dt < 2; dt++)
      for (int i = 0; i < 4; i++) {
        op_case c = {res ? OP_ADD_RMS : OP_RMS, dt ? PT_BF16 : PT_F32, shapes[i][0], 1, 1, shapes[i][1], 0};
        fused_dtype fd = dt ? FUSED_BF16 : FUSED_F32;
        inputs in = make_inputs(&c);
        int64_t rows = c.B, D = c.D, n = in.n, es = dt ? 2 : 4;
        void *x = raw(in.a, n, c.dt), *b = raw(in.b, n, c.dt), *w = raw(in.w, D, c.dt), *gy = raw(in.gy, n, c.dt);
        void *gs = raw(in.gs, n, c.dt);
        results got = {0}, want = {0};
        for (int threaded = 0; threaded < 2; threaded++) {
          results *r = threaded ? &got : &want;
          void *y = malloc(es * n), *sum = malloc(es * n), *gv = malloc(es * n);
          float *rr = malloc(sizeof(float) * rows), *gw = calloc(D, sizeof(float));
          void *v = res ? sum : x;
          if (threaded) {
            fused_rms_norm_threads(fd, x, res ? b : NULL, res ? sum : NULL, w, y, rr, rows, (int)D, (float)EPS, 3, 256);
            fused_rms_norm_backward_threads(fd, gy, res ? gs : NULL, v, w, rr, gv, gw, rows, (int)D, 3, 256);
          } else {
            fused_rms_norm_ref(fd, x, res ? b : NULL, res ? sum : NULL, w, y, rr, rows, (int)D, (float)EPS);
            fused_rms_norm_backward_ref(fd, gy, res ? gs : NULL, v, w, rr, gv, gw, rows, (int)D);
          }
          add_part(r, "y", n, cooked(y, n, c.dt));
          if (res) add_part(r, "sum", n, cooked(sum, n, c.dt));
          add_part(r, "dx", n, cooked(gv, n, c.dt));
          add_part(r, "dw", D, gw);
          free(y), free(sum), free(gv), free(rr);
        }
        compare(&c, "256-thread blocks vs one thread", &got, &want, 0);
        CHECK_MSG(!res || memcmp(got.v[1], want.v[1], sizeof(float) * n) == 0, "the residual's sum differs");
        free_results(&got), free_results(&want);
        free(x), free(b), free(w), free(gy), free(gs);
        free_inputs(&in);
        n_cases++;
      }
  printf("RMSNorm's thread layout: %d cases as 3 blocks of 256 threads\n", n_cases);
}

// The cross-entropy's log-sum-exp rows (block max, then block sum) in that layout: the one-thread
// references' values to f32 summation order (1e-6 relative), for vocabularies narrower and wider
// than a block, in f32 and bf16; the target's logit and the gradient are per element, no layout.
static void test_ce_thread_layout(void) {
  static const long widths[] = {50, 256, 4097};
  for (int dt = 0; dt < 2; dt++)
    for (int i = 0; i < 3; i++) {
      long rows = 7, V = widths[i], n = rows * V;
      pt_dtype d = dt ? PT_BF16 : PT_F32;
      float *x = malloc(sizeof(float) * n), got[7], want[7];
      fill(x, n, 9 + (unsigned)i, -20, 20);
      round_to_dtype(x, n, d);
      void *logits = raw(x, n, d);
      int64_t *targets = calloc((size_t)rows, sizeof *targets);
      float picked[7];
      fused_ce_ref(dt ? FUSED_BF16 : FUSED_F32, logits, targets, want, picked, rows, V);
      fused_ce_lse_threads(dt ? FUSED_BF16 : FUSED_F32, logits, got, rows, V, 3, 256);
      for (long r = 0; r < rows; r++)
        CHECK_MSG(fabs(got[r] - want[r]) <= 1e-6 * fabs(want[r]), "%s V %ld row %ld: lse %.9g in blocks, %.9g",
                  dt ? "bf16" : "f32", V, r, got[r], want[r]);
      free(x), free(logits), free(targets);
    }
  printf("the cross-entropy's thread layout: 6 cases as 3 blocks of 256 threads\n");
}

// ---------------------------------------------------------------- whole models through the ops

// The loss and every gradient with the fused ops (mode: test_cpu on the CPU, on with CUDA) against
// the composite path: the loss to tol of itself, the gradients to tol of the largest.
static void check_same_step(const char *name, double (*step)(void *ctx, pt_tensor **grads), void *ctx, int mode,
                            double tol) {
  pt_tensor *g_plain, *g_fused;
  CHECK(pt_set_fused_kernels(PT_FUSED_OFF) == 0);
  double l_plain = step(ctx, &g_plain);
  CHECK(pt_set_fused_kernels(mode) == 0);
  double l_fused = step(ctx, &g_fused);
  CHECK(pt_set_fused_kernels(PT_FUSED_OFF) == 0);
  double diff = max_abs(pt_sub(g_fused, g_plain)), scale = max_abs(g_plain);
  printf("%s: loss %.7f composite, %.7f fused; gradients differ by %.3g (largest %.3g)\n", name, l_plain, l_fused,
         diff, scale);
  CHECK_MSG(fabs(l_fused - l_plain) <= tol * fabs(l_plain), "%s: loss %.9g fused, %.9g composite", name, l_fused,
            l_plain);
  CHECK_MSG(scale > 0 && diff <= tol * scale, "%s: gradients differ by %g (largest %g)", name, diff, scale);
}

typedef struct {
  compressor *c;
  llama_model *m;
  pt_device dev;
} comp_ctx;

// A 500x step: LoRA with dropout on every projection, keys rotated back (COMP_POS_CONSISTENT, so
// RoPE with negative angles), a padded row; the dropout generator seeded afresh each time.
static double compressor_step(void *vctx, pt_tensor **grads) {
  comp_ctx *x = vctx;
  pt_tensor *params[128];
  int n = comp_params(x->c, params, 128);
  for (int i = 0; i < n; i++) pt_zero_grad(params[i]);
  comp_batch b = tiny_batch(x->dev);
  pt_gen *g = pt_gen_new(21, x->dev);
  pith_err err = {{0}};
  pt_tensor *loss = comp_loss(x->c, &b, g, &err);
  CHECK_MSG(loss != NULL, "%s", err.msg);
  if (!loss) exit(1);
  CHECK_MSG(pt_backward(loss) == 0, "%s", pt_error());
  pt_gen_free(g);  // after the backward pass, which replays the generator where layers are checkpointed
  *grads = flat_grads(params, n);
  return pt_item(loss);
}

// ckpt: with activation checkpointing, so the fused ops run again in the backward pass.
static void test_compressor(pt_dtype dt, pt_device dev, int ckpt, double tol) {
  pt_scope s = pt_scope_begin();
  pith_err err = {{0}};
  llama_config cfg = tiny_config();
  llama_model *m = llama_new_random(&cfg, 11, dt, dev, &err);
  compressor *c = tiny_compressor(m, COMP_500X);
  m->gradient_checkpointing = ckpt;
  comp_ctx ctx = {c, m, dev};
  char name[64];
  snprintf(name, sizeof name, "500x%s%s%s", dt == PT_BF16 ? " over a bf16 base" : "", ckpt ? ", checkpointed" : "",
           dev == PT_CPU ? "" : " on cuda:0");
  check_same_step(name, compressor_step, &ctx, dev == PT_CPU ? PT_FUSED_TEST_CPU : PT_FUSED_ON, tol);
  comp_free(c);
  llama_free(m);
  CHECK(pt_ok());
  pt_scope_end(s);
}

// The keys of a 500x code shifted inside the decoder's forward (training and comp_decode) and
// shifted before it (comp_prefix_kv, what generation's cache takes): the same logits, bit for bit,
// the fused ops on (the CPU references) or off.
static void test_prefix_shift(void) {
  pt_scope s = pt_scope_begin();
  pith_err err = {{0}};
  llama_config cfg = tiny_config();
  llama_model *m = llama_new_random(&cfg, 13, PT_F32, PT_CPU, &err);
  compressor *c = tiny_compressor(m, COMP_500X);
  comp_batch b = tiny_batch(PT_CPU);
  for (int mode = PT_FUSED_OFF; mode <= PT_FUSED_TEST_CPU; mode += PT_FUSED_TEST_CPU) {
    CHECK(pt_set_fused_kernels(mode) == 0);
    comp_code code;
    pt_tensor **k, **v;
    CHECK_MSG(comp_encode(c, b.text_ids, b.text_mask, NULL, &code, &err) == 0, "%s", err.msg);
    CHECK(code.key_shift == -TINY_TEXT);
    pt_tensor *inside = comp_decode(c, &code, b.dec_ids, b.dec_mask, &err);
    CHECK_MSG(comp_prefix_kv(c, &code, &k, &v, &err) == 0, "%s", err.msg);
    // kv_with_prefix: the K/V attention read come back whole, the prefix first (generation's cache).
    llama_inputs in = {.ids = b.dec_ids, .mask = b.dec_mask, .prefix_k = k, .prefix_v = v, .want_kv = 1,
                       .kv_with_prefix = 1};
    llama_outputs out;
    CHECK_MSG(llama_forward(m, &in, &out, &err) == 0, "%s", err.msg);
    CHECK_MSG(inside && same(inside, out.logits), "mode %d: the keys shifted inside the forward read otherwise", mode);
    CHECK_MSG(!same(k[0], code.k[0]), "mode %d: the shift left the keys as they were", mode);
    CHECK(pt_size(out.k[0], 2) == TINY_K + TINY_DEC && pt_size(out.v[0], 2) == TINY_K + TINY_DEC);
    CHECK_MSG(same(pt_slice(out.k[0], 2, 0, TINY_K), k[0]) && same(pt_slice(out.v[0], 2, 0, TINY_K), v[0]),
              "mode %d: kv_with_prefix's K/V do not start with the prefix", mode);
    llama_outputs_free(&out);
    in.select = pt_zeros(PT_SHAPE(TINY_ROWS, 1), PT_I64, PT_CPU);
    CHECK(llama_forward(m, &in, &out, &err) == -1);
    CHECK_CONTAINS(err.msg, "kv_with_prefix returns every position's K/V (no select)");
    free(k), free(v);
    comp_code_free(&code);
  }
  CHECK(pt_set_fused_kernels(PT_FUSED_OFF) == 0);
  comp_free(c);
  llama_free(m);
  CHECK(pt_ok());
  pt_scope_end(s);
}

typedef struct {
  llama_model *m;
  pt_tensor *w[128];
  int n;
} full_ctx;

static int collect(const char *name, pt_tensor **slot, pt_shape shape, void *vctx) {
  (void)name, (void)shape;
  full_ctx *x = vctx;
  if (x->n == 128) return -1;
  x->w[x->n++] = *slot;
  return 0;
}

// Every weight trained (pith lm): the norms' weight gradients come from the fused backward.
static double full_step(void *vctx, pt_tensor **grads) {
  full_ctx *x = vctx;
  for (int i = 0; i < x->n; i++) pt_zero_grad(x->w[i]);
  llama_inputs in = {.ids = tiny_ids(TINY_ROWS, TINY_TEXT, 1)};
  llama_outputs out;
  pith_err err = {{0}};
  CHECK_MSG(llama_forward(x->m, &in, &out, &err) == 0, "%s", err.msg);
  pt_tensor *loss = pt_cross_entropy(pt_reshape(out.logits, PT_SHAPE(-1, TINY_VOCAB)),
                                     pt_reshape(tiny_ids(TINY_ROWS, TINY_TEXT, 4), PT_SHAPE(-1)), -100, PT_REDUCE_MEAN);
  CHECK_MSG(pt_backward(loss) == 0, "%s", pt_error());
  *grads = flat_grads(x->w, x->n);
  return pt_item(loss);
}

static void test_full_weights(void) {
  pt_scope s = pt_scope_begin();
  pith_err err = {{0}};
  llama_config cfg = tiny_config();
  full_ctx ctx = {.m = llama_new_random(&cfg, 12, PT_F32, PT_CPU, &err)};
  CHECK(ctx.m && llama_visit_weights(ctx.m, collect, &ctx) == 0);
  for (int i = 0; i < ctx.n; i++) pt_set_requires_grad(ctx.w[i], 1);
  check_same_step("full weights", full_step, &ctx, PT_FUSED_TEST_CPU, 1e-5);
  llama_free(ctx.m);
  CHECK(pt_ok());
  pt_scope_end(s);
}

static void test_bad_input(void) {
  pt_scope s = pt_scope_begin();
  pt_tensor *x = pt_zeros(PT_SHAPE(2, 3), PT_F32, PT_CPU), *t = pt_zeros(PT_SHAPE(2, 3), PT_F32, PT_CPU);
  CHECK(pt_rope(x, t, t) == NULL);
  CHECK_CONTAINS(pt_error(), "rope: ");
  CHECK_CONTAINS(pt_error(), "last dim must be even");
  pt_error_clear();
  pt_tensor *sum = x;
  CHECK(pt_add_rms_norm(x, pt_zeros(PT_SHAPE(2, 4), PT_F32, PT_CPU), pt_ones(PT_SHAPE(3), PT_F32, PT_CPU), EPS,
                        &sum) == NULL);
  CHECK(sum == NULL);
  CHECK_CONTAINS(pt_error(), "add_rms_norm: ");
  pt_error_clear();
  CHECK(pt_swiglu(x, pt_zeros(PT_SHAPE(2, 4), PT_F32, PT_CPU)) == NULL);
  CHECK_CONTAINS(pt_error(), "swiglu: ");
  pt_error_clear();
  pt_tensor *k = pt_zeros(PT_SHAPE(1, 2, 3, 4), PT_F32, PT_CPU);
  pt_tensor *table = pt_zeros(PT_SHAPE(1, 1, 3, 4), PT_F32, PT_CPU);
  CHECK(pt_kv_inject(pt_zeros(PT_SHAPE(1, 3, 3, 4), PT_F32, PT_CPU), k, NULL, NULL, NULL, NULL) == NULL);
  CHECK_CONTAINS(pt_error(), "kv_inject: [1,3,3,4], [1,2,3,4]: prefix and x must be (B, H, P, hd) and (B, H, T, hd)");
  pt_error_clear();
  CHECK(pt_kv_inject(k, k, NULL, NULL, table, NULL) == NULL);
  CHECK_CONTAINS(pt_error(), "each pair of tables (cos, sin) goes together");
  pt_error_clear();
  if (!pt_fused_kernels_available()) {
    CHECK(pt_set_fused_kernels(PT_FUSED_ON) == -1);
    CHECK_CONTAINS(pt_error(), "without CUDA");
    pt_error_clear();
  }
  CHECK(pt_set_fused_kernels(7) == -1);
  CHECK_CONTAINS(pt_error(), "mode 7 is not one of");
  pt_error_clear();
  CHECK(pt_fused_kernels() == PT_FUSED_OFF);
  pt_scope_end(s);
}

int main(void) {
  pt_set_num_threads(1);
  test_cpu_same_as_before();
  test_bad_input();
  test_thread_layout();
  test_ce_thread_layout();
  test_compressor(PT_F32, PT_CPU, 0, 1e-5);
  test_compressor(PT_F32, PT_CPU, 1, 1e-5);
  test_compressor(PT_BF16, PT_CPU, 0, 1e-2);
  test_full_weights();
  test_prefix_shift();
  int gpu = pt_cuda_device_count() > 0 && pt_fused_kernels_available();
  int n_cases = 0;
  for (int op = 0; op < N_OPS; op++)
    for (int dt = 0; dt < 2; dt++)
      for (int s = 0; s < N_SHAPES; s++) {
        op_case c = case_of((op_kind)op, dt ? PT_BF16 : PT_F32, SHAPES[s]);
        inputs in = make_inputs(&c);
        results ref = run_reference(&c, &in), cpu = run_shim(&c, &in, PT_CPU, PT_FUSED_OFF);
        compare(&c, "CPU reference vs composite", &ref, &cpu, 0);
        results nodes = run_shim(&c, &in, PT_CPU, PT_FUSED_TEST_CPU);
        compare(&c, "the fused ops on the CPU vs the CPU reference", &nodes, &ref, 1);
        free_results(&nodes);
        if (pt_fused_kernels_available()) {
          results on = run_shim(&c, &in, PT_CPU, PT_FUSED_ON);
          compare(&c, "CPU, fused switch on vs off", &on, &cpu, 1);
          free_results(&on);
        }
        if (gpu) {
          results fused = run_shim(&c, &in, 0, PT_FUSED_ON), composite = run_shim(&c, &in, 0, PT_FUSED_OFF);
          compare(&c, "CUDA fused vs CUDA composite", &fused, &composite, 0);
          if (op != OP_DROPOUT)  // CUDA's generator draws other masks than the CPU's
            compare(&c, "CUDA fused vs CPU reference", &fused, &ref, 0);
          free_results(&fused), free_results(&composite);
        }
        free_results(&ref), free_results(&cpu);
        free_inputs(&in);
        n_cases++;
      }
  if (gpu) {  // CUDA's attention backward is not deterministic: 1e-4 in f32
    test_compressor(PT_F32, 0, 0, 1e-4);
    test_compressor(PT_BF16, 0, 0, 1e-2);
    test_compressor(PT_BF16, 0, 1, 1e-2);
  }
  printf("%d cases; CUDA kernels %s\n", n_cases,
         gpu ? "checked" : pt_fused_kernels_available() ? "built, not run (no GPU)" : "not built");
  return check_done("test_fused_ops");
}
