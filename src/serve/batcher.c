#include "serve/batcher.h"

#include "base/error.h"
#include "base/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* One submitted request, freed after its completion function returns. */
typedef struct task {
    srv_servable *servable;
    const float *x;
    float *y;
    int n;
    srv_batch_done_fn done;
    void *context;
    struct task *next;
} task;

struct srv_batcher {
    int max_batch;
    int64_t timeout_us;
    srv_metrics *metrics;

    pthread_mutex_t lock;
    /* Signalled when a task arrives in an empty queue, so that a batch
     * thread starts the timeout, and when the head batch becomes ready. */
    pthread_cond_t queued;
    task *head, *tail;
    int64_t queued_examples;
    int arriving;    /* announced requests not submitted or withdrawn yet */
    bool announcing; /* requests are announced, so ARRIVING counts */
    bool stopping;

    pthread_t *threads;
    int num_threads;
    int live_threads; /* batch threads that have not exited yet */
};

static void add_microseconds(struct timespec *t, int64_t us)
{
    t->tv_sec += (time_t)(us / 1000000);
    t->tv_nsec += (long)(us % 1000000) * 1000;
    if (t->tv_nsec >= 1000000000L) {
        t->tv_sec++;
        t->tv_nsec -= 1000000000L;
    }
}

/* Pops the tasks of one batch (caller locks): the head, then following
 * tasks for the same servable while they fit in max_batch. */
static task *take_batch(srv_batcher *b, int *total)
{
    task *first = b->head, *last = first;
    *total = first->n;
    while (last->next != NULL && last->next->servable == first->servable &&
           *total + last->next->n <= b->max_batch) {
        last = last->next;
        *total += last->n;
    }
    b->head = last->next;
    if (b->head == NULL)
        b->tail = NULL;
    last->next = NULL;
    b->queued_examples -= *total;
    return first;
}

/* Runs the tasks from FIRST on as one forward pass, with BUFFER_X and
 * BUFFER_Y (grown as needed) holding the merged examples. */
static int run_batch(srv_batcher *b, task *first, int total, float **buffer_x, float **buffer_y,
                     size_t *capacity)
{
    srv_servable *s = first->servable;
    if (first->next == NULL) {
        /* A request larger than max_batch runs in several forward passes. */
        if (b->metrics != NULL)
            srv_metrics_passes(b->metrics, total, b->max_batch);
        return srv_servable_predict(s, first->x, first->n, b->max_batch, first->y);
    }
    const size_t example = (size_t)srv_servable_input_height(s) * srv_servable_input_width(s);
    const size_t classes = (size_t)srv_servable_num_classes(s);
    if ((size_t)total > *capacity) {
        float *x = realloc(*buffer_x, (size_t)total * example * sizeof *x);
        if (x != NULL)
            *buffer_x = x;
        float *y = realloc(*buffer_y, (size_t)total * classes * sizeof *y);
        if (y != NULL)
            *buffer_y = y;
        if (x == NULL || y == NULL)
            return dm_fail("out of memory for a batch of %d examples", total);
        *capacity = (size_t)total;
    }
    size_t offset = 0;
    for (task *t = first; t != NULL; t = t->next) {
        memcpy(*buffer_x + offset * example, t->x, (size_t)t->n * example * sizeof(float));
        offset += (size_t)t->n;
    }
    if (b->metrics != NULL)
        srv_metrics_batch(b->metrics, total);
    if (srv_servable_predict(s, *buffer_x, total, b->max_batch, *buffer_y) != 0)
        return -1;
    offset = 0;
    for (task *t = first; t != NULL; t = t->next) {
        memcpy(t->y, *buffer_y + offset * classes, (size_t)t->n * classes * sizeof(float));
        offset += (size_t)t->n;
    }
    return 0;
}

/* Whether the head batch should run without waiting longer (caller locks). */
static bool batch_is_ready(const srv_batcher *b)
{
    return b->stopping || b->queued_examples >= b->max_batch || (b->announcing && b->arriving == 0);
}

/* Waits until the head batch is ready or the timeout after it was first
 * seen passes (caller locks). Returns false when another batch thread took
 * the queued tasks meanwhile. */
static bool wait_for_batch(srv_batcher *b)
{
    if (b->timeout_us <= 0 || batch_is_ready(b))
        return true;
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    add_microseconds(&deadline, b->timeout_us);
    while (b->head != NULL && !batch_is_ready(b)) {
        if (pthread_cond_timedwait(&b->queued, &b->lock, &deadline) == ETIMEDOUT)
            break;
    }
    return b->head != NULL;
}

static void *batch_thread(void *arg)
{
    srv_batcher *b = arg;
    float *buffer_x = NULL, *buffer_y = NULL;
    size_t capacity = 0;

    pthread_mutex_lock(&b->lock);
    for (;;) {
        while (b->head == NULL && !b->stopping)
            pthread_cond_wait(&b->queued, &b->lock);
        if (b->head == NULL) {
            /* Counted down under the lock, so that a later submission finds
             * no thread left and runs its request itself. */
            b->live_threads--;
            break;
        }
        if (!wait_for_batch(b))
            continue;
        int total = 0;
        task *first = take_batch(b, &total);
        /* Another thread may start forming the next batch meanwhile. */
        if (b->head != NULL)
            pthread_cond_signal(&b->queued);
        pthread_mutex_unlock(&b->lock);

        int rc = run_batch(b, first, total, &buffer_x, &buffer_y, &capacity);
        if (rc != 0)
            DM_ERROR("batch of %d examples failed: %s", total, dm_error());
        for (task *t = first, *next; t != NULL; t = next) {
            next = t->next;
            t->done(t->context, rc);
            free(t);
        }
        pthread_mutex_lock(&b->lock);
    }
    pthread_mutex_unlock(&b->lock);
    free(buffer_x);
    free(buffer_y);
    return NULL;
}

srv_batcher *srv_batcher_create(int max_batch, int64_t timeout_us, int threads,
                                srv_metrics *metrics)
{
    srv_batcher *b = calloc(1, sizeof *b);
    if (b == NULL) {
        dm_fail("out of memory starting the batcher");
        return NULL;
    }
    b->max_batch = max_batch;
    b->timeout_us = timeout_us;
    b->metrics = metrics;
    pthread_mutex_init(&b->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&b->queued, &attr);
    pthread_condattr_destroy(&attr);
    b->threads = calloc((size_t)threads, sizeof *b->threads);
    if (b->threads == NULL) {
        srv_batcher_free(b);
        dm_fail("out of memory starting the batcher");
        return NULL;
    }
    for (int i = 0; i < threads; i++) {
        int err = pthread_create(&b->threads[i], NULL, batch_thread, b);
        if (err != 0) {
            srv_batcher_free(b);
            dm_fail("cannot start batch thread %d: %s", i, strerror(err));
            return NULL;
        }
        b->num_threads++;
        pthread_mutex_lock(&b->lock);
        b->live_threads++;
        pthread_mutex_unlock(&b->lock);
    }
    return b;
}

void srv_batcher_announce(srv_batcher *b)
{
    pthread_mutex_lock(&b->lock);
    b->announcing = true;
    b->arriving++;
    pthread_mutex_unlock(&b->lock);
}

void srv_batcher_withdraw(srv_batcher *b)
{
    pthread_mutex_lock(&b->lock);
    b->arriving--;
    /* The queued requests may have been waiting only for this one. */
    if (b->head != NULL && batch_is_ready(b))
        pthread_cond_signal(&b->queued);
    pthread_mutex_unlock(&b->lock);
}

int srv_batcher_submit(srv_batcher *b, srv_servable *s, const float *x, int n, float *y,
                       bool announced, srv_batch_done_fn done, void *context)
{
    task *t = malloc(sizeof *t);
    if (t == NULL) {
        if (announced)
            srv_batcher_withdraw(b);
        return dm_fail("out of memory queueing a request of %d examples", n);
    }
    *t = (task){.servable = s, .x = x, .y = y, .n = n, .done = done, .context = context};
    pthread_mutex_lock(&b->lock);
    if (announced)
        b->arriving--;
    if (b->live_threads == 0) {
        /* Stopped: no batch thread would run the request, so it runs
         * here, alone. */
        pthread_mutex_unlock(&b->lock);
        float *buffer_x = NULL, *buffer_y = NULL;
        size_t capacity = 0;
        int rc = run_batch(b, t, n, &buffer_x, &buffer_y, &capacity);
        done(context, rc);
        free(t);
        return 0;
    }
    const bool was_empty = b->head == NULL;
    if (b->tail != NULL)
        b->tail->next = t;
    else
        b->head = t;
    b->tail = t;
    b->queued_examples += n;
    /* A batch thread needs waking to start the timeout, or to run the
     * batch now; other arrivals would only wake it to wait again. */
    if (was_empty || batch_is_ready(b))
        pthread_cond_signal(&b->queued);
    pthread_mutex_unlock(&b->lock);
    return 0;
}

void srv_batcher_stop(srv_batcher *b)
{
    if (b == NULL)
        return;
    pthread_mutex_lock(&b->lock);
    const bool already_stopping = b->stopping;
    b->stopping = true;
    pthread_cond_broadcast(&b->queued);
    pthread_mutex_unlock(&b->lock);
    if (already_stopping)
        return;
    for (int i = 0; i < b->num_threads; i++)
        pthread_join(b->threads[i], NULL);
}

void srv_batcher_free(srv_batcher *b)
{
    if (b == NULL)
        return;
    srv_batcher_stop(b);
    free(b->threads);
    pthread_mutex_destroy(&b->lock);
    pthread_cond_destroy(&b->queued);
    free(b);
}
