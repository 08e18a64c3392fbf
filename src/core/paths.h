/* File-system helpers shared by the caches (OpenCL programs, tokenised corpora, the default
 * corpus) and the checkpoint code. */
#ifndef TWIST_CORE_PATHS_H
#define TWIST_CORE_PATHS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "twist/status.h"

/* mkdir -p: true when the directory exists afterwards. */
bool tw_make_dirs(const char *dir);

/* twist's per-user cache directory: $TWIST_CACHE_DIR, else $XDG_CACHE_HOME/twist, else
 * $HOME/.cache/twist. Writes it to out (not created); false when none is set or it does not
 * fit. */
bool tw_user_cache_dir(char *out, size_t capacity);

/* Reads a whole regular file into a new buffer (*bytes, NUL-terminated, not counted in *size;
 * release with free()). Anything else (a FIFO, a device, a directory) is refused at once, without
 * waiting on it. Errors name the file: TW_ERR_NOT_FOUND, TW_ERR_IO, TW_ERR_OUT_OF_MEMORY. */
tw_status tw_read_file(const char *path, char **bytes, size_t *size);

/* Whether `path` may be replaced by a file renamed into place: TW_OK when nothing is there or a
 * regular file (or a link to one) is; TW_ERR_IO, naming the path and what it is, for a device,
 * FIFO, socket or directory (renaming over /dev/null as root would break the system). */
tw_status tw_check_output_file(const char *path);

/* "a directory", "a FIFO", "a character device", ... for a stat st_mode. */
const char *tw_file_kind(unsigned mode);

/* FNV-1a 64-bit hash of bytes, continuing from hash (start from TW_FNV1A_INIT): the cache keys
 * and checksums of the OpenCL program cache and the token cache (also public in twist/data.h). */
#ifndef TW_FNV1A_INIT
#define TW_FNV1A_INIT 0xcbf29ce484222325ull
#endif
uint64_t tw_fnv1a64(uint64_t hash, const void *data, size_t bytes);

#endif
