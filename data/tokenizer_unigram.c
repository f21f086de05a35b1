// tokenizer Unigram: SentencePiece unigram tokenizers (xlm-roberta-large, mT5, ...) as Hugging
// Face tokenizers runs them. The model: the segmentation of each pre-token that maximizes the sum
// of its pieces' log probabilities (Viterbi over byte positions, ties to the earlier start, as
// HF's optimized encoder does); a character no piece starts with is unk (score: lowest - 10), and
// unks in a row fuse into one (or become <0xNN> pieces with byte_fallback).
//
// The Precompiled normalizer: sentencepiece's precompiled_charsmap (base64 of a uint32 trie size,
// a Darts double-array trie over UTF-8 keys, then the NUL-terminated replacements). HF applies it
// per extended grapheme cluster: a cluster under 6 bytes is replaced by the replacement of the
// *shortest* key that is a prefix of it, if any; otherwise each of its characters by its own
// replacement. Clusters come from PCRE2's \X.
#include "tokenizer_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------------

int tok_load_unigram(loader *L, const cJSON *model, const cJSON *added) {
  tokenizer *t = L->t;
  const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab"), *e;
  if (!cJSON_IsArray(vocab)) return pith_fail(L->err, "%s: the Unigram model has no vocab list", L->path);
  int32_t n = cJSON_GetArraySize(vocab), m = n;
  for (e = added ? added->child : NULL; e; e = e->next) {
    int id = tok_jint(e, "id", -1);
    if (id >= m && id < 1000000000) m = id + 1;
  }
  t->model = MODEL_UNIGRAM;
  t->byte_fallback = tok_jbool(model, "byte_fallback", false);
  if (tok_alloc_vocab(t, m) || !(t->scores = calloc((size_t)m + 1, sizeof *t->scores)) ||
      tok_strmap_init(&t->vocab, (size_t)n) || tok_strmap_init(&t->prefixes, (size_t)n * 2))
    return tok_oom(L);
  double min_score = 0;
  int32_t i = 0;
  cJSON_ArrayForEach(e, vocab) {
    const cJSON *piece = cJSON_GetArrayItem(e, 0), *score = cJSON_GetArrayItem(e, 1);
    if (cJSON_GetArraySize(e) != 2 || !cJSON_IsString(piece) || !cJSON_IsNumber(score))
      return pith_fail(L->err, "%s: Unigram vocab entry %d is not [piece, score]", L->path, i);
    str_ref s;
    if (tok_pool_add(t, piece->valuestring, strlen(piece->valuestring), &s) ||
        tok_strmap_put(&t->vocab, t->pool, s, i, true))  // a repeated piece: the last id, as HF
      return tok_oom(L);
    t->pieces[i] = s;
    t->scores[i] = score->valuedouble;
    if (i == 0 || score->valuedouble < min_score) min_score = score->valuedouble;
    i++;
  }
  // Every prefix of every piece (at character boundaries), so that the Viterbi pass stops as soon
  // as no longer piece can start where it is: a piece maps to its id, a mere prefix to n_vocab.
  for (i = 0; i < n; i++) {
    str_ref s = t->pieces[i];
    const char *p = t->pool + s.off;
    if (tok_strmap_get(&t->vocab, t->pool, p, s.len) != i) continue;
    if (s.len > t->max_piece) t->max_piece = s.len;
    if (tok_strmap_put(&t->prefixes, t->pool, s, i, true)) return tok_oom(L);
    // Shorter prefixes, longest first: once one is there, so are all of its own.
    for (uint32_t k = (uint32_t)utf8_prev(p, s.len); k > 0; k = (uint32_t)utf8_prev(p, k)) {
      if (tok_strmap_get(&t->prefixes, t->pool, p, k) >= 0) break;
      if (tok_strmap_put(&t->prefixes, t->pool, (str_ref){s.off, k}, t->n_vocab, false)) return tok_oom(L);
    }
  }
  const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_id");
  t->unk_id = cJSON_IsNumber(unk) ? unk->valueint : -1;
  if (cJSON_IsNumber(unk) && (unk->valueint < 0 || unk->valueint >= n))
    return pith_fail(L->err, "%s: Unigram unk_id %d is not in the vocabulary (%d pieces)", L->path, unk->valueint, n);
  t->unk_score = min_score - 10.0;
  tok_init_byte_ids(t);
  return 0;
}

static int grow_best(enc *e, size_t need) {
  if (need <= e->cap_best) return 0;
  size_t c1 = e->cap_best, c2 = e->cap_best, c3 = e->cap_best;
  if (tok_grow(&e->best, &c1, need, sizeof *e->best) || tok_grow(&e->best_start, &c2, need, sizeof *e->best_start) ||
      tok_grow(&e->best_id, &c3, need, sizeof *e->best_id))
    return -1;
  e->cap_best = c1 < c2 ? (c1 < c3 ? c1 : c3) : (c2 < c3 ? c2 : c3);
  return 0;
}

// Consider the path ending at `end` through a piece `id` from `start`; keep the better (the
// first on ties).
static inline void relax(enc *e, size_t start, size_t end, int32_t id, double score) {
  double cand = e->best[start] + score;
  if (e->best_start[end] < 0 || cand > e->best[end]) {
    e->best[end] = cand;
    e->best_start[end] = (int32_t)start;
    e->best_id[end] = id;
  }
}

// The ids of one piece of text `s` that is unk: the piece itself when in the vocabulary, else
// its bytes with byte_fallback (all of them as <0xNN>), else unk.
static int push_unknown(enc *e, const char *s, size_t n) {
  const tokenizer *t = e->t;
  int32_t id = tok_strmap_get(&t->vocab, t->pool, s, n);
  if (id >= 0) return tok_ids_push(&e->out, id);
  bool bytes = t->byte_fallback;
  for (size_t i = 0; bytes && i < n; i++) bytes = t->byte_token[(uint8_t)s[i]] >= 0;
  for (size_t i = 0; bytes && i < n; i++)
    if (tok_ids_push(&e->out, t->byte_token[(uint8_t)s[i]])) return -1;
  if (bytes) return 0;
  if (t->unk_id < 0) {
    snprintf(e->fail, sizeof e->fail, "Unigram: the text has a character no piece covers, and the model has no unk_id");
    return -1;
  }
  return tok_ids_push(&e->out, t->unk_id);
}

int tok_unigram_word(enc *e, const char *w, size_t n) {
  const tokenizer *t = e->t;
  if (!n) return 0;
  if (n >= INT32_MAX || grow_best(e, n + 1)) return -1;
  for (size_t i = 0; i <= n; i++) e->best_start[i] = -1;
  e->best[0] = 0, e->best_start[0] = 0;
  for (size_t pos = 0; pos < n;) {
    size_t cl = utf8_char_len(w + pos, n - pos);
    bool single = false;
    for (size_t end = pos + cl; end <= n && end - pos <= t->max_piece;) {
      int32_t v = tok_strmap_get(&t->prefixes, t->pool, w + pos, end - pos);
      if (v < 0) break;
      if (v < t->n_vocab) {
        relax(e, pos, end, v, t->scores[v]);
        single |= end == pos + cl;
      }
      if (end == n) break;
      end += utf8_char_len(w + end, n - end);
    }
    if (!single) relax(e, pos, pos + cl, -1, t->unk_score);  // -1: unk
    pos += cl;
  }
  // Back from the end: the piece boundaries (reversed) into e->cps.
  e->n_cps = 0;
  for (size_t end = n; end > 0; end = (size_t)e->best_start[end]) {
    if (e->n_cps == e->cap_cps && tok_grow(&e->cps, &e->cap_cps, e->n_cps + 1, sizeof *e->cps)) return -1;
    e->cps[e->n_cps++] = (uint32_t)end;
  }
  size_t unk_from = SIZE_MAX;  // start of a run of unks not yet emitted
  for (size_t k = e->n_cps; k-- > 0;) {
    size_t end = e->cps[k], start = (size_t)e->best_start[end];
    int32_t id = e->best_id[end];
    if (id < 0) {  // unks in a row fuse (HF's Unigram has fuse_unk)
      if (unk_from == SIZE_MAX) unk_from = start;
      continue;
    }
    if (unk_from != SIZE_MAX && push_unknown(e, w + unk_from, start - unk_from)) return -1;
    unk_from = SIZE_MAX;
    if (tok_ids_push(&e->out, id)) return -1;
  }
  return unk_from != SIZE_MAX ? push_unknown(e, w + unk_from, n - unk_from) : 0;
}

// ---------------------------------------------------------------------------------------------
// The Precompiled normalizer
// ---------------------------------------------------------------------------------------------

static int b64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  return c == '+' ? 62 : c == '/' ? 63 : -1;
}

// Standard base64 (padding optional); NULL on a bad character.
static uint8_t *b64_decode(const char *s, size_t *out_len) {
  size_t n = strlen(s), k = 0;
  uint8_t *out = malloc(n / 4 * 3 + 4);
  uint32_t acc = 0;
  int bits = 0;
  if (!out) return NULL;
  for (size_t i = 0; i < n && s[i] != '='; i++) {
    int v = b64_value(s[i]);
    if (v < 0) {
      free(out);
      return NULL;
    }
    acc = acc << 6 | (uint32_t)v, bits += 6;
    if (bits >= 8) bits -= 8, out[k++] = (uint8_t)(acc >> bits);
  }
  *out_len = k;
  return out;
}

void tok_charsmap_free(charsmap *m) {
  if (!m) return;
  free(m->units);
  free(m->normalized);
  free(m);
}

int tok_load_precompiled(loader *L, norm_step *st, const char *base64) {
  size_t len = 0;
  uint8_t *blob = b64_decode(base64, &len);
  if (!blob) return pith_fail(L->err, "%s: Precompiled normalizer: precompiled_charsmap is not base64", L->path);
  if (len == 0) {  // nothing to map
    free(blob);
    return 0;
  }
  uint32_t trie_size = 0;
  if (len >= 4) trie_size = (uint32_t)blob[0] | (uint32_t)blob[1] << 8 | (uint32_t)blob[2] << 16 | (uint32_t)blob[3] << 24;
  if (len < 4 || trie_size % 4 || trie_size == 0 || trie_size > len - 4) {
    free(blob);
    return pith_fail(L->err, "%s: Precompiled normalizer: precompiled_charsmap is not a sentencepiece charsmap "
                     "(trie size %u in %zu bytes)", L->path, trie_size, len);
  }
  charsmap *m = calloc(1, sizeof *m);
  if (m) {
    m->n_units = trie_size / 4, m->n_normalized = len - 4 - trie_size;
    m->units = malloc(trie_size);
    m->normalized = malloc(m->n_normalized + 1);
  }
  if (!m || !m->units || !m->normalized) {
    free(blob);
    tok_charsmap_free(m);
    return tok_oom(L);
  }
  for (size_t i = 0; i < m->n_units; i++) {
    const uint8_t *b = blob + 4 + 4 * i;
    m->units[i] = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
  }
  memcpy(m->normalized, blob + 4 + trie_size, m->n_normalized);
  m->normalized[m->n_normalized] = 0;
  free(blob);
  st->map = m;
  if (!L->t->grapheme_re && !(L->t->grapheme_re = tok_regex_compile(L, "\\X", false, "Precompiled normalizer"))) return -1;
  return 0;
}

// Darts-clone unit fields.
static inline bool unit_has_leaf(uint32_t u) { return (u >> 8) & 1; }
static inline uint32_t unit_value(uint32_t u) { return u & ((1u << 31) - 1); }
static inline uint32_t unit_label(uint32_t u) { return u & ((1u << 31) | 0xFF); }
static inline uint32_t unit_offset(uint32_t u) { return (u >> 10) << ((u & (1u << 9)) >> 6); }

// The replacement of the shortest key that is a prefix of s (n bytes), or NULL; *out_n its length.
static const char *charsmap_lookup(const charsmap *m, const char *s, size_t n, size_t *out_n) {
  size_t pos = unit_offset(m->units[0]);
  for (size_t i = 0; i < n; i++) {
    uint8_t c = (uint8_t)s[i];
    if (!c) return NULL;
    pos ^= c;
    if (pos >= m->n_units || unit_label(m->units[pos]) != c) return NULL;
    uint32_t u = m->units[pos];
    pos ^= unit_offset(u);
    if (unit_has_leaf(u)) {
      if (pos >= m->n_units) return NULL;
      uint32_t v = unit_value(m->units[pos]);
      if (v >= m->n_normalized) return NULL;
      *out_n = strlen(m->normalized + v);
      return m->normalized + v;
    }
  }
  return NULL;
}

// Length of the extended grapheme cluster at s[i].
static size_t grapheme_len(enc *e, const char *s, size_t n, size_t i) {
  uint8_t c = (uint8_t)s[i];
  if (c < 0x80 && (i + 1 >= n || (uint8_t)s[i + 1] < 0x80))  // ASCII before ASCII: always a break but CR LF
    return c == '\r' && i + 1 < n && s[i + 1] == '\n' ? 2 : 1;
  int rc = pcre2_match(e->t->grapheme_re, (PCRE2_SPTR)s, n, i, PCRE2_ANCHORED, e->md, NULL);
  if (rc < 0) return utf8_char_len(s + i, n - i);
  size_t end = pcre2_get_ovector_pointer(e->md)[1];
  return end > i ? end - i : utf8_char_len(s + i, n - i);
}

int tok_norm_precompiled(enc *e, const norm_step *st, const char *s, size_t n, strbuf *out) {
  const charsmap *m = st->map;
  if (strbuf_add(out, "", 0)) return -1;
  if (!m) return strbuf_add(out, s, n);
  for (size_t i = 0; i < n;) {
    size_t g = grapheme_len(e, s, n, i), rn;
    const char *r = g < 6 ? charsmap_lookup(m, s + i, g, &rn) : NULL;
    if (r) {
      if (strbuf_add(out, r, rn)) return -1;
      i += g;
      continue;
    }
    for (size_t j = i, cl; j < i + g; j += cl) {
      cl = utf8_char_len(s + j, i + g - j);
      r = charsmap_lookup(m, s + j, cl, &rn);
      if (r ? strbuf_add(out, r, rn) : strbuf_add(out, s + j, cl)) return -1;
    }
    i += g;
  }
  return 0;
}
