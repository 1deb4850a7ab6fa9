/*
 * An Argo Workflow (argoproj.io/v1alpha1) read from YAML into structs,
 * and checked before anything runs. Only the fields listed in
 * wf_spec_load's documentation are supported. Any other field is an error
 * that names it and its path in the file, so that no field of a workflow
 * is ignored. Strings point into the YAML tree that the spec owns.
 */
#ifndef DISTML_WORKFLOW_SPEC_H
#define DISTML_WORKFLOW_SPEC_H

#include "workflow/ydoc.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    WF_TEMPLATE_CONTAINER,
    WF_TEMPLATE_SCRIPT,
    WF_TEMPLATE_STEPS,
    WF_TEMPLATE_DAG,
    WF_TEMPLATE_RESOURCE,
} wf_template_type;

/* An input, output or argument parameter. */
typedef struct {
    const char *name;
    const char *value;         /* NULL when not given */
    const char *default_value; /* inputs: used when no argument supplies a value */
    const char *path;          /* outputs: valueFrom.path, a file the process writes */
    const char *from_parameter; /* outputs of steps/dag: valueFrom.parameter */
    const char *from_default;  /* outputs: valueFrom.default, when the file is missing */
    const char **enum_values;  /* inputs and arguments: the allowed values */
    size_t enum_count;
} wf_param;

typedef struct {
    const char *name;
    const char *value;
} wf_env_var;

typedef struct {
    const char *name;       /* a volume of the workflow */
    const char *mount_path; /* absolute path inside the container */
    const char *sub_path;   /* folder inside the volume, or NULL */
    bool read_only;
} wf_volume_mount;

/* spec.volumes: only persistentVolumeClaim volumes are supported. */
typedef struct {
    const char *name;
    const char *claim_name;
    bool read_only;
} wf_volume;

/* A container or script template's process. */
typedef struct {
    const char *image; /* recorded, never pulled */
    const char **command;
    size_t command_count;
    const char **args;
    size_t args_count;
    wf_env_var *env;
    size_t env_count;
    wf_volume_mount *mounts;
    size_t mount_count;
    const char *working_dir;
    const char *source; /* script templates: the program text */
} wf_container;

/* A step of a steps template or a task of a dag template. */
typedef struct {
    const char *name;
    const char *template_name;
    wf_param *arguments;
    size_t argument_count;
    const char *when;
    bool continue_on_failed;
    bool continue_on_error;
    const ydoc_node *with_items; /* a sequence, or NULL */
    const char *with_param;      /* a JSON list after substitution, or NULL */
    const char **dependencies;   /* dag tasks only */
    size_t dependency_count;
} wf_step;

typedef struct {
    wf_step *steps;
    size_t count;
} wf_step_group;

typedef struct {
    const char *key;        /* NULL: the key is a hash of the resolved template */
    const char *max_age;    /* Go duration text, or NULL for no limit */
    const char *cache_name; /* cache.configMap.name */
} wf_memoize;

typedef struct {
    const char *limit;  /* integer text, possibly with {{...}} tags; NULL = 0 */
    const char *policy; /* Always, OnFailure, OnError, OnTransientError; NULL = OnFailure */
    const char *backoff_duration;
    const char *backoff_factor;
    const char *backoff_max_duration;
} wf_retry;

typedef struct {
    const char *action; /* only "create" runs locally */
    const char *manifest;
    const char *success_condition;
    const char *failure_condition;
    bool set_owner_reference;
} wf_resource;

typedef struct {
    const char *name;
    wf_template_type type;
    char path[64]; /* "spec.templates[3]", for messages */
    wf_param *inputs;
    size_t input_count;
    wf_param *outputs;
    size_t output_count;
    wf_container container; /* container and script templates */
    wf_step_group *groups;  /* steps templates */
    size_t group_count;
    wf_step *tasks; /* dag templates */
    size_t task_count;
    bool fail_fast; /* dag: no new tasks after a failure (default true) */
    wf_resource resource;
    wf_memoize *memoize;
    wf_retry *retry;
    int64_t parallelism; /* 0: no limit */
    const char *active_deadline_seconds;
    const char *service_account; /* recorded only */
    const ydoc_node *node;       /* the template in the YAML tree */
} wf_template;

typedef struct {
    ydoc_node *root;
    char *file;
    const char *name;
    const char *generate_name;
    const char *namespace_name;
    const char *entrypoint;
    wf_param *arguments;
    size_t argument_count;
    wf_template *templates;
    size_t template_count;
    wf_volume *volumes;
    size_t volume_count;
    int64_t parallelism;
    const char *active_deadline_seconds;
    const char *pod_gc_strategy; /* NULL: working folders are kept */
    const char *service_account;
} wf_spec;

/*
 * Load and validate a Workflow from FILE into *SPEC. Supported fields:
 *   apiVersion, kind, metadata.{name, generateName, namespace, labels, annotations}
 *   spec.{entrypoint, arguments.parameters, templates, parallelism,
 *         activeDeadlineSeconds, podGC.strategy, volumes, serviceAccountName}
 *   template.{name, inputs.parameters, outputs.parameters, container, script,
 *             steps, dag, resource, memoize, retryStrategy, parallelism,
 *             activeDeadlineSeconds, serviceAccountName}
 * An unsupported or misspelt field, a wrong type, a missing template, a
 * DAG cycle, an invalid maxAge or memoize key: the error names the file,
 * line, column and field path, such as
 *   "wf.yaml:12:7: spec.templates[2].container.imagePullPolicy: unsupported field".
 */
int wf_spec_load(const char *file, wf_spec *spec);

/* The same for YAML text already in memory; NAME appears in messages. */
int wf_spec_parse(const char *text, size_t size, const char *name, wf_spec *spec);

void wf_spec_free(wf_spec *spec);

/* The template called NAME, or NULL. */
const wf_template *wf_spec_template(const wf_spec *spec, const char *name);

/* The volume called NAME, or NULL. */
const wf_volume *wf_spec_volume(const wf_spec *spec, const char *name);

/* The name of TYPE as Argo's template types read: "Container", "Script",
 * "Steps", "DAG", "Resource". */
const char *wf_template_type_name(wf_template_type type);

/* Argo's rule for a memoization cache key: ^[a-zA-Z0-9][-a-zA-Z0-9]*$. */
bool wf_memo_key_valid(const char *key);

#endif
