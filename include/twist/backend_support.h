/* twist: what a backend implements and the little it may use from the library.
 *
 * A backend (backends/<name>/) includes the public headers and this one, nothing from src/: the
 * op list and the table of function pointers it fills (in the manner of ggml's
 * ggml-backend-impl.h), the layout of buffers and events, errors (twist/error.h), the clock
 * (twist/clock.h) and the cache-path helpers. The registry (src/core/registry.c) finds backends
 * through the constructor table tw_backend_constructors (backends/backends.c) and never names a
 * backend itself.
 *
 * The front end (src/core/device.c, src/core/ops.c) has already checked every argument before an
 * entry is called: specs parsed, shapes positive, every tw_mem extent inside its buffer, every
 * tensor's dtype as the op's rules say (twist/backend.h, "Data types") and a data type other than
 * F32 only where supports_dtype said yes. A backend therefore trusts its arguments and only reports driver failures, through
 * tw_error(). Buffers arrive as tw_buffer*, whose `handle` is the backend's own object (a host
 * pointer for cpu, a cl_mem for opencl, ...). Offsets in tw_mem are in elements. */
#ifndef TWIST_BACKEND_SUPPORT_H
#define TWIST_BACKEND_SUPPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "twist/backend.h"
#include "twist/clock.h"
#include "twist/error.h"

#ifdef __cplusplus
extern "C" {
#endif

struct tw_buffer {
    tw_device *device;
    void *handle; /* backend object */
    size_t bytes;
};

struct tw_event {
    tw_device *device;
    void *handle; /* backend object */
    bool recorded;
};

/* ------------------------------------------------------------------------------------------------
 * The ops, declared once. X(prefix, name, parameters) per op, with the arguments of the public
 * tw_<name>() in twist/backend.h after a `void *context` in place of the device. (tw_convert is
 * not in this list: it is the optional `convert` entry.) From this list
 * come the vtable slots below, each backend's prototypes (TW_BACKEND_OP_PROTOTYPES(tw_cpu)
 * declares tw_cpu_gemm, tw_cpu_attention_fwd, ...) and its initialisers
 * (TW_BACKEND_OP_INITIALISERS(tw_cpu) sets .gemm = tw_cpu_gemm, ...). A backend that has only
 * some ops sets those slots by name and leaves the rest NULL: the front end then refuses the
 * others with TW_ERR_UNSUPPORTED naming the op and the backend.
 * ---------------------------------------------------------------------------------------------- */
#define TW_BACKEND_OPS(X, prefix)                                                                 \
    X(prefix, gemm, (void *context, const tw_gemm_args *args))                                    \
    X(prefix, attention_fwd, (void *context, const tw_attention_args *args))                      \
    X(prefix, attention_bwd, (void *context, const tw_attention_args *args))                      \
    X(prefix, softmax_fwd, (void *context, int rows, int cols, int causal_t, tw_mem in,           \
                            tw_mem out))                                                          \
    X(prefix, softmax_bwd, (void *context, int rows, int cols, tw_mem y, tw_mem dy, tw_mem dx))   \
    X(prefix, layernorm_fwd, (void *context, int rows, int cols, float eps, tw_mem x,             \
                              tw_mem weight, tw_mem bias, tw_mem out, tw_mem mean, tw_mem rstd))  \
    X(prefix, layernorm_bwd, (void *context, int rows, int cols, tw_mem dout, tw_mem x,           \
                              tw_mem weight, tw_mem mean, tw_mem rstd, tw_mem dx, tw_mem dweight, \
                              tw_mem dbias))                                                      \
    X(prefix, gelu_fwd, (void *context, size_t n, tw_mem x, tw_mem out))                          \
    X(prefix, gelu_bwd, (void *context, size_t n, tw_mem x, tw_mem dout, tw_mem dx))              \
    X(prefix, embedding_fwd, (void *context, int batch, int seq_len, int channels, int vocab,     \
                              tw_mem tokens, tw_mem wte, tw_mem wpe, tw_mem out))                 \
    X(prefix, embedding_bwd, (void *context, int batch, int seq_len, int channels, int vocab,     \
                              tw_mem tokens, tw_mem dout, tw_mem dwte, tw_mem dwpe))              \
    X(prefix, softmax_xent_fwd, (void *context, int rows, int vocab, int ld, tw_mem logits,       \
                                 tw_mem targets, tw_mem losses, tw_mem lse, tw_mem correct))      \
    X(prefix, softmax_xent_bwd, (void *context, int rows, int vocab, int ld, float grad_scale,    \
                                 tw_mem logits, tw_mem targets, tw_mem lse, tw_mem dlogits))      \
    X(prefix, bias_add, (void *context, int rows, int cols, tw_mem bias, tw_mem out))             \
    X(prefix, bias_bwd, (void *context, int rows, int cols, tw_mem dout, tw_mem dbias))           \
    X(prefix, add, (void *context, size_t n, tw_mem a, tw_mem b, tw_mem out))                     \
    X(prefix, scale, (void *context, size_t n, float alpha, tw_mem x, tw_mem out))                \
    X(prefix, sum_sq, (void *context, size_t n, tw_mem x, tw_mem out))                            \
    X(prefix, adamw_step, (void *context, size_t n, const tw_adamw_args *args, tw_mem param,      \
                           tw_mem grad, tw_mem m, tw_mem v))                                      \
    X(prefix, gather_rows, (void *context, int src_rows, int cols, int count, tw_mem idx,         \
                            tw_mem src, tw_mem dst))                                              \
    X(prefix, scatter_rows, (void *context, int dst_rows, int cols, int count, tw_mem idx,        \
                             tw_mem src, tw_mem dst, bool accumulate))                            \
    X(prefix, gather_cols, (void *context, int rows, int src_cols, int count, tw_mem idx,         \
                            tw_mem src, tw_mem dst))                                              \
    X(prefix, scatter_cols, (void *context, int rows, int dst_cols, int count, tw_mem idx,        \
                             tw_mem src, tw_mem dst, bool accumulate))

/* One id per op of the list, in list order: TW_OP_gemm, TW_OP_attention_fwd, ... */
#define TW_OP_ID_(prefix, name, params) TW_OP_##name,
typedef enum tw_op_id { TW_BACKEND_OPS(TW_OP_ID_, unused) TW_OP_COUNT } tw_op_id;
/* "gemm", "attention_fwd", ...; NULL out of range. */
const char *tw_op_name(tw_op_id op);

#define TW_BACKEND_OP_SLOT_(prefix, name, params) tw_status(*name) params;
#define TW_BACKEND_OP_PROTOTYPE_(prefix, name, params) tw_status prefix##_##name params;
#define TW_BACKEND_OP_INITIALISER_(prefix, name, params) .name = prefix##_##name,

/* The device, buffer and event entries every backend has, named <prefix>_<entry> in it (e.g.
 * cpu_open, cpu_upload); TW_BACKEND_DEVICE_INITIALISERS(cpu) sets all fourteen slots. */
#define TW_BACKEND_DEVICE_ENTRIES(X, prefix)                                                      \
    X(prefix, enumerate) X(prefix, open) X(prefix, close) X(prefix, sync)                         \
    X(prefix, buffer_alloc) X(prefix, buffer_free) X(prefix, upload) X(prefix, download)          \
    X(prefix, copy) X(prefix, fill_f32) X(prefix, event_create) X(prefix, event_destroy)          \
    X(prefix, event_record) X(prefix, event_elapsed_ms)
#define TW_BACKEND_DEVICE_INITIALISER_(prefix, name) .name = prefix##_##name,
#define TW_BACKEND_DEVICE_INITIALISERS(prefix)                                                    \
    TW_BACKEND_DEVICE_ENTRIES(TW_BACKEND_DEVICE_INITIALISER_, prefix)

/* Declares <prefix>_<op> for every op (at file scope). */
#define TW_BACKEND_OP_PROTOTYPES(prefix) TW_BACKEND_OPS(TW_BACKEND_OP_PROTOTYPE_, prefix)
/* Designated initialisers of every op slot, inside a tw_backend_vtable initialiser. */
#define TW_BACKEND_OP_INITIALISERS(prefix) TW_BACKEND_OPS(TW_BACKEND_OP_INITIALISER_, prefix)

typedef struct tw_backend_vtable {
    tw_backend_kind kind;

    /* Registry: called once per process, under the registry lock. Fill `out` with up to
     * `capacity` device infos (spec left empty: the front end writes "name:index"); return the
     * number found. A missing runtime gives 0, never an error. */
    int (*enumerate)(tw_device_info *out, int capacity);

    /* Device lifetime: `index` is the backend-local index; `device` is the front-end object being
     * opened (info filled in; tw_device_get_info reads it). A backend keeps `device` to allocate
     * its own scratch buffers with tw_buffer_alloc(), so scratch counts in the device's current
     * and peak bytes. */
    tw_status (*open)(int index, tw_device *device, void **context);
    void (*close)(void *context);
    tw_status (*sync)(void *context);

    /* Buffers. alloc stores the backend object in *handle. */
    tw_status (*buffer_alloc)(void *context, size_t bytes, void **handle);
    void (*buffer_free)(void *context, void *handle);
    tw_status (*upload)(void *context, void *handle, size_t offset, const void *src, size_t bytes);
    tw_status (*download)(void *context, void *handle, size_t offset, void *dst, size_t bytes);
    tw_status (*copy)(void *context, void *dst, size_t dst_offset, void *src, size_t src_offset,
                      size_t bytes);
    tw_status (*fill_f32)(void *context, void *handle, size_t offset, size_t count, float value);

    /* Events. */
    tw_status (*event_create)(void *context, void **handle);
    void (*event_destroy)(void *context, void *handle);
    tw_status (*event_record)(void *context, void *handle);
    tw_status (*event_elapsed_ms)(void *context, void *start, void *end, double *ms);

    /* Ops: arguments as in twist/backend.h, already validated. NULL: not on this backend. */
    TW_BACKEND_OPS(TW_BACKEND_OP_SLOT_, unused)

    /* OPTIONAL: choose the GEMM implementation (NULL: only TW_GEMM_AUTO is accepted). */
    tw_status (*set_gemm_impl)(void *context, tw_gemm_impl impl);

    /* OPTIONAL: after enumerate found no devices, why (e.g. "cudaGetDeviceCount: no
     * CUDA-capable device is detected"), for the message of a spec that names one; "" or NULL
     * when unknown. */
    const char *(*no_device_reason)(void);

    /* OPTIONAL: the free memory of device `index` (backend-local) as the driver reports it now,
     * without an opened context; TW_ERR_UNSUPPORTED when it cannot say (then the front end
     * takes the device's memory_bytes less what twist allocated on it). */
    tw_status (*free_memory)(int index, uint64_t *free_bytes);

    /* OPTIONAL: kernel variants (twist/backend.h, "Tuning"). `variants` lists the names of op
     * `op`'s variants on this device, best-guess first (all of them, whether or not the tuner
     * would consider them for a given shape); `force_variant` makes every later call of `op`
     * use one (NULL: back to the tuner's choice); `tune` times every shape class of every
     * tunable op now, in the calling thread, reading and writing each class's choice through
     * its tw_tune_cache during the call (tw_device_tune reports the choices from there). */
    /* OPTIONAL: whether the device runs `op` with data type `dtype` (never asked for F32,
     * which every op supports). NULL: fp32 only. The answer must not change while the device
     * is open. */
    bool (*supports_dtype)(void *context, tw_op_id op, tw_dtype dtype);

    /* OPTIONAL: tw_convert between two different float types (f32, f16, bf16); TW_ERR_UNSUPPORTED
     * for a pair it lacks. NULL: no conversions (f32 -> f32 is done by the front end). */
    tw_status (*convert)(void *context, size_t n, tw_mem src, tw_mem dst);

    int (*variants)(void *context, const char *op, const char **names, int capacity);
    tw_status (*force_variant)(void *context, const char *op, const char *name);
    tw_status (*tune)(void *context, const tw_tune_request *request);
} tw_backend_vtable;

/* ------------------------------------------------------------------------------------------------
 * Registry: the constructor table. Entry k says how to reach backend k (tw_backend_kind order):
 * a constructor linked into the library, or a module (a shared object beside the twist binary,
 * found as described in the README) loaded with dlopen() on first enumeration and asked for
 * `symbol`, a function of the constructor's type. An entry with neither is a backend not built.
 * A constructor returns the backend's vtable (static storage); a backend with no runtime still
 * returns it and lists no devices.
 * ---------------------------------------------------------------------------------------------- */
typedef const tw_backend_vtable *(*tw_backend_constructor)(void);

typedef struct tw_backend_entry {
    tw_backend_constructor construct; /* linked in, or NULL */
    const char *module;               /* e.g. "libtwist_cuda.so", or NULL */
    const char *symbol;               /* the module's constructor, e.g. "tw_cuda_backend" */
    /* Address space (MiB) the backend's driver may map while enumerating, 0 if small. Under an
     * address-space limit (ulimit -v) that leaves less free, the registry skips the backend and
     * says why instead of calling a driver that may abort the process (PoCL does when it
     * cannot start its threads). */
    unsigned driver_mib;
} tw_backend_entry;

extern const tw_backend_entry tw_backend_constructors[TW_BACKEND_COUNT];

/* Loads one of twist's modules (a shared object such as libtwist_cuda.so): beside the running
 * program, in <its dir>/../lib/twist, in the build tree, else through the dynamic linker's
 * search. NULL, with the reason written to `why`
 * ("cannot load <path>: <dlerror>"), when it cannot. Modules stay loaded for the process. */
void *tw_module_open(const char *name, char *why, size_t capacity);

/* ------------------------------------------------------------------------------------------------
 * Cache paths: where backends keep compiled programs and pipeline caches.
 * ---------------------------------------------------------------------------------------------- */

/* mkdir -p: true when the directory exists afterwards. */
bool tw_make_dirs(const char *dir);

/* twist's per-user cache directory: $TWIST_CACHE_DIR, else $XDG_CACHE_HOME/twist, else
 * $HOME/.cache/twist. Writes it to out (not created); false when none is set or it does not
 * fit. */
bool tw_user_cache_dir(char *out, size_t capacity);

/* FNV-1a 64-bit hash of bytes, continuing from hash (start from TW_FNV1A_INIT): cache keys and
 * checksums (also public in twist/data.h). */
#ifndef TW_FNV1A_INIT
#define TW_FNV1A_INIT 0xcbf29ce484222325ull
#endif
uint64_t tw_fnv1a64(uint64_t hash, const void *data, size_t bytes);

/* ------------------------------------------------------------------------------------------------
 * Tuning cache: the kernel variant each (device, driver, op, shape class) was measured to run
 * fastest, shared by every backend that tunes (src/core/tune_cache.c).
 *
 * One text file per device in tw_user_cache_dir(): tune-<backend>-<16 hex digits of the FNV-1a of
 * `identity`>.txt, holding
 *     twist-tune 1
 *     driver <driver version string>
 *     <key> <variant>            one line per tuned class, e.g. "gemm NN-m12-n12-k12-single v3"
 *     checksum <16 hex digits>   FNV-1a of every byte before this line
 * rewritten whole to a temporary name and renamed into place on every put. A file written for
 * another driver version, or one that fails any check (header, line syntax, checksum), is
 * ignored with a note (tw_note) and replaced by the next put: never trusted. An unwritable
 * directory only keeps the choices in memory. Keys and variants are single words (no spaces)
 * below 96 characters; a cache holds at most 512 entries (later puts stay in memory only).
 * ---------------------------------------------------------------------------------------------- */
typedef struct tw_tune_cache tw_tune_cache;

/* Opens (reads) the cache of one device. `backend` is "opencl", "vulkan", ...; `identity` names
 * the device precisely (platform, device name, vendor id...); `driver` is its driver version.
 * NULL only when out of memory. */
tw_tune_cache *tw_tune_cache_open(const char *backend, const char *identity, const char *driver);
void tw_tune_cache_close(tw_tune_cache *cache);

/* The variant stored for `key`, or NULL. The pointer lives until the next put or close. */
const char *tw_tune_cache_get(const tw_tune_cache *cache, const char *key);

/* Stores key -> variant (replacing an older entry) and rewrites the file. False when it could
 * not be written (the entry is still kept in memory) or the key/variant is not a single word. */
bool tw_tune_cache_put(tw_tune_cache *cache, const char *key, const char *variant);

/* Forgets every entry (memory and file): `twist tune --retune`. */
void tw_tune_cache_clear(tw_tune_cache *cache);

/* The path of the cache file ("" when there is no cache directory). */
const char *tw_tune_cache_path(const tw_tune_cache *cache);

/* What the environment asks of tuners, read at each call:
 *   TWIST_TUNE unset or "auto": time candidates on the first call of an untuned shape class,
 *                               then use the cached choice
 *   TWIST_TUNE=off:             no timing: the backend's default variant for the shape
 *   TWIST_TUNE=verbose:         as auto, and print each measurement to stderr
 * Unknown values are treated as auto, with a note. */
typedef enum tw_tune_mode { TW_TUNE_MODE_AUTO = 0, TW_TUNE_MODE_OFF, TW_TUNE_MODE_VERBOSE } tw_tune_mode;
tw_tune_mode tw_tune_mode_from_env(void);

/* ------------------------------------------------------------------------------------------------
 * Attention kernel variants (src/core/attention_variants.c): what the Vulkan, OpenCL and CUDA
 * backends share to choose between their attention_fwd / attention_bwd variants (e.g. "rows": one
 * work-item per pair of rows, for CPU devices; "tiled": flash-attention tiles in shared memory,
 * for GPUs).
 *
 * The shape class of a call is "<op> d<D>-t<T bucket>" (T rounded up to a power of two, at least
 * 64), the key under which a tw_tune_cache stores the variant measured fastest.
 * tw_attention_measure times the forward variants with usable[v] set on the caller's own
 * tensors (the forward only writes out and lse, so this needs no device memory beyond the op's:
 * the conformance suite's scratch limits hold on the measuring call too): the reference variant
 * first (the backend's default; its results are kept on the host), then each other one once
 * (building its kernels; results compared with the reference's, a variant that fails or
 * disagrees beyond 1e-3 of the largest value is skipped, one 8 times slower than the best so far
 * is not timed further), each timed as the best of two runs.
 * *best gets the fastest index and ms[v] (may be NULL) each time in milliseconds (negative: not
 * run or skipped); out and lse hold some variant's results after it (the caller then runs the
 * chosen one). The backward cannot
 * be run twice in place (it adds into the gradients), so backends give attention_bwd the
 * variant their forward measured for the same class.
 * ---------------------------------------------------------------------------------------------- */
typedef tw_status (*tw_attention_variant_fn)(void *context, const tw_attention_args *args,
                                             int variant);

/* Writes the shape class of (op, head_dim, seq_len) into key (at least 48 bytes). */
void tw_attention_class_key(char *key, size_t capacity, const char *op, int head_dim,
                            int seq_len);

tw_status tw_attention_measure(tw_device *device, const tw_attention_args *args,
                               tw_attention_variant_fn fwd, void *context, int reference,
                               const bool *usable, int count, int *best, double *ms);

/* The choice every backend makes the same way once a call is neither forced nor ruled out:
 * the variant cached for the call's class, or (a forward of an uncached class) the one
 * tw_attention_measure finds now among `count` variants named `names`, stored in `cache` for the
 * class's forward and backward. A winner other than `reference` must take at most `margin` of
 * the reference's time (1: fastest wins; CPU devices use 0.9 so noise cannot pick a kernel
 * written for GPUs). *variant holds the default on entry and keeps it where nothing is cached
 * or measured (a backward before its class's forward). TWIST_TUNE=verbose prints the times. */
typedef struct tw_attention_tuning {
    tw_device *device;
    tw_tune_cache *cache; /* may be NULL: measured, not kept */
    const char *backend;  /* "vulkan", ... for messages */
    const char *const *names;
    int count;
    tw_attention_variant_fn fwd;
    void *context;
    int reference;
    double margin;
} tw_attention_tuning;

tw_status tw_attention_tuned_variant(const tw_attention_tuning *tuning,
                                     const tw_attention_args *args, bool backward, int *variant);

/* 0 for "attention_fwd", 1 for "attention_bwd", -1 otherwise. */
int tw_attention_op_index(const char *op);

/* tw_device_force_kernel_variant for attention: forced[index of op] = the variant called `name`
 * among names (NULL: -1, back to the tuner). TW_ERR_NOT_FOUND naming the backend and the
 * variants otherwise. */
tw_status tw_attention_force(int forced[2], const char *backend, const char *op, const char *name,
                             const char *const *names, int count);

#ifdef __cplusplus
}
#endif

#endif
