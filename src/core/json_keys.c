/* Duplicate keys in parsed JSON (see json_keys.h). cJSON keeps every member of an object,
 * duplicates included, and its lookups return the first, while Python's json (and so PyTorch's
 * safetensors and transformers) keeps the last: a file with a key given twice means one thing to
 * twist and another to them, so twist's readers refuse it. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/json_keys.h"
#include "twist/error.h"

static int compare_keys(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The first key given twice among item's own members, or NULL; false when out of memory. */
static bool own_duplicate(const cJSON *item, const char **twice) {
    *twice = NULL;
    int n = 0;
    const cJSON *child;
    cJSON_ArrayForEach(child, item) n++;
    if (!cJSON_IsObject(item) || n < 2) return true;
    const char **keys = malloc((size_t)n * sizeof *keys);
    if (!keys) return false;
    int k = 0;
    cJSON_ArrayForEach(child, item) keys[k++] = child->string;
    qsort(keys, (size_t)n, sizeof *keys, compare_keys);
    for (int i = 1; i < n && !*twice; i++)
        if (strcmp(keys[i - 1], keys[i]) == 0) *twice = keys[i];
    free(keys);
    return true;
}

/* Depth first; `path` holds the JSON path of item, `length` characters of it. The depth is
 * bounded by cJSON's parser (CJSON_NESTING_LIMIT). */
static bool search(const cJSON *item, const char *top, tw_json_duplicate *out, size_t length) {
    const char *twice;
    if (!own_duplicate(item, &twice)) return false;
    if (twice) {
        out->key = twice;
        out->top = top;
        return true;
    }
    int index = 0;
    const cJSON *child;
    cJSON_ArrayForEach(child, item) {
        if (cJSON_IsObject(child) || cJSON_IsArray(child)) {
            if (cJSON_IsArray(item))
                snprintf(out->path + length, sizeof out->path - length, "[%d]", index);
            else
                snprintf(out->path + length, sizeof out->path - length, "%s%s",
                         length ? "." : "", child->string);
            size_t grown = strlen(out->path);
            if (!search(child, top ? top : child->string, out, grown)) return false;
            if (out->key) return true;
            out->path[length] = '\0';
        }
        index++;
    }
    return true;
}

tw_status tw_json_find_duplicate(const cJSON *root, tw_json_duplicate *out) {
    memset(out, 0, sizeof *out);
    if (!search(root, NULL, out, 0))
        return tw_error(TW_ERR_OUT_OF_MEMORY, "JSON duplicate key check: out of host memory");
    return TW_OK;
}

tw_status tw_json_refuse_duplicate(const cJSON *root, const char *source) {
    tw_json_duplicate twice;
    TW_TRY(tw_json_find_duplicate(root, &twice));
    if (!twice.key) return TW_OK;
    return tw_error(TW_ERR_FORMAT, "%s: key '%s' appears twice%s%s", source, twice.key,
                    twice.path[0] ? " in " : "", twice.path);
}
