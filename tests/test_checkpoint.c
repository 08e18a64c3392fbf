/* safetensors files and checkpoint directories: round trips, the exact bytes of a known file,
 * every malformed-file case, checksum failures, crash safety and overwriting.
 *
 *   test_checkpoint                     the C checks (ctest: checkpoint)
 *   test_checkpoint --python SCRIPT     writes a checkpoint and has /usr/bin/python3 + torch read
 *                                       it with SCRIPT (ctest: checkpoint_python; skips without
 *                                       torch) */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "ckpt/ckpt_internal.h"
#include "harness.h"
#include "twist/checkpoint.h"

static char g_root[256];

/* ------------------------------------------------------------------------------------------ */
/* File helpers                                                                               */
/* ------------------------------------------------------------------------------------------ */

static void rm_rf(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *e;
        while (d && (e = readdir(d)) != NULL) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char child[1024];
            snprintf(child, sizeof child, "%s/%s", path, e->d_name);
            rm_rf(child);
        }
        if (d) closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

static void path_in(char *out, size_t size, const char *name) {
    snprintf(out, size, "%s/%s", g_root, name);
}

static void write_bytes(const char *path, const void *bytes, size_t size) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        tw_test_fail(__FILE__, __LINE__, "cannot create %s", path);
        return;
    }
    fwrite(bytes, 1, size, f);
    fclose(f);
}

/* Whole file into a malloc'd buffer (NUL-terminated); NULL if unreadable. */
static uint8_t *read_bytes(const char *path, size_t *size) {
    uint8_t *bytes;
    if (tw_ckpt_read_file(path, &bytes, size) != TW_OK) return NULL;
    return bytes;
}

static bool exists(const char *path) {
    struct stat st;
    return lstat(path, &st) == 0;
}

/* A safetensors file from a header text and raw data bytes; declared_len < 0: the real length. */
static void make_st(const char *path, long long declared_len, const char *header,
                    const void *data, size_t data_size) {
    size_t hl = strlen(header);
    uint64_t n = declared_len < 0 ? hl : (uint64_t)declared_len;
    uint8_t *buf = malloc(8 + hl + data_size + 1);
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(n >> (8 * i));
    memcpy(buf + 8, header, hl);
    if (data_size) memcpy(buf + 8 + hl, data, data_size);
    write_bytes(path, buf, 8 + hl + data_size);
    free(buf);
}

/* The last call failed with `want` and a message containing every given fragment. */
static void check_error(int line, tw_status got, tw_status want, const char *a, const char *b,
                        const char *c) {
    const char *msg = tw_last_error();
    if (got != want) {
        tw_test_fail(__FILE__, line, "status %s, want %s (message: %s)", tw_status_name(got),
                     tw_status_name(want), msg);
        return;
    }
    const char *parts[3] = {a, b, c};
    for (int i = 0; i < 3; i++)
        if (parts[i] && !strstr(msg, parts[i]))
            tw_test_fail(__FILE__, line, "message \"%s\" lacks \"%s\"", msg, parts[i]);
}
#define CHECK_ERROR(got, want, a, b, c) check_error(__LINE__, (got), (want), (a), (b), (c))

/* ------------------------------------------------------------------------------------------ */
/* SHA-256                                                                                    */
/* ------------------------------------------------------------------------------------------ */

static void sha_hex(const void *data, size_t size, char hex[65]) {
    tw_sha256 ctx;
    tw_sha256_init(&ctx);
    tw_sha256_update(&ctx, data, size);
    tw_sha256_final_hex(&ctx, hex);
}

static void test_sha256_vectors(void) {
    char hex[65];
    sha_hex("", 0, hex);
    TW_CHECK(!strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
             "sha256('') = %s", hex);
    sha_hex("abc", 3, hex);
    TW_CHECK(!strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
             "sha256('abc') = %s", hex);
    const char *two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    sha_hex(two_blocks, strlen(two_blocks), hex);
    TW_CHECK(!strcmp(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
             "sha256(448-bit message) = %s", hex);
    /* One million 'a', fed in uneven pieces to exercise the block buffering. */
    char *a = malloc(1000000);
    memset(a, 'a', 1000000);
    tw_sha256 ctx;
    tw_sha256_init(&ctx);
    size_t done = 0, step = 1;
    while (done < 1000000) {
        size_t take = step < 1000000 - done ? step : 1000000 - done;
        tw_sha256_update(&ctx, a + done, take);
        done += take;
        step = step * 3 % 197 + 1;
    }
    tw_sha256_final_hex(&ctx, hex);
    TW_CHECK(!strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"),
             "sha256(1e6 x 'a') = %s", hex);
    free(a);
}

/* The FIPS vectors with the SHA instructions (where the CPU has them) and without; then both
 * paths on the same random buffer of awkward length. */
static void test_sha256(void) {
    bool accelerated = tw_sha256_accelerated();
    printf("sha256: %s\n", accelerated ? "x86 SHA instructions" : "portable C");
    test_sha256_vectors();
    tw_sha256_force_portable(true);
    TW_CHECK(!tw_sha256_accelerated(), "force_portable");
    test_sha256_vectors();
    size_t n = 100003;
    uint8_t *buf = malloc(n);
    tw_test_rng rng;
    tw_test_rng_seed(&rng, 3);
    for (size_t i = 0; i < n; i++) buf[i] = (uint8_t)tw_test_rng_next(&rng);
    char portable[65], fast[65];
    sha_hex(buf, n, portable);
    tw_sha256_force_portable(false);
    TW_CHECK(tw_sha256_accelerated() == accelerated, "force_portable(false)");
    sha_hex(buf, n, fast);
    TW_CHECK(!strcmp(portable, fast), "portable %s != accelerated %s", portable, fast);
    free(buf);
}

/* ------------------------------------------------------------------------------------------ */
/* safetensors                                                                                */
/* ------------------------------------------------------------------------------------------ */

static void test_exact_bytes(void) {
    char path[512];
    path_in(path, sizeof path, "tiny.safetensors");
    tw_safetensors_writer *w;
    TW_CHECK_OK(tw_safetensors_writer_create(&w));
    const float a[2] = {1.0f, -2.0f}, b[1] = {0.5f};
    TW_CHECK_OK(tw_safetensors_writer_add(w, "a", 1, (int64_t[]){2}, a));
    TW_CHECK_OK(tw_safetensors_writer_add(w, "b", 2, (int64_t[]){1, 1}, b));
    TW_CHECK_OK(tw_safetensors_writer_set_metadata(w, "k", "v"));
    TW_CHECK_OK(tw_safetensors_write(w, path));
    tw_safetensors_writer_destroy(w);

    /* The spec, byte by byte: u64 LE header length, the JSON padded with spaces to a multiple
     * of 8, then the little-endian IEEE-754 floats in tensor order. */
    const char *json = "{\"__metadata__\":{\"k\":\"v\"},"
                       "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                       "\"b\":{\"dtype\":\"F32\",\"shape\":[1,1],\"data_offsets\":[8,12]}}";
    size_t jl = strlen(json), padded = (jl + 7) / 8 * 8;
    size_t size;
    uint8_t *bytes = read_bytes(path, &size);
    TW_CHECK(bytes != NULL, "cannot read %s back", path);
    if (!bytes) return;
    TW_CHECK(size == 8 + padded + 12, "file is %zu bytes, want %zu", size, 8 + padded + 12);
    if (size != 8 + padded + 12) {
        free(bytes);
        return;
    }
    uint64_t n = 0;
    for (int i = 0; i < 8; i++) n |= (uint64_t)bytes[i] << (8 * i);
    TW_CHECK(n == padded && n % 8 == 0, "header length %llu, want %zu", (unsigned long long)n,
             padded);
    TW_CHECK(memcmp(bytes + 8, json, jl) == 0, "header is \"%.*s\"", (int)jl, bytes + 8);
    for (size_t i = jl; i < padded; i++)
        TW_CHECK(bytes[8 + i] == ' ', "header padding byte %zu is 0x%02x", i, bytes[8 + i]);
    const uint8_t data[12] = {0x00, 0x00, 0x80, 0x3f,  /* 1.0f */
                              0x00, 0x00, 0x00, 0xc0,  /* -2.0f */
                              0x00, 0x00, 0x00, 0x3f}; /* 0.5f */
    TW_CHECK(memcmp(bytes + 8 + padded, data, 12) == 0, "tensor bytes differ from the spec");
    free(bytes);
    /* No temporary file left beside it. */
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld", path, (long)getpid());
    TW_CHECK(!exists(tmp), "%s left behind", tmp);
}

static void test_round_trip(void) {
    char path[512];
    path_in(path, sizeof path, "round.safetensors");
    tw_test_rng rng;
    tw_test_rng_seed(&rng, 7);
    float wte[15], bias[7], scalar[1] = {3.25f}, t4[12], copied[4];
    tw_test_fill_uniform(&rng, wte, 15, -1, 1);
    tw_test_fill_uniform(&rng, bias, 7, -1, 1);
    tw_test_fill_uniform(&rng, t4, 12, -1, 1);
    tw_test_fill_uniform(&rng, copied, 4, -1, 1);
    float copied_orig[4];
    memcpy(copied_orig, copied, sizeof copied);

    tw_safetensors_writer *w;
    TW_CHECK_OK(tw_safetensors_writer_create(&w));
    TW_CHECK_OK(tw_safetensors_writer_add(w, "wte", 2, (int64_t[]){5, 3}, wte));
    TW_CHECK_OK(tw_safetensors_writer_add(w, "bias", 1, (int64_t[]){7}, bias));
    TW_CHECK_OK(tw_safetensors_writer_add(w, "scalar", 0, NULL, scalar));
    TW_CHECK_OK(tw_safetensors_writer_add(w, "empty", 2, (int64_t[]){0, 4}, NULL));
    TW_CHECK_OK(tw_safetensors_writer_add(w, "t4", 4, (int64_t[]){2, 1, 3, 2}, t4));
    TW_CHECK_OK(tw_safetensors_writer_add_copy(w, "copied", 1, (int64_t[]){4}, copied));
    memset(copied, 0, sizeof copied); /* the writer kept its own copy */
    TW_CHECK_OK(tw_safetensors_writer_set_metadata(w, "format", "pt"));
    TW_CHECK_OK(tw_safetensors_writer_set_metadata(w, "note", "quote \" backslash \\ \xc3\xbc"));
    TW_CHECK_OK(tw_safetensors_writer_set_metadata(w, "format", "pt2")); /* replaces */
    TW_CHECK(tw_safetensors_writer_count(w) == 6, "writer count");
    /* Writer argument checks. */
    CHECK_ERROR(tw_safetensors_writer_add(w, "wte", 1, (int64_t[]){1}, wte),
                TW_ERR_INVALID_ARGUMENT, "'wte' was already added", NULL, NULL);
    CHECK_ERROR(tw_safetensors_writer_add(w, "__metadata__", 1, (int64_t[]){1}, wte),
                TW_ERR_INVALID_ARGUMENT, "__metadata__", NULL, NULL);
    CHECK_ERROR(tw_safetensors_writer_add(w, "neg", 1, (int64_t[]){-1}, wte),
                TW_ERR_INVALID_ARGUMENT, "'neg'", NULL, NULL);
    CHECK_ERROR(tw_safetensors_writer_add(w, "deep", 9, (int64_t[]){1, 1, 1, 1, 1, 1, 1, 1, 1},
                                          wte),
                TW_ERR_INVALID_ARGUMENT, "'deep'", NULL, NULL);
    TW_CHECK_OK(tw_safetensors_write(w, path));
    tw_safetensors_writer_destroy(w);

    tw_safetensors *f;
    TW_CHECK_OK(tw_safetensors_load(path, &f));
    if (!f) return;
    TW_CHECK(tw_safetensors_count(f) == 6, "count %d", tw_safetensors_count(f));
    const char *order[6] = {"wte", "bias", "scalar", "empty", "t4", "copied"};
    for (int i = 0; i < 6; i++) {
        const char *name = tw_safetensors_name_at(f, i);
        TW_CHECK(name && !strcmp(name, order[i]), "tensor %d is %s", i, name ? name : "NULL");
        TW_CHECK(!strcmp(tw_safetensors_dtype_at(f, i), "F32"), "dtype of %d", i);
    }
    struct {
        const char *name;
        int ndim;
        int64_t dims[4];
        size_t count;
        const float *want;
    } cases[] = {{"wte", 2, {5, 3}, 15, wte},   {"bias", 1, {7}, 7, bias},
                 {"scalar", 0, {0}, 1, scalar}, {"empty", 2, {0, 4}, 0, NULL},
                 {"t4", 4, {2, 1, 3, 2}, 12, t4}, {"copied", 1, {4}, 4, copied_orig}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        tw_tensor_view v;
        TW_CHECK_OK(tw_safetensors_find(f, cases[c].name, &v));
        TW_CHECK(v.ndim == cases[c].ndim && v.count == cases[c].count, "%s: ndim %d count %zu",
                 cases[c].name, v.ndim, v.count);
        for (int d = 0; d < cases[c].ndim && d < v.ndim; d++)
            TW_CHECK(v.dims[d] == cases[c].dims[d], "%s dim %d = %lld", cases[c].name, d,
                     (long long)v.dims[d]);
        if (cases[c].count == 0) {
            TW_CHECK(v.data == NULL, "%s: empty tensor has data", cases[c].name);
        } else {
            TW_CHECK(v.data && (uintptr_t)v.data % 4 == 0, "%s: data unaligned", cases[c].name);
            TW_CHECK(v.data && memcmp(v.data, cases[c].want, v.count * 4) == 0,
                     "%s: values differ", cases[c].name);
        }
    }
    tw_tensor_view v;
    CHECK_ERROR(tw_safetensors_find(f, "absent", &v), TW_ERR_NOT_FOUND, path, "'absent'", NULL);
    TW_CHECK(tw_safetensors_metadata_count(f) == 2, "metadata count");
    const char *fmt = tw_safetensors_metadata(f, "format");
    TW_CHECK(fmt && !strcmp(fmt, "pt2"), "metadata format = %s", fmt ? fmt : "NULL");
    const char *note = tw_safetensors_metadata(f, "note");
    TW_CHECK(note && !strcmp(note, "quote \" backslash \\ \xc3\xbc"), "metadata note = %s",
             note ? note : "NULL");
    TW_CHECK(tw_safetensors_metadata(f, "absent") == NULL, "absent metadata");
    tw_safetensors_free(f);

    /* A file with no tensors and no metadata is valid: header "{}". */
    path_in(path, sizeof path, "empty.safetensors");
    TW_CHECK_OK(tw_safetensors_writer_create(&w));
    TW_CHECK_OK(tw_safetensors_write(w, path));
    tw_safetensors_writer_destroy(w);
    TW_CHECK_OK(tw_safetensors_load(path, &f));
    TW_CHECK(f && tw_safetensors_count(f) == 0, "empty file has tensors");
    tw_safetensors_free(f);
}

static void expect_bad(int line, const char *name, long long declared_len, const char *header,
                       size_t data_size, tw_status want, const char *fragment1,
                       const char *fragment2) {
    char path[512];
    path_in(path, sizeof path, name);
    uint8_t data[64] = {0};
    make_st(path, declared_len, header, data, data_size);
    tw_safetensors *f = NULL;
    tw_status s = tw_safetensors_load(path, &f);
    check_error(line, s, want, path, fragment1, fragment2);
    if (f) tw_test_fail(__FILE__, line, "%s: a file was returned on failure", name);
    tw_safetensors_free(f);
}
#define EXPECT_BAD(name, len, header, data, frag1, frag2) \
    expect_bad(__LINE__, name, len, header, data, TW_ERR_FORMAT, frag1, frag2)

static void test_bad_files(void) {
    char path[512];
    /* Shorter than the length prefix. */
    path_in(path, sizeof path, "short.safetensors");
    write_bytes(path, "\x05\x00\x00", 3);
    tw_safetensors *f = NULL;
    CHECK_ERROR(tw_safetensors_load(path, &f), TW_ERR_FORMAT, path, "shorter than the 8-byte",
                NULL);
    path_in(path, sizeof path, "absent.safetensors");
    CHECK_ERROR(tw_safetensors_load(path, &f), TW_ERR_NOT_FOUND, path, NULL, NULL);

    const char *ok = "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    EXPECT_BAD("hlen.safetensors", 1000, ok, 8, "header length 1000 exceeds the file size", NULL);
    EXPECT_BAD("json.safetensors", -1, "{\"w\":{\"dtype\":\"F32\",", 0, "not valid JSON", NULL);
    EXPECT_BAD("array.safetensors", -1, "[1,2]", 0, "does not start with '{'", NULL);
    EXPECT_BAD("junk.safetensors", -1, "{}  xy", 0, "unexpected bytes after the JSON header",
               NULL);
    EXPECT_BAD("entry.safetensors", -1, "{\"w\":7}", 0, "tensor 'w'", "not a JSON object");
    EXPECT_BAD("nodtype.safetensors", -1, "{\"w\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
               "tensor 'w'", "missing field 'dtype'");
    EXPECT_BAD("noshape.safetensors", -1, "{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8,
               "tensor 'w'", "missing field 'shape'");
    EXPECT_BAD("nooffsets.safetensors", -1, "{\"w\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8,
               "tensor 'w'", "missing field 'data_offsets'");
    EXPECT_BAD("dtype.safetensors", -1,
               "{\"w\":{\"dtype\":\"F33\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
               "tensor 'w'", "'dtype' has unknown value 'F33'");
    EXPECT_BAD("negshape.safetensors", -1,
               "{\"w\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8,
               "tensor 'w'", "'shape' entry 0 is not a non-negative integer");
    EXPECT_BAD("fracshape.safetensors", -1,
               "{\"w\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", 8,
               "tensor 'w'", "'shape' entry 0");
    EXPECT_BAD("badoffsets.safetensors", -1,
               "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8, "tensor 'w'",
               "'data_offsets' is not two non-negative integers");
    EXPECT_BAD("backwards.safetensors", -1,
               "{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", 8,
               "tensor 'w'", "ends before it begins");
    EXPECT_BAD("product.safetensors", -1,
               "{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8,
               "tensor 'w'", "[3] of dtype F32 needs 12 bytes but 'data_offsets' [0, 8] span 8");
    EXPECT_BAD("overlap.safetensors", -1,
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
               12, "tensor 'b'", "overlap tensor 'a' [0, 8]");
    EXPECT_BAD("gap.safetensors", -1,
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}",
               20, "tensor 'b'", "gap of 4 bytes");
    EXPECT_BAD("outside.safetensors", -1, ok, 4, "tensor 'w'",
               "run past the end of the data (4 bytes)");
    EXPECT_BAD("trailing.safetensors", -1, ok, 12, "4 bytes of data follow the last tensor",
               NULL);
    EXPECT_BAD("duplicate.safetensors", -1,
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
               16, "tensor 'a' appears twice", NULL);
    EXPECT_BAD("meta.safetensors", -1, "{\"__metadata__\":{\"k\":1}}", 0,
               "'__metadata__' entry 'k' is not a string", NULL);
    EXPECT_BAD("meta2.safetensors", -1, "{\"__metadata__\":[]}", 0,
               "'__metadata__' is not an object", NULL);
    expect_bad(__LINE__, "rank.safetensors", -1,
               "{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}",
               4, TW_ERR_UNSUPPORTED, "tensor 'w'", "9 dimensions");

    /* A real file cut short: the last tensor runs past the end. */
    path_in(path, sizeof path, "round.safetensors");
    size_t size;
    uint8_t *bytes = read_bytes(path, &size);
    TW_CHECK(bytes != NULL, "round.safetensors missing");
    if (bytes) {
        path_in(path, sizeof path, "truncated.safetensors");
        write_bytes(path, bytes, size - 4);
        CHECK_ERROR(tw_safetensors_load(path, &f), TW_ERR_FORMAT, path, "tensor 'copied'",
                    "run past the end of the data");
        free(bytes);
    }

    /* F16 (and BF16) tensors are read widened to fp32: h = (1.0, -2.0). */
    path_in(path, sizeof path, "f16.safetensors");
    uint8_t data[12] = {0x00, 0x3c, 0x00, 0xc0};
    make_st(path, -1,
            "{\"h\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]},"
            "\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
            data, 12);
    f = NULL;
    TW_CHECK_OK(tw_safetensors_load(path, &f));
    if (f) {
        tw_tensor_view v;
        TW_CHECK(!strcmp(tw_safetensors_dtype_at(f, 0), "F16"), "dtype_at(0)");
        TW_CHECK_OK(tw_safetensors_find(f, "h", &v));
        TW_CHECK(v.count == 2 && v.data && v.data[0] == 1.0f && v.data[1] == -2.0f,
                 "F16 tensor widened to fp32");
        TW_CHECK_OK(tw_safetensors_find(f, "w", &v));
        tw_safetensors_free(f);
    }
}

/* Random corruptions of a valid file (flipped bytes in the header, changed length prefix,
 * truncation): each parse returns OK or a FORMAT/UNSUPPORTED error naming the file, never crashes
 * (run under -DTWIST_SANITIZE=address,undefined to check memory safety as well). */
static void test_mutations(void) {
    char path[512];
    path_in(path, sizeof path, "round.safetensors");
    size_t size;
    uint8_t *good = read_bytes(path, &size);
    TW_CHECK(good != NULL, "round.safetensors missing");
    if (!good) return;
    uint64_t header_len = 0;
    for (int i = 0; i < 8; i++) header_len |= (uint64_t)good[i] << (8 * i);
    tw_test_rng rng;
    tw_test_rng_seed(&rng, 11);
    int ok = 0, refused = 0;
    for (int iter = 0; iter < 3000; iter++) {
        size_t n = size;
        uint8_t *bytes = malloc(size + 1);
        memcpy(bytes, good, size);
        int kind = tw_test_rng_int(&rng, 4);
        if (kind == 0) { /* a few bytes of the header set to JSON-ish characters */
            static const char chars[] = "{}[]\":,0123456789-. eEaF";
            for (int k = 1 + tw_test_rng_int(&rng, 3); k > 0; k--)
                bytes[8 + (size_t)tw_test_rng_int(&rng, (int)header_len)] =
                    (uint8_t)chars[tw_test_rng_int(&rng, (int)sizeof chars - 1)];
        } else if (kind == 1) { /* a random byte anywhere in the header */
            bytes[8 + (size_t)tw_test_rng_int(&rng, (int)header_len)] ^=
                (uint8_t)(1 + tw_test_rng_int(&rng, 255));
        } else if (kind == 2) { /* the length prefix */
            bytes[tw_test_rng_int(&rng, 8)] ^= (uint8_t)(1 + tw_test_rng_int(&rng, 255));
        } else { /* truncation */
            n = (size_t)tw_test_rng_int(&rng, (int)size);
        }
        tw_safetensors *f = NULL;
        tw_status s = tw_safetensors_parse(path, bytes, n, &f);
        if (s == TW_OK) {
            ok++;
            tw_safetensors_free(f);
        } else {
            refused++;
            TW_CHECK(s == TW_ERR_FORMAT || s == TW_ERR_UNSUPPORTED, "mutation %d (kind %d): %s",
                     iter, kind, tw_status_name(s));
            TW_CHECK(strstr(tw_last_error(), path) != NULL, "mutation %d: message \"%s\"", iter,
                     tw_last_error());
        }
    }
    printf("mutations: %d parsed (a changed name or metadata character), %d refused\n",
           ok, refused);
    TW_CHECK(refused > 2500, "only %d of 3000 mutations refused", refused);
    free(good);
}

/* ------------------------------------------------------------------------------------------ */
/* Checkpoints                                                                                */
/* ------------------------------------------------------------------------------------------ */

/* The tensors of checkpoint "version" v: values depend on v so versions can be told apart. */
typedef struct fixture {
    float wte[16 * 8], attn[8 * 24], ln[8], m[16 * 8], step[1];
    char config[128], state[128];
} fixture;

static void fixture_fill(fixture *x, int version) {
    tw_test_rng rng;
    tw_test_rng_seed(&rng, (uint64_t)version);
    tw_test_fill_uniform(&rng, x->wte, 16 * 8, -1, 1);
    tw_test_fill_uniform(&rng, x->attn, 8 * 24, -1, 1);
    tw_test_fill_uniform(&rng, x->ln, 8, -1, 1);
    tw_test_fill_uniform(&rng, x->m, 16 * 8, -1, 1);
    x->step[0] = (float)version;
    snprintf(x->config, sizeof x->config, "{\"n_embd\": 8, \"version\": %d}", version);
    snprintf(x->state, sizeof x->state, "{\"step\": %d}", version);
}

static tw_checkpoint_writer *fixture_writer(const fixture *x) {
    tw_checkpoint_writer *w = NULL;
    TW_CHECK_OK(tw_checkpoint_writer_create(&w));
    if (!w) return NULL;
    TW_CHECK_OK(tw_checkpoint_writer_add(w, TW_CKPT_MODEL, "transformer.wte.weight", 2,
                                         (int64_t[]){16, 8}, x->wte));
    TW_CHECK_OK(tw_checkpoint_writer_add(w, TW_CKPT_MODEL, "transformer.h.0.attn.c_attn.weight",
                                         2, (int64_t[]){8, 24}, x->attn));
    TW_CHECK_OK(tw_checkpoint_writer_add(w, TW_CKPT_MODEL, "transformer.h.0.ln_1.bias", 1,
                                         (int64_t[]){8}, x->ln));
    TW_CHECK_OK(tw_checkpoint_writer_set_metadata(w, TW_CKPT_MODEL, "format", "pt"));
    TW_CHECK_OK(tw_checkpoint_writer_add(w, TW_CKPT_OPTIMIZER, "m.transformer.wte.weight", 2,
                                         (int64_t[]){16, 8}, x->m));
    TW_CHECK_OK(tw_checkpoint_writer_add(w, TW_CKPT_OPTIMIZER, "step", 0, NULL, x->step));
    TW_CHECK_OK(tw_checkpoint_writer_set_config(w, x->config));
    TW_CHECK_OK(tw_checkpoint_writer_set_state(w, x->state));
    TW_CHECK_OK(tw_checkpoint_writer_add_file(w, "tokenizer.json", "{\"model\": {}}", 13));
    return w;
}

static tw_status save_version(const char *dir, int version) {
    fixture x;
    fixture_fill(&x, version);
    tw_checkpoint_writer *w = fixture_writer(&x);
    tw_status s = tw_checkpoint_save(w, dir);
    tw_checkpoint_writer_destroy(w);
    return s;
}

/* Opens dir and checks it is exactly checkpoint `version`. */
static void check_version(int line, const char *dir, int version) {
    fixture x;
    fixture_fill(&x, version);
    tw_checkpoint *c = NULL;
    tw_status s = tw_checkpoint_open(dir, &c);
    if (s != TW_OK) {
        tw_test_fail(__FILE__, line, "open %s: %s", dir, tw_last_error());
        return;
    }
    if (strcmp(tw_checkpoint_config_json(c), x.config) != 0)
        tw_test_fail(__FILE__, line, "%s: config.json is %s, want %s", dir,
                     tw_checkpoint_config_json(c), x.config);
    if (strcmp(tw_checkpoint_state_json(c), x.state) != 0)
        tw_test_fail(__FILE__, line, "%s: state.json is %s", dir, tw_checkpoint_state_json(c));
    const float *data = NULL;
    s = tw_checkpoint_expect(c, TW_CKPT_MODEL, "transformer.wte.weight", 2, (int64_t[]){16, 8},
                             &data);
    if (s != TW_OK || memcmp(data, x.wte, sizeof x.wte) != 0)
        tw_test_fail(__FILE__, line, "%s: wte differs (%s)", dir, tw_last_error());
    s = tw_checkpoint_expect(c, TW_CKPT_MODEL, "transformer.h.0.attn.c_attn.weight", 2,
                             (int64_t[]){8, 24}, &data);
    if (s != TW_OK || memcmp(data, x.attn, sizeof x.attn) != 0)
        tw_test_fail(__FILE__, line, "%s: c_attn differs", dir);
    s = tw_checkpoint_expect(c, TW_CKPT_MODEL, "transformer.h.0.ln_1.bias", 1, (int64_t[]){8},
                             &data);
    if (s != TW_OK || memcmp(data, x.ln, sizeof x.ln) != 0)
        tw_test_fail(__FILE__, line, "%s: ln_1.bias differs", dir);
    s = tw_checkpoint_expect(c, TW_CKPT_OPTIMIZER, "m.transformer.wte.weight", 2,
                             (int64_t[]){16, 8}, &data);
    if (s != TW_OK || memcmp(data, x.m, sizeof x.m) != 0)
        tw_test_fail(__FILE__, line, "%s: optimizer m differs", dir);
    s = tw_checkpoint_expect(c, TW_CKPT_OPTIMIZER, "step", 0, NULL, &data);
    if (s != TW_OK || data[0] != (float)version)
        tw_test_fail(__FILE__, line, "%s: optimizer step differs", dir);
    const void *bytes;
    size_t size;
    s = tw_checkpoint_file(c, "tokenizer.json", &bytes, &size);
    if (s != TW_OK || size != 13 || memcmp(bytes, "{\"model\": {}}", 14) != 0)
        tw_test_fail(__FILE__, line, "%s: tokenizer.json differs", dir);
    const char *meta = tw_safetensors_metadata(tw_checkpoint_safetensors(c, TW_CKPT_MODEL),
                                               "format");
    if (!meta || strcmp(meta, "pt") != 0) tw_test_fail(__FILE__, line, "%s: metadata", dir);
    tw_checkpoint_close(c);
}
#define CHECK_VERSION(dir, v) check_version(__LINE__, dir, v)

/* Names in g_root that start with prefix (leftover siblings). */
static int count_prefixed(const char *prefix) {
    DIR *d = opendir(g_root);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL)
        if (!strncmp(e->d_name, prefix, strlen(prefix))) n++;
    if (d) closedir(d);
    return n;
}

static void test_checkpoint_round_trip(void) {
    char dir[512], file[600];
    path_in(dir, sizeof dir, "ck/nested/run1"); /* parents are created */
    TW_CHECK_OK(save_version(dir, 1));
    CHECK_VERSION(dir, 1);

    /* checksums.json lists every other file with its real size and SHA-256. */
    snprintf(file, sizeof file, "%s/checksums.json", dir);
    size_t size;
    uint8_t *text = read_bytes(file, &size);
    cJSON *root = text ? cJSON_Parse((const char *)text) : NULL;
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(root, "files");
    TW_CHECK(cJSON_GetArraySize(files) == 5, "checksums.json lists %d files",
             cJSON_GetArraySize(files));
    const char *names[5] = {"model.safetensors", "optimizer.safetensors", "config.json",
                            "state.json", "tokenizer.json"};
    for (int i = 0; i < 5; i++) {
        const cJSON *entry = cJSON_GetObjectItemCaseSensitive(files, names[i]);
        snprintf(file, sizeof file, "%s/%s", dir, names[i]);
        size_t fsize;
        uint8_t *bytes = read_bytes(file, &fsize);
        char hex[65];
        if (bytes) sha_hex(bytes, fsize, hex);
        const cJSON *jsize = cJSON_GetObjectItemCaseSensitive(entry, "size");
        const cJSON *jhash = cJSON_GetObjectItemCaseSensitive(entry, "sha256");
        TW_CHECK(bytes && cJSON_IsNumber(jsize) && jsize->valuedouble == (double)fsize &&
                     cJSON_IsString(jhash) && !strcmp(jhash->valuestring, hex),
                 "checksums.json entry for %s", names[i]);
        free(bytes);
    }
    cJSON_Delete(root);
    free(text);

    tw_checkpoint *c = NULL;
    TW_CHECK_OK(tw_checkpoint_open(dir, &c));
    if (c) {
        char want[900];
        snprintf(want, sizeof want,
                 "%s/model.safetensors: tensor 'transformer.h.0.attn.c_attn.weight' has shape "
                 "[8, 24], config expects [8, 12]",
                 dir);
        CHECK_ERROR(tw_checkpoint_expect(c, TW_CKPT_MODEL, "transformer.h.0.attn.c_attn.weight",
                                         2, (int64_t[]){8, 12}, NULL),
                    TW_ERR_FORMAT, want, NULL, NULL);
        TW_CHECK(!strcmp(tw_last_error(), want), "message is \"%s\"", tw_last_error());
        CHECK_ERROR(tw_checkpoint_expect(c, TW_CKPT_MODEL, "transformer.h.0.ln_1.bias", 2,
                                         (int64_t[]){8, 1}, NULL),
                    TW_ERR_FORMAT, "has shape [8], config expects [8, 1]", NULL, NULL);
        snprintf(want, sizeof want,
                 "%s/model.safetensors: missing tensor 'transformer.h.1.attn.c_attn.weight'", dir);
        CHECK_ERROR(tw_checkpoint_expect(c, TW_CKPT_MODEL, "transformer.h.1.attn.c_attn.weight",
                                         2, (int64_t[]){8, 24}, NULL),
                    TW_ERR_FORMAT, want, NULL, NULL);
        CHECK_ERROR(tw_checkpoint_expect(c, TW_CKPT_OPTIMIZER, "transformer.wte.weight", 2,
                                         (int64_t[]){16, 8}, NULL),
                    TW_ERR_FORMAT, "optimizer.safetensors: missing tensor", NULL, NULL);
        tw_tensor_view v;
        CHECK_ERROR(tw_checkpoint_tensor(c, TW_CKPT_MODEL, "nope", &v), TW_ERR_NOT_FOUND,
                    "missing tensor 'nope'", NULL, NULL);
        CHECK_ERROR(tw_checkpoint_file(c, "vocab.txt", NULL, NULL), TW_ERR_NOT_FOUND,
                    "no file 'vocab.txt'", NULL, NULL);
        TW_CHECK(!strcmp(tw_checkpoint_dir(c), dir), "checkpoint dir");
        tw_checkpoint_close(c);
    }

    /* A trailing slash names the same directory. */
    snprintf(file, sizeof file, "%s/", dir);
    CHECK_VERSION(file, 1);

    /* Writer checks. */
    tw_checkpoint_writer *w;
    TW_CHECK_OK(tw_checkpoint_writer_create(&w));
    CHECK_ERROR(tw_checkpoint_save(w, dir), TW_ERR_INVALID_ARGUMENT, "config.json", NULL, NULL);
    CHECK_ERROR(tw_checkpoint_writer_set_config(w, "{\"a\": "), TW_ERR_INVALID_ARGUMENT,
                "not valid JSON", NULL, NULL);
    CHECK_ERROR(tw_checkpoint_writer_add_file(w, "../x", "", 0), TW_ERR_INVALID_ARGUMENT, "../x",
                NULL, NULL);
    CHECK_ERROR(tw_checkpoint_writer_add_file(w, "state.json", "", 0), TW_ERR_INVALID_ARGUMENT,
                "state.json", NULL, NULL);
    CHECK_ERROR(tw_checkpoint_writer_add(w, (tw_ckpt_part)5, "x", 0, NULL, NULL),
                TW_ERR_INVALID_ARGUMENT, "part 5", NULL, NULL);
    /* A checkpoint with no optimizer tensors and no state still has all five files. */
    TW_CHECK_OK(tw_checkpoint_writer_set_config(w, "{}"));
    path_in(dir, sizeof dir, "bare");
    TW_CHECK_OK(tw_checkpoint_save(w, dir));
    tw_checkpoint_writer_destroy(w);
    TW_CHECK_OK(tw_checkpoint_open(dir, &c));
    if (c) {
        TW_CHECK(!strcmp(tw_checkpoint_state_json(c), "{}"), "default state.json");
        TW_CHECK(tw_safetensors_count(tw_checkpoint_safetensors(c, TW_CKPT_OPTIMIZER)) == 0,
                 "bare optimizer file has tensors");
        tw_checkpoint_close(c);
    }
}

/* Rewrites DIR/name and fixes its checksums.json entry, so only the content is wrong. */
static void replace_with_valid_checksum(const char *dir, const char *name, const void *bytes,
                                        size_t size) {
    char file[600];
    snprintf(file, sizeof file, "%s/%s", dir, name);
    write_bytes(file, bytes, size);
    snprintf(file, sizeof file, "%s/checksums.json", dir);
    size_t tsize;
    uint8_t *text = read_bytes(file, &tsize);
    cJSON *root = cJSON_Parse((const char *)text);
    cJSON *entry = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItem(root, "files"), name);
    char hex[65];
    sha_hex(bytes, size, hex);
    cJSON_ReplaceItemInObject(entry, "size", cJSON_CreateNumber((double)size));
    cJSON_ReplaceItemInObject(entry, "sha256", cJSON_CreateString(hex));
    char *out = cJSON_Print(root);
    write_bytes(file, out, strlen(out));
    free(out);
    cJSON_Delete(root);
    free(text);
}

static void test_corrupt_checkpoints(void) {
    char dir[512], file[600];
    tw_checkpoint *c = NULL;

    /* A flipped byte in the tensor data. */
    path_in(dir, sizeof dir, "flip");
    TW_CHECK_OK(save_version(dir, 2));
    snprintf(file, sizeof file, "%s/model.safetensors", dir);
    size_t size;
    uint8_t *bytes = read_bytes(file, &size);
    if (bytes) {
        bytes[size - 100] ^= 0x10;
        write_bytes(file, bytes, size);
        free(bytes);
    }
    CHECK_ERROR(tw_checkpoint_open(dir, &c), TW_ERR_FORMAT, file, "SHA-256 checksum mismatch",
                NULL);
    TW_CHECK(c == NULL, "checkpoint returned on failure");

    /* A truncated optimizer file. */
    path_in(dir, sizeof dir, "trunc");
    TW_CHECK_OK(save_version(dir, 2));
    snprintf(file, sizeof file, "%s/optimizer.safetensors", dir);
    bytes = read_bytes(file, &size);
    if (bytes) {
        write_bytes(file, bytes, size / 2);
        free(bytes);
    }
    CHECK_ERROR(tw_checkpoint_open(dir, &c), TW_ERR_FORMAT, file, "size is", "truncated");

    /* A missing file. */
    path_in(dir, sizeof dir, "missing");
    TW_CHECK_OK(save_version(dir, 2));
    snprintf(file, sizeof file, "%s/state.json", dir);
    unlink(file);
    CHECK_ERROR(tw_checkpoint_open(dir, &c), TW_ERR_FORMAT, file, "missing", NULL);

    /* A missing extra file. */
    path_in(dir, sizeof dir, "missing_extra");
    TW_CHECK_OK(save_version(dir, 2));
    snprintf(file, sizeof file, "%s/tokenizer.json", dir);
    unlink(file);
    CHECK_ERROR(tw_checkpoint_open(dir, &c), TW_ERR_FORMAT, file, "missing", NULL);

    /* No checksums.json, or a broken one. */
    path_in(dir, sizeof dir, "nosums");
    TW_CHECK_OK(save_version(dir, 2));
    snprintf(file, sizeof file, "%s/checksums.json", dir);
    unlink(file);
    CHECK_ERROR(tw_checkpoint_open(dir, &c), TW_ERR_FORMAT, file, "missing", NULL);
    write_bytes(file, "{\"format\": ", 11);
    CHECK_ERROR(tw_checkpoint_open(dir, &c), TW_ERR_FORMAT, file, "not valid JSON", NULL);
    write_bytes(file, "{\"format\": \"other\"}", 19);
    CHECK_ERROR(tw_checkpoint_open(dir, &c), TW_ERR_FORMAT, file, "'format'", NULL);
    const char *partial = "{\"format\": \"twist-checkpoint\", \"version\": 1, \"files\": {}}";
    write_bytes(file, partial, strlen(partial));
    CHECK_ERROR(tw_checkpoint_open(dir, &c), TW_ERR_FORMAT, file, "does not list", NULL);

    /* Checksums right, content wrong: the safetensors and JSON checks still name the file. */
    path_in(dir, sizeof dir, "badcontent");
    TW_CHECK_OK(save_version(dir, 2));
    const char *bad = "\x11\0\0\0\0\0\0\0{\"w\":{\"dtype\":1}}"; /* 17-byte header */
    replace_with_valid_checksum(dir, "model.safetensors", bad, 8 + 17);
    snprintf(file, sizeof file, "%s/model.safetensors", dir);
    CHECK_ERROR(tw_checkpoint_open(dir, &c), TW_ERR_FORMAT, file, "tensor 'w'",
                "missing field 'shape'");
    path_in(dir, sizeof dir, "badconfig");
    TW_CHECK_OK(save_version(dir, 2));
    replace_with_valid_checksum(dir, "config.json", "{\"n_embd\": ", 11);
    snprintf(file, sizeof file, "%s/config.json", dir);
    CHECK_ERROR(tw_checkpoint_open(dir, &c), TW_ERR_FORMAT, file, "not valid JSON", NULL);

    /* Not a checkpoint at all. */
    path_in(dir, sizeof dir, "nothing_here");
    CHECK_ERROR(tw_checkpoint_open(dir, &c), TW_ERR_NOT_FOUND, dir, "no such checkpoint", NULL);
}

/* A pid that belonged to a process which has exited. */
static long dead_pid(void) {
    pid_t child = fork();
    if (child == 0) _exit(0);
    waitpid(child, NULL, 0);
    return (long)child;
}

/* A directory twist made inside a checkpoint: the marker file first (as checkpoint.c does). */
static void make_marked_dir(const char *path) {
    mkdir(path, 0755);
    char marker[800];
    snprintf(marker, sizeof marker, "%s/.twist-marker", path);
    const char *text = "twist: a directory twist made; twist may remove it\n";
    write_bytes(marker, text, strlen(text));
}

static void test_crash_safety(void) {
    char dir[400], path[700], victim[400];
    long me = (long)getpid();
    path_in(dir, sizeof dir, "crash");
    TW_CHECK_OK(save_version(dir, 1));

    /* Crash while writing files: the previous checkpoint stays in place. */
    tw_ckpt_test_crash_point = TW_CKPT_CRASH_AFTER_MODEL_FILE;
    CHECK_ERROR(save_version(dir, 2), TW_ERR_IO, "simulated crash", NULL, NULL);
    tw_ckpt_test_crash_point = TW_CKPT_CRASH_NONE;
    snprintf(path, sizeof path, "%s/.twist-save-%ld/model.safetensors", dir, me);
    TW_CHECK(exists(path), "the interrupted save left no partial %s", path);
    snprintf(path, sizeof path, "%s/.twist-save-%ld/checksums.json", dir, me);
    TW_CHECK(!exists(path), "partial directory has checksums.json");
    CHECK_VERSION(dir, 1);

    /* Leftovers of a process that died (marked, as twist makes them), of a live process (our
     * parent's pid: a save in progress must not be touched), and things that only look like
     * leftovers (appendix 1 of issue 11): a user's directory of that name without the marker,
     * and a symbolic link of that name to a directory of the user's. None of those is
     * touched. */
    long dead = dead_pid(), live = (long)getppid(), dead2 = dead_pid(), dead3 = dead_pid();
    snprintf(path, sizeof path, "%s/.twist-save-%ld", dir, dead);
    make_marked_dir(path);
    snprintf(path, sizeof path, "%s/.twist-save-%ld/model.safetensors", dir, dead);
    write_bytes(path, "\x08\0\0\0", 4);
    snprintf(path, sizeof path, "%s/.twist-save-%ld", dir, live);
    make_marked_dir(path);
    snprintf(path, sizeof path, "%s/.twist-save-%ld", dir, dead2);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/.twist-save-%ld/thesis.tex", dir, dead2);
    write_bytes(path, "mine", 4);
    path_in(victim, sizeof victim, "precious");
    mkdir(victim, 0755);
    snprintf(path, sizeof path, "%s/data.csv", victim);
    write_bytes(path, "1,2", 3);
    snprintf(path, sizeof path, "%s/.twist-marker", victim); /* even with a marker */
    write_bytes(path, "twist: a directory twist made; twist may remove it\n", 51);
    snprintf(path, sizeof path, "%s/.twist-save-%ld", dir, dead3);
    TW_CHECK(symlink(victim, path) == 0, "symlink %s", path);
    CHECK_VERSION(dir, 1);

    /* The next save succeeds and removes the leftovers of exited processes and its own. */
    TW_CHECK_OK(save_version(dir, 3));
    CHECK_VERSION(dir, 3);
    snprintf(path, sizeof path, "%s/.twist-save-%ld", dir, dead);
    TW_CHECK(!exists(path), "stale %s not removed", path);
    snprintf(path, sizeof path, "%s/.twist-save-%ld", dir, me);
    TW_CHECK(!exists(path), "own leftover %s not removed", path);
    snprintf(path, sizeof path, "%s/.twist-save-%ld", dir, live);
    TW_CHECK(exists(path), "%s of a live process was removed", path);
    rm_rf(path);
    snprintf(path, sizeof path, "%s/.twist-save-%ld/thesis.tex", dir, dead2);
    TW_CHECK(exists(path), "a user's directory named like a leftover was emptied: %s", path);
    snprintf(path, sizeof path, "%s/.twist-save-%ld", dir, dead3);
    TW_CHECK(exists(path), "the symbolic link %s was removed", path);
    snprintf(path, sizeof path, "%s/data.csv", victim);
    TW_CHECK(exists(path), "a file behind a symbolic link leftover was deleted: %s", path);
    snprintf(path, sizeof path, "%s/.twist-save-%ld", dir, dead3);
    unlink(path);
    snprintf(path, sizeof path, "%s/.twist-save-%ld", dir, dead2);
    rm_rf(path);

    /* Crash while installing (committed, one file moved in): opening names the interrupted
     * save; recover rolls it forward. */
    tw_ckpt_test_crash_point = TW_CKPT_CRASH_MID_INSTALL;
    CHECK_ERROR(save_version(dir, 4), TW_ERR_IO, "simulated crash", NULL, NULL);
    tw_ckpt_test_crash_point = TW_CKPT_CRASH_NONE;
    tw_checkpoint *c = NULL;
    snprintf(path, sizeof path, "%s/.twist-save-%ld", dir, me);
    CHECK_ERROR(tw_checkpoint_open(dir, &c), TW_ERR_FORMAT, "was interrupted", path,
                "tw_checkpoint_recover");
    TW_CHECK_OK(tw_checkpoint_recover(dir));
    CHECK_VERSION(dir, 4);
    TW_CHECK(!exists(path), "%s left after recovery", path);
    TW_CHECK_OK(tw_checkpoint_recover(dir)); /* nothing to do */

    /* The same left by a process that died: the next lock rolls it forward. */
    tw_ckpt_test_crash_point = TW_CKPT_CRASH_MID_INSTALL;
    CHECK_ERROR(save_version(dir, 5), TW_ERR_IO, "simulated crash", NULL, NULL);
    tw_ckpt_test_crash_point = TW_CKPT_CRASH_NONE;
    char moved[700];
    long dead4 = dead_pid();
    snprintf(moved, sizeof moved, "%s/.twist-save-%ld", dir, dead4);
    TW_CHECK(rename(path, moved) == 0, "rename %s", path);
    tw_ckpt_target kind = TW_CKPT_TARGET_EMPTY;
    tw_checkpoint_lock *lock = NULL;
    TW_CHECK_OK(tw_checkpoint_lock_take(dir, &kind, &lock));
    TW_CHECK(kind == TW_CKPT_TARGET_CHECKPOINT, "lock: kind %d", (int)kind);
    tw_checkpoint_lock_release(lock);
    CHECK_VERSION(dir, 5);
    TW_CHECK(!exists(moved), "%s left after the lock", moved);

    /* Crash after installing: DIR is already the new checkpoint. */
    tw_ckpt_test_crash_point = TW_CKPT_CRASH_AFTER_INSTALL;
    CHECK_ERROR(save_version(dir, 6), TW_ERR_IO, "simulated crash", NULL, NULL);
    tw_ckpt_test_crash_point = TW_CKPT_CRASH_NONE;
    CHECK_VERSION(dir, 6);
    TW_CHECK(exists(path), "%s should remain after that crash", path);
    TW_CHECK_OK(save_version(dir, 7));
    CHECK_VERSION(dir, 7);
    TW_CHECK(!exists(path), "%s not removed by the next save", path);
    TW_CHECK(count_prefixed("crash.") == 0, "leftovers beside %s", dir);

    /* Nothing to recover. */
    path_in(dir, sizeof dir, "gone");
    CHECK_ERROR(tw_checkpoint_open(dir, &c), TW_ERR_NOT_FOUND, "no such checkpoint directory",
                NULL, NULL);
    CHECK_ERROR(tw_checkpoint_recover(dir), TW_ERR_NOT_FOUND, "no such checkpoint directory",
                NULL, NULL);
}

/* Locks: a second lock on the same directory names the holder; a lock file left by a process
 * that died is taken over; saves by the holder go through; the lock proves DIR writable. */
static void test_lock(void) {
    char dir[512], path[700];
    path_in(dir, sizeof dir, "locked");
    tw_checkpoint_lock *lock = NULL, *second = NULL;
    tw_ckpt_target kind = TW_CKPT_TARGET_CHECKPOINT;
    TW_CHECK_OK(tw_checkpoint_lock_take(dir, &kind, &lock));
    TW_CHECK(kind == TW_CKPT_TARGET_EMPTY, "a new directory is not empty: %d", (int)kind);
    TW_CHECK_OK(save_version(dir, 1)); /* our own lock lets our saves through */
    /* Another process: a child tries to lock and to save. */
    pid_t child = fork();
    if (child == 0) {
        tw_checkpoint_lock *other = NULL;
        tw_status a = tw_checkpoint_lock_take(dir, NULL, &other);
        char want[64];
        snprintf(want, sizeof want, "pid %ld", (long)getppid());
        bool named = strstr(tw_last_error(), want) != NULL;
        tw_status b = save_version(dir, 2);
        _exit(a == TW_ERR_INVALID_ARGUMENT && named && b == TW_ERR_INVALID_ARGUMENT ? 0 : 1);
    }
    int status = 0;
    waitpid(child, &status, 0);
    TW_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
             "a second process was not refused the lock with the holder's pid");
    CHECK_VERSION(dir, 1);
    /* In this process, a second lock is refused too (flock belongs to the open file). */
    CHECK_ERROR(tw_checkpoint_lock_take(dir, NULL, &second), TW_ERR_INVALID_ARGUMENT,
                "in use by another twist process", NULL, NULL);
    tw_checkpoint_lock_release(lock);
    snprintf(path, sizeof path, "%s/.twist-lock", dir);
    TW_CHECK(!exists(path), "lock file left after release");
    /* A stale lock file (its writer was killed) is taken over. */
    char text[32];
    snprintf(text, sizeof text, "%ld\n", dead_pid());
    write_bytes(path, text, strlen(text));
    TW_CHECK_OK(tw_checkpoint_lock_take(dir, &kind, &lock));
    TW_CHECK(kind == TW_CKPT_TARGET_CHECKPOINT, "kind %d", (int)kind);
    tw_checkpoint_lock_release(lock);
    /* A directory the lock made is removed again if nothing was saved into it. */
    path_in(dir, sizeof dir, "made_by_lock");
    TW_CHECK_OK(tw_checkpoint_lock_take(dir, NULL, &lock));
    TW_CHECK(exists(dir), "lock did not create %s", dir);
    tw_checkpoint_lock_release(lock);
    TW_CHECK(!exists(dir), "empty %s left behind", dir);
    /* A symbolic link, a bogus checksums.json: refused before anything is written. */
    path_in(path, sizeof path, "link_to_dir");
    TW_CHECK(symlink(g_root, path) == 0, "symlink");
    CHECK_ERROR(tw_checkpoint_lock_take(path, NULL, &lock), TW_ERR_INVALID_ARGUMENT,
                "symbolic link", NULL, NULL);
    path_in(dir, sizeof dir, "bogus_sums");
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/checksums.json", dir);
    write_bytes(path, "{\"format\": \"other\"}", 19);
    CHECK_ERROR(tw_checkpoint_lock_take(dir, NULL, &lock), TW_ERR_INVALID_ARGUMENT, path,
                "not twist's", NULL);
    tw_ckpt_target probed;
    CHECK_ERROR(tw_checkpoint_probe(dir, &probed), TW_ERR_INVALID_ARGUMENT, "not twist's", NULL,
                NULL);
    /* A read-only directory (as a non-root user; root writes anyway). */
    if (geteuid() != 0) {
        path_in(dir, sizeof dir, "readonly");
        mkdir(dir, 0555);
        CHECK_ERROR(tw_checkpoint_lock_take(dir, NULL, &lock), TW_ERR_IO, "cannot write there",
                    NULL, NULL);
        chmod(dir, 0755);
    } else {
        printf("note: running as root: the read-only directory case is left to the CLI test\n");
    }
}

/* --keep: hard-linked step-* snapshots, pruning, and never a user's directory. */
static void test_snapshots(void) {
    char dir[512], path[700];
    path_in(dir, sizeof dir, "kept");
    for (int v = 1; v <= 4; v++) {
        TW_CHECK_OK(save_version(dir, v));
        TW_CHECK_OK(tw_checkpoint_snapshot(dir, v * 100, 3));
    }
    CHECK_VERSION(dir, 4);
    for (int v = 1; v <= 4; v++) {
        snprintf(path, sizeof path, "%s/step-%09d", dir, v * 100);
        if (v == 1) TW_CHECK(!exists(path), "%s kept beyond --keep 3", path);
        else CHECK_VERSION(path, v);
    }
    /* Hard links: the newest snapshot shares the top-level file. */
    struct stat a, b;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    stat(path, &a);
    snprintf(path, sizeof path, "%s/step-%09d/model.safetensors", dir, 400);
    stat(path, &b);
    TW_CHECK(a.st_ino == b.st_ino, "the snapshot is not a hard link of the checkpoint");
    /* A user's directory named like a snapshot, and a user's file inside a snapshot, stay. */
    snprintf(path, sizeof path, "%s/step-000000050", dir);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/step-%09d/plot.png", dir, 200);
    write_bytes(path, "png", 3);
    /* A run replaced from step 100 on: later snapshots go; keep 1 keeps none. */
    TW_CHECK_OK(save_version(dir, 5));
    TW_CHECK_OK(tw_checkpoint_snapshot(dir, 100, 1));
    for (int v = 2; v <= 4; v++) {
        snprintf(path, sizeof path, "%s/step-%09d/model.safetensors", dir, v * 100);
        TW_CHECK(!exists(path), "%s not pruned", path);
    }
    snprintf(path, sizeof path, "%s/step-%09d/plot.png", dir, 200);
    TW_CHECK(exists(path), "a user's file in a snapshot was deleted");
    snprintf(path, sizeof path, "%s/step-000000050", dir);
    TW_CHECK(exists(path), "a user's step-* directory was removed");
    CHECK_VERSION(dir, 5);
}

static void test_overwrite(void) {
    char dir[512], path[700];
    path_in(dir, sizeof dir, "over");
    TW_CHECK_OK(save_version(dir, 1));
    TW_CHECK_OK(save_version(dir, 2));
    CHECK_VERSION(dir, 2);
    TW_CHECK_OK(save_version(dir, 3));
    CHECK_VERSION(dir, 3);
    TW_CHECK(count_prefixed("over.") == 0, "leftovers beside %s", dir);

    /* An existing empty directory is fine. */
    path_in(dir, sizeof dir, "emptydir");
    mkdir(dir, 0755);
    TW_CHECK_OK(save_version(dir, 1));
    CHECK_VERSION(dir, 1);

    /* A directory that is not a checkpoint is never written into. */
    path_in(dir, sizeof dir, "userdir");
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/notes.txt", dir);
    write_bytes(path, "keep me", 7);
    CHECK_ERROR(save_version(dir, 1), TW_ERR_INVALID_ARGUMENT, dir, "not a twist checkpoint",
                NULL);
    TW_CHECK(exists(path), "%s was removed", path);
    TW_CHECK(count_prefixed("userdir.") == 0, "leftovers beside %s", dir);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    write_bytes(path, "not ours", 8);
    CHECK_ERROR(save_version(dir, 1), TW_ERR_INVALID_ARGUMENT, "holds model.safetensors", NULL,
                NULL);
    /* Nor is a file. */
    path_in(dir, sizeof dir, "afile");
    write_bytes(dir, "x", 1);
    CHECK_ERROR(save_version(dir, 1), TW_ERR_INVALID_ARGUMENT, dir, "not a directory", NULL);

    /* "." is a directory like any other, for saving and for opening (cd ck && twist eval
     * --model .). */
    char cwd[1024];
    TW_CHECK(getcwd(cwd, sizeof cwd) != NULL, "getcwd");
    path_in(dir, sizeof dir, "dot");
    mkdir(dir, 0755);
    TW_CHECK(chdir(dir) == 0, "chdir %s", dir);
    TW_CHECK_OK(save_version(".", 1));
    CHECK_VERSION(".", 1);
    TW_CHECK_OK(save_version("./", 2));
    CHECK_VERSION(".", 2);
    TW_CHECK(chdir(cwd) == 0, "chdir back");

    /* Files of the user's inside a checkpoint stay where they are, untouched, over saves
     * (appendix 16 of issue 11: they were moved to DIR.old-PID). */
    path_in(dir, sizeof dir, "withnotes");
    TW_CHECK_OK(save_version(dir, 1));
    snprintf(path, sizeof path, "%s/notes.txt", dir);
    write_bytes(path, "keep me", 7);
    snprintf(path, sizeof path, "%s/plots", dir);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/plots/loss.svg", dir);
    write_bytes(path, "<svg/>", 6);
    TW_CHECK_OK(save_version(dir, 2));
    CHECK_VERSION(dir, 2);
    size_t size = 0;
    snprintf(path, sizeof path, "%s/notes.txt", dir);
    uint8_t *kept = read_bytes(path, &size);
    TW_CHECK(kept && size == 7 && !memcmp(kept, "keep me", 7), "user file changed or gone");
    free(kept);
    snprintf(path, sizeof path, "%s/plots/loss.svg", dir);
    TW_CHECK(exists(path), "user directory plots/ changed or gone");
    TW_CHECK(count_prefixed("withnotes.") == 0, "leftovers beside %s", dir);
}

/* ------------------------------------------------------------------------------------------ */
/* PyTorch interop                                                                            */
/* ------------------------------------------------------------------------------------------ */

/* "[v, v, ...]" of floats as hexadecimal literals (float.fromhex reads them exactly). */
static void append_values(char **buf, size_t *used, size_t *cap, const float *v, size_t n) {
    for (size_t i = 0; i < n + 2; i++) {
        if (*used + 64 > *cap) {
            *cap = *cap * 2 + 4096;
            *buf = realloc(*buf, *cap);
        }
        if (i == 0) *used += (size_t)sprintf(*buf + *used, "[");
        else if (i == n + 1) *used += (size_t)sprintf(*buf + *used, "]");
        else
            *used += (size_t)sprintf(*buf + *used, "%s\"%a\"", i > 1 ? ", " : "",
                                     (double)v[i - 1]);
    }
}

static int run_python(const char *script) {
    if (system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") != 0)
        tw_test_skip("/usr/bin/python3 with torch is not available (Debian: python3-torch)");
    fixture x;
    fixture_fill(&x, 9);
    tw_checkpoint_writer *w = fixture_writer(&x);
    float empty_dummy = 0;
    TW_CHECK_OK(tw_checkpoint_writer_add(w, TW_CKPT_MODEL, "empty", 2, (int64_t[]){0, 3},
                                         &empty_dummy));
    /* expected.json: every tensor's shape and exact values, for the script to compare. */
    size_t used = 0, cap = 4096;
    char *buf = malloc(cap);
    struct {
        const char *part, *name, *shape;
        const float *v;
        size_t n;
    } t[] = {{"model", "transformer.wte.weight", "[16, 8]", x.wte, 128},
             {"model", "transformer.h.0.attn.c_attn.weight", "[8, 24]", x.attn, 192},
             {"model", "transformer.h.0.ln_1.bias", "[8]", x.ln, 8},
             {"model", "empty", "[0, 3]", NULL, 0},
             {"optimizer", "m.transformer.wte.weight", "[16, 8]", x.m, 128},
             {"optimizer", "step", "[]", x.step, 1}};
    used = (size_t)sprintf(buf, "{\"metadata\": {\"format\": \"pt\"}, \"tensors\": [");
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        if (used + 512 > cap) {
            cap = cap * 2 + 4096;
            buf = realloc(buf, cap);
        }
        used += (size_t)sprintf(buf + used, "%s{\"part\": \"%s\", \"name\": \"%s\", \"shape\": %s, "
                                "\"values\": ", i ? ", " : "", t[i].part, t[i].name, t[i].shape);
        append_values(&buf, &used, &cap, t[i].v, t[i].n);
        used += (size_t)sprintf(buf + used, "}");
    }
    used += (size_t)sprintf(buf + used, "]}");
    TW_CHECK_OK(tw_checkpoint_writer_add_file(w, "expected.json", buf, used));
    free(buf);
    char dir[512];
    path_in(dir, sizeof dir, "python");
    TW_CHECK_OK(tw_checkpoint_save(w, dir));
    tw_checkpoint_writer_destroy(w);
    char command[1200];
    snprintf(command, sizeof command, "/usr/bin/python3 '%s' '%s'", script, dir);
    printf("running %s\n", command);
    fflush(stdout);
    int rc = system(command);
    TW_CHECK(rc == 0, "%s failed (status %d)", command, rc);
    return tw_test_failures();
}

int main(int argc, char **argv) {
    snprintf(g_root, sizeof g_root, "%s/twist-ckpt-XXXXXX",
             getenv("TMPDIR") && getenv("TMPDIR")[0] ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(g_root)) {
        fprintf(stderr, "cannot create a temporary directory: %s\n", strerror(errno));
        return 1;
    }
    if (argc == 3 && !strcmp(argv[1], "--python")) {
        run_python(argv[2]);
    } else {
        test_sha256();
        test_exact_bytes();
        test_round_trip();
        test_bad_files();
        test_mutations();
        test_checkpoint_round_trip();
        test_corrupt_checkpoints();
        test_crash_safety();
        test_lock();
        test_snapshots();
        test_overwrite();
    }
    if (tw_test_failures() == 0) rm_rf(g_root);
    else printf("files kept in %s\n", g_root);
    return tw_test_finish("checkpoint");
}
