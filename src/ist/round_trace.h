/* IST worker tracks in a --profile trace (tw_profile_span): per round and worker, the spans of
 * sending its subnet, local training (compute), waiting for the slowest worker (idle),
 * receiving and merging; the master's extract, merge and evaluation on a track of its own. */
#ifndef TWIST_IST_ROUND_TRACE_H
#define TWIST_IST_ROUND_TRACE_H

#include "ist/dist_internal.h"

/* The phases of round `round` (from 0) ended at `end` (tw_now_seconds()) and ran back to back
 * for the given seconds: partition + extract, send, local training, receive, merge. Records
 * nothing without a profiling session. */
void dist_trace_round(int round, int workers, const char *const *devices, const dist_job *jobs,
                      const dist_result *results, double end, double extract_s, double send_s,
                      double train_s, double receive_s, double merge_s);

/* A span of the master's track ("eval"). */
void dist_trace_master(int round, const char *name, double start, double end);

#endif
