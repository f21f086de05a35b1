// The encoders' tokenizers: WordPiece with every BertNormalizer step ($PITH_FUZZ_BERT) and Unigram
// with a Precompiled charsmap ($PITH_FUZZ_XLMR). Any text encodes, with and without the special
// tokens around it, to ids that decode.
#include "fuzz.h"

static tokenizer *bert, *xlmr;

static void encode_decode(const tokenizer *t, const uint8_t *data, size_t size, int special) {
  int32_t *ids = NULL;
  size_t n = 0;
  pith_err err = {{0}};
  if (tokenizer_encode(t, (const char *)data, size, special, &ids, &n, &err)) return;
  char *back = tokenizer_decode(t, ids, n, size & 2, &err);
  if (!back) abort();
  free(back);
  free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!bert) bert = fuzz_tokenizer("PITH_FUZZ_BERT"), xlmr = fuzz_tokenizer("PITH_FUZZ_XLMR");
  encode_decode(bert, data, size, size & 1);
  encode_decode(xlmr, data, size, size & 1);
  return 0;
}
