// hf_folder: Hugging Face model folders in and out: config.json (llama, mistral, qwen2) and
// model.safetensors (or shards with model.safetensors.index.json), with the names transformers uses.
#ifndef PITH_HF_FOLDER_H
#define PITH_HF_FOLDER_H

#include "base.h"
#include "llama.h"
#include "tokenizer.h"

// Parse config.json; an error names the file and the missing or unsupported field.
int hf_config_load(const char *path, llama_config *cfg, pith_err *err);
// config.json text for cfg (malloc'd), in the layout transformers writes.
char *hf_config_json(const llama_config *cfg, pt_dtype dtype);

// Load a model folder into dtype on dev; weights stored as f32, bf16 or f16 are converted.
llama_model *hf_model_load(const char *dir, pt_dtype dtype, pt_device dev, pith_err *err);
// Write config.json and model.safetensors (weights in the model's dtype) into dir, creating it.
int hf_model_save(const llama_model *m, const char *dir, pith_err *err);
// hf_model_save, then the tokenizer's files (tokenizer_source_files: tokenizer.json, its configs,
// ...; a config.json among them is left out) copied beside the weights, so the folder is a whole
// model_name_or_path for pith and for transformers.
int hf_model_save_with_tokenizer(const llama_model *m, const tokenizer *tok, const char *dir, pith_err *err);

#endif
