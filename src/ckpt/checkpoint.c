/* Checkpoint directories: five checksummed files saved atomically (layout in
 * include/twist/checkpoint.h).
 *
 * Save, and what a crash at each point leaves (DIR is the target, P our pid):
 *
 *  1. Write every file into a fresh DIR.tmp-P (O_EXCL), fsync each, checksums.json last, then
 *     fsync DIR.tmp-P.
 *       crash: DIR untouched (the previous checkpoint, or nothing), DIR.tmp-P partial or
 *       complete. Loading DIR returns the previous checkpoint; the leftover is removed by the
 *       next successful save into DIR (once process P has exited).
 *  2. If DIR exists, rename it to DIR.old-P.
 *       crash: DIR missing, DIR.old-P the previous complete checkpoint, DIR.tmp-P the new
 *       complete one. Loading DIR fails with TW_ERR_NOT_FOUND naming both and saying which are
 *       complete; tw_checkpoint_recover() renames the newest complete one (DIR.tmp-P) to DIR.
 *  3. Rename DIR.tmp-P to DIR, fsync the parent directory.
 *       crash: DIR is the new complete checkpoint; DIR.old-P is a leftover removed later.
 *  4. Remove DIR.old-P, then leftovers DIR.tmp-Q / DIR.old-Q of exited processes Q.
 *
 * Each rename is atomic on POSIX file systems, and both directories' contents were fsync'ed
 * before the first rename, so after a power failure the file system shows one of the states
 * above, never a DIR with torn files. Loading re-verifies sizes and SHA-256 of every file anyway,
 * so a torn or corrupted file is reported, never used.
 *
 * Removal only ever deletes what twist wrote: in DIR.tmp-* (names private to twist) any regular
 * file, elsewhere only the five standard names and the files listed in that directory's
 * checksums.json; a directory with anything else in it is left in place. An existing DIR that
 * is neither empty nor a twist checkpoint is never replaced. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "ckpt/ckpt_internal.h"
#include "core/backend_impl.h"

int tw_ckpt_test_crash_point = TW_CKPT_CRASH_NONE;

#define CKPT_FORMAT "twist-checkpoint"
#define CKPT_VERSION 1
#define CHECKSUMS_NAME "checksums.json"

enum { STD_MODEL, STD_OPTIMIZER, STD_CONFIG, STD_STATE, STD_COUNT };
static const char *const k_std_names[STD_COUNT] = {"model.safetensors", "optimizer.safetensors",
                                                   "config.json", "state.json"};

static bool is_reserved_name(const char *name) {
    for (int i = 0; i < STD_COUNT; i++)
        if (strcmp(name, k_std_names[i]) == 0) return true;
    /* A run's log (twist/record.h): the run keeps its own copy and writes it into the new
     * checkpoint after each save, so the copy in a replaced checkpoint goes with it. */
    if (strcmp(name, "metrics.jsonl") == 0 || strcmp(name, "log.txt") == 0) return true;
    return strcmp(name, CHECKSUMS_NAME) == 0;
}

/* A plain file name we are willing to create or read inside a checkpoint. */
static bool is_plain_name(const char *name) {
    return name && name[0] && name[0] != '.' && !strchr(name, '/') && strlen(name) < 256;
}

static char *join(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    char *out = malloc(la + lb + 2);
    if (!out) return NULL;
    memcpy(out, a, la);
    out[la] = '/';
    memcpy(out + la + 1, b, lb + 1);
    return out;
}

static bool path_exists(const char *path) {
    struct stat st;
    return lstat(path, &st) == 0;
}

static bool process_alive(long pid) {
    if (pid <= 0) return false;
    return kill((pid_t)pid, 0) == 0 || errno == EPERM;
}

/* ------------------------------------------------------------------------------------------ */
/* Target path handling                                                                       */
/* ------------------------------------------------------------------------------------------ */

typedef struct target {
    char *dir;    /* without trailing slashes */
    char *parent; /* "." if dir has no slash */
    char *base;   /* last component (points into its own allocation) */
} target;

static void target_free(target *t) {
    free(t->dir);
    free(t->parent);
    free(t->base);
}

static tw_status target_parse(const char *dir, target *t) {
    memset(t, 0, sizeof *t);
    if (!dir || !dir[0])
        return tw_error(TW_ERR_INVALID_ARGUMENT, "checkpoint: the directory name is empty");
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/') len--;
    t->dir = malloc(len + 1);
    if (!t->dir) return tw_error(TW_ERR_OUT_OF_MEMORY, "checkpoint: no memory");
    memcpy(t->dir, dir, len);
    t->dir[len] = '\0';
    const char *slash = strrchr(t->dir, '/');
    const char *base = slash ? slash + 1 : t->dir;
    if (!base[0] || strcmp(base, ".") == 0 || strcmp(base, "..") == 0) {
        tw_status s = tw_error(TW_ERR_INVALID_ARGUMENT,
                               "checkpoint: '%s' does not name a directory that can be replaced "
                               "(give it by name, e.g. runs/tiny)",
                               dir);
        target_free(t);
        return s;
    }
    t->base = strdup(base);
    if (!slash) t->parent = strdup(".");
    else if (slash == t->dir) t->parent = strdup("/");
    else t->parent = strndup(t->dir, (size_t)(slash - t->dir));
    if (!t->base || !t->parent) {
        target_free(t);
        return tw_error(TW_ERR_OUT_OF_MEMORY, "checkpoint: no memory");
    }
    return TW_OK;
}

/* DIR.tmp-<pid> or DIR.old-<pid>. */
static char *sibling(const target *t, const char *kind, long pid) {
    size_t size = strlen(t->dir) + 32;
    char *out = malloc(size);
    if (out) snprintf(out, size, "%s.%s-%ld", t->dir, kind, pid);
    return out;
}

/* If `name` is "<base>.tmp-<pid>" or "<base>.old-<pid>", sets *kind ('t' or 'o') and *pid. */
static bool parse_sibling(const char *base, const char *name, char *kind, long *pid) {
    size_t lb = strlen(base);
    if (strncmp(name, base, lb) != 0) return false;
    const char *rest = name + lb;
    if (strncmp(rest, ".tmp-", 5) == 0) *kind = 't';
    else if (strncmp(rest, ".old-", 5) == 0) *kind = 'o';
    else return false;
    rest += 5;
    if (!*rest) return false;
    long value = 0;
    for (; *rest; rest++) {
        if (*rest < '0' || *rest > '9' || value > 100000000000L) return false;
        value = value * 10 + (*rest - '0');
    }
    *pid = value;
    return true;
}

static tw_status make_parents(const char *path) {
    char *copy = strdup(path);
    if (!copy) return tw_error(TW_ERR_OUT_OF_MEMORY, "checkpoint: no memory");
    for (char *p = copy + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char saved = *p;
            *p = '\0';
            if (mkdir(copy, 0755) != 0 && errno != EEXIST) {
                tw_status s = tw_error(TW_ERR_IO, "%s: cannot create directory: %s", copy,
                                       strerror(errno));
                free(copy);
                return s;
            }
            *p = saved;
            if (!saved) break;
        }
    }
    free(copy);
    return TW_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* checksums.json                                                                             */
/* ------------------------------------------------------------------------------------------ */

/* Parses DIR/checksums.json (text already read). Returns the "files" object inside *root. */
static tw_status parse_checksums(const char *path, const char *text, cJSON **root,
                                 const cJSON **files) {
    *root = cJSON_Parse(text);
    if (!*root) return tw_error(TW_ERR_FORMAT, "%s: not valid JSON", path);
    const cJSON *format = cJSON_GetObjectItemCaseSensitive(*root, "format");
    const cJSON *version = cJSON_GetObjectItemCaseSensitive(*root, "version");
    *files = cJSON_GetObjectItemCaseSensitive(*root, "files");
    tw_status s = TW_OK;
    if (!cJSON_IsString(format) || strcmp(format->valuestring, CKPT_FORMAT) != 0)
        s = tw_error(TW_ERR_FORMAT, "%s: field 'format' is not \"" CKPT_FORMAT "\"", path);
    else if (!cJSON_IsNumber(version) || version->valuedouble != CKPT_VERSION)
        s = tw_error(TW_ERR_UNSUPPORTED, "%s: field 'version' is not %d (written by another twist "
                     "version?)", path, CKPT_VERSION);
    else if (!cJSON_IsObject(*files))
        s = tw_error(TW_ERR_FORMAT, "%s: field 'files' is missing or not an object", path);
    if (s != TW_OK) {
        cJSON_Delete(*root);
        *root = NULL;
    }
    return s;
}

/* Whether `name` is listed in DIR/checksums.json (for safe removal). */
static bool listed_in(const cJSON *files, const char *name) {
    return files && cJSON_GetObjectItemCaseSensitive(files, name) != NULL;
}

/* Removes a directory twist wrote (see the top of this file). `any_file`: every regular file
 * may go (DIR.tmp-*); otherwise only standard and listed names. checksums.json goes last, so an
 * interrupted removal can be finished later. */
static tw_status remove_ckpt_dir(const char *path, bool any_file) {
    cJSON *root = NULL;
    const cJSON *files = NULL;
    char *sums_path = join(path, CHECKSUMS_NAME);
    if (!sums_path) return tw_error(TW_ERR_OUT_OF_MEMORY, "checkpoint: no memory");
    uint8_t *text;
    size_t size;
    if (tw_ckpt_read_file(sums_path, &text, &size) == TW_OK) {
        if (parse_checksums(sums_path, (const char *)text, &root, &files) != TW_OK) files = NULL;
        free(text);
    }
    tw_status status = TW_OK;
    DIR *d = opendir(path);
    if (!d) {
        status = tw_error(TW_ERR_IO, "%s: cannot open directory: %s", path, strerror(errno));
        goto done;
    }
    struct dirent *entry;
    while ((entry = readdir(d)) != NULL) {
        const char *name = entry->d_name;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0 ||
            strcmp(name, CHECKSUMS_NAME) == 0)
            continue;
        if (!any_file && !is_reserved_name(name) && !listed_in(files, name)) continue;
        char *file = join(path, name);
        struct stat st;
        if (file && lstat(file, &st) == 0 && S_ISREG(st.st_mode)) unlink(file);
        free(file);
    }
    closedir(d);
    unlink(sums_path);
    if (rmdir(path) != 0)
        status = tw_error(TW_ERR_IO, "%s: cannot remove directory: %s", path, strerror(errno));
done:
    cJSON_Delete(root);
    free(sums_path);
    return status;
}

/* Whether DIR may be replaced: empty, or it has a checksums.json of our format. */
static tw_status check_replaceable(const char *dir) {
    struct stat st;
    if (lstat(dir, &st) != 0) return TW_OK;
    if (S_ISLNK(st.st_mode))
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "%s: is a symbolic link; give the checkpoint directory itself", dir);
    if (!S_ISDIR(st.st_mode))
        return tw_error(TW_ERR_INVALID_ARGUMENT, "%s: exists and is not a directory", dir);
    char *sums = join(dir, CHECKSUMS_NAME);
    if (!sums) return tw_error(TW_ERR_OUT_OF_MEMORY, "checkpoint: no memory");
    uint8_t *text;
    size_t size;
    bool ours = false;
    if (tw_ckpt_read_file(sums, &text, &size) == TW_OK) {
        cJSON *root;
        const cJSON *files;
        ours = parse_checksums(sums, (const char *)text, &root, &files) == TW_OK;
        cJSON_Delete(root);
        free(text);
    }
    free(sums);
    if (ours) return TW_OK;
    DIR *d = opendir(dir);
    if (!d) return tw_error(TW_ERR_IO, "%s: cannot open directory: %s", dir, strerror(errno));
    bool empty = true;
    struct dirent *entry;
    while ((entry = readdir(d)) != NULL)
        if (strcmp(entry->d_name, ".") != 0 && strcmp(entry->d_name, "..") != 0) empty = false;
    closedir(d);
    if (!empty)
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "%s: exists and is not a twist checkpoint (no valid checksums.json); "
                        "refusing to replace it",
                        dir);
    return TW_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Writer                                                                                     */
/* ------------------------------------------------------------------------------------------ */

typedef struct extra_file {
    char *name;
    uint8_t *bytes;
    size_t size;
} extra_file;

struct tw_checkpoint_writer {
    tw_safetensors_writer *parts[2];
    char *config, *state;
    extra_file *extras;
    int extra_count;
};

tw_status tw_checkpoint_writer_create(tw_checkpoint_writer **out) {
    if (!out) return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_checkpoint_writer_create: out is NULL");
    *out = NULL;
    tw_checkpoint_writer *w = calloc(1, sizeof *w);
    if (!w) return tw_error(TW_ERR_OUT_OF_MEMORY, "tw_checkpoint_writer_create: no memory");
    tw_status s = tw_safetensors_writer_create(&w->parts[0]);
    if (s == TW_OK) s = tw_safetensors_writer_create(&w->parts[1]);
    if (s != TW_OK) {
        tw_checkpoint_writer_destroy(w);
        return s;
    }
    *out = w;
    return TW_OK;
}

void tw_checkpoint_writer_destroy(tw_checkpoint_writer *writer) {
    if (!writer) return;
    tw_safetensors_writer_destroy(writer->parts[0]);
    tw_safetensors_writer_destroy(writer->parts[1]);
    free(writer->config);
    free(writer->state);
    for (int i = 0; i < writer->extra_count; i++) {
        free(writer->extras[i].name);
        free(writer->extras[i].bytes);
    }
    free(writer->extras);
    free(writer);
}

static tw_status check_part(const void *writer, tw_ckpt_part part) {
    if (!writer) return tw_error(TW_ERR_INVALID_ARGUMENT, "checkpoint: writer is NULL");
    if (part != TW_CKPT_MODEL && part != TW_CKPT_OPTIMIZER)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "checkpoint: part %d is neither TW_CKPT_MODEL "
                        "nor TW_CKPT_OPTIMIZER", (int)part);
    return TW_OK;
}

tw_status tw_checkpoint_writer_add(tw_checkpoint_writer *writer, tw_ckpt_part part,
                                   const char *name, int ndim, const int64_t *dims,
                                   const float *data) {
    tw_status s = check_part(writer, part);
    return s != TW_OK ? s : tw_safetensors_writer_add(writer->parts[part], name, ndim, dims, data);
}

tw_status tw_checkpoint_writer_add_copy(tw_checkpoint_writer *writer, tw_ckpt_part part,
                                        const char *name, int ndim, const int64_t *dims,
                                        const float *data) {
    tw_status s = check_part(writer, part);
    return s != TW_OK ? s
                      : tw_safetensors_writer_add_copy(writer->parts[part], name, ndim, dims, data);
}

tw_status tw_checkpoint_writer_set_metadata(tw_checkpoint_writer *writer, tw_ckpt_part part,
                                            const char *key, const char *value) {
    tw_status s = check_part(writer, part);
    return s != TW_OK ? s : tw_safetensors_writer_set_metadata(writer->parts[part], key, value);
}

static tw_status set_json(char **slot, const char *json, const char *what) {
    if (!json) return tw_error(TW_ERR_INVALID_ARGUMENT, "checkpoint: %s text is NULL", what);
    cJSON *parsed = cJSON_Parse(json);
    if (!parsed)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "checkpoint: %s text is not valid JSON", what);
    cJSON_Delete(parsed);
    char *copy = strdup(json);
    if (!copy) return tw_error(TW_ERR_OUT_OF_MEMORY, "checkpoint: no memory");
    free(*slot);
    *slot = copy;
    return TW_OK;
}

tw_status tw_checkpoint_writer_set_config(tw_checkpoint_writer *writer, const char *json) {
    if (!writer) return tw_error(TW_ERR_INVALID_ARGUMENT, "checkpoint: writer is NULL");
    return set_json(&writer->config, json, "config.json");
}

tw_status tw_checkpoint_writer_set_state(tw_checkpoint_writer *writer, const char *json) {
    if (!writer) return tw_error(TW_ERR_INVALID_ARGUMENT, "checkpoint: writer is NULL");
    return set_json(&writer->state, json, "state.json");
}

tw_status tw_checkpoint_writer_add_file(tw_checkpoint_writer *writer, const char *name,
                                        const void *bytes, size_t size) {
    if (!writer || (!bytes && size))
        return tw_error(TW_ERR_INVALID_ARGUMENT, "checkpoint: writer or bytes is NULL");
    if (!is_plain_name(name) || is_reserved_name(name))
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "checkpoint: '%s' cannot be an extra file name (plain names only, not "
                        "starting with '.', not a standard checkpoint file)",
                        name ? name : "(null)");
    for (int i = 0; i < writer->extra_count; i++)
        if (strcmp(writer->extras[i].name, name) == 0)
            return tw_error(TW_ERR_INVALID_ARGUMENT, "checkpoint: extra file '%s' added twice",
                            name);
    extra_file *grown = realloc(writer->extras, (size_t)(writer->extra_count + 1) * sizeof *grown);
    if (!grown) return tw_error(TW_ERR_OUT_OF_MEMORY, "checkpoint: no memory");
    writer->extras = grown;
    extra_file *e = &writer->extras[writer->extra_count];
    e->name = strdup(name);
    e->bytes = malloc(size ? size : 1);
    e->size = size;
    if (!e->name || !e->bytes) {
        free(e->name);
        free(e->bytes);
        return tw_error(TW_ERR_OUT_OF_MEMORY, "checkpoint: no memory for extra file '%s'", name);
    }
    if (size) memcpy(e->bytes, bytes, size);
    writer->extra_count++;
    return TW_OK;
}

/* One file of the checkpoint being written: created exclusively, written, fsync'ed, recorded
 * in `files` (the "files" object of checksums.json). Either safetensors `st` or raw bytes. */
static tw_status write_member(const char *tmp, const char *name, const tw_safetensors_writer *st,
                              const void *bytes, size_t size, cJSON *files) {
    char *path = join(tmp, name);
    if (!path) return tw_error(TW_ERR_OUT_OF_MEMORY, "checkpoint: no memory");
    tw_status status = TW_OK;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        status = tw_error(TW_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
        free(path);
        return status;
    }
    tw_sha256 hash;
    tw_sha256_init(&hash);
    uint64_t written = size;
    if (st) status = tw_safetensors_write_fd(st, fd, path, &hash, &written);
    else status = tw_ckpt_write_all(fd, path, bytes, size, &hash);
    if (status == TW_OK && fsync(fd) != 0)
        status = tw_error(TW_ERR_IO, "%s: fsync failed: %s", path, strerror(errno));
    if (close(fd) != 0 && status == TW_OK)
        status = tw_error(TW_ERR_IO, "%s: close failed: %s", path, strerror(errno));
    free(path);
    if (status != TW_OK) return status;
    char hex[65];
    tw_sha256_final_hex(&hash, hex);
    cJSON *entry = cJSON_AddObjectToObject(files, name);
    if (!entry || !cJSON_AddNumberToObject(entry, "size", (double)written) ||
        !cJSON_AddStringToObject(entry, "sha256", hex))
        return tw_error(TW_ERR_OUT_OF_MEMORY, "checkpoint: no memory");
    return TW_OK;
}

static tw_status simulated_crash(int point) {
    return tw_error(TW_ERR_IO, "checkpoint: simulated crash at point %d (test hook)", point);
}

/* Writes the complete checkpoint into the fresh directory tmp (which must not exist). */
static tw_status write_tmp(const tw_checkpoint_writer *w, const char *tmp) {
    if (mkdir(tmp, 0755) != 0)
        return tw_error(TW_ERR_IO, "%s: cannot create directory: %s", tmp, strerror(errno));
    cJSON *root = cJSON_CreateObject();
    cJSON *files = NULL;
    if (!root || !cJSON_AddStringToObject(root, "format", CKPT_FORMAT) ||
        !cJSON_AddNumberToObject(root, "version", CKPT_VERSION) ||
        !cJSON_AddStringToObject(root, "algorithm", "sha256") ||
        !(files = cJSON_AddObjectToObject(root, "files"))) {
        cJSON_Delete(root);
        return tw_error(TW_ERR_OUT_OF_MEMORY, "checkpoint: no memory");
    }
    const char *state = w->state ? w->state : "{}";
    tw_status s = write_member(tmp, k_std_names[STD_MODEL], w->parts[0], NULL, 0, files);
    if (s == TW_OK && tw_ckpt_test_crash_point == TW_CKPT_CRASH_AFTER_MODEL_FILE)
        s = simulated_crash(tw_ckpt_test_crash_point);
    if (s == TW_OK)
        s = write_member(tmp, k_std_names[STD_OPTIMIZER], w->parts[1], NULL, 0, files);
    if (s == TW_OK)
        s = write_member(tmp, k_std_names[STD_CONFIG], NULL, w->config, strlen(w->config), files);
    if (s == TW_OK)
        s = write_member(tmp, k_std_names[STD_STATE], NULL, state, strlen(state), files);
    for (int i = 0; s == TW_OK && i < w->extra_count; i++)
        s = write_member(tmp, w->extras[i].name, NULL, w->extras[i].bytes, w->extras[i].size,
                         files);
    if (s == TW_OK) {
        char *text = cJSON_Print(root);
        if (!text) s = tw_error(TW_ERR_OUT_OF_MEMORY, "checkpoint: no memory");
        else {
            size_t len = strlen(text);
            text[len] = '\n'; /* replaces the NUL: a trailing newline for `cat` */
            /* Its own digest goes into a scratch object: nothing lists checksums.json. */
            cJSON *scratch = cJSON_CreateObject();
            s = scratch ? write_member(tmp, CHECKSUMS_NAME, NULL, text, len + 1, scratch)
                        : tw_error(TW_ERR_OUT_OF_MEMORY, "checkpoint: no memory");
            cJSON_Delete(scratch);
            free(text);
        }
    }
    cJSON_Delete(root);
    if (s == TW_OK) s = tw_ckpt_fsync_dir(tmp);
    return s;
}

/* Removes leftovers "<base>.tmp-Q" / "<base>.old-Q" of exited processes Q (errors ignored: the
 * new checkpoint is in place whatever happens here). */
static void remove_stale_siblings(const target *t) {
    DIR *d = opendir(t->parent);
    if (!d) return;
    struct dirent *entry;
    while ((entry = readdir(d)) != NULL) {
        char kind;
        long pid;
        if (!parse_sibling(t->base, entry->d_name, &kind, &pid)) continue;
        if (pid == (long)getpid() || process_alive(pid)) continue;
        char *path = join(t->parent, entry->d_name);
        if (path) remove_ckpt_dir(path, kind == 't');
        free(path);
    }
    closedir(d);
}

tw_status tw_checkpoint_save(const tw_checkpoint_writer *writer, const char *dir) {
    if (!writer) return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_checkpoint_save: writer is NULL");
    if (!writer->config)
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "tw_checkpoint_save: no config.json text was set (tw_checkpoint_writer_"
                        "set_config)");
    target t;
    tw_status s = target_parse(dir, &t);
    if (s != TW_OK) return s;
    char *tmp = sibling(&t, "tmp", (long)getpid());
    char *old = sibling(&t, "old", (long)getpid());
    bool moved_aside = false;
    if (!tmp || !old) {
        s = tw_error(TW_ERR_OUT_OF_MEMORY, "checkpoint: no memory");
        goto done;
    }
    s = make_parents(t.parent);
    if (s == TW_OK) s = check_replaceable(t.dir);
    if (s != TW_OK) goto done;
    /* Our own leftovers from an earlier failed save in this process. */
    if (path_exists(tmp) && (s = remove_ckpt_dir(tmp, true)) != TW_OK) goto done;
    if (path_exists(old) && (s = remove_ckpt_dir(old, false)) != TW_OK) goto done;

    s = write_tmp(writer, tmp);
    if (s != TW_OK) {
        if (tw_ckpt_test_crash_point == TW_CKPT_CRASH_NONE) {
            /* No partial output: keep the message of the first failure. */
            char message[1024];
            snprintf(message, sizeof message, "%s", tw_last_error());
            remove_ckpt_dir(tmp, true);
            tw_error(s, "%s", message);
        }
        goto done;
    }
    if (path_exists(t.dir)) {
        if (rename(t.dir, old) != 0) {
            s = tw_error(TW_ERR_IO, "%s: cannot rename it to %s: %s", t.dir, old, strerror(errno));
            remove_ckpt_dir(tmp, true);
            goto done;
        }
        moved_aside = true;
        if (tw_ckpt_test_crash_point == TW_CKPT_CRASH_AFTER_RENAME_ASIDE) {
            s = simulated_crash(tw_ckpt_test_crash_point);
            goto done;
        }
    }
    if (rename(tmp, t.dir) != 0) {
        s = tw_error(TW_ERR_IO, "%s: cannot rename %s to it: %s", t.dir, tmp, strerror(errno));
        if (moved_aside) rename(old, t.dir); /* put the previous checkpoint back */
        remove_ckpt_dir(tmp, true);
        goto done;
    }
    if (tw_ckpt_test_crash_point == TW_CKPT_CRASH_AFTER_RENAME_IN) {
        s = simulated_crash(tw_ckpt_test_crash_point);
        goto done;
    }
    s = tw_ckpt_fsync_dir(t.parent);
    if (s != TW_OK) goto done;
    /* The new checkpoint is durable: what follows only tidies up. */
    if (moved_aside) remove_ckpt_dir(old, false);
    remove_stale_siblings(&t);
    tw_clear_error();
done:
    free(tmp);
    free(old);
    target_free(&t);
    return s;
}

/* ------------------------------------------------------------------------------------------ */
/* Reader                                                                                     */
/* ------------------------------------------------------------------------------------------ */

struct tw_checkpoint {
    char *dir;
    tw_safetensors *parts[2];
    char *config, *state; /* NUL-terminated file contents */
    extra_file *extras;
    int extra_count;
};

void tw_checkpoint_close(tw_checkpoint *ckpt) {
    if (!ckpt) return;
    tw_safetensors_free(ckpt->parts[0]);
    tw_safetensors_free(ckpt->parts[1]);
    free(ckpt->config);
    free(ckpt->state);
    for (int i = 0; i < ckpt->extra_count; i++) {
        free(ckpt->extras[i].name);
        free(ckpt->extras[i].bytes);
    }
    free(ckpt->extras);
    free(ckpt->dir);
    free(ckpt);
}

/* Reads DIR/name and checks it against its checksums.json entry. */
static tw_status read_verified(const char *dir, const char *name, const cJSON *entry,
                               uint8_t **bytes, size_t *size) {
    *bytes = NULL;
    char *path = join(dir, name);
    if (!path) return tw_error(TW_ERR_OUT_OF_MEMORY, "checkpoint: no memory");
    tw_status s = TW_OK;
    const cJSON *want_size = cJSON_GetObjectItemCaseSensitive(entry, "size");
    const cJSON *want_hash = cJSON_GetObjectItemCaseSensitive(entry, "sha256");
    if (!cJSON_IsObject(entry) || !cJSON_IsNumber(want_size) || want_size->valuedouble < 0 ||
        !cJSON_IsString(want_hash) || strlen(want_hash->valuestring) != 64) {
        s = tw_error(TW_ERR_FORMAT,
                     "%s/" CHECKSUMS_NAME ": entry '%s' lacks a valid 'size' or 'sha256'", dir,
                     name);
        goto done;
    }
    s = tw_ckpt_read_file(path, bytes, size);
    if (s == TW_ERR_NOT_FOUND) {
        s = tw_error(TW_ERR_FORMAT, "%s: missing (listed in " CHECKSUMS_NAME ")", path);
        goto done;
    }
    if (s != TW_OK) goto done;
    if ((double)*size != want_size->valuedouble) {
        s = tw_error(TW_ERR_FORMAT, "%s: size is %zu bytes but " CHECKSUMS_NAME " says %.0f "
                     "(truncated or replaced)", path, *size, want_size->valuedouble);
        goto done;
    }
    tw_sha256 hash;
    tw_sha256_init(&hash);
    tw_sha256_update(&hash, *bytes, *size);
    char hex[65];
    tw_sha256_final_hex(&hash, hex);
    if (strcmp(hex, want_hash->valuestring) != 0)
        s = tw_error(TW_ERR_FORMAT, "%s: SHA-256 checksum mismatch: the file is corrupted "
                     "(expected %s, got %s)", path, want_hash->valuestring, hex);
done:
    if (s != TW_OK) {
        free(*bytes);
        *bytes = NULL;
    }
    free(path);
    return s;
}

/* Opens an existing checkpoint directory (no sibling search). */
static tw_status open_dir(const char *dir, tw_checkpoint **out) {
    *out = NULL;
    tw_checkpoint *c = calloc(1, sizeof *c);
    char *sums_path = join(dir, CHECKSUMS_NAME);
    if (!c || !sums_path || !(c->dir = strdup(dir))) {
        free(sums_path);
        tw_checkpoint_close(c);
        return tw_error(TW_ERR_OUT_OF_MEMORY, "checkpoint: no memory");
    }
    cJSON *root = NULL;
    const cJSON *files = NULL;
    uint8_t *text;
    size_t size;
    tw_status s = tw_ckpt_read_file(sums_path, &text, &size);
    if (s == TW_ERR_NOT_FOUND)
        s = tw_error(TW_ERR_FORMAT, "%s: missing: %s is not a complete twist checkpoint",
                     sums_path, dir);
    if (s != TW_OK) goto done;
    s = parse_checksums(sums_path, (const char *)text, &root, &files);
    free(text);
    if (s != TW_OK) goto done;
    for (int i = 0; i < STD_COUNT; i++)
        if (!listed_in(files, k_std_names[i])) {
            s = tw_error(TW_ERR_FORMAT, "%s: does not list %s", sums_path, k_std_names[i]);
            goto done;
        }
    /* Every listed file is verified before anything is parsed. */
    const cJSON *entry;
    cJSON_ArrayForEach(entry, files) {
        const char *name = entry->string;
        if (!is_plain_name(name) || strcmp(name, CHECKSUMS_NAME) == 0) {
            s = tw_error(TW_ERR_FORMAT, "%s: lists an invalid file name '%s'", sums_path, name);
            goto done;
        }
        uint8_t *bytes;
        s = read_verified(dir, name, entry, &bytes, &size);
        if (s != TW_OK) goto done;
        char *path = join(dir, name);
        if (!path) {
            free(bytes);
            s = tw_error(TW_ERR_OUT_OF_MEMORY, "checkpoint: no memory");
            goto done;
        }
        if (strcmp(name, k_std_names[STD_MODEL]) == 0 ||
            strcmp(name, k_std_names[STD_OPTIMIZER]) == 0) {
            int part = strcmp(name, k_std_names[STD_MODEL]) == 0 ? 0 : 1;
            s = tw_safetensors_parse(path, bytes, size, &c->parts[part]);
        } else if (strcmp(name, k_std_names[STD_CONFIG]) == 0 ||
                   strcmp(name, k_std_names[STD_STATE]) == 0) {
            cJSON *parsed = cJSON_Parse((const char *)bytes);
            if (!parsed || strlen((const char *)bytes) != size) {
                s = tw_error(TW_ERR_FORMAT, "%s: not valid JSON", path);
                free(bytes);
            } else if (strcmp(name, k_std_names[STD_CONFIG]) == 0) {
                c->config = (char *)bytes;
            } else {
                c->state = (char *)bytes;
            }
            cJSON_Delete(parsed);
        } else {
            extra_file *grown = realloc(c->extras, (size_t)(c->extra_count + 1) * sizeof *grown);
            if (!grown || !(grown[c->extra_count].name = strdup(name))) {
                if (grown) c->extras = grown;
                free(bytes);
                s = tw_error(TW_ERR_OUT_OF_MEMORY, "checkpoint: no memory");
            } else {
                c->extras = grown;
                c->extras[c->extra_count].bytes = bytes;
                c->extras[c->extra_count].size = size;
                c->extra_count++;
            }
        }
        free(path);
        if (s != TW_OK) goto done;
    }
done:
    cJSON_Delete(root);
    free(sums_path);
    if (s != TW_OK) {
        tw_checkpoint_close(c);
        return s;
    }
    *out = c;
    return TW_OK;
}

/* Leftovers of interrupted saves beside a missing DIR. */
typedef struct candidate {
    char *path;
    char kind; /* 't' (newer, complete once checksums verify) or 'o' (previous) */
    long pid;
    bool complete;
    time_t mtime;
} candidate;

static int find_candidates(const target *t, candidate **out) {
    *out = NULL;
    int count = 0;
    DIR *d = opendir(t->parent);
    if (!d) return 0;
    struct dirent *entry;
    while ((entry = readdir(d)) != NULL) {
        char kind;
        long pid;
        if (!parse_sibling(t->base, entry->d_name, &kind, &pid)) continue;
        candidate *grown = realloc(*out, (size_t)(count + 1) * sizeof *grown);
        if (!grown) break;
        *out = grown;
        candidate *c = &grown[count];
        c->path = join(t->parent, entry->d_name);
        if (!c->path) break;
        c->kind = kind;
        c->pid = pid;
        struct stat st;
        c->mtime = stat(c->path, &st) == 0 ? st.st_mtime : 0;
        tw_checkpoint *probe;
        c->complete = open_dir(c->path, &probe) == TW_OK;
        tw_checkpoint_close(probe);
        count++;
    }
    closedir(d);
    return count;
}

static void free_candidates(candidate *list, int count) {
    for (int i = 0; i < count; i++) free(list[i].path);
    free(list);
}

/* The newest complete candidate not being written right now: a tmp (written after the old one
 * was saved) before an old; the latest directory time among equals. -1 if none. A candidate of
 * another live process may be a save in progress and is skipped; one of this process is a
 * leftover of an earlier save of ours (saving and recovering the same DIR from two threads at
 * once is not supported). */
static int best_candidate(const candidate *list, int count) {
    int best = -1;
    for (int i = 0; i < count; i++) {
        if (!list[i].complete) continue;
        if (list[i].pid != (long)getpid() && process_alive(list[i].pid)) continue;
        if (best < 0 || (list[i].kind == 't' && list[best].kind == 'o') ||
            (list[i].kind == list[best].kind && list[i].mtime > list[best].mtime))
            best = i;
    }
    return best;
}

tw_status tw_checkpoint_open(const char *dir, tw_checkpoint **out) {
    if (!out) return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_checkpoint_open: out is NULL");
    *out = NULL;
    target t;
    tw_status s = target_parse(dir, &t);
    if (s != TW_OK) return s;
    struct stat st;
    if (stat(t.dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode))
            s = tw_error(TW_ERR_FORMAT, "%s: is not a checkpoint directory", t.dir);
        else s = open_dir(t.dir, out);
        target_free(&t);
        return s;
    }
    /* DIR is missing: name what an interrupted save left beside it. */
    candidate *list;
    int count = find_candidates(&t, &list);
    char message[900];
    size_t used = (size_t)snprintf(message, sizeof message, "%s: no such checkpoint directory",
                                   t.dir);
    if (count > 0) {
        used += (size_t)snprintf(message + used, used < sizeof message ? sizeof message - used : 0,
                                 "; an interrupted save left");
        for (int i = 0; i < count && used < sizeof message; i++)
            used += (size_t)snprintf(message + used, sizeof message - used, "%s %s (%s%s)",
                                     i ? "," : "", list[i].path,
                                     list[i].complete ? "complete" : "incomplete or damaged",
                                     !list[i].complete ? ""
                                     : list[i].kind == 't' ? ", the newer checkpoint"
                                                           : ", the previous checkpoint");
        int best = best_candidate(list, count);
        if (best >= 0 && used < sizeof message)
            snprintf(message + used, sizeof message - used,
                     "; tw_checkpoint_recover() (or `mv %s %s`) restores the newest complete one",
                     list[best].path, t.dir);
    }
    free_candidates(list, count);
    target_free(&t);
    return tw_error(TW_ERR_NOT_FOUND, "%s", message);
}

tw_status tw_checkpoint_recover(const char *dir) {
    target t;
    tw_status s = target_parse(dir, &t);
    if (s != TW_OK) return s;
    if (path_exists(t.dir)) {
        target_free(&t);
        return TW_OK;
    }
    candidate *list;
    int count = find_candidates(&t, &list);
    int best = best_candidate(list, count);
    if (best < 0) s = tw_error(TW_ERR_NOT_FOUND, "%s: no such checkpoint directory and no "
                               "complete checkpoint left beside it to recover", t.dir);
    else if (rename(list[best].path, t.dir) != 0)
        s = tw_error(TW_ERR_IO, "%s: cannot rename %s to it: %s", t.dir, list[best].path,
                     strerror(errno));
    else s = tw_ckpt_fsync_dir(t.parent);
    free_candidates(list, count);
    target_free(&t);
    return s;
}

tw_status tw_checkpoint_tensor(const tw_checkpoint *ckpt, tw_ckpt_part part, const char *name,
                               tw_tensor_view *out) {
    tw_status s = check_part(ckpt, part);
    return s != TW_OK ? s : tw_safetensors_find(ckpt->parts[part], name, out);
}

tw_status tw_checkpoint_expect(const tw_checkpoint *ckpt, tw_ckpt_part part, const char *name,
                               int ndim, const int64_t *dims, const float **data) {
    tw_status s = check_part(ckpt, part);
    if (s != TW_OK) return s;
    if (!name || ndim < 0 || ndim > TW_TENSOR_MAX_DIMS || (ndim > 0 && !dims))
        return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_checkpoint_expect: bad name or shape");
    tw_tensor_view view;
    s = tw_safetensors_find(ckpt->parts[part], name, &view);
    if (s == TW_ERR_NOT_FOUND) s = TW_ERR_FORMAT; /* a checkpoint lacking a tensor is corrupt */
    if (s != TW_OK) return s;                     /* the message names file and tensor */
    bool same = view.ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = view.dims[i] == dims[i];
    if (!same) {
        char have[200], want[200];
        size_t uh = (size_t)snprintf(have, sizeof have, "[");
        for (int i = 0; i < view.ndim && uh < sizeof have; i++)
            uh += (size_t)snprintf(have + uh, sizeof have - uh, "%s%lld", i ? ", " : "",
                                   (long long)view.dims[i]);
        if (uh < sizeof have) snprintf(have + uh, sizeof have - uh, "]");
        size_t uw = (size_t)snprintf(want, sizeof want, "[");
        for (int i = 0; i < ndim && uw < sizeof want; i++)
            uw += (size_t)snprintf(want + uw, sizeof want - uw, "%s%lld", i ? ", " : "",
                                   (long long)dims[i]);
        if (uw < sizeof want) snprintf(want + uw, sizeof want - uw, "]");
        return tw_error(TW_ERR_FORMAT, "%s: tensor '%s' has shape %s, config expects %s",
                        tw_safetensors_path(ckpt->parts[part]), name, have, want);
    }
    if (data) *data = view.data;
    return TW_OK;
}

const tw_safetensors *tw_checkpoint_safetensors(const tw_checkpoint *ckpt, tw_ckpt_part part) {
    if (!ckpt || (part != TW_CKPT_MODEL && part != TW_CKPT_OPTIMIZER)) return NULL;
    return ckpt->parts[part];
}

const char *tw_checkpoint_config_json(const tw_checkpoint *ckpt) {
    return ckpt ? ckpt->config : NULL;
}

const char *tw_checkpoint_state_json(const tw_checkpoint *ckpt) {
    return ckpt ? ckpt->state : NULL;
}

tw_status tw_checkpoint_file(const tw_checkpoint *ckpt, const char *name, const void **bytes,
                             size_t *size) {
    if (!ckpt || !name)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_checkpoint_file: NULL argument");
    for (int i = 0; i < ckpt->extra_count; i++)
        if (strcmp(ckpt->extras[i].name, name) == 0) {
            if (bytes) *bytes = ckpt->extras[i].bytes;
            if (size) *size = ckpt->extras[i].size;
            return TW_OK;
        }
    return tw_error(TW_ERR_NOT_FOUND, "%s: the checkpoint has no file '%s'", ckpt->dir, name);
}

const char *tw_checkpoint_dir(const tw_checkpoint *ckpt) { return ckpt ? ckpt->dir : NULL; }
