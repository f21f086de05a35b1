// distill_classifier: labels, rows, loss and metrics of `pith distill` method classifier (see
// distill_classifier.h).
#include "distill_classifier.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "corpus.h"
#include "encoder_folder.h"
#include "hard_compress.h"
#include "hf_folder.h"
#include "json.h"
#include "scorer.h"
#include "strbuf.h"

#define CLS_IGNORE (-100)  // the label of a token with none ([CLS], [SEP], pads), as transformers'

void cls_texts_free(cls_texts *t) {
  for (int64_t i = 0; i < t->n; i++) {
    free(t->texts[i].text);
    free(t->texts[i].words);
    free(t->texts[i].keep);
  }
  free(t->texts);
  memset(t, 0, sizeof *t);
}

// A new text (its words split) at the end of t; NULL when out of memory.
static cls_text *add_text(cls_texts *t, const char *s, size_t len) {
  if (t->n == t->cap) {
    int64_t cap = t->cap ? 2 * t->cap : 64;
    cls_text *v = realloc(t->texts, sizeof *v * (size_t)cap);
    if (!v) return NULL;
    t->texts = v, t->cap = cap;
  }
  cls_text *x = &t->texts[t->n];
  memset(x, 0, sizeof *x);
  x->text = malloc(len + 1);
  if (!x->text) return NULL;
  memcpy(x->text, s, len);
  x->text[len] = 0;
  x->n_words = word_split(x->text, len, &x->words);
  x->keep = calloc((size_t)(x->n_words > 0 ? x->n_words : 1), 1);
  t->n++;  // owned from here on (freed with the rest)
  return x->n_words < 0 || !x->keep ? NULL : x;
}

int cls_labels_from_file(const char *path, int64_t window, double max_unmatched, int skip_unaligned, cls_texts *out,
                         pith_err *err) {
  size_t len;
  char *text = pith_read_file(path, &len, err);
  if (!text) return -1;
  int rc = 0, line = 0;
  for (const char *s = text; s < text + len && !rc;) {
    const char *e = memchr(s, '\n', (size_t)(text + len - s));
    if (!e) e = text + len;
    line++;
    const char *q = s;
    while (q < e && strchr(" \t\r", *q)) q++;
    if (q < e) {
      arena a = {0};
      json_parser P = {0};
      json_value *v = json_parse(&P, &a, s, (size_t)(e - s));
      const json_value *o = v && v->type == JSON_OBJ ? json_get(v, "original") : NULL;
      const json_value *c = v && v->type == JSON_OBJ ? json_get(v, "compressed") : NULL;
      // {"original", "keep"}: RUN/labels.jsonl's own lines, so one run's labels train another as they are
      const json_value *k = v && v->type == JSON_OBJ && !c ? json_get(v, "keep") : NULL;
      if (!v) rc = pith_fail(err, "label_file %s:%d: not JSON: %s", path, line, P.why);
      else if (!o || o->type != JSON_STR || ((!c || c->type != JSON_STR) && (!k || k->type != JSON_STR)))
        rc = pith_fail(err, "label_file %s:%d: wants {\"original\": string, \"compressed\": string} (or \"keep\": "
                       "a 0/1 string, one per word, as RUN/labels.jsonl has)", path, line);
      cls_text *x = rc ? NULL : add_text(out, o->s, o->len);
      word_span *cw = NULL;
      int64_t n_comp = x && c ? word_split(c->s, c->len, &cw) : 0;
      if (!rc && (!x || n_comp < 0)) rc = pith_fail(err, "label_file %s:%d: out of memory", path, line);
      if (!rc && k) {
        size_t bad = strspn(k->s, "01");
        if (x->n_words == 0)
          rc = pith_fail(err, "label_file %s:%d: the original text has no words", path, line);
        else if ((int64_t)k->len != x->n_words || bad < k->len)
          rc = pith_fail(err, "label_file %s:%d: keep has %lld characters%s, the original %lld words", path, line,
                         (long long)k->len, bad < k->len ? " (not all 0 or 1)" : "", (long long)x->n_words);
        for (int64_t w = 0; w < x->n_words && !rc; w++) x->keep[w] = k->s[w] == '1';
      } else if (!rc) {
        int64_t missed = word_align(x->text, x->words, x->n_words, c->s, cw, n_comp, window, x->keep);
        int bad = x->n_words == 0 || (n_comp > 0 && (double)missed / (double)n_comp > max_unmatched);
        if (bad && skip_unaligned) {
          out->skipped++;
          free(x->text), free(x->words), free(x->keep);
          out->n--;
        } else if (bad && x->n_words == 0) {
          rc = pith_fail(err, "label_file %s:%d: the original text has no words", path, line);
        } else if (bad) {
          rc = pith_fail(err,
                         "label_file %s:%d: the compressed text does not align with the original: %lld of its %lld "
                         "words have no match (label_max_unmatched %g; label_skip_unaligned=true skips such pairs)",
                         path, line, (long long)missed, (long long)n_comp, max_unmatched);
        }
      }
      free(cw);
      arena_free(&a);
    }
    s = e + 1;
  }
  free(text);
  if (!rc && out->n == 0) rc = pith_fail(err, "label_file %s: no pair to train on (%lld skipped)", path, (long long)out->skipped);
  return rc;
}

int cls_words_from_tokens(const tokenizer *tok, const char *text, const word_span *words, int64_t n_words,
                          const int32_t *ids, const uint8_t *kept, int64_t n, uint8_t *keep, pith_err *err) {
  memset(keep, 0, (size_t)n_words);
  size_t tlen = strlen(text), full_len;
  char *full = tokenizer_decode_n(tok, ids, (size_t)n, 0, &full_len, err);
  if (!full) return -1;
  // A SentencePiece decoder drops the space the encoder put before the first word (the text may have
  // more in front); a byte-level one with add_prefix_space keeps it (the decoded text has `extra` more).
  size_t extra = 0;
  while (extra < full_len && full_len - extra > tlen && full[extra] == ' ') extra++;
  full_len -= extra;
  int ok = full_len <= tlen && !memcmp(text + tlen - full_len, full + extra, full_len);
  free(full);
  if (!ok) return pith_fail(err, "the target's tokens do not decode back to the text");
  size_t shift = tlen - full_len, prev = 0;
  int64_t w = 0;
  for (int64_t j = 0; j < n; j++) {
    size_t end;
    char *d = tokenizer_decode_n(tok, ids, (size_t)(j + 1), 0, &end, err);
    if (!d) return -1;
    free(d);
    end = end > extra ? end - extra : 0;
    if (end > full_len) end = full_len;  // a cut UTF-8 sequence decodes to a longer U+FFFD
    if (end < prev) end = prev;
    size_t a = shift + prev, b = shift + end;  // token j's bytes of text
    prev = end;
    if (!kept[j] || a == b) continue;
    while (w < n_words && words[w].end <= a) w++;
    for (int64_t k = w; k < n_words && words[k].start < b; k++) keep[k] = 1;
  }
  return 0;
}

int cls_labels_from_target(const char *target_dir, const char *train_file, int64_t n_texts, double rate,
                           int iterative_size, int threads, cls_texts *out, pith_err *err) {
  if (threads > 0) pt_set_num_threads(threads);
  llama_model *lm = hf_model_load(target_dir, PT_F32, PT_CPU, err);
  tokenizer *tok = lm ? tokenizer_load(target_dir, err) : NULL;
  corpus *c = tok ? corpus_open(train_file, err) : NULL;
  if (!c) {
    llama_free(lm);
    tokenizer_free(tok);
    return -1;
  }
  scorer sc = scorer_new(lm, tok);
  hc_options o = hc_options_llmlingua();
  o.rate = rate;
  o.iterative_size = iterative_size;
  corpus_record rec = {0};
  int64_t n_rec = corpus_get_info(c)->n_records, kept_words = 0, words = 0;
  int rc = 0, qa = corpus_get_info(c)->kind == CORPUS_QA;
  double t0 = pith_now_s();
  printf("labels: %s compresses up to %lld texts of %s (llmlingua, rate %g, window %d)\n", target_dir,
         (long long)n_texts, train_file, rate, iterative_size);
  fflush(stdout);
  for (int64_t i = 0; i < n_rec && out->n < n_texts && !rc; i++) {
    if (corpus_read(c, i, CORPUS_READ_TEXT, &rec, err)) {
      rc = -1;
      break;
    }
    const corpus_field *f = qa ? &rec.context : &rec.doc;
    cls_text *x = add_text(out, f->text, (size_t)f->text_len);
    if (!x) {
      rc = pith_fail(err, "labels: out of memory");
      break;
    }
    if (x->n_words == 0) {  // a blank record
      free(x->text), free(x->words), free(x->keep);
      out->n--, out->skipped++;
      continue;
    }
    hc_result r;
    const char *ctx[1] = {x->text};
    pith_err why = {{0}};
    if (hc_compress(&sc, ctx, 1, NULL, NULL, &o, &r, &why)) {
      rc = pith_fail(err, "labels: %s record %lld: %s", train_file, (long long)i, why.msg[0] ? why.msg : pt_error());
      break;
    }
    if (cls_words_from_tokens(tok, x->text, x->words, x->n_words, r.fine_ids, r.kept, r.n_fine, x->keep, &why)) {
      // a text the target's tokenizer does not give back (say, with a byte it cannot encode): skipped
      free(x->text), free(x->words), free(x->keep);
      out->n--, out->skipped++;
    } else {
      for (int64_t k = 0; k < x->n_words; k++) kept_words += x->keep[k];
      words += x->n_words;
    }
    hc_result_free(&r);
    if (out->n % 500 == 0 && out->n) printf("labels: %lld texts (%.1f s)\n", (long long)out->n, pith_now_s() - t0);
    fflush(stdout);
  }
  corpus_record_free(&rec);
  corpus_close(c);
  llama_free(lm);
  tokenizer_free(tok);
  if (!rc && out->n == 0) rc = pith_fail(err, "labels: %s has no text to label", train_file);
  if (!rc)
    printf("labels: %lld texts, %lld words, %.1f%% kept (%lld skipped, %.1f s)\n", (long long)out->n, (long long)words,
           words ? 100.0 * (double)kept_words / (double)words : 0.0, (long long)out->skipped, pith_now_s() - t0);
  return rc;
}

static int64_t lcp(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
  size_t k = 0;
  while (k < na && k < nb && a[k] == b[k]) k++;
  return (int64_t)k;
}

int cls_word_tokens(const tokenizer *tok, const char *text, const word_span *words, int64_t n_words, int32_t **ids,
                    int64_t **word_of, int64_t *n_ids, pith_err *err) {
  *ids = NULL, *word_of = NULL, *n_ids = 0;
  int64_t cap = 0;
  for (int64_t w0 = 0; w0 < n_words;) {
    int64_t w1 = w0 + 1;  // the chunk: words [w0, w1) with no space between them
    while (w1 < n_words && words[w1].start == words[w1 - 1].end) w1++;
    const char *s = text + words[w0].start;
    int32_t *chunk;
    size_t n_chunk;
    if (tokenizer_encode(tok, s, words[w1 - 1].end - words[w0].start, 0, &chunk, &n_chunk, err)) return -1;
    if (*n_ids + (int64_t)n_chunk > cap) {
      cap = 2 * (*n_ids + (int64_t)n_chunk) + 64;
      int32_t *i2 = realloc(*ids, sizeof *i2 * (size_t)cap);
      if (i2) *ids = i2;
      int64_t *w2 = realloc(*word_of, sizeof *w2 * (size_t)cap);
      if (w2) *word_of = w2;
      if (!i2 || !w2) {
        free(chunk);
        return pith_fail(err, "tokens: out of memory");
      }
    }
    int64_t done = 0;  // tokens of the chunk given to words so far
    for (int64_t w = w0; w < w1; w++) {
      int64_t upto = (int64_t)n_chunk;
      if (w + 1 < w1) {
        int32_t *pre;
        size_t n_pre;
        if (tokenizer_encode(tok, s, words[w].end - words[w0].start, 0, &pre, &n_pre, err)) {
          free(chunk);
          return -1;
        }
        upto = lcp(pre, n_pre, chunk, n_chunk);
        free(pre);
        if (upto < done) upto = done;
      }
      for (; done < upto; done++) {
        (*ids)[*n_ids] = chunk[done];
        (*word_of)[(*n_ids)++] = w;
      }
    }
    free(chunk);
    w0 = w1;
  }
  return 0;
}

void cls_metrics_finish(cls_metrics *m) {
  double tp = (double)m->tp, all = (double)(m->tp + m->fp + m->fn + m->tn);
  m->precision = m->tp + m->fp ? tp / (double)(m->tp + m->fp) : 0;
  m->recall = m->tp + m->fn ? tp / (double)(m->tp + m->fn) : 0;
  m->f1 = m->precision + m->recall > 0 ? 2 * m->precision * m->recall / (m->precision + m->recall) : 0;
  m->keep_share = all > 0 ? (double)(m->tp + m->fn) / all : 0;
  m->accuracy = all > 0 ? (double)(m->tp + m->tn) / all : 0;
}

struct distill_cls {
  cls_texts texts;
  int64_t n_train_texts;
  int32_t *ids;       // (n_tok) every row's tokens, specials included
  int8_t *labels;     // (n_tok) 1 keep, 0 drop, -1 none
  int64_t *row_off;   // (n_rows + 1)
  int64_t n_rows, n_train_rows, n_tok, cap_tok, cap_rows;
  int pad;
  uint64_t seed;
  int64_t epoch, pos;  // the training order: row pos of epoch's shuffle
  int64_t *order;      // (n_train_rows) this epoch's shuffle
};

static int push_tok(distill_cls *c, int32_t id, int8_t label) {
  if (c->n_tok == c->cap_tok) {
    int64_t cap = c->cap_tok ? 2 * c->cap_tok : 4096;
    int32_t *i2 = realloc(c->ids, sizeof *i2 * (size_t)cap);
    if (i2) c->ids = i2;
    int8_t *l2 = realloc(c->labels, (size_t)cap);
    if (l2) c->labels = l2;
    if (!i2 || !l2) return -1;
    c->cap_tok = cap;
  }
  c->ids[c->n_tok] = id, c->labels[c->n_tok++] = label;
  return 0;
}

static int end_row(distill_cls *c) {
  if (c->n_rows + 2 > c->cap_rows) {
    int64_t cap = c->cap_rows ? 2 * c->cap_rows : 256;
    int64_t *r = realloc(c->row_off, sizeof *r * (size_t)cap);
    if (!r) return -1;
    c->row_off = r, c->cap_rows = cap;
    if (c->n_rows == 0) c->row_off[0] = 0;
  }
  c->row_off[++c->n_rows] = c->n_tok;
  return 0;
}

// One text's rows: [pre] tokens of whole words, up to max_len with the specials, [post].
static int add_rows(distill_cls *c, const tokenizer *tok, const cls_text *x, int max_len, pith_err *err) {
  const int32_t *pre, *post;
  int n_pre, n_post;
  tokenizer_special_around(tok, &pre, &n_pre, &post, &n_post);
  int room = max_len - n_pre - n_post;
  if (room < 1) return pith_fail(err, "cutoff_len %d leaves no room between the classifier's special tokens", max_len);
  int32_t *ids;
  int64_t *word_of, n;
  if (cls_word_tokens(tok, x->text, x->words, x->n_words, &ids, &word_of, &n, err)) return -1;
  int rc = 0;
  for (int64_t i = 0; i < n && !rc;) {
    int64_t j = i + room < n ? i + room : n;
    // cut at a word boundary when the row can hold a whole word
    if (j < n && word_of[j] == word_of[j - 1]) {
      int64_t k = j;
      while (k > i && word_of[k - 1] == word_of[j]) k--;
      if (k > i) j = k;
    }
    for (int p = 0; p < n_pre && !rc; p++) rc = push_tok(c, pre[p], -1);
    for (int64_t k = i; k < j && !rc; k++) rc = push_tok(c, ids[k], (int8_t)x->keep[word_of[k]]);
    for (int p = 0; p < n_post && !rc; p++) rc = push_tok(c, post[p], -1);
    if (!rc) rc = end_row(c);
    i = j;
  }
  free(ids);
  free(word_of);
  return rc ? pith_fail(err, "rows: out of memory") : 0;
}

static uint64_t splitmix(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// This epoch's order of the training rows: a Fisher-Yates shuffle seeded by (seed, epoch).
static void shuffle(distill_cls *c) {
  uint64_t s = c->seed * 0xD1B54A32D192ED03ull + (uint64_t)c->epoch;
  for (int64_t i = 0; i < c->n_train_rows; i++) c->order[i] = i;
  for (int64_t i = c->n_train_rows - 1; i > 0; i--) {
    int64_t j = (int64_t)(splitmix(&s) % (uint64_t)(i + 1));
    int64_t t = c->order[i];
    c->order[i] = c->order[j], c->order[j] = t;
  }
}

distill_cls *distill_cls_open(const train_args *a, const tokenizer *tok, pith_err *err) {
  distill_cls *c = calloc(1, sizeof *c);
  if (!c) {
    pith_fail(err, "out of memory");
    return NULL;
  }
  c->seed = a->seed;
  int32_t pad = tokenizer_pad_id(tok);
  c->pad = pad >= 0 ? pad : 0;
  int rc = *a->label_file ? cls_labels_from_file(a->label_file, a->label_window, a->label_max_unmatched,
                                                 a->label_skip_unaligned, &c->texts, err)
                          : cls_labels_from_target(a->target_model_name_or_path, a->train_file, a->label_num_texts,
                                                   a->label_rate, a->label_iterative_size, a->threads, &c->texts, err);
  if (!rc && *a->label_file && c->texts.skipped)
    printf("labels: %lld pairs of %s skipped (they do not align)\n", (long long)c->texts.skipped, a->label_file);
  int64_t n = c->texts.n, n_val = (int64_t)ceil(a->val_size * (double)n);
  if (!rc && (n < 2 || n_val >= n))
    rc = pith_fail(err, "labels: %lld texts are too few to hold out val_size %g of them", (long long)n, a->val_size);
  c->n_train_texts = n - n_val;
  for (int64_t i = 0; i < n && !rc; i++) {
    if (i == c->n_train_texts) c->n_train_rows = c->n_rows;
    rc = add_rows(c, tok, &c->texts.texts[i], a->cutoff_len, err);
  }
  c->order = rc ? NULL : malloc(sizeof *c->order * (size_t)(c->n_train_rows + 1));
  if (!rc && !c->order) rc = pith_fail(err, "out of memory");
  if (rc) {
    distill_cls_free(c);
    return NULL;
  }
  shuffle(c);
  printf("classifier data: %lld texts (%lld held out), %lld rows (%lld held out), %lld tokens\n", (long long)n,
         (long long)n_val, (long long)c->n_rows, (long long)(c->n_rows - c->n_train_rows), (long long)c->n_tok);
  return c;
}

void distill_cls_free(distill_cls *c) {
  if (!c) return;
  cls_texts_free(&c->texts);
  free(c->ids);
  free(c->labels);
  free(c->row_off);
  free(c->order);
  free(c);
}

int64_t distill_cls_train_rows(const distill_cls *c) { return c->n_train_rows; }

// Rows rows[0..B) as tensors (padded to the longest).
static int batch_tensors(const distill_cls *c, const int64_t *rows, int B, pt_device dev, pt_tensor **ids,
                         pt_tensor **mask, pt_tensor **labels, int64_t *n_tokens, pith_err *err) {
  int64_t T = 1;
  for (int r = 0; r < B; r++) {
    int64_t len = c->row_off[rows[r] + 1] - c->row_off[rows[r]];
    if (len > T) T = len;
  }
  size_t n = (size_t)B * (size_t)T;
  int64_t *vi = malloc(sizeof *vi * n), *vl = malloc(sizeof *vl * n);
  uint8_t *vm = calloc(n, 1);
  if (!vi || !vl || !vm) {
    free(vi), free(vl), free(vm);
    return pith_fail(err, "batch: out of memory");
  }
  *n_tokens = 0;
  for (int r = 0; r < B; r++) {
    int64_t off = c->row_off[rows[r]], len = c->row_off[rows[r] + 1] - off;
    for (int64_t t = 0; t < T; t++) {
      size_t k = (size_t)r * (size_t)T + (size_t)t;
      vi[k] = t < len ? c->ids[off + t] : c->pad;
      vl[k] = t < len && c->labels[off + t] >= 0 ? c->labels[off + t] : CLS_IGNORE;
      vm[k] = t < len;
    }
    *n_tokens += len;
  }
  *ids = pt_to_device(pt_from_data(vi, PT_I64, PT_SHAPE(B, T), PT_CPU), dev);
  *labels = pt_to_device(pt_from_data(vl, PT_I64, PT_SHAPE(B, T), PT_CPU), dev);
  *mask = pt_to_device(pt_from_data(vm, PT_BOOL, PT_SHAPE(B, T), PT_CPU), dev);
  free(vi), free(vl), free(vm);
  return pt_ok() ? 0 : pt_fail(err, "batch");
}

int distill_cls_next(distill_cls *c, int B, pt_device dev, pt_tensor **ids, pt_tensor **mask, pt_tensor **labels,
                     int64_t *n_tokens, pith_err *err) {
  if (c->n_train_rows < B) return pith_fail(err, "labels: %lld training rows, fewer than a batch of %d",
                                            (long long)c->n_train_rows, B);
  if (c->pos + B > c->n_train_rows) {  // the rest of the epoch is dropped (drop_last)
    c->epoch++, c->pos = 0;
    shuffle(c);
  }
  const int64_t *rows = c->order + c->pos;
  c->pos += B;
  return batch_tensors(c, rows, B, dev, ids, mask, labels, n_tokens, err);
}

void distill_cls_tell(const distill_cls *c, char *buf, size_t len) {
  snprintf(buf, len, "cls:%lld:%lld", (long long)c->epoch, (long long)c->pos);
}

int distill_cls_seek(distill_cls *c, const char *cursor, pith_err *err) {
  long long e, p;
  if (sscanf(cursor, "cls:%lld:%lld", &e, &p) != 2 || e < 0 || p < 0 || p > c->n_train_rows)
    return pith_fail(err, "checkpoint: data cursor '%s' is not a classifier run's (cls:EPOCH:ROW)", cursor);
  c->epoch = e, c->pos = p;
  shuffle(c);
  return 0;
}

pt_tensor *distill_cls_loss(const encoder_model *m, pt_gen *g, const pt_tensor *ids, const pt_tensor *mask,
                            const pt_tensor *labels, pith_err *err) {
  encoder_inputs in = {.ids = ids, .mask = mask, .dropout_gen = g};
  encoder_outputs out;
  if (encoder_forward(m, &in, &out, err)) return NULL;
  pt_tensor *logits = pt_reshape(pt_to_dtype(out.logits, PT_F32), PT_SHAPE(-1, m->cfg.num_labels));
  pt_tensor *loss = pt_cross_entropy(logits, pt_reshape(labels, PT_SHAPE(-1)), CLS_IGNORE, PT_REDUCE_MEAN);
  if (!loss) pt_fail(err, "classifier loss");
  return loss;
}

int distill_cls_evaluate(const encoder_model *m, const distill_cls *c, int B, cls_metrics *out, pith_err *err) {
  memset(out, 0, sizeof *out);
  int was = pt_set_grad_enabled(0), rc = 0;
  double loss_sum = 0;
  int64_t labeled = 0, *rows = malloc(sizeof *rows * (size_t)B);
  if (!rows) rc = pith_fail(err, "evaluate: out of memory");
  for (int64_t r0 = c->n_train_rows; r0 < c->n_rows && !rc; r0 += B) {
    int nb = (int)(c->n_rows - r0 < B ? c->n_rows - r0 : B);
    for (int r = 0; r < nb; r++) rows[r] = r0 + r;
    pt_scope s = pt_scope_begin();
    pt_tensor *ids, *mask, *labels;
    int64_t n_tokens;
    encoder_inputs in;
    encoder_outputs o;
    rc = batch_tensors(c, rows, nb, m->device, &ids, &mask, &labels, &n_tokens, err);
    if (!rc) {
      in = (encoder_inputs){.ids = ids, .mask = mask};
      rc = encoder_forward(m, &in, &o, err);
    }
    if (!rc) {
      int64_t T = pt_size(ids, 1), n = (int64_t)nb * T;
      pt_tensor *logits = pt_reshape(pt_to_dtype(o.logits, PT_F32), PT_SHAPE(-1, m->cfg.num_labels));
      pt_tensor *flat = pt_reshape(labels, PT_SHAPE(-1));
      pt_tensor *sum = pt_cross_entropy(logits, flat, CLS_IGNORE, PT_REDUCE_SUM);
      pt_tensor *pred = pt_to_device(pt_argmax(logits, 1, 0), PT_CPU);
      pt_tensor *lab = pt_to_device(flat, PT_CPU);
      int64_t *vp = malloc(sizeof *vp * (size_t)n), *vl = malloc(sizeof *vl * (size_t)n);
      if (!vp || !vl || !sum || pt_to_data(pred, vp, sizeof *vp * (size_t)n) ||
          pt_to_data(lab, vl, sizeof *vl * (size_t)n)) {
        rc = pt_fail(err, "evaluate");
      } else {
        loss_sum += pt_item(sum);
        for (int64_t k = 0; k < n; k++) {
          if (vl[k] == CLS_IGNORE) continue;
          labeled++;
          if (vp[k] == 1) vl[k] == 1 ? out->tp++ : out->fp++;
          else vl[k] == 1 ? out->fn++ : out->tn++;
        }
      }
      free(vp), free(vl);
    }
    pt_scope_end(s);
  }
  pt_set_grad_enabled(was);
  free(rows);
  out->loss = labeled ? loss_sum / (double)labeled : NAN;
  cls_metrics_finish(out);
  return rc;
}

// tokenizer set beside a classifier folder with a tokenizer of its own: they must be one vocabulary.
static int same_tokenizer(const char *dir, const tokenizer *tok, pith_err *err) {
  char path[4096];
  pith_path_join(path, sizeof path, dir, "tokenizer.json");
  if (!pith_is_file(path)) return 0;
  tokenizer *own = tokenizer_load(dir, err);
  if (!own) return -1;
  int32_t n = tokenizer_vocab_size(own), bad = n != tokenizer_vocab_size(tok) ? 0 : -1;
  for (int32_t i = 0; i < n && bad < 0; i++) {
    const char *p = tokenizer_token_piece(own, i), *q = tokenizer_token_piece(tok, i);
    if ((p == NULL) != (q == NULL) || (p && strcmp(p, q))) bad = i;
  }
  if (n != tokenizer_vocab_size(tok))
    pith_fail(err, "tokenizer %s and model_name_or_path %s: different tokenizers (%d and %d tokens)",
              tokenizer_source_path(tok), path, (int)tokenizer_vocab_size(tok), (int)n);
  else if (bad >= 0)
    pith_fail(err, "tokenizer %s and model_name_or_path %s: different tokenizers (id %d differs)",
              tokenizer_source_path(tok), path, (int)bad);
  tokenizer_free(own);
  return bad >= 0 || n != tokenizer_vocab_size(tok) ? -1 : 0;
}

encoder_model *distill_cls_model(const train_args *a, const tokenizer *tok, pith_err *err) {
  encoder_model *m = NULL;
  if (*a->model_name_or_path) {
    const char *dir = a->model_name_or_path;
    if (!encoder_folder_is_encoder(dir)) {
      pith_fail(err, "model_name_or_path %s: not an encoder folder (config.json with model_type bert or xlm-roberta); "
                "method classifier trains a BERT or XLM-R token classifier", dir);
      return NULL;
    }
    encoder_load_opts o = {.new_head = 1, .num_labels = 2, .seed = a->seed};
    m = encoder_folder_load(dir, PT_F32, a->device, &o, err);
  } else {
    encoder_config cfg;
    if (encoder_config_load(a->model_config, &cfg, err)) return NULL;
    cfg.num_labels = 2;
    snprintf(cfg.labels[0], sizeof cfg.labels[0], "drop");
    snprintf(cfg.labels[1], sizeof cfg.labels[1], "keep");
    m = encoder_new_random(&cfg, a->seed, PT_F32, a->device, err);
  }
  if (m && *a->model_name_or_path && *a->tokenizer && same_tokenizer(a->model_name_or_path, tok, err)) {
    encoder_free(m);
    return NULL;
  }
  if (m && tokenizer_vocab_size(tok) > m->cfg.vocab_size) {
    pith_fail(err, "tokenizer %s: %d tokens, but the classifier's vocab_size is %d (another model's tokenizer?)",
              tokenizer_source_path(tok), (int)tokenizer_vocab_size(tok), m->cfg.vocab_size);
    encoder_free(m);
    return NULL;
  }
  if (m && encoder_set_trainable(m, 1)) {
    pt_fail(err, "classifier");
    encoder_free(m);
    return NULL;
  }
  return m;
}

int distill_cls_preflight(const train_args *a, pith_err *err) {
  if (!*a->model_name_or_path == !*a->model_config)
    return pith_fail(err, "method classifier: set one of model_name_or_path (an encoder folder) and model_config "
                          "(a config.json for random weights)");
  if (*a->model_config && !*a->tokenizer)
    return pith_fail(err, "model_config %s: set tokenizer (the classifier's tokenizer.json) too", a->model_config);
  if (*a->model_name_or_path && !encoder_folder_is_encoder(a->model_name_or_path))
    return pith_fail(err, "model_name_or_path %s: not an encoder folder (config.json with model_type bert or "
                          "xlm-roberta); method classifier trains a BERT or XLM-R token classifier",
                     a->model_name_or_path);
  if (*a->label_file) {
    if (!pith_is_file(a->label_file)) return pith_fail(err, "label_file %s: no such file", a->label_file);
    return 0;
  }
  if (!*a->target_model_name_or_path)
    return pith_fail(err, "method classifier: set label_file (JSONL pairs) or target_model_name_or_path (labels "
                          "from the target's own compression of train_file)");
  if (!*a->train_file) return pith_fail(err, "train_file: not set (the texts the target labels)");
  if (!pith_is_file(a->train_file)) return pith_fail(err, "train_file %s: no such file", a->train_file);
  return 0;
}

int distill_cls_write_labels(const distill_cls *c, const char *path, pith_err *err) {
  strbuf b = {0};
  for (int64_t i = 0; i < c->texts.n; i++) {
    const cls_text *x = &c->texts.texts[i];
    strbuf_adds(&b, "{\"original\": ");
    strbuf_add_json(&b, x->text, strlen(x->text));
    strbuf_adds(&b, ", \"keep\": \"");
    for (int64_t k = 0; k < x->n_words; k++) strbuf_addc(&b, x->keep[k] ? '1' : '0');
    strbuf_printf(&b, "\", \"split\": \"%s\"}\n", i < c->n_train_texts ? "train" : "val");
  }
  if (!strbuf_ok(&b)) {
    strbuf_free(&b);
    return pith_fail(err, "%s: out of memory", path);
  }
  int rc = pith_write_file_atomic(path, b.p ? b.p : "", b.n, err);
  strbuf_free(&b);
  return rc;
}
