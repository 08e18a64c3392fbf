/* Strict argument parsing: see args.h. Every error names the flag and the offending value. */
#include "args.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int args_usage_error(const char *prog, const char *format, ...) {
    va_list list;
    va_start(list, format);
    fprintf(stderr, "%s: ", prog);
    vfprintf(stderr, format, list);
    fprintf(stderr, "\n(run '%s --help' for usage)\n", prog);
    va_end(list);
    return CLI_EXIT_USAGE;
}

static arg_spec *find_spec(const args_command *command, const char *name, size_t length) {
    for (int i = 0; i < command->count; i++) {
        const char *candidate = command->specs[i].name;
        if (strlen(candidate) == length && strncmp(candidate, name, length) == 0)
            return &command->specs[i];
    }
    return NULL;
}

/* A whole decimal number in [min, max]; no sign games, no trailing characters. */
static bool parse_int(const args_command *command, const arg_spec *spec, const char *text) {
    char *end = NULL;
    errno = 0;
    long long value = strtoll(text, &end, 10);
    /* strtoll would also skip leading blanks; a value must start with a sign or a digit. */
    bool starts_well = (*text >= '0' && *text <= '9') || *text == '-' || *text == '+';
    bool numeric = starts_well && *end == '\0' && end != text;
    if (!numeric) {
        args_usage_error(command->name, "%s expects a whole number, got '%s'", spec->name, text);
        return false;
    }
    if (errno == ERANGE || value < spec->min || value > spec->max) {
        args_usage_error(command->name, "%s must be between %lld and %lld, got %s", spec->name,
                         spec->min, spec->max, text);
        return false;
    }
    *(int *)spec->dest = (int)value;
    return true;
}

static bool parse_float(const args_command *command, const arg_spec *spec, const char *text) {
    char *end = NULL;
    errno = 0;
    double value = strtod(text, &end);
    bool starts_well = (*text >= '0' && *text <= '9') || *text == '-' || *text == '+' ||
                       *text == '.';
    if (!starts_well || *end != '\0' || end == text || errno == ERANGE || value != value) {
        args_usage_error(command->name, "%s expects a number, got '%s'", spec->name, text);
        return false;
    }
    if (value < spec->min_real || value > spec->max_real) {
        args_usage_error(command->name, "%s must be between %g and %g, got %s", spec->name,
                         spec->min_real, spec->max_real, text);
        return false;
    }
    *(double *)spec->dest = value;
    return true;
}

static bool parse_choice(const args_command *command, const arg_spec *spec, const char *text) {
    for (int i = 0; spec->choices[i]; i++) {
        if (strcmp(spec->choices[i], text) == 0) {
            *(int *)spec->dest = i;
            return true;
        }
    }
    char allowed[256] = "";
    for (int i = 0; spec->choices[i]; i++) {
        if (i) strncat(allowed, ", ", sizeof allowed - strlen(allowed) - 1);
        strncat(allowed, spec->choices[i], sizeof allowed - strlen(allowed) - 1);
    }
    args_usage_error(command->name, "%s must be one of %s, got '%s'", spec->name, allowed, text);
    return false;
}

static bool store_value(const args_command *command, const arg_spec *spec, const char *text) {
    switch (spec->kind) {
    case ARG_INT: return parse_int(command, spec, text);
    case ARG_FLOAT: return parse_float(command, spec, text);
    case ARG_CHOICE: return parse_choice(command, spec, text);
    case ARG_STRING:
    case ARG_OPTIONAL_STRING:
        if (*text == '\0') {
            args_usage_error(command->name, "%s needs a non-empty value", spec->name);
            return false;
        }
        *(const char **)spec->dest = text;
        return true;
    case ARG_STRING_LIST: {
        arg_string_list *list = spec->dest;
        if (*text == '\0') {
            args_usage_error(command->name, "%s needs a non-empty value", spec->name);
            return false;
        }
        if (list->count == ARG_LIST_MAX) {
            args_usage_error(command->name, "%s given more than %d times", spec->name,
                             ARG_LIST_MAX);
            return false;
        }
        list->values[list->count++] = text;
        return true;
    }
    case ARG_FLAG: break;
    }
    return false;
}

/* One option at argv[*index]; advances *index past its value. */
static bool parse_option(const args_command *command, int argc, char **argv, int *index) {
    const char *word = argv[*index];
    const char *equals = strchr(word, '=');
    size_t length = equals ? (size_t)(equals - word) : strlen(word);
    arg_spec *spec = find_spec(command, word, length);
    if (!spec) {
        args_usage_error(command->name, "unknown option '%.*s'", (int)length, word);
        return false;
    }
    if (spec->seen && spec->kind != ARG_STRING_LIST) {
        args_usage_error(command->name, "%s given more than once", spec->name);
        return false;
    }
    spec->seen = true;
    if (spec->kind == ARG_FLAG) {
        if (equals) {
            args_usage_error(command->name, "%s takes no value", spec->name);
            return false;
        }
        *(bool *)spec->dest = true;
        return true;
    }
    const char *value = NULL;
    if (equals) {
        value = equals + 1;
    } else if (spec->kind == ARG_OPTIONAL_STRING &&
               (*index + 1 >= argc || strncmp(argv[*index + 1], "--", 2) == 0)) {
        /* no value: the implicit one (no command takes positional arguments, so a following
         * word that is not a flag can only be this option's value) */
        *(const char **)spec->dest = spec->implicit;
        return true;
    } else if (*index + 1 < argc && strncmp(argv[*index + 1], "--", 2) != 0) {
        /* A following "--flag" is never taken as a value, so "--m --n 4" says --m lacks one;
         * "-3" is still read as a value (and then rejected by the range check). */
        value = argv[++*index];
    } else {
        args_usage_error(command->name, "%s needs a value (%s)", spec->name,
                         spec->metavar ? spec->metavar : "VALUE");
        return false;
    }
    return store_value(command, spec, value);
}

args_result args_parse(const args_command *command, int argc, char **argv) {
    for (int i = 0; i < command->count; i++) command->specs[i].seen = false;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            args_print_usage(command, stdout);
            return ARGS_HELP;
        }
    }
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "--", 2) != 0) {
            args_usage_error(command->name, "unexpected argument '%s'", argv[i]);
            return ARGS_ERROR;
        }
        if (!parse_option(command, argc, argv, &i)) return ARGS_ERROR;
    }
    for (int i = 0; i < command->count; i++) {
        const arg_spec *spec = &command->specs[i];
        if (spec->required && !spec->seen) {
            args_usage_error(command->name, "missing required option %s %s", spec->name,
                             spec->metavar ? spec->metavar : "");
            return ARGS_ERROR;
        }
    }
    return ARGS_OK;
}

void args_print_usage(const args_command *command, FILE *out) {
    fprintf(out, "usage: %s\n\n%s\n\noptions:\n", command->synopsis, command->summary);
    for (int i = 0; i < command->count; i++) {
        const arg_spec *spec = &command->specs[i];
        char left[64];
        if (spec->kind == ARG_FLAG)
            snprintf(left, sizeof left, "%s", spec->name);
        else if (spec->kind == ARG_OPTIONAL_STRING)
            snprintf(left, sizeof left, "%s[=%s]", spec->name, spec->metavar ? spec->metavar : "VALUE");
        else
            snprintf(left, sizeof left, "%s %s", spec->name, spec->metavar ? spec->metavar : "VALUE");
        fprintf(out, "  %-22s %s%s\n", left, spec->help, spec->required ? " (required)" : "");
    }
    fprintf(out, "  %-22s %s\n", "--help", "show this help");
}

bool args_given(const args_command *command, const char *name) {
    for (int i = 0; i < command->count; i++)
        if (strcmp(command->specs[i].name, name) == 0) return command->specs[i].seen;
    return false;
}
