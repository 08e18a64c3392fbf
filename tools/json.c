/* JSON writer (see json.h). Strings are escaped per RFC 8259: quote, backslash and every control
 * character below 0x20; bytes >= 0x80 pass through (device names from drivers are UTF-8). */
#include "json.h"

#include <math.h>

void json_init(json_writer *writer, FILE *out) {
    writer->out = out;
    writer->depth = 0;
    writer->need_comma[0] = false;
    writer->after_key = false;
}

/* Separator before a value: a comma between array/object members, nothing after a key. */
static void before_value(json_writer *writer) {
    if (writer->after_key) {
        writer->after_key = false;
        return;
    }
    if (writer->need_comma[writer->depth]) fputc(',', writer->out);
    writer->need_comma[writer->depth] = true;
}

static void open_scope(json_writer *writer, char bracket) {
    before_value(writer);
    fputc(bracket, writer->out);
    if (writer->depth + 1 < JSON_MAX_DEPTH) writer->depth++;
    writer->need_comma[writer->depth] = false;
}

static void close_scope(json_writer *writer, char bracket) {
    if (writer->depth > 0) writer->depth--;
    fputc(bracket, writer->out);
}

void json_begin_object(json_writer *writer) { open_scope(writer, '{'); }
void json_end_object(json_writer *writer) { close_scope(writer, '}'); }
void json_begin_array(json_writer *writer) { open_scope(writer, '['); }
void json_end_array(json_writer *writer) { close_scope(writer, ']'); }

static void write_escaped(FILE *out, const char *text) {
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)(text ? text : ""); *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", out); break;
        case '\\': fputs("\\\\", out); break;
        case '\n': fputs("\\n", out); break;
        case '\r': fputs("\\r", out); break;
        case '\t': fputs("\\t", out); break;
        case '\b': fputs("\\b", out); break;
        case '\f': fputs("\\f", out); break;
        default:
            if (*p < 0x20)
                fprintf(out, "\\u%04x", *p);
            else
                fputc(*p, out);
        }
    }
    fputc('"', out);
}

void json_key(json_writer *writer, const char *key) {
    before_value(writer);
    write_escaped(writer->out, key);
    fputc(':', writer->out);
    writer->after_key = true;
}

void json_string(json_writer *writer, const char *value) {
    before_value(writer);
    write_escaped(writer->out, value);
}

void json_number(json_writer *writer, double value) {
    before_value(writer);
    if (isfinite(value))
        fprintf(writer->out, "%.17g", value);
    else
        fputs("null", writer->out);
}

void json_uint(json_writer *writer, uint64_t value) {
    before_value(writer);
    fprintf(writer->out, "%llu", (unsigned long long)value);
}

void json_int(json_writer *writer, long long value) {
    before_value(writer);
    fprintf(writer->out, "%lld", value);
}

void json_bool(json_writer *writer, bool value) {
    before_value(writer);
    fputs(value ? "true" : "false", writer->out);
}

void json_null(json_writer *writer) {
    before_value(writer);
    fputs("null", writer->out);
}

void json_finish(json_writer *writer) { fputc('\n', writer->out); }

void json_kv_string(json_writer *writer, const char *key, const char *value) {
    json_key(writer, key);
    json_string(writer, value);
}
void json_kv_number(json_writer *writer, const char *key, double value) {
    json_key(writer, key);
    json_number(writer, value);
}
void json_kv_uint(json_writer *writer, const char *key, uint64_t value) {
    json_key(writer, key);
    json_uint(writer, value);
}
void json_kv_int(json_writer *writer, const char *key, long long value) {
    json_key(writer, key);
    json_int(writer, value);
}
void json_kv_bool(json_writer *writer, const char *key, bool value) {
    json_key(writer, key);
    json_bool(writer, value);
}
