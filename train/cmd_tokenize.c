// pith tokenize: text to token ids (one JSON array a line) and back, with any tokenizer pith
// reads. Input is a document a line (or JSONL with a text field); lines are encoded in batches
// by several threads sharing one tokenizer, and written in input order.
#define _GNU_SOURCE  // getline
#include <cJSON.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "tokenizer.h"

enum { BATCH_LINES = 4096, BATCH_BYTES = 8 << 20, MAX_THREADS = 256 };

typedef struct {
  const char *tokenizer, *input, *field;
  int decode, jsonl, bos, skip_special, threads, stats;
} tokenize_opts;

typedef struct {
  char **in;      // (n) input lines
  char **out;     // (n) output lines, malloc'd, each ending in '\n'
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
               "or a llama2.c tokenizer.bin"},
      {"--decode", CLI_FLAG, &o->decode,
       .help = "read JSON arrays of ids, print the texts (a text with newlines\n"
               "spans lines: add --jsonl to keep one line per text)"},
      {"--jsonl", CLI_FLAG, &o->jsonl,
       .help = "input lines are JSON objects; the text is in --field (default \"text\");\n"
               "with --decode, print {\"FIELD\": text} lines"},
      {"--field", CLI_STR, &o->field, .metavar = "NAME", .help = "the --jsonl field that holds the text (default \"text\")"},
      {"--bos", CLI_FLAG, &o->bos, .help = "prepend the tokenizer's bos id"},
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

// "[1,2,3]\n"
static char *ids_to_json(const int32_t *ids, size_t n) {
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
  return s;
}

static char *encode_line(work *w, const char *line, char **err_msg) {
  cJSON *o = NULL;
  const char *text = line;
  size_t len = strlen(line);
  if (w->o->jsonl) {
    o = cJSON_Parse(line);
    text = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, w->o->field));
    if (!text) {
      cJSON_Delete(o);
      *err_msg = fmt_error("not a JSON object with a string field '%s'", w->o->field);
      return NULL;
    }
    len = strlen(text);
  }
  int32_t *ids = NULL;
  size_t n = 0;
  pith_err err = {{0}};
  char *out = NULL;
  if (tokenizer_encode(w->tok, text, len, w->o->bos, &ids, &n, &err) == 0) out = ids_to_json(ids, n);
  else *err_msg = strdup(err.msg);
  atomic_fetch_add(&w->n_bytes, len);
  atomic_fetch_add(&w->n_tokens, n);
  free(ids);
  cJSON_Delete(o);
  return out;
}

static char *decode_line(work *w, const char *line, char **err_msg) {
  cJSON *arr = cJSON_Parse(line), *e;
  if (!cJSON_IsArray(arr)) {
    cJSON_Delete(arr);
    *err_msg = fmt_error("%s", "not a JSON array of ids");
    return NULL;
  }
  size_t n = (size_t)cJSON_GetArraySize(arr), k = 0;
  int32_t *ids = malloc((n + 1) * sizeof *ids);
  cJSON_ArrayForEach(e, arr) ids[k++] = cJSON_IsNumber(e) && e->valuedouble >= 0 && e->valuedouble < 2147483647.0 ? (int32_t)e->valuedouble : -1;
  cJSON_Delete(arr);
  pith_err err = {{0}};
  char *text = tokenizer_decode(w->tok, ids, n, w->o->skip_special, &err), *out = NULL;
  free(ids);
  if (!text) {
    *err_msg = strdup(err.msg);
    return NULL;
  }
  atomic_fetch_add(&w->n_tokens, n);
  atomic_fetch_add(&w->n_bytes, strlen(text));
  if (w->o->jsonl) {
    cJSON *obj = cJSON_CreateObject();
    cJSON_AddStringToObject(obj, w->o->field, text);
    char *js = cJSON_PrintUnformatted(obj);
    cJSON_Delete(obj);
    free(text);
    text = js;
  }
  if (text && (out = malloc(strlen(text) + 2))) sprintf(out, "%s\n", text);
  free(text);
  return out;
}

static void *worker_main(void *arg) {
  work *w = arg;
  batch *b = w->b;
  for (size_t i; (i = atomic_fetch_add(&w->next, 1)) < b->n;) {
    char *msg = NULL;
    b->out[i] = w->o->decode ? decode_line(w, b->in[i], &msg) : encode_line(w, b->in[i], &msg);
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
      if (!(b->in[b->n++] = strdup(line))) { rc = -1; break; }
      b->n_bytes += (size_t)got;
    }
    if (!b->n) break;
    double t0 = pith_now_s();
    rc = rc ? rc : run_batch(w, line_no, input);
    *busy_s += pith_now_s() - t0;
    for (size_t i = 0; !rc && i < b->n; i++) fputs(b->out[i], stdout);
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
  batch b = {in_lines, out_lines, errs, 0, 0, 0};
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
