// eval_sys_context: the baselines that hand the base model (no LoRA) the context as text, with the
// same generation budget as the compressed system:
//   full       [bos] + the context (cut to cutoff_len) + the decoder prompt (qa only: for regen the
//              context is the answer);
//   none       the decoder prompt alone (regen: [bos] alone);
//   truncated  [bos] + the first k context tokens + the decoder prompt, k being the compressor's
//              number of compress tokens, so it spends as many positions as the compressed prefix
//              (regen: the prediction is those k tokens' text and their continuation).
#include "eval.h"

static int build_full(void *state, const eval_env *env, const eval_example *ex, eval_input *in, pith_err *err) {
  (void)state;
  in->n_read = ex->n_context;
  return eval_text_prompt(env, ex, ex->n_context, &in->prompt, &in->n_prompt, err);
}

static int build_none(void *state, const eval_env *env, const eval_example *ex, eval_input *in, pith_err *err) {
  (void)state;
  return eval_text_prompt(env, ex, EVAL_NO_CONTEXT, &in->prompt, &in->n_prompt, err);
}

static int build_truncated(void *state, const eval_env *env, const eval_example *ex, eval_input *in, pith_err *err) {
  (void)state;
  int k = env->k < ex->n_context ? env->k : ex->n_context;
  if (env->task == EVAL_REGEN) in->echo = ex->context, in->n_echo = k;
  in->n_read = k;
  if (eval_text_prompt(env, ex, k, &in->prompt, &in->n_prompt, err)) return -1;
  // regen's prompt is all context ([bos] + k tokens, no decoder prompt after them)
  in->kv_len = in->n_prompt - (env->task == EVAL_QA ? ex->n_decoder_prompt : 0);
  return 0;
}

const eval_system eval_sys_full = {
  .name = "full", .baseline = 1, .qa_only = "the context is the answer", .build = build_full};
const eval_system eval_sys_none = {.name = "none", .baseline = 1, .build = build_none};
const eval_system eval_sys_truncated = {.name = "truncated", .baseline = 1, .build = build_truncated};
