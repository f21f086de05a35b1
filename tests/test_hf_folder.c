// hf_folder + llama: save/load round trips (f32 and bf16 storage, tied and untied), and every
// bad folder giving a one-line error that names the file and the problem.
#include <sys/stat.h>

#include "check.h"
#include "hf_folder.h"
#include "lora.h"

static char dir[64];

static void write_text(const char *name, const char *text) {
  char path[256];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  pith_err err;
  CHECK(pith_write_file_atomic(path, text, strlen(text), &err) == 0);
}

static llama_config small(void) {
  llama_config c = {.arch = LLAMA_ARCH_LLAMA, .vocab_size = 50, .dim = 32, .hidden_dim = 48, .n_layers = 2,
                    .n_heads = 4, .n_kv_heads = 2, .max_seq_len = 64, .rope_theta = 10000, .norm_eps = 1e-5,
                    .bos_id = 1, .eos_id = 2};
  return c;
}

static double logits_diff(const llama_model *a, const llama_model *b) {
  pt_scope s = pt_scope_begin();
  int64_t ids[6] = {1, 5, 9, 3, 7, 2};
  pt_tensor *t = pt_from_data(ids, PT_I64, PT_SHAPE(1, 6), PT_CPU);
  llama_inputs in = {.ids = t};
  llama_outputs oa, ob;
  pith_err err;
  CHECK(llama_forward(a, &in, &oa, &err) == 0);
  CHECK(llama_forward(b, &in, &ob, &err) == 0);
  pt_tensor *d = pt_abs(pt_sub(pt_to_dtype(oa.logits, PT_F32), pt_to_dtype(ob.logits, PT_F32)));
  double worst = pt_item(pt_amax_dim(pt_view(d, PT_SHAPE(-1)), 0, 0));
  pt_scope_end(s);
  return worst;
}

static void test_roundtrips(void) {
  pith_err err;
  for (int tied = 0; tied <= 1; tied++) {
    llama_config c = small();
    c.tie_embeddings = tied;
    llama_model *m = llama_new_random(&c, 7, PT_F32, PT_CPU, &err);
    CHECK_MSG(m != NULL, "%s", err.msg);
    CHECK(hf_model_save(m, dir, &err) == 0);
    llama_model *back = hf_model_load(dir, PT_F32, PT_CPU, &err);
    CHECK_MSG(back != NULL, "%s", err.msg);
    if (back) {
      CHECK(back->cfg.tie_embeddings == tied && back->cfg.n_kv_heads == 2 && back->cfg.head_dim == 8);
      CHECK(back->cfg.bos_id == 1 && back->cfg.eos_id == 2);
      CHECK(llama_param_count(back) == llama_param_count(m));
      CHECK(logits_diff(m, back) == 0);  // f32 storage is exact
      // bf16 compute from f32 storage: close, not equal.
      llama_model *half = hf_model_load(dir, PT_BF16, PT_CPU, &err);
      CHECK_MSG(half != NULL, "%s", err.msg);
      if (half) {
        double d = logits_diff(m, half);
        CHECK_MSG(d > 0 && d < 0.05, "bf16 logits differ by %g", d);
        // bf16 storage, f32 compute: equals the bf16 model.
        CHECK(hf_model_save(half, dir, &err) == 0);
        llama_model *from_bf16 = hf_model_load(dir, PT_F32, PT_CPU, &err);
        CHECK_MSG(from_bf16 != NULL, "%s", err.msg);
        if (from_bf16) {  // the bf16 values come back exactly, now in f32
          pt_scope s = pt_scope_begin();
          pt_tensor *d = pt_sub(from_bf16->embed, pt_to_dtype(half->embed, PT_F32));
          CHECK(pt_dtype_of(from_bf16->embed) == PT_F32);
          CHECK(pt_item(pt_amax_dim(pt_view(pt_abs(d), PT_SHAPE(-1)), 0, 0)) == 0);
          pt_scope_end(s);
        }
        llama_free(from_bf16);
        llama_free(half);
      }
    }
    llama_free(back);
    llama_free(m);
  }
}

static void expect_error(const char *config, const char *want) {
  pith_err err = {{0}};
  write_text("config.json", config);
  llama_model *m = hf_model_load(dir, PT_F32, PT_CPU, &err);
  CHECK_MSG(m == NULL, "loaded a bad folder (%s)", want);
  llama_free(m);
  CHECK_CONTAINS(err.msg, want);
  CHECK_MSG(!strchr(err.msg, '\n'), "multi-line message: %s", err.msg);
}

static void test_errors(void) {
  pith_err err;
  llama_config c = small();
  llama_model *m = llama_new_random(&c, 1, PT_F32, PT_CPU, &err);
  CHECK(hf_model_save(m, dir, &err) == 0);
  llama_free(m);

  expect_error("{\"model_type\": \"llama\", \"hidden_size\": 32}", "config.json: missing field 'vocab_size'");
  expect_error("{\"model_type\": \"gpt2\"}", "config.json: model_type 'gpt2' is not supported");
  expect_error("[1, 2]", "config.json: not a JSON object");
  expect_error("{\"model_type\": \"llama\", \"vocab_size\": 50.5}", "field 'vocab_size' must be an integer");
  // Numbers no int holds are refused, not converted (found by fuzz_hf_config's neighbour).
  expect_error("{\"model_type\": \"llama\", \"vocab_size\": 1e300}", "field 'vocab_size' must be an integer");
  expect_error("{\"model_type\": \"llama\", \"vocab_size\": 50, \"hidden_size\": 32, \"intermediate_size\": 48, "
               "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": 4e9}",
               "field 'num_key_value_heads' must be an integer");
  expect_error("{\"model_type\": \"llama\", \"vocab_size\": 50, \"hidden_size\": 32, \"intermediate_size\": 48, "
               "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": 3}",
               "not a multiple of num_key_value_heads 3");
  expect_error("{\"model_type\": \"llama\", \"vocab_size\": 50, \"hidden_size\": 32, \"intermediate_size\": 48, "
               "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, "
               "\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4}}",
               "rope_scaling type 'yarn' is not supported");
  // The weights disagree with the config: a layer too many, a wider model.
  expect_error("{\"model_type\": \"llama\", \"vocab_size\": 50, \"hidden_size\": 32, \"intermediate_size\": 48, "
               "\"num_hidden_layers\": 3, \"num_attention_heads\": 4, \"num_key_value_heads\": 2}",
               "tensor 'model.layers.2.input_layernorm.weight' is missing");
  expect_error("{\"model_type\": \"llama\", \"vocab_size\": 50, \"hidden_size\": 32, \"intermediate_size\": 64, "
               "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": 2}",
               "tensor 'model.layers.0.mlp.gate_proj.weight' has a shape other than config.json implies");
  // A truncated weights file.
  write_text("config.json", "{\"model_type\": \"llama\", \"vocab_size\": 50, \"hidden_size\": 32, \"intermediate_size\": "
                            "48, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": 2}");
  char path[256];
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  CHECK(truncate(path, 1000) == 0);
  pith_err e2 = {{0}};
  CHECK(hf_model_load(dir, PT_F32, PT_CPU, &e2) == NULL);
  CHECK_CONTAINS(e2.msg, "model.safetensors");
  // No folder at all.
  CHECK(hf_model_load("/nonexistent/pith-model", PT_F32, PT_CPU, &e2) == NULL);
  CHECK_CONTAINS(e2.msg, "/nonexistent/pith-model/config.json: cannot open");
}

static void test_forward_errors(void) {
  pith_err err = {{0}};
  llama_config c = small();
  llama_model *m = llama_new_random(&c, 3, PT_F32, PT_CPU, &err);
  pt_scope s = pt_scope_begin();
  llama_inputs in = {0};
  llama_outputs out;
  CHECK(llama_forward(m, &in, &out, &err) == -1);
  CHECK_CONTAINS(err.msg, "give exactly one of ids and embeds");
  int64_t bad_ids[2] = {1, 500};  // 500 is past the vocabulary
  in.ids = pt_from_data(bad_ids, PT_I64, PT_SHAPE(1, 2), PT_CPU);
  CHECK(llama_forward(m, &in, &out, &err) == -1);
  CHECK_CONTAINS(err.msg, "llama_forward: embedding");
  CHECK(pt_ok());  // the forward clears the shim's error after reporting it
  pt_tensor *pk[2] = {pt_zeros(PT_SHAPE(1, 4, 3, 8), PT_F32, PT_CPU), pt_zeros(PT_SHAPE(1, 4, 3, 8), PT_F32, PT_CPU)};
  int64_t ids[2] = {1, 2};
  in.ids = pt_from_data(ids, PT_I64, PT_SHAPE(1, 2), PT_CPU);
  in.prefix_k = pk;
  in.prefix_v = pk;
  CHECK(llama_forward(m, &in, &out, &err) == -1);
  CHECK_CONTAINS(err.msg, "prefix K/V of layer 0 must be (B, 2, P, 8)");
  llama_config bad = small();
  bad.head_dim = 7;
  CHECK(llama_new_random(&bad, 1, PT_F32, PT_CPU, &err) == NULL);
  CHECK_CONTAINS(err.msg, "head_dim 7 is odd");
  unsigned targets;
  CHECK(lora_parse_targets("q_proj,v_proj", &targets, &err) == 0 && targets == ((1u << LLAMA_PROJ_Q) | (1u << LLAMA_PROJ_V)));
  CHECK(lora_parse_targets("q_proj,w_proj", &targets, &err) == -1);
  CHECK_CONTAINS(err.msg, "unknown module 'w_proj'");
  CHECK(lora_new(m, (lora_config){0, 16, 0, 1}, 1, &err) == NULL);
  CHECK_CONTAINS(err.msg, "lora_rank > 0");
  pt_scope_end(s);
  llama_free(m);
}

int main(void) {
  snprintf(dir, sizeof dir, "/tmp/pith_test_hf_XXXXXX");
  CHECK(mkdtemp(dir) != NULL);
  size_t base = pt_live_handles();
  test_roundtrips();
  test_errors();
  test_forward_errors();
  CHECK_MSG(pt_live_handles() == base, "%zu handles leaked", pt_live_handles() - base);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  CHECK(system(cmd) == 0);
  return check_done("test_hf_folder");
}
