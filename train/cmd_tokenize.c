// pith tokenize: text to token ids (one JSON array a line) and back, with any tokenizer pith
// reads. Input is a document a line (or JSONL with a text field); lines are encoded in batches
// by several threads sharing one tokenizer, and written in input order.
#define _GNU_SOURCE  // getline
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "arena.h"
#include "cli.h"
#include "commands.h"
#include "json.h"
#include "strbuf.h"
#include "tokenizer.h"
#include "utf8.h"

enum { BATCH_LINES = 4096, BATCH_BYTES = 8 << 20, MAX_THREADS = 256 };

typedef struct {
  const char *tokenizer, *input, *field;
  int decode, jsonl, bos, skip_special, threads, stats;
} tokenize_opts;

typedef struct {
  char **in;      // (n) input lines
  size_t *in_len; // (n) their bytes (a line may hold a NUL, which is refused)
  char **out;     // (n) output lines, malloc'd, each ending in '\n'
  size_t *out_len; // (n) their bytes (a decoded text may hold a NUL)
  char **errs;    // (n) an error message for a line, or NULL
  size_t n;
  size_t n_bytes, n_tokens;  // text bytes and token ids handled in this batch
} batch;

typedef struct {
  const tokenizer *tok;
  const tokenize_opts *o;
  batch *b;
  atomic_size_t next;
  atomic_size_t n_bytes, n_tokens;
} work;

// Fills o from the command line: 0 to go on, else 1 with the exit code in *code (0 after --help).
static int parse_args(int argc, char **argv, tokenize_opts *o, int *code) {
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  *o = (tokenize_opts){.field = "text", .input = "-",
                       .threads = cores < 1 ? 1 : cores > MAX_THREADS ? MAX_THREADS : (int)cores};
  int n_inputs = 0;
  const cli_opt opts[] = {
      {"--tokenizer", CLI_STR, &o->tokenizer, .metavar = "PATH", .flags = CLI_REQUIRED,
       .help = "tokenizer.json, a folder (tokenizer.json, or vocab.json + merges.txt),\n"
               "a llama2.c tokenizer.bin, or a tiktoken file (cl100k_base.tiktoken)"},
      {"--decode", CLI_FLAG, &o->decode,
       .help = "read JSON arrays of ids, print the texts (a text with newlines\n"
               "spans lines: add --jsonl to keep one line per text)"},
      {"--jsonl", CLI_FLAG, &o->jsonl,
       .help = "input lines are JSON objects; the text is in --field (default \"text\");\n"
               "with --decode, print {\"FIELD\": text} lines"},
      {"--field", CLI_STR, &o->field, .metavar = "NAME", .help = "the --jsonl field that holds the text (default \"text\")"},
      {"--bos", CLI_FLAG, &o->bos,
       .help = "add the special tokens the tokenizer puts around a text (bos; [CLS] ... [SEP]\n"
               "for BERT, <s> ... </s> for XLM-R)"},
      {"--skip-special", CLI_FLAG, &o->skip_special, .help = "with --decode, leave special tokens out"},
      {"--threads", CLI_INT, &o->threads, .metavar = "N", .min = 1, .max = MAX_THREADS,
       .help = "encoding threads (default: all cores)"},
      {"--stats", CLI_FLAG, &o->stats, .help = "print documents, MB, tokens and MB/s to stderr"},
  };
  const cli_spec spec = {
      "pith tokenize", CLI_OPTS(opts), .usage_on_error = 1,
      .about = "Encodes a document a line (stdin by default) and prints its ids, one JSON array a line.\n"
               "Special tokens written in the text (e.g. <|eot_id|>) are encoded as special tokens.\n\n",
      .args = "[FILE|-]", .max_args = 1, .arg_out = &o->input, .n_args = &n_inputs};
  return cli_command(&spec, argc, argv, code);
}

static char *fmt_error(const char *fmt, const char *a) {
  char buf[1200];
  snprintf(buf, sizeof buf, fmt, a);
  return strdup(buf);
}

// "[1,2,3]\n", its length in *len.
static char *ids_to_json(const int32_t *ids, size_t n, size_t *len) {
  char *s = malloc(n * 12 + 4), *p = s;
  if (!s) return NULL;
  *p++ = '[';
  for (size_t i = 0; i < n; i++) {
    char digits[12];
    int k = 0;
    uint32_t v = ids[i] < 0 ? (uint32_t)0 - (uint32_t)ids[i] : (uint32_t)ids[i];
    do digits[k++] = (char)('0' + v % 10); while ((v /= 10) > 0);
    if (i) *p++ = ',';
    if (ids[i] < 0) *p++ = '-';
    while (k > 0) *p++ = digits[--k];
  }
  *p++ = ']', *p++ = '\n', *p = 0;
  *len = (size_t)(p - s);
  return s;
}

// A text must be UTF-8 without a NUL, as pith data ingest requires of its records: the same
// input gets the same verdict, with the place counted in bytes from 1. NULL when it is fine.
static char *text_problem(const char *text, size_t len, const char *what) {
  char buf[800];
  int64_t bad = utf8_invalid_at(text, len);
  const char *nul = memchr(text, 0, len);
  if (bad >= 0)
    snprintf(buf, sizeof buf, "invalid UTF-8 at byte %" PRId64 " of the %s (byte 0x%02X)", bad + 1, what,
             (unsigned char)text[bad]);
  else if (nul)
    snprintf(buf, sizeof buf, "a NUL byte at byte %zu of the %s", (size_t)(nul - text) + 1, what);
  else
    return NULL;
  return strdup(buf);
}

static char *encode_line(work *w, const char *line, size_t len, size_t *out_len, char **err_msg) {
  arena a = {0};
  const char *text = line;
  char field[600];
  if (w->o->jsonl) {
    json_parser P = {0};
    const json_value *o = json_parse(&P, &a, line, len);
    const json_value *f = o ? json_get(o, w->o->field) : NULL;
    if (!o) {
      snprintf(field, sizeof field, "bad JSON at column %zu: %s", P.err_off + 1, P.why);
      *err_msg = strdup(field);
    } else if (!f || f->type != JSON_STR) {
      *err_msg = fmt_error("not a JSON object with a string field '%s'", w->o->field);
    } else {
      text = f->s, len = f->len;
    }
    if (*err_msg) {
      arena_free(&a);
      return NULL;
    }
    snprintf(field, sizeof field, "field '%s'", w->o->field);
  }
  if ((*err_msg = text_problem(text, len, w->o->jsonl ? field : "line"))) {
    arena_free(&a);
    return NULL;
  }
  int32_t *ids = NULL;
  size_t n = 0;
  pith_err err = {{0}};
  char *out = NULL;
  if (tokenizer_encode(w->tok, text, len, w->o->bos, &ids, &n, &err) == 0) out = ids_to_json(ids, n, out_len);
  else *err_msg = strdup(err.msg);
  atomic_fetch_add(&w->n_bytes, len);
  atomic_fetch_add(&w->n_tokens, n);
  free(ids);
  arena_free(&a);
  return out;
}

// A line of ids: a JSON array of integers in [0, 2^31). Anything else is named with its place.
static int32_t *parse_ids(const char *line, size_t len, size_t *n, char **err_msg) {
  arena a = {0};
  json_parser P = {0};
  const json_value *arr = json_parse(&P, &a, line, len);
  char buf[200];
  int32_t *ids = NULL;
  if (!arr) {
    snprintf(buf, sizeof buf, "bad JSON at column %zu: %s", P.err_off + 1, P.why);
  } else if (arr->type != JSON_ARR) {
    snprintf(buf, sizeof buf, "not a JSON array of ids (%s)", json_type_name(arr));
  } else if ((ids = malloc((arr->n + 1) * sizeof *ids))) {
    *n = 0;
    for (const json_value *e = arr->child; e; e = e->next, (*n)++) {
      if (e->type == JSON_NUM && e->is_int && e->i >= 0 && e->i <= INT32_MAX) {
        ids[*n] = (int32_t)e->i;
        continue;
      }
      // Scalars are shown as written ("1.5", "true", "4294967667"), the rest by their kind.
      int scalar = e->type == JSON_NUM || e->type == JSON_BOOL || e->type == JSON_NULL;
      size_t lit = scalar ? strcspn(line + e->off, ",] \t\r\n") : 0;
      snprintf(buf, sizeof buf, "item %zu (column %zu): %.*s%s is not a token id (an integer from 0 to %d)", *n + 1,
               e->off + 1, (int)(lit > 40 ? 40 : lit), line + e->off, scalar ? "" : json_type_name(e), INT32_MAX);
      free(ids);
      ids = NULL;
      break;
    }
  } else {
    snprintf(buf, sizeof buf, "out of memory");
  }
  arena_free(&a);
  if (!ids) *err_msg = strdup(buf);
  return ids;
}

// The text of a line of ids, NULs included: a line of its own, or {"FIELD": text} with --jsonl.
static char *decode_line(work *w, const char *line, size_t len, size_t *out_len, char **err_msg) {
  size_t n = 0, n_text = 0;
  int32_t *ids = parse_ids(line, len, &n, err_msg);
  if (!ids) return NULL;
  pith_err err = {{0}};
  char *text = tokenizer_decode_n(w->tok, ids, n, w->o->skip_special, &n_text, &err);
  free(ids);
  if (!text) {
    *err_msg = strdup(err.msg);
    return NULL;
  }
  atomic_fetch_add(&w->n_tokens, n);
  atomic_fetch_add(&w->n_bytes, n_text);
  strbuf out = STRBUF_INIT;
  if (w->o->jsonl) {
    strbuf_adds(&out, "{");
    strbuf_add_json(&out, w->o->field, strlen(w->o->field));
    strbuf_adds(&out, ": ");
    strbuf_add_json(&out, text, n_text);
    strbuf_adds(&out, "}");
  } else {
    strbuf_add(&out, text, n_text);
  }
  strbuf_addc(&out, '\n');
  free(text);
  char *s = strbuf_take(&out, out_len);
  if (!s) *err_msg = strdup("out of memory");
  return s;
}

static void *worker_main(void *arg) {
  work *w = arg;
  batch *b = w->b;
  for (size_t i; (i = atomic_fetch_add(&w->next, 1)) < b->n;) {
    char *msg = NULL;
    b->out[i] = (w->o->decode ? decode_line : encode_line)(w, b->in[i], b->in_len[i], &b->out_len[i], &msg);
    b->errs[i] = b->out[i] ? NULL : msg ? msg : strdup("out of memory");
  }
  return NULL;
}

// Encode (or decode) a batch with the threads; 0, or -1 after printing the first line's error.
static int run_batch(work *w, size_t first_line, const char *input) {
  pthread_t th[MAX_THREADS];
  int n_threads = w->o->threads < (int)w->b->n ? w->o->threads : (int)w->b->n, started = 0;
  atomic_store(&w->next, 0);
  for (int i = 1; i < n_threads; i++) started += pthread_create(&th[started], NULL, worker_main, w) == 0;
  worker_main(w);
  for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
  for (size_t i = 0; i < w->b->n; i++) {
    if (!w->b->errs[i]) continue;
    fprintf(stderr, "pith tokenize: %s:%zu: %s\n", input, first_line + i + 1, w->b->errs[i]);
    return -1;
  }
  return 0;
}

static void batch_clear(batch *b) {
  for (size_t i = 0; i < b->n; i++) {
    free(b->in[i]), free(b->out[i]), free(b->errs[i]);
    b->in[i] = b->out[i] = b->errs[i] = NULL;
  }
  b->n = b->n_bytes = 0;
}

// Read lines in batches, process each batch in parallel, write the results in order.
static int process(FILE *in, work *w, const char *input, double *busy_s, size_t *n_docs) {
  batch *b = w->b;
  char *line = NULL;
  size_t cap = 0, line_no = 0;
  ssize_t got = 0;
  int rc = 0;
  while (!rc && got >= 0) {
    while (b->n < BATCH_LINES && b->n_bytes < BATCH_BYTES && (got = getline(&line, &cap, in)) >= 0) {
      if (got > 0 && line[got - 1] == '\n') line[--got] = 0;
      if (!(b->in[b->n] = malloc((size_t)got + 1))) { rc = -1; break; }
      memcpy(b->in[b->n], line, (size_t)got + 1);
      b->in_len[b->n++] = (size_t)got;
      b->n_bytes += (size_t)got;
    }
    if (!b->n) break;
    double t0 = pith_now_s();
    rc = rc ? rc : run_batch(w, line_no, input);
    *busy_s += pith_now_s() - t0;
    for (size_t i = 0; !rc && i < b->n; i++) fwrite(b->out[i], 1, b->out_len[i], stdout);
    line_no += b->n;
    batch_clear(b);
  }
  *n_docs = line_no;
  free(line);
  return rc;
}

int cmd_tokenize(int argc, char **argv) {
  tokenize_opts o;
  int code;
  if (parse_args(argc, argv, &o, &code)) return code;
  double t0 = pith_now_s();
  pith_err err = {{0}};
  tokenizer *tok = tokenizer_load(o.tokenizer, &err);
  if (!tok) {
    fprintf(stderr, "pith tokenize: %s\n", err.msg);
    return 1;
  }
  double load_s = pith_now_s() - t0;
  FILE *in = strcmp(o.input, "-") ? fopen(o.input, "rb") : stdin;
  if (!in) {
    fprintf(stderr, "pith tokenize: %s: cannot open\n", o.input);
    tokenizer_free(tok);
    return 1;
  }
  static char *in_lines[BATCH_LINES], *out_lines[BATCH_LINES], *errs[BATCH_LINES];
  static size_t in_lens[BATCH_LINES], out_lens[BATCH_LINES];
  batch b = {in_lines, in_lens, out_lines, out_lens, errs, 0, 0, 0};
  work w = {.tok = tok, .o = &o, .b = &b};
  double busy_s = 0;
  size_t n_docs = 0;
  int rc = process(in, &w, o.input, &busy_s, &n_docs);
  batch_clear(&b);
  if (in != stdin) fclose(in);
  if (fflush(stdout) != 0) rc = -1;
  if (o.stats) {
    double mb = (double)atomic_load(&w.n_bytes) / 1e6;
    fprintf(stderr, "pith tokenize: %zu documents, %.3f MB of text, %zu tokens, %d threads: %.2f s %s "
                    "(%.2f MB/s), load %.2f s\n", n_docs, mb, (size_t)atomic_load(&w.n_tokens), o.threads, busy_s,
            o.decode ? "decoding" : "encoding",
            busy_s > 0 ? mb / busy_s : 0.0, load_s);
  }
  tokenizer_free(tok);
  return rc ? 1 : 0;
}
