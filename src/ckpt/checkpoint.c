/* Checkpoint directories: checksummed files saved atomically (layout in
 * include/twist/checkpoint.h).
 *
 * DIR is a directory the user owns and twist writes into; it is never renamed or replaced as a
 * whole, so files of the user's beside the checkpoint (NOTES.txt, plots/, a run's log) stay where
 * they are. twist's files in DIR are the standard names, the files listed in DIR/checksums.json,
 * its lock file .twist-lock and the directories it makes there (each holding a marker file
 * .twist-marker that twist writes first):
 *
 *   DIR/.twist-save-<pid>/   a save in progress (or interrupted)
 *   DIR/.twist-snap-<pid>/   a snapshot in progress (or interrupted)
 *   DIR/step-<9 digits>/     a kept checkpoint (--keep), hard links to DIR's files of that save
 *
 * Save, and what a crash at each point leaves (P our pid):
 *
 *  1. Write the marker, then every file into a fresh DIR/.twist-save-P (O_EXCL), fsync each,
 *     checksums.json last, then fsync the directory. With checksums.json in place the save is
 *     committed: it holds a complete checkpoint.
 *       crash before that: DIR untouched; the incomplete .twist-save-P is removed by the next
 *       save, lock or tw_checkpoint_recover() once P has exited.
 *  2. Rename each new file over DIR's file of that name, checksums.json last; fsync DIR.
 *       crash inside: DIR holds some new files under the previous checksums.json, so opening it
 *       fails with a message naming the interrupted save; the next save, lock or
 *       tw_checkpoint_recover() rolls it forward (renames the rest, checksums.json last).
 *  3. Remove files the previous checksums.json listed that the new one does not, then the marker
 *     and .twist-save-P.
 *       crash: DIR is the new checkpoint; the empty leftover goes as in 1.
 *
 * Each rename is atomic and every file was fsync'ed before the first rename, so after a power
 * failure every file of the new checkpoint is in DIR or still in .twist-save-P. Loading
 * re-verifies sizes and SHA-256 of every file anyway, so a torn file is reported, never used.
 *
 * Removal only ever deletes what is provably twist's: a directory is entered only if it matches
 * one of the name patterns above, is a real directory (never through a symbolic link: every
 * step uses O_NOFOLLOW and the directory's own descriptor), belongs to this user and holds the
 * marker file with twist's text; inside it only regular files go (in a snapshot only the files
 * its checksums.json lists), and a directory left with anything else in it stays. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "ckpt/ckpt_internal.h"
#include "twist/error.h"

int tw_ckpt_test_crash_point = TW_CKPT_CRASH_NONE;

#define CKPT_FORMAT "twist-checkpoint"
#define CKPT_VERSION 1
#define CHECKSUMS_NAME "checksums.json"
#define LOCK_NAME ".twist-lock"
#define MARKER_NAME ".twist-marker"
#define MARKER_TEXT "twist: a directory twist made; twist may remove it\n"
#define SAVE_PREFIX ".twist-save-"
#define SNAP_TMP_PREFIX ".twist-snap-"
#define SNAP_PREFIX "step-"

enum { STD_MODEL, STD_OPTIMIZER, STD_CONFIG, STD_STATE, STD_COUNT };
static const char *const k_std_names[STD_COUNT] = {"model.safetensors", "optimizer.safetensors",
                                                   "config.json", "state.json"};

/* Files a run writes beside its checkpoint (the run's log and metrics): a directory holding
 * only these and twist's own entries counts as empty. */
static const char *const k_run_files[] = {"log.txt", "metrics.jsonl"};

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

static bool process_alive(long pid) {
    if (pid <= 0 || pid > INT_MAX) return false;
    return kill((pid_t)pid, 0) == 0 || errno == EPERM;
}

/* If name is prefix followed by decimal digits only, *number gets them. */
static bool parse_numbered(const char *name, const char *prefix, long *number) {
    size_t lp = strlen(prefix);
    if (strncmp(name, prefix, lp) != 0 || !name[lp]) return false;
    long value = 0;
    for (const char *p = name + lp; *p; p++) {
        if (*p < '0' || *p > '9' || value > 100000000000L) return false;
        value = value * 10 + (*p - '0');
    }
    *number = value;
    return true;
}

/* Directory name without trailing slashes ("runs/x/" -> "runs/x"; "/" stays). */
static char *clean_dir(const char *dir) {
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/') len--;
    return strndup(dir, len);
}

static tw_status make_dirs(const char *path) {
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

/* Opens DIR itself (never through a symbolic link) as a directory descriptor. */
static tw_status open_dir_fd(const char *dir, int *fd) {
    struct stat st;
    if (lstat(dir, &st) != 0)
        return tw_error(errno == ENOENT ? TW_ERR_NOT_FOUND : TW_ERR_IO, "%s: %s", dir,
                        strerror(errno));
    if (S_ISLNK(st.st_mode))
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "%s: is a symbolic link; give the checkpoint directory itself", dir);
    if (!S_ISDIR(st.st_mode))
        return tw_error(TW_ERR_INVALID_ARGUMENT, "%s: exists and is not a directory", dir);
    *fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (*fd < 0)
        return tw_error(TW_ERR_IO, "%s: cannot open directory: %s", dir, strerror(errno));
    return TW_OK;
}

/* A listing of dirfd's entries from the start (dirfd stays open; dup()s share the position,
 * hence the rewind). NULL if it cannot be listed. */
static DIR *list_dir(int dirfd) {
    int fd = dup(dirfd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d && fd >= 0) close(fd);
    if (d) rewinddir(d);
    return d;
}

/* Reads a small regular file at dirfd/name (never through a symbolic link) with a NUL after
 * it. TW_ERR_NOT_FOUND if absent. */
static tw_status read_at(int dirfd, const char *name, const char *dir, char **text,
                         size_t *size) {
    *text = NULL;
    int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? TW_ERR_NOT_FOUND
                               : tw_error(TW_ERR_IO, "%s/%s: cannot open: %s", dir, name,
                                          strerror(errno));
    struct stat st;
    tw_status s = TW_OK;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > (64 << 20))
        s = tw_error(TW_ERR_FORMAT, "%s/%s: not a regular file of at most 64 MiB", dir, name);
    char *buf = s == TW_OK ? malloc((size_t)st.st_size + 1) : NULL;
    if (s == TW_OK && !buf) s = tw_error(TW_ERR_OUT_OF_MEMORY, "checkpoint: no memory");
    size_t got = 0;
    while (s == TW_OK && got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) s = tw_error(TW_ERR_IO, "%s/%s: read failed", dir, name);
        else got += (size_t)n;
    }
    close(fd);
    if (s != TW_OK) {
        free(buf);
        return s;
    }
    buf[got] = '\0';
    *text = buf;
    if (size) *size = got;
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
    TW_TRY(tw_json_refuse_duplicate(*root, path));
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
    if (s == TW_OK) {
        const cJSON *entry;
        cJSON_ArrayForEach(entry, *files) if (!is_plain_name(entry->string) ||
                                              strcmp(entry->string, CHECKSUMS_NAME) == 0) {
            s = tw_error(TW_ERR_FORMAT, "%s: lists an invalid file name '%s'", path,
                         entry->string);
            break;
        }
    }
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

/* The parsed checksums.json in dirfd: TW_ERR_NOT_FOUND if there is none (no message),
 * TW_ERR_FORMAT / TW_ERR_UNSUPPORTED naming the file if it is not twist's. */
static tw_status load_checksums_at(int dirfd, const char *dir, cJSON **root,
                                   const cJSON **files) {
    *root = NULL;
    *files = NULL;
    char *text = NULL;
    tw_status s = read_at(dirfd, CHECKSUMS_NAME, dir, &text, NULL);
    if (s != TW_OK) return s;
    char *path = join(dir, CHECKSUMS_NAME);
    s = path ? parse_checksums(path, text, root, files)
             : tw_error(TW_ERR_OUT_OF_MEMORY, "checkpoint: no memory");
    free(path);
    free(text);
    return s;
}

/* ------------------------------------------------------------------------------------------ */
/* Directories twist made inside DIR, and their safe removal                                  */
/* ------------------------------------------------------------------------------------------ */

/* Opens dirfd/name only if it is provably twist's: a real directory (not a symbolic link) of
 * this user holding the marker file with twist's text. -1 otherwise. */
static int open_twist_dir(int dirfd, const char *name) {
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return -1;
    struct stat st;
    char *text = NULL;
    bool ours = fstat(fd, &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == geteuid() &&
                read_at(fd, MARKER_NAME, name, &text, NULL) == TW_OK &&
                strcmp(text, MARKER_TEXT) == 0;
    free(text);
    tw_clear_error();
    if (!ours) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Removes dirfd/name if it is provably twist's (open_twist_dir): its regular files (only those
 * listed in its checksums.json and checksums.json itself when `listed_only`), the marker, then
 * the directory if that left it empty. Returns whether it is gone. */
static bool remove_twist_dir(int dirfd, const char *name, bool listed_only) {
    int fd = open_twist_dir(dirfd, name);
    if (fd < 0) return false;
    cJSON *root = NULL;
    const cJSON *files = NULL;
    if (listed_only && load_checksums_at(fd, name, &root, &files) != TW_OK) files = NULL;
    tw_clear_error();
    DIR *d = list_dir(fd);
    for (struct dirent *e; d && (e = readdir(d)) != NULL;) {
        const char *entry = e->d_name;
        if (!strcmp(entry, ".") || !strcmp(entry, "..") || !strcmp(entry, MARKER_NAME) ||
            !strcmp(entry, CHECKSUMS_NAME))
            continue;
        if (listed_only && !listed_in(files, entry)) continue;
        struct stat st;
        if (fstatat(fd, entry, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode))
            unlinkat(fd, entry, 0);
    }
    if (d) closedir(d);
    if (!listed_only || files) unlinkat(fd, CHECKSUMS_NAME, 0);
    cJSON_Delete(root);
    /* The marker goes last, and only once nothing else is left: a directory that keeps other
     * entries stays provably twist's for a later attempt. */
    bool empty = true;
    d = list_dir(fd);
    for (struct dirent *e; d && (e = readdir(d)) != NULL;)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strcmp(e->d_name, MARKER_NAME))
            empty = false;
    if (d) closedir(d);
    bool gone = false;
    if (empty && unlinkat(fd, MARKER_NAME, 0) == 0)
        gone = unlinkat(dirfd, name, AT_REMOVEDIR) == 0;
    close(fd);
    return gone;
}

/* Writes the marker file into the fresh directory dirfd/name (the first thing in it). */
static tw_status write_marker(const char *path) {
    char *marker = join(path, MARKER_NAME);
    if (!marker) return tw_error(TW_ERR_OUT_OF_MEMORY, "checkpoint: no memory");
    int fd = open(marker, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    tw_status s = TW_OK;
    if (fd < 0) s = tw_error(TW_ERR_IO, "%s: cannot create: %s", marker, strerror(errno));
    else {
        s = tw_ckpt_write_all(fd, marker, MARKER_TEXT, strlen(MARKER_TEXT), NULL);
        if (close(fd) != 0 && s == TW_OK)
            s = tw_error(TW_ERR_IO, "%s: close failed: %s", marker, strerror(errno));
    }
    free(marker);
    return s;
}

/* Moves the files of the committed save dirfd/save (listed in its checksums.json) into DIR,
 * checksums.json last, then removes what the previous checkpoint listed and the new one does
 * not, and the save directory. `old_files`: the previous checksums.json's list (may be NULL). */
static tw_status install_save(int dirfd, const char *dir, const char *save,
                              const cJSON *old_files) {
    int fd = open_twist_dir(dirfd, save);
    if (fd < 0)
        return tw_error(TW_ERR_IO, "%s/%s: the save directory vanished or is not twist's", dir,
                        save);
    cJSON *root = NULL;
    const cJSON *files = NULL;
    char where[PATH_MAX];
    snprintf(where, sizeof where, "%s/%s", dir, save);
    tw_status s = load_checksums_at(fd, where, &root, &files);
    if (s == TW_ERR_NOT_FOUND)
        s = tw_error(TW_ERR_FORMAT, "%s: incomplete save (no %s)", where, CHECKSUMS_NAME);
    const cJSON *entry;
    bool first = true;
    if (s == TW_OK) cJSON_ArrayForEach(entry, files) {
        struct stat st;
        if (fstatat(fd, entry->string, &st, AT_SYMLINK_NOFOLLOW) != 0) continue; /* moved */
        if (!S_ISREG(st.st_mode) || renameat(fd, entry->string, dirfd, entry->string) != 0) {
            s = tw_error(TW_ERR_IO, "%s: cannot move %s/%s into it: %s", dir, where,
                         entry->string, S_ISREG(st.st_mode) ? strerror(errno) : "not a file");
            break;
        }
        if (first && tw_ckpt_test_crash_point == TW_CKPT_CRASH_MID_INSTALL) {
            s = tw_error(TW_ERR_IO, "checkpoint: simulated crash at point %d (test hook)",
                         tw_ckpt_test_crash_point);
            break;
        }
        first = false;
    }
    if (s == TW_OK && renameat(fd, CHECKSUMS_NAME, dirfd, CHECKSUMS_NAME) != 0)
        s = tw_error(TW_ERR_IO, "%s: cannot move %s/%s into it: %s", dir, where, CHECKSUMS_NAME,
                     strerror(errno));
    if (s == TW_OK && fsync(dirfd) != 0)
        s = tw_error(TW_ERR_IO, "%s: fsync of the directory failed: %s", dir, strerror(errno));
    if (s == TW_OK && tw_ckpt_test_crash_point == TW_CKPT_CRASH_AFTER_INSTALL)
        s = tw_error(TW_ERR_IO, "checkpoint: simulated crash at point %d (test hook)",
                     tw_ckpt_test_crash_point);
    if (s == TW_OK) {
        /* The new checkpoint is durable: what follows only tidies up. */
        cJSON_ArrayForEach(entry, old_files) if (!listed_in(files, entry->string)) {
            struct stat st;
            if (fstatat(dirfd, entry->string, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                S_ISREG(st.st_mode))
                unlinkat(dirfd, entry->string, 0);
        }
        remove_twist_dir(dirfd, save, false);
    }
    cJSON_Delete(root);
    close(fd);
    return s;
}

/* Finishes what killed processes left in DIR: a committed .twist-save-Q is rolled forward (it
 * is the newer checkpoint), an incomplete one and any .twist-snap-Q are removed. Entries of
 * live processes other than this one are left alone (*busy_pid gets one, 0 if none). */
static tw_status finish_leftovers(int dirfd, const char *dir, long *busy_pid) {
    if (busy_pid) *busy_pid = 0;
    DIR *d = list_dir(dirfd);
    if (!d) {
        return tw_error(TW_ERR_IO, "%s: cannot list the directory: %s", dir, strerror(errno));
    }
    /* Names first: installing renames entries of the directory being listed. */
    char names[64][64];
    int count = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL && count < 64;) {
        long pid;
        if ((parse_numbered(e->d_name, SAVE_PREFIX, &pid) ||
             parse_numbered(e->d_name, SNAP_TMP_PREFIX, &pid)) &&
            strlen(e->d_name) < sizeof names[0])
            snprintf(names[count++], sizeof names[0], "%s", e->d_name);
    }
    closedir(d);
    tw_status s = TW_OK;
    for (int i = 0; i < count && s == TW_OK; i++) {
        long pid = 0;
        bool save = parse_numbered(names[i], SAVE_PREFIX, &pid);
        if (!save) parse_numbered(names[i], SNAP_TMP_PREFIX, &pid);
        if (pid != (long)getpid() && process_alive(pid)) {
            if (busy_pid) *busy_pid = pid;
            continue;
        }
        int fd = open_twist_dir(dirfd, names[i]);
        if (fd < 0) continue; /* not provably twist's: never touched */
        struct stat st;
        bool committed = save && fstatat(fd, CHECKSUMS_NAME, &st, AT_SYMLINK_NOFOLLOW) == 0;
        close(fd);
        if (!committed) {
            remove_twist_dir(dirfd, names[i], false);
            continue;
        }
        cJSON *old_root = NULL;
        const cJSON *old_files = NULL;
        load_checksums_at(dirfd, dir, &old_root, &old_files);
        tw_clear_error();
        s = install_save(dirfd, dir, names[i], old_files);
        cJSON_Delete(old_root);
    }
    return s;
}

/* ------------------------------------------------------------------------------------------ */
/* What DIR holds                                                                             */
/* ------------------------------------------------------------------------------------------ */

static bool is_twist_entry(const char *name) {
    long number;
    if (!strcmp(name, LOCK_NAME) || parse_numbered(name, SAVE_PREFIX, &number) ||
        parse_numbered(name, SNAP_TMP_PREFIX, &number))
        return true;
    for (size_t i = 0; i < sizeof k_run_files / sizeof k_run_files[0]; i++)
        if (!strcmp(name, k_run_files[i])) return true;
    return false;
}

/* Whether dirfd holds a committed save of a process that has exited (a checkpoint the next
 * writer rolls forward). */
static bool has_committed_leftover(int dirfd) {
    DIR *d = list_dir(dirfd);
    if (!d) {
        return false;
    }
    bool found = false;
    for (struct dirent *e; !found && (e = readdir(d)) != NULL;) {
        long pid;
        if (!parse_numbered(e->d_name, SAVE_PREFIX, &pid)) continue;
        int fd = open_twist_dir(dirfd, e->d_name);
        struct stat st;
        found = fd >= 0 && fstatat(fd, CHECKSUMS_NAME, &st, AT_SYMLINK_NOFOLLOW) == 0;
        if (fd >= 0) close(fd);
    }
    closedir(d);
    return found;
}

/* The rules every writer applies to DIR (dirfd): a checksums.json must be twist's; without
 * one, DIR may hold only twist's own entries and the run files (k_run_files). */
static tw_status classify(int dirfd, const char *dir, tw_ckpt_target *kind) {
    cJSON *root = NULL;
    const cJSON *files = NULL;
    tw_status s = load_checksums_at(dirfd, dir, &root, &files);
    cJSON_Delete(root);
    if (s == TW_OK) {
        *kind = TW_CKPT_TARGET_CHECKPOINT;
        return TW_OK;
    }
    if (s != TW_ERR_NOT_FOUND) {
        char message[1024];
        snprintf(message, sizeof message, "%s", tw_last_error());
        return tw_error(TW_ERR_INVALID_ARGUMENT, "%s; refusing to write checkpoints into %s "
                        "(its checksums.json is not twist's)", message, dir);
    }
    if (has_committed_leftover(dirfd)) {
        *kind = TW_CKPT_TARGET_CHECKPOINT;
        return TW_OK;
    }
    DIR *d = list_dir(dirfd);
    if (!d) {
        return tw_error(TW_ERR_IO, "%s: cannot list the directory: %s", dir, strerror(errno));
    }
    char foreign[256] = "", reserved[256] = "";
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        const char *name = e->d_name;
        if (!strcmp(name, ".") || !strcmp(name, "..") || is_twist_entry(name)) continue;
        if (is_reserved_name(name) && !reserved[0]) snprintf(reserved, sizeof reserved, "%s", name);
        if (!foreign[0]) snprintf(foreign, sizeof foreign, "%s", name);
    }
    closedir(d);
    if (reserved[0])
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "%s: holds %s but no twist checksums.json: it is not a twist checkpoint "
                        "and twist will not replace that file; choose another directory",
                        dir, reserved);
    if (foreign[0])
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "%s: holds files but no twist checkpoint (e.g. '%s'); choose a new or "
                        "empty directory (twist writes only there or over its own checkpoints, "
                        "and this is not a twist checkpoint)",
                        dir, foreign);
    *kind = TW_CKPT_TARGET_EMPTY;
    return TW_OK;
}

tw_status tw_checkpoint_probe(const char *dir, tw_ckpt_target *kind) {
    if (!dir || !dir[0] || !kind)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_checkpoint_probe: NULL or empty argument");
    *kind = TW_CKPT_TARGET_EMPTY;
    char *clean = clean_dir(dir);
    if (!clean) return tw_error(TW_ERR_OUT_OF_MEMORY, "checkpoint: no memory");
    int fd = -1;
    tw_status s = open_dir_fd(clean, &fd);
    if (s == TW_ERR_NOT_FOUND) {
        tw_clear_error();
        s = TW_OK; /* absent: created by the first writer */
    } else if (s == TW_OK) {
        s = classify(fd, clean, kind);
        close(fd);
    }
    free(clean);
    return s;
}

/* ------------------------------------------------------------------------------------------ */
/* The lock                                                                                   */
/* ------------------------------------------------------------------------------------------ */

struct tw_checkpoint_lock {
    int fd;      /* the lock file, flock()ed */
    int dirfd;
    char *dir;
    bool created; /* DIR was made by tw_checkpoint_lock */
};

/* The pid written in a lock file, 0 if none can be read. */
static long lock_holder(int dirfd) {
    char *text = NULL;
    long pid = 0;
    if (read_at(dirfd, LOCK_NAME, "", &text, NULL) == TW_OK) pid = strtol(text, NULL, 10);
    tw_clear_error();
    free(text);
    return pid;
}

/* Takes DIR/.twist-lock with flock(): the kernel drops it when its holder exits, however it
 * exits, so a lock file left by a killed run is simply taken over. *fd = -1 and *holder > 0
 * (or -1 when unknown) if another open file holds it. */
static tw_status take_lock(int dirfd, const char *dir, int *fd, long *holder) {
    *fd = -1;
    *holder = 0;
    for (int attempt = 0; attempt < 8; attempt++) {
        int lfd = openat(dirfd, LOCK_NAME, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (lfd < 0)
            return tw_error(TW_ERR_IO, "%s: cannot write there (creating its lock file %s: %s)",
                            dir, LOCK_NAME, strerror(errno));
        struct stat st, now;
        if (fstat(lfd, &st) != 0 || !S_ISREG(st.st_mode)) {
            close(lfd);
            return tw_error(TW_ERR_INVALID_ARGUMENT, "%s/%s: is not a regular file", dir,
                            LOCK_NAME);
        }
        if (flock(lfd, LOCK_EX | LOCK_NB) != 0) {
            int err = errno;
            close(lfd);
            if (err != EWOULDBLOCK)
                return tw_error(TW_ERR_IO, "%s/%s: cannot lock: %s", dir, LOCK_NAME,
                                strerror(err));
            long pid = lock_holder(dirfd);
            *holder = pid > 0 ? pid : -1;
            return TW_OK;
        }
        /* A holder that was releasing may have unlinked the file we opened: retry on the one
         * the name now points to. */
        if (fstatat(dirfd, LOCK_NAME, &now, AT_SYMLINK_NOFOLLOW) != 0 || now.st_ino != st.st_ino ||
            now.st_dev != st.st_dev) {
            close(lfd);
            continue;
        }
        char text[32];
        int len = snprintf(text, sizeof text, "%ld\n", (long)getpid());
        if (ftruncate(lfd, 0) != 0 || pwrite(lfd, text, (size_t)len, 0) != len) {
            int err = errno;
            close(lfd);
            return tw_error(TW_ERR_IO, "%s: cannot write there (writing its lock file %s: %s)",
                            dir, LOCK_NAME, strerror(err));
        }
        *fd = lfd;
        return TW_OK;
    }
    return tw_error(TW_ERR_IO, "%s/%s: the lock file keeps changing", dir, LOCK_NAME);
}

static void drop_lock(int dirfd, int fd) {
    if (fd < 0) return;
    unlinkat(dirfd, LOCK_NAME, 0); /* while still locked: a waiting taker retries (take_lock) */
    close(fd);
}

static tw_status busy_error(const char *dir, long holder) {
    if (holder > 0)
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "%s: in use by another twist process (pid %ld holds %s/%s); wait for it "
                        "to finish or stop it, or choose another directory",
                        dir, holder, dir, LOCK_NAME);
    return tw_error(TW_ERR_INVALID_ARGUMENT,
                    "%s: in use by another twist process (it holds %s/%s); wait for it to "
                    "finish or choose another directory", dir, dir, LOCK_NAME);
}

tw_status tw_checkpoint_lock_take(const char *dir, tw_ckpt_target *kind,
                                 tw_checkpoint_lock **out) {
    if (!dir || !dir[0] || !out)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_checkpoint_lock_take: NULL or empty argument");
    *out = NULL;
    tw_checkpoint_lock *lock = calloc(1, sizeof *lock);
    if (!lock || !(lock->dir = clean_dir(dir))) {
        free(lock);
        return tw_error(TW_ERR_OUT_OF_MEMORY, "checkpoint: no memory");
    }
    lock->fd = lock->dirfd = -1;
    struct stat st;
    lock->created = lstat(lock->dir, &st) != 0 && errno == ENOENT;
    tw_status s = lock->created ? make_dirs(lock->dir) : TW_OK;
    if (s == TW_OK) s = open_dir_fd(lock->dir, &lock->dirfd);
    long holder = 0;
    if (s == TW_OK) s = take_lock(lock->dirfd, lock->dir, &lock->fd, &holder);
    if (s == TW_OK && lock->fd < 0) s = busy_error(lock->dir, holder);
    tw_ckpt_target found = TW_CKPT_TARGET_EMPTY;
    if (s == TW_OK) s = classify(lock->dirfd, lock->dir, &found);
    /* A save directory of a live process without the lock is a library user saving without
     * one: leave it; finish_leftovers skips it. */
    if (s == TW_OK) s = finish_leftovers(lock->dirfd, lock->dir, NULL);
    if (s != TW_OK) {
        char message[1024];
        snprintf(message, sizeof message, "%s", tw_last_error());
        tw_checkpoint_lock_release(lock);
        return tw_error(s, "%s", message);
    }
    if (kind) *kind = found;
    *out = lock;
    return TW_OK;
}

void tw_checkpoint_lock_release(tw_checkpoint_lock *lock) {
    if (!lock) return;
    drop_lock(lock->dirfd, lock->fd);
    if (lock->dirfd >= 0) close(lock->dirfd);
    /* A directory this lock made and nothing was saved into: leave no empty litter. */
    if (lock->created) rmdir(lock->dir);
    free(lock->dir);
    free(lock);
}

/* For a save without the caller's lock: takes it for the save, or accepts it when this very
 * process holds it (flock() locks belong to open files, so our own lock also refuses us). */
static tw_status lock_for_save(int dirfd, const char *dir, int *fd) {
    long holder = 0;
    TW_TRY(take_lock(dirfd, dir, fd, &holder));
    if (*fd >= 0 || holder == (long)getpid()) return TW_OK;
    return busy_error(dir, holder);
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

tw_status tw_checkpoint_writer_add_bf16(tw_checkpoint_writer *writer, tw_ckpt_part part,
                                        const char *name, int ndim, const int64_t *dims,
                                        const float *data) {
    tw_status s = check_part(writer, part);
    return s != TW_OK ? s
                      : tw_safetensors_writer_add_bf16(writer->parts[part], name, ndim, dims, data);
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
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
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

/* Writes the complete checkpoint into the fresh directory tmp (which must not exist): the
 * marker first, checksums.json last. */
static tw_status write_tmp(const tw_checkpoint_writer *w, const char *tmp) {
    if (mkdir(tmp, 0755) != 0)
        return tw_error(TW_ERR_IO, "%s: cannot create directory: %s", tmp, strerror(errno));
    TW_TRY(write_marker(tmp));
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

tw_status tw_checkpoint_save(const tw_checkpoint_writer *writer, const char *dir) {
    if (!writer) return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_checkpoint_save: writer is NULL");
    if (!writer->config)
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "tw_checkpoint_save: no config.json text was set (tw_checkpoint_writer_"
                        "set_config)");
    if (!dir || !dir[0])
        return tw_error(TW_ERR_INVALID_ARGUMENT, "checkpoint: the directory name is empty");
    char *clean = clean_dir(dir);
    char save_name[64];
    snprintf(save_name, sizeof save_name, SAVE_PREFIX "%ld", (long)getpid());
    char *tmp = clean ? join(clean, save_name) : NULL;
    int dirfd = -1, lock_fd = -1;
    cJSON *old_root = NULL;
    const cJSON *old_files = NULL;
    tw_status s = TW_OK;
    if (!clean || !tmp) {
        s = tw_error(TW_ERR_OUT_OF_MEMORY, "checkpoint: no memory");
        goto done;
    }
    struct stat st;
    if (lstat(clean, &st) != 0 && errno == ENOENT) s = make_dirs(clean);
    if (s == TW_OK) s = open_dir_fd(clean, &dirfd);
    if (s == TW_OK) s = lock_for_save(dirfd, clean, &lock_fd);
    tw_ckpt_target kind;
    if (s == TW_OK) s = classify(dirfd, clean, &kind);
    /* Interrupted saves first (ours from an earlier failure in this process too): a committed
     * one is rolled forward, so the checkpoint it holds is not lost if this save fails. */
    if (s == TW_OK) s = finish_leftovers(dirfd, clean, NULL);
    if (s != TW_OK) goto done;

    s = write_tmp(writer, tmp);
    if (s != TW_OK) {
        if (tw_ckpt_test_crash_point == TW_CKPT_CRASH_NONE) {
            /* No partial output: keep the message of the first failure. */
            char message[1024];
            snprintf(message, sizeof message, "%s", tw_last_error());
            remove_twist_dir(dirfd, save_name, false);
            tw_error(s, "%s", message);
        }
        goto done;
    }
    if (load_checksums_at(dirfd, clean, &old_root, &old_files) != TW_OK) old_files = NULL;
    tw_clear_error();
    s = install_save(dirfd, clean, save_name, old_files);
    if (s == TW_OK) tw_clear_error();
done:
    cJSON_Delete(old_root);
    if (dirfd >= 0) {
        drop_lock(dirfd, lock_fd);
        close(dirfd);
    }
    free(tmp);
    free(clean);
    return s;
}

tw_status tw_checkpoint_recover(const char *dir) {
    if (!dir || !dir[0])
        return tw_error(TW_ERR_INVALID_ARGUMENT, "checkpoint: the directory name is empty");
    char *clean = clean_dir(dir);
    if (!clean) return tw_error(TW_ERR_OUT_OF_MEMORY, "checkpoint: no memory");
    int dirfd = -1, lock_fd = -1;
    tw_status s = open_dir_fd(clean, &dirfd);
    if (s == TW_ERR_NOT_FOUND)
        s = tw_error(TW_ERR_NOT_FOUND, "%s: no such checkpoint directory", clean);
    if (s == TW_OK) s = lock_for_save(dirfd, clean, &lock_fd);
    if (s == TW_OK) s = finish_leftovers(dirfd, clean, NULL);
    if (dirfd >= 0) {
        drop_lock(dirfd, lock_fd);
        close(dirfd);
    }
    free(clean);
    return s;
}

/* ------------------------------------------------------------------------------------------ */
/* Kept checkpoints                                                                           */
/* ------------------------------------------------------------------------------------------ */

/* dirfd/name -> snapfd/name as a hard link, or a copy where the file system has none. */
static tw_status link_or_copy(int dirfd, int snapfd, const char *name, const char *dir) {
    if (linkat(dirfd, name, snapfd, name, 0) == 0) return TW_OK;
    int in = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    int out = openat(snapfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    tw_status s = TW_OK;
    if (in < 0 || out < 0)
        s = tw_error(TW_ERR_IO, "%s/%s: cannot link or copy it into a snapshot: %s", dir, name,
                     strerror(errno));
    char buf[1 << 16];
    for (ssize_t n; s == TW_OK && (n = read(in, buf, sizeof buf)) != 0;) {
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) s = tw_error(TW_ERR_IO, "%s/%s: read failed: %s", dir, name, strerror(errno));
        else s = tw_ckpt_write_all(out, name, buf, (size_t)n, NULL);
    }
    if (s == TW_OK && fsync(out) != 0)
        s = tw_error(TW_ERR_IO, "%s: fsync failed: %s", name, strerror(errno));
    if (in >= 0) close(in);
    if (out >= 0) close(out);
    return s;
}

typedef struct snapshot_entry {
    char name[32];
    long step;
} snapshot_entry;

static int compare_snapshots(const void *a, const void *b) {
    long x = ((const snapshot_entry *)a)->step, y = ((const snapshot_entry *)b)->step;
    return (x < y) - (x > y); /* newest first */
}

tw_status tw_checkpoint_snapshot(const char *dir, int step, int keep) {
    if (!dir || !dir[0] || step < 0 || step > 999999999)
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "tw_checkpoint_snapshot: need a directory and a step in [0, 999999999]");
    char *clean = clean_dir(dir);
    if (!clean) return tw_error(TW_ERR_OUT_OF_MEMORY, "checkpoint: no memory");
    int dirfd = -1, snapfd = -1, lock_fd = -1;
    cJSON *root = NULL;
    const cJSON *files = NULL;
    char tmp_name[64], name[32];
    snprintf(tmp_name, sizeof tmp_name, SNAP_TMP_PREFIX "%ld", (long)getpid());
    snprintf(name, sizeof name, SNAP_PREFIX "%09d", step);
    tw_status s = open_dir_fd(clean, &dirfd);
    if (s == TW_OK) s = lock_for_save(dirfd, clean, &lock_fd);
    if (s == TW_OK && keep > 1) {
        s = load_checksums_at(dirfd, clean, &root, &files);
        if (s == TW_ERR_NOT_FOUND)
            s = tw_error(TW_ERR_NOT_FOUND, "%s: no checkpoint to keep a snapshot of", clean);
        char *tmp = s == TW_OK ? join(clean, tmp_name) : NULL;
        if (s == TW_OK && !tmp) s = tw_error(TW_ERR_OUT_OF_MEMORY, "checkpoint: no memory");
        if (s == TW_OK) remove_twist_dir(dirfd, tmp_name, false); /* our own leftover */
        if (s == TW_OK && mkdir(tmp, 0755) != 0)
            s = tw_error(TW_ERR_IO, "%s: cannot create directory: %s", tmp, strerror(errno));
        if (s == TW_OK) s = write_marker(tmp);
        free(tmp);
        if (s == TW_OK) {
            snapfd = openat(dirfd, tmp_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (snapfd < 0) s = tw_error(TW_ERR_IO, "%s/%s: cannot open", clean, tmp_name);
        }
        const cJSON *entry;
        if (s == TW_OK) cJSON_ArrayForEach(entry, files) {
            s = link_or_copy(dirfd, snapfd, entry->string, clean);
            if (s != TW_OK) break;
        }
        if (s == TW_OK) s = link_or_copy(dirfd, snapfd, CHECKSUMS_NAME, clean);
        if (s == TW_OK && fsync(snapfd) != 0)
            s = tw_error(TW_ERR_IO, "%s/%s: fsync failed", clean, tmp_name);
        /* A snapshot of this step from an earlier attempt is replaced. */
        if (s == TW_OK) remove_twist_dir(dirfd, name, true);
        if (s == TW_OK && renameat(dirfd, tmp_name, dirfd, name) != 0)
            s = tw_error(TW_ERR_IO, "%s/%s: cannot rename %s to it: %s", clean, name, tmp_name,
                         strerror(errno));
        if (s != TW_OK) {
            char message[1024];
            snprintf(message, sizeof message, "%s", tw_last_error());
            remove_twist_dir(dirfd, tmp_name, false);
            tw_error(s, "%s", message);
        }
    }
    /* Pruning: snapshots of later steps (a run this one replaced) and all but the newest
     * keep. */
    if (s == TW_OK) {
        DIR *d = list_dir(dirfd);
        snapshot_entry *list = NULL;
        int count = 0, capacity = 0;
        for (struct dirent *e; d && (e = readdir(d)) != NULL;) {
            long number;
            if (!parse_numbered(e->d_name, SNAP_PREFIX, &number) || strlen(e->d_name) >= 32)
                continue;
            if (count == capacity) {
                capacity = capacity ? 2 * capacity : 16;
                snapshot_entry *grown = realloc(list, (size_t)capacity * sizeof *grown);
                if (!grown) break;
                list = grown;
            }
            snprintf(list[count].name, sizeof list[count].name, "%s", e->d_name);
            list[count++].step = number;
        }
        if (d) closedir(d);
        if (count > 1) qsort(list, (size_t)count, sizeof *list, compare_snapshots);
        int kept = 0;
        for (int i = 0; i < count; i++) {
            if (list[i].step <= step && kept < (keep > 1 ? keep : 0)) {
                int fd = open_twist_dir(dirfd, list[i].name);
                if (fd >= 0) {
                    kept++;
                    close(fd);
                }
                continue;
            }
            remove_twist_dir(dirfd, list[i].name, true);
        }
        free(list);
    }
    cJSON_Delete(root);
    if (snapfd >= 0) close(snapfd);
    if (dirfd >= 0) {
        drop_lock(dirfd, lock_fd);
        close(dirfd);
    }
    free(clean);
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

/* Opens an existing checkpoint directory. */
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
            } else if ((s = tw_json_refuse_duplicate(parsed, path)) != TW_OK) {
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

/* A committed save left in DIR (its pid in *pid), or false. */
static bool find_committed_save(const char *dir, long *pid) {
    int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0) return false;
    DIR *d = list_dir(dirfd);
    bool found = false;
    for (struct dirent *e; d && !found && (e = readdir(d)) != NULL;) {
        if (!parse_numbered(e->d_name, SAVE_PREFIX, pid)) continue;
        int fd = open_twist_dir(dirfd, e->d_name);
        struct stat st;
        found = fd >= 0 && fstatat(fd, CHECKSUMS_NAME, &st, AT_SYMLINK_NOFOLLOW) == 0;
        if (fd >= 0) close(fd);
    }
    if (d) closedir(d);
    close(dirfd);
    return found;
}

tw_status tw_checkpoint_open(const char *dir, tw_checkpoint **out) {
    if (!out) return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_checkpoint_open: out is NULL");
    *out = NULL;
    if (!dir || !dir[0])
        return tw_error(TW_ERR_INVALID_ARGUMENT, "checkpoint: the directory name is empty");
    char *clean = clean_dir(dir);
    if (!clean) return tw_error(TW_ERR_OUT_OF_MEMORY, "checkpoint: no memory");
    /* Reading only: "." and a path through symbolic links are fine. */
    struct stat st;
    tw_status s;
    if (stat(clean, &st) != 0)
        s = tw_error(TW_ERR_NOT_FOUND, "%s: no such checkpoint directory", clean);
    else if (!S_ISDIR(st.st_mode))
        s = tw_error(TW_ERR_FORMAT, "%s: is not a checkpoint directory", clean);
    else {
        /* A save installing its files right now takes milliseconds: wait for it (up to 2 s).
         * One that was killed inside that step is named, with the way to finish it. */
        for (int attempt = 0;; attempt++) {
            s = open_dir(clean, out);
            long pid = 0;
            if (s == TW_OK || !find_committed_save(clean, &pid)) break;
            if (pid != (long)getpid() && process_alive(pid) && attempt < 100) {
                struct timespec pause = {0, 20 * 1000 * 1000};
                nanosleep(&pause, NULL);
                continue;
            }
            char message[1024];
            snprintf(message, sizeof message, "%s", tw_last_error());
            s = tw_error(s, "%s; a save into %s was interrupted (%s/" SAVE_PREFIX "%ld holds "
                         "the rest of the newer checkpoint): tw_checkpoint_recover() or `twist "
                         "train --out %s --resume` finishes it",
                         message, clean, clean, pid, clean);
            break;
        }
    }
    free(clean);
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
