/* The graded synthetic corpus: determinism, level properties (sentence lengths, clauses, quotes,
 * case), well-formed ASCII text, a/an and agreement spot checks, lexicon sizes, atomic writing. */
#include <ctype.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "twist/clock.h"
#include "twist/data.h"

typedef struct text_stats {
    size_t words, sentences, stories, distinct;
    int min_len, max_len; /* words per sentence (level 0 only: no quotes to split around) */
} text_stats;

static bool is_word_char(char c) { return isalpha((unsigned char)c) || c == '\'' || c == '-'; }

/* Counts words, sentences (. ! ? outside quotes, or closing a quote) and distinct lowercase words. */
static text_stats stats_of(const char *t, size_t n, int level) {
    text_stats s = {0, 0, 0, 0, 1000, 0};
    size_t cap = 1 << 14, count = 0;
    char **seen = calloc(cap, sizeof *seen);
    int in_sentence = 0;
    for (size_t i = 0; i < n;) {
        if (is_word_char(t[i])) {
            char word[64];
            size_t k = 0;
            while (i < n && is_word_char(t[i])) {
                if (k < sizeof word - 1) word[k++] = (char)tolower((unsigned char)t[i]);
                i++;
            }
            word[k] = '\0';
            s.words++;
            in_sentence++;
            /* open-addressing set of word strings */
            uint64_t h = 1469598103934665603ull;
            for (size_t j = 0; j < k; j++) h = (h ^ (unsigned char)word[j]) * 1099511628211ull;
            size_t slot = h & (cap - 1);
            while (seen[slot] && strcmp(seen[slot], word)) slot = (slot + 1) & (cap - 1);
            if (!seen[slot] && count < cap / 2) {
                seen[slot] = strdup(word);
                count++;
            }
            continue;
        }
        if (t[i] == '.' || t[i] == '!' || t[i] == '?') {
            /* A sentence ends at . ! ? (plus a closing quote) before a line end, the end of the
             * text, or a space and a new sentence: at level 1 that starts with a capital or a
             * quote ("Look!" shouted Tom. continues after the quote); level 0 has no quotes. */
            size_t j = i + 1 + (i + 1 < n && t[i + 1] == '"');
            bool end = j >= n || t[j] == '\n' ||
                       (t[j] == ' ' && (level == 0 || (j + 1 < n && (isupper((unsigned char)t[j + 1]) ||
                                                                   t[j + 1] == '"'))));
            if (end && in_sentence) {
                s.sentences++;
                if (in_sentence < s.min_len) s.min_len = in_sentence;
                if (in_sentence > s.max_len) s.max_len = in_sentence;
                in_sentence = 0;
            }
        }
        if (t[i] == '\n' && i + 1 < n && t[i + 1] == '\n') s.stories++;
        i++;
    }
    s.stories++;
    s.distinct = count;
    for (size_t i = 0; i < cap; i++) free(seen[i]);
    free(seen);
    return s;
}

static bool starts_vowel(const char *w) {
    if (!strncmp(w, "uni", 3) || !strncmp(w, "use", 3) || !strncmp(w, "one", 3)) return false;
    return strchr("aeiou", tolower((unsigned char)w[0])) != NULL;
}

/* Every "a X" has a consonant-initial X and every "an X" a vowel-initial one. */
static int article_errors(const char *t) {
    int errors = 0;
    for (const char *p = t; (p = strstr(p, "a")) != NULL; p++) {
        if (p != t && is_word_char(p[-1])) continue;
        const char *next;
        bool an = p[1] == 'n' && p[2] == ' ';
        if (p[1] == ' ') next = p + 2;
        else if (an) next = p + 3;
        else continue;
        if (!isalpha((unsigned char)*next)) continue;
        if (starts_vowel(next) != an) {
            if (errors < 3) fprintf(stderr, "article: \"%.30s\"\n", p);
            errors++;
        }
    }
    return errors;
}

static int count_of(const char *t, const char *needle) {
    int n = 0;
    for (const char *p = t; (p = strstr(p, needle)) != NULL; p += strlen(needle)) n++;
    return n;
}

static void check_well_formed(const char *t, size_t n, int level) {
    int bad_bytes = 0, doubled = 0, bad_breaks = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)t[i];
        if (c == 0 || c > 126 || (c < 32 && c != '\n')) bad_bytes++;
        if (c == ' ' && i + 1 < n && (t[i + 1] == ' ' || t[i + 1] == '\n')) doubled++;
        if (c == '\n' && i > 0 && t[i - 1] == ' ') doubled++;
        if (c == '\n' && i + 2 < n && t[i + 1] == '\n' && t[i + 2] == '\n') bad_breaks++;
        if (level == 0 && isupper(c)) bad_bytes++;
    }
    TW_CHECK(bad_bytes == 0, "level %d: %d bytes outside printable ASCII (or uppercase at 0)",
             level, bad_bytes);
    TW_CHECK(doubled == 0, "level %d: %d doubled or trailing spaces", level, doubled);
    TW_CHECK(bad_breaks == 0, "level %d: %d runs of more than one blank line", level, bad_breaks);
    TW_CHECK(n > 0 && t[n - 1] == '\n' && (n < 2 || t[n - 2] != '\n'),
             "level %d: text must end with exactly one newline", level);
    TW_CHECK(strlen(t) == n, "level %d: length %zu but strlen %zu", level, n, strlen(t));
    TW_CHECK(article_errors(t) == 0, "level %d: a/an errors", level);
    static const char *const agreement[] = {" they is ", " they was ", " he are ", " she are ",
                                            " he were ", " she were ", " it were ", " we is ",
                                            " i is ",    " they has ", " he have ", " she have ",
                                            " is run",   " was runs",  "  "};
    for (size_t i = 0; i < sizeof agreement / sizeof agreement[0]; i++)
        TW_CHECK(count_of(t, agreement[i]) == 0, "level %d: found \"%s\"", level, agreement[i]);
}

int main(void) {
    char *a = NULL, *b = NULL, *c = NULL;
    size_t na, nb, nc;

    /* Determinism: same seed, same bytes; another seed, other bytes. */
    for (int level = 0; level < TW_SYNTH_LEVELS; level++) {
        TW_CHECK_OK(tw_synth_generate(level, 7, 5000, &a, &na));
        TW_CHECK_OK(tw_synth_generate(level, 7, 5000, &b, &nb));
        TW_CHECK_OK(tw_synth_generate(level, 8, 5000, &c, &nc));
        TW_CHECK(na == nb && memcmp(a, b, na) == 0, "level %d: same seed gave different text",
                 level);
        TW_CHECK(na != nc || memcmp(a, c, na) != 0, "level %d: seeds 7 and 8 gave the same text",
                 level);
        text_stats s = stats_of(a, na, level);
        TW_CHECK(s.words >= 5000 && s.words < 5200,
                 "level %d: asked for 5000 words, got %zu", level, s.words);
        free(a), free(b), free(c);
    }

    /* Level properties, on 200k words each. */
    text_stats st[2];
    char *text[2];
    size_t len[2];
    double seconds[2];
    for (int level = 0; level < TW_SYNTH_LEVELS; level++) {
        const double t0 = tw_now_seconds();
        TW_CHECK_OK(tw_synth_generate(level, 2024, 200000, &text[level], &len[level]));
        seconds[level] = tw_now_seconds() - t0;
        st[level] = stats_of(text[level], len[level], level);
        check_well_formed(text[level], len[level], level);
        printf("level %d: %zu words, %zu sentences (%.1f words each), %zu stories, %zu distinct "
               "words, lexicon %zu lemmas, %zu bytes, %.2f M words/s\n",
               level, st[level].words, st[level].sentences,
               (double)st[level].words / (double)st[level].sentences, st[level].stories,
               st[level].distinct, tw_synth_lexicon_size(level), len[level],
               (double)st[level].words / seconds[level] / 1e6);
    }
    double avg0 = (double)st[0].words / (double)st[0].sentences;
    double avg1 = (double)st[1].words / (double)st[1].sentences;
    TW_CHECK(avg0 >= 3.0 && avg0 <= 7.0, "level 0: average sentence %.2f words", avg0);
    TW_CHECK(avg1 >= 8.0 && avg1 <= 20.0, "level 1: average sentence %.2f words", avg1);
    TW_CHECK(avg0 < avg1, "level 0 sentences (%.2f) must be shorter than level 1's (%.2f)", avg0,
             avg1);
    TW_CHECK(st[0].min_len >= 3 && st[0].max_len <= 7, "level 0: sentence lengths %d..%d",
             st[0].min_len, st[0].max_len);
    TW_CHECK(st[0].distinct >= 300 && st[0].distinct <= 700,
             "level 0: %zu distinct word forms, expected a preschool vocabulary", st[0].distinct);
    TW_CHECK(st[1].distinct > st[0].distinct * 2 && st[1].distinct <= 2500,
             "level 1: %zu distinct word forms", st[1].distinct);
    size_t lex0 = tw_synth_lexicon_size(0), lex1 = tw_synth_lexicon_size(1);
    TW_CHECK(lex0 >= 300 && lex0 <= 500, "level 0 lexicon %zu lemmas, expected 300-500", lex0);
    TW_CHECK(lex1 >= 800 && lex1 <= 1500, "level 1 lexicon %zu lemmas, expected 800-1500", lex1);
    TW_CHECK(tw_synth_lexicon_size(2) == 0, "lexicon of a level that does not exist");
    TW_CHECK(st[0].stories > 1000 && st[1].stories > 500, "stories: %zu and %zu", st[0].stories,
             st[1].stories);

    /* Level 1 has subordinate and relative clauses, dialogue, commas, capitals; level 0 none of
     * the quotes. */
    static const char *const clause_words[] = {" because ", "When ", "After ", "Before ",
                                               "While ", " so that ", " who ", " which ",
                                               " that ", "\"", ", ", "If "};
    for (size_t i = 0; i < sizeof clause_words / sizeof clause_words[0]; i++)
        TW_CHECK(count_of(text[1], clause_words[i]) > 100, "level 1: \"%s\" appears %d times",
                 clause_words[i], count_of(text[1], clause_words[i]));
    TW_CHECK(count_of(text[0], "\"") == 0, "level 0 has quotes");
    TW_CHECK(count_of(text[1], "\"") % 2 == 0, "level 1: unbalanced quotes");
    /* Every level-1 sentence and story starts with a capital letter or an opening quote. */
    int lower_starts = 0;
    for (size_t i = 0; i + 2 < len[1]; i++) {
        const char *t = text[1];
        bool start = i == 0 || (t[i - 1] == '\n' && t[i] != '\n');
        if (!start && t[i] == ' ' && t[i - 1] == '.' && t[i - 2] != '"') {
            i++;
            start = true;
        }
        if (start && !(isupper((unsigned char)t[i]) || t[i] == '"')) {
            if (lower_starts < 3) fprintf(stderr, "lowercase start: \"%.40s\"\n", t + i);
            lower_starts++;
        }
    }
    TW_CHECK(lower_starts == 0, "level 1: %d sentences start in lowercase", lower_starts);
    /* Names are capitalised at level 1. */
    TW_CHECK(count_of(text[1], " lily ") == 0 && count_of(text[1], " tom ") == 0,
             "level 1: lowercase names");
    /* Not trivially repetitive: most level-0 sentences are distinct, and none makes up more than
     * 1.5% of them (set-phrases like "it was a fun day." are the most common). */
    {
        size_t total = 0, distinct = 0, most = 0, cap = 1 << 17;
        const char **keys = calloc(cap, sizeof *keys);
        size_t *lens = calloc(cap, sizeof *lens), *counts = calloc(cap, sizeof *counts);
        const char *t = text[0];
        for (const char *p = t; *p;) {
            while (*p == ' ' || *p == '\n') p++;
            const char *dot = strchr(p, '.');
            if (!dot) break;
            size_t n0 = (size_t)(dot - p + 1);
            uint64_t h = 1469598103934665603ull;
            for (size_t j = 0; j < n0; j++) h = (h ^ (unsigned char)p[j]) * 1099511628211ull;
            size_t slot = h & (cap - 1);
            while (keys[slot] && (lens[slot] != n0 || memcmp(keys[slot], p, n0)))
                slot = (slot + 1) & (cap - 1);
            if (!keys[slot]) keys[slot] = p, lens[slot] = n0, distinct++;
            if (++counts[slot] > most) most = counts[slot];
            total++;
            p = dot + 1;
        }
        printf("level 0: %zu sentences, %zu distinct, most common %zu times\n", total, distinct,
               most);
        TW_CHECK(distinct * 2 > total, "level 0: only %zu of %zu sentences distinct", distinct,
                 total);
        TW_CHECK((double)most < 0.015 * (double)total, "level 0: a sentence repeats %zu times",
                 most);
        free(keys), free(lens), free(counts);
    }

    /* Samples for the record. */
    for (int level = 0; level < TW_SYNTH_LEVELS; level++) {
        const char *end = strstr(text[level], "\n\n");
        end = end ? strstr(end + 2, "\n\n") : NULL;
        printf("--- level %d sample ---\n%.*s\n", level,
               (int)(end ? end - text[level] : 300), text[level]);
    }

    /* tw_synth_write: the same bytes, written atomically. */
    char dir[] = "/tmp/twist-synth-XXXXXX";
    TW_CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char path[256];
    snprintf(path, sizeof path, "%s/l1.txt", dir);
    TW_CHECK_OK(tw_synth_write(1, 2024, 200000, path));
    FILE *f = fopen(path, "rb");
    TW_CHECK(f != NULL, "%s not written", path);
    if (f) {
        char *back = malloc(len[1] + 16);
        size_t got = fread(back, 1, len[1] + 16, f);
        fclose(f);
        TW_CHECK(got == len[1] && memcmp(back, text[1], got) == 0,
                 "written file differs from generated text");
        free(back);
    }
    remove(path);
    snprintf(path, sizeof path, "%s/missing-dir/l0.txt", dir);
    tw_status s = tw_synth_write(0, 1, 100, path);
    TW_CHECK(s == TW_ERR_IO && strstr(tw_last_error(), "missing-dir"),
             "writing into a missing directory: %s", tw_last_error());
    rmdir(dir);

    /* Bad arguments. */
    char *t = NULL;
    size_t n;
    TW_CHECK(tw_synth_generate(2, 1, 100, &t, &n) == TW_ERR_INVALID_ARGUMENT &&
                 strstr(tw_last_error(), "level 2"),
             "level 2 accepted: %s", tw_last_error());
    TW_CHECK(tw_synth_generate(0, 1, 0, &t, &n) == TW_ERR_INVALID_ARGUMENT, "0 words accepted");
    TW_CHECK(t == NULL, "output set on failure");

    free(text[0]);
    free(text[1]);
    return tw_test_finish("synth");
}
