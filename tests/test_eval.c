// test_eval: pith eval's systems through their interface (eval_system.h), on a tiny random model and
// an example made of ids (no tokenizer, no corpus): `none` reads the decoder prompt alone,
// `truncated` exactly k context tokens (regen: and its prediction starts with them), `full` the
// whole context, and its greedy output is generate()'s on that prompt; no_layer0's prefix is the
// context's own K/V with layer 0's zeroed; a hard-compression system and a chain (hard, then
// no_layer0's K/V) written here plug in without touching the engine; the registry selects by name
// and rejects an unknown one with a clear message; no tensor handle leaks.
#include <stdint.h>

#include "check.h"
#include "eval.h"
#include "generate.h"

enum { BOS = 1, EOS = 2, PAD = 0, NEW = 8, K = 3 };

static const int32_t EOS_IDS[] = {EOS};
static const int32_t CTX[] = {5, 6, 7, 8, 9, 10, 11};
static const int32_t DP[] = {20, 21, 22, 23};  // the decoder prompt: QP, the question Q, AP
static int32_t QP[] = {20}, AP[] = {23};
static const int32_t Q[] = {21, 22};
static const task_tokens TOKENS = {.bos = BOS, .eos = EOS, .pad = PAD, .qp = QP, .n_qp = 1, .ap = AP, .n_ap = 1};
static const char *const GOLDS[] = {"an answer"};
#define N_CTX ((int)(sizeof CTX / sizeof *CTX))
#define N_DP ((int)(sizeof DP / sizeof *DP))

static llama_model *small_model(void) {
  llama_config c = {.arch = LLAMA_ARCH_LLAMA, .vocab_size = 64, .dim = 32, .hidden_dim = 64, .n_layers = 2,
                    .n_heads = 4, .n_kv_heads = 2, .max_seq_len = 128, .bos_id = -1, .eos_id = -1};
  pith_err err = {{0}};
  llama_model *m = llama_new_random(&c, 7, PT_F32, PT_CPU, &err);
  CHECK_MSG(m != NULL, "%s", err.msg);
  if (!m) exit(1);
  // Spread logits, so greedy decoding wanders over the vocabulary; the embeddings keep their small
  // scale, so attention to the context matters (none and full then generate differently).
  pt_scope s = pt_scope_begin();
  pt_copy_(m->lm_head, pt_mul_scalar(m->lm_head, 40));
  pt_scope_end(s);
  CHECK(pt_ok());
  return m;
}

static eval_env make_env(const llama_model *m, eval_task task) {
  return (eval_env){.task = task, .model = m, .tokens = &TOKENS, .bos = BOS, .pad = PAD, .eos = EOS_IDS, .n_eos = 1, .k = K,
                    .cutoff = 16, .max_new = NEW, .export_dir = ""};
}

static eval_example make_example(eval_task task) {
  eval_example ex = {.index = 3, .context = CTX, .n_context = N_CTX};
  if (task == EVAL_QA) {
    ex.question = "what?", ex.question_ids = Q, ex.n_question_ids = 2, ex.decoder_prompt = DP, ex.n_decoder_prompt = N_DP, ex.golds = GOLDS, ex.n_golds = 1;
  } else {
    static const int32_t bos[] = {BOS};
    ex.decoder_prompt = bos, ex.n_decoder_prompt = 1, ex.reference = "the text";
  }
  return ex;
}

// ids (n) equal the concatenation a (na) + b (nb) + c (nc).
static int ids_are(const int32_t *ids, int n, const int32_t *a, int na, const int32_t *b, int nb, const int32_t *c,
                   int nc) {
  if (n != na + nb + nc) return 0;
  for (int i = 0; i < n; i++) {
    int32_t want = i < na ? a[i] : i < na + nb ? b[i - na] : c[i - na - nb];
    if (ids[i] != want) return 0;
  }
  return 1;
}

// Builds sys's decoder input for ex (in the caller's scope).
static eval_input build(const eval_env *env, const eval_system *sys, const eval_example *ex) {
  eval_input in = {0};
  pith_err err = {{0}};
  CHECK_MSG(sys->build(NULL, env, ex, &in, &err) == 0, "%s: %s", sys->name, err.msg);
  return in;
}

static void test_none_and_truncated(const eval_env *qa, const eval_env *regen) {
  static const int32_t bos[] = {BOS};
  eval_example ex = make_example(EVAL_QA);
  eval_input in = build(qa, &eval_sys_none, &ex);
  CHECK_MSG(ids_are(in.prompt, in.n_prompt, DP, N_DP, NULL, 0, NULL, 0), "none: the prompt is not the decoder prompt");
  CHECK(in.prefix_k == NULL && in.prefix_v == NULL && in.n_echo == 0);
  eval_input_free(&in);

  in = build(qa, &eval_sys_truncated, &ex);
  CHECK_MSG(ids_are(in.prompt, in.n_prompt, bos, 1, CTX, K, DP, N_DP), "truncated: not [bos] + %d context tokens + "
            "the decoder prompt (%d ids)", K, in.n_prompt);
  CHECK(in.prefix_k == NULL && in.n_echo == 0);
  eval_input_free(&in);
  ex.n_context = 2;  // shorter than k: all of it
  in = build(qa, &eval_sys_truncated, &ex);
  CHECK(ids_are(in.prompt, in.n_prompt, bos, 1, CTX, 2, DP, N_DP));
  eval_input_free(&in);

  // regen: no decoder prompt after the context ([bos] leads already); the prediction continues the k tokens.
  eval_example rx = make_example(EVAL_REGEN);
  in = build(regen, &eval_sys_truncated, &rx);
  CHECK_MSG(ids_are(in.prompt, in.n_prompt, bos, 1, CTX, K, NULL, 0), "regen truncated: %d ids", in.n_prompt);
  CHECK(in.n_echo == K && in.echo == CTX);
  eval_input_free(&in);
  int32_t *gen = NULL;
  int n = 0;
  pith_err err = {{0}};
  CHECK_MSG(eval_system_run(regen, &eval_sys_truncated, NULL, &rx, NULL, &gen, &n, &err) == 0, "%s", err.msg);
  CHECK_MSG(n > K && ids_are(gen, K, CTX, K, NULL, 0, NULL, 0), "regen truncated: the prediction does not start "
            "with the %d context tokens (%d ids)", K, n);
  free(gen);
  in = build(regen, &eval_sys_none, &rx);
  CHECK(ids_are(in.prompt, in.n_prompt, bos, 1, NULL, 0, NULL, 0));
  eval_input_free(&in);
}

static void test_full(const eval_env *env) {
  static const int32_t bos[] = {BOS};
  eval_example ex = make_example(EVAL_QA);
  eval_input in = {0};
  int32_t *got = NULL, *want = NULL;
  int n_got = 0, n_want = 0;
  pith_err err = {{0}};
  CHECK_MSG(eval_system_run(env, &eval_sys_full, NULL, &ex, &in, &got, &n_got, &err) == 0, "%s", err.msg);
  CHECK_MSG(ids_are(in.prompt, in.n_prompt, bos, 1, CTX, N_CTX, DP, N_DP), "full: not [bos] + context + decoder "
            "prompt (%d ids)", in.n_prompt);
  // generate() on the concatenated prompt directly, the final eos dropped as the engine does.
  int32_t prompt[1 + N_CTX + N_DP];
  prompt[0] = BOS;
  memcpy(prompt + 1, CTX, sizeof CTX);
  memcpy(prompt + 1 + N_CTX, DP, sizeof DP);
  gen_config gc = gen_config_default();
  gc.max_new_tokens = NEW, gc.eos_ids = EOS_IDS, gc.n_eos = 1;
  CHECK_MSG(generate(env->model, NULL, NULL, NULL, prompt, 1 + N_CTX + N_DP, &gc, NULL, NULL, &want, &n_want,
                     &err) == 0, "%s", err.msg);
  if (n_want > 0 && want[n_want - 1] == EOS) n_want--;
  CHECK_MSG(n_got > 0 && ids_are(got, n_got, want, n_want, NULL, 0, NULL, 0), "full: %d ids, generate() %d", n_got,
            n_want);
  // The none baseline reads another prompt, and this model answers it otherwise (the test has teeth).
  int32_t *other = NULL;
  int n_other = 0;
  CHECK(eval_system_run(env, &eval_sys_none, NULL, &ex, NULL, &other, &n_other, &err) == 0);
  CHECK_MSG(!ids_are(other, n_other, got, n_got, NULL, 0, NULL, 0), "none and full generate the same");
  eval_input_free(&in);
  free(got), free(want), free(other);

  // A context that starts with bos gets no second one.
  int32_t ctx[N_CTX];
  memcpy(ctx, CTX, sizeof ctx);
  ctx[0] = BOS;
  ex.context = ctx;
  in = build(env, &eval_sys_full, &ex);
  CHECK_MSG(ids_are(in.prompt, in.n_prompt, ctx, N_CTX, DP, N_DP, NULL, 0), "full: a second bos (%d ids)",
            in.n_prompt);
  eval_input_free(&in);
}

// The sum of |x| over a tensor: 0 exactly when it is all zeros.
static double sum_abs(const pt_tensor *t) {
  return pt_item(pt_sum(pt_abs(t)));
}

// no_layer0 on ex: the decoder prompt after a prefix of 1 + n_context positions whose layer-0 K/V are
// zero and whose later layers are the context's own K/V.
static void check_no_layer0(const eval_env *env, const eval_input *in, const eval_example *ex, const char *what) {
  const llama_model *m = env->model;
  CHECK_MSG(ids_are(in->prompt, in->n_prompt, ex->decoder_prompt, ex->n_decoder_prompt, NULL, 0, NULL, 0),
            "%s: the prompt is not the decoder prompt", what);
  CHECK_MSG(in->prefix_k && in->prefix_v, "%s: no prefix", what);
  if (!in->prefix_k || !in->prefix_v) return;
  int P = 1 + ex->n_context;
  pt_shape sh = pt_shape_of(in->prefix_k[0]);
  CHECK_MSG(sh.ndim == 4 && sh.d[2] == P, "%s: prefix of %lld positions, want %d", what, (long long)sh.d[2], P);
  CHECK_MSG(sum_abs(in->prefix_k[0]) == 0 && sum_abs(in->prefix_v[0]) == 0, "%s: layer 0's K/V are not zero", what);
  int64_t ids[64];
  ids[0] = BOS;
  for (int i = 0; i < ex->n_context; i++) ids[1 + i] = ex->context[i];
  llama_inputs li = {.ids = pt_from_data(ids, PT_I64, PT_SHAPE(1, P), PT_CPU), .want_kv = 1, .no_logits = 1};
  llama_outputs o;
  pith_err err = {{0}};
  CHECK_MSG(llama_forward(m, &li, &o, &err) == 0, "%s", err.msg);
  CHECK_MSG(sum_abs(o.k[0]) > 0, "%s: the context's own layer-0 K are zero: the test would be weak", what);
  for (int l = 1; l < m->cfg.n_layers; l++)
    CHECK_MSG(sum_abs(pt_sub(o.k[l], in->prefix_k[l])) == 0 && sum_abs(pt_sub(o.v[l], in->prefix_v[l])) == 0,
              "%s: layer %d's K/V are not the context's", what, l);
  llama_outputs_free(&o);
}

static void test_no_layer0(const eval_env *env) {
  eval_example ex = make_example(EVAL_QA);
  eval_input in = build(env, &eval_sys_no_layer0, &ex);
  check_no_layer0(env, &in, &ex, "no_layer0");
  eval_input_free(&in);
  CHECK(eval_sys_no_layer0.qa_only != NULL && eval_sys_full.qa_only != NULL && eval_sys_none.qa_only == NULL);
}

// ---- systems written here, through the interface alone ------------------------------------------

// Hard compression in miniature: keeps every other context token, then reads the rest as full does.
static int drop_context(const eval_example *ex, int32_t *kept, eval_example *out) {
  int n = 0;
  for (int i = 0; i < ex->n_context; i += 2) kept[n++] = ex->context[i];
  *out = *ex;
  out->context = kept, out->n_context = n;
  return n;
}

static int build_every_other(void *state, const eval_env *env, const eval_example *ex, eval_input *in,
                             pith_err *err) {
  int32_t kept[64];
  eval_example short_ex;
  drop_context(ex, kept, &short_ex);
  return eval_sys_full.build(state, env, &short_ex, in, err);
}

// A chain: the same hard step, then no_layer0's K/V of what is left.
static int build_chain(void *state, const eval_env *env, const eval_example *ex, eval_input *in, pith_err *err) {
  int32_t kept[64];
  eval_example short_ex;
  drop_context(ex, kept, &short_ex);
  return eval_sys_no_layer0.build(state, env, &short_ex, in, err);
}

static void test_new_systems(const eval_env *env) {
  static const int32_t bos[] = {BOS}, half[] = {5, 7, 9, 11};
  const eval_system hard = {.name = "every_other", .build = build_every_other};
  const eval_system chain = {.name = "every_other+no_layer0", .build = build_chain};
  eval_example ex = make_example(EVAL_QA);
  int32_t *gen = NULL;
  int n = 0;
  pith_err err = {{0}};
  eval_input in = {0};
  CHECK_MSG(eval_system_run(env, &hard, NULL, &ex, &in, &gen, &n, &err) == 0, "%s", err.msg);
  CHECK_MSG(ids_are(in.prompt, in.n_prompt, bos, 1, half, 4, DP, N_DP), "every_other: %d ids", in.n_prompt);
  CHECK(n > 0);
  eval_input_free(&in);
  free(gen);
  CHECK_MSG(eval_system_run(env, &chain, NULL, &ex, &in, &gen, &n, &err) == 0, "%s", err.msg);
  eval_example short_ex = ex;
  short_ex.context = half, short_ex.n_context = 4;
  check_no_layer0(env, &in, &short_ex, "every_other+no_layer0");
  CHECK(n > 0);
  eval_input_free(&in);
  free(gen);
}

// ---- the registry -------------------------------------------------------------------------------

static void test_registry(void) {
  int on[EVAL_MAX_SYSTEMS];
  pith_err err = {{0}};
  CHECK(eval_n_systems >= 5 && eval_n_systems <= EVAL_MAX_SYSTEMS);
  for (int i = 0; i < eval_n_systems; i++) {
    CHECK_MSG(eval_systems[i]->build != NULL, "%s has no build", eval_systems[i]->name);
    CHECK(eval_system_find(eval_systems[i]->name) == eval_systems[i]);
  }
  CHECK(eval_system_find("oracle") == NULL);
  CHECK(eval_system_find("truncated") == &eval_sys_truncated);

  CHECK(eval_systems_select("oracle", 0, on, &err) == -1);
  CHECK_CONTAINS(err.msg, "unknown baseline 'oracle'");
  CHECK_CONTAINS(err.msg, "(full, none, truncated, no_layer0)");
  err.msg[0] = 0;
  CHECK(eval_systems_select("full,compressed", 1, on, &err) == -1);  // not a baseline
  CHECK_CONTAINS(err.msg, "unknown baseline 'compressed'");

  CHECK_MSG(eval_systems_select("none, no_layer0", 1, on, &err) == 0, "%s", err.msg);
  for (int i = 0; i < eval_n_systems; i++) {
    const char *n = eval_systems[i]->name;
    int want = !strcmp(n, "compressed") || !strcmp(n, "none") || !strcmp(n, "no_layer0");
    CHECK_MSG(on[i] == want, "%s: on %d, want %d", n, on[i], want);
  }
  CHECK(eval_systems_select("", 0, on, &err) == 0);
  for (int i = 0; i < eval_n_systems; i++) CHECK(on[i] == 0);
  CHECK(eval_systems_select(EVAL_DEFAULT_BASELINES, 0, on, &err) == 0);
  int n_on = 0;
  for (int i = 0; i < eval_n_systems; i++) n_on += on[i];
  CHECK(n_on == 3 && !on[0] && eval_systems[0] == &eval_sys_compressed);
}

int main(void) {
  pt_set_num_threads(1);
  test_registry();
  llama_model *m = small_model();
  eval_env qa = make_env(m, EVAL_QA), regen = make_env(m, EVAL_REGEN);
  int was = pt_set_grad_enabled(0);
  size_t live = pt_live_handles();
  pt_scope s = pt_scope_begin();
  test_none_and_truncated(&qa, &regen);
  test_full(&qa);
  test_no_layer0(&qa);
  test_new_systems(&qa);
  pt_scope_end(s);
  CHECK_MSG(pt_live_handles() == live, "%zu handles before, %zu after", live, pt_live_handles());
  CHECK_MSG(pt_ok(), "%s", pt_error());
  pt_set_grad_enabled(was);
  llama_free(m);
  return check_done("test_eval");
}
