// word_align: words of a text and the alignment of a compressed text onto them (see word_align.h).
#include "word_align.h"

#include <stdlib.h>
#include <string.h>

static int is_space(unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }
static int is_punct(unsigned char c) {
  return (c >= '!' && c <= '/') || (c >= ':' && c <= '@') || (c >= '[' && c <= '`') || (c >= '{' && c <= '~');
}

int64_t word_split(const char *text, size_t len, word_span **out) {
  *out = NULL;
  int64_t n = 0, cap = 0;
  for (size_t i = 0; i < len;) {
    unsigned char c = (unsigned char)text[i];
    if (is_space(c)) {
      i++;
      continue;
    }
    size_t j = i + 1;
    if (!is_punct(c))
      while (j < len && !is_space((unsigned char)text[j]) && !is_punct((unsigned char)text[j])) j++;
    if (n == cap) {
      cap = cap ? 2 * cap : 64;
      word_span *w = realloc(*out, sizeof *w * (size_t)cap);
      if (!w) {
        free(*out);
        *out = NULL;
        return -1;
      }
      *out = w;
    }
    (*out)[n++] = (word_span){i, j};
    i = j;
  }
  return n;
}

static int lower(unsigned char c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

static int same_word(const char *a, word_span x, const char *b, word_span y) {
  if (x.end - x.start != y.end - y.start) return 0;
  for (size_t k = 0; k < x.end - x.start; k++)
    if (lower((unsigned char)a[x.start + k]) != lower((unsigned char)b[y.start + k])) return 0;
  return 1;
}

int64_t word_align(const char *orig, const word_span *ow, int64_t n_orig, const char *comp, const word_span *cw,
                   int64_t n_comp, int64_t window, uint8_t *keep) {
  memset(keep, 0, (size_t)n_orig);
  int64_t cursor = 0, unmatched = 0, half = window / 2;
  for (int64_t c = 0; c < n_comp; c++) {
    int found = 0;
    for (int64_t d = 0; d < window && !found && n_orig > 0; d++) {
      int64_t f = cursor + d < n_orig ? cursor + d : n_orig - 1;
      if (!keep[f] && same_word(orig, ow[f], comp, cw[c])) {
        keep[f] = 1, found = 1;
        cursor = f - cursor > half ? cursor + half : f;
        break;
      }
      int64_t b = cursor - d > 0 ? cursor - d : 0;
      if (!keep[b] && same_word(orig, ow[b], comp, cw[c])) keep[b] = 1, found = 1, cursor = b;
    }
    unmatched += !found;
  }
  return unmatched;
}
