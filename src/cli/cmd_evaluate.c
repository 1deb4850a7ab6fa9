/*
 * distml evaluate: loss and accuracy of a saved model on the test images,
 * printed as Keras's model.evaluate prints them.
 */
#include "cli/commands.h"

#include "base/error.h"
#include "base/fsutil.h"
#include "cli/flags.h"
#include "data/dataset.h"
#include "model/versions.h"
#include "nn/parallel.h"
#include "train/fit.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

static void print_usage(FILE *out)
{
    fprintf(out,
            "usage: distml evaluate [OPTIONS]\n"
            "\n"
            "Evaluate a saved model on the 10,000 Fashion-MNIST test images.\n"
            "\n"
            "options:\n"
            "  --saved_model_dir DIR   model version to evaluate\n"
            "                          [the newest complete one in DATA_ROOT/saved_model_versions]\n"
            "  --data_root DIR         prepared data, or $DISTML_DATA_ROOT [%s]\n"
            "  --batch_size N          examples per forward pass [64]\n"
            "  --blas_threads N        compute threads; 0 = $OPENBLAS_NUM_THREADS or one per core [0]\n"
            "  -h, --help              print this help\n",
            ds_default_data_root());
}

int cmd_evaluate(int argc, char **argv)
{
    enum { OPT_SAVED_MODEL_DIR = 256, OPT_DATA_ROOT, OPT_BATCH, OPT_BLAS_THREADS };
    static const struct option options[] = {
        {"saved_model_dir", required_argument, NULL, OPT_SAVED_MODEL_DIR},
        {"data_root", required_argument, NULL, OPT_DATA_ROOT},
        {"batch_size", required_argument, NULL, OPT_BATCH},
        {"blas_threads", required_argument, NULL, OPT_BLAS_THREADS},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *data_root = ds_default_data_root();
    char model_dir[4096] = "";
    int64_t batch = 64, threads = 0;
    int opt;

    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":h", options, NULL)) != -1) {
        switch (opt) {
        case OPT_SAVED_MODEL_DIR:
            snprintf(model_dir, sizeof model_dir, "%s", optarg);
            break;
        case OPT_DATA_ROOT:
            data_root = optarg;
            break;
        case OPT_BATCH:
            if (!flag_parse_int("batch_size", optarg, 1, 4096, &batch))
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
    if (optind < argc) {
        fprintf(stderr, "distml: error: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    nn_set_threads(threads > 0 ? (int)threads : flag_default_threads());
    if (model_dir[0] == '\0') {
        char base[4096];
        int64_t version = 0;
        snprintf(base, sizeof base, "%s/saved_model_versions", data_root);
        /* A missing versions folder means no model was trained yet, which
         * the message below explains better than the failed listing. */
        if (!fs_exists(base)) {
            version = -1;
        } else if (versions_latest_complete(base, &version) != 0) {
            flag_report_error(NULL);
            return 1;
        }
        if (version < 0) {
            fprintf(stderr, "distml: error: no complete model version in %s: run distml train "
                            "first or pass --saved_model_dir\n",
                    base);
            return 1;
        }
        snprintf(model_dir, sizeof model_dir, "%s/%lld", base, (long long)version);
    }

    ds_dataset data;
    if (ds_load(data_root, &data) != 0) {
        flag_report_error(NULL);
        return 1;
    }
    double loss = 0.0, accuracy = 0.0;
    int rc = fit_evaluate_dir(model_dir, &data.test, (int)batch, stdout, &loss, &accuracy);
    ds_free(&data);
    if (rc != 0) {
        flag_report_error(NULL);
        return 1;
    }
    printf("Test loss: %.4f\nTest accuracy: %.4f\n", loss, accuracy);
    return 0;
}
