// corpus: the pith corpus file, HDF5 holding either tokenized documents (pretraining: regenerate
// the text) or extractive-QA examples (fine-tuning: context, question, answers). Token ids and raw
// UTF-8 text are kept side by side as ragged arrays (a flat data array plus int64 offsets), chunked
// and deflate-compressed, so h5py and h5dump read them too. data/README.md documents the schema.
//
// The writer streams: records are appended to in-memory buffers flushed chunk by chunk into
// extendible datasets, so millions of records never sit in memory at once. It writes "PATH.partial"
// and renames it to PATH only on a successful close; an error or an abort removes the partial file.
// The reader reads one record (or a slice of one) with hyperslab reads, never the whole file.
// Each record carries an id and a split (train/val/test) derived from sha256(id), so the same
// record lands in the same split whichever file or run it comes from.
#ifndef PITH_CORPUS_H
#define PITH_CORPUS_H

#include <stdint.h>

#include "base.h"

#define CORPUS_SCHEMA "pith.corpus"   // root attribute "schema"
#define CORPUS_SCHEMA_VERSION 1       // root attribute "schema_version"; readers refuse newer
#define CORPUS_SPLIT_SCALE 1000000    // split buckets: sha256(id) mod this, see corpus_split_of_id

typedef enum { CORPUS_DOCUMENTS = 0, CORPUS_QA = 1 } corpus_kind;
typedef enum { CORPUS_SPLIT_TRAIN = 0, CORPUS_SPLIT_VAL = 1, CORPUS_SPLIT_TEST = 2 } corpus_split;

// The ragged columns of a file. DOC only in documents files; the others only in QA files.
// ANSWER rows are answers, not examples: example i owns answer rows corpus_answer_rows(i).
typedef enum {
  CORPUS_COL_ID = 0,    // record ids (text only)
  CORPUS_COL_DOC,       // documents: the document (tokens + text)
  CORPUS_COL_CONTEXT,   // qa: the passage
  CORPUS_COL_QUESTION,  // qa: the question
  CORPUS_COL_ANSWER,    // qa: every answer of every example
  CORPUS_N_COLS
} corpus_col;

// "documents" / "qa"; "train" / "val" / "test".
const char *corpus_kind_name(corpus_kind kind);
const char *corpus_split_name(int split);

// The split of a record: b = (first 8 bytes of sha256(id) as a big-endian uint64) mod 1e6;
// TEST if b < round(test_fraction * 1e6), else VAL if b < round((test_fraction + val_fraction)
// * 1e6), else TRAIN. Deterministic, independent of record order and of the file.
int corpus_split_of_id(const char *id, double val_fraction, double test_fraction);

// ---------------------------------------------------------------------------------------------
// Writing

typedef struct {
  corpus_kind kind;
  const char *tokenizer_sha256;  // fingerprint of the tokenizer that made the ids (any non-empty string)
  int64_t vocab_size;            // every token id must lie in [0, vocab_size)
  const char *command;           // the command line that made the file ("" if none)
  double val_fraction;           // fraction of ids sent to the val split, in [0, 1]
  double test_fraction;          // fraction sent to test; val + test <= 1
} corpus_writer_config;

// A piece of text and its token ids, as handed to the writer (nothing is kept after the call).
typedef struct {
  const int32_t *tokens;  // (n_tokens)
  int64_t n_tokens;
  const char *text;       // (text_len) UTF-8 bytes, need not be NUL-terminated
  int64_t text_len;       // -1: strlen(text)
} corpus_span;

typedef struct {
  corpus_span span;
  int64_t char_start;  // where the answer starts in the context text, counted in Unicode code
                       // points (as Python's str indexes, SQuAD's answer_start); -1 if unknown
} corpus_answer;

typedef struct corpus_writer corpus_writer;

// Create PATH.partial (replacing a stale one); a successful close then replaces PATH. NULL and err
// on failure.
corpus_writer *corpus_writer_create(const char *path, const corpus_writer_config *cfg, pith_err *err);
// Record a source file and its sha256 (hex; NULL: computed here by reading the file).
int corpus_writer_add_source(corpus_writer *w, const char *path, const char *sha256_hex, pith_err *err);
// Append one document (documents files). The split comes from the id.
int corpus_writer_add_doc(corpus_writer *w, const char *id, const corpus_span *doc, pith_err *err);
// Append one QA example (qa files); answers: (n_answers), n_answers >= 0; the first answer is the
// training target. A known char_start must leave the answer inside the context.
int corpus_writer_add_qa(corpus_writer *w, const char *id, const corpus_span *context,
                         const corpus_span *question, const corpus_answer *answers, int n_answers,
                         pith_err *err);
// Flush, write the root attributes, close, fsync and rename PATH.partial to PATH; frees w. If any
// earlier append on w failed (a refused record included: any error discards the file, so a
// corpus never silently lacks records), or this call fails, PATH.partial is removed and -1 returned.
int corpus_writer_close(corpus_writer *w, pith_err *err);
// Give up: close and remove PATH.partial; frees w. NULL is fine.
void corpus_writer_abort(corpus_writer *w);
// Records appended so far.
int64_t corpus_writer_count(const corpus_writer *w);

// ---------------------------------------------------------------------------------------------
// Reading

typedef struct {
  int schema_version;
  corpus_kind kind;
  char *tokenizer_sha256;
  int64_t vocab_size;
  char *command;
  int n_sources;
  char **source_paths;     // (n_sources)
  char **source_sha256;    // (n_sources)
  double val_fraction, test_fraction;
  int64_t n_records;       // documents or QA examples
  int64_t n_answers;       // qa: answer rows in all (0 for documents)
  int64_t n_tokens;        // tokens of the main column (DOC, or CONTEXT for qa)
  int64_t n_split[3];      // records per split, indexed by corpus_split (as written)
} corpus_info;

typedef struct corpus corpus;

// Open and validate (schema name, version, kind, dataset shapes). On failure NULL and a one-line
// err naming the file: not HDF5, not a pith corpus, a newer schema version, or inconsistent.
corpus *corpus_open(const char *path, pith_err *err);
void corpus_close(corpus *c);  // NULL is fine
const corpus_info *corpus_get_info(const corpus *c);
const char *corpus_path(const corpus *c);
// Rows of a column: n_records, or n_answers for CORPUS_COL_ANSWER; -1 if the kind lacks it.
int64_t corpus_n_rows(const corpus *c, corpus_col col);

// One column of one record, owned by a corpus_record and reused across reads.
typedef struct {
  int32_t *tokens;    // (n_tokens)
  int64_t n_tokens;
  char *text;         // (text_len + 1) UTF-8, NUL-terminated
  int64_t text_len;   // bytes
  int64_t cap_tokens, cap_text;
} corpus_field;

// A whole record. Zero-initialise, pass to corpus_read as often as needed, then corpus_record_free.
typedef struct {
  int64_t index;
  char *id;                     // NUL-terminated
  int64_t cap_id;
  int split;                    // corpus_split
  corpus_field doc;             // documents
  corpus_field context;         // qa
  corpus_field question;        // qa
  int n_answers;                // qa
  corpus_field *answers;        // (n_answers)
  int64_t *answer_char_start;   // (n_answers), -1 when unknown
  int cap_answers;
} corpus_record;

enum { CORPUS_READ_TOKENS = 1, CORPUS_READ_TEXT = 2, CORPUS_READ_ALL = 3 };

// Read record i (id, split, and the tokens and/or text as `what` says) into rec.
int corpus_read(corpus *c, int64_t i, unsigned what, corpus_record *rec, pith_err *err);
void corpus_record_free(corpus_record *rec);

// Low-level slices, for the loader and tools. Offsets: out (count) = offsets[start .. start+count)
// of a column's tokens (text = 0) or text bytes (text = 1); a column of R rows has R + 1 offsets.
int corpus_read_offsets(corpus *c, corpus_col col, int text, int64_t start, int64_t count,
                        int64_t *out, pith_err *err);
// Flat tokens of a column: out (count) = tokens[pos .. pos+count).
int corpus_read_flat_tokens(corpus *c, corpus_col col, int64_t pos, int64_t count, int32_t *out,
                            pith_err *err);
// Token count of rows [start, start+count): out (count).
int corpus_read_lengths(corpus *c, corpus_col col, int64_t start, int64_t count, int64_t *out,
                        pith_err *err);
// Splits of records [start, start+count): out (count), values corpus_split.
int corpus_read_splits(corpus *c, int64_t start, int64_t count, uint8_t *out, pith_err *err);
// qa: out (count + 1) = answer_offsets[start .. start+count]; example i owns answer rows
// [out[i-start], out[i-start+1]).
int corpus_read_answer_offsets(corpus *c, int64_t start, int64_t count, int64_t *out, pith_err *err);

#endif
