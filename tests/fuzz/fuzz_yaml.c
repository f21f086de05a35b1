// Run config files (YAML): any bytes load or fail with a message; what loads is written back as
// YAML that loads again to the same keys and values.
#include <string.h>

#include "fuzz.h"
#include "run_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fuzz_file("config.yaml", data, size);
  pith_err err = {{0}};
  run_config *c = run_config_new();
  if (run_config_load(c, path, &err) == 0) {
    char *text = run_config_yaml(c);
    if (!text) abort();
    const char *again = fuzz_file("again.yaml", (const uint8_t *)text, strlen(text));
    run_config *d = run_config_new();
    if (run_config_load(d, again, &err)) {
      fprintf(stderr, "written config does not load: %s\n%s\n", err.msg, text);
      abort();
    }
    if (run_config_raw_count(c) != run_config_raw_count(d)) abort();
    for (int i = 0; i < run_config_raw_count(c); i++) {
      const char *v1, *v2, *k1 = run_config_raw_at(c, i, &v1), *k2 = run_config_raw_at(d, i, &v2);
      if (strcmp(k1, k2) || strcmp(v1, v2)) {
        fprintf(stderr, "round trip: '%s'='%s' came back as '%s'='%s'\n", k1, v1, k2, v2);
        abort();
      }
    }
    run_config_free(d);
    free(text);
  } else if (!err.msg[0]) {
    abort();
  }
  run_config_free(c);
  return 0;
}
