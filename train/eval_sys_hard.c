// eval_sys_hard: hard compression as `pith eval` systems (eval_system.h), through
// models/hard_compress.h.
//
//   hard   (an instance per --hard METHOD:RATIO, named "llmlingua@4x") the context, as text, is
//          compressed by the method with a causal LM scorer (--hard-scorer, default the base model
//          itself); the survivors, encoded by the base model's tokenizer, are read as the full
//          baseline reads the context: [bos] + survivors + the decoder prompt. For regen the
//          decoder prompt ([bos]) follows too, as it follows the compressed prefix: the base model
//          rewrites the text after reading what was kept of it.
//   chain  (with --compressor, "llmlingua@2x+500x") the same survivors are the context the soft
//          compressor's encoder reads (the compressed system's build on a copy of the example).
//
// The budget: by default pith's exact mode (hc_options.exact), so a system named 4x reads a
// quarter of the context's tokens under the base model's tokenizer; --hard-budget llmlingua keeps
// llmlingua's own budget (rate = 1/RATIO of the scorer's tokens), whose achieved ratio drifts
// (85 tokens at rate 0.25 kept 37 on stories260K). Either way the table reports the tokens read.
//
// A method is a row of METHODS: its name, hard_compress.h's options for it, and whether it reads
// the question (then it is for qa only).
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval.h"
#include "hard_compress.h"
#include "hf_folder.h"

struct eval_hard_method {
  const char *name;
  hc_options (*options)(void);  // hard_compress.h's settings of the method
  int question;                 // ranks or scores with the question: qa only
};

static const eval_hard_method METHODS[] = {
  {"llmlingua", hc_options_llmlingua, 0},
  {"longllmlingua", hc_options_longllmlingua, 1},
};
#define N_METHODS ((int)(sizeof METHODS / sizeof *METHODS))

// ---- specs --------------------------------------------------------------------------------------

static void method_names(char *out, size_t len) {
  out[0] = 0;
  for (int i = 0; i < N_METHODS; i++)
    snprintf(out + strlen(out), len - strlen(out), "%s%s", i ? ", " : "", METHODS[i].name);
}

int eval_hard_parse(const char *spec, eval_hard_spec *out, pith_err *err) {
  *out = (eval_hard_spec){0};
  const char *colon = strchr(spec, ':');
  if (!colon) return pith_fail(err, "'%s' is not METHOD:RATIO (e.g. llmlingua:4)", spec);
  size_t n = (size_t)(colon - spec);
  for (int i = 0; i < N_METHODS; i++)
    if (strlen(METHODS[i].name) == n && !strncmp(spec, METHODS[i].name, n)) out->method = &METHODS[i];
  if (!out->method) {
    char names[256];
    method_names(names, sizeof names);
    return pith_fail(err, "'%s': unknown method '%.*s' (%s)", spec, (int)n, spec, names);
  }
  const char *r = colon + 1;
  if (!strcmp(r, "k")) return out->at_k = 1, 0;
  char *end;
  errno = 0;
  double x = strtod(r, &end);
  if (!*r || *end || errno || !isfinite(x) || !(x > 1))
    return pith_fail(err, "'%s': the ratio must be a number > 1 (4 keeps a quarter of the context) or k, not '%s'",
                     spec, r);
  out->ratio = x;
  return 0;
}

int eval_hard_parse_list(const char *list, pith_err *err) {
  char buf[1024];
  if (snprintf(buf, sizeof buf, "%s", list) >= (int)sizeof buf) return pith_fail(err, "the list is too long");
  int n = 0;
  eval_hard_spec s;
  for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save), n++) {
    while (*t == ' ') t++;
    if (eval_hard_parse(t, &s, err)) return -1;
  }
  if (!n) return pith_fail(err, "no METHOD:RATIO given");
  return n;
}

void eval_hard_name(const eval_hard_spec *s, char *out, size_t len) {
  if (s->at_k) snprintf(out, len, "%s@k", s->method->name);
  else snprintf(out, len, "%s@%gx", s->method->name, s->ratio);
}

int eval_hard_check_scorer(const char *dir, pith_err *err) {
  if (!pith_is_dir(dir)) return pith_fail(err, "'%s': no such folder", dir);
  char path[4096];
  pith_path_join(path, sizeof path, dir, "config.json");
  char *cfg = pith_is_file(path) ? pith_read_file(path, NULL, err) : NULL;
  if (!cfg) return pith_fail(err, "'%s': no config.json (a causal LM folder such as llama is needed)", dir);
  int classifier = strstr(cfg, "ForTokenClassification") || strstr(cfg, "ForMaskedLM") ||
                   strstr(cfg, "ForSequenceClassification");
  int causal = strstr(cfg, "ForCausalLM") != NULL;
  free(cfg);
  if (classifier || !causal)
    return pith_fail(err, "'%s': %s, not a causal LM (the hard methods score tokens with one, such as llama)", dir,
                     classifier ? "a classifier" : "its config.json names no *ForCausalLM architecture");
  return 0;
}

// ---- the hard system ----------------------------------------------------------------------------

typedef struct {
  eval_hard_spec spec;
  llama_model *own_lm;  // loaded from --hard-scorer by the first hard system; NULL otherwise
  tokenizer *own_tok;
  scorer sc;
  const tokenizer *tok;  // the base model's
  // The last example's survivors, for a chain asking again about the same example.
  int have;
  int64_t index;
  int32_t *ids;
  int n;
} hard_state;

static void hard_free(void *p) {
  hard_state *s = p;
  if (!s) return;
  llama_free(s->own_lm);
  tokenizer_free(s->own_tok);
  free(s->ids);
  free(s);
}

static int hard_init(const eval_env *env, const eval_instance *self, void **state, pith_err *err) {
  hard_state *s = calloc(1, sizeof *s);
  if (!s) return pith_fail(err, "out of memory");
  *state = s;
  s->tok = env->tok;
  if (!self->arg) return pith_fail(err, "%s: no METHOD:RATIO", self->name);
  if (eval_hard_parse(self->arg, &s->spec, err)) return -1;
  if (!env->tok) return pith_fail(err, "%s: no tokenizer to read the context as text", self->name);
  if (s->spec.method->question && env->task != EVAL_QA)
    return pith_fail(err, "%s: %s reads the question, so it is for qa only", self->name, s->spec.method->name);
  if (s->spec.at_k && env->k < 1) return pith_fail(err, "%s: no k to compress to", self->name);
  const eval_instance *first = self->uses[0];
  if (first) {  // the scorer of the first hard system
    s->sc = ((const hard_state *)first->state)->sc;
  } else if (env->hard_scorer) {
    if (eval_hard_check_scorer(env->hard_scorer, err)) return -1;
    if (!(s->own_tok = tokenizer_load(env->hard_scorer, err))) return -1;
    if (!(s->own_lm = hf_model_load(env->hard_scorer, PT_F32, env->model->device, err))) return -1;
    s->sc = scorer_new(s->own_lm, s->own_tok);
  } else {  // the base model reads nothing new: scoring is a forward, which changes no weight
    s->sc = scorer_new((llama_model *)env->model, (tokenizer *)env->tok);
  }
  return 0;
}

// Tokens of a text under the base model's tokenizer (the exact budget's count).
static int64_t count_tokens(const char *text, void *ctx) {
  int32_t *ids = NULL;
  size_t n = 0;
  pith_err err = {{0}};
  if (tokenizer_encode(ctx, text, strlen(text), 0, &ids, &n, &err)) return -1;
  free(ids);
  return (int64_t)n;
}

static int hard_shorten(void *state, const eval_env *env, const eval_example *ex, const int32_t **ids, int *n,
                        pith_err *err) {
  hard_state *s = state;
  if (s->have && s->index == ex->index) return *ids = s->ids, *n = s->n, 0;
  s->have = 0;
  free(s->ids), s->ids = NULL, s->n = 0;
  char *text = tokenizer_decode(s->tok, ex->context, (size_t)ex->n_context, 1, err);
  if (!text) return -1;
  hc_options o = s->spec.method->options();
  o.concate_question = 0;  // the question is the decoder prompt's, as for every system
  o.exact = !env->hard_llmlingua_budget;
  o.count_target = count_tokens, o.count_ctx = (void *)s->tok;
  const char *question = s->spec.method->question ? ex->question : NULL;
  int rc = 0;
  if (o.exact) {  // 1/ratio of the context's tokens under the base model's tokenizer
    int64_t all = count_tokens(text, (void *)s->tok);
    if (all < 0) rc = pith_fail(err, "cannot count the context's tokens");
    o.target_tokens = s->spec.at_k ? env->k : (double)all / s->spec.ratio;
    if (o.target_tokens <= 0) o.target_tokens = 1e-9;  // an empty context: keep nothing
  } else {  // llmlingua's budget: rate of the scorer's tokens (k: k of them)
    o.rate = s->spec.at_k ? 1 : 1 / s->spec.ratio;
    o.target_tokens = s->spec.at_k ? env->k : -1;
  }
  hc_result r = {0};
  if (!rc) rc = hc_compress(&s->sc, (const char *const *)&text, 1, NULL, question, &o, &r, err);
  size_t m = 0;
  int32_t *kept = NULL;
  if (!rc) rc = tokenizer_encode(s->tok, r.context_prompt, strlen(r.context_prompt), 0, &kept, &m, err);
  hc_result_free(&r);
  free(text);
  if (rc) return -1;
  if ((int64_t)m > ex->n_context) m = (size_t)ex->n_context;  // re-encoding never outgrows the cut
  s->ids = kept, s->n = (int)m, s->index = ex->index, s->have = 1;
  *ids = s->ids, *n = s->n;
  return 0;
}

static int hard_build(void *state, const eval_env *env, const eval_example *ex, eval_input *in, pith_err *err) {
  const int32_t *kept;
  int n;
  if (hard_shorten(state, env, ex, &kept, &n, err)) return -1;
  eval_example short_ex = *ex;
  short_ex.context = kept, short_ex.n_context = n;
  int32_t *p;
  int np;
  if (eval_text_prompt(env, &short_ex, n, &p, &np, err)) return -1;
  in->n_read = n;
  if (env->task == EVAL_QA) return in->prompt = p, in->n_prompt = np, 0;
  // regen: the decoder prompt after the survivors, as after a compressed prefix
  in->prompt = realloc(p, sizeof(int32_t) * (size_t)(np + ex->n_decoder_prompt));
  if (!in->prompt) return free(p), pith_fail(err, "out of memory");
  memcpy(in->prompt + np, ex->decoder_prompt, sizeof(int32_t) * (size_t)ex->n_decoder_prompt);
  in->n_prompt = np + ex->n_decoder_prompt;
  return 0;
}

const eval_system eval_sys_hard = {.name = "hard",
                                   .init = hard_init,
                                   .build = hard_build,
                                   .free = hard_free,
                                   .shorten = hard_shorten};

// ---- the chain ----------------------------------------------------------------------------------
// Its state is its instance: the stages' states are theirs (the scorer and the compressor are not
// loaded twice, and the survivors of an example are computed once).

static int chain_init(const eval_env *env, const eval_instance *self, void **state, pith_err *err) {
  (void)env;
  const eval_instance *a = self->uses[0], *b = self->uses[1];
  if (!a || !b || !a->sys->shorten)
    return pith_fail(err, "%s: a chain needs a first stage that keeps text and a second one", self->name);
  *state = (void *)self;
  return 0;
}

static int chain_build(void *state, const eval_env *env, const eval_example *ex, eval_input *in, pith_err *err) {
  const eval_instance *self = state, *a = self->uses[0], *b = self->uses[1];
  const int32_t *kept;
  int n;
  if (a->sys->shorten(a->state, env, ex, &kept, &n, err)) return -1;
  eval_example short_ex = *ex;
  short_ex.context = kept, short_ex.n_context = n;
  short_ex.context_text = NULL;
  return b->sys->build(b->state, env, &short_ex, in, err);
}

static int chain_check(void *state, const eval_env *env, const eval_input *in, const int32_t *gen, int n_gen,
                       pith_err *err) {
  const eval_instance *b = ((const eval_instance *)state)->uses[1];
  return b->sys->check ? b->sys->check(b->state, env, in, gen, n_gen, err) : 0;
}

const eval_system eval_sys_chain = {.name = "chain", .init = chain_init, .build = chain_build, .check = chain_check};
