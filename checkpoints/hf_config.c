// hf_config: a Hugging Face config.json of the LLaMA family (llama, mistral, qwen2) in and out
// (declared in hf_folder.h). Apart from the weights' code, so that it builds without libtorch: the
// fuzz harnesses read config.json files with it.
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hf_folder.h"
#include "hf_json.h"

static int parse_rope_scaling(const cJSON *rs, llama_config *c, const char *path, pith_err *err) {
  const cJSON *type = hf_json_field(rs, "rope_type");
  if (!type) type = hf_json_field(rs, "type");
  const char *t = cJSON_IsString(type) ? type->valuestring : "default";
  if (!strcmp(t, "default")) return 0;
  if (strcmp(t, "llama3"))
    return pith_fail(err, "%s: rope_scaling type '%s' is not supported (default and llama3 are)", path, t);
  c->rope_llama3 = 1;
  return hf_json_opt_num(rs, "factor", 0, &c->rope_factor, path, err) ||
                 hf_json_opt_num(rs, "low_freq_factor", 0, &c->rope_low_freq_factor, path, err) ||
                 hf_json_opt_num(rs, "high_freq_factor", 0, &c->rope_high_freq_factor, path, err) ||
                 hf_json_opt_int(rs, "original_max_position_embeddings", 0, &c->rope_original_max_pos, path, err)
             ? -1
             : 0;
}

int hf_config_load(const char *path, llama_config *c, pith_err *err) {
  memset(c, 0, sizeof *c);
  const char *type;
  cJSON *root = hf_json_load(path, &type, err);
  if (!root) return -1;
  int rc = -1;
  if (!strcmp(type, "llama")) c->arch = LLAMA_ARCH_LLAMA;
  else if (!strcmp(type, "mistral")) c->arch = LLAMA_ARCH_MISTRAL;
  else if (!strcmp(type, "qwen2")) c->arch = LLAMA_ARCH_QWEN2;
  else {
    pith_fail(err, "%s: model_type '%s' is not supported (llama, mistral, qwen2 are)", path, type);
    goto done;
  }
  if (hf_json_need_int(root, "vocab_size", &c->vocab_size, path, err) ||
      hf_json_need_int(root, "hidden_size", &c->dim, path, err) ||
      hf_json_need_int(root, "intermediate_size", &c->hidden_dim, path, err) ||
      hf_json_need_int(root, "num_hidden_layers", &c->n_layers, path, err) ||
      hf_json_need_int(root, "num_attention_heads", &c->n_heads, path, err) ||
      hf_json_opt_int(root, "num_key_value_heads", c->n_heads, &c->n_kv_heads, path, err) ||
      hf_json_opt_int(root, "head_dim", 0, &c->head_dim, path, err) ||
      hf_json_opt_int(root, "max_position_embeddings", 2048, &c->max_seq_len, path, err) ||
      hf_json_opt_num(root, "rms_norm_eps", 1e-6, &c->norm_eps, path, err) ||
      hf_json_opt_num(root, "rope_theta", 10000, &c->rope_theta, path, err) ||
      hf_json_opt_id(root, "bos_token_id", &c->bos_id, path, err) ||
      hf_json_opt_id(root, "eos_token_id", &c->eos_id, path, err))
    goto done;
  c->tie_embeddings = cJSON_IsTrue(hf_json_field(root, "tie_word_embeddings"));
  c->qkv_bias = c->arch == LLAMA_ARCH_QWEN2;
  if (cJSON_IsTrue(hf_json_field(root, "attention_bias")) || cJSON_IsTrue(hf_json_field(root, "mlp_bias"))) {
    pith_fail(err, "%s: attention_bias/mlp_bias (biases on every projection) are not supported", path);
    goto done;
  }
  if (c->arch == LLAMA_ARCH_MISTRAL && hf_json_opt_int(root, "sliding_window", 0, &c->sliding_window, path, err))
    goto done;
  if (c->arch == LLAMA_ARCH_QWEN2 && cJSON_IsTrue(hf_json_field(root, "use_sliding_window"))) {
    pith_fail(err, "%s: use_sliding_window is not supported for qwen2", path);
    goto done;
  }
  const cJSON *rs = hf_json_field(root, "rope_scaling");
  // Newer transformers write rope_parameters {rope_type, rope_theta, ...} instead.
  const cJSON *rp = hf_json_field(root, "rope_parameters");
  if (rp && hf_json_opt_num(rp, "rope_theta", c->rope_theta, &c->rope_theta, path, err)) goto done;
  if (rp && !rs) rs = rp;
  if (rs && parse_rope_scaling(rs, c, path, err)) goto done;
  if (llama_config_validate(c, err)) {
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

char *hf_config_json(const llama_config *c, pt_dtype dtype) {
  static const char *const types[] = {"llama", "mistral", "qwen2"};
  static const char *const archs[] = {"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"};
  cJSON *o = cJSON_CreateObject();
  cJSON *a = cJSON_AddArrayToObject(o, "architectures");
  cJSON_AddItemToArray(a, cJSON_CreateString(archs[c->arch]));
  cJSON_AddStringToObject(o, "model_type", types[c->arch]);
  cJSON_AddNumberToObject(o, "vocab_size", c->vocab_size);
  cJSON_AddNumberToObject(o, "hidden_size", c->dim);
  cJSON_AddNumberToObject(o, "intermediate_size", c->hidden_dim);
  cJSON_AddNumberToObject(o, "num_hidden_layers", c->n_layers);
  cJSON_AddNumberToObject(o, "num_attention_heads", c->n_heads);
  cJSON_AddNumberToObject(o, "num_key_value_heads", c->n_kv_heads);
  cJSON_AddNumberToObject(o, "head_dim", c->head_dim);
  cJSON_AddNumberToObject(o, "max_position_embeddings", c->max_seq_len);
  cJSON_AddNumberToObject(o, "rms_norm_eps", c->norm_eps);
  cJSON_AddNumberToObject(o, "rope_theta", c->rope_theta);
  cJSON_AddBoolToObject(o, "tie_word_embeddings", c->tie_embeddings);
  cJSON_AddStringToObject(o, "hidden_act", "silu");
  cJSON_AddStringToObject(o, "torch_dtype", dtype == PT_BF16 ? "bfloat16" : dtype == PT_F16 ? "float16" : "float32");
  cJSON_AddBoolToObject(o, "attention_bias", 0);
  if (c->bos_id >= 0) cJSON_AddNumberToObject(o, "bos_token_id", c->bos_id);
  if (c->eos_id >= 0) cJSON_AddNumberToObject(o, "eos_token_id", c->eos_id);
  if (c->arch == LLAMA_ARCH_MISTRAL) {
    if (c->sliding_window > 0) cJSON_AddNumberToObject(o, "sliding_window", c->sliding_window);
    else cJSON_AddNullToObject(o, "sliding_window");
  }
  if (c->arch == LLAMA_ARCH_QWEN2) cJSON_AddBoolToObject(o, "use_sliding_window", 0);
  if (c->rope_llama3) {
    cJSON *rs = cJSON_AddObjectToObject(o, "rope_scaling");
    cJSON_AddStringToObject(rs, "rope_type", "llama3");
    cJSON_AddNumberToObject(rs, "factor", c->rope_factor);
    cJSON_AddNumberToObject(rs, "low_freq_factor", c->rope_low_freq_factor);
    cJSON_AddNumberToObject(rs, "high_freq_factor", c->rope_high_freq_factor);
    cJSON_AddNumberToObject(rs, "original_max_position_embeddings", c->rope_original_max_pos);
  } else {
    cJSON_AddNullToObject(o, "rope_scaling");
  }
  char *s = cJSON_Print(o);
  cJSON_Delete(o);
  return s;
}

