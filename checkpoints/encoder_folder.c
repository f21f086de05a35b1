// encoder_folder: the weights of encoder folders in and out; config.json is encoder_hf_config.c's.
#include "encoder_folder.h"

#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

static int pt_of_st(st_dtype d, pt_dtype *out) {
  switch (d) {
    case ST_F32: *out = PT_F32; return 0;
    case ST_BF16: *out = PT_BF16; return 0;
    case ST_F16: *out = PT_F16; return 0;
    default: return -1;
  }
}

typedef struct {
  const st_set *set;
  const char *file;  // what errors name: model.safetensors or the shard index
  const char *prefix;
  pt_dtype dtype;
  pt_device dev;
  int new_head;
  pt_gen *gen;
  pith_err *err;
} load_ctx;

// A tensor by its transformers name, or by the names older or bare checkpoints use: without the
// "bert." / "roberta." prefix (a BertModel saved alone) and LayerNorm.gamma / .beta (checkpoints
// converted from TensorFlow).
static const st_tensor *find_tensor(const load_ctx *ctx, const char *name) {
  const st_tensor *t = st_set_find(ctx->set, name);
  size_t pl = strlen(ctx->prefix);
  const char *bare = !strncmp(name, ctx->prefix, pl) && name[pl] == '.' ? name + pl + 1 : NULL;
  if (!t && bare) t = st_set_find(ctx->set, bare);
  char old[300];
  const char *ln = strstr(name, "LayerNorm.");
  if (!t && ln) {
    int w = !strcmp(ln, "LayerNorm.weight");
    snprintf(old, sizeof old, "%.*s%s", (int)(ln - name), name, w ? "LayerNorm.gamma" : "LayerNorm.beta");
    t = st_set_find(ctx->set, old);
    if (!t && bare) t = st_set_find(ctx->set, old + pl + 1);
  }
  return t;
}

// A new classifier's weight (normal, std 0.02) or bias (zero).
static int draw_head(load_ctx *ctx, const char *name, pt_tensor **slot, pt_shape shape) {
  pt_scope s = pt_scope_begin();
  pt_tensor *x = strstr(name, "weight") ? pt_mul_scalar(pt_randn(shape, PT_F32, ctx->dev, ctx->gen), 0.02)
                                        : pt_zeros(shape, PT_F32, ctx->dev);
  x = pt_to_dtype(x, ctx->dtype);
  *slot = pt_keep(pt_scope_return(s, x));
  return x ? 0 : pt_fail(ctx->err, "%s: new head %s", ctx->file, name);
}

static int load_weight(const char *name, pt_tensor **slot, pt_shape shape, void *vctx) {
  load_ctx *ctx = vctx;
  const st_tensor *t = find_tensor(ctx, name);
  if (!t && ctx->new_head && !strncmp(name, "classifier.", 11)) return draw_head(ctx, name, slot, shape);
  if (!t) return pith_fail(ctx->err, "%s: tensor '%s' is missing", ctx->file, name);
  int same = t->ndim == shape.ndim;
  for (int i = 0; same && i < shape.ndim; i++) same = t->shape[i] == shape.d[i];
  if (!same) {
    char want[96] = "", got[96] = "";
    for (int i = 0; i < shape.ndim; i++)
      snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", i ? "," : "", (long long)shape.d[i]);
    for (int i = 0; i < t->ndim; i++)
      snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", i ? "," : "", (long long)t->shape[i]);
    return pith_fail(ctx->err, "%s: tensor '%s' is [%s], config.json implies [%s]", ctx->file, t->name, got, want);
  }
  pt_dtype stored;
  if (pt_of_st(t->dtype, &stored))
    return pith_fail(ctx->err, "%s: tensor '%s' is %s (F32, BF16 or F16 expected)", ctx->file, t->name,
                     st_dtype_name(t->dtype));
  pt_scope s = pt_scope_begin();
  pt_tensor *x = pt_to_device(pt_to_dtype(pt_from_data(t->data, stored, shape, PT_CPU), ctx->dtype), ctx->dev);
  *slot = pt_keep(pt_scope_return(s, x));
  if (!x) return pt_fail(ctx->err, "%s: tensor '%s'", ctx->file, t->name);
  return 0;
}

encoder_model *encoder_folder_load(const char *dir, pt_dtype dtype, pt_device dev, const encoder_load_opts *opts,
                                   pith_err *err) {
  char path[4096];
  if (pith_path_join(path, sizeof path, dir, "config.json")) {
    pith_fail(err, "%s: path too long", dir);
    return NULL;
  }
  encoder_config cfg;
  if (encoder_config_load(path, &cfg, err)) return NULL;
  if (opts && opts->num_labels > 0) {
    if (opts->num_labels > ENCODER_MAX_LABELS) {
      pith_fail(err, "%s: %d labels asked for, at most %d are supported", dir, opts->num_labels, ENCODER_MAX_LABELS);
      return NULL;
    }
    cfg.num_labels = opts->num_labels;
    memset(cfg.labels, 0, sizeof cfg.labels);
  }
  st_set *set = st_set_open(dir, err);
  if (!set) return NULL;
  char file[4096];
  if (st_set_nfiles(set) == 1) snprintf(file, sizeof file, "%s", st_path(st_set_file(set, 0)));
  else snprintf(file, sizeof file, "%s/model.safetensors.index.json", dir);
  encoder_model *m = encoder_alloc(&cfg, dtype, dev, err);
  load_ctx ctx = {set, file, encoder_weight_prefix(cfg.arch), dtype, dev, opts && opts->new_head, NULL, err};
  if (m) {
    if (ctx.new_head) ctx.gen = pt_gen_new(opts->seed, dev);
    // The pooler (bert.pooler.dense.*) and any MLM head in the files are never asked for, so they
    // are left where they are: a token classifier has no use for them.
    if (encoder_visit_weights(m, load_weight, &ctx) || encoder_check_weights(m, err)) {
      encoder_free(m);
      m = NULL;
    }
    pt_gen_free(ctx.gen);
  }
  st_set_close(set);
  return m;
}

typedef struct {
  st_writer *w;
  st_dtype dtype;
  pith_err *err;
} save_ctx;

static int save_weight(const char *name, pt_tensor **slot, pt_shape shape, void *vctx) {
  save_ctx *ctx = vctx;
  size_t nbytes = (size_t)pt_numel(*slot) * st_dtype_size(ctx->dtype);
  void *buf = malloc(nbytes ? nbytes : 1);
  pt_scope s = pt_scope_begin();
  int rc = pt_to_data(pt_contiguous(pt_detach(*slot)), buf, nbytes);
  pt_scope_end(s);
  if (rc) rc = pt_fail(ctx->err, "save %s", name);
  else rc = st_writer_add(ctx->w, name, ctx->dtype, shape.ndim, shape.d, buf, ctx->err);
  free(buf);
  return rc;
}

int encoder_folder_save(const encoder_model *m, const char *dir, pith_err *err) {
  if (pith_mkdirs(dir, err)) return -1;
  char path[4096];
  if (pith_path_join(path, sizeof path, dir, "config.json")) return pith_fail(err, "%s: path too long", dir);
  char *json = encoder_config_json(&m->cfg, m->dtype);
  size_t n = strlen(json);
  json = realloc(json, n + 2);
  json[n] = '\n';  // a final newline, as transformers writes it
  json[n + 1] = 0;
  int rc = pith_write_file_atomic(path, json, n + 1, err);
  free(json);
  if (rc) return -1;
  save_ctx ctx = {st_writer_new(), m->dtype == PT_BF16 ? ST_BF16 : m->dtype == PT_F16 ? ST_F16 : ST_F32, err};
  st_writer_set_metadata(ctx.w, "format", "pt", err);
  rc = encoder_visit_weights((encoder_model *)m, save_weight, &ctx);
  if (!rc && pith_path_join(path, sizeof path, dir, "model.safetensors")) rc = pith_fail(err, "%s: path too long", dir);
  if (!rc) rc = st_writer_finish(ctx.w, path, err);
  st_writer_free(ctx.w);
  return rc;
}

int encoder_folder_save_with_files(const encoder_model *m, const char *dir, const char *const *files, int n,
                                   pith_err *err) {
  if (encoder_folder_save(m, dir, err)) return -1;
  char to[4096];
  for (int i = 0; i < n; i++) {
    const char *base = pith_base_name(files[i]);
    if (!*base || !strcmp(base, "config.json")) continue;
    if (pith_path_join(to, sizeof to, dir, base)) return pith_fail(err, "%s: path too long", dir);
    size_t len;
    char *buf = pith_read_file(files[i], &len, err);
    if (!buf) return -1;
    int rc = pith_write_file_atomic(to, buf, len, err);
    free(buf);
    if (rc) return -1;
  }
  return 0;
}
