/* What tw_device_tune reports (twist/backend.h: tw_tune_request.choice): while a tune call runs,
 * the tuning cache (tune_cache.c) notes in this thread every choice a backend stores, reads, or
 * finds in a cache file it opens, so the front end can list the device's choices without asking
 * each backend for them. */
#ifndef TWIST_CORE_TUNE_OBSERVE_H
#define TWIST_CORE_TUNE_OBSERVE_H

#include <stdbool.h>

enum { TW_TUNE_SEEN_WORD = 96, TW_TUNE_SEEN_MAX = 512 };

typedef struct tw_tune_seen {
    char key[TW_TUNE_SEEN_WORD];     /* "<op> <class>" */
    char variant[TW_TUNE_SEEN_WORD];
    bool measured;                   /* stored by a put during the call */
} tw_tune_seen;

typedef struct tw_tune_observer {
    tw_tune_seen *seen; /* TW_TUNE_SEEN_MAX entries, in the order first met */
    int count;
} tw_tune_observer;

/* Starts noting choices into observer (seen allocated by the caller) in this thread; end stops.
 * Calls do not nest: begin replaces any observer of the thread. */
void tw_tune_observe_begin(tw_tune_observer *observer);
void tw_tune_observe_end(void);

#endif
