// generate: text generation with a KV cache over llama_forward, and the sampler it uses.
//
// The cache is the prefix llama_forward already takes: the prompt runs once with want_kv, then
// every new token is one forward of T = 1 whose K/V are appended to the cache. An optional
// initial prefix (per-layer K/V, e.g. the compress tokens of 500xCompressor) is attended to by
// the prompt and everything after it, and positions continue after it, as with Hugging Face's
// past_key_values. Runs with gradients off. Batch size 1 only.
//
// Sampling happens on the CPU in double precision: greedy (temperature 0, the first maximum as
// torch.argmax), or softmax(logits / temperature) restricted to the nucleus (the smallest set of
// most likely tokens whose mass reaches top_p), drawn with a splitmix64 generator seeded by
// `seed`, so the same seed gives the same tokens on any device.
#ifndef PITH_GENERATE_H
#define PITH_GENERATE_H

#include <stdint.h>

#include "base.h"
#include "llama.h"

typedef struct {
  int max_new_tokens;      // > 0
  double temperature;      // 0 = greedy; > 0 scales the logits before sampling
  double top_p;            // (0, 1]; 1 = the whole distribution
  uint64_t seed;           // for temperature > 0
  const int32_t *eos_ids;  // (n_eos): generating any of them stops (it is kept in the output)
  int n_eos;
} gen_config;

// Greedy, top_p 1, max_new_tokens 256, no eos.
gen_config gen_config_default(void);

// A 64-bit PRNG (splitmix64) for sampling; the state is the whole generator.
typedef struct {
  uint64_t state;
} gen_rng;
gen_rng gen_rng_new(uint64_t seed);
double gen_rng_uniform(gen_rng *r);  // [0, 1), 53 bits

// One token from logits (vocab) under cfg's temperature and top_p; rng is used only when
// temperature > 0 (one draw per call). Returns the id, or -1 for vocab <= 0, logits that are all
// NaN, or a failed allocation.
int32_t gen_sample(const float *logits, int vocab, const gen_config *cfg, gen_rng *rng);

// Generates up to cfg->max_new_tokens after the prompt.
//   m, lora: the model; lora NULL for the base model alone.
//   prefix_k, prefix_v: NULL, or n_layers each of (1, Hkv, P, hd) in the model's dtype and device,
//     already rotated (what llama_forward returns with want_kv); the caller keeps ownership.
//   prompt: (n_prompt) ids, n_prompt >= 1; its positions are P..P+n_prompt-1.
//   on_token: NULL, or called with each new id as it is chosen; a nonzero return stops after it.
//   *out: malloc'd (n_out) new ids (the caller frees; never NULL on success), the eos that
//     stopped generation included.
// Generation also stops when the context (P + prompt + new) reaches cfg.max_seq_len.
// Returns 0, or -1 with err (a bad config, a prompt id outside the vocabulary, a shim failure);
// no tensor handle outlives the call either way.
int generate(const llama_model *m, const lora_adapter *lora, pt_tensor *const *prefix_k,
             pt_tensor *const *prefix_v, const int32_t *prompt, int n_prompt, const gen_config *cfg,
             int (*on_token)(int32_t id, void *ctx), void *ctx, int32_t **out, int *n_out, pith_err *err);

#endif
