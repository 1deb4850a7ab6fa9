#include "cli/commands.h"

#include <stdio.h>

int cmd_evaluate(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "distml: error: 'evaluate' is not built yet\n");
    return 1;
}
