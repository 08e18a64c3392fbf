/* `twist data tokenizer`, `encode`, `decode` and `synth`: preparing and inspecting data. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "cli.h"
#include "output.h"
#include "twist/data.h"
#include "twist/tokenizer.h"

enum { MAX_CORPORA = 64 };

/* Splits "a,b,c" into at most MAX_CORPORA paths (in place in `list`). */
static int split_paths(char *list, const char **paths) {
    int count = 0;
    for (char *save = NULL, *path = strtok_r(list, ",", &save); path && count < MAX_CORPORA;
         path = strtok_r(NULL, ",", &save))
        if (*path) paths[count++] = path;
    return count;
}

static int data_tokenizer(int argc, char **argv) {
    const char *data = NULL, *out = NULL, *json = NULL;
    int vocab = 4096;
    arg_spec specs[] = {
        {.name = "--data", .kind = ARG_STRING, .dest = &data, .metavar = "FILE[,FILE...]",
         .help = "corpora to train on", .required = true},
        {.name = "--vocab", .kind = ARG_INT, .dest = &vocab, .metavar = "N",
         .help = "vocabulary size, bytes and <|endoftext|> included (default 4096)", .min = 257,
         .max = 1 << 20},
        {.name = "--out", .kind = ARG_STRING, .dest = &out, .metavar = "FILE",
         .help = "tokenizer.json to write", .required = true},
        output_json_spec(&json, "a \"data\" record (JSON) on stdout instead of the text, or "
                                "appended to FILE"),
    };
    args_command command = {"twist data tokenizer",
                            "twist data tokenizer --data FILE[,FILE...] --vocab N --out FILE [--json[=FILE]]",
                            "Trains a byte-level BPE tokenizer (every byte encodable, so any text "
                            "round-trips exactly) and saves it as a Hugging Face tokenizer.json.",
                            specs, (int)(sizeof specs / sizeof specs[0])};
    args_result parsed = args_parse(&command, argc, argv);
    if (parsed != ARGS_OK) return parsed == ARGS_HELP ? CLI_EXIT_OK : CLI_EXIT_USAGE;
    char *list = strdup(data);
    const char *paths[MAX_CORPORA];
    int count = list ? split_paths(list, paths) : 0;
    if (count == 0) {
        free(list);
        return args_usage_error(command.name, "--data names no file");
    }
    output o;
    int code = output_open(&o, command.name, "data tokenizer", json);
    if (code != CLI_EXIT_OK) {
        free(list);
        return code;
    }
    tw_tokenizer *tok = NULL;
    double start = cli_now_ms();
    tw_status status = tw_tokenizer_train(paths, count, vocab, &tok);
    if (status == TW_OK) status = tw_tokenizer_save(tok, out);
    if (status == TW_OK) {
        const double seconds = (cli_now_ms() - start) / 1000.0;
        cJSON *record = output_new(&o, "data");
        tw_record_string(record, "path", out);
        tw_record_int(record, "vocab", tw_tokenizer_vocab_size(tok));
        tw_record_int(record, "merges", tw_tokenizer_merge_count(tok));
        tw_record_int(record, "corpus_files", count);
        tw_record_number(record, "elapsed_s", seconds);
        output_record(&o, record);
        output_line(&o, "%s: %d tokens (%d merges) trained on %d corpus file(s) in %.1f s", out,
                    tw_tokenizer_vocab_size(tok), tw_tokenizer_merge_count(tok), count, seconds);
    }
    tw_tokenizer_free(tok);
    free(list);
    code = status == TW_OK ? CLI_EXIT_OK : cli_library_error(command.name, status);
    return output_close(&o, code);
}

/* Reads all of `in_path` (standard input when NULL; a pipe or FIFO is fine: the user chose to
 * stream) into a malloc'd buffer. Returns false after printing "<prog>: ..." on failure. */
static bool read_input(const char *prog, const char *in_path, char **data, size_t *length) {
    FILE *in = in_path ? fopen(in_path, "rb") : stdin;
    *data = NULL;
    *length = 0;
    if (!in) {
        cli_runtime_error(prog, "%s: cannot open: %s", in_path, strerror(errno));
        return false;
    }
    size_t capacity = 0, used = 0;
    char *buffer = NULL;
    for (;;) {
        if (used == capacity) {
            capacity = capacity ? capacity * 2 : 1 << 16;
            char *grown = realloc(buffer, capacity + 1);
            if (!grown) {
                free(buffer);
                if (in != stdin) fclose(in);
                cli_runtime_error(prog, "out of memory reading %s", in_path ? in_path : "stdin");
                return false;
            }
            buffer = grown;
        }
        size_t got = fread(buffer + used, 1, capacity - used, in);
        used += got;
        if (got == 0) break;
    }
    bool failed = ferror(in);
    int error = errno;
    if (in != stdin) fclose(in);
    if (failed) {
        free(buffer);
        cli_runtime_error(prog, "%s: read failed: %s", in_path ? in_path : "stdin",
                          strerror(error));
        return false;
    }
    buffer[used] = '\0';
    *data = buffer;
    *length = used;
    return true;
}

/* Flushes standard output; a failed write (a full disk, /dev/full, a closed pipe) is an error,
 * not a silent loss. */
static int finish_output(const char *prog) {
    if (fflush(stdout) != 0 || ferror(stdout))
        return cli_runtime_error(prog, "writing the output failed: %s", strerror(errno));
    return CLI_EXIT_OK;
}

/* encode and decode: the tokenizer from --tokenizer and the whole input (--in, or stdin).
 * Returns a CLI exit code; on success the caller frees *tok and *text. */
static int open_codec(const char *prog, const char *tokenizer, const char *in_path,
                      tw_tokenizer **tok, char **text, size_t *length) {
    tw_status status = tw_tokenizer_load(tokenizer, tok);
    if (status != TW_OK) return cli_library_error(prog, status);
    if (!read_input(prog, in_path, text, length)) {
        tw_tokenizer_free(*tok);
        *tok = NULL;
        return CLI_EXIT_RUNTIME;
    }
    return CLI_EXIT_OK;
}

static int data_encode(int argc, char **argv) {
    const char *tokenizer = NULL, *in_path = NULL;
    arg_spec specs[] = {
        {.name = "--tokenizer", .kind = ARG_STRING, .dest = &tokenizer, .metavar = "FILE",
         .help = "tokenizer.json (twist's or a Hugging Face byte-level BPE one)",
         .required = true},
        {.name = "--in", .kind = ARG_STRING, .dest = &in_path, .metavar = "FILE",
         .help = "text to encode (default: standard input)"},
    };
    args_command command = {"twist data encode", "twist data encode --tokenizer FILE [--in FILE]",
                            "Encodes text (any bytes) and prints its token ids, one per line.",
                            specs, (int)(sizeof specs / sizeof specs[0])};
    args_result parsed = args_parse(&command, argc, argv);
    if (parsed != ARGS_OK) return parsed == ARGS_HELP ? CLI_EXIT_OK : CLI_EXIT_USAGE;
    tw_tokenizer *tok = NULL;
    char *text = NULL;
    size_t length = 0;
    int code = open_codec(command.name, tokenizer, in_path, &tok, &text, &length);
    if (code != CLI_EXIT_OK) return code;
    int32_t *ids = NULL;
    size_t count = 0;
    tw_status status = tw_tokenizer_encode(tok, text, length, &ids, &count);
    free(text);
    tw_tokenizer_free(tok);
    if (status != TW_OK) return cli_library_error(command.name, status);
    for (size_t i = 0; i < count; i++) printf("%d\n", ids[i]);
    free(ids);
    return finish_output(command.name);
}

static int data_decode(int argc, char **argv) {
    const char *tokenizer = NULL, *in_path = NULL;
    arg_spec specs[] = {
        {.name = "--tokenizer", .kind = ARG_STRING, .dest = &tokenizer, .metavar = "FILE",
         .help = "tokenizer.json (twist's or a Hugging Face byte-level BPE one)",
         .required = true},
        {.name = "--in", .kind = ARG_STRING, .dest = &in_path, .metavar = "FILE",
         .help = "token ids, one per line or separated by white space (default: standard "
                 "input)"},
    };
    args_command command = {"twist data decode", "twist data decode --tokenizer FILE [--in FILE]",
                            "Reads token ids and writes the bytes they stand for (the inverse of "
                            "twist data encode).",
                            specs, (int)(sizeof specs / sizeof specs[0])};
    args_result parsed = args_parse(&command, argc, argv);
    if (parsed != ARGS_OK) return parsed == ARGS_HELP ? CLI_EXIT_OK : CLI_EXIT_USAGE;
    tw_tokenizer *tok = NULL;
    char *text = NULL;
    size_t length = 0;
    int code = open_codec(command.name, tokenizer, in_path, &tok, &text, &length);
    if (code != CLI_EXIT_OK) return code;
    const char *source = in_path ? in_path : "stdin";
    int vocab = tw_tokenizer_vocab_size(tok);
    /* Every id takes at least two bytes of input (a digit and a separator) but the last. */
    int32_t *ids = malloc((length / 2 + 1) * sizeof *ids);
    size_t count = 0, line = 1;
    int rc = ids ? CLI_EXIT_OK : cli_runtime_error(command.name, "out of memory");
    for (size_t at = 0; rc == CLI_EXIT_OK && at < length;) {
        char c = text[at];
        if (c == '\n') line++;
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f') {
            at++;
            continue;
        }
        size_t end = at;
        while (end < length && !strchr(" \t\n\r\v\f", text[end]) && text[end] != '\0') end++;
        if (end == at) end++; /* a NUL byte: reported as a bad word below */
        int word = (int)(end - at < 40 ? end - at : 40);
        long long value = 0;
        bool digits = true;
        for (size_t i = at; i < end; i++) {
            if (text[i] < '0' || text[i] > '9') digits = false;
            else if (value <= INT32_MAX) value = value * 10 + (text[i] - '0');
        }
        if (!digits)
            rc = cli_runtime_error(command.name, "%s: line %zu: '%.*s' is not a token id (a "
                                   "whole number 0..%d)", source, line, word, text + at,
                                   vocab - 1);
        else if (value >= vocab)
            rc = cli_runtime_error(command.name, "%s: line %zu: id %.*s is outside the vocabulary "
                                   "of %s (0..%d)", source, line, word, text + at, tokenizer,
                                   vocab - 1);
        else
            ids[count++] = (int32_t)value;
        at = end;
    }
    free(text);
    char *bytes = NULL;
    size_t bytes_length = 0;
    if (rc == CLI_EXIT_OK) {
        tw_status status = tw_tokenizer_decode(tok, ids, count, &bytes, &bytes_length);
        if (status != TW_OK) rc = cli_library_error(command.name, status);
    }
    free(ids);
    tw_tokenizer_free(tok);
    if (rc != CLI_EXIT_OK) return rc;
    fwrite(bytes, 1, bytes_length, stdout);
    free(bytes);
    return finish_output(command.name);
}

static int data_synth(int argc, char **argv) {
    const char *out = NULL, *json = NULL;
    int level = 0, words = 1000000, seed = 1;
    arg_spec specs[] = {
        {.name = "--level", .kind = ARG_INT, .dest = &level, .metavar = "0|1",
         .help = "0: preschool vocabulary, short sentences; 1: first grade, clauses, dialogue",
         .required = true, .min = 0, .max = TW_SYNTH_LEVELS - 1},
        {.name = "--out", .kind = ARG_STRING, .dest = &out, .metavar = "FILE",
         .help = "text file to write", .required = true},
        {.name = "--words", .kind = ARG_INT, .dest = &words, .metavar = "N",
         .help = "about N words (default 1000000)", .min = 1, .max = 1 << 30},
        {.name = "--seed", .kind = ARG_INT, .dest = &seed, .metavar = "S",
         .help = "generator seed (default 1)", .min = 0, .max = 2147483647},
        output_json_spec(&json, "a \"data\" record (JSON) on stdout instead of the text, or "
                                "appended to FILE"),
    };
    args_command command = {"twist data synth",
                            "twist data synth --level 0|1 --out FILE [--words N] [--seed S] [--json[=FILE]]",
                            "Writes graded synthetic English: stories of one character and place, "
                            "separated by blank lines. The default corpus of twist train.",
                            specs, (int)(sizeof specs / sizeof specs[0])};
    args_result parsed = args_parse(&command, argc, argv);
    if (parsed != ARGS_OK) return parsed == ARGS_HELP ? CLI_EXIT_OK : CLI_EXIT_USAGE;
    output o;
    int code = output_open(&o, command.name, "data synth", json);
    if (code != CLI_EXIT_OK) return code;
    tw_status status = tw_synth_write(level, (uint64_t)seed, (size_t)words, out);
    if (status == TW_OK) {
        cJSON *record = output_new(&o, "data");
        tw_record_string(record, "path", out);
        tw_record_int(record, "level", level);
        tw_record_int(record, "words", words);
        tw_record_int(record, "seed", seed);
        output_record(&o, record);
        output_line(&o, "%s: about %d words of level-%d English", out, words, level);
    }
    code = status == TW_OK ? CLI_EXIT_OK : cli_library_error(command.name, status);
    return output_close(&o, code);
}

static void print_data_usage(FILE *out) {
    fprintf(out, "usage: twist data <tokenizer|encode|decode|synth> [options]\n\n"
                 "  tokenizer  train a byte-level BPE tokenizer (Hugging Face tokenizer.json)\n"
                 "  encode     print the token ids of a text, one per line\n"
                 "  decode     write the text of token ids\n"
                 "  synth      write graded synthetic English (levels 0 and 1)\n\n"
                 "Run 'twist data <subcommand> --help' for its options.\n");
}

int cmd_data(int argc, char **argv) {
    if (argc < 1) {
        print_data_usage(stderr);
        return CLI_EXIT_USAGE;
    }
    if (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0) {
        print_data_usage(stdout);
        return CLI_EXIT_OK;
    }
    if (strcmp(argv[0], "tokenizer") == 0) return data_tokenizer(argc - 1, argv + 1);
    if (strcmp(argv[0], "encode") == 0) return data_encode(argc - 1, argv + 1);
    if (strcmp(argv[0], "decode") == 0) return data_decode(argc - 1, argv + 1);
    if (strcmp(argv[0], "synth") == 0) return data_synth(argc - 1, argv + 1);
    fprintf(stderr, "twist data: unknown subcommand '%s'; available: tokenizer, encode, decode, "
                    "synth\n", argv[0]);
    return CLI_EXIT_USAGE;
}
