// eval_report: the scores of `pith eval` and where they go: each prediction scored and recorded as
// a line of predictions.jsonl; metrics.json (task, n, systems: {system: {metric: value}}, retained:
// compressed / full in % per metric (qa), compressor, data, split); config.yaml (the resolved
// options); the table on stdout. Scores are in [0, 100].
#include <cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "eval_internal.h"
#include "cjson_file.h"
#include "run_config.h"

#define EVAL_FORMAT "pith-eval"
#define EVAL_VERSION 1

// Metric columns per task, in table order.
static const char *const QA_METRICS[] = {"em", "f1", "raw_em", "raw_f1"};
static const char *const REGEN_METRICS[] = {"rouge1", "rouge2", "rougeL", "bleu", "em"};

static int n_metrics(const eval_run *r, const char *const **names) {
  *names = r->env.task == EVAL_QA ? QA_METRICS : REGEN_METRICS;
  return r->env.task == EVAL_QA ? (int)(sizeof QA_METRICS / sizeof *QA_METRICS)
                                : (int)(sizeof REGEN_METRICS / sizeof *REGEN_METRICS);
}

static const char *task_name(const eval_run *r) { return r->env.task == EVAL_QA ? "qa" : "regen"; }

static const char *method_name(const eval_run *r) {
  return !r->have_comp ? "none" : r->info.comp.method == COMP_ICAE ? "icae" : "500x";
}

// The index of the system named name when it runs, else -1.
static int running(const eval_run *r, const char *name) {
  for (int i = 0; i < r->n_inst; i++)
    if (!strcmp(r->inst[i].name, name)) return i;
  return -1;
}

// ---- scoring ------------------------------------------------------------------------------------

static int preds_append(eval_run *r, const char *s) {
  return strbuf_adds(&r->preds, s) || strbuf_addc(&r->preds, '\n') ? -1 : 0;
}

static cJSON *json_strings(const char *const *s, int n) {
  cJSON *a = cJSON_CreateArray();
  for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateString(s[i]));
  return a;
}

int eval_record_prediction(eval_run *r, int sys, const eval_example *ex, const char *pred, int n_read,
                           int64_t kv_bytes, const char *kept, pith_err *err) {
  eval_scores *s = &r->sc[sys];
  int bad = 0, qa = r->env.task == EVAL_QA;
  if (qa) {
    bad = squad_acc_add(&s->squad, pred, ex->golds, ex->n_golds);
    s->raw_em += metrics_raw_em(pred, ex->golds, ex->n_golds);
    s->raw_f1 += metrics_raw_f1(pred, ex->golds, ex->n_golds);
  } else {
    double r1, r2, rl;
    bad = metrics_rouge(pred, ex->reference, &r1, &r2, &rl) || bleu_acc_add(&s->bleu, pred, ex->reference);
    s->rouge1 += r1, s->rouge2 += r2, s->rougel += rl;
    s->em += metrics_exact_match(pred, ex->reference);
  }
  s->n++;
  cJSON *j = cJSON_CreateObject();
  cJSON_AddStringToObject(j, "system", r->inst[sys].name);
  cJSON_AddNumberToObject(j, "index", (double)ex->index);
  if (ex->id && *ex->id) cJSON_AddStringToObject(j, "id", ex->id);
  if (qa && ex->context_text) cJSON_AddStringToObject(j, "context", ex->context_text);
  if (qa) cJSON_AddStringToObject(j, "question", ex->question);
  cJSON_AddStringToObject(j, "prediction", pred);
  // hard systems and chains: how many positions stood for the context (the others' are fixed)
  if (r->inst[sys].sys == &eval_sys_hard || r->inst[sys].sys == &eval_sys_chain)
    cJSON_AddNumberToObject(j, "prompt_tokens", n_read);
  // press systems: the bytes of K/V the press kept of this example (the others' follow from its length)
  if (r->inst[sys].sys == &eval_sys_press) cJSON_AddNumberToObject(j, "kv_bytes", (double)kv_bytes);
  if (kept) cJSON_AddStringToObject(j, "kept", kept);  // a hard system's kept text of the context
  if (qa) cJSON_AddItemToObject(j, "golds", json_strings(ex->golds, ex->n_golds));
  else cJSON_AddStringToObject(j, "reference", ex->reference);
  char *line = cJSON_PrintUnformatted(j);
  cJSON_Delete(j);
  if (bad || isnan(s->raw_f1 + s->rouge1) || !line || preds_append(r, line)) bad = 1;
  free(line);
  return bad ? pith_fail(err, "out of memory while scoring") : 0;
}

double eval_score(const eval_run *r, int sys, const char *m) {
  const eval_scores *s = &r->sc[sys];
  double n = s->n ? (double)s->n : 1;
  if (r->env.task == EVAL_QA) {
    if (!strcmp(m, "em")) return squad_acc_em(&s->squad);
    if (!strcmp(m, "f1")) return squad_acc_f1(&s->squad);
    if (!strcmp(m, "raw_em")) return 100 * s->raw_em / n;
    return 100 * s->raw_f1 / n;
  }
  if (!strcmp(m, "rouge1")) return 100 * s->rouge1 / n;
  if (!strcmp(m, "rouge2")) return 100 * s->rouge2 / n;
  if (!strcmp(m, "rougeL")) return 100 * s->rougel / n;
  if (!strcmp(m, "bleu")) return bleu_acc_score(&s->bleu);
  return 100 * s->em / n;
}

// ---- outputs ------------------------------------------------------------------------------------

static int write_json(const char *dir, const char *name, cJSON *j, pith_err *err) {
  char path[EVAL_PATH_MAX + 64];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  return cjson_write_file(path, j, err);
}

static int write_metrics(eval_run *r, pith_err *err) {
  const char *const *names;
  int nm = n_metrics(r, &names);
  cJSON *j = cJSON_CreateObject(), *systems = cJSON_CreateObject(), *ret = cJSON_CreateObject();
  cJSON_AddStringToObject(j, "format", EVAL_FORMAT "-metrics");
  cJSON_AddNumberToObject(j, "format_version", EVAL_VERSION);
  cJSON_AddStringToObject(j, "task", task_name(r));
  cJSON_AddNumberToObject(j, "n", (double)r->n_items);
  for (int s = 0; s < r->n_inst; s++) {
    cJSON *o = cJSON_AddObjectToObject(systems, r->inst[s].name);
    for (int m = 0; m < nm; m++) cJSON_AddNumberToObject(o, names[m], eval_score(r, s, names[m]));
  }
  cJSON_AddItemToObject(j, "systems", systems);
  // The positions each system's decoder read for the context (text tokens or prefix), mean per
  // example, beside the context's own length: the compression each row actually used.
  double n = r->n_items ? (double)r->n_items : 1;
  cJSON *tok = cJSON_AddObjectToObject(j, "prompt_tokens");
  for (int s = 0; s < r->n_inst; s++) cJSON_AddNumberToObject(tok, r->inst[s].name, r->read[s] / n);
  cJSON_AddNumberToObject(j, "context_tokens", r->n_context / n);
  // The bytes of K/V each system's decoder held for the context when it began the decoder prompt,
  // mean per example: (bos + context tokens read, or the prefix) × layers × 2 × Hkv × head_dim ×
  // element size; a press's kept entries (its compact index, 16 B an entry, not counted).
  cJSON *kv = cJSON_AddObjectToObject(j, "kv_bytes");
  for (int s = 0; s < r->n_inst; s++) cJSON_AddNumberToObject(kv, r->inst[s].name, r->kv[s] / n);
  // Retained: what the compressed prefix keeps of the full context's score (qa), null where full is 0.
  int comp = running(r, "compressed"), full = running(r, "full");
  if (r->env.task == EVAL_QA && comp >= 0 && full >= 0)
    for (int m = 0; m < nm; m++) {
      double f = eval_score(r, full, names[m]);
      if (f > 0) cJSON_AddNumberToObject(ret, names[m], 100 * eval_score(r, comp, names[m]) / f);
      else cJSON_AddNullToObject(ret, names[m]);
    }
  cJSON_AddItemToObject(j, "retained", ret);
  // Every system's share of the full context's score (qa), null where full is 0.
  if (r->env.task == EVAL_QA && full >= 0) {
    cJSON *all = cJSON_AddObjectToObject(j, "retained_by_system");
    for (int s = 0; s < r->n_inst; s++) {
      cJSON *o = cJSON_AddObjectToObject(all, r->inst[s].name);
      for (int m = 0; m < nm; m++) {
        double f = eval_score(r, full, names[m]);
        if (f > 0) cJSON_AddNumberToObject(o, names[m], 100 * eval_score(r, s, names[m]) / f);
        else cJSON_AddNullToObject(o, names[m]);
      }
    }
  }
  if (r->n_hard) {
    cJSON *h = cJSON_AddObjectToObject(j, "hard");
    cJSON_AddStringToObject(h, "systems", r->o.hard);
    cJSON_AddStringToObject(h, "scorer", r->o.hard_scorer ? r->o.hard_scorer : r->model_dir);
    cJSON_AddStringToObject(h, "budget", r->o.hard_llmlingua_budget ? "llmlingua" : "exact");
    if (r->o.l2_scorer) cJSON_AddStringToObject(h, "l2_scorer", r->o.l2_scorer);
    if (r->o.ehpc_heads) cJSON_AddStringToObject(h, "ehpc_heads", r->o.ehpc_heads);
  }
  if (r->n_press) {  // each press system's canonical spec (every parameter) and whether it saw the question
    cJSON *p = cJSON_AddObjectToObject(j, "press");
    for (int s = 0; s < r->n_inst; s++) {
      eval_press_spec sp;
      char spec[512];
      pith_err e = {{0}};
      if (r->inst[s].sys != &eval_sys_press || eval_press_parse(r->inst[s].arg, &sp, &e)) continue;
      press_format(&sp.p, spec, sizeof spec);
      cJSON *o = cJSON_AddObjectToObject(p, r->inst[s].name);
      cJSON_AddStringToObject(o, "spec", spec);
      cJSON_AddBoolToObject(o, "question_aware", sp.aware);
    }
  }
  cJSON *c = cJSON_AddObjectToObject(j, "compressor");
  if (r->have_comp) {
    cJSON_AddStringToObject(c, "path", r->o.compressor);
    cJSON_AddStringToObject(c, "method", method_name(r));
    cJSON_AddNumberToObject(c, "k", r->info.comp.k);
    if (r->info.comp.method == COMP_500X)
      cJSON_AddStringToObject(c, "position_policy",
                              r->info.comp.positions == COMP_POS_REFERENCE ? "reference" : "consistent");
    else cJSON_AddBoolToObject(c, "ae_token", r->env.task == EVAL_REGEN && r->info.comp.ae_token);  // as decoded
    cJSON_AddNumberToObject(c, "step", (double)r->info.step);
    cJSON_AddStringToObject(c, "checkpoint", r->info.checkpoint);
    cJSON_AddNumberToObject(c, "lora_rank", r->info.lora.rank);
  } else {
    cJSON_AddStringToObject(c, "method", "none");
    cJSON_AddNumberToObject(c, "k", r->env.k);
  }
  cJSON_AddStringToObject(j, "base_model", r->model_dir);
  cJSON_AddStringToObject(j, "tokenizer", r->tok_path);
  cJSON_AddStringToObject(j, "data", r->o.data);
  cJSON_AddStringToObject(j, "split", r->o.split);
  cJSON_AddNumberToObject(j, "cutoff_len", r->env.cutoff);
  cJSON_AddNumberToObject(j, "max_new_tokens", r->env.max_new);
  cJSON_AddStringToObject(j, "command", r->o.command ? r->o.command : "");
  int rc = write_json(r->out_dir, "metrics.json", j, err);
  cJSON_Delete(j);
  return rc;
}

static int write_config(eval_run *r, pith_err *err) {
  // What the run was (written, never read back by pith: no range to enforce).
  static const rc_key schema[] = {
    {"compressor", RC_STRING, "", "", NULL}, {"export", RC_STRING, "", "", NULL}, {"method", RC_STRING, "", "", NULL},
    {"k", RC_INT, "0", "", "any"}, {"data", RC_STRING, "", "", NULL}, {"task", RC_STRING, "", "", NULL},
    {"split", RC_STRING, "", "", NULL}, {"n_examples", RC_INT, "0", "", "any"}, {"max_examples", RC_INT, "0", "", "any"},
    {"cutoff_len", RC_INT, "0", "", "any"}, {"max_new_tokens", RC_INT, "0", "", "any"}, {"baselines", RC_STRING, "", "", NULL},
    {"model", RC_STRING, "", "", NULL}, {"tokenizer", RC_STRING, "", "", NULL}, {"device", RC_STRING, "", "", NULL},
    {"bf16", RC_BOOL, "false", "", NULL}, {"threads", RC_INT, "0", "", "any"}, {"verify", RC_BOOL, "false", "", NULL},
    {"out", RC_STRING, "", "", NULL},
    {"name", RC_STRING, "", "", NULL}, {"hard", RC_STRING, "", "", NULL}, {"hard_scorer", RC_STRING, "", "", NULL},
    {"hard_budget", RC_STRING, "", "", NULL}, {"l2_scorer", RC_STRING, "", "", NULL},
    {"cl100k", RC_STRING, "", "", NULL}, {"ehpc_heads", RC_STRING, "", "", NULL},
    {"press", RC_STRING, "", "", NULL},
  };
  char baselines[256] = "", kv[EVAL_PATH_MAX + 64];
  for (int s = 0; s < r->n_inst; s++)
    if (r->inst[s].sys->baseline)
      snprintf(baselines + strlen(baselines), sizeof baselines - strlen(baselines), "%s%s", *baselines ? "," : "",
               r->inst[s].name);
  const eval_options *o = &r->o;
  struct {
    const char *key, *val;
    long long num;
  } vals[] = {
    {"compressor", o->compressor, 0}, {"export", r->have_comp ? r->export_dir : "", 0}, {"method", method_name(r), 0},
    {"k", NULL, r->env.k}, {"data", o->data, 0}, {"task", task_name(r), 0},
    {"split", o->split, 0}, {"n_examples", NULL, r->n_items}, {"max_examples", NULL, o->max_examples},
    {"cutoff_len", NULL, r->env.cutoff}, {"max_new_tokens", NULL, r->env.max_new}, {"baselines", baselines, 0},
    {"model", r->model_dir, 0}, {"tokenizer", r->tok_path, 0}, {"device", o->device, 0},
    {"bf16", o->bf16 ? "true" : "false", 0}, {"threads", NULL, o->threads},
    {"verify", o->verify ? "true" : "false", 0}, {"out", r->out_dir, 0},
    {"name", r->name, 0}, {"hard", o->hard ? o->hard : "", 0},
    {"hard_scorer", o->hard_scorer ? o->hard_scorer : o->hard ? r->model_dir : "", 0},
    {"hard_budget", !o->hard ? "" : o->hard_llmlingua_budget ? "llmlingua" : "exact", 0},
    {"l2_scorer", o->l2_scorer ? o->l2_scorer : "", 0}, {"cl100k", o->cl100k ? o->cl100k : "", 0},
    {"ehpc_heads", o->ehpc_heads ? o->ehpc_heads : "", 0}, {"press", o->press ? o->press : "", 0},
  };
  // The export folder moved into OUT when the compressor came from a run.
  char moved[EVAL_PATH_MAX + 16];
  snprintf(moved, sizeof moved, "%s/export", r->out_dir);
  if (r->from_run) vals[1].val = moved;
  run_config *c = run_config_new();
  int rc = c ? 0 : pith_fail(err, "out of memory");
  for (size_t i = 0; i < sizeof vals / sizeof vals[0] && !rc; i++) {
    if (vals[i].val) snprintf(kv, sizeof kv, "%s=%s", vals[i].key, vals[i].val);
    else snprintf(kv, sizeof kv, "%s=%lld", vals[i].key, vals[i].num);
    rc = run_config_set(c, kv, err);
  }
  if (!rc) rc = run_config_resolve(c, schema, (int)(sizeof schema / sizeof schema[0]), err);
  char *yaml = rc ? NULL : run_config_yaml(c);
  if (!rc && !yaml) rc = pith_fail(err, "out of memory");
  if (!rc) {
    const char *head = "# pith eval: the resolved options of this evaluation (metrics.json holds the scores)\n";
    size_t n = strlen(head) + strlen(yaml);
    char *text = malloc(n + 1);
    if (!text) {
      rc = pith_fail(err, "out of memory");
    } else {
      snprintf(text, n + 1, "%s%s", head, yaml);
      char path[EVAL_PATH_MAX + 32];
      snprintf(path, sizeof path, "%s/config.yaml", r->out_dir);
      rc = pith_write_file_atomic(path, text, n, err);
      free(text);
    }
  }
  free(yaml);
  run_config_free(c);
  return rc;
}

// OUT/export: the temporary export renamed into place, or exported again from the same checkpoint
// where a rename cannot (another file system, an earlier export in the way).
static int place_export(eval_run *r, pith_err *err) {
  if (!r->from_run) return 0;
  char dst[EVAL_PATH_MAX + 16];
  snprintf(dst, sizeof dst, "%s/export", r->out_dir);
  struct stat st;
  if (stat(dst, &st) != 0 && rename(r->export_dir, dst) == 0) return 0;
  export_options opt = {.force = 1};
  return export_run(r->ckpt_used, dst, &opt, NULL, 0, err);
}

int eval_write(eval_run *r, pith_err *err) {
  char path[EVAL_PATH_MAX + 32];
  if (pith_mkdirs(r->out_dir, err) || place_export(r, err)) return -1;
  snprintf(path, sizeof path, "%s/predictions.jsonl", r->out_dir);
  if (pith_write_file_atomic(path, r->preds.p ? r->preds.p : "", r->preds.n, err)) return -1;
  return write_metrics(r, err) || write_config(r, err) ? -1 : 0;
}

// The ratio of the context's length to what a system read: "4.0x", "-" when it read nothing.
static void ratio_cell(const eval_run *r, int s, char *out, size_t len) {
  if (r->read[s] > 0) snprintf(out, len, "%.1fx", r->n_context / r->read[s]);
  else snprintf(out, len, "-");
}

void eval_print_table(const eval_run *r, FILE *f) {
  const char *const *names;
  int nm = n_metrics(r, &names);
  char method[64];
  if (r->have_comp) snprintf(method, sizeof method, "%s k=%d", method_name(r), r->info.comp.k);
  else snprintf(method, sizeof method, "no compressor (truncated k=%d)", r->env.k);
  fprintf(f, "pith eval: %s on %s (%s split, %lld examples), %s, cutoff_len %d, max_new_tokens %d\n", task_name(r),
          r->o.data, r->o.split, (long long)r->n_items, method, r->env.cutoff, r->env.max_new);
  // With hard or press systems, one table of every family: the tokens each read for the context
  // (mean), the ratio to the context's, with presses the KiB of K/V held for the context (mean), and
  // (qa) the share of the full context's F1.
  int wide = r->n_hard > 0 || r->n_press > 0, kv = r->n_press > 0, w = 12, full = running(r, "full"), comp = running(r, "compressed");
  for (int s = 0; wide && s < r->n_inst; s++) w = (int)strlen(r->inst[s].name) + 1 > w ? (int)strlen(r->inst[s].name) + 1 : w;
  int ret = wide && r->env.task == EVAL_QA && full >= 0;
  fprintf(f, "%-*s", w, "system");
  for (int m = 0; m < nm; m++) fprintf(f, " %8s", names[m]);
  if (wide) fprintf(f, " %8s %8s", "tokens", "ratio");
  if (kv) fprintf(f, " %10s", "kv_KiB");
  if (ret) fprintf(f, " %8s", "ret_f1");
  fprintf(f, "\n");
  double n = r->n_items ? (double)r->n_items : 1;
  for (int s = 0; s < r->n_inst; s++) {
    fprintf(f, "%-*s", w, r->inst[s].name);
    for (int m = 0; m < nm; m++) fprintf(f, " %8.2f", eval_score(r, s, names[m]));
    if (wide) {
      char cell[32];
      ratio_cell(r, s, cell, sizeof cell);
      fprintf(f, " %8.1f %8s", r->read[s] / n, cell);
    }
    if (kv) fprintf(f, " %10.1f", r->kv[s] / n / 1024);
    if (ret) {
      double fs = eval_score(r, full, "f1");
      if (fs > 0) fprintf(f, " %8.1f", 100 * eval_score(r, s, "f1") / fs);
      else fprintf(f, " %8s", "-");
    }
    fprintf(f, "\n");
  }
  if (r->env.task == EVAL_QA && comp >= 0 && full >= 0) {
    fprintf(f, "%-*s", w, "retained %");
    for (int m = 0; m < nm; m++) {
      double fs = eval_score(r, full, names[m]);
      if (fs > 0) fprintf(f, " %8.1f", 100 * eval_score(r, comp, names[m]) / fs);
      else fprintf(f, " %8s", "-");
    }
    fprintf(f, "\n");
  }
  if (wide && r->n_hard)
    fprintf(f, "tokens: positions read for the context, mean per example (the context: %.1f); hard budget: %s\n",
            r->n_context / n, r->o.hard_llmlingua_budget ? "llmlingua's" : "exact");
  else if (wide)
    fprintf(f, "tokens: positions read for the context, mean per example (the context: %.1f)\n", r->n_context / n);
  if (kv)
    fprintf(f, "kv_KiB: K/V held for the context when the decoder prompt begins, mean per example (a press: its "
               "kept entries; +q: the question was pressed with the context)\n");
  fprintf(f, "results in %s/ (metrics.json, predictions.jsonl, config.yaml)\n", r->out_dir);
}
