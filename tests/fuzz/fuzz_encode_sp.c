// The SentencePiece-style encoders: a tokenizer.json with Metaspace and byte fallback
// ($PITH_FUZZ_SP) and a llama2.c tokenizer.bin ($PITH_FUZZ_LLAMA2C). Any text encodes to ids
// that decode.
#include "fuzz.h"

static tokenizer *sp, *l2c;

static void encode_decode(const tokenizer *t, const uint8_t *data, size_t size, int bos) {
  int32_t *ids = NULL;
  size_t n = 0;
  pith_err err = {{0}};
  if (tokenizer_encode(t, (const char *)data, size, bos, &ids, &n, &err)) return;
  char *back = tokenizer_decode(t, ids, n, 0, &err);
  if (!back) abort();
  free(back);
  free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!sp) sp = fuzz_tokenizer("PITH_FUZZ_SP"), l2c = fuzz_tokenizer("PITH_FUZZ_LLAMA2C");
  encode_decode(sp, data, size, size & 1);
  encode_decode(l2c, data, size, size & 1);
  return 0;
}
