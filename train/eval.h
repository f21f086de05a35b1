// eval: the engine of `pith eval`, a library callable from C. It opens a pith corpus, picks the
// records of a split, resolves the compressor (an export folder, or a run / checkpoint exported on
// the fly), loads the frozen model, runs every selected system (eval_system.h) over every example
// with greedy generation, scores the predictions (SQuAD EM/F1 and raw EM/F1 for qa; ROUGE-1/2/L,
// corpus BLEU-4 and exact match for regen), and writes predictions.jsonl, metrics.json and
// config.yaml atomically into the output folder, only once everything was evaluated.
//
// Decoding matches training exactly: the prompts are data/task.h's, the layouts the loader and the
// trainer use; the context is cut to cutoff_len, the decoder prompt is the training row up to its
// answer.
// cmd_eval.c is the command line over this; the pieces below eval_open are what a system or a test
// needs to run one system on one example.
#ifndef PITH_EVAL_H
#define PITH_EVAL_H

#include <stdint.h>
#include <stdio.h>

#include "base.h"
#include "eval_system.h"

#define EVAL_DEFAULT_BASELINES "full,none,truncated"
// eval_open's status for options that select no system (an unknown baseline, or none that applies
// to the task): the caller's usage error (pith eval exits 2).
#define EVAL_USAGE 2

typedef struct {
  const char *compressor;  // an export folder, a run or checkpoint folder, or "none"
  const char *data;        // the corpus (.h5)
  const char *task;        // "qa", "regen", or NULL: the corpus's own
  const char *split;       // "val", "test", "train" or "all"
  const char *baselines;   // comma-separated baseline names; NULL = EVAL_DEFAULT_BASELINES
  const char *out;         // output folder, or NULL: runs/eval/NAME
  const char *name;        // NULL: <dataset>__<model>__<method>__k<k>
  const char *model;       // base model folder, or NULL: the export's (required with "none")
  const char *tokenizer;   // NULL: the export's, else the model folder
  const char *device;      // "cpu", "cuda" or "cuda:N"
  const char *command;     // the command line, recorded in metrics.json
  int max_examples;        // 0 = every record of the split
  int cutoff_len;          // <= 0: the training run's, else 500
  int max_new_tokens;      // <= 0: 32 for qa, cutoff_len + 8 for regen
  int k;                   // <= 0: the compressor's, else 16 (the truncated baseline's budget)
  int threads;             // <= 0: libtorch's
  int quiet;               // no notices nor progress on stderr
  int verify;              // run the systems' checks (the compressed one against comp_decode)
  int bf16;                // the base model in bf16
  int fused_kernels;       // CUDA: the fused kernels (pt_set_fused_kernels), as training's fused_kernels
  const char *hard;        // NULL, or comma-separated METHOD:RATIO specs: hard-compression systems
  const char *hard_scorer;  // their causal LM folder; NULL: the base model
  int hard_llmlingua_budget;  // llmlingua's own budget instead of the exact one (eval_sys_hard.c)
  const char *l2_scorer;    // --hard llmlingua2's token classifier folder, or NULL
  const char *cl100k;       // its cl100k_base.tiktoken, NULL: searched as pith compress does
  const char *ehpc_heads;   // --hard ehpc's evaluator heads (ehpc.json, a folder, L:h,h), or NULL
  const char *press;        // NULL, or comma-separated KV press specs (eval_sys_press.c): a system each
} eval_options;

typedef struct eval_run eval_run;

// Everything up to the first example: the data, the compressor, the systems (those that do not
// apply to the task are skipped, with a notice on stderr when the baselines were chosen), the model,
// each system's init. 0; -1 with err; EVAL_USAGE with err. *run is set either way (eval_close it).
int eval_open(const eval_options *o, eval_run **run, pith_err *err);
// Every example through every system; the progress on stderr unless quiet.
int eval_evaluate(eval_run *r, pith_err *err);
// The output folder: predictions.jsonl, metrics.json, config.yaml (and export/ for a run folder).
int eval_write(eval_run *r, pith_err *err);
// The table of scores.
void eval_print_table(const eval_run *r, FILE *f);
void eval_close(eval_run *r);  // also removes the temporary export

// ---- one system on one example ------------------------------------------------------------------

// The prompt of a system that reads the context as text: [bos] (unless the context starts with it),
// the first part context tokens (at most all), then (qa) the decoder prompt; part = EVAL_NO_CONTEXT
// gives the decoder prompt alone. *ids malloc'd.
#define EVAL_NO_CONTEXT (-1)
int eval_text_prompt(const eval_env *env, const eval_example *ex, int part, int32_t **ids, int *n, pith_err *err);

// Greedy generation from in (prefix and prompt; with in->press, generate_pressed over the pressed
// press_context), up to env->max_new tokens or an eos (kept). Sets in->kv_bytes: a press's kept
// K/V bytes, else eval_kv_bytes of in->kv_len (which must be >= 0 here).
int eval_generate(const eval_env *env, eval_input *in, int32_t **out, int *n_out, pith_err *err);

// The bytes of K and V that `positions` cache entries hold in the model, every layer and KV head:
// positions × n_layers × 2 × n_kv_heads × head_dim × the dtype's size.
int64_t eval_kv_bytes(const eval_env *env, int64_t positions);

// sys on ex: build, eval_generate, the system's check with env->verify, the final eos dropped.
// in->kv_len left at -1 by build becomes the prefix's length plus the prompt's tokens before
// ex's decoder prompt (all of the prompt when it does not end with it: regen's truncated).
// *gen: malloc'd ids, the echo first (eval_input.echo), then the generation. in: NULL, or receives
// the decoder input (eval_input_free it). Tensors go to the caller's scope.
int eval_system_run(const eval_env *env, const eval_system *sys, void *state, const eval_example *ex, eval_input *in,
                    int32_t **gen, int *n_gen, pith_err *err);

#endif
