// pith compress ehpc-probe: finds EHPC's evaluator heads of a causal LM by needle-in-a-haystack
// probes over a pith documents corpus (models/ehpc.h), and writes them, with the scores, the data
// and the settings, into the model folder's ehpc.json, where `pith compress --method ehpc` reads them.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "cjson_file.h"
#include "cli.h"
#include "corpus.h"
#include "ehpc.h"
#include "hf_folder.h"
#include "sha256.h"
#include "strbuf.h"
#include "tokenizer.h"

int cmd_compress_ehpc_probe(int argc, char **argv);

// The probes as JSON lines for pith compress ({"context", "question", "needle", "depth"}).
static void add_prompt(const char *context, const char *question, const char *needle, double depth, void *ctx) {
  strbuf *b = ctx;
  strbuf_adds(b, "{\"context\": ");
  strbuf_add_json(b, context, strlen(context));
  strbuf_adds(b, ", \"question\": ");
  strbuf_add_json(b, question, strlen(question));
  strbuf_adds(b, ", \"needle\": ");
  strbuf_add_json(b, needle, strlen(needle));
  strbuf_printf(b, ", \"depth\": %.4f}\n", depth);
}

// --probes FILE: JSON lines {"context", "question", "needle"} (what --prompts writes, or a task's own
// needles). items point into *root's strings; 0, or -1 with err naming the file and line.
static int read_probes(const char *path, cJSON **root, ehpc_probe_item **items, int *n, pith_err *err) {
  *root = cJSON_CreateArray(), *items = NULL, *n = 0;
  size_t len;
  char *text = pith_read_file(path, &len, err);
  if (!text) return -1;
  int rc = 0, line = 0, cap = 0;
  for (char *p = text, *end; rc == 0 && p < text + len; p = end + 1) {
    end = memchr(p, '\n', (size_t)(text + len - p));
    if (!end) end = text + len;
    line++;
    const char *q = p;
    while (q < end && strchr(" \t\r", *q)) q++;
    if (q == end) continue;
    cJSON *o = cJSON_ParseWithLength(p, (size_t)(end - p));
    const char *keys[3] = {"context", "question", "needle"}, *v[3] = {0};
    for (int k = 0; o && k < 3; k++) v[k] = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, keys[k]));
    if (!cJSON_IsObject(o) || !v[0] || !v[1] || !v[2]) {
      cJSON_Delete(o);
      rc = pith_fail(err, "--probes %s:%d: want a JSON object with string \"context\", \"question\" and \"needle\"", path,
                     line);
      break;
    }
    cJSON_AddItemToArray(*root, o);
    if (*n == cap) {
      cap = cap ? 2 * cap : 64;
      ehpc_probe_item *g = realloc(*items, (size_t)cap * sizeof *g);
      if (!g) {
        rc = pith_fail(err, "out of memory");
        break;
      }
      *items = g;
    }
    (*items)[(*n)++] = (ehpc_probe_item){v[0], v[1], v[2]};
  }
  free(text);
  if (rc == 0 && *n == 0) rc = pith_fail(err, "--probes %s: no probes", path);
  return rc;
}

static cJSON *doubles(const double *v, int n) {
  cJSON *a = cJSON_CreateArray();
  for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(v[i]));
  return a;
}

int cmd_compress_ehpc_probe(int argc, char **argv) {
  const char *model_dir = NULL, *data = NULL, *prompts = NULL, *probes = NULL;
  int window = 8, top = 8, depths = 9, needles = 4, haystack = 0, kernel = 7, threads = 0, prompts_only = 0;
  uint64_t seed = 1;
  const cli_opt opts[] = {
      {"--model", CLI_STR, &model_dir, .metavar = "DIR", .flags = CLI_REQUIRED,
       .help = "a causal LM folder (llama, mistral, qwen2); ehpc.json is written into it"},
      {"--data", CLI_STR, &data, .metavar = "FILE.h5", .help = "a pith documents corpus: the haystack's text"},
      {"--probes", CLI_STR, &probes, .metavar = "FILE",
       .help = "instead of --data: the probes themselves, JSON lines {\"context\", \"question\",\n"
               "\"needle\"} (a task's own needles and question format; tests/reference/ehpc_needle.py)"},
      {"--window", CLI_INT, &window, .metavar = "W", .min = 1, .max = 4096,
       .help = "the last W tokens (the question) whose attention is read (default 8)"},
      {"--top", CLI_INT, &top, .metavar = "N", .min = 1, .max = EHPC_MAX_HEADS,
       .help = "heads kept from the best layer (default 8)"},
      {"--depths", CLI_INT, &depths, .metavar = "N", .min = 1, .max = 1000,
       .help = "needle depths i/(N+1), i = 1..N (default 9: 0.1 .. 0.9)"},
      {"--needles", CLI_INT, &needles, .metavar = "N", .min = 1, .max = 100000,
       .help = "made-up facts, each put at every depth (default 4)"},
      {"--haystack-tokens", CLI_INT, &haystack, .metavar = "N", .min = 32, .max = CLI_INF,
       .help = "probe length (default: the model's context, at most 1024)"},
      {"--kernel", CLI_INT, &kernel, .metavar = "K", .min = 1, .max = 4095,
       .help = "the pooling kernel saved for compress (odd; default 7)"},
      {"--seed", CLI_U64, &seed, .metavar = "S", .help = "needles and haystacks (default 1)"},
      {"--prompts", CLI_STR, &prompts, .metavar = "FILE",
       .help = "also write the probes as JSON lines for pith compress (with \"needle\")"},
      {"--prompts-only", CLI_FLAG, &prompts_only, .help = "only write --prompts; no probe, DIR untouched"},
      {"--threads", CLI_INT, &threads, .metavar = "N", .min = 1, .max = 4096, .help = "CPU threads"},
  };
  const cli_spec spec = {
      "pith compress ehpc-probe", CLI_OPTS(opts),
      .about = "Finds the evaluator heads of EHPC (arXiv 2501.12959): a made-up fact (the needle) is put at depths\n"
               "0.1 .. 0.9 of a haystack of corpus documents and asked about at the end; each head's score is its\n"
               "attention from the last W queries, averaged over them, summed over the needle's tokens, averaged\n"
               "over the probes. The best layer has the largest sum of head scores; its top heads are written with\n"
               "the scores and settings into DIR/ehpc.json. Prints the chosen heads' factor over the median head.\n"
               "With --probes the probes are given (a task's own needles and question format) instead.\n\n"};
  int code;
  if (cli_command(&spec, argc, argv, &code)) return code;
  if (kernel % 2 == 0) return cli_usage_error(&spec, "--kernel must be odd (an even one shifts scores), not %d", kernel);
  if (prompts_only && !prompts) return cli_usage_error(&spec, "--prompts-only needs --prompts FILE");
  if (!data == !probes) return cli_usage_error(&spec, "give --data FILE.h5 or --probes FILE (one of them)");
  if (probes && prompts) return cli_usage_error(&spec, "--prompts writes made-up probes; with --probes there are none");
  if (threads > 0) pt_set_num_threads(threads);
  pith_err err = {{0}};
  llama_model *m = NULL;
  tokenizer *tok = NULL;
  corpus *c = data ? corpus_open(data, &err) : NULL;
  cJSON *probe_json = NULL;
  ehpc_probe_item *items = NULL;
  int n_items = 0;
  if (probes && read_probes(probes, &probe_json, &items, &n_items, &err)) {
    fprintf(stderr, "pith compress ehpc-probe: %s\n", err.msg);
    cJSON_Delete(probe_json);
    free(items);
    return 1;
  }
  if ((c || probes) && !pith_is_dir(model_dir)) pith_fail(&err, "--model '%s': no such folder", model_dir);
  if ((c || probes) && !err.msg[0]) m = hf_model_load(model_dir, PT_F32, PT_CPU, &err);
  if (m) tok = tokenizer_load(model_dir, &err);
  if ((!c && !probes) || !m || !tok) {
    fprintf(stderr, "pith compress ehpc-probe: %s\n", err.msg);
    cJSON_Delete(probe_json);
    free(items);
    llama_free(m);
    corpus_close(c);
    return 1;
  }
  ehpc_probe_options po = {.window = window, .top = top, .n_depths = depths, .n_needles = needles,
                           .haystack_tokens = haystack, .seed = seed};
  strbuf lines = {0};
  ehpc_probe_result r;
  double t0 = pith_now_s();
  int rc = probes ? ehpc_probe_items(m, tok, items, n_items, &po, &r, &err)
                 : ehpc_probe(m, tok, c, &po, prompts_only, prompts ? add_prompt : NULL, &lines, &r, &err);
  if (rc == 0 && prompts && (!strbuf_ok(&lines) || pith_write_file_atomic(prompts, lines.p ? lines.p : "", lines.n, &err)))
    rc = err.msg[0] ? -1 : pith_fail(&err, "out of memory");
  if (rc == 0 && !prompts_only) {
    double factor = r.median > 0 ? r.chosen_mean / r.median : 0;
    printf("ehpc-probe: %d probes in %.1fs; best layer %d, heads", r.n_probes, pith_now_s() - t0, r.best_layer);
    for (int i = 0; i < r.heads.n_heads; i++) printf("%s%d", i ? "," : " ", r.heads.heads[i]);
    printf("; needle attention %.4f vs median head %.4f: %.2fx\n", r.chosen_mean, r.median, factor);
    for (int l = 0; l < r.n_layers; l++) {
      printf("  layer %d: sum %.4f, heads", l, r.layer_scores[l]);
      for (int h = 0; h < r.n_heads; h++) printf(" %.4f", r.head_scores[l * r.n_heads + h]);
      printf("\n");
    }
    char hex[SHA256_HEX_SIZE];
    if (sha256_hash_file(probes ? probes : data, hex, &err)) rc = -1;
    cJSON *root = cJSON_CreateObject(), *probe = cJSON_CreateObject(), *hs = cJSON_CreateArray();
    cJSON_AddStringToObject(root, "format", EHPC_FORMAT);
    cJSON_AddNumberToObject(root, "version", EHPC_FORMAT_VERSION);
    cJSON_AddNumberToObject(root, "layer", r.best_layer);
    cJSON *heads = cJSON_AddArrayToObject(root, "heads");
    for (int i = 0; i < r.heads.n_heads; i++) cJSON_AddItemToArray(heads, cJSON_CreateNumber(r.heads.heads[i]));
    cJSON_AddNumberToObject(root, "window", window);
    cJSON_AddNumberToObject(root, "kernel", kernel);
    cJSON_AddNumberToObject(root, "factor_over_median", factor);
    cJSON_AddNumberToObject(root, "chosen_mean", r.chosen_mean);
    cJSON_AddNumberToObject(root, "median_head", r.median);
    cJSON_AddItemToObject(root, "layer_scores", doubles(r.layer_scores, r.n_layers));
    for (int l = 0; l < r.n_layers; l++) cJSON_AddItemToArray(hs, doubles(r.head_scores + l * r.n_heads, r.n_heads));
    cJSON_AddItemToObject(root, "head_scores", hs);
    cJSON_AddStringToObject(probe, probes ? "probes_file" : "data", probes ? probes : data);
    if (rc == 0) cJSON_AddStringToObject(probe, probes ? "probes_sha256" : "data_sha256", hex);
    cJSON_AddNumberToObject(probe, "probes", r.n_probes);
    cJSON_AddNumberToObject(probe, "top", top);
    if (!probes) {  // the made-up probes' settings
      cJSON_AddNumberToObject(probe, "needles", needles);
      cJSON_AddNumberToObject(probe, "depths", depths);
      cJSON_AddNumberToObject(probe, "haystack_tokens", haystack);
      cJSON_AddNumberToObject(probe, "seed", (double)seed);
    }
    strbuf cmd = {0};
    strbuf_adds(&cmd, "pith compress");
    for (int i = 0; i < argc; i++) strbuf_adds(&cmd, " "), strbuf_adds(&cmd, argv[i]);
    strbuf_adds(&cmd, "");
    cJSON_AddStringToObject(probe, "command", cmd.p ? cmd.p : "");
    strbuf_free(&cmd);
    cJSON_AddItemToObject(root, "probe", probe);
    char path[4096];
    pith_path_join(path, sizeof path, model_dir, "ehpc.json");
    if (rc == 0 && cjson_write_file(path, root, &err)) rc = -1;
    cJSON_Delete(root);
    if (rc == 0) printf("ehpc-probe: wrote %s\n", path);
  }
  ehpc_probe_result_free(&r);  // whatever the path (--prompts-only, a failed probe) left in it
  if (rc) fprintf(stderr, "pith compress ehpc-probe: %s\n", err.msg);
  strbuf_free(&lines);
  cJSON_Delete(probe_json);
  free(items);
  corpus_close(c);
  llama_free(m);
  tokenizer_free(tok);
  return rc ? 1 : 0;
}
