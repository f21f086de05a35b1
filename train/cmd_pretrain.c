// pith pretrain: train a compressor to regenerate texts from their compress tokens.
#include "commands.h"
#include "compress_train.h"

int cmd_pretrain(int argc, char **argv) { return compress_train_main(TRAIN_PRETRAIN, argc, argv); }
