/* AVX-512 (F, BW, VL, VNNI) matmul kernels: the shared x86 kernels with the
 * byte and word dot products fused by VNNI. Selected at run time from CPUID;
 * per-function target attributes keep the rest of the binary portable. */
#include "engine/kernels_int.h"

#if defined(__x86_64__)

#define KX_TGT           __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))
#define KX_DOT(a, u, s)  _mm256_dpbusd_epi32((a), (u), (s))
#define KX_DOTW(a, p, w) _mm256_dpwssd_epi32((a), (p), (w))

#include "engine/kernels_x86.h"

/* ---- 512-bit kernels for Q4_0, Q5_0 --------------------------------------
 * (Q8_0 has the row-group kernels further down.)
 * Two blocks per vector. Weights become unsigned bytes u with a zero point z
 * (q4_0: z=8; q5_0: z=16) so VNNI's u8 x s8 product applies directly;
 * -z*sum(x) enters lane 0 of each block, keeping the block's integer exact.
 * The input's per-pair section (kernels_int.h) holds the pair's scales and
 * -sum(x) already spread over the lanes, so a token costs two loads and a
 * shift per pair instead of gathering and permuting scalars for every row. */

#define KZ_INLINE KX_INLINE
#define KZ_R      2

enum kz_kind { KZ_Q4_0, KZ_Q5_0 };

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
    const size_t bb = K == KZ_Q4_0 ? KB_Q4_0 : KB_Q5_0;
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

KZ_MM(kz_q4_0)
KZ_MM(kz_q5_0)

#define K4Z_T 8 /* tokens per row visit of the Q6_K kernel */

/* kern_drive_tiles with tiles of K4Z_T tokens: a row is unpacked once for eight. */
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

/* ---- 512-bit Q8_0, sixteen rows per vector --------------------------------
 * The kernels above put one row's elements in a vector's lanes, so every
 * (row, token, block pair) ends in its own int->float epilogue; with several
 * tokens that epilogue, not memory, bounds them. Here lane i of every vector
 * is row i of a group of 16: a pair of blocks (68 bytes per row: d, 32 values,
 * d, 32 values = 17 dwords) is loaded from the 16 rows and transposed in
 * registers, so dword k of the pair for all 16 rows sits in one vector. One
 * VNNI dot product against 4 input bytes broadcast from memory then serves 16
 * rows, and a block's exact integer sum for 16 rows comes out in one vector:
 * the epilogue (convert, scale, add) runs once per 16 rows. The transposition
 * is paid once per row visit whatever the number of tokens, and the weights
 * stay as mmap'd (no repacked copy, no extra memory).
 *
 * The d bytes of a pair sit in dword 0 (bytes 0-1) and dword 8 (bytes 2-3);
 * they are cleared in the weight vectors, so those dwords can take any input
 * bytes there: the input dwords are read unaligned at the matching offsets
 * (block 2p's values start 2 bytes into dword 0). Weights become unsigned
 * (w+128) for VNNI's u8 x s8 product; -128*sum(x) starts each block's sum.
 * Each lane computes sum_b (dw*dx)*isum_b in block order with separate
 * multiply and add: the portable path's float operations, so the results are
 * bit-identical to it and do not depend on how many tokens or rows share a
 * visit. */

#define KT_ROWS 16
/* loops over 16 rows and 17 dwords must unroll fully too */
#define KT_UNROLL _Pragma("GCC unroll 32")
#define KT_T      8   /* tokens per row-group visit */
#define KT_PF     512 /* bytes ahead each row's stream is prefetched */
/* Bytes ahead the packed stream is prefetched: the hardware prefetcher
 * alone left the packed kernels at 1/3 of their rate from DRAM with 8 tokens
 * (2-8 KiB ahead measured alike; nearer is better for one token). */
#define KT_PPF 4096

/* v[k] lane i = dword k of r[i], for 16 rows of 16 dwords. */
KX_INLINE void kt_transpose16(const __m512i r[16], __m512i v[16])
{
    __m512i a[16], b[16];
    KT_UNROLL
    for (int i = 0; i < 8; i++) {
        a[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        a[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    /* b[4j+c], 128-bit lane L: dword 4L+c of rows 4j..4j+3 */
    KT_UNROLL
    for (int j = 0; j < 4; j++) {
        b[4 * j + 0] = _mm512_unpacklo_epi64(a[4 * j + 0], a[4 * j + 2]);
        b[4 * j + 1] = _mm512_unpackhi_epi64(a[4 * j + 0], a[4 * j + 2]);
        b[4 * j + 2] = _mm512_unpacklo_epi64(a[4 * j + 1], a[4 * j + 3]);
        b[4 * j + 3] = _mm512_unpackhi_epi64(a[4 * j + 1], a[4 * j + 3]);
    }
    /* a 4x4 transpose of 128-bit lanes for each c */
    KT_UNROLL
    for (int c = 0; c < 4; c++) {
        __m512i e0 = _mm512_shuffle_i32x4(b[c], b[4 + c], _MM_SHUFFLE(1, 0, 1, 0));
        __m512i e1 = _mm512_shuffle_i32x4(b[c], b[4 + c], _MM_SHUFFLE(3, 2, 3, 2));
        __m512i e2 = _mm512_shuffle_i32x4(b[8 + c], b[12 + c], _MM_SHUFFLE(1, 0, 1, 0));
        __m512i e3 = _mm512_shuffle_i32x4(b[8 + c], b[12 + c], _MM_SHUFFLE(3, 2, 3, 2));
        v[c] = _mm512_shuffle_i32x4(e0, e2, _MM_SHUFFLE(2, 0, 2, 0));
        v[4 + c] = _mm512_shuffle_i32x4(e0, e2, _MM_SHUFFLE(3, 1, 3, 1));
        v[8 + c] = _mm512_shuffle_i32x4(e1, e3, _MM_SHUFFLE(2, 0, 2, 0));
        v[12 + c] = _mm512_shuffle_i32x4(e1, e3, _MM_SHUFFLE(3, 1, 3, 1));
    }
}

KX_INLINE __m512i kt_bcast(const uint8_t *p)
{
    return _mm512_set1_epi32((int)kern_ld32(p));
}

/* acc + dpbusd(u, the 4 bytes at p in every lane), the bytes read by the
 * product itself ({1to16}): clang folds kt_bcast into it, gcc (12) emits a
 * separate broadcast, one more instruction per product. */
typedef int32_t __attribute__((may_alias, aligned(1))) kt_i32u;
/* the same for vpdpwssd (signed word pairs) */
KX_INLINE __m512i kt_dotw_bcast(__m512i acc, __m512i w, const uint8_t *p)
{
#if defined(__clang__)
    return _mm512_dpwssd_epi32(acc, w, _mm512_set1_epi32(*(const kt_i32u *)p));
#else
    __asm__("vpdpwssd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(w), "m"(*(const kt_i32u *)p));
    return acc;
#endif
}
#define KT_PIN(v) __asm__("" : "+v"(v))
KX_INLINE __m512i kt_dot_bcast(__m512i acc, __m512i u, const uint8_t *p)
{
#if defined(__clang__)
    return _mm512_dpbusd_epi32(acc, u, _mm512_set1_epi32(*(const kt_i32u *)p));
#else
    __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(u), "m"(*(const kt_i32u *)p));
    return acc;
#endif
}

/* A group of 16 rows against T tokens: y[t * ys + i] for row i, lanes in
 * sm stored. Unpacked (P 0): rows [0, nr) at W (lanes past nr repeat the
 * last row). Packed (P 1): the group's vectors at pk, as kern_pack wrote
 * them (the transposition done once at load: one stream of memory instead
 * of 16 rows read side by side, which measured at 2/3 of one stream's
 * rate from DRAM here, and no shuffles). */
KX_INLINE void kt_q8_0_tile(const uint8_t *W, size_t rb, int nr, const uint8_t *pk, unsigned sm,
                            const uint8_t *const *xp, int n, float *y, int ys, const int T,
                            const int P)
{
    const int nb = n / KQ, np = (nb + 1) / 2;
    const uint8_t *rp[KT_ROWS];
    KT_UNROLL
    for (int i = 0; i < KT_ROWS; i++)
        rp[i] = W + (size_t)(i < nr ? i : nr - 1) * rb;
    const __m512i gidx = _mm512_mullo_epi32(
        _mm512_min_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                         _mm512_set1_epi32(nr - 1)),
        _mm512_set1_epi32((int)rb));
    const __m512i flip = _mm512_set1_epi8(-128);
    __m512 acc[KT_T];
    KT_UNROLL
    for (int t = 0; t < T; t++)
        acc[t] = _mm512_setzero_ps();
    for (int p = 0; p < np; p++) {
        const size_t off = (size_t)p * 2 * KB_Q8_0;
        const int two = 2 * p + 1 < nb;
        __m512i r[KT_ROWS], v[17];
        if (P) {
            KT_UNROLL
            for (int k = 0; k < 17; k++) {
                v[k] = _mm512_load_si512((const void *)(pk + ((size_t)p * 17 + (size_t)k) * 64));
                _mm_prefetch((const char *)pk + ((size_t)p * 17 + (size_t)k) * 64 + KT_PPF,
                             _MM_HINT_T0);
            }
        } else if (two) {
            KT_UNROLL
            for (int i = 0; i < KT_ROWS; i++) {
                r[i] = _mm512_loadu_si512((const void *)(rp[i] + off));
                _mm_prefetch((const char *)rp[i] + off + KT_PF, _MM_HINT_T0);
            }
        } else {
            /* the last, lone block: 34 bytes, nothing past the row read */
            KT_UNROLL
            for (int i = 0; i < KT_ROWS; i++)
                r[i] = _mm512_maskz_loadu_epi8(((__mmask64)1 << KB_Q8_0) - 1, rp[i] + off);
        }
        if (!P) {
            kt_transpose16(r, v);
            v[16] = two ? _mm512_i32gather_epi32(gidx, (const void *)(W + off + 64), 1)
                        : _mm512_setzero_si512();
        }
        __m512 dw0 = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(v[0]));
        __m512 dw1 = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(v[8], 16)));
        /* unsigned values; the d bytes cleared */
        KT_UNROLL
        for (int k = 0; k < 17; k++)
            v[k] = _mm512_xor_si512(v[k], flip);
        v[0] = _mm512_and_si512(v[0], _mm512_set1_epi32((int)0xffff0000u));
        v[8] = _mm512_and_si512(v[8], _mm512_set1_epi32(0xffff));
        KT_UNROLL
        for (int t = 0; t < T; t++) {
            const uint8_t *x = xp[t] + (size_t)KQ * 2 * p;
            const float *xd = KX_XD(xp[t], n) + 2 * p;
            const int32_t *xz = KX_XS(xp[t], n) + nb + 2 * p;
            /* dword 0: [d d x0 x1]; the first pair has no bytes before x0 */
            __m512i x0 =
                p ? kt_bcast(x - 2) : _mm512_set1_epi32((int)((uint32_t)kern_ld16(x) << 16));
            __m512i s0 = _mm512_dpbusd_epi32(_mm512_set1_epi32(xz[0]), v[0], x0);
            __m512i s0b = _mm512_dpbusd_epi32(_mm512_setzero_si512(), v[1], kt_bcast(x + 2));
            KT_UNROLL
            for (int k = 2; k < 9; k += 2) {
                s0 = _mm512_dpbusd_epi32(s0, v[k], kt_bcast(x + 4 * k - 2));
                if (k + 1 < 9) s0b = _mm512_dpbusd_epi32(s0b, v[k + 1], kt_bcast(x + 4 * k + 2));
            }
            s0 = _mm512_add_epi32(s0, s0b);
            __m512 sc0 = _mm512_mul_ps(dw0, _mm512_set1_ps(xd[0]));
            acc[t] = _mm512_add_ps(acc[t], _mm512_mul_ps(_mm512_cvtepi32_ps(s0), sc0));
            if (two) {
                __m512i s1 = _mm512_dpbusd_epi32(_mm512_set1_epi32(xz[1]), v[9], kt_bcast(x + 32));
                __m512i s1b = _mm512_dpbusd_epi32(_mm512_setzero_si512(), v[10], kt_bcast(x + 36));
                KT_UNROLL
                for (int k = 11; k < 17; k += 2) {
                    s1 = _mm512_dpbusd_epi32(s1, v[k], kt_bcast(x + 32 + 4 * (k - 9)));
                    s1b = _mm512_dpbusd_epi32(s1b, v[k + 1], kt_bcast(x + 32 + 4 * (k - 8)));
                }
                s1 = _mm512_add_epi32(s1, s1b);
                __m512 sc1 = _mm512_mul_ps(dw1, _mm512_set1_ps(xd[1]));
                acc[t] = _mm512_add_ps(acc[t], _mm512_mul_ps(_mm512_cvtepi32_ps(s1), sc1));
            }
        }
    }
    KT_UNROLL
    for (int t = 0; t < T; t++)
        _mm512_mask_storeu_ps(y + (size_t)t * (size_t)ys, (__mmask16)sm, acc[t]);
}

/* One function per type taking the token count and packing at run time;
 * each case inlines the tile with constants so its loops unroll. */
#define KT_CASE(F, T)                                                                              \
    case T:                                                                                        \
        if (pk)                                                                                    \
            F(W, rb, nr, pk, sm, xp, n, y, ys, T, 1);                                              \
        else                                                                                       \
            F(W, rb, nr, pk, sm, xp, n, y, ys, T, 0);                                              \
        break;

#define KT_TILE_FN(NAME, F)                                                                        \
    KX_TGT static void NAME(const uint8_t *W, size_t rb, int nr, const uint8_t *pk, unsigned sm,   \
                            const uint8_t *const *xp, int n, float *y, int ys, int nt)             \
    {                                                                                              \
        switch (nt) {                                                                              \
            KT_CASE(F, 1)                                                                          \
            KT_CASE(F, 2)                                                                          \
            KT_CASE(F, 3)                                                                          \
            KT_CASE(F, 4)                                                                          \
            KT_CASE(F, 5)                                                                          \
            KT_CASE(F, 6)                                                                          \
            KT_CASE(F, 7)                                                                          \
        default:                                                                                   \
            KT_CASE(F, 8)                                                                          \
        }                                                                                          \
    }

KT_TILE_FN(kt_q8_0, kt_q8_0_tile)

typedef void (*kt_tile_fn)(const uint8_t *W, size_t rb, int nr, const uint8_t *pk, unsigned sm,
                           const uint8_t *const *xp, int n, float *y, int ys, int nt);

/* Row groups of 16 in the outer loop, tiles of up to 8 tokens inside: a
 * group's rows are transposed (or its packed vectors read) once per tile.
 * Unpacked (pk NULL): groups of rows [r0, r1) from r0, nr rows each (the
 * last one shorter) at W. Packed: pk holds groups of 16 rows from row 0, gb
 * bytes each, so a range cut inside a group stores only its rows (sm). Every
 * row-group kernel goes through here. */
static void kt_drive(kt_tile_fn fn, const uint8_t *W, size_t rb, const uint8_t *pk, size_t gb,
                     int n, const uint8_t *prep, size_t ps, int n_tok, float *y, int ys, int r0,
                     int r1)
{
    const int g0 = pk ? r0 / KT_ROWS * KT_ROWS : r0;
    for (int c0 = 0; c0 < n_tok; c0 += KX_TCHUNK) {
        int c1 = n_tok - c0 < KX_TCHUNK ? n_tok : c0 + KX_TCHUNK;
        for (int base = g0; base < r1; base += KT_ROWS) {
            int lo = r0 > base ? r0 - base : 0, hi = r1 - base < KT_ROWS ? r1 - base : KT_ROWS;
            unsigned sm = (hi >= KT_ROWS ? 0xffffu : (1u << hi) - 1) & ~((1u << lo) - 1);
            const uint8_t *gw = pk ? W : W + (size_t)base * rb;
            const uint8_t *gp = pk ? pk + (size_t)(base / KT_ROWS) * gb : NULL;
            for (int t0 = c0; t0 < c1; t0 += KT_T) {
                int nt = c1 - t0 < KT_T ? c1 - t0 : KT_T;
                const uint8_t *xp[KT_T];
                for (int i = 0; i < nt; i++)
                    xp[i] = prep + (size_t)(t0 + i) * ps;
                fn(gw, rb, hi, gp, sm, xp, n, y + (size_t)t0 * (size_t)ys + (size_t)base, ys, nt);
            }
        }
    }
}

static void kt_q8_0_mm(const uint8_t *W, size_t rb, int n, const uint8_t *prep, size_t ps,
                       int n_tok, float *y, int ys, int r0, int r1)
{
    /* the gather's offsets are int32 */
    if (rb > (size_t)INT32_MAX / KT_ROWS) {
        kx_q8_0_mm(W, rb, n, prep, ps, n_tok, y, ys, r0, r1);
        return;
    }
    kt_drive(kt_q8_0, W, rb, NULL, 0, n, prep, ps, n_tok, y, ys, r0, r1);
}

/* ---- 512-bit Q4_K, sixteen rows per vector --------------------------------
 * The same scheme for q4_K's 144-byte blocks: per 16-row group and block, the
 * 16 header bytes (d, dmin, 12 bytes of 6-bit scales and mins) and the 128
 * bytes of 4-bit values are transposed so lane i holds row i. Dword k of the
 * values holds 4 low nibbles of sub-block 2(k/8) and 4 high nibbles of
 * sub-block 2(k/8)+1; masked and shifted they meet 4 input bytes broadcast
 * from memory in a VNNI product, and 8 of those give a sub-block's exact sum
 * for 16 rows, scaled by the rows' 6-bit scales with one integer multiply.
 * The mins meet the per-16 input sums by pairs of int16 (one dpwssd per
 * sub-block). The float epilogue per block is the portable path's, so results
 * are bit-identical to it for any batch and row range. */

/* Lane r of h[k] = dword k of row r's first 16 bytes (d, dmin, scales). */
KX_INLINE void kt_header16(const uint8_t *const *rp, size_t off, __m512i h[4])
{
    __m512i z[4];
    KT_UNROLL
    for (int j = 0; j < 4; j++) {
        /* 128-bit lane L: row 4L + j */
        __m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(rp[j] + off)));
        v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(rp[4 + j] + off)), 1);
        v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(rp[8 + j] + off)), 2);
        z[j] = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(rp[12 + j] + off)), 3);
    }
    __m512i t0 = _mm512_unpacklo_epi32(z[0], z[1]), t1 = _mm512_unpackhi_epi32(z[0], z[1]);
    __m512i t2 = _mm512_unpacklo_epi32(z[2], z[3]), t3 = _mm512_unpackhi_epi32(z[2], z[3]);
    h[0] = _mm512_unpacklo_epi64(t0, t2);
    h[1] = _mm512_unpackhi_epi64(t0, t2);
    h[2] = _mm512_unpacklo_epi64(t1, t3);
    h[3] = _mm512_unpackhi_epi64(t1, t3);
}

/* Lane i of v[k] = dword k of the 32 bytes at rp[i] + off, for 16 rows: an
 * 8x8 transpose in each 256-bit half (rows i and i+8 share a register), then
 * the halves' 128-bit lanes put in row order. */
KX_INLINE void kt_transpose8(const uint8_t *const *rp, size_t off, __m512i v[8])
{
    __m512i z[8], a[8], b[8];
    KT_UNROLL
    for (int i = 0; i < 8; i++)
        z[i] = _mm512_inserti64x4(_mm512_castsi256_si512(kx_load(rp[i] + off)),
                                  kx_load(rp[i + 8] + off), 1);
    KT_UNROLL
    for (int i = 0; i < 4; i++) {
        a[2 * i] = _mm512_unpacklo_epi32(z[2 * i], z[2 * i + 1]);
        a[2 * i + 1] = _mm512_unpackhi_epi32(z[2 * i], z[2 * i + 1]);
    }
    /* b[4j+c], 128-bit lanes: dword c / 4+c of rows 4j..4j+3, then of rows 8+4j.. */
    KT_UNROLL
    for (int j = 0; j < 2; j++) {
        b[4 * j + 0] = _mm512_unpacklo_epi64(a[4 * j + 0], a[4 * j + 2]);
        b[4 * j + 1] = _mm512_unpackhi_epi64(a[4 * j + 0], a[4 * j + 2]);
        b[4 * j + 2] = _mm512_unpacklo_epi64(a[4 * j + 1], a[4 * j + 3]);
        b[4 * j + 3] = _mm512_unpackhi_epi64(a[4 * j + 1], a[4 * j + 3]);
    }
    const __m512i lo = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13);
    const __m512i hi = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
    KT_UNROLL
    for (int c = 0; c < 4; c++) {
        v[c] = _mm512_permutex2var_epi64(b[c], lo, b[4 + c]);
        v[4 + c] = _mm512_permutex2var_epi64(b[c], hi, b[4 + c]);
    }
}

/* pshufb control taking bytes 2i and 2i+1 of every dword to its two words
 * ([b(2i), 0, b(2i+1), 0]) */
KX_INLINE __m512i kt_pair_ctl(int i)
{
    const __m512i l4 = _mm512_setr_epi32(0, 4, 8, 12, 0, 4, 8, 12, 0, 4, 8, 12, 0, 4, 8, 12);
    uint32_t c = 0x80008000u | (uint32_t)(2 * i) | (uint32_t)(2 * i + 1) << 16;
    return _mm512_add_epi32(_mm512_set1_epi32((int)c),
                            _mm512_or_si512(l4, _mm512_slli_epi32(l4, 16)));
}

/* pshufb control taking byte j of every dword to its low byte (others 0) */
KX_INLINE __m512i kt_byte_ctl(int j)
{
    const __m512i l4 = _mm512_setr_epi32(0, 4, 8, 12, 0, 4, 8, 12, 0, 4, 8, 12, 0, 4, 8, 12);
    return _mm512_add_epi32(_mm512_set1_epi32((int)(0x80808000u | (uint32_t)j)), l4);
}

KX_INLINE void kt_q4_K_tile(const uint8_t *W, size_t rb, int nr, const uint8_t *pk, unsigned sm,
                            const uint8_t *const *xp, int n, float *y, int ys, const int T,
                            const int P)
{
    const int nb = n / KQ_K;
    const uint8_t *rp[KT_ROWS];
    KT_UNROLL
    for (int i = 0; i < KT_ROWS; i++)
        rp[i] = W + (size_t)(i < nr ? i : nr - 1) * rb;
    const __m512i m4 = _mm512_set1_epi8(15);
    __m512 acc[KT_T];
    KT_UNROLL
    for (int t = 0; t < T; t++)
        acc[t] = _mm512_setzero_ps();
    for (int b = 0; b < nb; b++) {
        const size_t off = (size_t)b * KB_Q4_K;
        /* packed: 36 vectors per block, the 4 of the header first */
        const uint8_t *pb = pk + (size_t)b * 36 * 64;
        __m512i h[4];
        if (P) {
            /* the value vectors' prefetches go with their first use below */
            KT_UNROLL
            for (int k = 0; k < 4; k++) {
                h[k] = _mm512_load_si512((const void *)(pb + 64 * k));
                _mm_prefetch((const char *)pb + 64 * k + KT_PPF, _MM_HINT_T0);
            }
        } else {
            KT_UNROLL
            for (int i = 0; i < KT_ROWS; i++) {
                _mm_prefetch((const char *)rp[i] + off + KT_PF, _MM_HINT_T0);
                _mm_prefetch((const char *)rp[i] + off + KT_PF + 64, _MM_HINT_T0);
                _mm_prefetch((const char *)rp[i] + off + KT_PF + 128, _MM_HINT_T0);
            }
            kt_header16(rp, off, h);
        }
        __m512 dw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(h[0]));
        __m512 dm = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(h[0], 16)));
        /* bytes of sc[4]: scales 0-3 / 4-7; of mn[2]: mins 0-3 / 4-7 (kern_scale_min_k4) */
        const __m512i m6 = _mm512_set1_epi8(63), m30 = _mm512_set1_epi8(0x30);
        __m512i sc[2], mn[2];
        sc[0] = _mm512_and_si512(h[1], m6);
        mn[0] = _mm512_and_si512(h[2], m6);
        sc[1] = _mm512_or_si512(_mm512_and_si512(h[3], m4),
                                _mm512_and_si512(_mm512_srli_epi32(h[1], 2), m30));
        mn[1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(h[3], 4), m4),
                                _mm512_and_si512(_mm512_srli_epi32(h[2], 2), m30));
        __m512i sumi[KT_T];
        KT_UNROLL
        for (int c = 0; c < 4; c++) {
            /* 32-byte chunk c: low nibbles sub-block 2c, high nibbles 2c+1 */
            __m512i q[8];
            if (!P) kt_transpose8(rp, off + 16 + 32 * (size_t)c, q);
            KT_UNROLL
            for (int e = 0; e < 2; e++) {
                /* weights in the outer loop, tokens inside: the live set is
                 * one sum per token; packed weights are read again from L1
                 * for the high nibbles rather than held (held, gcc spilled) */
                const int j = 2 * c + e;
                __m512i sa[KT_T];
                KT_UNROLL
                for (int m = 0; m < 8; m++) {
                    const uint8_t *pv = pb + 64 * (4 + 8 * c + m);
                    if (P && !e) _mm_prefetch((const char *)pv + KT_PPF, _MM_HINT_T0);
                    __m512i v = P ? _mm512_load_si512((const void *)pv) : q[m];
                    __m512i w = _mm512_and_si512(e ? _mm512_srli_epi32(v, 4) : v, m4);
                    const size_t xo = (size_t)KQ_K * b + 32 * j + 4 * m;
                    KT_UNROLL
                    for (int t = 0; t < T; t++)
                        sa[t] = kt_dot_bcast(m ? sa[t] : _mm512_setzero_si512(), w, xp[t] + xo);
                }
                __m512i sj = _mm512_shuffle_epi8(sc[j / 4], kt_byte_ctl(j % 4));
                KT_UNROLL
                for (int t = 0; t < T; t++) {
                    sumi[t] = j ? _mm512_add_epi32(sumi[t], _mm512_mullo_epi32(sa[t], sj))
                                : _mm512_mullo_epi32(sa[t], sj);
                    /* gcc reassociates the sum over sub-blocks into a tree
                     * that keeps all 64 partial sums live (spilled): the
                     * empty asm pins the running sum here */
                    KT_PIN(sumi[t]);
                }
            }
        }
        /* mins: sum_j m[j] * bs32[j], two sub-blocks per dpwssd: words
         * [m(2k), m(2k+1)] of each row against the pair of sums of 32 */
        __m512i summ[KT_T];
        KT_UNROLL
        for (int k = 0; k < 4; k++) {
            __m512i mw = _mm512_shuffle_epi8(mn[k / 2], kt_pair_ctl(k % 2));
            KT_UNROLL
            for (int t = 0; t < T; t++)
                summ[t] =
                    kt_dotw_bcast(k ? summ[t] : _mm512_setzero_si512(), mw,
                                  (const uint8_t *)(KX_XBS(xp[t], n) + n / 16 + 8 * b) + 4 * k);
        }
        KT_UNROLL
        for (int t = 0; t < T; t++) {
            __m512 dx = _mm512_set1_ps(KX_XD(xp[t], n)[b]);
            __m512 a = _mm512_mul_ps(_mm512_mul_ps(dw, dx), _mm512_cvtepi32_ps(sumi[t]));
            __m512 mm = _mm512_mul_ps(_mm512_mul_ps(dm, dx), _mm512_cvtepi32_ps(summ[t]));
            acc[t] = _mm512_add_ps(acc[t], _mm512_sub_ps(a, mm));
        }
    }
    KT_UNROLL
    for (int t = 0; t < T; t++)
        _mm512_mask_storeu_ps(y + (size_t)t * (size_t)ys, (__mmask16)sm, acc[t]);
}

KT_TILE_FN(kt_q4_K, kt_q4_K_tile)

static void kt_q4_K_mm(const uint8_t *W, size_t rb, int n, const uint8_t *prep, size_t ps,
                       int n_tok, float *y, int ys, int r0, int r1)
{
    kt_drive(kt_q4_K, W, rb, NULL, 0, n, prep, ps, n_tok, y, ys, r0, r1);
}

/* ---- 512-bit Q6_K, sixteen rows per vector --------------------------------
 * The row-group scheme for q6_K's 210-byte blocks (ql[128] low nibbles,
 * qh[64] high bit pairs, 16 int8 scales, f16 d). Transposed per 16 rows:
 * the 16 scale bytes (4 vectors), d (1: the dword ending at the block's end,
 * d in its high half), ql in 4 chunks and qh in 2 chunks of 32 bytes (8
 * vectors each: dword m of a chunk, lane i = row i). Element 128h + 32j + 4m
 * + k of a row (half h, quarter j) is byte k of dword m of ql chunk 2h + j%2
 * (low nibble for j < 2, high for j >= 2) with bits 2j, 2j+1 of the same qh
 * byte of chunk h on top: one vector of 16 rows x 4 values unpacked with a
 * shift, a mask and one ternary-logic op, then one VNNI product against 4
 * input bytes broadcast from memory. Values stay unsigned (0..63); a group of
 * 16 elements is 4 products summed exactly, times its int8 scale per lane;
 * the -32 offset of every value is -32 * sum_g sc[g] * bs[g] (int16 pairs,
 * one dpwssd per two groups). The float epilogue per block is the portable
 * path's, so results are bit-identical to it for any batch and row range. */

#define KT_Q6_VECS 53 /* packed vectors per block and 16 rows: 4 + 1 + 32 + 16 */

/* shuffle control putting bytes 2q, 2q+1 of every dword in the high bytes of
 * its two words (srai by 8 then sign-extends them) */
KX_INLINE __m512i kt_pair_ctl(int q)
{
    const __m512i l4 = _mm512_setr_epi32(0, 4, 8, 12, 0, 4, 8, 12, 0, 4, 8, 12, 0, 4, 8, 12);
    uint32_t c = 0x00800080u | (uint32_t)(2 * q) << 8 | (uint32_t)(2 * q + 1) << 24;
    return _mm512_add_epi32(_mm512_set1_epi32((int)c),
                            _mm512_or_si512(_mm512_slli_epi32(l4, 8), _mm512_slli_epi32(l4, 24)));
}

KX_INLINE void kt_q6_K_tile(const uint8_t *W, size_t rb, int nr, const uint8_t *pk, unsigned sm,
                            const uint8_t *const *xp, int n, float *y, int ys, const int T,
                            const int P)
{
    const int nb = n / KQ_K;
    const uint8_t *rp[KT_ROWS];
    KT_UNROLL
    for (int i = 0; i < KT_ROWS; i++)
        rp[i] = W + (size_t)(i < nr ? i : nr - 1) * rb;
    const __m512i gidx = _mm512_mullo_epi32(
        _mm512_min_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                         _mm512_set1_epi32(nr - 1)),
        _mm512_set1_epi32((int)rb));
    const __m512i m4 = _mm512_set1_epi8(15), m30 = _mm512_set1_epi8(0x30);
    __m512 acc[KT_T];
    KT_UNROLL
    for (int t = 0; t < T; t++)
        acc[t] = _mm512_setzero_ps();
    for (int b = 0; b < nb; b++) {
        const size_t off = (size_t)b * KB_Q6_K;
        const uint8_t *pb = P ? pk + (size_t)b * KT_Q6_VECS * 64 : NULL;
        __m512i s[4], dv;
        if (P) {
            KT_UNROLL
            for (int k = 0; k < 4; k++)
                s[k] = _mm512_load_si512((const void *)(pb + 64 * k));
            dv = _mm512_load_si512((const void *)(pb + 64 * 4));
            KT_UNROLL
            for (int k = 0; k < KT_Q6_VECS; k++)
                _mm_prefetch((const char *)pb + 64 * k + KT_PPF, _MM_HINT_T0);
        } else {
            KT_UNROLL
            for (int i = 0; i < KT_ROWS; i++)
                KT_UNROLL
            for (int k = 0; k < 4; k++)
                _mm_prefetch((const char *)rp[i] + off + KT_PF + 64 * k, _MM_HINT_T0);
            kt_header16(rp, off + 192, s);
            dv = _mm512_i32gather_epi32(gidx, (const void *)(W + off + KB_Q6_K - 4), 1);
        }
        __m512 dw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(dv, 16)));
        /* sumi starts at the offset's -32 * sum_g sc[g] * bs[g] */
        __m512i sumi[KT_T];
        KT_UNROLL
        for (int t = 0; t < T; t++)
            sumi[t] = _mm512_setzero_si512();
        KT_UNROLL
        for (int q = 0; q < 8; q++) {
            __m512i pr = _mm512_srai_epi16(_mm512_shuffle_epi8(s[q / 2], kt_pair_ctl(q % 2)), 8);
            KT_UNROLL
            for (int t = 0; t < T; t++) {
                const uint8_t *bs = (const uint8_t *)(KX_XBS(xp[t], n) + 16 * b);
                sumi[t] = _mm512_dpwssd_epi32(sumi[t], pr, kt_bcast(bs + 4 * q));
            }
        }
        KT_UNROLL
        for (int t = 0; t < T; t++)
            sumi[t] = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(sumi[t], 5));
        KT_UNROLL
        for (int h = 0; h < 2; h++) {
            /* the half's ql chunks 2h, 2h+1 and qh chunk h, 8 vectors each */
            __m512i tq[3][8];
            const __m512i *qv[3];
            if (P) {
                qv[0] = (const __m512i *)(pb + 64 * (5 + 16 * h));
                qv[1] = (const __m512i *)(pb + 64 * (5 + 16 * h + 8));
                qv[2] = (const __m512i *)(pb + 64 * (37 + 8 * h));
            } else {
                kt_transpose8(rp, off + 64 * (size_t)h, tq[0]);
                kt_transpose8(rp, off + 64 * (size_t)h + 32, tq[1]);
                kt_transpose8(rp, off + 128 + 32 * (size_t)h, tq[2]);
                qv[0] = tq[0], qv[1] = tq[1], qv[2] = tq[2];
            }
            KT_UNROLL
            for (int j = 0; j < 4; j++)
                KT_UNROLL
            for (int gh = 0; gh < 2; gh++) {
                const int g = 8 * h + 2 * j + gh;
                __m512i sa[KT_T];
                KT_UNROLL
                for (int t = 0; t < T; t++)
                    sa[t] = _mm512_setzero_si512();
                KT_UNROLL
                for (int mm = 0; mm < 4; mm++) {
                    const int m = 4 * gh + mm;
                    __m512i l = _mm512_load_si512((const void *)&qv[j % 2][m]);
                    __m512i hb = _mm512_load_si512((const void *)&qv[2][m]);
                    if (j >= 2) l = _mm512_srli_epi32(l, 4);
                    /* bits 2j, 2j+1 of each qh byte to bits 4, 5 */
                    hb = j == 0   ? _mm512_slli_epi32(hb, 4)
                         : j == 1 ? _mm512_slli_epi32(hb, 2)
                         : j == 3 ? _mm512_srli_epi32(hb, 2)
                                  : hb;
                    /* (l & 15) | (hb & 0x30) */
                    __m512i w = _mm512_ternarylogic_epi32(l, _mm512_and_si512(hb, m30), m4, 0xEC);
                    KT_UNROLL
                    for (int t = 0; t < T; t++)
                        sa[t] = _mm512_dpbusd_epi32(
                            sa[t], w, kt_bcast(xp[t] + (size_t)KQ_K * b + 128 * h + 32 * j + 4 * m));
                }
                /* lane i: row i's int8 scale of group g */
                __m512i sg = _mm512_srai_epi32(_mm512_slli_epi32(s[g / 4], 24 - 8 * (g % 4)), 24);
                KT_UNROLL
                for (int t = 0; t < T; t++)
                    sumi[t] = _mm512_add_epi32(sumi[t], _mm512_mullo_epi32(sa[t], sg));
            }
        }
        KT_UNROLL
        for (int t = 0; t < T; t++) {
            __m512 dx = _mm512_set1_ps(KX_XD(xp[t], n)[b]);
            acc[t] = _mm512_add_ps(acc[t],
                                   _mm512_mul_ps(_mm512_mul_ps(dw, dx), _mm512_cvtepi32_ps(sumi[t])));
        }
    }
    KT_UNROLL
    for (int t = 0; t < T; t++)
        _mm512_mask_storeu_ps(y + (size_t)t * (size_t)ys, (__mmask16)sm, acc[t]);
}

KT_TILE_FN(kt_q6_K, kt_q6_K_tile)

static void kt_q6_K_mm(const uint8_t *W, size_t rb, int n, const uint8_t *prep, size_t ps,
                       int n_tok, float *y, int ys, int r0, int r1)
{
    /* the gather's offsets are int32 */
    if (rb > (size_t)INT32_MAX / KT_ROWS) {
        k6z_drive(W, rb, n, prep, ps, n_tok, y, ys, r0, r1);
        return;
    }
    kt_drive(kt_q6_K, W, rb, NULL, 0, n, prep, ps, n_tok, y, ys, r0, r1);
}

/* ---- packing ------------------------------------------------------------
 * The packed layout is the unpacked kernels' registers after transposition,
 * stored in order: per group of 16 rows (the last one padded by repeating its
 * last row) and per Q8_0 block pair, 17 vectors of 64 bytes (vector k, lane i:
 * bytes 4k..4k+3 of row i's pair, zeros past a lone last block); per Q4_K
 * block, 4 header vectors then 32 of values (chunk c, dword m: vector
 * 4+8c+m). The same bytes as the matrix, plus the padding of the last group.
 * Plain C: it runs once per matrix at load. */

static size_t kt_group_bytes(enum ggml_type t, int n_cols)
{
    if (t == GGML_TYPE_Q8_0 && n_cols % KQ == 0) return (size_t)(n_cols / KQ + 1) / 2 * 17 * 64;
    if (t == GGML_TYPE_Q4_K && n_cols % KQ_K == 0) return (size_t)(n_cols / KQ_K) * 36 * 64;
    if (t == GGML_TYPE_Q6_K && n_cols % KQ_K == 0)
        return (size_t)(n_cols / KQ_K) * KT_Q6_VECS * 64;
    return 0;
}

static size_t kt_pack_bytes(enum ggml_type t, int n_rows, int n_cols)
{
    size_t gb = kt_group_bytes(t, n_cols);
    if (!gb || n_rows <= 0 || n_cols <= 0) return 0;
    size_t ng = ((size_t)n_rows + KT_ROWS - 1) / KT_ROWS;
    return ng > SIZE_MAX / gb ? 0 : ng * gb;
}

/* The unpacked kernels' loads and transpositions, stored (non-temporal: the
 * copy is far larger than the caches and read back only by the kernels). */
KX_TGT static void kt_pack(enum ggml_type t, const uint8_t *W, int n_rows, int n_cols, uint8_t *dst)
{
    size_t rb = ggml_row_bytes(t, (uint64_t)n_cols), gb = kt_group_bytes(t, n_cols);
    int ng = (n_rows + KT_ROWS - 1) / KT_ROWS;
    for (int g = 0; g < ng; g++) {
        uint8_t *o = dst + (size_t)g * gb;
        const uint8_t *rp[KT_ROWS];
        for (int i = 0; i < KT_ROWS; i++)
            rp[i] = W + (size_t)(g * KT_ROWS + i < n_rows ? g * KT_ROWS + i : n_rows - 1) * rb;
        if (t == GGML_TYPE_Q8_0) {
            const int nb = n_cols / KQ;
            for (int p = 0; p < (nb + 1) / 2; p++) {
                const size_t off = (size_t)p * 2 * KB_Q8_0;
                const int two = 2 * p + 1 < nb;
                __m512i r[KT_ROWS], v[16];
                uint32_t c16[KT_ROWS];
                KT_UNROLL
                for (int i = 0; i < KT_ROWS; i++) {
                    r[i] =
                        two ? _mm512_loadu_si512((const void *)(rp[i] + off))
                            : _mm512_maskz_loadu_epi8(((__mmask64)1 << KB_Q8_0) - 1, rp[i] + off);
                    c16[i] = two ? kern_ld32(rp[i] + off + 64) : 0;
                }
                kt_transpose16(r, v);
                uint8_t *po = o + (size_t)p * 17 * 64;
                KT_UNROLL
                for (int k = 0; k < 16; k++)
                    _mm512_stream_si512((void *)(po + 64 * k), v[k]);
                _mm512_stream_si512((void *)(po + 64 * 16), _mm512_loadu_si512((const void *)c16));
            }
        } else if (t == GGML_TYPE_Q6_K) {
            for (int b = 0; b < n_cols / KQ_K; b++) {
                const size_t off = (size_t)b * KB_Q6_K;
                uint8_t *pb = o + (size_t)b * KT_Q6_VECS * 64;
                __m512i h[4];
                kt_header16(rp, off + 192, h);
                KT_UNROLL
                for (int k = 0; k < 4; k++)
                    _mm512_stream_si512((void *)(pb + 64 * k), h[k]);
                /* d in the high half of lane i, as the unpacked kernel's gather has it */
                uint32_t dd[KT_ROWS];
                for (int i = 0; i < KT_ROWS; i++)
                    dd[i] = (uint32_t)kern_ld16(rp[i] + off + 208) << 16;
                _mm512_stream_si512((void *)(pb + 64 * 4), _mm512_loadu_si512((const void *)dd));
                /* ql chunks 0-3, then qh chunks 0-1 */
                KT_UNROLL
                for (int c = 0; c < 6; c++) {
                    __m512i q[8];
                    kt_transpose8(rp, off + 32 * (size_t)c, q);
                    KT_UNROLL
                    for (int m = 0; m < 8; m++)
                        _mm512_stream_si512((void *)(pb + 64 * (5 + 8 * c + m)), q[m]);
                }
            }
        } else {
            for (int b = 0; b < n_cols / KQ_K; b++) {
                const size_t off = (size_t)b * KB_Q4_K;
                uint8_t *pb = o + (size_t)b * 36 * 64;
                __m512i h[4];
                kt_header16(rp, off, h);
                KT_UNROLL
                for (int k = 0; k < 4; k++)
                    _mm512_stream_si512((void *)(pb + 64 * k), h[k]);
                KT_UNROLL
                for (int c = 0; c < 4; c++) {
                    __m512i q[8];
                    kt_transpose8(rp, off + 16 + 32 * (size_t)c, q);
                    KT_UNROLL
                    for (int m = 0; m < 8; m++)
                        _mm512_stream_si512((void *)(pb + 64 * (4 + 8 * c + m)), q[m]);
                }
            }
        }
    }
    _mm_sfence();
}

static void kt_q8_0_pmm(const uint8_t *pk, int n, const uint8_t *p, size_t ps, int nt, float *y,
                        int ys, int r0, int r1)
{
    kt_drive(kt_q8_0, NULL, 0, pk, kt_group_bytes(GGML_TYPE_Q8_0, n), n, p, ps, nt, y, ys, r0, r1);
}

static void kt_q4_K_pmm(const uint8_t *pk, int n, const uint8_t *p, size_t ps, int nt, float *y,
                        int ys, int r0, int r1)
{
    kt_drive(kt_q4_K, NULL, 0, pk, kt_group_bytes(GGML_TYPE_Q4_K, n), n, p, ps, nt, y, ys, r0, r1);
}

/* ---- prepared inputs ------------------------------------------------------
 * kernels.c's prep_q8k, 16 elements per vector: the same bytes. max over |x|
 * with the NaN-ignoring operand order of fmaxf (vmaxps returns its second
 * operand when either is NaN), then one rounding of x * id under the current
 * mode as lrintf does (a NaN converts to INT_MIN, as lrintf's LONG_MIN, and
 * clamps to -127 either way). A group of 16 is one vector, so its sum is one
 * reduction; the sums of 32 follow from those. */
KX_TGT static void kt_prep_q8k(const float *x, int n, uint8_t *out)
{
    float *d = (float *)(out + n);
    int16_t *bsum = (int16_t *)(d + n / KQ_K);
    const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127);
    for (int b = 0; b < n / KQ_K; b++) {
        const float *xb = x + (size_t)b * KQ_K;
        __m512 m = _mm512_setzero_ps();
        for (int i = 0; i < KQ_K; i += 16)
            m = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(xb + i)), m);
        float amax = _mm512_reduce_max_ps(m);
        float id = amax > 0 ? 127.0f / amax : 0.0f;
        const __m512 vid = _mm512_set1_ps(id);
        int32_t s[KQ_K / 16];
        for (int g = 0; g < KQ_K / 16; g++) {
            __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(xb + 16 * g), vid));
            q = _mm512_min_epi32(_mm512_max_epi32(q, lo), hi);
            _mm_storeu_si128((__m128i *)(out + (size_t)b * KQ_K + 16 * g), _mm512_cvtepi32_epi8(q));
            s[g] = _mm512_reduce_add_epi32(q);
        }
        for (int g = 0; g < KQ_K / 16; g++) {
            int16_t v = (int16_t)s[g];
            memcpy(bsum + (size_t)b * 16 + g, &v, 2);
        }
        for (int g = 0; g < KQ_K / 32; g++) {
            int16_t v = (int16_t)(s[2 * g] + s[2 * g + 1]);
            memcpy(bsum + n / 16 + (size_t)b * 8 + g, &v, 2);
        }
        float db = amax / 127.0f;
        memcpy(d + b, &db, 4);
    }
}

/* kernels.c's prep_q8 for Q8_0/Q4_0/Q5_0 inputs: each block of 32 is two
 * vectors, with kt_prep_q8k's max and rounding (the same bytes). */
KX_TGT static void kt_prep_q8(const float *x, int n, int z, uint8_t *out)
{
    float *d = (float *)(out + n);
    int32_t *sum = (int32_t *)(d + n / KQ);
    const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127);
    for (int b = 0; b < n / KQ; b++) {
        __m512 x0 = _mm512_loadu_ps(x + (size_t)b * KQ),
               x1 = _mm512_loadu_ps(x + (size_t)b * KQ + 16);
        __m512 m = _mm512_max_ps(_mm512_abs_ps(x0), _mm512_setzero_ps());
        float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(x1), m));
        const __m512 vid = _mm512_set1_ps(amax > 0 ? 127.0f / amax : 0.0f);
        __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(x0, vid));
        __m512i q1 = _mm512_cvtps_epi32(_mm512_mul_ps(x1, vid));
        q0 = _mm512_min_epi32(_mm512_max_epi32(q0, lo), hi);
        q1 = _mm512_min_epi32(_mm512_max_epi32(q1, lo), hi);
        _mm_storeu_si128((__m128i *)(out + (size_t)b * KQ), _mm512_cvtepi32_epi8(q0));
        _mm_storeu_si128((__m128i *)(out + (size_t)b * KQ + 16), _mm512_cvtepi32_epi8(q1));
        int32_t s = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
        float db = amax / 127.0f;
        memcpy(sum + b, &s, 4);
        memcpy(d + b, &db, 4);
    }
    kern_prep_q8_tail(n, z, out);
}

static void kt_q6_K_pmm(const uint8_t *pk, int n, const uint8_t *p, size_t ps, int nt, float *y,
                        int ys, int r0, int r1)
{
    kt_drive(kt_q6_K, NULL, 0, pk, kt_group_bytes(GGML_TYPE_Q6_K, n), n, p, ps, nt, y, ys, r0, r1);
}

void kern_ops_avx512(struct kern_ops *ops)
{
    ops->name = "avx512";
    kx_fill(ops);
    ops->mm[GGML_TYPE_Q8_0] = kt_q8_0_mm;
    ops->mm[GGML_TYPE_Q4_0] = kz_q4_0_mm;
    ops->mm[GGML_TYPE_Q5_0] = kz_q5_0_mm;
    ops->mm[GGML_TYPE_Q4_K] = kt_q4_K_mm;
    ops->pmm[GGML_TYPE_Q8_0] = kt_q8_0_pmm;
    ops->pmm[GGML_TYPE_Q4_K] = kt_q4_K_pmm;
    ops->pack_bytes = kt_pack_bytes;
    ops->pack = kt_pack;
    ops->prep_q8k = kt_prep_q8k;
    ops->prep_q8 = kt_prep_q8;
    ops->mm[GGML_TYPE_Q6_K] = kt_q6_K_mm;
    ops->pmm[GGML_TYPE_Q6_K] = kt_q6_K_pmm;
}

#else

static void kt_q6_K_pmm(const uint8_t *pk, int n, const uint8_t *p, size_t ps, int nt, float *y,
                        int ys, int r0, int r1)
{
    kt_drive(kt_q6_K, NULL, 0, pk, kt_group_bytes(GGML_TYPE_Q6_K, n), n, p, ps, nt, y, ys, r0, r1);
}

void kern_ops_avx512(struct kern_ops *ops)
{
    (void)ops;
}

#endif
