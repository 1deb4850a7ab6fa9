/* Version folders: which names count, numeric order, the latest complete
 * version past incomplete and corrupt ones, and the next number. */
#include "base/error.h"
#include "base/fsutil.h"
#include "check.h"
#include "model/bundle.h"
#include "model/versions.h"

#include <fcntl.h>
#include <sys/wait.h>

static char tmp[4096];

static void make_version(const char *base, const char *name)
{
    char dir[4096];
    fs_join(dir, sizeof dir, base, name);
    bundle_writer *writer = bundle_begin(dir, "distml-model");
    if (writer == NULL || bundle_add_file(writer, "model.json", "{}", 2) != 0 ||
        bundle_commit(writer, false) != 0) {
        fprintf(stderr, "cannot make version %s: %s\n", dir, dm_error());
        exit(2);
    }
}

static void make_dir(const char *base, const char *name)
{
    char dir[4096];
    fs_join(dir, sizeof dir, base, name);
    if (fs_mkdir_p(dir) != 0) {
        fprintf(stderr, "%s\n", dm_error());
        exit(2);
    }
}

/* Run versions_latest_complete with stderr captured, returning the number
 * of "skipping version" lines it logged. */
static int latest_counting_warnings(const char *base, int64_t *version, int *rc)
{
    char log_path[4096];
    fs_join(log_path, sizeof log_path, tmp, "warnings.log");
    fflush(stderr);
    int saved = dup(2);
    int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 2);
    close(fd);
    *rc = versions_latest_complete(base, version);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);

    unsigned char *text = NULL;
    size_t size = 0;
    int count = 0;
    if (fs_read_file(log_path, &text, &size) == 0) {
        for (const char *p = (const char *)text; (p = strstr(p, "skipping version")) != NULL; p++)
            count++;
        fputs((const char *)text, stderr);
    }
    free(text);
    return count;
}

static void test_parse(void)
{
    static const char *const rejected[] = {
        "0.1", "v1",   "11.partial",         "tmp", "1e3", "+1", "-1", "", "007", " 1",
        "1 ",  "0x10", "9223372036854775808"};
    int64_t v = -5;
    for (size_t i = 0; i < sizeof rejected / sizeof rejected[0]; i++)
        CHECK_MSG(!versions_parse(rejected[i], &v), "'%s' was accepted", rejected[i]);
    CHECK(versions_parse("0", &v));
    CHECK_INT_EQ(v, 0);
    CHECK(versions_parse("10", &v));
    CHECK_INT_EQ(v, 10);
    CHECK(versions_parse("9223372036854775807", &v));
    CHECK(v == INT64_MAX);
}

static void test_list_order(void)
{
    char base[4096];
    fs_join(base, sizeof base, tmp, "order");
    make_version(base, "1");
    make_version(base, "2");
    make_version(base, "10");
    make_dir(base, "tmp");
    make_dir(base, "v0.1");
    make_dir(base, "11.partial");
    make_dir(base, "1e3");
    make_dir(base, "+1");
    make_dir(base, "-1");
    make_dir(base, "007");
    char file[4096];
    fs_join(file, sizeof file, base, "12");
    FILE *f = fopen(file, "w"); /* a plain file named like a version */
    fclose(f);

    int64_t *versions = NULL;
    size_t count = 0;
    CHECK_INT_EQ(versions_list(base, &versions, &count), 0);
    CHECK_INT_EQ(count, 3);
    if (count == 3) {
        CHECK_INT_EQ(versions[0], 1);
        CHECK_INT_EQ(versions[1], 2);
        CHECK_INT_EQ(versions[2], 10);
    }
    free(versions);

    int64_t latest = -5, next = -5;
    int rc = 0;
    CHECK_INT_EQ(latest_counting_warnings(base, &latest, &rc), 0);
    CHECK_INT_EQ(rc, 0);
    CHECK_INT_EQ(latest, 10);
    CHECK_INT_EQ(versions_next(base, &next), 0);
    CHECK_INT_EQ(next, 11);
}

static void test_latest_skips_bad(void)
{
    char base[4096], path[4096];
    fs_join(base, sizeof base, tmp, "skips");
    make_version(base, "3");
    make_version(base, "4");
    make_dir(base, "5"); /* incomplete: no manifest.json */
    make_version(base, "6");
    fs_join(path, sizeof path, base, "6/model.json");
    FILE *f = fopen(path, "w"); /* corrupt: same size, other bytes */
    fputs("[]", f);
    fclose(f);

    /* A writer that dies before committing leaves only "7.tmp.<pid>". */
    pid_t child = fork();
    if (child == 0) {
        fs_join(path, sizeof path, base, "7");
        bundle_writer *writer = bundle_begin(path, "distml-model");
        _exit(writer != NULL && bundle_add_file(writer, "model.json", "{}", 2) == 0 ? 0 : 3);
    }
    int status = 0;
    waitpid(child, &status, 0);
    CHECK_INT_EQ(status, 0); /* the child exited with status 0 */

    int64_t latest = -5, next = -5;
    int rc = -5;
    int warnings = latest_counting_warnings(base, &latest, &rc);
    CHECK_INT_EQ(rc, 0);
    CHECK_INT_EQ(latest, 4);
    CHECK_INT_EQ(warnings, 2);
    CHECK_INT_EQ(versions_next(base, &next), 0);
    CHECK_INT_EQ(next, 7);
}

static void test_empty_and_missing(void)
{
    char base[4096], missing[4096];
    fs_join(base, sizeof base, tmp, "empty");
    fs_join(missing, sizeof missing, tmp, "does-not-exist");
    make_dir(base, "tmp");

    int64_t latest = -5, next = -5;
    CHECK_INT_EQ(versions_latest_complete(base, &latest), 0);
    CHECK_INT_EQ(latest, -1);
    CHECK_INT_EQ(versions_next(base, &next), 0);
    CHECK_INT_EQ(next, 1);

    next = -5;
    CHECK_INT_EQ(versions_next(missing, &next), 0);
    CHECK_INT_EQ(next, 1);
    int64_t *versions = NULL;
    size_t count = 0;
    CHECK_INT_EQ(versions_list(missing, &versions, &count), -1);
    CHECK_STR_CONTAINS(dm_error(), missing);
    CHECK_INT_EQ(versions_latest_complete(missing, &latest), -1);

    make_version(base, "0");
    CHECK_INT_EQ(versions_latest_complete(base, &latest), 0);
    CHECK_INT_EQ(latest, 0);
    CHECK_INT_EQ(versions_next(base, &next), 0);
    CHECK_INT_EQ(next, 1);
}

static void test_path(void)
{
    char out[64];
    CHECK_INT_EQ(versions_path(out, sizeof out, "/models/mnist", 12), 0);
    CHECK(strcmp(out, "/models/mnist/12") == 0);
    CHECK_INT_EQ(versions_path(out, 8, "/models/mnist", 12), -1);
}

int main(void)
{
    snprintf(tmp, sizeof tmp, "%s", check_tmpdir("versions"));
    RUN_TEST(test_parse);
    RUN_TEST(test_list_order);
    RUN_TEST(test_latest_skips_bad);
    RUN_TEST(test_empty_and_missing);
    RUN_TEST(test_path);
    return check_finish();
}
