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
#define _GNU_SOURCE  // memmem
#include "ingest.h"

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

enum {
  BATCH_ITEMS = 512,           // records (lines, blocks, paragraphs) per batch at most
  BATCH_BYTES = 256 << 10,     // input bytes per batch at most
  READ_CHUNK = 1 << 20,        // bytes per read()
  JSON_MAX_DEPTH = 100,        // deeper nesting is refused (no record needs it)
  ARENA_BLOCK = 64 << 10,
};

static const char *base_name(const char *path) {
  const char *s = strrchr(path, '/');
  return s ? s + 1 : path;
}

// ---------------------------------------------------------------------------------------------
// Arena: bump allocation in blocks, freed all at once

typedef struct arena_block {
  struct arena_block *next;
  size_t used, cap, pad_;      // pad_: keeps data 16-byte aligned
  unsigned char data[];
} arena_block;

typedef struct {
  arena_block *head;
  int oom;                     // an allocation failed
} arena;

static void *arena_alloc(arena *a, size_t n) {
  n = (n + 15) & ~(size_t)15;
  arena_block *b = a->head;
  if (!b || b->cap - b->used < n) {
    size_t cap = n > ARENA_BLOCK ? n : ARENA_BLOCK;
    b = malloc(sizeof *b + cap);
    if (!b) {
      a->oom = 1;
      return NULL;
    }
    b->used = 0, b->cap = cap;
    if (a->head && n > ARENA_BLOCK) {  // a big one goes behind the current block, which keeps its room
      b->next = a->head->next;
      a->head->next = b;
    } else {
      b->next = a->head;
      a->head = b;
    }
  }
  void *p = b->data + b->used;
  b->used += n;
  return p;
}

static void arena_free(arena *a) {
  for (arena_block *b = a->head, *next; b; b = next) {
    next = b->next;
    free(b);
  }
  a->head = NULL;
}

// A NUL-terminated copy of s (n bytes).
static char *arena_strndup(arena *a, const char *s, size_t n) {
  char *p = arena_alloc(a, n + 1);
  if (!p) return NULL;
  if (n) memcpy(p, s, n);
  p[n] = 0;
  return p;
}

static const char *arena_printf(arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static const char *arena_printf(arena *a, const char *fmt, ...) {
  char buf[600];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n < 0) n = 0;
  if ((size_t)n >= sizeof buf) n = (int)sizeof buf - 1;
  const char *p = arena_strndup(a, buf, (size_t)n);
  return p ? p : "out of memory";
}

// ---------------------------------------------------------------------------------------------
// UTF-8

// Length of the well-formed UTF-8 sequence at p (n bytes available) and its code point in *cp, or
// 0: a stray continuation byte, an overlong form, a surrogate, a value past U+10FFFF, or truncation.
static int utf8_seq(const unsigned char *p, size_t n, uint32_t *cp) {
  unsigned c = p[0];
  int len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
  if (len == 0 || (size_t)len > n) return 0;
  uint32_t v = len == 1 ? c : c & (0x7Fu >> len);
  for (int k = 1; k < len; k++) {
    if ((p[k] & 0xC0) != 0x80) return 0;
    v = v << 6 | (p[k] & 0x3F);
  }
  static const uint32_t MIN[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (v < MIN[len] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
  *cp = v;
  return len;
}

// -1 when s (n bytes) is valid UTF-8, else the offset of the first bad byte.
static int64_t utf8_invalid_at(const char *s, size_t n) {
  const unsigned char *p = (const unsigned char *)s;
  for (size_t i = 0; i < n;) {
    if (p[i] < 0x80) {
      i++;
      continue;
    }
    uint32_t cp;
    int k = utf8_seq(p + i, n - i, &cp);
    if (!k) return (int64_t)i;
    i += (size_t)k;
  }
  return -1;
}

// Code points in valid UTF-8.
static int64_t utf8_count(const char *s, size_t n) {
  int64_t k = 0;
  for (size_t i = 0; i < n; i++) k += ((unsigned char)s[i] & 0xC0) != 0x80;
  return k;
}

// Byte offset of code point cp in valid UTF-8 s (n bytes); n + 1 when cp is past the end.
static size_t utf8_byte_of(const char *s, size_t n, int64_t cp) {
  int64_t k = 0;
  for (size_t i = 0; i < n; i++)
    if (((unsigned char)s[i] & 0xC0) != 0x80 && k++ == cp) return i;
  return k == cp ? n : n + 1;
}

static size_t utf8_put(uint32_t cp, char *out) {
  if (cp < 0x80) return out[0] = (char)cp, 1;
  if (cp < 0x800) return out[0] = (char)(0xC0 | cp >> 6), out[1] = (char)(0x80 | (cp & 0x3F)), 2;
  if (cp < 0x10000)
    return out[0] = (char)(0xE0 | cp >> 12), out[1] = (char)(0x80 | ((cp >> 6) & 0x3F)),
           out[2] = (char)(0x80 | (cp & 0x3F)), 3;
  out[0] = (char)(0xF0 | cp >> 18), out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  out[2] = (char)(0x80 | ((cp >> 6) & 0x3F)), out[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

static int is_ascii_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

static int is_blank(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!is_ascii_space(s[i])) return 0;
  return 1;
}

// ARXIV normalisation: runs of ASCII whitespace -> one space, ends trimmed. Returns the length.
static size_t normalize_space(const char *s, size_t n, char *out) {
  size_t w = 0;
  int pending = 0;
  for (size_t i = 0; i < n; i++) {
    if (is_ascii_space(s[i])) {
      pending = w > 0;
      continue;
    }
    if (pending) out[w++] = ' ';
    pending = 0;
    out[w++] = s[i];
  }
  out[w] = 0;
  return w;
}

// ---------------------------------------------------------------------------------------------
// JSON: a small DOM parser (RFC 8259) that keeps where each value starts, decodes strings into
// checked UTF-8 (escapes included, lone surrogates refused) and tells why it failed, and where.

typedef enum { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ } jtype;

typedef struct jv {
  jtype type;
  int is_int;               // J_NUM: an integer literal that fits int64 (value in i)
  int64_t i;                // J_NUM (is_int) or J_BOOL
  size_t off;               // where the value starts in the parsed text
  const char *s;            // J_STR: the decoded bytes, NUL-terminated
  size_t len;               // J_STR: bytes (a \u0000 escape may put NULs inside)
  const char *key;          // member name, when the value sits in an object
  size_t key_len;
  struct jv *child, *next;  // J_ARR / J_OBJ: the elements in order
  size_t n;                 // J_ARR / J_OBJ: element count
} jv;

typedef struct {
  const char *base, *p, *end;
  arena *a;
  int depth;
  size_t err_off;
  char why[160];            // empty until the first error
} jparser;

static jv *jfail(jparser *P, const char *at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static jv *jfail(jparser *P, const char *at, const char *fmt, ...) {
  if (!P->why[0]) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(P->why, sizeof P->why, fmt, ap);
    va_end(ap);
    P->err_off = (size_t)(at - P->base);
  }
  return NULL;
}

static void jws(jparser *P) {
  while (P->p < P->end && (*P->p == ' ' || *P->p == '\t' || *P->p == '\n' || *P->p == '\r')) P->p++;
}

static jv *jnew(jparser *P, jtype t) {
  jv *v = arena_alloc(P->a, sizeof *v);
  if (!v) return jfail(P, P->p, "out of memory");
  memset(v, 0, sizeof *v);
  v->type = t;
  v->off = (size_t)(P->p - P->base);
  return v;
}

static int hex4(const char *p, const char *end, uint32_t *v) {
  if (end - p < 4) return 0;
  *v = 0;
  for (int k = 0; k < 4; k++) {
    char c = p[k];
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (d < 0) return 0;
    *v = *v << 4 | (uint32_t)d;
  }
  return 1;
}

// A string at P->p (on its opening quote): decoded into the arena.
static int jstring(jparser *P, const char **out, size_t *out_len) {
  const char *q = P->p + 1, *e = q;
  while (e < P->end && *e != '"') e += *e == '\\' ? 2 : 1;
  if (e >= P->end) return jfail(P, P->p, "unterminated string"), -1;
  char *buf = arena_alloc(P->a, (size_t)(e - q) + 1), *w = buf;
  if (!buf) return jfail(P, P->p, "out of memory"), -1;
  for (const char *r = q; r < e;) {
    unsigned char c = (unsigned char)*r;
    if (c == '\\') {
      char x = r[1], out = 0;
      switch (x) {
        case '"': out = '"'; break;
        case '\\': out = '\\'; break;
        case '/': out = '/'; break;
        case 'b': out = '\b'; break;
        case 'f': out = '\f'; break;
        case 'n': out = '\n'; break;
        case 'r': out = '\r'; break;
        case 't': out = '\t'; break;
        case 'u': break;
        default:
          if ((unsigned char)x >= 0x20 && (unsigned char)x < 0x7F) return jfail(P, r, "bad escape '\\%c' in a string", x), -1;
          return jfail(P, r, "bad escape (a backslash before byte 0x%02X) in a string", (unsigned char)x), -1;
      }
      if (x != 'u') {
        *w++ = out;
        r += 2;
        continue;
      }
      uint32_t u, lo;
      if (!hex4(r + 2, e, &u)) return jfail(P, r, "bad \\u escape (want 4 hex digits)"), -1;
      r += 6;
      if (u >= 0xD800 && u <= 0xDBFF) {
        if (e - r >= 6 && r[0] == '\\' && r[1] == 'u' && hex4(r + 2, e, &lo) && lo >= 0xDC00 && lo <= 0xDFFF) {
          u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
          r += 6;
        } else {
          return jfail(P, r - 6, "lone surrogate \\u%04X in a string (not representable in UTF-8)", (unsigned)u), -1;
        }
      } else if (u >= 0xDC00 && u <= 0xDFFF) {
        return jfail(P, r - 6, "lone surrogate \\u%04X in a string (not representable in UTF-8)", (unsigned)u), -1;
      }
      w += utf8_put(u, w);
    } else if (c < 0x20) {
      return jfail(P, r, "raw control character U+%04X in a string (JSON wants it escaped)", c), -1;
    } else if (c < 0x80) {
      *w++ = (char)c;
      r++;
    } else {
      uint32_t cp;
      int k = utf8_seq((const unsigned char *)r, (size_t)(e - r), &cp);
      if (!k) return jfail(P, r, "invalid UTF-8 (byte 0x%02X) in a string", c), -1;
      memcpy(w, r, (size_t)k);
      w += k, r += k;
    }
  }
  *w = 0;
  *out = buf;
  *out_len = (size_t)(w - buf);
  P->p = e + 1;
  return 0;
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

static jv *jnumber(jparser *P) {
  jv *v = jnew(P, J_NUM);
  if (!v) return NULL;
  const char *s = P->p, *p = s, *end = P->end;
  if (p < end && *p == '-') p++;
  if (p >= end || !is_digit(*p)) return jfail(P, s, "bad number");
  if (*p == '0') p++;
  else
    while (p < end && is_digit(*p)) p++;
  int is_int = 1;
  if (p < end && *p == '.') {
    p++, is_int = 0;
    if (p >= end || !is_digit(*p)) return jfail(P, s, "bad number (digits must follow '.')");
    while (p < end && is_digit(*p)) p++;
  }
  if (p < end && (*p == 'e' || *p == 'E')) {
    p++, is_int = 0;
    if (p < end && (*p == '+' || *p == '-')) p++;
    if (p >= end || !is_digit(*p)) return jfail(P, s, "bad number (digits must follow the exponent)");
    while (p < end && is_digit(*p)) p++;
  }
  v->s = s, v->len = (size_t)(p - s);
  if (is_int) {
    int neg = *s == '-';
    uint64_t acc = 0;
    for (const char *d = s + neg; d < p && is_int; d++) {
      if (acc > (UINT64_C(9223372036854775807) - (uint64_t)(*d - '0')) / 10) is_int = 0;
      acc = acc * 10 + (uint64_t)(*d - '0');
    }
    v->i = neg ? -(int64_t)acc : (int64_t)acc;
  }
  v->is_int = is_int;
  P->p = p;
  return v;
}

static jv *jvalue(jparser *P);

static jv *jcontainer(jparser *P, int obj) {
  if (++P->depth > JSON_MAX_DEPTH) return jfail(P, P->p, "nesting deeper than %d levels", JSON_MAX_DEPTH);
  jv *v = jnew(P, obj ? J_OBJ : J_ARR), **tail = v ? &v->child : NULL;
  if (!v) return NULL;
  char close = obj ? '}' : ']';
  P->p++;
  jws(P);
  if (P->p < P->end && *P->p == close) {
    P->p++;
    P->depth--;
    return v;
  }
  for (;;) {
    const char *key = NULL;
    size_t key_len = 0;
    if (obj) {
      if (P->p >= P->end || *P->p != '"') return jfail(P, P->p, "expected a string key in an object");
      if (jstring(P, &key, &key_len) < 0) return NULL;
      jws(P);
      if (P->p >= P->end || *P->p != ':') return jfail(P, P->p, "expected ':' after an object key");
      P->p++;
      jws(P);
    }
    jv *e = jvalue(P);
    if (!e) return NULL;
    e->key = key, e->key_len = key_len;
    *tail = e, tail = &e->next;
    v->n++;
    jws(P);
    if (P->p < P->end && *P->p == ',') {
      P->p++;
      jws(P);
      continue;
    }
    if (P->p < P->end && *P->p == close) {
      P->p++;
      P->depth--;
      return v;
    }
    if (P->p >= P->end) return jfail(P, P->p, "unexpected end of input in an %s", obj ? "object" : "array");
    return jfail(P, P->p, "expected ',' or '%c' in an %s", close, obj ? "object" : "array");
  }
}

static jv *jvalue(jparser *P) {
  if (P->p >= P->end) return jfail(P, P->p, "unexpected end of input (a value is missing)");
  char c = *P->p;
  if (c == '{' || c == '[') return jcontainer(P, c == '{');
  if (c == '"') {
    jv *v = jnew(P, J_STR);
    if (!v || jstring(P, &v->s, &v->len) < 0) return NULL;
    return v;
  }
  if (c == '-' || is_digit(c)) return jnumber(P);
  static const struct { const char *lit; jtype t; int i; } LITS[] = {
    {"true", J_BOOL, 1}, {"false", J_BOOL, 0}, {"null", J_NULL, 0}};
  for (int k = 0; k < 3; k++) {
    size_t n = strlen(LITS[k].lit);
    if ((size_t)(P->end - P->p) >= n && !memcmp(P->p, LITS[k].lit, n)) {
      jv *v = jnew(P, LITS[k].t);
      if (v) v->i = LITS[k].i;
      P->p += n;
      return v;
    }
  }
  if ((unsigned char)c >= 0x20 && (unsigned char)c < 0x7F) return jfail(P, P->p, "unexpected character '%c'", c);
  return jfail(P, P->p, "unexpected byte 0x%02X", (unsigned char)c);
}

// Parse s (n bytes) as one JSON value (whitespace around it allowed). NULL with P->why on failure.
static jv *json_parse(jparser *P, arena *a, const char *s, size_t n) {
  memset(P, 0, sizeof *P);
  P->base = P->p = s, P->end = s + n, P->a = a;
  jws(P);
  jv *v = jvalue(P);
  if (!v) return NULL;
  jws(P);
  if (P->p < P->end) return jfail(P, P->p, "unexpected characters after the JSON value");
  return v;
}

static const jv *jget(const jv *o, const char *key) {
  const jv *found = NULL;
  size_t n = strlen(key);
  if (o && o->type == J_OBJ)
    for (const jv *e = o->child; e; e = e->next)
      if (e->key_len == n && !memcmp(e->key, key, n)) found = e;  // the last one wins, as in Python
  return found;
}

static const char *jtype_name(const jv *v) {
  static const char *NAMES[] = {"null", "a boolean", "a number", "a string", "an array", "an object"};
  return v ? NAMES[v->type] : "missing";
}

// ---------------------------------------------------------------------------------------------
// Records and batches

typedef enum { REC_OK = 0, REC_BAD, REC_EMPTY, REC_SKIP } rec_status;   // REC_SKIP: not a record (MRQA header)
typedef enum { FIX_NONE = 0, FIX_MOVED, FIX_MISSING } answer_fix;

typedef struct {
  const char *text;       // the answer (NUL-terminated)
  size_t len;
  int64_t given;          // offset given by the source, in code points; -1 none
  int64_t start;          // offset written: given, corrected, or -1
  answer_fix fix;
  int32_t *toks;          // (n_toks)
  size_t n_toks;
} rec_answer;

typedef struct {
  rec_status status;
  int file;               // index of the input
  int64_t line;           // 1-based line where the record starts; 0: the whole file
  const char *where;      // inside the line/file, e.g. "qas[2]"; NULL when the line says it all
  const char *msg;        // REC_BAD / REC_EMPTY: why
  const char *id;
  const char *text;       // document, or context (several QA records may share one pointer)
  size_t len;
  const char *question;
  size_t qlen;
  rec_answer *ans;        // (n_ans)
  int n_ans;
  int32_t *toks;          // (n_toks) tokens of text
  size_t n_toks;
  int32_t *qtoks;         // (n_qtoks) tokens of question
  size_t n_qtoks;
  int id_defaulted;       // ARXIV: no id in the record, BASENAME:LINE given instead
  int split;              // corpus_split of the id (computed by the worker, for the report)
} rec;

// A unit of input for a worker to parse: a JSONL line, a text line or block.
typedef struct {
  const char *s;          // NULL when bad is set
  size_t len;
  int file;
  int64_t line;
  const char *bad;        // a problem the reader found (too long, empty file): the record is BAD
} raw_unit;

typedef struct batch {
  int64_t seq;
  arena a;
  raw_unit *raws;
  int n_raws, cap_raws;
  rec *recs;
  int n_recs, cap_recs;
  size_t in_bytes;
  int64_t encoded_bytes, encoded_tokens;
  int oom;
  int done;               // set by the worker (under the pool's lock)
  struct batch *next;     // in the pool's queue
} batch;

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

static rec *rec_push(batch *b, int file, int64_t line, const char *where) {
  if (b->n_recs == b->cap_recs) {
    int cap = b->cap_recs ? 2 * b->cap_recs : 64;
    rec *p = realloc(b->recs, (size_t)cap * sizeof *p);
    if (!p) {
      b->oom = 1;
      return NULL;
    }
    b->recs = p, b->cap_recs = cap;
  }
  rec *r = &b->recs[b->n_recs++];
  *r = (rec){.status = REC_OK, .file = file, .line = line, .where = where};
  return r;
}

static void rec_bad(batch *b, rec *r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void rec_bad(batch *b, rec *r, const char *fmt, ...) {
  char buf[600];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  r->status = REC_BAD;
  r->msg = arena_printf(&b->a, "%s", buf);
}

// How a field is named in messages: 'key' at the top of a record, PATH.key below it.
static void field_name(const char *path, const char *key, char *buf, size_t size) {
  if (*path) snprintf(buf, size, "%s.%s", path, key);
  else snprintf(buf, size, "'%s'", key);
}

// A string member `key` of o, or an error in *why: missing (when required), another type, a NUL
// inside, empty (when nonempty). 1: found; 0: absent and optional; -1: error.
static int get_str(batch *b, const jv *o, const char *path, const char *key, int required, int nonempty,
                   const char **s, size_t *n, const char **why) {
  const jv *v = jget(o, key);
  char name[128];
  field_name(path, key, name, sizeof name);
  *s = NULL, *n = 0;
  if (!v || (v->type == J_NULL && !required)) {
    if (!required) return 0;
    *why = arena_printf(&b->a, "%s is missing", name);
    return -1;
  }
  if (v->type != J_STR) {
    *why = arena_printf(&b->a, "%s is %s, want a string", name, jtype_name(v));
    return -1;
  }
  if (memchr(v->s, 0, v->len)) {
    *why = arena_printf(&b->a, "%s contains a NUL character (\\u0000)", name);
    return -1;
  }
  if (nonempty && v->len == 0) {
    *why = arena_printf(&b->a, "%s is empty", name);
    return -1;
  }
  *s = v->s, *n = v->len;
  return 1;
}

// An integer offset member: 1 found (>= 0), 0 absent (optional), -1 error.
static int get_offset(batch *b, const jv *o, const char *path, const char *key, int required, int64_t *out,
                      const char **why) {
  const jv *v = jget(o, key);
  *out = -1;
  char name[128];
  field_name(path, key, name, sizeof name);
  if (!v || (v->type == J_NULL && !required)) {
    if (!required) return 0;
    *why = arena_printf(&b->a, "%s is missing", name);
    return -1;
  }
  if (v->type != J_NUM || !v->is_int) {
    *why = arena_printf(&b->a, "%s is %s, want an integer", name, v->type == J_NUM ? "a non-integer number" : jtype_name(v));
    return -1;
  }
  if (v->i < 0) {
    *why = arena_printf(&b->a, "%s is %lld, want >= 0", name, (long long)v->i);
    return -1;
  }
  *out = v->i;
  return 1;
}

// ---------------------------------------------------------------------------------------------
// Ingest state (the calling thread's)

typedef struct {
  int fd;
  char *buf;
  size_t cap, lo, hi;        // unread data is buf[lo, hi)
  int eof;
  int64_t line_no;           // lines returned so far
  sha256_ctx sha;
} line_reader;

typedef struct {
  const ingest_config *cfg;
  const char *const *inputs;
  int n_inputs;
  size_t max_rec;
  ingest_report *rep;
  corpus_writer *w;
  int32_t vocab;

  // reading
  int cur;                   // input being read
  int open;                  // cur is open
  int64_t units;             // record units produced from the current file
  int64_t bytes_read;        // over all files
  int64_t bytes_total;
  line_reader rd;
  char *block;               // TEXT blocks: the block being gathered
  size_t block_len, block_cap, block_total;
  int64_t block_line;        // 0: no block open
  char *sq_buf;              // SQUAD: the whole file
  size_t sq_len;
  char sq_sha[SHA256_HEX_SIZE];
  arena sq_arena;
  const jv *sq_art;          // next article
  const jv *sq_par;          // next paragraph of the current article (NULL: take the next article)
  int sq_ia, sq_ip;          // their indexes
  size_t sq_line_off;        // line counting: sq_line is the line of byte sq_line_off
  int64_t sq_line;

  // writing
  double t0, last_progress;
  corpus_answer *answers;    // (cap_answers) scratch for corpus_writer_add_qa
  int cap_answers;
} ingest_ctx;

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
  if (C->cfg->format == INGEST_SQUAD) {
    size_t len;
    char *text = pith_read_file(path, &len, err);
    if (!text) return -1;
    C->bytes_read += (int64_t)len;
    uint8_t d[SHA256_DIGEST_SIZE];
    sha256_hash_buffer(text, len, d);
    sha256_to_hex(d, C->sq_sha);
    C->sq_buf = text, C->sq_len = len, C->sq_line = 1, C->sq_line_off = 0;
    C->sq_art = NULL, C->sq_par = NULL, C->sq_ia = 0;
    C->open = 1;
    if (len == 0 || is_blank(text, len)) return 0;  // reported as an empty file
    size_t bom = len >= 3 && !memcmp(text, "\xEF\xBB\xBF", 3) ? 3 : 0;
    jparser P;
    const jv *root = json_parse(&P, &C->sq_arena, text + bom, len - bom);
    if (!root) {
      int64_t line = 1;
      size_t col0 = 0;
      for (size_t i = 0; i < P.err_off; i++)
        if (text[bom + i] == '\n') line++, col0 = i + 1;
      return pith_fail(err, "%s:%lld:%zu: not valid JSON: %s", path, (long long)line, P.err_off - col0 + 1, P.why);
    }
    const jv *data = jget(root, "data");
    if (root->type != J_OBJ || !data || data->type != J_ARR)
      return pith_fail(err, "%s: not a SQuAD file: want a JSON object with a \"data\" list (got %s)", path,
                       root->type != J_OBJ ? jtype_name(root) : data ? jtype_name(data) : "no \"data\"");
    C->sq_art = data->child;
    return 0;
  }
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
    int blank = s && is_blank(s, n);
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

// SQUAD: the line of byte offset off (offsets only grow while the file is walked).
static int64_t squad_line(ingest_ctx *C, size_t off) {
  off += C->sq_len >= 3 && !memcmp(C->sq_buf, "\xEF\xBB\xBF", 3) ? 3 : 0;  // offsets are past a BOM
  for (; C->sq_line_off < off && C->sq_line_off < C->sq_len; C->sq_line_off++)
    if (C->sq_buf[C->sq_line_off] == '\n') C->sq_line++;
  return C->sq_line;
}

// SQUAD: one answer object into a. -1 and *why when malformed.
static int squad_answer(batch *b, const jv *o, const char *path, int need_start, rec_answer *a, const char **why) {
  if (!o || o->type != J_OBJ) {
    *why = arena_printf(&b->a, "%s is %s, want an object {text, answer_start}", path, jtype_name(o));
    return -1;
  }
  const char *s;
  size_t n;
  if (get_str(b, o, path, "text", 1, 1, &s, &n, why) < 0) return -1;
  if (get_offset(b, o, path, "answer_start", need_start, &a->given, why) < 0) return -1;
  if (!(a->text = arena_strndup(&b->a, s, n))) return *why = "out of memory", -1;
  a->len = n, a->start = -1;
  return 0;
}

// SQUAD: one question of a paragraph whose context was copied to ctx (ctx_len bytes).
static void squad_question(ingest_ctx *C, batch *b, const jv *qa, const char *where, const char *ctx,
                           size_t ctx_len) {
  rec *r = rec_push(b, C->cur, squad_line(C, qa->off), where);
  if (!r) return;
  r->text = ctx, r->len = ctx_len;
  const char *s, *why = NULL;
  size_t n;
  if (qa->type != J_OBJ) return rec_bad(b, r, "want an object {id, question, answers}, got %s", jtype_name(qa));
  if (get_str(b, qa, "", "id", 1, 1, &s, &n, &why) < 0) return rec_bad(b, r, "%s", why);
  r->id = arena_strndup(&b->a, s, n);
  if (get_str(b, qa, "", "question", 1, 1, &s, &n, &why) < 0) return rec_bad(b, r, "(id %s) %s", r->id, why);
  r->question = arena_strndup(&b->a, s, n), r->qlen = n;
  const jv *answers = jget(qa, "answers");
  if (!answers || answers->type != J_ARR)
    return rec_bad(b, r, "(id %s) 'answers' is %s, want a list", r->id, jtype_name(answers));
  r->ans = arena_alloc(&b->a, (answers->n ? answers->n : 1) * sizeof *r->ans);
  if (!r->ans || !r->id || !r->question) return (void)(b->oom = 1);
  int k = 0;
  for (const jv *a = answers->child; a; a = a->next, k++) {
    char path[48];
    snprintf(path, sizeof path, "answers[%d]", k);
    r->ans[k] = (rec_answer){0};
    if (squad_answer(b, a, path, 1, &r->ans[k], &why) < 0) return rec_bad(b, r, "(id %s) %s", r->id, why);
  }
  r->n_ans = k;
}

// SQUAD: the next paragraph (all its questions) into b: 1; 0 at the end of the file.
static int next_squad_unit(ingest_ctx *C, batch *b, pith_err *err) {
  while (!C->sq_par) {
    const jv *art = C->sq_art;
    if (!art) return 0;
    C->sq_art = art->next;
    int ia = C->sq_ia++;
    const jv *pars = jget(art, "paragraphs");
    if (art->type != J_OBJ || !pars || pars->type != J_ARR) {
      rec *r = rec_push(b, C->cur, squad_line(C, art->off), arena_printf(&b->a, "data[%d]", ia));
      if (!r) return pith_fail(err, "out of memory");
      C->units++;
      if (art->type != J_OBJ) rec_bad(b, r, "an article is %s, want an object with 'paragraphs'", jtype_name(art));
      else rec_bad(b, r, "'paragraphs' is %s, want a list", jtype_name(pars));
      return 1;
    }
    C->sq_par = pars->child, C->sq_ip = 0;
  }
  const jv *par = C->sq_par;
  C->sq_par = par->next;
  int ia = C->sq_ia - 1, ip = C->sq_ip++;
  C->units++;
  const char *ctx, *why = NULL;
  size_t ctx_len;
  const jv *qas = jget(par, "qas");
  if (par->type != J_OBJ || get_str(b, par, "", "context", 1, 1, &ctx, &ctx_len, &why) < 0 || !qas ||
      qas->type != J_ARR) {
    rec *r = rec_push(b, C->cur, squad_line(C, par->off), arena_printf(&b->a, "data[%d].paragraphs[%d]", ia, ip));
    if (!r) return pith_fail(err, "out of memory");
    if (par->type != J_OBJ) rec_bad(b, r, "a paragraph is %s, want an object {context, qas}", jtype_name(par));
    else if (why) rec_bad(b, r, "%s", why);
    else rec_bad(b, r, "'qas' is %s, want a list", jtype_name(qas));
    return 1;
  }
  const char *copy = arena_strndup(&b->a, ctx, ctx_len);
  if (!copy) return pith_fail(err, "out of memory");
  b->in_bytes += ctx_len;
  int k = 0;
  for (const jv *qa = qas->child; qa; qa = qa->next, k++) {
    squad_question(C, b, qa, arena_printf(&b->a, "data[%d].paragraphs[%d].qas[%d]", ia, ip, k), copy, ctx_len);
    if (b->oom) return pith_fail(err, "out of memory");
  }
  return 1;
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
    int r = C->cfg->format == INGEST_SQUAD ? next_squad_unit(C, b, err) : next_line_unit(C, b, err);
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
// Parsing units (workers)

static int parse_json_unit(batch *b, rec *r, const raw_unit *u, const jv **o) {
  jparser P;
  *o = json_parse(&P, &b->a, u->s, u->len);
  if (!*o) {
    if (b->a.oom) return b->oom = 1, -1;
    rec_bad(b, r, "bad JSON at column %zu: %s", P.err_off + 1, P.why);
    return -1;
  }
  if ((*o)->type != J_OBJ) {
    rec_bad(b, r, "the line is %s, want a JSON object", jtype_name(*o));
    return -1;
  }
  return 0;
}

static const char *default_id(ingest_ctx *C, batch *b, const raw_unit *u) {
  return arena_printf(&b->a, "%s:%lld", base_name(C->inputs[u->file]), (long long)u->line);
}

static void parse_arxiv(ingest_ctx *C, batch *b, const raw_unit *u) {
  rec *r = rec_push(b, u->file, u->line, NULL);
  const jv *o;
  const char *s, *why;
  size_t n;
  if (!r || parse_json_unit(b, r, u, &o) < 0) return;
  int has_id = get_str(b, o, "", "id", 0, 1, &s, &n, &why);
  if (has_id < 0) return rec_bad(b, r, "%s", why);
  r->id = has_id ? arena_strndup(&b->a, s, n) : default_id(C, b, u);
  r->id_defaulted = !has_id;
  if (get_str(b, o, "", "abstract", 1, 0, &s, &n, &why) < 0) return rec_bad(b, r, "(id %s) %s", r->id, why);
  char *text = arena_alloc(&b->a, n + 1);
  if (!text || !r->id) return (void)(b->oom = 1);
  r->text = text, r->len = normalize_space(s, n, text);
  if (r->len == 0) r->status = REC_EMPTY, r->msg = arena_printf(&b->a, "(id %s) empty abstract", r->id);
}

static void parse_text(ingest_ctx *C, batch *b, const raw_unit *u) {
  rec *r = rec_push(b, u->file, u->line, NULL);
  if (!r) return;
  int64_t bad = utf8_invalid_at(u->s, u->len);
  if (bad >= 0)
    return rec_bad(b, r, "invalid UTF-8 at byte %lld of the %s (byte 0x%02X)", (long long)bad,
                   C->cfg->text_mode == INGEST_TEXT_BLOCKS ? "block" : "line", (unsigned char)u->s[bad]);
  const char *nul = memchr(u->s, 0, u->len);
  if (nul) return rec_bad(b, r, "a NUL byte at byte %zu", (size_t)(nul - u->s));
  r->id = default_id(C, b, u);
  r->text = u->s, r->len = u->len;
  if (is_blank(u->s, u->len))
    r->status = REC_EMPTY, r->msg = u->len ? "whitespace-only document" : "empty line";
}

// QA: {id?, context, question, answer | answers, answer_start?}
static void parse_qa(ingest_ctx *C, batch *b, const raw_unit *u) {
  rec *r = rec_push(b, u->file, u->line, NULL);
  const jv *o;
  const char *s, *why;
  size_t n;
  if (!r || parse_json_unit(b, r, u, &o) < 0) return;
  int has_id = get_str(b, o, "", "id", 0, 1, &s, &n, &why);
  if (has_id < 0) return rec_bad(b, r, "%s", why);
  r->id = has_id ? arena_strndup(&b->a, s, n) : default_id(C, b, u);
  if (get_str(b, o, "", "context", 1, 1, &s, &n, &why) < 0) return rec_bad(b, r, "%s", why);
  r->text = s, r->len = n;
  if (get_str(b, o, "", "question", 1, 1, &s, &n, &why) < 0) return rec_bad(b, r, "%s", why);
  r->question = s, r->qlen = n;
  const jv *one = jget(o, "answer"), *many = jget(o, "answers");
  if (one && many) return rec_bad(b, r, "both 'answer' and 'answers' are given; keep one");
  if (!one && !many) return rec_bad(b, r, "'answer' (a string) or 'answers' (a list) is missing");
  if (one) {
    r->ans = arena_alloc(&b->a, sizeof *r->ans);
    if (!r->ans) return (void)(b->oom = 1);
    r->ans[0] = (rec_answer){0};
    if (get_str(b, o, "", "answer", 1, 1, &r->ans[0].text, &r->ans[0].len, &why) < 0 ||
        get_offset(b, o, "", "answer_start", 0, &r->ans[0].given, &why) < 0)
      return rec_bad(b, r, "%s", why);
    r->n_ans = 1;
    return;
  }
  if (many->type != J_ARR) return rec_bad(b, r, "'answers' is %s, want a list", jtype_name(many));
  if (jget(o, "answer_start")) return rec_bad(b, r, "'answer_start' goes inside each answer object when 'answers' is a list");
  r->ans = arena_alloc(&b->a, (many->n ? many->n : 1) * sizeof *r->ans);
  if (!r->ans) return (void)(b->oom = 1);
  int k = 0;
  for (const jv *a = many->child; a; a = a->next, k++) {
    char path[48];
    snprintf(path, sizeof path, "answers[%d]", k);
    r->ans[k] = (rec_answer){.given = -1, .start = -1};
    if (a->type == J_STR) {
      if (a->len == 0) return rec_bad(b, r, "%s is empty", path);
      if (memchr(a->s, 0, a->len)) return rec_bad(b, r, "%s contains a NUL character (\\u0000)", path);
      r->ans[k].text = a->s, r->ans[k].len = a->len;
    } else if (squad_answer(b, a, path, 0, &r->ans[k], &why) < 0) {
      return rec_bad(b, r, "%s", why);
    }
  }
  r->n_ans = k;
}

// MRQA: a header line, then {context, qas: [{qid, question, answers, detected_answers}]}.
static void parse_mrqa_qa(batch *b, rec *r, const jv *qa) {
  const char *s, *why;
  size_t n;
  if (qa->type != J_OBJ) return rec_bad(b, r, "want an object {qid, question, ...}, got %s", jtype_name(qa));
  if (get_str(b, qa, "", "qid", 1, 1, &s, &n, &why) < 0) return rec_bad(b, r, "%s", why);
  r->id = s;
  if (get_str(b, qa, "", "question", 1, 1, &s, &n, &why) < 0) return rec_bad(b, r, "(qid %s) %s", r->id, why);
  r->question = s, r->qlen = n;
  const jv *det = jget(qa, "detected_answers"), *ans = jget(qa, "answers");
  if (det && det->type != J_ARR) return rec_bad(b, r, "(qid %s) 'detected_answers' is %s, want a list", r->id, jtype_name(det));
  if (ans && ans->type != J_ARR) return rec_bad(b, r, "(qid %s) 'answers' is %s, want a list", r->id, jtype_name(ans));
  if (!det && !ans) return rec_bad(b, r, "(qid %s) neither 'detected_answers' nor 'answers' is given", r->id);
  size_t cap = (det ? det->n : 0) + (ans ? ans->n : 0);
  r->ans = arena_alloc(&b->a, (cap ? cap : 1) * sizeof *r->ans);
  if (!r->ans) return (void)(b->oom = 1);
  int k = 0, i = 0;
  for (const jv *d = det ? det->child : NULL; d; d = d->next, i++) {
    char path[48];
    snprintf(path, sizeof path, "detected_answers[%d]", i);
    if (d->type != J_OBJ) return rec_bad(b, r, "(qid %s) %s is %s, want an object", r->id, path, jtype_name(d));
    if (get_str(b, d, path, "text", 1, 1, &s, &n, &why) < 0) return rec_bad(b, r, "(qid %s) %s", r->id, why);
    const jv *spans = jget(d, "char_spans"), *first = spans && spans->type == J_ARR ? spans->child : NULL;
    if (!first || first->type != J_ARR || first->n != 2 || first->child->type != J_NUM || !first->child->is_int ||
        first->child->next->type != J_NUM || !first->child->next->is_int || first->child->i < 0 ||
        first->child->next->i < first->child->i)
      return rec_bad(b, r, "(qid %s) %s.'char_spans' must be a non-empty list of [start, end] integer pairs", r->id, path);
    int dup = 0;
    for (int j = 0; j < k; j++) dup |= r->ans[j].len == n && !memcmp(r->ans[j].text, s, n);
    if (!dup) r->ans[k++] = (rec_answer){.text = s, .len = n, .given = first->child->i, .start = -1};
  }
  i = 0;
  for (const jv *a = ans ? ans->child : NULL; a; a = a->next, i++) {
    if (a->type != J_STR) return rec_bad(b, r, "(qid %s) answers[%d] is %s, want a string", r->id, i, jtype_name(a));
    if (a->len == 0 || memchr(a->s, 0, a->len)) return rec_bad(b, r, "(qid %s) answers[%d] is empty or has a NUL", r->id, i);
    int dup = 0;
    for (int j = 0; j < k; j++) dup |= r->ans[j].len == a->len && !memcmp(r->ans[j].text, a->s, a->len);
    if (!dup) r->ans[k++] = (rec_answer){.text = a->s, .len = a->len, .given = -1, .start = -1};
  }
  r->n_ans = k;
}

static void parse_mrqa(ingest_ctx *C, batch *b, const raw_unit *u) {
  rec *r = rec_push(b, u->file, u->line, NULL);
  const jv *o;
  const char *ctx, *why;
  size_t ctx_len;
  if (!r || parse_json_unit(b, r, u, &o) < 0) return;
  const jv *qas = jget(o, "qas");
  if (jget(o, "header") && !jget(o, "context")) {
    r->status = REC_SKIP;
    return;
  }
  if (get_str(b, o, "", "context", 1, 1, &ctx, &ctx_len, &why) < 0) return rec_bad(b, r, "%s", why);
  if (!qas || qas->type != J_ARR) return rec_bad(b, r, "'qas' is %s, want a list", jtype_name(qas));
  if (qas->n == 0) {
    r->status = REC_SKIP;   // a context without questions holds no example
    return;
  }
  int k = 0;
  for (const jv *qa = qas->child; qa; qa = qa->next, k++) {
    if (k > 0 && !(r = rec_push(b, u->file, u->line, NULL))) return;
    r->where = arena_printf(&b->a, "qas[%d]", k);
    r->text = ctx, r->len = ctx_len;
    parse_mrqa_qa(b, r, qa);
  }
}

// ---------------------------------------------------------------------------------------------
// Finishing records (workers): answer alignment, tokenization

// Where an answer sits: at its given offset if its text is there, else the occurrence nearest to
// it (FIX_MOVED), else nowhere (FIX_MISSING, start -1). Without a given offset: the first occurrence.
static void align_answer(const char *ctx, size_t n, rec_answer *a) {
  a->fix = FIX_NONE;
  if (a->given >= 0) {
    size_t at = utf8_byte_of(ctx, n, a->given);
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
    cp += utf8_count(ctx + counted, at - counted);
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
    rec_bad(b, r, "%s: %s", what, e.msg);
    return -1;
  }
  for (size_t i = 0; i < k; i++)
    if (ids[i] < 0 || ids[i] >= C->vocab) {
      rec_bad(b, r, "%s: the tokenizer gave id %d, outside its vocabulary of %d", what, (int)ids[i], (int)C->vocab);
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
      rec *r = rec_push(b, u->file, u->line, NULL);
      if (r) r->status = REC_BAD, r->msg = u->bad;
      continue;
    }
    switch (C->cfg->format) {
      case INGEST_ARXIV: parse_arxiv(C, b, u); break;
      case INGEST_TEXT: parse_text(C, b, u); break;
      case INGEST_QA: parse_qa(C, b, u); break;
      case INGEST_MRQA: parse_mrqa(C, b, u); break;
      default: break;
    }
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
  return !strcmp(base_name(path), "config.json") || !strcmp(base_name(path), "generation_config.json");
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
    sha256_update(&ctx, base_name(files[i]), strlen(base_name(files[i])));
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
