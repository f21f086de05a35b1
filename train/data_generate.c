// pith data generate --task qa: extractive QA pairs about abstracts, written by a causal LM (as the
// 500xCompressor authors made ArxivQA by prompting an instruct LLM), kept when their answers are
// spans of the abstract, and ingested as a pith QA corpus for `pith finetune`. The text rules
// (template, parsing, span check, drop reasons) are data/qa_generate.h's; this file loads the
// model, runs the generations (batch 1: one abstract at a time, with a KV cache) and reports.
//
// Files: OUT.h5 (the QA corpus, through ingest format qa), OUT.qa.jsonl (the kept pairs: the
// ingest's input, its sha256 recorded in OUT.h5) and OUT.generations.jsonl (every generation with
// what was kept of it), where OUT is --out without ".h5".
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cJSON.h>

#include "cli.h"
#include "commands.h"
#include "corpus.h"
#include "generate.h"
#include "hf_folder.h"
#include "ingest.h"
#include "qa_generate.h"
#include "run_config.h"
#include "sha256.h"
#include "strbuf.h"
#include "tokenizer.h"

static const rc_key QA_SCHEMA[] = {
    {"prompt_template", RC_STRING, "",
     "the prompt: {title} and {abstract} are filled in (\\n, \\t escapes); empty = the built-in one", NULL},
    {"max_new_tokens", RC_INT, "160", "new tokens per abstract at most", "[1,inf)"},
    {"temperature", RC_FLOAT, "0.7", "0 = greedy; > 0 samples from softmax(logits / T)", "[0,inf)"},
    {"top_p", RC_FLOAT, "0.95", "nucleus sampling mass", "(0,1]"},
    {"seed", RC_INT, "42", "the sampler's seed; abstract i uses seed + i", "[0,inf)"},
    {"stop", RC_STRING, "\\n\\n", "generation ends at this text (\\n, \\t escapes; empty: none)", NULL},
    {"max_abstracts", RC_INT, "0", "use the first N abstracts (0: all)", "[0,inf)"},
    {"max_abstract_words", RC_INT, "0",
     "cut longer abstracts to their first N words (prompt and QA context alike; 0: whole)", "[0,inf)"},
    {"max_pairs_per_abstract", RC_INT, "8", "kept pairs per abstract at most", "[1,inf)"},
    {"max_answer_words", RC_INT, "24", "longer answers are dropped (too_long)", "[1,inf)"},
    {"val_fraction", RC_FLOAT, "0.05", "share of QA examples in the val split (by their id, ABSTRACT_ID#qN)", "[0,1]"},
    {"test_fraction", RC_FLOAT, "0.05", "share of QA examples in the test split (by their id)", "[0,1]"},
};
#define N_QA_KEYS ((int)(sizeof QA_SCHEMA / sizeof QA_SCHEMA[0]))

typedef struct {
  char *id, *title, *abstract;  // abstract: whitespace-normalised
} abstract_rec;

static void recs_free(abstract_rec *r, int n) {
  for (int i = 0; i < n; i++) free(r[i].id), free(r[i].title), free(r[i].abstract);
  free(r);
}

static int push_rec(abstract_rec **r, int *n, int *cap, const char *id, const char *title, const char *text,
                    size_t len, pith_err *err) {
  if (*n == *cap) {
    int c = *cap ? 2 * *cap : 64;
    abstract_rec *p = realloc(*r, (size_t)c * sizeof *p);
    if (!p) return pith_fail(err, "out of memory");
    *r = p, *cap = c;
  }
  abstract_rec *a = &(*r)[*n];
  a->id = strdup(id);
  a->title = strdup(title ? title : "");
  a->abstract = qa_norm_ws(text, len);
  if (!a->id || !a->title || !a->abstract) return pith_fail(err, "out of memory");
  (*n)++;
  return 0;
}

// Abstracts from arXiv JSONL ({"id", "title"?, "abstract"}, as `pith data ingest --format arxiv`
// reads it) or from a pith documents corpus (HDF5; its texts, ids as stored). limit 0: all.
static int read_abstracts(const char *path, int64_t limit, abstract_rec **out, int *n_out, pith_err *err) {
  *out = NULL;
  *n_out = 0;
  int n = 0, cap = 0;
  abstract_rec *r = NULL;
  FILE *f = fopen(path, "rb");
  if (!f) return pith_fail(err, "--input %s: %s", path, strerror(errno));
  char magic[8] = {0};
  size_t got = fread(magic, 1, 8, f);
  fclose(f);
  if (got == 8 && !memcmp(magic, "\x89HDF\r\n\x1a\n", 8)) {
    corpus *c = corpus_open(path, err);
    if (!c) return -1;
    if (corpus_get_info(c)->kind != CORPUS_DOCUMENTS) {
      corpus_close(c);
      return pith_fail(err, "--input %s: a QA corpus; give a documents corpus or arXiv JSONL", path);
    }
    corpus_record rec = {0};
    int64_t total = corpus_get_info(c)->n_records, rc = 0;
    for (int64_t i = 0; i < total && (!limit || i < limit) && !rc; i++) {
      rc = corpus_read(c, i, CORPUS_READ_TEXT, &rec, err);
      if (!rc) rc = push_rec(&r, &n, &cap, rec.id, NULL, rec.doc.text, (size_t)rec.doc.text_len, err);
    }
    corpus_record_free(&rec);
    corpus_close(c);
    if (rc) {
      recs_free(r, n);
      return -1;
    }
  } else {
    size_t len;
    char *text = pith_read_file(path, &len, err);
    if (!text) return -1;
    int line_no = 0, rc = 0;
    for (char *line = text, *next; line && *line && !rc && (!limit || n < limit); line = next) {
      next = strchr(line, '\n');
      if (next) *next++ = 0;
      line_no++;
      if (!line[strspn(line, " \t\r")]) continue;
      cJSON *j = cJSON_Parse(line);
      const cJSON *abs = j ? cJSON_GetObjectItemCaseSensitive(j, "abstract") : NULL;
      const cJSON *id = j ? cJSON_GetObjectItemCaseSensitive(j, "id") : NULL;
      const cJSON *title = j ? cJSON_GetObjectItemCaseSensitive(j, "title") : NULL;
      if (!j) {
        rc = pith_fail(err, "--input %s:%d: not a JSON line", path, line_no);
      } else if (!cJSON_IsString(abs)) {
        rc = pith_fail(err, "--input %s:%d: no \"abstract\" string (arXiv JSONL: id, title, abstract)", path, line_no);
      } else {
        char fallback[64];
        snprintf(fallback, sizeof fallback, "%s:%d", pith_base_name(path), line_no);
        char *t = cJSON_IsString(title) ? qa_norm_ws(title->valuestring, strlen(title->valuestring)) : NULL;
        const char *text_abs = abs->valuestring;
        if (text_abs[strspn(text_abs, " \t\r\n\v\f")])
          rc = push_rec(&r, &n, &cap, cJSON_IsString(id) ? id->valuestring : fallback, t, text_abs, strlen(text_abs),
                        err);
        free(t);
      }
      cJSON_Delete(j);
    }
    free(text);
    if (rc) {
      recs_free(r, n);
      return -1;
    }
  }
  if (n == 0) return pith_fail(err, "--input %s: no abstracts", path);
  *out = r;
  *n_out = n;
  return 0;
}

// Stops generation once the decoded new text holds the stop string.
typedef struct {
  const tokenizer *tok;
  const char *stop;
  int32_t *ids;
  int n, cap, stopped, failed;
} stop_watch;

static int on_token(int32_t id, void *ctx) {
  stop_watch *w = ctx;
  if (w->n == w->cap) {
    int cap = w->cap ? 2 * w->cap : 64;
    int32_t *p = realloc(w->ids, (size_t)cap * sizeof *p);
    if (!p) return w->failed = 1;
    w->ids = p, w->cap = cap;
  }
  w->ids[w->n++] = id;
  if (!*w->stop) return 0;
  pith_err err;
  char *text = tokenizer_decode(w->tok, w->ids, (size_t)w->n, 1, &err);
  if (!text) return w->failed = 1;
  w->stopped = strstr(text, w->stop) != NULL;
  free(text);
  return w->stopped;
}

// The text new adds after prompt: decode(prompt + new) past decode(prompt), so that a SentencePiece
// tokenizer's word-leading space (dropped at the start of a decode) stays; decode(new) when the
// prompt's text is not a prefix. malloc'd, or NULL and err.
static char *new_text(const tokenizer *tok, const int32_t *prompt, size_t n_prompt, const int32_t *new_ids, int n_new,
                      pith_err *err) {
  int32_t *all = malloc((n_prompt + (size_t)n_new + 1) * sizeof *all);
  if (!all) return pith_fail(err, "out of memory"), NULL;
  memcpy(all, prompt, n_prompt * sizeof *all);
  memcpy(all + n_prompt, new_ids, (size_t)n_new * sizeof *all);
  char *head = tokenizer_decode(tok, prompt, n_prompt, 1, err);
  char *whole = head ? tokenizer_decode(tok, all, n_prompt + (size_t)n_new, 1, err) : NULL;
  free(all);
  char *out = NULL;
  if (whole && !strncmp(whole, head, strlen(head))) out = strdup(whole + strlen(head));
  else if (whole) out = tokenizer_decode(tok, new_ids, (size_t)n_new, 1, err);
  free(head);
  free(whole);
  return out;
}

// Code points in the first bytes of s.
static int64_t code_points(const char *s, int64_t bytes) {
  int64_t n = 0;
  for (int64_t i = 0; i < bytes; i++) n += ((unsigned char)s[i] & 0xC0) != 0x80;
  return n;
}

static void line_json(strbuf *b, const char *key, const char *val, int first) {
  strbuf_printf(b, "%s\"%s\": ", first ? "{" : ", ", key);
  strbuf_add_json(b, val, strlen(val));
}

static int write_text(const char *path, strbuf *b, pith_err *err) {
  if (!strbuf_ok(b)) return pith_fail(err, "%s: out of memory", path);
  return pith_write_file_atomic(path, b->p ? b->p : "", b->n, err);
}

typedef struct {
  const char *model, *input, *out, *config, *tok_path;
  int threads, quiet, force, task;
} gen_opts;

static int run(const gen_opts *o, run_config *cfg, const char *command) {
  pith_err err = {{0}};
  const char *what = "pith data generate";
  if (run_config_resolve(cfg, QA_SCHEMA, N_QA_KEYS, &err)) {
    fprintf(stderr, "%s: %s\n", what, err.msg);
    return 1;
  }
  double val = run_config_float(cfg, "val_fraction"), test = run_config_float(cfg, "test_fraction");
  if (val + test > 1) {
    fprintf(stderr, "%s: val_fraction + test_fraction exceeds 1\n", what);
    return 1;
  }
  size_t olen = strlen(o->out);
  if (olen < 4 || strcmp(o->out + olen - 3, ".h5")) {
    fprintf(stderr, "%s: --out %s: give a FILE.h5 (the QA corpus)\n", what, o->out);
    return 1;
  }
  if (access(o->out, F_OK) == 0 && !o->force) {
    fprintf(stderr, "%s: %s exists; nothing generated (--force replaces it)\n", what, o->out);
    return 1;
  }
  // \n and \t escapes, so that a template or stop string can be given as key=value on one line.
  char *tmpl = strdup(*run_config_str(cfg, "prompt_template") ? run_config_str(cfg, "prompt_template")
                                                               : QA_DEFAULT_TEMPLATE);
  char *stop = strdup(run_config_str(cfg, "stop"));
  qa_unescape(tmpl);
  qa_unescape(stop);
  char *probe = NULL;  // the template checked before the model loads
  if (qa_template_render(tmpl, "t", "a", &probe, &err)) {
    fprintf(stderr, "%s: %s\n", what, err.msg);
    free(stop);
    free(tmpl);
    return 1;
  }
  free(probe);

  int rc = 1, n_abs = 0;
  abstract_rec *abs = NULL;
  tokenizer *tok = NULL;
  llama_model *m = NULL;
  char wfile[4096], wsha[SHA256_HEX_SIZE] = "", tsha[SHA256_HEX_SIZE], base[4096], qa_path[4200], gen_path[4200];
  snprintf(base, sizeof base, "%.*s", (int)(olen - 3), o->out);
  snprintf(qa_path, sizeof qa_path, "%s.qa.jsonl", base);
  snprintf(gen_path, sizeof gen_path, "%s.generations.jsonl", base);
  strbuf qa = STRBUF_INIT, gens = STRBUF_INIT, prov = STRBUF_INIT;
  qa_parse_result res = {0};
  int32_t *prompt = NULL, *new_ids = NULL;
  if (read_abstracts(o->input, run_config_int(cfg, "max_abstracts"), &abs, &n_abs, &err)) goto fail;
  snprintf(wfile, sizeof wfile, "%s/model.safetensors", o->model);
  if (!pith_is_file(wfile)) snprintf(wfile, sizeof wfile, "%s/model.safetensors.index.json", o->model);
  if (!pith_is_dir(o->model)) {
    pith_fail(&err, "--model %s: no such folder", o->model);
    goto fail;
  }
  if (sha256_hash_file(wfile, wsha, &err)) goto fail;
  if (!(tok = tokenizer_load(o->tok_path ? o->tok_path : o->model, &err))) goto fail;
  if (!(m = hf_model_load(o->model, PT_F32, PT_CPU, &err))) goto fail;
  if (o->threads > 0) pt_set_num_threads(o->threads);
  if (ingest_tokenizer_fingerprint(tok, tsha, &err)) goto fail;

  int32_t eos[16];
  int n_eos = 0;
  const int32_t *tok_eos;
  int n_tok_eos = tokenizer_eos_ids(tok, &tok_eos);
  for (int i = 0; i <= n_tok_eos && n_eos < 16; i++) {
    int32_t id = i < n_tok_eos ? tok_eos[i] : m->cfg.eos_id;
    int seen = id < 0;
    for (int j = 0; j < n_eos; j++) seen |= eos[j] == id;
    if (!seen) eos[n_eos++] = id;
  }
  qa_parse_opts popt = {.max_answer_words = (int)run_config_int(cfg, "max_answer_words"),
                        .max_pairs = (int)run_config_int(cfg, "max_pairs_per_abstract")};
  int64_t max_new = run_config_int(cfg, "max_new_tokens"), seed = run_config_int(cfg, "seed");
  double temperature = run_config_float(cfg, "temperature"), top_p = run_config_float(cfg, "top_p");
  int64_t generated_tokens = 0, too_long_prompts = 0, kept = 0, with_pairs = 0, stopped = 0, eos_hit = 0, cut = 0;
  int tty = isatty(fileno(stderr)) && !o->quiet;
  double t0 = pith_now_s(), last_print = -1e9;
  int64_t max_words = run_config_int(cfg, "max_abstract_words"), shortened = 0;
  for (int i = 0; i < n_abs; i++) {
    const abstract_rec *a = &abs[i];
    if (max_words > 0) {  // normalised: words are separated by single spaces
      int64_t w = 0;
      for (char *p = a->abstract; *p; p++)
        if (*p == ' ' && ++w == max_words) {
          *p = 0;
          shortened++;
          break;
        }
    }
    char *ptext = NULL;
    size_t n_prompt = 0;
    if (qa_template_render(tmpl, a->title, a->abstract, &ptext, &err) ||
        tokenizer_encode(tok, ptext, strlen(ptext), tokenizer_adds_bos(tok), &prompt, &n_prompt, &err)) {
      free(ptext);
      goto fail;
    }
    int room = m->cfg.max_seq_len - (int)n_prompt;
    strbuf_printf(&gens, "{\"id\": ");
    strbuf_add_json(&gens, a->id, strlen(a->id));
    if (room < 8) {  // not even a short pair fits after the prompt
      too_long_prompts++;
      strbuf_printf(&gens, ", \"skipped\": \"the prompt (%zu tokens) leaves under 8 of the model's %d positions\"}\n",
                    n_prompt, m->cfg.max_seq_len);
      free(ptext), free(prompt), prompt = NULL;
      continue;
    }
    gen_config gc = {.max_new_tokens = (int)(max_new < room ? max_new : room), .temperature = temperature,
                     .top_p = top_p, .seed = (uint64_t)(seed + i), .eos_ids = eos, .n_eos = n_eos};
    stop_watch w = {.tok = tok, .stop = stop};
    int n_new = 0;
    int grc = generate(m, NULL, NULL, NULL, prompt, (int)n_prompt, &gc, on_token, &w, &new_ids, &n_new, &err);
    free(w.ids);
    if (grc || w.failed) {
      if (!grc) pith_fail(&err, "decoding the generation of %s failed", a->id);
      free(ptext);
      goto fail;
    }
    generated_tokens += n_new;
    int ended_eos = 0;
    for (int j = 0; n_new > 0 && j < n_eos; j++) ended_eos |= new_ids[n_new - 1] == eos[j];
    char *gen = new_text(tok, prompt, n_prompt, new_ids, n_new, &err);
    if (!gen) {
      free(ptext);
      goto fail;
    }
    char *at = *stop ? strstr(gen, stop) : NULL;
    if (at) *at = 0;
    int complete = at != NULL || ended_eos;
    stopped += at != NULL, eos_hit += !at && ended_eos, cut += !complete;
    // The text parsed: the prompt's tail (e.g. "Question:") and what the model added to it.
    strbuf t = STRBUF_INIT;
    strbuf_adds(&t, ptext + qa_prompt_tail(ptext));
    strbuf_adds(&t, gen);
    int prc = strbuf_ok(&t) ? qa_parse(t.p, complete, a->abstract, &popt, &res, &err)
                            : pith_fail(&err, "out of memory");
    strbuf_free(&t);
    strbuf_printf(&gens, ", \"new_tokens\": %d, \"ended\": \"%s\", \"kept\": %d, \"generation\": ", n_new,
                  at ? "stop" : ended_eos ? "eos" : "max_new_tokens", res.n);
    strbuf_add_json(&gens, gen, strlen(gen));
    strbuf_adds(&gens, "}\n");
    free(gen);
    free(ptext);
    free(prompt), prompt = NULL;
    free(new_ids), new_ids = NULL;
    if (prc) goto fail;
    for (int k = 0; k < res.n; k++) {
      char id[600];
      snprintf(id, sizeof id, "%.500s#q%d", a->id, k + 1);
      line_json(&qa, "id", id, 1);
      line_json(&qa, "context", a->abstract, 0);
      line_json(&qa, "question", res.pairs[k].question, 0);
      line_json(&qa, "answer", res.pairs[k].answer, 0);
      strbuf_printf(&qa, ", \"answer_start\": %lld}\n",
                    (long long)code_points(a->abstract, res.pairs[k].answer_start));
    }
    kept += res.n;
    with_pairs += res.n > 0;
    qa_parse_clear_pairs(&res);
    double now = pith_now_s() - t0;
    if (!o->quiet && (tty || now - last_print >= 5 || i + 1 == n_abs)) {
      double eta = now / (i + 1) * (n_abs - i - 1);
      fprintf(stderr, "%s%s: abstract %d/%d  %lld pairs kept  %.1f new tokens/s  ETA %02d:%02d%s",
              tty ? "\r\033[K" : "", what, i + 1, n_abs, (long long)kept, now > 0 ? generated_tokens / now : 0.0,
              (int)(eta / 60), (int)eta % 60, tty ? "" : "\n");
      fflush(stderr);
      last_print = now;
    }
  }
  if (tty) fprintf(stderr, "\n");
  double secs = pith_now_s() - t0;
  printf("%s: %d abstracts from %s (%lld cut to max_abstract_words), %lld generated tokens in %.1f s "
         "(%.1f tokens/s, batch 1)\n", what, n_abs, o->input, (long long)shortened, (long long)generated_tokens, secs,
         secs > 0 ? generated_tokens / secs : 0.0);
  printf("%s: generations ended by the stop string %lld, eos %lld, max_new_tokens %lld; prompts too long %lld\n", what,
         (long long)stopped, (long long)eos_hit, (long long)cut, (long long)too_long_prompts);
  printf("%s: pairs generated %lld, kept %lld (from %lld abstracts), dropped %lld:", what, (long long)res.seen,
         (long long)kept, (long long)with_pairs, (long long)(res.seen - kept));
  for (int k = 0; k < QA_N_DROPS; k++) printf(" %s %lld", qa_drop_name((qa_drop_reason)k), (long long)res.drops[k]);
  printf("\n");
  if (kept == 0) {  // nothing to train on; what the model wrote is still worth reading
    if (write_text(gen_path, &gens, &err) == 0) fprintf(stderr, "%s: the generations are in %s\n", what, gen_path);
    pith_fail(&err, "no pair was kept: nothing written to %s", o->out);
    goto fail;
  }
  if (write_text(qa_path, &qa, &err) || write_text(gen_path, &gens, &err)) goto fail;

  // Provenance, recorded as the corpus's command: the model and its weights, the template, the
  // decoding settings, the seed and the input (the kept pairs' file is recorded as the source).
  {
    char in_sha[SHA256_HEX_SIZE], tmpl_sha[SHA256_HEX_SIZE];
    uint8_t dg[SHA256_DIGEST_SIZE];
    sha256_hash_buffer(tmpl, strlen(tmpl), dg);
    sha256_to_hex(dg, tmpl_sha);
    if (sha256_hash_file(o->input, in_sha, &err)) goto fail;
    strbuf_printf(&prov, "%s; pith data generate --task qa: model=%s model_weights_sha256=%s input=%s input_sha256=%s "
                  "prompt_template_sha256=%s max_new_tokens=%lld temperature=%g top_p=%g seed=%lld stop=",
                  command, o->model, wsha, o->input, in_sha, tmpl_sha, (long long)max_new, temperature, top_p,
                  (long long)seed);
    strbuf_add_json(&prov, stop, strlen(stop));
    strbuf_printf(&prov, " max_abstract_words=%lld max_pairs_per_abstract=%d max_answer_words=%d prompt_template=",
                  (long long)max_words, popt.max_pairs, popt.max_answer_words);
    strbuf_add_json(&prov, tmpl, strlen(tmpl));
    if (!strbuf_ok(&prov)) {
      pith_fail(&err, "out of memory");
      goto fail;
    }
  }
  ingest_config ic = {.format = INGEST_QA, .tok = tok, .out_path = o->out, .command = prov.p, .threads = 1,
                      .val_fraction = val, .test_fraction = test};
  ingest_report rep;
  const char *inputs[1] = {qa_path};
  if (ingest_run(&ic, inputs, 1, &rep, &err)) goto fail;
  if (rep.issues[INGEST_ISSUE_ANSWER_MOVED].count || rep.issues[INGEST_ISSUE_ANSWER_MISSING].count) {
    pith_fail(&err, "%s: ingest moved or missed %lld answers (a bug of the span check)", qa_path,
              (long long)(rep.issues[INGEST_ISSUE_ANSWER_MOVED].count + rep.issues[INGEST_ISSUE_ANSWER_MISSING].count));
    goto fail;
  }

  printf("%s: wrote %s (%lld QA examples: train %lld, val %lld, test %lld), %s, %s\n", what, o->out,
         (long long)rep.records, (long long)rep.split[0], (long long)rep.split[1], (long long)rep.split[2], qa_path,
         gen_path);
  rc = 0;
fail:
  if (rc) fprintf(stderr, "%s: %s\n", what, err.msg[0] ? err.msg : pt_error());
  qa_parse_clear_pairs(&res);
  free(res.pairs);
  free(prompt);
  free(new_ids);
  strbuf_free(&qa);
  strbuf_free(&gens);
  strbuf_free(&prov);
  free(stop);
  free(tmpl);
  llama_free(m);
  tokenizer_free(tok);
  recs_free(abs, n_abs);
  return rc;
}

static const char GENERATE_ABOUT[] =
    "Writes training data with a causal LM (Hugging Face LLaMA-family folder), on the CPU, one abstract at\n"
    "a time (batch 1, KV cache). --task qa: extractive QA pairs about abstracts, as the 500xCompressor\n"
    "authors built ArxivQA by prompting an instruct LLM. For each abstract (arXiv JSONL with id, title,\n"
    "abstract, as `pith data ingest --format arxiv` reads it, or a pith documents corpus) the model continues\n"
    "the prompt template; the text from the template's last line on is read line by line as\n"
    "\"Question: ...\" / \"Answer: ...\" (or Q: / A:) pairs. An answer is kept when it is a span of the\n"
    "abstract: after whitespace normalisation (each run of ASCII whitespace one space, ends trimmed) it\n"
    "occurs byte for byte in the normalised abstract. The rest is dropped and counted by reason:\n"
    "no_answer, orphan_answer, empty, truncated (cut by max_new_tokens), too_long, not_a_span, duplicate\n"
    "(question), over_limit. Kept pairs become a QA corpus FILE.h5 (ingest format qa; context = the\n"
    "normalised abstract) ready for `pith finetune`, with the provenance (model and its weights' sha256,\n"
    "template, decoding settings, seed, input and its sha256) as its command; FILE.qa.jsonl holds the\n"
    "kept pairs and FILE.generations.jsonl what the model wrote for each abstract.\n\n"
    "Settings are keys of --config FILE.yaml or key=value arguments (the command line wins):\n";

int data_generate(int argc, char **argv) {
  gen_opts o = {0};
  int n_args = 0;
  const char **args = calloc((size_t)argc + 1, sizeof *args);
  if (!args) return 1;
  const cli_opt opts[] = {
      {"--task", CLI_CHOICE, &o.task, .choices = "qa", .flags = CLI_REQUIRED,
       .help = "what to generate: qa (extractive QA pairs about abstracts)"},
      {"--model", CLI_STR, &o.model, .metavar = "DIR", .flags = CLI_REQUIRED,
       .help = "the writer: a model folder (config.json, model.safetensors, tokenizer)"},
      {"--input", CLI_STR, &o.input, .metavar = "FILE", .flags = CLI_REQUIRED,
       .help = "abstracts: arXiv JSONL or a pith documents corpus (.h5)"},
      {"--out", CLI_STR, &o.out, .metavar = "FILE.h5", .flags = CLI_REQUIRED, .help = "the QA corpus to write"},
      {"--config", CLI_STR, &o.config, .metavar = "FILE.yaml", .help = "settings (keys below)"},
      {"--tokenizer", CLI_STR, &o.tok_path, .metavar = "PATH", .help = "tokenizer (default: the model folder's)"},
      {"--threads", CLI_INT, &o.threads, .metavar = "N", .min = 1, .max = 4096,
       .help = "CPU threads (default: libtorch's)"},
      {"--quiet", CLI_FLAG, &o.quiet, .help = "no progress lines"},
      {"--force", CLI_FLAG, &o.force, .help = "replace FILE.h5 when it exists"},
  };
  // The keys and their defaults, after the options.
  strbuf ep = STRBUF_INIT;
  {
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    if (mem) {
      fprintf(mem, "\nkeys:\n");
      run_config_print_schema(mem, QA_SCHEMA, N_QA_KEYS);
      fprintf(mem, "\nThe built-in prompt_template:\n%s\n", QA_DEFAULT_TEMPLATE);
      fclose(mem);
      strbuf_adds(&ep, buf ? buf : "");
      free(buf);
    }
  }
  const cli_spec spec = {"pith data generate", CLI_OPTS(opts), .about = GENERATE_ABOUT, .epilog = ep.p,
                         .args = "[key=value...]", .min_args = 0, .max_args = -1, .arg_out = args, .n_args = &n_args};
  int code;
  if (cli_command(&spec, argc, argv, &code)) {
    strbuf_free(&ep);
    free(args);
    return code;
  }
  strbuf_free(&ep);
  pith_err err = {{0}};
  run_config *cfg = run_config_new();
  int rc = cfg ? 0 : pith_fail(&err, "out of memory");
  if (!rc && o.config) rc = run_config_load(cfg, o.config, &err);
  for (int i = 0; i < n_args && !rc; i++) {
    if (!strchr(args[i], '='))
      rc = pith_fail(&err, "unexpected argument '%s' (settings are key=value)", args[i]);
    else
      rc = run_config_set(cfg, args[i], &err);
  }
  if (rc) {
    fprintf(stderr, "pith data generate: %s\n", err.msg);
    run_config_free(cfg);
    free(args);
    return 1;
  }
  strbuf cmd = STRBUF_INIT;
  strbuf_adds(&cmd, "pith data");
  for (int i = 0; i < argc; i++) strbuf_printf(&cmd, " %s", argv[i]);
  rc = run(&o, cfg, cmd.p ? cmd.p : "pith data generate");
  strbuf_free(&cmd);
  run_config_free(cfg);
  free(args);
  return rc;
}
