/* `twist data tokenizer` and `twist data synth`: preparing data. */
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
    fprintf(out, "usage: twist data <tokenizer|synth> [options]\n\n"
                 "  tokenizer  train a byte-level BPE tokenizer (Hugging Face tokenizer.json)\n"
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
    if (strcmp(argv[0], "synth") == 0) return data_synth(argc - 1, argv + 1);
    fprintf(stderr, "twist data: unknown subcommand '%s'; available: tokenizer, synth\n", argv[0]);
    return CLI_EXIT_USAGE;
}
