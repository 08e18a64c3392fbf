/* twist: the per-op profiler.
 *
 * While a profiling session is open (tw_profile_start), every device opened from then on records
 * each op that passes through the op front end (src/core/ops.c): its name by layer and role
 * ("block3.attn.qkv_gemm"), the device time between two tw_event timestamps around it (CUDA
 * events, OpenCL profiling markers, Vulkan timestamp queries, the CPU clock), the host time spent
 * in the call, its FLOPs and bytes (computed from its arguments), and the device's current and
 * peak memory. Events are resolved in batches (at tw_device_sync, when a batch fills, and at
 * device close), never one read per op. With no session open an op pays one predictable branch.
 *
 * tw_profile_write_trace() writes a Chrome trace JSON (opens in Perfetto and chrome://tracing):
 * one process per device spec, one thread per opened device (an IST worker opens its own), one
 * "X" event per op with the numbers above in its args. */
#ifndef TWIST_PROFILE_H
#define TWIST_PROFILE_H

#include <stdbool.h>
#include <stddef.h>

#include "twist/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Names the ops this thread issues next: "block<layer>.<part>.<role>", or "<part>.<role>" when
 * layer < 0, or "<part>" when role is NULL; with part NULL an op is named by its op name.
 * part and role must be string literals (or otherwise outlive the session): only the pointers
 * are kept. Costs three stores whether or not a session is open. */
void tw_profile_where(int layer, const char *part, const char *role);
/* Back to naming ops by their op name. */
void tw_profile_clear(void);

/* The name the profiler gives an op called `op` ("gemm") issued now on this thread, e.g.
 * "block3.attn.qkv_gemm", into out (truncated to capacity); backends use it to name their own
 * trace ranges (the CUDA backend's NVTX ranges). Returns out. */
char *tw_profile_name(const char *op, char *out, size_t capacity);

/* Opens the process's profiling session (discarding any earlier one's data). Devices opened
 * afterwards are profiled until tw_profile_stop(). TW_ERR_INVALID_ARGUMENT if one is open. */
tw_status tw_profile_start(void);
bool tw_profile_active(void);

/* Ends the session: devices still open stop recording (their pending events are resolved, so
 * they must be idle: no other thread issuing ops). The data stays for the functions below until
 * the next tw_profile_start() or tw_profile_release(). */
tw_status tw_profile_stop(void);
void tw_profile_release(void);

/* Totals over every op recorded by the current or last session. During a session, sync the
 * devices first (tw_device_sync resolves their timers) and call it from the thread that issues
 * their ops: ops whose device times are not read yet count only in `unresolved`. */
typedef struct tw_profile_totals {
    long long calls;
    long long unresolved;  /* calls without a device time (not yet read, or a timer failed) */
    double device_seconds; /* summed device time of the ops */
    double host_seconds;   /* summed host time inside the op calls */
    double flops, bytes;
} tw_profile_totals;
tw_status tw_profile_totals_get(tw_profile_totals *out);

/* Records a span of host time [start, end] (tw_now_seconds() values) on the track named `track`
 * of the open session, e.g. IST worker 2's "compute" of round 3 (round counted from 1, or -1);
 * the trace shows these tracks, one thread each, under one process "IST workers", besides the
 * device tracks. Does nothing (TW_OK) without an open session. */
tw_status tw_profile_span(const char *track, const char *name, double start, double end,
                          int round);

/* Writes the last stopped session as a Chrome trace JSON to path (atomically: a temporary file
 * renamed into place, so a failure leaves no partial file). */
tw_status tw_profile_write_trace(const char *path);

#ifdef __cplusplus
}
#endif

#endif
