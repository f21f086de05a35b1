// yaml: the YAML-subset reader of run configs (yaml.h). A small tree of nodes, every node knowing
// its line and column, so that every error names path:line:column.
#include "yaml.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strbuf.h"

#define RC_MAX_NESTING 64      // of collections while parsing (the parser recurses)
void yn_free(ynode *n) {
  if (!n) return;
  for (int i = 0; i < n->n; i++) yn_free(n->kids[i]);
  free(n->kids);
  free(n->text);
  free(n);
}



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

int yaml_at_bom(const yparser *p) {
  return yc(p, 0) == '\xEF' && yc(p, 1) == '\xBB' && yc(p, 2) == '\xBF';
}

// Skip spaces, comments and line breaks up to the next token. In the block context a tab may not
// indent a line, nor follow '-' (YAML's rule, as PyYAML and libyaml apply it).
static int skip_space(yparser *p) {
  for (;;) {
    if (p->col == 0 && yaml_at_bom(p)) yp_adv(p), yp_adv(p), yp_adv(p);
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
static ynode *yn_scalar(yparser *p, strbuf *b, int plain, size_t line, size_t col) {
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
  strbuf b = {0};
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
  strbuf out, ws, trailing;
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
      if (b->broke) strbuf_adds(&b->trailing, "\n");
      b->ws.n = 0;
      b->broke = 1;
    } else if (b->broke && yc(p, 0) == '\t' && (long)p->col < tab_limit) {
      return YP_FAIL(p, "a tab character in the indentation of a multi-line value; indent with "
                        "spaces");
    } else if (!b->broke) {
      strbuf_add(&b->ws, p->s + p->i, 1);
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
    if (!escaped && b->trailing.n == 0) strbuf_adds(&b->out, " ");
    if (b->trailing.n) strbuf_add(&b->out, b->trailing.p, b->trailing.n);
  } else if (b->ws.n) {
    strbuf_add(&b->out, b->ws.p, b->ws.n);
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
      strbuf_add(&b.out, p->s + p->i, 1);
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

static void put_utf8(strbuf *b, uint32_t cp) {
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
  strbuf_add(b, u, n);
}

// One escape of a double-quoted scalar, the cursor at its backslash. YAML 1.1's set: \0 \a \b \t
// \n \v \f \r \e \<space> \" \/ \\ \N \_ \L \P \xXX \uXXXX \UXXXXXXXX (and \ + a tab).
static int put_escape(yparser *p, strbuf *b) {
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
    strbuf_add(b, &c8, 1);
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
        strbuf_adds(&b.out, "'");
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
        strbuf_add(&b.out, p->s + p->i, 1);
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
static int block_breaks(yparser *p, long parent, long *indent, strbuf *trailing) {
  long max_indent = 0;
  for (;;) {
    while ((!*indent || (long)p->col < *indent) && yc(p, 0) == ' ') yp_adv(p);
    if ((long)p->col > max_indent) max_indent = (long)p->col;
    if ((!*indent || (long)p->col < *indent) && yc(p, 0) == '\t')
      return YP_FAIL(p, "a tab character in the indentation of a block scalar; indent with spaces");
    if (yc(p, 0) != '\n') break;
    strbuf_adds(trailing, "\n");
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
  strbuf out = {0}, trailing = {0};
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
      if (trailing.n == 0) strbuf_adds(&out, " ");
    } else if (leading_break) {
      strbuf_adds(&out, "\n");
    }
    leading_break = 0;
    if (trailing.n) strbuf_add(&out, trailing.p, trailing.n);
    trailing.n = 0;
    leading_blank = is_blank(yc(p, 0));
    size_t from = p->i;
    while (!yp_eof(p) && yc(p, 0) != '\n') yp_adv(p);
    strbuf_add(&out, p->s + from, p->i - from);
    if (yp_eof(p)) break;
    yp_adv(p);
    leading_break = 1;
    if (block_breaks(p, parent, &indent, &trailing)) goto fail;
  }
  if (chomping != -1 && leading_break) strbuf_adds(&out, "\n");
  if (chomping == 1 && trailing.n) strbuf_add(&out, trailing.p, trailing.n);
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
    if (p->col - (key->col - 1) > YAML_MAX_KEY_CHARS) {
      yn_free(key);
      YP_FAIL(p, "a key longer than %d characters", YAML_MAX_KEY_CHARS);
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
int yaml_next_document(yparser *p, int first, ynode **root) {
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
int yaml_check_text(const char *path, char *text, size_t *len, pith_err *err) {
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
