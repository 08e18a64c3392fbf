/* twist's tokenizer against ids recorded from Hugging Face `tokenizers` (tests/data/hf_ids.txt,
 * written by tests/hf_record.js; CI needs neither node nor npm). For two tokenizer.json files (one
 * trained by `twist data tokenizer` on tests/data/multilingual.txt, one cut from GPT-2's
 * vocabulary) and about 200 texts (multilingual text, emoji with ZWJ sequences, digits of several
 * scripts, combining marks, CRLF, tabs, runs of spaces, invalid UTF-8, random byte strings):
 *   - valid UTF-8: twist's ids equal HF's, its pre-token pieces equal HF's, and decode(encode(x))
 *     gives x back;
 *   - invalid UTF-8 (HF sees such bytes only as U+FFFD, the "lossy" text in the file): twist's
 *     pieces of the raw bytes are HF's pieces of the lossy text, each invalid sequence standing for
 *     its U+FFFD; twist's ids for the lossy text equal HF's; and the raw bytes round-trip.
 * Usage: test_tokenizer_hf DATA_DIR (tests/data). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "twist/tokenizer.h"

enum { MAX_TOKENIZERS = 4 };

typedef struct {
    unsigned char *data;
    size_t length, capacity;
} bytes;

typedef struct {
    size_t *data;
    size_t length, capacity;
} numbers;

static void bytes_push(bytes *b, const void *data, size_t n) {
    if (b->length + n > b->capacity) {
        b->capacity = (b->length + n) * 2 + 16;
        b->data = realloc(b->data, b->capacity);
        if (!b->data) tw_test_skip("out of memory");
    }
    memcpy(b->data + b->length, data, n);
    b->length += n;
}

static void numbers_push(numbers *v, size_t x) {
    if (v->length == v->capacity) {
        v->capacity = v->capacity * 2 + 16;
        v->data = realloc(v->data, v->capacity * sizeof *v->data);
        if (!v->data) tw_test_skip("out of memory");
    }
    v->data[v->length++] = x;
}

static bool parse_hex(const char *s, bytes *out) {
    out->length = 0;
    for (; s[0] && s[0] != '\n'; s += 2) {
        unsigned value;
        if (!s[1] || sscanf(s, "%2x", &value) != 1) return false;
        unsigned char c = (unsigned char)value;
        bytes_push(out, &c, 1);
    }
    return true;
}

static void parse_numbers(const char *s, numbers *out) {
    out->length = 0;
    for (char *end; *s && *s != '\n'; s = end) {
        unsigned long long v = strtoull(s, &end, 10);
        if (end == s) break;
        numbers_push(out, (size_t)v);
    }
}

/* The length of the UTF-8 character or maximal ill-formed subsequence at s[0..n) and whether it
 * is valid: the test's own decoder (Unicode 3.9 "best practice", as WHATWG), checked against the
 * lossy text the recorder got from Node's TextDecoder. */
static size_t sequence(const unsigned char *s, size_t n, bool *valid) {
    static const struct {
        unsigned char lead_lo, lead_hi, second_lo, second_hi, length;
    } forms[] = {{0x00, 0x7f, 0, 0, 1},       {0xc2, 0xdf, 0x80, 0xbf, 2},
                 {0xe0, 0xe0, 0xa0, 0xbf, 3}, {0xe1, 0xec, 0x80, 0xbf, 3},
                 {0xed, 0xed, 0x80, 0x9f, 3}, {0xee, 0xef, 0x80, 0xbf, 3},
                 {0xf0, 0xf0, 0x90, 0xbf, 4}, {0xf1, 0xf3, 0x80, 0xbf, 4},
                 {0xf4, 0xf4, 0x80, 0x8f, 4}};
    *valid = false;
    for (size_t f = 0; f < sizeof forms / sizeof forms[0]; f++) {
        if (s[0] < forms[f].lead_lo || s[0] > forms[f].lead_hi) continue;
        size_t k = 1;
        for (; k < forms[f].length && k < n; k++) {
            unsigned char lo = k == 1 ? forms[f].second_lo : 0x80;
            unsigned char hi = k == 1 ? forms[f].second_hi : 0xbf;
            if (s[k] < lo || s[k] > hi) return k;
        }
        *valid = k == forms[f].length;
        return k;
    }
    return 1;
}

/* Appends the lossy form of s[0..n) (invalid sequences as U+FFFD) to out. */
static void lossy(const unsigned char *s, size_t n, bytes *out) {
    for (size_t p = 0; p < n;) {
        bool valid;
        size_t k = sequence(s + p, n - p, &valid);
        bytes_push(out, valid ? s + p : (const unsigned char *)"\xef\xbf\xbd", valid ? k : 3);
        p += k;
    }
}

typedef struct {
    char name[128];
    bytes raw, lossy;
    bool has_lossy;
    numbers pieces;
    numbers ids[MAX_TOKENIZERS];
    bool has_ids[MAX_TOKENIZERS];
} test_case;

typedef struct {
    int tokenizers;
    char files[MAX_TOKENIZERS][64];
    tw_tokenizer *tok[MAX_TOKENIZERS];
    int cases, valid_cases, invalid_cases;
    size_t hf_tokens[MAX_TOKENIZERS], twist_tokens[MAX_TOKENIZERS];
} totals;

static void check_case(const test_case *c, totals *t) {
    const char *name = c->name;
    const bytes *hf_text = c->has_lossy ? &c->lossy : &c->raw;
    bool valid = !c->has_lossy;

    /* Pieces: twist's split of the raw bytes, each piece in its lossy form, is HF's split. */
    bytes joined = {0};
    size_t k = 0, offset = 0;
    for (size_t at = 0; at < c->raw.length;) {
        size_t n = tw_tokenizer_piece_length((const char *)c->raw.data + at, c->raw.length - at);
        if (n == 0 || at + n > c->raw.length) {
            TW_CHECK(false, "%s: piece of %zu bytes at %zu", name, n, at);
            break;
        }
        size_t before = joined.length;
        lossy(c->raw.data + at, n, &joined);
        size_t piece = joined.length - before;
        if (k >= c->pieces.length || c->pieces.data[k] != piece) {
            TW_CHECK(false, "%s: piece %zu (at byte %zu of the raw text, %zu of HF's) has %zu "
                     "bytes, HF's has %zu",
                     name, k, at, offset, piece, k < c->pieces.length ? c->pieces.data[k] : 0);
            break;
        }
        offset += piece;
        at += n;
        k++;
    }
    if (k == c->pieces.length)
        TW_CHECK(joined.length == hf_text->length &&
                     memcmp(joined.data, hf_text->data, joined.length) == 0,
                 "%s: the test's U+FFFD substitution differs from the recorder's", name);
    free(joined.data);

    for (int i = 0; i < t->tokenizers; i++) {
        if (!c->has_ids[i]) {
            TW_CHECK(false, "%s: no ids recorded for %s", name, t->files[i]);
            continue;
        }
        const numbers *hf = &c->ids[i];
        int32_t *ids = NULL;
        size_t count = 0;
        TW_CHECK_OK(tw_tokenizer_encode(t->tok[i], (const char *)hf_text->data, hf_text->length,
                                        &ids, &count));
        size_t first = 0;
        while (first < count && first < hf->length && (size_t)ids[first] == hf->data[first])
            first++;
        TW_CHECK(count == hf->length && first == count,
                 "%s, %s: twist gives %zu ids, HF %zu; first difference at %zu (twist %d, HF %zu)",
                 name, t->files[i], count, hf->length, first, first < count ? ids[first] : -1,
                 first < hf->length ? hf->data[first] : 0);
        t->hf_tokens[i] += hf->length;
        t->twist_tokens[i] += count;
        free(ids);
        /* Lossless: the raw bytes (valid or not) come back from their own ids. */
        TW_CHECK_OK(tw_tokenizer_encode(t->tok[i], (const char *)c->raw.data, c->raw.length, &ids,
                                        &count));
        /* Encoding splits as tw_tokenizer_piece_length does (checked against HF above): its ids
         * are those of the pieces encoded one by one. */
        size_t same = 0;
        bool split_agrees = true;
        for (size_t at = 0; at < c->raw.length && split_agrees;) {
            const char *piece = (const char *)c->raw.data + at;
            size_t n = tw_tokenizer_piece_length(piece, c->raw.length - at);
            int32_t *piece_ids = NULL;
            size_t piece_count = 0;
            TW_CHECK_OK(tw_tokenizer_encode(t->tok[i], piece, n, &piece_ids, &piece_count));
            split_agrees = same + piece_count <= count &&
                           (!piece_count ||
                            !memcmp(ids + same, piece_ids, piece_count * sizeof *ids));
            same += piece_count;
            at += n;
            free(piece_ids);
        }
        TW_CHECK(split_agrees && same == count,
                 "%s, %s: encode's ids differ from those of its pieces encoded alone", name,
                 t->files[i]);
        char *back = NULL;
        size_t back_length = 0;
        TW_CHECK_OK(tw_tokenizer_decode(t->tok[i], ids, count, &back, &back_length));
        TW_CHECK(back && back_length == c->raw.length &&
                     memcmp(back, c->raw.data, back_length) == 0,
                 "%s, %s: decode(encode(x)) != x", name, t->files[i]);
        free(back);
        free(ids);
    }
    t->cases++;
    if (valid) t->valid_cases++;
    else t->invalid_cases++;
}

static void free_case(test_case *c) {
    free(c->raw.data);
    free(c->lossy.data);
    free(c->pieces.data);
    for (int i = 0; i < MAX_TOKENIZERS; i++) free(c->ids[i].data);
    memset(c, 0, sizeof *c);
}

int main(int argc, char **argv) {
    if (argc < 2) tw_test_skip("usage: test_tokenizer_hf DATA_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/hf_ids.txt", argv[1]);
    FILE *f = fopen(path, "r");
    if (!f) tw_test_skip("%s not found", path);
    totals t = {0};
    test_case c = {0};
    char *line = NULL;
    size_t capacity = 0;
    int line_number = 0;
    while (getline(&line, &capacity, f) > 0) {
        line_number++;
        if (line[0] == '#' || line[0] == '\n') continue;
        char *value = strchr(line, ' ');
        value = value ? value + 1 : line + strlen(line);
        if (strncmp(line, "tokenizer ", 10) == 0) {
            if (t.tokenizers == MAX_TOKENIZERS) break;
            int i = t.tokenizers++;
            snprintf(t.files[i], sizeof t.files[i], "%.*s", (int)strcspn(value, "\n"), value);
            char file[1200];
            snprintf(file, sizeof file, "%s/%s", argv[1], t.files[i]);
            TW_CHECK_OK(tw_tokenizer_load(file, &t.tok[i]));
            if (!t.tok[i]) break;
        } else if (strncmp(line, "case ", 5) == 0) {
            free_case(&c);
            snprintf(c.name, sizeof c.name, "%.*s", (int)strcspn(value, "\n"), value);
        } else if (strncmp(line, "bytes ", 6) == 0) {
            TW_CHECK(parse_hex(value, &c.raw), "%s:%d: bad hex", path, line_number);
        } else if (strncmp(line, "lossy ", 6) == 0) {
            TW_CHECK(parse_hex(value, &c.lossy), "%s:%d: bad hex", path, line_number);
            c.has_lossy = true;
        } else if (strncmp(line, "pieces ", 7) == 0) {
            parse_numbers(value, &c.pieces);
        } else if (strncmp(line, "ids ", 4) == 0) {
            size_t name_length = strcspn(value, " \n");
            for (int i = 0; i < t.tokenizers; i++)
                if (strlen(t.files[i]) == name_length && !memcmp(value, t.files[i], name_length)) {
                    parse_numbers(value + name_length, &c.ids[i]);
                    c.has_ids[i] = true;
                }
        } else if (strncmp(line, "end", 3) == 0) {
            check_case(&c, &t);
            free_case(&c);
        } else {
            TW_CHECK(false, "%s:%d: unknown line", path, line_number);
        }
    }
    free(line);
    fclose(f);
    free_case(&c);
    TW_CHECK(t.tokenizers == 2 && t.cases >= 100 && t.invalid_cases >= 20,
             "%s: %d tokenizers, %d cases (%d with invalid UTF-8): the file is incomplete", path,
             t.tokenizers, t.cases, t.invalid_cases);
    for (int i = 0; i < t.tokenizers; i++) {
        printf("%s: %zu tokens from twist, %zu recorded from Hugging Face, over %d cases (%d "
               "valid UTF-8, %d not)\n",
               t.files[i], t.twist_tokens[i], t.hf_tokens[i], t.cases, t.valid_cases,
               t.invalid_cases);
        tw_tokenizer_free(t.tok[i]);
    }
    return tw_test_finish("tokenizer_hf");
}
