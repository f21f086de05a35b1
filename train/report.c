// report: the HTML page of runs (see report.h). Everything is written into one strbuf: inline CSS,
// inline SVG, escaped text.
#include "report.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "arena.h"
#include "json.h"
#include "metrics.h"
#include "strbuf.h"

// ---- the runs ---------------------------------------------------------------------------------

typedef enum { ITEM_TRAIN, ITEM_EVAL } item_kind;

typedef struct {
  char *path, *name;  // name: as shown (the RUN's last component, then the folders below it)
  item_kind kind;
  double mtime;       // of its metrics file: the order runs were made in
} item;

typedef struct {
  item *v;
  int n, cap;
} items;

static void items_free(items *it) {
  for (int i = 0; i < it->n; i++) free(it->v[i].path), free(it->v[i].name);
  free(it->v);
}

static double mtime_of(const char *dir, const char *file) {
  char path[4096];
  struct stat st;
  snprintf(path, sizeof path, "%s/%s", dir, file);
  if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return -1;
  return (double)st.st_mtim.tv_sec + st.st_mtim.tv_nsec * 1e-9;
}

// dir as a run when it is one: 1 added, 0 not a run, -1 out of memory.
static int add_run(items *it, const char *dir, const char *name) {
  double t_train = mtime_of(dir, "metrics.jsonl"), t_eval = mtime_of(dir, "metrics.json");
  if (t_train < 0 && t_eval < 0) return 0;
  if (it->n == it->cap) {
    int cap = it->cap ? 2 * it->cap : 16;
    item *v = realloc(it->v, sizeof *v * (size_t)cap);
    if (!v) return -1;
    it->v = v, it->cap = cap;
  }
  item *x = &it->v[it->n];
  x->path = strdup(dir), x->name = strdup(name);
  x->kind = t_eval >= 0 ? ITEM_EVAL : ITEM_TRAIN;
  x->mtime = t_eval >= 0 ? t_eval : t_train;
  if (!x->path || !x->name) return free(x->path), free(x->name), -1;
  it->n++;
  return 1;
}

// The runs in dir's subfolders (depth 1), and in eval/'s (depth 2). -1 out of memory.
static int add_children(items *it, const char *dir, const char *name, int depth) {
  DIR *d = opendir(dir);
  if (!d) return 0;
  struct dirent *e;
  int rc = 0;
  while (!rc && (e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    char path[4096], shown[4096];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    snprintf(shown, sizeof shown, "%s/%s", name, e->d_name);
    if (!pith_is_dir(path)) continue;
    int got = add_run(it, path, shown);
    if (got < 0) rc = -1;
    else if (!got && depth == 1 && !strcmp(e->d_name, "eval")) rc = add_children(it, path, shown, 2);
  }
  closedir(d);
  return rc;
}

static int by_mtime(const void *a, const void *b) {
  const item *x = a, *y = b;
  if (x->mtime != y->mtime) return x->mtime < y->mtime ? -1 : 1;
  return strcmp(x->name, y->name);
}

// ---- reading metrics --------------------------------------------------------------------------

// A JSON number's value (the reader keeps integers; others are read from the text).
static double num(const char *text, const json_value *v) {
  if (!v || v->type != JSON_NUM) return NAN;
  return v->is_int ? (double)v->i : strtod(text + v->off, NULL);
}

static const char *str(const json_value *v) { return v && v->type == JSON_STR ? v->s : NULL; }

typedef struct {
  double *x, *y;
  int n, cap;
} series;

static int series_push(series *s, double x, double y) {
  if (s->n == s->cap) {
    int cap = s->cap ? 2 * s->cap : 64;
    double *nx = realloc(s->x, sizeof *nx * (size_t)cap), *ny = nx ? realloc(s->y, sizeof *ny * (size_t)cap) : NULL;
    if (nx) s->x = nx;
    if (!ny) return -1;
    s->y = ny, s->cap = cap;
  }
  s->x[s->n] = x, s->y[s->n++] = y;
  return 0;
}

// The curves a training run logs, by the key metrics.jsonl gives them.
static const char *const CURVE_KEYS[] = {"loss", "val_loss", "val_loss_no_prefix"};
static const char *const CURVE_NAMES[] = {"train loss", "validation loss", "validation, no prefix"};
static const char *const CURVE_COLORS[] = {"#2c6fbb", "#e07b12", "#8a8a8a"};
enum { N_CURVES = 3 };

// Each line of a metrics.jsonl is one JSON object with "step"; a line that is not (a run killed
// mid-write leaves one at the end) is skipped. -1 out of memory.
static int read_curves(const char *path, series *s, pith_err *err) {
  size_t len = 0;
  char *text = pith_read_file(path, &len, err);
  if (!text) return -1;
  int rc = 0;
  for (char *line = text; !rc && line < text + len;) {
    char *nl = memchr(line, '\n', (size_t)(text + len - line));
    size_t n = nl ? (size_t)(nl - line) : (size_t)(text + len - line);
    arena a = {0};
    json_parser P = {0};
    const json_value *o = json_parse(&P, &a, line, n);
    double step = o ? num(line, json_get(o, "step")) : NAN;
    for (int k = 0; k < N_CURVES && !rc && isfinite(step); k++) {
      double y = num(line, json_get(o, CURVE_KEYS[k]));
      if (isfinite(y) && series_push(&s[k], step, y)) rc = pith_fail(err, "%s: out of memory", path);
    }
    arena_free(&a);
    line += n + 1;
  }
  free(text);
  return rc;
}

// ---- HTML -------------------------------------------------------------------------------------

static void html(strbuf *b, const char *s) {
  for (; s && *s; s++) {
    switch (*s) {
      case '&': strbuf_adds(b, "&amp;"); break;
      case '<': strbuf_adds(b, "&lt;"); break;
      case '>': strbuf_adds(b, "&gt;"); break;
      case '"': strbuf_adds(b, "&quot;"); break;
      default: strbuf_addc(b, *s);
    }
  }
}

static const char STYLE[] =
    "body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#222;padding:0 16px}"
    "h1{font-size:22px}h2{font-size:18px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}"
    "h3{font-size:15px;margin:18px 0 6px}section{margin-bottom:18px}"
    ".curves{display:flex;flex-wrap:wrap;gap:14px}.curves section{flex:1 1 480px}"
    "table{border-collapse:collapse;margin:6px 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}"
    "td.n{text-align:right;font-variant-numeric:tabular-nums}th{background:#f4f4f4}"
    ".ex{border:1px solid #e2e2e2;border-radius:4px;padding:8px 10px;margin:10px 0}"
    ".ctx{color:#444;white-space:pre-wrap;font-size:13px;max-height:9em;overflow:auto}"
    "tr.hit td{background:#eaf6e8}.muted{color:#777;font-size:12px}svg text{font:11px system-ui,sans-serif}";

// A line chart of the series with data, axes labelled with their ranges.
static void chart(strbuf *b, const series *s) {
  const double W = 520, H = 220, L = 56, R = 12, T = 12, B = 30;
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  for (int k = 0; k < N_CURVES; k++)
    for (int i = 0; i < s[k].n; i++) {
      x0 = fmin(x0, s[k].x[i]), x1 = fmax(x1, s[k].x[i]);
      y0 = fmin(y0, s[k].y[i]), y1 = fmax(y1, s[k].y[i]);
    }
  if (!isfinite(x0)) {
    strbuf_adds(b, "<p class=\"muted\">no losses logged</p>");
    return;
  }
  if (x1 == x0) x0 -= 1, x1 += 1;
  double pad = (y1 - y0) * 0.05 + (y1 == y0 ? fabs(y0) * 0.05 + 0.05 : 0);
  y0 -= pad, y1 += pad;
#define PX(v) (L + ((v) - x0) / (x1 - x0) * (W - L - R))
#define PY(v) (T + (y1 - (v)) / (y1 - y0) * (H - T - B))
  strbuf_printf(b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%g\" height=\"%g\" viewBox=\"0 0 %g %g\">", W, H,
                W, H);
  for (int g = 0; g <= 4; g++) {  // horizontal grid with the loss values
    double v = y0 + (y1 - y0) * g / 4, y = PY(v);
    strbuf_printf(b, "<line x1=\"%g\" y1=\"%.1f\" x2=\"%g\" y2=\"%.1f\" stroke=\"#eee\"/>", L, y, W - R, y);
    strbuf_printf(b, "<text x=\"%g\" y=\"%.1f\" text-anchor=\"end\">%.4g</text>", L - 4, y + 4, v);
  }
  strbuf_printf(b, "<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" stroke=\"#999\"/>", L, H - B, W - R, H - B);
  strbuf_printf(b, "<text x=\"%g\" y=\"%g\">step %.0f</text>", L, H - 10, x0 < 0 ? 0 : x0);
  strbuf_printf(b, "<text x=\"%g\" y=\"%g\" text-anchor=\"end\">%.0f</text>", W - R, H - 10, x1);
  int legend = 0;
  for (int k = 0; k < N_CURVES; k++) {
    if (!s[k].n) continue;
    if (s[k].n > 1) {
      strbuf_printf(b, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"", CURVE_COLORS[k]);
      for (int i = 0; i < s[k].n; i++) strbuf_printf(b, "%s%.1f,%.1f", i ? " " : "", PX(s[k].x[i]), PY(s[k].y[i]));
      strbuf_adds(b, "\"/>");
    }
    if (s[k].n <= 50)  // sparse points (validation) get markers
      for (int i = 0; i < s[k].n; i++)
        strbuf_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"%s\"/>", PX(s[k].x[i]), PY(s[k].y[i]),
                      CURVE_COLORS[k]);
    strbuf_printf(b, "<text x=\"%g\" y=\"%d\" text-anchor=\"end\" fill=\"%s\">%s (last %.4f)</text>", W - R - 4,
                  24 + 14 * legend++, CURVE_COLORS[k], CURVE_NAMES[k], s[k].y[s[k].n - 1]);
  }
#undef PX
#undef PY
  strbuf_adds(b, "</svg>");
}

static int write_training(strbuf *b, const item *x, pith_err *err) {
  char path[4200];
  snprintf(path, sizeof path, "%s/metrics.jsonl", x->path);
  series s[N_CURVES] = {{0}};
  int rc = read_curves(path, s, err);
  if (!rc) {
    strbuf_adds(b, "<section><h3>");
    html(b, x->name);
    strbuf_adds(b, "</h3>");
    chart(b, s);
    strbuf_adds(b, "</section>\n");
  }
  for (int k = 0; k < N_CURVES; k++) free(s[k].x), free(s[k].y);
  return rc;
}

// The scores table of metrics.json: a row per system, a column per metric (the first system's).
static int write_scores(strbuf *b, const char *path, const char *text, const json_value *m, pith_err *err) {
  const json_value *systems = json_get(m, "systems"), *comp = json_get(m, "compressor");
  if (!systems || systems->type != JSON_OBJ || !systems->child || systems->child->type != JSON_OBJ)
    return pith_fail(err, "%s: no \"systems\" object of scores", path);
  strbuf_adds(b, "<p class=\"muted\">");
  html(b, str(json_get(m, "task")));
  strbuf_printf(b, ", %.0f examples", num(text, json_get(m, "n")));
  if (comp && comp->type == JSON_OBJ) {
    strbuf_adds(b, "; compressor ");
    html(b, str(json_get(comp, "method")));
    strbuf_printf(b, " k=%.0f", num(text, json_get(comp, "k")));
  }
  strbuf_adds(b, "; data ");
  html(b, str(json_get(m, "data")));
  strbuf_adds(b, "</p><table><tr><th>system</th>");
  const json_value *cols = systems->child;
  for (const json_value *c = cols->child; c; c = c->next) {
    strbuf_adds(b, "<th>");
    html(b, c->key);
    strbuf_adds(b, "</th>");
  }
  strbuf_adds(b, "</tr>");
  for (const json_value *sys = systems->child; sys; sys = sys->next) {
    strbuf_adds(b, "<tr><td>");
    html(b, sys->key);
    strbuf_adds(b, "</td>");
    for (const json_value *c = cols->child; c; c = c->next)
      strbuf_printf(b, "<td class=\"n\">%.1f</td>", num(text, json_get(sys, c->key)));
    strbuf_adds(b, "</tr>");
  }
  strbuf_adds(b, "</table>\n");
  return 0;
}

// One example: every line of predictions.jsonl with its index, in file order.
typedef struct {
  double index;
  const json_value *lines[32];  // one per system
  int n;
} example;

static void write_example(strbuf *b, const example *e) {
  const json_value *first = e->lines[0];
  const char *ctx = str(json_get(first, "context")), *ref = str(json_get(first, "reference"));
  const char *question = str(json_get(first, "question"));
  const json_value *golds = json_get(first, "golds");
  const char *gold[16];
  int n_gold = 0;
  for (const json_value *g = golds ? golds->child : NULL; g && n_gold < 16; g = g->next)
    if (str(g)) gold[n_gold++] = g->s;
  strbuf_adds(b, "<div class=\"ex\"><div class=\"ctx\">");
  html(b, ctx ? ctx : ref);
  strbuf_adds(b, "</div>");
  if (question) {
    strbuf_adds(b, "<p><b>Question:</b> ");
    html(b, question);
    strbuf_adds(b, " <b>Gold:</b> ");
    for (int i = 0; i < n_gold; i++) {
      if (i) strbuf_adds(b, " | ");
      html(b, gold[i]);
    }
    strbuf_adds(b, "</p>");
  }
  strbuf_printf(b, "<table><tr><th>system</th><th>%s</th><th>%s</th></tr>", question ? "answer" : "regenerated text",
                question ? "F1" : "ROUGE-L");
  for (int i = 0; i < e->n; i++) {
    const char *pred = str(json_get(e->lines[i], "prediction"));
    double score = 0, r1, r2;
    if (!pred) pred = "";
    if (question) score = 100 * metrics_squad_f1(pred, gold, n_gold);
    else if (ref && metrics_rouge(pred, ref, &r1, &r2, &score) == 0) score *= 100;
    strbuf_printf(b, "<tr%s><td>", question && metrics_squad_em(pred, gold, n_gold) > 0 ? " class=\"hit\"" : "");
    html(b, str(json_get(e->lines[i], "system")));
    strbuf_adds(b, "</td><td>");
    html(b, pred);
    strbuf_printf(b, "</td><td class=\"n\">%.0f</td></tr>", score);
  }
  strbuf_adds(b, "</table></div>\n");
}

// The first n examples of predictions.jsonl (a file that is missing shows none).
static int write_examples(strbuf *b, const char *dir, int n, pith_err *err) {
  char path[4200];
  snprintf(path, sizeof path, "%s/predictions.jsonl", dir);
  if (n <= 0 || !pith_is_file(path)) return 0;
  size_t len = 0;
  char *text = pith_read_file(path, &len, err);
  if (!text) return -1;
  arena a = {0};
  example *ex = calloc((size_t)n, sizeof *ex);
  int n_ex = 0, rc = ex ? 0 : pith_fail(err, "out of memory");
  for (char *line = text; !rc && line < text + len;) {
    char *nl = memchr(line, '\n', (size_t)(text + len - line));
    size_t k = nl ? (size_t)(nl - line) : (size_t)(text + len - line);
    json_parser P = {0};
    const json_value *o = json_parse(&P, &a, line, k);
    double index = o ? num(line, json_get(o, "index")) : NAN;
    line += k + 1;
    if (!isfinite(index)) continue;
    example *e = n_ex && ex[n_ex - 1].index == index ? &ex[n_ex - 1] : NULL;
    if (!e) {
      if (n_ex == n) break;
      e = &ex[n_ex++];
      e->index = index;
    }
    if (e->n < 32) e->lines[e->n++] = o;
  }
  if (!rc && n_ex) {
    strbuf_adds(b, "<h4>Examples</h4>");
    for (int i = 0; i < n_ex; i++) write_example(b, &ex[i]);
  }
  free(ex);
  arena_free(&a);
  free(text);
  return rc;
}

static int write_eval(strbuf *b, const item *x, int n_examples, pith_err *err) {
  char path[4200];
  snprintf(path, sizeof path, "%s/metrics.json", x->path);
  size_t len = 0;
  char *text = pith_read_file(path, &len, err);
  if (!text) return -1;
  arena a = {0};
  json_parser P = {0};
  const json_value *m = json_parse(&P, &a, text, len);
  int rc = m && m->type == JSON_OBJ ? 0 : pith_fail(err, "%s: not a metrics.json (%s)", path, m ? "not an object" : P.why);
  if (!rc) {
    strbuf_adds(b, "<section><h3>");
    html(b, x->name);
    strbuf_adds(b, "</h3>");
    rc = write_scores(b, path, text, m, err);
  }
  if (!rc) rc = write_examples(b, x->path, n_examples, err);
  if (!rc) strbuf_adds(b, "</section>\n");
  arena_free(&a);
  free(text);
  return rc;
}

int report_write(const char *const *runs, int n_runs, const report_options *o, const char *out_path,
                 pith_err *err) {
  items it = {0};
  int rc = 0;
  for (int r = 0; r < n_runs && !rc; r++) {
    char name[4096];
    snprintf(name, sizeof name, "%s", pith_base_name(runs[r]));
    size_t nl = strlen(name);
    while (nl > 1 && name[nl - 1] == '/') name[--nl] = 0;
    if (!*name) snprintf(name, sizeof name, "%s", runs[r]);
    int before = it.n;
    if (!pith_is_dir(runs[r])) rc = pith_fail(err, "%s: not a folder", runs[r]);
    else if (add_run(&it, runs[r], name) < 0 || add_children(&it, runs[r], name, 1) < 0)
      rc = pith_fail(err, "out of memory");
    else if (it.n == before)
      rc = pith_fail(err, "%s: no training run (metrics.jsonl) or evaluation (metrics.json) in it or its folders",
                     runs[r]);
  }
  if (rc) {
    items_free(&it);
    return rc;
  }
  qsort(it.v, (size_t)it.n, sizeof *it.v, by_mtime);
  const char *title = o && o->title ? o->title : "pith report";
  strbuf b = STRBUF_INIT;
  strbuf_adds(&b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>");
  html(&b, title);
  strbuf_adds(&b, "</title><link rel=\"icon\" href=\"data:,\"><style>");
  strbuf_adds(&b, STYLE);
  strbuf_adds(&b, "</style></head><body>\n<h1>");
  html(&b, title);
  strbuf_adds(&b, "</h1>\n");
  int n_train = 0, n_eval = 0;
  for (int i = 0; i < it.n; i++) n_train += it.v[i].kind == ITEM_TRAIN, n_eval += it.v[i].kind == ITEM_EVAL;
  strbuf_printf(&b, "<p class=\"muted\">%d training run%s, %d evaluation%s, in the order they ran.</p>\n", n_train,
                n_train == 1 ? "" : "s", n_eval, n_eval == 1 ? "" : "s");
  if (n_train) strbuf_adds(&b, "<h2>Training</h2><div class=\"curves\">\n");
  for (int i = 0; i < it.n && !rc; i++)
    if (it.v[i].kind == ITEM_TRAIN) rc = write_training(&b, &it.v[i], err);
  if (n_train) strbuf_adds(&b, "</div>\n");
  if (n_eval) strbuf_adds(&b, "<h2>Evaluation</h2>\n");
  for (int i = 0; i < it.n && !rc; i++)
    if (it.v[i].kind == ITEM_EVAL) rc = write_eval(&b, &it.v[i], o ? o->n_examples : 0, err);
  strbuf_adds(&b, "</body></html>\n");
  if (!rc && !strbuf_ok(&b)) rc = pith_fail(err, "out of memory");
  if (!rc) rc = pith_write_file_atomic(out_path, b.p, b.n, err);
  strbuf_free(&b);
  items_free(&it);
  return rc;
}
