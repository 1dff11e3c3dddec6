/* Subcommands of the `ei` host tool. Each lives in cli/cmd_<name>.c and returns the process exit
 * code (0 ok, 1 failure, 2 usage error). Add a command: declare it here and list it in cli/ei.c. */
#ifndef EI_CLI_COMMANDS_H
#define EI_CLI_COMMANDS_H

typedef int (*ei_cmd_fn)(int argc, char **argv);

typedef struct {
    const char *name;
    ei_cmd_fn fn;
    const char *summary;
} ei_command;

int ei_cmd_selfcheck(int argc, char **argv);
int ei_cmd_plot(int argc, char **argv);
int ei_cmd_prepare(int argc, char **argv);
int ei_cmd_generate(int argc, char **argv);
int ei_cmd_eval(int argc, char **argv);
int ei_cmd_tokenize(int argc, char **argv);
int ei_cmd_train(int argc, char **argv);
int ei_cmd_export(int argc, char **argv);
int ei_cmd_inspect(int argc, char **argv);
int ei_cmd_compile(int argc, char **argv);
int ei_cmd_make_model(int argc, char **argv);

#endif
