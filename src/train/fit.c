#include "train/fit.h"

#include "base/clock.h"
#include "base/error.h"
#include "base/fsutil.h"
#include "base/log.h"
#include "data/pipeline.h"
#include "model/checkpoint.h"
#include "model/saved_model.h"
#include "model/versions.h"
#include "nn/adam.h"
#include "nn/model.h"
#include "train/progbar.h"
#include "train/tensorboard.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

void fit_config_default(fit_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->model_type = "cnn";
    cfg->epochs = 1;
    cfg->batch_size_per_replica = 64;
    cfg->seed = 1234;
    cfg->shuffle_buffer = 10000;
    cfg->log_steps = 100;
    cfg->resume = true;
    fit_schedule_default(&cfg->schedule);
}

void fit_schedule_default(fit_schedule *schedule)
{
    *schedule = (fit_schedule){
        .count = 2, .boundaries = {3, 7}, .values = {1e-3f, 1e-4f, 1e-5f},
    };
}

/* Split the comma-separated LIST into at most MAX items, each without
 * the spaces around it. Returns the count, or -1 when there are more
 * items or one is empty. */
static int split_list(const char *list, char items[][64], int max)
{
    int n = 0;
    const char *p = list;
    for (;;) {
        size_t len = strcspn(p, ",");
        size_t start = 0, end = len;
        while (start < end && isspace((unsigned char)p[start]))
            start++;
        while (end > start && isspace((unsigned char)p[end - 1]))
            end--;
        if (end == start || end - start >= 64 || n == max)
            return -1;
        memcpy(items[n], p + start, end - start);
        items[n++][end - start] = '\0';
        if (p[len] == '\0')
            return n;
        p += len + 1;
    }
}

int fit_schedule_parse(const char *boundaries, const char *values, fit_schedule *schedule)
{
    char b[FIT_MAX_LR_BOUNDARIES][64], v[FIT_MAX_LR_BOUNDARIES + 1][64];
    int nb = boundaries[0] == '\0' ? 0 : split_list(boundaries, b, FIT_MAX_LR_BOUNDARIES);
    int nv = split_list(values, v, FIT_MAX_LR_BOUNDARIES + 1);
    if (nb < 0)
        return dm_fail("invalid --lr_boundaries '%s': expected up to %d comma-separated epochs",
                       boundaries, FIT_MAX_LR_BOUNDARIES);
    if (nv != nb + 1)
        return dm_fail("invalid --lr_values '%s': expected %d comma-separated rates, one more "
                       "than --lr_boundaries '%s' has epochs",
                       values, nb + 1, boundaries);
    schedule->count = nb;
    for (int i = 0; i < nb; i++) {
        char *end;
        long e = strtol(b[i], &end, 10);
        int previous = i == 0 ? 0 : schedule->boundaries[i - 1];
        if (!isdigit((unsigned char)b[i][0]) || *end != '\0' || e <= previous || e > 1000000)
            return dm_fail("invalid --lr_boundaries element %d '%s': expected an epoch above %d "
                           "(the boundaries increase)",
                           i, b[i], previous);
        schedule->boundaries[i] = (int)e;
    }
    for (int i = 0; i < nv; i++) {
        char *end;
        float r = strtof(v[i], &end);
        if (*end != '\0' || !(r > 0.0f) || r > 1.0f)
            return dm_fail("invalid --lr_values element %d '%s': expected a rate above 0 and "
                           "at most 1",
                           i, v[i]);
        schedule->values[i] = r;
    }
    return 0;
}

float fit_learning_rate(const fit_schedule *schedule, int epoch)
{
    int i = 0;
    while (i < schedule->count && epoch >= schedule->boundaries[i])
        i++;
    return schedule->values[i];
}

/* Everything one training run owns, so the steps below stay short. */
typedef struct {
    const fit_config *cfg;
    const ds_split *data;
    nn_model model;
    nn_adam opt;
    pipe_iter *pipe;
    tb_writer *tb;
    float *x;
    int32_t *y;
    uint32_t *indices;
    uint64_t *example_ids;
    int64_t steps_per_epoch;
    int64_t global_step;
    int rank, size;     /* this worker and the number of workers */
    bool chief;         /* rank 0: the only writer */
    bool full_pass;     /* an epoch is one pass over the data */
    float *sync;        /* gradients + 3 metric sums, all-reduced in one call */
    double allreduce_seconds; /* seconds in comm_allreduce_sum this epoch */
} fit_state;

/* Checkpoint tensors: every model variable under its own name, and Adam's
 * slots as "optimizer/m/<name>" and "optimizer/v/<name>". The tensors
 * point into the model and optimizer buffers. */
static size_t checkpoint_tensors(fit_state *s, st_tensor *t, size_t capacity)
{
    nn_param *vars[NN_MAX_VARIABLES];
    int n = nn_model_variables(&s->model, vars, NN_MAX_VARIABLES);
    size_t count = 0;
    for (int pass = 0; pass < 3; pass++) {
        for (int i = 0; i < n && count < capacity; i++) {
            nn_param *p = vars[i];
            if (pass > 0 && !p->trainable)
                continue;
            st_tensor *dst = &t[count++];
            memset(dst, 0, sizeof *dst);
            dst->dtype = ST_F32;
            dst->ndim = p->ndim;
            for (int d = 0; d < p->ndim; d++)
                dst->shape[d] = p->shape[d];
            if (pass == 0) {
                snprintf(dst->name, sizeof dst->name, "%s", p->name);
                dst->data = p->value;
            } else {
                float *slots = pass == 1 ? s->opt.m : s->opt.v;
                snprintf(dst->name, sizeof dst->name, "optimizer/%s/%s", pass == 1 ? "m" : "v",
                         p->name);
                dst->data = slots + p->offset;
            }
        }
    }
    return count;
}

static int save_checkpoint(fit_state *s, int epochs_done)
{
    st_tensor tensors[3 * NN_MAX_VARIABLES];
    size_t count = checkpoint_tensors(s, tensors, 3 * NN_MAX_VARIABLES);
    cJSON *state = cJSON_CreateObject();
    cJSON_AddNumberToObject(state, "epoch", epochs_done);
    cJSON_AddNumberToObject(state, "global_step", (double)s->global_step);
    cJSON_AddNumberToObject(state, "optimizer_iterations", (double)s->opt.iterations);
    cJSON_AddStringToObject(state, "model_type", s->cfg->model_type);
    cJSON_AddNumberToObject(state, "batch_size_per_replica", s->cfg->batch_size_per_replica);
    cJSON_AddNumberToObject(state, "seed", (double)s->cfg->seed);
    const fit_schedule *schedule = &s->cfg->schedule;
    cJSON *boundaries = cJSON_AddArrayToObject(state, "lr_boundaries");
    cJSON *values = cJSON_AddArrayToObject(state, "lr_values");
    for (int i = 0; i <= schedule->count; i++) {
        if (i < schedule->count)
            cJSON_AddItemToArray(boundaries, cJSON_CreateNumber(schedule->boundaries[i]));
        cJSON_AddItemToArray(values, cJSON_CreateNumber(schedule->values[i]));
    }
    char *text = cJSON_PrintUnformatted(state);
    cJSON_Delete(state);
    if (text == NULL)
        return dm_fail("out of memory writing checkpoint state");
    int rc = ckpt_save(s->cfg->checkpoint_dir, epochs_done, tensors, count, text);
    free(text);
    return rc;
}

static int restore_tensors(fit_state *s, const st_tensor *saved, size_t saved_count)
{
    st_tensor wanted[3 * NN_MAX_VARIABLES];
    size_t count = checkpoint_tensors(s, wanted, 3 * NN_MAX_VARIABLES);
    for (size_t i = 0; i < count; i++) {
        const st_tensor *t = st_find(saved, saved_count, wanted[i].name);
        if (t == NULL || t->dtype != ST_F32 || st_element_count(t) != st_element_count(&wanted[i]))
            return dm_fail("checkpoint has no tensor '%s' of the model's shape", wanted[i].name);
        memcpy(wanted[i].data, t->data, (size_t)st_element_count(t) * sizeof(float));
    }
    return 0;
}

static double json_number(const cJSON *root, const char *key)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, key);
    return cJSON_IsNumber(item) ? item->valuedouble : -1.0;
}

/* Load the newest complete checkpoint; returns the number of epochs it
 * completed (0 when there is none) or -1. Only the chief reads it. */
/* Warn when the checkpoint's STATE trained one of its first EPOCHS epochs
 * at another learning rate than SCHEDULE gives it: the run goes on with
 * SCHEDULE from there, as Keras's scheduler callback would. */
static void warn_schedule_change(const cJSON *state, int epochs, const fit_schedule *schedule)
{
    const cJSON *boundaries = cJSON_GetObjectItemCaseSensitive(state, "lr_boundaries");
    const cJSON *values = cJSON_GetObjectItemCaseSensitive(state, "lr_values");
    const int n = cJSON_GetArraySize(boundaries);
    if (!cJSON_IsArray(boundaries) || !cJSON_IsArray(values) || n > FIT_MAX_LR_BOUNDARIES ||
        cJSON_GetArraySize(values) != n + 1)
        return; /* written before schedules were recorded */
    fit_schedule old = {.count = n};
    for (int i = 0; i <= n; i++) {
        if (i < n)
            old.boundaries[i] = (int)cJSON_GetArrayItem(boundaries, i)->valuedouble;
        old.values[i] = (float)cJSON_GetArrayItem(values, i)->valuedouble;
    }
    for (int e = 0; e < epochs; e++) {
        float was = fit_learning_rate(&old, e), now = fit_learning_rate(schedule, e);
        if (was != now) {
            DM_WARN("the checkpoint trained epoch %d at learning rate %g, where this run's "
                    "--lr_boundaries and --lr_values give %g; the new schedule applies from "
                    "epoch %d on",
                    e + 1, (double)was, (double)now, epochs + 1);
            return;
        }
    }
}

static int read_checkpoint(fit_state *s)
{
    int epoch = 0;
    if (!s->cfg->resume || s->cfg->checkpoint_dir == NULL)
        return 0;
    if (ckpt_latest(s->cfg->checkpoint_dir, &epoch) != 0)
        return -1;
    if (epoch == 0)
        return 0;
    st_tensor *tensors = NULL;
    size_t count = 0;
    char *state_text = NULL;
    if (ckpt_load(s->cfg->checkpoint_dir, epoch, &tensors, &count, &state_text) != 0)
        return -1;
    cJSON *state = cJSON_Parse(state_text);
    int rc = -1;
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(state, "model_type");
    if (!cJSON_IsString(type) || strcmp(type->valuestring, s->cfg->model_type) != 0) {
        dm_fail("checkpoint %s/ckpt_%d is of model type %s, not %s: pass another "
                "--checkpoint_dir or --noresume",
                s->cfg->checkpoint_dir, epoch, cJSON_IsString(type) ? type->valuestring : "?",
                s->cfg->model_type);
    } else if (json_number(state, "batch_size_per_replica") != s->cfg->batch_size_per_replica ||
               json_number(state, "seed") != (double)s->cfg->seed) {
        /* The data order on resume is replayed from these, so a change
         * would silently train on a different sequence of batches. */
        dm_fail("checkpoint %s/ckpt_%d was written with --batch_size_per_replica %g and --seed "
                "%g, not %d and %llu: pass the same values, another --checkpoint_dir or "
                "--noresume",
                s->cfg->checkpoint_dir, epoch, json_number(state, "batch_size_per_replica"),
                json_number(state, "seed"), s->cfg->batch_size_per_replica,
                (unsigned long long)s->cfg->seed);
    } else if (restore_tensors(s, tensors, count) == 0) {
        warn_schedule_change(state, epoch, &s->cfg->schedule);
        s->global_step = (int64_t)json_number(state, "global_step");
        s->opt.iterations = (int64_t)json_number(state, "optimizer_iterations");
        rc = s->global_step >= 0 && s->opt.iterations >= 0 ? epoch : dm_fail("bad state.json");
    }
    cJSON_Delete(state);
    free(state_text);
    st_free(tensors, count);
    return rc;
}

/* Lists the epochs of the ckpt_<n> folders under DIR with n > AFTER into a
 * malloc'd array. */
static int list_checkpoints_after(const char *dir, int after, int **epochs, size_t *count)
{
    const size_t prefix_len = strlen("ckpt_");
    size_t capacity = 0;
    struct dirent *ent;

    *epochs = NULL;
    *count = 0;
    DIR *d = opendir(dir);
    if (d == NULL)
        return dm_fail("cannot list checkpoints in %s: %s", dir, strerror(errno));
    while ((ent = readdir(d)) != NULL) {
        char path[4096];
        int64_t epoch;
        if (strncmp(ent->d_name, "ckpt_", prefix_len) != 0 ||
            !versions_parse(ent->d_name + prefix_len, &epoch) || epoch <= after ||
            epoch > INT32_MAX)
            continue;
        if (ckpt_path(path, sizeof path, dir, (int)epoch) != 0 || !fs_is_dir(path))
            continue;
        if (*count == capacity) {
            capacity = capacity ? capacity * 2 : 16;
            int *grown = realloc(*epochs, capacity * sizeof *grown);
            if (grown == NULL) {
                closedir(d);
                return dm_fail("out of memory listing checkpoints in %s", dir);
            }
            *epochs = grown;
        }
        (*epochs)[(*count)++] = (int)epoch;
    }
    closedir(d);
    return 0;
}

/* Removes the checkpoints after epoch 1 that an earlier run left in the
 * checkpoint folder. A --noresume run calls this once it has saved ckpt_1,
 * because a later resume picks the highest epoch and would otherwise
 * continue the earlier run instead of this one. */
static int remove_earlier_run_checkpoints(const char *dir)
{
    int *epochs = NULL;
    size_t count = 0;
    int rc = list_checkpoints_after(dir, 1, &epochs, &count);
    for (size_t i = 0; rc == 0 && i < count; i++) {
        char path[4096];
        rc = ckpt_path(path, sizeof path, dir, epochs[i]);
        if (rc != 0)
            break;
        DM_WARN("removing %s: it is from an earlier run, and --noresume started over", path);
        rc = fs_remove_tree(path);
    }
    free(epochs);
    return rc;
}

/* The chief restores the checkpoint and sends the variables, Adam's
 * slots and the counters to the other workers, which start from the same
 * state whether or not they can read the checkpoint directory. Returns the
 * epochs already completed, or -1. */
static int restore_checkpoint(fit_state *s)
{
    const train_comm *comm = s->cfg->comm;
    int64_t header[3] = {0, 0, 0}; /* epochs done (or -1), global step, iterations */

    if (s->chief) {
        int epoch = read_checkpoint(s);
        header[0] = epoch;
        header[1] = s->global_step;
        header[2] = s->opt.iterations;
    }
    if (comm == NULL || comm->size == 1)
        return (int)header[0];
    /* On failure the chief still sends -1, so no worker waits alone. */
    if (comm_broadcast(comm, header, sizeof header, 0) != 0)
        return -1;
    if (header[0] < 0)
        return s->chief ? -1 : dm_fail("the chief could not restore its checkpoint");
    s->global_step = header[1];
    s->opt.iterations = header[2];
    nn_model *m = &s->model;
    if (comm_broadcast(comm, m->trainable, m->num_trainable * sizeof(float), 0) != 0 ||
        comm_broadcast(comm, m->non_trainable, m->num_non_trainable * sizeof(float), 0) != 0 ||
        comm_broadcast(comm, s->opt.m, m->num_trainable * sizeof(float), 0) != 0 ||
        comm_broadcast(comm, s->opt.v, m->num_trainable * sizeof(float), 0) != 0)
        return -1;
    return (int)header[0];
}

static int open_pipeline(fit_state *s)
{
    pipe_config pc;
    pipe_config_default(&pc);
    pc.num_examples = s->data->count;
    pc.shuffle_buffer = s->cfg->shuffle_buffer;
    pc.seed = s->cfg->seed;
    pc.batch_size = (uint32_t)s->cfg->batch_size_per_replica;
    pc.repeat_count = -1;
    /* The same seed on every worker gives one shuffled order, which the
     * element shard splits into disjoint parts. */
    pc.num_shards = (uint32_t)s->size;
    pc.shard_index = (uint32_t)s->rank;
    s->pipe = pipe_open(&pc);
    if (s->pipe == NULL)
        return -1;
    s->full_pass = s->cfg->steps_per_epoch == 0;
    if (!s->full_pass) {
        s->steps_per_epoch = s->cfg->steps_per_epoch;
    } else if (s->size == 1) {
        s->steps_per_epoch = (int64_t)pipe_batches_per_epoch(s->pipe);
    } else {
        /* Every worker runs the same number of steps, so none waits alone
         * in an all-reduce: floor(examples / global batch), dropping the
         * remainder of each epoch. */
        const uint64_t global_batch = (uint64_t)s->cfg->batch_size_per_replica * s->size;
        s->steps_per_epoch = (int64_t)(s->data->count / global_batch);
        if (s->steps_per_epoch == 0)
            return dm_fail("%u training examples are fewer than one global batch of %llu "
                           "(%d workers x %d)",
                           s->data->count, (unsigned long long)global_batch, s->size,
                           s->cfg->batch_size_per_replica);
        uint64_t dropped = s->data->count - (uint64_t)s->steps_per_epoch * global_batch;
        if (s->chief && dropped > 0)
            DM_INFO("%d workers x batch %d: %lld steps per epoch, the last %llu examples of "
                    "each epoch are dropped",
                    s->size, s->cfg->batch_size_per_replica, (long long)s->steps_per_epoch,
                    (unsigned long long)dropped);
    }
    return 0;
}

/* Pipeline batches this worker consumed in EPOCHS full training epochs;
 * in full-pass mode each epoch also skips its shard's leftover batches. */
static uint64_t batches_consumed(const fit_state *s, int64_t epochs, int64_t global_step)
{
    if (!s->full_pass)
        return (uint64_t)global_step;
    return (uint64_t)epochs * pipe_batches_per_epoch(s->pipe);
}

static int allocate_batch(fit_state *s)
{
    const size_t b = (size_t)s->cfg->batch_size_per_replica;
    s->x = dm_malloc(b * nn_shape_size(s->model.input) * sizeof(float));
    s->y = dm_malloc(b * sizeof(int32_t));
    s->indices = dm_malloc(b * sizeof(uint32_t));
    s->example_ids = dm_malloc(b * sizeof(uint64_t));
    s->sync = dm_malloc((s->model.num_trainable + 3) * sizeof(float));
    if (s->x == NULL || s->y == NULL || s->indices == NULL || s->example_ids == NULL ||
        s->sync == NULL)
        return -1;
    return nn_model_reserve(&s->model, s->cfg->batch_size_per_replica);
}

static void free_state(fit_state *s)
{
    nn_model_free(&s->model);
    nn_adam_free(&s->opt);
    pipe_close(s->pipe);
    tb_close(s->tb);
    free(s->x);
    free(s->y);
    free(s->indices);
    free(s->example_ids);
    free(s->sync);
}

/* One synchronous optimizer step on the next batch of every worker; adds
 * the whole job's loss, hits and examples to the epoch's sums. */
static int train_step(fit_state *s, double *loss_sum, int64_t *hits, int64_t *seen)
{
    const size_t n = pipe_next(s->pipe, s->indices);
    ds_fill_batch(s->data, s->indices, n, s->x, s->y);
    /* Example i of worker r is element i * size + r of the global batch,
     * so its dropout mask does not depend on how the batch is split. */
    for (size_t i = 0; i < n; i++)
        s->example_ids[i] = i * (uint64_t)s->size + (uint64_t)s->rank;
    nn_model_set_dropout_key(&s->model, s->cfg->seed, (uint64_t)s->global_step, s->example_ids,
                             (int)n);
    nn_model_forward(&s->model, s->x, (int)n, true);
    int correct = 0;
    /* One worker divides by its batch here. Several workers sum their
     * gradients unscaled and divide by the job's total example count after
     * the all-reduce, because with --steps_per_epoch the shards' partial
     * batches can give the workers different batch lengths in one step. */
    const float scale = s->size > 1 ? 1.0f : 1.0f / (float)n;
    double loss = nn_model_backward(&s->model, s->x, s->y, (int)n, scale, &correct);
    const size_t p = s->model.num_trainable;
    float *grads = s->model.grads;
    int64_t examples = (int64_t)n;
    if (s->size > 1) {
        memcpy(s->sync, s->model.grads, p * sizeof(float));
        s->sync[p] = (float)loss;
        s->sync[p + 1] = (float)correct;
        s->sync[p + 2] = (float)n;
        const double started = dm_monotonic_seconds();
        if (comm_allreduce_sum(s->cfg->comm, s->sync, p + 3) != 0)
            return dm_fail_context("step %lld", (long long)s->global_step + 1);
        s->allreduce_seconds += dm_monotonic_seconds() - started;
        grads = s->sync;
        loss = s->sync[p];
        correct = (int)s->sync[p + 1];
        examples = (int64_t)s->sync[p + 2];
        const float global_scale = 1.0f / (float)examples;
        for (size_t i = 0; i < p; i++)
            grads[i] *= global_scale;
    }
    nn_adam_step(&s->opt, s->model.trainable, grads);
    s->global_step++;
    *loss_sum += loss;
    *hits += correct;
    *seen += examples;
    if (s->tb != NULL && s->cfg->log_steps > 0 && s->global_step % s->cfg->log_steps == 0)
        tb_scalar(s->tb, "batch_loss", s->global_step, (float)(loss / (double)examples));
    return 0;
}

static int run_epoch(fit_state *s, int epoch, fit_result *result)
{
    const float lr = fit_learning_rate(&s->cfg->schedule, epoch);
    FILE *out = s->chief ? s->cfg->progress : NULL;
    progbar bar;
    double loss_sum = 0.0;
    int64_t hits = 0, seen = 0;

    s->opt.learning_rate = lr;
    if (out != NULL && s->cfg->epochs > 1)
        fprintf(out, "Epoch %d/%d\n", epoch + 1, s->cfg->epochs);
    if (out != NULL)
        progbar_begin(&bar, out, s->steps_per_epoch);
    s->allreduce_seconds = 0.0;
    const double started = dm_monotonic_seconds();
    for (int64_t step = 1; step <= s->steps_per_epoch; step++) {
        if (train_step(s, &loss_sum, &hits, &seen) != 0)
            return -1;
        if (out != NULL) {
            progbar_metric metrics[] = {{"loss", loss_sum / (double)seen},
                                        {"accuracy", (double)hits / (double)seen}};
            progbar_update(&bar, step, metrics, 2, false);
        }
    }
    const double loss = loss_sum / (double)seen, accuracy = (double)hits / (double)seen;
    const double elapsed = dm_monotonic_seconds() - started;
    /* Skip what is left of this shard's pass, so the next epoch starts on
     * a fresh shuffle on every worker. */
    if (s->full_pass) {
        uint64_t used = (uint64_t)s->steps_per_epoch;
        uint64_t per_epoch = pipe_batches_per_epoch(s->pipe);
        if (per_epoch > used && pipe_skip_batches(s->pipe, per_epoch - used) != 0)
            return -1;
    }
    /* The chief's time in the all-reduce, which includes waiting for the
     * slowest worker. One process does not log it. */
    char allreduce[64] = "";
    if (s->size > 1)
        snprintf(allreduce, sizeof allreduce, " allreduce_ms_per_step:%.3f",
                 1e3 * s->allreduce_seconds / (double)s->steps_per_epoch);
    if (s->chief)
        DM_INFO("epoch:%d steps:%lld seconds:%.3f ms_per_step:%.3f loss:%.5f accuracy:%.5f "
                "lr:%g%s",
                epoch + 1, (long long)s->steps_per_epoch, elapsed,
                1e3 * elapsed / (double)s->steps_per_epoch, loss, accuracy, (double)lr,
                allreduce);
    if (out != NULL) {
        /* As Keras prints it: after the last in-place redraw, on its own
         * line, then the final progress line. */
        if (bar.dynamic)
            fputc('\n', out);
        fprintf(out, "Learning rate for epoch %d is %.17g\n", epoch + 1, (double)lr);
        progbar_metric metrics[] = {{"loss", loss}, {"accuracy", accuracy}, {"lr", lr}};
        progbar_update(&bar, s->steps_per_epoch, metrics, 3, true);
    }
    if (s->tb != NULL) {
        tb_scalar(s->tb, "epoch_loss", epoch, (float)loss);
        tb_scalar(s->tb, "epoch_accuracy", epoch, (float)accuracy);
        tb_scalar(s->tb, "epoch_learning_rate", epoch, lr);
    }
    if (s->chief && s->cfg->checkpoint_dir != NULL && save_checkpoint(s, epoch + 1) != 0)
        return dm_fail_context("epoch %d", epoch + 1);
    if (s->chief && s->cfg->checkpoint_dir != NULL && s->cfg->keep_checkpoints > 0 &&
        ckpt_prune(s->cfg->checkpoint_dir, s->cfg->keep_checkpoints) != 0)
        return dm_fail_context("epoch %d", epoch + 1);
    if (s->chief && s->cfg->checkpoint_dir != NULL && !s->cfg->resume && epoch == 0 &&
        remove_earlier_run_checkpoints(s->cfg->checkpoint_dir) != 0)
        return dm_fail_context("epoch 1");
    result->final_loss = loss;
    result->final_accuracy = accuracy;
    result->epochs_run++;
    return 0;
}

static int validate_config(const fit_config *cfg, const ds_split *train)
{
    if (cfg->epochs < 1)
        return dm_fail("invalid --epochs %d: must be at least 1", cfg->epochs);
    if (cfg->batch_size_per_replica < 1 || cfg->batch_size_per_replica > 65536)
        return dm_fail("invalid --batch_size_per_replica %d: must be 1 to 65536",
                       cfg->batch_size_per_replica);
    if (cfg->steps_per_epoch < 0)
        return dm_fail("invalid --steps_per_epoch %lld: must be 0 (a full pass) or more",
                       (long long)cfg->steps_per_epoch);
    if (train->count == 0)
        return dm_fail("the training split is empty");
    return 0;
}

static int open_outputs(fit_state *s)
{
    char path[4096];
    if (!s->chief || s->cfg->log_dir == NULL)
        return 0;
    /* Keras's TensorBoard callback writes training scalars under train/. */
    snprintf(path, sizeof path, "%s/train", s->cfg->log_dir);
    s->tb = tb_open(path);
    return s->tb != NULL ? 0 : -1;
}

int fit_run(const fit_config *cfg, const ds_split *train, fit_result *result)
{
    fit_state s;
    int rc = -1;

    memset(&s, 0, sizeof s);
    memset(result, 0, sizeof *result);
    s.cfg = cfg;
    s.data = train;
    s.rank = cfg->comm != NULL ? cfg->comm->rank : 0;
    s.size = cfg->comm != NULL ? cfg->comm->size : 1;
    s.chief = s.rank == 0;
    if (validate_config(cfg, train) != 0)
        return -1;
    if (nn_model_create(&s.model, cfg->model_type, cfg->seed) != 0)
        return -1;
    if (nn_adam_init(&s.opt, s.model.num_trainable) != 0 || open_pipeline(&s) != 0 ||
        allocate_batch(&s) != 0)
        goto out;
    /* Start every worker from the chief's initial weights. */
    if (cfg->comm != NULL &&
        comm_broadcast(cfg->comm, s.model.trainable, s.model.num_trainable * sizeof(float), 0) != 0)
        goto out;
    int start = restore_checkpoint(&s);
    if (start < 0)
        goto out;
    if (start > 0 && s.chief)
        DM_INFO("resuming from %s/ckpt_%d at epoch %d (global step %lld)", cfg->checkpoint_dir,
                start, start + 1, (long long)s.global_step);
    if (start > 0) {
        /* Replay the data order up to the checkpoint, so the run sees the
         * same batches as an uninterrupted one. */
        if (pipe_skip_batches(s.pipe, batches_consumed(&s, start, s.global_step)) != 0)
            goto out;
    }
    result->start_epoch = start;
    if (open_outputs(&s) != 0)
        goto out;
    for (int epoch = start; epoch < cfg->epochs; epoch++)
        if (run_epoch(&s, epoch, result) != 0)
            goto out;
    if (start >= cfg->epochs && s.chief)
        DM_INFO("checkpoint ckpt_%d already covers the %d epochs requested, so nothing is "
                "trained and the model is saved from it (pass --noresume to train again)",
                start,
                cfg->epochs);
    result->global_step = s.global_step;
    if (s.chief && cfg->saved_model_dir != NULL) {
        if (saved_model_save(cfg->saved_model_dir, &s.model) != 0)
            goto out;
        snprintf(result->saved_model_dir, sizeof result->saved_model_dir, "%s",
                 cfg->saved_model_dir);
    } else if (s.chief && cfg->saved_model_base != NULL) {
        if (saved_model_save_version(cfg->saved_model_base, &s.model, result->saved_model_dir,
                                     sizeof result->saved_model_dir) != 0)
            goto out;
    }
    rc = 0;
out:
    free_state(&s);
    return rc;
}

int fit_evaluate_dir(const char *dir, const ds_split *split, int batch_size, FILE *progress,
                     double *loss, double *accuracy)
{
    nn_model m;
    if (saved_model_load(dir, &m) != 0)
        return -1;
    int rc = -1;
    float *x = NULL;
    int32_t *y = NULL;
    uint32_t *indices = NULL;
    if (m.num_classes != DS_NUM_CLASSES || m.input.h != (int)split->rows ||
        m.input.w != (int)split->cols || m.input.c != 1) {
        dm_fail("model %s takes %dx%dx%d inputs with %d classes, but the dataset has %ux%u "
                "images with %d classes",
                dir, m.input.h, m.input.w, m.input.c, m.num_classes, split->rows, split->cols,
                DS_NUM_CLASSES);
        goto out;
    }
    if (nn_model_reserve(&m, batch_size) != 0)
        goto out;
    x = dm_malloc((size_t)batch_size * nn_shape_size(m.input) * sizeof(float));
    y = dm_malloc((size_t)batch_size * sizeof(int32_t));
    indices = dm_malloc((size_t)batch_size * sizeof(uint32_t));
    if (x == NULL || y == NULL || indices == NULL)
        goto out;
    const int64_t steps = ((int64_t)split->count + batch_size - 1) / batch_size;
    progbar bar;
    if (progress != NULL)
        progbar_begin(&bar, progress, steps);
    double loss_sum = 0.0;
    int64_t hits = 0, seen = 0;
    for (int64_t step = 0; step < steps; step++) {
        uint32_t first = (uint32_t)(step * batch_size);
        int n = (int)(split->count - first < (uint32_t)batch_size ? split->count - first
                                                                  : (uint32_t)batch_size);
        for (int i = 0; i < n; i++)
            indices[i] = first + (uint32_t)i;
        ds_fill_batch(split, indices, (size_t)n, x, y);
        nn_model_forward(&m, x, n, false);
        int correct = 0;
        loss_sum += nn_model_loss(&m, y, n, &correct);
        hits += correct;
        seen += n;
        if (progress != NULL) {
            progbar_metric metrics[] = {{"loss", loss_sum / (double)seen},
                                        {"accuracy", (double)hits / (double)seen}};
            progbar_update(&bar, step + 1, metrics, 2, step + 1 == steps);
        }
    }
    *loss = loss_sum / (double)seen;
    *accuracy = (double)hits / (double)seen;
    rc = 0;
out:
    free(x);
    free(y);
    free(indices);
    nn_model_free(&m);
    return rc;
}
