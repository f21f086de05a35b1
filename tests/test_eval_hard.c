// test_eval_hard: pith eval's hard-compression systems (train/eval_sys_hard.c) through the system
// interface, on stories260K (a real tiny LLaMA, converted here from the assets) as base model and
// scorer, with its own tokenizer:
//   - llmlingua@2x's prompt is [bos] + the context that hc_compress (models/hard_compress.h) returns
//     for the same text and budget, re-encoded, + the decoder prompt; it reads about half the
//     context's tokens (exact budget), fewer than full, and k with RATIO k;
//   - with llmlingua's own budget (--hard-budget llmlingua) the prompt is hc_compress's at rate 1/R;
//   - longllmlingua reads the question and is refused for regen; regen puts the decoder prompt
//     after the survivors;
//   - a chain's input is its second stage's (no_layer0 here) on the example with the survivors as
//     context, and the survivors are computed once per example;
//   - ehpc (heads given as L:h,h) reads about half the context at 2x, k at k, and runs for regen; its
//     kept text is what the prompt holds; heads out of range, repeated or missing, and llmlingua2
//     without a classifier are refused at init with the reason;
//   - specs: names, and bad ones refused with the reason.
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "eval.h"
#include "hard_compress.h"
#include "hf_folder.h"
#include "llama2c.h"

static const char STORY[] =
  "Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her red "
  "ball. One day, she saw a big dog under a tree. The dog was sad because it had lost its bone. Lily wanted to "
  "help the dog, so she looked everywhere for the bone. She looked behind the bench and under the slide. At "
  "last she found the bone near the pond. The dog was very happy and wagged its tail. Lily and the dog became "
  "best friends, and they played together every day in the sunny park.";

static int32_t *encode(const tokenizer *tok, const char *text, int *n) {
  int32_t *ids = NULL;
  size_t m = 0;
  pith_err err = {{0}};
  CHECK_MSG(tokenizer_encode(tok, text, strlen(text), 0, &ids, &m, &err) == 0, "%s", err.msg);
  *n = (int)m;
  return ids;
}

static int same_ids(const int32_t *a, int na, const int32_t *b, int nb) {
  return na == nb && (na == 0 || !memcmp(a, b, sizeof(int32_t) * (size_t)na));
}

static int64_t count(const char *text, void *tok) {
  int n;
  int32_t *ids = encode(tok, text, &n);
  free(ids);
  return n;
}

// What the hard system should read for ratio R: hc_compress on the decoded context with the exact
// budget of 1/R of its tokens under the same tokenizer, the result encoded again.
static int32_t *expected_survivors(llama_model *m, tokenizer *tok, const int32_t *ctx, int n_ctx, double R, int exact,
                                   int *n) {
  pith_err err = {{0}};
  char *text = tokenizer_decode(tok, ctx, (size_t)n_ctx, 1, &err);
  scorer sc = scorer_new(m, tok);
  hc_options o = hc_options_llmlingua();
  o.concate_question = 0, o.exact = exact, o.count_target = count, o.count_ctx = tok;
  if (exact) o.target_tokens = (double)count(text, tok) / R;
  else o.rate = 1 / R;  // llmlingua's own budget
  hc_result r;
  CHECK_MSG(hc_compress(&sc, (const char *const *)&text, 1, NULL, NULL, &o, &r, &err) == 0, "%s", err.msg);
  int32_t *ids = encode(tok, r.context_prompt, n);
  hc_result_free(&r);
  free(text);
  return ids;
}

static int init(const eval_env *env, eval_instance *in, pith_err *err) {
  return in->sys->init ? in->sys->init(env, in, &in->state, err) : 0;
}

static void test_specs(void) {
  eval_hard_spec s;
  pith_err err = {{0}};
  char name[64];
  CHECK(eval_hard_parse("llmlingua:4", &s, &err) == 0 && s.ratio == 4 && !s.at_k);
  eval_hard_name(&s, name, sizeof name);
  CHECK_MSG(!strcmp(name, "llmlingua@4x"), "%s", name);
  CHECK(eval_hard_parse("longllmlingua:2.5", &s, &err) == 0);
  eval_hard_name(&s, name, sizeof name);
  CHECK_MSG(!strcmp(name, "longllmlingua@2.5x"), "%s", name);
  CHECK(eval_hard_parse("llmlingua:k", &s, &err) == 0 && s.at_k);
  eval_hard_name(&s, name, sizeof name);
  CHECK(!strcmp(name, "llmlingua@k"));
  CHECK(eval_hard_parse("foo:2", &s, &err) == -1);
  CHECK_CONTAINS(err.msg, "unknown method 'foo' (llmlingua, longllmlingua, llmlingua2, ehpc)");
  const char *bad[] = {"llmlingua:1", "llmlingua:0.5", "llmlingua:x", "llmlingua:", "llmlingua:inf", "llmlingua:-3"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    err.msg[0] = 0;
    CHECK_MSG(eval_hard_parse(bad[i], &s, &err) == -1, "%s accepted", bad[i]);
    CHECK_CONTAINS(err.msg, "the ratio must be a number > 1");
  }
  CHECK(eval_hard_parse("llmlingua", &s, &err) == -1);
  CHECK_CONTAINS(err.msg, "not METHOD:RATIO");
  CHECK(eval_hard_parse_list("llmlingua:2, llmlingua:4,longllmlingua:k", &err) == 3);
  CHECK(eval_hard_parse_list("llmlingua:2,foo:4", &err) == -1);
  CHECK_CONTAINS(err.msg, "unknown method 'foo'");
}

int main(void) {
  pt_set_num_threads(1);
  test_specs();
  const char *ckpt_rel = check_asset("models/stories260K.bin");
  char ckpt[4096], tokbin[4096];
  CHECK_SKIP_IF(!ckpt_rel, "stories260K is not in the assets");
  snprintf(ckpt, sizeof ckpt, "%s", ckpt_rel);
  const char *tb = check_asset("models/tok512.bin");
  CHECK_SKIP_IF(!tb, "tok512 is not in the assets");
  snprintf(tokbin, sizeof tokbin, "%s", tb);
  char dir[] = "/tmp/pith-test-eval-hard-XXXXXX", model_dir[4096];
  CHECK_SKIP_IF(mkdtemp(dir) == NULL, "cannot make a temporary folder under /tmp");
  snprintf(model_dir, sizeof model_dir, "%s/stories260K", dir);
  pith_err err = {{0}};
  CHECK_MSG(llama2c_convert(ckpt, tokbin, model_dir, 0, &err) == 0, "%s", err.msg);
  llama_model *m = hf_model_load(model_dir, PT_F32, PT_CPU, &err);
  tokenizer *tok = tokenizer_load(model_dir, &err);
  CHECK_MSG(m && tok, "%s", err.msg);
  if (!m || !tok) return check_done("test_eval_hard");
  task_tokens tt;
  CHECK_MSG(task_tokens_init(&tt, tok, model_dir, &err) == 0, "%s", err.msg);
  const int32_t *eos;
  int n_eos = tokenizer_eos_ids(tok, &eos);
  eval_env qa = {.task = EVAL_QA, .model = m, .tokens = &tt, .bos = tt.bos, .pad = tt.pad, .eos = eos, .n_eos = n_eos,
                 .k = 4, .cutoff = 512, .max_new = 4, .export_dir = "", .tok = tok};
  eval_env regen = qa;
  regen.task = EVAL_REGEN;

  int n_ctx, n_q;
  int32_t *ctx = encode(tok, STORY, &n_ctx), *q = encode(tok, "What did Lily find near the pond?", &n_q);
  CHECK_MSG(n_ctx > 60 && n_ctx < 200, "the story is %d tokens: want one window's worth or less", n_ctx);
  int n_dp = task_decoder_prompt_len(&tt, TASK_QA, n_q);
  int32_t *dp = malloc(sizeof(int32_t) * (size_t)n_dp);
  task_decoder_prompt(&tt, TASK_QA, q, n_q, dp);
  eval_example ex = {.index = 0, .context = ctx, .n_context = n_ctx, .question = "What did Lily find near the pond?",
                     .question_ids = q, .n_question_ids = n_q, .decoder_prompt = dp, .n_decoder_prompt = n_dp};
  int32_t rbos[] = {tt.bos};
  eval_example rx = {.index = 0, .context = ctx, .n_context = n_ctx, .decoder_prompt = rbos, .n_decoder_prompt = 1};

  int was = pt_set_grad_enabled(0);
  size_t live = pt_live_handles();
  pt_scope scope = pt_scope_begin();

  // llmlingua@2x: the prompt is [bos] + hc_compress's context + the decoder prompt
  eval_instance h2 = {.sys = &eval_sys_hard, .name = "llmlingua@2x", .arg = "llmlingua:2"};
  CHECK_MSG(init(&qa, &h2, &err) == 0, "%s", err.msg);
  int n_want;
  int32_t *want = expected_survivors(m, tok, ctx, n_ctx, 2, 1, &n_want);
  eval_input in = {0};
  int32_t *gen = NULL;
  int n_gen = 0;
  CHECK_MSG(eval_system_run(&qa, h2.sys, h2.state, &ex, &in, &gen, &n_gen, &err) == 0, "%s", err.msg);
  CHECK(in.prefix_k == NULL && in.n_echo == 0);
  CHECK_MSG(in.n_prompt == 1 + n_want + n_dp && in.prompt[0] == tt.bos && same_ids(in.prompt + 1, n_want, want, n_want) &&
              same_ids(in.prompt + 1 + n_want, n_dp, dp, n_dp),
            "llmlingua@2x: the prompt (%d ids) is not [bos] + hc_compress's %d kept tokens + the decoder prompt",
            in.n_prompt, n_want);
  CHECK_MSG(in.n_read == n_want && abs(2 * n_want - n_ctx) <= 4,
            "llmlingua@2x read %d of %d context tokens, want about half", in.n_read, n_ctx);
  CHECK(n_gen >= 0);
  eval_input_free(&in);
  free(gen);
  free(want);

  // the exact budget at 4x and at k
  eval_instance h4 = {.sys = &eval_sys_hard, .name = "llmlingua@4x", .arg = "llmlingua:4", .uses = {&h2}};
  eval_instance hk = {.sys = &eval_sys_hard, .name = "llmlingua@k", .arg = "llmlingua:k", .uses = {&h2}};
  CHECK_MSG(init(&qa, &h4, &err) == 0 && init(&qa, &hk, &err) == 0, "%s", err.msg);
  CHECK_MSG(h4.sys->build(h4.state, &qa, &ex, &in, &err) == 0, "%s", err.msg);
  CHECK_MSG(abs(4 * in.n_read - n_ctx) <= 8, "llmlingua@4x read %d of %d", in.n_read, n_ctx);
  eval_input_free(&in);
  CHECK_MSG(hk.sys->build(hk.state, &qa, &ex, &in, &err) == 0, "%s", err.msg);
  CHECK_MSG(abs(in.n_read - qa.k) <= 1, "llmlingua@k read %d, k is %d", in.n_read, qa.k);
  eval_input_free(&in);

  // llmlingua's own budget: rate 1/R of the scorer's tokens, as hc_compress takes it
  eval_env own = qa;
  own.hard_llmlingua_budget = 1;
  eval_instance o4 = {.sys = &eval_sys_hard, .name = "llmlingua@4x", .arg = "llmlingua:4"};
  CHECK_MSG(init(&own, &o4, &err) == 0, "%s", err.msg);
  int n_own;
  int32_t *own_want = expected_survivors(m, tok, ctx, n_ctx, 4, 0, &n_own);
  CHECK_MSG(o4.sys->build(o4.state, &own, &ex, &in, &err) == 0, "%s", err.msg);
  CHECK_MSG(in.n_read == n_own && same_ids(in.prompt + 1, n_own, own_want, n_own),
            "llmlingua's budget: %d tokens read, hc_compress at rate 1/4 keeps %d", in.n_read, n_own);
  free(own_want);
  eval_input_free(&in);

  // longllmlingua reads the question: qa only; regen puts [bos] after the survivors
  eval_instance l4 = {.sys = &eval_sys_hard, .name = "longllmlingua@4x", .arg = "longllmlingua:4"};
  CHECK_MSG(init(&qa, &l4, &err) == 0, "%s", err.msg);
  CHECK_MSG(l4.sys->build(l4.state, &qa, &ex, &in, &err) == 0, "%s", err.msg);
  CHECK_MSG(abs(4 * in.n_read - n_ctx) <= 8, "longllmlingua@4x read %d of %d", in.n_read, n_ctx);
  eval_input_free(&in);
  eval_instance lr = {.sys = &eval_sys_hard, .name = "longllmlingua@4x", .arg = "longllmlingua:4"};
  CHECK(init(&regen, &lr, &err) == -1);
  CHECK_CONTAINS(err.msg, "for qa only");
  eval_instance r2 = {.sys = &eval_sys_hard, .name = "llmlingua@2x", .arg = "llmlingua:2"};
  CHECK_MSG(init(&regen, &r2, &err) == 0, "%s", err.msg);
  CHECK_MSG(r2.sys->build(r2.state, &regen, &rx, &in, &err) == 0, "%s", err.msg);
  CHECK_MSG(in.n_prompt == in.n_read + 2 && in.prompt[0] == tt.bos && in.prompt[in.n_prompt - 1] == tt.bos,
            "regen: %d ids for %d survivors, want [bos] + survivors + [bos]", in.n_prompt, in.n_read);
  eval_input_free(&in);

  // ehpc: evaluator heads of the base model (stories260K's probe: layer 4, heads 0,1,4); the kept
  // text, re-encoded, is what the prompt holds; about half the context at 2x, k at k (the window
  // shortened to reach no further into the context than the budget), regen with the context's end
  // as the window
  eval_env eq = qa, er = regen;
  eq.ehpc_heads = er.ehpc_heads = "4:0,1,4";
  eval_instance e2 = {.sys = &eval_sys_hard, .name = "ehpc@2x", .arg = "ehpc:2"};
  eval_instance ek = {.sys = &eval_sys_hard, .name = "ehpc@k", .arg = "ehpc:k", .uses = {&e2}};
  eval_instance eg = {.sys = &eval_sys_hard, .name = "ehpc@4x", .arg = "ehpc:4"};
  CHECK_MSG(init(&eq, &e2, &err) == 0 && init(&eq, &ek, &err) == 0 && init(&er, &eg, &err) == 0, "%s", err.msg);
  CHECK_MSG(e2.sys->build(e2.state, &eq, &ex, &in, &err) == 0, "%s", err.msg);
  int n_kt;
  int32_t *kt = in.kept_text ? encode(tok, in.kept_text, &n_kt) : NULL;
  CHECK_MSG(kt && in.n_read == n_kt && same_ids(in.prompt + 1, n_kt, kt, n_kt) && abs(2 * in.n_read - n_ctx) <= 6,
            "ehpc@2x read %d of %d context tokens (want about half), its kept text %s", in.n_read, n_ctx,
            in.kept_text ? in.kept_text : "(none)");
  free(kt);
  eval_input_free(&in);
  CHECK_MSG(ek.sys->build(ek.state, &eq, &ex, &in, &err) == 0, "%s", err.msg);
  CHECK_MSG(abs(in.n_read - qa.k) <= 1, "ehpc@k read %d, k is %d", in.n_read, qa.k);
  eval_input_free(&in);
  CHECK_MSG(eg.sys->build(eg.state, &er, &rx, &in, &err) == 0, "%s", err.msg);
  CHECK_MSG(abs(4 * in.n_read - n_ctx) <= 8 && in.prompt[in.n_prompt - 1] == tt.bos, "regen ehpc@4x read %d of %d",
            in.n_read, n_ctx);
  eval_input_free(&in);
  // regen at k = 4: the window (8, the context's last tokens) would keep more than the budget;
  // shortened to it, ehpc keeps k (ehpc_compress alone refuses such a window)
  eval_instance erk = {.sys = &eval_sys_hard, .name = "ehpc@k", .arg = "ehpc:k", .uses = {&eg}};
  CHECK_MSG(init(&er, &erk, &err) == 0, "%s", err.msg);
  CHECK_MSG(erk.sys->build(erk.state, &er, &rx, &in, &err) == 0, "regen ehpc@k: %s", err.msg);
  CHECK_MSG(abs(in.n_read - er.k) <= 1, "regen ehpc@k read %d, k is %d", in.n_read, er.k);
  eval_input_free(&in);
  // bad heads, no heads, no classifier for llmlingua2
  eval_env e_bad = qa;
  const char *bad_heads[][2] = {{"9:0", "layer 9 is out of range"}, {"4:0,99", "head 99 is out of range"},
                                {"4:1,1", "head 1 is given twice"}, {"/nonexistent/ehpc.json", "no such file"}};
  for (size_t i = 0; i < sizeof bad_heads / sizeof *bad_heads; i++) {
    e_bad.ehpc_heads = bad_heads[i][0];
    eval_instance x = {.sys = &eval_sys_hard, .name = "ehpc@2x", .arg = "ehpc:2"};
    err.msg[0] = 0;
    CHECK_MSG(init(&e_bad, &x, &err) == -1, "heads %s accepted", bad_heads[i][0]);
    CHECK_CONTAINS(err.msg, bad_heads[i][1]);
    CHECK_CONTAINS(err.msg, "--ehpc-heads");
    x.sys->free(x.state);
  }
  const char *need[][2] = {{"ehpc:2", "pith compress ehpc-probe"}, {"llmlingua2:2", "--l2-scorer DIR"}};
  for (size_t i = 0; i < 2; i++) {
    eval_instance x = {.sys = &eval_sys_hard, .name = "x", .arg = need[i][0]};
    err.msg[0] = 0;
    CHECK_MSG(init(&qa, &x, &err) == -1, "%s without its scorer accepted", need[i][0]);
    CHECK_CONTAINS(err.msg, need[i][1]);
    x.sys->free(x.state);
  }
  CHECK(eval_hard_uses("llmlingua:2, ehpc:k", "ehpc") && !eval_hard_uses("llmlingua:2,ehpc:k", "llmlingua2"));
  CHECK(eval_hard_check_classifier(model_dir, &err) == -1);
  CHECK_CONTAINS(err.msg, "not a BERT or XLM-R token classifier");

  // a chain: no_layer0's input on the example whose context is the survivors
  eval_instance nl = {.sys = &eval_sys_no_layer0, .name = "no_layer0"};
  eval_instance ch = {.sys = &eval_sys_chain, .name = "llmlingua@2x+no_layer0", .uses = {&h2, &nl}};
  CHECK_MSG(init(&qa, &ch, &err) == 0, "%s", err.msg);
  const int32_t *kept;
  int n_kept;
  CHECK(h2.sys->shorten(h2.state, &qa, &ex, &kept, &n_kept, &err) == 0);
  eval_example short_ex = ex;
  short_ex.context = kept, short_ex.n_context = n_kept;
  eval_input a = {0}, b = {0};
  CHECK_MSG(ch.sys->build(ch.state, &qa, &ex, &a, &err) == 0, "%s", err.msg);
  CHECK_MSG(nl.sys->build(NULL, &qa, &short_ex, &b, &err) == 0, "%s", err.msg);
  CHECK(a.prefix_k && b.prefix_k && same_ids(a.prompt, a.n_prompt, b.prompt, b.n_prompt) && a.n_read == n_kept);
  if (a.prefix_k && b.prefix_k) {
    CHECK_MSG(pt_shape_of(a.prefix_k[1]).d[2] == 1 + n_kept, "the chain's prefix is not the survivors'");
    for (int l = 0; l < m->cfg.n_layers; l++)
      CHECK_MSG(pt_item(pt_sum(pt_abs(pt_sub(a.prefix_k[l], b.prefix_k[l])))) == 0, "layer %d's K differ", l);
  }
  const int32_t *again;
  int n_again;
  CHECK(h2.sys->shorten(h2.state, &qa, &ex, &again, &n_again, &err) == 0 && again == kept);  // computed once
  eval_input_free(&a);
  eval_input_free(&b);
  // a chain without a first stage that keeps text
  eval_instance bad = {.sys = &eval_sys_chain, .name = "x", .uses = {&nl, &nl}};
  CHECK(init(&qa, &bad, &err) == -1);
  CHECK_CONTAINS(err.msg, "first stage that keeps text");

  pt_scope_end(scope);
  CHECK_MSG(pt_live_handles() == live, "%zu handles before, %zu after", live, pt_live_handles());
  CHECK_MSG(pt_ok(), "%s", pt_error());
  pt_set_grad_enabled(was);
  eval_instance *all[] = {&erk, &eg, &ek, &e2, &lr, &l4, &o4, &r2, &hk, &h4, &h2};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++) all[i]->sys->free(all[i]->state);
  free(ctx), free(q), free(dp);
  task_tokens_free(&tt);
  tokenizer_free(tok);
  llama_free(m);
  pith_remove_tree(dir);
  return check_done("test_eval_hard");
}
