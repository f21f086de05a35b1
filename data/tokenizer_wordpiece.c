// tokenizer WordPiece: BERT's tokenizers (bert-base-multilingual-cased, bert-base-uncased, ...) as
// Hugging Face tokenizers runs them. The model: greedy longest-match-first within a word, later
// pieces carrying the continuing-subword prefix ("##"), a word with an unmatched rest or over
// max_input_chars_per_word characters becoming the one unk token. BertNormalizer: clean_text
// (controls removed, whitespace to ' '), handle_chinese_chars (spaces around CJK ideographs),
// strip_accents (NFD, then nonspacing marks removed), lowercase (full per-character mappings).
// BertPreTokenizer: whitespace splits (removed), every punctuation character alone. The Unicode
// data comes from tokenizer_unicode.c (scripts/gen-unicode-tables).
#include "tokenizer_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------------

int tok_load_wordpiece(loader *L, const cJSON *model, const cJSON *added) {
  tokenizer *t = L->t;
  const char *prefix = tok_jstr(model, "continuing_subword_prefix");
  const char *unk = tok_jstr(model, "unk_token");
  t->model = MODEL_WORDPIECE;
  t->wp_max_chars = tok_jint(model, "max_input_chars_per_word", 100);
  if (!(t->cont_prefix = strdup(prefix ? prefix : "##")) || !(t->unk_piece = strdup(unk ? unk : "[UNK]"))) return tok_oom(L);
  if (tok_load_vocab(L, cJSON_GetObjectItemCaseSensitive(model, "vocab"), added)) return -1;
  for (int32_t i = 0; i < t->n_vocab; i++)
    if (t->pieces[i].off != UINT32_MAX && t->pieces[i].len > t->max_piece) t->max_piece = t->pieces[i].len;
  // A missing unk token is an error only once a word needs it, as in HF.
  t->unk_id = tok_strmap_get(&t->vocab, t->pool, t->unk_piece, strlen(t->unk_piece));
  return 0;
}

static int push_unk(enc *e) {
  const tokenizer *t = e->t;
  if (t->unk_id < 0) {
    snprintf(e->fail, sizeof e->fail, "WordPiece: a word needs the unk token '%s', which is not in the vocabulary", t->unk_piece);
    return -1;
  }
  return tok_ids_push(&e->out, t->unk_id);
}

int tok_wordpiece_word(enc *e, const char *w, size_t n) {
  const tokenizer *t = e->t;
  size_t pl = strlen(t->cont_prefix), mark = e->out.n, start = 0;
  if (!n) return 0;
  if (utf8_count(w, n) > (size_t)t->wp_max_chars) return push_unk(e);
  while (start < n) {
    int32_t id = -1;
    size_t end = n;
    if (end - start > t->max_piece) {  // no piece is longer: start at the last character that fits
      end = start + t->max_piece;
      while (end > start && ((uint8_t)w[end] & 0xC0) == 0x80) end--;
    }
    while (end > start) {
      strbuf *k = &e->key;
      k->n = 0;
      if ((start > 0 && strbuf_add(k, t->cont_prefix, pl)) || strbuf_add(k, w + start, end - start)) return -1;
      if ((id = tok_strmap_get(&t->vocab, t->pool, k->p, k->n)) >= 0) break;
      end = utf8_prev(w, end);
    }
    if (id < 0) {  // no piece fits here: the whole word is unk
      e->out.n = mark;
      return push_unk(e);
    }
    if (tok_ids_push(&e->out, id)) return -1;
    start = end;
  }
  return 0;
}

// ---------------------------------------------------------------------------------------------
// BertNormalizer
// ---------------------------------------------------------------------------------------------

// The CJK ideograph blocks BERT puts spaces around (not Hangul, Hiragana or Katakana).
static bool is_chinese(uint32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
         (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

static int cps_push(enc *e, uint32_t c) {
  if (e->n_cps == e->cap_cps && tok_grow(&e->cps, &e->cap_cps, e->n_cps + 1, sizeof *e->cps)) return -1;
  e->cps[e->n_cps++] = c;
  return 0;
}

// Push c, decomposed (NFD) when stripping accents.
static int push_char(enc *e, const norm_step *st, uint32_t c) {
  uint32_t d[TOK_UC_MAX_NFD];
  int n = st->strip_accents ? tok_uc_nfd(c, d) : (d[0] = c, 1);
  for (int i = 0; i < n; i++)
    if (cps_push(e, d[i])) return -1;
  return 0;
}

int tok_norm_bert(enc *e, const norm_step *st, const char *s, size_t n, strbuf *out) {
  e->n_cps = 0;
  for (size_t i = 0; i < n;) {
    uint32_t c;
    int l = utf8_decode(s + i, n - i, &c);
    if (!l) c = 0xFFFD, l = utf8_invalid_len(s + i, n - i);  // HF never sees invalid UTF-8
    i += (size_t)l;
    if (st->clean_text) {  // controls go (\t \n \r count as whitespace), whitespace becomes ' '
      bool tnr = c == '\t' || c == '\n' || c == '\r';
      if (c == 0 || c == 0xFFFD || (!tnr && tok_uc_is_control(c))) continue;
      if (tnr || tok_is_unicode_space(c)) c = ' ';
    }
    int rc = st->chinese_chars && is_chinese(c) ? cps_push(e, ' ') || push_char(e, st, c) || cps_push(e, ' ')
                                                  : push_char(e, st, c);
    if (rc) return -1;
  }
  uint32_t *p = e->cps;
  size_t m = e->n_cps;
  if (st->strip_accents) {  // canonical ordering (a stable sort of each run of combining marks), then Mn out
    for (size_t i = 1; i < m; i++) {
      int k = tok_uc_ccc(p[i]);
      for (size_t j = i; k && j > 0 && tok_uc_ccc(p[j - 1]) > k; j--) {
        uint32_t x = p[j];
        p[j] = p[j - 1], p[j - 1] = x;
      }
    }
    size_t w = 0;
    for (size_t i = 0; i < m; i++)
      if (!tok_uc_is_mn(p[i])) p[w++] = p[i];
    m = w;
  }
  if (strbuf_add(out, "", 0) || strbuf_reserve(out, m * 4)) return -1;
  for (size_t i = 0; i < m; i++) {
    uint32_t lo[TOK_UC_MAX_LOWER];
    int k = st->lowercase ? tok_uc_lower(p[i], lo) : (lo[0] = p[i], 1);
    for (int j = 0; j < k; j++) {
      char buf[4];
      if (strbuf_add(out, buf, utf8_encode(lo[j], buf))) return -1;
    }
  }
  return 0;
}

// ---------------------------------------------------------------------------------------------
// BertPreTokenizer
// ---------------------------------------------------------------------------------------------

static bool is_bert_punct(uint32_t c) {
  if (c < 0x80) return (c >= '!' && c <= '/') || (c >= ':' && c <= '@') || (c >= '[' && c <= '`') || (c >= '{' && c <= '~');
  return tok_uc_is_punct(c);
}

int tok_pre_bert(enc *e, span sp) {
  const char *s = e->work.p + sp.off;
  size_t n = sp.len, word = 0;
  for (size_t i = 0; i < n;) {
    uint32_t c;
    int l = utf8_decode(s + i, n - i, &c);
    size_t len = l ? (size_t)l : 1;
    bool space = l && tok_is_unicode_space(c), punct = l && is_bert_punct(c);
    if (space || punct) {
      if (i > word && tok_span_push(&e->spans2, sp.off + word, i - word, sp.at_start && word == 0)) return -1;
      if (punct && tok_span_push(&e->spans2, sp.off + i, len, sp.at_start && i == 0)) return -1;
      word = i + len;
    }
    i += len;
  }
  return n > word ? tok_span_push(&e->spans2, sp.off + word, n - word, sp.at_start && word == 0) : 0;
}
