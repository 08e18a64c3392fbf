/* twist: raising errors, for the code of libtwist, its backends and the twist tool.
 *
 * A failing function records a readable message for its thread with tw_error() and returns the
 * status; callers read both through twist/status.h (tw_last_error). TW_TRY passes a failure up
 * unchanged, keeping the message of the call that failed. */
#ifndef TWIST_ERROR_H
#define TWIST_ERROR_H

#include "twist/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Records an error message for this thread and returns `status`. printf-style. */
tw_status tw_error(tw_status status, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

/* A note for the person running twist, not an error: something the library ignored or worked
 * around (a stale tuning cache, a damaged cache file) that they may want to know. Written to
 * stderr as "twist: note: <message>", unless TWIST_QUIET is set to a non-empty value other
 * than "0". printf-style; thread-safe (one write per note). */
void tw_note(const char *format, ...) __attribute__((format(printf, 1, 2)));

/* Returns from the enclosing function with the status of `call` when it is not TW_OK. */
#define TW_TRY(call)                                        \
    do {                                                    \
        tw_status tw_try_status_ = (call);                  \
        if (tw_try_status_ != TW_OK) return tw_try_status_; \
    } while (0)

#ifdef __cplusplus
}
#endif

#endif
