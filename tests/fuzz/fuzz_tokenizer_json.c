// tokenizer.json files: any bytes load or fail with a message; what loads encodes and decodes.
#include <string.h>

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fuzz_file("tokenizer.json", data, size);
  pith_err err = {{0}};
  tokenizer *t = tokenizer_load(path, &err);
  if (!t) {
    if (!err.msg[0]) abort();
    return 0;
  }
  static const char text[] = "Hello, world! <s> 12 345 \xc3\xa9t\xc3\xa9\n\t  end";
  int32_t *ids = NULL;
  size_t n = 0;
  if (tokenizer_encode(t, text, sizeof text - 1, 1, &ids, &n, &err) == 0) {
    char *back = tokenizer_decode(t, ids, n, 0, &err);
    free(back);
    free(ids);
  }
  tokenizer_free(t);
  return 0;
}
