/* File-system helpers shared by the caches (OpenCL programs, tokenised corpora, the default
 * corpus) and the checkpoint code. */
#ifndef TWIST_CORE_PATHS_H
#define TWIST_CORE_PATHS_H

#include <stdbool.h>
#include <stddef.h>

/* mkdir -p: true when the directory exists afterwards. */
bool tw_make_dirs(const char *dir);

/* twist's per-user cache directory: $TWIST_CACHE_DIR, else $XDG_CACHE_HOME/twist, else
 * $HOME/.cache/twist. Writes it to out (not created); false when none is set or it does not
 * fit. */
bool tw_user_cache_dir(char *out, size_t capacity);

#endif
