#define _GNU_SOURCE /* pipe2 */
#include "workflow/process.h"

#include "base/clock.h"
#include "base/error.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int64_t wf_process_start_ticks(pid_t pid)
{
    char path[64], buffer[4096];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    size_t n = fread(buffer, 1, sizeof buffer - 1, f);
    fclose(f);
    buffer[n] = '\0';
    /* The command name in brackets may contain spaces, so fields are
     * counted from the last ')'. Field 3 (the state) follows it. */
    char *p = strrchr(buffer, ')');
    if (p == NULL)
        return 0;
    p++;
    for (int field = 3; field < 22 && p != NULL; field++) {
        p = strchr(p + 1, ' ');
    }
    return p != NULL ? strtoll(p + 1, NULL, 10) : 0;
}

static bool is_zombie(pid_t pid)
{
    char path[64], buffer[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return true;
    size_t n = fread(buffer, 1, sizeof buffer - 1, f);
    fclose(f);
    buffer[n] = '\0';
    char *p = strrchr(buffer, ')');
    return p == NULL || p[1] == '\0' || p[2] == 'Z';
}

bool wf_process_group_stop(pid_t pgid, int64_t start_ticks)
{
    if (pgid <= 1 || start_ticks == 0 || wf_process_start_ticks(pgid) != start_ticks)
        return false;
    if (kill(-pgid, SIGTERM) != 0)
        return false;
    const double until = dm_monotonic_seconds() + WF_PROCESS_GRACE_SECONDS;
    while (dm_monotonic_seconds() < until && kill(-pgid, 0) == 0 && !is_zombie(pgid)) {
        struct timespec pause = {0, 100 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    kill(-pgid, SIGKILL);
    return true;
}

/* Whether /proc/PID/environ contains the entry MARKER ("NAME=value"). */
static bool environ_has(pid_t pid, const char *marker)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/environ", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    size_t capacity = 1 << 16, size = 0;
    char *data = malloc(capacity + 1);
    bool found = false;
    if (data != NULL) {
        size_t n;
        while ((n = fread(data + size, 1, capacity - size, f)) > 0) {
            size += n;
            if (size == capacity) {
                char *bigger = realloc(data, capacity * 2 + 1);
                if (bigger == NULL)
                    break;
                data = bigger;
                capacity *= 2;
            }
        }
        data[size] = '\0';
        for (size_t i = 0; i < size && !found; i += strlen(data + i) + 1)
            found = strcmp(data + i, marker) == 0;
        free(data);
    }
    fclose(f);
    return found;
}

int wf_process_kill_marked(pid_t pgid, const char *marker)
{
    int killed = 0;
    DIR *proc = opendir("/proc");
    if (proc == NULL)
        return 0;
    struct dirent *entry;
    while ((entry = readdir(proc)) != NULL) {
        char *end = NULL;
        long pid = strtol(entry->d_name, &end, 10);
        if (*end != '\0' || pid <= 1 || getpgid((pid_t)pid) != pgid)
            continue;
        if (environ_has((pid_t)pid, marker) && kill((pid_t)pid, SIGKILL) == 0)
            killed++;
    }
    closedir(proc);
    return killed;
}

int wf_process_find(const char *name, char *const *envp, char *out, size_t capacity)
{
    if (strchr(name, '/') != NULL) {
        if ((size_t)snprintf(out, capacity, "%s", name) >= capacity)
            return dm_fail("path too long: %s", name);
        return 0;
    }
    const char *path = "/usr/local/bin:/usr/bin:/bin";
    for (char *const *e = envp; e != NULL && *e != NULL; e++) {
        if (strncmp(*e, "PATH=", 5) == 0)
            path = *e + 5;
    }
    const char *s = path;
    while (*s != '\0') {
        const char *colon = strchr(s, ':');
        size_t n = colon != NULL ? (size_t)(colon - s) : strlen(s);
        char candidate[4096];
        if (n > 0 && (size_t)snprintf(candidate, sizeof candidate, "%.*s/%s", (int)n, s, name) <
                         sizeof candidate) {
            struct stat st;
            if (stat(candidate, &st) == 0 && S_ISREG(st.st_mode) && access(candidate, X_OK) == 0) {
                snprintf(out, capacity, "%s", candidate);
                return 0;
            }
        }
        s += n;
        if (*s == ':')
            s++;
    }
    return dm_fail("exec: \"%s\": executable file not found in $PATH", name);
}

/* The child side between fork and exec: only async-signal-safe calls. */
static void child_exec(const wf_process_spec *spec, const char *path, int out_fd, int err_fd,
                       int status_fd, pid_t parent)
{
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127);
    int null_fd = open("/dev/null", O_RDONLY);
    if (null_fd >= 0) {
        dup2(null_fd, STDIN_FILENO);
        close(null_fd);
    }
    dup2(out_fd, STDOUT_FILENO);
    dup2(err_fd, STDERR_FILENO);
    if (spec->cwd != NULL && chdir(spec->cwd) != 0) {
        int e = errno;
        ssize_t ignored = write(status_fd, &e, sizeof e);
        (void)ignored;
        _exit(127);
    }
    execve(path, spec->argv, spec->envp);
    int e = errno;
    ssize_t ignored = write(status_fd, &e, sizeof e);
    (void)ignored;
    _exit(127);
}

/* Keep the last KEEP bytes of stdout in RESULT. */
static void keep_stdout(wf_process_result *result, size_t keep, const char *data, size_t n)
{
    if (keep == 0)
        return;
    if (n >= keep) {
        memcpy(result->stdout_tail, data + n - keep, keep);
        result->stdout_truncated = result->stdout_truncated || n > keep || result->stdout_size;
        result->stdout_size = keep;
    } else if (result->stdout_size + n > keep) {
        size_t drop = result->stdout_size + n - keep;
        memmove(result->stdout_tail, result->stdout_tail + drop, result->stdout_size - drop);
        result->stdout_size -= drop;
        memcpy(result->stdout_tail + result->stdout_size, data, n);
        result->stdout_size += n;
        result->stdout_truncated = true;
    } else {
        memcpy(result->stdout_tail + result->stdout_size, data, n);
        result->stdout_size += n;
    }
    result->stdout_tail[result->stdout_size] = '\0';
}

static void write_all(int fd, const char *data, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, data, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        data += w;
        n -= (size_t)w;
    }
}

int wf_process_run(const wf_process_spec *spec, wf_process_result *result)
{
    char path[4096];
    int out_pipe[2] = {-1, -1}, err_pipe[2] = {-1, -1}, status_pipe[2] = {-1, -1};
    int log_fd = -1;
    int rc = -1;

    memset(result, 0, sizeof *result);
    result->stdout_tail = dm_malloc(spec->stdout_keep + 1);
    if (result->stdout_tail == NULL)
        return -1;
    result->stdout_tail[0] = '\0';
    if (wf_process_find(spec->argv[0], spec->envp, path, sizeof path) != 0) {
        result->start_failed = true;
        result->exit_code = 127;
        snprintf(result->error, sizeof result->error, "%s", dm_error());
        return 0;
    }
    log_fd = open(spec->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd < 0)
        return dm_fail("cannot open %s: %s", spec->log_path, strerror(errno));
    if (pipe2(out_pipe, O_CLOEXEC) != 0 || pipe2(err_pipe, O_CLOEXEC) != 0 ||
        pipe2(status_pipe, O_CLOEXEC) != 0) {
        dm_fail("cannot create a pipe: %s", strerror(errno));
        goto out;
    }
    const pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        dm_fail("cannot fork: %s", strerror(errno));
        goto out;
    }
    if (pid == 0)
        child_exec(spec, path, out_pipe[1], err_pipe[1], status_pipe[1], parent);
    /* The parent sets the group too, so a kill right after fork reaches
     * it whichever process runs first. */
    setpgid(pid, pid);
    close(out_pipe[1]);
    close(err_pipe[1]);
    close(status_pipe[1]);
    out_pipe[1] = err_pipe[1] = status_pipe[1] = -1;
    if (spec->on_start != NULL)
        spec->on_start(spec->context, pid, wf_process_start_ticks(pid));

    int exec_errno = 0;
    ssize_t got = read(status_pipe[0], &exec_errno, sizeof exec_errno);
    if (got == (ssize_t)sizeof exec_errno) {
        result->start_failed = true;
        snprintf(result->error, sizeof result->error, "cannot run %s: %s", path,
                 strerror(exec_errno));
    }

    struct pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
    bool open_fds[2] = {true, true};
    bool exited = false, stopping = false;
    int wait_status = 0;
    double exited_at = 0, kill_at = 0;
    char chunk[65536];
    for (;;) {
        for (int i = 0; i < 2; i++)
            fds[i].fd = open_fds[i] ? (i == 0 ? out_pipe[0] : err_pipe[0]) : -1;
        int ready = poll(fds, 2, 100);
        for (int i = 0; ready > 0 && i < 2; i++) {
            if (!open_fds[i] || fds[i].revents == 0)
                continue;
            ssize_t n = read(fds[i].fd, chunk, sizeof chunk);
            if (n > 0) {
                write_all(log_fd, chunk, (size_t)n);
                if (i == 0)
                    keep_stdout(result, spec->stdout_keep, chunk, (size_t)n);
            } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
                open_fds[i] = false;
            }
        }
        const double now = dm_monotonic_seconds();
        if (!exited && waitpid(pid, &wait_status, WNOHANG) == pid) {
            exited = true;
            exited_at = now;
            /* The container ends with its main process. */
            kill(-pid, SIGKILL);
        }
        if (exited && ((!open_fds[0] && !open_fds[1]) || now - exited_at > 2.0))
            break;
        if (!exited && !stopping) {
            bool cancelled = spec->cancel != NULL && *spec->cancel != 0;
            bool late = spec->deadline > 0 && now >= spec->deadline;
            if (cancelled || late) {
                stopping = true;
                result->cancelled = cancelled;
                result->timed_out = late && !cancelled;
                kill(-pid, SIGTERM);
                kill_at = now + WF_PROCESS_GRACE_SECONDS;
            }
        }
        if (stopping && !exited && now >= kill_at)
            kill(-pid, SIGKILL);
    }
    if (WIFEXITED(wait_status))
        result->exit_code = WEXITSTATUS(wait_status);
    else if (WIFSIGNALED(wait_status))
        result->exit_code = 128 + WTERMSIG(wait_status);
    rc = 0;
out:
    for (int i = 0; i < 2; i++) {
        if (out_pipe[i] >= 0)
            close(out_pipe[i]);
        if (err_pipe[i] >= 0)
            close(err_pipe[i]);
        if (status_pipe[i] >= 0)
            close(status_pipe[i]);
    }
    if (log_fd >= 0)
        close(log_fd);
    return rc;
}

void wf_process_result_free(wf_process_result *result)
{
    free(result->stdout_tail);
    memset(result, 0, sizeof *result);
}
