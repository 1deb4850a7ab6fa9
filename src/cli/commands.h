/* Entry points of the distml subcommands, one source file each. */
#ifndef DISTML_CLI_COMMANDS_H
#define DISTML_CLI_COMMANDS_H

/* Each returns the process exit status; ARGV[0] is the subcommand name. */
int cmd_ingest(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_evaluate(int argc, char **argv);
int cmd_select(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_router(int argc, char **argv);
int cmd_workflow(int argc, char **argv);

#endif
