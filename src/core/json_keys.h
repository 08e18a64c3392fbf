/* Duplicate keys in parsed JSON (json_keys.c says why twist refuses them). Used by every reader
 * of a JSON file: config.json, state.json, checksums.json, tokenizer.json and safetensors
 * headers. */
#ifndef TWIST_CORE_JSON_KEYS_H
#define TWIST_CORE_JSON_KEYS_H

#include "twist/error.h"

/* The first key given twice in any object of a parsed JSON text, depth first: `key` (NULL when
 * there is none), `top` the root member it lies under (NULL for the root object itself) and
 * `path` the JSON path of the object holding it ("" for the root, "twist.layers[0]"). The
 * strings point into the cJSON tree. */
typedef struct cJSON cJSON;
typedef struct tw_json_duplicate {
    const char *key, *top;
    char path[256];
} tw_json_duplicate;
tw_status tw_json_find_duplicate(const cJSON *root, tw_json_duplicate *out);

/* TW_ERR_FORMAT "SOURCE: key 'K' appears twice[ in PATH]" when root has a duplicate key;
 * TW_OK otherwise. */
tw_status tw_json_refuse_duplicate(const cJSON *root, const char *source);

#endif
