/* The monotonic clock behind twist/clock.h. */
#include <time.h>

#include "twist/clock.h"

double tw_now_seconds(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
}
