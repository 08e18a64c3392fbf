/* A small JSON writer for `--json` output: hand-written escaping, no dependency. Keys and
 * values are written in order; commas and nesting are tracked here so callers cannot produce
 * malformed output. Non-finite numbers are written as null (JSON has no NaN). */
#ifndef TWIST_TOOLS_JSON_H
#define TWIST_TOOLS_JSON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

enum { JSON_MAX_DEPTH = 16 };

typedef struct json_writer {
    FILE *out;
    int depth;
    bool need_comma[JSON_MAX_DEPTH];
    bool after_key;
} json_writer;

void json_init(json_writer *writer, FILE *out);
void json_begin_object(json_writer *writer);
void json_end_object(json_writer *writer);
void json_begin_array(json_writer *writer);
void json_end_array(json_writer *writer);
void json_key(json_writer *writer, const char *key);
void json_string(json_writer *writer, const char *value);
void json_number(json_writer *writer, double value);
void json_uint(json_writer *writer, uint64_t value);
void json_int(json_writer *writer, long long value);
void json_bool(json_writer *writer, bool value);
void json_null(json_writer *writer);
/* Ends the document with a newline. */
void json_finish(json_writer *writer);

/* Shorthands for "key": value inside an object. */
void json_kv_string(json_writer *writer, const char *key, const char *value);
void json_kv_number(json_writer *writer, const char *key, double value);
void json_kv_uint(json_writer *writer, const char *key, uint64_t value);
void json_kv_int(json_writer *writer, const char *key, long long value);
void json_kv_bool(json_writer *writer, const char *key, bool value);

#endif
