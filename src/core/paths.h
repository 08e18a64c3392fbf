/* File-system helpers of the library: the cache helpers backends share (declared in
 * twist/backend_support.h) and those of the token cache, default corpus and checkpoints. */
#ifndef TWIST_CORE_PATHS_H
#define TWIST_CORE_PATHS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "twist/backend_support.h" /* tw_make_dirs, tw_user_cache_dir, tw_fnv1a64 */
#include "twist/status.h"

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

#endif
