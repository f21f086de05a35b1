// tiktoken files (cl100k_base.tiktoken and tiktoken's cache copies of it): one "base64-token rank"
// a line, a byte-level BPE in which a token's rank is its merge priority. A text is split by
// cl100k's pre-tokenizer regex, each piece is one token when it is in the vocabulary, else its
// bytes are merged pairwise, always the adjacent pair whose concatenation has the lowest rank
// (tiktoken's byte_pair_merge). Ids are the ranks. cl100k's special tokens (<|endoftext|> ...)
// are matched in the text, as tiktoken's encode(allowed_special="all") does.
// LLMLingua-2 weighs each word by its cl100k token count, so its parity needs these counts.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer_internal.h"

// cl100k_base's pat_str (tiktoken_ext/openai_public.py); PCRE2 has the possessive quantifiers.
static const char CL100K_PATTERN[] =
    "'(?i:[sdmt]|ll|ve|re)|[^\\r\\n\\p{L}\\p{N}]?+\\p{L}++|\\p{N}{1,3}+| ?[^\\s\\p{L}\\p{N}]++[\\r\\n]*+|\\s++$|"
    "\\s*[\\r\\n]|\\s+(?!\\S)|\\s";

static const struct {
  const char *s;
  int32_t id;
} CL100K_SPECIALS[] = {{"<|endoftext|>", 100257}, {"<|fim_prefix|>", 100258}, {"<|fim_middle|>", 100259},
                       {"<|fim_suffix|>", 100260}, {"<|endofprompt|>", 100276}};

static int b64_value(int c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

// Decode n base64 characters (padding allowed) into out; the byte count, or -1.
static int b64_decode_into(const char *s, size_t n, char *out) {
  uint32_t acc = 0;
  int bits = 0, k = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '=') break;
    int v = b64_value((unsigned char)s[i]);
    if (v < 0) return -1;
    acc = acc << 6 | (uint32_t)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[k++] = (char)(acc >> bits & 0xFF);
    }
  }
  return k;
}

int tok_is_tiktoken_name(const char *path) {
  const char *base = pith_base_name(path);
  size_t n = strlen(base);
  if (n > 9 && !strcmp(base + n - 9, ".tiktoken")) return 1;
  if (n != 40) return 0;  // tiktoken's cache names a file by the sha1 of its URL
  for (size_t i = 0; i < n; i++)
    if (!strchr("0123456789abcdef", base[i])) return 0;
  return 1;
}

int tok_load_tiktoken(loader *L, const char *text, size_t len) {
  tokenizer *t = L->t;
  t->kind = TOK_TIKTOKEN;
  t->model = MODEL_BPE;
  // first pass: the largest rank, for the tables
  int32_t max_rank = -1, lines = 0;
  for (const char *p = text, *end = text + len; p < end;) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    if (!nl) nl = end;
    const char *sp = memchr(p, ' ', (size_t)(nl - p));
    if (nl > p) {
      char *e;
      long r = sp ? strtol(sp + 1, &e, 10) : -1;
      if (!sp || sp == p || e == sp + 1 || (e != nl && !(e + 1 == nl && *e == '\r')) || r < 0 || r > 10000000)
        return pith_fail(L->err, "%s: line %d: not \"base64-token rank\" (a tiktoken file)", L->path, lines + 1);
      if (r > max_rank) max_rank = (int32_t)r;
    }
    lines++;
    p = nl + 1;
  }
  if (max_rank < 0) return pith_fail(L->err, "%s: no tokens (a tiktoken file has \"base64-token rank\" lines)", L->path);
  int32_t n_vocab = max_rank + 1;
  for (size_t i = 0; i < sizeof CL100K_SPECIALS / sizeof *CL100K_SPECIALS; i++)
    if (CL100K_SPECIALS[i].id >= n_vocab) n_vocab = CL100K_SPECIALS[i].id + 1;
  if (tok_alloc_vocab(t, n_vocab) || tok_strmap_init(&t->vocab, (size_t)max_rank + 1)) return tok_oom(L);
  char buf[1024];
  int line = 0;
  for (const char *p = text, *end = text + len; p < end;) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    if (!nl) nl = end;
    line++;
    if (nl > p) {
      const char *sp = memchr(p, ' ', (size_t)(nl - p));
      int32_t r = (int32_t)strtol(sp + 1, NULL, 10);
      int k = (size_t)(sp - p) <= sizeof buf * 4 / 3 ? b64_decode_into(p, (size_t)(sp - p), buf) : -1;
      if (k <= 0) return pith_fail(L->err, "%s: line %d: the token is not base64", L->path, line);
      str_ref ref;
      if (tok_pool_add(t, buf, (size_t)k, &ref) || tok_strmap_put(&t->vocab, t->pool, ref, r, false)) return tok_oom(L);
      if (t->pieces[r].off != UINT32_MAX) return pith_fail(L->err, "%s: line %d: rank %d given twice", L->path, line, r);
      t->pieces[r] = ref;
    }
    p = nl + 1;
  }
  if (tok_strmap_init(&t->added_map, 16)) return tok_oom(L);
  for (size_t i = 0; i < sizeof CL100K_SPECIALS / sizeof *CL100K_SPECIALS; i++) {
    int32_t id = CL100K_SPECIALS[i].id;
    if (id <= max_rank && t->pieces[id].off != UINT32_MAX) continue;
    added_token *a = realloc(t->added, (size_t)(t->n_added + 1) * sizeof *a);
    if (!a) return tok_oom(L);
    t->added = a;
    str_ref ref;
    if (tok_pool_add(t, CL100K_SPECIALS[i].s, strlen(CL100K_SPECIALS[i].s), &ref) ||
        tok_strmap_put(&t->added_map, t->pool, ref, id, false))
      return tok_oom(L);
    t->added[t->n_added++] = (added_token){.id = id, .s = ref, .special = true};
    t->pieces[id] = ref;
    t->flags[id] = TOK_SPECIAL | TOK_ADDED;
  }
  pre_step *st = tok_pre_add(L, PRE_SPLIT);
  if (!st) return -1;
  if (!(st->re = tok_regex_compile(L, CL100K_PATTERN, false, "cl100k pre-tokenizer"))) return -1;
  t->unk_id = -1;
  return tok_finish_added(L);
}

// One pre-token: a single token when the vocabulary has it, else tiktoken's byte_pair_merge.
static int tiktoken_piece(enc *e, const char *s, size_t n) {
  const tokenizer *t = e->t;
  int32_t id = tok_strmap_get(&t->vocab, t->pool, s, n);
  if (id >= 0) return tok_ids_push(&e->out, id);
  // parts: start offsets of the current symbols (n + 1 entries with the end)
  size_t *part = malloc((n + 1) * sizeof *part);
  if (!part) return -1;
  size_t m = n + 1;
  for (size_t i = 0; i <= n; i++) part[i] = i;
  while (m > 2) {
    int32_t best = INT32_MAX;
    size_t at = 0;
    for (size_t i = 0; i + 2 < m; i++) {
      int32_t r = tok_strmap_get(&t->vocab, t->pool, s + part[i], part[i + 2] - part[i]);
      if (r >= 0 && r < best) best = r, at = i;  // the leftmost of equal ranks, as tiktoken
    }
    if (best == INT32_MAX) break;
    memmove(part + at + 1, part + at + 2, (m - at - 2) * sizeof *part);
    m--;
  }
  int rc = 0;
  for (size_t i = 0; !rc && i + 1 < m; i++) {
    id = tok_strmap_get(&t->vocab, t->pool, s + part[i], part[i + 1] - part[i]);
    if (id < 0) {  // every single byte is a cl100k token; a file without one cannot encode it
      snprintf(e->fail, sizeof e->fail, "byte 0x%02X is not a token of this tiktoken file", (uint8_t)s[part[i]]);
      rc = -1;
    } else {
      rc = tok_ids_push(&e->out, id);
    }
  }
  free(part);
  return rc;
}

// Text without special tokens: every match of the pre-tokenizer regex, in order.
int tok_encode_tiktoken(enc *e, const char *s, size_t n) {
  const pcre2_code *re = e->t->pre[0].re;
  size_t off = 0;
  while (off < n) {
    int rc = pcre2_match(re, (PCRE2_SPTR)s, n, off, 0, e->md, NULL);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR msg[120];
      pcre2_get_error_message(rc, msg, sizeof msg);
      snprintf(e->fail, sizeof e->fail, "cl100k pre-tokenizer: %s", (char *)msg);
      return -1;
    }
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->md);
    if (ov[1] == ov[0]) {  // the pattern never matches empty text; step on to be safe
      off = ov[1] + 1;
      continue;
    }
    if (tiktoken_piece(e, s + ov[0], ov[1] - ov[0])) return -1;
    off = ov[1];
  }
  return 0;
}

int tok_decode_tiktoken(const tokenizer *t, const int32_t *ids, size_t n, int skip_special, strbuf *out) {
  strbuf raw = {0};
  for (size_t i = 0; i < n; i++) {
    if (skip_special && (t->flags[ids[i]] & TOK_SPECIAL)) continue;
    strbuf_add(&raw, t->pool + t->pieces[ids[i]].off, t->pieces[ids[i]].len);
  }
  int rc = strbuf_ok(&raw) ? tok_put_lossy(out, raw.p ? raw.p : "", raw.n) : -1;
  strbuf_free(&raw);
  return rc;
}
