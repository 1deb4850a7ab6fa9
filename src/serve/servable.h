/*
 * Loaded model versions and the watcher that picks which one is served.
 *
 * A servable is one model version loaded as several nn_model replicas, one
 * per thread that may run it at once, because a model's scratch buffers
 * are not thread-safe. It is reference-counted, and each request keeps one
 * reference from decoding to reply, so a version swap neither fails a
 * request nor mixes two versions in one reply.
 *
 * The manager serves the highest complete version under the base path,
 * as TensorFlow Serving's default "latest" policy does. Each poll lists the
 * version folders; when the highest complete one differs from the served
 * one, it is loaded fully and swapped in, and only then is the old one
 * released (freed once its last request finishes). A version counts as
 * complete when its manifest's sizes and SHA-256 checksums match.
 */
#ifndef DISTML_SERVE_SERVABLE_H
#define DISTML_SERVE_SERVABLE_H

#include <stddef.h>
#include <stdint.h>

typedef struct srv_servable srv_servable;

/* Loads the model in PATH as version VERSION with REPLICAS copies, each
 * with room for batches of RESERVE examples. Logs the load. */
int srv_servable_load(const char *model_name, const char *path, int64_t version, int replicas,
                      int reserve, srv_servable **out);

void srv_servable_retain(srv_servable *s);

/* Drops one reference; the last one frees S and logs the unload. */
void srv_servable_release(srv_servable *s);

int64_t srv_servable_version(const srv_servable *s);
int srv_servable_num_classes(const srv_servable *s);
int srv_servable_input_height(const srv_servable *s);
int srv_servable_input_width(const srv_servable *s);

/*
 * Runs the model on the N examples in X, (N, H, W, 1), and writes the
 * softmax probabilities (N, num_classes) into Y. Waits for a free replica
 * and runs at most CHUNK examples per forward pass.
 */
int srv_servable_predict(srv_servable *s, const float *x, int n, int chunk, float *y);

/* Version states, as TensorFlow Serving's ModelVersionStatus names them. */
typedef enum {
    SRV_STATE_LOADING,
    SRV_STATE_AVAILABLE,
    SRV_STATE_END,
} srv_state;

const char *srv_state_name(srv_state state);

typedef struct {
    int64_t version;
    srv_state state;
} srv_version_status;

typedef struct srv_manager srv_manager;

/* A manager for model MODEL_NAME under BASE; nothing is loaded until the
 * first srv_manager_poll. */
srv_manager *srv_manager_create(const char *model_name, const char *base, int replicas,
                                int reserve);

/* Lists BASE and loads the highest complete version when it is not the one
 * served. Problems (missing base path, incomplete or corrupt versions,
 * failed loads) are logged once per cause and leave the served version in
 * place. Returns 1 when a new version was swapped in, 0 otherwise. */
int srv_manager_poll(srv_manager *m);

/* The served version with a reference the caller must release, or NULL
 * when no version is loaded. */
srv_servable *srv_manager_acquire(srv_manager *m);

/* Copies up to CAPACITY version states, the most recently loaded first,
 * and returns how many were copied. */
size_t srv_manager_status(srv_manager *m, srv_version_status *out, size_t capacity);

/* Releases the served version and frees M. */
void srv_manager_free(srv_manager *m);

#endif
