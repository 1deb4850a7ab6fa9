/*
 * Local processes for workflow steps: what a container does in a pod,
 * done with fork and exec. The process gets its own process group, stdin
 * from /dev/null, and SIGKILL if the thread that started it dies. Its
 * stdout and stderr go to a log file in arrival order, and the tail of
 * stdout is kept for a script's result. When the main process exits, the
 * rest of its process group is killed, as a container's processes end
 * with the container.
 */
#ifndef DISTML_WORKFLOW_PROCESS_H
#define DISTML_WORKFLOW_PROCESS_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Seconds between SIGTERM and SIGKILL when a process is stopped. */
#define WF_PROCESS_GRACE_SECONDS 5.0

typedef struct {
    char *const *argv;    /* argv[0] is a path or a name looked up in PATH */
    char *const *envp;    /* the whole environment */
    const char *cwd;      /* NULL: the runner's */
    const char *log_path; /* stdout and stderr are appended here */
    size_t stdout_keep;   /* bytes of stdout to keep, the last ones */
    double deadline;      /* dm_monotonic_seconds() limit, 0 for none */
    const volatile sig_atomic_t *cancel; /* stop the process when non-zero */
    /* Called once the process exists, with its pid and its start time in
     * clock ticks since boot (field 22 of /proc/PID/stat). */
    void (*on_start)(void *context, pid_t pid, int64_t start_ticks);
    void *context;
} wf_process_spec;

typedef struct {
    int exit_code;      /* 0-255, or 128 + signal number */
    bool start_failed;  /* exec failed, for the reason in error */
    bool timed_out;     /* stopped at the deadline */
    bool cancelled;     /* stopped because *cancel was set */
    char *stdout_tail;  /* malloc'd, NUL-terminated */
    size_t stdout_size;
    bool stdout_truncated;
    char error[512];
} wf_process_result;

/* Run the process and wait for it. Exec failures and exit codes are
 * reported in RESULT. Returns -1 only when the runner itself failed to
 * start it (a pipe, fork, the log file). */
int wf_process_run(const wf_process_spec *spec, wf_process_result *result);

void wf_process_result_free(wf_process_result *result);

/* Resolve NAME through PATH (from ENVP) into OUT; a NAME with a '/' is
 * used as it is. */
int wf_process_find(const char *name, char *const *envp, char *out, size_t capacity);

/* The start time of PID in clock ticks since boot, or 0 when PID does
 * not exist. Together with the pid it identifies a process, even after
 * the pid is reused. */
int64_t wf_process_start_ticks(pid_t pid);

/* Stop the process group PGID (SIGTERM, then SIGKILL after the grace
 * time) if its leader PGID still has START_TICKS. Returns whether a
 * signal was sent. */
bool wf_process_group_stop(pid_t pgid, int64_t start_ticks);

/* Send SIGKILL to each process in group PGID whose environment contains
 * the entry MARKER ("NAME=value"), and return how many were killed. The
 * runner gives every step's process such a marker. So this finds the
 * processes of a runner that died, even when the group's leader is gone,
 * and spares a process that reused the ids. */
int wf_process_kill_marked(pid_t pgid, const char *marker);

#endif
