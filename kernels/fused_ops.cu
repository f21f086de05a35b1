// CUDA side of fused_ops.h: fused_math.cuh's functions, a thread block per row (RMSNorm, the
// cross-entropy's log-sum-exp) or a thread per element or pair (SwiGLU, RoPE, KV injection, dropout,
// the cross-entropy's gradient), grid-stride loops.
#include <cuda_runtime.h>
#include <stdio.h>

#include "fused_math.cuh"
#include "fused_ops.h"

namespace {
const int THREADS = 256;  // a multiple of 32: block_sum uses whole warps
const long MAX_BLOCKS = 65535L * 8;

// The block's total of every thread's v, returned to every thread.
__device__ float block_sum(float v) {
  __shared__ float warp_totals[32];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  __syncthreads();  // an earlier call's readers are done with warp_totals
  if ((threadIdx.x & 31) == 0) warp_totals[threadIdx.x >> 5] = v;
  __syncthreads();
  int lane = threadIdx.x & 31;
  v = lane < (int)(blockDim.x >> 5) ? warp_totals[lane] : 0.0f;
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// The block's largest v, returned to every thread.
__device__ float block_max(float v) {
  __shared__ float warp_maxes[32];
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  __syncthreads();
  if ((threadIdx.x & 31) == 0) warp_maxes[threadIdx.x >> 5] = v;
  __syncthreads();
  int lane = threadIdx.x & 31;
  v = lane < (int)(blockDim.x >> 5) ? warp_maxes[lane] : -INFINITY;
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

struct block_total {
  __device__ float operator()(float partial) const { return block_sum(partial); }
};

struct block_largest {
  __device__ float operator()(float partial) const { return block_max(partial); }
};

template <class S>
__global__ void rms_norm_kernel(const S *x, const S *res, S *sum, const S *w, S *y, float *r, long rows, int D,
                                float eps) {
  for (long i = blockIdx.x; i < rows; i += gridDim.x) {
    float ri = rms_norm_row<S>(x + i * D, res ? res + i * D : nullptr, sum ? sum + i * D : nullptr, w, y + i * D, D,
                               eps, threadIdx.x, blockDim.x, block_total());
    if (threadIdx.x == 0) r[i] = ri;
  }
}

template <class S>
__global__ void rms_norm_backward_kernel(const S *gy, const S *gsum, const S *v, const S *w, const float *r, S *gv,
                                         float *gw_partial, long rows, int D) {
  // This block's own row of the partial sums (no other block writes it); none when w needs no gradient.
  float *gw = gw_partial ? gw_partial + (long)blockIdx.x * D : nullptr;
  for (long i = blockIdx.x; i < rows; i += gridDim.x)
    rms_norm_row_backward<S>(gy + i * D, gsum ? gsum + i * D : nullptr, v + i * D, w, r[i], gv + i * D, gw, D,
                             threadIdx.x, blockDim.x, block_total());
}

template <class S> __global__ void swiglu_kernel(const S *g, const S *u, S *y, long n) {
  for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x)
    y[i] = swiglu<S>(g[i], u[i]);
}

template <class S> __global__ void swiglu_backward_kernel(const S *gy, const S *g, const S *u, S *dg, S *du, long n) {
  for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x)
    swiglu_backward<S>(gy[i], g[i], u[i], dg + i, du + i);
}

template <class S>
__global__ void rope_kernel(const S *x, const S *cos, const S *sin, S *y, fused_rope_shape s, int backward) {
  long n = s.B * s.H * s.T * (s.hd / 2);
  for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x)
    rope_at<S>(x, cos, sin, y, s, i, backward);
}

template <class S>
__global__ void kv_inject_kernel(S *prefix, S *x, const S *pcos, const S *psin, const S *cos, const S *sin, S *joint,
                                 fused_kv_shape s, int backward) {
  long n = s.B * s.H * (s.P + s.T) * (s.hd / 2);
  for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x)
    kv_inject_pair<S>(prefix, x, pcos, psin, cos, sin, joint, s, i, backward);
}

template <class S>
__global__ void ce_kernel(const S *logits, const int64_t *targets, float *lse, float *picked, long rows, long V) {
  for (long r = blockIdx.x; r < rows; r += gridDim.x) {
    float l = ce_row_lse<S>(logits + r * V, V, threadIdx.x, blockDim.x, block_largest(), block_total());
    if (threadIdx.x == 0) lse[r] = l, picked[r] = to_f(logits[r * V + targets[r]]);
  }
}

// Rows along the grid's y, each row's columns along its x: no division per element.
template <class S>
__global__ void ce_backward_kernel(const S *logits, const int64_t *targets, const float *lse, const float *scale, S *d,
                                   long rows, long V) {
  for (long r = blockIdx.y; r < rows; r += gridDim.y) {
    const S *x = logits + r * V;
    S *o = d + r * V;
    long t = targets[r];
    float l = lse[r], sc = scale[r];
    for (long j = blockIdx.x * (long)blockDim.x + threadIdx.x; j < V; j += (long)gridDim.x * blockDim.x)
      o[j] = ce_grad<S>(x[j], l, j == t, sc);
  }
}

template <class S> __global__ void dropout_kernel(const S *x, const S *keep, float scale, S *y, uint8_t *mask, long n) {
  for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x)
    y[i] = dropout<S>(x[i], keep[i], scale, mask + i);
}

template <class S>
__global__ void dropout_backward_kernel(const S *gy, const uint8_t *mask, float scale, S *gx, long n) {
  for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x)
    gx[i] = dropout_backward<S>(gy[i], mask[i], scale);
}

unsigned blocks_for(long n) {
  long b = (n + THREADS - 1) / THREADS;
  return (unsigned)(b < 1 ? 1 : b > MAX_BLOCKS ? MAX_BLOCKS : b);
}

int launched(const char *what, char *err, int err_len) {
  cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess) return 0;
  snprintf(err, err_len, "%s: launch failed: %s", what, cudaGetErrorString(e));
  return -1;
}
}  // namespace

#define T(p) ((const pith_bf16 *)(p))
#define F(p) ((const float *)(p))

// The entry points: the void pointers typed for the bf16 or the f32 instance of each kernel.
extern "C" int fused_rms_norm_cuda(fused_dtype dt, const void *x, const void *res, void *sum, const void *w, void *y,
                                   float *r, long rows, int D, float eps, void *stream, char *err, int err_len) {
  unsigned grid = (unsigned)(rows < MAX_BLOCKS ? (rows < 1 ? 1 : rows) : MAX_BLOCKS);
  if (dt == FUSED_BF16)
    rms_norm_kernel<pith_bf16><<<grid, THREADS, 0, (cudaStream_t)stream>>>(
        T(x), T(res), (pith_bf16 *)sum, T(w), (pith_bf16 *)y, r, rows, D, eps);
  else
    rms_norm_kernel<float><<<grid, THREADS, 0, (cudaStream_t)stream>>>(F(x), F(res), (float *)sum, F(w), (float *)y,
                                                                       r, rows, D, eps);
  return launched("fused_rms_norm", err, err_len);
}

extern "C" int fused_rms_norm_backward_blocks(long rows) { return (int)(rows < 1 ? 1 : rows < 1024 ? rows : 1024); }

extern "C" int fused_rms_norm_backward_cuda(fused_dtype dt, const void *gy, const void *gsum, const void *v,
                                            const void *w, const float *r, void *gv, float *gw_partial, long rows,
                                            int D, void *stream, char *err, int err_len) {
  unsigned grid = (unsigned)fused_rms_norm_backward_blocks(rows);
  if (dt == FUSED_BF16)
    rms_norm_backward_kernel<pith_bf16><<<grid, THREADS, 0, (cudaStream_t)stream>>>(
        T(gy), T(gsum), T(v), T(w), r, (pith_bf16 *)gv, gw_partial, rows, D);
  else
    rms_norm_backward_kernel<float><<<grid, THREADS, 0, (cudaStream_t)stream>>>(F(gy), F(gsum), F(v), F(w), r,
                                                                                (float *)gv, gw_partial, rows, D);
  return launched("fused_rms_norm_backward", err, err_len);
}

extern "C" int fused_swiglu_cuda(fused_dtype dt, const void *g, const void *u, void *y, long n, void *stream,
                                 char *err, int err_len) {
  if (dt == FUSED_BF16)
    swiglu_kernel<pith_bf16><<<blocks_for(n), THREADS, 0, (cudaStream_t)stream>>>(T(g), T(u), (pith_bf16 *)y, n);
  else
    swiglu_kernel<float><<<blocks_for(n), THREADS, 0, (cudaStream_t)stream>>>(F(g), F(u), (float *)y, n);
  return launched("fused_swiglu", err, err_len);
}

extern "C" int fused_swiglu_backward_cuda(fused_dtype dt, const void *gy, const void *g, const void *u, void *dg,
                                          void *du, long n, void *stream, char *err, int err_len) {
  if (dt == FUSED_BF16)
    swiglu_backward_kernel<pith_bf16><<<blocks_for(n), THREADS, 0, (cudaStream_t)stream>>>(
        T(gy), T(g), T(u), (pith_bf16 *)dg, (pith_bf16 *)du, n);
  else
    swiglu_backward_kernel<float><<<blocks_for(n), THREADS, 0, (cudaStream_t)stream>>>(F(gy), F(g), F(u),
                                                                                        (float *)dg, (float *)du, n);
  return launched("fused_swiglu_backward", err, err_len);
}

extern "C" int fused_rope_cuda(fused_dtype dt, const void *x, const void *cos, const void *sin, void *y,
                               fused_rope_shape s, int backward, void *stream, char *err, int err_len) {
  long n = s.B * s.H * s.T * (s.hd / 2);
  if (dt == FUSED_BF16)
    rope_kernel<pith_bf16><<<blocks_for(n), THREADS, 0, (cudaStream_t)stream>>>(T(x), T(cos), T(sin),
                                                                                (pith_bf16 *)y, s, backward);
  else
    rope_kernel<float><<<blocks_for(n), THREADS, 0, (cudaStream_t)stream>>>(F(x), F(cos), F(sin), (float *)y, s,
                                                                            backward);
  return launched("fused_rope", err, err_len);
}

extern "C" int fused_kv_inject_cuda(fused_dtype dt, void *prefix, void *x, const void *pcos, const void *psin,
                                    const void *cos, const void *sin, void *joint, fused_kv_shape s, int backward,
                                    void *stream, char *err, int err_len) {
  long n = s.B * s.H * (s.P + s.T) * (s.hd / 2);
  if (dt == FUSED_BF16)
    kv_inject_kernel<pith_bf16><<<blocks_for(n), THREADS, 0, (cudaStream_t)stream>>>(
        (pith_bf16 *)prefix, (pith_bf16 *)x, T(pcos), T(psin), T(cos), T(sin), (pith_bf16 *)joint, s, backward);
  else
    kv_inject_kernel<float><<<blocks_for(n), THREADS, 0, (cudaStream_t)stream>>>(
        (float *)prefix, (float *)x, F(pcos), F(psin), F(cos), F(sin), (float *)joint, s, backward);
  return launched("fused_kv_inject", err, err_len);
}

extern "C" int fused_ce_cuda(fused_dtype dt, const void *logits, const int64_t *targets, float *lse, float *picked,
                             long rows, long V, void *stream, char *err, int err_len) {
  unsigned grid = (unsigned)(rows < MAX_BLOCKS ? (rows < 1 ? 1 : rows) : MAX_BLOCKS);
  if (dt == FUSED_BF16)
    ce_kernel<pith_bf16><<<grid, THREADS, 0, (cudaStream_t)stream>>>(T(logits), targets, lse, picked, rows, V);
  else
    ce_kernel<float><<<grid, THREADS, 0, (cudaStream_t)stream>>>(F(logits), targets, lse, picked, rows, V);
  return launched("fused_ce", err, err_len);
}

extern "C" int fused_ce_backward_cuda(fused_dtype dt, const void *logits, const int64_t *targets, const float *lse,
                                      const float *scale, void *d, long rows, long V, void *stream, char *err,
                                      int err_len) {
  dim3 grid(blocks_for(V) < 4096 ? blocks_for(V) : 4096, (unsigned)(rows < 1 ? 1 : rows < 65535 ? rows : 65535));
  if (dt == FUSED_BF16)
    ce_backward_kernel<pith_bf16><<<grid, THREADS, 0, (cudaStream_t)stream>>>(T(logits), targets, lse, scale,
                                                                              (pith_bf16 *)d, rows, V);
  else
    ce_backward_kernel<float><<<grid, THREADS, 0, (cudaStream_t)stream>>>(F(logits), targets, lse, scale, (float *)d,
                                                                          rows, V);
  return launched("fused_ce_backward", err, err_len);
}

extern "C" int fused_dropout_cuda(fused_dtype dt, const void *x, const void *keep, float scale, void *y,
                                  unsigned char *mask, long n, void *stream, char *err, int err_len) {
  if (dt == FUSED_BF16)
    dropout_kernel<pith_bf16><<<blocks_for(n), THREADS, 0, (cudaStream_t)stream>>>(T(x), T(keep), scale,
                                                                                   (pith_bf16 *)y, mask, n);
  else
    dropout_kernel<float><<<blocks_for(n), THREADS, 0, (cudaStream_t)stream>>>(F(x), F(keep), scale, (float *)y,
                                                                               mask, n);
  return launched("fused_dropout", err, err_len);
}

extern "C" int fused_dropout_backward_cuda(fused_dtype dt, const void *gy, const unsigned char *mask, float scale,
                                           void *gx, long n, void *stream, char *err, int err_len) {
  if (dt == FUSED_BF16)
    dropout_backward_kernel<pith_bf16><<<blocks_for(n), THREADS, 0, (cudaStream_t)stream>>>(T(gy), mask, scale,
                                                                                            (pith_bf16 *)gx, n);
  else
    dropout_backward_kernel<float><<<blocks_for(n), THREADS, 0, (cudaStream_t)stream>>>(F(gy), mask, scale,
                                                                                        (float *)gx, n);
  return launched("fused_dropout_backward", err, err_len);
}
