/* Strict command-line parsing shared by every `twist` command.
 *
 * A command describes its options in a table of arg_spec; args_parse() fills the destinations
 * and rejects, with one message naming the flag, anything it cannot take: an unknown flag, a
 * flag given twice, a missing value, a value that is not a whole number, is out of range, or is
 * not one of the allowed choices, a missing required flag, a stray positional argument. Both
 * "--m 64" and "--m=64" are accepted. */
#ifndef TWIST_TOOLS_ARGS_H
#define TWIST_TOOLS_ARGS_H

#include <stdbool.h>
#include <stdio.h>

typedef enum arg_kind {
    ARG_FLAG,   /* no value; dest is bool* */
    ARG_INT,    /* integer in [min, max]; dest is int* */
    ARG_FLOAT,  /* number in [min_real, max_real]; dest is double* */
    ARG_STRING, /* any non-empty string; dest is const char** */
    ARG_CHOICE, /* one of `choices`; dest is int* (the index of the choice) */
    ARG_OPTIONAL_STRING, /* "--json" alone stores `implicit`; "--json=FILE" or "--json FILE"
                          * stores FILE; dest is const char** (untouched when not given) */
    ARG_STRING_LIST /* a non-empty string, and the flag may be repeated; dest is an
                     * arg_string_list* that collects the values in order */
} arg_kind;

enum { ARG_LIST_MAX = 16 };

typedef struct arg_string_list {
    const char *values[ARG_LIST_MAX];
    int count;
} arg_string_list;

typedef struct arg_spec {
    const char *name;    /* "--m" */
    arg_kind kind;
    void *dest;
    const char *metavar; /* "M" in the usage line */
    const char *help;
    bool required;
    long long min, max;          /* ARG_INT */
    double min_real, max_real;   /* ARG_FLOAT */
    const char *const *choices;  /* ARG_CHOICE: NULL-terminated */
    const char *implicit;        /* ARG_OPTIONAL_STRING: the value when none is given */
    bool seen;                   /* set by args_parse */
} arg_spec;

typedef enum args_result {
    ARGS_OK = 0,
    ARGS_HELP,  /* --help was given: usage printed to stdout */
    ARGS_ERROR  /* message printed to stderr */
} args_result;

typedef struct args_command {
    const char *name;     /* "twist bench gemm": prefixes every message */
    const char *synopsis; /* one line under "usage:" */
    const char *summary;  /* what the command does */
    arg_spec *specs;
    int count;
} args_command;

/* Parses argv[0..argc) (the command's own arguments, command words removed). */
args_result args_parse(const args_command *command, int argc, char **argv);

/* Whether the option `name` ("--steps") was given in the last args_parse of the command. */
bool args_given(const args_command *command, const char *name);

/* Full help: synopsis, summary, one line per option. */
void args_print_usage(const args_command *command, FILE *out);

/* Prints "<prog>: <message>\n" to stderr (plus a hint to run --help) and returns exit code 2. */
int args_usage_error(const char *prog, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

#endif
