#include "model/bundle.h"

#include "base/error.h"
#include "base/fsutil.h"
#include "base/sha256.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BUNDLE_FORMAT_MAX 128
#define BUNDLE_PATH_CAPACITY 4096

typedef struct {
    char name[BUNDLE_NAME_MAX + 1];
    long long size;
    char sha256[SHA256_HEX_SIZE];
} bundle_entry;

struct bundle_writer {
    char final_dir[BUNDLE_PATH_CAPACITY];
    char temp_dir[BUNDLE_PATH_CAPACITY];
    char format[BUNDLE_FORMAT_MAX + 1];
    bundle_entry *entries;
    size_t count;
    size_t capacity;
};

bool bundle_name_valid(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > BUNDLE_NAME_MAX || name[0] == '.')
        return false;
    if (strcmp(name, BUNDLE_MANIFEST) == 0)
        return false;
    for (const char *p = name; *p; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

static bool sha256_hex_valid(const char *hex)
{
    if (strlen(hex) != SHA256_HEX_SIZE - 1)
        return false;
    for (const char *p = hex; *p; p++) {
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    }
    return true;
}

/* ---- Writing ---- */

bundle_writer *bundle_begin(const char *final_dir, const char *format)
{
    size_t format_len = strlen(format);
    if (format_len == 0 || format_len > BUNDLE_FORMAT_MAX) {
        dm_fail("cannot start bundle %s: format must be 1 to %d bytes", final_dir,
                BUNDLE_FORMAT_MAX);
        return NULL;
    }
    bundle_writer *writer = dm_calloc(1, sizeof *writer);
    if (writer == NULL)
        return NULL;
    int n = snprintf(writer->final_dir, sizeof writer->final_dir, "%s", final_dir);
    if (n <= 0 || (size_t)n >= sizeof writer->final_dir) {
        dm_fail("cannot start bundle: invalid or too long path '%s'", final_dir);
        free(writer);
        return NULL;
    }
    memcpy(writer->format, format, format_len + 1);
    if (fs_temp_dir(final_dir, writer->temp_dir, sizeof writer->temp_dir) != 0) {
        dm_fail_context("cannot start bundle %s", final_dir);
        free(writer);
        return NULL;
    }
    return writer;
}

const char *bundle_writer_dir(const bundle_writer *writer)
{
    return writer->temp_dir;
}

/* Check that NAME is valid and not yet in the bundle. */
static int check_new_name(const bundle_writer *writer, const char *name)
{
    if (!bundle_name_valid(name))
        return dm_fail("cannot add '%s' to bundle %s: a name must be 1 to %d characters from "
                       "[A-Za-z0-9._-], not start with '.', and not be %s",
                       name, writer->final_dir, BUNDLE_NAME_MAX, BUNDLE_MANIFEST);
    for (size_t i = 0; i < writer->count; i++) {
        if (strcmp(writer->entries[i].name, name) == 0)
            return dm_fail("cannot add '%s' to bundle %s: the bundle already has a file of "
                           "that name",
                           name, writer->final_dir);
    }
    return 0;
}

/* Reserve an entry for NAME. The caller increments writer->count once the
 * file is written. */
static bundle_entry *reserve_entry(bundle_writer *writer, const char *name)
{
    if (check_new_name(writer, name) != 0)
        return NULL;
    if (writer->count == writer->capacity) {
        size_t next = writer->capacity ? writer->capacity * 2 : 8;
        bundle_entry *grown = realloc(writer->entries, next * sizeof *grown);
        if (grown == NULL) {
            dm_fail("out of memory adding '%s' to bundle %s", name, writer->final_dir);
            return NULL;
        }
        writer->entries = grown;
        writer->capacity = next;
    }
    bundle_entry *entry = &writer->entries[writer->count];
    memset(entry, 0, sizeof *entry);
    memcpy(entry->name, name, strlen(name) + 1);
    return entry;
}

int bundle_add_file(bundle_writer *writer, const char *name, const void *data, size_t size)
{
    char path[BUNDLE_PATH_CAPACITY];
    bundle_entry *entry = reserve_entry(writer, name);
    if (entry == NULL)
        return -1;
    if (fs_join(path, sizeof path, writer->temp_dir, name) != 0)
        return -1;
    if (sha256_hex(data, size, entry->sha256) != 0)
        return -1;
    if (fs_write_file_atomic(path, data, size) != 0)
        return dm_fail_context("cannot add '%s' to bundle %s", name, writer->final_dir);
    entry->size = (long long)size;
    writer->count++;
    return 0;
}

/* Fill ENTRY's size and SHA-256 from the file at PATH, fsyncing it first. */
static int describe_written_file(bundle_entry *entry, const char *path)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return dm_fail("cannot open %s: %s", path, strerror(errno));
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return dm_fail("%s is not a regular file", path);
    }
    if (fsync(fd) != 0) {
        int saved = errno;
        close(fd);
        return dm_fail("cannot sync %s: %s", path, strerror(saved));
    }
    close(fd);
    entry->size = (long long)st.st_size;
    return sha256_file_hex(path, entry->sha256);
}

int bundle_add_existing(bundle_writer *writer, const char *name)
{
    char path[BUNDLE_PATH_CAPACITY];
    bundle_entry *entry = reserve_entry(writer, name);
    if (entry == NULL)
        return -1;
    if (fs_join(path, sizeof path, writer->temp_dir, name) != 0)
        return -1;
    if (describe_written_file(entry, path) != 0)
        return dm_fail_context("cannot add '%s' to bundle %s", name, writer->final_dir);
    writer->count++;
    return 0;
}

int bundle_add_safetensors(bundle_writer *writer, const char *name, const st_tensor *tensors,
                           size_t count, const char *const *metadata_kv)
{
    char path[BUNDLE_PATH_CAPACITY];
    if (check_new_name(writer, name) != 0)
        return -1;
    if (fs_join(path, sizeof path, writer->temp_dir, name) != 0)
        return -1;
    if (st_write(path, tensors, count, metadata_kv) != 0)
        return dm_fail_context("cannot add '%s' to bundle %s", name, writer->final_dir);
    return bundle_add_existing(writer, name);
}

static char *manifest_to_json(const bundle_writer *writer)
{
    cJSON *root = cJSON_CreateObject();
    char *text = NULL;

    if (root == NULL || cJSON_AddStringToObject(root, "format", writer->format) == NULL)
        goto out;
    cJSON *list = cJSON_AddArrayToObject(root, "files");
    if (list == NULL)
        goto out;
    for (size_t i = 0; i < writer->count; i++) {
        const bundle_entry *entry = &writer->entries[i];
        cJSON *item = cJSON_CreateObject();
        if (item == NULL)
            goto out;
        cJSON_AddItemToArray(list, item);
        if (cJSON_AddStringToObject(item, "name", entry->name) == NULL ||
            cJSON_AddNumberToObject(item, "size", (double)entry->size) == NULL ||
            cJSON_AddStringToObject(item, "sha256", entry->sha256) == NULL)
            goto out;
    }
    text = cJSON_Print(root);
out:
    cJSON_Delete(root);
    return text;
}

int bundle_commit(bundle_writer *writer, bool replace)
{
    char path[BUNDLE_PATH_CAPACITY];
    char *text = manifest_to_json(writer);
    int rc = -1;

    if (text == NULL) {
        dm_fail("cannot commit bundle %s: out of memory building %s", writer->final_dir,
                BUNDLE_MANIFEST);
        goto out;
    }
    if (fs_join(path, sizeof path, writer->temp_dir, BUNDLE_MANIFEST) != 0)
        goto out;
    if (fs_write_file_atomic(path, text, strlen(text)) != 0 ||
        fs_commit_dir(writer->temp_dir, writer->final_dir, replace) != 0) {
        dm_fail_context("cannot commit bundle %s", writer->final_dir);
        goto out;
    }
    rc = 0;
out:
    free(text);
    if (rc != 0) {
        bundle_abort(writer);
        return -1;
    }
    free(writer->entries);
    free(writer);
    return 0;
}

void bundle_abort(bundle_writer *writer)
{
    if (writer == NULL)
        return;
    fs_remove_tree(writer->temp_dir);
    free(writer->entries);
    free(writer);
}

/* ---- Verifying ---- */

/* Parse manifest TEXT into FORMAT and a malloc'd entry array. */
static int parse_manifest(const char *manifest_path, const char *text, size_t size, char *format,
                          bundle_entry **entries_out, size_t *count_out)
{
    int rc = BUNDLE_INVALID;
    bundle_entry *entries = NULL;
    cJSON *root = cJSON_ParseWithLength(text, size);

    if (root == NULL || !cJSON_IsObject(root)) {
        dm_fail("invalid %s: not a JSON object", manifest_path);
        goto out;
    }
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(root, "format");
    if (!cJSON_IsString(fmt) || fmt->valuestring[0] == '\0' ||
        strlen(fmt->valuestring) > BUNDLE_FORMAT_MAX) {
        dm_fail("invalid %s: \"format\" is missing or not a string of 1 to %d bytes", manifest_path,
                BUNDLE_FORMAT_MAX);
        goto out;
    }
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(root, "files");
    if (!cJSON_IsArray(files)) {
        dm_fail("invalid %s: \"files\" is missing or not an array", manifest_path);
        goto out;
    }
    size_t count = (size_t)cJSON_GetArraySize(files);
    entries = dm_calloc(count, sizeof *entries);
    if (entries == NULL)
        goto out;

    size_t i = 0;
    for (const cJSON *item = files->child; item != NULL; item = item->next, i++) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(item, "name");
        const cJSON *bytes = cJSON_GetObjectItemCaseSensitive(item, "size");
        const cJSON *sha = cJSON_GetObjectItemCaseSensitive(item, "sha256");
        if (!cJSON_IsString(name) || !bundle_name_valid(name->valuestring)) {
            dm_fail("invalid %s: files[%zu] has a missing or invalid name", manifest_path, i);
            goto out;
        }
        if (!cJSON_IsNumber(bytes) || !(bytes->valuedouble >= 0) ||
            bytes->valuedouble > 9007199254740992.0 ||
            bytes->valuedouble != (double)(long long)bytes->valuedouble) {
            dm_fail("invalid %s: file %s has a missing or invalid size", manifest_path,
                    name->valuestring);
            goto out;
        }
        if (!cJSON_IsString(sha) || !sha256_hex_valid(sha->valuestring)) {
            dm_fail("invalid %s: file %s has a missing or invalid sha256 (expected 64 "
                    "lowercase hex digits)",
                    manifest_path, name->valuestring);
            goto out;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(entries[j].name, name->valuestring) == 0) {
                dm_fail("invalid %s: file %s is listed twice", manifest_path, name->valuestring);
                goto out;
            }
        }
        memcpy(entries[i].name, name->valuestring, strlen(name->valuestring) + 1);
        entries[i].size = (long long)bytes->valuedouble;
        memcpy(entries[i].sha256, sha->valuestring, SHA256_HEX_SIZE);
    }
    memcpy(format, fmt->valuestring, strlen(fmt->valuestring) + 1);
    *entries_out = entries;
    *count_out = count;
    entries = NULL;
    rc = BUNDLE_OK;
out:
    free(entries);
    cJSON_Delete(root);
    return rc;
}

static int check_entry(const char *dir, const bundle_entry *entry)
{
    char path[BUNDLE_PATH_CAPACITY];
    char actual[SHA256_HEX_SIZE];
    struct stat st;

    if (fs_join(path, sizeof path, dir, entry->name) != 0)
        return BUNDLE_INVALID;
    if (stat(path, &st) != 0) {
        if (errno == ENOENT)
            return dm_fail("corrupt bundle %s: file %s listed in %s is missing", dir, entry->name,
                           BUNDLE_MANIFEST);
        return dm_fail("cannot stat %s: %s", path, strerror(errno));
    }
    if (!S_ISREG(st.st_mode))
        return dm_fail("corrupt bundle %s: %s is not a regular file", dir, entry->name);
    if ((long long)st.st_size != entry->size)
        return dm_fail("corrupt bundle %s: file %s is %lld bytes but %s lists %lld", dir,
                       entry->name, (long long)st.st_size, BUNDLE_MANIFEST, entry->size);
    if (sha256_file_hex(path, actual) != 0)
        return BUNDLE_INVALID;
    if (strcmp(actual, entry->sha256) != 0)
        return dm_fail("corrupt bundle %s: file %s has SHA-256 %s but %s lists %s", dir,
                       entry->name, actual, BUNDLE_MANIFEST, entry->sha256);
    return BUNDLE_OK;
}

/* Reject any directory entry that the manifest does not list. */
static int check_no_unlisted(const char *dir, const bundle_entry *entries, size_t count)
{
    DIR *d = opendir(dir);
    struct dirent *ent;
    int rc = BUNDLE_OK;

    if (d == NULL)
        return dm_fail("cannot open directory %s: %s", dir, strerror(errno));
    while (rc == BUNDLE_OK && (ent = readdir(d)) != NULL) {
        const char *name = ent->d_name;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0 || strcmp(name, BUNDLE_MANIFEST) == 0)
            continue;
        bool listed = false;
        for (size_t i = 0; i < count && !listed; i++)
            listed = strcmp(entries[i].name, name) == 0;
        if (!listed)
            rc = dm_fail("corrupt bundle %s: %s is not listed in %s", dir, name, BUNDLE_MANIFEST);
    }
    closedir(d);
    return rc;
}

int bundle_verify(const char *dir, char *format_out, size_t capacity)
{
    char manifest_path[BUNDLE_PATH_CAPACITY];
    char format[BUNDLE_FORMAT_MAX + 1];
    unsigned char *text = NULL;
    size_t size = 0;
    bundle_entry *entries = NULL;
    size_t count = 0;
    struct stat st;

    if (format_out != NULL && capacity > 0)
        format_out[0] = '\0';
    if (stat(dir, &st) != 0)
        return dm_fail("bundle %s not found: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return dm_fail("bundle %s is not a directory", dir);
    if (fs_join(manifest_path, sizeof manifest_path, dir, BUNDLE_MANIFEST) != 0)
        return BUNDLE_INVALID;
    if (!fs_exists(manifest_path)) {
        dm_fail("incomplete bundle %s: %s is missing", dir, BUNDLE_MANIFEST);
        return BUNDLE_INCOMPLETE;
    }
    if (fs_read_file(manifest_path, &text, &size) != 0)
        return BUNDLE_INVALID;
    int rc = parse_manifest(manifest_path, (const char *)text, size, format, &entries, &count);
    free(text);
    for (size_t i = 0; rc == BUNDLE_OK && i < count; i++)
        rc = check_entry(dir, &entries[i]);
    if (rc == BUNDLE_OK)
        rc = check_no_unlisted(dir, entries, count);
    free(entries);
    if (rc != BUNDLE_OK)
        return BUNDLE_INVALID;
    if (format_out != NULL) {
        if (strlen(format) >= capacity)
            return dm_fail("bundle %s: format '%s' does not fit the %zu-byte buffer", dir, format,
                           capacity);
        memcpy(format_out, format, strlen(format) + 1);
    }
    return BUNDLE_OK;
}

int bundle_read_file(const char *dir, const char *name, unsigned char **data, size_t *size)
{
    char path[BUNDLE_PATH_CAPACITY];
    if (!bundle_name_valid(name) && strcmp(name, BUNDLE_MANIFEST) != 0)
        return dm_fail("cannot read '%s' from bundle %s: invalid file name", name, dir);
    if (fs_join(path, sizeof path, dir, name) != 0)
        return -1;
    return fs_read_file(path, data, size);
}
