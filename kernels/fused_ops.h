// fused_ops: fused kernels of the LLaMA layer's element-wise work, forward and backward, f32 and
// bf16: RMSNorm (optionally with the residual add before it), SwiGLU, RoPE, LoRA's dropout, the
// injection of a prefix's K/V (500xCompressor's compress tokens) before the text's, and the LM head's
// cross-entropy (a chunk of logits at a time). One kernel each way replaces the several libtorch ops
// of the composite path (models/torch_shim.cpp keeps that path, used on the CPU and whenever the
// fused kernels are off).
//
// The arithmetic is in fused_math.cuh, shared by the CUDA kernels (fused_ops.cu, built where nvcc
// is) and the CPU references below (fused_ref.cpp, always built), which tests compare with libtorch.
// Buffers are row-major; bf16 buffers hold the raw 16-bit values.
#ifndef PITH_FUSED_OPS_H
#define PITH_FUSED_OPS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { FUSED_F32, FUSED_BF16 } fused_dtype;

// RoPE's operand: x (B, H, T, hd) read through element strides xs (of B, H, T) and written to y
// through ys, the tables cos and sin (B, T, hd) through cs (of B, T); every last dim contiguous, hd
// even. The composite path's q and k are transposed views, so the strides matter.
typedef struct {
  long B, H, T;
  int hd;
  long xs[3], ys[3], cs[2];
} fused_rope_shape;

// KV injection: one layer's K (or V) as the decoder's attention reads it, the prefix's P rows before
// the text's T, joint (B, H, P + T, hd) contiguous. Row s < P is prefix row s rotated by the tables
// pcos, psin (the position policy's shift); row P + t is x row t rotated by cos, sin (the text's
// RoPE). A NULL pair of tables copies its rows (V). prefix and x are read through element strides
// ps, xs (of B, H, rows), the tables through pcs, cs (of B, rows); every last dim contiguous, hd even.
typedef struct {
  long B, H, P, T;
  int hd;
  long ps[3], xs[3], pcs[2], cs[2];
} fused_kv_shape;

// ---- CPU references (contiguous buffers, but for RoPE's and KV injection's strides)

// rows of D: y = w · rmsnorm(v), v = x, or x + res (then also written to sum; res and sum both NULL
// or both given); r (rows) gets each row's 1/rms.
void fused_rms_norm_ref(fused_dtype dt, const void *x, const void *res, void *sum, const void *w, void *y, float *r,
                        long rows, int D, float eps);
// gv from gy, v (x or the sum), w, r; gsum (optional) added to gv; gw (D, f32) accumulates.
void fused_rms_norm_backward_ref(fused_dtype dt, const void *gy, const void *gsum, const void *v, const void *w,
                                 const float *r, void *gv, float *gw, long rows, int D);
void fused_swiglu_ref(fused_dtype dt, const void *g, const void *u, void *y, long n);
void fused_swiglu_backward_ref(fused_dtype dt, const void *gy, const void *g, const void *u, void *dg, void *du,
                               long n);
// backward: x is the output's gradient, y gets the input's.
void fused_rope_ref(fused_dtype dt, const void *x, const void *cos, const void *sin, void *y, fused_rope_shape s,
                    int backward);

// Forward: joint from prefix and x. Backward: joint holds the output's gradient, and prefix and x
// (then written, through the same strides) get their inputs' gradients.
void fused_kv_inject_ref(fused_dtype dt, void *prefix, void *x, const void *pcos, const void *psin, const void *cos,
                         const void *sin, void *joint, fused_kv_shape s, int backward);

// Cross-entropy over one chunk of the LM head's logits (rows, V), row-major, against targets (rows)
// i64 (an ignored row's target any id in [0, V); its weight, in scale, 0). Forward: lse[r] = log Σ
// exp(logits[r]) and picked[r] = logits[r, targets[r]], f32. Backward: d[r, j] = (exp(logits[r, j] −
// lse[r]) − [j = targets[r]]) · scale[r], in the logits' dtype: the gradient of the logits.
void fused_ce_ref(fused_dtype dt, const void *logits, const int64_t *targets, float *lse, float *picked, long rows,
                  long V);
void fused_ce_backward_ref(fused_dtype dt, const void *logits, const int64_t *targets, const float *lse,
                           const float *scale, void *d, long rows, long V);

// y = x · keep · scale (keep 0 or 1, drawn by the caller); mask (n bytes) gets keep != 0.
void fused_dropout_ref(fused_dtype dt, const void *x, const void *keep, float scale, void *y, unsigned char *mask,
                       long n);
void fused_dropout_backward_ref(fused_dtype dt, const void *gy, const unsigned char *mask, float scale, void *gx,
                                long n);

// ---- CUDA kernels: device pointers, stream a cudaStream_t (NULL: the default stream). 0, or -1
// with the launch error in err. Defined only where pith was built with CUDA.

int fused_rms_norm_cuda(fused_dtype dt, const void *x, const void *res, void *sum, const void *w, void *y, float *r,
                        long rows, int D, float eps, void *stream, char *err, int err_len);
// gw_partial: (fused_rms_norm_backward_blocks(rows), D) f32, zeroed by the caller; the weight's
// gradient is the sum of its rows (one per thread block: deterministic, no atomics).
int fused_rms_norm_backward_blocks(long rows);
int fused_rms_norm_backward_cuda(fused_dtype dt, const void *gy, const void *gsum, const void *v, const void *w,
                                 const float *r, void *gv, float *gw_partial, long rows, int D, void *stream,
                                 char *err, int err_len);
int fused_swiglu_cuda(fused_dtype dt, const void *g, const void *u, void *y, long n, void *stream, char *err,
                      int err_len);
int fused_swiglu_backward_cuda(fused_dtype dt, const void *gy, const void *g, const void *u, void *dg, void *du,
                               long n, void *stream, char *err, int err_len);
int fused_rope_cuda(fused_dtype dt, const void *x, const void *cos, const void *sin, void *y, fused_rope_shape s,
                    int backward, void *stream, char *err, int err_len);
int fused_kv_inject_cuda(fused_dtype dt, void *prefix, void *x, const void *pcos, const void *psin, const void *cos,
                         const void *sin, void *joint, fused_kv_shape s, int backward, void *stream, char *err,
                         int err_len);

int fused_ce_cuda(fused_dtype dt, const void *logits, const int64_t *targets, float *lse, float *picked, long rows,
                  long V, void *stream, char *err, int err_len);
int fused_ce_backward_cuda(fused_dtype dt, const void *logits, const int64_t *targets, const float *lse,
                           const float *scale, void *d, long rows, long V, void *stream, char *err, int err_len);

int fused_dropout_cuda(fused_dtype dt, const void *x, const void *keep, float scale, void *y, unsigned char *mask,
                       long n, void *stream, char *err, int err_len);
int fused_dropout_backward_cuda(fused_dtype dt, const void *gy, const unsigned char *mask, float scale, void *gx,
                                long n, void *stream, char *err, int err_len);

#ifdef __cplusplus
}
#endif

#endif
