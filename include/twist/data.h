/* twist: training data. Graded synthetic English, corpus loading, a deterministic train/validation
 * split, a tokenised cache beside the corpus, and the batch loader.
 *
 * Pipeline:
 *
 *   tw_synth_generate()            built-in graded English (the default corpus: no download)
 *   tw_corpus_load()               plain text -> documents (blank-line separated)
 *   tw_corpus_split()              document -> train or validation, by a seeded hash of its index
 *   tw_dataset_load()              corpus + tokenizer callback -> two int32 token streams, cached in
 *                                  "<corpus>.<tokenizer-hash>.twtok"
 *   tw_loader_init/next/next_eval  (B, T+1) windows of a stream: random (training) or sequential
 *                                  (evaluation), resumable, shardable
 *
 * The tokenizer is not a dependency: tw_dataset_load() takes an encode callback, the tokenizer's
 * 64-bit hash (so a changed tokenizer invalidates the cache) and its end-of-text id.
 *
 * Everything here is deterministic and machine independent: the same corpus, seeds and settings
 * give the same split, token streams, cache bytes and batches on every machine (integer hashing
 * only; files are little-endian). */
#ifndef TWIST_DATA_H
#define TWIST_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "twist/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------------
 * Graded synthetic English
 * ---------------------------------------------------------------------------------------------- */

/* Level 0: all lowercase (like ../shared/data/tinystories-l0.txt); 3-7 word sentences over a
 *          preschool vocabulary; stories of 3-6 sentences about one named character, one place
 *          and one companion, in one tense.
 * Level 1: cased; 8-20 word sentences over a first-grade vocabulary (a superset of level 0) with
 *          subordinate clauses (because, when, after, before, if, so that, while), relative clauses
 *          (who, which, that), commas and quoted dialogue; stories of 4-8 sentences.
 * Both: plain ASCII, one story per paragraph, stories separated by one blank line, no doubled
 * spaces, subject-verb agreement and a/an handled by the generator. */
#define TW_SYNTH_LEVELS 2

/* Generates about `words` words (stops at the end of the story that reaches the count) into a new
 * NUL-terminated buffer *text of *length bytes (release with free()). Same (level, seed, words):
 * same bytes on every machine. */
tw_status tw_synth_generate(int level, uint64_t seed, size_t words, char **text, size_t *length);

/* The same text written to `path` atomically (temporary file + rename): a failure leaves no
 * partial file. */
tw_status tw_synth_write(int level, uint64_t seed, size_t words, const char *path);

/* Number of distinct word lemmas in the level's lexicon (function words included). The distinct
 * word forms in a long generated text are somewhat more (plurals, tenses). */
size_t tw_synth_lexicon_size(int level);

/* ------------------------------------------------------------------------------------------------
 * Corpora
 * ---------------------------------------------------------------------------------------------- */

/* A loaded text corpus. Documents are the runs of non-blank lines between blank lines (a line of
 * only spaces and tabs is blank); \r\n line ends are read as \n; a document's inner newlines are
 * kept, its surrounding blank lines are not. */
typedef struct tw_corpus {
    char *path;             /* as given (or the name passed to tw_corpus_from_memory) */
    char *text;             /* normalised text (\r\n -> \n), NUL-terminated */
    size_t text_bytes;
    uint64_t file_bytes;    /* size of the original bytes */
    uint64_t content_hash;  /* FNV-1a 64 of the original bytes: the cache key */
    size_t doc_count;
    size_t *doc_offset;     /* (doc_count) byte offsets of each document in text */
    size_t *doc_length;     /* (doc_count) byte lengths */
} tw_corpus;

/* Reads and splits a corpus file. TW_ERR_NOT_FOUND / TW_ERR_IO when the file is missing or
 * unreadable; TW_ERR_FORMAT when it is empty, has no text but whitespace, or contains a NUL byte
 * (the message gives the offset). */
tw_status tw_corpus_load(const char *path, tw_corpus **corpus);
/* The same from memory; `name` stands for the path in messages. */
tw_status tw_corpus_from_memory(const char *name, const char *text, size_t length,
                                tw_corpus **corpus);
void tw_corpus_free(tw_corpus *corpus);

/* FNV-1a 64-bit hash, continuing from `hash` (start with TW_FNV1A_INIT). */
#define TW_FNV1A_INIT 0xcbf29ce484222325ull
uint64_t tw_fnv1a64(uint64_t hash, const void *data, size_t bytes);

/* ------------------------------------------------------------------------------------------------
 * Train/validation split
 * ---------------------------------------------------------------------------------------------- */

#define TW_DEFAULT_VAL_FRACTION 0.05
#define TW_DEFAULT_SPLIT_SEED 1234u

/* Document i goes to validation when splitmix64(seed, i) / 2^64 < val_fraction. So the split of a
 * document depends only on its index, the seed and the fraction, never on the machine or on the
 * other documents. With val_fraction > 0 and >= 2 documents, at least one document is in each
 * split (the lowest-hash document is moved to validation, or the highest-hash one to training).
 * val_fraction 0 puts every document in training. is_val: (doc_count) output, 1 = validation.
 * val_fraction must lie in [0, 1). */
tw_status tw_corpus_split(const tw_corpus *corpus, double val_fraction, uint64_t seed,
                          uint8_t *is_val, size_t *val_docs);

/* ------------------------------------------------------------------------------------------------
 * Tokenised dataset and its cache
 * ---------------------------------------------------------------------------------------------- */

/* Encodes text[0, length) into a new malloc'd array *ids of *count token ids (the caller frees it
 * with free()). Must be deterministic. */
typedef tw_status (*tw_encode_fn)(void *context, const char *text, size_t length, int32_t **ids,
                                  size_t *count);

typedef struct tw_encoder {
    tw_encode_fn encode;
    void *context;
    uint64_t hash;  /* identifies the tokenizer (vocabulary + merges): names the cache file */
    int32_t eot_id; /* end-of-text token placed before every document */
} tw_encoder;

typedef struct tw_data_options {
    double val_fraction;   /* TW_DEFAULT_VAL_FRACTION */
    uint64_t split_seed;   /* TW_DEFAULT_SPLIT_SEED */
    bool use_cache;        /* false: always tokenise, never read or write a cache */
    const char *cache_dir; /* NULL: beside the corpus, then $TWIST_CACHE_DIR, $XDG_CACHE_HOME/twist,
                              ~/.cache/twist; else only this directory */
} tw_data_options;

/* The defaults above, use_cache true. */
tw_data_options tw_data_options_default(void);

typedef enum tw_cache_result {
    TW_CACHE_OFF = 0, /* caching disabled by the options */
    TW_CACHE_HIT,     /* streams read from cache_path */
    TW_CACHE_WRITTEN, /* tokenised, written to cache_path */
    TW_CACHE_UNWRITABLE /* tokenised; no cache directory could be written (cache_note says why) */
} tw_cache_result;

/* Token streams of both splits. Each stream is its split's documents in corpus order, each one
 * preceded by the end-of-text token: EOT d0 EOT d1 ... (so a sample can start from EOT alone and
 * a document boundary is always marked). */
typedef struct tw_dataset {
    char *corpus_path;
    int32_t *train;
    size_t train_tokens;
    size_t train_docs;
    int32_t *val;
    size_t val_tokens;
    size_t val_docs;
    int32_t eot_id;
    tw_cache_result cache;
    char *cache_path;     /* file read or written, or NULL */
    char cache_note[512]; /* why a cache candidate was rejected or could not be written, or "" */
} tw_dataset;

/* Loads `corpus_path`, splits it and returns both token streams, from the cache when one is valid
 * for this corpus content, tokenizer hash, EOT id and split settings; otherwise tokenises and
 * (best effort) writes the cache atomically (temporary file + rename). A cache that is stale,
 * truncated or fails its checksum is never trusted: it is rebuilt. options may be NULL (defaults).
 *
 * Where the cache goes (options->cache_dir NULL): beside the corpus when its directory is
 * writable, else in $TWIST_CACHE_DIR, $XDG_CACHE_HOME/twist or ~/.cache/twist (the first that is
 * set; created if needed) as "<corpus name>.<path hash>.<tokenizer hash>.twtok"; else nowhere
 * (TW_CACHE_UNWRITABLE, still TW_OK). Reading tries the same places in the same order. A directory
 * whose mode grants write permission to nobody is treated as read-only even for root (so
 * ../shared/data is never written to). The file format is documented in src/data/dataset.c. */
tw_status tw_dataset_load(const char *corpus_path, const tw_encoder *encoder,
                          const tw_data_options *options, tw_dataset **dataset);
void tw_dataset_free(tw_dataset *dataset);

/* Cache file used beside the corpus: "<corpus_path>.<16 hex digits of tokenizer hash>.twtok".
 * Writes at most `capacity` bytes; returns false when it does not fit. */
bool tw_dataset_cache_name(const char *corpus_path, uint64_t tokenizer_hash, char *out,
                           size_t capacity);

/* ------------------------------------------------------------------------------------------------
 * Batch loader
 * ---------------------------------------------------------------------------------------------- */

/* Everything a resumed run needs to draw exactly the same next batches: store these integers in
 * the checkpoint and pass them to tw_loader_set_state(). */
typedef struct tw_loader_state {
    uint64_t rng;     /* xorshift64* state of the random mode */
    uint64_t batches; /* batches drawn so far (both modes) */
    uint64_t cursor;  /* next window of the sequential mode (window index within this shard) */
} tw_loader_state;

/* A view of one token stream (the loader does not own or copy it). Start positions p index
 * windows tokens[p, p + T + 1): inputs = tokens[p, p + T), targets = tokens[p + 1, p + T + 1).
 *
 * Sharding: worker `shard` of `shard_count` owns the contiguous block
 * [shard * P / shard_count, (shard + 1) * P / shard_count) of the P = n - T start positions
 * (random mode), or the same block of the W sequential windows (evaluation). Blocks of different
 * workers are disjoint and together cover every position; shard_count 1 is the whole stream. */
typedef struct tw_loader {
    const int32_t *tokens;
    size_t token_count;
    int batch;   /* B */
    int seq_len; /* T */
    int shard;
    int shard_count;
    uint64_t seed;
    uint64_t first; /* this shard's first start position (random) */
    uint64_t count; /* number of start positions this shard owns (random) */
    uint64_t window_first; /* this shard's first sequential window */
    uint64_t window_count; /* sequential windows this shard owns */
    tw_loader_state state;
    char name[256]; /* corpus/split name for messages */
} tw_loader;

/* name: what the stream is, for messages ("data/x.txt (validation)"). The stream must hold at
 * least T + 1 tokens, and the shard at least one start position. */
tw_status tw_loader_init(tw_loader *loader, const int32_t *tokens, size_t token_count, int batch,
                         int seq_len, uint64_t seed, int shard, int shard_count, const char *name);

/* Random mode: fills inputs and targets, each (B, T) row-major, from B start positions drawn
 * uniformly (without modulo bias) from this shard's positions. */
tw_status tw_loader_next(tw_loader *loader, int32_t *inputs, int32_t *targets);

/* Sequential mode, for evaluation: window w covers inputs tokens[wT, wT + T) and targets
 * tokens[wT + 1, wT + T + 1); windows do not overlap and their targets cover tokens 1 .. n-1 of
 * the stream exactly once. The last window, when partial, is padded: inputs with 0 and targets
 * with -1 (ignored by the loss). Fills up to B rows; rows past *rows are padding (targets -1).
 * *rows is 0 once this shard's windows are exhausted; tw_loader_rewind() starts over. */
tw_status tw_loader_next_eval(tw_loader *loader, int32_t *inputs, int32_t *targets, int *rows);
void tw_loader_rewind(tw_loader *loader);

/* Number of sequential windows of a stream: ceil((n - 1) / T). */
uint64_t tw_loader_window_count(size_t token_count, int seq_len);

tw_loader_state tw_loader_get_state(const tw_loader *loader);
/* Restores a state saved from a loader made with the same arguments. */
tw_status tw_loader_set_state(tw_loader *loader, tw_loader_state state);

#ifdef __cplusplus
}
#endif

#endif
