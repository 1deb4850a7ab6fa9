#include "workflow/store.h"

#include "base/error.h"
#include "base/fsutil.h"

#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct wf_store {
    sqlite3 *db;
    pthread_mutex_t lock; /* one statement sequence at a time per handle */
};

static const char *const schema_sql =
    "CREATE TABLE IF NOT EXISTS runs ("
    "  name TEXT PRIMARY KEY, uid TEXT NOT NULL, file TEXT NOT NULL, spec TEXT NOT NULL,"
    "  phase TEXT NOT NULL, message TEXT NOT NULL DEFAULT '', created_at REAL NOT NULL,"
    "  finished_at REAL NOT NULL DEFAULT 0, runner_pid INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS nodes ("
    "  workflow TEXT NOT NULL, id TEXT NOT NULL, seq INTEGER NOT NULL, parent TEXT NOT NULL,"
    "  status TEXT NOT NULL, pid INTEGER NOT NULL DEFAULT 0,"
    "  pid_start INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (workflow, id));"
    "CREATE TABLE IF NOT EXISTS memo_entries ("
    "  cache TEXT NOT NULL, key TEXT NOT NULL, node_id TEXT NOT NULL, outputs TEXT NOT NULL,"
    "  creation_timestamp REAL NOT NULL, last_hit_timestamp REAL NOT NULL,"
    "  bytes INTEGER NOT NULL, PRIMARY KEY (cache, key));"
    "CREATE TABLE IF NOT EXISTS services ("
    "  name TEXT PRIMARY KEY, workflow TEXT NOT NULL, node_id TEXT NOT NULL,"
    "  pid INTEGER NOT NULL, pid_start INTEGER NOT NULL, port INTEGER NOT NULL,"
    "  model_base_path TEXT NOT NULL, log TEXT NOT NULL, started_at REAL NOT NULL);";

static int db_fail(wf_store *store, const char *what)
{
    return dm_fail("%s: %s", what, sqlite3_errmsg(store->db));
}

int wf_store_open(const char *data_root, wf_store **out)
{
    char path[4096];
    *out = NULL;
    if (fs_mkdir_p(data_root) != 0 || fs_join(path, sizeof path, data_root, WF_STORE_FILE) != 0)
        return -1;
    wf_store *store = dm_calloc(1, sizeof *store);
    if (store == NULL)
        return -1;
    pthread_mutex_init(&store->lock, NULL);
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX;
    if (sqlite3_open_v2(path, &store->db, flags, NULL) != SQLITE_OK) {
        int rc = dm_fail("cannot open %s: %s", path,
                         store->db ? sqlite3_errmsg(store->db) : "out of memory");
        wf_store_close(store);
        return rc;
    }
    sqlite3_busy_timeout(store->db, WF_STORE_BUSY_MS);
    char *error = NULL;
    if (sqlite3_exec(store->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", NULL,
                     NULL, &error) != SQLITE_OK ||
        sqlite3_exec(store->db, schema_sql, NULL, NULL, &error) != SQLITE_OK) {
        int rc = dm_fail("cannot initialize %s: %s", path, error ? error : "unknown error");
        sqlite3_free(error);
        wf_store_close(store);
        return rc;
    }
    *out = store;
    return 0;
}

void wf_store_close(wf_store *store)
{
    if (store == NULL)
        return;
    if (store->db != NULL)
        sqlite3_close(store->db);
    pthread_mutex_destroy(&store->lock);
    free(store);
}

void wf_format_time(double epoch, char *out, size_t capacity)
{
    time_t seconds = (time_t)floor(epoch);
    struct tm utc;
    gmtime_r(&seconds, &utc);
    strftime(out, capacity, "%Y-%m-%dT%H:%M:%SZ", &utc);
}

/* Bind text parameters 1..N (NULL binds SQL NULL). */
static void bind_texts(sqlite3_stmt *stmt, const char *const *texts, int count)
{
    for (int i = 0; i < count; i++)
        sqlite3_bind_text(stmt, i + 1, texts[i], -1, SQLITE_TRANSIENT);
}

static const char *column_text(sqlite3_stmt *stmt, int column)
{
    const unsigned char *text = sqlite3_column_text(stmt, column);
    return text != NULL ? (const char *)text : "";
}

/* Run one statement that returns no rows, under the handle's lock. */
static int exec_locked(wf_store *store, const char *sql, const char *const *texts, int count,
                       const char *what)
{
    sqlite3_stmt *stmt = NULL;
    int rc = 0;
    pthread_mutex_lock(&store->lock);
    if (sqlite3_prepare_v2(store->db, sql, -1, &stmt, NULL) != SQLITE_OK) {
        rc = db_fail(store, what);
    } else {
        bind_texts(stmt, texts, count);
        if (sqlite3_step(stmt) != SQLITE_DONE)
            rc = db_fail(store, what);
    }
    sqlite3_finalize(stmt);
    pthread_mutex_unlock(&store->lock);
    return rc;
}

/* ---- runs ---- */

int wf_store_run_insert(wf_store *store, const char *name, const char *uid, const char *file,
                        const char *spec_json, double created_at, int runner_pid)
{
    sqlite3_stmt *stmt = NULL;
    int rc = 0;
    pthread_mutex_lock(&store->lock);
    const char *sql = "INSERT OR IGNORE INTO runs (name, uid, file, spec, phase, created_at, "
                      "runner_pid) VALUES (?, ?, ?, ?, 'Running', ?, ?)";
    if (sqlite3_prepare_v2(store->db, sql, -1, &stmt, NULL) != SQLITE_OK) {
        rc = db_fail(store, "cannot record the workflow run");
    } else {
        const char *texts[] = {name, uid, file, spec_json};
        bind_texts(stmt, texts, 4);
        sqlite3_bind_double(stmt, 5, created_at);
        sqlite3_bind_int(stmt, 6, runner_pid);
        if (sqlite3_step(stmt) != SQLITE_DONE)
            rc = db_fail(store, "cannot record the workflow run");
        else if (sqlite3_changes(store->db) == 0)
            rc = 1;
    }
    sqlite3_finalize(stmt);
    pthread_mutex_unlock(&store->lock);
    return rc;
}

int wf_store_run_finish(wf_store *store, const char *name, const char *phase, const char *message,
                        double finished_at)
{
    sqlite3_stmt *stmt = NULL;
    int rc = 0;
    pthread_mutex_lock(&store->lock);
    const char *sql = "UPDATE runs SET phase = ?, message = COALESCE(?, message), "
                      "finished_at = CASE WHEN ? > 0 THEN ? ELSE finished_at END WHERE name = ?";
    if (sqlite3_prepare_v2(store->db, sql, -1, &stmt, NULL) != SQLITE_OK) {
        rc = db_fail(store, "cannot update the workflow run");
    } else {
        sqlite3_bind_text(stmt, 1, phase, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(stmt, 2, message, -1, SQLITE_TRANSIENT);
        sqlite3_bind_double(stmt, 3, finished_at);
        sqlite3_bind_double(stmt, 4, finished_at);
        sqlite3_bind_text(stmt, 5, name, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(stmt) != SQLITE_DONE)
            rc = db_fail(store, "cannot update the workflow run");
    }
    sqlite3_finalize(stmt);
    pthread_mutex_unlock(&store->lock);
    return rc;
}

static cJSON *run_row(sqlite3_stmt *stmt)
{
    cJSON *row = cJSON_CreateObject();
    if (row == NULL)
        return NULL;
    cJSON_AddStringToObject(row, "name", column_text(stmt, 0));
    cJSON_AddStringToObject(row, "uid", column_text(stmt, 1));
    cJSON_AddStringToObject(row, "file", column_text(stmt, 2));
    cJSON_AddStringToObject(row, "spec", column_text(stmt, 3));
    cJSON_AddStringToObject(row, "phase", column_text(stmt, 4));
    cJSON_AddStringToObject(row, "message", column_text(stmt, 5));
    cJSON_AddNumberToObject(row, "createdAt", sqlite3_column_double(stmt, 6));
    cJSON_AddNumberToObject(row, "finishedAt", sqlite3_column_double(stmt, 7));
    cJSON_AddNumberToObject(row, "runnerPid", sqlite3_column_int(stmt, 8));
    return row;
}

/* Run a SELECT over runs with an optional name filter into an array. */
static int select_runs(wf_store *store, const char *name, cJSON **out)
{
    sqlite3_stmt *stmt = NULL;
    int rc = 0;
    *out = cJSON_CreateArray();
    if (*out == NULL)
        return dm_fail("out of memory");
    const char *sql = name != NULL
                          ? "SELECT name, uid, file, spec, phase, message, created_at, "
                            "finished_at, runner_pid FROM runs WHERE name = ?"
                          : "SELECT name, uid, file, spec, phase, message, created_at, "
                            "finished_at, runner_pid FROM runs ORDER BY created_at, name";
    pthread_mutex_lock(&store->lock);
    if (sqlite3_prepare_v2(store->db, sql, -1, &stmt, NULL) != SQLITE_OK) {
        rc = db_fail(store, "cannot read workflow runs");
    } else {
        if (name != NULL)
            sqlite3_bind_text(stmt, 1, name, -1, SQLITE_TRANSIENT);
        int step;
        while ((step = sqlite3_step(stmt)) == SQLITE_ROW)
            cJSON_AddItemToArray(*out, run_row(stmt));
        if (step != SQLITE_DONE)
            rc = db_fail(store, "cannot read workflow runs");
    }
    sqlite3_finalize(stmt);
    pthread_mutex_unlock(&store->lock);
    if (rc != 0) {
        cJSON_Delete(*out);
        *out = NULL;
    }
    return rc;
}

int wf_store_run_get(wf_store *store, const char *name, cJSON **out)
{
    cJSON *rows = NULL;
    *out = NULL;
    if (select_runs(store, name, &rows) != 0)
        return -1;
    if (cJSON_GetArraySize(rows) > 0)
        *out = cJSON_DetachItemFromArray(rows, 0);
    cJSON_Delete(rows);
    return 0;
}

int wf_store_run_list(wf_store *store, cJSON **out)
{
    return select_runs(store, NULL, out);
}

int wf_store_run_delete(wf_store *store, const char *name)
{
    const char *texts[] = {name};
    if (exec_locked(store, "DELETE FROM nodes WHERE workflow = ?", texts, 1,
                    "cannot delete nodes") != 0)
        return -1;
    return exec_locked(store, "DELETE FROM runs WHERE name = ?", texts, 1,
                       "cannot delete the workflow run");
}

/* ---- nodes ---- */

int wf_store_node_put(wf_store *store, const char *workflow, const char *id, int64_t seq,
                      const char *parent, const char *status_json, int64_t pid,
                      int64_t pid_start)
{
    sqlite3_stmt *stmt = NULL;
    int rc = 0;
    pthread_mutex_lock(&store->lock);
    const char *sql = "INSERT OR REPLACE INTO nodes (workflow, id, seq, parent, status, pid, "
                      "pid_start) VALUES (?, ?, ?, ?, ?, ?, ?)";
    if (sqlite3_prepare_v2(store->db, sql, -1, &stmt, NULL) != SQLITE_OK) {
        rc = db_fail(store, "cannot record a node status");
    } else {
        sqlite3_bind_text(stmt, 1, workflow, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(stmt, 2, id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(stmt, 3, seq);
        sqlite3_bind_text(stmt, 4, parent, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(stmt, 5, status_json, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(stmt, 6, pid);
        sqlite3_bind_int64(stmt, 7, pid_start);
        if (sqlite3_step(stmt) != SQLITE_DONE)
            rc = db_fail(store, "cannot record a node status");
    }
    sqlite3_finalize(stmt);
    pthread_mutex_unlock(&store->lock);
    return rc;
}

int wf_store_node_list(wf_store *store, const char *workflow, cJSON **out)
{
    sqlite3_stmt *stmt = NULL;
    int rc = 0;
    *out = cJSON_CreateArray();
    if (*out == NULL)
        return dm_fail("out of memory");
    pthread_mutex_lock(&store->lock);
    const char *sql = "SELECT id, parent, pid, pid_start, status FROM nodes WHERE workflow = ? "
                      "ORDER BY seq";
    if (sqlite3_prepare_v2(store->db, sql, -1, &stmt, NULL) != SQLITE_OK) {
        rc = db_fail(store, "cannot read node statuses");
    } else {
        sqlite3_bind_text(stmt, 1, workflow, -1, SQLITE_TRANSIENT);
        int step;
        while ((step = sqlite3_step(stmt)) == SQLITE_ROW) {
            cJSON *row = cJSON_CreateObject();
            cJSON_AddStringToObject(row, "id", column_text(stmt, 0));
            cJSON_AddStringToObject(row, "parent", column_text(stmt, 1));
            cJSON_AddNumberToObject(row, "pid", (double)sqlite3_column_int64(stmt, 2));
            cJSON_AddNumberToObject(row, "pidStart", (double)sqlite3_column_int64(stmt, 3));
            cJSON *status = cJSON_Parse(column_text(stmt, 4));
            cJSON_AddItemToObject(row, "status", status != NULL ? status : cJSON_CreateObject());
            cJSON_AddItemToArray(*out, row);
        }
        if (step != SQLITE_DONE)
            rc = db_fail(store, "cannot read node statuses");
    }
    sqlite3_finalize(stmt);
    pthread_mutex_unlock(&store->lock);
    if (rc != 0) {
        cJSON_Delete(*out);
        *out = NULL;
    }
    return rc;
}

/* ---- memoization caches ---- */

void wf_memo_entry_free(wf_memo_entry *entry)
{
    free(entry->node_id);
    free(entry->outputs_json);
    memset(entry, 0, sizeof *entry);
}

char *wf_memo_entry_json(const char *node_id, const char *outputs_json, double created,
                         double last_hit)
{
    char created_text[32], hit_text[32];
    wf_format_time(created, created_text, sizeof created_text);
    wf_format_time(last_hit, hit_text, sizeof hit_text);
    cJSON *entry = cJSON_CreateObject();
    cJSON *outputs = cJSON_Parse(outputs_json != NULL ? outputs_json : "null");
    cJSON_AddStringToObject(entry, "nodeID", node_id);
    cJSON_AddItemToObject(entry, "outputs", outputs != NULL ? outputs : cJSON_CreateNull());
    cJSON_AddStringToObject(entry, "creationTimestamp", created_text);
    cJSON_AddStringToObject(entry, "lastHitTimestamp", hit_text);
    char *text = cJSON_PrintUnformatted(entry);
    cJSON_Delete(entry);
    return text;
}

int wf_store_memo_get(wf_store *store, const char *cache, const char *key, double now,
                      wf_memo_entry *entry)
{
    sqlite3_stmt *stmt = NULL;
    int rc = 0;
    memset(entry, 0, sizeof *entry);
    pthread_mutex_lock(&store->lock);
    const char *sql = "SELECT node_id, outputs, creation_timestamp, last_hit_timestamp FROM "
                      "memo_entries WHERE cache = ? AND key = ?";
    if (sqlite3_prepare_v2(store->db, sql, -1, &stmt, NULL) != SQLITE_OK) {
        rc = db_fail(store, "cannot read the memoization cache");
    } else {
        const char *texts[] = {cache, key};
        bind_texts(stmt, texts, 2);
        int step = sqlite3_step(stmt);
        if (step == SQLITE_ROW) {
            entry->node_id = strdup(column_text(stmt, 0));
            entry->outputs_json = strdup(column_text(stmt, 1));
            entry->creation_timestamp = sqlite3_column_double(stmt, 2);
            entry->last_hit_timestamp = sqlite3_column_double(stmt, 3);
            rc = entry->node_id != NULL && entry->outputs_json != NULL
                     ? 1
                     : dm_fail("out of memory");
        } else if (step != SQLITE_DONE) {
            rc = db_fail(store, "cannot read the memoization cache");
        }
    }
    sqlite3_finalize(stmt);
    stmt = NULL;
    if (rc == 1) {
        /* Like Argo, a lookup that finds the entry rewrites its
         * lastHitTimestamp; the byte count follows the new value. */
        char *value = wf_memo_entry_json(entry->node_id, entry->outputs_json,
                                         entry->creation_timestamp, now);
        const char *update = "UPDATE memo_entries SET last_hit_timestamp = ?, bytes = ? WHERE "
                             "cache = ? AND key = ?";
        if (value != NULL && sqlite3_prepare_v2(store->db, update, -1, &stmt, NULL) == SQLITE_OK) {
            sqlite3_bind_double(stmt, 1, now);
            sqlite3_bind_int64(stmt, 2, (sqlite3_int64)(strlen(key) + strlen(value)));
            sqlite3_bind_text(stmt, 3, cache, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(stmt, 4, key, -1, SQLITE_TRANSIENT);
            if (sqlite3_step(stmt) != SQLITE_DONE)
                rc = db_fail(store, "cannot update the memoization cache");
        }
        sqlite3_finalize(stmt);
        free(value);
        entry->last_hit_timestamp = now;
    }
    pthread_mutex_unlock(&store->lock);
    if (rc != 1)
        wf_memo_entry_free(entry);
    return rc;
}

int wf_store_memo_put(wf_store *store, const char *cache, const char *key, const char *node_id,
                      const char *outputs_json, double now, bool *refused, char *reason,
                      size_t reason_capacity)
{
    sqlite3_stmt *stmt = NULL;
    int rc = 0;
    *refused = false;
    char *value = wf_memo_entry_json(node_id, outputs_json, now, now);
    if (value == NULL)
        return dm_fail("out of memory");
    const long long bytes = (long long)(strlen(key) + strlen(value));
    pthread_mutex_lock(&store->lock);
    /* The size check and the write are one transaction, so two runners
     * writing to one cache cannot both pass the check. */
    if (sqlite3_exec(store->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        rc = db_fail(store, "cannot write the memoization cache");
        goto out;
    }
    long long others = 0;
    const char *sum_sql = "SELECT COALESCE(SUM(bytes), 0) FROM memo_entries WHERE cache = ? AND "
                          "key != ?";
    if (sqlite3_prepare_v2(store->db, sum_sql, -1, &stmt, NULL) != SQLITE_OK) {
        rc = db_fail(store, "cannot read the memoization cache");
        goto rollback;
    }
    const char *texts[] = {cache, key};
    bind_texts(stmt, texts, 2);
    if (sqlite3_step(stmt) == SQLITE_ROW)
        others = sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    stmt = NULL;
    if (others + bytes > WF_CACHE_MAX_BYTES) {
        *refused = true;
        snprintf(reason, reason_capacity,
                 "cache %s would hold %lld bytes with this %lld-byte entry, over the %d-byte "
                 "limit of a ConfigMap",
                 cache, others + bytes, bytes, WF_CACHE_MAX_BYTES);
        goto rollback;
    }
    const char *put_sql = "INSERT OR REPLACE INTO memo_entries (cache, key, node_id, outputs, "
                          "creation_timestamp, last_hit_timestamp, bytes) VALUES (?, ?, ?, ?, ?, "
                          "?, ?)";
    if (sqlite3_prepare_v2(store->db, put_sql, -1, &stmt, NULL) != SQLITE_OK) {
        rc = db_fail(store, "cannot write the memoization cache");
        goto rollback;
    }
    const char *row[] = {cache, key, node_id, outputs_json != NULL ? outputs_json : "null"};
    bind_texts(stmt, row, 4);
    sqlite3_bind_double(stmt, 5, now);
    sqlite3_bind_double(stmt, 6, now);
    sqlite3_bind_int64(stmt, 7, bytes);
    if (sqlite3_step(stmt) != SQLITE_DONE) {
        rc = db_fail(store, "cannot write the memoization cache");
        goto rollback;
    }
    if (sqlite3_exec(store->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        rc = db_fail(store, "cannot write the memoization cache");
        goto rollback;
    }
    goto out;
rollback:
    sqlite3_exec(store->db, "ROLLBACK", NULL, NULL, NULL);
out:
    sqlite3_finalize(stmt);
    pthread_mutex_unlock(&store->lock);
    free(value);
    return rc;
}

int wf_store_memo_list(wf_store *store, const char *cache, cJSON **out)
{
    sqlite3_stmt *stmt = NULL;
    int rc = 0;
    *out = cJSON_CreateArray();
    if (*out == NULL)
        return dm_fail("out of memory");
    const char *sql = cache != NULL
                          ? "SELECT cache, key, node_id, creation_timestamp, last_hit_timestamp, "
                            "bytes FROM memo_entries WHERE cache = ? ORDER BY cache, key"
                          : "SELECT cache, key, node_id, creation_timestamp, last_hit_timestamp, "
                            "bytes FROM memo_entries ORDER BY cache, key";
    pthread_mutex_lock(&store->lock);
    if (sqlite3_prepare_v2(store->db, sql, -1, &stmt, NULL) != SQLITE_OK) {
        rc = db_fail(store, "cannot read the memoization caches");
    } else {
        if (cache != NULL)
            sqlite3_bind_text(stmt, 1, cache, -1, SQLITE_TRANSIENT);
        int step;
        while ((step = sqlite3_step(stmt)) == SQLITE_ROW) {
            cJSON *row = cJSON_CreateObject();
            cJSON_AddStringToObject(row, "cache", column_text(stmt, 0));
            cJSON_AddStringToObject(row, "key", column_text(stmt, 1));
            cJSON_AddStringToObject(row, "nodeID", column_text(stmt, 2));
            cJSON_AddNumberToObject(row, "creationTimestamp", sqlite3_column_double(stmt, 3));
            cJSON_AddNumberToObject(row, "lastHitTimestamp", sqlite3_column_double(stmt, 4));
            cJSON_AddNumberToObject(row, "bytes", (double)sqlite3_column_int64(stmt, 5));
            cJSON_AddItemToArray(*out, row);
        }
        if (step != SQLITE_DONE)
            rc = db_fail(store, "cannot read the memoization caches");
    }
    sqlite3_finalize(stmt);
    pthread_mutex_unlock(&store->lock);
    if (rc != 0) {
        cJSON_Delete(*out);
        *out = NULL;
    }
    return rc;
}

int wf_store_memo_delete(wf_store *store, const char *cache, const char *key, int *deleted)
{
    sqlite3_stmt *stmt = NULL;
    int rc = 0;
    *deleted = 0;
    const char *sql = key != NULL ? "DELETE FROM memo_entries WHERE cache = ? AND key = ?"
                                  : "DELETE FROM memo_entries WHERE cache = ?";
    pthread_mutex_lock(&store->lock);
    if (sqlite3_prepare_v2(store->db, sql, -1, &stmt, NULL) != SQLITE_OK) {
        rc = db_fail(store, "cannot delete from the memoization cache");
    } else {
        const char *texts[] = {cache, key};
        bind_texts(stmt, texts, key != NULL ? 2 : 1);
        if (sqlite3_step(stmt) != SQLITE_DONE)
            rc = db_fail(store, "cannot delete from the memoization cache");
        else
            *deleted = sqlite3_changes(store->db);
    }
    sqlite3_finalize(stmt);
    pthread_mutex_unlock(&store->lock);
    return rc;
}

/* ---- services ---- */

int wf_store_service_put(wf_store *store, const char *name, const char *workflow,
                         const char *node_id, int64_t pid, int64_t pid_start, int port,
                         const char *model_base_path, const char *log_path, double started_at)
{
    sqlite3_stmt *stmt = NULL;
    int rc = 0;
    pthread_mutex_lock(&store->lock);
    const char *sql = "INSERT OR REPLACE INTO services (name, workflow, node_id, pid, pid_start, "
                      "port, model_base_path, log, started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)";
    if (sqlite3_prepare_v2(store->db, sql, -1, &stmt, NULL) != SQLITE_OK) {
        rc = db_fail(store, "cannot record the service");
    } else {
        const char *texts[] = {name, workflow, node_id};
        bind_texts(stmt, texts, 3);
        sqlite3_bind_int64(stmt, 4, pid);
        sqlite3_bind_int64(stmt, 5, pid_start);
        sqlite3_bind_int(stmt, 6, port);
        sqlite3_bind_text(stmt, 7, model_base_path, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(stmt, 8, log_path, -1, SQLITE_TRANSIENT);
        sqlite3_bind_double(stmt, 9, started_at);
        if (sqlite3_step(stmt) != SQLITE_DONE)
            rc = db_fail(store, "cannot record the service");
    }
    sqlite3_finalize(stmt);
    pthread_mutex_unlock(&store->lock);
    return rc;
}

int wf_store_service_list(wf_store *store, cJSON **out)
{
    sqlite3_stmt *stmt = NULL;
    int rc = 0;
    *out = cJSON_CreateArray();
    if (*out == NULL)
        return dm_fail("out of memory");
    pthread_mutex_lock(&store->lock);
    const char *sql = "SELECT name, workflow, node_id, pid, pid_start, port, model_base_path, "
                      "log, started_at FROM services ORDER BY started_at, name";
    if (sqlite3_prepare_v2(store->db, sql, -1, &stmt, NULL) != SQLITE_OK) {
        rc = db_fail(store, "cannot read services");
    } else {
        int step;
        while ((step = sqlite3_step(stmt)) == SQLITE_ROW) {
            cJSON *row = cJSON_CreateObject();
            cJSON_AddStringToObject(row, "name", column_text(stmt, 0));
            cJSON_AddStringToObject(row, "workflow", column_text(stmt, 1));
            cJSON_AddStringToObject(row, "nodeID", column_text(stmt, 2));
            cJSON_AddNumberToObject(row, "pid", (double)sqlite3_column_int64(stmt, 3));
            cJSON_AddNumberToObject(row, "pidStart", (double)sqlite3_column_int64(stmt, 4));
            cJSON_AddNumberToObject(row, "port", sqlite3_column_int(stmt, 5));
            cJSON_AddStringToObject(row, "modelBasePath", column_text(stmt, 6));
            cJSON_AddStringToObject(row, "log", column_text(stmt, 7));
            cJSON_AddNumberToObject(row, "startedAt", sqlite3_column_double(stmt, 8));
            cJSON_AddItemToArray(*out, row);
        }
        if (step != SQLITE_DONE)
            rc = db_fail(store, "cannot read services");
    }
    sqlite3_finalize(stmt);
    pthread_mutex_unlock(&store->lock);
    if (rc != 0) {
        cJSON_Delete(*out);
        *out = NULL;
    }
    return rc;
}

int wf_store_service_delete(wf_store *store, const char *name)
{
    const char *texts[] = {name};
    return exec_locked(store, "DELETE FROM services WHERE name = ?", texts, 1,
                       "cannot delete the service");
}
