// eval_sys_compressed: the soft-token compressor (500x or ICAE) of the export folder. The encoder
// reads the context padded to cutoff_len (so the compress tokens sit where training put them);
// the decoder reads the decoder prompt after the compressed prefix as its K/V cache: for 500x the
// compress positions' K/V, for ICAE the K/V of [memory; AE?] run as input embeddings, which under
// causal attention is the same computation as comp_decode's [memory; AE?; tokens].
//
// Its check (--verify) runs comp_decode without a cache, in the compressor's own input layout, on
// prompt + generation: every generated token must be a greedy choice of its logits, to VERIFY_TOL.
#include <stdlib.h>
#include <string.h>

#include "compressor.h"
#include "eval.h"
#include "export.h"

#define VERIFY_TOL 1e-4  // logit gap tolerated between cached generation and comp_decode

typedef struct {
  compressor *comp;
  int64_t verified;  // generations checked
  double gap;        // the largest logit gap seen
} comp_state;

static void state_free(void *p) {
  comp_state *s = p;
  if (!s) return;
  comp_free(s->comp);
  free(s);
}

static int init(const eval_env *env, const eval_instance *self, void **state, pith_err *err) {
  (void)self;
  comp_state *s = calloc(1, sizeof *s);
  if (!s) return pith_fail(err, "out of memory");
  *state = s;
  if (export_load(env->export_dir, env->model, &s->comp, err)) return -1;
  // A finetuned ICAE decoder reads no AE token, and the export cannot say (export.h).
  if (env->task == EVAL_QA) s->comp->cfg.ae_token = 0;
  return 0;
}

static void code_free(void *p) {
  comp_code_free(p);
  free(p);
}

static int build(void *state, const eval_env *env, const eval_example *ex, eval_input *in, pith_err *err) {
  comp_state *s = state;
  const llama_model *m = env->model;
  int N = env->cutoff;
  int64_t *ids = malloc(sizeof(int64_t) * (size_t)N);
  uint8_t *mask = malloc((size_t)N);
  in->prompt = malloc(sizeof(int32_t) * (size_t)ex->n_decoder_prompt);
  comp_code *code = calloc(1, sizeof *code);
  if (!ids || !mask || !in->prompt || !code) {
    free(ids), free(mask), free(code);
    return pith_fail(err, "out of memory");
  }
  memcpy(in->prompt, ex->decoder_prompt, sizeof(int32_t) * (size_t)ex->n_decoder_prompt);
  in->n_prompt = ex->n_decoder_prompt;
  for (int t = 0; t < N; t++) {
    ids[t] = t < ex->n_context ? ex->context[t] : env->pad;
    mask[t] = t < ex->n_context;
  }
  pt_tensor *ti = pt_to_device(pt_from_data(ids, PT_I64, PT_SHAPE(1, N), PT_CPU), m->device);
  pt_tensor *tm = pt_to_device(pt_from_data(mask, PT_BOOL, PT_SHAPE(1, N), PT_CPU), m->device);
  free(ids), free(mask);
  if (!ti || !tm) {
    free(code);
    return pt_fail(err, "compressed");
  }
  if (comp_encode(s->comp, ti, tm, NULL, code, err)) {
    free(code);
    return -1;
  }
  in->priv = code, in->priv_free = code_free;
  // The decoder's tokens continue after the prefix (positions P.., under either 500x position
  // policy), exactly what generate() does with a prefix; the check compares with comp_decode.
  if (comp_prefix_kv(s->comp, code, &in->prefix_k, &in->prefix_v, err)) return -1;
  in->n_read = (int)pt_shape_of(in->prefix_k[0]).d[2];  // the prefix's positions P
  return 0;
}

// The decoder's logits from comp_decode on prompt + gen (no cache) must pick every generated token
// greedily, to VERIFY_TOL. The eos that stopped generation is checked too.
static int check(void *state, const eval_env *env, const eval_input *in, const int32_t *gen, int n_gen,
                 pith_err *err) {
  comp_state *st = state;
  if (n_gen == 0) return 0;
  const int32_t *prompt = in->prompt;
  int n_prompt = in->n_prompt;
  int M = n_prompt + n_gen - 1, V = env->model->cfg.vocab_size;
  int64_t *ids = malloc(sizeof(int64_t) * (size_t)M);
  float *logits = malloc(sizeof(float) * (size_t)M * (size_t)V);
  int rc = ids && logits ? 0 : pith_fail(err, "out of memory");
  for (int j = 0; j < M && !rc; j++) ids[j] = j < n_prompt ? prompt[j] : gen[j - n_prompt];
  pt_tensor *dec = rc ? NULL : pt_to_device(pt_from_data(ids, PT_I64, PT_SHAPE(1, M), PT_CPU), env->model->device);
  if (!rc && !dec) rc = pt_fail(err, "verify");
  pt_tensor *lg = dec ? comp_decode(st->comp, in->priv, dec, NULL, err) : NULL;
  if (!rc && !lg) rc = -1;  // comp_decode said why
  if (!rc && pt_to_data(pt_to_dtype(lg, PT_F32), logits, sizeof(float) * (size_t)M * V)) {
    rc = pt_fail(err, "verify");
  }
  for (int s = 0; s < n_gen && !rc; s++) {
    const float *row = logits + (size_t)(n_prompt - 1 + s) * V;
    float best = row[0];
    for (int v = 1; v < V; v++) best = row[v] > best ? row[v] : best;
    double gap = (double)best - row[gen[s]];
    if (gap > st->gap) st->gap = gap;
    if (!(gap <= VERIFY_TOL))
      rc = pith_fail(err, "verify: generated token %d (id %d) is %.3g below comp_decode's best logit: the cached "
                          "generation and comp_decode disagree", s, (int)gen[s], gap);
  }
  free(ids);
  free(logits);
  if (!rc) st->verified++;
  return rc;
}

static void report(void *state, FILE *f) {
  const comp_state *s = state;
  fprintf(f, "verify: %lld compressed generations are comp_decode's greedy choices (largest gap %.2g)\n",
          (long long)s->verified, s->gap);
}

const eval_system eval_sys_compressed = {.name = "compressed",
                                         .init = init,
                                         .build = build,
                                         .check = check,
                                         .report = report,
                                         .free = state_free};
