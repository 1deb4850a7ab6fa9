#include "cli/commands.h"

#include <stdio.h>

int cmd_ingest(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "distml: error: 'ingest' is not built yet\n");
    return 1;
}
