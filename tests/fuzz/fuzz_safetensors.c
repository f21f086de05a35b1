// safetensors files: any bytes open or fail with a message; what opens reads back every tensor.
#include "fuzz.h"
#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fuzz_file("model.safetensors", data, size);
  pith_err err = {{0}};
  st_file *f = st_open(path, &err);
  if (!f) {
    if (!err.msg[0]) abort();
    return 0;
  }
  for (int i = 0; i < st_metadata_count(f); i++) {
    const char *key;
    st_metadata_at(f, i, &key);
  }
  for (int i = 0; i < st_count(f); i++) {
    const st_tensor *t = st_at(f, i);
    int64_t n = st_numel(t);
    if (n < 0 || n > (1 << 16)) continue;
    float *out = malloc((size_t)(n ? n : 1) * sizeof *out);
    st_read_f32(t, out, (size_t)n, &err);
    free(out);
  }
  st_close(f);
  return 0;
}
