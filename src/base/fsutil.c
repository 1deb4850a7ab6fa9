#define _XOPEN_SOURCE 700
#include "base/fsutil.h"

#include "base/error.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int fs_join(char *out, size_t capacity, const char *a, const char *b)
{
    size_t len = strlen(a);
    const char *sep = (len > 0 && a[len - 1] == '/') ? "" : "/";
    int n = snprintf(out, capacity, "%s%s%s", a, sep, b);
    if (n < 0 || (size_t)n >= capacity)
        return dm_fail("path too long: %s/%s", a, b);
    return 0;
}

bool fs_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

bool fs_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int fs_mkdir_p(const char *path)
{
    char buf[4096];
    size_t len = strlen(path);

    if (len == 0 || len >= sizeof buf)
        return dm_fail("invalid directory path '%s'", path);
    memcpy(buf, path, len + 1);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return dm_fail("cannot create directory %s: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return dm_fail("cannot create directory %s: %s", buf, strerror(errno));
    if (!fs_is_dir(buf))
        return dm_fail("%s exists and is not a directory", buf);
    return 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int fs_remove_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? 0 : dm_fail("cannot stat %s: %s", path, strerror(errno));
    if (nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        return dm_fail("cannot remove %s: %s", path, strerror(errno));
    return 0;
}

int fs_read_file(const char *path, unsigned char **data, size_t *size)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    size_t cap = 0, len = 0;
    struct stat st;

    if (f == NULL)
        return dm_fail("cannot open %s: %s", path, strerror(errno));
    /* A device or FIFO (say /dev/zero behind a symlink) would never end. */
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return dm_fail("cannot read %s: not a regular file", path);
    }
    for (;;) {
        if (len + 65536 + 1 > cap) {
            size_t next = cap ? cap * 2 : 1 << 20;
            unsigned char *grown = realloc(buf, next);
            if (grown == NULL) {
                free(buf);
                fclose(f);
                return dm_fail("out of memory reading %s", path);
            }
            buf = grown;
            cap = next;
        }
        size_t n = fread(buf + len, 1, cap - len - 1, f);
        len += n;
        if (n == 0)
            break;
    }
    if (ferror(f)) {
        free(buf);
        fclose(f);
        return dm_fail("cannot read %s: %s", path, strerror(errno));
    }
    fclose(f);
    buf[len] = '\0';
    *data = buf;
    *size = len;
    return 0;
}

int fs_sync_parent(const char *path)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    int fd = open(dirname(buf), O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        return dm_fail("cannot open directory of %s: %s", path, strerror(errno));
    fsync(fd);
    close(fd);
    return 0;
}

int fs_temp_open(fs_temp_file *file, const char *final_path)
{
    int n;

    file->fd = -1;
    n = snprintf(file->final_path, sizeof file->final_path, "%s", final_path);
    if (n < 0 || (size_t)n >= sizeof file->final_path)
        return dm_fail("path too long: %s", final_path);
    n = snprintf(file->temp_path, sizeof file->temp_path, "%s.tmp.%d", final_path, (int)getpid());
    if (n < 0 || (size_t)n >= sizeof file->temp_path)
        return dm_fail("path too long: %s", final_path);
    file->fd = open(file->temp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (file->fd < 0)
        return dm_fail("cannot create %s: %s", file->temp_path, strerror(errno));
    return 0;
}

int fs_temp_write(fs_temp_file *file, const void *data, size_t size)
{
    const unsigned char *p = data;
    while (size > 0) {
        ssize_t n = write(file->fd, p, size);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return dm_fail("cannot write %s: %s", file->temp_path, strerror(errno));
        p += n;
        size -= (size_t)n;
    }
    return 0;
}

int fs_temp_commit(fs_temp_file *file)
{
    if (fsync(file->fd) != 0) {
        int saved = errno;
        fs_temp_abandon(file);
        return dm_fail("cannot sync %s: %s", file->temp_path, strerror(saved));
    }
    if (close(file->fd) != 0) {
        file->fd = -1;
        int saved = errno;
        unlink(file->temp_path);
        return dm_fail("cannot close %s: %s", file->temp_path, strerror(saved));
    }
    file->fd = -1;
    if (rename(file->temp_path, file->final_path) != 0) {
        int saved = errno;
        unlink(file->temp_path);
        return dm_fail("cannot rename %s to %s: %s", file->temp_path, file->final_path,
                       strerror(saved));
    }
    return fs_sync_parent(file->final_path);
}

void fs_temp_abandon(fs_temp_file *file)
{
    if (file->fd >= 0)
        close(file->fd);
    file->fd = -1;
    unlink(file->temp_path);
}

int fs_write_file_atomic(const char *path, const void *data, size_t size)
{
    fs_temp_file file;
    if (fs_temp_open(&file, path) != 0)
        return -1;
    if (fs_temp_write(&file, data, size) != 0) {
        fs_temp_abandon(&file);
        return -1;
    }
    return fs_temp_commit(&file);
}

int fs_temp_dir(const char *final_dir, char *temp_dir, size_t capacity)
{
    int n = snprintf(temp_dir, capacity, "%s.tmp.%d", final_dir, (int)getpid());
    if (n < 0 || (size_t)n >= capacity)
        return dm_fail("path too long: %s", final_dir);
    if (fs_remove_tree(temp_dir) != 0)
        return -1;
    return fs_mkdir_p(temp_dir);
}

int fs_commit_dir(const char *temp_dir, const char *final_dir, bool replace)
{
    char old_dir[4096];

    if (fs_exists(final_dir)) {
        if (!replace)
            return dm_fail("%s already exists", final_dir);
        int n = snprintf(old_dir, sizeof old_dir, "%s.old.%d", final_dir, (int)getpid());
        if (n < 0 || (size_t)n >= sizeof old_dir)
            return dm_fail("path too long: %s", final_dir);
        if (fs_remove_tree(old_dir) != 0)
            return -1;
        if (rename(final_dir, old_dir) != 0)
            return dm_fail("cannot move %s aside: %s", final_dir, strerror(errno));
        if (rename(temp_dir, final_dir) != 0) {
            int saved = errno;
            rename(old_dir, final_dir);
            return dm_fail("cannot rename %s to %s: %s", temp_dir, final_dir, strerror(saved));
        }
        fs_sync_parent(final_dir);
        return fs_remove_tree(old_dir);
    }
    if (rename(temp_dir, final_dir) != 0)
        return dm_fail("cannot rename %s to %s: %s", temp_dir, final_dir, strerror(errno));
    return fs_sync_parent(final_dir);
}
