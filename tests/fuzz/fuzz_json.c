// The JSON reader behind ingest and tokenize: any bytes parse or fail with a reason, never crash.
#include <string.h>

#include "fuzz.h"
#include "json.h"

static size_t walk(const json_value *v, int depth) {
  size_t n = 1;
  for (const json_value *c = v->child; c; c = c->next) n += walk(c, depth + 1);
  if (v->type == JSON_OBJ && v->child && v->child->key) json_get(v, v->child->key);
  return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  arena a = {0};
  json_parser P = {0};
  const json_value *v = json_parse(&P, &a, (const char *)data, size);
  if (v) walk(v, 0);
  else if (!P.why[0]) abort();  // a failure always says why
  arena_free(&a);
  return 0;
}
