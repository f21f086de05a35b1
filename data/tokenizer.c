// tokenizer: BPE tokenizers (Hugging Face tokenizer.json, GPT-2 vocab.json + merges.txt, llama2.c
// tokenizer.bin) in C. The encoder follows the HF tokenizers pipeline:
//
//   text -> added tokens split out (raw text) -> normalizer -> added tokens (normalized text)
//        -> pre-tokenizer steps (regex splits, byte-level mapping, metaspace) -> BPE per piece
//
// BPE applies the lowest-ranked merge first (leftmost on ties) with a heap over a linked list of
// symbols, O(n log n) per piece. llama2.c's score-based merging is the same algorithm with ranks
// derived from the scores, so both share one merge loop. Everything built at load is read-only;
// encode/decode keep their scratch in a per-call context.
#define _GNU_SOURCE  // memmem
#include "tokenizer.h"

#include <cJSON.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

// GPT-2's pre-tokenizer regex (ByteLevel with use_regex).
static const char GPT2_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

// ---------------------------------------------------------------------------------------------
// Small helpers: growable arrays, UTF-8, hashing
// ---------------------------------------------------------------------------------------------

// Grow *p (elements of size elem, capacity *cap) to hold at least need elements.
static int grow(void *pp, size_t *cap, size_t need, size_t elem) {
  void **p = pp;
  if (need <= *cap) return 0;
  size_t c = *cap ? *cap : 16;
  while (c < need) c *= 2;
  void *q = realloc(*p, c * elem);
  if (!q) return -1;
  *p = q;
  *cap = c;
  return 0;
}

typedef struct {
  char *p;
  size_t n, cap;
} bytes;

static int bytes_put(bytes *b, const void *s, size_t n) {
  if (grow(&b->p, &b->cap, b->n + n + 1, 1)) return -1;
  if (n) memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = 0;
  return 0;
}

typedef struct {
  int32_t *p;
  size_t n, cap;
} ids_vec;

static int ids_push(ids_vec *v, int32_t id) {
  if (v->n == v->cap && grow(&v->p, &v->cap, v->n + 1, sizeof *v->p)) return -1;
  v->p[v->n++] = id;
  return 0;
}

static size_t utf8_encode(uint32_t cp, char *out) {
  if (cp < 0x80) { out[0] = (char)cp; return 1; }
  if (cp < 0x800) {
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = (char)(0xE0 | (cp >> 12));
    out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  out[0] = (char)(0xF0 | (cp >> 18));
  out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
  out[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

// Length of the valid UTF-8 character at s (1..4), or 0 when the bytes there are not one; then
// *bad is the length of the maximal invalid subpart (replaced by one U+FFFD, as Rust does).
static int utf8_char(const uint8_t *s, size_t n, int *bad) {
  uint8_t c = s[0], lo = 0x80, hi = 0xBF;
  int need;
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) need = 1;
  else if (c >= 0xE0 && c <= 0xEF) need = 2, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
  else if (c >= 0xF0 && c <= 0xF4) need = 3, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
  else { *bad = 1; return 0; }
  int i = 1;
  for (; i <= need && (size_t)i < n; i++) {
    uint8_t b = s[i];
    if (i == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) break;
  }
  if (i == need + 1) return need + 1;
  *bad = i;
  return 0;
}

// Length of the character at s, treating an invalid byte as a character of its own.
static size_t utf8_len(const char *s, size_t n) {
  int bad;
  int l = utf8_char((const uint8_t *)s, n, &bad);
  return l ? (size_t)l : 1;
}

static uint32_t utf8_decode(const char *s, size_t n, size_t *len) {
  const uint8_t *u = (const uint8_t *)s;
  size_t l = utf8_len(s, n);
  *len = l;
  if (l == 1) return u[0];
  if (l == 2) return ((u[0] & 0x1Fu) << 6) | (u[1] & 0x3Fu);
  if (l == 3) return ((u[0] & 0x0Fu) << 12) | ((u[1] & 0x3Fu) << 6) | (u[2] & 0x3Fu);
  return ((u[0] & 0x07u) << 18) | ((u[1] & 0x3Fu) << 12) | ((u[2] & 0x3Fu) << 6) | (u[3] & 0x3Fu);
}

// Unicode White_Space (Rust's char::is_whitespace).
static bool is_unicode_space(uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

// Word character for single_word added tokens: ASCII letters, digits and '_', and (an
// approximation of Unicode alphanumerics) any non-ASCII character that is not a space.
static bool is_word_char(uint32_t c) {
  if (c < 0x80) return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
  return !is_unicode_space(c);
}

// Start of the character that ends right before s[i] (i > 0).
static size_t utf8_prev(const char *s, size_t i) {
  size_t j = i - 1;
  while (j > 0 && ((uint8_t)s[j] & 0xC0) == 0x80 && i - j < 4) j--;
  return j;
}

static uint64_t mix64(uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return h;
}

static uint32_t hash_bytes(const char *s, size_t n) {
  uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0x100000001b3ull);
  while (n >= 8) {
    uint64_t w;
    memcpy(&w, s, 8);
    h = (h ^ w) * 0xff51afd7ed558ccdull;
    h ^= h >> 29;
    s += 8;
    n -= 8;
  }
  uint64_t w = 0;
  memcpy(&w, s, n);
  return (uint32_t)mix64(h ^ w);
}

// ---------------------------------------------------------------------------------------------
// strmap: byte string -> id (open addressing; strings live in the tokenizer's pool)
// ---------------------------------------------------------------------------------------------

typedef struct {
  uint32_t off, len;  // a string in the pool
} str_ref;

typedef struct {
  uint32_t hash;
  int32_t id;  // -1: empty slot
  str_ref s;
} strmap_slot;

typedef struct {
  strmap_slot *slots;
  uint32_t mask, count;
} strmap;

static int strmap_init(strmap *m, size_t expect) {
  size_t cap = 64;
  while (cap < expect * 2) cap *= 2;
  m->slots = malloc(cap * sizeof *m->slots);
  if (!m->slots) return -1;
  for (size_t i = 0; i < cap; i++) m->slots[i].id = -1;
  m->mask = (uint32_t)(cap - 1);
  m->count = 0;
  return 0;
}

static int32_t strmap_get(const strmap *m, const char *pool, const char *s, size_t n) {
  if (!m->slots) return -1;
  uint32_t h = hash_bytes(s, n);
  for (uint32_t i = h & m->mask;; i = (i + 1) & m->mask) {
    const strmap_slot *e = &m->slots[i];
    if (e->id < 0) return -1;
    if (e->hash == h && e->s.len == n && !memcmp(pool + e->s.off, s, n)) return e->id;
  }
}

static void strmap_insert(strmap *m, uint32_t h, str_ref s, int32_t id, const char *pool,
                          bool replace) {
  for (uint32_t i = h & m->mask;; i = (i + 1) & m->mask) {
    strmap_slot *e = &m->slots[i];
    if (e->id < 0) {
      *e = (strmap_slot){h, id, s};
      m->count++;
      return;
    }
    if (e->hash == h && e->s.len == s.len && !memcmp(pool + e->s.off, pool + s.off, s.len)) {
      if (replace) e->id = id;
      return;
    }
  }
}

// Map the pool string s to id; an existing key keeps its id unless replace.
static int strmap_put(strmap *m, const char *pool, str_ref s, int32_t id, bool replace) {
  if ((m->count + 1) * 2 > m->mask + 1) {
    strmap old = *m;
    if (strmap_init(m, (size_t)(old.mask + 1))) { *m = old; return -1; }
    for (uint32_t i = 0; i <= old.mask; i++)
      if (old.slots[i].id >= 0) strmap_insert(m, old.slots[i].hash, old.slots[i].s, old.slots[i].id, pool, false);
    free(old.slots);
  }
  strmap_insert(m, hash_bytes(pool + s.off, s.len), s, id, pool, replace);
  return 0;
}

// ---------------------------------------------------------------------------------------------
// pairmap: (left id, right id) -> (rank, merged id), the BPE merge table
// ---------------------------------------------------------------------------------------------

typedef struct {
  uint64_t key;  // left << 32 | right; PAIR_EMPTY when free
  int32_t rank, id;
} pair_slot;

#define PAIR_EMPTY UINT64_MAX

typedef struct {
  pair_slot *slots;
  uint32_t mask, count;
} pairmap;

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
  for (uint32_t i = (uint32_t)mix64(k) & m->mask;; i = (i + 1) & m->mask) {
    const pair_slot *e = &m->slots[i];
    if (e->key == k) return e;
    if (e->key == PAIR_EMPTY) return NULL;
  }
}

static void pairmap_insert(pairmap *m, uint64_t k, int32_t rank, int32_t id) {
  for (uint32_t i = (uint32_t)mix64(k) & m->mask;; i = (i + 1) & m->mask) {
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
// The tokenizer
// ---------------------------------------------------------------------------------------------

enum { TOK_HF, TOK_LLAMA2C };
enum { TOK_SPECIAL = 1, TOK_ADDED = 2 };  // token flags
enum { SPLIT_REMOVED, SPLIT_ISOLATED, SPLIT_MERGED_PREV, SPLIT_MERGED_NEXT, SPLIT_CONTIGUOUS };
enum { PREPEND_ALWAYS, PREPEND_FIRST, PREPEND_NEVER };

typedef enum { NORM_PREPEND, NORM_REPLACE, NORM_STRIP, NORM_NFC } norm_kind;
typedef struct {
  norm_kind kind;
  char *a, *b;          // prepend: a; replace: literal pattern a (unless re) -> content b
  size_t a_len, b_len;
  pcre2_code *re;       // replace with a regex pattern
  bool left, right;     // strip
} norm_step;

typedef enum { PRE_SPLIT, PRE_PREFIX_SPACE, PRE_BYTE_LEVEL, PRE_METASPACE } pre_kind;
typedef struct {
  pre_kind kind;
  pcre2_code *re;       // split
  int behavior;         // split: SPLIT_*
  bool invert;          // split
  char repl[8];         // metaspace replacement character (UTF-8)
  int repl_len, prepend;  // metaspace: PREPEND_*
  bool split;           // metaspace: split on the replacement
} pre_step;

typedef enum { DEC_BYTE_LEVEL, DEC_METASPACE, DEC_REPLACE, DEC_BYTE_FALLBACK, DEC_FUSE, DEC_STRIP } dec_kind;
typedef struct {
  dec_kind kind;
  char *a, *b;          // replace: pattern a -> content b; metaspace: replacement a; strip: content a
  size_t a_len, b_len;
  int prepend;          // metaspace
  int start, stop;      // strip: how many content characters to remove at each end
} dec_step;

typedef struct {
  int32_t id;
  str_ref s;
  bool lstrip, rstrip, single_word, normalized, special;
} added_token;

// Added tokens of one matching pass, bucketed by first byte, longest first within a bucket.
typedef struct {
  int32_t *order;       // indices into tokenizer.added
  int32_t first[257];   // order[first[b] .. first[b+1]) start with byte b
} added_index;

struct tokenizer {
  int kind;                   // TOK_HF or TOK_LLAMA2C
  char **files;               // files read: [0] is the main one
  int n_files;

  char *pool;                 // all piece strings
  size_t pool_len, pool_cap;
  int32_t n_vocab;            // largest id + 1
  str_ref *pieces;            // (n_vocab) id -> piece; off == UINT32_MAX when no such id
  uint8_t *flags;             // (n_vocab) TOK_SPECIAL | TOK_ADDED
  strmap vocab;               // model vocabulary (BPE looks up here)
  pairmap merges;             // (left, right) -> (rank, merged)

  added_token *added;
  int n_added;
  strmap added_map;           // content -> id
  added_index added_raw, added_norm;  // normalized=false tokens, normalized=true tokens

  norm_step *norm;
  int n_norm;
  pre_step *pre;
  int n_pre;
  dec_step *dec;
  int n_dec;
  bool has_decoder;

  bool byte_level;            // pre-tokens are mapped to GPT-2's byte-level characters
  bool bytes_in_vocab;        // every byte's character is a vocab piece (fast path)
  bool ignore_merges, byte_fallback, fuse_unk;
  int32_t unk_id;
  char *cont_prefix, *end_suffix;  // NULL when none
  int32_t byte_token[256];    // id of "<0xNN>", or -1
  int32_t byte_char_id[256];  // byte-level: id of the piece of each byte's character, or -1
  char byte_char[256][2];     // byte-level: each byte's character (UTF-8, 1 or 2 bytes)
  uint8_t byte_char_len[256];
  int16_t char_byte[512];     // byte-level: code point -> byte, or -1

  int32_t space_id;           // llama2.c: the id of " " (the dummy prefix)
  int32_t bos, pad;
  int32_t eos[16];
  int n_eos;
  int adds_bos;               // -1 until a file says
  bool has_config;            // a tokenizer_config.json was read
};

static int pool_add(tokenizer *t, const char *s, size_t n, str_ref *out) {
  if (t->pool_len + n + 1 > UINT32_MAX) return -1;
  if (grow(&t->pool, &t->pool_cap, t->pool_len + n + 1, 1)) return -1;
  memcpy(t->pool + t->pool_len, s, n);
  t->pool[t->pool_len + n] = 0;
  *out = (str_ref){(uint32_t)t->pool_len, (uint32_t)n};
  t->pool_len += n + 1;
  return 0;
}

static int add_file(tokenizer *t, const char *path) {
  char **f = realloc(t->files, (size_t)(t->n_files + 1) * sizeof *f);
  if (!f) return -1;
  t->files = f;
  if (!(f[t->n_files] = strdup(path))) return -1;
  t->n_files++;
  return 0;
}

static int alloc_vocab(tokenizer *t, int32_t n_vocab) {
  t->n_vocab = n_vocab;
  t->pieces = malloc(((size_t)n_vocab + 1) * sizeof *t->pieces);
  t->flags = calloc((size_t)n_vocab + 1, 1);
  if (!t->pieces || !t->flags) return -1;
  for (int32_t i = 0; i < n_vocab; i++) t->pieces[i].off = UINT32_MAX;
  return 0;
}

// GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the rest map to 256+.
static void init_byte_chars(tokenizer *t) {
  int next = 256;
  for (int i = 0; i < 512; i++) t->char_byte[i] = -1;
  for (int b = 0; b < 256; b++) {
    bool keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
    int cp = keep ? b : next++;
    t->byte_char_len[b] = (uint8_t)utf8_encode((uint32_t)cp, t->byte_char[b]);
    t->char_byte[cp] = (int16_t)b;
  }
}

// After the vocabulary is known: ids of byte tokens and of byte-level characters.
static void init_byte_ids(tokenizer *t) {
  t->bytes_in_vocab = true;
  for (int b = 0; b < 256; b++) {
    char name[8];
    snprintf(name, sizeof name, "<0x%02X>", b);
    t->byte_token[b] = strmap_get(&t->vocab, t->pool, name, 6);
    t->byte_char_id[b] = strmap_get(&t->vocab, t->pool, t->byte_char[b], t->byte_char_len[b]);
    if (t->byte_char_id[b] < 0) t->bytes_in_vocab = false;
  }
}

static void added_index_free(added_index *ix) { free(ix->order); }

// Sort key of an added token: first byte, then longest first, then file order.
typedef struct {
  int32_t idx;
  uint8_t first;
  uint32_t len;
} added_key;

static int cmp_added_key(const void *a, const void *b) {
  const added_key *x = a, *y = b;
  if (x->first != y->first) return x->first < y->first ? -1 : 1;
  if (x->len != y->len) return x->len > y->len ? -1 : 1;
  return x->idx < y->idx ? -1 : x->idx > y->idx;
}

// Index the added tokens whose normalized flag equals `normalized`.
static int added_index_build(tokenizer *t, added_index *ix, bool normalized) {
  added_key *keys = malloc(((size_t)t->n_added + 1) * sizeof *keys);
  ix->order = malloc(((size_t)t->n_added + 1) * sizeof *ix->order);
  if (!keys || !ix->order) { free(keys); return -1; }
  int n = 0;
  for (int i = 0; i < t->n_added; i++) {
    const added_token *a = &t->added[i];
    if (a->normalized != normalized || a->s.len == 0) continue;
    keys[n++] = (added_key){i, (uint8_t)t->pool[a->s.off], a->s.len};
  }
  qsort(keys, (size_t)n, sizeof *keys, cmp_added_key);
  int k = 0;
  for (int b = 0; b < 256; b++) {
    ix->first[b] = k;
    while (k < n && keys[k].first == b) ix->order[k] = keys[k].idx, k++;
  }
  ix->first[256] = k;
  free(keys);
  return 0;
}

static void free_steps(tokenizer *t) {
  for (int i = 0; i < t->n_norm; i++) {
    free(t->norm[i].a);
    free(t->norm[i].b);
    pcre2_code_free(t->norm[i].re);
  }
  for (int i = 0; i < t->n_pre; i++) pcre2_code_free(t->pre[i].re);
  for (int i = 0; i < t->n_dec; i++) {
    free(t->dec[i].a);
    free(t->dec[i].b);
  }
  free(t->norm);
  free(t->pre);
  free(t->dec);
}

void tokenizer_free(tokenizer *t) {
  if (!t) return;
  for (int i = 0; i < t->n_files; i++) free(t->files[i]);
  free(t->files);
  free(t->pool);
  free(t->pieces);
  free(t->flags);
  free(t->vocab.slots);
  free(t->merges.slots);
  free(t->added);
  free(t->added_map.slots);
  added_index_free(&t->added_raw);
  added_index_free(&t->added_norm);
  free_steps(t);
  free(t->cont_prefix);
  free(t->end_suffix);
  free(t);
}

static tokenizer *tokenizer_new(void) {
  tokenizer *t = calloc(1, sizeof *t);
  if (!t) return NULL;
  t->unk_id = t->space_id = t->bos = t->pad = t->adds_bos = -1;
  init_byte_chars(t);
  for (int b = 0; b < 256; b++) t->byte_token[b] = t->byte_char_id[b] = -1;
  return t;
}

// ---------------------------------------------------------------------------------------------
// Loading: shared pieces
// ---------------------------------------------------------------------------------------------

typedef struct {
  tokenizer *t;
  const char *path;  // the file being read, named in every error
  pith_err *err;
} loader;

static int oom(loader *L) { return pith_fail(L->err, "%s: out of memory", L->path); }

static const char *jstr(const cJSON *o, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

static bool jbool(const cJSON *o, const char *key, bool def) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  return cJSON_IsBool(v) ? cJSON_IsTrue(v) : def;
}

static int jint(const cJSON *o, const char *key, int def) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  return cJSON_IsNumber(v) ? v->valueint : def;
}

static char *dup_str(const char *s, size_t *len) {
  size_t n = strlen(s);
  char *d = malloc(n + 1);
  if (d) memcpy(d, s, n + 1);
  if (len) *len = n;
  return d;
}

// Parse JSON text; on failure a message with the line of the error.
static cJSON *parse_json(const char *text, size_t len, const char *path, pith_err *err) {
  const char *end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
  if (root) return root;
  size_t at = end && end >= text && end <= text + len ? (size_t)(end - text) : len;
  int line = 1;
  for (size_t i = 0; i < at; i++) line += text[i] == '\n';
  pith_fail(err, "%s: invalid JSON at byte %zu (line %d)%s", path, at, line,
            at >= len ? ": the file ends too early (truncated?)" : "");
  return NULL;
}

// Read and parse a JSON file; *missing set (and NULL returned, err untouched) when absent.
static cJSON *read_json(const char *path, bool *missing, pith_err *err) {
  struct stat st;
  if (missing) {
    *missing = stat(path, &st) != 0;
    if (*missing) return NULL;
  }
  size_t len;
  char *text = pith_read_file(path, &len, err);
  if (!text) return NULL;
  cJSON *root = parse_json(text, len, path, err);
  free(text);
  return root;
}

static pcre2_code *regex_compile(loader *L, const char *pat, bool literal, const char *what) {
  int ec;
  PCRE2_SIZE eo;
  uint32_t opts = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
  pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, opts, &ec, &eo, NULL);
  if (!re) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(ec, msg, sizeof msg);
    pith_fail(L->err, "%s: %s: cannot compile regex /%s/: %s at offset %zu", L->path, what, pat,
              (char *)msg, (size_t)eo);
    return NULL;
  }
  pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);  // falls back to the interpreter when JIT is absent
  return re;
}

// Make room for ids up to `id` (added tokens may lie beyond the model vocabulary).
static int ensure_id(tokenizer *t, int32_t id) {
  if (id < t->n_vocab) return 0;
  str_ref *p = realloc(t->pieces, ((size_t)id + 1) * sizeof *p);
  if (!p) return -1;
  t->pieces = p;
  uint8_t *f = realloc(t->flags, (size_t)id + 1);
  if (!f) return -1;
  t->flags = f;
  for (int32_t i = t->n_vocab; i <= id; i++) t->pieces[i].off = UINT32_MAX, t->flags[i] = 0;
  t->n_vocab = id + 1;
  return 0;
}

// Register an added token (content matched in the text as one token). An id already added
// keeps its first definition.
static int add_token(loader *L, int32_t id, const char *content, bool special, bool lstrip,
                     bool rstrip, bool single_word, bool normalized) {
  tokenizer *t = L->t;
  if (id >= 0 && id < t->n_vocab && (t->flags[id] & TOK_ADDED)) return 0;
  if (id < 0) return pith_fail(L->err, "%s: added token '%s' has a negative id", L->path, content);
  added_token *a = realloc(t->added, ((size_t)t->n_added + 1) * sizeof *a);
  if (!a) return oom(L);
  t->added = a;
  a = &t->added[t->n_added];
  *a = (added_token){.id = id, .lstrip = lstrip, .rstrip = rstrip, .single_word = single_word,
                     .normalized = normalized, .special = special};
  if (ensure_id(t, id) || pool_add(t, content, strlen(content), &a->s)) return oom(L);
  if (!t->added_map.slots && strmap_init(&t->added_map, 64)) return oom(L);
  if (strmap_put(&t->added_map, t->pool, a->s, id, false)) return oom(L);
  t->pieces[id] = a->s;
  t->flags[id] = (uint8_t)(TOK_ADDED | (special ? TOK_SPECIAL : 0));
  t->n_added++;
  return 0;
}

// One entry of HF's added_tokens list (or of tokenizer_config's added_tokens_decoder).
static int add_token_json(loader *L, const cJSON *o, int32_t id) {
  const char *content = jstr(o, "content");
  if (!content) return pith_fail(L->err, "%s: an added token has no content", L->path);
  return add_token(L, id, content, jbool(o, "special", false), jbool(o, "lstrip", false),
                   jbool(o, "rstrip", false), jbool(o, "single_word", false),
                   jbool(o, "normalized", false));
}

// ---------------------------------------------------------------------------------------------
// Loading: the BPE model (vocab, merges, options)
// ---------------------------------------------------------------------------------------------

// Largest id in a JSON object {piece: id} (and an added_tokens list); -1 when empty.
static int32_t max_id(loader *L, const cJSON *vocab, const cJSON *added, int *bad) {
  int32_t m = -1;
  for (const cJSON *e = vocab ? vocab->child : NULL; e; e = e->next) {
    if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble > 1e9) { *bad = 1; return -1; }
    if (e->valueint > m) m = e->valueint;
  }
  for (const cJSON *e = added ? added->child : NULL; e; e = e->next) {
    int id = jint(e, "id", -1);
    if (id > m && id < 1000000000) m = id;
  }
  return m;
}

static int load_vocab(loader *L, const cJSON *vocab, const cJSON *added) {
  tokenizer *t = L->t;
  if (!cJSON_IsObject(vocab)) return pith_fail(L->err, "%s: the model has no vocab object", L->path);
  int bad = 0;
  int32_t m = max_id(L, vocab, added, &bad);
  if (bad) return pith_fail(L->err, "%s: vocab ids must be integers from 0", L->path);
  if (alloc_vocab(t, m + 1) || strmap_init(&t->vocab, (size_t)cJSON_GetArraySize(vocab))) return oom(L);
  for (const cJSON *e = vocab->child; e; e = e->next) {
    str_ref s;
    if (pool_add(t, e->string, strlen(e->string), &s)) return oom(L);
    if (strmap_put(&t->vocab, t->pool, s, e->valueint, true)) return oom(L);
    t->pieces[e->valueint] = s;
  }
  init_byte_ids(t);
  return 0;
}

// One merge "a b" (or ["a", "b"]) with its rank.
static int add_merge(loader *L, const char *a, size_t al, const char *b, size_t bl, int32_t rank,
                     bytes *scratch) {
  tokenizer *t = L->t;
  int32_t ia = strmap_get(&t->vocab, t->pool, a, al), ib = strmap_get(&t->vocab, t->pool, b, bl);
  size_t skip = 0, pl = t->cont_prefix ? strlen(t->cont_prefix) : 0;
  if (pl && bl >= pl && !memcmp(b, t->cont_prefix, pl)) skip = pl;
  scratch->n = 0;
  if (bytes_put(scratch, a, al) || bytes_put(scratch, b + skip, bl - skip)) return oom(L);
  int32_t im = strmap_get(&t->vocab, t->pool, scratch->p, scratch->n);
  if (ia < 0 || ib < 0 || im < 0)
    return pith_fail(L->err, "%s: merge %d ('%.*s' '%.*s') uses a token that is not in the vocabulary",
                     L->path, rank, (int)al, a, (int)bl, b);
  if (pairmap_put(&t->merges, ia, ib, rank, im)) return oom(L);
  return 0;
}

static int load_merges_json(loader *L, const cJSON *merges) {
  if (!cJSON_IsArray(merges)) return pith_fail(L->err, "%s: the model has no merges list", L->path);
  if (pairmap_init(&L->t->merges, (size_t)cJSON_GetArraySize(merges))) return oom(L);
  bytes scratch = {0};
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

static int load_model(loader *L, const cJSON *model, const cJSON *added) {
  tokenizer *t = L->t;
  const char *type = jstr(model, "type");
  if (!cJSON_IsObject(model)) return pith_fail(L->err, "%s: no \"model\" object", L->path);
  if (type && strcmp(type, "BPE"))
    return pith_fail(L->err, "%s: model type '%s' is not supported (BPE only)", L->path, type);
  if (!type && !cJSON_GetObjectItemCaseSensitive(model, "merges"))
    return pith_fail(L->err, "%s: model has no type and no merges (BPE only)", L->path);
  const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
  if (cJSON_IsNumber(dropout) && dropout->valuedouble > 0)
    return pith_fail(L->err, "%s: BPE dropout is not supported (it makes encoding random)", L->path);
  const char *prefix = jstr(model, "continuing_subword_prefix");
  const char *suffix = jstr(model, "end_of_word_suffix");
  if ((prefix && *prefix && !(t->cont_prefix = strdup(prefix))) ||
      (suffix && *suffix && !(t->end_suffix = strdup(suffix))))
    return oom(L);
  t->ignore_merges = jbool(model, "ignore_merges", false);
  t->byte_fallback = jbool(model, "byte_fallback", false);
  t->fuse_unk = jbool(model, "fuse_unk", false);
  if (load_vocab(L, cJSON_GetObjectItemCaseSensitive(model, "vocab"), added)) return -1;
  const char *unk = jstr(model, "unk_token");
  if (unk) t->unk_id = strmap_get(&t->vocab, t->pool, unk, strlen(unk));
  return load_merges_json(L, cJSON_GetObjectItemCaseSensitive(model, "merges"));
}

// ---------------------------------------------------------------------------------------------
// Loading: normalizer, pre-tokenizer, decoder
// ---------------------------------------------------------------------------------------------

static norm_step *norm_add(loader *L, norm_kind kind) {
  tokenizer *t = L->t;
  norm_step *s = realloc(t->norm, ((size_t)t->n_norm + 1) * sizeof *s);
  if (!s) return NULL;
  t->norm = s;
  s = &t->norm[t->n_norm++];
  *s = (norm_step){.kind = kind};
  return s;
}

static int load_normalizer(loader *L, const cJSON *o) {
  if (!o || cJSON_IsNull(o)) return 0;
  const char *type = jstr(o, "type");
  if (!type) return pith_fail(L->err, "%s: normalizer without a type", L->path);
  if (!strcmp(type, "Sequence")) {
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(o, "normalizers"))
      if (load_normalizer(L, e)) return -1;
    return 0;
  }
  norm_step *s;
  if (!strcmp(type, "Prepend")) {
    const char *p = jstr(o, "prepend");
    if (!p) return pith_fail(L->err, "%s: Prepend normalizer without 'prepend'", L->path);
    if (!(s = norm_add(L, NORM_PREPEND)) || !(s->a = dup_str(p, &s->a_len))) return oom(L);
  } else if (!strcmp(type, "Replace")) {
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(o, "pattern");
    const char *lit = jstr(pat, "String"), *re = jstr(pat, "Regex"), *content = jstr(o, "content");
    if ((!lit && !re) || !content) return pith_fail(L->err, "%s: Replace normalizer needs a pattern and content", L->path);
    if (!(s = norm_add(L, NORM_REPLACE)) || !(s->b = dup_str(content, &s->b_len))) return oom(L);
    if (lit && !(s->a = dup_str(lit, &s->a_len))) return oom(L);
    if (re && !(s->re = regex_compile(L, re, false, "Replace normalizer"))) return -1;
  } else if (!strcmp(type, "Strip")) {
    if (!(s = norm_add(L, NORM_STRIP))) return oom(L);
    s->left = jbool(o, "strip_left", true), s->right = jbool(o, "strip_right", true);
  } else if (!strcmp(type, "NFC")) {
    if (!norm_add(L, NORM_NFC)) return oom(L);
  } else {
    return pith_fail(L->err, "%s: normalizer type '%s' is not supported", L->path, type);
  }
  return 0;
}

static pre_step *pre_add(loader *L, pre_kind kind) {
  tokenizer *t = L->t;
  pre_step *s = realloc(t->pre, ((size_t)t->n_pre + 1) * sizeof *s);
  if (!s) return NULL;
  t->pre = s;
  s = &t->pre[t->n_pre++];
  *s = (pre_step){.kind = kind};
  return s;
}

static int pre_add_split(loader *L, const char *pattern, bool literal, int behavior, bool invert,
                         const char *what) {
  pre_step *s = pre_add(L, PRE_SPLIT);
  if (!s) return oom(L);
  s->behavior = behavior, s->invert = invert;
  return (s->re = regex_compile(L, pattern, literal, what)) ? 0 : -1;
}

static int split_behavior(const char *b) {
  static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
  for (int i = 0; b && i < 5; i++)
    if (!strcmp(b, names[i])) return i;
  return -1;
}

static int load_split(loader *L, const cJSON *o) {
  const cJSON *pat = cJSON_GetObjectItemCaseSensitive(o, "pattern");
  const char *lit = jstr(pat, "String"), *re = jstr(pat, "Regex"), *beh = jstr(o, "behavior");
  int behavior = split_behavior(beh);
  if (!lit && !re) return pith_fail(L->err, "%s: Split pre-tokenizer without a pattern", L->path);
  if (behavior < 0)
    return pith_fail(L->err, "%s: Split behavior '%s' is not supported", L->path, beh ? beh : "(none)");
  return pre_add_split(L, lit ? lit : re, lit != NULL, behavior, jbool(o, "invert", false),
                       "Split pre-tokenizer");
}

static int prepend_scheme(const cJSON *o) {
  const char *p = jstr(o, "prepend_scheme");
  if (p) return !strcmp(p, "first") ? PREPEND_FIRST : !strcmp(p, "never") ? PREPEND_NEVER : PREPEND_ALWAYS;
  return jbool(o, "add_prefix_space", true) ? PREPEND_ALWAYS : PREPEND_NEVER;  // older files
}

static int load_metaspace(loader *L, const cJSON *o) {
  pre_step *s = pre_add(L, PRE_METASPACE);
  const char *r = jstr(o, "replacement");
  if (!s) return oom(L);
  if (!r) r = "\xe2\x96\x81";  // U+2581
  if (strlen(r) >= sizeof s->repl) return pith_fail(L->err, "%s: Metaspace replacement too long", L->path);
  s->repl_len = (int)strlen(r);
  memcpy(s->repl, r, (size_t)s->repl_len);
  s->prepend = prepend_scheme(o);
  s->split = jbool(o, "split", true);
  return 0;
}

static int load_pre_tokenizer(loader *L, const cJSON *o) {
  if (!o || cJSON_IsNull(o)) return 0;
  const char *type = jstr(o, "type");
  if (!type) return pith_fail(L->err, "%s: pre_tokenizer without a type", L->path);
  if (L->t->byte_level && strcmp(type, "Sequence"))
    return pith_fail(L->err, "%s: pre_tokenizer '%s' after ByteLevel is not supported", L->path, type);
  if (!strcmp(type, "Sequence")) {
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(o, "pretokenizers"))
      if (load_pre_tokenizer(L, e)) return -1;
    return 0;
  }
  if (!strcmp(type, "Split")) return load_split(L, o);
  if (!strcmp(type, "Metaspace")) return load_metaspace(L, o);
  if (!strcmp(type, "ByteLevel")) {
    if (jbool(o, "add_prefix_space", true) && !pre_add(L, PRE_PREFIX_SPACE)) return oom(L);
    if (jbool(o, "use_regex", true) &&
        pre_add_split(L, GPT2_PATTERN, false, SPLIT_ISOLATED, false, "ByteLevel pre-tokenizer"))
      return -1;
    if (!pre_add(L, PRE_BYTE_LEVEL)) return oom(L);
    L->t->byte_level = true;
    return 0;
  }
  if (!strcmp(type, "Digits"))
    return pre_add_split(L, "\\p{N}", false, jbool(o, "individual_digits", false) ? SPLIT_ISOLATED : SPLIT_CONTIGUOUS,
                         false, "Digits pre-tokenizer");
  if (!strcmp(type, "Whitespace"))
    return pre_add_split(L, "\\w+|[^\\w\\s]+", false, SPLIT_REMOVED, true, "Whitespace pre-tokenizer");
  if (!strcmp(type, "WhitespaceSplit"))
    return pre_add_split(L, "\\s", false, SPLIT_REMOVED, false, "WhitespaceSplit pre-tokenizer");
  return pith_fail(L->err, "%s: pre_tokenizer type '%s' is not supported", L->path, type);
}

static dec_step *dec_add(loader *L, dec_kind kind) {
  tokenizer *t = L->t;
  dec_step *s = realloc(t->dec, ((size_t)t->n_dec + 1) * sizeof *s);
  if (!s) return NULL;
  t->dec = s;
  s = &t->dec[t->n_dec++];
  *s = (dec_step){.kind = kind};
  return s;
}

static int load_decoder(loader *L, const cJSON *o) {
  if (!o || cJSON_IsNull(o)) return 0;
  const char *type = jstr(o, "type");
  dec_step *s;
  L->t->has_decoder = true;
  if (!type) return pith_fail(L->err, "%s: decoder without a type", L->path);
  if (!strcmp(type, "Sequence")) {
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(o, "decoders"))
      if (load_decoder(L, e)) return -1;
    return 0;
  }
  if (!strcmp(type, "ByteLevel")) return dec_add(L, DEC_BYTE_LEVEL) ? 0 : oom(L);
  if (!strcmp(type, "ByteFallback")) return dec_add(L, DEC_BYTE_FALLBACK) ? 0 : oom(L);
  if (!strcmp(type, "Fuse")) return dec_add(L, DEC_FUSE) ? 0 : oom(L);
  if (!strcmp(type, "Metaspace")) {
    const char *r = jstr(o, "replacement");
    if (!(s = dec_add(L, DEC_METASPACE)) || !(s->a = dup_str(r ? r : "\xe2\x96\x81", &s->a_len))) return oom(L);
    s->prepend = prepend_scheme(o);
    return 0;
  }
  if (!strcmp(type, "Replace")) {
    const char *lit = jstr(cJSON_GetObjectItemCaseSensitive(o, "pattern"), "String"), *content = jstr(o, "content");
    if (!lit || !content) return pith_fail(L->err, "%s: decoder Replace supports a String pattern only", L->path);
    if (!(s = dec_add(L, DEC_REPLACE)) || !(s->a = dup_str(lit, &s->a_len)) || !(s->b = dup_str(content, &s->b_len)))
      return oom(L);
    return 0;
  }
  if (!strcmp(type, "Strip")) {
    const char *content = jstr(o, "content");
    if (!(s = dec_add(L, DEC_STRIP)) || !(s->a = dup_str(content ? content : " ", &s->a_len))) return oom(L);
    s->start = jint(o, "start", 0), s->stop = jint(o, "stop", 0);
    return 0;
  }
  return pith_fail(L->err, "%s: decoder type '%s' is not supported", L->path, type);
}

// bos from a TemplateProcessing post-processor whose single template starts with a special token.
static int32_t template_bos(tokenizer *t, const cJSON *post) {
  const char *type = jstr(post, "type");
  if (!type) return -1;
  if (!strcmp(type, "Sequence")) {
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(post, "processors")) {
      int32_t id = template_bos(t, e);
      if (id >= 0) return id;
    }
    return -1;
  }
  if (strcmp(type, "TemplateProcessing")) return -1;
  const cJSON *single = cJSON_GetObjectItemCaseSensitive(post, "single");
  const cJSON *first = cJSON_GetArrayItem(single, 0);
  const char *name = jstr(cJSON_GetObjectItemCaseSensitive(first, "SpecialToken"), "id");
  return name ? tokenizer_token_id(t, name) : -1;
}

// ---------------------------------------------------------------------------------------------
// Loading: bos / eos / pad from tokenizer_config.json, generation_config.json, config.json
// ---------------------------------------------------------------------------------------------

// A token in tokenizer_config: "text" or {"content": "text", ...}. -1 when absent or unknown.
static int32_t config_token(tokenizer *t, const cJSON *cfg, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
  const char *s = cJSON_IsString(v) ? v->valuestring : jstr(v, "content");
  return s ? tokenizer_token_id(t, s) : -1;
}

static void add_eos(tokenizer *t, int32_t id) {
  if (id < 0 || id >= t->n_vocab || t->n_eos == (int)(sizeof t->eos / sizeof t->eos[0])) return;
  for (int i = 0; i < t->n_eos; i++)
    if (t->eos[i] == id) return;
  t->eos[t->n_eos++] = id;
}

// bos_token_id / eos_token_id (int or list) / pad_token_id of generation_config or config.json.
static void ids_from_config(tokenizer *t, const cJSON *cfg) {
  const cJSON *eos = cJSON_GetObjectItemCaseSensitive(cfg, "eos_token_id"), *e;
  if (t->bos < 0) t->bos = jint(cfg, "bos_token_id", -1);
  if (t->pad < 0) t->pad = jint(cfg, "pad_token_id", -1);
  if (cJSON_IsNumber(eos)) add_eos(t, eos->valueint);
  const cJSON *list = cJSON_IsArray(eos) ? eos : NULL;
  cJSON_ArrayForEach(e, list) if (cJSON_IsNumber(e)) add_eos(t, e->valueint);
}

static int load_tokenizer_config(loader *L, const cJSON *cfg) {
  tokenizer *t = L->t;
  const cJSON *dec = cJSON_GetObjectItemCaseSensitive(cfg, "added_tokens_decoder"), *e;
  if (!cJSON_IsObject(dec)) dec = NULL;
  cJSON_ArrayForEach(e, dec) {
    char *end;
    long id = strtol(e->string, &end, 10);
    if (*end || id < 0 || id > 100000000) return pith_fail(L->err, "%s: added_tokens_decoder key '%s' is not an id", L->path, e->string);
    if (add_token_json(L, e, (int32_t)id)) return -1;
  }
  t->bos = config_token(t, cfg, "bos_token");
  t->pad = config_token(t, cfg, "pad_token");
  add_eos(t, config_token(t, cfg, "eos_token"));
  const cJSON *add_bos = cJSON_GetObjectItemCaseSensitive(cfg, "add_bos_token");
  if (cJSON_IsBool(add_bos)) t->adds_bos = cJSON_IsTrue(add_bos);
  t->has_config = true;
  return 0;
}

// Read dir/name (a JSON object) when present and pass it to fn; a broken file is an error.
static int with_json_beside(loader *L, const char *dir, const char *name,
                            int (*fn)(loader *, const cJSON *)) {
  char path[4096];
  if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path) return 0;
  bool missing;
  cJSON *root = read_json(path, &missing, L->err);
  if (missing) return 0;
  if (!root) return -1;
  loader sub = {L->t, path, L->err};
  int rc = add_file(L->t, path) ? oom(&sub) : fn(&sub, root);
  cJSON_Delete(root);
  return rc;
}

static int load_generation_config(loader *L, const cJSON *cfg) {
  ids_from_config(L->t, cfg);
  return 0;
}

// The specials of a tokenizer loaded from a file in dir; template_bos_id: from tokenizer.json.
static int load_specials(loader *L, const char *dir, int32_t template_bos_id) {
  tokenizer *t = L->t;
  if (with_json_beside(L, dir, "tokenizer_config.json", load_tokenizer_config)) return -1;
  if (with_json_beside(L, dir, "generation_config.json", load_generation_config)) return -1;
  if (with_json_beside(L, dir, "config.json", load_generation_config)) return -1;
  if (t->bos < 0) t->bos = template_bos_id;
  if (t->adds_bos < 0) t->adds_bos = template_bos_id >= 0;  // the post-processor adds one
  int32_t eot = tokenizer_token_id(t, "<|endoftext|>");      // GPT-2 without configs
  if (t->bos < 0 && !t->has_config) t->bos = eot;
  if (t->n_eos == 0) add_eos(t, eot);
  if (t->bos >= t->n_vocab) t->bos = -1;
  if (t->pad >= t->n_vocab) t->pad = -1;
  return 0;
}

// Build the added-token indices once all added tokens are known.
static int finish_added(loader *L) {
  if (added_index_build(L->t, &L->t->added_raw, false) || added_index_build(L->t, &L->t->added_norm, true))
    return oom(L);
  return 0;
}

static void dir_of(const char *path, char *dir, size_t size) {
  const char *slash = strrchr(path, '/');
  if (!slash) snprintf(dir, size, ".");
  else if (slash == path) snprintf(dir, size, "/");
  else snprintf(dir, size, "%.*s", (int)(slash - path), path);
}

// ---------------------------------------------------------------------------------------------
// Loading: the three formats
// ---------------------------------------------------------------------------------------------

static int load_hf_json(loader *L, const char *text, size_t len) {
  tokenizer *t = L->t;
  cJSON *root = parse_json(text, len, L->path, L->err);
  if (!root) return -1;
  const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens"), *e;
  int rc = 0;
  if (!cJSON_IsObject(root)) rc = pith_fail(L->err, "%s: not a tokenizer.json (no JSON object)", L->path);
  if (!rc) rc = load_model(L, cJSON_GetObjectItemCaseSensitive(root, "model"), added);
  if (!rc && cJSON_IsArray(added))
    cJSON_ArrayForEach(e, added) if (!rc) rc = add_token_json(L, e, jint(e, "id", -1));
  if (!rc) rc = load_normalizer(L, cJSON_GetObjectItemCaseSensitive(root, "normalizer"));
  if (!rc) rc = load_pre_tokenizer(L, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"));
  if (!rc) rc = load_decoder(L, cJSON_GetObjectItemCaseSensitive(root, "decoder"));
  int32_t tbos = rc ? -1 : template_bos(t, cJSON_GetObjectItemCaseSensitive(root, "post_processor"));
  cJSON_Delete(root);
  char dir[4096];
  dir_of(L->path, dir, sizeof dir);
  if (!rc) rc = load_specials(L, dir, tbos);
  return rc ? -1 : finish_added(L);
}

// merges.txt: one "a b" a line, after an optional "#version" line.
static int load_merges_txt(loader *L, const char *path) {
  size_t len;
  char *text = pith_read_file(path, &len, L->err);
  if (!text) return -1;
  loader sub = {L->t, path, L->err};
  bytes scratch = {0};
  int rc = pairmap_init(&L->t->merges, len / 8 + 1) ? oom(&sub) : 0;
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

// A GPT-2 folder: vocab.json + merges.txt, byte-level pre-tokenizer and decoder.
static int load_gpt2_folder(loader *L, const char *text, size_t len, const char *dir) {
  tokenizer *t = L->t;
  char merges[4200];
  snprintf(merges, sizeof merges, "%s/merges.txt", dir);
  cJSON *vocab = parse_json(text, len, L->path, L->err);
  if (!vocab) return -1;
  int rc = load_vocab(L, vocab, NULL);
  cJSON_Delete(vocab);
  if (!rc) rc = add_file(t, merges) ? oom(L) : load_merges_txt(L, merges);
  if (!rc) rc = pre_add_split(L, GPT2_PATTERN, false, SPLIT_ISOLATED, false, "ByteLevel pre-tokenizer");
  if (!rc && (!pre_add(L, PRE_BYTE_LEVEL) || !dec_add(L, DEC_BYTE_LEVEL))) rc = oom(L);
  t->byte_level = t->has_decoder = true;
  int32_t eot = strmap_get(&t->vocab, t->pool, "<|endoftext|>", 13);
  if (!rc && eot >= 0) rc = add_token(L, eot, "<|endoftext|>", true, false, false, false, false);
  if (!rc) rc = load_specials(L, dir, -1);
  return rc ? -1 : finish_added(L);
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
  int rc = !order || !rank || pairmap_init(&t->merges, (size_t)t->n_vocab * 4) ? oom(L) : 0;
  for (int32_t i = 0; !rc && i < t->n_vocab; i++) order[i] = (scored){score[i], i};
  if (!rc) qsort(order, (size_t)t->n_vocab, sizeof *order, cmp_scored);
  for (int32_t i = 0, r = 0; !rc && i < t->n_vocab; i++) {
    if (i > 0 && order[i].score != order[i - 1].score) r++;
    rank[order[i].id] = r;
  }
  for (int32_t m = 0; !rc && m < t->n_vocab; m++) {
    const char *p = t->pool + t->pieces[m].off;
    uint32_t n = t->pieces[m].len;
    if (strmap_get(&t->vocab, t->pool, p, n) != m) continue;  // a duplicate piece
    for (uint32_t k = 1; !rc && k < n; k++) {
      int32_t a = strmap_get(&t->vocab, t->pool, p, k), b = strmap_get(&t->vocab, t->pool, p + k, n - k);
      if (a >= 0 && b >= 0 && pairmap_put(&t->merges, a, b, rank[m], m)) rc = oom(L);
    }
  }
  free(order);
  free(rank);
  return rc;
}

// llama2.c tokenizer.bin: int32 max_token_length, then per token f32 score, int32 len, bytes.
static int load_llama2c(loader *L, const char *data, size_t len) {
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
  if (!score || alloc_vocab(t, n) || strmap_init(&t->vocab, (size_t)n)) { free(score); return oom(L); }
  p = 4;
  for (int32_t i = 0; i < n; i++) {
    memcpy(&score[i], data + p, 4);
    memcpy(&tl, data + p + 4, 4);
    if (pool_add(t, data + p + 8, (size_t)tl, &t->pieces[i]) ||
        strmap_put(&t->vocab, t->pool, t->pieces[i], i, false)) { free(score); return oom(L); }
    p += 8 + (size_t)tl;
  }
  int rc = llama2c_merges(L, score);
  free(score);
  t->kind = TOK_LLAMA2C;
  t->space_id = strmap_get(&t->vocab, t->pool, " ", 1);
  for (int b = 0; b < 256 && b + 3 < n; b++) t->byte_token[b] = b + 3;
  t->flags[0] = t->flags[1] = t->flags[2] = TOK_SPECIAL;  // <unk>, <s>, </s>
  t->bos = 1, t->adds_bos = 1;
  add_eos(t, 2);
  return rc ? -1 : finish_added(L);
}

static bool is_file(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

// Which file of a folder to load: tokenizer.json, vocab.json (+ merges.txt), tokenizer.bin.
static int pick_in_folder(const char *dir, char *out, size_t size, pith_err *err) {
  static const char *names[] = {"tokenizer.json", "vocab.json", "tokenizer.bin"};
  for (int i = 0; i < 3; i++) {
    if (snprintf(out, size, "%s/%s", dir, names[i]) >= (int)size) break;
    if (is_file(out)) return 0;
  }
  return pith_fail(err, "%s: no tokenizer.json, vocab.json + merges.txt or tokenizer.bin in this folder", dir);
}

static int load_file(loader *L, const char *text, size_t len) {
  char dir[4096], merges[4200];
  dir_of(L->path, dir, sizeof dir);
  snprintf(merges, sizeof merges, "%s/merges.txt", dir);
  size_t i = 0;
  while (i < len && (text[i] == ' ' || text[i] == '\n' || text[i] == '\r' || text[i] == '\t')) i++;
  const char *base = strrchr(L->path, '/');
  base = base ? base + 1 : L->path;
  if (i < len && text[i] == '{') {
    if (!strcmp(base, "vocab.json") && is_file(merges)) return load_gpt2_folder(L, text, len, dir);
    return load_hf_json(L, text, len);
  }
  return load_llama2c(L, text, len);
}

tokenizer *tokenizer_load(const char *path, pith_err *err) {
  struct stat st;
  char file[4096];
  if (!path) {
    pith_fail(err, "tokenizer_load: no path");
    return NULL;
  }
  if (stat(path, &st) != 0) {
    pith_fail(err, "%s: cannot open: %s", path, strerror(errno));
    return NULL;
  }
  if (S_ISDIR(st.st_mode) && pick_in_folder(path, file, sizeof file, err)) return NULL;
  if (!S_ISDIR(st.st_mode) && snprintf(file, sizeof file, "%s", path) >= (int)sizeof file) {
    pith_fail(err, "%s: path too long", path);
    return NULL;
  }
  size_t len;
  char *text = pith_read_file(file, &len, err);
  if (!text) return NULL;
  tokenizer *t = tokenizer_new();
  loader L = {t, file, err};
  int rc = !t || add_file(t, file) ? oom(&L) : load_file(&L, text, len);
  free(text);
  if (rc) {
    tokenizer_free(t);
    return NULL;
  }
  return t;
}

// ---------------------------------------------------------------------------------------------
// Encoding: the per-call context
// ---------------------------------------------------------------------------------------------

typedef struct {
  size_t start, end;
  int32_t id;  // an added token, or -1 for text between them
} seg;

typedef struct {
  seg *p;
  size_t n, cap;
} seg_list;

typedef struct {
  uint32_t off, len;  // in enc.work
  bool at_start;      // begins at offset 0 of the whole input (Metaspace prepend_scheme "first")
} span;

typedef struct {
  span *p;
  size_t n, cap;
} span_list;

typedef struct {
  uint32_t start, end;
  bool match;
} interval;

typedef struct {
  int32_t id, prev, next;
  uint32_t len;  // bytes covered; 0 once merged into the symbol on its left
} bpe_sym;

typedef struct {
  const tokenizer *t;
  ids_vec out;
  seg_list segs, subsegs;       // added-token splits of the raw and of the normalized text
  bytes norm[2];                // normalizer steps write here in turn
  bytes work;                   // contents of the pre-tokens
  span_list spans, spans2;      // pre-tokens before and after a step
  interval *iv;                 // regex split intervals of one pre-token
  size_t n_iv, cap_iv;
  bytes mapped, key;            // a byte-level mapped word; a vocabulary lookup key
  bpe_sym *sym;
  size_t n_sym, cap_sym;
  uint64_t *heap;               // (rank << 32 | position) of candidate merges
  size_t n_heap, cap_heap;
  pcre2_match_data *md;
  char fail[200];               // what went wrong besides memory (a regex error); "" when none
} enc;

static void enc_free(enc *e) {
  free(e->out.p);
  free(e->segs.p);
  free(e->subsegs.p);
  free(e->norm[0].p);
  free(e->norm[1].p);
  free(e->work.p);
  free(e->spans.p);
  free(e->spans2.p);
  free(e->iv);
  free(e->mapped.p);
  free(e->key.p);
  free(e->sym);
  free(e->heap);
  pcre2_match_data_free(e->md);
}

static int seg_push(seg_list *l, size_t start, size_t end, int32_t id) {
  if (l->n == l->cap && grow(&l->p, &l->cap, l->n + 1, sizeof *l->p)) return -1;
  l->p[l->n++] = (seg){start, end, id};
  return 0;
}

static int span_push(span_list *l, size_t off, size_t len, bool at_start) {
  if (!len) return 0;  // HF drops empty pieces
  if (l->n == l->cap && grow(&l->p, &l->cap, l->n + 1, sizeof *l->p)) return -1;
  l->p[l->n++] = (span){(uint32_t)off, (uint32_t)len, at_start};
  return 0;
}

static int iv_push(enc *e, size_t start, size_t end, bool match) {
  if (e->n_iv == e->cap_iv && grow(&e->iv, &e->cap_iv, e->n_iv + 1, sizeof *e->iv)) return -1;
  e->iv[e->n_iv++] = (interval){(uint32_t)start, (uint32_t)end, match};
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Encoding: added tokens
// ---------------------------------------------------------------------------------------------

// The longest added token of ix starting at s[i], or -1.
static int match_added_at(const tokenizer *t, const added_index *ix, const char *s, size_t n, size_t i) {
  uint8_t b = (uint8_t)s[i];
  for (int32_t k = ix->first[b]; k < ix->first[b + 1]; k++) {
    const added_token *a = &t->added[ix->order[k]];
    if (a->s.len <= n - i && !memcmp(t->pool + a->s.off, s + i, a->s.len)) return ix->order[k];
  }
  return -1;
}

// single_word tokens match only when no word character touches them.
static bool single_word_ok(const char *s, size_t n, size_t start, size_t end) {
  size_t l, p = start ? utf8_prev(s, start) : 0;
  if (start > 0 && is_word_char(utf8_decode(s + p, start - p, &l))) return false;
  return end >= n || !is_word_char(utf8_decode(s + end, n - end, &l));
}

// Split s into added tokens of ix (leftmost, longest) and the text between them.
static int split_added(const tokenizer *t, const added_index *ix, const char *s, size_t n, seg_list *out) {
  size_t prev = 0, i = 0, l;
  out->n = 0;
  while (ix->first[256] > 0 && i < n) {
    uint8_t b = (uint8_t)s[i];
    int k = ix->first[b] < ix->first[b + 1] ? match_added_at(t, ix, s, n, i) : -1;
    if (k < 0) { i++; continue; }
    const added_token *a = &t->added[k];
    size_t start = i, stop = i + a->s.len;
    i = stop;
    if (a->single_word && !single_word_ok(s, n, start, stop)) continue;
    while (a->lstrip && start > prev && is_unicode_space(utf8_decode(s + utf8_prev(s, start), start - utf8_prev(s, start), &l)))
      start = utf8_prev(s, start);
    while (a->rstrip && stop < n && is_unicode_space(utf8_decode(s + stop, n - stop, &l))) stop += l;
    if ((start > prev && seg_push(out, prev, start, -1)) || seg_push(out, start, stop, a->id)) return -1;
    prev = i = stop;
  }
  if (prev < n && seg_push(out, prev, n, -1)) return -1;
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Encoding: normalizer
// ---------------------------------------------------------------------------------------------

// Next match of re in s[pos..n): 1 and [*ms, *me), 0 when none, -1 on a matching error.
static int regex_next(enc *e, const pcre2_code *re, const char *s, size_t n, size_t pos, size_t *ms, size_t *me) {
  int rc = pcre2_match(re, (PCRE2_SPTR)s, n, pos, 0, e->md, NULL);
  if (rc == PCRE2_ERROR_NOMATCH) return 0;
  if (rc < 0) {
    PCRE2_UCHAR msg[128];
    pcre2_get_error_message(rc, msg, sizeof msg);
    snprintf(e->fail, sizeof e->fail, "regex matching failed: %s", (char *)msg);
    return -1;
  }
  PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->md);
  *ms = ov[0], *me = ov[1];
  return 1;
}

static int replace_all(enc *e, const norm_step *st, const char *s, size_t n, bytes *out) {
  size_t pos = 0, ms, me;
  for (;;) {
    int found;
    if (st->re) {
      found = regex_next(e, st->re, s, n, pos, &ms, &me);
      if (found < 0) return -1;
      if (found && me == ms) {  // an empty match: keep one character, look further
        size_t l = ms < n ? utf8_len(s + ms, n - ms) : 0;
        if (bytes_put(out, s + pos, ms - pos) || bytes_put(out, st->b, st->b_len) || bytes_put(out, s + ms, l)) return -1;
        if ((pos = ms + l) >= n) return 0;
        continue;
      }
    } else {
      const char *hit = st->a_len ? memmem(s + pos, n - pos, st->a, st->a_len) : NULL;
      found = hit != NULL;
      if (hit) ms = (size_t)(hit - s), me = ms + st->a_len;
    }
    if (!found) return bytes_put(out, s + pos, n - pos);
    if (bytes_put(out, s + pos, ms - pos) || bytes_put(out, st->b, st->b_len)) return -1;
    pos = me;
  }
}

static int strip_spaces(const norm_step *st, const char *s, size_t n, bytes *out) {
  size_t a = 0, b = n, l;
  while (st->left && a < b && is_unicode_space(utf8_decode(s + a, b - a, &l))) a += l;
  while (st->right && b > a && is_unicode_space(utf8_decode(s + utf8_prev(s, b), b - utf8_prev(s, b), &l)))
    b = utf8_prev(s, b);
  return bytes_put(out, s + a, b - a);
}

// Apply the normalizer to s; *out points into e's buffers (or at s when there is nothing to do).
static int normalize(enc *e, const char *s, size_t n, const char **out, size_t *out_n) {
  const tokenizer *t = e->t;
  int cur = 0;
  for (int i = 0; i < t->n_norm; i++) {
    const norm_step *st = &t->norm[i];
    bytes *dst = &e->norm[cur];
    dst->n = 0;
    int rc = 0;
    switch (st->kind) {
      case NORM_PREPEND: rc = n ? bytes_put(dst, st->a, st->a_len) || bytes_put(dst, s, n) : bytes_put(dst, "", 0); break;
      case NORM_REPLACE: rc = replace_all(e, st, s, n, dst); break;
      case NORM_STRIP: rc = strip_spaces(st, s, n, dst); break;
      case NORM_NFC: rc = bytes_put(dst, s, n); break;  // identity: exact for text already in NFC
    }
    if (rc) return -1;
    s = dst->p, n = dst->n, cur ^= 1;
  }
  *out = s, *out_n = n;
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Encoding: pre-tokenizer
// ---------------------------------------------------------------------------------------------

// Turn the intervals e->iv of pre-token `parent` into pieces, as HF's split behaviors do.
static int emit_intervals(enc *e, span parent, int behavior, bool invert) {
  interval *v = e->iv;
  size_t n = e->n_iv, w = 0, lo = 0;
  bool prev = false;
  for (size_t r = 0; invert && r < n; r++) v[r].match = !v[r].match;
  if (behavior == SPLIT_MERGED_NEXT) {  // a delimiter joins the piece after it
    w = n;
    for (size_t r = n; r-- > 0;) {
      bool m = v[r].match;
      if (m && !prev && w < n) v[w].start = v[r].start;
      else v[--w] = v[r];
      prev = m;
    }
    lo = w, w = n;
  } else if (behavior != SPLIT_ISOLATED) {
    for (size_t r = 0; r < n; r++) {
      bool m = v[r].match, join = behavior == SPLIT_MERGED_PREV ? m && !prev : behavior == SPLIT_CONTIGUOUS && m == prev;
      if (behavior == SPLIT_REMOVED) { if (!m) v[w++] = v[r]; }
      else if (join && w > 0) v[w - 1].end = v[r].end;
      else v[w++] = v[r];
      prev = m;
    }
  } else {
    w = n;
  }
  for (size_t i = lo; i < w; i++)
    if (span_push(&e->spans2, parent.off + v[i].start, v[i].end - v[i].start, parent.at_start && v[i].start == 0))
      return -1;
  return 0;
}

static int split_regex(enc *e, const pre_step *st, span sp) {
  const char *s = e->work.p + sp.off;
  size_t n = sp.len, pos = 0, prev = 0, ms, me;
  e->n_iv = 0;
  while (pos <= n) {
    int found = regex_next(e, st->re, s, n, pos, &ms, &me);
    if (found < 0) return -1;
    if (!found) break;
    if (me == ms) {  // empty matches split nothing
      pos = me + (me < n ? utf8_len(s + me, n - me) : 1);
      continue;
    }
    if ((ms > prev && iv_push(e, prev, ms, false)) || iv_push(e, ms, me, true)) return -1;
    prev = pos = me;
  }
  if (prev < n && iv_push(e, prev, n, false)) return -1;
  return emit_intervals(e, sp, st->behavior, st->invert);
}

// Metaspace: spaces become the replacement, which is prepended per the scheme; optionally split
// so that each replacement starts a piece.
static int metaspace(enc *e, const pre_step *st, span sp) {
  size_t rl = (size_t)st->repl_len, start = e->work.n;
  if (grow(&e->work.p, &e->work.cap, e->work.n + (sp.len + 1) * rl + 1, 1)) return -1;
  const char *s = e->work.p + sp.off;
  char *d = e->work.p + e->work.n, *d0 = d;
  bool begins = s[0] == ' ' || (sp.len >= rl && !memcmp(s, st->repl, rl));
  if (!begins && (st->prepend == PREPEND_ALWAYS || (st->prepend == PREPEND_FIRST && sp.at_start)))
    memcpy(d, st->repl, rl), d += rl;
  for (size_t i = 0; i < sp.len; i++) {
    if (s[i] == ' ') memcpy(d, st->repl, rl), d += rl;
    else *d++ = s[i];
  }
  size_t len = (size_t)(d - d0);
  e->work.n += len;
  span whole = {(uint32_t)start, (uint32_t)len, sp.at_start};
  if (!st->split) return span_push(&e->spans2, start, len, sp.at_start);
  e->n_iv = 0;
  size_t prev = 0;
  for (size_t i = 0; i + rl <= len; i++) {
    if (memcmp(d0 + i, st->repl, rl)) continue;
    if ((i > prev && iv_push(e, prev, i, false)) || iv_push(e, i, i + rl, true)) return -1;
    prev = i + rl, i += rl - 1;
  }
  if (prev < len && iv_push(e, prev, len, false)) return -1;
  return emit_intervals(e, whole, SPLIT_MERGED_NEXT, false);
}

static int prefix_space(enc *e, span sp) {
  if (e->work.p[sp.off] == ' ') return span_push(&e->spans2, sp.off, sp.len, sp.at_start);
  size_t start = e->work.n;
  if (grow(&e->work.p, &e->work.cap, e->work.n + sp.len + 2, 1)) return -1;
  e->work.p[e->work.n++] = ' ';
  memcpy(e->work.p + e->work.n, e->work.p + sp.off, sp.len);
  e->work.n += sp.len;
  return span_push(&e->spans2, start, sp.len + 1, sp.at_start);
}

static int bpe_word(enc *e, const char *w, size_t n);

// Pre-tokenize s and BPE-encode each piece into e->out.
static int pre_tokenize(enc *e, const char *s, size_t n, bool at_start) {
  const tokenizer *t = e->t;
  e->work.n = e->spans.n = 0;
  if (bytes_put(&e->work, s, n) || span_push(&e->spans, 0, n, at_start)) return -1;
  for (int i = 0; i < t->n_pre; i++) {
    const pre_step *st = &t->pre[i];
    if (st->kind == PRE_BYTE_LEVEL) continue;  // the mapping happens in bpe_word
    e->spans2.n = 0;
    for (size_t k = 0; k < e->spans.n; k++) {
      span sp = e->spans.p[k];
      int rc = st->kind == PRE_SPLIT ? split_regex(e, st, sp)
             : st->kind == PRE_METASPACE ? metaspace(e, st, sp) : prefix_space(e, sp);
      if (rc) return -1;
    }
    span_list tmp = e->spans;
    e->spans = e->spans2, e->spans2 = tmp;
  }
  for (size_t k = 0; k < e->spans.n; k++)
    if (bpe_word(e, e->work.p + e->spans.p[k].off, e->spans.p[k].len)) return -1;
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Encoding: BPE
// ---------------------------------------------------------------------------------------------

static int sym_push(enc *e, int32_t id, uint32_t len) {
  if (e->n_sym == e->cap_sym && grow(&e->sym, &e->cap_sym, e->n_sym + 1, sizeof *e->sym)) return -1;
  int32_t k = (int32_t)e->n_sym++;
  e->sym[k] = (bpe_sym){id, k - 1, -1, len};
  if (k > 0) e->sym[k - 1].next = k;
  return 0;
}

static int heap_push(enc *e, uint64_t key) {
  if (e->n_heap == e->cap_heap && grow(&e->heap, &e->cap_heap, e->n_heap + 1, sizeof *e->heap)) return -1;
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
    if (ids_push(&e->out, s[i].id)) return -1;
  return 0;
}

// Initial symbols of a word: its characters (with the model's prefix/suffix), else byte
// fallback tokens, else unk (fused when fuse_unk), else nothing (as HF does without an unk).
static int syms_from_chars(enc *e, const char *s, size_t n) {
  const tokenizer *t = e->t;
  uint32_t unk_len = 0;
  for (size_t i = 0, cl; i < n; i += cl) {
    cl = utf8_len(s + i, n - i);
    bytes *k = &e->key;
    k->n = 0;
    if ((i > 0 && t->cont_prefix && bytes_put(k, t->cont_prefix, strlen(t->cont_prefix))) || bytes_put(k, s + i, cl) ||
        (i + cl == n && t->end_suffix && bytes_put(k, t->end_suffix, strlen(t->end_suffix))))
      return -1;
    int32_t id = strmap_get(&t->vocab, t->pool, k->p, k->n);
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

static int bpe_word(enc *e, const char *w, size_t n) {
  const tokenizer *t = e->t;
  bool fast = t->byte_level && t->bytes_in_vocab && !t->cont_prefix && !t->end_suffix;
  e->n_sym = 0;
  if (!n) return 0;
  if (t->byte_level && (t->ignore_merges || !fast)) {  // the word in byte-level characters
    if (grow(&e->mapped.p, &e->mapped.cap, 2 * n + 1, 1)) return -1;
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
    int32_t id = strmap_get(&t->vocab, t->pool, word, word_n);
    if (id >= 0) return ids_push(&e->out, id);
  }
  if (fast) {
    for (size_t i = 0; i < n; i++)
      if (sym_push(e, t->byte_char_id[(uint8_t)w[i]], 1)) return -1;
  } else if (syms_from_chars(e, word, word_n)) {
    return -1;
  }
  return bpe_merge(e);
}

// ---------------------------------------------------------------------------------------------
// Encoding: entry points
// ---------------------------------------------------------------------------------------------

static int encode_hf(enc *e, const char *text, size_t len) {
  const tokenizer *t = e->t;
  if (split_added(t, &t->added_raw, text, len, &e->segs)) return -1;
  for (size_t i = 0; i < e->segs.n; i++) {
    seg g = e->segs.p[i];
    const char *s;
    size_t n;
    if (g.id >= 0) {
      if (ids_push(&e->out, g.id)) return -1;
      continue;
    }
    if (normalize(e, text + g.start, g.end - g.start, &s, &n) || split_added(t, &t->added_norm, s, n, &e->subsegs))
      return -1;
    for (size_t j = 0; j < e->subsegs.n; j++) {
      seg h = e->subsegs.p[j];
      int rc = h.id >= 0 ? ids_push(&e->out, h.id) : pre_tokenize(e, s + h.start, h.end - h.start, g.start == 0 && h.start == 0);
      if (rc) return -1;
    }
  }
  return 0;
}

// llama2.c's encode: a " " token first (the dummy prefix), then each UTF-8 character (at most 4
// bytes) as a token or as its bytes (id = byte + 3), then merges by score.
static int encode_llama2c(enc *e, const char *s, size_t n) {
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
    int32_t id = strmap_get(&t->vocab, t->pool, buf, len);
    for (size_t j = 0; id < 0 && j < len; j++)
      if (t->byte_token[(uint8_t)buf[j]] >= 0 && sym_push(e, t->byte_token[(uint8_t)buf[j]], 1)) return -1;
    if (id >= 0 && sym_push(e, id, (uint32_t)len)) return -1;
    len = 0;
  }
  return bpe_merge(e);
}

int tokenizer_encode(const tokenizer *t, const char *text, size_t len, int add_bos, int32_t **ids,
                     size_t *n_ids, pith_err *err) {
  enc e = {.t = t};
  *ids = NULL, *n_ids = 0;
  if (!text && len) return pith_fail(err, "%s: encode: NULL text", t->files[0]);
  e.md = pcre2_match_data_create(1, NULL);
  int rc = e.md ? 0 : -1;
  if (!rc && add_bos && t->bos >= 0) rc = ids_push(&e.out, t->bos);
  if (!rc && len) rc = t->kind == TOK_LLAMA2C ? encode_llama2c(&e, text, len) : encode_hf(&e, text, len);
  if (!rc && !e.out.p) rc = grow(&e.out.p, &e.out.cap, 1, sizeof *e.out.p);
  if (rc) {
    pith_fail(err, "%s: encode: %s", t->files[0], e.fail[0] ? e.fail : "out of memory");
  } else {
    *ids = e.out.p, *n_ids = e.out.n;
    e.out.p = NULL;
  }
  enc_free(&e);
  return rc;
}

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

// Append s to out with each invalid UTF-8 run replaced by U+FFFD (Rust's from_utf8_lossy).
static int put_lossy(bytes *out, const char *s, size_t n) {
  for (size_t i = 0; i < n;) {
    int bad = 0, l = utf8_char((const uint8_t *)s + i, n - i, &bad);
    if (l ? bytes_put(out, s + i, (size_t)l) : bytes_put(out, "\xef\xbf\xbd", 3)) return -1;
    i += l ? (size_t)l : (size_t)bad;
  }
  return 0;
}

// The decoder works on a list of token strings, as HF's decode_chain does.
typedef struct {
  size_t off, len;  // in tok_list.buf
} tl_item;

typedef struct {
  bytes buf;        // the tokens back to back
  tl_item *it;
  size_t n, cap;
} tok_list;

static int tl_push(tok_list *l, const char *s, size_t n) {
  if (l->n == l->cap && grow(&l->it, &l->cap, l->n + 1, sizeof *l->it)) return -1;
  l->it[l->n++] = (tl_item){l->buf.n, n};
  return bytes_put(&l->buf, s, n);
}

static void tl_free(tok_list *l) {
  free(l->buf.p);
  free(l->it);
}

#define TL_STR(l, i) ((l)->buf.p + (l)->it[i].off)
#define TL_LEN(l, i) ((l)->it[i].len)

// ByteLevel: characters back to bytes (a token with a foreign character keeps its own bytes),
// all tokens joined, then made valid UTF-8.
static int dec_byte_level(const tokenizer *t, const tok_list *in, tok_list *out) {
  bytes raw = {0}, fixed = {0};
  int rc = bytes_put(&raw, "", 0);
  for (size_t i = 0; !rc && i < in->n; i++) {
    const char *s = TL_STR(in, i);
    size_t n = TL_LEN(in, i), start = raw.n, l;
    for (size_t j = 0; !rc && j < n; j += l) {
      uint32_t cp = utf8_decode(s + j, n - j, &l);
      int b = cp < 512 && l > 0 ? t->char_byte[cp] : -1;
      if (b < 0) {
        raw.n = start;
        rc = bytes_put(&raw, s, n);
        break;
      }
      char c = (char)b;
      rc = bytes_put(&raw, &c, 1);
    }
  }
  if (!rc) rc = bytes_put(&fixed, "", 0) || put_lossy(&fixed, raw.p, raw.n) || tl_push(out, fixed.p, fixed.n);
  free(raw.p);
  free(fixed.p);
  return rc;
}

// <0xNN> tokens in a row become their bytes (or one U+FFFD per byte when not valid UTF-8).
static int flush_bytes(bytes *run, tok_list *out) {
  if (!run->n) return 0;
  bool valid = true;
  for (size_t i = 0; i < run->n && valid;) {
    int bad, l = utf8_char((const uint8_t *)run->p + i, run->n - i, &bad);
    valid = l > 0, i += (size_t)l;
  }
  int rc = valid ? tl_push(out, run->p, run->n) : 0;
  for (size_t i = 0; !valid && !rc && i < run->n; i++) rc = tl_push(out, "\xef\xbf\xbd", 3);
  run->n = 0;
  return rc;
}

static int byte_token_value(const char *s, size_t n) {
  if (n != 6 || memcmp(s, "<0x", 3) || s[5] != '>') return -1;
  int v = 0;
  for (int i = 3; i < 5; i++) {
    char c = s[i];
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (d < 0) return -1;
    v = v * 16 + d;
  }
  return v;
}

static int dec_byte_fallback(const tok_list *in, tok_list *out) {
  bytes run = {0};
  int rc = 0;
  for (size_t i = 0; !rc && i < in->n; i++) {
    int v = byte_token_value(TL_STR(in, i), TL_LEN(in, i));
    char c = (char)v;
    rc = v >= 0 ? bytes_put(&run, &c, 1) : flush_bytes(&run, out) || tl_push(out, TL_STR(in, i), TL_LEN(in, i));
  }
  if (!rc) rc = flush_bytes(&run, out);
  free(run.p);
  return rc;
}

// Per token: pattern a -> b (Replace), or the Metaspace replacement -> ' ' (dropped in the first
// token unless prepend_scheme is "never", as HF does).
static int dec_replace(const dec_step *st, const tok_list *in, tok_list *out) {
  bytes tok = {0};
  int rc = 0;
  for (size_t i = 0; !rc && i < in->n; i++) {
    const char *s = TL_STR(in, i), *hit;
    size_t n = TL_LEN(in, i), pos = 0;
    bool drop = st->kind == DEC_METASPACE && i == 0 && st->prepend != PREPEND_NEVER;
    const char *to = st->kind == DEC_METASPACE ? (drop ? "" : " ") : st->b;
    size_t to_n = st->kind == DEC_METASPACE ? (drop ? 0 : 1) : st->b_len;
    tok.n = 0;
    rc = bytes_put(&tok, "", 0);
    while (!rc && st->a_len && (hit = memmem(s + pos, n - pos, st->a, st->a_len))) {
      rc = bytes_put(&tok, s + pos, (size_t)(hit - s) - pos) || bytes_put(&tok, to, to_n);
      pos = (size_t)(hit - s) + st->a_len;
    }
    if (!rc) rc = bytes_put(&tok, s + pos, n - pos) || tl_push(out, tok.p, tok.n);
  }
  free(tok.p);
  return rc;
}

// Strip: up to `start` leading and `stop` trailing copies of the content character, per token.
static int dec_strip(const dec_step *st, const tok_list *in, tok_list *out) {
  size_t c = st->a_len;
  for (size_t i = 0; i < in->n; i++) {
    const char *s = TL_STR(in, i);
    size_t a = 0, b = TL_LEN(in, i);
    for (int k = 0; k < st->start && b - a >= c && !memcmp(s + a, st->a, c); k++) a += c;
    for (int k = 0; k < st->stop && b - a >= c && !memcmp(s + b - c, st->a, c); k++) b -= c;
    if (tl_push(out, s + a, b - a)) return -1;
  }
  return 0;
}

static int dec_fuse(const tok_list *in, tok_list *out) {
  if (tl_push(out, "", 0)) return -1;
  out->it[0].len = in->buf.n;  // in->buf holds the tokens back to back
  return bytes_put(&out->buf, in->buf.p ? in->buf.p : "", in->buf.n);
}

static int dec_apply(const tokenizer *t, const dec_step *st, const tok_list *in, tok_list *out) {
  switch (st->kind) {
    case DEC_BYTE_LEVEL: return dec_byte_level(t, in, out);
    case DEC_BYTE_FALLBACK: return dec_byte_fallback(in, out);
    case DEC_METASPACE:
    case DEC_REPLACE: return dec_replace(st, in, out);
    case DEC_STRIP: return dec_strip(st, in, out);
    case DEC_FUSE: return dec_fuse(in, out);
  }
  return -1;
}

static int decode_hf(const tokenizer *t, const int32_t *ids, size_t n, int skip_special, bytes *out) {
  tok_list a = {0}, b = {0};
  int rc = 0;
  for (size_t i = 0; !rc && i < n; i++)
    if (!(skip_special && (t->flags[ids[i]] & TOK_SPECIAL))) rc = tl_push(&a, t->pool + t->pieces[ids[i]].off, t->pieces[ids[i]].len);
  for (int k = 0; !rc && k < t->n_dec; k++) {
    b.n = b.buf.n = 0;
    rc = dec_apply(t, &t->dec[k], &a, &b);
    tok_list tmp = a;
    a = b, b = tmp;
  }
  for (size_t i = 0; !rc && i < a.n; i++)  // without a decoder, HF joins with spaces
    rc = (i && !t->has_decoder && bytes_put(out, " ", 1)) || put_lossy(out, TL_STR(&a, i), TL_LEN(&a, i));
  tl_free(&a);
  tl_free(&b);
  return rc;
}

// llama2.c: pieces as they are, <0xNN> as bytes; the leading space of the first piece (or of
// the piece after bos) is the encoder's dummy prefix and is dropped.
static int decode_llama2c(const tokenizer *t, const int32_t *ids, size_t n, int skip_special, bytes *out) {
  bytes raw = {0};
  int rc = bytes_put(&raw, "", 0);
  for (size_t i = 0; !rc && i < n; i++) {
    if (skip_special && (t->flags[ids[i]] & TOK_SPECIAL)) continue;
    const char *s = t->pool + t->pieces[ids[i]].off;
    size_t len = t->pieces[ids[i]].len;
    int v = byte_token_value(s, len);
    char c = (char)v;
    if ((i == 0 || ids[i - 1] == t->bos) && len && s[0] == ' ') s++, len--;
    rc = v >= 0 ? bytes_put(&raw, &c, 1) : bytes_put(&raw, s, len);
  }
  if (!rc) rc = put_lossy(out, raw.p, raw.n);
  free(raw.p);
  return rc;
}

char *tokenizer_decode(const tokenizer *t, const int32_t *ids, size_t n, int skip_special, pith_err *err) {
  for (size_t i = 0; i < n; i++) {
    if (ids[i] < 0 || ids[i] >= t->n_vocab || t->pieces[ids[i]].off == UINT32_MAX) {
      pith_fail(err, "%s: decode: id %d is not in the vocabulary (size %d)", t->files[0], ids[i], t->n_vocab);
      return NULL;
    }
  }
  bytes out = {0};
  int rc = bytes_put(&out, "", 0);
  if (!rc) rc = t->kind == TOK_LLAMA2C ? decode_llama2c(t, ids, n, skip_special, &out) : decode_hf(t, ids, n, skip_special, &out);
  if (rc) {
    free(out.p);
    pith_fail(err, "%s: decode: out of memory", t->files[0]);
    return NULL;
  }
  return out.p;
}

// ---------------------------------------------------------------------------------------------
// Queries
// ---------------------------------------------------------------------------------------------

int32_t tokenizer_vocab_size(const tokenizer *t) { return t->n_vocab; }
int32_t tokenizer_bos_id(const tokenizer *t) { return t->bos; }
int32_t tokenizer_pad_id(const tokenizer *t) { return t->pad; }
int tokenizer_adds_bos(const tokenizer *t) { return t->adds_bos > 0; }
const char *tokenizer_source_path(const tokenizer *t) { return t->files[0]; }

int tokenizer_eos_ids(const tokenizer *t, const int32_t **ids) {
  *ids = t->eos;
  return t->n_eos;
}

int32_t tokenizer_token_id(const tokenizer *t, const char *piece) {
  size_t n = strlen(piece);
  int32_t id = strmap_get(&t->added_map, t->pool, piece, n);
  return id >= 0 ? id : strmap_get(&t->vocab, t->pool, piece, n);
}

const char *tokenizer_token_piece(const tokenizer *t, int32_t id) {
  if (id < 0 || id >= t->n_vocab || t->pieces[id].off == UINT32_MAX) return NULL;
  return t->pool + t->pieces[id].off;
}

int tokenizer_is_special(const tokenizer *t, int32_t id) {
  return id >= 0 && id < t->n_vocab && (t->flags[id] & TOK_SPECIAL);
}

int tokenizer_source_files(const tokenizer *t, const char *const **paths) {
  *paths = (const char *const *)t->files;
  return t->n_files;
}
