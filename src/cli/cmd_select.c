/*
 * distml select: evaluate candidate model versions on the 10,000 test
 * images and copy the most accurate one to a new version, max + 1, as the
 * reference design's model-selection step does.
 *
 * The copy is written into "<BASE>/<max+1>.tmp.<pid>", checked against its
 * manifest and renamed into place, so a server polling BASE never loads a
 * half-copied version. The commit checks just before the rename that the
 * new folder does not exist, so select does not replace a version.
 */
#include "cli/commands.h"

#include "base/error.h"
#include "base/fsutil.h"
#include "base/log.h"
#include "cli/flags.h"
#include "data/dataset.h"
#include "model/bundle.h"
#include "model/versions.h"
#include "nn/parallel.h"
#include "train/fit.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void print_usage(FILE *out)
{
    fprintf(out,
            "usage: distml select [OPTIONS] [VERSION...]\n"
            "\n"
            "Evaluate model versions on the 10,000 Fashion-MNIST test images and copy the\n"
            "most accurate one to a new version (the highest version number plus one).\n"
            "A tie keeps the candidate listed first. Without VERSION arguments every\n"
            "complete version under the base path is a candidate, in ascending order.\n"
            "\n"
            "options:\n"
            "  --model_base_path DIR   folder of numbered model versions\n"
            "                          [DATA_ROOT/saved_model_versions]\n"
            "  --data_root DIR         prepared data, or $DISTML_DATA_ROOT [%s]\n"
            "  --batch_size N          examples per forward pass [64]\n"
            "  --blas_threads N        compute threads; 0 = $OPENBLAS_NUM_THREADS or one per core [0]\n"
            "  -h, --help              print this help\n",
            ds_default_data_root());
}

/* Copies the regular file SOURCE to TARGET and fsyncs it. */
static int copy_file(const char *source, const char *target)
{
    unsigned char *data = NULL;
    size_t size = 0;
    if (fs_read_file(source, &data, &size) != 0)
        return -1;
    int fd = open(target, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0) {
        free(data);
        return dm_fail("cannot create %s: %s", target, strerror(errno));
    }
    size_t done = 0;
    while (done < size) {
        ssize_t n = write(fd, data + done, size - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int saved = errno;
            close(fd);
            free(data);
            return dm_fail("cannot write %s: %s", target, strerror(saved));
        }
        done += (size_t)n;
    }
    free(data);
    if (fsync(fd) != 0 || close(fd) != 0)
        return dm_fail("cannot write %s: %s", target, strerror(errno));
    return 0;
}

/* Copies every regular file of the bundle SOURCE (bundles are flat) into
 * the empty directory TARGET. */
static int copy_bundle_files(const char *source, const char *target)
{
    DIR *d = opendir(source);
    if (d == NULL)
        return dm_fail("cannot open %s: %s", source, strerror(errno));
    int rc = 0;
    struct dirent *ent;
    while (rc == 0 && (ent = readdir(d)) != NULL) {
        char from[4096], to[4096];
        struct stat st;
        if (strcmp(ent->d_name, ".") == 0 || strcmp(ent->d_name, "..") == 0)
            continue;
        if (fs_join(from, sizeof from, source, ent->d_name) != 0 ||
            fs_join(to, sizeof to, target, ent->d_name) != 0) {
            rc = -1;
            break;
        }
        if (lstat(from, &st) != 0) {
            rc = dm_fail("cannot stat %s: %s", from, strerror(errno));
        } else if (!S_ISREG(st.st_mode)) {
            rc = dm_fail("%s is not a regular file", from);
        } else {
            rc = copy_file(from, to);
        }
    }
    closedir(d);
    return rc;
}

/* Copies the version folder SOURCE to the new version folder TARGET through
 * a temporary sibling directory, verifying the copy before the rename. */
static int copy_version(const char *source, const char *target)
{
    char temp[4096];
    if (fs_temp_dir(target, temp, sizeof temp) != 0)
        return -1;
    if (copy_bundle_files(source, temp) != 0 || bundle_verify(temp, NULL, 0) != BUNDLE_OK) {
        dm_fail_context("cannot copy %s to %s", source, target);
        fs_remove_tree(temp);
        return -1;
    }
    if (fs_commit_dir(temp, target, false) != 0) {
        dm_fail_context("cannot copy %s to %s", source, target);
        fs_remove_tree(temp);
        return -1;
    }
    return 0;
}

typedef struct {
    const char *base;
    const char *data_root;
    int64_t batch;
    int64_t *candidates; /* explicit VERSION arguments, in the order given */
    size_t num_candidates;
} select_options;

/* Returns -1 to go on, or the exit status to stop with. */
static int parse_options(int argc, char **argv, select_options *o, char *base, size_t capacity)
{
    enum { OPT_BASE = 256, OPT_DATA_ROOT, OPT_BATCH, OPT_BLAS_THREADS };
    static const struct option options[] = {
        {"model_base_path", required_argument, NULL, OPT_BASE},
        {"data_root", required_argument, NULL, OPT_DATA_ROOT},
        {"batch_size", required_argument, NULL, OPT_BATCH},
        {"blas_threads", required_argument, NULL, OPT_BLAS_THREADS},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *base_flag = NULL;
    int64_t threads = 0;
    int opt;

    o->data_root = ds_default_data_root();
    o->batch = 64;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":h", options, NULL)) != -1) {
        switch (opt) {
        case OPT_BASE:
            base_flag = optarg;
            break;
        case OPT_DATA_ROOT:
            o->data_root = optarg;
            break;
        case OPT_BATCH:
            if (!flag_parse_int("batch_size", optarg, 1, 4096, &o->batch))
                return 2;
            break;
        case OPT_BLAS_THREADS:
            if (!flag_parse_int("blas_threads", optarg, 0, 1024, &threads))
                return 2;
            break;
        case 'h':
            print_usage(stdout);
            return 0;
        default:
            flag_report_getopt(opt, argv);
            print_usage(stderr);
            return 2;
        }
    }
    nn_set_threads(threads > 0 ? (int)threads : flag_default_threads());
    int n = base_flag != NULL ? snprintf(base, capacity, "%s", base_flag)
                              : snprintf(base, capacity, "%s/saved_model_versions", o->data_root);
    if (n < 0 || (size_t)n >= capacity) {
        flag_report_error("the model base path is too long");
        return 2;
    }
    o->base = base;
    o->num_candidates = (size_t)(argc - optind);
    if (o->num_candidates == 0)
        return -1;
    o->candidates = calloc(o->num_candidates, sizeof *o->candidates);
    if (o->candidates == NULL) {
        flag_report_error("out of memory");
        return 1;
    }
    for (size_t i = 0; i < o->num_candidates; i++) {
        if (!versions_parse(argv[optind + (int)i], &o->candidates[i])) {
            fprintf(stderr,
                    "distml: error: invalid VERSION '%s': expected a version number such as 3\n",
                    argv[optind + (int)i]);
            return 2;
        }
    }
    return -1;
}

/* Evaluates the candidates in order and returns the index of the most
 * accurate complete one in *BEST (-1 when none is complete). A strict
 * comparison keeps the earlier candidate on a tie. */
static int evaluate_candidates(const select_options *o, const ds_split *test, ptrdiff_t *best,
                               double *best_accuracy)
{
    *best = -1;
    *best_accuracy = -1.0;
    for (size_t i = 0; i < o->num_candidates; i++) {
        char path[4096];
        double loss = 0.0, accuracy = 0.0;
        long long version = (long long)o->candidates[i];
        if (versions_path(path, sizeof path, o->base, o->candidates[i]) != 0)
            return -1;
        if (!fs_is_dir(path))
            return dm_fail("version %lld not found: %s is not a directory", version, path);
        /* fit_evaluate_dir verifies too, but an incomplete candidate is a
         * warning here and other load failures are errors. */
        int verified = bundle_verify(path, NULL, 0);
        if (verified != BUNDLE_OK) {
            DM_WARN("skipping version %lld: %s", version, dm_error());
            continue;
        }
        if (fit_evaluate_dir(path, test, (int)o->batch, NULL, &loss, &accuracy) != 0)
            return dm_fail_context("cannot evaluate version %lld", version);
        printf("Version %lld: loss %.4f, accuracy %.4f\n", version, loss, accuracy);
        if (accuracy > *best_accuracy) {
            *best = (ptrdiff_t)i;
            *best_accuracy = accuracy;
        }
    }
    return 0;
}

int cmd_select(int argc, char **argv)
{
    select_options o = {0};
    char base[4096];
    int status = parse_options(argc, argv, &o, base, sizeof base);
    if (status >= 0)
        goto out;
    status = 0;
    if (!fs_is_dir(o.base)) {
        fprintf(stderr, "distml: error: model base path %s is not a directory\n", o.base);
        status = 1;
        goto out;
    }
    if (o.num_candidates == 0 && versions_list(o.base, &o.candidates, &o.num_candidates) != 0) {
        flag_report_error(NULL);
        status = 1;
        goto out;
    }

    ds_dataset data;
    if (ds_load(o.data_root, &data) != 0) {
        flag_report_error(NULL);
        status = 1;
        goto out;
    }
    ptrdiff_t best = -1;
    double accuracy = 0.0;
    int rc = evaluate_candidates(&o, &data.test, &best, &accuracy);
    ds_free(&data);
    if (rc != 0) {
        flag_report_error(NULL);
        status = 1;
        goto out;
    }
    if (best < 0) {
        fprintf(stderr, "distml: error: no complete model version among the candidates in %s\n",
                o.base);
        status = 1;
        goto out;
    }

    char source[4096], target[4096];
    int64_t next = 0;
    if (versions_path(source, sizeof source, o.base, o.candidates[best]) != 0 ||
        versions_next(o.base, &next) != 0 || versions_path(target, sizeof target, o.base, next) != 0 ||
        copy_version(source, target) != 0) {
        flag_report_error(NULL);
        status = 1;
        goto out;
    }
    printf("Selected version %lld\n", (long long)o.candidates[best]);
    printf("Best model with accuracy %f is copied to %s\n", accuracy, target);
out:
    free(o.candidates);
    return status;
}
