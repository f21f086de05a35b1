// pith data: corpus files. Subcommands live in the DATA_COMMANDS table below, one function each:
//   info    describe a corpus file (kind, counts, splits, token-length histograms, attributes)
// Later subcommands (ingest: text/JSONL to a corpus; synth: synthetic corpora) add a row there.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "commands.h"
#include "corpus.h"

typedef struct {
  const char *name;
  int (*run)(int argc, char **argv);   // argv[0] is the subcommand's name
  const char *summary;
} data_command;

static int data_info(int argc, char **argv);

static const data_command DATA_COMMANDS[] = {
  {"info", data_info, "describe a corpus file: kind, counts, splits, token lengths, attributes"},
};
static const int N_DATA_COMMANDS = (int)(sizeof DATA_COMMANDS / sizeof DATA_COMMANDS[0]);

static void data_usage(FILE *out) {
  fprintf(out, "usage: pith data SUBCOMMAND [ARGS...]\n\nsubcommands:\n");
  for (int i = 0; i < N_DATA_COMMANDS; i++)
    fprintf(out, "  %-8s %s\n", DATA_COMMANDS[i].name, DATA_COMMANDS[i].summary);
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
  if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
    FILE *out = argc < 2 ? stderr : stdout;
    fprintf(out, "usage: pith data info FILE.h5 [FILE.h5 ...]\n\n"
                 "Describe pith corpus files: schema, kind, record and split counts, token-length\n"
                 "histograms, and the attributes that say what made them (tokenizer, sources, command).\n");
    return argc < 2 ? 2 : 0;
  }
  int rc = 0;
  for (int i = 1; i < argc; i++) {
    if (i > 1) printf("\n");
    if (info_one(argv[i]) != 0) rc = 1;
  }
  return rc;
}
