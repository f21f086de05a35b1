// train_state: see train_state.h for the layout and the guarantees.
#define _GNU_SOURCE  // renameat2 and RENAME_EXCHANGE (glibc 2.28+)

#include "train_state.h"

#include <cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cjson_file.h"
#include "safetensors.h"

#define TS_PATH 4096
#define TS_PARAMS "params.safetensors"
#define TS_OPTIM "optimizer.safetensors"
#define TS_STATE "state.json"
#define TS_CONFIG "config.yaml"

// ---- paths and folders --------------------------------------------------------------------------

static int join(char *out, const char *a, const char *b, pith_err *err) {
  if (snprintf(out, TS_PATH, "%s/%s", a, b) >= TS_PATH)
    return pith_fail(err, "%s/%s: path too long", a, b);
  return 0;
}

static int ensure_dir(const char *path, pith_err *err) {
  if (mkdir(path, 0755) == 0 || (errno == EEXIST && pith_is_dir(path))) return 0;
  if (errno == EEXIST) return pith_fail(err, "%s: exists and is not a folder", path);
  return pith_fail(err, "%s: cannot create folder: %s", path, strerror(errno));
}

// "step-" followed by 1..18 digits and nothing else: the name of a checkpoint folder.
static int parse_step_name(const char *name, int64_t *step) {
  if (strncmp(name, "step-", 5) != 0) return 0;
  const char *p = name + 5;
  size_t nd = strspn(p, "0123456789");
  if (nd == 0 || nd > 18 || p[nd] != 0) return 0;
  *step = strtoll(p, NULL, 10);
  return 1;
}

// "step-DIGITS.tmp-PID" or "step-DIGITS.del-PID": a folder a save left behind. Returns the pid.
static int parse_leftover_name(const char *name, long *pid) {
  if (strncmp(name, "step-", 5) != 0) return 0;
  const char *p = name + 5;
  size_t nd = strspn(p, "0123456789");
  if (nd == 0) return 0;
  p += nd;
  if (strncmp(p, ".tmp-", 5) != 0 && strncmp(p, ".del-", 5) != 0) return 0;
  p += 5;
  size_t np = strspn(p, "0123456789");
  if (np == 0 || np > 9 || p[np] != 0) return 0;
  *pid = strtol(p, NULL, 10);
  return 1;
}

typedef struct {
  int64_t step;
  char name[256];
} ckpt_entry;

static int cmp_entry_desc(const void *a, const void *b) {
  const ckpt_entry *x = a, *y = b;
  if (x->step != y->step) return x->step < y->step ? 1 : -1;
  return strcmp(y->name, x->name);
}

// Complete checkpoints in ckdir, newest first. 0 with *out (malloc'd, may be NULL) and *count, -1.
static int list_complete(const char *ckdir, ckpt_entry **out, int *count, pith_err *err) {
  *out = NULL;
  *count = 0;
  DIR *d = opendir(ckdir);
  if (!d) {
    if (errno == ENOENT) return 0;
    return pith_fail(err, "%s: cannot list: %s", ckdir, strerror(errno));
  }
  ckpt_entry *v = NULL;
  int n = 0, cap = 0;
  struct dirent *e;
  char done[TS_PATH];
  while ((e = readdir(d)) != NULL) {
    int64_t step;
    if (!parse_step_name(e->d_name, &step) || strlen(e->d_name) >= sizeof v->name) continue;
    if (snprintf(done, sizeof done, "%s/%s/%s", ckdir, e->d_name, TRAIN_STATE_DONE) >= (int)sizeof done)
      continue;
    if (!pith_is_file(done)) continue;
    if (n == cap) {
      cap = cap ? 2 * cap : 16;
      ckpt_entry *g = realloc(v, sizeof *v * (size_t)cap);
      if (!g) {
        free(v);
        closedir(d);
        return pith_fail(err, "%s: out of memory", ckdir);
      }
      v = g;
    }
    v[n].step = step;
    snprintf(v[n].name, sizeof v[n].name, "%s", e->d_name);
    n++;
  }
  closedir(d);
  if (n > 1) qsort(v, (size_t)n, sizeof *v, cmp_entry_desc);
  *out = v;
  *count = n;
  return 0;
}

// Test hook (train_state.h): sleep PITH_TRAIN_STATE_PAUSE_MS milliseconds.
static void test_pause(void) {
  const char *s = getenv("PITH_TRAIN_STATE_PAUSE_MS");
  long ms = s ? strtol(s, NULL, 10) : 0;
  if (ms <= 0) return;
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

// ---- dtypes, shapes, base64 ---------------------------------------------------------------------

static int st_dtype_of_pt(pt_dtype d, st_dtype *out) {
  switch (d) {
    case PT_F32: *out = ST_F32; return 0;
    case PT_BF16: *out = ST_BF16; return 0;
    case PT_F16: *out = ST_F16; return 0;
    case PT_I32: *out = ST_I32; return 0;
    case PT_I64: *out = ST_I64; return 0;
    case PT_BOOL: *out = ST_BOOL; return 0;
  }
  return -1;
}

static const char *shape_str(int ndim, const int64_t *d, char *buf, size_t len) {
  size_t k = (size_t)snprintf(buf, len, "[");
  for (int i = 0; i < ndim && k < len; i++)
    k += (size_t)snprintf(buf + k, len - k, "%s%lld", i ? "," : "", (long long)d[i]);
  if (k < len) snprintf(buf + k, len - k, "]");
  return buf;
}

static const char b64_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *b64_encode(const uint8_t *p, size_t n) {
  char *out = malloc(4 * ((n + 2) / 3) + 1), *o = out;
  if (!out) return NULL;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)p[i] << 16;
    if (i + 1 < n) v |= (uint32_t)p[i + 1] << 8;
    if (i + 2 < n) v |= p[i + 2];
    *o++ = b64_chars[(v >> 18) & 63];
    *o++ = b64_chars[(v >> 12) & 63];
    *o++ = i + 1 < n ? b64_chars[(v >> 6) & 63] : '=';
    *o++ = i + 2 < n ? b64_chars[v & 63] : '=';
  }
  *o = 0;
  return out;
}

static int b64_value(char c) {
  const char *p = c ? strchr(b64_chars, c) : NULL;
  return p ? (int)(p - b64_chars) : -1;
}

// Strict: padded, no whitespace. NULL when malformed (or out of memory).
static uint8_t *b64_decode(const char *s, size_t *n) {
  size_t len = strlen(s);
  if (len % 4) return NULL;
  uint8_t *out = malloc(len / 4 * 3 + 1);
  if (!out) return NULL;
  size_t k = 0;
  for (size_t i = 0; i < len; i += 4) {
    int pad = (s[i + 2] == '=') + (s[i + 3] == '=');
    int last = i + 4 == len;
    int a = b64_value(s[i]), b = b64_value(s[i + 1]);
    int c = pad >= 2 ? 0 : b64_value(s[i + 2]), d = pad >= 1 ? 0 : b64_value(s[i + 3]);
    if (a < 0 || b < 0 || c < 0 || d < 0 || (pad && !last) || (pad == 1 && s[i + 2] == '=')) {
      free(out);
      return NULL;
    }
    uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 | (uint32_t)d;
    out[k++] = (uint8_t)(v >> 16);
    if (pad < 2) out[k++] = (uint8_t)(v >> 8);
    if (pad < 1) out[k++] = (uint8_t)v;
  }
  *n = k;
  return out;
}

// Move a pending shim error into err and clear it.
static int fail_shim(pith_err *err, const char *where, const char *name) {
  return pt_fail(err, "%s: tensor '%s'", where, name);
}

// ---- save ---------------------------------------------------------------------------------------

// Write ts (n) under names (n) to path, each in its own dtype, with the given metadata (nmeta
// key/value pairs).
static int write_tensors(const char *path, int n, pt_tensor *const *ts, const char *const *names,
                         const char *const (*meta)[2], int nmeta, pith_err *err) {
  st_writer *w = st_writer_new();
  void **bufs = calloc((size_t)n + 1, sizeof *bufs);
  if (!w || !bufs) {
    st_writer_free(w);
    free(bufs);
    return pith_fail(err, "%s: out of memory", path);
  }
  int rc = 0;
  for (int i = 0; i < n && rc == 0; i++) {
    pt_tensor *t = ts[i];
    const char *key = names[i];
    st_dtype sd;
    if (!t) {
      rc = pith_fail(err, "%s: tensor '%s' is NULL", path, key);
      break;
    }
    if (st_dtype_of_pt(pt_dtype_of(t), &sd) != 0) {
      rc = pith_fail(err, "%s: tensor '%s' has a dtype safetensors cannot hold", path, key);
      break;
    }
    pt_shape sh = pt_shape_of(t);
    size_t nbytes = (size_t)pt_numel(t) * pt_dtype_size(pt_dtype_of(t));
    bufs[i] = malloc(nbytes ? nbytes : 1);
    if (!bufs[i]) {
      rc = pith_fail(err, "%s: tensor '%s': out of memory (%zu bytes)", path, key, nbytes);
      break;
    }
    if (nbytes && pt_to_data(t, bufs[i], nbytes) != 0) {
      rc = fail_shim(err, path, key);
      break;
    }
    rc = st_writer_add_ref(w, key, sd, sh.ndim, sh.d, bufs[i], err);
  }
  for (int i = 0; i < nmeta && rc == 0; i++) rc = st_writer_set_metadata(w, meta[i][0], meta[i][1], err);
  if (rc == 0) rc = st_writer_finish(w, path, err);
  st_writer_free(w);
  for (int i = 0; i < n; i++) free(bufs[i]);
  free(bufs);
  return rc;
}

static int add_file_size(cJSON *files, const char *dir, const char *name, pith_err *err) {
  char path[TS_PATH];
  struct stat st;
  if (join(path, dir, name, err) != 0) return -1;
  if (stat(path, &st) != 0) return pith_fail(err, "%s: cannot stat: %s", path, strerror(errno));
  cJSON_AddNumberToObject(files, name, (double)st.st_size);
  return 0;
}

static int write_manifest(const char *dir, const train_state *s, pith_err *err) {
  char path[TS_PATH];
  if (join(path, dir, TS_STATE, err) != 0) return -1;
  cJSON *root = cJSON_CreateObject();
  if (!root) return pith_fail(err, "%s: out of memory", path);
  int rc = 0;
  cJSON_AddStringToObject(root, "format", TRAIN_STATE_FORMAT);
  cJSON_AddNumberToObject(root, "format_version", TRAIN_STATE_VERSION);
  cJSON_AddNumberToObject(root, "step", (double)s->step);
  if (s->opt) cJSON_AddNumberToObject(root, "optimizer_steps", (double)pt_adamw_steps(s->opt));
  else cJSON_AddNullToObject(root, "optimizer_steps");
  if (s->loader_cursor) cJSON_AddStringToObject(root, "loader_cursor", s->loader_cursor);
  else cJSON_AddNullToObject(root, "loader_cursor");
  if (s->rng_len) {
    char *b64 = b64_encode(s->rng, s->rng_len);
    cJSON *rng = cJSON_AddObjectToObject(root, "rng");
    if (!b64 || !rng) rc = pith_fail(err, "%s: out of memory", path);
    else {
      cJSON_AddStringToObject(rng, "encoding", "base64");
      cJSON_AddNumberToObject(rng, "bytes", (double)s->rng_len);
      cJSON_AddStringToObject(rng, "data", b64);
    }
    free(b64);
  } else {
    cJSON_AddNullToObject(root, "rng");
  }
  cJSON *tensors = cJSON_AddArrayToObject(root, "tensors");
  for (int i = 0; i < s->n && tensors; i++) {
    cJSON *t = cJSON_CreateObject();
    st_dtype sd = ST_F32;
    st_dtype_of_pt(pt_dtype_of(s->params[i]), &sd);
    pt_shape sh = pt_shape_of(s->params[i]);
    cJSON_AddStringToObject(t, "name", s->names[i]);
    cJSON_AddStringToObject(t, "dtype", st_dtype_name(sd));
    cJSON *shape = cJSON_AddArrayToObject(t, "shape");
    for (int k = 0; k < sh.ndim; k++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)sh.d[k]));
    cJSON_AddItemToArray(tensors, t);
  }
  cJSON *files = cJSON_AddObjectToObject(root, "files");
  if (rc == 0) rc = add_file_size(files, dir, TS_PARAMS, err);
  if (rc == 0 && s->opt) rc = add_file_size(files, dir, TS_OPTIM, err);
  if (rc == 0 && s->config_yaml) rc = add_file_size(files, dir, TS_CONFIG, err);
  time_t now = time(NULL);
  struct tm tm;
  char when[32] = "";
  if (gmtime_r(&now, &tm)) strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
  cJSON_AddStringToObject(root, "created", when);
  cJSON_AddNumberToObject(root, "created_unix", (double)now);
  cJSON_AddStringToObject(root, "pith_version", s->pith_version ? s->pith_version : "dev");
  cJSON_AddStringToObject(root, "libtorch_version", pt_version());
  if (s->metrics_json) cJSON_AddItemToObject(root, "metrics", cJSON_Parse(s->metrics_json));
  else cJSON_AddNullToObject(root, "metrics");
  if (rc == 0) rc = cjson_write_file(path, root, err);
  cJSON_Delete(root);
  return rc;
}

// Everything but the rename: the files of the checkpoint in dir (an empty temp folder).
static int write_folder(const char *dir, const train_state *s, pith_err *err) {
  char path[TS_PATH], step[32], steps[32], version[16];
  snprintf(step, sizeof step, "%lld", (long long)s->step);
  snprintf(version, sizeof version, "%d", TRAIN_STATE_VERSION);
  const char *meta[3][2] = {{"format", TRAIN_STATE_FORMAT}, {"format_version", version}, {"step", step}};

  if (join(path, dir, TS_PARAMS, err) != 0) return -1;
  if (write_tensors(path, s->n, s->params, s->names, meta, 3, err) != 0) return -1;
  test_pause();

  if (s->opt) {
    // exp_avg.NAME and exp_avg_sq.NAME of every tensor, in one file.
    if (join(path, dir, TS_OPTIM, err) != 0) return -1;
    int m = 2 * s->n, rc = 0;
    pt_tensor **state = calloc((size_t)m + 1, sizeof *state);
    char **keys = calloc((size_t)m + 1, sizeof *keys);
    if (!state || !keys) rc = pith_fail(err, "%s: out of memory", path);
    for (int i = 0; i < m && rc == 0; i++) {
      int k = i % s->n, sq = i >= s->n;
      state[i] = sq ? pt_adamw_exp_avg_sq(s->opt, k) : pt_adamw_exp_avg(s->opt, k);
      if (!state[i]) {
        rc = pith_fail(err, "%s: the optimizer has no state for tensor %d ('%s'): it was built over "
                       "fewer tensors than the %d given", path, k, s->names[k], s->n);
        break;
      }
      size_t len = strlen(s->names[k]) + 16;
      if (!(keys[i] = malloc(len))) rc = pith_fail(err, "%s: out of memory", path);
      else snprintf(keys[i], len, "%s.%s", sq ? "exp_avg_sq" : "exp_avg", s->names[k]);
    }
    snprintf(steps, sizeof steps, "%lld", (long long)pt_adamw_steps(s->opt));
    const char *ometa[4][2] = {{"format", TRAIN_STATE_FORMAT "-optimizer"}, {"format_version", version},
                               {"optimizer", "adamw"}, {"steps", steps}};
    if (rc == 0) rc = write_tensors(path, m, state, (const char *const *)keys, ometa, 4, err);
    for (int i = 0; keys && i < m; i++) free(keys[i]);
    free(keys);
    free(state);
    if (rc != 0) return -1;
    test_pause();
  }

  if (s->config_yaml) {
    if (join(path, dir, TS_CONFIG, err) != 0) return -1;
    if (pith_write_file_atomic(path, s->config_yaml, strlen(s->config_yaml), err) != 0) return -1;
    test_pause();
  }

  if (write_manifest(dir, s, err) != 0) return -1;
  test_pause();

  // The files' renames inside dir become durable before DONE can exist.
  if (pith_fsync_dir(dir, err) != 0) return -1;
  char done[64];
  int dlen = snprintf(done, sizeof done, "%s %d step=%lld\n", TRAIN_STATE_FORMAT, TRAIN_STATE_VERSION,
                      (long long)s->step);
  if (join(path, dir, TRAIN_STATE_DONE, err) != 0) return -1;
  if (pith_write_file_atomic(path, done, (size_t)dlen, err) != 0) return -1;
  if (pith_fsync_dir(dir, err) != 0) return -1;
  test_pause();
  return 0;
}

// Rename the complete temp folder to its final name, swapping out an existing one.
static int install(const char *tmp, const char *final, pith_err *err) {
  if (rename(tmp, final) == 0) return 0;
  if (errno != ENOTEMPTY && errno != EEXIST)
    return pith_fail(err, "%s: cannot rename to %s: %s", tmp, final, strerror(errno));
#ifdef RENAME_EXCHANGE
  // An old checkpoint of the same step: swap atomically, then remove the old one (now at tmp).
  if (renameat2(AT_FDCWD, tmp, AT_FDCWD, final, RENAME_EXCHANGE) == 0) {
    pith_remove_tree(tmp);
    return 0;
  }
#endif
  // No atomic exchange here: move the old one aside first (a crash in between leaves the older
  // checkpoints, and the new one under its temp name).
  char aside[TS_PATH];
  if (snprintf(aside, sizeof aside, "%s.del-%d", final, (int)getpid()) >= (int)sizeof aside)
    return pith_fail(err, "%s: path too long", final);
  if (rename(final, aside) != 0)
    return pith_fail(err, "%s: cannot move the old checkpoint aside: %s", final, strerror(errno));
  if (rename(tmp, final) != 0) {
    int e = errno;
    rename(aside, final);
    return pith_fail(err, "%s: cannot rename to %s: %s", tmp, final, strerror(e));
  }
  pith_remove_tree(aside);
  return 0;
}

// Remove complete checkpoints beyond the newest keep_last (never `keep`), and leftovers of saves
// whose process is gone.
static int prune(const char *ckdir, const char *keep, int keep_last, pith_err *err) {
  char path[TS_PATH], aside[TS_PATH];
  int rc = 0;
  if (keep_last > 0) {
    ckpt_entry *v;
    int n;
    if (list_complete(ckdir, &v, &n, err) != 0) return -1;
    for (int i = keep_last; i < n && rc == 0; i++) {
      if (!strcmp(v[i].name, keep)) continue;
      if (join(path, ckdir, v[i].name, err) != 0 ||
          snprintf(aside, sizeof aside, "%s.del-%d", path, (int)getpid()) >= (int)sizeof aside) {
        rc = pith_fail(err, "%s/%s: path too long", ckdir, v[i].name);
        break;
      }
      // Renamed first, so a crash halfway through the removal never leaves a step-N with DONE and
      // missing files.
      if (rename(path, aside) != 0)
        rc = pith_fail(err, "%s: cannot remove old checkpoint: %s", path, strerror(errno));
      else if (pith_remove_tree(aside) != 0)
        rc = pith_fail(err, "%s: cannot remove old checkpoint: %s", aside, strerror(errno));
    }
    free(v);
  }
  DIR *d = opendir(ckdir);
  if (!d) return rc;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    long pid;
    if (!parse_leftover_name(e->d_name, &pid) || pid == (long)getpid()) continue;
    if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;  // alive (or not ours to ask)
    if (snprintf(path, sizeof path, "%s/%s", ckdir, e->d_name) < (int)sizeof path) pith_remove_tree(path);
  }
  closedir(d);
  return rc;
}

int train_state_save(const char *run_dir, const train_state *s, int keep_last, pith_err *err) {
  if (!run_dir || !s) return pith_fail(err, "train_state_save: NULL argument");
  if (s->n < 0 || (s->n > 0 && (!s->params || !s->names)))
    return pith_fail(err, "train_state_save: %s: %d tensors but no params or names", run_dir, s->n);
  if (s->step < 0) return pith_fail(err, "train_state_save: %s: negative step %lld", run_dir, (long long)s->step);
  if (keep_last < 0) return pith_fail(err, "train_state_save: %s: keep_last %d is negative", run_dir, keep_last);
  if (!pt_ok())
    return pt_fail(err, "train_state_save: %s: a shim error was pending before the call", run_dir);
  for (int i = 0; i < s->n; i++) {
    if (!s->names[i] || !s->names[i][0])
      return pith_fail(err, "train_state_save: %s: tensor %d has no name", run_dir, i);
    if (!s->params[i])
      return pith_fail(err, "train_state_save: %s: tensor '%s' is NULL", run_dir, s->names[i]);
    for (int j = 0; j < i; j++)
      if (!strcmp(s->names[i], s->names[j]))
        return pith_fail(err, "train_state_save: %s: tensor name '%s' is used twice (%d and %d)", run_dir,
                         s->names[i], j, i);
  }
  if (s->loader_cursor && strchr(s->loader_cursor, '\n'))
    return pith_fail(err, "train_state_save: %s: the loader cursor must be one line", run_dir);
  if (s->rng_len && !s->rng)
    return pith_fail(err, "train_state_save: %s: rng_len is %zu but rng is NULL", run_dir, s->rng_len);
  if (s->metrics_json) {
    cJSON *m = cJSON_Parse(s->metrics_json);
    if (!m) return pith_fail(err, "train_state_save: %s: metrics_json is not valid JSON", run_dir);
    cJSON_Delete(m);
  }

  char ckdir[TS_PATH], name[64], final[TS_PATH], tmp[TS_PATH];
  if (join(ckdir, run_dir, "checkpoints", err) != 0) return -1;
  snprintf(name, sizeof name, "step-%08lld", (long long)s->step);
  if (join(final, ckdir, name, err) != 0) return -1;
  if (snprintf(tmp, sizeof tmp, "%s.tmp-%d", final, (int)getpid()) >= (int)sizeof tmp)
    return pith_fail(err, "%s: path too long", final);

  int had_ckdir = pith_is_dir(ckdir);
  if (ensure_dir(run_dir, err) != 0 || ensure_dir(ckdir, err) != 0) return -1;
  if (!had_ckdir && pith_fsync_dir(run_dir, err) != 0) return -1;
  pith_remove_tree(tmp);  // our own leftover of a failed save of the same step
  if (mkdir(tmp, 0755) != 0) return pith_fail(err, "%s: cannot create folder: %s", tmp, strerror(errno));

  if (write_folder(tmp, s, err) != 0 || install(tmp, final, err) != 0) {
    pith_remove_tree(tmp);
    pt_error_clear();
    return -1;
  }
  if (pith_fsync_dir(ckdir, err) != 0) return -1;
  if (prune(ckdir, name, keep_last, err) != 0) {
    char why[sizeof err->msg];
    snprintf(why, sizeof why, "%s", err ? err->msg : "");
    return pith_fail(err, "%s: saved, but removing older checkpoints failed: %s", final, why);
  }
  return 0;
}

int train_state_latest(const char *run_dir, char *path, size_t len, pith_err *err) {
  if (!run_dir || !path || !len) return pith_fail(err, "train_state_latest: NULL argument");
  char ckdir[TS_PATH];
  if (join(ckdir, run_dir, "checkpoints", err) != 0) return -1;
  ckpt_entry *v;
  int n;
  if (list_complete(ckdir, &v, &n, err) != 0) return -1;
  int rc = 1;
  if (n > 0) {
    rc = 0;
    if (snprintf(path, len, "%s/%s", ckdir, v[0].name) >= (int)len)
      rc = pith_fail(err, "%s/%s: path longer than the %zu-byte buffer", ckdir, v[0].name, len);
  }
  free(v);
  return rc;
}

// ---- load ---------------------------------------------------------------------------------------

static const cJSON *field(const cJSON *obj, const char *name) {
  const cJSON *f = cJSON_GetObjectItemCaseSensitive(obj, name);
  return (f && !cJSON_IsNull(f)) ? f : NULL;
}

static int json_int64(const cJSON *f, int64_t *out) {
  if (!cJSON_IsNumber(f)) return -1;
  double v = f->valuedouble;
  if (v < 0 || v > 9007199254740992.0 || v != (double)(int64_t)v) return -1;
  *out = (int64_t)v;
  return 0;
}

// The saved tensor `key` in f must match t (dtype and shape). Returns it, or NULL with err.
static const st_tensor *match_tensor(const st_file *f, const char *key, const pt_tensor *t,
                                     const char *what, pith_err *err) {
  const st_tensor *s = st_find(f, key);
  if (!s) {
    int n = st_count(f);
    char have[512] = "";
    size_t k = 0;
    for (int i = 0; i < n && i < 8 && k < sizeof have; i++)
      k += (size_t)snprintf(have + k, sizeof have - k, "%s'%s'", i ? ", " : "", st_at(f, i)->name);
    if (n > 8 && k < sizeof have) snprintf(have + k, sizeof have - k, ", ...");
    pith_fail(err, "%s: no tensor '%s', which the %s has (the file holds %d: %s)", st_path(f), key, what, n,
              have);
    return NULL;
  }
  st_dtype want;
  char a[160], b[160];
  if (st_dtype_of_pt(pt_dtype_of(t), &want) != 0) {
    pith_fail(err, "%s: tensor '%s': the %s has a dtype safetensors cannot hold", st_path(f), key, what);
    return NULL;
  }
  if (s->dtype != want) {
    pith_fail(err, "%s: tensor '%s' is %s in the checkpoint but %s in the %s", st_path(f), key,
              st_dtype_name(s->dtype), st_dtype_name(want), what);
    return NULL;
  }
  pt_shape sh = pt_shape_of(t);
  int same = sh.ndim == s->ndim;
  for (int i = 0; same && i < sh.ndim; i++) same = sh.d[i] == s->shape[i];
  if (!same) {
    pith_fail(err, "%s: tensor '%s' has shape %s in the checkpoint but %s in the %s", st_path(f), key,
              shape_str(s->ndim, s->shape, a, sizeof a), shape_str(sh.ndim, sh.d, b, sizeof b), what);
    return NULL;
  }
  return s;
}

// A file listed in state.json's "files" must have the size recorded there.
static int check_sizes(const char *dir, const cJSON *files, const char *spath, pith_err *err) {
  const cJSON *f;
  char path[TS_PATH];
  cJSON_ArrayForEach(f, files) {
    int64_t want;
    struct stat st;
    if (!f->string || strchr(f->string, '/') || json_int64(f, &want) != 0)
      return pith_fail(err, "%s: \"files\" has a bad entry", spath);
    if (join(path, dir, f->string, err) != 0) return -1;
    if (stat(path, &st) != 0) return pith_fail(err, "%s: missing (%s lists it): %s", path, TS_STATE, strerror(errno));
    if ((int64_t)st.st_size != want)
      return pith_fail(err, "%s: file is %lld bytes but %s recorded %lld: truncated or overwritten", path,
                       (long long)st.st_size, TS_STATE, (long long)want);
  }
  return 0;
}

typedef struct {
  cJSON *root;
  st_file *params, *optim;
  uint8_t *rng;
  char *cursor;
} load_ctx;

static void load_ctx_free(load_ctx *c) {
  cJSON_Delete(c->root);
  st_close(c->params);
  st_close(c->optim);
  free(c->rng);
  free(c->cursor);
}

// Read and check everything; copies nothing.
static int load_check(const char *dir, pt_tensor *const *params, const char *const *names, int n, pt_adamw *opt,
                      load_ctx *c, int64_t *step, int64_t *opt_steps, size_t *rng_len, pith_err *err) {
  char path[TS_PATH], spath[TS_PATH];
  struct stat st;
  if (stat(dir, &st) != 0) return pith_fail(err, "%s: not a checkpoint folder: %s", dir, strerror(errno));
  if (!S_ISDIR(st.st_mode)) return pith_fail(err, "%s: not a checkpoint folder (not a folder)", dir);
  if (join(path, dir, TRAIN_STATE_DONE, err) != 0) return -1;
  if (!pith_is_file(path))
    return pith_fail(err, "%s: no %s marker: the checkpoint is incomplete (an interrupted save?)", dir,
                     TRAIN_STATE_DONE);

  if (join(spath, dir, TS_STATE, err) != 0) return -1;
  size_t len;
  char *text = pith_read_file(spath, &len, err);
  if (!text) return -1;
  c->root = cJSON_Parse(text);
  free(text);
  if (!cJSON_IsObject(c->root)) return pith_fail(err, "%s: not a JSON object", spath);
  const cJSON *fmt = field(c->root, "format"), *ver = field(c->root, "format_version");
  if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, TRAIN_STATE_FORMAT) != 0)
    return pith_fail(err, "%s: not a pith training checkpoint (format is %s%s%s, want '%s')", spath,
                     cJSON_IsString(fmt) ? "'" : "", cJSON_IsString(fmt) ? fmt->valuestring : "missing",
                     cJSON_IsString(fmt) ? "'" : "", TRAIN_STATE_FORMAT);
  int64_t version;
  if (json_int64(ver, &version) != 0 || version < 1)
    return pith_fail(err, "%s: \"format_version\" is missing or not a positive integer", spath);
  if (version > TRAIN_STATE_VERSION)
    return pith_fail(err, "%s: format version %lld is newer than this pith reads (%d): resume with the pith "
                     "that wrote it or a newer one", spath, (long long)version, TRAIN_STATE_VERSION);
  if (json_int64(field(c->root, "step"), step) != 0)
    return pith_fail(err, "%s: \"step\" is missing or not a non-negative integer", spath);
  const cJSON *files = field(c->root, "files");
  if (files && !cJSON_IsObject(files)) return pith_fail(err, "%s: \"files\" is not an object", spath);
  if (files && check_sizes(dir, files, spath, err) != 0) return -1;

  const cJSON *cur = field(c->root, "loader_cursor");
  if (cur && !cJSON_IsString(cur)) return pith_fail(err, "%s: \"loader_cursor\" is not a string", spath);
  if (cur && !(c->cursor = strdup(cur->valuestring))) return pith_fail(err, "%s: out of memory", spath);
  const cJSON *rng = field(c->root, "rng");
  *rng_len = 0;
  if (rng) {
    const cJSON *enc = field(rng, "encoding"), *data = field(rng, "data");
    int64_t bytes;
    if (!cJSON_IsString(enc) || strcmp(enc->valuestring, "base64") != 0 || !cJSON_IsString(data) ||
        json_int64(field(rng, "bytes"), &bytes) != 0)
      return pith_fail(err, "%s: \"rng\" must be {\"encoding\": \"base64\", \"bytes\": N, \"data\": ...}", spath);
    c->rng = b64_decode(data->valuestring, rng_len);
    if (!c->rng || (int64_t)*rng_len != bytes)
      return pith_fail(err, "%s: \"rng\" data is not valid base64 of %lld bytes", spath, (long long)bytes);
  }

  for (int i = 0; i < n; i++) {
    if (!names[i] || !params[i]) return pith_fail(err, "%s: model tensor %d has no name or is NULL", dir, i);
    for (int j = 0; j < i; j++)
      if (!strcmp(names[i], names[j]))
        return pith_fail(err, "%s: the model names two tensors '%s' (%d and %d)", dir, names[i], j, i);
  }

  if (join(path, dir, TS_PARAMS, err) != 0) return -1;
  if (!(c->params = st_open(path, err))) return -1;
  for (int i = 0; i < n; i++)
    if (!match_tensor(c->params, names[i], params[i], "model", err)) return -1;
  if (st_count(c->params) != n) {
    // Every model name was found and names are unique, so the file has extra tensors.
    for (int i = 0; i < st_count(c->params); i++) {
      const char *sn = st_at(c->params, i)->name;
      int found = 0;
      for (int j = 0; j < n && !found; j++) found = !strcmp(sn, names[j]);
      if (!found)
        return pith_fail(err, "%s: tensor '%s' is in the checkpoint but not among the model's %d trainable "
                         "tensors (names must match exactly)", path, sn, n);
    }
  }

  *opt_steps = -1;
  if (opt) {
    if (join(path, dir, TS_OPTIM, err) != 0) return -1;
    if (!field(c->root, "optimizer_steps") || !pith_is_file(path))
      return pith_fail(err, "%s: the checkpoint has no optimizer state (saved without an optimizer)", path);
    if (!(c->optim = st_open(path, err))) return -1;
    const char *ms = st_metadata(c->optim, "steps");
    char *end = NULL;
    long long v = ms ? strtoll(ms, &end, 10) : -1;
    if (!ms || end == ms || *end || v < 0) return pith_fail(err, "%s: metadata \"steps\" is missing or not a count", path);
    *opt_steps = v;
    char key[1100];
    for (int i = 0; i < n; i++) {
      pt_tensor *m = pt_adamw_exp_avg(opt, i), *s = pt_adamw_exp_avg_sq(opt, i);
      if (!m || !s)
        return pith_fail(err, "%s: the optimizer has no state for tensor %d ('%s'): build it over the same %d "
                         "tensors, in order", path, i, names[i], n);
      snprintf(key, sizeof key, "exp_avg.%s", names[i]);
      if (!match_tensor(c->optim, key, m, "optimizer", err)) return -1;
      snprintf(key, sizeof key, "exp_avg_sq.%s", names[i]);
      if (!match_tensor(c->optim, key, s, "optimizer", err)) return -1;
    }
    if (st_count(c->optim) != 2 * n)
      return pith_fail(err, "%s: holds %d tensors, want %d (exp_avg and exp_avg_sq of each of the model's %d)",
                       path, st_count(c->optim), 2 * n, n);
  }
  return 0;
}

static int copy_in(pt_tensor *dst, const st_tensor *src, const char *file, pith_err *err) {
  if (st_numel(src) == 0) return 0;
  pt_shape sh = pt_shape_of(dst);
  pt_scope sc = pt_scope_begin();
  pt_tensor *t = pt_from_data(src->data, pt_dtype_of(dst), sh, PT_CPU);
  int rc = t ? pt_copy_(dst, t) : -1;
  if (rc != 0 || !pt_ok()) rc = fail_shim(err, file, src->name);
  pt_scope_end(sc);
  return rc;
}

int train_state_load(const char *ckpt_dir, pt_tensor *const *params, const char *const *names, int n,
                     pt_adamw *opt, int64_t *step, char **loader_cursor, void **rng, size_t *rng_len,
                     pith_err *err) {
  if (step) *step = 0;
  if (loader_cursor) *loader_cursor = NULL;
  if (rng) *rng = NULL;
  if (rng_len) *rng_len = 0;
  if (!ckpt_dir || n < 0 || (n > 0 && (!params || !names)))
    return pith_fail(err, "train_state_load: NULL argument");
  if (!pt_ok())
    return pt_fail(err, "train_state_load: %s: a shim error was pending before the call", ckpt_dir);
  load_ctx c = {0};
  int64_t st = 0, opt_steps = -1;
  size_t rlen = 0;
  int rc = load_check(ckpt_dir, params, names, n, opt, &c, &st, &opt_steps, &rlen, err);
  for (int i = 0; i < n && rc == 0; i++)
    rc = copy_in(params[i], st_find(c.params, names[i]), st_path(c.params), err);
  if (opt && rc == 0) {
    char key[1100];
    for (int i = 0; i < n && rc == 0; i++) {
      snprintf(key, sizeof key, "exp_avg.%s", names[i]);
      rc = copy_in(pt_adamw_exp_avg(opt, i), st_find(c.optim, key), st_path(c.optim), err);
      snprintf(key, sizeof key, "exp_avg_sq.%s", names[i]);
      if (rc == 0) rc = copy_in(pt_adamw_exp_avg_sq(opt, i), st_find(c.optim, key), st_path(c.optim), err);
    }
    if (rc == 0 && pt_adamw_set_steps(opt, opt_steps) != 0) rc = fail_shim(err, ckpt_dir, "(steps)");
  }
  if (rc == 0) {
    if (step) *step = st;
    if (loader_cursor) *loader_cursor = c.cursor, c.cursor = NULL;
    if (rng) *rng = c.rng, c.rng = NULL;
    if (rng_len) *rng_len = rlen;
  }
  load_ctx_free(&c);
  return rc;
}
