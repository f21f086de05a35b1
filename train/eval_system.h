// eval_system: the interface every system `pith eval` scores implements, and their registry.
//
// A system turns an example into what the decoder reads: a prompt of token ids and, optionally, a
// per-layer K/V prefix before it. The engine (eval.h) runs greedy generation on that input and
// scores the result, the same way for every system, so a new family is a new file with one
// eval_system in it plus a line in the registry (eval_system.c), not a new branch of the engine:
//   - a system that rewrites the prompt (the context baselines, hard compression that drops
//     tokens) fills in.prompt and leaves the prefix NULL;
//   - a system that hands over K/V (the soft compressors, no_layer0) fills in.prefix_k/v and puts
//     the decoder prompt in in.prompt;
//   - a KV press (eval_sys_press.c) puts what the base model prefills in in.press_context and the
//     press in in.press, the decoder prompt in in.prompt: the engine then generates through
//     generate_pressed (models/generate.h) instead of generate(), the same loop otherwise;
//   - a chain (hard then soft) copies the example, replaces its context with the shortened one and
//     calls the second system's build on the copy (eval_example is a plain view, cheap to copy).
// A system kind runs as instances (eval_instance): the baselines and the compressed system are one
// instance each without options; `--hard METHOD:RATIO` makes one instance of the hard kind per
// spec (its options are the spec), and with --compressor one chain instance per spec.
// `--press SPEC` makes one instance of the press kind per spec (eval_sys_press.c).
#ifndef PITH_EVAL_SYSTEM_H
#define PITH_EVAL_SYSTEM_H

#include <stdint.h>
#include <stdio.h>

#include "base.h"
#include "llama.h"
#include "press.h"
#include "task.h"

typedef enum { EVAL_QA, EVAL_REGEN } eval_task;

// What every system of one evaluation shares: the frozen model and the run's settings.
typedef struct {
  eval_task task;
  const llama_model *model;  // the frozen base model (no LoRA)
  const task_tokens *tokens;  // the prompt pieces and special ids of training (data/task.h)
  int32_t bos, pad;          // tokens->bos and ->pad: the tokenizer's, falling back to eos
  const int32_t *eos;        // (n_eos) ids that stop generation
  int n_eos;
  int k;                   // the compressed prefix's length in tokens: the truncated baseline's budget
  int cutoff;              // context tokens the encoder reads; the example's context is cut to it
  int max_new;             // generation budget of every system
  int verify;              // run the systems' post-checks (check below)
  const char *export_dir;  // the compressor's export folder, or "" with none
  const tokenizer *tok;    // the base model's tokenizer (text systems: hard compression); NULL in unit tests
  const char *hard_scorer;  // --hard-scorer: the hard systems' causal LM folder, NULL: the base model
  int hard_llmlingua_budget;  // --hard-budget llmlingua: llmlingua's own budget instead of the exact one
  const char *l2_scorer;   // --l2-scorer: llmlingua2's token classifier folder, or NULL
  const char *cl100k;      // --cl100k: llmlingua2's cl100k_base.tiktoken, NULL: searched as pith compress does
  const char *ehpc_heads;  // --ehpc-heads: ehpc's evaluator heads (a file, a folder or L:h,h), or NULL
} eval_env;

// One example: a view into memory the engine owns for the duration of one record.
typedef struct {
  int64_t index;                  // the corpus record
  const char *id;                 // its id, or NULL
  const int32_t *context;         // (n_context) the context (qa) or document (regen), cut to cutoff
  int n_context;
  const char *question;           // qa: the question's text; regen: NULL
  const int32_t *question_ids;    // (n_question_ids) qa: the question's tokens; regen: NULL
  int n_question_ids;
  const int32_t *decoder_prompt;  // (n_decoder_prompt) qa: "Question: {q} Answer: "; regen: [bos]
  int n_decoder_prompt;
  const char *const *golds;       // (n_golds) qa: the gold answers
  int n_golds;
  const char *reference;          // regen: the text of the context, what the prediction is scored against
  const char *context_text;       // qa: the context as the systems read it (cut to cutoff), decoded
} eval_example;

// What the decoder reads, filled by a system's build. eval_input_free releases it.
typedef struct {
  int32_t *prompt;  // (n_prompt) malloc'd; n_prompt >= 1 (>= 0 with a press); positions P..P+n_prompt-1
  int n_prompt;
  // NULL (no prefix), or malloc'd arrays of n_layers handles, each (1, Hkv, P, hd) in the model's
  // dtype and device, already rotated (what llama_forward returns with want_kv); the tensors live in
  // the engine's per-example scope, the arrays are freed by eval_input_free.
  pt_tensor **prefix_k, **prefix_v;
  // Ids the prediction begins with, before the generated ones (regen's truncated baseline: the k
  // tokens it was given, which it continues); not owned (points into the example or priv).
  const int32_t *echo;
  int n_echo;
  // The positions that stand for the context: the context tokens the prompt holds, or the prefix's
  // length (bos and the decoder prompt not counted). The table's prompt length of the system.
  int n_read;
  // The system's own data about this example, for its check (the compressed system's code).
  void *priv;
  void (*priv_free)(void *priv);
  // Optional, malloc'd: the text the system kept of the context (hard systems), in predictions.jsonl.
  char *kept_text;
  // A KV press (NULL: none): press_context (malloc'd, n_press_context >= 1 ids, [bos] first) is
  // prefilled with the press choosing per layer and KV head what stays, then prompt (n_prompt >= 0
  // here: 0 when the question was part of press_context) is read at positions after it. The press
  // is the system's (borrowed); prefix_k/v must be NULL with a press.
  const press *press;
  int32_t *press_context;
  int n_press_context;
  // Positions of K/V the decoder holds for the context when it starts reading its decoder prompt
  // (bos and the context tokens the prompt holds before the decoder prompt, or the prefix's length):
  // set by build, or left at -1 (the engine then takes the prefix's length plus the prompt's tokens
  // before the decoder prompt). Not used with a press, whose kept entries are counted instead.
  int kv_len;
  // Set by the engine after generation: the bytes of that K/V (eval_kv_bytes; a press: its kept
  // entries' K and V, the compact cache's 16 B index per entry not counted).
  int64_t kv_bytes;
} eval_input;

void eval_input_free(eval_input *in);

typedef struct eval_system eval_system;
typedef struct eval_instance eval_instance;
struct eval_system {
  const char *name;     // in predictions.jsonl, metrics.json, the table and --baselines
  int baseline;         // selectable with --baselines (the compressed system comes with --compressor)
  const char *qa_only;  // NULL, or why the system does not apply to regen (it is then skipped)
  // Optional, once per run before the first example: loads what the system needs (the compressor),
  // reading the instance's options (self->arg) and the instances it builds on (self->uses).
  // *state is passed to every other hook (NULL when there is no init).
  int (*init)(const eval_env *env, const eval_instance *self, void **state, pith_err *err);
  // The decoder input for ex. Tensors go to the current scope (the engine's, per example).
  int (*build)(void *state, const eval_env *env, const eval_example *ex, eval_input *in, pith_err *err);
  // Optional, with env->verify: checks the generation gen (n_gen ids, the stopping eos included)
  // made from in, e.g. against an independent computation; -1 with err when it disagrees.
  int (*check)(void *state, const eval_env *env, const eval_input *in, const int32_t *gen, int n_gen, pith_err *err);
  // Optional, after the last example with env->verify: one line on what check found.
  void (*report)(void *state, FILE *f);
  void (*free)(void *state);  // optional
  // Optional, for systems that keep part of the context as text (hard compression): the context
  // tokens they keep of ex, which a chain hands to its second stage. *ids is borrowed: valid until
  // the next call on this state.
  int (*shorten)(void *state, const eval_env *env, const eval_example *ex, const int32_t **ids, int *n,
                 pith_err *err);
};

// One row of the table: a system kind with its options and state.
struct eval_instance {
  const eval_system *sys;
  char name[128];             // in the outputs: the kind's name, or one made from arg ("llmlingua@4x")
  const char *arg;            // the instance's options (the hard kind: "METHOD:RATIO"), NULL when none
  const eval_instance *uses[2];  // instances it builds on, inited before it: a chain's two stages;
                                 // a hard system the first hard system, whose scorer it shares
  void *state;                // what init made
};

// The registry, in output order (predictions.jsonl, metrics.json, the table).
extern const eval_system *const eval_systems[];
extern const int eval_n_systems;
#define EVAL_MAX_SYSTEMS 16
#define EVAL_MAX_INSTANCES 40  // rows of one evaluation

// The system named name, or NULL.
const eval_system *eval_system_find(const char *name);

// Selects systems from a comma-separated list of baseline names (spaces after commas allowed; ""
// selects none), plus the compressed system when with_compressed. on[i] is set for eval_systems[i]
// (EVAL_MAX_SYSTEMS entries, cleared first). -1 with err for a name that is not a baseline
// ("unknown baseline 'x' (full, none, ...)").
int eval_systems_select(const char *list, int with_compressed, int *on, pith_err *err);

// The systems of the registry's files.
extern const eval_system eval_sys_compressed, eval_sys_full, eval_sys_none, eval_sys_truncated, eval_sys_no_layer0;
// eval_sys_hard.c: hard compression (an instance per --hard spec) and the chain (hard, then the
// compressed system on the survivors).
extern const eval_system eval_sys_hard, eval_sys_chain;
// eval_sys_press.c: a KV press (an instance per --press spec).
extern const eval_system eval_sys_press;

// ---- hard compression (eval_sys_hard.c) ---------------------------------------------------------

// A --hard spec: METHOD:RATIO, RATIO a number > 1 (2 keeps half the context's tokens) or k (the
// soft compressor's budget: k tokens).
typedef struct eval_hard_method eval_hard_method;
typedef struct {
  const eval_hard_method *method;
  double ratio;  // > 1; 0 with at_k
  int at_k;
} eval_hard_spec;

// 0, or -1 with err naming the spec ("unknown method 'foo' (llmlingua, longllmlingua, llmlingua2, ehpc)").
int eval_hard_parse(const char *spec, eval_hard_spec *out, pith_err *err);
// Every spec of a comma-separated list (spaces after commas allowed); the count, or -1 with err.
int eval_hard_parse_list(const char *list, pith_err *err);
// The system's name: "llmlingua@4x", "llmlingua@2.5x", "llmlingua@k".
void eval_hard_name(const eval_hard_spec *s, char *out, size_t len);
// 0 when dir looks like a causal LM folder (config.json naming no classifier), else -1 with err.
int eval_hard_check_scorer(const char *dir, pith_err *err);
// 0 when dir is a BERT or XLM-R folder (llmlingua2's classifier), else -1 with err.
int eval_hard_check_classifier(const char *dir, pith_err *err);
// 1 when a spec of the (valid) list uses method ("llmlingua2"), else 0.
int eval_hard_uses(const char *list, const char *method);

// ---- KV presses (eval_sys_press.c) --------------------------------------------------------------

// A --press spec: press_parse's [adakv-]NAME:RATIO[:KEY=VALUE,...] (models/press.h), optionally
// followed by ":aware" (question-aware, qa only: the question is prefilled and pressed with the
// context, an empty question follows).
typedef struct {
  press p;
  int aware;
  char name[128];  // "snapkv@0.5", "adakv-snapkv@0.25", "snapkv@0.5:window=16", "snapkv@0.5+q"
} eval_press_spec;

// 0, or -1 with err naming the spec (press_parse's messages).
int eval_press_parse(const char *spec, eval_press_spec *out, pith_err *err);
// Splits a --press list into its specs in place: a comma starts a new spec only where what follows
// it reads NAME:... (press parameters are comma-separated too: snapkv:0.5:window=16,kernel=3,knorm:0.5).
// specs receives at most max pointers into list; the count, or -1 with err.
int eval_press_split(char *list, char **specs, int max, pith_err *err);
// Every spec of a list parses, no two share a name; the count, or -1 with err.
int eval_press_parse_list(const char *list, pith_err *err);
// Whether sp's press runs on a prefill of n tokens (snapkv: n > window_size); 0, or EVAL_USAGE
// (eval.h) with err naming the record (index, id or NULL) and the parameter to lower.
int eval_press_check_len(const eval_press_spec *sp, int64_t index, const char *id, int n, pith_err *err);

#endif
