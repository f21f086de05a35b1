// encoder_folder: Hugging Face folders of BERT / XLM-RoBERTa token classifiers (models/encoder.h)
// in and out: config.json (model_type "bert" or "xlm-roberta") and model.safetensors (or shards with
// model.safetensors.index.json), weights stored as f32, bf16 or f16, named as transformers names them.
// A folder saved here loads unchanged with transformers' AutoModelForTokenClassification.
#ifndef PITH_ENCODER_FOLDER_H
#define PITH_ENCODER_FOLDER_H

#include "base.h"
#include "encoder.h"

// Parse config.json into cfg, with transformers' defaults for absent optional fields; an error names
// the file and the field (a LLaMA config, an unknown hidden_act, relative positions, a decoder, ...).
int encoder_config_load(const char *path, encoder_config *cfg, pith_err *err);
// config.json text for cfg (malloc'd): architectures, model_type, id2label / label2id and the rest,
// in the layout transformers writes.
char *encoder_config_json(const encoder_config *cfg, pt_dtype dtype);
// 1 when dir/config.json names an encoder model_type (bert, xlm-roberta), else 0 (also when unreadable).
int encoder_folder_is_encoder(const char *dir);

typedef struct {
  // Start a classifier from a plain encoder (e.g. xlm-roberta-large, a masked LM, or a BertModel
  // saved without the "bert." prefix): when classifier.weight/bias are absent, draw them from seed
  // (weight normal with std 0.02, bias zero, as transformers initializes a new head) instead of
  // failing. Any other missing weight is still an error.
  int new_head;
  int num_labels;  // > 0: the classifier's outputs (labels named LABEL_<i>), replacing config.json's
  uint64_t seed;
} encoder_load_opts;

// Load a folder into dtype on dev; opts may be NULL (every weight must be in the files). Extra
// tensors (a pooler, an MLM head, position_ids buffers) are ignored. An error is one line naming
// the file: "DIR/model.safetensors: tensor 'bert.embeddings.LayerNorm.bias' is missing".
encoder_model *encoder_folder_load(const char *dir, pt_dtype dtype, pt_device dev, const encoder_load_opts *opts,
                                   pith_err *err);
// Write config.json and model.safetensors (weights in the model's dtype) into dir, creating it.
int encoder_folder_save(const encoder_model *m, const char *dir, pith_err *err);
// encoder_folder_save, then files (n paths: a tokenizer's, from tokenizer_source_files) copied beside
// the weights under their base names, a config.json among them left out, so that the folder is a
// whole model for transformers' Auto classes and for LLMLingua-2.
int encoder_folder_save_with_files(const encoder_model *m, const char *dir, const char *const *files, int n,
                                   pith_err *err);

#endif
