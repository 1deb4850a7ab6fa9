/*
 * The workflow database: DATA_ROOT/distml.db, SQLite in WAL mode, holding
 * workflow runs, their node statuses, the memoization caches and the
 * InferenceService processes started by workflows. Several runners and
 * readers may use it at once: each writer waits up to WF_STORE_BUSY_MS for
 * a lock, and the read-modify-write of a cache entry runs in one
 * immediate transaction. One handle may be shared by threads.
 */
#ifndef DISTML_WORKFLOW_STORE_H
#define DISTML_WORKFLOW_STORE_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WF_STORE_FILE "distml.db"
#define WF_STORE_BUSY_MS 30000

/* The size limit of a Kubernetes ConfigMap, which Argo's caches are. */
#define WF_CACHE_MAX_BYTES 1048576

typedef struct wf_store wf_store;

/* Open (creating when missing) DATA_ROOT/distml.db. */
int wf_store_open(const char *data_root, wf_store **out);
void wf_store_close(wf_store *store);

/* ---- runs ---- */

/* Insert a run named NAME in phase Running. Returns 1 without changing
 * anything when a run of that name exists. */
int wf_store_run_insert(wf_store *store, const char *name, const char *uid, const char *file,
                        const char *spec_json, double created_at, int runner_pid);

/* Set the phase, message (NULL keeps it) and finish time (0 keeps it). */
int wf_store_run_finish(wf_store *store, const char *name, const char *phase, const char *message,
                        double finished_at);

/* The run as a JSON object {name, uid, file, spec, phase, message,
 * createdAt, finishedAt, runnerPid} (times in epoch seconds), or *OUT
 * NULL when there is none. */
int wf_store_run_get(wf_store *store, const char *name, cJSON **out);

/* Every run, oldest first, as an array of the objects run_get returns. */
int wf_store_run_list(wf_store *store, cJSON **out);

/* Delete a run, its nodes and its process records. */
int wf_store_run_delete(wf_store *store, const char *name);

/* ---- nodes ---- */

/* Insert or replace a node's status. SEQ orders nodes by creation; PARENT
 * is the node whose template created it ("" for the root). PID and
 * PID_START identify the process group of a running Pod node (0 when
 * none), so a later command can stop it if the runner died. */
int wf_store_node_put(wf_store *store, const char *workflow, const char *id, int64_t seq,
                      const char *parent, const char *status_json, int64_t pid,
                      int64_t pid_start);

/* The nodes of WORKFLOW in creation order: an array of objects
 * {id, parent, pid, pidStart, status}. */
int wf_store_node_list(wf_store *store, const char *workflow, cJSON **out);

/* ---- memoization caches ---- */

typedef struct {
    char *node_id;
    char *outputs_json; /* "null" when the node had no outputs */
    double creation_timestamp;
    double last_hit_timestamp;
} wf_memo_entry;

void wf_memo_entry_free(wf_memo_entry *entry);

/* Look up KEY in CACHE. Returns 1 and fills *ENTRY when found (updating
 * its lastHitTimestamp to NOW), 0 when not. */
int wf_store_memo_get(wf_store *store, const char *cache, const char *key, double now,
                      wf_memo_entry *entry);

/* Store or overwrite KEY in CACHE. When the cache's entries would pass
 * WF_CACHE_MAX_BYTES (keys plus JSON values, as a ConfigMap counts its
 * data), nothing is written, *REFUSED is set and REASON describes it. */
int wf_store_memo_put(wf_store *store, const char *cache, const char *key, const char *node_id,
                      const char *outputs_json, double now, bool *refused, char *reason,
                      size_t reason_capacity);

/* Every cache entry as {cache, key, nodeID, creationTimestamp,
 * lastHitTimestamp, bytes}, optionally of one cache. */
int wf_store_memo_list(wf_store *store, const char *cache, cJSON **out);

/* Delete one entry (KEY non-NULL) or a whole cache; *DELETED counts rows. */
int wf_store_memo_delete(wf_store *store, const char *cache, const char *key, int *deleted);

/* The JSON value of an entry as Argo stores it in the ConfigMap:
 * {"nodeID", "outputs", "creationTimestamp", "lastHitTimestamp"}. */
char *wf_memo_entry_json(const char *node_id, const char *outputs_json, double created,
                         double last_hit);

/* ---- services ---- */

/* Record a detached service process started by a workflow step. */
int wf_store_service_put(wf_store *store, const char *name, const char *workflow,
                         const char *node_id, int64_t pid, int64_t pid_start, int port,
                         const char *model_base_path, const char *log_path, double started_at);

/* Every service as {name, workflow, nodeID, pid, pidStart, port,
 * modelBasePath, log, startedAt}. */
int wf_store_service_list(wf_store *store, cJSON **out);

int wf_store_service_delete(wf_store *store, const char *name);

/* Format epoch seconds as RFC 3339 UTC with seconds, as Kubernetes
 * timestamps are ("2024-05-01T12:00:00Z"). */
void wf_format_time(double epoch, char *out, size_t capacity);

#endif
