// test_qa_generate: the text side of `pith data generate --task qa` (data/qa_generate.h): whitespace
// normalisation, the span rule, template rendering and the parsing of generations with its drop
// reasons.
#include "check.h"
#include "qa_generate.h"

static const char *ABSTRACT = "We  study\tprompt compression.\nOur method keeps 90% of the accuracy\r\n"
                              "at a 10x ratio, on ArxivQA and SQuAD.";

static void test_norm(void) {
  const char *cases[][2] = {
      {"", ""}, {"   ", ""}, {"a", "a"}, {" a  b ", "a b"}, {"\t\na\v\fb\r\n", "a b"},
      {"x\xc2\xa0y", "x\xc2\xa0y"},  // U+00A0 is not ASCII whitespace: kept
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char *n = qa_norm_ws(cases[i][0], strlen(cases[i][0]));
    CHECK_MSG(n && !strcmp(n, cases[i][1]), "case %zu: '%s'", i, n ? n : "(null)");
    free(n);
  }
}

static void test_span(void) {
  char *norm = qa_norm_ws(ABSTRACT, strlen(ABSTRACT));
  CHECK(!strcmp(norm, "We study prompt compression. Our method keeps 90% of the accuracy at a 10x ratio, on "
                      "ArxivQA and SQuAD."));
  CHECK(qa_span_find(norm, "prompt compression") == 9);
  CHECK(qa_span_find(norm, "  prompt\n compression ") == 9);        // whitespace differs: still a span
  CHECK(qa_span_find(norm, "We") == 0);
  CHECK(qa_span_find(norm, "ArxivQA and SQuAD.") == (int64_t)strlen(norm) - 18);
  CHECK(qa_span_find(norm, "accuracy at a") > 0);                   // across a line break of the source
  CHECK(qa_span_find(norm, "Prompt compression") == -1);            // case matters
  CHECK(qa_span_find(norm, "prompt compression methods") == -1);    // runs past the text
  CHECK(qa_span_find(norm, "90 % of") == -1);                       // inner spacing matters
  CHECK(qa_span_find(norm, "") == -1 && qa_span_find(norm, " \n ") == -1);  // empty is no span
  CHECK(qa_span_find(norm, "SQuAD.!") == -1);
  free(norm);
}

static void test_template(void) {
  pith_err err = {{0}};
  char *out;
  CHECK(qa_template_render("T={title} A={abstract} {{x}}", "Tt", "Ab", &out, &err) == 0 &&
        !strcmp(out, "T=Tt A=Ab {x}"));
  free(out);
  CHECK(qa_template_render("{abstract}{abstract}", NULL, "z", &out, &err) == 0 && !strcmp(out, "zz"));
  free(out);
  CHECK(qa_template_render("no placeholder", "t", "a", &out, &err) == -1 && strstr(err.msg, "no {abstract}"));
  CHECK(qa_template_render("{abstract} {abstact}", "t", "a", &out, &err) == -1 && strstr(err.msg, "'{abstact}'"));
  CHECK(qa_template_render(QA_DEFAULT_TEMPLATE, "t", "a", &out, &err) == 0 && strstr(out, "Abstract: a\n"));
  free(out);
}

static void test_parse(void) {
  pith_err err = {{0}};
  char *norm = qa_norm_ws(ABSTRACT, strlen(ABSTRACT));
  qa_parse_opts opt = {.max_answer_words = 5, .max_pairs = 3};
  qa_parse_result r = {0};
  const char *text =
      "Question: What do they study?\n"
      "Answer:  prompt  compression\n"          // kept (whitespace normalised)
      "some chatter\n"
      "Q: What ratio?\n"
      "A: 10x\n"                                // kept
      "A: stray\n"                              // orphan_answer
      "question: what do they  study?\n"        // a different question (case): judged on its answer
      "answer: Prompt compression\n"            // not_a_span (case)
      "Question: What do they study?\n"
      "Answer: prompt compression.\n"           // duplicate question (after normalisation)
      "Question: Which data sets?\n"
      "Question: And?\n"                        // the one before: no_answer
      "Answer:\n"                               // empty
      "Question: How much accuracy is kept?\n"
      "Answer: 90% of the accuracy at a\n"      // too_long (6 words > 5)
      "Question: What is kept?\n"
      "Answer: 90% of the accuracy\n"           // kept: third pair
      "Question: On what?\n"
      "Answer: ArxivQA\n"                       // over_limit (max_pairs 3)
      "Question: Last?\n"
      "Answer: SQuAD";                          // last line of an incomplete text: truncated
  CHECK(qa_parse(text, 0, norm, &opt, &r, &err) == 0);
  CHECK_MSG(r.n == 3, "kept %d", r.n);
  if (r.n == 3) {
    CHECK(!strcmp(r.pairs[0].question, "What do they study?") && !strcmp(r.pairs[0].answer, "prompt compression") &&
          r.pairs[0].answer_start == 9);
    CHECK(!strcmp(r.pairs[1].answer, "10x"));
    CHECK(!strcmp(r.pairs[2].answer, "90% of the accuracy") && !strncmp(norm + r.pairs[2].answer_start, "90%", 3));
  }
  int64_t want[QA_N_DROPS] = {[QA_DROP_NO_ANSWER] = 1, [QA_DROP_ORPHAN_ANSWER] = 1, [QA_DROP_EMPTY] = 1,
                              [QA_DROP_TRUNCATED] = 1, [QA_DROP_TOO_LONG] = 1, [QA_DROP_NOT_A_SPAN] = 1,
                              [QA_DROP_DUPLICATE] = 1, [QA_DROP_OVER_LIMIT] = 1};
  for (int k = 0; k < QA_N_DROPS; k++)
    CHECK_MSG(r.drops[k] == want[k], "%s: %lld, want %lld", qa_drop_name(k), (long long)r.drops[k], (long long)want[k]);
  CHECK(r.seen == 3 + 8);

  // A complete text: its last answer is whole; an open question at the end is no_answer.
  qa_parse_clear_pairs(&r);
  memset(r.drops, 0, sizeof r.drops);
  CHECK(qa_parse("Question: Which?\nAnswer: SQuAD\nQuestion: More?", 1, norm, &opt, &r, &err) == 0);
  CHECK(r.n == 1 && r.drops[QA_DROP_NO_ANSWER] == 1 && r.drops[QA_DROP_TRUNCATED] == 0);
  // Incomplete: the open question at the end was cut, not unanswered.
  qa_parse_clear_pairs(&r);
  memset(r.drops, 0, sizeof r.drops);
  CHECK(qa_parse("Question: Which?\nAnswer: SQuAD\nQuestion: More?", 0, norm, &opt, &r, &err) == 0);
  CHECK(r.n == 1 && r.drops[QA_DROP_TRUNCATED] == 1 && r.drops[QA_DROP_NO_ANSWER] == 0);
  // Duplicates are per abstract: a new call (a new abstract) may repeat a question.
  CHECK(qa_parse("Question: Which?\nAnswer: SQuAD\n", 1, norm, &opt, &r, &err) == 0 && r.n == 2);
  qa_parse_clear_pairs(&r);
  free(r.pairs);
  free(norm);
}

static void test_inline_and_tail(void) {
  pith_err err = {{0}};
  char *norm = qa_norm_ws(ABSTRACT, strlen(ABSTRACT));
  qa_parse_opts opt = {.max_answer_words = 8, .max_pairs = 8};
  qa_parse_result r = {0};
  // One line holds the pair; "answer:" glued to a word is not a marker.
  CHECK(qa_parse("Question: What ratio? Answer: 10x\nQ: Xanswer: no?\tANSWER: SQuAD\nQuestion: On? answer:ArxivQA", 1,
                 norm, &opt, &r, &err) == 0);
  CHECK_MSG(r.n == 3, "kept %d", r.n);
  if (r.n == 3) {
    CHECK(!strcmp(r.pairs[0].question, "What ratio?") && !strcmp(r.pairs[0].answer, "10x"));
    CHECK(!strcmp(r.pairs[1].question, "Xanswer: no?") && !strcmp(r.pairs[1].answer, "SQuAD"));
    CHECK(!strcmp(r.pairs[2].question, "On?") && !strcmp(r.pairs[2].answer, "ArxivQA"));
  }
  qa_parse_clear_pairs(&r);
  free(r.pairs);
  free(norm);
  const char *p1 = "Intro\nAbstract: x\n\nQuestion:";
  CHECK(qa_prompt_tail(p1) == strlen(p1) - 9);
  const char *p2 = "Abstract: x question: what? Answer:";  // mid-line: from the marker itself
  CHECK(qa_prompt_tail(p2) == 12);
  const char *p3 = "Abstract: x\n  Question: fixed?\nAnswer:";  // the question line, blanks included
  CHECK(qa_prompt_tail(p3) == 12);
  const char *p4 = "no marker\nlast line";
  CHECK(qa_prompt_tail(p4) == 10);
  CHECK(qa_prompt_tail("single") == 0);
  const char *p5 = "Story: Q: not at a line start\n Q: fixed?\nA:";  // a line-leading Q: counts
  CHECK(qa_prompt_tail(p5) == 30);
  CHECK(qa_prompt_tail("Story: a Q: b\nA:") == 14);  // mid-line Q: does not
}

static void test_unescape(void) {
  char s[] = "a\\n\\nb\\tc\\\\d";
  qa_unescape(s);
  CHECK(!strcmp(s, "a\n\nb\tc\\d"));
}

int main(void) {
  test_norm();
  test_span();
  test_template();
  test_parse();
  test_inline_and_tail();
  test_unescape();
  return check_done("test_qa_generate");
}
