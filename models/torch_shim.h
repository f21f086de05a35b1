// torch_shim: the one door from C to libtorch (ATen tensors and autograd).
//
// Handles: pt_tensor (one tensor), pt_gen (a random generator), pt_adamw (an optimizer). They are
// opaque; the C++ behind them never lets an exception cross into C and never aborts.
//
// Errors: the first failure is kept in a thread-local message that names the op and the shapes
// ("matmul: [4,8] x [7,3]: inner dimensions differ"); the failing op returns NULL, and every later
// op given a NULL input returns NULL without overwriting the message. So model code reads like
// the math and checks once, at its boundary: `if (!pt_ok()) return pt_fail(err, "what");`.
//
// Lifetimes: every tensor handle is registered in a thread-local arena. pt_scope_end(s) frees
// every handle created since s = pt_scope_begin(), so a training step cannot leak.
// pt_scope_return(s, t) does the same but hands t to the enclosing scope. Long-lived tensors
// (parameters, optimizer state) are taken out of the arena with pt_keep() and freed with pt_free().
#ifndef PITH_TORCH_SHIM_H
#define PITH_TORCH_SHIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "base.h"

typedef struct pt_tensor pt_tensor;
typedef struct pt_gen pt_gen;
typedef struct pt_adamw pt_adamw;

typedef enum { PT_F32, PT_BF16, PT_F16, PT_I32, PT_I64, PT_BOOL } pt_dtype;

// A device: PT_CPU, or the index N of cuda:N.
typedef int pt_device;
#define PT_CPU (-1)

#define PT_MAX_DIMS 8
typedef struct {
  int ndim;
  int64_t d[PT_MAX_DIMS];
} pt_shape;
// PT_SHAPE(B, T, D) builds a pt_shape in place.
#define PT_SHAPE(...)                                                                  \
  ((pt_shape){(int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), {__VA_ARGS__}})
#define PT_SCALAR_SHAPE ((pt_shape){0, {0}})

typedef enum { PT_REDUCE_MEAN, PT_REDUCE_SUM, PT_REDUCE_NONE } pt_reduction;

// ---- errors ----
// pt_fail is the one bridge from the shim's pending error to a library's pith_err: it writes
// "<what>: <pending message>" (or "<what>: failed" when none is pending) into err, clears the
// pending error, and returns -1, so a boundary reads `if (!pt_ok()) return pt_fail(err, "lora");`.
// An error that no pt_fail consumed ends with the scope it was raised in (said on stderr), so it
// can never fail a later call. pt_error() peeks without consuming (tests, diagnostics).
int pt_fail(pith_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int pt_ok(void);                 // 1 when no error is pending on this thread
const char *pt_error(void);      // the pending message, "" when none
void pt_error_clear(void);
// Record an error from C (model code validating its input); keeps an earlier one if pending.
void pt_error_set(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

// ---- lifetimes ----
typedef size_t pt_scope;
pt_scope pt_scope_begin(void);
void pt_scope_end(pt_scope s);
pt_tensor *pt_scope_return(pt_scope s, pt_tensor *keep);  // end s, keep one handle alive outside
void pt_scope_return_n(pt_scope s, pt_tensor **keep, int n);  // the same for n handles (NULLs skipped)
pt_tensor *pt_keep(pt_tensor *t);  // take t out of the arena; free it with pt_free
void pt_free(pt_tensor *t);        // free now (kept or not); NULL is fine
size_t pt_live_handles(void);      // handles alive on this thread (arena + kept): for leak tests

// ---- runtime ----
const char *pt_version(void);      // libtorch version, e.g. "2.11.0"
int pt_cuda_device_count(void);    // 0 without CUDA
// A device by name: "cpu", "cuda" (cuda:0) or "cuda:N". 0; -1 for any other name, -2 for a GPU
// that is not visible; then err says so in words that follow the option's name, e.g.
// "is cpu, cuda or cuda:N, not 'tpu'" or "cuda:3 asked for, but 1 CUDA device(s) are visible".
// A user's input, not a failed op: the thread's pending error is left alone.
int pt_device_parse(const char *name, pt_device *dev, pith_err *err);
// The CUDA caching allocator's peak bytes on cuda:dev since the process began (or the last reset):
// allocated to tensors, and reserved from the driver. Both -1 without CUDA or for PT_CPU.
int pt_cuda_peak_bytes(pt_device dev, int64_t *allocated, int64_t *reserved);
void pt_cuda_reset_peak(pt_device dev);
void pt_set_num_threads(int n);
int pt_num_threads(void);
void pt_manual_seed(uint64_t seed);  // the default generators of every device

// ---- describing tensors ----
pt_shape pt_shape_of(const pt_tensor *t);  // ndim -1 for NULL
int pt_ndim(const pt_tensor *t);
int64_t pt_size(const pt_tensor *t, int dim);  // negative dim counts from the end
int64_t pt_numel(const pt_tensor *t);
pt_dtype pt_dtype_of(const pt_tensor *t);
pt_device pt_device_of(const pt_tensor *t);
const char *pt_dtype_name(pt_dtype dt);
size_t pt_dtype_size(pt_dtype dt);
// "[2,3] f32 cpu" into buf; returns buf.
char *pt_describe(const pt_tensor *t, char *buf, size_t len);
// The bytes of the storage t's data lives in (a view reports its base's whole storage): what
// the tensor really holds alive. -1 for NULL.
int64_t pt_storage_nbytes(const pt_tensor *t);

// ---- creating and reading ----
// Copies `data` (laid out contiguously, row-major, in dtype dt) into a new tensor on dev.
pt_tensor *pt_from_data(const void *data, pt_dtype dt, pt_shape shape, pt_device dev);
// Copies t (any device, any layout) into out, which holds exactly numel * dtype size bytes of t's
// dtype. Returns 0, or -1 with the error set.
int pt_to_data(const pt_tensor *t, void *out, size_t nbytes);
double pt_item(const pt_tensor *t);  // a one-element tensor's value; NAN on error
pt_tensor *pt_zeros(pt_shape shape, pt_dtype dt, pt_device dev);
pt_tensor *pt_ones(pt_shape shape, pt_dtype dt, pt_device dev);
pt_tensor *pt_full(pt_shape shape, double value, pt_dtype dt, pt_device dev);
pt_tensor *pt_arange(int64_t start, int64_t end, pt_dtype dt, pt_device dev);  // [start, end)
pt_tensor *pt_randn(pt_shape shape, pt_dtype dt, pt_device dev, pt_gen *g);      // g may be NULL
pt_tensor *pt_uniform(pt_shape shape, double lo, double hi, pt_dtype dt, pt_device dev, pt_gen *g);
pt_tensor *pt_to_dtype(const pt_tensor *t, pt_dtype dt);
pt_tensor *pt_to_device(const pt_tensor *t, pt_device dev);
pt_tensor *pt_clone(const pt_tensor *t);
pt_tensor *pt_detach(const pt_tensor *t);  // shares storage, cut from the graph

// ---- elementwise (broadcasting) ----
pt_tensor *pt_add(const pt_tensor *a, const pt_tensor *b);
pt_tensor *pt_sub(const pt_tensor *a, const pt_tensor *b);
pt_tensor *pt_mul(const pt_tensor *a, const pt_tensor *b);
pt_tensor *pt_div(const pt_tensor *a, const pt_tensor *b);
pt_tensor *pt_add_scalar(const pt_tensor *a, double s);
pt_tensor *pt_mul_scalar(const pt_tensor *a, double s);
pt_tensor *pt_pow_scalar(const pt_tensor *a, double p);
pt_tensor *pt_maximum(const pt_tensor *a, const pt_tensor *b);
pt_tensor *pt_neg(const pt_tensor *a);
pt_tensor *pt_exp(const pt_tensor *a);
pt_tensor *pt_log(const pt_tensor *a);
pt_tensor *pt_sqrt(const pt_tensor *a);
pt_tensor *pt_rsqrt(const pt_tensor *a);
pt_tensor *pt_abs(const pt_tensor *a);
pt_tensor *pt_sin(const pt_tensor *a);
pt_tensor *pt_cos(const pt_tensor *a);
pt_tensor *pt_tanh(const pt_tensor *a);
pt_tensor *pt_sigmoid(const pt_tensor *a);
pt_tensor *pt_relu(const pt_tensor *a);
pt_tensor *pt_silu(const pt_tensor *a);
pt_tensor *pt_eq(const pt_tensor *a, const pt_tensor *b);     // bool
pt_tensor *pt_eq_scalar(const pt_tensor *a, double s);        // bool
pt_tensor *pt_where(const pt_tensor *cond, const pt_tensor *a, const pt_tensor *b);
pt_tensor *pt_masked_fill(const pt_tensor *a, const pt_tensor *mask, double value);
// Cumulative sum along dim; bool and integer inputs sum as i64 (as torch.cumsum).
pt_tensor *pt_cumsum(const pt_tensor *a, int dim);

// ---- linear algebra ----
pt_tensor *pt_matmul(const pt_tensor *a, const pt_tensor *b);  // batched, broadcasting
// x (..., in) · w (out, in)ᵀ + b (out); b may be NULL.
pt_tensor *pt_linear(const pt_tensor *x, const pt_tensor *w, const pt_tensor *b);

// ---- reductions ----
pt_tensor *pt_sum(const pt_tensor *a);                         // all elements → scalar
pt_tensor *pt_mean(const pt_tensor *a);
pt_tensor *pt_sum_dim(const pt_tensor *a, int dim, int keepdim);
pt_tensor *pt_mean_dim(const pt_tensor *a, int dim, int keepdim);
pt_tensor *pt_amax_dim(const pt_tensor *a, int dim, int keepdim);
pt_tensor *pt_argmax(const pt_tensor *a, int dim, int keepdim);  // i64
pt_tensor *pt_softmax(const pt_tensor *a, int dim);
pt_tensor *pt_log_softmax(const pt_tensor *a, int dim);
// logits (N, C), targets (N) i64; targets equal to ignore_index add nothing (mean over the rest).
pt_tensor *pt_cross_entropy(const pt_tensor *logits, const pt_tensor *targets, int64_t ignore_index,
                            pt_reduction reduction);
// The LM head and its cross-entropy in one, chunk_rows rows at a time, so that the (N, V) logits
// are never held whole (nor their f32 copy, log-softmax or gradient): the backward pass computes
// each chunk's logits again. h (N, D) and w (V, D) in the model's dtype, targets (N) i64; logits
// h wᵀ are scored in f32 as pt_cross_entropy scores them. Returns the mean over the targets that are
// not ignore_index, or with weights (N, f32) the weighted mean sum(weight · ce) / sum(weight). The
// same loss and gradients as pt_cross_entropy(pt_linear(h, w)) in exact arithmetic; in floating
// point they differ in the last bits (sums taken in another order).
pt_tensor *pt_linear_cross_entropy(const pt_tensor *h, const pt_tensor *w, const pt_tensor *targets,
                                   const pt_tensor *weights, int64_t ignore_index, int64_t chunk_rows);

// ---- indexing ----
pt_tensor *pt_embedding(const pt_tensor *weight, const pt_tensor *ids);  // (V, D), ids (...) → (..., D)
// pt_embedding whose row padding_idx gets no gradient (nn.Embedding's padding_idx, which BERT and
// XLM-R use); padding_idx < 0: every row learns.
pt_tensor *pt_embedding_padded(const pt_tensor *weight, const pt_tensor *ids, int64_t padding_idx);
pt_tensor *pt_index_select(const pt_tensor *a, int dim, const pt_tensor *index);
pt_tensor *pt_gather(const pt_tensor *a, int dim, const pt_tensor *index);
pt_tensor *pt_scatter(const pt_tensor *a, int dim, const pt_tensor *index, const pt_tensor *src);
pt_tensor *pt_scatter_add(const pt_tensor *a, int dim, const pt_tensor *index, const pt_tensor *src);
// Indices (i64) of the k largest (largest != 0) or smallest elements along dim, in value order, as
// torch.topk picks them (ties included: the KV presses match kvpress's choices through it).
pt_tensor *pt_topk(const pt_tensor *a, int64_t k, int dim, int largest);
// torch.index_add: a copy of a with src's slices along dim added at index (1-D i64, one per slice).
pt_tensor *pt_index_add(const pt_tensor *a, int dim, const pt_tensor *index, const pt_tensor *src);
// torch.scatter_reduce: src reduced into a copy of a along dim at index (i64, src's shape);
// reduce is "sum", "prod", "mean", "amax" or "amin"; include_self 0 leaves a's values out where
// something is scattered. A segment max or sum over entries that name their segment.
pt_tensor *pt_scatter_reduce(const pt_tensor *a, int dim, const pt_tensor *index, const pt_tensor *src,
                             const char *reduce, int include_self);

// ---- shape ----
pt_tensor *pt_cat(pt_tensor *const *ts, int n, int dim);
pt_tensor *pt_slice(const pt_tensor *a, int dim, int64_t start, int64_t end);  // [start, end), a view
pt_tensor *pt_view(const pt_tensor *a, pt_shape shape);     // one dim may be -1
pt_tensor *pt_reshape(const pt_tensor *a, pt_shape shape);  // copies when a view is impossible
pt_tensor *pt_transpose(const pt_tensor *a, int d0, int d1);
pt_tensor *pt_permute(const pt_tensor *a, pt_shape dims);
pt_tensor *pt_contiguous(const pt_tensor *a);
pt_tensor *pt_unsqueeze(const pt_tensor *a, int dim);
pt_tensor *pt_squeeze(const pt_tensor *a, int dim);
pt_tensor *pt_expand(const pt_tensor *a, pt_shape shape);  // -1 keeps a dim
pt_tensor *pt_triu(const pt_tensor *a, int64_t diagonal);
pt_tensor *pt_tril(const pt_tensor *a, int64_t diagonal);

// ---- neural network ----
// q (B, H, Tq, hd), k and v (B, Hkv, Tk, hd) with H a multiple of Hkv (grouped-query attention);
// mask NULL or broadcastable to (B, H, Tq, Tk): bool (true = attend) or float (added);
// causal: query i attends to keys j <= i + (Tk - Tq). scale <= 0 means 1/sqrt(hd).
// Uses libtorch's fused scaled_dot_product_attention and falls back to pt_attention_math.
pt_tensor *pt_attention(const pt_tensor *q, const pt_tensor *k, const pt_tensor *v,
                        const pt_tensor *mask, int causal, double scale);
// The same computed step by step (softmax(q kᵀ · scale + mask) v): the reference and fallback.
pt_tensor *pt_attention_math(const pt_tensor *q, const pt_tensor *k, const pt_tensor *v,
                             const pt_tensor *mask, int causal, double scale);
// Zeroes each element with probability p and scales the rest by 1/(1-p); identity when p == 0.
// With the fused kernels on (pt_set_fused_kernels) one kernel applies the mask, drawn as here, and
// keeps it for the backward pass in one byte.
pt_tensor *pt_dropout(const pt_tensor *a, double p, pt_gen *g);
// x (N, C, L) averaged over windows of `kernel` with stride 1 and `padding` zeros each side,
// divided by kernel everywhere (F.avg_pool1d's count_include_pad).
pt_tensor *pt_avg_pool1d(const pt_tensor *x, int64_t kernel, int64_t padding);
// x (..., D) / rms(x) * weight (D)
pt_tensor *pt_rms_norm(const pt_tensor *x, const pt_tensor *weight, double eps);

// The LLaMA layer's element-wise work, each as one op. On CUDA tensors (f32 or bf16, one dtype)
// with the fused kernels on, each is one fused kernel each way (kernels/fused_ops.h); otherwise the
// composite of libtorch ops written beside each, bit for bit what the step-by-step ops give.
// PT_FUSED_TEST_CPU also runs CPU tensors through the same autograd ops, their kernels' CPU
// references doing the arithmetic (one thread, slow): how tests check the ops without a GPU.
// pt_fused_kernels_available: pith was built with the CUDA kernels; PT_FUSED_ON without them is
// an error. Off by default.
typedef enum { PT_FUSED_OFF, PT_FUSED_ON, PT_FUSED_TEST_CPU } pt_fused_mode;
int pt_fused_kernels_available(void);
int pt_set_fused_kernels(int mode);  // a pt_fused_mode: 0, or -1 with the error set
int pt_fused_kernels(void);
// *sum ← x + delta, and the RMSNorm of the sum (pt_rms_norm): the residual add fused with the norm.
pt_tensor *pt_add_rms_norm(const pt_tensor *x, const pt_tensor *delta, const pt_tensor *weight, double eps,
                           pt_tensor **sum);
// silu(gate) * up
pt_tensor *pt_swiglu(const pt_tensor *gate, const pt_tensor *up);
// a + b · s: LoRA's scaled update added to the base projection (one op when fused).
pt_tensor *pt_add_scaled(const pt_tensor *a, const pt_tensor *b, double s);
// RoPE, rotate-half pairing: x · cos + (−x₂, x₁) · sin, over x's last dim (even); cos and sin
// broadcast against x (the tables of llama_rope_tables, (B, 1, T, hd) against x (B, H, T, hd)).
pt_tensor *pt_rope(const pt_tensor *x, const pt_tensor *cos, const pt_tensor *sin);
// A prefix's K or V injected before the text's, as one layer's attention reads them: (B, H, P + T,
// hd) = [pt_rope(prefix, pcos, psin); pt_rope(x, cos, sin)] for prefix (B, H, P, hd) and x (B, H, T,
// hd). A NULL pair of tables leaves its part as it is (V; a prefix kept where it was made).
pt_tensor *pt_kv_inject(const pt_tensor *prefix, const pt_tensor *x, const pt_tensor *pcos, const pt_tensor *psin,
                        const pt_tensor *cos, const pt_tensor *sin);
// x (..., D) normalized over its last dim (mean 0, biased variance 1), * weight (D) + bias (D):
// torch's layer_norm (BERT's LayerNorm).
pt_tensor *pt_layer_norm(const pt_tensor *x, const pt_tensor *weight, const pt_tensor *bias, double eps);
// GELU, exact: x·Φ(x) = x/2·(1 + erf(x/√2)) (transformers' "gelu"); and its tanh approximation
// (transformers' "gelu_new" and "gelu_pytorch_tanh").
pt_tensor *pt_gelu(const pt_tensor *a);
pt_tensor *pt_gelu_tanh(const pt_tensor *a);

// ---- autograd ----
int pt_set_requires_grad(pt_tensor *t, int on);  // 0, or -1 with the error set
int pt_requires_grad(const pt_tensor *t);
int pt_backward(const pt_tensor *loss);  // loss: one element
pt_tensor *pt_grad(const pt_tensor *t);   // a new handle to t's gradient; NULL (no error) if none
void pt_zero_grad(pt_tensor *t);          // drop the gradient
int pt_grad_enabled(void);
// Turn gradient recording off or on for this thread; returns the previous state to restore:
// `int was = pt_set_grad_enabled(0); ... pt_set_grad_enabled(was);`
int pt_set_grad_enabled(int on);
// Scale the gradients of params so that their joint L2 norm is at most max_norm; returns the
// norm before clipping (NAN on error). max_norm <= 0 only measures.
double pt_clip_grad_norm(pt_tensor *const *params, int n, double max_norm);

// Activation checkpointing. fn computes n_out outputs (out[i], handles in the current scope) from
// the n_in inputs `in`, reading whatever else it needs from ctx (ctx_size bytes, copied: ctx must not
// point into the caller's stack); it returns 0, or -1 with the error set. pt_checkpoint runs fn with
// gradient recording off, so none of its intermediates are kept; backward runs fn again, with
// recording on and gen (its dropout generator, or NULL; it must outlive the backward pass) put back
// to its state at the forward, and backpropagates through that second run: into the inputs and into
// every leaf fn reads (parameters),
// as torch.utils.checkpoint's reentrant variant does. The result equals fn's without the
// checkpoint. With recording off (eval) fn just runs. The outputs join the graph through the inputs:
// when none requires grad, the first floating-point one is made to (a detached copy), so that
// parameters read inside fn still get their gradients. Returns 0, or -1 with the error set.
typedef int (*pt_checkpoint_fn)(const void *ctx, pt_tensor *const *in, int n_in, pt_tensor **out, int n_out);
int pt_checkpoint(pt_checkpoint_fn fn, const void *ctx, size_t ctx_size, pt_tensor *const *in, int n_in, pt_gen *gen,
                  pt_tensor **out, int n_out);

// ---- in place (parameters) ----
int pt_copy_(pt_tensor *dst, const pt_tensor *src);  // dst ← src, shapes equal, outside autograd

// ---- random generators ----
pt_gen *pt_gen_new(uint64_t seed, pt_device dev);
void pt_gen_free(pt_gen *g);
// The generator's full state as bytes (for checkpoints): returns its size; copies into buf when
// buf is large enough.
size_t pt_gen_get_state(const pt_gen *g, void *buf, size_t len);
int pt_gen_set_state(pt_gen *g, const void *buf, size_t len);

// ---- AdamW (decoupled weight decay, as torch.optim.AdamW) ----
typedef struct {
  double lr, beta1, beta2, eps, weight_decay;
} pt_adamw_config;
// params: n kept handles with requires_grad; the optimizer references them, it does not own them.
pt_adamw *pt_adamw_new(pt_tensor *const *params, int n, pt_adamw_config cfg);
void pt_adamw_free(pt_adamw *o);
void pt_adamw_set_lr(pt_adamw *o, double lr);
int pt_adamw_step(pt_adamw *o);       // params without a gradient are left alone
void pt_adamw_zero_grad(pt_adamw *o);
int64_t pt_adamw_steps(const pt_adamw *o);
// State of param i for checkpoints: exp_avg and exp_avg_sq (same shape as the param, owned by
// the optimizer; do not free) and the step count.
pt_tensor *pt_adamw_exp_avg(pt_adamw *o, int i);
pt_tensor *pt_adamw_exp_avg_sq(pt_adamw *o, int i);
int pt_adamw_set_steps(pt_adamw *o, int64_t steps);

// ---- distributed (torch.distributed's c10d) ----
// One process group per process: a TCPStore rendezvous, then Gloo (CPU tensors) or NCCL (CUDA,
// when pith was built with its headers). Collectives are called in the same order on every rank.
typedef struct pt_dist pt_dist;
// 1 when this build can make a process group for tensors on dev (Gloo for PT_CPU, NCCL for cuda).
int pt_dist_available(pt_device dev);
// Join the group of `world` ranks as `rank`: rank 0 hosts the store at addr:port unless
// agent_store (torchrun's agent already hosts it there; every rank is then a client). Rendezvous and
// every later collective give up after timeout_s, so a missing or dead peer is an error, not a hang.
pt_dist *pt_dist_init(const char *addr, int port, int rank, int world, int agent_store, pt_device dev,
                      double timeout_s);
void pt_dist_free(pt_dist *d);  // leaves the group; NULL is fine
// ts (n tensors on the group's device) ← root's values, in place and outside autograd.
int pt_dist_broadcast(pt_dist *d, pt_tensor *const *ts, int n, int root);
// The gradients of params (those that have one: the same ones on every rank) ← scale × their sum
// over ranks. They travel flattened in f32 buckets of about bucket_bytes: one all-reduce per bucket.
int pt_dist_all_reduce_grads(pt_dist *d, pt_tensor *const *params, int n, double scale, size_t bucket_bytes);
// v (n host doubles) ← their sum (max != 0: their maximum) over ranks, computed in f64.
int pt_dist_all_reduce_host(pt_dist *d, double *v, int n, int max);
int pt_dist_barrier(pt_dist *d);
// The same all-reduce of gradients, overlapped with the backward pass: once armed, hooks on params
// (leaves that require grad; autograd's post-accumulate-grad hooks) copy each gradient into its f32
// bucket of about bucket_bytes as soon as it is accumulated, and launch a bucket's async all-reduce
// when its last gradient is in, while the backward pass goes on. Buckets go in reverse
// parameter order (the order backward reaches them) and always in bucket order, so the ranks agree.
typedef struct pt_dist_grads pt_dist_grads;
pt_dist_grads *pt_dist_grads_new(pt_dist *d, pt_tensor *const *params, int n, size_t bucket_bytes);
// The next backward pass launches the buckets (with gradient accumulation: before the last micro-batch's
// backward, so they carry the accumulated sums).
int pt_dist_grads_arm(pt_dist_grads *g);
// Sends what the hooks did not (parameters backward did not reach: zeros), waits for every bucket, and
// sets the gradients of params (those that have one) ← scale × their sum over ranks; disarms.
int pt_dist_grads_finish(pt_dist_grads *g, double scale);
// Buckets launched so far by the hooks of this step (the rest wait for pt_dist_grads_finish); -1 on NULL.
int pt_dist_grads_launched(pt_dist_grads *g);
void pt_dist_grads_free(pt_dist_grads *g);  // removes the hooks; NULL is fine

#ifdef __cplusplus
}
#endif

#endif
