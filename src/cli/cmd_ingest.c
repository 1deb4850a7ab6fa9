/*
 * distml ingest: validate the Fashion-MNIST IDX files and write the prepared
 * dataset, or validate one IDX file and print its shape.
 */
#include "cli/commands.h"

#include "base/error.h"
#include "data/dataset.h"
#include "data/idx.h"

#include <getopt.h>
#include <stdio.h>

#define INGEST_DEFAULT_SOURCE_DIR "/usr/share/datasets/fashion-mnist"

static void print_usage(FILE *out)
{
    fprintf(out,
            "usage: distml ingest [--source_dir DIR] [--data_root DIR]\n"
            "       distml ingest [--images FILE] [--labels FILE]\n"
            "\n"
            "Validate the four Fashion-MNIST IDX files (gzip or raw) in DIR and write the\n"
            "prepared dataset to DATA_ROOT/%s.\n"
            "\n"
            "options:\n"
            "  --source_dir DIR  directory containing the IDX files [%s]\n"
            "  --data_root DIR   root directory for prepared data, or $%s [%s]\n"
            "  --images FILE     only validate FILE as an IDX images file (%dx%d) and print its\n"
            "                    shape\n"
            "  --labels FILE     only validate FILE as an IDX labels file and print its count\n"
            "  -h, --help        print this help\n",
            DS_DATASET_SUBDIR, INGEST_DEFAULT_SOURCE_DIR, DS_DATA_ROOT_ENV, ds_default_data_root(),
            DS_ROWS, DS_COLS);
}

/* Validates one IDX file, prints its shape and returns the exit status. */
static int check_one_file(const char *path, idx_kind kind)
{
    idx_array array;
    if (idx_read(path, kind, DS_ROWS, DS_COLS, &array) != 0) {
        fprintf(stderr, "distml: error: %s\n", dm_error());
        return 1;
    }
    if (kind == IDX_IMAGES)
        printf("%s: %u images of %ux%u\n", path, array.count, array.rows, array.cols);
    else
        printf("%s: %u labels\n", path, array.count);
    idx_free(&array);
    return 0;
}

int cmd_ingest(int argc, char **argv)
{
    enum { OPT_SOURCE_DIR = 256, OPT_DATA_ROOT, OPT_IMAGES, OPT_LABELS };
    static const struct option options[] = {
        {"source_dir", required_argument, NULL, OPT_SOURCE_DIR},
        {"data_root", required_argument, NULL, OPT_DATA_ROOT},
        {"images", required_argument, NULL, OPT_IMAGES},
        {"labels", required_argument, NULL, OPT_LABELS},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *source_dir = INGEST_DEFAULT_SOURCE_DIR;
    const char *data_root = ds_default_data_root();
    const char *images_path = NULL;
    const char *labels_path = NULL;
    int opt;

    optind = 1;
    opterr = 0; /* report bad options below, with the "distml: error:" prefix */
    while ((opt = getopt_long(argc, argv, ":h", options, NULL)) != -1) {
        switch (opt) {
        case OPT_SOURCE_DIR:
            source_dir = optarg;
            break;
        case OPT_DATA_ROOT:
            data_root = optarg;
            break;
        case OPT_IMAGES:
            images_path = optarg;
            break;
        case OPT_LABELS:
            labels_path = optarg;
            break;
        case 'h':
            print_usage(stdout);
            return 0;
        case ':':
            fprintf(stderr, "distml: error: option '%s' requires an argument\n", argv[optind - 1]);
            print_usage(stderr);
            return 2;
        default:
            fprintf(stderr, "distml: error: unrecognized option '%s'\n", argv[optind - 1]);
            print_usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "distml: error: unexpected argument '%s'\n", argv[optind]);
        print_usage(stderr);
        return 2;
    }

    if (images_path != NULL || labels_path != NULL) {
        int status = 0;
        if (images_path != NULL && check_one_file(images_path, IDX_IMAGES) != 0)
            status = 1;
        if (labels_path != NULL && check_one_file(labels_path, IDX_LABELS) != 0)
            status = 1;
        return status;
    }

    ds_ingest_report report;
    if (ds_ingest(source_dir, data_root, &report) != 0) {
        fprintf(stderr, "distml: error: %s\n", dm_error());
        return 1;
    }
    printf("ingested Fashion-MNIST from %s\n", source_dir);
    printf("  train: %u images of %ux%u\n", report.train_count, report.rows, report.cols);
    printf("  test:  %u images of %ux%u\n", report.test_count, report.rows, report.cols);
    printf("  written to %s\n", report.dataset_dir);
    return 0;
}
