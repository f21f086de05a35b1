#include "strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int strbuf_reserve(strbuf *b, size_t n) {
  if (b->oom) return -1;
  if (b->n + n + 1 <= b->cap) return 0;
  size_t cap = b->cap ? b->cap : 64;
  while (cap < b->n + n + 1) cap *= 2;
  char *p = realloc(b->p, cap);
  if (!p) return b->oom = 1, -1;
  b->p = p, b->cap = cap;
  return 0;
}

int strbuf_add(strbuf *b, const void *s, size_t n) {
  if (strbuf_reserve(b, n)) return -1;
  if (n) memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = 0;
  return 0;
}

int strbuf_adds(strbuf *b, const char *s) { return strbuf_add(b, s, strlen(s)); }

int strbuf_addc(strbuf *b, char c) { return strbuf_add(b, &c, 1); }

int strbuf_printf(strbuf *b, const char *fmt, ...) {
  if (b->oom) return -1;
  va_list ap;
  va_start(ap, fmt);
  size_t room = b->cap > b->n ? b->cap - b->n : 0;
  int k = vsnprintf(room ? b->p + b->n : NULL, room, fmt, ap);
  va_end(ap);
  if (k < 0) return b->oom = 1, -1;
  if ((size_t)k >= room) {  // did not fit: grow and format again
    if (strbuf_reserve(b, (size_t)k)) return -1;
    va_start(ap, fmt);
    vsnprintf(b->p + b->n, (size_t)k + 1, fmt, ap);
    va_end(ap);
  }
  b->n += (size_t)k;
  return 0;
}

int strbuf_add_json(strbuf *b, const char *s, size_t n) {
  if (strbuf_reserve(b, n + 2)) return -1;
  b->p[b->n++] = '"';
  size_t run = 0;  // bytes of s[run, i) that need no escape, copied in one go
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    if (strbuf_add(b, s + run, i - run)) return -1;
    run = i + 1;
    const char *named = c == '"' ? "\\\"" : c == '\\' ? "\\\\" : c == '\n' ? "\\n" : c == '\r' ? "\\r"
                      : c == '\t' ? "\\t" : NULL;
    if (named ? strbuf_add(b, named, 2) : strbuf_printf(b, "\\u%04x", c)) return -1;
  }
  if (strbuf_add(b, s + run, n - run)) return -1;
  return strbuf_add(b, "\"", 1);
}

void strbuf_clear(strbuf *b) {
  b->n = 0, b->oom = 0;
  if (b->p) b->p[0] = 0;
}

char *strbuf_take(strbuf *b, size_t *len) {
  char *p = NULL;
  size_t n = 0;
  if (b->oom) {
    free(b->p);
  } else {
    p = b->p ? b->p : calloc(1, 1);  // nothing appended: an empty string
    n = p ? b->n : 0;
  }
  if (len) *len = n;
  *b = (strbuf){0};
  return p;
}

void strbuf_free(strbuf *b) {
  free(b->p);
  *b = (strbuf){0};
}
