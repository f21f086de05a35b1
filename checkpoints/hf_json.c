// hf_json: config.json field readers (see hf_json.h).
#include "hf_json.h"

#include <limits.h>
#include <stdlib.h>
#include <math.h>

cJSON *hf_json_load(const char *path, const char **type, pith_err *err) {
  size_t len;
  char *text = pith_read_file(path, &len, err);
  if (!text) return NULL;
  cJSON *root = cJSON_Parse(text);
  free(text);
  const cJSON *mt = cJSON_IsObject(root) ? hf_json_field(root, "model_type") : NULL;
  if (!cJSON_IsString(mt)) {
    pith_fail(err, cJSON_IsObject(root) ? "%s: missing field 'model_type'" : "%s: not a JSON object", path);
    cJSON_Delete(root);
    return NULL;
  }
  *type = mt->valuestring;
  return root;
}

const cJSON *hf_json_field(const cJSON *obj, const char *name) {
  const cJSON *f = cJSON_GetObjectItemCaseSensitive(obj, name);
  return (f && !cJSON_IsNull(f)) ? f : NULL;
}

int hf_json_is_int(const cJSON *f) {
  // A larger number would not survive the conversion (undefined behaviour; found by fuzzing).
  return cJSON_IsNumber(f) && f->valuedouble >= INT_MIN && f->valuedouble <= INT_MAX &&
         f->valuedouble == floor(f->valuedouble);
}

int hf_json_need_int(const cJSON *obj, const char *name, int *out, const char *path, pith_err *err) {
  const cJSON *f = hf_json_field(obj, name);
  if (!f) return pith_fail(err, "%s: missing field '%s'", path, name);
  if (!hf_json_is_int(f)) return pith_fail(err, "%s: field '%s' must be an integer", path, name);
  *out = (int)f->valuedouble;
  return 0;
}

int hf_json_opt_int(const cJSON *obj, const char *name, int fallback, int *out, const char *path, pith_err *err) {
  *out = fallback;
  return hf_json_field(obj, name) ? hf_json_need_int(obj, name, out, path, err) : 0;
}

int hf_json_opt_num(const cJSON *obj, const char *name, double fallback, double *out, const char *path,
                    pith_err *err) {
  const cJSON *f = hf_json_field(obj, name);
  if (f && !cJSON_IsNumber(f)) return pith_fail(err, "%s: field '%s' must be a number", path, name);
  *out = f ? f->valuedouble : fallback;
  return 0;
}

int hf_json_opt_id(const cJSON *obj, const char *name, int *out, const char *path, pith_err *err) {
  const cJSON *f = hf_json_field(obj, name);
  *out = -1;
  if (cJSON_IsArray(f)) f = cJSON_GetArrayItem(f, 0);
  if (!f) return 0;
  if (!hf_json_is_int(f)) return pith_fail(err, "%s: field '%s' must be an integer or a list of them", path, name);
  *out = (int)f->valuedouble;
  return 0;
}
