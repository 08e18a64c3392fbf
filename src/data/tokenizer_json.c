/* Hugging Face tokenizer.json save/load for byte-level BPE.
 *
 * The file is the layout `tokenizers` writes for GPT-2: token strings use GPT-2's byte-to-unicode
 * table (each byte one printable code point, UTF-8 encoded), merges are "left right" strings, and
 * "<|endoftext|>" is an added special token that also appears in model.vocab. Loading accepts what
 * twist can encode identically to `tokenizers` (for ASCII text) and refuses the rest by name. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "twist/error.h"
#include "core/json_keys.h"
#include "core/paths.h"
#include "data/tokenizer_impl.h"

/* ------------------------------------------------------------------------------------------------
 * Token strings
 * ---------------------------------------------------------------------------------------------- */

/* Writes the byte-level string of `bytes` (2 UTF-8 bytes at most per byte) plus a 0 to `out`. */
static void bytes_to_string(const unsigned char *bytes, size_t length, char *out) {
    size_t k = 0;
    for (size_t i = 0; i < length; i++) {
        uint32_t cp = tw_byte_to_codepoint(bytes[i]);
        if (cp < 0x80) {
            out[k++] = (char)cp;
        } else { /* all code points of the table are below 0x800 */
            out[k++] = (char)(0xc0 | (cp >> 6));
            out[k++] = (char)(0x80 | (cp & 0x3f));
        }
    }
    out[k] = '\0';
}

/* Decodes a byte-level string into `out` (room for strlen(s) bytes); false when `s` is not valid
 * UTF-8 or holds a code point outside the table. */
static bool string_to_bytes(const char *s, unsigned char *out, size_t *length) {
    const unsigned char *p = (const unsigned char *)s;
    size_t k = 0;
    while (*p) {
        uint32_t cp;
        if (p[0] < 0x80) {
            cp = p[0];
            p += 1;
        } else if ((p[0] & 0xe0) == 0xc0 && (p[1] & 0xc0) == 0x80) {
            cp = ((uint32_t)(p[0] & 0x1f) << 6) | (p[1] & 0x3f);
            p += 2;
        } else {
            return false; /* 3- and 4-byte sequences are never in the table */
        }
        int byte = tw_codepoint_to_byte(cp);
        if (byte < 0) return false;
        out[k++] = (unsigned char)byte;
    }
    *length = k;
    return true;
}

/* ------------------------------------------------------------------------------------------------
 * Save
 * ---------------------------------------------------------------------------------------------- */

static cJSON *byte_level_object(bool add_prefix_space, bool trim_offsets) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "type", "ByteLevel");
    cJSON_AddBoolToObject(o, "add_prefix_space", add_prefix_space);
    cJSON_AddBoolToObject(o, "trim_offsets", trim_offsets);
    cJSON_AddBoolToObject(o, "use_regex", true);
    return o;
}

/* The whole document; NULL when out of memory. */
static cJSON *to_json(const tw_tokenizer *tok) {
    size_t max_len = 0;
    for (int32_t i = 0; i < tok->vocab_size; i++) {
        size_t n = tok->token_offset[i + 1] - tok->token_offset[i];
        if (n > max_len) max_len = n;
    }
    /* two token strings, a space and a 0 (for merges) */
    char *text = malloc(4 * max_len + 2);
    cJSON *root = cJSON_CreateObject();
    bool ok = text && root;
    if (ok) {
        cJSON_AddStringToObject(root, "version", "1.0");
        cJSON_AddNullToObject(root, "truncation");
        cJSON_AddNullToObject(root, "padding");
        cJSON *added = cJSON_AddArrayToObject(root, "added_tokens");
        ok = added != NULL;
        for (int32_t i = 0; ok && i < tok->vocab_size; i++) {
            if (!tok->special[i]) continue;
            cJSON *entry = cJSON_CreateObject();
            if (!entry) {
                ok = false;
                break;
            }
            size_t n = tok->token_offset[i + 1] - tok->token_offset[i];
            memcpy(text, tok->token_data + tok->token_offset[i], n);
            text[n] = '\0';
            cJSON_AddNumberToObject(entry, "id", i);
            cJSON_AddStringToObject(entry, "content", text);
            cJSON_AddBoolToObject(entry, "single_word", false);
            cJSON_AddBoolToObject(entry, "lstrip", false);
            cJSON_AddBoolToObject(entry, "rstrip", false);
            cJSON_AddBoolToObject(entry, "normalized", true);
            cJSON_AddBoolToObject(entry, "special", true);
            cJSON_AddItemToArray(added, entry);
        }
    }
    if (ok) {
        cJSON_AddNullToObject(root, "normalizer");
        cJSON *pre = byte_level_object(false, true);
        cJSON *post = byte_level_object(true, false);
        cJSON *dec = byte_level_object(true, true);
        ok = pre && post && dec;
        if (ok) {
            cJSON_AddItemToObject(root, "pre_tokenizer", pre);
            cJSON_AddItemToObject(root, "post_processor", post);
            cJSON_AddItemToObject(root, "decoder", dec);
        } else {
            cJSON_Delete(pre);
            cJSON_Delete(post);
            cJSON_Delete(dec);
        }
    }
    cJSON *model = ok ? cJSON_AddObjectToObject(root, "model") : NULL;
    cJSON *vocab = NULL, *merges = NULL;
    if (model) {
        cJSON_AddStringToObject(model, "type", "BPE");
        cJSON_AddNullToObject(model, "dropout");
        cJSON_AddNullToObject(model, "unk_token");
        cJSON_AddStringToObject(model, "continuing_subword_prefix", "");
        cJSON_AddStringToObject(model, "end_of_word_suffix", "");
        cJSON_AddBoolToObject(model, "fuse_unk", false);
        cJSON_AddBoolToObject(model, "byte_fallback", false);
        vocab = cJSON_AddObjectToObject(model, "vocab");
        merges = cJSON_AddArrayToObject(model, "merges");
    }
    ok = vocab && merges;
    for (int32_t i = 0; ok && i < tok->vocab_size; i++) {
        const unsigned char *bytes = tok->token_data + tok->token_offset[i];
        size_t n = tok->token_offset[i + 1] - tok->token_offset[i];
        if (tok->special[i]) { /* added tokens appear verbatim, as in GPT-2's file */
            memcpy(text, bytes, n);
            text[n] = '\0';
        } else {
            bytes_to_string(bytes, n, text);
        }
        ok = cJSON_AddNumberToObject(vocab, text, i) != NULL;
    }
    for (int32_t r = 0; ok && r < tok->merge_count; r++) {
        int32_t a = tok->merge_left[r], b = tok->merge_right[r];
        size_t la = tok->token_offset[a + 1] - tok->token_offset[a];
        size_t lb = tok->token_offset[b + 1] - tok->token_offset[b];
        bytes_to_string(tok->token_data + tok->token_offset[a], la, text);
        size_t k = strlen(text);
        text[k] = ' ';
        bytes_to_string(tok->token_data + tok->token_offset[b], lb, text + k + 1);
        cJSON *s = cJSON_CreateString(text);
        ok = s != NULL;
        if (ok) cJSON_AddItemToArray(merges, s);
    }
    free(text);
    if (!ok) {
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

static bool write_all(int fd, const char *data, size_t length) {
    while (length) {
        ssize_t n = write(fd, data, length);
        if (n < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        data += n;
        length -= (size_t)n;
    }
    return true;
}

/* Best effort: makes the rename itself durable. */
static void sync_parent_directory(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!dir) return;
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(dir);
}

tw_status tw_tokenizer_to_json(const tw_tokenizer *tok, char **json, size_t *length) {
    if (!tok || !json)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_tokenizer_to_json: NULL argument");
    cJSON *root = to_json(tok);
    *json = root ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (!*json) return tw_error(TW_ERR_OUT_OF_MEMORY, "tokenizer: out of memory writing JSON");
    if (length) *length = strlen(*json);
    return TW_OK;
}

tw_status tw_tokenizer_save(const tw_tokenizer *tok, const char *path) {
    if (!tok || !path || !*path)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_tokenizer_save: NULL tokenizer or empty path");
    TW_TRY(tw_check_output_file(path)); /* never rename over a device, FIFO or directory */
    char *json = NULL;
    size_t json_len = 0;
    if (tw_tokenizer_to_json(tok, &json, &json_len) != TW_OK)
        return tw_error(TW_ERR_OUT_OF_MEMORY, "%s: out of memory writing JSON", path);

    /* The temporary file lives beside `path`, so the rename stays within one file system. */
    static const char suffix[] = ".tmp-XXXXXX";
    size_t path_len = strlen(path);
    char *temp = malloc(path_len + sizeof suffix);
    if (!temp) {
        free(json);
        return tw_error(TW_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    }
    memcpy(temp, path, path_len);
    memcpy(temp + path_len, suffix, sizeof suffix);
    int fd = mkstemp(temp);
    if (fd < 0) {
        int error = errno;
        free(json);
        free(temp);
        return tw_error(TW_ERR_IO, "%s: cannot create a temporary file beside it: %s", path,
                        strerror(error));
    }
    const char *step = NULL;
    if (fchmod(fd, 0644) != 0) step = "chmod";
    if (!step && (!write_all(fd, json, json_len) || !write_all(fd, "\n", 1))) step = "write";
    if (!step && fsync(fd) != 0) step = "fsync";
    int error = errno;
    if (close(fd) != 0 && !step) {
        step = "close";
        error = errno;
    }
    if (!step && rename(temp, path) != 0) {
        step = "rename";
        error = errno;
    }
    free(json);
    if (step) {
        unlink(temp);
        free(temp);
        return tw_error(TW_ERR_IO, "%s: saving the tokenizer failed (%s: %s)", path, step,
                        strerror(error));
    }
    free(temp);
    sync_parent_directory(path);
    return TW_OK;
}

/* ------------------------------------------------------------------------------------------------
 * Load
 * ---------------------------------------------------------------------------------------------- */

/* One load of a tokenizer.json. The loader owns every allocation made while reading it
 * (loader_free releases them all), so each phase below returns at its first error with TW_TRY or
 * a direct return and never cleans up for itself. */
typedef struct loader {
    const char *path;
    /* per id: bytes (malloc'd), special flag, the string as written (for messages) */
    int32_t capacity; /* ids must be below this: the number of entries read */
    unsigned char **bytes;
    size_t *length;
    unsigned char *special;
    const char **name;
    tw_bytes_map by_string; /* vocab string -> id (for merges) */
    int32_t vocab_size;     /* V: one past the largest id, once the ids are known dense */
    int32_t eot;            /* id of TW_TOKENIZER_EOT_TEXT */
    /* merges (merge_count): left + right -> result, as ids */
    int merge_count;
    int32_t *merge_left, *merge_right, *merge_result;
    /* scratch: a decoded vocab string; a merge split in two; the two halves joined */
    unsigned char *decoded;
    char *merge_text, *joined;
    /* the builder's input: token strings end to end, offsets (V + 1) into them */
    unsigned char *data;
    size_t *offset;
} loader;

static void loader_free(loader *l) {
    for (int32_t i = 0; l->bytes && i < l->capacity; i++) free(l->bytes[i]);
    free(l->bytes);
    free(l->length);
    free(l->special);
    free(l->name);
    tw_bytes_map_free(&l->by_string);
    free(l->merge_left);
    free(l->merge_right);
    free(l->merge_result);
    free(l->decoded);
    free(l->merge_text);
    free(l->joined);
    free(l->data);
    free(l->offset);
}

static tw_status out_of_memory(const loader *l) {
    return tw_error(TW_ERR_OUT_OF_MEMORY, "%s: out of memory", l->path);
}

static tw_status format_error(const loader *l, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

static tw_status format_error(const loader *l, const char *format, ...) {
    char message[768];
    va_list args;
    va_start(args, format);
    vsnprintf(message, sizeof message, format, args);
    va_end(args);
    return tw_error(TW_ERR_FORMAT, "%s: %s", l->path, message);
}

/* The integer in `item`, or false when it is not an integer in [0, INT32_MAX]. */
static bool get_id(const cJSON *item, int32_t *id) {
    if (!cJSON_IsNumber(item)) return false;
    double d = item->valuedouble;
    if (!(d >= 0 && d <= INT32_MAX) || (double)(int32_t)d != d) return false;
    *id = (int32_t)d;
    return true;
}

/* True when the optional string field is absent, null or "". */
static bool empty_string_field(const cJSON *object, const char *key) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);
    return !item || cJSON_IsNull(item) || (cJSON_IsString(item) && item->valuestring[0] == '\0');
}

/* A boolean field with a default when absent; -1 when present but not a boolean. */
static int bool_field(const cJSON *object, const char *key, int fallback) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);
    if (!item) return fallback;
    if (!cJSON_IsBool(item)) return -1;
    return cJSON_IsTrue(item) ? 1 : 0;
}

/* Assigns token `id`. A special token may appear both in added_tokens and model.vocab (GPT-2's file
 * does this); any other second use of an id is a duplicate. */
static tw_status assign(loader *l, const char *field, int32_t id, const unsigned char *bytes,
                        size_t length, bool special, const char *name) {
    if (id >= l->capacity)
        return format_error(l, "%s: id %d for \"%s\" makes the ids not dense (%d entries need "
                            "ids 0..%d)",
                            field, id, name, l->capacity, l->capacity - 1);
    if (l->bytes[id]) {
        bool same = special && l->special[id] && l->length[id] == length &&
                    memcmp(l->bytes[id], bytes, length) == 0;
        if (same) return TW_OK;
        return format_error(l, "%s: duplicate id %d (\"%s\" and \"%s\")", field, id, l->name[id],
                            name);
    }
    l->bytes[id] = malloc(length ? length : 1);
    if (!l->bytes[id]) return out_of_memory(l);
    memcpy(l->bytes[id], bytes, length);
    l->length[id] = length;
    l->special[id] = special;
    l->name[id] = name;
    return TW_OK;
}

/* Splits merge `r` into its two token strings (pointers into `item` or into l->merge_text). */
static tw_status merge_parts(loader *l, const cJSON *item, int r, const char **a, const char **b) {
    if (cJSON_IsString(item)) {
        const char *s = item->valuestring;
        const char *space = strchr(s, ' ');
        if (!space || space == s || !space[1] || strchr(space + 1, ' '))
            return format_error(l, "model.merges[%d]: \"%s\" is not two tokens separated by one "
                                "space", r, s);
        free(l->merge_text);
        l->merge_text = strdup(s);
        if (!l->merge_text) return out_of_memory(l);
        l->merge_text[space - s] = '\0';
        *a = l->merge_text;
        *b = l->merge_text + (space - s) + 1;
        return TW_OK;
    }
    if (cJSON_IsArray(item) && cJSON_GetArraySize(item) == 2 &&
        cJSON_IsString(cJSON_GetArrayItem(item, 0)) && cJSON_IsString(cJSON_GetArrayItem(item, 1))) {
        *a = cJSON_GetArrayItem(item, 0)->valuestring;
        *b = cJSON_GetArrayItem(item, 1)->valuestring;
        return TW_OK;
    }
    return format_error(l, "model.merges[%d]: expected a \"left right\" string or a pair of "
                        "strings", r);
}

static int32_t string_id(const loader *l, const char *s) {
    size_t n = strlen(s);
    int32_t *id = tw_bytes_map_find(&l->by_string, s, n, tw_bytes_hash(s, n));
    return id ? *id : -1;
}

/* Checks the pipeline around the model: the parts that change how text splits into pieces. */
static tw_status check_pipeline(loader *l, const cJSON *root) {
    const cJSON *normalizer = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    if (normalizer && !cJSON_IsNull(normalizer))
        return format_error(l, "normalizer: twist supports only null (no normalisation)");
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    if (!pre) return format_error(l, "missing field pre_tokenizer");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(pre, "type");
    if (!cJSON_IsObject(pre) || !cJSON_IsString(type) || strcmp(type->valuestring, "ByteLevel"))
        return format_error(l, "pre_tokenizer: twist supports only {\"type\": \"ByteLevel\"}");
    /* `tokenizers` defaults add_prefix_space and use_regex to true when absent. */
    if (bool_field(pre, "add_prefix_space", 1) != 0)
        return format_error(l, "pre_tokenizer.add_prefix_space: twist supports only false");
    if (bool_field(pre, "use_regex", 1) != 1)
        return format_error(l, "pre_tokenizer.use_regex: twist supports only true");
    return TW_OK;
}

/* The three parts of the document a BPE tokenizer is read from. */
typedef struct json_sections {
    const cJSON *added;  /* added_tokens: array of {id, content} */
    const cJSON *vocab;  /* model.vocab: object string -> id */
    const cJSON *merges; /* model.merges: array of "left right" or ["left", "right"] */
} json_sections;

/* Phase 1: the document's shape and the model settings twist can honour. */
static tw_status find_sections(loader *l, const cJSON *root, json_sections *out) {
    if (!cJSON_IsObject(root)) return format_error(l, "the top level is not a JSON object");
    TW_TRY(check_pipeline(l, root));
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (!added) return format_error(l, "missing field added_tokens");
    if (!cJSON_IsArray(added)) return format_error(l, "added_tokens: not an array");
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!model) return format_error(l, "missing field model");
    if (!cJSON_IsObject(model)) return format_error(l, "model: not an object");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    if (!type) return format_error(l, "missing field model.type");
    if (!cJSON_IsString(type) || strcmp(type->valuestring, "BPE"))
        return format_error(l, "model.type: expected \"BPE\"");
    if (!empty_string_field(model, "continuing_subword_prefix"))
        return format_error(l, "model.continuing_subword_prefix: twist supports only \"\"");
    if (!empty_string_field(model, "end_of_word_suffix"))
        return format_error(l, "model.end_of_word_suffix: twist supports only \"\"");
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (dropout && !cJSON_IsNull(dropout) && !(cJSON_IsNumber(dropout) && dropout->valuedouble == 0))
        return format_error(l, "model.dropout: twist supports only null (no BPE dropout)");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    if (!vocab) return format_error(l, "missing field model.vocab");
    if (!cJSON_IsObject(vocab)) return format_error(l, "model.vocab: not an object");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (!merges) return format_error(l, "missing field model.merges");
    if (!cJSON_IsArray(merges)) return format_error(l, "model.merges: not an array");
    out->added = added;
    out->vocab = vocab;
    out->merges = merges;
    return TW_OK;
}

/* Phase 2: room for one entry per id. Ids must be dense, so none can reach the number of
 * entries (added tokens + vocab strings). */
static tw_status allocate_ids(loader *l, const json_sections *sections) {
    int added_count = cJSON_GetArraySize(sections->added);
    int vocab_count = cJSON_GetArraySize(sections->vocab);
    if ((int64_t)added_count + vocab_count > TW_TOKENIZER_MAX_VOCAB)
        return format_error(l, "model.vocab: %d tokens, more than twist supports (%d)",
                            added_count + vocab_count, TW_TOKENIZER_MAX_VOCAB);
    l->capacity = added_count + vocab_count;
    size_t cap = (size_t)(l->capacity ? l->capacity : 1);
    l->bytes = calloc(cap, sizeof *l->bytes);
    l->length = calloc(cap, sizeof *l->length);
    l->special = calloc(cap, 1);
    l->name = calloc(cap, sizeof *l->name);
    if (!l->bytes || !l->length || !l->special || !l->name) return out_of_memory(l);
    return TW_OK;
}

/* Phase 3: added_tokens, which must include the end-of-text token (l->eot). */
static tw_status read_added_tokens(loader *l, const cJSON *added) {
    l->eot = -1;
    int index = 0;
    for (const cJSON *entry = added->child; entry; entry = entry->next, index++) {
        const cJSON *id_item = cJSON_GetObjectItemCaseSensitive(entry, "id");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(entry, "content");
        int32_t id;
        if (!cJSON_IsObject(entry) || !get_id(id_item, &id))
            return format_error(l, "added_tokens[%d].id: missing or not a non-negative integer",
                                index);
        if (!cJSON_IsString(content) || !content->valuestring[0])
            return format_error(l, "added_tokens[%d].content: missing or not a non-empty string",
                                index);
        const char *s = content->valuestring;
        for (int32_t other = 0; other < l->capacity; other++) /* added tokens are few */
            if (other != id && l->bytes[other] && l->special[other] && !strcmp(l->name[other], s))
                return format_error(l, "added_tokens[%d]: \"%s\" is listed twice", index, s);
        TW_TRY(assign(l, "added_tokens", id, (const unsigned char *)s, strlen(s), true, s));
        if (!strcmp(s, TW_TOKENIZER_EOT_TEXT)) l->eot = id;
    }
    if (l->eot < 0)
        return format_error(l, "added_tokens: no " TW_TOKENIZER_EOT_TEXT " token (the document "
                            "separator twist needs)");
    return TW_OK;
}

/* Phase 4a: one model.vocab entry; `s` is its byte-level string. */
static tw_status read_vocab_entry(loader *l, const cJSON *entry) {
    const char *s = entry->string;
    int32_t id;
    if (!get_id(entry, &id))
        return format_error(l, "model.vocab[\"%s\"]: the id is not a non-negative integer", s);
    /* A string naming one of the added tokens under the same id is that token again. */
    bool is_added = id < l->capacity && l->bytes[id] && l->special[id] && !strcmp(l->name[id], s);
    size_t n;
    if (is_added) {
        TW_TRY(assign(l, "model.vocab", id, (const unsigned char *)s, strlen(s), true, s));
    } else if (!string_to_bytes(s, l->decoded, &n) || n == 0) {
        return format_error(l, "model.vocab[\"%s\"]: not a byte-level token string (GPT-2's "
                            "byte-to-unicode alphabet)", s);
    } else {
        TW_TRY(assign(l, "model.vocab", id, l->decoded, n, false, s));
    }
    bool inserted;
    if (!tw_bytes_map_insert(&l->by_string, s, strlen(s), tw_bytes_hash(s, strlen(s)), id,
                             &inserted))
        return out_of_memory(l);
    if (!inserted) return format_error(l, "model.vocab: token \"%s\" is listed twice", s);
    return TW_OK;
}

/* Phase 4: model.vocab, then the check that the ids are dense: the largest id fixes V and every
 * id below it must be used. */
static tw_status read_vocab(loader *l, const cJSON *vocab) {
    size_t longest = 0;
    for (const cJSON *entry = vocab->child; entry; entry = entry->next) {
        size_t n = strlen(entry->string);
        if (n > longest) longest = n;
    }
    l->decoded = malloc(longest + 1);
    if (!l->decoded) return out_of_memory(l);
    for (const cJSON *entry = vocab->child; entry; entry = entry->next)
        TW_TRY(read_vocab_entry(l, entry));

    int32_t v = 0;
    for (int32_t i = 0; i < l->capacity; i++)
        if (l->bytes[i]) v = i + 1;
    for (int32_t i = 0; i < v; i++)
        if (!l->bytes[i])
            return format_error(l, "model.vocab: ids are not dense: id %d is unused but id %d "
                                "exists", i, v - 1);
    l->vocab_size = v;
    return TW_OK;
}

/* Phase 5a: merge `r` as ids: left + right -> result, each a model.vocab string. */
static tw_status read_merge(loader *l, const cJSON *item, int r) {
    const char *a = NULL, *b = NULL;
    TW_TRY(merge_parts(l, item, r, &a, &b));
    int32_t ia = string_id(l, a), ib = string_id(l, b);
    if (ia < 0 || ib < 0)
        return format_error(l, "model.merges[%d]: unknown token \"%s\"", r, ia < 0 ? a : b);
    size_t la = strlen(a), lb = strlen(b);
    free(l->joined);
    l->joined = malloc(la + lb + 1);
    if (!l->joined) return out_of_memory(l);
    memcpy(l->joined, a, la);
    memcpy(l->joined + la, b, lb + 1);
    int32_t ic = string_id(l, l->joined);
    if (ic < 0)
        return format_error(l, "model.merges[%d]: the result \"%s\" of \"%s\" + \"%s\" is not in "
                            "model.vocab", r, l->joined, a, b);
    l->merge_left[r] = ia;
    l->merge_right[r] = ib;
    l->merge_result[r] = ic;
    return TW_OK;
}

/* Phase 5: model.merges, in rank order. */
static tw_status read_merges(loader *l, const cJSON *merges) {
    l->merge_count = cJSON_GetArraySize(merges);
    size_t mc = (size_t)(l->merge_count ? l->merge_count : 1);
    l->merge_left = malloc(mc * sizeof *l->merge_left);
    l->merge_right = malloc(mc * sizeof *l->merge_right);
    l->merge_result = malloc(mc * sizeof *l->merge_result);
    if (!l->merge_left || !l->merge_right || !l->merge_result) return out_of_memory(l);
    int r = 0;
    for (const cJSON *item = merges->child; item; item = item->next, r++)
        TW_TRY(read_merge(l, item, r));
    return TW_OK;
}

/* Phase 6: the token strings packed end to end (offset (V + 1) into data) and the tokenizer
 * built from them (the builder copies what it keeps). */
static tw_status build_tokenizer(loader *l, tw_tokenizer **out) {
    const int32_t v = l->vocab_size;
    l->offset = malloc(((size_t)v + 1) * sizeof *l->offset);
    if (!l->offset) return out_of_memory(l);
    size_t total = 0;
    for (int32_t i = 0; i < v; i++) {
        l->offset[i] = total;
        total += l->length[i];
    }
    l->offset[v] = total;
    l->data = malloc(total ? total : 1);
    if (!l->data) return out_of_memory(l);
    for (int32_t i = 0; i < v; i++) memcpy(l->data + l->offset[i], l->bytes[i], l->length[i]);
    tw_tokenizer_spec spec = {
        .vocab_size = v,
        .token_data = l->data,
        .token_offset = l->offset,
        .special = l->special,
        .eot_id = l->eot,
        .merge_count = l->merge_count,
        .merge_left = l->merge_left,
        .merge_right = l->merge_right,
        .merge_result = l->merge_result,
    };
    return tw_tokenizer_build(&spec, l->path, out);
}

/* Reads a parsed tokenizer.json into a tokenizer, phase by phase; the first error ends it. */
static tw_status load_json(loader *l, const cJSON *root, tw_tokenizer **out) {
    json_sections sections = {NULL, NULL, NULL};
    TW_TRY(find_sections(l, root, &sections));
    TW_TRY(allocate_ids(l, &sections));
    TW_TRY(read_added_tokens(l, sections.added));
    TW_TRY(read_vocab(l, sections.vocab));
    TW_TRY(read_merges(l, sections.merges));
    return build_tokenizer(l, out);
}

tw_status tw_tokenizer_load(const char *path, tw_tokenizer **out) {
    if (out) *out = NULL;
    if (!path || !out) return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_tokenizer_load: NULL argument");
    char *text = NULL;
    size_t size = 0;
    tw_status status = tw_read_file(path, &text, &size);
    if (status == TW_OK) status = tw_tokenizer_from_json(text, size, path, out);
    free(text);
    return status;
}

tw_status tw_tokenizer_from_json(const char *json, size_t length, const char *path,
                                 tw_tokenizer **out) {
    if (out) *out = NULL;
    if (!json || !path || !out)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_tokenizer_from_json: NULL argument");
    /* Parsed as a terminated copy so trailing garbage after the document is an error too. */
    char *text = malloc(length + 1);
    if (!text) return tw_error(TW_ERR_OUT_OF_MEMORY, "%s: out of memory reading it", path);
    memcpy(text, json, length);
    text[length] = '\0';
    const size_t used = length;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, used + 1, &end, true);
    if (!root) {
        size_t at = end && end >= text ? (size_t)(end - text) : 0;
        free(text);
        return tw_error(TW_ERR_FORMAT, "%s: not valid JSON (error at byte %zu of %zu)", path, at,
                        used);
    }
    free(text);
    /* {"model": {"vocab": {"a": 1, "a": 2}}} means id 1 to twist's first-match lookup and id 2
     * to the tokenizers library: refused rather than encoding differently from HF. */
    tw_status duplicate = tw_json_refuse_duplicate(root, path);
    if (duplicate != TW_OK) {
        cJSON_Delete(root);
        return duplicate;
    }
    loader l;
    memset(&l, 0, sizeof l);
    l.path = path;
    tw_bytes_map_init(&l.by_string);
    tw_status status = load_json(&l, root, out);
    loader_free(&l);
    cJSON_Delete(root);
    return status;
}
