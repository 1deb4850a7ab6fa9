/*
 * Servables and the version manager: the highest complete version is
 * served, folders that are not versions and incomplete versions are
 * skipped, a new version is swapped in while a request still uses the
 * old one, and dynamic batching gives the probabilities of one forward pass
 * over the merged examples.
 */
#include "check.h"

#include "base/error.h"
#include "base/fsutil.h"
#include "base/rng.h"
#include "model/saved_model.h"
#include "serve/batcher.h"
#include "serve/metrics.h"
#include "serve/servable.h"

#include <pthread.h>

static char base[4096];

/* Saves an untrained cnn drawn from SEED as folder NAME under BASE. */
static void save_model(const char *name, uint64_t seed)
{
    char dir[4096];
    nn_model m;
    fs_join(dir, sizeof dir, base, name);
    if (nn_model_create(&m, "cnn", seed) != 0 || saved_model_save(dir, &m) != 0) {
        fprintf(stderr, "cannot save a model to %s: %s\n", dir, dm_error());
        exit(2);
    }
    nn_model_free(&m);
}

static void fill_inputs(float *x, int n)
{
    dm_rng rng;
    dm_rng_seed(&rng, 3, 4);
    for (int i = 0; i < n * 784; i++)
        x[i] = dm_rng_uniform(&rng);
}

static void test_manager_serves_highest_complete(void)
{
    save_model("1", 1);
    save_model("2", 2);
    save_model("v3", 3);
    save_model("4.partial", 4);
    char incomplete[4096];
    fs_join(incomplete, sizeof incomplete, base, "7");
    fs_mkdir_p(incomplete);

    srv_manager *m = srv_manager_create("m", base, 2, 4);
    CHECK(srv_manager_acquire(m) == NULL);
    CHECK_INT_EQ(srv_manager_poll(m), 1);
    srv_servable *s = srv_manager_acquire(m);
    CHECK(s != NULL);
    CHECK_INT_EQ(s != NULL ? srv_servable_version(s) : -1, 2);
    CHECK_INT_EQ(srv_manager_poll(m), 0);

    /* A request holding version 2 keeps it usable across the swap. */
    save_model("10", 10);
    CHECK_INT_EQ(srv_manager_poll(m), 1);
    srv_servable *fresh = srv_manager_acquire(m);
    CHECK_INT_EQ(fresh != NULL ? srv_servable_version(fresh) : -1, 10);
    float x[784], y[10];
    fill_inputs(x, 1);
    CHECK_INT_EQ(srv_servable_predict(s, x, 1, 4, y), 0);
    float sum = 0.0f;
    for (int k = 0; k < 10; k++)
        sum += y[k];
    CHECK_NEAR(sum, 1.0, 1e-5);

    srv_version_status states[8];
    size_t count = srv_manager_status(m, states, 8);
    CHECK_INT_EQ(count, 2);
    CHECK_INT_EQ(states[0].version, 10);
    CHECK(strcmp(srv_state_name(states[0].state), "AVAILABLE") == 0);
    CHECK_INT_EQ(states[1].version, 2);
    CHECK(strcmp(srv_state_name(states[1].state), "END") == 0);

    srv_servable_release(s);
    srv_servable_release(fresh);
    srv_manager_free(m);
}

/* The replies of submitted requests, filled in by the batch thread. */
typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    int finished;
    int failed;
} replies;

static void count_reply(void *context, int rc)
{
    replies *r = context;
    pthread_mutex_lock(&r->lock);
    r->finished++;
    r->failed += rc != 0;
    pthread_cond_signal(&r->changed);
    pthread_mutex_unlock(&r->lock);
}

static void test_batching_matches_forward_pass(void)
{
    enum { CLIENTS = 16 };
    char dir[4096];
    fs_join(dir, sizeof dir, base, "1");
    srv_servable *s = NULL;
    CHECK_INT_EQ(srv_servable_load("m", dir, 1, 1, CLIENTS, &s), 0);
    if (s == NULL)
        return;
    static float x[CLIENTS * 784], alone[CLIENTS * 10], batched[CLIENTS * 10];
    fill_inputs(x, CLIENTS);
    for (int i = 0; i < CLIENTS; i++)
        CHECK_INT_EQ(srv_servable_predict(s, x + i * 784, 1, 1, alone + i * 10), 0);

    srv_metrics *metrics = srv_metrics_create();
    /* A long timeout, so the batch waits for all clients and fills up. */
    srv_batcher *b = srv_batcher_create(CLIENTS, 2000000, 1, metrics);
    replies r = {.finished = 0, .failed = 0};
    pthread_mutex_init(&r.lock, NULL);
    pthread_cond_init(&r.changed, NULL);
    for (int i = 0; i < CLIENTS; i++)
        CHECK_INT_EQ(srv_batcher_submit(b, s, x + i * 784, 1, batched + i * 10, false,
                                        count_reply, &r),
                     0);
    pthread_mutex_lock(&r.lock);
    while (r.finished < CLIENTS)
        pthread_cond_wait(&r.changed, &r.lock);
    pthread_mutex_unlock(&r.lock);
    CHECK_INT_EQ(r.failed, 0);
    pthread_cond_destroy(&r.changed);
    pthread_mutex_destroy(&r.lock);
    /* The merged batch gives exactly what one forward pass over the same
     * 16 examples gives. */
    static float together[CLIENTS * 10];
    CHECK_INT_EQ(srv_servable_predict(s, x, CLIENTS, CLIENTS, together), 0);
    int differ = 0;
    for (int i = 0; i < CLIENTS * 10; i++)
        differ += batched[i] != together[i];
    CHECK_MSG(differ == 0, "%d of %d probabilities differ from one direct forward pass", differ,
              CLIENTS * 10);
    /* Against one request at a time the last bits can differ, because
     * OpenBLAS picks its kernels by matrix size (2.6e-7 relative, measured
     * with OpenBLAS 0.3.21). The predicted classes stay the same. */
    for (int i = 0; i < CLIENTS; i++) {
        int best_alone = 0, best_batched = 0;
        for (int k = 0; k < 10; k++) {
            CHECK_NEAR(batched[i * 10 + k], alone[i * 10 + k], 1e-5 * alone[i * 10 + k]);
            best_alone = alone[i * 10 + k] > alone[i * 10 + best_alone] ? k : best_alone;
            best_batched = batched[i * 10 + k] > batched[i * 10 + best_batched] ? k : best_batched;
        }
        CHECK_INT_EQ(best_batched, best_alone);
    }

    size_t length = 0;
    char *text = srv_metrics_render(metrics, "m", 1, &length);
    CHECK(text != NULL);
    /* All 16 examples ran in one forward pass. */
    CHECK_STR_CONTAINS(text, "distml_batch_size_count 1\n");
    CHECK_STR_CONTAINS(text, "distml_batch_size_sum 16\n");
    free(text);
    srv_batcher_free(b);
    srv_metrics_free(metrics);
    srv_servable_release(s);
}

int main(void)
{
    snprintf(base, sizeof base, "%s", check_tmpdir("serve_servable"));
    RUN_TEST(test_manager_serves_highest_complete);
    RUN_TEST(test_batching_matches_forward_pass);
    fs_remove_tree(base);
    return check_finish();
}
