// export: checkpoint → PEFT adapter + compress embeddings + manifest, and back into a compressor.
#include "export.h"

#include <cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cjson_file.h"
#include "run_config.h"
#include "safetensors.h"
#include "sha256.h"
#include "train_state.h"

#define EX_PATH 4096

static const char *const F_ADAPTER_CONFIG = "adapter_config.json";
static const char *const F_ADAPTER = "adapter_model.safetensors";
static const char *const F_COMPRESS = "compress.safetensors";

// ---- small file-system helpers ------------------------------------------------------------------

static int exists(const char *path) {
  struct stat st;
  return lstat(path, &st) == 0;
}

// a/b into out (EX_PATH bytes). Entry points refuse paths longer than EX_MAX_INPUT, so this fits.
#define EX_MAX_INPUT 3000
static void pjoin(char *out, const char *a, const char *b) {
  if (snprintf(out, EX_PATH, "%s/%s", a, b) >= EX_PATH) out[EX_PATH - 1] = 0;
}

static int check_len(const char *path, pith_err *err) {
  return strlen(path) > EX_MAX_INPUT ? pith_fail(err, "%.64s...: path longer than %d bytes", path, EX_MAX_INPUT) : 0;
}

// The folder holding path (for fsync after a rename): "." when it has no slash.
static void parent_of(const char *path, char *out, size_t len) {
  snprintf(out, len, "%s", path);
  size_t n = strlen(out);
  while (n > 1 && out[n - 1] == '/') out[--n] = 0;
  char *slash = strrchr(out, '/');
  if (!slash) snprintf(out, len, ".");
  else if (slash == out) out[1] = 0;
  else *slash = 0;
}

// ---- export -------------------------------------------------------------------------------------

// PEFT's module path of projection p in layer l.
static void peft_key(char *out, size_t len, int layer, int p, char ab) {
  const char *block = p <= LLAMA_PROJ_O ? "self_attn" : "mlp";
  snprintf(out, len, "base_model.model.model.layers.%d.%s.%s.lora_%c.weight", layer, block, LLAMA_PROJ_NAMES[p], ab);
}

static int proj_of(const char *name) {
  for (int p = 0; p < LLAMA_N_PROJ; p++)
    if (!strcmp(name, LLAMA_PROJ_NAMES[p])) return p;
  return -1;
}

// Copy a tensor of src into w under name, in its own dtype.
static int copy_tensor(st_writer *w, const char *name, const st_tensor *t, pith_err *err) {
  return st_writer_add(w, name, t->dtype, t->ndim, t->shape, t->data, err);
}

static int add_file_size(cJSON *files, const char *dir, const char *name, pith_err *err) {
  char p[EX_PATH];
  struct stat st;
  pjoin(p, dir, name);
  if (stat(p, &st) != 0) return pith_fail(err, "%s: %s", p, strerror(errno));
  cJSON_AddNumberToObject(files, name, (double)st.st_size);
  return 0;
}

// Resolve SRC into a checkpoint folder.
static int find_checkpoint(const char *src, char *ckpt, size_t len, pith_err *err) {
  char p[EX_PATH];
  if (!pith_is_dir(src)) return pith_fail(err, "%s: no such run or checkpoint folder", src);
  pjoin(p, src, TRAIN_STATE_DONE);
  if (exists(p)) {
    snprintf(ckpt, len, "%s", src);
    return 0;
  }
  int found = train_state_latest(src, ckpt, len, err);
  if (found < 0) return -1;
  if (found == 1)
    return pith_fail(err, "%s: no complete checkpoint to export (neither a checkpoint folder with %s nor a run "
                          "folder with checkpoints/step-N/)", src, TRAIN_STATE_DONE);
  return 0;
}

typedef struct {
  const char *ckpt;
  run_config *cfg;  // the run's config.yaml, read without a schema
  char *cfg_text;
  st_file *params;
  int64_t step;
  comp_config comp;
  lora_config lora;
  int n_layers, dim;
} source;

static int read_source(source *s, pith_err *err) {
  char p[EX_PATH];
  pjoin(p, s->ckpt, "config.yaml");
  size_t n;
  s->cfg_text = pith_read_file(p, &n, err);
  if (!s->cfg_text) return -1;
  s->cfg = run_config_new();
  if (!s->cfg) return pith_fail(err, "%s: out of memory", p);
  if (run_config_load(s->cfg, p, err)) return -1;
  const char *need[] = {"model_name_or_path", "method", "num_compress_tokens", "lora_rank", "lora_alpha", "lora_target"};
  for (size_t i = 0; i < sizeof need / sizeof need[0]; i++)
    if (!run_config_get_raw(s->cfg, need[i]))
      return pith_fail(err, "%s: no '%s' (not a compressor run config?)", p, need[i]);
  const char *method = run_config_get_raw(s->cfg, "method");
  const char *pos = run_config_get_raw(s->cfg, "position_policy");
  if (!strcmp(method, "500x")) s->comp.method = COMP_500X;
  else if (!strcmp(method, "icae")) s->comp.method = COMP_ICAE;
  else return pith_fail(err, "%s: method '%s' is not 500x or icae", p, method);
  s->comp.positions = pos && !strcmp(pos, "reference") ? COMP_POS_REFERENCE : COMP_POS_CONSISTENT;
  s->comp.k = atoi(run_config_get_raw(s->cfg, "num_compress_tokens"));
  s->lora.rank = atoi(run_config_get_raw(s->cfg, "lora_rank"));
  s->lora.alpha = atof(run_config_get_raw(s->cfg, "lora_alpha"));
  const char *dropout = run_config_get_raw(s->cfg, "lora_dropout");
  s->lora.dropout = dropout ? atof(dropout) : 0;
  unsigned cfg_targets;
  if (lora_parse_targets(run_config_get_raw(s->cfg, "lora_target"), &cfg_targets, err)) return -1;

  // state.json: the step.
  pjoin(p, s->ckpt, "state.json");
  char *state = pith_read_file(p, &n, err);
  if (!state) return -1;
  cJSON *root = cJSON_Parse(state);
  free(state);
  cJSON *step = root ? cJSON_GetObjectItemCaseSensitive(root, "step") : NULL;
  if (!cJSON_IsNumber(step)) {
    cJSON_Delete(root);
    return pith_fail(err, "%s: no \"step\"", p);
  }
  s->step = (int64_t)step->valuedouble;
  cJSON_Delete(root);

  // params.safetensors: the compressor's checkpoint names (compressor.h: comp_param_name).
  pjoin(p, s->ckpt, "params.safetensors");
  s->params = st_open(p, err);
  if (!s->params) return -1;
  unsigned seen = 0;
  int max_layer = -1;
  for (int i = 0; i < st_count(s->params); i++) {
    const st_tensor *t = st_at(s->params, i);
    int layer;
    llama_proj proj;
    char ab;
    if (!strcmp(t->name, COMP_PARAM_COMPRESS) || !strcmp(t->name, COMP_PARAM_AE)) continue;
    if (comp_lora_param_parse(t->name, &layer, &proj, &ab))
      return pith_fail(err, "%s: unexpected tensor '%s' (want lora.L.PROJ.A/B, compress, ae)", p, t->name);
    seen |= 1u << proj;
    if (layer > max_layer) max_layer = layer;
    if (t->ndim != 2) return pith_fail(err, "%s: %s is not a matrix", p, t->name);
    if (ab == 'A' && t->shape[0] != s->lora.rank)
      return pith_fail(err, "%s: %s has %lld rows, lora_rank is %d", p, t->name, (long long)t->shape[0], s->lora.rank);
  }
  if (seen != cfg_targets)
    return pith_fail(err, "%s: the LoRA tensors adapt other projections than lora_target '%s' says", p,
                     run_config_get_raw(s->cfg, "lora_target"));
  s->lora.targets = seen;
  s->n_layers = max_layer + 1;
  char name[128];
  for (int l = 0; l < s->n_layers; l++)
    for (int q = 0; q < LLAMA_N_PROJ; q++)
      for (int ab = 0; ab < 2 && (seen >> q & 1u); ab++) {
        comp_lora_param_name(l, (llama_proj)q, "AB"[ab], name, sizeof name);
        if (!st_find(s->params, name)) return pith_fail(err, "%s: missing %s", p, name);
      }
  const st_tensor *c = st_find(s->params, COMP_PARAM_COMPRESS);
  if (!c || c->ndim != 2 || c->shape[0] != s->comp.k)
    return pith_fail(err, "%s: no 'compress' of shape (%d, dim)", p, s->comp.k);
  s->dim = (int)c->shape[1];
  const st_tensor *ae = st_find(s->params, COMP_PARAM_AE);
  if (s->comp.method == COMP_ICAE && (!ae || ae->ndim != 2 || ae->shape[0] != 1 || ae->shape[1] != s->dim))
    return pith_fail(err, "%s: an ICAE checkpoint needs 'ae' of shape (1, %d)", p, s->dim);
  s->comp.ae_token = s->comp.method == COMP_ICAE;
  return 0;
}

static void source_free(source *s) {
  run_config_free(s->cfg);
  free(s->cfg_text);
  st_close(s->params);
}

static cJSON *targets_json(unsigned targets) {
  cJSON *a = cJSON_CreateArray();
  for (int p = 0; p < LLAMA_N_PROJ; p++)
    if (targets >> p & 1u) cJSON_AddItemToArray(a, cJSON_CreateString(LLAMA_PROJ_NAMES[p]));
  return a;
}

static int write_adapter(const source *s, const char *dir, const char *base_model, pith_err *err) {
  char p[EX_PATH], name[256], src[128];
  st_writer *w = st_writer_new();
  if (!w) return pith_fail(err, "out of memory");
  int rc = 0;
  for (int l = 0; l < s->n_layers && !rc; l++)
    for (int q = 0; q < LLAMA_N_PROJ && !rc; q++)
      for (int ab = 0; ab < 2 && !rc && (s->lora.targets >> q & 1u); ab++) {
        comp_lora_param_name(l, (llama_proj)q, "AB"[ab], src, sizeof src);
        peft_key(name, sizeof name, l, q, "AB"[ab]);
        rc = copy_tensor(w, name, st_find(s->params, src), err);
      }
  if (!rc) rc = st_writer_set_metadata(w, "format", "pt", err);
  pjoin(p, dir, F_ADAPTER);
  if (!rc) rc = st_writer_finish(w, p, err);
  st_writer_free(w);
  if (rc) return -1;

  // adapter_config.json: the fields PEFT writes for a plain LoRA (others take PEFT's defaults).
  cJSON *c = cJSON_CreateObject();
  cJSON_AddItemToObject(c, "alpha_pattern", cJSON_CreateObject());
  cJSON_AddNullToObject(c, "auto_mapping");
  cJSON_AddStringToObject(c, "base_model_name_or_path", base_model);
  cJSON_AddStringToObject(c, "bias", "none");
  cJSON_AddBoolToObject(c, "fan_in_fan_out", 0);
  cJSON_AddBoolToObject(c, "inference_mode", 1);
  cJSON_AddBoolToObject(c, "init_lora_weights", 1);
  cJSON_AddNullToObject(c, "layers_pattern");
  cJSON_AddNullToObject(c, "layers_to_transform");
  cJSON_AddNumberToObject(c, "lora_alpha", s->lora.alpha);
  cJSON_AddNumberToObject(c, "lora_dropout", s->lora.dropout);
  cJSON_AddNullToObject(c, "modules_to_save");
  cJSON_AddStringToObject(c, "peft_type", "LORA");
  cJSON_AddNumberToObject(c, "r", s->lora.rank);
  cJSON_AddItemToObject(c, "rank_pattern", cJSON_CreateObject());
  cJSON_AddNullToObject(c, "revision");
  cJSON_AddItemToObject(c, "target_modules", targets_json(s->lora.targets));
  cJSON_AddStringToObject(c, "task_type", "CAUSAL_LM");
  cJSON_AddBoolToObject(c, "use_dora", 0);
  cJSON_AddBoolToObject(c, "use_rslora", 0);
  pjoin(p, dir, F_ADAPTER_CONFIG);
  rc = cjson_write_file(p, c, err);
  cJSON_Delete(c);
  return rc;
}

static int write_compress(const source *s, const char *dir, pith_err *err) {
  char p[EX_PATH], k[32], ver[16];
  st_writer *w = st_writer_new();
  if (!w) return pith_fail(err, "out of memory");
  snprintf(k, sizeof k, "%d", s->comp.k);
  snprintf(ver, sizeof ver, "%d", EXPORT_VERSION);
  int rc = copy_tensor(w, "compress", st_find(s->params, COMP_PARAM_COMPRESS), err);
  if (!rc && s->comp.method == COMP_ICAE) rc = copy_tensor(w, "ae", st_find(s->params, COMP_PARAM_AE), err);
  if (!rc) rc = st_writer_set_metadata(w, "format", "pith-compress-tokens", err);
  if (!rc) rc = st_writer_set_metadata(w, "format_version", ver, err);
  if (!rc) rc = st_writer_set_metadata(w, "method", s->comp.method == COMP_ICAE ? "icae" : "500x", err);
  if (!rc) rc = st_writer_set_metadata(w, "k", k, err);
  pjoin(p, dir, F_COMPRESS);
  if (!rc) rc = st_writer_finish(w, p, err);
  st_writer_free(w);
  return rc;
}

static int write_manifest(const source *s, const char *dir, const char *base_model, const char *tokenizer,
                          const char *ckpt_abs, const export_options *opt, pith_err *err) {
  cJSON *m = cJSON_CreateObject();
  cJSON_AddStringToObject(m, "format", EXPORT_FORMAT);
  cJSON_AddNumberToObject(m, "format_version", EXPORT_VERSION);
  cJSON_AddStringToObject(m, "method", s->comp.method == COMP_ICAE ? "icae" : "500x");
  cJSON_AddNumberToObject(m, "k", s->comp.k);
  cJSON_AddStringToObject(m, "position_policy", s->comp.positions == COMP_POS_REFERENCE ? "reference" : "consistent");
  cJSON_AddBoolToObject(m, "ae_token", s->comp.ae_token);
  cJSON_AddNumberToObject(m, "dim", s->dim);
  cJSON_AddStringToObject(m, "base_model", base_model);
  cJSON_AddStringToObject(m, "base_model_as_configured", run_config_get_raw(s->cfg, "model_name_or_path"));
  cJSON_AddStringToObject(m, "tokenizer", tokenizer);
  cJSON *lora = cJSON_AddObjectToObject(m, "lora");
  cJSON_AddNumberToObject(lora, "rank", s->lora.rank);
  cJSON_AddNumberToObject(lora, "alpha", s->lora.alpha);
  cJSON_AddNumberToObject(lora, "dropout", s->lora.dropout);
  cJSON_AddItemToObject(lora, "target_modules", targets_json(s->lora.targets));
  cJSON *files = cJSON_AddObjectToObject(m, "files");
  int rc = add_file_size(files, dir, F_ADAPTER_CONFIG, err);
  if (!rc) rc = add_file_size(files, dir, F_ADAPTER, err);
  if (!rc) rc = add_file_size(files, dir, F_COMPRESS, err);
  cJSON *src = cJSON_AddObjectToObject(m, "source");
  cJSON_AddStringToObject(src, "checkpoint", ckpt_abs);
  cJSON_AddNumberToObject(src, "step", (double)s->step);
  uint8_t dg[SHA256_DIGEST_SIZE];
  char hex[SHA256_HEX_SIZE];
  sha256_hash_buffer(s->cfg_text, strlen(s->cfg_text), dg);
  sha256_to_hex(dg, hex);
  cJSON_AddStringToObject(src, "config_sha256", hex);
  cJSON *cfg = cJSON_AddObjectToObject(src, "config");
  for (int i = 0; i < run_config_raw_count(s->cfg); i++) {
    const char *val, *key = run_config_raw_at(s->cfg, i, &val);
    cJSON_AddStringToObject(cfg, key, val);
  }
  time_t now = time(NULL);
  struct tm tm;
  char when[32] = "";
  if (gmtime_r(&now, &tm)) strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
  cJSON_AddStringToObject(m, "created", when);
  cJSON_AddStringToObject(m, "pith_version", opt && opt->pith_version ? opt->pith_version : "dev");
  char p[EX_PATH];
  pjoin(p, dir, EXPORT_MANIFEST);
  if (!rc) rc = cjson_write_file(p, m, err);
  cJSON_Delete(m);
  return rc;
}

int export_install_folder(const char *partial, const char *out, pith_err *err) {
  char old[EX_PATH] = "", parent[EX_PATH];
  int rc = pith_fsync_dir(partial, err);
  if (!rc && exists(out)) {  // force: swap the old one out, the new one in, then remove the old
    if (snprintf(old, sizeof old, "%s.old-%ld", out, (long)getpid()) >= (int)sizeof old) old[0] = 0;
    pith_remove_tree(old);
    if (rename(out, old) != 0) rc = pith_fail(err, "%s: cannot move aside: %s", out, strerror(errno));
  }
  if (!rc && rename(partial, out) != 0) {
    rc = pith_fail(err, "%s: cannot rename into place: %s", out, strerror(errno));
    if (old[0]) rename(old, out);
  }
  parent_of(out, parent, sizeof parent);
  if (!rc) rc = pith_fsync_dir(parent, err);
  if (!rc && old[0] && pith_remove_tree(old) != 0) rc = pith_fail(err, "%s: cannot remove the replaced export", old);
  return rc;
}

int export_run(const char *src, const char *out, const export_options *opt, char *ckpt_used, size_t len,
               pith_err *err) {
  if (!src || !out || !*out) return pith_fail(err, "export: NULL argument");
  char out_buf[EX_PATH];
  snprintf(out_buf, sizeof out_buf, "%s", out);
  for (size_t n = strlen(out_buf); n > 1 && out_buf[n - 1] == '/'; n--) out_buf[n - 1] = 0;
  out = out_buf;
  if (check_len(src, err) || check_len(out, err)) return -1;
  int force = opt && opt->force;
  if (exists(out) && !force) return pith_fail(err, "%s: already exists (--force replaces it)", out);
  char ckpt[EX_PATH];
  if (find_checkpoint(src, ckpt, sizeof ckpt, err)) return -1;
  if (ckpt_used) snprintf(ckpt_used, len, "%s", ckpt);
  source s = {.ckpt = ckpt};
  int rc = read_source(&s, err);

  // Paths recorded absolute where they resolve (the run's are relative to where it was launched).
  char base[EX_PATH], tok[EX_PATH], ckpt_abs[EX_PATH], partial[EX_PATH] = "";
  if (!rc) {
    const char *b = run_config_get_raw(s.cfg, "model_name_or_path"), *t = run_config_get_raw(s.cfg, "tokenizer");
    if (!b) b = "";
    if (!realpath(b, base)) snprintf(base, sizeof base, "%s", b);
    if (!t || !*t) snprintf(tok, sizeof tok, "%s", base);
    else if (!realpath(t, tok)) snprintf(tok, sizeof tok, "%s", t);
    if (!realpath(ckpt, ckpt_abs)) snprintf(ckpt_abs, sizeof ckpt_abs, "%s", ckpt);
    if (snprintf(partial, sizeof partial, "%s.partial", out) >= (int)sizeof partial) partial[0] = 0;
    pith_remove_tree(partial);  // a crashed export's leftovers
    if (mkdir(partial, 0755) != 0) rc = pith_fail(err, "%s: cannot create folder: %s", partial, strerror(errno));
  }
  if (!rc) rc = write_adapter(&s, partial, base, err);
  if (!rc) rc = write_compress(&s, partial, err);
  if (!rc) rc = write_manifest(&s, partial, base, tok, ckpt_abs, opt, err);
  if (!rc) rc = export_install_folder(partial, out, err);
  if (rc && partial[0] && exists(partial)) pith_remove_tree(partial);
  source_free(&s);
  return rc;
}

// ---- reading an export back ---------------------------------------------------------------------

static cJSON *read_json(const char *dir, const char *name, pith_err *err) {
  char p[EX_PATH];
  size_t n;
  pjoin(p, dir, name);
  char *text = pith_read_file(p, &n, err);
  if (!text) return NULL;
  cJSON *j = cJSON_Parse(text);
  free(text);
  if (!j) pith_fail(err, "%s: not valid JSON", p);
  return j;
}

static const char *jstr(const cJSON *o, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int jnum(const cJSON *o, const char *key, double *out) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!cJSON_IsNumber(v)) return -1;
  *out = v->valuedouble;
  return 0;
}

int export_read_info(const char *dir, export_info *info, pith_err *err) {
  memset(info, 0, sizeof *info);
  if (check_len(dir, err)) return -1;
  cJSON *m = read_json(dir, EXPORT_MANIFEST, err);
  if (!m) return -1;
  cJSON *a = read_json(dir, F_ADAPTER_CONFIG, err);
  if (!a) {
    cJSON_Delete(m);
    return -1;
  }
  int rc = 0;
  double k, ver, dim, step = 0, r, alpha, dropout = 0;
  const char *fmt = jstr(m, "format"), *method = jstr(m, "method"), *pos = jstr(m, "position_policy");
  const char *base = jstr(m, "base_model"), *tok = jstr(m, "tokenizer");
  const cJSON *src = cJSON_GetObjectItemCaseSensitive(m, "source");
  if (!fmt || strcmp(fmt, EXPORT_FORMAT)) {
    rc = pith_fail(err, "%s/%s: format is not \"%s\"", dir, EXPORT_MANIFEST, EXPORT_FORMAT);
  } else if (jnum(m, "format_version", &ver) || ver > EXPORT_VERSION) {
    rc = pith_fail(err, "%s/%s: format_version newer than this pith reads (%d)", dir, EXPORT_MANIFEST, EXPORT_VERSION);
  } else if (!method || (strcmp(method, "500x") && strcmp(method, "icae")) || jnum(m, "k", &k) || k < 1 ||
             jnum(m, "dim", &dim) || !base) {
    rc = pith_fail(err, "%s/%s: missing or bad method, k, dim or base_model", dir, EXPORT_MANIFEST);
  } else if (jnum(a, "r", &r) || jnum(a, "lora_alpha", &alpha) || r < 1) {
    rc = pith_fail(err, "%s/%s: missing or bad r or lora_alpha", dir, F_ADAPTER_CONFIG);
  } else {
    const char *peft = jstr(a, "peft_type");
    if (peft && strcmp(peft, "LORA")) rc = pith_fail(err, "%s/%s: peft_type %s is not LORA", dir, F_ADAPTER_CONFIG, peft);
    jnum(a, "lora_dropout", &dropout);
    if (src) jnum(src, "step", &step);
    const cJSON *tm = cJSON_GetObjectItemCaseSensitive(a, "target_modules");
    const cJSON *t;
    unsigned targets = 0;
    cJSON_ArrayForEach(t, tm) {
      int p = cJSON_IsString(t) ? proj_of(t->valuestring) : -1;
      if (p < 0 && !rc)
        rc = pith_fail(err, "%s/%s: target_modules: '%s' is not a LLaMA projection", dir, F_ADAPTER_CONFIG,
                       cJSON_IsString(t) ? t->valuestring : "?");
      if (p >= 0) targets |= 1u << p;
    }
    if (!rc && !targets) rc = pith_fail(err, "%s/%s: target_modules names no projection", dir, F_ADAPTER_CONFIG);
    const cJSON *ae = cJSON_GetObjectItemCaseSensitive(m, "ae_token");
    info->comp.method = !strcmp(method, "icae") ? COMP_ICAE : COMP_500X;
    info->comp.k = (int)k;
    info->comp.positions = pos && !strcmp(pos, "reference") ? COMP_POS_REFERENCE : COMP_POS_CONSISTENT;
    info->comp.ae_token = info->comp.method == COMP_ICAE && cJSON_IsTrue(ae);
    info->lora = (lora_config){(int)r, alpha, dropout, targets};
    info->dim = (int)dim;
    info->step = (int64_t)step;
    snprintf(info->base_model, sizeof info->base_model, "%s", base);
    snprintf(info->tokenizer, sizeof info->tokenizer, "%s", tok ? tok : base);
    const char *ck = src ? jstr(src, "checkpoint") : NULL;
    snprintf(info->checkpoint, sizeof info->checkpoint, "%s", ck ? ck : "");
  }
  cJSON_Delete(m);
  cJSON_Delete(a);
  return rc;
}

// dst ← the floating tensor t (any float dtype), shapes equal.
static int load_into(pt_tensor *dst, const st_tensor *t, const char *file, pith_err *err) {
  pt_shape want = pt_shape_of(dst);
  int same = t->ndim == want.ndim;
  for (int i = 0; same && i < t->ndim; i++) same = t->shape[i] == want.d[i];
  if (!same) {
    char got[128] = "", exp[128] = "";
    for (int i = 0; i < t->ndim; i++) snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", i ? "," : "", (long long)t->shape[i]);
    for (int i = 0; i < want.ndim; i++) snprintf(exp + strlen(exp), sizeof exp - strlen(exp), "%s%lld", i ? "," : "", (long long)want.d[i]);
    return pith_fail(err, "%s: %s has shape [%s], the model needs [%s]", file, t->name, got, exp);
  }
  size_t n = (size_t)st_numel(t);
  float *buf = malloc((n ? n : 1) * sizeof(float));
  if (!buf) return pith_fail(err, "out of memory");
  if (st_read_f32(t, buf, n, err)) {
    free(buf);
    return -1;
  }
  pt_scope sc = pt_scope_begin();
  pt_tensor *src = pt_from_data(buf, PT_F32, want, PT_CPU);
  int rc = src ? pt_copy_(dst, src) : -1;
  if (rc || !pt_ok()) rc = pt_fail(err, "%s: %s", file, t->name);
  pt_scope_end(sc);
  free(buf);
  return rc;
}

int export_load(const char *dir, const llama_model *base, compressor **out, pith_err *err) {
  *out = NULL;
  export_info info;
  if (export_read_info(dir, &info, err)) return -1;
  if (info.dim != base->cfg.dim)
    return pith_fail(err, "%s: exported for hidden size %d, the base model has %d", dir, info.dim, base->cfg.dim);
  compressor *c = comp_new(base, info.comp, info.lora, 0, err);
  if (!c) return -1;
  char p[EX_PATH], name[256];
  pjoin(p, dir, F_ADAPTER);
  st_file *f = st_open(p, err);
  int rc = f ? 0 : -1, used = 0;
  for (int l = 0; l < c->lora->n_layers && !rc; l++)
    for (int q = 0; q < LLAMA_N_PROJ && !rc; q++)
      for (int ab = 0; ab < 2 && !rc && c->lora->a[l][q]; ab++) {
        peft_key(name, sizeof name, l, q, "AB"[ab]);
        const st_tensor *t = st_find(f, name);
        if (!t) rc = pith_fail(err, "%s: missing %s", p, name);
        else rc = load_into(ab ? c->lora->b[l][q] : c->lora->a[l][q], t, p, err), used++;
      }
  if (!rc && used != st_count(f)) {
    for (int i = 0; i < st_count(f); i++) {  // name the first tensor no slot took
      const char *n = st_at(f, i)->name;
      int layer, q = -1;
      char proj[64] = "", ab = 0;
      const char *mid = strstr(n, "layers.");
      int ok = mid && sscanf(mid, "layers.%d.%*[a-z_].%63[a-z_].lora_%c", &layer, proj, &ab) == 3;
      if (ok) q = proj_of(proj);
      if (!ok || q < 0 || layer >= c->lora->n_layers || !c->lora->a[layer][q]) {
        rc = pith_fail(err, "%s: unexpected tensor %s (not a LoRA slot of target_modules on this model)", p, n);
        break;
      }
    }
  }
  st_close(f);
  pjoin(p, dir, F_COMPRESS);
  f = rc ? NULL : st_open(p, err);
  if (!rc && !f) rc = -1;
  if (!rc) {
    const st_tensor *t = st_find(f, "compress");
    rc = t ? load_into(c->compress, t, p, err) : pith_fail(err, "%s: no 'compress'", p);
  }
  if (!rc && c->ae) {
    const st_tensor *t = st_find(f, "ae");
    rc = t ? load_into(c->ae, t, p, err) : pith_fail(err, "%s: no 'ae' (needed by ICAE)", p);
  }
  st_close(f);
  if (rc) {
    comp_free(c);
    return -1;
  }
  *out = c;
  return 0;
}
