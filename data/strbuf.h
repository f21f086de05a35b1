// strbuf: a growable byte buffer for building text (JSON files, normalized strings, decoded
// tokens). The bytes are always NUL-terminated once anything was appended. A failed growth makes
// the buffer sticky-failed: later appends do nothing and return -1, so a writer can append a whole
// document and check once (strbuf_ok) at the end.
#ifndef PITH_STRBUF_H
#define PITH_STRBUF_H

#include <stddef.h>

typedef struct {
  char *p;      // (cap) the bytes, NUL-terminated after n; NULL until the first append
  size_t n;     // bytes held, the NUL excluded
  size_t cap;   // bytes allocated
  int oom;      // a growth failed: the content is incomplete
} strbuf;

#define STRBUF_INIT {0}

// Room for n more bytes (and the NUL) without reallocating. 0, or -1 when out of memory.
int strbuf_reserve(strbuf *b, size_t n);
// Append n bytes of s (n may be 0: the buffer then holds at least an empty string). 0 or -1.
int strbuf_add(strbuf *b, const void *s, size_t n);
int strbuf_adds(strbuf *b, const char *s);
int strbuf_addc(strbuf *b, char c);
int strbuf_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
// s (n bytes) as a JSON string literal, quotes included: '"' and '\' escaped, \n \r \t by
// name, other control bytes as \u00xx; all other bytes (UTF-8 included) as they are.
int strbuf_add_json(strbuf *b, const char *s, size_t n);

// Empty the buffer, keeping its memory (and clearing a failure).
void strbuf_clear(strbuf *b);
// 1 when every append so far succeeded.
static inline int strbuf_ok(const strbuf *b) { return !b->oom; }
// The bytes (malloc'd, NUL-terminated; *len the length when len is not NULL), the buffer left
// empty; NULL when an append had failed (the bytes are freed then).
char *strbuf_take(strbuf *b, size_t *len);
void strbuf_free(strbuf *b);

#endif
