// hf_folder: model folders' weights (model.safetensors or shards) in and out; config.json is
// hf_config.c's.
#include "hf_folder.h"

#include <cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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
  const char *dir;
  pt_dtype dtype;
  pt_device dev;
  pith_err *err;
} load_ctx;

static int load_weight(const char *name, pt_tensor **slot, pt_shape shape, void *vctx) {
  load_ctx *ctx = vctx;
  const st_tensor *t = st_set_find(ctx->set, name);
  if (!t) return pith_fail(ctx->err, "%s: tensor '%s' is missing", ctx->dir, name);
  int same = t->ndim == shape.ndim;
  for (int i = 0; same && i < shape.ndim; i++) same = t->shape[i] == shape.d[i];
  if (!same)
    return pith_fail(ctx->err, "%s: tensor '%s' has a shape other than config.json implies", ctx->dir, name);
  pt_dtype stored;
  if (pt_of_st(t->dtype, &stored))
    return pith_fail(ctx->err, "%s: tensor '%s' is %s (F32, BF16 or F16 expected)", ctx->dir, name, st_dtype_name(t->dtype));
  pt_scope s = pt_scope_begin();
  pt_tensor *x = pt_to_device(pt_to_dtype(pt_from_data(t->data, stored, shape, PT_CPU), ctx->dtype), ctx->dev);
  *slot = pt_keep(pt_scope_return(s, x));
  if (!x) {
    pt_fail(ctx->err, "%s: tensor '%s'", ctx->dir, name);
    return -1;
  }
  return 0;
}

llama_model *hf_model_load(const char *dir, pt_dtype dtype, pt_device dev, pith_err *err) {
  char path[4096];
  snprintf(path, sizeof path, "%s/config.json", dir);
  llama_config cfg;
  if (hf_config_load(path, &cfg, err)) return NULL;
  st_set *set = st_set_open(dir, err);
  if (!set) return NULL;
  llama_model *m = llama_alloc(&cfg, dtype, dev, err);
  load_ctx ctx = {set, dir, dtype, dev, err};
  if (m && (llama_visit_weights(m, load_weight, &ctx) || llama_check_weights(m, err))) {
    llama_free(m);
    m = NULL;
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
  int rc = pt_to_data(*slot, buf, nbytes);
  if (rc) {
    pt_fail(ctx->err, "save %s", name);
  } else {
    rc = st_writer_add(ctx->w, name, ctx->dtype, shape.ndim, shape.d, buf, ctx->err);
  }
  free(buf);
  return rc;
}

int hf_model_save(const llama_model *m, const char *dir, pith_err *err) {
  if (mkdir(dir, 0755) != 0 && errno != EEXIST) return pith_fail(err, "%s: cannot create: %s", dir, strerror(errno));
  char path[4096];
  snprintf(path, sizeof path, "%s/config.json", dir);
  char *json = hf_config_json(&m->cfg, m->dtype);
  int rc = pith_write_file_atomic(path, json, strlen(json), err);
  free(json);
  if (rc) return -1;
  save_ctx ctx = {st_writer_new(), m->dtype == PT_BF16 ? ST_BF16 : m->dtype == PT_F16 ? ST_F16 : ST_F32, err};
  st_writer_set_metadata(ctx.w, "format", "pt", err);
  rc = llama_visit_weights((llama_model *)m, save_weight, &ctx);
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  if (!rc) rc = st_writer_finish(ctx.w, path, err);
  st_writer_free(ctx.w);
  return rc;
}

static int copy_file(const char *from, const char *to, pith_err *err) {
  size_t n;
  char *buf = pith_read_file(from, &n, err);
  if (!buf) return -1;
  int rc = pith_write_file_atomic(to, buf, n, err);
  free(buf);
  return rc;
}

int hf_model_save_with_tokenizer(const llama_model *m, const tokenizer *tok, const char *dir, pith_err *err) {
  if (hf_model_save(m, dir, err)) return -1;
  const char *const *files;
  int n = tokenizer_source_files(tok, &files);
  char to[4096];
  for (int i = 0; i < n; i++) {
    const char *base = strrchr(files[i], '/') ? strrchr(files[i], '/') + 1 : files[i];
    if (snprintf(to, sizeof to, "%s/%s", dir, base) >= (int)sizeof to) return pith_fail(err, "%s: path too long", dir);
    if (strcmp(base, "config.json") && copy_file(files[i], to, err)) return -1;
  }
  return 0;
}
