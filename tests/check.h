/*
 * A small assertion kit for the C unit tests. Each CHECK prints the failing
 * expression with file:line and counts; check_finish() prints
 * "N passed, N failed" and returns the exit status.
 */
#ifndef DISTML_TESTS_CHECK_H
#define DISTML_TESTS_CHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int check_passed, check_failed;

#define CHECK(cond)                                                                               \
    do {                                                                                          \
        if (cond) {                                                                               \
            check_passed++;                                                                       \
        } else {                                                                                  \
            check_failed++;                                                                       \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);              \
        }                                                                                         \
    } while (0)

#define CHECK_MSG(cond, ...)                                                                      \
    do {                                                                                          \
        if (cond) {                                                                               \
            check_passed++;                                                                       \
        } else {                                                                                  \
            check_failed++;                                                                       \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);              \
            fprintf(stderr, __VA_ARGS__);                                                         \
            fputc('\n', stderr);                                                                  \
        }                                                                                         \
    } while (0)

#define CHECK_INT_EQ(a, b)                                                                        \
    CHECK_MSG((long long)(a) == (long long)(b), "%lld != %lld", (long long)(a), (long long)(b))

#define CHECK_NEAR(a, b, tol)                                                                     \
    CHECK_MSG(fabs((double)(a) - (double)(b)) <= (tol), "%.9g vs %.9g (tolerance %.3g)",           \
              (double)(a), (double)(b), (double)(tol))

#define CHECK_STR_CONTAINS(haystack, needle)                                                      \
    CHECK_MSG(strstr((haystack), (needle)) != NULL, "'%s' does not contain '%s'", (haystack),     \
              (needle))

/* Run one named test function, printing its name as a section header. */
#define RUN_TEST(fn)                                                                              \
    do {                                                                                          \
        int failed_before = check_failed;                                                         \
        fn();                                                                                     \
        printf("%s %s\n", check_failed == failed_before ? "ok    " : "FAILED", #fn);              \
    } while (0)

static inline int check_finish(void)
{
    printf("%d passed, %d failed\n", check_passed, check_failed);
    return check_failed == 0 ? 0 : 1;
}

/* A fresh scratch directory under $DISTML_TEST_TMP (or /tmp) for one test. */
static inline const char *check_tmpdir(const char *name)
{
    static char path[4096];
    const char *root = getenv("DISTML_TEST_TMP");
    if (root == NULL || root[0] == '\0')
        root = "/tmp";
    snprintf(path, sizeof path, "%s/%s.%d", root, name, (int)getpid());
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", path, path);
    if (system(cmd) != 0) {
        fprintf(stderr, "cannot create %s\n", path);
        exit(2);
    }
    return path;
}

#endif
