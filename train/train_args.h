// train_args: the keys of `pith pretrain`, `pith finetune`, `pith lm` and `pith distill` (their run_config schemas)
// and a typed struct holding every one of them, filled once after run_config_resolve, so the
// trainer reads fields rather than looking keys up by name. Field names are the key names.
#ifndef PITH_TRAIN_ARGS_H
#define PITH_TRAIN_ARGS_H

#include <stdint.h>

#include "compressor.h"
#include "run_config.h"

typedef enum { TRAIN_PRETRAIN, TRAIN_FINETUNE, TRAIN_LM, TRAIN_DISTILL } train_task;

// pith distill's methods: fine-tune on the target's generations, token-level KL to the target's
// next-token distribution, or a keep/drop token classifier (LLMLingua-2; distill_classifier.h).
typedef enum { DISTILL_SFT, DISTILL_KL, DISTILL_CLASSIFIER } distill_method;

typedef enum { TRAIN_LR_CONSTANT, TRAIN_LR_COSINE, TRAIN_LR_LINEAR } train_lr_schedule;

#define TRAIN_ARGS_MAX_KEYS 64

// Strings point into the run_config they were read from (valid until it is resolved again or freed).
typedef struct {
  train_task task;
  // Every driver.
  const char *tokenizer;               // "" = the model folder
  const char *output_dir;              // "" = runs/RUN_NAME
  int per_device_train_batch_size;
  int gradient_accumulation_steps;
  double learning_rate, weight_decay, adam_beta1, adam_beta2, adam_epsilon;
  train_lr_schedule lr_scheduler_type;  // after warmup
  int64_t warmup_steps;
  double num_train_epochs;
  int64_t max_steps;                   // -1: from num_train_epochs
  double max_grad_norm;
  uint64_t seed;
  int64_t logging_steps, eval_steps;
  int eval_batches;
  int64_t save_steps;
  int save_total_limit;
  int bf16;
  int gradient_checkpointing;          // the trained model's layers run again in the backward pass
  int fused_kernels;                   // CUDA: the fused layer kernels (pt_set_fused_kernels)
  int64_t loss_chunk_rows;             // > 0: the LM head's loss a chunk of tokens at a time
  pt_device device;
  int threads;
  int ddp_overlap;                     // with ranks: gradient all-reduces during the backward pass
  int nan_skip;                        // nan_policy: 1 = skip, 0 = stop
  double peak_tflops;
  int tensorboard;                     // events files beside metrics.jsonl (tb_events.h)
  // pretrain / finetune, and lm where it says so.
  const char *model_name_or_path;      // lm: "" when model_config is set
  const char *train_file;              // lm too
  const char *run_name;                // lm too
  comp_method method;
  int num_compress_tokens;
  comp_position_policy position_policy;
  int cutoff_len;                      // lm too
  int max_target_len;                  // lm too
  int lora_rank;
  double lora_alpha, lora_dropout;
  const char *lora_target;
  const char *init_from;
  // lm only.
  const char *model_config;
  double answer_loss_weight;           // 1 for distill
  double no_layer0_share;              // the no_layer0 regulariser's share of micro-batches (trainer.c)
  // distill only (model_name_or_path is the scorer; train_file the text corpus).
  distill_method distill;              // key "method"
  int distill_lora;                    // finetuning_type: lora (1) or full (0); LoRA keys as above
  const char *target_model_name_or_path;
  double temperature;                  // kl: softmax temperature of both distributions
  const char *generated_file;          // sft: the target's generations ("" = RUN/generated.h5)
  int generation_num_prompts, generation_prompt_len, generation_max_new_tokens;
  double generation_temperature, generation_top_p;
  int align_docs;                      // held-out texts the KL(target||scorer) is measured on
  // distill classifier: labels from label_file (JSONL pairs) or from the target's compression of
  // train_file; the model is model_name_or_path (an encoder folder) or model_config (random weights).
  const char *label_file;              // "" = labels from the target
  double label_rate;                   // target labels: llmlingua's rate
  int64_t label_num_texts;             // target labels: texts of train_file compressed
  int label_iterative_size;            // target labels: llmlingua's window
  int64_t label_window;                // label_file: the alignment's search window (words)
  double label_max_unmatched;          // label_file: share of compressed words allowed no match
  int label_skip_unaligned;            // label_file: skip (1) or refuse (0) a pair that does not align
  double val_size;                     // share of labeled texts held out
  // Set by pith distill, not a key: the corpus whose val split the held-out KL(target||scorer) is
  // measured on (the configured train_file; for sft the driver points train_file at the generations).
  const char *align_file;
} train_args;

// The schema of task into out (TRAIN_ARGS_MAX_KEYS); returns the number of keys.
int train_args_schema(train_task task, rc_key *out);
// Read a resolved config (of train_args_schema(task)). Errors: a method, position_policy or
// device that is not one of the names pith knows.
int train_args_read(train_args *a, train_task task, const run_config *c, pith_err *err);

#endif
