// The byte-level BPE encoder (the LLaMA-3 tokenizer, $PITH_FUZZ_BPE): any text encodes; UTF-8
// text decodes back to itself byte for byte (byte-level BPE loses nothing).
#include <string.h>

#include "fuzz.h"
#include "utf8.h"

static tokenizer *tok;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!tok) tok = fuzz_tokenizer("PITH_FUZZ_BPE");
  const char *text = (const char *)data;
  int32_t *ids = NULL;
  size_t n = 0;
  pith_err err = {{0}};
  if (tokenizer_encode(tok, text, size, 0, &ids, &n, &err)) return 0;  // refused with a message
  size_t len = 0;
  char *back = tokenizer_decode_n(tok, ids, n, 0, &len, &err);
  if (!back) abort();
  if (utf8_valid(text, size) && (len != size || memcmp(back, text, size))) {
    fprintf(stderr, "round trip: %zu bytes came back as %zu\n", size, len);
    abort();
  }
  free(back);
  free(ids);
  return 0;
}
