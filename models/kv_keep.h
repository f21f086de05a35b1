// kv_keep: which context entries of a KV cache survive a press, per layer, row and KV head.
//
// The contract between the presses (models/press.h, which choose the entries) and the compact
// cache (models/kv_cache.h, which stores only them). Positions index the row's context tokens
// (0 = its first token after any prefix: a 500x prefix is never a candidate), ascending, and each
// (layer, row, head) keeps its own number of them, so per-head budgets are expressed as they are.
#ifndef PITH_KV_KEEP_H
#define PITH_KV_KEEP_H

#include <stdint.h>

#include "base.h"

typedef struct {
  int n_layers, batch, n_kv_heads;
  int *n;          // (n_layers * batch * n_kv_heads): entries kept by each (layer, row, head)
  int64_t **pos;   // same index: n[i] ascending context positions (malloc'd; NULL while n[i] is 0)
} kv_keep;

// An empty keep (every count 0); NULL with err on bad sizes or out of memory.
kv_keep *kv_keep_new(int n_layers, int batch, int n_kv_heads, pith_err *err);
void kv_keep_free(kv_keep *k);
static inline int kv_keep_index(const kv_keep *k, int layer, int row, int head) {
  return (layer * k->batch + row) * k->n_kv_heads + head;
}
// Sets (layer, row, head) to a copy of pos (n entries), sorted ascending here; duplicates or
// negative positions are refused. 0 or -1 with err.
int kv_keep_set(kv_keep *k, int layer, int row, int head, const int64_t *pos, int n, pith_err *err);
// Total entries kept over every layer, row and head.
int64_t kv_keep_total(const kv_keep *k);

#endif
