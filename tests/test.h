/* A small assertion header for thaw's C tests. Each test file defines test
 * functions, lists them in main with RUN(), and ends with TEST_REPORT(),
 * which prints "N passed, N failed" and returns the exit code. A failed
 * assertion prints both values and the line, and ends the current test. */
#ifndef THAW_TEST_H
#define THAW_TEST_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int test_passed_, test_failed_, test_cur_failed_;

#define TEST_FAIL_(...)                                                                            \
    do {                                                                                           \
        fprintf(stderr, "  FAIL %s:%d: ", __FILE__, __LINE__);                                     \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fputc('\n', stderr);                                                                       \
        test_cur_failed_ = 1;                                                                      \
        return;                                                                                    \
    } while (0)

#define ASSERT(c)                                                                                  \
    do {                                                                                           \
        if (!(c)) TEST_FAIL_("%s", #c);                                                            \
    } while (0)

#define ASSERT_EQ(a, b)                                                                            \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        if (a_ != b_) TEST_FAIL_("%s == %s (%lld vs %lld)", #a, #b, a_, b_);                       \
    } while (0)

#define ASSERT_NE(a, b)                                                                            \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        if (a_ == b_) TEST_FAIL_("%s != %s (both %lld)", #a, #b, a_);                              \
    } while (0)

#define ASSERT_CMP(a, op, b)                                                                       \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        if (!(a_ op b_)) TEST_FAIL_("%s %s %s (%lld vs %lld)", #a, #op, #b, a_, b_);               \
    } while (0)

#define ASSERT_NEAR(a, b, tol)                                                                     \
    do {                                                                                           \
        double a_ = (double)(a), b_ = (double)(b);                                                 \
        if (!(a_ - b_ <= (tol) && b_ - a_ <= (tol)))                                               \
            TEST_FAIL_("%s ~ %s (%.9g vs %.9g, tol %g)", #a, #b, a_, b_, (double)(tol));           \
    } while (0)

#define ASSERT_STR_EQ(a, b)                                                                        \
    do {                                                                                           \
        const char *a_ = (a), *b_ = (b);                                                           \
        if (!a_ || !b_ || strcmp(a_, b_) != 0)                                                     \
            TEST_FAIL_("%s == %s (\"%s\" vs \"%s\")", #a, #b, a_ ? a_ : "(null)",                  \
                       b_ ? b_ : "(null)");                                                        \
    } while (0)

#define ASSERT_CONTAINS(hay, needle)                                                               \
    do {                                                                                           \
        const char *h_ = (hay), *n_ = (needle);                                                    \
        if (!h_ || !strstr(h_, n_))                                                                \
            TEST_FAIL_("%s contains \"%s\" (got \"%s\")", #hay, n_, h_ ? h_ : "(null)");           \
    } while (0)

/* THAW_TEST_ONLY=name,name runs only the tests named (a quick subset, e.g.
 * under emulation in tests/cross); unset or empty runs them all. */
static inline int test_selected_(const char *name)
{
    const char *only = getenv("THAW_TEST_ONLY");
    size_t n = strlen(name);
    if (!only || !*only) return 1;
    for (const char *p = only; (p = strstr(p, name)) != NULL; p += n)
        if ((p == only || p[-1] == ',') && (p[n] == ',' || p[n] == 0)) return 1;
    return 0;
}

#define RUN(fn)                                                                                    \
    do {                                                                                           \
        if (!test_selected_(#fn)) break;                                                           \
        test_cur_failed_ = 0;                                                                      \
        fprintf(stderr, "- %s\n", #fn);                                                            \
        fn();                                                                                      \
        if (test_cur_failed_) test_failed_++;                                                      \
        else test_passed_++;                                                                       \
    } while (0)

/* Running no test at all (a THAW_TEST_ONLY naming none) is a failure too. */
#define TEST_REPORT()                                                                              \
    (printf("%d passed, %d failed\n", test_passed_, test_failed_),                                \
     test_failed_ || !test_passed_ ? 1 : 0)

#endif
