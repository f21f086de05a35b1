// ingest internals: what the pipeline (ingest.c) and the format parsers (ingest_formats.c) share.
// A record unit travels reader -> worker -> writer inside a batch; the batch's arena owns every
// byte its records point to. Not part of the public API (see ingest.h).
#ifndef PITH_INGEST_INTERNAL_H
#define PITH_INGEST_INTERNAL_H

#include "arena.h"
#include "ingest.h"
#include "json.h"

// ---------------------------------------------------------------------------------------------
// Records and batches

typedef enum { REC_OK = 0, REC_BAD, REC_EMPTY, REC_SKIP } rec_status;   // REC_SKIP: not a record (MRQA header)
typedef enum { FIX_NONE = 0, FIX_MOVED, FIX_MISSING } answer_fix;

typedef struct {
  const char *text;       // the answer (NUL-terminated)
  size_t len;
  int64_t given;          // offset given by the source, in code points; -1 none
  int64_t start;          // offset written: given, corrected, or -1
  answer_fix fix;
  int32_t *toks;          // (n_toks)
  size_t n_toks;
} rec_answer;

typedef struct {
  rec_status status;
  int file;               // index of the input
  int64_t line;           // 1-based line where the record starts; 0: the whole file
  const char *where;      // inside the line/file, e.g. "qas[2]"; NULL when the line says it all
  const char *msg;        // REC_BAD / REC_EMPTY: why
  const char *id;
  const char *text;       // document, or context (several QA records may share one pointer)
  size_t len;
  const char *question;
  size_t qlen;
  rec_answer *ans;        // (n_ans)
  int n_ans;
  int32_t *toks;          // (n_toks) tokens of text
  size_t n_toks;
  int32_t *qtoks;         // (n_qtoks) tokens of question
  size_t n_qtoks;
  int id_defaulted;       // ARXIV: no id in the record, BASENAME:LINE given instead
  int split;              // corpus_split of the id (computed by the worker, for the report)
} rec;

// A unit of input for a worker to parse: a JSONL line, a text line or block.
typedef struct {
  const char *s;          // NULL when bad is set
  size_t len;
  int file;
  int64_t line;
  const char *bad;        // a problem the reader found (too long, empty file): the record is BAD
} raw_unit;

typedef struct batch {
  int64_t seq;
  arena a;
  raw_unit *raws;
  int n_raws, cap_raws;
  rec *recs;
  int n_recs, cap_recs;
  size_t in_bytes;
  int64_t encoded_bytes, encoded_tokens;
  int oom;
  int done;               // set by the worker (under the pool's lock)
  struct batch *next;     // in the pool's queue
} batch;

// ---------------------------------------------------------------------------------------------
// Ingest state (the calling thread's)

typedef struct {
  int fd;
  char *buf;
  size_t cap, lo, hi;        // unread data is buf[lo, hi)
  int eof;
  int64_t line_no;           // lines returned so far
  sha256_ctx sha;
} line_reader;

typedef struct {
  const ingest_config *cfg;
  const char *const *inputs;
  int n_inputs;
  size_t max_rec;
  ingest_report *rep;
  corpus_writer *w;
  int32_t vocab;

  // reading
  int cur;                   // input being read
  int open;                  // cur is open
  int64_t units;             // record units produced from the current file
  int64_t bytes_read;        // over all files
  int64_t bytes_total;
  line_reader rd;
  char *block;               // TEXT blocks: the block being gathered
  size_t block_len, block_cap, block_total;
  int64_t block_line;        // 0: no block open
  char *sq_buf;              // SQUAD: the whole file
  size_t sq_len;
  char sq_sha[SHA256_HEX_SIZE];
  arena sq_arena;
  const json_value *sq_art;          // next article
  const json_value *sq_par;          // next paragraph of the current article (NULL: take the next article)
  int sq_ia, sq_ip;          // their indexes
  size_t sq_line_off;        // line counting: sq_line is the line of byte sq_line_off
  int64_t sq_line;

  // writing
  double t0, last_progress;
  corpus_answer *answers;    // (cap_answers) scratch for corpus_writer_add_qa
  int cap_answers;
} ingest_ctx;

// ---------------------------------------------------------------------------------------------
// Shared by the pipeline and the format parsers (ingest_formats.c)

// Whether s (n bytes) holds only ASCII whitespace.
int ingest_is_blank(const char *s, size_t n);
// A new record at the end of b (status OK), or NULL (b->oom set) when out of memory.
rec *ingest_rec_push(batch *b, int file, int64_t line, const char *where);
// Mark r BAD with a formatted reason (kept in b's arena).
void ingest_rec_bad(batch *b, rec *r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

// Worker: parse one raw unit of b (not a bad one) into records, per C->cfg->format.
void ingest_parse_unit(ingest_ctx *C, batch *b, const raw_unit *u);

// SQUAD (read whole on the calling thread): load and parse the file at path into C's sq_* state;
// -1 when it cannot be read or is not a SQuAD file.
int ingest_squad_open(ingest_ctx *C, const char *path, pith_err *err);
// The next paragraph (all its questions) into b: 1; 0 at the end of the file; -1 on error.
int ingest_squad_next(ingest_ctx *C, batch *b, pith_err *err);

#endif
