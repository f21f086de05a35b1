// test_cli: the option-table parser (data/cli.h): every type, strict numbers, ranges, choices,
// required options, unknown options, missing values, --opt=value, positional arguments, --help,
// and the usage text made from the table.
#define _GNU_SOURCE  // open_memstream
#include <stdarg.h>
#include <stdint.h>
#include <unistd.h>

#include "check.h"
#include "cli.h"

// The options of one imaginary command, reset before each parse.
typedef struct {
  int force, n, k, dtype, mode;
  uint64_t seed;
  double top_p, temp;
  const char *model, *out;
  const char *args[4];
  int n_args;
} vals;

static vals v;

static const cli_opt OPTS[] = {
    {"--model", CLI_STR, &v.model, .metavar = "DIR", .help = "model folder", .flags = CLI_REQUIRED},
    {"--out", CLI_STR, &v.out, .metavar = "DIR", .help = "output folder"},
    {"--force", CLI_FLAG, &v.force, .help = "replace DIR"},
    {"--max-new-tokens", CLI_INT, &v.n, .metavar = "N", .min = 1, .max = CLI_INF,
     .help = "at most N new tokens (default 256)"},
    {"--k", CLI_INT, &v.k, .metavar = "N", .min = 1, .max = 64, .help = "compress tokens, 1..64"},
    {"--seed", CLI_U64, &v.seed, .help = "seed of the sampler\n(the same seed, the same text)"},
    {"--top-p", CLI_DOUBLE, &v.top_p, .metavar = "P", .min = 0, .max = 1, .flags = CLI_MIN_OPEN, .help = "nucleus mass"},
    {"--temperature", CLI_DOUBLE, &v.temp, .metavar = "T", .min = 0, .max = CLI_INF, .help = "0 = greedy"},
    {"--dtype", CLI_CHOICE, &v.dtype, .help = "weights", .choices = "f32,float32|bf16,bfloat16"},
    {"--mode", CLI_CHOICE, &v.mode, .metavar = "M", .help = "how", .choices = "a|b|c"},
};

static cli_spec spec(int min_args, int max_args) {
  return (cli_spec){"pith thing", .about = "Does a thing.\n\n", CLI_OPTS(OPTS), .args = "[FILE...]",
                    .min_args = min_args, .max_args = max_args, .arg_out = v.args, .n_args = &v.n_args};
}

// Parse "pith thing" + the NULL-terminated arguments; the message (or "") in msg.
static pith_err last;
static int parse_in(const cli_spec *s, const char *first, ...) {
  char *argv[32] = {"thing"};
  int argc = 1;
  va_list ap;
  va_start(ap, first);
  for (const char *a = first; a && argc < 31; a = va_arg(ap, const char *)) argv[argc++] = (char *)a;
  va_end(ap);
  v = (vals){.n = 256, .k = 16, .top_p = 1, .seed = 7};
  last.msg[0] = 0;
  return cli_parse(s, argc, argv, &last);
}

#define PARSE(...) parse_in(&s, __VA_ARGS__, (const char *)NULL)
#define HAS(needle) (strstr(last.msg, needle) != NULL)

static int starts(const char *s, const char *prefix) { return !strncmp(s, prefix, strlen(prefix)); }

// The usage text as a string (malloc'd).
static char *usage_text(const cli_spec *s) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  cli_usage(s, f);
  fclose(f);
  return buf;
}

// The column where help (up to its first newline) begins on the line of the option name; -1 when
// that line does not hold it.
static int help_column(const char *usage, const char *name, const char *help) {
  char needle[64], first[128];
  snprintf(needle, sizeof needle, "\n  %s ", name);
  snprintf(first, sizeof first, "%.*s", (int)strcspn(help, "\n"), help);
  const char *line = strstr(usage, needle);
  if (!line) return -1;
  line++;
  const char *at = strstr(line, first), *eol = strchr(line, '\n');
  return at && at < eol ? (int)(at - line) : -1;
}

static void test_types(void) {
  cli_spec s = spec(0, 0);
  CHECK(PARSE("--model", "m", "--out", "o", "--force", "--max-new-tokens", "12", "--k", "64", "--seed",
              "18446744073709551615", "--top-p", "0.5", "--temperature", "1e-1", "--dtype", "bf16", "--mode", "c") == 0);
  CHECK(!strcmp(v.model, "m") && !strcmp(v.out, "o") && v.force == 1);
  CHECK(v.n == 12 && v.k == 64 && v.seed == UINT64_MAX);
  CHECK(v.top_p == 0.5 && v.temp == 0.1 && v.dtype == 1 && v.mode == 2);
  // Defaults stay when an option is absent; a flag is 0 until given.
  CHECK(PARSE("--model", "m") == 0);
  CHECK(v.n == 256 && v.k == 16 && v.seed == 7 && v.top_p == 1 && v.force == 0 && v.out == NULL && v.dtype == 0);
  // Aliases of a choice give its index.
  CHECK(PARSE("--model", "m", "--dtype", "bfloat16") == 0 && v.dtype == 1);
  CHECK(PARSE("--model", "m", "--dtype", "float32") == 0 && v.dtype == 0);
  // --opt=value, and a value may begin with '-'; the last of a repeated option wins.
  CHECK(PARSE("--model=m=1", "--k=3", "--out", "-x", "--k", "5", "--top-p=1") == 0);
  CHECK(!strcmp(v.model, "m=1") && !strcmp(v.out, "-x") && v.k == 5 && v.top_p == 1);
  CHECK(PARSE("--model", "", "--out=") == 0 && !strcmp(v.model, "") && !strcmp(v.out, ""));
  CHECK(PARSE("--model", "m", "--temperature", "-0") == 0 && v.temp == 0);
  CHECK(PARSE("--model", "m", "--max-new-tokens", "+7") == 0 && v.n == 7);
  CHECK(PARSE("--model", "m", "--max-new-tokens", "2147483647") == 0 && v.n == 2147483647);
}

static void test_bad_values(void) {
  cli_spec s = spec(0, 0);
  CHECK(PARSE("--model", "m", "--k", "0") == -1);
  CHECK_MSG(!strcmp(last.msg, "--k must be an integer in 1..64 (got '0')"), "%s", last.msg);
  CHECK(PARSE("--model", "m", "--k", "65") == -1 && HAS("1..64") && HAS("'65'"));
  CHECK(PARSE("--model", "m", "--max-new-tokens", "0") == -1);
  CHECK_MSG(!strcmp(last.msg, "--max-new-tokens must be an integer >= 1 (got '0')"), "%s", last.msg);
  CHECK(PARSE("--model", "m", "--top-p", "0") == -1);
  CHECK_MSG(!strcmp(last.msg, "--top-p must be a number in (0, 1] (got '0')"), "%s", last.msg);
  CHECK(PARSE("--model", "m", "--top-p", "1.5") == -1 && HAS("(0, 1]"));
  CHECK(PARSE("--model", "m", "--top-p", "x") == -1 && HAS("(got 'x')"));
  CHECK(PARSE("--model", "m", "--temperature", "-1") == -1);
  CHECK_MSG(!strcmp(last.msg, "--temperature must be a number >= 0 (got '-1')"), "%s", last.msg);
  CHECK(PARSE("--model", "m", "--dtype", "f64") == -1);
  CHECK_MSG(!strcmp(last.msg, "--dtype must be f32 or bf16 (got 'f64')"), "%s", last.msg);
  CHECK(PARSE("--model", "m", "--mode", "d") == -1);
  CHECK_MSG(!strcmp(last.msg, "--mode must be one of a, b, c (got 'd')"), "%s", last.msg);
  CHECK(PARSE("--model", "m", "--seed", "-1") == -1);
  CHECK_MSG(!strcmp(last.msg, "--seed must be a non-negative integer (got '-1')"), "%s", last.msg);

  // Numbers are read whole and strictly: no trailing text, no blanks, no overflow, finite.
  const char *bad_ints[] = {"", "12x", " 5", "5 ", "1e3", "0x10", "2147483648", "-", "1.0", "99999999999999999999"};
  for (size_t i = 0; i < sizeof bad_ints / sizeof bad_ints[0]; i++) {
    int rc = PARSE("--model", "m", "--max-new-tokens", bad_ints[i]);
    CHECK_MSG(rc == -1 && v.n == 256 && HAS("--max-new-tokens must be"), "'%s': rc %d n %d: %s", bad_ints[i], rc, v.n,
              last.msg);
  }
  const char *bad_u64[] = {"", "+-1", "18446744073709551616", "1.5", "7 ", "0x1"};
  for (size_t i = 0; i < sizeof bad_u64 / sizeof bad_u64[0]; i++)
    CHECK_MSG(PARSE("--model", "m", "--seed", bad_u64[i]) == -1 && v.seed == 7, "'%s'", bad_u64[i]);
  const char *bad_doubles[] = {"", "nan", "inf", "-inf", "1e999", "0.5x", " 0.5", "0x1p-1", ".", "e5"};
  for (size_t i = 0; i < sizeof bad_doubles / sizeof bad_doubles[0]; i++)
    CHECK_MSG(PARSE("--model", "m", "--top-p", bad_doubles[i]) == -1 && v.top_p == 1, "'%s'", bad_doubles[i]);
  CHECK(PARSE("--model", "m", "--top-p", ".25") == 0 && v.top_p == 0.25);
  CHECK(PARSE("--model", "m", "--top-p", "1e-400") == -1);  // underflows to 0, outside (0, 1]
  CHECK(PARSE("--model", "m", "--temperature", "1e-400") == 0 && v.temp >= 0 && v.temp < 1e-300);
}

static void test_option_errors(void) {
  cli_spec s = spec(0, 0);
  CHECK(PARSE("--model", "m", "--bogus") == -1);
  CHECK_MSG(!strcmp(last.msg, "unknown option '--bogus'"), "%s", last.msg);
  CHECK(PARSE("--model", "m", "--bogus=3") == -1 && !strcmp(last.msg, "unknown option '--bogus'"));
  CHECK(PARSE("--model", "m", "-x") == -1 && !strcmp(last.msg, "unknown option '-x'"));
  CHECK(PARSE("--model", "m", "--temp", "1") == -1);  // no abbreviations, but a hint
  CHECK_MSG(!strcmp(last.msg, "unknown option '--temp' (did you mean --temperature?)"), "%s", last.msg);
  CHECK(PARSE("--model", "m", "--m", "1") == -1 && !HAS("did you mean"));  // --model, --max-new-tokens, --mode
  CHECK(PARSE("--model", "m", "--out") == -1);
  CHECK_MSG(!strcmp(last.msg, "--out needs a value"), "%s", last.msg);
  CHECK(PARSE("--model") == -1 && !strcmp(last.msg, "--model needs a value"));
  CHECK(PARSE("--model", "m", "--force=1") == -1 && HAS("--force takes no value"));
  CHECK(PARSE("--out", "o") == -1);
  CHECK_MSG(!strcmp(last.msg, "--model DIR is required"), "%s", last.msg);

  cli_opt three[] = {{"--a", CLI_STR, &v.model, .metavar = "A", .flags = CLI_REQUIRED},
                     {"--b", CLI_FLAG, &v.force, .flags = CLI_REQUIRED},
                     {"--c", CLI_INT, &v.n, .flags = CLI_REQUIRED}};
  cli_spec t = {"pith three", CLI_OPTS(three)};
  CHECK(parse_in(&t, (const char *)NULL) == -1);
  CHECK_MSG(!strcmp(last.msg, "--a A, --b and --c N are required"), "%s", last.msg);
  CHECK(parse_in(&t, "--b", (const char *)NULL) == -1);
  CHECK_MSG(!strcmp(last.msg, "--a A and --c N are required"), "%s", last.msg);
  CHECK(parse_in(&t, "--c", "1", "--a", "x", "--b", (const char *)NULL) == 0);
}

static void test_positional(void) {
  cli_spec s = spec(0, 0);
  CHECK(PARSE("--model", "m", "file") == -1);
  CHECK_MSG(!strcmp(last.msg, "unexpected argument 'file'"), "%s", last.msg);
  s = spec(0, 1);
  CHECK(PARSE("--model", "m", "-") == 0 && v.n_args == 1 && !strcmp(v.args[0], "-"));
  CHECK(PARSE("a", "--model", "m", "b") == -1 && HAS("unexpected argument 'b'"));
  s = spec(1, 4);
  CHECK(PARSE("--model", "m") == -1);
  CHECK_MSG(!strcmp(last.msg, "FILE is required"), "%s", last.msg);
  CHECK(PARSE("x", "--model", "m", "y", "--", "--z", "-h") == 0);
  CHECK(v.n_args == 4 && !strcmp(v.args[0], "x") && !strcmp(v.args[1], "y") && !strcmp(v.args[2], "--z") &&
        !strcmp(v.args[3], "-h"));
  s = spec(2, -1);
  CHECK(PARSE("--model", "m", "x") == -1 && HAS("2 FILE arguments are required (got 1)"));
}

static void test_help(void) {
  cli_spec s = spec(0, 0);
  // --help wins over a missing required option, prints to stdout, returns 1.
  fflush(stdout);
  int saved = dup(1);
  FILE *tmp = tmpfile();
  dup2(fileno(tmp), 1);
  int rc_long = PARSE("--help"), rc_short = PARSE("--out", "o", "-h", "--bogus");
  fflush(stdout);
  dup2(saved, 1);
  close(saved);
  char text[8192] = "";
  rewind(tmp);
  size_t n = fread(text, 1, sizeof text - 1, tmp);
  text[n] = 0;
  fclose(tmp);
  CHECK(rc_long == 1 && rc_short == 1);
  CHECK(strstr(text, "usage: pith thing") && strstr(text, "Does a thing."));
  // An error before --help is an error.
  CHECK(PARSE("--bogus", "--help") == -1);

  // cli_command: 0 to go on; 1 with the exit code after --help (0) or an error (2).
  char *ok_argv[] = {"thing", "--model", "m"}, *bad_argv[] = {"thing", "--k", "0"};
  int code = -1;
  CHECK(cli_command(&s, 3, ok_argv, &code) == 0 && code == -1);
  fprintf(stderr, "(an error message is expected on the next lines)\n");
  CHECK(cli_command(&s, 3, bad_argv, &code) == 1 && code == 2);
  CHECK(cli_usage_error(&s, "--a and --b exclude each other (%d)", 1) == 2);
}

static void test_usage(void) {
  cli_spec s = spec(0, -1);
  char *u = usage_text(&s);
  printf("%s", u);
  // The synopsis: required options bare, the others in brackets, the arguments last; every line
  // shorter than 100 columns; continuation lines start under the first option.
  CHECK(starts(u, "usage: pith thing --model DIR [--out DIR] [--force] [--max-new-tokens N]"));
  CHECK(strstr(u, "[--seed N]") && strstr(u, "[--dtype f32|bf16]") && strstr(u, "[--mode M]"));
  CHECK(strstr(u, "[FILE...]\n\nDoes a thing.\n\n"));
  const char *cont = strstr(u, "\n                  [--top-p P]");  // under "--model"
  CHECK(cont != NULL && cont < strstr(u, "Does a thing."));
  for (const char *line = u; *line;) {
    size_t len = strcspn(line, "\n");
    CHECK_MSG(len < 100, "a usage line of %zu columns", len);
    line += len + (line[len] != 0);
  }
  // A line per option with its metavar and help, the help in one column.
  int col = help_column(u, "--model", "model folder");
  CHECK(col > 0);
  for (size_t i = 0; i < sizeof OPTS / sizeof OPTS[0]; i++) {
    int at = help_column(u, OPTS[i].name, OPTS[i].help);
    CHECK_MSG(at == col, "%s: help at column %d, not %d", OPTS[i].name, at, col);
  }
  CHECK(strstr(u, "\n  --max-new-tokens N  at most N new tokens (default 256)\n"));
  CHECK(strstr(u, "\n  --force             replace DIR\n"));
  CHECK(strstr(u, "\n  --dtype f32|bf16    weights\n"));
  // A help line break continues under the help column.
  CHECK(strstr(u, "  --seed N            seed of the sampler\n                      (the same seed, the same text)\n"));
  free(u);

  // An explicit synopsis and an epilog are printed as given; an option too wide for the column
  // keeps two spaces before its help.
  cli_opt wide[] = {{"--text-mode", CLI_CHOICE, &v.mode, .help = "one", .choices = "lines|blocks|paragraphs-of-prose"},
                    {"--q", CLI_FLAG, &v.force, .help = "quiet"}};
  cli_spec w = {"pith wide", .synopsis = "--a X | --b Y", CLI_OPTS(wide), .epilog = "\nThe end.\n"};
  u = usage_text(&w);
  CHECK(starts(u, "usage: pith wide --a X | --b Y\n\n"));
  CHECK(strstr(u, "\n  --text-mode lines|blocks|paragraphs-of-prose  one\n"));
  CHECK(strstr(u, "\n  --q  quiet\n"));
  CHECK(strstr(u, "quiet\n\nThe end.\n"));
  free(u);
}

int main(void) {
  test_types();
  test_bad_values();
  test_option_errors();
  test_positional();
  test_help();
  test_usage();
  return check_done("test_cli");
}
