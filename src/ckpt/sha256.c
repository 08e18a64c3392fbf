/* SHA-256 (FIPS 180-4) for checkpoint checksums.
 *
 * Why SHA-256 rather than a fast 64-bit hash: `sha256sum` and Python's hashlib reproduce it, so a
 * user (and the interop test) can check a checkpoint by hand, and no hash library is needed.
 * x86-64 CPUs with the SHA extensions (Intel since Ice Lake / Goldmont, AMD since Zen) use them:
 * about 600-700 MB/s on this project's 2-core Xeon VM against 150-200 MB/s for the portable code,
 * so verifying a 300 MB checkpoint (the 25M-parameter preset with AdamW state) takes about
 * 0.5 s. */
#include <stdatomic.h>
#include <string.h>

#include "ckpt/ckpt_internal.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define TW_SHA256_X86 1
#include <cpuid.h>
#include <immintrin.h>
#endif

static const uint32_t k_rounds[64] = {
    0x428a2f98u, 0x71374491u, 0xb5c0fbcfu, 0xe9b5dba5u, 0x3956c25bu, 0x59f111f1u, 0x923f82a4u,
    0xab1c5ed5u, 0xd807aa98u, 0x12835b01u, 0x243185beu, 0x550c7dc3u, 0x72be5d74u, 0x80deb1feu,
    0x9bdc06a7u, 0xc19bf174u, 0xe49b69c1u, 0xefbe4786u, 0x0fc19dc6u, 0x240ca1ccu, 0x2de92c6fu,
    0x4a7484aau, 0x5cb0a9dcu, 0x76f988dau, 0x983e5152u, 0xa831c66du, 0xb00327c8u, 0xbf597fc7u,
    0xc6e00bf3u, 0xd5a79147u, 0x06ca6351u, 0x14292967u, 0x27b70a85u, 0x2e1b2138u, 0x4d2c6dfcu,
    0x53380d13u, 0x650a7354u, 0x766a0abbu, 0x81c2c92eu, 0x92722c85u, 0xa2bfe8a1u, 0xa81a664bu,
    0xc24b8b70u, 0xc76c51a3u, 0xd192e819u, 0xd6990624u, 0xf40e3585u, 0x106aa070u, 0x19a4c116u,
    0x1e376c08u, 0x2748774cu, 0x34b0bcb5u, 0x391c0cb3u, 0x4ed8aa4au, 0x5b9cca4fu, 0x682e6ff3u,
    0x748f82eeu, 0x78a5636fu, 0x84c87814u, 0x8cc70208u, 0x90befffau, 0xa4506cebu, 0xbef9a3f7u,
    0xc67178f2u};

static inline uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

/* One 64-byte block into the state (portable). */
static void compress(uint32_t state[8], const uint8_t *block) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)block[4 * i] << 24 | (uint32_t)block[4 * i + 1] << 16 |
               (uint32_t)block[4 * i + 2] << 8 | (uint32_t)block[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = state[0], b = state[1], c = state[2], d = state[3];
    uint32_t e = state[4], f = state[5], g = state[6], h = state[7];
    for (int i = 0; i < 64; i++) {
        uint32_t s1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25);
        uint32_t ch = (e & f) ^ (~e & g);
        uint32_t t1 = h + s1 + ch + k_rounds[i] + w[i];
        uint32_t s0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22);
        uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
        uint32_t t2 = s0 + maj;
        h = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    state[0] += a;
    state[1] += b;
    state[2] += c;
    state[3] += d;
    state[4] += e;
    state[5] += f;
    state[6] += g;
    state[7] += h;
}

#ifdef TW_SHA256_X86
/* `blocks` 64-byte blocks with the SHA-NI instructions. The state is kept as the two registers
 * the instructions expect: ABEF and CDGH. Each group of 4 rounds takes 4 message words
 * x[g] = msg2(msg1(x[g-4], x[g-3]) + (x[g-2] x[g-1] shifted by one word), x[g-1]). */
__attribute__((target("sha,sse4.1,ssse3"))) static void compress_shani(uint32_t state[8],
                                                                        const uint8_t *data,
                                                                        size_t blocks) {
    const __m128i byteswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    __m128i tmp = _mm_loadu_si128((const __m128i *)(const void *)&state[0]);  /* DCBA */
    __m128i state1 = _mm_loadu_si128((const __m128i *)(const void *)&state[4]); /* HGFE */
    tmp = _mm_shuffle_epi32(tmp, 0xB1);                                         /* CDAB */
    state1 = _mm_shuffle_epi32(state1, 0x1B);                                   /* EFGH */
    __m128i state0 = _mm_alignr_epi8(tmp, state1, 8);                           /* ABEF */
    state1 = _mm_blend_epi16(state1, tmp, 0xF0);                                /* CDGH */
    for (; blocks > 0; blocks--, data += 64) {
        /* x[g % 4] holds group g; fully unrolled, so the window lives in registers. */
        __m128i abef = state0, cdgh = state1, x[4];
#pragma GCC unroll 16
        for (int g = 0; g < 16; g++) {
            if (g < 4)
                x[g] = _mm_shuffle_epi8(
                    _mm_loadu_si128((const __m128i *)(const void *)(data + 16 * g)), byteswap);
            else
                x[g % 4] = _mm_sha256msg2_epu32(
                    _mm_add_epi32(_mm_sha256msg1_epu32(x[g % 4], x[(g + 1) % 4]),
                                  _mm_alignr_epi8(x[(g + 3) % 4], x[(g + 2) % 4], 4)),
                    x[(g + 3) % 4]);
            __m128i msg = _mm_add_epi32(
                x[g % 4], _mm_loadu_si128((const __m128i *)(const void *)&k_rounds[4 * g]));
            state1 = _mm_sha256rnds2_epu32(state1, state0, msg);
            msg = _mm_shuffle_epi32(msg, 0x0E);
            state0 = _mm_sha256rnds2_epu32(state0, state1, msg);
        }
        state0 = _mm_add_epi32(state0, abef);
        state1 = _mm_add_epi32(state1, cdgh);
    }
    tmp = _mm_shuffle_epi32(state0, 0x1B);       /* FEBA */
    state1 = _mm_shuffle_epi32(state1, 0xB1);    /* DCHG */
    state0 = _mm_blend_epi16(tmp, state1, 0xF0); /* DCBA */
    state1 = _mm_alignr_epi8(state1, tmp, 8);    /* HGFE */
    _mm_storeu_si128((__m128i *)(void *)&state[0], state0);
    _mm_storeu_si128((__m128i *)(void *)&state[4], state1);
}

/* SHA, SSSE3 and SSE4.1 present (CPUID leaf 7 EBX bit 29; leaf 1 ECX bits 9 and 19). */
static bool cpu_has_shani(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 9)) || !(c & (1u << 19))) return false;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    return (b & (1u << 29)) != 0;
}
#endif

/* -1: not probed yet; 0 / 1: portable / SHA-NI. */
static atomic_int use_shani = -1;

void tw_sha256_force_portable(bool portable) {
#ifdef TW_SHA256_X86
    atomic_store(&use_shani, portable ? 0 : (int)cpu_has_shani());
#else
    (void)portable;
    atomic_store(&use_shani, 0);
#endif
}

bool tw_sha256_accelerated(void) {
    int mode = atomic_load_explicit(&use_shani, memory_order_relaxed);
    if (mode < 0) {
#ifdef TW_SHA256_X86
        mode = cpu_has_shani();
#else
        mode = 0;
#endif
        atomic_store(&use_shani, mode);
    }
    return mode == 1;
}

static void compress_blocks(uint32_t state[8], const uint8_t *data, size_t blocks) {
#ifdef TW_SHA256_X86
    if (tw_sha256_accelerated()) {
        compress_shani(state, data, blocks);
        return;
    }
#endif
    for (; blocks > 0; blocks--, data += 64) compress(state, data);
}

void tw_sha256_init(tw_sha256 *ctx) {
    static const uint32_t initial[8] = {0x6a09e667u, 0xbb67ae85u, 0x3c6ef372u, 0xa54ff53au,
                                        0x510e527fu, 0x9b05688cu, 0x1f83d9abu, 0x5be0cd19u};
    memcpy(ctx->state, initial, sizeof initial);
    ctx->length = 0;
    ctx->filled = 0;
}

void tw_sha256_update(tw_sha256 *ctx, const void *data, size_t size) {
    const uint8_t *p = data;
    ctx->length += size;
    if (ctx->filled > 0) {
        size_t take = 64 - ctx->filled < size ? 64 - ctx->filled : size;
        memcpy(ctx->block + ctx->filled, p, take);
        ctx->filled += take;
        p += take;
        size -= take;
        if (ctx->filled < 64) return;
        compress_blocks(ctx->state, ctx->block, 1);
        ctx->filled = 0;
    }
    compress_blocks(ctx->state, p, size / 64);
    p += size / 64 * 64;
    size %= 64;
    memcpy(ctx->block, p, size);
    ctx->filled = size;
}

void tw_sha256_final_hex(tw_sha256 *ctx, char hex[65]) {
    uint64_t bits = ctx->length * 8;
    /* Padding: 0x80, zeros up to 56 mod 64, then the bit length big-endian. */
    uint8_t pad[72] = {0x80};
    size_t pad_len = (ctx->filled < 56 ? 56 : 120) - ctx->filled;
    for (int i = 0; i < 8; i++) pad[pad_len + i] = (uint8_t)(bits >> (56 - 8 * i));
    uint64_t length = ctx->length;
    tw_sha256_update(ctx, pad, pad_len + 8);
    ctx->length = length;
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 4; j++) {
            uint8_t byte = (uint8_t)(ctx->state[i] >> (24 - 8 * j));
            hex[8 * i + 2 * j] = digits[byte >> 4];
            hex[8 * i + 2 * j + 1] = digits[byte & 15];
        }
    hex[64] = '\0';
}
