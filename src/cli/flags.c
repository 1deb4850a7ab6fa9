#include "cli/flags.h"

#include "base/error.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

bool flag_parse_int(const char *name, const char *text, int64_t min, int64_t max, int64_t *out)
{
    char *end = NULL;
    errno = 0;
    long long value = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || value < min || value > max) {
        fprintf(stderr, "distml: error: invalid --%s '%s': expected an integer from %lld to %lld\n",
                name, text, (long long)min, (long long)max);
        return false;
    }
    *out = value;
    return true;
}

void flag_report_error(const char *message)
{
    fprintf(stderr, "distml: error: %s\n", message != NULL ? message : dm_error());
}

void flag_report_getopt(int opt, char **argv)
{
    const char *arg = optind > 0 ? argv[optind - 1] : "?";
    if (opt == ':')
        fprintf(stderr, "distml: error: option %s needs a value\n", arg);
    else
        fprintf(stderr, "distml: error: unknown option %s\n", arg);
}

int flag_default_threads(void)
{
    const char *env = getenv("OPENBLAS_NUM_THREADS");
    if (env != NULL && atoi(env) > 0)
        return atoi(env);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    const char *local = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    long workers = local != NULL ? strtol(local, NULL, 10) : 1;
    if (cores < 1)
        cores = 1;
    if (workers < 1)
        workers = 1;
    return cores / workers > 0 ? (int)(cores / workers) : 1;
}
