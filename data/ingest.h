// ingest: source files to a pith corpus file (data/README.md): parse, validate, tokenize, write.
//
// Formats (one corpus kind each):
//   ARXIV  documents  the arXiv metadata snapshot, JSONL: id from "id" (as given; when it is
//                     missing or null, "BASENAME:LINE", reported as NO_ID), the text is "abstract"
//                     with whitespace normalised (see below); other fields are ignored
//   TEXT   documents  plain UTF-8 text: a document per line (LINES) or per blank-line-separated
//                     block (BLOCKS, lines joined with "\n"); id "BASENAME:LINE" (first line of the
//                     block); the text is kept verbatim (line terminators \n or \r\n removed)
//   SQUAD  qa         SQuAD JSON (v1.1; v2's unanswerable questions become examples with no
//                     answer): data[].paragraphs[] {context, qas[] {id, question, answers[]
//                     {text, answer_start}}}; one example per question, id the question's id
//   MRQA   qa         MRQA JSONL: a header line, then {context, qas[] {qid, question, answers[],
//                     detected_answers[] {text, char_spans [[start, end]]}}}; one example per qa
//   QA     qa         simple JSONL {id?, context, question, answer | answers, answer_start?} where
//                     answers is a list of strings or of {text, answer_start}; id defaults to
//                     "BASENAME:LINE"
// QA contexts, questions and answers are stored verbatim (offsets refer to them). Answer offsets
// are code points (Python str indexes). MRQA answer rows: the detected answers first (their first
// char span), then the strings of "answers" not already among them.
//
// Whitespace normalisation (ARXIV only): every run of ASCII whitespace (space, \t, \n, \v, \f,
// \r) becomes one space and leading/trailing spaces go; in Python
// re.sub(r"[ \t\n\v\f\r]+", " ", s).strip(" "). Unicode spaces (U+00A0, ...) are kept.
//
// Validation, per record, before anything is appended (the corpus writer discards the whole file
// when an append fails, so a record that would be refused must be caught here):
//   - malformed (INGEST_ISSUE_BAD): bad JSON, a missing field or one of the wrong type, invalid
//     UTF-8 (also in plain text), a NUL character in a used field, an empty id/context/question/
//     answer text, a line or block longer than max_record_bytes, a negative or non-integer offset,
//     an empty input file. Without skip_bad the first one (in input order) stops the ingest and
//     nothing is written; with skip_bad it is skipped, counted and listed.
//   - EMPTY: a document that is empty (or only whitespace) is dropped, counted and listed.
//   - ANSWER_MOVED: an answer not found at its given offset but elsewhere in the context is kept
//     with the offset of the occurrence nearest to the given one. ANSWER_MISSING: an answer whose
//     text does not occur in its context is kept with char_start -1. An answer given without an
//     offset (QA format strings) is located by its first occurrence (not an issue when found).
//   - NO_ANSWER: a QA example without answers is kept (it trains only its eos); counted.
//   - BLANK: blank lines between JSONL records are ignored; counted.
//   - NO_ID: an ARXIV record without an id (missing or null) is kept as "BASENAME:LINE"; counted.
// A JSON file that is not JSON at all (SQuAD) or an unreadable file is fatal whatever skip_bad says.
//
// Work is spread over threads: the calling thread reads the inputs into batches of records (and
// computes their sha256 on the way), worker threads parse, validate and tokenize whole batches, and
// the calling thread appends the batches to the corpus writer strictly in input order, so the file
// is the same whatever the number of threads. Nothing is printed; progress goes to a callback.
#ifndef PITH_INGEST_H
#define PITH_INGEST_H

#include <stdint.h>
#include <stdio.h>

#include "base.h"
#include "corpus.h"
#include "sha256.h"
#include "tokenizer.h"

typedef enum { INGEST_ARXIV = 0, INGEST_TEXT, INGEST_SQUAD, INGEST_MRQA, INGEST_QA, INGEST_N_FORMATS } ingest_format;
typedef enum { INGEST_TEXT_LINES = 0, INGEST_TEXT_BLOCKS = 1 } ingest_text_mode;

#define INGEST_DEFAULT_MAX_RECORD_BYTES (8 << 20)  // 8 MiB: longer lines/blocks are malformed
#define INGEST_MAX_THREADS 256

// Where an ingest stands, handed to the progress callback (from the calling thread).
typedef struct {
  int64_t records;       // records written so far
  int64_t bytes;         // input bytes read so far
  int64_t bytes_total;   // total size of the inputs
  int64_t tokens;        // tokens written so far (all columns)
  double seconds;        // since the ingest began
  int done;              // 1 on the last call
} ingest_progress;

typedef void (*ingest_progress_fn)(const ingest_progress *p, void *ctx);

typedef struct {
  ingest_format format;
  ingest_text_mode text_mode;      // TEXT only
  const tokenizer *tok;            // shared by all threads (encoding is thread-safe)
  const char *out_path;            // the corpus file (written as OUT.partial, renamed at the end)
  const char *command;             // recorded in the file ("" or NULL: none)
  int threads;                     // worker threads; 1: everything on the calling thread
  int skip_bad;                    // skip malformed records instead of stopping
  int add_bos;                     // prepend bos to documents and contexts (not questions/answers)
  double val_fraction, test_fraction;
  int64_t max_record_bytes;        // 0: INGEST_DEFAULT_MAX_RECORD_BYTES
  ingest_progress_fn progress;     // NULL: none; called at most every 0.25 s and once at the end
  void *progress_ctx;
} ingest_config;

// What happened to records that were not simply written.
typedef enum {
  INGEST_ISSUE_BAD = 0,      // malformed: skipped (skip_bad) or fatal
  INGEST_ISSUE_EMPTY,        // empty document: dropped
  INGEST_ISSUE_ANSWER_MOVED, // answer found away from its offset: kept, offset corrected
  INGEST_ISSUE_ANSWER_MISSING, // answer not in its context: kept, char_start -1
  INGEST_ISSUE_NO_ANSWER,    // QA example without answers: kept
  INGEST_ISSUE_BLANK,        // blank JSONL line: ignored
  INGEST_ISSUE_NO_ID,        // ARXIV record whose id is missing or null: kept with id BASENAME:LINE
  INGEST_N_ISSUES
} ingest_issue_kind;

#define INGEST_ISSUE_SAMPLES 5

typedef struct {
  int64_t count;
  int n_samples;                               // the first few, in input order
  char samples[INGEST_ISSUE_SAMPLES][384];     // "FILE:LINE[ where]: reason"
} ingest_issue;

typedef struct {
  int64_t records;          // records written (documents or QA examples)
  int64_t answers;          // answer rows written (qa)
  int64_t split[3];         // records per split
  int64_t tokens;           // tokens written, all columns (a shared context counts per example)
  int64_t main_tokens;      // tokens of the main column (documents / contexts): n_tokens attribute
  int64_t encoded_bytes;    // text bytes handed to the tokenizer (a shared context counts once)
  int64_t encoded_tokens;   // tokens it returned for them
  int64_t input_bytes;      // bytes read from the inputs
  double seconds;           // wall time of the ingest (tokenizer loading excluded)
  int threads;
  ingest_issue issues[INGEST_N_ISSUES];
  char hint[256];           // after a failure caused by the input: how to get past it ("" if none)
} ingest_report;

const char *ingest_format_name(ingest_format f);   // "arxiv", "text", "squad", "mrqa", "qa"
int ingest_format_parse(const char *name, ingest_format *f);  // 0, or -1 for an unknown name
corpus_kind ingest_format_kind(ingest_format f);
const char *ingest_issue_name(ingest_issue_kind k);  // "malformed", "empty", ...

// The tokenizer fingerprint recorded in corpus files: sha256 of the text made of one line per
// file of tokenizer_source_files(), in order, "<sha256 of the file>  <basename>\n" (sha256sum's
// output with basenames). hex: (65).
int ingest_tokenizer_fingerprint(const tokenizer *tok, char hex[SHA256_HEX_SIZE], pith_err *err);

// Before reading corpus ids with tok: when the corpus records another fingerprint, print a warning
// to `out` naming both (a tokenizer saved elsewhere, or with another config, can give the same ids,
// so this does not stop the run). A model folder's config.json and generation_config.json are left
// out of the comparison when that makes it agree: a corpus made from the tokenizer's own folder
// (as `pith data synth` makes the demo's) did not read them. 1 when it warned, 0 when the
// fingerprints agree, -1 and err when a tokenizer file cannot be read.
int ingest_warn_other_tokenizer(const char *corpus_path, const corpus_info *ci, const tokenizer *tok,
                                const char *tok_path, FILE *out, pith_err *err);

// Ingest inputs (n_inputs paths) into cfg->out_path. rep (always filled, also on failure) says
// what was written and what was skipped or fixed. 0 on success; -1 and err (one line, naming the
// file and line of the record at fault) on failure, and then no file named out_path is created.
int ingest_run(const ingest_config *cfg, const char *const *inputs, int n_inputs, ingest_report *rep,
               pith_err *err);

#endif
