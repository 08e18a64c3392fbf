/* twist OpenCL backend: program builds with an on-disk binary cache, and the per-family kernel
 * table.
 *
 * Building OpenCL C takes 0.1-2 s per program on PoCL and most GPU drivers, every process. So a
 * built program's binary is stored in the cache directory under a key that changes whenever
 * anything that could change the binary does:
 *   key = hash(platform name + version, device name, driver version, source, options)
 * Directory: $TWIST_CACHE_DIR, else $XDG_CACHE_HOME/twist, else $HOME/.cache/twist; created on
 * first use. An unwritable directory only disables caching. A file is
 *   "TWCLBIN1" | u64 binary length | u64 FNV-1a of the binary | binary
 * written to a temporary name and renamed into place, so readers never see half a file; a file
 * that fails any check, or a binary the driver refuses, falls back to a build from source. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cl_internal.h"

static const char cache_magic[8] = {'T', 'W', 'C', 'L', 'B', 'I', 'N', '1'};

/* ------------------------------------------------------------------------------------------------
 * Directory
 * ---------------------------------------------------------------------------------------------- */

/* mkdir -p; true if the directory exists afterwards. */

static void platform_string(cl_platform_id platform, cl_platform_info what, char *out,
                            size_t size) {
    out[0] = '\0';
    if (clGetPlatformInfo(platform, what, size, out, NULL) != CL_SUCCESS) out[0] = '\0';
    out[size - 1] = '\0';
}

void tw_cl_cache_init(tw_cl_context *cl) {
    char platform_name[256], platform_version[256];
    platform_string(cl->platform, CL_PLATFORM_NAME, platform_name, sizeof platform_name);
    platform_string(cl->platform, CL_PLATFORM_VERSION, platform_version, sizeof platform_version);
    const tw_device_info *info = tw_device_get_info(cl->device);
    snprintf(cl->identity, sizeof cl->identity, "%s|%s|%s|%s", platform_name, platform_version,
             info->name, info->driver);

    cl->cache_usable = tw_user_cache_dir(cl->cache_dir, sizeof cl->cache_dir) &&
                       tw_make_dirs(cl->cache_dir) && access(cl->cache_dir, W_OK | X_OK) == 0;
}

/* ------------------------------------------------------------------------------------------------
 * Small named files (read whole, written atomically)
 * ---------------------------------------------------------------------------------------------- */

static bool cache_path(const tw_cl_context *cl, const char *name, char *path, size_t size) {
    if (!cl->cache_usable) return false;
    int written = snprintf(path, size, "%s/%s", cl->cache_dir, name);
    return written > 0 && written < (int)size;
}

bool tw_cl_cache_read(const tw_cl_context *cl, const char *name, char *data, size_t capacity,
                      size_t *length) {
    char path[4200];
    if (!cache_path(cl, name, path, sizeof path)) return false;
    FILE *file = fopen(path, "rb");
    if (!file) return false;
    *length = fread(data, 1, capacity, file);
    bool ok = !ferror(file);
    fclose(file);
    return ok;
}

/* Best effort: a failure leaves the cache without this entry, never an error. */
static void write_atomically(const tw_cl_context *cl, const char *name, const void *head,
                             size_t head_length, const void *data, size_t length) {
    char path[4200], temp[4300];
    if (!cache_path(cl, name, path, sizeof path)) return;
    snprintf(temp, sizeof temp, "%s.tmp.%ld", path, (long)getpid());
    FILE *file = fopen(temp, "wb");
    if (!file) return;
    bool ok = fwrite(head, 1, head_length, file) == head_length &&
              fwrite(data, 1, length, file) == length;
    ok = (fclose(file) == 0) && ok;
    if (!ok || rename(temp, path) != 0) remove(temp);
}

void tw_cl_cache_write(const tw_cl_context *cl, const char *name, const void *data,
                       size_t length) {
    write_atomically(cl, name, "", 0, data, length);
}

/* ------------------------------------------------------------------------------------------------
 * Program binaries
 * ---------------------------------------------------------------------------------------------- */

/* Reads and checks a cache file; the caller frees *binary. */
static bool load_binary(const char *path, unsigned char **binary, size_t *length) {
    FILE *file = fopen(path, "rb");
    if (!file) return false;
    unsigned char head[24];
    bool ok = fread(head, 1, sizeof head, file) == sizeof head &&
              memcmp(head, cache_magic, sizeof cache_magic) == 0;
    uint64_t size = 0, checksum = 0;
    if (ok) {
        memcpy(&size, head + 8, 8);
        memcpy(&checksum, head + 16, 8);
        ok = size > 0 && size < ((uint64_t)1 << 32);
    }
    unsigned char *data = ok ? malloc((size_t)size) : NULL;
    ok = data && fread(data, 1, (size_t)size, file) == size && fgetc(file) == EOF &&
         tw_fnv1a64(TW_FNV1A_INIT, data, (size_t)size) == checksum;
    fclose(file);
    if (!ok) {
        free(data);
        return false;
    }
    *binary = data;
    *length = (size_t)size;
    return true;
}

static void store_binary(const tw_cl_context *cl, const char *name, cl_program program) {
    size_t size = 0;
    if (clGetProgramInfo(program, CL_PROGRAM_BINARY_SIZES, sizeof size, &size, NULL) !=
            CL_SUCCESS || size == 0)
        return;
    unsigned char *binary = malloc(size);
    if (!binary) return;
    if (clGetProgramInfo(program, CL_PROGRAM_BINARIES, sizeof binary, &binary, NULL) ==
        CL_SUCCESS) {
        unsigned char head[24];
        uint64_t size64 = size, checksum = tw_fnv1a64(TW_FNV1A_INIT, binary, size);
        memcpy(head, cache_magic, 8);
        memcpy(head + 8, &size64, 8);
        memcpy(head + 16, &checksum, 8);
        write_atomically(cl, name, head, sizeof head, binary, size);
    }
    free(binary);
}

/* A program from a cached binary, or NULL (a missing or bad entry is not an error). */
static cl_program program_from_cache(tw_cl_context *cl, const char *name, const char *options) {
    char path[4200];
    unsigned char *binary = NULL;
    size_t length = 0;
    if (!cache_path(cl, name, path, sizeof path) || !load_binary(path, &binary, &length))
        return NULL;
    cl_int err = CL_SUCCESS, binary_status = CL_SUCCESS;
    const unsigned char *binaries[1] = {binary};
    cl_program program = clCreateProgramWithBinary(cl->context, 1, &cl->device_id, &length,
                                                   binaries, &binary_status, &err);
    free(binary);
    if (err != CL_SUCCESS || binary_status != CL_SUCCESS) {
        if (program) clReleaseProgram(program);
        return NULL;
    }
    if (clBuildProgram(program, 1, &cl->device_id, options, NULL, NULL) != CL_SUCCESS) {
        clReleaseProgram(program);
        return NULL;
    }
    return program;
}

static tw_status build_error(tw_cl_context *cl, cl_program program, cl_int err,
                             const char *options) {
    size_t size = 0;
    clGetProgramBuildInfo(program, cl->device_id, CL_PROGRAM_BUILD_LOG, 0, NULL, &size);
    char *log = malloc(size + 1);
    if (log) {
        log[0] = '\0';
        clGetProgramBuildInfo(program, cl->device_id, CL_PROGRAM_BUILD_LOG, size, log, NULL);
        log[size] = '\0';
    }
    tw_status status = tw_error(TW_ERR_BACKEND,
                                "opencl: clBuildProgram failed: %s (%d), options \"%s\", build "
                                "log:\n%.3000s",
                                tw_cl_error_name(err), (int)err, options, log ? log : "");
    free(log);
    return status;
}

tw_status tw_cl_build_program(void *build_context, const char *source, size_t length,
                              const char *options, cl_program *out) {
    tw_cl_context *cl = build_context;
    *out = NULL;
    uint64_t key = tw_fnv1a64(TW_FNV1A_INIT, cl->identity, strlen(cl->identity));
    key = tw_fnv1a64(key, "\0", 1);
    key = tw_fnv1a64(key, source, length);
    key = tw_fnv1a64(key, "\0", 1);
    key = tw_fnv1a64(key, options, strlen(options));
    char name[64];
    snprintf(name, sizeof name, "cl-%016llx.bin", (unsigned long long)key);

    cl_program program = program_from_cache(cl, name, options);
    if (program) {
        *out = program;
        return TW_OK;
    }
    cl_int err = CL_SUCCESS;
    program = clCreateProgramWithSource(cl->context, 1, &source, &length, &err);
    if (err != CL_SUCCESS) return tw_cl_fail(err, "clCreateProgramWithSource");
    err = clBuildProgram(program, 1, &cl->device_id, options, NULL, NULL);
    if (err != CL_SUCCESS) {
        tw_status status = build_error(cl, program, err, options);
        clReleaseProgram(program);
        return status;
    }
    store_binary(cl, name, program);
    *out = program;
    return TW_OK;
}

/* ------------------------------------------------------------------------------------------------
 * Kernel families
 * ---------------------------------------------------------------------------------------------- */

/* kernels/<family>.cl, embedded at build time (cmake/embed.cmake). */
extern const char twist_cl_elementwise_cl[], twist_cl_reduce_cl[], twist_cl_layernorm_cl[],
    twist_cl_softmax_cl[], twist_cl_xent_cl[], twist_cl_embedding_cl[], twist_cl_adamw_cl[],
    twist_cl_gather_cl[], twist_cl_dtype_cl[], twist_cl_convert_cl[], twist_cl_gemm16_cl[];
extern const size_t twist_cl_elementwise_cl_size, twist_cl_reduce_cl_size,
    twist_cl_layernorm_cl_size, twist_cl_softmax_cl_size, twist_cl_xent_cl_size,
    twist_cl_embedding_cl_size, twist_cl_adamw_cl_size, twist_cl_gather_cl_size,
    twist_cl_dtype_cl_size, twist_cl_convert_cl_size, twist_cl_gemm16_cl_size;

static void family_source(tw_cl_family family, const char **source, size_t *length) {
    switch (family) {
#define TW_CL_SOURCE(id, file)        \
    case id:                          \
        *source = twist_cl_##file;    \
        *length = twist_cl_##file##_size; \
        return;
        TW_CL_SOURCE(TW_CL_ELEMENTWISE, elementwise_cl)
        TW_CL_SOURCE(TW_CL_REDUCE, reduce_cl)
        TW_CL_SOURCE(TW_CL_LAYERNORM, layernorm_cl)
        TW_CL_SOURCE(TW_CL_SOFTMAX, softmax_cl)
        TW_CL_SOURCE(TW_CL_XENT, xent_cl)
        TW_CL_SOURCE(TW_CL_EMBEDDING, embedding_cl)
        TW_CL_SOURCE(TW_CL_ADAMW, adamw_cl)
        TW_CL_SOURCE(TW_CL_GATHER, gather_cl)
        TW_CL_SOURCE(TW_CL_CONVERT, convert_cl)
        TW_CL_SOURCE(TW_CL_GEMM16, gemm16_cl)
#undef TW_CL_SOURCE
    default: *source = ""; *length = 0;
    }
}

/* The build options select the data type; the source is kernels/dtype.cl followed by the
 * family's file (the cache key covers both, and the options). */
tw_status tw_cl_build_typed(tw_cl_context *cl, const char *source, size_t length, tw_dtype dtype,
                            const char *extra_options, cl_program *out) {
    size_t prelude = twist_cl_dtype_cl_size;
    char *joined = malloc(prelude + 1 + length + 1);
    if (!joined) return tw_error(TW_ERR_OUT_OF_MEMORY, "opencl: out of host memory");
    memcpy(joined, twist_cl_dtype_cl, prelude);
    joined[prelude] = '\n';
    memcpy(joined + prelude + 1, source, length);
    joined[prelude + 1 + length] = '\0';
    char options[256];
    snprintf(options, sizeof options, "-DTW_DTYPE=%d%s%s", (int)dtype,
             extra_options[0] ? " " : "", extra_options);
    tw_status status = tw_cl_build_program(cl, joined, prelude + 1 + length, options, out);
    free(joined);
    return status;
}

tw_status tw_cl_kernel(tw_cl_context *cl, tw_cl_family family, const char *name,
                       cl_kernel *out) {
    return tw_cl_kernel_typed(cl, family, TW_DTYPE_F32, name, out);
}

tw_status tw_cl_kernel_typed(tw_cl_context *cl, tw_cl_family family, tw_dtype dtype,
                             const char *name, cl_kernel *out) {
    if ((int)dtype < 0 || (int)dtype >= TW_CL_DTYPES)
        return tw_error(TW_ERR_BACKEND, "opencl: no %s kernels for data type %s", name,
                        tw_dtype_name(dtype));
    for (int i = 0; i < cl->kernel_count; i++) {
        if (cl->kernels[i].family == family && cl->kernels[i].dtype == dtype &&
            strcmp(cl->kernels[i].name, name) == 0) {
            *out = cl->kernels[i].kernel;
            return TW_OK;
        }
    }
    if (cl->kernel_count == TW_CL_MAX_KERNELS)
        return tw_error(TW_ERR_BACKEND, "opencl: kernel table full creating %s", name);
    cl_program *program = &cl->programs[family][dtype];
    if (!*program) {
        const char *source;
        size_t length;
        family_source(family, &source, &length);
        tw_status status = tw_cl_build_typed(cl, source, length, dtype, "", program);
        if (status != TW_OK) return status;
    }
    cl_int err = CL_SUCCESS;
    cl_kernel kernel = clCreateKernel(*program, name, &err);
    if (err != CL_SUCCESS) return tw_cl_fail(err, "clCreateKernel");
    cl->kernels[cl->kernel_count++] = (tw_cl_kernel_entry){family, dtype, name, kernel};
    *out = kernel;
    return TW_OK;
}

void tw_cl_release_programs(tw_cl_context *cl) {
    for (int i = 0; i < cl->kernel_count; i++) clReleaseKernel(cl->kernels[i].kernel);
    cl->kernel_count = 0;
    for (int f = 0; f < TW_CL_FAMILY_COUNT; f++) {
        for (int t = 0; t < TW_CL_DTYPES; t++) {
            if (cl->programs[f][t]) clReleaseProgram(cl->programs[f][t]);
            cl->programs[f][t] = NULL;
        }
    }
}

/* Work-groups of 64 work-items (or less where the device or the kernel allows less: kernels with
 * large private arrays, such as attention at large D, may be limited on GPUs): a multiple of
 * every GPU's wavefront, and on CPU devices a chunk the compiler can vectorise across. */
tw_status tw_cl_launch_1d(tw_cl_context *cl, cl_kernel kernel, size_t items, const char *what) {
    if (items == 0) return TW_OK;
    size_t local = cl->max_group < 64 ? cl->max_group : 64;
    size_t kernel_max = 0;
    if (clGetKernelWorkGroupInfo(kernel, cl->device_id, CL_KERNEL_WORK_GROUP_SIZE,
                                 sizeof kernel_max, &kernel_max, NULL) == CL_SUCCESS &&
        kernel_max > 0 && kernel_max < local)
        local = kernel_max;
    if (items < local) local = items;
    size_t global = (items + local - 1) / local * local;
    cl_int err = clEnqueueNDRangeKernel(cl->queue, kernel, 1, NULL, &global, &local, 0, NULL, NULL);
    if (err != CL_SUCCESS) {
        char message[160];
        snprintf(message, sizeof message, "clEnqueueNDRangeKernel(%s)", what);
        return tw_cl_fail(err, message);
    }
    return TW_OK;
}
