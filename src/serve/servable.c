#include "serve/servable.h"

#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"
#include "model/bundle.h"
#include "model/saved_model.h"
#include "model/versions.h"
#include "nn/model.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct srv_servable {
    char model_name[256];
    int64_t version;
    atomic_int references;

    nn_model *replicas;
    int num_replicas;
    int *free_replicas; /* stack of indices into REPLICAS */
    int num_free;
    pthread_mutex_t lock;
    pthread_cond_t replica_returned;
};

static void servable_free(srv_servable *s)
{
    for (int i = 0; i < s->num_replicas; i++)
        nn_model_free(&s->replicas[i]);
    free(s->replicas);
    free(s->free_replicas);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->replica_returned);
    free(s);
}

int srv_servable_load(const char *model_name, const char *path, int64_t version, int replicas,
                      int reserve, srv_servable **out)
{
    const double started = dm_monotonic_seconds();
    srv_servable *s = calloc(1, sizeof *s);
    if (s == NULL)
        return dm_fail("out of memory loading %s", path);
    snprintf(s->model_name, sizeof s->model_name, "%s", model_name);
    s->version = version;
    atomic_init(&s->references, 1);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->replica_returned, NULL);
    s->replicas = calloc((size_t)replicas, sizeof *s->replicas);
    s->free_replicas = calloc((size_t)replicas, sizeof *s->free_replicas);
    if (s->replicas == NULL || s->free_replicas == NULL) {
        servable_free(s);
        return dm_fail("out of memory loading %s", path);
    }
    /* Each replica is loaded from disk, and so checked against the
     * manifest, because nn_model has no copy operation. */
    for (int i = 0; i < replicas; i++) {
        if (saved_model_load(path, &s->replicas[i]) != 0 ||
            nn_model_reserve(&s->replicas[i], reserve) != 0) {
            nn_model_free(&s->replicas[i]); /* safe after a failed load, too */
            servable_free(s);
            return dm_fail_context("cannot load version %lld from %s", (long long)version, path);
        }
        s->num_replicas++;
        s->free_replicas[s->num_free++] = i;
    }
    const nn_model *m = &s->replicas[0];
    if (m->input.rank != 3 || m->input.c != 1) {
        servable_free(s);
        return dm_fail("cannot serve version %lld from %s: the input is not one-channel images",
                       (long long)version, path);
    }
    DM_INFO("loaded version %lld of model %s from %s: %s, %d replicas, %.0f ms",
            (long long)version, model_name, path, m->model_type, replicas,
            1e3 * (dm_monotonic_seconds() - started));
    *out = s;
    return 0;
}

void srv_servable_retain(srv_servable *s)
{
    atomic_fetch_add(&s->references, 1);
}

void srv_servable_release(srv_servable *s)
{
    if (s == NULL || atomic_fetch_sub(&s->references, 1) != 1)
        return;
    DM_INFO("unloaded version %lld of model %s", (long long)s->version, s->model_name);
    servable_free(s);
}

int64_t srv_servable_version(const srv_servable *s)
{
    return s->version;
}

int srv_servable_num_classes(const srv_servable *s)
{
    return s->replicas[0].num_classes;
}

int srv_servable_input_height(const srv_servable *s)
{
    return s->replicas[0].input.h;
}

int srv_servable_input_width(const srv_servable *s)
{
    return s->replicas[0].input.w;
}

int srv_servable_predict(srv_servable *s, const float *x, int n, int chunk, float *y)
{
    pthread_mutex_lock(&s->lock);
    while (s->num_free == 0)
        pthread_cond_wait(&s->replica_returned, &s->lock);
    int index = s->free_replicas[--s->num_free];
    pthread_mutex_unlock(&s->lock);

    nn_model *m = &s->replicas[index];
    const size_t example = (size_t)m->input.h * (size_t)m->input.w;
    const size_t classes = (size_t)m->num_classes;
    int rc = 0;
    for (int first = 0; first < n; first += chunk) {
        int count = n - first < chunk ? n - first : chunk;
        if (count > m->capacity && nn_model_reserve(m, count) != 0) {
            rc = -1;
            break;
        }
        const float *probabilities = nn_model_forward(m, x + (size_t)first * example, count, false);
        memcpy(y + (size_t)first * classes, probabilities, (size_t)count * classes * sizeof *y);
    }

    pthread_mutex_lock(&s->lock);
    s->free_replicas[s->num_free++] = index;
    pthread_cond_signal(&s->replica_returned);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

const char *srv_state_name(srv_state state)
{
    switch (state) {
    case SRV_STATE_LOADING: return "LOADING";
    case SRV_STATE_AVAILABLE: return "AVAILABLE";
    case SRV_STATE_END: return "END";
    }
    return "UNKNOWN";
}

/* ---- manager ---- */

enum { MAX_HISTORY = 16, MAX_WARNED = 64 };

struct srv_manager {
    char model_name[256];
    char base[4096];
    int replicas, reserve;

    pthread_mutex_t lock; /* guards CURRENT and HISTORY */
    srv_servable *current;
    srv_version_status history[MAX_HISTORY]; /* newest first */
    size_t history_count;

    /* Versions already warned about, so a poll every second does not
     * repeat the same line; -1 stands for the base path itself. */
    int64_t warned[MAX_WARNED];
    size_t warned_count;
};

srv_manager *srv_manager_create(const char *model_name, const char *base, int replicas,
                                int reserve)
{
    srv_manager *m = calloc(1, sizeof *m);
    if (m == NULL)
        return NULL;
    snprintf(m->model_name, sizeof m->model_name, "%s", model_name);
    snprintf(m->base, sizeof m->base, "%s", base);
    m->replicas = replicas;
    m->reserve = reserve;
    pthread_mutex_init(&m->lock, NULL);
    return m;
}

void srv_manager_free(srv_manager *m)
{
    if (m == NULL)
        return;
    srv_servable_release(m->current);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

/* Returns true the first time KEY is passed, false after that. */
static bool first_warning(srv_manager *m, int64_t key)
{
    for (size_t i = 0; i < m->warned_count; i++)
        if (m->warned[i] == key)
            return false;
    if (m->warned_count < MAX_WARNED)
        m->warned[m->warned_count++] = key;
    return true;
}

static void forget_warning(srv_manager *m, int64_t key)
{
    for (size_t i = 0; i < m->warned_count; i++) {
        if (m->warned[i] == key) {
            m->warned[i] = m->warned[--m->warned_count];
            return;
        }
    }
}

/* Records VERSION in STATE at the front of the history (caller locks). */
static void set_state(srv_manager *m, int64_t version, srv_state state)
{
    for (size_t i = 0; i < m->history_count; i++) {
        if (m->history[i].version == version) {
            m->history[i].state = state;
            return;
        }
    }
    if (m->history_count == MAX_HISTORY)
        m->history_count--;
    memmove(m->history + 1, m->history, m->history_count * sizeof *m->history);
    m->history[0] = (srv_version_status){version, state};
    m->history_count++;
}

static void remove_state(srv_manager *m, int64_t version)
{
    for (size_t i = 0; i < m->history_count; i++) {
        if (m->history[i].version == version) {
            memmove(m->history + i, m->history + i + 1,
                    (m->history_count - i - 1) * sizeof *m->history);
            m->history_count--;
            return;
        }
    }
}

/* Loads VERSION from PATH and makes it the served version. */
static int swap_in(srv_manager *m, int64_t version, const char *path)
{
    pthread_mutex_lock(&m->lock);
    set_state(m, version, SRV_STATE_LOADING);
    pthread_mutex_unlock(&m->lock);

    srv_servable *fresh = NULL;
    if (srv_servable_load(m->model_name, path, version, m->replicas, m->reserve, &fresh) != 0) {
        pthread_mutex_lock(&m->lock);
        remove_state(m, version);
        pthread_mutex_unlock(&m->lock);
        return -1;
    }
    pthread_mutex_lock(&m->lock);
    srv_servable *old = m->current;
    m->current = fresh;
    set_state(m, version, SRV_STATE_AVAILABLE);
    if (old != NULL)
        set_state(m, old->version, SRV_STATE_END);
    pthread_mutex_unlock(&m->lock);
    if (old != NULL) {
        DM_INFO("serving version %lld of model %s in place of version %lld", (long long)version,
                m->model_name, (long long)old->version);
        srv_servable_release(old);
    } else {
        DM_INFO("serving version %lld of model %s", (long long)version, m->model_name);
    }
    return 0;
}

int srv_manager_poll(srv_manager *m)
{
    int64_t *versions = NULL;
    size_t count = 0;
    if (versions_list(m->base, &versions, &count) != 0) {
        if (first_warning(m, -1))
            DM_WARN("cannot poll model %s: %s", m->model_name, dm_error());
        return 0;
    }
    forget_warning(m, -1);
    /* Only this thread changes CURRENT, so reading it unlocked is safe. */
    const int64_t served = m->current != NULL ? m->current->version : -1;
    int swapped = 0;
    bool served_present = false;
    for (size_t i = count; i-- > 0;) {
        const int64_t version = versions[i];
        char path[4096];
        if (version == served) {
            served_present = true;
            break;
        }
        if (versions_path(path, sizeof path, m->base, version) != 0)
            continue;
        int verified = bundle_verify(path, NULL, 0);
        if (verified != BUNDLE_OK) {
            if (first_warning(m, version))
                DM_WARN("skipping version %lld of model %s: %s", (long long)version,
                        m->model_name, dm_error());
            continue;
        }
        if (swap_in(m, version, path) != 0) {
            if (first_warning(m, version))
                DM_ERROR("%s", dm_error());
            continue;
        }
        forget_warning(m, version);
        swapped = 1;
        break;
    }
    if (!swapped && !served_present && served >= 0 && first_warning(m, served))
        DM_WARN("version %lld of model %s is gone from %s and no other version is complete; "
                "still serving it",
                (long long)served, m->model_name, m->base);
    else if (!swapped && served < 0 && first_warning(m, INT64_MIN))
        DM_WARN("no complete version of model %s in %s yet", m->model_name, m->base);
    free(versions);
    return swapped;
}

srv_servable *srv_manager_acquire(srv_manager *m)
{
    pthread_mutex_lock(&m->lock);
    srv_servable *s = m->current;
    if (s != NULL)
        srv_servable_retain(s);
    pthread_mutex_unlock(&m->lock);
    return s;
}

size_t srv_manager_status(srv_manager *m, srv_version_status *out, size_t capacity)
{
    pthread_mutex_lock(&m->lock);
    size_t n = m->history_count < capacity ? m->history_count : capacity;
    memcpy(out, m->history, n * sizeof *out);
    pthread_mutex_unlock(&m->lock);
    return n;
}
