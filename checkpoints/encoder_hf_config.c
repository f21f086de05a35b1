// encoder_hf_config: config.json of BERT / XLM-RoBERTa token classifiers in and out (declared in
// encoder_folder.h), apart from the weights' code so that it builds without libtorch (the fuzz
// harnesses read config.json files with it).
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "encoder_folder.h"
#include "hf_json.h"

static const struct {
  const char *name;
  encoder_act act;
} ACTS[] = {{"gelu", ENCODER_ACT_GELU},          {"gelu_new", ENCODER_ACT_GELU_TANH},
            {"gelu_pytorch_tanh", ENCODER_ACT_GELU_TANH}, {"relu", ENCODER_ACT_RELU},
            {"silu", ENCODER_ACT_SILU},          {"swish", ENCODER_ACT_SILU}};

// id2label {"0": "O", "1": "KEEP"} (keys 0..n-1) and/or num_labels; transformers' default is 2.
static int parse_labels(const cJSON *root, encoder_config *c, const char *path, pith_err *err) {
  const cJSON *id2label = hf_json_field(root, "id2label");
  int n = 0;
  if (hf_json_opt_int(root, "num_labels", 0, &n, path, err)) return -1;
  if (id2label) {
    if (!cJSON_IsObject(id2label)) return pith_fail(err, "%s: id2label must be an object", path);
    int count = cJSON_GetArraySize(id2label);
    if (n && n != count) return pith_fail(err, "%s: num_labels %d but id2label has %d entries", path, n, count);
    if (count > ENCODER_MAX_LABELS)
      return pith_fail(err, "%s: %d labels, at most %d are supported", path, count, ENCODER_MAX_LABELS);
    n = count;
    int seen[ENCODER_MAX_LABELS] = {0};
    for (const cJSON *e = id2label->child; e; e = e->next) {
      char *end;
      long id = strtol(e->string, &end, 10);
      if (*e->string == 0 || *end || id < 0 || id >= count || seen[id])
        return pith_fail(err, "%s: id2label key '%s' is not one of 0..%d (each once)", path, e->string, count - 1);
      if (!cJSON_IsString(e) || strlen(e->valuestring) >= ENCODER_LABEL_LEN)
        return pith_fail(err, "%s: id2label[%s] must be a string of under %d bytes", path, e->string,
                         ENCODER_LABEL_LEN);
      seen[id] = 1;
      snprintf(c->labels[id], ENCODER_LABEL_LEN, "%s", e->valuestring);
    }
  }
  c->num_labels = n ? n : 2;
  return 0;
}

int encoder_config_load(const char *path, encoder_config *c, pith_err *err) {
  memset(c, 0, sizeof *c);
  const char *type;
  cJSON *root = hf_json_load(path, &type, err);
  if (!root) return -1;
  int rc = -1;
  if (!strcmp(type, "bert")) c->arch = ENCODER_BERT;
  else if (!strcmp(type, "xlm-roberta")) c->arch = ENCODER_XLM_ROBERTA;
  else {
    pith_fail(err, "%s: model_type '%s' is not an encoder that pith reads (bert and xlm-roberta are)", path, type);
    goto done;
  }
  int bert = c->arch == ENCODER_BERT;
  if (hf_json_need_int(root, "vocab_size", &c->vocab_size, path, err) ||
      hf_json_need_int(root, "hidden_size", &c->dim, path, err) ||
      hf_json_need_int(root, "num_hidden_layers", &c->n_layers, path, err) ||
      hf_json_need_int(root, "num_attention_heads", &c->n_heads, path, err) ||
      hf_json_need_int(root, "intermediate_size", &c->hidden_dim, path, err) ||
      hf_json_opt_int(root, "max_position_embeddings", 512, &c->max_positions, path, err) ||
      hf_json_opt_int(root, "type_vocab_size", 2, &c->type_vocab_size, path, err) ||
      hf_json_opt_int(root, "pad_token_id", bert ? 0 : 1, &c->pad_id, path, err) ||
      hf_json_opt_id(root, "bos_token_id", &c->bos_id, path, err) ||
      hf_json_opt_id(root, "eos_token_id", &c->eos_id, path, err) ||
      hf_json_opt_num(root, "layer_norm_eps", 1e-12, &c->norm_eps, path, err) ||
      hf_json_opt_num(root, "hidden_dropout_prob", 0.1, &c->hidden_dropout, path, err) ||
      hf_json_opt_num(root, "attention_probs_dropout_prob", 0.1, &c->attention_dropout, path, err) ||
      hf_json_opt_num(root, "classifier_dropout", -1, &c->classifier_dropout, path, err) ||
      parse_labels(root, c, path, err))
    goto done;
  const cJSON *act = hf_json_field(root, "hidden_act");
  const char *act_name = cJSON_IsString(act) ? act->valuestring : act ? NULL : "gelu";
  size_t a = 0;
  while (act_name && a < sizeof ACTS / sizeof ACTS[0] && strcmp(ACTS[a].name, act_name)) a++;
  if (!act_name || a == sizeof ACTS / sizeof ACTS[0]) {
    pith_fail(err, "%s: hidden_act '%s' is not supported (gelu, gelu_new, gelu_pytorch_tanh, relu, silu are)", path,
              act_name ? act_name : "(not a string)");
    goto done;
  }
  c->act = ACTS[a].act;
  const cJSON *pe = hf_json_field(root, "position_embedding_type");
  if (pe && !(cJSON_IsString(pe) && !strcmp(pe->valuestring, "absolute"))) {
    pith_fail(err, "%s: position_embedding_type '%s' is not supported (absolute is)", path,
              cJSON_IsString(pe) ? pe->valuestring : "(not a string)");
    goto done;
  }
  if (cJSON_IsTrue(hf_json_field(root, "is_decoder")) || cJSON_IsTrue(hf_json_field(root, "add_cross_attention"))) {
    pith_fail(err, "%s: is_decoder / add_cross_attention: a decoder is not a token classifier", path);
    goto done;
  }
  if (encoder_config_validate(c, err)) {
    char inner[sizeof err->msg];
    snprintf(inner, sizeof inner, "%s", err->msg);
    pith_fail(err, "%s: %s", path, inner);
    goto done;
  }
  rc = 0;
done:
  cJSON_Delete(root);
  return rc;
}

char *encoder_config_json(const encoder_config *c, pt_dtype dtype) {
  cJSON *o = cJSON_CreateObject();
  cJSON *a = cJSON_AddArrayToObject(o, "architectures");
  cJSON_AddItemToArray(a, cJSON_CreateString(encoder_architecture(c->arch)));
  cJSON_AddStringToObject(o, "model_type", encoder_model_type(c->arch));
  cJSON_AddNumberToObject(o, "vocab_size", c->vocab_size);
  cJSON_AddNumberToObject(o, "hidden_size", c->dim);
  cJSON_AddNumberToObject(o, "num_hidden_layers", c->n_layers);
  cJSON_AddNumberToObject(o, "num_attention_heads", c->n_heads);
  cJSON_AddNumberToObject(o, "intermediate_size", c->hidden_dim);
  cJSON_AddStringToObject(o, "hidden_act", encoder_act_name(c->act));
  cJSON_AddNumberToObject(o, "hidden_dropout_prob", c->hidden_dropout);
  cJSON_AddNumberToObject(o, "attention_probs_dropout_prob", c->attention_dropout);
  if (c->classifier_dropout >= 0) cJSON_AddNumberToObject(o, "classifier_dropout", c->classifier_dropout);
  else cJSON_AddNullToObject(o, "classifier_dropout");
  cJSON_AddNumberToObject(o, "max_position_embeddings", c->max_positions);
  cJSON_AddNumberToObject(o, "type_vocab_size", c->type_vocab_size);
  cJSON_AddNumberToObject(o, "initializer_range", 0.02);
  cJSON_AddNumberToObject(o, "layer_norm_eps", c->norm_eps);
  cJSON_AddStringToObject(o, "position_embedding_type", "absolute");
  cJSON_AddNumberToObject(o, "pad_token_id", c->pad_id);
  if (c->bos_id >= 0) cJSON_AddNumberToObject(o, "bos_token_id", c->bos_id);
  if (c->eos_id >= 0) cJSON_AddNumberToObject(o, "eos_token_id", c->eos_id);
  cJSON_AddBoolToObject(o, "is_decoder", 0);
  cJSON_AddBoolToObject(o, "add_cross_attention", 0);
  cJSON_AddBoolToObject(o, "use_cache", 1);
  cJSON_AddStringToObject(o, "torch_dtype", dtype == PT_BF16 ? "bfloat16" : dtype == PT_F16 ? "float16" : "float32");
  // Labels both ways, as transformers writes them (keys of id2label are decimal strings).
  cJSON *id2label = cJSON_AddObjectToObject(o, "id2label"), *label2id = cJSON_AddObjectToObject(o, "label2id");
  for (int i = 0; i < c->num_labels; i++) {
    char key[16], name[ENCODER_LABEL_LEN];
    snprintf(key, sizeof key, "%d", i);
    if (c->labels[i][0]) snprintf(name, sizeof name, "%s", c->labels[i]);
    else snprintf(name, sizeof name, "LABEL_%d", i);
    cJSON_AddStringToObject(id2label, key, name);
    if (!cJSON_GetObjectItemCaseSensitive(label2id, name)) cJSON_AddNumberToObject(label2id, name, i);
  }
  char *s = cJSON_Print(o);
  cJSON_Delete(o);
  return s;
}

int encoder_folder_is_encoder(const char *dir) {
  char path[4096];
  if (pith_path_join(path, sizeof path, dir, "config.json")) return 0;
  const char *type;
  cJSON *root = hf_json_load(path, &type, NULL);
  int yes = root && (!strcmp(type, "bert") || !strcmp(type, "xlm-roberta"));
  cJSON_Delete(root);
  return yes;
}
