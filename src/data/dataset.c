/* Tokenised datasets and their cache.
 *
 * Cache file format (.twtok, version 1, every integer little-endian):
 *
 *   offset  size  field
 *   0       4     magic "TWTK"
 *   4       4     version (1)
 *   8       8     corpus size in bytes
 *   16      8     corpus content hash (FNV-1a 64 of the file's bytes)
 *   24      8     tokenizer hash
 *   32      8     validation fraction (IEEE-754 double, its bits)
 *   40      8     split seed
 *   48      4     end-of-text id (int32)
 *   52      4     reserved (0)
 *   56      8     training documents
 *   64      8     validation documents
 *   72      8     training tokens  (Nt)
 *   80      8     validation tokens (Nv)
 *   88      4*Nt  training stream, int32
 *   ..      4*Nv  validation stream, int32
 *   end-8   8     FNV-1a 64 of every byte before it
 *
 * A cache is used only when every key field matches, the file size is exactly what the counts
 * imply, every token is >= 0 and the checksum holds; anything else is rebuilt, never trusted. */
/* realpath() is an XSI extension of POSIX. */
#define _XOPEN_SOURCE 700
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/backend_impl.h"
#include "core/paths.h"
#include "data/data_impl.h"
#include "twist/data.h"

#define TWTOK_MAGIC "TWTK"
/* Version 2: token streams from the Unicode pre-tokenisation (PCRE2); version-1 files hold the
 * streams of the byte-class split, which differ on non-ASCII text, so they are rebuilt. */
#define TWTOK_VERSION 2u
#define TWTOK_HEADER 88

tw_data_options tw_data_options_default(void) {
    tw_data_options o = {TW_DEFAULT_VAL_FRACTION, TW_DEFAULT_SPLIT_SEED, true, NULL};
    return o;
}

void tw_dataset_free(tw_dataset *d) {
    if (!d) return;
    free(d->corpus_path);
    free(d->train);
    free(d->val);
    free(d->cache_path);
    free(d);
}

bool tw_dataset_cache_name(const char *corpus_path, uint64_t tokenizer_hash, char *out,
                           size_t capacity) {
    int n = snprintf(out, capacity, "%s.%016llx.twtok", corpus_path,
                     (unsigned long long)tokenizer_hash);
    return n > 0 && (size_t)n < capacity;
}

/* ------------------------------------------------------------------------------------------------
 * Little-endian fields
 * ---------------------------------------------------------------------------------------------- */

static void put_u32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void put_u64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t get_u32(const unsigned char *p) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i);
    return v;
}
static uint64_t get_u64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}
static uint64_t double_bits(double x) {
    uint64_t b;
    memcpy(&b, &x, sizeof b);
    return b;
}

/* The key a cache must match, plus the counts it describes. */
typedef struct cache_key {
    uint64_t corpus_bytes, corpus_hash, tokenizer_hash, fraction_bits, split_seed;
    int32_t eot_id;
} cache_key;

static void write_header(unsigned char *h, const cache_key *k, const tw_dataset *d) {
    memset(h, 0, TWTOK_HEADER);
    memcpy(h, TWTOK_MAGIC, 4);
    put_u32(h + 4, TWTOK_VERSION);
    put_u64(h + 8, k->corpus_bytes);
    put_u64(h + 16, k->corpus_hash);
    put_u64(h + 24, k->tokenizer_hash);
    put_u64(h + 32, k->fraction_bits);
    put_u64(h + 40, k->split_seed);
    put_u32(h + 48, (uint32_t)k->eot_id);
    put_u64(h + 56, d->train_docs);
    put_u64(h + 64, d->val_docs);
    put_u64(h + 72, d->train_tokens);
    put_u64(h + 80, d->val_tokens);
}

/* Token streams as little-endian bytes (a copy only on big-endian hosts would be needed; twist's
 * hosts are little-endian, checked here so a big-endian build fails loudly instead of silently
 * writing foreign caches). */
static bool host_is_little_endian(void) {
    const uint32_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

/* ------------------------------------------------------------------------------------------------
 * Reading a cache
 * ---------------------------------------------------------------------------------------------- */

/* Returns true and fills d's streams when `path` is a valid cache for key k; otherwise false with
 * the reason in d->cache_note (a missing file leaves the note alone). */
static bool read_cache(const char *path, const cache_key *k, tw_dataset *d) {
    /* O_NONBLOCK so a FIFO at the cache path is refused below instead of blocking the open. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return false;
    struct stat sb;
    bool stat_ok = fstat(fd, &sb) == 0;
    if (!stat_ok || !S_ISREG(sb.st_mode)) {
        snprintf(d->cache_note, sizeof d->cache_note, "ignored cache %s: it is %s, not a regular "
                 "file; left alone", path, stat_ok ? tw_file_kind(sb.st_mode) : "unreadable");
        close(fd);
        return false;
    }
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        close(fd);
        return false;
    }
    unsigned char h[TWTOK_HEADER];
    const char *why = NULL;
    int32_t *train = NULL, *val = NULL;
    if (fread(h, 1, TWTOK_HEADER, f) != TWTOK_HEADER) {
        why = "truncated header";
        goto reject;
    }
    if (memcmp(h, TWTOK_MAGIC, 4) != 0 || get_u32(h + 4) != TWTOK_VERSION) {
        why = "not a version-2 twtok file (older ones hold the byte-class split)";
        goto reject;
    }
    if (get_u64(h + 8) != k->corpus_bytes || get_u64(h + 16) != k->corpus_hash) {
        why = "corpus changed";
        goto reject;
    }
    if (get_u64(h + 24) != k->tokenizer_hash || (int32_t)get_u32(h + 48) != k->eot_id) {
        why = "tokenizer changed";
        goto reject;
    }
    if (get_u64(h + 32) != k->fraction_bits || get_u64(h + 40) != k->split_seed) {
        why = "split settings changed";
        goto reject;
    }
    uint64_t nt = get_u64(h + 72), nv = get_u64(h + 80);
    uint64_t limit = (uint64_t)SIZE_MAX / 8;
    if (nt > limit || nv > limit || (uint64_t)sb.st_size != TWTOK_HEADER + 4 * (nt + nv) + 8) {
        why = "size does not match its counts (truncated?)";
        goto reject;
    }
    train = malloc(nt ? nt * 4 : 4);
    val = malloc(nv ? nv * 4 : 4);
    unsigned char sum_bytes[8];
    if (!train || !val) {
        why = "out of memory";
        goto reject;
    }
    if (fread(train, 4, nt, f) != nt || fread(val, 4, nv, f) != nv ||
        fread(sum_bytes, 1, 8, f) != 8) {
        why = "truncated";
        goto reject;
    }
    uint64_t sum = tw_fnv1a64(TW_FNV1A_INIT, h, TWTOK_HEADER);
    sum = tw_fnv1a64(sum, train, nt * 4);
    sum = tw_fnv1a64(sum, val, nv * 4);
    if (sum != get_u64(sum_bytes)) {
        why = "checksum mismatch";
        goto reject;
    }
    for (uint64_t i = 0; i < nt; i++)
        if (train[i] < 0) why = "negative token id";
    for (uint64_t i = 0; i < nv; i++)
        if (val[i] < 0) why = "negative token id";
    if (why) goto reject;
    fclose(f);
    d->train = train;
    d->val = val;
    d->train_tokens = nt;
    d->val_tokens = nv;
    d->train_docs = get_u64(h + 56);
    d->val_docs = get_u64(h + 64);
    return true;
reject:
    fclose(f);
    free(train);
    free(val);
    snprintf(d->cache_note, sizeof d->cache_note, "ignored cache %s: %s; rebuilt", path, why);
    return false;
}

/* ------------------------------------------------------------------------------------------------
 * Tokenising
 * ---------------------------------------------------------------------------------------------- */

typedef struct stream {
    int32_t *ids;
    size_t n, cap;
} stream;

static bool stream_reserve(stream *s, size_t extra) {
    if (s->n + extra <= s->cap) return true;
    size_t cap = s->cap ? s->cap : 4096;
    while (cap < s->n + extra) cap *= 2;
    int32_t *p = realloc(s->ids, cap * sizeof(int32_t));
    if (!p) return false;
    s->ids = p;
    s->cap = cap;
    return true;
}

static tw_status tokenise(const tw_corpus *c, const uint8_t *is_val, const tw_encoder *e,
                          tw_dataset *d) {
    stream s[2] = {{0}, {0}};
    tw_status st = TW_OK;
    for (size_t i = 0; i < c->doc_count && st == TW_OK; i++) {
        stream *out = &s[is_val[i] ? 1 : 0];
        int32_t *ids = NULL;
        size_t count = 0;
        st = e->encode(e->context, c->text + c->doc_offset[i], c->doc_length[i], &ids, &count);
        if (st != TW_OK) break;
        if (!stream_reserve(out, count + 1)) {
            free(ids);
            st = tw_error(TW_ERR_OUT_OF_MEMORY, "%s: out of memory tokenising", c->path);
            break;
        }
        out->ids[out->n++] = e->eot_id;
        for (size_t j = 0; j < count; j++) {
            if (ids[j] < 0) {
                st = tw_error(TW_ERR_INVALID_ARGUMENT,
                              "%s: tokenizer returned negative id %d in document %zu", c->path,
                              (int)ids[j], i);
                break;
            }
            out->ids[out->n++] = ids[j];
        }
        free(ids);
        if (is_val[i]) d->val_docs++;
        else d->train_docs++;
    }
    if (st != TW_OK) {
        free(s[0].ids);
        free(s[1].ids);
        return st;
    }
    /* Never hand out NULL streams: an empty split still has a (zero-length) array. */
    if (!s[0].ids) s[0].ids = malloc(sizeof(int32_t));
    if (!s[1].ids) s[1].ids = malloc(sizeof(int32_t));
    if (!s[0].ids || !s[1].ids) {
        free(s[0].ids);
        free(s[1].ids);
        return tw_error(TW_ERR_OUT_OF_MEMORY, "%s: out of memory tokenising", c->path);
    }
    d->train = s[0].ids;
    d->train_tokens = s[0].n;
    d->val = s[1].ids;
    d->val_tokens = s[1].n;
    return TW_OK;
}

/* ------------------------------------------------------------------------------------------------
 * Cache locations
 * ---------------------------------------------------------------------------------------------- */

/* Name of a corpus's cache inside a cache directory: the corpus's base name, a hash of its
 * absolute path (two corpora of the same name elsewhere do not evict each other) and the
 * tokenizer hash. */
static bool dir_cache_name(const char *dir, const char *corpus_path, uint64_t tok_hash,
                           char *out, size_t capacity) {
    char abs[PATH_MAX];
    const char *key = realpath(corpus_path, abs) ? abs : corpus_path;
    const char *base = strrchr(corpus_path, '/');
    base = base ? base + 1 : corpus_path;
    uint32_t ph = (uint32_t)tw_fnv1a64(TW_FNV1A_INIT, key, strlen(key));
    int n = snprintf(out, capacity, "%s/%s.%08x.%016llx.twtok", dir, base, ph,
                     (unsigned long long)tok_hash);
    return n > 0 && (size_t)n < capacity;
}

/* Candidate cache paths in order of preference: beside the corpus, then the cache directory.
 * With options->cache_dir set, only that directory. Returns the number filled (<= 2). */
static int cache_candidates(const char *corpus_path, const tw_encoder *e,
                            const tw_data_options *o, char paths[2][PATH_MAX],
                            char dirs[2][PATH_MAX]) {
    int n = 0;
    if (o->cache_dir) {
        if (dir_cache_name(o->cache_dir, corpus_path, e->hash, paths[n], PATH_MAX)) {
            snprintf(dirs[n], PATH_MAX, "%s", o->cache_dir);
            n++;
        }
        return n;
    }
    if (tw_dataset_cache_name(corpus_path, e->hash, paths[n], PATH_MAX)) {
        dirs[n][0] = '\0'; /* the corpus's own directory: never created */
        n++;
    }
    char dir[PATH_MAX];
    if (tw_user_cache_dir(dir, sizeof dir) &&
        dir_cache_name(dir, corpus_path, e->hash, paths[n], PATH_MAX)) {
        snprintf(dirs[n], PATH_MAX, "%s", dir);
        n++;
    }
    return n;
}

/* Whether the directory holding `path` may be written. A directory whose mode grants write
 * permission to nobody (like the shared, read-only ../shared/data) counts as read-only even for
 * root, who could write there anyway: the mode says the data must not be touched. */
static bool parent_writable(const char *path) {
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == dir) dir[1] = '\0';
    else *slash = '\0';
    struct stat sb;
    return stat(dir, &sb) == 0 && (sb.st_mode & 0222) != 0 && access(dir, W_OK) == 0;
}

static bool write_cache(const char *path, const char *dir, const cache_key *k,
                        const tw_dataset *d) {
    if (dir[0] && !tw_make_dirs(dir)) return false;
    if (!parent_writable(path)) return false;
    unsigned char h[TWTOK_HEADER], sum_bytes[8];
    write_header(h, k, d);
    uint64_t sum = tw_fnv1a64(TW_FNV1A_INIT, h, TWTOK_HEADER);
    sum = tw_fnv1a64(sum, d->train, d->train_tokens * 4);
    sum = tw_fnv1a64(sum, d->val, d->val_tokens * 4);
    put_u64(sum_bytes, sum);
    tw_write_piece pieces[4] = {{h, TWTOK_HEADER},
                                {d->train, d->train_tokens * 4},
                                {d->val, d->val_tokens * 4},
                                {sum_bytes, 8}};
    return tw_write_atomic(path, pieces, 4) == TW_OK;
}

static char *dup_string(const char *s) {
    char *p = malloc(strlen(s) + 1);
    if (p) strcpy(p, s);
    return p;
}

/* ------------------------------------------------------------------------------------------------
 * Load
 * ---------------------------------------------------------------------------------------------- */

tw_status tw_dataset_load(const char *corpus_path, const tw_encoder *encoder,
                          const tw_data_options *options, tw_dataset **dataset) {
    if (!corpus_path || !encoder || !encoder->encode || !dataset)
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "tw_dataset_load: corpus path, encoder (with encode) and dataset are "
                        "required");
    *dataset = NULL;
    if (encoder->eot_id < 0)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_dataset_load: end-of-text id %d is negative",
                        (int)encoder->eot_id);
    if (!host_is_little_endian())
        return tw_error(TW_ERR_UNSUPPORTED, "tw_dataset_load: big-endian hosts are unsupported");
    tw_data_options o = options ? *options : tw_data_options_default();

    tw_corpus *c = NULL;
    tw_status st = tw_corpus_load(corpus_path, &c);
    if (st != TW_OK) return st;
    uint8_t *is_val = malloc(c->doc_count);
    tw_dataset *d = calloc(1, sizeof *d);
    if (!is_val || !d || !(d->corpus_path = dup_string(corpus_path))) {
        st = tw_error(TW_ERR_OUT_OF_MEMORY, "%s: out of memory", corpus_path);
        goto done;
    }
    d->eot_id = encoder->eot_id;
    st = tw_corpus_split(c, o.val_fraction, o.split_seed, is_val, NULL);
    if (st != TW_OK) goto done;

    cache_key k = {c->file_bytes, c->content_hash, encoder->hash, double_bits(o.val_fraction),
                   o.split_seed, encoder->eot_id};
    char paths[2][PATH_MAX], dirs[2][PATH_MAX];
    int candidates = o.use_cache ? cache_candidates(corpus_path, encoder, &o, paths, dirs) : 0;
    for (int i = 0; i < candidates; i++) {
        if (read_cache(paths[i], &k, d)) {
            d->cache = TW_CACHE_HIT;
            d->cache_path = dup_string(paths[i]);
            goto done;
        }
    }
    st = tokenise(c, is_val, encoder, d);
    if (st != TW_OK) goto done;
    d->cache = o.use_cache ? TW_CACHE_UNWRITABLE : TW_CACHE_OFF;
    for (int i = 0; i < candidates; i++) {
        if (write_cache(paths[i], dirs[i], &k, d)) {
            d->cache = TW_CACHE_WRITTEN;
            d->cache_path = dup_string(paths[i]);
            break;
        }
    }
    if (d->cache == TW_CACHE_UNWRITABLE && !d->cache_note[0])
        snprintf(d->cache_note, sizeof d->cache_note,
                 "no writable cache location for %s (tried %d); not cached", corpus_path,
                 candidates);
done:
    free(is_val);
    tw_corpus_free(c);
    if (st != TW_OK) {
        tw_dataset_free(d);
        return st;
    }
    *dataset = d;
    return TW_OK;
}

/* ------------------------------------------------------------------------------------------------
 * Atomic writes (also used by tw_synth_write)
 * ---------------------------------------------------------------------------------------------- */

tw_status tw_write_atomic(const char *path, const tw_write_piece *pieces, int count) {
    TW_TRY(tw_check_output_file(path)); /* never rename over a device, FIFO or directory */
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "%s: path too long", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return tw_error(TW_ERR_IO, "%s: cannot create %s: %s", path, tmp, strerror(errno));
    bool ok = true;
    for (int i = 0; i < count && ok; i++)
        if (pieces[i].bytes && fwrite(pieces[i].data, 1, pieces[i].bytes, f) != pieces[i].bytes)
            ok = false;
    if (ok && fflush(f) != 0) ok = false;
    if (ok && fsync(fileno(f)) != 0) ok = false;
    int saved = errno;
    if (fclose(f) != 0) ok = false;
    if (ok && rename(tmp, path) != 0) {
        saved = errno;
        ok = false;
    }
    if (!ok) {
        remove(tmp);
        return tw_error(TW_ERR_IO, "%s: write failed: %s", path, strerror(saved));
    }
    return TW_OK;
}
