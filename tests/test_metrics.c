// test_metrics: SQuAD v1.1 EM/F1, the raw (500xCompressor) variant, ROUGE, BLEU and exact match
// on hand-picked tricky cases. Every expected value is stated here, worked out by hand from the
// official scripts' rules (normalize_answer = lower, drop string.punctuation, drop a|an|the,
// collapse whitespace; F1 = 2PR/(P+R) over the token multisets); tests/reference/metrics_parity.py
// compares several hundred more pairs with the Python implementations.
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "metrics.h"

#define GOLDS(...) ((const char *const[]){__VA_ARGS__}), \
                   (int)(sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *))

static void squad(const char *pred, const char *const *golds, int n, double em, double f1,
                  int line) {
  double e = metrics_squad_em(pred, golds, n), f = metrics_squad_f1(pred, golds, n);
  CHECK_MSG(e == em, "line %d: EM(\"%s\") = %g, want %g", line, pred, e, em);
  CHECK_MSG(fabs(f - f1) < 1e-12, "line %d: F1(\"%s\") = %.12g, want %.12g", line, pred, f, f1);
}
#define SQUAD(pred, golds, em, f1) squad(pred, golds, em, f1, __LINE__)

static void norm(const char *in, const char *want) {
  char *got = metrics_squad_normalize(in);
  CHECK_MSG(got && strcmp(got, want) == 0, "normalize(\"%s\") = \"%s\", want \"%s\"", in,
            got ? got : "(null)", want);
  free(got);
}

int main(void) {
  // normalize_answer
  norm("The Eiffel Tower", "eiffel tower");
  norm("  New\tYork \n City ", "new york city");
  norm("U.S.A.", "usa");
  norm("the-end", "theend");              // punctuation goes first: no article left to remove
  norm("An apple a day", "apple day");
  norm("theater another Anne", "theater another anne");   // articles only as whole words
  norm("a an the", "");
  norm("don’t “stop”", "don’t “stop”");   // typographic quotes are not string.punctuation
  norm("ÉCOLE Ça", "école ça");           // str.lower() is Unicode-aware
  norm("ΟΔΟΣ Σ", "οδος σ");               // final sigma
  norm("New\xc2\xa0York", "new york");      // U+00A0 is whitespace for str.split()
  norm("the—end", "—end");     // U+2014 is not \w: "the" before it is a word
  norm("café the", "café");                  // é is a word char: "the" after a space goes
  norm("ƁIG İ", "ɓig i\xcc\x87");          // Latin Extended-B; U+0130 lowers to i + U+0307
  norm("東京。the", "東京。");                 // U+3002 is not \w, so "the" is a whole word
  norm("½the ٣an", "½the ٣an");              // No and Nd characters are \w: no boundary

  // bytes that are not UTF-8 are kept and count as word characters; nothing reads past the end
  norm("ab\xff the \xe2\x80", "ab\xff \xe2\x80");
  norm("\xc3", "\xc3");

  // EM / F1 (F1 values: P = same/len(pred), R = same/len(gold), 2PR/(P+R))
  SQUAD("The Eiffel Tower", GOLDS("eiffel tower"), 1, 1);
  SQUAD("Eiffel Tower!!", GOLDS("the eiffel tower."), 1, 1);
  SQUAD("a", GOLDS("an"), 1, 0);           // both normalise to "": EM 1, F1 0 (v1.1 rule)
  SQUAD("the", GOLDS("Paris"), 0, 0);      // a prediction that is only an article
  SQUAD("", GOLDS("Paris"), 0, 0);         // empty prediction
  SQUAD("", GOLDS(""), 1, 0);
  // several golds: "in paris france" vs "paris" F1 = 0.5, vs "paris france" F1 = 0.8
  SQUAD("in Paris, France", GOLDS("Paris", "France", "Paris France"), 0, 0.8);
  SQUAD("Paris", GOLDS("London", "paris."), 1, 1);
  SQUAD("cat cat cat", GOLDS("cat"), 0, 0.5);                  // P 1/3, R 1
  SQUAD("the cat sat on the mat", GOLDS("a cat on a mat"), 0, 6.0 / 7.0);   // P 3/4, R 1
  SQUAD("don't", GOLDS("dont"), 1, 1);
  SQUAD("don’t", GOLDS("dont"), 0, 0);                         // ’ is kept
  SQUAD("“Paris”", GOLDS("Paris"), 0, 0);
  SQUAD("the-end", GOLDS("end"), 0, 0);
  SQUAD("  New\tYork \n City ", GOLDS("new york city"), 1, 1);
  SQUAD("ÉCOLE", GOLDS("école"), 1, 1);
  SQUAD("1,000 people", GOLDS("1000"), 0, 2.0 / 3.0);          // P 1/2, R 1

  // dataset scores: 100 * mean
  squad_acc acc;
  squad_acc_init(&acc);
  CHECK(squad_acc_add(&acc, "Paris", (const char *const[]){"paris"}, 1) == 0);
  CHECK(squad_acc_add(&acc, "cat cat cat", (const char *const[]){"cat"}, 1) == 0);
  CHECK(squad_acc_add(&acc, "x", (const char *const[]){"y"}, 1) == 0);
  CHECK(squad_acc_add(&acc, "the", (const char *const[]){"a"}, 1) == 0);
  CHECK_NEAR(squad_acc_em(&acc), 50.0, 1e-12);    // (1 + 0 + 0 + 1) / 4
  CHECK_NEAR(squad_acc_f1(&acc), 37.5, 1e-12);    // (1 + 0.5 + 0 + 0) / 4

  // raw variant: strip() equality; F1 over whitespace tokens without normalisation
  CHECK(metrics_raw_em(" Paris\n", GOLDS("Paris")) == 1);
  CHECK(metrics_raw_em("paris", GOLDS("Paris")) == 0);
  CHECK(metrics_raw_em("Paris.", GOLDS("London", "Paris.")) == 1);
  CHECK_NEAR(metrics_raw_f1("The cat sat", GOLDS("the cat")), 0.4, 1e-12);   // P 1/3, R 1/2
  CHECK_NEAR(metrics_raw_f1("cat.", GOLDS("cat")), 0.0, 1e-12);
  CHECK_NEAR(metrics_raw_f1("a b", GOLDS("x", "b a")), 1.0, 1e-12);

  // ROUGE: 6 tokens each; unigram overlap 5, bigram overlap 3 of 5, LCS 5
  double r1, r2, rl;
  CHECK(metrics_rouge("the cat sat on the mat", "the cat is on the mat", &r1, &r2, &rl) == 0);
  CHECK_NEAR(r1, 5.0 / 6.0, 1e-12);
  CHECK_NEAR(r2, 0.6, 1e-12);
  CHECK_NEAR(rl, 5.0 / 6.0, 1e-12);
  CHECK(metrics_rouge("Hello, World!", "hello world", &r1, &r2, &rl) == 0);
  CHECK(r1 == 1.0 && r2 == 1.0 && rl == 1.0);
  CHECK(metrics_rouge("", "hello world", &r1, &r2, &rl) == 0);
  CHECK(r1 == 0.0 && r2 == 0.0 && rl == 0.0);
  // "don’t" -> don, t; "café" -> caf; accents are separators after lower()
  CHECK(metrics_rouge("don’t café", "don t caf", &r1, &r2, &rl) == 0);
  CHECK(r1 == 1.0 && r2 == 1.0 && rl == 1.0);
  // İ lowers to "i" + U+0307 (a separator); KELVIN SIGN lowers to "k"
  CHECK(metrics_rouge("İstanbul \xe2\x84\xaa" "elvin", "i stanbul kelvin", &r1, &r2, &rl) == 0);
  CHECK(r1 == 1.0 && r2 == 1.0 && rl == 1.0);
  // LCS is a subsequence: "a b c d" vs "a x c y d": LCS 3, P 3/4, R 3/5 -> 2/3
  CHECK(metrics_rouge("a b c d", "a x c y d", &r1, NULL, &rl) == 0);
  CHECK_NEAR(rl, 2.0 / 3.0, 1e-12);
  CHECK_NEAR(r1, 2.0 / 3.0, 1e-12);

  // BLEU: 13a tokenisation
  struct { const char *in, *want; } tk[] = {
      {"Hello, world.", "Hello , world ."},
      {" 3.14, 2-3", "3.14 , 2 - 3"},
      {"&amp;lt;x", "< x"},
      {"a<skipped>b", "ab"},
      {"“Hi” (ok)?", "“Hi” ( ok ) ?"},
      {"U.S.A. 1,000.5", "U . S . A . 1,000.5"},
      {"line-\nbreak\nhere  \n", "linebreak here"},
  };
  for (size_t i = 0; i < sizeof tk / sizeof tk[0]; i++) {
    char *got = metrics_bleu_tokenize_13a(tk[i].in);
    CHECK_MSG(got && strcmp(got, tk[i].want) == 0, "13a(\"%s\") = \"%s\", want \"%s\"", tk[i].in,
              got ? got : "(null)", tk[i].want);
    free(got);
  }
  // p1 = 5/6, p2 = 3/5, p3 = 1/4, p4 = 0/3 -> exp smoothing 100/(2*3); BP 1.
  // exp((ln 83.333 + ln 60 + ln 25 + ln 16.667) / 4) = 37.99178428... (sacrebleu 2.6.0 agrees)
  bleu_acc b;
  bleu_acc_init(&b);
  CHECK(bleu_acc_add(&b, "the cat sat on the mat", "the cat is on the mat") == 0);
  double want = exp((log(500.0 / 6) + log(60.0) + log(25.0) + log(100.0 / 6)) / 4);
  CHECK_NEAR(bleu_acc_score(&b), want, 1e-12);
  CHECK_NEAR(bleu_acc_score(&b), 37.99178428257963, 1e-12);
  CHECK_NEAR(metrics_sentence_bleu("the cat sat on the mat", "the cat is on the mat"), want, 1e-12);
  // two tokens: corpus BLEU has no 3- and 4-grams -> 0; sentence BLEU (effective order) -> 100
  bleu_acc_init(&b);
  CHECK(bleu_acc_add(&b, "the cat", "the cat") == 0);
  CHECK(bleu_acc_score(&b) == 0.0);
  CHECK_NEAR(metrics_sentence_bleu("the cat", "the cat"), 100.0, 1e-12);
  // no match at all -> 0; brevity penalty: 3 of 6 tokens, all n-grams match -> exp(1 - 2)*100
  CHECK(metrics_sentence_bleu("dog", "the cat") == 0.0);
  bleu_acc_init(&b);
  CHECK(bleu_acc_add(&b, "a b c d", "a b c d e f g h") == 0);
  CHECK_NEAR(bleu_acc_score(&b), 100.0 * exp(1.0 - 2.0), 1e-12);

  // regeneration exact match: bytes
  CHECK(metrics_exact_match("Once upon a time.", "Once upon a time.") == 1);
  CHECK(metrics_exact_match("Once upon a time.", "Once upon a time. ") == 0);
  CHECK(metrics_exact_match("", "") == 1);

  return check_done("test_metrics");
}
