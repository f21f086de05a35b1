// fused_math.cuh: the arithmetic of the fused training kernels (fused_ops.h), written once for both
// compilers. nvcc builds it into the CUDA kernels (fused_ops.cu); the host compiler builds the very
// same functions into the CPU references (fused_ref.cpp), which tests/test_fused_ops.c checks against
// libtorch's composite ops. So every formula, rounding and backward derivation is tested on any
// machine; only the thread layout and the block reduction are GPU-only.
//
// Storage S is float or pith_bf16; arithmetic is f32. Where the composite path rounds an
// intermediate to the storage dtype (libtorch computes each bf16 op in f32 and rounds its result),
// the fused op rounds it too (round_to<S>), so fused and composite differ only in summation order.
//
// A row body runs as thread `tid` of `nt` threads over columns tid, tid + nt, ...; `sum` turns a
// thread's partial sum into the row's total for every thread (a block reduction on the GPU, the
// identity on the host, where nt is 1).
#ifndef PITH_FUSED_MATH_CUH
#define PITH_FUSED_MATH_CUH

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "fused_ops.h"

#ifdef __CUDACC__
#include <cuda_bf16.h>
#define PITH_HD __host__ __device__ __forceinline__
typedef __nv_bfloat16 pith_bf16;
PITH_HD float to_f(pith_bf16 v) { return __bfloat162float(v); }
template <class S> PITH_HD S from_f(float v);
template <> PITH_HD pith_bf16 from_f<pith_bf16>(float v) { return __float2bfloat16_rn(v); }
PITH_HD float pith_rsqrt(float v) {
#ifdef __CUDA_ARCH__
  return rsqrtf(v);
#else
  return 1.0f / sqrtf(v);
#endif
}
#else
#define PITH_HD inline
struct pith_bf16 {
  uint16_t bits;
};
inline float to_f(pith_bf16 v) {
  uint32_t u = (uint32_t)v.bits << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}
template <class S> inline S from_f(float v);
// Round to nearest even, NaN kept a (quiet) NaN: what libtorch and __float2bfloat16_rn do.
template <> inline pith_bf16 from_f<pith_bf16>(float v) {
  uint32_t u;
  memcpy(&u, &v, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return pith_bf16{(uint16_t)((u >> 16) | 0x40)};
  u += 0x7fffu + ((u >> 16) & 1);
  return pith_bf16{(uint16_t)(u >> 16)};
}
inline float pith_rsqrt(float v) { return 1.0f / sqrtf(v); }
#endif

PITH_HD float to_f(float v) { return v; }
template <> PITH_HD float from_f<float>(float v) { return v; }
template <class S> PITH_HD float round_to(float v) { return to_f(from_f<S>(v)); }

// ---------------------------------------------------------------- RMSNorm, with the residual add

// y = w · S(v · r), r = 1 / sqrt(mean(v²) + eps), v = x, or S(x + res) written to sum when res is
// given (LlamaRMSNorm: normalise in f32, round to the input's dtype, then scale). Returns r, which
// the backward pass reuses.
template <class S, class Sum>
PITH_HD float rms_norm_row(const S *x, const S *res, S *sum, const S *w, S *y, int D, float eps, int tid, int nt,
                           Sum total) {
  float ss = 0;
  for (int c = tid; c < D; c += nt) {
    float v = to_f(x[c]);
    if (res) {
      v = round_to<S>(v + to_f(res[c]));
      sum[c] = from_f<S>(v);
    }
    ss += v * v;
  }
  float r = pith_rsqrt(total(ss) / D + eps);
  for (int c = tid; c < D; c += nt) {
    float v = res ? to_f(sum[c]) : to_f(x[c]);  // sum[c]: this thread's own write
    y[c] = from_f<S>(to_f(w[c]) * round_to<S>(v * r));
  }
  return r;
}

// The gradient of rms_norm_row for one row: v the normalised input (x, or the sum), r its saved
// factor, gy the output's gradient, gsum (optional) a gradient the sum receives from elsewhere (the
// residual stream), added. With g = S(gy · w) and n = v · r:
//   gv = r · (g − n · mean(g · n)) (+ gsum),   gw += gy · S(n) (this row's share, f32).
template <class S, class Sum>
PITH_HD void rms_norm_row_backward(const S *gy, const S *gsum, const S *v, const S *w, float r, S *gv, float *gw,
                                   int D, int tid, int nt, Sum total) {
  float dot = 0;  // sum of g · v
  for (int c = tid; c < D; c += nt) dot += round_to<S>(to_f(gy[c]) * to_f(w[c])) * to_f(v[c]);
  float k = r * r * r * total(dot) / D;
  for (int c = tid; c < D; c += nt) {
    float vc = to_f(v[c]), g = round_to<S>(to_f(gy[c]) * to_f(w[c]));
    float d = round_to<S>(r * g - k * vc);
    gv[c] = from_f<S>(gsum ? d + to_f(gsum[c]) : d);
    if (gw) gw[c] += to_f(gy[c]) * round_to<S>(vc * r);
  }
}

// ---------------------------------------------------------------- SwiGLU

// y = S(silu(g)) · u, silu(g) = g / (1 + e^-g)
template <class S> PITH_HD S swiglu(S g, S u) {
  float gf = to_f(g);
  return from_f<S>(round_to<S>(gf / (1.0f + expf(-gf))) * to_f(u));
}

// dg = S(gy · u) · silu'(g), du = gy · S(silu(g)); silu'(g) = σ(g) (1 + g (1 − σ(g)))
template <class S> PITH_HD void swiglu_backward(S gy, S g, S u, S *dg, S *du) {
  float gf = to_f(g), sig = 1.0f / (1.0f + expf(-gf));
  *dg = from_f<S>(round_to<S>(to_f(gy) * to_f(u)) * (sig * (1.0f + gf * (1.0f - sig))));
  *du = from_f<S>(to_f(gy) * round_to<S>(gf / (1.0f + expf(-gf))));
}

// ---------------------------------------------------------------- RoPE (rotate-half pairing)

// The pair (i, i + hd/2) of one head's vector: y = x · cos + rotate_half(x) · sin, rotate_half(x) =
// (−x₂, x₁); c1, s1 the tables at i, c2, s2 at i + hd/2.
template <class S> PITH_HD void rope_pair(S x1, S x2, S c1, S c2, S s1, S s2, S *y1, S *y2) {
  float a = to_f(x1), b = to_f(x2);
  *y1 = from_f<S>(round_to<S>(a * to_f(c1)) + round_to<S>(-b * to_f(s1)));
  *y2 = from_f<S>(round_to<S>(b * to_f(c2)) + round_to<S>(a * to_f(s2)));
}

// Its transpose: gx₁ = gy₁ cos₁ + gy₂ sin₂, gx₂ = gy₂ cos₂ − gy₁ sin₁.
template <class S> PITH_HD void rope_pair_backward(S g1, S g2, S c1, S c2, S s1, S s2, S *gx1, S *gx2) {
  float a = to_f(g1), b = to_f(g2);
  *gx1 = from_f<S>(round_to<S>(a * to_f(c1)) + round_to<S>(b * to_f(s2)));
  *gx2 = from_f<S>(round_to<S>(b * to_f(c2)) - round_to<S>(a * to_f(s1)));
}

// Pair i of the B·H·T·hd/2 pairs of RoPE's operand (fused_rope_shape), i the CUDA thread's index
// (the CPU reference runs them all in order); backward: x is the output's gradient.
template <class S>
PITH_HD void rope_at(const S *x, const S *cos, const S *sin, S *y, const fused_rope_shape &s, long i, int backward) {
  int half = s.hd / 2, j = (int)(i % half);
  long rest = i / half, t = rest % s.T, h = rest / s.T % s.H, b = rest / s.T / s.H;
  const S *a = x + b * s.xs[0] + h * s.xs[1] + t * s.xs[2];
  const S *c = cos + b * s.cs[0] + t * s.cs[1], *sn = sin + b * s.cs[0] + t * s.cs[1];
  S *o = y + b * s.ys[0] + h * s.ys[1] + t * s.ys[2];
  if (backward)
    rope_pair_backward<S>(a[j], a[j + half], c[j], c[j + half], sn[j], sn[j + half], o + j, o + j + half);
  else
    rope_pair<S>(a[j], a[j + half], c[j], c[j + half], sn[j], sn[j + half], o + j, o + j + half);
}

// ---------------------------------------------------------------- KV injection

// Pair i of the B·H·(P + T)·hd/2 pairs (j, j + hd/2) of joint (fused_kv_shape), i the CUDA
// thread's index (the CPU reference runs them all in order): forward, rotated from its source row
// into joint; backward, joint's gradient rotated back into the source row's.
template <class S>
PITH_HD void kv_inject_pair(S *prefix, S *x, const S *pcos, const S *psin, const S *cos, const S *sin, S *joint,
                            const fused_kv_shape &s, long i, int backward) {
  int half = s.hd / 2, j = (int)(i % half);
  long rows = s.P + s.T, rest = i / half, row = rest % rows, h = rest / rows % s.H, b = rest / rows / s.H;
  int pre = row < s.P;
  long r = pre ? row : row - s.P;
  S *src = pre ? prefix + b * s.ps[0] + h * s.ps[1] + r * s.ps[2] : x + b * s.xs[0] + h * s.xs[1] + r * s.xs[2];
  const S *c = pre ? pcos : cos, *sn = pre ? psin : sin;
  S *o = joint + ((b * s.H + h) * (s.P + s.T) + row) * s.hd;
  if (!c) {  // V: copied both ways
    S *from = backward ? o : src, *to = backward ? src : o;
    to[j] = from[j], to[j + half] = from[j + half];
    return;
  }
  long t = pre ? b * s.pcs[0] + r * s.pcs[1] : b * s.cs[0] + r * s.cs[1];
  c += t, sn += t;
  if (backward)
    rope_pair_backward<S>(o[j], o[j + half], c[j], c[j + half], sn[j], sn[j + half], src + j, src + j + half);
  else
    rope_pair<S>(src[j], src[j + half], c[j], c[j + half], sn[j], sn[j + half], o + j, o + j + half);
}

// ---------------------------------------------------------------- cross-entropy (the LM head's chunk)

// log Σ exp over one row of logits (V wide), as libtorch's logsumexp computes it in f32: the max
// (0 where it is infinite), then log Σ exp(x − max) + max. `max` and `sum` turn a thread's partial
// result into the row's for every thread.
template <class S, class Max, class Sum>
PITH_HD float ce_row_lse(const S *x, long V, int tid, int nt, Max max, Sum sum) {
  float m = -INFINITY;
  for (long j = tid; j < V; j += nt) m = fmaxf(m, to_f(x[j]));
  m = max(m);
  if (isinf(m)) m = 0;
  float s = 0;
  for (long j = tid; j < V; j += nt) s += expf(to_f(x[j]) - m);
  return logf(sum(s)) + m;
}

// The loss's gradient for one logit x of a row: S((exp(x − lse) − [x is the target's]) · scale),
// scale the row's weight over the loss's denominator, as the composite computes it in f32.
template <class S> PITH_HD S ce_grad(S x, float lse, int is_target, float scale) {
  float p = expf(to_f(x) - lse);
  if (is_target) p += -1.0f;
  return from_f<S>(p * scale);
}

// ---------------------------------------------------------------- dropout (LoRA's input)

// y = S(S(x · keep) · scale) for keep 0 or 1, drawn by the caller as the composite path draws it;
// mask keeps it for the backward pass in one byte (the composite keeps keep itself, in S).
template <class S> PITH_HD S dropout(S x, S keep, float scale, uint8_t *mask) {
  float k = to_f(keep);
  *mask = k != 0.0f;
  return from_f<S>(round_to<S>(to_f(x) * k) * scale);
}

// dx = S(S(dy · scale) · keep) (a dropped element's gradient a signed zero, as the composite's)
template <class S> PITH_HD S dropout_backward(S dy, uint8_t mask, float scale) {
  return from_f<S>(round_to<S>(to_f(dy) * scale) * (mask ? 1.0f : 0.0f));
}

#endif
