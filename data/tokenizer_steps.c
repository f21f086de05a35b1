// tokenizer steps: the Hugging Face pipeline around the model. Normalizers (Prepend, Replace,
// Strip, NFC; BertNormalizer and Precompiled are applied by tokenizer_wordpiece.c and
// tokenizer_unigram.c), pre-tokenizers (regex Split with its behaviors, ByteLevel, Metaspace,
// BertPreTokenizer), decoders (ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip,
// WordPiece): loading each from tokenizer.json and applying it. The pre-tokenizer hands each
// piece to the model (BPE, WordPiece or Unigram).
#define _GNU_SOURCE  // memmem
#include "tokenizer_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Unicode White_Space, as a regex class.
#define WHITE_SPACE_CLASS "[\\t-\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}]"

// GPT-2's pre-tokenizer regex (ByteLevel with use_regex).
const char tok_gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

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

int tok_load_normalizer(loader *L, const cJSON *o) {
  if (!o || cJSON_IsNull(o)) return 0;
  const char *type = tok_jstr(o, "type");
  if (!type) return pith_fail(L->err, "%s: normalizer without a type", L->path);
  if (!strcmp(type, "Sequence")) {
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(o, "normalizers"))
      if (tok_load_normalizer(L, e)) return -1;
    return 0;
  }
  norm_step *s;
  if (!strcmp(type, "Prepend")) {
    const char *p = tok_jstr(o, "prepend");
    if (!p) return pith_fail(L->err, "%s: Prepend normalizer without 'prepend'", L->path);
    if (!(s = norm_add(L, NORM_PREPEND)) || !(s->a = tok_dup_str(p, &s->a_len))) return tok_oom(L);
  } else if (!strcmp(type, "Replace")) {
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(o, "pattern");
    const char *lit = tok_jstr(pat, "String"), *re = tok_jstr(pat, "Regex"), *content = tok_jstr(o, "content");
    if ((!lit && !re) || !content) return pith_fail(L->err, "%s: Replace normalizer needs a pattern and content", L->path);
    if (!(s = norm_add(L, NORM_REPLACE)) || !(s->b = tok_dup_str(content, &s->b_len))) return tok_oom(L);
    if (lit && !(s->a = tok_dup_str(lit, &s->a_len))) return tok_oom(L);
    if (re && !(s->re = tok_regex_compile(L, re, false, "Replace normalizer"))) return -1;
  } else if (!strcmp(type, "Strip")) {
    if (!(s = norm_add(L, NORM_STRIP))) return tok_oom(L);
    s->left = tok_jbool(o, "strip_left", true), s->right = tok_jbool(o, "strip_right", true);
  } else if (!strcmp(type, "NFC")) {
    if (!norm_add(L, NORM_NFC)) return tok_oom(L);
  } else if (!strcmp(type, "BertNormalizer")) {
    if (!(s = norm_add(L, NORM_BERT))) return tok_oom(L);
    s->clean_text = tok_jbool(o, "clean_text", true);
    s->chinese_chars = tok_jbool(o, "handle_chinese_chars", true);
    s->lowercase = tok_jbool(o, "lowercase", true);
    s->strip_accents = tok_jbool(o, "strip_accents", s->lowercase);  // null: as lowercase, as HF
  } else if (!strcmp(type, "Precompiled")) {
    const char *map = tok_jstr(o, "precompiled_charsmap");
    if (!cJSON_GetObjectItemCaseSensitive(o, "precompiled_charsmap"))
      return pith_fail(L->err, "%s: Precompiled normalizer without a precompiled_charsmap", L->path);
    if (!(s = norm_add(L, NORM_PRECOMPILED))) return tok_oom(L);
    if (tok_load_precompiled(L, s, map ? map : "")) return -1;
  } else {
    return pith_fail(L->err, "%s: normalizer type '%s' is not supported", L->path, type);
  }
  return 0;
}

pre_step *tok_pre_add(loader *L, pre_kind kind) {
  tokenizer *t = L->t;
  pre_step *s = realloc(t->pre, ((size_t)t->n_pre + 1) * sizeof *s);
  if (!s) return NULL;
  t->pre = s;
  s = &t->pre[t->n_pre++];
  *s = (pre_step){.kind = kind};
  return s;
}

int tok_pre_add_split(loader *L, const char *pattern, bool literal, int behavior, bool invert,
                         const char *what) {
  pre_step *s = tok_pre_add(L, PRE_SPLIT);
  if (!s) return tok_oom(L);
  s->behavior = behavior, s->invert = invert;
  return (s->re = tok_regex_compile(L, pattern, literal, what)) ? 0 : -1;
}

static int split_behavior(const char *b) {
  static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
  for (int i = 0; b && i < 5; i++)
    if (!strcmp(b, names[i])) return i;
  return -1;
}

static int load_split(loader *L, const cJSON *o) {
  const cJSON *pat = cJSON_GetObjectItemCaseSensitive(o, "pattern");
  const char *lit = tok_jstr(pat, "String"), *re = tok_jstr(pat, "Regex"), *beh = tok_jstr(o, "behavior");
  int behavior = split_behavior(beh);
  if (!lit && !re) return pith_fail(L->err, "%s: Split pre-tokenizer without a pattern", L->path);
  if (behavior < 0)
    return pith_fail(L->err, "%s: Split behavior '%s' is not supported", L->path, beh ? beh : "(none)");
  return tok_pre_add_split(L, lit ? lit : re, lit != NULL, behavior, tok_jbool(o, "invert", false),
                       "Split pre-tokenizer");
}

static int prepend_scheme(const cJSON *o) {
  const char *p = tok_jstr(o, "prepend_scheme");
  if (p) return !strcmp(p, "first") ? PREPEND_FIRST : !strcmp(p, "never") ? PREPEND_NEVER : PREPEND_ALWAYS;
  return tok_jbool(o, "add_prefix_space", true) ? PREPEND_ALWAYS : PREPEND_NEVER;  // older files
}

static int load_metaspace(loader *L, const cJSON *o) {
  pre_step *s = tok_pre_add(L, PRE_METASPACE);
  const char *r = tok_jstr(o, "replacement");
  if (!s) return tok_oom(L);
  if (!r) r = "\xe2\x96\x81";  // U+2581
  if (strlen(r) >= sizeof s->repl) return pith_fail(L->err, "%s: Metaspace replacement too long", L->path);
  s->repl_len = (int)strlen(r);
  memcpy(s->repl, r, (size_t)s->repl_len);
  s->prepend = prepend_scheme(o);
  s->split = tok_jbool(o, "split", true);
  return 0;
}

int tok_load_pre_tokenizer(loader *L, const cJSON *o) {
  if (!o || cJSON_IsNull(o)) return 0;
  const char *type = tok_jstr(o, "type");
  if (!type) return pith_fail(L->err, "%s: pre_tokenizer without a type", L->path);
  if (L->t->byte_level && strcmp(type, "Sequence"))
    return pith_fail(L->err, "%s: pre_tokenizer '%s' after ByteLevel is not supported", L->path, type);
  if (!strcmp(type, "Sequence")) {
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(o, "pretokenizers"))
      if (tok_load_pre_tokenizer(L, e)) return -1;
    return 0;
  }
  if (!strcmp(type, "Split")) return load_split(L, o);
  if (!strcmp(type, "BertPreTokenizer")) return tok_pre_add(L, PRE_BERT) ? 0 : tok_oom(L);
  if (!strcmp(type, "Metaspace")) return load_metaspace(L, o);
  if (!strcmp(type, "ByteLevel")) {
    if (tok_jbool(o, "add_prefix_space", true) && !tok_pre_add(L, PRE_PREFIX_SPACE)) return tok_oom(L);
    if (tok_jbool(o, "use_regex", true) &&
        tok_pre_add_split(L, tok_gpt2_pattern, false, SPLIT_ISOLATED, false, "ByteLevel pre-tokenizer"))
      return -1;
    if (!tok_pre_add(L, PRE_BYTE_LEVEL)) return tok_oom(L);
    L->t->byte_level = true;
    return 0;
  }
  if (!strcmp(type, "Digits"))
    return tok_pre_add_split(L, "\\p{N}", false, tok_jbool(o, "individual_digits", false) ? SPLIT_ISOLATED : SPLIT_CONTIGUOUS,
                         false, "Digits pre-tokenizer");
  if (!strcmp(type, "Whitespace"))
    return tok_pre_add_split(L, "\\w+|[^\\w\\s]+", false, SPLIT_REMOVED, true, "Whitespace pre-tokenizer");
  if (!strcmp(type, "WhitespaceSplit"))  // Rust's char::is_whitespace (PCRE2's \s also takes U+180E)
    return tok_pre_add_split(L, WHITE_SPACE_CLASS, false, SPLIT_REMOVED, false, "WhitespaceSplit pre-tokenizer");
  return pith_fail(L->err, "%s: pre_tokenizer type '%s' is not supported", L->path, type);
}

dec_step *tok_dec_add(loader *L, dec_kind kind) {
  tokenizer *t = L->t;
  dec_step *s = realloc(t->dec, ((size_t)t->n_dec + 1) * sizeof *s);
  if (!s) return NULL;
  t->dec = s;
  s = &t->dec[t->n_dec++];
  *s = (dec_step){.kind = kind};
  return s;
}

int tok_load_decoder(loader *L, const cJSON *o) {
  if (!o || cJSON_IsNull(o)) return 0;
  const char *type = tok_jstr(o, "type");
  dec_step *s;
  L->t->has_decoder = true;
  if (!type) return pith_fail(L->err, "%s: decoder without a type", L->path);
  if (!strcmp(type, "Sequence")) {
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(o, "decoders"))
      if (tok_load_decoder(L, e)) return -1;
    return 0;
  }
  if (!strcmp(type, "ByteLevel")) return tok_dec_add(L, DEC_BYTE_LEVEL) ? 0 : tok_oom(L);
  if (!strcmp(type, "ByteFallback")) return tok_dec_add(L, DEC_BYTE_FALLBACK) ? 0 : tok_oom(L);
  if (!strcmp(type, "Fuse")) return tok_dec_add(L, DEC_FUSE) ? 0 : tok_oom(L);
  if (!strcmp(type, "WordPiece")) {
    const char *prefix = tok_jstr(o, "prefix");
    if (!(s = tok_dec_add(L, DEC_WORDPIECE)) || !(s->a = tok_dup_str(prefix ? prefix : "##", &s->a_len))) return tok_oom(L);
    s->cleanup = tok_jbool(o, "cleanup", true);
    return 0;
  }
  if (!strcmp(type, "Metaspace")) {
    const char *r = tok_jstr(o, "replacement");
    if (!(s = tok_dec_add(L, DEC_METASPACE)) || !(s->a = tok_dup_str(r ? r : "\xe2\x96\x81", &s->a_len))) return tok_oom(L);
    s->prepend = prepend_scheme(o);
    return 0;
  }
  if (!strcmp(type, "Replace")) {
    const char *lit = tok_jstr(cJSON_GetObjectItemCaseSensitive(o, "pattern"), "String"), *content = tok_jstr(o, "content");
    if (!lit || !content) return pith_fail(L->err, "%s: decoder Replace supports a String pattern only", L->path);
    if (!(s = tok_dec_add(L, DEC_REPLACE)) || !(s->a = tok_dup_str(lit, &s->a_len)) || !(s->b = tok_dup_str(content, &s->b_len)))
      return tok_oom(L);
    return 0;
  }
  if (!strcmp(type, "Strip")) {
    const char *content = tok_jstr(o, "content");
    if (!(s = tok_dec_add(L, DEC_STRIP)) || !(s->a = tok_dup_str(content ? content : " ", &s->a_len))) return tok_oom(L);
    s->start = tok_jint(o, "start", 0), s->stop = tok_jint(o, "stop", 0);
    return 0;
  }
  return pith_fail(L->err, "%s: decoder type '%s' is not supported", L->path, type);
}

int tok_span_push(span_list *l, size_t off, size_t len, bool at_start) {
  if (!len) return 0;  // HF drops empty pieces
  if (l->n == l->cap && tok_grow(&l->p, &l->cap, l->n + 1, sizeof *l->p)) return -1;
  l->p[l->n++] = (span){(uint32_t)off, (uint32_t)len, at_start};
  return 0;
}

static int iv_push(enc *e, size_t start, size_t end, bool match) {
  if (e->n_iv == e->cap_iv && tok_grow(&e->iv, &e->cap_iv, e->n_iv + 1, sizeof *e->iv)) return -1;
  e->iv[e->n_iv++] = (interval){(uint32_t)start, (uint32_t)end, match};
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

static int replace_all(enc *e, const norm_step *st, const char *s, size_t n, strbuf *out) {
  size_t pos = 0, ms, me;
  for (;;) {
    int found;
    if (st->re) {
      found = regex_next(e, st->re, s, n, pos, &ms, &me);
      if (found < 0) return -1;
      if (found && me == ms) {  // an empty match: keep one character, look further
        size_t l = ms < n ? utf8_char_len(s + ms, n - ms) : 0;
        if (strbuf_add(out, s + pos, ms - pos) || strbuf_add(out, st->b, st->b_len) || strbuf_add(out, s + ms, l)) return -1;
        if ((pos = ms + l) >= n) return 0;
        continue;
      }
    } else {
      const char *hit = st->a_len ? memmem(s + pos, n - pos, st->a, st->a_len) : NULL;
      found = hit != NULL;
      if (hit) ms = (size_t)(hit - s), me = ms + st->a_len;
    }
    if (!found) return strbuf_add(out, s + pos, n - pos);
    if (strbuf_add(out, s + pos, ms - pos) || strbuf_add(out, st->b, st->b_len)) return -1;
    pos = me;
  }
}

static int strip_spaces(const norm_step *st, const char *s, size_t n, strbuf *out) {
  size_t a = 0, b = n, l;
  while (st->left && a < b && tok_is_unicode_space(tok_char_at(s + a, b - a, &l))) a += l;
  while (st->right && b > a && tok_is_unicode_space(tok_char_at(s + utf8_prev(s, b), b - utf8_prev(s, b), &l)))
    b = utf8_prev(s, b);
  return strbuf_add(out, s + a, b - a);
}

// Apply the normalizer to s; *out points into e's buffers (or at s when there is nothing to do).
int tok_normalize(enc *e, const char *s, size_t n, const char **out, size_t *out_n) {
  const tokenizer *t = e->t;
  int cur = 0;
  for (int i = 0; i < t->n_norm; i++) {
    const norm_step *st = &t->norm[i];
    strbuf *dst = &e->norm[cur];
    dst->n = 0;
    int rc = 0;
    switch (st->kind) {
      case NORM_PREPEND: rc = n ? strbuf_add(dst, st->a, st->a_len) || strbuf_add(dst, s, n) : strbuf_add(dst, "", 0); break;
      case NORM_REPLACE: rc = replace_all(e, st, s, n, dst); break;
      case NORM_STRIP: rc = strip_spaces(st, s, n, dst); break;
      case NORM_NFC: rc = strbuf_add(dst, s, n); break;  // identity: exact for text already in NFC
      case NORM_BERT: rc = tok_norm_bert(e, st, s, n, dst); break;
      case NORM_PRECOMPILED: rc = tok_norm_precompiled(e, st, s, n, dst); break;
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
    if (tok_span_push(&e->spans2, parent.off + v[i].start, v[i].end - v[i].start, parent.at_start && v[i].start == 0))
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
      pos = me + (me < n ? utf8_char_len(s + me, n - me) : 1);
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
  if (strbuf_reserve(&e->work, (sp.len + 1) * rl)) return -1;
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
  if (!st->split) return tok_span_push(&e->spans2, start, len, sp.at_start);
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
  if (e->work.p[sp.off] == ' ') return tok_span_push(&e->spans2, sp.off, sp.len, sp.at_start);
  size_t start = e->work.n;
  if (strbuf_reserve(&e->work, sp.len + 1)) return -1;
  e->work.p[e->work.n++] = ' ';
  memcpy(e->work.p + e->work.n, e->work.p + sp.off, sp.len);
  e->work.n += sp.len;
  return tok_span_push(&e->spans2, start, sp.len + 1, sp.at_start);
}

// Pre-tokenize s and BPE-encode each piece into e->out.
int tok_pre_tokenize(enc *e, const char *s, size_t n, bool at_start) {
  const tokenizer *t = e->t;
  e->work.n = e->spans.n = 0;
  if (strbuf_add(&e->work, s, n) || tok_span_push(&e->spans, 0, n, at_start)) return -1;
  for (int i = 0; i < t->n_pre; i++) {
    const pre_step *st = &t->pre[i];
    if (st->kind == PRE_BYTE_LEVEL) continue;  // the mapping happens in bpe_word
    e->spans2.n = 0;
    for (size_t k = 0; k < e->spans.n; k++) {
      span sp = e->spans.p[k];
      int rc = st->kind == PRE_SPLIT ? split_regex(e, st, sp)
             : st->kind == PRE_METASPACE ? metaspace(e, st, sp)
             : st->kind == PRE_BERT ? tok_pre_bert(e, sp) : prefix_space(e, sp);
      if (rc) return -1;
    }
    span_list tmp = e->spans;
    e->spans = e->spans2, e->spans2 = tmp;
  }
  for (size_t k = 0; k < e->spans.n; k++) {
    const char *w = e->work.p + e->spans.p[k].off;
    size_t wn = e->spans.p[k].len;
    int rc = t->model == MODEL_WORDPIECE ? tok_wordpiece_word(e, w, wn)
           : t->model == MODEL_UNIGRAM ? tok_unigram_word(e, w, wn) : tok_bpe_word(e, w, wn);
    if (rc) return -1;
  }
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

// Append s to out with each invalid UTF-8 run replaced by U+FFFD (Rust's from_utf8_lossy).
int tok_put_lossy(strbuf *out, const char *s, size_t n) {
  for (size_t i = 0; i < n;) {
    uint32_t cp;
    int l = utf8_decode(s + i, n - i, &cp);
    if (l ? strbuf_add(out, s + i, (size_t)l) : strbuf_add(out, "\xef\xbf\xbd", 3)) return -1;
    i += l ? (size_t)l : (size_t)utf8_invalid_len(s + i, n - i);
  }
  return 0;
}

// The decoder works on a list of token strings, as HF's decode_chain does.
typedef struct {
  size_t off, len;  // in tok_list.buf
} tl_item;

typedef struct {
  strbuf buf;        // the tokens back to back
  tl_item *it;
  size_t n, cap;
} tok_list;

static int tl_push(tok_list *l, const char *s, size_t n) {
  if (l->n == l->cap && tok_grow(&l->it, &l->cap, l->n + 1, sizeof *l->it)) return -1;
  l->it[l->n++] = (tl_item){l->buf.n, n};
  return strbuf_add(&l->buf, s, n);
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
  strbuf raw = {0}, fixed = {0};
  int rc = strbuf_add(&raw, "", 0);
  for (size_t i = 0; !rc && i < in->n; i++) {
    const char *s = TL_STR(in, i);
    size_t n = TL_LEN(in, i), start = raw.n, l;
    for (size_t j = 0; !rc && j < n; j += l) {
      uint32_t cp = tok_char_at(s + j, n - j, &l);
      int b = cp < 512 && l > 0 ? t->char_byte[cp] : -1;
      if (b < 0) {
        raw.n = start;
        rc = strbuf_add(&raw, s, n);
        break;
      }
      char c = (char)b;
      rc = strbuf_add(&raw, &c, 1);
    }
  }
  if (!rc) rc = strbuf_add(&fixed, "", 0) || tok_put_lossy(&fixed, raw.p, raw.n) || tl_push(out, fixed.p, fixed.n);
  free(raw.p);
  free(fixed.p);
  return rc;
}

// <0xNN> tokens in a row become their bytes (or one U+FFFD per byte when not valid UTF-8).
static int flush_bytes(strbuf *run, tok_list *out) {
  if (!run->n) return 0;
  bool valid = utf8_valid(run->p, run->n);
  int rc = valid ? tl_push(out, run->p, run->n) : 0;
  for (size_t i = 0; !valid && !rc && i < run->n; i++) rc = tl_push(out, "\xef\xbf\xbd", 3);
  run->n = 0;
  return rc;
}

int tok_byte_token_value(const char *s, size_t n) {
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
  strbuf run = {0};
  int rc = 0;
  for (size_t i = 0; !rc && i < in->n; i++) {
    int v = tok_byte_token_value(TL_STR(in, i), TL_LEN(in, i));
    char c = (char)v;
    rc = v >= 0 ? strbuf_add(&run, &c, 1) : flush_bytes(&run, out) || tl_push(out, TL_STR(in, i), TL_LEN(in, i));
  }
  if (!rc) rc = flush_bytes(&run, out);
  free(run.p);
  return rc;
}

// Per token: pattern a -> b (Replace), or the Metaspace replacement -> ' ' (dropped in the first
// token unless prepend_scheme is "never", as HF does).
static int dec_replace(const dec_step *st, const tok_list *in, tok_list *out) {
  strbuf tok = {0};
  int rc = 0;
  for (size_t i = 0; !rc && i < in->n; i++) {
    const char *s = TL_STR(in, i), *hit;
    size_t n = TL_LEN(in, i), pos = 0;
    bool drop = st->kind == DEC_METASPACE && i == 0 && st->prepend != PREPEND_NEVER;
    const char *to = st->kind == DEC_METASPACE ? (drop ? "" : " ") : st->b;
    size_t to_n = st->kind == DEC_METASPACE ? (drop ? 0 : 1) : st->b_len;
    tok.n = 0;
    rc = strbuf_add(&tok, "", 0);
    while (!rc && st->a_len && (hit = memmem(s + pos, n - pos, st->a, st->a_len))) {
      rc = strbuf_add(&tok, s + pos, (size_t)(hit - s) - pos) || strbuf_add(&tok, to, to_n);
      pos = (size_t)(hit - s) + st->a_len;
    }
    if (!rc) rc = strbuf_add(&tok, s + pos, n - pos) || tl_push(out, tok.p, tok.n);
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

// WordPiece: a token with the prefix joins the one before it (prefix removed), any other token
// after the first gets a space; cleanup then undoes the spaces BERT's pre-tokenizer put before
// punctuation and contractions, per token, as HF's decoder does.
static int dec_wordpiece(const dec_step *st, const tok_list *in, tok_list *out) {
  static const char *const from[] = {" .", " ?", " !", " ,", " ' ", " n't", " 'm", " do not", " 's", " 've", " 're"};
  static const char *const to[] = {".", "?", "!", ",", "'", "n't", "'m", " don't", "'s", "'ve", "'re"};
  strbuf a = {0}, b = {0};
  int rc = 0;
  for (size_t i = 0; !rc && i < in->n; i++) {
    const char *s = TL_STR(in, i);
    size_t n = TL_LEN(in, i);
    a.n = 0;
    if (i > 0 && n >= st->a_len && !memcmp(s, st->a, st->a_len)) rc = strbuf_add(&a, s + st->a_len, n - st->a_len);
    else rc = (i > 0 && strbuf_add(&a, " ", 1)) || strbuf_add(&a, s, n);
    for (size_t k = 0; !rc && st->cleanup && k < sizeof from / sizeof from[0]; k++) {
      size_t fl = strlen(from[k]), pos = 0;
      const char *hit;
      if (!memmem(a.p, a.n, from[k], fl)) continue;
      b.n = 0;
      while (!rc && (hit = memmem(a.p + pos, a.n - pos, from[k], fl))) {
        rc = strbuf_add(&b, a.p + pos, (size_t)(hit - a.p) - pos) || strbuf_adds(&b, to[k]);
        pos = (size_t)(hit - a.p) + fl;
      }
      if (!rc) rc = strbuf_add(&b, a.p + pos, a.n - pos);
      strbuf tmp = a;
      a = b, b = tmp;
    }
    if (!rc) rc = tl_push(out, a.p ? a.p : "", a.n);
  }
  free(a.p);
  free(b.p);
  return rc;
}

static int dec_fuse(const tok_list *in, tok_list *out) {
  if (tl_push(out, "", 0)) return -1;
  out->it[0].len = in->buf.n;  // in->buf holds the tokens back to back
  return strbuf_add(&out->buf, in->buf.p ? in->buf.p : "", in->buf.n);
}

static int dec_apply(const tokenizer *t, const dec_step *st, const tok_list *in, tok_list *out) {
  switch (st->kind) {
    case DEC_BYTE_LEVEL: return dec_byte_level(t, in, out);
    case DEC_BYTE_FALLBACK: return dec_byte_fallback(in, out);
    case DEC_METASPACE:
    case DEC_REPLACE: return dec_replace(st, in, out);
    case DEC_STRIP: return dec_strip(st, in, out);
    case DEC_FUSE: return dec_fuse(in, out);
    case DEC_WORDPIECE: return dec_wordpiece(st, in, out);
  }
  return -1;
}

int tok_decode_hf(const tokenizer *t, const int32_t *ids, size_t n, int skip_special, strbuf *out) {
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
    rc = (i && !t->has_decoder && strbuf_add(out, " ", 1)) || tok_put_lossy(out, TL_STR(&a, i), TL_LEN(&a, i));
  tl_free(&a);
  tl_free(&b);
  return rc;
}
