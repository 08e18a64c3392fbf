/* File-system helpers (src/core/paths.h). */
#include "core/paths.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/backend_impl.h"

bool tw_make_dirs(const char *dir) {
    char buffer[PATH_MAX];
    if (snprintf(buffer, sizeof buffer, "%s", dir) >= (int)sizeof buffer) return false;
    for (char *p = buffer + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buffer, 0755) != 0 && errno != EEXIST) return false;
        *p = '/';
    }
    if (mkdir(buffer, 0755) != 0 && errno != EEXIST) return false;
    struct stat info;
    return stat(buffer, &info) == 0 && S_ISDIR(info.st_mode);
}

bool tw_user_cache_dir(char *out, size_t capacity) {
    const char *twist = getenv("TWIST_CACHE_DIR"), *xdg = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME");
    int written = -1;
    if (twist && *twist) written = snprintf(out, capacity, "%s", twist);
    else if (xdg && *xdg) written = snprintf(out, capacity, "%s/twist", xdg);
    else if (home && *home) written = snprintf(out, capacity, "%s/.cache/twist", home);
    return written > 0 && (size_t)written < capacity;
}

const char *tw_file_kind(unsigned mode) {
    if (S_ISREG(mode)) return "a regular file";
    if (S_ISDIR(mode)) return "a directory";
    if (S_ISFIFO(mode)) return "a FIFO";
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
    if (S_ISSOCK(mode)) return "a socket";
    if (S_ISLNK(mode)) return "a symbolic link";
    return "not a regular file";
}

tw_status tw_check_output_file(const char *path) {
    struct stat st;
    /* stat, not lstat: a symbolic link to a regular file is replaced as before (the link, not its
     * target); one to a device or FIFO is refused like the device itself. */
    if (stat(path, &st) != 0) {
        if (errno == ENOENT) return TW_OK;
        return tw_error(TW_ERR_IO, "%s: cannot check the output path: %s", path, strerror(errno));
    }
    if (S_ISREG(st.st_mode)) return TW_OK;
    return tw_error(TW_ERR_IO, "%s is %s, not a regular file: writing renames a new file over the "
                    "path, which would replace it, so twist refuses; give a regular file's path",
                    path, tw_file_kind(st.st_mode));
}

tw_status tw_read_file(const char *path, char **bytes, size_t *size) {
    *bytes = NULL;
    *size = 0;
    /* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever before the
     * regular-file check below could refuse it (it has no effect on regular files). */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        int err = errno;
        return tw_error(err == ENOENT ? TW_ERR_NOT_FOUND : TW_ERR_IO, "%s: cannot open: %s",
                        path, strerror(err));
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int err = errno;
        close(fd);
        return tw_error(TW_ERR_IO, "%s: cannot stat: %s", path, strerror(err));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return tw_error(TW_ERR_IO, "%s: not a regular file (it is %s)", path,
                        tw_file_kind(st.st_mode));
    }
    size_t total = (size_t)st.st_size;
    char *buf = malloc(total + 1);
    if (!buf) {
        close(fd);
        return tw_error(TW_ERR_OUT_OF_MEMORY, "%s: cannot allocate %zu bytes to read it", path,
                        total + 1);
    }
    size_t got = 0;
    while (got < total) {
        size_t chunk = total - got < (1u << 30) ? total - got : (1u << 30);
        ssize_t n = read(fd, buf + got, chunk);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            int err = n < 0 ? errno : 0;
            close(fd);
            free(buf);
            if (n == 0)
                return tw_error(TW_ERR_IO, "%s: file shrank while being read (%zu of %zu bytes)",
                                path, got, total);
            return tw_error(TW_ERR_IO, "%s: read failed: %s", path, strerror(err));
        }
        got += (size_t)n;
    }
    close(fd);
    buf[total] = '\0';
    *bytes = buf;
    *size = total;
    return TW_OK;
}

uint64_t tw_fnv1a64(uint64_t hash, const void *data, size_t bytes) {
    const unsigned char *p = data;
    for (size_t i = 0; i < bytes; i++) {
        hash ^= p[i];
        hash *= 0x100000001b3ull;
    }
    return hash;
}
