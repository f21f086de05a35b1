// pith compress: shorten prompts by dropping tokens, with a causal LM as the scorer (LLMLingua,
// LongLLMLingua; models/hard_compress.h). Reads JSON lines ({"context": [...] or "prompt": "...",
// "question": ..., "instruction": ..., "response": ...}) or plain text, writes one JSON line per prompt.
// A line's "response" (a target LLM's answer) comes back as "recovered_response": LongLLMLingua's
// recovery of the compressed spans it quotes from the original prompt.
// --method llmlingua2 scores with a BERT / XLM-R token classifier instead (LLMLingua-2;
// models/hard_compress_l2.h): its part of this file is run_l2 and what it calls.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arena.h"
#include "cli.h"
#include "commands.h"
#include "ehpc.h"
#include "encoder_folder.h"
#include "hard_compress.h"
#include "hard_compress_l2.h"
#include "hf_folder.h"
#include "json.h"
#include "strbuf.h"
#include "tokenizer.h"

typedef struct {
  const char *method, *scorer, *question, *instruction, *input, *output, *target_tokenizer, *context_budget;
  double rate, target_tokens, dynamic_ratio;
  int iterative_size, rank, condition, compare, reorder, threads, trace, format;
  int no_context_filter, no_token_filter, no_concate_question, add_instruction, quiet, exact;
  const char *heads;  // ehpc: --heads LAYER:HEAD,...
  int window, kernel; // ehpc: 0 = the manifest's, else 8 and 7
  // llmlingua2
  const char *force_tokens, *chunk_end_tokens, *cl100k;
  int force_reserve_digit, drop_consecutive, token_to_word;
} compress_opts;

// ehpc (models/ehpc.h): the evaluator heads and settings, NULL for the llmlingua family.
typedef struct {
  ehpc_heads heads;
  ehpc_options opts;
} ehpc_run;
int cmd_compress_ehpc_probe(int argc, char **argv);  // cmd_compress_ehpc.c

static const char *const METHODS[] = {"llmlingua", "longllmlingua", "llmlingua2", "ehpc"};

static int parse_args(int argc, char **argv, compress_opts *o, int *code) {
  *o = (compress_opts){.rate = 0.5, .dynamic_ratio = -1, .iterative_size = 200};
  int method = 0;
  const cli_opt opts[] = {
      {"--method", CLI_CHOICE, &method, .choices = "llmlingua|longllmlingua|llmlingua2|ehpc", .flags = CLI_REQUIRED,
       .help = "llmlingua: perplexity ranking, iterative token compression;\n"
               "longllmlingua: question-aware ranking and contrastive token scores;\n"
               "llmlingua2: a token classifier's keep probabilities, per word;\n"
               "ehpc: evaluator heads' attention from the last --window tokens"},
      {"--scorer", CLI_STR, &o->scorer, .metavar = "DIR", .flags = CLI_REQUIRED,
       .help = "a causal LM folder (llama, mistral, qwen2) with its tokenizer.json;\n"
               "llmlingua2: a BERT or XLM-R token classifier folder with its tokenizer"},
      {"--rate", CLI_DOUBLE, &o->rate, .metavar = "R", .min = 0, .max = 1, .flags = CLI_MIN_OPEN,
       .help = "the fraction of scorer tokens to keep, 0 < R <= 1 (default 0.5)"},
      {"--target-tokens", CLI_DOUBLE, &o->target_tokens, .metavar = "N", .min = 0, .max = CLI_INF,
       .flags = CLI_MIN_OPEN, .help = "the contexts' budget in scorer tokens (overrides --rate)"},
      {"--question", CLI_STR, &o->question, .metavar = "Q", .help = "kept whole, last (a line's \"question\" wins)"},
      {"--instruction", CLI_STR, &o->instruction, .metavar = "I",
       .help = "kept whole, first (a line's \"instruction\" wins)"},
      {"--input", CLI_STR, &o->input, .metavar = "FILE", .help = "JSON lines or plain text (default: stdin)"},
      {"--format", CLI_CHOICE, &o->format, .choices = "auto|jsonl|text",
       .help = "the input's kind (default auto: JSON lines when it starts with '{')"},
      {"--output", CLI_STR, &o->output, .metavar = "FILE",
       .help = "JSON lines, written whole or not at all (default: stdout)"},
      {"--target-tokenizer", CLI_STR, &o->target_tokenizer, .metavar = "PATH",
       .help = "counts tokens for the target LLM (default: the scorer's tokenizer)"},
      {"--iterative-size", CLI_INT, &o->iterative_size, .metavar = "N", .min = 1, .max = 1000000,
       .help = "tokens per window of the token-level stage (default 200)"},
      {"--rank-method", CLI_CHOICE, &o->rank, .metavar = "M", .choices = "auto|llmlingua|longllmlingua",
       .help = "how contexts are ranked: llmlingua or longllmlingua (default: the method's)"},
      {"--condition-in-question", CLI_CHOICE, &o->condition, .metavar = "WHERE",
       .choices = "auto|none|before|after|none_condition|before_condition|after_condition",
       .help = "none, before or after: where the question goes when ranking; with\n"
               "_condition (after_condition) it also goes before the contexts in the\n"
               "token stage (default: none; after_condition for longllmlingua)"},
      {"--condition-compare", CLI_CHOICE, &o->compare, .metavar = "on|off", .choices = "auto|on|off",
       .help = "contrastive token scores (default: on for longllmlingua)"},
      {"--reorder-context", CLI_CHOICE, &o->reorder, .metavar = "ORDER", .choices = "auto|original|sort|two_stage",
       .help = "original, sort (rank order) or two_stage: the kept contexts' order\n"
               "(default: original; sort for longllmlingua)"},
      {"--dynamic-ratio", CLI_DOUBLE, &o->dynamic_ratio, .metavar = "D", .min = 0, .max = 1,
       .help = "dynamic_context_compression_ratio (default 0; 0.3 for longllmlingua)"},
      {"--context-budget", CLI_STR, &o->context_budget, .metavar = "OPN",
       .help = "the coarse stage's budget from the target: +N, -N or *N (default +100)"},
      {"--no-context-filter", CLI_FLAG, &o->no_context_filter, .help = "keep every context (no coarse stage)"},
      {"--no-token-filter", CLI_FLAG, &o->no_token_filter, .help = "no token-level stage"},
      {"--no-concate-question", CLI_FLAG, &o->no_concate_question,
       .help = "leave the question out of the compressed prompt"},
      {"--add-instruction", CLI_FLAG, &o->add_instruction, .help = "the instruction joins the question prefix"},
      {"--exact", CLI_FLAG, &o->exact,
       .help = "pith's exact budget instead of llmlingua's: the compressed prompt has\n"
               "rate x the original's target tokens (--target-tokens: that many)"},
      {"--trace", CLI_FLAG, &o->trace,
       .help = "also write the token stage's ids, kept ids and first-pass NLLs"},
      {"--threads", CLI_INT, &o->threads, .metavar = "N", .min = 1, .max = 4096,
       .help = "CPU threads (default: libtorch's; 1 is often fastest for small scorers)"},
      {"--quiet", CLI_FLAG, &o->quiet, .help = "no progress on stderr"},
      {"--heads", CLI_STR, &o->heads, .metavar = "L:h,h",
       .help = "ehpc: the evaluator layer and heads (default: the scorer's ehpc.json,\n"
               "written by pith compress ehpc-probe, or manifest.json's \"ehpc\")"},
      {"--window", CLI_INT, &o->window, .metavar = "W", .min = 1, .max = 4096,
       .help = "ehpc: the last W tokens score the rest and are kept (default: the heads' file, else 8)"},
      {"--kernel", CLI_INT, &o->kernel, .metavar = "K", .min = 1, .max = 4095,
       .help = "ehpc: the avg_pool1d kernel over the scores, odd (default: the heads' file, else 7)"},
      // llmlingua2 (the contexts alone are compressed; a question or instruction is not used)
      {"--force-tokens", CLI_STR, &o->force_tokens, .metavar = "LIST",
       .help = "llmlingua2: comma-separated tokens always kept, e.g. '\\n,?,.'\n"
               "(escapes \\n \\t \\, \\\\; at most 100)"},
      {"--force-reserve-digit", CLI_FLAG, &o->force_reserve_digit, .help = "llmlingua2: keep every word with a digit"},
      {"--drop-consecutive", CLI_FLAG, &o->drop_consecutive,
       .help = "llmlingua2: drop a force token that repeats with nothing kept between"},
      {"--chunk-end-tokens", CLI_STR, &o->chunk_end_tokens, .metavar = "LIST",
       .help = "llmlingua2: tokens a 510-token chunk may end at (default '.,\\n')"},
      {"--token-to-word", CLI_CHOICE, &o->token_to_word, .metavar = "mean|first", .choices = "mean|first",
       .help = "llmlingua2: a word's probability from its tokens' (default mean)"},
      {"--cl100k", CLI_STR, &o->cl100k, .metavar = "PATH",
       .help = "llmlingua2: cl100k_base.tiktoken, whose counts weigh words (default:\n"
               "$TIKTOKEN_CACHE_DIR's or .venv-peers/tiktoken-cache's copy)"},
  };
  const cli_spec spec = {
      "pith compress", CLI_OPTS(opts),
      .about = "Compresses prompts by dropping tokens, as llmlingua 0.2.2's PromptCompressor does (the same\n"
               "decisions for the same scorer and inputs). Each prompt is an instruction, contexts and a\n"
               "question; only the contexts are compressed. Writes per prompt: compressed_prompt, the kept\n"
               "mask over the scorer's tokens of the token stage, origin_tokens and compressed_tokens under\n"
               "the target's tokenizer, rate (compressed / origin), ratio, and time_s.\n"
               "pith compress ehpc-probe --help: finding ehpc's evaluator heads.\n\n"};
  if (cli_command(&spec, argc, argv, code)) return 1;
  o->method = METHODS[method];
  if (o->kernel && o->kernel % 2 == 0) {
    *code = cli_usage_error(&spec, "--kernel must be odd (an even one shifts the scores), not %d", o->kernel);
    return 1;
  }
  if (o->context_budget) {
    char *end;
    const char *b = o->context_budget;
    if (!strchr("+-*", b[0]) || (strtod(b + 1, &end), end == b + 1 || *end)) {
      *code = cli_usage_error(&spec, "--context-budget must be +N, -N or *N (got '%s')", b);
      return 1;
    }
  }
  return 0;
}

static hc_options make_options(const compress_opts *o) {
  hc_options h = !strcmp(o->method, "longllmlingua") ? hc_options_longllmlingua() : hc_options_llmlingua();
  h.rate = o->rate;
  h.target_tokens = o->target_tokens > 0 ? o->target_tokens : -1;
  h.iterative_size = o->iterative_size;
  if (o->rank) h.rank_method = o->rank == 1 ? HC_RANK_LLMLINGUA : HC_RANK_LONGLLMLINGUA;
  if (o->condition) {
    static const hc_condition conds[] = {HC_COND_NONE, HC_COND_BEFORE, HC_COND_AFTER};
    h.condition = conds[(o->condition - 1) % 3];
    h.condition_flag = o->condition > 3;
  }
  if (o->compare) h.condition_compare = o->compare == 1;
  if (o->reorder) h.reorder = (hc_reorder)(o->reorder - 1);
  if (o->dynamic_ratio >= 0) h.dynamic_ratio = o->dynamic_ratio;
  if (o->context_budget) h.budget_op = o->context_budget[0], h.budget_value = strtod(o->context_budget + 1, NULL);
  h.context_filter = !o->no_context_filter;
  h.token_filter = !o->no_token_filter;
  h.concate_question = !o->no_concate_question;
  h.add_instruction = o->add_instruction;
  h.exact = o->exact;
  return h;
}

// The scorer folder: a causal LM of a family pith runs, said in words when it is not.
static llama_model *load_scorer(const char *dir, const char *method, pith_err *err) {
  if (!pith_is_dir(dir)) {
    pith_fail(err, "--scorer '%s': no such folder", dir);
    return NULL;
  }
  char path[4096];
  pith_path_join(path, sizeof path, dir, "config.json");
  size_t len;
  char *cfg = pith_read_file(path, &len, err);
  if (!cfg) return NULL;
  int classifier = strstr(cfg, "ForTokenClassification") || strstr(cfg, "ForMaskedLM") ||
                   strstr(cfg, "ForSequenceClassification");
  free(cfg);
  if (classifier) {
    pith_fail(err, "--scorer '%s': a classifier, not a causal LM (%s needs a causal LM such as llama; "
              "llmlingua2 takes the classifier)", dir, method);
    return NULL;
  }
  return hf_model_load(dir, PT_F32, PT_CPU, err);
}

typedef struct {
  int line, quiet, tty, printed;
  double t0, last;
} progress_state;

static void on_progress(int64_t done, int64_t total, void *ctx) {
  progress_state *p = ctx;
  double now = pith_now_s();
  if (p->quiet || total < 2000 || (now - p->last < 1.0 && done < total)) return;
  p->last = now;
  p->printed = 1;
  double rate = done / (now - p->t0 + 1e-9);
  fprintf(stderr, "%scompress: prompt %d: %lld/%lld tokens, %.0f tokens/s%s", p->tty ? "\r" : "", p->line,
          (long long)done, (long long)total, rate, p->tty ? "   " : "\n");
  fflush(stderr);
}

// One prompt: its parts (pointers into the JSON arena or the input text).
typedef struct {
  const char **contexts;
  int n_contexts;
  const char *question, *instruction;
  const char *response;  // a target LLM's answer to recover against the original (LongLLMLingua)
} prompt_in;

static int parse_line(const char *s, size_t n, arena *a, prompt_in *p, pith_err *err) {
  json_parser P = {0};
  json_value *v = json_parse(&P, a, s, n);
  if (!v) return pith_fail(err, "not JSON: %s at byte %zu", P.why, P.err_off);
  if (v->type != JSON_OBJ) return pith_fail(err, "not a JSON object");
  const json_value *c = json_get(v, "context"), *pr = json_get(v, "prompt"), *q = json_get(v, "question"),
                   *ins = json_get(v, "instruction"), *resp = json_get(v, "response");
  if (c && pr) return pith_fail(err, "has both \"context\" and \"prompt\"; give one");
  if (!c) c = pr;
  if (!c) return pith_fail(err, "no \"context\" or \"prompt\"");
  if (c->type == JSON_STR) {
    p->contexts = arena_alloc(a, sizeof *p->contexts);
    if (!p->contexts) return pith_fail(err, "out of memory");
    p->contexts[0] = c->s;
    p->n_contexts = 1;
  } else if (c->type == JSON_ARR) {
    p->contexts = arena_alloc(a, (c->n ? c->n : 1) * sizeof *p->contexts);
    if (!p->contexts) return pith_fail(err, "out of memory");
    p->n_contexts = 0;
    for (const json_value *e = c->child; e; e = e->next) {
      if (e->type != JSON_STR) return pith_fail(err, "\"%s\" holds %s, not a string", c->key, json_type_name(e));
      p->contexts[p->n_contexts++] = e->s;
    }
  } else {
    return pith_fail(err, "\"%s\" is %s, not a string or a list of strings", c->key, json_type_name(c));
  }
  if (q && q->type != JSON_NULL) {
    if (q->type != JSON_STR) return pith_fail(err, "\"question\" is %s, not a string", json_type_name(q));
    p->question = q->s;
  }
  if (ins && ins->type != JSON_NULL) {
    if (ins->type != JSON_STR) return pith_fail(err, "\"instruction\" is %s, not a string", json_type_name(ins));
    p->instruction = ins->s;
  }
  if (resp && resp->type != JSON_NULL) {
    if (resp->type != JSON_STR) return pith_fail(err, "\"response\" is %s, not a string", json_type_name(resp));
    p->response = resp->s;
  }
  return 0;
}

static int is_blank(const char *s) {
  for (; *s; s++)
    if (!strchr(" \t\n\r\f\v", *s)) return 0;
  return 1;
}

static int64_t count_target(const char *text, void *ctx) {
  int32_t *ids;
  size_t k;
  pith_err err = {{0}};
  if (tokenizer_encode(ctx, text, strlen(text), 0, &ids, &k, &err)) return -1;
  free(ids);
  return (int64_t)k;
}

static int count_tokens(const tokenizer *tok, const char *s, size_t n, int64_t *count, pith_err *err) {
  int32_t *ids;
  size_t k;
  if (tokenizer_encode(tok, s, n, 0, &ids, &k, err)) return -1;
  free(ids);
  *count = (int64_t)k;
  return 0;
}

static void add_ints(strbuf *b, const char *key, const int32_t *v, int64_t n) {
  strbuf_printf(b, ", \"%s\": [", key);
  for (int64_t i = 0; i < n; i++) strbuf_printf(b, "%s%d", i ? ", " : "", (int)v[i]);
  strbuf_adds(b, "]");
}

// One output line for prompt p.
static int compress_one(scorer *sc, const tokenizer *target, const prompt_in *p, const hc_options *h,
                        const ehpc_run *e, int trace, strbuf *out, pith_err *err) {
  int all_blank = 1;
  for (int i = 0; i < p->n_contexts; i++) all_blank &= is_blank(p->contexts[i]);
  if (all_blank) return pith_fail(err, "empty prompt (no context text)");
  double t0 = pith_now_s();
  hc_result r;
  float *escores = NULL;
  int64_t n_escores = 0;
  if (e ? ehpc_compress(sc->lm, sc->tok, &e->heads, p->contexts, p->n_contexts, p->instruction, p->question, &e->opts,
                        &r, trace ? &escores : NULL, &n_escores, err)
        : hc_compress(sc, p->contexts, p->n_contexts, p->instruction, p->question, h, &r, err))
    return -1;
  double dt = pith_now_s() - t0;
  // origin: "\n\n".join([instruction] + contexts + [question]).strip(), as llmlingua counts it
  strbuf all = {0};
  strbuf_adds(&all, p->instruction ? p->instruction : "");
  for (int i = 0; i < p->n_contexts; i++) strbuf_adds(&all, "\n\n"), strbuf_adds(&all, p->contexts[i]);
  strbuf_adds(&all, "\n\n");
  strbuf_adds(&all, p->question ? p->question : "");
  int rc = strbuf_ok(&all) ? 0 : pith_fail(err, "out of memory");
  int64_t origin = 0, compressed = 0;
  char *recovered = NULL;
  if (rc == 0) {
    const char *s = all.p, *e = all.p + all.n;
    while (s < e && strchr(" \t\n\r\f\v", *s)) s++;
    while (e > s && strchr(" \t\n\r\f\v", e[-1])) e--;
    rc = count_tokens(target, s, (size_t)(e - s), &origin, err);
    if (rc == 0 && p->response) {
      // the original prompt as llmlingua counts it (stripped), the response's spans mapped back into it
      char *orig = strndup(s, (size_t)(e - s));
      recovered = orig ? hc_recover(sc->tok, orig, r.prompt, p->response, err) : NULL;
      if (!recovered) rc = orig ? -1 : pith_fail(err, "out of memory");
      free(orig);
    }
  }
  if (rc == 0) rc = count_tokens(target, r.prompt, strlen(r.prompt), &compressed, err);
  strbuf_free(&all);
  if (rc) {
    free(recovered);
    hc_result_free(&r);
    return -1;
  }
  double rate = origin ? (double)compressed / (double)origin : 1.0;
  strbuf_adds(out, "{\"compressed_prompt\": ");
  strbuf_add_json(out, r.prompt, strlen(r.prompt));
  strbuf_printf(out, ", \"origin_tokens\": %lld, \"compressed_tokens\": %lld, \"rate\": %.6f, \"ratio\": %.6f",
                (long long)origin, (long long)compressed, rate, compressed ? (double)origin / (double)compressed : 1.0);
  strbuf_printf(out, ", \"scorer_tokens\": %lld, \"scorer_kept\": %lld, \"target_scorer_tokens\": %.3f, \"time_s\": %.4f",
                (long long)r.n_fine, (long long)r.n_kept, r.target_tokens, dt);
  strbuf_adds(out, ", \"kept\": \"");
  for (int64_t i = 0; i < r.n_fine; i++) strbuf_addc(out, r.kept[i] ? '1' : '0');
  strbuf_adds(out, "\"");
  if (r.rank) {
    strbuf_adds(out, ", \"context_rank\": [");
    for (int i = 0; i < r.n_contexts; i++) strbuf_printf(out, "%s%d", i ? ", " : "", r.rank[i]);
    strbuf_adds(out, "]");
  }
  strbuf_adds(out, ", \"contexts_used\": [");
  for (int i = 0; i < r.n_used; i++) strbuf_printf(out, "%s%d", i ? ", " : "", r.used[i]);
  strbuf_adds(out, "]");
  if (recovered) {
    strbuf_adds(out, ", \"recovered_response\": ");
    strbuf_add_json(out, recovered, strlen(recovered));
    free(recovered);
  }
  if (trace) {
    add_ints(out, "scorer_ids", r.fine_ids, r.n_fine);
    add_ints(out, "kept_ids", r.kept_ids, r.n_kept);
    strbuf_printf(out, ", \"windows\": %d, \"first_nll\": [", r.n_windows);
    for (int64_t i = 0; i < r.n_first_nll; i++) strbuf_printf(out, "%s%.9g", i ? ", " : "", (double)r.first_nll[i]);
    strbuf_adds(out, "]");
  }
  if (escores) {  // ehpc: the heads' attention on every position of the scored sequence
    strbuf_adds(out, ", \"ehpc_scores\": [");
    for (int64_t i = 0; i < n_escores; i++) strbuf_printf(out, "%s%.9g", i ? ", " : "", (double)escores[i]);
    strbuf_adds(out, "]");
    free(escores);
  }
  strbuf_adds(out, "}\n");
  hc_result_free(&r);
  return strbuf_ok(out) ? 0 : pith_fail(err, "out of memory");
}

static char *read_input(const char *path, size_t *len, pith_err *err) {
  if (path && strcmp(path, "-")) return pith_read_file(path, len, err);
  strbuf b = {0};
  char buf[65536];
  size_t k;
  while ((k = fread(buf, 1, sizeof buf, stdin)) > 0) strbuf_add(&b, buf, k);
  strbuf_add(&b, "", 0);
  char *s = strbuf_take(&b, len);
  if (!s) pith_fail(err, "stdin: out of memory");
  return s;
}

// ---------------------------------------------------------------------------------------------
// llmlingua2: a token classifier (models/hard_compress_l2.h)
// ---------------------------------------------------------------------------------------------


// A comma-separated list with escapes (\n \t \, \\) into malloc'd strings.
static int parse_list(const char *opt, const char *s, char ***out, int *n, pith_err *err) {
  *out = NULL, *n = 0;
  strbuf cur = {0};
  for (const char *p = s;; p++) {
    if (*p == ',' || !*p) {
      strbuf_add(&cur, "", 0);
      char **v = realloc(*out, (size_t)(*n + 1) * sizeof *v);
      if (!v || !strbuf_ok(&cur)) return strbuf_free(&cur), pith_fail(err, "%s: out of memory", opt);
      *out = v;
      v[(*n)++] = strbuf_take(&cur, NULL);
      cur = (strbuf){0};
      if (!*p) break;
    } else if (*p == '\\') {
      char c = *++p;
      if (c == 'n') strbuf_addc(&cur, '\n');
      else if (c == 't') strbuf_addc(&cur, '\t');
      else if (c == ',' || c == '\\') strbuf_addc(&cur, c);
      else return strbuf_free(&cur), pith_fail(err, "%s: unknown escape '\\%c' (\\n \\t \\, \\\\)", opt, c ? c : '0');
    } else {
      strbuf_addc(&cur, *p);
    }
  }
  for (int i = 0; i < *n; i++)
    if (!(*out)[i][0]) return pith_fail(err, "%s '%s': an empty token", opt, s);
  return 0;
}

static void free_list(char **v, int n) {
  for (int i = 0; i < n; i++) free(v[i]);
  free(v);
}

static int compress_one_l2(l2_scorer *sc, const tokenizer *target, const prompt_in *p, const l2_options *lo,
                           int trace, strbuf *out, pith_err *err) {
  int all_blank = 1;
  for (int i = 0; i < p->n_contexts; i++) all_blank &= is_blank(p->contexts[i]);
  if (all_blank) return pith_fail(err, "empty prompt (no context text)");
  double t0 = pith_now_s();
  l2_result r;
  if (l2_compress(sc, p->contexts, p->n_contexts, lo, &r, err)) return -1;
  double dt = pith_now_s() - t0;
  int64_t origin = r.origin_tokens, compressed = r.compressed_tokens;  // cl100k, as llmlingua reports
  if (target) {
    origin = 0;
    for (int i = 0; i < p->n_contexts; i++) {
      int64_t k;
      if (count_tokens(target, p->contexts[i], strlen(p->contexts[i]), &k, err)) return l2_result_free(&r), -1;
      origin += k;
    }
    if (count_tokens(target, r.prompt, strlen(r.prompt), &compressed, err)) return l2_result_free(&r), -1;
  }
  double rate = origin ? (double)compressed / (double)origin : 1.0;
  strbuf_adds(out, "{\"compressed_prompt\": ");
  strbuf_add_json(out, r.prompt, strlen(r.prompt));
  strbuf_printf(out, ", \"origin_tokens\": %lld, \"compressed_tokens\": %lld, \"rate\": %.6f, \"ratio\": %.6f",
                (long long)origin, (long long)compressed, rate, compressed ? (double)origin / (double)compressed : 1.0);
  strbuf_printf(out, ", \"token_rate\": %.6f, \"chunks\": %d, \"time_s\": %.4f, \"kept\": \"", r.rate_used, r.n_chunks, dt);
  for (int i = 0; i < r.n_words; i++) strbuf_addc(out, r.labels[i] ? '1' : '0');
  strbuf_adds(out, "\", \"contexts_used\": [");
  for (int i = 0, k = 0; i < r.n_contexts; i++)
    if (r.context_kept[i]) strbuf_printf(out, "%s%d", k++ ? ", " : "", i);
  strbuf_adds(out, "]");
  if (trace) {
    strbuf_adds(out, ", \"words\": [");
    for (int i = 0; i < r.n_words; i++) {
      if (i) strbuf_adds(out, ", ");
      strbuf_add_json(out, r.words[i], strlen(r.words[i]));
    }
    strbuf_adds(out, "]");
  }
  strbuf_adds(out, "}\n");
  l2_result_free(&r);
  return strbuf_ok(out) ? 0 : pith_fail(err, "out of memory");
}

// The llmlingua2 run: loads the classifier, then one output line per prompt. Frees text.
static int run_l2(const compress_opts *o, char *text, size_t len, const char *in_name) {
  pith_err err = {{0}};
  char cl_path[4200];
  char **force = NULL, **ends = NULL;
  int n_force = 0, n_ends = 0;
  encoder_model *m = NULL;
  tokenizer *tok = NULL, *cl = NULL, *target = NULL;
  int rc = 0;
  if (o->exact) rc = pith_fail(&err, "--exact is for llmlingua and longllmlingua; llmlingua2 has its own thresholds");
  if (!rc && o->force_tokens) rc = parse_list("--force-tokens", o->force_tokens, &force, &n_force, &err);
  if (!rc && n_force > L2_MAX_FORCE) rc = pith_fail(&err, "--force-tokens: %d tokens; at most %d", n_force, L2_MAX_FORCE);
  if (!rc && o->chunk_end_tokens) rc = parse_list("--chunk-end-tokens", o->chunk_end_tokens, &ends, &n_ends, &err);
  if (!rc && n_ends > 32) rc = pith_fail(&err, "--chunk-end-tokens: %d tokens; at most 32", n_ends);
  if (!rc && !pith_is_dir(o->scorer)) rc = pith_fail(&err, "--scorer '%s': no such folder", o->scorer);
  if (!rc && !encoder_folder_is_encoder(o->scorer))
    rc = pith_fail(&err, "--scorer '%s': not a BERT or XLM-R token classifier (llmlingua2 needs one; its config.json "
                         "has model_type bert or xlm-roberta)", o->scorer);
  if (!rc) rc = l2_find_cl100k(o->cl100k, cl_path, sizeof cl_path, &err);
  if (!rc && !(m = encoder_folder_load(o->scorer, PT_F32, PT_CPU, NULL, &err))) rc = -1;
  if (!rc && !(tok = tokenizer_load(o->scorer, &err))) rc = -1;
  if (!rc && !(cl = tokenizer_load(cl_path, &err))) rc = -1;
  if (!rc && o->target_tokenizer && !(target = tokenizer_load(o->target_tokenizer, &err))) rc = -1;
  l2_scorer sc;
  if (!rc) rc = l2_scorer_init(&sc, m, tok, cl, &err);
  if (rc) fprintf(stderr, "pith compress: %s\n", err.msg);
  l2_options lo = l2_options_default();
  lo.rate = o->rate;
  lo.target_tokens = o->target_tokens > 0 ? o->target_tokens : -1;
  lo.force_tokens = (const char *const *)force, lo.n_force = n_force;
  lo.chunk_end = (const char *const *)ends, lo.n_chunk_end = n_ends;
  lo.force_reserve_digit = o->force_reserve_digit;
  lo.drop_consecutive = o->drop_consecutive;
  lo.context_filter = !o->no_context_filter;
  lo.token_filter = !o->no_token_filter;
  lo.first_token = o->token_to_word == 1;

  strbuf out = {0};
  const char *p = text;
  while (p < text + len && strchr(" \t\r\n", *p)) p++;
  int jsonl = o->format == 1 || (o->format == 0 && p < text + len && *p == '{');
  int n_done = 0;
  if (!rc && jsonl) {
    int line = 0;
    for (const char *s = text; s < text + len && rc == 0;) {
      const char *e = memchr(s, '\n', (size_t)(text + len - s));
      if (!e) e = text + len;
      line++;
      const char *q = s;
      while (q < e && strchr(" \t\r", *q)) q++;
      if (q < e) {
        arena a = {0};
        prompt_in pin = {0};
        if (parse_line(s, (size_t)(e - s), &a, &pin, &err) || compress_one_l2(&sc, target, &pin, &lo, o->trace, &out, &err)) {
          fprintf(stderr, "pith compress: %s line %d: %s\n", in_name, line, err.msg);
          rc = 1;
        }
        n_done++;
        arena_free(&a);
      }
      s = e + 1;
    }
    if (rc == 0 && n_done == 0) {
      fprintf(stderr, "pith compress: %s: empty prompt (no JSON lines)\n", in_name);
      rc = 1;
    }
  } else if (!rc) {
    const char *ctx[1] = {text};
    prompt_in pin = {.contexts = ctx, .n_contexts = 1};
    if (compress_one_l2(&sc, target, &pin, &lo, o->trace, &out, &err)) {
      fprintf(stderr, "pith compress: %s: %s\n", in_name, err.msg);
      rc = 1;
    }
  }
  if (rc == 0) {
    if (o->output) {
      if (pith_write_file_atomic(o->output, out.p ? out.p : "", out.n, &err)) {
        fprintf(stderr, "pith compress: --output: %s\n", err.msg);
        rc = 1;
      }
    } else {
      fwrite(out.p ? out.p : "", 1, out.n, stdout);
      fflush(stdout);
    }
  }
  strbuf_free(&out);
  free_list(force, n_force);
  free_list(ends, n_ends);
  encoder_free(m);
  tokenizer_free(tok);
  tokenizer_free(cl);
  tokenizer_free(target);
  free(text);
  return rc ? 1 : 0;
}

int cmd_compress(int argc, char **argv) {
  if (argc > 1 && !strcmp(argv[1], "ehpc-probe")) return cmd_compress_ehpc_probe(argc - 1, argv + 1);
  compress_opts o;
  int code;
  if (parse_args(argc, argv, &o, &code)) return code;
  if (o.threads > 0) pt_set_num_threads(o.threads);
  const char *in_name = o.input ? o.input : "stdin";
  pith_err err = {{0}};
  size_t len;
  char *text = read_input(o.input, &len, &err);
  if (!text) {
    fprintf(stderr, "pith compress: --input: %s\n", err.msg);
    return 1;
  }
  if (!strcmp(o.method, "llmlingua2")) return run_l2(&o, text, len, in_name);
  tokenizer *tok = NULL, *target = NULL;
  llama_model *lm = load_scorer(o.scorer, o.method, &err);
  if (lm) {
    tok = tokenizer_load(o.scorer, &err);
    if (tok && tokenizer_vocab_size(tok) > lm->cfg.vocab_size)
      pith_fail(&err, "--scorer '%s': its tokenizer has %d tokens but the model only %d", o.scorer,
                (int)tokenizer_vocab_size(tok), lm->cfg.vocab_size);
  }
  if (lm && tok && !err.msg[0] && o.target_tokenizer) target = tokenizer_load(o.target_tokenizer, &err);
  if (!lm || !tok || err.msg[0] || (o.target_tokenizer && !target)) {
    fprintf(stderr, "pith compress: %s\n", err.msg);
    llama_free(lm);
    tokenizer_free(tok);
    free(text);
    return 1;
  }
  ehpc_run erun, *ehpc = NULL;
  if (!strcmp(o.method, "ehpc")) {
    ehpc = &erun;
    if (o.heads ? ehpc_parse_heads(o.heads, &ehpc->heads, &err) : ehpc_load_heads(o.scorer, &ehpc->heads, &err)) ehpc = NULL;
    if (ehpc && ehpc_check_heads(lm, &ehpc->heads, &err)) ehpc = NULL;
    if (!ehpc) {
      fprintf(stderr, "pith compress: %s\n", err.msg);
      llama_free(lm);
      tokenizer_free(tok);
      tokenizer_free(target);
      free(text);
      return 1;
    }
    ehpc->opts = (ehpc_options){.rate = o.rate, .target_tokens = o.target_tokens,
                             .window = o.window ? o.window : ehpc->heads.window ? ehpc->heads.window : 8,
                             .kernel = o.kernel ? o.kernel : ehpc->heads.kernel ? ehpc->heads.kernel : 7};
  }
  scorer sc = scorer_new(lm, tok);
  hc_options h = make_options(&o);
  progress_state prog = {.quiet = o.quiet, .tty = isatty(2), .t0 = pith_now_s()};
  h.count_target = count_target;
  h.count_ctx = target ? target : tok;
  h.progress = on_progress;
  h.progress_ctx = &prog;

  const char *p = text;
  while (p < text + len && strchr(" \t\r\n", *p)) p++;
  int jsonl = o.format == 1 || (o.format == 0 && p < text + len && *p == '{');
  strbuf out = {0};
  int rc = 0, n_done = 0;
  if (jsonl) {
    int line = 0;
    for (const char *s = text; s < text + len && rc == 0;) {
      const char *e = memchr(s, '\n', (size_t)(text + len - s));
      if (!e) e = text + len;
      line++;
      const char *q = s;
      while (q < e && strchr(" \t\r", *q)) q++;
      if (q < e) {
        arena a = {0};
        prompt_in pin = {.question = o.question, .instruction = o.instruction};
        prog.line = line, prog.t0 = pith_now_s(), prog.last = 0;
        if (parse_line(s, (size_t)(e - s), &a, &pin, &err) ||
            compress_one(&sc, target ? target : tok, &pin, &h, ehpc, o.trace, &out, &err)) {
          fprintf(stderr, "pith compress: %s line %d: %s\n", in_name, line, err.msg);
          rc = 1;
        }
        n_done++;
        arena_free(&a);
      }
      s = e + 1;
    }
    if (rc == 0 && n_done == 0) {
      fprintf(stderr, "pith compress: %s: empty prompt (no JSON lines)\n", in_name);
      rc = 1;
    }
  } else {
    const char *ctx[1] = {text};
    prompt_in pin = {.contexts = ctx, .n_contexts = 1, .question = o.question, .instruction = o.instruction};
    prog.line = 1;
    if (compress_one(&sc, target ? target : tok, &pin, &h, ehpc, o.trace, &out, &err)) {
      fprintf(stderr, "pith compress: %s: %s\n", in_name, err.msg);
      rc = 1;
    }
    n_done = 1;
  }
  if (prog.tty && prog.printed) fputc('\n', stderr);
  if (rc == 0) {
    if (o.output) {
      // written whole (temp file, then rename) or not at all
      if (pith_write_file_atomic(o.output, out.p ? out.p : "", out.n, &err)) {
        fprintf(stderr, "pith compress: --output: %s\n", err.msg);
        rc = 1;
      }
    } else {
      fwrite(out.p ? out.p : "", 1, out.n, stdout);
      fflush(stdout);
    }
  }
  strbuf_free(&out);
  llama_free(lm);
  tokenizer_free(tok);
  tokenizer_free(target);
  free(text);
  return rc;
}
