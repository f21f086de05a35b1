// corpus: the HDF5 corpus writer and reader. Layout (see data/README.md): one 1-D dataset per
// column at the root; ragged columns as NAME (flat values) + NAME_offsets (rows + 1, int64).
// HDF5's automatic error printing is turned off process-wide on first use: failures come back as
// pith_err messages that quote HDF5's innermost error and the pith source line.
#include "corpus.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <libgen.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sha256.h"
#include "utf8.h"

// ---------------------------------------------------------------------------------------------
// Names and small shared helpers

// Dataset names of each ragged column: tokens (NULL: the column has no tokens) and text.
static const struct { const char *tokens, *text; } COL_NAMES[CORPUS_N_COLS] = {
  [CORPUS_COL_ID] = {NULL, "id"},
  [CORPUS_COL_DOC] = {"tokens", "text"},
  [CORPUS_COL_CONTEXT] = {"context_tokens", "context_text"},
  [CORPUS_COL_QUESTION] = {"question_tokens", "question_text"},
  [CORPUS_COL_ANSWER] = {"answer_tokens", "answer_text"},
};

// 16 KiB chunks keep a random single-record read cheap (one small chunk inflated; 3x faster than
// 64 KiB in a shuffled-loader benchmark, for ~25% more disk). Buffers hold FLUSH_CHUNKS chunks.
enum { CHUNK_BYTES = 1 << 14, FLUSH_CHUNKS = 32, DEFLATE_LEVEL = 4 };

static int col_in_kind(corpus_col col, corpus_kind kind) {
  if (col == CORPUS_COL_ID) return 1;
  if (col == CORPUS_COL_DOC) return kind == CORPUS_DOCUMENTS;
  return kind == CORPUS_QA;
}

static corpus_col main_col(corpus_kind kind) {
  return kind == CORPUS_DOCUMENTS ? CORPUS_COL_DOC : CORPUS_COL_CONTEXT;
}

const char *corpus_kind_name(corpus_kind kind) {
  return kind == CORPUS_DOCUMENTS ? "documents" : kind == CORPUS_QA ? "qa" : "?";
}

const char *corpus_split_name(int split) {
  static const char *NAMES[] = {"train", "val", "test"};
  return split >= 0 && split < 3 ? NAMES[split] : "?";
}

int corpus_split_of_id(const char *id, double val_fraction, double test_fraction) {
  uint8_t d[SHA256_DIGEST_SIZE];
  sha256_hash_buffer(id, strlen(id), d);
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = v << 8 | d[i];
  int64_t bucket = (int64_t)(v % CORPUS_SPLIT_SCALE);
  int64_t test_cut = llround(test_fraction * CORPUS_SPLIT_SCALE);
  int64_t val_cut = llround((test_fraction + val_fraction) * CORPUS_SPLIT_SCALE);
  if (bucket < test_cut) return CORPUS_SPLIT_TEST;
  if (bucket < val_cut) return CORPUS_SPLIT_VAL;
  return CORPUS_SPLIT_TRAIN;
}

static char *str_dup(const char *s) {
  size_t n = strlen(s) + 1;
  char *p = malloc(n);
  if (p) memcpy(p, s, n);
  return p;
}

// Grow *buf to hold `need` elements of `elem` bytes (doubling). 0 ok, -1 out of memory.
static int grow(void **buf, int64_t *cap, int64_t need, size_t elem) {
  if (need <= *cap) return 0;
  int64_t n = *cap > 0 ? *cap : 16;
  while (n < need) n *= 2;
  void *p = realloc(*buf, (size_t)n * elem);
  if (!p) return -1;
  *buf = p;
  *cap = n;
  return 0;
}

// ---------------------------------------------------------------------------------------------
// HDF5 helpers

static void h5_quiet(void) {
  static int done = 0;
  if (!done) H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  done = 1;
}

static herr_t h5_innermost(unsigned n, const H5E_error2_t *e, void *data) {
  if (n == 0) snprintf(data, 256, "%s (%s)", e->desc ? e->desc : "?", e->func_name ? e->func_name : "?");
  return 0;
}

// HDF5's innermost error, captured right after a failing call: cleanup calls (H5Sclose, ...)
// clear HDF5's error stack before the failure is reported.
static _Thread_local char h5_why[256];

static void h5_capture(void) {
  h5_why[0] = 0;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, h5_innermost, h5_why);
}

// Fail with the formatted message, HDF5's innermost error and where in pith it happened.
static int h5_fail_at(pith_err *err, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int h5_fail_at(pith_err *err, const char *file, int line, const char *fmt, ...) {
  char what[600];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  if (!h5_why[0]) h5_capture();
  int r = pith_fail(err, "%s: HDF5: %s [%s:%d]", what, h5_why[0] ? h5_why : "unknown error", file, line);
  h5_why[0] = 0;
  return r;
}
#define H5_FAIL(err, ...) h5_fail_at(err, __FILE__, __LINE__, __VA_ARGS__)

static void h5_close(hid_t *id, herr_t (*closer)(hid_t)) {
  if (*id >= 0) closer(*id);
  *id = H5I_INVALID_HID;
}

// A file access list whose H5Fclose fails while objects are open: a leaked handle shows up.
static hid_t h5_fapl(void) {
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  if (fapl >= 0) {
    H5Pset_fclose_degree(fapl, H5F_CLOSE_SEMI);
    H5Pset_cache(fapl, 0, 521, 2 << 20, 0.75);  // 2 MiB chunk cache per open dataset
  }
  return fapl;
}

static hid_t str_type(void) {
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, H5T_VARIABLE);
  H5Tset_cset(t, H5T_CSET_UTF8);
  return t;
}

// Write a root attribute: `n` values (n < 0: a scalar) of memory type `mtype` stored as `ftype`.
static int attr_write(hid_t obj, const char *name, hid_t ftype, hid_t mtype, int64_t n,
                      const void *value) {
  hsize_t dim = n < 0 ? 1 : (hsize_t)n;
  hid_t space = n < 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &dim, NULL);
  hid_t a = H5Acreate2(obj, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT);
  herr_t r = a < 0 ? -1 : n == 0 ? 0 : H5Awrite(a, mtype, value);
  if (r < 0) h5_capture();
  if (a >= 0) H5Aclose(a);
  H5Sclose(space);
  return r < 0 ? -1 : 0;
}

static int attr_write_str(hid_t obj, const char *name, const char *value) {
  hid_t t = str_type();
  int r = attr_write(obj, name, t, t, -1, &value);
  H5Tclose(t);
  return r;
}

static int attr_write_strs(hid_t obj, const char *name, char *const *values, int n) {
  hid_t t = str_type();
  int r = attr_write(obj, name, t, t, n, values);
  H5Tclose(t);
  return r;
}

static int attr_write_i64(hid_t obj, const char *name, int64_t v) {
  return attr_write(obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, -1, &v);
}

static int attr_write_f64(hid_t obj, const char *name, double v) {
  return attr_write(obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, -1, &v);
}

// ---------------------------------------------------------------------------------------------
// Writer: buffered, extendible 1-D datasets

typedef struct {
  char name[64];
  hid_t dset;       // extendible 1-D dataset
  hid_t mtype;      // native memory type of its elements
  size_t elem;      // bytes per element
  int64_t chunk;    // elements per chunk
  uint8_t *buf;     // (cap * elem) elements not yet written
  int64_t n_buf, cap;
  int64_t n_file;   // elements already in the file
} wcol;

typedef struct {
  wcol data, offsets;
  int64_t total;    // values appended to data so far (= the last offset)
} wragged;

struct corpus_writer {
  char *path, *partial;
  corpus_writer_config cfg;   // strings below are owned copies
  char *tokenizer_sha256, *command;
  hid_t file;
  int failed;                 // sticky: an append failed, the file will not be committed
  wragged rag[CORPUS_N_COLS][2];   // [column][0 tokens, 1 text]
  wcol split, answer_offsets, answer_char_start;
  int64_t n_records, n_answers, n_split[3];
  int n_sources;
  char **source_paths, **source_sha256;   // (n_sources)
};

static int wcol_create(corpus_writer *w, wcol *c, const char *name, hid_t ftype, hid_t mtype,
                       pith_err *err) {
  snprintf(c->name, sizeof c->name, "%s", name);
  c->mtype = mtype;
  c->elem = H5Tget_size(mtype);
  c->chunk = CHUNK_BYTES / (int64_t)c->elem;
  c->cap = c->chunk * FLUSH_CHUNKS;
  c->buf = malloc((size_t)c->cap * c->elem);
  if (!c->buf) return pith_fail(err, "%s: out of memory", w->partial);
  hsize_t dim = 0, maxdim = H5S_UNLIMITED, chunk = (hsize_t)c->chunk;
  hid_t space = H5Screate_simple(1, &dim, &maxdim);
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  H5Pset_chunk(dcpl, 1, &chunk);
  if (c->elem > 1) H5Pset_shuffle(dcpl);
  H5Pset_deflate(dcpl, DEFLATE_LEVEL);
  c->dset = H5Dcreate2(w->file, name, ftype, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  if (c->dset < 0) h5_capture();
  H5Pclose(dcpl);
  H5Sclose(space);
  if (c->dset < 0) return H5_FAIL(err, "%s: cannot create dataset '%s'", w->partial, name);
  return 0;
}

// Write the buffered elements at the end of the dataset.
static int wcol_flush(corpus_writer *w, wcol *c, pith_err *err) {
  if (c->n_buf == 0) return 0;
  hsize_t start = (hsize_t)c->n_file, count = (hsize_t)c->n_buf, size = start + count;
  if (H5Dset_extent(c->dset, &size) < 0) return H5_FAIL(err, "%s: cannot extend '%s'", w->partial, c->name);
  hid_t fspace = H5Dget_space(c->dset);
  hid_t mspace = H5Screate_simple(1, &count, NULL);
  herr_t r = H5Sselect_hyperslab(fspace, H5S_SELECT_SET, &start, NULL, &count, NULL);
  if (r >= 0) r = H5Dwrite(c->dset, c->mtype, mspace, fspace, H5P_DEFAULT, c->buf);
  if (r < 0) h5_capture();
  H5Sclose(mspace);
  H5Sclose(fspace);
  if (r < 0) return H5_FAIL(err, "%s: cannot write '%s'", w->partial, c->name);
  c->n_file += c->n_buf;
  c->n_buf = 0;
  return 0;
}

// Append n elements (data: (n) of the column's type). The buffer holds FLUSH_CHUNKS whole chunks
// and is flushed only when full, so every chunk but the last is written exactly once.
static int wcol_append(corpus_writer *w, wcol *c, const void *data, int64_t n, pith_err *err) {
  const uint8_t *p = data;
  while (n > 0) {
    int64_t take = c->cap - c->n_buf < n ? c->cap - c->n_buf : n;
    memcpy(c->buf + (size_t)c->n_buf * c->elem, p, (size_t)take * c->elem);
    c->n_buf += take;
    p += (size_t)take * c->elem;
    n -= take;
    if (c->n_buf == c->cap && wcol_flush(w, c, err) < 0) return -1;
  }
  return 0;
}

static void wcol_free(wcol *c) {
  h5_close(&c->dset, H5Dclose);
  free(c->buf);
  c->buf = NULL;
}

static int wragged_create(corpus_writer *w, wragged *r, const char *name, hid_t ftype, hid_t mtype,
                          pith_err *err) {
  char off[64];
  snprintf(off, sizeof off, "%s_offsets", name);
  int64_t zero = 0;
  r->total = 0;
  if (wcol_create(w, &r->data, name, ftype, mtype, err) < 0) return -1;
  if (wcol_create(w, &r->offsets, off, H5T_STD_I64LE, H5T_NATIVE_INT64, err) < 0) return -1;
  return wcol_append(w, &r->offsets, &zero, 1, err);
}

// One more row of n values (data: (n)).
static int wragged_append(corpus_writer *w, wragged *r, const void *data, int64_t n, pith_err *err) {
  if (wcol_append(w, &r->data, data, n, err) < 0) return -1;
  r->total += n;
  return wcol_append(w, &r->offsets, &r->total, 1, err);
}

static int writer_check_config(const corpus_writer_config *cfg, const char *path, pith_err *err) {
  if (cfg->kind != CORPUS_DOCUMENTS && cfg->kind != CORPUS_QA)
    return pith_fail(err, "%s: unknown corpus kind %d", path, (int)cfg->kind);
  if (!cfg->tokenizer_sha256 || !cfg->tokenizer_sha256[0])
    return pith_fail(err, "%s: the tokenizer fingerprint (tokenizer_sha256) is required", path);
  if (cfg->vocab_size <= 0 || cfg->vocab_size > (int64_t)INT32_MAX + 1)
    return pith_fail(err, "%s: vocab_size %lld is not in [1, 2^31]", path, (long long)cfg->vocab_size);
  double v = cfg->val_fraction, t = cfg->test_fraction;
  if (!(v >= 0 && v <= 1 && t >= 0 && t <= 1 && v + t <= 1))
    return pith_fail(err, "%s: split fractions val=%g test=%g must be in [0, 1] with a sum <= 1", path, v, t);
  return 0;
}

static int writer_create_datasets(corpus_writer *w, pith_err *err) {
  for (int col = 0; col < CORPUS_N_COLS; col++) {
    if (!col_in_kind(col, w->cfg.kind)) continue;
    if (COL_NAMES[col].tokens &&
        wragged_create(w, &w->rag[col][0], COL_NAMES[col].tokens, H5T_STD_I32LE, H5T_NATIVE_INT32, err) < 0)
      return -1;
    if (wragged_create(w, &w->rag[col][1], COL_NAMES[col].text, H5T_STD_U8LE, H5T_NATIVE_UINT8, err) < 0)
      return -1;
  }
  if (wcol_create(w, &w->split, "split", H5T_STD_U8LE, H5T_NATIVE_UINT8, err) < 0) return -1;
  if (w->cfg.kind != CORPUS_QA) return 0;
  int64_t zero = 0;
  if (wcol_create(w, &w->answer_offsets, "answer_offsets", H5T_STD_I64LE, H5T_NATIVE_INT64, err) < 0 ||
      wcol_append(w, &w->answer_offsets, &zero, 1, err) < 0)
    return -1;
  return wcol_create(w, &w->answer_char_start, "answer_char_start", H5T_STD_I64LE, H5T_NATIVE_INT64, err);
}

static void writer_init_handles(corpus_writer *w) {
  w->file = H5I_INVALID_HID;
  for (int col = 0; col < CORPUS_N_COLS; col++)
    for (int k = 0; k < 2; k++) w->rag[col][k].data.dset = w->rag[col][k].offsets.dset = H5I_INVALID_HID;
  w->split.dset = w->answer_offsets.dset = w->answer_char_start.dset = H5I_INVALID_HID;
}

corpus_writer *corpus_writer_create(const char *path, const corpus_writer_config *cfg, pith_err *err) {
  if (writer_check_config(cfg, path, err) < 0) return NULL;
  h5_quiet();
  corpus_writer *w = calloc(1, sizeof *w);
  if (!w) return pith_fail(err, "%s: out of memory", path), NULL;
  writer_init_handles(w);
  w->cfg = *cfg;
  w->path = str_dup(path);
  w->partial = malloc(strlen(path) + 9);
  w->tokenizer_sha256 = str_dup(cfg->tokenizer_sha256);
  w->command = str_dup(cfg->command ? cfg->command : "");
  if (!w->path || !w->partial || !w->tokenizer_sha256 || !w->command) {
    pith_fail(err, "%s: out of memory", path);
    corpus_writer_abort(w);
    return NULL;
  }
  sprintf(w->partial, "%s.partial", path);
  hid_t fapl = h5_fapl();
  w->file = H5Fcreate(w->partial, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
  if (w->file < 0) h5_capture();
  H5Pclose(fapl);
  if (w->file < 0) {
    H5_FAIL(err, "%s: cannot create", w->partial);
    corpus_writer_abort(w);
    return NULL;
  }
  if (writer_create_datasets(w, err) < 0) {
    corpus_writer_abort(w);
    return NULL;
  }
  return w;
}

int64_t corpus_writer_count(const corpus_writer *w) { return w ? w->n_records : 0; }

int corpus_writer_add_source(corpus_writer *w, const char *path, const char *sha256_hex, pith_err *err) {
  char hex[SHA256_HEX_SIZE];
  if (!sha256_hex) {
    if (sha256_hash_file(path, hex, err) < 0) return -1;
    sha256_hex = hex;
  }
  char **p = realloc(w->source_paths, (size_t)(w->n_sources + 1) * sizeof *p);
  if (p) w->source_paths = p;
  char **s = realloc(w->source_sha256, (size_t)(w->n_sources + 1) * sizeof *s);
  if (s) w->source_sha256 = s;
  if (!p || !s) return pith_fail(err, "%s: out of memory", w->partial);
  w->source_paths[w->n_sources] = str_dup(path);
  w->source_sha256[w->n_sources] = str_dup(sha256_hex);
  w->n_sources++;
  if (!w->source_paths[w->n_sources - 1] || !w->source_sha256[w->n_sources - 1]) {
    w->failed = 1;
    return pith_fail(err, "%s: out of memory", w->partial);
  }
  return 0;
}

// Validate a span before anything is appended, resolving text_len; *cps gets its code points.
static int check_span(corpus_writer *w, const char *id, const char *what, const corpus_span *s,
                      int64_t *text_len, int64_t *cps, pith_err *err) {
  if (s->n_tokens < 0 || (s->n_tokens > 0 && !s->tokens))
    return pith_fail(err, "%s: record '%s': %s has no tokens array for %lld tokens", w->path, id, what,
                     (long long)s->n_tokens);
  for (int64_t k = 0; k < s->n_tokens; k++)
    if (s->tokens[k] < 0 || s->tokens[k] >= w->cfg.vocab_size)
      return pith_fail(err, "%s: record '%s': %s token %lld is id %d, outside [0, vocab_size=%lld)", w->path,
                       id, what, (long long)k, (int)s->tokens[k], (long long)w->cfg.vocab_size);
  *text_len = s->text_len < 0 ? (s->text ? (int64_t)strlen(s->text) : 0) : s->text_len;
  if (*text_len > 0 && !s->text)
    return pith_fail(err, "%s: record '%s': %s text is NULL", w->path, id, what);
  int64_t bad = utf8_invalid_at(s->text, (size_t)*text_len);
  if (bad >= 0)
    return pith_fail(err, "%s: record '%s': %s text is not valid UTF-8 at byte %lld", w->path, id, what,
                     (long long)bad);
  *cps = (int64_t)utf8_count(s->text, (size_t)*text_len);
  return 0;
}

static int check_record_start(corpus_writer *w, const char *id, corpus_kind kind, pith_err *err) {
  if (w->failed) return pith_fail(err, "%s: an append failed before; close or abort to discard the file", w->partial);
  if (w->cfg.kind != kind)
    return pith_fail(err, "%s: cannot add a %s record to a %s corpus", w->path, corpus_kind_name(kind),
                     corpus_kind_name(w->cfg.kind));
  if (!id || !id[0]) return pith_fail(err, "%s: record %lld: empty id", w->path, (long long)w->n_records);
  return 0;
}

// Append the id and split of a new record (its columns are appended by the caller).
static int append_id_split(corpus_writer *w, const char *id, pith_err *err) {
  uint8_t split = (uint8_t)corpus_split_of_id(id, w->cfg.val_fraction, w->cfg.test_fraction);
  if (wragged_append(w, &w->rag[CORPUS_COL_ID][1], id, (int64_t)strlen(id), err) < 0) return -1;
  if (wcol_append(w, &w->split, &split, 1, err) < 0) return -1;
  w->n_split[split]++;
  w->n_records++;
  return 0;
}

static int append_span(corpus_writer *w, corpus_col col, const corpus_span *s, int64_t text_len,
                       pith_err *err) {
  if (wragged_append(w, &w->rag[col][0], s->tokens, s->n_tokens, err) < 0) return -1;
  return wragged_append(w, &w->rag[col][1], s->text, text_len, err);
}

int corpus_writer_add_doc(corpus_writer *w, const char *id, const corpus_span *doc, pith_err *err) {
  int64_t len, cps;
  if (check_record_start(w, id, CORPUS_DOCUMENTS, err) < 0 || check_span(w, id, "document", doc, &len, &cps, err) < 0 ||
      append_id_split(w, id, err) < 0 || append_span(w, CORPUS_COL_DOC, doc, len, err) < 0) {
    w->failed = 1;
    return -1;
  }
  return 0;
}

static int check_answers(corpus_writer *w, const char *id, int64_t context_cps, const corpus_answer *answers,
                         int n_answers, int64_t *lens, pith_err *err) {
  if (n_answers < 0 || (n_answers > 0 && !answers))
    return pith_fail(err, "%s: record '%s': bad answers array (%d answers)", w->path, id, n_answers);
  for (int a = 0; a < n_answers; a++) {
    int64_t cps;
    char what[32];
    snprintf(what, sizeof what, "answer %d", a);
    if (check_span(w, id, what, &answers[a].span, &lens[a], &cps, err) < 0) return -1;
    int64_t at = answers[a].char_start;
    if (at < -1 || (at >= 0 && at + cps > context_cps))
      return pith_fail(err, "%s: record '%s': answer %d at char %lld (+%lld chars) lies outside the context "
                       "(%lld chars)", w->path, id, a, (long long)at, (long long)cps, (long long)context_cps);
  }
  return 0;
}

static int append_qa(corpus_writer *w, const char *id, const corpus_span *context, int64_t context_len,
                     const corpus_span *question, int64_t question_len, const corpus_answer *answers,
                     int n_answers, const int64_t *answer_lens, pith_err *err) {
  if (append_id_split(w, id, err) < 0 || append_span(w, CORPUS_COL_CONTEXT, context, context_len, err) < 0 ||
      append_span(w, CORPUS_COL_QUESTION, question, question_len, err) < 0)
    return -1;
  for (int a = 0; a < n_answers; a++)
    if (append_span(w, CORPUS_COL_ANSWER, &answers[a].span, answer_lens[a], err) < 0 ||
        wcol_append(w, &w->answer_char_start, &answers[a].char_start, 1, err) < 0)
      return -1;
  w->n_answers += n_answers;
  return wcol_append(w, &w->answer_offsets, &w->n_answers, 1, err);
}

int corpus_writer_add_qa(corpus_writer *w, const char *id, const corpus_span *context,
                         const corpus_span *question, const corpus_answer *answers, int n_answers,
                         pith_err *err) {
  int64_t context_len, context_cps, question_len, question_cps;
  int64_t *lens = malloc(sizeof *lens * (size_t)(n_answers > 0 ? n_answers : 1));
  int r = lens ? 0 : pith_fail(err, "%s: out of memory", w->partial);
  if (r == 0 && (check_record_start(w, id, CORPUS_QA, err) < 0 ||
                 check_span(w, id, "context", context, &context_len, &context_cps, err) < 0 ||
                 check_span(w, id, "question", question, &question_len, &question_cps, err) < 0 ||
                 check_answers(w, id, context_cps, answers, n_answers, lens, err) < 0 ||
                 append_qa(w, id, context, context_len, question, question_len, answers, n_answers, lens, err) < 0))
    r = -1;
  if (r < 0) w->failed = 1;
  free(lens);
  return r;
}

static int writer_flush_all(corpus_writer *w, pith_err *err) {
  wcol *single[] = {&w->split, &w->answer_offsets, &w->answer_char_start};
  for (int col = 0; col < CORPUS_N_COLS; col++)
    for (int k = 0; k < 2; k++)
      if (w->rag[col][k].data.dset >= 0 &&
          (wcol_flush(w, &w->rag[col][k].data, err) < 0 || wcol_flush(w, &w->rag[col][k].offsets, err) < 0))
        return -1;
  for (int i = 0; i < 3; i++)
    if (single[i]->dset >= 0 && wcol_flush(w, single[i], err) < 0) return -1;
  return 0;
}

static int writer_write_attrs(corpus_writer *w, pith_err *err) {
  hid_t f = w->file;
  char rule[200];
  snprintf(rule, sizeof rule, "b = uint64_be(sha256(id)[0:8]) %% %d; test if b < round(test_fraction*%d), "
           "val if b < round((test_fraction+val_fraction)*%d), else train",
           CORPUS_SPLIT_SCALE, CORPUS_SPLIT_SCALE, CORPUS_SPLIT_SCALE);
  int32_t version = CORPUS_SCHEMA_VERSION;
  int r = 0;
  r |= attr_write_str(f, "schema", CORPUS_SCHEMA);
  r |= attr_write(f, "schema_version", H5T_STD_I32LE, H5T_NATIVE_INT32, -1, &version);
  r |= attr_write_str(f, "kind", corpus_kind_name(w->cfg.kind));
  r |= attr_write_str(f, "tokenizer_sha256", w->tokenizer_sha256);
  r |= attr_write_i64(f, "vocab_size", w->cfg.vocab_size);
  r |= attr_write_str(f, "command", w->command);
  r |= attr_write_strs(f, "source_paths", w->source_paths, w->n_sources);
  r |= attr_write_strs(f, "source_sha256", w->source_sha256, w->n_sources);
  r |= attr_write_f64(f, "val_fraction", w->cfg.val_fraction);
  r |= attr_write_f64(f, "test_fraction", w->cfg.test_fraction);
  r |= attr_write_str(f, "split_rule", rule);
  r |= attr_write_i64(f, "n_records", w->n_records);
  r |= attr_write_i64(f, "n_answers", w->n_answers);
  r |= attr_write_i64(f, "n_tokens", w->rag[main_col(w->cfg.kind)][0].total);
  r |= attr_write_i64(f, "n_train", w->n_split[CORPUS_SPLIT_TRAIN]);
  r |= attr_write_i64(f, "n_val", w->n_split[CORPUS_SPLIT_VAL]);
  r |= attr_write_i64(f, "n_test", w->n_split[CORPUS_SPLIT_TEST]);
  return r ? H5_FAIL(err, "%s: cannot write the root attributes", w->partial) : 0;
}

// Close every dataset and the file; frees the buffers. Returns -1 if the file did not close.
static int writer_close_handles(corpus_writer *w, pith_err *err) {
  for (int col = 0; col < CORPUS_N_COLS; col++)
    for (int k = 0; k < 2; k++) {
      wcol_free(&w->rag[col][k].data);
      wcol_free(&w->rag[col][k].offsets);
    }
  wcol_free(&w->split);
  wcol_free(&w->answer_offsets);
  wcol_free(&w->answer_char_start);
  if (w->file < 0) return 0;
  herr_t r = H5Fclose(w->file);
  w->file = H5I_INVALID_HID;
  return r < 0 ? H5_FAIL(err, "%s: cannot close", w->partial) : 0;
}

static void writer_free(corpus_writer *w) {
  for (int i = 0; i < w->n_sources; i++) {
    free(w->source_paths[i]);
    free(w->source_sha256[i]);
  }
  free(w->source_paths);
  free(w->source_sha256);
  free(w->tokenizer_sha256);
  free(w->command);
  free(w->path);
  free(w->partial);
  free(w);
}

// fsync a file, then rename it over `to` and fsync the folder, so the commit survives a crash.
static int commit_file(const char *from, const char *to, pith_err *err) {
  int fd = open(from, O_RDONLY);
  if (fd < 0 || fsync(fd) != 0) {
    int e = errno;
    if (fd >= 0) close(fd);
    return pith_fail(err, "%s: fsync failed: %s", from, strerror(e));
  }
  close(fd);
  if (rename(from, to) != 0) return pith_fail(err, "%s: rename to %s failed: %s", from, to, strerror(errno));
  char *copy = str_dup(to);
  int dfd = copy ? open(dirname(copy), O_RDONLY) : -1;
  if (dfd >= 0) {
    fsync(dfd);  // best effort: some filesystems refuse fsync on folders
    close(dfd);
  }
  free(copy);
  return 0;
}

void corpus_writer_abort(corpus_writer *w) {
  if (!w) return;
  writer_close_handles(w, NULL);
  if (w->partial) unlink(w->partial);
  writer_free(w);
}

int corpus_writer_close(corpus_writer *w, pith_err *err) {
  if (!w) return pith_fail(err, "corpus_writer_close: no writer");
  if (w->failed) {
    pith_fail(err, "%s: not written: an earlier append failed", w->path);
    corpus_writer_abort(w);
    return -1;
  }
  if (writer_flush_all(w, err) < 0 || writer_write_attrs(w, err) < 0 || writer_close_handles(w, err) < 0 ||
      commit_file(w->partial, w->path, err) < 0) {
    corpus_writer_abort(w);
    return -1;
  }
  writer_free(w);
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Reader

typedef struct {
  char name[64];
  hid_t dset;
  int64_t n;   // elements
} rdset;

struct corpus {
  char *path;
  hid_t file;
  corpus_info info;
  rdset data[CORPUS_N_COLS][2];   // [column][0 tokens, 1 text]: flat values
  rdset offs[CORPUS_N_COLS][2];   // their offsets (rows + 1)
  rdset split, answer_offsets, answer_char_start;
};

static int not_corpus(const char *path, const char *why, pith_err *err) {
  return pith_fail(err, "%s: not a pith corpus (%s)", path, why);
}

// Read a string attribute (variable or fixed length) into a malloc'd string.
static int attr_read_str(corpus *c, const char *name, char **out, pith_err *err) {
  hid_t a = H5Aopen(c->file, name, H5P_DEFAULT);
  if (a < 0) return pith_fail(err, "%s: corrupt pith corpus: root attribute '%s' missing", c->path, name);
  hid_t t = H5Aget_type(a), space = H5Aget_space(a);
  int ok = H5Tget_class(t) == H5T_STRING && H5Sget_simple_extent_npoints(space) == 1;
  char *val = NULL;
  if (ok && H5Tis_variable_str(t) > 0) {
    char *p = NULL;
    ok = H5Aread(a, t, &p) >= 0 && p;
    if (ok) val = str_dup(p);
    if (p) H5free_memory(p);
  } else if (ok) {
    size_t n = H5Tget_size(t);
    val = calloc(n + 1, 1);
    ok = val && H5Aread(a, t, val) >= 0;
  }
  H5Sclose(space);
  H5Tclose(t);
  H5Aclose(a);
  if (!ok || !val) {
    free(val);
    return pith_fail(err, "%s: corrupt pith corpus: root attribute '%s' is not a string", c->path, name);
  }
  *out = val;
  return 0;
}

// Read a numeric scalar attribute converted to `mtype` (NATIVE_INT64 / NATIVE_DOUBLE).
static int attr_read_num(corpus *c, const char *name, hid_t mtype, void *out, pith_err *err) {
  hid_t a = H5Aopen(c->file, name, H5P_DEFAULT);
  if (a < 0) return pith_fail(err, "%s: corrupt pith corpus: root attribute '%s' missing", c->path, name);
  hid_t t = H5Aget_type(a), space = H5Aget_space(a);
  H5T_class_t cls = H5Tget_class(t);
  int ok = (cls == H5T_INTEGER || cls == H5T_FLOAT) && H5Sget_simple_extent_npoints(space) == 1 &&
           H5Aread(a, mtype, out) >= 0;
  H5Sclose(space);
  H5Tclose(t);
  H5Aclose(a);
  return ok ? 0 : pith_fail(err, "%s: corrupt pith corpus: root attribute '%s' is not a number", c->path, name);
}

// Read a 1-D variable-length string array attribute: *out (*n) malloc'd strings.
static int attr_read_strs(corpus *c, const char *name, char ***out, int *n, pith_err *err) {
  hid_t a = H5Aopen(c->file, name, H5P_DEFAULT);
  if (a < 0) return pith_fail(err, "%s: corrupt pith corpus: root attribute '%s' missing", c->path, name);
  hid_t t = H5Aget_type(a), space = H5Aget_space(a);
  hssize_t count = H5Sget_simple_extent_npoints(space);
  int ok = H5Tget_class(t) == H5T_STRING && H5Tis_variable_str(t) > 0 && count >= 0;
  char **raw = ok ? calloc((size_t)count + 1, sizeof *raw) : NULL;
  char **vals = ok ? calloc((size_t)count + 1, sizeof *vals) : NULL;
  ok = ok && raw && vals && (count == 0 || H5Aread(a, t, raw) >= 0);
  for (hssize_t i = 0; ok && i < count; i++) ok = (vals[i] = str_dup(raw[i] ? raw[i] : "")) != NULL;
  for (hssize_t i = 0; raw && i < count; i++)
    if (raw[i]) H5free_memory(raw[i]);
  free(raw);
  H5Sclose(space);
  H5Tclose(t);
  H5Aclose(a);
  if (!ok) {
    for (hssize_t i = 0; vals && i < count; i++) free(vals[i]);
    free(vals);
    return pith_fail(err, "%s: corrupt pith corpus: root attribute '%s' is not a string array", c->path, name);
  }
  *out = vals;
  *n = (int)count;
  return 0;
}

// Schema name and version: the checks that tell "not ours" or "too new" from "broken".
static int read_schema(corpus *c, pith_err *err) {
  if (H5Aexists(c->file, "schema") <= 0) return not_corpus(c->path, "no root attribute 'schema'", err);
  char *schema = NULL;
  if (attr_read_str(c, "schema", &schema, err) < 0) return -1;
  int ours = !strcmp(schema, CORPUS_SCHEMA);
  free(schema);
  if (!ours) return not_corpus(c->path, "root attribute 'schema' is not \"" CORPUS_SCHEMA "\"", err);
  int64_t version = 0;
  if (attr_read_num(c, "schema_version", H5T_NATIVE_INT64, &version, err) < 0) return -1;
  if (version > CORPUS_SCHEMA_VERSION)
    return pith_fail(err, "%s: pith corpus schema version %lld is newer than this pith reads (%d); "
                     "update pith or re-create the file", c->path, (long long)version, CORPUS_SCHEMA_VERSION);
  if (version < 1) return pith_fail(err, "%s: corrupt pith corpus: schema_version %lld", c->path, (long long)version);
  c->info.schema_version = (int)version;
  return 0;
}

static int read_attrs(corpus *c, pith_err *err) {
  corpus_info *in = &c->info;
  char *kind = NULL;
  if (attr_read_str(c, "kind", &kind, err) < 0) return -1;
  int known = !strcmp(kind, "documents") || !strcmp(kind, "qa");
  in->kind = !strcmp(kind, "qa") ? CORPUS_QA : CORPUS_DOCUMENTS;
  if (!known) {
    pith_fail(err, "%s: corrupt pith corpus: unknown kind \"%s\"", c->path, kind);
    free(kind);
    return -1;
  }
  free(kind);
  if (attr_read_str(c, "tokenizer_sha256", &in->tokenizer_sha256, err) < 0 ||
      attr_read_str(c, "command", &in->command, err) < 0 ||
      attr_read_num(c, "vocab_size", H5T_NATIVE_INT64, &in->vocab_size, err) < 0 ||
      attr_read_num(c, "val_fraction", H5T_NATIVE_DOUBLE, &in->val_fraction, err) < 0 ||
      attr_read_num(c, "test_fraction", H5T_NATIVE_DOUBLE, &in->test_fraction, err) < 0 ||
      attr_read_num(c, "n_records", H5T_NATIVE_INT64, &in->n_records, err) < 0 ||
      attr_read_num(c, "n_answers", H5T_NATIVE_INT64, &in->n_answers, err) < 0 ||
      attr_read_num(c, "n_tokens", H5T_NATIVE_INT64, &in->n_tokens, err) < 0 ||
      attr_read_num(c, "n_train", H5T_NATIVE_INT64, &in->n_split[0], err) < 0 ||
      attr_read_num(c, "n_val", H5T_NATIVE_INT64, &in->n_split[1], err) < 0 ||
      attr_read_num(c, "n_test", H5T_NATIVE_INT64, &in->n_split[2], err) < 0)
    return -1;
  int n_sha = 0;
  if (attr_read_strs(c, "source_paths", &in->source_paths, &in->n_sources, err) < 0 ||
      attr_read_strs(c, "source_sha256", &in->source_sha256, &n_sha, err) < 0)
    return -1;
  if (n_sha != in->n_sources)
    return pith_fail(err, "%s: corrupt pith corpus: %d source paths but %d sha256", c->path, in->n_sources, n_sha);
  return 0;
}

static int open_dset(corpus *c, rdset *d, const char *name, pith_err *err) {
  snprintf(d->name, sizeof d->name, "%s", name);
  if (H5Lexists(c->file, name, H5P_DEFAULT) <= 0)
    return pith_fail(err, "%s: corrupt pith corpus: dataset '%s' missing", c->path, name);
  d->dset = H5Dopen2(c->file, name, H5P_DEFAULT);
  if (d->dset < 0) return H5_FAIL(err, "%s: cannot open dataset '%s'", c->path, name);
  hid_t space = H5Dget_space(d->dset);
  hsize_t dim = 0;
  int rank = H5Sget_simple_extent_ndims(space);
  if (rank == 1) H5Sget_simple_extent_dims(space, &dim, NULL);
  H5Sclose(space);
  if (rank != 1) return pith_fail(err, "%s: corrupt pith corpus: dataset '%s' is not 1-D", c->path, name);
  d->n = (int64_t)dim;
  return 0;
}

// out (count) = d[start .. start+count) converted to mtype; bounds checked.
static int read_slice(corpus *c, const rdset *d, hid_t mtype, int64_t start, int64_t count, void *out,
                      pith_err *err) {
  if (start < 0 || count < 0 || start + count > d->n)
    return pith_fail(err, "%s: dataset '%s': elements [%lld, %lld) out of range (%lld)", c->path, d->name,
                     (long long)start, (long long)(start + count), (long long)d->n);
  if (count == 0) return 0;
  hsize_t s = (hsize_t)start, n = (hsize_t)count;
  hid_t fspace = H5Dget_space(d->dset);
  hid_t mspace = H5Screate_simple(1, &n, NULL);
  herr_t r = H5Sselect_hyperslab(fspace, H5S_SELECT_SET, &s, NULL, &n, NULL);
  if (r >= 0) r = H5Dread(d->dset, mtype, mspace, fspace, H5P_DEFAULT, out);
  if (r < 0) h5_capture();
  H5Sclose(mspace);
  H5Sclose(fspace);
  return r < 0 ? H5_FAIL(err, "%s: cannot read '%s'", c->path, d->name) : 0;
}

// A ragged pair must have rows + 1 offsets, starting at 0 and ending at the data length.
static int check_ragged(corpus *c, const rdset *data, const rdset *offs, int64_t rows, pith_err *err) {
  int64_t ends[2];
  if (offs->n != rows + 1)
    return pith_fail(err, "%s: corrupt pith corpus: '%s' has %lld entries, want %lld", c->path, offs->name,
                     (long long)offs->n, (long long)(rows + 1));
  if (read_slice(c, offs, H5T_NATIVE_INT64, 0, 1, &ends[0], err) < 0 ||
      read_slice(c, offs, H5T_NATIVE_INT64, rows, 1, &ends[1], err) < 0)
    return -1;
  if (ends[0] != 0 || ends[1] != data->n)
    return pith_fail(err, "%s: corrupt pith corpus: '%s' runs %lld..%lld but '%s' has %lld values", c->path,
                     offs->name, (long long)ends[0], (long long)ends[1], data->name, (long long)data->n);
  return 0;
}

static int open_ragged(corpus *c, int col, int k, const char *name, int64_t rows, pith_err *err) {
  char off[64];
  snprintf(off, sizeof off, "%s_offsets", name);
  if (open_dset(c, &c->data[col][k], name, err) < 0 || open_dset(c, &c->offs[col][k], off, err) < 0) return -1;
  return check_ragged(c, &c->data[col][k], &c->offs[col][k], rows, err);
}

static int open_datasets(corpus *c, pith_err *err) {
  int64_t n = c->info.n_records, a = c->info.n_answers;
  for (int col = 0; col < CORPUS_N_COLS; col++) {
    if (!col_in_kind(col, c->info.kind)) continue;
    int64_t rows = col == CORPUS_COL_ANSWER ? a : n;
    if (COL_NAMES[col].tokens && open_ragged(c, col, 0, COL_NAMES[col].tokens, rows, err) < 0) return -1;
    if (open_ragged(c, col, 1, COL_NAMES[col].text, rows, err) < 0) return -1;
  }
  if (open_dset(c, &c->split, "split", err) < 0) return -1;
  if (c->split.n != n)
    return pith_fail(err, "%s: corrupt pith corpus: 'split' has %lld entries, want %lld", c->path,
                     (long long)c->split.n, (long long)n);
  if (c->info.kind != CORPUS_QA) return 0;
  rdset *ao = &c->answer_offsets, *cs = &c->answer_char_start;
  if (open_dset(c, ao, "answer_offsets", err) < 0 || open_dset(c, cs, "answer_char_start", err) < 0 ||
      check_ragged(c, cs, ao, n, err) < 0)
    return -1;
  return 0;
}

static void corpus_init_handles(corpus *c) {
  c->file = H5I_INVALID_HID;
  for (int col = 0; col < CORPUS_N_COLS; col++)
    for (int k = 0; k < 2; k++) c->data[col][k].dset = c->offs[col][k].dset = H5I_INVALID_HID;
  c->split.dset = c->answer_offsets.dset = c->answer_char_start.dset = H5I_INVALID_HID;
}

// Before HDF5 sees the file: readable, and HDF5 at all.
static int precheck_file(const char *path, pith_err *err) {
  FILE *f = fopen(path, "rb");
  if (!f) return pith_fail(err, "%s: cannot open: %s", path, strerror(errno));
  fclose(f);
  if (H5Fis_hdf5(path) <= 0) return pith_fail(err, "%s: not a pith corpus (not an HDF5 file)", path);
  return 0;
}

corpus *corpus_open(const char *path, pith_err *err) {
  h5_quiet();
  if (precheck_file(path, err) < 0) return NULL;
  corpus *c = calloc(1, sizeof *c);
  if (!c || !(c->path = str_dup(path))) {
    free(c);
    return pith_fail(err, "%s: out of memory", path), NULL;
  }
  corpus_init_handles(c);
  hid_t fapl = h5_fapl();
  c->file = H5Fopen(path, H5F_ACC_RDONLY, fapl);
  if (c->file < 0) h5_capture();
  H5Pclose(fapl);
  int ok = c->file >= 0 ? 0 : H5_FAIL(err, "%s: cannot open as HDF5", path);
  if (ok == 0 && (read_schema(c, err) < 0 || read_attrs(c, err) < 0 || open_datasets(c, err) < 0)) ok = -1;
  if (ok < 0) {
    corpus_close(c);
    return NULL;
  }
  return c;
}

void corpus_close(corpus *c) {
  if (!c) return;
  for (int col = 0; col < CORPUS_N_COLS; col++)
    for (int k = 0; k < 2; k++) {
      h5_close(&c->data[col][k].dset, H5Dclose);
      h5_close(&c->offs[col][k].dset, H5Dclose);
    }
  h5_close(&c->split.dset, H5Dclose);
  h5_close(&c->answer_offsets.dset, H5Dclose);
  h5_close(&c->answer_char_start.dset, H5Dclose);
  h5_close(&c->file, H5Fclose);
  corpus_info *in = &c->info;
  for (int i = 0; i < in->n_sources; i++) {
    free(in->source_paths[i]);
    free(in->source_sha256[i]);
  }
  free(in->source_paths);
  free(in->source_sha256);
  free(in->tokenizer_sha256);
  free(in->command);
  free(c->path);
  free(c);
}

const corpus_info *corpus_get_info(const corpus *c) { return &c->info; }
const char *corpus_path(const corpus *c) { return c->path; }

int64_t corpus_n_rows(const corpus *c, corpus_col col) {
  if (col < 0 || col >= CORPUS_N_COLS || !col_in_kind(col, c->info.kind)) return -1;
  return col == CORPUS_COL_ANSWER ? c->info.n_answers : c->info.n_records;
}

static int check_col(corpus *c, corpus_col col, int text, pith_err *err) {
  if (corpus_n_rows(c, col) < 0 || (!text && !COL_NAMES[col].tokens))
    return pith_fail(err, "%s: a %s corpus has no column %d (%s)", c->path, corpus_kind_name(c->info.kind),
                     (int)col, text ? "text" : "tokens");
  return 0;
}

int corpus_read_offsets(corpus *c, corpus_col col, int text, int64_t start, int64_t count, int64_t *out,
                        pith_err *err) {
  if (check_col(c, col, text, err) < 0) return -1;
  return read_slice(c, &c->offs[col][text ? 1 : 0], H5T_NATIVE_INT64, start, count, out, err);
}

int corpus_read_flat_tokens(corpus *c, corpus_col col, int64_t pos, int64_t count, int32_t *out,
                            pith_err *err) {
  if (check_col(c, col, 0, err) < 0) return -1;
  return read_slice(c, &c->data[col][0], H5T_NATIVE_INT32, pos, count, out, err);
}

int corpus_read_lengths(corpus *c, corpus_col col, int64_t start, int64_t count, int64_t *out,
                        pith_err *err) {
  if (count <= 0) return count < 0 ? pith_fail(err, "%s: negative count", c->path) : 0;
  int64_t *offs = malloc(sizeof *offs * (size_t)(count + 1));
  if (!offs) return pith_fail(err, "%s: out of memory", c->path);
  int r = corpus_read_offsets(c, col, 0, start, count + 1, offs, err);
  for (int64_t i = 0; r == 0 && i < count; i++) out[i] = offs[i + 1] - offs[i];
  free(offs);
  return r;
}

int corpus_read_splits(corpus *c, int64_t start, int64_t count, uint8_t *out, pith_err *err) {
  return read_slice(c, &c->split, H5T_NATIVE_UINT8, start, count, out, err);
}

int corpus_read_answer_offsets(corpus *c, int64_t start, int64_t count, int64_t *out, pith_err *err) {
  if (c->info.kind != CORPUS_QA) return pith_fail(err, "%s: a documents corpus has no answers", c->path);
  return read_slice(c, &c->answer_offsets, H5T_NATIVE_INT64, start, count + 1, out, err);
}

// Read row `row` of a ragged pair into a growable buffer (NUL-terminated when it is text).
static int read_row(corpus *c, corpus_col col, int k, int64_t row, void **buf, int64_t *cap, int64_t *n,
                    pith_err *err) {
  int64_t o[2];
  if (read_slice(c, &c->offs[col][k], H5T_NATIVE_INT64, row, 2, o, err) < 0) return -1;
  int64_t len = o[1] - o[0];
  size_t elem = k ? 1 : sizeof(int32_t);
  if (len < 0) return pith_fail(err, "%s: corrupt pith corpus: '%s' decreases at row %lld", c->path,
                                c->offs[col][k].name, (long long)row);
  if (grow(buf, cap, len + 1, elem) < 0) return pith_fail(err, "%s: out of memory", c->path);
  if (read_slice(c, &c->data[col][k], k ? H5T_NATIVE_UINT8 : H5T_NATIVE_INT32, o[0], len, *buf, err) < 0)
    return -1;
  if (k) ((char *)*buf)[len] = 0;
  *n = len;
  return 0;
}

static int read_field(corpus *c, corpus_col col, int64_t row, unsigned what, corpus_field *f, pith_err *err) {
  f->n_tokens = 0;
  f->text_len = 0;
  if (grow((void **)&f->text, &f->cap_text, 1, 1) < 0) return pith_fail(err, "%s: out of memory", c->path);
  f->text[0] = 0;
  if ((what & CORPUS_READ_TOKENS) &&
      read_row(c, col, 0, row, (void **)&f->tokens, &f->cap_tokens, &f->n_tokens, err) < 0)
    return -1;
  if ((what & CORPUS_READ_TEXT) && read_row(c, col, 1, row, (void **)&f->text, &f->cap_text, &f->text_len, err) < 0)
    return -1;
  return 0;
}

static int read_answers(corpus *c, int64_t i, unsigned what, corpus_record *rec, pith_err *err) {
  int64_t ao[2];
  if (corpus_read_answer_offsets(c, i, 1, ao, err) < 0) return -1;
  if (ao[1] < ao[0] || ao[1] - ao[0] > 1000000)
    return pith_fail(err, "%s: corrupt pith corpus: example %lld has %lld answers", c->path, (long long)i,
                     (long long)(ao[1] - ao[0]));
  int n = (int)(ao[1] - ao[0]);
  if (n > rec->cap_answers) {
    corpus_field *f = realloc(rec->answers, sizeof *f * (size_t)n);
    if (f) rec->answers = f;
    int64_t *s = realloc(rec->answer_char_start, sizeof *s * (size_t)n);
    if (s) rec->answer_char_start = s;
    if (!f || !s) return pith_fail(err, "%s: out of memory", c->path);
    memset(rec->answers + rec->cap_answers, 0, sizeof *f * (size_t)(n - rec->cap_answers));
    rec->cap_answers = n;
  }
  rec->n_answers = n;
  if (read_slice(c, &c->answer_char_start, H5T_NATIVE_INT64, ao[0], n, rec->answer_char_start, err) < 0) return -1;
  for (int a = 0; a < n; a++)
    if (read_field(c, CORPUS_COL_ANSWER, ao[0] + a, what, &rec->answers[a], err) < 0) return -1;
  return 0;
}

int corpus_read(corpus *c, int64_t i, unsigned what, corpus_record *rec, pith_err *err) {
  if (i < 0 || i >= c->info.n_records)
    return pith_fail(err, "%s: record %lld out of range (%lld records)", c->path, (long long)i,
                     (long long)c->info.n_records);
  uint8_t split = 0;
  int64_t id_len = 0;
  rec->index = i;
  if (read_row(c, CORPUS_COL_ID, 1, i, (void **)&rec->id, &rec->cap_id, &id_len, err) < 0 ||
      read_slice(c, &c->split, H5T_NATIVE_UINT8, i, 1, &split, err) < 0)
    return -1;
  rec->split = split;
  if (c->info.kind == CORPUS_DOCUMENTS) return read_field(c, CORPUS_COL_DOC, i, what, &rec->doc, err);
  if (read_field(c, CORPUS_COL_CONTEXT, i, what, &rec->context, err) < 0 ||
      read_field(c, CORPUS_COL_QUESTION, i, what, &rec->question, err) < 0)
    return -1;
  return read_answers(c, i, what, rec, err);
}

static void field_free(corpus_field *f) {
  free(f->tokens);
  free(f->text);
  memset(f, 0, sizeof *f);
}

void corpus_record_free(corpus_record *rec) {
  if (!rec) return;
  free(rec->id);
  field_free(&rec->doc);
  field_free(&rec->context);
  field_free(&rec->question);
  for (int a = 0; a < rec->cap_answers; a++) field_free(&rec->answers[a]);
  free(rec->answers);
  free(rec->answer_char_start);
  memset(rec, 0, sizeof *rec);
}
