// tb_events: TFRecord framing, TensorBoard events through protobuf-c, the metrics.jsonl mirror
// (see tb_events.h).
#define _GNU_SOURCE  // gethostname, dirent's d_name under -std=c11 too
#include "tb_events.h"

#include <cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tb_event.pb-c.h"

// ---- CRC-32C and the record framing ----

static uint32_t crc_table[256];

static void crc_init(void) {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;  // Castagnoli, reflected
    crc_table[i] = c;
  }
}

uint32_t tb_crc32c(const void *data, size_t len) {
  if (!crc_table[1]) crc_init();  // idempotent: a race writes the same values
  const uint8_t *p = data;
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < len; i++) c = crc_table[(c ^ p[i]) & 0xff] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

uint32_t tb_crc32c_masked(const void *data, size_t len) {
  uint32_t c = tb_crc32c(data, len);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

static void put_le(uint8_t *p, uint64_t v, int n) {
  for (int i = 0; i < n; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; i++) v |= (uint64_t)p[i] << (8 * i);
  return v;
}

// The 12 bytes before a record's data and the 4 after it.
static void frame(const void *data, size_t len, uint8_t head[12], uint8_t tail[4]) {
  put_le(head, len, 8);
  put_le(head + 8, tb_crc32c_masked(head, 8), 4);
  put_le(tail, tb_crc32c_masked(data, len), 4);
}

int tb_record_write(FILE *f, const char *path, const void *data, size_t len, pith_err *err) {
  uint8_t head[12], tail[4];
  frame(data, len, head, tail);
  if (fwrite(head, 1, 12, f) != 12 || fwrite(data, 1, len, f) != len || fwrite(tail, 1, 4, f) != 4)
    return pith_fail(err, "%s: cannot write: %s", path, strerror(errno));
  return 0;
}

int tb_record_read(FILE *f, const char *path, void **data, size_t *len, pith_err *err) {
  *data = NULL;
  *len = 0;
  long at = ftell(f);
  uint8_t head[12], tail[4];
  if (fread(head, 1, 12, f) != 12) return 0;  // the end, or a header cut short
  if (get_le(head + 8, 4) != tb_crc32c_masked(head, 8))
    return pith_fail(err, "%s: the record at byte %ld: its length's CRC does not match (not an events file, or damaged)",
                     path, at);
  uint64_t n = get_le(head, 8);
  if (n > (uint64_t)1 << 30)
    return pith_fail(err, "%s: the record at byte %ld claims %llu bytes", path, at, (unsigned long long)n);
  uint8_t *buf = malloc(n ? n : 1);
  if (!buf) return pith_fail(err, "%s: out of memory for a record of %llu bytes", path, (unsigned long long)n);
  if (fread(buf, 1, n, f) != n || fread(tail, 1, 4, f) != 4) {  // cut short by a kill: the end
    free(buf);
    return 0;
  }
  if (get_le(tail, 4) != tb_crc32c_masked(buf, n)) {
    free(buf);
    return pith_fail(err, "%s: the record at byte %ld: its data's CRC does not match (damaged)", path, at);
  }
  *data = buf;
  *len = n;
  return 1;
}

// ---- the writer ----

struct tb_writer {
  FILE *f;
  char path[PATH_MAX];
};

static double wall_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int is_events_file(const char *name) { return !strncmp(name, TB_FILE_PREFIX, strlen(TB_FILE_PREFIX)); }

static int write_event(tb_writer *w, const Tensorboard__Event *ev, pith_err *err) {
  size_t n = tensorboard__event__get_packed_size(ev);
  uint8_t *buf = malloc(n ? n : 1);
  if (!buf) return pith_fail(err, "%s: out of memory for an event", w->path);
  tensorboard__event__pack(ev, buf);
  int rc = tb_record_write(w->f, w->path, buf, n, err);
  free(buf);
  return rc;
}

tb_writer *tb_writer_open(const char *dir, pith_err *err) {
  DIR *d = opendir(dir);
  if (!d) return pith_fail(err, "%s: cannot list: %s", dir, strerror(errno)), NULL;
  long long newest = -1;
  for (struct dirent *e; (e = readdir(d));) {
    if (!is_events_file(e->d_name)) continue;
    long long t = strtoll(e->d_name + strlen(TB_FILE_PREFIX), NULL, 10);
    if (t > newest) newest = t;
  }
  closedir(d);
  long long t = (long long)time(NULL);
  if (t <= newest) t = newest + 1;
  char host[256] = "localhost";
  if (gethostname(host, sizeof host - 1) || !*host) strcpy(host, "localhost");
  host[sizeof host - 1] = 0;
  for (char *c = host; *c; c++)
    if (*c == '/') *c = '_';
  tb_writer *w = calloc(1, sizeof *w);
  if (!w) return pith_fail(err, "%s: out of memory", dir), NULL;
  if (snprintf(w->path, sizeof w->path, "%s/" TB_FILE_PREFIX "%010lld.%s", dir, t, host) >= (int)sizeof w->path) {
    free(w);
    return pith_fail(err, "%s: path too long for an events file", dir), NULL;
  }
  if (!(w->f = fopen(w->path, "wbx"))) {  // x: never append to another writer's file
    pith_fail(err, "%s: cannot create: %s", w->path, strerror(errno));
    free(w);
    return NULL;
  }
  Tensorboard__Event ev = TENSORBOARD__EVENT__INIT;
  ev.wall_time = wall_now();
  ev.what_case = TENSORBOARD__EVENT__WHAT_FILE_VERSION;
  ev.file_version = TB_FILE_VERSION;
  if (write_event(w, &ev, err) || tb_writer_flush(w, err)) {
    tb_writer_close(w, NULL);
    return NULL;
  }
  return w;
}

const char *tb_writer_path(const tb_writer *w) { return w->path; }

int tb_writer_scalar(tb_writer *w, int64_t step, const char *tag, float value, pith_err *err) {
  Tensorboard__Summary__Value v = TENSORBOARD__SUMMARY__VALUE__INIT;
  v.tag = (char *)tag;
  v.value_case = TENSORBOARD__SUMMARY__VALUE__VALUE_SIMPLE_VALUE;
  v.simple_value = value;
  Tensorboard__Summary__Value *vs[1] = {&v};
  Tensorboard__Summary s = TENSORBOARD__SUMMARY__INIT;
  s.n_value = 1;
  s.value = vs;
  Tensorboard__Event ev = TENSORBOARD__EVENT__INIT;
  ev.wall_time = wall_now();
  ev.step = step;
  ev.what_case = TENSORBOARD__EVENT__WHAT_SUMMARY;
  ev.summary = &s;
  return write_event(w, &ev, err);
}

int tb_writer_flush(tb_writer *w, pith_err *err) {
  if (fflush(w->f)) return pith_fail(err, "%s: cannot write: %s", w->path, strerror(errno));
  return 0;
}

int tb_writer_close(tb_writer *w, pith_err *err) {
  if (!w) return 0;
  int rc = 0;
  if (w->f && fclose(w->f)) rc = pith_fail(err, "%s: cannot write: %s", w->path, strerror(errno));
  free(w);
  return rc;
}

// ---- resume: truncation ----

typedef struct {
  uint8_t *p;
  size_t len, cap;
} bytes;

static int bytes_add(bytes *b, const void *data, size_t n) {
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 4096;
    while (cap < b->len + n) cap *= 2;
    uint8_t *p = realloc(b->p, cap);
    if (!p) return -1;
    b->p = p, b->cap = cap;
  }
  memcpy(b->p + b->len, data, n);
  b->len += n;
  return 0;
}

// One file: the records at steps <= step, rewritten when any other was there.
static int truncate_file(const char *path, int64_t step, pith_err *err) {
  FILE *f = fopen(path, "rb");
  if (!f) return pith_fail(err, "%s: cannot read: %s", path, strerror(errno));
  bytes kept = {0};
  int rc = 0;
  for (;;) {
    void *data;
    size_t n;
    int r = tb_record_read(f, path, &data, &n, err);
    if (r < 0) {
      rc = -1;
      break;
    }
    if (r == 0) break;
    Tensorboard__Event *ev = tensorboard__event__unpack(NULL, n, data);
    if (!ev) {
      free(data);
      rc = pith_fail(err, "%s: a record is not a TensorBoard event", path);
      break;
    }
    if (ev->step <= step) {
      uint8_t head[12], tail[4];
      frame(data, n, head, tail);
      if (bytes_add(&kept, head, 12) || bytes_add(&kept, data, n) || bytes_add(&kept, tail, 4))
        rc = pith_fail(err, "%s: out of memory", path);
    }
    tensorboard__event__free_unpacked(ev, NULL);
    free(data);
    if (rc) break;
  }
  struct stat st;  // shorter when a record was dropped or a cut one left out
  int changed = !rc && (fstat(fileno(f), &st) || (size_t)st.st_size != kept.len);
  fclose(f);
  if (!rc && changed) rc = pith_write_file_atomic(path, kept.p ? (void *)kept.p : (void *)"", kept.len, err);
  free(kept.p);
  return rc;
}

// Calls fn on the path of every events file of dir.
static int each_events_file(const char *dir, int (*fn)(const char *path, int64_t step, pith_err *err), int64_t step,
                            pith_err *err) {
  DIR *d = opendir(dir);
  if (!d) return errno == ENOENT ? 0 : pith_fail(err, "%s: cannot list: %s", dir, strerror(errno));
  int rc = 0;
  for (struct dirent *e; !rc && (e = readdir(d));) {
    if (!is_events_file(e->d_name)) continue;
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path)
      rc = pith_fail(err, "%s/%s: path too long", dir, e->d_name);
    else
      rc = fn(path, step, err);
  }
  closedir(d);
  return rc;
}

int tb_truncate_dir(const char *dir, int64_t step, pith_err *err) { return each_events_file(dir, truncate_file, step, err); }

static int remove_file(const char *path, int64_t step, pith_err *err) {
  (void)step;
  if (unlink(path) && errno != ENOENT) return pith_fail(err, "%s: cannot remove: %s", path, strerror(errno));
  return 0;
}

int tb_remove_dir(const char *dir, pith_err *err) { return each_events_file(dir, remove_file, 0, err); }

static int count_file(const char *path, int64_t step, pith_err *err) {
  (void)path, (void)step, (void)err;
  return 1;  // stops the listing: one is enough
}

// ---- the metrics.jsonl mirror ----

struct tb_metrics {
  tb_writer *w;
  FILE *in;          // metrics.jsonl, read from offset
  long offset;       // bytes of metrics.jsonl already mirrored
  char path[PATH_MAX];
};

tb_metrics *tb_metrics_open(const char *run_dir, const char *metrics_path, int64_t resume_step, pith_err *err) {
  int had = 0;
  if (resume_step < 0) {
    if (tb_remove_dir(run_dir, err)) return NULL;
  } else {
    had = each_events_file(run_dir, count_file, 0, err) > 0;
    if (tb_truncate_dir(run_dir, resume_step, err)) return NULL;
  }
  tb_metrics *m = calloc(1, sizeof *m);
  if (!m) return pith_fail(err, "%s: out of memory", run_dir), NULL;
  snprintf(m->path, sizeof m->path, "%s", metrics_path);
  if (!(m->in = fopen(metrics_path, "rb"))) {
    pith_fail(err, "%s: cannot read: %s", metrics_path, strerror(errno));
    free(m);
    return NULL;
  }
  if (had) {  // what metrics.jsonl holds so far is in the older files already
    fseek(m->in, 0, SEEK_END);
    m->offset = ftell(m->in);
  }
  if (!(m->w = tb_writer_open(run_dir, err))) {
    fclose(m->in);
    free(m);
    return NULL;
  }
  return m;
}

// One line of metrics.jsonl: a scalar per number but "step".
static int mirror_line(tb_metrics *m, const char *line, size_t len, long at, pith_err *err) {
  cJSON *j = cJSON_ParseWithLength(line, len);
  cJSON *step = cJSON_GetObjectItemCaseSensitive(j, "step");
  int rc = 0;
  if (!cJSON_IsObject(j) || !cJSON_IsNumber(step))
    rc = pith_fail(err, "%s: the line at byte %ld is not a JSON object with a step", m->path, at);
  for (cJSON *v = j ? j->child : NULL; !rc && v; v = v->next)
    if (v != step && cJSON_IsNumber(v) && v->string)
      rc = tb_writer_scalar(m->w, (int64_t)step->valuedouble, v->string, (float)v->valuedouble, err);
  cJSON_Delete(j);
  return rc;
}

int tb_metrics_sync(tb_metrics *m, FILE *metrics, pith_err *err) {
  if (!m) return 0;
  if (metrics && fflush(metrics)) return pith_fail(err, "%s: cannot write: %s", m->path, strerror(errno));
  if (fseek(m->in, m->offset, SEEK_SET)) return pith_fail(err, "%s: cannot read: %s", m->path, strerror(errno));
  bytes b = {0};
  char chunk[8192];
  for (size_t n; (n = fread(chunk, 1, sizeof chunk, m->in)) > 0;)
    if (bytes_add(&b, chunk, n)) {
      free(b.p);
      return pith_fail(err, "%s: out of memory", m->path);
    }
  int rc = 0;
  size_t pos = 0;
  while (!rc && pos < b.len) {
    const uint8_t *nl = memchr(b.p + pos, '\n', b.len - pos);
    if (!nl) break;  // a line still being written: the next sync takes it
    size_t end = (size_t)(nl - b.p);
    rc = mirror_line(m, (const char *)b.p + pos, end - pos, m->offset + (long)pos, err);
    pos = end + 1;
  }
  if (!rc) m->offset += (long)pos;
  free(b.p);
  return rc ? rc : tb_writer_flush(m->w, err);
}

int tb_metrics_close(tb_metrics *m, FILE *metrics, pith_err *err) {
  if (!m) return 0;
  int rc = tb_metrics_sync(m, metrics, err);
  if (tb_writer_close(m->w, rc ? NULL : err)) rc = -1;
  fclose(m->in);
  free(m);
  return rc;
}
