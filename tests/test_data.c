/* Data pipeline: corpus parsing and bad corpora, the train/validation split, the tokenised cache
 * (create, reuse, invalidate, corrupt, fallback directory), the batch loader (determinism, resume,
 * shards, evaluation windows), and, when ../shared/data is present, the real level-0 corpus. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "twist/data.h"

/* ------------------------------------------------------------------------------------------------
 * A byte-level encoder: ids are bytes, end-of-text is 256. Counts its calls so a cache hit can be
 * told from a rebuild.
 * ---------------------------------------------------------------------------------------------- */

static int encode_calls;

static tw_status byte_encode(void *context, const char *text, size_t length, int32_t **ids,
                             size_t *count) {
    (void)context;
    encode_calls++;
    *ids = malloc((length ? length : 1) * sizeof(int32_t));
    if (!*ids) return TW_ERR_OUT_OF_MEMORY;
    for (size_t i = 0; i < length; i++) (*ids)[i] = (unsigned char)text[i];
    *count = length;
    return TW_OK;
}

static tw_encoder byte_encoder(uint64_t hash) {
    tw_encoder e = {byte_encode, NULL, hash, 256};
    return e;
}

static char tmpdir[64];

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        tw_test_fail(__FILE__, __LINE__, "cannot write %s", path);
        return;
    }
    fwrite(data, 1, n, f);
    fclose(f);
}

static bool file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

static char *doc(const tw_corpus *c, size_t i) {
    static char buf[256];
    snprintf(buf, sizeof buf, "%.*s", (int)c->doc_length[i], c->text + c->doc_offset[i]);
    return buf;
}

/* ------------------------------------------------------------------------------------------------
 * Corpora
 * ---------------------------------------------------------------------------------------------- */

static void test_parsing(void) {
    const char *text = "\n\nfirst doc\nsecond line\n\n\n  \t \nsecond\r\n\r\nthird\r\nline  \n\nlast";
    tw_corpus *c = NULL;
    TW_CHECK_OK(tw_corpus_from_memory("mem.txt", text, strlen(text), &c));
    if (!c) return;
    TW_CHECK(c->doc_count == 4, "expected 4 documents, got %zu", c->doc_count);
    if (c->doc_count == 4) {
        TW_CHECK(!strcmp(doc(c, 0), "first doc\nsecond line"), "doc 0: '%s'", doc(c, 0));
        TW_CHECK(!strcmp(doc(c, 1), "second"), "doc 1: '%s'", doc(c, 1));
        TW_CHECK(!strcmp(doc(c, 2), "third\nline  "), "doc 2 (\\r\\n): '%s'", doc(c, 2));
        TW_CHECK(!strcmp(doc(c, 3), "last"), "doc 3 (no final newline): '%s'", doc(c, 3));
    }
    TW_CHECK(c->file_bytes == strlen(text), "file bytes %llu",
             (unsigned long long)c->file_bytes);
    TW_CHECK(c->content_hash == tw_fnv1a64(TW_FNV1A_INIT, text, strlen(text)), "content hash");
    TW_CHECK(strchr(c->text, '\r') == NULL, "\\r\\n not normalised");
    tw_corpus_free(c);

    /* FNV-1a 64 reference values. */
    TW_CHECK(tw_fnv1a64(TW_FNV1A_INIT, "", 0) == 0xcbf29ce484222325ull, "fnv1a('')");
    TW_CHECK(tw_fnv1a64(TW_FNV1A_INIT, "a", 1) == 0xaf63dc4c8601ec8cull, "fnv1a('a')");

    /* One document, from a file. */
    char path[128];
    snprintf(path, sizeof path, "%s/one.txt", tmpdir);
    write_file(path, "just one line\n", 14);
    TW_CHECK_OK(tw_corpus_load(path, &c));
    if (c) TW_CHECK(c->doc_count == 1 && !strcmp(doc(c, 0), "just one line"), "one document");
    tw_corpus_free(c);
}

static void test_bad_corpora(void) {
    char path[128];
    tw_corpus *c = NULL;
    snprintf(path, sizeof path, "%s/missing.txt", tmpdir);
    tw_status s = tw_corpus_load(path, &c);
    TW_CHECK(s == TW_ERR_NOT_FOUND && strstr(tw_last_error(), "missing.txt"),
             "missing file: %s: %s", tw_status_name(s), tw_last_error());
    TW_CHECK(c == NULL, "corpus set on failure");

    snprintf(path, sizeof path, "%s/empty.txt", tmpdir);
    write_file(path, "", 0);
    s = tw_corpus_load(path, &c);
    TW_CHECK(s == TW_ERR_FORMAT && strstr(tw_last_error(), "empty.txt") &&
                 strstr(tw_last_error(), "empty"),
             "empty file: %s: %s", tw_status_name(s), tw_last_error());

    snprintf(path, sizeof path, "%s/blank.txt", tmpdir);
    write_file(path, "\n \n\t\r\n\n", 7);
    s = tw_corpus_load(path, &c);
    TW_CHECK(s == TW_ERR_FORMAT && strstr(tw_last_error(), "blank.txt"),
             "whitespace-only file: %s: %s", tw_status_name(s), tw_last_error());

    snprintf(path, sizeof path, "%s/nul.txt", tmpdir);
    write_file(path, "some text\0more", 14);
    s = tw_corpus_load(path, &c);
    TW_CHECK(s == TW_ERR_FORMAT && strstr(tw_last_error(), "nul.txt") &&
                 strstr(tw_last_error(), "NUL byte at offset 9"),
             "NUL byte: %s: %s", tw_status_name(s), tw_last_error());

    s = tw_corpus_load(tmpdir, &c); /* a directory */
    TW_CHECK(s == TW_ERR_IO && strstr(tw_last_error(), tmpdir), "directory: %s: %s",
             tw_status_name(s), tw_last_error());

    tw_encoder e = byte_encoder(1);
    tw_dataset *d = NULL;
    snprintf(path, sizeof path, "%s/nul.txt", tmpdir);
    s = tw_dataset_load(path, &e, NULL, &d);
    TW_CHECK(s == TW_ERR_FORMAT && d == NULL, "dataset of a bad corpus: %s", tw_last_error());
}

/* ------------------------------------------------------------------------------------------------
 * Split
 * ---------------------------------------------------------------------------------------------- */

static tw_corpus *numbered_corpus(size_t docs) {
    size_t cap = docs * 24 + 1, n = 0;
    char *text = malloc(cap);
    for (size_t i = 0; i < docs; i++) n += (size_t)snprintf(text + n, cap - n, "doc %zu.\n\n", i);
    tw_corpus *c = NULL;
    TW_CHECK_OK(tw_corpus_from_memory("numbered", text, n, &c));
    free(text);
    return c;
}

static void test_split(void) {
    tw_corpus *c = numbered_corpus(20000);
    if (!c) return;
    uint8_t *a = malloc(c->doc_count), *b = malloc(c->doc_count);
    size_t va = 0, vb = 0;
    TW_CHECK_OK(tw_corpus_split(c, 0.05, TW_DEFAULT_SPLIT_SEED, a, &va));
    TW_CHECK_OK(tw_corpus_split(c, 0.05, TW_DEFAULT_SPLIT_SEED, b, &vb));
    TW_CHECK(va == vb && memcmp(a, b, c->doc_count) == 0, "split not deterministic");
    TW_CHECK(va > 900 && va < 1100, "5%% of 20000 documents: %zu in validation", va);
    /* Fixed by the hash alone: these are the same on every machine. */
    size_t first[4], k = 0;
    for (size_t i = 0; i < c->doc_count && k < 4; i++)
        if (a[i]) first[k++] = i;
    printf("split: %zu of %zu documents in validation; first: %zu %zu %zu %zu\n", va,
           c->doc_count, first[0], first[1], first[2], first[3]);
    TW_CHECK(va == 963 && first[0] == 17 && first[1] == 23 && first[2] == 84 &&
                 first[3] == 102,
             "split changed: %zu docs, first %zu %zu %zu %zu (expected 963: 17 23 84 102)", va,
             first[0], first[1], first[2], first[3]);
    TW_CHECK_OK(tw_corpus_split(c, 0.05, 99, b, &vb));
    TW_CHECK(memcmp(a, b, c->doc_count) != 0, "another seed gave the same split");
    TW_CHECK_OK(tw_corpus_split(c, 0.5, TW_DEFAULT_SPLIT_SEED, b, &vb));
    TW_CHECK(vb > 9700 && vb < 10300, "50%%: %zu", vb);
    /* A larger fraction only adds documents: the smaller split is a subset. */
    size_t lost = 0;
    for (size_t i = 0; i < c->doc_count; i++) lost += a[i] && !b[i];
    TW_CHECK(lost == 0, "%zu documents left validation when the fraction grew", lost);
    TW_CHECK_OK(tw_corpus_split(c, 0.0, TW_DEFAULT_SPLIT_SEED, b, &vb));
    TW_CHECK(vb == 0, "fraction 0: %zu", vb);
    TW_CHECK(tw_corpus_split(c, 1.0, 1, b, &vb) == TW_ERR_INVALID_ARGUMENT, "fraction 1 accepted");
    TW_CHECK(tw_corpus_split(c, -0.1, 1, b, &vb) == TW_ERR_INVALID_ARGUMENT,
             "negative fraction accepted");
    free(a), free(b);
    tw_corpus_free(c);

    /* Tiny corpora: two documents give one each; one document stays in training. */
    for (size_t docs = 1; docs <= 3; docs++) {
        c = numbered_corpus(docs);
        uint8_t v[3];
        size_t nv = 0;
        TW_CHECK_OK(tw_corpus_split(c, 0.05, TW_DEFAULT_SPLIT_SEED, v, &nv));
        TW_CHECK(nv == (docs >= 2 ? 1u : 0u), "%zu documents: %zu in validation", docs, nv);
        TW_CHECK_OK(tw_corpus_split(c, 0.99, TW_DEFAULT_SPLIT_SEED, v, &nv));
        TW_CHECK(docs < 2 || nv < docs, "%zu documents at 0.99: no training left", docs);
        tw_corpus_free(c);
    }
}

/* ------------------------------------------------------------------------------------------------
 * Dataset and cache
 * ---------------------------------------------------------------------------------------------- */

/* The streams are EOT d0 EOT d1 ...: checks the counts against the corpus. */
static void check_streams(const tw_dataset *d, size_t corpus_docs, size_t text_bytes) {
    size_t eots = 0, bytes = 0;
    for (size_t i = 0; i < d->train_tokens; i++) *(d->train[i] == 256 ? &eots : &bytes) += 1;
    for (size_t i = 0; i < d->val_tokens; i++) *(d->val[i] == 256 ? &eots : &bytes) += 1;
    TW_CHECK(eots == corpus_docs && d->train_docs + d->val_docs == corpus_docs,
             "%zu EOT tokens, %zu + %zu docs, corpus %zu docs", eots, d->train_docs,
             d->val_docs, corpus_docs);
    TW_CHECK(bytes == text_bytes, "%zu text tokens, expected %zu", bytes, text_bytes);
    TW_CHECK(d->train_tokens > 0 && d->train[0] == 256, "train stream must start with EOT");
    TW_CHECK(d->val_docs == 0 || d->val[0] == 256, "val stream must start with EOT");
}

static void test_cache(void) {
    char path[256], cache[512];
    snprintf(path, sizeof path, "%s/corpus.txt", tmpdir);
    char *text;
    size_t n;
    TW_CHECK_OK(tw_synth_generate(0, 5, 3000, &text, &n));
    write_file(path, text, n);
    tw_corpus *c = NULL;
    TW_CHECK_OK(tw_corpus_load(path, &c));
    if (!c) return;
    size_t doc_bytes = 0;
    for (size_t i = 0; i < c->doc_count; i++) doc_bytes += c->doc_length[i];

    tw_encoder e = byte_encoder(0x1234abcdull);
    TW_CHECK(tw_dataset_cache_name(path, e.hash, cache, sizeof cache), "cache name");
    TW_CHECK(strstr(cache, "corpus.txt.000000001234abcd.twtok") != NULL, "cache name %s", cache);
    tw_data_options o = tw_data_options_default();

    /* First load writes the cache beside the corpus. */
    tw_dataset *d1 = NULL, *d2 = NULL;
    encode_calls = 0;
    TW_CHECK_OK(tw_dataset_load(path, &e, &o, &d1));
    if (!d1) return;
    TW_CHECK(d1->cache == TW_CACHE_WRITTEN && d1->cache_path && !strcmp(d1->cache_path, cache),
             "first load: cache %d at %s", (int)d1->cache, d1->cache_path);
    TW_CHECK(encode_calls == (int)c->doc_count, "%d encode calls for %zu docs", encode_calls,
             c->doc_count);
    TW_CHECK(file_exists(cache), "%s not written", cache);
    check_streams(d1, c->doc_count, doc_bytes);
    TW_CHECK(d1->val_docs >= 1, "no validation documents");
    printf("cache: %zu docs -> train %zu docs / %zu tokens, val %zu docs / %zu tokens\n",
           c->doc_count, d1->train_docs, d1->train_tokens, d1->val_docs, d1->val_tokens);

    /* Second load reads it, without tokenising, and gives the same streams. */
    encode_calls = 0;
    TW_CHECK_OK(tw_dataset_load(path, &e, &o, &d2));
    if (d2) {
        TW_CHECK(d2->cache == TW_CACHE_HIT && encode_calls == 0, "second load: cache %d, %d calls",
                 (int)d2->cache, encode_calls);
        TW_CHECK(d2->train_tokens == d1->train_tokens && d2->val_tokens == d1->val_tokens &&
                     !memcmp(d2->train, d1->train, d1->train_tokens * 4) &&
                     !memcmp(d2->val, d1->val, d1->val_tokens * 4) &&
                     d2->train_docs == d1->train_docs && d2->val_docs == d1->val_docs,
                 "cached streams differ");
    }
    tw_dataset_free(d2);

    /* Other split settings: rebuilt (same file name, new key). */
    o.val_fraction = 0.2;
    TW_CHECK_OK(tw_dataset_load(path, &e, &o, &d2));
    if (d2) TW_CHECK(d2->cache == TW_CACHE_WRITTEN && d2->val_docs > d1->val_docs,
                     "new fraction: cache %d, %zu val docs (%s)", (int)d2->cache, d2->val_docs,
                     d2->cache_note);
    tw_dataset_free(d2);
    o.val_fraction = TW_DEFAULT_VAL_FRACTION;
    TW_CHECK_OK(tw_dataset_load(path, &e, &o, &d2));
    if (d2) TW_CHECK(d2->cache == TW_CACHE_WRITTEN && strstr(d2->cache_note, "split"),
                     "back to 5%%: %d '%s'", (int)d2->cache, d2->cache_note);
    tw_dataset_free(d2);

    /* Another tokenizer: another file; the first one stays. */
    tw_encoder e2 = byte_encoder(0x99ull);
    TW_CHECK_OK(tw_dataset_load(path, &e2, &o, &d2));
    if (d2) TW_CHECK(d2->cache == TW_CACHE_WRITTEN && strstr(d2->cache_path, "0000000000000099"),
                     "second tokenizer: %s", d2->cache_path);
    tw_dataset_free(d2);

    /* Corrupt cache: one flipped token byte -> checksum fails -> rebuilt, never trusted. */
    {
        FILE *f = fopen(cache, "r+b");
        fseek(f, 200, SEEK_SET);
        int ch = fgetc(f);
        fseek(f, 200, SEEK_SET);
        fputc(ch ^ 0x01, f);
        fclose(f);
    }
    encode_calls = 0;
    TW_CHECK_OK(tw_dataset_load(path, &e, &o, &d2));
    if (d2) {
        TW_CHECK(d2->cache == TW_CACHE_WRITTEN && encode_calls > 0 &&
                     strstr(d2->cache_note, "checksum"),
                 "corrupt cache: %d, note '%s'", (int)d2->cache, d2->cache_note);
        TW_CHECK(!memcmp(d2->train, d1->train, d1->train_tokens * 4), "rebuilt streams differ");
    }
    tw_dataset_free(d2);

    /* Truncated cache -> rebuilt. */
    TW_CHECK(truncate(cache, 100) == 0, "truncate");
    TW_CHECK_OK(tw_dataset_load(path, &e, &o, &d2));
    if (d2) TW_CHECK(d2->cache == TW_CACHE_WRITTEN && strstr(d2->cache_note, "size"),
                     "truncated cache: %d, note '%s'", (int)d2->cache, d2->cache_note);
    tw_dataset_free(d2);

    /* Changed corpus (one more story) -> rebuilt with other streams. */
    {
        FILE *f = fopen(path, "ab");
        fputs("\n\nthe cat is big. the cat ran to the park.\n", f);
        fclose(f);
    }
    TW_CHECK_OK(tw_dataset_load(path, &e, &o, &d2));
    if (d2) {
        TW_CHECK(d2->cache == TW_CACHE_WRITTEN && strstr(d2->cache_note, "corpus changed") &&
                     d2->train_docs + d2->val_docs == c->doc_count + 1,
                 "changed corpus: %d, '%s'", (int)d2->cache, d2->cache_note);
    }
    tw_dataset_free(d2);

    /* No cache at all. */
    o.use_cache = false;
    encode_calls = 0;
    TW_CHECK_OK(tw_dataset_load(path, &e, &o, &d2));
    if (d2) TW_CHECK(d2->cache == TW_CACHE_OFF && !d2->cache_path && encode_calls > 0,
                     "use_cache false: %d", (int)d2->cache);
    tw_dataset_free(d2);
    o.use_cache = true;

    /* Read-only corpus directory: falls back to $TWIST_CACHE_DIR; then reused from there. */
    char ro[128], ro_corpus[192], fallback[128];
    snprintf(ro, sizeof ro, "%s/readonly", tmpdir);
    snprintf(fallback, sizeof fallback, "%s/cache/deeper", tmpdir);
    mkdir(ro, 0755);
    snprintf(ro_corpus, sizeof ro_corpus, "%s/corpus.txt", ro);
    write_file(ro_corpus, text, n);
    chmod(ro, 0555);
    setenv("TWIST_CACHE_DIR", fallback, 1);
    TW_CHECK_OK(tw_dataset_load(ro_corpus, &e, &o, &d2));
    if (d2) TW_CHECK(d2->cache == TW_CACHE_WRITTEN && d2->cache_path &&
                         !strncmp(d2->cache_path, fallback, strlen(fallback)),
                     "read-only dir: cache %d at %s", (int)d2->cache, d2->cache_path);
    tw_dataset_free(d2);
    TW_CHECK_OK(tw_dataset_load(ro_corpus, &e, &o, &d2));
    if (d2) TW_CHECK(d2->cache == TW_CACHE_HIT, "fallback cache not reused: %d", (int)d2->cache);
    tw_dataset_free(d2);
    char ro_cache[512];
    tw_dataset_cache_name(ro_corpus, e.hash, ro_cache, sizeof ro_cache);
    TW_CHECK(!file_exists(ro_cache), "wrote into the read-only directory");
    /* ... and when no location is writable, it still loads, uncached. */
    char blocked[160];
    snprintf(blocked, sizeof blocked, "%s/blocked", tmpdir);
    write_file(blocked, "x", 1); /* a file where the cache directory would go */
    char inside[200];
    snprintf(inside, sizeof inside, "%s/sub", blocked);
    setenv("TWIST_CACHE_DIR", inside, 1);
    TW_CHECK_OK(tw_dataset_load(ro_corpus, &e, &o, &d2));
    if (d2) TW_CHECK(d2->cache == TW_CACHE_UNWRITABLE && !d2->cache_path && d2->train_tokens > 0,
                     "no writable location: %d (%s)", (int)d2->cache, d2->cache_note);
    tw_dataset_free(d2);
    unsetenv("TWIST_CACHE_DIR");
    chmod(ro, 0755);

    tw_dataset_free(d1);
    tw_corpus_free(c);
    free(text);
}

/* ------------------------------------------------------------------------------------------------
 * Loader
 * ---------------------------------------------------------------------------------------------- */

enum { B = 4, T = 8, N = 1000 };

static void test_loader(void) {
    int32_t stream[N];
    for (int i = 0; i < N; i++) stream[i] = i; /* a token's value is its position */
    int32_t in1[B * T], tg1[B * T], in2[B * T], tg2[B * T];
    tw_loader a, b;
    TW_CHECK_OK(tw_loader_init(&a, stream, N, B, T, 7, 0, 1, "test stream"));
    TW_CHECK_OK(tw_loader_init(&b, stream, N, B, T, 7, 0, 1, "test stream"));
    int contiguous = 1, same = 1;
    for (int step = 0; step < 20; step++) {
        TW_CHECK_OK(tw_loader_next(&a, in1, tg1));
        TW_CHECK_OK(tw_loader_next(&b, in2, tg2));
        same &= !memcmp(in1, in2, sizeof in1) && !memcmp(tg1, tg2, sizeof tg1);
        for (int r = 0; r < B; r++)
            for (int t = 0; t < T; t++) {
                contiguous &= in1[r * T + t] == in1[r * T] + t;
                contiguous &= tg1[r * T + t] == in1[r * T + t] + 1;
                contiguous &= in1[r * T] >= 0 && in1[r * T] + T < N;
            }
    }
    TW_CHECK(same, "same seed, different batches");
    TW_CHECK(contiguous, "targets are not the inputs shifted by one");
    TW_CHECK(tw_loader_get_state(&a).batches == 20, "batch counter");
    /* Pinned: the first start position of seed 7 is the same on every machine. */
    tw_loader c;
    TW_CHECK_OK(tw_loader_init(&c, stream, N, B, T, 7, 0, 1, "test stream"));
    TW_CHECK_OK(tw_loader_next(&c, in1, tg1));
    printf("loader: seed 7 first positions %d %d %d %d\n", in1[0], in1[T], in1[2 * T],
           in1[3 * T]);
    TW_CHECK(in1[0] == 345 && in1[T] == 390 && in1[2 * T] == 72 && in1[3 * T] == 317,
             "seed 7 draws changed: %d %d %d %d (expected 345 390 72 317)", in1[0], in1[T],
             in1[2 * T], in1[3 * T]);

    /* Resume: save after 5 batches, draw 3; a fresh loader restored to the state draws the same. */
    tw_loader r1, r2;
    TW_CHECK_OK(tw_loader_init(&r1, stream, N, B, T, 11, 0, 1, "resume"));
    for (int i = 0; i < 5; i++) TW_CHECK_OK(tw_loader_next(&r1, in1, tg1));
    tw_loader_state saved = tw_loader_get_state(&r1);
    int32_t after[3][B * T];
    for (int i = 0; i < 3; i++) TW_CHECK_OK(tw_loader_next(&r1, after[i], tg1));
    TW_CHECK_OK(tw_loader_init(&r2, stream, N, B, T, 11, 0, 1, "resume"));
    TW_CHECK_OK(tw_loader_set_state(&r2, saved));
    int resumed = 1;
    for (int i = 0; i < 3; i++) {
        TW_CHECK_OK(tw_loader_next(&r2, in2, tg2));
        resumed &= !memcmp(in2, after[i], sizeof in2);
    }
    TW_CHECK(resumed, "resumed loader drew other batches");
    TW_CHECK(tw_loader_get_state(&r2).batches == 8, "resumed batch counter");
    tw_loader_state bad = {0, 0, 0};
    TW_CHECK(tw_loader_set_state(&r2, bad) == TW_ERR_INVALID_ARGUMENT, "zero RNG state accepted");

    /* Shards: disjoint blocks of start positions that cover all of them. */
    enum { SHARDS = 3 };
    int owner[N];
    for (int i = 0; i < N; i++) owner[i] = -1;
    int overlap = 0, outside = 0;
    uint64_t covered = 0;
    for (int w = 0; w < SHARDS; w++) {
        tw_loader s;
        TW_CHECK_OK(tw_loader_init(&s, stream, N, B, T, 3, w, SHARDS, "shard"));
        for (uint64_t p = s.first; p < s.first + s.count; p++) {
            if (owner[p] != -1) overlap++;
            owner[p] = w;
        }
        covered += s.count;
        for (int step = 0; step < 200; step++) {
            TW_CHECK_OK(tw_loader_next(&s, in1, tg1));
            for (int r = 0; r < B; r++) outside += owner[in1[r * T]] != w;
        }
    }
    TW_CHECK(overlap == 0 && covered == N - T, "shards overlap %d, cover %llu of %d", overlap,
             (unsigned long long)covered, N - T);
    TW_CHECK(outside == 0, "%d positions drawn outside their shard", outside);
    TW_CHECK(tw_loader_init(&a, stream, N, B, T, 3, 3, 3, "shard") == TW_ERR_INVALID_ARGUMENT,
             "shard 3 of 3 accepted");

    /* Evaluation windows: every target 1..N-1 exactly once, padding -1, across shards too. */
    for (int shards = 1; shards <= 2; shards++) {
        int seen[N] = {0};
        int rows_total = 0, bad_pad = 0, bad_input = 0;
        for (int w = 0; w < shards; w++) {
            tw_loader e;
            TW_CHECK_OK(tw_loader_init(&e, stream, N, B, T, 0, w, shards, "eval"));
            int rows;
            for (;;) {
                TW_CHECK_OK(tw_loader_next_eval(&e, in1, tg1, &rows));
                if (rows == 0) break;
                rows_total += rows;
                for (int i = 0; i < B * T; i++) {
                    if (tg1[i] >= 0) {
                        seen[tg1[i]]++;
                        bad_input += in1[i] != tg1[i] - 1;
                    } else if (in1[i] != 0) {
                        bad_pad++;
                    }
                }
            }
        }
        int missing = 0, twice = 0;
        for (int i = 1; i < N; i++) missing += seen[i] == 0, twice += seen[i] > 1;
        TW_CHECK(missing == 0 && twice == 0 && seen[0] == 0,
                 "%d shard(s): %d targets missing, %d seen twice", shards, missing, twice);
        TW_CHECK(bad_pad == 0 && bad_input == 0, "padding %d, inputs %d wrong", bad_pad,
                 bad_input);
        TW_CHECK((uint64_t)rows_total == tw_loader_window_count(N, T),
                 "%d rows, expected %llu windows", rows_total,
                 (unsigned long long)tw_loader_window_count(N, T));
    }
    TW_CHECK(tw_loader_window_count(N, T) == 125, "ceil(999 / 8) windows");
    TW_CHECK(tw_loader_window_count(9, 8) == 1 && tw_loader_window_count(17, 8) == 2,
             "window counts");

    /* Too short a stream: a message naming it and the sizes. */
    tw_status s = tw_loader_init(&a, stream, 8, B, T, 1, 0, 1, "tiny.txt (validation)");
    TW_CHECK(s == TW_ERR_INVALID_ARGUMENT && strstr(tw_last_error(), "tiny.txt (validation)") &&
                 strstr(tw_last_error(), "8 tokens") && strstr(tw_last_error(), "9"),
             "short stream: %s", tw_last_error());
    s = tw_loader_init(&a, stream, 9, B, T, 1, 0, 2, "two workers");
    TW_CHECK(s == TW_ERR_INVALID_ARGUMENT && strstr(tw_last_error(), "2 workers"),
             "1 position for 2 shards: %s", tw_last_error());
}

/* ------------------------------------------------------------------------------------------------
 * The real level-0 corpus
 * ---------------------------------------------------------------------------------------------- */

static void test_shared_corpus(void) {
#ifdef TWIST_SHARED_DATA
    char path[1024];
    snprintf(path, sizeof path, "%s/tinystories-l0.txt", TWIST_SHARED_DATA);
    if (!file_exists(path)) {
        printf("shared corpus: %s absent, skipped\n", path);
        return;
    }
    tw_corpus *c = NULL;
    TW_CHECK_OK(tw_corpus_load(path, &c));
    if (!c) return;
    uint8_t *v = malloc(c->doc_count);
    size_t nv = 0;
    TW_CHECK_OK(tw_corpus_split(c, TW_DEFAULT_VAL_FRACTION, TW_DEFAULT_SPLIT_SEED, v, &nv));
    printf("tinystories-l0.txt: %llu bytes, %zu documents, %zu train / %zu validation\n",
           (unsigned long long)c->file_bytes, c->doc_count, c->doc_count - nv, nv);
    TW_CHECK(c->doc_count == 20010, "tinystories-l0.txt: %zu documents (README says 20,010)",
             c->doc_count);
    TW_CHECK(nv > 800 && nv < 1200, "validation documents %zu", nv);
    free(v);

    /* Byte-level tokens into a private cache directory (the shared folder stays untouched). */
    char cache_dir[128];
    snprintf(cache_dir, sizeof cache_dir, "%s/shared-cache", tmpdir);
    setenv("TWIST_CACHE_DIR", cache_dir, 1);
    tw_encoder e = byte_encoder(0x5eedull);
    tw_dataset *d = NULL;
    TW_CHECK_OK(tw_dataset_load(path, &e, NULL, &d));
    if (d) {
        printf("tinystories-l0.txt: train %zu tokens, val %zu tokens (bytes + EOT); cache %s\n",
               d->train_tokens, d->val_tokens, d->cache_path ? d->cache_path : "(none)");
        TW_CHECK(d->cache_path && !strncmp(d->cache_path, cache_dir, strlen(cache_dir)),
                 "cache of the shared corpus not in the private directory: %s", d->cache_path);
        TW_CHECK(d->train_docs + d->val_docs == c->doc_count, "document counts");
        tw_loader l;
        TW_CHECK_OK(tw_loader_init(&l, d->val, d->val_tokens, 16, 128, 1, 0, 1,
                                   "tinystories-l0.txt (validation)"));
        printf("tinystories-l0.txt: %llu evaluation windows of 128\n",
               (unsigned long long)tw_loader_window_count(d->val_tokens, 128));
    }
    char beside[1200];
    tw_dataset_cache_name(path, e.hash, beside, sizeof beside);
    TW_CHECK(!file_exists(beside), "wrote a cache into the shared data folder: %s", beside);
    tw_dataset_free(d);
    unsetenv("TWIST_CACHE_DIR");
    tw_corpus_free(c);

    snprintf(path, sizeof path, "%s/fairytales-l1.txt", TWIST_SHARED_DATA);
    if (file_exists(path)) {
        TW_CHECK_OK(tw_corpus_load(path, &c));
        if (c) {
            printf("fairytales-l1.txt: %llu bytes, %zu documents\n",
                   (unsigned long long)c->file_bytes, c->doc_count);
            TW_CHECK(c->doc_count == 10921, "fairytales-l1.txt: %zu documents (README: 10,921)",
                     c->doc_count);
        }
        tw_corpus_free(c);
    }
#else
    printf("shared corpus: TWIST_SHARED_DATA not defined, skipped\n");
#endif
}

static void remove_tree(const char *dir) {
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/twist-data-XXXXXX");
    if (!mkdtemp(tmpdir)) tw_test_skip("cannot create a temporary directory");
    test_parsing();
    test_bad_corpora();
    test_split();
    test_cache();
    test_loader();
    test_shared_corpus();
    remove_tree(tmpdir);
    return tw_test_finish("data");
}
