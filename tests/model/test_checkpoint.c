/* Checkpoints: save and load round trip, the latest complete checkpoint
 * past half-written and corrupt ones, and pruning. */
#include "base/error.h"
#include "base/fsutil.h"
#include "check.h"
#include "model/bundle.h"
#include "model/checkpoint.h"

#include <fcntl.h>
#include <sys/wait.h>

static char tmp[4096];

enum { TENSOR_COUNT = 5 };

static float weights[12], adam_m[12], adam_v[12], moving_mean[4], moving_var[4];

static void fill_tensors(st_tensor t[TENSOR_COUNT], int epoch)
{
    for (int i = 0; i < 12; i++) {
        weights[i] = (float)epoch + (float)i / 16.0f;
        adam_m[i] = -0.001f * (float)(i + epoch);
        adam_v[i] = 1e-6f * (float)(i * i + 1);
    }
    for (int i = 0; i < 4; i++) {
        moving_mean[i] = 0.25f * (float)i;
        moving_var[i] = 1.0f + (float)i;
    }
    st_tensor list[TENSOR_COUNT] = {
        {.name = "conv1/kernel", .ndim = 4, .shape = {3, 2, 2, 1}, .data = weights},
        {.name = "optimizer/conv1/kernel/m", .ndim = 4, .shape = {3, 2, 2, 1}, .data = adam_m},
        {.name = "optimizer/conv1/kernel/v", .ndim = 4, .shape = {3, 2, 2, 1}, .data = adam_v},
        {.name = "bn1/moving_mean", .ndim = 1, .shape = {4}, .data = moving_mean},
        {.name = "bn1/moving_variance", .ndim = 1, .shape = {4}, .data = moving_var},
    };
    memcpy(t, list, sizeof list);
}

static void state_for(char *out, size_t capacity, int epoch)
{
    snprintf(out, capacity,
             "{\"epoch\": %d, \"global_step\": %d, \"optimizer_iterations\": %d, "
             "\"rng\": [1, 2, 3, 4]}",
             epoch, epoch * 100, epoch * 100);
}

static int save_epoch(const char *dir, int epoch)
{
    st_tensor t[TENSOR_COUNT];
    char state[256];
    fill_tensors(t, epoch);
    state_for(state, sizeof state, epoch);
    int rc = ckpt_save(dir, epoch, t, TENSOR_COUNT, state);
    if (rc != 0)
        fprintf(stderr, "ckpt_save %d: %s\n", epoch, dm_error());
    return rc;
}

/* Run ckpt_latest with stderr captured into LOG (capacity bytes). */
static int latest_capturing_log(const char *dir, int *epoch, char *log, size_t capacity)
{
    char log_path[4096];
    fs_join(log_path, sizeof log_path, tmp, "warnings.log");
    fflush(stderr);
    int saved = dup(2);
    int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 2);
    close(fd);
    int rc = ckpt_latest(dir, epoch);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);

    unsigned char *text = NULL;
    size_t size = 0;
    log[0] = '\0';
    if (fs_read_file(log_path, &text, &size) == 0) {
        snprintf(log, capacity, "%s", (const char *)text);
        fputs(log, stderr);
    }
    free(text);
    return rc;
}

static int count_occurrences(const char *text, const char *needle)
{
    int count = 0;
    for (const char *p = text; (p = strstr(p, needle)) != NULL; p++)
        count++;
    return count;
}

static void test_round_trip(void)
{
    char dir[4096];
    fs_join(dir, sizeof dir, tmp, "round_trip");
    CHECK_INT_EQ(save_epoch(dir, 1), 0);
    CHECK_INT_EQ(save_epoch(dir, 2), 0);
    CHECK_INT_EQ(save_epoch(dir, 3), 0);

    int epoch = -1;
    CHECK_INT_EQ(ckpt_latest(dir, &epoch), 0);
    CHECK_INT_EQ(epoch, 3);

    st_tensor *loaded = NULL;
    size_t count = 0;
    char *state = NULL;
    int rc = ckpt_load(dir, 2, &loaded, &count, &state);
    CHECK_MSG(rc == 0, "%s", dm_error());
    if (rc != 0)
        return;

    st_tensor expected[TENSOR_COUNT];
    char expected_state[256];
    fill_tensors(expected, 2);
    state_for(expected_state, sizeof expected_state, 2);
    CHECK_INT_EQ(count, TENSOR_COUNT);
    for (size_t i = 0; i < TENSOR_COUNT && i < count; i++) {
        const st_tensor *got = st_find(loaded, count, expected[i].name);
        CHECK_MSG(got != NULL, "tensor '%s' is missing", expected[i].name);
        if (got == NULL)
            continue;
        CHECK_INT_EQ(got->ndim, expected[i].ndim);
        CHECK_INT_EQ(st_element_count(got), st_element_count(&expected[i]));
        size_t bytes = (size_t)st_element_count(&expected[i]) * sizeof(float);
        CHECK_MSG(memcmp(got->data, expected[i].data, bytes) == 0, "data of '%s' differs",
                  expected[i].name);
    }
    CHECK_MSG(strcmp(state, expected_state) == 0, "state is '%s'", state);
    st_free(loaded, count);
    free(state);

    /* Loading without the state is allowed. */
    CHECK_INT_EQ(ckpt_load(dir, 1, &loaded, &count, NULL), 0);
    st_free(loaded, count);
}

static void test_latest_skips_bad(void)
{
    char dir[4096], path[4096], log[8192];
    fs_join(dir, sizeof dir, tmp, "skips");
    CHECK_INT_EQ(save_epoch(dir, 1), 0);
    CHECK_INT_EQ(save_epoch(dir, 2), 0);

    /* ckpt_3: an interrupted save, killed before its commit. */
    pid_t child = fork();
    if (child == 0) {
        fs_join(path, sizeof path, dir, "ckpt_3");
        bundle_writer *writer = bundle_begin(path, CKPT_FORMAT);
        _exit(writer != NULL && bundle_add_file(writer, CKPT_STATE_FILE, "{}", 2) == 0 ? 0 : 3);
    }
    int status = 0;
    waitpid(child, &status, 0);
    CHECK_INT_EQ(status, 0); /* the child exited with status 0 */

    /* ckpt_4: a directory without manifest.json. */
    fs_join(path, sizeof path, dir, "ckpt_4");
    CHECK_INT_EQ(fs_mkdir_p(path), 0);

    /* ckpt_5: complete, then corrupted with a same-size state.json. */
    CHECK_INT_EQ(save_epoch(dir, 5), 0);
    fs_join(path, sizeof path, dir, "ckpt_5/" CKPT_STATE_FILE);
    unsigned char *text = NULL;
    size_t size = 0;
    CHECK_INT_EQ(fs_read_file(path, &text, &size), 0);
    if (text != NULL && size > 2) {
        text[2] = text[2] == 'x' ? 'y' : 'x';
        CHECK_INT_EQ(fs_write_file_atomic(path, text, size), 0);
    }
    free(text);

    /* ckpt_6: a bundle of another format. */
    fs_join(path, sizeof path, dir, "ckpt_6");
    bundle_writer *writer = bundle_begin(path, "distml-model");
    CHECK(writer != NULL);
    if (writer != NULL) {
        CHECK_INT_EQ(bundle_add_file(writer, CKPT_STATE_FILE, "{}", 2), 0);
        CHECK_INT_EQ(bundle_commit(writer, false), 0);
    }

    int epoch = -1;
    CHECK_INT_EQ(latest_capturing_log(dir, &epoch, log, sizeof log), 0);
    CHECK_INT_EQ(epoch, 2);
    CHECK_INT_EQ(count_occurrences(log, "skipping checkpoint"), 3);
    CHECK_STR_CONTAINS(log, "skipping checkpoint 6");
    CHECK_STR_CONTAINS(log, "format is 'distml-model'");
    CHECK_STR_CONTAINS(log, "skipping checkpoint 5");
    CHECK_STR_CONTAINS(log, "file state.json has SHA-256");
    CHECK_STR_CONTAINS(log, "skipping checkpoint 4");
    CHECK_STR_CONTAINS(log, "incomplete bundle");
    /* The killed child's ckpt_3.tmp.<pid> is removed, since its process
     * no longer exists. */
    CHECK_INT_EQ(count_occurrences(log, "ignoring"), 0);
    CHECK_STR_CONTAINS(log, "removed");
    CHECK_STR_CONTAINS(log, "ckpt_3.tmp.");

    st_tensor *loaded = NULL;
    size_t count = 0;
    CHECK_INT_EQ(ckpt_load(dir, 5, &loaded, &count, NULL), -1);
    CHECK_STR_CONTAINS(dm_error(), "cannot load checkpoint 5");
    CHECK_STR_CONTAINS(dm_error(), "state.json");
    CHECK_INT_EQ(ckpt_load(dir, 9, &loaded, &count, NULL), -1);
    CHECK_STR_CONTAINS(dm_error(), "not found");
}

static void test_none(void)
{
    char dir[4096], missing[4096];
    fs_join(dir, sizeof dir, tmp, "none");
    fs_join(missing, sizeof missing, tmp, "missing");
    CHECK_INT_EQ(fs_mkdir_p(dir), 0);

    int epoch = -1;
    CHECK_INT_EQ(ckpt_latest(dir, &epoch), 0);
    CHECK_INT_EQ(epoch, 0);
    epoch = -1;
    CHECK_INT_EQ(ckpt_latest(missing, &epoch), 0);
    CHECK_INT_EQ(epoch, 0);
}

static void test_save_rejects(void)
{
    char dir[4096];
    st_tensor t[TENSOR_COUNT];
    fill_tensors(t, 1);
    fs_join(dir, sizeof dir, tmp, "rejects");

    CHECK_INT_EQ(ckpt_save(dir, 0, t, TENSOR_COUNT, "{}"), -1);
    CHECK_STR_CONTAINS(dm_error(), "epoch 0");
    CHECK_INT_EQ(ckpt_save(dir, 1, t, TENSOR_COUNT, "{\"epoch\": "), -1);
    CHECK_STR_CONTAINS(dm_error(), "not a JSON object");
    CHECK_INT_EQ(ckpt_save(dir, 1, t, TENSOR_COUNT, "[1]"), -1);
    CHECK_STR_CONTAINS(dm_error(), "not a JSON object");

    int epoch = -1;
    CHECK_INT_EQ(ckpt_latest(dir, &epoch), 0);
    CHECK_INT_EQ(epoch, 0);
}

static void test_save_replaces(void)
{
    char dir[4096];
    fs_join(dir, sizeof dir, tmp, "replaces");
    CHECK_INT_EQ(save_epoch(dir, 1), 0);

    st_tensor t[TENSOR_COUNT];
    fill_tensors(t, 7);
    CHECK_INT_EQ(ckpt_save(dir, 1, t, 1, "{\"epoch\": 1, \"again\": true}"), 0);

    st_tensor *loaded = NULL;
    size_t count = 0;
    char *state = NULL;
    CHECK_INT_EQ(ckpt_load(dir, 1, &loaded, &count, &state), 0);
    CHECK_INT_EQ(count, 1);
    if (count == 1)
        CHECK(loaded[0].data[0] == 7.0f);
    CHECK(state != NULL);
    if (state != NULL)
        CHECK(strcmp(state, "{\"epoch\": 1, \"again\": true}") == 0);
    st_free(loaded, count);
    free(state);
}

static void test_prune(void)
{
    char dir[4096], path[4096];
    fs_join(dir, sizeof dir, tmp, "prune");
    for (int epoch = 1; epoch <= 4; epoch++)
        CHECK_INT_EQ(save_epoch(dir, epoch), 0);
    fs_join(path, sizeof path, dir, "ckpt_5"); /* incomplete, newer than every kept one */
    CHECK_INT_EQ(fs_mkdir_p(path), 0);

    CHECK_INT_EQ(ckpt_prune(dir, 2), 0);
    for (int epoch = 1; epoch <= 5; epoch++) {
        ckpt_path(path, sizeof path, dir, epoch);
        bool expected = epoch >= 3;
        CHECK_MSG(fs_exists(path) == expected, "ckpt_%d %s", epoch,
                  expected ? "was removed" : "was kept");
    }
    int epoch = -1;
    CHECK_INT_EQ(ckpt_latest(dir, &epoch), 0);
    CHECK_INT_EQ(epoch, 4);

    CHECK_INT_EQ(ckpt_prune(dir, 0), -1);
    CHECK_STR_CONTAINS(dm_error(), "keep is 0");
}

int main(void)
{
    snprintf(tmp, sizeof tmp, "%s", check_tmpdir("checkpoint"));
    RUN_TEST(test_round_trip);
    RUN_TEST(test_latest_skips_bad);
    RUN_TEST(test_none);
    RUN_TEST(test_save_rejects);
    RUN_TEST(test_save_replaces);
    RUN_TEST(test_prune);
    return check_finish();
}
