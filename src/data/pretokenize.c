/* GPT-2 pre-tokenisation with Unicode classes: the regular expression of GPT-2 and of Hugging Face
 * `tokenizers`' ByteLevel pre-tokenizer, matched by PCRE2 over UTF-8, plus the handling of bytes
 * that are not UTF-8 (which HF never sees; see twist/tokenizer.h for the rule).
 *
 * Pieces are found one at a time by an anchored match at the start of the rest of the text. That
 * equals HF's leftmost-first search (`find_iter` over the whole text) because one of the
 * alternatives matches every character, so the next match always starts where the last one ended.
 *
 * PCRE2 must only see valid UTF-8 (with PCRE2_NO_UTF_CHECK, so the text is validated once, not once
 * per piece), so a match runs on a prefix of the rest that is known to be valid: up to the next
 * invalid sequence, or up to how far validation has looked. A piece found that way is final when
 * the prefix could not have changed it (it ends before the prefix does; see piece_is_final);
 * otherwise the prefix grows, or, next to an invalid sequence, the match runs on a small copy of the
 * text in which every invalid sequence is U+FFFD, and the piece is mapped back to the original
 * bytes. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend_impl.h"
#include "data/tokenizer_impl.h"

/* Unicode White_Space (the 25 code points of PropList.txt), written out rather than `\s`: PCRE2's
 * `\s` also holds U+180E (a space before Unicode 6.3), which HF's Oniguruma does not. */
#define WS "\\t-\\r \\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}"

/* GPT-2's 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static const char pattern[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" WS
                              "\\p{L}\\p{N}]+|[" WS "]+(?![^" WS "])|[" WS "]+";

static pcre2_code *compiled;
static char compile_message[160];
static pthread_once_t compile_once = PTHREAD_ONCE_INIT;

/* Compiles the pattern once per process (kept until exit; matching shares it between threads). */
static void compile_pattern(void) {
    int code;
    PCRE2_SIZE offset;
    compiled = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP,
                             &code, &offset, NULL);
    if (!compiled) {
        char text[120];
        pcre2_get_error_message(code, (PCRE2_UCHAR *)text, sizeof text);
        snprintf(compile_message, sizeof compile_message, "at offset %zu: %s", (size_t)offset,
                 text);
        return;
    }
    /* JIT makes matching several times faster; where it is unavailable (no executable memory) the
     * interpreter gives the same matches, so a JIT failure is not an error. */
    pcre2_jit_compile(compiled, PCRE2_JIT_COMPLETE);
}

/* Length of the UTF-8 sequence at s[0..n) (n >= 1): a whole character (*valid true), or else the
 * maximal subpart of an ill-formed sequence, at least one byte (*valid false). The maximal
 * subparts are what the Unicode standard's "best practice" (3.9, U+FFFD substitution), WHATWG's
 * decoder (Node's Buffer.toString), Python's errors="replace" and Rust's from_utf8_lossy each turn
 * into one U+FFFD. */
static size_t utf8_sequence(const unsigned char *s, size_t n, bool *valid) {
    unsigned char c = s[0];
    *valid = false;
    if (c < 0x80) {
        *valid = true;
        return 1;
    }
    size_t need;
    unsigned char low = 0x80, high = 0xbf; /* range of the second byte */
    if (c >= 0xc2 && c <= 0xdf) need = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        need = 3;
        if (c == 0xe0) low = 0xa0;  /* no overlong forms */
        if (c == 0xed) high = 0x9f; /* no surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        need = 4;
        if (c == 0xf0) low = 0x90;  /* no overlong forms */
        if (c == 0xf4) high = 0x8f; /* nothing above U+10FFFF */
    } else
        return 1; /* 0x80..0xc1, 0xf5..0xff never start a character */
    size_t k = 1;
    for (; k < need && k < n; k++) {
        unsigned char lo = k == 1 ? low : 0x80, hi = k == 1 ? high : 0xbf;
        if (s[k] < lo || s[k] > hi) return k;
    }
    if (k < need) return k; /* cut off by the end */
    *valid = true;
    return need;
}

/* How far past a piece's end a match may look: the character after the piece (lookahead, or what
 * stopped a run), or for `\s+(?!\S)` the character after that, each at most 4 bytes. */
enum { LOOKAHEAD_BYTES = 8 };

/* Window of the slow path, in bytes of original text; doubled until the piece fits. */
enum { WINDOW_START = 64 };

tw_status tw_pretok_init(tw_pretok *it, const char *text, size_t length, size_t scan_chunk) {
    memset(it, 0, sizeof *it);
    it->text = (const unsigned char *)text;
    it->length = length;
    it->scan_chunk = scan_chunk;
    pthread_once(&compile_once, compile_pattern);
    if (!compiled)
        return tw_error(TW_ERR_BACKEND, "tokenizer: PCRE2 refused the GPT-2 pattern (%s)",
                        compile_message);
    it->match_data = pcre2_match_data_create_from_pattern(compiled, NULL);
    if (!it->match_data)
        return tw_error(TW_ERR_OUT_OF_MEMORY, "tokenizer: out of memory for PCRE2 match data");
    return TW_OK;
}

void tw_pretok_free(tw_pretok *it) {
    pcre2_match_data_free(it->match_data);
    free(it->window);
    memset(it, 0, sizeof *it);
}

/* Extends the validated range text[at .. valid_end) by up to scan_chunk bytes (all of the text
 * when scan_chunk is 0), stopping at the first invalid sequence (then *invalid_next). */
static void scan(tw_pretok *it) {
    size_t p = it->valid_end, n = it->length;
    size_t limit = it->scan_chunk && it->scan_chunk < n - p ? p + it->scan_chunk : n;
    it->invalid_next = false;
    while (p < limit) {
        if (it->text[p] < 0x80) {
            p++;
            continue;
        }
        bool valid;
        size_t k = utf8_sequence(it->text + p, n - p, &valid);
        if (!valid) {
            it->invalid_next = true;
            break;
        }
        p += k; /* may pass `limit` by up to 3 bytes: the range ends on a character boundary */
    }
    it->valid_end = p;
    if (it->scan_chunk && it->scan_chunk < (SIZE_MAX >> 2)) it->scan_chunk *= 2;
}

/* Anchored match of the pattern at subject[0..n) (valid UTF-8, n >= 1): the first piece's end. */
static tw_status match(tw_pretok *it, const unsigned char *subject, size_t n, size_t *end) {
    int rc = pcre2_match(compiled, subject, n, 0, PCRE2_ANCHORED | PCRE2_NO_UTF_CHECK,
                         it->match_data, NULL);
    if (rc < 0) {
        char text[120];
        pcre2_get_error_message(rc, (PCRE2_UCHAR *)text, sizeof text);
        return tw_error(rc == PCRE2_ERROR_NOMEMORY ? TW_ERR_OUT_OF_MEMORY : TW_ERR_BACKEND,
                        "tokenizer: PCRE2 match failed on %zu bytes of text: %s", n, text);
    }
    *end = pcre2_get_ovector_pointer(it->match_data)[1];
    if (*end == 0 || *end > n) /* every alternative takes a character */
        return tw_error(TW_ERR_BACKEND, "tokenizer: PCRE2 returned an empty piece");
    return TW_OK;
}

/* Slow path, for a piece at or next to an invalid sequence: the text from `at` on, copied with
 * every invalid sequence as U+FFFD (EF BF BD), in windows that double until the piece ends
 * LOOKAHEAD_BYTES before the window does (or the window reaches the end of the text). A sequence
 * cut by the window's end reads as invalid in the copy; it lies within LOOKAHEAD_BYTES of the
 * end, where no piece end is trusted. */
static tw_status piece_near_invalid(tw_pretok *it, size_t *piece) {
    const unsigned char *s = it->text + it->at;
    size_t rest = it->length - it->at;
    for (size_t window = WINDOW_START;; window = window < rest ? 2 * window : rest) {
        size_t raw = window < rest ? window : rest;
        /* At most 3 bytes of copy per original byte (a lone invalid byte becomes U+FFFD). */
        if (raw > SIZE_MAX / 3) return tw_error(TW_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
        if (3 * raw > it->window_capacity) {
            unsigned char *grown = realloc(it->window, 3 * raw);
            if (!grown) return tw_error(TW_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
            it->window = grown;
            it->window_capacity = 3 * raw;
        }
        size_t copied = 0;
        for (size_t p = 0; p < raw;) {
            bool valid;
            size_t k = utf8_sequence(s + p, raw - p, &valid);
            memcpy(it->window + copied, valid ? s + p : (const unsigned char *)"\xef\xbf\xbd",
                   valid ? k : 3);
            copied += valid ? k : 3;
            p += k;
        }
        size_t end;
        TW_TRY(match(it, it->window, copied, &end));
        /* Back to original offsets: the same walk, up to the piece's end in the copy (always at
         * the start of a character or of a U+FFFD). */
        size_t raw_end = 0;
        for (size_t copy = 0; copy < end;) {
            bool valid;
            size_t k = utf8_sequence(s + raw_end, raw - raw_end, &valid);
            copy += valid ? k : 3;
            raw_end += k;
        }
        if (raw == rest || raw_end + LOOKAHEAD_BYTES <= raw) {
            *piece = raw_end;
            return TW_OK;
        }
    }
}

/* The split of ASCII text without PCRE2, for speed (a PCRE2 call costs about as much as encoding
 * the piece it finds; most text is mostly ASCII). In ASCII the pattern's classes are plain:
 * letters a-z A-Z, digits 0-9, white space \t..\r and ' ', the rest "other". Gives up (returns
 * 0) as soon as it would have to look at a byte >= 0x80, whose character could extend or end the
 * piece differently; PCRE2 then decides. Each branch mirrors one alternative of the pattern. */
enum { ASCII_SPACE, ASCII_LETTER, ASCII_DIGIT, ASCII_OTHER, NOT_ASCII };

static inline int ascii_class(unsigned char c) {
    if (c >= 0x80) return NOT_ASCII;
    if ((unsigned)((c | 0x20) - 'a') < 26u) return ASCII_LETTER;
    if ((unsigned)(c - '0') < 10u) return ASCII_DIGIT;
    if (c == ' ' || (c >= '\t' && c <= '\r')) return ASCII_SPACE;
    return ASCII_OTHER;
}

static size_t ascii_piece(const unsigned char *s, size_t n) {
    int first = ascii_class(s[0]);
    if (first == NOT_ASCII) return 0;
    /* 's|'t|'re|'ve|'m|'ll|'d */
    if (s[0] == '\'' && n >= 2) {
        unsigned char d = s[1];
        if (d == 's' || d == 't' || d == 'm' || d == 'd') return 2;
        if (n >= 3 && ((d == 'r' && s[2] == 'e') || (d == 'v' && s[2] == 'e') ||
                       (d == 'l' && s[2] == 'l')))
            return 3;
    }
    /* ` ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+`: an optional space, then a run of one class. */
    size_t i = 0;
    if (s[0] == ' ' && n >= 2) {
        int next = ascii_class(s[1]);
        if (next == NOT_ASCII) return 0;
        if (next != ASCII_SPACE) i = 1;
    }
    int cls = ascii_class(s[i]);
    if (cls != ASCII_SPACE) {
        size_t j = i + 1;
        while (j < n && ascii_class(s[j]) == cls) j++;
        return j < n && s[j] >= 0x80 ? 0 : j;
    }
    /* `\s+(?!\S)|\s+`: the run to the end of the text, or all of it but its last character when
     * something follows (that one then starts the next piece), or a lone white space. */
    size_t j = 1;
    while (j < n && ascii_class(s[j]) == ASCII_SPACE) j++;
    if (j == n) return j;
    if (s[j] >= 0x80) return 0;
    return j >= 2 ? j - 1 : 1;
}

tw_status tw_pretok_next(tw_pretok *it, size_t *piece) {
    *piece = 0;
    if (it->at >= it->length) return TW_OK;
    size_t ascii = ascii_piece(it->text + it->at, it->length - it->at);
    if (ascii) {
        *piece = ascii;
        it->at += ascii;
        return TW_OK;
    }
    if (it->valid_end < it->at) { /* the last piece took the invalid sequence */
        it->valid_end = it->at;
        it->invalid_next = false;
    }
    for (;;) {
        if (it->valid_end == it->at && !it->invalid_next) scan(it);
        if (it->valid_end == it->at) break; /* an invalid sequence starts the piece */
        size_t end;
        TW_TRY(match(it, it->text + it->at, it->valid_end - it->at, &end));
        size_t stop = it->at + end;
        /* Final when the whole rest was seen; or when an invalid sequence (U+FFFD, class "other")
         * cut the subject and the piece ends before it: every alternative either stops at a
         * character of the subject or would also fail on U+FFFD; or, when the validation limit
         * cut it, the piece ends LOOKAHEAD_BYTES before the limit. */
        if (it->valid_end == it->length || (it->invalid_next && stop < it->valid_end) ||
            (!it->invalid_next && stop + LOOKAHEAD_BYTES <= it->valid_end)) {
            *piece = end;
            it->at = stop;
            return TW_OK;
        }
        if (it->invalid_next) break; /* the piece reaches the invalid sequence */
        scan(it);                    /* validate further and match again */
    }
    TW_TRY(piece_near_invalid(it, piece));
    it->at += *piece;
    return TW_OK;
}
