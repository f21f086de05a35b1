// tokenizer BPE: the byte-pair-encoding model. Its merge table (pairmap), loading it (a
// tokenizer.json model, a GPT-2 merges.txt, llama2.c's scores turned into ranks), and encoding a
// pre-token: the lowest-ranked merge first (leftmost on ties) with a heap over a linked list of
// symbols, O(n log n) per piece. llama2.c's whole-text encoder and its decoder live here too.
#include "tokenizer_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------------------------
// pairmap: (left id, right id) -> (rank, merged id), the BPE merge table
// ---------------------------------------------------------------------------------------------

static int pairmap_init(pairmap *m, size_t expect) {
  size_t cap = 64;
  while (cap * 2 < expect * 3) cap *= 2;
  m->slots = malloc(cap * sizeof *m->slots);
  if (!m->slots) return -1;
  for (size_t i = 0; i < cap; i++) m->slots[i].key = PAIR_EMPTY;
  m->mask = (uint32_t)(cap - 1);
  m->count = 0;
  return 0;
}

static inline uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t)(uint32_t)a << 32 | (uint32_t)b; }

static inline const pair_slot *pairmap_get(const pairmap *m, int32_t a, int32_t b) {
  uint64_t k = pair_key(a, b);
  for (uint32_t i = (uint32_t)tok_mix64(k) & m->mask;; i = (i + 1) & m->mask) {
    const pair_slot *e = &m->slots[i];
    if (e->key == k) return e;
    if (e->key == PAIR_EMPTY) return NULL;
  }
}

static void pairmap_insert(pairmap *m, uint64_t k, int32_t rank, int32_t id) {
  for (uint32_t i = (uint32_t)tok_mix64(k) & m->mask;; i = (i + 1) & m->mask) {
    pair_slot *e = &m->slots[i];
    if (e->key == PAIR_EMPTY) m->count++;
    if (e->key == PAIR_EMPTY || e->key == k) {
      *e = (pair_slot){k, rank, id};
      return;
    }
  }
}

// Add a merge; a pair listed twice keeps the later rank (as HF's HashMap collect does).
static int pairmap_put(pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t id) {
  if ((m->count + 1) * 3 > (m->mask + 1) * 2) {
    pairmap old = *m;
    if (pairmap_init(m, (size_t)(old.mask + 1) * 2)) { *m = old; return -1; }
    for (uint32_t i = 0; i <= old.mask; i++)
      if (old.slots[i].key != PAIR_EMPTY) pairmap_insert(m, old.slots[i].key, old.slots[i].rank, old.slots[i].id);
    free(old.slots);
  }
  pairmap_insert(m, pair_key(a, b), rank, id);
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Loading: the BPE model (vocab, merges, options)
// ---------------------------------------------------------------------------------------------

// Largest id in a JSON object {piece: id} (and an added_tokens list); -1 when empty.
static int32_t max_id(loader *L, const cJSON *vocab, const cJSON *added, int *bad) {
  int32_t m = -1;
  for (const cJSON *e = vocab ? vocab->child : NULL; e; e = e->next) {
    if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble > TOK_MAX_ID) { *bad = 1; return -1; }
    if (e->valueint > m) m = e->valueint;
  }
  for (const cJSON *e = added ? added->child : NULL; e; e = e->next) {
    int id = tok_jint(e, "id", -1);
    if (id > m && id <= TOK_MAX_ID) m = id;
  }
  return m;
}

int tok_load_vocab(loader *L, const cJSON *vocab, const cJSON *added) {
  tokenizer *t = L->t;
  if (!cJSON_IsObject(vocab)) return pith_fail(L->err, "%s: the model has no vocab object", L->path);
  int bad = 0;
  int32_t m = max_id(L, vocab, added, &bad);
  if (bad) return pith_fail(L->err, "%s: vocab ids must be integers from 0 to %d", L->path, TOK_MAX_ID);
  if (tok_alloc_vocab(t, m + 1) || tok_strmap_init(&t->vocab, (size_t)cJSON_GetArraySize(vocab))) return tok_oom(L);
  for (const cJSON *e = vocab->child; e; e = e->next) {
    str_ref s;
    if (tok_pool_add(t, e->string, strlen(e->string), &s)) return tok_oom(L);
    if (tok_strmap_put(&t->vocab, t->pool, s, e->valueint, true)) return tok_oom(L);
    t->pieces[e->valueint] = s;
  }
  tok_init_byte_ids(t);
  return 0;
}

// One merge "a b" (or ["a", "b"]) with its rank.
static int add_merge(loader *L, const char *a, size_t al, const char *b, size_t bl, int32_t rank,
                     strbuf *scratch) {
  tokenizer *t = L->t;
  int32_t ia = tok_strmap_get(&t->vocab, t->pool, a, al), ib = tok_strmap_get(&t->vocab, t->pool, b, bl);
  size_t skip = 0, pl = t->cont_prefix ? strlen(t->cont_prefix) : 0;
  if (pl && bl >= pl && !memcmp(b, t->cont_prefix, pl)) skip = pl;
  scratch->n = 0;
  if (strbuf_add(scratch, a, al) || strbuf_add(scratch, b + skip, bl - skip)) return tok_oom(L);
  int32_t im = tok_strmap_get(&t->vocab, t->pool, scratch->p, scratch->n);
  if (ia < 0 || ib < 0 || im < 0)
    return pith_fail(L->err, "%s: merge %d ('%.*s' '%.*s') uses a token that is not in the vocabulary",
                     L->path, rank, (int)al, a, (int)bl, b);
  if (pairmap_put(&t->merges, ia, ib, rank, im)) return tok_oom(L);
  return 0;
}

static int load_merges_json(loader *L, const cJSON *merges) {
  if (!cJSON_IsArray(merges)) return pith_fail(L->err, "%s: the model has no merges list", L->path);
  if (pairmap_init(&L->t->merges, (size_t)cJSON_GetArraySize(merges))) return tok_oom(L);
  strbuf scratch = {0};
  int32_t rank = 0, rc = 0;
  for (const cJSON *e = merges->child; e && !rc; e = e->next, rank++) {
    const char *a = NULL, *b = NULL, *sp;
    if (cJSON_IsString(e) && (sp = strchr(e->valuestring, ' '))) {
      a = e->valuestring, b = sp + 1;
      rc = add_merge(L, a, (size_t)(sp - a), b, strlen(b), rank, &scratch);
    } else if (cJSON_GetArraySize(e) == 2 && cJSON_IsString(e->child) && cJSON_IsString(e->child->next)) {
      a = e->child->valuestring, b = e->child->next->valuestring;
      rc = add_merge(L, a, strlen(a), b, strlen(b), rank, &scratch);
    } else {
      rc = pith_fail(L->err, "%s: merge %d is neither \"a b\" nor [\"a\", \"b\"]", L->path, rank);
    }
  }
  free(scratch.p);
  return rc;
}

int tok_load_model(loader *L, const cJSON *model, const cJSON *added) {
  tokenizer *t = L->t;
  const char *type = tok_jstr(model, "type");
  if (!cJSON_IsObject(model)) return pith_fail(L->err, "%s: no \"model\" object", L->path);
  if (type && strcmp(type, "BPE"))
    return pith_fail(L->err, "%s: model type '%s' is not supported (BPE, WordPiece or Unigram)", L->path, type);
  if (!type && !cJSON_GetObjectItemCaseSensitive(model, "merges"))
    return pith_fail(L->err, "%s: model has no type and no merges (BPE only)", L->path);
  const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
  if (cJSON_IsNumber(dropout) && dropout->valuedouble > 0)
    return pith_fail(L->err, "%s: BPE dropout is not supported (it makes encoding random)", L->path);
  const char *prefix = tok_jstr(model, "continuing_subword_prefix");
  const char *suffix = tok_jstr(model, "end_of_word_suffix");
  if ((prefix && *prefix && !(t->cont_prefix = strdup(prefix))) ||
      (suffix && *suffix && !(t->end_suffix = strdup(suffix))))
    return tok_oom(L);
  t->ignore_merges = tok_jbool(model, "ignore_merges", false);
  t->byte_fallback = tok_jbool(model, "byte_fallback", false);
  t->fuse_unk = tok_jbool(model, "fuse_unk", false);
  if (tok_load_vocab(L, cJSON_GetObjectItemCaseSensitive(model, "vocab"), added)) return -1;
  const char *unk = tok_jstr(model, "unk_token");
  if (unk) t->unk_id = tok_strmap_get(&t->vocab, t->pool, unk, strlen(unk));
  return load_merges_json(L, cJSON_GetObjectItemCaseSensitive(model, "merges"));
}

// merges.txt: one "a b" a line, after an optional "#version" line.
int tok_load_merges_txt(loader *L, const char *path) {
  size_t len;
  char *text = pith_read_file(path, &len, L->err);
  if (!text) return -1;
  loader sub = {L->t, path, L->err};
  strbuf scratch = {0};
  int rc = pairmap_init(&L->t->merges, len / 8 + 1) ? tok_oom(&sub) : 0;
  int32_t rank = 0;
  for (char *line = text; !rc && line < text + len;) {
    char *nl = memchr(line, '\n', (size_t)(text + len - line)), *end = nl ? nl : text + len;
    if (end > line && end[-1] == '\r') end--;
    char *sp = memchr(line, ' ', (size_t)(end - line));
    bool skip = end == line || (rank == 0 && !strncmp(line, "#version", 8));
    if (!skip && !sp) rc = pith_fail(L->err, "%s: line '%.*s' is not a merge \"a b\"", path, (int)(end - line), line);
    if (!skip && sp) rc = add_merge(&sub, line, (size_t)(sp - line), sp + 1, (size_t)(end - sp - 1), rank++, &scratch);
    line = nl ? nl + 1 : text + len;
  }
  free(scratch.p);
  free(text);
  return rc;
}

typedef struct {
  float score;
  int32_t id;
} scored;

static int cmp_scored(const void *a, const void *b) {
  const scored *x = a, *y = b;
  if (x->score != y->score) return x->score > y->score ? -1 : 1;
  return x->id < y->id ? -1 : x->id > y->id;
}

// llama2.c merges any adjacent pair whose concatenation is a token, best score first, leftmost
// on ties. As a merge table: every split of every token into two tokens, ranked by the
// merged token's score (equal scores share a rank, so position breaks the tie).
static int llama2c_merges(loader *L, const float *score) {
  tokenizer *t = L->t;
  scored *order = malloc((size_t)t->n_vocab * sizeof *order);
  int32_t *rank = malloc((size_t)t->n_vocab * sizeof *rank);
  int rc = !order || !rank || pairmap_init(&t->merges, (size_t)t->n_vocab * 4) ? tok_oom(L) : 0;
  for (int32_t i = 0; !rc && i < t->n_vocab; i++) order[i] = (scored){score[i], i};
  if (!rc) qsort(order, (size_t)t->n_vocab, sizeof *order, cmp_scored);
  for (int32_t i = 0, r = 0; !rc && i < t->n_vocab; i++) {
    if (i > 0 && order[i].score != order[i - 1].score) r++;
    rank[order[i].id] = r;
  }
  for (int32_t m = 0; !rc && m < t->n_vocab; m++) {
    const char *p = t->pool + t->pieces[m].off;
    uint32_t n = t->pieces[m].len;
    if (tok_strmap_get(&t->vocab, t->pool, p, n) != m) continue;  // a duplicate piece
    for (uint32_t k = 1; !rc && k < n; k++) {
      int32_t a = tok_strmap_get(&t->vocab, t->pool, p, k), b = tok_strmap_get(&t->vocab, t->pool, p + k, n - k);
      if (a >= 0 && b >= 0 && pairmap_put(&t->merges, a, b, rank[m], m)) rc = tok_oom(L);
    }
  }
  free(order);
  free(rank);
  return rc;
}

// llama2.c tokenizer.bin: int32 max_token_length, then per token f32 score, int32 len, bytes.
int tok_load_llama2c(loader *L, const char *data, size_t len) {
  tokenizer *t = L->t;
  int32_t max_len, n = 0, tl;
  if (len < 4) return pith_fail(L->err, "%s: too short for a llama2.c tokenizer.bin", L->path);
  memcpy(&max_len, data, 4);
  size_t p = 4;
  for (; p < len; n++) {  // count and validate the records
    if (len - p < 8) break;
    memcpy(&tl, data + p + 4, 4);
    if (tl < 0 || tl > max_len || (size_t)tl > len - p - 8) break;
    p += 8 + (size_t)tl;
  }
  if (max_len <= 0 || max_len > 4096 || p != len || n < 3)
    return pith_fail(L->err, "%s: not a tokenizer.json nor a llama2.c tokenizer.bin (bad record %d)", L->path, n);
  float *score = malloc((size_t)n * sizeof *score);
  if (!score || tok_alloc_vocab(t, n) || tok_strmap_init(&t->vocab, (size_t)n)) { free(score); return tok_oom(L); }
  p = 4;
  for (int32_t i = 0; i < n; i++) {
    memcpy(&score[i], data + p, 4);
    memcpy(&tl, data + p + 4, 4);
    if (tok_pool_add(t, data + p + 8, (size_t)tl, &t->pieces[i]) ||
        tok_strmap_put(&t->vocab, t->pool, t->pieces[i], i, false)) { free(score); return tok_oom(L); }
    p += 8 + (size_t)tl;
  }
  int rc = llama2c_merges(L, score);
  free(score);
  t->kind = TOK_LLAMA2C;
  t->space_id = tok_strmap_get(&t->vocab, t->pool, " ", 1);
  for (int b = 0; b < 256 && b + 3 < n; b++) t->byte_token[b] = b + 3;
  t->flags[0] = t->flags[1] = t->flags[2] = TOK_SPECIAL;  // <unk>, <s>, </s>
  t->bos = 1, t->adds_bos = 1;
  tok_add_eos(t, 2);
  return rc ? -1 : tok_finish_added(L);
}

// ---------------------------------------------------------------------------------------------
// Encoding: BPE
// ---------------------------------------------------------------------------------------------

static int sym_push(enc *e, int32_t id, uint32_t len) {
  if (e->n_sym == e->cap_sym && tok_grow(&e->sym, &e->cap_sym, e->n_sym + 1, sizeof *e->sym)) return -1;
  int32_t k = (int32_t)e->n_sym++;
  e->sym[k] = (bpe_sym){id, k - 1, -1, len};
  if (k > 0) e->sym[k - 1].next = k;
  return 0;
}

static int heap_push(enc *e, uint64_t key) {
  if (e->n_heap == e->cap_heap && tok_grow(&e->heap, &e->cap_heap, e->n_heap + 1, sizeof *e->heap)) return -1;
  uint64_t *h = e->heap;
  size_t i = e->n_heap++;
  while (i > 0 && h[(i - 1) / 2] > key) h[i] = h[(i - 1) / 2], i = (i - 1) / 2;
  h[i] = key;
  return 0;
}

static uint64_t heap_pop(enc *e) {
  uint64_t *h = e->heap, top = h[0], last = h[--e->n_heap];
  size_t i = 0, n = e->n_heap;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && h[c + 1] < h[c]) c++;
    if (h[c] >= last) break;
    h[i] = h[c], i = c;
  }
  if (n) h[i] = last;
  return top;
}

// Queue the merge of symbol i with the one after it, if the merge table has it.
static int push_pair(enc *e, int32_t i) {
  const bpe_sym *s = e->sym;
  if (s[i].next < 0) return 0;
  const pair_slot *m = pairmap_get(&e->t->merges, s[i].id, s[s[i].next].id);
  return m ? heap_push(e, (uint64_t)(uint32_t)m->rank << 32 | (uint32_t)i) : 0;
}

// Apply merges to e->sym, lowest rank first (leftmost among equals), then append the ids.
static int bpe_merge(enc *e) {
  bpe_sym *s = e->sym;
  e->n_heap = 0;
  for (int32_t i = 0; i + 1 < (int32_t)e->n_sym; i++)
    if (push_pair(e, i)) return -1;
  while (e->n_heap) {
    uint64_t top = heap_pop(e);
    int32_t pos = (int32_t)(uint32_t)top, nx = s[pos].next;
    if (!s[pos].len || nx < 0) continue;
    const pair_slot *m = pairmap_get(&e->t->merges, s[pos].id, s[nx].id);
    if (!m || (uint32_t)m->rank != (uint32_t)(top >> 32)) continue;  // stale
    s[pos].id = m->id, s[pos].len += s[nx].len, s[nx].len = 0;
    s[pos].next = s[nx].next;
    if (s[nx].next >= 0) s[s[nx].next].prev = pos;
    if ((s[pos].prev >= 0 && push_pair(e, s[pos].prev)) || push_pair(e, pos)) return -1;
  }
  for (int32_t i = e->n_sym ? 0 : -1; i >= 0; i = s[i].next)
    if (tok_ids_push(&e->out, s[i].id)) return -1;
  return 0;
}

// Initial symbols of a word: its characters (with the model's prefix/suffix), else byte
// fallback tokens, else unk (fused when fuse_unk), else nothing (as HF does without an unk).
static int syms_from_chars(enc *e, const char *s, size_t n) {
  const tokenizer *t = e->t;
  uint32_t unk_len = 0;
  for (size_t i = 0, cl; i < n; i += cl) {
    cl = utf8_char_len(s + i, n - i);
    strbuf *k = &e->key;
    k->n = 0;
    if ((i > 0 && t->cont_prefix && strbuf_add(k, t->cont_prefix, strlen(t->cont_prefix))) || strbuf_add(k, s + i, cl) ||
        (i + cl == n && t->end_suffix && strbuf_add(k, t->end_suffix, strlen(t->end_suffix))))
      return -1;
    int32_t id = tok_strmap_get(&t->vocab, t->pool, k->p, k->n);
    bool bytes_ok = t->byte_fallback;
    for (size_t j = 0; id < 0 && bytes_ok && j < k->n; j++) bytes_ok = t->byte_token[(uint8_t)k->p[j]] >= 0;
    if ((id >= 0 || bytes_ok || !t->fuse_unk) && unk_len) {
      if (sym_push(e, t->unk_id, unk_len)) return -1;
      unk_len = 0;
    }
    if (id >= 0) {
      if (sym_push(e, id, (uint32_t)cl)) return -1;
    } else if (bytes_ok) {
      for (size_t j = 0; j < k->n; j++)
        if (sym_push(e, t->byte_token[(uint8_t)k->p[j]], 1)) return -1;
    } else if (t->unk_id >= 0) {
      unk_len += (uint32_t)cl;
    }
  }
  return unk_len ? sym_push(e, t->unk_id, unk_len) : 0;
}

int tok_bpe_word(enc *e, const char *w, size_t n) {
  const tokenizer *t = e->t;
  bool fast = t->byte_level && t->bytes_in_vocab && !t->cont_prefix && !t->end_suffix;
  e->n_sym = 0;
  if (!n) return 0;
  if (t->byte_level && (t->ignore_merges || !fast)) {  // the word in byte-level characters
    e->mapped.n = 0;
    if (strbuf_reserve(&e->mapped, 2 * n)) return -1;
    char *d = e->mapped.p;
    for (size_t i = 0; i < n; i++) {
      uint8_t b = (uint8_t)w[i];
      d[0] = t->byte_char[b][0], d[1] = t->byte_char[b][1];
      d += t->byte_char_len[b];
    }
    e->mapped.n = (size_t)(d - e->mapped.p);
  }
  const char *word = t->byte_level ? e->mapped.p : w;
  size_t word_n = t->byte_level ? e->mapped.n : n;
  if (t->ignore_merges) {  // a word that is a token is kept whole
    int32_t id = tok_strmap_get(&t->vocab, t->pool, word, word_n);
    if (id >= 0) return tok_ids_push(&e->out, id);
  }
  if (fast) {
    for (size_t i = 0; i < n; i++)
      if (sym_push(e, t->byte_char_id[(uint8_t)w[i]], 1)) return -1;
  } else if (syms_from_chars(e, word, word_n)) {
    return -1;
  }
  return bpe_merge(e);
}

// llama2.c's encode: a " " token first (the dummy prefix), then each UTF-8 character (at most 4
// bytes) as a token or as its bytes (id = byte + 3), then merges by score.
int tok_encode_llama2c(enc *e, const char *s, size_t n) {
  const tokenizer *t = e->t;
  char buf[8];
  size_t len = 0;
  e->n_sym = 0;
  if (n && t->space_id >= 0 && sym_push(e, t->space_id, 1)) return -1;
  for (size_t i = 0; i < n; i++) {
    uint8_t c = (uint8_t)s[i];
    if ((c & 0xC0) != 0x80) len = 0;
    buf[len++] = (char)c;
    if (i + 1 < n && ((uint8_t)s[i + 1] & 0xC0) == 0x80 && len < 4) continue;
    int32_t id = tok_strmap_get(&t->vocab, t->pool, buf, len);
    for (size_t j = 0; id < 0 && j < len; j++)
      if (t->byte_token[(uint8_t)buf[j]] >= 0 && sym_push(e, t->byte_token[(uint8_t)buf[j]], 1)) return -1;
    if (id >= 0 && sym_push(e, id, (uint32_t)len)) return -1;
    len = 0;
  }
  return bpe_merge(e);
}

// llama2.c: pieces as they are, <0xNN> as bytes; the leading space of the first piece (or of
// the piece after bos) is the encoder's dummy prefix and is dropped.
int tok_decode_llama2c(const tokenizer *t, const int32_t *ids, size_t n, int skip_special, strbuf *out) {
  strbuf raw = {0};
  int rc = strbuf_add(&raw, "", 0);
  for (size_t i = 0; !rc && i < n; i++) {
    if (skip_special && (t->flags[ids[i]] & TOK_SPECIAL)) continue;
    const char *s = t->pool + t->pieces[ids[i]].off;
    size_t len = t->pieces[ids[i]].len;
    int v = tok_byte_token_value(s, len);
    char c = (char)v;
    if ((i == 0 || ids[i - 1] == t->bos) && len && s[0] == ' ') s++, len--;
    rc = v >= 0 ? strbuf_add(&raw, &c, 1) : strbuf_add(&raw, s, len);
  }
  if (!rc) rc = tok_put_lossy(out, raw.p, raw.n);
  free(raw.p);
  return rc;
}
