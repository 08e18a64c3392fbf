/* twist: byte-level BPE tokenizer (GPT-2 style), trained on plain-text corpora and stored as a
 * Hugging Face `tokenizer.json`.
 *
 * Vocabulary layout of a tokenizer trained by twist (a loaded file may order ids differently; the
 * API below never assumes this layout):
 *   ids 0..255           the 256 single bytes (id == byte value), so every byte string encodes
 *   ids 256..V-2         merged tokens, in the order training created them
 *   id  V-1              the special token "<|endoftext|>" (tw_tokenizer_eot_id), the document
 *                        separator that the data pipeline inserts between documents
 *
 * Encoding is exact and lossless: decode(encode(bytes)) == bytes for ANY byte string, including
 * non-UTF-8 input, NUL bytes, "\r\n", tabs and runs of spaces. Encoding never produces the
 * end-of-text id, not even for text that spells "<|endoftext|>" (which encodes as ordinary bytes;
 * this is where twist differs from Hugging Face `tokenizers`, which matches added tokens in the
 * input text). Decoding the end-of-text id yields the 13 bytes "<|endoftext|>".
 *
 * Pre-tokenization is GPT-2's regular expression, the one of Hugging Face `tokenizers`' ByteLevel
 * pre-tokenizer, matched over UTF-8 by PCRE2 with Unicode classes:
 *     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *   letters    = \p{L} (every script; combining marks are NOT letters, as in HF);
 *   digits     = \p{N} (Nd, Nl, No: Arabic-Indic, fullwidth, superscript, Roman numerals ...);
 *   whitespace = Unicode White_Space (\t..\r, space, U+0085, NBSP, U+1680, U+2000..U+200A,
 *                U+2028, U+2029, U+202F, U+205F, U+3000), as Oniguruma's \s in HF;
 *   the contractions and the optional leading space are ASCII only, case-sensitive.
 * So for UTF-8 text the pieces, and with the same tokenizer.json the ids, equal HF's (tested against
 * recorded ids: tests/test_tokenizer_hf.c). Invalid UTF-8: HF takes text, not bytes, so such bytes
 * reach it only as U+FFFD (one per maximal ill-formed subsequence, the Unicode/WHATWG rule of
 * Python's errors="replace" and Node's decoder). twist splits raw bytes as HF splits that text,
 * each invalid sequence standing where its U+FFFD would (class "other", like punctuation), but it
 * encodes the bytes themselves, so decode(encode(x)) == x still holds. The Unicode version is
 * PCRE2's (10.42 in Debian 12: Unicode 14); HF's Oniguruma knows Unicode 16, so the 9,392 letters
 * and digits assigned in Unicode 15 and 16 (CJK extensions H and I, Egyptian hieroglyph
 * extensions, ...) are "other" to twist and can split differently.
 * BPE merges never cross a piece boundary.
 *
 * Thread safety: a tokenizer is immutable after training or loading except for its encode cache,
 * which a mutex guards, so every function may be called from several threads at once (concurrent
 * encodes on one tokenizer serialise; give each thread its own loaded copy to encode in parallel).
 */
#ifndef TWIST_TOKENIZER_H
#define TWIST_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "twist/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tw_tokenizer tw_tokenizer;

/* The special token's text. */
#define TW_TOKENIZER_EOT_TEXT "<|endoftext|>"

/* Smallest vocabulary: the 256 bytes plus "<|endoftext|>". */
#define TW_TOKENIZER_MIN_VOCAB 257
/* Largest vocabulary twist trains (ids are int32 everywhere; this keeps tables modest). */
#define TW_TOKENIZER_MAX_VOCAB (1 << 20)

/* Trains a tokenizer with `vocab_size` tokens (bytes, merges and "<|endoftext|>" all counted) on
 * the concatenated text of `path_count` files. A corpus is plain text whose documents are separated
 * by blank lines; the separators are trained on like any other text. Training counts the corpus's
 * pre-token pieces, then repeatedly merges the most frequent adjacent pair of tokens inside a piece;
 * ties go to the pair with the smallest (left id, right id), so training is deterministic. When a
 * corpus has no pair left to merge the vocabulary is smaller than asked for: read the real size
 * with tw_tokenizer_vocab_size(). Each file is read whole into memory.
 * Errors: TW_ERR_INVALID_ARGUMENT (vocab_size outside [257, 2^20], no paths), TW_ERR_NOT_FOUND /
 * TW_ERR_IO (a file that cannot be read; the message names it), TW_ERR_OUT_OF_MEMORY. */
tw_status tw_tokenizer_train(const char *const *paths, int path_count, int vocab_size,
                             tw_tokenizer **out);

/* The same from `count` in-memory texts (texts[i] has lengths[i] bytes, need not be 0-terminated;
 * they are treated as separate texts: no piece spans two of them). */
tw_status tw_tokenizer_train_texts(const char *const *texts, const size_t *lengths, int count,
                                   int vocab_size, tw_tokenizer **out);

/* Loads a Hugging Face tokenizer.json holding a byte-level BPE model: pre_tokenizer ByteLevel
 * (add_prefix_space false, use_regex true), no normalizer, model.type "BPE" with empty
 * continuing_subword_prefix / end_of_word_suffix, the 256 single-byte tokens present, and an added
 * token "<|endoftext|>". Merges may be "a b" strings or ["a", "b"] pairs.
 * Errors: TW_ERR_NOT_FOUND / TW_ERR_IO (unreadable file), TW_ERR_FORMAT (not JSON, a missing or
 * malformed field, a merge naming an unknown token or one whose result is not in the vocabulary,
 * duplicate ids or tokens, ids not dense 0..V-1, a token string outside the byte-level alphabet,
 * an unsupported pre-tokenizer/normalizer); the message names the file and the field. */
tw_status tw_tokenizer_load(const char *path, tw_tokenizer **out);

/* Writes `tok` as a Hugging Face tokenizer.json. Atomic: the JSON goes to a temporary file in the
 * same directory, is flushed to disk (fsync) and renamed over `path`, so `path` is either the old
 * file or the complete new one, never a torn one. Errors: TW_ERR_IO naming the file. */
tw_status tw_tokenizer_save(const tw_tokenizer *tok, const char *path);

/* The same JSON text in memory: *json is malloc'd and NUL-terminated, *length its size. */
tw_status tw_tokenizer_to_json(const tw_tokenizer *tok, char **json, size_t *length);

/* Loads tokenizer.json text from memory (`length` bytes, need not be NUL-terminated) with the
 * checks of tw_tokenizer_load; `path` names the source in messages. */
tw_status tw_tokenizer_from_json(const char *json, size_t length, const char *path,
                                 tw_tokenizer **out);

/* Frees a tokenizer (NULL is fine). */
void tw_tokenizer_free(tw_tokenizer *tok);

/* Number of token ids (V): valid ids are 0..V-1. */
int tw_tokenizer_vocab_size(const tw_tokenizer *tok);

/* Id of "<|endoftext|>". */
int32_t tw_tokenizer_eot_id(const tw_tokenizer *tok);

/* Number of merge rules. */
int tw_tokenizer_merge_count(const tw_tokenizer *tok);

/* Merge rule `rank` (0 = first learned, applied first): left + right -> result. Returns
 * TW_ERR_INVALID_ARGUMENT for a rank out of range. */
tw_status tw_tokenizer_merge(const tw_tokenizer *tok, int rank, int32_t *left, int32_t *right,
                             int32_t *result);

/* The bytes of token `id` (not 0-terminated; *length receives their count) or NULL for an id out of
 * range. Valid while the tokenizer lives. */
const unsigned char *tw_tokenizer_token_bytes(const tw_tokenizer *tok, int32_t id, size_t *length);

/* Stable 64-bit content hash (FNV-1a over a canonical little-endian serialisation of every token's
 * bytes, the special-token flags and the merge list). Equal for equal tokenizers on every machine
 * and across save/load; the data cache stores it to notice a changed tokenizer. */
uint64_t tw_tokenizer_hash(const tw_tokenizer *tok);

/* Encodes `length` bytes of `text` (any bytes; need not be 0-terminated). On success *ids receives
 * a malloc'd array of *count token ids, which the caller releases with free(); *ids is never NULL
 * on success, even for empty input (count 0). On failure *ids is NULL and *count 0.
 * Errors: TW_ERR_INVALID_ARGUMENT (NULL pointers), TW_ERR_OUT_OF_MEMORY, TW_ERR_BACKEND (PCRE2
 * failed: a pattern it cannot compile or a match error; not seen in practice). */
tw_status tw_tokenizer_encode(const tw_tokenizer *tok, const char *text, size_t length,
                              int32_t **ids, size_t *count);

/* Decodes `count` ids into their bytes. On success *text receives a malloc'd buffer of *length
 * bytes followed by a 0 byte (not counted, for convenience; the bytes themselves may contain 0),
 * released with free(). Errors: TW_ERR_INVALID_ARGUMENT naming the first id out of range. */
tw_status tw_tokenizer_decode(const tw_tokenizer *tok, const int32_t *ids, size_t count,
                              char **text, size_t *length);

/* Length in bytes of the first pre-token piece of text[0..length), per the split described at the
 * top of this file (0 only when length is 0; 1 if PCRE2 cannot run, out of memory). It reads only
 * as far as that piece needs, so splitting a whole text is a loop:
 *     for (size_t at = 0, n; at < length; at += n) n = tw_tokenizer_piece_length(text + at, length - at);
 */
size_t tw_tokenizer_piece_length(const char *text, size_t length);

#ifdef __cplusplus
}
#endif

#endif
