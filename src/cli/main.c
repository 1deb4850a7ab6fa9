/*
 * distml: one binary, one subcommand per pipeline step.
 */
#include "cli/commands.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"ingest", cmd_ingest, "validate the Fashion-MNIST IDX files and prepare the dataset"},
    {"train", cmd_train, "train one model type and save it as a model version"},
    {"evaluate", cmd_evaluate, "report loss and accuracy of a saved model on the test images"},
    {"select", cmd_select, "copy the most accurate model version to a new version"},
    {"serve", cmd_serve, "serve the newest model version over TensorFlow Serving's REST API"},
    {"router", cmd_router, "serve through autoscaled replicas of distml serve"},
    {"workflow", cmd_workflow, "run an Argo Workflows file as local processes"},
};

static void print_usage(FILE *out)
{
    fprintf(out, "usage: distml COMMAND [OPTIONS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\nRun 'distml COMMAND --help' for the options of one command.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        print_usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        print_usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("distml 0.1.0\n");
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    }
    fprintf(stderr, "distml: error: unknown command '%s'\n", argv[1]);
    print_usage(stderr);
    return 2;
}
