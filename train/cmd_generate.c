// pith generate: text from a Hugging Face model folder, with a KV cache (models/generate.h).
// Prints the prompt, then the new text as the tokens arrive; the speed goes to stderr.
// With --press (models/press.h) the prompt is the context a KV press compresses during its prefill
// (generate_pressed over the compact per-head cache); --question is read after that compression.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli.h"
#include "commands.h"
#include "generate.h"
#include "hf_folder.h"
#include "press.h"
#include "tokenizer.h"

typedef struct {
  const char *model, *prompt, *tokenizer, *ids_out, *press_spec, *question;
  int max_new_tokens, no_bos, threads;
  press press;
  double temperature, top_p;
  uint64_t seed;
  pt_dtype dtype;
} generate_opts;

// Fills o from the command line: 0 to go on, else 1 with the exit code in *code (0 after --help).
static int parse_args(int argc, char **argv, generate_opts *o, int *code) {
  *o = (generate_opts){.max_new_tokens = 256, .top_p = 1, .dtype = PT_F32};
  int dtype = 0;  // the index of the --dtype choice
  const cli_opt opts[] = {
      {"--model", CLI_STR, &o->model, .metavar = "DIR", .flags = CLI_REQUIRED,
       .help = "model folder: config.json, model.safetensors (or shards)"},
      {"--prompt", CLI_STR, &o->prompt, .metavar = "TEXT", .flags = CLI_REQUIRED, .help = "the text to continue"},
      {"--max-new-tokens", CLI_INT, &o->max_new_tokens, .metavar = "N", .min = 1, .max = 1000000000,
       .help = "at most N new tokens (default 256)"},
      {"--temperature", CLI_DOUBLE, &o->temperature, .metavar = "T", .min = 0, .max = CLI_INF,
       .help = "0 = greedy (default); > 0 samples from softmax(logits / T)"},
      {"--top-p", CLI_DOUBLE, &o->top_p, .metavar = "P", .min = 0, .max = 1, .flags = CLI_MIN_OPEN,
       .help = "sample from the smallest set of tokens whose probability reaches P,\n"
               "0 < P <= 1 (default 1: all)"},
      {"--seed", CLI_U64, &o->seed, .metavar = "N",
       .help = "seed of the sampler (default 0); the same seed, the same text"},
      {"--dtype", CLI_CHOICE, &dtype, .choices = "f32,float32|bf16,bfloat16",
       .help = "weights and activations (default f32)"},
      {"--no-bos", CLI_FLAG, &o->no_bos, .help = "do not prepend the tokenizer's bos token"},
      {"--tokenizer", CLI_STR, &o->tokenizer, .metavar = "PATH",
       .help = "tokenizer.json, tokenizer.bin or a folder (default: the model\n"
               "folder's tokenizer.json, else its tokenizer.bin)"},
      {"--threads", CLI_INT, &o->threads, .metavar = "N", .min = 1, .max = 4096,
       .help = "CPU threads (default: libtorch's; 1 is often fastest for tiny models)"},
      {"--ids-out", CLI_STR, &o->ids_out, .metavar = "FILE",
       .help = "also write the token ids as JSON: {\"prompt\": [...], \"new\": [...]}\n"
               "(and \"question\": [...] with --question)"},
      {"--press", CLI_STR, &o->press_spec, .metavar = "SPEC",
       .help = "compress the prompt's KV cache during its prefill with a KV press:\n"
               "[adakv-]NAME:RATIO[:KEY=VALUE,...], NAME one of knorm, streaming_llm,\n"
               "snapkv, expected_attention, tova, observed_attention; RATIO the\n"
               "fraction of entries removed, in [0, 1) (e.g. snapkv:0.5, adakv-knorm:0.25,\n"
               "snapkv:0.5:window_size=32,kernel_size=7); see README, KV presses"},
      {"--question", CLI_STR, &o->question, .metavar = "TEXT",
       .help = "read TEXT (no bos) after the prompt's compressed cache, at the positions\n"
               "after the uncompressed prompt: question-agnostic, as kvpress's pipeline.\n"
               "For question-aware compression put the question at the end of --prompt\n"
               "and give no --question: the press then sees it (and may evict it)"},
  };
  const cli_spec spec = {
      "pith generate", CLI_OPTS(opts),
      .about = "Continues TEXT with a Hugging Face LLaMA-family model (llama, mistral, qwen2) on the CPU,\n"
               "with a KV cache. Prints the prompt, then the new text as it is generated; the number of\n"
               "tokens and the speed go to stderr. Stops at an eos token (the tokenizer's and config.json's).\n"
               "With --press the prompt's KV cache is compressed per KV head after its prefill (only the kept\n"
               "entries are stored); stderr then also reports the KV entries and bytes kept against the\n"
               "uncompressed cache, and the prefill and decode times.\n\n"};
  if (cli_command(&spec, argc, argv, code)) return 1;
  if (o->press_spec) {
    pith_err err = {{0}};
    if (press_parse(o->press_spec, &o->press, &err)) {
      *code = cli_usage_error(&spec, "--press: %s", err.msg);
      return 1;
    }
  }
  o->dtype = dtype == 1 ? PT_BF16 : PT_F32;
  return 0;
}

// Incremental decoding: the text of the ids is printed as they come, each character whole. The
// new text is decode(window + new) minus decode(window), where the window is the last few ids
// already printed (so a SentencePiece word keeps its leading space). It is held back while it
// ends in an incomplete UTF-8 sequence (decoded as U+FFFD), and while the last id is a byte
// token (<0xNN>, SentencePiece's byte fallback): a run of them decodes as a whole, and one byte
// more can turn the run invalid (every byte then reads U+FFFD, as in Hugging Face's decoder). So
// the printed text is always exactly the one-shot decode of all the ids.
enum { STREAM_WINDOW = 8 };

typedef struct {
  const tokenizer *tok;
  int32_t *ids;  // (n), prompt then new ids
  size_t n, cap;
  size_t base, done;  // ids[base, done): the window; ids from done on are not printed yet
  pith_err err;
  int failed;
} streamer;

static int ends_incomplete(const char *s, size_t len) {
  return len >= 3 && !memcmp(s + len - 3, "\xEF\xBF\xBD", 3);
}

static int is_byte_token(const tokenizer *tok, int32_t id) {
  const char *p = tokenizer_token_piece(tok, id);
  return p && strlen(p) == 6 && !strncmp(p, "<0x", 3) && p[5] == '>';
}

// Print what ids[done, n) add; with force, even an incomplete tail. Returns -1 on a decode error.
static int stream_flush(streamer *st, int force) {
  if (st->done == st->n) return 0;
  char *ctx = tokenizer_decode(st->tok, st->ids + st->base, st->done - st->base, 1, &st->err);
  char *all = ctx ? tokenizer_decode(st->tok, st->ids + st->base, st->n - st->base, 1, &st->err) : NULL;
  if (!all) {
    free(ctx);
    st->failed = 1;
    return -1;
  }
  size_t lc = strlen(ctx), la = strlen(all), common = 0;
  while (common < lc && common < la && ctx[common] == all[common]) common++;
  if (force || (common == lc && !ends_incomplete(all, la) && !is_byte_token(st->tok, st->ids[st->n - 1]))) {
    fwrite(all + common, 1, la - common, stdout);
    fflush(stdout);
    st->done = st->n;
    st->base = st->done > STREAM_WINDOW ? st->done - STREAM_WINDOW : 0;
  }
  free(ctx);
  free(all);
  return 0;
}

static int stream_push(streamer *st, int32_t id) {
  if (st->n == st->cap) {
    size_t cap = st->cap ? 2 * st->cap : 64;
    int32_t *ids = realloc(st->ids, cap * sizeof *ids);
    if (!ids) {
      pith_fail(&st->err, "out of memory");
      st->failed = 1;
      return -1;
    }
    st->ids = ids, st->cap = cap;
  }
  st->ids[st->n++] = id;
  return 0;
}

static int on_token(int32_t id, void *ctx) {
  streamer *st = ctx;
  return stream_push(st, id) || stream_flush(st, 0) ? 1 : 0;  // nonzero stops generation
}

// generate_pressed's on_token (one row): also stamps the first token, which ends the prefill.
typedef struct {
  streamer *st;
  double t_first;
} press_stream;

static int on_press_token(int row, int32_t id, void *ctx) {
  (void)row;
  press_stream *ps = ctx;
  if (ps->t_first == 0) ps->t_first = pith_now_s();
  return on_token(id, ps->st);
}

// {"prompt": [...], "new": [...]}\n into path, atomically.
// With a question (question != NULL): {"prompt": [...], "question": [...], "new": [...]}.
static int write_ids(const char *path, const int32_t *prompt, size_t n_prompt, const int32_t *question,
                     size_t n_question, const int32_t *new_ids, size_t n_new, pith_err *err) {
  size_t cap = 48 + 12 * (n_prompt + n_question + n_new), len = 0;
  char *buf = malloc(cap);
  if (!buf) return pith_fail(err, "out of memory");
  len += (size_t)snprintf(buf + len, cap - len, "{\"prompt\": [");
  for (size_t i = 0; i < n_prompt; i++) len += (size_t)snprintf(buf + len, cap - len, "%s%d", i ? "," : "", (int)prompt[i]);
  if (question) {
    len += (size_t)snprintf(buf + len, cap - len, "], \"question\": [");
    for (size_t i = 0; i < n_question; i++)
      len += (size_t)snprintf(buf + len, cap - len, "%s%d", i ? "," : "", (int)question[i]);
  }
  len += (size_t)snprintf(buf + len, cap - len, "], \"new\": [");
  for (size_t i = 0; i < n_new; i++) len += (size_t)snprintf(buf + len, cap - len, "%s%d", i ? "," : "", (int)new_ids[i]);
  len += (size_t)snprintf(buf + len, cap - len, "]}\n");
  int rc = pith_write_file_atomic(path, buf, len, err);
  free(buf);
  return rc;
}

int cmd_generate(int argc, char **argv) {
  generate_opts o;
  int code;
  if (parse_args(argc, argv, &o, &code)) return code;
  struct stat sb;
  if (stat(o.model, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
    fprintf(stderr, "pith generate: --model '%s': %s\n", o.model,
            stat(o.model, &sb) != 0 ? "no such folder" : "not a folder (give the model folder)");
    return 1;
  }
  char config_path[4096];
  snprintf(config_path, sizeof config_path, "%s/config.json", o.model);
  if (stat(config_path, &sb) != 0) {
    fprintf(stderr, "pith generate: --model '%s': no config.json (not a Hugging Face model folder)\n", o.model);
    return 1;
  }
  if (o.threads > 0) pt_set_num_threads(o.threads);
  pith_err err = {{0}};
  tokenizer *tok = tokenizer_load(o.tokenizer ? o.tokenizer : o.model, &err);
  if (!tok) {
    fprintf(stderr, "pith generate: tokenizer: %s\n", err.msg);
    if (!o.tokenizer) fprintf(stderr, "HINT: give one with --tokenizer PATH\n");
    return 1;
  }
  llama_model *m = hf_model_load(o.model, o.dtype, PT_CPU, &err);
  if (!m) {
    fprintf(stderr, "pith generate: %s\n", err.msg);
    tokenizer_free(tok);
    return 1;
  }

  int rc = 1;
  streamer st = {.tok = tok};
  int32_t *prompt = NULL, *question = NULL, *new_ids = NULL, eos[64];
  size_t n_prompt = 0, n_question = 0;
  int n_new = 0, n_eos = 0;
  gen_press_result pres = {0};
  if (tokenizer_encode(tok, o.prompt, strlen(o.prompt), !o.no_bos, &prompt, &n_prompt, &err)) {
    fprintf(stderr, "pith generate: encoding the prompt: %s\n", err.msg);
    goto done;
  }
  if (n_prompt == 0) {
    fprintf(stderr, "pith generate: the prompt encodes to no tokens (an empty --prompt with --no-bos?)\n");
    goto done;
  }
  // The question continues the text: no bos of its own (kvpress's pipeline tokenizes it the same way).
  if (o.question && tokenizer_encode(tok, o.question, strlen(o.question), 0, &question, &n_question, &err)) {
    fprintf(stderr, "pith generate: encoding the question: %s\n", err.msg);
    goto done;
  }
  for (size_t i = 0; i < n_prompt + n_question; i++) {
    int32_t id = i < n_prompt ? prompt[i] : question[i - n_prompt];
    if (id >= m->cfg.vocab_size) {
      fprintf(stderr, "pith generate: the %s has token id %d but the model's vocabulary is %d\n"
                      "HINT: the tokenizer does not belong to this model; give the right one with --tokenizer\n",
              i < n_prompt ? "prompt" : "question", (int)id, m->cfg.vocab_size);
      goto done;
    }
  }
  if (o.press_spec && press_check_len(&o.press, (int64_t)n_prompt, &err)) {
    fprintf(stderr, "pith generate: --press '%s': %s (the prompt is the context it compresses)\n", o.press_spec,
            err.msg);
    rc = 2;
    goto done;
  }
  const int32_t *tok_eos;
  int n_tok_eos = tokenizer_eos_ids(tok, &tok_eos);
  for (int i = 0; i <= n_tok_eos && n_eos < (int)(sizeof eos / sizeof eos[0]); i++) {
    int32_t id = i < n_tok_eos ? tok_eos[i] : m->cfg.eos_id;
    int seen = id < 0;
    for (int j = 0; j < n_eos; j++) seen |= eos[j] == id;
    if (!seen) eos[n_eos++] = id;
  }

  // The prompt (and question) as the tokenizer reads them back, then the new text as it comes.
  for (size_t i = 0; i < n_prompt; i++)
    if (stream_push(&st, prompt[i])) goto stream_error;
  char *text = tokenizer_decode(tok, prompt, n_prompt, 1, &st.err);
  if (!text) goto stream_error;
  fputs(text, stdout);
  fflush(stdout);
  free(text);
  st.done = st.n;
  st.base = st.done > STREAM_WINDOW ? st.done - STREAM_WINDOW : 0;
  for (size_t i = 0; i < n_question; i++)
    if (stream_push(&st, question[i])) goto stream_error;
  if (n_question && stream_flush(&st, 1)) goto stream_error;

  gen_config cfg = {.max_new_tokens = o.max_new_tokens, .temperature = o.temperature, .top_p = o.top_p,
                    .seed = o.seed, .eos_ids = eos, .n_eos = n_eos};
  int pressed = o.press_spec || o.question;
  double t0 = pith_now_s(), t_first = 0;
  int grc;
  if (pressed) {
    // One row: the prompt is the context, the question (if any) is read after the press.
    press_selector sel = {&o.press, m};
    const int32_t *ctx_rows[1] = {prompt}, *q_rows[1] = {question};
    int n_ctx[1] = {(int)n_prompt}, n_q[1] = {(int)n_question};
    gen_press_request req = {.batch = 1, .context = ctx_rows, .n_context = n_ctx, .question = o.question ? q_rows : NULL,
                             .n_question = o.question ? n_q : NULL, .select = o.press_spec ? press_select : NULL,
                             .select_ctx = &sel};
    press_stream ps = {&st, 0};
    grc = generate_pressed(m, &req, &cfg, on_press_token, &ps, &pres, &err);
    t_first = ps.t_first;
    if (grc == 0) new_ids = pres.ids[0], n_new = pres.n[0];
  } else {
    grc = generate(m, NULL, NULL, NULL, prompt, (int)n_prompt, &cfg, on_token, &st, &new_ids, &n_new, &err);
  }
  double dt = pith_now_s() - t0;
  if (st.failed) goto stream_error;
  stream_flush(&st, 1);
  fputc('\n', stdout);
  fflush(stdout);
  if (grc) {
    fprintf(stderr, "pith generate: %s\n", err.msg);
    goto done;
  }
  int hit_eos = 0;
  for (int j = 0; n_new > 0 && j < n_eos; j++) hit_eos |= new_ids[n_new - 1] == eos[j];
  if (n_new < o.max_new_tokens && !hit_eos)
    fprintf(stderr, "pith generate: stopped at the model's context length (%d positions)\n", m->cfg.max_seq_len);
  if (pressed) {
    // Entries: one per (layer, KV head, context position); bytes: kv_cache_bytes right after the press
    // (kept K/V + their 16-byte index) against a dense cache of the same context.
    int64_t all = (int64_t)m->cfg.n_layers * m->cfg.n_kv_heads * (int64_t)n_prompt;
    char spec[512] = "none";
    if (o.press_spec) press_format(&o.press, spec, sizeof spec);
    int64_t kv = pres.kv_kept * 2 * m->cfg.head_dim * (int64_t)pt_dtype_size(m->dtype);
    fprintf(stderr,
            "pith generate: press %s: kept %lld of %lld KV entries (%.1f%%); the cache holds %lld bytes (K/V %lld + "
            "their index %lld) vs %lld uncompressed (%.1f%%)\n",
            spec, (long long)pres.kv_kept, (long long)all, all ? 100.0 * pres.kv_kept / all : 0.0,
            (long long)pres.kv_bytes, (long long)kv, (long long)(pres.kv_bytes - kv), (long long)pres.kv_dense_bytes,
            pres.kv_dense_bytes ? 100.0 * pres.kv_bytes / pres.kv_dense_bytes : 0.0);
    double tp = t_first > 0 ? t_first - t0 : dt, td = dt - tp;
    fprintf(stderr,
            "pith generate: %zu prompt + %zu question tokens, %d new; prefill + press + question %.3f s, decode %.3f s "
            "(%d steps, %.1f tokens/s), total %.3f s\n",
            n_prompt, n_question, n_new, tp, td, n_new > 1 ? n_new - 1 : 0,
            td > 0 && n_new > 1 ? (n_new - 1) / td : 0.0, dt);
  } else {
    fprintf(stderr, "pith generate: %zu prompt tokens, %d new in %.2f s with the prompt (%.1f tokens/s)\n", n_prompt,
            n_new, dt, dt > 0 ? n_new / dt : 0.0);
  }
  rc = 0;
  if (o.ids_out && write_ids(o.ids_out, prompt, n_prompt, o.question ? question : NULL, n_question, new_ids,
                             (size_t)n_new, &err)) {
    fprintf(stderr, "pith generate: --ids-out: %s\n", err.msg);
    rc = 1;
  }
  goto done;

stream_error:
  fprintf(stdout, "\n");
  fprintf(stderr, "pith generate: decoding: %s\n", st.err.msg);
done:
  if (pres.ids) new_ids = NULL;  // owned by pres
  gen_press_result_free(&pres);
  free(new_ids);
  free(prompt);
  free(question);
  free(st.ids);
  llama_free(m);
  tokenizer_free(tok);
  return rc;
}
