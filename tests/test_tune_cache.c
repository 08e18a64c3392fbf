/* The shared tuning cache (twist/backend_support.h: tw_tune_cache): choices written and read back
 * by a later open; a file from another driver version, a damaged file and a file with a bad
 * checksum are ignored (never trusted) and replaced by the next put; keys that are not
 * "<op> <class>" words are refused. Runs in a private TWIST_CACHE_DIR. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "twist/backend_support.h"

static char cache_dir[] = "/tmp/twist-tune-cache-XXXXXX";

static void write_text(const char *path, const char *text) {
    FILE *file = fopen(path, "wb");
    TW_CHECK(file != NULL, "cannot write %s", path);
    if (!file) return;
    fputs(text, file);
    fclose(file);
}

static char *read_text(const char *path) {
    FILE *file = fopen(path, "rb");
    if (!file) return NULL;
    char *text = calloc(1, 65536);
    if (text && fread(text, 1, 65535, file) == 0) text[0] = '\0';
    fclose(file);
    return text;
}

static void test_written_and_reused(void) {
    tw_tune_cache *cache = tw_tune_cache_open("test", "device A", "driver 1.0");
    TW_CHECK(cache != NULL, "open");
    TW_CHECK(tw_tune_cache_get(cache, "gemm NN-m10") == NULL, "a fresh cache is empty");
    TW_CHECK(tw_tune_cache_put(cache, "gemm NN-m10", "v3"), "put: %s", tw_tune_cache_path(cache));
    TW_CHECK(tw_tune_cache_put(cache, "gemm TN-m12", "vendor"), "second put");
    TW_CHECK(tw_tune_cache_put(cache, "gemm NN-m10", "v5"), "replacing put");
    TW_CHECK(strncmp(tw_tune_cache_path(cache), cache_dir, strlen(cache_dir)) == 0,
             "the file lies in TWIST_CACHE_DIR: %s", tw_tune_cache_path(cache));
    tw_tune_cache_close(cache);

    cache = tw_tune_cache_open("test", "device A", "driver 1.0");
    const char *got = tw_tune_cache_get(cache, "gemm NN-m10");
    TW_CHECK(got && strcmp(got, "v5") == 0, "reopened: gemm NN-m10 -> %s", got ? got : "(none)");
    got = tw_tune_cache_get(cache, "gemm TN-m12");
    TW_CHECK(got && strcmp(got, "vendor") == 0, "reopened: gemm TN-m12 -> %s",
             got ? got : "(none)");
    tw_tune_cache_close(cache);

    /* Another device identity has its own file. */
    cache = tw_tune_cache_open("test", "device B", "driver 1.0");
    TW_CHECK(tw_tune_cache_get(cache, "gemm NN-m10") == NULL, "device B starts empty");
    tw_tune_cache_close(cache);
}

static void test_other_driver_ignored(void) {
    tw_tune_cache *cache = tw_tune_cache_open("test", "device A", "driver 2.0");
    TW_CHECK(tw_tune_cache_get(cache, "gemm NN-m10") == NULL,
             "a cache written for driver 1.0 is not used under driver 2.0");
    TW_CHECK(tw_tune_cache_put(cache, "gemm NN-m10", "v1"), "put under driver 2.0");
    tw_tune_cache_close(cache);
    char *text = read_text(tw_tune_cache_path(cache = tw_tune_cache_open("test", "device A", "x")));
    tw_tune_cache_close(cache);
    TW_CHECK(text && strstr(text, "driver driver 2.0\n") && !strstr(text, "v5"),
             "the file was rebuilt for driver 2.0:\n%s", text ? text : "(unreadable)");
    free(text);
}

static void test_damaged_ignored(void) {
    tw_tune_cache *cache = tw_tune_cache_open("test", "device C", "d");
    TW_CHECK(tw_tune_cache_put(cache, "gemm NN-m10", "v2"), "put");
    char path[4096];
    snprintf(path, sizeof path, "%s", tw_tune_cache_path(cache));
    tw_tune_cache_close(cache);
    char *good = read_text(path);
    TW_CHECK(good != NULL, "read %s", path);
    if (!good) return;

    /* One changed byte in an entry: the checksum no longer matches. */
    char *edited = strdup(good);
    char *at = strstr(edited, " v2\n");
    if (at) at[2] = '7';
    write_text(path, edited);
    cache = tw_tune_cache_open("test", "device C", "d");
    TW_CHECK(tw_tune_cache_get(cache, "gemm NN-m10") == NULL, "an edited file is not trusted");
    tw_tune_cache_close(cache);

    const char *damaged[] = {"", "garbage\n", "twist-tune 1\ndriver d\n", /* no checksum */
                             "twist-tune 9\ndriver d\ngemm NN-m10 v2\nchecksum 0\n"};
    for (size_t i = 0; i < sizeof damaged / sizeof *damaged; i++) {
        write_text(path, damaged[i]);
        cache = tw_tune_cache_open("test", "device C", "d");
        TW_CHECK(tw_tune_cache_get(cache, "gemm NN-m10") == NULL, "damaged file %zu ignored", i);
        TW_CHECK(tw_tune_cache_put(cache, "gemm NN-m10", "v4"), "put after damaged file %zu", i);
        tw_tune_cache_close(cache);
        cache = tw_tune_cache_open("test", "device C", "d");
        const char *got = tw_tune_cache_get(cache, "gemm NN-m10");
        TW_CHECK(got && strcmp(got, "v4") == 0, "rebuilt after damaged file %zu", i);
        tw_tune_cache_close(cache);
    }
    /* A truncated good file (its checksum line cut). */
    write_text(path, good);
    size_t cut = strlen(good) - 5;
    good[cut] = '\0';
    write_text(path, good);
    cache = tw_tune_cache_open("test", "device C", "d");
    TW_CHECK(tw_tune_cache_get(cache, "gemm NN-m10") == NULL, "a truncated file is ignored");
    tw_tune_cache_close(cache);
    free(edited);
    free(good);
}

static void test_bad_keys_and_clear(void) {
    tw_tune_cache *cache = tw_tune_cache_open("test", "device D", "d");
    TW_CHECK(!tw_tune_cache_put(cache, "gemm", "v1"), "a key without a class is refused");
    TW_CHECK(!tw_tune_cache_put(cache, "gemm a b", "v1"), "a key of three words is refused");
    TW_CHECK(!tw_tune_cache_put(cache, "gemm a", "v 1"), "a variant with a space is refused");
    TW_CHECK(!tw_tune_cache_put(cache, "gemm a\nx", "v1"), "a newline is refused");
    TW_CHECK(tw_tune_cache_put(cache, "attention_fwd D64", "tiled"), "a good key");
    tw_tune_cache_clear(cache);
    TW_CHECK(tw_tune_cache_get(cache, "attention_fwd D64") == NULL, "clear forgets");
    TW_CHECK(access(tw_tune_cache_path(cache), F_OK) != 0, "clear removes the file");
    tw_tune_cache_close(cache);
}

int main(void) {
    if (!mkdtemp(cache_dir)) tw_test_skip("cannot make a temporary directory");
    setenv("TWIST_CACHE_DIR", cache_dir, 1);
    setenv("TWIST_QUIET", "1", 1);
    test_written_and_reused();
    test_other_driver_ignored();
    test_damaged_ignored();
    test_bad_keys_and_clear();
    char command[256];
    snprintf(command, sizeof command, "rm -rf '%s'", cache_dir);
    if (system(command) != 0) fprintf(stderr, "could not remove %s\n", cache_dir);
    if (tw_test_failures()) return 1;
    printf("tune_cache: ok\n");
    return 0;
}
