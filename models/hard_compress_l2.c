// hard_compress_l2: LLMLingua-2 (see hard_compress_l2.h for the algorithm).
#include "hard_compress_l2.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "strbuf.h"
#include "utf8.h"
#include "torch_shim.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#define L2_MAX_SEQ 512  // llmlingua's max_seq_len: [CLS] + 510 + [SEP]

static const char PUNCT[] = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";  // Python's string.punctuation
static const char SPM_SPACE[] = "\xe2\x96\x81";                    // ▁

l2_options l2_options_default(void) {
  return (l2_options){.rate = 0.5, .target_tokens = -1, .context_filter = 1, .token_filter = 1};
}

// ---------------------------------------------------------------------------------------------
// Strings
// ---------------------------------------------------------------------------------------------

typedef struct {
  char **p;
  int n, cap;
} str_list;

static int list_push(str_list *l, char *s) {
  if (!s) return -1;
  if (l->n == l->cap) {
    int cap = l->cap ? 2 * l->cap : 16;
    char **p = realloc(l->p, (size_t)cap * sizeof *p);
    if (!p) return free(s), -1;
    l->p = p, l->cap = cap;
  }
  l->p[l->n++] = s;
  return 0;
}

static void list_free(str_list *l) {
  for (int i = 0; i < l->n; i++) free(l->p[i]);
  free(l->p);
  *l = (str_list){0};
}

// Python's s.replace(from, to): every non-overlapping occurrence, left to right. malloc'd.
static char *replace_all(const char *s, const char *from, const char *to) {
  size_t nf = strlen(from);
  strbuf b = {0};
  strbuf_add(&b, "", 0);
  if (!nf) return strbuf_adds(&b, s), strbuf_take(&b, NULL);
  for (const char *p = s, *q; *p; p = q + nf) {
    q = strstr(p, from);
    if (!q) {
      strbuf_adds(&b, p);
      break;
    }
    strbuf_add(&b, p, (size_t)(q - p));
    strbuf_adds(&b, to);
    if (!q[nf]) break;
  }
  if (!strbuf_ok(&b)) return strbuf_free(&b), NULL;
  return strbuf_take(&b, NULL);
}

static int starts_with(const char *s, const char *prefix) { return !strncmp(s, prefix, strlen(prefix)); }

// s.lstrip(chars) for BERT ("#") and XLM-R ("▁").
static const char *lstrip_prefix(const char *s, int xlmr) {
  if (xlmr)
    while (starts_with(s, SPM_SPACE)) s += 3;
  else
    while (*s == '#') s++;
  return s;
}

static int in_list(const char *s, const char *const *v, int n) {
  for (int i = 0; i < n; i++)
    if (!strcmp(s, v[i])) return 1;
  return 0;
}

static int has_digit(const char *s) {  // re.search(r"\d"), ASCII digits
  for (; *s; s++)
    if (*s >= '0' && *s <= '9') return 1;
  return 0;
}

// convert_tokens_to_string: the tokenizer's decoder over token strings. BERT: WordPiece (a piece
// with "##" joins the previous one, others get a space, then the cleanup of " ." and friends,
// token by token); XLM-R: Metaspace ("▁" is a space, and every "▁" of the first token goes).
static char *tokens_to_string(char *const *tok, int n, int xlmr) {
  static const char *const CLEANUP[][2] = {{" .", "."},     {" ?", "?"},     {" !", "!"},          {" ,", ","},
                                           {" ' ", "'"},    {" n't", "n't"}, {" 'm", "'m"},        {" do not", " don't"},
                                           {" 's", "'s"},   {" 've", "'ve"}, {" 're", "'re"}};
  strbuf b = {0};
  strbuf_add(&b, "", 0);
  for (int i = 0; i < n; i++) {
    const char *t = tok[i];
    if (xlmr) {
      for (const char *p = t; *p;) {
        if (starts_with(p, SPM_SPACE)) {
          if (i) strbuf_addc(&b, ' ');
          p += 3;
        } else {
          strbuf_addc(&b, *p++);
        }
      }
      continue;
    }
    strbuf one = {0};
    if (i && starts_with(t, "##")) strbuf_adds(&one, t + 2);
    else if (i) strbuf_addc(&one, ' '), strbuf_adds(&one, t);
    else strbuf_adds(&one, t);
    strbuf_add(&one, "", 0);
    char *cur = strbuf_take(&one, NULL);
    for (size_t k = 0; cur && k < sizeof CLEANUP / sizeof *CLEANUP; k++) {
      char *next = replace_all(cur, CLEANUP[k][0], CLEANUP[k][1]);
      free(cur);
      cur = next;
    }
    if (!cur) return strbuf_free(&b), NULL;
    strbuf_adds(&b, cur);
    free(cur);
  }
  if (!strbuf_ok(&b)) return strbuf_free(&b), NULL;
  return strbuf_take(&b, NULL);
}

// ---------------------------------------------------------------------------------------------
// Percentile
// ---------------------------------------------------------------------------------------------

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

double l2_percentile(double *v, int64_t n, int q, int f32) {
  if (n <= 0) return NAN;
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  double vi = (double)(n - 1) * ((double)q / 100.0);
  if (vi >= (double)(n - 1)) return v[n - 1];
  if (vi < 0) return v[0];
  int64_t lo = (int64_t)floor(vi);
  double t = vi - (double)lo, a = v[lo], b = v[lo + 1];
  // numpy's _lerp: a + (b - a)·t, or b − (b − a)·(1 − t) from t = 0.5 on, in the array's dtype
  if (f32) {
    float fa = (float)a, fb = (float)b, d = fb - fa;
    return t >= 0.5 ? (double)(fb - d * (float)(1.0 - t)) : (double)(fa + d * (float)t);
  }
  double d = b - a;
  return t >= 0.5 ? b - d * (1.0 - t) : a + d * t;
}

// ---------------------------------------------------------------------------------------------
// The scorer
// ---------------------------------------------------------------------------------------------

int l2_scorer_init(l2_scorer *s, encoder_model *m, const tokenizer *tok, const tokenizer *cl100k, pith_err *err) {
  *s = (l2_scorer){.m = m, .tok = tok, .cl100k = cl100k, .xlmr = m->cfg.arch == ENCODER_XLM_ROBERTA};
  s->n_tok = tokenizer_vocab_size(tok);
  if (s->n_tok > m->cfg.vocab_size)
    return pith_fail(err, "%s: the tokenizer has %d tokens but the classifier only %d", tokenizer_source_path(tok),
                     (int)s->n_tok, m->cfg.vocab_size);
  if (m->cfg.num_labels < 2)
    return pith_fail(err, "the classifier has %d label(s); LLMLingua-2 reads label 1 (keep) of 2", m->cfg.num_labels);
  int32_t unk = tokenizer_unk_id(tok);
  s->cls_id = tokenizer_token_id(tok, "[CLS]");
  s->sep_id = tokenizer_token_id(tok, "[SEP]");
  if (s->cls_id < 0) s->cls_id = unk;
  if (s->sep_id < 0) s->sep_id = unk;
  if (s->cls_id < 0 || s->sep_id < 0)
    return pith_fail(err, "%s: neither [CLS]/[SEP] nor an unk token in the vocabulary", tokenizer_source_path(tok));
  return 0;
}

// resize_token_embeddings(len(tokenizer) + 100): rows past the old table are the old rows' mean.
static int grow_embeddings(l2_scorer *s, pith_err *err) {
  encoder_model *m = s->m;
  int64_t old_n = m->cfg.vocab_size, new_n = (int64_t)s->n_tok + L2_MAX_FORCE;
  pt_scope sc = pt_scope_begin();
  pt_tensor *keep = pt_slice(m->word_emb, 0, 0, old_n < new_n ? old_n : new_n);
  pt_tensor *grown = keep;
  if (new_n > old_n) {
    pt_tensor *mean = pt_mean_dim(m->word_emb, 0, 1);  // (1, dim)
    pt_tensor *rows = pt_expand(mean, PT_SHAPE(new_n - old_n, m->cfg.dim));
    pt_tensor *parts[2] = {keep, rows};
    grown = pt_cat(parts, 2, 0);
  }
  grown = pt_keep(pt_contiguous(grown));
  int rc = pt_ok() && grown ? 0 : pt_fail(err, "llmlingua2: adding the [NEWi] embeddings");
  pt_scope_end(sc);
  if (rc) return -1;
  pt_free(m->word_emb);
  m->word_emb = grown;
  m->cfg.vocab_size = (int)new_n;
  s->grown = 1;
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------------------------

typedef struct {
  int32_t *p;
  int64_t n, cap;
} id_vec;

static int ids_add(id_vec *v, const int32_t *ids, int64_t n) {
  if (v->n + n > v->cap) {
    int64_t cap = v->cap ? v->cap : 64;
    while (cap < v->n + n) cap *= 2;
    int32_t *p = realloc(v->p, (size_t)cap * sizeof *p);
    if (!p) return -1;
    v->p = p, v->cap = cap;
  }
  if (n) memcpy(v->p + v->n, ids, (size_t)n * sizeof *ids);  // ids may be NULL when n is 0
  v->n += n;
  return 0;
}

// The added token "[NEWk]" (k < 100) at s, its length in *len; -1 when none.
static int marker_at(const char *s, size_t *len) {
  if (strncmp(s, "[NEW", 4)) return -1;
  int k = 0, d = 0;
  const char *p = s + 4;
  for (; *p >= '0' && *p <= '9' && d < 3; p++, d++) k = k * 10 + (*p - '0');
  if (!d || *p != ']' || k >= L2_MAX_FORCE) return -1;
  *len = (size_t)(p + 1 - s);
  return k;
}

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

// HF's tokenize() names an unknown Unigram piece by the text it covers ("—"), not "<unk>", and a
// chunk is rebuilt from those names. Here: the text of each unk in ids (from seg, n bytes), found
// word by word (the pre-tokenizer splits at whitespace, so words encode alone) by walking the word
// with its pieces: a known piece spells its bytes, an unk covers what lies before the next known
// piece's text (at least one character). Entries stay NULL ("<unk>") for a word where that fails
// (a normalizer that changed the word).
static void find_unk_texts(const l2_scorer *s, const char *seg, size_t n, const int32_t *ids, int64_t n_ids,
                           char **texts) {
  int32_t unk = tokenizer_unk_id(s->tok);
  int64_t at = 0;
  for (size_t i = 0; i < n && at <= n_ids;) {
    while (i < n && is_ws(seg[i])) i++;
    size_t w0 = i;
    while (i < n && !is_ws(seg[i])) i++;
    if (i == w0) break;
    int32_t *w;
    size_t k;
    pith_err e2 = {{0}};
    if (tokenizer_encode(s->tok, seg + w0, i - w0, 0, &w, &k, &e2)) return;
    if (at + (int64_t)k > n_ids || memcmp(w, ids + at, k * sizeof *w)) return free(w);  // not word-separable
    // the pieces spell the normalized word (NFKC: "ｶ" is read as "カ", and HF names the unk so)
    size_t nl = 0;
    char *norm = tokenizer_normalize(s->tok, seg + w0, i - w0, &nl, &e2);
    const char *word = norm ? norm : seg + w0;
    size_t wend = norm ? nl : i - w0;
    char **mine = calloc(k ? k : 1, sizeof *mine);
    size_t pos = 0;
    while (pos + 3 <= wend && !memcmp(word + pos, SPM_SPACE, 3)) pos += 3;  // a Prepend("▁") normalizer
    int ok = mine != NULL;
    for (size_t j = 0; ok && j < k; j++) {
      if (w[j] != unk) {
        const char *p = lstrip_prefix(tokenizer_token_piece(s->tok, w[j]), 1);
        size_t len = strlen(p);
        ok = pos + len <= wend && !memcmp(word + pos, p, len);
        pos += len;
        continue;
      }
      size_t end = wend, one = pos < wend ? (size_t)utf8_decode(word + pos, wend - pos, &(uint32_t){0}) : 0;
      if (one == 0) one = 1;
      if (j + 1 < k && w[j + 1] == unk) {
        end = pos + one;  // unks side by side: one character each
      } else {
        for (size_t j2 = j + 1; j2 < k; j2++) {
          const char *q = lstrip_prefix(tokenizer_token_piece(s->tok, w[j2]), 1);
          if (!*q) continue;
          size_t ql = strlen(q);
          end = wend + 1;  // not found
          for (size_t x = pos + one; x + ql <= wend; x++)
            if (!memcmp(word + x, q, ql)) {
              end = x;
              break;
            }
          break;
        }
      }
      ok = end <= wend && end > pos;
      if (ok) ok = (mine[j] = strndup(word + pos, end - pos)) != NULL;
      pos = end;
    }
    ok = ok && pos == wend;
    free(norm);
    for (size_t j = 0; mine && j < k; j++) {
      if (ok) texts[at + (int64_t)j] = mine[j];
      else free(mine[j]);
    }
    free(mine);
    at += (int64_t)k;
    free(w);
  }
}

// Grow names (NULL-filled) to cap entries.
static int names_grow(char ***names, int64_t *have, int64_t cap) {
  if (cap <= *have) return 0;
  char **t = realloc(*names, (size_t)cap * sizeof *t);
  if (!t) return -1;
  memset(t + *have, 0, (size_t)(cap - *have) * sizeof *t);
  *names = t, *have = cap;
  return 0;
}

// tokenizer.tokenize(text) with the added tokens [NEWi] (ids n_tok + i) matched first. texts: when
// not NULL, *texts gets (out->n) the names HF gives unknown pieces (NULL for the others).
static int tokenize_named(const l2_scorer *s, const char *text, id_vec *out, char ***texts, pith_err *err) {
  out->n = 0;
  if (texts) *texts = NULL;
  int32_t unk = tokenizer_unk_id(s->tok);
  int64_t have = 0;
  const char *seg = text;
  for (const char *p = text;; p++) {
    size_t mlen = 0;
    int k = *p ? marker_at(p, &mlen) : -1;
    if (*p && k < 0) continue;
    if (p > seg) {
      int32_t *ids;
      size_t n;
      if (tokenizer_encode(s->tok, seg, (size_t)(p - seg), 0, &ids, &n, err)) return -1;
      int64_t base = out->n, has_unk = 0;
      int rc = ids_add(out, ids, (int64_t)n);
      for (size_t j = 0; j < n; j++) has_unk |= ids[j] == unk;
      if (!rc && texts && (*texts || (s->xlmr && has_unk))) rc = names_grow(texts, &have, out->cap);
      if (!rc && texts && s->xlmr && has_unk) find_unk_texts(s, seg, (size_t)(p - seg), ids, (int64_t)n, *texts + base);
      free(ids);
      if (rc) return pith_fail(err, "out of memory");
    }
    if (!*p) break;
    int32_t id = s->n_tok + k;
    if (ids_add(out, &id, 1)) return pith_fail(err, "out of memory");
    if (texts && *texts && names_grow(texts, &have, out->cap)) return pith_fail(err, "out of memory");
    p += mlen - 1;
    seg = p + 1;
  }
  return 0;
}

static int tokenize(const l2_scorer *s, const char *text, id_vec *out, pith_err *err) {
  return tokenize_named(s, text, out, NULL, err);
}

// convert_ids_to_tokens for one id, into buf when it is an added [NEWi].
static const char *piece_of(const l2_scorer *s, int32_t id, char buf[16]) {
  if (id >= s->n_tok) {
    snprintf(buf, 16, "[NEW%d]", (int)(id - s->n_tok));
    return buf;
  }
  const char *p = tokenizer_token_piece(s->tok, id);
  return p ? p : "";
}

static char *ids_to_string(const l2_scorer *s, const int32_t *ids, char *const *names, int64_t n) {
  char **t = malloc((size_t)(n ? n : 1) * sizeof *t);
  if (!t) return NULL;
  int64_t k = 0;
  for (; k < n; k++) {
    char buf[16];
    if (!(t[k] = strdup(names && names[k] ? names[k] : piece_of(s, ids[k], buf)))) break;
  }
  char *out = k == n ? tokens_to_string(t, (int)n, s->xlmr) : NULL;
  for (int64_t i = 0; i < k; i++) free(t[i]);
  free(t);
  return out;
}

static int64_t count_cl100k(const l2_scorer *s, const char *text, pith_err *err) {
  int32_t *ids;
  size_t n;
  if (tokenizer_encode(s->cl100k, text, strlen(text), 0, &ids, &n, err)) return -1;
  free(ids);
  return (int64_t)n;
}

// ---------------------------------------------------------------------------------------------
// The per-call state: the force-token map and the chunks
// ---------------------------------------------------------------------------------------------

typedef struct {
  const l2_scorer *s;
  const l2_options *o;
  const char *map_from[L2_MAX_FORCE];  // token_map: force token -> "[NEWi]", in insertion order
  char map_to[L2_MAX_FORCE][16];
  int n_map;
  const char *ends[64];  // chunk-end tokens, the [NEWi] of mapped ones included
  char ends_buf[32][16];
  int n_ends;
} l2_ctx;

static int is_marker_name(const l2_ctx *c, const char *t) {
  for (int i = 0; i < c->n_map; i++)
    if (!strcmp(t, c->map_to[i])) return 1;
  return 0;
}

// replace_added_token: each "[NEWi]" back to its force token.
static char *unmap(const l2_ctx *c, const char *t) {
  char *cur = strdup(t);
  for (int i = 0; cur && i < c->n_map; i++) {
    char *next = replace_all(cur, c->map_to[i], c->map_from[i]);
    free(cur);
    cur = next;
  }
  return cur;
}

// __chunk_context: the context's tokens cut at the last chunk-end token within 510, each chunk
// decoded back to text.
static int chunk_context(const l2_ctx *c, const char *text, str_list *chunks, pith_err *err) {
  id_vec ids = {0};
  char **names = NULL;
  if (tokenize_named(c->s, text, &ids, &names, err)) return free(ids.p), -1;
  const int64_t max_len = L2_MAX_SEQ - 2, n = ids.n;
  int rc = 0;
  for (int64_t st = 0; st < n && !rc;) {
    int64_t ed;
    if (st + max_len > n - 1) {
      ed = n - 1;
    } else {
      ed = st + max_len;
      for (int64_t j = 0; j < ed - st; j++) {
        char buf[16];
        const char *p = piece_of(c->s, ids.p[ed - j], buf);
        int end = 0;
        for (int e = 0; e < c->n_ends && !end; e++) end = !strcmp(p, c->ends[e]);
        if (end) {
          ed -= j;
          break;
        }
      }
    }
    if (list_push(chunks, ids_to_string(c->s, ids.p + st, names ? names + st : NULL, ed + 1 - st)))
      rc = pith_fail(err, "out of memory");
    st = ed + 1;
  }
  for (int64_t i = 0; names && i < n; i++) free(names[i]);
  free(names);
  free(ids.p);
  return rc;
}

// One word of a chunk: its text (force tokens restored), its probability as word_probs has it
// (py: a Python float, i.e. 1.0 forced alone or 0.0 from drop_consecutive, which makes numpy's
// array float64), and the probability before forcing (the context filter's).
typedef struct {
  char *text;
  double prob;
  int py;
  float prob_nf;
} l2_word;

typedef struct {
  l2_word *w;
  int n, cap;
} word_list;

static void words_free(word_list *l) {
  for (int i = 0; i < l->n; i++) free(l->w[i].text);
  free(l->w);
  *l = (word_list){0};
}

// The classifier over one chunk's text: its tokens' p_keep, merged into words.
static int score_chunk(const l2_ctx *c, const char *chunk, word_list *out, pith_err *err) {
  const l2_scorer *s = c->s;
  *out = (word_list){0};
  id_vec toks = {0}, seq = {0};
  if (tokenize(s, chunk, &toks, err)) return free(toks.p), -1;
  if (ids_add(&seq, &s->cls_id, 1) || ids_add(&seq, toks.p, toks.n) || ids_add(&seq, &s->sep_id, 1)) {
    free(toks.p), free(seq.p);
    return pith_fail(err, "out of memory");
  }
  free(toks.p);
  int64_t T = seq.n > L2_MAX_SEQ ? L2_MAX_SEQ : seq.n;
  float *probs = malloc((size_t)T * sizeof *probs);
  int64_t *buf = malloc((size_t)T * sizeof *buf);
  if (!probs || !buf) return free(probs), free(buf), free(seq.p), pith_fail(err, "out of memory");
  for (int64_t i = 0; i < T; i++) buf[i] = seq.p[i];
  int was = pt_set_grad_enabled(0);
  pt_scope sc = pt_scope_begin();
  pt_tensor *x = pt_from_data(buf, PT_I64, PT_SHAPE(1, T), PT_CPU);
  encoder_inputs in = {.ids = x};
  encoder_outputs eo = {0};
  int rc = encoder_forward(s->m, &in, &eo, err);
  if (!rc) {
    pt_tensor *p = pt_to_dtype(pt_softmax(eo.logits, -1), PT_F32);
    pt_tensor *keep = pt_contiguous(pt_view(pt_slice(p, 2, 1, 2), PT_SHAPE(T)));
    if (pt_to_data(keep, probs, (size_t)T * sizeof(float)) || !pt_ok()) rc = pt_fail(err, "llmlingua2: classifier");
  }
  pt_scope_end(sc);
  pt_set_grad_enabled(was);
  free(buf);
  // __merge_token_to_word
  const l2_options *o = c->o;
  float *tp = malloc((size_t)T * sizeof *tp);  // the current word's token probabilities (forced)
  int *tpy = malloc((size_t)T * sizeof *tpy);
  int nt = 0;
  float first_nf = 0;  // prob_no_force: set at a word's first token, appended for every token of it
  int n_nf = 0;
  strbuf word = {0};
  if (!tp || !tpy) rc = rc ? rc : pith_fail(err, "out of memory");
  for (int64_t i = 0; i <= T && !rc; i++) {
    char pbuf[16];
    const char *t = i < T ? piece_of(s, seq.p[i], pbuf) : NULL;
    if (t && seq.p[i] < s->n_tok && tokenizer_is_special(s->tok, seq.p[i])) continue;
    int begin = 1;
    if (t) {
      const char *pure = lstrip_prefix(t, s->xlmr);
      if (s->xlmr)
        begin = strstr(PUNCT, t) || in_list(t, o->force_tokens, o->n_force) || is_marker_name(c, t) ||
                starts_with(t, SPM_SPACE);
      else
        begin = in_list(pure, o->force_tokens, o->n_force) || is_marker_name(c, pure) || !starts_with(t, "##");
      if (!begin && nt == 0) begin = 1;  // llmlingua fails on a chunk that starts inside a word
    }
    if (begin && nt > 0) {  // close the word
      l2_word w = {0};
      if (o->first_token) {
        w.prob = tp[0], w.py = tpy[0];
      } else {
        float sum = 0;
        for (int k = 0; k < nt; k++) sum += tp[k];
        w.py = nt == 1 && tpy[0];
        w.prob = w.py ? tp[0] : (double)(sum / (float)nt);
      }
      if (o->first_token) {
        w.prob_nf = first_nf;
      } else {
        float sum = 0;
        for (int k = 0; k < n_nf; k++) sum += first_nf;
        w.prob_nf = sum / (float)n_nf;
      }
      strbuf_add(&word, "", 0);
      w.text = strbuf_take(&word, NULL);
      if (out->n == out->cap) {
        int cap = out->cap ? 2 * out->cap : 64;
        l2_word *p = realloc(out->w, (size_t)cap * sizeof *p);
        if (!p) {
          free(w.text);
          rc = pith_fail(err, "out of memory");
          break;
        }
        out->w = p, out->cap = cap;
      }
      if (!w.text) {
        rc = pith_fail(err, "out of memory");
        break;
      }
      out->w[out->n++] = w;
      nt = 0, n_nf = 0;
    }
    if (!t) break;
    float prob = probs[i];
    const char *pure = lstrip_prefix(t, s->xlmr);
    if (begin) {
      first_nf = prob;
      int forced = in_list(pure, o->force_tokens, o->n_force) || is_marker_name(c, pure);
      char *text = unmap(c, t);
      if (!text) {
        rc = pith_fail(err, "out of memory");
        break;
      }
      int digit = o->force_reserve_digit && has_digit(text);
      tp[nt] = digit || forced ? 1.0f : prob;
      tpy[nt++] = digit || forced;
      strbuf_adds(&word, text);
      free(text);
    } else {
      int digit = o->force_reserve_digit && has_digit(t);
      tp[nt] = digit ? 1.0f : prob;
      tpy[nt++] = digit;
      strbuf_adds(&word, pure);
    }
    n_nf++;
  }
  strbuf_free(&word);
  free(tp);
  free(tpy);
  free(probs);
  free(seq.p);
  if (rc) words_free(out);
  return rc;
}

// __compress for one chunk: the kept words' text; labels appended to r.
static char *compress_chunk(const l2_ctx *c, word_list *wl, double reduce_rate, str_list *words, uint8_t **labels,
                            int *n_labels, pith_err *err) {
  const l2_scorer *s = c->s;
  const l2_options *o = c->o;
  int n = wl->n;
  double *v = malloc((size_t)(n ? n : 1) * sizeof *v);
  if (!v) return pith_fail(err, "out of memory"), NULL;
  if (o->drop_consecutive) {
    int any_py = 0;
    for (int i = 0; i < n; i++) v[i] = wl->w[i].prob, any_py |= wl->w[i].py;
    double thr = l2_percentile(v, n, (int)(100 * reduce_rate), !any_py);
    int between = 0;
    const char *prev = NULL;
    for (int i = 0; i < n; i++) {
      l2_word *w = &wl->w[i];
      if (in_list(w->text, o->force_tokens, o->n_force)) {
        if (between) between = 0;
        else if (prev && !strcmp(w->text, prev)) w->prob = 0.0, w->py = 1;
        prev = w->text;
      } else {
        between |= w->prob > thr;
      }
    }
  }
  // each word's probability repeated by its cl100k token count
  int64_t m = 0, cap = n > 0 ? n : 1;
  double *rep = malloc((size_t)cap * sizeof *rep);
  int any_py = 0;
  for (int i = 0; rep && i < n; i++) {
    int64_t k = count_cl100k(s, wl->w[i].text, err);
    if (k < 0) return free(v), free(rep), NULL;
    if (m + k > cap) {
      while (cap < m + k) cap *= 2;
      double *p = realloc(rep, (size_t)cap * sizeof *p);
      if (!p) {
        free(rep);
        rep = NULL;
        break;
      }
      rep = p;
    }
    for (int64_t j = 0; j < k; j++) rep[m++] = wl->w[i].prob;
    if (k) any_py |= wl->w[i].py;
  }
  free(v);
  if (!rep) return pith_fail(err, "out of memory"), NULL;
  double thr = l2_percentile(rep, m, (int)(100 * reduce_rate + 1), !any_py);
  free(rep);
  char **keep = malloc((size_t)(n ? n : 1) * sizeof *keep);
  uint8_t *lab = realloc(*labels, (size_t)(*n_labels + n + 1));
  if (!keep || !lab) return free(keep), pith_fail(err, "out of memory"), NULL;
  *labels = lab;
  int nk = 0;
  for (int i = 0; i < n; i++) {
    l2_word *w = &wl->w[i];
    int label = 0;
    if (w->prob > thr || (thr == 1.0 && w->prob == thr)) {
      if (!(o->drop_consecutive && in_list(w->text, o->force_tokens, o->n_force) && nk > 0 &&
            !strcmp(keep[nk - 1], w->text))) {
        keep[nk++] = w->text;
        label = 1;
      }
    }
    lab[(*n_labels)++] = (uint8_t)label;
    if (list_push(words, strdup(s->xlmr ? lstrip_prefix(w->text, 1) : w->text))) {
      free(keep);
      return pith_fail(err, "out of memory"), NULL;
    }
  }
  char *str = tokens_to_string(keep, nk, s->xlmr);
  free(keep);
  if (!str) pith_fail(err, "out of memory");
  return str;
}

// Without a token stage, llmlingua labels the words of r'\b\w+\b|[<>=/!@#$%^&*()?":{}|\\`~;_+-]' 1.
static int regex_words(const char *text, str_list *words, uint8_t **labels, int *n_labels, pith_err *err) {
  static const char PAT[] = "\\b\\w+\\b|[<>=/!@#$%^&*()?\":{}|\\\\`~;_+-]";
  int ec;
  PCRE2_SIZE eo;
  pcre2_code *re = pcre2_compile((PCRE2_SPTR)PAT, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF,
                                 &ec, &eo, NULL);
  pcre2_match_data *md = re ? pcre2_match_data_create(1, NULL) : NULL;
  int rc = md ? 0 : pith_fail(err, "llmlingua2: the word regex");
  size_t n = strlen(text);
  for (size_t off = 0; !rc && off < n;) {
    int m = pcre2_match(re, (PCRE2_SPTR)text, n, off, 0, md, NULL);
    if (m < 0) break;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    uint8_t *lab = realloc(*labels, (size_t)*n_labels + 1);
    if (!lab || list_push(words, strndup(text + ov[0], ov[1] - ov[0]))) {
      if (lab) *labels = lab;
      rc = pith_fail(err, "out of memory");
      break;
    }
    *labels = lab;
    lab[(*n_labels)++] = 1;
    off = ov[1] > ov[0] ? ov[1] : ov[0] + 1;
  }
  pcre2_match_data_free(md);
  pcre2_code_free(re);
  return rc;
}

// ---------------------------------------------------------------------------------------------
// compress_prompt_llmlingua2
// ---------------------------------------------------------------------------------------------

int l2_compress(l2_scorer *s, const char *const *contexts, int n_ctx, const l2_options *o, l2_result *r,
                pith_err *err) {
  *r = (l2_result){0};
  if (n_ctx < 1) return pith_fail(err, "llmlingua2: no contexts");
  if (!(o->rate > 0 && o->rate <= 1)) return pith_fail(err, "llmlingua2: rate %g is outside (0, 1]", o->rate);
  if (o->n_force > L2_MAX_FORCE)
    return pith_fail(err, "llmlingua2: %d force tokens; at most %d", o->n_force, L2_MAX_FORCE);
  l2_ctx c = {.s = s, .o = o};
  // token_map: a force token the tokenizer does not read as one token becomes [NEWi]
  for (int i = 0; i < o->n_force; i++) {
    int32_t *ids;
    size_t n;
    if (tokenizer_encode(s->tok, o->force_tokens[i], strlen(o->force_tokens[i]), 0, &ids, &n, err)) return -1;
    free(ids);
    if (n == 1) continue;
    int at = c.n_map;
    for (int k = 0; k < c.n_map; k++)
      if (!strcmp(c.map_from[k], o->force_tokens[i])) at = k;  // a repeated token: the later index
    c.map_from[at] = o->force_tokens[i];
    snprintf(c.map_to[at], sizeof c.map_to[at], "[NEW%d]", i);
    if (at == c.n_map) c.n_map++;
  }
  if (c.n_map && !s->grown && grow_embeddings(s, err)) return -1;
  static const char *const DEFAULT_ENDS[] = {".", "\n"};
  const char *const *ends = o->chunk_end ? o->chunk_end : DEFAULT_ENDS;
  int n_ends = o->chunk_end ? o->n_chunk_end : 2;
  if (n_ends > 32) return pith_fail(err, "llmlingua2: %d chunk-end tokens; at most 32", n_ends);
  for (int i = 0; i < n_ends; i++) c.ends[c.n_ends++] = ends[i];
  for (int i = 0; i < n_ends; i++)
    for (int k = 0; k < c.n_map; k++)
      if (!strcmp(ends[i], c.map_from[k])) c.ends[c.n_ends++] = c.map_to[k];

  int filter = o->context_filter && n_ctx > 1;
  str_list *chunks = calloc((size_t)n_ctx, sizeof *chunks);
  word_list **cw = calloc((size_t)n_ctx, sizeof *cw);  // per context, per chunk: its words
  r->n_contexts = n_ctx;
  r->context_kept = malloc((size_t)n_ctx);
  strbuf prompt = {0};
  str_list words = {0};
  int rc = chunks && cw && r->context_kept ? 0 : pith_fail(err, "out of memory");
  for (int i = 0; !rc && i < n_ctx; i++) {
    int64_t k = count_cl100k(s, contexts[i], err);
    if (k < 0) rc = -1;
    r->origin_tokens += k;
    char *text = strdup(contexts[i]);
    for (int m = 0; text && m < c.n_map; m++) {
      char *next = replace_all(text, c.map_from[m], c.map_to[m]);
      free(text);
      text = next;
    }
    if (!rc && !text) rc = pith_fail(err, "out of memory");
    if (!rc) rc = chunk_context(&c, text, &chunks[i], err);
    free(text);
    r->context_kept[i] = 1;
  }
  double rate = o->rate;
  int need_scores = !rc && (filter || (o->token_filter && rate < 1) || o->target_tokens > 0);
  for (int i = 0; need_scores && !rc && i < n_ctx; i++) {
    cw[i] = calloc((size_t)(chunks[i].n ? chunks[i].n : 1), sizeof *cw[i]);
    if (!cw[i]) rc = pith_fail(err, "out of memory");
    for (int j = 0; !rc && j < chunks[i].n; j++) rc = score_chunk(&c, chunks[i].p[j], &cw[i][j], err);
    r->n_chunks += chunks[i].n;
  }
  if (!rc && filter) {
    double clr = 1.0;
    if (o->target_tokens <= 0 && o->rate < 1.0) clr = o->token_filter ? (o->rate + 1.0) / 2 : o->rate;
    if (o->target_tokens > 0) {
      double cltt = o->token_filter ? o->target_tokens * 2 : o->target_tokens;
      clr = fmin(cltt / (double)r->origin_tokens, 1.0);
    }
    float *cp = malloc((size_t)n_ctx * sizeof *cp);
    double *v = malloc((size_t)n_ctx * sizeof *v);
    if (!cp || !v) rc = pith_fail(err, "out of memory");
    for (int i = 0; !rc && i < n_ctx; i++) {
      float sum = 0;
      int nw = 0;
      for (int j = 0; j < chunks[i].n; j++)
        for (int k = 0; k < cw[i][j].n; k++) sum += cw[i][j].w[k].prob_nf, nw++;
      if (!nw) rc = pith_fail(err, "context %d has no words for the context filter (llmlingua divides by zero)", i);
      else cp[i] = v[i] = sum / (float)nw;
    }
    if (!rc) {
      double thr = l2_percentile(v, n_ctx, (int)(100 * (1 - clr)), 1);
      int64_t reserved = 0;
      for (int i = 0; !rc && i < n_ctx; i++) {
        r->context_kept[i] = (double)cp[i] >= thr;
        for (int j = 0; r->context_kept[i] && j < chunks[i].n && !rc; j++) {
          int64_t k = count_cl100k(s, chunks[i].p[j], err);
          if (k < 0) rc = -1;
          reserved += k;
        }
      }
      if (!rc && o->target_tokens > 0) rate = fmin(o->target_tokens / (double)reserved, 1.0);
    }
    free(cp);
    free(v);
  } else if (!rc && o->target_tokens > 0) {
    rate = fmin(o->target_tokens / (double)r->origin_tokens, 1.0);
  }
  r->rate_used = rate;
  double reduce = o->token_filter ? fmax(0, 1 - rate) : 0;
  int first = 1;
  for (int i = 0; !rc && i < n_ctx; i++) {
    if (filter && !r->context_kept[i]) {
      // a dropped context: its words, labelled 0 (the context filter's words)
      for (int j = 0; j < chunks[i].n && !rc; j++)
        for (int k = 0; k < cw[i][j].n && !rc; k++) {
          const char *w = cw[i][j].w[k].text;
          uint8_t *lab = realloc(r->labels, (size_t)r->n_words + 1);
          if (!lab || list_push(&words, strdup(s->xlmr ? lstrip_prefix(w, 1) : w))) rc = pith_fail(err, "out of memory");
          else r->labels = lab, r->labels[r->n_words++] = 0;
        }
      continue;
    }
    strbuf ctx = {0};
    strbuf_add(&ctx, "", 0);
    for (int j = 0; j < chunks[i].n && !rc; j++) {
      char *part;
      if (reduce <= 0) {
        part = unmap(&c, chunks[i].p[j]);  // the chunks as they are, force tokens restored
        if (!part) rc = pith_fail(err, "out of memory");
        else rc = regex_words(part, &words, &r->labels, &r->n_words, err);
      } else {
        part = compress_chunk(&c, &cw[i][j], reduce, &words, &r->labels, &r->n_words, err);
        if (!part) rc = -1;
      }
      if (part) strbuf_adds(&ctx, part);
      free(part);
    }
    if (!rc && !strbuf_ok(&ctx)) rc = pith_fail(err, "out of memory");
    if (!rc) {
      int64_t k = count_cl100k(s, ctx.p, err);
      if (k < 0) rc = -1;
      r->compressed_tokens += k;
      if (!first) strbuf_adds(&prompt, "\n\n");
      strbuf_adds(&prompt, ctx.p);
      first = 0;
    }
    strbuf_free(&ctx);
  }
  strbuf_add(&prompt, "", 0);
  if (!rc && !strbuf_ok(&prompt)) rc = pith_fail(err, "out of memory");
  if (!rc && r->n_words != words.n) rc = pith_fail(err, "llmlingua2: words and labels differ in number");
  r->prompt = strbuf_take(&prompt, NULL);
  for (int i = 0; i < n_ctx; i++) {
    if (cw && cw[i]) {
      for (int j = 0; j < chunks[i].n; j++) words_free(&cw[i][j]);
      free(cw[i]);
    }
    if (chunks) list_free(&chunks[i]);
  }
  free(chunks);
  free(cw);
  if (rc) {
    list_free(&words);
    r->n_words = 0;
    l2_result_free(r);
    return -1;
  }
  r->words = words.p;
  return 0;
}

void l2_result_free(l2_result *r) {
  free(r->prompt);
  free(r->context_kept);
  for (int i = 0; r->words && i < r->n_words; i++) free(r->words[i]);
  free(r->words);
  free(r->labels);
  *r = (l2_result){0};
}

// ---------------------------------------------------------------- finding cl100k

#define CL100K_CACHE_NAME "9b5ad71b2ce5302211f9c61530b329a4922fc6a4"  // tiktoken's cache name for cl100k

int l2_find_cl100k(const char *given, char *out, size_t size, pith_err *err) {
  if (given) {
    if (!pith_is_file(given)) return pith_fail(err, "--cl100k '%s': no such file", given);
    snprintf(out, size, "%s", given);
    return 0;
  }
  const char *cache = getenv("TIKTOKEN_CACHE_DIR");
  if (cache && *cache) {
    pith_path_join(out, size, cache, CL100K_CACHE_NAME);
    if (pith_is_file(out)) return 0;
  }
  char exe[4096], dir[4096], up[4200];
  ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
  const char *bases[2] = {".", NULL};
  if (k > 0) {
    exe[k] = 0;
    pith_parent_dir(exe, dir, sizeof dir);
    snprintf(up, sizeof up, "%s/..", dir);  // build/pith -> the checkout
    bases[1] = up;
  }
  for (int i = 0; i < 2 && bases[i]; i++) {
    if (snprintf(out, size, "%s/.venv-peers/tiktoken-cache/%s", bases[i], CL100K_CACHE_NAME) < (int)size &&
        pith_is_file(out))
      return 0;
  }
  return pith_fail(err, "llmlingua2 weighs words by cl100k token counts: give --cl100k PATH (cl100k_base.tiktoken; "
                        "scripts/setup-peers puts a copy in .venv-peers/tiktoken-cache/)");
}
