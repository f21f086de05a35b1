// run_config: YAML run configs with command-line overrides, checked against a schema.
// See run_config.h. Values are text until resolve. The YAML is read by a small parser of the
// subset run configs use (below, "load"); nothing outside this file is needed.
#include "run_config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define RC_MAX_DEPTH 32        // nesting of mappings
#define RC_MAX_ENTRIES 10000   // keys of one file
#define RC_FORMAT_VERSION 1    // of the saved file (the header comment says it)

// One key as given: by a file or on the command line.
typedef struct {
  char *key;
  char *val;
  char *kwhere;   // where the key was written: "path:line:col" or "command line"
  char *vwhere;   // where the value was written
  int cli;        // set by run_config_set: no file replaces it
  size_t kline, kcol;  // of the key in its file (1-based; 0 on the command line)
} rc_entry;

typedef struct {
  rc_entry *e;
  int n, cap;
} rc_list;

// One schema key after resolve.
typedef struct {
  char *key;
  rc_type type;
  int64_t i;
  double f;
  int b;
  char *text;     // canonical text: what run_config_str and the saved file give
} rc_value;

struct run_config {
  rc_list in;       // every key given, in the order first given
  rc_value *v;      // resolved schema keys, in schema order
  int nv;
  int resolved;
  char *files;      // files loaded, ", "-separated (for the saved file's header)
  int n_sets;       // command-line assignments
};

// ---- small helpers ----

static char *rc_strndup(const char *s, size_t n) {
  char *d = malloc(n + 1);
  if (!d) return NULL;
  memcpy(d, s, n);
  d[n] = 0;
  return d;
}

static char *rc_strdup(const char *s) { return rc_strndup(s, strlen(s)); }

// A growable string; `oom` sticks once an allocation fails.
typedef struct {
  char *p;
  size_t n, cap;
  int oom;
} sbuf;

static void sb_putn(sbuf *b, const char *s, size_t n) {
  if (b->oom) return;
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (b->n + n + 1 > cap) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
      b->oom = 1;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = 0;
}

static void sb_puts(sbuf *b, const char *s) { sb_putn(b, s, strlen(s)); }

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
  char tmp[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n < sizeof tmp) {
    sb_putn(b, tmp, (size_t)n);
    return;
  }
  char *big = malloc((size_t)n + 1);
  if (!big) {
    b->oom = 1;
    return;
  }
  va_start(ap, fmt);
  vsnprintf(big, (size_t)n + 1, fmt, ap);
  va_end(ap);
  sb_putn(b, big, (size_t)n);
  free(big);
}

// Strict UTF-8 (no overlong forms, no surrogates, nothing past U+10FFFF): YAML files are UTF-8,
// so a value that is not could not be saved and read back.
static int utf8_valid(const char *str) {
  const unsigned char *s = (const unsigned char *)str;
  while (*s) {
    unsigned c = *s;
    int len;
    uint32_t cp;
    if (c < 0x80) {
      s++;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return 0;
    }
    for (int k = 1; k < len; k++) {
      if ((s[k] & 0xC0) != 0x80) return 0;
      cp = (cp << 6) | (s[k] & 0x3F);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      return 0;
    s += len;
  }
  return 1;
}

static int streq_nocase(const char *a, const char *b) {
  for (; *a && *b; a++, b++)
    if (tolower((unsigned char)*a) != tolower((unsigned char)*b)) return 0;
  return *a == *b;
}

static const char *type_name(rc_type t) {
  switch (t) {
    case RC_INT: return "int";
    case RC_FLOAT: return "float";
    case RC_BOOL: return "bool";
    case RC_STRING: return "string";
  }
  return "?";
}

// ---- the entry list ----

static void entry_free(rc_entry *e) {
  free(e->key);
  free(e->val);
  free(e->kwhere);
  free(e->vwhere);
}

static void list_free(rc_list *l) {
  for (int i = 0; i < l->n; i++) entry_free(&l->e[i]);
  free(l->e);
  l->e = NULL;
  l->n = l->cap = 0;
}

static rc_entry *list_find(const rc_list *l, const char *key) {
  for (int i = 0; i < l->n; i++)
    if (strcmp(l->e[i].key, key) == 0) return &l->e[i];
  return NULL;
}

// Append an entry, taking ownership of the strings (freed here on failure).
static int list_push(rc_list *l, char *key, char *val, char *kwhere, char *vwhere, int cli) {
  rc_entry e = {key, val, kwhere, vwhere, cli, 0, 0};
  if (!key || !val || !kwhere || !vwhere) {
    entry_free(&e);
    return -1;
  }
  if (l->n == l->cap) {
    int cap = l->cap ? l->cap * 2 : 32;
    rc_entry *p = realloc(l->e, (size_t)cap * sizeof *p);
    if (!p) {
      entry_free(&e);
      return -1;
    }
    l->e = p;
    l->cap = cap;
  }
  l->e[l->n++] = e;
  return 0;
}

// ---- new / free ----

static void values_free(run_config *c) {
  for (int i = 0; i < c->nv; i++) {
    free(c->v[i].key);
    free(c->v[i].text);
  }
  free(c->v);
  c->v = NULL;
  c->nv = 0;
  c->resolved = 0;
}

run_config *run_config_new(void) { return calloc(1, sizeof(run_config)); }

void run_config_free(run_config *c) {
  if (!c) return;
  list_free(&c->in);
  values_free(c);
  free(c->files);
  free(c);
}

// ---- load: a YAML subset ----
//
// What run config files use, read the way YAML 1.1 (libyaml, PyYAML) reads it: one document of
// block mappings; values that are plain, 'single-quoted' or "double-quoted" scalars (every YAML
// escape), literal (|) and folded (>) block scalars, flow [lists] and {mappings}, and block lists;
// comments; `---` / `...` markers and a %YAML directive. Not supported, refused with a clear error:
// anchors and aliases, tags, explicit `? key` entries, other directives, and the line breaks
// U+0085/U+2028/U+2029 written raw (their escapes \N \L \P are fine). The file is read into a
// small tree of nodes (every node knows its line and column), which flatten() then turns into
// "dotted.key: text" entries.

#define RC_MAX_NESTING 64      // of collections while parsing (the parser recurses)
#define RC_MAX_KEY_CHARS 1024  // YAML's limit on an implicit key

typedef enum { YN_SCALAR, YN_LIST, YN_MAP } yn_kind;

typedef struct ynode ynode;
struct ynode {
  yn_kind kind;
  int plain;          // a scalar written plain (null when "", ~, null, Null, NULL)
  char *text;         // scalar text (may hold a NUL from an escape: see len)
  size_t len;
  size_t line, col;   // 1-based, of the node's first character
  ynode **kids;       // list: items; map: key, value, key, value, ...
  int n, cap;
};

static void yn_free(ynode *n) {
  if (!n) return;
  for (int i = 0; i < n->n; i++) yn_free(n->kids[i]);
  free(n->kids);
  free(n->text);
  free(n);
}

typedef struct {
  const char *path;
  const char *s;      // the text: UTF-8, '\n' line breaks, NUL-terminated
  size_t len;
  size_t i;           // cursor
  size_t line, col;   // of the cursor, 0-based; col counts characters, not bytes
  int flow;           // depth of [ ] / { } around the cursor
  int sk;             // block context: at a line start or after '-' (where tabs may not indent)
  size_t tok_line;    // line where the last scalar or flow collection ended (SIZE_MAX: the cursor
                      // is already at the start of a later line)
  int depth;
  pith_err *err;
  int failed;
} yparser;

static int yp_fail(yparser *p, size_t line, size_t col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int yp_fail(yparser *p, size_t line, size_t col, const char *fmt, ...) {
  if (p->failed) return -1;
  char msg[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  p->failed = 1;
  return pith_fail(p->err, "%s:%zu:%zu: invalid YAML: %s", p->path, line + 1, col + 1, msg);
}

#define YP_FAIL(p, ...) yp_fail((p), (p)->line, (p)->col, __VA_ARGS__)

static char yc(const yparser *p, size_t k) { return p->i + k < p->len ? p->s[p->i + k] : 0; }
static int yp_eof(const yparser *p) { return p->i >= p->len; }
static int is_blank(char c) { return c == ' ' || c == '\t'; }
static int is_blankz(char c) { return c == ' ' || c == '\t' || c == '\n' || c == 0; }

static void yp_adv(yparser *p) {
  if (p->i >= p->len) return;
  char c = p->s[p->i++];
  if (c == '\n') p->line++, p->col = 0;
  else if (((unsigned char)c & 0xC0) != 0x80) p->col++;
}

// "---" or "..." alone at the start of a line.
static int at_doc_marker(const yparser *p) {
  if (p->col != 0) return 0;
  char c = yc(p, 0);
  return (c == '-' || c == '.') && yc(p, 1) == c && yc(p, 2) == c && is_blankz(yc(p, 3));
}

static int at_bom(const yparser *p) {
  return yc(p, 0) == '\xEF' && yc(p, 1) == '\xBB' && yc(p, 2) == '\xBF';
}

// Skip spaces, comments and line breaks up to the next token. In the block context a tab may not
// indent a line, nor follow '-' (YAML's rule, as PyYAML and libyaml apply it).
static int skip_space(yparser *p) {
  for (;;) {
    if (p->col == 0 && at_bom(p)) yp_adv(p), yp_adv(p), yp_adv(p);
    while (yc(p, 0) == ' ' || (yc(p, 0) == '\t' && (p->flow || !p->sk))) yp_adv(p);
    if (yc(p, 0) == '\t')
      return YP_FAIL(p, "a tab character where YAML allows only spaces (indentation, or after "
                        "'-'); indent with spaces");
    if (yc(p, 0) == '#')
      while (!yp_eof(p) && yc(p, 0) != '\n') yp_adv(p);
    if (yc(p, 0) != '\n') return 0;
    yp_adv(p);
    if (!p->flow) p->sk = 1;
  }
}

static ynode *yn_new(yparser *p, yn_kind kind, size_t line, size_t col) {
  ynode *n = calloc(1, sizeof *n);
  if (!n) {
    if (!p->failed) pith_fail(p->err, "%s: out of memory", p->path);
    p->failed = 1;
    return NULL;
  }
  n->kind = kind;
  n->line = line + 1;
  n->col = col + 1;
  return n;
}

static int yn_add(yparser *p, ynode *parent, ynode *kid) {
  if (!kid) return -1;
  if (parent->n == parent->cap) {
    int cap = parent->cap ? parent->cap * 2 : 8;
    ynode **k = realloc(parent->kids, (size_t)cap * sizeof *k);
    if (!k) {
      yn_free(kid);
      if (!p->failed) pith_fail(p->err, "%s: out of memory", p->path);
      p->failed = 1;
      return -1;
    }
    parent->kids = k;
    parent->cap = cap;
  }
  parent->kids[parent->n++] = kid;
  return 0;
}

// A scalar node owning the text of b (an empty plain scalar when b is empty).
static ynode *yn_scalar(yparser *p, sbuf *b, int plain, size_t line, size_t col) {
  if (b->oom || !(b->p || (b->p = calloc(1, 1)))) {
    free(b->p);
    if (!p->failed) pith_fail(p->err, "%s: out of memory", p->path);
    p->failed = 1;
    return NULL;
  }
  ynode *n = yn_new(p, YN_SCALAR, line, col);
  if (!n) {
    free(b->p);
    return NULL;
  }
  n->plain = plain;
  n->text = b->p;
  n->len = b->n;
  return n;
}

static ynode *yn_null(yparser *p, size_t line, size_t col) {
  sbuf b = {0};
  return yn_scalar(p, &b, 1, line, col);
}

// Anything a run config does not support, or that cannot start a value.
static int bad_start(yparser *p) {
  char c = yc(p, 0);
  if (c == '&' || c == '*')
    return YP_FAIL(p, "anchors and aliases (&name, *name) are not supported in a run config");
  if (c == '!') return YP_FAIL(p, "tags (!tag) are not supported in a run config");
  if (c == '?' && (p->flow || is_blankz(yc(p, 1))))
    return YP_FAIL(p, "explicit keys ('? key') are not supported in a run config");
  if (c == '%' || c == '@' || c == '`') return YP_FAIL(p, "'%c' cannot start a value", c);
  if (c == '|' || c == '>')
    return YP_FAIL(p, "a block scalar ('%c') cannot be a key or sit in [ ] or { }", c);
  if (c == '-' && is_blankz(yc(p, 1)))
    return YP_FAIL(p, "a list entry ('- ') is not allowed here");
  if (c == ',' || c == ']' || c == '}' || c == '[' || c == '{' || c == ':')
    return YP_FAIL(p, "unexpected '%c'", c);
  return 0;
}

// Whether the cursor is at something that starts a plain scalar (YAML 1.1's rule).
static int plain_start(const yparser *p) {
  char c = yc(p, 0), d = yc(p, 1);
  if (is_blankz(c) || strchr(",[]{}#&*!|>'\"%@`", c)) return 0;
  if (c == '-') return !is_blankz(d);
  if (c == '?' || c == ':') return !p->flow && !is_blankz(d);
  return 1;
}

// The buffers of a scalar being read: its text, the blanks after the last word of the current
// line (they count only when more text follows on that line), whether a line break came after
// them, and the line breaks after that first one.
typedef struct {
  sbuf out, ws, trailing;
  int broke;
} scan_bufs;

static void scan_free(scan_bufs *b) {
  free(b->out.p);
  free(b->ws.p);
  free(b->trailing.p);
}

// Blanks and line breaks inside a multi-line scalar. A tab before column tab_limit on a
// continuation line is an error (it would indent the line).
static int eat_blanks(yparser *p, scan_bufs *b, long tab_limit) {
  while (is_blank(yc(p, 0)) || yc(p, 0) == '\n') {
    if (yc(p, 0) == '\n') {
      if (b->broke) sb_puts(&b->trailing, "\n");
      b->ws.n = 0;
      b->broke = 1;
    } else if (b->broke && yc(p, 0) == '\t' && (long)p->col < tab_limit) {
      return YP_FAIL(p, "a tab character in the indentation of a multi-line value; indent with "
                        "spaces");
    } else if (!b->broke) {
      sb_putn(&b->ws, p->s + p->i, 1);
    }
    yp_adv(p);
  }
  return 0;
}

// The blanks between two pieces of text, folded as YAML folds them: as written within a line;
// across lines, one line break reads as a space and n > 1 as n - 1 newlines; after an escaped
// line break (a "\" ending the line), only those newlines.
static void join_blanks(scan_bufs *b, int escaped) {
  if (b->broke) {
    if (!escaped && b->trailing.n == 0) sb_puts(&b->out, " ");
    if (b->trailing.n) sb_putn(&b->out, b->trailing.p, b->trailing.n);
  } else if (b->ws.n) {
    sb_putn(&b->out, b->ws.p, b->ws.n);
  }
  b->ws.n = b->trailing.n = 0;
  b->broke = 0;
}

// A plain scalar. Continuation lines (block context) must be indented past `parent`.
static ynode *plain_scalar(yparser *p, int parent) {
  size_t line = p->line, col = p->col;
  long indent = parent + 1;
  scan_bufs b = {0};
  for (;;) {
    if (at_doc_marker(p) || yc(p, 0) == '#') break;
    while (!is_blankz(yc(p, 0))) {
      char c = yc(p, 0), d = yc(p, 1);
      if (p->flow && c == ':' && d && strchr(",?[]{}", d)) {
        YP_FAIL(p, "unexpected ':' in a plain scalar (quote the text)");
        scan_free(&b);
        return NULL;
      }
      if ((c == ':' && is_blankz(d)) || (p->flow && strchr(",[]{}", c))) break;
      join_blanks(&b, 0);
      sb_putn(&b.out, p->s + p->i, 1);
      yp_adv(p);
    }
    if (!is_blank(yc(p, 0)) && yc(p, 0) != '\n') break;
    if (eat_blanks(p, &b, indent)) {
      scan_free(&b);
      return NULL;
    }
    if (!p->flow && (long)p->col < indent) break;
  }
  if (!p->flow) p->sk = b.broke;
  p->tok_line = b.broke ? SIZE_MAX : p->line;
  free(b.ws.p);
  free(b.trailing.p);
  return yn_scalar(p, &b.out, 1, line, col);
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static void put_utf8(sbuf *b, uint32_t cp) {
  char u[4];
  size_t n;
  if (cp < 0x80) u[0] = (char)cp, n = 1;
  else if (cp < 0x800) u[0] = (char)(0xC0 | cp >> 6), u[1] = (char)(0x80 | (cp & 0x3F)), n = 2;
  else if (cp < 0x10000)
    u[0] = (char)(0xE0 | cp >> 12), u[1] = (char)(0x80 | (cp >> 6 & 0x3F)),
    u[2] = (char)(0x80 | (cp & 0x3F)), n = 3;
  else
    u[0] = (char)(0xF0 | cp >> 18), u[1] = (char)(0x80 | (cp >> 12 & 0x3F)),
    u[2] = (char)(0x80 | (cp >> 6 & 0x3F)), u[3] = (char)(0x80 | (cp & 0x3F)), n = 4;
  sb_putn(b, u, n);
}

// One escape of a double-quoted scalar, the cursor at its backslash. YAML 1.1's set: \0 \a \b \t
// \n \v \f \r \e \<space> \" \/ \\ \N \_ \L \P \xXX \uXXXX \UXXXXXXXX (and \ + a tab).
static int put_escape(yparser *p, sbuf *b) {
  size_t line = p->line, col = p->col;
  char e = yc(p, 1);
  int ch = -1, digits = 0;
  uint32_t cp = 0;
  switch (e) {
    case '0': ch = 0; break;
    case 'a': ch = '\a'; break;
    case 'b': ch = '\b'; break;
    case 't': case '\t': ch = '\t'; break;
    case 'n': ch = '\n'; break;
    case 'v': ch = '\v'; break;
    case 'f': ch = '\f'; break;
    case 'r': ch = '\r'; break;
    case 'e': ch = 0x1B; break;
    case ' ': case '"': case '/': case '\\': ch = e; break;
    case 'N': cp = 0x85; break;
    case '_': cp = 0xA0; break;
    case 'L': cp = 0x2028; break;
    case 'P': cp = 0x2029; break;
    case 'x': digits = 2; break;
    case 'u': digits = 4; break;
    case 'U': digits = 8; break;
    default:
      if (e > 0x20 && e < 0x7F)
        return yp_fail(p, line, col, "unknown escape '\\%c' in a double-quoted string", e);
      return yp_fail(p, line, col, "unknown escape in a double-quoted string");
  }
  yp_adv(p), yp_adv(p);
  if (ch >= 0) {
    char c8 = (char)ch;
    sb_putn(b, &c8, 1);
    return 0;
  }
  if (!digits) {
    put_utf8(b, cp);
    return 0;
  }
  size_t hline = p->line, hcol = p->col;
  for (int k = 0; k < digits; k++) {
    int h = hexval(yc(p, 0));
    if (h < 0) return yp_fail(p, hline, hcol, "'\\%c' wants %d hexadecimal digits", e, digits);
    cp = cp << 4 | (uint32_t)h;
    yp_adv(p);
  }
  if ((cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
    return yp_fail(p, hline, hcol, "'\\%c' escape of an invalid code point (U+%04X)", e,
                   (unsigned)cp);
  put_utf8(b, cp);
  return 0;
}

// A 'single-quoted' or "double-quoted" scalar; line breaks fold as in plain scalars.
static ynode *quoted_scalar(yparser *p) {
  size_t line = p->line, col = p->col;
  char q = yc(p, 0);
  scan_bufs b = {0};
  yp_adv(p);
  for (;;) {
    if (at_doc_marker(p)) {
      YP_FAIL(p, "a document marker inside a quoted string (opened at line %zu, column %zu)",
              line + 1, col + 1);
      goto fail;
    }
    if (yp_eof(p)) {
      YP_FAIL(p, "the quoted string opened at line %zu, column %zu is not closed", line + 1,
              col + 1);
      goto fail;
    }
    int escaped = 0;
    while (!is_blankz(yc(p, 0))) {
      char c = yc(p, 0);
      if (q == '\'' && c == '\'' && yc(p, 1) == '\'') {
        sb_puts(&b.out, "'");
        yp_adv(p), yp_adv(p);
      } else if (c == q) {
        break;
      } else if (q == '"' && c == '\\' && yc(p, 1) == '\n') {
        yp_adv(p), yp_adv(p);
        b.broke = escaped = 1;
        break;
      } else if (q == '"' && c == '\\') {
        if (put_escape(p, &b.out)) goto fail;
      } else {
        sb_putn(&b.out, p->s + p->i, 1);
        yp_adv(p);
      }
    }
    if (yc(p, 0) == q) break;
    if (eat_blanks(p, &b, 0)) goto fail;
    join_blanks(&b, escaped);
  }
  yp_adv(p);  // the closing quote
  free(b.ws.p);
  free(b.trailing.p);
  p->sk = 0;
  p->tok_line = p->line;
  return yn_scalar(p, &b.out, 0, line, col);
fail:
  scan_free(&b);
  return NULL;
}

// The indentation and empty lines before a block scalar's next content line; fixes the
// indentation from the first content line when it is not known yet.
static int block_breaks(yparser *p, long parent, long *indent, sbuf *trailing) {
  long max_indent = 0;
  for (;;) {
    while ((!*indent || (long)p->col < *indent) && yc(p, 0) == ' ') yp_adv(p);
    if ((long)p->col > max_indent) max_indent = (long)p->col;
    if ((!*indent || (long)p->col < *indent) && yc(p, 0) == '\t')
      return YP_FAIL(p, "a tab character in the indentation of a block scalar; indent with spaces");
    if (yc(p, 0) != '\n') break;
    sb_puts(trailing, "\n");
    yp_adv(p);
  }
  if (!*indent) {
    *indent = max_indent;
    if (*indent < parent + 1) *indent = parent + 1;
    if (*indent < 1) *indent = 1;
  }
  return 0;
}

// A literal (|) or folded (>) block scalar, with its chomping (+ -) and indentation (1-9)
// indicators.
static ynode *block_scalar(yparser *p, int parent) {
  size_t line = p->line, col = p->col;
  int literal = yc(p, 0) == '|', chomping = 0;
  long increment = 0, indent = 0;
  sbuf out = {0}, trailing = {0};
  yp_adv(p);
  for (int k = 0; k < 2; k++) {
    char c = yc(p, 0);
    if ((c == '+' || c == '-') && !chomping) {
      chomping = c == '+' ? 1 : -1;
      yp_adv(p);
    } else if (c >= '0' && c <= '9' && !increment) {
      if (c == '0') {
        YP_FAIL(p, "a block scalar's indentation indicator is 1 to 9, not 0");
        goto fail;
      }
      increment = c - '0';
      yp_adv(p);
    }
  }
  while (is_blank(yc(p, 0))) yp_adv(p);
  if (yc(p, 0) == '#')
    while (!yp_eof(p) && yc(p, 0) != '\n') yp_adv(p);
  if (!yp_eof(p) && yc(p, 0) != '\n') {
    YP_FAIL(p, "expected a comment or a line break after the block scalar's '%c' header",
            literal ? '|' : '>');
    goto fail;
  }
  yp_adv(p);
  if (increment) indent = parent >= 0 ? parent + increment : increment;
  if (block_breaks(p, parent, &indent, &trailing)) goto fail;
  int leading_break = 0, leading_blank = 0;
  while ((long)p->col == indent && !yp_eof(p)) {
    int trailing_blank = is_blank(yc(p, 0));
    if (!literal && leading_break && !leading_blank && !trailing_blank) {
      if (trailing.n == 0) sb_puts(&out, " ");
    } else if (leading_break) {
      sb_puts(&out, "\n");
    }
    leading_break = 0;
    if (trailing.n) sb_putn(&out, trailing.p, trailing.n);
    trailing.n = 0;
    leading_blank = is_blank(yc(p, 0));
    size_t from = p->i;
    while (!yp_eof(p) && yc(p, 0) != '\n') yp_adv(p);
    sb_putn(&out, p->s + from, p->i - from);
    if (yp_eof(p)) break;
    yp_adv(p);
    leading_break = 1;
    if (block_breaks(p, parent, &indent, &trailing)) goto fail;
  }
  if (chomping != -1 && leading_break) sb_puts(&out, "\n");
  if (chomping == 1 && trailing.n) sb_putn(&out, trailing.p, trailing.n);
  free(trailing.p);
  p->sk = 1;
  p->tok_line = SIZE_MAX;
  return yn_scalar(p, &out, 0, line, col);
fail:
  free(out.p);
  free(trailing.p);
  return NULL;
}

static ynode *flow_node(yparser *p);

static int nest(yparser *p) {
  if (++p->depth > RC_MAX_NESTING)
    return YP_FAIL(p, "collections nested more than %d deep", RC_MAX_NESTING);
  return 0;
}

// [ a, b ] or { k: v, ... }. A `k: v` inside [ ] is a one-pair mapping.
static ynode *flow_collection(yparser *p) {
  size_t line = p->line, col = p->col;
  int map = yc(p, 0) == '{';
  char close = map ? '}' : ']';
  ynode *n = nest(p) ? NULL : yn_new(p, map ? YN_MAP : YN_LIST, line, col);
  if (!n) return NULL;
  p->flow++;
  yp_adv(p);
  for (;;) {
    if (skip_space(p)) goto fail;
    if (at_doc_marker(p)) {
      YP_FAIL(p, "a document marker inside '%c' (opened at line %zu, column %zu)", map ? '{' : '[',
              line + 1, col + 1);
      goto fail;
    }
    if (yp_eof(p)) {
      YP_FAIL(p, "the '%c' opened at line %zu, column %zu is not closed", map ? '{' : '[',
              line + 1, col + 1);
      goto fail;
    }
    if (yc(p, 0) == close) break;
    size_t kline = p->line;
    ynode *item = flow_node(p);
    if (!item) goto fail;
    if (skip_space(p)) {
      yn_free(item);
      goto fail;
    }
    if (yc(p, 0) == ':') {
      if (p->line != kline || p->tok_line == SIZE_MAX) {
        yn_free(item);
        YP_FAIL(p, "expected ',' or '%c'; a key and its ':' must be on one line", close);
        goto fail;
      }
      yp_adv(p);
      ynode *value = NULL;
      if (skip_space(p)) {
        yn_free(item);
        goto fail;
      }
      if (yc(p, 0) == ',' || yc(p, 0) == close) value = yn_null(p, p->line, p->col);
      else value = flow_node(p);
      if (!value) {
        yn_free(item);
        goto fail;
      }
      if (map) {
        if (yn_add(p, n, item)) {
          yn_free(value);
          goto fail;
        }
        if (yn_add(p, n, value)) goto fail;
      } else {  // [k: v]: a one-pair mapping
        ynode *pair = yn_new(p, YN_MAP, item->line - 1, item->col - 1);
        if (!pair) {
          yn_free(item);
          yn_free(value);
          goto fail;
        }
        if (yn_add(p, pair, item)) {
          yn_free(value);
          yn_free(pair);
          goto fail;
        }
        if (yn_add(p, pair, value)) {
          yn_free(pair);
          goto fail;
        }
        if (yn_add(p, n, pair)) goto fail;
      }
    } else if (map) {  // { a, b: c }: a key alone has a null value
      if (yn_add(p, n, item) || yn_add(p, n, yn_null(p, p->line, p->col))) goto fail;
    } else if (yn_add(p, n, item)) {
      goto fail;
    }
    if (skip_space(p)) goto fail;
    if (yc(p, 0) == ',') {
      yp_adv(p);
    } else if (yc(p, 0) != close) {
      if (yp_eof(p) || at_doc_marker(p))
        YP_FAIL(p, "the '%c' opened at line %zu, column %zu is not closed", map ? '{' : '[',
                line + 1, col + 1);
      else YP_FAIL(p, "expected ',' or '%c'", close);
      goto fail;
    }
  }
  yp_adv(p);  // the closing bracket
  p->flow--;
  p->depth--;
  p->sk = 0;
  p->tok_line = p->line;
  return n;
fail:
  yn_free(n);
  return NULL;
}

static ynode *flow_node(yparser *p) {
  char c = yc(p, 0);
  if (c == '[' || c == '{') return flow_collection(p);
  if (c == '\'' || c == '"') return quoted_scalar(p);
  if (plain_start(p)) return plain_scalar(p, -1);
  if (!bad_start(p)) YP_FAIL(p, "expected a value, found '%c'", c);
  return NULL;
}

static ynode *block_node(yparser *p, int parent, int inl);

// After a scalar or flow value: nothing else on its line.
static int end_of_value(yparser *p) {
  size_t line = p->tok_line;
  if (skip_space(p)) return -1;
  if (!yp_eof(p) && line != SIZE_MAX && p->line == line) {
    if (yc(p, 0) == ':' && is_blankz(yc(p, 1)))
      return YP_FAIL(p, "mapping values are not allowed here (a value holding ': ' must be "
                        "quoted)");
    return YP_FAIL(p, "unexpected text after the value");
  }
  return 0;
}

// The ':' after a key at the cursor (spaces before it skipped): 1 if there, 0 if not.
static int at_key_colon(yparser *p, size_t key_line) {
  size_t i = p->i, line = p->line, col = p->col;
  while (yc(p, 0) == ' ' || yc(p, 0) == '\t') yp_adv(p);
  if (yc(p, 0) == ':' && is_blankz(yc(p, 1)) && p->line == key_line) return 1;
  p->i = i, p->line = line, p->col = col;
  return 0;
}

static ynode *block_map(yparser *p, int indent, ynode *key);
static ynode *block_list(yparser *p, int indent);

// A scalar or flow collection that may be a key: when ':' follows it on its line, it starts a
// block mapping at its column (unless `inl`: after "key: " or "---" a mapping cannot start).
static ynode *key_or_value(yparser *p, ynode *n, int inl, size_t line, size_t col) {
  if (!n) return NULL;
  int multi = p->tok_line == SIZE_MAX || p->line != line;
  if (yc(p, 0) == ':' && is_blankz(yc(p, 1)) && n->kind == YN_SCALAR && n->plain && multi) {
    yn_free(n);
    YP_FAIL(p, "mapping values are not allowed here (a key must be on one line)");
    return NULL;
  }
  if (!multi && at_key_colon(p, line)) {
    if (inl) {
      yn_free(n);
      YP_FAIL(p, "mapping values are not allowed here (a value holding ': ' must be quoted)");
      return NULL;
    }
    return block_map(p, (int)col, n);
  }
  if (end_of_value(p)) {
    yn_free(n);
    return NULL;
  }
  return n;
}

// A node in the block context at the cursor. parent: the indentation of the enclosing block
// collection (-1 at the top).
static ynode *block_node(yparser *p, int parent, int inl) {
  size_t line = p->line, col = p->col;
  char c = yc(p, 0);
  if (c == '-' && is_blankz(yc(p, 1))) {
    if (inl) {
      YP_FAIL(p, "a list entry ('- ') cannot start on the line of its key; put it on the next "
                 "line");
      return NULL;
    }
    return block_list(p, (int)col);
  }
  if (c == '|' || c == '>') {
    ynode *n = block_scalar(p, parent);
    if (n && skip_space(p)) yn_free(n), n = NULL;
    return n;
  }
  if (c == '[' || c == '{') return key_or_value(p, flow_collection(p), inl, line, col);
  if (c == '\'' || c == '"') return key_or_value(p, quoted_scalar(p), inl, line, col);
  if (c == ':' && is_blankz(yc(p, 1))) {
    YP_FAIL(p, inl ? "mapping values are not allowed here" : "a ':' without a key");
    return NULL;
  }
  if (plain_start(p)) return key_or_value(p, plain_scalar(p, parent), inl, line, col);
  if (!bad_start(p)) YP_FAIL(p, "'%c' cannot start a value", c);
  return NULL;
}

// The value after "key:" (the cursor just past the ':') of a mapping at `indent`.
static ynode *map_value(yparser *p, int indent) {
  size_t line = p->line, col = p->col;
  p->sk = 0;
  while (is_blank(yc(p, 0))) yp_adv(p);
  if (yc(p, 0) == '#' || yc(p, 0) == '\n' || yp_eof(p)) {
    if (skip_space(p)) return NULL;
    if (!yp_eof(p) && !at_doc_marker(p)) {
      if ((long)p->col > indent) return block_node(p, indent, 0);
      if ((long)p->col == indent && yc(p, 0) == '-' && is_blankz(yc(p, 1)))
        return block_list(p, indent);
      if ((long)p->col == indent && (yc(p, 0) == '|' || yc(p, 0) == '>'))
        return block_node(p, indent, 0);  // YAML 1.1 (libyaml) reads it as the value
    }
    return yn_null(p, line, col);
  }
  return block_node(p, indent, 1);
}

static ynode *block_map(yparser *p, int indent, ynode *key) {
  ynode *m = nest(p) ? NULL : yn_new(p, YN_MAP, key->line - 1, key->col - 1);
  if (!m) {
    yn_free(key);
    return NULL;
  }
  for (;;) {  // the cursor at the ':' after key
    if (p->col - (key->col - 1) > RC_MAX_KEY_CHARS) {
      yn_free(key);
      YP_FAIL(p, "a key longer than %d characters", RC_MAX_KEY_CHARS);
      break;
    }
    yp_adv(p);
    if (yn_add(p, m, key)) break;
    if (yn_add(p, m, map_value(p, indent))) break;
    // The cursor is at the next token: a key at this indentation, or the end of the mapping.
    if (yp_eof(p) || at_doc_marker(p) || (long)p->col < indent) {
      p->depth--;
      return m;
    }
    if ((long)p->col > indent) {
      YP_FAIL(p, "wrong indentation: more than the keys above it (column %d)", indent + 1);
      break;
    }
    size_t line = p->line, col = p->col;
    char c = yc(p, 0);
    if (c == '[' || c == '{') key = flow_collection(p);
    else if (c == '\'' || c == '"') key = quoted_scalar(p);
    else if (plain_start(p)) key = plain_scalar(p, indent);
    else {
      if (!bad_start(p)) YP_FAIL(p, "expected a key, found '%c'", c);
      break;
    }
    if (!key) break;
    int multi = p->tok_line == SIZE_MAX || p->line != line;
    if (multi || !at_key_colon(p, line)) {
      yn_free(key);
      if (multi && yc(p, 0) == ':' && is_blankz(yc(p, 1)))
        YP_FAIL(p, "mapping values are not allowed here (a key must be on one line)");
      else if (multi) yp_fail(p, line, col, "expected 'key: value', found a value without a key");
      else YP_FAIL(p, "expected ':' after the key");
      break;
    }
  }
  yn_free(m);
  return NULL;
}

// A block list whose '-' entries sit at `indent`.
static ynode *block_list(yparser *p, int indent) {
  ynode *l = nest(p) ? NULL : yn_new(p, YN_LIST, p->line, p->col);
  if (!l) return NULL;
  for (;;) {
    yp_adv(p);  // the '-'
    size_t line = p->line, col = p->col;
    p->sk = 1;
    ynode *item = NULL;
    if (skip_space(p)) goto fail;
    if (p->line == line && !yp_eof(p)) item = block_node(p, indent, 0);
    else if (!yp_eof(p) && !at_doc_marker(p) && (long)p->col > indent)
      item = block_node(p, indent, 0);
    else item = yn_null(p, line, col);
    if (yn_add(p, l, item)) goto fail;
    if (yp_eof(p) || at_doc_marker(p) || (long)p->col < indent) break;
    if ((long)p->col > indent) {
      YP_FAIL(p, "wrong indentation: more than the list entries above it (column %d)", indent + 1);
      goto fail;
    }
    if (!(yc(p, 0) == '-' && is_blankz(yc(p, 1)))) break;  // the key after an unindented list
  }
  p->depth--;
  return l;
fail:
  yn_free(l);
  return NULL;
}

// The next document of the stream: 1 with *root set, 0 at the end of the stream, -1 on error.
static int next_document(yparser *p, int first, ynode **root) {
  *root = NULL;
  p->sk = 1;
  if (skip_space(p)) return -1;
  int directives = 0;
  while (p->col == 0 && yc(p, 0) == '%') {
    if (strncmp(p->s + p->i, "%YAML", 5) != 0 || !is_blank(yc(p, 5)))
      return YP_FAIL(p, "directives other than %%YAML are not supported in a run config");
    if (directives++) return YP_FAIL(p, "a second %%YAML directive");
    for (int k = 0; k < 5; k++) yp_adv(p);
    while (is_blank(yc(p, 0))) yp_adv(p);
    if (yc(p, 0) != '1' || yc(p, 1) != '.' || !isdigit((unsigned char)yc(p, 2)))
      return YP_FAIL(p, "a YAML version 1.x is expected after %%YAML");
    yp_adv(p), yp_adv(p);
    while (isdigit((unsigned char)yc(p, 0))) yp_adv(p);
    p->sk = 0;
    if (skip_space(p)) return -1;
  }
  if (!first) {  // more '...' between documents are allowed
    while (at_doc_marker(p) && yc(p, 0) == '.') {
      for (int k = 0; k < 3; k++) yp_adv(p);
      p->sk = 0;
      if (skip_space(p)) return -1;
    }
  }
  if (yp_eof(p)) {
    if (directives) return YP_FAIL(p, "expected '---' after the %%YAML directive");
    return 0;
  }
  int explicit_start = at_doc_marker(p) && yc(p, 0) == '-';
  if (!explicit_start && (directives || !first))
    return YP_FAIL(p, "expected '---' (a document start)");
  if (!explicit_start && at_doc_marker(p)) return YP_FAIL(p, "'...' with no document before it");
  if (explicit_start) {
    for (int k = 0; k < 3; k++) yp_adv(p);
    p->sk = 0;
    while (is_blank(yc(p, 0))) yp_adv(p);
    if (yc(p, 0) == '#' || yc(p, 0) == '\n' || yp_eof(p)) {
      if (skip_space(p)) return -1;
      if (yp_eof(p) || at_doc_marker(p)) *root = yn_null(p, p->line, p->col);
      else *root = block_node(p, -1, 0);
    } else {
      *root = block_node(p, -1, 1);
    }
  } else {
    *root = block_node(p, -1, 0);
  }
  if (!*root) return -1;
  // After the root: the end, '---' (another document) or '...' (this one's end).
  if (!yp_eof(p) && !at_doc_marker(p)) {
    yn_free(*root);
    *root = NULL;
    return YP_FAIL(p, "unexpected text: less indented than the mapping it follows, or after the "
                      "end of the document");
  }
  if (at_doc_marker(p) && yc(p, 0) == '.') {
    for (int k = 0; k < 3; k++) yp_adv(p);
    p->sk = 0;
    while (is_blank(yc(p, 0))) yp_adv(p);
    if (yc(p, 0) != '#' && yc(p, 0) != '\n' && !yp_eof(p)) {
      yn_free(*root);
      *root = NULL;
      return YP_FAIL(p, "unexpected text after '...'");
    }
  }
  return 1;
}

// Bytes a YAML file may hold: UTF-8 of the printable characters, tab and line breaks (YAML 1.1's
// c-printable). CR and CRLF line breaks become '\n' in place. 0 or -1 with err set.
static int check_text(const char *path, char *text, size_t *len, pith_err *err) {
  const unsigned char *s = (const unsigned char *)text;
  size_t n = *len, line = 1, col = 1, w = 0;
  for (size_t i = 0; i < n;) {
    unsigned c = s[i];
    int k = c < 0x80             ? 1
            : (c & 0xE0) == 0xC0 ? 2
            : (c & 0xF0) == 0xE0 ? 3
            : (c & 0xF8) == 0xF0 ? 4
                                 : 0;
    const char *bad = NULL;
    uint32_t cp = 0;
    if (!k) {
      bad = "a byte that is not UTF-8";
    } else if (i + (size_t)k > n) {
      bad = "an incomplete UTF-8 sequence";
    } else {
      cp = k == 1 ? c : k == 2 ? c & 0x1F : k == 3 ? c & 0x0F : c & 0x07;
      for (int j = 1; j < k && !bad; j++) {
        if ((s[i + j] & 0xC0) != 0x80) bad = "an incomplete UTF-8 sequence";
        cp = cp << 6 | (s[i + j] & 0x3F);
      }
      if (!bad && ((k == 2 && cp < 0x80) || (k == 3 && cp < 0x800) || (k == 4 && cp < 0x10000)))
        bad = "an overlong UTF-8 sequence";
      else if (!bad && ((cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF))
        bad = "an invalid code point";
    }
    if (!bad && cp != '\t' && cp != '\n' && cp != '\r' &&
        (cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp < 0xA0) || cp == 0xFFFE || cp == 0xFFFF)) {
      if (cp == 0x85)
        return pith_fail(err,
                         "%s:%zu:%zu: invalid YAML: a raw U+0085 line break; write it as \\N in "
                         "a double-quoted string",
                         path, line, col);
      return pith_fail(err, "%s:%zu:%zu: invalid YAML: control character U+%04X; write it as an "
                            "escape in a double-quoted string", path, line, col, (unsigned)cp);
    }
    if (!bad && (cp == 0x2028 || cp == 0x2029))
      return pith_fail(err,
                       "%s:%zu:%zu: invalid YAML: a raw U+%04X line break; write it as \\%c in a "
                       "double-quoted string",
                       path, line, col, (unsigned)cp, cp == 0x2028 ? 'L' : 'P');
    if (bad) return pith_fail(err, "%s:%zu:%zu: invalid YAML: %s", path, line, col, bad);
    if (c == '\r') {
      text[w++] = '\n';
      i += i + 1 < n && s[i + 1] == '\n' ? 2 : 1;
      line++, col = 1;
      continue;
    }
    memmove(text + w, text + i, (size_t)k);
    w += (size_t)k;
    i += (size_t)k;
    if (c == '\n') line++, col = 1;
    else col++;
  }
  text[w] = 0;
  *len = w;
  return 0;
}

static const char *node_kind(const ynode *n) {
  switch (n->kind) {
    case YN_MAP: return "a mapping";
    case YN_LIST: return "a list";
    default: return "a scalar";
  }
}

// A plain `key:`, `key: ~`, `key: null` has no value: it reads as the empty string.
static int scalar_is_null(const ynode *n) {
  if (!n->plain) return 0;
  const char *s = n->text;
  return n->len == 0 || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 || strcmp(s, "Null") == 0 ||
         strcmp(s, "NULL") == 0;
}

// Text of a scalar node (malloc'd), or NULL with err set when it holds a NUL ("\0" escape).
static char *scalar_text(const char *path, const ynode *n, const char *what, pith_err *err) {
  if (strlen(n->text) != n->len) {
    pith_fail(err, "%s:%zu:%zu: %s holds a NUL character", path, n->line, n->col, what);
    return NULL;
  }
  char *t = scalar_is_null(n) ? rc_strdup("") : rc_strndup(n->text, n->len);
  if (!t) pith_fail(err, "%s: out of memory", path);
  return t;
}

static char *where(const char *path, size_t line, size_t col) {
  char buf[64];
  snprintf(buf, sizeof buf, ":%zu:%zu", line, col);
  size_t n = strlen(path), k = strlen(buf);
  char *s = malloc(n + k + 1);
  if (!s) return NULL;
  memcpy(s, path, n);
  memcpy(s + n, buf, k + 1);
  return s;
}

typedef struct {
  const char *path;
  rc_list out;
} flat_ctx;

static int flatten(flat_ctx *x, const ynode *map, const char *prefix, int depth, pith_err *err) {
  const char *path = x->path;
  if (depth > RC_MAX_DEPTH)
    return pith_fail(err, "%s:%zu:%zu: mappings nested more than %d deep", path, map->line,
                     map->col, RC_MAX_DEPTH);
  for (int i = 0; i + 1 < map->n; i += 2) {
    const ynode *k = map->kids[i], *v = map->kids[i + 1];
    if (k->kind != YN_SCALAR)
      return pith_fail(err, "%s:%zu:%zu: a key must be a scalar, found %s", path, k->line, k->col,
                       node_kind(k));
    char *kt = scalar_text(path, k, "a key", err);
    if (!kt) return -1;
    if (!*kt) {
      free(kt);
      return pith_fail(err, "%s:%zu:%zu: empty key", path, k->line, k->col);
    }
    char *full = kt;
    if (prefix) {
      size_t np = strlen(prefix), nk = strlen(kt);
      full = malloc(np + 1 + nk + 1);
      if (full) {
        memcpy(full, prefix, np);
        full[np] = '.';
        memcpy(full + np + 1, kt, nk + 1);
      }
      free(kt);
      if (!full) return pith_fail(err, "%s: out of memory", path);
    }

    if (v->kind == YN_MAP) {
      int rc = flatten(x, v, full, depth + 1, err);
      free(full);
      if (rc) return rc;
      continue;
    }

    rc_entry *dup = list_find(&x->out, full);
    if (dup) {
      int rc = pith_fail(err,
                         "%s:%zu:%zu: duplicate key '%s' (first given at line %zu, column %zu)",
                         path, k->line, k->col, full, dup->kline, dup->kcol);
      free(full);
      return rc;
    }
    if (x->out.n >= RC_MAX_ENTRIES) {
      free(full);
      return pith_fail(err, "%s: more than %d keys", path, RC_MAX_ENTRIES);
    }

    char *val = NULL;
    if (v->kind == YN_SCALAR) {
      val = scalar_text(path, v, "a value", err);
      if (!val) {
        free(full);
        return -1;
      }
    } else {  // a list of scalars joins with ","
      sbuf b = {0};
      sb_puts(&b, "");
      for (int j = 0; j < v->n; j++) {
        const ynode *item = v->kids[j];
        if (item->kind != YN_SCALAR) {
          free(b.p);
          int rc = pith_fail(err,
                             "%s:%zu:%zu: '%s': a list in a run config holds only scalars, found "
                             "%s",
                             path, item->line, item->col, full, node_kind(item));
          free(full);
          return rc;
        }
        char *t = scalar_text(path, item, "a list item", err);
        if (!t) {
          free(b.p);
          free(full);
          return -1;
        }
        if (j) sb_puts(&b, ",");
        sb_puts(&b, t);
        free(t);
      }
      if (b.oom) {
        free(b.p);
        free(full);
        return pith_fail(err, "%s: out of memory", path);
      }
      val = b.p;
    }
    if (list_push(&x->out, full, val, where(path, k->line, k->col), where(path, v->line, v->col),
                  0))
      return pith_fail(err, "%s: out of memory", path);
    x->out.e[x->out.n - 1].kline = k->line;
    x->out.e[x->out.n - 1].kcol = k->col;
  }
  return 0;
}

// Parse the text (checked, '\n' line breaks) into entries: one document, a mapping at its root.
static int parse_config(const char *path, const char *text, size_t len, rc_list *out,
                        pith_err *err) {
  yparser p = {.path = path, .s = text, .len = len, .err = err};
  if (len >= 3 && at_bom(&p)) p.s += 3, p.len -= 3;  // a byte-order mark is not content
  ynode *root = NULL;
  int got = next_document(&p, 1, &root);
  if (got < 0) return -1;
  if (got == 0) return 0;  // an empty file is an empty config
  flat_ctx x = {path, {0}};
  int rc = 0;
  if (root->kind != YN_MAP)
    rc = pith_fail(err, "%s:%zu:%zu: a run config is a mapping of key: value, found %s", path,
                   root->line, root->col, node_kind(root));
  else
    rc = flatten(&x, root, NULL, 0, err);
  yn_free(root);
  if (rc == 0) {  // one document per file
    ynode *more = NULL;
    got = next_document(&p, 0, &more);
    if (got < 0) rc = -1;
    else if (got > 0)
      rc = pith_fail(err, "%s:%zu:%zu: a second YAML document; a run config is one mapping", path,
                     more->line, more->col);
    yn_free(more);
  }
  if (rc) list_free(&x.out);
  else *out = x.out;
  return rc;
}

int run_config_load(run_config *c, const char *path, pith_err *err) {
  size_t len = 0;
  char *text = pith_read_file(path, &len, err);
  if (!text) return -1;
  flat_ctx x = {path, {0}};
  int rc = check_text(path, text, &len, err);
  if (rc == 0) rc = parse_config(path, text, len, &x.out, err);
  free(text);

  // Merge: the file's keys replace those of earlier files, never those of the command line.
  // Every allocation happens before c changes, so a failure leaves c as it was.
  if (rc == 0) {
    size_t grow = (size_t)c->in.n + (size_t)x.out.n;
    if ((size_t)c->in.cap < grow) {
      rc_entry *p = realloc(c->in.e, grow * sizeof *p);
      if (!p) rc = pith_fail(err, "%s: out of memory", path);
      else c->in.e = p, c->in.cap = (int)grow;
    }
  }
  char *files = NULL;
  if (rc == 0) {
    size_t nf = c->files ? strlen(c->files) : 0, np = strlen(path);
    files = malloc(nf + 2 + np + 1);
    if (!files) {
      rc = pith_fail(err, "%s: out of memory", path);
    } else {
      char *w = files;
      if (nf) memcpy(w, c->files, nf), w += nf, *w++ = ',', *w++ = ' ';
      memcpy(w, path, np + 1);
      for (char *q = files; *q; q++)   // the header comment must stay one line
        if ((unsigned char)*q < 0x20 || *q == 0x7f) *q = '?';
    }
  }
  if (rc == 0) {
    for (int i = 0; i < x.out.n; i++) {
      rc_entry *e = &x.out.e[i];
      rc_entry *old = list_find(&c->in, e->key);
      if (old && old->cli) {
        entry_free(e);
      } else if (old) {
        entry_free(old);
        *old = *e;
      } else {
        c->in.e[c->in.n++] = *e;
      }
    }
    free(x.out.e);
    x.out.e = NULL;
    x.out.n = 0;
    free(c->files);
    c->files = files;
  }
  list_free(&x.out);
  return rc;
}

int run_config_raw_count(const run_config *c) { return c ? c->in.n : 0; }

const char *run_config_raw_at(const run_config *c, int i, const char **val) {
  if (!c || i < 0 || i >= c->in.n) return NULL;
  if (val) *val = c->in.e[i].val;
  return c->in.e[i].key;
}

const char *run_config_get_raw(const run_config *c, const char *key) {
  const rc_entry *e = c && key ? list_find(&c->in, key) : NULL;
  return e ? e->val : NULL;
}

// ---- set ----

int run_config_set(run_config *c, const char *assignment, pith_err *err) {
  const char *eq = strchr(assignment, '=');
  if (!eq)
    return pith_fail(err,
                     "command line: '%s': expected key=value (e.g. learning_rate=3e-4)",
                     assignment);
  const char *k0 = assignment, *k1 = eq;
  while (k0 < k1 && isspace((unsigned char)*k0)) k0++;
  while (k1 > k0 && isspace((unsigned char)k1[-1])) k1--;
  if (k0 == k1) return pith_fail(err, "command line: '%s': empty key before '='", assignment);
  if (!utf8_valid(assignment))
    return pith_fail(err, "command line: '%s': not valid UTF-8", assignment);

  char *key = rc_strndup(k0, (size_t)(k1 - k0));
  char *val = rc_strdup(eq + 1);
  char *kw = rc_strdup("command line"), *vw = rc_strdup("command line");
  if (!key || !val || !kw || !vw) {
    free(key), free(val), free(kw), free(vw);
    return pith_fail(err, "command line: out of memory");
  }
  rc_entry *old = list_find(&c->in, key);
  if (old) {
    entry_free(old);
    *old = (rc_entry){key, val, kw, vw, 1, 0, 0};
  } else if (list_push(&c->in, key, val, kw, vw, 1)) {
    return pith_fail(err, "command line: out of memory");
  }
  c->n_sets++;
  return 0;
}

// ---- parsing values ----

static int only_space(const char *s) {
  while (*s && isspace((unsigned char)*s)) s++;
  return *s == 0;
}

// Decimal, or an integral number in float form ("1e4", "2.0"); nothing else (no hex).
static int parse_int(const char *s, int64_t *out) {
  while (isspace((unsigned char)*s)) s++;
  if (!*s) return -1;
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (end != s && only_space(end)) {
    if (errno == ERANGE) return -1;
    *out = (int64_t)v;
    return 0;
  }
  for (const char *p = s; *p && !isspace((unsigned char)*p); p++)
    if (!isdigit((unsigned char)*p) && !strchr("+-.eE", *p)) return -1;
  errno = 0;
  double d = strtod(s, &end);
  if (end == s || !only_space(end)) return -1;
  if (!isfinite(d) || d != floor(d) || d < -9223372036854775808.0 || d >= 9223372036854775808.0)
    return -1;
  *out = (int64_t)d;
  return 0;
}

static int parse_float(const char *s, double *out) {
  while (isspace((unsigned char)*s)) s++;
  if (!*s) return -1;
  // YAML's spellings, which run_config_yaml writes.
  const char *t = s;
  double sign = 1;
  if (*t == '+' || *t == '-') sign = *t++ == '-' ? -1 : 1;
  if (strncmp(t, ".inf", 4) == 0 || strncmp(t, ".Inf", 4) == 0 || strncmp(t, ".INF", 4) == 0) {
    if (only_space(t + 4)) {
      *out = sign * INFINITY;
      return 0;
    }
  }
  if (t == s &&
      (strncmp(t, ".nan", 4) == 0 || strncmp(t, ".NaN", 4) == 0 || strncmp(t, ".NAN", 4) == 0)) {
    if (only_space(t + 4)) {
      *out = NAN;
      return 0;
    }
  }
  char *end;
  errno = 0;
  double d = strtod(s, &end);
  if (end == s || !only_space(end)) return -1;
  if (errno == ERANGE && isinf(d)) return -1;  // overflow; underflow to ~0 is fine
  *out = d;
  return 0;
}

static int parse_bool(const char *s, int *out) {
  static const char *yes[] = {"true", "yes", "on", "1"}, *no[] = {"false", "no", "off", "0"};
  while (isspace((unsigned char)*s)) s++;
  size_t n = strlen(s);
  while (n && isspace((unsigned char)s[n - 1])) n--;
  char w[8];
  if (n == 0 || n >= sizeof w) return -1;
  memcpy(w, s, n);
  w[n] = 0;
  for (int i = 0; i < 4; i++) {
    if (streq_nocase(w, yes[i])) return *out = 1, 0;
    if (streq_nocase(w, no[i])) return *out = 0, 0;
  }
  return -1;
}

// The shortest text that reads back as exactly d, always looking like a float ("2.0",
// "1.0e-05") so YAML readers elsewhere (PyYAML) type it as one too.
static void format_float(double d, char *buf, size_t size) {
  if (isnan(d)) {
    snprintf(buf, size, ".nan");
    return;
  }
  if (isinf(d)) {
    snprintf(buf, size, d < 0 ? "-.inf" : ".inf");
    return;
  }
  char tmp[40];
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(tmp, sizeof tmp, "%.*g", prec, d);
    if (strtod(tmp, NULL) == d) break;
  }
  if (!strchr(tmp, '.')) {
    char *e = strchr(tmp, 'e');
    if (e) {
      size_t head = (size_t)(e - tmp);
      snprintf(buf, size, "%.*s.0%s", (int)head, tmp, e);
      return;
    }
    snprintf(buf, size, "%s.0", tmp);
    return;
  }
  snprintf(buf, size, "%s", tmp);
}

// ---- resolve ----

// Edit distance with adjacent transpositions (optimal string alignment), ignoring case.
static int edit_distance(const char *a, const char *b) {
  size_t n = strlen(a), m = strlen(b);
  if (n > 128 || m > 128) return 1 << 20;
  int d[129][129];
  for (size_t i = 0; i <= n; i++) d[i][0] = (int)i;
  for (size_t j = 0; j <= m; j++) d[0][j] = (int)j;
  for (size_t i = 1; i <= n; i++) {
    for (size_t j = 1; j <= m; j++) {
      int ca = tolower((unsigned char)a[i - 1]), cb = tolower((unsigned char)b[j - 1]);
      int cost = ca != cb;
      int best = d[i - 1][j] + 1;
      if (d[i][j - 1] + 1 < best) best = d[i][j - 1] + 1;
      if (d[i - 1][j - 1] + cost < best) best = d[i - 1][j - 1] + cost;
      if (i > 1 && j > 1 && ca == tolower((unsigned char)b[j - 2]) &&
          tolower((unsigned char)a[i - 2]) == cb && d[i - 2][j - 2] + 1 < best)
        best = d[i - 2][j - 2] + 1;
      d[i][j] = best;
    }
  }
  return d[n][m];
}

static const char *closest_key(const char *key, const rc_key *schema, int n_keys) {
  size_t len = strlen(key);
  int limit = len <= 3 ? 1 : len <= 8 ? 2 : 3;
  const char *best = NULL;
  int best_d = limit + 1;
  for (int i = 0; i < n_keys; i++) {
    int d = edit_distance(key, schema[i].key);
    if (d < best_d) best_d = d, best = schema[i].key;
  }
  return best;
}

static int schema_find(const rc_key *schema, int n_keys, const char *key) {
  for (int i = 0; i < n_keys; i++)
    if (strcmp(schema[i].key, key) == 0) return i;
  return -1;
}

// Parse `text` as type t into v (and its canonical text). -1 when it does not parse.
static int value_parse(rc_value *v, rc_type t, const char *text) {
  char buf[64];
  const char *canon = buf;
  v->type = t;
  switch (t) {
    case RC_INT:
      if (parse_int(text, &v->i)) return -1;
      v->f = (double)v->i;
      snprintf(buf, sizeof buf, "%" PRId64, v->i);
      break;
    case RC_FLOAT:
      if (parse_float(text, &v->f)) return -1;
      format_float(v->f, buf, sizeof buf);
      break;
    case RC_BOOL:
      if (parse_bool(text, &v->b)) return -1;
      canon = v->b ? "true" : "false";
      break;
    case RC_STRING:
      canon = text;
      break;
    default:
      return -1;
  }
  v->text = rc_strdup(canon);
  return v->text ? 0 : -2;
}

static const char *type_phrase(rc_type t) {
  switch (t) {
    case RC_INT: return "an integer";
    case RC_FLOAT: return "a number";
    case RC_BOOL: return "a bool (true/false, yes/no, on/off, 1/0)";
    default: return "a string";
  }
}

int run_config_resolve(run_config *c, const rc_key *schema, int n_keys, pith_err *err) {
  values_free(c);
  if (n_keys < 0 || (n_keys > 0 && !schema)) return pith_fail(err, "schema: no keys");
  for (int i = 0; i < n_keys; i++) {
    if (!schema[i].key || !*schema[i].key)
      return pith_fail(err, "schema: key %d has no name (a bug in the driver)", i);
    if (schema_find(schema, i, schema[i].key) >= 0)
      return pith_fail(err, "schema: key '%s' listed twice (a bug in the driver)", schema[i].key);
    if ((unsigned)schema[i].type > RC_STRING)
      return pith_fail(err, "schema: key '%s' has an unknown type (a bug in the driver)",
                       schema[i].key);
  }

  // Every key given must be in the schema.
  for (int i = 0; i < c->in.n; i++) {
    const rc_entry *e = &c->in.e[i];
    if (schema_find(schema, n_keys, e->key) >= 0) continue;
    const char *near = closest_key(e->key, schema, n_keys);
    if (near)
      return pith_fail(err, "%s: unknown key '%s' (did you mean %s?)", e->kwhere, e->key, near);
    return pith_fail(err, "%s: unknown key '%s' (--help lists the keys)", e->kwhere, e->key);
  }

  c->v = calloc(n_keys ? (size_t)n_keys : 1, sizeof *c->v);
  if (!c->v) return pith_fail(err, "run config: out of memory");
  c->nv = n_keys;
  for (int i = 0; i < n_keys; i++) {
    const rc_key *s = &schema[i];
    rc_value *v = &c->v[i];
    v->key = rc_strdup(s->key);
    if (!v->key) {
      values_free(c);
      return pith_fail(err, "run config: out of memory");
    }
    const rc_entry *e = list_find(&c->in, s->key);
    const char *text = e ? e->val : s->def;
    if (!text) {
      int rc = pith_fail(err,
                         "missing required key '%s' (%s%s%s); HINT: set it in the config file or "
                         "on the command line as %s=VALUE",
                         s->key, type_name(s->type), s->help ? ": " : "", s->help ? s->help : "",
                         s->key);
      values_free(c);
      return rc;
    }
    int rc = value_parse(v, s->type, text);
    if (rc == -2) {
      values_free(c);
      return pith_fail(err, "run config: out of memory");
    }
    if (rc) {
      if (e)
        rc = pith_fail(err, "%s: %s: '%s' is not %s", e->vwhere, s->key, text,
                       type_phrase(s->type));
      else
        rc = pith_fail(err, "schema: the default of '%s' ('%s') is not %s (a bug in the driver)",
                       s->key, text, type_phrase(s->type));
      values_free(c);
      return rc;
    }
  }
  c->resolved = 1;
  return 0;
}

// ---- getters ----

static const rc_value *value_get(const run_config *c, const char *key, const char *fn) {
  if (c && c->resolved)
    for (int i = 0; i < c->nv; i++)
      if (strcmp(c->v[i].key, key) == 0) return &c->v[i];
  fprintf(stderr, "%s(\"%s\"): %s (a bug in the caller)\n", fn, key ? key : "(null)",
          c && c->resolved ? "not a key of the schema" : "the config is not resolved");
  abort();
}

static void wrong_type(const char *fn, const rc_value *v) {
  fprintf(stderr, "%s(\"%s\"): the key is of type %s in the schema (a bug in the caller)\n", fn,
          v->key, type_name(v->type));
  abort();
}

int64_t run_config_int(const run_config *c, const char *key) {
  const rc_value *v = value_get(c, key, "run_config_int");
  if (v->type != RC_INT) wrong_type("run_config_int", v);
  return v->i;
}

double run_config_float(const run_config *c, const char *key) {
  const rc_value *v = value_get(c, key, "run_config_float");
  if (v->type != RC_FLOAT && v->type != RC_INT) wrong_type("run_config_float", v);
  return v->f;
}

int run_config_bool(const run_config *c, const char *key) {
  const rc_value *v = value_get(c, key, "run_config_bool");
  if (v->type != RC_BOOL) wrong_type("run_config_bool", v);
  return v->b;
}

const char *run_config_str(const run_config *c, const char *key) {
  return value_get(c, key, "run_config_str")->text;
}

// ---- YAML out ----

// Whether a string must be double-quoted to read back as itself (here and in other YAML readers:
// no null/bool/number look-alikes). Plain only for the common safe shapes: names, paths, lists.
static int needs_quotes(const char *s) {
  size_t n = strlen(s);
  if (n == 0) return 1;
  unsigned char c0 = (unsigned char)s[0];
  int ok_first = isalpha(c0) || c0 == '_' || c0 == '/' ||
                 (c0 == '.' && (s[1] == '/' || (s[1] == '.' && s[2] == '/')));
  if (!ok_first || s[n - 1] == ' ') return 1;
  for (const char *p = s; *p; p++) {
    unsigned char ch = (unsigned char)*p;
    if (!isalnum(ch) && !strchr("_-./,+@= ", ch)) return 1;
  }
  static const char *words[] = {"null", "true", "false", "yes", "no", "on", "off", "y", "n"};
  for (size_t i = 0; i < sizeof words / sizeof *words; i++)
    if (streq_nocase(s, words[i])) return 1;
  char *end;
  strtod(s, &end);  // "inf", "nan", "infinity"
  if (end != s && *end == 0) return 1;
  return 0;
}

// A double-quoted YAML scalar: escapes for '"', '\\', and every code point a YAML reader would not
// read back literally (controls, C1, NEL/LS/PS line breaks, BOM, non-characters).
static void put_quoted(sbuf *b, const char *str) {
  const unsigned char *s = (const unsigned char *)str;
  sb_puts(b, "\"");
  while (*s) {
    unsigned c = *s;
    if (c < 0x80) {
      switch (c) {
        case '"': sb_puts(b, "\\\""); break;
        case '\\': sb_puts(b, "\\\\"); break;
        case '\n': sb_puts(b, "\\n"); break;
        case '\t': sb_puts(b, "\\t"); break;
        case '\r': sb_puts(b, "\\r"); break;
        default:
          if (c < 0x20 || c == 0x7f) sb_printf(b, "\\x%02X", c);
          else sb_putn(b, (const char *)s, 1);
      }
      s++;
      continue;
    }
    int len = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 1;
    uint32_t cp = len == 2 ? c & 0x1F : len == 3 ? c & 0x0F : len == 4 ? c & 0x07 : c;
    int k;
    for (k = 1; k < len && (s[k] & 0xC0) == 0x80; k++) cp = (cp << 6) | (s[k] & 0x3F);
    if (k < len || len == 1) {  // not UTF-8 (cannot happen for values that got here): drop it
      s++;
      continue;
    }
    if (cp == 0x85) sb_puts(b, "\\N");
    else if (cp == 0x2028) sb_puts(b, "\\L");
    else if (cp == 0x2029) sb_puts(b, "\\P");
    else if (cp < 0xA0 || cp == 0xFEFF || cp == 0xFFFE || cp == 0xFFFF) sb_printf(b, "\\u%04X", cp);
    else sb_putn(b, (const char *)s, (size_t)len);
    s += len;
  }
  sb_puts(b, "\"");
}

static void put_scalar(sbuf *b, const char *s) {
  if (needs_quotes(s)) put_quoted(b, s);
  else sb_puts(b, s);
}

char *run_config_yaml(const run_config *c) {
  sbuf b = {0};
  sb_printf(&b, "# pith run config, format %d: %s\n", RC_FORMAT_VERSION,
            c->resolved ? "resolved (every key of the schema, defaults filled in)"
                        : "as given (not resolved against a schema)");
  sb_printf(&b, "# from: %s", c->files ? c->files : "no file");
  if (c->n_sets)
    sb_printf(&b, " + %d command-line assignment%s", c->n_sets, c->n_sets == 1 ? "" : "s");
  sb_puts(&b, "\n");
  if (c->resolved) {
    for (int i = 0; i < c->nv; i++) {
      put_scalar(&b, c->v[i].key);
      sb_puts(&b, ": ");
      if (c->v[i].type == RC_STRING) put_scalar(&b, c->v[i].text);
      else sb_puts(&b, c->v[i].text);  // numbers and bools: canonical, never ambiguous
      sb_puts(&b, "\n");
    }
  } else {
    for (int i = 0; i < c->in.n; i++) {
      put_scalar(&b, c->in.e[i].key);
      sb_puts(&b, ": ");
      put_scalar(&b, c->in.e[i].val);
      sb_puts(&b, "\n");
    }
  }
  if (b.oom) {
    free(b.p);
    return NULL;
  }
  return b.p;
}

int run_config_save(const run_config *c, const char *path, pith_err *err) {
  char *text = run_config_yaml(c);
  if (!text) return pith_fail(err, "%s: out of memory formatting the run config", path);
  int rc = pith_write_file_atomic(path, text, strlen(text), err);
  free(text);
  return rc;
}

// ---- help ----

void run_config_print_schema(FILE *out, const rc_key *schema, int n_keys) {
  int wk = 3, wd = 7;
  for (int i = 0; i < n_keys; i++) {
    int k = (int)strlen(schema[i].key);
    int d = schema[i].def ? (*schema[i].def ? (int)strlen(schema[i].def) : 2) : 10;
    if (k > wk) wk = k;
    if (d > wd) wd = d;
  }
  if (wk > 36) wk = 36;
  if (wd > 20) wd = 20;
  for (int i = 0; i < n_keys; i++) {
    const rc_key *s = &schema[i];
    const char *def = !s->def ? "(required)" : *s->def ? s->def : "\"\"";
    fprintf(out, "  %-*s  %-6s  %-*s  %s\n", wk, s->key, type_name(s->type), wd, def,
            s->help ? s->help : "");
  }
}
