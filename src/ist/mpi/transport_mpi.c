/* The MPI transport: one rank per worker, rank w is worker w and drives its own device; rank 0
 * also holds the master and runs the round loop of rounds.c. Per round, every rank takes part
 * in the same collectives in the same order:
 *
 *   send     MPI_Scatter of the jobs, MPI_Scatterv of the packed subnets (inactive ranks: 0)
 *   train    MPI_Comm_split of the round's active ranks (data parallel averages over it: a
 *            gather to its first rank, the mean in rank order in double, a broadcast), then
 *            MPI_Gather of the results
 *   receive  MPI_Gatherv of the packed subnets (failed or inactive ranks: 0)
 *
 * A job with command DIST_QUIT ends the other ranks' loop. Built only when CMake finds MPI.
 *
 * Ending. A blocking collective waits for ever for a rank that died or gave up, so every
 * collective is started non-blocking (MPI_Iscatter ...) and waited for by wait_for(), which
 * polls it and, every CHECK_S seconds, checks that the other ranks still live: directly
 * (/proc/PID/stat) for ranks on this machine (same boot and pid namespace), and through
 * --peer-timeout for ranks elsewhere. A rank that fails:
 *   - before its round's collectives (rank 0 between rounds, or any rank in set-up, where every
 *     rank learns every rank's outcome): the job ends in step, the others quietly, and MPI is
 *     finalized in tw_dist_end_job, after the reporter printed;
 *   - inside them, or when a rank is lost: g_end.must_abort is set, and the caller ends every
 *     rank with tw_dist_end_job (MPI_Abort) after printing the error; it first sends END_TAG to
 *     the others, which end quietly.
 * One rank reports each failure: the rank that failed (the lowest one in set-up), or, for a lost
 * rank or a timeout, the lowest rank still alive (on the lost rank's machine); the others wait
 * quietly until it ends them (tw_dist_error_reported_elsewhere() tells a caller not to print).
 * Every message names the rank and the host (MPI_Get_processor_name). */
#include <errno.h>
#include <mpi.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "twist/error.h"
#include "ist/dist_internal.h"
#include "twist/clock.h"

/* Seconds between liveness checks while waiting in a collective. */
static const double CHECK_S = 0.2;
/* The tag of the message a rank that ends the job sends every other rank first: under
 * `mpirun --enable-recovery` MPI_Abort ends only the calling rank, and the others, told so,
 * end quietly instead of reporting the same failure again. */
enum { END_TAG = 7171 };

/* What every rank tells the others at start, to be named in messages and checked for life. */
typedef struct rank_info {
    int32_t pid;
    unsigned long long start_ticks; /* /proc/PID/stat field 22: tells a reused pid apart */
    char host[MPI_MAX_PROCESSOR_NAME];
    char machine[128]; /* boot id + pid namespace; "" unknown: never checked directly */
} rank_info;

/* How this process's MPI run ended (tw_dist_error_reported_elsewhere, tw_dist_end_job). */
static struct {
    bool quiet;      /* another rank reports the failure */
    int rank, size;  /* this rank's and the world's, for tw_dist_end_job */
    bool must_abort; /* ranks may wait in a collective: only MPI_Abort ends them */
    bool finalize;   /* a failure in step: MPI_Finalize once the reporter has printed */
    char message[1024]; /* why, once must_abort is set */
} g_end;

/* Marks the job as ending (every later collective is refused at once) and says why. */
static tw_status job_ends(tw_status status, const char *message) {
    if (!g_end.must_abort) snprintf(g_end.message, sizeof g_end.message, "%s", message);
    g_end.must_abort = true;
    return tw_error(status, "%s", g_end.message);
}

typedef struct mpi_transport {
    dist_transport base;
    dist_worker worker;      /* this rank's */
    const tw_dist_options *options;
    int rank, size;
    MPI_Comm round_comm;     /* the round's active ranks, or MPI_COMM_NULL */
    dist_job job;            /* this rank's job of the round */
    bool trained_ok;         /* this rank's result of the round */
    bool in_round;           /* between the scatter of TRAIN jobs and the gather of subnets */
    int round;               /* rounds started (the test faults count them) */
    float *gathered;         /* averaging: (active ranks * count) on the round's first rank */
    size_t gathered_capacity;
    const char **devices;    /* (size) */
    rank_info *ranks;        /* (size) */
    bool remote_peers;       /* some rank is on another machine: --peer-timeout applies */
    struct { int rank, round; char what[16]; } test_fault; /* TWIST_TEST_MPI_FAIL */
    dist_codec_link mean_link; /* averaging leader: the residual of the means it sends */
    uint16_t *wire16;          /* averaging under a codec: (active ranks * count) bf16 */
    size_t wire16_capacity;
} mpi_transport;

static void pause_s(double seconds) {
    struct timespec d = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
    while (nanosleep(&d, &d) != 0 && errno == EINTR) {
    }
}

/* ---- who the ranks are, and whether they live ------------------------------------------ */

/* Field 22 (starttime) of /proc/PID/stat, 0 when unreadable; *state gets field 3. */
static unsigned long long process_start(const char *path, char *state) {
    FILE *f = fopen(path, "r");
    *state = '?';
    if (!f) return 0;
    char line[1024];
    const bool got = fgets(line, sizeof line, f) != NULL;
    fclose(f);
    const char *p = got ? strrchr(line, ')') : NULL; /* the name in () may hold spaces */
    if (!p || p[1] != ' ') return 0;
    *state = p[2];
    p += 3; /* at the space before field 4 */
    for (int field = 4; field <= 22 && p; field++) { /* to the start of field 22 */
        p = strchr(p, ' ');
        if (p) p++;
    }
    return p ? strtoull(p, NULL, 10) : 0;
}

static void describe_self(rank_info *me) {
    memset(me, 0, sizeof *me);
    me->pid = (int32_t)getpid();
    char state;
    me->start_ticks = process_start("/proc/self/stat", &state);
    int length = 0;
    if (MPI_Get_processor_name(me->host, &length) != MPI_SUCCESS || length <= 0)
        snprintf(me->host, sizeof me->host, "unknown host");
    char boot[64] = "", ns[64] = "";
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
    if (f) {
        if (!fgets(boot, sizeof boot, f)) boot[0] = '\0';
        fclose(f);
        boot[strcspn(boot, "\n")] = '\0';
    }
    const ssize_t n = readlink("/proc/self/ns/pid", ns, sizeof ns - 1);
    ns[n > 0 ? n : 0] = '\0';
    if (boot[0] && ns[0] && me->start_ticks)
        snprintf(me->machine, sizeof me->machine, "%s %s", boot, ns);
}

/* Whether rank r is known to have ended: on this machine, its process is gone, a zombie, or
 * another process with its pid. Ranks elsewhere are never known gone (--peer-timeout). */
static bool same_machine(const mpi_transport *t, int r);

static bool rank_gone(const mpi_transport *t, int r) {
    const rank_info *peer = &t->ranks[r];
    if (r == t->rank || !same_machine(t, r)) return false;
    char path[64], state;
    snprintf(path, sizeof path, "/proc/%d/stat", (int)peer->pid);
    const unsigned long long start = process_start(path, &state);
    return start != peer->start_ticks || state == 'Z' || state == 'X';
}

static const char *host_of(const mpi_transport *t, int r) {
    return t->ranks ? t->ranks[r].host : "?";
}

/* Whether another rank said it ends the job (END_TAG); then this rank ends quietly. */
static bool told_to_end(mpi_transport *t) {
    int flag = 0;
    MPI_Status status;
    if (MPI_Iprobe(MPI_ANY_SOURCE, END_TAG, MPI_COMM_WORLD, &flag, &status) != MPI_SUCCESS ||
        !flag)
        return false;
    int word = 0;
    MPI_Recv(&word, 1, MPI_INT, status.MPI_SOURCE, END_TAG, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    g_end.quiet = true;
    char message[MPI_MAX_PROCESSOR_NAME + 64];
    snprintf(message, sizeof message, "rank %d (%s) ended the job", status.MPI_SOURCE,
             t->ranks ? t->ranks[status.MPI_SOURCE].host : "?");
    job_ends(TW_ERR_BACKEND, message);
    return true;
}

static bool same_machine(const mpi_transport *t, int r) {
    const rank_info *me = &t->ranks[t->rank];
    return me->machine[0] && strcmp(t->ranks[r].machine, me->machine) == 0;
}

/* The rank that reports: the lowest one not known gone; for a rank seen gone on this machine,
 * the lowest such rank on this machine (the others elsewhere cannot see it, and hear of it from
 * the reporter's END before their --peer-timeout). */
static int reporter(const mpi_transport *t, bool this_machine) {
    for (int r = 0; r < t->size; r++)
        if (!rank_gone(t, r) && (!this_machine || r == t->rank || same_machine(t, r))) return r;
    return t->rank;
}

/* A rank was lost or the wait timed out: every rank that sees it ends, but only the reporter
 * says so. The others wait until its MPI_Abort ends them; only if the reporter is lost too (or,
 * elsewhere, stays silent past --peer-timeout) does this rank report instead. */
static tw_status lost(mpi_transport *t, const char *message, bool this_machine) {
    const double started = tw_now_seconds(), limit = t->options ? t->options->peer_timeout_s : 0;
    const int reporter_at_start = reporter(t, this_machine);
    for (int who = reporter_at_start; who != t->rank; who = reporter(t, this_machine)) {
        if (told_to_end(t)) return tw_error(TW_ERR_BACKEND, "%s", g_end.message);
        if (limit > 0 && tw_now_seconds() - started > limit) break;
        pause_s(CHECK_S);
    }
    /* The reporter may have said so just before it ended: a second to hear it. */
    for (int i = 0; i < 10 && t->rank != reporter_at_start; i++) {
        if (told_to_end(t)) return tw_error(TW_ERR_BACKEND, "%s", g_end.message);
        pause_s(0.1);
    }
    return job_ends(TW_ERR_BACKEND, message);
}

static tw_status mpi_failed(mpi_transport *t, int code, const char *what) {
    char text[MPI_MAX_ERROR_STRING];
    int length = 0;
    MPI_Error_string(code, text, &length);
    char message[MPI_MAX_ERROR_STRING + 256];
    snprintf(message, sizeof message, "MPI: %s failed on rank %d: %s", what, t->rank, text);
    return job_ends(TW_ERR_BACKEND, message);
}

#define MPI_TRY(t, call, what)                                             \
    do {                                                                   \
        int mpi_code_ = (call);                                            \
        if (mpi_code_ != MPI_SUCCESS) return mpi_failed(t, mpi_code_, what); \
    } while (0)

/* Waits for a started collective while the other ranks live (see the top of the file). The
 * first milliseconds poll without pausing (data parallel averages at every step); then the
 * pauses grow to a millisecond so a rank waiting for a round's training leaves the CPU to it. */
static tw_status wait_for(mpi_transport *t, MPI_Request *request, const char *what) {
    if (g_end.must_abort) return tw_error(TW_ERR_BACKEND, "%s", g_end.message);
    const double started = tw_now_seconds();
    const double limit = t->options && t->remote_peers ? t->options->peer_timeout_s : 0;
    double next_check = started + CHECK_S, pause = 0.0;
    for (;;) {
        int done = 0;
        MPI_TRY(t, MPI_Test(request, &done, MPI_STATUS_IGNORE), what);
        if (done) return TW_OK;
        const double now = tw_now_seconds();
        if (now >= next_check && t->ranks) {
            if (told_to_end(t)) return tw_error(TW_ERR_BACKEND, "%s", g_end.message);
            char message[1024], gone[768] = "";
            int count = 0;
            size_t used = 0;
            for (int r = 0; r < t->size && used < sizeof gone; r++)
                if (rank_gone(t, r)) {
                    const int n = snprintf(gone + used, sizeof gone - used,
                                           "%srank %d (pid %d on %s)", count ? ", " : "", r,
                                           (int)t->ranks[r].pid, t->ranks[r].host);
                    used += n > 0 ? (size_t)n : 0;
                    count++;
                }
            if (count) {
                snprintf(message, sizeof message,
                         "%s %s ended without a word (killed?) while rank %d waited in %s; the "
                         "job ends",
                         gone, count > 1 ? "have" : "has", t->rank, what);
                return lost(t, message, true);
            }
            if (limit > 0 && now - started > limit) {
                snprintf(message, sizeof message,
                         "no word from the other ranks for %.0f s in %s (--peer-timeout %.0f); "
                         "a rank on another host may be lost; the job ends",
                         now - started, what, limit);
                return lost(t, message, false);
            }
            next_check = now + CHECK_S;
        }
        if (now - started > 0.002) {
            pause = pause > 0.0 ? (pause * 2 < 1e-3 ? pause * 2 : 1e-3) : 2e-5;
            pause_s(pause);
        }
    }
}

/* ---- test faults: TWIST_TEST_MPI_FAIL=RANK:ROUND:WHAT --------------------------------------
 * Makes rank RANK fail in round ROUND (0-based) at WHAT: "between" (before the round's first
 * collective), "send" (after the scatter of the jobs), "train" (before the gather of the
 * results), "receive" (before the gather of the subnets), or "kill" (SIGKILL at the start of
 * local training: a lost rank). For tests of how the job ends; unset, nothing happens. */

static void read_test_fault(mpi_transport *t) {
    t->test_fault.rank = -1;
    const char *text = getenv("TWIST_TEST_MPI_FAIL");
    if (!text || !*text) return;
    if (sscanf(text, "%d:%d:%15s", &t->test_fault.rank, &t->test_fault.round,
               t->test_fault.what) != 3)
        t->test_fault.rank = -1;
}

/* round: of the round the fault point belongs to. */
static tw_status test_fault(const mpi_transport *t, int round, const char *what) {
    if (t->test_fault.rank != t->rank || t->test_fault.round != round ||
        strcmp(t->test_fault.what, what) != 0)
        return TW_OK;
    if (strcmp(what, "kill") == 0) raise(SIGKILL);
    return tw_error(TW_ERR_BACKEND, "test fault in round %d at '%s' (TWIST_TEST_MPI_FAIL)",
                    round, what);
}

static tw_status float_count(uint64_t floats, int *out) {
    if (floats > (uint64_t)INT32_MAX)
        return tw_error(TW_ERR_UNSUPPORTED, "MPI: a packed subnet of %llu floats exceeds one "
                        "message", (unsigned long long)floats);
    *out = (int)floats;
    return TW_OK;
}

/* ---- data parallel averaging over the round's ranks ------------------------------------- */

static tw_status mpi_average(void *context, int worker, float *data, size_t count, bool ok,
                             int *contributors) {
    mpi_transport *t = context;
    int n = 0, me = 0, flag = ok ? 1 : 0, c = 0;
    (void)worker;
    TW_TRY(float_count(count, &c));
    MPI_TRY(t, MPI_Comm_size(t->round_comm, &n), "MPI_Comm_size");
    MPI_TRY(t, MPI_Comm_rank(t->round_comm, &me), "MPI_Comm_rank");
    int flags[TW_DIST_MAX_WORKERS];
    MPI_Request request;
    MPI_TRY(t, MPI_Igather(&flag, 1, MPI_INT, flags, 1, MPI_INT, 0, t->round_comm, &request),
            "MPI_Igather");
    TW_TRY(wait_for(t, &request, "the gather of the averaging flags"));
    if (me == 0 && t->gathered_capacity < (size_t)n * count) {
        float *bigger = realloc(t->gathered, (size_t)n * count * sizeof *bigger);
        if (!bigger) return job_ends(TW_ERR_OUT_OF_MEMORY, "MPI averaging: out of host memory");
        t->gathered = bigger;
        t->gathered_capacity = (size_t)n * count;
    }
    /* Under a codec the gradients (already bf16 values, worker.c) travel as 2-byte bf16. */
    const tw_dist_codec codec = t->options->codec;
    if (codec != TW_CODEC_FP32) {
        const size_t need = (size_t)(me == 0 ? n : 1) * count;
        if (t->wire16_capacity < need) {
            uint16_t *bigger = realloc(t->wire16, (need ? need : 1) * sizeof *bigger);
            if (!bigger)
                return job_ends(TW_ERR_OUT_OF_MEMORY, "MPI averaging: out of host memory");
            t->wire16 = bigger;
            t->wire16_capacity = need;
        }
        /* The leader's own slot is the first of the gathered ones (MPI_IN_PLACE). */
        dist_bf16_pack(data, count, t->wire16);
        MPI_TRY(t, MPI_Igather(me == 0 ? MPI_IN_PLACE : t->wire16, c, MPI_UINT16_T, t->wire16,
                               c, MPI_UINT16_T, 0, t->round_comm, &request), "MPI_Igather");
        TW_TRY(wait_for(t, &request, "the gather of the gradients"));
        if (me == 0) dist_bf16_unpack(t->wire16, (size_t)n * count, t->gathered);
    } else {
        MPI_TRY(t, MPI_Igather(data, c, MPI_FLOAT, t->gathered, c, MPI_FLOAT, 0, t->round_comm,
                               &request), "MPI_Igather");
        TW_TRY(wait_for(t, &request, "the gather of the gradients"));
    }
    int used = 0;
    if (me == 0) {
        for (int r = 0; r < n; r++) used += flags[r];
        /* The same sums as the threads transport: worker order, double. */
        for (size_t i = 0; used > 0 && i < count; i++) {
            double sum = 0.0;
            for (int r = 0; r < n; r++)
                if (flags[r]) sum += (double)t->gathered[(size_t)r * count + i];
            data[i] = (float)(sum / used);
        }
        /* The mean goes back under the codec, with the leader's residual (as threads). */
        if (used > 0) TW_TRY(dist_codec_quantize(&t->mean_link, codec, data, count));
    }
    MPI_TRY(t, MPI_Ibcast(&used, 1, MPI_INT, 0, t->round_comm, &request), "MPI_Ibcast");
    TW_TRY(wait_for(t, &request, "the broadcast of the contributors"));
    if (codec != TW_CODEC_FP32) {
        dist_bf16_pack(data, count, t->wire16);
        MPI_TRY(t, MPI_Ibcast(t->wire16, c, MPI_UINT16_T, 0, t->round_comm, &request),
                "MPI_Ibcast");
        TW_TRY(wait_for(t, &request, "the broadcast of the mean gradients"));
        dist_bf16_unpack(t->wire16, count, data);
    } else {
        MPI_TRY(t, MPI_Ibcast(data, c, MPI_FLOAT, 0, t->round_comm, &request), "MPI_Ibcast");
        TW_TRY(wait_for(t, &request, "the broadcast of the mean gradients"));
    }
    *contributors = used;
    return TW_OK;
}

/* ---- the three collectives of a round, the same on every rank ---------------------------- */

/* The packed subnets under a codec other than fp32 (codec.h): bf16-delta first scatters the
 * round's share lists (int32), then the encoded subnets go as 2-byte bf16; the root's end of
 * each link encodes, each rank's own end decodes into its packed buffer. Same failure rules as
 * the fp32 scatter below. */
static tw_status codec_send(mpi_transport *t, const dist_job *jobs, float *const *packed) {
    const tw_dist_codec codec = t->options->codec;
    dist_codec_link *end = &t->worker.codec;
    int counts[TW_DIST_MAX_WORKERS], offsets[TW_DIST_MAX_WORKERS];
    MPI_Request request;
    tw_status status = TW_OK, root_status = TW_OK;
    int32_t scratch32 = 0;
    uint16_t scratch16 = 0;
    if (codec == TW_CODEC_BF16_DELTA) {
        int32_t *send = NULL;
        if (t->rank == 0) {
            size_t total = 0;
            for (int r = 0; r < t->size; r++) {
                TW_TRY(float_count(jobs[r].active ? jobs[r].share_ints : 0, &counts[r]));
                offsets[r] = (int)total;
                total += (size_t)counts[r];
            }
            send = malloc((total ? total : 1) * sizeof *send);
            if (!send) return tw_error(TW_ERR_OUT_OF_MEMORY, "MPI send: out of host memory");
            for (int r = 0; r < t->size; r++)
                if (counts[r])
                    memcpy(send + offsets[r], t->base.links[r].shares,
                           (size_t)counts[r] * sizeof *send);
        }
        int mine = 0;
        status = float_count(t->job.active ? t->job.share_ints : 0, &mine);
        if (status == TW_OK && mine) status = dist_codec_reserve_shares(end, (size_t)mine);
        int code = MPI_Iscatterv(send, counts, offsets, MPI_INT32_T,
                                 status == TW_OK && mine ? end->shares : &scratch32,
                                 status == TW_OK ? mine : 0, MPI_INT32_T, 0, MPI_COMM_WORLD,
                                 &request);
        tw_status waited = code == MPI_SUCCESS
                               ? wait_for(t, &request, "the scatter of the share lists")
                               : mpi_failed(t, code, "MPI_Iscatterv of the share lists");
        free(send);
        TW_TRY(waited);
        if (status == TW_OK && mine) status = dist_codec_map(end, &t->options->model, true);
    }
    uint16_t *send = NULL;
    if (t->rank == 0) {
        size_t total = 0;
        for (int r = 0; r < t->size; r++) {
            TW_TRY(float_count(jobs[r].active ? jobs[r].packed_floats : 0, &counts[r]));
            offsets[r] = (int)total;
            total += (size_t)counts[r];
        }
        if (total > (size_t)INT32_MAX)
            return tw_error(TW_ERR_UNSUPPORTED, "MPI: the round's subnets exceed one message");
        send = malloc((total ? total : 1) * sizeof *send);
        if (!send) return tw_error(TW_ERR_OUT_OF_MEMORY, "MPI send: out of host memory");
        for (int r = 0; root_status == TW_OK && r < t->size; r++) {
            if (!counts[r]) continue;
            dist_codec_link *link = &t->base.links[r];
            root_status = dist_codec_reserve_wire(link, (size_t)counts[r]);
            if (root_status != TW_OK) break;
            dist_codec_encode(link, codec, false, packed[r], (size_t)counts[r]);
            memcpy(send + offsets[r], link->wire, (size_t)counts[r] * sizeof *send);
        }
    }
    int mine = 0;
    if (status == TW_OK) status = float_count(t->job.active ? t->job.packed_floats : 0, &mine);
    if (status == TW_OK && mine) status = dist_worker_reserve(&t->worker, (size_t)mine);
    if (status == TW_OK && mine) status = dist_codec_reserve_wire(end, (size_t)mine);
    int code = MPI_Iscatterv(send, counts, offsets, MPI_UINT16_T,
                             status == TW_OK && mine ? end->wire : &scratch16,
                             status == TW_OK ? mine : 0, MPI_UINT16_T, 0, MPI_COMM_WORLD,
                             &request);
    tw_status waited = code == MPI_SUCCESS ? wait_for(t, &request, "the scatter of the subnets")
                                           : mpi_failed(t, code, "MPI_Iscatterv of the subnets");
    free(send);
    if (waited == TW_OK && status == TW_OK && mine)
        dist_codec_decode(end, codec, true, t->worker.packed, (size_t)mine);
    /* A rank that failed here received nothing usable: its job fails in training. */
    if (status != TW_OK && mine) t->worker.packed_capacity = 0;
    if (waited != TW_OK) return waited;
    if (root_status != TW_OK) return root_status;
    return t->rank == 0 ? status : TW_OK;
}

/* Every rank: its job, then its packed subnet (root: jobs and packed of every rank). */
static tw_status collect_send(mpi_transport *t, const dist_job *jobs, float *const *packed) {
    TW_TRY(test_fault(t, t->round, "between"));
    MPI_Request request;
    MPI_TRY(t, MPI_Iscatter(jobs, (int)sizeof(dist_job), MPI_BYTE, &t->job,
                            (int)sizeof(dist_job), MPI_BYTE, 0, MPI_COMM_WORLD, &request),
            "MPI_Iscatter of the jobs");
    TW_TRY(wait_for(t, &request, "the scatter of the jobs"));
    if (t->job.command == DIST_QUIT) return TW_OK;
    /* From here to the end of the round's last gather, a rank that gives up leaves the others
     * inside a collective. */
    t->in_round = true;
    t->round++;
    TW_TRY(test_fault(t, t->round - 1, "send"));
    if (t->options->codec != TW_CODEC_FP32) return codec_send(t, jobs, packed);
    int counts[TW_DIST_MAX_WORKERS], offsets[TW_DIST_MAX_WORKERS];
    float *send = NULL;
    if (t->rank == 0) {
        /* One contiguous send buffer, as Scatterv needs. */
        size_t total = 0;
        for (int r = 0; r < t->size; r++) {
            TW_TRY(float_count(jobs[r].active ? jobs[r].packed_floats : 0, &counts[r]));
            total += (size_t)counts[r];
        }
        if (total > (size_t)INT32_MAX)
            return tw_error(TW_ERR_UNSUPPORTED, "MPI: the round's subnets exceed one message");
        send = malloc((total ? total : 1) * sizeof *send);
        if (!send) return tw_error(TW_ERR_OUT_OF_MEMORY, "MPI send: out of host memory");
        size_t offset = 0;
        for (int r = 0; r < t->size; r++) {
            offsets[r] = (int)offset;
            if (counts[r]) memcpy(send + offset, packed[r], (size_t)counts[r] * sizeof *send);
            offset += (size_t)counts[r];
        }
    }
    int mine = 0;
    tw_status status = float_count(t->job.active ? t->job.packed_floats : 0, &mine);
    if (status == TW_OK && mine) status = dist_worker_reserve(&t->worker, (size_t)mine);
    /* A rank that could not make room still takes part: it receives nothing, and its job then
     * fails in dist_worker_train (too small a packed buffer), reported in its result. */
    float scratch = 0.0f;
    float *receive = status == TW_OK && mine ? t->worker.packed : &scratch;
    int code = MPI_Iscatterv(send, counts, offsets, MPI_FLOAT, receive,
                             status == TW_OK ? mine : 0, MPI_FLOAT, 0, MPI_COMM_WORLD, &request);
    tw_status waited = code == MPI_SUCCESS ? wait_for(t, &request, "the scatter of the subnets")
                                           : mpi_failed(t, code, "MPI_Iscatterv of the subnets");
    free(send);
    return t->rank == 0 ? (waited != TW_OK ? waited : status) : waited;
}

static tw_status collect_train(mpi_transport *t, dist_result *results) {
    dist_result mine;
    memset(&mine, 0, sizeof mine);
    TW_TRY(test_fault(t, t->round - 1, "kill"));
    /* MPI_Comm_split blocks: the barrier before it makes sure every rank is there and alive. */
    MPI_Request request;
    MPI_TRY(t, MPI_Ibarrier(MPI_COMM_WORLD, &request), "MPI_Ibarrier");
    TW_TRY(wait_for(t, &request, "the barrier before local training"));
    MPI_TRY(t, MPI_Comm_split(MPI_COMM_WORLD, t->job.active ? 0 : MPI_UNDEFINED, t->rank,
                              &t->round_comm), "MPI_Comm_split");
    if (t->job.active) {
        dist_comm comm = {mpi_average, t};
        dist_worker_train(&t->worker, &t->job, &comm, &mine);
        MPI_Comm_free(&t->round_comm);
        if (g_end.must_abort) return tw_error(TW_ERR_BACKEND, "%s", g_end.message);
    }
    t->trained_ok = mine.ok != 0;
    if (!mine.ok && t->rank != 0) {
        /* Rank 0 reports the failure: the message names this rank and its host. */
        char named[sizeof mine.error + MPI_MAX_PROCESSOR_NAME + 32];
        const int n = snprintf(named, sizeof named, "rank %d (%s): %s", t->rank,
                               host_of(t, t->rank), mine.error);
        const size_t keep = n < 0 ? 0 : (size_t)n < sizeof mine.error ? (size_t)n
                                                                      : sizeof mine.error - 1;
        memcpy(mine.error, named, keep);
        mine.error[keep] = '\0';
    }
    TW_TRY(test_fault(t, t->round - 1, "train"));
    MPI_TRY(t, MPI_Igather(&mine, (int)sizeof mine, MPI_BYTE, results, (int)sizeof mine,
                           MPI_BYTE, 0, MPI_COMM_WORLD, &request), "MPI_Igather of the results");
    return wait_for(t, &request, "the gather of the results");
}

static tw_status collect_receive(mpi_transport *t, const dist_job *jobs,
                                 const dist_result *results, float *const *packed) {
    TW_TRY(test_fault(t, t->round - 1, "receive"));
    const bool sending = t->job.active && t->trained_ok;
    int mine = 0;
    TW_TRY(float_count(sending ? t->job.packed_floats : 0, &mine));
    int counts[TW_DIST_MAX_WORKERS], offsets[TW_DIST_MAX_WORKERS];
    float *receive = NULL;
    if (t->rank == 0) {
        size_t total = 0;
        for (int r = 0; r < t->size; r++) {
            /* The worker keeps its model exactly when its result is ok (worker.c). */
            TW_TRY(float_count(jobs[r].active && results[r].ok ? jobs[r].packed_floats : 0,
                               &counts[r]));
            offsets[r] = (int)total;
            total += (size_t)counts[r];
        }
        receive = malloc((total ? total : 1) * sizeof *receive);
        if (!receive) return tw_error(TW_ERR_OUT_OF_MEMORY, "MPI receive: out of host memory");
    }
    /* Under a codec (codec.h) each rank's end encodes its subnet into 2-byte bf16 (its wire
     * buffer holds the round's size since the scatter), and the root's ends decode them;
     * `receive` (floats) has room for the 2-byte values. */
    const tw_dist_codec codec = t->options->codec;
    const bool coded = codec != TW_CODEC_FP32;
    if (coded && mine) dist_codec_encode(&t->worker.codec, codec, true, t->worker.packed,
                                         (size_t)mine);
    const void *send = !mine ? NULL : coded ? (const void *)t->worker.codec.wire
                                            : (const void *)t->worker.packed;
    MPI_Datatype type = coded ? MPI_UINT16_T : MPI_FLOAT;
    MPI_Request request;
    int code = MPI_Igatherv(send, mine, type, receive, counts, offsets, type, 0, MPI_COMM_WORLD,
                            &request);
    tw_status status = code == MPI_SUCCESS ? wait_for(t, &request, "the gather of the subnets")
                                           : mpi_failed(t, code, "MPI_Igatherv of the subnets");
    const uint16_t *receive16 = (const uint16_t *)(void *)receive;
    for (int r = 0; status == TW_OK && t->rank == 0 && r < t->size; r++) {
        if (!counts[r]) continue;
        if (!coded) {
            memcpy(packed[r], receive + offsets[r], (size_t)counts[r] * sizeof *receive);
            continue;
        }
        dist_codec_link *link = &t->base.links[r];
        memcpy(link->wire, receive16 + offsets[r], (size_t)counts[r] * sizeof *link->wire);
        dist_codec_decode(link, codec, false, packed[r], (size_t)counts[r]);
    }
    free(receive);
    if (status == TW_OK) t->in_round = false;
    return status;
}

/* ---- the transport of rank 0 ------------------------------------------------------------ */

static tw_status root_send(dist_transport *base, const dist_job *jobs, float *const *packed) {
    return collect_send((mpi_transport *)base, jobs, packed);
}

static tw_status root_train(dist_transport *base, const dist_job *jobs, dist_result *results) {
    (void)jobs;
    return collect_train((mpi_transport *)base, results);
}

static tw_status root_receive(dist_transport *base, const dist_job *jobs,
                              const dist_result *results, float *const *packed) {
    return collect_receive((mpi_transport *)base, jobs, results, packed);
}

static void root_destroy(dist_transport *base) {
    (void)base; /* rank 0's transport lives on dist_mpi_run's stack; QUIT is sent there */
}

static const dist_transport_ops mpi_ops = {root_send, root_train, root_receive, root_destroy};

/* Every rank but 0: serve rounds until QUIT. */
static tw_status serve(mpi_transport *t) {
    for (;;) {
        TW_TRY(collect_send(t, NULL, NULL));
        if (t->job.command == DIST_QUIT) return TW_OK;
        TW_TRY(collect_train(t, NULL));
        TW_TRY(collect_receive(t, NULL, NULL, NULL));
    }
}

static tw_status send_quit(mpi_transport *t) {
    dist_job *jobs = calloc((size_t)t->size, sizeof *jobs);
    if (!jobs) return tw_error(TW_ERR_OUT_OF_MEMORY, "MPI: out of host memory");
    for (int r = 0; r < t->size; r++) jobs[r].command = DIST_QUIT;
    const int saved_fault = t->test_fault.rank;
    t->test_fault.rank = -1; /* the "between" fault is for rounds, not for QUIT */
    tw_status status = collect_send(t, jobs, NULL);
    t->test_fault.rank = saved_fault;
    free(jobs);
    return status;
}

/* Every rank's outcome of the set-up, so all go on or all stop together. The lowest rank that
 * failed reports its error; the others stay quiet (*first_failed: -1 when none failed). */
static tw_status setup_outcomes(mpi_transport *t, tw_status status, int *first_failed) {
    int mine = status == TW_OK, all[TW_DIST_MAX_WORKERS];
    MPI_Request request;
    MPI_TRY(t, MPI_Iallgather(&mine, 1, MPI_INT, all, 1, MPI_INT, MPI_COMM_WORLD, &request),
            "MPI_Iallgather");
    TW_TRY(wait_for(t, &request, "the exchange of the set-up outcomes"));
    *first_failed = -1;
    for (int r = t->size - 1; r >= 0; r--)
        if (!all[r]) *first_failed = r;
    return TW_OK;
}

static tw_status run_ranks(const tw_dist_options *options, mpi_transport *t,
                           tw_dist_report_fn report, void *context) {
    const int workers = options->device_count * options->workers_per_device;
    if (t->size != workers) {
        g_end.quiet = t->rank != 0; /* every rank finds the same; rank 0 says it */
        return tw_error(TW_ERR_INVALID_ARGUMENT,
                        "--transport mpi: %d ranks for %d workers (%d devices x "
                        "--workers-per-device %d); run mpirun -np %d",
                        t->size, workers, options->device_count, options->workers_per_device,
                        workers);
    }
    dist_setup setup;
    tw_status status = dist_setup_load(options, &setup, t->rank != 0, report, context);
    tw_dist_options o = *options;
    o.model = setup.model;
    t->options = &o;
    t->devices = calloc((size_t)t->size, sizeof *t->devices);
    if (status == TW_OK && !t->devices)
        status = tw_error(TW_ERR_OUT_OF_MEMORY, "MPI: out of host memory");
    for (int r = 0; status == TW_OK && r < t->size; r++)
        t->devices[r] = options->devices[r / options->workers_per_device];
    if (status == TW_OK)
        status = dist_worker_init(&t->worker, t->rank, workers, t->devices[t->rank],
                                  setup.dataset, &o, o.rounds * o.local_steps);
    int first_failed = -1;
    tw_status exchanged = setup_outcomes(t, status, &first_failed);
    if (exchanged != TW_OK) {
        status = exchanged;
    } else if (first_failed >= 0) {
        if (status == TW_OK)
            status = tw_error(TW_ERR_BACKEND, "rank %d (%s) failed to set up its worker",
                              first_failed, host_of(t, first_failed));
        g_end.quiet = t->rank != first_failed;
    } else if (t->rank == 0) {
        t->base.ops = &mpi_ops;
        t->base.workers = t->size;
        t->base.worker_devices = t->devices;
        status = dist_master_rounds(&o, &setup, &t->base, report, context);
        /* Between rounds the others wait for the next job: QUIT ends them in step. Inside a
         * round they wait in a collective that will not come: MPI_Abort (tw_dist_end_job). */
        if (t->in_round || g_end.must_abort) {
            g_end.must_abort = true;
        } else {
            tw_status quit = send_quit(t);
            if (status == TW_OK) status = quit;
        }
    } else {
        status = serve(t);
        /* A worker rank fails only inside a round (its training faults are results). */
        if (status != TW_OK) g_end.must_abort = true;
    }
    t->options = NULL;
    dist_worker_free(&t->worker);
    free(t->gathered);
    free(t->wire16);
    dist_codec_link_free(&t->mean_link);
    free(t->devices);
    dist_setup_free(&setup);
    return status;
}

tw_status dist_mpi_run(const tw_dist_options *options, tw_dist_report_fn report, void *context) {
    memset(&g_end, 0, sizeof g_end);
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized && MPI_Init(NULL, NULL) != MPI_SUCCESS)
        return tw_error(TW_ERR_BACKEND, "--transport mpi: MPI_Init failed");
    mpi_transport t;
    memset(&t, 0, sizeof t);
    t.round_comm = MPI_COMM_NULL;
    read_test_fault(&t);
    MPI_Comm_rank(MPI_COMM_WORLD, &t.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &t.size);
    g_end.rank = t.rank;
    g_end.size = t.size;
    tw_status status = TW_OK;
    if (t.size > TW_DIST_MAX_WORKERS) {
        g_end.quiet = t.rank != 0;
        status = tw_error(TW_ERR_INVALID_ARGUMENT, "MPI: at most %d ranks", TW_DIST_MAX_WORKERS);
    }
    t.ranks = status == TW_OK ? calloc((size_t)t.size, sizeof *t.ranks) : NULL;
    if (status == TW_OK && !t.ranks)
        status = job_ends(TW_ERR_OUT_OF_MEMORY, "MPI: out of host memory");
    if (status == TW_OK) {
        /* Who is who, for messages and liveness checks. Until it is known, every rank counts
         * as elsewhere: only --peer-timeout can end this wait. */
        rank_info me;
        describe_self(&me);
        t.options = options;
        t.remote_peers = true;
        MPI_Request request;
        const int code = MPI_Iallgather(&me, (int)sizeof me, MPI_BYTE, t.ranks, (int)sizeof me,
                                        MPI_BYTE, MPI_COMM_WORLD, &request);
        status = code == MPI_SUCCESS ? wait_for(&t, &request, "the exchange of the rank names")
                                     : mpi_failed(&t, code, "MPI_Iallgather of the ranks");
        t.options = NULL;
        t.remote_peers = false;
        for (int r = 0; status == TW_OK && r < t.size; r++)
            if (!me.machine[0] || strcmp(t.ranks[r].machine, me.machine) != 0)
                t.remote_peers = true;
    }
    if (status == TW_OK) status = run_ranks(options, &t, t.rank == 0 ? report : NULL, context);
    if (status != TW_OK) {
        /* Name the rank and host once, in front of the message. */
        char message[2048];
        snprintf(message, sizeof message, "%s", tw_last_error());
        char host[MPI_MAX_PROCESSOR_NAME] = "unknown host";
        int length = 0;
        if (t.ranks) snprintf(host, sizeof host, "%s", t.ranks[t.rank].host);
        else MPI_Get_processor_name(host, &length);
        status = tw_error(status, "rank %d (%s): %s", t.rank, host, message);
    }
    free(t.ranks);
    /* After a failure in step, finalizing waits for tw_dist_end_job: MPI_Finalize synchronises
     * the ranks, so none exits (and makes mpirun kill the others) before the reporter printed. */
    if (!initialized && status == TW_OK) MPI_Finalize();
    else if (!initialized && !g_end.must_abort) g_end.finalize = true;
    return status;
}

bool dist_mpi_quiet(void) { return g_end.quiet; }

void dist_mpi_end(int exit_code) {
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    if (!initialized || finalized) return;
    if (!g_end.must_abort) {
        if (g_end.finalize) MPI_Finalize();
        g_end.finalize = false;
        return;
    }
    if (!g_end.quiet) {
        /* Tell the others first (see END_TAG); give the sends a moment, not a wait. */
        static int word = 1;
        MPI_Request requests[TW_DIST_MAX_WORKERS];
        int count = 0;
        for (int r = 0; r < g_end.size && r < TW_DIST_MAX_WORKERS; r++)
            if (r != g_end.rank &&
                MPI_Isend(&word, 1, MPI_INT, r, END_TAG, MPI_COMM_WORLD, &requests[count]) ==
                    MPI_SUCCESS)
                count++;
        const double until = tw_now_seconds() + 0.5;
        int done = 0;
        while (!done && tw_now_seconds() < until) {
            if (MPI_Testall(count, requests, &done, MPI_STATUSES_IGNORE) != MPI_SUCCESS) break;
            if (!done) pause_s(1e-3);
        }
    }
    MPI_Abort(MPI_COMM_WORLD, exit_code);
}
