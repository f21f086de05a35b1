// ingest: source files -> validated, tokenized records -> the corpus writer. See ingest.h for the
// formats and the validation rules. The pieces, in the order a record meets them:
//
//   reader (calling thread)   lines (or blank-line blocks) of a file, or a whole SQuAD JSON file,
//                             hashed with sha256 as they are read; records grouped into batches
//   worker (pool thread)      a batch at a time: JSON parsing, field checks, answer alignment,
//                             tokenization; every record ends OK, BAD (with a reason) or EMPTY
//   writer (calling thread)   batches in sequence order: issues counted, OK records appended
//
// A batch owns an arena that holds everything its records point to, freed once it is written.
// This file is the pipeline (reading, the worker pool, answer alignment and tokenization,
// writing); the format parsers are in ingest_formats.c, what both use in ingest_internal.h.
#define _GNU_SOURCE  // memmem
#include "ingest_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "utf8.h"

enum {
  BATCH_ITEMS = 512,           // records (lines, blocks, paragraphs) per batch at most
  BATCH_BYTES = 256 << 10,     // input bytes per batch at most
  READ_CHUNK = 1 << 20,        // bytes per read()
};

// ---------------------------------------------------------------------------------------------
// Batches

static batch *batch_new(void) { return calloc(1, sizeof(batch)); }

static void batch_free(batch *b) {
  if (!b) return;
  arena_free(&b->a);
  free(b->raws);
  free(b->recs);
  free(b);
}

static raw_unit *raw_push(batch *b, int file, int64_t line) {
  if (b->n_raws == b->cap_raws) {
    int cap = b->cap_raws ? 2 * b->cap_raws : 64;
    raw_unit *p = realloc(b->raws, (size_t)cap * sizeof *p);
    if (!p) return NULL;
    b->raws = p, b->cap_raws = cap;
  }
  raw_unit *u = &b->raws[b->n_raws++];
  *u = (raw_unit){.file = file, .line = line};
  return u;
}

// ---------------------------------------------------------------------------------------------
// Reading lines: buffered, hashed on the way, lines longer than the limit skipped without storing

static int reader_fill(ingest_ctx *C, pith_err *err) {
  line_reader *r = &C->rd;
  if (r->lo > 0 && (r->cap - r->hi < READ_CHUNK)) {
    memmove(r->buf, r->buf + r->lo, r->hi - r->lo);
    r->hi -= r->lo, r->lo = 0;
  }
  if (r->cap - r->hi < READ_CHUNK) {
    size_t cap = r->hi + READ_CHUNK;
    char *p = realloc(r->buf, cap);
    if (!p) return pith_fail(err, "%s: out of memory reading", C->inputs[C->cur]);
    r->buf = p, r->cap = cap;
  }
  for (;;) {
    ssize_t n = read(r->fd, r->buf + r->hi, r->cap - r->hi);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return pith_fail(err, "%s: read failed: %s", C->inputs[C->cur], strerror(errno));
    if (n == 0) r->eof = 1;
    sha256_update(&r->sha, r->buf + r->hi, (size_t)n);
    r->hi += (size_t)n;
    C->bytes_read += n;
    return 0;
  }
}

// The next line of the current file without its terminator (\n or \r\n): 1 and *s, *n (valid
// until the next call); *s = NULL and *n = its length when it is longer than the limit; 0 at
// the end of the file; -1 on a read error.
static int reader_next(ingest_ctx *C, const char **s, size_t *n, pith_err *err) {
  line_reader *r = &C->rd;
  size_t scanned = 0;       // bytes of buf[lo, hi) known to hold no newline
  size_t dropped = 0;       // bytes of an overlong line already thrown away
  for (;;) {
    char *nl = r->hi > r->lo + scanned ? memchr(r->buf + r->lo + scanned, '\n', r->hi - r->lo - scanned) : NULL;
    if (nl || (r->eof && (r->hi > r->lo || dropped))) {
      size_t end = nl ? (size_t)(nl - r->buf) : r->hi, len = end - r->lo;
      const char *line = r->buf + r->lo;
      r->lo = nl ? end + 1 : end;
      r->line_no++;
      if (len > 0 && line[len - 1] == '\r') len--;
      if (r->line_no == 1 && len >= 3 && !memcmp(line, "\xEF\xBB\xBF", 3)) line += 3, len -= 3;  // a BOM
      if (dropped || len > C->max_rec) {
        *s = NULL, *n = dropped + len;
        return 1;
      }
      *s = line, *n = len;
      return 1;
    }
    if (r->eof) return 0;
    scanned = r->hi - r->lo;
    if (scanned > C->max_rec) {  // overlong: forget what is buffered, keep looking for the newline
      dropped += scanned;
      r->lo = r->hi;
      scanned = 0;
    }
    if (reader_fill(C, err) < 0) return -1;
  }
}

static const char *too_long_msg(batch *b, const char *what, size_t n, size_t max) {
  return arena_printf(&b->a, "the %s is %.1f MB (%zu bytes), over the limit of %zu bytes per record", what,
                      (double)n / 1e6, n, max);
}

// ---------------------------------------------------------------------------------------------
// Producing batches (calling thread)

static int open_input(ingest_ctx *C, pith_err *err) {
  const char *path = C->inputs[C->cur];
  C->units = 0;
  if (C->cfg->format == INGEST_SQUAD) return ingest_squad_open(C, path, err);
  line_reader *r = &C->rd;
  r->fd = open(path, O_RDONLY);
  if (r->fd < 0) return pith_fail(err, "%s: cannot open: %s", path, strerror(errno));
  r->lo = r->hi = 0, r->eof = 0, r->line_no = 0;
  sha256_init(&r->sha);
  C->block_line = 0;
  C->open = 1;
  return 0;
}

// Close the current input: record it as a source, flag it when it held no record at all.
static int close_input(ingest_ctx *C, batch *b, pith_err *err) {
  const char *path = C->inputs[C->cur];
  char hex[SHA256_HEX_SIZE];
  if (C->cfg->format == INGEST_SQUAD) {
    memcpy(hex, C->sq_sha, sizeof hex);
    free(C->sq_buf);
    C->sq_buf = NULL;
    arena_free(&C->sq_arena);
  } else {
    uint8_t d[SHA256_DIGEST_SIZE];
    sha256_final(&C->rd.sha, d);
    sha256_to_hex(d, hex);
    close(C->rd.fd);
    C->rd.fd = -1;
  }
  C->open = 0;
  int file = C->cur++;
  if (corpus_writer_add_source(C->w, path, hex, err) < 0) return -1;
  if (C->units == 0) {
    raw_unit *u = raw_push(b, file, 0);
    if (!u) return pith_fail(err, "out of memory");
    u->bad = "empty file: no records";
  }
  return 0;
}

// TEXT blocks: hand the gathered block to the batch.
static int emit_block(ingest_ctx *C, batch *b, pith_err *err) {
  raw_unit *u = raw_push(b, C->cur, C->block_line);
  if (!u) return pith_fail(err, "out of memory");
  if (C->block_total > C->max_rec) {
    u->bad = too_long_msg(b, "block", C->block_total, C->max_rec);
  } else if (!(u->s = arena_strndup(&b->a, C->block, C->block_len))) {
    return pith_fail(err, "out of memory");
  }
  u->len = C->block_len;
  b->in_bytes += C->block_total;
  C->block_line = 0;
  C->units++;
  return 1;
}

// One record unit of a line-based input into b: 1; 0 at the end of the file; -1 on error.
static int next_line_unit(ingest_ctx *C, batch *b, pith_err *err) {
  int blocks = C->cfg->format == INGEST_TEXT && C->cfg->text_mode == INGEST_TEXT_BLOCKS;
  for (;;) {
    const char *s;
    size_t n;
    int r = reader_next(C, &s, &n, err);
    if (r < 0) return -1;
    if (r == 0) return blocks && C->block_line ? emit_block(C, b, err) : 0;
    int64_t line = C->rd.line_no;
    int blank = s && ingest_is_blank(s, n);
    if (blocks) {
      if (blank) {
        if (C->block_line) return emit_block(C, b, err);
        continue;
      }
      if (!C->block_line) C->block_line = line, C->block_len = C->block_total = 0;
      size_t add = n + (C->block_total ? 1 : 0);
      C->block_total += add;
      if (!s || C->block_total > C->max_rec) continue;  // too long: counted, not kept
      if (C->block_len + add + 1 > C->block_cap) {
        size_t cap = 2 * (C->block_len + add + 1);
        char *p = realloc(C->block, cap);
        if (!p) return pith_fail(err, "out of memory");
        C->block = p, C->block_cap = cap;
      }
      if (C->block_len) C->block[C->block_len++] = '\n';
      memcpy(C->block + C->block_len, s, n);
      C->block_len += n;
      continue;
    }
    if (blank && C->cfg->format != INGEST_TEXT) {  // a blank line between JSON records
      ingest_issue *is = &C->rep->issues[INGEST_ISSUE_BLANK];
      if (is->n_samples < INGEST_ISSUE_SAMPLES)
        snprintf(is->samples[is->n_samples++], sizeof is->samples[0], "%s:%lld: blank line", C->inputs[C->cur],
                 (long long)line);
      is->count++;
      continue;
    }
    raw_unit *u = raw_push(b, C->cur, line);
    if (!u) return pith_fail(err, "out of memory");
    if (!s) u->bad = too_long_msg(b, "line", n, C->max_rec);
    else if (!(u->s = arena_strndup(&b->a, s, n))) return pith_fail(err, "out of memory");
    u->len = n;
    b->in_bytes += n + 1;
    C->units++;
    return 1;
  }
}

// The next batch of input, or *out = NULL when all inputs are read. -1 on a fatal error.
static int produce_batch(ingest_ctx *C, batch **out, pith_err *err) {
  batch *b = batch_new();
  *out = NULL;
  if (!b) return pith_fail(err, "out of memory");
  while (b->n_raws + b->n_recs < BATCH_ITEMS && b->in_bytes < BATCH_BYTES) {
    if (!C->open) {
      if (C->cur >= C->n_inputs) break;
      if (open_input(C, err) < 0) return batch_free(b), -1;
    }
    int r = C->cfg->format == INGEST_SQUAD ? ingest_squad_next(C, b, err) : next_line_unit(C, b, err);
    if (r < 0) return batch_free(b), -1;
    if (r == 0 && close_input(C, b, err) < 0) return batch_free(b), -1;
  }
  if (b->n_raws + b->n_recs == 0) {
    batch_free(b);
    return 0;
  }
  *out = b;
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Finishing records (workers): answer alignment, tokenization

// Where an answer sits: at its given offset if its text is there, else the occurrence nearest to
// it (FIX_MOVED), else nowhere (FIX_MISSING, start -1). Without a given offset: the first occurrence.
static void align_answer(const char *ctx, size_t n, rec_answer *a) {
  a->fix = FIX_NONE;
  if (a->given >= 0) {
    size_t at = utf8_offset(ctx, n, (size_t)a->given);
    if (at <= n && a->len <= n - at && !memcmp(ctx + at, a->text, a->len)) {
      a->start = a->given;
      return;
    }
  }
  int64_t best = -1, best_d = 0, cp = 0;
  size_t counted = 0, pos = 0;
  const char *hit;
  while (pos < n && (hit = memmem(ctx + pos, n - pos, a->text, a->len))) {
    size_t at = (size_t)(hit - ctx);
    cp += (int64_t)utf8_count(ctx + counted, at - counted);
    counted = at;
    int64_t d = a->given >= 0 ? (cp > a->given ? cp - a->given : a->given - cp) : 0;
    if (best < 0 || d < best_d) best = cp, best_d = d;
    if (a->given < 0 || cp >= a->given) break;  // later hits are only farther
    pos = at + 1;
  }
  a->start = best;
  a->fix = best < 0 ? FIX_MISSING : a->given >= 0 ? FIX_MOVED : FIX_NONE;
}

// Tokenize s into the batch arena. -1 and the record marked BAD on failure.
static int encode_into(ingest_ctx *C, batch *b, rec *r, const char *what, const char *s, size_t n, int bos,
                       int32_t **toks, size_t *n_toks) {
  int32_t *ids = NULL;
  size_t k = 0;
  pith_err e = {{0}};
  if (tokenizer_encode(C->cfg->tok, s, n, bos, &ids, &k, &e) < 0) {
    ingest_rec_bad(b, r, "%s: %s", what, e.msg);
    return -1;
  }
  for (size_t i = 0; i < k; i++)
    if (ids[i] < 0 || ids[i] >= C->vocab) {
      ingest_rec_bad(b, r, "%s: the tokenizer gave id %d, outside its vocabulary of %d", what, (int)ids[i], (int)C->vocab);
      free(ids);
      return -1;
    }
  *toks = arena_alloc(&b->a, (k ? k : 1) * sizeof **toks);
  if (!*toks) {
    free(ids);
    b->oom = 1;
    return -1;
  }
  if (k) memcpy(*toks, ids, k * sizeof *ids);
  *n_toks = k;
  b->encoded_bytes += (int64_t)n;
  b->encoded_tokens += (int64_t)k;
  free(ids);
  return 0;
}

// Tokens of the last context tokenized in this batch (contexts shared by consecutive questions
// are one pointer, tokenized once).
typedef struct {
  const char *text;
  int32_t *toks;
  size_t n;
} ctx_cache;

static void finish_rec(ingest_ctx *C, batch *b, rec *r, ctx_cache *cache) {
  int bos = C->cfg->add_bos;
  if (!r->id || !r->text || (ingest_format_kind(C->cfg->format) == CORPUS_QA && !r->question)) {
    b->oom = 1;  // only an allocation failure leaves an OK record without these
    return;
  }
  r->split = corpus_split_of_id(r->id, C->cfg->val_fraction, C->cfg->test_fraction);
  if (ingest_format_kind(C->cfg->format) == CORPUS_DOCUMENTS) {
    encode_into(C, b, r, "document", r->text, r->len, bos, &r->toks, &r->n_toks);
    return;
  }
  for (int a = 0; a < r->n_ans; a++) align_answer(r->text, r->len, &r->ans[a]);
  if (cache->text == r->text) {
    r->toks = cache->toks, r->n_toks = cache->n;
  } else {
    if (encode_into(C, b, r, "context", r->text, r->len, bos, &r->toks, &r->n_toks) < 0) return;
    cache->text = r->text, cache->toks = r->toks, cache->n = r->n_toks;
  }
  if (encode_into(C, b, r, "question", r->question, r->qlen, 0, &r->qtoks, &r->n_qtoks) < 0) return;
  for (int a = 0; a < r->n_ans; a++)
    if (encode_into(C, b, r, "answer", r->ans[a].text, r->ans[a].len, 0, &r->ans[a].toks, &r->ans[a].n_toks) < 0)
      return;
}

static void process_batch(ingest_ctx *C, batch *b) {
  for (int i = 0; i < b->n_raws && !b->oom; i++) {
    const raw_unit *u = &b->raws[i];
    if (u->bad) {
      rec *r = ingest_rec_push(b, u->file, u->line, NULL);
      if (r) r->status = REC_BAD, r->msg = u->bad;
      continue;
    }
    ingest_parse_unit(C, b, u);
  }
  ctx_cache cache = {0};
  for (int i = 0; i < b->n_recs && !b->oom; i++)
    if (b->recs[i].status == REC_OK) finish_rec(C, b, &b->recs[i], &cache);
  if (b->a.oom) b->oom = 1;
}

// ---------------------------------------------------------------------------------------------
// Worker pool: batches in a FIFO; each is processed whole by one worker

typedef struct {
  ingest_ctx *C;
  pthread_mutex_t mu;
  pthread_cond_t todo_cv, done_cv;
  batch *head, *tail;
  int stop;
  pthread_t th[INGEST_MAX_THREADS];
  int n_threads;
} pool;

static void *pool_main(void *arg) {
  pool *p = arg;
  for (;;) {
    pthread_mutex_lock(&p->mu);
    while (!p->head && !p->stop) pthread_cond_wait(&p->todo_cv, &p->mu);
    if (p->stop) {
      pthread_mutex_unlock(&p->mu);
      return NULL;
    }
    batch *b = p->head;
    p->head = b->next;
    if (!p->head) p->tail = NULL;
    pthread_mutex_unlock(&p->mu);
    process_batch(p->C, b);
    pthread_mutex_lock(&p->mu);
    b->done = 1;
    pthread_cond_broadcast(&p->done_cv);
    pthread_mutex_unlock(&p->mu);
  }
}

static void pool_submit(pool *p, batch *b) {
  pthread_mutex_lock(&p->mu);
  b->next = NULL;
  if (p->tail) p->tail->next = b;
  else p->head = b;
  p->tail = b;
  pthread_cond_signal(&p->todo_cv);
  pthread_mutex_unlock(&p->mu);
}

static void pool_wait(pool *p, batch *b) {
  pthread_mutex_lock(&p->mu);
  while (!b->done) pthread_cond_wait(&p->done_cv, &p->mu);
  pthread_mutex_unlock(&p->mu);
}

// Stop the workers (a batch being processed is finished first; queued ones are left) and join.
static void pool_stop(pool *p) {
  pthread_mutex_lock(&p->mu);
  p->stop = 1;
  pthread_cond_broadcast(&p->todo_cv);
  pthread_mutex_unlock(&p->mu);
  for (int i = 0; i < p->n_threads; i++) pthread_join(p->th[i], NULL);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->todo_cv);
  pthread_cond_destroy(&p->done_cv);
}

// ---------------------------------------------------------------------------------------------
// Writing (calling thread)

static void issue_add(ingest_report *rep, ingest_issue_kind k, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void issue_add(ingest_report *rep, ingest_issue_kind k, const char *fmt, ...) {
  ingest_issue *is = &rep->issues[k];
  if (is->n_samples < INGEST_ISSUE_SAMPLES) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(is->samples[is->n_samples++], sizeof is->samples[0], fmt, ap);
    va_end(ap);
  }
  is->count++;
}

// At most 60 bytes of s, cut on a character boundary, "..." when cut. buf: (72).
static const char *clip(const char *s, size_t n, char *buf) {
  size_t k = n;
  if (k > 60) {
    k = 60;
    while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
  }
  snprintf(buf, 72, "%.*s%s", (int)k, s, k < n ? "..." : "");
  return buf;
}

static void rec_where(const ingest_ctx *C, const rec *r, char *buf, size_t size) {
  const char *path = C->inputs[r->file];
  if (r->line > 0 && r->where) snprintf(buf, size, "%s:%lld: %s", path, (long long)r->line, r->where);
  else if (r->line > 0) snprintf(buf, size, "%s:%lld", path, (long long)r->line);
  else snprintf(buf, size, "%s", path);
}

static int write_rec(ingest_ctx *C, const rec *r, pith_err *err) {
  ingest_report *rep = C->rep;
  char where[300];
  rec_where(C, r, where, sizeof where);
  if (r->status == REC_SKIP) return 0;
  if (r->status == REC_BAD) {
    if (!C->cfg->skip_bad) {
      snprintf(rep->hint, sizeof rep->hint, "fix the input, or pass --skip-bad to skip malformed records "
               "(they are counted and listed; nothing else is dropped)");
      return pith_fail(err, "%s: %s", where, r->msg);
    }
    issue_add(rep, INGEST_ISSUE_BAD, "%s: %s", where, r->msg);
    return 0;
  }
  if (r->status == REC_EMPTY) {
    issue_add(rep, INGEST_ISSUE_EMPTY, "%s: %s", where, r->msg);
    return 0;
  }
  if (r->id_defaulted) issue_add(rep, INGEST_ISSUE_NO_ID, "%s: no id; given \"%s\"", where, r->id);
  corpus_span text = {r->toks, (int64_t)r->n_toks, r->text, (int64_t)r->len};
  int64_t tokens = (int64_t)r->n_toks;
  if (ingest_format_kind(C->cfg->format) == CORPUS_DOCUMENTS) {
    if (corpus_writer_add_doc(C->w, r->id, &text, err) < 0) return -1;
  } else {
    if (r->n_ans > C->cap_answers) {
      corpus_answer *p = realloc(C->answers, (size_t)r->n_ans * sizeof *p);
      if (!p) return pith_fail(err, "out of memory");
      C->answers = p, C->cap_answers = r->n_ans;
    }
    char cl[72];
    for (int a = 0; a < r->n_ans; a++) {
      const rec_answer *x = &r->ans[a];
      C->answers[a] = (corpus_answer){{x->toks, (int64_t)x->n_toks, x->text, (int64_t)x->len}, x->start};
      tokens += (int64_t)x->n_toks;
      if (x->fix == FIX_MOVED)
        issue_add(rep, INGEST_ISSUE_ANSWER_MOVED, "%s: (id %s) answer %d \"%s\" is not at char %lld of the "
                  "context; found at char %lld (kept there)", where, r->id, a, clip(x->text, x->len, cl), (long long)x->given,
                  (long long)x->start);
      else if (x->fix == FIX_MISSING)
        issue_add(rep, INGEST_ISSUE_ANSWER_MISSING, "%s: (id %s) answer %d \"%s\" does not occur in the "
                  "context (kept, char_start -1)", where, r->id, a, clip(x->text, x->len, cl));
    }
    if (r->n_ans == 0) issue_add(rep, INGEST_ISSUE_NO_ANSWER, "%s: (id %s) no answer (kept)", where, r->id);
    corpus_span q = {r->qtoks, (int64_t)r->n_qtoks, r->question, (int64_t)r->qlen};
    if (corpus_writer_add_qa(C->w, r->id, &text, &q, C->answers, r->n_ans, err) < 0) return -1;
    rep->answers += r->n_ans;
    tokens += (int64_t)r->n_qtoks;
  }
  rep->records++;
  rep->split[r->split]++;
  rep->main_tokens += (int64_t)r->n_toks;
  rep->tokens += tokens;
  return 0;
}

static void report_progress(ingest_ctx *C, int done) {
  double t = pith_now_s();
  if (!C->cfg->progress || (!done && t - C->last_progress < 0.25)) return;
  C->last_progress = t;
  ingest_progress p = {C->rep->records, C->bytes_read, C->bytes_total, C->rep->tokens, t - C->t0, done};
  C->cfg->progress(&p, C->cfg->progress_ctx);
}

static int write_batch(ingest_ctx *C, batch *b, pith_err *err) {
  if (b->oom) return pith_fail(err, "out of memory while parsing or tokenizing");
  for (int i = 0; i < b->n_recs; i++)
    if (write_rec(C, &b->recs[i], err) < 0) return -1;
  C->rep->encoded_bytes += b->encoded_bytes;
  C->rep->encoded_tokens += b->encoded_tokens;
  report_progress(C, 0);
  return 0;
}

// ---------------------------------------------------------------------------------------------
// The whole run

const char *ingest_format_name(ingest_format f) {
  static const char *NAMES[] = {"arxiv", "text", "squad", "mrqa", "qa"};
  return f >= 0 && f < INGEST_N_FORMATS ? NAMES[f] : "?";
}

int ingest_format_parse(const char *name, ingest_format *f) {
  for (int i = 0; i < INGEST_N_FORMATS; i++)
    if (!strcmp(name, ingest_format_name((ingest_format)i))) return *f = (ingest_format)i, 0;
  return -1;
}

corpus_kind ingest_format_kind(ingest_format f) {
  return f == INGEST_ARXIV || f == INGEST_TEXT ? CORPUS_DOCUMENTS : CORPUS_QA;
}

const char *ingest_issue_name(ingest_issue_kind k) {
  static const char *NAMES[] = {"malformed records skipped", "empty documents dropped",
                                "answers found away from their offset (offset corrected, kept)",
                                "answers not in their context (kept, char_start -1)",
                                "questions without an answer (kept)", "blank lines ignored",
                                "records without an id (given BASENAME:LINE, kept)"};
  return k >= 0 && k < INGEST_N_ISSUES ? NAMES[k] : "?";
}

// A model's own configs: they can set the special ids, but a tokenizer folder of its own lacks them.
static int is_model_config(const char *path) {
  return !strcmp(pith_base_name(path), "config.json") || !strcmp(pith_base_name(path), "generation_config.json");
}

static int fingerprint(const tokenizer *tok, int skip_model_configs, char hex[SHA256_HEX_SIZE], pith_err *err) {
  const char *const *files;
  int n = tokenizer_source_files(tok, &files);
  sha256_ctx ctx;
  sha256_init(&ctx);
  for (int i = 0; i < n; i++) {
    if (skip_model_configs && is_model_config(files[i])) continue;
    char h[SHA256_HEX_SIZE];
    if (sha256_hash_file(files[i], h, err) < 0) return -1;
    sha256_update(&ctx, h, 64);
    sha256_update(&ctx, "  ", 2);
    sha256_update(&ctx, pith_base_name(files[i]), strlen(pith_base_name(files[i])));
    sha256_update(&ctx, "\n", 1);
  }
  uint8_t d[SHA256_DIGEST_SIZE];
  sha256_final(&ctx, d);
  sha256_to_hex(d, hex);
  return 0;
}

int ingest_tokenizer_fingerprint(const tokenizer *tok, char hex[SHA256_HEX_SIZE], pith_err *err) {
  return fingerprint(tok, 0, hex, err);
}

int ingest_warn_other_tokenizer(const char *corpus_path, const corpus_info *ci, const tokenizer *tok,
                                const char *tok_path, FILE *out, pith_err *err) {
  char fp[SHA256_HEX_SIZE], own[SHA256_HEX_SIZE];  // as loaded; without the model folder's configs
  const char *want = ci->tokenizer_sha256;
  if (fingerprint(tok, 0, fp, err) < 0) return -1;
  if (want && !strcmp(want, fp)) return 0;  // the usual case: one pass over the tokenizer's files
  if (fingerprint(tok, 1, own, err) < 0) return -1;
  if (want && !strcmp(want, own)) return 0;
  fprintf(out,
          "warning: %s was tokenized by another tokenizer (fingerprint %.12s) than %s (%.12s); if their ids "
          "differ, the model reads the wrong tokens\n",
          corpus_path, want ? want : "none", tok_path, fp);
  return 1;
}

static int check_config(const ingest_config *cfg, const char *const *inputs, int n_inputs, int64_t *total,
                        pith_err *err) {
  if (!cfg->tok) return pith_fail(err, "ingest: no tokenizer");
  if (!cfg->out_path || !cfg->out_path[0]) return pith_fail(err, "ingest: no output path");
  if ((int)cfg->format < 0 || cfg->format >= INGEST_N_FORMATS) return pith_fail(err, "ingest: unknown format");
  if (n_inputs < 1) return pith_fail(err, "ingest: no input files");
  if (cfg->threads < 1 || cfg->threads > INGEST_MAX_THREADS)
    return pith_fail(err, "ingest: threads must be 1..%d, not %d", INGEST_MAX_THREADS, cfg->threads);
  *total = 0;
  for (int i = 0; i < n_inputs; i++) {
    struct stat st;
    if (stat(inputs[i], &st) != 0) return pith_fail(err, "%s: cannot read: %s", inputs[i], strerror(errno));
    if (S_ISDIR(st.st_mode)) return pith_fail(err, "%s: is a folder, want a file", inputs[i]);
    *total += st.st_size;
    if (!strcmp(inputs[i], cfg->out_path)) return pith_fail(err, "%s: is both an input and the output", inputs[i]);
  }
  return 0;
}

int ingest_run(const ingest_config *cfg, const char *const *inputs, int n_inputs, ingest_report *rep,
               pith_err *err) {
  memset(rep, 0, sizeof *rep);
  rep->threads = cfg->threads;
  ingest_ctx C = {.cfg = cfg, .inputs = inputs, .n_inputs = n_inputs, .rep = rep, .rd = {.fd = -1}};
  C.t0 = C.last_progress = pith_now_s();
  C.max_rec = cfg->max_record_bytes > 0 ? (size_t)cfg->max_record_bytes : INGEST_DEFAULT_MAX_RECORD_BYTES;
  if (check_config(cfg, inputs, n_inputs, &C.bytes_total, err) < 0) return -1;
  C.vocab = tokenizer_vocab_size(cfg->tok);
  char fp[SHA256_HEX_SIZE];
  if (ingest_tokenizer_fingerprint(cfg->tok, fp, err) < 0) return -1;
  corpus_writer_config wc = {ingest_format_kind(cfg->format), fp, C.vocab, cfg->command ? cfg->command : "",
                             cfg->val_fraction, cfg->test_fraction};
  if (!(C.w = corpus_writer_create(cfg->out_path, &wc, err))) return -1;

  pool P = {.C = &C};
  int threaded = cfg->threads > 1;
  if (threaded) {
    pthread_mutex_init(&P.mu, NULL);
    pthread_cond_init(&P.todo_cv, NULL);
    pthread_cond_init(&P.done_cv, NULL);
    for (int i = 0; i < cfg->threads; i++) {
      if (pthread_create(&P.th[P.n_threads], NULL, pool_main, &P) != 0) break;
      P.n_threads++;
    }
    if (P.n_threads == 0) {
      pool_stop(&P);
      corpus_writer_abort(C.w);
      return pith_fail(err, "ingest: cannot start worker threads");
    }
  }
  // Batches in flight live in a ring, indexed by sequence number; they are written in order.
  enum { RING = 4 * INGEST_MAX_THREADS + 4 };
  batch **ring = calloc(RING, sizeof *ring);
  if (!ring) {
    if (threaded) pool_stop(&P);
    corpus_writer_abort(C.w);
    return pith_fail(err, "out of memory");
  }
  int max_inflight = threaded ? 3 * P.n_threads + 2 : 1;
  int64_t next_seq = 0, next_write = 0;
  int input_done = 0, rc = 0;
  while (rc == 0) {
    while (!input_done && next_seq - next_write < max_inflight) {
      batch *b;
      if (produce_batch(&C, &b, err) < 0) {
        rc = -1;
        break;
      }
      if (!b) {
        input_done = 1;
        break;
      }
      b->seq = next_seq++;
      ring[b->seq % RING] = b;
      if (threaded) pool_submit(&P, b);
      else process_batch(&C, b), b->done = 1;
    }
    if (rc || next_write == next_seq) break;
    batch *b = ring[next_write % RING];
    if (threaded) pool_wait(&P, b);
    rc = write_batch(&C, b, err);
    batch_free(b);
    ring[next_write % RING] = NULL;
    next_write++;
  }
  if (threaded) pool_stop(&P);
  for (int64_t s = next_write; s < next_seq; s++) batch_free(ring[s % RING]);
  free(ring);
  if (C.open) {
    if (cfg->format == INGEST_SQUAD) free(C.sq_buf), arena_free(&C.sq_arena);
    else close(C.rd.fd);
  }
  free(C.rd.buf);
  free(C.block);
  free(C.answers);
  rep->input_bytes = C.bytes_read;
  if (rc == 0 && rep->records == 0) {
    snprintf(rep->hint, sizeof rep->hint, "check the --format and the files: every record was malformed, empty or skipped");
    rc = pith_fail(err, "no records to write (%lld malformed, %lld empty); nothing written",
                   (long long)rep->issues[INGEST_ISSUE_BAD].count, (long long)rep->issues[INGEST_ISSUE_EMPTY].count);
  }
  if (rc == 0) {
    rc = corpus_writer_close(C.w, err);
  } else {
    corpus_writer_abort(C.w);
  }
  rep->seconds = pith_now_s() - C.t0;
  report_progress(&C, 1);
  return rc;
}
