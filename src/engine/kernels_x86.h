/* x86 matmul kernels, written once over 256-bit vectors and compiled twice:
 * by kernels_avx2.c (AVX2+FMA+F16C) and kernels_avx512.c (adds AVX-512 VL
 * and VNNI, which fuse the byte dot products). The includer defines
 *   KX_TGT          a function attribute naming the target ISA,
 *   KX_DOT(a,u,s)   a + dot of 4-byte groups, u unsigned bytes, s signed,
 *                   giving 8 int32 lanes (u*s pair sums must fit in int16
 *                   for the AVX2 version: |u| <= 128 with |s| <= 127),
 *   KX_DOTW(a,p,w)  a + pairwise int16 products p*w into 8 int32 lanes.
 * Each kernel computes one weight row against up to four tokens at once,
 * so a row is read from memory once per four tokens. The per-block integer
 * sums equal the portable path's; only the order of f32 sums differs. */
#ifndef KX_TGT
#error "define KX_TGT, KX_DOT and KX_DOTW before including kernels_x86.h"
#endif

#include <immintrin.h>

#define KX_INLINE KX_TGT static inline __attribute__((always_inline))
/* Loops over tokens, rows and sub-blocks must unroll fully so their arrays
 * of accumulators live in registers (-O2 alone leaves them in memory). */
#define KX_UNROLL _Pragma("GCC unroll 8")
#define KX_TILE   KERN_TILE /* tokens per row visit (kernels_int.h) */
#define KX_TCHUNK KERN_TCHUNK

KX_INLINE float kx_hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

KX_INLINE float kx_h2f(const uint8_t *p)
{
    return _cvtsh_ss(kern_ld16(p));
}

KX_INLINE __m256i kx_load(const void *p)
{
    return _mm256_loadu_si256((const __m256i *)p);
}

/* The n-byte prepared row's scales and sums (see kernels_int.h). */
#define KX_XD(p, n)  ((const float *)((p) + (n)))
#define KX_XS(p, n)  ((const int32_t *)((p) + (n) + ((n) / KQ) * 4))
#define KX_XBS(p, n) ((const int16_t *)((p) + (n) + ((n) / KQ_K) * 4))

/* ---- float weights: F32, F16, BF16 ------------------------------------ */

KX_INLINE __m256 kx_wf32(const uint8_t *row, int i)
{
    return _mm256_loadu_ps((const float *)(row + 4 * (size_t)i));
}

KX_INLINE __m256 kx_wf16(const uint8_t *row, int i)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + 2 * (size_t)i)));
}

KX_INLINE __m256 kx_wbf16(const uint8_t *row, int i)
{
    __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(row + 2 * (size_t)i)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(h, 16));
}

#define KX_FLOAT_TILE(NAME, LOADW, SCALAR)                                                         \
    KX_INLINE void NAME##_nt(const uint8_t *row, const uint8_t *const *xp, int n, float *out,      \
                             const int NT)                                                         \
    {                                                                                              \
        __m256 acc[KX_TILE][2];                                                                    \
        KX_UNROLL                                                                                  \
        for (int t = 0; t < NT; t++)                                                               \
            acc[t][0] = acc[t][1] = _mm256_setzero_ps();                                           \
        int i = 0;                                                                                 \
        for (; i + 16 <= n; i += 16) {                                                             \
            __m256 w0 = LOADW(row, i), w1 = LOADW(row, i + 8);                                     \
            KX_UNROLL                                                                              \
            for (int t = 0; t < NT; t++) {                                                         \
                const float *x = (const float *)xp[t] + i;                                         \
                acc[t][0] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x), acc[t][0]);                    \
                acc[t][1] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + 8), acc[t][1]);                \
            }                                                                                      \
        }                                                                                          \
        KX_UNROLL                                                                                  \
        for (int t = 0; t < NT; t++) {                                                             \
            float s = kx_hsum(_mm256_add_ps(acc[t][0], acc[t][1]));                                \
            for (int k = i; k < n; k++)                                                            \
                s += SCALAR(row, k) * ((const float *)xp[t])[k];                                   \
            out[t] = s;                                                                            \
        }                                                                                          \
    }

KX_INLINE float kx_sf32(const uint8_t *row, int k)
{
    float w;
    memcpy(&w, row + 4 * (size_t)k, 4);
    return w;
}

KX_INLINE float kx_sf16(const uint8_t *row, int k)
{
    return kx_h2f(row + 2 * (size_t)k);
}

KX_INLINE float kx_sbf16(const uint8_t *row, int k)
{
    return kern_bf16_to_fp32(kern_ld16(row + 2 * (size_t)k));
}

KX_FLOAT_TILE(kx_f32, kx_wf32, kx_sf32)
KX_FLOAT_TILE(kx_f16, kx_wf16, kx_sf16)
KX_FLOAT_TILE(kx_bf16, kx_wbf16, kx_sbf16)

/* ---- 32-element blocks: Q8_0, Q4_0, Q5_0 ------------------------------- */

/* Blocks alternate between two accumulators per token: one chain of fmadds
 * would make each block wait for the previous one's latency. */
KX_INLINE void kx_q8_0_nt(const uint8_t *row, const uint8_t *const *xp, int n, float *out,
                          const int NT)
{
    __m256 acc[2][KX_TILE];
    KX_UNROLL
    for (int t = 0; t < NT; t++)
        acc[0][t] = acc[1][t] = _mm256_setzero_ps();
    const int nb = n / KQ;
    for (int b0 = 0; b0 < nb; b0 += 2) {
        KX_UNROLL
        for (int e = 0; e < 2; e++) {
            int b = b0 + e;
            if (b >= nb) break;
            const uint8_t *blk = row + (size_t)b * KB_Q8_0;
            /* |w| times x with w's sign keeps the unsigned operand <= 128 */
            __m256i w = kx_load(blk + 2), aw = _mm256_sign_epi8(w, w);
            float dw = kx_h2f(blk);
            KX_UNROLL
            for (int t = 0; t < NT; t++) {
                __m256i sx = _mm256_sign_epi8(kx_load(xp[t] + KQ * b), w);
                __m256i p = KX_DOT(_mm256_setzero_si256(), aw, sx);
                __m256 s = _mm256_set1_ps(dw * KX_XD(xp[t], n)[b]);
                acc[e][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), s, acc[e][t]);
            }
        }
    }
    KX_UNROLL
    for (int t = 0; t < NT; t++)
        out[t] = kx_hsum(_mm256_add_ps(acc[0][t], acc[1][t]));
}

/* Unsigned 4-bit values of a q4_0/q5_0 block: 16 low nibbles, then 16 high. */
KX_INLINE __m256i kx_nibbles(const uint8_t *qs)
{
    __m128i raw = _mm_loadu_si128((const __m128i *)qs);
    __m256i v = _mm256_set_m128i(_mm_srli_epi16(raw, 4), raw);
    return _mm256_and_si256(v, _mm256_set1_epi8(15));
}

/* 0x10 in byte j where bit j of qh is set. */
KX_INLINE __m256i kx_bits_to_16(uint32_t qh)
{
    const __m256i shuf =
        _mm256_setr_epi64x(0, 0x0101010101010101, 0x0202020202020202, 0x0303030303030303);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)qh), shuf);
    v = _mm256_or_si256(v, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
    v = _mm256_cmpeq_epi8(v, _mm256_set1_epi64x(-1));
    return _mm256_and_si256(v, _mm256_set1_epi8(0x10));
}

/* Blocks with unsigned values u and a zero point z: dot = d*dx*(u.x - z*sum x).
 * The -z*sum term goes into lane 0 so the block's integer is exact. */
KX_INLINE void kx_qz_acc(__m256 *acc, __m256i u, float dw, int z, const uint8_t *const *xp, int n,
                         int b, const int NT)
{
    KX_UNROLL
    for (int t = 0; t < NT; t++) {
        __m256i c = _mm256_setr_epi32(-z * KX_XS(xp[t], n)[b], 0, 0, 0, 0, 0, 0, 0);
        __m256i p = KX_DOT(c, u, kx_load(xp[t] + KQ * b));
        __m256 s = _mm256_set1_ps(dw * KX_XD(xp[t], n)[b]);
        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), s, acc[t]);
    }
}

KX_INLINE void kx_q4_0_nt(const uint8_t *row, const uint8_t *const *xp, int n, float *out,
                          const int NT)
{
    __m256 acc[2][KX_TILE];
    KX_UNROLL
    for (int t = 0; t < NT; t++)
        acc[0][t] = acc[1][t] = _mm256_setzero_ps();
    const int nb = n / KQ;
    for (int b0 = 0; b0 < nb; b0 += 2) {
        KX_UNROLL
        for (int e = 0; e < 2; e++) {
            int b = b0 + e;
            if (b >= nb) break;
            const uint8_t *blk = row + (size_t)b * KB_Q4_0;
            kx_qz_acc(acc[e], kx_nibbles(blk + 2), kx_h2f(blk), 8, xp, n, b, NT);
        }
    }
    KX_UNROLL
    for (int t = 0; t < NT; t++)
        out[t] = kx_hsum(_mm256_add_ps(acc[0][t], acc[1][t]));
}

KX_INLINE void kx_q5_0_nt(const uint8_t *row, const uint8_t *const *xp, int n, float *out,
                          const int NT)
{
    __m256 acc[2][KX_TILE];
    KX_UNROLL
    for (int t = 0; t < NT; t++)
        acc[0][t] = acc[1][t] = _mm256_setzero_ps();
    const int nb = n / KQ;
    for (int b0 = 0; b0 < nb; b0 += 2) {
        KX_UNROLL
        for (int e = 0; e < 2; e++) {
            int b = b0 + e;
            if (b >= nb) break;
            const uint8_t *blk = row + (size_t)b * KB_Q5_0;
            __m256i u = _mm256_or_si256(kx_nibbles(blk + 6), kx_bits_to_16(kern_ld32(blk + 2)));
            kx_qz_acc(acc[e], u, kx_h2f(blk), 16, xp, n, b, NT);
        }
    }
    KX_UNROLL
    for (int t = 0; t < NT; t++)
        out[t] = kx_hsum(_mm256_add_ps(acc[0][t], acc[1][t]));
}

/* ---- 256-element blocks: Q4_K, Q6_K ------------------------------------ */

/* The 8 scales (bytes 0-7) and 8 mins (bytes 8-15) of a q4_K block. */
KX_INLINE void kx_k4_scales(const uint8_t *s12, uint32_t u[4])
{
    uint32_t a = kern_ld32(s12), b = kern_ld32(s12 + 4), c = kern_ld32(s12 + 8);
    u[0] = a & 0x3f3f3f3f;
    u[1] = (c & 0x0f0f0f0f) | (((a >> 6) & 0x03030303) << 4);
    u[2] = b & 0x3f3f3f3f;
    u[3] = ((c >> 4) & 0x0f0f0f0f) | (((b >> 6) & 0x03030303) << 4);
}

KX_INLINE void kx_q4_K_nt(const uint8_t *row, const uint8_t *const *xp, int n, float *out,
                          const int NT)
{
    __m256 acc[KX_TILE], accm[KX_TILE];
    KX_UNROLL
    for (int t = 0; t < NT; t++)
        acc[t] = accm[t] = _mm256_setzero_ps();
    const __m256i m4 = _mm256_set1_epi8(15);
    for (int b = 0; b < n / KQ_K; b++, row += KB_Q4_K) {
        uint32_t u[4];
        kx_k4_scales(row + 4, u);
        const uint8_t *sc = (const uint8_t *)u, *q = row + 16;
        __m256i sumi[KX_TILE];
        KX_UNROLL
        for (int t = 0; t < NT; t++)
            sumi[t] = _mm256_setzero_si256();
        KX_UNROLL
        for (int j = 0; j < 4; j++) {
            __m256i raw = kx_load(q + 32 * j);
            __m256i lo = _mm256_and_si256(raw, m4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
            __m256i s1 = _mm256_set1_epi16(sc[2 * j]), s2 = _mm256_set1_epi16(sc[2 * j + 1]);
            KX_UNROLL
            for (int t = 0; t < NT; t++) {
                const uint8_t *x = xp[t] + KQ_K * b + 64 * j;
                /* the two products meet first so sumi's chain is one add per step */
                __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, kx_load(x)), s1);
                p = KX_DOTW(p, _mm256_maddubs_epi16(hi, kx_load(x + 32)), s2);
                sumi[t] = _mm256_add_epi32(sumi[t], p);
            }
        }
        /* mins against the per-16 sums of x: lane j = m[j]*(bs[2j]+bs[2j+1]) */
        __m128i m8 = _mm_cvtsi64_si128((long long)((uint64_t)u[2] | (uint64_t)u[3] << 32));
        __m256i mins = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m8, m8));
        float d = kx_h2f(row), dmin = kx_h2f(row + 2);
        KX_UNROLL
        for (int t = 0; t < NT; t++) {
            float dx = KX_XD(xp[t], n)[b];
            __m256i bs = kx_load(KX_XBS(xp[t], n) + 16 * b);
            __m256i pm = _mm256_madd_epi16(bs, mins);
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi[t]), _mm256_set1_ps(d * dx), acc[t]);
            accm[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(pm), _mm256_set1_ps(dmin * dx), accm[t]);
        }
    }
    KX_UNROLL
    for (int t = 0; t < NT; t++)
        out[t] = kx_hsum(acc[t]) - kx_hsum(accm[t]);
}

KX_INLINE void kx_q6_K_nt(const uint8_t *row, const uint8_t *const *xp, int n, float *out,
                          const int NT)
{
    __m256 acc[KX_TILE];
    KX_UNROLL
    for (int t = 0; t < NT; t++)
        acc[t] = _mm256_setzero_ps();
    const __m256i m4 = _mm256_set1_epi8(15), m3 = _mm256_set1_epi8(3);
    for (int b = 0; b < n / KQ_K; b++, row += KB_Q6_K) {
        __m128i sc8 = _mm_loadu_si128((const __m128i *)(row + 192));
        __m256i sumi[KX_TILE];
        KX_UNROLL
        for (int t = 0; t < NT; t++)
            sumi[t] = _mm256_setzero_si256();
        KX_UNROLL
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = row + 64 * h, *qh = row + 128 + 32 * h;
            __m256i l0 = kx_load(ql), l1 = kx_load(ql + 32), hb = kx_load(qh);
            __m256i v[4];
            v[0] = _mm256_or_si256(_mm256_and_si256(l0, m4),
                                   _mm256_slli_epi16(_mm256_and_si256(hb, m3), 4));
            v[1] = _mm256_or_si256(
                _mm256_and_si256(l1, m4),
                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2), m3), 4));
            v[2] = _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 4), m3), 4));
            v[3] = _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 6), m3), 4));
            __m256i scv[4];
            KX_UNROLL
            for (int k = 0; k < 4; k++) {
                /* groups 8h+2k and 8h+2k+1: 8 lanes of each scale */
                int g = 8 * h + 2 * k;
                __m128i idx =
                    _mm_set_epi64x(0x0101010101010101LL * (g + 1), 0x0101010101010101LL * g);
                scv[k] = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc8, idx));
            }
            KX_UNROLL
            for (int t = 0; t < NT; t++) {
                const uint8_t *x = xp[t] + KQ_K * b + 128 * h;
                __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(v[0], kx_load(x)), scv[0]);
                __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(v[2], kx_load(x + 64)), scv[2]);
                p0 = KX_DOTW(p0, _mm256_maddubs_epi16(v[1], kx_load(x + 32)), scv[1]);
                p1 = KX_DOTW(p1, _mm256_maddubs_epi16(v[3], kx_load(x + 96)), scv[3]);
                sumi[t] = _mm256_add_epi32(sumi[t], _mm256_add_epi32(p0, p1));
            }
        }
        /* the -32 offset of every value: -32 * sum_g sc[g] * bs[g] */
        __m256i sc16 = _mm256_cvtepi8_epi16(sc8);
        float d = kx_h2f(row + 208);
        KX_UNROLL
        for (int t = 0; t < NT; t++) {
            __m256i bs = kx_load(KX_XBS(xp[t], n) + 16 * b);
            __m256i corr = _mm256_slli_epi32(_mm256_madd_epi16(bs, sc16), 5);
            __m256i s = _mm256_sub_epi32(sumi[t], corr);
            float dx = KX_XD(xp[t], n)[b];
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(d * dx), acc[t]);
        }
    }
    KX_UNROLL
    for (int t = 0; t < NT; t++)
        out[t] = kx_hsum(acc[t]);
}

/* ---- driver ------------------------------------------------------------ */

typedef kern_tile_fn kx_tile_fn;

/* One function per type taking nt at run time; each case inlines the kernel
 * with a constant token count so its loops over tokens unroll. */
#define KX_TILE_FN(NAME)                                                                           \
    KX_TGT static void NAME(const uint8_t *row, const uint8_t *const *xp, int n, float *out,       \
                            int nt)                                                                \
    {                                                                                              \
        switch (nt) {                                                                              \
        case 1:                                                                                    \
            NAME##_nt(row, xp, n, out, 1);                                                         \
            break;                                                                                 \
        case 2:                                                                                    \
            NAME##_nt(row, xp, n, out, 2);                                                         \
            break;                                                                                 \
        case 3:                                                                                    \
            NAME##_nt(row, xp, n, out, 3);                                                         \
            break;                                                                                 \
        default:                                                                                   \
            NAME##_nt(row, xp, n, out, 4);                                                         \
            break;                                                                                 \
        }                                                                                          \
    }

KX_TILE_FN(kx_f32)
KX_TILE_FN(kx_f16)
KX_TILE_FN(kx_bf16)
KX_TILE_FN(kx_q8_0)
KX_TILE_FN(kx_q4_0)
KX_TILE_FN(kx_q5_0)
KX_TILE_FN(kx_q4_K)
KX_TILE_FN(kx_q6_K)

#define KX_MM(NAME)                                                                                \
    static void NAME##_mm(const uint8_t *W, size_t rb, int n, const uint8_t *p, size_t ps, int nt, \
                          float *y, int ys, int r0, int r1)                                        \
    {                                                                                              \
        kern_drive_tiles(NAME, W, rb, n, p, ps, nt, y, ys, r0, r1);                                \
    }

KX_MM(kx_f32)
KX_MM(kx_f16)
KX_MM(kx_bf16)
KX_MM(kx_q8_0)
KX_MM(kx_q4_0)
KX_MM(kx_q5_0)
KX_MM(kx_q4_K)
KX_MM(kx_q6_K)

static void kx_fill(struct kern_ops *ops)
{
    ops->mm[GGML_TYPE_F32] = kx_f32_mm;
    ops->mm[GGML_TYPE_F16] = kx_f16_mm;
    ops->mm[GGML_TYPE_BF16] = kx_bf16_mm;
    ops->mm[GGML_TYPE_Q8_0] = kx_q8_0_mm;
    ops->mm[GGML_TYPE_Q4_0] = kx_q4_0_mm;
    ops->mm[GGML_TYPE_Q5_0] = kx_q5_0_mm;
    ops->mm[GGML_TYPE_Q4_K] = kx_q4_K_mm;
    ops->mm[GGML_TYPE_Q6_K] = kx_q6_K_mm;
}
