// kv_keep: the kept context positions per (layer, row, KV head); see kv_keep.h.
#include "kv_keep.h"

#include <stdlib.h>
#include <string.h>

kv_keep *kv_keep_new(int n_layers, int batch, int n_kv_heads, pith_err *err) {
  if (n_layers <= 0 || batch <= 0 || n_kv_heads <= 0) {
    pith_fail(err, "kv_keep: sizes must be positive (layers %d, rows %d, kv heads %d)", n_layers, batch, n_kv_heads);
    return NULL;
  }
  size_t cells = (size_t)n_layers * (size_t)batch * (size_t)n_kv_heads;
  kv_keep *k = calloc(1, sizeof *k);
  if (k) {
    k->n = calloc(cells, sizeof *k->n);
    k->pos = calloc(cells, sizeof *k->pos);
  }
  if (!k || !k->n || !k->pos) {
    kv_keep_free(k);
    pith_fail(err, "kv_keep: out of memory");
    return NULL;
  }
  k->n_layers = n_layers, k->batch = batch, k->n_kv_heads = n_kv_heads;
  return k;
}

void kv_keep_free(kv_keep *k) {
  if (!k) return;
  if (k->pos)
    for (size_t i = 0, cells = (size_t)k->n_layers * k->batch * k->n_kv_heads; i < cells; i++) free(k->pos[i]);
  free(k->pos);
  free(k->n);
  free(k);
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

int kv_keep_set(kv_keep *k, int layer, int row, int head, const int64_t *pos, int n, pith_err *err) {
  if (layer < 0 || layer >= k->n_layers || row < 0 || row >= k->batch || head < 0 || head >= k->n_kv_heads)
    return pith_fail(err, "kv_keep: (layer %d, row %d, head %d) is outside (%d, %d, %d)", layer, row, head,
                     k->n_layers, k->batch, k->n_kv_heads);
  if (n < 0 || (n > 0 && !pos)) return pith_fail(err, "kv_keep: %d positions given without an array", n);
  int64_t *copy = NULL;
  if (n > 0) {
    copy = malloc(sizeof *copy * (size_t)n);
    if (!copy) return pith_fail(err, "kv_keep: out of memory");
    memcpy(copy, pos, sizeof *copy * (size_t)n);
    qsort(copy, (size_t)n, sizeof *copy, cmp_i64);
    for (int i = 0; i < n; i++)
      if (copy[i] < 0 || (i > 0 && copy[i] == copy[i - 1])) {
        int64_t bad = copy[i];
        free(copy);
        return pith_fail(err, "kv_keep: position %lld is %s (layer %d, row %d, head %d)", (long long)bad,
                         bad < 0 ? "negative" : "given twice", layer, row, head);
      }
  }
  int i = kv_keep_index(k, layer, row, head);
  free(k->pos[i]);
  k->pos[i] = copy;
  k->n[i] = n;
  return 0;
}

int64_t kv_keep_total(const kv_keep *k) {
  int64_t t = 0;
  for (size_t i = 0, cells = (size_t)k->n_layers * k->batch * k->n_kv_heads; i < cells; i++) t += k->n[i];
  return t;
}
