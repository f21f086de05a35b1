// llama_config: the checks of a model's shapes (declared in llama.h), apart from the tensor code so
// that config readers build without libtorch (the fuzz harnesses).
#include "llama.h"

int llama_config_validate(llama_config *c, pith_err *err) {
  if (c->vocab_size <= 0 || c->dim <= 0 || c->hidden_dim <= 0 || c->n_layers <= 0 || c->n_heads <= 0)
    return pith_fail(err, "model config: vocab_size, hidden_size, intermediate_size, num_hidden_layers and "
                          "num_attention_heads must be positive");
  if (c->n_kv_heads <= 0) c->n_kv_heads = c->n_heads;
  if (c->n_heads % c->n_kv_heads)
    return pith_fail(err, "model config: num_attention_heads %d is not a multiple of num_key_value_heads %d",
                     c->n_heads, c->n_kv_heads);
  if (c->head_dim <= 0) {
    if (c->dim % c->n_heads) return pith_fail(err, "model config: hidden_size %d is not a multiple of %d heads", c->dim, c->n_heads);
    c->head_dim = c->dim / c->n_heads;
  }
  if (c->head_dim % 2) return pith_fail(err, "model config: head_dim %d is odd (rotary embeddings need pairs)", c->head_dim);
  if (c->rope_theta <= 0) c->rope_theta = 10000;
  if (c->norm_eps <= 0) c->norm_eps = 1e-6;
  if (c->max_seq_len <= 0) c->max_seq_len = 2048;
  if (c->rope_llama3 && (c->rope_factor <= 0 || c->rope_low_freq_factor <= 0 ||
                         c->rope_high_freq_factor <= c->rope_low_freq_factor || c->rope_original_max_pos <= 0))
    return pith_fail(err, "model config: rope_scaling llama3 needs factor, low_freq_factor < high_freq_factor and "
                          "original_max_position_embeddings");
  return 0;
}
