// run_config: YAML loading (nested maps, lists, quoting, the YAML forms the reader takes and those
// it refuses), command-line overrides, schema resolve (types, defaults), save -> load round trips
// of every kind of string (resolved, raw, and through run_config_get_raw as export reads them),
// and the error messages a user sees.
#include <signal.h>
#include <stdint.h>
#include <sys/wait.h>

#include "base.h"
#include "check.h"
#include "run_config.h"

static char dir[] = "/tmp/pith_test_run_config_XXXXXX";
static char files[64][320];
static int n_files;

// Write `text` to DIR/name and return the path (kept for cleanup).
static const char *write_file(const char *name, const char *text) {
  char *p = files[n_files++];
  snprintf(p, sizeof files[0], "%s/%s", dir, name);
  pith_err err = {{0}};
  if (pith_write_file_atomic(p, text, strlen(text), &err) != 0) {
    fprintf(stderr, "cannot write %s: %s\n", p, err.msg);
    exit(1);
  }
  return p;
}

static const rc_key schema[] = {
    {"model_name_or_path", RC_STRING, NULL, "Hugging Face model folder", NULL},
    {"learning_rate", RC_FLOAT, "1e-4", "peak learning rate", "(0,inf)"},
    {"per_device_train_batch_size", RC_INT, "8", "sequences per device per step", "[1,inf)"},
    {"gradient_accumulation_steps", RC_INT, "1", "micro-batches per optimizer step", "[1,inf)"},
    {"warmup_steps", RC_INT, "0", "linear warmup steps", "[0,inf)"},
    {"max_steps", RC_INT, "1000", "optimizer steps", "-1|[1,inf)"},
    {"lr_scheduler_type", RC_STRING, "cosine", "after warmup", "linear|cosine|constant"},
    {"lora_rank", RC_INT, "8", "LoRA rank r", "[1,inf)"},
    {"lora_alpha", RC_FLOAT, "16", "LoRA alpha", "any"},
    {"lora_dropout", RC_FLOAT, "0.0", "LoRA dropout", "[0,1)"},
    {"lora_target", RC_STRING, "q_proj,v_proj", "modules LoRA wraps, comma-separated", NULL},
    {"bf16", RC_BOOL, "false", "bfloat16 autocast", NULL},
    {"gradient_checkpointing", RC_BOOL, "no", "recompute activations", NULL},
    {"compressor.num_mem_tokens", RC_INT, "4", "compress tokens", "[1,inf)"},
    {"compressor.kind", RC_STRING, "500x", "500x or icae", NULL},
    {"output_dir", RC_STRING, "", "run folder", NULL},
    {"run_name", RC_STRING, "", "a name for logs", NULL},
    {"prompt", RC_STRING, "", "free text", NULL},
    {"seed", RC_INT, "42", "random seed", "any"},
};
static const int n_schema = (int)(sizeof schema / sizeof *schema);

static void test_load_and_resolve(void) {
  pith_err err = {{0}};
  const char *path = write_file("tiny.yaml",
                                "# a tiny run\n"
                                "model_name_or_path: ../shared/assets/stories260K\n"
                                "learning_rate: 3e-4          # peak\n"
                                "per_device_train_batch_size: 4\n"
                                "warmup_steps: 1e2\n"
                                "lora_target: [q_proj, k_proj, v_proj]\n"
                                "bf16: Yes\n"
                                "compressor:\n"
                                "  num_mem_tokens: 16\n"
                                "  kind: 'icae'\n"
                                "run_name: \"tiny: a # not a comment\"\n"
                                "output_dir:\n"
                                "prompt: >-\n"
                                "  folded\n"
                                "  text\n");
  run_config *c = run_config_new();
  CHECK(c != NULL);
  // An override given before the file still wins over it.
  CHECK(run_config_set(c, "per_device_train_batch_size=2", &err) == 0);
  CHECK_MSG(run_config_load(c, path, &err) == 0, "%s", err.msg);
  CHECK(run_config_set(c, "learning_rate=5e-5", &err) == 0);
  CHECK(run_config_set(c, "max_steps=10", &err) == 0);
  CHECK(run_config_set(c, "max_steps=20", &err) == 0);  // the later one wins
  CHECK(run_config_set(c, " seed = 7", &err) == 0);     // spaces around the key are trimmed

  // Before resolve the YAML lists the raw text.
  char *raw = run_config_yaml(c);
  CHECK_CONTAINS(raw, "# pith run config, format 1: as given");
  CHECK_CONTAINS(raw, "\nlora_target: q_proj,k_proj,v_proj\n");
  CHECK_CONTAINS(raw, "\ncompressor.kind: icae\n");
  free(raw);

  CHECK_MSG(run_config_resolve(c, schema, n_schema, &err) == 0, "%s", err.msg);
  CHECK(!strcmp(run_config_str(c, "model_name_or_path"), "../shared/assets/stories260K"));
  CHECK_NEAR(run_config_float(c, "learning_rate"), 5e-5, 1e-15);
  CHECK(run_config_int(c, "per_device_train_batch_size") == 2);
  CHECK(run_config_int(c, "gradient_accumulation_steps") == 1);  // default
  CHECK(run_config_int(c, "warmup_steps") == 100);                // 1e2 is integral
  CHECK(run_config_int(c, "max_steps") == 20);
  CHECK(run_config_int(c, "seed") == 7);
  CHECK(!strcmp(run_config_str(c, "lora_target"), "q_proj,k_proj,v_proj"));
  CHECK(run_config_bool(c, "bf16") == 1);
  CHECK(run_config_bool(c, "gradient_checkpointing") == 0);  // default "no"
  CHECK(run_config_int(c, "compressor.num_mem_tokens") == 16);
  CHECK(!strcmp(run_config_str(c, "compressor.kind"), "icae"));
  CHECK(!strcmp(run_config_str(c, "run_name"), "tiny: a # not a comment"));
  CHECK(!strcmp(run_config_str(c, "output_dir"), ""));  // `key:` is null: the empty string
  CHECK(!strcmp(run_config_str(c, "prompt"), "folded text"));
  CHECK(!strcmp(run_config_str(c, "lr_scheduler_type"), "cosine"));
  CHECK_NEAR(run_config_float(c, "lora_alpha"), 16.0, 0);
  CHECK_NEAR(run_config_float(c, "lora_rank"), 8.0, 0);  // float getter reads int keys
  // Canonical texts.
  CHECK(!strcmp(run_config_str(c, "warmup_steps"), "100"));
  CHECK(!strcmp(run_config_str(c, "bf16"), "true"));
  CHECK(!strcmp(run_config_str(c, "lora_alpha"), "16.0"));
  CHECK(!strcmp(run_config_str(c, "learning_rate"), "5.0e-05"));

  // Saved text: schema order, the header says what it is.
  char *y = run_config_yaml(c);
  CHECK(y != NULL);
  CHECK_CONTAINS(y, "# pith run config, format 1");
  CHECK_CONTAINS(y, "tiny.yaml + 5 command-line assignments");
  CHECK_CONTAINS(y, "\nmodel_name_or_path: ../shared/assets/stories260K\n");
  CHECK_CONTAINS(y, "\nrun_name: \"tiny: a # not a comment\"\n");
  CHECK_CONTAINS(y, "\noutput_dir: \"\"\n");
  CHECK_CONTAINS(y, "\nbf16: true\n");
  const char *a = y ? strstr(y, "model_name_or_path:") : NULL, *b = y ? strstr(y, "seed:") : NULL;
  CHECK(a && b && a < b);
  free(y);

  // Resolve again after another override: the new value counts.
  CHECK(run_config_set(c, "bf16=off", &err) == 0);
  CHECK(run_config_resolve(c, schema, n_schema, &err) == 0);
  CHECK(run_config_bool(c, "bf16") == 0);
  run_config_free(c);
}

// Two files: the later one wins, the command line wins over both; a failed load changes nothing.
static void test_layers(void) {
  pith_err err = {{0}};
  const char *base = write_file("base.yaml", "model_name_or_path: m\nlora_rank: 4\nseed: 1\n");
  const char *over = write_file("over.yaml", "lora_rank: 16\nseed: 2\n");
  const char *bad =
      write_file("bad_layer.yaml", "model_name_or_path: other\nlora_rank: [1, {a: b}]\n");
  run_config *c = run_config_new();
  CHECK(run_config_load(c, base, &err) == 0);
  CHECK(run_config_set(c, "seed=3", &err) == 0);
  CHECK(run_config_load(c, over, &err) == 0);
  CHECK(run_config_load(c, bad, &err) == -1);
  CHECK(run_config_resolve(c, schema, n_schema, &err) == 0);
  CHECK(run_config_int(c, "lora_rank") == 16);
  CHECK(run_config_int(c, "seed") == 3);
  CHECK(!strcmp(run_config_str(c, "model_name_or_path"), "m"));  // the failed load left no trace
  run_config_free(c);
}

// Strings that need quoting, numbers at the edges: save -> load -> resolve gives the same values.
static void test_round_trip(void) {
  static const char *strings[] = {
      "plain",
      "with space",
      "a: b",
      "a #b",
      "#x",
      "x#y",
      "it's \"quoted\"",
      "back\\slash",
      "line\nbreak",
      "tab\there",
      " leading",
      "trailing ",
      "",
      "null",
      "~",
      "true",
      "No",
      "123",
      "1e-4",
      "0x1F",
      ".inf",
      "inf",
      "- item",
      "[a, b]",
      "{a: b}",
      "&anchor",
      "*alias",
      "!tag",
      "%directive",
      "@at",
      "`tick",
      "|",
      ">",
      "? key",
      "---",
      "...",
      "q_proj,v_proj",
      "/abs/path/model.safetensors",
      "./rel",
      "meta-llama/Meta-Llama-3-8B",
      "caf\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x98\x80",  // é ✓ 😀
      "nel\xc2\x85ls\xe2\x80\xa8ps\xe2\x80\xa9",    // YAML 1.1 line breaks inside
      "c1\xc2\x80 bom\xef\xbb\xbf",                 // a C1 control, a BOM
      "ctrl\x01\x1f\x7f",
      "crlf\r\n",
  };
  const int n_str = (int)(sizeof strings / sizeof *strings);
  static const double floats[] = {0.1, 1.0 / 3.0, 5e-5, 1e-300, -0.0, 1e300, 123456789.0,
                                  2.0, 4.9406564584124654e-324, INFINITY, -INFINITY};
  const int n_fl = (int)(sizeof floats / sizeof *floats);
  static const int64_t ints[] = {0, -1, INT64_MAX, INT64_MIN, 10000};

  int n = n_str + n_fl + (int)(sizeof ints / sizeof *ints) + 2;
  rc_key *s = calloc((size_t)n, sizeof *s);
  char (*names)[32] = calloc((size_t)n, 32);
  pith_err err = {{0}};
  run_config *c = run_config_new();
  int k = 0;
  for (int i = 0; i < n_str; i++, k++) {
    snprintf(names[k], 32, "s%d", i);
    s[k] = (rc_key){names[k], RC_STRING, "", NULL, NULL};
    // Each string goes in through the command line (the only way to get any byte in).
    char assign[128];
    snprintf(assign, sizeof assign, "%s=%s", names[k], strings[i]);
    CHECK_MSG(run_config_set(c, assign, &err) == 0, "%s", err.msg);
  }
  for (int i = 0; i < n_fl; i++, k++) {
    snprintf(names[k], 32, "f%d", i);
    s[k] = (rc_key){names[k], RC_FLOAT, "0", NULL, "any"};
    char assign[128];
    snprintf(assign, sizeof assign, "%s=%.17g", names[k], floats[i]);
    CHECK(run_config_set(c, assign, &err) == 0);
  }
  for (int i = 0; i < (int)(sizeof ints / sizeof *ints); i++, k++) {
    snprintf(names[k], 32, "i%d", i);
    s[k] = (rc_key){names[k], RC_INT, "0", NULL, "any"};
    char assign[128];
    snprintf(assign, sizeof assign, "%s=%lld", names[k], (long long)ints[i]);
    CHECK(run_config_set(c, assign, &err) == 0);
  }
  snprintf(names[k], 32, "nan");
  s[k] = (rc_key){names[k], RC_FLOAT, "nan", NULL, "any"};
  k++;
  snprintf(names[k], 32, "flag");
  s[k] = (rc_key){names[k], RC_BOOL, "1", NULL, NULL};
  k++;
  CHECK(k == n);

  CHECK_MSG(run_config_resolve(c, s, n, &err) == 0, "%s", err.msg);
  char path[320];
  snprintf(path, sizeof path, "%s/config.yaml", dir);
  snprintf(files[n_files++], sizeof files[0], "%s", path);
  CHECK_MSG(run_config_save(c, path, &err) == 0, "%s", err.msg);

  run_config *d = run_config_new();
  CHECK_MSG(run_config_load(d, path, &err) == 0, "%s", err.msg);
  CHECK_MSG(run_config_resolve(d, s, n, &err) == 0, "%s", err.msg);
  for (int i = 0; i < n_str; i++)
    CHECK_MSG(!strcmp(run_config_str(d, names[i]), strings[i]), "%s: '%s' read back as '%s'",
              names[i], strings[i], run_config_str(d, names[i]));
  for (int i = 0; i < n_fl; i++) {
    double x = run_config_float(d, names[n_str + i]);
    CHECK_MSG(memcmp(&x, &floats[i], sizeof x) == 0, "%s: %.17g read back as %.17g",
              names[n_str + i], floats[i], x);
  }
  for (int i = 0; i < (int)(sizeof ints / sizeof *ints); i++)
    CHECK(run_config_int(d, names[n_str + n_fl + i]) == ints[i]);
  CHECK(isnan(run_config_float(d, "nan")));
  CHECK(run_config_bool(d, "flag") == 1);
  // A second save is byte-identical but for the header's second line.
  char *y1 = run_config_yaml(c), *y2 = run_config_yaml(d);
  const char *body1 = y1 ? strstr(strchr(y1, '\n') + 1, "\n") : NULL;
  const char *body2 = y2 ? strstr(strchr(y2, '\n') + 1, "\n") : NULL;
  CHECK(body1 && body2 && !strcmp(body1, body2));
  free(y1);
  free(y2);
  run_config_free(d);
  run_config_free(c);
  free(names);
  free(s);
}

// Every string the writer can be given reads back byte for byte, through the resolved save (what
// the trainers write) and the raw one (before resolve), and through run_config_get_raw (what
// export reads).
static void test_round_trip_strings(void) {
  static const char *strings[] = {
      "\r", "a\rb", "cr at end\r", "\t", "tab\tin", "\ttab first", "tab last\t", "\x01", "\x7f",
      "x\x01y\x7f" "z", "\x1b[0m", "\x08\x0b\x0c", "all\r\n\t\x01", "\n", "\n\nx\n\n", " \n ",
      "caf\xc3\xa9", "\xe2\x9c\x93", "\xf0\x9f\x98\x80", "\xc2\xa0nbsp", "\xc2\x85", "\xe2\x80\xa8",
      "\xe2\x80\xa9", "\xef\xbb\xbf", "\xef\xbb\xbf" "bom first", "\xe4\xb8\xad\xe6\x96\x87",
      "'", "\"", "''", "\"\"", "'single'", "\"double\"", "it's", "say \"hi\"", "'\"'\"",
      "\\", "\\\\", "back\\slash", "\\n", "\\x41", "\\u00e9", "\\\"", "ends with \\",
      ":", "a:", ":a", "a: b", "a:b", "a :b", "::", "http://x.y/z?q=1",
      "#", "# c", "a #b", "a#b", "x #", "#!",
      " ", "  ", " x", "x ", "  both  ", " \t ",
      "", "null", "Null", "NULL", "~", "true", "False", "YES", "on", "n", "1e4", "-1", "+1",
      "0o17", "0x1F", "1_000", ".nan", "+.inf", "-.Inf", "1.5", "3e-4", "2001-12-14",
      "- x", "? x", "[x]", "{x: y}", "&a", "*a", "!t", "|", ">", "%x", "@x", "`x", ",", "---",
      "...", "--- x", "a,b", "q_proj,v_proj", "/a/b.c", "../x", "meta-llama/Meta-Llama-3-8B",
  };
  const int n_str = (int)(sizeof strings / sizeof *strings);
  // Long values: a plain-safe one (written unquoted) and one that needs every kind of escape.
  const size_t long_n = 100000;
  char *long_plain = malloc(long_n + 1), *long_mixed = malloc(long_n + 1);
  for (size_t i = 0; i < long_n; i++) {
    long_plain[i] = "abcdefghij_/-.,"[i % 15];
    long_mixed[i] = "a \t\r\n\"'\\:#\x01\x7f-"[i % 14];
  }
  long_plain[long_n] = long_mixed[long_n] = 0;
  const int n = n_str + 2;
  const char **vals = malloc((size_t)n * sizeof *vals);
  for (int i = 0; i < n_str; i++) vals[i] = strings[i];
  vals[n_str] = long_plain;
  vals[n_str + 1] = long_mixed;

  rc_key *s = calloc((size_t)n, sizeof *s);
  char (*names)[32] = calloc((size_t)n, 32);
  pith_err err = {{0}};
  run_config *c = run_config_new();
  char *assign = malloc(long_n + 64);
  for (int i = 0; i < n; i++) {
    snprintf(names[i], 32, "v%d", i);
    s[i] = (rc_key){names[i], RC_STRING, "", NULL, NULL};
    snprintf(assign, long_n + 64, "%s=%s", names[i], vals[i]);
    CHECK_MSG(run_config_set(c, assign, &err) == 0, "%s", err.msg);
  }
  free(assign);

  // Raw (unresolved) text: what export reads back with run_config_get_raw.
  char raw_path[320], path[320];
  snprintf(raw_path, sizeof raw_path, "%s/raw.yaml", dir);
  snprintf(files[n_files++], sizeof files[0], "%s", raw_path);
  CHECK_MSG(run_config_save(c, raw_path, &err) == 0, "%s", err.msg);
  run_config *r = run_config_new();
  CHECK_MSG(run_config_load(r, raw_path, &err) == 0, "%s", err.msg);
  CHECK(run_config_raw_count(r) == n);
  for (int i = 0; i < n; i++) {
    const char *got = run_config_get_raw(r, names[i]);
    CHECK_MSG(got && !strcmp(got, vals[i]), "raw %s: '%.40s' read back as '%.40s'", names[i],
              vals[i], got ? got : "(null)");
    const char *v = NULL, *k = run_config_raw_at(r, i, &v);  // in file order
    CHECK(k && !strcmp(k, names[i]) && v == got);
  }
  CHECK(run_config_get_raw(r, "no_such_key") == NULL);
  CHECK(run_config_raw_at(r, n, NULL) == NULL && run_config_raw_at(r, -1, NULL) == NULL);

  // Resolved: what the trainers save as config.yaml.
  CHECK_MSG(run_config_resolve(c, s, n, &err) == 0, "%s", err.msg);
  snprintf(path, sizeof path, "%s/resolved.yaml", dir);
  snprintf(files[n_files++], sizeof files[0], "%s", path);
  CHECK_MSG(run_config_save(c, path, &err) == 0, "%s", err.msg);
  run_config *d = run_config_new();
  CHECK_MSG(run_config_load(d, path, &err) == 0, "%s", err.msg);
  for (int i = 0; i < n; i++) {
    const char *got = run_config_get_raw(d, names[i]);
    CHECK_MSG(got && !strcmp(got, vals[i]), "resolved %s: '%.40s' read back as '%.40s'",
              names[i], vals[i], got ? got : "(null)");
  }
  CHECK_MSG(run_config_resolve(d, s, n, &err) == 0, "%s", err.msg);
  for (int i = 0; i < n; i++) CHECK(!strcmp(run_config_str(d, names[i]), vals[i]));
  // The escapes the writer uses, as written: \r \t \xXX \uXXXX \N \L \P.
  char *y = run_config_yaml(c);
  CHECK_CONTAINS(y, "\nv0: \"\\r\"\n");
  CHECK_CONTAINS(y, "\nv3: \"\\t\"\n");
  CHECK_CONTAINS(y, "\nv7: \"\\x01\"\n");
  CHECK_CONTAINS(y, "\nv8: \"\\x7F\"\n");
  CHECK_CONTAINS(y, "\nv20: \"\\N\"\n");
  CHECK_CONTAINS(y, "\nv21: \"\\L\"\n");
  CHECK_CONTAINS(y, "\nv23: \"\\uFEFF\"\n");
  free(y);
  run_config_free(d);
  run_config_free(r);
  run_config_free(c);
  free(names);
  free(s);
  free(vals);
  free(long_plain);
  free(long_mixed);
}

// The YAML the reader takes, beyond what the writer writes: each document's key "k" (or the dotted
// key given) reads as the text given.
static void test_yaml_forms(void) {
  static const struct {
    const char *yaml, *key, *want;
  } cases[] = {
      {"k: plain text  # comment\n", "k", "plain text"},
      {"k: a#b\n", "k", "a#b"},
      {"k: 'it''s # not a comment'\n", "k", "it's # not a comment"},
      {"k: 'no \\escapes\\n'\n", "k", "no \\escapes\\n"},
      {"k: \"\\x41\\u00e9\\U0001F600\\t\\r\\n\\\\\\\"\\/\\ \\0x\"\n", "k", NULL},  // NUL: an error
      {"k: \"\\a\\b\\e\\f\\v\\N\\_\\L\\P\"\n", "k",
       "\a\b\x1b\f\v\xc2\x85\xc2\xa0\xe2\x80\xa8\xe2\x80\xa9"},
      {"k: \"\\x41\\u00e9\\U0001F600\\t\\r\\n\\\\\\\"\\/\\ \"\n", "k",
       "A\xc3\xa9\xf0\x9f\x98\x80\t\r\n\\\"/ "},
      {"k: \"one\n  two\n\n  three\"\n", "k", "one two\nthree"},
      {"k: \"joined\\\n   here\"\n", "k", "joinedhere"},
      {"k: 'one\n  two'\n", "k", "one two"},
      {"k: one\n  two\n\n  three\nz: 1\n", "k", "one two\nthree"},
      {"k:\n  on the next line\n", "k", "on the next line"},
      {"k: |\n  line 1\n    indented\n\n  line 3\nz: 1\n", "k", "line 1\n  indented\n\nline 3\n"},
      {"k: |-\n  stripped\n\n", "k", "stripped"},
      {"k: |+\n  kept\n\n\nz: 1\n", "k", "kept\n\n\n"},
      {"k: >\n  folded\n  lines\n\n  para\n", "k", "folded lines\npara\n"},
      {"k: |2\n   one more space\n", "k", " one more space\n"},
      {"k: [a, 'b c', \"d\", ]\n", "k", "a,b c,d"},
      {"k: [a,\n    b, # comment\n    c]\n", "k", "a,b,c"},
      {"k: []\n", "k", ""},
      {"k:\n  - a\n  -\n  - 'c'\n", "k", "a,,c"},
      {"k:\n- a\n- b\nz: 1\n", "k", "a,b"},
      {"k: {a: 1, b: {c: x}}\n", "k.b.c", "x"},
      {"k: {a, b: }\n", "k.a", ""},
      {"k:\n  a:\n    b: deep\n", "k.a.b", "deep"},
      {"\"quoted key\": v\n", "quoted key", "v"},
      {"k.dotted: v\n", "k.dotted", "v"},
      {"%YAML 1.1\n---\nk: v\n...\n", "k", "v"},
      {"--- # start\nk: v\n", "k", "v"},
      {"--- {k: v}\n", "k", "v"},
      {"\xef\xbb\xbfk: v\r\nz: 1\r\n", "k", "v"},
      {"k: v\rz: 1\r", "z", "1"},
      {"k:\tv\n", "k", "v"},
      {"k: ~\n", "k", ""},
      {"k: NULL\n", "k", ""},
      {"k: 'null'\n", "k", "null"},
      {"k: nUll\n", "k", "nUll"},
      {"k: -1\n", "k", "-1"},
      {"k: :x\n", "k", ":x"},
      {"k: a: b\n", "k", NULL},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    pith_err err = {{0}};
    run_config *c = run_config_new();
    int rc = run_config_load(c, write_file("form.yaml", cases[i].yaml), &err);
    n_files--;  // the same file each time
    if (!cases[i].want) {
      CHECK_MSG(rc == -1, "case %zu: no error", i);
    } else {
      CHECK_MSG(rc == 0, "case %zu: %s", i, err.msg);
      const char *got = run_config_get_raw(c, cases[i].key);
      CHECK_MSG(got && !strcmp(got, cases[i].want), "case %zu: '%s' is '%s', want '%s'", i,
                cases[i].key, got ? got : "(null)", cases[i].want);
    }
    run_config_free(c);
  }
  n_files++;
}

// YAML the reader refuses: bad syntax, and what run configs do not support.
static void test_yaml_errors(void) {
  static const struct {
    const char *yaml, *want;
  } cases[] = {
      {"a: &x 1\nb: *x\n", "yaml:1:4: invalid YAML: anchors and aliases"},
      {"a: !!str 1\n", "yaml:1:4: invalid YAML: tags"},
      {"? a\n: b\n", "yaml:1:1: invalid YAML: explicit keys"},
      {"%TAG ! tag:x,2000:\n---\na: 1\n", "yaml:1:1: invalid YAML: directives"},
      {"a: x\xe2\x80\xa8y\n", "yaml:1:5: invalid YAML: a raw U+2028 line break"},
      {"a: x\x01\n", "yaml:1:5: invalid YAML: control character U+0001"},
      {"a: \xc0\x80\n", "yaml:1:4: invalid YAML: an overlong UTF-8"},
      {"a:\n  -\tx\n", "yaml:2:4: invalid YAML: a tab character"},
      {"a: 1\n\tb: 2\n", "yaml:2:1: invalid YAML: a tab character"},
      {"a: - x\n", "yaml:1:4: invalid YAML: a list entry"},
      {"a: b: c\n", "yaml:1:5: invalid YAML: mapping values are not allowed here"},
      {"a: 'x' y\n", "yaml:1:8: invalid YAML: unexpected text after the value"},
      {"a: [x] y\n", "yaml:1:8: invalid YAML: unexpected text after the value"},
      {"a: [x, y\n", "yaml:2:1: invalid YAML: the '[' opened at line 1, column 4 is not closed"},
      {"a: {x: 1\n", "yaml:2:1: invalid YAML: the '{' opened at line 1, column 4 is not closed"},
      {"a: \"x\n", "yaml:2:1: invalid YAML: the quoted string opened at line 1, column 4"},
      {"a: \"\\q\"\n", "yaml:1:5: invalid YAML: unknown escape '\\q'"},
      {"a: \"\\x4\"\n", "yaml:1:7: invalid YAML: '\\x' wants 2 hexadecimal digits"},
      {"a: \"\\ud800\"\n", "yaml:1:7: invalid YAML: '\\u' escape of an invalid code point"},
      {"a: |0\n  x\n", "yaml:1:5: invalid YAML: a block scalar's indentation indicator"},
      {"a: | x\n", "yaml:1:6: invalid YAML: expected a comment or a line break"},
      {"a:\n    b: 1\n  c: 2\n", "yaml:3:3: invalid YAML: wrong indentation"},
      {"a: 1\n...\nb: 2\n", "yaml:3:1: invalid YAML: expected '---'"},
      {"a: 1\n... x\n", "yaml:2:5: invalid YAML: unexpected text after '...'"},
      {"a: [a:, b]\n", "yaml:1:6: invalid YAML: unexpected ':'"},
      {"a: @x\n", "yaml:1:4: invalid YAML: '@' cannot start a value"},
      {"a: {[b]: 1}\n", "yaml:1:5: a key must be a scalar, found a list"},
      {"---\n", "yaml:2:1: a run config is a mapping of key: value, found a scalar"},
      {"a: 1\n---\n", "yaml:3:1: a second YAML document"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    pith_err err = {{0}};
    run_config *c = run_config_new();
    CHECK_MSG(run_config_load(c, write_file("bad_form.yaml", cases[i].yaml), &err) == -1,
              "case %zu: no error", i);
    n_files--;
    CHECK_MSG(strstr(err.msg, cases[i].want) != NULL, "case %zu: '%s' lacks '%s'", i, err.msg,
              cases[i].want);
    CHECK(run_config_raw_count(c) == 0);  // a failed load leaves nothing
    run_config_free(c);
  }
  n_files++;
}

// Load (and resolve when the file loads) and return the error message.
static const char *error_of(const char *name, const char *text, const char *assign) {
  static pith_err err;
  memset(&err, 0, sizeof err);
  run_config *c = run_config_new();
  int rc = 0;
  if (text) rc = run_config_load(c, write_file(name, text), &err);
  if (rc == 0 && assign) rc = run_config_set(c, assign, &err);
  if (rc == 0) rc = run_config_resolve(c, schema, n_schema, &err);
  CHECK_MSG(rc == -1, "%s: no error", name);
  run_config_free(c);
  return err.msg;
}

static void test_errors(void) {
  char want[400];
  const char *m;

  // Bad YAML: file:line:column.
  m = error_of("bad.yaml", "model_name_or_path: m\nlearning_rate: 1\n  bad: indent\n", NULL);
  snprintf(want, sizeof want, "%s/bad.yaml:3:", dir);
  CHECK_CONTAINS(m, want);
  CHECK_CONTAINS(m, "invalid YAML");
  m = error_of("unclosed.yaml", "model_name_or_path: m\nlora_target: [q_proj, v_proj\nseed: 1\n",
               NULL);
  CHECK_CONTAINS(m, "unclosed.yaml:");
  CHECK_CONTAINS(m, "invalid YAML");
  m = error_of("bytes.yaml", "model_name_or_path: m\nbf16: \xff\n", NULL);  // not UTF-8
  snprintf(want, sizeof want, "%s/bytes.yaml:2:7: invalid YAML", dir);
  CHECK_CONTAINS(m, want);
  m = error_of("tab.yaml", "compressor:\n\tkind: icae\n", NULL);
  snprintf(want, sizeof want, "%s/tab.yaml:2:", dir);
  CHECK_CONTAINS(m, want);

  // Values that are not scalars or lists of scalars; keys given twice; not a mapping.
  m = error_of("nested_list.yaml", "model_name_or_path: m\nlora_target:\n  - q_proj\n  - [a, b]\n",
               NULL);
  snprintf(want, sizeof want, "%s/nested_list.yaml:4:5: 'lora_target'", dir);
  CHECK_CONTAINS(m, want);
  m = error_of("dup.yaml", "model_name_or_path: m\nseed: 1\nlora_rank: 2\nseed: 3\n", NULL);
  snprintf(want, sizeof want, "%s/dup.yaml:4:1: duplicate key 'seed' (first given at line 2", dir);
  CHECK_CONTAINS(m, want);
  m = error_of("dup_flat.yaml", "compressor.kind: icae\ncompressor:\n  kind: 500x\n", NULL);
  CHECK_CONTAINS(m, "dup_flat.yaml:3:3: duplicate key 'compressor.kind'");
  m = error_of("list.yaml", "- a\n- b\n", NULL);
  CHECK_CONTAINS(m, "list.yaml:1:1: a run config is a mapping");
  m = error_of("two_docs.yaml", "seed: 1\n---\nseed: 2\n", NULL);
  CHECK_CONTAINS(m, "two_docs.yaml:3:1: a second YAML document");
  m = error_of("cycle.yaml", "a: &x\n  b: *x\n", NULL);
  CHECK_CONTAINS(m, "cycle.yaml:");
  m = error_of("nul.yaml", "run_name: \"a\\0b\"\n", NULL);
  CHECK_CONTAINS(m, "nul.yaml:1:11: a value holds a NUL character");

  // Unknown keys, with a suggestion when one is close.
  m = error_of("typo.yaml", "model_name_or_path: m\nlearning_rte: 1e-4\n", NULL);
  snprintf(want, sizeof want, "%s/typo.yaml:2:1: unknown key 'learning_rte'", dir);
  CHECK_CONTAINS(m, want);
  CHECK_CONTAINS(m, "did you mean learning_rate?");
  m = error_of("typo2.yaml", "model_name_or_path: m\n", "lora_rnak=4");
  CHECK_CONTAINS(m, "command line: unknown key 'lora_rnak' (did you mean lora_rank?)");
  m = error_of("typo3.yaml", "model_name_or_path: m\ncompressor: {kidn: icae}\n", NULL);
  CHECK_CONTAINS(m, "unknown key 'compressor.kidn' (did you mean compressor.kind?)");
  m = error_of("far.yaml", "model_name_or_path: m\ntotally_unrelated: 1\n", NULL);
  CHECK_CONTAINS(m, "unknown key 'totally_unrelated'");
  CHECK(strstr(m, "did you mean") == NULL);

  // Values that do not parse: key, value and where.
  m = error_of("nan_int.yaml", "model_name_or_path: m\nper_device_train_batch_size: eight\n", NULL);
  snprintf(want, sizeof want,
           "%s/nan_int.yaml:2:30: per_device_train_batch_size: 'eight' is not an integer", dir);
  CHECK_CONTAINS(m, want);
  m = error_of("frac_int.yaml", "model_name_or_path: m\n", "warmup_steps=1.5");
  CHECK_CONTAINS(m, "command line: warmup_steps: '1.5' is not an integer");
  m = error_of("hex_int.yaml", "model_name_or_path: m\n", "seed=0x10");
  CHECK_CONTAINS(m, "seed: '0x10' is not an integer");
  m = error_of("big_int.yaml", "model_name_or_path: m\n", "seed=1e30");
  CHECK_CONTAINS(m, "seed: '1e30' is not an integer");
  m = error_of("empty_int.yaml", "model_name_or_path: m\nseed:\n", NULL);
  CHECK_CONTAINS(m, "seed: '' is not an integer");
  m = error_of("bad_float.yaml", "model_name_or_path: m\nlearning_rate: 1e-4x\n", NULL);
  CHECK_CONTAINS(m, "learning_rate: '1e-4x' is not a number");
  m = error_of("bad_bool.yaml", "model_name_or_path: m\nbf16: maybe\n", NULL);
  CHECK_CONTAINS(m, "bf16: 'maybe' is not a bool");
  m = error_of("list_int.yaml", "model_name_or_path: m\nseed: [1, 2]\n", NULL);
  CHECK_CONTAINS(m, "seed: '1,2' is not an integer");

  // Missing required key; assignment without '='; missing file.
  m = error_of("empty.yaml", "", NULL);
  CHECK_CONTAINS(m, "missing required key 'model_name_or_path'");
  CHECK_CONTAINS(m, "model_name_or_path=VALUE");
  m = error_of("noeq.yaml", "model_name_or_path: m\n", "learning_rate");
  CHECK_CONTAINS(m, "'learning_rate': expected key=value");
  m = error_of("noeq2.yaml", "model_name_or_path: m\n", "=3");
  CHECK_CONTAINS(m, "empty key");
  pith_err err = {{0}};
  run_config *c = run_config_new();
  CHECK(run_config_load(c, "/nonexistent/pith.yaml", &err) == -1);
  CHECK_CONTAINS(err.msg, "/nonexistent/pith.yaml");
  CHECK(run_config_set(c, "run_name=\xff\xfe", &err) == -1);
  CHECK_CONTAINS(err.msg, "not valid UTF-8");

  // A schema whose default does not parse is the driver's bug, and says so.
  static const rc_key bad_schema[] = {{"seed", RC_INT, "forty-two", NULL, "any"}};
  CHECK(run_config_resolve(c, bad_schema, 1, &err) == -1);
  CHECK_CONTAINS(err.msg, "default of 'seed' ('forty-two') is not an integer");
  // Keys longer than YAML's limit as they would be written back (dotted nesting, escapes) are
  // refused where they come in: a saved config must load again (found by fuzz_yaml).
  char long_yaml[1400] = "", long_set[1400] = "";
  for (int i = 0; i < 3; i++) snprintf(long_yaml + strlen(long_yaml), 400, "%*s%0300d:\n", 2 * i, "", i);
  snprintf(long_yaml + strlen(long_yaml), 400, "%*s%0300d: 1\n", 6, "", 3);
  CHECK(run_config_load(c, write_file("long_key.yaml", long_yaml), &err) == -1);
  CHECK_CONTAINS(err.msg, "long_key.yaml:4:7: the key '");
  CHECK_CONTAINS(err.msg, "is longer than 1024 characters (YAML's limit)");
  memset(long_set, '"', 600);
  strcpy(long_set + 600, "=1");
  CHECK(run_config_set(c, long_set, &err) == -1);  // 600 quotes, written as 1200 characters
  CHECK_CONTAINS(err.msg, "command line: the key");
  static const rc_key twice[] = {{"seed", RC_INT, "1", NULL, "any"}, {"seed", RC_INT, "2", NULL, "any"}};
  CHECK(run_config_resolve(c, twice, 2, &err) == -1);
  CHECK_CONTAINS(err.msg, "listed twice");
  run_config_free(c);
}

// Allowed values: enumerations and ranges are refused at resolve with what is allowed, a file's
// value is checked even when the command line overrides it, and a schema that leaves a numeric
// key unchecked is the driver's bug.
static void test_allowed(void) {
  pith_err err = {{0}};
  static const struct {
    const char *assign, *want;
  } bad[] = {
      {"lr_scheduler_type=cosinus", "lr_scheduler_type: 'cosinus' is not one of linear, cosine, constant"},
      {"learning_rate=-1", "learning_rate: -1.0 is out of range (allowed: (0,inf))"},
      {"learning_rate=0", "learning_rate: 0.0 is out of range"},
      {"learning_rate=nan", "learning_rate: .nan is out of range"},
      {"warmup_steps=-5", "warmup_steps: -5 is out of range (allowed: [0,inf))"},
      {"max_steps=0", "max_steps: 0 is out of range (allowed: -1 or [1,inf))"},
      {"max_steps=-2", "max_steps: -2 is out of range"},
      {"lora_dropout=1", "lora_dropout: 1.0 is out of range (allowed: [0,1))"},
      {"per_device_train_batch_size=0", "per_device_train_batch_size: 0 is out of range"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    run_config *c = run_config_new();
    CHECK(run_config_set(c, "model_name_or_path=m", &err) == 0);
    CHECK(run_config_set(c, bad[i].assign, &err) == 0);
    CHECK_MSG(run_config_resolve(c, schema, n_schema, &err) == -1, "%s was accepted", bad[i].assign);
    CHECK_CONTAINS(err.msg, bad[i].want);
    CHECK_CONTAINS(err.msg, "command line");
    run_config_free(c);
  }
  static const char *good[] = {"max_steps=-1", "max_steps=1", "lr_scheduler_type=linear", "lora_dropout=0",
                               "learning_rate=1e-9", "seed=-3"};
  for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
    run_config *c = run_config_new();
    CHECK(run_config_set(c, "model_name_or_path=m", &err) == 0);
    CHECK(run_config_set(c, good[i], &err) == 0);
    CHECK_MSG(run_config_resolve(c, schema, n_schema, &err) == 0, "%s: %s", good[i], err.msg);
    run_config_free(c);
  }

  // A bad value in the file is reported with its place even when the command line overrides it,
  // whichever comes first.
  const char *path = write_file("allowed.yaml", "model_name_or_path: m\nlearning_rate: -1\nwarmup_steps: 3\n");
  for (int order = 0; order < 2; order++) {
    run_config *c = run_config_new();
    if (order == 0) CHECK(run_config_load(c, path, &err) == 0);
    CHECK(run_config_set(c, "learning_rate=3e-4", &err) == 0);
    if (order == 1) CHECK(run_config_load(c, path, &err) == 0);
    CHECK(run_config_resolve(c, schema, n_schema, &err) == -1);
    CHECK_CONTAINS(err.msg, "allowed.yaml:2:16: learning_rate: -1.0 is out of range");
    CHECK_CONTAINS(err.msg, "the command line overrides it");
    run_config_free(c);
  }
  // The same file with a good value overridden resolves to the command line's value.
  const char *fine = write_file("allowed_ok.yaml", "model_name_or_path: m\nlearning_rate: 1e-3\n");
  run_config *c = run_config_new();
  CHECK(run_config_load(c, fine, &err) == 0);
  CHECK(run_config_set(c, "learning_rate=3e-4", &err) == 0);
  CHECK_MSG(run_config_resolve(c, schema, n_schema, &err) == 0, "%s", err.msg);
  CHECK(run_config_float(c, "learning_rate") == 3e-4);

  // Schema bugs.
  static const rc_key unchecked[] = {{"steps", RC_INT, "1", NULL, NULL}};
  CHECK(run_config_resolve(c, unchecked, 1, &err) == -1);
  CHECK_CONTAINS(err.msg, "numeric key 'steps' has no allowed range");
  static const rc_key garbled[] = {{"steps", RC_INT, "1", NULL, "[1,inf"}};
  CHECK(run_config_resolve(c, garbled, 1, &err) == -1);
  CHECK_CONTAINS(err.msg, "allowed list '[1,inf' does not parse");
  static const rc_key outside[] = {{"steps", RC_INT, "0", NULL, "[1,inf)"}};
  CHECK(run_config_resolve(c, outside, 1, &err) == -1);
  CHECK_CONTAINS(err.msg, "default of 'steps' ('0') is not among its allowed values");
  static const rc_key bad_name[] = {{"kind", RC_STRING, "a", NULL, "b|c"}};
  CHECK(run_config_resolve(c, bad_name, 1, &err) == -1);
  CHECK_CONTAINS(err.msg, "default of 'kind'");
  run_config_free(c);
}

static void test_print_schema(void) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  CHECK(f != NULL);
  run_config_print_schema(f, schema, n_schema);
  fclose(f);
  CHECK_CONTAINS(buf, "learning_rate");
  CHECK_CONTAINS(buf, "peak learning rate");
  CHECK_CONTAINS(buf, "(required)");
  CHECK_CONTAINS(buf, "1e-4");
  CHECK_CONTAINS(buf, "float");
  CHECK_CONTAINS(buf, "\"\"");  // an empty default shows as ""
  CHECK_CONTAINS(buf, "[linear|cosine|constant]");  // the allowed values
  CHECK_CONTAINS(buf, "[-1|[1,inf)]");
  int lines = 0;
  for (char *p = buf; p && *p; p++) lines += *p == '\n';
  CHECK(lines == n_schema);
  free(buf);
}

// Asking for a key the schema lacks, or with the wrong type, is the caller's bug: it aborts.
static int aborts(int which) {
  pid_t pid = fork();
  if (pid == 0) {
    freopen("/dev/null", "w", stderr);
    pith_err err = {{0}};
    run_config *c = run_config_new();
    run_config_set(c, "model_name_or_path=m", &err);
    if (which != 2) run_config_resolve(c, schema, n_schema, &err);
    if (which == 0) run_config_int(c, "no_such_key");
    if (which == 1) run_config_int(c, "learning_rate");  // a float key
    if (which == 2) run_config_str(c, "seed");           // not resolved
    if (which == 3) run_config_bool(c, "bf16");          // fine: exits 0
    _exit(0);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  return WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT;
}

static void test_getter_misuse(void) {
  CHECK(aborts(0));
  CHECK(aborts(1));
  CHECK(aborts(2));
  CHECK(!aborts(3));
}

int main(void) {
  CHECK(mkdtemp(dir) != NULL);
  test_load_and_resolve();
  test_layers();
  test_round_trip();
  test_round_trip_strings();
  test_yaml_forms();
  test_yaml_errors();
  test_errors();
  test_allowed();
  test_print_schema();
  test_getter_misuse();
  for (int i = 0; i < n_files; i++) unlink(files[i]);
  rmdir(dir);
  return check_done("test_run_config");
}
