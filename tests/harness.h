/* Small shared helpers for twist's tests: a seeded RNG, failure counting, skip handling. */
#ifndef TWIST_TEST_HARNESS_H
#define TWIST_TEST_HARNESS_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "twist/backend.h"

/* ctest's SKIP_RETURN_CODE: a test that cannot run here prints why and exits with this. */
#define TW_TEST_SKIP 77

/* Prints "SKIP: <reason>" and exits 77. */
void tw_test_skip(const char *format, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Counts a failure and prints it (file:line and message) without stopping the test. */
void tw_test_fail(const char *file, int line, const char *format, ...)
    __attribute__((format(printf, 3, 4)));
int tw_test_failures(void);

#define TW_CHECK(cond, ...)                                   \
    do {                                                      \
        if (!(cond)) tw_test_fail(__FILE__, __LINE__, __VA_ARGS__); \
    } while (0)

/* Fails the test when a library call does not return TW_OK, printing tw_last_error(). */
#define TW_CHECK_OK(call)                                                                     \
    do {                                                                                      \
        tw_status check_status_ = (call);                                                     \
        if (check_status_ != TW_OK)                                                           \
            tw_test_fail(__FILE__, __LINE__, "%s -> %s: %s", #call,                           \
                         tw_status_name(check_status_), tw_last_error());                     \
    } while (0)

/* The call must fail with status `expected` and a message that mentions `needle`. */
#define TW_CHECK_ERROR(call, expected, needle)                                                 \
    do {                                                                                       \
        tw_clear_error();                                                                      \
        tw_status check_got_ = (call);                                                         \
        TW_CHECK(check_got_ == (expected), "%s returned '%s', expected '%s' (%s)", #call,      \
                 tw_status_name(check_got_), tw_status_name(expected), tw_last_error());       \
        TW_CHECK(strstr(tw_last_error(), (needle)) != NULL,                                    \
                 "%s: message '%s' does not mention '%s'", #call, tw_last_error(), (needle));  \
    } while (0)

/* Creates a fresh directory /tmp/twist-<name>-XXXXXX into out (skips the test if it cannot). */
void tw_test_temp_dir(const char *name, char *out, size_t size);
/* Removes a directory tree made by tw_test_temp_dir (when the test passed: a failing test keeps
 * its files for inspection, and says where). */
void tw_test_remove_temp_dir(const char *dir);

/* Prints a summary and returns the process exit code: 0 if no failure, 1 otherwise. */
int tw_test_finish(const char *test_name);

/* Deterministic xorshift64* generator. */
typedef struct tw_test_rng {
    uint64_t state;
} tw_test_rng;

void tw_test_rng_seed(tw_test_rng *rng, uint64_t seed);
uint64_t tw_test_rng_next(tw_test_rng *rng);
/* Uniform float in [lo, hi). */
float tw_test_rng_uniform(tw_test_rng *rng, float lo, float hi);
/* Uniform int in [0, n). */
int tw_test_rng_int(tw_test_rng *rng, int n);
void tw_test_fill_uniform(tw_test_rng *rng, float *x, size_t n, float lo, float hi);

#endif
