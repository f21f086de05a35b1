// export: a trained compressor out of a training checkpoint into the formats inference paths read,
// and back into pith.
//
// `export_run` reads a checkpoint (checkpoints/train_state.h: params.safetensors, state.json,
// config.yaml) and writes one folder:
//
//   OUT/adapter_config.json        PEFT's LoRA config (peft_type LORA, task_type CAUSAL_LM, r,
//                                  lora_alpha, lora_dropout, target_modules, bias none,
//                                  base_model_name_or_path, ...): PeftModel.from_pretrained reads it
//   OUT/adapter_model.safetensors  the encoder's LoRA under PEFT's names:
//                                  base_model.model.model.layers.{L}.self_attn.q_proj.lora_A.weight
//                                  (rank, in) and ...lora_B.weight (out, rank); mlp.* for
//                                  gate/up/down_proj. __metadata__ {"format": "pt"}
//   OUT/compress.safetensors       "compress" (k, dim): the compress (memory) token embeddings;
//                                  "ae" (1, dim) for ICAE. __metadata__: format, format_version,
//                                  method, k
//   OUT/manifest.json              {"format": "pith-compressor-export", "format_version": 1,
//                                  "method": "500x"|"icae", "k", "position_policy", "ae_token",
//                                  "dim", "base_model" (absolute when it resolves),
//                                  "base_model_as_configured", "tokenizer", "lora": {rank, alpha,
//                                  dropout, target_modules}, "files": {name: bytes},
//                                  "source": {"checkpoint", "step", "config_sha256", "config":
//                                  {key: value text}}, "created", "pith_version"}
//
// The folder is built as OUT.partial and renamed into place once complete (every file fsynced),
// so OUT is either absent, the previous export (with force) or the new one, never half of one.
//
// Paths in the run's config (model_name_or_path, tokenizer) are resolved against the current folder
// at export time, as the training run did; they are recorded absolute when they resolve.
// ICAE exports say "ae_token": true (the AE token precedes the decoder tokens, as pretrain trains
// it); a finetuned ICAE's decoder reads none, and the config does not tell the two apart, so
// callers evaluating QA set comp->cfg.ae_token = 0 after export_load.
//
// The run's config.yaml is read with run_config (data/run_config.h), without a schema.
#ifndef PITH_EXPORT_H
#define PITH_EXPORT_H

#include <stdint.h>

#include "base.h"
#include "compressor.h"

#define EXPORT_FORMAT "pith-compressor-export"
#define EXPORT_VERSION 1
#define EXPORT_MANIFEST "manifest.json"

typedef struct {
  int force;                 // replace an existing OUT
  const char *pith_version;  // recorded in the manifest; NULL means "dev"
} export_options;

// What an export folder says about itself (from manifest.json and adapter_config.json).
typedef struct {
  comp_config comp;           // method, k, position policy, ae_token (ICAE with an AE token)
  lora_config lora;           // rank, alpha, dropout, targets
  int dim;                    // hidden size of the compress embeddings
  int64_t step;               // the source checkpoint's step
  char base_model[4096];      // model folder (absolute when it resolved at export time)
  char tokenizer[4096];       // tokenizer file or folder
  char checkpoint[4096];      // the source checkpoint folder
} export_info;

// SRC is a run folder (its newest complete checkpoint is exported) or a checkpoint folder
// (step-N/ holding DONE). *ckpt_used (when not NULL, len bytes) gets the checkpoint exported.
// Errors (one line): no complete checkpoint, OUT exists without force, a checkpoint whose tensors
// do not match its config. 0, or -1 with err.
int export_run(const char *src, const char *out, const export_options *opt, char *ckpt_used, size_t len,
               pith_err *err);

// partial (a complete export folder) becomes out: fsynced, an existing out swapped aside and removed
// after the rename, so out is the old folder or the new one at every moment. 0, or -1 with err.
int export_install_folder(const char *partial, const char *out, pith_err *err);

// Read and check manifest.json and adapter_config.json of an export folder.
int export_read_info(const char *dir, export_info *info, pith_err *err);

// A compressor over base built from an export folder: the LoRA from adapter_model.safetensors, the
// compress (and AE) embeddings from compress.safetensors, its config from the manifest. Every
// adapter tensor must land in a slot of the right shape and every slot must be filled. *out is
// NULL on error. 0, or -1 with err.
int export_load(const char *dir, const llama_model *base, compressor **out, pith_err *err);

#endif
