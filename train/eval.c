// eval: the engine of `pith eval` (eval.h): setup (data, compressor, model, systems), the prompts,
// and the loop that runs every system over every example; eval_report.c scores and writes.
//
// Everything is evaluated before the output folder is created, so a failed evaluation writes
// nothing (eval_write then writes the three files atomically).
#include <cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eval_internal.h"
#include "generate.h"
#include "hf_folder.h"
#include "ingest.h"
#include "train_state.h"

// ---- setup --------------------------------------------------------------------------------------

// The cutoff_len of the training run recorded in an export's manifest ("source"."config"), or -1.
static int manifest_cutoff_len(const char *dir) {
  char path[EVAL_PATH_MAX + 32];
  snprintf(path, sizeof path, "%s/%s", dir, EXPORT_MANIFEST);
  char *text = pith_read_file(path, NULL, NULL);
  cJSON *m = text ? cJSON_Parse(text) : NULL;
  free(text);
  const cJSON *src = cJSON_GetObjectItemCaseSensitive(m, "source");
  const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(src, "config");
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, "cutoff_len");
  int n = -1;
  if (cJSON_IsString(v)) {
    char *end;
    errno = 0;
    long x = strtol(v->valuestring, &end, 10);
    if (*v->valuestring && !*end && !errno && x >= 1 && x <= 1000000000) n = (int)x;
  }
  if (cJSON_IsNumber(v) && v->valuedouble >= 1) n = (int)v->valuedouble;
  cJSON_Delete(m);
  return n;
}

// The compressor folder: an export is read as is; a run or checkpoint folder is exported into a
// temporary folder (moved to OUT/export at the end), so a failure leaves OUT untouched.
static int resolve_compressor(eval_run *r, pith_err *err) {
  const char *src = r->o.compressor;
  if (!strcmp(src, "none")) return 0;
  r->have_comp = 1;
  char p[EVAL_PATH_MAX + 32];
  if (!pith_is_dir(src)) return pith_fail(err, "%s: no such compressor folder", src);
  snprintf(p, sizeof p, "%s/%s", src, EXPORT_MANIFEST);
  if (pith_is_file(p)) {
    snprintf(r->export_dir, sizeof r->export_dir, "%s", src);
  } else {
    char ckpt[EVAL_PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", src, TRAIN_STATE_DONE);
    int found = pith_is_file(p) ? 0 : train_state_latest(src, ckpt, sizeof ckpt, err);
    if (found < 0) return -1;
    if (found == 1)
      return pith_fail(err, "%s: neither an export folder (%s) nor a run or checkpoint folder (checkpoints/step-N/ "
                            "with %s)", src, EXPORT_MANIFEST, TRAIN_STATE_DONE);
    const char *tmp = getenv("TMPDIR");
    snprintf(r->tmp_dir, sizeof r->tmp_dir, "%s/pith-eval-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(r->tmp_dir)) {
      int e = errno;
      r->tmp_dir[0] = 0;
      return pith_fail(err, "cannot create a temporary folder: %s", strerror(e));
    }
    snprintf(r->export_dir, sizeof r->export_dir, "%s/export", r->tmp_dir);
    export_options opt = {.force = 1};
    if (export_run(src, r->export_dir, &opt, r->ckpt_used, sizeof r->ckpt_used, err)) return -1;
    r->from_run = 1;
  }
  return export_read_info(r->export_dir, &r->info, err);
}

static int open_data(eval_run *r, pith_err *err) {
  r->corp = corpus_open(r->o.data, err);
  if (!r->corp) return -1;
  const corpus_info *ci = corpus_get_info(r->corp);
  eval_task natural = ci->kind == CORPUS_QA ? EVAL_QA : EVAL_REGEN;
  r->env.task = !r->o.task ? natural : !strcmp(r->o.task, "qa") ? EVAL_QA : EVAL_REGEN;
  if (r->env.task != natural)
    return pith_fail(err, "%s: a %s corpus, so --task %s does not apply (qa needs a QA corpus, regen documents)",
                     r->o.data, corpus_kind_name(ci->kind), r->o.task);
  r->split = !strcmp(r->o.split, "all") ? -1 : !strcmp(r->o.split, "train") ? CORPUS_SPLIT_TRAIN
             : !strcmp(r->o.split, "val") ? CORPUS_SPLIT_VAL : CORPUS_SPLIT_TEST;
  int64_t n = ci->n_records;
  uint8_t *splits = malloc(n ? (size_t)n : 1);
  r->items = malloc(sizeof *r->items * (size_t)(n ? n : 1));
  if (!splits || !r->items) {
    free(splits);
    return pith_fail(err, "out of memory");
  }
  if (n && corpus_read_splits(r->corp, 0, n, splits, err)) {
    free(splits);
    return -1;
  }
  for (int64_t i = 0; i < n && (r->o.max_examples <= 0 || r->n_items < r->o.max_examples); i++)
    if (r->split < 0 || splits[i] == r->split) r->items[r->n_items++] = i;
  free(splits);
  if (r->n_items == 0)
    return pith_fail(err, "%s: no records in the %s split (--split chooses another)", r->o.data, r->o.split);
  return 0;
}

// An instance of sys (arg: its options, NULL for none) named name.
static eval_instance *add_instance(eval_run *r, const eval_system *sys, const char *name, const char *arg,
                                   pith_err *err) {
  if (r->n_inst >= EVAL_MAX_INSTANCES) {
    pith_fail(err, "more than %d systems", EVAL_MAX_INSTANCES);
    return NULL;
  }
  eval_instance *in = &r->inst[r->n_inst++];
  *in = (eval_instance){.sys = sys, .arg = arg};
  snprintf(in->name, sizeof in->name, "%s", name);
  return in;
}

// The hard systems of --hard, then (with a compressor) their chains into the compressed system.
static int add_hard(eval_run *r, pith_err *err) {
  if (!r->o.hard) return 0;
  if (eval_hard_parse_list(r->o.hard, err) < 0) return EVAL_USAGE;
  const eval_instance *comp = NULL;
  for (int i = 0; i < r->n_inst; i++)
    if (r->inst[i].sys == &eval_sys_compressed) comp = &r->inst[i];
  // the specs are kept in specs_buf: instances point into it
  snprintf(r->hard_buf, sizeof r->hard_buf, "%s", r->o.hard);
  int first = r->n_inst;
  char *specs[EVAL_MAX_INSTANCES];
  int n = 0;
  for (char *save = NULL, *t = strtok_r(r->hard_buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    while (*t == ' ') t++;
    if (n == EVAL_MAX_INSTANCES) return pith_fail(err, "--hard: too many systems");
    specs[n++] = t;
  }
  for (int i = 0; i < n; i++) {
    eval_hard_spec sp;
    char name[96];
    if (eval_hard_parse(specs[i], &sp, err)) return EVAL_USAGE;
    eval_hard_name(&sp, name, sizeof name);
    for (int j = 0; j < r->n_inst; j++)
      if (!strcmp(r->inst[j].name, name)) return pith_fail(err, "--hard: %s twice", name), EVAL_USAGE;
    eval_instance *h = add_instance(r, &eval_sys_hard, name, specs[i], err);
    if (!h) return -1;
    if (r->n_inst - 1 > first) h->uses[0] = &r->inst[first];  // one scorer for all
    r->n_hard++;
  }
  for (int i = 0; comp && i < n; i++) {
    char name[128];
    snprintf(name, sizeof name, "%.100s+%s", r->inst[first + i].name,
             r->info.comp.method == COMP_ICAE ? "icae" : "500x");
    eval_instance *c = add_instance(r, &eval_sys_chain, name, NULL, err);
    if (!c) return -1;
    c->uses[0] = &r->inst[first + i], c->uses[1] = comp;
  }
  return 0;
}

// A press system per --press spec (qa and regen; an aware spec is qa only).
static int add_press(eval_run *r, pith_err *err) {
  if (!r->o.press) return 0;
  if (eval_press_parse_list(r->o.press, err) < 0) return EVAL_USAGE;
  snprintf(r->press_buf, sizeof r->press_buf, "%s", r->o.press);  // instances point into it
  char *specs[EVAL_MAX_INSTANCES];
  int n = eval_press_split(r->press_buf, specs, EVAL_MAX_INSTANCES, err);
  if (n < 0) return EVAL_USAGE;
  for (int i = 0; i < n; i++) {
    eval_press_spec sp;
    if (eval_press_parse(specs[i], &sp, err)) return EVAL_USAGE;
    if (sp.aware && r->env.task != EVAL_QA)
      return pith_fail(err, "--press %s: question-aware (:aware) is for qa; regen has no question", specs[i]), EVAL_USAGE;
    for (int j = 0; j < r->n_inst; j++)
      if (!strcmp(r->inst[j].name, sp.name)) return pith_fail(err, "--press: %s twice", sp.name), EVAL_USAGE;
    if (!add_instance(r, &eval_sys_press, sp.name, specs[i], err)) return -1;
    r->n_press++;
  }
  return 0;
}

// The selected systems that apply to the task; EVAL_USAGE with err for an unknown name or when none is left.
static int pick_systems(eval_run *r, pith_err *err) {
  const char *list = r->o.baselines ? r->o.baselines : EVAL_DEFAULT_BASELINES;
  int on[EVAL_MAX_SYSTEMS];
  if (eval_systems_select(list, r->have_comp, on, err)) return EVAL_USAGE;
  int chosen = strcmp(list, EVAL_DEFAULT_BASELINES) != 0;
  for (int i = 0; i < eval_n_systems; i++) {
    const eval_system *s = eval_systems[i];
    if (on[i] && r->env.task == EVAL_REGEN && s->qa_only) {
      on[i] = 0;
      if (chosen && !r->o.quiet)
        fprintf(stderr, "pith eval: no '%s' baseline for regen (%s); skipped\n", s->name, s->qa_only);
    }
    if (on[i] && !add_instance(r, s, s->name, NULL, err)) return -1;
  }
  int rc = add_hard(r, err);
  if (!rc) rc = add_press(r, err);
  if (rc) return rc;
  if (r->n_inst) return 0;
  pith_fail(err, "nothing to evaluate (--compressor none and no baseline for this task)");
  return EVAL_USAGE;
}

// A press that cannot run on the shortest context (bos + its tokens, cut to cutoff) is refused
// here, before the model loads, rather than after the examples before it were evaluated; build
// checks each example again (a question-aware prefill is longer, a context may start with bos).
static int check_press_lengths(eval_run *r, pith_err *err) {
  if (!r->n_press) return 0;
  int64_t n = corpus_get_info(r->corp)->n_records, *len = malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
  if (!len) return pith_fail(err, "out of memory");
  corpus_col col = r->env.task == EVAL_QA ? CORPUS_COL_CONTEXT : CORPUS_COL_DOC;
  if (corpus_read_lengths(r->corp, col, 0, n, len, err)) {
    free(len);
    return -1;
  }
  int64_t at = r->items[0];
  for (int64_t i = 0; i < r->n_items; i++)
    if (len[r->items[i]] < len[at]) at = r->items[i];
  int shortest = 1 + (int)(len[at] < r->env.cutoff ? len[at] : r->env.cutoff);
  free(len);
  for (int i = 0; i < r->n_inst; i++) {
    eval_press_spec sp;
    if (r->inst[i].sys != &eval_sys_press) continue;
    if (eval_press_parse(r->inst[i].arg, &sp, err)) return EVAL_USAGE;
    if (eval_press_check_len(&sp, at, NULL, shortest, err)) {
      pith_err why = *err;
      return pith_fail(err, "%s: %s", r->inst[i].name, why.msg), EVAL_USAGE;
    }
  }
  return 0;
}

static int load_models(eval_run *r, pith_err *err) {
  const eval_options *o = &r->o;
  eval_env *env = &r->env;
  snprintf(r->model_dir, sizeof r->model_dir, "%s", o->model ? o->model : r->info.base_model);
  // The export's tokenizer, unless it is just its base model folder and --model replaces that.
  int tok_is_model = !r->have_comp || !strcmp(r->info.tokenizer, r->info.base_model);
  snprintf(r->tok_path, sizeof r->tok_path, "%s",
           o->tokenizer ? o->tokenizer : tok_is_model ? r->model_dir : r->info.tokenizer);
  if (o->threads > 0) pt_set_num_threads(o->threads);
  pt_device dev;
  pith_err why = {{0}};
  if (pt_device_parse(o->device, &dev, &why)) return pith_fail(err, "--device %s", why.msg);
  if (o->fused_kernels && (dev == PT_CPU || pt_set_fused_kernels(PT_FUSED_ON)))
    return dev == PT_CPU ? pith_fail(err, "--fused-kernels needs a CUDA device") : pt_fail(err, "--fused-kernels");

  r->tok = tokenizer_load(r->tok_path, err);
  if (!r->tok) return -1;
  // The prompt pieces and special ids of training (data/task.h).
  if (task_tokens_init(&r->tt, r->tok, r->tok_path, err)) return -1;
  env->tokens = &r->tt;
  env->n_eos = tokenizer_eos_ids(r->tok, &env->eos);
  env->bos = r->tt.bos;
  env->pad = r->tt.pad;

  const corpus_info *ci = corpus_get_info(r->corp);
  if (ingest_warn_other_tokenizer(o->data, ci, r->tok, r->tok_path, stderr, err) < 0) return -1;
  r->model = hf_model_load(r->model_dir, o->bf16 ? PT_BF16 : PT_F32, dev, err);
  if (!r->model) return -1;
  env->model = r->model;
  if (ci->vocab_size > r->model->cfg.vocab_size)
    return pith_fail(err, "%s: token ids up to %lld, but the model %s has %d tokens (another tokenizer?)", o->data,
                     (long long)ci->vocab_size - 1, r->model_dir, r->model->cfg.vocab_size);
  if (env->bos >= r->model->cfg.vocab_size || env->pad >= r->model->cfg.vocab_size)
    return pith_fail(err, "%s: the tokenizer's bos or pad id (%d, %d) is beyond the model's %d tokens (another "
                          "tokenizer?)", r->tok_path, env->bos, env->pad, r->model->cfg.vocab_size);
  env->tok = r->tok;
  env->hard_scorer = o->hard_scorer;
  env->hard_llmlingua_budget = o->hard_llmlingua_budget;
  env->l2_scorer = o->l2_scorer, env->cl100k = o->cl100k, env->ehpc_heads = o->ehpc_heads;
  for (int i = 0; i < r->n_inst; i++) {
    eval_instance *in = &r->inst[i];
    if (in->sys->init && in->sys->init(env, in, &in->state, err)) return -1;
  }
  return 0;
}

// The last path component without trailing slashes and, when strip_ext, without its extension.
static void base_name(const char *path, int strip_ext, char *out, size_t len) {
  char buf[EVAL_PATH_MAX];
  snprintf(buf, sizeof buf, "%s", path);
  for (size_t n = strlen(buf); n > 1 && buf[n - 1] == '/'; n--) buf[n - 1] = 0;
  snprintf(out, len, "%s", pith_base_name(buf));
  char *dot = strip_ext ? strrchr(out, '.') : NULL;
  if (dot && dot != out) *dot = 0;
}

int eval_open(const eval_options *o, eval_run **run, pith_err *err) {
  eval_run *r = *run = calloc(1, sizeof *r);
  if (!r) return pith_fail(err, "out of memory");
  r->o = *o;
  r->tty = isatty(STDERR_FILENO);
  r->env.export_dir = r->export_dir;
  r->env.verify = o->verify;
  if (open_data(r, err) || resolve_compressor(r, err)) return -1;
  int rc = pick_systems(r, err);
  if (rc) return rc;
  r->env.k = r->have_comp ? r->info.comp.k : o->k > 0 ? o->k : 16;
  int from_manifest = r->have_comp ? manifest_cutoff_len(r->export_dir) : -1;
  r->env.cutoff = o->cutoff_len > 0 ? o->cutoff_len : from_manifest > 0 ? from_manifest : 500;
  r->env.max_new = o->max_new_tokens > 0 ? o->max_new_tokens : r->env.task == EVAL_QA ? 32 : r->env.cutoff + 8;
  if ((rc = check_press_lengths(r, err))) return rc;
  if (load_models(r, err)) return -1;

  // runs/eval/<dataset>__<model>__<method>__k<k> unless named.
  char data_name[256], model_name[256];
  base_name(o->data, 1, data_name, sizeof data_name);
  base_name(r->model_dir, 0, model_name, sizeof model_name);
  if (o->name) snprintf(r->name, sizeof r->name, "%s", o->name);
  else snprintf(r->name, sizeof r->name, "%s__%s__%s__k%d", data_name, model_name,
                !r->have_comp ? "none" : r->info.comp.method == COMP_ICAE ? "icae" : "500x", r->env.k);
  if (o->out) snprintf(r->out_dir, sizeof r->out_dir, "%s", o->out);
  else snprintf(r->out_dir, sizeof r->out_dir, "runs/eval/%s", r->name);
  if (strchr(r->name, '/') && !o->out)
    return pith_fail(err, "--name '%s': a name, not a path (--out DIR sets the folder)", r->name);
  return 0;
}

void eval_close(eval_run *r) {
  if (!r) return;
  if (r->tmp_dir[0]) pith_remove_tree(r->tmp_dir);
  for (int i = r->n_inst - 1; i >= 0; i--)  // a later instance may borrow an earlier one's state
    if (r->inst[i].state && r->inst[i].sys->free) r->inst[i].sys->free(r->inst[i].state);
  llama_free(r->model);
  tokenizer_free(r->tok);
  corpus_close(r->corp);
  free(r->items);
  task_tokens_free(&r->tt);
  strbuf_free(&r->preds);
  free(r);
}

// ---- prompts ------------------------------------------------------------------------------------
// The layouts are data/task.h's, the trainer's: what a model is evaluated on is what it learnt.

static task_kind kind_of(eval_task t) { return t == EVAL_QA ? TASK_QA : TASK_REGEN; }

// The decoder prompt of training ("Question: {q} Answer: "; regen: [bos]) into ex; *dp is
// malloc'd (the caller frees it after the example).
static int example_prompts(const eval_run *r, eval_example *ex, int32_t **dp, pith_err *err) {
  task_kind kind = kind_of(r->env.task);
  int n = task_decoder_prompt_len(&r->tt, kind, ex->n_question_ids);
  if (!(*dp = malloc(sizeof(int32_t) * (size_t)n))) return pith_fail(err, "out of memory");
  ex->n_decoder_prompt = task_decoder_prompt(&r->tt, kind, ex->question_ids, ex->n_question_ids, *dp);
  ex->decoder_prompt = *dp;
  return 0;
}

int eval_text_prompt(const eval_env *env, const eval_example *ex, int part, int32_t **ids, int *n, pith_err *err) {
  *ids = malloc(sizeof(int32_t) * (size_t)(1 + ex->n_context + ex->n_decoder_prompt));
  if (!*ids) return pith_fail(err, "out of memory");
  if (part == EVAL_NO_CONTEXT) {
    memcpy(*ids, ex->decoder_prompt, sizeof(int32_t) * (size_t)ex->n_decoder_prompt);
    *n = ex->n_decoder_prompt;
    return 0;
  }
  if (part > ex->n_context) part = ex->n_context;
  *n = task_baseline_prompt(env->tokens, kind_of(env->task), ex->context, ex->n_context, part, ex->question_ids,
                            ex->n_question_ids, *ids);
  return 0;
}

// ---- generation ---------------------------------------------------------------------------------

int64_t eval_kv_bytes(const eval_env *env, int64_t positions) {
  const llama_config *c = &env->model->cfg;
  return positions * c->n_layers * 2 * c->n_kv_heads * c->head_dim * (int64_t)pt_dtype_size(env->model->dtype);
}

// One row through generate_pressed: the press's select over in->press_context, then in->prompt.
static int generate_press(const eval_env *env, eval_input *in, const gen_config *gc, int32_t **out, int *n_out,
                          pith_err *err) {
  if (in->prefix_k || in->prefix_v) return pith_fail(err, "a press system with a prefix (not supported)");
  if (!in->press_context || in->n_press_context < 1) return pith_fail(err, "a press system without a context");
  const int32_t *ctx = in->press_context, *q = in->prompt;
  int nc = in->n_press_context, nq = in->n_prompt;
  press_selector sel = {in->press, env->model};
  gen_press_request req = {.batch = 1, .context = &ctx, .n_context = &nc, .question = &q, .n_question = &nq,
                           .select = press_select, .select_ctx = &sel};
  gen_press_result res = {0};
  if (generate_pressed(env->model, &req, gc, NULL, NULL, &res, err)) return -1;
  *out = res.ids[0], *n_out = res.n[0];
  res.ids[0] = NULL;
  // The kept entries' K and V; the compact cache's index (16 B an entry) is bookkeeping the dense
  // systems do not have, so it is left out of every system's count alike.
  const llama_config *c = &env->model->cfg;
  in->kv_bytes = res.kv_kept * 2 * c->head_dim * (int64_t)pt_dtype_size(env->model->dtype);
  gen_press_result_free(&res);
  if (!*out && !(*out = malloc(sizeof(int32_t)))) return pith_fail(err, "out of memory");
  return 0;
}

int eval_generate(const eval_env *env, eval_input *in, int32_t **out, int *n_out, pith_err *err) {
  gen_config gc = gen_config_default();
  gc.max_new_tokens = env->max_new;
  gc.eos_ids = env->eos;
  gc.n_eos = env->n_eos;
  if (in->press) return generate_press(env, in, &gc, out, n_out, err);
  if (in->kv_len < 0) return pith_fail(err, "eval_generate: the input's kv_len is not set");
  in->kv_bytes = eval_kv_bytes(env, in->kv_len);
  return generate(env->model, NULL, in->prefix_k, in->prefix_v, in->prompt, in->n_prompt, &gc, NULL, NULL, out,
                  n_out, err);
}

// What a build left at -1: the prefix's positions plus the prompt's tokens before the decoder
// prompt (all of them when the prompt does not end with it, as regen's truncated baseline).
static int default_kv_len(const eval_input *in, const eval_example *ex) {
  int n = in->prefix_k ? (int)pt_size(in->prefix_k[0], 2) : 0, nd = ex->n_decoder_prompt;
  int ends = in->n_prompt >= nd && nd > 0 &&
             !memcmp(in->prompt + in->n_prompt - nd, ex->decoder_prompt, sizeof(int32_t) * (size_t)nd);
  return n + (ends ? in->n_prompt - nd : in->n_prompt);
}

static int is_eos(const eval_env *env, int32_t id) {
  for (int i = 0; i < env->n_eos; i++)
    if (env->eos[i] == id) return 1;
  return 0;
}

int eval_system_run(const eval_env *env, const eval_system *sys, void *state, const eval_example *ex, eval_input *in,
                    int32_t **gen, int *n_gen, pith_err *err) {
  eval_input local = {0}, *x = in ? in : &local;
  *x = (eval_input){.kv_len = -1};
  int32_t *g = NULL;
  int n = 0;
  *gen = NULL, *n_gen = 0;
  int rc = sys->build(state, env, ex, x, err);
  if (!rc && !x->press && x->kv_len < 0) x->kv_len = default_kv_len(x, ex);
  if (!rc) rc = eval_generate(env, x, &g, &n, err);
  if (!rc && env->verify && sys->check) rc = sys->check(state, env, x, g, n, err);
  if (!rc && n > 0 && is_eos(env, g[n - 1])) n--;
  if (!rc && !(*gen = malloc(sizeof(int32_t) * (size_t)(x->n_echo + n + 1)))) rc = pith_fail(err, "out of memory");
  if (!rc) {  // the echo, then the generated ids (memcpy must not see NULL, even for 0 bytes)
    if (x->n_echo) memcpy(*gen, x->echo, sizeof(int32_t) * (size_t)x->n_echo);
    if (n) memcpy(*gen + x->n_echo, g, sizeof(int32_t) * (size_t)n);
    *n_gen = x->n_echo + n;
  }
  free(g);
  if (!in) eval_input_free(&local);
  return rc;
}

// ---- the loop -----------------------------------------------------------------------------------

// A malloc'd decode of ids (special tokens left out, as skip_special_tokens=True), with the
// surrounding spaces trimmed: a tokenizer that adds a prefix space when encoding gives it back here.
static char *decode(eval_run *r, const int32_t *ids, int n, pith_err *err) {
  char *s = tokenizer_decode(r->tok, ids, (size_t)n, 1, err);
  if (!s) return NULL;
  size_t b = strspn(s, " \t\n"), e = strlen(s);
  while (e > b && strchr(" \t\n", s[e - 1])) e--;
  memmove(s, s + b, e - b);
  s[e - b] = 0;
  return s;
}

// One record through every system.
static int eval_record(eval_run *r, corpus_record *rec, pith_err *err) {
  int qa = r->env.task == EVAL_QA;
  const corpus_field *ctx = qa ? &rec->context : &rec->doc;
  eval_example ex = {.index = rec->index, .id = rec->id, .context = ctx->tokens,
                     .n_context = (int)(ctx->n_tokens < r->env.cutoff ? ctx->n_tokens : r->env.cutoff),
                     .question = qa ? rec->question.text : NULL, .question_ids = qa ? rec->question.tokens : NULL,
                     .n_question_ids = qa ? (int)rec->question.n_tokens : 0, .n_golds = qa ? rec->n_answers : 0};
  int32_t *dp = NULL;
  const char **golds = malloc(sizeof(char *) * (size_t)(rec->n_answers + 1));
  if (!golds) return pith_fail(err, "out of memory");
  for (int i = 0; i < rec->n_answers; i++) golds[i] = rec->answers[i].text;
  ex.golds = golds;
  char *text = NULL;  // the context as read: regen's reference, qa's context in predictions.jsonl
  int rc = example_prompts(r, &ex, &dp, err);
  if (!rc && !(text = decode(r, ex.context, ex.n_context, err))) rc = -1;
  if (qa) ex.context_text = text;
  else ex.reference = text;

  r->n_context += ex.n_context;
  for (int i = 0; i < r->n_inst && !rc; i++) {
    const eval_instance *inst = &r->inst[i];
    int32_t *gen = NULL;
    int n_gen = 0;
    eval_input in = {0};
    pt_scope s = pt_scope_begin();
    rc = eval_system_run(&r->env, inst->sys, inst->state, &ex, &in, &gen, &n_gen, err);
    if (rc && inst->arg) {  // say which spec failed
      pith_err why = *err;
      pith_fail(err, "%s: %s", inst->name, why.msg);
    }
    r->read[i] += in.n_read;
    r->kv[i] += (double)in.kv_bytes;
    int n_read = in.n_read;
    int64_t kv_bytes = in.kv_bytes;
    char *kept = in.kept_text;  // the record's, after the scope
    in.kept_text = NULL;
    eval_input_free(&in);
    pt_scope_end(s);
    char *pred = rc ? NULL : decode(r, gen, n_gen, err);
    if (!rc && !pred) rc = -1;
    if (!rc) rc = eval_record_prediction(r, i, &ex, pred, n_read, kv_bytes, kept, err);
    free(kept);
    free(pred);
    free(gen);
  }
  free(text);
  free(dp);
  free(golds);
  return rc;
}

static void progress(eval_run *r, int64_t done, double t0, int final) {
  if (r->o.quiet) return;
  int64_t every = r->n_items / 10 > 0 ? r->n_items / 10 : 1;
  if (!r->tty && !final && done % every) return;
  const char *m = r->env.task == EVAL_QA ? "f1" : "rougeL";
  char line[1024];
  int len = snprintf(line, sizeof line, "eval %s %lld/%lld", r->env.task == EVAL_QA ? "qa" : "regen",
                     (long long)done, (long long)r->n_items);
  for (int s = 0; s < r->n_inst; s++)
    if (len < (int)sizeof line)
      len += snprintf(line + len, sizeof line - len, "  %s %lld %s %.1f", r->inst[s].name,
                      (long long)r->sc[s].n, m, eval_score(r, s, m));
  double el = pith_now_s() - t0;
  if (len < (int)sizeof line) snprintf(line + len, sizeof line - len, "  %.1fs", el);
  if (r->tty) fprintf(stderr, "\r%s%s", line, final ? "\n" : "");
  else fprintf(stderr, "%s\n", line);
  fflush(stderr);
}

int eval_evaluate(eval_run *r, pith_err *err) {
  corpus_record rec = {0};
  int rc = 0;
  double t0 = pith_now_s();
  int was = pt_set_grad_enabled(0);
  for (int64_t i = 0; i < r->n_items && !rc; i++) {
    rc = corpus_read(r->corp, r->items[i], CORPUS_READ_ALL, &rec, err);
    if (!rc) rc = eval_record(r, &rec, err);
    if (!rc) progress(r, i + 1, t0, i + 1 == r->n_items);
  }
  pt_set_grad_enabled(was);
  corpus_record_free(&rec);
  for (int i = 0; i < r->n_inst && !rc && r->o.verify && !r->o.quiet; i++)
    if (r->inst[i].sys->report) r->inst[i].sys->report(r->inst[i].state, stderr);
  return rc;
}
