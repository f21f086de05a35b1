// loader: cut/pad and pack rows and masks, the QA decoder row and its loss mask, deterministic
// shuffling, each example once per epoch, disjoint and covering shards, the split filter, and
// resume: a loader rebuilt from a saved cursor string yields the same batches as one that never
// stopped.
#include <hdf5.h>

#include "check.h"
#include "corpus.h"
#include "loader.h"
#include "sha256.h"

enum { PAD = 0, EOS = 1, N_DOCS = 103 };
static char dir[] = "/tmp/pith_test_loader_XXXXXX";
static char docs_path[600], qa_path[600];

// Document i has (i * 7) % 45 tokens; token j is 1000 * (i + 1) + j, so a row tells its origin.
static int doc_len(int i) { return (i * 7) % 45; }
static int32_t doc_token(int i, int j) { return 1000 * (i + 1) + j; }

static void write_docs(void) {
  pith_err err = {{0}};
  corpus_writer_config cfg = {CORPUS_DOCUMENTS, "tok", 1 << 20, "test_loader", 0.2, 0.1};
  corpus_writer *w = corpus_writer_create(docs_path, &cfg, &err);
  int32_t toks[64];
  for (int i = 0; w && i < N_DOCS; i++) {
    char id[32];
    snprintf(id, sizeof id, "doc-%d", i);
    for (int j = 0; j < doc_len(i); j++) toks[j] = doc_token(i, j);
    corpus_span s = {toks, doc_len(i), "", 0};
    CHECK(corpus_writer_add_doc(w, id, &s, &err) == 0);
  }
  CHECK_MSG(corpus_writer_close(w, &err) == 0, "%s", err.msg);
}

// QA example i: context (i % 30) + 5 tokens 100000 + 100 i + j; question (i % 9) tokens
// 200000 + 100 i + j; answers: none when i % 10 == 0, else one of (i % 6) + 1 tokens
// 300000 + 100 i + j (and a second, ignored, answer when i is odd).
static int ctx_len(int i) { return i % 30 + 5; }
static int q_len(int i) { return i % 9; }
static int ans_len(int i) { return i % 10 == 0 ? 0 : i % 6 + 1; }

static void write_qa(void) {
  pith_err err = {{0}};
  corpus_writer_config cfg = {CORPUS_QA, "tok", 1 << 20, "test_loader", 0, 0};
  corpus_writer *w = corpus_writer_create(qa_path, &cfg, &err);
  for (int i = 0; w && i < 60; i++) {
    int32_t c[40], q[10], a[8], a2[1] = {7};
    char id[32];
    snprintf(id, sizeof id, "qa-%d", i);
    for (int j = 0; j < ctx_len(i); j++) c[j] = 100000 + 100 * i + j;
    for (int j = 0; j < q_len(i); j++) q[j] = 200000 + 100 * i + j;
    for (int j = 0; j < ans_len(i); j++) a[j] = 300000 + 100 * i + j;
    corpus_span cs = {c, ctx_len(i), "", 0}, qs = {q, q_len(i), "", 0};
    corpus_answer answers[2] = {{{a, ans_len(i), "", 0}, -1}, {{a2, 1, "", 0}, -1}};
    int n_answers = ans_len(i) == 0 ? 0 : 1 + i % 2;
    CHECK(corpus_writer_add_qa(w, id, &cs, &qs, answers, n_answers, &err) == 0);
  }
  CHECK_MSG(corpus_writer_close(w, &err) == 0, "%s", err.msg);
}

static loader_config base_config(loader_mode mode) {
  loader_config c = {0};
  c.mode = mode;
  c.batch_size = 4;
  c.seq_len = 16;
  c.tokens.pad = PAD;
  c.tokens.eos = EOS;
  c.split = LOADER_ALL_SPLITS;
  c.shuffle = 1;
  c.seed = 1234;
  c.world_size = 1;
  return c;
}

static loader *open_or_fail(const char *path, const loader_config *cfg, const loader_cursor *cur) {
  pith_err err = {{0}};
  loader *l = loader_open(path, cfg, cur, &err);
  CHECK_MSG(l != NULL, "%s", err.msg);
  return l;
}

// The record indices of one epoch, in order (rows of padding skipped). out: (cap). Returns count.
static int epoch_indices(loader *l, int64_t *out, int cap) {
  loader_batch b;
  pith_err err = {{0}};
  int n = 0, r;
  while ((r = loader_next(l, &b, &err)) == 1)
    for (int i = 0; i < b.n_rows && n < cap; i++) out[n++] = b.index[i];
  CHECK_MSG(r == 0, "%s", err.msg);
  return n;
}

static void test_cut(void) {
  loader_config cfg = base_config(LOADER_CUT);
  cfg.shuffle = 0;
  cfg.doc_eos = 1;
  loader *l = open_or_fail(docs_path, &cfg, NULL);
  if (!l) return;
  CHECK(loader_examples_per_epoch(l) == N_DOCS && loader_batches_per_epoch(l) == (N_DOCS + 3) / 4);
  loader_batch b;
  pith_err err = {{0}};
  int bad = 0, seen = 0, r;
  while ((r = loader_next(l, &b, &err)) == 1) {
    CHECK(b.B == 4 && b.N == 16 && b.M == 0 && b.epoch == 0);
    for (int row = 0; row < b.B; row++) {
      const int32_t *ids = b.ids + row * 16;
      const uint8_t *mask = b.mask + row * 16;
      if (row >= b.n_rows) {  // padding rows of the last, partial batch
        bad += b.index[row] != -1;
        for (int t = 0; t < 16; t++) bad += ids[t] != PAD || mask[t] != 0;
        continue;
      }
      int i = (int)b.index[row], len = doc_len(i);
      bad += i != seen++;
      for (int t = 0; t < 16; t++) {
        int32_t want = t < len ? doc_token(i, t) : t == len ? EOS : PAD;
        bad += ids[t] != want || mask[t] != (t <= len);
      }
    }
  }
  CHECK(r == 0 && seen == N_DOCS && bad == 0);
  CHECK(b.n_rows == N_DOCS % 4);
  loader_close(l);

  // drop_last drops the partial batch; without doc_eos a short document is followed by padding.
  cfg.drop_last = 1;
  cfg.doc_eos = 0;
  l = open_or_fail(docs_path, &cfg, NULL);
  if (!l) return;
  CHECK(loader_batches_per_epoch(l) == N_DOCS / 4);
  int64_t idx[N_DOCS];
  CHECK(epoch_indices(l, idx, N_DOCS) == N_DOCS / 4 * 4);
  CHECK(loader_next(l, &b, &err) == 1 && b.index[1] == 1 && b.ids[16 + 7] == PAD && b.mask[16 + 7] == 0 &&
        b.mask[16 + 6] == 1);
  loader_close(l);
}

static void test_shuffle(void) {
  loader_config cfg = base_config(LOADER_CUT);
  loader *a = open_or_fail(docs_path, &cfg, NULL), *b = open_or_fail(docs_path, &cfg, NULL);
  if (!a || !b) return;
  int64_t e0[N_DOCS], e0b[N_DOCS], e1[N_DOCS];
  CHECK(epoch_indices(a, e0, N_DOCS) == N_DOCS);
  CHECK(epoch_indices(b, e0b, N_DOCS) == N_DOCS);
  CHECK(epoch_indices(a, e1, N_DOCS) == N_DOCS);
  CHECK(memcmp(e0, e0b, sizeof e0) == 0);  // same seed and epoch: same order
  CHECK(memcmp(e0, e1, sizeof e0) != 0);   // next epoch: another order
  int sorted = 1, once[N_DOCS] = {0}, once1[N_DOCS] = {0}, bad = 0;
  for (int i = 0; i < N_DOCS; i++) {
    sorted &= e0[i] == i;
    once[e0[i]]++;
    once1[e1[i]]++;
  }
  for (int i = 0; i < N_DOCS; i++) bad += once[i] != 1 || once1[i] != 1;
  CHECK(!sorted && bad == 0);  // shuffled, and every example exactly once per epoch
  loader_close(a);
  loader_close(b);

  cfg.seed = 99;  // another seed: another order
  a = open_or_fail(docs_path, &cfg, NULL);
  if (!a) return;
  CHECK(epoch_indices(a, e0b, N_DOCS) == N_DOCS && memcmp(e0, e0b, sizeof e0) != 0);
  loader_close(a);
}

static void test_shards(void) {
  for (int W = 2; W <= 4; W++) {
    int count[N_DOCS] = {0}, total = 0;
    int64_t batches = -1;
    for (int rank = 0; rank < W; rank++) {
      loader_config cfg = base_config(LOADER_CUT);
      cfg.rank = rank, cfg.world_size = W;
      loader *l = open_or_fail(docs_path, &cfg, NULL);
      if (!l) return;
      if (batches >= 0) CHECK(loader_batches_per_epoch(l) == batches);  // ranks stay in step
      batches = loader_batches_per_epoch(l);
      int64_t idx[N_DOCS];
      int n = epoch_indices(l, idx, N_DOCS);
      CHECK(n == N_DOCS / W);
      for (int i = 0; i < n; i++) count[idx[i]]++;
      total += n;
      loader_close(l);
    }
    int dup = 0, missing = 0;
    for (int i = 0; i < N_DOCS; i++) dup += count[i] > 1, missing += count[i] == 0;
    CHECK_MSG(dup == 0 && missing == N_DOCS % W && total == N_DOCS / W * W, "W=%d dup %d missing %d", W, dup, missing);
  }
}

static void test_split_filter(void) {
  pith_err err = {{0}};
  corpus *c = corpus_open(docs_path, &err);
  if (!c) return;
  int64_t n_val = corpus_get_info(c)->n_split[CORPUS_SPLIT_VAL];
  corpus_close(c);
  loader_config cfg = base_config(LOADER_CUT);
  cfg.split = CORPUS_SPLIT_VAL;
  cfg.batch_size = 2;
  loader *l = open_or_fail(docs_path, &cfg, NULL);
  if (!l) return;
  int64_t idx[N_DOCS];
  int n = epoch_indices(l, idx, N_DOCS), bad = 0;
  for (int i = 0; i < n; i++) {
    char id[32];
    snprintf(id, sizeof id, "doc-%d", (int)idx[i]);
    bad += corpus_split_of_id(id, 0.2, 0.1) != CORPUS_SPLIT_VAL;
  }
  CHECK(n == n_val && n > 5 && bad == 0);
  loader_close(l);

  // A split too small for one batch per rank is refused with the reason.
  cfg.batch_size = 1;
  cfg.world_size = 1000;
  cfg.rank = 3;
  CHECK(loader_open(docs_path, &cfg, NULL, &err) == NULL);
  CHECK_CONTAINS(err.msg, "split val has");
  cfg = base_config(LOADER_QA);
  CHECK(loader_open(docs_path, &cfg, NULL, &err) == NULL);
  CHECK_CONTAINS(err.msg, "a documents corpus cannot feed a qa loader");
}

// Pack without shuffling: the windows, in order, spell doc0 EOS doc1 EOS ... exactly.
static void test_pack(void) {
  int64_t total = 0;
  for (int i = 0; i < N_DOCS; i++) total += doc_len(i) + 1;
  int32_t *stream = malloc(sizeof *stream * (size_t)total);
  int64_t at = 0;
  for (int i = 0; i < N_DOCS; i++) {
    for (int j = 0; j < doc_len(i); j++) stream[at++] = doc_token(i, j);
    stream[at++] = EOS;
  }
  loader_config cfg = base_config(LOADER_PACK);
  cfg.shuffle = 0;
  loader *l = open_or_fail(docs_path, &cfg, NULL);
  if (!l) return;
  int64_t n_windows = (total + 15) / 16;
  CHECK(loader_examples_per_epoch(l) == n_windows);
  loader_batch b;
  pith_err err = {{0}};
  int64_t pos = 0, bad = 0;
  while (loader_next(l, &b, &err) == 1)
    for (int row = 0; row < b.n_rows; row++)
      for (int t = 0; t < 16; t++, pos++) {
        int real = pos < total;
        bad += b.mask[row * 16 + t] != real || b.ids[row * 16 + t] != (real ? stream[pos] : PAD);
      }
  CHECK_MSG(bad == 0 && pos == n_windows * 16, "bad %lld pos %lld", (long long)bad, (long long)pos);
  loader_close(l);

  // Shuffled: each window is a consecutive run of the shuffled stream (token then its successor
  // or EOS), and over an epoch every document token appears exactly once.
  cfg.shuffle = 1;
  l = open_or_fail(docs_path, &cfg, NULL);
  if (!l) return;
  int *seen = calloc(N_DOCS * 64, sizeof *seen);
  int64_t eos = 0, real = 0;
  bad = 0;
  while (loader_next(l, &b, &err) == 1)
    for (int row = 0; row < b.n_rows; row++)
      for (int t = 0; t < 16; t++) {
        int32_t v = b.ids[row * 16 + t], next = t < 15 ? b.ids[row * 16 + t + 1] : -1;
        if (!b.mask[row * 16 + t]) continue;
        real++;
        if (v == EOS) {
          eos++;
          continue;
        }
        int i = v / 1000 - 1, j = v % 1000;
        seen[i * 64 + j]++;
        if (t < 15 && b.mask[row * 16 + t + 1]) bad += !(next == v + 1 || (next == EOS && j == doc_len(i) - 1));
      }
  int64_t once = 0;
  for (int i = 0; i < N_DOCS; i++)
    for (int j = 0; j < doc_len(i); j++) once += seen[i * 64 + j] == 1;
  CHECK(eos == N_DOCS && real == total && once == total - N_DOCS && bad == 0);
  free(seen);
  free(stream);
  loader_close(l);
}

static void test_qa(void) {
  int32_t qp[2] = {2, 3}, ap[3] = {4, 5, 6};
  loader_config cfg = base_config(LOADER_QA);
  cfg.shuffle = 0;
  cfg.seq_len = 20;
  cfg.dec_len = 14;
  cfg.tokens.qp = qp, cfg.tokens.n_qp = 2;
  cfg.tokens.ap = ap, cfg.tokens.n_ap = 3;
  loader *l = open_or_fail(qa_path, &cfg, NULL);
  if (!l) return;
  loader_batch b;
  pith_err err = {{0}};
  int bad = 0, n = 0, cut_q = 0;
  while (loader_next(l, &b, &err) == 1)
    for (int row = 0; row < b.n_rows; row++, n++) {
      int i = (int)b.index[row];
      const int32_t *ids = b.ids + row * 20, *dec = b.dec_ids + row * 14;
      const uint8_t *mask = b.mask + row * 20, *dm = b.dec_mask + row * 14, *loss = b.dec_loss_mask + row * 14;
      for (int t = 0; t < 20; t++)  // the context, cut or padded to N
        bad += ids[t] != (t < ctx_len(i) ? 100000 + 100 * i + t : PAD) || mask[t] != (t < ctx_len(i));
      // The expected decoder row, with the documented cutting: question first, then the answer.
      int nq = q_len(i), na = ans_len(i), eos = 1;
      if (5 + nq + na + 1 > 14) nq = 14 - 5 - na - 1 > 0 ? 14 - 5 - na - 1 : 0;
      if (5 + nq + na + 1 > 14) eos = 0, na = 14 - 5 - nq;
      cut_q += nq < q_len(i);
      int32_t want[14];
      int t = 0;
      want[t++] = 2, want[t++] = 3;
      for (int j = 0; j < nq; j++) want[t++] = 200000 + 100 * i + j;
      want[t++] = 4, want[t++] = 5, want[t++] = 6;
      int start = t;
      for (int j = 0; j < na; j++) want[t++] = 300000 + 100 * i + j;
      if (eos) want[t++] = EOS;
      bad += b.answer_start[row] != start;
      for (int k = 0; k < 14; k++) {
        bad += dec[k] != (k < t ? want[k] : PAD) || dm[k] != (k < t);
        bad += loss[k] != (k >= start && k < t);  // exactly the answer and its eos
      }
    }
  CHECK_MSG(bad == 0 && n == 60, "bad %d n %d", bad, n);
  CHECK(cut_q > 0);  // the cases above were exercised
  loader_close(l);

  // Decoder too short for the prefixes: refused. A tight one cuts an answer and drops its eos.
  cfg.dec_len = 5;
  CHECK(loader_open(qa_path, &cfg, NULL, &err) == NULL);
  CHECK_CONTAINS(err.msg, "dec_len 5");
  cfg.dec_len = 8;
  l = open_or_fail(qa_path, &cfg, NULL);
  if (!l) return;
  CHECK(loader_next(l, &b, &err) == 1);
  // Row 1 = example 1: answer of 2 tokens, question of 1 -> prompt 2 + 0 + 3, answer 2, eos = 8.
  CHECK(b.index[1] == 1 && b.dec_ids[8 + 5] == 300100 && b.dec_ids[8 + 7] == EOS && b.answer_start[1] == 5);
  // Row 3 = example 3: answer of 4 tokens -> the question goes, the answer is cut to 3, no eos.
  CHECK(b.dec_ids[24 + 2] == 4 && b.dec_ids[24 + 7] == 300302 && b.dec_loss_mask[24 + 7] == 1);
  // Row 0 = example 0: no answer -> only the eos is a target.
  int targets = 0;
  for (int k = 0; k < 8; k++) targets += b.dec_loss_mask[k];
  CHECK(targets == 1 && b.dec_loss_mask[b.answer_start[0]] == 1 && b.dec_ids[b.answer_start[0]] == EOS);
  loader_close(l);
}

// Digest of everything a batch holds (or of "epoch end").
static void batch_digest(const loader_batch *b, int r, uint8_t d[32]) {
  sha256_ctx ctx;
  sha256_init(&ctx);
  sha256_update(&ctx, &r, sizeof r);
  if (r == 1) {
    size_t BN = (size_t)b->B * b->N, BM = (size_t)b->B * b->M;
    sha256_update(&ctx, &b->n_rows, sizeof b->n_rows);
    sha256_update(&ctx, &b->epoch, sizeof b->epoch);
    sha256_update(&ctx, b->ids, BN * sizeof *b->ids);
    sha256_update(&ctx, b->mask, BN);
    sha256_update(&ctx, b->index, (size_t)b->B * sizeof *b->index);
    if (BM) {
      sha256_update(&ctx, b->dec_ids, BM * sizeof *b->dec_ids);
      sha256_update(&ctx, b->dec_mask, BM);
      sha256_update(&ctx, b->dec_loss_mask, BM);
      sha256_update(&ctx, b->answer_start, (size_t)b->B * sizeof *b->answer_start);
    }
  }
  sha256_final(&ctx, d);
}

enum { STEPS = 90 };

// Read k batches, save the cursor as a string, "restart" from it, and compare the next batches
// (epoch ends included) with an uninterrupted run.
static void check_resume(const char *path, const loader_config *cfg, const char *what) {
  static uint8_t ref[STEPS][32];
  loader *l = open_or_fail(path, cfg, NULL);
  if (!l) return;
  loader_batch b;
  pith_err err = {{0}};
  for (int s = 0; s < STEPS; s++) batch_digest(&b, loader_next(l, &b, &err), ref[s]);
  loader_close(l);
  int ks[] = {0, 1, 7, 11, 12, 13, 14, 15, 16, 40};  // around each mode's epoch ends
  for (size_t n = 0; n < sizeof ks / sizeof ks[0]; n++) {
    int k = ks[n], bad = 0;
    l = open_or_fail(path, cfg, NULL);
    if (!l) return;
    for (int s = 0; s < k; s++) loader_next(l, &b, &err);
    char text[LOADER_CURSOR_MAX];
    loader_cursor cur = loader_tell(l);
    CHECK(loader_cursor_format(&cur, text, sizeof text) == 0);
    loader_close(l);
    loader_cursor back;
    CHECK_MSG(loader_cursor_parse(text, &back, &err) == 0, "%s", err.msg);
    l = open_or_fail(path, cfg, &back);
    if (!l) return;
    for (int s = k; s < STEPS; s++) {
      uint8_t d[32];
      batch_digest(&b, loader_next(l, &b, &err), d);
      bad += memcmp(d, ref[s], 32) != 0;
    }
    CHECK_MSG(bad == 0, "%s: resume after %d batches (%s): %d batches differ", what, k, text, bad);
    loader_close(l);
  }
}

// A cursor of 2 ranks (batch 4 each) resumed by 1 process (batch 8): its next batch holds the two
// ranks' next batches, rows interleaved (rank r's row j is row 2j + r); 6 consumed examples do
// not divide among 4 ranks.
static void test_resume_other_world(void) {
  pith_err err = {{0}};
  loader_config two[2], one = base_config(LOADER_CUT);
  one.batch_size = 8;
  int64_t want[2][4];
  loader_cursor cur = {0};
  for (int r = 0; r < 2; r++) {
    two[r] = base_config(LOADER_CUT);
    two[r].batch_size = 4, two[r].world_size = 2, two[r].rank = r;
    loader *l = loader_open(docs_path, &two[r], NULL, &err);
    CHECK_MSG(l != NULL, "%s", err.msg);
    if (!l) return;
    loader_batch b;
    for (int k = 0; k < 3; k++) CHECK(loader_next(l, &b, &err) == 1);
    cur = loader_tell(l);
    CHECK(loader_next(l, &b, &err) == 1);
    for (int j = 0; j < 4; j++) want[r][j] = b.index[j];
    loader_close(l);
  }
  loader *l = loader_open(docs_path, &one, &cur, &err);
  CHECK_MSG(l != NULL, "%s", err.msg);
  if (!l) return;
  loader_batch b;
  CHECK(loader_next(l, &b, &err) == 1);
  int bad = 0;
  for (int j = 0; j < 4; j++)
    for (int r = 0; r < 2; r++) bad += b.index[2 * j + r] != want[r][j];
  CHECK_MSG(bad == 0, "resume of a 2-rank cursor on 1 process: %d rows differ", bad);
  loader_close(l);
  loader_config four = base_config(LOADER_CUT);
  four.world_size = 4;
  cur.position = 3;
  CHECK(loader_open(docs_path, &four, &cur, &err) == NULL);
  CHECK_CONTAINS(err.msg, "do not divide among world_size 4");
}

static void test_resume(void) {
  loader_config cfg = base_config(LOADER_CUT);
  cfg.batch_size = 5, cfg.world_size = 2, cfg.rank = 1;  // 51 per rank: 11 batches + epoch end
  check_resume(docs_path, &cfg, "cut");
  cfg = base_config(LOADER_PACK);
  cfg.batch_size = 3;
  check_resume(docs_path, &cfg, "pack");
  int32_t qp[1] = {2}, ap[1] = {4};
  cfg = base_config(LOADER_QA);
  cfg.dec_len = 12, cfg.tokens.qp = qp, cfg.tokens.n_qp = 1;
  cfg.tokens.ap = ap, cfg.tokens.n_ap = 1;
  cfg.drop_last = 1;
  check_resume(qa_path, &cfg, "qa");

  // The cursor string, and refusals: malformed text, another seed, a position past the epoch.
  pith_err err = {{0}};
  loader_cursor cur = {3, 20, 1234, 1, N_DOCS}, back;
  char text[LOADER_CURSOR_MAX];
  CHECK(loader_cursor_format(&cur, text, sizeof text) == 0);
  CHECK(!strcmp(text, "pith-loader-cursor 1 epoch=3 position=20 seed=1234 world_size=1 n_items=103"));
  CHECK(loader_cursor_parse(text, &back, &err) == 0 && back.epoch == 3 && back.position == 20 &&
        back.seed == 1234 && back.world_size == 1 && back.n_items == N_DOCS);
  CHECK(loader_cursor_parse("epoch=3", &back, &err) == -1);
  CHECK_CONTAINS(err.msg, "not a loader cursor");
  CHECK(loader_cursor_parse("pith-loader-cursor 1 epoch=3 position=20 seed=1 world_size=1 n_items=5 x", &back, &err) == -1);
  cfg = base_config(LOADER_CUT);
  cur.seed = 77;
  CHECK(loader_open(docs_path, &cfg, &cur, &err) == NULL);
  CHECK_CONTAINS(err.msg, "another run");
  cur.seed = 1234, cur.position = 104;
  CHECK(loader_open(docs_path, &cfg, &cur, &err) == NULL);
  CHECK_CONTAINS(err.msg, "past the epoch");
  test_resume_other_world();
}

int main(void) {
  CHECK(mkdtemp(dir) != NULL);
  snprintf(docs_path, sizeof docs_path, "%s/docs.h5", dir);
  snprintf(qa_path, sizeof qa_path, "%s/qa.h5", dir);
  write_docs();
  write_qa();
  test_cut();
  test_shuffle();
  test_shards();
  test_split_filter();
  test_pack();
  test_qa();
  test_resume();
  // Every HDF5 file, dataset and attribute pith opened has been closed.
  CHECK_MSG(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL) == 0, "%d HDF5 objects left open",
            (int)H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL));
  unlink(docs_path);
  unlink(qa_path);
  rmdir(dir);
  return check_done("test_loader");
}
