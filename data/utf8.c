#include "utf8.h"

int utf8_decode(const char *s, size_t n, uint32_t *cp) {
  const uint8_t *p = (const uint8_t *)s;
  uint8_t c = p[0], lo = 0x80, hi = 0xBF;
  int need;
  if (c < 0x80) return *cp = c, 1;
  if (c >= 0xC2 && c <= 0xDF) need = 1;
  else if (c >= 0xE0 && c <= 0xEF) need = 2, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
  else if (c >= 0xF0 && c <= 0xF4) need = 3, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
  else return 0;
  if ((size_t)need >= n) return 0;
  // The second byte's range excludes overlongs (E0, F0), surrogates (ED) and values past U+10FFFF (F4).
  if (p[1] < lo || p[1] > hi) return 0;
  uint32_t v = c & (0x7Fu >> (need + 1));
  for (int i = 1; i <= need; i++) {
    if ((p[i] & 0xC0) != 0x80) return 0;
    v = v << 6 | (p[i] & 0x3Fu);
  }
  *cp = v;
  return need + 1;
}

int utf8_invalid_len(const char *s, size_t n) {
  const uint8_t *p = (const uint8_t *)s;
  uint8_t c = p[0], lo = 0x80, hi = 0xBF;
  int need;
  if (c >= 0xC2 && c <= 0xDF) need = 1;
  else if (c >= 0xE0 && c <= 0xEF) need = 2, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
  else if (c >= 0xF0 && c <= 0xF4) need = 3, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
  else return 1;
  int i = 1;
  for (; i <= need && (size_t)i < n; i++)
    if (i == 1 ? (p[i] < lo || p[i] > hi) : (p[i] & 0xC0) != 0x80) break;
  return i > need ? need : i;  // a whole valid sequence is not an ill-formed subpart; callers do not ask
}

size_t utf8_char_len(const char *s, size_t n) {
  uint32_t cp;
  if ((uint8_t)s[0] < 0x80) return 1;
  int k = utf8_decode(s, n, &cp);
  return k ? (size_t)k : 1;
}

size_t utf8_encode(uint32_t cp, char *out) {
  if (cp < 0x80) return out[0] = (char)cp, 1;
  if (cp < 0x800) return out[0] = (char)(0xC0 | cp >> 6), out[1] = (char)(0x80 | (cp & 0x3F)), 2;
  if (cp < 0x10000) {
    out[0] = (char)(0xE0 | cp >> 12), out[1] = (char)(0x80 | ((cp >> 6) & 0x3F)), out[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  out[0] = (char)(0xF0 | cp >> 18), out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  out[2] = (char)(0x80 | ((cp >> 6) & 0x3F)), out[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

int64_t utf8_invalid_at(const char *s, size_t n) {
  const uint8_t *p = (const uint8_t *)s;
  for (size_t i = 0; i < n;) {
    if (p[i] < 0x80) {
      i++;
      continue;
    }
    uint32_t cp;
    int k = utf8_decode(s + i, n - i, &cp);
    if (!k) return (int64_t)i;
    i += (size_t)k;
  }
  return -1;
}

size_t utf8_count(const char *s, size_t n) {
  size_t k = 0;
  for (size_t i = 0; i < n; i++) k += ((uint8_t)s[i] & 0xC0) != 0x80;
  return k;
}

size_t utf8_prev(const char *s, size_t i) {
  size_t j = i - 1;
  while (j > 0 && ((uint8_t)s[j] & 0xC0) == 0x80 && i - j < 4) j--;
  return j;
}

size_t utf8_offset(const char *s, size_t n, size_t k) {
  size_t seen = 0;
  for (size_t i = 0; i < n; i++)
    if (((uint8_t)s[i] & 0xC0) != 0x80 && seen++ == k) return i;
  return seen == k ? n : n + 1;
}
