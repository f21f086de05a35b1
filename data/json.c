#include "json.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "utf8.h"

static json_value *jfail(json_parser *P, const char *at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static json_value *jfail(json_parser *P, const char *at, const char *fmt, ...) {
  if (!P->why[0]) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(P->why, sizeof P->why, fmt, ap);
    va_end(ap);
    P->err_off = (size_t)(at - P->base);
  }
  return NULL;
}

static void jws(json_parser *P) {
  while (P->p < P->end && (*P->p == ' ' || *P->p == '\t' || *P->p == '\n' || *P->p == '\r')) P->p++;
}

static json_value *jnew(json_parser *P, json_type t) {
  json_value *v = arena_alloc(P->a, sizeof *v);
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
static int jstring(json_parser *P, const char **out, size_t *out_len) {
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
      w += utf8_encode(u, w);
    } else if (c < 0x20) {
      return jfail(P, r, "raw control character U+%04X in a string (JSON wants it escaped)", c), -1;
    } else if (c < 0x80) {
      *w++ = (char)c;
      r++;
    } else {
      uint32_t cp;
      int k = utf8_decode(r, (size_t)(e - r), &cp);
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

static json_value *jnumber(json_parser *P) {
  json_value *v = jnew(P, JSON_NUM);
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

static json_value *jvalue(json_parser *P);

static json_value *jcontainer(json_parser *P, int obj) {
  if (++P->depth > JSON_MAX_DEPTH) return jfail(P, P->p, "nesting deeper than %d levels", JSON_MAX_DEPTH);
  json_value *v = jnew(P, obj ? JSON_OBJ : JSON_ARR), **tail = v ? &v->child : NULL;
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
    json_value *e = jvalue(P);
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

static json_value *jvalue(json_parser *P) {
  if (P->p >= P->end) return jfail(P, P->p, "unexpected end of input (a value is missing)");
  char c = *P->p;
  if (c == '{' || c == '[') return jcontainer(P, c == '{');
  if (c == '"') {
    json_value *v = jnew(P, JSON_STR);
    if (!v || jstring(P, &v->s, &v->len) < 0) return NULL;
    return v;
  }
  if (c == '-' || is_digit(c)) return jnumber(P);
  static const struct { const char *lit; json_type t; int i; } LITS[] = {
    {"true", JSON_BOOL, 1}, {"false", JSON_BOOL, 0}, {"null", JSON_NULL, 0}};
  for (int k = 0; k < 3; k++) {
    size_t n = strlen(LITS[k].lit);
    if ((size_t)(P->end - P->p) >= n && !memcmp(P->p, LITS[k].lit, n)) {
      json_value *v = jnew(P, LITS[k].t);
      if (v) v->i = LITS[k].i;
      P->p += n;
      return v;
    }
  }
  if ((unsigned char)c >= 0x20 && (unsigned char)c < 0x7F) return jfail(P, P->p, "unexpected character '%c'", c);
  return jfail(P, P->p, "unexpected byte 0x%02X", (unsigned char)c);
}

json_value *json_parse(json_parser *P, arena *a, const char *s, size_t n) {
  memset(P, 0, sizeof *P);
  P->base = P->p = s, P->end = s + n, P->a = a;
  jws(P);
  json_value *v = jvalue(P);
  if (!v) return NULL;
  jws(P);
  if (P->p < P->end) return jfail(P, P->p, "unexpected characters after the JSON value");
  return v;
}

const json_value *json_get(const json_value *o, const char *key) {
  const json_value *found = NULL;
  size_t n = strlen(key);
  if (o && o->type == JSON_OBJ)
    for (const json_value *e = o->child; e; e = e->next)
      if (e->key_len == n && !memcmp(e->key, key, n)) found = e;  // the last one wins, as in Python
  return found;
}

const char *json_type_name(const json_value *v) {
  static const char *NAMES[] = {"null", "a boolean", "a number", "a string", "an array", "an object"};
  return v ? NAMES[v->type] : "missing";
}
