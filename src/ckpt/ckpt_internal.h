/* Shared between src/ckpt/safetensors.c and src/ckpt/checkpoint.c (and the checkpoint test). */
#ifndef TWIST_CKPT_INTERNAL_H
#define TWIST_CKPT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/json_keys.h"
#include "twist/checkpoint.h"

/* SHA-256 (FIPS 180-4), streaming. */
typedef struct tw_sha256 {
    uint32_t state[8];
    uint64_t length; /* bytes hashed so far */
    uint8_t block[64];
    size_t filled;   /* bytes in block */
} tw_sha256;

void tw_sha256_init(tw_sha256 *ctx);
void tw_sha256_update(tw_sha256 *ctx, const void *data, size_t size);
/* Writes the digest as 64 lowercase hex digits plus a NUL. */
void tw_sha256_final_hex(tw_sha256 *ctx, char hex[65]);
/* Whether the x86 SHA instructions are used; tw_sha256_force_portable(true) turns them off (the
 * test checks both paths against the same vectors), false restores the CPU's choice. */
bool tw_sha256_accelerated(void);
void tw_sha256_force_portable(bool portable);

/* Writes all `size` bytes to fd (retrying short writes and EINTR), feeding them to `hash` if not
 * NULL. `path` names the file in the message on failure (TW_ERR_IO). */
tw_status tw_ckpt_write_all(int fd, const char *path, const void *data, size_t size,
                            tw_sha256 *hash);

/* Reads a whole regular file into a malloc'd buffer with one extra NUL byte after it (so JSON
 * texts can be used as strings). TW_ERR_NOT_FOUND if missing, TW_ERR_IO otherwise. */
tw_status tw_ckpt_read_file(const char *path, uint8_t **bytes, size_t *size);

/* fsync()s a directory so the entries created or renamed in it are durable. */
tw_status tw_ckpt_fsync_dir(const char *path);

/* Serialises the writer's file into fd (already open for writing), hashing what is written.
 * *size receives the file size. */
tw_status tw_safetensors_write_fd(const tw_safetensors_writer *writer, int fd, const char *path,
                                  tw_sha256 *hash, uint64_t *size);

/* Parses a file already in memory. Takes ownership of `bytes` (a malloc'd buffer of `size`
 * bytes) whether it succeeds or not; `path` names the file in messages. */
tw_status tw_safetensors_parse(const char *path, uint8_t *bytes, size_t size,
                               tw_safetensors **out);


/* Test hook: a save stops (returning TW_ERR_IO, leaving everything as it is on disk) at this
 * point, to simulate a crash. 0: never. The points are those of the save steps at the top of
 * checkpoint.c. */
extern int tw_ckpt_test_crash_point;
enum {
    TW_CKPT_CRASH_NONE = 0,
    TW_CKPT_CRASH_AFTER_MODEL_FILE = 1, /* DIR/.twist-save-<pid> holds the marker and the model */
    TW_CKPT_CRASH_MID_INSTALL = 2,      /* the save is committed, one file moved into DIR */
    TW_CKPT_CRASH_AFTER_INSTALL = 3,    /* DIR is the new checkpoint; the save dir remains */
};

#endif
