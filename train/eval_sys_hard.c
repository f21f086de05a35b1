// eval_sys_hard: hard compression as `pith eval` systems (eval_system.h), through
// models/hard_compress.h (llmlingua, longllmlingua), models/hard_compress_l2.h (llmlingua2) and
// models/ehpc.h (ehpc): the same library calls `pith compress --method ...` makes.
//
//   hard   (an instance per --hard METHOD:RATIO, named "llmlingua@4x") the context, as text, is
//          compressed by the method; the survivors, encoded by the base model's tokenizer, are read
//          as the full baseline reads the context: [bos] + survivors + the decoder prompt. For regen
//          the decoder prompt ([bos]) follows too, as it follows the compressed prefix: the base
//          model rewrites the text after reading what was kept of it. The kept text goes to
//          predictions.jsonl ("kept").
//   chain  (with --compressor, "llmlingua@2x+500x") the same survivors are the context the soft
//          compressor's encoder reads (the compressed system's build on a copy of the example).
//
// The scorers, loaded once for every hard system (the first hard system holds them):
//   llmlingua, longllmlingua  a causal LM (--hard-scorer, default the base model itself);
//   llmlingua2                a BERT or XLM-R token classifier (--l2-scorer DIR, e.g. what `pith
//                             distill` method=classifier exports); words weighed by their tokens under
//                             the base model's tokenizer (the exact budget) or cl100k's (--cl100k);
//   ehpc                      the base model itself (its heads are the base model's): evaluator heads
//                             from --ehpc-heads (an ehpc.json of `pith compress ehpc-probe`, a folder
//                             holding one, or L:h,h). It reads the question in qa (its window: the
//                             question's last tokens score the context); in regen the context's last
//                             tokens are the window. The window's context tokens are kept, so a window
//                             that reaches further into the context than the budget is shortened.
//
// The budget: by default pith's exact mode, so a system named 4x reads a quarter of the context's
// tokens under the base model's tokenizer (llmlingua: hc_options.exact; ehpc: its target_tokens,
// which are the base model's tokens); --hard-budget llmlingua keeps llmlingua's own budget (rate =
// 1/RATIO of the scorer's tokens), whose achieved ratio drifts (85 tokens at rate 0.25 kept 37 on
// stories260K). llmlingua2 keeps its own rule, rate 1/RATIO (k: k / the context's tokens) with its
// threshold the percentile of the words' keep probabilities weighted by their token counts: in the
// exact mode counted by the base model's tokenizer (so no cl100k is needed, and the ratio is near
// 1/RATIO of the tokens read, off by the percentile's ties), with --hard-budget llmlingua by cl100k as
// llmlingua 0.2.2 counts, which misses it by the tokenizers' difference. Either way the table
// reports the tokens read.
//
// A method is a row of METHODS: its name, its library, hard_compress.h's options for it, and
// whether it reads the question.
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "ehpc.h"
#include "encoder_folder.h"
#include "eval.h"
#include "hard_compress.h"
#include "hard_compress_l2.h"
#include "hf_folder.h"

typedef enum { LIB_HC, LIB_L2, LIB_EHPC } hard_lib;

struct eval_hard_method {
  const char *name;
  hard_lib lib;
  hc_options (*options)(void);  // LIB_HC: hard_compress.h's settings of the method
  int question;                 // 1: ranks or scores with the question: qa only; 2: with it when there is one
};

static const eval_hard_method METHODS[] = {
  {"llmlingua", LIB_HC, hc_options_llmlingua, 0},
  {"longllmlingua", LIB_HC, hc_options_longllmlingua, 1},
  {"llmlingua2", LIB_L2, NULL, 0},
  {"ehpc", LIB_EHPC, NULL, 2},
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

int eval_hard_uses(const char *list, const char *method) {
  char buf[1024];
  snprintf(buf, sizeof buf, "%s", list);
  eval_hard_spec sp;
  pith_err err = {{0}};
  for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    while (*t == ' ') t++;
    if (!eval_hard_parse(t, &sp, &err) && !strcmp(sp.method->name, method)) return 1;
  }
  return 0;
}

int eval_hard_check_classifier(const char *dir, pith_err *err) {
  if (!pith_is_dir(dir)) return pith_fail(err, "'%s': no such folder", dir);
  char path[4096];
  pith_path_join(path, sizeof path, dir, "config.json");
  if (!pith_is_file(path)) return pith_fail(err, "'%s': no config.json (llmlingua2 needs a BERT or XLM-R token classifier folder)", dir);
  if (!encoder_folder_is_encoder(dir))
    return pith_fail(err, "'%s': not a BERT or XLM-R token classifier (its config.json has no model_type bert or "
                          "xlm-roberta; llmlingua2 needs one, e.g. pith distill method=classifier's export)", dir);
  return 0;
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
    return pith_fail(err, "'%s': %s, not a causal LM (llmlingua and longllmlingua score tokens with one, such as "
                          "llama; llmlingua2's classifier goes to --l2-scorer)", dir,
                     classifier ? "a classifier" : "its config.json names no *ForCausalLM architecture");
  return 0;
}

// ---- the hard system ----------------------------------------------------------------------------

// What the hard systems share, loaded by the first that needs each part and owned by the first
// hard system (the others point at it).
typedef struct {
  // llmlingua, longllmlingua: the causal scorer
  int have_sc;
  llama_model *own_lm;  // loaded from --hard-scorer; NULL: the base model's
  tokenizer *own_tok;
  scorer sc;
  // llmlingua2: the classifier, its tokenizer and cl100k
  int have_l2;
  encoder_model *cls;
  tokenizer *cls_tok, *cl100k;
  l2_scorer l2;
  // ehpc: the evaluator heads of the base model
  int have_heads;
  ehpc_heads heads;
} hard_shared;

typedef struct {
  eval_hard_spec spec;
  hard_shared *sh;
  int owns_sh;
  const tokenizer *tok;  // the base model's
  // The last example's survivors (and their text), for a chain asking again about the same example.
  int have;
  int64_t index;
  int32_t *ids;
  int n;
  char *text;
} hard_state;

static void hard_free(void *p) {
  hard_state *s = p;
  if (!s) return;
  if (s->owns_sh && s->sh) {
    llama_free(s->sh->own_lm);
    tokenizer_free(s->sh->own_tok);
    encoder_free(s->sh->cls);
    tokenizer_free(s->sh->cls_tok);
    tokenizer_free(s->sh->cl100k);
    free(s->sh);
  }
  free(s->ids);
  free(s->text);
  free(s);
}

// --ehpc-heads: a folder or a file (ehpc_load_heads), or L:h,h.
static int load_heads_arg(const char *arg, ehpc_heads *h, pith_err *err) {
  if (!pith_is_dir(arg) && !pith_is_file(arg)) {
    if (strchr(arg, ':') && !strchr(arg, '/')) return ehpc_parse_heads(arg, h, err);
    return pith_fail(err, "'%s': no such file (pith compress ehpc-probe --model BASE --data DOCS.h5 writes "
                          "BASE/ehpc.json)", arg);
  }
  return ehpc_load_heads(arg, h, err);
}

static int load_causal(hard_shared *sh, const eval_env *env, pith_err *err) {
  if (env->hard_scorer) {
    if (eval_hard_check_scorer(env->hard_scorer, err)) return -1;
    if (!(sh->own_tok = tokenizer_load(env->hard_scorer, err))) return -1;
    if (!(sh->own_lm = hf_model_load(env->hard_scorer, PT_F32, env->model->device, err))) return -1;
    sh->sc = scorer_new(sh->own_lm, sh->own_tok);
  } else {  // the base model reads nothing new: scoring is a forward, which changes no weight
    sh->sc = scorer_new((llama_model *)env->model, (tokenizer *)env->tok);
  }
  sh->have_sc = 1;
  return 0;
}

static int load_l2(hard_shared *sh, const eval_env *env, pith_err *err) {
  if (!env->l2_scorer)
    return pith_fail(err, "llmlingua2 needs a token classifier: --l2-scorer DIR (a BERT or XLM-R folder, e.g. pith "
                          "distill method=classifier's export or a converted LLMLingua-2 model)");
  char cl_path[4200];
  pith_err why = {{0}};  // (err's message cannot be formatted into itself)
  if (eval_hard_check_classifier(env->l2_scorer, &why)) return pith_fail(err, "--l2-scorer %s", why.msg);
  // The tokenizer that weighs words: llmlingua's own budget counts cl100k tokens as llmlingua 0.2.2
  // does; the exact budget counts the base model's, whose tokens the system is named by.
  const tokenizer *counter = env->tok;
  if (env->hard_llmlingua_budget) {
    if (l2_find_cl100k(env->cl100k, cl_path, sizeof cl_path, err)) return -1;
    if (!(sh->cl100k = tokenizer_load(cl_path, err))) return -1;
    counter = sh->cl100k;
  }
  // on the CPU: l2_compress feeds the classifier CPU tensors
  if (!(sh->cls = encoder_folder_load(env->l2_scorer, PT_F32, PT_CPU, NULL, err))) return -1;
  if (!(sh->cls_tok = tokenizer_load(env->l2_scorer, err))) return -1;
  if (l2_scorer_init(&sh->l2, sh->cls, sh->cls_tok, counter, err)) return -1;
  sh->have_l2 = 1;
  return 0;
}

static int load_heads(hard_shared *sh, const eval_env *env, pith_err *err) {
  if (!env->ehpc_heads)
    return pith_fail(err, "ehpc needs the base model's evaluator heads: --ehpc-heads FILE (pith compress ehpc-probe "
                          "--model BASE --data DOCS.h5 writes BASE/ehpc.json)");
  pith_err why = {{0}};  // (err's message cannot be formatted into itself)
  if (load_heads_arg(env->ehpc_heads, &sh->heads, &why)) return pith_fail(err, "--ehpc-heads %s", why.msg);
  if (ehpc_check_heads(env->model, &sh->heads, &why))
    return pith_fail(err, "--ehpc-heads '%s' is not for this base model: %s", env->ehpc_heads, why.msg);
  sh->have_heads = 1;
  return 0;
}

static int hard_init(const eval_env *env, const eval_instance *self, void **state, pith_err *err) {
  hard_state *s = calloc(1, sizeof *s);
  if (!s) return pith_fail(err, "out of memory");
  *state = s;
  s->tok = env->tok;
  if (!self->arg) return pith_fail(err, "%s: no METHOD:RATIO", self->name);
  if (eval_hard_parse(self->arg, &s->spec, err)) return -1;
  if (!env->tok) return pith_fail(err, "%s: no tokenizer to read the context as text", self->name);
  const eval_hard_method *m = s->spec.method;
  if (m->question == 1 && env->task != EVAL_QA)
    return pith_fail(err, "%s: %s reads the question, so it is for qa only", self->name, m->name);
  if (s->spec.at_k && env->k < 1) return pith_fail(err, "%s: no k to compress to", self->name);
  const eval_instance *first = self->uses[0];
  if (first) {  // the scorers of the first hard system
    s->sh = ((const hard_state *)first->state)->sh;
  } else {
    if (!(s->sh = calloc(1, sizeof *s->sh))) return pith_fail(err, "out of memory");
    s->owns_sh = 1;
  }
  if (m->lib == LIB_HC && !s->sh->have_sc) return load_causal(s->sh, env, err);
  if (m->lib == LIB_L2 && !s->sh->have_l2) return load_l2(s->sh, env, err);
  if (m->lib == LIB_EHPC && !s->sh->have_heads) return load_heads(s->sh, env, err);
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

// The kept text of the context, malloc'd, by the spec's method; NULL with err.
static char *compress_text(hard_state *s, const eval_env *env, const eval_example *ex, const char *text,
                           pith_err *err) {
  const eval_hard_method *m = s->spec.method;
  const char *question = m->question ? ex->question : NULL;
  int exact = !env->hard_llmlingua_budget;
  int64_t all = count_tokens(text, (void *)s->tok);  // the context's tokens under the base model's tokenizer
  if (all < 0) {
    pith_fail(err, "cannot count the context's tokens");
    return NULL;
  }
  double target = s->spec.at_k ? env->k : (double)all / s->spec.ratio;  // the exact budget
  char *kept = NULL;
  if (m->lib == LIB_L2) {  // its own rule; the words' weights follow the budget (load_l2)
    l2_options lo = l2_options_default();
    lo.rate = s->spec.at_k ? (all > env->k ? (double)env->k / (double)all : 1) : 1 / s->spec.ratio;
    l2_result r;
    if (l2_compress(&s->sh->l2, &text, 1, &lo, &r, err)) return NULL;
    kept = strdup(r.prompt);
    l2_result_free(&r);
  } else if (m->lib == LIB_EHPC) {
    const ehpc_heads *h = &s->sh->heads;
    ehpc_options eo = {.rate = 1, .target_tokens = -1, .window = h->window ? h->window : 8,
                       .kernel = h->kernel ? h->kernel : 7};
    if (exact) eo.target_tokens = target;
    else if (s->spec.at_k) eo.target_tokens = env->k;
    else eo.rate = 1 / s->spec.ratio;
    // The window's context tokens (those after the question's, all of them without a question) are
    // kept, within the budget: a window reaching further back than the budget is shortened to it
    // (ehpc_compress refuses it otherwise; a short question at k tokens, regen at a high ratio).
    if (exact || s->spec.at_k) {
      int64_t kc = (int64_t)floor(eo.target_tokens + 0.5), nq = question ? count_tokens(question, (void *)s->tok) : 0;
      if (kc >= 1 && nq >= 0 && eo.window > nq + kc) eo.window = (int)(nq + kc);
    }
    hc_result r;
    if (ehpc_compress((llama_model *)env->model, s->tok, h, &text, 1, NULL, question, &eo, &r, NULL, NULL, err))
      return NULL;
    kept = strdup(r.context_prompt);
    hc_result_free(&r);
  } else {
    hc_options o = m->options();
    o.concate_question = 0;  // the question is the decoder prompt's, as for every system
    o.exact = exact;
    o.count_target = count_tokens, o.count_ctx = (void *)s->tok;
    if (o.exact) {  // 1/ratio of the context's tokens under the base model's tokenizer
      o.target_tokens = target;
      if (o.target_tokens <= 0) o.target_tokens = 1e-9;  // an empty context: keep nothing
    } else {  // llmlingua's budget: rate of the scorer's tokens (k: k of them)
      o.rate = s->spec.at_k ? 1 : 1 / s->spec.ratio;
      o.target_tokens = s->spec.at_k ? env->k : -1;
    }
    hc_result r = {0};
    if (hc_compress(&s->sh->sc, &text, 1, NULL, question, &o, &r, err)) return NULL;
    kept = strdup(r.context_prompt);
    hc_result_free(&r);
  }
  if (!kept) pith_fail(err, "out of memory");
  return kept;
}

static int hard_shorten(void *state, const eval_env *env, const eval_example *ex, const int32_t **ids, int *n,
                        pith_err *err) {
  hard_state *s = state;
  if (s->have && s->index == ex->index) return *ids = s->ids, *n = s->n, 0;
  s->have = 0;
  free(s->ids), s->ids = NULL, s->n = 0;
  free(s->text), s->text = NULL;
  char *text = tokenizer_decode(s->tok, ex->context, (size_t)ex->n_context, 1, err);
  if (!text) return -1;
  char *kept_text = compress_text(s, env, ex, text, err);
  free(text);
  if (!kept_text) return -1;
  size_t m = 0;
  int32_t *kept = NULL;
  if (tokenizer_encode(s->tok, kept_text, strlen(kept_text), 0, &kept, &m, err)) return free(kept_text), -1;
  if ((int64_t)m > ex->n_context) m = (size_t)ex->n_context;  // re-encoding never outgrows the cut
  s->ids = kept, s->n = (int)m, s->index = ex->index, s->have = 1, s->text = kept_text;
  *ids = s->ids, *n = s->n;
  return 0;
}

static int hard_build(void *state, const eval_env *env, const eval_example *ex, eval_input *in, pith_err *err) {
  const int32_t *kept;
  int n;
  if (hard_shorten(state, env, ex, &kept, &n, err)) return -1;
  const hard_state *s = state;
  if (!(in->kept_text = strdup(s->text))) return pith_fail(err, "out of memory");
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
