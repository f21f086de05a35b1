// qa_generate: the text side of `pith data generate --task qa` (ArxivQA-style data: an LLM writes
// extractive QA pairs about abstracts). Rendering the prompt from a template, parsing what the model
// wrote into question/answer pairs, and keeping only answers that are spans of the abstract. The
// model loop lives in the driver (train/data_generate.c); nothing here needs a model.
//
// Whitespace normalisation (qa_norm_ws): every run of ASCII whitespace (space, \t, \n, \v, \f, \r)
// becomes one space and the ends are trimmed, as `pith data ingest --format arxiv` does to
// abstracts; Python: re.sub(r"[ \t\n\v\f\r]+", " ", s).strip(" ").
//
// Span rule (qa_span_find): an answer is a span of the abstract when qa_norm_ws(answer) is non-empty
// and occurs, byte for byte (case and punctuation included), in qa_norm_ws(abstract). No other
// leniency: an answer the model paraphrased, re-cased or completed with a period the abstract lacks
// is not a span.
//
// Parsing (qa_parse): the text is the prompt's tail (qa_prompt_tail: from its last "Question:", any
// letter case, or "Q:" at a line start, or else from its last line; the default template ends with
// "Question:") followed by the generation, cut at the first stop string. Line by line: a line
// starting with "Question:" or "Q:" (any letter case, after leading blanks) opens a question, and
// when it holds " Answer:" (after a space or tab, any case) the rest of the line is its answer; a
// line starting with "Answer:" or "A:" answers the open question; other lines are ignored. Drop
// reasons, per pair or line:
//   no_answer      a question followed by another question, or by the end of a complete text
//   orphan_answer  an answer line with no open question
//   empty          an empty question or answer after normalisation
//   truncated      the text was cut by max_new_tokens (not complete) and the pair's answer is on
//                  its last line, or its question is still open there
//   too_long       an answer of more than max_answer_words words
//   not_a_span     the answer is not a span of the abstract (above)
//   duplicate      the same question (normalised) already kept for this abstract
//   over_limit     more than max_pairs kept pairs for this abstract
#ifndef PITH_QA_GENERATE_H
#define PITH_QA_GENERATE_H

#include <stddef.h>
#include <stdint.h>

#include "base.h"

typedef enum {
  QA_DROP_NO_ANSWER = 0,
  QA_DROP_ORPHAN_ANSWER,
  QA_DROP_EMPTY,
  QA_DROP_TRUNCATED,
  QA_DROP_TOO_LONG,
  QA_DROP_NOT_A_SPAN,
  QA_DROP_DUPLICATE,
  QA_DROP_OVER_LIMIT,
  QA_N_DROPS
} qa_drop_reason;

const char *qa_drop_name(qa_drop_reason r);  // "no_answer", ...

// The default prompt template: an instruction, {title} and {abstract}, ending with "Question:".
extern const char QA_DEFAULT_TEMPLATE[];

// qa_norm_ws of s (len bytes) as a malloc'd string; NULL when out of memory.
char *qa_norm_ws(const char *s, size_t len);

// Byte offset of qa_norm_ws(answer) in the normalised abstract norm_abstract (already normalised),
// or -1 when it is empty or absent.
int64_t qa_span_find(const char *norm_abstract, const char *answer);

// The template with every {title} and {abstract} replaced (malloc'd into *out). Errors: a template
// without {abstract}, an unknown {name} (a typo would otherwise reach the model verbatim). Literal
// braces are written {{ and }}.
int qa_template_render(const char *tmpl, const char *title, const char *abstract, char **out, pith_err *err);

typedef struct {
  char *question;  // normalised
  char *answer;    // normalised: the span as it appears in the abstract
  int64_t answer_start;  // byte offset in the normalised abstract
} qa_pair;

typedef struct {
  qa_pair *pairs;  // (n) kept, in the order written
  int n, cap;
  int64_t drops[QA_N_DROPS];
  int64_t seen;    // pairs and lines judged: kept + every drop
} qa_parse_result;

typedef struct {
  int max_answer_words;  // > 0
  int max_pairs;         // > 0: pairs kept per abstract
} qa_parse_opts;

// Parse text (prompt tail + generation, already cut at the stop string) against norm_abstract.
// complete: the generation ended by itself (eos or the stop string), so the last line is whole.
// Results are appended to res (counts add up over calls; pairs of earlier calls stay). 0, or -1
// when out of memory.
int qa_parse(const char *text, int complete, const char *norm_abstract, const qa_parse_opts *opt,
             qa_parse_result *res, pith_err *err);
// Where the parsed text starts in a rendered prompt (a byte offset): at its last "Question:" (any
// case) or line-leading "Q:" (at the start of that line when only blanks precede it there), else at
// its last line.
size_t qa_prompt_tail(const char *prompt);
// Free the pairs (counts stay) so res can take the next abstract.
void qa_parse_clear_pairs(qa_parse_result *res);

// "\\n", "\\t", "\\\\" in s made the characters they name (for the stop string given as text).
void qa_unescape(char *s);

#endif
