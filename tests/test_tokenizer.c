/* Byte-level BPE tokenizer: the GPT-2 pre-token split, exact round trips of arbitrary bytes,
 * training on small known corpora (first merges, tie-breaking, no merge across pieces), the
 * tokenizer.json layout, save/load identity, refusal of bad files, and (when ../shared/data is
 * present, passed as argv[1]) training on a TinyStories slice: compression and round trip. */
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "harness.h"
#include "twist/tokenizer.h"

static char temp_dir[256];

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static char *temp_path(const char *name) {
    static char paths[8][512];
    static int next;
    char *p = paths[next++ % 8];
    snprintf(p, sizeof paths[0], "%s/%s", temp_dir, name);
    return p;
}

static void write_file(const char *path, const void *data, size_t length) {
    FILE *f = fopen(path, "wb");
    if (!f) tw_test_skip("cannot write %s", path);
    fwrite(data, 1, length, f);
    fclose(f);
}

static char *read_file(const char *path, size_t *length) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *data = malloc((size_t)n + 1);
    size_t got = fread(data, 1, (size_t)n, f);
    fclose(f);
    data[got] = '\0';
    *length = got;
    return data;
}

/* Number of entries in temp_dir (to see that a save leaves no temporary file behind). */
static int temp_dir_entries(void) {
    DIR *dir = opendir(temp_dir);
    int count = 0;
    struct dirent *entry;
    while (dir && (entry = readdir(dir)) != NULL) count += entry->d_name[0] != '.';
    if (dir) closedir(dir);
    return count;
}

/* ---- pre-token split ------------------------------------------------------------------------- */

/* Splits `text` and compares with the NULL-terminated list of expected pieces. */
static void check_split(const char *text, size_t length, const char *const *expected) {
    size_t at = 0;
    int k = 0;
    while (at < length) {
        size_t n = tw_tokenizer_piece_length(text + at, length - at);
        if (n == 0 || at + n > length) {
            TW_CHECK(false, "split of \"%s\": piece length %zu at %zu", text, n, at);
            return;
        }
        if (!expected[k]) {
            TW_CHECK(false, "split of \"%s\": extra piece \"%.*s\"", text, (int)n, text + at);
            return;
        }
        TW_CHECK(n == strlen(expected[k]) && memcmp(text + at, expected[k], n) == 0,
                 "split of \"%s\": piece %d is \"%.*s\", expected \"%s\"", text, k, (int)n,
                 text + at, expected[k]);
        at += n;
        k++;
    }
    TW_CHECK(expected[k] == NULL, "split of \"%s\": missing piece \"%s\"", text,
             expected[k] ? expected[k] : "");
}

#define SPLIT(text, ...)                                                                  \
    do {                                                                                  \
        static const char *const pieces_[] = {__VA_ARGS__, NULL};                         \
        check_split((text), sizeof(text) - 1, pieces_);                                   \
    } while (0)

static void test_split(void) {
    /* The examples' pieces are what GPT-2's regex gives (checked with Python's `regex`). */
    SPLIT("Hello world's  42x!!\n\n", "Hello", " world", "'s", " ", " 42", "x", "!!", "\n\n");
    SPLIT("don't they're we've I'm you'll he'd", "don", "'t", " they", "'re", " we", "'ve", " I",
          "'m", " you", "'ll", " he", "'d");
    SPLIT("A'S 'sun", "A", "'", "S", " '", "sun"); /* contractions are case-sensitive */
    SPLIT("hello!!'s", "hello", "!!'", "s");
    SPLIT("x  \n\ny", "x", "  \n", "\n", "y");
    SPLIT("a\r\nb\tc", "a", "\r", "\n", "b", "\t", "c"); /* \s+(?!\S) leaves the \n alone */
    SPLIT("a\r\n\r\n", "a", "\r\n\r\n");
    SPLIT("   indented", "  ", " indented");
    SPLIT("end   ", "end", "   ");
    SPLIT("abc123 456 !? x", "abc", "123", " 456", " !?", " x");
    /* Unicode classes: letters and numbers of every script, marks and symbols as "other" (the
     * pieces are HF tokenizers' and Python `regex`'s). Each invalid UTF-8 sequence counts as the
     * U+FFFD that HF would be given in its place (a symbol): here 0xff and 0x80, two of them. */
    SPLIT("caf\xc3\xa9 \xff\x80z 9", "caf\xc3\xa9", " \xff\x80", "z", " 9");
    SPLIT("\xe2\x80\x9cQuote,\xe2\x80\x9d she said\xe2\x80\x94ok", "\xe2\x80\x9c", "Quote",
          ",\xe2\x80\x9d", " she", " said", "\xe2\x80\x94", "ok"); /* curly quotes, em dash */
    SPLIT("\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82 \xe4\xb8\xad\xe6\x96\x87",
          "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82", " \xe4\xb8\xad\xe6\x96\x87");
    SPLIT("\xd9\xa3\xd9\xa4x \xef\xbc\x91\xc2\xb2", "\xd9\xa3\xd9\xa4", "x",
          " \xef\xbc\x91\xc2\xb2"); /* Arabic-Indic, fullwidth and superscript digits */
    SPLIT("e\xcc\x81t\xc3\xa9", "e", "\xcc\x81", "t\xc3\xa9"); /* a combining mark is a mark */
    SPLIT("a\xc2\xa0" "b\xe3\x80\x80\xe3\x80\x80" "c", "a", "\xc2\xa0", "b", "\xe3\x80\x80",
          "\xe3\x80\x80", "c"); /* NBSP, ideographic space: white space, but not " ?" */
    SPLIT("\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd ok", "\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd", " ok");
    SPLIT("!\xff?", "!\xff?"); /* U+FFFD joins the punctuation around it */
    SPLIT(" \xe2\x82", " \xe2\x82"); /* a cut-off character at the end: one U+FFFD */
    SPLIT(" ", " ");
    SPLIT("'", "'");
    TW_CHECK(tw_tokenizer_piece_length("", 0) == 0, "empty text has a piece");
    /* NUL is "other" (neither letter, digit nor whitespace). */
    static const char nul[] = {'a', 0, 0, 'b'};
    TW_CHECK(tw_tokenizer_piece_length(nul, 4) == 1 && tw_tokenizer_piece_length(nul + 1, 3) == 2,
             "NUL bytes split wrongly");
}

/* ---- round trips ----------------------------------------------------------------------------- */

static void check_round_trip(const tw_tokenizer *tok, const char *text, size_t length,
                             const char *what) {
    int32_t *ids = NULL;
    size_t count = 0;
    TW_CHECK_OK(tw_tokenizer_encode(tok, text, length, &ids, &count));
    if (!ids) return;
    TW_CHECK(count <= length, "%s: %zu ids for %zu bytes", what, count, length);
    for (size_t i = 0; i < count; i++)
        if (ids[i] < 0 || ids[i] >= tw_tokenizer_vocab_size(tok) ||
            ids[i] == tw_tokenizer_eot_id(tok)) {
            TW_CHECK(false, "%s: ids[%zu] = %d", what, i, ids[i]);
            break;
        }
    char *back = NULL;
    size_t back_length = 0;
    TW_CHECK_OK(tw_tokenizer_decode(tok, ids, count, &back, &back_length));
    TW_CHECK(back && back_length == length && memcmp(back, text, length) == 0,
             "%s: round trip changed the bytes (%zu -> %zu bytes)", what, length, back_length);
    free(back);
    free(ids);
}

static const char small_corpus[] =
    "the cat sat on the mat. the cat was happy.\n\n"
    "a dog ran to the cat, and the dog said: \"hello, cat!\" the cat said hello.\r\n"
    "\tnumbers 12 345 6789 and   spaces   everywhere  \n\n"
    "they're here; we've got it, isn't it? I'll say it's theirs.\n";

static void test_round_trip(void) {
    tw_tokenizer *tok = NULL;
    const char *texts[] = {small_corpus};
    size_t lengths[] = {sizeof small_corpus - 1};
    TW_CHECK_OK(tw_tokenizer_train_texts(texts, lengths, 1, 400, &tok));
    if (!tok) return;
    TW_CHECK(tw_tokenizer_merge_count(tok) > 20, "only %d merges on the small corpus",
             tw_tokenizer_merge_count(tok));

    check_round_trip(tok, "", 0, "empty text");
    check_round_trip(tok, small_corpus, sizeof small_corpus - 1, "the training text");
    static const char tricky[] = "line\r\nnext\ttab    four spaces\n\n\n  \x00\x00 nul \xff\xfe\x80 "
                                 "caf\xc3\xa9 \xe2\x82\xac <|endoftext|> the end";
    check_round_trip(tok, tricky, sizeof tricky - 1, "tricky text");

    /* Random byte strings of every length up to 300, heavy on 0x00, 0xff, spaces, letters. */
    tw_test_rng rng;
    tw_test_rng_seed(&rng, 1234);
    char buffer[300];
    for (int trial = 0; trial < 300; trial++) {
        size_t n = (size_t)trial;
        for (size_t i = 0; i < n; i++) {
            int kind = tw_test_rng_int(&rng, 6);
            static const char common[] = "the cat \n\t\r";
            buffer[i] = kind == 0 ? 0 : kind == 1 ? (char)0xff : kind == 2
                ? common[tw_test_rng_int(&rng, (int)sizeof common - 1)]
                : (char)tw_test_rng_int(&rng, 256);
        }
        char what[64];
        snprintf(what, sizeof what, "random bytes #%d", trial);
        check_round_trip(tok, buffer, n, what);
    }
    /* Long pieces (beyond the encode cache's piece limit): one letter run, one space run. */
    size_t long_n = 100000;
    char *long_text = malloc(long_n);
    for (size_t i = 0; i < long_n; i++) long_text[i] = "the"[i % 3];
    check_round_trip(tok, long_text, long_n, "100000-byte letter run");
    memset(long_text, ' ', long_n);
    check_round_trip(tok, long_text, long_n, "100000 spaces");
    for (size_t i = 0; i < long_n; i++) long_text[i] = (char)(0x80 + tw_test_rng_int(&rng, 128));
    check_round_trip(tok, long_text, long_n, "100000 high bytes");
    free(long_text);

    /* The end-of-text token: never produced by encoding, decoded as its text. */
    int32_t eot = tw_tokenizer_eot_id(tok);
    TW_CHECK(eot == tw_tokenizer_vocab_size(tok) - 1, "eot id %d, vocab %d", eot,
             tw_tokenizer_vocab_size(tok));
    char *text = NULL;
    size_t text_length = 0;
    int32_t seq[] = {'a', eot, 'b'};
    TW_CHECK_OK(tw_tokenizer_decode(tok, seq, 3, &text, &text_length));
    TW_CHECK(text && strcmp(text, "a<|endoftext|>b") == 0, "decoded eot as \"%s\"",
             text ? text : "");
    free(text);
    int32_t bad[] = {5, tw_tokenizer_vocab_size(tok)};
    TW_CHECK_ERROR(tw_tokenizer_decode(tok, bad, 2, &text, &text_length), TW_ERR_INVALID_ARGUMENT,
                 "ids[1]");

    /* Cached and uncached encodes agree: the same text twice gives the same ids. */
    int32_t *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    TW_CHECK_OK(tw_tokenizer_encode(tok, small_corpus, sizeof small_corpus - 1, &a, &na));
    TW_CHECK_OK(tw_tokenizer_encode(tok, small_corpus, sizeof small_corpus - 1, &b, &nb));
    TW_CHECK(na == nb && a && b && memcmp(a, b, na * sizeof *a) == 0, "second encode differs");
    TW_CHECK(na < (sizeof small_corpus - 1) / 2, "training text encodes into %zu tokens for %zu "
             "bytes", na, sizeof small_corpus - 1);
    free(a);
    free(b);
    tw_tokenizer_free(tok);
}

/* ---- concurrent encodes -------------------------------------------------------------------- */

typedef struct encode_job {
    const tw_tokenizer *tok;
    const char *text;
    size_t length;
    int32_t *ids;
    size_t count;
    tw_status status;
} encode_job;

static void *encode_thread(void *arg) {
    encode_job *job = arg;
    for (int rep = 0; rep < 20 && job->status == TW_OK; rep++) {
        free(job->ids);
        job->ids = NULL;
        job->status = tw_tokenizer_encode(job->tok, job->text, job->length, &job->ids, &job->count);
    }
    return NULL;
}

/* Four threads encoding through one tokenizer (the shared cache is locked) agree with a lone one. */
static void test_concurrent_encode(void) {
    tw_tokenizer *tok = NULL;
    const char *texts[] = {small_corpus};
    size_t lengths[] = {sizeof small_corpus - 1};
    TW_CHECK_OK(tw_tokenizer_train_texts(texts, lengths, 1, 350, &tok));
    if (!tok) return;
    size_t n = 64 << 10;
    char *text = malloc(n);
    tw_test_rng rng;
    tw_test_rng_seed(&rng, 99);
    for (size_t i = 0; i < n; i++)
        text[i] = small_corpus[tw_test_rng_int(&rng, (int)sizeof small_corpus - 1)];
    int32_t *expected = NULL;
    size_t expected_count = 0;
    TW_CHECK_OK(tw_tokenizer_encode(tok, text, n, &expected, &expected_count));
    encode_job jobs[4];
    pthread_t threads[4];
    for (int t = 0; t < 4; t++) {
        jobs[t] = (encode_job){tok, text, n, NULL, 0, TW_OK};
        pthread_create(&threads[t], NULL, encode_thread, &jobs[t]);
    }
    for (int t = 0; t < 4; t++) {
        pthread_join(threads[t], NULL);
        TW_CHECK(jobs[t].status == TW_OK && jobs[t].count == expected_count && expected &&
                     memcmp(jobs[t].ids, expected, expected_count * sizeof *expected) == 0,
                 "thread %d encoded differently", t);
        free(jobs[t].ids);
    }
    free(expected);
    free(text);
    tw_tokenizer_free(tok);
}

/* ---- training -------------------------------------------------------------------------------- */

static void expect_merge(const tw_tokenizer *tok, int rank, const char *left, const char *right,
                         const char *result) {
    int32_t l, r, c;
    if (tw_tokenizer_merge(tok, rank, &l, &r, &c) != TW_OK) {
        TW_CHECK(false, "no merge %d", rank);
        return;
    }
    size_t nl, nr, nc;
    const unsigned char *bl = tw_tokenizer_token_bytes(tok, l, &nl);
    const unsigned char *br = tw_tokenizer_token_bytes(tok, r, &nr);
    const unsigned char *bc = tw_tokenizer_token_bytes(tok, c, &nc);
    TW_CHECK(nl == strlen(left) && !memcmp(bl, left, nl) && nr == strlen(right) &&
                 !memcmp(br, right, nr) && nc == strlen(result) && !memcmp(bc, result, nc),
             "merge %d is \"%.*s\" + \"%.*s\" -> \"%.*s\", expected \"%s\" + \"%s\" -> \"%s\"",
             rank, (int)nl, bl, (int)nr, br, (int)nc, bc, left, right, result);
    TW_CHECK(c == 256 + rank, "merge %d made token %d, expected %d", rank, c, 256 + rank);
}

static void test_training(void) {
    /* Pieces: "hug", " hug" x2, " pug", " pun", " bun", " hugs". Pair counts: (u,g) 5, (h,u) 4,
     * (' ',h) 3, ... so "ug" comes first, then "hug" (4), then " hug" (3). */
    static const char hugs[] = "hug hug hug pug pun bun hugs";
    const char *path = temp_path("hugs.txt");
    write_file(path, hugs, sizeof hugs - 1);
    tw_tokenizer *tok = NULL;
    const char *paths[] = {path};
    TW_CHECK_OK(tw_tokenizer_train(paths, 1, 259 + 1, &tok));
    if (tok) {
        TW_CHECK(tw_tokenizer_vocab_size(tok) == 260, "vocab %d", tw_tokenizer_vocab_size(tok));
        TW_CHECK(tw_tokenizer_merge_count(tok) == 3, "%d merges", tw_tokenizer_merge_count(tok));
        expect_merge(tok, 0, "u", "g", "ug");
        expect_merge(tok, 1, "h", "ug", "hug");
        expect_merge(tok, 2, " ", "hug", " hug");
        int32_t *ids = NULL;
        size_t count = 0;
        TW_CHECK_OK(tw_tokenizer_encode(tok, " hugs hug", 9, &ids, &count));
        TW_CHECK(count == 3 && ids && ids[0] == 258 && ids[1] == 's' && ids[2] == 258,
                 "\" hugs hug\" encoded into %zu ids", count);
        free(ids);
        tw_tokenizer_free(tok);
    }

    /* Ties go to the smallest (left id, right id): in "ab cd" every pair occurs once, so (' ', c)
     * = (32, 99) is first, then (a, b) = (97, 98) before (" c", d) = (256, 100). With nothing left
     * to merge the vocabulary stops short of the size asked for. */
    const char *texts[] = {"ab cd"};
    size_t lengths[] = {5};
    TW_CHECK_OK(tw_tokenizer_train_texts(texts, lengths, 1, 300, &tok));
    if (tok) {
        TW_CHECK(tw_tokenizer_vocab_size(tok) == 260 && tw_tokenizer_eot_id(tok) == 259,
                 "vocab %d, eot %d; expected 260 and 259", tw_tokenizer_vocab_size(tok),
                 tw_tokenizer_eot_id(tok));
        expect_merge(tok, 0, " ", "c", " c");
        expect_merge(tok, 1, "a", "b", "ab");
        expect_merge(tok, 2, " c", "d", " cd");
        tw_tokenizer_free(tok);
    }

    /* Merges never cross piece boundaries: "ab!ab!..." has pieces "ab" and "!" only. */
    const char *bang[] = {"ab!ab!ab!ab!ab!ab!"};
    size_t bang_length[] = {18};
    TW_CHECK_OK(tw_tokenizer_train_texts(bang, bang_length, 1, 300, &tok));
    if (tok) {
        TW_CHECK(tw_tokenizer_merge_count(tok) == 1, "%d merges, expected only \"ab\"",
                 tw_tokenizer_merge_count(tok));
        expect_merge(tok, 0, "a", "b", "ab");
        tw_tokenizer_free(tok);
    }

    /* Training is deterministic; a different vocabulary size gives a different hash. */
    tw_tokenizer *t1 = NULL, *t2 = NULL, *t3 = NULL;
    const char *corpus[] = {small_corpus};
    size_t corpus_length[] = {sizeof small_corpus - 1};
    TW_CHECK_OK(tw_tokenizer_train_texts(corpus, corpus_length, 1, 330, &t1));
    TW_CHECK_OK(tw_tokenizer_train_texts(corpus, corpus_length, 1, 330, &t2));
    TW_CHECK_OK(tw_tokenizer_train_texts(corpus, corpus_length, 1, 329, &t3));
    if (t1 && t2 && t3) {
        TW_CHECK(tw_tokenizer_hash(t1) == tw_tokenizer_hash(t2), "same training, different hash");
        TW_CHECK(tw_tokenizer_hash(t1) != tw_tokenizer_hash(t3), "different vocab, same hash");
        TW_CHECK(tw_tokenizer_vocab_size(t1) == 330, "vocab %d", tw_tokenizer_vocab_size(t1));
    }
    tw_tokenizer_free(t1);
    tw_tokenizer_free(t2);
    tw_tokenizer_free(t3);

    /* Bad arguments and files. */
    TW_CHECK_ERROR(tw_tokenizer_train(paths, 1, 256, &tok), TW_ERR_INVALID_ARGUMENT, "256");
    const char *missing[] = {temp_path("no-such-corpus.txt")};
    TW_CHECK_ERROR(tw_tokenizer_train(missing, 1, 300, &tok), TW_ERR_NOT_FOUND, "no-such-corpus");
    TW_CHECK(tok == NULL, "failed training left a tokenizer");
}

/* ---- tokenizer.json -------------------------------------------------------------------------- */

static int vocab_id(const cJSON *vocab, const char *key) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(vocab, key);
    return cJSON_IsNumber(item) ? item->valueint : -1;
}

static void test_json_layout(const tw_tokenizer *tok, const char *path) {
    size_t length = 0;
    char *text = read_file(path, &length);
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    free(text);
    TW_CHECK(root != NULL, "%s is not JSON", path);
    if (!root) return;
    const cJSON *version = cJSON_GetObjectItemCaseSensitive(root, "version");
    TW_CHECK(cJSON_IsString(version) && !strcmp(version->valuestring, "1.0"), "version");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    const cJSON *first = cJSON_GetArrayItem(added, 0);
    TW_CHECK(cJSON_GetArraySize(added) == 1 &&
                 cJSON_GetObjectItemCaseSensitive(first, "id")->valueint == tw_tokenizer_eot_id(tok) &&
                 !strcmp(cJSON_GetObjectItemCaseSensitive(first, "content")->valuestring,
                         "<|endoftext|>") &&
                 cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(first, "special")),
             "added_tokens is not the one <|endoftext|> entry");
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    TW_CHECK(!strcmp(cJSON_GetObjectItemCaseSensitive(pre, "type")->valuestring, "ByteLevel") &&
                 cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(pre, "add_prefix_space")),
             "pre_tokenizer is not ByteLevel without prefix space");
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    TW_CHECK(!strcmp(cJSON_GetObjectItemCaseSensitive(model, "type")->valuestring, "BPE"),
             "model.type");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    TW_CHECK(cJSON_GetArraySize(vocab) == tw_tokenizer_vocab_size(tok), "vocab has %d entries",
             cJSON_GetArraySize(vocab));
    /* GPT-2's byte-to-unicode table: '!' is itself, space is U+0120 'Ġ', NUL is U+0100 'Ā',
     * newline U+010A 'Ċ', 0xff is U+00FF 'ÿ', 0xad (soft hyphen) U+0143 'Ń'. */
    TW_CHECK(vocab_id(vocab, "!") == '!', "\"!\" -> %d", vocab_id(vocab, "!"));
    TW_CHECK(vocab_id(vocab, "\xc4\xa0") == ' ', "\"Ġ\" -> %d", vocab_id(vocab, "\xc4\xa0"));
    TW_CHECK(vocab_id(vocab, "\xc4\x80") == 0, "\"Ā\" -> %d", vocab_id(vocab, "\xc4\x80"));
    TW_CHECK(vocab_id(vocab, "\xc4\x8a") == '\n', "\"Ċ\" -> %d", vocab_id(vocab, "\xc4\x8a"));
    TW_CHECK(vocab_id(vocab, "\xc3\xbf") == 0xff, "\"ÿ\" -> %d", vocab_id(vocab, "\xc3\xbf"));
    TW_CHECK(vocab_id(vocab, "\xc5\x83") == 0xad, "\"Ń\" -> %d", vocab_id(vocab, "\xc5\x83"));
    TW_CHECK(vocab_id(vocab, "<|endoftext|>") == tw_tokenizer_eot_id(tok), "eot in vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    TW_CHECK(cJSON_GetArraySize(merges) == tw_tokenizer_merge_count(tok), "%d merges in file",
             cJSON_GetArraySize(merges));
    /* The small corpus's first merges are "h e" and "t he" (as a plain Python BPE finds too). */
    const cJSON *m0 = cJSON_GetArrayItem(merges, 0), *m1 = cJSON_GetArrayItem(merges, 1);
    TW_CHECK(cJSON_IsString(m0) && !strcmp(m0->valuestring, "h e"), "merges[0] is \"%s\"",
             cJSON_IsString(m0) ? m0->valuestring : "?");
    TW_CHECK(cJSON_IsString(m1) && !strcmp(m1->valuestring, "t he"), "merges[1] is \"%s\"",
             cJSON_IsString(m1) ? m1->valuestring : "?");
    cJSON_Delete(root);
}

/* Writes `root` to `name` in the temp dir and returns the path. */
static const char *write_json(const char *name, const cJSON *root) {
    char *text = cJSON_PrintUnformatted(root);
    const char *path = temp_path(name);
    write_file(path, text, strlen(text));
    free(text);
    return path;
}

static void test_save_load(void) {
    tw_tokenizer *tok = NULL;
    const char *texts[] = {small_corpus};
    size_t lengths[] = {sizeof small_corpus - 1};
    TW_CHECK_OK(tw_tokenizer_train_texts(texts, lengths, 1, 360, &tok));
    if (!tok) return;
    const char *path = temp_path("tokenizer.json");
    int before = temp_dir_entries();
    TW_CHECK_OK(tw_tokenizer_save(tok, path));
    TW_CHECK(temp_dir_entries() == before + 1, "save left %d new files, expected 1",
             temp_dir_entries() - before);
    test_json_layout(tok, path);

    tw_tokenizer *loaded = NULL;
    TW_CHECK_OK(tw_tokenizer_load(path, &loaded));
    if (loaded) {
        TW_CHECK(tw_tokenizer_hash(loaded) == tw_tokenizer_hash(tok), "hash changed: %016llx -> "
                 "%016llx", (unsigned long long)tw_tokenizer_hash(tok),
                 (unsigned long long)tw_tokenizer_hash(loaded));
        TW_CHECK(tw_tokenizer_vocab_size(loaded) == tw_tokenizer_vocab_size(tok) &&
                     tw_tokenizer_eot_id(loaded) == tw_tokenizer_eot_id(tok) &&
                     tw_tokenizer_merge_count(loaded) == tw_tokenizer_merge_count(tok),
                 "sizes changed");
        static const char sample[] = "the cat said hello to the dog, twice: \"hello!\"\r\n\t42 \xff";
        int32_t *a = NULL, *b = NULL;
        size_t na = 0, nb = 0;
        TW_CHECK_OK(tw_tokenizer_encode(tok, sample, sizeof sample - 1, &a, &na));
        TW_CHECK_OK(tw_tokenizer_encode(loaded, sample, sizeof sample - 1, &b, &nb));
        TW_CHECK(a && b && na == nb && memcmp(a, b, na * sizeof *a) == 0,
                 "loaded tokenizer encodes differently");
        free(a);
        free(b);
        /* Saving the loaded one again gives the same bytes. */
        const char *again = temp_path("again.json");
        TW_CHECK_OK(tw_tokenizer_save(loaded, again));
        size_t n1 = 0, n2 = 0;
        char *f1 = read_file(path, &n1), *f2 = read_file(again, &n2);
        TW_CHECK(f1 && f2 && n1 == n2 && memcmp(f1, f2, n1) == 0, "re-saved file differs");
        free(f1);
        free(f2);
        tw_tokenizer_free(loaded);
    }
    /* Overwriting an existing file works (rename over it). */
    TW_CHECK_OK(tw_tokenizer_save(tok, path));
    TW_CHECK_ERROR(tw_tokenizer_save(tok, temp_path("no-such-dir/tokenizer.json")), TW_ERR_IO,
                 "no-such-dir/tokenizer.json");

    /* Bad files: each is refused with a message naming the file and the field. */
    size_t length = 0;
    char *good = read_file(path, &length);
    if (!good) {
        tw_tokenizer_free(tok);
        return;
    }
    const char *bad = temp_path("bad.json");
    write_file(bad, good, length / 2);
    TW_CHECK_ERROR(tw_tokenizer_load(bad, &loaded), TW_ERR_FORMAT, "not valid JSON");
    TW_CHECK_ERROR(tw_tokenizer_load(bad, &loaded), TW_ERR_FORMAT, "bad.json");
    TW_CHECK(loaded == NULL, "a bad file gave a tokenizer");
    write_file(bad, "", 0);
    TW_CHECK_ERROR(tw_tokenizer_load(bad, &loaded), TW_ERR_FORMAT, "not valid JSON");
    write_file(bad, "[1, 2]", 6);
    TW_CHECK_ERROR(tw_tokenizer_load(bad, &loaded), TW_ERR_FORMAT, "not a JSON object");
    char *trailing = malloc(length + 8);
    memcpy(trailing, good, length);
    memcpy(trailing + length, " garbage", 8);
    write_file(bad, trailing, length + 8);
    free(trailing);
    TW_CHECK_ERROR(tw_tokenizer_load(bad, &loaded), TW_ERR_FORMAT, "not valid JSON");
    TW_CHECK_ERROR(tw_tokenizer_load(temp_path("missing.json"), &loaded), TW_ERR_NOT_FOUND,
                 "missing.json");

    /* Structural damage, made by editing the parsed document. */
    struct {
        const char *what, *needle;
    } cases[] = {
        {"unknown merge token", "model.merges[0]: unknown token \"XYZ\""},
        {"merge result missing", "is not in model.vocab"},
        {"merge without space", "model.merges[1]"},
        {"missing vocab", "missing field model.vocab"},
        {"missing merges", "missing field model.merges"},
        {"missing model", "missing field model"},
        {"missing added_tokens", "missing field added_tokens"},
        {"duplicate id", "duplicate id"},
        {"id gap", "not dense"},
        {"id out of range", "not dense"},
        {"negative id", "model.vocab[\"!\"]"},
        {"not byte-level", "not a byte-level token string"},
        {"no eot", "<|endoftext|>"},
        {"wrong model type", "model.type"},
        {"prefix space", "pre_tokenizer.add_prefix_space"},
        {"normalizer", "normalizer"},
        {"no byte token", "single-byte token for byte 0x7e"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        cJSON *root = cJSON_Parse(good);
        cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
        cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
        cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
        int v = cJSON_GetArraySize(vocab);
        switch (c) {
        case 0: cJSON_ReplaceItemInArray(merges, 0, cJSON_CreateString("\xc4\xa0 XYZ")); break;
        case 1: cJSON_ReplaceItemInArray(merges, 0, cJSON_CreateString("q z")); break;
        case 2: cJSON_ReplaceItemInArray(merges, 1, cJSON_CreateString("qz")); break;
        case 3: cJSON_DeleteItemFromObject(model, "vocab"); break;
        case 4: cJSON_DeleteItemFromObject(model, "merges"); break;
        case 5: cJSON_DeleteItemFromObject(root, "model"); break;
        case 6: cJSON_DeleteItemFromObject(root, "added_tokens"); break;
        case 7: cJSON_SetNumberValue(cJSON_GetObjectItemCaseSensitive(vocab, "a"), 'b'); break;
        case 8: /* "a" moves to the last id + 1: 'a' is unused */
            cJSON_SetNumberValue(cJSON_GetObjectItemCaseSensitive(vocab, "a"), v);
            break;
        case 9: cJSON_SetNumberValue(cJSON_GetObjectItemCaseSensitive(vocab, "a"), 1e9); break;
        case 10: cJSON_SetNumberValue(cJSON_GetObjectItemCaseSensitive(vocab, "!"), -1); break;
        case 11: /* U+4E2D is no byte's code point */
            cJSON_AddNumberToObject(vocab, "\xe4\xb8\xad", v);
            break;
        case 12: cJSON_DeleteItemFromArray(cJSON_GetObjectItemCaseSensitive(root, "added_tokens"),
                                           0);
            break;
        case 13:
            cJSON_ReplaceItemInObject(model, "type", cJSON_CreateString("WordPiece"));
            break;
        case 14:
            cJSON_ReplaceItemInObject(cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"),
                                      "add_prefix_space", cJSON_CreateTrue());
            break;
        case 15:
            cJSON_ReplaceItemInObject(root, "normalizer", cJSON_CreateObject());
            break;
        case 16: /* "~" (id 126, in no merge) renamed to a longer token: the ids stay dense */
            cJSON_DeleteItemFromObject(vocab, "~");
            cJSON_AddNumberToObject(vocab, "~~~~", '~');
            break;
        }
        const char *file = write_json("damaged.json", root);
        cJSON_Delete(root);
        tw_clear_error();
        tw_status status = tw_tokenizer_load(file, &loaded);
        TW_CHECK(status == TW_ERR_FORMAT, "%s: load returned '%s' (%s)", cases[c].what,
                 tw_status_name(status), tw_last_error());
        TW_CHECK(strstr(tw_last_error(), cases[c].needle) && strstr(tw_last_error(), "damaged.json"),
                 "%s: message '%s' does not mention '%s' and the file", cases[c].what,
                 tw_last_error(), cases[c].needle);
        TW_CHECK(loaded == NULL, "%s: a bad file gave a tokenizer", cases[c].what);
        tw_tokenizer_free(loaded);
        loaded = NULL;
    }

    /* Accepted variations: merges as ["a", "b"] pairs (newer `tokenizers`) load identically. */
    cJSON *root = cJSON_Parse(good);
    cJSON *merges = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "model"),
                                                     "merges");
    for (int i = 0; i < cJSON_GetArraySize(merges); i++) {
        char *s = strdup(cJSON_GetArrayItem(merges, i)->valuestring);
        char *space = strchr(s, ' ');
        *space = '\0';
        const char *pair[2] = {s, space + 1};
        cJSON_ReplaceItemInArray(merges, i, cJSON_CreateStringArray(pair, 2));
        free(s);
    }
    const char *pairs_file = write_json("pairs.json", root);
    cJSON_Delete(root);
    TW_CHECK_OK(tw_tokenizer_load(pairs_file, &loaded));
    TW_CHECK(loaded && tw_tokenizer_hash(loaded) == tw_tokenizer_hash(tok),
             "merges as pairs load differently");
    tw_tokenizer_free(loaded);
    free(good);
    tw_tokenizer_free(tok);
}

/* ---- real corpus ----------------------------------------------------------------------------- */

static void check_tinystories(const char *corpus, size_t cut, size_t held, int vocab,
                              double min_ratio) {
    const char *texts[] = {corpus};
    size_t lengths[] = {cut};
    tw_tokenizer *tok = NULL;
    double t0 = now_seconds();
    TW_CHECK_OK(tw_tokenizer_train_texts(texts, lengths, 1, vocab, &tok));
    double t1 = now_seconds();
    if (!tok) return;
    TW_CHECK(tw_tokenizer_vocab_size(tok) == vocab, "vocab %d, asked for %d",
             tw_tokenizer_vocab_size(tok), vocab);
    int32_t *ids = NULL;
    size_t count = 0;
    TW_CHECK_OK(tw_tokenizer_encode(tok, corpus, cut, &ids, &count));
    double t2 = now_seconds();
    double ratio = count ? (double)cut / (double)count : 0;
    TW_CHECK(ratio > min_ratio, "vocab %d: compression %.2f bytes/token on the training slice, "
             "expected > %.1f", vocab, ratio, min_ratio);
    char *back = NULL;
    size_t back_length = 0;
    TW_CHECK_OK(tw_tokenizer_decode(tok, ids, count, &back, &back_length));
    TW_CHECK(back && back_length == cut && memcmp(back, corpus, cut) == 0,
             "the TinyStories slice does not round-trip");
    free(back);
    free(ids);
    TW_CHECK_OK(tw_tokenizer_encode(tok, corpus + cut, held, &ids, &count));
    double held_ratio = count ? (double)held / (double)count : 0;
    TW_CHECK(held_ratio > min_ratio, "vocab %d: compression %.2f bytes/token on held-out text, "
             "expected > %.1f", vocab, held_ratio, min_ratio);
    TW_CHECK_OK(tw_tokenizer_decode(tok, ids, count, &back, &back_length));
    TW_CHECK(back && back_length == held && memcmp(back, corpus + cut, held) == 0,
             "held-out TinyStories text does not round-trip");
    free(back);
    free(ids);
    /* Every learned token lies inside one piece. */
    for (int32_t id = 256; id < tw_tokenizer_vocab_size(tok); id++) {
        if (id == tw_tokenizer_eot_id(tok)) continue;
        size_t n;
        const unsigned char *b = tw_tokenizer_token_bytes(tok, id, &n);
        bool letters = false, others = false;
        for (size_t i = 0; i < n; i++) {
            letters |= (b[i] | 0x20) >= 'a' && (b[i] | 0x20) <= 'z';
            others |= b[i] == '.' || b[i] == ',' || b[i] == '!' || b[i] == '"';
        }
        TW_CHECK(!(letters && others), "token %d \"%.*s\" crosses a piece boundary", id, (int)n, b);
    }
    printf("tinystories: trained vocab %d on %zu bytes in %.2f s; encoded at %.1f MB/s; "
           "%.2f bytes/token (training slice), %.2f (held out)\n",
           vocab, cut, t1 - t0, (double)cut / 1e6 / (t2 - t1), ratio, held_ratio);
    tw_tokenizer_free(tok);
}

static void test_tinystories(const char *data_dir) {
    char path[1024];
    snprintf(path, sizeof path, "%s/tinystories-l0.txt", data_dir);
    size_t length = 0;
    char *corpus = read_file(path, &length);
    if (!corpus) {
        printf("SKIP part: %s not found (the shared corpora are absent)\n", path);
        return;
    }
    /* Train on the first ~1 MB (cut at a blank line), check on the next 256 KB. */
    size_t cut = length < (1u << 20) ? length : (1u << 20);
    const char *blank = strstr(corpus + cut, "\n\n");
    if (blank && (size_t)(blank - corpus) < length) cut = (size_t)(blank - corpus) + 2;
    size_t held = length - cut < (256u << 10) ? length - cut : (256u << 10);
    /* Bytes per token on this corpus: 2.40 at vocabulary 512 (only 255 merges) and 3.1 at 1024,
     * the same as a plain Python BPE with the same split and tie rule; the bars sit below. */
    static const struct {
        int vocab;
        double min_ratio;
    } sizes[] = {{512, 2.3}, {1024, 2.5}};
    for (int k = 0; k < 2; k++)
        check_tinystories(corpus, cut, held, sizes[k].vocab, sizes[k].min_ratio);
    free(corpus);
}

int main(int argc, char **argv) {
    tw_test_temp_dir("tokenizer", temp_dir, sizeof temp_dir);
    test_split();
    test_round_trip();
    test_concurrent_encode();
    test_training();
    test_save_load();
    if (argc > 1)
        test_tinystories(argv[1]);
    else
        printf("SKIP part: no shared data directory given\n");
    tw_test_remove_temp_dir(temp_dir);
    return tw_test_finish("tokenizer");
}
