/* AVX-512 (F, BW, VL, VNNI) matmul kernels: the shared x86 kernels with the
 * byte and word dot products fused by VNNI. Selected at run time from CPUID;
 * per-function target attributes keep the rest of the binary portable. */
#include "engine/kernels_int.h"

#if defined(__x86_64__)

#define KX_TGT           __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))
#define KX_DOT(a, u, s)  _mm256_dpbusd_epi32((a), (u), (s))
#define KX_DOTW(a, p, w) _mm256_dpwssd_epi32((a), (p), (w))

#include "engine/kernels_x86.h"

/* ---- 512-bit kernels for Q8_0, Q4_0, Q5_0 --------------------------------
 * Two blocks per vector. Weights become unsigned bytes u with a zero point z (q8_0: w+128,
 * z=128; q4_0: z=8; q5_0: z=16) so VNNI's u8 x s8 product applies directly;
 * -z*sum(x) enters lane 0 of each block, keeping the block's integer exact.
 * The input's per-pair section (kernels_int.h) holds the pair's scales and
 * -sum(x) already spread over the lanes, so a token costs two loads and a
 * shift per pair instead of gathering and permuting scalars for every row. */

#define KZ_INLINE KX_INLINE
#define KZ_R      2

enum kz_kind { KZ_Q8_0, KZ_Q4_0, KZ_Q5_0 };

/* With 8 tokens or more the loops are compute-bound and the hardware
 * prefetcher falls behind; a software prefetch of the rows PF_ROWS ahead
 * measured 5-20% faster there (and nothing with fewer tokens). */
#define PF_ROWS 4
static inline void kz_prefetch(const uint8_t *p, size_t n)
{
    for (size_t o = 0; o < n; o += 64)
        _mm_prefetch((const char *)p + o, _MM_HINT_T0);
}

/* Unsigned values of blocks b and b+1 of a row (b+1 only when two), in the
 * blocks' element order. */
KZ_INLINE __m512i kz_unpack(const uint8_t *row, int b, int two, const int K)
{
    /* broadcasts from memory and blends, no shuffles: the shuffle unit is
     * what limits these loops */
    if (K == KZ_Q8_0) {
        const uint8_t *p = row + (size_t)b * KB_Q8_0 + 2;
        __m512i v = _mm512_broadcast_i64x4(kx_load(p));
        if (two) v = _mm512_mask_blend_epi64(0xf0, v, _mm512_broadcast_i64x4(kx_load(p + KB_Q8_0)));
        return _mm512_xor_si512(v, _mm512_set1_epi8(-128));
    }
    const size_t bb = K == KZ_Q4_0 ? KB_Q4_0 : KB_Q5_0, off = K == KZ_Q4_0 ? 2 : 6;
    const uint8_t *p = row + (size_t)b * bb;
    /* [q0 | q0 | q1 | q1], the second copies shifted: [lo0 hi0 lo1 hi1] */
    __m512i v = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(p + off)));
    if (two)
        v = _mm512_mask_blend_epi64(
            0xf0, v, _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(p + bb + off))));
    v = _mm512_mask_srli_epi16(v, 0xff00ff00u, v, 4);
    v = _mm512_and_si512(v, _mm512_set1_epi8(15));
    if (K == KZ_Q5_0) {
        /* bit j of qh is the fifth bit of element j */
        uint64_t qh = kern_ld32(p + 2) | (two ? (uint64_t)kern_ld32(p + bb + 2) << 32 : 0);
        v = _mm512_or_si512(v, _mm512_maskz_mov_epi8((__mmask64)qh, _mm512_set1_epi8(16)));
    }
    return v;
}

/* [dw(b) x 8, dw(b+1) x 8]; a missing second block scales by 0. */
KZ_INLINE __m512 kz_wscale(const uint8_t *row, int b, int two, size_t bb)
{
    const uint8_t *p = row + (size_t)b * bb;
    uint32_t pair = kern_ld16(p) | (two ? (uint32_t)kern_ld16(p + bb) << 16 : 0u);
    __m128i h = _mm_cvtsi32_si128((int)pair);
    const __m512i idx = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(_mm_cvtph_ps(h)));
}

/* A tile of R rows x T tokens: every weight pair is unpacked once for T
 * tokens and every input pair loaded once for R rows. Pairs of blocks
 * alternate between two sets of accumulators so the fmadd chains do not
 * serialise the loop; that order of the f32 sums is the same for every tile
 * shape, so a token's result does not depend on the batch around it. */
KZ_INLINE void kz_tile(const uint8_t *W, size_t rb, const uint8_t *const *xp, int n, float *out,
                       const int R, const int T, const int K, const int X)
{
    const size_t bb = K == KZ_Q8_0 ? KB_Q8_0 : K == KZ_Q4_0 ? KB_Q4_0 : KB_Q5_0;
    const int nb = n / KQ;
    const __m512i idx = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    __m512 acc[2][KZ_R][KX_TILE];
    KX_UNROLL
    for (int r = 0; r < R; r++)
        KX_UNROLL
    for (int t = 0; t < T; t++)
        acc[0][r][t] = acc[1][r][t] = _mm512_setzero_ps();
    for (int b0 = 0; b0 < nb; b0 += 4) {
        KX_UNROLL
        for (int e = 0; e < 2; e++) {
            int b = b0 + 2 * e;
            if (b >= nb) break;
            int two = b + 1 < nb;
            __mmask64 xm = two ? ~(__mmask64)0 : 0xffffffffu;
            __mmask8 pm = two ? 3 : 1;
            __m512i u[KZ_R];
            __m512 dw[KZ_R];
            KX_UNROLL
            for (int r = 0; r < R; r++) {
                u[r] = kz_unpack(W + (size_t)r * rb, b, two, K);
                dw[r] = kz_wscale(W + (size_t)r * rb, b, two, bb);
            }
            KX_UNROLL
            for (int t = 0; t < T; t++) {
                __m512i x = _mm512_maskz_loadu_epi8(xm, xp[t] + KQ * b);
                __m512 dx;
                __m512i c;
                if (X) {
                    /* the same vectors, ready made: loads instead of shuffles */
                    const uint8_t *pv = xp[t] + kern_prep_q8_pairs(n) + (size_t)b * 64;
                    dx = _mm512_loadu_ps((const float *)pv);
                    c = _mm512_loadu_si512((const void *)(pv + 64));
                } else {
                    const float *xd = KX_XD(xp[t], n) + b;
                    const int32_t *xz = KX_XS(xp[t], n) + nb + b;
                    dx = _mm512_permutexvar_ps(idx,
                                               _mm512_castps128_ps512(_mm_maskz_loadu_ps(pm, xd)));
                    c = _mm512_maskz_permutexvar_epi32(
                        0x0101, idx, _mm512_castsi128_si512(_mm_maskz_loadu_epi32(pm, xz)));
                }
                KX_UNROLL
                for (int r = 0; r < R; r++) {
                    __m512i p = _mm512_dpbusd_epi32(c, u[r], x);
                    acc[e][r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_mul_ps(dw[r], dx),
                                                   acc[e][r][t]);
                }
            }
        }
    }
    KX_UNROLL
    for (int r = 0; r < R; r++)
        KX_UNROLL
    for (int t = 0; t < T; t++)
        out[r * KX_TILE + t] = _mm512_reduce_add_ps(_mm512_add_ps(acc[0][r][t], acc[1][r][t]));
}

#define KZ_CASE(R, T, K, X)                                                                        \
    case T:                                                                                        \
        kz_tile(W, rb, xp, n, out, R, T, K, X);                                                    \
        break;

#define KZ_SWITCH(R, K, X)                                                                         \
    switch (nt) {                                                                                  \
        KZ_CASE(R, 1, K, X)                                                                        \
        KZ_CASE(R, 2, K, X)                                                                        \
        KZ_CASE(R, 3, K, X)                                                                        \
    default:                                                                                       \
        kz_tile(W, rb, xp, n, out, R, 4, K, X);                                                    \
        break;                                                                                     \
    }

/* nr rows (1 or 2) against nt tokens (1-4); ready: take the pair vectors
 * ready made (one row only) */
#define KZ_TILE_FN(NAME, K)                                                                        \
    KX_TGT static void NAME(const uint8_t *W, size_t rb, const uint8_t *const *xp, int n,          \
                            float *out, int nr, int nt, int ready)                                 \
    {                                                                                              \
        if (nr == 2)                                                                               \
            KZ_SWITCH(2, K, 0)                                                                     \
        else if (ready)                                                                            \
            KZ_SWITCH(1, K, 1)                                                                     \
        else                                                                                       \
            KZ_SWITCH(1, K, 0)                                                                     \
    }

KZ_TILE_FN(kz_q8_0, KZ_Q8_0)
KZ_TILE_FN(kz_q4_0, KZ_Q4_0)
KZ_TILE_FN(kz_q5_0, KZ_Q5_0)

typedef void (*kz_tile_fn)(const uint8_t *W, size_t rb, const uint8_t *const *xp, int n, float *out,
                           int nr, int nt, int ready);

/* Fewer than 8 tokens walk one row at a time: two interleaved row streams
 * measured at half the memory rate of one on this machine (bench_kernels:
 * 4 tokens 1.7x the per-token rate of 1 with one row, 1.0x with two), while
 * from 8 tokens on the input reuse of two rows wins. */
static void kz_drive(kz_tile_fn fn, const uint8_t *W, size_t rb, int n, const uint8_t *prep,
                     size_t ps, int n_tok, float *y, int ys, int r0, int r1)
{
    const int rstep = n_tok < 8 ? 1 : KZ_R;
    /* ready-made pair vectors triple the input a row visit reads: worth it
     * while the visit's inputs stay in L1 (48 KiB here, shared with the
     * streaming weights) */
    const int ready =
        rstep == 1 && (size_t)(n_tok < KX_TILE ? n_tok : KX_TILE) * 3 * (size_t)n <= 36864;
    for (int c0 = 0; c0 < n_tok; c0 += KX_TCHUNK) {
        int c1 = n_tok - c0 < KX_TCHUNK ? n_tok : c0 + KX_TCHUNK;
        for (int r = r0; r < r1; r += rstep) {
            int nr = r1 - r < rstep ? r1 - r : rstep;
            if (rstep == 2 && r + PF_ROWS + nr <= r1)
                kz_prefetch(W + (size_t)(r + PF_ROWS) * rb, rb * (size_t)nr);
            for (int t0 = c0; t0 < c1; t0 += KX_TILE) {
                int nt = c1 - t0 < KX_TILE ? c1 - t0 : KX_TILE;
                const uint8_t *xp[KX_TILE];
                float out[KZ_R * KX_TILE];
                for (int i = 0; i < nt; i++)
                    xp[i] = prep + (size_t)(t0 + i) * ps;
                fn(W + (size_t)r * rb, rb, xp, n, out, nr, nt, ready);
                for (int k = 0; k < nr; k++)
                    for (int i = 0; i < nt; i++)
                        y[(size_t)(t0 + i) * (size_t)ys + (size_t)(r + k)] = out[k * KX_TILE + i];
            }
        }
    }
}

#define KZ_MM(NAME)                                                                                \
    static void NAME##_mm(const uint8_t *W, size_t rb, int n, const uint8_t *p, size_t ps, int nt, \
                          float *y, int ys, int r0, int r1)                                        \
    {                                                                                              \
        kz_drive(NAME, W, rb, n, p, ps, nt, y, ys, r0, r1);                                        \
    }

KZ_MM(kz_q8_0)
KZ_MM(kz_q4_0)
KZ_MM(kz_q5_0)

/* ---- 512-bit Q4_K -------------------------------------------------------
 * Per 256-element block, two 64-byte loads hold the 4-bit values of all
 * eight 32-element sub-blocks: low nibbles of bytes 0-31 are sub-block 0,
 * high nibbles sub-block 1, and so on. Unpacking and regrouping the 128-bit
 * lanes gives vectors of sub-blocks (0,1), (2,3), (4,5), (6,7), which line
 * up with 64 consecutive prepared inputs, so the inputs are plain memory
 * operands. Each vector's byte products go to int16 pair sums (maddubs:
 * at most 2*15*127) and are then multiplied by the sub-blocks' 6-bit scales
 * into int32 lanes (dpwssd): the block's integer is the portable path's. The
 * row is unpacked once for up to four tokens. */

/* The 8 scales (bytes 0-7) and 8 mins (bytes 8-15) of a q4_K block from
 * its 12 packed bytes (kx_k4_scales in vector registers: fewer instructions
 * than the scalar version and no moves between register files). */
KX_INLINE __m128i k4z_scales(const uint8_t *s12)
{
    /* 16 bytes from the scales: the last 4 are values, unused */
    __m128i v = _mm_loadu_si128((const __m128i *)s12);
    __m128i a =
        _mm_shuffle_epi8(v, _mm_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11));
    __m128i b =
        _mm_shuffle_epi8(v, _mm_setr_epi8(-1, -1, -1, -1, 0, 1, 2, 3, -1, -1, -1, -1, 4, 5, 6, 7));
    /* sc0-3 = q0-3 & 63, sc4-7 = (q8-11 & 15) | (q0-3 >> 6) << 4,
     * m0-3 = q4-7 & 63, m4-7 = (q8-11 >> 4) | (q4-7 >> 6) << 4 */
    __m128i l1 =
        _mm_and_si128(a, _mm_setr_epi8(63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 0, 0, 0, 0));
    __m128i l2 = _mm_and_si128(_mm_srli_epi16(a, 4),
                               _mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 15, 15, 15, 15));
    __m128i h = _mm_and_si128(_mm_srli_epi16(b, 2), _mm_set1_epi8(0x30));
    return _mm_or_si128(_mm_or_si128(l1, l2), h);
}

#define K4Z_T 8 /* tokens per row visit */

KX_INLINE void k4z_tile(const uint8_t *row, const uint8_t *const *xp, int n, float *out,
                        const int T)
{
    __m512 acc[K4Z_T];
    __m256 accm[K4Z_T];
    KX_UNROLL
    for (int t = 0; t < T; t++) {
        acc[t] = _mm512_setzero_ps();
        accm[t] = _mm256_setzero_ps();
    }
    const __m512i m4 = _mm512_set1_epi8(15);
    /* int16 lanes of a sub-block pair's scale vector: scale 2k in words 0-15,
     * 2k+1 in words 16-31, zero-extended by pshufb's -1 */
    __m512i sidx[4];
    KX_UNROLL
    for (int k = 0; k < 4; k++) {
        __m128i lo = _mm_set1_epi16((short)(0xff00 | (2 * k)));
        __m128i hi = _mm_set1_epi16((short)(0xff00 | (2 * k + 1)));
        sidx[k] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set_m128i(lo, lo)),
                                     _mm256_set_m128i(hi, hi), 1);
    }
    /* words 2j and 2j+1 of the mins vector: min j (byte 8+j) */
    const __m256i midx =
        _mm256_setr_epi8(8, -1, 8, -1, 9, -1, 9, -1, 10, -1, 10, -1, 11, -1, 11, -1, 12, -1, 12, -1,
                         13, -1, 13, -1, 14, -1, 14, -1, 15, -1, 15, -1);
    const int nb = n / KQ_K;
    for (int b = 0; b < nb; b++, row += KB_Q4_K) {
        __m128i sm = k4z_scales(row + 4);
        __m512i sm5 = _mm512_broadcast_i32x4(sm);
        __m512i sc[4];
        KX_UNROLL
        for (int k = 0; k < 4; k++)
            sc[k] = _mm512_shuffle_epi8(sm5, sidx[k]);
        __m256i mins = _mm256_shuffle_epi8(_mm512_castsi512_si256(sm5), midx);
        __m512i w[4];
        KX_UNROLL
        for (int h = 0; h < 2; h++) {
            __m512i raw = _mm512_loadu_si512((const void *)(row + 16 + 64 * h));
            __m512i lo = _mm512_and_si512(raw, m4);
            __m512i hi = _mm512_and_si512(_mm512_srli_epi16(raw, 4), m4);
            w[2 * h] = _mm512_shuffle_i64x2(lo, hi, _MM_SHUFFLE(1, 0, 1, 0));
            w[2 * h + 1] = _mm512_shuffle_i64x2(lo, hi, _MM_SHUFFLE(3, 2, 3, 2));
        }
        /* [d, dmin] */
        __m128 dd = _mm_cvtph_ps(_mm_cvtsi32_si128((int)kern_ld32(row)));
        KX_UNROLL
        for (int t = 0; t < T; t++) {
            const uint8_t *x = xp[t] + (size_t)KQ_K * b;
            __m512i s0 = _mm512_dpwssd_epi32(
                _mm512_setzero_si512(),
                _mm512_maddubs_epi16(w[0], _mm512_loadu_si512((const void *)x)), sc[0]);
            __m512i s1 = _mm512_dpwssd_epi32(
                _mm512_setzero_si512(),
                _mm512_maddubs_epi16(w[1], _mm512_loadu_si512((const void *)(x + 64))), sc[1]);
            s0 = _mm512_dpwssd_epi32(
                s0, _mm512_maddubs_epi16(w[2], _mm512_loadu_si512((const void *)(x + 128))), sc[2]);
            s1 = _mm512_dpwssd_epi32(
                s1, _mm512_maddubs_epi16(w[3], _mm512_loadu_si512((const void *)(x + 192))), sc[3]);
            __m128 ddx = _mm_mul_ps(dd, _mm_broadcast_ss(KX_XD(xp[t], n) + b));
            __m256i pm = _mm256_madd_epi16(kx_load(KX_XBS(xp[t], n) + 16 * b), mins);
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1)),
                                     _mm512_broadcastss_ps(ddx), acc[t]);
            accm[t] = _mm256_fmadd_ps(
                _mm256_cvtepi32_ps(pm),
                _mm256_permutexvar_ps(_mm256_set1_epi32(1), _mm256_castps128_ps256(ddx)), accm[t]);
        }
    }
    KX_UNROLL
    for (int t = 0; t < T; t++)
        out[t] = _mm512_reduce_add_ps(acc[t]) - kx_hsum(accm[t]);
}

#define K4Z_CASE(T)                                                                                \
    case T:                                                                                        \
        k4z_tile(row, xp, n, out, T);                                                              \
        break;

KX_TGT static void k4z_q4_K(const uint8_t *row, const uint8_t *const *xp, int n, float *out, int nt)
{
    switch (nt) {
        K4Z_CASE(1)
        K4Z_CASE(2)
        K4Z_CASE(3)
        K4Z_CASE(4)
        K4Z_CASE(5)
        K4Z_CASE(6)
        K4Z_CASE(7)
    default:
        k4z_tile(row, xp, n, out, 8);
        break;
    }
}

/* kx_drive with tiles of K4Z_T tokens: a row is unpacked once for eight. */
/* kx_drive with tiles of K4Z_T tokens: a row is unpacked once for eight. */
static void kk_drive(kx_tile_fn fn, const uint8_t *W, size_t rb, int n, const uint8_t *prep,
                     size_t ps, int n_tok, float *y, int ys, int r0, int r1)
{
    for (int c0 = 0; c0 < n_tok; c0 += KX_TCHUNK) {
        int c1 = n_tok - c0 < KX_TCHUNK ? n_tok : c0 + KX_TCHUNK;
        for (int r = r0; r < r1; r++) {
            const uint8_t *row = W + (size_t)r * rb;
            if (n_tok >= 8 && r + PF_ROWS < r1) kz_prefetch(row + PF_ROWS * rb, rb);
            for (int t0 = c0; t0 < c1; t0 += K4Z_T) {
                int nt = c1 - t0 < K4Z_T ? c1 - t0 : K4Z_T;
                const uint8_t *xp[K4Z_T];
                float out[K4Z_T];
                for (int i = 0; i < nt; i++)
                    xp[i] = prep + (size_t)(t0 + i) * ps;
                fn(row, xp, n, out, nt);
                for (int i = 0; i < nt; i++)
                    y[(size_t)(t0 + i) * (size_t)ys + (size_t)r] = out[i];
            }
        }
    }
}

static void k4z_drive(const uint8_t *W, size_t rb, int n, const uint8_t *prep, size_t ps, int n_tok,
                      float *y, int ys, int r0, int r1)
{
    kk_drive(k4z_q4_K, W, rb, n, prep, ps, n_tok, y, ys, r0, r1);
}

/* ---- 512-bit Q6_K -------------------------------------------------------
 * Per 128-element half: one 64-byte load of the low 4 bits (bytes 0-31 give
 * elements 0-31 and 64-95, bytes 32-63 elements 32-63 and 96-127) and the
 * 32 bytes of high 2 bits, broadcast to both 256-bit halves and shifted per
 * half by a variable word shift, give two vectors of 64 consecutive 6-bit
 * values, plain memory operands for the inputs. Values stay unsigned
 * (0..63, maddubs pair sums at most 2*63*127); the -32 offset is taken off
 * once per block through the per-16 input sums, as in the AVX2 kernel. */
KX_INLINE void k6z_tile(const uint8_t *row, const uint8_t *const *xp, int n, float *out,
                        const int T)
{
    __m512 acc[K4Z_T];
    KX_UNROLL
    for (int t = 0; t < T; t++)
        acc[t] = _mm512_setzero_ps();
    const __m512i m4 = _mm512_set1_epi8(15), m30 = _mm512_set1_epi8(0x30);
    /* word shifts of the high bits: elements 0-31 / 32-63 of a half take qh
     * bits 0-1 / 2-3, elements 64-95 / 96-127 bits 4-5 / 6-7 */
    const __m512i s01 = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
    const __m512i s23 = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(6), 1);
    /* scale vector k: words 0-7, 8-15, 16-23, 24-31 take scales 4k .. 4k+3 */
    __m512i sidx[4];
    KX_UNROLL
    for (int k = 0; k < 4; k++)
        sidx[k] = _mm512_inserti64x4(
            _mm512_castsi256_si512(_mm256_set_m128i(_mm_set1_epi16((short)(4 * k + 1)),
                                                    _mm_set1_epi16((short)(4 * k)))),
            _mm256_set_m128i(_mm_set1_epi16((short)(4 * k + 3)),
                             _mm_set1_epi16((short)(4 * k + 2))),
            1);
    const int nb = n / KQ_K;
    for (int b = 0; b < nb; b++, row += KB_Q6_K) {
        __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(row + 192)));
        __m512i sc5 = _mm512_castsi256_si512(sc16);
        __m512i scv[4], v[4];
        KX_UNROLL
        for (int k = 0; k < 4; k++)
            scv[k] = _mm512_permutexvar_epi16(sidx[k], sc5);
        KX_UNROLL
        for (int h = 0; h < 2; h++) {
            __m512i l = _mm512_loadu_si512((const void *)(row + 64 * h));
            __m512i hb = _mm512_broadcast_i64x4(kx_load(row + 128 + 32 * h));
            __m512i h01 = _mm512_and_si512(_mm512_slli_epi16(_mm512_srlv_epi16(hb, s01), 4), m30);
            __m512i h23 = _mm512_and_si512(_mm512_slli_epi16(_mm512_srlv_epi16(hb, s23), 4), m30);
            v[2 * h] = _mm512_or_si512(_mm512_and_si512(l, m4), h01);
            v[2 * h + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l, 4), m4), h23);
        }
        float d = kx_h2f(row + 208);
        KX_UNROLL
        for (int t = 0; t < T; t++) {
            const uint8_t *x = xp[t] + (size_t)KQ_K * b;
            __m512i s0 = _mm512_dpwssd_epi32(
                _mm512_setzero_si512(),
                _mm512_maddubs_epi16(v[0], _mm512_loadu_si512((const void *)x)), scv[0]);
            __m512i s1 = _mm512_dpwssd_epi32(
                _mm512_setzero_si512(),
                _mm512_maddubs_epi16(v[1], _mm512_loadu_si512((const void *)(x + 64))), scv[1]);
            s0 = _mm512_dpwssd_epi32(
                s0, _mm512_maddubs_epi16(v[2], _mm512_loadu_si512((const void *)(x + 128))),
                scv[2]);
            s1 = _mm512_dpwssd_epi32(
                s1, _mm512_maddubs_epi16(v[3], _mm512_loadu_si512((const void *)(x + 192))),
                scv[3]);
            /* the -32 offset of every value: -32 * sum_g sc[g] * bs[g] */
            __m256i corr =
                _mm256_slli_epi32(_mm256_madd_epi16(kx_load(KX_XBS(xp[t], n) + 16 * b), sc16), 5);
            __m512i sum = _mm512_sub_epi32(_mm512_add_epi32(s0, s1), _mm512_zextsi256_si512(corr));
            float dx = KX_XD(xp[t], n)[b];
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_set1_ps(d * dx), acc[t]);
        }
    }
    KX_UNROLL
    for (int t = 0; t < T; t++)
        out[t] = _mm512_reduce_add_ps(acc[t]);
}

#define K6Z_CASE(T)                                                                                \
    case T:                                                                                        \
        k6z_tile(row, xp, n, out, T);                                                              \
        break;

KX_TGT static void k6z_q6_K(const uint8_t *row, const uint8_t *const *xp, int n, float *out, int nt)
{
    switch (nt) {
        K6Z_CASE(1)
        K6Z_CASE(2)
        K6Z_CASE(3)
        K6Z_CASE(4)
        K6Z_CASE(5)
        K6Z_CASE(6)
        K6Z_CASE(7)
    default:
        k6z_tile(row, xp, n, out, 8);
        break;
    }
}

static void k6z_drive(const uint8_t *W, size_t rb, int n, const uint8_t *prep, size_t ps, int n_tok,
                      float *y, int ys, int r0, int r1)
{
    kk_drive(k6z_q6_K, W, rb, n, prep, ps, n_tok, y, ys, r0, r1);
}

void kern_ops_avx512(struct kern_ops *ops)
{
    ops->name = "avx512";
    kx_fill(ops);
    ops->mm[GGML_TYPE_Q8_0] = kz_q8_0_mm;
    ops->mm[GGML_TYPE_Q4_0] = kz_q4_0_mm;
    ops->mm[GGML_TYPE_Q5_0] = kz_q5_0_mm;
    ops->mm[GGML_TYPE_Q4_K] = k4z_drive;
    ops->mm[GGML_TYPE_Q6_K] = k6z_drive;
}

#else

void kern_ops_avx512(struct kern_ops *ops)
{
    (void)ops;
}

#endif
