// pith lm: train a base language model (every weight), e.g. the demo's frozen LLM from scratch.
#include "commands.h"
#include "compress_train.h"

int cmd_lm(int argc, char **argv) { return compress_train_main(TRAIN_LM, argc, argv); }
