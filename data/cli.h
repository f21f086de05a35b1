// cli: the command-line options of pith's subcommands, from one table. A command lists each
// option once (name, type, where the value goes, metavar, help, range); cli_parse reads argv
// against that table (whole-string numbers, ranges, choices, required options, --help) and
// cli_usage writes the usage line and the option lines from it, so the parser, its checks and
// the help text cannot drift apart. The trainers' own settings are YAML keys (run_config.h's
// rc_key schema), not options. Dependency-free: libc and base.h only.
//
//   int n = 256, dtype = 0;   // dtype: the index of the choice, 0 = f32
//   double top_p = 1;
//   const char *model = NULL;
//   const cli_opt opts[] = {   // name, type, dest; the rest by name (what is left out is 0)
//       {"--model", CLI_STR, &model, .metavar = "DIR", .help = "model folder", .flags = CLI_REQUIRED},
//       {"--max-new-tokens", CLI_INT, &n, .metavar = "N", .min = 1, .max = CLI_INF,
//        .help = "at most N new tokens (default 256)"},
//       {"--top-p", CLI_DOUBLE, &top_p, .metavar = "P", .min = 0, .max = 1, .flags = CLI_MIN_OPEN,
//        .help = "sample from the smallest set of tokens whose probability reaches P,\n"
//                "0 < P <= 1 (default 1: all)"},
//       {"--dtype", CLI_CHOICE, &dtype, .choices = "f32,float32|bf16,bfloat16", .help = "(default f32)"},
//   };
//   const cli_spec spec = {"pith generate", .about = "Continues TEXT with ...\n\n", CLI_OPTS(opts)};
//   int code;
//   if (cli_command(&spec, argc, argv, &code)) return code;   // 0 after --help, 2 after a bad option
//
// An option's value is the next argument (even one starting with '-': --prompt -x) or follows
// '=' (--top-p=0.9). The last of a repeated option wins. "-h" or "--help" anywhere prints the
// usage. Arguments that are not options (and "-", and everything after "--") are the command's
// positional arguments; a command that takes none refuses them.
#ifndef PITH_CLI_H
#define PITH_CLI_H

#include <math.h>
#include <stdio.h>

#include "base.h"

typedef enum {
  CLI_FLAG,    // int *: set to 1 when present; takes no value
  CLI_STR,     // const char **: the argument itself (not copied)
  CLI_INT,     // int *: decimal, optional sign
  CLI_U64,     // uint64_t *: decimal digits only
  CLI_DOUBLE,  // double *: what strtod reads, finite
  CLI_CHOICE,  // int *: the index of the choice ("f32|bf16": f32 is 0, bf16 is 1)
} cli_type;

enum {
  CLI_REQUIRED = 1,  // an error when absent
  CLI_MIN_OPEN = 2,  // the range excludes min: (min, max]
};

// No upper bound, as a cli_opt max: .min = 1, .max = CLI_INF is "an integer >= 1".
#define CLI_INF HUGE_VAL

// One option. Write name, type and dest in order and the rest by name: a row with no designated
// field but fewer than all of them trips -Wmissing-field-initializers.
typedef struct {
  const char *name;     // "--max-new-tokens"
  cli_type type;
  void *dest;           // written only when the value is good; holds the default before
  const char *metavar;  // "N" in "--max-new-tokens N"; NULL: from the type (the choices for CLI_CHOICE)
  const char *help;     // the usage text; each '\n' starts a line under the first
  double min, max;      // numbers: the inclusive range, CLI_INF for none above; both 0: any value
  unsigned flags;       // CLI_REQUIRED, CLI_MIN_OPEN
  const char *choices;  // CLI_CHOICE: "lines|blocks"; a choice may have aliases: "f32,float32|bf16"
} cli_opt;

typedef struct {
  const char *command;   // "pith generate": begins the usage line and every error message
  const char *synopsis;  // the usage line after the command; NULL: made from the table and args
  const char *about;     // text after the usage line and a blank line, before the option lines,
                         // printed as it is (end it with a blank line, or a heading like "options:\n")
  const cli_opt *opts;
  int n_opts;
  const char *epilog;    // text after the option lines, printed as it is, or NULL
  // Positional arguments. args: how the usage line shows them ("[FILE|-]", "INPUT...", NULL: none
  // taken); its first word names them in messages ("INPUT is required").
  const char *args;
  int min_args, max_args;  // max_args < 0: any number
  const char **arg_out;    // receives them in order: room for max_args, or argc when unbounded
  int *n_args;             // how many there were (may be NULL)
  int usage_on_error;      // cli_command and cli_usage_error: the whole usage after an error's line
                           // on stderr (else one line saying that --help lists the options)
} cli_spec;

// Designated initializer of a spec's table: {..., CLI_OPTS(opts)}.
#define CLI_OPTS(table) .opts = (table), .n_opts = (int)(sizeof(table) / sizeof((table)[0]))

// Read argv (argv[0] is the command's own name and is skipped) into the table's dests. Returns 0,
// 1 after printing the usage to stdout for -h/--help, or -1 with one line in err naming the
// option: "unknown option '--bogus'", "--out needs a value", "--top-p must be a number in (0, 1]
// (got 'x')", "--dtype must be f32 or bf16 (got 'f64')", "--model DIR is required". A dest is
// left as it was when its value is refused; others may already hold their new values.
int cli_parse(const cli_spec *spec, int argc, char **argv, pith_err *err);

// The usage: "usage: COMMAND SYNOPSIS" (wrapped under itself), a blank line, about, a line per
// option ("  --name METAVAR  help", help aligned in one column), the epilog.
void cli_usage(const cli_spec *spec, FILE *out);

// cli_parse as every pith command uses it. Returns 0 when the command goes on; else 1 with
// *exit_code set: 0 after --help, 2 after an error, which is on stderr as "COMMAND: message"
// followed by the usage (spec->usage_on_error) or "'COMMAND --help' lists the options".
int cli_command(const cli_spec *spec, int argc, char **argv, int *exit_code);

// A usage error the table cannot see (two options that exclude each other, say), reported like
// cli_command's: "COMMAND: message", then the usage or the --help line, on stderr. Returns 2.
int cli_usage_error(const cli_spec *spec, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
