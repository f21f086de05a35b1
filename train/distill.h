// distill: the pieces of `pith distill` that are not the trainer's (trainer.h runs the steps): the
// checks that refuse a run before it makes a folder, the target's generations for `method: sft`
// (LLMLingua's distribution alignment: fine-tune the scorer on what the target writes), and the
// token-level loss of `method: kl`.
#ifndef PITH_DISTILL_H
#define PITH_DISTILL_H

#include "compressor.h"
#include "llama.h"
#include "lora.h"
#include "train_args.h"

// Everything that can be checked before the run folder exists: the method is built, the target
// and the scorer are causal LMs pith reads with one vocabulary, train_file (and an existing
// generated_file) open as corpora, the generation settings are sane. One line naming the file.
int distill_preflight(const train_args *a, pith_err *err);

// sft: the target continues prompts from train_file's train split (corpus order, the first
// generation_num_prompts records of at least one token): [bos] + the record's first
// generation_prompt_len tokens, up to generation_max_new_tokens new ones (greedy at temperature 0,
// else sampled with seed a->seed + the prompt's index, so the file is the same on any device).
// Each prompt and its continuation (a final eos dropped) is one document of a documents corpus
// written atomically at out_path, with its provenance: the command (target folder and its weights'
// sha256, decoding settings, seed) and, as sources, train_file and the target's weights file.
int distill_generate(const train_args *a, const char *out_path, pith_err *err);

// kl: mean over the batch's targets (dec_targets != TASK_NO_TARGET) of KL(target || scorer) of
// the next-token distributions at temperature T, times T^2 (Hinton et al.: gradients of the same
// size at any T). The target runs with gradients off. A scalar f32 in the current scope.
// scorer_lora: its adapter (finetuning_type lora) or NULL; g: LoRA dropout's generator or NULL.
pt_tensor *distill_kl_loss(const llama_model *target, const llama_model *scorer, const lora_adapter *scorer_lora,
                           pt_gen *g, const comp_batch *b, double T, pith_err *err);

// finetuning_type lora: W += (alpha / rank) B A for every adapted projection of the scorer (gradients
// off), so that RUN/model is a plain model folder any reader takes.
int distill_lora_merge(llama_model *m, const lora_adapter *l, pith_err *err);

#endif
