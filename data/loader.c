// loader: the batch loader. At open it reads the (small) per-record arrays it needs: the split
// filter and the token offsets of the columns it serves; each row then costs one hyperslab read
// per column. Each epoch it draws the permutation from (seed, epoch) and yields this rank's share.
#include "loader.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct loader {
  loader_config cfg;          // cfg.tokens: an owned copy
  corpus *c;
  int64_t n_docs;             // records that pass the split filter
  int64_t *records;           // (n_docs) their record indices
  int64_t *tok_off;           // (n_records + 1) token offsets of the main column (DOC or CONTEXT)
  int64_t *q_off;             // QA: (n_records + 1) question token offsets
  int64_t *ans_row;           // QA: (n_records + 1) answer_offsets (first answer row of each example)
  int64_t *ans_off;           // QA: (n_answers + 1) answer token offsets
  int64_t n_items;            // examples per epoch over all ranks (PACK: windows)
  int64_t per_rank;           // this rank's examples per epoch
  int64_t end;                // positions per epoch after drop_last
  int64_t total_stream;       // PACK: tokens in the packed stream (documents + one eos each)
  // The current epoch:
  int64_t epoch, position;
  int64_t *order;             // (n_items) CUT/QA: indices into records; PACK: window ids
  int64_t *doc_order;         // PACK: (n_docs) indices into records, in packing order
  int64_t *prefix;            // PACK: (n_docs + 1) stream position where each packed document starts
  // Batch buffers:
  int32_t *ids;               // (B, N)
  uint8_t *mask;              // (B, N)
  int64_t *index;             // (B)
  int32_t *dec_ids;           // (B, M)
  uint8_t *dec_mask;          // (B, M)
  uint8_t *dec_loss_mask;     // (B, M)
  int32_t *answer_start;      // (B)
  int32_t *question;          // QA: (M) the first tokens of the row's question
  int32_t *answer;            // QA: (M) the first tokens of its answer
};

// ---------------------------------------------------------------------------------------------
// Deterministic permutations: splitmix64 and Fisher-Yates

static uint64_t splitmix64(uint64_t *state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// A generator state for (seed, epoch, stream); distinct streams give unrelated sequences.
static uint64_t rng_state(uint64_t seed, int64_t epoch, uint64_t stream) {
  uint64_t s = seed;
  s = splitmix64(&s) ^ (uint64_t)epoch;
  s = splitmix64(&s) ^ stream;
  return splitmix64(&s);
}

// Uniform in [0, n) without modulo bias.
static uint64_t rng_below(uint64_t *state, uint64_t n) {
  uint64_t threshold = (0 - n) % n;
  for (;;) {
    uint64_t r = splitmix64(state);
    if (r >= threshold) return r % n;
  }
}

// a (n) = 0..n-1, shuffled when `shuffle`.
static void permutation(int64_t *a, int64_t n, int shuffle, uint64_t state) {
  for (int64_t i = 0; i < n; i++) a[i] = i;
  if (!shuffle) return;
  for (int64_t i = n - 1; i > 0; i--) {
    int64_t j = (int64_t)rng_below(&state, (uint64_t)i + 1);
    int64_t t = a[i];
    a[i] = a[j];
    a[j] = t;
  }
}

enum { STREAM_ITEMS = 1, STREAM_WINDOWS = 2 };

// ---------------------------------------------------------------------------------------------
// Cursor

int loader_cursor_format(const loader_cursor *cur, char *buf, size_t size) {
  int n = snprintf(buf, size, "pith-loader-cursor 1 epoch=%" PRId64 " position=%" PRId64 " seed=%" PRIu64
                   " world_size=%d n_items=%" PRId64, cur->epoch, cur->position, cur->seed, cur->world_size,
                   cur->n_items);
  return n > 0 && (size_t)n < size ? 0 : -1;
}

int loader_cursor_parse(const char *s, loader_cursor *cur, pith_err *err) {
  loader_cursor c = {0};
  int version = 0, used = 0;
  int got = sscanf(s, "pith-loader-cursor %d epoch=%" SCNd64 " position=%" SCNd64 " seed=%" SCNu64
                   " world_size=%d n_items=%" SCNd64 "%n", &version, &c.epoch, &c.position, &c.seed,
                   &c.world_size, &c.n_items, &used);
  if (got != 6 || version != 1 || s[used + strspn(s + used, " \t\r\n")] != 0)
    return pith_fail(err, "not a loader cursor: \"%.80s\" (want \"pith-loader-cursor 1 epoch=... "
                     "position=... seed=... world_size=... n_items=...\")", s);
  if (c.epoch < 0 || c.position < 0 || c.world_size < 1 || c.n_items < 0)
    return pith_fail(err, "loader cursor out of range: \"%.80s\"", s);
  *cur = c;
  return 0;
}

loader_cursor loader_tell(const loader *l) {
  loader_cursor c = {l->epoch, l->position, l->cfg.seed, l->cfg.world_size, l->n_items};
  return c;
}

// ---------------------------------------------------------------------------------------------
// Open

static int check_config(const loader_config *cfg, const corpus *c, pith_err *err) {
  const char *path = corpus_path(c);
  corpus_kind kind = corpus_get_info(c)->kind;
  if (cfg->mode < LOADER_CUT || cfg->mode > LOADER_QA) return pith_fail(err, "loader: unknown mode %d", (int)cfg->mode);
  if ((cfg->mode == LOADER_QA) != (kind == CORPUS_QA))
    return pith_fail(err, "%s: a %s corpus cannot feed a %s loader", path, corpus_kind_name(kind),
                     cfg->mode == LOADER_QA ? "qa" : "documents");
  if (cfg->batch_size < 1 || cfg->seq_len < 1)
    return pith_fail(err, "loader: batch_size %d and seq_len %d must be >= 1", cfg->batch_size, cfg->seq_len);
  if (cfg->rank < 0 || cfg->rank >= cfg->world_size)
    return pith_fail(err, "loader: rank %d is not in [0, world_size=%d)", cfg->rank, cfg->world_size);
  if (cfg->split < LOADER_ALL_SPLITS || cfg->split > CORPUS_SPLIT_TEST)
    return pith_fail(err, "loader: unknown split %d", cfg->split);
  if (cfg->mode != LOADER_QA) return 0;
  const task_tokens *tt = &cfg->tokens;
  if (tt->n_qp < 0 || tt->n_ap < 0 || (tt->n_qp > 0 && !tt->qp) || (tt->n_ap > 0 && !tt->ap))
    return pith_fail(err, "loader: bad question/answer prefix arrays");
  if (cfg->dec_len < tt->n_qp + tt->n_ap + 1)
    return pith_fail(err, "loader: dec_len %d cannot hold the prompt prefixes (%d + %d tokens) and an eos",
                     cfg->dec_len, tt->n_qp, tt->n_ap);
  return 0;
}

// The records of the chosen split, in corpus order, read in blocks.
static int select_records(loader *l, pith_err *err) {
  int64_t n = corpus_get_info(l->c)->n_records, block = 1 << 16;
  uint8_t *splits = malloc((size_t)block);
  l->records = malloc(sizeof *l->records * (size_t)(n > 0 ? n : 1));
  if (!splits || !l->records) {
    free(splits);
    return pith_fail(err, "loader: out of memory for %" PRId64 " records", n);
  }
  l->n_docs = 0;
  for (int64_t at = 0; at < n; at += block) {
    int64_t count = n - at < block ? n - at : block;
    if (corpus_read_splits(l->c, at, count, splits, err) < 0) {
      free(splits);
      return -1;
    }
    for (int64_t i = 0; i < count; i++)
      if (l->cfg.split == LOADER_ALL_SPLITS || splits[i] == l->cfg.split) l->records[l->n_docs++] = at + i;
  }
  free(splits);
  return 0;
}

// *out (rows + 1) = the token offsets of a column (text = 0) or answer_offsets (col < 0).
static int read_all_offsets(loader *l, int col, int64_t rows, int64_t **out, pith_err *err) {
  *out = malloc(sizeof **out * (size_t)(rows + 1));
  if (!*out) return pith_fail(err, "loader: out of memory for %" PRId64 " offsets", rows + 1);
  if (col < 0) return corpus_read_answer_offsets(l->c, 0, rows, *out, err);
  return corpus_read_offsets(l->c, (corpus_col)col, 0, 0, rows + 1, *out, err);
}

static int read_offsets(loader *l, pith_err *err) {
  const corpus_info *in = corpus_get_info(l->c);
  if (l->cfg.mode != LOADER_QA) return read_all_offsets(l, CORPUS_COL_DOC, in->n_records, &l->tok_off, err);
  if (read_all_offsets(l, CORPUS_COL_CONTEXT, in->n_records, &l->tok_off, err) < 0 ||
      read_all_offsets(l, CORPUS_COL_QUESTION, in->n_records, &l->q_off, err) < 0 ||
      read_all_offsets(l, -1, in->n_records, &l->ans_row, err) < 0)
    return -1;
  return read_all_offsets(l, CORPUS_COL_ANSWER, in->n_answers, &l->ans_off, err);
}

static int64_t doc_len(const loader *l, int64_t k) {
  int64_t r = l->records[k];
  return l->tok_off[r + 1] - l->tok_off[r];
}

// Examples per epoch and this rank's share; fails when a rank would get no batch at all.
static int count_items(loader *l, pith_err *err) {
  int64_t N = l->cfg.seq_len, B = l->cfg.batch_size, W = l->cfg.world_size;
  if (l->cfg.mode == LOADER_PACK) {
    l->total_stream = 0;
    for (int64_t k = 0; k < l->n_docs; k++) l->total_stream += doc_len(l, k) + 1;
    l->n_items = (l->total_stream + N - 1) / N;
  } else {
    l->n_items = l->n_docs;
  }
  l->per_rank = l->n_items / W;
  l->end = l->cfg.drop_last ? l->per_rank / B * B : l->per_rank;
  if (l->end == 0)
    return pith_fail(err, "%s: split %s has %" PRId64 " %s: not one batch of %" PRId64 " per rank for world_size %"
                     PRId64 "%s", corpus_path(l->c),
                     l->cfg.split == LOADER_ALL_SPLITS ? "all" : corpus_split_name(l->cfg.split), l->n_items,
                     l->cfg.mode == LOADER_PACK ? "windows" : "examples", B, W,
                     l->cfg.drop_last ? " with drop_last" : "");
  return 0;
}

static int alloc_buffers(loader *l, pith_err *err) {
  size_t B = (size_t)l->cfg.batch_size, N = (size_t)l->cfg.seq_len;
  size_t M = l->cfg.mode == LOADER_QA ? (size_t)l->cfg.dec_len : 0;
  size_t n_order = (size_t)(l->n_items > 0 ? l->n_items : 1);
  l->order = malloc(sizeof *l->order * n_order);
  l->ids = malloc(sizeof *l->ids * B * N);
  l->mask = malloc(B * N);
  l->index = malloc(sizeof *l->index * B);
  int ok = l->order && l->ids && l->mask && l->index;
  if (l->cfg.mode == LOADER_PACK) {
    l->doc_order = malloc(sizeof *l->doc_order * (size_t)(l->n_docs + 1));
    l->prefix = malloc(sizeof *l->prefix * (size_t)(l->n_docs + 1));
    ok = ok && l->doc_order && l->prefix;
  }
  if (M > 0) {
    l->dec_ids = malloc(sizeof *l->dec_ids * B * M);
    l->dec_mask = malloc(B * M);
    l->dec_loss_mask = malloc(B * M);
    l->answer_start = malloc(sizeof *l->answer_start * B);
    l->question = malloc(sizeof *l->question * M);
    l->answer = malloc(sizeof *l->answer * M);
    ok = ok && l->dec_ids && l->dec_mask && l->dec_loss_mask && l->answer_start && l->question && l->answer;
  }
  return ok ? 0 : pith_fail(err, "loader: out of memory for batch buffers");
}

// Draw the order of epoch e (same on every rank).
static void begin_epoch(loader *l, int64_t e) {
  l->epoch = e;
  l->position = 0;
  if (l->cfg.mode != LOADER_PACK) {
    permutation(l->order, l->n_items, l->cfg.shuffle, rng_state(l->cfg.seed, e, STREAM_ITEMS));
    return;
  }
  permutation(l->doc_order, l->n_docs, l->cfg.shuffle, rng_state(l->cfg.seed, e, STREAM_ITEMS));
  l->prefix[0] = 0;
  for (int64_t k = 0; k < l->n_docs; k++) l->prefix[k + 1] = l->prefix[k] + doc_len(l, l->doc_order[k]) + 1;
  permutation(l->order, l->n_items, l->cfg.shuffle, rng_state(l->cfg.seed, e, STREAM_WINDOWS));
}

static int apply_resume(loader *l, const loader_cursor *cur, pith_err *err) {
  if (cur->seed != l->cfg.seed || cur->n_items != l->n_items)
    return pith_fail(err, "%s: the loader cursor belongs to another run (seed %" PRIu64 ", %" PRId64
                     " items; this run: seed %" PRIu64 ", %" PRId64 " items)", corpus_path(l->c),
                     cur->seed, cur->n_items, l->cfg.seed, l->n_items);
  // Another world size: the ranks had consumed the first position × world_size examples of the
  // epoch's order between them, which the new ranks share out again (whole positions only).
  int64_t consumed = cur->position * cur->world_size, W = l->cfg.world_size;
  if (consumed % W)
    return pith_fail(err, "%s: the loader cursor's %" PRId64 " examples (%" PRId64 " on each of %d ranks) do not "
                     "divide among world_size %" PRId64 " (keep the global batch a multiple of the world size)",
                     corpus_path(l->c), consumed, cur->position, cur->world_size, W);
  int64_t position = consumed / W;
  if (cur->epoch < 0 || cur->position < 0 || position > l->end)
    return pith_fail(err, "%s: loader cursor position %" PRId64 " is past the epoch's %" PRId64, corpus_path(l->c),
                     position, l->end);
  begin_epoch(l, cur->epoch);
  l->position = position;
  return 0;
}

loader *loader_open(const char *path, const loader_config *cfg, const loader_cursor *resume, pith_err *err) {
  loader *l = calloc(1, sizeof *l);
  if (!l) return pith_fail(err, "loader: out of memory"), NULL;
  l->cfg = *cfg;
  if (l->cfg.world_size == 0) l->cfg.world_size = 1;
  int ok = task_tokens_copy(&l->cfg.tokens, &cfg->tokens, err);
  if (ok < 0) {
    free(l);
    return NULL;
  }
  if (!(l->c = corpus_open(path, err))) ok = -1;
  if (ok == 0 && (check_config(&l->cfg, l->c, err) < 0 || select_records(l, err) < 0 || read_offsets(l, err) < 0 ||
                  count_items(l, err) < 0 || alloc_buffers(l, err) < 0))
    ok = -1;
  if (ok == 0) {
    if (resume)
      ok = apply_resume(l, resume, err);
    else
      begin_epoch(l, 0);
  }
  if (ok < 0) {
    loader_close(l);
    return NULL;
  }
  return l;
}

void loader_close(loader *l) {
  if (!l) return;
  corpus_close(l->c);
  task_tokens_free(&l->cfg.tokens);
  void *owned[] = {l->records, l->tok_off, l->q_off, l->ans_row, l->ans_off, l->order, l->doc_order, l->prefix,
                   l->ids, l->mask, l->index, l->dec_ids, l->dec_mask, l->dec_loss_mask, l->answer_start,
                   l->question, l->answer};
  for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++) free(owned[i]);
  free(l);
}

int64_t loader_examples_per_epoch(const loader *l) { return l->per_rank; }
int64_t loader_batches_per_epoch(const loader *l) {
  return (l->end + l->cfg.batch_size - 1) / l->cfg.batch_size;
}
corpus *loader_corpus(loader *l) { return l->c; }

// ---------------------------------------------------------------------------------------------
// Rows

// row (N): the first tokens of record rec's column col (CUT: then optionally eos), then padding.
static int fill_encoder(loader *l, corpus_col col, int64_t rec, int32_t *row, uint8_t *mask, pith_err *err) {
  int64_t N = l->cfg.seq_len, len = l->tok_off[rec + 1] - l->tok_off[rec];
  int64_t n = len < N ? len : N;
  if (corpus_read_flat_tokens(l->c, col, l->tok_off[rec], n, row, err) < 0) return -1;
  if (col == CORPUS_COL_DOC && l->cfg.doc_eos && n < N) row[n++] = l->cfg.tokens.eos;
  task_encoder_row(&l->cfg.tokens, row, n, (int)N, row, mask);
  return 0;
}

// The packed document holding stream position pos: k with prefix[k] <= pos < prefix[k + 1].
static int64_t packed_doc_at(const loader *l, int64_t pos) {
  int64_t lo = 0, hi = l->n_docs - 1;
  while (lo < hi) {
    int64_t mid = lo + (hi - lo + 1) / 2;
    if (l->prefix[mid] <= pos) lo = mid; else hi = mid - 1;
  }
  return lo;
}

// row (N): stream positions [w N, (w + 1) N) of the packed epoch; *first = its first record.
static int fill_pack(loader *l, int64_t w, int32_t *row, uint8_t *mask, int64_t *first, pith_err *err) {
  int64_t N = l->cfg.seq_len, pos = w * N, end = pos + N < l->total_stream ? pos + N : l->total_stream;
  int64_t k = packed_doc_at(l, pos), t = 0;
  *first = l->records[l->doc_order[k]];
  while (pos < end) {
    int64_t rec = l->records[l->doc_order[k]], len = l->tok_off[rec + 1] - l->tok_off[rec];
    int64_t off = pos - l->prefix[k], n = len - off < end - pos ? len - off : end - pos;
    if (n > 0 && corpus_read_flat_tokens(l->c, CORPUS_COL_DOC, l->tok_off[rec] + off, n, row + t, err) < 0)
      return -1;
    t += n > 0 ? n : 0;
    pos += n > 0 ? n : 0;
    if (pos < end) {  // the separator after this document
      row[t++] = l->cfg.tokens.eos;
      pos++;
      k++;
    }
  }
  for (int64_t i = 0; i < N; i++) {
    if (i >= t) row[i] = l->cfg.tokens.pad;
    mask[i] = i < t;
  }
  return 0;
}

// Decoder row (M): task_qa_decoder_row over the record's question and first answer, of which it
// reads at most M tokens each.
static int fill_decoder(loader *l, int64_t rec, int row_i, pith_err *err) {
  int64_t M = l->cfg.dec_len, nq = l->q_off[rec + 1] - l->q_off[rec];
  int64_t arow = l->ans_row[rec], has_answer = l->ans_row[rec + 1] > arow;
  int64_t na = has_answer ? l->ans_off[arow + 1] - l->ans_off[arow] : 0;
  if (corpus_read_flat_tokens(l->c, CORPUS_COL_QUESTION, l->q_off[rec], nq < M ? nq : M, l->question, err) < 0 ||
      (na > 0 && corpus_read_flat_tokens(l->c, CORPUS_COL_ANSWER, l->ans_off[arow], na < M ? na : M, l->answer,
                                         err) < 0))
    return -1;
  l->answer_start[row_i] =
      task_qa_decoder_row(&l->cfg.tokens, l->question, nq, l->answer, na, (int)M, l->dec_ids + row_i * M,
                          l->dec_mask + row_i * M, l->dec_loss_mask + row_i * M);
  return 0;
}

static int fill_row(loader *l, int64_t item, int row_i, pith_err *err) {
  int64_t N = l->cfg.seq_len;
  int32_t *row = l->ids + row_i * N;
  uint8_t *mask = l->mask + row_i * N;
  if (l->cfg.mode == LOADER_PACK) return fill_pack(l, item, row, mask, &l->index[row_i], err);
  int64_t rec = l->records[item];
  l->index[row_i] = rec;
  if (l->cfg.mode == LOADER_CUT) return fill_encoder(l, CORPUS_COL_DOC, rec, row, mask, err);
  if (fill_encoder(l, CORPUS_COL_CONTEXT, rec, row, mask, err) < 0) return -1;
  return fill_decoder(l, rec, row_i, err);
}

static void fill_padding_row(loader *l, int row_i) {
  int64_t N = l->cfg.seq_len, M = l->cfg.mode == LOADER_QA ? l->cfg.dec_len : 0;
  task_padding_row(&l->cfg.tokens, (int)N, l->ids + row_i * N, l->mask + row_i * N, NULL, NULL);
  l->index[row_i] = -1;
  if (M == 0) return;
  task_padding_row(&l->cfg.tokens, (int)M, l->dec_ids + row_i * M, l->dec_mask + row_i * M, NULL, NULL);
  memset(l->dec_loss_mask + row_i * M, 0, (size_t)M);
  l->answer_start[row_i] = -1;
}

int loader_next(loader *l, loader_batch *batch, pith_err *err) {
  if (l->position >= l->end) {
    begin_epoch(l, l->epoch + 1);
    return 0;
  }
  int B = l->cfg.batch_size, W = l->cfg.world_size;
  int rows = l->end - l->position < B ? (int)(l->end - l->position) : B;
  for (int i = 0; i < B; i++) {
    if (i >= rows) {
      fill_padding_row(l, i);
      continue;
    }
    int64_t g = (l->position + i) * W + l->cfg.rank;  // this rank's slice of the epoch order
    if (fill_row(l, l->order[g], i, err) < 0) return -1;
  }
  l->position += rows;
  loader_batch b = {.B = B, .N = l->cfg.seq_len, .M = l->cfg.mode == LOADER_QA ? l->cfg.dec_len : 0,
                    .n_rows = rows, .epoch = l->epoch, .ids = l->ids, .mask = l->mask, .index = l->index,
                    .dec_ids = l->dec_ids, .dec_mask = l->dec_mask, .dec_loss_mask = l->dec_loss_mask,
                    .answer_start = l->answer_start};
  *batch = b;
  return 1;
}
