// pith bench: speed of pith's own paths, printed so that a comparison script can put the same
// computation in PyTorch eager beside it (tests/reference/bench_*.py; scripts/bench runs both).
//
//   pith bench blocks: forward + backward of a stack of LLaMA-style transformer blocks (RMSNorm,
//   rotary attention through the fused SDPA, SwiGLU MLP), every weight trainable, through the shim.
//   pith bench forward: inference forward (logits) of a Hugging Face model folder.
//   pith bench train-step: one 500x training step (encoder with LoRA, decoder from the compress
//   K/V, backward, AdamW) on a model folder; under torchrun, each rank's step with the gradients'
//   all-reduce overlapped with its backward pass, as the trainer runs it.
//   pith bench distill-step: one `pith distill` method kl step (the target's logits without
//   gradients, the scorer's with, KL(target || scorer), backward, clipping, AdamW on every weight).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "cli.h"
#include "commands.h"
#include "train_math.h"
#include "compressor.h"
#include "dist.h"
#include "distill.h"
#include "hf_folder.h"
#include "torch_shim.h"

typedef struct {
  int dim, layers, seq, batch, head_dim, hidden;
  int steps, warmup, threads;
  int json;
} blocks_config;

typedef struct {
  pt_tensor *attn_norm, *wq, *wk, *wv, *wo;  // (dim), (dim, dim) x4
  pt_tensor *mlp_norm, *w_gate, *w_up;      // (dim), (hidden, dim) x2
  pt_tensor *w_down;                        // (dim, hidden)
} block_weights;

static pt_tensor *param(pt_shape shape, double scale, pt_gen *g) {
  pt_tensor *t = pt_keep(pt_mul_scalar(pt_randn(shape, PT_F32, PT_CPU, g), scale));
  pt_set_requires_grad(t, 1);
  return t;
}

static pt_tensor *norm_weight(int dim) {
  pt_tensor *t = pt_keep(pt_ones(PT_SHAPE(dim), PT_F32, PT_CPU));
  pt_set_requires_grad(t, 1);
  return t;
}

// x (B, H, T, hd) rotated by the angles whose cos and sin are (T, hd): x·cos + rotate_half(x)·sin.
static pt_tensor *rope(pt_tensor *x, pt_tensor *cos, pt_tensor *sin) {
  int64_t half = pt_size(x, -1) / 2;
  pt_tensor *halves[2] = {pt_neg(pt_slice(x, -1, half, 2 * half)), pt_slice(x, -1, 0, half)};
  return pt_add(pt_mul(x, cos), pt_mul(pt_cat(halves, 2, -1), sin));
}

// x (B, T, dim) → (B, T, dim)
static pt_tensor *block_forward(const blocks_config *c, const block_weights *w, pt_tensor *x, pt_tensor *cos,
                                pt_tensor *sin) {
  int B = c->batch, T = c->seq, H = c->dim / c->head_dim, hd = c->head_dim;
  pt_tensor *h = pt_rms_norm(x, w->attn_norm, 1e-5);
  pt_tensor *q = pt_transpose(pt_view(pt_linear(h, w->wq, NULL), PT_SHAPE(B, T, H, hd)), 1, 2);
  pt_tensor *k = pt_transpose(pt_view(pt_linear(h, w->wk, NULL), PT_SHAPE(B, T, H, hd)), 1, 2);
  pt_tensor *v = pt_transpose(pt_view(pt_linear(h, w->wv, NULL), PT_SHAPE(B, T, H, hd)), 1, 2);
  pt_tensor *a = pt_attention(rope(q, cos, sin), rope(k, cos, sin), v, NULL, 1, 0);  // (B, H, T, hd)
  a = pt_reshape(pt_transpose(a, 1, 2), PT_SHAPE(B, T, c->dim));
  x = pt_add(x, pt_linear(a, w->wo, NULL));
  h = pt_rms_norm(x, w->mlp_norm, 1e-5);
  pt_tensor *gate = pt_silu(pt_linear(h, w->w_gate, NULL));
  return pt_add(x, pt_linear(pt_mul(gate, pt_linear(h, w->w_up, NULL)), w->w_down, NULL));
}

static void rope_tables(const blocks_config *c, pt_tensor **cos_out, pt_tensor **sin_out) {
  int T = c->seq, hd = c->head_dim;
  float *cs = malloc(sizeof(float) * T * hd), *sn = malloc(sizeof(float) * T * hd);
  for (int t = 0; t < T; t++)
    for (int i = 0; i < hd; i++) {
      double freq = pow(10000.0, -(double)(2 * (i % (hd / 2))) / hd);
      cs[t * hd + i] = (float)cos(t * freq);
      sn[t * hd + i] = (float)sin(t * freq);
    }
  *cos_out = pt_keep(pt_from_data(cs, PT_F32, PT_SHAPE(T, hd), PT_CPU));
  *sin_out = pt_keep(pt_from_data(sn, PT_F32, PT_SHAPE(T, hd), PT_CPU));
  free(cs);
  free(sn);
}

// Fills c from the command line: 0 to go on, else 1 with the exit code in *code (0 after --help).
static int parse_blocks(int argc, char **argv, blocks_config *c, int *code) {
  const cli_opt opts[] = {
      {"--dim", CLI_INT, &c->dim, .metavar = "N", .min = 1, .max = CLI_INF, .help = "model width (default 256)"},
      {"--layers", CLI_INT, &c->layers, .metavar = "N", .min = 1, .max = CLI_INF, .help = "blocks (default 4)"},
      {"--seq", CLI_INT, &c->seq, .metavar = "N", .min = 1, .max = CLI_INF, .help = "tokens a row (default 256)"},
      {"--batch", CLI_INT, &c->batch, .metavar = "N", .min = 1, .max = CLI_INF, .help = "rows (default 8)"},
      {"--head-dim", CLI_INT, &c->head_dim, .metavar = "N", .min = 1, .max = CLI_INF,
       .help = "attention head width, even, dividing --dim (default 64)"},
      {"--hidden", CLI_INT, &c->hidden, .metavar = "N", .min = 1, .max = CLI_INF, .help = "MLP width (default 768)"},
      {"--steps", CLI_INT, &c->steps, .metavar = "N", .min = 1, .max = CLI_INF, .help = "timed steps (default 10)"},
      {"--warmup", CLI_INT, &c->warmup, .metavar = "N", .min = 0, .max = CLI_INF,
       .help = "untimed steps first (default 3)"},
      {"--threads", CLI_INT, &c->threads, .metavar = "N", .min = 0, .max = CLI_INF,
       .help = "CPU threads (default 0: libtorch's)"},
      {"--json", CLI_FLAG, &c->json, .help = "print one JSON object"},
  };
  const cli_spec spec = {
      "pith bench blocks", CLI_OPTS(opts), .usage_on_error = 1,
      .about = "Times forward + backward of LLaMA-style transformer blocks through the shim, on CPU, f32.\n"
               "Prints tokens/s (median over steps); --json prints one JSON object instead.\n"
               "scripts/bench blocks runs it next to the same computation in PyTorch eager.\n\n"};
  if (cli_command(&spec, argc, argv, code)) return 1;
  if (c->dim % c->head_dim || c->head_dim % 2) {
    *code = cli_usage_error(&spec, "--dim must be a multiple of --head-dim, and --head-dim even (got %d and %d)",
                            c->dim, c->head_dim);
    return 1;
  }
  return 0;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static int bench_blocks(int argc, char **argv) {
  blocks_config c = {.dim = 256, .layers = 4, .seq = 256, .batch = 8, .head_dim = 64, .hidden = 768,
                     .steps = 10, .warmup = 3, .threads = 0};
  int code;
  if (parse_blocks(argc, argv, &c, &code)) return code;
  if (c.threads > 0) pt_set_num_threads(c.threads);

  pt_gen *g = pt_gen_new(1234, PT_CPU);
  block_weights *w = calloc((size_t)c.layers, sizeof *w);
  double sd = 1 / sqrt(c.dim);
  for (int l = 0; l < c.layers; l++) {
    w[l] = (block_weights){norm_weight(c.dim), param(PT_SHAPE(c.dim, c.dim), sd, g), param(PT_SHAPE(c.dim, c.dim), sd, g),
                           param(PT_SHAPE(c.dim, c.dim), sd, g), param(PT_SHAPE(c.dim, c.dim), sd, g), norm_weight(c.dim),
                           param(PT_SHAPE(c.hidden, c.dim), sd, g), param(PT_SHAPE(c.hidden, c.dim), sd, g),
                           param(PT_SHAPE(c.dim, c.hidden), 1 / sqrt(c.hidden), g)};
  }
  pt_tensor *cos, *sin;
  rope_tables(&c, &cos, &sin);
  pt_tensor *input = pt_keep(pt_randn(PT_SHAPE(c.batch, c.seq, c.dim), PT_F32, PT_CPU, g));

  double *times = calloc((size_t)c.steps, sizeof *times);
  double loss = 0;
  for (int step = 0; step < c.warmup + c.steps; step++) {
    double t0 = pith_now_s();
    pt_scope s = pt_scope_begin();
    pt_tensor *x = input;
    for (int l = 0; l < c.layers; l++) x = block_forward(&c, &w[l], x, cos, sin);
    pt_tensor *l2 = pt_mean(pt_mul(x, x));
    if (pt_backward(l2) != 0) break;
    loss = pt_item(l2);
    for (int l = 0; l < c.layers; l++) {
      pt_tensor **p = (pt_tensor **)&w[l];
      for (size_t i = 0; i < sizeof(block_weights) / sizeof(pt_tensor *); i++) pt_zero_grad(p[i]);
    }
    pt_scope_end(s);
    if (step >= c.warmup) times[step - c.warmup] = pith_now_s() - t0;
  }
  int rc = 0;
  if (!pt_ok()) {
    fprintf(stderr, "pith bench blocks: %s\n", pt_error());
    rc = 1;
  } else {
    qsort(times, (size_t)c.steps, sizeof *times, cmp_double);
    double median = times[c.steps / 2];
    double tok_s = c.batch * c.seq / median;
    if (c.json)
      printf("{\"impl\": \"pith\", \"tokens_per_s\": %.1f, \"median_step_s\": %.6f, \"threads\": %d, \"loss\": %.6f}\n",
             tok_s, median, pt_num_threads(), loss);
    else
      printf("pith blocks: dim %d, %d layers, seq %d, batch %d, %d threads: %.0f tokens/s (median step %.1f ms)\n",
             c.dim, c.layers, c.seq, c.batch, pt_num_threads(), tok_s, median * 1e3);
  }
  for (int l = 0; l < c.layers; l++) {
    pt_tensor **p = (pt_tensor **)&w[l];
    for (size_t i = 0; i < sizeof(block_weights) / sizeof(pt_tensor *); i++) pt_free(p[i]);
  }
  pt_free(cos);
  pt_free(sin);
  pt_free(input);
  pt_gen_free(g);
  free(w);
  free(times);
  return rc;
}

static int bench_forward(int argc, char **argv) {
  const char *dir = NULL;
  int batch = 8, seq = 256, steps = 10, warmup = 3, threads = 0, json = 0, bf16 = 0;
  const cli_opt opts[] = {
      {"--model", CLI_STR, &dir, .metavar = "DIR", .flags = CLI_REQUIRED, .help = "a Hugging Face model folder"},
      {"--batch", CLI_INT, &batch, .metavar = "N", .min = 1, .max = CLI_INF, .help = "rows (default 8)"},
      {"--seq", CLI_INT, &seq, .metavar = "N", .min = 1, .max = CLI_INF, .help = "tokens a row (default 256)"},
      {"--steps", CLI_INT, &steps, .metavar = "N", .min = 1, .max = CLI_INF, .help = "timed steps (default 10)"},
      {"--warmup", CLI_INT, &warmup, .metavar = "N", .min = 0, .max = CLI_INF, .help = "untimed steps first (default 3)"},
      {"--threads", CLI_INT, &threads, .metavar = "N", .min = 0, .max = CLI_INF,
       .help = "CPU threads (default 0: libtorch's)"},
      {"--dtype", CLI_CHOICE, &bf16, .choices = "f32|bf16", .help = "weights and activations (default f32)"},
      {"--json", CLI_FLAG, &json, .help = "print one JSON object"},
  };
  const cli_spec spec = {
      "pith bench forward", CLI_OPTS(opts), .usage_on_error = 1,
      .about = "Times the forward pass (logits, no gradients) of the model in DIR on random token ids, on CPU.\n"
               "scripts/bench forward runs it next to transformers on the same folder.\n\n"};
  int code;
  if (cli_command(&spec, argc, argv, &code)) return code;
  pt_dtype dtype = bf16 ? PT_BF16 : PT_F32;
  if (threads > 0) pt_set_num_threads(threads);
  pith_err err;
  llama_model *m = hf_model_load(dir, dtype, PT_CPU, &err);
  if (!m) {
    fprintf(stderr, "pith bench forward: %s\n", err.msg);
    return 1;
  }
  pt_gen *g = pt_gen_new(99, PT_CPU);
  pt_tensor *ids = pt_keep(pt_to_dtype(pt_mul_scalar(pt_uniform(PT_SHAPE(batch, seq), 0, 1, PT_F32, PT_CPU, g),
                                                     m->cfg.vocab_size - 1), PT_I64));
  int was = pt_set_grad_enabled(0);
  double *times = calloc((size_t)steps, sizeof *times);
  int rc = 0;
  for (int step = 0; step < warmup + steps && rc == 0; step++) {
    double t0 = pith_now_s();
    pt_scope s = pt_scope_begin();
    llama_inputs in = {.ids = ids};
    llama_outputs out;
    rc = llama_forward(m, &in, &out, &err);
    if (rc == 0) pt_item(pt_sum(pt_slice(out.logits, 1, seq - 1, seq)));  // wait for the result
    pt_scope_end(s);
    if (step >= warmup) times[step - warmup] = pith_now_s() - t0;
  }
  pt_set_grad_enabled(was);
  if (rc) {
    fprintf(stderr, "pith bench forward: %s\n", err.msg);
  } else {
    qsort(times, (size_t)steps, sizeof *times, cmp_double);
    double median = times[steps / 2], tok_s = batch * seq / median;
    if (json)
      printf("{\"impl\": \"pith\", \"tokens_per_s\": %.1f, \"median_step_s\": %.6f, \"threads\": %d}\n", tok_s,
             median, pt_num_threads());
    else
      printf("pith forward: %s, batch %d, seq %d, %s, %d threads: %.0f tokens/s (median step %.1f ms)\n", dir, batch,
             seq, pt_dtype_name(dtype), pt_num_threads(), tok_s, median * 1e3);
  }
  free(times);
  pt_free(ids);
  pt_gen_free(g);
  llama_free(m);
  return rc ? 1 : 0;
}

// The process's peak resident memory so far (Linux reports ru_maxrss in KiB).
static int64_t peak_rss_bytes(void) {
  struct rusage ru;
  return getrusage(RUSAGE_SELF, &ru) == 0 ? (int64_t)ru.ru_maxrss * 1024 : -1;
}

static int bench_train_step(int argc, char **argv) {
  const char *dir = NULL, *shape = NULL, *device = "cpu";
  int k = 16, batch = 4, seq = 256, steps = 5, warmup = 2, rank = 64, threads = 0, json = 0, bf16 = 0, ckpt = 0, fused = 0;
  int chunk = 0;
  double peak = 0;
  const cli_opt opts[] = {
      {"--model", CLI_STR, &dir, .metavar = "DIR", .help = "a Hugging Face model folder"},
      {"--config", CLI_STR, &shape, .metavar = "FILE",
       .help = "a config.json instead: random weights of that shape, nothing to download\n"
               "(configs/llama3_8b_config.json is LLaMA-3-8B's)"},
      {"--k", CLI_INT, &k, .metavar = "N", .min = 1, .max = CLI_INF, .help = "compress tokens (default 16)"},
      {"--batch", CLI_INT, &batch, .metavar = "N", .min = 1, .max = CLI_INF, .help = "rows (default 4)"},
      {"--seq", CLI_INT, &seq, .metavar = "N", .min = 1, .max = CLI_INF, .help = "text tokens a row (default 256)"},
      {"--steps", CLI_INT, &steps, .metavar = "N", .min = 1, .max = CLI_INF, .help = "timed steps (default 5)"},
      {"--warmup", CLI_INT, &warmup, .metavar = "N", .min = 0, .max = CLI_INF, .help = "untimed steps first (default 2)"},
      {"--lora-rank", CLI_INT, &rank, .metavar = "N", .min = 1, .max = CLI_INF, .help = "LoRA rank (default 64)"},
      {"--threads", CLI_INT, &threads, .metavar = "N", .min = 0, .max = CLI_INF,
       .help = "CPU threads (default 0: libtorch's)"},
      {"--device", CLI_STR, &device, .metavar = "D", .help = "cpu (default), cuda or cuda:N"},
      {"--bf16", CLI_FLAG, &bf16,
       .help = "on CUDA: the model in bf16, LoRA and compress weights in f32 (as bf16: true)"},
      {"--peak-tflops", CLI_DOUBLE, &peak, .metavar = "X", .min = 0, .max = CLI_INF,
       .help = "the device's peak at the compute dtype: MFU from train_row_flops"},
      {"--gradient-checkpointing", CLI_FLAG, &ckpt,
       .help = "activation checkpointing (as gradient_checkpointing: true): the layers run\nagain in the backward pass"},
      {"--loss-chunk-rows", CLI_INT, &chunk, .metavar = "N", .min = 0, .max = CLI_INF,
       .help = "the LM head's loss N tokens at a time (as loss_chunk_rows; default 0: all)"},
      {"--fused-kernels", CLI_FLAG, &fused,
       .help = "RMSNorm, SwiGLU, RoPE, KV injection, dropout (and with --loss-chunk-rows the\ncross-entropy) as pith's "
               "fused ops (as fused_kernels: true); on the CPU their kernels'\none-thread references: for the memory "
               "they save, not speed"},
      {"--json", CLI_FLAG, &json, .help = "print one JSON object"},
  };
  const cli_spec spec = {
      "pith bench train-step", CLI_OPTS(opts), .usage_on_error = 1,
      .synopsis = "--model DIR | --config FILE.json [--k N] [--batch N] [--seq N] [--steps N] [--warmup N]"
                  " [--lora-rank N] [--threads N] [--device cpu|cuda|cuda:N] [--bf16] [--peak-tflops X]"
                  " [--gradient-checkpointing] [--loss-chunk-rows N] [--fused-kernels] [--json]",
      .about = "Times one 500xCompressor pretraining step (encoder with LoRA on q_proj and v_proj, decoder\n"
               "reading the compress K/V to regenerate the text, backward, AdamW), as pith pretrain runs it.\n"
               "Tokens/s counts encoder and decoder tokens. scripts/bench train-step runs it next to the same\n"
               "step in transformers + peft.\n\n",
      .epilog = "\nOn CUDA it also reports the caching allocator's peak memory over the run (weights included); on\n"
                "the CPU the process's peak resident memory. Launched by torchrun, every rank runs the step on\n"
                "its own device (NCCL on CUDA, Gloo on the CPU; one process forms a group of one) with the\n"
                "gradients all-reduced as the trainer does; rank 0 reports, tokens/s summed over the ranks.\n"};
  int code;
  if (cli_command(&spec, argc, argv, &code)) return code;
  if (!dir == !shape) return cli_usage_error(&spec, "give --model DIR or --config FILE.json (one of them)");
  if (threads > 0) pt_set_num_threads(threads);
  pith_err err = {{0}};
  pt_device dev;
  int bad = pt_device_parse(device, &dev, &err);
  if (bad) {
    fprintf(stderr, "pith bench train-step: --device %s\n", err.msg);
    return bad == -2 ? 1 : 2;
  }
  if (bf16 && dev == PT_CPU) {
    fprintf(stderr, "pith bench train-step: --bf16 needs --device cuda (CPU runs in f32)\n");
    return 2;
  }
  dist_ctx dc;  // torchrun's ranks, each on its own GPU; one process otherwise
  if (dist_init(&dc, &dev, &err)) {
    fprintf(stderr, "pith bench train-step: %s\n", err.msg);
    return 1;
  }
  if (!dist_main(&dc) && !freopen("/dev/null", "w", stdout)) return 1;  // rank 0 reports
  // On the CPU the fused ops run their kernels' CPU references: slow, but they save what the kernels
  // save for the backward pass, so the peak memory shows what fusing saves.
  if (fused && pt_set_fused_kernels(dev == PT_CPU ? PT_FUSED_TEST_CPU : PT_FUSED_ON)) {
    fprintf(stderr, "pith bench train-step: --fused-kernels: %s\n", pt_error());
    return 2;
  }
  pt_dtype dtype = bf16 ? PT_BF16 : PT_F32;
  llama_config mc;
  llama_model *m = shape ? (hf_config_load(shape, &mc, &err) ? NULL : llama_new_random(&mc, 1, dtype, dev, &err))
                         : hf_model_load(dir, dtype, dev, &err);
  if (!m) {
    fprintf(stderr, "pith bench train-step: %s\n", err.msg);
    return 1;
  }
  m->gradient_checkpointing = ckpt;
  m->loss_chunk_rows = chunk;
  comp_config cc = {.method = COMP_500X, .k = k, .positions = COMP_POS_REFERENCE};
  lora_config lc = {rank, 32, 0, (1u << LLAMA_PROJ_Q) | (1u << LLAMA_PROJ_V)};
  compressor *c = comp_new(m, cc, lc, 1, &err);
  pt_tensor *params[1024];
  int n = c ? comp_params(c, params, 1024) : 0;
  pt_adamw *opt = c ? pt_adamw_new(params, n, (pt_adamw_config){1e-4, 0.9, 0.999, 1e-8, 0}) : NULL;
  if (opt && (dist_broadcast(&dc, params, n, &err) || dist_overlap(&dc, params, n, &err)))
    pt_adamw_free(opt), opt = NULL;
  pt_gen *g = pt_gen_new(5, PT_CPU);
  // Random text of seq tokens; the decoder reads [text] and predicts it shifted (regeneration).
  pt_tensor *text = pt_keep(pt_to_device(
      pt_to_dtype(pt_mul_scalar(pt_uniform(PT_SHAPE(batch, seq), 0, 1, PT_F32, PT_CPU, g), m->cfg.vocab_size - 1),
                  PT_I64),
      dev));
  comp_batch b = {.text_ids = text, .dec_ids = text, .dec_targets = text};
  double *times = calloc((size_t)steps, sizeof *times), loss = NAN;
  int rc = opt ? 0 : -1;
  for (int step = 0; step < warmup + steps && rc == 0; step++) {
    double t0 = pith_now_s();
    pt_scope s = pt_scope_begin();
    pt_adamw_zero_grad(opt);
    pt_tensor *l = comp_cast_step(c) ? NULL : comp_loss(c, &b, NULL, &err);  // casts once a step, as the trainer
    rc = l && dist_arm(&dc, &err) == 0 && pt_backward(l) == 0 ? 0 : -1;
    comp_cast_step_end(c);
    rc = rc == 0 && dist_reduce_grads(&dc, params, n, 1.0 / dc.world, &err) == 0 && pt_adamw_step(opt) == 0 ? 0 : -1;
    if (rc == 0) loss = pt_item(l);
    pt_scope_end(s);
    if (step >= warmup) times[step - warmup] = pith_now_s() - t0;
  }
  if (rc) {
    fprintf(stderr, "pith bench train-step: %s\n", err.msg[0] ? err.msg : pt_error());
  } else {
    qsort(times, (size_t)steps, sizeof *times, cmp_double);
    double median = times[steps / 2], tok_s = 2.0 * batch * seq * dc.world / median;
    // Model FLOPs of a rank's step (the encoder reads seq + k tokens, the decoder seq after k prefix
    // K/V) over its own device's peak.
    double mfu = peak > 0 ? batch * train_row_flops(&m->cfg, 0, seq + k, seq, k) / median / (peak * 1e12) : -1;
    double allreduce_bytes = 0;  // what each step sends through the all-reduce, to estimate scaling from
    for (int i = 0; i < n; i++) allreduce_bytes += 4.0 * (double)pt_numel(params[i]);
    // Peak over the whole run: frozen weights, activations, gradients and optimizer state.
    int64_t peak_alloc, peak_reserved, peak_rss = dev == PT_CPU ? peak_rss_bytes() : -1;
    pt_cuda_peak_bytes(dev, &peak_alloc, &peak_reserved);
    if (json) {
      printf("{\"impl\": \"pith\", \"tokens_per_s\": %.1f, \"median_step_s\": %.6f, \"loss\": %.6f", tok_s, median,
             loss);
      if (mfu >= 0) printf(", \"mfu\": %.6f", mfu);
      if (peak_alloc >= 0)
        printf(", \"peak_allocated_bytes\": %lld, \"peak_reserved_bytes\": %lld", (long long)peak_alloc,
               (long long)peak_reserved);
      if (peak_rss >= 0) printf(", \"peak_rss_bytes\": %lld", (long long)peak_rss);
      printf(", \"gradient_checkpointing\": %s, \"fused_kernels\": %s, \"world_size\": %d, \"process_group\": %s",
             ckpt ? "true" : "false", fused ? "true" : "false", dc.world, dc.pg ? "true" : "false");
      if (dc.pg) printf(", \"allreduce_bytes\": %.0f", allreduce_bytes);
      printf("}\n");
    } else {
      printf("pith train-step: 500x k=%d, batch %d, seq %d, %s %s: %.0f tokens/s (median step %.1f ms), last loss %.6f",
             k, batch, seq, device, dtype == PT_BF16 ? "bf16" : "f32", tok_s, median * 1e3, loss);
      if (mfu >= 0) printf(", MFU %.1f%%", 100 * mfu);
      if (peak_alloc >= 0)
        printf(", peak memory %.1f GiB allocated (%.1f GiB reserved)", peak_alloc / 1073741824.0,
               peak_reserved / 1073741824.0);
      if (peak_rss >= 0) printf(", peak RSS %.0f MiB", peak_rss / 1048576.0);
      if (ckpt) printf(", layers checkpointed");
      if (chunk) printf(", loss %lld tokens at a time", (long long)chunk);
      if (fused) printf(", fused kernels");
      if (dc.pg)
        printf(", %d rank%s (torch.distributed), all-reducing %.1f MB of f32 gradients a step", dc.world,
               dc.world > 1 ? "s" : "", allreduce_bytes / 1e6);
      printf("\n");
    }
  }
  free(times);
  pt_free(text);
  pt_gen_free(g);
  pt_adamw_free(opt);
  comp_free(c);
  llama_free(m);
  dist_close(&dc, rc != 0);
  return rc ? 1 : 0;
}

// Every weight of the scorer trainable (distill's default finetuning_type full), collected for AdamW.
typedef struct {
  pt_tensor **params;
  int n, cap;
} param_list;

static int collect_param(const char *name, pt_tensor **slot, pt_shape shape, void *vctx) {
  (void)name, (void)shape;
  param_list *l = vctx;
  if (l->n == l->cap || pt_set_requires_grad(*slot, 1)) return -1;
  l->params[l->n++] = *slot;
  return 0;
}

static int bench_distill_step(int argc, char **argv) {
  const char *target_dir = NULL, *scorer_dir = NULL;
  int batch = 8, seq = 256, steps = 5, warmup = 2, threads = 0, json = 0;
  double temperature = 1.0;
  const cli_opt opts[] = {
      {"--target", CLI_STR, &target_dir, .metavar = "DIR", .flags = CLI_REQUIRED,
       .help = "the target: a Hugging Face causal LM folder"},
      {"--scorer", CLI_STR, &scorer_dir, .metavar = "DIR", .flags = CLI_REQUIRED,
       .help = "the scorer being aligned: a smaller one with the target's vocabulary"},
      {"--batch", CLI_INT, &batch, .metavar = "N", .min = 1, .max = CLI_INF, .help = "rows (default 8)"},
      {"--seq", CLI_INT, &seq, .metavar = "N", .min = 2, .max = CLI_INF, .help = "tokens a row (default 256)"},
      {"--temperature", CLI_DOUBLE, &temperature, .metavar = "T", .min = 1e-6, .max = CLI_INF,
       .help = "distillation temperature (default 1)"},
      {"--steps", CLI_INT, &steps, .metavar = "N", .min = 1, .max = CLI_INF, .help = "timed steps (default 5)"},
      {"--warmup", CLI_INT, &warmup, .metavar = "N", .min = 0, .max = CLI_INF, .help = "untimed steps first (default 2)"},
      {"--threads", CLI_INT, &threads, .metavar = "N", .min = 0, .max = CLI_INF,
       .help = "CPU threads (default 0: libtorch's)"},
      {"--json", CLI_FLAG, &json, .help = "print one JSON object"},
  };
  const cli_spec spec = {
      "pith bench distill-step", CLI_OPTS(opts), .usage_on_error = 1,
      .about = "Times one `pith distill` method kl step on CPU, f32, as the trainer runs it: the target's logits\n"
               "without gradients, the scorer's with, KL(target || scorer) per token at the temperature (times\n"
               "T^2), backward, gradient clipping at 1.0, AdamW on every scorer weight (finetuning_type full).\n"
               "Tokens/s counts the batch's tokens. scripts/bench distill runs it next to the same step in\n"
               "PyTorch + transformers.\n\n"};
  int code;
  if (cli_command(&spec, argc, argv, &code)) return code;
  if (threads > 0) pt_set_num_threads(threads);
  pith_err err = {{0}};
  llama_model *target = hf_model_load(target_dir, PT_F32, PT_CPU, &err);
  llama_model *scorer = target ? hf_model_load(scorer_dir, PT_F32, PT_CPU, &err) : NULL;
  if (!scorer) {
    fprintf(stderr, "pith bench distill-step: %s\n", err.msg);
    llama_free(target);
    return 1;
  }
  int rc = 0;
  if (scorer->cfg.vocab_size != target->cfg.vocab_size) {
    fprintf(stderr, "pith bench distill-step: the scorer's vocab_size %d is not the target's %d\n",
            scorer->cfg.vocab_size, target->cfg.vocab_size);
    rc = -2;
  }
  pt_tensor *slots[4096];
  param_list pl = {slots, 0, 4096};
  if (!rc && llama_visit_weights(scorer, collect_param, &pl)) {
    fprintf(stderr, "pith bench distill-step: the scorer's weights: %s\n", pt_ok() ? "too many tensors" : pt_error());
    rc = -2;
  }
  pt_adamw *opt = rc ? NULL : pt_adamw_new(pl.params, pl.n, (pt_adamw_config){1e-4, 0.9, 0.999, 1e-8, 0});
  pt_gen *g = pt_gen_new(5, PT_CPU);
  pt_tensor *text = pt_keep(pt_to_dtype(
      pt_mul_scalar(pt_uniform(PT_SHAPE(batch, seq), 0, 1, PT_F32, PT_CPU, g), target->cfg.vocab_size - 1), PT_I64));
  comp_batch b = {.dec_ids = text, .dec_targets = text};  // every position is scored
  double *times = calloc((size_t)steps, sizeof *times), loss = NAN;
  if (!rc && !opt) rc = -1;
  for (int step = 0; step < warmup + steps && rc == 0; step++) {
    double t0 = pith_now_s();
    pt_scope s = pt_scope_begin();
    pt_adamw_zero_grad(opt);
    pt_tensor *l = distill_kl_loss(target, scorer, NULL, NULL, &b, temperature, &err);
    rc = l && pt_backward(l) == 0 ? 0 : -1;
    if (rc == 0) pt_clip_grad_norm(pl.params, pl.n, 1.0);
    rc = rc == 0 && pt_adamw_step(opt) == 0 ? 0 : -1;
    if (rc == 0) loss = pt_item(l);
    pt_scope_end(s);
    if (step >= warmup) times[step - warmup] = pith_now_s() - t0;
  }
  if (rc == -1) {
    fprintf(stderr, "pith bench distill-step: %s\n", err.msg[0] ? err.msg : pt_error());
  } else if (rc == 0) {
    qsort(times, (size_t)steps, sizeof *times, cmp_double);
    double median = times[steps / 2], tok_s = (double)batch * seq / median;
    if (json)
      printf("{\"impl\": \"pith\", \"tokens_per_s\": %.1f, \"median_step_s\": %.6f, \"threads\": %d, \"loss\": %.6f}\n",
             tok_s, median, pt_num_threads(), loss);
    else
      printf("pith distill-step: kl at T %g, batch %d, seq %d, %d threads: %.0f tokens/s (median step %.1f ms)\n",
             temperature, batch, seq, pt_num_threads(), tok_s, median * 1e3);
  }
  free(times);
  pt_free(text);
  pt_gen_free(g);
  pt_adamw_free(opt);
  llama_free(scorer);
  llama_free(target);
  return rc ? 1 : 0;
}

int cmd_bench(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
    FILE *out = argc < 2 ? stderr : stdout;
    fprintf(out, "usage: pith bench WHAT [OPTIONS]\n\n"
                 "  blocks    forward+backward of LLaMA-style blocks through the shim\n"
                 "  forward   inference forward of a Hugging Face model folder\n"
                 "  train-step  one 500x training step on a model folder\n"
                 "  distill-step  one pith distill kl step (target and scorer folders)\n");
    return argc < 2 ? 2 : 0;
  }
  if (!strcmp(argv[1], "blocks")) return bench_blocks(argc - 1, argv + 1);
  if (!strcmp(argv[1], "forward")) return bench_forward(argc - 1, argv + 1);
  if (!strcmp(argv[1], "train-step")) return bench_train_step(argc - 1, argv + 1);
  if (!strcmp(argv[1], "distill-step")) return bench_distill_step(argc - 1, argv + 1);
  fprintf(stderr, "pith bench: unknown benchmark '%s' (try --help)\n", argv[1]);
  return 2;
}
