/* A small declarative command-line parser so every subcommand gets the same --help, the same
 * "--name value" / "--name=value" forms, and errors that name the option.
 *
 *   const char *model = NULL; int steps = 10; int verbose = 0;
 *   ei_arg opts[] = {
 *       {"model", EI_ARG_STR, &model, "PATH", "model file or folder (required)"},
 *       {"steps", EI_ARG_INT, &steps, "N", "number of steps"},
 *       {"verbose", EI_ARG_FLAG, &verbose, NULL, "print more"},
 *       {0}};
 *   int rc = ei_args_parse(argc, argv, "ei train", "Trains the gates.", opts, &pos, &npos);
 *   rc: 0 parsed, 1 help was printed (exit 0), -1 error was printed (exit 2).
 *
 * Defaults are whatever the destination holds before the call; --help prints them. Positional
 * arguments are returned in *pos (pointers into argv; *pos is malloc'd, caller frees).
 *
 * A numeric option's row may be followed by EI_ARG_RANGE(lo, hi): a value outside [lo, hi] is then
 * a usage error naming the option, the value and the range, and --help shows the range. Every
 * numeric option of the ei commands has one, so "--threads 0", "-1" and "1e30" never reach the
 * code. (A row of its own keeps ei_arg's five fields, so tables elsewhere compile unchanged.) */
#ifndef EI_ARGS_H
#define EI_ARGS_H

#include <stdint.h>

typedef enum {
    EI_ARG_STR,    /* const char **       */
    EI_ARG_INT,    /* int *               */
    EI_ARG_I64,    /* int64_t *           */
    EI_ARG_FLOAT,  /* double *            */
    EI_ARG_FLAG,   /* int *, set to 1     */
    EI_ARG_LIST,   /* ei_arg_list *: option may repeat, values collected */
    EI_ARG_RANGE_ROW, /* not an option: the range of the row before (EI_ARG_RANGE) */
} ei_arg_kind;

typedef struct {
    const char **items; /* pointers into argv; malloc'd array, caller frees */
    int n;
} ei_arg_list;

typedef struct {
    const char *name; /* without leading dashes; NULL ends the table */
    ei_arg_kind kind;
    void *dst;
    const char *metavar;
    const char *help;
} ei_arg;

/* The accepted values [lo, hi] (inclusive) of the option in the row before it. */
#define EI_ARG_RANGE(lo, hi) {"", EI_ARG_RANGE_ROW, (double[2]){(lo), (hi)}, NULL, NULL}

int ei_args_parse(int argc, char **argv, const char *prog, const char *description, const ei_arg *opts,
                  char ***pos, int *npos);
void ei_args_print_help(const char *prog, const char *description, const ei_arg *opts);

#endif
