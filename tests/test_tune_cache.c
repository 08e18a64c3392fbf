/* The shared tuning cache (twist/backend_support.h: tw_tune_cache): choices written and read back
 * by a later open; a file from another driver version, a damaged file and a file with a bad
 * checksum are ignored (never trusted) and replaced by the next put; keys that are not
 * "<op> <class>" words are refused. Runs in a private TWIST_CACHE_DIR. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/device.h" /* a tw_device around the test's own tuner (white box) */
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

/* tw_device_tune's choice callback (twist/backend.h): the front end reports what the backend's
 * tune stored in or read from its tuning cache during the call. The tuner here is the test's
 * own (a device struct around a vtable with only `tune`), doing what a backend's does: it opens
 * its cache (an earlier run left "gemm NN-a" there), keeps that class, reads another cached one,
 * times two new classes, and with retune clears the cache first. */
typedef struct seen_choices {
    char text[1024];
    int count;
} seen_choices;

static void note_choice(const char *op, const char *shape_class, const char *variant,
                        bool measured, void *user) {
    seen_choices *seen = user;
    size_t length = strlen(seen->text);
    snprintf(seen->text + length, sizeof seen->text - length, "%s/%s=%s:%s;", op, shape_class,
             variant, measured ? "tuned" : "cached");
    seen->count++;
}

static tw_status test_tuner(void *context, const tw_tune_request *request) {
    (void)context;
    tw_tune_cache *cache = tw_tune_cache_open("test", "device T", "d");
    if (request->retune) tw_tune_cache_clear(cache);
    (void)tw_tune_cache_get(cache, "gemm NN-b"); /* read, cached or not */
    (void)tw_tune_cache_get(cache, "gemm NN-missing");
    tw_tune_cache_put(cache, "gemm TN-c", "v2");
    tw_tune_cache_put(cache, "attention_fwd D64", "flash");
    tw_tune_cache_put(cache, "gemm TN-c", "v3"); /* timed again: the last choice counts */
    if (request->progress) request->progress(3, 3, "gemm TN-c: v3", request->user);
    tw_tune_cache_close(cache);
    return TW_OK;
}

static void test_tune_reports_choices(void) {
    tw_tune_cache *cache = tw_tune_cache_open("test", "device T", "d");
    TW_CHECK(tw_tune_cache_put(cache, "gemm NN-a", "v1") && tw_tune_cache_put(cache, "gemm NN-b", "v4"),
             "an earlier run's choices");
    tw_tune_cache_close(cache);
    tw_backend_vtable vtable = {.tune = test_tuner};
    struct tw_device device = {.vtable = &vtable};

    seen_choices seen = {0};
    tw_tune_request request = {.choice = note_choice, .user = &seen};
    TW_CHECK_OK(tw_device_tune(&device, &request));
    const char *want = "gemm/NN-a=v1:cached;gemm/NN-b=v4:cached;gemm/TN-c=v3:tuned;"
                       "attention_fwd/D64=flash:tuned;";
    TW_CHECK(strcmp(seen.text, want) == 0, "choices reported:\n  got  %s\n  want %s", seen.text,
             want);

    /* --retune: what was only read before the clear is no choice of this call. */
    memset(&seen, 0, sizeof seen);
    request.retune = true;
    TW_CHECK_OK(tw_device_tune(&device, &request));
    want = "gemm/TN-c=v3:tuned;attention_fwd/D64=flash:tuned;";
    TW_CHECK(strcmp(seen.text, want) == 0, "choices after a retune:\n  got  %s\n  want %s",
             seen.text, want);

    /* Outside a tune call nothing is noted; without a callback the tuner still runs. */
    memset(&seen, 0, sizeof seen);
    cache = tw_tune_cache_open("test", "device T", "d");
    tw_tune_cache_put(cache, "gemm NN-z", "v9");
    tw_tune_cache_close(cache);
    request.choice = NULL;
    TW_CHECK_OK(tw_device_tune(&device, &request));
    TW_CHECK(seen.count == 0, "no callback: nothing reported (%d)", seen.count);
    cache = tw_tune_cache_open("test", "device T", "d");
    const char *got = tw_tune_cache_get(cache, "gemm TN-c");
    TW_CHECK(got && strcmp(got, "v3") == 0 && !tw_tune_cache_get(cache, "gemm NN-z"),
             "the retune without a callback cleared and rebuilt the cache");
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
    test_tune_reports_choices();
    char command[256];
    snprintf(command, sizeof command, "rm -rf '%s'", cache_dir);
    if (system(command) != 0) fprintf(stderr, "could not remove %s\n", cache_dir);
    if (tw_test_failures()) return 1;
    printf("tune_cache: ok\n");
    return 0;
}
