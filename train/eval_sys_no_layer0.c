// eval_sys_no_layer0: a qa diagnostic. [bos] + the context run through the base model; its per-layer
// K/V, layer 0's set to zero, are the prefix of the decoder prompt (which continues at their
// positions, as in the full baseline's prompt). A 500x prefix's layer-0 K/V come from the compress
// embeddings alone, so this is the full context as an encoder that reproduced it exactly at every
// later layer would give it: near `none` means the model reads answers at layer 0, where a 500x
// prefix cannot pass them on.
#include <stdlib.h>
#include <string.h>

#include "eval.h"

static int build(void *state, const eval_env *env, const eval_example *ex, eval_input *in, pith_err *err) {
  (void)state;
  const llama_model *m = env->model;
  // The full baseline's prompt: its text part is the prefix, its decoder prompt the prompt.
  int32_t *full;
  int n_full;
  if (eval_text_prompt(env, ex, ex->n_context, &full, &n_full, err)) return -1;
  int T = n_full - ex->n_decoder_prompt;
  int64_t *ids = malloc(sizeof(int64_t) * (size_t)T);
  in->prompt = malloc(sizeof(int32_t) * (size_t)ex->n_decoder_prompt);
  if (!ids || !in->prompt) {
    free(ids), free(full);
    return pith_fail(err, "out of memory");
  }
  for (int i = 0; i < T; i++) ids[i] = full[i];
  memcpy(in->prompt, full + T, sizeof(int32_t) * (size_t)ex->n_decoder_prompt);
  in->n_prompt = ex->n_decoder_prompt;
  in->n_read = ex->n_context;
  free(full);
  llama_inputs li = {.ids = pt_to_device(pt_from_data(ids, PT_I64, PT_SHAPE(1, T), PT_CPU), m->device), .want_kv = 1,
                     .no_logits = 1};
  free(ids);
  llama_outputs o;
  if (!li.ids) return pt_fail(err, "no_layer0");
  if (llama_forward(m, &li, &o, err)) return -1;
  o.k[0] = pt_zeros(pt_shape_of(o.k[0]), m->dtype, m->device);
  o.v[0] = pt_zeros(pt_shape_of(o.v[0]), m->dtype, m->device);
  in->prefix_k = o.k, in->prefix_v = o.v;  // the arrays change hands
  return 0;
}

const eval_system eval_sys_no_layer0 = {
  .name = "no_layer0", .baseline = 1, .qa_only = "it is for qa", .build = build};
