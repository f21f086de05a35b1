// corpus: documents and QA files round-trip exactly (tokens, texts, ids, splits, attributes);
// split assignment is deterministic and close to the fractions; commits are atomic (no partial
// file after close, no file at all after an abort or a failed append); foreign or broken files
// give a one-line error naming the file.
#include <hdf5.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "check.h"
#include "corpus.h"
#include "sha256.h"

#define VOCAB 5000
static char dir[] = "/tmp/pith_test_corpus_XXXXXX";

static const char *tmp_path(const char *name) {
  static char buf[4][512];
  static int k = 0;
  char *p = buf[k++ % 4];
  snprintf(p, 512, "%s/%s", dir, name);
  return p;
}

static int exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

static int partial_exists(const char *path) {
  char p[600];
  snprintf(p, sizeof p, "%s.partial", path);
  return exists(p);
}

// Document i: id "doc-i", (i * 37) % 301 tokens (some empty), a UTF-8 text with multibyte chars.
static int doc_len(int i) { return (i * 37) % 301; }
static int32_t doc_token(int i, int j) { return (int32_t)((i * 131 + j * 17) % VOCAB); }
static void doc_text(int i, char *buf, size_t size) {
  snprintf(buf, size, "Document %d: caf\xc3\xa9 \xe6\xbc\xa2\xe5\xad\x97 \xf0\x9f\x99\x82 %.*s", i, i % 7, "xxxxxxx");
}

static corpus_writer_config docs_config(void) {
  corpus_writer_config cfg = {CORPUS_DOCUMENTS, "feedc0de", VOCAB, "test_corpus --docs", 0.1, 0.05};
  return cfg;
}

static int write_docs(const char *path, int n, pith_err *err) {
  corpus_writer_config cfg = docs_config();
  corpus_writer *w = corpus_writer_create(path, &cfg, err);
  if (!w) return -1;
  CHECK(partial_exists(path) && !exists(path));  // while writing: only the partial file
  if (corpus_writer_add_source(w, "/data/arxiv.jsonl", "00ff", err) < 0) return corpus_writer_abort(w), -1;
  int32_t toks[301];
  char text[128];
  for (int i = 0; i < n; i++) {
    char id[32];
    snprintf(id, sizeof id, "doc-%d", i);
    for (int j = 0; j < doc_len(i); j++) toks[j] = doc_token(i, j);
    doc_text(i, text, sizeof text);
    corpus_span s = {toks, doc_len(i), text, -1};
    if (corpus_writer_add_doc(w, id, &s, err) < 0) return corpus_writer_abort(w), -1;
  }
  CHECK(corpus_writer_count(w) == n);
  return corpus_writer_close(w, err);
}

static void test_documents(void) {
  pith_err err = {{0}};
  const char *path = tmp_path("docs.h5");
  int n = 3000;  // ~450k tokens: several flushes and chunks per dataset
  CHECK_MSG(write_docs(path, n, &err) == 0, "%s", err.msg);
  CHECK(exists(path) && !partial_exists(path));

  corpus *c = corpus_open(path, &err);
  CHECK_MSG(c != NULL, "%s", err.msg);
  if (!c) return;
  const corpus_info *in = corpus_get_info(c);
  CHECK(in->schema_version == CORPUS_SCHEMA_VERSION && in->kind == CORPUS_DOCUMENTS);
  CHECK(!strcmp(in->tokenizer_sha256, "feedc0de") && in->vocab_size == VOCAB);
  CHECK(!strcmp(in->command, "test_corpus --docs"));
  CHECK(in->n_sources == 1 && !strcmp(in->source_paths[0], "/data/arxiv.jsonl") &&
        !strcmp(in->source_sha256[0], "00ff"));
  CHECK(in->val_fraction == 0.1 && in->test_fraction == 0.05);
  CHECK(in->n_records == n && in->n_answers == 0);
  CHECK(corpus_n_rows(c, CORPUS_COL_DOC) == n && corpus_n_rows(c, CORPUS_COL_CONTEXT) == -1);

  int64_t tokens = 0, split_count[3] = {0};
  int bad_tokens = 0, bad_text = 0, bad_id = 0, bad_split = 0;
  corpus_record rec = {0};
  char text[128], id[32];
  for (int i = 0; i < n; i++) {
    if (corpus_read(c, i, CORPUS_READ_ALL, &rec, &err) < 0) {
      CHECK_MSG(0, "%s", err.msg);
      break;
    }
    snprintf(id, sizeof id, "doc-%d", i);
    doc_text(i, text, sizeof text);
    bad_id += strcmp(rec.id, id) != 0 || rec.index != i;
    bad_tokens += rec.doc.n_tokens != doc_len(i);
    for (int j = 0; j < doc_len(i) && j < rec.doc.n_tokens; j++) bad_tokens += rec.doc.tokens[j] != doc_token(i, j);
    bad_text += rec.doc.text_len != (int64_t)strlen(text) || strcmp(rec.doc.text, text) != 0;
    bad_split += rec.split != corpus_split_of_id(id, 0.1, 0.05);
    split_count[rec.split]++;
    tokens += doc_len(i);
  }
  CHECK(bad_id == 0 && bad_tokens == 0 && bad_text == 0 && bad_split == 0);
  CHECK(in->n_tokens == tokens);
  for (int s = 0; s < 3; s++) CHECK(in->n_split[s] == split_count[s]);

  // Tokens only: the text comes back empty; record n-1 then 0 (random access both ways).
  CHECK(corpus_read(c, n - 1, CORPUS_READ_TOKENS, &rec, &err) == 0);
  CHECK(rec.doc.n_tokens == doc_len(n - 1) && rec.doc.text_len == 0 && rec.doc.text[0] == 0);
  CHECK(corpus_read(c, 0, CORPUS_READ_TEXT, &rec, &err) == 0);
  CHECK(rec.doc.n_tokens == 0 && !strncmp(rec.doc.text, "Document 0:", 11));

  // Lengths, splits and flat slices agree with the records.
  int64_t lens[50];
  uint8_t splits[50];
  CHECK(corpus_read_lengths(c, CORPUS_COL_DOC, 100, 50, lens, &err) == 0);
  CHECK(corpus_read_splits(c, 100, 50, splits, &err) == 0);
  int bad = 0;
  for (int i = 0; i < 50; i++) {
    snprintf(id, sizeof id, "doc-%d", 100 + i);
    bad += lens[i] != doc_len(100 + i) || splits[i] != corpus_split_of_id(id, 0.1, 0.05);
  }
  CHECK(bad == 0);
  int64_t off[2];
  int32_t flat[3];
  CHECK(corpus_read_offsets(c, CORPUS_COL_DOC, 0, 7, 2, off, &err) == 0 && off[1] - off[0] == doc_len(7));
  CHECK(corpus_read_flat_tokens(c, CORPUS_COL_DOC, off[0] + 1, 3, flat, &err) == 0);
  CHECK(flat[0] == doc_token(7, 1) && flat[2] == doc_token(7, 3));

  // Out of range and wrong-kind requests are errors that name the file.
  CHECK(corpus_read(c, n, CORPUS_READ_ALL, &rec, &err) == -1);
  CHECK_CONTAINS(err.msg, "out of range");
  CHECK(corpus_read_flat_tokens(c, CORPUS_COL_DOC, tokens - 1, 2, flat, &err) == -1);
  CHECK_CONTAINS(err.msg, "docs.h5");
  CHECK(corpus_read_answer_offsets(c, 0, 1, off, &err) == -1);
  CHECK_CONTAINS(err.msg, "no answers");
  corpus_record_free(&rec);
  corpus_close(c);
}

// QA example i: (i % 4) answers; answer 0 is "answer<i>" located in the context, answer 1 "end"
// located, answer 2 "zzz" (no offset), answer 3 empty text with no tokens.
static int count_cps(const char *s, size_t n) {
  int k = 0;
  for (size_t i = 0; i < n; i++) k += ((unsigned char)s[i] & 0xC0) != 0x80;
  return k;
}

typedef struct {
  char id[32], context[128], question[64], answer[4][32];
  int32_t ctx_tok[20], q_tok[4], ans_tok[4][4];
  int n_ctx, n_answers;
  corpus_span context_span, question_span;
  corpus_answer answers[4];
} qa_example;

static void make_qa(int i, qa_example *e) {
  snprintf(e->id, sizeof e->id, "qa-%d", i);
  snprintf(e->context, sizeof e->context, "Context %d: \xc3\xa9t\xc3\xa9 answer%d end", i, i);
  snprintf(e->question, sizeof e->question, "What is %d?", i);
  e->n_ctx = 10 + i % 5;
  for (int j = 0; j < e->n_ctx; j++) e->ctx_tok[j] = (i + j) % VOCAB;
  for (int j = 0; j < 4; j++) e->q_tok[j] = (i * 3 + j) % VOCAB;
  e->n_answers = i % 4;
  snprintf(e->answer[0], 32, "answer%d", i);
  snprintf(e->answer[1], 32, "end");
  snprintf(e->answer[2], 32, "zzz");
  e->answer[3][0] = 0;
  const char *at[2] = {strstr(e->context, e->answer[0]), strstr(e->context, " end") + 1};
  for (int k = 0; k < 4; k++) {
    for (int j = 0; j < 4; j++) e->ans_tok[k][j] = (i * 7 + k * 11 + j) % VOCAB;
    corpus_span s = {e->ans_tok[k], k == 3 ? 0 : k + 1, e->answer[k], -1};
    e->answers[k].span = s;
    e->answers[k].char_start = k < 2 ? count_cps(e->context, (size_t)(at[k] - e->context)) : -1;
  }
  corpus_span c = {e->ctx_tok, e->n_ctx, e->context, -1}, q = {e->q_tok, 4, e->question, -1};
  e->context_span = c;
  e->question_span = q;
}

static int check_field(const corpus_field *f, const int32_t *tok, int n_tok, const char *text) {
  if (f->n_tokens != n_tok || strcmp(f->text, text) != 0 || f->text_len != (int64_t)strlen(text)) return 0;
  for (int j = 0; j < n_tok; j++)
    if (f->tokens[j] != tok[j]) return 0;
  return 1;
}

static void test_qa(void) {
  pith_err err = {{0}};
  const char *path = tmp_path("qa.h5");
  corpus_writer_config cfg = {CORPUS_QA, "qa-tok", VOCAB, "test_corpus --qa", 0.2, 0.2};
  corpus_writer *w = corpus_writer_create(path, &cfg, &err);
  CHECK_MSG(w != NULL, "%s", err.msg);
  if (!w) return;
  int n = 500, n_answers = 0;
  qa_example e;
  for (int i = 0; i < n; i++) {
    make_qa(i, &e);
    n_answers += e.n_answers;
    int r = corpus_writer_add_qa(w, e.id, &e.context_span, &e.question_span, e.answers, e.n_answers, &err);
    CHECK_MSG(r == 0, "%s", err.msg);
  }
  CHECK_MSG(corpus_writer_close(w, &err) == 0, "%s", err.msg);
  CHECK(exists(path) && !partial_exists(path));

  corpus *c = corpus_open(path, &err);
  CHECK_MSG(c != NULL, "%s", err.msg);
  if (!c) return;
  const corpus_info *in = corpus_get_info(c);
  CHECK(in->kind == CORPUS_QA && in->n_records == n && in->n_answers == n_answers && in->n_sources == 0);
  CHECK(corpus_n_rows(c, CORPUS_COL_ANSWER) == n_answers && corpus_n_rows(c, CORPUS_COL_DOC) == -1);
  corpus_record rec = {0};
  int bad = 0;
  for (int i = 0; i < n; i++) {
    make_qa(i, &e);
    if (corpus_read(c, i, CORPUS_READ_ALL, &rec, &err) < 0) {
      CHECK_MSG(0, "%s", err.msg);
      break;
    }
    bad += strcmp(rec.id, e.id) != 0 || rec.split != corpus_split_of_id(e.id, 0.2, 0.2);
    bad += !check_field(&rec.context, e.ctx_tok, e.n_ctx, e.context);
    bad += !check_field(&rec.question, e.q_tok, 4, e.question);
    bad += rec.n_answers != e.n_answers;
    for (int k = 0; k < rec.n_answers && k < e.n_answers; k++) {
      bad += !check_field(&rec.answers[k], e.ans_tok[k], k == 3 ? 0 : k + 1, e.answer[k]);
      bad += rec.answer_char_start[k] != e.answers[k].char_start;
    }
  }
  CHECK_MSG(bad == 0, "%d mismatches", bad);
  // Example 5 (1 answer): "Context 5: été answer5 end" -> answer5 starts at code point 15.
  CHECK(corpus_read(c, 5, CORPUS_READ_ALL, &rec, &err) == 0);
  CHECK(rec.n_answers == 1 && rec.answer_char_start[0] == 15);
  int64_t ao[3];
  CHECK(corpus_read_answer_offsets(c, 6, 2, ao, &err) == 0 && ao[1] - ao[0] == 2 && ao[2] - ao[1] == 3);
  corpus_record_free(&rec);
  corpus_close(c);
}

static void test_splits(void) {
  int count[3] = {0}, n = 200000;
  char id[32];
  for (int i = 0; i < n; i++) {
    snprintf(id, sizeof id, "record/%d", i);
    int s = corpus_split_of_id(id, 0.1, 0.05);
    count[s]++;
    if (i % 1000 == 0) CHECK(corpus_split_of_id(id, 0.1, 0.05) == s);  // deterministic
  }
  CHECK_MSG(fabs(count[CORPUS_SPLIT_VAL] / (double)n - 0.1) < 0.005, "val %d", count[1]);
  CHECK_MSG(fabs(count[CORPUS_SPLIT_TEST] / (double)n - 0.05) < 0.004, "test %d", count[2]);
  // Edge fractions, and the documented rule on a known id: sha256("doc-0") starts 0x...
  CHECK(corpus_split_of_id("anything", 0, 0) == CORPUS_SPLIT_TRAIN);
  CHECK(corpus_split_of_id("anything", 1, 0) == CORPUS_SPLIT_VAL);
  CHECK(corpus_split_of_id("anything", 0, 1) == CORPUS_SPLIT_TEST);
  uint8_t d[32];
  sha256_hash_buffer("doc-0", 5, d);
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = v << 8 | d[i];
  int64_t b = (int64_t)(v % 1000000);
  double frac = (b + 0.5) / 1e6;  // test fraction just above doc-0's bucket sends it to test
  CHECK(corpus_split_of_id("doc-0", 0, frac) == CORPUS_SPLIT_TEST);
  CHECK(corpus_split_of_id("doc-0", frac, (b - 0.5) / 1e6 > 0 ? (b - 0.5) / 1e6 : 0) ==
        (b == 0 ? CORPUS_SPLIT_TEST : CORPUS_SPLIT_VAL));
}

static void test_atomic(void) {
  pith_err err = {{0}};
  corpus_writer_config cfg = docs_config();
  int32_t toks[3] = {1, 2, 3};
  corpus_span s = {toks, 3, "abc", -1};

  // Abort: nothing is left.
  const char *path = tmp_path("aborted.h5");
  corpus_writer *w = corpus_writer_create(path, &cfg, &err);
  CHECK(w && corpus_writer_add_doc(w, "a", &s, &err) == 0);
  CHECK(partial_exists(path));
  corpus_writer_abort(w);
  CHECK(!exists(path) && !partial_exists(path));

  // A failed append (token outside the vocabulary) poisons the writer: later appends are refused
  // and close removes the partial file.
  path = tmp_path("failed.h5");
  w = corpus_writer_create(path, &cfg, &err);
  CHECK(w && corpus_writer_add_doc(w, "a", &s, &err) == 0);
  toks[1] = VOCAB;
  CHECK(corpus_writer_add_doc(w, "b", &s, &err) == -1);
  CHECK_CONTAINS(err.msg, "outside [0, vocab_size=5000)");
  CHECK_CONTAINS(err.msg, "'b'");
  toks[1] = 2;
  CHECK(corpus_writer_add_doc(w, "c", &s, &err) == -1);
  CHECK_CONTAINS(err.msg, "failed before");
  CHECK(corpus_writer_close(w, &err) == -1);
  CHECK_CONTAINS(err.msg, "failed.h5: not written");
  CHECK(!exists(path) && !partial_exists(path));

  // Each kind of bad record is refused with a message naming it.
  struct { const char *id; corpus_span span; int qa; const char *msg; } BAD[] = {
    {"c", {toks, 3, "ab\xc3(", -1}, 0, "not valid UTF-8 at byte 2"},
    {"c", {toks, 3, "\xed\xa0\x80", -1}, 0, "not valid UTF-8 at byte 0"},  // a surrogate
    {"", {toks, 3, "abc", -1}, 0, "empty id"},
    {"c", {NULL, 3, "abc", -1}, 0, "no tokens array"},
    {"q", {toks, 3, "abc", -1}, 1, "cannot add a qa record to a documents corpus"},
  };
  for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
    w = corpus_writer_create(path, &cfg, &err);
    int r = BAD[i].qa ? corpus_writer_add_qa(w, BAD[i].id, &BAD[i].span, &BAD[i].span, NULL, 0, &err)
                      : corpus_writer_add_doc(w, BAD[i].id, &BAD[i].span, &err);
    CHECK(r == -1);
    CHECK_CONTAINS(err.msg, BAD[i].msg);
    CHECK(corpus_writer_close(w, &err) == -1 && !exists(path) && !partial_exists(path));
  }

  // Creating in a missing folder fails and names the partial path.
  CHECK(corpus_writer_create(tmp_path("no/such/dir.h5"), &cfg, &err) == NULL);
  CHECK_CONTAINS(err.msg, "no/such/dir.h5.partial");

  // An answer outside its context is refused.
  corpus_writer_config qcfg = {CORPUS_QA, "t", VOCAB, "", 0, 0};
  path = tmp_path("badqa.h5");
  w = corpus_writer_create(path, &qcfg, &err);
  corpus_answer a = {{toks, 1, "bc", -1}, 1};
  CHECK(w && corpus_writer_add_qa(w, "q0", &s, &s, &a, 1, &err) == 0);  // "abc"[1:3] fits
  a.char_start = 2;
  CHECK(corpus_writer_add_qa(w, "q1", &s, &s, &a, 1, &err) == -1);
  CHECK_CONTAINS(err.msg, "outside the context");
  corpus_writer_abort(w);
  CHECK(!exists(path) && !partial_exists(path));

  // Bad configurations.
  corpus_writer_config bad = cfg;
  bad.val_fraction = 0.7, bad.test_fraction = 0.4;
  CHECK(corpus_writer_create(tmp_path("x.h5"), &bad, &err) == NULL);
  CHECK_CONTAINS(err.msg, "split fractions");
  bad = cfg;
  bad.tokenizer_sha256 = "";
  CHECK(corpus_writer_create(tmp_path("x.h5"), &bad, &err) == NULL);
  CHECK_CONTAINS(err.msg, "tokenizer");
  CHECK(!exists(tmp_path("x.h5")) && !partial_exists(tmp_path("x.h5")));

  // A source hashed by the writer itself.
  const char *src = tmp_path("source.txt");
  FILE *f = fopen(src, "w");
  fputs("abc", f);
  fclose(f);
  path = tmp_path("sourced.h5");
  w = corpus_writer_create(path, &cfg, &err);
  CHECK(w && corpus_writer_add_source(w, src, NULL, &err) == 0);
  CHECK(corpus_writer_add_source(w, tmp_path("missing.txt"), NULL, &err) == -1);
  CHECK_CONTAINS(err.msg, "missing.txt");
  CHECK(corpus_writer_close(w, &err) == 0);
  corpus *c = corpus_open(path, &err);
  CHECK(c && corpus_get_info(c)->n_sources == 1 && corpus_get_info(c)->n_records == 0);
  if (c) CHECK(!strcmp(corpus_get_info(c)->source_sha256[0],
                       "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
  corpus_close(c);
  unlink(src);
  unlink(path);
}

// A writer killed mid-ingest (the child exits without closing) leaves only PATH.partial, which
// no reader takes for a corpus.
static void test_killed_writer(void) {
  pith_err err = {{0}};
  const char *path = tmp_path("killed.h5");
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    corpus_writer_config cfg = docs_config();
    corpus_writer *w = corpus_writer_create(path, &cfg, &err);
    int32_t toks[300] = {0};
    corpus_span s = {toks, 300, "text", -1};
    for (int i = 0; w && i < 2000; i++) {  // 600k tokens: several flushes reach the file
      char id[32];
      snprintf(id, sizeof id, "k%d", i);
      corpus_writer_add_doc(w, id, &s, &err);
    }
    _exit(w ? 0 : 1);
  }
  int status = 0;
  CHECK(pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
  CHECK(!exists(path) && partial_exists(path));
  char partial[600];
  snprintf(partial, sizeof partial, "%s.partial", path);
  CHECK(corpus_open(partial, &err) == NULL);
  CHECK_CONTAINS(err.msg, "killed.h5.partial: ");
  CHECK_MSG(strstr(err.msg, "unknown error") == NULL, "%s", err.msg);  // HDF5's reason is quoted
  unlink(partial);
}

// Change a root attribute of an existing file to an int32 value.
static void set_int_attr(const char *path, const char *name, int32_t v) {
  hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
  hid_t a = H5Aopen(f, name, H5P_DEFAULT);
  CHECK(a >= 0 && H5Awrite(a, H5T_NATIVE_INT32, &v) >= 0);
  H5Aclose(a);
  H5Fclose(f);
}

static void test_bad_files(void) {
  pith_err err = {{0}};
  // Random bytes.
  const char *junk = tmp_path("junk.h5");
  FILE *f = fopen(junk, "wb");
  for (int i = 0; i < 4096; i++) fputc((i * 7919) & 255, f);
  fclose(f);
  CHECK(corpus_open(junk, &err) == NULL);
  CHECK_CONTAINS(err.msg, "junk.h5: not a pith corpus (not an HDF5 file)");
  CHECK(strchr(err.msg, '\n') == NULL);

  // A missing file.
  CHECK(corpus_open(tmp_path("nope.h5"), &err) == NULL);
  CHECK_CONTAINS(err.msg, "nope.h5: cannot open");

  // Someone else's HDF5 file.
  const char *other = tmp_path("other.h5");
  hid_t h = H5Fcreate(other, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  hsize_t dim = 4;
  hid_t sp = H5Screate_simple(1, &dim, NULL);
  hid_t ds = H5Dcreate2(h, "data", H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Dclose(ds);
  H5Sclose(sp);
  H5Fclose(h);
  CHECK(corpus_open(other, &err) == NULL);
  CHECK_CONTAINS(err.msg, "other.h5: not a pith corpus (no root attribute 'schema')");

  // A pith corpus from the future.
  const char *path = tmp_path("future.h5");
  CHECK(write_docs(path, 10, &err) == 0);
  set_int_attr(path, "schema_version", 99);
  CHECK(corpus_open(path, &err) == NULL);
  CHECK_CONTAINS(err.msg, "future.h5: pith corpus schema version 99 is newer than this pith reads (1)");

  // A corpus missing a dataset, and one whose counts disagree with its datasets.
  path = tmp_path("broken.h5");
  CHECK(write_docs(path, 10, &err) == 0);
  h = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
  H5Ldelete(h, "split", H5P_DEFAULT);
  H5Fclose(h);
  CHECK(corpus_open(path, &err) == NULL);
  CHECK_CONTAINS(err.msg, "broken.h5: corrupt pith corpus: dataset 'split' missing");
  path = tmp_path("miscounted.h5");
  CHECK(write_docs(path, 10, &err) == 0);
  h = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
  hid_t a = H5Aopen(h, "n_records", H5P_DEFAULT);
  int64_t eleven = 11;
  H5Awrite(a, H5T_NATIVE_INT64, &eleven);
  H5Aclose(a);
  H5Fclose(h);
  CHECK(corpus_open(path, &err) == NULL);
  CHECK_CONTAINS(err.msg, "miscounted.h5: corrupt pith corpus");
}

// Remove everything the tests left in the temporary folder.
static void cleanup(void) {
  const char *names[] = {"docs.h5", "qa.h5", "junk.h5", "other.h5", "future.h5", "broken.h5", "miscounted.h5"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) unlink(tmp_path(names[i]));
  CHECK_MSG(rmdir(dir) == 0, "leftover files in %s", dir);
}

int main(void) {
  CHECK(mkdtemp(dir) != NULL);
  test_documents();
  test_qa();
  test_splits();
  test_atomic();
  test_bad_files();
  test_killed_writer();
  // Every HDF5 file, dataset and attribute pith opened has been closed.
  CHECK_MSG(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL) == 0, "%d HDF5 objects left open",
            (int)H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL));
  cleanup();
  return check_done("test_corpus");
}
