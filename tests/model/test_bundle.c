/* Bundles: commit, atomicity after a simulated crash, and verification
 * failures for wrong sizes, wrong digests and missing or extra files. */
#include "base/error.h"
#include "base/fsutil.h"
#include "check.h"
#include "model/bundle.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <sys/wait.h>

/* SHA-256 of "abc", as `printf abc | sha256sum` prints it. */
#define ABC_SHA256 "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"

static char tmp[4096];

static bool json_string_is(const cJSON *item, const char *expected)
{
    return cJSON_IsString(item) && strcmp(item->valuestring, expected) == 0;
}

static void path_in_tmp(char *out, size_t capacity, const char *name)
{
    if (fs_join(out, capacity, tmp, name) != 0) {
        fprintf(stderr, "%s\n", dm_error());
        exit(2);
    }
}

/* Commit a bundle "test-format" with abc.txt = "abc" and data.bin = 16 bytes. */
static int make_bundle(const char *dir)
{
    unsigned char blob[16];
    for (int i = 0; i < 16; i++)
        blob[i] = (unsigned char)(i * 17);
    bundle_writer *writer = bundle_begin(dir, "test-format");
    if (writer == NULL)
        return -1;
    if (bundle_add_file(writer, "abc.txt", "abc", 3) != 0 ||
        bundle_add_file(writer, "data.bin", blob, sizeof blob) != 0) {
        bundle_abort(writer);
        return -1;
    }
    return bundle_commit(writer, false);
}

static void write_text(const char *dir, const char *name, const char *text)
{
    char path[4096];
    fs_join(path, sizeof path, dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL) {
        perror(path);
        exit(2);
    }
    fputs(text, f);
    fclose(f);
}

static void test_commit_and_verify(void)
{
    char dir[4096], temp[4096];
    char format[64] = "unset";
    path_in_tmp(dir, sizeof dir, "good");
    int rc = make_bundle(dir);
    CHECK_MSG(rc == 0, "%s", dm_error());

    rc = bundle_verify(dir, format, sizeof format);
    CHECK_MSG(rc == BUNDLE_OK, "%s", dm_error());
    CHECK(strcmp(format, "test-format") == 0);
    snprintf(temp, sizeof temp, "%s.tmp.%d", dir, (int)getpid());
    CHECK(!fs_exists(temp));

    unsigned char *text = NULL;
    size_t size = 0;
    CHECK_INT_EQ(bundle_read_file(dir, BUNDLE_MANIFEST, &text, &size), 0);
    cJSON *root = cJSON_Parse((const char *)text);
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(root, "files");
    CHECK_INT_EQ(cJSON_GetArraySize(files), 2);
    const cJSON *first = cJSON_GetArrayItem(files, 0);
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(first, "name");
    const cJSON *bytes = cJSON_GetObjectItemCaseSensitive(first, "size");
    const cJSON *sha = cJSON_GetObjectItemCaseSensitive(first, "sha256");
    CHECK(json_string_is(name, "abc.txt"));
    CHECK(cJSON_GetNumberValue(bytes) == 3);
    CHECK(json_string_is(sha, ABC_SHA256));
    cJSON_Delete(root);
    free(text);

    CHECK_INT_EQ(bundle_read_file(dir, "abc.txt", &text, &size), 0);
    CHECK_INT_EQ(size, 3);
    if (text != NULL && size == 3)
        CHECK(memcmp(text, "abc", 3) == 0);
    free(text);
}

static void test_crash_leaves_incomplete(void)
{
    char dir[4096], temp[4096];
    path_in_tmp(dir, sizeof dir, "crashed");

    /* The child starts a bundle, writes a file and dies before committing. */
    pid_t child = fork();
    if (child == 0) {
        bundle_writer *writer = bundle_begin(dir, "test-format");
        if (writer == NULL || bundle_add_file(writer, "abc.txt", "abc", 3) != 0)
            _exit(3);
        _exit(0);
    }
    int status = 0;
    waitpid(child, &status, 0);
    CHECK_INT_EQ(status, 0); /* the child exited with status 0 */
    snprintf(temp, sizeof temp, "%s.tmp.%d", dir, (int)child);

    CHECK(!fs_exists(dir));
    CHECK(fs_is_dir(temp));
    CHECK(bundle_verify(dir, NULL, 0) == BUNDLE_INVALID);
    CHECK_STR_CONTAINS(dm_error(), "not found");
    CHECK(bundle_verify(temp, NULL, 0) == BUNDLE_INCOMPLETE);
    CHECK_STR_CONTAINS(dm_error(), "incomplete bundle");
    CHECK_STR_CONTAINS(dm_error(), "manifest.json is missing");
}

static void test_replace(void)
{
    char dir[4096];
    path_in_tmp(dir, sizeof dir, "replaced");
    CHECK_INT_EQ(make_bundle(dir), 0);

    CHECK_INT_EQ(make_bundle(dir), -1);
    CHECK_STR_CONTAINS(dm_error(), "already exists");
    CHECK(bundle_verify(dir, NULL, 0) == BUNDLE_OK);

    bundle_writer *writer = bundle_begin(dir, "second-format");
    CHECK(writer != NULL);
    if (writer == NULL)
        return;
    CHECK_INT_EQ(bundle_add_file(writer, "only.txt", "new", 3), 0);
    CHECK_INT_EQ(bundle_commit(writer, true), 0);
    char format[64];
    CHECK(bundle_verify(dir, format, sizeof format) == BUNDLE_OK);
    CHECK(strcmp(format, "second-format") == 0);
    char old_file[4096];
    fs_join(old_file, sizeof old_file, dir, "abc.txt");
    CHECK(!fs_exists(old_file));
}

static void test_wrong_sha256(void)
{
    char dir[4096];
    path_in_tmp(dir, sizeof dir, "wrong_sha");
    CHECK_INT_EQ(make_bundle(dir), 0);
    write_text(dir, "abc.txt", "abd"); /* same size, different bytes */
    CHECK(bundle_verify(dir, NULL, 0) == BUNDLE_INVALID);
    CHECK_STR_CONTAINS(dm_error(), "corrupt bundle");
    CHECK_STR_CONTAINS(dm_error(), "file abc.txt has SHA-256");
    CHECK_STR_CONTAINS(dm_error(), "lists " ABC_SHA256);
}

static void test_wrong_size(void)
{
    char dir[4096];
    path_in_tmp(dir, sizeof dir, "wrong_size");
    CHECK_INT_EQ(make_bundle(dir), 0);
    write_text(dir, "abc.txt", "abcd");
    CHECK(bundle_verify(dir, NULL, 0) == BUNDLE_INVALID);
    CHECK_STR_CONTAINS(dm_error(), "file abc.txt is 4 bytes but manifest.json lists 3");
}

static void test_missing_file(void)
{
    char dir[4096], path[4096];
    path_in_tmp(dir, sizeof dir, "missing_file");
    CHECK_INT_EQ(make_bundle(dir), 0);
    fs_join(path, sizeof path, dir, "data.bin");
    CHECK_INT_EQ(remove(path), 0);
    CHECK(bundle_verify(dir, NULL, 0) == BUNDLE_INVALID);
    CHECK_STR_CONTAINS(dm_error(), "file data.bin listed in manifest.json is missing");
}

static void test_unlisted_file(void)
{
    char dir[4096];
    path_in_tmp(dir, sizeof dir, "unlisted");
    CHECK_INT_EQ(make_bundle(dir), 0);
    write_text(dir, "extra.txt", "x");
    CHECK(bundle_verify(dir, NULL, 0) == BUNDLE_INVALID);
    CHECK_STR_CONTAINS(dm_error(), "extra.txt is not listed in manifest.json");
}

static void test_missing_manifest(void)
{
    char dir[4096], path[4096];
    path_in_tmp(dir, sizeof dir, "no_manifest");
    CHECK_INT_EQ(make_bundle(dir), 0);
    fs_join(path, sizeof path, dir, BUNDLE_MANIFEST);
    CHECK_INT_EQ(remove(path), 0);
    CHECK(bundle_verify(dir, NULL, 0) == BUNDLE_INCOMPLETE);
    CHECK_STR_CONTAINS(dm_error(), "incomplete bundle");
    CHECK_STR_CONTAINS(dm_error(), dir);
}

static void test_bad_manifest(void)
{
    static const struct {
        const char *manifest;
        const char *expected;
    } cases[] = {
        {"{\"format\": \"f\", \"files\": [", "not a JSON object"},
        {"{\"files\": []}", "\"format\" is missing"},
        {"{\"format\": \"f\"}", "\"files\" is missing"},
        {"{\"format\": \"f\", \"files\": [{\"name\": \"../abc.txt\", \"size\": 3, "
         "\"sha256\": \"" ABC_SHA256 "\"}]}",
         "files[0] has a missing or invalid name"},
        {"{\"format\": \"f\", \"files\": [{\"name\": \"abc.txt\", \"size\": -3, "
         "\"sha256\": \"" ABC_SHA256 "\"}]}",
         "file abc.txt has a missing or invalid size"},
        {"{\"format\": \"f\", \"files\": [{\"name\": \"abc.txt\", \"size\": 3, "
         "\"sha256\": \"ABC\"}]}",
         "file abc.txt has a missing or invalid sha256"},
        {"{\"format\": \"f\", \"files\": [{\"name\": \"abc.txt\", \"size\": 3, "
         "\"sha256\": \"" ABC_SHA256 "\"}, {\"name\": \"abc.txt\", \"size\": 3, "
         "\"sha256\": \"" ABC_SHA256 "\"}]}",
         "file abc.txt is listed twice"},
    };
    char dir[4096];
    path_in_tmp(dir, sizeof dir, "bad_manifest");
    CHECK_INT_EQ(fs_mkdir_p(dir), 0);
    write_text(dir, "abc.txt", "abc");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_text(dir, BUNDLE_MANIFEST, cases[i].manifest);
        int rc = bundle_verify(dir, NULL, 0);
        CHECK_MSG(rc == BUNDLE_INVALID, "case %zu returned %d", i, rc);
        CHECK_MSG(strstr(dm_error(), "manifest.json") != NULL, "case %zu: '%s'", i, dm_error());
        CHECK_MSG(strstr(dm_error(), cases[i].expected) != NULL,
                  "case %zu: '%s' does not contain '%s'", i, dm_error(), cases[i].expected);
    }
}

static void test_name_rules(void)
{
    CHECK(bundle_name_valid("weights.safetensors"));
    CHECK(bundle_name_valid("state-1_a.json"));
    CHECK(!bundle_name_valid(""));
    CHECK(!bundle_name_valid("a/b"));
    CHECK(!bundle_name_valid(".."));
    CHECK(!bundle_name_valid("."));
    CHECK(!bundle_name_valid(".hidden"));
    CHECK(!bundle_name_valid("manifest.json"));
    CHECK(!bundle_name_valid("with space"));
    CHECK(!bundle_name_valid("back\\slash"));

    char dir[4096];
    path_in_tmp(dir, sizeof dir, "names");
    bundle_writer *writer = bundle_begin(dir, "test-format");
    CHECK(writer != NULL);
    if (writer == NULL)
        return;
    CHECK_INT_EQ(bundle_add_file(writer, "../escape.txt", "x", 1), -1);
    CHECK_STR_CONTAINS(dm_error(), "'../escape.txt'");
    CHECK_INT_EQ(bundle_add_file(writer, "manifest.json", "{}", 2), -1);
    CHECK_INT_EQ(bundle_add_file(writer, "a.txt", "x", 1), 0);
    CHECK_INT_EQ(bundle_add_file(writer, "a.txt", "y", 1), -1);
    CHECK_STR_CONTAINS(dm_error(), "already has a file of that name");
    char escaped[4096];
    path_in_tmp(escaped, sizeof escaped, "escape.txt");
    CHECK(!fs_exists(escaped));
    char temp[4096];
    snprintf(temp, sizeof temp, "%s", bundle_writer_dir(writer));
    bundle_abort(writer);
    CHECK(!fs_exists(temp));
    CHECK(!fs_exists(dir));
}

static void test_safetensors_member(void)
{
    float values[3] = {1.5f, 2.5f, -3.5f};
    st_tensor t = {.name = "w", .ndim = 1, .shape = {3}, .data = values};
    char dir[4096], path[4096];
    path_in_tmp(dir, sizeof dir, "with_tensors");
    bundle_writer *writer = bundle_begin(dir, "model");
    CHECK(writer != NULL);
    if (writer == NULL)
        return;
    CHECK_INT_EQ(bundle_add_safetensors(writer, "model.safetensors", &t, 1, NULL), 0);
    CHECK_INT_EQ(bundle_add_safetensors(writer, "model.safetensors", &t, 1, NULL), -1);
    CHECK_INT_EQ(bundle_commit(writer, false), 0);
    CHECK(bundle_verify(dir, NULL, 0) == BUNDLE_OK);

    st_tensor *out = NULL;
    size_t count = 0;
    fs_join(path, sizeof path, dir, "model.safetensors");
    CHECK_INT_EQ(st_read(path, &out, &count), 0);
    CHECK_INT_EQ(count, 1);
    if (count == 1)
        CHECK(memcmp(out[0].data, values, sizeof values) == 0);
    st_free(out, count);
}

int main(void)
{
    snprintf(tmp, sizeof tmp, "%s", check_tmpdir("bundle"));
    RUN_TEST(test_commit_and_verify);
    RUN_TEST(test_crash_leaves_incomplete);
    RUN_TEST(test_replace);
    RUN_TEST(test_wrong_sha256);
    RUN_TEST(test_wrong_size);
    RUN_TEST(test_missing_file);
    RUN_TEST(test_unlisted_file);
    RUN_TEST(test_missing_manifest);
    RUN_TEST(test_bad_manifest);
    RUN_TEST(test_name_rules);
    RUN_TEST(test_safetensors_member);
    return check_finish();
}
