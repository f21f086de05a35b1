// train_args: the trainers' schemas and their typed reading (see train_args.h).
#include "train_args.h"

#include <string.h>

// Keys every driver reads.
static const rc_key COMMON_KEYS[] = {
    {"tokenizer", RC_STRING, "", "tokenizer file or folder (default: the model folder)", NULL},
    {"output_dir", RC_STRING, "", "run folder (default runs/RUN_NAME)", NULL},
    {"per_device_train_batch_size", RC_INT, "4", "examples per micro-batch", "[1,inf)"},
    {"gradient_accumulation_steps", RC_INT, "1", "micro-batches per optimizer step", "[1,inf)"},
    {"learning_rate", RC_FLOAT, "1e-4", "peak learning rate", "[0,inf)"},
    {"weight_decay", RC_FLOAT, "0", "AdamW decoupled weight decay", "[0,inf)"},
    {"adam_beta1", RC_FLOAT, "0.9", "", "[0,1)"},
    {"adam_beta2", RC_FLOAT, "0.999", "", "[0,1)"},
    {"adam_epsilon", RC_FLOAT, "1e-8", "", "(0,inf)"},
    {"lr_scheduler_type", RC_STRING, "constant", "the learning-rate schedule after warmup",
     "constant|cosine|linear"},
    {"warmup_steps", RC_INT, "300", "linear warmup steps", "[0,inf)"},
    {"num_train_epochs", RC_FLOAT, "3", "epochs over the train split (when max_steps is -1)", "(0,inf)"},
    {"max_steps", RC_INT, "-1", "optimizer steps (-1: from num_train_epochs)", "-1|[1,inf)"},
    {"max_grad_norm", RC_FLOAT, "1.0", "gradient clipping (0: off)", "[0,inf)"},
    {"seed", RC_INT, "42", "initialisation, shuffling and dropout", "[0,inf)"},
    {"logging_steps", RC_INT, "10", "metrics every N steps", "[1,inf)"},
    {"eval_steps", RC_INT, "0", "validation loss every N steps (0: at the end only)", "[0,inf)"},
    {"eval_batches", RC_INT, "8",
     "validation batches per evaluation (with ranks: of per_device_train_batch_size x ranks rows, shared out)",
     "[1,inf)"},
    {"save_steps", RC_INT, "500", "checkpoint every N steps (and at the end)", "[0,inf)"},
    {"save_total_limit", RC_INT, "3", "checkpoints kept (0: all)", "[0,inf)"},
    {"bf16", RC_BOOL, "false",
     "CUDA: the frozen model in bf16, computing in bf16, the trainable weights and optimizer in f32; CPU "
     "runs in f32; pith lm refuses it (it trains every weight)", NULL},
    {"gradient_checkpointing", RC_BOOL, "false",
     "activation checkpointing: each layer keeps only its input for the backward pass and runs again there "
     "(about a third more compute per step for far less activation memory; the same losses and gradients)", NULL},
    {"loss_chunk_rows", RC_INT, "0",
     "> 0: the LM head and its cross-entropy run this many tokens at a time and again in the backward pass, "
     "never holding the whole (tokens x vocabulary) logits (0: all at once); the same loss to float rounding",
     "[0,inf)"},
    {"fused_kernels", RC_BOOL, "false",
     "CUDA: RMSNorm (with the residual add), SwiGLU, RoPE and LoRA's dropout as pith's fused kernels, forward "
     "and backward, "
     "instead of several libtorch ops each (the same results to float rounding; new, and not yet run on a "
     "GPU: scripts/gpu-check checks them); cuda devices only", NULL},
    {"device", RC_STRING, "cpu", "cpu | cuda | cuda:N", NULL},
    {"threads", RC_INT, "0", "CPU threads (0: libtorch's default)", "[0,inf)"},
    {"ddp_overlap", RC_BOOL, "true",
     "torchrun (WORLD_SIZE > 1): all-reduce each gradient bucket as soon as the backward pass has filled it, "
     "while it goes on (false: every bucket after the backward pass); the same numbers either way", NULL},
    {"nan_policy", RC_STRING, "stop", "on a NaN/Inf loss or gradient: stop, or skip the step", "stop|skip"},
    {"peak_tflops", RC_FLOAT, "0",
     "the device's peak TFLOP/s at the compute dtype, for MFU in the progress line (0: no MFU); e.g. 989 "
     "for an H100 SXM in bf16", "[0,inf)"},
    {"tensorboard", RC_BOOL, "true",
     "TensorBoard event files in the run folder (events.out.tfevents.*): every scalar of metrics.jsonl", NULL},
};

// pretrain / finetune: a compressor over a frozen model.
static const rc_key COMPRESS_KEYS[] = {
    {"model_name_or_path", RC_STRING, NULL, "Hugging Face model folder of the frozen LLM", NULL},
    {"train_file", RC_STRING, NULL, "corpus (HDF5, from pith data ingest): documents to pretrain, QA to finetune", NULL},
    {"run_name", RC_STRING, "compress", "name of the run", NULL},
    {"method", RC_STRING, "500x", "the compressor", "500x|icae"},
    {"num_compress_tokens", RC_INT, "16", "k: compress (memory) tokens", "[1,inf)"},
    {"position_policy", RC_STRING, "consistent", "500x key positions (reference: as the paper's code)",
     "reference|consistent"},
    {"cutoff_len", RC_INT, "500", "context tokens per example (cut or padded)", "[1,inf)"},
    {"max_target_len", RC_INT, "64", "finetune: decoder tokens (question prompt + answer + eos)", "[1,inf)"},
    {"lora_rank", RC_INT, "64", "", "[1,inf)"},
    {"lora_alpha", RC_FLOAT, "32", "", "(0,inf)"},
    {"lora_dropout", RC_FLOAT, "0.05", "", "[0,1)"},
    {"lora_target", RC_STRING, "q_proj,v_proj", "projections to adapt (PEFT names) or all", NULL},
    {"init_from", RC_STRING, "", "finetune: a pretrain run folder or checkpoint folder to start from", NULL},
};

// lm: the base model itself, every weight.
static const rc_key LM_KEYS[] = {
    {"model_name_or_path", RC_STRING, "", "model folder to continue training (or set model_config)", NULL},
    {"model_config", RC_STRING, "", "a config.json: start from random weights of this shape instead", NULL},
    {"train_file", RC_STRING, NULL,
     "corpus (HDF5): documents ([bos] text eos) or QA ([bos] context Question: q Answer: a eos)", NULL},
    {"run_name", RC_STRING, "lm", "name of the run", NULL},
    {"cutoff_len", RC_INT, "512", "documents: tokens per row; QA: context tokens", "[1,inf)"},
    {"max_target_len", RC_INT, "64", "QA: question prompt + answer + eos tokens", "[1,inf)"},
    {"answer_loss_weight", RC_FLOAT, "1",
     "QA: weight of the answer and eos tokens in the loss (others 1); > 1 speeds up learning to answer",
     "(0,inf)"},
    {"no_layer0_share", RC_FLOAT, "0",
     "QA: share of micro-batches where the context reaches the question only as its own per-layer K/V with "
     "layer 0's zeroed (the answer's loss): a regulariser that makes a toy base read context after layer 0, "
     "as real LLMs do, so that a 500x prefix can carry what it reads; not part of any compressor",
     "[0,1]"},
};

// distill: a scorer (every weight) aligned to a frozen target LLM.
static const rc_key DISTILL_KEYS[] = {
    {"method", RC_STRING, "kl",
     "sft (fine-tune on the target's generations) | kl (token-level KL(target||scorer)) | classifier "
     "(LLMLingua-2's keep/drop token classifier)", "sft|kl|classifier"},
    {"model_name_or_path", RC_STRING, "",
     "the scorer: a Hugging Face LLaMA-family folder (every weight trains); classifier: a BERT / XLM-R folder", NULL},
    {"model_config", RC_STRING, "",
     "classifier: a BERT / XLM-R config.json to start from random weights (with tokenizer) instead", NULL},
    {"finetuning_type", RC_STRING, "full",
     "full (every weight of the scorer) | lora (adapters, merged into RUN/model at the end)", "full|lora"},
    {"lora_rank", RC_INT, "8", "finetuning_type lora", "[1,inf)"},
    {"lora_alpha", RC_FLOAT, "16", "finetuning_type lora", "(0,inf)"},
    {"lora_dropout", RC_FLOAT, "0", "finetuning_type lora", "[0,1)"},
    {"lora_target", RC_STRING, "all", "finetuning_type lora: projections to adapt (PEFT names) or all", NULL},
    {"target_model_name_or_path", RC_STRING, "",
     "the target LLM (teacher): a Hugging Face LLaMA-family folder with the scorer's vocabulary (frozen); "
     "classifier: labels its own llmlingua compression of train_file", NULL},
    {"train_file", RC_STRING, "",
     "corpus (HDF5): kl trains on it; sft draws prompts from its train split; held-out KL on its val split; "
     "classifier: the texts the target labels", NULL},
    {"run_name", RC_STRING, "distill", "name of the run", NULL},
    {"cutoff_len", RC_INT, "256", "tokens per training row (documents; QA: context tokens)", "[1,inf)"},
    {"max_target_len", RC_INT, "64", "QA corpora: question prompt + answer + eos tokens", "[1,inf)"},
    {"temperature", RC_FLOAT, "1", "kl: both distributions at this temperature; the loss is scaled by its square", "(0,inf)"},
    {"generated_file", RC_STRING, "",
     "sft: the target's generations (HDF5); an existing file is reused, else it is generated there ('': "
     "RUN/generated.h5)", NULL},
    {"generation_num_prompts", RC_INT, "256", "sft: prompts drawn from train_file's train split (corpus order)", "[1,inf)"},
    {"generation_prompt_len", RC_INT, "32", "sft: tokens of each record the target continues", "[1,inf)"},
    {"generation_max_new_tokens", RC_INT, "96", "sft: tokens generated per prompt (stops early at eos)", "[1,inf)"},
    {"generation_temperature", RC_FLOAT, "1", "sft: 0 = greedy; else sampling at this temperature (seeded by seed)", "[0,inf)"},
    {"generation_top_p", RC_FLOAT, "1", "sft: nucleus sampling mass", "(0,1]"},
    {"align_docs", RC_INT, "32", "held-out texts of train_file's val split for KL(target||scorer) (0: none)", "[0,inf)"},
    {"label_file", RC_STRING, "",
     "classifier: JSONL pairs {\"original\", \"compressed\"} aligned word by word, or {\"original\", \"keep\"} "
     "word labels as RUN/labels.jsonl has them ('': labels from the target)", NULL},
    {"label_rate", RC_FLOAT, "0.5", "classifier, target labels: the rate llmlingua compresses train_file's texts at",
     "(0,1]"},
    {"label_num_texts", RC_INT, "1000", "classifier, target labels: texts of train_file (corpus order) to label",
     "[2,inf)"},
    {"label_iterative_size", RC_INT, "200",
     "classifier, target labels: llmlingua's window (a text's last partial window is kept whole)", "[1,inf)"},
    {"label_window", RC_INT, "150", "classifier, label_file: how far (words) a compressed word is looked for",
     "[1,inf)"},
    {"label_max_unmatched", RC_FLOAT, "0.1",
     "classifier, label_file: the share of a pair's compressed words that may find no match", "[0,1]"},
    {"label_skip_unaligned", RC_BOOL, "false",
     "classifier, label_file: skip (and count) a pair that does not align instead of refusing the file", NULL},
    {"val_size", RC_FLOAT, "0.1", "classifier: the share of labeled texts held out (the last ones)", "(0,1)"},
};

static void add_keys(rc_key *out, int *n, const rc_key *keys, size_t count) {
  for (size_t i = 0; i < count; i++) out[(*n)++] = keys[i];
}

int train_args_schema(train_task task, rc_key *out) {
  int n = 0;
  if (task == TRAIN_LM) add_keys(out, &n, LM_KEYS, sizeof LM_KEYS / sizeof LM_KEYS[0]);
  else if (task == TRAIN_DISTILL) add_keys(out, &n, DISTILL_KEYS, sizeof DISTILL_KEYS / sizeof DISTILL_KEYS[0]);
  else add_keys(out, &n, COMPRESS_KEYS, sizeof COMPRESS_KEYS / sizeof COMPRESS_KEYS[0]);
  add_keys(out, &n, COMMON_KEYS, sizeof COMMON_KEYS / sizeof COMMON_KEYS[0]);
  return n;
}

static int distill_args_read(train_args *a, const run_config *c, pith_err *err) {
  a->answer_loss_weight = 1;  // kl weighs every token alike; sft's generations are documents
  const char *method = run_config_str(c, "method");
  if (!strcmp(method, "sft")) a->distill = DISTILL_SFT;
  else if (!strcmp(method, "kl")) a->distill = DISTILL_KL;
  else if (!strcmp(method, "classifier")) a->distill = DISTILL_CLASSIFIER;
  else return pith_fail(err, "method: '%s' is not sft, kl or classifier", method);
  const char *ft = run_config_str(c, "finetuning_type");
  if (strcmp(ft, "full") && strcmp(ft, "lora")) return pith_fail(err, "finetuning_type: '%s' is not full or lora", ft);
  a->distill_lora = !strcmp(ft, "lora");
  a->lora_rank = (int)run_config_int(c, "lora_rank");
  a->lora_alpha = run_config_float(c, "lora_alpha");
  a->lora_dropout = run_config_float(c, "lora_dropout");
  a->lora_target = run_config_str(c, "lora_target");
  a->target_model_name_or_path = run_config_str(c, "target_model_name_or_path");
  a->temperature = run_config_float(c, "temperature");
  if (!(a->temperature > 0)) return pith_fail(err, "temperature: %g must be > 0", a->temperature);
  a->generated_file = run_config_str(c, "generated_file");
  a->generation_num_prompts = (int)run_config_int(c, "generation_num_prompts");
  a->generation_prompt_len = (int)run_config_int(c, "generation_prompt_len");
  a->generation_max_new_tokens = (int)run_config_int(c, "generation_max_new_tokens");
  a->generation_temperature = run_config_float(c, "generation_temperature");
  a->generation_top_p = run_config_float(c, "generation_top_p");
  a->align_docs = (int)run_config_int(c, "align_docs");
  a->align_file = a->train_file;
  a->model_config = run_config_str(c, "model_config");
  a->label_file = run_config_str(c, "label_file");
  a->label_rate = run_config_float(c, "label_rate");
  a->label_num_texts = run_config_int(c, "label_num_texts");
  a->label_iterative_size = (int)run_config_int(c, "label_iterative_size");
  a->label_window = run_config_int(c, "label_window");
  a->label_max_unmatched = run_config_float(c, "label_max_unmatched");
  a->label_skip_unaligned = run_config_bool(c, "label_skip_unaligned");
  a->val_size = run_config_float(c, "val_size");
  return 0;
}

int train_args_read(train_args *a, train_task task, const run_config *c, pith_err *err) {
  memset(a, 0, sizeof *a);
  a->task = task;
  a->tokenizer = run_config_str(c, "tokenizer");
  a->output_dir = run_config_str(c, "output_dir");
  a->per_device_train_batch_size = (int)run_config_int(c, "per_device_train_batch_size");
  a->gradient_accumulation_steps = (int)run_config_int(c, "gradient_accumulation_steps");
  a->learning_rate = run_config_float(c, "learning_rate");
  a->weight_decay = run_config_float(c, "weight_decay");
  a->adam_beta1 = run_config_float(c, "adam_beta1");
  a->adam_beta2 = run_config_float(c, "adam_beta2");
  a->adam_epsilon = run_config_float(c, "adam_epsilon");
  const char *sched = run_config_str(c, "lr_scheduler_type");  // resolve allowed only these three
  a->lr_scheduler_type = !strcmp(sched, "cosine")   ? TRAIN_LR_COSINE
                         : !strcmp(sched, "linear") ? TRAIN_LR_LINEAR
                                                    : TRAIN_LR_CONSTANT;
  a->warmup_steps = run_config_int(c, "warmup_steps");
  a->num_train_epochs = run_config_float(c, "num_train_epochs");
  a->max_steps = run_config_int(c, "max_steps");
  a->max_grad_norm = run_config_float(c, "max_grad_norm");
  a->seed = (uint64_t)run_config_int(c, "seed");
  a->logging_steps = run_config_int(c, "logging_steps");
  a->eval_steps = run_config_int(c, "eval_steps");
  a->eval_batches = (int)run_config_int(c, "eval_batches");
  a->save_steps = run_config_int(c, "save_steps");
  a->save_total_limit = (int)run_config_int(c, "save_total_limit");
  a->bf16 = run_config_bool(c, "bf16");
  a->gradient_checkpointing = run_config_bool(c, "gradient_checkpointing");
  a->loss_chunk_rows = run_config_int(c, "loss_chunk_rows");
  a->fused_kernels = run_config_bool(c, "fused_kernels");
  a->threads = (int)run_config_int(c, "threads");
  a->ddp_overlap = run_config_bool(c, "ddp_overlap");
  a->nan_skip = !strcmp(run_config_str(c, "nan_policy"), "skip");  // or "stop": resolve checked it
  a->peak_tflops = run_config_float(c, "peak_tflops");
  a->tensorboard = run_config_bool(c, "tensorboard");
  a->model_name_or_path = run_config_str(c, "model_name_or_path");
  a->train_file = run_config_str(c, "train_file");
  a->run_name = run_config_str(c, "run_name");
  a->cutoff_len = (int)run_config_int(c, "cutoff_len");
  a->max_target_len = (int)run_config_int(c, "max_target_len");
  pith_err why = {{0}};
  if (pt_device_parse(run_config_str(c, "device"), &a->device, &why)) return pith_fail(err, "device %s", why.msg);
  if (task == TRAIN_LM) {
    a->model_config = run_config_str(c, "model_config");
    a->answer_loss_weight = run_config_float(c, "answer_loss_weight");
    a->no_layer0_share = run_config_float(c, "no_layer0_share");
    return 0;
  }
  if (task == TRAIN_DISTILL) return distill_args_read(a, c, err);
  a->model_config = "";
  a->answer_loss_weight = 1;
  // Enumerations: resolve allowed only their names.
  a->method = !strcmp(run_config_str(c, "method"), "icae") ? COMP_ICAE : COMP_500X;
  a->position_policy =
      !strcmp(run_config_str(c, "position_policy"), "reference") ? COMP_POS_REFERENCE : COMP_POS_CONSISTENT;
  a->num_compress_tokens = (int)run_config_int(c, "num_compress_tokens");
  a->lora_rank = (int)run_config_int(c, "lora_rank");
  a->lora_alpha = run_config_float(c, "lora_alpha");
  a->lora_dropout = run_config_float(c, "lora_dropout");
  a->lora_target = run_config_str(c, "lora_target");
  a->init_from = run_config_str(c, "init_from");
  return 0;
}
