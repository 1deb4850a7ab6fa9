/*
 * Running a workflow: the public entry point, and recovery of runs whose
 * runner process died. A run executes steps and DAG tasks as threads that
 * wait for local processes, and records every node status in the store
 * as it changes. It keeps DATA_ROOT/workflows/NAME/runner.lock locked
 * while it runs, so that other commands can tell a live run from an
 * abandoned one.
 *
 * On disk, under the data root:
 *   workflows/NAME/pods/POD/     a Pod node's working folder (its cwd, the
 *                                script file, private output files); podGC
 *                                removes it
 *   workflows/NAME/logs/POD.log  the process's stdout and stderr, kept
 *                                after podGC so `distml workflow logs`
 *                                works on finished runs
 *   pvc/CLAIM/                   the folder that a persistentVolumeClaim
 *                                volume maps to
 */
#ifndef DISTML_WORKFLOW_RUN_H
#define DISTML_WORKFLOW_RUN_H

#include "workflow/spec.h"
#include "workflow/store.h"

#include <stdbool.h>
#include <stdio.h>

typedef struct {
    const char *data_root;
    const char *self_exe;            /* this distml binary, run for "distml" commands */
    const char *const *param_names;  /* -p overrides of spec.arguments */
    const char *const *param_values;
    size_t param_count;
    FILE *progress; /* a line per node phase change, or NULL */
    bool live;      /* redraw a table of nodes on PROGRESS, a terminal, instead */
} wf_run_options;

typedef struct {
    char name[256];
    char phase[16];
    char message[1024];
} wf_run_outcome;

/* Run SPEC to completion. Returns 0 when the run was carried out, whatever
 * its phase (in OUTCOME), and -1 when it could not start: an unknown or
 * missing parameter, a name that exists, the database. */
int wf_run(const wf_spec *spec, const wf_run_options *options, wf_run_outcome *outcome);

/* Mark every run whose runner has died as Error, with its unfinished
 * nodes, and kill what is left of their processes. Returns how many runs
 * were marked. */
int wf_recover(wf_store *store, const char *data_root);

/* The folder of the run NAME: DATA_ROOT/workflows/NAME. */
int wf_run_dir(const char *data_root, const char *name, char *out, size_t capacity);

/* Argo's node ID: NAME itself for the root node, else
 * "<workflow>-<fnv32a(node name)>". */
void wf_node_id(const char *workflow, const char *node_name, char *out, size_t capacity);

/* Argo's pod name (v2): "<workflow>-<template>-<fnv32a(node name)>", or
 * the workflow's name for a root Pod node. */
void wf_pod_name(const char *workflow, const char *template_name, const char *node_name,
                 char *out, size_t capacity);

#endif
