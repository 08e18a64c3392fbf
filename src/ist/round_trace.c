/* IST worker tracks of the profiler's trace (see round_trace.h). The threads and MPI transports
 * time a round only as whole phases on the master (every worker is sent its subnet in the send
 * phase, trains in the local-training phase, is received in the receive phase), plus each
 * worker's own training time; so a worker's track shows, per round: send (the phase), compute
 * (its train_s from the start of local training), idle (the rest of that phase: waiting for the
 * slowest), receive and merge (the phases). */
#include <stdio.h>

#include "ist/round_trace.h"
#include "twist/profile.h"

void dist_trace_round(int round, int workers, const char *const *devices, const dist_job *jobs,
                      const dist_result *results, double end, double extract_s, double send_s,
                      double train_s, double receive_s, double merge_s) {
    if (!tw_profile_active()) return;
    const double merge = end - merge_s, receive = merge - receive_s, train = receive - train_s,
                 send = train - send_s, extract = send - extract_s;
    /* A failed span (out of memory) only loses that span; the run goes on. */
    tw_profile_span("master", "extract", extract, send, round + 1);
    tw_profile_span("master", "merge", merge, end, round + 1);
    for (int w = 0; w < workers; w++) {
        if (!jobs[w].active) continue;
        char track[96];
        snprintf(track, sizeof track, "worker %d (%s)", w, devices[w]);
        double compute = results[w].train_s;
        if (!(compute >= 0) || compute > train_s) compute = train_s; /* a failed worker */
        tw_profile_span(track, "send", send, train, round + 1);
        tw_profile_span(track, "compute", train, train + compute, round + 1);
        if (compute < train_s) tw_profile_span(track, "idle", train + compute, receive, round + 1);
        tw_profile_span(track, "receive", receive, merge, round + 1);
        tw_profile_span(track, "merge", merge, end, round + 1);
    }
}

void dist_trace_master(int round, const char *name, double start, double end) {
    if (tw_profile_active()) tw_profile_span("master", name, start, end, round + 1);
}
