/* File-system helpers (src/core/paths.h). */
#include "core/paths.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

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
