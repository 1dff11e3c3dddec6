#include "cli/commands.h"
#include "core/ei_args.h"

#include <stdio.h>

int ei_cmd_selfcheck(int argc, char **argv) {
    ei_arg opts[] = {{0}};
    int rc = ei_args_parse(argc, argv, "ei selfcheck", "Checks the autograd engine.", opts, NULL, NULL);
    if (rc) return rc < 0 ? 2 : 0;
    printf("selfcheck: (autograd pending)\n");
    return 0;
}
