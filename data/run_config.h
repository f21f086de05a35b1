// run_config: the run configs of the training drivers. A run is described by a YAML file
// (configs/*.yaml) whose keys follow Hugging Face TrainingArguments / LLaMA-Factory names
// (learning_rate, per_device_train_batch_size, lora_rank, lora_target, ...), overridden by
// `key=value` arguments on the command line, checked against the driver's schema, and saved
// resolved (every schema key, its final value) as runs/NAME/config.yaml.
//
//   run_config *c = run_config_new();
//   run_config_load(c, "configs/tiny.yaml", &err);        // file values (as text)
//   run_config_set(c, "learning_rate=3e-4", &err);         // overrides; win over every file
//   run_config_resolve(c, schema, n, &err);                // types, defaults, unknown keys
//   int64_t bs = run_config_int(c, "per_device_train_batch_size");
//   run_config_save(c, "runs/x/config.yaml", &err);        // reads back to the same values
//
// Values are kept as text until resolve, which parses each by its schema type:
//   RC_INT    decimal ("8", "-3"), or any float form that is integral ("1e4", "2.0")
//   RC_FLOAT  anything strtod reads ("3e-4", "0.1", "inf"), plus YAML's ".inf" / ".nan"
//   RC_BOOL   true/false, yes/no, on/off, 1/0 (any letter case)
//   RC_STRING the text as written; a plain YAML null (`key:`, `key: ~`, `key: null`) is ""
// The YAML file is a mapping of scalars. Nested mappings flatten to dotted keys
// ("model: {name: x}" is the key "model.name"); a list of scalars joins with "," ("lora_target:
// [q_proj, v_proj]" reads as "q_proj,v_proj", the same text one writes on the command line).
//
// The YAML is read by run_config's own parser of the subset configs use, read as YAML 1.1 reads
// it (PyYAML, libyaml): block mappings, nested ones, block lists (`- x` lines) and flow lists
// (`[a, b]`) of scalars, flow mappings (`{a: 1}`); plain, 'single-quoted' ('' is a quote) and
// "double-quoted" scalars with every YAML escape (\\ \" \n \t \r \xXX \uXXXX \UXXXXXXXX \N \L \P
// \_ \0 \a \b \e \f \v \/ \<space>, and an escaped line break), literal | and folded > block
// scalars with their chomping and indentation indicators, multi-line plain and quoted scalars
// (folded as YAML folds them); comments; `---` / `...` markers and a %YAML directive. Refused
// with an error naming path:line:column: anchors and aliases, tags, `? key` entries, other
// directives, a second document, tabs where YAML wants indentation spaces, bytes that are not
// UTF-8 or are control characters, raw U+0085/U+2028/U+2029 (their escapes are fine).
#ifndef PITH_RUN_CONFIG_H
#define PITH_RUN_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "base.h"

typedef enum { RC_INT, RC_FLOAT, RC_BOOL, RC_STRING } rc_type;

// One key of a driver's schema. def is the default as text, parsed like a value (NULL: the key
// is required). The schema array is copied by resolve; it need not outlive the call.
//
// allowed: the values the key takes, checked by resolve before anything runs; '|' separates
// alternatives.
//   RC_STRING  the names it takes ("constant|cosine|linear"), or NULL for free text (paths).
//   RC_INT, RC_FLOAT  intervals and single values: "[1,inf)", "(0,1]", "-1|[1,inf)"; "any" for no
//              limit. Required: resolve refuses a numeric key without it, so that a new key cannot
//              skip validation.
//   RC_BOOL    NULL.
typedef struct {
  const char *key;
  rc_type type;
  const char *def;
  const char *help;
  const char *allowed;
} rc_key;

typedef struct run_config run_config;

run_config *run_config_new(void);   // NULL only when out of memory
void run_config_free(run_config *c);

// Read a YAML file into c. Errors name "path:line:column" for bad YAML, a value that is neither
// a scalar nor a list of scalars, a key given twice in the file. A key already set from another
// file is replaced (the later file wins); a key set on the command line is kept.
int run_config_load(run_config *c, const char *path, pith_err *err);

// The values as given, without a schema (any time; resolve not needed): for readers of a saved
// config.yaml, such as export. run_config_get_raw gives the text of key (nested keys dotted,
// lists joined with ",", a YAML null as ""), or NULL when it was not given. run_config_raw_count
// and run_config_raw_at list every key in the order first given; raw_at returns the key (NULL
// when i is out of range) and sets *val (when val is not NULL). The pointers live until that
// key is set again (run_config_set, a later load) or c is freed.
const char *run_config_get_raw(const run_config *c, const char *key);
int run_config_raw_count(const run_config *c);
const char *run_config_raw_at(const run_config *c, int i, const char **val);

// One "key=value" from the command line (split at the first '='; the value may be empty). Later
// assignments win, and they win over files whenever those are loaded. Error when there is no '='
// or the key is empty.
int run_config_set(run_config *c, const char *assignment, pith_err *err);

// Check the values against a schema and parse them. Errors: a key not in the schema (with "did
// you mean KEY?" when one is close), a value that does not parse as its type or is not among its
// allowed values (names the key, the value, where it came from, and what is allowed) — a file's
// value that the command line overrides is checked too —, a missing required key, a schema
// default or allowed list that does not parse or does not agree (a bug in the driver).
// After success the getters never fail for schema keys. Resolve may be called again (after more
// run_config_set, say); values set after it count only then.
int run_config_resolve(run_config *c, const rc_key *schema, int n_keys, pith_err *err);

// Getters, valid after a successful resolve. Asking for a key that is not in the schema, or for
// the wrong type, is a bug in the caller: it prints the key to stderr and aborts. run_config_float
// also reads RC_INT keys; run_config_str reads any key (its canonical text: "8", "0.0003",
// "true"), and the pointer lives until the next resolve or free.
int64_t run_config_int(const run_config *c, const char *key);
double run_config_float(const run_config *c, const char *key);
int run_config_bool(const run_config *c, const char *key);
const char *run_config_str(const run_config *c, const char *key);

// The resolved config as YAML text (malloc'd; the caller frees): a comment line saying what it
// is, then "key: value" per schema key in schema order; strings are double-quoted whenever a
// plain scalar could read back differently, so load + resolve gives identical values (byte for
// byte, for every UTF-8 string without a NUL). Before any resolve it lists the raw values as
// text, in the order they were first set. NULL when out of memory.
char *run_config_yaml(const run_config *c);
// run_config_yaml written atomically to path (temp file, fsync, rename).
int run_config_save(const run_config *c, const char *path, pith_err *err);

// The schema as a help listing for `pith CMD --help`: key, type, default ("required" when none),
// help, one key per line in schema order.
void run_config_print_schema(FILE *out, const rc_key *schema, int n_keys);

#endif
