// export_scorer: a scorer trained by `pith distill` (RUN/model) out of its run folder into a Hugging
// Face folder the ecosystem loads unchanged, with a manifest saying what it is and how it was made.
//
// `export_scorer_run` reads RUN/config.yaml (method sft, kl or classifier), RUN/model and
// RUN/metrics.jsonl and writes one folder:
//
//   OUT/config.json, model.safetensors (or shards + model.safetensors.index.json), the tokenizer's
//   files (tokenizer.json, tokenizer_config.json, ...): RUN/model's files, copied byte for byte, so
//   AutoModelForCausalLM (a causal-lm scorer; LLMLingua's PromptCompressor(model_name=OUT)) or
//   AutoModelForTokenClassification (a token-classifier; LLMLingua-2) loads OUT as it is.
//   OUT/manifest.json  {"format": "pith-scorer-export", "format_version": 1,
//                       "kind": "causal-lm"|"token-classifier", "model_type",
//                       "alignment": {"method", "finetuning_type", "temperature"(kl)},
//                       "target": {"path" (absolute when it resolves), "path_as_configured",
//                                  "weights_file", "weights_sha256" (null when not readable now)},
//                       "metrics": {"initial": {"step", "val_kl", "val_spearman", ...},
//                                   "final": {"step", ...}}   (metrics.jsonl's val_* records: the
//                                   first step that logged any, step 0 = the unaligned scorer, and
//                                   the last), "weights_sha256" (the scorer's), "files": {name: bytes},
//                       "source": {"run", "config_sha256", "config": {key: value text}},
//                       "created", "pith_version", "command"}
//
// The kind comes from RUN/model/config.json's model_type (llama, mistral, qwen2: causal-lm; bert,
// xlm-roberta: token-classifier) and must agree with the method (classifier: token-classifier).
// The folder is built as OUT.partial and renamed into place (export.h: export_install_folder).
// The target's fingerprint is the one distill records for sft generations: the sha256 of its
// model.safetensors, or of model.safetensors.index.json for a sharded target.
#ifndef PITH_EXPORT_SCORER_H
#define PITH_EXPORT_SCORER_H

#include "base.h"

#define EXPORT_SCORER_FORMAT "pith-scorer-export"
#define EXPORT_SCORER_VERSION 1

typedef struct {
  int force;                 // replace an existing OUT
  const char *pith_version;  // recorded in the manifest; NULL means "dev"
  const char *command;       // the command line, recorded in the manifest; NULL: not recorded
} export_scorer_options;

// What the export wrote, for the caller to print.
typedef struct {
  char kind[32];            // "causal-lm" or "token-classifier"
  char method[32];          // sft, kl, classifier
  char model_type[64];
  int n_files;              // files copied from RUN/model
  int target_found;         // the target's weights were read (their sha256 is in the manifest)
  char target[4096];        // the target as recorded
  int has_initial, has_final;
  double initial_kl, final_kl, initial_spearman, final_spearman;  // NAN when not logged
} export_scorer_info;

// 1 when RUN/config.yaml names a distill method (sft, kl, classifier): a scorer run; 0 otherwise
// (a compressor run, a checkpoint folder, nothing readable).
int export_is_scorer_run(const char *run);

// RUN → OUT as above. Errors (one line, naming the file): OUT exists without force, no
// RUN/config.yaml or a method that is not a scorer's, no RUN/model (a run that has not finished),
// no config.json / weights / tokenizer in it, a model_type that is neither kind or disagrees with
// the method. info may be NULL. 0, or -1 with err.
int export_scorer_run(const char *run, const char *out, const export_scorer_options *opt, export_scorer_info *info,
                      pith_err *err);

#endif
