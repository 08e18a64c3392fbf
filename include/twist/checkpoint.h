/* twist: safetensors files and checkpoint directories.
 *
 * Model-agnostic: callers hand over named fp32 tensors and JSON texts; nothing here knows what a
 * transformer is.
 *
 * safetensors (https://github.com/huggingface/safetensors, "Format"):
 *
 *   bytes [0, 8)        N, unsigned 64-bit little-endian: length of the JSON header
 *   bytes [8, 8 + N)    JSON header, UTF-8, starting with '{', padded with spaces so that
 *                       8 + N is a multiple of 8 (the data then starts 8-byte aligned):
 *                       {"__metadata__": {"key": "string value", ...},
 *                        "name": {"dtype": "F32", "shape": [d0, d1, ...],
 *                                 "data_offsets": [begin, end]}, ...}
 *   bytes [8 + N, EOF)  raw little-endian tensor data, row-major; offsets are relative to the
 *                       start of this region; the tensors cover it exactly (no gaps, no overlap,
 *                       nothing after the last one).
 *
 * A shape of [] is a scalar (1 element); a shape with a 0 is an empty tensor (begin == end).
 *
 * A checkpoint is a directory DIR holding
 *
 *   model.safetensors      weights under the caller's names (Hugging Face GPT-2 names for twist)
 *   optimizer.safetensors  optimizer tensors (AdamW m and v per parameter, ...); may be empty
 *   config.json            the caller's model configuration (JSON text, stored verbatim)
 *   state.json             the caller's training state: step, data position, RNG, ... ("{}" if
 *                          none was given)
 *   <extra files>          optional caller files (a tokenizer.json, ...)
 *   checksums.json         {"format": "twist-checkpoint", "version": 1,
 *                           "files": {"model.safetensors": {"size": 123, "sha256": "ab..."},
 *                                     ...}}
 *                          size and SHA-256 of every other file; `sha256sum FILE` reproduces
 *                          the digests.
 *
 * DIR belongs to the user: twist writes its files into it and never renames, replaces or
 * empties the directory as a whole, so other files in it (notes, plots, a run's log) are never
 * moved or deleted. twist's own entries in DIR are the files above (the ones checksums.json
 * lists), the lock file .twist-lock, and directories it makes there, each holding a marker file
 * (.twist-marker) written first: .twist-save-<pid>/ (a save in progress), .twist-snap-<pid>/
 * and step-<9 digits>/ (kept checkpoints, tw_checkpoint_snapshot).
 *
 * Saving is atomic: everything is written and fsync'ed into DIR/.twist-save-<pid>, checksums.json
 * last (the save is then committed), and only then renamed file by file into DIR, checksums.json
 * last. A crash before the commit leaves the previous checkpoint; a crash after it leaves a save
 * that the next writer (tw_checkpoint_save, tw_checkpoint_lock_take, tw_checkpoint_recover) rolls
 * forward. Leftovers are removed only when provably twist's (name pattern, a real directory of
 * this user with the marker; symbolic links are never followed). src/ckpt/checkpoint.c details
 * every crash point.
 *
 * Loading checks the size and SHA-256 of every file listed in checksums.json before parsing
 * anything, then validates both safetensors files completely. Files are read into memory (not
 * mapped): the checksum has to read every byte anyway, and a mapped file truncated by another
 * process later would crash the reader with SIGBUS. Close a checkpoint once its tensors are
 * uploaded.
 *
 * Hosts must be little-endian (every platform twist targets); others get TW_ERR_UNSUPPORTED. */
#ifndef TWIST_CHECKPOINT_H
#define TWIST_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "twist/status.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { TW_TENSOR_MAX_DIMS = 8 };

/* A read-only view of one fp32 tensor inside an open file or checkpoint: valid until that file
 * or checkpoint is freed. */
typedef struct tw_tensor_view {
    const char *name;
    int ndim;                          /* 0 for a scalar */
    int64_t dims[TW_TENSOR_MAX_DIMS];  /* row-major shape */
    size_t count;                      /* product of dims (1 for a scalar, 0 if a dim is 0) */
    const float *data;                 /* count floats, 4-byte aligned; NULL when count == 0 */
} tw_tensor_view;

/* ------------------------------------------------------------------------------------------ */
/* safetensors files                                                                          */
/* ------------------------------------------------------------------------------------------ */

typedef struct tw_safetensors_writer tw_safetensors_writer;
typedef struct tw_safetensors tw_safetensors;

tw_status tw_safetensors_writer_create(tw_safetensors_writer **out);
void tw_safetensors_writer_destroy(tw_safetensors_writer *writer);

/* Adds a tensor of shape dims[0..ndim) (ndim 0..TW_TENSOR_MAX_DIMS, every dim >= 0). The data is
 * BORROWED: it must stay valid and unchanged until the last write of this writer has returned.
 * Names must be unique, non-empty and not "__metadata__". Tensors are stored in the order added. */
tw_status tw_safetensors_writer_add(tw_safetensors_writer *writer, const char *name, int ndim,
                                    const int64_t *dims, const float *data);
/* The same, but copies the data now. */
tw_status tw_safetensors_writer_add_copy(tw_safetensors_writer *writer, const char *name,
                                         int ndim, const int64_t *dims, const float *data);
/* The same, stored as BF16 (rounded to nearest even now, into a copy): half the bytes. */
tw_status tw_safetensors_writer_add_bf16(tw_safetensors_writer *writer, const char *name,
                                         int ndim, const int64_t *dims, const float *data);
/* Sets a "__metadata__" entry (replacing an earlier value of the same key). */
tw_status tw_safetensors_writer_set_metadata(tw_safetensors_writer *writer, const char *key,
                                             const char *value);
int tw_safetensors_writer_count(const tw_safetensors_writer *writer);

/* Writes the file atomically: to PATH.tmp-<pid>, fsync, rename over PATH, fsync the directory. */
tw_status tw_safetensors_write(const tw_safetensors_writer *writer, const char *path);

/* Reads and validates a whole file (see the format above). Errors name the file and the tensor
 * or field: TW_ERR_NOT_FOUND / TW_ERR_IO if it cannot be read, TW_ERR_FORMAT for anything
 * malformed. F32, BF16 and F16 tensors can be looked up, the 16-bit ones as fp32 copies widened
 * at load; tensors of other dtypes are validated but can only be listed: looking one up gives
 * TW_ERR_UNSUPPORTED. */
tw_status tw_safetensors_load(const char *path, tw_safetensors **out);
void tw_safetensors_free(tw_safetensors *file);

/* The path the file was loaded from (used in messages). */
const char *tw_safetensors_path(const tw_safetensors *file);
int tw_safetensors_count(const tw_safetensors *file);
/* Name and dtype ("F32", "F16", ...) of the index-th tensor in header order. */
const char *tw_safetensors_name_at(const tw_safetensors *file, int index);
const char *tw_safetensors_dtype_at(const tw_safetensors *file, int index);
/* The tensor of that name (BF16 and F16 widened to fp32): TW_ERR_NOT_FOUND if absent,
 * TW_ERR_UNSUPPORTED for another dtype. */
tw_status tw_safetensors_find(const tw_safetensors *file, const char *name, tw_tensor_view *out);
/* A "__metadata__" value, or NULL. */
const char *tw_safetensors_metadata(const tw_safetensors *file, const char *key);
int tw_safetensors_metadata_count(const tw_safetensors *file);
/* Key and value of the index-th metadata entry (header order). */
tw_status tw_safetensors_metadata_at(const tw_safetensors *file, int index, const char **key,
                                     const char **value);

/* ------------------------------------------------------------------------------------------ */
/* Checkpoint directories                                                                     */
/* ------------------------------------------------------------------------------------------ */

typedef enum tw_ckpt_part {
    TW_CKPT_MODEL = 0,     /* model.safetensors */
    TW_CKPT_OPTIMIZER = 1, /* optimizer.safetensors */
} tw_ckpt_part;

typedef struct tw_checkpoint_writer tw_checkpoint_writer;
typedef struct tw_checkpoint tw_checkpoint;

tw_status tw_checkpoint_writer_create(tw_checkpoint_writer **out);
void tw_checkpoint_writer_destroy(tw_checkpoint_writer *writer);

/* Tensors of model.safetensors or optimizer.safetensors; add borrows the data until
 * tw_checkpoint_save returns (as tw_safetensors_writer_add), add_copy copies it. */
tw_status tw_checkpoint_writer_add(tw_checkpoint_writer *writer, tw_ckpt_part part,
                                   const char *name, int ndim, const int64_t *dims,
                                   const float *data);
tw_status tw_checkpoint_writer_add_copy(tw_checkpoint_writer *writer, tw_ckpt_part part,
                                        const char *name, int ndim, const int64_t *dims,
                                        const float *data);
/* A copy stored as BF16 (tw_safetensors_writer_add_bf16). */
tw_status tw_checkpoint_writer_add_bf16(tw_checkpoint_writer *writer, tw_ckpt_part part,
                                        const char *name, int ndim, const int64_t *dims,
                                        const float *data);
tw_status tw_checkpoint_writer_set_metadata(tw_checkpoint_writer *writer, tw_ckpt_part part,
                                            const char *key, const char *value);
/* config.json and state.json: must parse as JSON; copied and stored verbatim. config.json is
 * required before saving; state.json defaults to "{}". */
tw_status tw_checkpoint_writer_set_config(tw_checkpoint_writer *writer, const char *json);
tw_status tw_checkpoint_writer_set_state(tw_checkpoint_writer *writer, const char *json);
/* An extra file stored beside the others and checksummed with them (copied now). The name is a
 * plain file name: no '/', not starting with '.', not one of the five names above. */
tw_status tw_checkpoint_writer_add_file(tw_checkpoint_writer *writer, const char *name,
                                        const void *bytes, size_t size);

/* Writes the checkpoint to DIR atomically (see the top of this file). DIR and missing parents
 * are created. DIR may be absent, empty (or hold only twist's own entries and a run's log.txt /
 * metrics.jsonl) or hold a twist checkpoint (a checksums.json of this format), perhaps beside
 * other files of the user's, which stay untouched. Anything else is refused with
 * TW_ERR_INVALID_ARGUMENT naming DIR: a symbolic link, a file, a checksums.json that is not
 * twist's, other files without a checkpoint. Only the files the previous checksums.json listed
 * are replaced or removed. A lock of another process on DIR (tw_checkpoint_lock_take) refuses the
 * save; leftovers of interrupted saves are finished first (a committed one rolled forward). */
tw_status tw_checkpoint_save(const tw_checkpoint_writer *writer, const char *dir);

/* What a directory holds for a writer. */
typedef enum tw_ckpt_target {
    TW_CKPT_TARGET_EMPTY = 0,  /* absent, empty, or only twist's own entries and run files */
    TW_CKPT_TARGET_CHECKPOINT  /* a twist checkpoint (perhaps an interrupted save of one) */
} tw_ckpt_target;

/* Checks DIR by the rules tw_checkpoint_save applies, writing nothing: TW_OK with *kind, or the
 * error the save would give. */
tw_status tw_checkpoint_probe(const char *dir, tw_ckpt_target *kind);

/* Reserves DIR for this process's saves, before a long run: creates DIR (and parents) if
 * missing, proves it writable by creating DIR/.twist-lock and taking an flock() on it (the
 * kernel drops it when the process exits, however it exits, so a lock file left by a killed
 * run is taken over), writes our pid into it, checks DIR by the rules of tw_checkpoint_save,
 * and finishes leftovers of killed saves. *kind (may be NULL) says what DIR holds. If another
 * process holds the lock: TW_ERR_INVALID_ARGUMENT naming its pid. Saves by this process go
 * through while it holds the lock; saves by others are refused. */
typedef struct tw_checkpoint_lock tw_checkpoint_lock;
tw_status tw_checkpoint_lock_take(const char *dir, tw_ckpt_target *kind,
                                 tw_checkpoint_lock **out);
/* Releases the lock and removes the lock file; a DIR the lock created that is still empty is
 * removed too. NULL is ignored. */
void tw_checkpoint_lock_release(tw_checkpoint_lock *lock);

/* Kept checkpoints, after a save at `step` into DIR: with keep > 1, DIR/step-<step as 9
 * digits>/ gets the checkpoint's files as hard links (no extra space; copies where the file
 * system has no hard links) and is a complete checkpoint of its own; then only the `keep`
 * newest step-* snapshots with steps <= `step` remain (keep <= 1: none), and snapshots of later
 * steps (left by a run this one replaced) are removed. Only provably twist's snapshots are
 * touched, and in them only the files their checksums.json lists. */
tw_status tw_checkpoint_snapshot(const char *dir, int step, int keep);

/* Opens DIR: verifies checksums.json, the size and SHA-256 of every listed file (all five
 * standard files must be listed and present), parses both safetensors files and checks that
 * config.json and state.json are JSON. Any failure is TW_ERR_FORMAT naming the file. Reads only
 * ("." and paths through symbolic links are fine). A save being installed right now is waited
 * for; one that was killed while installing is named with the way to finish it. A missing DIR
 * is TW_ERR_NOT_FOUND. */
tw_status tw_checkpoint_open(const char *dir, tw_checkpoint **out);
void tw_checkpoint_close(tw_checkpoint *ckpt);

/* Finishes what killed saves left in DIR: a committed save is rolled forward (it is the newer
 * checkpoint), incomplete ones are removed. TW_OK if there was nothing to do;
 * TW_ERR_NOT_FOUND if DIR is missing. */
tw_status tw_checkpoint_recover(const char *dir);

/* The tensor of that name (BF16 and F16 as fp32): TW_ERR_NOT_FOUND if absent,
 * TW_ERR_UNSUPPORTED for another dtype. */
tw_status tw_checkpoint_tensor(const tw_checkpoint *ckpt, tw_ckpt_part part, const char *name,
                               tw_tensor_view *out);
/* The tensor of that name, which must have exactly the shape dims[0..ndim). Otherwise
 * TW_ERR_FORMAT: "DIR/model.safetensors: tensor 'x' has shape [256, 768], config expects
 * [256, 384]" or "DIR/model.safetensors: missing tensor 'x'". *data may be NULL (not wanted). */
tw_status tw_checkpoint_expect(const tw_checkpoint *ckpt, tw_ckpt_part part, const char *name,
                               int ndim, const int64_t *dims, const float **data);
/* The parsed file behind a part, for listing names and metadata. */
const tw_safetensors *tw_checkpoint_safetensors(const tw_checkpoint *ckpt, tw_ckpt_part part);
/* NUL-terminated texts of config.json and state.json. */
const char *tw_checkpoint_config_json(const tw_checkpoint *ckpt);
const char *tw_checkpoint_state_json(const tw_checkpoint *ckpt);
/* An extra file (verified like the others): TW_ERR_NOT_FOUND if the checkpoint has none of that
 * name. The bytes are followed by a NUL not counted in *size. */
tw_status tw_checkpoint_file(const tw_checkpoint *ckpt, const char *name, const void **bytes,
                             size_t *size);
/* The directory the checkpoint was opened from. */
const char *tw_checkpoint_dir(const tw_checkpoint *ckpt);

#ifdef __cplusplus
}
#endif

#endif
