// tokenizer: BPE, WordPiece and Unigram tokenizers (Hugging Face tokenizer.json, GPT-2 vocab.json +
// merges.txt, llama2.c tokenizer.bin) in C. The encoder follows the HF tokenizers pipeline:
//
//   text -> added tokens split out (raw text) -> normalizer -> added tokens (normalized text)
//        -> pre-tokenizer steps (regex splits, byte-level mapping, metaspace) -> BPE per piece
//
// BPE applies the lowest-ranked merge first (leftmost on ties) with a heap over a linked list of
// symbols, O(n log n) per piece. llama2.c's score-based merging is the same algorithm with ranks
// derived from the scores, so both share one merge loop. Everything built at load is read-only;
// encode/decode keep their scratch in a per-call context.
//
// The files: tokenizer.c (this one) holds the API, loading (the three file formats, added tokens,
// specials) and the encode/decode entry points; tokenizer_bpe.c the BPE model (its merge table,
// loading, the merge loop, llama2.c's variant); tokenizer_steps.c the steps around the model
// (normalizers, pre-tokenizers, decoders); tokenizer_wordpiece.c WordPiece with BERT's normalizer
// and pre-tokenizer; tokenizer_unigram.c Unigram with sentencepiece's Precompiled normalizer;
// tokenizer_unicode.c the Unicode tables BERT needs (generated). What the files share is declared
// in tokenizer_internal.h.
#include "tokenizer_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

// Grow *p (elements of size elem, capacity *cap) to hold at least need elements.
int tok_grow(void *pp, size_t *cap, size_t need, size_t elem) {
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

int tok_ids_push(ids_vec *v, int32_t id) {
  if (v->n == v->cap && tok_grow(&v->p, &v->cap, v->n + 1, sizeof *v->p)) return -1;
  v->p[v->n++] = id;
  return 0;
}
// Unicode White_Space (Rust's char::is_whitespace).
bool tok_is_unicode_space(uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

// Word character for single_word added tokens: ASCII letters, digits and '_', and (an
// approximation of Unicode alphanumerics) any non-ASCII character that is not a space.
static bool is_word_char(uint32_t c) {
  if (c < 0x80) return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
  return !tok_is_unicode_space(c);
}


int tok_strmap_init(strmap *m, size_t expect) {
  size_t cap = 64;
  while (cap < expect * 2) cap *= 2;
  m->slots = malloc(cap * sizeof *m->slots);
  if (!m->slots) return -1;
  for (size_t i = 0; i < cap; i++) m->slots[i].id = -1;
  m->mask = (uint32_t)(cap - 1);
  m->count = 0;
  return 0;
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
int tok_strmap_put(strmap *m, const char *pool, str_ref s, int32_t id, bool replace) {
  if ((m->count + 1) * 2 > m->mask + 1) {
    strmap old = *m;
    if (tok_strmap_init(m, (size_t)(old.mask + 1))) { *m = old; return -1; }
    for (uint32_t i = 0; i <= old.mask; i++)
      if (old.slots[i].id >= 0) strmap_insert(m, old.slots[i].hash, old.slots[i].s, old.slots[i].id, pool, false);
    free(old.slots);
  }
  strmap_insert(m, tok_hash_bytes(pool + s.off, s.len), s, id, pool, replace);
  return 0;
}

int tok_pool_add(tokenizer *t, const char *s, size_t n, str_ref *out) {
  if (t->pool_len + n + 1 > UINT32_MAX) return -1;
  if (tok_grow(&t->pool, &t->pool_cap, t->pool_len + n + 1, 1)) return -1;
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

int tok_alloc_vocab(tokenizer *t, int32_t n_vocab) {
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
void tok_init_byte_ids(tokenizer *t) {
  t->bytes_in_vocab = true;
  for (int b = 0; b < 256; b++) {
    char name[8];
    snprintf(name, sizeof name, "<0x%02X>", b);
    t->byte_token[b] = tok_strmap_get(&t->vocab, t->pool, name, 6);
    t->byte_char_id[b] = tok_strmap_get(&t->vocab, t->pool, t->byte_char[b], t->byte_char_len[b]);
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
    tok_charsmap_free(t->norm[i].map);
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
  free(t->unk_piece);
  free(t->scores);
  free(t->prefixes.slots);
  pcre2_code_free(t->grapheme_re);
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

int tok_oom(loader *L) { return pith_fail(L->err, "%s: out of memory", L->path); }

const char *tok_jstr(const cJSON *o, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

bool tok_jbool(const cJSON *o, const char *key, bool def) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  return cJSON_IsBool(v) ? cJSON_IsTrue(v) : def;
}

int tok_jint(const cJSON *o, const char *key, int def) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  return cJSON_IsNumber(v) ? v->valueint : def;
}

char *tok_dup_str(const char *s, size_t *len) {
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

pcre2_code *tok_regex_compile(loader *L, const char *pat, bool literal, const char *what) {
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
  if (id < 0 || id > TOK_MAX_ID)
    return pith_fail(L->err, "%s: added token '%s' has id %d (ids go from 0 to %d)", L->path, content, id, TOK_MAX_ID);
  added_token *a = realloc(t->added, ((size_t)t->n_added + 1) * sizeof *a);
  if (!a) return tok_oom(L);
  t->added = a;
  a = &t->added[t->n_added];
  *a = (added_token){.id = id, .lstrip = lstrip, .rstrip = rstrip, .single_word = single_word,
                     .normalized = normalized, .special = special};
  if (ensure_id(t, id) || tok_pool_add(t, content, strlen(content), &a->s)) return tok_oom(L);
  if (!t->added_map.slots && tok_strmap_init(&t->added_map, 64)) return tok_oom(L);
  if (tok_strmap_put(&t->added_map, t->pool, a->s, id, false)) return tok_oom(L);
  t->pieces[id] = a->s;
  t->flags[id] = (uint8_t)(TOK_ADDED | (special ? TOK_SPECIAL : 0));
  t->n_added++;
  return 0;
}

// One entry of HF's added_tokens list (or of tokenizer_config's added_tokens_decoder).
static int add_token_json(loader *L, const cJSON *o, int32_t id) {
  const char *content = tok_jstr(o, "content");
  if (!content) return pith_fail(L->err, "%s: an added token has no content", L->path);
  return add_token(L, id, content, tok_jbool(o, "special", false), tok_jbool(o, "lstrip", false),
                   tok_jbool(o, "rstrip", false), tok_jbool(o, "single_word", false),
                   tok_jbool(o, "normalized", false));
}

// The ids of a template item's special token: TemplateProcessing's special_tokens entry, else the
// token of that name. 0, or -1 and err.
static int template_ids(loader *L, const cJSON *post, const char *name, int32_t *out, int *n) {
  const cJSON *entry = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(post, "special_tokens"), name);
  const cJSON *ids = cJSON_GetObjectItemCaseSensitive(entry, "ids"), *e;
  if (cJSON_IsArray(ids)) {
    cJSON_ArrayForEach(e, ids) {
      if (*n == 8) return pith_fail(L->err, "%s: post_processor: more than 8 special ids around a text", L->path);
      if (!cJSON_IsNumber(e) || e->valueint < 0 || e->valueint >= L->t->n_vocab)
        return pith_fail(L->err, "%s: post_processor: special token '%s' has an id outside the vocabulary", L->path, name);
      out[(*n)++] = e->valueint;
    }
    return 0;
  }
  int32_t id = tokenizer_token_id(L->t, name);
  if (id < 0) return pith_fail(L->err, "%s: post_processor: special token '%s' is not in the vocabulary", L->path, name);
  if (*n == 8) return pith_fail(L->err, "%s: post_processor: more than 8 special ids around a text", L->path);
  out[(*n)++] = id;
  return 0;
}

// BertProcessing / RobertaProcessing: "cls" and "sep" as ["[CLS]", 101].
static int pair_token(loader *L, const cJSON *post, const char *key, int32_t *out, int *n) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(post, key);
  const cJSON *id = cJSON_GetArrayItem(v, 1);
  if (!cJSON_IsString(cJSON_GetArrayItem(v, 0)) || !cJSON_IsNumber(id) || id->valueint < 0 || id->valueint >= L->t->n_vocab)
    return pith_fail(L->err, "%s: post_processor: '%s' is not [\"token\", id] with an id in the vocabulary", L->path, key);
  out[(*n)++] = id->valueint;
  return 0;
}

// The special ids the post-processor puts around a single text (TemplateProcessing's "single",
// BertProcessing's and RobertaProcessing's cls ... sep); in a Sequence, the first processor that
// adds any. Other processors (ByteLevel) leave the ids alone.
static int load_post_processor(loader *L, const cJSON *post) {
  tokenizer *t = L->t;
  const char *type = tok_jstr(post, "type");
  if (!type || t->has_template) return 0;
  if (!strcmp(type, "Sequence")) {
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(post, "processors"))
      if (load_post_processor(L, e)) return -1;
    return 0;
  }
  if (!strcmp(type, "BertProcessing") || !strcmp(type, "RobertaProcessing")) {
    t->has_template = true;
    return pair_token(L, post, "cls", t->tpl_pre, &t->n_tpl_pre) || pair_token(L, post, "sep", t->tpl_post, &t->n_tpl_post) ? -1 : 0;
  }
  if (strcmp(type, "TemplateProcessing")) return 0;
  const cJSON *single = cJSON_GetObjectItemCaseSensitive(post, "single"), *e;
  bool seen_a = false;
  if (!cJSON_IsArray(single)) return pith_fail(L->err, "%s: TemplateProcessing without a 'single' template", L->path);
  cJSON_ArrayForEach(e, single) {
    const cJSON *sp = cJSON_GetObjectItemCaseSensitive(e, "SpecialToken");
    const char *name = tok_jstr(sp, "id");
    if (cJSON_GetObjectItemCaseSensitive(e, "Sequence")) {
      if (seen_a) return pith_fail(L->err, "%s: TemplateProcessing: the single template holds the text twice", L->path);
      seen_a = true;
    } else if (!name) {
      return pith_fail(L->err, "%s: TemplateProcessing: an item is neither Sequence nor SpecialToken", L->path);
    } else if (template_ids(L, post, name, seen_a ? t->tpl_post : t->tpl_pre, seen_a ? &t->n_tpl_post : &t->n_tpl_pre)) {
      return -1;
    }
  }
  if (!seen_a) return pith_fail(L->err, "%s: TemplateProcessing: the single template has no $A", L->path);
  t->has_template = t->n_tpl_pre + t->n_tpl_post > 0;  // "$A" alone: add_bos falls back to the bos
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Loading: bos / eos / pad from tokenizer_config.json, generation_config.json, config.json
// ---------------------------------------------------------------------------------------------

// A token in tokenizer_config: "text" or {"content": "text", ...}. -1 when absent or unknown.
static int32_t config_token(tokenizer *t, const cJSON *cfg, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
  const char *s = cJSON_IsString(v) ? v->valuestring : tok_jstr(v, "content");
  return s ? tokenizer_token_id(t, s) : -1;
}

void tok_add_eos(tokenizer *t, int32_t id) {
  if (id < 0 || id >= t->n_vocab || t->n_eos == (int)(sizeof t->eos / sizeof t->eos[0])) return;
  for (int i = 0; i < t->n_eos; i++)
    if (t->eos[i] == id) return;
  t->eos[t->n_eos++] = id;
}

// bos_token_id / eos_token_id (int or list) / pad_token_id of generation_config or config.json.
static void ids_from_config(tokenizer *t, const cJSON *cfg) {
  const cJSON *eos = cJSON_GetObjectItemCaseSensitive(cfg, "eos_token_id"), *e;
  if (t->bos < 0) t->bos = tok_jint(cfg, "bos_token_id", -1);
  if (t->pad < 0) t->pad = tok_jint(cfg, "pad_token_id", -1);
  if (cJSON_IsNumber(eos)) tok_add_eos(t, eos->valueint);
  const cJSON *list = cJSON_IsArray(eos) ? eos : NULL;
  cJSON_ArrayForEach(e, list) if (cJSON_IsNumber(e)) tok_add_eos(t, e->valueint);
}

static int load_tokenizer_config(loader *L, const cJSON *cfg) {
  tokenizer *t = L->t;
  const cJSON *dec = cJSON_GetObjectItemCaseSensitive(cfg, "added_tokens_decoder"), *e;
  if (!cJSON_IsObject(dec)) dec = NULL;
  cJSON_ArrayForEach(e, dec) {
    char *end;
    long id = strtol(e->string, &end, 10);
    if (*end || id < 0 || id > TOK_MAX_ID) return pith_fail(L->err, "%s: added_tokens_decoder key '%s' is not an id", L->path, e->string);
    if (add_token_json(L, e, (int32_t)id)) return -1;
  }
  t->bos = config_token(t, cfg, "bos_token");
  t->pad = config_token(t, cfg, "pad_token");
  tok_add_eos(t, config_token(t, cfg, "eos_token"));
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
  int rc = add_file(L->t, path) ? tok_oom(&sub) : fn(&sub, root);
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
  if (t->n_eos == 0) tok_add_eos(t, eot);
  if (t->bos >= t->n_vocab) t->bos = -1;
  if (t->pad >= t->n_vocab) t->pad = -1;
  return 0;
}

// Build the added-token indices once all added tokens are known.
int tok_finish_added(loader *L) {
  if (added_index_build(L->t, &L->t->added_raw, false) || added_index_build(L->t, &L->t->added_norm, true))
    return tok_oom(L);
  return 0;
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
  const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
  const char *mtype = tok_jstr(model, "type");
  if (!rc && mtype && !strcmp(mtype, "WordPiece")) rc = tok_load_wordpiece(L, model, added);
  else if (!rc && mtype && !strcmp(mtype, "Unigram")) rc = tok_load_unigram(L, model, added);
  else if (!rc) rc = tok_load_model(L, model, added);
  if (!rc && cJSON_IsArray(added))
    cJSON_ArrayForEach(e, added) if (!rc) rc = add_token_json(L, e, tok_jint(e, "id", -1));
  if (!rc) rc = tok_load_normalizer(L, cJSON_GetObjectItemCaseSensitive(root, "normalizer"));
  if (!rc) rc = tok_load_pre_tokenizer(L, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"));
  if (!rc) rc = tok_load_decoder(L, cJSON_GetObjectItemCaseSensitive(root, "decoder"));
  if (!rc) rc = load_post_processor(L, cJSON_GetObjectItemCaseSensitive(root, "post_processor"));
  int32_t tbos = !rc && t->n_tpl_pre > 0 ? t->tpl_pre[0] : -1;
  cJSON_Delete(root);
  char dir[4096];
  pith_parent_dir(L->path, dir, sizeof dir);
  if (!rc) rc = load_specials(L, dir, tbos);
  return rc ? -1 : tok_finish_added(L);
}

// A GPT-2 folder: vocab.json + merges.txt, byte-level pre-tokenizer and decoder.
static int load_gpt2_folder(loader *L, const char *text, size_t len, const char *dir) {
  tokenizer *t = L->t;
  char merges[4200];
  snprintf(merges, sizeof merges, "%s/merges.txt", dir);
  cJSON *vocab = parse_json(text, len, L->path, L->err);
  if (!vocab) return -1;
  int rc = tok_load_vocab(L, vocab, NULL);
  cJSON_Delete(vocab);
  if (!rc) rc = add_file(t, merges) ? tok_oom(L) : tok_load_merges_txt(L, merges);
  if (!rc) rc = tok_pre_add_split(L, tok_gpt2_pattern, false, SPLIT_ISOLATED, false, "ByteLevel pre-tokenizer");
  if (!rc && (!tok_pre_add(L, PRE_BYTE_LEVEL) || !tok_dec_add(L, DEC_BYTE_LEVEL))) rc = tok_oom(L);
  t->byte_level = t->has_decoder = true;
  int32_t eot = tok_strmap_get(&t->vocab, t->pool, "<|endoftext|>", 13);
  if (!rc && eot >= 0) rc = add_token(L, eot, "<|endoftext|>", true, false, false, false, false);
  if (!rc) rc = load_specials(L, dir, -1);
  return rc ? -1 : tok_finish_added(L);
}

// Which file of a folder to load: tokenizer.json, vocab.json (+ merges.txt), tokenizer.bin.
static int pick_in_folder(const char *dir, char *out, size_t size, pith_err *err) {
  static const char *names[] = {"tokenizer.json", "vocab.json", "tokenizer.bin"};
  for (int i = 0; i < 3; i++) {
    if (snprintf(out, size, "%s/%s", dir, names[i]) >= (int)size) break;
    if (pith_is_file(out)) return 0;
  }
  return pith_fail(err, "%s: no tokenizer.json, vocab.json + merges.txt or tokenizer.bin in this folder", dir);
}

static int load_file(loader *L, const char *text, size_t len) {
  char dir[4096], merges[4200];
  pith_parent_dir(L->path, dir, sizeof dir);
  snprintf(merges, sizeof merges, "%s/merges.txt", dir);
  size_t i = 0;
  while (i < len && (text[i] == ' ' || text[i] == '\n' || text[i] == '\r' || text[i] == '\t')) i++;
  const char *base = pith_base_name(L->path);
  if (tok_is_tiktoken_name(L->path)) return tok_load_tiktoken(L, text, len);
  if (i < len && text[i] == '{') {
    if (!strcmp(base, "vocab.json")) {  // a GPT-2 style vocabulary: it needs its merges beside it
      if (!pith_is_file(merges))
        return pith_fail(L->err, "%s: a vocab.json needs merges.txt beside it (%s: not found)", L->path, merges);
      return load_gpt2_folder(L, text, len, dir);
    }
    return load_hf_json(L, text, len);
  }
  return tok_load_llama2c(L, text, len);
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
  int rc = !t || add_file(t, file) ? tok_oom(&L) : load_file(&L, text, len);
  free(text);
  if (rc) {
    tokenizer_free(t);
    return NULL;
  }
  return t;
}

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
  free(e->cps);
  free(e->best);
  free(e->best_start);
  free(e->best_id);
  pcre2_match_data_free(e->md);
}

static int seg_push(seg_list *l, size_t start, size_t end, int32_t id) {
  if (l->n == l->cap && tok_grow(&l->p, &l->cap, l->n + 1, sizeof *l->p)) return -1;
  l->p[l->n++] = (seg){start, end, id};
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
  if (start > 0 && is_word_char(tok_char_at(s + p, start - p, &l))) return false;
  return end >= n || !is_word_char(tok_char_at(s + end, n - end, &l));
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
    while (a->lstrip && start > prev && tok_is_unicode_space(tok_char_at(s + utf8_prev(s, start), start - utf8_prev(s, start), &l)))
      start = utf8_prev(s, start);
    while (a->rstrip && stop < n && tok_is_unicode_space(tok_char_at(s + stop, n - stop, &l))) stop += l;
    if ((start > prev && seg_push(out, prev, start, -1)) || seg_push(out, start, stop, a->id)) return -1;
    prev = i = stop;
  }
  if (prev < n && seg_push(out, prev, n, -1)) return -1;
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Encoding: entry points
// ---------------------------------------------------------------------------------------------

// tiktoken: special tokens first, then the regex pieces of the text between them.
static int encode_tiktoken(enc *e, const char *text, size_t len) {
  if (split_added(e->t, &e->t->added_raw, text, len, &e->segs)) return -1;
  for (size_t i = 0; i < e->segs.n; i++) {
    seg g = e->segs.p[i];
    int rc = g.id >= 0 ? tok_ids_push(&e->out, g.id) : tok_encode_tiktoken(e, text + g.start, g.end - g.start);
    if (rc) return -1;
  }
  return 0;
}

static int encode_hf(enc *e, const char *text, size_t len) {
  const tokenizer *t = e->t;
  if (split_added(t, &t->added_raw, text, len, &e->segs)) return -1;
  for (size_t i = 0; i < e->segs.n; i++) {
    seg g = e->segs.p[i];
    const char *s;
    size_t n;
    if (g.id >= 0) {
      if (tok_ids_push(&e->out, g.id)) return -1;
      continue;
    }
    if (tok_normalize(e, text + g.start, g.end - g.start, &s, &n) || split_added(t, &t->added_norm, s, n, &e->subsegs))
      return -1;
    for (size_t j = 0; j < e->subsegs.n; j++) {
      seg h = e->subsegs.p[j];
      int rc = h.id >= 0 ? tok_ids_push(&e->out, h.id) : tok_pre_tokenize(e, s + h.start, h.end - h.start, g.start == 0 && h.start == 0);
      if (rc) return -1;
    }
  }
  return 0;
}

int tokenizer_encode(const tokenizer *t, const char *text, size_t len, int add_bos, int32_t **ids,
                     size_t *n_ids, pith_err *err) {
  enc e = {.t = t};
  *ids = NULL, *n_ids = 0;
  if (!text && len) return pith_fail(err, "%s: encode: NULL text", t->files[0]);
  e.md = pcre2_match_data_create(1, NULL);
  int rc = e.md ? 0 : -1;
  for (int i = 0; !rc && add_bos && t->has_template && i < t->n_tpl_pre; i++) rc = tok_ids_push(&e.out, t->tpl_pre[i]);
  if (!rc && add_bos && !t->has_template && t->bos >= 0) rc = tok_ids_push(&e.out, t->bos);
  if (!rc && len)
    rc = t->kind == TOK_LLAMA2C    ? tok_encode_llama2c(&e, text, len)
         : t->kind == TOK_TIKTOKEN ? encode_tiktoken(&e, text, len)
                                   : encode_hf(&e, text, len);
  for (int i = 0; !rc && add_bos && t->has_template && i < t->n_tpl_post; i++) rc = tok_ids_push(&e.out, t->tpl_post[i]);
  if (!rc && !e.out.p) rc = tok_grow(&e.out.p, &e.out.cap, 1, sizeof *e.out.p);
  if (rc) {
    pith_fail(err, "%s: encode: %s", t->files[0], e.fail[0] ? e.fail : "out of memory");
  } else {
    *ids = e.out.p, *n_ids = e.out.n;
    e.out.p = NULL;
  }
  enc_free(&e);
  return rc;
}

char *tokenizer_normalize(const tokenizer *t, const char *text, size_t len, size_t *out_len, pith_err *err) {
  enc e = {.t = t};
  const char *s = text;
  size_t n = len;
  e.md = pcre2_match_data_create(1, NULL);
  char *out = NULL;
  if (e.md && (t->kind != TOK_HF || !tok_normalize(&e, text, len, &s, &n)) && (out = malloc(n + 1))) {
    memcpy(out, s, n);
    out[n] = 0;
    if (out_len) *out_len = n;
  } else {
    pith_fail(err, "%s: normalize: %s", t->files[0], e.fail[0] ? e.fail : "out of memory");
  }
  enc_free(&e);
  return out;
}

char *tokenizer_decode(const tokenizer *t, const int32_t *ids, size_t n, int skip_special, pith_err *err) {
  return tokenizer_decode_n(t, ids, n, skip_special, NULL, err);
}

char *tokenizer_decode_n(const tokenizer *t, const int32_t *ids, size_t n, int skip_special, size_t *len,
                         pith_err *err) {
  for (size_t i = 0; i < n; i++) {
    if (ids[i] < 0 || ids[i] >= t->n_vocab || t->pieces[ids[i]].off == UINT32_MAX) {
      pith_fail(err, "%s: decode: id %d is not in the vocabulary (size %d)", t->files[0], ids[i], t->n_vocab);
      return NULL;
    }
  }
  strbuf out = {0};
  int rc = strbuf_add(&out, "", 0);
  if (!rc)
    rc = t->kind == TOK_LLAMA2C    ? tok_decode_llama2c(t, ids, n, skip_special, &out)
         : t->kind == TOK_TIKTOKEN ? tok_decode_tiktoken(t, ids, n, skip_special, &out)
                                   : tok_decode_hf(t, ids, n, skip_special, &out);
  if (rc) {
    free(out.p);
    pith_fail(err, "%s: decode: out of memory", t->files[0]);
    return NULL;
  }
  if (len) *len = out.n;
  return out.p;
}

// ---------------------------------------------------------------------------------------------
// Queries
// ---------------------------------------------------------------------------------------------

int32_t tokenizer_vocab_size(const tokenizer *t) { return t->n_vocab; }
int32_t tokenizer_bos_id(const tokenizer *t) { return t->bos; }
int32_t tokenizer_pad_id(const tokenizer *t) { return t->pad; }
int32_t tokenizer_unk_id(const tokenizer *t) { return t->unk_id; }
int tokenizer_adds_bos(const tokenizer *t) { return t->adds_bos > 0; }
const char *tokenizer_source_path(const tokenizer *t) { return t->files[0]; }

int tokenizer_eos_ids(const tokenizer *t, const int32_t **ids) {
  *ids = t->eos;
  return t->n_eos;
}

int32_t tokenizer_token_id(const tokenizer *t, const char *piece) {
  size_t n = strlen(piece);
  int32_t id = tok_strmap_get(&t->added_map, t->pool, piece, n);
  return id >= 0 ? id : tok_strmap_get(&t->vocab, t->pool, piece, n);
}

const char *tokenizer_token_piece(const tokenizer *t, int32_t id) {
  if (id < 0 || id >= t->n_vocab || t->pieces[id].off == UINT32_MAX) return NULL;
  return t->pool + t->pieces[id].off;
}

int tokenizer_special_around(const tokenizer *t, const int32_t **pre, int *n_pre, const int32_t **post, int *n_post) {
  *pre = t->has_template ? t->tpl_pre : &t->bos;
  *n_pre = t->has_template ? t->n_tpl_pre : t->bos >= 0;
  *post = t->tpl_post;
  *n_post = t->has_template ? t->n_tpl_post : 0;
  return *n_pre + *n_post;
}

int tokenizer_is_special(const tokenizer *t, int32_t id) {
  return id >= 0 && id < t->n_vocab && (t->flags[id] & TOK_SPECIAL);
}

int tokenizer_source_files(const tokenizer *t, const char *const **paths) {
  *paths = (const char *const *)t->files;
  return t->n_files;
}
