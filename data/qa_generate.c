// qa_generate: prompt templates, parsing generations into QA pairs, the span rule (qa_generate.h).
#include "qa_generate.h"

#include <ctype.h>
#include <strings.h>
#include <stdlib.h>
#include <string.h>

#include "strbuf.h"

static const char *const DROP_NAMES[QA_N_DROPS] = {"no_answer", "orphan_answer", "empty", "truncated",
                                                   "too_long", "not_a_span", "duplicate", "over_limit"};

const char *qa_drop_name(qa_drop_reason r) { return r >= 0 && r < QA_N_DROPS ? DROP_NAMES[r] : "?"; }

const char QA_DEFAULT_TEMPLATE[] =
    "Below is the abstract of a research paper, followed by questions about it. Each answer is a short "
    "phrase copied word for word from the abstract.\n\n"
    "Title: {title}\n"
    "Abstract: {abstract}\n\n"
    "Question:";

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'; }

char *qa_norm_ws(const char *s, size_t len) {
  char *out = malloc(len + 1);
  if (!out) return NULL;
  size_t n = 0;
  int space = 0;
  for (size_t i = 0; i < len; i++) {
    if (is_ws(s[i])) {
      space = 1;
      continue;
    }
    if (space && n) out[n++] = ' ';
    space = 0;
    out[n++] = s[i];
  }
  out[n] = 0;
  return out;
}

int64_t qa_span_find(const char *norm_abstract, const char *answer) {
  char *a = qa_norm_ws(answer, strlen(answer));
  if (!a) return -1;
  const char *at = *a ? strstr(norm_abstract, a) : NULL;
  free(a);
  return at ? (int64_t)(at - norm_abstract) : -1;
}

int qa_template_render(const char *tmpl, const char *title, const char *abstract, char **out, pith_err *err) {
  *out = NULL;
  strbuf b = STRBUF_INIT;
  int has_abstract = 0;
  for (const char *p = tmpl; *p;) {
    if (p[0] == '{' && p[1] == '{') {
      strbuf_addc(&b, '{'), p += 2;
    } else if (p[0] == '}' && p[1] == '}') {
      strbuf_addc(&b, '}'), p += 2;
    } else if (!strncmp(p, "{abstract}", 10)) {
      strbuf_adds(&b, abstract), p += 10, has_abstract = 1;
    } else if (!strncmp(p, "{title}", 7)) {
      strbuf_adds(&b, title ? title : ""), p += 7;
    } else if (*p == '{') {
      const char *end = strchr(p, '}');
      int n = end ? (int)(end - p + 1) : (int)strlen(p);
      strbuf_free(&b);
      return pith_fail(err, "prompt_template: unknown placeholder '%.*s' (it takes {title} and {abstract}; "
                            "write {{ for a literal brace)", n > 40 ? 40 : n, p);
    } else {
      strbuf_addc(&b, *p++);
    }
  }
  if (!has_abstract) {
    strbuf_free(&b);
    return pith_fail(err, "prompt_template: no {abstract} placeholder");
  }
  strbuf_add(&b, "", 0);
  *out = strbuf_take(&b, NULL);
  return *out ? 0 : pith_fail(err, "out of memory");
}

// The text after a "Question:"/"Q:" (kind 'Q') or "Answer:"/"A:" (kind 'A') prefix of line, or NULL.
static const char *after_prefix(const char *line, char *kind) {
  while (*line == ' ' || *line == '\t') line++;
  static const struct {
    const char *p;
    char k;
  } P[] = {{"question:", 'Q'}, {"q:", 'Q'}, {"answer:", 'A'}, {"a:", 'A'}};
  for (size_t i = 0; i < sizeof P / sizeof P[0]; i++) {
    size_t n = strlen(P[i].p);
    if (!strncasecmp(line, P[i].p, n)) {
      *kind = P[i].k;
      return line + n;
    }
  }
  return NULL;
}

static int words(const char *s) {
  int n = 0;
  for (const char *p = s; *p; p++)
    if (*p != ' ' && (p == s || p[-1] == ' ')) n++;
  return n;
}

static void drop(qa_parse_result *res, qa_drop_reason r) {
  res->drops[r]++;
  res->seen++;
}

// Judge one (question, answer) pair; takes ownership of q.
static int judge(qa_parse_result *res, char *q, const char *answer_raw, int truncated, const char *norm_abstract,
                 const qa_parse_opts *opt, int first_of_call, pith_err *err) {
  char *a = qa_norm_ws(answer_raw, strlen(answer_raw));
  if (!a) {
    free(q);
    return pith_fail(err, "out of memory");
  }
  int64_t at = -1;
  qa_drop_reason why = QA_N_DROPS;
  if (truncated) why = QA_DROP_TRUNCATED;
  else if (!*q || !*a) why = QA_DROP_EMPTY;
  else if (words(a) > opt->max_answer_words) why = QA_DROP_TOO_LONG;
  else if ((at = qa_span_find(norm_abstract, a)) < 0) why = QA_DROP_NOT_A_SPAN;
  for (int i = first_of_call; why == QA_N_DROPS && i < res->n; i++)
    if (!strcmp(res->pairs[i].question, q)) why = QA_DROP_DUPLICATE;
  if (why == QA_N_DROPS && res->n - first_of_call >= opt->max_pairs) why = QA_DROP_OVER_LIMIT;
  if (why != QA_N_DROPS) {
    drop(res, why);
    free(q);
    free(a);
    return 0;
  }
  if (res->n == res->cap) {
    int cap = res->cap ? 2 * res->cap : 8;
    qa_pair *p = realloc(res->pairs, (size_t)cap * sizeof *p);
    if (!p) {
      free(q);
      free(a);
      return pith_fail(err, "out of memory");
    }
    res->pairs = p, res->cap = cap;
  }
  res->pairs[res->n++] = (qa_pair){q, a, at};
  res->seen++;
  return 0;
}

// The inline " Answer:" of a question line ("Question: q Answer: a"), or NULL: the first "answer:"
// (any case) that follows whitespace.
static char *inline_answer(char *s) {
  for (char *p = s; *p; p++)
    if ((*p == ' ' || *p == '\t') && !strncasecmp(p + 1, "answer:", 7)) return p;
  return NULL;
}

int qa_parse(const char *text, int complete, const char *norm_abstract, const qa_parse_opts *opt,
             qa_parse_result *res, pith_err *err) {
  char *buf = strdup(text);
  if (!buf) return pith_fail(err, "out of memory");
  int first = res->n, rc = 0;
  char *open_q = NULL;  // the open question (normalised), or NULL
  for (char *line = buf, *next; line && !rc; line = next) {
    next = strchr(line, '\n');
    if (next) *next++ = 0;
    int last_line = next == NULL;
    char kind = 0;
    char *rest = (char *)after_prefix(line, &kind);
    if (!rest) continue;
    const char *answer = NULL;
    if (kind == 'Q') {
      if (open_q) drop(res, QA_DROP_NO_ANSWER), free(open_q);
      char *at = inline_answer(rest);
      if (at) *at = 0, answer = at + 8;
      open_q = qa_norm_ws(rest, strlen(rest));
      if (!open_q) rc = pith_fail(err, "out of memory");
    } else if (!open_q) {
      drop(res, QA_DROP_ORPHAN_ANSWER);
    } else {
      answer = rest;
    }
    if (answer && open_q && !rc) {
      rc = judge(res, open_q, answer, last_line && !complete, norm_abstract, opt, first, err);
      open_q = NULL;
    }
  }
  if (open_q) drop(res, complete ? QA_DROP_NO_ANSWER : QA_DROP_TRUNCATED), free(open_q);
  free(buf);
  return rc;
}

size_t qa_prompt_tail(const char *prompt) {
  size_t n = strlen(prompt), at = n;
  for (size_t i = 0; i < n; i++) {
    int line_start = 1;  // only blanks before i on its line
    for (size_t j = i; j > 0 && prompt[j - 1] != '\n' && line_start; j--)
      line_start = prompt[j - 1] == ' ' || prompt[j - 1] == '\t';
    if (!strncasecmp(prompt + i, "question:", 9) || (line_start && !strncasecmp(prompt + i, "q:", 2))) at = i;
  }
  if (at < n) {  // from its line's start when only blanks precede it there
    size_t s = at;
    while (s > 0 && (prompt[s - 1] == ' ' || prompt[s - 1] == '\t')) s--;
    return s == 0 || prompt[s - 1] == '\n' ? s : at;
  }
  const char *nl = strrchr(prompt, '\n');
  return nl ? (size_t)(nl + 1 - prompt) : 0;
}

void qa_parse_clear_pairs(qa_parse_result *res) {
  for (int i = 0; i < res->n; i++) free(res->pairs[i].question), free(res->pairs[i].answer);
  res->n = 0;
}

void qa_unescape(char *s) {
  char *w = s;
  for (const char *r = s; *r; r++) {
    if (*r == '\\' && r[1]) {
      r++;
      *w++ = *r == 'n' ? '\n' : *r == 't' ? '\t' : *r;
    } else {
      *w++ = *r;
    }
  }
  *w = 0;
}
