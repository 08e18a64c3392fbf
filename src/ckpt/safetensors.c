/* safetensors reader and writer (format in include/twist/checkpoint.h).
 *
 * The reader takes the whole file into memory and validates all of it before returning: header
 * length, JSON, every tensor's dtype, shape and byte range, that the ranges tile the data region
 * exactly, and unique names. The header JSON is parsed and printed with cJSON. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "ckpt/ckpt_internal.h"
#include "core/paths.h"
#include "twist/dtype.h"
#include "twist/error.h"

/* Larger headers are refused (as the reference implementation does) before parsing. */
#define TW_ST_MAX_HEADER (100u * 1024u * 1024u)
/* Integers in the header must be exact in a double (cJSON's number type). */
#define TW_ST_MAX_INT 9007199254740992.0 /* 2^53 */

static bool host_is_little_endian(void) {
    const uint16_t one = 1;
    uint8_t first;
    memcpy(&first, &one, 1);
    return first == 1;
}

static tw_status refuse_big_endian(const char *path) {
    return tw_error(TW_ERR_UNSUPPORTED,
                    "%s: safetensors data is little-endian and this host is big-endian; twist "
                    "supports little-endian hosts only",
                    path);
}

/* "[256, 768]" */
static void format_shape(char *buf, size_t size, int ndim, const int64_t *dims) {
    size_t used = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < ndim && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%s%lld", i ? ", " : "",
                                 (long long)dims[i]);
    if (used < size) snprintf(buf + used, size - used, "]");
}

/* ------------------------------------------------------------------------------------------ */
/* File helpers                                                                               */
/* ------------------------------------------------------------------------------------------ */

tw_status tw_ckpt_write_all(int fd, const char *path, const void *data, size_t size,
                            tw_sha256 *hash) {
    const uint8_t *p = data;
    if (hash && size) tw_sha256_update(hash, data, size);
    while (size > 0) {
        /* Chunks of at most 1 GiB: some kernels cap a single write near 2 GiB. */
        size_t chunk = size < (1u << 30) ? size : (1u << 30);
        ssize_t written = write(fd, p, chunk);
        if (written < 0) {
            if (errno == EINTR) continue;
            return tw_error(TW_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        }
        p += written;
        size -= (size_t)written;
    }
    return TW_OK;
}

tw_status tw_ckpt_read_file(const char *path, uint8_t **bytes, size_t *size) {
    char *data = NULL;
    tw_status status = tw_read_file(path, &data, size);
    *bytes = (uint8_t *)data;
    return status;
}

tw_status tw_ckpt_fsync_dir(const char *path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return tw_error(TW_ERR_IO, "%s: cannot open directory: %s", path, strerror(errno));
    if (fsync(fd) != 0) {
        int err = errno;
        close(fd);
        return tw_error(TW_ERR_IO, "%s: fsync of the directory failed: %s", path, strerror(err));
    }
    close(fd);
    return TW_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Writer                                                                                     */
/* ------------------------------------------------------------------------------------------ */

typedef struct st_entry {
    char *name;
    int ndim;
    int64_t dims[TW_TENSOR_MAX_DIMS];
    size_t count;
    const void *data;  /* borrowed fp32, or == owned */
    void *owned;
    bool bf16; /* stored as BF16 (owned, converted when added), else F32 */
} st_entry;

struct tw_safetensors_writer {
    st_entry *entries;
    int count, capacity;
    char **meta_keys, **meta_values;
    int meta_count, meta_capacity;
};

tw_status tw_safetensors_writer_create(tw_safetensors_writer **out) {
    if (!out) return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_safetensors_writer_create: out is NULL");
    *out = calloc(1, sizeof **out);
    if (!*out) return tw_error(TW_ERR_OUT_OF_MEMORY, "tw_safetensors_writer_create: no memory");
    return TW_OK;
}

void tw_safetensors_writer_destroy(tw_safetensors_writer *writer) {
    if (!writer) return;
    for (int i = 0; i < writer->count; i++) {
        free(writer->entries[i].name);
        free(writer->entries[i].owned);
    }
    for (int i = 0; i < writer->meta_count; i++) {
        free(writer->meta_keys[i]);
        free(writer->meta_values[i]);
    }
    free(writer->entries);
    free(writer->meta_keys);
    free(writer->meta_values);
    free(writer);
}

int tw_safetensors_writer_count(const tw_safetensors_writer *writer) {
    return writer ? writer->count : 0;
}

static tw_status writer_add(tw_safetensors_writer *writer, const char *name, int ndim,
                            const int64_t *dims, const float *data, bool copy, bool bf16) {
    if (!writer || !name)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "safetensors writer: writer or name is NULL");
    if (!name[0] || strcmp(name, "__metadata__") == 0)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "safetensors writer: invalid tensor name '%s'",
                        name);
    if (ndim < 0 || ndim > TW_TENSOR_MAX_DIMS || (ndim > 0 && !dims))
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "safetensors writer: tensor '%s': ndim %d is outside [0, %d]", name, ndim,
                        TW_TENSOR_MAX_DIMS);
    /* count * 4 bytes must fit size_t and stay an exact double in the header. */
    double limit = TW_ST_MAX_INT / 4.0;
    size_t count = 1;
    for (int i = 0; i < ndim; i++) {
        if (dims[i] < 0 || (double)dims[i] > limit)
            return tw_error(TW_ERR_INVALID_ARGUMENT,
                            "safetensors writer: tensor '%s': dimension %d is %lld", name, i,
                            (long long)dims[i]);
        if (dims[i] != 0 && (double)count * (double)dims[i] > limit)
            return tw_error(TW_ERR_INVALID_ARGUMENT, "safetensors writer: tensor '%s' is too large",
                            name);
        count *= (size_t)dims[i];
    }
    if (count > 0 && !data)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "safetensors writer: tensor '%s': data is NULL",
                        name);
    for (int i = 0; i < writer->count; i++)
        if (strcmp(writer->entries[i].name, name) == 0)
            return tw_error(TW_ERR_INVALID_ARGUMENT,
                            "safetensors writer: tensor '%s' was already added", name);
    if (writer->count == writer->capacity) {
        int capacity = writer->capacity ? 2 * writer->capacity : 16;
        st_entry *grown = realloc(writer->entries, (size_t)capacity * sizeof *grown);
        if (!grown) return tw_error(TW_ERR_OUT_OF_MEMORY, "safetensors writer: no memory");
        writer->entries = grown;
        writer->capacity = capacity;
    }
    st_entry entry = {0};
    entry.name = strdup(name);
    if (!entry.name) return tw_error(TW_ERR_OUT_OF_MEMORY, "safetensors writer: no memory");
    entry.ndim = ndim;
    for (int i = 0; i < ndim; i++) entry.dims[i] = dims[i];
    entry.count = count;
    entry.data = count ? data : NULL;
    entry.bf16 = bf16;
    if (bf16 && count) {
        uint16_t *half = malloc(count * sizeof *half);
        if (!half) {
            free(entry.name);
            return tw_error(TW_ERR_OUT_OF_MEMORY,
                            "safetensors writer: tensor '%s': cannot copy %zu values", name, count);
        }
        for (size_t i = 0; i < count; i++) half[i] = tw_f32_to_bf16(data[i]);
        entry.owned = half;
        entry.data = half;
    } else if (copy && count) {
        entry.owned = malloc(count * sizeof(float));
        if (!entry.owned) {
            free(entry.name);
            return tw_error(TW_ERR_OUT_OF_MEMORY,
                            "safetensors writer: tensor '%s': cannot copy %zu floats", name, count);
        }
        memcpy(entry.owned, data, count * sizeof(float));
        entry.data = entry.owned;
    }
    writer->entries[writer->count++] = entry;
    return TW_OK;
}

tw_status tw_safetensors_writer_add(tw_safetensors_writer *writer, const char *name, int ndim,
                                    const int64_t *dims, const float *data) {
    return writer_add(writer, name, ndim, dims, data, false, false);
}

tw_status tw_safetensors_writer_add_bf16(tw_safetensors_writer *writer, const char *name,
                                         int ndim, const int64_t *dims, const float *data) {
    return writer_add(writer, name, ndim, dims, data, true, true);
}

tw_status tw_safetensors_writer_add_copy(tw_safetensors_writer *writer, const char *name,
                                         int ndim, const int64_t *dims, const float *data) {
    return writer_add(writer, name, ndim, dims, data, true, false);
}

tw_status tw_safetensors_writer_set_metadata(tw_safetensors_writer *writer, const char *key,
                                             const char *value) {
    if (!writer || !key || !value)
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "safetensors writer: metadata key or value is NULL");
    char *value_copy = strdup(value);
    if (!value_copy) return tw_error(TW_ERR_OUT_OF_MEMORY, "safetensors writer: no memory");
    for (int i = 0; i < writer->meta_count; i++)
        if (strcmp(writer->meta_keys[i], key) == 0) {
            free(writer->meta_values[i]);
            writer->meta_values[i] = value_copy;
            return TW_OK;
        }
    char *key_copy = strdup(key);
    if (!key_copy) {
        free(value_copy);
        return tw_error(TW_ERR_OUT_OF_MEMORY, "safetensors writer: no memory");
    }
    if (writer->meta_count == writer->meta_capacity) {
        int capacity = writer->meta_capacity ? 2 * writer->meta_capacity : 8;
        char **keys = realloc(writer->meta_keys, (size_t)capacity * sizeof *keys);
        if (keys) writer->meta_keys = keys;
        char **values = keys ? realloc(writer->meta_values, (size_t)capacity * sizeof *values)
                             : NULL;
        if (values) writer->meta_values = values;
        if (!keys || !values) {
            free(key_copy);
            free(value_copy);
            return tw_error(TW_ERR_OUT_OF_MEMORY, "safetensors writer: no memory");
        }
        writer->meta_capacity = capacity;
    }
    writer->meta_keys[writer->meta_count] = key_copy;
    writer->meta_values[writer->meta_count] = value_copy;
    writer->meta_count++;
    return TW_OK;
}

/* The JSON header text (unpadded), malloc'd. Tensors are laid out in insertion order. */
static tw_status build_header(const tw_safetensors_writer *writer, const char *path, char **out) {
    *out = NULL;
    cJSON *root = cJSON_CreateObject();
    if (!root) goto oom;
    if (writer->meta_count > 0) {
        cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
        if (!meta) goto oom;
        for (int i = 0; i < writer->meta_count; i++)
            if (!cJSON_AddStringToObject(meta, writer->meta_keys[i], writer->meta_values[i]))
                goto oom;
    }
    uint64_t offset = 0;
    for (int i = 0; i < writer->count; i++) {
        const st_entry *e = &writer->entries[i];
        cJSON *t = cJSON_AddObjectToObject(root, e->name);
        if (!t || !cJSON_AddStringToObject(t, "dtype", e->bf16 ? "BF16" : "F32")) goto oom;
        cJSON *shape = cJSON_AddArrayToObject(t, "shape");
        if (!shape) goto oom;
        for (int d = 0; d < e->ndim; d++) {
            cJSON *n = cJSON_CreateNumber((double)e->dims[d]);
            if (!n || !cJSON_AddItemToArray(shape, n)) goto oom;
        }
        uint64_t end = offset + (uint64_t)e->count * (e->bf16 ? 2u : sizeof(float));
        if ((double)end > TW_ST_MAX_INT) {
            cJSON_Delete(root);
            return tw_error(TW_ERR_INVALID_ARGUMENT, "%s: tensors add up to more than 2^53 bytes",
                            path);
        }
        cJSON *offsets = cJSON_AddArrayToObject(t, "data_offsets");
        if (!offsets) goto oom;
        cJSON *b = cJSON_CreateNumber((double)offset), *en = cJSON_CreateNumber((double)end);
        if (!b || !cJSON_AddItemToArray(offsets, b)) {
            cJSON_Delete(en);
            goto oom;
        }
        if (!en || !cJSON_AddItemToArray(offsets, en)) goto oom;
        offset = end;
    }
    *out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!*out) return tw_error(TW_ERR_OUT_OF_MEMORY, "%s: cannot print the header", path);
    return TW_OK;
oom:
    cJSON_Delete(root);
    return tw_error(TW_ERR_OUT_OF_MEMORY, "%s: no memory for the header", path);
}

tw_status tw_safetensors_write_fd(const tw_safetensors_writer *writer, int fd, const char *path,
                                  tw_sha256 *hash, uint64_t *size) {
    if (!host_is_little_endian()) return refuse_big_endian(path);
    char *header;
    tw_status status = build_header(writer, path, &header);
    if (status != TW_OK) return status;
    size_t text = strlen(header);
    size_t padded = (text + 7) & ~(size_t)7; /* 8 + padded is a multiple of 8 */
    uint8_t *prefix = malloc(8 + padded);
    if (!prefix) {
        free(header);
        return tw_error(TW_ERR_OUT_OF_MEMORY, "%s: no memory for the header", path);
    }
    for (int i = 0; i < 8; i++) prefix[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    memcpy(prefix + 8, header, text);
    memset(prefix + 8 + text, ' ', padded - text);
    free(header);
    status = tw_ckpt_write_all(fd, path, prefix, 8 + padded, hash);
    free(prefix);
    uint64_t total = 8 + padded;
    for (int i = 0; status == TW_OK && i < writer->count; i++) {
        const st_entry *e = &writer->entries[i];
        const size_t bytes = e->count * (e->bf16 ? 2u : sizeof(float));
        status = tw_ckpt_write_all(fd, path, e->data, bytes, hash);
        total += bytes;
    }
    if (status == TW_OK && size) *size = total;
    return status;
}

tw_status tw_safetensors_write(const tw_safetensors_writer *writer, const char *path) {
    if (!writer || !path)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_safetensors_write: writer or path is NULL");
    size_t len = strlen(path);
    char *tmp = malloc(len + 32);
    char *dir = malloc(len + 2);
    if (!tmp || !dir) {
        free(tmp);
        free(dir);
        return tw_error(TW_ERR_OUT_OF_MEMORY, "%s: no memory", path);
    }
    snprintf(tmp, len + 32, "%s.tmp-%ld", path, (long)getpid());
    /* The directory holding path, for the fsync that makes the rename durable. */
    memcpy(dir, path, len + 1);
    char *slash = strrchr(dir, '/');
    if (!slash) strcpy(dir, ".");
    else if (slash == dir) dir[1] = '\0';
    else *slash = '\0';

    tw_status status = TW_OK;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        status = tw_error(TW_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
        goto done;
    }
    status = tw_safetensors_write_fd(writer, fd, path, NULL, NULL);
    if (status == TW_OK && fsync(fd) != 0)
        status = tw_error(TW_ERR_IO, "%s: fsync failed: %s", tmp, strerror(errno));
    if (close(fd) != 0 && status == TW_OK)
        status = tw_error(TW_ERR_IO, "%s: close failed: %s", tmp, strerror(errno));
    if (status == TW_OK && rename(tmp, path) != 0)
        status = tw_error(TW_ERR_IO, "%s: cannot rename %s over it: %s", path, tmp,
                          strerror(errno));
    if (status != TW_OK) unlink(tmp); /* no partial output */
    else status = tw_ckpt_fsync_dir(dir);
done:
    free(tmp);
    free(dir);
    return status;
}

/* ------------------------------------------------------------------------------------------ */
/* Reader                                                                                     */
/* ------------------------------------------------------------------------------------------ */

typedef struct st_tensor {
    char *name;
    char dtype[12];
    int elem_size;
    int ndim;
    int64_t dims[TW_TENSOR_MAX_DIMS];
    size_t count;
    uint64_t begin, end; /* in the data region */
    float *widened;      /* BF16 and F16 tensors: their values as fp32 (owned), for lookups */
} st_tensor;

struct tw_safetensors {
    char *path;
    uint8_t *bytes;     /* the whole file (owned) */
    const uint8_t *data; /* the data region, 8-byte aligned within `bytes` or moved to its start */
    uint64_t data_size;
    st_tensor *tensors; /* header order */
    int count;
    st_tensor **by_name; /* sorted by name, for lookup */
    char **meta_keys, **meta_values;
    int meta_count;
};

static const struct {
    const char *name;
    int size;
} k_dtypes[] = {{"F32", 4}, {"F16", 2}, {"BF16", 2}, {"F64", 8},     {"I64", 8},
                {"I32", 4}, {"I16", 2}, {"I8", 1},   {"U64", 8},     {"U32", 4},
                {"U16", 2}, {"U8", 1},  {"BOOL", 1}, {"F8_E5M2", 1}, {"F8_E4M3", 1}};

void tw_safetensors_free(tw_safetensors *file) {
    if (!file) return;
    for (int i = 0; i < file->count; i++) {
        free(file->tensors[i].name);
        free(file->tensors[i].widened);
    }
    for (int i = 0; i < file->meta_count; i++) {
        free(file->meta_keys[i]);
        free(file->meta_values[i]);
    }
    free(file->tensors);
    free(file->by_name);
    free(file->meta_keys);
    free(file->meta_values);
    free(file->bytes);
    free(file->path);
    free(file);
}

/* An integer in [0, 2^53] from a JSON number, or false. */
static bool json_uint(const cJSON *item, uint64_t *out) {
    if (!cJSON_IsNumber(item)) return false;
    double v = item->valuedouble;
    if (!(v >= 0.0) || v > TW_ST_MAX_INT || floor(v) != v) return false;
    *out = (uint64_t)v;
    return true;
}

static int compare_by_range(const void *a, const void *b) {
    const st_tensor *x = *(st_tensor *const *)a, *y = *(st_tensor *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

static int compare_by_name(const void *a, const void *b) {
    return strcmp((*(st_tensor *const *)a)->name, (*(st_tensor *const *)b)->name);
}

/* Fills one tensor from its header entry; errors name the file, the tensor and the field. */
static tw_status parse_tensor(const char *path, const cJSON *item, st_tensor *t) {
    const char *name = item->string;
    if (!cJSON_IsObject(item))
        return tw_error(TW_ERR_FORMAT, "%s: tensor '%s': header entry is not a JSON object", path,
                        name);
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(item, "shape");
    const cJSON *offsets = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    if (!dtype)
        return tw_error(TW_ERR_FORMAT, "%s: tensor '%s': missing field 'dtype'", path, name);
    if (!shape)
        return tw_error(TW_ERR_FORMAT, "%s: tensor '%s': missing field 'shape'", path, name);
    if (!offsets)
        return tw_error(TW_ERR_FORMAT, "%s: tensor '%s': missing field 'data_offsets'", path, name);
    if (!cJSON_IsString(dtype))
        return tw_error(TW_ERR_FORMAT, "%s: tensor '%s': field 'dtype' is not a string", path,
                        name);
    for (size_t i = 0; i < sizeof k_dtypes / sizeof k_dtypes[0]; i++)
        if (strcmp(dtype->valuestring, k_dtypes[i].name) == 0) {
            snprintf(t->dtype, sizeof t->dtype, "%s", k_dtypes[i].name);
            t->elem_size = k_dtypes[i].size;
        }
    if (!t->elem_size)
        return tw_error(TW_ERR_FORMAT, "%s: tensor '%s': field 'dtype' has unknown value '%.32s'",
                        path, name, dtype->valuestring);
    if (!cJSON_IsArray(shape))
        return tw_error(TW_ERR_FORMAT, "%s: tensor '%s': field 'shape' is not an array", path,
                        name);
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > TW_TENSOR_MAX_DIMS)
        return tw_error(TW_ERR_UNSUPPORTED, "%s: tensor '%s': field 'shape' has %d dimensions; "
                        "twist reads at most %d", path, name, ndim, TW_TENSOR_MAX_DIMS);
    t->ndim = ndim;
    /* Element count with overflow checks: the byte size must stay below 2^53. */
    double count = 1;
    int d = 0;
    const cJSON *dim;
    cJSON_ArrayForEach(dim, shape) {
        uint64_t v;
        if (!json_uint(dim, &v))
            return tw_error(TW_ERR_FORMAT,
                            "%s: tensor '%s': field 'shape' entry %d is not a non-negative integer",
                            path, name, d);
        t->dims[d++] = (int64_t)v;
        count *= (double)v;
    }
    if (count * t->elem_size > TW_ST_MAX_INT)
        return tw_error(TW_ERR_FORMAT, "%s: tensor '%s': field 'shape' is impossibly large", path,
                        name);
    t->count = (size_t)count;
    uint64_t begin, end;
    if (!cJSON_IsArray(offsets) || cJSON_GetArraySize(offsets) != 2 ||
        !json_uint(cJSON_GetArrayItem(offsets, 0), &begin) ||
        !json_uint(cJSON_GetArrayItem(offsets, 1), &end))
        return tw_error(TW_ERR_FORMAT,
                        "%s: tensor '%s': field 'data_offsets' is not two non-negative integers",
                        path, name);
    if (end < begin)
        return tw_error(TW_ERR_FORMAT,
                        "%s: tensor '%s': field 'data_offsets' [%llu, %llu] ends before it begins",
                        path, name, (unsigned long long)begin, (unsigned long long)end);
    uint64_t need = (uint64_t)t->count * (uint64_t)t->elem_size;
    if (end - begin != need) {
        char text[160];
        format_shape(text, sizeof text, t->ndim, t->dims);
        return tw_error(TW_ERR_FORMAT,
                        "%s: tensor '%s': field 'shape' %s of dtype %s needs %llu bytes but "
                        "'data_offsets' [%llu, %llu] span %llu",
                        path, name, text, t->dtype, (unsigned long long)need,
                        (unsigned long long)begin, (unsigned long long)end,
                        (unsigned long long)(end - begin));
    }
    t->begin = begin;
    t->end = end;
    t->name = strdup(name);
    if (!t->name) return tw_error(TW_ERR_OUT_OF_MEMORY, "%s: no memory", path);
    return TW_OK;
}

/* Checks that the ranges tile [0, data_size) exactly and the names are unique. */
static tw_status check_layout(tw_safetensors *file) {
    const char *path = file->path;
    for (int i = 0; i < file->count; i++) {
        const st_tensor *t = &file->tensors[i];
        if (t->end > file->data_size)
            return tw_error(TW_ERR_FORMAT,
                            "%s: tensor '%s': 'data_offsets' [%llu, %llu] run past the end of the "
                            "data (%llu bytes): the file is truncated or the header is wrong",
                            path, t->name, (unsigned long long)t->begin,
                            (unsigned long long)t->end, (unsigned long long)file->data_size);
    }
    st_tensor **order = malloc((file->count > 0 ? (size_t)file->count : 1) * sizeof *order);
    if (!order) return tw_error(TW_ERR_OUT_OF_MEMORY, "%s: no memory", path);
    for (int i = 0; i < file->count; i++) order[i] = &file->tensors[i];
    qsort(order, (size_t)file->count, sizeof *order, compare_by_range);
    uint64_t expected = 0;
    const st_tensor *previous = NULL;
    for (int i = 0; i < file->count; i++) {
        const st_tensor *t = order[i];
        if (t->begin < expected) {
            tw_status s = tw_error(TW_ERR_FORMAT,
                                   "%s: tensor '%s': 'data_offsets' [%llu, %llu] overlap tensor "
                                   "'%s' [%llu, %llu]",
                                   path, t->name, (unsigned long long)t->begin,
                                   (unsigned long long)t->end, previous->name,
                                   (unsigned long long)previous->begin,
                                   (unsigned long long)previous->end);
            free(order);
            return s;
        }
        if (t->begin > expected) {
            tw_status s = tw_error(TW_ERR_FORMAT,
                                   "%s: tensor '%s': 'data_offsets' [%llu, %llu] leave a gap of "
                                   "%llu bytes before it",
                                   path, t->name, (unsigned long long)t->begin,
                                   (unsigned long long)t->end,
                                   (unsigned long long)(t->begin - expected));
            free(order);
            return s;
        }
        if (t->end > t->begin) previous = t;
        expected = t->end > expected ? t->end : expected;
    }
    free(order);
    if (expected != file->data_size)
        return tw_error(TW_ERR_FORMAT,
                        "%s: %llu bytes of data follow the last tensor (the tensors cover %llu of "
                        "%llu bytes)",
                        path, (unsigned long long)(file->data_size - expected),
                        (unsigned long long)expected, (unsigned long long)file->data_size);
    file->by_name = malloc((file->count > 0 ? (size_t)file->count : 1) * sizeof *file->by_name);
    if (!file->by_name) return tw_error(TW_ERR_OUT_OF_MEMORY, "%s: no memory", path);
    for (int i = 0; i < file->count; i++) file->by_name[i] = &file->tensors[i];
    qsort(file->by_name, (size_t)file->count, sizeof *file->by_name, compare_by_name);
    for (int i = 1; i < file->count; i++)
        if (strcmp(file->by_name[i - 1]->name, file->by_name[i]->name) == 0)
            return tw_error(TW_ERR_FORMAT, "%s: tensor '%s' appears twice in the header", path,
                            file->by_name[i]->name);
    return TW_OK;
}

static tw_status parse_header(tw_safetensors *file, const char *header, size_t length) {
    const char *path = file->path;
    if (length == 0 || header[0] != '{')
        return tw_error(TW_ERR_FORMAT,
                        "%s: the JSON header does not start with '{' (not a safetensors file?)",
                        path);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(header, length, &end, 0);
    if (!root) {
        size_t at = end && end >= header ? (size_t)(end - header) : 0;
        return tw_error(TW_ERR_FORMAT,
                        "%s: the JSON header is not valid JSON (near byte %zu of %zu)", path, at,
                        length);
    }
    for (const char *p = end; p < header + length; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            cJSON_Delete(root);
            return tw_error(TW_ERR_FORMAT,
                            "%s: unexpected bytes after the JSON header (at byte %zu of %zu)", path,
                            (size_t)(p - header), length);
        }
    tw_status status = TW_OK;
    if (!cJSON_IsObject(root)) {
        status = tw_error(TW_ERR_FORMAT, "%s: the JSON header is not an object", path);
        goto done;
    }
    /* A key given twice (an empty '__metadata__' followed by a full one, two 'dtype's) would
     * be read differently by other readers: refused at any depth (see json_keys.c). */
    tw_json_duplicate twice;
    if ((status = tw_json_find_duplicate(root, &twice)) != TW_OK) goto done;
    if (twice.key) {
        bool meta = strcmp(twice.top ? twice.top : twice.key, "__metadata__") == 0;
        if (!twice.top)
            status = tw_error(TW_ERR_FORMAT, "%s: %s'%s' appears twice in the header", path,
                              meta ? "" : "tensor ", twice.key);
        else
            status = tw_error(TW_ERR_FORMAT, "%s: %s'%s': key '%s' appears twice", path,
                              meta ? "" : "tensor ", twice.top, twice.key);
        goto done;
    }
    int entries = cJSON_GetArraySize(root);
    file->tensors = calloc((size_t)(entries ? entries : 1), sizeof *file->tensors);
    file->meta_keys = calloc((size_t)(entries ? entries : 1), sizeof(char *));
    file->meta_values = calloc((size_t)(entries ? entries : 1), sizeof(char *));
    if (!file->tensors || !file->meta_keys || !file->meta_values) {
        status = tw_error(TW_ERR_OUT_OF_MEMORY, "%s: no memory", path);
        goto done;
    }
    const cJSON *item;
    cJSON_ArrayForEach(item, root) {
        if (strcmp(item->string, "__metadata__") == 0) {
            if (file->meta_count > 0 || !cJSON_IsObject(item)) {
                status = tw_error(TW_ERR_FORMAT, "%s: '__metadata__' is %s", path,
                                  cJSON_IsObject(item) ? "given twice" : "not an object");
                goto done;
            }
            /* Stored as key/value strings; an empty object leaves meta_count 0. */
            int n = cJSON_GetArraySize(item);
            char **keys = realloc(file->meta_keys, (size_t)(n + entries) * sizeof(char *));
            if (keys) file->meta_keys = keys;
            char **values =
                keys ? realloc(file->meta_values, (size_t)(n + entries) * sizeof(char *)) : NULL;
            if (values) file->meta_values = values;
            if (!keys || !values) {
                status = tw_error(TW_ERR_OUT_OF_MEMORY, "%s: no memory", path);
                goto done;
            }
            const cJSON *m;
            cJSON_ArrayForEach(m, item) {
                if (!cJSON_IsString(m)) {
                    status = tw_error(TW_ERR_FORMAT,
                                      "%s: '__metadata__' entry '%s' is not a string", path,
                                      m->string);
                    goto done;
                }
                for (int i = 0; i < file->meta_count; i++)
                    if (strcmp(file->meta_keys[i], m->string) == 0) {
                        status = tw_error(TW_ERR_FORMAT,
                                          "%s: '__metadata__' entry '%s' appears twice", path,
                                          m->string);
                        goto done;
                    }
                file->meta_keys[file->meta_count] = strdup(m->string);
                file->meta_values[file->meta_count] = strdup(m->valuestring);
                file->meta_count++;
                if (!file->meta_keys[file->meta_count - 1] ||
                    !file->meta_values[file->meta_count - 1]) {
                    status = tw_error(TW_ERR_OUT_OF_MEMORY, "%s: no memory", path);
                    goto done;
                }
            }
            continue;
        }
        status = parse_tensor(path, item, &file->tensors[file->count]);
        if (status != TW_OK) {
            free(file->tensors[file->count].name);
            goto done;
        }
        file->count++;
    }
done:
    cJSON_Delete(root);
    return status;
}

tw_status tw_safetensors_parse(const char *path, uint8_t *bytes, size_t size,
                               tw_safetensors **out) {
    *out = NULL;
    tw_safetensors *file = calloc(1, sizeof *file);
    if (!file || !(file->path = strdup(path))) {
        free(file);
        free(bytes);
        return tw_error(TW_ERR_OUT_OF_MEMORY, "%s: no memory", path);
    }
    file->bytes = bytes;
    tw_status status;
    if (!host_is_little_endian()) {
        status = refuse_big_endian(path);
        goto fail;
    }
    if (size < 8) {
        status = tw_error(TW_ERR_FORMAT,
                          "%s: the file is %zu bytes, shorter than the 8-byte header length", path,
                          size);
        goto fail;
    }
    uint64_t header_len = 0;
    for (int i = 0; i < 8; i++) header_len |= (uint64_t)bytes[i] << (8 * i);
    if (header_len > size - 8) {
        status = tw_error(TW_ERR_FORMAT,
                          "%s: header length %llu exceeds the file size (%zu bytes): truncated "
                          "or not a safetensors file",
                          path, (unsigned long long)header_len, size);
        goto fail;
    }
    if (header_len > TW_ST_MAX_HEADER) {
        status = tw_error(TW_ERR_FORMAT, "%s: header length %llu is over the %u-byte limit", path,
                          (unsigned long long)header_len, TW_ST_MAX_HEADER);
        goto fail;
    }
    status = parse_header(file, (const char *)bytes + 8, (size_t)header_len);
    if (status != TW_OK) goto fail;
    file->data_size = size - 8 - header_len;
    status = check_layout(file);
    if (status != TW_OK) goto fail;
    /* Files from twist and the reference writer start the data 8-byte aligned; others get moved
     * to the start of the buffer (malloc alignment) so float views are aligned. */
    file->data = bytes + 8 + header_len;
    if ((uintptr_t)file->data % 8 != 0) {
        memmove(bytes, file->data, (size_t)file->data_size);
        file->data = bytes;
    }
    /* 16-bit float tensors (a model saved with --save-dtype bf16, or by PyTorch in half
     * precision) are widened to fp32 once, so lookups give fp32 views of every float type. */
    for (int i = 0; i < file->count; i++) {
        st_tensor *t = &file->tensors[i];
        const bool bf16 = strcmp(t->dtype, "BF16") == 0, f16 = strcmp(t->dtype, "F16") == 0;
        if ((!bf16 && !f16) || t->count == 0) continue;
        t->widened = malloc(t->count * sizeof *t->widened);
        if (!t->widened) {
            status = tw_error(TW_ERR_OUT_OF_MEMORY, "%s: tensor '%s': no memory to widen %zu "
                              "values to fp32", path, t->name, t->count);
            goto fail;
        }
        const uint8_t *at = file->data + t->begin;
        for (size_t j = 0; j < t->count; j++) {
            uint16_t value;
            memcpy(&value, at + 2 * j, sizeof value);
            t->widened[j] = bf16 ? tw_bf16_to_f32(value) : tw_f16_to_f32(value);
        }
    }
    *out = file;
    return TW_OK;
fail:
    tw_safetensors_free(file);
    return status;
}

tw_status tw_safetensors_load(const char *path, tw_safetensors **out) {
    if (!path || !out)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_safetensors_load: path or out is NULL");
    *out = NULL;
    uint8_t *bytes;
    size_t size;
    tw_status status = tw_ckpt_read_file(path, &bytes, &size);
    if (status != TW_OK) return status;
    return tw_safetensors_parse(path, bytes, size, out);
}

const char *tw_safetensors_path(const tw_safetensors *file) { return file ? file->path : ""; }
int tw_safetensors_count(const tw_safetensors *file) { return file ? file->count : 0; }

const char *tw_safetensors_name_at(const tw_safetensors *file, int index) {
    return file && index >= 0 && index < file->count ? file->tensors[index].name : NULL;
}

const char *tw_safetensors_dtype_at(const tw_safetensors *file, int index) {
    return file && index >= 0 && index < file->count ? file->tensors[index].dtype : NULL;
}

tw_status tw_safetensors_find(const tw_safetensors *file, const char *name, tw_tensor_view *out) {
    if (!file || !name || !out)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_safetensors_find: NULL argument");
    st_tensor key = {.name = (char *)name}, *key_ptr = &key;
    st_tensor **hit = file->count ? bsearch(&key_ptr, file->by_name, (size_t)file->count,
                                            sizeof *file->by_name, compare_by_name)
                                  : NULL;
    if (!hit) return tw_error(TW_ERR_NOT_FOUND, "%s: missing tensor '%s'", file->path, name);
    const st_tensor *t = *hit;
    const bool widened = strcmp(t->dtype, "BF16") == 0 || strcmp(t->dtype, "F16") == 0;
    if (strcmp(t->dtype, "F32") != 0 && !widened)
        return tw_error(TW_ERR_UNSUPPORTED,
                        "%s: tensor '%s' has dtype %s; twist reads F32, BF16 and F16 only",
                        file->path, name, t->dtype);
    if (!widened && t->begin % 4 != 0)
        return tw_error(TW_ERR_UNSUPPORTED,
                        "%s: tensor '%s' starts at data offset %llu, not a multiple of 4",
                        file->path, name, (unsigned long long)t->begin);
    memset(out, 0, sizeof *out);
    out->name = t->name;
    out->ndim = t->ndim;
    for (int i = 0; i < t->ndim; i++) out->dims[i] = t->dims[i];
    out->count = t->count;
    out->data = !t->count ? NULL
                : widened ? t->widened
                          : (const float *)(const void *)(file->data + t->begin);
    return TW_OK;
}

const char *tw_safetensors_metadata(const tw_safetensors *file, const char *key) {
    if (!file || !key) return NULL;
    for (int i = 0; i < file->meta_count; i++)
        if (strcmp(file->meta_keys[i], key) == 0) return file->meta_values[i];
    return NULL;
}

int tw_safetensors_metadata_count(const tw_safetensors *file) {
    return file ? file->meta_count : 0;
}

tw_status tw_safetensors_metadata_at(const tw_safetensors *file, int index, const char **key,
                                     const char **value) {
    if (!file || index < 0 || index >= file->meta_count)
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "tw_safetensors_metadata_at: index %d out of range", index);
    if (key) *key = file->meta_keys[index];
    if (value) *value = file->meta_values[index];
    return TW_OK;
}
