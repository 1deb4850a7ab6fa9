/*
 * distml train: train one model type on the prepared dataset, checkpoint
 * every epoch, and save the final model as a model version.
 */
#include "cli/commands.h"

#include "base/error.h"
#include "cli/flags.h"
#include "data/dataset.h"
#include "nn/model.h"
#include "nn/parallel.h"
#include "train/comm.h"
#include "train/fit.h"

#include <stdlib.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

static void print_usage(FILE *out)
{
    fit_config d;
    fit_config_default(&d);
    fprintf(out,
            "usage: distml train [OPTIONS]\n"
            "\n"
            "Train a Fashion-MNIST CNN with Adam and save it as a model version.\n"
            "\n"
            "options:\n"
            "  --model_type TYPE             cnn, dropout or batch_norm [%s]\n"
            "  --epochs N                    epochs to train [%d]\n"
            "  --steps_per_epoch N           steps per epoch; 0 = one full pass [0]\n"
            "  --batch_size_per_replica N    examples per step and worker [%d]\n"
            "  --seed N                      seed of weights, shuffling and dropout [%llu]\n"
            "  --shuffle_buffer N            shuffle buffer size in examples [%u]\n"
            "  --data_root DIR               prepared data, or $DISTML_DATA_ROOT [%s]\n"
            "  --saved_model_dir DIR         where to save the model\n"
            "                                [DATA_ROOT/saved_model_versions/<next version>]\n"
            "  --checkpoint_dir DIR          per-epoch checkpoints [DATA_ROOT/checkpoint/TYPE]\n"
            "  --keep_checkpoints N          keep only the N newest checkpoints; 0 = all [0]\n"
            "  --log_dir DIR                 TensorBoard event files [DATA_ROOT/logs/TYPE]\n"
            "  --log_steps N                 write batch_loss every N steps; 0 = never [%lld]\n"
            "  --resume, --noresume          continue from the newest checkpoint [resume]\n"
            "  --lr_boundaries LIST          epochs where the learning rate changes [3,7]\n"
            "  --lr_values LIST              learning rates before, between and after the\n"
            "                                boundaries [0.001,0.0001,0.00001]\n"
            "  --blas_threads N              compute threads per worker; 0 = $OPENBLAS_NUM_THREADS\n"
            "                                or the cores divided by the workers on this\n"
            "                                machine [0]\n"
            "  --summary                     print the model summary and exit\n"
            "  -h, --help                    print this help\n",
            d.model_type, d.epochs, d.batch_size_per_replica, (unsigned long long)d.seed,
            d.shuffle_buffer, ds_default_data_root(), (long long)d.log_steps);
}

static int print_summary(const char *model_type)
{
    nn_model m;
    if (nn_model_create(&m, model_type, 0) != 0) {
        flag_report_error(NULL);
        return 2;
    }
    nn_model_summary(&m, stdout);
    nn_model_free(&m);
    return 0;
}

typedef struct {
    fit_config fit;
    const char *data_root;
    int64_t blas_threads;
    bool summary;
    const char *lr_boundaries, *lr_values;
    char saved_model_dir[4096], saved_model_base[4096], checkpoint_dir[4096], log_dir[4096];
} train_options;

static bool valid_model_type(const char *type)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(type, nn_model_types[i]) == 0)
            return true;
    return false;
}

/* Returns 0 to go on, or the exit status to stop with. */
static int parse_options(int argc, char **argv, train_options *o)
{
    enum {
        OPT_MODEL_TYPE = 256, OPT_EPOCHS, OPT_STEPS, OPT_BATCH, OPT_SEED, OPT_SHUFFLE,
        OPT_DATA_ROOT, OPT_SAVED_MODEL_DIR, OPT_CHECKPOINT_DIR, OPT_LOG_DIR, OPT_LOG_STEPS,
        OPT_RESUME, OPT_NORESUME, OPT_BLAS_THREADS, OPT_SUMMARY, OPT_KEEP_CHECKPOINTS,
        OPT_LR_BOUNDARIES, OPT_LR_VALUES,
    };
    static const struct option options[] = {
        {"model_type", required_argument, NULL, OPT_MODEL_TYPE},
        {"epochs", required_argument, NULL, OPT_EPOCHS},
        {"steps_per_epoch", required_argument, NULL, OPT_STEPS},
        {"batch_size_per_replica", required_argument, NULL, OPT_BATCH},
        {"seed", required_argument, NULL, OPT_SEED},
        {"shuffle_buffer", required_argument, NULL, OPT_SHUFFLE},
        {"data_root", required_argument, NULL, OPT_DATA_ROOT},
        {"saved_model_dir", required_argument, NULL, OPT_SAVED_MODEL_DIR},
        {"checkpoint_dir", required_argument, NULL, OPT_CHECKPOINT_DIR},
        {"log_dir", required_argument, NULL, OPT_LOG_DIR},
        {"log_steps", required_argument, NULL, OPT_LOG_STEPS},
        {"resume", no_argument, NULL, OPT_RESUME},
        {"noresume", no_argument, NULL, OPT_NORESUME},
        {"blas_threads", required_argument, NULL, OPT_BLAS_THREADS},
        {"summary", no_argument, NULL, OPT_SUMMARY},
        {"keep_checkpoints", required_argument, NULL, OPT_KEEP_CHECKPOINTS},
        {"lr_boundaries", required_argument, NULL, OPT_LR_BOUNDARIES},
        {"lr_values", required_argument, NULL, OPT_LR_VALUES},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int64_t v;
    int opt;

    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":h", options, NULL)) != -1) {
        switch (opt) {
        case OPT_MODEL_TYPE:
            o->fit.model_type = optarg;
            break;
        case OPT_EPOCHS:
            if (!flag_parse_int("epochs", optarg, 1, 1000000, &v))
                return 2;
            o->fit.epochs = (int)v;
            break;
        case OPT_STEPS:
            if (!flag_parse_int("steps_per_epoch", optarg, 0, INT64_MAX / 2, &v))
                return 2;
            o->fit.steps_per_epoch = v;
            break;
        case OPT_BATCH:
            if (!flag_parse_int("batch_size_per_replica", optarg, 1, 65536, &v))
                return 2;
            o->fit.batch_size_per_replica = (int)v;
            break;
        case OPT_SEED:
            if (!flag_parse_int("seed", optarg, 0, INT64_MAX, &v))
                return 2;
            o->fit.seed = (uint64_t)v;
            break;
        case OPT_SHUFFLE:
            if (!flag_parse_int("shuffle_buffer", optarg, 0, UINT32_MAX, &v))
                return 2;
            o->fit.shuffle_buffer = (uint32_t)v;
            break;
        case OPT_DATA_ROOT:
            o->data_root = optarg;
            break;
        case OPT_SAVED_MODEL_DIR:
            snprintf(o->saved_model_dir, sizeof o->saved_model_dir, "%s", optarg);
            break;
        case OPT_CHECKPOINT_DIR:
            snprintf(o->checkpoint_dir, sizeof o->checkpoint_dir, "%s", optarg);
            break;
        case OPT_LOG_DIR:
            snprintf(o->log_dir, sizeof o->log_dir, "%s", optarg);
            break;
        case OPT_LOG_STEPS:
            if (!flag_parse_int("log_steps", optarg, 0, INT64_MAX / 2, &v))
                return 2;
            o->fit.log_steps = v;
            break;
        case OPT_RESUME:
            o->fit.resume = true;
            break;
        case OPT_NORESUME:
            o->fit.resume = false;
            break;
        case OPT_BLAS_THREADS:
            if (!flag_parse_int("blas_threads", optarg, 0, 1024, &v))
                return 2;
            o->blas_threads = v;
            break;
        case OPT_SUMMARY:
            o->summary = true;
            break;
        case OPT_KEEP_CHECKPOINTS:
            if (!flag_parse_int("keep_checkpoints", optarg, 0, 1000000, &v))
                return 2;
            o->fit.keep_checkpoints = (int)v;
            break;
        case OPT_LR_BOUNDARIES:
            o->lr_boundaries = optarg;
            break;
        case OPT_LR_VALUES:
            o->lr_values = optarg;
            break;
        case 'h':
            print_usage(stdout);
            return -1;
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
    if (!valid_model_type(o->fit.model_type)) {
        fprintf(stderr, "distml: error: invalid --model_type '%s': expected cnn, dropout or "
                        "batch_norm\n",
                o->fit.model_type);
        return 2;
    }
    if ((o->lr_boundaries == NULL) != (o->lr_values == NULL)) {
        fprintf(stderr, "distml: error: --lr_boundaries and --lr_values go together: give "
                        "both or neither\n");
        return 2;
    }
    if (o->lr_boundaries != NULL &&
        fit_schedule_parse(o->lr_boundaries, o->lr_values, &o->fit.schedule) != 0) {
        flag_report_error(NULL);
        return 2;
    }
    return 0;
}

/* Fill in the directories left to their defaults under the data root. */
static int resolve_paths(train_options *o)
{
    const char *type = o->fit.model_type;
    if (o->checkpoint_dir[0] == '\0')
        snprintf(o->checkpoint_dir, sizeof o->checkpoint_dir, "%s/checkpoint/%s", o->data_root,
                 type);
    if (o->log_dir[0] == '\0')
        snprintf(o->log_dir, sizeof o->log_dir, "%s/logs/%s", o->data_root, type);
    /* Without --saved_model_dir the model becomes the next version, whose
     * number is taken when it is saved, so concurrent runs each get one. */
    if (o->saved_model_dir[0] == '\0') {
        snprintf(o->saved_model_base, sizeof o->saved_model_base, "%s/saved_model_versions",
                 o->data_root);
        o->fit.saved_model_base = o->saved_model_base;
    } else {
        o->fit.saved_model_dir = o->saved_model_dir;
    }
    o->fit.checkpoint_dir = o->checkpoint_dir;
    o->fit.log_dir = o->log_dir;
    return 0;
}

/* Run training as this worker of the job; returns the exit status. */
static int train_worker(train_options *o, const train_comm *comm)
{
    ds_dataset data;
    if (ds_load(o->data_root, &data) != 0) {
        flag_report_error(NULL);
        return 1;
    }
    fit_result result;
    o->fit.progress = stdout;
    o->fit.comm = comm;
    if (resolve_paths(o) != 0 || fit_run(&o->fit, &data.train, &result) != 0) {
        if (comm->size > 1)
            fprintf(stderr, "distml: error: worker %d: %s\n", comm->rank, dm_error());
        else
            flag_report_error(NULL);
        ds_free(&data);
        return 1;
    }
    ds_free(&data);
    if (comm->rank == 0)
        printf("Saved model to %s\n", result.saved_model_dir);
    return 0;
}

int cmd_train(int argc, char **argv)
{
    train_options o;
    memset(&o, 0, sizeof o);
    fit_config_default(&o.fit);
    o.data_root = ds_default_data_root();

    int status = parse_options(argc, argv, &o);
    if (status != 0)
        return status < 0 ? 0 : status;
    if (o.summary)
        return print_summary(o.fit.model_type);
    nn_set_threads(o.blas_threads > 0 ? (int)o.blas_threads : flag_default_threads());

    train_comm comm;
    if (comm_init(&comm, NULL, NULL) != 0) {
        flag_report_error(NULL);
        return 1;
    }
    status = train_worker(&o, &comm);
    /* A worker that fails would leave the others waiting in a collective,
     * so it ends the whole job. */
    if (status != 0 && comm.size > 1)
        comm_abort(&comm, status);
    comm_finalize(&comm);
    return status;
}
