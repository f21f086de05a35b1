// pith data: corpus files. Subcommands live in the DATA_COMMANDS table below, one function each:
//   info    describe a corpus file (kind, counts, splits, token-length histograms, attributes)
//   ingest  source files (arXiv JSONL, text, SQuAD, MRQA, simple QA JSONL) to a corpus (data/ingest.h)
//   synth   the demo's synthetic facts world: JSONL, its tokenizer, and corpora (data/synth.h)
//   generate  training data written by a causal LM: --task qa (train/data_generate.c)
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "corpus.h"
#include "ingest.h"
#include "synth.h"

typedef struct {
  const char *name;
  int (*run)(int argc, char **argv);   // argv[0] is the subcommand's name
  const char *summary;
} data_command;

static int data_info(int argc, char **argv);
static int data_ingest(int argc, char **argv);
static int data_synth(int argc, char **argv);

static const data_command DATA_COMMANDS[] = {
  {"info", data_info, "describe a corpus file: kind, counts, splits, token lengths, attributes"},
  {"ingest", data_ingest, "tokenize source files (arxiv, text, squad, mrqa, qa) into a corpus file, on all cores"},
  {"synth", data_synth, "generate the demo's synthetic facts world: JSONL, a tokenizer, corpus files"},
  {"generate", data_generate, "training data written by an LM: --task qa (extractive QA pairs about abstracts)"},
};
static const int N_DATA_COMMANDS = (int)(sizeof DATA_COMMANDS / sizeof DATA_COMMANDS[0]);

static void data_usage(FILE *out) {
  fprintf(out, "usage: pith data SUBCOMMAND [ARGS...]\n\nsubcommands:\n");
  for (int i = 0; i < N_DATA_COMMANDS; i++)
    fprintf(out, "  %-9s %s\n", DATA_COMMANDS[i].name, DATA_COMMANDS[i].summary);
  fprintf(out, "\n'pith data SUBCOMMAND --help' tells more about each.\n");
}

int cmd_data(int argc, char **argv) {
  if (argc < 2) {
    data_usage(stderr);
    return 2;
  }
  if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
    data_usage(stdout);
    return 0;
  }
  for (int i = 0; i < N_DATA_COMMANDS; i++)
    if (!strcmp(argv[1], DATA_COMMANDS[i].name)) return DATA_COMMANDS[i].run(argc - 1, argv + 1);
  fprintf(stderr, "pith data: unknown subcommand '%s'\n", argv[1]);
  data_usage(stderr);
  return 2;
}

// ---------------------------------------------------------------------------------------------
// info

// Token-length histogram: bucket b holds lengths in [EDGES[b], EDGES[b + 1]).
static const int64_t EDGES[] = {0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, INT64_MAX};
#define N_BUCKETS ((int)(sizeof EDGES / sizeof EDGES[0]) - 1)

typedef struct {
  int64_t count[N_BUCKETS];
  int64_t rows, total, min, max;
} length_stats;

static void stats_add(length_stats *s, int64_t len) {
  int b = 0;
  while (b + 1 < N_BUCKETS && len >= EDGES[b + 1]) b++;
  s->count[b]++;
  if (s->rows == 0 || len < s->min) s->min = len;
  if (s->rows == 0 || len > s->max) s->max = len;
  s->rows++;
  s->total += len;
}

// Read the token lengths of a column in blocks (never the whole file at once).
static int column_stats(corpus *c, corpus_col col, length_stats *s, pith_err *err) {
  int64_t rows = corpus_n_rows(c, col), block = 1 << 16;
  memset(s, 0, sizeof *s);
  int64_t *lens = malloc(sizeof *lens * (size_t)block);
  if (!lens) return pith_fail(err, "out of memory");
  for (int64_t at = 0; at < rows; at += block) {
    int64_t n = rows - at < block ? rows - at : block;
    if (corpus_read_lengths(c, col, at, n, lens, err) < 0) {
      free(lens);
      return -1;
    }
    for (int64_t i = 0; i < n; i++) stats_add(s, lens[i]);
  }
  free(lens);
  return 0;
}

static int split_counts(corpus *c, int64_t counts[3], pith_err *err) {
  int64_t n = corpus_get_info(c)->n_records, block = 1 << 16;
  uint8_t *splits = malloc((size_t)block);
  if (!splits) return pith_fail(err, "out of memory");
  counts[0] = counts[1] = counts[2] = 0;
  for (int64_t at = 0; at < n; at += block) {
    int64_t k = n - at < block ? n - at : block;
    if (corpus_read_splits(c, at, k, splits, err) < 0) {
      free(splits);
      return -1;
    }
    for (int64_t i = 0; i < k; i++) counts[splits[i] < 3 ? splits[i] : 0]++;
  }
  free(splits);
  return 0;
}

static void print_histogram(const char *what, const length_stats *s) {
  printf("\ntoken lengths, %s (%lld rows, mean %.1f, min %lld, max %lld):\n", what, (long long)s->rows,
         s->rows ? (double)s->total / (double)s->rows : 0.0, (long long)s->min, (long long)s->max);
  int first = 0, last = N_BUCKETS - 1;
  while (first < last && s->count[first] == 0) first++;
  while (last > first && s->count[last] == 0) last--;
  int64_t top = 1;
  for (int b = first; b <= last; b++) top = s->count[b] > top ? s->count[b] : top;
  for (int b = first; b <= last; b++) {
    char range[40];
    if (EDGES[b + 1] == INT64_MAX) snprintf(range, sizeof range, ">= %lld", (long long)EDGES[b]);
    else if (EDGES[b + 1] - EDGES[b] == 1) snprintf(range, sizeof range, "%lld", (long long)EDGES[b]);
    else snprintf(range, sizeof range, "%lld-%lld", (long long)EDGES[b], (long long)EDGES[b + 1] - 1);
    int bar = (int)((s->count[b] * 40 + top - 1) / top);
    printf("  %-12s %10lld  %.*s\n", range, (long long)s->count[b], bar, "########################################");
  }
}

static void print_attributes(const char *path, const corpus_info *in, const int64_t split[3]) {
  struct stat st;
  double size = stat(path, &st) == 0 ? (double)st.st_size : -1;
  int64_t n = in->n_records;
  printf("%s\n", path);
  printf("  schema       %s version %d\n", CORPUS_SCHEMA, in->schema_version);
  printf("  kind         %s\n", corpus_kind_name(in->kind));
  printf("  records      %lld  (train %lld, val %lld, test %lld)\n", (long long)n, (long long)split[0],
         (long long)split[1], (long long)split[2]);
  if (in->kind == CORPUS_QA) printf("  answers      %lld\n", (long long)in->n_answers);
  printf("  tokens       %lld%s\n", (long long)in->n_tokens, in->kind == CORPUS_QA ? " (contexts)" : "");
  printf("  vocab_size   %lld\n", (long long)in->vocab_size);
  printf("  tokenizer    %s\n", in->tokenizer_sha256);
  printf("  splits       val %g, test %g of the ids (by sha256(id))\n", in->val_fraction, in->test_fraction);
  printf("  command      %s\n", in->command[0] ? in->command : "(none recorded)");
  printf("  sources      %d\n", in->n_sources);
  for (int i = 0; i < in->n_sources; i++) printf("    %s  %s\n", in->source_sha256[i], in->source_paths[i]);
  if (size >= 0) {
    const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    for (; size >= 1024 && u < 4; u++) size /= 1024;
    printf("  file size    %.1f %s\n", size, unit[u]);
  }
  if (split[0] != in->n_split[0] || split[1] != in->n_split[1] || split[2] != in->n_split[2])
    printf("  WARNING      the n_train/n_val/n_test attributes (%lld/%lld/%lld) disagree with the split dataset\n",
           (long long)in->n_split[0], (long long)in->n_split[1], (long long)in->n_split[2]);
}

static int info_one(const char *path) {
  pith_err err = {{0}};
  corpus *c = corpus_open(path, &err);
  if (!c) {
    fprintf(stderr, "pith data info: %s\n", err.msg);
    return 1;
  }
  const corpus_info *in = corpus_get_info(c);
  int64_t split[3] = {0};
  int ok = split_counts(c, split, &err) == 0;
  if (ok) print_attributes(path, in, split);
  static const struct { corpus_col col; const char *name; } COLS[] = {
    {CORPUS_COL_DOC, "documents"}, {CORPUS_COL_CONTEXT, "contexts"},
    {CORPUS_COL_QUESTION, "questions"}, {CORPUS_COL_ANSWER, "answers"},
  };
  for (size_t i = 0; ok && i < sizeof COLS / sizeof COLS[0]; i++) {
    length_stats s;
    if (corpus_n_rows(c, COLS[i].col) < 0) continue;
    ok = column_stats(c, COLS[i].col, &s, &err) == 0;
    if (ok) print_histogram(COLS[i].name, &s);
  }
  corpus_close(c);
  if (!ok) fprintf(stderr, "pith data info: %s\n", err.msg);
  return ok ? 0 : 1;
}

static int data_info(int argc, char **argv) {
  const char **files = calloc((size_t)argc, sizeof *files);
  if (!files) return 1;
  int n_files = 0, code;
  const cli_spec spec = {
      "pith data info", .usage_on_error = 1,
      .about = "Describe pith corpus files: schema, kind, record and split counts, token-length\n"
               "histograms, and the attributes that say what made them (tokenizer, sources, command).\n",
      .args = "FILE.h5 [FILE.h5 ...]", .min_args = 1, .max_args = -1, .arg_out = files, .n_args = &n_files};
  if (cli_command(&spec, argc, argv, &code)) {
    free(files);
    return code;
  }
  int rc = 0;
  for (int i = 0; i < n_files; i++) {
    if (i > 0) printf("\n");
    if (info_one(files[i]) != 0) rc = 1;
  }
  free(files);
  return rc;
}

// ---------------------------------------------------------------------------------------------
// ingest

// The command line, shell-quoted where needed, as recorded in the file.
static void join_command(int argc, char **argv, const char *prefix, char *out, size_t size) {
  size_t n = (size_t)snprintf(out, size, "%s", prefix);
  for (int i = 0; i < argc && n < size; i++) {
    const char *a = argv[i];
    int plain = a[0] != 0;
    for (const char *p = a; *p && plain; p++)
      plain = strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%", *p) != NULL;
    if (plain) {
      n += (size_t)snprintf(out + n, size - n, " %s", a);
      continue;
    }
    n += (size_t)snprintf(out + n, size - n, " '");
    for (const char *p = a; *p && n < size; p++)
      n += (size_t)(*p == '\'' ? snprintf(out + n, size - n, "'\\''") : snprintf(out + n, size - n, "%c", *p));
    if (n < size) n += (size_t)snprintf(out + n, size - n, "'");
  }
}

// 1234567 -> "1,234,567"
static const char *commas(int64_t v, char buf[32]) {
  char digits[24];
  int n = snprintf(digits, sizeof digits, "%lld", (long long)(v < 0 ? -v : v)), k = 0;
  if (v < 0) buf[k++] = '-';
  for (int i = 0; i < n; i++) {
    buf[k++] = digits[i];
    if ((n - i - 1) % 3 == 0 && i < n - 1) buf[k++] = ',';
  }
  buf[k] = 0;
  return buf;
}

typedef struct {
  const char *what;     // "pith data ingest"
  int tty;
  double last_line;     // plain mode: when the last line was printed
  int printed;          // tty mode: a progress line is on screen
} progress_state;

static void on_progress(const ingest_progress *p, void *ctx) {
  progress_state *ps = ctx;
  double mb = (double)p->bytes / 1e6, s = p->seconds > 1e-9 ? p->seconds : 1e-9;
  char r[32], t[32];
  if (ps->tty) {
    if (p->done) {
      if (ps->printed) fprintf(stderr, "\r\033[K");
      ps->printed = 0;
      return;
    }
    double frac = p->bytes_total > 0 ? (double)p->bytes / (double)p->bytes_total : 0;
    double eta = frac > 0.01 ? p->seconds * (1 - frac) / frac : -1;
    fprintf(stderr, "\r\033[K%s: %s records  %.1f/%.1f MB (%.0f%%)  %.1f MB/s  %s tokens/s", ps->what,
            commas(p->records, r), mb, (double)p->bytes_total / 1e6, 100 * frac, mb / s,
            commas((int64_t)((double)p->tokens / s), t));
    if (eta >= 0) fprintf(stderr, "  ETA %.0fs", eta);
    ps->printed = 1;
  } else if (!p->done && p->seconds - ps->last_line >= 10) {
    ps->last_line = p->seconds;
    fprintf(stderr, "%s: %s records, %.1f of %.1f MB, %.1f MB/s, %s tokens/s\n", ps->what, commas(p->records, r), mb,
            (double)p->bytes_total / 1e6, mb / s, commas((int64_t)((double)p->tokens / s), t));
  }
  fflush(stderr);
}

static void print_issues(const char *what, const ingest_report *rep) {
  for (int k = 0; k < INGEST_N_ISSUES; k++) {
    const ingest_issue *is = &rep->issues[k];
    if (is->count == 0) continue;
    char c[32];
    fprintf(stderr, "%s: %s %s:\n", what, commas(is->count, c), ingest_issue_name((ingest_issue_kind)k));
    for (int i = 0; i < is->n_samples; i++) fprintf(stderr, "    %s\n", is->samples[i]);
    if (is->count > is->n_samples) fprintf(stderr, "    ... and %s more\n", commas(is->count - is->n_samples, c));
  }
}

static void print_summary(const char *what, const char *out, ingest_format fmt, int n_inputs, const ingest_report *rep) {
  char a[32], b[32], c[32], d[32], e[32];
  int qa = ingest_format_kind(fmt) == CORPUS_QA;
  printf("%s: wrote %s: %s %s (train %s, val %s, test %s)", what, out, commas(rep->records, a),
         qa ? "QA examples" : "documents", commas(rep->split[0], b), commas(rep->split[1], c), commas(rep->split[2], d));
  if (qa) printf(", %s answers", commas(rep->answers, e));
  printf(", %s tokens\n", commas(rep->tokens, a));
  double s = rep->seconds > 1e-9 ? rep->seconds : 1e-9;
  printf("%s: read %.2f MB from %d file%s in %.2f s with %d thread%s: %.2f MB/s of input; encoded %s bytes of text "
         "(%.2f MB/s), %s tokens (%s tokens/s)\n", what, (double)rep->input_bytes / 1e6, n_inputs, n_inputs == 1 ? "" : "s",
         rep->seconds, rep->threads, rep->threads == 1 ? "" : "s", (double)rep->input_bytes / 1e6 / s,
         commas(rep->encoded_bytes, a), (double)rep->encoded_bytes / 1e6 / s, commas(rep->encoded_tokens, b),
         commas((int64_t)((double)rep->encoded_tokens / s), c));
}

static int default_threads(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n < 1 ? 1 : n > INGEST_MAX_THREADS ? INGEST_MAX_THREADS : (int)n;
}

// Run one ingest with progress and reports; 0 ok, 1 failure (printed). An existing output is
// replaced only with force (and only by a complete new file).
static int run_ingest(const char *what, ingest_config *cfg, const char *const *inputs, int n_inputs, int quiet,
                      int force) {
  int existed = access(cfg->out_path, F_OK) == 0;
  if (existed && !force) {
    fprintf(stderr, "%s: %s exists; nothing written (--force replaces it)\n", what, cfg->out_path);
    return 1;
  }
  progress_state ps = {what, isatty(fileno(stderr)), 0, 0};
  if (!quiet) cfg->progress = on_progress, cfg->progress_ctx = &ps;
  ingest_report rep;
  pith_err err = {{0}};
  int rc = ingest_run(cfg, inputs, n_inputs, &rep, &err);
  print_issues(what, &rep);
  if (rc < 0) {
    fprintf(stderr, "%s: %s\n", what, err.msg);
    if (rep.hint[0]) fprintf(stderr, "HINT: %s\n", rep.hint);
    fprintf(stderr, "%s: nothing written (%s %s)\n", what, cfg->out_path,
            existed ? "is as it was" : "does not exist");
    return 1;
  }
  print_summary(what, cfg->out_path, cfg->format, n_inputs, &rep);
  return 0;
}

static const char INGEST_ABOUT[] =
    "Tokenize source files into a pith corpus file (data/README.md), on all cores. Records keep their\n"
    "input order whatever the number of threads, so the file is the same; it is written as FILE.h5.partial\n"
    "and renamed only when complete: a failed or interrupted ingest leaves no FILE.h5, and an existing\n"
    "FILE.h5 is replaced only with --force, and only by a complete new file.\n\n"
    "formats:\n"
    "  arxiv   documents: arXiv metadata snapshot JSONL; id from \"id\" (BASENAME:LINE when it is missing or\n"
    "          null; reported); text = \"abstract\" with each run of ASCII whitespace made one space and\n"
    "          the ends trimmed\n"
    "          (Python: re.sub(r\"[ \\t\\n\\v\\f\\r]+\", \" \", s).strip(\" \"))\n"
    "  text    documents: plain UTF-8 text, a document per line or per blank-line-separated block\n"
    "          (--text-mode); id \"BASENAME:LINE\"; text verbatim (line terminators removed)\n"
    "  squad   qa: SQuAD v1.1 JSON (v2 questions without answers are kept with none); id = question id\n"
    "  mrqa    qa: MRQA JSONL (header line, then {context, qas: [{qid, question, answers,\n"
    "          detected_answers: [{text, char_spans}]}]}); answers: detected ones first, then the others\n"
    "  qa      qa: JSONL {id?, context, question, answer | answers, answer_start?}; answers may be strings or\n"
    "          {text, answer_start}; id defaults to BASENAME:LINE\n"
    "  QA texts are stored verbatim; answer offsets count code points (Python str indexes).\n\n"
    "options:\n";

static const char INGEST_EPILOG[] =
    "\nChecks: a malformed record (bad JSON, a missing field or one of the wrong type, invalid UTF-8, a NUL,\n"
    "an empty id/context/question/answer, a line over the size limit, an empty file) stops the ingest with\n"
    "FILE:LINE and the reason, and nothing is written; with --skip-bad it is skipped, and the count and the\n"
    "first locations are reported. Reported and not errors: empty documents (dropped), answers found away\n"
    "from their offset (moved to the nearest occurrence, kept), answers not in their context (kept with\n"
    "char_start -1), questions without answers (kept), blank JSONL lines (ignored), arxiv records without\n"
    "an id (kept as BASENAME:LINE).\n";

static int data_ingest(int argc, char **argv) {
  const char *tok_path = NULL, *format = NULL, *out = NULL;
  ingest_config cfg = {.threads = default_threads(), .val_fraction = 0.01, .test_fraction = 0.01};
  double max_mb = 8;
  int quiet = 0, n_inputs = 0, blocks = 0, force = 0;
  const char **inputs = calloc((size_t)argc, sizeof *inputs);
  if (!inputs) return 1;
  const cli_opt opts[] = {
      {"--tokenizer", CLI_STR, &tok_path, .metavar = "PATH", .flags = CLI_REQUIRED,
       .help = "tokenizer.json, a folder holding one, or a llama2.c tokenizer.bin"},
      {"--format", CLI_STR, &format, .metavar = "FORMAT", .flags = CLI_REQUIRED,
       .help = "arxiv, text, squad, mrqa or qa (above)"},
      {"--out", CLI_STR, &out, .metavar = "FILE.h5", .flags = CLI_REQUIRED, .help = "the corpus file to write"},
      {"--threads", CLI_INT, &cfg.threads, .metavar = "N", .min = 1, .max = INGEST_MAX_THREADS,
       .help = "worker threads (default: all cores)"},
      {"--skip-bad", CLI_FLAG, &cfg.skip_bad, .help = "skip malformed records (counted and listed) instead of stopping"},
      {"--val-fraction", CLI_DOUBLE, &cfg.val_fraction, .metavar = "F", .min = 0, .max = 1,
       .help = "share of ids in the val split (default 0.01)"},
      {"--test-fraction", CLI_DOUBLE, &cfg.test_fraction, .metavar = "F", .min = 0, .max = 1,
       .help = "share of ids in the test split (default 0.01)"},
      {"--bos", CLI_FLAG, &cfg.add_bos, .help = "prepend the tokenizer's bos to documents and contexts"},
      {"--text-mode", CLI_CHOICE, &blocks, .choices = "lines|blocks",
       .help = "text format: a document per line (default) or per block"},
      {"--max-record-mb", CLI_DOUBLE, &max_mb, .metavar = "M", .min = 0, .max = 1048576, .flags = CLI_MIN_OPEN,
       .help = "a longer line/block is malformed (default 8)"},
      {"--quiet", CLI_FLAG, &quiet, .help = "no progress line"},
      {"--force", CLI_FLAG, &force, .help = "replace FILE.h5 when it exists (only once the new one is complete)"},
  };
  const cli_spec spec = {"pith data ingest", CLI_OPTS(opts), .about = INGEST_ABOUT, .epilog = INGEST_EPILOG,
                         .args = "INPUT...", .min_args = 1, .max_args = -1, .arg_out = inputs, .n_args = &n_inputs};
  int code = -1;  // -1: go on; else what to return
  if (argc < 2) {
    cli_usage(&spec, stderr);
    code = 2;
  } else if (cli_command(&spec, argc, argv, &code) == 0) {
    if (ingest_format_parse(format, &cfg.format) < 0)
      code = cli_usage_error(&spec, "unknown format '%s' (arxiv, text, squad, mrqa, qa)", format);
    else if (cfg.val_fraction + cfg.test_fraction > 1)
      code = cli_usage_error(&spec, "--val-fraction + --test-fraction exceeds 1");
  }
  if (code >= 0) {
    free(inputs);
    return code;
  }
  cfg.text_mode = blocks ? INGEST_TEXT_BLOCKS : INGEST_TEXT_LINES;
  cfg.max_record_bytes = (int64_t)(max_mb * 1024 * 1024);
  char command[8192];
  join_command(argc - 1, argv + 1, "pith data ingest", command, sizeof command);
  cfg.command = command;
  cfg.out_path = out;
  pith_err err = {{0}};
  tokenizer *tok = tokenizer_load(tok_path, &err);
  if (!tok) {
    fprintf(stderr, "pith data ingest: %s\n", err.msg);
    free(inputs);
    return 1;
  }
  cfg.tok = tok;
  int rc = run_ingest("pith data ingest", &cfg, inputs, n_inputs, quiet, force);
  tokenizer_free(tok);
  free(inputs);
  return rc;
}

// ---------------------------------------------------------------------------------------------
// synth

static int data_synth(int argc, char **argv) {
  const char *dir = NULL, *tok_path = NULL;
  int docs = 10000;
  uint64_t seed = 1;
  ingest_config cfg = {.threads = default_threads(), .val_fraction = 0.05, .test_fraction = 0.05};
  int jsonl_only = 0, quiet = 0;
  const cli_opt opts[] = {
      {"--dir", CLI_STR, &dir, .metavar = "DIR", .flags = CLI_REQUIRED, .help = "the folder to write (made if missing)"},
      {"--docs", CLI_INT, &docs, .metavar = "N", .min = 1, .max = 1000000000, .help = "documents (default 10000)"},
      {"--seed", CLI_U64, &seed, .metavar = "S", .help = "the world (default 1)"},
      {"--tokenizer", CLI_STR, &tok_path, .metavar = "PATH",
       .help = "tokenize with this tokenizer instead of writing DIR/tokenizer"},
      {"--threads", CLI_INT, &cfg.threads, .metavar = "N", .min = 1, .max = INGEST_MAX_THREADS,
       .help = "ingest threads (default: all cores)"},
      {"--val-fraction", CLI_DOUBLE, &cfg.val_fraction, .metavar = "F", .min = 0, .max = 1,
       .help = "share of ids in the val split (default 0.05)"},
      {"--test-fraction", CLI_DOUBLE, &cfg.test_fraction, .metavar = "F", .min = 0, .max = 1,
       .help = "share of ids in the test split (default 0.05)"},
      {"--jsonl-only", CLI_FLAG, &jsonl_only, .help = "write the JSONL (and the tokenizer) only"},
      {"--quiet", CLI_FLAG, &quiet, .help = "no progress line"},
  };
  const cli_spec spec = {
      "pith data synth", CLI_OPTS(opts), .usage_on_error = 1,
      .about =
          "Generate the demo's synthetic facts world (data/synth.h): short arXiv-style abstracts about invented\n"
          "methods, each with 4-8 extractive questions whose answers (one-token names and numbers, each kind from\n"
          "its own list) cannot be guessed without the text. Deterministic: the same seed and count give\n"
          "byte-identical JSONL and tokenizer files, and corpus files with identical datasets (only the recorded\n"
          "command line may differ).\n\n"
          "writes into DIR:\n"
          "  docs.jsonl           {id, title, abstract, categories} a document (pith data ingest --format arxiv)\n"
          "  qa.jsonl             {id, qid, kind, context, question, answers: [{text, answer_start}]} a question\n"
          "                       (--format qa); a question's id is its document's, so both share a split\n"
          "  qa_sentence.jsonl    the same questions with only the sentence stating the answer as context,\n"
          "  qa_window.jsonl      and with 1-3 whole sentences around it (the demo's base LM learns to answer\n"
          "                       from these short contexts first)\n"
          "  tokenizer/           the world's own byte-level BPE tokenizer (tokenizer.json, tokenizer_config.json):\n"
          "                       a token per word, per answer value, per name syllable; 2,260 tokens\n"
          "                       (not written when --tokenizer gives another one)\n"
          "  bert_tokenizer/      a cased BERT WordPiece tokenizer of the same words, for token classifiers\n"
          "                       (pith distill method=classifier: LLMLingua-2's scorer); written with tokenizer/\n"
          "  docs.h5, qa.h5, qa_sentence.h5, qa_window.h5\n"
          "                       the four ingested with that tokenizer (unless --jsonl-only)\n\n"
          "options:\n"};
  int code;
  if (cli_command(&spec, argc, argv, &code)) return code;
  if (pith_mkdirs(dir, NULL) < 0) {
    fprintf(stderr, "pith data synth: %s: cannot create: %s\n", dir, strerror(errno));
    return 1;
  }
  char docs_jsonl[4200], qa_jsonl[4200], sentence_jsonl[4200], window_jsonl[4200], tok_dir[4200], tok_json[4300],
      docs_h5[4200], qa_h5[4200], sentence_h5[4200], window_h5[4200];
  snprintf(docs_jsonl, sizeof docs_jsonl, "%s/docs.jsonl", dir);
  snprintf(qa_jsonl, sizeof qa_jsonl, "%s/qa.jsonl", dir);
  snprintf(sentence_jsonl, sizeof sentence_jsonl, "%s/qa_sentence.jsonl", dir);
  snprintf(window_jsonl, sizeof window_jsonl, "%s/qa_window.jsonl", dir);
  snprintf(tok_dir, sizeof tok_dir, "%s/tokenizer", dir);
  snprintf(tok_json, sizeof tok_json, "%s/tokenizer.json", tok_dir);
  snprintf(docs_h5, sizeof docs_h5, "%s/docs.h5", dir);
  snprintf(qa_h5, sizeof qa_h5, "%s/qa.h5", dir);
  snprintf(sentence_h5, sizeof sentence_h5, "%s/qa_sentence.h5", dir);
  snprintf(window_h5, sizeof window_h5, "%s/qa_window.h5", dir);
  pith_err err = {{0}};
  if (synth_write_jsonl(seed, docs, docs_jsonl, qa_jsonl, sentence_jsonl, window_jsonl, &err) < 0) {
    fprintf(stderr, "pith data synth: %s\n", err.msg);
    return 1;
  }
  printf("pith data synth: wrote %s, %s, %s and %s (%d documents, seed %llu)\n", docs_jsonl, qa_jsonl, sentence_jsonl,
         window_jsonl, docs, (unsigned long long)seed);
  if (!tok_path) {
    int vocab = 0;
    if (synth_write_tokenizer(tok_dir, &vocab, &err) < 0) {
      fprintf(stderr, "pith data synth: %s\n", err.msg);
      return 1;
    }
    printf("pith data synth: wrote %s (%d tokens)\n", tok_json, vocab);
    tok_path = tok_json;
    char bert_dir[4200];
    snprintf(bert_dir, sizeof bert_dir, "%s/bert_tokenizer", dir);
    if (synth_write_bert_tokenizer(bert_dir, &vocab, &err) < 0) {
      fprintf(stderr, "pith data synth: %s\n", err.msg);
      return 1;
    }
    printf("pith data synth: wrote %s/tokenizer.json (WordPiece for token classifiers, %d tokens)\n", bert_dir, vocab);
  }
  if (jsonl_only) return 0;
  tokenizer *tok = tokenizer_load(tok_path, &err);
  if (!tok) {
    fprintf(stderr, "pith data synth: %s\n", err.msg);
    return 1;
  }
  char command[8192];
  join_command(argc - 1, argv + 1, "pith data synth", command, sizeof command);
  cfg.tok = tok, cfg.command = command;
  cfg.format = INGEST_ARXIV, cfg.out_path = docs_h5;
  const char *in_docs[] = {docs_jsonl}, *in_qa[] = {qa_jsonl, sentence_jsonl, window_jsonl};
  const char *out_qa[] = {qa_h5, sentence_h5, window_h5};
  // DIR is synth's own: it rewrites its files as it rewrote the JSONL above.
  int rc = run_ingest("pith data synth", &cfg, in_docs, 1, quiet, 1);
  cfg.format = INGEST_QA;
  for (int i = 0; i < 3 && rc == 0; i++) {
    cfg.out_path = out_qa[i];
    rc = run_ingest("pith data synth", &cfg, &in_qa[i], 1, quiet, 1);
  }
  tokenizer_free(tok);
  return rc;
}
