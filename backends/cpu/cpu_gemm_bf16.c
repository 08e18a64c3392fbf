/* bf16 GEMM on CPUs with AVX512-BF16 (VDPBF16PS): C = alpha op(A) op(B) + beta C with A and B
 * bf16, C bf16 or fp32, products and sums in fp32.
 *
 * Why a kernel of twist's own: Debian 12's OpenBLAS (0.3.21) is built without BUILD_BFLOAT16,
 * so it exports no cblas_sbgemm; the other path widens A and B to fp32 and calls cblas_sgemm
 * (cpu_dtype.c), which reads and writes twice the bytes and runs at the fp32 FMA rate.
 * VDPBF16PS does two bf16 multiply-adds per fp32 lane: 64 FLOPs per 512-bit instruction against
 * 32 for an fp32 FMA. (Its products are exact in fp32; it rounds to nearest even and flushes
 * denormals, which only fp32 values below 1.2e-38 notice.)
 *
 * Layout. B is packed once per call into panels of NR = 32 columns: for each pair of k rows
 * (2q, 2q+1), 64 bf16 holding [B(2q, j), B(2q+1, j)] for j = 0..31, i.e. two zmm vectors whose
 * 32-bit lanes are the (k, k+1) pairs VDPBF16PS multiplies. A is packed into blocks of MR = 8
 * rows: for each pair q, 8 32-bit words (A(i, 2q), A(i, 2q+1)), each broadcast to a zmm. Odd k
 * and the edges of m and n are padded with zeros. The micro-kernel keeps an 8 x 32 tile of C in
 * 16 zmm accumulators over the whole k (a 32-column panel of B is 64 k bytes: L2-resident for
 * k up to several thousand), then the epilogue applies alpha and beta and writes C, rounding to
 * bf16 once when C is bf16. Each element of C is summed by one thread in a fixed order, so the
 * result does not depend on the number of threads. Packed A and B are scratch buffers of the
 * device (counted in its peak bytes). */
#include <stdlib.h>
#include <string.h>

#include "cpu_internal.h"
#include "twist/dtype.h"

enum { MR = 8, NR = 32 };

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define TW_CPU_HAVE_BF16_KERNEL 1
#define TARGET_BF16 __attribute__((target("avx512f,avx512bf16")))
#endif

bool tw_cpu_has_avx512_bf16(void) {
#ifdef TW_CPU_HAVE_BF16_KERNEL
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16");
#else
    return false;
#endif
}

#ifdef TW_CPU_HAVE_BF16_KERNEL

/* Element (row, col) of op(X) for X stored row-major with leading dimension ld. */
static inline uint16_t element(const uint16_t *x, int64_t ld, bool trans, int row, int col) {
    return trans ? x[(int64_t)col * ld + row] : x[(int64_t)row * ld + col];
}

/* Packs op(A) (m, k) into blocks of MR rows: block b, pair q at ap + (b * kp + q) * MR. */
static void pack_a(const uint16_t *a, int64_t lda, bool trans, int m, int k, int kp,
                   uint32_t *ap) {
    const int blocks = (m + MR - 1) / MR;
#pragma omp parallel for schedule(static) if ((int64_t)m * k >= (1 << 16))
    for (int b = 0; b < blocks; b++)
        for (int q = 0; q < kp; q++)
            for (int i = 0; i < MR; i++) {
                const int row = b * MR + i, k0 = 2 * q;
                uint32_t lo = 0, hi = 0;
                if (row < m) {
                    lo = element(a, lda, trans, row, k0);
                    if (k0 + 1 < k) hi = element(a, lda, trans, row, k0 + 1);
                }
                ap[((size_t)b * (size_t)kp + (size_t)q) * MR + (size_t)i] = lo | hi << 16;
            }
}

/* Packs op(B) (k, n) into panels of NR columns: panel p, pair q at bp + (p * kp + q) * 2 NR. */
static void pack_b(const uint16_t *b, int64_t ldb, bool trans, int k, int n, int kp,
                   uint16_t *bp) {
    const int panels = (n + NR - 1) / NR;
#pragma omp parallel for schedule(static) if ((int64_t)n * k >= (1 << 16))
    for (int p = 0; p < panels; p++)
        for (int q = 0; q < kp; q++) {
            uint16_t *out = bp + ((size_t)p * (size_t)kp + (size_t)q) * 2 * NR;
            const int k0 = 2 * q;
            for (int j = 0; j < NR; j++) {
                const int col = p * NR + j;
                uint16_t lo = 0, hi = 0;
                if (col < n) {
                    lo = element(b, ldb, trans, k0, col);
                    if (k0 + 1 < k) hi = element(b, ldb, trans, k0 + 1, col);
                }
                out[2 * j] = lo;
                out[2 * j + 1] = hi;
            }
        }
}

/* tile (MR, NR) = sum over kp pairs of the packed A block and B panel. */
TARGET_BF16 static void kernel(int kp, const uint32_t *ap, const uint16_t *bp, float *tile) {
    __m512 c00 = _mm512_setzero_ps(), c01 = _mm512_setzero_ps(), c10 = _mm512_setzero_ps(),
           c11 = _mm512_setzero_ps(), c20 = _mm512_setzero_ps(), c21 = _mm512_setzero_ps(),
           c30 = _mm512_setzero_ps(), c31 = _mm512_setzero_ps(), c40 = _mm512_setzero_ps(),
           c41 = _mm512_setzero_ps(), c50 = _mm512_setzero_ps(), c51 = _mm512_setzero_ps(),
           c60 = _mm512_setzero_ps(), c61 = _mm512_setzero_ps(), c70 = _mm512_setzero_ps(),
           c71 = _mm512_setzero_ps();
    for (int q = 0; q < kp; q++) {
        const __m512bh b0 = (__m512bh)_mm512_loadu_si512(bp);
        const __m512bh b1 = (__m512bh)_mm512_loadu_si512(bp + NR);
        __m512bh a;
#define ROW(i, lo, hi)                                                                          \
    a = (__m512bh)_mm512_set1_epi32((int)ap[i]);                                                \
    lo = _mm512_dpbf16_ps(lo, a, b0);                                                           \
    hi = _mm512_dpbf16_ps(hi, a, b1);
        ROW(0, c00, c01)
        ROW(1, c10, c11)
        ROW(2, c20, c21)
        ROW(3, c30, c31)
        ROW(4, c40, c41)
        ROW(5, c50, c51)
        ROW(6, c60, c61)
        ROW(7, c70, c71)
#undef ROW
        ap += MR;
        bp += 2 * NR;
    }
    _mm512_storeu_ps(tile + 0 * NR, c00), _mm512_storeu_ps(tile + 0 * NR + 16, c01);
    _mm512_storeu_ps(tile + 1 * NR, c10), _mm512_storeu_ps(tile + 1 * NR + 16, c11);
    _mm512_storeu_ps(tile + 2 * NR, c20), _mm512_storeu_ps(tile + 2 * NR + 16, c21);
    _mm512_storeu_ps(tile + 3 * NR, c30), _mm512_storeu_ps(tile + 3 * NR + 16, c31);
    _mm512_storeu_ps(tile + 4 * NR, c40), _mm512_storeu_ps(tile + 4 * NR + 16, c41);
    _mm512_storeu_ps(tile + 5 * NR, c50), _mm512_storeu_ps(tile + 5 * NR + 16, c51);
    _mm512_storeu_ps(tile + 6 * NR, c60), _mm512_storeu_ps(tile + 6 * NR + 16, c61);
    _mm512_storeu_ps(tile + 7 * NR, c70), _mm512_storeu_ps(tile + 7 * NR + 16, c71);
}

/* C's rows [row0, row0 + rows) and columns [col0, col0 + cols) = alpha tile + beta C (C not
 * read when beta == 0). */
static void write_tile(const tw_gemm_args *args, void *c, bool c_bf16, int row0, int col0,
                       int rows, int cols, const float *tile) {
    for (int i = 0; i < rows; i++) {
        const size_t base = (size_t)(row0 + i) * (size_t)args->ldc + (size_t)col0;
        const float *t = tile + (size_t)i * NR;
        if (c_bf16) {
            uint16_t *row = (uint16_t *)c + base;
            for (int j = 0; j < cols; j++) {
                float value = args->alpha * t[j];
                if (args->beta != 0.0f) value += args->beta * tw_bf16_to_f32(row[j]);
                row[j] = tw_f32_to_bf16(value);
            }
        } else {
            float *row = (float *)c + base;
            for (int j = 0; j < cols; j++)
                row[j] = args->beta != 0.0f ? args->alpha * t[j] + args->beta * row[j]
                                            : args->alpha * t[j];
        }
    }
}

tw_status tw_cpu_gemm_bf16(void *context, const tw_gemm_args *args) {
    tw_cpu_context *cpu = context;
    if (args->k == 0 || args->alpha == 0.0f) return tw_cpu_gemm_widened(context, args);
    const int m = args->m, n = args->n, k = args->k, kp = (k + 1) / 2;
    const int blocks = (m + MR - 1) / MR, panels = (n + NR - 1) / NR;
    tw_buffer *a_pack = NULL, *b_pack = NULL;
    TW_TRY(tw_buffer_alloc(cpu->device, (size_t)blocks * (size_t)kp * MR * sizeof(uint32_t),
                           &a_pack));
    tw_status status = tw_buffer_alloc(
        cpu->device, (size_t)panels * (size_t)kp * 2 * NR * sizeof(uint16_t), &b_pack);
    if (status != TW_OK) {
        tw_buffer_free(a_pack);
        return status;
    }
    uint32_t *ap = a_pack->handle;
    uint16_t *bp = b_pack->handle;
    const uint16_t *a = (const uint16_t *)args->a.buffer->handle + args->a.offset;
    const uint16_t *b = (const uint16_t *)args->b.buffer->handle + args->b.offset;
    const bool c_bf16 = args->c.dtype == TW_DTYPE_BF16;
    const size_t c_size = tw_dtype_size(args->c.dtype);
    for (int p = 0; p < args->batch; p++) {
        pack_a(a + (size_t)p * (size_t)args->stride_a, args->lda, args->trans_a, m, k, kp, ap);
        if (p == 0 || args->stride_b != 0)
            pack_b(b + (size_t)p * (size_t)args->stride_b, args->ldb, args->trans_b, k, n, kp,
                   bp);
        char *c = (char *)args->c.buffer->handle +
                  (args->c.offset + (size_t)p * (size_t)args->stride_c) * c_size;
        /* Tasks run panel by panel, so a thread's consecutive tasks share a panel of B. */
        const int64_t tasks = (int64_t)blocks * panels;
#pragma omp parallel for schedule(static) if (tasks > 1 && (int64_t)m * n * k >= (1 << 18))
        for (int64_t task = 0; task < tasks; task++) {
            const int panel = (int)(task / blocks), block = (int)(task % blocks);
            float tile[MR * NR];
            kernel(kp, ap + (size_t)block * (size_t)kp * MR,
                   bp + (size_t)panel * (size_t)kp * 2 * NR, tile);
            const int row0 = block * MR, col0 = panel * NR;
            write_tile(args, c, c_bf16, row0, col0, m - row0 < MR ? m - row0 : MR,
                       n - col0 < NR ? n - col0 : NR, tile);
        }
    }
    tw_buffer_free(a_pack);
    tw_buffer_free(b_pack);
    return TW_OK;
}

#else

tw_status tw_cpu_gemm_bf16(void *context, const tw_gemm_args *args) {
    return tw_cpu_gemm_widened(context, args);
}

#endif
