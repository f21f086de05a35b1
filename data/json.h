// json: a small, dependency-free JSON reader (RFC 8259). It builds a DOM in an arena, keeps the
// byte offset where each value starts (so callers can name a line), decodes strings into checked
// UTF-8 (escapes included, lone surrogates and invalid bytes refused), and on failure says why and
// where. Nesting deeper than JSON_MAX_DEPTH is refused. Reading only: pith writes JSON with strbuf.
#ifndef PITH_JSON_H
#define PITH_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "arena.h"

enum { JSON_MAX_DEPTH = 100 };

typedef enum { JSON_NULL, JSON_BOOL, JSON_NUM, JSON_STR, JSON_ARR, JSON_OBJ } json_type;

typedef struct json_value {
  json_type type;
  int is_int;               // JSON_NUM: an integer literal that fits int64 (value in i)
  int64_t i;                // JSON_NUM (is_int) or JSON_BOOL
  size_t off;               // where the value starts in the parsed text
  const char *s;            // JSON_STR: the decoded bytes, NUL-terminated
  size_t len;               // JSON_STR: bytes (a \u0000 escape may put NULs inside)
  const char *key;          // member name, when the value sits in an object
  size_t key_len;
  struct json_value *child, *next;  // JSON_ARR / JSON_OBJ: the elements in order
  size_t n;                 // JSON_ARR / JSON_OBJ: element count
} json_value;

typedef struct {
  const char *base, *p, *end;
  arena *a;                 // where the values and decoded strings go
  int depth;
  size_t err_off;           // on failure: the byte offset of the error in the parsed text
  char why[160];            // on failure: what is wrong; empty until the first error
} json_parser;

// Parse s (n bytes) as one JSON value (whitespace around it allowed) into arena a. NULL with
// P->why and P->err_off on failure (P->why is "out of memory" and a->oom set when the arena ran out).
json_value *json_parse(json_parser *P, arena *a, const char *s, size_t n);
// The member `key` of object o (the last one when repeated, as in Python), or NULL (also when o
// is NULL or not an object).
const json_value *json_get(const json_value *o, const char *key);
// "null", "a boolean", "a number", "a string", "an array", "an object"; "missing" for NULL.
const char *json_type_name(const json_value *v);

#endif
