// cli: the option table's parser and usage writer (cli.h).
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum {
  MAX_OPTS = 64,     // options in one table
  USAGE_WIDTH = 100, // the usage line wraps before this column
  HELP_COLUMN = 28,  // the widest "  --name METAVAR  " that sets the help column; longer ones run past it
};

static int has_range(const cli_opt *o) { return !(o->min == 0 && o->max == 0); }

// The i-th choice's primary name (before any ','), as [start, start + len) of o->choices; -1
// when there is no i-th.
static int choice_name(const cli_opt *o, int i, const char **start, size_t *len) {
  const char *p = o->choices ? o->choices : "";
  for (; i > 0; i--) {
    p = strchr(p, '|');
    if (!p) return -1;
    p++;
  }
  *start = p;
  *len = strcspn(p, ",|");
  return 0;
}

// The index of the choice that value names (primary or alias), or -1.
static int choice_index(const cli_opt *o, const char *value) {
  size_t n = strlen(value);
  int index = 0;
  for (const char *p = o->choices ? o->choices : ""; *p;) {
    size_t len = strcspn(p, ",|");
    if (len == n && !strncmp(p, value, n)) return index;
    p += len;
    if (*p == '|') index++;
    if (*p) p++;
  }
  return -1;
}

// The metavar as usage and messages show it: the table's, else one from the type.
static void metavar(const cli_opt *o, char *buf, size_t size) {
  if (o->metavar) {
    snprintf(buf, size, "%s", o->metavar);
  } else if (o->type == CLI_CHOICE) {
    size_t n = 0, len;
    const char *start;
    buf[0] = 0;
    for (int i = 0; choice_name(o, i, &start, &len) == 0 && n < size; i++)
      n += (size_t)snprintf(buf + n, size - n, "%s%.*s", i ? "|" : "", (int)len, start);
  } else {
    snprintf(buf, size, "%s", o->type == CLI_STR ? "VALUE" : o->type == CLI_DOUBLE ? "X" : "N");
  }
}

// What a good value is, for messages: "an integer in 1..64", "a number in (0, 1]", "f32 or bf16".
static void describe(const cli_opt *o, char *buf, size_t size) {
  if (o->type == CLI_CHOICE) {
    int n = 0;
    const char *start;
    size_t len, at = 0;
    while (choice_name(o, n, &start, &len) == 0) n++;
    at += (size_t)snprintf(buf, size, n > 2 ? "one of " : "");
    for (int i = 0; i < n && at < size; i++) {
      choice_name(o, i, &start, &len);
      const char *sep = i == 0 ? "" : n == 2 ? " or " : ", ";
      at += (size_t)snprintf(buf + at, size - at, "%s%.*s", sep, (int)len, start);
    }
    return;
  }
  const char *what = o->type == CLI_INT ? "an integer" : o->type == CLI_U64 ? "a non-negative integer" : "a number";
  int lo = has_range(o) && isfinite(o->min), hi = has_range(o) && isfinite(o->max);
  const char *fmt = o->type == CLI_DOUBLE ? "%g" : "%.0f";
  char a[48], b[48];
  snprintf(a, sizeof a, fmt, o->min);
  snprintf(b, sizeof b, fmt, o->max);
  int open = (o->flags & CLI_MIN_OPEN) != 0;
  if (lo && hi && o->type != CLI_DOUBLE && !open) snprintf(buf, size, "%s in %s..%s", what, a, b);
  else if (lo && hi) snprintf(buf, size, "%s in %s%s, %s]", what, open ? "(" : "[", a, b);
  else if (lo) snprintf(buf, size, "%s %s %s", what, open ? ">" : ">=", a);
  else if (hi) snprintf(buf, size, "%s <= %s", what, b);
  else snprintf(buf, size, "%s", what);
}

static int in_range(const cli_opt *o, double v) {
  if (!has_range(o)) return 1;
  return ((o->flags & CLI_MIN_OPEN) ? v > o->min : v >= o->min) && v <= o->max;
}

static int bad_value(const cli_opt *o, const char *value, pith_err *err) {
  char want[256];
  describe(o, want, sizeof want);
  return pith_fail(err, "%s must be %s (got '%s')", o->name, want, value);
}

// Parse value into o->dest, or explain in err why not.
static int set_value(const cli_opt *o, const char *value, pith_err *err) {
  if (o->type == CLI_FLAG) {
    *(int *)o->dest = 1;
    return 0;
  }
  if (o->type == CLI_STR) {
    *(const char **)o->dest = value;
    return 0;
  }
  char *end;
  // strto* skip leading white space and read "+-": only a sign then a digit (or '.') may begin.
  const char *digits = value + (value[0] == '-' || value[0] == '+');
  int numeric = ((*digits >= '0' && *digits <= '9') || (o->type == CLI_DOUBLE && *digits == '.')) &&
                !strpbrk(value, "xX");  // no hexadecimal
  errno = 0;
  switch (o->type) {
    case CLI_FLAG:
    case CLI_STR:
      break;
    case CLI_CHOICE: {
      int i = choice_index(o, value);
      if (i < 0) return bad_value(o, value, err);
      *(int *)o->dest = i;
      return 0;
    }
    case CLI_INT: {
      long long v = numeric ? strtoll(value, &end, 10) : 0;
      if (!numeric || *end || errno || v < INT_MIN || v > INT_MAX || !in_range(o, (double)v))
        return bad_value(o, value, err);
      *(int *)o->dest = (int)v;
      return 0;
    }
    case CLI_U64: {
      unsigned long long v = numeric && value[0] != '-' ? strtoull(value, &end, 10) : 0;
      if (!numeric || value[0] == '-' || *end || errno || !in_range(o, (double)v)) return bad_value(o, value, err);
      *(uint64_t *)o->dest = (uint64_t)v;
      return 0;
    }
    case CLI_DOUBLE: {
      double v = numeric ? strtod(value, &end) : 0;
      // ERANGE on underflow (1e-400 reads as 0 or a denormal) is fine; an overflow is not finite.
      if (!numeric || *end || !isfinite(v) || !in_range(o, v)) return bad_value(o, value, err);
      *(double *)o->dest = v;
      return 0;
    }
  }
  return pith_fail(err, "%s: unknown option type %d (a bug in the table)", o->name, (int)o->type);
}

// The option named by arg ("--name" or "--name=value"), or NULL. *value points after the '='.
static const cli_opt *find(const cli_spec *s, const char *arg, const char **value) {
  size_t len = strcspn(arg, "=");
  for (int i = 0; i < s->n_opts; i++)
    if (strlen(s->opts[i].name) == len && !strncmp(s->opts[i].name, arg, len)) {
      *value = arg[len] == '=' ? arg + len + 1 : NULL;
      return &s->opts[i];
    }
  return NULL;
}

static int unknown(const cli_spec *s, const char *arg, pith_err *err) {
  size_t len = strcspn(arg, "=");
  const cli_opt *only = NULL;
  int n = 0;
  for (int i = 0; i < s->n_opts && len > 2; i++)
    if (!strncmp(s->opts[i].name, arg, len)) only = &s->opts[i], n++;
  if (n == 1) return pith_fail(err, "unknown option '%.*s' (did you mean %s?)", (int)len, arg, only->name);
  return pith_fail(err, "unknown option '%.*s'", (int)len, arg);
}

// The first word of s->args without brackets or "...": "[FILE|-]" -> "FILE|-".
static void args_name(const cli_spec *s, char *buf, size_t size) {
  const char *p = s->args ? s->args : "ARG";
  p += strspn(p, "[");
  size_t len = strcspn(p, " ]");
  if (len >= 3 && !strncmp(p + len - 3, "...", 3)) len -= 3;
  snprintf(buf, size, "%.*s", (int)len, p);
}

int cli_parse(const cli_spec *s, int argc, char **argv, pith_err *err) {
  if (s->n_opts > MAX_OPTS) return pith_fail(err, "%s: more than %d options in the table", s->command, MAX_OPTS);
  unsigned char seen[MAX_OPTS] = {0};
  int n_args = 0, options_end = 0;
  if (s->n_args) *s->n_args = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (options_end || a[0] != '-' || !strcmp(a, "-")) {
      if (s->max_args >= 0 && n_args >= s->max_args) return pith_fail(err, "unexpected argument '%s'", a);
      if (s->arg_out) s->arg_out[n_args] = a;
      n_args++;
      if (s->n_args) *s->n_args = n_args;
      continue;
    }
    if (!strcmp(a, "--")) {
      options_end = 1;
      continue;
    }
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      cli_usage(s, stdout);
      return 1;
    }
    const char *value;
    const cli_opt *o = find(s, a, &value);
    if (!o) return unknown(s, a, err);
    if (o->type == CLI_FLAG && value) return pith_fail(err, "%s takes no value (got '%s')", o->name, a);
    if (o->type != CLI_FLAG && !value) {
      if (i + 1 >= argc) return pith_fail(err, "%s needs a value", o->name);
      value = argv[++i];
    }
    if (set_value(o, value, err)) return -1;
    seen[o - s->opts] = 1;
  }
  // Every missing required option, in table order: "--model DIR and --prompt TEXT are required".
  char missing[512] = "";
  size_t at = 0;
  int n_missing = 0, n_left = 0;
  for (int i = 0; i < s->n_opts; i++) n_left += (s->opts[i].flags & CLI_REQUIRED) && !seen[i];
  for (int i = 0; i < s->n_opts && at < sizeof missing; i++) {
    if (!(s->opts[i].flags & CLI_REQUIRED) || seen[i]) continue;
    char mv[128] = "";
    if (s->opts[i].type != CLI_FLAG) metavar(&s->opts[i], mv + 1, sizeof mv - 1), mv[0] = ' ';
    const char *sep = n_missing == 0 ? "" : n_missing == n_left - 1 ? " and " : ", ";
    at += (size_t)snprintf(missing + at, sizeof missing - at, "%s%s%s", sep, s->opts[i].name, mv);
    n_missing++;
  }
  if (n_missing) return pith_fail(err, "%s %s required", missing, n_missing == 1 ? "is" : "are");
  if (n_args < s->min_args) {
    char name[128];
    args_name(s, name, sizeof name);
    return s->min_args == 1 ? pith_fail(err, "%s is required", name)
                            : pith_fail(err, "%d %s arguments are required (got %d)", s->min_args, name, n_args);
  }
  return 0;
}

// Write words to out, each after a space, wrapping before USAGE_WIDTH to lines indented by indent
// (col: where out is now; the first word never wraps).
// A word is what lies between spaces, except that a bracketed option ("[--seed N]") stays whole.
static void wrap_words(FILE *out, const char *text, int col, int indent) {
  const char *p = text;
  while (*p) {
    while (*p == ' ') p++;
    if (!*p) break;
    size_t len = 0;
    int depth = 0;
    while (p[len] && (depth > 0 || p[len] != ' ')) {
      depth += (p[len] == '[') - (p[len] == ']');
      len++;
    }
    if (col >= indent && col + 1 + (int)len > USAGE_WIDTH) {
      fprintf(out, "\n%*s", indent, "");
      col = indent;
    } else {
      fputc(' ', out);
      col++;
    }
    fprintf(out, "%.*s", (int)len, p);
    col += (int)len;
    p += len;
  }
}

static void synopsis(const cli_spec *s, char *buf, size_t size) {
  size_t at = 0;
  buf[0] = 0;
  for (int i = 0; i < s->n_opts && at < size; i++) {
    const cli_opt *o = &s->opts[i];
    char mv[128] = "";
    if (o->type != CLI_FLAG) metavar(o, mv + 1, sizeof mv - 1), mv[0] = ' ';
    int req = (o->flags & CLI_REQUIRED) != 0;
    at += (size_t)snprintf(buf + at, size - at, "%s%s%s%s%s", at ? " " : "", req ? "" : "[", o->name, mv, req ? "" : "]");
  }
  if (s->args && at < size) snprintf(buf + at, size - at, "%s%s", at ? " " : "", s->args);
}

void cli_usage(const cli_spec *s, FILE *out) {
  char line[4096];
  if (s->synopsis) snprintf(line, sizeof line, "%s", s->synopsis);
  else synopsis(s, line, sizeof line);
  int indent = (int)strlen("usage: ") + (int)strlen(s->command) + 1;
  fprintf(out, "usage: %s", s->command);
  wrap_words(out, line, indent - 1, indent);  // "usage: COMMAND" is indent - 1 wide
  fprintf(out, "\n\n%s", s->about ? s->about : "");
  int column = 0;
  for (int i = 0; i < s->n_opts; i++) {
    char mv[128] = "";
    if (s->opts[i].type != CLI_FLAG) metavar(&s->opts[i], mv, sizeof mv);
    int w = 2 + (int)strlen(s->opts[i].name) + (mv[0] ? 1 + (int)strlen(mv) : 0) + 2;
    if (w <= HELP_COLUMN && w > column) column = w;
  }
  for (int i = 0; i < s->n_opts; i++) {
    const cli_opt *o = &s->opts[i];
    char mv[128] = "";
    if (o->type != CLI_FLAG) metavar(o, mv, sizeof mv);
    int w = fprintf(out, "  %s%s%s", o->name, mv[0] ? " " : "", mv);
    const char *help = o->help ? o->help : "";
    if (!help[0]) {
      fputc('\n', out);
      continue;
    }
    fprintf(out, "%*s", w + 2 > column ? 2 : column - w, "");
    for (const char *p = help;;) {
      size_t len = strcspn(p, "\n");
      fprintf(out, "%.*s\n", (int)len, p);
      if (!p[len] || !p[len + 1]) break;
      p += len + 1;
      fprintf(out, "%*s", column, "");
    }
  }
  if (s->epilog) fputs(s->epilog, out);
}

static void after_error(const cli_spec *s) {
  if (s->usage_on_error) cli_usage(s, stderr);
  else fprintf(stderr, "'%s --help' lists the options\n", s->command);
}

int cli_command(const cli_spec *s, int argc, char **argv, int *exit_code) {
  pith_err err = {{0}};
  int rc = cli_parse(s, argc, argv, &err);
  if (rc == 0) return 0;
  *exit_code = 0;
  if (rc < 0) {
    fprintf(stderr, "%s: %s\n", s->command, err.msg);
    after_error(s);
    *exit_code = 2;
  }
  return 1;
}

int cli_usage_error(const cli_spec *s, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "%s: ", s->command);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  after_error(s);
  return 2;
}
