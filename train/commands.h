// commands: the subcommands of the `pith` binary. Each lives in its own file train/cmd_NAME.c
// and is listed once in the table in train/main.c. A command gets argv from its own name on,
// prints its own --help, and returns the process exit code (0 ok, 1 failure, 2 usage error).
#ifndef PITH_COMMANDS_H
#define PITH_COMMANDS_H

int cmd_bench(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_data(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_pretrain(int argc, char **argv);
int cmd_finetune(int argc, char **argv);
int cmd_lm(int argc, char **argv);
int cmd_distill(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_compress(int argc, char **argv);
// pith data generate (train/data_generate.c), a subcommand of cmd_data.
int data_generate(int argc, char **argv);

#endif
