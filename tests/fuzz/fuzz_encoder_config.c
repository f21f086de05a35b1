// config.json of BERT / XLM-R token classifiers: any bytes parse into a checked config or fail with a
// message; what parses is written back as config.json that parses to the same config.
#include <string.h>

#include "encoder_folder.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fuzz_file("config.json", data, size);
  pith_err err = {{0}};
  encoder_config c, d;
  if (encoder_config_load(path, &c, &err)) {
    if (!err.msg[0]) abort();
    return 0;
  }
  char *text = encoder_config_json(&c, PT_F32);
  if (!text) abort();
  const char *again = fuzz_file("again.json", (const uint8_t *)text, strlen(text));
  if (encoder_config_load(again, &d, &err)) {
    fprintf(stderr, "written config.json does not load: %s\n%s\n", err.msg, text);
    abort();
  }
  if (c.arch != d.arch || c.vocab_size != d.vocab_size || c.dim != d.dim || c.n_layers != d.n_layers ||
      c.n_heads != d.n_heads || c.num_labels != d.num_labels || c.pad_id != d.pad_id || c.act != d.act) {
    fprintf(stderr, "config.json round trip changed the config\n%s\n", text);
    abort();
  }
  free(text);
  return 0;
}
