// tokenizer internals: the tokenizer's data (vocabulary, merge table, pipeline steps, added
// tokens), the per-call encoding context, and the functions the tokenizer_*.c files share. Not
// part of the API (see tokenizer.h). Everything built at load is read-only afterwards.
#ifndef PITH_TOKENIZER_INTERNAL_H
#define PITH_TOKENIZER_INTERNAL_H

#include <cJSON.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "strbuf.h"
#include "tokenizer.h"
#include "utf8.h"

// ---------------------------------------------------------------------------------------------
// Small helpers: growable arrays, characters, hashing
// ---------------------------------------------------------------------------------------------

typedef struct {
  int32_t *p;
  size_t n, cap;
} ids_vec;

// The code point at s (n > 0 bytes) and its length in *len; an invalid byte stands for itself
// (its value, length 1).
static inline uint32_t tok_char_at(const char *s, size_t n, size_t *len) {
  uint32_t cp;
  int k = utf8_decode(s, n, &cp);
  *len = k ? (size_t)k : 1;
  return k ? cp : (uint8_t)s[0];
}

static inline uint64_t tok_mix64(uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return h;
}

static inline uint32_t tok_hash_bytes(const char *s, size_t n) {
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
  return (uint32_t)tok_mix64(h ^ w);
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

// The id of s (n bytes), or -1.
static inline int32_t tok_strmap_get(const strmap *m, const char *pool, const char *s, size_t n) {
  if (!m->slots) return -1;
  uint32_t h = tok_hash_bytes(s, n);
  for (uint32_t i = h & m->mask;; i = (i + 1) & m->mask) {
    const strmap_slot *e = &m->slots[i];
    if (e->id < 0) return -1;
    if (e->hash == h && e->s.len == n && !memcmp(pool + e->s.off, s, n)) return e->id;
  }
}
// ---------------------------------------------------------------------------------------------
// pairmap: (left id, right id) -> (rank, merged id), the BPE merge table
// ---------------------------------------------------------------------------------------------

typedef struct {
  uint64_t key;  // left << 32 | right; PAIR_EMPTY when free
  int32_t rank, id;
} pair_slot;

// The largest token id a file may name. The tables are sized by the largest id, and no vocabulary
// comes near this (the largest have a few hundred thousand), so a larger one is a broken file.
#define TOK_MAX_ID (1 << 24)

#define PAIR_EMPTY UINT64_MAX

typedef struct {
  pair_slot *slots;
  uint32_t mask, count;
} pairmap;

// ---------------------------------------------------------------------------------------------
// The tokenizer
// ---------------------------------------------------------------------------------------------

enum { TOK_HF, TOK_LLAMA2C, TOK_TIKTOKEN };
enum { MODEL_BPE, MODEL_WORDPIECE, MODEL_UNIGRAM };  // tokenizer.model
enum { TOK_SPECIAL = 1, TOK_ADDED = 2 };  // token flags
enum { SPLIT_REMOVED, SPLIT_ISOLATED, SPLIT_MERGED_PREV, SPLIT_MERGED_NEXT, SPLIT_CONTIGUOUS };
enum { PREPEND_ALWAYS, PREPEND_FIRST, PREPEND_NEVER };

typedef enum { NORM_PREPEND, NORM_REPLACE, NORM_STRIP, NORM_NFC, NORM_BERT, NORM_PRECOMPILED } norm_kind;

// sentencepiece's precompiled_charsmap: a Darts double-array trie over UTF-8 strings whose
// values are offsets of NUL-terminated replacements in `normalized`.
typedef struct {
  uint32_t *units;      // (n_units) the double array
  size_t n_units;
  char *normalized;     // (n_normalized) the replacement strings, each NUL-terminated
  size_t n_normalized;
} charsmap;

typedef struct {
  norm_kind kind;
  char *a, *b;          // prepend: a; replace: literal pattern a (unless re) -> content b
  size_t a_len, b_len;
  pcre2_code *re;       // replace with a regex pattern
  bool left, right;     // strip
  bool clean_text, chinese_chars, strip_accents, lowercase;  // BertNormalizer
  charsmap *map;        // Precompiled; NULL for an empty charsmap (identity)
} norm_step;

typedef enum { PRE_SPLIT, PRE_PREFIX_SPACE, PRE_BYTE_LEVEL, PRE_METASPACE, PRE_BERT } pre_kind;
typedef struct {
  pre_kind kind;
  pcre2_code *re;       // split
  int behavior;         // split: SPLIT_*
  bool invert;          // split
  char repl[8];         // metaspace replacement character (UTF-8)
  int repl_len, prepend;  // metaspace: PREPEND_*
  bool split;           // metaspace: split on the replacement
} pre_step;

typedef enum { DEC_BYTE_LEVEL, DEC_METASPACE, DEC_REPLACE, DEC_BYTE_FALLBACK, DEC_FUSE, DEC_STRIP, DEC_WORDPIECE } dec_kind;
typedef struct {
  dec_kind kind;
  char *a, *b;          // replace: pattern a -> content b; metaspace: replacement a; strip: content a;
                        // wordpiece: the continuing-subword prefix a
  size_t a_len, b_len;
  bool cleanup;         // wordpiece: remove spaces before punctuation and contractions
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
  int kind;                   // TOK_HF, TOK_LLAMA2C or TOK_TIKTOKEN
  int model;                  // MODEL_*
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

  // WordPiece
  int wp_max_chars;           // a longer word is unk
  char *unk_piece;            // the unk token's text (WordPiece), for the error when it is missing
  // Unigram
  double *scores;             // (n_vocab) log probabilities
  double unk_score;           // the lowest score - 10, as HF's Unigram
  strmap prefixes;            // every prefix of every piece -> its id, or n_vocab when not a piece
  uint32_t max_piece;         // longest piece in bytes
  pcre2_code *grapheme_re;    // \X, for the Precompiled normalizer's grapheme clusters

  // post-processor (TemplateProcessing, BertProcessing, RobertaProcessing): ids around one text
  bool has_template;
  int32_t tpl_pre[8], tpl_post[8];
  int n_tpl_pre, n_tpl_post;

  int32_t space_id;           // llama2.c: the id of " " (the dummy prefix)
  int32_t bos, pad;
  int32_t eos[16];
  int n_eos;
  int adds_bos;               // -1 until a file says
  bool has_config;            // a tokenizer_config.json was read
};

// ---------------------------------------------------------------------------------------------
// Loading: shared pieces
// ---------------------------------------------------------------------------------------------

typedef struct {
  tokenizer *t;
  const char *path;  // the file being read, named in every error
  pith_err *err;
} loader;

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
  strbuf norm[2];                // normalizer steps write here in turn
  strbuf work;                   // contents of the pre-tokens
  span_list spans, spans2;      // pre-tokens before and after a step
  interval *iv;                 // regex split intervals of one pre-token
  size_t n_iv, cap_iv;
  strbuf mapped, key;            // a byte-level mapped word; a vocabulary lookup key
  bpe_sym *sym;
  size_t n_sym, cap_sym;
  uint64_t *heap;               // (rank << 32 | position) of candidate merges
  size_t n_heap, cap_heap;
  pcre2_match_data *md;
  uint32_t *cps;                // code points of a text being normalized (BertNormalizer)
  size_t n_cps, cap_cps;
  double *best;                 // Unigram Viterbi, per byte position: best score, its start, its id
  int32_t *best_start, *best_id;
  size_t cap_best;
  char fail[200];               // what went wrong besides memory (a regex error); "" when none
} enc;


// ---------------------------------------------------------------------------------------------
// tokenizer.c: helpers, the tokenizer's tables, loading
// ---------------------------------------------------------------------------------------------

// Grow *p (elements of size elem, capacity *cap) to hold at least need elements.
int tok_grow(void *pp, size_t *cap, size_t need, size_t elem);
int tok_ids_push(ids_vec *v, int32_t id);
// Unicode White_Space (Rust's char::is_whitespace).
bool tok_is_unicode_space(uint32_t c);
int tok_strmap_init(strmap *m, size_t expect);
// Map the pool string s to id; an existing key keeps its id unless replace.
int tok_strmap_put(strmap *m, const char *pool, str_ref s, int32_t id, bool replace);
int tok_pool_add(tokenizer *t, const char *s, size_t n, str_ref *out);
int tok_alloc_vocab(tokenizer *t, int32_t n_vocab);
// After the vocabulary is known: ids of byte tokens and of byte-level characters.
void tok_init_byte_ids(tokenizer *t);
int tok_oom(loader *L);
const char *tok_jstr(const cJSON *o, const char *key);
bool tok_jbool(const cJSON *o, const char *key, bool def);
int tok_jint(const cJSON *o, const char *key, int def);
char *tok_dup_str(const char *s, size_t *len);
pcre2_code *tok_regex_compile(loader *L, const char *pat, bool literal, const char *what);
void tok_add_eos(tokenizer *t, int32_t id);
// Build the added-token indices once all added tokens are known.
int tok_finish_added(loader *L);

// ---------------------------------------------------------------------------------------------
// tokenizer_bpe.c: the BPE model
// ---------------------------------------------------------------------------------------------

int tok_load_vocab(loader *L, const cJSON *vocab, const cJSON *added);
int tok_load_model(loader *L, const cJSON *model, const cJSON *added);
// merges.txt: one "a b" a line, after an optional "#version" line.
int tok_load_merges_txt(loader *L, const char *path);
// llama2.c tokenizer.bin: int32 max_token_length, then per token f32 score, int32 len, bytes.
int tok_load_llama2c(loader *L, const char *data, size_t len);
int tok_bpe_word(enc *e, const char *w, size_t n);
// llama2.c's encode: a " " token first (the dummy prefix), then each UTF-8 character (at most 4
// bytes) as a token or as its bytes (id = byte + 3), then merges by score.
int tok_encode_llama2c(enc *e, const char *s, size_t n);
// llama2.c: pieces as they are, <0xNN> as bytes; the leading space of the first piece (or of
// the piece after bos) is the encoder's dummy prefix and is dropped.
int tok_decode_llama2c(const tokenizer *t, const int32_t *ids, size_t n, int skip_special, strbuf *out);

// ---------------------------------------------------------------------------------------------
// tokenizer_steps.c: normalizers, pre-tokenizers, decoders
// ---------------------------------------------------------------------------------------------

// GPT-2's pre-tokenizer regex (ByteLevel with use_regex).
extern const char tok_gpt2_pattern[];

int tok_load_normalizer(loader *L, const cJSON *o);
pre_step *tok_pre_add(loader *L, pre_kind kind);
int tok_pre_add_split(loader *L, const char *pattern, bool literal, int behavior, bool invert,
                      const char *what);
int tok_load_pre_tokenizer(loader *L, const cJSON *o);
dec_step *tok_dec_add(loader *L, dec_kind kind);
int tok_load_decoder(loader *L, const cJSON *o);
// Apply the normalizer to s; *out points into e's buffers (or at s when there is nothing to do).
int tok_normalize(enc *e, const char *s, size_t n, const char **out, size_t *out_n);
// Pre-tokenize s and BPE-encode each piece into e->out.
int tok_pre_tokenize(enc *e, const char *s, size_t n, bool at_start);
// Append s to out with each invalid UTF-8 run replaced by U+FFFD (Rust's from_utf8_lossy).
int tok_put_lossy(strbuf *out, const char *s, size_t n);
int tok_byte_token_value(const char *s, size_t n);
int tok_span_push(span_list *l, size_t off, size_t len, bool at_start);
int tok_decode_hf(const tokenizer *t, const int32_t *ids, size_t n, int skip_special, strbuf *out);

// ---------------------------------------------------------------------------------------------
// tokenizer_wordpiece.c: the WordPiece model, BertNormalizer, BertPreTokenizer
// ---------------------------------------------------------------------------------------------

int tok_load_wordpiece(loader *L, const cJSON *model, const cJSON *added);
int tok_wordpiece_word(enc *e, const char *w, size_t n);
// BertNormalizer: clean_text, handle_chinese_chars, strip_accents (NFD, Mn removed), lowercase.
int tok_norm_bert(enc *e, const norm_step *st, const char *s, size_t n, strbuf *out);
// BertPreTokenizer: split on whitespace (removed) and on each punctuation character (isolated).
int tok_pre_bert(enc *e, span sp);

// ---------------------------------------------------------------------------------------------
// tokenizer_unigram.c: the Unigram model, the Precompiled normalizer
// ---------------------------------------------------------------------------------------------

int tok_load_unigram(loader *L, const cJSON *model, const cJSON *added);
int tok_unigram_word(enc *e, const char *w, size_t n);
// Parse a base64 precompiled_charsmap into st->map (NULL when empty).
int tok_load_precompiled(loader *L, norm_step *st, const char *base64);
void tok_charsmap_free(charsmap *m);
int tok_norm_precompiled(enc *e, const norm_step *st, const char *s, size_t n, strbuf *out);

// ---------------------------------------------------------------------------------------------
// tokenizer_tiktoken.c: tiktoken files (cl100k_base), byte-level BPE by rank
// ---------------------------------------------------------------------------------------------

// 1 for a "*.tiktoken" name or tiktoken's cache name (40 hex digits).
int tok_is_tiktoken_name(const char *path);
int tok_load_tiktoken(loader *L, const char *text, size_t len);
// Text without special tokens (split out before).
int tok_encode_tiktoken(enc *e, const char *s, size_t n);
int tok_decode_tiktoken(const tokenizer *t, const int32_t *ids, size_t n, int skip_special, strbuf *out);
// ---------------------------------------------------------------------------------------------
// tokenizer_unicode.c (generated by scripts/gen-unicode-tables): Unicode data
// ---------------------------------------------------------------------------------------------

#define TOK_UC_MAX_NFD 4
#define TOK_UC_MAX_LOWER 3
extern const char tok_unicode_version[];
bool tok_uc_is_control(uint32_t c);  // Cc, Cf, Co
bool tok_uc_is_punct(uint32_t c);    // P* (ASCII symbols not included)
bool tok_uc_is_mn(uint32_t c);       // Mn
int tok_uc_ccc(uint32_t c);          // canonical combining class
int tok_uc_nfd(uint32_t c, uint32_t out[TOK_UC_MAX_NFD]);      // full decomposition; its length
int tok_uc_lower(uint32_t c, uint32_t out[TOK_UC_MAX_LOWER]);  // lowercase; its length

#endif
