// export_scorer: RUN/model of a pith distill run → an HF folder + manifest (see export_scorer.h).
#include "export_scorer.h"

#include <cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cjson_file.h"
#include "export.h"
#include "run_config.h"
#include "sha256.h"

#define XS_PATH 4096
#define XS_MAX_INPUT 3000

static void pjoin(char *out, const char *a, const char *b) {
  if (snprintf(out, XS_PATH, "%s/%s", a, b) >= XS_PATH) out[XS_PATH - 1] = 0;
}

static const char *const METHODS[] = {"sft", "kl", "classifier"};

static int is_scorer_method(const char *m) {
  for (size_t i = 0; m && i < sizeof METHODS / sizeof METHODS[0]; i++)
    if (!strcmp(m, METHODS[i])) return 1;
  return 0;
}

int export_is_scorer_run(const char *run) {
  char p[XS_PATH];
  if (!run || strlen(run) > XS_MAX_INPUT) return 0;
  pjoin(p, run, "config.yaml");
  if (!pith_is_file(p)) return 0;
  run_config *c = run_config_new();
  pith_err err;
  int yes = c && run_config_load(c, p, &err) == 0 && is_scorer_method(run_config_get_raw(c, "method"));
  run_config_free(c);
  return yes;
}

// Copy src to dst (a new file), fsynced.
static int copy_file(const char *src, const char *dst, pith_err *err) {
  int in = open(src, O_RDONLY);
  if (in < 0) return pith_fail(err, "%s: %s", src, strerror(errno));
  int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (out < 0) {
    close(in);
    return pith_fail(err, "%s: cannot create: %s", dst, strerror(errno));
  }
  static char buf[1 << 16];
  int rc = 0;
  for (;;) {
    ssize_t n = read(in, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      rc = pith_fail(err, "%s: read: %s", src, strerror(errno));
      break;
    }
    if (n == 0) break;
    for (ssize_t off = 0; off < n && !rc;) {
      ssize_t w = write(out, buf + off, (size_t)(n - off));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) rc = pith_fail(err, "%s: write: %s", dst, strerror(errno));
      else off += w;
    }
    if (rc) break;
  }
  if (!rc && fsync(out) != 0) rc = pith_fail(err, "%s: fsync: %s", dst, strerror(errno));
  close(in);
  if (close(out) != 0 && !rc) rc = pith_fail(err, "%s: close: %s", dst, strerror(errno));
  return rc;
}

// The weights file of a model folder (model.safetensors, else the shards' index): its path, or -1.
static int weights_file(const char *dir, char *path) {
  pjoin(path, dir, "model.safetensors");
  if (pith_is_file(path)) return 0;
  pjoin(path, dir, "model.safetensors.index.json");
  return pith_is_file(path) ? 0 : -1;
}

// The kind of the model folder's config.json.
static int model_kind(const char *dir, char *kind, size_t klen, char *model_type, size_t tlen, pith_err *err) {
  char p[XS_PATH];
  pjoin(p, dir, "config.json");
  size_t n;
  char *text = pith_read_file(p, &n, err);
  if (!text) return -1;
  cJSON *j = cJSON_Parse(text);
  free(text);
  if (!j) return pith_fail(err, "%s: not valid JSON", p);
  const cJSON *mt = cJSON_GetObjectItemCaseSensitive(j, "model_type");
  int rc = 0;
  if (!cJSON_IsString(mt)) {
    rc = pith_fail(err, "%s: no \"model_type\"", p);
  } else {
    const char *t = mt->valuestring;
    snprintf(model_type, tlen, "%s", t);
    if (!strcmp(t, "llama") || !strcmp(t, "mistral") || !strcmp(t, "qwen2"))
      snprintf(kind, klen, "causal-lm");
    else if (!strcmp(t, "bert") || !strcmp(t, "xlm-roberta"))
      snprintf(kind, klen, "token-classifier");
    else
      rc = pith_fail(err, "%s: model_type '%s' is neither a causal LM (llama, mistral, qwen2) nor a token classifier "
                          "(bert, xlm-roberta)", p, t);
  }
  cJSON_Delete(j);
  return rc;
}

// metrics.jsonl's val_* records: initial = every val_* of the first step that logged one, final =
// those of the last such step. A missing file leaves both empty.
static int read_metrics(const char *run, cJSON *initial, cJSON *final, export_scorer_info *info, pith_err *err) {
  char p[XS_PATH];
  pjoin(p, run, "metrics.jsonl");
  if (!pith_is_file(p)) return 0;
  size_t n;
  char *text = pith_read_file(p, &n, err);
  if (!text) return -1;
  double first = NAN, last = NAN;
  int line_no = 0;
  for (char *line = text, *next; line && *line; line = next) {
    next = strchr(line, '\n');
    if (next) *next++ = 0;
    line_no++;
    if (!*line) continue;
    cJSON *j = cJSON_Parse(line);
    if (!j) {
      free(text);
      return pith_fail(err, "%s:%d: not a JSON line", p, line_no);
    }
    const cJSON *step = cJSON_GetObjectItemCaseSensitive(j, "step"), *it;
    int has_val = 0;
    cJSON_ArrayForEach(it, j) has_val |= !strncmp(it->string, "val_", 4) && cJSON_IsNumber(it);
    if (has_val && cJSON_IsNumber(step)) {
      double s = step->valuedouble;
      if (isnan(first)) first = s, cJSON_AddNumberToObject(initial, "step", s);
      if (isnan(last) || s != last) {  // a later step: final starts over
        while (final->child) cJSON_Delete(cJSON_DetachItemViaPointer(final, final->child));
        cJSON_AddNumberToObject(final, "step", s);
        last = s;
      }
      cJSON_ArrayForEach(it, j) {
        if (strncmp(it->string, "val_", 4) || !cJSON_IsNumber(it)) continue;
        if (s == first) {
          cJSON_DeleteItemFromObjectCaseSensitive(initial, it->string);
          cJSON_AddNumberToObject(initial, it->string, it->valuedouble);
        }
        cJSON_DeleteItemFromObjectCaseSensitive(final, it->string);
        cJSON_AddNumberToObject(final, it->string, it->valuedouble);
      }
    }
    cJSON_Delete(j);
  }
  free(text);
  if (info) {
    const cJSON *v;
    info->has_initial = initial->child != NULL;
    info->has_final = final->child != NULL;
    v = cJSON_GetObjectItemCaseSensitive(initial, "val_kl");
    info->initial_kl = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    v = cJSON_GetObjectItemCaseSensitive(initial, "val_spearman");
    info->initial_spearman = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    v = cJSON_GetObjectItemCaseSensitive(final, "val_kl");
    info->final_kl = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    v = cJSON_GetObjectItemCaseSensitive(final, "val_spearman");
    info->final_spearman = cJSON_IsNumber(v) ? v->valuedouble : NAN;
  }
  return 0;
}

static int is_tokenizer_file(const char *name) {
  static const char *const names[] = {"tokenizer.json", "tokenizer.model", "vocab.txt", "sentencepiece.bpe.model",
                                      "vocab.json"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (!strcmp(name, names[i])) return 1;
  return 0;
}

// Every regular file of model (an HF folder pith wrote) into dir, their sizes into files.
static int copy_model(const char *model, const char *dir, cJSON *files, int *n_files, pith_err *err) {
  DIR *d = opendir(model);
  if (!d) return pith_fail(err, "%s: %s", model, strerror(errno));
  int rc = 0, tokenizer = 0;
  struct dirent *e;
  char src[XS_PATH], dst[XS_PATH];
  while (!rc && (e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    pjoin(src, model, e->d_name);
    struct stat st;
    if (stat(src, &st) != 0 || !S_ISREG(st.st_mode)) continue;
    pjoin(dst, dir, e->d_name);
    rc = copy_file(src, dst, err);
    if (!rc) cJSON_AddNumberToObject(files, e->d_name, (double)st.st_size), (*n_files)++;
    tokenizer |= is_tokenizer_file(e->d_name);
  }
  closedir(d);
  if (!rc && !tokenizer)
    rc = pith_fail(err, "%s: no tokenizer file (tokenizer.json, tokenizer.model, vocab.txt, "
                        "sentencepiece.bpe.model); the export would not load with AutoTokenizer", model);
  return rc;
}

static int write_manifest(const char *dir, const char *run_abs, run_config *cfg, const char *cfg_text,
                          const export_scorer_info *x, const char *target_raw, const char *target_abs,
                          const char *target_weights, const char *target_sha, const char *weights_sha, cJSON *initial,
                          cJSON *final, cJSON *files, const export_scorer_options *opt, pith_err *err) {
  cJSON *m = cJSON_CreateObject();
  cJSON_AddStringToObject(m, "format", EXPORT_SCORER_FORMAT);
  cJSON_AddNumberToObject(m, "format_version", EXPORT_SCORER_VERSION);
  cJSON_AddStringToObject(m, "kind", x->kind);
  cJSON_AddStringToObject(m, "model_type", x->model_type);
  cJSON *al = cJSON_AddObjectToObject(m, "alignment");
  cJSON_AddStringToObject(al, "method", x->method);
  const char *ft = run_config_get_raw(cfg, "finetuning_type");
  cJSON_AddStringToObject(al, "finetuning_type", ft ? ft : "full");
  const char *temp = run_config_get_raw(cfg, "temperature");
  if (!strcmp(x->method, "kl") && temp) cJSON_AddNumberToObject(al, "temperature", atof(temp));
  cJSON *t = cJSON_AddObjectToObject(m, "target");
  if (target_raw) {
    cJSON_AddStringToObject(t, "path", target_abs);
    cJSON_AddStringToObject(t, "path_as_configured", target_raw);
  } else {
    cJSON_AddNullToObject(t, "path");
  }
  if (target_sha) {
    cJSON_AddStringToObject(t, "weights_file", pith_base_name(target_weights));
    cJSON_AddStringToObject(t, "weights_sha256", target_sha);
  } else {
    cJSON_AddNullToObject(t, "weights_sha256");
  }
  cJSON *met = cJSON_AddObjectToObject(m, "metrics");
  cJSON_AddItemReferenceToObject(met, "initial", initial);
  cJSON_AddItemReferenceToObject(met, "final", final);
  cJSON_AddStringToObject(m, "weights_sha256", weights_sha);
  cJSON_AddItemReferenceToObject(m, "files", files);
  cJSON *src = cJSON_AddObjectToObject(m, "source");
  cJSON_AddStringToObject(src, "run", run_abs);
  uint8_t dg[SHA256_DIGEST_SIZE];
  char hex[SHA256_HEX_SIZE];
  sha256_hash_buffer(cfg_text, strlen(cfg_text), dg);
  sha256_to_hex(dg, hex);
  cJSON_AddStringToObject(src, "config_sha256", hex);
  cJSON *c = cJSON_AddObjectToObject(src, "config");
  for (int i = 0; i < run_config_raw_count(cfg); i++) {
    const char *val, *key = run_config_raw_at(cfg, i, &val);
    cJSON_AddStringToObject(c, key, val);
  }
  time_t now = time(NULL);
  struct tm tm;
  char when[32] = "";
  if (gmtime_r(&now, &tm)) strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
  cJSON_AddStringToObject(m, "created", when);
  cJSON_AddStringToObject(m, "pith_version", opt && opt->pith_version ? opt->pith_version : "dev");
  if (opt && opt->command) cJSON_AddStringToObject(m, "command", opt->command);
  else cJSON_AddNullToObject(m, "command");
  char p[XS_PATH];
  pjoin(p, dir, EXPORT_MANIFEST);
  int rc = cjson_write_file(p, m, err);
  cJSON_Delete(m);
  return rc;
}

int export_scorer_run(const char *run, const char *out, const export_scorer_options *opt, export_scorer_info *info,
                      pith_err *err) {
  if (!run || !out || !*out) return pith_fail(err, "export: NULL argument");
  if (strlen(run) > XS_MAX_INPUT || strlen(out) > XS_MAX_INPUT)
    return pith_fail(err, "%.64s...: path longer than %d bytes", strlen(run) > XS_MAX_INPUT ? run : out, XS_MAX_INPUT);
  export_scorer_info local;
  export_scorer_info *x = info ? info : &local;
  memset(x, 0, sizeof *x);
  char out_buf[XS_PATH];
  snprintf(out_buf, sizeof out_buf, "%s", out);
  for (size_t n = strlen(out_buf); n > 1 && out_buf[n - 1] == '/'; n--) out_buf[n - 1] = 0;
  out = out_buf;
  struct stat st;
  if (lstat(out, &st) == 0 && !(opt && opt->force))
    return pith_fail(err, "%s: already exists (--force replaces it)", out);
  if (!pith_is_dir(run)) return pith_fail(err, "%s: no such run folder", run);

  char p[XS_PATH], model[XS_PATH], wfile[XS_PATH], twfile[XS_PATH] = "", run_abs[XS_PATH], tabs[XS_PATH];
  char partial[XS_PATH], wsha[SHA256_HEX_SIZE], tsha[SHA256_HEX_SIZE];
  pjoin(p, run, "config.yaml");
  size_t n;
  char *cfg_text = pith_read_file(p, &n, err);
  if (!cfg_text) return -1;
  run_config *cfg = run_config_new();
  cJSON *initial = cJSON_CreateObject(), *final = cJSON_CreateObject(), *files = cJSON_CreateObject();
  int rc = cfg && initial && final && files ? 0 : pith_fail(err, "out of memory");
  if (!rc) rc = run_config_load(cfg, p, err);
  const char *method = rc ? NULL : run_config_get_raw(cfg, "method");
  if (!rc && !is_scorer_method(method))
    rc = pith_fail(err, "%s: method '%s' is not a pith distill scorer's (sft, kl, classifier)", p,
                   method ? method : "");
  if (!rc) {
    snprintf(x->method, sizeof x->method, "%s", method);
    pjoin(model, run, "model");
    if (!pith_is_dir(model)) rc = pith_fail(err, "%s: no such folder (the run has not finished?)", model);
  }
  if (!rc) rc = model_kind(model, x->kind, sizeof x->kind, x->model_type, sizeof x->model_type, err);
  if (!rc && (!strcmp(x->method, "classifier")) != (!strcmp(x->kind, "token-classifier")))
    rc = pith_fail(err, "%s/config.json: model_type '%s' is a %s, but the run's method is %s", model, x->model_type,
                   x->kind, x->method);
  if (!rc && weights_file(model, wfile))
    rc = pith_fail(err, "%s: no model.safetensors or model.safetensors.index.json", model);
  if (!rc) rc = sha256_hash_file(wfile, wsha, err);
  if (!rc) rc = read_metrics(run, initial, final, x, err);
  // The target: recorded as it resolves now; its fingerprint when its weights are readable here.
  const char *target = rc ? NULL : run_config_get_raw(cfg, "target_model_name_or_path");
  if (!rc && target && *target) {
    if (!realpath(target, tabs)) snprintf(tabs, sizeof tabs, "%s", target);
    snprintf(x->target, sizeof x->target, "%s", tabs);
    pith_err ignore;
    x->target_found = weights_file(tabs, twfile) == 0 && sha256_hash_file(twfile, tsha, &ignore) == 0;
  } else {
    target = NULL;
  }
  if (!rc) {
    if (!realpath(run, run_abs)) snprintf(run_abs, sizeof run_abs, "%s", run);
    snprintf(partial, sizeof partial, "%s.partial", out);
    pith_remove_tree(partial);  // a crashed export's leftovers
    if (mkdir(partial, 0755) != 0) rc = pith_fail(err, "%s: cannot create folder: %s", partial, strerror(errno));
    if (!rc) rc = copy_model(model, partial, files, &x->n_files, err);
    if (!rc)
      rc = write_manifest(partial, run_abs, cfg, cfg_text, x, target, tabs, twfile, x->target_found ? tsha : NULL,
                          wsha, initial, final, files, opt, err);
    if (!rc) rc = export_install_folder(partial, out, err);
    if (rc) pith_remove_tree(partial);
  }
  cJSON_Delete(initial);
  cJSON_Delete(final);
  cJSON_Delete(files);
  run_config_free(cfg);
  free(cfg_text);
  return rc;
}
