// pith finetune: train a compressor (usually from a pretrained one) to answer questions.
#include "commands.h"
#include "compress_train.h"

int cmd_finetune(int argc, char **argv) { return compress_train_main(TRAIN_FINETUNE, argc, argv); }
