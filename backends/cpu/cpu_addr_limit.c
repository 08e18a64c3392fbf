/* OpenBLAS under an address-space limit (ulimit -v, RLIMIT_AS).
 *
 * OpenBLAS's buffer allocator (blas_memory_alloc in 0.3.21 as Debian 12 ships it; builds without
 * USE_TLS keep it) maps one BUFFER_SIZE buffer (128 MiB on x86-64) for each thread of its pool
 * when the pool starts, and one more for a calling thread the first time it calls a level-3
 * routine. When both its mmap and its malloc fallback fail it tries again, forever: under
 * `ulimit -v 1000000` a nano training run spun at 100% CPU in its first GEMM, and a pool thread
 * that never got its buffer made exit() hang too, since OpenBLAS's shutdown joins it.
 *
 * So, only when the limit is finite (without one nothing here changes anything):
 *   1. tw_cpu_restart_tuned sizes the pool (OPENBLAS_NUM_THREADS) so that its buffers take at
 *      most a quarter of the limit: 1 thread under 1 GB, 8 under 4 GB;
 *   2. opening the cpu device checks that one more buffer fits, with the stacks of the OpenMP
 *      team (a PROT_NONE probe mapping counts against RLIMIT_AS like any other mapping), starts
 *      the team and makes the opening thread's first GEMM then, so both are mapped before the
 *      model's memory and kept for every later call (libgomp, failing to start a thread later,
 *      exits the process); if they do not fit, opening fails with the numbers;
 *   3. GEMMs run one at a time, so no second caller (IST workers sharing the cpu) ever needs a
 *      buffer of its own. */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS, MAP_NORESERVE */
#include <cblas.h>
#include <omp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "cpu_internal.h"

/* One OpenBLAS buffer as mapped: BUFFER_SIZE (32 << 22 bytes on x86-64) plus guard pages, or
 * through malloc's own mmap when OpenBLAS falls back to it (128 MiB + 4 KiB rounds to 129 MiB);
 * the probe asks for a little more than either. */
#define BLAS_BUFFER_BYTES ((size_t)130 << 20)
#define MIB(bytes) ((double)(bytes) / (1024.0 * 1024.0))

static pthread_mutex_t blas_mutex = PTHREAD_MUTEX_INITIALIZER;
static atomic_bool serialized; /* set once the limit is seen, before any GEMM runs under it */
static bool reserved;          /* the opening thread's buffer is mapped (under blas_mutex) */

/* The finite soft RLIMIT_AS in bytes, or 0 when there is none. */
static size_t address_limit(void) {
    struct rlimit limit;
    if (getrlimit(RLIMIT_AS, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) return 0;
    return (size_t)limit.rlim_cur;
}

/* Bytes of address space this process has mapped now (VmSize), or 0 if /proc cannot say. */
static size_t address_in_use(void) {
    FILE *file = fopen("/proc/self/statm", "r");
    unsigned long pages = 0;
    if (!file) return 0;
    if (fscanf(file, "%lu", &pages) != 1) pages = 0;
    fclose(file);
    long page = sysconf(_SC_PAGE_SIZE);
    return page > 0 ? (size_t)pages * (size_t)page : 0;
}

const char *tw_cpu_blas_threads_for_limit(void) {
    static char value[16];
    size_t limit = address_limit();
    /* A thread count the user chose (OpenBLAS reads all three) is theirs to keep. */
    if (!limit || getenv("OPENBLAS_NUM_THREADS") || getenv("GOTO_NUM_THREADS") ||
        getenv("OMP_NUM_THREADS"))
        return NULL;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    size_t threads = limit / 4 / BLAS_BUFFER_BYTES;
    if (threads < 1) threads = 1;
    if (cores > 0 && threads >= (size_t)cores) return NULL; /* the default fits */
    snprintf(value, sizeof value, "%zu", threads);
    return value;
}

/* The stack of one OpenMP thread as libgomp will map it: OMP_STACKSIZE (a number of KiB, or
 * with a B, K, M or G suffix) or else glibc's default, the stack rlimit (32 MiB when unlimited). */
static size_t omp_stack_bytes(void) {
    const char *text = getenv("OMP_STACKSIZE");
    if (text && *text) {
        char *end = NULL;
        unsigned long long value = strtoull(text, &end, 10);
        size_t unit = 1024;
        while (end && *end == ' ') end++;
        if (end && (*end == 'B' || *end == 'b')) unit = 1;
        else if (end && (*end == 'M' || *end == 'm')) unit = (size_t)1 << 20;
        else if (end && (*end == 'G' || *end == 'g')) unit = (size_t)1 << 30;
        if (value > 0) return (size_t)value * unit;
    }
    struct rlimit stack;
    if (getrlimit(RLIMIT_STACK, &stack) == 0 && stack.rlim_cur != RLIM_INFINITY)
        return (size_t)stack.rlim_cur;
    return (size_t)32 << 20;
}

/* Maps what the cpu device will need from the address space before the model takes it: the
 * OpenMP team (libgomp exits the process when it cannot start a thread) and OpenBLAS's buffer
 * for this thread. Checked first with one PROT_NONE probe of their total size. */
static tw_status reserve_locked(size_t limit) {
    int pool = openblas_get_num_threads(), team = omp_get_max_threads();
    size_t fits = limit / 4 / BLAS_BUFFER_BYTES;
    if (pool > 1 && (size_t)pool * BLAS_BUFFER_BYTES > limit / 2)
        /* A thread count the user set: its threads are likely stuck already (see above). */
        return tw_error(TW_ERR_OUT_OF_MEMORY,
                        "cpu: OpenBLAS runs %d threads, each with a %.0f MiB buffer, under an "
                        "address-space limit (ulimit -v %zu) of %.0f MiB: set "
                        "OPENBLAS_NUM_THREADS=%zu (or unset it and OMP_NUM_THREADS) or raise "
                        "the limit",
                        pool, MIB(BLAS_BUFFER_BYTES), limit / 1024, MIB(limit), fits ? fits : 1);
    size_t stacks = (size_t)(team > 1 ? team - 1 : 0) * (omp_stack_bytes() + ((size_t)1 << 20));
    size_t need = BLAS_BUFFER_BYTES + stacks;
    void *probe = mmap(NULL, need, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (probe == MAP_FAILED) {
        size_t used = address_in_use();
        return tw_error(TW_ERR_OUT_OF_MEMORY,
                        "cpu: the address-space limit (ulimit -v %zu) leaves %.0f of %.0f MiB "
                        "free, but OpenBLAS's GEMM buffer (%.0f MiB) and the stacks of %d more "
                        "OpenMP thread%s (%.0f MiB) need %.0f MiB: raise it above ulimit -v %zu, "
                        "plus what the model needs",
                        limit / 1024, used < limit ? MIB(limit - used) : 0.0, MIB(limit),
                        MIB(BLAS_BUFFER_BYTES), team > 1 ? team - 1 : 0, team == 2 ? "" : "s",
                        MIB(stacks), MIB(need), (used + need) / 1024);
    }
    munmap(probe, need);
    /* An empty parallel region starts the team, which libgomp keeps for later regions. */
    int started = 0;
#pragma omp parallel
    {
#pragma omp atomic
        started++;
    }
    (void)started;
    /* 128^3 is above OpenBLAS's small-matrix path (which takes no buffer). */
    enum { N = 128 };
    float *a = calloc((size_t)3 * N * N, sizeof *a);
    if (!a)
        return tw_error(TW_ERR_OUT_OF_MEMORY, "cpu: out of host memory warming up OpenBLAS");
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, N, N, 1.0f, a, N, a + N * N, N,
                0.0f, a + 2 * N * N, N);
    free(a);
    return TW_OK;
}

tw_status tw_cpu_blas_reserve(void) {
    size_t limit = address_limit();
    if (!limit) return TW_OK;
    pthread_mutex_lock(&blas_mutex);
    atomic_store(&serialized, true);
    tw_status status = reserved ? TW_OK : reserve_locked(limit);
    if (status == TW_OK) reserved = true;
    pthread_mutex_unlock(&blas_mutex);
    return status;
}

bool tw_cpu_blas_enter(void) {
    bool serial = atomic_load(&serialized);
    if (serial) pthread_mutex_lock(&blas_mutex);
    return serial;
}

void tw_cpu_blas_leave(bool entered) {
    if (entered) pthread_mutex_unlock(&blas_mutex);
}
