#include "cli/commands.h"

#include <stdio.h>

int cmd_train(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "distml: error: 'train' is not built yet\n");
    return 1;
}
