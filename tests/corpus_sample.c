// corpus_sample DOCS.h5 QA.h5: writes the two small corpora that tests/reference/corpus_h5py.py
// regenerates by the same formulas and compares with what h5py reads.
#include <stdio.h>
#include <string.h>

#include "corpus.h"
#include "sha256.h"

#define VOCAB 5000

static int cps(const char *s, size_t n) {  // code points in the first n bytes
  int k = 0;
  for (size_t i = 0; i < n; i++) k += ((unsigned char)s[i] & 0xC0) != 0x80;
  return k;
}

static void tokenizer_fingerprint(char hex[SHA256_HEX_SIZE]) {
  uint8_t d[SHA256_DIGEST_SIZE];
  sha256_hash_buffer("pith-test-tokenizer", 19, d);
  sha256_to_hex(d, hex);
}

// Document i: (i * 37) % 97 tokens (i * 131 + j * 17) % 5000, text with 2-, 3- and 4-byte chars.
static int write_docs(const char *path, pith_err *err) {
  char fp[SHA256_HEX_SIZE];
  tokenizer_fingerprint(fp);
  corpus_writer_config cfg = {CORPUS_DOCUMENTS, fp, VOCAB, "corpus_sample docs", 0.1, 0.1};
  corpus_writer *w = corpus_writer_create(path, &cfg, err);
  if (!w || corpus_writer_add_source(w, "arxiv/abstracts.jsonl", "00112233", err) < 0 ||
      corpus_writer_add_source(w, "arxiv/more.jsonl", "44556677", err) < 0)
    return corpus_writer_abort(w), -1;
  for (int i = 0; i < 300; i++) {
    int32_t toks[97];
    int n = (i * 37) % 97;
    for (int j = 0; j < n; j++) toks[j] = (i * 131 + j * 17) % VOCAB;
    char id[32], text[96];
    snprintf(id, sizeof id, "doc-%d", i);
    snprintf(text, sizeof text, "Document %d: caf\xc3\xa9 \xe6\xbc\xa2\xe5\xad\x97 \xf0\x9f\x99\x82 %.*s", i, i % 7,
             "xxxxxxx");
    corpus_span s = {toks, n, text, -1};
    if (corpus_writer_add_doc(w, id, &s, err) < 0) return corpus_writer_abort(w), -1;
  }
  return corpus_writer_close(w, err);
}

// Example i: context "Context i: été answeri end", question "What is i?", i % 3 answers:
// "answeri" and "end" located in the context, "zzz" not (char_start -1).
static int write_qa(const char *path, pith_err *err) {
  char fp[SHA256_HEX_SIZE];
  tokenizer_fingerprint(fp);
  corpus_writer_config cfg = {CORPUS_QA, fp, VOCAB, "corpus_sample qa", 0.2, 0.1};
  corpus_writer *w = corpus_writer_create(path, &cfg, err);
  if (!w) return -1;
  for (int i = 0; i < 120; i++) {
    char id[32], context[96], question[32], answer[3][32];
    int32_t ctx[14], q[4], ans[3][3];
    snprintf(id, sizeof id, "qa-%d", i);
    snprintf(context, sizeof context, "Context %d: \xc3\xa9t\xc3\xa9 answer%d end", i, i);
    snprintf(question, sizeof question, "What is %d?", i);
    snprintf(answer[0], 32, "answer%d", i);
    snprintf(answer[1], 32, "end");
    snprintf(answer[2], 32, "zzz");
    int n_ctx = 10 + i % 5;
    for (int j = 0; j < n_ctx; j++) ctx[j] = (i + j) % VOCAB;
    for (int j = 0; j < 4; j++) q[j] = (i * 3 + j) % VOCAB;
    corpus_answer answers[3];
    int64_t at[3] = {cps(context, (size_t)(strstr(context, answer[0]) - context)),
                     cps(context, (size_t)(strstr(context, " end") + 1 - context)), -1};
    for (int k = 0; k < 3; k++) {
      for (int j = 0; j <= k; j++) ans[k][j] = (i * 7 + k * 11 + j) % VOCAB;
      corpus_answer a = {{ans[k], k + 1, answer[k], -1}, at[k]};
      answers[k] = a;
    }
    corpus_span c = {ctx, n_ctx, context, -1}, qs = {q, 4, question, -1};
    if (corpus_writer_add_qa(w, id, &c, &qs, answers, i % 3, err) < 0) return corpus_writer_abort(w), -1;
  }
  return corpus_writer_close(w, err);
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: corpus_sample DOCS.h5 QA.h5\n");
    return 2;
  }
  pith_err err = {{0}};
  if (write_docs(argv[1], &err) < 0 || write_qa(argv[2], &err) < 0) {
    fprintf(stderr, "corpus_sample: %s\n", err.msg);
    return 1;
  }
  return 0;
}
