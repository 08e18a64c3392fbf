/* Helpers shared by the files of src/data (not part of the public API). */
#ifndef TWIST_DATA_IMPL_H
#define TWIST_DATA_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "twist/status.h"

/* The splitmix64 finaliser of x (Steele et al.): a well-mixed 64-bit hash of an integer. */
uint64_t tw_splitmix64(uint64_t x);


/* Writes `count` pieces to `path` atomically: "<path>.tmp.<pid>" is written, flushed and renamed
 * over path; on any failure the temporary file is removed and `path` is untouched. */
typedef struct tw_write_piece {
    const void *data;
    size_t bytes;
} tw_write_piece;
tw_status tw_write_atomic(const char *path, const tw_write_piece *pieces, int count);

#endif
