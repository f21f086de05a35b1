// report: one self-contained HTML page for runs — no script, no network, nothing beside it — that
// a browser opens as a file: the loss curves of every training run (metrics.jsonl, drawn as inline
// SVG), every evaluation's scores as a table (metrics.json), and for a few examples of each
// evaluation the context, the question, each system's answer and the gold side by side
// (predictions.jsonl).
//
// A RUN is a training run folder (metrics.jsonl), an evaluation folder (metrics.json), or a folder
// holding such folders one level down, or two under an eval/ folder: runs/demo is one RUN. Runs
// appear in the order they were made (the modification time of their metrics file).
#ifndef PITH_REPORT_H
#define PITH_REPORT_H

#include "base.h"

typedef struct {
  const char *title;  // the page's heading ("pith report" when NULL)
  int n_examples;     // examples shown per evaluation (0: none)
} report_options;

// Writes the page for runs (n_runs folders) to out_path, atomically. -1 with err when a RUN holds
// no run, or a metrics file does not parse (naming it).
int report_write(const char *const *runs, int n_runs, const report_options *o, const char *out_path,
                 pith_err *err);

#endif
