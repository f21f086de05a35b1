// align: how well a small scorer LM agrees with the target LLM it stands in for (the scorer half of
// pith: hard compression keeps or drops tokens by the scorer's surprisal, so it should rank tokens
// as the target would). On held-out text, each text read as [bos] text by both models:
//   kl        mean over predicted tokens of KL(target || scorer) of the next-token distributions,
//             sum_v p_t(v) (log p_t(v) - log p_s(v)), in nats;
//   spearman  Spearman's rank correlation (average ranks for ties) of the per-token surprisal
//             -log p(x_{i+1} | x_<=i) under the scorer and under the target, over every predicted
//             token of every text pooled;
//   nll_*     the mean surprisal under each.
// Also here: the checks that pair a scorer with a target (a causal LM; one vocabulary), shared by
// pith distill and pith eval --task align.
#ifndef PITH_ALIGN_H
#define PITH_ALIGN_H

#include <stdint.h>

#include "base.h"
#include "llama.h"
#include "lora.h"

typedef struct {
  int64_t n_texts, n_tokens;  // texts read, tokens predicted
  double kl;
  double spearman;
  double nll_target, nll_scorer;
} align_result;

// Per-position KL(target || scorer) at temperature T: logits (..., V) each (f32 or lower; the
// vocabularies are cut to the smaller V) → (...) f32, sum_v p_t (log p_t - log p_s) with p =
// softmax(logits / T). Differentiable in scorer_logits. NULL with the shim's error pending.
pt_tensor *align_kl_per_token(const pt_tensor *target_logits, const pt_tensor *scorer_logits, double T);

// Measure over the first `limit` records (0: all) of a corpus split (CORPUS_SPLIT_*, or -1 for
// every split), in corpus order: documents read their text, QA corpora their context, each cut to
// max_len - 1 tokens after bos. Runs with gradients off on the models' device. n_texts 0 (no text of
// two tokens or more) is an error naming the file.
// scorer_lora: the scorer's adapter, or NULL.
int align_measure(const llama_model *target, const llama_model *scorer, const lora_adapter *scorer_lora, int32_t bos,
                  const char *corpus_path, int split, int64_t limit, int max_len, align_result *r, pith_err *err);

// Spearman's rho of x and y (n each) with average ranks for ties; NAN when n < 2 or either is constant.
double align_spearman(const double *x, const double *y, int64_t n);

// dir is a Hugging Face causal LM pith reads: config.json present, its "architectures" (when
// given) a *ForCausalLM, its model_type llama, mistral or qwen2, and its weights present
// (model.safetensors or model.safetensors.index.json). One line naming the file otherwise.
int align_check_causal_lm(const char *dir, const char *role, pith_err *err);

// The tokenizers of the two folders have one vocabulary (same size, same piece at every id, same
// bos): compared by content, not path. eos ids may differ (an instruct model often adds one to its
// base's). One line naming both folders otherwise.
int align_check_same_vocab(const char *target_dir, const char *scorer_dir, pith_err *err);

// `pith eval --task align ...` (argv from "eval" on); the exit code.
int align_cmd(int argc, char **argv);

#endif
