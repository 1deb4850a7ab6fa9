/*
 * Internals of a workflow run, shared by node.c (node statuses), pod.c
 * (container and script templates), resource.c (resource templates),
 * flow.c (steps, DAG, retries, memoization) and run.c (the entry point).
 */
#ifndef DISTML_WORKFLOW_ENGINE_H
#define DISTML_WORKFLOW_ENGINE_H

#include "workflow/run.h"
#include "workflow/scope.h"
#include "workflow/spec.h"
#include "workflow/store.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* A counting semaphore for parallelism limits. */
typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    int64_t free_slots;
} wf_slots;

void wf_slots_init(wf_slots *slots, int64_t count);
void wf_slots_destroy(wf_slots *slots);

/* One node of the status tree, as Argo's NodeStatus has it. Fields change
 * only under the run's lock. */
typedef struct {
    char id[128];
    char *name;
    char *display_name;
    const char *type; /* Pod, Steps, StepGroup, DAG, TaskGroup, Retry, Skipped */
    char *template_name;
    char phase[16];
    char *boundary_id;
    char *message;
    double started_at;
    double finished_at;
    cJSON *inputs;  /* {"parameters": [...]} or NULL */
    cJSON *outputs; /* {"parameters": [...], "result", "exitCode"} or NULL */
    char **children;
    size_t child_count;
    char **outbound;
    size_t outbound_count;
    bool memoized;
    bool memo_hit;
    char *memo_key;
    char *memo_cache;
    char parent[128]; /* the node whose template created this one */
    int64_t seq;
    pid_t pid;
    int64_t pid_start;
} wf_node;

typedef struct {
    const wf_spec *spec;
    const wf_run_options *options;
    wf_store *store;
    char name[256];
    char uid[64];
    char namespace_name[64];
    double created_at;
    wf_scope globals; /* workflow.* */
    pthread_mutex_t lock; /* nodes, node fields, progress output */
    wf_node **nodes;
    size_t node_count;
    size_t node_capacity;
    int64_t next_seq;
    wf_slots pods;       /* spec.parallelism */
    bool limit_pods;
    double deadline;     /* monotonic; 0 none */
    volatile sig_atomic_t cancel;
    int cancel_signal;
    char run_dir[4096];
    char pods_dir[4096];
    char logs_dir[4096];
    char **env_base; /* the runner's environment with PATH extended */
    int live_lines;  /* lines of the live table on the terminal */
} wf_engine;

/* What a template invocation runs with. */
typedef struct {
    const char *node_name;
    const char *display_name;
    const wf_template *tmpl;
    const char *const *arg_names; /* resolved argument values */
    const char *const *arg_values;
    size_t arg_count;
    const char *boundary_id; /* "" at the root */
    const char *parent_id;   /* the node whose template runs this one ("" at the root) */
    bool link_parent;        /* list the new node among the parent's children */
    wf_slots *boundary_slots; /* parallelism of the enclosing steps/dag template */
    double deadline;          /* monotonic; 0 none */
} wf_invocation;

/* ---- node.c ---- */

/* Create a node in phase PHASE and record it. PARENT_ID is the node whose
 * template created it ("" for the root); when LINK is true the node is
 * also added to the parent's children. */
wf_node *wf_node_create(wf_engine *e, const char *name, const char *display_name,
                        const char *type, const char *template_name, const char *boundary_id,
                        const char *parent_id, bool link, const char *phase);

/* The node with ID, or NULL. */
wf_node *wf_node_find(wf_engine *e, const char *id);

/* Set PHASE and MESSAGE (NULL keeps it); a final phase sets finishedAt.
 * Records the node and prints a progress line. */
void wf_node_finish(wf_engine *e, wf_node *node, const char *phase, const char *message);

/* Set the phase without finishing the node (Pending to Running). */
void wf_node_set_phase(wf_engine *e, wf_node *node, const char *phase);

void wf_node_add_child(wf_engine *e, wf_node *parent, const char *child_id);

/* Take ownership of OUTPUTS (may be NULL) or INPUTS as the node's. */
void wf_node_set_outputs(wf_engine *e, wf_node *node, cJSON *outputs);
void wf_node_set_inputs(wf_engine *e, wf_node *node, cJSON *inputs);

void wf_node_set_message(wf_engine *e, wf_node *node, const char *message);

/* Set outboundNodes from IDS (copied). */
void wf_node_set_outbound(wf_engine *e, wf_node *node, char **ids, size_t count);

void wf_node_set_memo(wf_engine *e, wf_node *node, bool hit, const char *key, const char *cache);

void wf_node_set_process(wf_engine *e, wf_node *node, pid_t pid, int64_t pid_start);

/* Write the node's status to the store; the caller holds the lock. */
void wf_node_save_locked(wf_engine *e, wf_node *node);

/* The node status as Argo writes it, without progress. */
cJSON *wf_node_to_json(const wf_engine *e, const wf_node *node);

/* The outbound nodes of ID, as Argo's getOutboundNodes finds them, into a
 * malloc'd array of copies. */
char **wf_node_outbound_of(wf_engine *e, const char *id, size_t *count);

void wf_free_strings(char **strings, size_t count);

bool wf_phase_final(const char *phase);
bool wf_phase_failed(const char *phase); /* Failed or Error */

/* ---- pod.c ---- */

/* Run a container or script template as a Pod node named by INV. SCOPE
 * contains the resolved inputs, and RETRY is the attempt number. */
wf_node *wf_pod_execute(wf_engine *e, const wf_invocation *inv, const wf_scope *scope,
                        int retry);

/* Apply podGC for one finished Pod node. */
void wf_pod_collect(wf_engine *e, const wf_node *node);

/* Remove the working folders of every Pod node (podGC at workflow end). */
void wf_pod_collect_all(wf_engine *e);

/* The folder that claim CLAIM (and SUB_PATH, may be NULL) maps to. */
int wf_claim_dir(wf_engine *e, const char *claim, const char *sub_path, char *out,
                 size_t capacity);

/* ---- resource.c ---- */

wf_node *wf_resource_execute(wf_engine *e, const wf_invocation *inv, const wf_scope *scope,
                             int retry);

/* ---- flow.c ---- */

/* Run a template invocation to completion and return its node. */
wf_node *wf_execute_template(wf_engine *e, const wf_invocation *inv);

/* Lock helpers for flow and pod code. */
void wf_engine_lock(wf_engine *e);
void wf_engine_unlock(wf_engine *e);

/* True once the run is being stopped (a signal) or DEADLINE has passed. */
bool wf_engine_stopping(const wf_engine *e, double deadline);

/* The message for nodes that a stop ended. */
const char *wf_engine_stop_message(const wf_engine *e, double deadline);

#endif
