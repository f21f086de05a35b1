#include "cjson_file.h"

#include <stdlib.h>
#include <string.h>

int cjson_write_file(const char *path, const cJSON *root, pith_err *err) {
  char *text = cJSON_Print(root);
  if (!text) return pith_fail(err, "%s: out of memory", path);
  size_t len = strlen(text);
  char *file = malloc(len + 1);
  int rc = file ? 0 : pith_fail(err, "%s: out of memory", path);
  if (file) {
    memcpy(file, text, len);
    file[len] = '\n';
    rc = pith_write_file_atomic(path, file, len + 1, err);
  }
  free(file);
  cJSON_free(text);
  return rc;
}
