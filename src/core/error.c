/* Per-thread error messages behind tw_status. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "twist/error.h"

static _Thread_local char last_error[1024];

const char *tw_status_name(tw_status status) {
    switch (status) {
    case TW_OK: return "ok";
    case TW_ERR_INVALID_ARGUMENT: return "invalid argument";
    case TW_ERR_OUT_OF_MEMORY: return "out of memory";
    case TW_ERR_NOT_FOUND: return "not found";
    case TW_ERR_UNSUPPORTED: return "unsupported";
    case TW_ERR_BACKEND: return "backend error";
    case TW_ERR_IO: return "i/o error";
    case TW_ERR_FORMAT: return "bad format";
    }
    return "unknown status";
}

const char *tw_last_error(void) { return last_error; }

void tw_clear_error(void) { last_error[0] = '\0'; }

/* Out of memory under an address-space limit (ulimit -v) is the limit's doing, not the machine's:
 * appends " (the address-space limit, ulimit -v N, leaves F of L MiB)" unless the message
 * already speaks of it. */
static void add_address_limit(char *message, size_t size) {
    struct rlimit limit;
    if (getrlimit(RLIMIT_AS, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY ||
        strstr(message, "ulimit -v"))
        return;
    unsigned long pages = 0;
    FILE *statm = fopen("/proc/self/statm", "r");
    if (statm) {
        if (fscanf(statm, "%lu", &pages) != 1) pages = 0;
        fclose(statm);
    }
    double used = (double)pages * (double)sysconf(_SC_PAGE_SIZE), cap = (double)limit.rlim_cur;
    size_t length = strlen(message);
    if (pages == 0) /* /proc unreadable, or no memory left even for fopen */
        snprintf(message + length, size - length, " (under an address-space limit, ulimit -v %llu)",
                 (unsigned long long)limit.rlim_cur / 1024);
    else
        snprintf(message + length, size - length,
                 " (the address-space limit, ulimit -v %llu, leaves %.0f of %.0f MiB)",
                 (unsigned long long)limit.rlim_cur / 1024,
                 used < cap ? (cap - used) / 1048576 : 0.0, cap / 1048576);
}

tw_status tw_error(tw_status status, const char *format, ...) {
    /* Formatted aside, then copied: a caller may wrap the previous message, passing
     * tw_last_error() itself as an argument ("%s: %s", source, tw_last_error()), and vsnprintf
     * into the buffer it is reading from garbled exactly those messages. */
    char message[sizeof last_error];
    va_list args;
    va_start(args, format);
    vsnprintf(message, sizeof message, format, args);
    va_end(args);
    if (status == TW_ERR_OUT_OF_MEMORY) add_address_limit(message, sizeof message);
    memcpy(last_error, message, sizeof message);
    return status;
}

void tw_note(const char *format, ...) {
    const char *quiet = getenv("TWIST_QUIET");
    if (quiet && *quiet && strcmp(quiet, "0") != 0) return;
    char message[1200];
    int length = snprintf(message, sizeof message, "twist: note: ");
    va_list args;
    va_start(args, format);
    vsnprintf(message + length, sizeof message - (size_t)length - 1, format, args);
    va_end(args);
    size_t end = strlen(message);
    message[end] = '\n';
    /* One write, so notes from several threads do not interleave. */
    ssize_t written = write(STDERR_FILENO, message, end + 1);
    (void)written;
}
