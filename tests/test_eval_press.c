// test_eval_press: pith eval's KV-press systems (eval_sys_press.c) on a tiny random model, through
// the engine's one-system path (eval_system_run): a press system generates what generate_pressed
// called directly on [bos] + context and the question prompt gives (question-agnostic, aware, regen);
// snapkv at ratio 0 generates what the full baseline does; the KV bytes of full, truncated, none,
// no_layer0 and a press at 0.5 are the ones computed here from the shapes; a window as long as the
// context is a usage error naming the record and window_size; specs parse, split and name as
// documented and bad ones are refused; no tensor handle leaks.
#include <stdint.h>

#include "check.h"
#include "eval.h"
#include "generate.h"

enum { BOS = 1, EOS = 2, PAD = 0, NEW = 8, K = 3 };
enum { LAYERS = 2, HKV = 2, HD = 8 };  // small_model's: dim 32 over 4 heads, 2 KV heads

static const int32_t EOS_IDS[] = {EOS};
static const int32_t CTX[] = {5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
static const int32_t DP[] = {20, 21, 22, 23};  // the decoder prompt: QP, the question Q, AP
static int32_t QP[] = {20}, AP[] = {23};
static const int32_t Q[] = {21, 22};
static const task_tokens TOKENS = {.bos = BOS, .eos = EOS, .pad = PAD, .qp = QP, .n_qp = 1, .ap = AP, .n_ap = 1};
static const char *const GOLDS[] = {"an answer"};
#define N_CTX ((int)(sizeof CTX / sizeof *CTX))
#define N_DP ((int)(sizeof DP / sizeof *DP))

static llama_model *small_model(void) {
  llama_config c = {.arch = LLAMA_ARCH_LLAMA, .vocab_size = 64, .dim = 32, .hidden_dim = 64, .n_layers = LAYERS,
                    .n_heads = 4, .n_kv_heads = HKV, .max_seq_len = 128, .bos_id = -1, .eos_id = -1};
  pith_err err = {{0}};
  llama_model *m = llama_new_random(&c, 11, PT_F32, PT_CPU, &err);
  CHECK_MSG(m != NULL, "%s", err.msg);
  if (!m) exit(1);
  // Spread logits, so greedy decoding wanders over the vocabulary (and a pressed cache shows).
  pt_scope s = pt_scope_begin();
  pt_copy_(m->lm_head, pt_mul_scalar(m->lm_head, 40));
  pt_scope_end(s);
  CHECK(pt_ok() && m->cfg.head_dim == HD);
  return m;
}

static eval_env make_env(const llama_model *m, eval_task task) {
  return (eval_env){.task = task, .model = m, .tokens = &TOKENS, .bos = BOS, .pad = PAD, .eos = EOS_IDS, .n_eos = 1,
                    .k = K, .cutoff = 32, .max_new = NEW, .export_dir = ""};
}

static eval_example make_example(eval_task task) {
  eval_example ex = {.index = 3, .id = "ex3", .context = CTX, .n_context = N_CTX};
  if (task == EVAL_QA) {
    ex.question = "what?", ex.question_ids = Q, ex.n_question_ids = 2, ex.decoder_prompt = DP, ex.n_decoder_prompt = N_DP;
    ex.golds = GOLDS, ex.n_golds = 1;
  } else {
    static const int32_t bos[] = {BOS};
    ex.decoder_prompt = bos, ex.n_decoder_prompt = 1, ex.reference = "the text";
  }
  return ex;
}

// One KV entry's K and V over every layer and KV head, f32: what the bytes are counted in.
static int64_t entry_bytes(void) { return (int64_t)LAYERS * 2 * HKV * HD * 4; }

// A press instance of spec, inited for env (the caller frees state).
static void *press_init(const eval_env *env, const char *spec) {
  eval_instance inst = {.sys = &eval_sys_press, .arg = spec};
  void *state = NULL;
  pith_err err = {{0}};
  CHECK_MSG(eval_sys_press.init(env, &inst, &state, &err) == 0, "%s: %s", spec, err.msg);
  return state;
}

// The press system of spec on ex, and generate_pressed on the same context and question directly
// (the final eos dropped, as the engine drops it): the same ids. Returns the system's kv_bytes.
static int64_t check_against_direct(const eval_env *env, const char *spec, const eval_example *ex, int aware) {
  void *state = press_init(env, spec);
  eval_input in = {0};
  int32_t *got = NULL;
  int n_got = 0;
  pith_err err = {{0}};
  CHECK_MSG(eval_system_run(env, &eval_sys_press, state, ex, &in, &got, &n_got, &err) == 0, "%s: %s", spec, err.msg);
  // What the press reads: [bos] + the context (+ the decoder prompt, aware); then the rest.
  int32_t ctx[1 + N_CTX + N_DP];
  int nc = 0;
  ctx[nc++] = BOS;
  for (int i = 0; i < ex->n_context; i++) ctx[nc++] = ex->context[i];
  if (aware)
    for (int i = 0; i < ex->n_decoder_prompt; i++) ctx[nc++] = ex->decoder_prompt[i];
  int nq = aware ? 0 : ex->n_decoder_prompt;
  CHECK_MSG(in.press != NULL && in.n_press_context == nc && !memcmp(in.press_context, ctx, sizeof(int32_t) * nc),
            "%s: the press reads %d ids, want %d", spec, in.n_press_context, nc);
  CHECK_MSG(in.n_prompt == nq && (!nq || !memcmp(in.prompt, ex->decoder_prompt, sizeof(int32_t) * nq)),
            "%s: a prompt of %d ids after the press, want %d", spec, in.n_prompt, nq);
  CHECK(in.n_read == ex->n_context);

  press p;
  const char *bare = spec;  // generate_pressed knows no ":aware"
  char buf[128];
  if (aware) {
    snprintf(buf, sizeof buf, "%.*s", (int)(strlen(spec) - 6), spec);
    bare = buf;
  }
  CHECK_MSG(press_parse(bare, &p, &err) == 0, "%s", err.msg);
  press_selector sel = {&p, env->model};
  const int32_t *c = ctx, *q = ex->decoder_prompt;
  gen_press_request req = {.batch = 1, .context = &c, .n_context = &nc, .question = &q, .n_question = &nq,
                           .select = press_select, .select_ctx = &sel};
  gen_config gc = gen_config_default();
  gc.max_new_tokens = NEW, gc.eos_ids = EOS_IDS, gc.n_eos = 1;
  gen_press_result res = {0};
  CHECK_MSG(generate_pressed(env->model, &req, &gc, NULL, NULL, &res, &err) == 0, "%s", err.msg);
  int n_want = res.n[0] - (res.n[0] > 0 && res.ids[0][res.n[0] - 1] == EOS);
  CHECK_MSG(n_got == n_want && !memcmp(got, res.ids[0], sizeof(int32_t) * (size_t)n_want),
            "%s: the system generated %d ids, generate_pressed %d (or others)", spec, n_got, n_want);
  CHECK_MSG(in.kv_bytes == res.kv_kept * 2 * HD * 4, "%s: kv_bytes %lld, the kept entries hold %lld", spec,
            (long long)in.kv_bytes, (long long)(res.kv_kept * 2 * HD * 4));
  int64_t kv = in.kv_bytes;
  gen_press_result_free(&res);
  eval_input_free(&in);
  free(got);
  eval_sys_press.free(state);
  return kv;
}

static void test_press_is_generate_pressed(const eval_env *qa, const eval_env *regen) {
  eval_example ex = make_example(EVAL_QA), rx = make_example(EVAL_REGEN);
  int L = 1 + N_CTX;  // bos + the context: what the press scores
  // At 0.5 every (layer, KV head) keeps max(1, int(L * 0.5)) entries (kvpress's compute_n_kept).
  int64_t kv = check_against_direct(qa, "snapkv:0.5:window_size=4", &ex, 0);
  CHECK_MSG(kv == (int64_t)(L / 2) * entry_bytes(), "snapkv@0.5: %lld bytes, want %d entries × %lld", (long long)kv,
            L / 2, (long long)entry_bytes());
  kv = check_against_direct(qa, "adakv-snapkv:0.5:window_size=4", &ex, 0);
  CHECK_MSG(kv == (int64_t)(L / 2) * entry_bytes(), "adakv-snapkv@0.5: %lld bytes (the layer's total is the same)",
            (long long)kv);
  check_against_direct(qa, "knorm:0.75", &ex, 0);
  kv = check_against_direct(qa, "snapkv:0.5:window_size=4:aware", &ex, 1);
  CHECK_MSG(kv == (int64_t)((L + N_DP) / 2) * entry_bytes(), "snapkv@0.5+q: %lld bytes", (long long)kv);
  kv = check_against_direct(regen, "tova:0.25", &rx, 0);
  CHECK_MSG(kv == (int64_t)(L * 3 / 4) * entry_bytes(), "regen tova@0.25: %lld bytes", (long long)kv);
}

// snapkv at ratio 0 keeps everything: the full baseline's generation, and its bytes.
static void test_ratio0_is_full(const eval_env *env) {
  eval_example ex = make_example(EVAL_QA);
  void *state = press_init(env, "snapkv:0");
  int32_t *full = NULL, *pressed = NULL;
  int n_full = 0, n_pressed = 0;
  eval_input a = {0}, b = {0};
  pith_err err = {{0}};
  CHECK_MSG(eval_system_run(env, &eval_sys_full, NULL, &ex, &a, &full, &n_full, &err) == 0, "%s", err.msg);
  CHECK_MSG(eval_system_run(env, &eval_sys_press, state, &ex, &b, &pressed, &n_pressed, &err) == 0, "%s", err.msg);
  CHECK_MSG(n_full > 0 && n_full == n_pressed && !memcmp(full, pressed, sizeof(int32_t) * (size_t)n_full),
            "snapkv@0: %d ids, full %d (or others)", n_pressed, n_full);
  int64_t want = (int64_t)(1 + N_CTX) * entry_bytes();  // bos + the context, every layer, K and V
  CHECK_MSG(a.kv_bytes == want && b.kv_bytes == want, "full %lld, snapkv@0 %lld bytes, want %lld",
            (long long)a.kv_bytes, (long long)b.kv_bytes, (long long)want);
  eval_input_free(&a), eval_input_free(&b);
  free(full), free(pressed);
  eval_sys_press.free(state);
}

// The other systems' bytes: truncated bos + k, none nothing, no_layer0 its prefix (bos + context).
static void test_bytes_of_baselines(const eval_env *qa, const eval_env *regen) {
  eval_example ex = make_example(EVAL_QA), rx = make_example(EVAL_REGEN);
  struct {
    const eval_env *env;
    const eval_system *sys;
    const eval_example *ex;
    int positions;
  } cases[] = {
    {qa, &eval_sys_truncated, &ex, 1 + K}, {regen, &eval_sys_truncated, &rx, 1 + K}, {qa, &eval_sys_none, &ex, 0},
    {regen, &eval_sys_none, &rx, 0}, {qa, &eval_sys_no_layer0, &ex, 1 + N_CTX},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    eval_input in = {0};
    int32_t *gen = NULL;
    int n = 0;
    pith_err err = {{0}};
    CHECK_MSG(eval_system_run(cases[i].env, cases[i].sys, NULL, cases[i].ex, &in, &gen, &n, &err) == 0, "%s",
              err.msg);
    CHECK_MSG(in.kv_bytes == cases[i].positions * entry_bytes(), "%s (%s): %lld bytes, want %d positions' %lld",
              cases[i].sys->name, cases[i].env->task == EVAL_QA ? "qa" : "regen", (long long)in.kv_bytes,
              cases[i].positions, (long long)(cases[i].positions * entry_bytes()));
    eval_input_free(&in);
    free(gen);
  }
}

// snapkv's default window (64) is longer than the context: a usage error naming the record and
// the parameter to lower, nothing generated.
static void test_window_too_long(const eval_env *env) {
  eval_example ex = make_example(EVAL_QA);
  void *state = press_init(env, "snapkv:0.5");
  int32_t *gen = NULL;
  int n = 0;
  pith_err err = {{0}};
  CHECK(eval_system_run(env, &eval_sys_press, state, &ex, NULL, &gen, &n, &err) == EVAL_USAGE);
  CHECK_CONTAINS(err.msg, "record 3 id ex3");
  CHECK_CONTAINS(err.msg, "window_size 64");
  CHECK_CONTAINS(err.msg, "--press snapkv:0.5:window_size=");
  CHECK(!strchr(err.msg, '\n') && gen == NULL);
  eval_sys_press.free(state);
  // aware on regen: refused at init
  eval_env regen = *env;
  regen.task = EVAL_REGEN;
  eval_instance inst = {.sys = &eval_sys_press, .arg = "knorm:0.5:aware"};
  state = NULL;
  err.msg[0] = 0;
  CHECK(eval_sys_press.init(&regen, &inst, &state, &err) == -1);
  CHECK_CONTAINS(err.msg, "qa");
  free(state);
}

static void test_specs(void) {
  eval_press_spec sp;
  pith_err err = {{0}};
  struct {
    const char *spec, *name;
    int aware;
  } ok[] = {
    {"snapkv:0.5", "snapkv@0.5", 0}, {"adakv-snapkv:0.25", "adakv-snapkv@0.25", 0},
    {"snapkv:0.5:window_size=16", "snapkv@0.5:window_size=16", 0}, {"snapkv:0.5:aware", "snapkv@0.5+q", 1},
    {"knorm:0:aware", "knorm@0+q", 1},
  };
  for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
    CHECK_MSG(eval_press_parse(ok[i].spec, &sp, &err) == 0, "%s: %s", ok[i].spec, err.msg);
    CHECK_MSG(!strcmp(sp.name, ok[i].name) && sp.aware == ok[i].aware, "%s: named %s, aware %d", ok[i].spec,
              sp.name, sp.aware);
  }
  CHECK(eval_press_parse("snapkv:0.5:window=16", &sp, &err) == 0 && sp.p.window_size == 16);
  CHECK(eval_press_parse("foo:0.5", &sp, &err) == -1);
  CHECK_CONTAINS(err.msg, "unknown press 'foo'");
  CHECK(eval_press_parse("snapkv:1.5", &sp, &err) == -1);
  CHECK_CONTAINS(err.msg, "outside [0, 1)");
  CHECK(eval_press_parse("snapkv:0.5:colour=red", &sp, &err) == -1);
  CHECK(eval_press_parse("snapkv", &sp, &err) == -1);

  char list[] = "snapkv:0.5:window_size=4,kernel_size=3, knorm:0.25,tova:0.5:aware";
  char *specs[8];
  CHECK(eval_press_split(list, specs, 8, &err) == 3);
  CHECK(!strcmp(specs[0], "snapkv:0.5:window_size=4,kernel_size=3") && !strcmp(specs[1], "knorm:0.25") &&
        !strcmp(specs[2], "tova:0.5:aware"));
  CHECK(eval_press_parse_list("snapkv:0.5, knorm:0.5", &err) == 2);
  CHECK(eval_press_parse_list("knorm:0.5,knorm:0.5", &err) == -1);
  CHECK_CONTAINS(err.msg, "knorm@0.5 twice");
  CHECK(eval_press_parse_list("knorm:0.5,foo:0.5", &err) == -1);
  CHECK_CONTAINS(err.msg, "unknown press 'foo'");
  CHECK(eval_press_parse_list("", &err) == -1);
  CHECK(eval_system_find("press") == &eval_sys_press);
}

int main(void) {
  pt_set_num_threads(1);
  test_specs();
  llama_model *m = small_model();
  eval_env qa = make_env(m, EVAL_QA), regen = make_env(m, EVAL_REGEN);
  int was = pt_set_grad_enabled(0);
  size_t live = pt_live_handles();
  pt_scope s = pt_scope_begin();
  test_press_is_generate_pressed(&qa, &regen);
  test_ratio0_is_full(&qa);
  test_bytes_of_baselines(&qa, &regen);
  test_window_too_long(&qa);
  pt_scope_end(s);
  CHECK_MSG(pt_live_handles() == live, "%zu handles before, %zu after", live, pt_live_handles());
  CHECK_MSG(pt_ok(), "%s", pt_error());
  pt_set_grad_enabled(was);
  llama_free(m);
  return check_done("test_eval_press");
}
