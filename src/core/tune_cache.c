/* The tuning cache backends share (twist/backend_support.h: tw_tune_cache).
 *
 * Small by design: a tuned device has a few dozen shape classes, so entries are a flat array
 * searched linearly, and every put rewrites the whole file (temporary name, then rename), which
 * keeps readers from ever seeing half a file. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/paths.h"
#include "core/tune_observe.h"
#include "twist/backend_support.h"
#include "twist/error.h"

enum { TUNE_WORD = 96, TUNE_MAX_ENTRIES = 512, TUNE_DRIVER = 256 };

typedef struct tune_entry {
    char key[TUNE_WORD];
    char variant[TUNE_WORD];
} tune_entry;

struct tw_tune_cache {
    char path[4096]; /* "" when there is no cache directory */
    char driver[TUNE_DRIVER];
    tune_entry *entries;
    int count;
};

static const char tune_magic[] = "twist-tune 1";

/* ---- the observer of a tw_device_tune call (tune_observe.h) ------------------------------ */

static _Thread_local tw_tune_observer *observer;

void tw_tune_observe_begin(tw_tune_observer *o) {
    o->count = 0;
    observer = o;
}

void tw_tune_observe_end(void) { observer = NULL; }

/* Notes key -> variant: a put (measured) replaces what was noted; a read keeps an earlier note. */
static void observe(const char *key, const char *variant, bool measured) {
    if (!observer) return;
    tw_tune_seen *seen = observer->seen;
    int at = 0;
    while (at < observer->count && strcmp(seen[at].key, key) != 0) at++;
    if (at < observer->count && !measured) return;
    if (at == observer->count) {
        if (observer->count == TW_TUNE_SEEN_MAX) return;
        observer->count++;
    }
    snprintf(seen[at].key, sizeof seen[at].key, "%s", key);
    snprintf(seen[at].variant, sizeof seen[at].variant, "%s", variant);
    seen[at].measured = measured;
}

/* A cleared cache (--retune): what was only read from it is no longer a choice. */
static void observe_clear(void) {
    if (!observer) return;
    int kept = 0;
    for (int i = 0; i < observer->count; i++)
        if (observer->seen[i].measured) observer->seen[kept++] = observer->seen[i];
    observer->count = kept;
}

/* A single word: printable, no spaces, below TUNE_WORD characters. */
static bool is_word(const char *text) {
    size_t length = strlen(text);
    if (length == 0 || length >= TUNE_WORD) return false;
    for (size_t i = 0; i < length; i++)
        if (text[i] <= ' ' || text[i] > '~') return false;
    return true;
}

/* The driver string as stored: newlines would break the line format, so they become spaces. */
static void copy_driver(char *out, const char *driver) {
    snprintf(out, TUNE_DRIVER, "%s", driver ? driver : "");
    for (char *p = out; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
}

static int find(const tw_tune_cache *cache, const char *key) {
    for (int i = 0; i < cache->count; i++)
        if (strcmp(cache->entries[i].key, key) == 0) return i;
    return -1;
}

/* Parses the file's text into the cache; false (entries dropped) when any check fails, with
 * *why saying which. */
static bool parse(tw_tune_cache *cache, char *text, size_t size, const char **why) {
    /* The checksum is the last line: find where it starts. */
    size_t end = size;
    while (end > 0 && text[end - 1] == '\n') end--;
    size_t start = end;
    while (start > 0 && text[start - 1] != '\n') start--;
    const char *sum_line = strncmp(text + start, "checksum ", 9) == 0 ? text + start : NULL;
    if (!sum_line) return *why = "it has no checksum line", false;
    uint64_t stored = 0;
    if (sscanf(sum_line, "checksum %16" SCNx64, &stored) != 1 ||
        tw_fnv1a64(TW_FNV1A_INIT, text, (size_t)(sum_line - text)) != stored)
        return *why = "its checksum does not match its contents", false;
    text[sum_line - text] = '\0';
    char *save = NULL;
    char *line = strtok_r(text, "\n", &save);
    if (!line || strcmp(line, tune_magic) != 0) return *why = "its header is not \"twist-tune 1\"", false;
    line = strtok_r(NULL, "\n", &save);
    if (!line || strncmp(line, "driver ", 7) != 0) return *why = "it has no driver line", false;
    if (strcmp(line + 7, cache->driver) != 0) {
        tw_note("ignoring the tuning cache %s: it was written for driver \"%s\", this is \"%s\"; "
                "shapes will be tuned again", cache->path, line + 7, cache->driver);
        *why = NULL;
        return false;
    }
    while ((line = strtok_r(NULL, "\n", &save))) {
        char key[TUNE_WORD + 1], op_class[TUNE_WORD + 1], variant[TUNE_WORD + 1], extra[2];
        /* "<op> <class> <variant>": the key is "<op> <class>". */
        if (sscanf(line, "%96s %96s %96s %1s", key, op_class, variant, extra) != 3)
            return *why = "a line is not \"<op> <class> <variant>\"", false;
        char full[2 * TUNE_WORD + 2];
        snprintf(full, sizeof full, "%s %s", key, op_class);
        if (strlen(full) >= TUNE_WORD || !is_word(variant) || cache->count == TUNE_MAX_ENTRIES)
            return *why = "an entry is too long or there are too many", false;
        int at = find(cache, full);
        if (at < 0) at = cache->count++;
        snprintf(cache->entries[at].key, TUNE_WORD, "%s", full);
        snprintf(cache->entries[at].variant, TUNE_WORD, "%s", variant);
    }
    return true;
}

static void load(tw_tune_cache *cache) {
    if (!cache->path[0] || access(cache->path, F_OK) != 0) return;
    char *text = NULL;
    size_t size = 0;
    if (tw_read_file(cache->path, &text, &size) != TW_OK) {
        tw_note("ignoring the tuning cache %s: %s", cache->path, tw_last_error());
        return;
    }
    const char *why = NULL;
    if (!parse(cache, text, size, &why)) {
        cache->count = 0;
        if (why) tw_note("ignoring the tuning cache %s: %s; shapes will be tuned again",
                         cache->path, why);
    }
    free(text);
}

tw_tune_cache *tw_tune_cache_open(const char *backend, const char *identity, const char *driver) {
    tw_tune_cache *cache = calloc(1, sizeof *cache);
    if (!cache) return NULL;
    cache->entries = calloc(TUNE_MAX_ENTRIES, sizeof *cache->entries);
    if (!cache->entries) {
        free(cache);
        return NULL;
    }
    copy_driver(cache->driver, driver);
    char dir[3800];
    if (tw_user_cache_dir(dir, sizeof dir)) {
        const char *id = identity ? identity : "";
        uint64_t hash = tw_fnv1a64(TW_FNV1A_INIT, id, strlen(id));
        int written = snprintf(cache->path, sizeof cache->path, "%s/tune-%s-%016" PRIx64 ".txt",
                               dir, backend ? backend : "backend", hash);
        if (written < 0 || (size_t)written >= sizeof cache->path) cache->path[0] = '\0';
    }
    load(cache);
    for (int i = 0; i < cache->count; i++)
        observe(cache->entries[i].key, cache->entries[i].variant, false);
    return cache;
}

void tw_tune_cache_close(tw_tune_cache *cache) {
    if (!cache) return;
    free(cache->entries);
    free(cache);
}

const char *tw_tune_cache_get(const tw_tune_cache *cache, const char *key) {
    if (!cache || !key) return NULL;
    int at = find(cache, key);
    if (at < 0) return NULL;
    observe(key, cache->entries[at].variant, false);
    return cache->entries[at].variant;
}

const char *tw_tune_cache_path(const tw_tune_cache *cache) { return cache ? cache->path : ""; }

/* The whole file, written to a temporary name and renamed over the old one. */
static bool save(const tw_tune_cache *cache) {
    if (!cache->path[0]) return false;
    size_t capacity = 64 + TUNE_DRIVER + (size_t)cache->count * (2 * TUNE_WORD + 2);
    char *text = malloc(capacity);
    if (!text) return false;
    size_t length = (size_t)snprintf(text, capacity, "%s\ndriver %s\n", tune_magic, cache->driver);
    for (int i = 0; i < cache->count; i++)
        length += (size_t)snprintf(text + length, capacity - length, "%s %s\n",
                                   cache->entries[i].key, cache->entries[i].variant);
    uint64_t sum = tw_fnv1a64(TW_FNV1A_INIT, text, length);
    length += (size_t)snprintf(text + length, capacity - length, "checksum %016" PRIx64 "\n", sum);

    char dir[4096];
    snprintf(dir, sizeof dir, "%s", cache->path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0';
    char temp[4200];
    /* Unique per process and per call: two threads of one process (IST workers on two devices
     * of one backend) may save at the same moment. */
    static _Atomic unsigned long saves;
    unsigned long serial = saves++;
    snprintf(temp, sizeof temp, "%s.tmp.%ld.%lu", cache->path, (long)getpid(), serial);
    bool ok = slash && tw_make_dirs(dir);
    FILE *file = ok ? fopen(temp, "wb") : NULL;
    ok = file && fwrite(text, 1, length, file) == length;
    if (file) ok = (fclose(file) == 0) && ok;
    if (file && (!ok || rename(temp, cache->path) != 0)) {
        remove(temp);
        ok = false;
    }
    free(text);
    return ok;
}

bool tw_tune_cache_put(tw_tune_cache *cache, const char *key, const char *variant) {
    if (!cache || !key || !variant || strlen(key) >= TUNE_WORD || !is_word(variant)) return false;
    /* The key is "<op> <class>": exactly one space, words on both sides. */
    const char *space = strchr(key, ' ');
    if (!space || space == key || !space[1] || strchr(space + 1, ' ')) return false;
    char op[TUNE_WORD];
    snprintf(op, sizeof op, "%.*s", (int)(space - key), key);
    if (!is_word(op) || !is_word(space + 1)) return false;
    int at = find(cache, key);
    if (at < 0) {
        if (cache->count == TUNE_MAX_ENTRIES) return false;
        at = cache->count++;
    }
    snprintf(cache->entries[at].key, TUNE_WORD, "%s", key);
    snprintf(cache->entries[at].variant, TUNE_WORD, "%s", variant);
    observe(key, variant, true);
    return save(cache);
}

void tw_tune_cache_clear(tw_tune_cache *cache) {
    if (!cache) return;
    cache->count = 0;
    observe_clear();
    if (cache->path[0] && remove(cache->path) != 0 && errno != ENOENT)
        tw_note("could not remove the tuning cache %s: %s", cache->path, strerror(errno));
}

tw_tune_mode tw_tune_mode_from_env(void) {
    const char *mode = getenv("TWIST_TUNE");
    if (!mode || !*mode || strcmp(mode, "auto") == 0) return TW_TUNE_MODE_AUTO;
    if (strcmp(mode, "off") == 0) return TW_TUNE_MODE_OFF;
    if (strcmp(mode, "verbose") == 0) return TW_TUNE_MODE_VERBOSE;
    static _Thread_local bool warned;
    if (!warned) tw_note("TWIST_TUNE=%s is not auto, off or verbose; tuning as auto", mode);
    warned = true;
    return TW_TUNE_MODE_AUTO;
}
