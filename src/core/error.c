/* Per-thread error messages behind tw_status. */
#include <stdarg.h>
#include <stdio.h>

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

tw_status tw_error(tw_status status, const char *format, ...) {
    va_list args;
    va_start(args, format);
    vsnprintf(last_error, sizeof last_error, format, args);
    va_end(args);
    return status;
}
