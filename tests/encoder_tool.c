// encoder_tool: the C side of tests/reference/encoder_parity.py.
//
//   encoder_tool make DIR SEED [bf16]   random weights for DIR/config.json (f32, or bf16), saved into
//                                       DIR by pith (config.json rewritten the way pith writes it)
//   encoder_tool forward DIR IN OUT     forward + backward on the inputs in IN (safetensors), writing
//                                       logits, hidden, loss and grad.NAME for every weight
//   encoder_tool time DIR B T N [bf16]  N forward passes without autograd on (B, T) random ids after
//                                       one warm-up: prints the median milliseconds (for comparisons)
//
// IN holds: ids (B,T) i64; optional mask (B,T) u8 and token_types (B,T) i64; loss_w (B,T,num_labels):
// loss = sum(logits * loss_w). Metadata dtype=bf16 computes in bf16 (the default is f32). OUT is f32.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "encoder_folder.h"
#include "safetensors.h"

static void die(const char *what, const char *msg) {
  fprintf(stderr, "encoder_tool: %s: %s\n", what, msg);
  exit(1);
}

static pt_tensor *load(const st_file *f, const char *name, int required) {
  const st_tensor *t = st_find(f, name);
  if (!t) {
    if (required) die(name, "missing from the input file");
    return NULL;
  }
  if (t->dtype != ST_I64 && t->dtype != ST_U8 && t->dtype != ST_BOOL && t->dtype != ST_F32) die(name, "unexpected dtype");
  pt_dtype dt = t->dtype == ST_I64 ? PT_I64 : t->dtype == ST_F32 ? PT_F32 : PT_BOOL;
  pt_shape s = {t->ndim, {0}};
  for (int i = 0; i < t->ndim; i++) s.d[i] = t->shape[i];
  return pt_from_data(t->data, dt, s, PT_CPU);  // in the arena: freed with the thread
}

static void add(st_writer *w, const char *name, const pt_tensor *t) {
  pith_err err;
  if (!t) die(name, "no tensor to write");
  pt_tensor *f = pt_contiguous(pt_to_dtype(pt_detach(t), PT_F32));
  pt_shape s = pt_shape_of(f);
  size_t n = (size_t)pt_numel(f) * 4;
  float *buf = malloc(n ? n : 1);
  if (pt_to_data(f, buf, n)) die(name, pt_error());
  if (st_writer_add(w, name, ST_F32, s.ndim, s.d, buf, &err)) die(name, err.msg);
  free(buf);
}

static int cmd_make(const char *dir, uint64_t seed, pt_dtype dtype) {
  pith_err err;
  char path[4096];
  snprintf(path, sizeof path, "%s/config.json", dir);
  encoder_config cfg;
  if (encoder_config_load(path, &cfg, &err)) die("config", err.msg);
  encoder_model *m = encoder_new_random(&cfg, seed, dtype, PT_CPU, &err);
  if (!m) die("random model", err.msg);
  if (encoder_folder_save(m, dir, &err)) die("save", err.msg);
  encoder_free(m);
  return 0;
}

typedef struct {
  st_writer *w;
} grads_ctx;

static int add_grad(const char *name, pt_tensor **slot, pt_shape shape, void *vctx) {
  grads_ctx *ctx = vctx;
  char key[300];
  snprintf(key, sizeof key, "grad.%s", name);
  pt_tensor *g = pt_grad(*slot);
  add(ctx->w, key, g ? g : pt_zeros(shape, PT_F32, PT_CPU));
  return 0;
}

static int cmd_forward(const char *dir, const char *in_path, const char *out_path) {
  pith_err err;
  st_file *f = st_open(in_path, &err);
  if (!f) die("inputs", err.msg);
  const char *dt = st_metadata(f, "dtype");
  pt_dtype dtype = dt && !strcmp(dt, "bf16") ? PT_BF16 : PT_F32;
  encoder_model *m = encoder_folder_load(dir, dtype, PT_CPU, NULL, &err);
  if (!m) die("load", err.msg);
  if (encoder_set_trainable(m, 1)) die("trainable", pt_error());
  encoder_inputs in = {.ids = load(f, "ids", 1), .mask = load(f, "mask", 0), .token_types = load(f, "token_types", 0),
                       .want_hidden = 1};
  encoder_outputs out;
  if (encoder_forward(m, &in, &out, &err)) die("forward", err.msg);
  pt_tensor *loss = pt_sum(pt_mul(pt_to_dtype(out.logits, PT_F32), load(f, "loss_w", 1)));
  if (pt_backward(loss)) die("backward", pt_error());
  st_writer *w = st_writer_new();
  add(w, "logits", out.logits);
  add(w, "hidden", out.hidden);
  add(w, "loss", loss);
  grads_ctx ctx = {w};
  encoder_visit_weights(m, add_grad, &ctx);
  if (st_writer_finish(w, out_path, &err)) die("write", err.msg);
  st_writer_free(w);
  st_close(f);
  encoder_free(m);
  return 0;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static int cmd_time(const char *dir, int64_t B, int64_t T, int n, pt_dtype dtype) {
  pith_err err;
  encoder_model *m = encoder_folder_load(dir, dtype, PT_CPU, NULL, &err);
  if (!m) die("load", err.msg);
  pt_set_grad_enabled(0);
  pt_gen *g = pt_gen_new(1, PT_CPU);
  double *ms = calloc((size_t)n, sizeof *ms);
  for (int i = -1; i < n; i++) {
    pt_scope s = pt_scope_begin();
    pt_tensor *ids = pt_to_dtype(pt_uniform(PT_SHAPE(B, T), 3, m->cfg.vocab_size - 1, PT_F32, PT_CPU, g), PT_I64);
    encoder_inputs in = {.ids = ids};
    encoder_outputs out;
    double t0 = pith_now_s();
    if (encoder_forward(m, &in, &out, &err)) die("forward", err.msg);
    pt_item(pt_sum(pt_to_dtype(out.logits, PT_F32)));  // the result is read, so it was computed
    if (i >= 0) ms[i] = (pith_now_s() - t0) * 1e3;
    pt_scope_end(s);
  }
  qsort(ms, (size_t)n, sizeof *ms, cmp_double);
  printf("%.3f\n", ms[n / 2]);
  free(ms);
  pt_gen_free(g);
  encoder_free(m);
  return 0;
}

int main(int argc, char **argv) {
  pt_set_num_threads(2);
  if ((argc == 4 || argc == 5) && !strcmp(argv[1], "make"))
    return cmd_make(argv[2], strtoull(argv[3], NULL, 10), argc == 5 && !strcmp(argv[4], "bf16") ? PT_BF16 : PT_F32);
  if (argc == 5 && !strcmp(argv[1], "forward")) return cmd_forward(argv[2], argv[3], argv[4]);
  if ((argc == 6 || argc == 7) && !strcmp(argv[1], "time") && atoi(argv[5]) > 0)
    return cmd_time(argv[2], atoll(argv[3]), atoll(argv[4]), atoi(argv[5]),
                    argc == 7 && !strcmp(argv[6], "bf16") ? PT_BF16 : PT_F32);
  fprintf(stderr, "usage: encoder_tool make DIR SEED [bf16] | encoder_tool forward DIR IN OUT | "
                  "encoder_tool time DIR B T N [bf16]\n");
  return 2;
}
