// CPU references of fused_ops.h: fused_math.cuh's functions run by one thread per row.
#include "fused_math.cuh"
#include "fused_ops.h"

namespace {
struct one_thread {
  float operator()(float partial) const { return partial; }
};

template <class S>
void rms_norm(const void *x, const void *res, void *sum, const void *w, void *y, float *r, long rows, int D,
              float eps) {
  const S *xs = (const S *)x, *rs = (const S *)res, *ws = (const S *)w;
  S *ss = (S *)sum, *ys = (S *)y;
  for (long i = 0; i < rows; i++)
    r[i] = rms_norm_row<S>(xs + i * D, rs ? rs + i * D : nullptr, ss ? ss + i * D : nullptr, ws, ys + i * D, D, eps,
                           0, 1, one_thread());
}

template <class S>
void rms_norm_backward(const void *gy, const void *gsum, const void *v, const void *w, const float *r, void *gv,
                       float *gw, long rows, int D) {
  const S *g = (const S *)gy, *gs = (const S *)gsum, *vs = (const S *)v;
  for (long i = 0; i < rows; i++)
    rms_norm_row_backward<S>(g + i * D, gs ? gs + i * D : nullptr, vs + i * D, (const S *)w, r[i], (S *)gv + i * D,
                             gw, D, 0, 1, one_thread());
}

template <class S> void swiglu_all(const void *g, const void *u, void *y, long n) {
  for (long i = 0; i < n; i++) ((S *)y)[i] = swiglu<S>(((const S *)g)[i], ((const S *)u)[i]);
}

template <class S> void swiglu_backward_all(const void *gy, const void *g, const void *u, void *dg, void *du, long n) {
  for (long i = 0; i < n; i++)
    swiglu_backward<S>(((const S *)gy)[i], ((const S *)g)[i], ((const S *)u)[i], (S *)dg + i, (S *)du + i);
}

// RoPE and KV injection: every pair in the CUDA threads' order, through their index arithmetic.
template <class S>
void rope(const void *x, const void *cos, const void *sin, void *y, const fused_rope_shape &s, int backward) {
  for (long i = 0, n = s.B * s.H * s.T * (s.hd / 2); i < n; i++)
    rope_at<S>((const S *)x, (const S *)cos, (const S *)sin, (S *)y, s, i, backward);
}
template <class S>
void kv_inject(void *prefix, void *x, const void *pcos, const void *psin, const void *cos, const void *sin, void *joint,
               const fused_kv_shape &s, int backward) {
  for (long i = 0, n = s.B * s.H * (s.P + s.T) * (s.hd / 2); i < n; i++)
    kv_inject_pair<S>((S *)prefix, (S *)x, (const S *)pcos, (const S *)psin, (const S *)cos, (const S *)sin,
                      (S *)joint, s, i, backward);
}

struct one_thread_max {
  float operator()(float partial) const { return partial; }
};

template <class S>
void ce(const void *logits, const int64_t *targets, float *lse, float *picked, long rows, long V) {
  for (long r = 0; r < rows; r++) {
    const S *x = (const S *)logits + r * V;
    lse[r] = ce_row_lse<S>(x, V, 0, 1, one_thread_max(), one_thread());
    picked[r] = to_f(x[targets[r]]);
  }
}

template <class S>
void ce_backward(const void *logits, const int64_t *targets, const float *lse, const float *scale, void *d, long rows,
                 long V) {
  for (long r = 0; r < rows; r++)
    for (long j = 0; j < V; j++)
      ((S *)d)[r * V + j] = ce_grad<S>(((const S *)logits)[r * V + j], lse[r], j == targets[r], scale[r]);
}

template <class S> void dropout_all(const void *x, const void *keep, float scale, void *y, uint8_t *mask, long n) {
  for (long i = 0; i < n; i++) ((S *)y)[i] = dropout<S>(((const S *)x)[i], ((const S *)keep)[i], scale, mask + i);
}

template <class S> void dropout_backward_all(const void *gy, const uint8_t *mask, float scale, void *gx, long n) {
  for (long i = 0; i < n; i++) ((S *)gx)[i] = dropout_backward<S>(((const S *)gy)[i], mask[i], scale);
}
}  // namespace

extern "C" {
void fused_rms_norm_ref(fused_dtype dt, const void *x, const void *res, void *sum, const void *w, void *y, float *r,
                        long rows, int D, float eps) {
  (dt == FUSED_BF16 ? rms_norm<pith_bf16> : rms_norm<float>)(x, res, sum, w, y, r, rows, D, eps);
}
void fused_rms_norm_backward_ref(fused_dtype dt, const void *gy, const void *gsum, const void *v, const void *w,
                                 const float *r, void *gv, float *gw, long rows, int D) {
  (dt == FUSED_BF16 ? rms_norm_backward<pith_bf16> : rms_norm_backward<float>)(gy, gsum, v, w, r, gv, gw, rows, D);
}
void fused_swiglu_ref(fused_dtype dt, const void *g, const void *u, void *y, long n) {
  (dt == FUSED_BF16 ? swiglu_all<pith_bf16> : swiglu_all<float>)(g, u, y, n);
}
void fused_swiglu_backward_ref(fused_dtype dt, const void *gy, const void *g, const void *u, void *dg, void *du,
                               long n) {
  (dt == FUSED_BF16 ? swiglu_backward_all<pith_bf16> : swiglu_backward_all<float>)(gy, g, u, dg, du, n);
}
void fused_rope_ref(fused_dtype dt, const void *x, const void *cos, const void *sin, void *y, fused_rope_shape s,
                    int backward) {
  (dt == FUSED_BF16 ? rope<pith_bf16> : rope<float>)(x, cos, sin, y, s, backward);
}
void fused_kv_inject_ref(fused_dtype dt, void *prefix, void *x, const void *pcos, const void *psin, const void *cos,
                         const void *sin, void *joint, fused_kv_shape s, int backward) {
  (dt == FUSED_BF16 ? kv_inject<pith_bf16> : kv_inject<float>)(prefix, x, pcos, psin, cos, sin, joint, s, backward);
}
void fused_ce_ref(fused_dtype dt, const void *logits, const int64_t *targets, float *lse, float *picked, long rows,
                  long V) {
  (dt == FUSED_BF16 ? ce<pith_bf16> : ce<float>)(logits, targets, lse, picked, rows, V);
}
void fused_ce_backward_ref(fused_dtype dt, const void *logits, const int64_t *targets, const float *lse,
                           const float *scale, void *d, long rows, long V) {
  (dt == FUSED_BF16 ? ce_backward<pith_bf16> : ce_backward<float>)(logits, targets, lse, scale, d, rows, V);
}
void fused_dropout_ref(fused_dtype dt, const void *x, const void *keep, float scale, void *y, unsigned char *mask,
                       long n) {
  (dt == FUSED_BF16 ? dropout_all<pith_bf16> : dropout_all<float>)(x, keep, scale, y, mask, n);
}
void fused_dropout_backward_ref(fused_dtype dt, const void *gy, const unsigned char *mask, float scale, void *gx,
                                long n) {
  (dt == FUSED_BF16 ? dropout_backward_all<pith_bf16> : dropout_backward_all<float>)(gy, mask, scale, gx, n);
}
}
