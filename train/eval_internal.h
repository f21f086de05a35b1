// eval_internal: the state of one `pith eval` run, shared by the engine's two files: eval.c (setup
// and the loop over examples) and eval_report.c (scores, predictions.jsonl, metrics.json,
// config.yaml, the table). Not for systems: they see eval_env and eval_example only.
#ifndef PITH_EVAL_INTERNAL_H
#define PITH_EVAL_INTERNAL_H

#include "corpus.h"
#include "eval.h"
#include "export.h"
#include "metrics.h"
#include "strbuf.h"
#include "task.h"
#include "tokenizer.h"

#define EVAL_PATH_MAX 4096

// Score sums of one system.
typedef struct {
  squad_acc squad;
  double raw_em, raw_f1, rouge1, rouge2, rougel, em;
  bleu_acc bleu;
  int64_t n;
} eval_scores;

struct eval_run {
  eval_options o;
  eval_env env;
  int split;  // corpus_split, or -1 for all
  corpus *corp;
  int64_t *items, n_items;  // corpus records to evaluate, in corpus order
  // The compressor: none, an export folder, or a run / checkpoint exported into tmp_dir/export.
  int have_comp, from_run;
  export_info info;
  char export_dir[EVAL_PATH_MAX + 16], tmp_dir[EVAL_PATH_MAX], ckpt_used[EVAL_PATH_MAX];
  char model_dir[EVAL_PATH_MAX], tok_path[EVAL_PATH_MAX], out_dir[EVAL_PATH_MAX], name[1024];
  // The rows: the registry's selected systems in its order (compressed, the baselines), then a hard
  // system per --hard spec, then (with a compressor) a chain per spec.
  eval_instance inst[EVAL_MAX_INSTANCES];
  int n_inst, n_hard, n_press;
  char hard_buf[1024];   // --hard split into the instances' specs
  char press_buf[1024];  // --press split into the instances' specs
  tokenizer *tok;
  llama_model *model;
  task_tokens tt;  // the prompt pieces and special ids, as the trainer's (data/task.h)
  eval_scores sc[EVAL_MAX_INSTANCES];
  double read[EVAL_MAX_INSTANCES];  // the sum over examples of the positions standing for the context
  double n_context;                 // the sum of the context lengths (cut to cutoff)
  double kv[EVAL_MAX_INSTANCES];    // the sum over examples of the K/V bytes held for the context (eval_input.kv_bytes)
  strbuf preds;  // predictions.jsonl so far
  int tty;
};

// eval_report.c: scores one prediction of system sys and appends its predictions.jsonl line.
// n_read: the positions that stood for the context (eval_input.n_read); kv_bytes: eval_input.kv_bytes.
int eval_record_prediction(eval_run *r, int sys, const eval_example *ex, const char *pred, int n_read,
                           int64_t kv_bytes, const char *kept, pith_err *err);
// The dataset score of row sys for metric m (a column of the task's table).
double eval_score(const eval_run *r, int sys, const char *m);

#endif
