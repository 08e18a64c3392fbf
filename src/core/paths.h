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
 * release with free()). Errors name the file: TW_ERR_NOT_FOUND, TW_ERR_IO, TW_ERR_OUT_OF_MEMORY. */
tw_status tw_read_file(const char *path, char **bytes, size_t *size);


#endif
