// ingest and synth: malformed inputs stop an ingest with FILE:LINE and the reason and write nothing,
// or with skip_bad are skipped, counted and listed while every valid record before and after is
// kept; empty documents, moved and missing answers, blank lines are reported; the QA formats
// (SQuAD, MRQA, simple QA) give the right answers and code-point offsets; any number of threads
// writes the same datasets; the synthetic world is deterministic, its answers sit where it says,
// they are hard to guess, and its tokenizer round-trips every text. Needs no assets: the tokenizer
// is the synthetic world's own (byte-level, so it encodes any UTF-8).
#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <sys/stat.h>

#include "check.h"
#include "corpus.h"
#include "ingest.h"
#include "sha256.h"
#include "synth.h"
#include "tokenizer.h"

static char dir[] = "/tmp/pith_test_ingest_XXXXXX";
static tokenizer *TOK;

static const char *tmp_path(const char *name) {
  static char buf[8][600];
  static int k = 0;
  char *p = buf[k++ % 8];
  snprintf(p, 600, "%s/%s", dir, name);
  return p;
}

static int exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

static const char *write_file(const char *name, const char *data, size_t len) {
  const char *path = tmp_path(name);
  FILE *f = fopen(path, "wb");
  CHECK(f != NULL);
  if (f) {
    CHECK(fwrite(data, 1, len, f) == len);
    fclose(f);
  }
  return path;
}

static const char *write_text(const char *name, const char *text) { return write_file(name, text, strlen(text)); }

static ingest_config config(ingest_format fmt, const char *out, int skip_bad, int threads) {
  ingest_config c = {.format = fmt, .tok = TOK, .out_path = out, .command = "test_ingest", .threads = threads,
                     .skip_bad = skip_bad, .val_fraction = 0.1, .test_fraction = 0.1};
  return c;
}

static int ingest1(ingest_config *cfg, const char *input, ingest_report *rep, pith_err *err) {
  const char *in[] = {input};
  return ingest_run(cfg, in, 1, rep, err);
}

// Records of a corpus file, read back whole.
typedef struct {
  int n;
  corpus_record rec[64];
} records;

static int read_all(const char *path, records *out) {
  pith_err err = {{0}};
  memset(out, 0, sizeof *out);
  corpus *c = corpus_open(path, &err);
  CHECK_MSG(c != NULL, "%s", err.msg);
  if (!c) return -1;
  int64_t n = corpus_get_info(c)->n_records;
  for (int64_t i = 0; i < n && i < 64; i++) {
    CHECK_MSG(corpus_read(c, i, CORPUS_READ_ALL, &out->rec[i], &err) == 0, "%s", err.msg);
    out->n++;
  }
  corpus_close(c);
  return 0;
}

static void free_all(records *r) {
  for (int i = 0; i < 64; i++) corpus_record_free(&r->rec[i]);
}

// The tokens of a field decode back to its text.
static int decodes_to_text(const corpus_field *f) {
  pith_err err = {{0}};
  char *s = tokenizer_decode(TOK, f->tokens, (size_t)f->n_tokens, 1, &err);
  // The synthetic tokenizer adds a space before a text that starts without one; decoding keeps it.
  int ok = s && !strcmp(s + (s[0] == ' ' && f->text[0] != ' '), f->text);
  if (!ok) fprintf(stderr, "decode mismatch: '%s' vs '%s'\n", s ? s : err.msg, f->text);
  free(s);
  return ok;
}

// Some issue sample contains both strings.
static int has_sample(const ingest_issue *is, const char *a, const char *b) {
  for (int i = 0; i < is->n_samples; i++)
    if (strstr(is->samples[i], a) && (!b || strstr(is->samples[i], b))) return 1;
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Malformed arXiv JSONL lines: one at a time between two valid records.

static void test_malformed_one_by_one(void) {
  static const struct {
    const char *name, *line, *reason;
  } CASES[] = {
    {"truncated", "{\"id\": \"b\", \"abstract\": \"cut off here", "unterminated string"},
    {"truncated_obj", "{\"id\": \"b\", \"abstract\": \"x\"", "unexpected end of input"},
    {"wrong_type", "{\"id\": \"b\", \"abstract\": 42}", "'abstract' is a number, want a string"},
    {"id_type", "{\"id\": 7, \"abstract\": \"x\"}", "'id' is a number, want a string"},
    {"missing", "{\"id\": \"b\", \"title\": \"no abstract\"}", "'abstract' is missing"},
    {"bad_utf8", "{\"id\": \"b\", \"abstract\": \"caf\xc3 x\"}", "invalid UTF-8"},
    {"overlong_utf8", "{\"id\": \"b\", \"abstract\": \"\xc0\xaf\"}", "invalid UTF-8"},
    {"surrogate", "{\"id\": \"b\", \"abstract\": \"\\ud800 x\"}", "lone surrogate"},
    {"nul", "{\"id\": \"b\", \"abstract\": \"a\\u0000b\"}", "NUL character"},
    {"control", "{\"id\": \"b\", \"abstract\": \"tab\there\"}", "raw control character"},
    {"not_object", "[1, 2, 3]", "the line is an array, want a JSON object"},
    {"trailing", "{\"id\": \"b\", \"abstract\": \"x\"} extra", "unexpected characters after the JSON value"},
    {"bad_escape", "{\"id\": \"b\", \"abstract\": \"\\q\"}", "bad escape"},
    {"no_colon", "{\"id\" \"b\"}", "expected ':'"},
    {"empty_id", "{\"id\": \"\", \"abstract\": \"x\"}", "'id' is empty"},
  };
  for (size_t k = 0; k < sizeof CASES / sizeof CASES[0]; k++) {
    char text[512], name[64], out[64];
    snprintf(text, sizeof text, "{\"id\": \"a\", \"abstract\": \"before\"}\n%s\n{\"id\": \"c\", \"abstract\": \"after\"}\n",
             CASES[k].line);
    snprintf(name, sizeof name, "%s.jsonl", CASES[k].name);
    snprintf(out, sizeof out, "%s.h5", CASES[k].name);
    const char *in = write_text(name, text), *path = tmp_path(out);
    char partial[700];
    snprintf(partial, sizeof partial, "%s.partial", path);

    // Without skip_bad: the error names file:line and the reason; nothing is written.
    ingest_config cfg = config(INGEST_ARXIV, path, 0, 1);
    ingest_report rep;
    pith_err err = {{0}};
    CHECK_MSG(ingest1(&cfg, in, &rep, &err) == -1, "%s: accepted", CASES[k].name);
    char where[128];
    snprintf(where, sizeof where, "%s:2:", name);
    CHECK_CONTAINS(err.msg, where);
    CHECK_CONTAINS(err.msg, CASES[k].reason);
    CHECK_CONTAINS(rep.hint, "--skip-bad");
    CHECK_MSG(!exists(path) && !exists(partial), "%s: a file was left", CASES[k].name);

    // With skip_bad: the records before and after are kept, the bad one listed.
    cfg = config(INGEST_ARXIV, path, 1, 2);
    CHECK_MSG(ingest1(&cfg, in, &rep, &err) == 0, "%s: %s", CASES[k].name, err.msg);
    CHECK(rep.records == 2 && rep.issues[INGEST_ISSUE_BAD].count == 1);
    CHECK_MSG(has_sample(&rep.issues[INGEST_ISSUE_BAD], where, CASES[k].reason), "%s: %s", CASES[k].name,
              rep.issues[INGEST_ISSUE_BAD].samples[0]);
    records r;
    if (read_all(path, &r) == 0) {
      CHECK(r.n == 2 && !strcmp(r.rec[0].id, "a") && !strcmp(r.rec[1].id, "c"));
      CHECK(!strcmp(r.rec[0].doc.text, "before") && !strcmp(r.rec[1].doc.text, "after"));
      free_all(&r);
    }
    unlink(path);
  }
}

// ---------------------------------------------------------------------------------------------
// One file holding many problems, a 50 MB line and an empty file among the inputs.

static void test_malformed_mixed(void) {
  const char *lines =
      "{\"id\": \"a1\", \"abstract\": \"first doc\"}\n"                       // 1 ok
      "{\"id\": \"a2\", \"abstract\": \"trunc\n"                              // 2 bad
      "{\"id\": \"a3\", \"abstract\": 42}\n"                                   // 3 bad
      "{\"id\": \"a4\", \"abstract\": \"bad \xff byte\"}\n"                    // 4 bad
      "{\"id\": \"a5\", \"abstract\": \"  fifth\\n\\t doc \\r\\n \", \"x\": [1, {\"y\": null}]}\n"  // 5 ok
      "%s\n"                                                                   // 6 bad: 50 MB
      "{\"id\": \"a7\"}\n"                                                     // 7 bad
      "\n"                                                                     // 8 blank
      "{\"id\": \"a9\", \"abstract\": \" \\n \"}\n"                            // 9 empty
      "{\"abstract\": \"no id here\"}\n"                                       // 10 ok, no id
      "{\"id\": \"a11\", \"abstract\": \"old\", \"abstract\": \"caf\\u00e9 \\ud83d\\ude00 ok\"}\n"  // 11 ok
      "{\"id\": \"a12\", \"abstract\": \"last\"}";                              // 12 ok, no newline
  size_t big = 50u << 20;
  char *huge = malloc(big + 64);
  CHECK(huge != NULL);
  if (!huge) return;
  int n = snprintf(huge, 64, "{\"id\": \"big\", \"abstract\": \"");
  memset(huge + n, 'x', big);
  memcpy(huge + n + big, "\"}", 3);
  size_t total = strlen(lines) + strlen(huge) + 16;
  char *text = malloc(total);
  snprintf(text, total, lines, huge);
  free(huge);
  const char *in = write_file("mixed.jsonl", text, strlen(text));
  free(text);
  const char *empty = write_file("empty.jsonl", "", 0);
  const char *inputs[] = {in, empty};
  const char *out = tmp_path("mixed.h5");

  ingest_config cfg = config(INGEST_ARXIV, out, 0, 2);
  ingest_report rep;
  pith_err err = {{0}};
  CHECK(ingest_run(&cfg, inputs, 2, &rep, &err) == -1);
  CHECK_CONTAINS(err.msg, "mixed.jsonl:2: bad JSON at column 26: unterminated string");
  CHECK(!exists(out));

  cfg.skip_bad = 1;
  CHECK_MSG(ingest_run(&cfg, inputs, 2, &rep, &err) == 0, "%s", err.msg);
  const ingest_issue *bad = &rep.issues[INGEST_ISSUE_BAD];
  CHECK_MSG(bad->count == 6, "%lld malformed", (long long)bad->count);  // lines 2, 3, 4, 6, 7 and the empty file
  CHECK(bad->n_samples == INGEST_ISSUE_SAMPLES);
  CHECK(has_sample(bad, "mixed.jsonl:2:", "unterminated"));
  CHECK(has_sample(bad, "mixed.jsonl:3:", "want a string"));
  CHECK(has_sample(bad, "mixed.jsonl:4:", "invalid UTF-8"));
  CHECK(has_sample(bad, "mixed.jsonl:6:", "over the limit"));
  CHECK(has_sample(bad, "mixed.jsonl:6:", "52.4 MB"));
  CHECK(has_sample(bad, "mixed.jsonl:7:", "'abstract' is missing"));
  CHECK(rep.issues[INGEST_ISSUE_EMPTY].count == 1 && has_sample(&rep.issues[INGEST_ISSUE_EMPTY], "mixed.jsonl:9:", "a9"));
  CHECK(rep.issues[INGEST_ISSUE_BLANK].count == 1 && has_sample(&rep.issues[INGEST_ISSUE_BLANK], "mixed.jsonl:8:", NULL));
  CHECK(rep.issues[INGEST_ISSUE_NO_ID].count == 1 && has_sample(&rep.issues[INGEST_ISSUE_NO_ID], "mixed.jsonl:10:", NULL));
  CHECK(rep.records == 5);
  records r;
  if (read_all(out, &r) == 0) {
    static const char *IDS[] = {"a1", "a5", "mixed.jsonl:10", "a11", "a12"};
    static const char *TEXTS[] = {"first doc", "fifth doc", "no id here", "caf\xc3\xa9 \xf0\x9f\x98\x80 ok", "last"};
    CHECK(r.n == 5);
    for (int i = 0; i < r.n && i < 5; i++) {
      CHECK_MSG(!strcmp(r.rec[i].id, IDS[i]), "record %d id '%s'", i, r.rec[i].id);
      CHECK_MSG(!strcmp(r.rec[i].doc.text, TEXTS[i]), "record %d text '%s'", i, r.rec[i].doc.text);
      CHECK(decodes_to_text(&r.rec[i].doc));
    }
    free_all(&r);
  }
  // The sources are recorded with their sha256; the tokenizer's fingerprint follows the documented rule.
  pith_err e2 = {{0}};
  corpus *c = corpus_open(out, &e2);
  if (c) {
    const corpus_info *info = corpus_get_info(c);
    char hex[SHA256_HEX_SIZE], fp[SHA256_HEX_SIZE];
    CHECK(sha256_hash_file(in, hex, &e2) == 0);
    CHECK(info->n_sources == 2 && !strcmp(info->source_paths[0], in) && !strcmp(info->source_sha256[0], hex));
    CHECK(!strcmp(info->source_sha256[1], "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
    CHECK(!strcmp(info->command, "test_ingest"));
    const char *const *files;
    int nf = tokenizer_source_files(TOK, &files);
    char listing[2048] = "";
    for (int i = 0; i < nf; i++) {
      CHECK(sha256_hash_file(files[i], hex, &e2) == 0);
      const char *base = strrchr(files[i], '/') ? strrchr(files[i], '/') + 1 : files[i];
      snprintf(listing + strlen(listing), sizeof listing - strlen(listing), "%s  %s\n", hex, base);
    }
    uint8_t d[SHA256_DIGEST_SIZE];
    sha256_hash_buffer(listing, strlen(listing), d);
    sha256_to_hex(d, fp);
    CHECK(nf == 2 && !strcmp(info->tokenizer_sha256, fp));
    corpus_close(c);
  }
  unlink(out);

  // Only malformed records: an error even with skip_bad, and no file.
  const char *junk = write_text("junk.jsonl", "nope\n{\n");
  cfg = config(INGEST_ARXIV, out, 1, 1);
  CHECK(ingest1(&cfg, junk, &rep, &err) == -1);
  CHECK_CONTAINS(err.msg, "no records to write");
  CHECK(!exists(out));
  // A missing input or a folder is refused before anything starts.
  CHECK(ingest1(&cfg, tmp_path("nothere.jsonl"), &rep, &err) == -1);
  CHECK_CONTAINS(err.msg, "nothere.jsonl: cannot read");
  CHECK(ingest1(&cfg, dir, &rep, &err) == -1);
  CHECK_CONTAINS(err.msg, "is a folder");
}

// Deep nesting is refused, not a stack overflow.
static void test_json_depth(void) {
  size_t depth = 100000;
  char *text = malloc(2 * depth + 64);
  int n = sprintf(text, "{\"id\": \"a\", \"abstract\": \"x\", \"deep\": ");
  memset(text + n, '[', depth);
  memset(text + n + depth, ']', depth);
  strcpy(text + n + 2 * depth, "}\n");
  const char *in = write_text("deep.jsonl", text);
  free(text);
  ingest_config cfg = config(INGEST_ARXIV, tmp_path("deep.h5"), 0, 1);
  ingest_report rep;
  pith_err err = {{0}};
  CHECK(ingest1(&cfg, in, &rep, &err) == -1);
  CHECK_CONTAINS(err.msg, "deep.jsonl:1: bad JSON at column");
  CHECK_CONTAINS(err.msg, "nesting deeper than");
}

// ---------------------------------------------------------------------------------------------
// Plain text

static void test_text(void) {
  const char *in = write_text("t.txt", "first line\r\n\n  \nsecond \xe2\x80\x94 line\nbad \xfe\nlast");
  const char *out = tmp_path("t.h5");
  ingest_config cfg = config(INGEST_TEXT, out, 0, 1);
  ingest_report rep;
  pith_err err = {{0}};
  CHECK(ingest1(&cfg, in, &rep, &err) == -1);
  CHECK_CONTAINS(err.msg, "t.txt:5: invalid UTF-8 at byte 5 of the line");  // counted from 1, as JSON columns
  cfg.skip_bad = 1;
  CHECK_MSG(ingest1(&cfg, in, &rep, &err) == 0, "%s", err.msg);
  CHECK(rep.records == 3 && rep.issues[INGEST_ISSUE_EMPTY].count == 2 && rep.issues[INGEST_ISSUE_BAD].count == 1);
  CHECK(has_sample(&rep.issues[INGEST_ISSUE_EMPTY], "t.txt:2", "empty line"));
  CHECK(has_sample(&rep.issues[INGEST_ISSUE_EMPTY], "t.txt:3", "whitespace-only"));
  records r;
  if (read_all(out, &r) == 0) {
    CHECK(r.n == 3 && !strcmp(r.rec[0].id, "t.txt:1") && !strcmp(r.rec[0].doc.text, "first line"));
    CHECK(!strcmp(r.rec[1].id, "t.txt:4") && !strcmp(r.rec[1].doc.text, "second \xe2\x80\x94 line"));
    CHECK(!strcmp(r.rec[2].id, "t.txt:6") && !strcmp(r.rec[2].doc.text, "last"));
    for (int i = 0; i < r.n; i++) CHECK(decodes_to_text(&r.rec[i].doc));
    free_all(&r);
  }
  unlink(out);

  // Blocks: blank-line-separated, lines joined with \n, id from the first line.
  in = write_text("b.txt", "\n\nOnce upon\na time.\n\n\n  \nThe end\r\nof it.\n\nSolo");
  cfg = config(INGEST_TEXT, out, 0, 3);
  cfg.text_mode = INGEST_TEXT_BLOCKS;
  CHECK_MSG(ingest1(&cfg, in, &rep, &err) == 0, "%s", err.msg);
  if (read_all(out, &r) == 0) {
    CHECK(r.n == 3);
    CHECK(!strcmp(r.rec[0].id, "b.txt:3") && !strcmp(r.rec[0].doc.text, "Once upon\na time."));
    CHECK(!strcmp(r.rec[1].id, "b.txt:8") && !strcmp(r.rec[1].doc.text, "The end\nof it."));
    CHECK(!strcmp(r.rec[2].id, "b.txt:11") && !strcmp(r.rec[2].doc.text, "Solo"));
    free_all(&r);
  }
  unlink(out);

  // A block over the size limit is malformed; the others are kept.
  in = write_text("big.txt", "short one\n\nlong block line one\nline two of it\n\nok\n");
  cfg = config(INGEST_TEXT, out, 1, 1);
  cfg.text_mode = INGEST_TEXT_BLOCKS;
  cfg.max_record_bytes = 20;
  CHECK_MSG(ingest1(&cfg, in, &rep, &err) == 0, "%s", err.msg);
  CHECK(rep.records == 2 && has_sample(&rep.issues[INGEST_ISSUE_BAD], "big.txt:3", "the block is"));
  unlink(out);
}

// ---------------------------------------------------------------------------------------------
// QA formats

static void test_squad(void) {
  // Context with 2-byte and 4-byte characters before the answers: offsets count code points.
  const char *json =
      "{\"version\": \"1.1\", \"data\": [\n"
      " {\"title\": \"T\", \"paragraphs\": [\n"
      "  {\"context\": \"Caf\\u00e9 \\ud83d\\ude00 Paris is big. Paris again.\", \"qas\": [\n"
      "   {\"id\": \"q1\", \"question\": \"Where?\", \"answers\": [{\"text\": \"Paris\", \"answer_start\": 7},\n"
      "                                                 {\"text\": \"Paris again\", \"answer_start\": 21}]},\n"
      "   {\"id\": \"q2\", \"question\": \"Moved?\", \"answers\": [{\"text\": \"big\", \"answer_start\": 2}]},\n"
      "   {\"id\": \"q3\", \"question\": \"Missing?\", \"answers\": [{\"text\": \"London\", \"answer_start\": 0}]},\n"
      "   {\"id\": \"q4\", \"question\": \"Bad\", \"answers\": [{\"text\": \"Paris\", \"answer_start\": \"7\"}]},\n"
      "   {\"id\": \"q5\", \"question\": \"None?\", \"answers\": [], \"is_impossible\": true}\n"
      "  ]},\n"
      "  {\"context\": 5, \"qas\": []}\n"
      " ]}\n"
      "]}\n";
  const char *in = write_text("squad.json", json), *out = tmp_path("squad.h5");
  ingest_config cfg = config(INGEST_SQUAD, out, 0, 2);
  ingest_report rep;
  pith_err err = {{0}};
  CHECK(ingest1(&cfg, in, &rep, &err) == -1);
  CHECK_CONTAINS(err.msg, "squad.json:8: data[0].paragraphs[0].qas[3]: (id q4) answers[0].answer_start is a string, want an integer");
  cfg.skip_bad = 1;
  CHECK_MSG(ingest1(&cfg, in, &rep, &err) == 0, "%s", err.msg);
  CHECK(rep.records == 4 && rep.answers == 4 && rep.issues[INGEST_ISSUE_BAD].count == 2);
  CHECK(has_sample(&rep.issues[INGEST_ISSUE_BAD], "squad.json:11: data[0].paragraphs[1]", "'context' is a number"));
  CHECK(rep.issues[INGEST_ISSUE_ANSWER_MOVED].count == 1 &&
        has_sample(&rep.issues[INGEST_ISSUE_ANSWER_MOVED], "(id q2)", "found at char 16"));
  CHECK(rep.issues[INGEST_ISSUE_ANSWER_MISSING].count == 1 &&
        has_sample(&rep.issues[INGEST_ISSUE_ANSWER_MISSING], "(id q3)", "London"));
  CHECK(rep.issues[INGEST_ISSUE_NO_ANSWER].count == 1 && has_sample(&rep.issues[INGEST_ISSUE_NO_ANSWER], "q5", NULL));
  records r;
  if (read_all(out, &r) == 0) {
    CHECK(r.n == 4 && !strcmp(r.rec[0].id, "q1") && !strcmp(r.rec[3].id, "q5"));
    CHECK(r.rec[0].n_answers == 2 && r.rec[0].answer_char_start[0] == 7 && r.rec[0].answer_char_start[1] == 21);
    CHECK(!strcmp(r.rec[0].answers[1].text, "Paris again"));
    CHECK(r.rec[1].n_answers == 1 && r.rec[1].answer_char_start[0] == 16);
    CHECK(r.rec[2].n_answers == 1 && r.rec[2].answer_char_start[0] == -1 && !strcmp(r.rec[2].answers[0].text, "London"));
    CHECK(r.rec[3].n_answers == 0 && !strcmp(r.rec[3].question.text, "None?"));
    CHECK(!strcmp(r.rec[0].context.text, "Caf\xc3\xa9 \xf0\x9f\x98\x80 Paris is big. Paris again."));
    for (int i = 0; i < r.n; i++) CHECK(decodes_to_text(&r.rec[i].context) && decodes_to_text(&r.rec[i].question));
    CHECK(decodes_to_text(&r.rec[0].answers[0]));
    free_all(&r);
  }
  unlink(out);

  // Not JSON at all: fatal, with line and column, whatever skip_bad says.
  in = write_text("broken.json", "{\"data\": [\n  {\"title\": }\n]}");
  CHECK(ingest1(&cfg, in, &rep, &err) == -1);
  CHECK_CONTAINS(err.msg, "broken.json:2:13: not valid JSON: unexpected character '}'");
  in = write_text("nodata.json", "{\"version\": 1}");
  CHECK(ingest1(&cfg, in, &rep, &err) == -1);
  CHECK_CONTAINS(err.msg, "not a SQuAD file");
  CHECK(!exists(out));
}

static void test_mrqa_and_qa(void) {
  const char *mrqa =
      "{\"header\": {\"dataset\": \"Toy\", \"split\": \"dev\"}}\n"
      "{\"id\": \"c1\", \"context\": \"Ada wrote code in 1843. ADA lived in London.\", \"qas\": ["
      "{\"qid\": \"m1\", \"question\": \"Who?\", \"answers\": [\"ada\", \"Ada\"], "
      "\"detected_answers\": [{\"text\": \"Ada\", \"char_spans\": [[0, 2]], \"token_spans\": [[0, 0]]}]}, "
      "{\"qid\": \"m2\", \"question\": \"When?\", \"answers\": [\"1843\"], "
      "\"detected_answers\": [{\"text\": \"1843\", \"char_spans\": [[18, 21]]}]}, "
      "{\"qid\": \"m3\", \"question\": \"Bad\", \"detected_answers\": [{\"text\": \"x\", \"char_spans\": []}]}]}\n";
  const char *in = write_text("toy.jsonl", mrqa), *out = tmp_path("mrqa.h5");
  ingest_config cfg = config(INGEST_MRQA, out, 0, 1);
  ingest_report rep;
  pith_err err = {{0}};
  CHECK(ingest1(&cfg, in, &rep, &err) == -1);
  CHECK_CONTAINS(err.msg, "toy.jsonl:2: qas[2]: (qid m3) detected_answers[0].'char_spans' must be");
  cfg.skip_bad = 1;
  CHECK_MSG(ingest1(&cfg, in, &rep, &err) == 0, "%s", err.msg);
  records r;
  if (read_all(out, &r) == 0) {
    CHECK(r.n == 2 && !strcmp(r.rec[0].id, "m1") && !strcmp(r.rec[1].id, "m2"));
    // detected "Ada" first (its span), then "ada" from answers (not in the context: -1).
    CHECK(r.rec[0].n_answers == 2 && !strcmp(r.rec[0].answers[0].text, "Ada") && r.rec[0].answer_char_start[0] == 0);
    CHECK(!strcmp(r.rec[0].answers[1].text, "ada") && r.rec[0].answer_char_start[1] == -1);
    CHECK(r.rec[1].n_answers == 1 && r.rec[1].answer_char_start[0] == 18);
    free_all(&r);
  }
  CHECK(rep.issues[INGEST_ISSUE_ANSWER_MISSING].count == 1);
  unlink(out);

  const char *qa =
      "{\"context\": \"The sky is blue. The sea is blue too.\", \"question\": \"Sky?\", \"answer\": \"blue\"}\n"
      "{\"id\": \"x2\", \"context\": \"The sky is blue. The sea is blue too.\", \"question\": \"Sea?\", "
      "\"answer\": \"blue\", \"answer_start\": 28}\n"
      "{\"id\": \"x3\", \"context\": \"abc\", \"question\": \"q\", \"answers\": [\"b\", {\"text\": \"c\", \"answer_start\": 2}]}\n"
      "{\"id\": \"x4\", \"context\": \"abc\", \"question\": \"q\", \"answer\": \"a\", \"answers\": [\"a\"]}\n"
      "{\"id\": \"x5\", \"context\": \"abc\", \"question\": \"\", \"answer\": \"a\"}\n"
      "{\"id\": \"x6\", \"context\": \"abc\", \"question\": \"q\"}\n";
  in = write_text("simple.jsonl", qa);
  cfg = config(INGEST_QA, out, 1, 2);
  CHECK_MSG(ingest1(&cfg, in, &rep, &err) == 0, "%s", err.msg);
  CHECK(rep.records == 3 && rep.issues[INGEST_ISSUE_BAD].count == 3);
  CHECK(has_sample(&rep.issues[INGEST_ISSUE_BAD], "simple.jsonl:4", "both 'answer' and 'answers'"));
  CHECK(has_sample(&rep.issues[INGEST_ISSUE_BAD], "simple.jsonl:5", "'question' is empty"));
  CHECK(has_sample(&rep.issues[INGEST_ISSUE_BAD], "simple.jsonl:6", "is missing"));
  if (read_all(out, &r) == 0) {
    CHECK(r.n == 3 && !strcmp(r.rec[0].id, "simple.jsonl:1") && r.rec[0].answer_char_start[0] == 11);
    CHECK(!strcmp(r.rec[1].id, "x2") && r.rec[1].answer_char_start[0] == 28);
    CHECK(r.rec[2].n_answers == 2 && r.rec[2].answer_char_start[0] == 1 && r.rec[2].answer_char_start[1] == 2);
    free_all(&r);
  }
  unlink(out);
}

// ---------------------------------------------------------------------------------------------
// Threads: the same datasets whatever their number (synthetic JSONL, both kinds).

static int same_corpus(const char *a, const char *b) {
  pith_err err = {{0}};
  corpus *x = corpus_open(a, &err), *y = corpus_open(b, &err);
  int same = x && y;
  const corpus_info *ix = x ? corpus_get_info(x) : NULL, *iy = y ? corpus_get_info(y) : NULL;
  if (same)
    same = ix->n_records == iy->n_records && ix->n_answers == iy->n_answers && ix->n_tokens == iy->n_tokens &&
           !strcmp(ix->tokenizer_sha256, iy->tokenizer_sha256) && ix->n_sources == iy->n_sources;
  corpus_record rx = {0}, ry = {0};
  for (int64_t i = 0; same && i < ix->n_records; i++) {
    same = corpus_read(x, i, CORPUS_READ_ALL, &rx, &err) == 0 && corpus_read(y, i, CORPUS_READ_ALL, &ry, &err) == 0;
    int qa = ix->kind == CORPUS_QA;
    corpus_field *fx[] = {qa ? &rx.context : &rx.doc, &rx.question}, *fy[] = {qa ? &ry.context : &ry.doc, &ry.question};
    same = same && !strcmp(rx.id, ry.id) && rx.split == ry.split && rx.n_answers == ry.n_answers;
    for (int k = 0; k < 1 + qa && same; k++)
      same = fx[k]->n_tokens == fy[k]->n_tokens && fx[k]->text_len == fy[k]->text_len &&
             !memcmp(fx[k]->tokens, fy[k]->tokens, (size_t)fx[k]->n_tokens * 4) && !strcmp(fx[k]->text, fy[k]->text);
    for (int k = 0; k < rx.n_answers && same; k++)
      same = rx.answer_char_start[k] == ry.answer_char_start[k] && !strcmp(rx.answers[k].text, ry.answers[k].text) &&
             rx.answers[k].n_tokens == ry.answers[k].n_tokens &&
             !memcmp(rx.answers[k].tokens, ry.answers[k].tokens, (size_t)rx.answers[k].n_tokens * 4);
  }
  corpus_record_free(&rx);
  corpus_record_free(&ry);
  corpus_close(x);
  corpus_close(y);
  return same;
}

static void test_threads(void) {
  pith_err err = {{0}};
  const char *docs = tmp_path("w_docs.jsonl"), *qa = tmp_path("w_qa.jsonl");
  CHECK_MSG(synth_write_jsonl(3, 3000, docs, qa, NULL, NULL, &err) == 0, "%s", err.msg);
  const char *outs[] = {tmp_path("w1.h5"), tmp_path("w4.h5"), tmp_path("w7.h5")};
  int threads[] = {1, 4, 7};
  for (int kind = 0; kind < 2; kind++) {
    for (int t = 0; t < 3; t++) {
      ingest_config cfg = config(kind ? INGEST_QA : INGEST_ARXIV, outs[t], 0, threads[t]);
      ingest_report rep;
      CHECK_MSG(ingest1(&cfg, kind ? qa : docs, &rep, &err) == 0, "%s", err.msg);
      CHECK(kind ? rep.records > 5 * 3000 : rep.records == 3000);
      // The synthetic world's answers sit where it says: nothing to report.
      for (int k = 0; k < INGEST_N_ISSUES; k++) CHECK_MSG(rep.issues[k].count == 0, "%s", rep.issues[k].samples[0]);
    }
    CHECK_MSG(same_corpus(outs[0], outs[1]) && same_corpus(outs[0], outs[2]), "%s files differ across thread counts",
              kind ? "qa" : "docs");
    for (int t = 0; t < 3; t++) unlink(outs[t]);
  }
}

// The progress callback is called, last with done = 1 and the final counts.
static ingest_progress LAST;
static int N_PROGRESS;
static void on_progress(const ingest_progress *p, void *ctx) {
  (void)ctx;
  LAST = *p;
  N_PROGRESS++;
}

static void test_progress(void) {
  pith_err err = {{0}};
  const char *docs = tmp_path("w_docs.jsonl"), *out = tmp_path("p.h5");
  ingest_config cfg = config(INGEST_ARXIV, out, 0, 2);
  cfg.progress = on_progress;
  ingest_report rep;
  CHECK_MSG(ingest1(&cfg, docs, &rep, &err) == 0, "%s", err.msg);
  struct stat st;
  stat(docs, &st);
  CHECK(N_PROGRESS >= 1 && LAST.done == 1 && LAST.records == 3000 && LAST.bytes == st.st_size &&
        LAST.bytes_total == st.st_size && LAST.tokens == rep.tokens);
  unlink(out);
}

// ---------------------------------------------------------------------------------------------
// The synthetic world

static int same_file(const char *a, const char *b) {
  pith_err err = {{0}};
  size_t na, nb;
  char *x = pith_read_file(a, &na, &err), *y = pith_read_file(b, &nb, &err);
  int same = x && y && na == nb && !memcmp(x, y, na);
  free(x);
  free(y);
  return same;
}

static void test_synth(void) {
  pith_err err = {{0}};
  // Deterministic: the same seed gives byte-identical files; another seed other ones.
  CHECK(synth_write_jsonl(11, 500, tmp_path("s1d.jsonl"), tmp_path("s1q.jsonl"), tmp_path("s1s.jsonl"), tmp_path("s1w.jsonl"), &err) == 0);
  CHECK(synth_write_jsonl(11, 500, tmp_path("s2d.jsonl"), tmp_path("s2q.jsonl"), tmp_path("s2s.jsonl"), tmp_path("s2w.jsonl"), &err) == 0);
  CHECK(synth_write_jsonl(12, 500, tmp_path("s3d.jsonl"), NULL, NULL, NULL, &err) == 0);
  CHECK(same_file(tmp_path("s1d.jsonl"), tmp_path("s2d.jsonl")) && same_file(tmp_path("s1q.jsonl"), tmp_path("s2q.jsonl")));
  CHECK(same_file(tmp_path("s1s.jsonl"), tmp_path("s2s.jsonl")) && same_file(tmp_path("s1w.jsonl"), tmp_path("s2w.jsonl")));
  CHECK(!same_file(tmp_path("s1d.jsonl"), tmp_path("s3d.jsonl")));
  CHECK(!exists(tmp_path("s1d.jsonl.partial")));
  CHECK(synth_write_tokenizer(tmp_path("tok2"), NULL, &err) == 0);
  CHECK(same_file(tmp_path("tok/tokenizer.json"), tmp_path("tok2/tokenizer.json")));
  // Random access: document 77 alone equals document 77 of a run.
  synth_doc *a = malloc(sizeof *a), *b = malloc(sizeof *b);
  synth_generate(11, 77, a);
  for (int i = 70; i < 80; i++) synth_generate(11, i, b);
  synth_generate(11, 77, b);
  CHECK(!strcmp(a->text, b->text) && a->n_qa == b->n_qa && !strcmp(a->qa[0].answer, b->qa[0].answer));

  // Answers sit at their offsets and are one token, the very token the context has there; answers
  // are hard to guess; the tokenizer round-trips everything.
  enum { N_Q = 1000 };
  static char answers[N_Q][64];
  int n_q = 0, misplaced = 0, not_one_token = 0, not_in_context = 0, roundtrip_bad = 0, n_docs = 0;
  int64_t tokens = 0, words = 0;
  for (int64_t i = 0; n_q < N_Q; i++, n_docs++) {
    synth_generate(5, i, a);
    CHECK(a->n_qa >= 4 && a->n_qa <= 8);
    const char *texts[2 + SYNTH_MAX_QA * 2];
    int nt = 0;
    texts[nt++] = a->text, texts[nt++] = a->title;
    int32_t *ctx = NULL;
    size_t n_ctx = 0;
    CHECK(tokenizer_encode(TOK, a->text, strlen(a->text), 0, &ctx, &n_ctx, &err) == 0);
    for (int q = 0; q < a->n_qa; q++) {
      const synth_qa *x = &a->qa[q];
      misplaced += x->answer_start < 0 || strncmp(a->text + x->answer_start, x->answer, strlen(x->answer)) != 0;
      // The short contexts: whole sentences of the text (from a word start to a full stop) that hold
      // the answer; the sentence is one (no full stop inside), the window 1 to 3.
      for (int w = 0; w < 2; w++) {
        int64_t s0 = w ? x->window_start : x->sentence_start, s1 = s0 + (w ? x->window_len : x->sentence_len);
        int stops = 0;
        for (int64_t c = s0; c >= 0 && c < s1 && s1 <= (int64_t)strlen(a->text); c++) stops += a->text[c] == '.';
        misplaced += s0 < 0 || s1 > (int64_t)strlen(a->text) || x->answer_start < s0 ||
                     x->answer_start + (int64_t)strlen(x->answer) > s1 || (s0 > 0 && a->text[s0 - 1] != ' ') ||
                     a->text[s1 - 1] != '.' || (a->text[s1] != 0 && a->text[s1] != ' ') || stops < 1 ||
                     stops > (w ? SYNTH_WINDOW_SENTENCES : 1);
      }
      if (n_q < N_Q) strcpy(answers[n_q++], x->answer);
      texts[nt++] = x->question, texts[nt++] = x->answer;
      int32_t *ids = NULL;
      size_t n = 0;
      CHECK(tokenizer_encode(TOK, x->answer, strlen(x->answer), 0, &ids, &n, &err) == 0);
      not_one_token += n != 1;
      int found = 0;
      for (size_t t = 0; n == 1 && t < n_ctx; t++) found += ctx[t] == ids[0];
      not_in_context += found != 1;
      free(ids);
    }
    free(ctx);
    for (int k = 0; k < nt; k++) {
      int32_t *ids = NULL;
      size_t n = 0;
      CHECK(tokenizer_encode(TOK, texts[k], strlen(texts[k]), 0, &ids, &n, &err) == 0);
      char *back = tokenizer_decode(TOK, ids, n, 1, &err);
      // The pre-tokenizer adds a space before a text that starts without one; decoding keeps it.
      roundtrip_bad += !back || back[0] != ' ' || strcmp(back + 1, texts[k]) != 0;
      if (k == 0) {
        tokens += (int64_t)n;
        for (const char *p = texts[k]; *p; p++) words += *p == ' ';
      }
      free(back);
      free(ids);
    }
  }
  CHECK(misplaced == 0 && roundtrip_bad == 0);
  CHECK(not_one_token == 0 && not_in_context == 0);
  // Distinct answers among 1000 questions, and the most frequent one's share (what a model
  // without the context could reach by always giving it).
  int distinct = 0, top = 0;
  for (int i = 0; i < N_Q; i++) {
    int seen = 0, count = 0;
    for (int j = 0; j < N_Q; j++) {
      if (j < i && !strcmp(answers[i], answers[j])) seen = 1;
      count += !strcmp(answers[i], answers[j]);
    }
    distinct += !seen;
    if (count > top) top = count;
  }
  printf("synth: %d questions over %d documents, %d distinct answers, the most frequent %d times; "
         "%.2f tokens per word; vocabulary %d\n", N_Q, n_docs, distinct, top,
         (double)tokens / (double)(words + n_docs), tokenizer_vocab_size(TOK));
  CHECK(distinct >= 400 && top <= 20);
  CHECK(tokenizer_vocab_size(TOK) < 2560);
  CHECK((double)tokens / (double)(words + n_docs) < 1.5);
  free(a);
  free(b);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st, (void)flag, (void)ftw;
  return remove(path);
}

int main(void) {
  CHECK(mkdtemp(dir) != NULL);
  pith_err err = {{0}};
  CHECK_MSG(synth_write_tokenizer(tmp_path("tok"), NULL, &err) == 0, "%s", err.msg);
  TOK = tokenizer_load(tmp_path("tok/tokenizer.json"), &err);
  CHECK_MSG(TOK != NULL, "%s", err.msg);
  if (TOK) {
    test_malformed_one_by_one();
    test_malformed_mixed();
    test_json_depth();
    test_text();
    test_squad();
    test_mrqa_and_qa();
    test_threads();
    test_progress();
    test_synth();
  }
  tokenizer_free(TOK);
  nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  return check_done("test_ingest");
}
