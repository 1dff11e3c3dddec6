/* `ei`: the host tool. Dispatches to subcommands; see `ei --help`. */
#include "cli/commands.h"
#include "kernels/kernels.h"

#include <stdio.h>
#include <string.h>

static const ei_command ei_commands[] = {
    {"prepare", ei_cmd_prepare, "build HDF5 datasets, evaluation sets and passkey tasks"},
    {"train", ei_cmd_train, "train the EdgeInfinite memory gates (S-SFT; MPI data parallel)"},
    {"export", ei_cmd_export, "checkpoint to gates.safetensors, or a merged model folder"},
    {"generate", ei_cmd_generate, "generate text (modes full, window, edgeinfinite)"},
    {"eval", ei_cmd_eval, "perplexity of a text (--ppl) or loss and exact match on a dataset (--data)"},
    {"compile", ei_cmd_compile, "lower the model into the fixed-shape graphs of a scenario (.eig file)"},
    {"inspect", ei_cmd_inspect, "print what a .eig graph file holds: config, scenario, graphs, precisions"},
    {"tokenize", ei_cmd_tokenize, "text to token ids and back, for any supported tokenizer"},
    {"plot", ei_cmd_plot, "draw training and validation loss from metrics.jsonl as a PNG"},
    {"selfcheck", ei_cmd_selfcheck, "check the autograd engine and the model against finite differences"},
    {"make-model", ei_cmd_make_model, "write a Llama model of any size with random weights (benchmarks)"},
};

static void print_help(void) {
    printf("ei %s: EdgeInfinite, unbounded context for small LLMs on the edge\n\n"
           "usage: ei <command> [options]     (ei <command> --help for details)\n\ncommands:\n",
           EI_VERSION);
    for (size_t i = 0; i < sizeof ei_commands / sizeof ei_commands[0]; i++)
        printf("  %-11s %s\n", ei_commands[i].name, ei_commands[i].summary);
    printf("\n  --version   print the version\n  --help      show this help\n");
}

int main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        print_help();
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("ei %s\n", EI_VERSION);
        return 0;
    }
    /* The commands that run OpenMP teams get a libgomp spin that follows the machine's load
     * (kernels.h, ei_k_process_init: the default spin made 2-thread training 10x slower on a
     * loaded machine, a short one cost 10-20% on an idle one); this re-executes the program once,
     * before anything is printed. */
    static const char *const team_commands[] = {"train", "eval", "generate", "compile"};
    for (size_t i = 0; i < sizeof team_commands / sizeof team_commands[0]; i++)
        if (strcmp(argv[1], team_commands[i]) == 0) ei_k_process_init(argv);
    for (size_t i = 0; i < sizeof ei_commands / sizeof ei_commands[0]; i++)
        if (strcmp(argv[1], ei_commands[i].name) == 0) return ei_commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "ei: error: unknown command '%s' (see ei --help)\n", argv[1]);
    return 2;
}
