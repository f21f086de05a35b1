// encoder_config: the names and checks of an encoder's config (declared in encoder.h), apart from
// the tensor code so that config readers build without libtorch (the fuzz harnesses).
#include <stdio.h>

#include "encoder.h"

const char *encoder_model_type(encoder_arch arch) { return arch == ENCODER_XLM_ROBERTA ? "xlm-roberta" : "bert"; }

const char *encoder_architecture(encoder_arch arch) {
  return arch == ENCODER_XLM_ROBERTA ? "XLMRobertaForTokenClassification" : "BertForTokenClassification";
}

const char *encoder_weight_prefix(encoder_arch arch) { return arch == ENCODER_XLM_ROBERTA ? "roberta" : "bert"; }

const char *encoder_act_name(encoder_act act) {
  switch (act) {
    case ENCODER_ACT_GELU_TANH: return "gelu_pytorch_tanh";
    case ENCODER_ACT_RELU: return "relu";
    case ENCODER_ACT_SILU: return "silu";
    default: return "gelu";
  }
}

int encoder_config_validate(const encoder_config *c, pith_err *err) {
  if (c->arch != ENCODER_BERT && c->arch != ENCODER_XLM_ROBERTA) return pith_fail(err, "encoder config: unknown architecture");
  struct {
    const char *name;
    int value;
  } pos[] = {{"vocab_size", c->vocab_size},         {"hidden_size", c->dim},
             {"num_hidden_layers", c->n_layers},    {"num_attention_heads", c->n_heads},
             {"intermediate_size", c->hidden_dim},  {"max_position_embeddings", c->max_positions},
             {"type_vocab_size", c->type_vocab_size}, {"num_labels", c->num_labels}};
  for (size_t i = 0; i < sizeof pos / sizeof pos[0]; i++)
    if (pos[i].value <= 0) return pith_fail(err, "encoder config: %s must be positive, not %d", pos[i].name, pos[i].value);
  if (c->dim % c->n_heads)
    return pith_fail(err, "encoder config: hidden_size %d is not a multiple of num_attention_heads %d", c->dim, c->n_heads);
  if (c->num_labels > ENCODER_MAX_LABELS)
    return pith_fail(err, "encoder config: %d labels, at most %d are supported", c->num_labels, ENCODER_MAX_LABELS);
  if (c->pad_id < 0 || c->pad_id >= c->vocab_size)
    return pith_fail(err, "encoder config: pad_token_id %d is outside the vocabulary of %d", c->pad_id, c->vocab_size);
  // XLM-R's positions start after padding_idx, so the table must hold more than that.
  if (c->arch == ENCODER_XLM_ROBERTA && c->pad_id + 1 >= c->max_positions)
    return pith_fail(err, "encoder config: max_position_embeddings %d leaves no position after pad_token_id %d",
                     c->max_positions, c->pad_id);
  if (!(c->norm_eps > 0)) return pith_fail(err, "encoder config: layer_norm_eps must be positive");
  if (c->act < ENCODER_ACT_GELU || c->act > ENCODER_ACT_SILU) return pith_fail(err, "encoder config: unknown hidden_act");
  double drops[3] = {c->hidden_dropout, c->attention_dropout, c->classifier_dropout};
  const char *names[3] = {"hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout"};
  for (int i = 0; i < 3; i++)
    if (drops[i] >= 1 || (i < 2 && drops[i] < 0))
      return pith_fail(err, "encoder config: %s %g is outside [0, 1)", names[i], drops[i]);
  return 0;
}
