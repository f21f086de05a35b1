// hf_json: the field readers of Hugging Face config.json files (hf_config.c, encoder_hf_config.c).
// A field that is absent or null is "not given"; one that is given with the wrong type is an error
// naming the file and the field, never silently replaced by a default.
#ifndef PITH_HF_JSON_H
#define PITH_HF_JSON_H

#include <cJSON.h>

#include "base.h"

// The config.json at path as a JSON object (cJSON_Delete it), with its model_type string in *type;
// NULL and a message naming the file when it does not read, is not an object, or has no model_type.
cJSON *hf_json_load(const char *path, const char **type, pith_err *err);
// The member name of obj, or NULL when it is absent or null.
const cJSON *hf_json_field(const cJSON *obj, const char *name);
// 1 when f is a number that is an integer an int holds.
int hf_json_is_int(const cJSON *f);
// A required integer.
int hf_json_need_int(const cJSON *obj, const char *name, int *out, const char *path, pith_err *err);
// An optional integer: fallback when not given.
int hf_json_opt_int(const cJSON *obj, const char *name, int fallback, int *out, const char *path, pith_err *err);
// An optional number: fallback when not given.
int hf_json_opt_num(const cJSON *obj, const char *name, double fallback, double *out, const char *path,
                    pith_err *err);
// A token id given as an integer or a list of them (the first is kept, as for eos_token_id); -1 when
// not given.
int hf_json_opt_id(const cJSON *obj, const char *name, int *out, const char *path, pith_err *err);

#endif
