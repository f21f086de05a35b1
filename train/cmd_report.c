// pith report: one self-contained HTML page (train/report.h) for any runs.
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "commands.h"
#include "report.h"

int cmd_report(int argc, char **argv) {
  const char *out = NULL, *title = NULL;
  int n_examples = 5, n_runs = 0;
  const char **runs = calloc((size_t)argc, sizeof *runs);
  if (!runs) return 1;
  const cli_opt opts[] = {
      {"--out", CLI_STR, &out, .metavar = "FILE.html", .help = "where to write it (default RUN/report.html for one RUN)"},
      {"--title", CLI_STR, &title, .metavar = "TEXT", .help = "the page's heading (default \"pith report\")"},
      {"--examples", CLI_INT, &n_examples, .metavar = "N", .min = 0, .max = 1000,
       .help = "examples shown per evaluation (default 5)"},
  };
  const cli_spec spec = {
      "pith report", CLI_OPTS(opts), .usage_on_error = 1,
      .about = "Writes one self-contained HTML page (no script, no network: open the file in any browser) for\n"
               "runs: the loss curves of every training run (metrics.jsonl) as inline SVG, the scores of every\n"
               "evaluation (metrics.json), and for a few examples the context, the question, each system's answer\n"
               "and the gold side by side (predictions.jsonl). A RUN is a training run folder, a pith eval output\n"
               "folder, or a folder holding them (runs/demo: its stages and eval/*).\n\n",
      .args = "RUN...", .min_args = 1, .max_args = -1, .arg_out = runs, .n_args = &n_runs};
  int code;
  if (cli_command(&spec, argc, argv, &code)) {
    free(runs);
    return code;
  }
  char path[4200];
  if (!out && n_runs > 1) {
    free(runs);
    return cli_usage_error(&spec, "--out is needed with more than one RUN");
  }
  if (!out) snprintf(path, sizeof path, "%s/report.html", runs[0]), out = path;
  report_options o = {.title = title, .n_examples = n_examples};
  pith_err err = {{0}};
  int rc = report_write(runs, n_runs, &o, out, &err);
  free(runs);
  if (rc) {
    fprintf(stderr, "pith report: %s\n", err.msg);
    return 1;
  }
  printf("pith report: wrote %s\n", out);
  return 0;
}
