// word_align: the words of a text and LLMLingua-2-style alignment of a compressed text onto them,
// on pairs worked out by hand (see data/word_align.h for the rule).
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "word_align.h"

// The words of text joined by '|'.
static void joined(const char *text, char *out) {
  word_span *w;
  int64_t n = word_split(text, strlen(text), &w);
  out[0] = 0;
  for (int64_t i = 0; i < n; i++) {
    if (i) strcat(out, "|");
    strncat(out, text + w[i].start, w[i].end - w[i].start);
  }
  free(w);
}

// keep as a string of 0/1 and the unmatched count of aligning comp onto orig.
static int64_t align(const char *orig, const char *comp, int64_t window, char *keep_s) {
  word_span *ow, *cw;
  int64_t no = word_split(orig, strlen(orig), &ow), nc = word_split(comp, strlen(comp), &cw);
  uint8_t keep[64];
  int64_t missed = word_align(orig, ow, no, comp, cw, nc, window, keep);
  for (int64_t i = 0; i < no; i++) keep_s[i] = keep[i] ? '1' : '0';
  keep_s[no] = 0;
  free(ow);
  free(cw);
  return missed;
}

int main(void) {
  char buf[256];
  joined("Lily's dog, Max.", buf);
  CHECK_MSG(!strcmp(buf, "Lily|'|s|dog|,|Max|."), "split: %s", buf);
  joined("  h\xc3\xa9llo\tworld \n", buf);
  CHECK_MSG(!strcmp(buf, "h\xc3\xa9llo|world"), "split: %s", buf);
  joined(" \t\n", buf);
  CHECK_MSG(!strcmp(buf, ""), "split of blanks: %s", buf);

  // "the" is found backward at distance 1 ("The", case aside) before forward at distance 2.
  CHECK(align("The cat, the dog and the bird sat.", "cat the bird sat", 150, buf) == 0);
  CHECK_MSG(!strcmp(buf, "1100000110"), "keep %s", buf);
  // In order, each word once: the second "the" of the compressed text takes the next free one.
  CHECK(align("the cat and the dog", "the the dog", 150, buf) == 0);
  CHECK_MSG(!strcmp(buf, "10011"), "keep %s", buf);
  // window 4: "d" is 3 ahead, more than 4/2, so the cursor moves by 2 only; "e" then matches at 4.
  CHECK(align("a b c d e f g h", "d e", 4, buf) == 0);
  CHECK_MSG(!strcmp(buf, "00011000"), "keep %s", buf);
  // out of the window: unmatched, nothing kept
  CHECK(align("a b c d e f g h", "h", 4, buf) == 1);
  CHECK_MSG(!strcmp(buf, "00000000"), "keep %s", buf);
  // punctuation is its own word: a dropped comma leaves the word before it matched
  CHECK(align("Yes, she said.", "Yes said", 150, buf) == 0);
  CHECK_MSG(!strcmp(buf, "10010"), "keep %s", buf);
  // a pair that does not align: every compressed word unmatched
  CHECK(align("the cat sat", "a dog ran away", 150, buf) == 4);
  CHECK_MSG(!strcmp(buf, "000"), "keep %s", buf);
  // nothing compressed: all dropped
  CHECK(align("the cat", "", 150, buf) == 0);
  CHECK_MSG(!strcmp(buf, "00"), "keep %s", buf);
  return check_done("word_align");
}
