// run_config: YAML run configs with command-line overrides, checked against a schema.
// See run_config.h. Values are text until resolve. The YAML is read by a small parser of the
// subset run configs use (below, "load"); nothing outside this file is needed.
#include "run_config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "strbuf.h"
#include "utf8.h"
#include "yaml.h"

#define RC_MAX_DEPTH 32        // nesting of mappings
#define RC_MAX_ENTRIES 10000   // keys of one file
#define RC_FORMAT_VERSION 1    // of the saved file (the header comment says it)

// One key as given: by a file or on the command line.
typedef struct {
  char *key;
  char *val;
  char *kwhere;   // where the key was written: "path:line:col" or "command line"
  char *vwhere;   // where the value was written
  int cli;        // set by run_config_set: no file replaces it
  size_t kline, kcol;  // of the key in its file (1-based; 0 on the command line)
} rc_entry;

typedef struct {
  rc_entry *e;
  int n, cap;
} rc_list;

// One schema key after resolve.
typedef struct {
  char *key;
  rc_type type;
  int64_t i;
  double f;
  int b;
  char *text;     // canonical text: what run_config_str and the saved file give
} rc_value;

struct run_config {
  rc_list in;       // every key given, in the order first given
  rc_list shadowed; // files' values that the command line overrides: still checked by resolve
  rc_value *v;      // resolved schema keys, in schema order
  int nv;
  int resolved;
  char *files;      // files loaded, ", "-separated (for the saved file's header)
  int n_sets;       // command-line assignments
};

// ---- small helpers ----

static char *rc_strndup(const char *s, size_t n) {
  char *d = malloc(n + 1);
  if (!d) return NULL;
  memcpy(d, s, n);
  d[n] = 0;
  return d;
}

static char *rc_strdup(const char *s) { return rc_strndup(s, strlen(s)); }

static int streq_nocase(const char *a, const char *b) {
  for (; *a && *b; a++, b++)
    if (tolower((unsigned char)*a) != tolower((unsigned char)*b)) return 0;
  return *a == *b;
}

static const char *type_name(rc_type t) {
  switch (t) {
    case RC_INT: return "int";
    case RC_FLOAT: return "float";
    case RC_BOOL: return "bool";
    case RC_STRING: return "string";
  }
  return "?";
}

// ---- the entry list ----

static void entry_free(rc_entry *e) {
  free(e->key);
  free(e->val);
  free(e->kwhere);
  free(e->vwhere);
}

static void list_free(rc_list *l) {
  for (int i = 0; i < l->n; i++) entry_free(&l->e[i]);
  free(l->e);
  l->e = NULL;
  l->n = l->cap = 0;
}

static rc_entry *list_find(const rc_list *l, const char *key) {
  for (int i = 0; i < l->n; i++)
    if (strcmp(l->e[i].key, key) == 0) return &l->e[i];
  return NULL;
}

// Append an entry, taking ownership of the strings (freed here on failure).
static int list_push(rc_list *l, char *key, char *val, char *kwhere, char *vwhere, int cli) {
  rc_entry e = {key, val, kwhere, vwhere, cli, 0, 0};
  if (!key || !val || !kwhere || !vwhere) {
    entry_free(&e);
    return -1;
  }
  if (l->n == l->cap) {
    int cap = l->cap ? l->cap * 2 : 32;
    rc_entry *p = realloc(l->e, (size_t)cap * sizeof *p);
    if (!p) {
      entry_free(&e);
      return -1;
    }
    l->e = p;
    l->cap = cap;
  }
  l->e[l->n++] = e;
  return 0;
}

static void put_scalar(strbuf *b, const char *s);

// Whether key, written back as run_config_yaml writes it, stays within YAML's key limit (a longer
// one would be written but not read back: dotted keys of nested mappings, escapes, can get there).
static int key_fits(const char *key) {
  strbuf b = STRBUF_INIT;
  put_scalar(&b, key);
  size_t chars = 0;
  for (const char *p = b.p; p && *p; p++) chars += ((unsigned char)*p & 0xC0) != 0x80;
  int fits = strbuf_ok(&b) && chars <= YAML_MAX_KEY_CHARS;
  strbuf_free(&b);
  return fits;
}

// Keep a file's entry that the command line overrides (taking its strings), so that resolve can
// still report a bad value in the file. Out of memory, it is dropped: only a check is lost.
static void shadow(run_config *c, rc_entry *e) {
  rc_entry *old = list_find(&c->shadowed, e->key);
  if (old) {
    entry_free(old);
    *old = *e;
  } else {
    list_push(&c->shadowed, e->key, e->val, e->kwhere, e->vwhere, 0);  // frees them when out of memory
  }
  *e = (rc_entry){0};
}

// ---- new / free ----

static void values_free(run_config *c) {
  for (int i = 0; i < c->nv; i++) {
    free(c->v[i].key);
    free(c->v[i].text);
  }
  free(c->v);
  c->v = NULL;
  c->nv = 0;
  c->resolved = 0;
}

run_config *run_config_new(void) { return calloc(1, sizeof(run_config)); }

void run_config_free(run_config *c) {
  if (!c) return;
  list_free(&c->in);
  list_free(&c->shadowed);
  values_free(c);
  free(c->files);
  free(c);
}

static const char *node_kind(const ynode *n) {
  switch (n->kind) {
    case YN_MAP: return "a mapping";
    case YN_LIST: return "a list";
    default: return "a scalar";
  }
}

// A plain `key:`, `key: ~`, `key: null` has no value: it reads as the empty string.
static int scalar_is_null(const ynode *n) {
  if (!n->plain) return 0;
  const char *s = n->text;
  return n->len == 0 || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 || strcmp(s, "Null") == 0 ||
         strcmp(s, "NULL") == 0;
}

// Text of a scalar node (malloc'd), or NULL with err set when it holds a NUL ("\0" escape).
static char *scalar_text(const char *path, const ynode *n, const char *what, pith_err *err) {
  if (strlen(n->text) != n->len) {
    pith_fail(err, "%s:%zu:%zu: %s holds a NUL character", path, n->line, n->col, what);
    return NULL;
  }
  char *t = scalar_is_null(n) ? rc_strdup("") : rc_strndup(n->text, n->len);
  if (!t) pith_fail(err, "%s: out of memory", path);
  return t;
}

static char *where(const char *path, size_t line, size_t col) {
  char buf[64];
  snprintf(buf, sizeof buf, ":%zu:%zu", line, col);
  size_t n = strlen(path), k = strlen(buf);
  char *s = malloc(n + k + 1);
  if (!s) return NULL;
  memcpy(s, path, n);
  memcpy(s + n, buf, k + 1);
  return s;
}

typedef struct {
  const char *path;
  rc_list out;
} flat_ctx;

static int flatten(flat_ctx *x, const ynode *map, const char *prefix, int depth, pith_err *err) {
  const char *path = x->path;
  if (depth > RC_MAX_DEPTH)
    return pith_fail(err, "%s:%zu:%zu: mappings nested more than %d deep", path, map->line,
                     map->col, RC_MAX_DEPTH);
  for (int i = 0; i + 1 < map->n; i += 2) {
    const ynode *k = map->kids[i], *v = map->kids[i + 1];
    if (k->kind != YN_SCALAR)
      return pith_fail(err, "%s:%zu:%zu: a key must be a scalar, found %s", path, k->line, k->col,
                       node_kind(k));
    char *kt = scalar_text(path, k, "a key", err);
    if (!kt) return -1;
    if (!*kt) {
      free(kt);
      return pith_fail(err, "%s:%zu:%zu: empty key", path, k->line, k->col);
    }
    char *full = kt;
    if (prefix) {
      size_t np = strlen(prefix), nk = strlen(kt);
      full = malloc(np + 1 + nk + 1);
      if (full) {
        memcpy(full, prefix, np);
        full[np] = '.';
        memcpy(full + np + 1, kt, nk + 1);
      }
      free(kt);
      if (!full) return pith_fail(err, "%s: out of memory", path);
    }

    if (!key_fits(full)) {
      int rc = pith_fail(err, "%s:%zu:%zu: the key '%.40s...' is longer than %d characters (YAML's limit)", path,
                         k->line, k->col, full, YAML_MAX_KEY_CHARS);
      free(full);
      return rc;
    }
    if (v->kind == YN_MAP) {
      int rc = flatten(x, v, full, depth + 1, err);
      free(full);
      if (rc) return rc;
      continue;
    }

    rc_entry *dup = list_find(&x->out, full);
    if (dup) {
      int rc = pith_fail(err,
                         "%s:%zu:%zu: duplicate key '%s' (first given at line %zu, column %zu)",
                         path, k->line, k->col, full, dup->kline, dup->kcol);
      free(full);
      return rc;
    }
    if (x->out.n >= RC_MAX_ENTRIES) {
      free(full);
      return pith_fail(err, "%s: more than %d keys", path, RC_MAX_ENTRIES);
    }

    char *val = NULL;
    if (v->kind == YN_SCALAR) {
      val = scalar_text(path, v, "a value", err);
      if (!val) {
        free(full);
        return -1;
      }
    } else {  // a list of scalars joins with ","
      strbuf b = {0};
      strbuf_adds(&b, "");
      for (int j = 0; j < v->n; j++) {
        const ynode *item = v->kids[j];
        if (item->kind != YN_SCALAR) {
          free(b.p);
          int rc = pith_fail(err,
                             "%s:%zu:%zu: '%s': a list in a run config holds only scalars, found "
                             "%s",
                             path, item->line, item->col, full, node_kind(item));
          free(full);
          return rc;
        }
        char *t = scalar_text(path, item, "a list item", err);
        if (!t) {
          free(b.p);
          free(full);
          return -1;
        }
        if (j) strbuf_adds(&b, ",");
        strbuf_adds(&b, t);
        free(t);
      }
      if (b.oom) {
        free(b.p);
        free(full);
        return pith_fail(err, "%s: out of memory", path);
      }
      val = b.p;
    }
    if (list_push(&x->out, full, val, where(path, k->line, k->col), where(path, v->line, v->col),
                  0))
      return pith_fail(err, "%s: out of memory", path);
    x->out.e[x->out.n - 1].kline = k->line;
    x->out.e[x->out.n - 1].kcol = k->col;
  }
  return 0;
}

// Parse the text (checked, '\n' line breaks) into entries: one document, a mapping at its root.
static int parse_config(const char *path, const char *text, size_t len, rc_list *out,
                        pith_err *err) {
  yparser p = {.path = path, .s = text, .len = len, .err = err};
  if (len >= 3 && yaml_at_bom(&p)) p.s += 3, p.len -= 3;  // a byte-order mark is not content
  ynode *root = NULL;
  int got = yaml_next_document(&p, 1, &root);
  if (got < 0) return -1;
  if (got == 0) return 0;  // an empty file is an empty config
  flat_ctx x = {path, {0}};
  int rc = 0;
  if (root->kind != YN_MAP)
    rc = pith_fail(err, "%s:%zu:%zu: a run config is a mapping of key: value, found %s", path,
                   root->line, root->col, node_kind(root));
  else
    rc = flatten(&x, root, NULL, 0, err);
  yn_free(root);
  if (rc == 0) {  // one document per file
    ynode *more = NULL;
    got = yaml_next_document(&p, 0, &more);
    if (got < 0) rc = -1;
    else if (got > 0)
      rc = pith_fail(err, "%s:%zu:%zu: a second YAML document; a run config is one mapping", path,
                     more->line, more->col);
    yn_free(more);
  }
  if (rc) list_free(&x.out);
  else *out = x.out;
  return rc;
}

int run_config_load(run_config *c, const char *path, pith_err *err) {
  size_t len = 0;
  char *text = pith_read_file(path, &len, err);
  if (!text) return -1;
  flat_ctx x = {path, {0}};
  int rc = yaml_check_text(path, text, &len, err);
  if (rc == 0) rc = parse_config(path, text, len, &x.out, err);
  free(text);

  // Merge: the file's keys replace those of earlier files, never those of the command line.
  // Every allocation happens before c changes, so a failure leaves c as it was.
  if (rc == 0) {
    size_t grow = (size_t)c->in.n + (size_t)x.out.n;
    if ((size_t)c->in.cap < grow) {
      rc_entry *p = realloc(c->in.e, grow * sizeof *p);
      if (!p) rc = pith_fail(err, "%s: out of memory", path);
      else c->in.e = p, c->in.cap = (int)grow;
    }
  }
  char *files = NULL;
  if (rc == 0) {
    size_t nf = c->files ? strlen(c->files) : 0, np = strlen(path);
    files = malloc(nf + 2 + np + 1);
    if (!files) {
      rc = pith_fail(err, "%s: out of memory", path);
    } else {
      char *w = files;
      if (nf) memcpy(w, c->files, nf), w += nf, *w++ = ',', *w++ = ' ';
      memcpy(w, path, np + 1);
      for (char *q = files; *q; q++)   // the header comment must stay one line
        if ((unsigned char)*q < 0x20 || *q == 0x7f) *q = '?';
    }
  }
  if (rc == 0) {
    for (int i = 0; i < x.out.n; i++) {
      rc_entry *e = &x.out.e[i];
      rc_entry *old = list_find(&c->in, e->key);
      if (old && old->cli) {
        shadow(c, e);
      } else if (old) {
        entry_free(old);
        *old = *e;
      } else {
        c->in.e[c->in.n++] = *e;
      }
    }
    free(x.out.e);
    x.out.e = NULL;
    x.out.n = 0;
    free(c->files);
    c->files = files;
  }
  list_free(&x.out);
  return rc;
}

int run_config_raw_count(const run_config *c) { return c ? c->in.n : 0; }

const char *run_config_raw_at(const run_config *c, int i, const char **val) {
  if (!c || i < 0 || i >= c->in.n) return NULL;
  if (val) *val = c->in.e[i].val;
  return c->in.e[i].key;
}

const char *run_config_get_raw(const run_config *c, const char *key) {
  const rc_entry *e = c && key ? list_find(&c->in, key) : NULL;
  return e ? e->val : NULL;
}

// ---- set ----

int run_config_set(run_config *c, const char *assignment, pith_err *err) {
  const char *eq = strchr(assignment, '=');
  if (!eq)
    return pith_fail(err,
                     "command line: '%s': expected key=value (e.g. learning_rate=3e-4)",
                     assignment);
  const char *k0 = assignment, *k1 = eq;
  while (k0 < k1 && isspace((unsigned char)*k0)) k0++;
  while (k1 > k0 && isspace((unsigned char)k1[-1])) k1--;
  if (k0 == k1) return pith_fail(err, "command line: '%s': empty key before '='", assignment);
  if (!utf8_valid(assignment, strlen(assignment)))
    return pith_fail(err, "command line: '%s': not valid UTF-8", assignment);

  char *key = rc_strndup(k0, (size_t)(k1 - k0));
  if (key && !key_fits(key)) {
    free(key);
    return pith_fail(err, "command line: the key '%.40s...' is longer than %d characters (YAML's limit)", k0,
                     YAML_MAX_KEY_CHARS);
  }
  char *val = rc_strdup(eq + 1);
  char *kw = rc_strdup("command line"), *vw = rc_strdup("command line");
  if (!key || !val || !kw || !vw) {
    free(key), free(val), free(kw), free(vw);
    return pith_fail(err, "command line: out of memory");
  }
  rc_entry *old = list_find(&c->in, key);
  if (old) {
    if (old->cli) entry_free(old);
    else shadow(c, old);
    *old = (rc_entry){key, val, kw, vw, 1, 0, 0};
  } else if (list_push(&c->in, key, val, kw, vw, 1)) {
    return pith_fail(err, "command line: out of memory");
  }
  c->n_sets++;
  return 0;
}

// ---- parsing values ----

static int only_space(const char *s) {
  while (*s && isspace((unsigned char)*s)) s++;
  return *s == 0;
}

// Decimal, or an integral number in float form ("1e4", "2.0"); nothing else (no hex).
static int parse_int(const char *s, int64_t *out) {
  while (isspace((unsigned char)*s)) s++;
  if (!*s) return -1;
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (end != s && only_space(end)) {
    if (errno == ERANGE) return -1;
    *out = (int64_t)v;
    return 0;
  }
  for (const char *p = s; *p && !isspace((unsigned char)*p); p++)
    if (!isdigit((unsigned char)*p) && !strchr("+-.eE", *p)) return -1;
  errno = 0;
  double d = strtod(s, &end);
  if (end == s || !only_space(end)) return -1;
  if (!isfinite(d) || d != floor(d) || d < -9223372036854775808.0 || d >= 9223372036854775808.0)
    return -1;
  *out = (int64_t)d;
  return 0;
}

static int parse_float(const char *s, double *out) {
  while (isspace((unsigned char)*s)) s++;
  if (!*s) return -1;
  // YAML's spellings, which run_config_yaml writes.
  const char *t = s;
  double sign = 1;
  if (*t == '+' || *t == '-') sign = *t++ == '-' ? -1 : 1;
  if (strncmp(t, ".inf", 4) == 0 || strncmp(t, ".Inf", 4) == 0 || strncmp(t, ".INF", 4) == 0) {
    if (only_space(t + 4)) {
      *out = sign * INFINITY;
      return 0;
    }
  }
  if (t == s &&
      (strncmp(t, ".nan", 4) == 0 || strncmp(t, ".NaN", 4) == 0 || strncmp(t, ".NAN", 4) == 0)) {
    if (only_space(t + 4)) {
      *out = NAN;
      return 0;
    }
  }
  char *end;
  errno = 0;
  double d = strtod(s, &end);
  if (end == s || !only_space(end)) return -1;
  if (errno == ERANGE && isinf(d)) return -1;  // overflow; underflow to ~0 is fine
  *out = d;
  return 0;
}

static int parse_bool(const char *s, int *out) {
  static const char *yes[] = {"true", "yes", "on", "1"}, *no[] = {"false", "no", "off", "0"};
  while (isspace((unsigned char)*s)) s++;
  size_t n = strlen(s);
  while (n && isspace((unsigned char)s[n - 1])) n--;
  char w[8];
  if (n == 0 || n >= sizeof w) return -1;
  memcpy(w, s, n);
  w[n] = 0;
  for (int i = 0; i < 4; i++) {
    if (streq_nocase(w, yes[i])) return *out = 1, 0;
    if (streq_nocase(w, no[i])) return *out = 0, 0;
  }
  return -1;
}

// The shortest text that reads back as exactly d, always looking like a float ("2.0",
// "1.0e-05") so YAML readers elsewhere (PyYAML) type it as one too.
static void format_float(double d, char *buf, size_t size) {
  if (isnan(d)) {
    snprintf(buf, size, ".nan");
    return;
  }
  if (isinf(d)) {
    snprintf(buf, size, d < 0 ? "-.inf" : ".inf");
    return;
  }
  char tmp[40];
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(tmp, sizeof tmp, "%.*g", prec, d);
    if (strtod(tmp, NULL) == d) break;
  }
  if (!strchr(tmp, '.')) {
    char *e = strchr(tmp, 'e');
    if (e) {
      size_t head = (size_t)(e - tmp);
      snprintf(buf, size, "%.*s.0%s", (int)head, tmp, e);
      return;
    }
    snprintf(buf, size, "%s.0", tmp);
    return;
  }
  snprintf(buf, size, "%s", tmp);
}

// ---- resolve ----

// Edit distance with adjacent transpositions (optimal string alignment), ignoring case.
static int edit_distance(const char *a, const char *b) {
  size_t n = strlen(a), m = strlen(b);
  if (n > 128 || m > 128) return 1 << 20;
  int d[129][129];
  for (size_t i = 0; i <= n; i++) d[i][0] = (int)i;
  for (size_t j = 0; j <= m; j++) d[0][j] = (int)j;
  for (size_t i = 1; i <= n; i++) {
    for (size_t j = 1; j <= m; j++) {
      int ca = tolower((unsigned char)a[i - 1]), cb = tolower((unsigned char)b[j - 1]);
      int cost = ca != cb;
      int best = d[i - 1][j] + 1;
      if (d[i][j - 1] + 1 < best) best = d[i][j - 1] + 1;
      if (d[i - 1][j - 1] + cost < best) best = d[i - 1][j - 1] + cost;
      if (i > 1 && j > 1 && ca == tolower((unsigned char)b[j - 2]) &&
          tolower((unsigned char)a[i - 2]) == cb && d[i - 2][j - 2] + 1 < best)
        best = d[i - 2][j - 2] + 1;
      d[i][j] = best;
    }
  }
  return d[n][m];
}

static const char *closest_key(const char *key, const rc_key *schema, int n_keys) {
  size_t len = strlen(key);
  int limit = len <= 3 ? 1 : len <= 8 ? 2 : 3;
  const char *best = NULL;
  int best_d = limit + 1;
  for (int i = 0; i < n_keys; i++) {
    int d = edit_distance(key, schema[i].key);
    if (d < best_d) best_d = d, best = schema[i].key;
  }
  return best;
}

static int schema_find(const rc_key *schema, int n_keys, const char *key) {
  for (int i = 0; i < n_keys; i++)
    if (strcmp(schema[i].key, key) == 0) return i;
  return -1;
}

// Parse `text` as type t into v (and its canonical text). -1 when it does not parse.
static int value_parse(rc_value *v, rc_type t, const char *text) {
  char buf[64];
  const char *canon = buf;
  v->type = t;
  switch (t) {
    case RC_INT:
      if (parse_int(text, &v->i)) return -1;
      v->f = (double)v->i;
      snprintf(buf, sizeof buf, "%" PRId64, v->i);
      break;
    case RC_FLOAT:
      if (parse_float(text, &v->f)) return -1;
      format_float(v->f, buf, sizeof buf);
      break;
    case RC_BOOL:
      if (parse_bool(text, &v->b)) return -1;
      canon = v->b ? "true" : "false";
      break;
    case RC_STRING:
      canon = text;
      break;
    default:
      return -1;
  }
  v->text = rc_strdup(canon);
  return v->text ? 0 : -2;
}

static const char *type_phrase(rc_type t) {
  switch (t) {
    case RC_INT: return "an integer";
    case RC_FLOAT: return "a number";
    case RC_BOOL: return "a bool (true/false, yes/no, on/off, 1/0)";
    default: return "a string";
  }
}

// ---- allowed values ----

// One alternative of a numeric allowed list, n bytes at alt: "any", an interval "[a,b)" (bounds
// as strtod reads them, "inf" included) or a single value. 1 when x is in it, 0 when not, -1
// when it does not parse.
static int number_alt(const char *alt, size_t n, double x) {
  char buf[64], *end;
  if (n == 0 || n >= sizeof buf) return -1;
  memcpy(buf, alt, n);
  buf[n] = 0;
  if (strcmp(buf, "any") == 0) return 1;
  if (buf[0] != '[' && buf[0] != '(') {
    double v = strtod(buf, &end);
    return end == buf || *end ? -1 : x == v;
  }
  double lo = strtod(buf + 1, &end);
  if (end == buf + 1 || *end != ',') return -1;
  const char *p = end + 1;
  double hi = strtod(p, &end);
  if (end == p || (*end != ']' && *end != ')') || end[1]) return -1;
  int above = buf[0] == '[' ? x >= lo : x > lo;
  int below = *end == ']' ? x <= hi : x < hi;
  return above && below;
}

// Whether the parsed value v is among spec's alternatives: 1 yes, 0 no, -1 spec does not parse.
// check_all: parse every alternative even after a match (to validate a schema).
static int allowed_has(const char *spec, const rc_value *v, int check_all) {
  int found = 0;
  for (const char *a = spec;;) {
    const char *bar = strchr(a, '|');
    size_t n = bar ? (size_t)(bar - a) : strlen(a);
    int r = v->type == RC_STRING ? n > 0 && strlen(v->text) == n && strncmp(v->text, a, n) == 0
                                 : number_alt(a, n, v->f);
    if (r < 0) return -1;
    found |= r;
    if (found && !check_all) return 1;
    if (!bar) return found;
    a = bar + 1;
  }
}

// "one of a, b, c" for names; "-1 or [1,inf)" for numbers.
static void allowed_phrase(const char *spec, rc_type t, char *buf, size_t size) {
  size_t w = (size_t)snprintf(buf, size, "%s", t == RC_STRING ? "one of " : "");
  for (const char *p = spec; *p && w + 5 < size; p++) {
    if (*p == '|') w += (size_t)snprintf(buf + w, size - w, "%s", t == RC_STRING ? ", " : " or ");
    else buf[w++] = *p, buf[w] = 0;
  }
}

// Parse text as key s into v and check it against s->allowed: 0; -1 with err, which names
// `where` and the value; -2 out of memory. note: appended to the message ("" or why).
static int value_read(rc_value *v, const rc_key *s, const char *text, const char *where, const char *note,
                      pith_err *err) {
  int rc = value_parse(v, s->type, text);
  if (rc == -2) return -2;
  if (rc) return pith_fail(err, "%s: %s: '%s' is not %s%s", where, s->key, text, type_phrase(s->type), note);
  if (!s->allowed || allowed_has(s->allowed, v, 0) == 1) return 0;
  char phrase[512];
  allowed_phrase(s->allowed, s->type, phrase, sizeof phrase);
  if (s->type == RC_STRING) return pith_fail(err, "%s: %s: '%s' is not %s%s", where, s->key, text, phrase, note);
  return pith_fail(err, "%s: %s: %s is out of range (allowed: %s)%s", where, s->key, v->text, phrase, note);
}

// The schema itself: names, types, and allowed lists that parse and admit their default.
static int schema_check(const rc_key *schema, int n_keys, pith_err *err) {
  if (n_keys < 0 || (n_keys > 0 && !schema)) return pith_fail(err, "schema: no keys");
  for (int i = 0; i < n_keys; i++) {
    const rc_key *s = &schema[i];
    if (!s->key || !*s->key) return pith_fail(err, "schema: key %d has no name (a bug in the driver)", i);
    if (schema_find(schema, i, s->key) >= 0)
      return pith_fail(err, "schema: key '%s' listed twice (a bug in the driver)", s->key);
    if ((unsigned)s->type > RC_STRING)
      return pith_fail(err, "schema: key '%s' has an unknown type (a bug in the driver)", s->key);
    int numeric = s->type == RC_INT || s->type == RC_FLOAT;
    if (numeric && !s->allowed)
      return pith_fail(err, "schema: numeric key '%s' has no allowed range (a bug in the driver)", s->key);
    if (s->allowed && s->type == RC_BOOL)
      return pith_fail(err, "schema: bool key '%s' has an allowed list (a bug in the driver)", s->key);
    if (s->allowed) {  // the list parses (checked on a dummy value) and the default is in it
      rc_value probe = {0};
      probe.type = s->type;
      probe.text = (char *)"";
      if (allowed_has(s->allowed, &probe, 1) < 0)
        return pith_fail(err, "schema: key '%s': allowed list '%s' does not parse (a bug in the driver)", s->key,
                         s->allowed);
    }
    if (s->def) {
      rc_value v = {0};
      int rc = value_parse(&v, s->type, s->def), in = rc == 0 && (!s->allowed || allowed_has(s->allowed, &v, 0) == 1);
      free(v.text);
      if (rc == -2) return pith_fail(err, "run config: out of memory");
      if (rc)
        return pith_fail(err, "schema: the default of '%s' ('%s') is not %s (a bug in the driver)", s->key, s->def,
                         type_phrase(s->type));
      if (!in)
        return pith_fail(err, "schema: the default of '%s' ('%s') is not among its allowed values '%s' (a bug in the "
                              "driver)", s->key, s->def, s->allowed);
    }
  }
  return 0;
}

int run_config_resolve(run_config *c, const rc_key *schema, int n_keys, pith_err *err) {
  values_free(c);
  if (schema_check(schema, n_keys, err)) return -1;

  // Every key given must be in the schema.
  for (int i = 0; i < c->in.n; i++) {
    const rc_entry *e = &c->in.e[i];
    if (schema_find(schema, n_keys, e->key) >= 0) continue;
    const char *near = closest_key(e->key, schema, n_keys);
    if (near)
      return pith_fail(err, "%s: unknown key '%s' (did you mean %s?)", e->kwhere, e->key, near);
    return pith_fail(err, "%s: unknown key '%s' (--help lists the keys)", e->kwhere, e->key);
  }

  // A file's value that the command line overrides must still be a good one: the file is what
  // the next run without the override reads.
  for (int i = 0; i < c->shadowed.n; i++) {
    const rc_entry *e = &c->shadowed.e[i];
    int k = schema_find(schema, n_keys, e->key);
    if (k < 0) continue;  // its command-line value was reported above
    rc_value v = {0};
    int rc = value_read(&v, &schema[k], e->val, e->vwhere, " (the command line overrides it, but the file is wrong)",
                        err);
    free(v.text);
    if (rc == -2) return pith_fail(err, "run config: out of memory");
    if (rc) return -1;
  }

  c->v = calloc(n_keys ? (size_t)n_keys : 1, sizeof *c->v);
  if (!c->v) return pith_fail(err, "run config: out of memory");
  c->nv = n_keys;
  for (int i = 0; i < n_keys; i++) {
    const rc_key *s = &schema[i];
    rc_value *v = &c->v[i];
    v->key = rc_strdup(s->key);
    if (!v->key) {
      values_free(c);
      return pith_fail(err, "run config: out of memory");
    }
    const rc_entry *e = list_find(&c->in, s->key);
    if (!e && !s->def) {
      int rc = pith_fail(err,
                         "missing required key '%s' (%s%s%s); HINT: set it in the config file or "
                         "on the command line as %s=VALUE",
                         s->key, type_name(s->type), s->help ? ": " : "", s->help ? s->help : "",
                         s->key);
      values_free(c);
      return rc;
    }
    int rc = e ? value_read(v, s, e->val, e->vwhere, "", err) : value_read(v, s, s->def, "schema", "", err);
    if (rc) {
      values_free(c);
      return rc == -2 ? pith_fail(err, "run config: out of memory") : -1;
    }
  }
  c->resolved = 1;
  return 0;
}

// ---- getters ----

static const rc_value *value_get(const run_config *c, const char *key, const char *fn) {
  if (c && c->resolved)
    for (int i = 0; i < c->nv; i++)
      if (strcmp(c->v[i].key, key) == 0) return &c->v[i];
  fprintf(stderr, "%s(\"%s\"): %s (a bug in the caller)\n", fn, key ? key : "(null)",
          c && c->resolved ? "not a key of the schema" : "the config is not resolved");
  abort();
}

static void wrong_type(const char *fn, const rc_value *v) {
  fprintf(stderr, "%s(\"%s\"): the key is of type %s in the schema (a bug in the caller)\n", fn,
          v->key, type_name(v->type));
  abort();
}

int64_t run_config_int(const run_config *c, const char *key) {
  const rc_value *v = value_get(c, key, "run_config_int");
  if (v->type != RC_INT) wrong_type("run_config_int", v);
  return v->i;
}

double run_config_float(const run_config *c, const char *key) {
  const rc_value *v = value_get(c, key, "run_config_float");
  if (v->type != RC_FLOAT && v->type != RC_INT) wrong_type("run_config_float", v);
  return v->f;
}

int run_config_bool(const run_config *c, const char *key) {
  const rc_value *v = value_get(c, key, "run_config_bool");
  if (v->type != RC_BOOL) wrong_type("run_config_bool", v);
  return v->b;
}

const char *run_config_str(const run_config *c, const char *key) {
  return value_get(c, key, "run_config_str")->text;
}

// ---- YAML out ----

// Whether a string must be double-quoted to read back as itself (here and in other YAML readers:
// no null/bool/number look-alikes). Plain only for the common safe shapes: names, paths, lists.
static int needs_quotes(const char *s) {
  size_t n = strlen(s);
  if (n == 0) return 1;
  unsigned char c0 = (unsigned char)s[0];
  int ok_first = isalpha(c0) || c0 == '_' || c0 == '/' ||
                 (c0 == '.' && (s[1] == '/' || (s[1] == '.' && s[2] == '/')));
  if (!ok_first || s[n - 1] == ' ') return 1;
  for (const char *p = s; *p; p++) {
    unsigned char ch = (unsigned char)*p;
    if (!isalnum(ch) && !strchr("_-./,+@= ", ch)) return 1;
  }
  static const char *words[] = {"null", "true", "false", "yes", "no", "on", "off", "y", "n"};
  for (size_t i = 0; i < sizeof words / sizeof *words; i++)
    if (streq_nocase(s, words[i])) return 1;
  char *end;
  strtod(s, &end);  // "inf", "nan", "infinity"
  if (end != s && *end == 0) return 1;
  return 0;
}

// A double-quoted YAML scalar: escapes for '"', '\\', and every code point a YAML reader would not
// read back literally (controls, C1, NEL/LS/PS line breaks, BOM, non-characters).
static void put_quoted(strbuf *b, const char *str) {
  const unsigned char *s = (const unsigned char *)str;
  strbuf_adds(b, "\"");
  while (*s) {
    unsigned c = *s;
    if (c < 0x80) {
      switch (c) {
        case '"': strbuf_adds(b, "\\\""); break;
        case '\\': strbuf_adds(b, "\\\\"); break;
        case '\n': strbuf_adds(b, "\\n"); break;
        case '\t': strbuf_adds(b, "\\t"); break;
        case '\r': strbuf_adds(b, "\\r"); break;
        default:
          if (c < 0x20 || c == 0x7f) strbuf_printf(b, "\\x%02X", c);
          else strbuf_add(b, (const char *)s, 1);
      }
      s++;
      continue;
    }
    int len = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 1;
    uint32_t cp = len == 2 ? c & 0x1F : len == 3 ? c & 0x0F : len == 4 ? c & 0x07 : c;
    int k;
    for (k = 1; k < len && (s[k] & 0xC0) == 0x80; k++) cp = (cp << 6) | (s[k] & 0x3F);
    if (k < len || len == 1) {  // not UTF-8 (cannot happen for values that got here): drop it
      s++;
      continue;
    }
    if (cp == 0x85) strbuf_adds(b, "\\N");
    else if (cp == 0x2028) strbuf_adds(b, "\\L");
    else if (cp == 0x2029) strbuf_adds(b, "\\P");
    else if (cp < 0xA0 || cp == 0xFEFF || cp == 0xFFFE || cp == 0xFFFF) strbuf_printf(b, "\\u%04X", cp);
    else strbuf_add(b, (const char *)s, (size_t)len);
    s += len;
  }
  strbuf_adds(b, "\"");
}

static void put_scalar(strbuf *b, const char *s) {
  if (needs_quotes(s)) put_quoted(b, s);
  else strbuf_adds(b, s);
}

char *run_config_yaml(const run_config *c) {
  strbuf b = {0};
  strbuf_printf(&b, "# pith run config, format %d: %s\n", RC_FORMAT_VERSION,
            c->resolved ? "resolved (every key of the schema, defaults filled in)"
                        : "as given (not resolved against a schema)");
  strbuf_printf(&b, "# from: %s", c->files ? c->files : "no file");
  if (c->n_sets)
    strbuf_printf(&b, " + %d command-line assignment%s", c->n_sets, c->n_sets == 1 ? "" : "s");
  strbuf_adds(&b, "\n");
  if (c->resolved) {
    for (int i = 0; i < c->nv; i++) {
      put_scalar(&b, c->v[i].key);
      strbuf_adds(&b, ": ");
      if (c->v[i].type == RC_STRING) put_scalar(&b, c->v[i].text);
      else strbuf_adds(&b, c->v[i].text);  // numbers and bools: canonical, never ambiguous
      strbuf_adds(&b, "\n");
    }
  } else {
    for (int i = 0; i < c->in.n; i++) {
      put_scalar(&b, c->in.e[i].key);
      strbuf_adds(&b, ": ");
      put_scalar(&b, c->in.e[i].val);
      strbuf_adds(&b, "\n");
    }
  }
  if (b.oom) {
    free(b.p);
    return NULL;
  }
  return b.p;
}

int run_config_save(const run_config *c, const char *path, pith_err *err) {
  char *text = run_config_yaml(c);
  if (!text) return pith_fail(err, "%s: out of memory formatting the run config", path);
  int rc = pith_write_file_atomic(path, text, strlen(text), err);
  free(text);
  return rc;
}

// ---- help ----

void run_config_print_schema(FILE *out, const rc_key *schema, int n_keys) {
  int wk = 3, wd = 7;
  for (int i = 0; i < n_keys; i++) {
    int k = (int)strlen(schema[i].key);
    int d = schema[i].def ? (*schema[i].def ? (int)strlen(schema[i].def) : 2) : 10;
    if (k > wk) wk = k;
    if (d > wd) wd = d;
  }
  if (wk > 36) wk = 36;
  if (wd > 20) wd = 20;
  for (int i = 0; i < n_keys; i++) {
    const rc_key *s = &schema[i];
    const char *def = !s->def ? "(required)" : *s->def ? s->def : "\"\"";
    const char *help = s->help ? s->help : "";
    fprintf(out, "  %-*s  %-6s  %-*s  %s", wk, s->key, type_name(s->type), wd, def, help);
    if (s->allowed && strcmp(s->allowed, "any") != 0) fprintf(out, "%s[%s]", *help ? " " : "", s->allowed);
    fprintf(out, "\n");
  }
}
