/* Parsing helpers for command-line values, with the CLI's error format. */
#ifndef DISTML_CLI_FLAGS_H
#define DISTML_CLI_FLAGS_H

#include <stdbool.h>
#include <stdint.h>

/* Parse TEXT as a whole decimal integer in [MIN, MAX] for option NAME;
 * prints "distml: error: ..." and returns false when it is not one. */
bool flag_parse_int(const char *name, const char *text, int64_t min, int64_t max, int64_t *out);

/* Print "distml: error: MESSAGE" (dm_error() when MESSAGE is NULL). */
void flag_report_error(const char *message);

/* Print the "unknown option" or "missing value" error for getopt_long's
 * result OPT ('?' or ':') and the option at ARGV[optind - 1]. */
void flag_report_getopt(int opt, char **argv);

/* Compute threads when --blas_threads is not given: OPENBLAS_NUM_THREADS
 * when it is set, otherwise this machine's cores divided by the MPI
 * workers that mpirun started on it (1 without mpirun), so N workers on
 * C cores do not oversubscribe them. */
int flag_default_threads(void);

#endif
